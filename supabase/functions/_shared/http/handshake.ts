/**
 * Checks on the upgrade request that need no verified user: method, upgrade,
 * handshake headers and origin, in the contract's order.
 * @module
 */
import { type Refusal, refusal } from "./refusal.ts";

/** A 16-byte nonce in base64 (RFC 6455 section 4.1). */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;

/** Header-level tokens of a comma-separated header, lower-cased. */
function headerTokens(headers: Headers, name: string): string[] {
  return (headers.get(name) ?? "").split(",").map((token) => token.trim().toLowerCase());
}

/**
 * The first refusal a WebSocket upgrade request earns before any token is
 * looked at, or `null` when it may proceed.
 */
export function checkUpgradeRequest(
  method: string,
  headers: Headers,
  allowedOrigins: readonly string[] | null,
): Refusal | null {
  if (method !== "GET") return refusal("method_not_allowed");
  if (!headerTokens(headers, "upgrade").includes("websocket")) return refusal("upgrade_required");
  if (
    !headerTokens(headers, "connection").includes("upgrade") ||
    !WEBSOCKET_KEY.test(headers.get("sec-websocket-key")?.trim() ?? "") ||
    headers.get("sec-websocket-version")?.trim() !== "13"
  ) {
    return refusal("bad_handshake");
  }
  if (!isOriginAllowed(headers.get("origin"), allowedOrigins)) return refusal("origin_not_allowed");
  return null;
}

/**
 * Whether a request's `Origin` may connect. Requests without one (servers,
 * CLIs) are not browsers and cannot be confused-deputied, so they pass.
 */
export function isOriginAllowed(origin: string | null, allowed: readonly string[] | null): boolean {
  if (origin === null || allowed === null || allowed.includes("*")) return true;
  const normalized = origin.trim().toLowerCase();
  return allowed.some((entry) => entry.toLowerCase().replace(/\/+$/, "") === normalized);
}
