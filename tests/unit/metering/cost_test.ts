import assert from "node:assert/strict";
import {
  durationCostMicros,
  priceResponse,
  priceTranscription,
  responseTokens,
  tokensCostMicros,
  transcriptionTokens,
  type Usage,
} from "../../../supabase/functions/_shared/metering/cost.ts";
import {
  BUILT_IN_PRICES,
  resolvePrices,
} from "../../../supabase/functions/_shared/metering/prices.ts";

/** The `response.done` usage of the GA API reference's example (text and audio, some cached). */
const GA_EXAMPLE: Usage = {
  total_tokens: 253,
  input_tokens: 132,
  output_tokens: 121,
  input_token_details: {
    text_tokens: 119,
    audio_tokens: 13,
    image_tokens: 0,
    cached_tokens: 64,
    cached_tokens_details: { text_tokens: 64, audio_tokens: 0, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 30, audio_tokens: 91 },
};

/** A later turn of a voice conversation: most of the context is cached audio. */
const VOICE_TURN: Usage = {
  total_tokens: 1300,
  input_tokens: 1000,
  output_tokens: 300,
  input_token_details: {
    text_tokens: 200,
    audio_tokens: 800,
    image_tokens: 0,
    cached_tokens: 600,
    cached_tokens_details: { text_tokens: 100, audio_tokens: 500, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 60, audio_tokens: 240 },
};

/** A turn with an image in the context, partly cached. */
const IMAGE_TURN: Usage = {
  total_tokens: 1510,
  input_tokens: 1500,
  output_tokens: 10,
  input_token_details: {
    text_tokens: 20,
    audio_tokens: 0,
    image_tokens: 1480,
    cached_tokens: 1000,
    cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 1000 },
  },
  output_token_details: { text_tokens: 10, audio_tokens: 0 },
};

Deno.test("responseTokens takes cached counts out of their kind's input counts", () => {
  assert.deepEqual(responseTokens(GA_EXAMPLE), {
    text_input: 55,
    cached_text_input: 64,
    text_output: 30,
    audio_input: 13,
    cached_audio_input: 0,
    audio_output: 91,
    image_input: 0,
    cached_image_input: 0,
  });
  assert.deepEqual(responseTokens(VOICE_TURN), {
    text_input: 100,
    cached_text_input: 100,
    text_output: 60,
    audio_input: 300,
    cached_audio_input: 500,
    audio_output: 240,
    image_input: 0,
    cached_image_input: 0,
  });
});

Deno.test("responseTokens charges what the details leave out as text, and survives junk", () => {
  const table: [string, Usage, Partial<Record<string, number>>][] = [
    ["no details: all text", { input_tokens: 10, output_tokens: 5 }, {
      text_input: 10,
      text_output: 5,
    }],
    ["cached total without a breakdown is text", {
      input_tokens: 10,
      output_tokens: 0,
      input_token_details: { text_tokens: 10, cached_tokens: 4 },
    }, { text_input: 6, cached_text_input: 4 }],
    ["input beyond the details", {
      input_tokens: 12,
      output_tokens: 7,
      input_token_details: { text_tokens: 5, audio_tokens: 5 },
      output_token_details: { text_tokens: 2, audio_tokens: 4 },
    }, { text_input: 7, audio_input: 5, text_output: 3, audio_output: 4 }],
    ["cached above its kind is capped", {
      input_tokens: 3,
      input_token_details: {
        text_tokens: 3,
        cached_tokens_details: { text_tokens: 9 },
      },
    }, { cached_text_input: 3 }],
    ["negative, fractional, string counts are 0", {
      input_tokens: -4,
      output_tokens: 2.5,
      input_token_details: { text_tokens: "9", audio_tokens: -1 },
    }, {}],
    ["empty usage", {}, {}],
  ];
  for (const [name, usage, expected] of table) {
    const tokens = responseTokens(usage);
    for (const [key, n] of Object.entries(tokens)) {
      assert.equal(n, expected[key] ?? 0, `${name}: ${key}`);
    }
  }
});

Deno.test("priceResponse prices GA usage exactly, in whole micros", () => {
  const table: [string, Usage, string, number][] = [
    // 55*4 + 64*0.4 + 13*32 + 30*16 + 91*64 = 6965.6
    ["GA example, gpt-realtime", GA_EXAMPLE, "gpt-realtime", 6966],
    // 55*0.6 + 64*0.06 + 13*10 + 30*2.4 + 91*20 = 2058.84
    ["GA example, gpt-realtime-mini", GA_EXAMPLE, "gpt-realtime-mini", 2059],
    // 100*4 + 100*0.4 + 300*32 + 500*0.4 + 60*16 + 240*64
    ["voice turn, gpt-realtime", VOICE_TURN, "gpt-realtime", 26560],
    // text output at 24 instead of 16: 26560 + 60*8
    ["voice turn, gpt-realtime-2", VOICE_TURN, "gpt-realtime-2", 27040],
    // 100*0.6 + 100*0.06 + 300*10 + 500*0.3 + 60*2.4 + 240*20
    ["voice turn, gpt-realtime-mini-2025-12-15", VOICE_TURN, "gpt-realtime-mini-2025-12-15", 8160],
    // 20*4 + 480*5 + 1000*0.5 + 10*16
    ["image turn, gpt-realtime", IMAGE_TURN, "gpt-realtime", 3140],
    ["no details", { input_tokens: 10, output_tokens: 5 }, "gpt-realtime", 120],
    // 5 cached audio tokens at 0.3 = 1.5: rounded half up, once
    [
      "rounding half up",
      {
        input_tokens: 5,
        input_token_details: { audio_tokens: 5, cached_tokens_details: { audio_tokens: 5 } },
      },
      "gpt-realtime-mini",
      2,
    ],
    [
      "one cached token rounds to nothing",
      {
        input_tokens: 1,
        input_token_details: { text_tokens: 1, cached_tokens_details: { text_tokens: 1 } },
      },
      "gpt-realtime",
      0,
    ],
  ];
  for (const [name, usage, model, micros] of table) {
    const priced = priceResponse(usage, model, BUILT_IN_PRICES);
    assert.deepEqual(priced, { model, costMicros: micros, priced: true }, name);
  }
});

Deno.test("priceResponse of a model with no price is 0 and says so", () => {
  assert.deepEqual(priceResponse(GA_EXAMPLE, "unknown-model", BUILT_IN_PRICES), {
    model: "unknown-model",
    costMicros: 0,
    priced: false,
  });
});

Deno.test("tokensCostMicros never sums floats: a million small prices stay exact", () => {
  const tokens = responseTokens({ input_tokens: 1_000_000, output_tokens: 0 });
  // 0.1 + 0.2 style drift would show here: 1e6 tokens at 0.3 USD/1M is exactly 0.30 USD.
  assert.equal(tokensCostMicros(tokens, { text_input: 0.3 }), 300_000);
  const many = responseTokens({
    input_tokens: 3_000_001,
    output_tokens: 7,
    input_token_details: {
      text_tokens: 1_000_001,
      audio_tokens: 2_000_000,
      cached_tokens_details: { text_tokens: 1, audio_tokens: 1_999_999 },
    },
  });
  // 1e6*0.1 + 1*0.2 + 1*0.7 + 1999999*0.3 + 7*0.1 = 100000 + 0.2 + 0.7 + 599999.7 + 0.7
  assert.equal(
    tokensCostMicros(many, {
      text_input: 0.1,
      cached_text_input: 0.2,
      audio_input: 0.7,
      cached_audio_input: 0.3,
      text_output: 0.1,
    }),
    700_001,
  );
});

/** The transcription usage of the GA reference's `...input_audio_transcription.completed`. */
const TRANSCRIPTION_TOKENS: Usage = {
  type: "tokens",
  total_tokens: 26,
  input_tokens: 17,
  input_token_details: { text_tokens: 0, audio_tokens: 17 },
  output_tokens: 9,
};

Deno.test("transcriptionTokens charges input as audio (or by kind) and output as text", () => {
  const table: [Usage, Partial<Record<string, number>>][] = [
    [TRANSCRIPTION_TOKENS, { audio_input: 17, text_output: 9 }],
    [{ type: "tokens", input_tokens: 20, output_tokens: 3 }, { audio_input: 20, text_output: 3 }],
    [{
      type: "tokens",
      input_tokens: 25,
      output_tokens: 4,
      input_token_details: { text_tokens: 5, audio_tokens: 18 },
    }, { text_input: 5, audio_input: 20, text_output: 4 }],
  ];
  for (const [usage, expected] of table) {
    const tokens = transcriptionTokens(usage);
    for (const [key, n] of Object.entries(tokens)) assert.equal(n, expected[key] ?? 0, key);
  }
});

Deno.test("priceTranscription uses the transcription model, else the session model", () => {
  const table: [string, Usage, string | null, string, { model: string; micros: number }][] = [
    // 17*6 + 9*10
    ["gpt-4o-transcribe tokens", TRANSCRIPTION_TOKENS, "gpt-4o-transcribe", "gpt-realtime", {
      model: "gpt-4o-transcribe",
      micros: 192,
    }],
    // 17*3 + 9*5
    [
      "gpt-4o-mini-transcribe tokens",
      TRANSCRIPTION_TOKENS,
      "gpt-4o-mini-transcribe",
      "gpt-realtime",
      {
        model: "gpt-4o-mini-transcribe",
        micros: 96,
      },
    ],
    // 2.5 s at 0.006 USD/min = 250 micros
    ["whisper-1 duration", { type: "duration", seconds: 2.5 }, "whisper-1", "gpt-realtime", {
      model: "whisper-1",
      micros: 250,
    }],
    [
      "gpt-realtime-whisper duration",
      { type: "duration", seconds: 60 },
      "gpt-realtime-whisper",
      "gpt-realtime",
      {
        model: "gpt-realtime-whisper",
        micros: 17_000,
      },
    ],
    // no transcription model known: the session model's entry (17*32 + 9*16)
    ["no transcription model", TRANSCRIPTION_TOKENS, null, "gpt-realtime", {
      model: "gpt-realtime",
      micros: 688,
    }],
    // an unpriced transcription model falls back to the session model
    ["unpriced transcription model", TRANSCRIPTION_TOKENS, "new-transcriber", "gpt-realtime", {
      model: "gpt-realtime",
      micros: 688,
    }],
    // tokens usage with a duration-only entry: the session model prices it
    ["tokens from whisper-1", TRANSCRIPTION_TOKENS, "whisper-1", "gpt-realtime-mini", {
      model: "gpt-realtime-mini",
      micros: 192,
    }],
  ];
  for (const [name, usage, transcriber, session, expected] of table) {
    assert.deepEqual(
      priceTranscription(usage, transcriber, session, BUILT_IN_PRICES),
      { model: expected.model, costMicros: expected.micros, priced: true },
      name,
    );
  }
});

Deno.test("priceTranscription reports duration usage nobody can price as unpriced", () => {
  assert.deepEqual(
    priceTranscription({ type: "duration", seconds: 3 }, null, "gpt-realtime", BUILT_IN_PRICES),
    { model: "gpt-realtime", costMicros: 0, priced: false },
  );
});

Deno.test("priceTranscription follows RELAY_PRICES overrides", () => {
  const { table, problems } = resolvePrices('{"whisper-1":{"per_minute":0.012}}');
  assert.deepEqual(problems, []);
  assert.equal(
    priceTranscription({ type: "duration", seconds: 30 }, "whisper-1", "gpt-realtime", table)
      .costMicros,
    6000,
  );
});

Deno.test("durationCostMicros rounds once and ignores nonsense", () => {
  const table: [number, number, number][] = [
    [1, 0.006, 100],
    [0.001, 0.006, 0],
    [0.01, 0.006, 1],
    [0, 0.006, 0],
    [-5, 0.006, 0],
    [Number.NaN, 0.006, 0],
    [10, 0, 0],
  ];
  for (const [seconds, perMinute, micros] of table) {
    assert.equal(durationCostMicros(seconds, perMinute), micros, `${seconds} s`);
  }
});
