/**
 * The OpenAI stand-in's `realtime` behaviour as a GA peer: usage arithmetic,
 * session and response configuration, input transcription, speech, cancel and
 * truncate, conversation state, function calls and context-based replies.
 * Real sockets to the stand-in (Deno's WebSocket, as the relay uses); pure
 * counting rules tested by table. Sanitizers stay on.
 */

import assert from "node:assert/strict";
import { TestClient } from "../helpers/ws_client.ts";
import { type OpenAIStandIn, startOpenAIStandIn } from "./openai.ts";
import { encodeBase64 } from "./realtime_audio.ts";
import {
  audioBytes,
  inputAudioTokens,
  outputAudioTokens,
  type PromptSegment,
  textTokens,
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
): Promise<void> {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
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

function sumDeltaBytes(events: Json[], type: string): number {
  return events.filter((e) => e.type === type)
    .reduce((n, e) => n + atob(String(e.delta)).length, 0);
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
