/**
 * Runs a real-browser suite in a child `deno test -A` under this same Deno,
 * as one test that fails with the child's report. playwright-core reads /proc
 * while loading, which Deno 2.9 permits only with --allow-all; the child keeps
 * that grant away from every other test. `RELAY_E2E_BROWSER=skip` skips it
 * (announced); a missing Chromium fails it.
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM, chromiumPresent } from "./chromium.ts";

/** One browser suite, run as a child. */
export interface ChildSuite {
  /** The test's name. */
  readonly name: string;
  /** The suite file, e.g. `new URL("./voice_suite.ts", import.meta.url)`. */
  readonly suite: URL;
  /** Says what is skipped, e.g. "voice browser e2e". */
  readonly label: string;
  /** Bounds a hung browser. */
  readonly timeoutMs: number;
  /** Lines of the child's report echoed into this test's output besides its steps. */
  readonly echo?: RegExp;
  /** Variables passed on to the child when set here (e.g. RELAY_DEMO_SCREENSHOT). */
  readonly passEnv?: readonly string[];
}

const SKIP = Deno.env.get("RELAY_E2E_BROWSER") === "skip";
const REPO_ROOT = new URL("../../", import.meta.url);
const STEP = /\.\.\. (ok|FAILED)/;

/** Registers `suite` as one Deno test. */
export function childSuiteTest(suite: ChildSuite): void {
  if (SKIP) console.log(`${suite.label}: skipped because RELAY_E2E_BROWSER=skip`);
  const file = suite.suite.pathname.split("/").pop();
  Deno.test({
    name: suite.name,
    ignore: SKIP,
    fn: async () => {
      assert.ok(
        chromiumPresent(),
        `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium), point ` +
          "RELAY_E2E_CHROMIUM at it, or set RELAY_E2E_BROWSER=skip to skip this test",
      );
      const env: Record<string, string> = { NO_COLOR: "1" };
      for (const name of suite.passEnv ?? []) {
        const value = Deno.env.get(name);
        if (value) env[name] = value;
      }
      const child = new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", suite.suite.pathname],
        cwd: REPO_ROOT.pathname,
        env,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), suite.timeoutMs);
      const output = await child.output();
      clearTimeout(timer);
      const report = new TextDecoder().decode(output.stdout) +
        new TextDecoder().decode(output.stderr);
      // The steps' names and times (and what the suite measured) in this test's output too.
      console.log(
        report.split("\n").filter((line) => STEP.test(line) || suite.echo?.test(line)).join("\n"),
      );
      assert.ok(output.success, `${file} failed (exit ${output.code}):\n${report}`);
    },
  });
}
