/**
 * Room history in the project's Postgres (CONTRACT.md "Room history,
 * recovery and live updates over SSE"): every SQL statement the relay sends
 * for it. The schema and the offset rules are in
 * supabase/migrations/20261207000200_relay_room_history.sql; each call here
 * is one statement, one round trip, through Supabase's transaction pooler
 * (no prepared statements, no session state).
 *
 * Offsets: per room 1, 2, 3, ... with no gap, assigned by the database under
 * a lock on the room's counter row, so any number of instances may append to
 * one room at once. The counter outlives the room's messages: once all of
 * them expired, the next broadcast still continues from the last offset.
 * @module
 */
import type { HistoryStart } from "../rooms/recovery.ts";
import type { Database, Sql } from "./client.ts";

/** How much each room keeps. */
export interface HistoryKeep {
  /** The newest this many broadcasts per room (`RELAY_ROOM_HISTORY`, 1 or more). */
  readonly max: number;
  /** For at most this many seconds (`RELAY_ROOM_HISTORY_TTL_S`, 1 or more), by the database's clock. */
  readonly ttlS: number;
}

/** A broadcast to keep. */
export interface AppendInput {
  readonly room: string;
  /** The sender's user id (the token's `sub`); `null` for a server publish. Never empty. */
  readonly user: string | null;
  /** The client's message id, `null` when it sent none. */
  readonly id: string | null;
  readonly event: string;
  /** The payload as members receive it (JSON text); kept and replayed byte for byte. */
  readonly payloadJson: string;
  /** ISO 8601: when the relay accepted it (`meta.at`), stored as `created_at`. */
  readonly at: string;
}

/** A kept broadcast, as {@linkcode readRoomHistory} reads it back. */
export interface StoredMessage {
  readonly offset: number;
  /** `null` for a server publish. */
  readonly user: string | null;
  readonly id: string | null;
  readonly event: string;
  /** Exactly the JSON text that was appended. */
  readonly payloadJson: string;
  /** ISO 8601 in UTC with milliseconds (`Date.prototype.toISOString`'s form). */
  readonly at: string;
}

/** What {@linkcode appendRoomMessage} did. */
export interface AppendResult {
  /** The broadcast's offset; for a duplicate, the offset of the first one with that id. */
  readonly offset: number;
  /** `true` when this sender's id was already kept in this room: nothing was stored. */
  readonly duplicate: boolean;
}

/** What a room keeps, as {@linkcode readRoomHistory} reads it. */
export interface RoomHistoryRead {
  /** The room's latest offset; `null` when nothing was ever stored (or the room was reset). */
  readonly latest: number | null;
  /** The oldest offset still kept; `null` when none is (every one after it is kept too). */
  readonly oldest: number | null;
  /** The kept broadcasts asked for, in offset order. */
  readonly messages: StoredMessage[];
}

/** Where to read from: after an offset, or the newest n (the rooms' own {@linkcode HistoryStart}). */
export type HistoryFrom = HistoryStart;

/** The deadline of a call that names none: a broadcast or a join waits on it. */
const HISTORY_DEADLINE_MS = 2000;

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Keeps one broadcast: one statement (`relay.append_room_message`), one
 * round trip. It locks the room's counter row, drops what is no longer kept
 * (older than the newest `keep.max`, or than `keep.ttlS`), then either finds
 * this sender's `id` still kept in the room, stores nothing and resolves to
 * that message's offset with `duplicate: true`, or stores the broadcast at
 * the room's latest offset + 1, trims the room to its newest `keep.max`, and
 * resolves to the new offset.
 *
 * Two instances appending to one room at once take turns on the lock: no
 * gap, no offset twice, and of two concurrent appends with the same (room,
 * user, id) one stores and both get its offset. Should the unique index
 * still refuse a row (it cannot, as the function runs), the call is made
 * once more, which then finds the stored twin.
 *
 * Rejects with a `DatabaseError` when the database fails or misses
 * `deadlineMs`, and with a `RangeError`, sending nothing, for a `keep` that
 * is not two positive integers or an empty `user`.
 *
 * @example
 * ```ts
 * const { offset, duplicate } = await appendRoomMessage(db, {
 *   room: "public:lobby", user: sub, id: "m-1", event: "chat",
 *   payloadJson: JSON.stringify({ text: "hi" }), at: new Date().toISOString(),
 * }, { max: 1000, ttlS: 86400 });
 * ```
 */
