/**
 * The OpenAI stand-in's `realtime` behaviour as a GA peer: usage arithmetic,
 * session and response configuration, input transcription, speech, cancel and
 * truncate, conversation state, function calls and context-based replies.
 * Real sockets to the stand-in (Deno's WebSocket, as the relay uses); pure
 * counting rules tested by table. Sanitizers stay on.
 */

import assert from "node:assert/strict";
import { TestClient } from "../helpers/ws_client.ts";
import { type Behaviour, type OpenAIStandIn, startOpenAIStandIn } from "./openai.ts";
import { concatBytes, decodeBase64, encodeBase64, tone, withTranscript } from "./realtime_audio.ts";
import { CHUNK_MS, defaultSession, SPOKEN_MS_PER_WORD } from "./realtime_events.ts";
import { type ContextItem, replyFor } from "./realtime_reply.ts";
import { applySessionUpdate, resolveResponse } from "./realtime_session.ts";
import {
  audioBytes,
  inputAudioTokens,
  outputAudioTokens,
  type PromptSegment,
  textTokens,
  transcriptionUsage,
  usageForTurn,
  usageOf,
} from "./realtime_usage.ts";

type Json = Record<string, unknown>;

// ---- helpers ----------------------------------------------------------------

/** A client of the stand-in that reads its events in order. */
class Peer {
  readonly client: TestClient;
  #cursor = 0;

  constructor(client: TestClient) {
    this.client = client;
  }

  send(event: Json): void {
    this.client.socket.send(JSON.stringify(event));
  }

  /** The next event, whatever it is. */
  async next(ms = 5000): Promise<Json> {
    await this.client.waitForMessages(this.#cursor + 1, ms);
    const m = this.client.messages[this.#cursor++];
    assert.equal(typeof m, "string", "the stand-in sends text events only");
    return JSON.parse(m as string);
  }

  /** Events up to and including the first of `type`. */
  async until(type: string, ms = 5000): Promise<Json[]> {
    const seen: Json[] = [];
    const deadline = Date.now() + ms;
    for (;;) {
      const e = await this.next(Math.max(1, deadline - Date.now()));
      seen.push(e);
      if (e.type === type) return seen;
    }
  }

  /** The next event, which must be of `type`. */
  async expect(type: string): Promise<Json> {
    const e = await this.next();
    assert.equal(e.type, type, `expected ${type}, got ${JSON.stringify(e).slice(0, 300)}`);
    return e;
  }

  close(): Promise<CloseEvent> {
    return this.client.close();
  }
}

async function withStandIn(
  fn: (oa: OpenAIStandIn, open: () => Promise<Peer>) => Promise<void>,
  behaviour: Behaviour = { kind: "realtime" },
): Promise<void> {
  const oa = await startOpenAIStandIn({ behaviour });
  const peers: Peer[] = [];
  const open = async () => {
    const c = new TestClient(`${oa.url}?model=gpt-realtime`, [
      "realtime",
      `openai-insecure-api-key.${oa.apiKey}`,
    ]);
    const p = new Peer(c);
    peers.push(p);
    await c.opened;
    await p.expect("session.created");
    return p;
  };
  try {
    await fn(oa, open);
  } finally {
    for (const p of peers) await p.close();
    await oa.close();
  }
}

function obj(v: unknown): Json {
  assert.ok(typeof v === "object" && v !== null && !Array.isArray(v), `object: ${v}`);
  return v as Json;
}

/** Audio with a recognisable pattern, `ms` long. */
function pcm(ms: number, seed = 1): Uint8Array {
  return new Uint8Array(audioBytes(ms)).map((_, i) => (i * seed + 7) & 0xff);
}

/** The audio of every `response.output_audio.delta` in `events`, joined. */
function spokenAudio(events: Json[]): Uint8Array {
  return concatBytes(
    events.filter((e) => e.type === "response.output_audio.delta").map((e) =>
      decodeBase64(String(e.delta))
    ),
  );
}

/** Commits `audio` as the user's turn and waits for its item. */
async function speak(p: Peer, audio: Uint8Array): Promise<string> {
  p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio) });
  p.send({ type: "input_audio_buffer.commit" });
  const events = await p.until("conversation.item.done");
  return String(obj(events.at(-1)!.item).id);
}

/** Adds a user text message and waits for its item. */
async function say(p: Peer, text: string): Promise<string> {
  p.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  });
  const events = await p.until("conversation.item.done");
  return String(obj(events.at(-1)!.item).id);
}

function sumDeltaBytes(events: Json[], type: string): number {
  return events.filter((e) => e.type === type)
    .reduce((n, e) => n + atob(String(e.delta)).length, 0);
}

/** A field's GA type: `string`, `integer`, `number`, `object`, `array`, `null`, or several with `|`. */
type FieldType = string;

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/**
 * Asserts a server event has GA's shape: `type` first, a string `event_id`
 * second (`event_...`), and each listed field of the listed type.
 */
function assertShape(e: Json, type: string, fields: Record<string, FieldType>): void {
  assert.equal(e.type, type);
  assert.deepEqual(Object.keys(e).slice(0, 2), ["type", "event_id"], type);
  assert.match(String(e.event_id), /^event_[A-Za-z0-9]{20}$/);
  for (const [key, want] of Object.entries(fields)) {
    const got = typeName(e[key]);
    const allowed = want.split("|");
    assert.ok(
      allowed.includes(got) || (got === "integer" && allowed.includes("number")),
      `${type}.${key}: expected ${want}, got ${got}`,
    );
  }
}

const DEFAULT_INSTRUCTIONS =
  "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.";

// ---- usage ---------------------------------------------------------------------

Deno.test("textTokens counts one token per 4 characters started", () => {
  const cases: [string, number][] = [["", 0], ["a", 1], ["abcd", 1], ["abcde", 2], [
    "😀😀😀😀",
    1,
  ], ["x".repeat(401), 101]];
  for (const [text, tokens] of cases) assert.equal(textTokens(text), tokens, text);
});

Deno.test("inputAudioTokens is 1 per 100 ms and outputAudioTokens 1 per 50 ms, started", () => {
  const cases: [number, number, number][] = [
    [0, 0, 0],
    [1, 1, 1],
    [50, 1, 1],
    [100, 1, 2],
    [101, 2, 3],
    [1000, 10, 20],
  ];
  for (const [ms, input, output] of cases) {
    assert.equal(inputAudioTokens(audioBytes(ms)), input, `${ms} ms in`);
    assert.equal(outputAudioTokens(audioBytes(ms)), output, `${ms} ms out`);
  }
  assert.equal(audioBytes(100), 4800);
});

Deno.test("usageOf caches the prefix the prompt shares with the previous one", () => {
  const seg = (key: string, text: number, audio = 0): PromptSegment => ({
    key,
    text,
    audio,
    image: 0,
  });
  const out = { text: 3, audio: 20, image: 0 };
  const first = usageOf([seg("i", 5), seg("a", 0, 10)], undefined, out);
  assert.deepEqual(first, {
    total_tokens: 38,
    input_tokens: 15,
    output_tokens: 23,
    input_token_details: {
      text_tokens: 5,
      audio_tokens: 10,
      image_tokens: 0,
      cached_tokens: 0,
      cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 },
    },
    output_token_details: { text_tokens: 3, audio_tokens: 20 },
  });
  const cases: [PromptSegment[], number][] = [
    [[seg("i", 5), seg("a", 0, 10), seg("b", 4)], 15],
    [[seg("i2", 5), seg("a", 0, 10)], 0], // new instructions bust the cache
    [[seg("i", 5), seg("a2", 0, 10)], 5],
    [[seg("i", 5)], 5],
  ];
  for (const [prompt, cached] of cases) {
    const u = usageOf(prompt, [seg("i", 5), seg("a", 0, 10)], out);
    assert.equal(u.input_token_details.cached_tokens, cached, JSON.stringify(prompt));
    assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  }
});

