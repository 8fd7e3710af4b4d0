/**
 * Live captions (`?room=` on the OpenAI route): the connection's transcripts
 * published into a room as broadcasts from its user, `caption.delta`
 * (ephemeral) for each transcript delta and `caption` (kept with history) for
 * each finished transcript. What the client and OpenAI exchange is unchanged;
 * the connection publishes only (it is not a member).
 * @module
 */
import { type Refusal, refusal } from "../http/refusal.ts";
import { captionOf, isCaptionSource } from "../realtime/captions.ts";
import { eventTypeOf } from "../realtime/event_type.ts";
import type { ConnectionHooks } from "../relay/hooks.ts";
import type { RoomHistory } from "../rooms/history.ts";
import type { RoomHub } from "../rooms/hub.ts";
import { RoomPublisher } from "../rooms/publisher.ts";
import { isRoomName, type RoomAccess } from "../rooms/wire.ts";
import { afterAccess, type RoomAccessReader } from "../routes/rooms.ts";
import type { Admission, ConnectionContext, RouteFeature } from "./feature.ts";

/** What captions need of the rooms. */
export interface CaptionsOptions {
  readonly hub: RoomHub;
  readonly access: RoomAccessReader;
  readonly history: RoomHistory | null;
  readonly now: () => number;
}

const NONE: Admission = {};

/** `?room=` on the OpenAI route, with rooms on. */
export function captionsFeature(options: CaptionsOptions): RouteFeature {
  const admitWith = (context: ConnectionContext, room: string, access: RoomAccess | null) => {
    if (access !== "write") return refusal("room_forbidden");
    let publisher: RoomPublisher | null = null;
    const hooks: ConnectionHooks = {
      started: () => {
        publisher = new RoomPublisher(
          options.hub,
          room,
          context.user,
          options.history,
          options.now,
        );
      },
      fromUpstream: (data) => {
        if (typeof data !== "string" || publisher === null) return data;
        const type = eventTypeOf(data);
        if (type === null || !isCaptionSource(type)) return data;
        let event: unknown;
        try {
          event = JSON.parse(data);
        } catch {
          return data;
        }
        const caption = captionOf(event as Record<string, unknown>);
        if (caption) publisher.publish(caption.event, caption.payloadJson, caption.ephemeral);
        return data;
      },
      ended: () => publisher?.stop(),
    };
    return { hooks };
  };
  return {
    check(url) {
      const room = url.searchParams.get("room");
      return room === null || isRoomName(room) ? null : refusal("bad_room");
    },
    admit(context): Admission | Refusal | Promise<Admission | Refusal> {
      const room = context.room;
      if (room === null) return NONE;
      return afterAccess(
        options.access,
        context.identity,
        room,
        (access) => admitWith(context, room, access),
      );
    },
  };
}
