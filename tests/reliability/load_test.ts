/**
 * Load, CI-sized: authenticated connections exchange traffic through the relay
 * process for a bounded time; nothing is lost, nothing closes unexpectedly,
 * and the relay's RSS comes back near its baseline. `deno task soak` runs the
 * same with larger numbers.
 */
import assert from "node:assert/strict";
import { canMeasureRss, testCommand } from "./support.ts";
import { recordSoak, runSoak, soakProblems } from "./soak.ts";

const CONNECTIONS = Number(Deno.env.get("RELAY_LOAD_CONNECTIONS") ?? 50);
const SECONDS = Number(Deno.env.get("RELAY_LOAD_SECONDS") ?? 5);

Deno.test({
  name: `load: ${CONNECTIONS} connections x ${SECONDS} s lose nothing and release their memory`,
  ignore: !canMeasureRss,
  fn: async () => {
    // Debug telemetry (a line per message) so the secrets check sees the most output.
    const options = {
      connections: CONNECTIONS,
      seconds: SECONDS,
      rate: 20,
      logLevel: "debug" as const,
    };
    const result = await runSoak(options);
    recordSoak(result, options, testCommand("load_test.ts"), "Load (CI size)");
    const problems = soakProblems(result, 48);
    assert.deepEqual(problems, [], JSON.stringify(result));
    assert.ok(result.load.sent >= CONNECTIONS * SECONDS * 10, `only ${result.load.sent} sent`);
  },
});
