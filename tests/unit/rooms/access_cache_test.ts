import assert from "node:assert/strict";
import {
  MAX_ROOM_ACCESS_TTL_MS,
  RoomAccessCache,
} from "../../../supabase/functions/_shared/rooms/access_cache.ts";
import type { RoomAccess } from "../../../supabase/functions/_shared/db/rooms.ts";

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms), set: (ms: number) => (t = ms) };
}

Deno.test("RoomAccessCache reuses an answer for less than ttlMs, then asks again", () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now });
  assert.equal(cache.get("u1", "team:a"), undefined, "never asked");
  cache.set("u1", "team:a", "write");
  cache.set("u1", "team:b", null);
  const cases: [number, RoomAccess | null | undefined, RoomAccess | null | undefined][] = [
    [0, "write", null],
    [29_999, "write", null],
    [1, undefined, undefined], // 30 000 ms old: too old
  ];
  for (const [step, a, b] of cases) {
    time.advance(step);
    assert.equal(cache.get("u1", "team:a"), a, `team:a after +${step}`);
    assert.equal(cache.get("u1", "team:b"), b, `team:b (no access is an answer) after +${step}`);
  }
  assert.equal(cache.size, 0, "expired answers are dropped when met");
});

Deno.test("RoomAccessCache keeps answers per (user, room), unambiguously", () => {
  const cache = new RoomAccessCache({ now: clock().now });
  cache.set("u1", "r", "read");
  cache.set("u2", "r", "write");
  cache.set("u1", "s", null);
  // "ab" + "c" and "a" + "bc" must not meet.
  cache.set("ab", "c", "write");
  assert.equal(cache.get("u1", "r"), "read");
  assert.equal(cache.get("u2", "r"), "write");
  assert.equal(cache.get("u1", "s"), null);
  assert.equal(cache.get("u2", "s"), undefined);
  assert.equal(cache.get("a", "bc"), undefined);
  cache.delete("u1", "r");
  assert.equal(cache.get("u1", "r"), undefined);
  assert.equal(cache.get("u2", "r"), "write");
  cache.clear();
  assert.equal(cache.size, 0);
});

Deno.test("RoomAccessCache holds at most maxEntries, dropping the oldest first", () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now, maxEntries: 3 });
  for (const room of ["a", "b", "c", "d"]) {
    cache.set("u", room, "read");
    time.advance(1);
  }
  assert.equal(cache.size, 3);
  assert.equal(cache.get("u", "a"), undefined, "the oldest went");
  assert.equal(cache.get("u", "d"), "read");
  // Storing again makes an answer the newest.
  cache.set("u", "b", "write");
  cache.set("u", "e", "read");
  assert.deepEqual(["b", "c", "d", "e"].map((r) => cache.get("u", r)), [
    "write",
    undefined,
    "read",
    "read",
  ]);
});

Deno.test("RoomAccessCache drops expired answers when it stores, so a quiet cache shrinks", () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now, ttlMs: 1000 });
  for (let i = 0; i < 50; i++) cache.set("u", `r${i}`, "read");
  time.advance(1000);
  cache.set("u", "fresh", "write");
  assert.equal(cache.size, 1);
});

Deno.test("RoomAccessCache does not trust an answer when the clock went back", () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now });
  cache.set("u", "r", "write");
  time.advance(-1);
  assert.equal(cache.get("u", "r"), undefined);
});

Deno.test("RoomAccessCache refuses a ttlMs beyond the contract's 30 s, and bad bounds", () => {
  assert.equal(MAX_ROOM_ACCESS_TTL_MS, 30_000);
  for (const ttlMs of [30_001, -1, Number.NaN, Infinity]) {
    assert.throws(() => new RoomAccessCache({ ttlMs }), RangeError, String(ttlMs));
  }
  for (const maxEntries of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => new RoomAccessCache({ maxEntries }), RangeError, String(maxEntries));
  }
  // ttlMs 0: nothing is reused.
  const cache = new RoomAccessCache({ ttlMs: 0, now: clock().now });
  cache.set("u", "r", "write");
  assert.equal(cache.get("u", "r"), undefined);
});

Deno.test("RoomAccessCache.lookup loads once, shares a load under way, and reuses the answer", async () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now });
  let loads = 0;
  let release!: (access: RoomAccess | null) => void;
  const load = () => {
    loads++;
    return new Promise<RoomAccess | null>((resolve) => (release = resolve));
  };
  const first = cache.lookup("u", "r", load);
  const second = cache.lookup("u", "r", load);
  await Promise.resolve();
  assert.equal(loads, 1, "joins that arrive together share one round trip");
  release("read");
  assert.deepEqual(await Promise.all([first, second]), ["read", "read"]);
  assert.equal(await cache.lookup("u", "r", load), "read");
  assert.equal(loads, 1, "reused");
  time.advance(30_000);
  const third = cache.lookup("u", "r", load);
  await Promise.resolve();
  release(null);
  assert.equal(await third, null);
  assert.equal(loads, 2, "asked again once too old");
});

Deno.test("RoomAccessCache.lookup counts an answer's age from when it was asked for", async () => {
  const time = clock();
  const cache = new RoomAccessCache({ now: time.now });
  let release!: (access: RoomAccess | null) => void;
  const pending = cache.lookup(
    "u",
    "r",
    () => new Promise<RoomAccess | null>((resolve) => (release = resolve)),
  );
  await Promise.resolve();
  time.advance(20_000); // a slow database
  release("write");
  assert.equal(await pending, "write");
  time.advance(9_999);
  assert.equal(cache.get("u", "r"), "write");
  time.advance(1);
  assert.equal(cache.get("u", "r"), undefined);
});

Deno.test("RoomAccessCache.lookup keeps no error, and a clear() drops a load's late answer", async () => {
  const cache = new RoomAccessCache({ now: clock().now });
  const failure = new Error("database down");
  await assert.rejects(cache.lookup("u", "r", () => Promise.reject(failure)), failure);
  await assert.rejects(
    cache.lookup("u", "r", () => {
      throw failure;
    }),
    failure,
    "a load that throws at once rejects too",
  );
  assert.equal(cache.get("u", "r"), undefined);
  assert.equal(await cache.lookup("u", "r", () => Promise.resolve("read")), "read");

  let release!: (access: RoomAccess | null) => void;
  const pending = cache.lookup(
    "u",
    "s",
    () => new Promise<RoomAccess | null>((resolve) => (release = resolve)),
  );
  await Promise.resolve();
  cache.clear();
  release("write");
  assert.equal(await pending, "write", "its callers still get the answer");
  assert.equal(cache.get("u", "s"), undefined, "but it is not kept");
});