export function appendRoomMessage(
  db: Database,
  input: AppendInput,
  keep: HistoryKeep,
  deadlineMs: number = HISTORY_DEADLINE_MS,
): Promise<AppendResult> {
  const invalid = keepProblem(keep) ??
    (input.user === "" ? "user must be a user id or null (a server publish)" : null);
  if (invalid) return Promise.reject(new RangeError(invalid));
  const append = async (sql: Sql): Promise<AppendResult> => {
    const [row] = await sql<{ offset: string; duplicate: boolean }[]>`
      select o_offset::text as "offset", o_duplicate as duplicate
      from relay.append_room_message(
        ${input.room}::text, ${senderOf(input.user)}::text, ${input.id}::text,
        ${input.event}::text, ${input.payloadJson}::text, ${input.at}::timestamptz,
        ${keep.max}::integer, ${keep.ttlS}::integer)`;
    if (!row) throw new Error("relay.append_room_message returned no row");
    return { offset: Number(row.offset), duplicate: row.duplicate === true };
  };
  return db.run(async (sql) => {
    try {
      return await append(sql);
    } catch (error) {
      if (errorCode(error) !== UNIQUE_VIOLATION) throw error;
      return await append(sql);
    }
  }, deadlineMs);
}

/**
 * What a room keeps, in one statement: its latest offset, the oldest offset
 * still kept, and the kept broadcasts after `from.since` (all of them for
 * `since: 0`, none when `since` is at or ahead of the latest) or the newest
 * `from.last` (`last: 0`: none, for the offsets alone), in offset order.
 * "Kept" is the newest `keep.max` within `keep.ttlS`, whatever the table
 * still holds: a room nobody wrote to since its messages expired reads as
 * empty, with its latest offset.
 *
 * Rejects with a `DatabaseError` when the database fails or misses
 * `deadlineMs`, and with a `RangeError`, sending nothing, for a `since` or
 * `last` that is not a non-negative safe integer, or a bad `keep`.
 */
export function readRoomHistory(
  db: Database,
  room: string,
  from: HistoryFrom,
  keep: HistoryKeep,
  deadlineMs: number = HISTORY_DEADLINE_MS,
): Promise<RoomHistoryRead> {
  const since = "since" in from ? from.since : null;
  const last = "last" in from ? from.last : null;
  const invalid = keepProblem(keep) ??
    (since !== null && !isCount(since)
      ? "since must be a non-negative integer"
      : last !== null && !isCount(last)
      ? "last must be a non-negative integer"
      : null);
  if (invalid) return Promise.reject(new RangeError(invalid));
  return db.run(async (sql) => {
    // One row per message, each carrying latest and oldest; one row of nulls when none.
    const picked = since !== null
      ? sql`
        select m."offset", m.sender, m.msg_id, m.event, m.payload, m.created_at
        from relay.room_messages m
        where m.room = ${room}::text and m."offset" > greatest(b.floor, ${since}::bigint)
        order by m."offset"`
      : sql`
        select * from (
          select m."offset", m.sender, m.msg_id, m.event, m.payload, m.created_at
          from relay.room_messages m
          where m.room = ${room}::text and m."offset" > b.floor
          order by m."offset" desc
          limit ${last}::bigint
        ) newest`;
    const rows = await sql<HistoryRow[]>`
      with counter as (
        select (select o.latest from relay.room_offsets o where o.room = ${room}::text) as latest
      ), bounds as (
        select c.latest,
          relay.room_history_floor(${room}::text, c.latest, ${keep.max}::integer,
            ${keep.ttlS}::integer) as floor
        from counter c
      )
      select b.latest::text as latest,
        (select min(k."offset") from relay.room_messages k
          where k.room = ${room}::text and k."offset" > b.floor)::text as oldest,
        p."offset"::text as "offset", p.sender, p.msg_id, p.event, p.payload,
        to_char(p.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at
      from bounds b
      left join lateral (${picked}) p on true
      order by p."offset"`;
    const first = rows[0];
    const messages: StoredMessage[] = [];
    for (const row of rows) {
      if (row.offset === null) continue;
      messages.push({
        offset: Number(row.offset),
        user: row.sender === "" || row.sender === null ? null : row.sender,
        id: row.msg_id,
        event: row.event ?? "",
        payloadJson: row.payload ?? "null",
        at: row.at ?? "",
      });
    }
    return {
      latest: first?.latest == null ? null : Number(first.latest),
      oldest: first?.oldest == null ? null : Number(first.oldest),
      messages,
    };
  }, deadlineMs);
}

