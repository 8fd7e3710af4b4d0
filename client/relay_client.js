// @ts-check
/**
 * The relay's client library: one conversation with OpenAI Realtime through the
 * relay that outlives its connections. It picks the session id, gets a fresh
 * token for every connection, reconnects (capped exponential backoff with
 * jitter) when the relay restarts, the network drops or OpenAI's side is lost,
 * holds what the app sends meanwhile and delivers it in order, and reports
 * `relay.session.resumed`. Plain ES module with JSDoc types and no
 * dependencies: browsers load it as is; Deno; Node >= 20 with the `ws` package
 * (passed in, or found by `import("ws")`; Node 22+ has a global WebSocket).
 * It never logs anything, and never puts the token in an error or a state.
 *
 * @example In an app
 * ```js
 * import { connect } from "./client/relay_client.js";
 * const relay = connect({
 *   url: "wss://<project>.supabase.co/functions/v1/relay",
 *   getToken: async () => (await supabase.auth.getSession()).data.session.access_token,
 *   onEvent: (event) => console.log(event), // every OpenAI server event, parsed
 *   onState: (state, info) => console.log(state, info.why),
 * });
 * relay.send({ type: "response.create" }); // held until the session is ready
 * ```
 *
 * `relay.session` is the conversation's id: store it and pass it as `session`
 * to continue the conversation from a new page (with `RELAY_RESUME=on`).
 *
 * When it reconnects (see {@linkcode closeDecision}): `1012` (relay
 * restarting), `1001`, `1006` after the socket opened (dropped network, or a
 * browser on the edge runtime that hides the real code), `1011
 * upstream_closed_abnormally`, `4001 token_expired` (the next connection gets a
 * fresh token), and OpenAI's `session_expired` error (its session cap). Never
 * on `4002 budget_exceeded`, `4409 session_replaced`, `1008` (rate limit,
 * policy), `1009`, `1013`, other `1011`s or a normal close. The relay's in-band
 * close notice (an `error` event with `error.type === "relay_error"`) decides
 * when the close event says only 1006.
 *
 * Refusals: a browser cannot see a refused handshake's HTTP status, so a
 * connection that closes before it opens counts as refused. On the first
 * connection that ends the conversation (`closed`, why `"refused"`: a bad
 * token, a spent budget, a wrong URL or an unreachable relay; the app
 * decides). While reconnecting it is one more failed attempt, retried with
 * backoff up to `maxAttempts` in a row (a network still down, or the brief
 * `429`/`503` the relay's caps give at once after a restart), then `closed`
 * with why `"gave_up"`.
 *
 * Messages handed to a socket just before it dropped may be lost (nothing
 * acknowledges them); what the relay had saved is restored by a resume.
 * @module
 */

/** A server event as the relay passes it on: parsed JSON with a string `type`. */
/** @typedef {{ type: string } & Record<string, unknown>} RelayEvent */

/** The connection's state, as {@linkcode ConnectOptions.onState} reports it. */
/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} RelayState */

/**
 * What came with a state change. `why` is the reason in a word: for `open`
 * `"started"` (a new conversation), `"resumed"` (the relay restored it) or
 * `"socket_open"` (`readyOn: "open"`); for `reconnecting` and `closed` the
 * close reason (`"server_restarting"`, `"rate_limited"`, ...), or
 * `"connection_lost"` (1006 with no notice), `"refused"`, `"connect_timeout"`,
 * `"token_unavailable"`, `"session_expired"`, `"gave_up"` (then `cause` is the
 * last failure), `"client"` (the app called `close()`), `"no_websocket"`.
 * @typedef {object} StateInfo
 * @property {string} session The session id sent as `?session=`.
 * @property {string} why
 * @property {number} attempt Reconnect attempts in a row so far (0 once a session is ready).
 * @property {number} [code] The close code the decision was made on (the notice's, over a bare 1006).
 * @property {string} [reason] The close reason the decision was made on.
 * @property {number} [delayMs] `reconnecting`: how long until the next attempt.
 * @property {boolean} [resumed] `open`: whether the relay said it restored the conversation.
 * @property {number} [items] `open` after a resume: conversation items restored.
 * @property {number} [skipped] `open` after a resume: items that could not be restored.
 * @property {number} [unsent] `closed`: held messages that were never sent.
 * @property {string} [cause] `closed` with why `"gave_up"`: what the last attempt ended with.
 */

/** Backoff between reconnect attempts (see {@linkcode backoffDelay}). */
/**
 * @typedef {object} BackoffOptions
 * @property {number} baseMs The first delay's ceiling. (default 500)
 * @property {number} factor Each attempt's ceiling is the previous one times this (>= 1). (default 2)
 * @property {number} capMs No ceiling exceeds this. (default 30000)
 * @property {number} jitter 0: always the ceiling; 1: anywhere from 0 to it ("full jitter"). (default 0.5)
 */

/**
 * The part of a WebSocket the client uses: the browser's, Deno's, Node 22's
 * and the `ws` package's all have it.
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {string} binaryType
 * @property {(data: string | ArrayBuffer | ArrayBufferView) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {(type: string, listener: (event: any) => void) => void} addEventListener
 */
/**
 * A WebSocket class. The third argument is passed only with `tokenIn: "header"`, as the `ws`
 * package takes it (`{ headers }`).
 * @typedef {new (url: string, protocols?: string | string[], options?: { headers: Record<string, string> }) => WebSocketLike} WebSocketConstructor
 */

/**
 * Options of {@linkcode connect}.
 * @typedef {object} ConnectOptions
 * @property {string | URL} url The relay's OpenAI route, e.g. `wss://<project>.supabase.co/functions/v1/relay`.
 * @property {() => string | Promise<string>} getToken Called before every connection for a
 *   current access token (supabase-js refreshes it), so a reconnect never reuses an expired one.
 * @property {string} [session] A session id to continue (22-64 of `[A-Za-z0-9_-]`). (default a new random id)
 * @property {string} [model] Sent as `?model=` (it must be one the relay allows).
 * @property {"protocol" | "query" | "header"} [tokenIn] How the token travels. `"protocol"`:
 *   subprotocols `realtime` and `jwt-<token>`, which keeps it out of URLs and access logs;
 *   `"query"`: `?jwt=`; `"header"`: `Authorization: Bearer`, only for a WebSocket class that
 *   takes headers (the `ws` package). (default "header" with the `ws` package, else
 *   "protocol": `ws` joins subprotocols with "," and Deno's `upgradeWebSocket`, which the
 *   relay runs on, splits them on ", ", so the relay refuses that handshake `400`)
 * @property {(event: RelayEvent) => void} [onEvent] Every server event, parsed: OpenAI's,
 *   the relay's close notices and `relay.session.resumed`.
 * @property {(state: RelayState, info: StateInfo) => void} [onState] Each state change, with why.
 * @property {(data: string | ArrayBuffer) => void} [onMessage] Messages that are not JSON events
 *   (binary, or text that is not a JSON object with a string `type`).
 * @property {number} [maxHeldBytes] Bound on messages held while (re)connecting, in bytes
 *   (UTF-8 for text); `send()` over it throws. (default 1048576)
 * @property {number} [maxAttempts] Reconnect attempts in a row without a ready session before
 *   giving up (0: never reconnect). (default 10)
 * @property {Partial<BackoffOptions>} [backoff] Delays between reconnect attempts.
 * @property {number} [connectTimeoutMs] Longest wait from asking for a token to a ready session;
 *   then the attempt counts as failed. (default 15000)
 * @property {"session" | "open"} [readyOn] When held messages go out: `"session"` once the
 *   relay said which session this is (`relay.session.resumed`, or OpenAI's first event such as
 *   `session.created`); `"open"` when the socket opens (for routes where the server does not
 *   speak first, such as `/relay/echo`). (default "session")
 * @property {WebSocketConstructor} [WebSocket] (default globalThis.WebSocket, else the `ws` package)
 * @property {() => number} [random] Source of the backoff's jitter, in [0, 1). (default Math.random)
 */

/** Bound on held messages when `maxHeldBytes` is not given: 1 MiB. */
export const DEFAULT_MAX_HELD_BYTES = 1024 * 1024;

/** Reconnect attempts in a row when `maxAttempts` is not given. */
export const DEFAULT_MAX_ATTEMPTS = 10;

/** Backoff when `backoff` is not given: 0.25-0.5 s, doubling, at most 30 s. */
export const DEFAULT_BACKOFF = Object.freeze(
  /** @type {BackoffOptions} */ ({ baseMs: 500, factor: 2, capMs: 30_000, jitter: 0.5 }),
);

/** What the relay accepts as `?session=` (CONTRACT.md "Resumable sessions"). */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{22,64}$/;

/** The event the relay sends once it has restored a conversation. */
export const SESSION_RESUMED = "relay.session.resumed";

/** Thrown by `send()`: `"hold_full"` (the message was not held) or `"closed"`. */
export class RelayClientError extends Error {
  /**
   * @param {"hold_full" | "closed"} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "RelayClientError";
    /** Which limit or state refused the call. */
    this.code = code;
  }
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * A new random session id: 16 random bytes as base64url (22 characters, 128 bits).
 * @param {(length: number) => Uint8Array} [randomBytes] (default crypto.getRandomValues)
 * @returns {string}
 */
