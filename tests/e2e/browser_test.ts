/**
 * Runs the demo page's real-browser suite (chromium_suite.ts) in a child process (see child_suite.ts).
 * @module
 */
import { childSuiteTest } from "./child_suite.ts";

childSuiteTest({
  name: "demo page in Chromium: relayed messages, subprotocol, refusals, close codes, reconnects",
  suite: new URL("./chromium_suite.ts", import.meta.url),
  label: "browser e2e",
  timeoutMs: 60_000,
});
