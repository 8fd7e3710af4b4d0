/**
 * In-band close notices (CONTRACT.md "In-band close notices"): an OpenAI-shaped
 * `error` event that tells a browser the code and reason of the close frame
 * that follows, since Chromium on the edge runtime only ever reports 1006.
 * @module
 */
import { type CloseFrame, RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ClosedBy } from "../relay/hooks.ts";
import { relayEventId } from "./event_id.ts";

/** A sentence for each close the relay itself starts, keyed by reason. */
const SENTENCES: Readonly<Record<string, string>> = {
  token_expired: "Your access token expired; reconnect with a fresh one.",
  budget_exceeded: "Your usage budget for this period is spent.",
  session_replaced: "This session was opened on another connection.",
  policy_violation: "Too many messages were refused by the session policy.",
  rate_limited: "Too many messages per second.",
  message_too_big: "A message was larger than the relay accepts.",
  upstream_timeout: "OpenAI did not answer in time.",
  upstream_unavailable: "OpenAI could not be reached.",
  upstream_closed_abnormally: "The connection to OpenAI was lost.",
  server_restarting: "The relay is restarting; reconnect.",
  buffer_full: "Too much data is waiting to be delivered.",
};

/** The relay's own closes that the upstream side can cause; everything else from it is forwarded. */
const RELAY_UPSTREAM_REASONS = new Set<string>([
  RELAY_CLOSE.upstreamUnavailable.reason,
  RELAY_CLOSE.upstreamClosedAbnormally.reason,
  RELAY_CLOSE.upstreamTimeout.reason,
]);

/**
 * The notice for a close the relay sends, as the JSON text to send; `null`
 * for a close the client started (it needs no telling).
 */
export function closeNotice(frame: CloseFrame, by: ClosedBy): string | null {
  if (by === "client") return null;
  const forwarded = by === "upstream" && !RELAY_UPSTREAM_REASONS.has(frame.reason);
  const code = forwarded ? "upstream_closed" : frame.reason;
  const message = forwarded
    ? frame.reason || "OpenAI closed the connection."
    : SENTENCES[frame.reason] ?? "The relay closed the connection.";
  return JSON.stringify({
    type: "error",
    event_id: relayEventId(),
    error: {
      type: "relay_error",
      code,
      message,
      param: null,
      event_id: null,
      close_code: frame.code,
    },
  });
}
