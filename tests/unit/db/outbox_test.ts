import assert from "node:assert/strict";
import { Outbox } from "../../../supabase/functions/_shared/db/outbox.ts";
import { sleep, until } from "../../helpers/ws_client.ts";

/** A writer that records every batch it is given and fails while `down` is set. */
function writer() {
  const attempts: number[][] = [];
  const written: number[] = [];
  const state = {
    down: false,
    attempts,
    written,
    write: (batch: readonly number[]) => {
      attempts.push([...batch]);
      if (state.down) return Promise.reject(new Error("database away"));
      written.push(...batch);
      return Promise.resolve();
    },
  };
  return state;
}

Deno.test("Outbox writes records in order, a burst in one batch, batches of batchSize", async () => {
  const w = writer();
  const outbox = new Outbox<number>({ write: w.write, batchSize: 3 });
  for (let i = 1; i <= 7; i++) outbox.add(i);
  assert.equal(outbox.pending, 7);
  await until(() => outbox.pending === 0, 2000, "written");
  assert.deepEqual(w.written, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(w.attempts, [[1, 2, 3], [4, 5, 6], [7]]);
  assert.equal(await outbox.close(100), 0);
});

Deno.test("Outbox retries a failed batch with backoff and reports each failure", async () => {
  const w = writer();
  const failures: number[] = [];
  const outbox = new Outbox<number>({
    write: w.write,
    onFailure: (_, pending) => failures.push(pending),
    baseDelayMs: 20,
    maxDelayMs: 40,
  });
  w.down = true;
  outbox.add(1);
  outbox.add(2);
  await until(() => failures.length >= 3, 2000, "three failures");
  assert.deepEqual(w.written, []);
  assert.ok(failures.every((pending) => pending === 2), "both records still pending");
  w.down = false;
  await until(() => outbox.pending === 0, 2000, "written after recovery");
  assert.deepEqual(w.written, [1, 2]);
  // Every attempt carried the same batch, in order: the failed batch stays at the head.
  assert.ok(w.attempts.every((batch) => batch.join() === "1,2"));
  assert.equal(await outbox.close(100), 0);
});

Deno.test("Outbox loses nothing added while the database is away, and keeps the order", async () => {
  const w = writer();
  const outbox = new Outbox<number>({ write: w.write, baseDelayMs: 10, maxDelayMs: 20 });
  w.down = true;
  for (let i = 1; i <= 250; i++) {
    outbox.add(i);
    if (i % 50 === 0) await sleep(15);
  }
  await sleep(30);
  assert.equal(outbox.pending, 250);
  w.down = false;
  await until(() => outbox.pending === 0, 3000, "all written");
  assert.deepEqual(w.written, Array.from({ length: 250 }, (_, i) => i + 1));
  assert.equal(await outbox.close(100), 0);
});

Deno.test("Outbox sends a batch again when its answer was lost (writers must be idempotent)", async () => {
  const seen = new Map<number, number>();
  let lose = 1;
  const stored = new Set<number>();
  const outbox = new Outbox<number>({
    write: (batch) => {
      for (const n of batch) {
        seen.set(n, (seen.get(n) ?? 0) + 1);
        stored.add(n); // like insert ... on conflict do nothing
      }
      return lose-- > 0 ? Promise.reject(new Error("connection lost")) : Promise.resolve();
    },
    baseDelayMs: 10,
  });
  outbox.add(1);
  outbox.add(2);
  await until(() => outbox.pending === 0, 2000, "written");
  assert.deepEqual([...seen.values()], [2, 2], "sent twice");
  assert.deepEqual([...stored], [1, 2], "stored once");
  assert.equal(await outbox.close(100), 0);
});

Deno.test("Outbox.flush writes everything pending at once instead of waiting for the backoff", async () => {
  const w = writer();
  const outbox = new Outbox<number>({ write: w.write, baseDelayMs: 60_000, maxDelayMs: 60_000 });
  w.down = true;
  outbox.add(1);
  await until(() => w.attempts.length === 1, 1000, "first attempt");
  w.down = false;
  const started = Date.now();
  assert.equal(await outbox.flush(2000), 0);
  assert.ok(Date.now() - started < 1000, "did not wait out the minute-long backoff");
  assert.deepEqual(w.written, [1]);
  assert.equal(await outbox.close(100), 0);
});

Deno.test("Outbox.flush gives up at its deadline and says how many are left", async () => {
  const w = writer();
  const outbox = new Outbox<number>({ write: w.write, baseDelayMs: 20, maxDelayMs: 50 });
  w.down = true;
  outbox.add(1);
  outbox.add(2);
  outbox.add(3);
  const started = Date.now();
  const left = await outbox.flush(300);
  const took = Date.now() - started;
  assert.equal(left, 3);
  assert.ok(took >= 280 && took < 1000, `flush took ${took} ms`);
  // close stops the retries: the sanitizers fail this test if a timer is left.
  assert.equal(await outbox.close(50), 3);
  const attempts = w.attempts.length;
  await sleep(100);
  assert.equal(w.attempts.length, attempts, "no attempt after close");
});

Deno.test("Outbox.flush waits for a write already in flight", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const written: number[] = [];
  const outbox = new Outbox<number>({
    write: async (batch) => {
      await gate;
      written.push(...batch);
    },
  });
  outbox.add(1);
  await sleep(10);
  const flushed = outbox.flush(2000);
  setTimeout(release, 50);
  assert.equal(await flushed, 0);
  assert.deepEqual(written, [1]);
  assert.equal(await outbox.close(100), 0);
});