export function newSessionId(randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  const bytes = randomBytes(16);
  let id = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      id += BASE64URL[(value >> bits) & 63];
    }
  }
  if (bits > 0) id += BASE64URL[(value << (6 - bits)) & 63];
  return id;
}

/**
 * Whether `value` is a session id the relay accepts: 22-64 characters of `[A-Za-z0-9_-]`.
 * @param {unknown} value
 * @returns {value is string}
 */
export function isSessionId(value) {
  return typeof value === "string" && SESSION_ID_PATTERN.test(value);
}

/**
 * `partial` over {@linkcode DEFAULT_BACKOFF}, checked.
 * @param {Partial<BackoffOptions>} [partial]
 * @returns {BackoffOptions}
 * @throws {RangeError} naming the bad field
 */
export function backoffOptions(partial = {}) {
  const options = { ...DEFAULT_BACKOFF, ...partial };
  const bad = (/** @type {string} */ what) => new RangeError(`backoff.${what}`);
  if (!(Number.isFinite(options.baseMs) && options.baseMs >= 0)) {
    throw bad(`baseMs must be a number >= 0, got ${options.baseMs}`);
  }
  if (!(Number.isFinite(options.factor) && options.factor >= 1)) {
    throw bad(`factor must be a number >= 1, got ${options.factor}`);
  }
  if (!(Number.isFinite(options.capMs) && options.capMs >= options.baseMs)) {
    throw bad(`capMs must be a number >= baseMs, got ${options.capMs}`);
  }
  if (!(Number.isFinite(options.jitter) && options.jitter >= 0 && options.jitter <= 1)) {
    throw bad(`jitter must be a number from 0 to 1, got ${options.jitter}`);
  }
  return options;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): a ceiling
 * of `baseMs * factor^attempt`, capped at `capMs`, of which a random share up
 * to `jitter` is taken off, so that clients a restart closed together do not
 * come back together.
 * @param {number} attempt
 * @param {BackoffOptions} [options] (default DEFAULT_BACKOFF)
 * @param {() => number} [random] in [0, 1) (default Math.random)
 * @returns {number} milliseconds, an integer
 */
export function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  const ceiling = Math.min(options.capMs, options.baseMs * options.factor ** Math.max(0, attempt));
  const share = Number(random()); // a broken source (NaN, out of range) must not mean no delay
  return Math.round(ceiling * (1 - options.jitter * (share > 0 ? Math.min(share, 1) : 0)));
}

/**
 * The relay's in-band close notice: `{code, closeCode, message}` when `event` is one
 * (an `error` event whose `error.type` is `"relay_error"`), else `null`.
 * @param {unknown} event
 * @returns {{ code: string, closeCode: number, message: string } | null}
 */
export function closeNoticeOf(event) {
  if (!isRecord(event) || event.type !== "error" || !isRecord(event.error)) return null;
  const { type, code, close_code: closeCode, message } = event.error;
  if (type !== "relay_error" || typeof code !== "string" || typeof closeCode !== "number") {
    return null;
  }
  return { code, closeCode, message: typeof message === "string" ? message : "" };
}

/** Close codes after which a new connection is the right answer (with 1011 below). */
const RECONNECT_CODES = new Set([
  1001, // going away
  1006, // lost without a close frame, or a browser that hides the real code
  1012, // server_restarting: the platform recycles the worker
  4001, // token_expired: the next connection has a fresh token
]);

/** Words for close codes that come without a reason. */
const CODE_WORDS = /** @type {Readonly<Record<number, string>>} */ ({
  1000: "normal_closure",
  1001: "going_away",
  1005: "no_status",
  1006: "connection_lost",
});

/**
 * Whether a closed connection should be followed by another, and why, in a
 * word. A bare 1006 is decided by the close notice that came before it (a
 * browser on the edge runtime sees 1006 for every close the relay starts); a
 * real code is decided by itself (a code outside 1000-4999, such as the 0
 * Deno reports for a lost connection, counts as 1006). A connection that
 * never opened was refused (or the relay was unreachable: a browser cannot
 * tell), which ends the first connection and is one more failed attempt while
 * reconnecting.
 * @param {object} close
 * @param {boolean} close.opened Whether the socket opened.
 * @param {number} close.code The close event's code.
 * @param {string} close.reason The close event's reason.
 * @param {{ code: string, closeCode: number, message: string } | null} [close.notice]
 *   The close notice received last, if any.
 * @param {boolean} [close.reconnecting] Whether an earlier connection of this client had a
 *   ready session (the client is reconnecting, not making its first connection).
 * @returns {{ reconnect: boolean, why: string, code: number, reason: string }}
 */
export function closeDecision({ opened, code, reason, notice = null, reconnecting = false }) {
  if (!opened) return { reconnect: reconnecting, why: "refused", code, reason };
  // Deno's WebSocket reports a connection lost without a close frame as 0, not 1006.
  let effectiveCode = code >= 1000 && code <= 4999 ? code : 1006;
  let effectiveReason = reason;
  if (effectiveCode === 1006 && notice !== null) {
    effectiveCode = notice.closeCode;
    // A close forwarded from OpenAI carries OpenAI's reason as the message.
    effectiveReason = notice.code === "upstream_closed" ? notice.message : notice.code;
  }
  const reconnect = RECONNECT_CODES.has(effectiveCode) ||
    (effectiveCode === 1011 && effectiveReason === "upstream_closed_abnormally");
  const why = effectiveReason || CODE_WORDS[effectiveCode] || `close_${effectiveCode}`;
  return { reconnect, why, code: effectiveCode, reason: effectiveReason };
}

/**
 * Bytes `data` takes on the wire: UTF-8 length for text, byte length for binary.
 * @param {string | ArrayBuffer | ArrayBufferView} data
 * @returns {number}
 */
export function messageBytes(data) {
  if (typeof data !== "string") return data.byteLength;
  let bytes = 0;
  for (let i = 0; i < data.length; i++) {
    const unit = data.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && isLowSurrogate(data.charCodeAt(i + 1))) {
      bytes += 4; // a pair is one 4-byte character
      i++;
    } else bytes += 3; // the rest of the BMP, and lone surrogates (sent as U+FFFD)
  }
  return bytes;
}

/**
 * Whether a message of `size` bytes may join `heldBytes` already held under `maxHeldBytes`.
 * @param {number} heldBytes
 * @param {number} size
 * @param {number} maxHeldBytes
 * @returns {boolean}
 */
export function fitsHold(heldBytes, size, maxHeldBytes) {
  return heldBytes + size <= maxHeldBytes;
}

/**
 * The URL, subprotocols and headers of one connection: `?session=` always,
 * `?model=` when given, and the token as a `jwt-<token>` subprotocol beside
 * `realtime` (the relay never selects a credential entry, and a browser fails
 * a handshake when none comes back), as `?jwt=`, or as `Authorization: Bearer`.
 * @param {object} target
 * @param {string | URL} target.url
 * @param {string} target.session
 * @param {string} target.token
 * @param {"protocol" | "query" | "header"} [target.tokenIn] (default "protocol")
 * @param {string} [target.model]
 * @returns {{ url: string, protocols: string[], headers?: Record<string, string> }}
 */
export function connectionTarget({ url, session, token, tokenIn = "protocol", model }) {
  const address = new URL(url);
  address.searchParams.set("session", session);
  if (model !== undefined) address.searchParams.set("model", model);
  return carryToken(address, token, tokenIn);
}

/**
 * Where the token goes on `address` (the relay accepts each): `?jwt=`, an
 * `Authorization` header (Node's ws), or a `jwt-` subprotocol (browsers).
 * @param {URL} address
 * @param {string} token
 * @param {"protocol" | "query" | "header"} tokenIn
 * @returns {{ url: string, protocols: string[], headers?: Record<string, string> }}
 */
function carryToken(address, token, tokenIn) {
  if (tokenIn === "query") {
    address.searchParams.set("jwt", token);
    return { url: address.href, protocols: [] };
  }
  if (tokenIn === "header") {
    return { url: address.href, protocols: [], headers: { authorization: `Bearer ${token}` } };
  }
  return { url: address.href, protocols: ["realtime", `jwt-${token}`] };
}

/**
 * A fresh token from the app's `getToken`, or `null` when it failed or gave
 * no usable string.
 * @param {() => unknown} getToken
 * @returns {Promise<string | null>}
 */
async function freshToken(getToken) {
  try {
    const token = await getToken();
    return typeof token === "string" && token !== "" ? token : null;
  } catch {
    return null;
  }
}

/**
 * Opens a socket to `target` the way its token travels (throws as the
 * WebSocket constructor does).
 * @param {WebSocketConstructor} Socket
 * @param {{ url: string, protocols: string[], headers?: Record<string, string> }} target
 */
function openSocket(Socket, target) {
  return target.headers
    ? new Socket(target.url, [], { headers: target.headers })
    : target.protocols.length === 0
    ? new Socket(target.url)
    : new Socket(target.url, target.protocols);
}

/**
 * The close code and reason of a decision, for the state reported.
 * @param {{ code?: number, reason?: string }} decision
 * @returns {{ code?: number, reason?: string }}
 */
function closeOf(decision) {
  /** @type {{ code?: number, reason?: string }} */
  const close = {};
  if (decision.code !== undefined) close.code = decision.code;
  if (decision.reason !== undefined) close.reason = decision.reason;
  return close;
}

