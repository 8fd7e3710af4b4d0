/**
 * The relay loop for one client connection: bridges the client's WebSocket and
 * an upstream, byte for byte and in order, enforcing the per-connection limits
 * and mapping close codes in both directions. It knows no protocol: features
 * that read one plug in through {@linkcode ConnectionHooks}.
 * @module
 */
import type { Fields, Telemetry } from "../telemetry/log.ts";
import type { Message, Upstream, UpstreamConnector, UpstreamEvents } from "../upstream/upstream.ts";
import {
  clientCloseForUpstream,
  type CloseFrame,
  RELAY_CLOSE,
  upstreamCloseForClient,
} from "./close_codes.ts";
import { type Deadline, Deadlines } from "./deadlines.ts";
import type { ClosedBy, ConnectionHooks, ConnectionLink } from "./hooks.ts";
import { messageBytes } from "./message_size.ts";
import { TokenBucket } from "./rate_limit.ts";

export type { ClosedBy } from "./hooks.ts";

/** Per-connection limits (CONTRACT.md "Settings"). */
export interface SessionLimits {
  readonly maxMessageBytes: number;
  readonly maxBufferedBytes: number;
  readonly rateLimit: number;
  readonly upstreamTimeoutMs: number;
}

/** Everything one relayed connection needs. */
export interface SessionOptions {
  /** The client's socket, straight from `Deno.upgradeWebSocket` (still connecting). */
  readonly client: WebSocket;
  readonly connect: UpstreamConnector;
  readonly model: string;
  /** The route's protocol-aware features, if any. */
  readonly hooks?: ConnectionHooks | undefined;
  readonly limits: SessionLimits;
  /** Token expiry in ms since the epoch; `null` when the token has none. */
  readonly expiresAtMs: number | null;
  readonly telemetry: Telemetry;
  /** Identifiers for telemetry. */
  readonly conn: string;
  readonly user: string;
  /** Extra fields of the closed line, shared by the route's connections where they can be (e.g. the room). */
  readonly labels?: Fields | undefined;
  /** Milliseconds since the epoch. @default Date.now */
  readonly now?: () => number;
  /** The relay's deadlines, shared by its connections (one runtime timer). */
  readonly deadlines?: Deadlines;
  /**
   * How long to wait for both sockets to report closed after the relay closed
   * them, before the connection is counted as ended anyway.
   * @default 5000
   */
  readonly lingerMs?: number;
  /**
   * Called once when the connection is over (before {@linkcode RelaySession.done}
   * settles). One function for every connection costs none of them a closure.
   */
  readonly onEnded?: (session: RelaySession) => void;
}

/** The client socket events a session listens to (see {@linkcode RelaySession.handleEvent}). */
const CLIENT_EVENTS = ["message", "open", "close", "error"] as const;

/** Telemetry's record of a client that never finished its upgrade (it never sees this frame). */
const CLIENT_OPEN_TIMEOUT: CloseFrame = { code: 1011, reason: "client_open_timeout" };

/** For sessions built without a relay's shared deadlines (tests). */
const OWN_DEADLINES = new Deadlines();

/** The rate limiter's clock, one function for all connections. */
const monotonicNow = () => performance.now();

/**
 * One relayed connection, from upgrade until both sockets are closed.
 *
 * An idle connection's memory is what a worker's connection count is bounded
 * by, so a session allocates no closures of its own: it is the listener of its
 * client socket ({@linkcode handleEvent}), the receiver of its upstream's
 * events, the subject of its deadlines and the link its hooks are given, all
 * through methods on the prototype.
 */
export class RelaySession implements ConnectionLink, UpstreamEvents {
  /** Identifiers for telemetry and features. */
  readonly conn: string;
  readonly user: string;
  readonly model: string;

  readonly #client: WebSocket;
  readonly #upstream: Upstream;
  readonly #limits: SessionLimits;
  readonly #telemetry: Telemetry;
  readonly #hooks: ConnectionHooks | undefined;
  readonly #now: () => number;
  readonly #lingerMs: number;
  readonly #startedAt: number;
  readonly #bucket: TokenBucket;
  readonly #onEnded: ((session: RelaySession) => void) | undefined;
  readonly #labels: Fields | undefined;
  /** Made when first asked for (the registry's shutdown, `waitUntil`): most connections never are. */
  #done: { promise: Promise<void>; resolve: () => void } | null = null;

