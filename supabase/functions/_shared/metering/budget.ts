/**
 * Budgets, as pure functions: the UTC period an instant falls in, and whether
 * a user's spend in it leaves room, with `Retry-After` when it does not
 * (CONTRACT.md "Metering and budgets", "Budgets").
 * @module
 */
import type { BudgetPeriod } from "../settings.ts";

/** The start of the UTC day or month that `nowMs` falls in, in ms since the epoch. */
export function periodStart(nowMs: number, period: BudgetPeriod): number {
  const at = new Date(nowMs);
  return period === "day"
    ? Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate())
    : Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
}

/** The start of the next UTC day or month after the one `nowMs` falls in. */
export function nextPeriodStart(nowMs: number, period: BudgetPeriod): number {
  const at = new Date(nowMs);
  // Date.UTC rolls day 32 and month 12 over into the next month and year.
  return period === "day"
    ? Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 1)
    : Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1);
}

/** Whole seconds until the period resets: rounded up, at least 1. */
export function retryAfterSeconds(nowMs: number, period: BudgetPeriod): number {
  return Math.max(1, Math.ceil((nextPeriodStart(nowMs, period) - nowMs) / 1000));
}

/** Whether a spend has reached its limit; `null` is no limit. */
export function budgetSpent(spentMicros: number, limitMicros: number | null): boolean {
  return limitMicros !== null && spentMicros >= limitMicros;
}

/** A user's standing for the period. */
export type BudgetVerdict =
  | { readonly ok: true; readonly remainingMicros: number | null }
  | { readonly ok: false; readonly retryAfterS: number };

/**
 * Whether a user may go on: refused once the period's spend has reached the
 * limit (a limit of 0 refuses everything), with the seconds until it resets.
 */
export function budgetVerdict(
  spentMicros: number,
  limitMicros: number | null,
  nowMs: number,
  period: BudgetPeriod,
): BudgetVerdict {
  if (limitMicros === null) return { ok: true, remainingMicros: null };
  if (budgetSpent(spentMicros, limitMicros)) {
    return { ok: false, retryAfterS: retryAfterSeconds(nowMs, period) };
  }
  return { ok: true, remainingMicros: limitMicros - spentMicros };
}
