/**
 * Recovery decisions of room history (CONTRACT.md "Room history, recovery
 * and live updates over SSE"): where a joining member or SSE follower wants
 * history from (`?since=`, `?last=`, `Last-Event-ID`), and whether what the
 * room still keeps covers everything it missed (`recovered`). Pure: no
 * database, no clock.
 * @module
 */

/** Where to replay from: after an offset, or the newest n kept broadcasts. */
export type HistoryStart = { readonly since: number } | { readonly last: number };

/** Why a recovery parameter was refused (the route answers `400 bad_offset`). */
export interface OffsetProblem {
  readonly kind: "problem";
  readonly code: "bad_offset";
  /** `since`, `last` or `Last-Event-ID`: the value that was malformed. */
  readonly param: "since" | "last" | "Last-Event-ID";
  readonly message: string;
}

/** What the room keeps, as far as the verdict needs it. */
export interface KeptRange {
  /** The room's latest offset; `null` when it never stored anything (or was reset). */
  readonly latest: number | null;
  /** The oldest offset still kept; `null` when none is. */
  readonly oldest: number | null;
}

/** Digits as an offset is written: `0`, or no leading zero; at most 16 of them. */
const OFFSET = /^(?:0|[1-9][0-9]{0,15})$/;

/**
 * An offset or count as a URL or `Last-Event-ID` carries it: a non-negative
 * integer in plain decimal digits, no sign, no leading zero, no exponent, no
 * fraction, no blanks, at most `Number.MAX_SAFE_INTEGER` (offsets are never
 * larger, and a larger one could not be read back exactly). `null` for
 * anything else, the empty string included.
 */
export function parseOffset(text: string): number | null {
  if (!OFFSET.test(text)) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * Where a joining member (WebSocket or SSE) wants history from, read from
 * `?since=`, `?last=` and the `Last-Event-ID` header; `null` when it asked
 * for none (then `recovered` is null); an {@linkcode OffsetProblem} when a
 * value given is malformed (each one given is checked, used or not).
 *
 * Precedence, because a resume point makes a backlog moot:
 * `Last-Event-ID`, then `?since=`, then `?last=`. An `EventSource` reconnects
 * to the very URL it first opened (with its `?last=` or an old `?since=`)
 * and adds `Last-Event-ID`, which must win; a client that keeps `?last=`
 * beside the `?since=` it resumes from means the same. An empty
 * `Last-Event-ID` is no header (what `EventSource` means by an empty last
 * event id); an empty `?since=` or `?last=` is malformed.
 *
 * @example
 * ```ts
 * const url = new URL(request.url);
 * const start = readHistoryStart(url.searchParams, request.headers.get("last-event-id"));
 * ```
 */
export function readHistoryStart(
  query: URLSearchParams,
  lastEventId: string | null,
): HistoryStart | OffsetProblem | null {
  const header = lastEventId === null || lastEventId === "" ? null : lastEventId;
  const sinceText = query.get("since");
  const lastText = query.get("last");
  const eventSince = header === null ? null : parseOffset(header);
  if (header !== null && eventSince === null) {
    return badOffset("Last-Event-ID", "Last-Event-ID must be the offset of a room broadcast.");
  }
  const since = sinceText === null ? null : parseOffset(sinceText);
  if (sinceText !== null && since === null) {
    return badOffset("since", "since must be an offset: 0 or more, in digits.");
  }
  const last = lastText === null ? null : parseOffset(lastText);
  if (lastText !== null && last === null) {
    return badOffset("last", "last must be a count of broadcasts: 0 or more, in digits.");
  }
  if (eventSince !== null) return { since: eventSince };
  if (since !== null) return { since };
  if (last !== null) return { last };
  return null;
}

/**
 * Whether every broadcast after `since` is still kept: `true` when `since`
 * is the room's latest offset (nothing was missed) or the oldest kept one
 * follows it directly or earlier; `false` when the oldest ones are gone
 * (trimmed or expired) or `since` is ahead of the latest (the room's
 * history was reset: the client should reload). A room that never stored
 * anything has latest 0 for this purpose, so `since: 0` there is `true`.
 */
export function recoveredAfter(since: number, kept: KeptRange): boolean {
  const latest = kept.latest ?? 0;
  if (since > latest) return false;
  if (since === latest) return true;
  return kept.oldest !== null && kept.oldest <= since + 1;
}

/**
 * `recovered` of `room.joined` for a start: {@linkcode recoveredAfter} for
 * a `since`, `null` for a `last` or no start at all.
 */
export function recoveredFor(start: HistoryStart | null, kept: KeptRange): boolean | null {
  return start !== null && "since" in start ? recoveredAfter(start.since, kept) : null;
}

function badOffset(param: OffsetProblem["param"], message: string): OffsetProblem {
  return { kind: "problem", code: "bad_offset", param, message };
}
