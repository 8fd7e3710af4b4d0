/**
 * What the client library's tests share: a TCP proxy that plays the network
 * between the client and the relay (one URL whose relay can change, drops,
 * and a cut right after a close notice, which is what a browser on the edge
 * runtime gets), fresh tokens from the Auth stand-in, and a recorder of what
 * a connection reports.
 * @module
 */
import {
  connect,
  type ConnectOptions,
  type RelayConnection,
  type RelayEvent,
  type RelayState,
  type StateInfo,
} from "../../client/relay_client.js";
import type { AuthStandIn } from "../stand_ins/auth.ts";
import { type RelayUnderTest, type StartOptions, startRelay } from "../helpers/relay_harness.ts";
import { until, within } from "../helpers/ws_client.ts";

/** The network between a client and a relay. */
export interface TcpProxy {
  readonly port: number;
  /** Where new connections go (a relay's port); change it to "move" the relay. */
  target: number;
  /**
   * When set, a relay-to-client text frame holding a `relay_error` notice is
   * forwarded and then both sockets are destroyed, so the client never sees
   * the close frame: it reports 1006, as Chromium does on the edge runtime.
   */
  cutAfterNotice: boolean;
  /** The HTTP request head of every forwarded connection, in order (they hold tokens: never print them). */
  readonly heads: string[];
  /** TCP connections accepted, forwarded or not. */
  readonly accepted: number;
  /** `ws://127.0.0.1:<port><path>`. */
  url(path: string): string;
  /** Destroys every connection without a close frame (a dropped network). */
  dropAll(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Deno.Conn;
  server: Deno.Conn | null;
}

const decoder = new TextDecoder();

function closeQuietly(conn: Deno.Conn | null): void {
  try {
    conn?.close();
  } catch { /* closed already */ }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) written += await conn.write(bytes.subarray(written));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** The end of an HTTP head (`\r\n\r\n`) in `bytes`, or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.byteLength; i++) {
    if (bytes[i - 3] === 13 && bytes[i - 2] === 10 && bytes[i - 1] === 13 && bytes[i] === 10) {
      return i + 1;
    }
  }
  return -1;
}

/** Length of the first whole WebSocket frame in `bytes`, with its opcode and payload; null if incomplete. */
function firstFrame(
  bytes: Uint8Array,
): { length: number; opcode: number; payload: Uint8Array } | null {
  if (bytes.byteLength < 2) return null;
  const b0 = bytes[0]!;
  const b1 = bytes[1]!;
  let length = b1 & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.byteLength < 4) return null;
    length = (bytes[2]! << 8) | bytes[3]!;
    offset = 4;
  } else if (length === 127) {
    if (bytes.byteLength < 10) return null;
    length = Number(new DataView(bytes.buffer, bytes.byteOffset + 2, 8).getBigUint64(0));
    offset = 10;
  }
  if (b1 & 0x80) offset += 4; // a masked frame (never from a server)
  if (bytes.byteLength < offset + length) return null;
  return {
    length: offset + length,
    opcode: b0 & 0x0f,
    payload: bytes.subarray(offset, offset + length),
  };
}

