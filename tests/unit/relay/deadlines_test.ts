import assert from "node:assert/strict";
import { Deadlines } from "../../../supabase/functions/_shared/relay/deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("Deadlines fires each deadline once, in time order, ties in scheduling order", async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  deadlines.after(30, () => fired.push("c"));
  deadlines.after(10, () => fired.push("a"));
  deadlines.after(10, () => fired.push("b"));
  deadlines.after(0, () => fired.push("now"));
  assert.equal(deadlines.size, 4);
  await sleep(60);
  assert.deepEqual(fired, ["now", "a", "b", "c"]);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines.cancel stops a deadline, and the last cancel leaves no timer behind", async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  const early = deadlines.after(5, () => fired.push("early"));
  const late = deadlines.after(10_000, () => fired.push("late"));
  deadlines.cancel(early);
  deadlines.cancel(early);
  await sleep(20);
  assert.deepEqual(fired, []);
  assert.equal(deadlines.size, 1);
  // The op sanitizer fails this test if a runtime timer is still pending.
  deadlines.cancel(late);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines keeps the earliest armed when a firing deadline schedules a later one", async () => {
  const deadlines = new Deadlines();
  const firedAt: Record<string, number> = {};
  const start = performance.now();
  deadlines.after(5, () => {
    firedAt.first = performance.now() - start;
    deadlines.after(200, () => (firedAt.later = performance.now() - start));
  });
  deadlines.after(40, () => (firedAt.middle = performance.now() - start));
  await sleep(260);
  assert.ok(firedAt.middle! < 150, `the 40 ms deadline fired at ${firedAt.middle} ms, not late`);
  assert.ok(firedAt.later! >= 200);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines orders a thousand random deadlines like a sort does", async () => {
  let now = 0;
  const deadlines = new Deadlines(() => now);
  const delays = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 50);
  const fired: number[] = [];
  const handles = delays.map((delay, i) => deadlines.after(delay, () => fired.push(i)));
  for (let i = 0; i < handles.length; i += 3) deadlines.cancel(handles[i]);
  now = 100;
  await sleep(5);
  const expected = delays
    .map((delay, i) => ({ delay, i }))
    .filter(({ i }) => i % 3 !== 0)
    .sort((a, b) => a.delay - b.delay || a.i - b.i)
    .map(({ i }) => i);
  assert.deepEqual(fired, expected);
});
