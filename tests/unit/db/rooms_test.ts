import assert from "node:assert/strict";
import {
  readRoomAccess,
  roomAccessFrom,
  roomAccessStatement,
  sqlLiteral,
} from "../../../supabase/functions/_shared/db/rooms.ts";
import type { Database } from "../../../supabase/functions/_shared/db/client.ts";

Deno.test("sqlLiteral escapes quotes and backslashes into an E'' constant", () => {
  const cases: [string, string][] = [
    ["public:lobby", "E'public:lobby'"],
    ["", "E''"],
    ["it's", "E'it''s'"],
    ["a\\b", "E'a\\\\b'"],
    ["\\'", "E'\\\\'''"],
    ['{"sub":"x"}', `E'{"sub":"x"}'`],
    ["é\u{1F600}\n", "E'é\u{1F600}\n'"],
  ];
  for (const [text, expected] of cases) assert.equal(sqlLiteral(text), expected, text);
});

Deno.test("roomAccessStatement sets the role and claims for the transaction, then calls room_access", () => {
  const statement = roomAccessStatement({ sub: "u'1", role: "authenticated" }, "team:red");
  const [settings, call, ...rest] = statement.split(";\n");
  assert.equal(rest.length, 0, "two statements");
  assert.match(settings!, /^select set_config\('role', 'authenticated', true\),/);
  assert.match(
    settings!,
    /set_config\('request\.jwt\.claims', E'\{"sub":"u''1","role":"authenticated"\}', true\)/,
  );
  for (const legacy of ["request.jwt.claim.sub", "request.jwt.claim.role", "request.jwt.claim"]) {
    assert.ok(settings!.includes(`set_config('${legacy}', '', true)`), legacy);
  }
  assert.equal(call, "select relay.room_access(E'team:red') as access");
});

Deno.test("roomAccessFrom takes read or write from the last statement's row, anything else is null", () => {
  const settings = [{ set_config: "authenticated" }];
  const cases: [unknown[], string | null][] = [
    [[settings, [{ access: "write" }]], "write"],
    [[settings, [{ access: "read" }]], "read"],
    [[settings, [{ access: null }]], null],
    [[settings, [{ access: "admin" }]], null],
    [[settings, [{ access: "WRITE" }]], null],
    [[settings, [{ access: 1 }]], null],
    [[settings, []], null],
    [[{ access: "read" }], "read"], // a single statement's rows
    [[], null],
  ];
  for (const [results, expected] of cases) {
    assert.equal(roomAccessFrom(results), expected, JSON.stringify(results));
  }
});

Deno.test("readRoomAccess answers null for a room holding a NUL without asking the database", async () => {
  const database: Database = {
    run: () => Promise.reject(new Error("no call expected")),
    close: () => Promise.resolve(),
  };
  assert.equal(await readRoomAccess(database, { sub: "u" }, "a\0b"), null);
});
