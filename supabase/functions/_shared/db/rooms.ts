/**
 * Room access in `database` mode: the SQL that asks `relay.room_access(room)`
 * (supabase/migrations/20261207000100_relay_rooms.sql) as the user, the way
 * PostgREST runs a request: role `authenticated` and `request.jwt.claims`
 * set for one transaction.
 * @module
 */
import type { Database } from "./client.ts";

/** What a member may do in a room: `read` (join and listen) or `write` (also send). */
export type RoomAccess = "read" | "write";

/** The deadline of an access check that names none: a join waits on it. */
const ACCESS_DEADLINE_MS = 2000;

/**
 * `relay.room_access(room)` run as the user: role `authenticated` and
 * `request.jwt.claims` = `claims`, in one transaction, through Supabase's
 * transaction pooler (no prepared statements, no session state: the settings
 * are transaction-local, `set_config(..., true)`).
 *
 * One round trip: a single simple-protocol Query message holding two
 * statements, which PostgreSQL runs as one implicit transaction, each
 * statement planned after the previous one ran. So the function call is
 * planned and run as `authenticated`, with the user's RLS, exactly as if the
 * role had been set with `set local role`; and the settings end with that
 * transaction, whatever happens, so the pooled connection goes back clean.
 * The simple protocol takes no parameters: the claims and the room go in as
 * escaped string literals ({@linkcode sqlLiteral}).
 *
 * `claims` is the verified token's payload (`sub`, `role`, `exp`, ...). The
 * role is always `authenticated` (CONTRACT.md "Rooms"), whatever the
 * payload's `role`. The legacy per-claim settings that Supabase's `auth.uid()`,
 * `auth.role()` and `auth.jwt()` read first (`request.jwt.claim.sub`,
 * `request.jwt.claim.role`, `request.jwt.claim`) are emptied for the
 * transaction, so a value some other client left on the pooled connection
 * can never stand in for this user.
 *
 * Resolves to `'read'`, `'write'`, or `null` for anything else (no access).
 * Rejects with the database's `DatabaseError` when the database fails or
 * misses `deadlineMs` (the route answers 503).
 */
export function readRoomAccess(
  database: Database,
  claims: Readonly<Record<string, unknown>>,
  room: string,
  deadlineMs: number = ACCESS_DEADLINE_MS,
): Promise<RoomAccess | null> {
  // A NUL cannot be part of a PostgreSQL string, so no room holds one.
  if (room.includes("\0")) return Promise.resolve(null);
  const statement = roomAccessStatement(claims, room);
  return database.run(async (sql) => {
    const results = await sql.unsafe(statement) as unknown as readonly unknown[];
    return roomAccessFrom(results);
  }, deadlineMs);
}

/**
 * The one message {@linkcode readRoomAccess} sends: the settings, then the
 * call, as two statements of one implicit transaction.
 */
export function roomAccessStatement(
  claims: Readonly<Record<string, unknown>>,
  room: string,
): string {
  return "select set_config('role', 'authenticated', true)," +
    ` set_config('request.jwt.claims', ${sqlLiteral(JSON.stringify(claims))}, true),` +
    " set_config('request.jwt.claim.sub', '', true)," +
    " set_config('request.jwt.claim.role', '', true)," +
    " set_config('request.jwt.claim', '', true);\n" +
    `select relay.room_access(${sqlLiteral(room)}) as access`;
}

/**
 * A string as a PostgreSQL escape string constant (`E'...'`): backslashes
 * and quotes doubled, so it reads back exactly whatever
 * `standard_conforming_strings` is. The text must hold no NUL.
 */
export function sqlLiteral(text: string): string {
  return `E'${text.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
}

/**
 * The access in the results of {@linkcode roomAccessStatement} (postgres.js
 * gives one row list per statement of a multi-statement query): the last
 * statement's `access`, when it is `read` or `write`.
 */
export function roomAccessFrom(results: readonly unknown[]): RoomAccess | null {
  const rows = Array.isArray(results[0]) ? results.at(-1) : results;
  const row = Array.isArray(rows) ? rows[0] : undefined;
  const access = typeof row === "object" && row !== null
    ? (row as { access?: unknown }).access
    : undefined;
  return access === "read" || access === "write" ? access : null;
}
