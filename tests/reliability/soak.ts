/**
 * Load and soak against the relay entrypoint run as its own process:
 * `deno task soak --connections 500 --seconds 120 [--rate 10] [--bytes 512] [--churn 10]`.
 * Stand-ins for Supabase Auth and OpenAI run in this process on 127.0.0.1.
 * Exits non-zero when a message was lost or corrupted, a connection closed
 * unexpectedly, or the relay's RSS did not come back near its baseline.
 * @module
 */
import { standInEnv } from "../helpers/relay_harness.ts";
import { sleep } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { type LoadStats, runLoad } from "./load.ts";
import { assertNoSecrets, PAYLOAD_MARKER, recordFigure, startRelayProcess } from "./support.ts";

/** Soak parameters. */
export interface SoakOptions {
  connections: number;
  seconds: number;
  /** Messages per second per connection. @default 10 */
  rate?: number;
  /** @default 512 */
  messageBytes?: number;
  /** Each client reconnects every this many seconds. @default no churn */
  churnSeconds?: number;
  /** Prints progress every second. */
  verbose?: boolean;
  /** The relay's RELAY_LOG_LEVEL (debug logs a line per message). @default "info" */
  logLevel?: "debug" | "info";
}

/** What a soak run measured. */
export interface SoakResult {
  load: LoadStats;
  /** Relay RSS in MiB: after a warm-up round (baseline), peak under load, after all closed. */
  rssBaseline: number;
  rssPeak: number;
  /** After the first half, all closed. */
  rssMid: number;
  /** After the second half, all closed. */
  rssAfter: number;
  /** The relay's own refusals (telemetry `websocket.connection.rejected`), by error. */
  rejected: Record<string, number>;
  /** Connections the relay still held after every client closed. */
  leftOpen: number;
  /** Whether the relay's output held a token, key or payload marker. */
  leakedSecret: boolean;
  exitCode: number;
}

const MiB = 1024 * 1024;
const round = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

/** Runs one soak: warm-up, measured load, drain, RSS check. */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const rate = options.rate ?? 10;
  const messageBytes = options.messageBytes ?? 512;
  const auth = await startAuthStandIn();
  const openai = await startOpenAIStandIn();
  const relay = await startRelayProcess({
    ...standInEnv(auth, openai),
    // Room for sessions still closing while their client reconnects (churn).
    RELAY_MAX_CONNECTIONS: String(options.connections * 2 + 10),
    RELAY_RATE_LIMIT: String(Math.max(200, rate * 4)),
    RELAY_LOG_LEVEL: options.logLevel ?? "info",
  });
  const tokens: string[] = [];
  try {
    // One user per connection: the per-user cap (5) is not what is measured here.
    for (let i = 0; i < options.connections; i++) {
      tokens.push(await auth.signEs256({ sub: crypto.randomUUID() }, { expiresInS: 3600 }));
    }
    const urls = tokens.map((jwt) => relay.wsUrl("/relay", { jwt }));
    const connectionsHeld = async () => {
      const health = await fetch(`http://127.0.0.1:${relay.port}/relay/health`);
      return (await health.json()).connections as number;
    };
    const drained = async () => {
      for (let i = 0; i < 100 && (await connectionsHeld()) > 0; i++) await sleep(100);
    };

    // Warm-up at full concurrency: the runtime's JIT, allocator and pools grow to
    // this load's size before the baseline.
    await runLoad({
      urls,
      seconds: Math.min(5, Math.max(1, options.seconds / 10)),
      rate,
      messageBytes,
    });
    await drained();
    await sleep(500);
    const rssBaseline = relay.rss();
    let rssPeak = rssBaseline;
    // Two equal halves: memory after the second must not exceed memory after the
    // first by more than the slack (a plateau), whatever the allocator keeps.
    const half = (seconds: number) =>
      runLoad({
        urls,
        seconds,
        rate,
        messageBytes,
        ...(options.churnSeconds ? { churnSeconds: options.churnSeconds } : {}),
        onTick: (s) => {
          rssPeak = Math.max(rssPeak, relay.rss());
          if (options.verbose) {
            console.log(
              `sent ${s.sent} received ${s.received} sessions ${s.opened} unexpected ${s.unexpectedCloses} rss ${
                round(relay.rss())
              } MiB`,
            );
          }
        },
      });
    const first = await half(options.seconds / 2);
    await drained();
    await sleep(1000);
    const rssMid = relay.rss();
    const second = await half(options.seconds / 2);
    const load = mergeStats(first, second);
    await drained();
    await sleep(1000);
    const rssAfter = relay.rss();
    const leftOpen = await connectionsHeld();
    const exitCode = await relay.stop();
    let leakedSecret = false;
    try {
      assertNoSecrets(relay.output(), [
        ...tokens,
        openai.apiKey,
        auth.publishableKey,
        PAYLOAD_MARKER,
      ], "relay output");
      // Payloads are "<conn>:<seq>:xxxx..." and never appear in telemetry either.
      if (relay.output().includes("xxxxxxxxxxxxxxxx")) leakedSecret = true;
    } catch {
      leakedSecret = true;
    }
    const rejected: Record<string, number> = {};
    for (const line of relay.output().split("\n")) {
      if (!line.includes('"websocket.connection.rejected"')) continue;
      const error = String(JSON.parse(line).error);
      rejected[error] = (rejected[error] ?? 0) + 1;
    }
    return {
      load,
      rejected,
      rssBaseline: round(rssBaseline),
      rssPeak: round(rssPeak),
      rssMid: round(rssMid),
      rssAfter: round(rssAfter),
      leftOpen,
      leakedSecret,
      exitCode,
    };
  } finally {
    await relay.stop();
    await openai.close();
    await auth.close();
  }
}