Deno.test("realtime usage: audio in and out by duration, the conversation is input, cached from the second response", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    const audio = pcm(1000);
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio.subarray(0, 20000)) });
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio.subarray(20000)) });
    p.send({ type: "input_audio_buffer.commit" });
    await p.until("conversation.item.done");
    p.send({ type: "response.create" });
    const first = await p.until("response.done");
    const usage1 = obj(obj(obj(first.at(-1)).response).usage);
    const transcript1 = String(
      first.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
    );
    const spoken = sumDeltaBytes(first, "response.output_audio.delta");
    assert.ok(spoken > 0);
    const userAudio = {
      type: "message",
      role: "user",
      content: [{ type: "input_audio", audio: encodeBase64(audio) }],
    };
    const reply1 = {
      type: "message",
      role: "assistant",
      content: [{
        type: "output_audio",
        transcript: transcript1,
        audio: encodeBase64(new Uint8Array(spoken)),
      }],
    };
    assert.deepEqual(
      usage1,
      usageForTurn({ instructions: DEFAULT_INSTRUCTIONS, input: [userAudio], output: [reply1] }),
    );
    assert.equal(obj(usage1.input_token_details).audio_tokens, 10); // 1 s of user audio
    assert.equal(obj(usage1.input_token_details).cached_tokens, 0);
    assert.equal(obj(usage1.output_token_details).audio_tokens, outputAudioTokens(spoken));
    assert.equal(obj(usage1.output_token_details).text_tokens, textTokens(transcript1));

    const text = { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] };
    p.send({ type: "conversation.item.create", item: text });
    await p.until("conversation.item.done");
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const second = await p.until("response.done");
    const usage2 = obj(obj(obj(second.at(-1)).response).usage);
    const text2 = String(second.find((e) => e.type === "response.output_text.done")?.text);
    const reply2 = {
      type: "message",
      role: "assistant",
      content: [{ type: "output_text", text: text2 }],
    };
    const turn1 = { instructions: DEFAULT_INSTRUCTIONS, input: [userAudio] };
    assert.deepEqual(
      usage2,
      usageForTurn({
        instructions: DEFAULT_INSTRUCTIONS,
        input: [userAudio, reply1, text],
        output: [reply2],
        previous: turn1,
      }),
    );
    const details = obj(usage2.input_token_details);
    // The instructions and the user's audio were read by the first response: cached now.
    assert.deepEqual(details.cached_tokens_details, {
      text_tokens: textTokens(DEFAULT_INSTRUCTIONS),
      audio_tokens: 10,
      image_tokens: 0,
    });
    // Input audio: the user's 1 s plus the first answer's audio read back at the input rate.
    assert.equal(details.audio_tokens, 10 + inputAudioTokens(spoken));
    assert.equal(obj(usage2.output_token_details).audio_tokens, 0);
  });
});

// ---- session and response configuration ------------------------------------------

Deno.test("applySessionUpdate refuses what OpenAI refuses, whole event, and merges audio a level down", () => {
  const current = defaultSession("gpt-realtime");
  const refusals: [Json, boolean, string, string | null][] = [
    [{ type: "realtime", id: "sess_x" }, false, "unknown_parameter", "session.id"],
    [
      { type: "realtime", object: "realtime.session" },
      false,
      "unknown_parameter",
      "session.object",
    ],
    [{ type: "realtime", expires_at: 1 }, false, "unknown_parameter", "session.expires_at"],
    [{ type: "realtime", voice: "ash" }, false, "unknown_parameter", "session.voice"],
    [
      { type: "realtime", turn_detection: null },
      false,
      "unknown_parameter",
      "session.turn_detection",
    ],
    [
      { type: "realtime", audio: { input: { vad: 1 } } },
      false,
      "unknown_parameter",
      "session.audio.input.vad",
    ],
    [{ instructions: "x" }, false, "missing_required_parameter", "session.type"],
    // A conversation session never becomes a transcription session: OpenAI's invalid_parameter.
    [{ type: "transcription" }, false, "invalid_parameter", ""],
    [{ type: "translation" }, false, "invalid_value", "session.type"],
    [{ type: "realtime", model: "gpt-other" }, false, "invalid_value", "session.model"],
    [{ type: "realtime", instructions: 3 }, false, "invalid_type", "session.instructions"],
    [
      { type: "realtime", output_modalities: ["text", "audio"] },
      false,
      "invalid_value",
      "session.output_modalities",
    ],
    [
      { type: "realtime", max_output_tokens: 5000 },
      false,
      "integer_above_max_value",
      "session.max_output_tokens",
    ],
    [
      { type: "realtime", max_output_tokens: 0 },
      false,
      "integer_below_min_value",
      "session.max_output_tokens",
    ],
    [
      { type: "realtime", audio: { output: { voice: "ash" } } },
      true,
      "cannot_update_voice",
      "session.audio.output.voice",
    ],
  ];
  for (const [update, spoke, code, param] of refusals) {
    const r = applySessionUpdate(current, update, spoke);
    assert.ok("error" in r, JSON.stringify(update));
    assert.equal(r.error.code, code, JSON.stringify(update));
    assert.equal(r.error.param, param);
  }
  // The same voice again is no change, even after audio.
  assert.ok(
    "session" in applySessionUpdate(current, {
      type: "realtime",
      audio: { output: { voice: "alloy" } },
    }, true),
  );
  const r = applySessionUpdate(current, {
    type: "realtime",
    model: "gpt-realtime",
    instructions: "Be brief.",
    tools: [{ type: "function", name: "f" }],
    audio: { input: { transcription: { model: "whisper-1" } }, output: { voice: "ash" } },
  }, false);
  assert.ok("session" in r);
  assert.equal(r.session.instructions, "Be brief.");
  const audio = obj(r.session.audio);
  assert.deepEqual(obj(audio.input).transcription, { model: "whisper-1" });
  assert.deepEqual(obj(audio.input).format, { type: "audio/pcm", rate: 24000 }); // kept
  assert.equal(obj(audio.output).voice, "ash");
  assert.equal(obj(audio.output).speed, 1); // kept
  assert.equal(r.session.id, current.id); // read-only fields stay as OpenAI set them
  const vad = applySessionUpdate(current, {
    type: "realtime",
    audio: { input: { turn_detection: { type: "server_vad", silence_duration_ms: 600 } } },
  }, false);
  assert.ok("session" in vad);
  assert.deepEqual(obj(obj(vad.session.audio).input).turn_detection, {
    type: "server_vad",
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 600,
    idle_timeout_ms: null,
    create_response: true,
    interrupt_response: true,
  });
  const off = applySessionUpdate(current, {
    type: "realtime",
    audio: { input: { turn_detection: null } },
  }, false);
  assert.ok("session" in off);
  assert.equal(obj(obj(off.session.audio).input).turn_detection, null);
  assert.equal(current.instructions, DEFAULT_INSTRUCTIONS); // never mutated
});

