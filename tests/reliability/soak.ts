/**
 * Load and soak against the relay entrypoint run as its own process:
 * `deno task soak --connections 500 --seconds 120 [--rate 10] [--bytes 512]`.
 * Stand-ins for Supabase Auth and OpenAI run in this process on 127.0.0.1.
 * Exits non-zero when a message was lost or corrupted, a connection closed
 * unexpectedly, or the relay's RSS did not come back near its baseline.
 * @module
 */
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
  rssAfter: number;
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
    SUPABASE_URL: auth.url,
    SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_REALTIME_URL: openai.url,
    RELAY_MAX_CONNECTIONS: String(options.connections + 10),
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

    // Warm-up: the runtime's JIT, allocator and pools settle before the baseline.
    await runLoad({
      urls: urls.slice(0, Math.min(urls.length, 50)),
      seconds: 1,
      rate,
      messageBytes,
    });
    await drained();
    await sleep(500);
    const rssBaseline = relay.rss();
    let rssPeak = rssBaseline;
    const load = await runLoad({
      urls,
      seconds: options.seconds,
      rate,
      messageBytes,
      onTick: (s) => {
        rssPeak = Math.max(rssPeak, relay.rss());
        if (options.verbose) {
          console.log(
            `sent ${s.sent} received ${s.received} open ${s.opened} unexpected ${s.unexpectedCloses} rss ${
              round(relay.rss())
            } MiB`,
          );
        }
      },
    });
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
    return {
      load,
      rssBaseline: round(rssBaseline),
      rssPeak: round(rssPeak),
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

/** Problems with a soak result, empty when it held. `rssSlackMiB` is how far above baseline RSS may end. */
export function soakProblems(result: SoakResult, rssSlackMiB: number): string[] {
  const problems: string[] = [];
  const { load } = result;
  if (load.opened !== load.connections) {
    problems.push(`${load.connections - load.opened} never opened`);
  }
  if (load.unexpectedCloses > 0) problems.push(`${load.unexpectedCloses} unexpected closes`);
  if (load.lost > 0) problems.push(`${load.lost} messages lost`);
  if (load.corrupted > 0) problems.push(`${load.corrupted} messages corrupted`);
  if (load.received !== load.sent) problems.push(`sent ${load.sent}, received ${load.received}`);
  if (result.leftOpen > 0) problems.push(`${result.leftOpen} connections left open`);
  if (result.rssAfter > result.rssBaseline + rssSlackMiB) {
    problems.push(`RSS ${result.rssAfter} MiB after, baseline ${result.rssBaseline} MiB`);
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
    } bytes (text and binary alternating) for ${options.seconds} s, through the OpenAI route to an echo upstream; relay as its own process`,
    counts: {
      connections: load.connections,
      seconds: load.seconds,
      "messages sent": load.sent,
      "echoed back": load.received,
      lost: load.lost,
      "unexpected closes": load.unexpectedCloses,
      "p50 ms": load.p50,
      "p99 ms": load.p99,
      "RSS baseline MiB": result.rssBaseline,
      "RSS peak MiB": result.rssPeak,
      "RSS after MiB": result.rssAfter,
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
    verbose: !Deno.args.includes("--quiet"),
  };
  console.log(`soak: ${JSON.stringify(options)}`);
  const result = await runSoak(options);
  const slack = flag(Deno.args, "rss-slack-mib", 64);
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
