/**
 * Server-sent events framing for room followers (CONTRACT.md "Live updates
 * over SSE"): each member-facing text becomes `event: <its type>`, `id:
 * <offset>` for kept broadcasts, and its JSON as `data:`. Pure.
 * @module
 */

/** A comment line: keeps proxies and `EventSource` from timing the stream out. */
export const SSE_KEEPALIVE = ": keepalive\n\n";

/** One event. Data with line breaks is split over `data:` lines, as the format requires. */
export function sseEvent(event: string, data: string, id: number | null = null): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join("");
  return `event: ${event}\n${id === null ? "" : `id: ${id}\n`}${lines}\n`;
}

/** The last event of a stream the relay ends (token expiry, shutdown): reconnect after a second. */
export function sseClose(code: number, reason: string): string {
  return `event: close\ndata: ${JSON.stringify({ code, reason })}\nretry: 1000\n\n`;
}
