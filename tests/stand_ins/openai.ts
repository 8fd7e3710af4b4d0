/**
 * A local stand-in for OpenAI's GA Realtime WebSocket endpoint, written on raw
 * TCP so tests control what a WebSocket library would hide: a handshake that
 * never answers, an HTTP refusal, a TCP drop without a close frame, any close
 * code (even reserved ones), slow frames, and a peer that stops reading.
 */

import {
  acceptKey,
  BufferedReader,
  closePayload,
  encodeFrame,
  FrameReader,
  MessageReader,
  Opcode,
  parseHttpHead,
  ProtocolError,
  splitHeaderList,
  writeAll,
} from "./ws_frames.ts";
import {
  type Answer,
  errorEvent,
  HANDSHAKE_ERRORS,
  invalidIntentError,
  RealtimeConversation,
  type ResponseRun,
  type SessionType,
} from "./realtime_events.ts";

export type { SessionType } from "./realtime_events.ts";

/** What the stand-in does with each new connection. */
export type Behaviour =
  /** Every message comes back byte-identical with the same frame type (default). */
  | { kind: "echo" }
  /**
   * Speaks the GA Realtime events (see realtime_events.ts): a conversation
   * for `?model=`, a transcription session for `?intent=transcription`
   * without a model. `pace` and `vad`
   * override the stand-in's {@linkcode OpenAIStandIn.pace} and
   * {@linkcode OpenAIStandIn.vad} for these connections.
   */
  | { kind: "realtime"; pace?: Pace; vad?: boolean }
  /** Answers the upgrade with this HTTP status (default 503) and a JSON error body. */
  | { kind: "refuse"; status?: number }
  /** Accepts TCP, reads the request, never answers. */
  | { kind: "hang" }
  /**
   * Sends a close frame after `afterMessages` client messages (default 0: right
   * after the upgrade). No `code`: empty payload (the peer sees 1005). Any code
   * and any reason bytes are sent as given. `raw: true` drops TCP right after
   * the close frame instead of waiting for the peer's reply.
   */
  | {
    kind: "close";
    code?: number;
    reason?: string | Uint8Array;
    afterMessages?: number;
    raw?: boolean;
  }
  /** Destroys TCP without a close frame after `afterMessages` client messages (default 0). */
  | { kind: "drop"; afterMessages?: number }
  /** Sends binary messages back to back; each write waits only for the socket (count default: until closed). */
  | { kind: "flood"; messageBytes: number; count?: number }
  /** Upgrades, then never reads from the socket again (slow reader). */
  | { kind: "stall" };

/**
 * How a `realtime` response streams: `instant` (default) sends all its events
 * at once, so it can never be cancelled; `realtime` sends audio as fast as it
 * plays (100 ms of audio every 100 ms), so a client can cancel or truncate it.
 */
export type Pace = "instant" | "realtime";

/** A message received from the client. */
export interface ReceivedMessage {
  type: "text" | "binary";
  data: string | Uint8Array;
}

/** Everything known about one connection attempt, plus controls for live ones. */
export interface ConnectionRecord {
  /** Path and query as requested, e.g. "/v1/realtime?model=gpt-realtime". */
  url: string;
  /** The query of `url`, parsed: `searchParams.get("intent")`, `.get("model")`. */
  searchParams: URLSearchParams;
  /**
   * The kind of session OpenAI opens for this URL, once the handshake is
   * accepted (unset when it is refused): `transcription` for
   * `?intent=transcription` without a model, `realtime` (a conversation) for
   * `?model=`, with or without an intent. Set whatever the behaviour.
   */
  sessionType?: SessionType;
  method: string;
  /** Offered Sec-WebSocket-Protocol entries, in order. */
  protocols: string[];
  /** Request headers, lower-cased names. */
  headers: Record<string, string>;
  /** The protocol echoed in the 101 answer, if any. */
  selectedProtocol?: string;
  /** HTTP status answered (101 when upgraded); unset while hanging. */
  status?: number;
  /** The behaviour that applied to this connection. */
  behaviour: Behaviour;
  received: ReceivedMessage[];
  /** The client's close frame, if one arrived. */
  closeReceived?: { code?: number; reason: string };
  /** The close frame this side sent, if any. */
  closeSent?: { code?: number; reason: string };
  /** Resolves once the TCP connection is closed (by either side). */
  closed: Promise<void>;
  /** Sends a text (string) or binary (bytes) message on an upgraded connection. */
  send(data: string | Uint8Array): Promise<void>;
  /** Starts the closing handshake with any code (no code: empty payload). */
  close(
    code?: number,
    reason?: string | Uint8Array,
    opts?: { raw?: boolean },
  ): Promise<void>;
  /** Destroys the TCP connection without a close frame. */
  drop(): void;
  /**
   * The `realtime` behaviour's conversation, once upgraded: its `type`
   * (`realtime` or `transcription`), effective `session`, `items`,
   * `responses` (each with its effective `config`, status and usage; always
   * none in a transcription session) and `lastResponse`, as the stand-in
   * holds them.
   */
  realtime?: RealtimeConversation;
}

