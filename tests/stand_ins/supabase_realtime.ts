/**
 * A local Supabase Realtime (the Phoenix server of `supabase/realtime` behind
 * the API gateway), faithful in what supabase-js / realtime-js speak: the
 * WebSocket at `/realtime/v1/websocket` with the vsn 2.0.0 serializer (JSON
 * array frames plus the binary user-broadcast frames) and vsn 1.0.0 object
 * frames, `phx_join` / `phx_reply` / `phx_leave` / `phx_close` / heartbeats /
 * `access_token`, Broadcast (self, ack, private channels), Presence (state,
 * diffs, the per-channel client rate limit that shuts the channel down), the
 * REST broadcast endpoints, and failure modes (socket drops, silence, the whole
 * service stopping and coming back on the same port).
 *
 * Written from the protocol (Supabase's protocol docs, realtime-js's
 * `lib/serializer.js`, `supabase/realtime`'s `v2_serializer.ex`,
 * `realtime_channel.ex`, `presence_handler.ex`, `broadcast_handler.ex`,
 * `batch_broadcast.ex`, `user_socket.ex`), not from their code.
 *
 * Authorization is reduced to what a project without custom RLS policies on
 * `realtime.messages` does: public channels are open to every valid key;
 * private channels admit only the service role (the secret key, the legacy
 * service-role key, or a service_role JWT signed with the project's secret),
 * which bypasses RLS; everyone else is refused as Realtime refuses a role that
 * no policy lets read the topic.
 */

import { base64url, decodeJwt, hmacKey, signHs } from "./jwt.ts";

/** Options for {@linkcode startRealtimeStandIn}. */
export interface RealtimeStandInOptions {
  /** Interface to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Port (default 0: a free one). Kept across stop()/start(). */
  port?: number;
  /**
   * false: do not listen at all, only serve through {@linkcode RealtimeStandIn.handle}
   * (mounted under another stand-in's origin). Default true.
   */
  listen?: boolean;
  /** The project's secret API key (default `sb_secret_<random>`). */
  secretKey?: string;
  /** The project's publishable API key (default `sb_publishable_<random>`). */
  publishableKey?: string;
  /** The project's legacy HS256 JWT secret (default random); verifies JWT access tokens. */
  jwtSecret?: string;
  /** Legacy service-role key (default: an HS256 JWT, role service_role, signed with jwtSecret). */
  serviceRoleKey?: string;
  /** Legacy anon key (default: an HS256 JWT, role anon, signed with jwtSecret). */
  anonKey?: string;
  /**
   * A socket that sends nothing for this long is closed (1000, empty reason),
   * as Phoenix's WebSocket transport does (its `timeout`, default 60 000 ms;
   * realtime-js sends a heartbeat every 25 000 ms).
   */
  heartbeatTimeoutMs?: number;
  /** Presence track/untrack calls allowed per channel per window (Realtime's CLIENT_PRESENCE_MAX_CALLS, default 5). */
  presenceMaxCalls?: number;
  /** The presence rate-limit window (Realtime's CLIENT_PRESENCE_WINDOW_MS, default 30 000 ms). */
  presenceWindowMs?: number;
  /**
   * How long a refused join waits before its error reply (Realtime's
   * CHANNEL_ERROR_BACKOFF_MS, default 5000 ms). Like Realtime, the socket
   * handles nothing else meanwhile (Phoenix joins block the socket process).
   */
  joinErrorDelayMs?: number;
}

/** Counters a test may read; they only grow, except `sockets`. */
export interface RealtimeStandInStats {
  /** WebSocket upgrades accepted, ever. */
  connections: number;
  /** WebSockets open now. */
  sockets: number;
  /** Successful channel joins. */
  joins: number;
  /** Joins answered with an error (unauthorized, bad token, bad topic). */
  joinRefusals: number;
  /** Broadcast messages accepted for relaying (socket pushes and REST messages). */
  broadcasts: number;
  /** Broadcast frames written to subscribers. */
  deliveries: number;
  /** Presence track/untrack pushes received. */
  presenceCalls: number;
  /** Channels the server shut down (presence rate limit, revoked token). */
  channelShutdowns: number;
  /** HTTP requests refused (bad API key, unauthorized REST broadcast, bad vsn). */
  refusals: number;
  /** Heartbeats answered. */
  heartbeats: number;
  /** Sockets closed because they stayed silent past heartbeatTimeoutMs. */
  timeouts: number;
  /** Sockets cut by drop() or stop(). */
  drops: number;
}

/** One open socket, for tests that need to kill a particular client. */
export interface RealtimeSocketInfo {
  /** Stand-in's id for this socket. */
  readonly id: string;
  /** The role its API key stands for ("service_role" or "anon"). */
  readonly role: string;
  /** The serializer version it connected with. */
  readonly vsn: "1.0.0" | "2.0.0";
  /** Topics it has joined, e.g. "realtime:relay:room:a". */
  readonly topics: string[];
  /** Presence keys it tracks now, over all its channels. */
  readonly presenceKeys: string[];
  /**
   * Kills it like a crash: the TCP connection is cut without a close frame
   * (the client sees 1006). A socket served through {@linkcode RealtimeStandIn.handle}
   * by another server cannot be cut and is closed with 1000 instead. Either
   * way its presences leave every channel at once.
   */
  drop(): void;
}