Deno.test("resolveResponse overrides the session for one response and refuses unknown fields", () => {
  const session = defaultSession("gpt-realtime");
  const base = resolveResponse(session, undefined, false);
  assert.ok("config" in base);
  assert.deepEqual(base.config, {
    instructions: DEFAULT_INSTRUCTIONS,
    output_modalities: ["audio"],
    max_output_tokens: "inf",
    voice: "alloy",
    tools: [],
    tool_choice: "auto",
    metadata: null,
    conversation: "auto",
    input: undefined,
  });
  const over = resolveResponse(session, {
    instructions: "Speak like a pirate.",
    output_modalities: ["text"],
    max_output_tokens: 7,
    audio: { output: { voice: "marin" } },
    tools: [{ type: "function", name: "lookup" }],
    tool_choice: "required",
    metadata: { topic: "test" },
    conversation: "none",
    input: [],
  }, false);
  assert.ok("config" in over);
  assert.deepEqual(over.config, {
    instructions: "Speak like a pirate.",
    output_modalities: ["text"],
    max_output_tokens: 7,
    voice: "marin",
    tools: [{ type: "function", name: "lookup" }],
    tool_choice: "required",
    metadata: { topic: "test" },
    conversation: "none",
    input: [],
  });
  const cases: [unknown, string, string][] = [
    [{ modalities: ["text"] }, "unknown_parameter", "response.modalities"],
    [{ voice: "ash" }, "unknown_parameter", "response.voice"],
    ["text", "invalid_type", "response"],
    [{ max_output_tokens: "lots" }, "invalid_type", "response.max_output_tokens"],
    [{ metadata: { n: 1 } }, "invalid_type", "response.metadata.n"],
    [{ audio: { input: {} } }, "unknown_parameter", "response.audio.input"],
  ];
  for (const [params, code, param] of cases) {
    const r = resolveResponse(session, params, false);
    assert.ok("error" in r, JSON.stringify(params));
    assert.deepEqual([r.error.code, r.error.param], [code, param]);
  }
  const locked = resolveResponse(session, { audio: { output: { voice: "ash" } } }, true);
  assert.ok("error" in locked);
  assert.equal(locked.error.code, "cannot_update_voice");
});

Deno.test("realtime session.update: session.updated carries the effective session; a refusal changes nothing", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    p.send({
      type: "session.update",
      session: { type: "realtime", instructions: "Be brief.", output_modalities: ["text"] },
    });
    const updated = obj((await p.expect("session.updated")).session);
    assert.equal(updated.instructions, "Be brief.");
    assert.deepEqual(updated.output_modalities, ["text"]);
    assert.equal(updated.model, "gpt-realtime");
    assert.match(String(updated.id), /^sess_/);
    assert.equal(typeof obj(updated.audio).input, "object");

    p.send({
      type: "session.update",
      event_id: "evt_bad",
      session: { ...updated, instructions: "Ignore that." }, // echoes id, object, expires_at
    });
    const refused = await p.expect("error");
    assert.deepEqual(refused.error, {
      type: "invalid_request_error",
      code: "unknown_parameter",
      message: "Unknown parameter: 'session.object'.",
      param: "session.object",
      event_id: "evt_bad",
    });
    const conv = oa.connections[0]!.realtime!;
    assert.equal(conv.session.instructions, "Be brief.");
  });
});

Deno.test("realtime response.create: instructions, modalities, voice, metadata and tools take effect for one response", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    p.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "hello" }] },
    });
    await p.until("conversation.item.done");
    const tools = [{ type: "function", name: "lookup", parameters: { type: "object" } }];
    p.send({
      type: "response.create",
      response: {
        instructions: "Speak like a pirate.",
        audio: { output: { voice: "marin" } },
        metadata: { purpose: "check" },
        tools,
        tool_choice: "none",
      },
    });
    const events = await p.until("response.done");
    const transcript = String(
      events.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
    );
    assert.ok(
      transcript.startsWith("[Speak like a pirate.] "),
      `the reply shows the effective instructions: ${transcript}`,
    );
    const response = obj(obj(events.at(-1)).response);
    assert.deepEqual(obj(obj(response.audio).output).voice, "marin");
    assert.deepEqual(response.metadata, { purpose: "check" });
    assert.deepEqual(response.output_modalities, ["audio"]);
    const conv = oa.connections[0]!.realtime!;
    assert.equal(conv.lastResponse?.instructions, "Speak like a pirate.");
    assert.deepEqual(conv.lastResponse?.tools, tools);
    assert.equal(conv.lastResponse?.tool_choice, "none");
    assert.equal(conv.session.instructions, DEFAULT_INSTRUCTIONS, "the session is untouched");
    assert.equal(conv.responses[0]?.status, "completed");
    assert.deepEqual(conv.responses[0]?.usage, response.usage);

    // Without overrides the next answer is the session's again: default instructions, no brackets.
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const plain = await p.until("response.done");
    const text = String(plain.find((e) => e.type === "response.output_text.done")?.text);
    assert.ok(text.startsWith('You said: "hello".'), text);
    assert.equal(conv.lastResponse?.voice, "alloy");

    // The voice is locked once audio went out, as OpenAI does.
    p.send({
      type: "response.create",
      event_id: "evt_v",
      response: { audio: { output: { voice: "ash" } } },
    });
    const locked = await p.expect("error");
    assert.equal(obj(locked.error).code, "cannot_update_voice");
    assert.equal(obj(locked.error).event_id, "evt_v");
  });
});

Deno.test("realtime response.create: max_output_tokens cuts the answer, incomplete with reason max_output_tokens", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({
      type: "conversation.item.create",
      item: {
        type: "message",
        role: "user",
        content: [{ type: "input_text", text: "one two three four five six seven eight" }],
      },
    });
    await p.until("conversation.item.done");
    for (const modality of ["text", "audio"]) {
      p.send({
        type: "response.create",
        response: { output_modalities: [modality], max_output_tokens: 5 },
      });
      const events = await p.until("response.done");
      const response = obj(obj(events.at(-1)).response);
      assert.equal(response.status, "incomplete", modality);
      assert.deepEqual(response.status_details, {
        type: "incomplete",
        reason: "max_output_tokens",
      });
      assert.equal(response.max_output_tokens, 5);
      const usage = obj(response.usage);
      assert.ok((usage.output_tokens as number) <= 5, `${modality}: ${usage.output_tokens}`);
      assert.ok((usage.output_tokens as number) > 0);
      const item = obj(obj(events.find((e) => e.type === "response.output_item.done")).item);
      assert.equal(item.status, "incomplete");
      const said = modality === "text"
        ? String(events.find((e) => e.type === "response.output_text.done")?.text)
        : String(
          events.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
        );
      assert.ok(said.length > 0 && !said.includes("eight"), said);
    }
  });
});

