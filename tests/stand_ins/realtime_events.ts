/**
 * The GA OpenAI Realtime conversation, as far as the relay's tests need it:
 * server event shapes follow the GA API reference (`type` first, then
 * `event_id`), with deterministic content so tests can assert on it.
 */

import { concatBytes, decodeBase64 } from "./realtime_audio.ts";
import {
  headSegments,
  itemTokens,
  outputTokens,
  type PromptSegment,
  usageOf,
} from "./realtime_usage.ts";

type Json = Record<string, unknown>;

/** One conversation item as the stand-in holds it: the GA item, its audio, its revision. */
interface Entry {
  /** The item as events show it: audio parts carry no `audio` bytes. */
  item: Json;
  /** PCM16 audio by content index. */
  audio: Map<number, Uint8Array>;
  /** Bumped whenever the item changes, so the prefix cache sees a different item. */
  rev: number;
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

function merge(base: Json, update: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(update)) {
    const prev = out[k];
    out[k] = isObject(v) && isObject(prev) ? merge(prev, v) : v;
  }
  return out;
}

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

/** One Realtime conversation: feed it client messages, get the server events to send back. */
export class RealtimeConversation {
  session: Json;
  readonly conversationId = openaiId("conv");
  /** Decoded bytes appended to the input audio buffer and not yet committed/cleared. */
  audioBufferBytes = 0;
  /** All decoded audio bytes received over the connection. */
  audioBytesTotal = 0;
  #entries: Entry[] = [];
  #buffer: Uint8Array[] = [];
  #lastUserText: string | undefined;
  #lastAudioBytes = 0;
  /** The prompt of the previous response, for the prefix cache. */
  #lastPrompt: PromptSegment[] | undefined;

  constructor(model: string) {
    this.session = defaultSession(model);
  }

  /** The conversation's items in order, as `conversation.item.done` shows them (no audio bytes). */
  get items(): Json[] {
    return this.#entries.map((e) => structuredClone(e.item));
  }

  /** The first event of every connection. */
  created(): Json {
    return serverEvent("session.created", { session: this.session });
  }

  /** Server events answering one client text message, in order. */
  handleText(text: string): Json[] {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return [
        errorEvent(
          "invalid_json",
          "Invalid event: failed to parse JSON value.",
        ),
      ];
    }
    if (!isObject(msg)) {
      return [
        errorEvent("invalid_type", "Invalid event: expected an object.", {
          param: null,
        }),
      ];
    }
    const clientEventId = typeof msg.event_id === "string" ? msg.event_id : null;
    const type = typeof msg.type === "string" ? msg.type : undefined;
    if (type === undefined) {
      return [
        errorEvent(
          "missing_required_parameter",
          "Missing required parameter: 'type'.",
          { param: "type", clientEventId },
        ),
      ];
    }
    if (!CLIENT_EVENTS.includes(type)) {
      return [
        errorEvent(
          "invalid_value",
          `Invalid value: '${type}'. Supported values are: ${
            CLIENT_EVENTS.map((t) => `'${t}'`).join(", ")
          }.`,
          { param: "type", clientEventId },
        ),
      ];
    }
    switch (type) {
      case "session.update":
        return this.#sessionUpdate(msg, clientEventId);
      case "input_audio_buffer.append":
        return this.#append(msg, clientEventId);
      case "input_audio_buffer.commit":
        return this.#commit(clientEventId);
      case "input_audio_buffer.clear":
        this.audioBufferBytes = 0;
        this.#buffer = [];
        return [serverEvent("input_audio_buffer.cleared")];
      case "conversation.item.create":
        return this.#itemCreate(msg, clientEventId);
      case "conversation.item.delete":
        return this.#itemDelete(msg, clientEventId);
      case "response.create":
        return this.#respond(msg);
      case "response.cancel":
        // Responses here are emitted in one go, so none is ever in progress.
        return [
          errorEvent(
            "response_cancel_not_active",
            "Cancellation failed: no active response found",
            { clientEventId },
          ),
        ];
      default:
        return [
          errorEvent(
            "unsupported_event",
            `The stand-in does not implement '${type}'.`,
            { param: "type", clientEventId },
          ),
        ];
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
    if (update.type !== "realtime") {
      return [
        errorEvent(
          "missing_required_parameter",
          "Missing required parameter: 'session.type'.",
          { param: "session.type", clientEventId },
        ),
      ];
    }
    this.session = merge(this.session, update);
    return [serverEvent("session.updated", { session: this.session })];
  }

