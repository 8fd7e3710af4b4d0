/**
 * What a protocol-aware feature adds to the OpenAI route: checks before the
 * upgrade, and hooks for each connection it admits (see relay/hooks.ts).
 * @module
 */
import type { Identity } from "../auth/claims.ts";
import type { Refusal } from "../http/refusal.ts";
import type { ConnectionHooks } from "../relay/hooks.ts";

/** One connection, as features see it at admission. */
export interface ConnectionContext {
  readonly conn: string;
  readonly user: string;
  readonly model: string;
  /** The client's `?session=` id, already validated; `null` when none. */
  readonly session: string | null;
  /** A conversation (`?model=`), or a transcription session (`?intent=transcription`). */
  readonly intent: Intent;
  /** `?room=`: where the connection's captions go (already checked); `null` when none. */
  readonly room: string | null;
  /** Who the token says the user is (claims included, for SQL run as the user). */
  readonly identity: Identity;
}

/** What kind of OpenAI session a connection opens. */
export type Intent = "conversation" | "transcription";

/** A feature's yes to one connection. */
export interface Admission {
  readonly hooks?: ConnectionHooks;
  /** The connection did not go ahead after all (a later check refused it, or the upgrade failed). */
  readonly cancel?: () => void;
}

/** A feature of the OpenAI route; every member is optional. */
export interface RouteFeature {
  /** Checks of the request that need no user; run before the token. */
  check?(url: URL): Refusal | null;
  /** After the token, before the connection caps: admit the connection or refuse it. */
  admit?(context: ConnectionContext): Admission | Refusal | Promise<Admission | Refusal>;
  /** The instance is stopping, after every connection was told: flush what is pending. */
  close?(): Promise<void>;
}

/** Whether an admission answer is a refusal. */
export function isRefusal(answer: Admission | Refusal): answer is Refusal {
  return "status" in answer;
}
