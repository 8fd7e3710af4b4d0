/**
 * The session store of resumable sessions: every SQL statement resume sends
 * (the schema is supabase/migrations/20261201000200_relay_sessions.sql), and
 * the pure timing decisions behind them (expiry, heartbeat). Times are the
 * relay's clock, passed in, so tests and every comparison use one clock.
 * @module
 */
import type { RestoredItem, StoredItem } from "../realtime/conversation.ts";
import type postgres from "postgres";
import type { Database } from "./client.ts";

/** A conversation: its user (the token's `sub`) and the client's `?session=` id. */
export interface SessionKey {
  readonly user: string;
  readonly session: string;
}

/** What a connection took over at connect. */
export interface ClaimedState {
  /** The state's generation: writes of an older one are dead. */
  readonly generation: number;
  readonly config: Record<string, unknown> | null;
  /** Stored items in conversation order. */
  readonly items: readonly RestoredItem[];
}

/** Fields every write carries: whose it is and when it happened. */
export interface RecordBase extends SessionKey {
  readonly conn: string;
  /** The generation the connection claimed; `null` when its claim has not been read back. */
  readonly generation: number | null;
  /** When it happened, ms since the epoch. */
  readonly at: number;
}

/** What one write does to a session's state. */
export type SessionWrite =
  | { readonly kind: "config"; readonly config: Record<string, unknown> }
  | {
    readonly kind: "item";
    readonly id: string;
    readonly position: number;
    readonly item: StoredItem;
  }
  | { readonly kind: "delete"; readonly id: string }
  /** The connection ended: it no longer owns the session; the TTL runs from now. */
  | { readonly kind: "release" }
  /**
   * The connection starts the session afresh and takes it over (its claim at
   * connect failed, or the state vanished under it): the stored conversation
   * is replaced, since this OpenAI session does not know it.
   */
  | { readonly kind: "restart" };

/** One write of a session's state, queued in an outbox and written in order. */
export type SessionRecord = RecordBase & SessionWrite;

/** A live connection and the session it owns. */
export interface Ownership extends SessionKey {
  readonly conn: string;
}

/** What a write or a check learnt about the connections it named. */
export interface OwnerReport {
  /** Connections that own their session. */
  readonly owning: readonly string[];
  /** Connections whose session another connection has taken over. */
  readonly replaced: readonly string[];
  /** Connections whose session no longer exists (deleted as expired under them). */
  readonly missing: readonly string[];
}

/** The SQL of resumable sessions, one round trip per call. */
export interface SessionStore {
  /**
   * Takes the session over for `conn` and reads its state, in one statement
   * (shared with the claims that arrive while one is in flight): state past
   * its expiry is given up (a fresh generation), and a session never seen is
   * created.
   */
  claim(key: SessionKey, conn: string, at: number): Promise<ClaimedState>;
  /** Writes a batch in order, in one transaction; idempotent, so a retried batch is harmless. */
  write(batch: readonly SessionRecord[]): Promise<OwnerReport>;
  /**
   * Whether each connection still owns its session; renews the expiry of
   * those last renewed before `renewBefore`.
   */
  check(owners: readonly Ownership[], at: number, renewBefore: number): Promise<OwnerReport>;
  /** Deletes state expired at `at`; resolves to the number of sessions deleted. */
  sweep(at: number): Promise<number>;
}

/** When state last active at `activeAt` expires. */
export function expiresAt(activeAt: number, ttlS: number): number {
  return activeAt + ttlS * 1000;
}

/** Whether state whose expiry is `expires` is gone at `now` (an expiry is exclusive). */
export function isExpired(expires: number, now: number): boolean {
  return expires <= now;
}

/** How often live sessions are checked for a takeover elsewhere, and renewed. */
export interface HeartbeatPlan {
  /** Interval between checks: how soon an instance learns its connection was replaced. */
  readonly everyMs: number;
  /** A session is renewed when it was last renewed this long ago (well inside its TTL). */
  readonly renewAfterMs: number;
}

/** Checks at most every 2 s; renewals often enough that a live session never expires. */
export function heartbeatPlan(ttlS: number): HeartbeatPlan {
  const ttlMs = ttlS * 1000;
  return {
    everyMs: Math.max(100, Math.min(2000, Math.floor(ttlMs / 4))),
    renewAfterMs: Math.max(0, Math.min(60_000, Math.floor(ttlMs / 3))),
  };
}