/** Starts a proxy on 127.0.0.1:0 in front of `target`. */
export function startProxy(target: number): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pairs = new Set<Pair>();
  const tasks = new Set<Promise<void>>();
  const heads: string[] = [];

  const cut = (pair: Pair) => {
    closeQuietly(pair.client);
    closeQuietly(pair.server);
  };

  const up = async (pair: Pair, server: Deno.Conn) => {
    let head: Uint8Array | null = new Uint8Array(0);
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await pair.client.read(buffer);
      if (n === null) return;
      const chunk = buffer.slice(0, n);
      if (head !== null) {
        head = concat(head, chunk);
        const end = headEnd(head);
        if (end >= 0) {
          heads.push(decoder.decode(head.subarray(0, end)));
          head = null;
        }
      }
      await writeAll(server, chunk);
    }
  };

  const down = async (pair: Pair, server: Deno.Conn) => {
    let pending: Uint8Array = new Uint8Array(0);
    let headDone = false;
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await server.read(buffer);
      if (n === null) return;
      pending = concat(pending, buffer.subarray(0, n));
      if (!headDone) {
        const end = headEnd(pending);
        if (end < 0) continue;
        await writeAll(pair.client, pending.subarray(0, end));
        pending = pending.slice(end);
        headDone = true;
      }
      // Frame by frame, so a cut can land exactly after the notice.
      for (let frame = firstFrame(pending); frame !== null; frame = firstFrame(pending)) {
        await writeAll(pair.client, pending.subarray(0, frame.length));
        const notice = frame.opcode === 1 &&
          decoder.decode(frame.payload).includes('"relay_error"');
        pending = pending.slice(frame.length);
        if (notice && proxy.cutAfterNotice) {
          cut(pair);
          return;
        }
      }
    }
  };

  let accepted = 0;
  const handle = async (client: Deno.Conn) => {
    accepted++;
    const pair: Pair = { client, server: null };
    pairs.add(pair);
    try {
      try {
        pair.server = await Deno.connect({ hostname: "127.0.0.1", port: proxy.target });
      } catch {
        return; // nothing listens there: the client sees its handshake fail
      }
      const server = pair.server;
      const pumps = [up(pair, server), down(pair, server)];
      // Either direction ending ends both, as a WebSocket's TCP connection does.
      await Promise.race(pumps).catch(() => {});
      cut(pair);
      await Promise.allSettled(pumps);
    } finally {
      cut(pair);
      pairs.delete(pair);
    }
  };

  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return;
      }
      const task: Promise<void> = handle(client).catch(() => {}).finally(() => tasks.delete(task));
      tasks.add(task);
    }
  })();

  const proxy: TcpProxy = {
    port: (listener.addr as Deno.NetAddr).port,
    target,
    cutAfterNotice: false,
    heads,
    get accepted() {
      return accepted;
    },
    url: (path) => `ws://127.0.0.1:${proxy.port}${path}`,
    dropAll: () => pairs.forEach(cut),
    close: async () => {
      try {
        listener.close();
      } catch { /* closed already */ }
      await accepting;
      pairs.forEach(cut);
      // The pump still reading the other socket ends once it is closed.
      await Promise.allSettled([...tasks]);
    },
  };
  return proxy;
}

/** A port nobody listens on. */
export function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Tokens from the Auth stand-in, a new one per call, as supabase-js would hand out. */
export interface Tokens {
  readonly getToken: () => Promise<string>;
  /** Every token handed out, in order. */
  readonly issued: string[];
  /** Lifetimes (seconds) for the next tokens, used first to last; then an hour. */
  readonly lifetimes: number[];
}

/** A token source backed by `auth.issueDevToken()`. */
export function tokensFrom(auth: AuthStandIn): Tokens {
  const issued: string[] = [];
  const lifetimes: number[] = [];
  return {
    issued,
    lifetimes,
    getToken: async () => {
      const session = await auth.issueDevToken({ expiresInS: lifetimes.shift() ?? 3600 });
      issued.push(session.access_token);
      return session.access_token;
    },
  };
}

/** A connection and everything it reported. */
export interface Recorded {
  readonly relay: RelayConnection;
  readonly states: { state: RelayState; info: StateInfo }[];
  readonly events: RelayEvent[];
  /** States named `state` so far. */
  count(state: RelayState): number;
  /** Waits for the `n`th report of `state` (1-based) and returns its info. */
  waitState(state: RelayState, n?: number, ms?: number): Promise<StateInfo>;
  /** Waits (bounded) for the conversation's end and returns the `closed` info. */
  waitClosed(ms?: number): Promise<StateInfo>;
  /** Waits until `condition` holds. */
  waitFor(condition: () => boolean, what: string, ms?: number): Promise<void>;
}

