/**
 * The session policy's verdict on one client message (CONTRACT.md "Session
 * policy"): pure functions of (policy, message). The feature in
 * features/session_policy.ts applies them.
 * @module
 */
import { relayEventId } from "./event_id.ts";
import type { SessionPolicy } from "./session_policy.ts";
import { foldKey, quoteShort, readStrictJson } from "./strict_json.ts";

/** A short machine name for what was refused (telemetry's `policy.refused` `code`). */
export type RefusalCode =
  /** A binary frame: the Realtime protocol is JSON text. */
  | "not_text"
  /** Not JSON. */
  | "invalid_json"
  /** JSON another parser could read differently (duplicate keys, lone surrogates, ...). */
  | "ambiguous_json"
  /** Nested deeper than the reader accepts. */
  | "too_deep"
  /** JSON, but not an object. */
  | "not_an_object"
  /** No string `type`, or one not in `allowed_events`. */
  | "event_not_allowed"
  /** Sets a locked path, or replaces an object holding one. */
  | "locked_field"
  /** `max_output_tokens` over the cap, `"inf"`, or not a whole number >= 1. */
  | "max_output_tokens"
  /** A system-role item while `instructions` is locked. */
  | "system_message"
  /** `session` / `response` / `item` present but not an object. */
  | "malformed_event"
  /** A transcription model not in `OPENAI_TRANSCRIPTION_MODELS`. */
  | "transcription_model";

/** The policy's answer for one event. */
export type PolicyVerdict =
  | { readonly pass: true }
  | {
    readonly pass: false;
    readonly code: RefusalCode;
    /** A sentence naming what was refused (never the refused value). */
    readonly message: string;
    /** The dotted path refused, from the event's top level; `null` for the whole message. */
    readonly param: string | null;
  };

/** A refused verdict. */
export type PolicyRefusal = Extract<PolicyVerdict, { pass: false }>;

/** What the relay does with one client message under a policy. */
export type MessageDecision =
  | {
    readonly pass: true;
    /** What goes upstream: the checked text, or its re-serialisation (JSON-equal). */
    readonly forward: string;
  }
  | (PolicyRefusal & {
    /** The client's `event_id`, to echo in the refusal; `null` when it has none or was unreadable. */
    readonly eventId: string | null;
  });

const PASS: PolicyVerdict = Object.freeze({ pass: true });

/** Roles a client item may take while `instructions` is locked; anything else could instruct. */
const PLAIN_ROLES: ReadonlySet<string> = new Set(["user", "assistant"]);

