/**
 * Runs the live captions suite (captions_browser_suite.ts) in a child process
 * (see child_suite.ts). Without Chromium it is skipped, announced with the
 * reason, unless CI is true: there a missing browser fails it.
 * @module
 */
import { CHROMIUM, chromiumPresent } from "./chromium.ts";
import { childSuiteTest } from "./child_suite.ts";

const NAME =
  "captions in Chromium: a page talks with ?room=; readers on another instance, as other users, see both sides' captions live";

if (!chromiumPresent() && Deno.env.get("CI") !== "true") {
  console.log(
    `captions browser e2e: skipped because Chromium is not at ${CHROMIUM} ` +
      "(apt-get install chromium, or point RELAY_E2E_CHROMIUM at it)",
  );
  Deno.test({ name: NAME, ignore: true, fn: () => {} });
} else {
  childSuiteTest({
    name: NAME,
    suite: new URL("./captions_browser_suite.ts", import.meta.url),
    label: "captions browser e2e",
    timeoutMs: 180_000,
    echo: /^ {2}captions: /,
    passEnv: ["RELAY_CAPTIONS_SCREENSHOT"],
  });
}
