/**
 * Where a browser or SDK puts its Supabase access token, and which offered
 * subprotocol the relay may select in reply.
 * @module
 */

/** Where the token was found, for telemetry and tests. */
export type TokenSource =
  | "query_jwt"
  | "query_token"
  | "authorization"
  | "protocol_jwt"
  | "protocol_openai_key";

/** A token and where it came from. */
export interface FoundToken {
  readonly token: string;
  readonly source: TokenSource;
}

/** Supabase's docs pass the token as a `jwt-<token>` subprotocol. */
const JWT_PROTOCOL_PREFIX = "jwt-";
/** The official `openai` SDK's browser client sends its API key this way. */
const OPENAI_KEY_PROTOCOL_PREFIX = "openai-insecure-api-key.";

/** The entries of a `Sec-WebSocket-Protocol` header, in order. */
export function offeredProtocols(headers: Headers): string[] {
  const header = headers.get("sec-websocket-protocol");
  if (!header) return [];
  return header.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
}

/**
 * The token, from the first of `?jwt=`, `?token=`, `Authorization: Bearer`,
 * a `jwt-<token>` subprotocol, an `openai-insecure-api-key.<token>` subprotocol.
 */
export function extractToken(url: URL, headers: Headers): FoundToken | null {
  const fromQuery = url.searchParams.get("jwt")?.trim();
  if (fromQuery) return { token: fromQuery, source: "query_jwt" };
  const fromTokenQuery = url.searchParams.get("token")?.trim();
  if (fromTokenQuery) return { token: fromTokenQuery, source: "query_token" };
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headers.get("authorization") ?? "")?.[1];
  if (bearer) return { token: bearer, source: "authorization" };
  const protocols = offeredProtocols(headers);
  const jwtEntry = protocols.find((p) => p.startsWith(JWT_PROTOCOL_PREFIX));
  if (jwtEntry && jwtEntry.length > JWT_PROTOCOL_PREFIX.length) {
    return { token: jwtEntry.slice(JWT_PROTOCOL_PREFIX.length), source: "protocol_jwt" };
  }
  const keyEntry = protocols.find((p) => p.startsWith(OPENAI_KEY_PROTOCOL_PREFIX));
  if (keyEntry && keyEntry.length > OPENAI_KEY_PROTOCOL_PREFIX.length) {
    return {
      token: keyEntry.slice(OPENAI_KEY_PROTOCOL_PREFIX.length),
      source: "protocol_openai_key",
    };
  }
  return null;
}

/** Whether a subprotocol entry carries a credential (and so must never be echoed). */
export function isCredentialProtocol(protocol: string): boolean {
  return protocol.startsWith(JWT_PROTOCOL_PREFIX) ||
    protocol.startsWith(OPENAI_KEY_PROTOCOL_PREFIX);
}

/**
 * The subprotocol to select: the first offered one that is not a credential.
 * Browsers fail the handshake when they offered protocols and none comes back,
 * so a browser sending a token entry must offer a plain one (e.g. `realtime`) too.
 */
export function selectProtocol(offered: readonly string[]): string | undefined {
  return offered.find((protocol) => !isCredentialProtocol(protocol));
}
