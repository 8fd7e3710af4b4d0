/**
 * The GA session and response configuration the OpenAI stand-in accepts, as
 * pure functions: which `session.update` fields exist and how they merge, and
 * what a `response.create` overrides for one response.
 *
 * Sources: the GA API reference (`RealtimeSessionCreateRequest`,
 * `RealtimeResponseCreateParams`, `session.update`: "update any field except
 * for `voice` and `model`. `voice` can be updated only if there have been no
 * other audio outputs yet"), and errors seen from the live API: an unknown
 * field is `unknown_parameter` with `param` `session.<field>` and the whole
 * event is refused; a voice change after audio is `cannot_update_voice`. The
 * read-only fields OpenAI shows in `session.created` (`id`, `object`,
 * `expires_at`) are not fields of the update, so they are unknown parameters
 * too: a client must not send the session it was shown back as is.
 *
 * Transcription sessions (`?intent=transcription`, no model) take
 * `session.update` with `type: "transcription"` and only the fields of the GA
 * `RealtimeTranscriptionSessionCreateRequest`: `type`, `audio.input`
 * (`format`, `noise_reduction`, `transcription`, `turn_detection`) and
 * `include` ({@linkcode applyTranscriptionSessionUpdate}). Neither kind of
 * session becomes the other: see {@linkcode TYPE_SWITCH_REFUSALS}.
 * @module
 */

type Json = Record<string, unknown>;

/** A refusal, as the `error` of an `error` event. */
export interface ConfigError {
  /** OpenAI's error code, e.g. `unknown_parameter`. */
  code: string;
  /** OpenAI's sentence. */
  message: string;
  /** The dotted path refused, e.g. `session.voice`. */
  param: string | null;
}

/** Top-level fields of `session.update`'s `session` (GA `RealtimeSessionCreateRequest`). */
export const SESSION_FIELDS: readonly string[] = [
  "type",
  "model",
  "instructions",
  "tools",
  "tool_choice",
  "max_output_tokens",
  "output_modalities",
  "audio",
  "tracing",
  "include",
  "prompt",
  "truncation",
  "reasoning",
  "parallel_tool_calls",
];

const AUDIO_FIELDS: Readonly<Record<string, readonly string[]>> = {
  input: ["format", "noise_reduction", "transcription", "turn_detection"],
  output: ["format", "speed", "voice"],
};

/** Fields of `response.create`'s `response` (GA `RealtimeResponseCreateParams`). */
export const RESPONSE_FIELDS: readonly string[] = [
  "audio",
  "conversation",
  "input",
  "instructions",
  "max_output_tokens",
  "metadata",
  "output_modalities",
  "parallel_tool_calls",
  "prompt",
  "reasoning",
  "tool_choice",
  "tools",
];

/** What one response runs with, after its overrides: what tests read back as `lastResponse`. */
export interface ResponseConfig {
  /** The instructions the response follows. */
  instructions: string;
  /** What it answers with. */
  output_modalities: ["audio"] | ["text"];
  /** Where its output is cut (`incomplete`, reason `max_output_tokens`). */
  max_output_tokens: number | "inf";
  /** The voice it speaks with. */
  voice: string;
  /** The tools it may call. */
  tools: Json[];
  /** How it chooses among them. */
  tool_choice: unknown;
  /** The client's metadata, echoed on the response. */
  metadata: Json | null;
  /** `none`: out of band, nothing is added to the conversation. */
  conversation: "auto" | "none";
  /** The response's own context (`response.input`), when it has one. */
  input: Json[] | undefined;
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a decimal";
  if (typeof v === "object") return "an object";
  return `a ${typeof v === "boolean" ? "boolean" : typeof v}`;
}

function invalidType(param: string, expected: string, got: unknown): ConfigError {
  return {
    code: "invalid_type",
    message: `Invalid type for '${param}': expected ${expected}, but got ${kind(got)} instead.`,
    param,
  };
}

function unknown(param: string): ConfigError {
  return { code: "unknown_parameter", message: `Unknown parameter: '${param}'.`, param };
}

/** The voice of a session or response configuration. */
export function voiceOf(config: Json): string {
  const output = isObject(config.audio) && isObject(config.audio.output) ? config.audio.output : {};
  const voice = output.voice;
  if (typeof voice === "string") return voice;
  if (isObject(voice) && typeof voice.id === "string") return voice.id;
  return "alloy";
}

