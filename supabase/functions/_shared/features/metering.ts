/**
 * The metering feature (CONTRACT.md "Metering and budgets"): admits a
 * connection only within the user's budget (and session cap, across
 * instances), prices every upstream event that carries usage, writes it to
 * the project's Postgres through an outbox, and closes every live session of
 * a user `4002 budget_exceeded` once their spend reaches the limit: at once
 * on this instance, within `RELAY_BUDGET_REFRESH_S` for sessions elsewhere.
 *
 * The per-message cost is one short scan of each upstream text message's
 * opening (and a boolean per client message); everything that touches the
 * database runs at admission, on the refresh timer or in the outbox.
 * @module
 */
import { type Database, DatabaseError } from "../db/client.ts";
import { createLedger, type PeriodOf, type UsageRecord } from "../db/ledger.ts";
import { Outbox } from "../db/outbox.ts";
import { budgetRefusal, refusal } from "../http/refusal.ts";
import { budgetVerdict } from "../metering/budget.ts";
import { priceResponse, priceTranscription } from "../metering/cost.ts";
import { SpendBook } from "../metering/spend_book.ts";
import { relayEventId } from "../realtime/event_id.ts";
import { clientEventIdOf, meteredEventOf, sniffType } from "../realtime/metered_events.ts";
import { RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ConnectionLink } from "../relay/hooks.ts";
import type { Settings } from "../settings.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Message } from "../upstream/upstream.ts";
import type { Admission, ConnectionContext, RouteFeature } from "./feature.ts";

/** What metering needs besides its settings. */
export interface MeteringDeps {
  readonly telemetry: Telemetry;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  readonly database: Database;
  /** This instance's id, whose session leases are its own. @default a random UUID */
  readonly instance?: string;
}

/** A session lease lives this long unless renewed: a dead instance's sessions stop counting within it. */
export const LEASE_SECONDS = 30;

/** Refreshes run at least this often, so leases are renewed well within their life. */
const MAX_REFRESH_MS = 10_000;

/** How long shutdown waits for unwritten usage (the entrypoint's whole grace is 4 s). */
const SHUTDOWN_FLUSH_MS = 3000;

/** Supabase user ids are UUIDs, and so are relay.usage's. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** One live connection, as metering sees it. */
interface Live {
  readonly conn: string;
  readonly user: string;
  readonly model: string;
  link: ConnectionLink | null;
  /** From `session.updated`: `audio.input.transcription.model`. */
  transcriptionModel: string | null;
  /** Closing for the budget: no `response.create` goes through. */
  over: boolean;
  finished: boolean;
}

/** A usage row waiting for the database, with the period it was charged to. */
interface Pending {
  readonly record: UsageRecord;
  readonly periodStartMs: number;
}

