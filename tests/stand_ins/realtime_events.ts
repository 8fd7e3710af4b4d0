/**
 * The GA OpenAI Realtime conversation, a stateful peer for the relay's tests:
 * server event shapes follow the GA API reference (`type` first, then
 * `event_id`), with deterministic content so tests can assert on it.
 *
 * - `session.update` merges and answers `session.updated` with the effective
 *   session, refusing what OpenAI refuses (realtime_session.ts).
 * - The conversation holds items in order (`previous_item_id`), with their
 *   audio: committed buffers, created messages, function calls and outputs;
 *   `conversation.item.retrieve`, `.delete` and `.truncate` act on it.
 * - Committed audio is transcribed when the session asks
 *   (`audio.input.transcription`); what audio "says" is a queued transcript,
 *   a `#transcript:` marker in it, or "<N> ms of audio".
 * - `response.create` runs with the session's configuration and its own
 *   overrides; the answer comes from the context (realtime_reply.ts): text,
 *   or speech that plays the user's audio back (a tone for text input), or a
 *   function call. A response is a {@linkcode ResponseRun} the caller pulls
 *   instantly or paced, so `response.cancel` can stop it.
 * - Usage is counted as OpenAI reports it (realtime_usage.ts).
 * - Server VAD on energy, when enabled, turns appended audio into turns.
 * - A transcription session (`type: "transcription"`, what `?intent=transcription`
 *   without a model opens) only transcribes: it takes `session.update` and the
 *   `input_audio_buffer.*` events, turns each commit (the client's, or server
 *   VAD's) into `input_audio_buffer.committed`, the user item and the
 *   transcription events, and never answers.
 * @module
 */

import {
  audioChunks,
  concatBytes,
  decodeBase64,
  encodeBase64,
  tone,
  Track,
  TRANSCRIPT_MARKER,
} from "./realtime_audio.ts";
import { type Reply, replyFor } from "./realtime_reply.ts";
import {
  applySessionUpdate,
  applyTranscriptionSessionUpdate,
  type ConfigError,
  resolveResponse,
  type ResponseConfig,
  TRANSCRIPTION_INCLUDE,
} from "./realtime_session.ts";
import {
  audioBytes,
  audioMs,
  headSegments,
  itemTokens,
  outputAudioTokens,
  type PromptSegment,
  type RealtimeUsage,
  textTokens,
  transcriptionUsage,
  usageOf,
} from "./realtime_usage.ts";

export type { ResponseConfig } from "./realtime_session.ts";
export type { Reply } from "./realtime_reply.ts";

type Json = Record<string, unknown>;

/** One conversation item as the stand-in holds it: the GA item, its audio, its revision. */
interface Entry {
  /** The item as events show it: audio parts carry no `audio` bytes. */
  item: Json;
  /** PCM16 audio by content index. */
  audio: Map<number, Track>;
  /** Bumped whenever the item changes, so the prefix cache sees a different item. */
  rev: number;
  /** What the stand-in "understood" of user audio: its transcript, given or derived. */
  heard?: string;
  /** An assistant answer's words, each with the audio bytes spoken by its end. */
  words?: { text: string; at: number }[];
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** An OpenAI-style id such as `event_Bx9...` (prefix + 20 random alphanumerics). */
export function openaiId(prefix: string, length = 20): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let s = "";
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return `${prefix}_${s}`;
}

/** A server event with `type` as the first key and a fresh `event_id` second. */
export function serverEvent(type: string, fields: Json = {}): Json {
  return { type, event_id: openaiId("event"), ...fields };
}

/** The GA `error` server event; `clientEventId` is the offending client event's id, if any. */
export function errorEvent(
  code: string | null,
  message: string,
  opts: { param?: string | null; clientEventId?: string | null; type?: string } = {},
): Json {
  return serverEvent("error", {
    error: {
      type: opts.type ?? "invalid_request_error",
      code,
      message,
      param: opts.param ?? null,
      event_id: opts.clientEventId ?? null,
    },
  });
}

/** In-band refusals OpenAI sends right after the upgrade, then closes with `closeCode`. */
export const HANDSHAKE_ERRORS = {
  beta: {
    code: "beta_api_shape_disabled",
    message:
      "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
    closeCode: 4000,
    closeReason: "invalid_request_error.beta_api_shape_disabled",
  },
  invalidKey: {
    code: "invalid_api_key",
    message:
      "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    closeCode: 3000,
    closeReason: "invalid_request_error.invalid_api_key",
  },
  missingModel: {
    code: "missing_model",
    message:
      "You must provide a model parameter, e.g. wss://api.openai.com/v1/realtime?model=gpt-realtime.",
    closeCode: 4000,
    closeReason: "invalid_request_error.missing_model",
  },
} as const;

/**
 * The in-band refusal of a handshake whose `intent` is not `transcription`.
 * OpenAI documents only `intent=transcription`; what it answers to another
 * value is not documented, so the stand-in refuses it the way it refuses a
 * missing model (an `error` event, then close 4000 with the error's type and
 * code), with the `invalid_value` wording of its other refusals.
 */
export function invalidIntentError(intent: string): {
  code: string;
  message: string;
  closeCode: number;
  closeReason: string;
} {
  return {
    code: "invalid_value",
    message: `Invalid value: '${intent}'. Supported values are: 'transcription'.`,
    closeCode: 4000,
    closeReason: "invalid_request_error.invalid_value",
  };
}

/**
 * The session a transcription connection (`?intent=transcription`, no model)
 * starts with: the GA transcription session object of the Realtime
 * transcription guide (`object` `realtime.session`, `type` `transcription`,
 * only `audio.input` and `include`), transcribing with `gpt-4o-transcribe`
 * (the guide's model; its `prompt` `""` and `language` null as in OpenAI's
 * transcription session example), server VAD with OpenAI's defaults, no noise
 * reduction.
 */
export function defaultTranscriptionSession(): Json {
  return {
    type: "transcription",
    object: "realtime.session",
    id: openaiId("sess"),
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        transcription: { model: "gpt-4o-transcribe", language: null, prompt: "" },
        noise_reduction: null,
        turn_detection: {
          type: "server_vad",
          threshold: 0.5,
          prefix_padding_ms: 300,
          silence_duration_ms: 200,
        },
      },
    },
    include: null,
  };
}

