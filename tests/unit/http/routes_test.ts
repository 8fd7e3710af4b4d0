import assert from "node:assert/strict";
import { matchRoute } from "../../../supabase/functions/_shared/http/routes.ts";

Deno.test("matchRoute maps each contract path, tolerating one trailing slash", () => {
  const table: [string, ReturnType<typeof matchRoute>][] = [
    ["/relay", "openai"],
    ["/relay/", "openai"],
    ["/relay/realtime", "openai"],
    ["/relay/v1/realtime", "openai"],
    ["/relay/v1/realtime/", "openai"],
    ["/relay/echo", "echo"],
    ["/relay/echo/", "echo"],
    ["/relay/health", "health"],
    ["/", null],
    ["/relay//", null],
    ["/relay/unknown", null],
    ["/functions/v1/relay", null],
    ["/relay/constructor", null],
    ["/RELAY", null],
  ];
  for (const [path, expected] of table) assert.equal(matchRoute(path), expected, path);
});