Deno.test("realtime response.create conversation none: out of band, nothing added to the conversation", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    p.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "in band" }] },
    });
    await p.until("conversation.item.done");
    const conv = oa.connections[0]!.realtime!;
    const before = conv.items;
    p.send({
      type: "response.create",
      response: {
        conversation: "none",
        output_modalities: ["text"],
        metadata: { kind: "summary" },
        input: [{
          type: "message",
          role: "user",
          content: [{ type: "input_text", text: "out of band" }],
        }],
      },
    });
    const events = await p.until("response.done");
    assert.ok(!events.some((e) => String(e.type).startsWith("conversation.")));
    const response = obj(obj(events.at(-1)).response);
    assert.equal(response.conversation_id, null);
    assert.deepEqual(response.metadata, { kind: "summary" });
    const text = String(events.find((e) => e.type === "response.output_text.done")?.text);
    assert.equal(text, 'You said: "out of band".');
    assert.deepEqual(conv.items, before);
    // The same response in band lands in the conversation.
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const inBand = await p.until("response.done");
    assert.ok(inBand.some((e) => e.type === "conversation.item.done"));
    assert.match(String(obj(obj(inBand.at(-1)).response).conversation_id), /^conv_/);
    assert.equal(conv.items.length, before.length + 1);
  });
});

// ---- input transcription -----------------------------------------------------------

Deno.test("realtime transcription: gpt-4o-transcribe deltas and completed with token usage; the item keeps the transcript", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    const transcription = { model: "gpt-4o-transcribe", prompt: "Expect greetings." };
    p.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { transcription } } },
    });
    await p.expect("session.updated");
    const conv = oa.connections[0]!.realtime!;
    conv.nextTranscripts.push("hello there world");
    const audio = pcm(500);
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio) });
    p.send({ type: "input_audio_buffer.commit" });
    const committed = await p.expect("input_audio_buffer.committed");
    assertShape(committed, "input_audio_buffer.committed", {
      previous_item_id: "string|null",
      item_id: "string",
    });
    await p.expect("conversation.item.added");
    const done = await p.expect("conversation.item.done");
    // Transcription runs after the commit: the item is done before its transcript is.
    assert.deepEqual(obj(done.item).content, [{ type: "input_audio", transcript: null }]);
    const deltas: string[] = [];
    for (;;) {
      const e = await p.next();
      if (e.type === "conversation.item.input_audio_transcription.completed") {
        assertShape(e, String(e.type), {
          item_id: "string",
          content_index: "integer",
          transcript: "string",
          usage: "object",
        });
        assert.equal(e.item_id, committed.item_id);
        assert.equal(e.content_index, 0);
        assert.equal(e.transcript, "hello there world");
        assert.deepEqual(
          e.usage,
          transcriptionUsage(
            "gpt-4o-transcribe",
            audio.byteLength,
            "hello there world",
            transcription.prompt,
          ),
        );
        assert.deepEqual(e.usage, {
          type: "tokens",
          total_tokens: 5 + 5 + 5,
          input_tokens: 5 + 5,
          output_tokens: 5,
          input_token_details: { text_tokens: 5, audio_tokens: 5 },
        });
        break;
      }
      assertShape(e, "conversation.item.input_audio_transcription.delta", {
        item_id: "string",
        content_index: "integer",
        delta: "string",
      });
      assert.equal(e.item_id, committed.item_id);
      deltas.push(String(e.delta));
    }
    assert.deepEqual(deltas, ["hello ", "there ", "world"]);
    assert.deepEqual(conv.items.at(-1)?.content, [
      { type: "input_audio", transcript: "hello there world" },
    ]);
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const reply = await p.until("response.done");
    const text = String(reply.find((e) => e.type === "response.output_text.done")?.text);
    assert.ok(text.startsWith('You said: "hello there world".'), text);
  });
});

Deno.test("realtime transcription: whisper-1 is one delta and duration usage in seconds", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { transcription: { model: "whisper-1" } } } },
    });
    await p.expect("session.updated");
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(pcm(1500)) });
    p.send({ type: "input_audio_buffer.commit" });
    await p.until("conversation.item.done");
    const delta = await p.expect("conversation.item.input_audio_transcription.delta");
    assert.equal(delta.delta, "1500 ms of audio");
    const completed = await p.expect("conversation.item.input_audio_transcription.completed");
    assert.equal(completed.transcript, "1500 ms of audio");
    assert.deepEqual(completed.usage, { type: "duration", seconds: 1.5 });
  });
});

Deno.test("realtime transcripts: a marker in the audio, the stand-in's queue, else the duration; none without transcription", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    const say = async (audio: Uint8Array): Promise<string> => {
      p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio) });
      p.send({ type: "input_audio_buffer.commit" });
      await p.until("conversation.item.done");
      p.send({ type: "response.create", response: { output_modalities: ["text"] } });
      // No transcription configured: no transcription events between the item and the response.
      assert.equal((await p.next()).type, "response.created");
      const events = await p.until("response.done");
      return String(events.find((e) => e.type === "response.output_text.done")?.text);
    };
    assert.ok((await say(withTranscript("marked words", pcm(300)))).startsWith(
      'You said: "marked words".',
    ));
    oa.transcripts.push("from the queue");
    assert.ok((await say(pcm(300))).startsWith('You said: "from the queue".'));
    assert.equal(oa.transcripts.length, 0);
    assert.ok((await say(pcm(250))).startsWith('You said: "250 ms of audio".'));
    const first = oa.connections[0]!.realtime!.items[0]!;
    assert.deepEqual(first.content, [{ type: "input_audio", transcript: null }]);
    // Under 100 ms cannot be committed, as OpenAI says.
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(pcm(50)) });
    p.send({ type: "input_audio_buffer.commit", event_id: "evt_c" });
    const small = await p.expect("error");
    assert.equal(obj(small.error).code, "input_audio_buffer_commit_empty");
    assert.match(String(obj(small.error).message), /only has 50\.00ms of audio/);
  });
});

// ---- speech, pacing, cancel, truncate -------------------------------------------------

Deno.test("realtime speech: plays the user's own audio back in 100 ms deltas, with the transcript interleaved", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    const audio = pcm(1000, 3);
    await speak(p, audio);
    p.send({ type: "response.create" });
    const events = await p.until("response.done");
    const deltas = events.filter((e) => e.type === "response.output_audio.delta");
    assert.equal(deltas.length, 1000 / CHUNK_MS);
    for (const d of deltas) {
      assertShape(d, "response.output_audio.delta", {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        delta: "string",
      });
    }
    assert.deepEqual(spokenAudio(events), audio, "the round trip plays back what the user said");
    const types = events.map((e) => String(e.type));
    // Transcript deltas come between audio deltas, not all after them.
    const firstWord = types.indexOf("response.output_audio_transcript.delta");
    assert.ok(firstWord > 0 && firstWord < types.lastIndexOf("response.output_audio.delta"));
    const transcript = events.filter((e) => e.type === "response.output_audio_transcript.delta")
      .map((e) => String(e.delta)).join("");
    const done = events.find((e) => e.type === "response.output_audio_transcript.done")!;
    assertShape(done, "response.output_audio_transcript.done", {
      response_id: "string",
      item_id: "string",
      output_index: "integer",
      content_index: "integer",
      transcript: "string",
    });
    assert.equal(done.transcript, transcript);
    assertShape(
      events.find((e) => e.type === "response.output_audio.done")!,
      "response.output_audio.done",
      {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
      },
    );
    const part = events.find((e) => e.type === "response.content_part.done")!;
    assert.deepEqual(part.part, { type: "audio", transcript });
  });
});

