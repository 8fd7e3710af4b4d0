/**
 * `RELAY_SESSION_POLICY`: what the operator pins and locks in every OpenAI
 * session (CONTRACT.md "Session policy"), parsed and validated at start.
 * @module
 */
import { GA_CLIENT_EVENTS } from "./client_events.ts";

/** A validated session policy. */
export interface SessionPolicy {
  /** Sent upstream as `session.update` the moment the upstream opens; `null`: none. */
  readonly session: Readonly<Record<string, unknown>> | null;
  /** Dotted paths a client may not set; each also locks everything under it. */
  readonly locked: readonly string[];
  /** The highest `max_output_tokens` a client may ask for; `null`: no cap. */
  readonly maxOutputTokens: number | null;
  /** Client event types that may pass. */
  readonly allowedEvents: readonly string[];
}

/** The policy, or the problems that stop it (each naming the variable). */
export interface ParsedPolicy {
  readonly policy: SessionPolicy | null;
  readonly problems: readonly string[];
}

const KEYS = ["session", "locked", "max_output_tokens", "allowed_events"];
const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const NAME = "RELAY_SESSION_POLICY";

/** Parses `RELAY_SESSION_POLICY`; unset or blank means no policy. */
export function parseSessionPolicy(raw: string | undefined): ParsedPolicy {
  if (raw === undefined || raw.trim() === "") return { policy: null, problems: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return {
      policy: null,
      problems: [`${NAME}: not JSON; expected an object with ${KEYS.join(", ")}`],
    };
  }
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
    if (isPlainObject(parsed.session)) session = parsed.session;
    else problems.push(`${NAME}: "session" is not an object (the session.update body to pin)`);
  }
  let locked: string[] = session ? Object.keys(session) : [];
  if (parsed.locked !== undefined) {
    if (Array.isArray(parsed.locked) && parsed.locked.every((p) => typeof p === "string")) {
      locked = parsed.locked as string[];
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
    }),
    problems: [],
  };
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