/** The session object OpenAI reports in `session.created` for a new GA connection. */
export function defaultSession(model: string): Json {
  return {
    type: "realtime",
    object: "realtime.session",
    id: openaiId("sess"),
    model,
    output_modalities: ["audio"],
    instructions: "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.",
    tools: [],
    tool_choice: "auto",
    max_output_tokens: "inf",
    tracing: null,
    truncation: "auto",
    prompt: null,
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: {
          type: "server_vad",
          threshold: 0.5,
          prefix_padding_ms: 300,
          silence_duration_ms: 200,
          idle_timeout_ms: null,
          create_response: true,
          interrupt_response: true,
        },
      },
      output: {
        format: { type: "audio/pcm", rate: 24000 },
        voice: "alloy",
        speed: 1,
      },
    },
    include: null,
  };
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The client events a transcription session takes; the others are refused. */
const TRANSCRIPTION_CLIENT_EVENTS = [
  "session.update",
  "input_audio_buffer.append",
  "input_audio_buffer.commit",
  "input_audio_buffer.clear",
];

const CLIENT_EVENTS = [
  "session.update",
  "input_audio_buffer.append",
  "input_audio_buffer.commit",
  "input_audio_buffer.clear",
  "conversation.item.create",
  "conversation.item.retrieve",
  "conversation.item.truncate",
  "conversation.item.delete",
  "response.create",
  "response.cancel",
  "output_audio_buffer.clear",
];

/** Options for a conversation. */
export interface ConversationOptions {
  /** A transcript for committed audio, when the connection's own queue is empty. */
  takeTranscript?: () => string | undefined;
  /**
   * Whether `server_vad` turn detection (the session default) acts on the
   * audio appended (default false: appending stays silent, the client
   * commits, as tests that append arbitrary bytes expect).
   */
  vad?: boolean;
  /**
   * The kind of session: `realtime` (default, a conversation for the model),
   * or `transcription` (what `?intent=transcription` opens: it transcribes
   * committed audio and never answers).
   */
  type?: SessionType;
}

/** A conversation session (`?model=`) or a transcription session (`?intent=transcription`). */
export type SessionType = "realtime" | "transcription";

/** A server event a response run yields; `audioMs` is the audio it carries (0 for none). */
export interface Step {
  /** The server event. */
  event: Json;
  /** Milliseconds of audio in it: what a paced stream waits for. */
  audioMs: number;
}

/** What answering one client message produced: events to send now, responses to stream. */
export interface Answer {
  /** Server events to send now, in order. */
  events: Json[];
  /** Responses created, to be pulled after `events`. */
  runs: ResponseRun[];
}

/** One response as the stand-in ran it, for tests to read back. */
export interface ResponseRecord {
  /** The response's id (`resp_...`). */
  id: string;
  /** The effective configuration: the session's, with the `response.create` overrides. */
  config: ResponseConfig;
  /** `in_progress` until `response.done`, then `completed`, `cancelled` or `incomplete`. */
  status: string;
  /** The usage `response.done` reported; null until then. */
  usage: RealtimeUsage | null;
  /** The output items as `response.done` showed them. */
  output: Json[];
}

/** Why a run stopped before its end: the client's cancel, or server VAD hearing a new turn. */
export type StopReason = "client_cancelled" | "turn_detected";

/**
 * One response being generated: pull its events with `next()` (instantly, or
 * paced by the caller), stop it with `cancel()`; the events that close a
 * cancelled response still come from `next()`.
 */
export class ResponseRun {
  /** The response's id. */
  readonly id: string;
  /** What tests read back: its configuration, status, usage and output. */
  readonly record: ResponseRecord;
  /** Set by `cancel()`; the generator reads it between deltas. */
  stopped: StopReason | undefined;
  #steps: Generator<Step, void> | undefined;
  #first: IteratorResult<Step, void> | undefined;
  #finished = false;
  readonly #onEnd: (run: ResponseRun) => void;
  readonly #stop = new AbortController();

  /** A run for `record`; `onEnd` is called once its last event has been pulled. */
  constructor(record: ResponseRecord, onEnd: (run: ResponseRun) => void) {
    this.id = record.id;
    this.record = record;
    this.#onEnd = onEnd;
  }

  /**
   * Attaches the generator (it needs the run to read `stopped`) and runs it
   * to its first event, so the response takes its place in the conversation
   * when it is created, not when a paced stream gets to it.
   */
  start(steps: Generator<Step, void>): void {
    this.#steps = steps;
    this.#first = steps.next();
  }

  /** Whether every event has been pulled. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Whether the response writes to the default conversation. */
  get inConversation(): boolean {
    return this.record.config.conversation === "auto";
  }

