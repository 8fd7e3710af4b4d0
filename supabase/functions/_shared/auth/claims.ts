/**
 * The relay's own identity rules on top of signature checks: a token must name
 * a user (`sub`) with an allowed `role`.
 * @module
 */

/** The claims the relay relies on, from a token's payload. */
export interface Identity {
  readonly user: string;
  readonly role: string;
  /** Expiry, seconds since the epoch; `null` when absent. */
  readonly exp: number | null;
  /**
   * The whole payload: what PostgREST would put in `request.jwt.claims`, for
   * SQL run as the user (room access).
   */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Why a payload was turned away. */
export type IdentityProblem = "malformed" | "forbidden";

/**
 * Decodes a JWT's payload WITHOUT verifying it. Used only to refuse, early and
 * cheaply, tokens that could never be allowed (anon and service-role keys):
 * Supabase Auth answers those with `403 bad_jwt`, which must read as
 * `forbidden`, not as an invalid or unverifiable token.
 */
export function decodePayload(token: string): Record<string, unknown> | null {
  return decodeSegment(token, 1);
}

/** Decodes a JWT's header WITHOUT verifying it (to see which key would check it). */
export function decodeHeader(token: string): Record<string, unknown> | null {
  return decodeSegment(token, 0);
}

function decodeSegment(token: string, index: 0 | 1): Record<string, unknown> | null {
  const parts = token.split(".");
  const segment = parts[index];
  if (parts.length !== 3 || !segment) return null;
  try {
    const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64.padEnd(base64.length + (4 - base64.length % 4) % 4, "="));
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : null;
  } catch {
    return null;
  }
}

/** The identity a payload claims, or why it may not connect. */
export function identityFromPayload(
  payload: Record<string, unknown> | null,
  allowedRoles: readonly string[],
): Identity | IdentityProblem {
  if (payload === null) return "malformed";
  const { sub, role, exp } = payload;
  if (typeof sub !== "string" || sub === "") return "forbidden";
  if (typeof role !== "string" || !allowedRoles.includes(role)) return "forbidden";
  return {
    user: sub,
    role,
    exp: typeof exp === "number" && Number.isFinite(exp) ? exp : null,
    claims: payload,
  };
}
