/**
 * Shared pieces of the reliability suite: a relay wrapper that checks the
 * telemetry for secrets after every run, a figures recorder for
 * `deno task proof`, message comparison, and a relay run as a subprocess
 * (for RSS measurements and for its raw stdout/stderr).
 * @module
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, type StartOptions, withRelay } from "../helpers/relay_harness.ts";
import { type Message, sleep } from "../helpers/ws_client.ts";
import type { ReceivedMessage } from "../stand_ins/openai.ts";

/** One row of docs/RELIABILITY.md. */
export interface Figure {
  /** Area of the suite, e.g. "Fidelity". */
  area: string;
  /** What was tried, in words. */
  tried: string;
  /** Counts, e.g. `{ cases: 12, messages: 10000, connections: 50, seconds: 5 }`. */
  counts: Record<string, number>;
  /** What held, in words. */
  held: string;
  /** The command that reproduces the row. */
  command: string;
}

/** Appends a figure to `$RELAY_PROOF_OUT` (one JSON per line) when `deno task proof` runs. */
export function recordFigure(figure: Figure): void {
  const out = Deno.env.get("RELAY_PROOF_OUT");
  if (!out) return;
  Deno.writeTextFileSync(out, JSON.stringify(figure) + "\n", { append: true });
}

/** The `deno test` command for one file of this suite, with `--filter` when given. */
export function testCommand(file: string, filter?: string): string {
  const f = filter === undefined ? "" : ` --filter "${filter}"`;
  return `deno test -A tests/reliability/${file}${f}`;
}

/** Marker strings put into payloads so the secrets check can look for them. */
export const PAYLOAD_MARKER = "PAYLOAD-MARKER-7f3a";

/**
 * Runs `body` against a fresh in-process relay, then asserts that no telemetry
 * line holds a token, key or payload marker registered through `secret()`.
 */
export async function withCheckedRelay(
  options: StartOptions,
  body: (relay: RelayUnderTest, secret: (value: string) => string) => Promise<void>,
): Promise<void> {
  const secrets = new Set<string>([PAYLOAD_MARKER]);
  let lines: string[] = [];
  await withRelay(options, async (relay) => {
    lines = relay.lines;
    secrets.add(relay.openai.apiKey);
    secrets.add(relay.auth.publishableKey);
    secrets.add(relay.auth.anonKey);
    secrets.add(relay.auth.serviceRoleKey);
    secrets.add(relay.auth.hsSecret);
    await body(relay, (value) => {
      if (value.length >= 8) secrets.add(value);
      return value;
    });
  });
  assertNoSecrets(lines.join("\n"), secrets, "telemetry");
}

/** Fails when `output` contains any of `secrets` (or a JWT's signature segment). */
export function assertNoSecrets(output: string, secrets: Iterable<string>, what: string): void {
  for (const secret of secrets) {
    if (secret.length < 8) continue;
    assert.ok(!output.includes(secret), `${what} leaked a secret (${secret.length} chars)`);
    const parts = secret.split(".");
    const signature = parts[2];
    if (parts.length === 3 && signature && signature.length >= 16) {
      assert.ok(!output.includes(signature), `${what} leaked a token signature`);
    }
  }
}

const encoder = new TextEncoder();

/** The bytes of a message as it went over the wire. */
export function bytesOf(message: Message | Uint8Array): Uint8Array {
  if (typeof message === "string") return encoder.encode(message);
  return message instanceof Uint8Array ? message : new Uint8Array(message);
}

/** Whether two byte arrays are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `actual` (as a client received it) is `expected`: same type, same bytes. */
export function sameMessage(actual: Message | undefined, expected: Message | Uint8Array): boolean {
  if (actual === undefined) return false;
  if ((typeof actual === "string") !== (typeof expected === "string")) return false;
  return sameBytes(bytesOf(actual), bytesOf(expected));
}

/** Whether what the upstream stand-in recorded is `expected`: same type, same bytes. */
export function sameUpstream(actual: ReceivedMessage | undefined, expected: Message): boolean {
  if (actual === undefined) return false;
  if (actual.type !== (typeof expected === "string" ? "text" : "binary")) return false;
  return sameBytes(bytesOf(actual.data), bytesOf(expected));
}

/** Resident set size of process `pid` in bytes (Linux /proc), or null elsewhere. */
export function rssOf(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

/** Whether RSS can be measured here. */
export const canMeasureRss = rssOf(Deno.pid) !== null;

/** A relay running as its own process: `deno run -A supabase/functions/relay/index.ts`. */
export interface RelayProcess {
  readonly pid: number;
  readonly port: number;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  rss(): number;
  /** `ws://127.0.0.1:<port><path>` with `query` appended. */
  wsUrl(path: string, query?: Record<string, string>): string;
  /** SIGTERM, then waits for exit; returns the exit code. */
  stop(): Promise<number>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts the relay entrypoint as a subprocess with `env` and waits until /relay/health answers. */
export async function startRelayProcess(env: Record<string, string>): Promise<RelayProcess> {
  const port = freePort();
  const entry = new URL("../../supabase/functions/relay/index.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", entry],
    env: { ...env, PORT: String(port), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const chunks: string[] = [];
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) chunks.push(text);
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const status = child.status;
  let exited = false;
  status.then(() => (exited = true));
  const process: RelayProcess = {
    pid: child.pid,
    port,
    output: () => chunks.join(""),
    rss: () => rssOf(child.pid) ?? 0,
    wsUrl: (path, query = {}) => {
      const url = new URL(`ws://127.0.0.1:${port}${path}`);
      for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
      return url.href;
    },
    stop: async () => {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
      }
      const { code } = await status;
      await drained;
      return code;
    },
  };
  try {
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) {
      const ok = await fetch(`http://127.0.0.1:${port}/relay/health`)
        .then(async (r) => (await r.body?.cancel(), r.ok), () => false);
      if (ok) return process;
      await sleep(50);
    }
    if (exited) throw new Error(`relay exited early: ${chunks.join("")}`);
    throw new Error("relay never answered /relay/health");
  } catch (error) {
    await process.stop();
    throw error;
  }
}
