/**
 * The transcription-model check (CONTRACT.md "Transcription sessions and live
 * captions"): a client's `session.update` may choose only a transcription
 * model in `OPENAI_TRANSCRIPTION_MODELS` (the model decides the price). Pure.
 * @module
 */
import type { MessageDecision } from "./policy_verdict.ts";
import { foldKey, quoteShort, readStrictJson } from "./strict_json.ts";

/** Where the model is chosen, as the refusal's `param` names it. */
export const TRANSCRIPTION_MODEL_PARAM = "session.audio.input.transcription.model";
const PATH = ["session", "audio", "input", "transcription", "model"];

/**
 * The decision on one client message: `null` when it chooses no
 * transcription model, or only a listed one (it is forwarded unchanged),
 * else a refusal. Only a `session.update` sets the model, and an event type
 * is matched exactly (keys may be folded: `"Transcription"` is read, below):
 * a text that neither spells `session.update` nor escapes a character is
 * passed without reading it (audio appends, 50 a second, never are read).
 */
export function checkTranscriptionModel(
  data: string | ArrayBuffer,
  models: readonly string[],
): Exclude<MessageDecision, { pass: true }> | null {
  if (typeof data !== "string" || (!data.includes("session.update") && !data.includes("\\"))) {
    return null;
  }
  const read = readStrictJson(data);
  // Read differently by another parser (duplicate keys, ...): it could hide a model.
  if (!read.ok) {
    return { pass: false, code: read.problem, message: read.message, param: null, eventId: null };
  }
  const event = read.value;
  if (!isPlainObject(event) || valueOf(event, "type") !== "session.update") return null;
  let at: unknown = event;
  for (const key of PATH) {
    if (!isPlainObject(at)) return null;
    at = valueOf(at, key);
  }
  if (at === undefined || at === null || (typeof at === "string" && models.includes(at))) {
    return null;
  }
  const id = valueOf(event, "event_id");
  return {
    pass: false,
    code: "transcription_model",
    message: `The transcription model ${
      typeof at === "string" ? quoteShort(at) : "given"
    } is not allowed by the relay; allowed: ${models.join(", ")}.`,
    param: TRANSCRIPTION_MODEL_PARAM,
    eventId: typeof id === "string" ? id : null,
  };
}

/** A key's value, matched as OpenAI and the strict reader fold keys. */
function valueOf(object: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(object, key)) return object[key];
  const folded = foldKey(key);
  const match = Object.keys(object).find((candidate) => foldKey(candidate) === folded);
  return match === undefined ? undefined : object[match];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
