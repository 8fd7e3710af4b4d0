/**
 * How the OpenAI stand-in counts tokens, as pure functions, so tests can know
 * the `response.done` usage to expect without hard-coding numbers.
 *
 * The rules (deterministic, close to OpenAI's published rates):
 * - audio is 24 kHz PCM16 mono, 48 bytes per millisecond;
 * - user (input) audio is 1 token per 100 ms started (4800 bytes);
 * - assistant (output) audio is 1 token per 50 ms started (2400 bytes);
 *   assistant audio read back as context later counts at the input rate;
 * - text is 1 token per 4 characters started (code points), empty text 0;
 * - an image is 85 tokens (OpenAI's low-detail price);
 * - the whole prompt counts as input on every response: the instructions, the
 *   tools (as JSON), then every item of the context in order;
 * - the part of the prompt that opens the same way as the previous response's
 *   prompt (same instructions, same tools, same items unchanged) is cached,
 *   as OpenAI's prefix cache does (without its 1024-token minimum), so cached
 *   tokens appear from the second response on;
 * - output counts the text (or audio transcript) and the audio sent, and a
 *   function call's name and arguments.
 * @module
 */

type Json = Record<string, unknown>;

/** Bytes of 24 kHz PCM16 mono audio per millisecond. */
export const PCM_BYTES_PER_MS = 48;
/** Bytes of input audio per token (100 ms). */
export const INPUT_AUDIO_BYTES_PER_TOKEN = 4800;
/** Bytes of output audio per token (50 ms). */
export const OUTPUT_AUDIO_BYTES_PER_TOKEN = 2400;
/** Tokens an input image counts for. */
export const IMAGE_TOKENS = 85;

/** Token counts by kind. */
export interface TokenCount {
  /** Text tokens. */
  text: number;
  /** Audio tokens. */
  audio: number;
  /** Image tokens. */
  image: number;
}

/** The GA `response.usage` object. */
export interface RealtimeUsage {
  /** Input plus output. */
  total_tokens: number;
  /** Every token read, cached ones included. */
  input_tokens: number;
  /** Every token generated. */
  output_tokens: number;
  /** Input by kind; `cached_tokens` is part of the input, not added to it. */
  input_token_details: {
    text_tokens: number;
    audio_tokens: number;
    image_tokens: number;
    cached_tokens: number;
    cached_tokens_details: { text_tokens: number; audio_tokens: number; image_tokens: number };
  };
  /** Output by kind (an audio answer's transcript is its text). */
  output_token_details: { text_tokens: number; audio_tokens: number };
}

/** One piece of a prompt: what identifies it for the prefix cache, and what it counts. */
export interface PromptSegment extends TokenCount {
  /** Equal keys are the same content: a shared prefix of keys is cached. */
  key: string;
}

/** Milliseconds of 24 kHz PCM16 mono audio in `bytes`. */
export function audioMs(bytes: number): number {
  return bytes / PCM_BYTES_PER_MS;
}

/** Bytes of 24 kHz PCM16 mono audio in `ms` (rounded down to whole samples). */
export function audioBytes(ms: number): number {
  return Math.floor(ms * PCM_BYTES_PER_MS / 2) * 2;
}

/** Text tokens: one per 4 characters started. */
export function textTokens(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return Math.ceil(n / 4);
}

/** Input audio tokens: one per 100 ms started. */
export function inputAudioTokens(bytes: number): number {
  return Math.ceil(bytes / INPUT_AUDIO_BYTES_PER_TOKEN);
}

/** Output audio tokens: one per 50 ms started. */
export function outputAudioTokens(bytes: number): number {
  return Math.ceil(bytes / OUTPUT_AUDIO_BYTES_PER_TOKEN);
}

/** Decoded length of base64 `data` without decoding it. */
export function base64Length(data: string): number {
  const clean = data.replace(/\s+/g, "");
  const pad = clean.endsWith("==") ? 2 : clean.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor(clean.length * 3 / 4) - pad);
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/**
 * What one GA conversation item counts as input. Audio parts count by their
 * `audio` (base64) when present, as `retrieve` returns them; a transcript is
 * not sent to the model (GA reference), so it counts nothing.
 */
export function itemTokens(item: Json, audioOf?: (contentIndex: number) => number): TokenCount {
  const count: TokenCount = { text: 0, audio: 0, image: 0 };
  if (item.type === "function_call") {
    count.text = textTokens(str(item.name)) + textTokens(str(item.arguments));
  } else if (item.type === "function_call_output") {
    count.text = textTokens(str(item.output));
  } else if (Array.isArray(item.content)) {
    item.content.forEach((part, i) => {
      if (!isObject(part)) return;
      if (part.type === "input_audio" || part.type === "output_audio") {
        const bytes = audioOf?.(i) ??
          (typeof part.audio === "string" ? base64Length(part.audio) : 0);
        count.audio += inputAudioTokens(bytes);
      } else if (part.type === "input_image") {
        count.image += IMAGE_TOKENS;
      } else {
        count.text += textTokens(str(part.text));
      }
    });
  }
  return count;
}