/** The running stand-in. */
export interface RealtimeStandIn {
  /** SUPABASE_URL-style origin, e.g. "http://127.0.0.1:54329"; Realtime is at url + "/realtime/v1". "" with `listen: false`. */
  readonly url: string;
  /** The listening port (0 with `listen: false`). */
  readonly port: number;
  /** The secret API key (sb_secret_...): full access, private channels included. */
  readonly secretKey: string;
  /** The legacy service-role key (HS256 JWT): same rights as secretKey. */
  readonly serviceRoleKey: string;
  /** The publishable API key (sb_publishable_...): public channels only. */
  readonly publishableKey: string;
  /** The legacy anon key (HS256 JWT): same rights as publishableKey. */
  readonly anonKey: string;
  /** The legacy JWT secret that signs and verifies JWT access tokens. */
  readonly jwtSecret: string;
  /** Live counters. */
  readonly stats: Readonly<RealtimeStandInStats>;
  /** Whether the service is up (between start() and stop()). */
  readonly running: boolean;
  /**
   * Serves one request for a path under `/realtime/v1/` (WebSocket upgrade at
   * `/realtime/v1/websocket`, REST at `/realtime/v1/api/broadcast...`), the way
   * Supabase's API gateway serves Realtime on the project's origin; other paths
   * get the gateway's 404. Works for requests of any `Deno.serve` server, so
   * another stand-in can mount Realtime on its own origin. While stopped it
   * answers 503 as the gateway does for a dead upstream.
   */
  handle(request: Request): Response | Promise<Response>;
  /** The sockets open now. */
  sockets(): RealtimeSocketInfo[];
  /** The presence state of a topic ("realtime:<name>"), as presence_state would send it. */
  presenceState(
    topic: string,
    opts?: { private?: boolean },
  ): Record<string, { metas: Record<string, unknown>[] }>;
  /**
   * Crashes the service: every socket is cut without a close frame and the
   * port stops listening (connections refused) until start(). Mounted sockets
   * are closed with 1000 and handle() answers 503.
   */
  stop(): Promise<void>;
  /** Listens again on the same port after stop(). */
  start(): Promise<void>;
  /** Ends everything: sockets, listener, timers. */
  close(): Promise<void>;
}

/** Starts the stand-in (port 0 picks a free one). */
export async function startRealtimeStandIn(
  opts: RealtimeStandInOptions = {},
): Promise<RealtimeStandIn> {
  const s = new RealtimeServer(opts);
  await s.init();
  return s;
}

/**
 * The structural bits of a supabase-js client {@linkcode shutDownRealtimeClient}
 * needs (so this module does not import supabase-js).
 */
export interface RealtimeClientLike {
  getChannels(): { unsubscribe(): Promise<unknown>; teardown(): void }[];
  realtime: unknown;
}

/** The Phoenix channel under a RealtimeChannel (realtime-js internals). */
interface PhoenixChannelLike {
  bindings: { event: string }[];
  trigger(event: string, payload: unknown): void;
}

/**
 * Leaves every channel and closes a supabase-js client's Realtime socket
 * without leaving a timer behind, so Deno's op sanitizer stays on.
 *
 * Three realtime-js 2.119.1 timers outlive the public shutdown path
 * (`removeAllChannels()`):
 * - `RealtimeClient.disconnect()` races the close against a 10 s `setTimeout`
 *   it never clears (`phoenix/socketAdapter.js`);
 * - removing the last channel arms a deferred disconnect
 *   (`disconnectOnEmptyChannelsAfterMs`, default 50 s);
 * - every push waits `timeout` (10 s) for a reply, and a broadcast without
 *   `ack: true` never gets one (Realtime does not answer it), so each such
 *   `send()` leaves a timer running for 10 s after it resolved "ok".
 *
 * This expires the pushes still waiting for a reply (as their timeout would),
 * leaves the channels the public way (phx_leave, so presence goes at once),
 * cancels the deferred disconnect, and closes the underlying Phoenix socket
 * directly, which clears its heartbeat and reconnect timers and calls back
 * once the WebSocket is closed. It relies on realtime-js internals
 * (`channelAdapter.getChannel()`, `socketAdapter.getSocket()`,
 * `_cancelPendingDisconnect`) and throws if they change.
 */
export async function shutDownRealtimeClient(client: RealtimeClientLike): Promise<void> {
  const internals = "realtime-js internals changed: update shutDownRealtimeClient";
  for (const ch of client.getChannels()) {
    const phx = (ch as { channelAdapter?: { getChannel?: () => PhoenixChannelLike } })
      .channelAdapter?.getChannel?.();
    if (!phx || !Array.isArray(phx.bindings)) throw new Error(internals);
    const waiting = phx.bindings.map((b) => b.event).filter((e) => e.startsWith("chan_reply_"));
    for (const event of waiting) phx.trigger(event, { status: "timeout", response: {} });
  }
  await Promise.all(
    client.getChannels().map(async (ch) => {
      await ch.unsubscribe();
      ch.teardown();
    }),
  );
  const rt = client.realtime as {
    _cancelPendingDisconnect?: () => void;
    socketAdapter?: { getSocket?: () => { disconnect(cb: () => void): void } };
  };
  const socket = rt.socketAdapter?.getSocket?.();
  if (!socket || typeof rt._cancelPendingDisconnect !== "function") throw new Error(internals);
  rt._cancelPendingDisconnect();
  await new Promise<void>((resolve) => socket.disconnect(resolve));
}

// ---- wire formats -------------------------------------------------------------

