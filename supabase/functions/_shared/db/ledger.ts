/**
 * The metering ledger: every SQL statement metering sends, one round trip
 * each (the schema is supabase/migrations/20261201000100_relay_metering.sql).
 * Nothing here runs on the per-message path: records are written in batches
 * from an outbox, admissions once per connection, refreshes on a timer.
 * @module
 */
import type { Usage } from "../metering/cost.ts";
import type { BudgetPeriod } from "../settings.ts";
import type { Database } from "./client.ts";

/** One metered event, as written to `relay.usage`. */
export interface UsageRecord {
  readonly user: string;
  readonly conn: string;
  readonly model: string;
  /** The `response.id`, or the transcribed item's id. */
  readonly eventId: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly totalTokens: number;
  readonly costMicros: number;
  /** The usage object as OpenAI sent it. */
  readonly details: Usage;
  /** When the relay saw the event, in ms since the epoch: it decides the period it counts in. */
  readonly at: number;
}

/** The budget period a statement is about. */
export interface PeriodOf {
  readonly period: BudgetPeriod;
  /** Start of the period, ms since the epoch (see metering/budget.ts). */
  readonly periodStartMs: number;
  /** The relay's default limit (`RELAY_BUDGET_USD`); `null`: unlimited. */
  readonly defaultLimitMicros: number | null;
}

/** What admission found. */
export interface AdmitResult {
  readonly spentMicros: number;
  /** The user's limit (their `relay.budgets` row, else the default); `null`: unlimited. */
  readonly limitMicros: number | null;
  /** Whether a session lease was taken (always `false` without a session cap or within budget refusal). */
  readonly leased: boolean;
  /** Live sessions of the user across instances, this one included when leased; `null` without a cap. */
  readonly sessions: number | null;
}

/** One user's standing, as a refresh reads it. */
export interface Standing {
  readonly user: string;
  readonly spentMicros: number;
  readonly limitMicros: number | null;
}

/** A lease this instance holds: its connection and user. */
export interface HeldLease {
  readonly conn: string;
  readonly user: string;
}

/** The SQL of metering, each call one statement. */
export interface Ledger {
  /**
   * Writes usage rows (a retried batch is counted once: the primary key is
   * `(conn, event_id)`) and adds them to the users' spend in the same
   * statement; resolves to each user's new spend in `of`'s period (users
   * whose rows were all written before are absent).
   */
  record(batch: readonly UsageRecord[], of: PeriodOf): Promise<Map<string, number>>;
  /**
   * The user's spend and limit, and, when `maxSessions` is given and the
   * budget is not spent, a lease on one of their live sessions across instances.
   */
  admit(
    request: { user: string; conn: string; maxSessions: number | null },
    of: PeriodOf,
  ): Promise<AdmitResult>;
  /**
   * Every listed user's spend and limit; with `leases` (a session cap is
   * set) also renews this instance's leases, drops the ones it no longer
   * holds, and clears long-dead ones.
   */
  refresh(
    users: readonly string[],
    leases: readonly HeldLease[] | null,
    of: PeriodOf,
  ): Promise<Standing[]>;
  /** Ends the leases of connections that are over. */
  release(conns: readonly string[]): Promise<void>;
  /** Records the relay's default limit and period for `public.relay_usage_summary()`. */
  recordDefaults(limitMicros: number | null, period: BudgetPeriod): Promise<void>;
}

