/**
 * The wire shapes of rooms (CONTRACT.md "Rooms"): what a member may send,
 * read into a decision, and every text a member receives, built as JSON
 * strings once so that a broadcast to many members is serialised once.
 * Pure: no sockets, no clock.
 * @module
 */
import { relayEventId } from "../realtime/event_id.ts";

/** Room names, event names and message ids: letters, digits and `_.:-`. */
const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
const EVENT_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The most a member's presence state may take, as JSON (UTF-8 bytes). */
export const MAX_PRESENCE_STATE_BYTES = 1024;

/** Whether `name` is a valid room name (1-100 of `[A-Za-z0-9_.:-]`). */
export function isRoomName(name: string): boolean {
  return ROOM_NAME.test(name);
}

/** What a member may do in a room. */
export type RoomAccess = "read" | "write";

/** A broadcast as sent, checked: `payloadJson` is the payload re-serialised. */
export interface BroadcastIntent {
  readonly kind: "broadcast";
  readonly event: string;
  readonly payloadJson: string;
  readonly id: string | null;
  readonly ephemeral: boolean;
}

/** A presence update: the member's state as JSON. */
export interface PresenceIntent {
  readonly kind: "presence";
  readonly stateJson: string;
}

/** Why a member's message was not delivered (the in-band `error` event's fields). */
export interface WireProblem {
  readonly kind: "problem";
  readonly code: "room_bad_message" | "room_read_only" | "history_unavailable";
  readonly message: string;
  readonly param: string | null;
  /** The message's own id, when it had a well-formed one. */
  readonly eventId: string | null;
}

/** What a member's text frame asks for. */
export type MemberIntent = BroadcastIntent | PresenceIntent | WireProblem;

function problem(
  message: string,
  param: string | null,
  eventId: string | null = null,
): WireProblem {
  return { kind: "problem", code: "room_bad_message", message, param, eventId };
}

/** The refusal for anything a member with `read` access sends. */
export function readOnlyProblem(eventId: string | null = null): WireProblem {
  return {
    kind: "problem",
    code: "room_read_only",
    message: "This member may only read this room.",
    param: null,
    eventId,
  };
}

/** The refusal of a broadcast that could not be kept (the database is unreachable): resend it. */
export function historyUnavailableProblem(eventId: string | null): WireProblem {
  return {
    kind: "problem",
    code: "history_unavailable",
    message:
      "The room's history cannot be written right now; the message was not delivered. Send it again.",
    param: null,
    eventId,
  };
}

function asObject(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
}

/**
 * Reads the broadcast fields shared by a member's `broadcast` message and a
 * server's publish body: `event`, `payload`, optional `id` and `ephemeral`.
 */
export function readBroadcast(message: Record<string, unknown>): BroadcastIntent | WireProblem {
  const { event, id, ephemeral } = message;
  const eventId = typeof id === "string" && EVENT_NAME.test(id) ? id : null;
  if (id !== undefined && eventId === null) {
    return problem("id must be 1-64 characters of A-Z, a-z, 0-9, _ . : -", "id");
  }
  if (typeof event !== "string" || !EVENT_NAME.test(event)) {
    return problem("event must be 1-64 characters of A-Z, a-z, 0-9, _ . : -", "event", eventId);
  }
  if (!Object.hasOwn(message, "payload")) return problem("payload is missing.", "payload", eventId);
  if (ephemeral !== undefined && typeof ephemeral !== "boolean") {
    return problem("ephemeral must be true or false.", "ephemeral", eventId);
  }
  return {
    kind: "broadcast",
    event,
    payloadJson: JSON.stringify(message.payload),
    id: eventId,
    ephemeral: ephemeral === true,
  };
}

const encoder = new TextEncoder();

/** What a member's text frame asks for, or why it cannot be delivered. */
export function readMemberText(text: string): MemberIntent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return problem("A room message must be a JSON object.", null);
  }
  const message = asObject(parsed);
  if (message === null) return problem("A room message must be a JSON object.", null);
  if (message.type === "broadcast") return readBroadcast(message);
  if (message.type === "presence") {
    const state = asObject(message.state);
    if (state === null) return problem("state must be a JSON object.", "state");
    const stateJson = JSON.stringify(state);
    if (
      stateJson.length > MAX_PRESENCE_STATE_BYTES ||
      encoder.encode(stateJson).length > MAX_PRESENCE_STATE_BYTES
    ) {
      return problem(`state may take at most ${MAX_PRESENCE_STATE_BYTES} bytes as JSON.`, "state");
    }
    return { kind: "presence", stateJson };
  }
  return problem('type must be "broadcast" or "presence".', "type");
}

/** Who sent a broadcast and when, as members see it in `meta`. */
export interface BroadcastMeta {
  /** The sender's user id; `null` for a server publish. */
  readonly user: string | null;
  readonly id: string | null;
  readonly offset: number | null;
  /** ISO 8601 time the relay accepted it. */
  readonly at: string;
}

/** The text every receiver of a broadcast gets. */
export function broadcastText(event: string, payloadJson: string, meta: BroadcastMeta): string {
  return `{"type":"broadcast","event":${JSON.stringify(event)},"payload":${payloadJson},"meta":${
    JSON.stringify(meta)
  }}`;
}

/** The sender's acknowledgement of a broadcast that carried an id. */
export function ackText(id: string, offset: number | null): string {
  return JSON.stringify({ type: "broadcast.ack", id, offset });
}

/** One user present in a room. */
export interface PresenceEntry {
  readonly user: string;
  /** The user's state as JSON (`null` when they never set one). */
  readonly stateJson: string;
}

/** What a member gets first, once its instance hears the room. */
export interface JoinedFields {
  readonly room: string;
  readonly user: string;
  readonly conn: string;
  readonly access: RoomAccess;
  readonly presence: readonly PresenceEntry[];
  readonly offset: number | null;
  readonly recovered: boolean | null;
}

/** The `room.joined` text. */
export function roomJoinedText(fields: JoinedFields): string {
  const presence = fields.presence.map((entry) =>
    `{"user":${JSON.stringify(entry.user)},"state":${entry.stateJson}}`
  ).join(",");
  return `{"type":"room.joined","room":${JSON.stringify(fields.room)},"user":${
    JSON.stringify(fields.user)
  },"conn":${
    JSON.stringify(fields.conn)
  },"access":"${fields.access}","presence":[${presence}],"offset":${
    JSON.stringify(fields.offset)
  },"recovered":${JSON.stringify(fields.recovered)}}`;
}

/** A change in who is present, as members receive it. */
export type PresenceChange =
  | { readonly type: "presence.join"; readonly user: string; readonly stateJson: string }
  | { readonly type: "presence.leave"; readonly user: string }
  | { readonly type: "presence.state"; readonly user: string; readonly stateJson: string };

/** The text of a presence change. */
export function presenceText(change: PresenceChange): string {
  const user = JSON.stringify(change.user);
  return change.type === "presence.leave"
    ? `{"type":"presence.leave","user":${user}}`
    : `{"type":"${change.type}","user":${user},"state":${change.stateJson}}`;
}

/** The in-band refusal of a member's message (the OpenAI `error` event's shape). */
export function problemText(refused: WireProblem): string {
  return JSON.stringify({
    type: "error",
    event_id: relayEventId(),
    error: {
      type: "invalid_request_error",
      code: refused.code,
      message: refused.message,
      param: refused.param,
      event_id: refused.eventId,
    },
  });
}
