/**
 * What one instance knows of each user's spend in the current period: the
 * last total the database reported, plus what this instance metered and has
 * not written yet. So a budget holds at once on the instance whose event
 * crosses it, and while the database is away; and a user who reconnects
 * within the refresh interval (a resumed session, a dropped socket) is
 * admitted on what this instance read moments ago, with no round trip.
 * @module
 */
import type { BudgetPeriod } from "../settings.ts";
import { budgetSpent, periodStart } from "./budget.ts";

interface Entry {
  periodStart: number;
  /** The highest period total the database reported (spend only grows within a period). */
  stored: number;
  /** Metered here, in this period, not yet confirmed written. */
  unwritten: number;
  limit: number | null;
  /** When the database last reported this user's total and limit (`-Infinity`: never). */
  readAt: number;
}

/** Per-user spend for the current period, rolled over at the period's UTC edge. */
export class SpendBook {
  readonly #period: BudgetPeriod;
  readonly #defaultLimit: number | null;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(period: BudgetPeriod, defaultLimit: number | null, now: () => number) {
    this.#period = period;
    this.#defaultLimit = defaultLimit;
    this.#now = now;
  }

  /** The start of the current period, in ms since the epoch. */
  periodStart(): number {
    return periodStart(this.#now(), this.#period);
  }

  #entry(user: string): Entry {
    const start = this.periodStart();
    const entry = this.#entries.get(user);
    if (entry && entry.periodStart === start) return entry;
    // A new period: nothing spent yet; an override limit carries over.
    const fresh = {
      periodStart: start,
      stored: 0,
      unwritten: 0,
      limit: entry === undefined ? this.#defaultLimit : entry.limit,
      readAt: -Infinity,
    };
    this.#entries.set(user, fresh);
    return fresh;
  }

  /**
   * A total read from the database for the period starting at
   * `periodStartMs` (ignored when that period is over), and the user's limit
   * when the read included it.
   */
  observe(
    user: string,
    storedMicros: number,
    periodStartMs: number,
    limitMicros?: number | null,
  ): void {
    const entry = this.#entry(user);
    if (limitMicros !== undefined) entry.limit = limitMicros;
    if (entry.periodStart !== periodStartMs) return;
    entry.stored = Math.max(entry.stored, storedMicros);
    if (limitMicros !== undefined) {
      entry.readAt = this.#now();
      // Kept in the order of their reads, so pruning finds the oldest first.
      this.#entries.delete(user);
      this.#entries.set(user, entry);
    }
  }

  /** Whether the user's total and limit for this period were read within `maxAgeMs`. */
  readWithin(user: string, maxAgeMs: number): boolean {
    const entry = this.#entries.get(user);
    return entry !== undefined && entry.periodStart === this.periodStart() &&
      this.#now() - entry.readAt <= maxAgeMs;
  }

  /** Adds a metered cost not yet written; returns the period it counts in. */
  charge(user: string, costMicros: number): number {
    const entry = this.#entry(user);
    entry.unwritten += costMicros;
    return entry.periodStart;
  }

  /** A charge of the period starting at `periodStartMs` was written (so a reported total holds it). */
  settle(user: string, costMicros: number, periodStartMs: number): void {
    const entry = this.#entries.get(user);
    if (entry === undefined || entry.periodStart !== periodStartMs) return;
    entry.unwritten = Math.max(0, entry.unwritten - costMicros);
  }

  /** The user's spend this period as far as this instance knows. */
  spent(user: string): number {
    const entry = this.#entry(user);
    return entry.stored + entry.unwritten;
  }

  /** The user's limit (`null`: unlimited). */
  limit(user: string): number | null {
    return this.#entry(user).limit;
  }

  /** Whether the user's budget for this period is spent. */
  exhausted(user: string): boolean {
    const entry = this.#entry(user);
    return budgetSpent(entry.stored + entry.unwritten, entry.limit);
  }

  /**
   * Drops, oldest read first, the users with nothing pending whose last read
   * is older than `maxAgeMs` and for whom `keep` is false (their next
   * admission reads the database again).
   */
  prune(maxAgeMs: number, keep: (user: string) => boolean): void {
    const now = this.#now();
    for (const [user, entry] of this.#entries) {
      if (now - entry.readAt <= maxAgeMs) return;
      if (entry.unwritten === 0 && !keep(user)) this.#entries.delete(user);
    }
  }

  /** Users known. */
  get size(): number {
    return this.#entries.size;
  }
}
