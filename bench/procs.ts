/**
 * Processes for the benches: start pinned to a core with a high file limit,
 * wait for the port, read RSS and CPU from /proc, stop.
 * @module
 */

/** A running server process. */
export interface Server {
  readonly name: string;
  readonly pid: number;
  readonly child: Deno.ChildProcess;
  stop(): Promise<void>;
}

/** Starts `argv` pinned to `core` with `ulimit -n 65536`; resolves once `port` accepts TCP. */
export async function startServer(
  name: string,
  argv: string[],
  opts: {
    port: number;
    core: number;
    env?: Record<string, string>;
    cwd?: string;
  },
): Promise<Server> {
  const quoted = argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  // exec keeps the pid: the pid we read /proc for is the server's own.
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec taskset -c ${opts.core} ${quoted}`,
    ],
    env: opts.env ?? {},
    stdin: "null",
    // BENCH_SERVER_LOG=<dir> keeps each server's stdout (e.g. --trace-gc lines) there.
    stdout: Deno.env.get("BENCH_SERVER_LOG") ? "piped" : "null",
    stderr: "piped",
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  }).spawn();
  const errors: string[] = [];
  const decoder = new TextDecoder();
  child.stderr.pipeTo(
    new WritableStream({ write: (c) => void errors.push(decoder.decode(c)) }),
  ).catch(() => {});
  const logDir = Deno.env.get("BENCH_SERVER_LOG");
  if (logDir && child.stdout) {
    const file = await Deno.open(`${logDir}/${name}-${child.pid}.log`, {
      create: true,
      write: true,
    });
    child.stdout.pipeTo(file.writable).catch(() => {});
  }
  let exited = false;
  child.status.then(() => (exited = true));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) {
      throw new Error(
        `${name} exited at start: ${errors.join("").slice(0, 2000)}`,
      );
    }
    try {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: opts.port,
      });
      conn.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        throw new Error(`${name} did not listen on ${opts.port}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    name,
    pid: child.pid,
    child,
    async stop() {
      if (exited) return;
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 6000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

function childrenOf(pid: number): number[] {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
      .trim();
    return text ? text.split(/\s+/).map(Number) : [];
  } catch {
    return [];
  }
}

/** The pid and its descendants (nginx's master and worker). */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

/** Resident memory of the process tree, in bytes. */
export function rssBytes(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      const status = Deno.readTextFileSync(`/proc/${p}/status`);
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      total += kb * 1024;
    } catch { /* exited */ }
  }
  return total;
}

const CLOCK_TICKS = 100;

/** User + system CPU seconds of the process tree (/proc/<pid>/stat utime+stime). */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
      // Fields after the ")" of the command name; utime and stime are 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* exited */ }
  }
  return ticks / CLOCK_TICKS;
}