  /** The next event, or `undefined` once `response.done` has been pulled. */
  next(): Step | undefined {
    if (this.#finished || !this.#steps) return undefined;
    const r = this.#first ?? this.#steps.next();
    this.#first = undefined;
    if (r.done) {
      this.#finished = true;
      this.#onEnd(this);
      return undefined;
    }
    return r.value;
  }

  /** Aborted by `cancel()`, so a caller pacing the stream stops waiting at once. */
  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  /** Stops the response at the next delta; `next()` then yields its closing events. */
  cancel(reason: StopReason = "client_cancelled"): void {
    this.stopped ??= reason;
    this.#stop.abort();
  }

  /** Every remaining event, at once. */
  drain(): Json[] {
    const out: Json[] = [];
    for (let s = this.next(); s; s = this.next()) out.push(s.event);
    return out;
  }
}

const WORDS = /\S+\s*/g;

/** Milliseconds of audio per streamed `response.output_audio.delta`. */
export const CHUNK_MS = 100;
/** Milliseconds of audio per server VAD decision. */
const VAD_FRAME_MS = 20;
/** Characters of function arguments per `response.function_call_arguments.delta`. */
const ARGUMENT_CHUNK = 8;
/** How long the tone "says" each word when there is no user audio to play back. */
export const SPOKEN_MS_PER_WORD = 200;

/** One Realtime conversation: feed it client messages, get the server events to send back. */
export class RealtimeConversation {
  /** The effective session, as `session.updated` last showed it. */
  session: Json;
  /** `realtime` (a conversation) or `transcription`; a session never changes its type. */
  readonly type: SessionType;
  /** The default conversation's id (`conv_...`), as responses name it. */
  readonly conversationId: string = openaiId("conv");
  /** Decoded bytes appended to the input audio buffer and not yet committed/cleared. */
  audioBufferBytes = 0;
  /** All decoded audio bytes received over the connection. */
  audioBytesTotal = 0;
  /** Every response, in the order they were created. */
  readonly responses: ResponseRecord[] = [];
  /** The instructions the session started with: replies mention any others. */
  readonly defaultInstructions: string;
  #entries: Entry[] = [];
  #buffer: Uint8Array[] = [];
  /** The prompt of the previous response, for the prefix cache. */
  #lastPrompt: PromptSegment[] | undefined;
  /** Whether assistant audio has gone out: the voice is locked from then on. */
  #spoke = false;
  readonly #active = new Set<ResponseRun>();
  readonly #takeTranscript: () => string | undefined;
  readonly #vadOn: boolean;
  /** Milliseconds of audio appended over the session (VAD's clock). */
  #vadMs = 0;
  /** Bytes short of a whole VAD frame, kept for the next append. */
  #vadRest: Uint8Array = new Uint8Array(0);
  /** The turn the VAD is hearing, if any. */
  #turn: { itemId: string; quietMs: number } | undefined;
  /**
   * Transcripts for the next committed audio buffers of this connection, in
   * order (a test sets them); each commit takes the first. Without one, a
   * `#transcript:` marker at the start of the audio, then the stand-in's
   * shared queue, then "<N> ms of audio" say what the audio was.
   */
  readonly nextTranscripts: string[] = [];

  /**
   * A conversation with OpenAI's default session for `model`, or, with
   * `opts.type` `transcription`, a transcription session (`model` unused).
   */
  constructor(model: string, opts: ConversationOptions = {}) {
    this.type = opts.type ?? "realtime";
    this.session = this.type === "transcription"
      ? defaultTranscriptionSession()
      : defaultSession(model);
    this.defaultInstructions = String(this.session.instructions);
    this.#takeTranscript = opts.takeTranscript ?? (() => undefined);
    this.#vadOn = opts.vad ?? false;
  }

  /** The conversation's items in order, as `conversation.item.done` shows them (no audio bytes). */
  get items(): Json[] {
    return this.#entries.map((e) => structuredClone(e.item));
  }

  /** The effective configuration of the last response created, if any. */
  get lastResponse(): ResponseConfig | undefined {
    return this.responses.at(-1)?.config;
  }

  /** The first event of every connection. */
  created(): Json {
    return serverEvent("session.created", { session: this.session });
  }

  /** Server events answering one client text message, in order, responses included in full. */
  handleText(text: string): Json[] {
    const { events, runs } = this.handle(text);
    return [...events, ...runs.flatMap((r) => r.drain())];
  }

