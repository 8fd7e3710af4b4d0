/**
 * Runs the demo page's Rooms panel suite (rooms_demo_suite.ts) in a child
 * process (see child_suite.ts). Without Chromium it is skipped, announced
 * with the reason, unless CI is true: there a missing browser fails it.
 * @module
 */
import { CHROMIUM, chromiumPresent } from "./chromium.ts";
import { childSuiteTest } from "./child_suite.ts";

const NAME =
  "rooms panel in Chromium: two demo pages on two instances chat through restarts and recover; an SSE follower shows the same list";

if (!chromiumPresent() && Deno.env.get("CI") !== "true") {
  console.log(
    `rooms demo browser e2e: skipped because Chromium is not at ${CHROMIUM} ` +
      "(apt-get install chromium, or point RELAY_E2E_CHROMIUM at it)",
  );
  Deno.test({ name: NAME, ignore: true, fn: () => {} });
} else {
  childSuiteTest({
    name: NAME,
    suite: new URL("./rooms_demo_suite.ts", import.meta.url),
    label: "rooms demo browser e2e",
    timeoutMs: 150_000,
    echo: /^ {2}rooms: /,
    passEnv: ["RELAY_ROOMS_SCREENSHOT"],
  });
}
