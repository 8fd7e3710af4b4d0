/**
 * Load, CI-sized: authenticated connections exchange traffic through the relay
 * process for a bounded time; nothing is lost, nothing closes unexpectedly,
 * and the relay's RSS comes back near its baseline. `deno task soak` runs the
 * same with larger numbers.
 */
import assert from "node:assert/strict";
import { canMeasureRss, recordFigure, testCommand } from "./support.ts";
import { recordSoak, runSoak, soakProblems } from "./soak.ts";

const CONNECTIONS = Number(Deno.env.get("RELAY_LOAD_CONNECTIONS") ?? 50);
const SECONDS = Number(Deno.env.get("RELAY_LOAD_SECONDS") ?? 5);

Deno.test({
  name: `load: ${CONNECTIONS} connections x ${SECONDS} s lose nothing and release their memory` +
    (canMeasureRss ? "" : " (skipped: RSS is read from /proc, which needs Linux and --allow-all)"),
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
    const problems = soakProblems(result, 32);
    assert.deepEqual(problems, [], JSON.stringify(result));
    assert.ok(result.load.sent >= CONNECTIONS * SECONDS * 10, `only ${result.load.sent} sent`);
  },
});

Deno.test("load: the relay's JS heap returns to its baseline after thousands of sessions", async () => {
  const probe = new URL("./heap_probe.ts", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--v8-flags=--expose-gc", probe, "100", "3", "2"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as {
    baseline: number;
    heaps: number[];
    sessions: number;
    unexpected: number;
    held: number;
  };
  assert.equal(result.unexpected, 0);
  assert.equal(result.held, 0);
  const last = result.heaps.at(-1) ?? Infinity;
  // A leak of even 1 KiB per session would add several MiB here.
  assert.ok(
    last - result.baseline < 1.5,
    `heap ${result.baseline} → ${result.heaps.join(" → ")} MiB`,
  );
  recordFigure({
    area: "Memory: relay JS heap under session churn",
    tried:
      "100 clients reconnecting every 0.5 s at 20 msg/s, 3 rounds of 2 s after a warm-up, in-process relay, full GC before each reading",
    counts: {
      sessions: result.sessions,
      "heap baseline MiB": result.baseline,
      "heap after last round MiB": last,
    },
    held: `heap back at baseline (rounds: ${result.heaps.join(" → ")} MiB); no session retained`,
    command: testCommand("load_test.ts", "JS heap"),
  });
});