/** The running stand-in. */
export interface OpenAIStandIn {
  /** ws://127.0.0.1:<port>/v1/realtime, for OPENAI_REALTIME_URL. */
  readonly url: string;
  readonly port: number;
  /** The only API key accepted. */
  readonly apiKey: string;
  /** Applied to each new connection. */
  behaviour: Behaviour;
  /** Delay before answering the upgrade (default 0). */
  handshakeDelayMs: number;
  /** Delay between the events of one realtime answer, to stream slowly (default 0). */
  eventDelayMs: number;
  /** How `realtime` responses stream (default `instant`); a behaviour's `pace` wins. */
  pace: Pace;
  /**
   * Whether `server_vad` turn detection acts on appended audio (default
   * false: the client commits). On: speech on energy starts a turn
   * (`input_audio_buffer.speech_started`, interrupting an answer being spoken),
   * silence ends it (`speech_stopped`, a commit, a response). A behaviour's
   * `vad` wins.
   */
  vad: boolean;
  /**
   * Transcripts for audio committed on any `realtime` connection (conversation
   * or transcription session alike), first come
   * first served (default empty: "<N> ms of audio"). A connection's own
   * `realtime.nextTranscripts` and a `#transcript:` marker in the audio come
   * first.
   */
  readonly transcripts: string[];
  readonly connections: ConnectionRecord[];
  /** Resolves once `n` connections have sent a full request head. */
  waitForConnections(n: number, timeoutMs?: number): Promise<void>;
  /**
   * Closes the listener and every live connection, clears every timer.
   * On Deno 2.1.4 a write blocked on a peer that does not read (flood) cannot
   * be cancelled: close the peer first, or this waits until it goes away.
   */
  close(): Promise<void>;
}

/** Options for startOpenAIStandIn. */
export interface OpenAIStandInOptions {
  apiKey?: string;
  port?: number;
  behaviour?: Behaviour;
  /**
   * How a wrong or missing key is refused. "in-band" (default, what the GA
   * endpoint does): upgrade, send an `error` event, close 3000
   * `invalid_request_error.invalid_api_key`. "http": answer 401 with OpenAI's
   * JSON error instead of upgrading.
   */
  authFailure?: "in-band" | "http";
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** Starts the stand-in on 127.0.0.1 (port 0 picks a free one). */
export function startOpenAIStandIn(
  opts: OpenAIStandInOptions = {},
): Promise<OpenAIStandIn> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: opts.port ?? 0 });
  return Promise.resolve(new StandIn(listener, opts));
}

class StandIn implements OpenAIStandIn {
  readonly url: string;
  readonly port: number;
  readonly apiKey: string;
  behaviour: Behaviour;
  handshakeDelayMs = 0;
  eventDelayMs = 0;
  pace: Pace = "instant";
  vad = false;
  readonly transcripts: string[] = [];
  readonly connections: ConnectionRecord[] = [];
  readonly #authFailure: "in-band" | "http";
  readonly #listener: Deno.Listener;
  readonly #shutdown = new AbortController();
  readonly #handlers = new Set<Promise<void>>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #waiters = new Set<() => void>();
  readonly #acceptLoop: Promise<void>;
  #closed = false;