Deno.test("realtime speech: text input is answered with a tone as long as the words", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    await say(p, "play me a tone");
    p.send({ type: "response.create" });
    const events = await p.until("response.done");
    const transcript = String(
      events.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
    );
    const words = transcript.match(/\S+\s*/g)!.length;
    const audio = spokenAudio(events);
    assert.equal(audio.byteLength, audioBytes(SPOKEN_MS_PER_WORD * words));
    const samples = new Int16Array(audio.buffer, audio.byteOffset, audio.byteLength / 2);
    const peak = samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(peak > 3000 && peak < 8000, `a quiet, audible tone: peak ${peak}`);
  });
});

Deno.test("realtime pace: realtime streams 100 ms of audio every 100 ms; instant is immediate", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    await speak(p, pcm(1000));
    const t0 = performance.now();
    p.send({ type: "response.create" });
    const times: number[] = [];
    for (;;) {
      const e = await p.next();
      if (e.type === "response.output_audio.delta") times.push(performance.now() - t0);
      if (e.type === "response.done") break;
    }
    assert.equal(times.length, 10);
    const spread = times.at(-1)! - times[0]!;
    assert.ok(spread >= 850 && spread < 2000, `10 deltas of 100 ms over ${spread.toFixed(0)} ms`);

    oa.behaviour = { kind: "realtime" }; // the stand-in's own pace: instant by default
    const q = await open();
    await speak(q, pcm(1000));
    const t1 = performance.now();
    q.send({ type: "response.create" });
    await q.until("response.done");
    assert.ok(performance.now() - t1 < 500, "instant stays instant");
  }, { kind: "realtime", pace: "realtime" });
});

Deno.test("realtime response.cancel: stops a speaking response, cancelled with usage for what was sent", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    await speak(p, pcm(3000));
    p.send({ type: "response.create" });
    const head = await p.until("response.output_audio.delta");
    const sent = performance.now();
    p.send({ type: "response.create", event_id: "evt_busy" });
    const busy = await p.until("error");
    assert.equal(obj(busy.at(-1)!.error).code, "conversation_already_has_active_response");
    p.send({ type: "response.cancel" });
    const rest = await p.until("response.done");
    assert.ok(performance.now() - sent < 1000, "the cancel takes effect at once");
    const events = [...head, ...busy, ...rest];
    const response = obj(events.at(-1)!.response);
    assert.equal(response.status, "cancelled");
    assert.deepEqual(response.status_details, { type: "cancelled", reason: "client_cancelled" });
    const audio = spokenAudio(events);
    assert.ok(audio.byteLength > 0 && audio.byteLength < audioBytes(3000), `${audio.byteLength}`);
    const transcript = events.filter((e) => e.type === "response.output_audio_transcript.delta")
      .map((e) => String(e.delta)).join("");
    // The closing events still come, with what was said so far.
    for (const type of ["response.output_audio.done", "response.content_part.done"]) {
      assert.ok(events.some((e) => e.type === type), type);
    }
    assert.equal(
      events.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
      transcript,
    );
    assert.equal(
      obj(obj(events.find((e) => e.type === "response.output_item.done")).item).status,
      "incomplete",
    );
    const usage = obj(response.usage);
    assert.deepEqual(usage.output_token_details, {
      text_tokens: textTokens(transcript),
      audio_tokens: outputAudioTokens(audio.byteLength),
    });
    const conv = oa.connections[0]!.realtime!;
    assert.equal(conv.responses[0]?.status, "cancelled");

    p.send({ type: "response.cancel", event_id: "evt_none" });
    const none = obj((await p.expect("error")).error);
    assert.deepEqual([none.code, none.event_id], ["response_cancel_not_active", "evt_none"]);
  }, { kind: "realtime", pace: "realtime" });
});

Deno.test("realtime out-of-band responses may run beside one in the conversation", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    await speak(p, pcm(1000));
    p.send({ type: "response.create" });
    await p.until("response.output_audio.delta");
    p.send({
      type: "response.create",
      response: { conversation: "none", output_modalities: ["text"], metadata: { n: "2" } },
    });
    const seen = await p.until("response.done");
    // The first to finish is the out-of-band text one: the audio still plays.
    assert.deepEqual(obj(obj(seen.at(-1)).response).metadata, { n: "2" });
    await p.until("response.done");
  }, { kind: "realtime", pace: "realtime" });
});

Deno.test("realtime pace: a response takes its place in the conversation when created, not when streamed", async () => {
  await withStandIn(async (oa, open) => {
    // Answers before the response are still going out (40 ms apart) when the next item arrives.
    oa.eventDelayMs = 40;
    const p = await open();
    const item = (text: string) => ({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    p.send(item("before"));
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    p.send(item("meanwhile"));
    const events = [...await p.until("response.done")];
    while (events.filter((e) => e.type === "conversation.item.done").length < 3) {
      events.push(...await p.until("conversation.item.done"));
    }
    const answer = events.find((e) =>
      e.type === "conversation.item.added" && obj(e.item).role === "assistant"
    )!;
    const meanwhile = events.find((e) =>
      e.type === "conversation.item.done" &&
      JSON.stringify(obj(e.item).content).includes("meanwhile")
    )!;
    assert.equal(meanwhile.previous_item_id, obj(answer.item).id);
    assert.deepEqual(
      oa.connections[0]!.realtime!.items.map((i) => i.role),
      ["user", "assistant", "user"],
    );
  });
});

Deno.test("realtime conversation.item.truncate: cuts the kept audio and transcript to what was played", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    await speak(p, pcm(1000));
    p.send({ type: "response.create" });
    const events = await p.until("response.done");
    const output = obj(events.at(-1)!.response).output as Json[];
    const itemId = String(output[0]!.id);
    const full = String(
      events.find((e) => e.type === "response.output_audio_transcript.done")?.transcript,
    );
    const errors: [Json, string, string][] = [
      [
        { item_id: "item_nope", content_index: 0, audio_end_ms: 10 },
        "item_truncate_invalid_item_id",
        "item_id",
      ],
      [{ item_id: itemId, content_index: 0, audio_end_ms: 1500 }, "invalid_value", "audio_end_ms"],
      [{ item_id: itemId, content_index: 3, audio_end_ms: 10 }, "invalid_value", "content_index"],
      [{ item_id: itemId, content_index: 0, audio_end_ms: -1 }, "invalid_type", "audio_end_ms"],
    ];
    for (const [fields, code, param] of errors) {
      p.send({ type: "conversation.item.truncate", ...fields });
      const e = obj((await p.expect("error")).error);
      assert.deepEqual([e.code, e.param], [code, param], JSON.stringify(fields));
    }
    p.send({
      type: "conversation.item.truncate",
      item_id: itemId,
      content_index: 0,
      audio_end_ms: 1500,
    });
    assert.equal(
      obj((await p.expect("error")).error).message,
      "Audio content of 1000ms is already shorter than 1500ms",
    );
    const userId = String(oa.connections[0]!.realtime!.items[0]!.id);
    p.send({
      type: "conversation.item.truncate",
      item_id: userId,
      content_index: 0,
      audio_end_ms: 10,
    });
    assert.equal(obj((await p.expect("error")).error).code, "invalid_value");

    p.send({
      type: "conversation.item.truncate",
      item_id: itemId,
      content_index: 0,
      audio_end_ms: 500,
    });
    const truncated = await p.expect("conversation.item.truncated");
    assertShape(truncated, "conversation.item.truncated", {
      item_id: "string",
      content_index: "integer",
      audio_end_ms: "integer",
    });
    assert.deepEqual([truncated.item_id, truncated.content_index, truncated.audio_end_ms], [
      itemId,
      0,
      500,
    ]);
    const kept = obj((oa.connections[0]!.realtime!.items[1]!.content as Json[])[0]);
    const heard = String(kept.transcript);
    assert.ok(heard.length > 0 && heard.length < full.length && full.startsWith(heard), heard);
    // The next response reads the cut audio: 500 ms at 1 token per 100 ms, no longer cached.
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const next = await p.until("response.done");
    const details = obj(obj(obj(next.at(-1)!.response).usage).input_token_details);
    assert.equal(details.audio_tokens, 10 + 5);
    assert.equal(obj(details.cached_tokens_details).audio_tokens, 10);
  });
});

