import assert from "node:assert/strict";
import { TokenBucket } from "../../../supabase/functions/_shared/relay/rate_limit.ts";

Deno.test("TokenBucket allows a burst of twice the rate, then the rate", () => {
  let now = 0;
  const bucket = new TokenBucket(10, () => now);
  let allowed = 0;
  for (let i = 0; i < 30; i++) if (bucket.take()) allowed++;
  assert.equal(allowed, 20, "burst is 2x the rate");
  assert.equal(bucket.take(), false);
  now += 100; // one token back at 10/s
  assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
  now += 10_000; // refills only up to capacity
  allowed = 0;
  for (let i = 0; i < 30; i++) if (bucket.take()) allowed++;
  assert.equal(allowed, 20);
});

Deno.test("TokenBucket sustains exactly the rate over time", () => {
  let now = 0;
  const bucket = new TokenBucket(200, () => now);
  for (let i = 0; i < 400; i++) assert.ok(bucket.take());
  let allowed = 0;
  for (let ms = 1; ms <= 1000; ms++) {
    now = ms;
    if (bucket.take()) allowed++;
  }
  assert.equal(allowed, 200);
});
