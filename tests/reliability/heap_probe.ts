/**
 * Run by load_test.ts as `deno run -A --v8-flags=--expose-gc heap_probe.ts
 * <connections> <rounds> <seconds>`: churns sessions through an in-process
 * relay and prints the JS heap after a full GC, once warm and after each round,
 * as one JSON line. The stand-in's connection records are cleared between
 * rounds so only the relay's own memory is measured.
 * @module
 */
import { startRelay } from "../helpers/relay_harness.ts";
import { sleep } from "../helpers/ws_client.ts";
import { createTelemetry } from "../../supabase/functions/_shared/telemetry/log.ts";
import { runLoad } from "./load.ts";

const [connections = 100, rounds = 3, seconds = 2] = Deno.args.map(Number);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const heapMiB = () => {
  gc();
  gc();
  return Math.round((Deno.memoryUsage().heapUsed / 1024 / 1024) * 100) / 100;
};

const relay = await startRelay({
  env: { RELAY_MAX_CONNECTIONS: "10000", RELAY_MAX_CONNECTIONS_PER_USER: "10000" },
  deps: { telemetry: createTelemetry("info", () => {}) },
});
const token = await relay.auth.signEs256({}, { expiresInS: 3600 });
const urls = Array.from({ length: connections }, () => relay.wsUrl("/relay", { jwt: token }));
const round = async () => {
  const stats = await runLoad({ urls, seconds, rate: 20, messageBytes: 256, churnSeconds: 0.5 });
  await sleep(1000);
  (relay.openai.connections as unknown[]).length = 0;
  return stats;
};
await round();
const baseline = heapMiB();
const heaps: number[] = [];
let sessions = 0;
let unexpected = 0;
for (let i = 0; i < rounds; i++) {
  const stats = await round();
  sessions += stats.opened;
  unexpected += stats.unexpectedCloses + stats.lost + stats.corrupted;
  heaps.push(heapMiB());
}
const held = relay.relay.connections();
console.log(JSON.stringify({ baseline, heaps, sessions, unexpected, held }));
// No graceful stop: on Deno 2.1.4 the server's shutdown can wait minutes for
// sockets the relay already closed, and this process has nothing left to say.
Deno.exit(0);