/** Fast reconnects for tests: 20, 40, 80 ... ms, at most 200, no jitter. */
export const FAST_BACKOFF = { baseMs: 20, factor: 2, capMs: 200, jitter: 0 } as const;

/**
 * Connects with `options` (fast backoff unless given) and records what it
 * reports; `onState` / `onEvent` in `options` still run, after recording.
 */
export function record(options: ConnectOptions): Recorded {
  const states: { state: RelayState; info: StateInfo }[] = [];
  const events: RelayEvent[] = [];
  const relay = connect({
    backoff: FAST_BACKOFF,
    ...options,
    onState: (state, info) => {
      states.push({ state, info });
      options.onState?.(state, info);
    },
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.(event);
    },
  });
  const count = (state: RelayState) => states.filter((s) => s.state === state).length;
  return {
    relay,
    states,
    events,
    count,
    waitState: async (state, n = 1, ms = 8000) => {
      const what = () =>
        `${state} #${n}; got ${JSON.stringify(states.map((s) => [s.state, s.info.why]))}`;
      await until(() => count(state) >= n, ms, `${state} #${n}`).catch(() => {
        throw new Error(`timed out waiting for ${what()}`);
      });
      return states.filter((s) => s.state === state)[n - 1]!.info;
    },
    waitClosed: (ms = 8000) => within(relay.closed, ms, "the closed state"),
    waitFor: (condition, what, ms = 8000) => until(condition, ms, what),
  };
}

/** The `text` of each `conversation.item.create` a stand-in connection received, in order. */
export function itemTexts(received: { type: string; data: string | Uint8Array }[]): string[] {
  const texts: string[] = [];
  for (const message of received) {
    if (message.type !== "text") continue;
    const event = JSON.parse(message.data as string);
    if (event.type !== "conversation.item.create") continue;
    texts.push(event.item?.content?.[0]?.text);
  }
  return texts;
}

/** A `conversation.item.create` with one user text. */
export function userText(text: string): Record<string, unknown> {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  };
}

/** A relay, the network in front of it and tokens, for one test. */
export interface Stack {
  readonly relay: RelayUnderTest;
  readonly proxy: TcpProxy;
  readonly tokens: Tokens;
  /** Starts another relay on the same stand-ins (and settings); stopped by the stack. */
  another(): Promise<RelayUnderTest>;
  /** Records a client; the stack closes it if the test did not. */
  client(options: ConnectOptions): Recorded;
}

/** How a stack's relays start: the harness's `startRelay`, or one with more wired in. */
export type RelayStarter = (options: StartOptions) => Promise<RelayUnderTest>;

/**
 * Runs `body` with a relay whose OpenAI stand-in speaks Realtime, a proxy in
 * front of it and fresh tokens; always stops clients, proxy and relays, in
 * that order, and reports the body's failure over a cleanup's.
 */
export async function withStack(
  env: Record<string, string>,
  body: (stack: Stack) => Promise<void>,
  start: RelayStarter = startRelay,
): Promise<void> {
  const relay = await start({ env });
  relay.openai.behaviour = { kind: "realtime" };
  const proxy = startProxy(relay.port);
  const others: RelayUnderTest[] = [];
  const clients: Recorded[] = [];
  const stack: Stack = {
    relay,
    proxy,
    tokens: tokensFrom(relay.auth),
    another: async () => {
      const other = await start({ env, auth: relay.auth, openai: relay.openai });
      others.push(other);
      return other;
    },
    client: (options) => {
      const recorded = record(options);
      clients.push(recorded);
      return recorded;
    },
  };
  let failure: unknown = null;
  try {
    await body(stack);
  } catch (error) {
    failure = error;
  }
  // Shut down before closing: features flush and let go of what they hold (a database pool).
  const stop = (r: RelayUnderTest) => async () => {
    await r.relay.shutdown();
    await r.close();
  };
  const steps = [
    () => Promise.all(clients.map((c) => c.relay.close())),
    () => proxy.close(),
    ...others.map(stop),
    stop(relay),
  ];
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== null) throw failure;
}