Deno.test("realtime output_audio_buffer.clear is refused over a WebSocket, as OpenAI does", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({ type: "output_audio_buffer.clear", event_id: "evt_clear" });
    const e = await p.expect("error");
    assert.deepEqual(obj(e.error), {
      type: "invalid_request_error",
      code: "invalid_value",
      message:
        "Invalid value: output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
      param: "type",
      event_id: "evt_clear",
    });
  });
});

// ---- conversation state, function calls, replies from the context ---------------------

function user(text: string): ContextItem {
  return { item: { type: "message", role: "user", content: [{ type: "input_text", text }] } };
}

function assistant(text: string): ContextItem {
  return { item: { type: "message", role: "assistant", content: [{ type: "output_text", text }] } };
}

Deno.test("replyFor answers from the context: last and first user text, earlier items, function calls", () => {
  const lookup = [{ type: "function", name: "lookup" }, { type: "function", name: "book" }];
  const plain = { instructions: "default", tools: [], tool_choice: "auto" };
  const withTools = { ...plain, tools: lookup };
  const call = (name: string, args = "{}") => ({ kind: "function_call", name, arguments: args });
  const text = (t: string) => ({ kind: "text", text: t });
  const heardAudio: ContextItem = {
    item: { type: "message", role: "user", content: [{ type: "input_audio", transcript: null }] },
    heard: "300 ms of audio",
  };
  const output: ContextItem = {
    item: { type: "function_call_output", call_id: "call_1", output: "Sunny, 20 C" },
  };
  const calledLookup: ContextItem = {
    item: { type: "function_call", call_id: "call_1", name: "lookup", arguments: "{}" },
  };
  const cases: [string, ContextItem[], Parameters<typeof replyFor>[1], unknown][] = [
    ["fresh", [user("hi")], plain, text('You said: "hi".')],
    ["nothing said", [], plain, text("Hello from the stand-in.")],
    [
      "assistant only",
      [assistant("a")],
      plain,
      text("Hello from the stand-in. I remember 1 earlier item."),
    ],
    [
      "restored",
      [user("my name is Ada"), assistant("ok"), user("what is my name?")],
      plain,
      text(
        'You said: "what is my name?". I remember 2 earlier items; the first thing you said was: "my name is Ada".',
      ),
    ],
    [
      "audio heard",
      [heardAudio, user("again")],
      plain,
      text(
        'You said: "again". I remember 1 earlier item; the first thing you said was: "300 ms of audio".',
      ),
    ],
    [
      "instructions shown",
      [user("hi")],
      { ...plain, instructions: "Be brief." },
      text('[Be brief.] You said: "hi".'),
    ],
    ["call by name", [user("please call lookup now")], withTools, call("lookup")],
    [
      "call with arguments",
      [user('call book with {"day": "friday"}')],
      withTools,
      call("book", '{"day":"friday"}'),
    ],
    ["no such tool", [user("call dance")], withTools, text('You said: "call dance".')],
    [
      "tools off",
      [user("call lookup")],
      { ...withTools, tool_choice: "none" },
      text('You said: "call lookup".'),
    ],
    [
      "forced",
      [user("hi")],
      { ...withTools, tool_choice: { type: "function", name: "book" } },
      call("book"),
    ],
    ["required", [user("hi")], { ...withTools, tool_choice: "required" }, call("lookup")],
    ["not offered", [user("call lookup")], plain, text('You said: "call lookup".')],
    [
      "after the output",
      [user("call lookup"), calledLookup, output],
      withTools,
      text("The lookup function returned: Sunny, 20 C"),
    ],
  ];
  for (const [name, context, config, want] of cases) {
    assert.deepEqual(replyFor(context, config, "default"), want, name);
  }
});

