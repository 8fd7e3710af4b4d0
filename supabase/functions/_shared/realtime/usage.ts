/**
 * Picks token usage out of upstream `response.done` events for telemetry,
 * without parsing every upstream message.
 * @module
 */

/** How far into a message the event type is looked for; OpenAI puts `type` first. */
const TYPE_WINDOW = 64;
const DONE = '"response.done"';

/**
 * The `response.usage` object of a `response.done` event, or `null` for any
 * other message. Only messages whose opening names `response.done` are parsed,
 * so audio deltas (tens of kilobytes each) cost one short scan.
 */
export function usageOf(message: string): Record<string, unknown> | null {
  // A match that starts at or before this index ends inside the window; the
  // backward search looks at those few starting points and copies nothing.
  if (message.lastIndexOf(DONE, TYPE_WINDOW - DONE.length) === -1) return null;
  try {
    const event: unknown = JSON.parse(message);
    if (typeof event !== "object" || event === null) return null;
    const { type, response } = event as { type?: unknown; response?: { usage?: unknown } };
    const usage = response?.usage;
    return type === "response.done" && typeof usage === "object" && usage !== null
      ? usage as Record<string, unknown>
      : null;
  } catch {
    return null;
  }
}