  /** What one client text message produces: immediate events, and responses to stream. */
  handle(text: string): Answer {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return only(errorEvent("invalid_json", "Invalid event: failed to parse JSON value."));
    }
    if (!isObject(msg)) {
      return only(
        errorEvent("invalid_type", "Invalid event: expected an object.", { param: null }),
      );
    }
    const clientEventId = typeof msg.event_id === "string" ? msg.event_id : null;
    const type = typeof msg.type === "string" ? msg.type : undefined;
    if (type === undefined) {
      return only(errorEvent("missing_required_parameter", "Missing required parameter: 'type'.", {
        param: "type",
        clientEventId,
      }));
    }
    const accepted = this.type === "transcription" ? TRANSCRIPTION_CLIENT_EVENTS : CLIENT_EVENTS;
    if (!accepted.includes(type)) {
      // A transcription session has no conversation to add to and never
      // answers; what OpenAI says to such an event there is not documented.
      return only(errorEvent(
        "invalid_value",
        `Invalid value: '${type}'. Supported values are: ${
          accepted.map((t) => `'${t}'`).join(", ")
        }.`,
        { param: "type", clientEventId },
      ));
    }
    switch (type) {
      case "session.update":
        return events(this.#sessionUpdate(msg, clientEventId));
      case "input_audio_buffer.append":
        return this.#append(msg, clientEventId);
      case "input_audio_buffer.commit":
        // A manual commit ends any turn the VAD was tracking.
        this.#turn = undefined;
        return events(this.#commit(clientEventId));
      case "input_audio_buffer.clear":
        this.audioBufferBytes = 0;
        this.#buffer = [];
        this.#turn = undefined;
        return only(serverEvent("input_audio_buffer.cleared"));
      case "conversation.item.create":
        return events(this.#itemCreate(msg, clientEventId));
      case "conversation.item.delete":
        return events(this.#itemDelete(msg, clientEventId));
      case "conversation.item.retrieve":
        return events(this.#itemRetrieve(msg, clientEventId));
      case "conversation.item.truncate":
        return events(this.#truncate(msg, clientEventId));
      case "output_audio_buffer.clear":
        // WebRTC and SIP only: over a WebSocket the client holds the unplayed audio.
        return only(errorEvent(
          "invalid_value",
          "Invalid value: output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
          { param: "type", clientEventId },
        ));
      case "response.create":
        return this.#respond(msg, clientEventId);
      case "response.cancel":
        return events(this.#cancel(msg, clientEventId));
      default:
        return only(errorEvent("unsupported_event", `The stand-in does not implement '${type}'.`, {
          param: "type",
          clientEventId,
        }));
    }
  }

  /** Binary frames are not part of the Realtime protocol. */
  handleBinary(): Json[] {
    return [
      errorEvent(
        "invalid_event",
        "Expected a text WebSocket message; binary frames are not supported.",
      ),
    ];
  }

  #sessionUpdate(msg: Json, clientEventId: string | null): Json[] {
    const update = msg.session;
    if (!isObject(update)) {
      return [
        errorEvent("invalid_value", "Invalid value for 'session'.", {
          param: "session",
          clientEventId,
        }),
      ];
    }
    const result = this.type === "transcription"
      ? applyTranscriptionSessionUpdate(this.session, update)
      : applySessionUpdate(this.session, update, this.#spoke);
    if ("error" in result) return [configError(result.error, clientEventId)];
    this.session = result.session;
    return [serverEvent("session.updated", { session: this.session })];
  }

  #append(msg: Json, clientEventId: string | null): Answer {
    if (typeof msg.audio !== "string") {
      return only(errorEvent(
        "missing_required_parameter",
        "Missing required parameter: 'audio'.",
        { param: "audio", clientEventId },
      ));
    }
    let audio: Uint8Array;
    try {
      audio = decodeBase64(msg.audio);
    } catch {
      return only(errorEvent("invalid_value", "Invalid 'audio'. Expected base64.", {
        param: "audio",
        clientEventId,
      }));
    }
    // Appending is silent in the real API, unless server VAD hears a turn.
    this.#buffer.push(audio);
    this.audioBufferBytes += audio.byteLength;
    this.audioBytesTotal += audio.byteLength;
    return this.#vad(audio);
  }

  /**
   * Server VAD on energy (opt-in, see {@linkcode ConversationOptions.vad}):
   * 20 ms frames louder than `threshold` x 0.04 RMS are speech. Speech starts
   * a turn (`speech_started`, and an interruption of the answer in progress
   * when `interrupt_response`); `silence_duration_ms` of quiet ends it
   * (`speech_stopped`, a commit, and a response when `create_response`).
   */
  #vad(audio: Uint8Array): Answer {
    const input = isObject(this.session.audio) && isObject(this.session.audio.input)
      ? this.session.audio.input
      : {};
    const td = isObject(input.turn_detection) ? input.turn_detection : undefined;
    if (!this.#vadOn || td?.type !== "server_vad") {
      this.#vadMs += audioMs(audio.byteLength);
      return { events: [], runs: [] };
    }
    const num = (v: unknown, d: number) => typeof v === "number" ? v : d;
    const level = num(td.threshold, 0.5) * 0.04;
    const padding = num(td.prefix_padding_ms, 300);
    const silence = num(td.silence_duration_ms, 500);
    const out: Answer = { events: [], runs: [] };
    const bytes = concatBytes([this.#vadRest, audio]);
    const frame = audioBytes(VAD_FRAME_MS);
    let at = 0;
    for (; at + frame <= bytes.byteLength; at += frame) {
      const start = this.#vadMs;
      this.#vadMs += VAD_FRAME_MS;
      const speech = rms(bytes.subarray(at, at + frame)) >= level;
      if (!this.#turn) {
        if (!speech) continue;
        this.#turn = { itemId: openaiId("item"), quietMs: 0 };
        out.events.push(serverEvent("input_audio_buffer.speech_started", {
          audio_start_ms: Math.max(0, Math.round(start - padding)),
          item_id: this.#turn.itemId,
        }));
        if (td.interrupt_response !== false) {
          for (const run of this.#active) if (run.inConversation) run.cancel("turn_detected");
        }
        continue;
      }
      this.#turn.quietMs = speech ? 0 : this.#turn.quietMs + VAD_FRAME_MS;
      if (this.#turn.quietMs < silence) continue;
      const { itemId } = this.#turn;
      this.#turn = undefined;
      out.events.push(
        serverEvent("input_audio_buffer.speech_stopped", {
          audio_end_ms: Math.round(this.#vadMs),
          item_id: itemId,
        }),
        ...this.#commit(null, itemId),
      );
      const busy = [...this.#active].some((r) => r.inConversation && !r.stopped);
      // A transcription session never answers: its turns end at the transcript.
      if (this.type === "realtime" && td.create_response !== false && !busy) {
        const answer = this.#respond({ type: "response.create" }, null);
        out.events.push(...answer.events);
        out.runs.push(...answer.runs);
      }
    }
    this.#vadRest = bytes.slice(at);
    return out;
  }

  #commit(clientEventId: string | null, itemId = openaiId("item")): Json[] {
    const ms = audioMs(this.audioBufferBytes);
    if (ms < 100) {
      return [
        errorEvent(
          "input_audio_buffer_commit_empty",
          `Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has ${
            ms.toFixed(2)
          }ms of audio.`,
          { clientEventId },
        ),
      ];
    }
    const previous = this.#lastItemId();
    const item: Json = {
      id: itemId,
      type: "message",
      object: "realtime.item",
      status: "completed",
      role: "user",
      content: [{ type: "input_audio", transcript: null }],
    };
    const audio = concatBytes(this.#buffer);
    const heard = this.#transcriptOf(audio);
    const entry: Entry = { item, audio: new Map([[0, new Track(audio)]]), rev: 0, heard };
    this.#entries.push(entry);
    this.#buffer = [];
    this.audioBufferBytes = 0;
    return [
      serverEvent("input_audio_buffer.committed", {
        previous_item_id: previous,
        item_id: item.id,
      }),
      serverEvent("conversation.item.added", { previous_item_id: previous, item: clone(item) }),
      serverEvent("conversation.item.done", { previous_item_id: previous, item: clone(item) }),
      ...this.#transcribe(entry),
    ];
  }

  /** What committed `audio` says: a queued transcript, its marker, or its length. */
  #transcriptOf(audio: Uint8Array): string {
    return this.nextTranscripts.shift() ?? markedTranscript(audio) ?? this.#takeTranscript() ??
      `${Math.round(audioMs(audio.byteLength))} ms of audio`;
  }

  /**
   * Input transcription, when the session asks for it: deltas then
   * `completed` with the transcription model's usage; the item keeps the
   * transcript from then on.
   */
  #transcribe(entry: Entry): Json[] {
    const input = isObject(this.session.audio) && isObject(this.session.audio.input)
      ? this.session.audio.input
      : {};
    const settings = isObject(input.transcription) ? input.transcription : undefined;
    if (typeof settings?.model !== "string") return [];
    const transcript = entry.heard ?? "";
    const at = { item_id: entry.item.id, content_index: 0 };
    // whisper-1 is not incremental: its one delta is the whole transcript.
    const deltas = settings.model === "whisper-1"
      ? [transcript]
      : transcript.match(WORDS) ?? [transcript];
    const part = (entry.item.content as Json[])[0]!;
    part.transcript = transcript;
    // `include: ["item.input_audio_transcription.logprobs"]` adds token
    // log probabilities; the stand-in is always sure of what it heard.
    const logprobs = Array.isArray(this.session.include) &&
      this.session.include.includes(TRANSCRIPTION_INCLUDE);
    const probs = (text: string) =>
      logprobs ? { logprobs: text.length > 0 ? [logprobOf(text)] : [] } : {};
    return [
      ...deltas.map((delta) =>
        serverEvent("conversation.item.input_audio_transcription.delta", {
          ...at,
          delta,
          ...probs(delta),
        })
      ),
      serverEvent("conversation.item.input_audio_transcription.completed", {
        ...at,
        transcript,
        ...(logprobs ? { logprobs: deltas.filter((d) => d.length > 0).map(logprobOf) } : {}),
        usage: transcriptionUsage(
          settings.model as string,
          entry.audio.get(0)?.byteLength ?? 0,
          transcript,
          typeof settings.prompt === "string" ? settings.prompt : "",
        ),
      }),
    ];
  }

  #itemCreate(msg: Json, clientEventId: string | null): Json[] {
    const given = msg.item;
    if (!isObject(given)) {
      return [
        errorEvent("missing_required_parameter", "Missing required parameter: 'item'.", {
          param: "item",
          clientEventId,
        }),
      ];
    }
    const built = this.#buildItem(given, "item");
    if ("error" in built) return [configError(built.error, clientEventId)];
    const { entry } = built;
    if (this.#entries.some((e) => e.item.id === entry.item.id)) {
      return [
        errorEvent(
          "item_create_duplicate_item_id",
          `Item with id '${String(entry.item.id)}' already exists in the conversation.`,
          { param: "item.id", clientEventId },
        ),
      ];
    }
    // previous_item_id: after that item ("root": first); without it, at the end.
    let at = this.#entries.length;
    const after = msg.previous_item_id;
    if (after === "root") at = 0;
    else if (after !== undefined && after !== null) {
      const i = this.#entries.findIndex((e) => e.item.id === after);
      if (i < 0) {
        return [
          errorEvent("invalid_value", `Previous item not found: ${String(after)}`, {
            param: "previous_item_id",
            clientEventId,
          }),
        ];
      }
      at = i + 1;
    }
    this.#entries.splice(at, 0, entry);
    const previous = at > 0 ? String(this.#entries[at - 1]!.item.id) : null;
    return [
      serverEvent("conversation.item.added", {
        previous_item_id: previous,
        item: clone(entry.item),
      }),
      serverEvent("conversation.item.done", {
        previous_item_id: previous,
        item: clone(entry.item),
      }),
    ];
  }

  /**
   * A client's item as the conversation holds it, checked as OpenAI checks
   * it: messages (user `input_text`, `input_audio`, `input_image`; system
   * `input_text`; assistant `output_text`: GA cannot create assistant audio),
   * `function_call` and `function_call_output`. Audio bytes leave the item
   * for the entry's tracks; events never carry them.
   */
  #buildItem(given: Json, prefix: string): { entry: Entry } | { error: ConfigError } {
    const missing = (field: string): { error: ConfigError } => ({
      error: {
        code: "missing_required_parameter",
        message: `Missing required parameter: '${prefix}.${field}'.`,
        param: `${prefix}.${field}`,
      },
    });
    const invalid = (field: string, value: unknown, allowed: string[]): { error: ConfigError } => ({
      error: {
        code: "invalid_value",
        message: `Invalid value: '${String(value)}'. Supported values are: ${
          allowed.map((a) => `'${a}'`).join(", ")
        }.`,
        param: `${prefix}.${field}`,
      },
    });
    if (given.type === undefined) return missing("type");
    const id = typeof given.id === "string" ? given.id : openaiId("item");
    const item: Json = { id, type: given.type, object: "realtime.item", status: "completed" };
    const entry: Entry = { item, audio: new Map(), rev: 0 };
    switch (given.type) {
      case "message": {
        const roles: Record<string, string[]> = {
          user: ["input_text", "input_audio", "input_image"],
          system: ["input_text"],
          assistant: ["output_text"],
        };
        const allowed = roles[String(given.role)];
        if (given.role === undefined) return missing("role");
        if (!allowed) return invalid("role", given.role, Object.keys(roles));
        if (!Array.isArray(given.content)) return missing("content");
        item.role = given.role;
        const content: Json[] = [];
        for (const [i, part] of given.content.entries()) {
          const where = `content[${i}]`;
          if (!isObject(part)) return missing(`${where}.type`);
          if (!allowed.includes(String(part.type))) {
            return invalid(`${where}.type`, part.type, allowed);
          }
          if (part.type === "input_audio") {
            let audio: Uint8Array = new Uint8Array(0);
            if (typeof part.audio === "string") {
              try {
                audio = decodeBase64(part.audio);
              } catch {
                return {
                  error: {
                    code: "invalid_value",
                    message: "Invalid 'audio'. Expected base64.",
                    param: `${prefix}.${where}.audio`,
                  },
                };
              }
            }
            const transcript = typeof part.transcript === "string" ? part.transcript : null;
            content.push({ type: "input_audio", transcript });
            entry.audio.set(i, new Track(audio));
            if (transcript === null && audio.byteLength > 0) {
              entry.heard = this.#transcriptOf(audio);
            }
          } else if (part.type === "input_image") {
            if (typeof part.image_url !== "string") return missing(`${where}.image_url`);
            content.push({
              type: "input_image",
              image_url: part.image_url,
              detail: part.detail ?? "auto",
            });
          } else {
            if (typeof part.text !== "string") return missing(`${where}.text`);
            content.push({ type: part.type, text: part.text });
          }
        }
        item.content = content;
        break;
      }
      case "function_call":
        if (typeof given.name !== "string") return missing("name");
        if (typeof given.arguments !== "string") return missing("arguments");
        item.call_id = typeof given.call_id === "string" ? given.call_id : openaiId("call", 16);
        item.name = given.name;
        item.arguments = given.arguments;
        break;
      case "function_call_output":
        if (typeof given.call_id !== "string") return missing("call_id");
        if (typeof given.output !== "string") return missing("output");
        item.call_id = given.call_id;
        item.output = given.output;
        break;
      default:
        return invalid("type", given.type, ["message", "function_call", "function_call_output"]);
    }
    return { entry };
  }

  /** The item with `id` as `conversation.item.retrieved` shows it: audio parts carry their audio. */
  retrieve(id: string): Json | undefined {
    const entry = this.#entries.find((e) => e.item.id === id);
    if (!entry) return undefined;
    const item = clone(entry.item);
    if (Array.isArray(item.content)) {
      item.content = (item.content as Json[]).map((part, i) => {
        const track = entry.audio.get(i);
        return track ? { ...part, audio: encodeBase64(track.bytes()) } : part;
      });
    }
    return item;
  }

  #itemRetrieve(msg: Json, clientEventId: string | null): Json[] {
    const item = typeof msg.item_id === "string" ? this.retrieve(msg.item_id) : undefined;
    if (!item) {
      return [
        errorEvent(
          "item_retrieve_invalid_item_id",
          `Item with item_id not found: ${String(msg.item_id)}`,
          { param: "item_id", clientEventId },
        ),
      ];
    }
    return [serverEvent("conversation.item.retrieved", { item })];
  }

  #itemDelete(msg: Json, clientEventId: string | null): Json[] {
    const idx = this.#entries.findIndex((e) => e.item.id === msg.item_id);
    if (idx < 0) {
      return [
        errorEvent(
          "item_delete_invalid_item_id",
          `Item with item_id not found: ${String(msg.item_id)}`,
          { param: "item_id", clientEventId },
        ),
      ];
    }
    this.#entries.splice(idx, 1);
    return [serverEvent("conversation.item.deleted", { item_id: msg.item_id })];
  }

  /**
   * Cuts an assistant message's audio to what the client played, and its
   * kept transcript to the words spoken by then. A response still speaking
   * goes on streaming, but the conversation keeps only what was heard.
   */
  #truncate(msg: Json, clientEventId: string | null): Json[] {
    const fail = (code: string, message: string, param: string) => [
      errorEvent(code, message, { param, clientEventId }),
    ];
    const entry = this.#entries.find((e) => e.item.id === msg.item_id);
    if (!entry) {
      return fail(
        "item_truncate_invalid_item_id",
        `Item with item_id not found: ${String(msg.item_id)}`,
        "item_id",
      );
    }
    if (entry.item.type !== "message" || entry.item.role !== "assistant") {
      return fail("invalid_value", "Only assistant messages can be truncated.", "item_id");
    }
    const index = msg.content_index;
    const track = typeof index === "number" ? entry.audio.get(index) : undefined;
    if (!track) {
      return fail(
        "invalid_value",
        `Invalid 'content_index': the item has no audio at ${String(index)}.`,
        "content_index",
      );
    }
    const end = msg.audio_end_ms;
    if (typeof end !== "number" || !Number.isInteger(end) || end < 0) {
      return fail(
        "invalid_type",
        "Invalid 'audio_end_ms': expected a non-negative integer.",
        "audio_end_ms",
      );
    }
    const have = audioMs(track.byteLength);
    if (end > have) {
      return fail(
        "invalid_value",
        `Audio content of ${Math.floor(have)}ms is already shorter than ${end}ms`,
        "audio_end_ms",
      );
    }
    const keep = audioBytes(end);
    track.truncate(keep);
    const part = (entry.item.content as Json[])[index as number]!;
    if (entry.words) {
      entry.words = entry.words.filter((w) => w.at <= keep);
      part.transcript = entry.words.map((w) => w.text).join("").trimEnd();
    }
    entry.rev++;
    return [
      serverEvent("conversation.item.truncated", {
        item_id: entry.item.id,
        content_index: index,
        audio_end_ms: end,
      }),
    ];
  }

  #lastItemId(): string | null {
    const last = this.#entries.at(-1)?.item;
    return typeof last?.id === "string" ? last.id : null;
  }

  /** A response's prompt: instructions, tools, then each item as it stands now. */
  #prompt(config: ResponseConfig, entries: Entry[]): PromptSegment[] {
    return [
      ...headSegments(config.instructions, config.tools),
      ...entries.map((e) => ({
        key: `${String(e.item.id)}#${e.rev}`,
        ...itemTokens(e.item, (i) => e.audio.get(i)?.byteLength ?? 0),
      })),
    ];
  }

  /** The items a response reads: its own `input`, or the conversation. */
  #context(config: ResponseConfig): Entry[] | ConfigError {
    if (!config.input) return [...this.#entries];
    const out: Entry[] = [];
    for (const [i, given] of config.input.entries()) {
      if (given.type === "item_reference") {
        const found = this.#entries.find((e) => e.item.id === given.id);
        if (!found) {
          return {
            code: "invalid_value",
            message: `Item with id '${String(given.id)}' not found in the conversation.`,
            param: `response.input[${i}].id`,
          };
        }
        out.push(found);
      } else {
        const built = this.#buildItem(given, `response.input[${i}]`);
        if ("error" in built) return built.error;
        out.push(built.entry);
      }
    }
    return out;
  }

  /** What the next `response.create` without overrides would do, from the conversation. */
  nextReply(): Reply {
    const { config } = resolveResponse(this.session, undefined, false) as {
      config: ResponseConfig;
    };
    return this.#reply(config, this.#entries);
  }

  /** The text the next `response.create` without overrides would say ("" for a function call). */
  replyText(): string {
    const reply = this.nextReply();
    return reply.kind === "text" ? reply.text : "";
  }

  #reply(config: ResponseConfig, context: readonly Entry[]): Reply {
    return replyFor(
      context.map((e) => ({ item: e.item, heard: e.heard })),
      config,
      this.defaultInstructions,
    );
  }

  #respond(msg: Json, clientEventId: string | null): Answer {
    const resolved = resolveResponse(this.session, msg.response, this.#spoke);
    if ("error" in resolved) return only(configError(resolved.error, clientEventId));
    const config = resolved.config;
    const busy = [...this.#active].find((r) => r.inConversation);
    if (config.conversation === "auto" && busy) {
      return only(errorEvent(
        "conversation_already_has_active_response",
        `Conversation already has an active response in progress: ${busy.id}. Wait until the response is finished before creating a new one.`,
        { clientEventId },
      ));
    }
    const context = this.#context(config);
    if (!Array.isArray(context)) return only(configError(context, clientEventId));
    const record: ResponseRecord = {
      id: openaiId("resp"),
      config,
      status: "in_progress",
      usage: null,
      output: [],
    };
    this.responses.push(record);
    const run = new ResponseRun(record, (r) => this.#active.delete(r));
    // The prompt is read when the response starts; it is what the next response may find cached.
    const prompt = this.#prompt(config, context);
    const previousPrompt = this.#lastPrompt;
    this.#lastPrompt = prompt;
    const reply = this.#reply(config, context);
    run.start(
      reply.kind === "text"
        ? this.#message(run, reply.text, context, prompt, previousPrompt)
        : this.#functionCall(run, reply, prompt, previousPrompt),
    );
    this.#active.add(run);
    return { events: [], runs: [run] };
  }

  #cancel(msg: Json, clientEventId: string | null): Json[] {
    const wanted = typeof msg.response_id === "string" ? msg.response_id : undefined;
    const run = [...this.#active].find((r) =>
      !r.stopped && (wanted === undefined ? r.inConversation : r.id === wanted)
    );
    if (!run) {
      return [
        errorEvent(
          "response_cancel_not_active",
          "Cancellation failed: no active response found",
          { clientEventId },
        ),
      ];
    }
    // response.done (status cancelled) comes from the run itself, after what it already sent.
    run.cancel("client_cancelled");
    return [];
  }

  /** An assistant message answering `context`, as a stream of GA events. */
  *#message(
    run: ResponseRun,
    text: string,
    context: readonly Entry[],
    prompt: PromptSegment[],
    previousPrompt: PromptSegment[] | undefined,
  ): Generator<Step, void> {
    const { config, id: responseId } = run.record;
    const audio = config.output_modalities[0] === "audio";
    const conversation = config.conversation === "auto";
    const words = text.match(WORDS) ?? [text];
    const max = config.max_output_tokens === "inf" ? Infinity : config.max_output_tokens;
    const itemId = openaiId("item");
    const item: Json = {
      id: itemId,
      type: "message",
      status: "in_progress",
      role: "assistant",
      content: [],
      object: "realtime.item",
    };
    const track = new Track();
    const entry: Entry = {
      item,
      audio: new Map(audio ? [[0, track]] : []),
      rev: 0,
      words: [],
    };
    const previous = this.#lastItemId();
    if (conversation) this.#entries.push(entry);
    const base = {
      object: "realtime.response",
      id: responseId,
      conversation_id: conversation ? this.conversationId : null,
      output_modalities: [...config.output_modalities],
      max_output_tokens: config.max_output_tokens,
      audio: { output: { format: { type: "audio/pcm", rate: 24000 }, voice: config.voice } },
      metadata: config.metadata,
    };
    const at = { response_id: responseId, item_id: itemId, output_index: 0, content_index: 0 };
    const step = (type: string, fields: Json, audioMs = 0): Step => ({
      event: serverEvent(type, fields),
      audioMs,
    });
    yield step("response.created", {
      response: { ...base, status: "in_progress", status_details: null, output: [], usage: null },
    });
    yield step("response.output_item.added", {
      response_id: responseId,
      output_index: 0,
      item: clone(item),
    });
    if (conversation) {
      yield step("conversation.item.added", { previous_item_id: previous, item: clone(item) });
    }
    item.content = [
      audio ? { type: "output_audio", transcript: "" } : { type: "output_text", text: "" },
    ];
    yield step("response.content_part.added", {
      ...at,
      part: audio ? { type: "audio", transcript: "" } : { type: "text", text: "" },
    });

    // Speech: the user's own audio played back, else a tone as long as the words.
    const chunks = audio
      ? audioChunks(this.#playback(context) ?? tone(SPOKEN_MS_PER_WORD * words.length), CHUNK_MS)
      : [];
    // Each piece is one audio chunk and the words due by its end (text: one word each).
    const pieces: { chunk?: Uint8Array; words: string[] }[] = audio
      ? chunks.map((chunk, k) => ({
        chunk,
        words: words.slice(
          Math.ceil(k * words.length / chunks.length),
          Math.ceil((k + 1) * words.length / chunks.length),
        ),
      }))
      : words.map((w) => ({ words: [w] }));
    let said = "";
    let spokenBytes = 0;
    let cut = false;
    const part = (item.content as Json[])[0]!;
    outer: for (const piece of pieces) {
      for (const [i, word] of [piece.chunk, ...piece.words].entries()) {
        if (run.stopped) break outer;
        const bytes = i === 0 ? (word as Uint8Array | undefined)?.byteLength ?? 0 : 0;
        const more = i === 0 ? "" : word as string;
        if (textTokens(said + more) + outputAudioTokens(spokenBytes + bytes) > max) {
          cut = true;
          break outer;
        }
        if (i === 0) {
          if (!word) continue;
          const chunk = word as Uint8Array;
          spokenBytes += chunk.byteLength;
          track.append(chunk);
          this.#spoke = true;
          yield step("response.output_audio.delta", {
            ...at,
            delta: encodeBase64(chunk),
          }, audioMs(chunk.byteLength));
        } else {
          said += more;
          // What the conversation keeps stops where a truncation cut the audio.
          if (!track.cut) {
            entry.words!.push({ text: more, at: track.byteLength });
            if (audio) part.transcript = String(part.transcript) + more;
            else part.text = String(part.text) + more;
          }
          yield step(
            audio ? "response.output_audio_transcript.delta" : "response.output_text.delta",
            { ...at, delta: more },
          );
        }
      }
    }
    if (audio) {
      yield step("response.output_audio.done", at);
      yield step("response.output_audio_transcript.done", { ...at, transcript: said });
    } else {
      yield step("response.output_text.done", { ...at, text: said });
    }
    yield step("response.content_part.done", {
      ...at,
      part: audio ? { type: "audio", transcript: said } : { type: "text", text: said },
    });
    const status = run.stopped ? "cancelled" : cut ? "incomplete" : "completed";
    item.status = status === "completed" ? "completed" : "incomplete";
    entry.rev++;
    const done = clone(item);
    yield step("response.output_item.done", {
      response_id: responseId,
      output_index: 0,
      item: done,
    });
    if (conversation) {
      yield step("conversation.item.done", { previous_item_id: previous, item: done });
    }
    // Billed: what was generated and sent, even if a truncation later cut what is kept.
    const usage = usageOf(prompt, previousPrompt, {
      text: textTokens(said),
      audio: outputAudioTokens(spokenBytes),
      image: 0,
    });
    Object.assign(run.record, { status, usage, output: [done] });
    yield step("response.done", {
      response: {
        ...base,
        status,
        status_details: status === "completed"
          ? null
          : status === "cancelled"
          ? { type: "cancelled", reason: run.stopped }
          : { type: "incomplete", reason: "max_output_tokens" },
        output: [done],
        usage,
      },
    });
  }

  /** A function call the reply asked for, as a stream of GA events. */
  *#functionCall(
    run: ResponseRun,
    call: { name: string; arguments: string },
    prompt: PromptSegment[],
    previousPrompt: PromptSegment[] | undefined,
  ): Generator<Step, void> {
    const { config, id: responseId } = run.record;
    const conversation = config.conversation === "auto";
    const max = config.max_output_tokens === "inf" ? Infinity : config.max_output_tokens;
    const itemId = openaiId("item");
    const callId = openaiId("call", 16);
    const item: Json = {
      id: itemId,
      type: "function_call",
      status: "in_progress",
      name: call.name,
      call_id: callId,
      arguments: "",
      object: "realtime.item",
    };
    const entry: Entry = { item, audio: new Map(), rev: 0 };
    const previous = this.#lastItemId();
    if (conversation) this.#entries.push(entry);
    const base = {
      object: "realtime.response",
      id: responseId,
      conversation_id: conversation ? this.conversationId : null,
      output_modalities: [...config.output_modalities],
      max_output_tokens: config.max_output_tokens,
      audio: { output: { format: { type: "audio/pcm", rate: 24000 }, voice: config.voice } },
      metadata: config.metadata,
    };
    const at = { response_id: responseId, item_id: itemId, output_index: 0, call_id: callId };
    const step = (type: string, fields: Json): Step => ({
      event: serverEvent(type, fields),
      audioMs: 0,
    });
    yield step("response.created", {
      response: { ...base, status: "in_progress", status_details: null, output: [], usage: null },
    });
    yield step("response.output_item.added", {
      response_id: responseId,
      output_index: 0,
      item: clone(item),
    });
    if (conversation) {
      yield step("conversation.item.added", { previous_item_id: previous, item: clone(item) });
    }
    // The name is generated first: it counts before any argument does.
    const nameTokens = textTokens(call.name);
    let args = "";
    let cut = nameTokens > max;
    for (let i = 0; i < call.arguments.length && !cut; i += ARGUMENT_CHUNK) {
      if (run.stopped) break;
      const delta = call.arguments.slice(i, i + ARGUMENT_CHUNK);
      if (nameTokens + textTokens(args + delta) > max) {
        cut = true;
        break;
      }
      args += delta;
      item.arguments = args;
      yield step("response.function_call_arguments.delta", { ...at, delta });
    }
    yield step("response.function_call_arguments.done", {
      ...at,
      name: call.name,
      arguments: args,
    });
    const status = run.stopped ? "cancelled" : cut ? "incomplete" : "completed";
    item.status = status === "completed" ? "completed" : "incomplete";
    entry.rev++;
    const done = clone(item);
    yield step("response.output_item.done", {
      response_id: responseId,
      output_index: 0,
      item: done,
    });
    if (conversation) {
      yield step("conversation.item.done", { previous_item_id: previous, item: done });
    }
    const usage = usageOf(prompt, previousPrompt, {
      text: textTokens(call.name) + textTokens(args),
      audio: 0,
      image: 0,
    });
    Object.assign(run.record, { status, usage, output: [done] });
    yield step("response.done", {
      response: {
        ...base,
        status,
        status_details: status === "completed"
          ? null
          : status === "cancelled"
          ? { type: "cancelled", reason: run.stopped }
          : { type: "incomplete", reason: "max_output_tokens" },
        output: [done],
        usage,
      },
    });
  }

  /** The audio of the last user message in `context`, without a transcript marker. */
  #playback(context: readonly Entry[]): Uint8Array | undefined {
    const lastUser = context.findLast((e) => e.item.type === "message" && e.item.role === "user");
    if (!lastUser) return undefined;
    const audio = concatBytes([...lastUser.audio.values()].map((t) => t.bytes()));
    const spoken = stripMarker(audio);
    return spoken.byteLength > 0 ? spoken : undefined;
  }
}

/** A GA `LogProbProperties` entry for `token`, with full confidence. */
function logprobOf(token: string): Json {
  return { token, logprob: 0, bytes: [...new TextEncoder().encode(token)] };
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

const MARKER = new TextEncoder().encode(TRANSCRIPT_MARKER);

/** Where a `#transcript:<text>\n` prefix of `audio` ends, or -1 without one. */
function markerEnd(audio: Uint8Array): number {
  if (audio.byteLength < MARKER.byteLength || MARKER.some((b, i) => audio[i] !== b)) return -1;
  return audio.indexOf(0x0a, MARKER.byteLength);
}

/** The transcript a `#transcript:<text>\n` prefix gives audio, if it has one. */
function markedTranscript(audio: Uint8Array): string | undefined {
  const end = markerEnd(audio);
  if (end < 0) return undefined;
  return new TextDecoder().decode(audio.subarray(MARKER.byteLength, end));
}

/** `audio` without its transcript marker (a marker is meaning, not sound), on a sample boundary. */
function stripMarker(audio: Uint8Array): Uint8Array {
  const end = markerEnd(audio);
  if (end < 0) return audio;
  const start = end + 1;
  return audio.subarray(start + (start % 2));
}

/** Root mean square of PCM16 little-endian samples, 0..1. */
function rms(frame: Uint8Array): number {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let sum = 0;
  const n = Math.floor(frame.byteLength / 2);
  for (let i = 0; i < n; i++) {
    const v = view.getInt16(i * 2, true) / 32768;
    sum += v * v;
  }
  return n === 0 ? 0 : Math.sqrt(sum / n);
}

function only(event: Json): Answer {
  return { events: [event], runs: [] };
}

function events(list: Json[]): Answer {
  return { events: list, runs: [] };
}

function configError(e: ConfigError, clientEventId: string | null): Json {
  return errorEvent(e.code, e.message, { param: e.param, clientEventId });
}
