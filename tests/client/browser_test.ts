/**
 * Runs the client library's real-browser suite (browser_suite.ts) in a child
 * `deno test -A` under this same Deno, as tests/e2e/browser_test.ts does for
 * the demo page (playwright-core reads /proc while loading; the child keeps
 * that grant away from other tests). `RELAY_E2E_BROWSER=skip` skips it
 * (announced); a missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "../e2e/chromium.ts";

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const SUITE = new URL("./browser_suite.ts", import.meta.url);
const REPO_ROOT = new URL("../../", import.meta.url);
/** The suite takes a few seconds; this bounds a hung browser. */
const SUITE_TIMEOUT_MS = 60_000;

if (SKIP) console.log("client library in Chromium: skipped because RELAY_E2E_BROWSER=skip");

Deno.test({
  name:
    "client library in Chromium: loads unbuilt, decides on close notices where the browser sees 1006",
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
    console.log(report.split("\n").filter((line) => /\.\.\. (ok|FAILED)/.test(line)).join("\n"));
    assert.ok(output.success, `browser_suite.ts failed (exit ${output.code}):\n${report}`);
  },
});