  #clientOpen = false;
  #upstreamOpen = false;
  #upstreamClosed = false;
  #clientClosed = false;
  /** Set once the connection starts closing: the code the client is (or was) given. */
  #ending: { frame: CloseFrame; by: ClosedBy } | null = null;
  /** A close for the client decided before its socket finished opening. */
  #pendingClientClose: CloseFrame | null = null;
  /** A close for the upstream decided before it opened (a connecting socket cannot send one). */
  #pendingUpstreamClose: CloseFrame | null = null;
  #finished = false;
  /** Holds on client messages taken by hooks ({@linkcode ConnectionLink.holdClient}). */
  #holds = 0;

  /** Messages waiting for a side that is not open yet (made when one waits), with their byte total. */
  #toUpstream: Message[] | null = null;
  #toUpstreamBytes = 0;
  #toClient: Message[] | null = null;
  #toClientBytes = 0;

  /**
   * Entries in the relay's shared deadlines: until both sockets are open (one
   * for both), the token's expiry, and the linger after closing.
   */
  readonly #deadlines: Deadlines;
  #openTimer: Deadline | undefined;
  #expiryTimer: Deadline | undefined;
  #lingerTimer: Deadline | undefined;

  #msgsIn = 0;
  #msgsOut = 0;
  #bytesIn = 0;
  #bytesOut = 0;

