import assert from "node:assert/strict";
import {
  checkUpgradeRequest,
  isOriginAllowed,
} from "../../../supabase/functions/_shared/http/handshake.ts";

const GOOD = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

Deno.test("checkUpgradeRequest refuses in the contract's order", () => {
  const table: [string, string, Record<string, string>, string | null][] = [
    ["a good handshake passes", "GET", GOOD, null],
    ["upgrade is case-insensitive", "GET", { ...GOOD, upgrade: "WebSocket" }, null],
    [
      "connection may list other tokens",
      "GET",
      { ...GOOD, connection: "keep-alive, Upgrade" },
      null,
    ],
    ["POST is refused before anything else", "POST", GOOD, "method_not_allowed"],
    ["no upgrade header", "GET", { ...GOOD, upgrade: "" }, "upgrade_required"],
    ["another upgrade", "GET", { ...GOOD, upgrade: "h2c" }, "upgrade_required"],
    ["no connection upgrade", "GET", { ...GOOD, connection: "keep-alive" }, "bad_handshake"],
    ["no key", "GET", { ...GOOD, "sec-websocket-key": "" }, "bad_handshake"],
    [
      "key of the wrong length",
      "GET",
      { ...GOOD, "sec-websocket-key": "c2hvcnQ=" },
      "bad_handshake",
    ],
    ["version 8", "GET", { ...GOOD, "sec-websocket-version": "8" }, "bad_handshake"],
    ["no version", "GET", { ...GOOD, "sec-websocket-version": "" }, "bad_handshake"],
  ];
  for (const [name, method, headers, expected] of table) {
    const refused = checkUpgradeRequest(method, new Headers(headers), null);
    assert.equal(refused?.error ?? null, expected, name);
  }
});

Deno.test("checkUpgradeRequest refuses a disallowed origin with 403", () => {
  const headers = new Headers({ ...GOOD, origin: "https://evil.example" });
  const refused = checkUpgradeRequest("GET", headers, ["https://app.example"]);
  assert.equal(refused?.status, 403);
  assert.equal(refused?.error, "origin_not_allowed");
});

Deno.test("isOriginAllowed compares whole origins", () => {
  const allowed = ["https://app.example", "http://localhost:3000/"];
  const table: [string | null, readonly string[] | null, boolean][] = [
    [null, allowed, true],
    ["https://anything", null, true],
    ["https://anything", ["*"], true],
    ["https://app.example", allowed, true],
    ["HTTPS://APP.EXAMPLE", allowed, true],
    ["http://localhost:3000", allowed, true],
    ["https://app.example.evil.com", allowed, false],
    ["http://app.example", allowed, false],
    ["https://app.example:8443", allowed, false],
    ["null", allowed, false],
  ];
  for (const [origin, list, expected] of table) {
    assert.equal(isOriginAllowed(origin, list), expected, `${origin} in ${list}`);
  }
});
