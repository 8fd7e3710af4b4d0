/**
 * Runs the client library's real-browser suite (browser_suite.ts) in a child process (see tests/e2e/child_suite.ts).
 * @module
 */
import { childSuiteTest } from "../e2e/child_suite.ts";

childSuiteTest({
  name:
    "client library in Chromium: loads unbuilt, decides on close notices where the browser sees 1006",
  suite: new URL("./browser_suite.ts", import.meta.url),
  label: "client library in Chromium",
  timeoutMs: 60_000,
});
