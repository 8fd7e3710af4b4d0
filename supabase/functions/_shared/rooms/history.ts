/**
 * Room history as the rooms see it (CONTRACT.md "Room history, recovery and
 * live updates over SSE"): a store that assigns offsets and keeps the newest
 * broadcasts (SQL in db/room_history.ts), and the catch-up every member or
 * follower with history goes through: `room.joined` with the room's latest
 * offset, then what it missed in offset order, then live broadcasts, with
 * none twice and none missing in between.
 * @module
 */
import type { AppendInput, RoomHistoryRead, StoredMessage } from "../db/room_history.ts";
import type { Message } from "../upstream/upstream.ts";
import { type HistoryStart, recoveredFor } from "./recovery.ts";
import { broadcastText } from "./wire.ts";

/** Where a joining member wants history from: after an offset, or the newest n. */
export type RecoverFrom = HistoryStart;

/** A broadcast to keep (the store's own shape). */
export type BroadcastToKeep = AppendInput;

/** A kept broadcast. */
export type StoredBroadcast = StoredMessage;

/** What was kept of a room, for a catch-up: its latest and oldest offsets, and the messages asked for. */
export type KeptHistory = RoomHistoryRead;

/** The rooms' history in the project's Postgres. Every call rejects when the database fails. */
export interface RoomHistory {
  /**
   * Keeps a broadcast and gives it the room's next offset, or, when this
   * user already sent this id to this room (still kept), keeps nothing and
   * answers the first one's offset with `duplicate`.
   */
  append(message: BroadcastToKeep): Promise<{ offset: number; duplicate: boolean }>;
  read(room: string, from: RecoverFrom): Promise<KeptHistory>;
  latest(room: string): Promise<number | null>;
}

/** The text members get for a kept broadcast. */
export function storedText(message: StoredBroadcast): string {
  return broadcastText(message.event, message.payloadJson, {
    user: message.user,
    id: message.id,
    offset: message.offset,
    at: message.at,
  });
}

const BROADCAST_PREFIX = '{"type":"broadcast",';
const OFFSET_KEY = '"offset":';

/**
 * `meta.offset` of a broadcast text built by `broadcastText`, without parsing
 * it: meta comes last, and no JSON string inside can hold an unescaped `"`,
 * so the last `"offset":` is meta's. `null` for anything else.
 */
export function offsetOf(data: Message): number | null {
  if (typeof data !== "string" || !data.startsWith(BROADCAST_PREFIX)) return null;
  const at = data.lastIndexOf(OFFSET_KEY);
  if (at < 0) return null;
  const digits = /^\d+/.exec(data.slice(at + OFFSET_KEY.length, at + OFFSET_KEY.length + 20));
  return digits ? Number(digits[0]) : null;
}

/** What a catch-up tells its occupant. */
export interface CatchupTarget {
  /** `room.joined` with the room's latest offset and whether everything after `since` was kept. */
  joined(offset: number | null, recovered: boolean | null): void;
  /** A replayed or live message. */
  emit(data: Message): void;
  /** The history could not be read (the database failed after admission). */
  failed(): void;
}

/** The most live messages held while a catch-up reads: past it the occupant is closed as a slow reader. */
export const MAX_HELD_DURING_CATCHUP = 10_000;

/**
 * One occupant's catch-up: live messages are held while the history is read,
 * then the replay goes first and the held ones follow, each kept broadcast
 * once (by offset), and later live copies of a replayed one are dropped.
 */
export class Catchup {
  readonly #target: CatchupTarget;
  #held: Message[] | null = [];
  /** The highest offset the occupant has been given; live copies at or below it are dropped. */
  #seenUpTo: number | null = null;

  constructor(target: CatchupTarget) {
    this.#target = target;
  }

  /** Reads `room` from `from` (or only its latest offset) and replays. */
  async start(history: RoomHistory, room: string, from: RecoverFrom | null): Promise<void> {
    let kept: KeptHistory;
    try {
      kept = await history.read(room, from ?? { last: 0 });
    } catch {
      this.#held = null;
      return this.#target.failed();
    }
    const since = from !== null && "since" in from ? from.since : null;
    this.#target.joined(kept.latest, recoveredFor(from, kept));
    let seen = kept.latest;
    for (const message of kept.messages) {
      if (since !== null && message.offset <= since) continue;
      this.#target.emit(storedText(message));
      if (seen === null || message.offset > seen) seen = message.offset;
    }
    this.#seenUpTo = seen;
    const held = this.#held ?? [];
    this.#held = null;
    for (const data of held) this.deliver(data);
  }

  /** A live message: held during the read, dropped when already given, else passed on. */
  deliver(data: Message): void {
    if (this.#held !== null) {
      if (this.#held.length >= MAX_HELD_DURING_CATCHUP) return this.#target.failed();
      this.#held.push(data);
      return;
    }
    if (this.#seenUpTo !== null) {
      const offset = offsetOf(data);
      if (offset !== null && offset <= this.#seenUpTo) return;
    }
    this.#target.emit(data);
  }
}
