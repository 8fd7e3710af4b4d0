/**
 * The `type` of a server event, read cheaply: OpenAI writes `type` as the
 * first key, so the opening bytes name it and audio deltas (tens of
 * kilobytes each) are never parsed just to learn they are deltas.
 * @module
 */

/** `{"type":"<name>"` at the very start, with the whitespace JSON allows. */
const LEADING = /^\s*\{\s*"type"\s*:\s*"([A-Za-z0-9_.]{1,96})"/;

/** How much of a message the leading pattern needs at most. */
const HEAD = 160;

/** Messages up to this size whose `type` is not first are parsed to find it. */
const PARSE_LIMIT = 64 * 1024;

/**
 * The event type of a text message, or `null` when it is not a JSON object
 * with a string `type`. Only the head of the message is read when `type`
 * comes first; otherwise small messages are parsed and large ones given up
 * on (no OpenAI event puts its type later).
 */
export function eventTypeOf(text: string): string | null {
  const match = LEADING.exec(text.length > HEAD ? text.slice(0, HEAD) : text);
  if (match) return match[1]!;
  if (text.length > PARSE_LIMIT) return null;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    const type = (value as { type?: unknown }).type;
    return typeof type === "string" ? type : null;
  } catch {
    return null;
  }
}