/**
 * The room's latest offset, in one statement; `null` when it never stored a
 * broadcast (or was reset). It stays after the room's messages expire.
 */
export function latestOffset(
  db: Database,
  room: string,
  deadlineMs: number = HISTORY_DEADLINE_MS,
): Promise<number | null> {
  return db.run(async (sql) => {
    const [row] = await sql<{ latest: string }[]>`
      select o.latest::text as latest from relay.room_offsets o where o.room = ${room}::text`;
    return row ? Number(row.latest) : null;
  }, deadlineMs);
}

/**
 * Deletes the messages no longer kept by `ttlS` in up to 1000 rooms
 * (`relay.delete_expired_room_messages`, one statement), for rooms nobody
 * appends to any more (an append trims its own room). A room being appended
 * to at that moment is skipped, never waited for. Resolves to the rows
 * deleted; call again while it deletes some.
 */
export function deleteExpiredRoomMessages(
  db: Database,
  ttlS: number,
  deadlineMs: number = HISTORY_DEADLINE_MS,
): Promise<number> {
  if (!Number.isSafeInteger(ttlS) || ttlS < 1) {
    return Promise.reject(new RangeError("ttlS must be a positive integer"));
  }
  return db.run(async (sql) => {
    const [row] = await sql<{ deleted: number }[]>`
      select relay.delete_expired_room_messages(${ttlS}::integer) as deleted`;
    return row?.deleted ?? 0;
  }, deadlineMs);
}

/** A row of {@linkcode readRoomHistory}'s statement (bigints as text). */
interface HistoryRow {
  readonly latest: string | null;
  readonly oldest: string | null;
  readonly offset: string | null;
  readonly sender: string | null;
  readonly msg_id: string | null;
  readonly event: string | null;
  readonly payload: string | null;
  readonly at: string | null;
}

/**
 * The stored sender: '' for a server publish (so that a server's ids are
 * unique per room too). A U+0000, which Postgres text cannot hold and no
 * real `sub` has, is stored as U+FFFD rather than failing every broadcast.
 */
function senderOf(user: string | null): string {
  return user === null ? "" : user.replaceAll("\0", "\uFFFD");
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function keepProblem(keep: HistoryKeep): string | null {
  if (!Number.isSafeInteger(keep.max) || keep.max < 1 || keep.max > 2 ** 31 - 1) {
    return "keep.max must be a positive integer";
  }
  if (!Number.isSafeInteger(keep.ttlS) || keep.ttlS < 1 || keep.ttlS > 2 ** 31 - 1) {
    return "keep.ttlS must be a positive integer";
  }
  return null;
}

function errorCode(error: unknown): unknown {
  return typeof error === "object" && error !== null
    ? (error as { code?: unknown }).code
    : undefined;
}
