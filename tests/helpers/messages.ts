/**
 * Comparing relayed messages by type and bytes.
 * @module
 */
import type { ReceivedMessage } from "../stand_ins/openai.ts";
import type { Message } from "./ws_client.ts";

const encoder = new TextEncoder();

/** The bytes of a message as it went over the wire. */
export function bytesOf(message: Message | Uint8Array): Uint8Array {
  if (typeof message === "string") return encoder.encode(message);
  return message instanceof Uint8Array ? message : new Uint8Array(message);
}

/** Whether two byte arrays are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `actual` (as a client received it) is `expected`: same type, same bytes. */
export function sameMessage(actual: Message | undefined, expected: Message | Uint8Array): boolean {
  if (actual === undefined) return false;
  if ((typeof actual === "string") !== (typeof expected === "string")) return false;
  return sameBytes(bytesOf(actual), bytesOf(expected));
}

/** Whether what the upstream stand-in recorded is `expected`: same type, same bytes. */
export function sameUpstream(actual: ReceivedMessage | undefined, expected: Message): boolean {
  if (actual === undefined) return false;
  if (actual.type !== (typeof expected === "string" ? "text" : "binary")) return false;
  return sameBytes(bytesOf(actual.data), bytesOf(expected));
}
