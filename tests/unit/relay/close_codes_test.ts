import assert from "node:assert/strict";
import {
  clientCloseForUpstream,
  MAX_REASON_BYTES,
  truncateReason,
  upstreamCloseForClient,
} from "../../../supabase/functions/_shared/relay/close_codes.ts";

const bytes = (text: string) => new TextEncoder().encode(text).length;

Deno.test("clientCloseForUpstream forwards sendable codes and maps the rest", () => {
  const table: [number, string, number, string][] = [
    [1000, "bye", 1000, "bye"],
    [1001, "away", 1001, "away"],
    [1002, "p", 1002, "p"],
    [1003, "d", 1003, "d"],
    [1007, "x", 1007, "x"],
    [1008, "policy", 1008, "policy"],
    [1009, "big", 1009, "big"],
    [1010, "ext", 1010, "ext"],
    [1011, "err", 1011, "err"],
    [1012, "r", 1012, "r"],
    [1013, "later", 1013, "later"],
    [3000, "a", 3000, "a"],
    [4000, "beta_api_shape_disabled", 4000, "beta_api_shape_disabled"],
    [4999, "z", 4999, "z"],
    [1005, "", 1000, ""],
    [1006, "", 1011, "upstream_closed_abnormally"],
    [1015, "tls", 1011, "upstream_closed_abnormally"],
    [1004, "", 1011, "upstream_closed_abnormally"],
    [1014, "gw", 1011, "upstream_closed_abnormally"],
    [2999, "", 1011, "upstream_closed_abnormally"],
    [5000, "", 1011, "upstream_closed_abnormally"],
    [0, "", 1011, "upstream_closed_abnormally"],
  ];
  for (const [code, reason, expectedCode, expectedReason] of table) {
    assert.deepEqual(clientCloseForUpstream(code, reason), {
      code: expectedCode,
      reason: expectedReason,
    }, `${code}`);
  }
});

Deno.test("upstreamCloseForClient keeps 1000 and 3000-4999, else 1000", () => {
  const table: [number, number][] = [
    [1000, 1000],
    [3000, 3000],
    [4001, 4001],
    [4999, 4999],
    [1001, 1000],
    [1005, 1000],
    [1006, 1000],
    [1008, 1000],
    [1011, 1000],
    [2999, 1000],
  ];
  for (const [code, expected] of table) {
    assert.deepEqual(upstreamCloseForClient(code, "why"), { code: expected, reason: "why" });
  }
});

Deno.test("truncateReason cuts to 123 bytes on a character boundary", () => {
  const ascii = "a".repeat(200);
  assert.equal(truncateReason(ascii), "a".repeat(123));
  assert.equal(truncateReason("a".repeat(123)), "a".repeat(123));
  const euro = "€".repeat(50); // 3 bytes each
  assert.equal(truncateReason(euro), "€".repeat(41));
  const astral = "x" + "🎧".repeat(40); // 1 + 4 bytes each
  const cut = truncateReason(astral);
  assert.ok(bytes(cut) <= MAX_REASON_BYTES);
  assert.equal(cut, "x" + "🎧".repeat(30));
  assert.equal(truncateReason("ok"), "ok");
});
