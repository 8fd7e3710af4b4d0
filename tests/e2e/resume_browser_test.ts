/**
 * Runs the real-browser resume suite (resume_browser_suite.ts) in a child
 * `deno test -A` under this same Deno, and fails with its report when it
 * fails; the child keeps playwright-core's /proc reads and --allow-all away
 * from other tests (see browser_test.ts). `RELAY_E2E_BROWSER=skip` skips it
 * (announced); a missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "./chromium.ts";

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const SUITE = new URL("./resume_browser_suite.ts", import.meta.url);
const REPO_ROOT = new URL("../../", import.meta.url);
/** The suite takes about 10 s (the embedded database starts in it); this bounds a hung browser. */
const SUITE_TIMEOUT_MS = 90_000;

if (SKIP) console.log("resume browser e2e: skipped because RELAY_E2E_BROWSER=skip");

Deno.test({
  name: "resume in Chromium: the demo page, through the client library, across a relay restart",
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
    // The steps' names and times, and what the suite measured, in this test's output too.
    console.log(
      report.split("\n").filter((line) => /\.\.\. (ok|FAILED)|^measured: /.test(line)).join("\n"),
    );
    assert.ok(output.success, `resume_browser_suite.ts failed (exit ${output.code}):\n${report}`);
  },
});
