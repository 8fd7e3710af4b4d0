import assert from "node:assert/strict";
import {
  refusal,
  type RefusalCode,
  refusalResponse,
} from "../../../supabase/functions/_shared/http/refusal.ts";

Deno.test("refusal gives each contract code its status and headers", async () => {
  const table: [RefusalCode, number, Record<string, string>][] = [
    ["not_found", 404, {}],
    ["method_not_allowed", 405, { allow: "GET" }],
    ["upgrade_required", 426, { upgrade: "websocket" }],
    ["bad_handshake", 400, {}],
    ["origin_not_allowed", 403, {}],
    ["missing_token", 401, { "www-authenticate": "Bearer" }],
    ["model_not_allowed", 400, {}],
    ["upstream_not_configured", 503, {}],
    ["invalid_token", 401, {}],
    ["forbidden", 403, {}],
    ["auth_unavailable", 503, {}],
    ["too_many_connections", 429, {}],
    ["at_capacity", 503, {}],
  ];
  for (const [code, status, headers] of table) {
    const response = refusalResponse(refusal(code));
    assert.equal(response.status, status, code);
    assert.equal(response.headers.get("content-type"), "application/json");
    for (const [name, value] of Object.entries(headers)) {
      assert.equal(response.headers.get(name), value, `${code} ${name}`);
    }
    const body = await response.json();
    assert.deepEqual(Object.keys(body), ["error", "message"]);
    assert.equal(body.error, code);
    assert.match(body.message, /^[A-Z].+\.$/);
  }
});