Deno.test("realtime conversation state: items in order with previous_item_id, retrieve with audio, delete, refusals", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    const conv = oa.connections[0]!.realtime!;
    const create = async (item: Json, extra: Json = {}): Promise<Json> => {
      p.send({ type: "conversation.item.create", item, ...extra });
      const added = await p.expect("conversation.item.added");
      const done = await p.expect("conversation.item.done");
      for (const e of [added, done]) {
        assertShape(e, String(e.type), { previous_item_id: "string|null", item: "object" });
      }
      assert.deepEqual(added.item, done.item);
      return done;
    };
    const a = await create({
      id: "item_a",
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "first" }],
    });
    assert.equal(a.previous_item_id, null);
    assert.deepEqual(a.item, {
      id: "item_a",
      type: "message",
      object: "realtime.item",
      status: "completed",
      role: "user",
      content: [{ type: "input_text", text: "first" }],
    });
    const voice = pcm(400, 5);
    const b = await create({
      type: "message",
      role: "user",
      content: [{ type: "input_audio", audio: encodeBase64(voice), transcript: "spoken words" }],
    });
    assert.equal(b.previous_item_id, "item_a");
    // Events never carry audio bytes; retrieve does.
    assert.deepEqual(obj(b.item).content, [{ type: "input_audio", transcript: "spoken words" }]);
    const bId = String(obj(b.item).id);
    await create({
      id: "item_sys",
      type: "message",
      role: "system",
      content: [{ type: "input_text", text: "be kind" }],
    }, { previous_item_id: "root" });
    const mid = await create({
      id: "item_mid",
      type: "message",
      role: "assistant",
      content: [{ type: "output_text", text: "noted" }],
    }, { previous_item_id: "item_a" });
    assert.equal(mid.previous_item_id, "item_a");
    const call = await create({ type: "function_call", name: "lookup", arguments: "{}" });
    const callId = String(obj(call.item).call_id);
    assert.match(callId, /^call_/);
    await create({ type: "function_call_output", call_id: callId, output: "42" });
    assert.deepEqual(conv.items.map((i) => i.id ?? i.type), [
      "item_sys",
      "item_a",
      "item_mid",
      bId,
      obj(call.item).id,
      conv.items[5]!.id,
    ]);

    p.send({ type: "conversation.item.retrieve", item_id: bId });
    const retrieved = await p.expect("conversation.item.retrieved");
    assertShape(retrieved, "conversation.item.retrieved", { item: "object" });
    const part = obj((obj(retrieved.item).content as Json[])[0]);
    assert.deepEqual(decodeBase64(String(part.audio)), voice);
    assert.equal(part.transcript, "spoken words");

    const refusals: [Json, string, string][] = [
      [
        { type: "conversation.item.retrieve", item_id: "item_zz" },
        "item_retrieve_invalid_item_id",
        "item_id",
      ],
      [
        { type: "conversation.item.delete", item_id: "item_zz" },
        "item_delete_invalid_item_id",
        "item_id",
      ],
      [
        {
          type: "conversation.item.create",
          item: { id: "item_a", type: "message", role: "user", content: [] },
        },
        "item_create_duplicate_item_id",
        "item.id",
      ],
      [
        {
          type: "conversation.item.create",
          item: {
            type: "message",
            role: "assistant",
            content: [{ type: "output_audio", transcript: "x" }],
          },
        },
        "invalid_value",
        "item.content[0].type",
      ],
      [
        { type: "conversation.item.create", item: { type: "message", role: "robot", content: [] } },
        "invalid_value",
        "item.role",
      ],
      [
        { type: "conversation.item.create", item: { type: "note" } },
        "invalid_value",
        "item.type",
      ],
      [
        { type: "conversation.item.create", item: { type: "function_call_output", output: "x" } },
        "missing_required_parameter",
        "item.call_id",
      ],
      [
        {
          type: "conversation.item.create",
          previous_item_id: "item_zz",
          item: { type: "message", role: "user", content: [] },
        },
        "invalid_value",
        "previous_item_id",
      ],
    ];
    for (const [event, code, param] of refusals) {
      p.send({ ...event, event_id: "evt_r" });
      const e = obj((await p.expect("error")).error);
      assert.deepEqual(
        [e.code, e.param, e.event_id],
        [code, param, "evt_r"],
        JSON.stringify(event),
      );
    }
    assert.equal(conv.items.length, 6, "refused events changed nothing");

    p.send({ type: "conversation.item.delete", item_id: "item_mid" });
    const deleted = await p.expect("conversation.item.deleted");
    assertShape(deleted, "conversation.item.deleted", { item_id: "string" });
    assert.equal(deleted.item_id, "item_mid");
    assert.equal(conv.items.length, 5);
    assert.deepEqual(conv.retrieve(bId)?.content, [
      { type: "input_audio", transcript: "spoken words", audio: encodeBase64(voice) },
    ]);
  });
});

Deno.test("realtime function call round trip: arguments streamed, call item done, the output answered", async () => {
  await withStandIn(async (oa, open) => {
    const p = await open();
    const tools = [{
      type: "function",
      name: "get_weather",
      description: "Weather for a city",
      parameters: { type: "object", properties: { city: { type: "string" } } },
    }];
    p.send({ type: "session.update", session: { type: "realtime", tools } });
    await p.expect("session.updated");
    await say(p, 'Please call get_weather with {"city": "Oslo"}');
    p.send({ type: "response.create" });
    const events = await p.until("response.done");
    const types = events.map((e) => String(e.type));
    assert.deepEqual(types.filter((t) => t !== "response.function_call_arguments.delta"), [
      "response.created",
      "response.output_item.added",
      "conversation.item.added",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "conversation.item.done",
      "response.done",
    ]);
    const deltas = events.filter((e) => e.type === "response.function_call_arguments.delta");
    assert.ok(deltas.length > 1);
    for (const d of deltas) {
      assertShape(d, "response.function_call_arguments.delta", {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        call_id: "string",
        delta: "string",
      });
    }
    const args = '{"city":"Oslo"}';
    assert.equal(deltas.map((d) => d.delta).join(""), args);
    const argsDone = events.find((e) => e.type === "response.function_call_arguments.done")!;
    assertShape(argsDone, "response.function_call_arguments.done", {
      response_id: "string",
      item_id: "string",
      output_index: "integer",
      call_id: "string",
      name: "string",
      arguments: "string",
    });
    assert.equal(argsDone.name, "get_weather");
    assert.equal(argsDone.arguments, args);
    const item = obj(events.find((e) => e.type === "response.output_item.done")!.item);
    assert.deepEqual(
      [item.type, item.status, item.name, item.call_id, item.arguments],
      ["function_call", "completed", "get_weather", argsDone.call_id, args],
    );
    const response = obj(events.at(-1)!.response);
    assert.deepEqual(response.output, [item]);
    assert.deepEqual(obj(response.usage).output_token_details, {
      text_tokens: textTokens("get_weather") + textTokens(args),
      audio_tokens: 0,
    });

    p.send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: item.call_id, output: "Sunny, 20 C" },
    });
    await p.until("conversation.item.done");
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const answer = await p.until("response.done");
    assert.equal(
      answer.find((e) => e.type === "response.output_text.done")?.text,
      "The get_weather function returned: Sunny, 20 C",
    );
    assert.deepEqual(
      oa.connections[0]!.realtime!.items.map((i) => i.type),
      ["message", "function_call", "function_call_output", "message"],
    );
  });
});

Deno.test("realtime replies tell a restored conversation from a fresh one", async () => {
  await withStandIn(async (oa, open) => {
    const history = [
      { type: "message", role: "user", content: [{ type: "input_text", text: "I am Ada" }] },
      { type: "message", role: "assistant", content: [{ type: "output_text", text: "Hello Ada" }] },
      {
        type: "message",
        role: "user",
        content: [{ type: "input_audio", transcript: "I like tea" }],
      },
    ];
    const restored = await open();
    for (const item of history) {
      restored.send({ type: "conversation.item.create", item });
      await restored.until("conversation.item.done");
    }
    const fresh = await open();
    for (const p of [restored, fresh]) {
      await say(p, "who am I?");
      p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    }
    const replyOf = async (p: Peer) =>
      String(
        (await p.until("response.done")).find((e) => e.type === "response.output_text.done")?.text,
      );
    assert.equal(
      await replyOf(restored),
      'You said: "who am I?". I remember 3 earlier items; the first thing you said was: "I am Ada".',
    );
    assert.equal(await replyOf(fresh), 'You said: "who am I?".');
    // What the restored session received, as the stand-in holds it.
    assert.deepEqual(
      oa.connections[0]!.realtime!.items.slice(0, 3).map((i) => [i.role, i.content]),
      history.map((i) => [i.role, i.content]),
    );
  });
});

// ---- GA shapes of a whole exchange ------------------------------------------------------

const RESPONSE_FIELDS: Record<string, FieldType> = {
  object: "string",
  id: "string",
  conversation_id: "string|null",
  output_modalities: "array",
  max_output_tokens: "integer|string",
  audio: "object",
  metadata: "object|null",
  status: "string",
  status_details: "object|null",
  output: "array",
  usage: "object|null",
};