/** Sums two load runs (percentiles: the worse of the two). */
function mergeStats(a: LoadStats, b: LoadStats): LoadStats {
  const codes = { ...a.unexpectedCodes };
  for (const [k, v] of Object.entries(b.unexpectedCodes)) codes[k] = (codes[k] ?? 0) + v;
  return {
    connections: a.connections,
    opened: a.opened + b.opened,
    failedOpens: a.failedOpens + b.failedOpens,
    sent: a.sent + b.sent,
    received: a.received + b.received,
    lost: a.lost + b.lost,
    corrupted: a.corrupted + b.corrupted,
    unexpectedCloses: a.unexpectedCloses + b.unexpectedCloses,
    unexpectedCodes: codes,
    p50: Math.max(a.p50, b.p50),
    p99: Math.max(a.p99, b.p99),
    seconds: Math.round((a.seconds + b.seconds) * 10) / 10,
  };
}

/**
 * Problems with a soak result, empty when it held. `rssSlackMiB` is how much
 * RSS may grow from the end of the first half to the end of the second.
 */
export function soakProblems(result: SoakResult, rssSlackMiB: number): string[] {
  const problems: string[] = [];
  const { load } = result;
  if (load.failedOpens > 0) problems.push(`${load.failedOpens} connection attempts refused`);
  if (load.unexpectedCloses > 0) problems.push(`${load.unexpectedCloses} unexpected closes`);
  if (load.lost > 0) problems.push(`${load.lost} messages lost`);
  if (load.corrupted > 0) problems.push(`${load.corrupted} messages corrupted`);
  if (load.received !== load.sent) problems.push(`sent ${load.sent}, received ${load.received}`);
  if (result.leftOpen > 0) problems.push(`${result.leftOpen} connections left open`);
  if (result.rssAfter > result.rssMid + rssSlackMiB) {
    problems.push(`RSS grew from ${result.rssMid} to ${result.rssAfter} MiB between equal halves`);
  }
  if (result.leakedSecret) problems.push("relay output held a token, key or payload");
  if (result.exitCode !== 0) problems.push(`relay exited ${result.exitCode}`);
  return problems;
}

/** Records a soak result as a figure for docs/RELIABILITY.md. */
export function recordSoak(
  result: SoakResult,
  options: SoakOptions,
  command: string,
  area: string,
): void {
  const { load } = result;
  recordFigure({
    area,
    tried: `${options.connections} authenticated connections, each ${options.rate ?? 10} msg/s of ${
      options.messageBytes ?? 512
    } bytes (text and binary alternating) for ${options.seconds} s${
      options.churnSeconds ? `, reconnecting every ${options.churnSeconds} s` : ""
    }, through the OpenAI route to an echo upstream; relay as its own process`,
    counts: {
      connections: load.connections,
      sessions: load.opened,
      seconds: load.seconds,
      "messages sent": load.sent,
      "echoed back": load.received,
      lost: load.lost,
      "unexpected closes": load.unexpectedCloses,
      "p50 ms": load.p50,
      "p99 ms": load.p99,
      "RSS baseline MiB": result.rssBaseline,
      "RSS peak MiB": result.rssPeak,
      "RSS after 1st half MiB": result.rssMid,
      "RSS after 2nd half MiB": result.rssAfter,
    },
    held: soakProblems(result, Number.POSITIVE_INFINITY).length === 0
      ? "zero lost, zero corrupted, zero unexpected closes, every connection released, clean exit, no secret in the output"
      : `FAILED: ${soakProblems(result, Number.POSITIVE_INFINITY).join("; ")}`,
    command,
  });
}

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`);
  return value;
}

if (import.meta.main) {
  const options: SoakOptions = {
    connections: flag(Deno.args, "connections", 500),
    seconds: flag(Deno.args, "seconds", 120),
    rate: flag(Deno.args, "rate", 10),
    messageBytes: flag(Deno.args, "bytes", 512),
    churnSeconds: flag(Deno.args, "churn", 10),
    verbose: !Deno.args.includes("--quiet"),
  };
  console.log(`soak: ${JSON.stringify(options)}`);
  const result = await runSoak(options);
  const slack = flag(Deno.args, "rss-slack-mib", 32);
  const problems = soakProblems(result, slack);
  console.log(JSON.stringify(result, null, 2));
  const command =
    `deno task soak --connections ${options.connections} --seconds ${options.seconds} --rate ${options.rate} --bytes ${options.messageBytes}`;
  recordSoak(result, options, command, "Soak");
  if (problems.length > 0) {
    console.error(`soak FAILED: ${problems.join("; ")}`);
    Deno.exit(1);
  }
  console.log("soak held");
}