/** Checks the fields both `session` and `response` share; `prefix` names them in errors. */
function checkCommon(
  fields: Json,
  prefix: string,
  current: Json,
  spoke: boolean,
): ConfigError | null {
  if ("instructions" in fields && typeof fields.instructions !== "string") {
    return invalidType(`${prefix}.instructions`, "a string", fields.instructions);
  }
  if ("tools" in fields) {
    if (!Array.isArray(fields.tools)) {
      return invalidType(`${prefix}.tools`, "an array", fields.tools);
    }
    for (const [i, tool] of fields.tools.entries()) {
      if (!isObject(tool)) return invalidType(`${prefix}.tools[${i}]`, "an object", tool);
      if (tool.type === "function" && typeof tool.name !== "string") {
        return {
          code: "missing_required_parameter",
          message: `Missing required parameter: '${prefix}.tools[${i}].name'.`,
          param: `${prefix}.tools[${i}].name`,
        };
      }
    }
  }
  if ("output_modalities" in fields) {
    const m = fields.output_modalities;
    if (!Array.isArray(m)) return invalidType(`${prefix}.output_modalities`, "an array", m);
    if (m.length !== 1 || (m[0] !== "audio" && m[0] !== "text")) {
      return {
        code: "invalid_value",
        message: `Invalid modalities: ${
          JSON.stringify(m)
        }. Supported combinations are: ['text'] and ['audio'].`,
        param: `${prefix}.output_modalities`,
      };
    }
  }
  if ("max_output_tokens" in fields) {
    const max = fields.max_output_tokens;
    const param = `${prefix}.max_output_tokens`;
    if (max !== "inf") {
      if (typeof max !== "number" || !Number.isInteger(max)) {
        return invalidType(param, "an integer or 'inf'", max);
      }
      if (max < 1) {
        return {
          code: "integer_below_min_value",
          message:
            `Invalid '${param}': integer below minimum value. Expected a value >= 1, but got ${max} instead.`,
          param,
        };
      }
      if (max > 4096) {
        return {
          code: "integer_above_max_value",
          message:
            `Invalid '${param}': integer above maximum value. Expected a value <= 4096, but got ${max} instead.`,
          param,
        };
      }
    }
  }
  if ("audio" in fields) {
    const audio = fields.audio;
    if (!isObject(audio)) return invalidType(`${prefix}.audio`, "an object", audio);
    const sides = prefix === "session" ? AUDIO_FIELDS : { output: ["format", "voice"] };
    for (const [side, value] of Object.entries(audio)) {
      const known = (sides as Record<string, readonly string[]>)[side];
      if (!known) return unknown(`${prefix}.audio.${side}`);
      if (!isObject(value)) return invalidType(`${prefix}.audio.${side}`, "an object", value);
      for (const key of Object.keys(value)) {
        if (!known.includes(key)) return unknown(`${prefix}.audio.${side}.${key}`);
      }
    }
    const wanted = isObject(audio.output) && "voice" in audio.output ? voiceOf(fields) : undefined;
    if (wanted !== undefined && spoke && wanted !== voiceOf(current)) {
      return {
        code: "cannot_update_voice",
        message: "Cannot update a conversation's voice if assistant audio is present.",
        param: `${prefix}.audio.output.voice`,
      };
    }
  }
  if ("metadata" in fields && fields.metadata !== null) {
    const md = fields.metadata;
    if (!isObject(md)) return invalidType(`${prefix}.metadata`, "an object", md);
    for (const [k, v] of Object.entries(md)) {
      if (typeof v !== "string") return invalidType(`${prefix}.metadata.${k}`, "a string", v);
    }
  }
  return null;
}

/**
 * `current` with `update` applied, or why the whole update is refused.
 * Top-level fields are replaced; `audio.input` and `audio.output` are merged
 * one level down, so setting the voice keeps the input format.
 * `spoke`: whether assistant audio has gone out (the voice is then locked).
 */
export function applySessionUpdate(
  current: Json,
  update: Json,
  spoke: boolean,
): { session: Json } | { error: ConfigError } {
  for (const key of Object.keys(update)) {
    if (!SESSION_FIELDS.includes(key)) return { error: unknown(`session.${key}`) };
  }
  if (update.type === undefined) {
    return {
      error: {
        code: "missing_required_parameter",
        message: "Missing required parameter: 'session.type'.",
        param: "session.type",
      },
    };
  }
  if (update.type === "transcription") {
    // What OpenAI answers a conversation session (`?model=`) asked to become a
    // transcription session (see TYPE_SWITCH_REFUSALS).
    return { error: TYPE_SWITCH_REFUSALS.toTranscription };
  }
  if (update.type !== "realtime") {
    return {
      error: {
        code: "invalid_value",
        message: `Invalid value: '${String(update.type)}'. Supported values are: 'realtime'.`,
        param: "session.type",
      },
    };
  }
  if ("model" in update && update.model !== current.model) {
    // The reference: a session's model cannot be updated (the exact error is not documented).
    return {
      error: {
        code: "invalid_value",
        message: "Cannot update a session's model.",
        param: "session.model",
      },
    };
  }
  const error = checkCommon(update, "session", current, spoke);
  if (error) return { error };
  const next: Json = structuredClone(current);
  for (const [key, value] of Object.entries(update)) {
    if (key === "audio" && isObject(value)) {
      const audio: Json = isObject(next.audio) ? next.audio : {};
      for (const [side, fields] of Object.entries(value)) {
        audio[side] = { ...(isObject(audio[side]) ? audio[side] : {}), ...(fields as Json) };
      }
      next.audio = audio;
    } else {
      next[key] = structuredClone(value);
    }
  }
  const input = isObject(next.audio) ? next.audio.input : undefined;
  if (isObject(input) && isObject(input.turn_detection)) {
    // session.updated shows the effective detector: the defaults of its type under the fields given.
    const defaults = TURN_DETECTION_DEFAULTS[String(input.turn_detection.type)];
    if (defaults) input.turn_detection = { ...defaults, ...input.turn_detection };
  }
  return { session: next };
}