/** A decoded client message (payload of a binary user broadcast push is kept raw). */
interface InMessage {
  join_ref: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

/** What a binary user broadcast push (kind 3) carries. */
interface UserBroadcastPush {
  userEvent: string;
  /** 0 binary, 1 JSON. */
  encoding: number;
  bytes: Uint8Array;
}

/** vsn 2.0.0 binary frame kinds (v2_serializer.ex). */
const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Decodes a kind-3 frame: kind, four u8 lengths, u8 encoding, then join_ref, ref, topic, event, metadata, payload. */
function decodeUserBroadcastPush(buf: Uint8Array): InMessage | undefined {
  if (buf.byteLength < 7 || buf[0] !== KIND_USER_BROADCAST_PUSH) return undefined;
  const [joinRefLen, refLen, topicLen, eventLen, metaLen, encoding] = [
    buf[1]!,
    buf[2]!,
    buf[3]!,
    buf[4]!,
    buf[5]!,
    buf[6]!,
  ];
  let off = 7;
  const take = (n: number) => {
    if (off + n > buf.byteLength) throw new Error("truncated");
    const part = buf.subarray(off, off + n);
    off += n;
    return part;
  };
  try {
    const joinRef = decoder.decode(take(joinRefLen));
    const ref = decoder.decode(take(refLen));
    const topic = decoder.decode(take(topicLen));
    const userEvent = decoder.decode(take(eventLen));
    take(metaLen); // Realtime reads the metadata but does not relay it.
    const push: UserBroadcastPush = { userEvent, encoding, bytes: buf.slice(off) };
    return {
      join_ref: joinRef === "" ? null : joinRef,
      ref: ref === "" ? null : ref,
      topic,
      event: "broadcast",
      payload: push,
    };
  } catch {
    return undefined;
  }
}

/** Encodes a kind-4 frame: kind, u8 topic/event/metadata lengths, u8 encoding, the three strings, payload. */
function encodeUserBroadcast(
  topic: string,
  userEvent: string,
  encoding: number,
  payload: Uint8Array,
): Uint8Array {
  const t = encoder.encode(topic);
  const e = encoder.encode(userEvent);
  if (t.byteLength > 255 || e.byteLength > 255) throw new Error("topic or event over 255 bytes");
  const out = new Uint8Array(5 + t.byteLength + e.byteLength + payload.byteLength);
  out.set([KIND_USER_BROADCAST, t.byteLength, e.byteLength, 0, encoding]);
  out.set(t, 5);
  out.set(e, 5 + t.byteLength);
  out.set(payload, 5 + t.byteLength + e.byteLength);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function randomToken(n: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(n))).slice(0, n).replace(/[-_]/g, "x");
}

/** A Phoenix.Tracker-style presence ref. */
function presenceRef(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(12)));
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

// ---- server state ---------------------------------------------------------------

interface Session {
  id: string;
  vsn: "1.0.0" | "2.0.0";
  /** Role of the socket's API key (Realtime's tenant token). */
  role: string;
  ws: WebSocket;
  /** Cuts the TCP connection (only for sockets that came through our own listener). */
  cut?: () => void;
  channels: Map<string, Channel>;
  alive: boolean;
  idleTimer?: Timer | undefined;
  /** Messages are handled one at a time, in order, as the Phoenix socket process does. */
  queue: Promise<void>;
  closed: Promise<void>;
}

interface Channel {
  session: Session;
  topic: string;
  sub: string;
  key: string;
  joinRef: string | null;
  private: boolean;
  self: boolean;
  ack: boolean;
  role: string;
  accessToken: string | null;
  presenceKey: string;
  /** Whether presence_diff reaches this channel (public, enabled at join, or after its own track). */
  presenceRead: boolean;
  tracked?: { ref: string; payload: Record<string, unknown> } | undefined;
  presenceRate: { count: number; resetAt: number | null };
}

type Timer = ReturnType<typeof setTimeout>;

type TokenCheck = { role: string } | { joinError: string; shutdown: string };

class RealtimeServer implements RealtimeStandIn {
  url = "";
  port = 0;
  readonly secretKey: string;
  readonly publishableKey: string;
  readonly jwtSecret: string;
  serviceRoleKey = "";
  anonKey = "";
  readonly stats: RealtimeStandInStats = {
    connections: 0,
    sockets: 0,
    joins: 0,
    joinRefusals: 0,
    broadcasts: 0,
    deliveries: 0,
    presenceCalls: 0,
    channelShutdowns: 0,
    refusals: 0,
    heartbeats: 0,
    timeouts: 0,
    drops: 0,
  };
  running = true;

  readonly #opts: RealtimeStandInOptions;
  readonly #hostname: string;
  readonly #heartbeatTimeoutMs: number;
  readonly #presenceMaxCalls: number;
  readonly #presenceWindowMs: number;
  readonly #joinErrorDelayMs: number;
  readonly #sessions = new Set<Session>();
  /** Subscribers per topic; public and private topics of one name are distinct, as in Realtime. */
  readonly #topics = new Map<string, Set<Channel>>();
  readonly #timers = new Set<Timer>();
  #server: Deno.HttpServer | undefined;
  #front: TcpFront | undefined;
  #closed = false;

  constructor(opts: RealtimeStandInOptions) {
    this.#opts = opts;
    this.#hostname = opts.hostname ?? "127.0.0.1";
    this.secretKey = opts.secretKey ?? `sb_secret_${randomToken(32)}`;
    this.publishableKey = opts.publishableKey ?? `sb_publishable_${randomToken(22)}`;
    this.jwtSecret = opts.jwtSecret ?? randomToken(40);
    this.#heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 60_000;
    this.#presenceMaxCalls = opts.presenceMaxCalls ?? 5;
    this.#presenceWindowMs = opts.presenceWindowMs ?? 30_000;
    this.#joinErrorDelayMs = opts.joinErrorDelayMs ?? 5000;
  }

