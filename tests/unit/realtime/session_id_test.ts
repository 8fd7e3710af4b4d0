import assert from "node:assert/strict";
import { isSessionId } from "../../../supabase/functions/_shared/realtime/session_id.ts";

Deno.test("isSessionId takes 22-64 characters of A-Z, a-z, 0-9, _ and -", () => {
  const table: [string, boolean][] = [
    [crypto.randomUUID(), true],
    ["a".repeat(22), true],
    ["Z".repeat(64), true],
    ["abc_DEF-123_abc_DEF-12", true],
    ["a".repeat(21), false],
    ["a".repeat(65), false],
    ["", false],
    ["a".repeat(21) + " ", false],
    ["a".repeat(21) + ".", false],
    ["a".repeat(21) + "/", false],
    ["a".repeat(21) + "é", false],
    ["a".repeat(22) + "\n", false],
    ["%2e".repeat(8), false],
  ];
  for (const [id, expected] of table) assert.equal(isSessionId(id), expected, JSON.stringify(id));
});
