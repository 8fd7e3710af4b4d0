/**
 * What the room client's tests across relay processes share: the settings of
 * instances of one project (Realtime stand-in, PostgreSQL history) and their
 * teardown, users of the Auth stand-in, the rows a room keeps, and the check
 * of a whole conversation.
 * @module
 */
import assert from "node:assert/strict";
import type { RoomBroadcast } from "../../client/relay_client.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { type RealtimeStandIn, startRealtimeStandIn } from "../stand_ins/supabase_realtime.ts";
import { instancesEnv } from "../helpers/rooms.ts";
import type { RoomUser } from "./room_support.ts";
import { startProxy, type TcpProxy } from "./support.ts";

/** Reconnects fast and, while an instance restarts (a new process starting), keeps trying. */
export const PATIENT = {
  backoff: { baseMs: 20, factor: 2, capMs: 200, jitter: 0 },
  maxAttempts: 1000,
  connectTimeoutMs: 30_000,
} as const;

/** A line of the scripted conversation. */
export type Line = { from: string; seq: number };
/** The line a broadcast carries. */
export const line = (m: RoomBroadcast): Line => m.payload as Line;
/** `from:seq`, one per line. */
export const key = (m: RoomBroadcast): string => `${line(m).from}:${line(m).seq}`;

/** A user of the Auth stand-in whose every `getToken()` signs a new token. */
export function roomUser(auth: AuthStandIn): RoomUser {
  const id = crypto.randomUUID();
  const issued: string[] = [];
  const lifetimes: number[] = [];
  return {
    id,
    issued,
    lifetimes,
    getToken: async () => {
      const token = await auth.signEs256({ sub: id }, { expiresInS: lifetimes.shift() ?? 3600 });
      issued.push(token);
      return token;
    },
  };
}

/** The rows the room keeps, in offset order: offset and message id. */
export async function storedRows(
  pg: TestPostgres,
  room: string,
): Promise<{ offset: number; id: string }[]> {
  const out = await pg.psql(
    `select "offset", coalesce(msg_id, '') from relay.room_messages ` +
      `where room = '${room}' order by "offset"`,
  );
  return out.split("\n").filter((l) => l !== "").map((l) => {
    const [offset, id] = l.split("|");
    return { offset: Number(offset), id: id! };
  });
}

/**
 * Checks what a member delivered: all `total` lines, offsets 1..total in
 * order, no line twice, each sender's lines complete and in its order.
 */
export function assertWholeConversation(
  messages: RoomBroadcast[],
  counts: Record<string, number>,
  label: string,
): void {
  const keys = messages.map(key);
  assert.equal(new Set(keys).size, keys.length, `${label}: no duplicate`);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  assert.deepEqual(
    messages.map((m) => m.meta.offset),
    Array.from({ length: total }, (_, i) => i + 1),
    `${label}: every offset 1..${total} once, in order`,
  );
  for (const [from, n] of Object.entries(counts)) {
    assert.deepEqual(
      messages.filter((m) => line(m).from === from).map((m) => line(m).seq),
      [...Array(n).keys()],
      `${label}: ${from}'s lines complete and in order`,
    );
  }
}

/** Instances of one project and what they run on, for one test. */
export interface Instances {
  readonly pg: TestPostgres;
  readonly auth: AuthStandIn;
  readonly realtime: RealtimeStandIn;
  /** Starts a relay process of the project, history kept 1,000 deep (on `port`: a restarted one's). */
  start(port?: number): Promise<RelayProcess>;
  /** A TCP proxy in front of `port` (a member's network, to cut). */
  proxy(port: number): TcpProxy;
  /** Runs `step` at teardown, before the proxies, processes and stand-ins stop (in the order given). */
  defer(step: () => unknown): void;
}

/**
 * Runs `body` with PostgreSQL, the Auth and Realtime stand-ins and relay
 * processes started on demand, then stops everything, each step even after
 * another failed; the first failure (the body's first) is thrown.
 */
export async function withInstances(body: (instances: Instances) => Promise<void>): Promise<void> {
  const [pg, auth, realtime] = await Promise.all([
    startPostgres(),
    startAuthStandIn(),
    startRealtimeStandIn(),
  ]);
  const env = instancesEnv(auth, realtime, { pg, keep: 1000 });
  const processes: RelayProcess[] = [];
  const proxies: TcpProxy[] = [];
  const deferred: (() => unknown)[] = [];
  let failure: unknown = null;
  try {
    await body({
      pg,
      auth,
      realtime,
      start: async (port) => {
        const relay = await startRelayProcess(env, { port });
        processes.push(relay);
        return relay;
      },
      proxy: (port) => {
        const proxy = startProxy(port);
        proxies.push(proxy);
        return proxy;
      },
      defer: (step) => deferred.push(step),
    });
  } catch (error) {
    failure = error;
  }
  for (
    const step of [
      ...deferred,
      ...proxies.map((proxy) => () => proxy.close()),
      () => Promise.all(processes.map((relay) => relay.stop())),
      () => realtime.close(),
      () => auth.close(),
      () => pg.remove(),
    ]
  ) {
    try {
      await step();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== null) throw failure;
}