  constructor(options: SessionOptions) {
    this.#client = options.client;
    this.#limits = options.limits;
    this.#telemetry = options.telemetry;
    this.conn = options.conn;
    this.user = options.user;
    this.model = options.model;
    this.#hooks = options.hooks;
    this.#now = options.now ?? Date.now;
    this.#lingerMs = options.lingerMs ?? 5000;
    this.#onEnded = options.onEnded;
    this.#labels = options.labels;
    this.#startedAt = this.#now();
    this.#bucket = new TokenBucket(options.limits.rateLimit, monotonicNow);

    const client = this.#client;
    client.binaryType = "arraybuffer";
    for (const type of CLIENT_EVENTS) client.addEventListener(type, this);
    this.#hooks?.started?.(this);

    // The upstream starts now, not after the client's open: the client's first
    // messages are queued meanwhile instead of lost.
    this.#upstream = options.connect(options.model, this);
    // The upstream must open within the timeout. So must the client: one
    // whose upgrade never completes (Deno 2.1.4 sends no 101 to an HTTP/1.0
    // request) fires neither open nor close, and would hold its slot and
    // upstream socket forever.
    this.#deadlines = options.deadlines ?? OWN_DEADLINES;
    this.#openTimer = this.#deadlines.after(
      options.limits.upstreamTimeoutMs,
      RelaySession.#openDeadline,
      this,
    );
    if (options.expiresAtMs !== null) {
      this.#expiryTimer = this.#deadlines.after(
        options.expiresAtMs - this.#now(),
        RelaySession.#expiryDeadline,
        this,
      );
    }
  }

  static #openDeadline(session: RelaySession): void {
    if (!session.#upstreamOpen) {
      session.#end(RELAY_CLOSE.upstreamTimeout, "relay", "upstream_timeout");
    } else session.#end(CLIENT_OPEN_TIMEOUT, "relay");
  }

  static #expiryDeadline(session: RelaySession): void {
    session.#end(RELAY_CLOSE.tokenExpired, "relay");
  }

  static #lingerDeadline(session: RelaySession): void {
    session.#finish();
  }

  /** Settles once both sockets are closed (or the linger time has passed). */
  get done(): Promise<void> {
    if (this.#done === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => (resolve = settle));
      this.#done = { promise, resolve };
      if (this.#finished) resolve();
    }
    return this.#done.promise;
  }

  /** The client socket's events (the session is its listener). */
  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        return this.#fromClient((event as MessageEvent<Message>).data);
      case "open":
        return this.#onClientOpen();
      case "close": {
        const { code, reason } = event as CloseEvent;
        return this.#onClientClose(code, reason);
      }
      // An error is always followed by a close event, which carries the decision.
      case "error":
        return event.preventDefault();
    }
  }

  /** Closes the connection with `1012 server_restarting`; the client should reconnect. */
  shutdown(): void {
    this.end(RELAY_CLOSE.serverRestarting);
  }

  /** Closes the connection as the relay: the client gets `frame`, the upstream 1000. */
  end(frame: CloseFrame): void {
    this.#end(frame, "relay");
  }

  /** Sends to the client now (queued while its socket is still opening); no hook sees it. */
  sendToClient(data: Message): void {
    if (this.#ending || this.#clientClosed) return;
    if (this.#client.readyState === WebSocket.OPEN) this.#sendToClient(data);
    else this.#queueForClient(data);
  }

  /** Sends to the upstream now, once it is open; no hook sees it. */
  sendToUpstream(data: Message): void {
    if (this.#ending || !this.#upstreamOpen) return;
    this.#upstream.send(data);
    if (this.#upstream.bufferedAmount > this.#limits.maxBufferedBytes) {
      this.#end(RELAY_CLOSE.bufferFull, "relay");
    }
  }

  /** Client messages wait, in order, until as many {@linkcode releaseClient} calls. */
  holdClient(): void {
    this.#holds++;
  }

  /** Releases one hold; the last one delivers what waited. */
  releaseClient(): void {
    if (this.#holds === 0) return;
    this.#holds--;
    if (this.#holds === 0 && this.#upstreamOpen && !this.#ending) this.#flushToUpstream();
  }

  /** Whether the connection has started closing. */
  ending(): boolean {
    return this.#ending !== null;
  }

  #onClientOpen(): void {
    this.#clientOpen = true;
    if (this.#upstreamOpen) this.#deadlines.cancel(this.#openTimer);
    const queued = this.#toClient;
    this.#toClient = null;
    this.#toClientBytes = 0;
    if (queued !== null) { for (const data of queued) this.#sendToClient(data); }
    if (this.#pendingClientClose) {
      const { code, reason } = this.#pendingClientClose;
      this.#pendingClientClose = null;
      this.#client.close(code, reason);
    }
  }

  #fromClient(data: Message): void {
    if (this.#ending) return;
    const bytes = messageBytes(data);
    if (bytes > this.#limits.maxMessageBytes) return this.#end(RELAY_CLOSE.messageTooBig, "relay");
    if (!this.#bucket.take()) return this.#end(RELAY_CLOSE.rateLimited, "relay");
    this.#msgsIn++;
    this.#bytesIn += bytes;
    if (this.#telemetry.debugEnabled) {
      this.#telemetry.debug("message.received", { conn: this.conn, type: kindOf(data), bytes });
    }
    let forwarded = data;
    if (this.#hooks?.fromClient) {
      const replacement = this.#hooks.fromClient(data, this);
      if (replacement === null || this.#ending) return;
      forwarded = replacement;
    }
    if (this.#upstreamOpen && this.#holds === 0) {
      this.#upstream.send(forwarded);
      if (this.#upstream.bufferedAmount > this.#limits.maxBufferedBytes) {
        this.#end(RELAY_CLOSE.bufferFull, "relay");
      }
      return;
    }
    (this.#toUpstream ??= []).push(forwarded);
    this.#toUpstreamBytes += forwarded === data ? bytes : messageBytes(forwarded);
    if (this.#toUpstreamBytes > this.#limits.maxBufferedBytes) {
      this.#end(RELAY_CLOSE.bufferFull, "relay");
    }
  }

  /** The upstream's events (the session is their receiver). */
  onUpstreamMessage(message: Message): void {
    if (this.#ending) return;
    let data: Message | null = message;
    if (this.#hooks?.fromUpstream) {
      data = this.#hooks.fromUpstream(message, this);
      if (data === null || this.#ending) return;
    }
    const state = this.#client.readyState;
    if (state === WebSocket.OPEN) return this.#sendToClient(data);
    // Closing: the client's close event ends the connection; nothing to deliver to.
    if (state !== WebSocket.CONNECTING) return;
    this.#queueForClient(data);
  }

  #queueForClient(data: Message): void {
    (this.#toClient ??= []).push(data);
    this.#toClientBytes += messageBytes(data);
    if (this.#toClientBytes > this.#limits.maxBufferedBytes) {
      this.#end(RELAY_CLOSE.bufferFull, "relay");
    }
  }

  #sendToClient(data: Message): void {
    const bytes = messageBytes(data);
    this.#client.send(data);
    this.#msgsOut++;
    this.#bytesOut += bytes;
    if (this.#telemetry.debugEnabled) {
      this.#telemetry.debug("message.sent", { conn: this.conn, type: kindOf(data), bytes });
    }
    if (this.#client.bufferedAmount > this.#limits.maxBufferedBytes) {
      this.#end(RELAY_CLOSE.bufferFull, "relay");
    }
  }

  onUpstreamOpen(): void {
    this.#upstreamOpen = true;
    if (this.#clientOpen) this.#deadlines.cancel(this.#openTimer);
    this.#telemetry.info("upstream.connected", {
      conn: this.conn,
      ms: this.#now() - this.#startedAt,
    });
    if (this.#pendingUpstreamClose) {
      const { code, reason } = this.#pendingUpstreamClose;
      this.#pendingUpstreamClose = null;
      return this.#upstream.close(code, reason);
    }
    if (this.#ending) return;
    this.#hooks?.upstreamOpened?.(this);
    if (this.#holds === 0 && !this.#ending) this.#flushToUpstream();
  }

  #flushToUpstream(): void {
    const queued = this.#toUpstream;
    if (queued === null) return;
    this.#toUpstream = null;
    this.#toUpstreamBytes = 0;
    for (const data of queued) {
      this.#upstream.send(data);
      if (this.#upstream.bufferedAmount > this.#limits.maxBufferedBytes) {
        return this.#end(RELAY_CLOSE.bufferFull, "relay");
      }
    }
  }

  onUpstreamClose(code: number, reason: string): void {
    this.#upstreamClosed = true;
    if (!this.#ending) {
      if (this.#upstreamOpen) this.#end(clientCloseForUpstream(code, reason), "upstream");
      else this.#end(RELAY_CLOSE.upstreamUnavailable, "upstream", "upstream_unavailable");
    }
    this.#settleIfClosed();
  }

  #onClientClose(code: number, reason: string): void {
    this.#clientClosed = true;
    if (!this.#ending) {
      this.#ending = { frame: { code, reason }, by: "client" };
      this.#stopTimers();
      this.#dropQueues();
      this.#closeUpstream(upstreamCloseForClient(code, reason));
      this.#startLinger();
    }
    this.#settleIfClosed();
  }

  /**
   * Starts closing: the client gets `frame`, the upstream a normal close.
   * `failure` marks an upstream that never opened, for telemetry.
   */
  #end(frame: CloseFrame, by: ClosedBy, failure?: string): void {
    if (this.#ending) return;
    this.#ending = { frame, by };
    if (failure) this.#telemetry.info("upstream.failed", { conn: this.conn, error: failure });
    this.#stopTimers();
    this.#toUpstream = null;
    this.#toUpstreamBytes = 0;
    this.#closeUpstream({ code: 1000, reason: frame.reason });
    if (!this.#clientClosed) {
      // Browsers on Deno 2.1.4 never see the close code (CONTRACT.md "In-band
      // close notices"): a feature may say it in a message first.
      const notice = this.#hooks?.closeNotice?.(frame, by) ?? null;
      if (this.#client.readyState === WebSocket.CONNECTING) {
        // Still upgrading: deliver what the upstream already said, then close.
        if (notice !== null) (this.#toClient ??= []).push(notice);
        this.#pendingClientClose = frame;
      } else {
        this.#toClient = null;
        if (notice !== null && this.#client.readyState === WebSocket.OPEN) {
          this.#client.send(notice);
        }
        this.#client.close(frame.code, frame.reason);
      }
    }
    this.#startLinger();
  }

  #closeUpstream(frame: CloseFrame): void {
    if (this.#upstreamClosed) return;
    // Closing a connecting WebSocket sends no close frame (and on Deno 2.1.4
    // never reports closed): wait for it to open, then close it properly.
    if (this.#upstreamOpen) this.#upstream.close(frame.code, frame.reason);
    else this.#pendingUpstreamClose = frame;
  }

  #startLinger(): void {
    this.#lingerTimer = this.#deadlines.after(this.#lingerMs, RelaySession.#lingerDeadline, this);
  }

  #stopTimers(): void {
    this.#deadlines.cancel(this.#openTimer);
    this.#deadlines.cancel(this.#expiryTimer);
  }

  #dropQueues(): void {
    this.#toUpstream = null;
    this.#toUpstreamBytes = 0;
    this.#toClient = null;
    this.#toClientBytes = 0;
  }

  #settleIfClosed(): void {
    if (this.#clientClosed && this.#upstreamClosed) this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#deadlines.cancel(this.#lingerTimer);
    this.#stopTimers();
    this.#dropQueues();
    const ending = this.#ending ?? { frame: { code: 1006, reason: "" }, by: "relay" as const };
    this.#telemetry.info("websocket.connection.closed", {
      conn: this.conn,
      user: this.user,
      ms: this.#now() - this.#startedAt,
      code: ending.frame.code,
      reason: ending.frame.reason,
      by: ending.by,
      msgs_in: this.#msgsIn,
      msgs_out: this.#msgsOut,
      bytes_in: this.#bytesIn,
      bytes_out: this.#bytesOut,
      ...this.#labels,
    });
    this.#hooks?.ended?.(ending);
    this.#onEnded?.(this);
    this.#done?.resolve();
  }
}

function kindOf(data: Message): "text" | "binary" {
  return typeof data === "string" ? "text" : "binary";
}
