/**
 * Runs the close-notice browser suite (close_notices_browser_suite.ts) in a child process (see child_suite.ts).
 * @module
 */
import { childSuiteTest } from "./child_suite.ts";

childSuiteTest({
  name:
    "close notices in Chromium: token_expired, server_restarting and OpenAI's 4000 arrive in band",
  suite: new URL("./close_notices_browser_suite.ts", import.meta.url),
  label: "close-notice browser e2e",
  timeoutMs: 60_000,
  echo: /Chromium:/,
});
