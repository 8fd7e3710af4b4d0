import assert from "node:assert/strict";
import {
  budgetSpent,
  budgetVerdict,
  nextPeriodStart,
  periodStart,
  retryAfterSeconds,
} from "../../../supabase/functions/_shared/metering/budget.ts";
import type { BudgetPeriod } from "../../../supabase/functions/_shared/settings.ts";

const at = (iso: string) => Date.parse(iso);

Deno.test("periodStart and nextPeriodStart are UTC day and month edges", () => {
  const table: [string, BudgetPeriod, string, string][] = [
    ["2026-12-01T21:57:14.250Z", "day", "2026-12-01T00:00:00.000Z", "2026-12-02T00:00:00.000Z"],
    ["2026-12-01T00:00:00.000Z", "day", "2026-12-01T00:00:00.000Z", "2026-12-02T00:00:00.000Z"],
    ["2026-12-01T23:59:59.999Z", "day", "2026-12-01T00:00:00.000Z", "2026-12-02T00:00:00.000Z"],
    ["2026-12-31T23:59:59.999Z", "day", "2026-12-31T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ["2028-02-28T12:00:00.000Z", "day", "2028-02-28T00:00:00.000Z", "2028-02-29T00:00:00.000Z"],
    ["2026-12-15T08:00:00.000Z", "month", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ["2027-01-31T23:59:59.999Z", "month", "2027-01-01T00:00:00.000Z", "2027-02-01T00:00:00.000Z"],
    ["2027-02-01T00:00:00.000Z", "month", "2027-02-01T00:00:00.000Z", "2027-03-01T00:00:00.000Z"],
    ["2028-02-29T10:00:00.000Z", "month", "2028-02-01T00:00:00.000Z", "2028-03-01T00:00:00.000Z"],
  ];
  for (const [now, period, start, next] of table) {
    assert.equal(new Date(periodStart(at(now), period)).toISOString(), start, `${now} ${period}`);
    assert.equal(
      new Date(nextPeriodStart(at(now), period)).toISOString(),
      next,
      `${now} ${period}`,
    );
  }
});

Deno.test("retryAfterSeconds counts whole seconds up to the reset, at least 1", () => {
  const table: [string, BudgetPeriod, number][] = [
    ["2026-12-01T00:00:00.000Z", "day", 86_400],
    ["2026-12-01T23:59:59.000Z", "day", 1],
    ["2026-12-01T23:59:59.999Z", "day", 1],
    ["2026-12-01T23:59:58.001Z", "day", 2],
    ["2026-12-01T12:00:00.000Z", "day", 43_200],
    ["2026-12-31T23:59:30.000Z", "month", 30],
    ["2027-02-01T00:00:00.000Z", "month", 28 * 86_400],
    ["2028-02-01T00:00:00.000Z", "month", 29 * 86_400],
    ["2026-11-30T23:59:59.500Z", "month", 1],
  ];
  for (const [now, period, seconds] of table) {
    assert.equal(retryAfterSeconds(at(now), period), seconds, `${now} ${period}`);
  }
});

Deno.test("budgetSpent holds once the spend reaches the limit", () => {
  const table: [number, number | null, boolean][] = [
    [0, null, false],
    [10 ** 12, null, false],
    [0, 0, true],
    [999_999, 1_000_000, false],
    [1_000_000, 1_000_000, true],
    [1_000_001, 1_000_000, true],
  ];
  for (const [spent, limit, expected] of table) {
    assert.equal(budgetSpent(spent, limit), expected, `${spent} of ${limit}`);
  }
});

Deno.test("budgetVerdict refuses a spent budget with Retry-After, else gives what remains", () => {
  const now = at("2026-12-01T23:00:00.000Z");
  assert.deepEqual(budgetVerdict(5, null, now, "day"), { ok: true, remainingMicros: null });
  assert.deepEqual(budgetVerdict(400_000, 1_000_000, now, "day"), {
    ok: true,
    remainingMicros: 600_000,
  });
  assert.deepEqual(budgetVerdict(1_000_000, 1_000_000, now, "day"), {
    ok: false,
    retryAfterS: 3600,
  });
  assert.deepEqual(budgetVerdict(0, 0, now, "month"), {
    ok: false,
    retryAfterS: 30 * 86_400 + 3600,
  });
  assert.deepEqual(budgetVerdict(2, 1, at("2026-12-01T00:00:00.000Z"), "month"), {
    ok: false,
    retryAfterS: 31 * 86_400,
  });
});
