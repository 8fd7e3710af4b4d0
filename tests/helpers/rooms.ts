/**
 * Room members for tests (CONTRACT.md "Rooms"): users with their own tokens,
 * joining over a real socket, and a check that telemetry never held a
 * payload, a token or the secret key.
 * @module
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, type StartOptions, withRelay } from "./relay_harness.ts";
import { type Message, TestClient, until } from "./ws_client.ts";
import type { AuthStandIn } from "../stand_ins/auth.ts";
import type { RealtimeStandIn } from "../stand_ins/supabase_realtime.ts";
import type { TestPostgres } from "./postgres.ts";

/** The secret key the rooms tests give the relay (`SUPABASE_SECRET_KEYS`). */
export const SECRET_KEY = "sb_secret_test_5d1e0c7a";

/** Rooms on one instance, no bus, and a secret key for server publishes. */
export const ROOMS_ENV: Readonly<Record<string, string>> = {
  RELAY_ROOMS: "open",
  RELAY_ROOMS_BUS: "off",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
};

/**
 * The settings of relay instances of one project meeting through the
 * Supabase Realtime stand-in (rooms open), pointed at the Auth stand-in; with
 * `history`, rooms keep that many messages in `history.pg`.
 */
export function instancesEnv(
  auth: AuthStandIn,
  realtime: RealtimeStandIn,
  history?: { pg: TestPostgres; keep: number },
): Record<string, string> {
  return {
    SUPABASE_URL: auth.url,
    SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
    RELAY_ROOMS: "open",
    RELAY_REALTIME_URL: `${realtime.url}/realtime/v1`,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: realtime.secretKey }),
    ...(history
      ? { RELAY_DATABASE_URL: history.pg.url, RELAY_ROOM_HISTORY: String(history.keep) }
      : {}),
  };
}

/** A signed-in user of the Auth stand-in. */
export interface TestUser {
  readonly id: string;
  readonly token: string;
}

/** A received text event. */
export type RoomEvent = { type: string; [key: string]: unknown };

/** A new user with a token (expiring in `expiresInS`, default an hour). */
export async function newUser(relay: RelayUnderTest, expiresInS?: number): Promise<TestUser> {
  const id = crypto.randomUUID();
  const token = await relay.auth.signEs256(
    { sub: id, email: `${id}@example.com` },
    expiresInS === undefined ? {} : { expiresInS },
  );
  return { id, token };
}

/** A member's socket and its `room.joined`. */
export interface Member {
  readonly client: TestClient;
  readonly joined: RoomEvent;
  /** Text events received so far, `room.joined` included. */
  events(): RoomEvent[];
  /** Text events of `type` received so far. */
  of(type: string): RoomEvent[];
  /** Binary messages received so far. */
  binaries(): ArrayBuffer[];
  /** Waits until `condition` holds over the received events. */
  waitFor(what: string, condition: (events: RoomEvent[]) => boolean, ms?: number): Promise<void>;
  send(message: Record<string, unknown> | string | ArrayBuffer | Uint8Array): void;
}

/** Joins `room` as `user` and waits for `room.joined` (the first message). */
export async function join(
  relay: Pick<RelayUnderTest, "wsUrl">,
  room: string,
  user: TestUser,
  query: Record<string, string> = {},
): Promise<Member> {
  const client = new TestClient(relay.wsUrl(`/relay/rooms/${room}`, { jwt: user.token, ...query }));
  await client.opened;
  const [first] = await client.waitForMessages(1);
  assert.equal(typeof first, "string", "the first message is text");
  const joined = JSON.parse(first as string) as RoomEvent;
  assert.equal(joined.type, "room.joined", "room.joined comes first");
  const events = () => client.events() as RoomEvent[];
  return {
    client,
    joined,
    events,
    of: (type) => events().filter((event) => event.type === type),
    binaries: () =>
      client.messages.filter((message: Message): message is ArrayBuffer =>
        typeof message !== "string"
      ),
    waitFor: (what, condition, ms = 5000) => until(() => condition(events()), ms, what),
    send: (message) => {
      if (typeof message === "string" || message instanceof ArrayBuffer) {
        client.socket.send(message);
      } else if (message instanceof Uint8Array) client.socket.send(message);
      else client.socket.send(JSON.stringify(message));
    },
  };
}

