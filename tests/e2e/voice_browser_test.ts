/**
 * Runs the real-browser voice suite (voice_suite.ts) in a child process (see child_suite.ts).
 * @module
 */
import { childSuiteTest } from "./child_suite.ts";

childSuiteTest({
  name: "voice demo in Chromium: push-to-talk audio, playback, barge-in and notices",
  suite: new URL("./voice_suite.ts", import.meta.url),
  label: "voice browser e2e",
  timeoutMs: 90_000,
  echo: /^measured: /,
  passEnv: ["RELAY_DEMO_SCREENSHOT"],
});