function refuse(code: RefusalCode, message: string, param: string | null): PolicyRefusal {
  return { pass: false, code, message, param };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A policy's locked paths, split once. */
interface Compiled {
  readonly locked: readonly { readonly path: string; readonly segments: readonly string[] }[];
  readonly instructionsLocked: boolean;
}

const compiledPolicies = new WeakMap<SessionPolicy, Compiled>();

function compile(policy: SessionPolicy): Compiled {
  let compiled = compiledPolicies.get(policy);
  if (compiled === undefined) {
    const locked = policy.locked.map((path) => ({
      path,
      segments: path.split(".").map(foldKey),
    }));
    compiled = {
      locked,
      instructionsLocked: locked.some((l) =>
        l.segments.length === 1 && l.segments[0] === "instructions"
      ),
    };
    compiledPolicies.set(policy, compiled);
  }
  return compiled;
}

/**
 * Values of `object`'s keys that fold to `name` (already folded). A strictly
 * read event has at most one; the verdict does not rely on that, so a value
 * built any other way cannot hide a field behind a case variant.
 */
class Fields {
  readonly #index = new Map<object, Map<string, unknown[]>>();

  of(object: Record<string, unknown>, name: string): unknown[] {
    let index = this.#index.get(object);
    if (index === undefined) {
      index = new Map();
      for (const key of Object.keys(object)) {
        const folded = foldKey(key);
        const values = index.get(folded);
        if (values) values.push(object[key]);
        else index.set(folded, [object[key]]);
      }
      this.#index.set(object, index);
    }
    return index.get(name) ?? [];
  }
}

/**
 * The verdict on one parsed client event.
 *
 * @example
 * ```ts
 * policyVerdict(policy, { type: "session.update", session: { instructions: "x" } });
 * // { pass: false, code: "locked_field", param: "session.instructions", ... }
 * ```
 */
export function policyVerdict(policy: SessionPolicy, event: unknown): PolicyVerdict {
  if (!isPlainObject(event)) {
    return refuse("not_an_object", "A client message must be a JSON object.", null);
  }
  const fields = new Fields();
  const types = fields.of(event, "type");
  const type = types[0];
  if (types.length !== 1 || typeof type !== "string") {
    return refuse("event_not_allowed", 'A client event needs one string "type".', "type");
  }
  if (!policy.allowedEvents.includes(type)) {
    return refuse(
      "event_not_allowed",
      `The event type ${quoteShort(type)} is not allowed by the relay's session policy.`,
      "type",
    );
  }
  const compiled = compile(policy);
  switch (type) {
    case "session.update":
      return checkBody(policy, compiled, fields, event, type, "session");
    case "response.create": {
      const verdict = checkBody(policy, compiled, fields, event, type, "response");
      if (!verdict.pass || !compiled.instructionsLocked) return verdict;
      for (const response of fields.of(event, "response")) {
        for (const input of fields.of(response as Record<string, unknown>, "input")) {
          if (!Array.isArray(input)) continue;
          for (const [i, item] of input.entries()) {
            const refused = checkRole(fields, item, `response.input[${i}]`, type);
            if (refused) return refused;
          }
        }
      }
      return PASS;
    }
    case "conversation.item.create": {
      if (!compiled.instructionsLocked) return PASS;
      for (const item of fields.of(event, "item")) {
        const refused = checkRole(fields, item, "item", type);
        if (refused) return refused;
      }
      return PASS;
    }
    default:
      return PASS;
  }
}

/** Locked paths and the token cap inside `session.update`'s `session` or `response.create`'s `response`. */
function checkBody(
  policy: SessionPolicy,
  compiled: Compiled,
  fields: Fields,
  event: Record<string, unknown>,
  type: string,
  name: "session" | "response",
): PolicyVerdict {
  for (const body of fields.of(event, name)) {
    if (!isPlainObject(body)) {
      return refuse("malformed_event", `${type}'s "${name}" must be an object.`, name);
    }
    for (const { path, segments } of compiled.locked) {
      if (setsPath(fields, body, segments, 0)) {
        return refuse(
          "locked_field",
          `${type} may not set ${name}.${path}: the relay's session policy locks it.`,
          `${name}.${path}`,
        );
      }
    }
    const cap = policy.maxOutputTokens;
    if (cap === null) continue;
    for (const tokens of fields.of(body, "max_output_tokens")) {
      if (typeof tokens !== "number" || !Number.isInteger(tokens) || tokens < 1 || tokens > cap) {
        return refuse(
          "max_output_tokens",
          `${name}.max_output_tokens must be a whole number from 1 to ${cap} (the relay's cap).`,
          `${name}.max_output_tokens`,
        );
      }
    }
  }
  return PASS;
}

/**
 * Whether `body` sets the path `segments[from..]`: the last segment is present
 * (any value, `null` too), or an object on the way is replaced by a non-object
 * (which replaces the locked value under it).
 */
function setsPath(
  fields: Fields,
  body: Record<string, unknown>,
  segments: readonly string[],
  from: number,
): boolean {
  const values = fields.of(body, segments[from]!);
  if (from === segments.length - 1) return values.length > 0;
  return values.some((value) =>
    !isPlainObject(value) || setsPath(fields, value, segments, from + 1)
  );
}

/** Refuses an item with any role but user or assistant (a system message acts as instructions). */
function checkRole(
  fields: Fields,
  item: unknown,
  at: string,
  type: string,
): PolicyRefusal | null {
  if (!isPlainObject(item)) return null;
  for (const role of fields.of(item, "role")) {
    if (typeof role !== "string" || !PLAIN_ROLES.has(role)) {
      return refuse(
        "system_message",
        `${type} may not add an item with role ${
          typeof role === "string" ? quoteShort(role) : "other than user or assistant"
        }: the relay's session policy locks the instructions.`,
        `${at}.role`,
      );
    }
  }
  return null;
}

/**
 * An audio append as clients send it, 50 a second in a voice session:
 * `{"type":"input_audio_buffer.append","audio":"..."` and an optional plain
 * `"event_id"` (letters, digits, `_.:-`), with no backslash anywhere. The
 * strict reader's scan is most of a check's cost (about 2 µs of 2.5 for a
 * 20 ms append); such a text needs none of it: its keys are distinct and
 * nothing in it is escaped, nested or a number, so once it is well formed and
 * `JSON.parse` takes it, strict reading would accept it unchanged.
 */
const APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"';
const APPEND_TAIL = /^(?:,"event_id":"[A-Za-z0-9_.:-]{1,128}")?\}$/;

/** The parsed value of a plain append (see above), or `undefined` for any other text. */
function plainAppend(text: string): unknown {
  if (!text.startsWith(APPEND_HEAD) || text.includes("\\")) return undefined;
  const close = text.indexOf('"', APPEND_HEAD.length);
  if (close === -1 || !APPEND_TAIL.test(text.slice(close + 1)) || !text.isWellFormed()) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    // A raw control character in the audio: the strict reader says why.
    return undefined;
  }
}

/**
 * The whole check of one client message: a text frame, read strictly, then
 * the verdict. What passes is what goes upstream.
 */
export function checkClientMessage(
  policy: SessionPolicy,
  data: string | ArrayBuffer,
): MessageDecision {
  if (typeof data !== "string") {
    return {
      ...refuse("not_text", "A client message must be a text frame holding a JSON object.", null),
      eventId: null,
    };
  }
  const append = plainAppend(data);
  if (append !== undefined) {
    const verdict = policyVerdict(policy, append);
    if (verdict.pass) return { pass: true, forward: data };
  }
  const read = readStrictJson(data);
  if (!read.ok) return { ...refuse(read.problem, read.message, null), eventId: null };
  const verdict = policyVerdict(policy, read.value);
  if (verdict.pass) return { pass: true, forward: read.text };
  const id = isPlainObject(read.value) ? read.value.event_id : undefined;
  return { ...verdict, eventId: typeof id === "string" ? id : null };
}

/** The contract's `relay_policy_violation` error event for a refusal, as JSON text. */
export function policyRefusalEvent(refusal: PolicyRefusal, clientEventId: string | null): string {
  return JSON.stringify({
    type: "error",
    event_id: relayEventId(),
    error: {
      type: "invalid_request_error",
      code: "relay_policy_violation",
      message: refusal.message,
      param: refusal.param,
      event_id: clientEventId,
    },
  });
}
