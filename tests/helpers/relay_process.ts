/**
 * The relay's real entrypoint run as a subprocess, for what only a process
 * shows: its RSS, its raw stdout/stderr, and how it stops on SIGTERM.
 * @module
 */
import { sleep } from "./ws_client.ts";

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

/** A port nobody listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** How a relay process is started. */
export interface RelayProcessOptions {
  /**
   * The port to listen on (default a free one). Giving the port of a process
   * that was stopped starts its replacement where clients already connect.
   */
  readonly port?: number | undefined;
}

/** Starts the relay entrypoint as a subprocess with `env` and waits until /relay/health answers. */
export async function startRelayProcess(
  env: Record<string, string>,
  options: RelayProcessOptions = {},
): Promise<RelayProcess> {
  const port = options.port ?? freePort();
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