  constructor(listener: Deno.Listener, opts: OpenAIStandInOptions) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.url = `ws://127.0.0.1:${this.port}/v1/realtime`;
    this.apiKey = opts.apiKey ?? `sk-test-${crypto.randomUUID()}`;
    this.behaviour = opts.behaviour ?? { kind: "echo" };
    this.#authFailure = opts.authFailure ?? "in-band";
    this.#acceptLoop = this.#accept();
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      // OpenAI's servers answer without Nagle's delay; with it, events written
      // back to back waited on delayed ACKs (30-40 ms pauses inside one answer).
      (conn as Deno.TcpConn).setNoDelay(true);
      this.#conns.add(conn);
      const h: Promise<void> = this.#handle(conn)
        .catch(() => {})
        .finally(() => {
          this.#conns.delete(conn);
          this.#handlers.delete(h);
        });
      this.#handlers.add(h);
    }
  }

  waitForConnections(n: number, timeoutMs = 5000): Promise<void> {
    if (this.connections.length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.connections.length >= n) done(undefined);
        else if (this.#closed) done(new Error("stand-in closed"));
      };
      const done = (err: Error | undefined) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () =>
          done(
            new Error(
              `expected ${n} connections within ${timeoutMs} ms, got ${this.connections.length}`,
            ),
          ),
        timeoutMs,
      );
      this.#waiters.add(check);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#shutdown.abort();
    for (const w of [...this.#waiters]) w();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    for (const c of this.#conns) closeQuietly(c);
    await Promise.allSettled([...this.#handlers]);
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    const reader = new BufferedReader(conn);
    let head: string | null;
    try {
      head = await reader.readHead();
    } catch {
      head = null;
    }
    if (head === null) {
      closeQuietly(conn);
      return;
    }
    const req = parseHttpHead(head);
    const [method = "", target = "", version = ""] = req.startLine.split(" ");
    const behaviour = this.behaviour;
    let resolveClosed!: () => void;
    const closedP = new Promise<void>((r) => (resolveClosed = r));
    const peer = new Peer(conn, reader, this.#shutdown.signal);
    const record: ConnectionRecord = {
      url: target,
      searchParams: new URL(target, "http://localhost").searchParams,
      method,
      protocols: splitHeaderList(req.headers["sec-websocket-protocol"]),
      headers: req.headers,
      behaviour,
      received: [],
      closed: closedP,
      send: (data) => peer.send(data),
      close: (code, reason, o) => peer.close(code, reason ?? "", o?.raw ?? false),
      drop: () => peer.drop(),
    };
    peer.record = record;
    this.connections.push(record);
    for (const w of [...this.#waiters]) w();
    try {
      await this.#serve(peer, record, behaviour, method, target, version);
    } finally {
      peer.drop();
      resolveClosed();
    }
  }

  async #serve(
    peer: Peer,
    record: ConnectionRecord,
    behaviour: Behaviour,
    method: string,
    target: string,
    version: string,
  ): Promise<void> {
    const signal = this.#shutdown.signal;
    if (behaviour.kind === "hang") {
      // Never answer; keep reading only to notice when the client gives up.
      await peer.drainUntilEof();
      return;
    }
    if (this.handshakeDelayMs > 0) {
      await delay(this.handshakeDelayMs, signal);
    }
    if (behaviour.kind === "refuse") {
      const status = behaviour.status ?? 503;
      await peer.httpError(status, refusalBody(status));
      record.status = status;
      return;
    }
    const h = record.headers;
    const url = new URL(target, "http://localhost");
    if (method !== "GET" || version !== "HTTP/1.1") {
      record.status = 400;
      await peer.httpError(400, openaiHttpError("Invalid request.", null));
      return;
    }
    if (url.pathname !== "/v1/realtime") {
      record.status = 404;
      await peer.httpError(
        404,
        openaiHttpError(`Invalid URL (GET ${url.pathname})`, null),
      );
      return;
    }
    const key = h["sec-websocket-key"];
    if (
      h["upgrade"]?.toLowerCase() !== "websocket" ||
      !splitHeaderList(h["connection"]?.toLowerCase()).includes("upgrade") ||
      key === undefined || h["sec-websocket-version"] !== "13"
    ) {
      record.status = 400;
      await peer.httpError(
        400,
        openaiHttpError("Expected a WebSocket upgrade request.", null),
      );
      return;
    }

    const bearer = /^Bearer\s+(.+)$/i.exec(h["authorization"] ?? "")?.[1];
    const protocolKey = record.protocols
      .find((p) => p.startsWith("openai-insecure-api-key."))
      ?.slice("openai-insecure-api-key.".length);
    const keyOk = (bearer ?? protocolKey) === this.apiKey;
    if (!keyOk && this.#authFailure === "http") {
      record.status = 401;
      await peer.httpError(
        401,
        openaiHttpError(
          HANDSHAKE_ERRORS.invalidKey.message,
          "invalid_api_key",
        ),
      );
      return;
    }

    // The server speaks only "realtime"; it never echoes the key entry.
    const selected = record.protocols.includes("realtime") ? "realtime" : undefined;
    const lines = [
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Accept: ${await acceptKey(key)}`,
    ];
    if (selected) {
      lines.push(`Sec-WebSocket-Protocol: ${selected}`);
      record.selectedProtocol = selected;
    }
    await peer.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
    record.status = 101;

    const beta = "openai-beta" in h ||
      record.protocols.some((p) => p.startsWith("openai-beta."));
    // A model makes a conversation session, with or without an intent; only
    // `?intent=transcription` without a model makes a transcription session
    // (OpenAI's Realtime transcription guide). Another intent is refused.
    const model = url.searchParams.get("model");
    const intent = url.searchParams.get("intent");
    const refusal = beta
      ? HANDSHAKE_ERRORS.beta
      : !keyOk
      ? HANDSHAKE_ERRORS.invalidKey
      : intent !== null && intent !== "transcription"
      ? invalidIntentError(intent)
      : !model && intent === null
      ? HANDSHAKE_ERRORS.missingModel
      : undefined;
    if (refusal) {
      await peer.sendJson(errorEvent(refusal.code, refusal.message));
      // Not awaited: the read loop must run to receive the client's reply.
      void peer.close(refusal.closeCode, refusal.closeReason, false);
      await peer.readLoop(() => {});
      return;
    }
    const sessionType: SessionType = model ? "realtime" : "transcription";
    record.sessionType = sessionType;

    switch (behaviour.kind) {
      case "echo":
        await peer.readLoop((m) => {
          void peer.send(m.data).catch(() => {});
        });
        return;
      case "close":
      case "drop": {
        const after = behaviour.afterMessages ?? 0;
        let seen = 0;
        const act = () => {
          if (behaviour.kind === "drop") peer.drop();
          else {
            void peer.close(
              behaviour.code,
              behaviour.reason ?? "",
              behaviour.raw ?? false,
            ).catch(() => {});
          }
        };
        if (after === 0) act();
        await peer.readLoop(() => {
          if (++seen === after) act();
        });
        return;
      }
      case "flood": {
        const loop = peer.readLoop(() => {});
        const payload = new Uint8Array(behaviour.messageBytes).fill(0x61);
        const frame = encodeFrame({ opcode: Opcode.Binary, payload });
        const count = behaviour.count ?? Infinity;
        try {
          for (let i = 0; i < count && !peer.closing && !signal.aborted; i++) {
            await peer.write(frame);
          }
        } catch { /* peer gone */ }
        await loop;
        return;
      }
      case "stall":
        // Upgraded, then not a single read: TCP backpressure builds on the peer.
        await peer.waitForEnd();
        return;
      case "realtime": {
        const conv = new RealtimeConversation(model ?? "", {
          takeTranscript: () => this.transcripts.shift(),
          vad: behaviour.vad ?? this.vad,
          type: sessionType,
        });
        record.realtime = conv;
        await peer.sendJson(conv.created());
        // Answers go out in order on one lane. A response streams on its own
        // lane once the answers before it are out, so the client's next events
        // (a cancel, a truncate) are answered while it speaks, as OpenAI does.
        let lane = Promise.resolve();
        const streams = new Set<Promise<void>>();
        await peer.readLoop((m) => {
          const answer: Answer = m.type === "text"
            ? conv.handle(m.data as string)
            : { events: conv.handleBinary(), runs: [] };
          const pace = behaviour.pace ?? this.pace;
          const instant = pace === "instant" && this.eventDelayMs === 0;
          // Instant responses are drained here and now: nothing can interrupt them.
          const now = [...answer.events, ...(instant ? answer.runs.flatMap((r) => r.drain()) : [])];
          lane = lane.then(() => this.#play(peer, now)).catch(() => {});
          if (instant) return;
          for (const run of answer.runs) {
            const s: Promise<void> = lane.then(() => this.#stream(peer, run, pace))
              .catch(() => {})
              .finally(() => streams.delete(s));
            streams.add(s);
          }
        });
        await lane;
        await Promise.all([...streams]);
        return;
      }
    }
  }

  /** Sends `events` in order, `eventDelayMs` apart. */
  async #play(peer: Peer, events: readonly Record<string, unknown>[]): Promise<void> {
    for (const [i, e] of events.entries()) {
      if (i > 0 && this.eventDelayMs > 0) await delay(this.eventDelayMs, peer.signal);
      await peer.sendJson(e);
    }
  }

  /**
   * Streams one response: `eventDelayMs` between events and, at `realtime`
   * pace, each audio delta when the audio before it has played. A cancel or
   * the connection's end cuts every wait short; the run then closes at once.
   */
  async #stream(peer: Peer, run: ResponseRun, pace: Pace): Promise<void> {
    const wake = new AbortController();
    const stop = () => wake.abort();
    peer.signal.addEventListener("abort", stop, { once: true });
    run.signal.addEventListener("abort", stop, { once: true });
    try {
      let started: number | undefined;
      let playedMs = 0;
      let first = true;
      for (let s = run.next(); s; s = run.next()) {
        if (peer.signal.aborted) run.cancel();
        if (!first && this.eventDelayMs > 0) {
          await delay(this.eventDelayMs, wake.signal).catch(() => {});
        }
        first = false;
        if (s.audioMs > 0 && pace === "realtime") {
          started ??= performance.now();
          const wait = started + playedMs - performance.now();
          if (wait > 0) await delay(wait, wake.signal).catch(() => {});
          playedMs += s.audioMs;
        }
        await peer.sendJson(s.event).catch(() => {});
      }
    } finally {
      peer.signal.removeEventListener("abort", stop);
      run.signal.removeEventListener("abort", stop);
    }
  }
}

/** One server-side WebSocket connection over a raw Deno.Conn. */
class Peer {
  record: ConnectionRecord | undefined;
  closing = false;
  readonly #conn: Deno.Conn;
  readonly #reader: BufferedReader;
  readonly #ctl = new AbortController();
  #writes: Promise<void> = Promise.resolve();
  #dropped = false;
  #ended: Promise<void>;
  #resolveEnded!: () => void;

  constructor(conn: Deno.Conn, reader: BufferedReader, shutdown: AbortSignal) {
    this.#conn = conn;
    this.#reader = reader;
    this.#ended = new Promise((r) => (this.#resolveEnded = r));
    const onShutdown = () => this.drop();
    shutdown.addEventListener("abort", onShutdown, { once: true });
    this.#ended.then(() => shutdown.removeEventListener("abort", onShutdown));
  }

  /** Aborted when the connection ends (for timers tied to it). */
  get signal(): AbortSignal {
    return this.#ctl.signal;
  }

  /** Writes are chained so frames never interleave. */
  write(bytes: Uint8Array): Promise<void> {
    const p = this.#writes.then(() => {
      if (this.#dropped) throw new Error("connection closed");
      return writeAll(this.#conn, bytes);
    });
    this.#writes = p.catch(() => {});
    return p;
  }

  send(data: string | Uint8Array): Promise<void> {
    return this.write(
      encodeFrame({
        opcode: typeof data === "string" ? Opcode.Text : Opcode.Binary,
        payload: data,
      }),
    );
  }

  sendJson(obj: unknown): Promise<void> {
    return this.send(JSON.stringify(obj));
  }

  async httpError(status: number, body: string): Promise<void> {
    const bytes = new TextEncoder().encode(body);
    const head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
      "Content-Type: application/json\r\n" +
      `Content-Length: ${bytes.byteLength}\r\n` +
      "Connection: close\r\n\r\n";
    try {
      await this.write(new TextEncoder().encode(head));
      await this.write(bytes);
    } catch { /* client went away */ }
  }

  /** Sends a close frame once; waits up to 1 s for the reply unless `raw`. */
  async close(
    code: number | undefined,
    reason: string | Uint8Array,
    raw: boolean,
  ): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const payload = closePayload(code, reason);
    if (this.record) {
      this.record.closeSent = code === undefined
        ? { reason: "" }
        : { code, reason: new TextDecoder().decode(payload.subarray(2)) };
    }
    try {
      await this.write(encodeFrame({ opcode: Opcode.Close, payload }));
    } catch {
      this.drop();
      return;
    }
    if (raw) {
      this.drop();
      return;
    }
    // RFC 6455 §7.1.1: the server closes TCP once the peer answered (or gave up).
    try {
      await delay(1000, this.signal);
    } catch { /* ended first */ }
    this.drop();
  }

  /** Destroys TCP without a close frame; idempotent. */
  drop(): void {
    if (this.#dropped) return;
    this.#dropped = true;
    this.closing = true;
    closeQuietly(this.#conn);
    this.#ctl.abort();
    this.#resolveEnded();
  }

  waitForEnd(): Promise<void> {
    return this.#ended;
  }

  async drainUntilEof(): Promise<void> {
    const buf = new Uint8Array(4096);
    try {
      while ((await this.#conn.read(buf)) !== null) { /* discard */ }
    } catch { /* closed under us */ }
  }

  /**
   * Reads until the connection ends: records messages, answers pings, runs
   * the closing handshake, and reports protocol errors with a close frame.
   */
  async readLoop(
    onMessage: (m: ReceivedMessage) => void,
  ): Promise<void> {
    const messages = new MessageReader(new FrameReader(this.#reader), {
      expectMasked: true,
    });
    try {
      for (;;) {
        const ev = await messages.next();
        if (!ev) break;
        if (ev.kind === "message") {
          const m: ReceivedMessage = { type: ev.type, data: ev.data };
          this.record?.received.push(m);
          if (!this.closing) onMessage(m);
        } else if (ev.kind === "ping") {
          if (!this.closing) {
            void this.write(encodeFrame({ opcode: Opcode.Pong, payload: ev.payload }))
              .catch(() => {});
          }
        } else if (ev.kind === "close") {
          if (this.record) {
            this.record.closeReceived = ev.code === undefined
              ? { reason: ev.reason }
              : { code: ev.code, reason: ev.reason };
          }
          if (!this.closing) {
            // Echo the peer's code and reason (RFC 6455 §5.5.1), then end TCP.
            this.closing = true;
            await this.write(
              encodeFrame({
                opcode: Opcode.Close,
                payload: closePayload(ev.code, ev.reason),
              }),
            ).catch(() => {});
          }
          break;
        }
      }
    } catch (err) {
      if (err instanceof ProtocolError && !this.closing) {
        this.closing = true;
        await this.write(
          encodeFrame({
            opcode: Opcode.Close,
            payload: closePayload(err.closeCode, err.message.slice(0, 100)),
          }),
        ).catch(() => {});
      }
    }
    this.drop();
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts (and clears the timer). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("aborted"));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error("aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function openaiHttpError(message: string, code: string | null): string {
  return JSON.stringify({
    error: { message, type: "invalid_request_error", param: null, code },
  });
}

function refusalBody(status: number): string {
  if (status === 401) {
    return openaiHttpError(HANDSHAKE_ERRORS.invalidKey.message, "invalid_api_key");
  }
  if (status === 429) {
    return JSON.stringify({
      error: {
        message: "Rate limit reached for requests. Please try again later.",
        type: "requests",
        param: null,
        code: "rate_limit_exceeded",
      },
    });
  }
  if (status >= 500) {
    return JSON.stringify({
      error: {
        message: "The server is overloaded or not ready yet.",
        type: "server_error",
        param: null,
        code: null,
      },
    });
  }
  return openaiHttpError(STATUS_TEXT[status] ?? "Request refused.", null);
}
