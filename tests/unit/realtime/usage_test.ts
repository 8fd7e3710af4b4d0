import assert from "node:assert/strict";
import { usageOf } from "../../../supabase/functions/_shared/realtime/usage.ts";

Deno.test("usageOf returns response.done usage and ignores everything else", () => {
  const usage = { total_tokens: 10, input_tokens: 4, output_tokens: 6 };
  const table: [string, Record<string, unknown> | null][] = [
    [JSON.stringify({ type: "response.done", event_id: "e1", response: { usage } }), usage],
    [JSON.stringify({ type: "response.done", response: { usage: null } }), null],
    [JSON.stringify({ type: "response.done", response: {} }), null],
    [JSON.stringify({ type: "response.created", response: { usage } }), null],
    [JSON.stringify({ type: "response.output_audio.delta", delta: "A".repeat(40000) }), null],
    ['{"type":"response.done"', null],
    ['plain text mentioning "response.done"', null],
    ["", null],
  ];
  for (const [message, expected] of table) assert.deepEqual(usageOf(message), expected);
});
