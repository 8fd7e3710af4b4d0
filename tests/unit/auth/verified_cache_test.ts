import assert from "node:assert/strict";
import {
  isJwksVerified,
  VerifiedTokenCache,
} from "../../../supabase/functions/_shared/auth/verified_cache.ts";

const identity = (exp: number | null) => ({ user: "u", role: "authenticated", exp, claims: {} });

Deno.test("VerifiedTokenCache trusts a token until its exp or the max age, whichever is first", () => {
  let now = 1_000_000;
  const cache = new VerifiedTokenCache({ maxAgeMs: 60_000, now: () => now });
  cache.set("short", identity(1_000 + 30)); // exp in 30 s
  cache.set("long", identity(1_000 + 3600)); // exp in an hour
  cache.set("no-exp", identity(null));
  assert.equal(cache.size, 2, "a token without exp is not kept");
  now += 29_000;
  assert.deepEqual(cache.get("short"), identity(1_030));
  now += 1_000;
  assert.equal(cache.get("short"), undefined, "expired at exp");
  assert.deepEqual(cache.get("long"), identity(4_600));
  now += 30_000;
  assert.equal(cache.get("long"), undefined, "expired at the max age");
  assert.equal(cache.size, 0);
});

Deno.test("VerifiedTokenCache drops the oldest entry past maxEntries", () => {
  const cache = new VerifiedTokenCache({ maxEntries: 2, now: () => 0 });
  cache.set("a", identity(100));
  cache.set("b", identity(100));
  cache.set("a", identity(100)); // refreshed: now the newest
  cache.set("c", identity(100));
  assert.equal(cache.size, 2);
  assert.equal(cache.get("b"), undefined);
  assert.ok(cache.get("a") && cache.get("c"));
});

Deno.test("isJwksVerified caches only asymmetric tokens with a key id", () => {
  const table: [Record<string, unknown> | null, boolean][] = [
    [{ alg: "ES256", kid: "k" }, true],
    [{ alg: "RS256", kid: "k" }, true],
    [{ alg: "EdDSA", kid: "k" }, true],
    [{ alg: "ES256" }, false],
    [{ alg: "HS256", kid: "k" }, false],
    [{ alg: "none", kid: "k" }, false],
    [{ alg: "ES256x", kid: "k" }, false],
    [null, false],
  ];
  for (const [header, expected] of table) {
    assert.equal(isJwksVerified(header), expected, JSON.stringify(header));
  }
});
