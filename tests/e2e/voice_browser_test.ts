/**
 * Runs the real-browser voice suite (voice_suite.ts) in a child `deno test -A`
 * under this same Deno, and fails with its report when it fails; the child
 * keeps playwright-core's /proc reads and --allow-all away from other tests
 * (see browser_test.ts). `RELAY_E2E_BROWSER=skip` skips it (announced); a
 * missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "./chromium.ts";

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const SUITE = new URL("./voice_suite.ts", import.meta.url);
const REPO_ROOT = new URL("../../", import.meta.url);
/** The suite takes about 30 s; this bounds a hung browser. */
const SUITE_TIMEOUT_MS = 90_000;

if (SKIP) console.log("voice browser e2e: skipped because RELAY_E2E_BROWSER=skip");

Deno.test({
  name: "voice demo in Chromium: push-to-talk audio, playback, barge-in and notices",
  ignore: SKIP,
  fn: async () => {
    assert.ok(
      chromiumPresent(),
      `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium), point ` +
        "RELAY_E2E_CHROMIUM at it, or set RELAY_E2E_BROWSER=skip to skip this test",
    );
    const env: Record<string, string> = { NO_COLOR: "1" };
    const screenshot = Deno.env.get("RELAY_DEMO_SCREENSHOT");
    if (screenshot) env.RELAY_DEMO_SCREENSHOT = screenshot;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", SUITE.pathname],
      cwd: REPO_ROOT.pathname,
      env,
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
    assert.ok(output.success, `voice_suite.ts failed (exit ${output.code}):\n${report}`);
  },
});
