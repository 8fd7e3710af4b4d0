/**
 * Close-code decisions: what each side is told when the other closes, and the
 * codes the relay itself closes with (CONTRACT.md "Closing").
 * @module
 */

/** A close code and its reason, as sent in a close frame. */
export interface CloseFrame {
  readonly code: number;
  readonly reason: string;
}

/** Codes the relay closes client connections with, each with its reason. */
export const RELAY_CLOSE = {
  tokenExpired: { code: 4001, reason: "token_expired" },
  serverRestarting: { code: 1012, reason: "server_restarting" },
  upstreamTimeout: { code: 1011, reason: "upstream_timeout" },
  upstreamUnavailable: { code: 1011, reason: "upstream_unavailable" },
  upstreamClosedAbnormally: { code: 1011, reason: "upstream_closed_abnormally" },
  messageTooBig: { code: 1009, reason: "message_too_big" },
  rateLimited: { code: 1008, reason: "rate_limited" },
  bufferFull: { code: 1013, reason: "buffer_full" },
  budgetExceeded: { code: 4002, reason: "budget_exceeded" },
  sessionReplaced: { code: 4409, reason: "session_replaced" },
  policyViolation: { code: 1008, reason: "policy_violation" },
} as const satisfies Record<string, CloseFrame>;

/**
 * In-band refusals one connection may earn (policy, room messages) before the
 * last of them closes it `1008 policy_violation`.
 */
export const MAX_REFUSALS = 20;

/** The longest close reason a control frame can carry (125 bytes less the code). */
export const MAX_REASON_BYTES = 123;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `reason` cut to at most 123 UTF-8 bytes, never inside a character. */
export function truncateReason(reason: string): string {
  if (reason.length * 3 <= MAX_REASON_BYTES) return reason;
  const bytes = encoder.encode(reason);
  if (bytes.length <= MAX_REASON_BYTES) return reason;
  let end = MAX_REASON_BYTES;
  // Back off continuation bytes (10xxxxxx) so the cut lands on a character start.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}

/** Whether the relay forwards `code` to a client as is (RFC 6455 7.4 less the reserved 1004-1006 and 1014-1015). */
export function isSendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1013) ||
    (code >= 3000 && code <= 4999);
}

/**
 * What the client is told when the upstream closed with `code`: sendable codes
 * pass through with their reason; "no status" (1005) is a normal close; a lost
 * connection (1006), TLS failure (1015) or anything unsendable is abnormal.
 */
export function clientCloseForUpstream(code: number, reason: string): CloseFrame {
  if (code === 1005) return { code: 1000, reason: truncateReason(reason) };
  if (!isSendableCode(code)) return RELAY_CLOSE.upstreamClosedAbnormally;
  return { code, reason: truncateReason(reason) };
}

/**
 * What the upstream is told when the client closed with `code`. An outbound
 * socket may only close with 1000 or 3000-4999; anything else becomes 1000.
 */
export function upstreamCloseForClient(code: number, reason: string): CloseFrame {
  if (code === 1000 || (code >= 3000 && code <= 4999)) {
    return { code, reason: truncateReason(reason) };
  }
  return { code: 1000, reason: truncateReason(reason) };
}
