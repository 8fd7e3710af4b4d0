/**
 * What the room client's tests share: relays with rooms on one instance
 * (`RELAY_ROOMS=open`, `RELAY_ROOMS_BUS=off`, optionally history on a real
 * PostgreSQL), one TCP proxy per member (so one member's network can be cut
 * alone, and every member's can be moved to a new relay), users with a fresh
 * token per connection, and a recorder of what a room reports.
 * @module
 */
import {
  joinRoom,
  type PresenceEntry,
  type RelayEvent,
  type RelayRoom,
  type RelayState,
  type RoomBroadcast,
  type RoomOptions,
  type RoomStateInfo,
} from "../../client/relay_client.js";
import { ROOMS_ENV } from "../helpers/rooms.ts";
import { type RelayUnderTest, startRelay } from "../helpers/relay_harness.ts";
import type { TestPostgres } from "../helpers/postgres.ts";
import { until, within } from "../helpers/ws_client.ts";
import { FAST_BACKOFF, startProxy, type TcpProxy } from "./support.ts";

/** A user of the Auth stand-in whose every `getToken()` signs a new token. */
export interface RoomUser {
  readonly id: string;
  readonly getToken: () => Promise<string>;
  /** Tokens handed out, in order (never print them). */
  readonly issued: string[];
  /** Lifetimes (seconds) for the next tokens, first to last; then an hour. */
  readonly lifetimes: number[];
}

/** A room client and everything it reported. */
export interface RecordedRoom {
  readonly room: RelayRoom;
  readonly proxy: TcpProxy;
  readonly user: RoomUser;
  readonly states: { state: RelayState; info: RoomStateInfo }[];
  readonly messages: RoomBroadcast[];
  readonly events: RelayEvent[];
  readonly presence: { list: PresenceEntry[]; change: RelayEvent }[];
  count(state: RelayState): number;
  waitState(state: RelayState, n?: number, ms?: number): Promise<RoomStateInfo>;
  waitFor(condition: () => boolean, what: string, ms?: number): Promise<void>;
  waitClosed(ms?: number): Promise<RoomStateInfo>;
}

/** Relays with rooms, proxies and users, for one test. */
export interface RoomStack {
  /** The relay new connections go to (after `restart()`, the new one). */
  readonly relay: RelayUnderTest;
  user(): RoomUser;
  /** A proxy to the current relay that `restart()` moves too; closed by the stack. */
  proxy(): TcpProxy;
  /** Joins through a proxy of its own (fast backoff unless given); closed by the stack. */
  join(user: RoomUser, options: Omit<RoomOptions, "url" | "getToken">): RecordedRoom;
  /**
   * The platform recycles the worker: a new relay (same stand-ins, settings and
   * database) starts, every proxy points at it, and the old one shuts down (1012).
   */
  restart(): Promise<void>;
}

/** `ROOMS_ENV`, with history of `keep` broadcasts on `pg` when given. */
export function roomEnv(pg?: TestPostgres, keep = 100): Record<string, string> {
  return pg
    ? { ...ROOMS_ENV, RELAY_DATABASE_URL: pg.url, RELAY_ROOM_HISTORY: String(keep) }
    : { ...ROOMS_ENV };
}

/** Runs `body` with a rooms relay; always closes clients, proxies and relays, in that order. */
export async function withRoomStack(
  env: Record<string, string>,
  body: (stack: RoomStack) => Promise<void>,
): Promise<void> {
  const first = await startRelay({ env });
  const relays: RelayUnderTest[] = [first];
  let current = first;
  const proxies: TcpProxy[] = [];
  const rooms: RecordedRoom[] = [];
  const stack: RoomStack = {
    get relay() {
      return current;
    },
    user: () => {
      const id = crypto.randomUUID();
      const issued: string[] = [];
      const lifetimes: number[] = [];
      return {
        id,
        issued,
        lifetimes,
        getToken: async () => {
          const token = await first.auth.signEs256(
            { sub: id, email: `${id}@example.com` },
            { expiresInS: lifetimes.shift() ?? 3600 },
          );
          issued.push(token);
          return token;
        },
      };
    },
    proxy: () => {
      const proxy = startProxy(current.port);
      proxies.push(proxy);
      return proxy;
    },
    join: (user, options) => {
      const proxy = stack.proxy();
      const recorded = recordRoom(proxy, user, options);
      rooms.push(recorded);
      return recorded;
    },
    restart: async () => {
      const next = await startRelay({ env, auth: first.auth, openai: first.openai });
      relays.push(next);
      const old = current;
      current = next;
      for (const proxy of proxies) proxy.target = next.port;
      await old.relay.shutdown();
    },
  };
  let failure: unknown = null;
  try {
    await body(stack);
  } catch (error) {
    failure = error;
  }
  // Shut down before closing (as withStack does): a connection the proxy cut may not have
  // ended yet on the relay's side (Deno 2.1.4), and shutdown lets go of the database pool.
  const stop = (r: RelayUnderTest) => async () => {
    await r.relay.shutdown();
    await r.close();
  };
  const steps = [
    () => Promise.all(rooms.map((r) => r.room.close())),
    ...proxies.map((p) => () => p.close()),
    // The first relay last: it owns the stand-ins the others share.
    ...relays.slice(1).reverse().map(stop),
    stop(first),
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

/** Joins through `proxy` and records what the room reports. */
export function recordRoom(
  proxy: TcpProxy,
  user: RoomUser,
  options: Omit<RoomOptions, "url" | "getToken">,
): RecordedRoom {
  const states: RecordedRoom["states"] = [];
  const messages: RoomBroadcast[] = [];
  const events: RelayEvent[] = [];
  const presence: RecordedRoom["presence"] = [];
  const room = joinRoom({
    backoff: FAST_BACKOFF,
    ...options,
    url: proxy.url("/relay"),
    getToken: user.getToken,
    onState: (state, info) => {
      states.push({ state, info });
      options.onState?.(state, info);
    },
    onMessage: (message) => {
      messages.push(message);
      options.onMessage?.(message);
    },
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.(event);
    },
    onPresence: (list, change) => {
      presence.push({ list, change });
      options.onPresence?.(list, change);
    },
  });
  const count = (state: RelayState) => states.filter((s) => s.state === state).length;
  return {
    room,
    proxy,
    user,
    states,
    messages,
    events,
    presence,
    count,
    waitState: async (state, n = 1, ms = 10_000) => {
      await until(() => count(state) >= n, ms, `${state} #${n}`).catch(() => {
        const seen = JSON.stringify(states.map((s) => [s.state, s.info.why]));
        throw new Error(`timed out waiting for ${state} #${n}; got ${seen}`);
      });
      return states.filter((s) => s.state === state)[n - 1]!.info;
    },
    waitFor: (condition, what, ms = 10_000) => until(condition, ms, what),
    waitClosed: (ms = 10_000) => within(room.closed, ms, "the closed state"),
  };
}

/** The request line of each handshake a proxy forwarded (they hold no token: it is a subprotocol). */
export function requestLines(proxy: TcpProxy): string[] {
  return proxy.heads.map((head) => head.split("\r\n")[0] ?? "");
}
