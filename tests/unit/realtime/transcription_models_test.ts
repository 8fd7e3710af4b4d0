import assert from "node:assert/strict";
import {
  checkTranscriptionModel,
  TRANSCRIPTION_MODEL_PARAM,
} from "../../../supabase/functions/_shared/realtime/transcription_models.ts";
import {
  realtimeUrl,
  transcriptionUrl,
} from "../../../supabase/functions/_shared/upstream/openai.ts";

const MODELS = ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"];
const update = (transcription: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    type: "session.update",
    ...extra,
    session: { type: "transcription", audio: { input: { transcription } } },
  });

Deno.test("checkTranscriptionModel passes listed models and everything that picks none", () => {
  const passing: (string | ArrayBuffer)[] = [
    update({ model: "gpt-4o-transcribe" }),
    update({ model: "gpt-4o-mini-transcribe", language: "en" }),
    update(null),
    update({ language: "en" }),
    JSON.stringify({ type: "session.update", session: { type: "realtime", instructions: "x" } }),
    JSON.stringify({ type: "input_audio_buffer.append", audio: "AAAA" }),
    JSON.stringify({
      type: "response.create",
      response: { transcription: { model: "whisper-1" } },
    }),
    "not json, and nothing that could name a model",
    new ArrayBuffer(8),
  ];
  for (const data of passing) {
    assert.equal(checkTranscriptionModel(data, MODELS), null, String(data));
  }
});

Deno.test("checkTranscriptionModel refuses unlisted models, however they are spelled", () => {
  const refused: [string, string | null, string | null][] = [
    [update({ model: "whisper-1" }), "transcription_model", TRANSCRIPTION_MODEL_PARAM],
    [update({ model: "" }), "transcription_model", TRANSCRIPTION_MODEL_PARAM],
    [update({ model: 42 }), "transcription_model", TRANSCRIPTION_MODEL_PARAM],
    // Keys differing only in case are one key to the strict reader: the check folds them too.
    [update({ Model: "whisper-1" }), "transcription_model", TRANSCRIPTION_MODEL_PARAM],
    // An escaped key still names the field.
    [
      update({ model: "x" }).replace('"model"', '"\\u006dodel"'),
      "transcription_model",
      TRANSCRIPTION_MODEL_PARAM,
    ],
    // Two values for one key: another parser could pick the other one.
    [
      '{"type":"session.update","session":{"type":"transcription","audio":{"input":{"transcription":{"model":"gpt-4o-transcribe","model":"whisper-1"}}}}}',
      "ambiguous_json",
      null,
    ],
  ];
  for (const [data, code, param] of refused) {
    const decision = checkTranscriptionModel(data, MODELS);
    assert.ok(decision !== null, data);
    assert.equal(decision.code, code, data);
    assert.equal(decision.param, param, data);
  }
  const withId = checkTranscriptionModel(
    update({ model: "whisper-1" }, { event_id: "e7" }),
    MODELS,
  );
  assert.equal(withId?.eventId, "e7");
  assert.match(withId?.message ?? "", /gpt-4o-transcribe, gpt-4o-mini-transcribe/);
});

Deno.test("transcriptionUrl asks for a transcription session with no model; realtimeUrl for a model", () => {
  assert.equal(
    transcriptionUrl("wss://api.openai.com/v1/realtime?model=x&other=1"),
    "wss://api.openai.com/v1/realtime?intent=transcription",
  );
  assert.equal(
    realtimeUrl("wss://api.openai.com/v1/realtime?intent=transcription", "gpt-realtime"),
    "wss://api.openai.com/v1/realtime?model=gpt-realtime",
  );
});