/** What OpenAI fills in for a turn detector given by its type alone. */
export const TURN_DETECTION_DEFAULTS: Readonly<Record<string, Json>> = {
  server_vad: {
    type: "server_vad",
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 200,
    idle_timeout_ms: null,
    create_response: true,
    interrupt_response: true,
  },
  semantic_vad: {
    type: "semantic_vad",
    eagerness: "auto",
    create_response: true,
    interrupt_response: true,
  },
};

/**
 * The configuration one `response.create` runs with: the session's, with the
 * event's `response` fields overriding it for this response only.
 */
export function resolveResponse(
  session: Json,
  params: unknown,
  spoke: boolean,
): { config: ResponseConfig } | { error: ConfigError } {
  if (params !== undefined && !isObject(params)) {
    return { error: invalidType("response", "an object", params) };
  }
  const p: Json = params ?? {};
  for (const key of Object.keys(p)) {
    if (!RESPONSE_FIELDS.includes(key)) return { error: unknown(`response.${key}`) };
  }
  const error = checkCommon(p, "response", session, spoke);
  if (error) return { error };
  if ("conversation" in p && typeof p.conversation !== "string") {
    return { error: invalidType("response.conversation", "a string", p.conversation) };
  }
  if ("input" in p) {
    if (!Array.isArray(p.input)) {
      return { error: invalidType("response.input", "an array", p.input) };
    }
    for (const [i, item] of p.input.entries()) {
      if (!isObject(item)) return { error: invalidType(`response.input[${i}]`, "an object", item) };
    }
  }
  const pick = <T>(key: string, fallback: T): T =>
    (key in p ? p[key] : session[key] ?? fallback) as T;
  const modalities = pick<string[]>("output_modalities", ["audio"]);
  return {
    config: {
      instructions: pick("instructions", ""),
      output_modalities: modalities[0] === "text" ? ["text"] : ["audio"],
      max_output_tokens: pick<number | "inf">("max_output_tokens", "inf"),
      voice: voiceOf(
        isObject(p.audio) && isObject(p.audio.output) && "voice" in p.audio.output ? p : session,
      ),
      tools: structuredClone(pick<Json[]>("tools", [])),
      tool_choice: structuredClone(pick<unknown>("tool_choice", "auto")),
      metadata: "metadata" in p ? structuredClone(p.metadata as Json | null) : null,
      conversation: p.conversation === "none" ? "none" : "auto",
      input: Array.isArray(p.input) ? structuredClone(p.input as Json[]) : undefined,
    },
  };
}

/**
 * A session never changes its type. A conversation session (opened with
 * `?model=`) answers a `session.update` of `type: "transcription"` with
 * `invalid_request_error` `invalid_parameter`, "Passing a transcription
 * session update event to a realtime session is not allowed.", `param` ""
 * (as reported from the live API: community.openai.com "Unable to update
 * OpenAI Realtime session (transcription prompt)", and the GA `session.update`
 * on a `?model=` URL in crmitchelmore/justspeaktoit#427). The reverse, a
 * `type: "realtime"` update on a transcription session, is not documented:
 * the stand-in answers the mirror image of the same error.
 */
export const TYPE_SWITCH_REFUSALS: Readonly<Record<"toTranscription" | "toRealtime", ConfigError>> =
  {
    toTranscription: {
      code: "invalid_parameter",
      message: "Passing a transcription session update event to a realtime session is not allowed.",
      param: "",
    },
    toRealtime: {
      code: "invalid_parameter",
      message: "Passing a realtime session update event to a transcription session is not allowed.",
      param: "",
    },
  };

/** Top-level fields of a transcription `session.update`'s `session` (GA `RealtimeTranscriptionSessionCreateRequest`). */
export const TRANSCRIPTION_SESSION_FIELDS: readonly string[] = ["type", "audio", "include"];

