/**
 * Load generator shared by the CI load test and `deno task soak`: N
 * authenticated clients exchange numbered messages through the relay's OpenAI
 * route (echo upstream) for a bounded time, and every message is accounted for.
 * @module
 */
import { sleep } from "../helpers/ws_client.ts";

/** What {@linkcode runLoad} needs. */
export interface LoadOptions {
  /** A ws:// URL per connection (each with its own token). */
  urls: string[];
  seconds: number;
  /** Messages per second per connection. */
  rate: number;
  /** Bytes per message (text and binary alternate). */
  messageBytes: number;
  /**
   * Each client closes (1000, after every echo is back) and reconnects every
   * this many seconds, so per-connection state churns. @default no churn
   */
  churnSeconds?: number;
  /** Called every second with the live totals. */
  onTick?: (stats: LoadStats) => void;
}

/** What a load run saw. */
export interface LoadStats {
  connections: number;
  /** Sessions opened (connections plus reconnects). */
  opened: number;
  /** Connection attempts that never opened. */
  failedOpens: number;
  sent: number;
  received: number;
  /** Messages sent and never echoed back. */
  lost: number;
  /** Echoes that did not match what was sent at that position. */
  corrupted: number;
  /** Closes the client did not ask for (or not with 1000). */
  unexpectedCloses: number;
  /** The unexpected closes by "code reason". */
  unexpectedCodes: Record<string, number>;
  /** Round-trip percentiles in ms. */
  p50: number;
  p99: number;
  seconds: number;
}

const encoder = new TextEncoder();

function payload(conn: number, seq: number, bytes: number): string | Uint8Array {
  const head = `${conn}:${seq}:`;
  if (seq % 2 === 0) return head + "x".repeat(Math.max(0, bytes - head.length));
  const data = new Uint8Array(Math.max(bytes, 8));
  data.set(encoder.encode(head).subarray(0, data.byteLength));
  return data;
}

function same(a: string | ArrayBuffer, b: string | Uint8Array): boolean {
  if (typeof a === "string" || typeof b === "string") return a === b;
  const x = new Uint8Array(a);
  if (x.byteLength !== b.byteLength) return false;
  for (let i = 0; i < x.byteLength; i++) if (x[i] !== b[i]) return false;
  return true;
}

/** Runs the load and resolves once every client has closed. Never throws on relay misbehaviour: it counts it. */
export async function runLoad(options: LoadOptions): Promise<LoadStats> {
  const started = performance.now();
  const stats: LoadStats = {
    connections: options.urls.length,
    opened: 0,
    failedOpens: 0,
    sent: 0,
    received: 0,
    lost: 0,
    corrupted: 0,
    unexpectedCloses: 0,
    unexpectedCodes: {},
    p50: 0,
    p99: 0,
    seconds: 0,
  };
  const rtts: number[] = [];
  let stopping = false;

  /** One session; resolves true when it ended cleanly and the client may reconnect. */
  const one = async (url: string, index: number, until: number): Promise<boolean> => {
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    const pending: { data: string | Uint8Array; at: number }[] = [];
    let closing = false;
    let wake = () => {};
    const closed = new Promise<void>((resolve) => {
      socket.onclose = (event) => {
        if (!closing || event.code !== 1000) {
          stats.unexpectedCloses++;
          const key = `${event.code} ${event.reason}`.trim();
          stats.unexpectedCodes[key] = (stats.unexpectedCodes[key] ?? 0) + 1;
        }
        resolve();
        wake();
      };
    });
    socket.onerror = (event) => event.preventDefault();
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      const expected = pending.shift();
      stats.received++;
      if (!expected || !same(event.data, expected.data)) stats.corrupted++;
      else rtts.push(performance.now() - expected.at);
      if (pending.length === 0) wake();
    };
    const opened = await new Promise<boolean>((resolve) => {
      socket.onopen = () => resolve(true);
      closed.then(() => resolve(false));
    });
    if (!opened) {
      stats.failedOpens++;
      return false;
    }
    stats.opened++;
    // Spread the clients' sends over the first interval.
    const interval = 1000 / options.rate;
    await sleep(Math.random() * interval);
    let seq = 0;
    let next = performance.now();
    while (!stopping && performance.now() < until && socket.readyState === WebSocket.OPEN) {
      const data = payload(index, seq++, options.messageBytes);
      pending.push({ data, at: performance.now() });
      socket.send(data);
      stats.sent++;
      next += interval;
      await sleep(Math.max(0, next - performance.now()));
    }
    // Drain: every message must come back before a clean close.
    if (socket.readyState === WebSocket.OPEN && pending.length > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (wake = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, 10_000))),
      ]);
      clearTimeout(timer);
    }
    stats.lost += pending.length;
    closing = true;
    const clean = socket.readyState === WebSocket.OPEN && pending.length === 0;
    if (socket.readyState === WebSocket.OPEN) socket.close(1000, "done");
    await closed;
    return clean;
  };

  const client = async (url: string, index: number): Promise<void> => {
    const churn = (options.churnSeconds ?? Infinity) * 1000;
    while (!stopping) {
      if (!(await one(url, index, performance.now() + churn))) return;
    }
  };

  let ticker: ReturnType<typeof setInterval> | undefined;
  if (options.onTick) ticker = setInterval(() => options.onTick?.(stats), 1000);
  const stopper = setTimeout(() => (stopping = true), options.seconds * 1000);
  try {
    await Promise.all(options.urls.map((url, i) => client(url, i)));
  } finally {
    clearTimeout(stopper);
    clearInterval(ticker);
  }
  rtts.sort((a, b) => a - b);
  stats.p50 = Math.round((rtts[Math.floor(rtts.length * 0.5)] ?? 0) * 10) / 10;
  stats.p99 = Math.round((rtts[Math.floor(rtts.length * 0.99)] ?? 0) * 10) / 10;
  stats.seconds = Math.round((performance.now() - started) / 100) / 10;
  return stats;
}