/** Deadlines per call: connects wait on this, the rest run off the message path. */
const CLAIM_DEADLINE_MS = 2000;
const WRITE_DEADLINE_MS = 5000;

/** The store behind `database`; `ttlS` is `RELAY_RESUME_TTL_S`. */
export function sessionStore(database: Database, ttlS: number): SessionStore {
  const expiry = (at: number) => new Date(expiresAt(at, ttlS));
  const claims = new ClaimBatcher((batch) =>
    database.run(async (sql) => {
      const input = sql.json(batch.map(({ key, conn, at }, i) => ({
        i,
        user_id: key.user,
        session_id: key.session,
        conn,
        at: new Date(at).toISOString(),
        expires: expiry(at).toISOString(),
      })));
      const rows = await sql<{ i: number; generation: number; config: unknown; items: unknown }[]>`
        with input as (
          select * from jsonb_to_recordset(${input}) as r(
            i integer, user_id text, session_id text, conn uuid,
            at timestamptz, expires timestamptz)
        ), claimed as (
          insert into relay.sessions as s
            (user_id, session_id, owner_conn, owner_since, active_at, expires_at)
          select user_id, session_id, conn, at, at, expires from input
          on conflict (user_id, session_id) do update set
            generation = case when s.expires_at <= excluded.active_at
              then s.generation + 1 else s.generation end,
            config = case when s.expires_at <= excluded.active_at then null else s.config end,
            owner_conn = excluded.owner_conn,
            owner_since = excluded.owner_since,
            active_at = excluded.active_at,
            expires_at = excluded.expires_at
          returning s.user_id, s.session_id, s.generation, s.config
        ), stale as (
          -- State given up at this claim goes now (the query below reads the snapshot
          -- before it, and only the claimed generation).
          delete from relay.session_items i
          using claimed c
          where i.user_id = c.user_id and i.session_id = c.session_id
            and i.generation < c.generation
        )
        select input.i, c.generation, c.config,
          coalesce((
            select jsonb_agg(jsonb_build_array(i.item_id, i.position, i.item)
              order by i.position, i.done_at)
            from relay.session_items i
            where i.user_id = c.user_id and i.session_id = c.session_id
              and i.generation = c.generation
          ), '[]'::jsonb) as items
        from claimed c
        join input on input.user_id = c.user_id and input.session_id = c.session_id`;
      const states: ClaimedState[] = [];
      for (const row of rows) {
        states[row.i] = {
          generation: row.generation,
          config: isObject(row.config) ? row.config : null,
          items: readItems(row.items),
        };
      }
      if (states.length !== batch.length || states.includes(undefined as never)) {
        throw new Error("the claim returned no row");
      }
      return states;
    }, CLAIM_DEADLINE_MS)
  );
  return {
    claim: (key, conn, at) => claims.claim(key, conn, at),

    write: (batch) =>
      database.run(async (sql) => {
        if (batch.length === 0) return { owning: [], replaced: [], missing: [] };
        const rows = await sql<OwnerRow[]>`
          select o_conn::text as conn, o_owner::text as owner, o_found as found
          from relay.write_sessions(${sql.json(batch.map(recordJson))}, ${ttlS})`;
        return ownerReport(rows);
      }, WRITE_DEADLINE_MS),

    check: (owners, at, renewBefore) =>
      database.run(async (sql) => {
        if (owners.length === 0) return { owning: [], replaced: [], missing: [] };
        const list = sql.json(owners.map(ownerJson));
        const rows = await sql<OwnerRow[]>`
          with listed as (
            select * from jsonb_to_recordset(${list})
              as r(user_id text, session_id text, conn uuid)
          ), renewed as (
            update relay.sessions s set active_at = ${new Date(at)}, expires_at = ${expiry(at)}
            from listed r
            where s.user_id = r.user_id and s.session_id = r.session_id
              and s.owner_conn = r.conn and s.active_at < ${new Date(renewBefore)}
            returning 1
          )
          select r.conn::text as conn, s.owner_conn::text as owner, s.user_id is not null as found
          from listed r
          left join relay.sessions s on s.user_id = r.user_id and s.session_id = r.session_id`;
        return ownerReport(rows);
      }, WRITE_DEADLINE_MS),

    sweep: (at) =>
      database.run(async (sql) => {
        const rows = await sql<{ deleted: number }[]>`
          select relay.delete_expired_sessions(${new Date(at)}) as deleted`;
        return rows[0]?.deleted ?? 0;
      }, WRITE_DEADLINE_MS),
  };
}

