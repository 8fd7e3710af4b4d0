import assert from "node:assert/strict";
import {
  extractToken,
  offeredProtocols,
  selectProtocol,
} from "../../../supabase/functions/_shared/auth/token_source.ts";

function found(query: string, headers: Record<string, string> = {}) {
  return extractToken(new URL(`https://x.example/relay${query}`), new Headers(headers));
}

Deno.test("extractToken takes the first source in the contract's order", () => {
  const all = {
    authorization: "Bearer fromHeader",
    "sec-websocket-protocol": "realtime, jwt-fromJwtProtocol, openai-insecure-api-key.fromKey",
  };
  const table: [string, string, Record<string, string>, string | null, string | null][] = [
    ["?jwt= wins over everything", "?jwt=a&token=b", all, "a", "query_jwt"],
    ["then ?token=", "?token=b", all, "b", "query_token"],
    ["then Authorization: Bearer", "", all, "fromHeader", "authorization"],
    ["bearer is case-insensitive", "", { authorization: "bearer x" }, "x", "authorization"],
    [
      "then a jwt- subprotocol",
      "",
      { "sec-websocket-protocol": all["sec-websocket-protocol"] },
      "fromJwtProtocol",
      "protocol_jwt",
    ],
    [
      "then the openai SDK's key subprotocol",
      "",
      {
        "sec-websocket-protocol": "realtime, openai-insecure-api-key.fromKey",
      },
      "fromKey",
      "protocol_openai_key",
    ],
    ["empty ?jwt= falls through", "?jwt=", { authorization: "Bearer h" }, "h", "authorization"],
    ["Basic auth is not a token", "", { authorization: "Basic abc" }, null, null],
    ["an empty jwt- entry is not a token", "", { "sec-websocket-protocol": "jwt-" }, null, null],
    ["nothing", "", {}, null, null],
  ];
  for (const [name, query, headers, token, source] of table) {
    const result = found(query, headers);
    assert.equal(result?.token ?? null, token, name);
    assert.equal(result?.source ?? null, source, name);
  }
});

Deno.test("selectProtocol never selects a credential entry", () => {
  const table: [string, string | undefined][] = [
    ["realtime, jwt-abc", "realtime"],
    ["jwt-abc, realtime", "realtime"],
    ["openai-insecure-api-key.k, realtime", "realtime"],
    ["jwt-abc", undefined],
    ["jwt-abc, openai-insecure-api-key.k", undefined],
    ["", undefined],
    ["chat, superchat", "chat"],
  ];
  for (const [header, expected] of table) {
    const offered = offeredProtocols(new Headers({ "sec-websocket-protocol": header }));
    assert.equal(selectProtocol(offered), expected, header);
  }
});