/** One server-sent event as a follower reads it. */
export interface SseEvent {
  /** `event:` (`message` when the block has none). */
  readonly event: string;
  /** `id:`, `null` when the block has none. */
  readonly id: string | null;
  /** The `data:` lines joined with newlines. */
  readonly data: string;
  /** `retry:`, `null` when the block has none. */
  readonly retry: string | null;
}

/** An SSE follower of a room (`GET /relay/rooms/<room>/events`) and what it read. */
export interface Follower {
  readonly response: Response;
  /** Every event so far, in order (comment blocks are only counted). */
  readonly events: SseEvent[];
  /** Comment blocks (keepalives) so far. */
  comments(): number;
  /** The `data` of every event named `type`, parsed. */
  json(type: string): RoomEvent[];
  /** Waits until `condition` holds, up to `ms` (default 5000). */
  until(what: string, condition: () => boolean, ms?: number): Promise<void>;
  /** Stops reading and waits for the reader to finish. */
  close(): Promise<void>;
  /** Settles when the stream has ended (closed by the relay, failed, or cancelled). */
  readonly ended: Promise<void>;
}

/**
 * Follows `room` on the relay listening on `relay.port` over server-sent
 * events with `token` as `?jwt=` (plus `headers`, e.g. `Last-Event-ID`, and
 * `query`), reading the stream into its events in the background. A refused
 * request is returned unread: the caller consumes its body.
 */
export async function follow(
  relay: { readonly port: number },
  room: string,
  token: string,
  headers: Record<string, string> = {},
  query: Record<string, string> = {},
): Promise<Follower> {
  const url = new URL(`http://127.0.0.1:${relay.port}/relay/rooms/${room}/events`);
  url.searchParams.set("jwt", token);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  // Closing aborts the request: the body is locked by the reader, so it cannot be cancelled.
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  let comments = 0;
  const reading = (async () => {
    if (!response.ok || response.body === null) return;
    let buffer = "";
    for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = { event: "message", id: null as string | null, data: [] as string[] };
        let retry: string | null = null;
        let comment = true;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          comment = false;
          const at = line.indexOf(": ");
          const [name, value] = at < 0 ? [line, ""] : [line.slice(0, at), line.slice(at + 2)];
          if (name === "event") fields.event = value;
          else if (name === "id") fields.id = value;
          else if (name === "data") fields.data.push(value);
          else if (name === "retry") retry = value;
        }
        if (comment) comments++;
        else events.push({ ...fields, data: fields.data.join("\n"), retry });
      }
    }
  })().catch(() => {});
  return {
    response,
    events,
    comments: () => comments,
    json: (type) =>
      events.filter((e) => e.event === type).map((e) => JSON.parse(e.data) as RoomEvent),
    until: (what, condition, ms = 5000) => until(condition, ms, what),
    close: async () => {
      abort.abort();
      await response.body?.cancel().catch(() => {});
      await reading;
    },
    ended: reading,
  };
}

/** A distinctive string put into payloads, states and binary frames, never to be logged. */
export function marker(): string {
  return `ROOM-PAYLOAD-MARKER-${crypto.randomUUID()}`;
}

/**
 * Runs `body` against a relay with {@linkcode ROOMS_ENV} (plus `env`), then
 * asserts that no telemetry line holds a registered secret (`secret(value)`
 * registers and returns it): every token made with {@linkcode newUser} must
 * be registered by the body, the secret key and the project keys are.
 */
export async function withRooms(
  options: StartOptions,
  body: (relay: RelayUnderTest, secret: (value: string) => string) => Promise<void>,
): Promise<void> {
  const secrets = new Set<string>([SECRET_KEY]);
  let lines: string[] = [];
  await withRelay({ ...options, env: { ...ROOMS_ENV, ...options.env } }, async (relay) => {
    lines = relay.lines;
    secrets.add(relay.auth.anonKey);
    secrets.add(relay.auth.serviceRoleKey);
    secrets.add(relay.auth.publishableKey);
    await body(relay, (value) => {
      secrets.add(value);
      return value;
    });
  });
  assert.ok(lines.length > 0, "telemetry was written");
  for (const line of lines) JSON.parse(line);
  const all = lines.join("\n");
  for (const secret of secrets) {
    assert.ok(!all.includes(secret), `telemetry holds a secret (${secret.slice(0, 12)}...)`);
    const signature = secret.split(".")[2];
    if (signature && signature.length >= 16) {
      assert.ok(!all.includes(signature), "telemetry holds a token's signature");
    }
  }
}
