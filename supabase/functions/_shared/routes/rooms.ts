/**
 * The rooms route (`/relay/rooms/<room>`): joining a room over WebSocket,
 * and a server's publish into it with `POST`. Access is decided by
 * {@linkcode RoomAccessReader} (everyone in `open` mode, SQL run as the user
 * in `database` mode); members are {@linkcode RoomMember}s of this
 * instance's {@linkcode RoomHub}, which meets the other instances on the bus.
 * @module
 */
import type { Identity } from "../auth/claims.ts";
import type { Database } from "../db/client.ts";
import { appendRoomMessage, latestOffset, readRoomHistory } from "../db/room_history.ts";
import type { HistoryKeep } from "../db/room_history.ts";
import { readRoomAccess } from "../db/rooms.ts";
import { RoomAccessCache } from "../rooms/access_cache.ts";
import { extractToken } from "../auth/token_source.ts";
import type { TokenVerifier } from "../auth/verify.ts";
import { isOriginAllowed } from "../http/handshake.ts";
import { type Refusal, refusal, refusalResponse, refusalWith } from "../http/refusal.ts";
import { roomSegment } from "../http/routes.ts";
import type { Deadlines } from "../relay/deadlines.ts";
import type { ConnectionRegistry } from "../relay/registry.ts";
import type { SessionLimits } from "../relay/session.ts";
import { RoomFollower } from "../rooms/follower.ts";
import type { RecoverFrom, RoomHistory } from "../rooms/history.ts";
import type { RoomHub } from "../rooms/hub.ts";
import { RoomMember } from "../rooms/member.ts";
import { readHistoryStart } from "../rooms/recovery.ts";
import { broadcastText, isRoomName, readBroadcast, type RoomAccess } from "../rooms/wire.ts";
import type { Settings } from "../settings.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Prepared, RouteConnection, WebSocketRoute } from "./route.ts";

/**
 * What `identity` may do in `room` (`null`: nothing). Rejects when the
 * answer cannot be had (the database is unreachable).
 */
export type RoomAccessReader = (
  identity: Identity,
  room: string,
) => RoomAccess | null | Promise<RoomAccess | null>;

/**
 * `then` with what `identity` may do in `room`: at once when the answer is
 * remembered (open mode, or read within 30 s: no promise), after the
 * database otherwise; `503 rooms_unavailable` when it cannot be had.
 */
export function afterAccess<T>(
  access: RoomAccessReader,
  identity: Identity,
  room: string,
  then: (access: RoomAccess | null) => T | Promise<T>,
): T | Refusal | Promise<T | Refusal> {
  let answer: RoomAccess | null | Promise<RoomAccess | null>;
  try {
    answer = access(identity, room);
  } catch {
    return refusal("rooms_unavailable");
  }
  return answer instanceof Promise
    ? answer.then(then, () => refusal("rooms_unavailable"))
    : then(answer);
}

/** Everyone signed in may read and write every room (`RELAY_ROOMS=open`). */
export const openAccess: RoomAccessReader = (): RoomAccess => "write";

/**
 * `relay.room_access(room)` run as the user (`RELAY_ROOMS=database`), each
 * answer reused for up to 30 s: a reconnect or a second tab costs no round trip.
 */
export function databaseAccess(database: Database, now: () => number): RoomAccessReader {
  const cache = new RoomAccessCache({ now });
  return (identity, room) => {
    const known = cache.get(identity.user, room);
    if (known !== undefined) return known;
    return cache.lookup(
      identity.user,
      room,
      () => readRoomAccess(database, identity.claims, room),
    );
  };
}

/** The rooms' history in the project's Postgres (`RELAY_ROOM_HISTORY`). */
export function databaseHistory(database: Database, keep: HistoryKeep): RoomHistory {
  return {
    append: (message) => appendRoomMessage(database, message, keep),
    read: (room, from) => readRoomHistory(database, room, from, keep),
    latest: (room) => latestOffset(database, room),
  };
}

/** What the rooms route needs. */
export interface RoomsRouteOptions {
  readonly settings: Settings;
  readonly hub: RoomHub;
  readonly access: RoomAccessReader;
  /** The relay's limits; a member's message size is the room's own. */
  readonly limits: SessionLimits;
  readonly telemetry: Telemetry;
  readonly now: () => number;
  /** Room history (`RELAY_ROOM_HISTORY`); `null` when off. */
  readonly history: RoomHistory | null;
  /** The relay's caps, which SSE followers count against like members. */
  readonly registry: ConnectionRegistry;
  /** The relay's shared deadlines (followers' keepalive and token expiry). */
  readonly deadlines: Deadlines;
}

