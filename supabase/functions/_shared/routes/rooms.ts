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
import { readRoomAccess } from "../db/rooms.ts";
import { RoomAccessCache } from "../rooms/access_cache.ts";
import { extractToken } from "../auth/token_source.ts";
import type { TokenVerifier } from "../auth/verify.ts";
import { isOriginAllowed } from "../http/handshake.ts";
import { type Refusal, refusal, refusalResponse, refusalWith } from "../http/refusal.ts";
import { roomSegment } from "../http/routes.ts";
import type { SessionLimits } from "../relay/session.ts";
import type { RoomHub } from "../rooms/hub.ts";
import { RoomMember } from "../rooms/member.ts";
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

/** What the rooms route needs. */
export interface RoomsRouteOptions {
  readonly settings: Settings;
  readonly hub: RoomHub;
  readonly access: RoomAccessReader;
  /** The relay's limits; a member's message size is the room's own. */
  readonly limits: SessionLimits;
  readonly telemetry: Telemetry;
  readonly now: () => number;
}

/** A checked join request. */
interface RoomPlan {
  readonly room: string;
  readonly self: boolean;
}

/** The room a path names, or the refusal for a name that is not one. */
export function roomFromPath(pathname: string): Prepared<string> {
  const name = roomSegment(pathname);
  return name !== null && isRoomName(name)
    ? { ok: true, plan: name }
    : { ok: false, refusal: refusal("bad_room") };
}

/** The route for joining rooms, and the handler of a server's publish. */
export function roomsRoute(options: RoomsRouteOptions): WebSocketRoute<RoomPlan> & {
  publish(request: Request, url: URL, verifyToken: TokenVerifier): Promise<Response>;
} {
  const { settings, hub, telemetry, now } = options;
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

  const join = (plan: RoomPlan, identity: Identity, conn: string, access: RoomAccess | null) => {
    if (access === null) return refusal("room_forbidden");
    if (hub.count(plan.room) >= settings.roomMaxMembers) return refusal("room_full");
    const member = new RoomMember(hub, plan.room, {
      user: identity.user,
      conn,
      access,
      self: plan.self,
      notices: settings.closeNotices,
    }, now);
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
    prepare(url) {
      const room = roomFromPath(url.pathname);
      if (!room.ok) return room;
      return { ok: true, plan: { room: room.plan, self: url.searchParams.get("self") === "true" } };
    },
    admit(plan, identity, conn) {
      let answer: RoomAccess | null | Promise<RoomAccess | null>;
      try {
        answer = options.access(identity, plan.room);
      } catch {
        return refusal("rooms_unavailable");
      }
      // A remembered answer (open mode, or read within 30 s) costs no promise.
      return answer instanceof Promise
        ? answer.then(
          (access) => join(plan, identity, conn, access),
          () => refusal("rooms_unavailable"),
        )
        : join(plan, identity, conn, answer);
    },

    async publish(request, url, verifyToken) {
      const reject = (refused: Refusal) => {
        telemetry.info("websocket.connection.rejected", {
          status: refused.status,
          error: refused.error,
          route: "rooms",
        });
        return refusalResponse(refused);
      };
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
      const text = broadcastText(intent.event, intent.payloadJson, {
        user,
        id: intent.id,
        offset: null,
        at: new Date(now()).toISOString(),
      });
      if (!await hub.publish(room.plan, text)) return reject(refusal("rooms_unavailable"));
      telemetry.info("room.published", {
        room: room.plan,
        user,
        offset: null,
        bytes: body.bytes,
      });
      return Response.json({ offset: null }, { status: 202 });
    },
  };
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
