/**
 * Runs the close-notice browser suite (close_notices_browser_suite.ts) in a
 * child `deno test -A` under this same Deno, the way browser_test.ts runs the
 * demo page's suite, and fails with its report when it fails.
 * `RELAY_E2E_BROWSER=skip` skips it (announced); a missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "./chromium.ts";

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const SUITE = new URL("./close_notices_browser_suite.ts", import.meta.url);
const REPO_ROOT = new URL("../../", import.meta.url);
/** The suite takes about 5 s; this bounds a hung browser. */
const SUITE_TIMEOUT_MS = 60_000;

if (SKIP) console.log("close-notice browser e2e: skipped because RELAY_E2E_BROWSER=skip");

Deno.test({
  name:
    "close notices in Chromium: token_expired, server_restarting and OpenAI's 4000 arrive in band",
  ignore: SKIP,
  fn: async () => {
    assert.ok(
      chromiumPresent(),
      `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium), point ` +
        "RELAY_E2E_CHROMIUM at it, or set RELAY_E2E_BROWSER=skip to skip this test",
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", SUITE.pathname],
      cwd: REPO_ROOT.pathname,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), SUITE_TIMEOUT_MS);
    const output = await child.output();
    clearTimeout(timer);
    const report = new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
    // The steps, their times and what Chromium reported, in this test's output too.
    console.log(
      report.split("\n").filter((line) => /\.\.\. (ok|FAILED)|Chromium:/.test(line)).join("\n"),
    );
    assert.ok(
      output.success,
      `close_notices_browser_suite.ts failed (exit ${output.code}):\n${report}`,
    );
  },
});
