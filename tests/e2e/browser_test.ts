/**
 * Runs the real-browser suite (chromium_suite.ts) in a child `deno test -A`
 * under this same Deno, and fails with its report when it fails.
 * playwright-core reads /proc while loading, which Deno 2.9 permits only with
 * --allow-all; the child keeps that grant away from every other test.
 * `RELAY_E2E_BROWSER=skip` skips it (announced); a missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "./chromium.ts";

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const SUITE = new URL("./chromium_suite.ts", import.meta.url);
const REPO_ROOT = new URL("../../", import.meta.url);
/** The suite takes about 5 s; this bounds a hung browser. */
const SUITE_TIMEOUT_MS = 60_000;

if (SKIP) console.log("browser e2e: skipped because RELAY_E2E_BROWSER=skip");

Deno.test({
  name: "demo page in Chromium: relayed messages, subprotocol, refusals, close codes, reconnects",
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
    // The steps' names and times, in this test's output too.
    console.log(report.split("\n").filter((line) => /\.\.\. (ok|FAILED)/.test(line)).join("\n"));
    assert.ok(output.success, `chromium_suite.ts failed (exit ${output.code}):\n${report}`);
  },
});