  async init(): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const legacy = (role: string) =>
      signHs({ alg: "HS256", typ: "JWT" }, {
        iss: "supabase",
        role,
        iat: now,
        exp: now + 10 * 365 * 24 * 3600,
      }, this.jwtSecret);
    this.serviceRoleKey = this.#opts.serviceRoleKey ?? await legacy("service_role");
    this.anonKey = this.#opts.anonKey ?? await legacy("anon");
    if (this.#opts.listen === false) return;
    // Realtime itself runs on an internal port; the public port is a TCP front
    // that can cut connections without a close frame, as a crash would.
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req, info) => this.#handle(req, (info.remoteAddr as Deno.NetAddr).port),
    );
    const upstream = (this.#server.addr as Deno.NetAddr).port;
    this.#front = new TcpFront(this.#hostname, upstream);
    this.port = this.#front.listen(this.#opts.port ?? 0);
    this.url = `http://${this.#hostname}:${this.port}`;
  }

  handle = (request: Request): Response | Promise<Response> => this.#handle(request, undefined);

  sockets(): RealtimeSocketInfo[] {
    return [...this.#sessions].map((s) => ({
      id: s.id,
      role: s.role,
      vsn: s.vsn,
      topics: [...s.channels.keys()],
      presenceKeys: [...s.channels.values()].filter((c) => c.tracked).map((c) => c.presenceKey),
      drop: () => this.#drop(s),
    }));
  }

  presenceState(
    topic: string,
    opts: { private?: boolean } = {},
  ): Record<string, { metas: Record<string, unknown>[] }> {
    const sub = topic.replace(/^realtime:/, "");
    return this.#presenceOf(`${opts.private ? "private" : "public"}:${sub}`);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const sessions = [...this.#sessions];
    // A crash tells nobody anything: every socket goes without presence diffs.
    for (const s of sessions) this.#drop(s, true);
    await this.#front?.stop();
    await Promise.all(sessions.map((s) => s.closed));
  }

  async start(): Promise<void> {
    if (this.running || this.#closed) return;
    this.running = true;
    if (this.#front) this.#front.listen(this.port);
    await Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.stop();
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      await server.shutdown();
      await server.finished;
    }
  }

  // ---- HTTP ------------------------------------------------------------------

  #handle(req: Request, remotePort: number | undefined): Response | Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, "");
    if (!path.startsWith("/realtime/v1/")) {
      return json(404, { message: "no Route matched with those values" });
    }
    if (!this.running) {
      return json(503, { message: "The upstream server is currently unavailable" });
    }
    // The API gateway's key check comes first, for every Realtime path.
    const apikey = req.headers.get("apikey") ?? url.searchParams.get("apikey");
    if (!apikey) {
      this.stats.refusals++;
      return json(401, {
        message: "No API key found in request",
        hint: "No `apikey` request header or url param was found.",
      });
    }
    const keyRole = this.#roleOfKey(apikey);
    if (!keyRole) {
      this.stats.refusals++;
      return json(401, {
        message: "Invalid API key",
        hint: "Double check your Supabase `anon` or `service_role` API key.",
      });
    }
    if (path === "/realtime/v1/websocket") {
      return this.#upgrade(req, url, keyRole, remotePort);
    }
    if (path === "/realtime/v1/api/broadcast" && req.method === "POST") {
      return this.#restBatch(req, apikey);
    }
    const single = /^\/realtime\/v1\/api\/broadcast\/([^/]+)\/events\/([^/]+)$/.exec(path);
    if (single && req.method === "POST") {
      return this.#restSingle(
        req,
        apikey,
        decodeURIComponent(single[1]!),
        decodeURIComponent(single[2]!),
        url.searchParams.get("private") === "true",
      );
    }
    return json(404, { errors: { detail: "Not Found" } });
  }

  /** The role an API key (or an sb_ key sent as a token) stands for, if it is one of ours. */
  #roleOfKey(key: string): string | undefined {
    if (key === this.secretKey || key === this.serviceRoleKey) return "service_role";
    if (key === this.publishableKey || key === this.anonKey) return "anon";
    return undefined;
  }

  /** Realtime's check of a JWT access token (ChannelsAuthorization.authorize_conn). */
  async #checkToken(token: string): Promise<TokenCheck> {
    const known = this.#roleOfKey(token);
    if (known) return { role: known };
    let d;
    try {
      d = decodeJwt(token);
    } catch {
      return {
        joinError: "MalformedJWT: The token provided is not a valid JWT",
        shutdown: "The token provided is not a valid JWT",
      };
    }
    const ok = d.header.alg === "HS256" && await crypto.subtle.verify(
      "HMAC",
      await hmacKey(this.jwtSecret),
      d.signature.slice(),
      d.signingInput.slice(),
    );
    if (!ok) {
      return {
        joinError: "JwtSignatureError: Failed to validate JWT signature",
        shutdown: ":signature_error",
      };
    }
    const { exp, role } = d.payload;
    if (typeof exp !== "number" || typeof role !== "string") {
      const msg = "Fields `role` and `exp` are required in JWT";
      return { joinError: `InvalidJWTToken: ${msg}`, shutdown: msg };
    }
    const left = exp - Math.floor(Date.now() / 1000);
    if (left <= 0) {
      const msg = `Token has expired ${-left} seconds ago`;
      return { joinError: `InvalidJWTToken: ${msg}`, shutdown: msg };
    }
    return { role };
  }

  /** The token the REST API authorizes with: Authorization Bearer first, else apikey. */
  async #restRole(req: Request, apikey: string): Promise<string | undefined> {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "")?.[1];
    const check = await this.#checkToken(bearer ?? apikey);
    return "role" in check ? check.role : undefined;
  }

  async #restBatch(req: Request, apikey: string): Promise<Response> {
    const role = await this.#restRole(req, apikey);
    if (!role) {
      this.stats.refusals++;
      return json(401, { message: "Unauthorized" });
    }
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return json(400, { errors: { detail: "Bad Request" } });
    }
    const messages = isObject(body) ? body.messages : undefined;
    if (!Array.isArray(messages) || messages.length === 0) {
      return json(422, { errors: { messages: ["can't be blank"] } });
    }
    const errors = messages.map((m) => {
      const e: Record<string, string[]> = {};
      if (!isObject(m)) return { message: ["is invalid"] };
      for (const f of ["topic", "event"]) {
        if (typeof m[f] !== "string" || m[f] === "") e[f] = ["can't be blank"];
      }
      if (!isObject(m.payload)) e.payload = ["can't be blank"];
      return e;
    });
    if (errors.some((e) => Object.keys(e).length > 0)) {
      return json(422, { errors: { messages: errors } });
    }
    for (const m of messages as Record<string, unknown>[]) {
      const isPrivate = m.private === true;
      // Realtime skips, without an error, private messages the caller may not write.
      if (isPrivate && role !== "service_role") continue;
      const payload: Record<string, unknown> = {
        payload: m.payload,
        event: m.event,
        type: "broadcast",
      };
      if (typeof m.id === "string") payload.meta = { id: m.id };
      this.stats.broadcasts++;
      this.#fanOutJson(`${isPrivate ? "private" : "public"}:${m.topic}`, payload, undefined);
    }
    return new Response(null, { status: 202 });
  }

  async #restSingle(
    req: Request,
    apikey: string,
    topic: string,
    event: string,
    isPrivate: boolean,
  ): Promise<Response> {
    const role = await this.#restRole(req, apikey);
    if (!role) {
      this.stats.refusals++;
      return json(401, { message: "Unauthorized" });
    }
    const binary = (req.headers.get("content-type") ?? "").startsWith("application/octet-stream");
    const bytes = new Uint8Array(await req.arrayBuffer());
    if (!binary) {
      try {
        JSON.parse(decoder.decode(bytes));
      } catch {
        return json(400, { errors: { detail: "Bad Request" } });
      }
    }
    if (isPrivate && role !== "service_role") {
      this.stats.refusals++;
      return json(403, { message: "Unauthorized" });
    }
    this.stats.broadcasts++;
    this.#fanOutUser(
      `${isPrivate ? "private" : "public"}:${topic}`,
      event,
      binary ? 0 : 1,
      bytes,
      undefined,
    );
    return new Response(null, { status: 202 });
  }

  // ---- WebSocket -----------------------------------------------------------------

  #upgrade(
    req: Request,
    url: URL,
    role: string,
    remotePort: number | undefined,
  ): Response {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return json(400, { error: "Expected a WebSocket upgrade" });
    }
    const vsnParam = url.searchParams.get("vsn") ?? "1.0.0";
    if (vsnParam !== "1.0.0" && vsnParam !== "2.0.0") {
      // Phoenix refuses a serializer version it does not have before upgrading.
      this.stats.refusals++;
      return new Response(null, { status: 403 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    socket.binaryType = "arraybuffer";
    let resolveClosed!: () => void;
    const session: Session = {
      id: crypto.randomUUID(),
      vsn: vsnParam,
      role,
      ws: socket,
      channels: new Map(),
      alive: true,
      queue: Promise.resolve(),
      closed: new Promise<void>((r) => resolveClosed = r),
    };
    const cut = remotePort === undefined ? undefined : this.#front?.cutterFor(remotePort);
    if (cut) session.cut = cut;
    this.#sessions.add(session);
    this.stats.connections++;
    this.stats.sockets++;
    socket.onopen = () => this.#resetIdle(session);
    socket.onmessage = (e: MessageEvent) => {
      if (!session.alive) return;
      this.#resetIdle(session);
      const msg = this.#decode(session, e.data);
      if (!msg) {
        // Phoenix's socket process crashes on a frame its serializer cannot read.
        this.#end(session);
        this.#closeWs(session);
        return;
      }
      session.queue = session.queue.then(() => this.#dispatch(session, msg)).catch(() => {});
    };
    socket.onclose = () => {
      this.#end(session);
      resolveClosed();
    };
    socket.onerror = () => {};
    return response;
  }

  #decode(session: Session, data: unknown): InMessage | undefined {
    if (data instanceof ArrayBuffer) {
      return session.vsn === "2.0.0" ? decodeUserBroadcastPush(new Uint8Array(data)) : undefined;
    }
    if (typeof data !== "string") return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return undefined;
    }
    if (session.vsn === "2.0.0") {
      if (!Array.isArray(parsed) || parsed.length < 5) return undefined;
      const [join_ref, ref, topic, event, payload] = parsed;
      if (typeof topic !== "string" || typeof event !== "string") return undefined;
      return { join_ref: join_ref ?? null, ref: ref ?? null, topic, event, payload };
    }
    if (!isObject(parsed) || typeof parsed.topic !== "string" || typeof parsed.event !== "string") {
      return undefined;
    }
    return {
      join_ref: (parsed.join_ref as string | undefined) ?? null,
      ref: (parsed.ref as string | undefined) ?? null,
      topic: parsed.topic,
      event: parsed.event,
      payload: parsed.payload,
    };
  }

  #resetIdle(session: Session): void {
    if (session.idleTimer !== undefined) this.#clearTimer(session.idleTimer);
    session.idleTimer = this.#setTimer(() => {
      session.idleTimer = undefined;
      if (!session.alive) return;
      this.stats.timeouts++;
      this.#end(session);
      this.#closeWs(session);
    }, this.#heartbeatTimeoutMs);
  }

  #setTimer(fn: () => void, ms: number): Timer {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
    return t;
  }

  #clearTimer(t: Timer): void {
    clearTimeout(t);
    this.#timers.delete(t);
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => this.#setTimer(resolve, ms));
  }

  /** Cowboy's close on idle timeout and on a crash of the socket process: 1000, empty reason. */
  #closeWs(session: Session): void {
    try {
      session.ws.close(1000);
    } catch {
      // already closing
    }
  }

  #drop(session: Session, quiet = false): void {
    if (!session.alive) return;
    this.stats.drops++;
    this.#end(session, quiet);
    if (session.cut) session.cut();
    else this.#closeWs(session);
  }

  /** The socket is gone: every channel leaves (others see presence leave at once). */
  #end(session: Session, quiet = false): void {
    if (!session.alive) return;
    session.alive = false;
    this.stats.sockets--;
    if (session.idleTimer !== undefined) this.#clearTimer(session.idleTimer);
    for (const ch of [...session.channels.values()]) this.#removeChannel(ch, quiet);
    this.#sessions.delete(session);
  }

  #send(session: Session, data: string | Uint8Array): boolean {
    if (!session.alive || session.ws.readyState !== WebSocket.OPEN) return false;
    try {
      session.ws.send(data);
      return true;
    } catch {
      return false;
    }
  }

  #encode(session: Session, m: InMessage): string {
    if (session.vsn === "2.0.0") {
      return JSON.stringify([m.join_ref, m.ref, m.topic, m.event, m.payload]);
    }
    // Phoenix's V1 serializer writes topic, event, payload and ref only.
    return JSON.stringify({ topic: m.topic, event: m.event, payload: m.payload, ref: m.ref });
  }

  #push(session: Session, m: InMessage): void {
    this.#send(session, this.#encode(session, m));
  }

  #reply(
    session: Session,
    m: InMessage,
    status: "ok" | "error",
    response: Record<string, unknown> = {},
  ): void {
    this.#push(session, {
      join_ref: m.join_ref,
      ref: m.ref,
      topic: m.topic,
      event: "phx_reply",
      payload: { status, response },
    });
  }

  async #dispatch(session: Session, m: InMessage): Promise<void> {
    if (!session.alive) return;
    if (m.topic === "phoenix" && m.event === "heartbeat") {
      this.stats.heartbeats++;
      this.#reply(session, m, "ok");
      return;
    }
    if (m.event === "phx_join") return await this.#join(session, m);
    const ch = session.channels.get(m.topic);
    if (!ch) {
      // Phoenix answers a leave of a topic it does not have with ok, anything else with an error.
      if (m.event === "phx_leave") this.#reply(session, m, "ok");
      else this.#reply(session, m, "error", { reason: "unmatched topic" });
      return;
    }
    if (m.join_ref !== null && m.join_ref !== ch.joinRef) return; // stale: from an earlier join
    switch (m.event) {
      case "phx_leave":
        this.#reply(session, m, "ok");
        this.#removeChannel(ch);
        this.#push(session, {
          join_ref: ch.joinRef,
          ref: ch.joinRef,
          topic: ch.topic,
          event: "phx_close",
          payload: {},
        });
        return;
      case "broadcast":
        return this.#broadcast(ch, m);
      case "presence":
        return this.#presence(ch, m);
      case "access_token":
        return await this.#accessToken(ch, m);
      default:
        return; // Realtime ignores unknown client events.
    }
  }

  async #join(session: Session, m: InMessage): Promise<void> {
    if (!m.topic.startsWith("realtime:")) {
      this.stats.joinRefusals++;
      this.#reply(session, m, "error", { reason: "unmatched topic" });
      return;
    }
    const existing = session.channels.get(m.topic);
    if (existing) {
      // Phoenix closes the earlier channel of a duplicate join, then joins anew.
      this.#removeChannel(existing);
      this.#push(session, {
        join_ref: existing.joinRef,
        ref: existing.joinRef,
        topic: existing.topic,
        event: "phx_close",
        payload: {},
      });
    }
    const refuse = async (reason: string) => {
      this.stats.joinRefusals++;
      await this.#sleep(this.#joinErrorDelayMs);
      this.#reply(session, m, "error", { reason });
    };
    const sub = m.topic.slice("realtime:".length);
    if (sub === "") return await refuse("TopicNameRequired: You must provide a topic name");
    const params = isObject(m.payload) ? m.payload : {};
    const config = isObject(params.config) ? params.config : {};
    const broadcast = isObject(config.broadcast) ? config.broadcast : {};
    const presence = isObject(config.presence) ? config.presence : {};
    const isPrivate = config.private === true || config.private === "true";
    const token = typeof params.access_token === "string"
      ? params.access_token
      : typeof params.user_token === "string"
      ? params.user_token
      : null;
    let role = session.role;
    // An sb_ key as access token means "the socket's own credentials".
    if (token !== null && !token.startsWith("sb_")) {
      const check = await this.#checkToken(token);
      if (!("role" in check)) return await refuse(check.joinError);
      role = check.role;
    }
    if (!session.alive) return;
    if (isPrivate && role !== "service_role") {
      return await refuse(
        `Unauthorized: You do not have permissions to read from this Channel topic: ${sub}`,
      );
    }
    const presenceEnabled = presence.enabled === true || presence.enabled === "true";
    const key = typeof presence.key === "string" && presence.key !== ""
      ? presence.key
      : crypto.randomUUID();
    const ch: Channel = {
      session,
      topic: m.topic,
      sub,
      key: `${isPrivate ? "private" : "public"}:${sub}`,
      joinRef: m.join_ref ?? m.ref,
      private: isPrivate,
      self: broadcast.self === true || broadcast.self === "true",
      ack: broadcast.ack === true || broadcast.ack === "true",
      role,
      accessToken: token,
      presenceKey: key,
      presenceRead: !isPrivate || presenceEnabled,
      presenceRate: { count: 0, resetAt: null },
    };
    session.channels.set(m.topic, ch);
    let subs = this.#topics.get(ch.key);
    if (!subs) this.#topics.set(ch.key, subs = new Set());
    subs.add(ch);
    this.stats.joins++;
    this.#reply(session, m, "ok", { postgres_changes: [] });
    if (presenceEnabled) {
      this.#push(session, {
        join_ref: ch.joinRef,
        ref: null,
        topic: ch.topic,
        event: "presence_state",
        payload: this.#presenceOf(ch.key),
      });
    }
  }

  #removeChannel(ch: Channel, quiet = false): void {
    if (ch.session.channels.get(ch.topic) === ch) ch.session.channels.delete(ch.topic);
    const subs = this.#topics.get(ch.key);
    subs?.delete(ch);
    if (subs && subs.size === 0) this.#topics.delete(ch.key);
    if (ch.tracked) {
      const left = ch.tracked;
      ch.tracked = undefined;
      if (quiet) return;
      this.#presenceDiff(ch.key, {}, {
        [ch.presenceKey]: { metas: [{ ...left.payload, phx_ref: left.ref }] },
      });
    }
  }

  /** Realtime's shutdown_response: a system message, then the channel closes. */
  #shutdown(ch: Channel, message: string): void {
    this.stats.channelShutdowns++;
    this.#push(ch.session, {
      join_ref: ch.joinRef,
      ref: null,
      topic: ch.topic,
      event: "system",
      payload: { extension: "system", status: "error", message, channel: ch.sub },
    });
    this.#removeChannel(ch);
    this.#push(ch.session, {
      join_ref: ch.joinRef,
      ref: ch.joinRef,
      topic: ch.topic,
      event: "phx_close",
      payload: {},
    });
  }

  // ---- broadcast ------------------------------------------------------------------

  #broadcast(ch: Channel, m: InMessage): void {
    // A private channel's broadcast needs write access; without it Realtime drops it, no reply.
    if (ch.private && ch.role !== "service_role") return;
    this.stats.broadcasts++;
    const except = ch.self ? undefined : ch;
    const p = m.payload;
    if (p && typeof p === "object" && "bytes" in p && p.bytes instanceof Uint8Array) {
      const push = p as UserBroadcastPush;
      this.#fanOutUser(ch.key, push.userEvent, push.encoding === 0 ? 0 : 1, push.bytes, except);
    } else {
      this.#fanOutJson(ch.key, isObject(p) ? p : {}, except);
    }
    if (ch.ack) this.#reply(ch.session, m, "ok");
  }

  /** A Phoenix broadcast: a text frame `[null, null, topic, "broadcast", payload]`. */
  #fanOutJson(key: string, payload: Record<string, unknown>, except: Channel | undefined): void {
    for (const sub of [...(this.#topics.get(key) ?? [])]) {
      if (sub === except) continue;
      const frame = this.#encode(sub.session, {
        join_ref: null,
        ref: null,
        topic: sub.topic,
        event: "broadcast",
        payload,
      });
      if (this.#send(sub.session, frame)) this.stats.deliveries++;
    }
  }

  /**
   * A user broadcast: the binary kind-4 frame to vsn 2.0.0 sockets; vsn 1.0.0
   * sockets get JSON payloads as a plain broadcast and never binary ones.
   */
  #fanOutUser(
    key: string,
    userEvent: string,
    encoding: number,
    bytes: Uint8Array,
    except: Channel | undefined,
  ): void {
    for (const sub of [...(this.#topics.get(key) ?? [])]) {
      if (sub === except) continue;
      let sent: boolean;
      if (sub.session.vsn === "2.0.0") {
        sent = this.#send(sub.session, encodeUserBroadcast(sub.topic, userEvent, encoding, bytes));
      } else if (encoding === 1) {
        let payload: unknown;
        try {
          payload = JSON.parse(decoder.decode(bytes));
        } catch {
          continue;
        }
        sent = this.#send(
          sub.session,
          this.#encode(sub.session, {
            join_ref: null,
            ref: null,
            topic: sub.topic,
            event: "broadcast",
            payload: { event: userEvent, payload, type: "broadcast" },
          }),
        );
      } else {
        continue;
      }
      if (sent) this.stats.deliveries++;
    }
  }

  // ---- presence -------------------------------------------------------------------

  #presenceOf(key: string): Record<string, { metas: Record<string, unknown>[] }> {
    const state: Record<string, { metas: Record<string, unknown>[] }> = {};
    for (const ch of this.#topics.get(key) ?? []) {
      if (!ch.tracked) continue;
      const entry = state[ch.presenceKey] ??= { metas: [] };
      entry.metas.push({ ...ch.tracked.payload, phx_ref: ch.tracked.ref });
    }
    return state;
  }

  #presenceDiff(
    key: string,
    joins: Record<string, unknown>,
    leaves: Record<string, unknown>,
  ): void {
    for (const sub of [...(this.#topics.get(key) ?? [])]) {
      if (!sub.presenceRead) continue;
      this.#push(sub.session, {
        join_ref: null,
        ref: null,
        topic: sub.topic,
        event: "presence_diff",
        payload: { joins, leaves },
      });
    }
  }

  #presence(ch: Channel, m: InMessage): void {
    this.stats.presenceCalls++;
    const p = isObject(m.payload) ? m.payload : {};
    if (typeof p.event !== "string") {
      this.#reply(ch.session, m, "ok");
      return;
    }
    // Realtime's per-channel client limit: a fixed window opened by the first call.
    const now = performance.now();
    const rate = ch.presenceRate;
    if (rate.resetAt === null || now > rate.resetAt) {
      rate.count = 1;
      rate.resetAt = now + this.#presenceWindowMs;
    } else if (rate.count >= this.#presenceMaxCalls) {
      this.#shutdown(ch, "Client presence rate limit exceeded");
      return;
    } else {
      rate.count++;
    }
    const event = p.event.toLowerCase();
    if (event === "track") {
      if (ch.private && ch.role !== "service_role") {
        this.#reply(ch.session, m, "error");
        return;
      }
      const payload = p.payload === undefined ? {} : p.payload;
      if (!isObject(payload)) {
        this.#reply(ch.session, m, "error", { reason: "Presence track payload must be a map" });
        return;
      }
      ch.presenceRead = true;
      const before = ch.tracked;
      if (before && JSON.stringify(before.payload) === JSON.stringify(payload)) {
        this.#reply(ch.session, m, "ok");
        return;
      }
      const ref = presenceRef();
      ch.tracked = { ref, payload: structuredClone(payload) };
      this.#reply(ch.session, m, "ok");
      if (before) {
        // An update: the new meta joins (carrying phx_ref_prev), the old one leaves.
        this.#presenceDiff(
          ch.key,
          { [ch.presenceKey]: { metas: [{ ...payload, phx_ref: ref, phx_ref_prev: before.ref }] } },
          { [ch.presenceKey]: { metas: [{ ...before.payload, phx_ref: before.ref }] } },
        );
      } else {
        this.#presenceDiff(ch.key, {
          [ch.presenceKey]: { metas: [{ ...payload, phx_ref: ref }] },
        }, {});
      }
      return;
    }
    if (event === "untrack") {
      const before = ch.tracked;
      ch.tracked = undefined;
      this.#reply(ch.session, m, "ok");
      if (before) {
        this.#presenceDiff(ch.key, {}, {
          [ch.presenceKey]: { metas: [{ ...before.payload, phx_ref: before.ref }] },
        });
      }
      return;
    }
    this.#reply(ch.session, m, "error");
  }

  // ---- access_token ---------------------------------------------------------------

  async #accessToken(ch: Channel, m: InMessage): Promise<void> {
    const p = isObject(m.payload) ? m.payload : {};
    const token = p.access_token;
    if (typeof token !== "string" || token.startsWith("sb_") || token === ch.accessToken) return;
    const check = await this.#checkToken(token);
    if (ch.session.channels.get(ch.topic) !== ch) return;
    if (!("role" in check)) return this.#shutdown(ch, check.shutdown);
    if (ch.private && check.role !== "service_role") {
      return this.#shutdown(
        ch,
        `You do not have permissions to read from this Channel topic: ${ch.sub}`,
      );
    }
    ch.role = check.role;
    ch.accessToken = token;
  }
}

