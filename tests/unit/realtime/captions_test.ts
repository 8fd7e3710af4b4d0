import assert from "node:assert/strict";
import {
  captionOf,
  isCaptionSource,
} from "../../../supabase/functions/_shared/realtime/captions.ts";

Deno.test("captionOf turns each transcript event into its caption, and nothing else", () => {
  const table: [Record<string, unknown>, unknown][] = [
    [
      { type: "conversation.item.input_audio_transcription.delta", item_id: "i1", delta: "Hel" },
      {
        event: "caption.delta",
        ephemeral: true,
        payload: { item_id: "i1", role: "user", delta: "Hel" },
      },
    ],
    [
      {
        type: "conversation.item.input_audio_transcription.completed",
        item_id: "i1",
        transcript: "Hello.",
        usage: { type: "tokens" },
      },
      {
        event: "caption",
        ephemeral: false,
        payload: { item_id: "i1", role: "user", text: "Hello." },
      },
    ],
    [
      { type: "response.output_audio_transcript.delta", item_id: "i2", delta: "Hi" },
      {
        event: "caption.delta",
        ephemeral: true,
        payload: { item_id: "i2", role: "assistant", delta: "Hi" },
      },
    ],
    [
      { type: "response.output_audio_transcript.done", item_id: "i2", transcript: "Hi there." },
      {
        event: "caption",
        ephemeral: false,
        payload: { item_id: "i2", role: "assistant", text: "Hi there." },
      },
    ],
    [
      { type: "response.output_text.delta", item_id: "i3", delta: "O" },
      {
        event: "caption.delta",
        ephemeral: true,
        payload: { item_id: "i3", role: "assistant", delta: "O" },
      },
    ],
    [
      { type: "response.output_text.done", item_id: "i3", text: "OK" },
      {
        event: "caption",
        ephemeral: false,
        payload: { item_id: "i3", role: "assistant", text: "OK" },
      },
    ],
    // No item id: the caption still goes, with null.
    [
      { type: "response.output_text.done", text: "OK" },
      {
        event: "caption",
        ephemeral: false,
        payload: { item_id: null, role: "assistant", text: "OK" },
      },
    ],
    // Not transcripts, or no text where the transcript goes.
    [{ type: "response.output_audio.delta", item_id: "i2", delta: "AAAA" }, null],
    [{ type: "response.done", response: {} }, null],
    [{ type: "conversation.item.input_audio_transcription.completed", item_id: "i1" }, null],
    [{ type: "response.output_text.done", item_id: "i3", text: 42 }, null],
    [{ item_id: "i3", text: "no type" }, null],
  ];
  for (const [event, expected] of table) {
    const caption = captionOf(event);
    const actual = caption === null ? null : {
      event: caption.event,
      ephemeral: caption.ephemeral,
      payload: JSON.parse(caption.payloadJson),
    };
    assert.deepEqual(actual, expected, JSON.stringify(event));
  }
});

Deno.test("isCaptionSource names exactly the six transcript events", () => {
  const sources = [
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
  ];
  for (const type of sources) assert.ok(isCaptionSource(type), type);
  for (const type of ["response.output_audio.delta", "session.created", "constructor", ""]) {
    assert.ok(!isCaptionSource(type), type);
  }
});