/** What one GA output item counts as output: its text or transcript, its audio, or its call. */
export function outputTokens(item: Json, audioOf?: (contentIndex: number) => number): TokenCount {
  const count: TokenCount = { text: 0, audio: 0, image: 0 };
  if (item.type === "function_call") {
    count.text = textTokens(str(item.name)) + textTokens(str(item.arguments));
  } else if (Array.isArray(item.content)) {
    item.content.forEach((part, i) => {
      if (!isObject(part)) return;
      if (part.type === "output_audio") {
        count.text += textTokens(str(part.transcript));
        const bytes = audioOf?.(i) ??
          (typeof part.audio === "string" ? base64Length(part.audio) : 0);
        count.audio += outputAudioTokens(bytes);
      } else {
        count.text += textTokens(str(part.text));
      }
    });
  }
  return count;
}

/** The segments that open every prompt: the instructions, then the tools when there are any. */
export function headSegments(
  instructions: string,
  tools: readonly unknown[] = [],
): PromptSegment[] {
  const head: PromptSegment[] = [
    { key: `instructions\n${instructions}`, text: textTokens(instructions), audio: 0, image: 0 },
  ];
  if (tools.length > 0) {
    const json = JSON.stringify(tools);
    head.push({ key: `tools\n${json}`, text: textTokens(json), audio: 0, image: 0 });
  }
  return head;
}

/** One response's prompt, for {@linkcode usageForTurn}. */
export interface Turn {
  /** The response's instructions. */
  instructions: string;
  /** The tools offered (counted as their JSON). */
  tools?: readonly unknown[];
  /** GA items in context order; audio parts carry base64 `audio` where they have audio. */
  input: readonly Json[];
}

/** The prompt of `turn` as segments; an item is identified by its JSON without `status`. */
export function promptSegments(turn: Turn): PromptSegment[] {
  return [
    ...headSegments(turn.instructions, turn.tools),
    ...turn.input.map((item) => {
      const { status: _status, ...rest } = item;
      return { key: `item\n${JSON.stringify(rest)}`, ...itemTokens(item) };
    }),
  ];
}

function sum(segments: readonly TokenCount[]): TokenCount {
  const total: TokenCount = { text: 0, audio: 0, image: 0 };
  for (const s of segments) {
    total.text += s.text;
    total.audio += s.audio;
    total.image += s.image;
  }
  return total;
}

/** The usage of a response with this prompt and output, cached against `previous`. */
export function usageOf(
  prompt: readonly PromptSegment[],
  previous: readonly PromptSegment[] | undefined,
  output: TokenCount,
): RealtimeUsage {
  let shared = 0;
  while (
    previous && shared < prompt.length && shared < previous.length &&
    prompt[shared]!.key === previous[shared]!.key
  ) shared++;
  const input = sum(prompt);
  const cached = sum(prompt.slice(0, shared));
  const inputTokens = input.text + input.audio + input.image;
  const outputTokens = output.text + output.audio;
  return {
    total_tokens: inputTokens + outputTokens,
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    input_token_details: {
      text_tokens: input.text,
      audio_tokens: input.audio,
      image_tokens: input.image,
      cached_tokens: cached.text + cached.audio + cached.image,
      cached_tokens_details: {
        text_tokens: cached.text,
        audio_tokens: cached.audio,
        image_tokens: cached.image,
      },
    },
    output_token_details: { text_tokens: output.text, audio_tokens: output.audio },
  };
}

/**
 * The usage the stand-in reports for one response: `turn` is what the model
 * read, `output` the GA items it produced (with base64 `audio` on audio
 * parts), `previous` the prompt of the response before it on the connection.
 * @example
 * ```ts
 * const user = { type: "message", role: "user", content: [{ type: "input_audio", audio }] };
 * usageForTurn({ instructions, input: [user], output: [reply] }).input_token_details.audio_tokens;
 * ```
 */
export function usageForTurn(
  turn: Turn & { output: readonly Json[]; previous?: Turn },
): RealtimeUsage {
  return usageOf(
    promptSegments(turn),
    turn.previous ? promptSegments(turn.previous) : undefined,
    sum(turn.output.map((item) => outputTokens(item))),
  );
}

/** Usage of a transcription, as `conversation.item.input_audio_transcription.completed` reports it. */
export type TranscriptionUsage =
  | {
    type: "tokens";
    total_tokens: number;
    input_tokens: number;
    output_tokens: number;
    input_token_details: { text_tokens: number; audio_tokens: number };
  }
  | { type: "duration"; seconds: number };

/**
 * What transcribing `bytes` of audio into `transcript` costs: whisper-1 is
 * billed by duration (seconds, to the millisecond), the gpt-4o transcribe
 * models by tokens (the audio, plus the prompt as text input; the transcript
 * as output).
 */
export function transcriptionUsage(
  model: string,
  bytes: number,
  transcript: string,
  prompt = "",
): TranscriptionUsage {
  if (model === "whisper-1") {
    return { type: "duration", seconds: Math.round(audioMs(bytes)) / 1000 };
  }
  const audio = inputAudioTokens(bytes);
  const text = textTokens(prompt);
  const out = textTokens(transcript);
  return {
    type: "tokens",
    total_tokens: audio + text + out,
    input_tokens: audio + text,
    output_tokens: out,
    input_token_details: { text_tokens: text, audio_tokens: audio },
  };
}
