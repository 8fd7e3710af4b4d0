/**
 * `RELAY_SESSION_POLICY`: what the operator pins and locks in every OpenAI
 * session (CONTRACT.md "Session policy"), parsed and validated at start.
 * @module
 */
import { GA_CLIENT_EVENTS } from "./client_events.ts";
import { readStrictJson } from "./strict_json.ts";

/** A validated session policy. */
export interface SessionPolicy {
  /** Sent upstream as `session.update` the moment the upstream opens; `null`: none. */
  readonly session: Readonly<Record<string, unknown>> | null;
  /**
   * Dotted paths a client may not set; each also locks everything under it.
   * Default: the top-level keys of `session` but `type`, which every GA
   * `session.update` must carry (locking it would refuse them all).
   */
  readonly locked: readonly string[];
  /** The highest `max_output_tokens` a client may ask for; `null`: no cap. */
  readonly maxOutputTokens: number | null;
  /** Client event types that may pass. */
  readonly allowedEvents: readonly string[];
  /**
   * v3: like `session`, pinned for `?intent=transcription` connections (which
   * never get `session`); `null`: none.
   */
  readonly transcriptionSession: Readonly<Record<string, unknown>> | null;
  /**
   * Paths locked on transcription connections: an explicit `locked` (which
   * applies to both kinds), else the top-level keys of `transcription_session` but `type`.
   */
  readonly transcriptionLocked: readonly string[];
}

/** The policy, or the problems that stop it (each naming the variable). */
export interface ParsedPolicy {
  readonly policy: SessionPolicy | null;
  readonly problems: readonly string[];
}

const KEYS = ["session", "locked", "max_output_tokens", "allowed_events", "transcription_session"];
const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const NAME = "RELAY_SESSION_POLICY";
const SESSION_TYPES = ["realtime", "transcription"];

/** Parses `RELAY_SESSION_POLICY`; unset or blank means no policy. */
export function parseSessionPolicy(raw: string | undefined): ParsedPolicy {
  if (raw === undefined || raw.trim() === "") return { policy: null, problems: [] };
  // Read as strictly as client events are: a duplicate key would leave the
  // operator's meaning to whichever parser reads it.
  const read = readStrictJson(raw);
  if (!read.ok) {
    const problem = read.problem === "invalid_json"
      ? `${NAME}: not JSON; expected an object with ${KEYS.join(", ")}`
      : `${NAME}: ${read.message.replace(/\.$/, "")}`;
    return { policy: null, problems: [problem] };
  }
  const parsed = read.value;
  if (!isPlainObject(parsed)) {
    return { policy: null, problems: [`${NAME}: expected a JSON object with ${KEYS.join(", ")}`] };
  }
  const problems: string[] = [];
  for (const key of Object.keys(parsed)) {
    if (!KEYS.includes(key)) {
      problems.push(`${NAME}: unknown key "${key}"; expected only ${KEYS.join(", ")}`);
    }
  }
  let session: Record<string, unknown> | null = null;
  if (parsed.session !== undefined) {
    if (isPlainObject(parsed.session)) {
      session = parsed.session;
      if (!SESSION_TYPES.includes(session.type as string)) {
        problems.push(
          `${NAME}: "session" needs "type": "realtime" (or "transcription"); OpenAI refuses a ` +
            "session.update without it",
        );
      }
    } else {
      problems.push(`${NAME}: "session" is not an object (the session.update body to pin)`);
    }
  }
  let transcriptionSession: Record<string, unknown> | null = null;
  if (parsed.transcription_session !== undefined) {
    if (
      isPlainObject(parsed.transcription_session) &&
      parsed.transcription_session.type === "transcription"
    ) {
      transcriptionSession = parsed.transcription_session;
    } else {
      problems.push(
        `${NAME}: "transcription_session" is not an object with "type": "transcription" (the session.update body to pin on ?intent=transcription connections)`,
      );
    }
  }
  const topLevel = (body: Record<string, unknown> | null) =>
    body ? Object.keys(body).filter((key) => key !== "type") : [];
  let locked: string[] = topLevel(session);
  let transcriptionLocked: string[] = topLevel(transcriptionSession);
  if (parsed.locked !== undefined) {
    if (Array.isArray(parsed.locked) && parsed.locked.every((p) => typeof p === "string")) {
      locked = parsed.locked as string[];
      transcriptionLocked = locked;
      for (const path of locked) {
        if (!DOTTED.test(path)) {
          problems.push(
            `${NAME}: locked path "${path}" is not a dotted name (e.g. "audio.output.voice")`,
          );
        }
      }
    } else {
      problems.push(`${NAME}: "locked" is not an array of dotted paths`);
    }
  }
  let maxOutputTokens: number | null = null;
  if (parsed.max_output_tokens !== undefined) {
    const cap = parsed.max_output_tokens;
    if (typeof cap === "number" && Number.isSafeInteger(cap) && cap >= 1) maxOutputTokens = cap;
    else problems.push(`${NAME}: "max_output_tokens" is not a whole number >= 1`);
  }
  const pinnedTokens = session?.max_output_tokens;
  if (
    maxOutputTokens !== null && pinnedTokens !== undefined &&
    !(typeof pinnedTokens === "number" && pinnedTokens <= maxOutputTokens)
  ) {
    problems.push(
      `${NAME}: "session.max_output_tokens" is over "max_output_tokens" (${maxOutputTokens}); ` +
        "pin a value within the cap",
    );
  }
  let allowedEvents: readonly string[] = GA_CLIENT_EVENTS;
  if (parsed.allowed_events !== undefined) {
    const events = parsed.allowed_events;
    if (Array.isArray(events) && events.every((e) => typeof e === "string" && e !== "")) {
      allowedEvents = Object.freeze([...events as string[]]);
    } else {
      problems.push(`${NAME}: "allowed_events" is not an array of event type names`);
    }
  }
  if (problems.length > 0) return { policy: null, problems };
  return {
    policy: Object.freeze({
      session: session ? deepFreeze(session) : null,
      locked: Object.freeze([...locked]),
      maxOutputTokens,
      allowedEvents,
      transcriptionSession: transcriptionSession ? deepFreeze(transcriptionSession) : null,
      transcriptionLocked: Object.freeze([...transcriptionLocked]),
    }),
    problems: [],
  };
}

/**
 * The policy a `?intent=transcription` connection runs under: the
 * transcription session pinned and locked in place of the conversation's.
 */
export function transcriptionPolicy(policy: SessionPolicy): SessionPolicy {
  return Object.freeze({
    ...policy,
    session: policy.transcriptionSession,
    locked: policy.transcriptionLocked,
  });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