/** Options for {@linkcode createLedger}. */
export interface LedgerOptions {
  /** This instance's id: whose leases are whose. */
  readonly instance: string;
  /** How long a lease lives unless renewed. @default 30 */
  readonly leaseSeconds?: number;
  /** Deadline of an admission, which a client waits for. @default 2000 */
  readonly admitDeadlineMs?: number;
  /** Deadline of background statements (writes, refreshes). @default 5000 */
  readonly backgroundDeadlineMs?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
/** postgres.js returns `bigint` columns as strings; micros stay well within 2^53. */
const micros = (value: unknown) => Number(value);
const limitOf = (value: unknown) => value === null ? null : Number(value);

/** The metering ledger on `db`. */
export function createLedger(db: Database, options: LedgerOptions): Ledger {
  const instance = options.instance;
  const leaseSeconds = options.leaseSeconds ?? 30;
  const admitDeadline = options.admitDeadlineMs ?? 2000;
  const background = options.backgroundDeadlineMs ?? 5000;
  return {
    record: async (batch, of) => {
      const rows = batch.map((record) => ({
        user_id: record.user,
        conn: record.conn,
        model: record.model,
        event_id: record.eventId,
        input_tokens: record.inputTokens,
        output_tokens: record.outputTokens,
        total_tokens: record.totalTokens,
        cost_micros: record.costMicros,
        details: record.details,
        created_at: iso(record.at),
      }));
      const result = await db.run((sql) =>
        sql`
          with rows as (
            select *
              from jsonb_to_recordset(${sql.json(rows as never)}::jsonb) as r(
                user_id uuid, conn uuid, model text, event_id text, input_tokens integer,
                output_tokens integer, total_tokens integer, cost_micros bigint, details jsonb,
                created_at timestamptz)
          ), inserted as (
            insert into relay.usage (user_id, conn, model, event_id, input_tokens, output_tokens,
                                     total_tokens, cost_micros, details, created_at)
              select user_id, conn, model, event_id, input_tokens, output_tokens, total_tokens,
                     cost_micros, details, created_at
                from rows
              on conflict (conn, event_id) do nothing
              returning user_id, cost_micros, created_at
          ), spend as (
            insert into relay.spend as s (user_id, period, period_start, spent_micros)
              select i.user_id, p.period, date_trunc(p.period, i.created_at, 'UTC'),
                     sum(i.cost_micros)
                from inserted i cross join (values ('day'), ('month')) as p(period)
                group by 1, 2, 3
              on conflict (user_id, period, period_start)
                do update set spent_micros = s.spent_micros + excluded.spent_micros
              returning s.user_id, s.period, s.period_start, s.spent_micros
          )
          select user_id, spent_micros
            from spend
            where period = ${of.period} and period_start = ${iso(of.periodStartMs)}::timestamptz
        `, background);
      return new Map(result.map((row) => [String(row.user_id), micros(row.spent_micros)]));
    },

    admit: async ({ user, conn, maxSessions }, of) => {
      const [row] = await db.run((sql) =>
        sql`
          select * from relay.admit(
            ${user}::uuid, ${conn}::uuid, ${instance}::uuid, ${of.period},
            ${iso(of.periodStartMs)}::timestamptz, ${of.defaultLimitMicros}::bigint,
            ${maxSessions}::integer, ${leaseSeconds}::integer)
        `, admitDeadline);
      if (row === undefined) throw new Error("relay.admit returned no row");
      return {
        spentMicros: micros(row.spent_micros),
        limitMicros: limitOf(row.limit_micros),
        leased: row.leased === true,
        sessions: row.sessions === null ? null : Number(row.sessions),
      };
    },

    refresh: async (users, leases, of) => {
      const held = leases ?? [];
      const result = await db.run((sql) =>
        sql`
          select * from relay.refresh(
            ${instance}::uuid,
            ${toArray(users)}::uuid[],
            ${toArray(held.map((lease) => lease.conn))}::uuid[],
            ${toArray(held.map((lease) => lease.user))}::uuid[],
            ${of.period}, ${iso(of.periodStartMs)}::timestamptz, ${of.defaultLimitMicros}::bigint,
            ${leases === null ? null : leaseSeconds}::integer)
        `, background);
      return result.map((row) => ({
        user: String(row.user_id),
        spentMicros: micros(row.spent_micros),
        limitMicros: limitOf(row.limit_micros),
      }));
    },

    release: async (conns) => {
      await db.run(
        (sql) => sql`delete from relay.leases where conn = any(${toArray(conns)}::uuid[])`,
        background,
      );
    },

    recordDefaults: async (limitMicros, period) => {
      await db.run((sql) =>
        sql`
          insert into relay.defaults (singleton, limit_micros, period, updated_at)
            values (true, ${limitMicros}::bigint, ${period}, now())
            on conflict (singleton) do update
              set limit_micros = excluded.limit_micros, period = excluded.period,
                  updated_at = excluded.updated_at
        `, background);
    },
  };
}

/**
 * A Postgres array literal of uuids. Sent as text and cast in SQL, so the
 * driver needs no array type information (which it would otherwise fetch).
 */
function toArray(values: readonly string[]): string {
  for (const value of values) {
    if (!/^[0-9a-f-]{36}$/i.test(value)) throw new TypeError("not a uuid");
  }
  return `{${values.join(",")}}`;
}
