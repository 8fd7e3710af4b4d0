/**
 * A feature's view of one connection, for unit tests: a conversation with no
 * room, its identity made from the user id.
 * @module
 */
import type { ConnectionContext } from "../../supabase/functions/_shared/features/feature.ts";

/** `fields` completed into a conversation's context. */
export function conversationContext(
  fields: Omit<ConnectionContext, "intent" | "room" | "identity">,
): ConnectionContext {
  return {
    ...fields,
    intent: "conversation",
    room: null,
    identity: { user: fields.user, role: "authenticated", exp: null, claims: { sub: fields.user } },
  };
}
