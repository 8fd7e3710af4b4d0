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

Deno.test("SpendBook knows how recent a read is, and prunes stale reads with nothing pending", () => {
  const { state, now } = clock("2026-12-01T10:00:00Z");
  const book = new SpendBook("day", 100, now);
  book.observe("a", 10, book.periodStart(), 100);
  assert.equal(book.readWithin("a", 5000), true);
  book.observe("b", 0, book.periodStart());
  assert.equal(book.readWithin("b", 5000), false, "a total without the limit is not a standing");
  const period = book.charge("b", 10);
  state.now += 2000;
  book.observe("c", 0, book.periodStart(), null);
  state.now += 4000;
  assert.equal(book.readWithin("a", 5000), false, "6 s old");
  assert.equal(book.readWithin("c", 5000), true, "4 s old");
  book.prune(5000, (user) => user === "a");
  assert.equal(book.size, 3, "a is kept (live), b has a charge unwritten, c is recent");
  book.settle("b", 10, period);
  book.prune(5000, () => false);
  assert.equal(book.size, 1, "a and b go; c stays");
  state.now += 2000;
  book.prune(5000, () => false);
  assert.equal(book.size, 0);
  book.observe("d", 0, book.periodStart(), 100);
  state.now = Date.parse("2026-12-02T00:00:01Z");
  assert.equal(
    book.readWithin("d", 10 * 86_400_000),
    false,
    "a read of yesterday is no standing today",
  );
});