// ---- TCP front ----------------------------------------------------------------------

interface Pair {
  client: Deno.Conn;
  upstream: Deno.Conn;
  cut(): void;
}

/**
 * The public port: a byte pipe to the internal HTTP server, so a connection
 * can be cut without a close frame (what a crashed server looks like) and the
 * port can stop listening while keeping its number.
 */
class TcpFront {
  readonly #hostname: string;
  readonly #upstreamPort: number;
  #listener: Deno.Listener | undefined;
  #acceptLoop: Promise<void> | undefined;
  /** Pairs by the local port of their upstream connection (the internal server's remote port). */
  readonly #pairs = new Map<number, Pair>();
  readonly #pumps = new Set<Promise<void>>();

  constructor(hostname: string, upstreamPort: number) {
    this.#hostname = hostname;
    this.#upstreamPort = upstreamPort;
  }

  listen(port: number): number {
    const listener = Deno.listen({ hostname: this.#hostname, port });
    this.#listener = listener;
    this.#acceptLoop = this.#accept(listener);
    return (listener.addr as Deno.NetAddr).port;
  }

  cutterFor(upstreamLocalPort: number): (() => void) | undefined {
    const pair = this.#pairs.get(upstreamLocalPort);
    return pair ? () => pair.cut() : undefined;
  }

  async stop(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    if (listener) {
      try {
        listener.close();
      } catch {
        // already closed
      }
    }
    await this.#acceptLoop;
    for (const pair of [...this.#pairs.values()]) pair.cut();
    await Promise.all([...this.#pumps]);
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    while (true) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return;
      }
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstreamPort });
      } catch {
        client.close();
        continue;
      }
      if (this.#listener !== listener) {
        client.close();
        upstream.close();
        return;
      }
      const key = (upstream.localAddr as Deno.NetAddr).port;
      let cutDone = false;
      const pair: Pair = {
        client,
        upstream,
        cut: () => {
          if (cutDone) return;
          cutDone = true;
          this.#pairs.delete(key);
          for (const c of [client, upstream]) {
            try {
              c.close();
            } catch {
              // already closed
            }
          }
        },
      };
      this.#pairs.set(key, pair);
      const both = Promise.all([pump(client, upstream), pump(upstream, client)]).then(() => {});
      const tracked: Promise<void> = both.finally(() => {
        pair.cut();
        this.#pumps.delete(tracked);
      });
      this.#pumps.add(tracked);
    }
  }
}

/**
 * Copies bytes until EOF or error, then closes the other side, so either
 * direction ending ends the pair (a WebSocket has no use for half-close).
 * Never throws.
 */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    // cut or reset
  }
  try {
    to.close();
  } catch {
    // already closed
  }
}