/** Fields of `audio.input.transcription` (GA `AudioTranscription`). */
const TRANSCRIPTION_FIELDS: readonly string[] = [
  "model",
  "language",
  "prompt",
  "delay",
  "keywords",
  "languages",
];

/** What `include` may hold (GA reference: the only value). */
export const TRANSCRIPTION_INCLUDE = "item.input_audio_transcription.logprobs";

/** What OpenAI fills in for a transcription session's turn detector given by its type alone. */
export const TRANSCRIPTION_TURN_DETECTION_DEFAULTS: Readonly<Record<string, Json>> = {
  server_vad: {
    type: "server_vad",
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 200,
  },
  semantic_vad: { type: "semantic_vad", eagerness: "auto" },
};

/**
 * A transcription session `current` with `update` applied, or why the whole
 * update is refused: unknown fields (`session.instructions`, `session.tools`,
 * `session.audio.output`...) are `unknown_parameter` as on a conversation;
 * `audio.input` is merged one level down; any transcription model name is
 * taken (the relay, not the stand-in, keeps a list).
 */
export function applyTranscriptionSessionUpdate(
  current: Json,
  update: Json,
): { session: Json } | { error: ConfigError } {
  for (const key of Object.keys(update)) {
    if (!TRANSCRIPTION_SESSION_FIELDS.includes(key)) return { error: unknown(`session.${key}`) };
  }
  if (update.type === undefined) {
    return {
      error: {
        code: "missing_required_parameter",
        message: "Missing required parameter: 'session.type'.",
        param: "session.type",
      },
    };
  }
  if (update.type === "realtime") return { error: TYPE_SWITCH_REFUSALS.toRealtime };
  if (update.type !== "transcription") {
    return {
      error: {
        code: "invalid_value",
        message: `Invalid value: '${String(update.type)}'. Supported values are: 'transcription'.`,
        param: "session.type",
      },
    };
  }
  if ("audio" in update) {
    const audio = update.audio;
    if (!isObject(audio)) return { error: invalidType("session.audio", "an object", audio) };
    for (const [side, value] of Object.entries(audio)) {
      if (side !== "input") return { error: unknown(`session.audio.${side}`) };
      if (!isObject(value)) {
        return { error: invalidType("session.audio.input", "an object", value) };
      }
      for (const key of Object.keys(value)) {
        if (!AUDIO_FIELDS.input!.includes(key)) {
          return { error: unknown(`session.audio.input.${key}`) };
        }
      }
      const t = value.transcription;
      if (t !== undefined && t !== null) {
        const param = "session.audio.input.transcription";
        if (!isObject(t)) return { error: invalidType(param, "an object", t) };
        for (const key of Object.keys(t)) {
          if (!TRANSCRIPTION_FIELDS.includes(key)) return { error: unknown(`${param}.${key}`) };
        }
        for (const key of ["model", "language", "prompt"]) {
          if (key in t && typeof t[key] !== "string" && !(key === "language" && t[key] === null)) {
            return { error: invalidType(`${param}.${key}`, "a string", t[key]) };
          }
        }
      }
      const td = value.turn_detection;
      if (td !== undefined && td !== null) {
        const param = "session.audio.input.turn_detection";
        if (!isObject(td)) return { error: invalidType(param, "an object", td) };
        if (!(String(td.type) in TRANSCRIPTION_TURN_DETECTION_DEFAULTS)) {
          return {
            error: {
              code: "invalid_value",
              message: `Invalid value: '${
                String(td.type)
              }'. Supported values are: 'server_vad' and 'semantic_vad'.`,
              param: `${param}.type`,
            },
          };
        }
      }
    }
  }
  if ("include" in update && update.include !== null) {
    const inc = update.include;
    if (!Array.isArray(inc)) return { error: invalidType("session.include", "an array", inc) };
    for (const [i, v] of inc.entries()) {
      if (v !== TRANSCRIPTION_INCLUDE) {
        return {
          error: {
            code: "invalid_value",
            message: `Invalid value: '${
              String(v)
            }'. Supported values are: '${TRANSCRIPTION_INCLUDE}'.`,
            param: `session.include[${i}]`,
          },
        };
      }
    }
  }
  const next: Json = structuredClone(current);
  if (isObject(update.audio) && isObject(update.audio.input)) {
    const audio: Json = isObject(next.audio) ? next.audio : {};
    audio.input = {
      ...(isObject(audio.input) ? audio.input : {}),
      ...structuredClone(update.audio.input),
    };
    next.audio = audio;
    const input = audio.input as Json;
    if (isObject(input.turn_detection)) {
      const defaults = TRANSCRIPTION_TURN_DETECTION_DEFAULTS[String(input.turn_detection.type)];
      input.turn_detection = { ...defaults, ...input.turn_detection };
    }
  }
  if ("include" in update) next.include = structuredClone(update.include);
  return { session: next };
}
