import assert from "node:assert/strict";
import {
  decodePayload,
  identityFromPayload,
} from "../../../supabase/functions/_shared/auth/claims.ts";

function b64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

function token(payload: string): string {
  return `${b64url('{"alg":"ES256"}')}.${b64url(payload)}.c2ln`;
}

Deno.test("decodePayload reads a base64url JSON object and nothing else", () => {
  const table: [string, Record<string, unknown> | null][] = [
    [token('{"sub":"u","role":"authenticated"}'), { sub: "u", role: "authenticated" }],
    [token('{"name":"Zoë 🎧"}'), { name: "Zoë 🎧" }],
    [token("[1,2]"), null],
    [token("null"), null],
    [token("not json"), null],
    ["only.two", null],
    ["a.b.c.d", null],
    ["a..c", null],
    ["a.!!!.c", null],
    ["", null],
  ];
  for (const [input, expected] of table) assert.deepEqual(decodePayload(input), expected, input);
});

Deno.test("identityFromPayload requires a sub and an allowed role", () => {
  const roles = ["authenticated"];
  const table: [Record<string, unknown> | null, ReturnType<typeof identityFromPayload>][] = [
    [{ sub: "u1", role: "authenticated", exp: 1700000000 }, {
      user: "u1",
      role: "authenticated",
      exp: 1700000000,
      claims: { sub: "u1", role: "authenticated", exp: 1700000000 },
    }],
    [{ sub: "u1", role: "authenticated" }, {
      user: "u1",
      role: "authenticated",
      exp: null,
      claims: { sub: "u1", role: "authenticated" },
    }],
    [{ role: "anon", iss: "supabase" }, "forbidden"],
    [{ role: "service_role" }, "forbidden"],
    [{ sub: "u1", role: "service_role" }, "forbidden"],
    [{ sub: "", role: "authenticated" }, "forbidden"],
    [{ sub: 42, role: "authenticated" }, "forbidden"],
    [{ sub: "u1" }, "forbidden"],
    [null, "malformed"],
  ];
  for (const [payload, expected] of table) {
    assert.deepEqual(identityFromPayload(payload, roles), expected, JSON.stringify(payload));
  }
});
