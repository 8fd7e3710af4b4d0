/**
 * What a WebSocket route owns: its checks before the token, its admission
 * after it, and the far side of each connection it admits. The handler runs
 * the steps every route shares (upgrade checks, token, caps, the relay loop)
 * and asks the route for the rest, so a reader finds each route in one file.
 * @module
 */
import type { Identity } from "../auth/claims.ts";
import type { Refusal } from "../http/refusal.ts";
import type { ConnectionHooks } from "../relay/hooks.ts";
import type { SessionLimits } from "../relay/session.ts";
import type { Fields } from "../telemetry/log.ts";
import type { UpstreamConnector } from "../upstream/upstream.ts";

/** A route's yes to one connection: what the relay loop runs for it. */
export interface RouteConnection {
  readonly connect: UpstreamConnector;
  /** The model named in telemetry and given to the connector; `null` where none applies. */
  readonly model: string | null;
  /** The connection's hooks, in the order they run (composed by the handler). */
  readonly hooks: readonly ConnectionHooks[];
  /** Limits of this route when they differ from the relay's. */
  readonly limits?: SessionLimits;
  /** Extra telemetry fields of the accepted and closed lines (e.g. the room). */
  readonly labels?: Fields;
  /** The connection did not go ahead after all (a cap refused it, or the upgrade failed). */
  cancel?(): void;
}

/** The outcome of a route's checks before the token. */
export type Prepared<P> = { readonly ok: true; readonly plan: P } | {
  readonly ok: false;
  readonly refusal: Refusal;
};

/** One WebSocket route. `P` is what its checks established before the token. */
export interface WebSocketRoute<P> {
  /** Checks that need no user, after the upgrade checks and the token's presence. */
  prepare(url: URL): Prepared<P>;
  /** After the token, before the relay's connection caps: admit or refuse. */
  admit(
    plan: P,
    identity: Identity,
    conn: string,
  ): RouteConnection | Refusal | Promise<RouteConnection | Refusal>;
  /** The instance is stopping, after every connection was told: flush what is pending. */
  close?(): Promise<void>;
}

/** Whether an admission answer is a refusal. */
export function isRouteRefusal(answer: RouteConnection | Refusal): answer is Refusal {
  return "status" in answer;
}