/** Metering and budgets for the OpenAI route. */
export function meteringFeature(settings: Settings, deps: MeteringDeps): RouteFeature {
  const { telemetry, now } = deps;
  const period = settings.budgetPeriod;
  const defaultLimit = settings.budgetMicros;
  const cap = settings.maxUserSessions;
  const ledger = createLedger(deps.database, {
    instance: deps.instance ?? crypto.randomUUID(),
    leaseSeconds: LEASE_SECONDS,
  });
  const book = new SpendBook(period, defaultLimit, now);
  const users = new Map<string, Set<Live>>();
  /** Leases this instance holds (or is taking), by connection: what a refresh renews. */
  const leases = new Map<string, string>();
  const periodOf = (): PeriodOf => ({
    period,
    periodStartMs: book.periodStart(),
    defaultLimitMicros: defaultLimit,
  });

  let writing = 0;
  let writes = 0;
  const usage = new Outbox<Pending>({
    write: async (batch) => {
      writing++;
      try {
        const of = periodOf();
        const totals = await ledger.record(batch.map((item) => item.record), of);
        for (const { record, periodStartMs } of batch) {
          book.settle(record.user, record.costMicros, periodStartMs);
        }
        for (const [user, total] of totals) book.observe(user, total, of.periodStartMs);
        for (const user of new Set(batch.map((item) => item.record.user))) enforce(user);
      } finally {
        writing--;
        writes++;
      }
    },
    onFailure: (error, pending) => {
      telemetry.error("metering.write_failed", { error: messageOf(error), pending });
    },
  });
  // Lease releases and the recorded defaults are retried like usage; a lost
  // release is also repaired by the next refresh, which drops leases this
  // instance no longer holds.
  const releases = new Outbox<string>({ write: (conns) => ledger.release(conns) });
  const defaults = new Outbox<null>({
    write: () => ledger.recordDefaults(defaultLimit, period),
  });
  defaults.add(null);

  let timer: ReturnType<typeof setInterval> | undefined;
  let refreshing = false;
  const refreshMs = Math.min(settings.budgetRefreshS * 1000, MAX_REFRESH_MS);

  const refresh = async () => {
    if (refreshing || users.size === 0) return;
    refreshing = true;
    // A total read while a write of ours is in flight may or may not hold it;
    // such a read is skipped rather than counted twice.
    const writesBefore = writes;
    const quiet = writing === 0;
    try {
      const of = periodOf();
      const held = cap === null ? null : [...leases].map(([conn, user]) => ({ conn, user }));
      const standings = await ledger.refresh([...users.keys()], held, of);
      if (!quiet || writing > 0 || writes !== writesBefore) return;
      for (const { user, spentMicros, limitMicros } of standings) {
        book.observe(user, spentMicros, of.periodStartMs, limitMicros);
        enforce(user);
      }
    } catch {
      // The database is away: sessions go on; the next tick tries again.
    } finally {
      refreshing = false;
    }
  };

  /** Closes every live session of `user` on this instance once their budget is spent. */
  const enforce = (user: string) => {
    if (!book.exhausted(user)) return;
    for (const live of users.get(user) ?? []) closeForBudget(live);
  };

  const closeForBudget = (live: Live) => {
    if (live.link === null || live.finished || live.over) return;
    live.over = true;
    telemetry.info("budget.exceeded", {
      conn: live.conn,
      user: live.user,
      spent_micros: book.spent(live.user),
      limit_micros: book.limit(live.user),
    });
    live.link.end(RELAY_CLOSE.budgetExceeded);
  };

  const meter = (live: Live, message: string) => {
    const event = meteredEventOf(message);
    if (event === null) return;
    if (event.kind === "session") {
      if (event.transcriptionModel !== undefined) {
        live.transcriptionModel = event.transcriptionModel;
      }
      return;
    }
    const priced = event.kind === "response"
      ? priceResponse(event.usage, live.model, settings.prices)
      : priceTranscription(event.usage, live.transcriptionModel, live.model, settings.prices);
    const record: UsageRecord = {
      user: live.user,
      conn: live.conn,
      model: priced.model,
      eventId: (event.kind === "response" ? event.id : event.itemId) ?? relayEventId(),
      inputTokens: tokens(event.usage.input_tokens),
      outputTokens: tokens(event.usage.output_tokens),
      totalTokens: tokens(event.usage.total_tokens),
      costMicros: priced.costMicros,
      details: event.usage,
      at: now(),
    };
    telemetry.info("usage", {
      conn: live.conn,
      user: live.user,
      model: priced.model,
      usage: event.usage,
      cost_micros: priced.costMicros,
    });
    const periodStartMs = book.charge(live.user, priced.costMicros);
    usage.add({ record, periodStartMs });
    // After this message has reached the client: the loop delivers it when
    // this hook returns, and would drop it if the connection were ending.
    if (book.exhausted(live.user)) queueMicrotask(() => enforce(live.user));
  };

  const isLive = (user: string) => users.has(user);

  const register = (live: Live) => {
    let set = users.get(live.user);
    if (set === undefined) users.set(live.user, set = new Set());
    set.add(live);
    timer ??= setInterval(refresh, refreshMs);
  };

  const finish = (live: Live) => {
    if (live.finished) return;
    live.finished = true;
    if (leases.delete(live.conn)) releases.add(live.conn);
    const set = users.get(live.user);
    set?.delete(live);
    if (set?.size === 0) users.delete(live.user);
    // Kept a refresh interval: a reconnect meanwhile is admitted on it.
    book.prune(refreshMs, isLive);
    if (users.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const admitted = (live: Live): Admission => {
    register(live);
    return {
      hooks: {
        started: (link) => {
          live.link = link;
          if (book.exhausted(live.user)) closeForBudget(live);
        },
        fromUpstream: (data: Message) => {
          if (typeof data === "string") meter(live, data);
          return data;
        },
        fromClient: (data: Message, link: ConnectionLink) => {
          if (!live.over || typeof data !== "string") return data;
          if (sniffType(data) !== "response.create") return data;
          link.sendToClient(budgetErrorEvent(clientEventIdOf(data)));
          return null;
        },
        ended: () => finish(live),
      },
      cancel: () => finish(live),
    };
  };

  const admit = async (context: ConnectionContext) => {
    const { conn, user, model } = context;
    // A token's sub that is no Supabase user id cannot be metered.
    if (!UUID.test(user)) return refusal("forbidden");
    const live: Live = {
      conn,
      user,
      model,
      link: null,
      transcriptionModel: null,
      over: false,
      finished: false,
    };
    // Read moments ago (this user's last connection, or a refresh): no round
    // trip, as fresh as a live session elsewhere sees the budget. A session cap
    // needs its lease from the database every time.
    if (cap === null && book.readWithin(user, refreshMs)) {
      const known = budgetVerdict(book.spent(user), book.limit(user), now(), period);
      return known.ok ? admitted(live) : budgetRefusal(known.retryAfterS);
    }
    // Held from before the round trip, so a refresh meanwhile keeps the lease.
    if (cap !== null) leases.set(conn, user);
    const of = periodOf();
    let found: Awaited<ReturnType<typeof ledger.admit>>;
    try {
      found = await ledger.admit({ user, conn, maxSessions: cap }, of);
    } catch (error) {
      leases.delete(conn);
      // Why the 503 (or the fail-open admission): never the URL, never a password.
      telemetry.error("metering.unavailable", { conn, error: messageOf(error) });
      if (!settings.meteringFailOpen || !(error instanceof DatabaseError)) {
        return refusal("metering_unavailable");
      }
      // Fail open: admitted on what this instance knows; usage is written later.
      const known = budgetVerdict(book.spent(user), book.limit(user), now(), period);
      return known.ok ? admitted(live) : budgetRefusal(known.retryAfterS);
    }
    book.observe(user, found.spentMicros, of.periodStartMs, found.limitMicros);
    const verdict = budgetVerdict(book.spent(user), book.limit(user), now(), period);
    if (!verdict.ok || (cap !== null && !found.leased)) {
      if (leases.delete(conn) && found.leased) releases.add(conn);
      return verdict.ok ? refusal("too_many_connections") : budgetRefusal(verdict.retryAfterS);
    }
    return admitted(live);
  };

  return {
    admit,
    close: async () => {
      clearInterval(timer);
      timer = undefined;
      const [left] = await Promise.all([
        usage.close(SHUTDOWN_FLUSH_MS),
        releases.close(SHUTDOWN_FLUSH_MS),
        defaults.close(SHUTDOWN_FLUSH_MS),
      ]);
      if (left > 0) {
        telemetry.error("metering.write_failed", {
          error: "the relay stopped before the database took them",
          pending: left,
        });
      }
    },
  };
}

/** The in-band answer to a `response.create` from a user whose budget is spent. */
export function budgetErrorEvent(clientEventId: string | null): string {
  return JSON.stringify({
    type: "error",
    event_id: relayEventId(),
    error: {
      type: "invalid_request_error",
      code: "budget_exceeded",
      message: "Your usage budget for this period is spent; the response was not created.",
      param: null,
      event_id: clientEventId,
    },
  });
}

function tokens(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : "unknown error";
}
