import assert from "node:assert/strict";
import {
  clientEventIdOf,
  meteredEventOf,
  sniffType,
} from "../../../supabase/functions/_shared/realtime/metered_events.ts";

const usage = {
  total_tokens: 35,
  input_tokens: 20,
  output_tokens: 15,
  input_token_details: { text_tokens: 20, audio_tokens: 0, cached_tokens: 0 },
  output_token_details: { text_tokens: 3, audio_tokens: 12 },
};

Deno.test("sniffType reads the leading type and nothing past the opening", () => {
  const table: [string, string | null][] = [
    ['{"type":"response.done","event_id":"e"}', "response.done"],
    ['{ "type" : "session.updated" }', "session.updated"],
    ['\n{\n  "type": "response.create"\n}', "response.create"],
    ['{"event_id":"evt_1","type":"response.create"}', "response.create"],
    [`{"event_id":"${"x".repeat(80)}","type":"response.done"}`, null],
    ['{"type":42}', null],
    ['{"type":"unterminated', null],
    [`{"type":"${"a".repeat(100)}"}`, null],
    ["not json at all", null],
    ["", null],
  ];
  for (const [message, expected] of table) assert.equal(sniffType(message), expected, message);
});

Deno.test("meteredEventOf picks response.done usage with its response id", () => {
  const message = JSON.stringify({
    type: "response.done",
    event_id: "event_1",
    response: { object: "realtime.response", id: "resp_1", status: "completed", usage },
  });
  assert.deepEqual(meteredEventOf(message), { kind: "response", id: "resp_1", usage });
});

Deno.test("meteredEventOf picks a completed transcription's usage with its item id", () => {
  const tokens = {
    type: "tokens",
    total_tokens: 26,
    input_tokens: 17,
    input_token_details: { text_tokens: 0, audio_tokens: 17 },
    output_tokens: 9,
  };
  const message = JSON.stringify({
    type: "conversation.item.input_audio_transcription.completed",
    event_id: "event_2",
    item_id: "item_1",
    content_index: 0,
    transcript: "Hello.",
    usage: tokens,
  });
  assert.deepEqual(meteredEventOf(message), {
    kind: "transcription",
    itemId: "item_1",
    usage: tokens,
  });
});

Deno.test("meteredEventOf reads the transcription model from session events", () => {
  const session = (input: unknown) =>
    JSON.stringify({
      type: "session.updated",
      event_id: "event_3",
      session: { type: "realtime", model: "gpt-realtime", audio: { input } },
    });
  const table: [string, string | null | undefined][] = [
    [
      session({ transcription: { model: "gpt-4o-transcribe", language: "en" } }),
      "gpt-4o-transcribe",
    ],
    [session({ transcription: null }), null],
    [session({ format: { type: "audio/pcm" } }), undefined],
    [JSON.stringify({ type: "session.created", session: { type: "realtime" } }), undefined],
    [
      JSON.stringify({
        type: "session.created",
        session: { audio: { input: { transcription: { model: "whisper-1" } } } },
      }),
      "whisper-1",
    ],
  ];
  for (const [message, model] of table) {
    assert.deepEqual(meteredEventOf(message), { kind: "session", transcriptionModel: model });
  }
});

Deno.test("meteredEventOf ignores everything else, malformed events included", () => {
  const table: string[] = [
    JSON.stringify({ type: "response.done", response: { id: "r", usage: null } }),
    JSON.stringify({ type: "response.done", response: { id: "r" } }),
    JSON.stringify({ type: "response.created", response: { id: "r", usage } }),
    JSON.stringify({ type: "conversation.item.input_audio_transcription.completed" }),
    JSON.stringify({ type: "response.output_audio.delta", delta: "A".repeat(40_000) }),
    '{"type":"response.done", oops',
    '{"type":"response.done","type":"response.created","response":{"usage":{}}}',
    "[1,2,3]",
    "",
  ];
  for (const message of table) assert.equal(meteredEventOf(message), null, message.slice(0, 60));
});

Deno.test("clientEventIdOf reads a client event's id, or null", () => {
  assert.equal(clientEventIdOf('{"type":"response.create","event_id":"evt_9"}'), "evt_9");
  assert.equal(clientEventIdOf('{"type":"response.create"}'), null);
  assert.equal(clientEventIdOf("garbage"), null);
});