  #append(msg: Json, clientEventId: string | null): Json[] {
    if (typeof msg.audio !== "string") {
      return [
        errorEvent(
          "missing_required_parameter",
          "Missing required parameter: 'audio'.",
          { param: "audio", clientEventId },
        ),
      ];
    }
    let audio: Uint8Array;
    try {
      audio = decodeBase64(msg.audio);
    } catch {
      return [
        errorEvent("invalid_value", "Invalid 'audio'. Expected base64.", {
          param: "audio",
          clientEventId,
        }),
      ];
    }
    // Appending is silent in the real API (no server VAD events here).
    this.#buffer.push(audio);
    this.audioBufferBytes += audio.byteLength;
    this.audioBytesTotal += audio.byteLength;
    return [];
  }

  #commit(clientEventId: string | null): Json[] {
    if (this.audioBufferBytes === 0) {
      return [
        errorEvent(
          "input_audio_buffer_commit_empty",
          "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.",
          { clientEventId },
        ),
      ];
    }
    const previous = this.#lastItemId();
    const item: Json = {
      id: openaiId("item"),
      type: "message",
      object: "realtime.item",
      status: "completed",
      role: "user",
      content: [{ type: "input_audio", transcript: null }],
    };
    this.#lastAudioBytes = this.audioBufferBytes;
    this.#lastUserText = undefined;
    this.#entries.push({ item, audio: new Map([[0, concatBytes(this.#buffer)]]), rev: 0 });
    this.#buffer = [];
    this.audioBufferBytes = 0;
    return [
      serverEvent("input_audio_buffer.committed", {
        previous_item_id: previous,
        item_id: item.id,
      }),
      serverEvent("conversation.item.added", { previous_item_id: previous, item }),
      serverEvent("conversation.item.done", { previous_item_id: previous, item }),
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
    const previous = this.#lastItemId();
    const item: Json = {
      id: typeof given.id === "string" ? given.id : openaiId("item"),
      object: "realtime.item",
      ...given,
      status: "completed",
    };
    this.#entries.push({ item, audio: new Map(), rev: 0 });
    const text = textOf(item);
    if (text !== undefined && item.role === "user") this.#lastUserText = text;
    return [
      serverEvent("conversation.item.added", { previous_item_id: previous, item }),
      serverEvent("conversation.item.done", { previous_item_id: previous, item }),
    ];
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

  /** A response's prompt: instructions, tools, then each item as it stands now. */
  #prompt(instructions: string, tools: readonly unknown[], entries: Entry[]): PromptSegment[] {
    return [
      ...headSegments(instructions, tools),
      ...entries.map((e) => ({
        key: `${String(e.item.id)}#${e.rev}`,
        ...itemTokens(e.item, (i) => e.audio.get(i)?.byteLength ?? 0),
      })),
    ];
  }

  #lastItemId(): string | null {
    const last = this.#entries.at(-1)?.item;
    return typeof last?.id === "string" ? last.id : null;
  }

  /** The assistant's deterministic answer: it says what it received. */
  replyText(): string {
    if (this.#lastUserText !== undefined) {
      return `You said: ${this.#lastUserText}`;
    }
    if (this.#lastAudioBytes > 0) {
      return `I heard ${this.#lastAudioBytes} bytes of audio.`;
    }
    return "Hello from the stand-in.";
  }

  #respond(msg: Json): Json[] {
    const params = isObject(msg.response) ? msg.response : {};
    const modalities = Array.isArray(params.output_modalities)
      ? params.output_modalities
      : this.session.output_modalities;
    const audio = Array.isArray(modalities) && modalities.includes("audio");
    const responseId = openaiId("resp");
    const itemId = openaiId("item");
    const text = this.replyText();
    const pieces = text.match(/\S+\s*/g) ?? [text];
    // The whole conversation so far is the prompt, read before the answer is added.
    const prompt = this.#prompt(
      String(this.session.instructions ?? ""),
      Array.isArray(this.session.tools) ? this.session.tools : [],
      this.#entries,
    );
    // 10 ms of 24 kHz PCM16 silence per word keeps the stream realistic yet small.
    const silence = new Uint8Array(480);
    const base = {
      object: "realtime.response",
      id: responseId,
      conversation_id: this.conversationId,
      output_modalities: audio ? ["audio"] : ["text"],
      max_output_tokens: "inf",
      audio: { output: { format: { type: "audio/pcm", rate: 24000 }, voice: "alloy" } },
      metadata: null,
    };
    const finalPart = audio
      ? { type: "output_audio", transcript: text }
      : { type: "output_text", text };
    const item = (status: string, content: Json[]): Json => ({
      id: itemId,
      type: "message",
      status,
      role: "assistant",
      content,
      object: "realtime.item",
    });
    const at = { response_id: responseId, item_id: itemId, output_index: 0 };
    const previous = this.#lastItemId();
    const events: Json[] = [
      serverEvent("response.created", {
        response: { ...base, status: "in_progress", status_details: null, output: [], usage: null },
      }),
      serverEvent("response.output_item.added", {
        response_id: responseId,
        output_index: 0,
        item: item("in_progress", []),
      }),
      serverEvent("conversation.item.added", {
        previous_item_id: previous,
        item: item("in_progress", []),
      }),
      serverEvent("response.content_part.added", {
        ...at,
        content_index: 0,
        part: audio ? { type: "audio", transcript: "" } : { type: "text", text: "" },
      }),
    ];
    for (const delta of pieces) {
      if (audio) {
        events.push(
          serverEvent("response.output_audio.delta", {
            ...at,
            content_index: 0,
            delta: btoa("\0".repeat(silence.byteLength)),
          }),
        );
      }
      events.push(
        serverEvent(
          audio ? "response.output_audio_transcript.delta" : "response.output_text.delta",
          { ...at, content_index: 0, delta },
        ),
      );
    }
    if (audio) {
      events.push(
        serverEvent("response.output_audio.done", { ...at, content_index: 0 }),
        serverEvent("response.output_audio_transcript.done", {
          ...at,
          content_index: 0,
          transcript: text,
        }),
      );
    } else {
      events.push(
        serverEvent("response.output_text.done", { ...at, content_index: 0, text }),
      );
    }
    const done = item("completed", [finalPart]);
    const spoken = new Uint8Array(audio ? silence.byteLength * pieces.length : 0);
    const entry: Entry = { item: done, audio: new Map(audio ? [[0, spoken]] : []), rev: 0 };
    this.#entries.push(entry);
    const usage = usageOf(
      prompt,
      this.#lastPrompt,
      outputTokens(done, (i) => entry.audio.get(i)?.byteLength ?? 0),
    );
    this.#lastPrompt = prompt;
    events.push(
      serverEvent("response.content_part.done", {
        ...at,
        content_index: 0,
        part: audio ? { type: "audio", transcript: text } : { type: "text", text },
      }),
      serverEvent("response.output_item.done", {
        response_id: responseId,
        output_index: 0,
        item: done,
      }),
      serverEvent("conversation.item.done", {
        previous_item_id: previous,
        item: done,
      }),
      serverEvent("response.done", {
        response: {
          ...base,
          status: "completed",
          status_details: null,
          output: [done],
          usage,
        },
      }),
    );
    return events;
  }
}

function textOf(item: Json): string | undefined {
  const content = item.content;
  if (!Array.isArray(content)) return undefined;
  const texts = content.filter(isObject).map((c) =>
    typeof c.text === "string" ? c.text : typeof c.transcript === "string" ? c.transcript : ""
  );
  const joined = texts.join("");
  return joined.length > 0 ? joined : undefined;
}
