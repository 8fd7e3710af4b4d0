/**
 * Ids for events the relay itself sends to a client (`relay_<unique>`).
 * @module
 */

/** Random per instance, so ids from two instances never collide. */
const INSTANCE = crypto.randomUUID().slice(0, 8);
let counter = 0;

/** A new `event_id` for an event the relay originates, e.g. `relay_1a2b3c4d_5`. */
export function relayEventId(): string {
  return `relay_${INSTANCE}_${(++counter).toString(36)}`;
}
