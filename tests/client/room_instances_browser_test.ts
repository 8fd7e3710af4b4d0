/**
 * Runs the room client's real-browser suite across relay processes
 * (room_instances_browser_suite.ts) in a child process (see
 * tests/e2e/child_suite.ts).
 * @module
 */
import { childSuiteTest } from "../e2e/child_suite.ts";

childSuiteTest({
  name:
    "room client in Chromium and Deno on two relay processes: 200 messages through a restart and a TCP cut, complete, in order, once",
  suite: new URL("./room_instances_browser_suite.ts", import.meta.url),
  label: "room client in Chromium across instances",
  timeoutMs: 180_000,
  echo: /^measured:|ignored/,
});
