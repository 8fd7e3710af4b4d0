/**
 * Runs the rooms browser suite (rooms_browser_suite.ts) in a child process
 * (see child_suite.ts). Without Chromium it is skipped, announced with the
 * reason, unless CI is true: there a missing browser fails it.
 * @module
 */
import { CHROMIUM, chromiumPresent } from "./chromium.ts";
import { childSuiteTest } from "./child_suite.ts";

const NAME =
  "rooms in Chromium: two pages on two instances chat, see each other's presence, read the restart notice";

if (!chromiumPresent() && Deno.env.get("CI") !== "true") {
  console.log(
    `rooms browser e2e: skipped because Chromium is not at ${CHROMIUM} ` +
      "(apt-get install chromium, or point RELAY_E2E_CHROMIUM at it)",
  );
  Deno.test({ name: NAME, ignore: true, fn: () => {} });
} else {
  childSuiteTest({
    name: NAME,
    suite: new URL("./rooms_browser_suite.ts", import.meta.url),
    label: "rooms browser e2e",
    timeoutMs: 60_000,
    echo: /Chromium:/,
  });
}