/** One connection's claim, waiting for its statement. */
interface PendingClaim {
  readonly key: SessionKey;
  readonly conn: string;
  readonly at: number;
  readonly resolve: (state: ClaimedState) => void;
  readonly reject: (error: unknown) => void;
}

/** Most claims in one statement. */
const MAX_CLAIMS_PER_STATEMENT = 100;

/**
 * Claims go out one statement at a time: alone when none is in flight (no
 * wait), else together when the one in flight returns, so connections that
 * arrive at once share a round trip. A session claimed twice in one batch
 * waits for the next (one statement cannot take a row over twice), so the
 * later claim still wins.
 */
class ClaimBatcher {
  readonly #send: (batch: readonly PendingClaim[]) => Promise<ClaimedState[]>;
  #waiting: PendingClaim[] = [];
  #inFlight = false;

  constructor(send: (batch: readonly PendingClaim[]) => Promise<ClaimedState[]>) {
    this.#send = send;
  }

  claim(key: SessionKey, conn: string, at: number): Promise<ClaimedState> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ key, conn, at, resolve, reject });
      if (!this.#inFlight) this.#next();
    });
  }

  #next(): void {
    const batch: PendingClaim[] = [];
    const later: PendingClaim[] = [];
    const keys = new Set<string>();
    for (const claim of this.#waiting) {
      const key = `${claim.key.user}\u0000${claim.key.session}`;
      if (keys.has(key) || batch.length >= MAX_CLAIMS_PER_STATEMENT) later.push(claim);
      else {
        keys.add(key);
        batch.push(claim);
      }
    }
    this.#waiting = later;
    if (batch.length === 0) return;
    this.#inFlight = true;
    let sent: Promise<ClaimedState[]>;
    try {
      sent = this.#send(batch);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (states) => batch.forEach((claim, i) => claim.resolve(states[i]!)),
      (error) => batch.forEach((claim) => claim.reject(error)),
    ).finally(() => {
      this.#inFlight = false;
      this.#next();
    });
  }
}

interface OwnerRow {
  readonly conn: string;
  readonly owner: string | null;
  readonly found: boolean;
}

function ownerJson(owner: Ownership) {
  return { user_id: owner.user, session_id: owner.session, conn: owner.conn };
}

function ownerReport(rows: readonly OwnerRow[]): OwnerReport {
  const owning: string[] = [];
  const replaced: string[] = [];
  const missing: string[] = [];
  for (const row of rows) {
    if (!row.found) missing.push(row.conn);
    else if (row.owner === row.conn) owning.push(row.conn);
    else replaced.push(row.conn);
  }
  return { owning, replaced, missing };
}

/** A record as relay.write_sessions reads it (see the migration). */
function recordJson(record: SessionRecord): postgres.JSONValue {
  return withoutNul({
    kind: record.kind,
    user_id: record.user,
    session_id: record.session,
    conn: record.conn,
    generation: record.generation,
    at_ms: record.at,
    item_id: "id" in record ? record.id : null,
    position: "position" in record ? record.position : null,
    item: "item" in record ? json(record.item) : null,
    config: "config" in record ? json(record.config) : null,
  }) as postgres.JSONValue;
}

/**
 * `value` with every U+0000 in its strings replaced by U+FFFD: Postgres
 * text and jsonb cannot hold it, and one such record (a client may send any
 * text) would fail its batch on every retry and hold up every write behind it.
 */
export function withoutNul(value: unknown): unknown {
  if (typeof value === "string") {
    return value.includes("\0") ? value.replaceAll("\0", "\uFFFD") : value;
  }
  if (Array.isArray(value)) return value.map(withoutNul);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [withoutNul(k) as string, withoutNul(v)]),
    );
  }
  return value;
}

/** A value as postgres.js's JSON helper types it (plain JSON data, which ours is). */
function json(value: unknown): postgres.JSONValue {
  return value as postgres.JSONValue;
}

function readItems(value: unknown): RestoredItem[] {
  if (!Array.isArray(value)) return [];
  const items: RestoredItem[] = [];
  for (const entry of value) {
    if (!Array.isArray(entry)) continue;
    const [id, position, item] = entry;
    if (typeof id !== "string" || typeof position !== "number" || !isObject(item)) continue;
    items.push({ id, position, item: item as unknown as StoredItem });
  }
  return items;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
