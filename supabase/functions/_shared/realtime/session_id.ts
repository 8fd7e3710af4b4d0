/**
 * The `?session=` id a client names its resumable conversation with
 * (CONTRACT.md "Resumable sessions").
 * @module
 */

/** 22-64 characters of `[A-Za-z0-9_-]`: a UUID, a nanoid or 16+ random bytes in base64url. */
const SESSION_ID = /^[A-Za-z0-9_-]{22,64}$/;

/** Whether `value` is a well-formed session id. */
export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}
