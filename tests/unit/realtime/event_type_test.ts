import assert from "node:assert/strict";
import { eventTypeOf } from "../../../supabase/functions/_shared/realtime/event_type.ts";

Deno.test("eventTypeOf reads a leading type without parsing, and finds a later one in small events", () => {
  const delta = JSON.stringify({
    type: "response.output_audio.delta",
    event_id: "event_1",
    delta: "A".repeat(200_000),
  });
  const table: [string, string | null][] = [
    ['{"type":"session.updated","event_id":"e","session":{}}', "session.updated"],
    [
      ' {\n "type" : "conversation.item.done", "item": {"type":"message"}}',
      "conversation.item.done",
    ],
    [delta, "response.output_audio.delta"],
    // type after a nested object's own type: the top-level one, found by parsing
    ['{"item":{"type":"message"},"type":"conversation.item.added"}', "conversation.item.added"],
    ['{"event_id":"e","type":"error"}', "error"],
    // large and type not first: given up on rather than parsed
    [JSON.stringify({ delta: "A".repeat(70_000), type: "x" }), null],
    ['{"type":42}', null],
    ["[1,2]", null],
    ['"text"', null],
    ["not json", null],
    ["", null],
    ['{"type":"session.upd', null],
  ];
  for (const [text, expected] of table) {
    assert.equal(eventTypeOf(text), expected, text.slice(0, 60));
  }
});
