/**
 * The upstream events metering reads, picked out without parsing every
 * message: only a message whose opening names one of them is parsed. Audio
 * deltas (tens of kilobytes each) cost one short scan of their first bytes.
 * @module
 */

/** How far into a message its `type` is looked for; OpenAI puts it first. */
const TYPE_WINDOW = 64;

/** The longest event type read; anything longer is no event metering knows. */
const MAX_TYPE_LENGTH = 80;

/**
 * The `type` of a JSON event when it appears at its opening (as OpenAI and
 * OpenAI's clients write it), else `null`. Reads at most a few dozen bytes.
 */
export function sniffType(message: string): string | null {
  const at = message.slice(0, TYPE_WINDOW).indexOf('"type"');
  if (at === -1) return null;
  let i = at + 6;
  while (isSpace(message.charCodeAt(i))) i++;
  if (message[i] !== ":") return null;
  i++;
  while (isSpace(message.charCodeAt(i))) i++;
  if (message[i] !== '"') return null;
  const end = message.indexOf('"', i + 1);
  if (end === -1 || end - i - 1 > MAX_TYPE_LENGTH) return null;
  return message.slice(i + 1, end);
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/** An upstream event metering acts on. */
export type MeteredEvent =
  /** A `response.done` that carries usage. `id` is `response.id` (null when absent). */
  | { readonly kind: "response"; readonly id: string | null; readonly usage: Usage }
  /** A completed input audio transcription that carries usage. */
  | { readonly kind: "transcription"; readonly itemId: string | null; readonly usage: Usage }
  /**
   * `session.created` / `session.updated`: the session's transcription model
   * (`audio.input.transcription.model`), `null` when transcription is off,
   * `undefined` when the event does not say.
   */
  | { readonly kind: "session"; readonly transcriptionModel: string | null | undefined };

/** A usage object as OpenAI sent it. */
export type Usage = Readonly<Record<string, unknown>>;

const RESPONSE_DONE = "response.done";
const TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed";
const SESSION_EVENTS = new Set(["session.created", "session.updated"]);
const METERED_TYPES = [RESPONSE_DONE, TRANSCRIPTION_COMPLETED, ...SESSION_EVENTS];

/** Whether `type` is one metering reads (so only those messages are parsed). */
export function isMeteredType(type: string | null): boolean {
  return type === RESPONSE_DONE || type === TRANSCRIPTION_COMPLETED ||
    (type !== null && SESSION_EVENTS.has(type));
}

/** How OpenAI opens every event: `type` first, no whitespace. */
const OPENING = '{"type":"';

/**
 * The metered type a message opens with, read without copying anything in
 * the common case (`{"type":"...` exactly, as OpenAI writes every event);
 * otherwise by {@linkcode sniffType}.
 */
function meteredTypeOf(message: string): string | null {
  if (!message.startsWith(OPENING)) {
    const type = sniffType(message);
    return isMeteredType(type) ? type : null;
  }
  const at = OPENING.length;
  for (const type of METERED_TYPES) {
    if (message.startsWith(type, at) && message.charCodeAt(at + type.length) === 0x22) return type;
  }
  return null;
}

/**
 * What metering needs from an upstream text message, or `null` for every
 * other message (and for malformed ones: a relay never fails on them).
 */
export function meteredEventOf(message: string): MeteredEvent | null {
  const type = meteredTypeOf(message);
  if (type === null) return null;
  let event: unknown;
  try {
    event = JSON.parse(message);
  } catch {
    return null;
  }
  const body = record(event);
  if (body === null || body.type !== type) return null;
  if (type === RESPONSE_DONE) {
    const response = record(body.response);
    const usage = record(response?.usage);
    if (usage === null) return null;
    return { kind: "response", id: text(response?.id), usage };
  }
  if (type === TRANSCRIPTION_COMPLETED) {
    const usage = record(body.usage);
    if (usage === null) return null;
    return { kind: "transcription", itemId: text(body.item_id), usage };
  }
  const audio = record(record(body.session)?.audio);
  if (audio === null) return { kind: "session", transcriptionModel: undefined };
  const input = record(audio.input);
  if (input === null || !("transcription" in input)) {
    return { kind: "session", transcriptionModel: undefined };
  }
  const transcription = record(input.transcription);
  return { kind: "session", transcriptionModel: text(transcription?.model) };
}

function record(value: unknown): Readonly<Record<string, unknown>> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
}

function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/** The client's `event_id` of a JSON event, or `null`. */
export function clientEventIdOf(message: string): string | null {
  try {
    return text(record(JSON.parse(message))?.event_id);
  } catch {
    return null;
  }
}