/**
 * Runs an app callback; what it throws is rethrown on its own, so it shows
 * as the app's error without breaking the connection's bookkeeping.
 * @template {unknown[]} A
 * @param {((...args: A) => void) | undefined} callback
 * @param {A} args
 */
function callApp(callback, ...args) {
  if (!callback) return;
  try {
    callback(...args);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * Starts a conversation through the relay and returns its handle at once; the
 * first connection starts in a microtask, so `onState` may use the returned
 * value.
 * @param {ConnectOptions} options
 * @returns {RelayConnection}
 * @throws {TypeError | RangeError} for a bad option, naming it
 */
export function connect(options) {
  return new RelayConnection(options);
}

/** How long `close()` waits for the socket's close event before it reports closed anyway. */
const CLOSE_GRACE_MS = 5000;
const OPEN = 1;
const CLOSING = 2;

/**
 * One connection attempt.
 * @typedef {object} Attempt
 * @property {WebSocketLike | null} socket
 * @property {boolean} opened The socket opened.
 * @property {boolean} ready The session is known; held messages went out.
 * @property {boolean} closing A close notice came, or this side is closing it: hold what is sent.
 * @property {{ code: string, closeCode: number, message: string } | null} notice
 * @property {string | null} retiring This side closed it to reconnect (e.g. `"session_expired"`).
 * @property {ReturnType<typeof setTimeout> | undefined} timer The connect deadline, then close()'s grace.
 */

/**
 * A conversation through the relay, across connections. Made by {@linkcode connect}.
 */
export class RelayConnection {
  /** @type {Required<Pick<ConnectOptions, "getToken" | "maxHeldBytes" | "maxAttempts" | "connectTimeoutMs" | "readyOn" | "random">> & ConnectOptions} */
  #options;
  /** @type {string} */
  #url;
  /** @type {BackoffOptions} */
  #backoff;
  /** @type {string} */
  #session;
  /** @type {RelayState} */
  #state = "connecting";
  /** Messages waiting for a ready session, with their sizes. @type {{ data: string | ArrayBuffer, size: number }[]} */
  #held = [];
  #heldBytes = 0;
  /** Reconnect attempts in a row without a ready session. */
  #attempts = 0;
  /** Some connection of this client had a ready session. */
  #established = false;
  /** @type {Attempt | null} */
  #current = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** The app called close(); `[code, reason]`. @type {[number, string] | null} */
  #stopping = null;
  /** @type {Promise<StateInfo>} */
  #closed;
  /** @type {(info: StateInfo) => void} */
  #resolveClosed = () => {};
  /** @type {Promise<WebSocketConstructor> | null} */
  #socketClass = null;

  /**
   * Use {@linkcode connect}.
   * @param {ConnectOptions} options
   */
  constructor(options) {
    if (!isRecord(options)) throw new TypeError("connect() needs an options object");
    if (typeof options.getToken !== "function") {
      throw new TypeError("getToken must be a function returning the user's access token");
    }
    let url;
    try {
      url = new URL(options.url);
    } catch {
      throw new TypeError("url must be the relay's ws:// or wss:// URL");
    }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${url.protocol}//`);
    }
    if (options.session !== undefined && !isSessionId(options.session)) {
      throw new TypeError("session must be 22-64 characters of A-Z, a-z, 0-9, _ and -");
    }
    const tokenIn = options.tokenIn;
    if (
      tokenIn !== undefined && tokenIn !== "protocol" && tokenIn !== "query" && tokenIn !== "header"
    ) {
      throw new TypeError('tokenIn must be "protocol", "query" or "header"');
    }
    const readyOn = options.readyOn ?? "session";
    if (readyOn !== "session" && readyOn !== "open") {
      throw new TypeError('readyOn must be "session" or "open"');
    }
    const maxHeldBytes = count("maxHeldBytes", options.maxHeldBytes, DEFAULT_MAX_HELD_BYTES);
    const maxAttempts = count("maxAttempts", options.maxAttempts, DEFAULT_MAX_ATTEMPTS);
    const connectTimeoutMs = count("connectTimeoutMs", options.connectTimeoutMs, 15_000);
    this.#backoff = backoffOptions(options.backoff);
    this.#options = {
      ...options,
      readyOn,
      maxHeldBytes,
      maxAttempts,
      connectTimeoutMs,
      random: options.random ?? Math.random,
    };
    this.#url = url.href;
    this.#session = options.session ?? newSessionId();
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    queueMicrotask(() => {
      if (this.#stopping) return;
      this.#setState("connecting", { why: "start" });
      this.#open();
    });
  }

  /** The session id sent as `?session=` on every connection: store it to continue later. */
  get session() {
    return this.#session;
  }

  /** The current state. */
  get state() {
    return this.#state;
  }

  /** Messages held for the next ready session, and their bytes. */
  get held() {
    return { messages: this.#held.length, bytes: this.#heldBytes };
  }

  /** Settles once the conversation is over, with the `closed` state's info. */
  get closed() {
    return this.#closed;
  }

  /**
   * Sends a client event (an object, sent as JSON) or raw text or binary. While
   * (re)connecting it is held, in order, and sent once the session is ready.
   * @param {object | string | ArrayBuffer | ArrayBufferView} data
   * @returns {void}
   * @throws {RelayClientError} `"closed"` after `close()` or the end; `"hold_full"` when holding
   *   it would pass `maxHeldBytes` (it is not held; the ones before it still are)
   * @throws {TypeError} for something JSON cannot represent
   */
  send(data) {
    if (this.#state === "closed" || this.#stopping) {
      throw new RelayClientError("closed", "the relay connection is closed");
    }
    /** @type {string | ArrayBuffer | ArrayBufferView} */
    let message;
    if (typeof data === "string" || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      message = data;
    } else if (typeof data === "object" && data !== null) {
      message = JSON.stringify(data); // a cycle or a BigInt throws its own TypeError
    } else {
      throw new TypeError("send() takes an event object, a string or binary data");
    }
    const attempt = this.#current;
    if (
      attempt?.socket && attempt.ready && !attempt.closing && this.#held.length === 0 &&
      attempt.socket.readyState === OPEN
    ) {
      attempt.socket.send(message);
      return;
    }
    const size = messageBytes(message);
    if (!fitsHold(this.#heldBytes, size, this.#options.maxHeldBytes)) {
      throw new RelayClientError(
        "hold_full",
        `holding ${size} more bytes while reconnecting would pass maxHeldBytes ` +
          `(${this.#heldBytes} of ${this.#options.maxHeldBytes} held)`,
      );
    }
    // Binary is copied: the app may reuse its buffer (an audio chunk) before this goes out.
    this.#held.push({ data: typeof message === "string" ? message : copyBytes(message), size });
    this.#heldBytes += size;
  }

  /**
   * Ends the conversation: no more reconnects; held messages are dropped
   * (counted in `unsent`). Settles with the `closed` info once the socket closed.
   * @param {number} [code] 1000 or 3000-4999 (what a client may send). (default 1000)
   * @param {string} [reason] Always sent: Deno 2.1.4 reports a close without one as 1005. (default "client closed")
   * @returns {Promise<StateInfo>}
   */
  close(code = 1000, reason = "client closed") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError(`a client may close with 1000 or 3000-4999, got ${code}`);
    }
    if (this.#state === "closed" || this.#stopping) return this.#closed;
    this.#stopping = [code, reason];
    clearTimeout(this.#retryTimer);
    const attempt = this.#current;
    const socket = attempt?.socket;
    if (attempt && socket && socket.readyState <= CLOSING) {
      clearTimeout(attempt.timer);
      try {
        socket.close(code, reason);
      } catch { /* closing already */ }
      // A socket still connecting may report its close late (Deno 2.1.4 waits for the TCP end).
      attempt.timer = setTimeout(() => this.#closedAfter(attempt), CLOSE_GRACE_MS);
    } else {
      if (attempt) clearTimeout(attempt.timer);
      this.#current = null;
      this.#finish({ why: "client", code, reason });
    }
    return this.#closed;
  }

  /** Starts one connection attempt. */
  async #open() {
    /** @type {Attempt} */
    const attempt = {
      socket: null,
      opened: false,
      ready: false,
      closing: false,
      notice: null,
      retiring: null,
      timer: undefined,
    };
    this.#current = attempt;
    attempt.timer = setTimeout(() => this.#abandon(attempt), this.#options.connectTimeoutMs);
    /** @type {WebSocketConstructor} */
    let Socket;
    try {
      Socket = await this.#webSocketClass();
    } catch {
      if (attempt !== this.#current) return;
      clearTimeout(attempt.timer);
      this.#current = null;
      this.#finish({ why: "no_websocket" });
      return;
    }
    const token = await freshToken(() => this.#options.getToken());
    if (attempt !== this.#current) return; // closed, or timed out, meanwhile
    if (token === null) {
      this.#ended(attempt, { reconnect: this.#established, why: "token_unavailable" });
      return;
    }
    const target = connectionTarget({
      url: this.#url,
      session: this.#session,
      token,
      tokenIn: this.#options.tokenIn ?? (isWsPackage(Socket) ? "header" : "protocol"),
      ...(this.#options.model === undefined ? {} : { model: this.#options.model }),
    });
    let socket;
    try {
      socket = openSocket(Socket, target);
    } catch {
      // Never the error itself: a browser's names the offending subprotocol, the token.
      this.#ended(attempt, { reconnect: this.#established, why: "refused" });
      return;
    }
    attempt.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => this.#opened(attempt));
    socket.addEventListener("message", (event) => this.#received(attempt, event.data));
    // Browsers give no detail; the close event that follows says what matters.
    socket.addEventListener("error", (event) => event?.preventDefault?.());
    socket.addEventListener("close", (event) => {
      this.#socketClosed(attempt, Number(event?.code ?? 1006), String(event?.reason ?? ""));
    });
  }

  /** @returns {Promise<WebSocketConstructor>} */
  #webSocketClass() {
    this.#socketClass ??= findWebSocket(this.#options.WebSocket);
    return this.#socketClass;
  }

  /** @param {Attempt} attempt */
  #opened(attempt) {
    if (attempt !== this.#current) return;
    attempt.opened = true;
    if (this.#options.readyOn === "open") this.#ready(attempt, null);
  }

  /**
   * @param {Attempt} attempt
   * @param {unknown} data
   */
  #received(attempt, data) {
    if (attempt !== this.#current) return;
    /** @type {unknown} */
    let event;
    if (typeof data === "string") {
      try {
        event = JSON.parse(data);
      } catch { /* not JSON: onMessage */ }
    }
    if (!isRecord(event) || typeof event.type !== "string") {
      const raw = typeof data === "string" || data instanceof ArrayBuffer
        ? data
        : toArrayBuffer(data);
      if (raw !== null) callApp(this.#options.onMessage, raw);
      return;
    }
    const relayEvent = /** @type {RelayEvent} */ (event);
    const notice = closeNoticeOf(relayEvent);
    let expired = false;
    if (notice !== null) {
      // The close follows at once: what the app sends now waits for the next connection.
      attempt.notice = notice;
      attempt.closing = true;
    } else {
      attempt.notice = null;
      const error = relayEvent.type === "error" && isRecord(relayEvent.error)
        ? relayEvent.error
        : null;
      // OpenAI's session cap: that session is over; a new connection continues (resumed).
      expired = error?.code === "session_expired";
      if (expired) attempt.closing = true;
      else if (relayEvent.type === SESSION_RESUMED) this.#ready(attempt, relayEvent);
      else if (!attempt.ready && error === null) this.#ready(attempt, null);
    }
    callApp(this.#options.onEvent, relayEvent);
    if (expired) this.#retire(attempt, "session_expired");
  }

  /**
   * The session is known: held messages go out, in order, then the state is `open`.
   * @param {Attempt} attempt
   * @param {RelayEvent | null} resumed The `relay.session.resumed` event, if that said so.
   */
  #ready(attempt, resumed) {
    const socket = attempt.socket;
    if (!socket || (attempt.ready && !resumed)) return;
    // A resume reported after OpenAI's first event is still reported: `open` again.
    clearTimeout(attempt.timer);
    attempt.ready = true;
    this.#established = true;
    this.#attempts = 0;
    let sent = 0;
    for (const { data, size } of this.#held) {
      if (socket.readyState !== OPEN) break;
      try {
        socket.send(data);
      } catch {
        break; // the socket is going; the rest waits for the next one
      }
      sent++;
      this.#heldBytes -= size;
    }
    this.#held.splice(0, sent);
    /** @type {Omit<StateInfo, "session" | "attempt">} */
    const info = resumed
      ? {
        why: "resumed",
        resumed: true,
        items: Number(resumed.items ?? 0),
        skipped: Number(resumed.skipped ?? 0),
      }
      : { why: this.#options.readyOn === "open" ? "socket_open" : "started", resumed: false };
    this.#setState("open", info);
  }

  /**
   * This side closes the socket to reconnect.
   * @param {Attempt} attempt
   * @param {string} why
   */
  #retire(attempt, why) {
    if (attempt !== this.#current || this.#stopping || attempt.retiring) return;
    attempt.retiring = why;
    try {
      attempt.socket?.close(1000, why);
    } catch { /* closing already */ }
  }

  /**
   * The connect deadline passed: give up on this attempt without waiting for
   * its socket (one still connecting may never report).
   * @param {Attempt} attempt
   */
  #abandon(attempt) {
    if (attempt !== this.#current) return;
    try {
      attempt.socket?.close(1000, "connect_timeout");
    } catch { /* not open */ }
    this.#ended(attempt, { reconnect: this.#established, why: "connect_timeout" });
  }

  /**
   * @param {Attempt} attempt
   * @param {number} code
   * @param {string} reason
   */
  #socketClosed(attempt, code, reason) {
    if (attempt !== this.#current) return;
    if (this.#stopping) {
      this.#closedAfter(attempt);
      return;
    }
    const decision = attempt.retiring
      ? { reconnect: true, why: attempt.retiring, code, reason }
      : closeDecision({
        opened: attempt.opened,
        code,
        reason,
        notice: attempt.notice,
        reconnecting: this.#established,
      });
    this.#ended(attempt, decision);
  }

  /**
   * The socket of a `close()` closed (or its grace passed).
   * @param {Attempt} attempt
   */
  #closedAfter(attempt) {
    if (attempt !== this.#current || !this.#stopping) return;
    clearTimeout(attempt.timer);
    this.#current = null;
    const [code, reason] = this.#stopping;
    this.#finish({ why: "client", code, reason });
  }

  /**
   * An attempt is over: reconnect after a backoff, or finish.
   * @param {Attempt} attempt
   * @param {{ reconnect: boolean, why: string, code?: number, reason?: string }} decision
   */
  #ended(attempt, decision) {
    clearTimeout(attempt.timer);
    this.#current = null;
    const close = closeOf(decision);
    if (!decision.reconnect) {
      this.#finish({ why: decision.why, ...close });
      return;
    }
    if (this.#attempts >= this.#options.maxAttempts) {
      this.#finish({ why: "gave_up", cause: decision.why, ...close });
      return;
    }
    const delayMs = backoffDelay(this.#attempts, this.#backoff, this.#options.random);
    this.#attempts += 1;
    // The timer first: onState may call close(), which clears it.
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#stopping) this.#open();
    }, delayMs);
    this.#setState("reconnecting", { why: decision.why, ...close, delayMs });
  }

  /** @param {Omit<StateInfo, "session" | "attempt">} info */
  #finish(info) {
    if (this.#state === "closed") return;
    clearTimeout(this.#retryTimer);
    const unsent = this.#held.length;
    this.#held = [];
    this.#heldBytes = 0;
    const final = { session: this.#session, attempt: this.#attempts, ...info, unsent };
    this.#state = "closed";
    this.#resolveClosed(final);
    callApp(this.#options.onState, "closed", final);
  }

  /**
   * @param {RelayState} state
   * @param {Omit<StateInfo, "session" | "attempt">} info
   */
  #setState(state, info) {
    this.#state = state;
    callApp(this.#options.onState, state, {
      session: this.#session,
      attempt: this.#attempts,
      ...info,
    });
  }
}

/**
 * The WebSocket class to use: the one given, the global one, else the `ws` package.
 * @param {WebSocketConstructor | undefined} given
 * @returns {Promise<WebSocketConstructor>}
 */
async function findWebSocket(given) {
  if (given) return given;
  const global = /** @type {{ WebSocket?: WebSocketConstructor }} */ (globalThis).WebSocket;
  if (global) return global;
  // Node 20 has no WebSocket of its own. A variable keeps bundlers (and
  // browsers, which never get here) from resolving the name.
  const name = "ws";
  const module = await import(name);
  const found = module.WebSocket ?? module.default;
  if (typeof found !== "function") throw new Error("no WebSocket in ws");
  return found;
}

/**
 * @param {string} name
 * @param {unknown} value
 * @param {number} fallback
 * @returns {number}
 */
function count(name, value, fallback) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0) || !Number.isInteger(value)) {
    throw new RangeError(`${name} must be an integer >= 0, got ${String(value)}`);
  }
  return value;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Whether `Socket` is the `ws` package's class (an EventEmitter: it has `on`,
 * which the browser's, Deno's and Node 22's WebSocket do not).
 * @param {WebSocketConstructor} Socket
 */
function isWsPackage(Socket) {
  return typeof Socket.prototype?.on === "function";
}

/** @param {number} unit */
function isLowSurrogate(unit) {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/**
 * Binary data as an ArrayBuffer (a `ws` without `binaryType` support gives a Buffer).
 * @param {unknown} data
 * @returns {ArrayBuffer | null}
 */
function toArrayBuffer(data) {
  return ArrayBuffer.isView(data) ? copyBytes(data) : null;
}

/**
 * A copy of `data`'s bytes in a new ArrayBuffer.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {ArrayBuffer}
 */
function copyBytes(data) {
  const source = data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const copy = new Uint8Array(source.byteLength);
  copy.set(source);
  return /** @type {ArrayBuffer} */ (copy.buffer);
}

// ─── Rooms ──────────────────────────────────────────────────────────────────
//
// joinRoom(): one room of an app (chat, presence, live updates) across
// connections, per CONTRACT.md "Rooms" and "Room history, recovery and live
// updates over SSE". The same rules as connect() (a fresh token per
// connection, closeDecision, backoffDelay, close notices, states in words),
// plus what a room needs: rejoining with `?since=` the last offset it saw,
// resending unacknowledged broadcasts with the same id, delivering in offset
// order without duplicates, and keeping the presence list.

/** Room names: 1-100 of `[A-Za-z0-9_.:-]`. */
export const ROOM_NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/;

/** Event names and message ids: 1-64 of `[A-Za-z0-9_.:-]`. */
export const MESSAGE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** How long a broadcast waits for a missing earlier offset before it is delivered anyway. */
export const DEFAULT_GAP_MS = 2000;

/** How many (user, id) pairs of offset-less broadcasts are remembered to drop repeats. */
export const DEFAULT_DEDUPE_WINDOW = 2048;

/**
 * A broadcast as a member receives it.
 * @typedef {object} RoomBroadcast
 * @property {"broadcast"} type
 * @property {string} event
 * @property {unknown} payload
 * @property {{ user: string | null, id: string | null, offset: number | null, at: string }} meta
 */

/**
 * One user present in the room (several tabs of a user are one entry).
 * @typedef {{ user: string, state: Record<string, unknown> | null }} PresenceEntry
 */

/**
 * What came with a room's state change. `why` for `open`: `"joined"` (the first
 * join), `"rejoined"` (after a reconnect; nothing was missed, or the relay keeps
 * no history), `"history_lost"` (the relay said `recovered: false`: broadcasts
 * since the last offset seen are gone, or the room's history was reset; the app
 * should reload what it shows). For `reconnecting` and `closed` as
 * {@linkcode StateInfo}: the close reason in a word, `"connection_lost"`,
 * `"refused"`, `"connect_timeout"`, `"token_unavailable"`, `"gave_up"`,
 * `"client"`, `"no_websocket"`.
 * @typedef {object} RoomStateInfo
 * @property {string} room
 * @property {string} why
 * @property {number} attempt Reconnect attempts in a row so far (0 once joined).
 * @property {number} [code] The close code the decision was made on.
 * @property {string} [reason] The close reason the decision was made on.
 * @property {number} [delayMs] `reconnecting`: how long until the next attempt.
 * @property {boolean | null} [recovered] `open`: `room.joined`'s `recovered` (null without `?since=` or without history).
 * @property {number | null} [offset] `open`: the room's latest offset as `room.joined` said (null without history).
 * @property {number | null} [since] `open`: the `?since=` this join asked for, if any.
 * @property {number} [unsent] `closed`: broadcasts never acknowledged (held or in flight).
 * @property {string} [cause] `closed` with why `"gave_up"`: what the last attempt ended with.
 */

/**
 * Options of {@linkcode joinRoom}.
 * @typedef {object} RoomOptions
 * @property {string | URL} url The relay's URL, e.g. `wss://<project>.supabase.co/functions/v1/relay`;
 *   the room's path (`/rooms/<room>`) is added to it.
 * @property {string} room The room's name: 1-100 of `[A-Za-z0-9_.:-]`.
 * @property {() => string | Promise<string>} getToken Called before every connection.
 * @property {boolean} [self] Hear this client's own broadcasts too (`?self=true`). (default false)
 * @property {number} [since] The first join asks for every kept broadcast after this offset
 *   (an offset the app stored from `room.offset`). Later joins use the last offset seen.
 * @property {number} [last] The first join asks for the newest `last` kept broadcasts (a backlog).
 * @property {(message: RoomBroadcast) => void} [onMessage] Each broadcast, once, in offset order
 *   where offsets exist (offset-less ones as they come).
 * @property {(list: PresenceEntry[], change: RelayEvent) => void} [onPresence] The presence
 *   list after each change; `change` is the `presence.*` event, or `room.joined` when the list
 *   was replaced on a (re)join.
 * @property {(state: RelayState, info: RoomStateInfo) => void} [onState] Each state change, with why.
 * @property {(data: ArrayBuffer) => void} [onBinary] Binary frames from other members.
 * @property {(event: RelayEvent) => void} [onEvent] Every text event as it arrives, before
 *   ordering: `room.joined`, broadcasts, acks, presence, refusals, close notices.
 * @property {"protocol" | "query" | "header"} [tokenIn] As {@linkcode ConnectOptions.tokenIn}.
 * @property {number} [maxHeldBytes] Bound on broadcasts not yet acknowledged (held while
 *   reconnecting, or in flight), in UTF-8 bytes; `send()` over it throws. (default 1048576)
 * @property {number} [maxAttempts] As {@linkcode ConnectOptions.maxAttempts}. (default 10)
 * @property {Partial<BackoffOptions>} [backoff] Delays between reconnect attempts (and between
 *   resends of broadcasts the relay could not keep).
 * @property {number} [connectTimeoutMs] Longest wait from asking for a token to `room.joined`. (default 15000)
 * @property {number} [gapMs] How long a broadcast waits for a missing earlier offset. (default 2000)
 * @property {number} [dedupeWindow] (user, id) pairs of offset-less broadcasts remembered. (default 2048)
 * @property {WebSocketConstructor} [WebSocket] (default globalThis.WebSocket, else the `ws` package)
 * @property {() => number} [random] Source of the backoff's jitter, in [0, 1). (default Math.random)
 * @property {() => number} [now] Milliseconds, for the gap wait. (default Date.now)
 */

/**
 * A new random message id: 12 random bytes as base64url (16 characters of
 * `[A-Za-z0-9_-]`, which the relay accepts as an id).
 * @param {(length: number) => Uint8Array} [randomBytes] (default crypto.getRandomValues)
 * @returns {string}
 */
export function newMessageId(randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  return newSessionId((n) => randomBytes(n)).slice(0, 16);
}

/**
 * Whether a room closed should be followed by another join: the rules of
 * {@linkcode closeDecision}, and `1011 history_unavailable` too (the relay could
 * not read the room's history after letting the member in: come back).
 * @param {Parameters<typeof closeDecision>[0]} close
 * @returns {{ reconnect: boolean, why: string, code: number, reason: string }}
 */
export function roomCloseDecision(close) {
  const decision = closeDecision(close);
  if (!decision.reconnect && decision.code === 1011 && decision.reason === "history_unavailable") {
    return { ...decision, reconnect: true };
  }
  return decision;
}

/**
 * The URL, subprotocols and headers of one join: `<url>/rooms/<room>`, with
 * `?since=` (or `?last=`) and `?self=true` when asked, and the token as in
 * {@linkcode connectionTarget}.
 * @param {object} target
 * @param {string | URL} target.url
 * @param {string} target.room
 * @param {string} target.token
 * @param {"protocol" | "query" | "header"} [target.tokenIn] (default "protocol")
 * @param {number | null} [target.since]
 * @param {number | null} [target.last]
 * @param {boolean} [target.self]
 * @returns {{ url: string, protocols: string[], headers?: Record<string, string> }}
 */
export function roomTarget({ url, room, token, tokenIn = "protocol", since, last, self }) {
  const address = new URL(url);
  address.pathname = `${address.pathname.replace(/\/+$/, "")}/rooms/${room}`;
  if (typeof since === "number") address.searchParams.set("since", String(since));
  else if (typeof last === "number") address.searchParams.set("last", String(last));
  if (self) address.searchParams.set("self", "true");
  return carryToken(address, token, tokenIn);
}

/** Skipped offsets remembered (to deliver late arrivals and to ask for them again). */
const MAX_SKIPPED = 1024;

/**
 * The order of a room's broadcasts as one client delivers them, across
 * joins: by offset where offsets exist (the room's order, which members of
 * different instances may receive out of), each once. A broadcast whose
 * earlier offsets have not arrived waits, up to `gapMs`, then goes with the
 * gap skipped (a skipped one that arrives later is still delivered, late, and
 * the next join asks for it again). Offset-less broadcasts (ephemeral ones,
 * or all of them without history) go at once, each (user, id) once within
 * the last `dedupeWindow`. Pure: time is passed in.
 */
export class RoomOrder {
  /** Every offset up to this one was delivered or skipped; `null`: take the first that comes. @type {number | null} */
  #base = null;
  /** Broadcasts past a gap, by offset (`null`: an offset of this client's own, known from its ack). @type {Map<number, { message: RoomBroadcast | null, at: number }>} */
  #pending = new Map();
  /** Offsets given up on. @type {Set<number>} */
  #skipped = new Set();
  /** After a join that lost history: the next offset starts the order, whatever it is. */
  #adopt = false;
  /** (user, id) of offset-less broadcasts delivered, oldest first. @type {Set<string>} */
  #recent = new Set();
  #gapMs;
  #window;

  /** @param {{ gapMs?: number, dedupeWindow?: number }} [options] */
  constructor({ gapMs = DEFAULT_GAP_MS, dedupeWindow = DEFAULT_DEDUPE_WINDOW } = {}) {
    this.#gapMs = gapMs;
    this.#window = dedupeWindow;
  }

  /** The last offset delivered in order (null before one is known). */
  get offset() {
    return this.#base;
  }

  /**
   * The `?since=` of the next join: the last offset delivered in order, or just
   * before the first one skipped (what is asked again and already had is
   * dropped); `null` before the first join. A relay without history ignores it.
   * @returns {number | null}
   */
  get since() {
    if (this.#base === null) return null;
    let since = this.#base;
    for (const skipped of this.#skipped) since = Math.min(since, skipped - 1);
    return since;
  }

  /** Broadcasts waiting for an earlier offset. */
  get waiting() {
    let count = 0;
    for (const { message } of this.#pending.values()) if (message) count++;
    return count;
  }

  /** When {@linkcode RoomOrder.due} next has something to release, or null. */
  get deadline() {
    let oldest = Infinity;
    for (const { at } of this.#pending.values()) oldest = Math.min(oldest, at);
    return oldest === Infinity ? null : oldest + this.#gapMs;
  }

  /**
   * A `room.joined` arrived.
   * @param {{ offset: number | null, recovered: boolean | null, since: number | null, last?: boolean }} joined
   *   `offset`, `recovered` as the relay said; `since` the `?since=` this join asked
   *   for; `last` whether it asked for a backlog with `?last=`.
   */
  joined({ offset, recovered, since, last = false }) {
    if (since !== null && recovered === true) {
      this.#base ??= since; // the replay continues from `since`
      return;
    }
    if (since !== null && recovered === false) {
      if (offset === null || offset < since) {
        // The room's history was reset: offsets start again below what was seen.
        this.#pending.clear();
        this.#skipped.clear();
        this.#base = offset ?? 0;
        return;
      }
      // The oldest ones are gone: the replay starts past a gap that will never fill.
      this.#skipped.clear();
      this.#base ??= since;
      this.#adopt = true;
      return;
    }
    if (since !== null && this.#base !== null) return; // no history: nothing to continue
    if (last && typeof offset === "number") {
      this.#base = null; // the backlog's first offset starts the order
      return;
    }
    this.#base ??= offset ?? 0;
  }

  /**
   * A broadcast arrived: what to deliver now, in order.
   * @param {RoomBroadcast} message
   * @param {number} now
   * @returns {RoomBroadcast[]}
   */
  receive(message, now) {
    const offset = message?.meta?.offset;
    if (typeof offset !== "number") {
      const { user = null, id = null } = message?.meta ?? {};
      if (typeof id !== "string") return [message];
      const key = `${user}\n${id}`;
      if (this.#recent.has(key)) return [];
      this.#recent.add(key);
      if (this.#recent.size > this.#window) {
        this.#recent.delete(/** @type {string} */ (this.#recent.values().next().value));
      }
      return [message];
    }
    return this.#place(offset, message, now);
  }

  /**
   * An offset this client sent itself and will not receive (its `broadcast.ack`
   * without `self`): it fills its place in the order.
   * @param {number} offset
   * @param {number} now
   * @returns {RoomBroadcast[]} what that released
   */
  fill(offset, now) {
    return this.#place(offset, null, now);
  }

  /**
   * Broadcasts that waited `gapMs` for an earlier offset, with the gaps before them skipped.
   * @param {number} now
   * @returns {RoomBroadcast[]}
   */
  due(now) {
    /** @type {RoomBroadcast[]} */
    const out = [];
    for (;;) {
      const deadline = this.deadline;
      if (deadline === null || deadline > now || this.#base === null) return out;
      const first = Math.min(...this.#pending.keys());
      if (first - this.#base - 1 <= MAX_SKIPPED) {
        for (let o = this.#base + 1; o < first; o++) this.#skip(o);
      }
      this.#base = first - 1;
      out.push(...this.#release());
    }
  }

  /**
   * @param {number} offset
   * @param {RoomBroadcast | null} message
   * @param {number} now
   * @returns {RoomBroadcast[]}
   */
  #place(offset, message, now) {
    if (this.#base === null) this.#base = offset - 1;
    else if (this.#adopt && message !== null && offset > this.#base + 1) this.#base = offset - 1;
    if (message !== null) this.#adopt = false;
    if (offset <= this.#base) {
      // Delivered already, unless it was given up on: then late beats never.
      if (!this.#skipped.delete(offset) || message === null) return [];
      return [message];
    }
    if (this.#pending.has(offset)) return [];
    this.#pending.set(offset, { message, at: now });
    return this.#release();
  }

  /** @returns {RoomBroadcast[]} the pending run that now follows the base */
  #release() {
    /** @type {RoomBroadcast[]} */
    const out = [];
    for (;;) {
      const next = /** @type {number} */ (this.#base) + 1;
      const entry = this.#pending.get(next);
      if (!entry) return out;
      this.#pending.delete(next);
      this.#base = next;
      if (entry.message) out.push(entry.message);
    }
  }

  /** @param {number} offset */
  #skip(offset) {
    this.#skipped.add(offset);
    if (this.#skipped.size > MAX_SKIPPED) {
      this.#skipped.delete(/** @type {number} */ (this.#skipped.values().next().value));
    }
  }
}

/**
 * Joins a room and returns its handle at once; the first connection starts
 * in a microtask, so `onState` may use the returned value.
 *
 * @example In an app
 * ```js
 * import { joinRoom } from "./client/relay_client.js";
 * const room = joinRoom({
 *   url: "wss://<project>.supabase.co/functions/v1/relay",
 *   room: "public:lobby",
 *   getToken: async () => (await supabase.auth.getSession()).data.session.access_token,
 *   last: 50, // the first join gets the newest 50 kept broadcasts (with RELAY_ROOM_HISTORY)
 *   onMessage: (m) => show(m.meta.user, m.event, m.payload),
 *   onPresence: (list) => showWhoIsHere(list),
 *   onState: (state, info) => { if (info.why === "history_lost") reloadMessages(); },
 * });
 * room.setPresence({ name: "Ada" });
 * const id = room.send("chat", { text: "hello" }); // held while reconnecting; resent until acknowledged
 * ```
 *
 * Every broadcast sent carries an `id` (a random one unless given); one the
 * relay has not acknowledged (`broadcast.ack`) is sent again, with the same
 * id, after each rejoin, and when the relay refused it with
 * `history_unavailable` (after a backoff): with history the relay keeps it
 * once and acknowledges a repeat with the first offset; without history the
 * receiving clients drop the repeat by (user, id). Ephemeral broadcasts are
 * sent once (held while reconnecting). Each rejoin asks for `?since=` the last
 * offset delivered in order, so nothing said meanwhile is lost while the room
 * keeps it; received broadcasts are delivered in offset order, each once (see
 * {@linkcode RoomOrder}); without `self`, this client's own broadcasts that a
 * replay brings back are not delivered. Reconnects follow
 * {@linkcode roomCloseDecision}.
 * @param {RoomOptions} options
 * @returns {RelayRoom}
 * @throws {TypeError | RangeError} for a bad option, naming it
 */
export function joinRoom(options) {
  return new RelayRoom(options);
}

/** Own message ids remembered to recognise this client's broadcasts in a replay. */
const MAX_OWN_IDS = 4096;

/**
 * One join attempt.
 * @typedef {object} RoomAttempt
 * @property {WebSocketLike | null} socket
 * @property {boolean} opened
 * @property {boolean} joined `room.joined` came: held broadcasts went out.
 * @property {boolean} closing A close notice came, or this side is closing it.
 * @property {{ code: string, closeCode: number, message: string } | null} notice
 * @property {number | null} since The `?since=` it asked for.
 * @property {boolean} last It asked for `?last=`.
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 */

/**
 * A broadcast this client sent that the relay has not acknowledged.
 * @typedef {object} Outgoing
 * @property {string} id
 * @property {string} text The JSON sent.
 * @property {number} size
 * @property {boolean} ephemeral
 * @property {boolean} sent Sent on the current connection (and not refused since).
 */

/** A room of an app across connections. Made by {@linkcode joinRoom}. */
export class RelayRoom {
  /** @type {Required<Pick<RoomOptions, "getToken" | "maxHeldBytes" | "maxAttempts" | "connectTimeoutMs" | "random" | "now">> & RoomOptions} */
  #options;
  /** @type {string} */
  #url;
  /** @type {string} */
  #room;
  /** @type {BackoffOptions} */
  #backoff;
  /** @type {RelayState} */
  #state = "connecting";
  #attempts = 0;
  #established = false;
  /** @type {RoomAttempt | null} */
  #current = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {[number, string] | null} */
  #stopping = null;
  /** @type {Promise<RoomStateInfo>} */
  #closed;
  /** @type {(info: RoomStateInfo) => void} */
  #resolveClosed = () => {};
  /** @type {Promise<WebSocketConstructor> | null} */
  #socketClass = null;
  /** @type {RoomOrder} */
  #order;
  /** Broadcasts not acknowledged yet, in the order sent. @type {Map<string, Outgoing>} */
  #outbox = new Map();
  #outboxBytes = 0;
  /** Ids this client gave its broadcasts, oldest first. @type {Set<string>} */
  #mine = new Set();
  /** @type {Map<string, Record<string, unknown> | null>} */
  #presence = new Map();
  /** @type {Record<string, unknown> | null} */
  #presenceState = null;
  /** @type {string | null} */
  #user = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #gapTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #resendTimer;
  /** `history_unavailable` refusals since the last acknowledgement. */
  #refusals = 0;

  /**
   * Use {@linkcode joinRoom}.
   * @param {RoomOptions} options
   */
  constructor(options) {
    if (!isRecord(options)) throw new TypeError("joinRoom() needs an options object");
    if (typeof options.getToken !== "function") {
      throw new TypeError("getToken must be a function returning the user's access token");
    }
    let url;
    try {
      url = new URL(options.url);
    } catch {
      throw new TypeError("url must be the relay's ws:// or wss:// URL");
    }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${url.protocol}//`);
    }
    if (typeof options.room !== "string" || !ROOM_NAME_PATTERN.test(options.room)) {
      throw new TypeError("room must be 1-100 characters of A-Z, a-z, 0-9, _ . : -");
    }
    const tokenIn = options.tokenIn;
    if (
      tokenIn !== undefined && tokenIn !== "protocol" && tokenIn !== "query" && tokenIn !== "header"
    ) {
      throw new TypeError('tokenIn must be "protocol", "query" or "header"');
    }
    if (options.since !== undefined) count("since", options.since, 0);
    if (options.last !== undefined) count("last", options.last, 0);
    this.#options = {
      ...options,
      maxHeldBytes: count("maxHeldBytes", options.maxHeldBytes, DEFAULT_MAX_HELD_BYTES),
      maxAttempts: count("maxAttempts", options.maxAttempts, DEFAULT_MAX_ATTEMPTS),
      connectTimeoutMs: count("connectTimeoutMs", options.connectTimeoutMs, 15_000),
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
    };
    this.#order = new RoomOrder({
      gapMs: count("gapMs", options.gapMs, DEFAULT_GAP_MS),
      dedupeWindow: count("dedupeWindow", options.dedupeWindow, DEFAULT_DEDUPE_WINDOW),
    });
    this.#backoff = backoffOptions(options.backoff);
    this.#url = url.href;
    this.#room = options.room;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    queueMicrotask(() => {
      if (this.#stopping) return;
      this.#setState("connecting", { why: "start" });
      this.#open();
    });
  }

  /** The room's name. */
  get room() {
    return this.#room;
  }

  /** The current state. */
  get state() {
    return this.#state;
  }

  /** This client's user id, as the relay said in `room.joined` (null before). */
  get user() {
    return this.#user;
  }

  /** The last offset delivered in order: store it to pass as `since` later (null without one). */
  get offset() {
    return this.#order.offset;
  }

  /** Who is present, as the relay last said (this user included once joined). @returns {PresenceEntry[]} */
  get presence() {
    return [...this.#presence].map(([user, state]) => ({ user, state }));
  }

  /** Broadcasts not acknowledged yet (held, or sent and waiting), and their bytes. */
  get pending() {
    return { messages: this.#outbox.size, bytes: this.#outboxBytes };
  }

  /** Settles once the room is left for good, with the `closed` state's info. */
  get closed() {
    return this.#closed;
  }

  /**
   * Broadcasts `payload` as `event` to the room. While (re)connecting it is
   * held, in order; until the relay acknowledges it, it is sent again after
   * each rejoin with the same id.
   * @param {string} event 1-64 of `[A-Za-z0-9_.:-]`.
   * @param {unknown} payload Any JSON value.
   * @param {{ ephemeral?: boolean, id?: string }} [options] `ephemeral`: never stored (typing,
   *   cursors), sent once; `id`: the message's id (default a new random one).
   * @returns {string} The message's id (`meta.id` for the receivers, `broadcast.ack`'s `id`).
   * @throws {RelayClientError} `"closed"` after `close()` or the end; `"hold_full"` over `maxHeldBytes`
   * @throws {TypeError} for a bad event name or id, an id still pending, or a payload JSON cannot represent
   */
  send(event, payload, options = {}) {
    if (this.#state === "closed" || this.#stopping) {
      throw new RelayClientError("closed", "the room is closed");
    }
    if (typeof event !== "string" || !MESSAGE_ID_PATTERN.test(event)) {
      throw new TypeError("event must be 1-64 characters of A-Z, a-z, 0-9, _ . : -");
    }
    const id = options.id ?? newMessageId();
    if (typeof id !== "string" || !MESSAGE_ID_PATTERN.test(id)) {
      throw new TypeError("id must be 1-64 characters of A-Z, a-z, 0-9, _ . : -");
    }
    if (this.#outbox.has(id)) throw new TypeError(`a broadcast with id ${id} is still pending`);
    if (payload === undefined) throw new TypeError("payload must be a JSON value");
    const ephemeral = options.ephemeral === true;
    const text = JSON.stringify({
      type: "broadcast",
      event,
      payload,
      id,
      ...(ephemeral ? { ephemeral: true } : {}),
    });
    const size = messageBytes(text);
    if (!fitsHold(this.#outboxBytes, size, this.#options.maxHeldBytes)) {
      throw new RelayClientError(
        "hold_full",
        `${size} more bytes not yet acknowledged would pass maxHeldBytes ` +
          `(${this.#outboxBytes} of ${this.#options.maxHeldBytes} waiting)`,
      );
    }
    this.#remember(id);
    /** @type {Outgoing} */
    const outgoing = { id, text, size, ephemeral, sent: false };
    const socket = this.#liveSocket();
    if (socket && !this.#hasUnsent()) {
      outgoing.sent = this.#transmit(socket, text);
      if (outgoing.sent && ephemeral) return id;
    }
    this.#outbox.set(id, outgoing);
    this.#outboxBytes += size;
    return id;
  }

  /**
   * Sets this user's presence state in the room (last write wins); it is set
   * again after each rejoin.
   * @param {Record<string, unknown>} state A JSON object of at most 1024 bytes.
   * @returns {void}
   * @throws {RelayClientError} `"closed"` after `close()` or the end
   * @throws {TypeError} for something that is not a plain object
   */
  setPresence(state) {
    if (this.#state === "closed" || this.#stopping) {
      throw new RelayClientError("closed", "the room is closed");
    }
    if (!isRecord(state)) throw new TypeError("presence state must be a JSON object");
    const text = JSON.stringify({ type: "presence", state });
    this.#presenceState = JSON.parse(JSON.stringify(state));
    const socket = this.#liveSocket();
    if (socket) this.#transmit(socket, text);
  }

  /**
   * Leaves the room: no more reconnects; what was not acknowledged is dropped
   * (counted in `unsent`). Settles with the `closed` info once the socket closed.
   * @param {number} [code] 1000 or 3000-4999. (default 1000)
   * @param {string} [reason] (default "client closed")
   * @returns {Promise<RoomStateInfo>}
   */
  close(code = 1000, reason = "client closed") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError(`a client may close with 1000 or 3000-4999, got ${code}`);
    }
    if (this.#state === "closed" || this.#stopping) return this.#closed;
    this.#stopping = [code, reason];
    clearTimeout(this.#retryTimer);
    const attempt = this.#current;
    const socket = attempt?.socket;
    if (attempt && socket && socket.readyState <= CLOSING) {
      clearTimeout(attempt.timer);
      try {
        socket.close(code, reason);
      } catch { /* closing already */ }
      attempt.timer = setTimeout(() => this.#closedAfter(attempt), CLOSE_GRACE_MS);
    } else {
      if (attempt) clearTimeout(attempt.timer);
      this.#current = null;
      this.#finish({ why: "client", code, reason });
    }
    return this.#closed;
  }

  /** The socket to send on now, if the room is joined and not closing. */
  #liveSocket() {
    const attempt = this.#current;
    return attempt?.socket && attempt.joined && !attempt.closing &&
        attempt.socket.readyState === OPEN
      ? attempt.socket
      : null;
  }

  #hasUnsent() {
    for (const outgoing of this.#outbox.values()) if (!outgoing.sent) return true;
    return false;
  }

  /**
   * @param {WebSocketLike} socket
   * @param {string} text
   * @returns {boolean} whether it went out
   */
  #transmit(socket, text) {
    try {
      socket.send(text);
      return true;
    } catch {
      return false; // the socket is going: the close event follows
    }
  }

  /** @param {string} id */
  #remember(id) {
    this.#mine.add(id);
    if (this.#mine.size > MAX_OWN_IDS) {
      this.#mine.delete(/** @type {string} */ (this.#mine.values().next().value));
    }
  }

  /** Sends, in order, every broadcast not sent on this connection yet. */
  #flush() {
    const socket = this.#liveSocket();
    if (!socket) return;
    for (const outgoing of [...this.#outbox.values()]) {
      if (outgoing.sent) continue;
      if (!this.#transmit(socket, outgoing.text)) return;
      outgoing.sent = true;
      if (outgoing.ephemeral) this.#drop(outgoing.id);
    }
  }

  /** @param {string} id */
  #drop(id) {
    const outgoing = this.#outbox.get(id);
    if (!outgoing) return;
    this.#outbox.delete(id);
    this.#outboxBytes -= outgoing.size;
  }

  async #open() {
    /** @type {RoomAttempt} */
    const attempt = {
      socket: null,
      opened: false,
      joined: false,
      closing: false,
      notice: null,
      since: null,
      last: false,
      timer: undefined,
    };
    this.#current = attempt;
    attempt.timer = setTimeout(() => this.#abandon(attempt), this.#options.connectTimeoutMs);
    /** @type {WebSocketConstructor} */
    let Socket;
    try {
      Socket = await this.#webSocketClass();
    } catch {
      if (attempt !== this.#current) return;
      clearTimeout(attempt.timer);
      this.#current = null;
      this.#finish({ why: "no_websocket" });
      return;
    }
    const token = await freshToken(() => this.#options.getToken());
    if (attempt !== this.#current) return;
    if (token === null) {
      this.#ended(attempt, { reconnect: this.#established, why: "token_unavailable" });
      return;
    }
    // The first join asks what the app asked for; every later one continues from what was seen.
    attempt.since = this.#established ? this.#order.since : this.#options.since ?? null;
    attempt.last = !this.#established && attempt.since === null &&
      this.#options.last !== undefined;
    const target = roomTarget({
      url: this.#url,
      room: this.#room,
      token,
      tokenIn: this.#options.tokenIn ?? (isWsPackage(Socket) ? "header" : "protocol"),
      since: attempt.since,
      last: attempt.last ? this.#options.last ?? null : null,
      self: this.#options.self === true,
    });
    let socket;
    try {
      socket = openSocket(Socket, target);
    } catch {
      this.#ended(attempt, { reconnect: this.#established, why: "refused" });
      return;
    }
    attempt.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => {
      if (attempt === this.#current) attempt.opened = true;
    });
    socket.addEventListener("message", (event) => this.#received(attempt, event.data));
    socket.addEventListener("error", (event) => event?.preventDefault?.());
    socket.addEventListener("close", (event) => {
      this.#socketClosed(attempt, Number(event?.code ?? 1006), String(event?.reason ?? ""));
    });
  }

  /** @returns {Promise<WebSocketConstructor>} */
  #webSocketClass() {
    this.#socketClass ??= findWebSocket(this.#options.WebSocket);
    return this.#socketClass;
  }

  /**
   * @param {RoomAttempt} attempt
   * @param {unknown} data
   */
  #received(attempt, data) {
    if (attempt !== this.#current) return;
    /** @type {unknown} */
    let event;
    if (typeof data === "string") {
      try {
        event = JSON.parse(data);
      } catch { /* not JSON */ }
    } else {
      const raw = data instanceof ArrayBuffer ? data : toArrayBuffer(data);
      if (raw !== null) callApp(this.#options.onBinary, raw);
      return;
    }
    if (!isRecord(event) || typeof event.type !== "string") return;
    const roomEvent = /** @type {RelayEvent} */ (event);
    callApp(this.#options.onEvent, roomEvent);
    const notice = closeNoticeOf(roomEvent);
    if (notice !== null) {
      attempt.notice = notice;
      attempt.closing = true;
      return;
    }
    attempt.notice = null;
    switch (roomEvent.type) {
      case "room.joined":
        return this.#joined(attempt, roomEvent);
      case "broadcast":
        return this.#deliver(this.#order.receive(/** @type {any} */ (roomEvent), this.#now()));
      case "broadcast.ack":
        return this.#acked(roomEvent);
      case "presence.join":
      case "presence.state":
      case "presence.leave":
        return this.#presenceChanged(roomEvent);
      case "error":
        return this.#refused(roomEvent);
    }
  }

  /**
   * @param {RoomAttempt} attempt
   * @param {RelayEvent} joined
   */
  #joined(attempt, joined) {
    if (attempt.joined) return;
    clearTimeout(attempt.timer);
    attempt.joined = true;
    const rejoin = this.#established;
    this.#established = true;
    this.#attempts = 0;
    if (typeof joined.user === "string") this.#user = joined.user;
    const offset = typeof joined.offset === "number" ? joined.offset : null;
    const recovered = typeof joined.recovered === "boolean" ? joined.recovered : null;
    this.#order.joined({ offset, recovered, since: attempt.since, last: attempt.last });
    this.#presence = new Map();
    for (const entry of Array.isArray(joined.presence) ? joined.presence : []) {
      if (isRecord(entry) && typeof entry.user === "string") {
        this.#presence.set(entry.user, isRecord(entry.state) ? entry.state : null);
      }
    }
    callApp(this.#options.onPresence, this.presence, joined);
    // Everything not acknowledged goes again, in the order first sent, after the presence.
    const socket = this.#liveSocket();
    if (socket && this.#presenceState !== null) {
      this.#transmit(socket, JSON.stringify({ type: "presence", state: this.#presenceState }));
    }
    for (const outgoing of this.#outbox.values()) outgoing.sent = false;
    this.#flush();
    const why = recovered === false ? "history_lost" : rejoin ? "rejoined" : "joined";
    this.#setState("open", { why, recovered, offset, since: attempt.since });
  }

  /** @param {RoomBroadcast[]} messages */
  #deliver(messages) {
    const self = this.#options.self === true;
    for (const message of messages) {
      // Without self, a replay may bring this client's own broadcasts back: not for the app.
      const own = !self && message.meta?.user === this.#user &&
        typeof message.meta?.id === "string" && this.#mine.has(message.meta.id);
      if (!own) callApp(this.#options.onMessage, message);
    }
    this.#armGapTimer();
  }

  #armGapTimer() {
    clearTimeout(this.#gapTimer);
    this.#gapTimer = undefined;
    const deadline = this.#order.deadline;
    if (deadline === null || this.#state === "closed") return;
    this.#gapTimer = setTimeout(() => {
      this.#gapTimer = undefined;
      this.#deliver(this.#order.due(this.#now()));
    }, Math.max(0, deadline - this.#now()));
  }

  #now() {
    return this.#options.now();
  }

  /** @param {RelayEvent} ack */
  #acked(ack) {
    if (typeof ack.id !== "string") return;
    this.#drop(ack.id);
    this.#refusals = 0;
    // Without self this client never receives its own broadcast: its offset fills the order.
    if (this.#options.self !== true && typeof ack.offset === "number") {
      this.#deliver(this.#order.fill(ack.offset, this.#now()));
    }
  }

  /** @param {RelayEvent} change */
  #presenceChanged(change) {
    if (typeof change.user !== "string") return;
    if (change.type === "presence.leave") this.#presence.delete(change.user);
    else this.#presence.set(change.user, isRecord(change.state) ? change.state : null);
    callApp(this.#options.onPresence, this.presence, change);
  }

  /**
   * An in-band refusal of a broadcast: `history_unavailable` is sent again
   * after a backoff; any other refusal of one of ours will never pass, so it
   * is dropped (the app saw the error in `onEvent`).
   * @param {RelayEvent} refusal
   */
  #refused(refusal) {
    const error = isRecord(refusal.error) ? refusal.error : null;
    const id = typeof error?.event_id === "string" ? error.event_id : null;
    if (id === null || !this.#outbox.has(id)) return;
    if (error?.code !== "history_unavailable") {
      this.#drop(id);
      return;
    }
    /** @type {Outgoing} */ (this.#outbox.get(id)).sent = false;
    if (this.#resendTimer !== undefined) return;
    const delayMs = backoffDelay(this.#refusals, this.#backoff, this.#options.random);
    this.#refusals += 1;
    this.#resendTimer = setTimeout(() => {
      this.#resendTimer = undefined;
      this.#flush();
    }, delayMs);
  }

  /** @param {RoomAttempt} attempt */
  #abandon(attempt) {
    if (attempt !== this.#current) return;
    try {
      attempt.socket?.close(1000, "connect_timeout");
    } catch { /* not open */ }
    this.#ended(attempt, { reconnect: this.#established, why: "connect_timeout" });
  }

  /**
   * @param {RoomAttempt} attempt
   * @param {number} code
   * @param {string} reason
   */
  #socketClosed(attempt, code, reason) {
    if (attempt !== this.#current) return;
    if (this.#stopping) {
      this.#closedAfter(attempt);
      return;
    }
    this.#ended(
      attempt,
      roomCloseDecision({
        opened: attempt.opened,
        code,
        reason,
        notice: attempt.notice,
        reconnecting: this.#established,
      }),
    );
  }

  /** @param {RoomAttempt} attempt */
  #closedAfter(attempt) {
    if (attempt !== this.#current || !this.#stopping) return;
    clearTimeout(attempt.timer);
    this.#current = null;
    const [code, reason] = this.#stopping;
    this.#finish({ why: "client", code, reason });
  }

  /**
   * @param {RoomAttempt} attempt
   * @param {{ reconnect: boolean, why: string, code?: number, reason?: string }} decision
   */
  #ended(attempt, decision) {
    clearTimeout(attempt.timer);
    clearTimeout(this.#resendTimer);
    this.#resendTimer = undefined;
    this.#current = null;
    const close = closeOf(decision);
    if (!decision.reconnect) {
      this.#finish({ why: decision.why, ...close });
      return;
    }
    if (this.#attempts >= this.#options.maxAttempts) {
      this.#finish({ why: "gave_up", cause: decision.why, ...close });
      return;
    }
    const delayMs = backoffDelay(this.#attempts, this.#backoff, this.#options.random);
    this.#attempts += 1;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#stopping) this.#open();
    }, delayMs);
    this.#setState("reconnecting", { why: decision.why, ...close, delayMs });
  }

  /** @param {Omit<RoomStateInfo, "room" | "attempt">} info */
  #finish(info) {
    if (this.#state === "closed") return;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#resendTimer);
    clearTimeout(this.#gapTimer);
    const unsent = this.#outbox.size;
    this.#outbox.clear();
    this.#outboxBytes = 0;
    const final = { room: this.#room, attempt: this.#attempts, ...info, unsent };
    this.#state = "closed";
    this.#resolveClosed(final);
    callApp(this.#options.onState, "closed", final);
  }

  /**
   * @param {RelayState} state
   * @param {Omit<RoomStateInfo, "room" | "attempt">} info
   */
  #setState(state, info) {
    this.#state = state;
    callApp(this.#options.onState, state, {
      room: this.#room,
      attempt: this.#attempts,
      ...info,
    });
  }
}
