/**
 * Runs the real-browser resume suite (resume_browser_suite.ts) in a child process (see child_suite.ts).
 * @module
 */
import { childSuiteTest } from "./child_suite.ts";

childSuiteTest({
  name: "resume in Chromium: the demo page, through the client library, across a relay restart",
  suite: new URL("./resume_browser_suite.ts", import.meta.url),
  label: "resume browser e2e",
  timeoutMs: 90_000,
  echo: /^measured: /,
});
