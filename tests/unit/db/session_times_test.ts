import assert from "node:assert/strict";
import {
  expiresAt,
  heartbeatPlan,
  isExpired,
  withoutNul,
} from "../../../supabase/functions/_shared/db/sessions.ts";

Deno.test("expiresAt is the last activity plus the TTL, and isExpired is true from that instant", () => {
  const active = Date.UTC(2026, 11, 1, 12, 0, 0);
  const table: [ttlS: number, nowOffsetMs: number, expired: boolean][] = [
    [900, 0, false],
    [900, 899_999, false],
    [900, 900_000, true],
    [900, 900_001, true],
    [1, 999, false],
    [1, 1000, true],
  ];
  for (const [ttlS, offset, expired] of table) {
    const expires = expiresAt(active, ttlS);
    assert.equal(expires, active + ttlS * 1000);
    assert.equal(isExpired(expires, active + offset), expired, `${ttlS} s at +${offset} ms`);
  }
});

Deno.test("heartbeatPlan checks every 2 s at most and renews well inside the TTL", () => {
  const table: [ttlS: number, everyMs: number, renewAfterMs: number][] = [
    [900, 2000, 60_000],
    [60, 2000, 20_000],
    [6, 1500, 2000],
    [1, 250, 333],
  ];
  for (const [ttlS, everyMs, renewAfterMs] of table) {
    const plan = heartbeatPlan(ttlS);
    assert.deepEqual(plan, { everyMs, renewAfterMs }, `ttl ${ttlS} s`);
    // A live session is renewed (one check after renewAfterMs) before it could expire.
    assert.ok(plan.renewAfterMs + plan.everyMs < ttlS * 1000, `ttl ${ttlS} s stays alive`);
  }
});

Deno.test("withoutNul replaces U+0000 (which Postgres text and jsonb refuse) everywhere in a record", () => {
  const table: [unknown, unknown][] = [
    ["a\0b\0", "a\uFFFDb\uFFFD"],
    ["plain", "plain"],
    [{ "k\0": ["x\0", 1, null, true, { t: "\0" }] }, {
      "k\uFFFD": ["x\uFFFD", 1, null, true, { t: "\uFFFD" }],
    }],
    [42, 42],
    [null, null],
  ];
  for (const [input, expected] of table) assert.deepEqual(withoutNul(input), expected);
});