Deno.test("realtime GA shapes: every event of a text and an audio exchange has its required fields", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(pcm(200)) });
    p.send({ type: "input_audio_buffer.clear" });
    assertShape(await p.expect("input_audio_buffer.cleared"), "input_audio_buffer.cleared", {});
    const userId = await say(p, "shape check");
    const shapes: Record<string, Record<string, FieldType>> = {
      "response.created": { response: "object" },
      "response.output_item.added": {
        response_id: "string",
        output_index: "integer",
        item: "object",
      },
      "conversation.item.added": { previous_item_id: "string|null", item: "object" },
      "response.content_part.added": {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        part: "object",
      },
      "response.output_text.delta": {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        delta: "string",
      },
      "response.output_text.done": {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        text: "string",
      },
      "response.output_audio_transcript.delta": {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        delta: "string",
      },
      "response.content_part.done": {
        response_id: "string",
        item_id: "string",
        output_index: "integer",
        content_index: "integer",
        part: "object",
      },
      "response.output_item.done": {
        response_id: "string",
        output_index: "integer",
        item: "object",
      },
      "conversation.item.done": { previous_item_id: "string|null", item: "object" },
      "response.done": { response: "object" },
    };
    let lastItem: unknown = userId;
    for (const modality of ["text", "audio"]) {
      p.send({ type: "response.create", response: { output_modalities: [modality] } });
      const events = await p.until("response.done");
      for (const e of events) {
        const spec = shapes[String(e.type)];
        if (spec) assertShape(e, String(e.type), spec);
        if (e.type === "response.created" || e.type === "response.done") {
          const r = obj(e.response);
          for (const [k, t] of Object.entries(RESPONSE_FIELDS)) {
            assert.ok(
              t.split("|").includes(typeName(r[k])),
              `${e.type}.response.${k}: ${typeName(r[k])}`,
            );
          }
          assert.equal(r.object, "realtime.response");
          assert.match(String(r.id), /^resp_/);
        }
        if (e.type === "conversation.item.added") {
          // The answer follows the conversation's last item.
          assert.equal(e.previous_item_id, lastItem);
          lastItem = obj(e.item).id;
        }
      }
      const created = obj(events[0]!.response);
      assert.deepEqual([created.status, created.usage, created.output], ["in_progress", null, []]);
      const done = obj(events.at(-1)!.response);
      assert.equal(done.status, "completed");
      assert.equal(done.status_details, null);
      const usage = obj(done.usage);
      for (const k of ["total_tokens", "input_tokens", "output_tokens"]) {
        assert.equal(typeName(usage[k]), "integer", k);
      }
      for (const k of ["text_tokens", "audio_tokens", "image_tokens", "cached_tokens"]) {
        assert.equal(typeName(obj(usage.input_token_details)[k]), "integer", k);
      }
      for (const k of ["text_tokens", "audio_tokens", "image_tokens"]) {
        assert.equal(
          typeName(obj(obj(usage.input_token_details).cached_tokens_details)[k]),
          "integer",
        );
      }
      for (const k of ["text_tokens", "audio_tokens"]) {
        assert.equal(typeName(obj(usage.output_token_details)[k]), "integer", k);
      }
      const item = obj((done.output as Json[])[0]);
      assert.deepEqual(
        [item.type, item.role, item.status, item.object],
        ["message", "assistant", "completed", "realtime.item"],
      );
      assert.match(String(item.id), /^item_/);
      assert.ok(!JSON.stringify(done).includes('"audio":"'), "response.done omits audio bytes");
    }
  });
});

Deno.test("realtime eventDelayMs still spaces the events of an answer", async () => {
  await withStandIn(async (oa, open) => {
    oa.eventDelayMs = 40;
    const p = await open();
    await say(p, "slowly");
    const t0 = performance.now();
    p.send({ type: "response.create", response: { output_modalities: ["text"] } });
    const events = await p.until("response.done");
    const took = performance.now() - t0;
    assert.ok(took >= 40 * (events.length - 1) * 0.9, `${events.length} events in ${took} ms`);
  });
});

// ---- server VAD (opt-in) -------------------------------------------------------------------

Deno.test("realtime server VAD: speech starts a turn, silence ends it with a commit and a response", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    const turn = concatBytes([tone(300), new Uint8Array(audioBytes(400))]);
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(turn.subarray(0, 9600)) });
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(turn.subarray(9600)) });
    const started = await p.expect("input_audio_buffer.speech_started");
    assertShape(started, "input_audio_buffer.speech_started", {
      audio_start_ms: "integer",
      item_id: "string",
    });
    assert.equal(started.audio_start_ms, 0); // 0 ms less the 300 ms prefix padding, floored at 0
    const stopped = await p.expect("input_audio_buffer.speech_stopped");
    assertShape(stopped, "input_audio_buffer.speech_stopped", {
      audio_end_ms: "integer",
      item_id: "string",
    });
    // 300 ms of speech, then the session's 200 ms silence_duration_ms.
    assert.equal(stopped.audio_end_ms, 500);
    assert.equal(stopped.item_id, started.item_id);
    const committed = await p.expect("input_audio_buffer.committed");
    assert.equal(committed.item_id, started.item_id);
    await p.expect("conversation.item.added");
    await p.expect("conversation.item.done");
    const response = await p.until("response.done");
    assert.equal(response[0]!.type, "response.created");
    assert.deepEqual(spokenAudio(response), turn, "the turn is played back");

    // The VAD's clock counts all audio of the session: the next turn starts at 1700 ms.
    p.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(concatBytes([new Uint8Array(audioBytes(1000)), tone(200)])),
    });
    const next = await p.expect("input_audio_buffer.speech_started");
    assert.equal(next.audio_start_ms, 1700 - 300);
  }, { kind: "realtime", vad: true });
});

Deno.test("realtime server VAD interrupts an answer being spoken: cancelled, reason turn_detected", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(concatBytes([tone(1500), new Uint8Array(audioBytes(300))])),
    });
    await p.until("response.output_audio.delta");
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(tone(100)) });
    const rest = await p.until("response.done");
    assert.ok(rest.some((e) => e.type === "input_audio_buffer.speech_started"));
    const response = obj(rest.at(-1)!.response);
    assert.equal(response.status, "cancelled");
    assert.deepEqual(response.status_details, { type: "cancelled", reason: "turn_detected" });
  }, { kind: "realtime", vad: true, pace: "realtime" });
});

Deno.test("realtime without vad: appending speech stays silent until the client commits", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(concatBytes([tone(300), new Uint8Array(audioBytes(600))])),
    });
    p.send({ type: "input_audio_buffer.commit" });
    assert.equal((await p.next()).type, "input_audio_buffer.committed");
  });
});

Deno.test("realtime server VAD follows the session: off when turn_detection is null, its own silence_duration_ms", async () => {
  await withStandIn(async (_oa, open) => {
    const p = await open();
    p.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: null } } },
    });
    await p.expect("session.updated");
    p.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(concatBytes([tone(300), new Uint8Array(audioBytes(600))])),
    });
    p.send({ type: "input_audio_buffer.commit" });
    assert.equal((await p.next()).type, "input_audio_buffer.committed");
    await p.until("conversation.item.done");
    p.send({
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { turn_detection: { type: "server_vad", silence_duration_ms: 400 } } },
      },
    });
    await p.expect("session.updated");
    p.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(concatBytes([tone(200), new Uint8Array(audioBytes(500))])),
    });
    assert.equal((await p.expect("input_audio_buffer.speech_started")).audio_start_ms, 900 - 300);
    assert.equal(
      (await p.expect("input_audio_buffer.speech_stopped")).audio_end_ms,
      900 + 200 + 400,
    );
    await p.until("response.done");
  }, { kind: "realtime", vad: true });
});
