import assert from "node:assert/strict";
import { SpendBook } from "../../../supabase/functions/_shared/metering/spend_book.ts";

const clock = (iso: string) => {
  const state = { now: Date.parse(iso) };
  return { state, now: () => state.now };
};

Deno.test("SpendBook adds unwritten charges to the stored total until they are settled", () => {
  const { now } = clock("2026-12-01T10:00:00Z");
  const book = new SpendBook("day", 1000, now);
  book.observe("u", 400, book.periodStart());
  const period = book.charge("u", 300);
  assert.equal(book.spent("u"), 700);
  assert.equal(book.exhausted("u"), false);
  // The write's answer holds the charge: settle it and take the new total.
  book.settle("u", 300, period);
  book.observe("u", 700, period);
  assert.equal(book.spent("u"), 700);
  book.charge("u", 300);
  assert.equal(book.exhausted("u"), true, "1000 of 1000 is spent");
});

Deno.test("SpendBook keeps the highest total of a period (a stale read never lowers it)", () => {
  const { now } = clock("2026-12-01T10:00:00Z");
  const book = new SpendBook("day", null, now);
  book.observe("u", 900, book.periodStart());
  book.observe("u", 500, book.periodStart());
  assert.equal(book.spent("u"), 900);
  assert.equal(book.exhausted("u"), false, "no limit");
});

Deno.test("SpendBook starts a new period at the UTC edge, keeping an override limit", () => {
  const { state, now } = clock("2026-12-01T23:59:59Z");
  const book = new SpendBook("day", 100, now);
  const before = book.periodStart();
  book.observe("u", 5000, before, 10_000);
  book.charge("u", 50);
  assert.equal(book.spent("u"), 5050);
  state.now = Date.parse("2026-12-02T00:00:01Z");
  assert.equal(book.spent("u"), 0, "a new day");
  assert.equal(book.limit("u"), 10_000, "the override carries over");
  // A late total or settlement of yesterday changes nothing today.
  book.observe("u", 9999, before);
  book.settle("u", 50, before);
  assert.equal(book.spent("u"), 0);
});

Deno.test("SpendBook uses the default limit until the database says otherwise", () => {
  const { now } = clock("2026-12-15T10:00:00Z");
  const book = new SpendBook("month", 100, now);
  assert.equal(book.limit("u"), 100);
  book.observe("u", 0, book.periodStart(), null);
  assert.equal(book.limit("u"), null, "an unlimited override");
  assert.equal(new Date(book.periodStart()).toISOString(), "2026-12-01T00:00:00.000Z");
});

Deno.test("SpendBook forgets a user only when nothing of theirs is unwritten", () => {
  const { now } = clock("2026-12-01T10:00:00Z");
  const book = new SpendBook("day", 100, now);
  const period = book.charge("u", 10);
  book.forget("u");
  assert.equal(book.spent("u"), 10, "kept: a charge is unwritten");
  book.settle("u", 10, period);
  book.forget("u");
  assert.equal(book.size, 0);
});