/** A checked join request. */
interface RoomPlan {
  readonly room: string;
  readonly self: boolean;
  /** `?since=` / `?last=` (or `Last-Event-ID`), checked; `null` when none. */
  readonly from: RecoverFrom | null;
}

/** The checks a join and a follow share: the room's name and where history starts. */
function roomPlan(url: URL, lastEventId: string | null): Prepared<RoomPlan> {
  const room = roomFromPath(url.pathname);
  if (!room.ok) return room;
  const from = readHistoryStart(url.searchParams, lastEventId);
  if (from !== null && "kind" in from) {
    return { ok: false, refusal: refusalWith("bad_offset", from.message) };
  }
  return {
    ok: true,
    plan: { room: room.plan, self: url.searchParams.get("self") === "true", from },
  };
}

/** The room a path names, or the refusal for a name that is not one. */
export function roomFromPath(pathname: string): Prepared<string> {
  const name = roomSegment(pathname);
  return name !== null && isRoomName(name)
    ? { ok: true, plan: name }
    : { ok: false, refusal: refusal("bad_room") };
}

/** The route for joining rooms, and the handlers of a server's publish and of SSE followers. */
export function roomsRoute(options: RoomsRouteOptions): WebSocketRoute<RoomPlan> & {
  publish(request: Request, url: URL, verifyToken: TokenVerifier): Promise<Response>;
  follow(request: Request, url: URL, verifyToken: TokenVerifier): Promise<Response>;
} {
  const { settings, hub, telemetry, now, history } = options;
  const reject = (refused: Refusal, route: "rooms" | "room_events" = "rooms") => {
    telemetry.info("websocket.connection.rejected", {
      status: refused.status,
      error: refused.error,
      route,
    });
    return refusalResponse(refused);
  };
  const limits: SessionLimits = {
    ...options.limits,
    maxMessageBytes: settings.roomMaxMessageBytes,
  };

  /** Access, or the refusal: no access, or the database is unreachable. */
  const accessOf = async (identity: Identity, room: string): Promise<RoomAccess | Refusal> => {
    try {
      return await options.access(identity, room) ?? refusal("room_forbidden");
    } catch {
      return refusal("rooms_unavailable");
    }
  };

  /**
   * With history on, joining needs the database (the contract's 503): its
   * latest offset is read now, and again, with what was missed, once the
   * member hears the room.
   */
  const historyReachable = async (room: string): Promise<Refusal | null> => {
    if (history === null) return null;
    try {
      await history.latest(room);
      return null;
    } catch {
      return refusal("rooms_unavailable");
    }
  };

  const join = (plan: RoomPlan, identity: Identity, conn: string, access: RoomAccess | null) => {
    if (access === null) return refusal("room_forbidden");
    if (hub.count(plan.room) >= settings.roomMaxMembers) return refusal("room_full");
    const member = new RoomMember(
      hub,
      plan.room,
      { user: identity.user, conn, access, self: plan.self, notices: settings.closeNotices },
      now,
      history === null ? null : { store: history, from: plan.from },
    );
    const connection: RouteConnection = {
      connect: (_model, events) => member.connect(events),
      model: null,
      hooks: [member],
      limits,
      labels: { room: plan.room },
    };
    return connection;
  };

  return {
    close: () => hub.close(),
    prepare: (url) => roomPlan(url, null),
    admit(plan, identity, conn) {
      return afterAccess(options.access, identity, plan.room, (access) => {
        if (access === null || history === null) return join(plan, identity, conn, access);
        return historyReachable(plan.room).then((refused) =>
          refused ?? join(plan, identity, conn, access)
        );
      });
    },

    async follow(request, url, verifyToken) {
      const fail = (refused: Refusal) =>
        reject(withCors(refused, request, settings.allowedOrigins), "room_events");
      if (request.method !== "GET") return fail(refusal("method_not_allowed"));
      if (!isOriginAllowed(request.headers.get("origin"), settings.allowedOrigins)) {
        return fail(refusal("origin_not_allowed"));
      }
      const found = extractToken(url, request.headers);
      if (!found) return fail(refusal("missing_token"));
      const prepared = roomPlan(url, request.headers.get("last-event-id"));
      if (!prepared.ok) return fail(prepared.refusal);
      const { plan } = prepared;
      const verified = await verifyToken(found.token);
      if (!verified.ok) return fail(refusal(verified.error));
      const { identity } = verified;
      const access = await accessOf(identity, plan.room);
      if (typeof access !== "string") return fail(access);
      const unreachable = await historyReachable(plan.room);
      if (unreachable) return fail(unreachable);
      if (hub.count(plan.room) >= settings.roomMaxMembers) return fail(refusal("room_full"));
      const full = options.registry.reserve(identity.user);
      if (full !== null) return fail(refusal(full));
      const follower = new RoomFollower({
        hub,
        room: plan.room,
        user: identity.user,
        conn: crypto.randomUUID(),
        access,
        history: history === null ? null : { store: history, from: plan.from },
        maxBufferedBytes: options.limits.maxBufferedBytes,
        expiresAtMs: identity.exp === null ? null : identity.exp * 1000,
        deadlines: options.deadlines,
        telemetry,
        now,
        onEnded: (ended) => options.registry.release(ended.user, ended),
      });
      options.registry.attach(follower);
      return new Response(follower.stream, {
        headers: {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache, no-transform",
          // Proxies (nginx among them) must not hold events back.
          "x-accel-buffering": "no",
          ...corsHeaders(request, settings.allowedOrigins),
        },
      });
    },

    async publish(request, url, verifyToken) {
      const room = roomFromPath(url.pathname);
      if (!room.ok) return reject(room.refusal);
      if (!isOriginAllowed(request.headers.get("origin"), settings.allowedOrigins)) {
        return reject(refusal("origin_not_allowed"));
      }
      const found = extractToken(url, request.headers);
      if (!found) return reject(refusal("missing_token"));
      let user: string | null = null;
      if (!settings.serverKeys.includes(found.token)) {
        const verified = await verifyToken(found.token);
        if (!verified.ok) return reject(refusal(verified.error));
        const access = await accessOf(verified.identity, room.plan);
        if (typeof access !== "string") return reject(access);
        if (access !== "write") return reject(refusal("room_forbidden"));
        user = verified.identity.user;
      }
      const body = await readBody(request, settings.roomMaxMessageBytes);
      if (body === null) return reject(refusal("message_too_big"));
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.text);
      } catch {
        return reject(refusal("bad_message"));
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return reject(refusal("bad_message"));
      }
      const intent = readBroadcast(parsed as Record<string, unknown>);
      if (intent.kind === "problem") return reject(refusalWith("bad_message", intent.message));
      const { event, payloadJson, id } = intent;
      const at = new Date(now()).toISOString();
      let offset: number | null = null;
      let duplicate = false;
      if (history !== null && !intent.ephemeral) {
        try {
          ({ offset, duplicate } = await history.append({
            room: room.plan,
            user,
            id,
            event,
            payloadJson,
            at,
          }));
        } catch {
          return reject(refusal("rooms_unavailable"));
        }
      }
      // A publish resent with a kept id is answered with the first offset, never delivered twice.
      if (!duplicate) {
        const text = broadcastText(event, payloadJson, { user, id, offset, at });
        if (!await hub.publish(room.plan, text)) return reject(refusal("rooms_unavailable"));
      }
      telemetry.info("room.published", { room: room.plan, user, offset, bytes: body.bytes });
      return Response.json({ offset }, { status: 202 });
    },
  };
}

/**
 * Who may read a follower's stream from another origin: the request's
 * `Origin` when it is allowed, everyone when no origins are configured.
 */
function corsHeaders(
  request: Request,
  allowedOrigins: readonly string[] | null,
): Record<string, string> {
  const origin = request.headers.get("origin");
  if (allowedOrigins === null) return { "access-control-allow-origin": "*" };
  return origin !== null && isOriginAllowed(origin, allowedOrigins)
    ? { "access-control-allow-origin": origin, vary: "origin" }
    : {};
}

/** A refusal a page on another origin may read (`EventSource` itself only reports a failure). */
function withCors(
  refused: Refusal,
  request: Request,
  allowedOrigins: readonly string[] | null,
): Refusal {
  return { ...refused, headers: { ...refused.headers, ...corsHeaders(request, allowedOrigins) } };
}

/** The request's body as text, or `null` when it is larger than `max` bytes. */
async function readBody(
  request: Request,
  max: number,
): Promise<{ text: string; bytes: number } | null> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > max) {
    await request.body?.cancel().catch(() => {});
    return null;
  }
  if (request.body === null) return { text: "", bytes: 0 };
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return { text: new TextDecoder().decode(bytes), bytes: size };
}
