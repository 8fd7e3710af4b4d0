/**
 * Plain-HTTP refusals sent before the upgrade, one per row of CONTRACT.md
 * "Before the upgrade": status, machine code, human message, extra headers.
 * @module
 */

/** Every `error` code the relay answers with before the upgrade. */
export type RefusalCode =
  | "not_found"
  | "method_not_allowed"
  | "upgrade_required"
  | "bad_handshake"
  | "origin_not_allowed"
  | "missing_token"
  | "model_not_allowed"
  | "upstream_not_configured"
  | "invalid_token"
  | "forbidden"
  | "auth_unavailable"
  | "too_many_connections"
  | "at_capacity"
  | "budget_exceeded"
  | "metering_unavailable"
  | "bad_session"
  | "bad_room"
  | "room_forbidden"
  | "room_full"
  | "rooms_unavailable"
  | "bad_message"
  | "message_too_big"
  | "bad_offset"
  | "bad_intent";

/** A decision to answer with an HTTP error instead of upgrading. */
export interface Refusal {
  readonly status: number;
  readonly error: RefusalCode;
  readonly message: string;
  readonly headers: Readonly<Record<string, string>>;
}

const REFUSALS: Readonly<Record<RefusalCode, Omit<Refusal, "error">>> = {
  not_found: { status: 404, message: "No such route.", headers: {} },
  method_not_allowed: {
    status: 405,
    message: "Only GET is allowed here.",
    headers: { allow: "GET" },
  },
  upgrade_required: {
    status: 426,
    message: "This route only speaks WebSocket: send an Upgrade: websocket request.",
    headers: { upgrade: "websocket" },
  },
  bad_handshake: {
    status: 400,
    message: "The WebSocket handshake is malformed.",
    headers: {},
  },
  origin_not_allowed: {
    status: 403,
    message: "This origin is not allowed to connect.",
    headers: {},
  },
  missing_token: {
    status: 401,
    message:
      "A Supabase access token is required (?jwt=, Authorization: Bearer, or a jwt-<token> subprotocol).",
    headers: { "www-authenticate": "Bearer" },
  },
  model_not_allowed: {
    status: 400,
    message: "The requested model is not allowed.",
    headers: {},
  },
  upstream_not_configured: {
    status: 503,
    message: "The relay has no OpenAI API key configured.",
    headers: {},
  },
  invalid_token: {
    status: 401,
    message: "The access token is invalid or expired.",
    headers: { "www-authenticate": 'Bearer error="invalid_token"' },
  },
  forbidden: {
    status: 403,
    message: "This token does not identify a user allowed to connect.",
    headers: {},
  },
  auth_unavailable: {
    status: 503,
    message: "Supabase Auth could not be reached to verify the token; try again.",
    headers: { "retry-after": "1" },
  },
  too_many_connections: {
    status: 429,
    message: "This user already holds the maximum number of connections.",
    headers: {},
  },
  at_capacity: {
    status: 503,
    message: "The relay is at capacity; try again shortly.",
    headers: { "retry-after": "1" },
  },
  budget_exceeded: {
    status: 429,
    message: "This user's usage budget for the period is spent.",
    headers: {},
  },
  metering_unavailable: {
    status: 503,
    message: "Usage metering is unavailable (the database cannot be reached); try again.",
    headers: { "retry-after": "5" },
  },
  bad_session: {
    status: 400,
    message: "?session= must be 22 to 64 characters of A-Z, a-z, 0-9, _ and -.",
    headers: {},
  },
  bad_room: {
    status: 400,
    message: "A room name is 1 to 100 characters of A-Z, a-z, 0-9, _ . : and -.",
    headers: {},
  },
  room_forbidden: {
    status: 403,
    message: "This user may not use this room.",
    headers: {},
  },
  room_full: {
    status: 429,
    message: "This room holds the maximum number of members.",
    headers: {},
  },
  rooms_unavailable: {
    status: 503,
    message: "Rooms are unavailable (the database cannot be reached); try again.",
    headers: { "retry-after": "5" },
  },
  bad_message: {
    status: 400,
    message: 'The body must be a JSON object {"event":"...","payload":...}.',
    headers: {},
  },
  bad_intent: {
    status: 400,
    message: "?intent= may only be transcription.",
    headers: {},
  },
  bad_offset: {
    status: 400,
    message: "?since=, ?last= and Last-Event-ID must be whole numbers of 0 or more.",
    headers: {},
  },
  message_too_big: {
    status: 413,
    message: "The message is larger than a room accepts.",
    headers: {},
  },
};

/** The refusal the contract prescribes for `code`. */
export function refusal(code: RefusalCode): Refusal {
  return { error: code, ...REFUSALS[code] };
}

/** `budget_exceeded` with `Retry-After`: whole seconds until the budget period resets. */
export function budgetRefusal(retryAfterS: number): Refusal {
  const refused = refusal("budget_exceeded");
  return { ...refused, headers: { ...refused.headers, "retry-after": String(retryAfterS) } };
}

/** A refusal with its own sentence (e.g. which field of a body is wrong). */
export function refusalWith(code: RefusalCode, message: string): Refusal {
  return { ...refusal(code), message };
}

/** The JSON response for a refusal: `{"error","message"}`, never a stack or a token. */
export function refusalResponse(refused: Refusal): Response {
  return Response.json({ error: refused.error, message: refused.message }, {
    status: refused.status,
    headers: refused.headers,
  });
}
