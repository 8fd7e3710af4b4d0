/**
 * Where a request enters: route, pre-upgrade checks, token, caps, upgrade, then
 * a {@linkcode RelaySession} per connection.
 * @module
 */
import type { Identity } from "./auth/claims.ts";
import { createTokenVerifier, type TokenVerifier, type Verification } from "./auth/verify.ts";
import { connectDatabase, type Database } from "./db/client.ts";
import { extractToken, offeredProtocols, selectProtocol } from "./auth/token_source.ts";
import { type Admission, isRefusal } from "./features/feature.ts";
import { openAIRouteFeatures } from "./features/openai_route.ts";
import { checkUpgradeRequest } from "./http/handshake.ts";
import { type Refusal, refusal, refusalResponse } from "./http/refusal.ts";
import { matchRoute, type Route } from "./http/routes.ts";
import { Deadlines } from "./relay/deadlines.ts";
import { hooksComposer } from "./relay/hooks.ts";
import { ConnectionRegistry } from "./relay/registry.ts";
import { RelaySession } from "./relay/session.ts";
import type { Settings } from "./settings.ts";
import { createTelemetry, type Telemetry } from "./telemetry/log.ts";
import { echoConnector } from "./upstream/echo.ts";
import { openAIConnector } from "./upstream/openai.ts";
import type { UpstreamConnector } from "./upstream/upstream.ts";

/** Side effects of the relay; each defaults to the real thing. */
export interface RelayDeps {
  /** @default supabase-js `getClaims` against `settings.supabaseUrl` */
  readonly verifyToken?: TokenVerifier;
  /** @default a WebSocket to `settings.openaiRealtimeUrl` (absent without an API key) */
  readonly connectOpenAI?: UpstreamConnector;
  /** @default JSON lines on stdout at `settings.logLevel` */
  readonly telemetry?: Telemetry;
  /** Milliseconds since the epoch. @default Date.now */
  readonly now?: () => number;
  /**
   * Keeps the platform from stopping the worker while a connection lives.
   * @default EdgeRuntime.waitUntil on the edge runtime, nothing elsewhere
   */
  readonly waitUntil?: (promise: Promise<unknown>) => void;
  /** @default 5000 */
  readonly authTimeoutMs?: number;
  /** Used by the default token verifier. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /**
   * The project's Postgres, for metering and resumable sessions (the caller
   * closes an injected one). @default a pool on `settings.databaseUrl` when a
   * feature needs it, closed at shutdown
   */
  readonly database?: Database;
  /** This instance's id in the database (its session leases). @default a random UUID */
  readonly instance?: string;
}

/** A relay instance: its request handler and its lifecycle. */
export interface Relay {
  /** The `Deno.serve` handler (synchronous when nothing needs waiting for). */
  readonly handler: (request: Request) => Response | Promise<Response>;
  /** Connections currently held. */
  readonly connections: () => number;
  /**
   * Closes every connection with 1012 and settles when all are closed and
   * the features have flushed what they hold (usage, session state).
   */
  readonly shutdown: () => Promise<void>;
}

/** What the checks before the token established about a request. */
interface Checked {
  readonly request: Request;
  readonly url: URL;
  readonly route: Route;
  readonly model: string | null;
  readonly connect: UpstreamConnector;
}

/** The connection did not go ahead: every feature that admitted it lets go. */
function cancelAll(admissions: readonly Admission[]): void {
  for (const admission of admissions) admission.cancel?.();
}

declare const EdgeRuntime: { waitUntil(promise: Promise<unknown>): void } | undefined;

function platformWaitUntil(): ((promise: Promise<unknown>) => void) | undefined {
  return typeof EdgeRuntime === "undefined" ? undefined : (p) => EdgeRuntime?.waitUntil(p);
}

/**
 * Builds the relay for validated settings.
 *
 * @example
 * ```ts
 * const relay = createRelayHandler(parseSettings(Deno.env.toObject()));
 * Deno.serve(relay.handler);
 * ```
 */
export function createRelayHandler(settings: Settings, deps: RelayDeps = {}): Relay {
  const telemetry = deps.telemetry ?? createTelemetry(settings.logLevel);
  const now = deps.now ?? Date.now;
  const waitUntil = deps.waitUntil ?? platformWaitUntil();
  const verifyToken = deps.verifyToken ?? createTokenVerifier({
    supabaseUrl: settings.supabaseUrl,
    supabaseKey: settings.supabaseKey,
    jwks: settings.supabaseJwks,
    allowedRoles: settings.allowedRoles,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.authTimeoutMs ? { authTimeoutMs: deps.authTimeoutMs } : {}),
  });
  const connectOpenAI = deps.connectOpenAI ??
    (settings.openaiApiKey === null
      ? null
      : openAIConnector({ url: settings.openaiRealtimeUrl, apiKey: settings.openaiApiKey }));
  const ownDatabase = deps.database === undefined && settings.databaseUrl !== null &&
      (settings.metering || settings.resume)
    ? connectDatabase(settings.databaseUrl)
    : null;
  const database = deps.database ?? ownDatabase;
  const features = openAIRouteFeatures(settings, {
    telemetry,
    now,
    database,
    instance: deps.instance ?? crypto.randomUUID(),
  });
  const registry = new ConnectionRegistry(settings.maxConnectionsPerUser, settings.maxConnections);
  const limits = {
    maxMessageBytes: settings.maxMessageBytes,
    maxBufferedBytes: settings.maxBufferedBytes,
    rateLimit: settings.rateLimit,
    upstreamTimeoutMs: settings.upstreamTimeoutMs,
  };
  // One runtime timer for every connection's deadlines.
  const deadlines = new Deadlines();
  const composeHooks = hooksComposer();
  const releaseSlot = (session: RelaySession) => registry.release(session.user, session);
  let draining = false;

  const reject = (refused: Refusal, route: Route | null): Response => {
    telemetry.info("websocket.connection.rejected", {
      status: refused.status,
      error: refused.error,
      route,
    });
    return refusalResponse(refused);
  };

  const handler = (request: Request): Response | Promise<Response> => {
    const url = new URL(request.url);
    const route = matchRoute(url.pathname);
    if (route === null) return reject(refusal("not_found"), null);
    if (route === "health") {
      if (request.method !== "GET") return reject(refusal("method_not_allowed"), route);
      return Response.json({ status: "ok", connections: registry.size });
    }

    const early = checkUpgradeRequest(request.method, request.headers, settings.allowedOrigins);
    if (early) return reject(early, route);
    const found = extractToken(url, request.headers);
    if (!found) return reject(refusal("missing_token"), route);
    let model: string | null = null;
    let connect: UpstreamConnector = echoConnector;
    if (route === "openai") {
      const requested = url.searchParams.get("model");
      if (requested !== null && !settings.openaiRealtimeModels.includes(requested)) {
        return reject(refusal("model_not_allowed"), route);
      }
      if (connectOpenAI === null) return reject(refusal("upstream_not_configured"), route);
      model = requested ?? settings.openaiRealtimeModel;
      connect = connectOpenAI;
      for (const feature of features) {
        const refused = feature.check?.(url);
        if (refused) return reject(refused, route);
      }
    }

    const checked: Checked = { request, url, route, model, connect };
    const verified = verifyToken(found.token);
    // A token verified before (a reconnect) is known at once; with no feature
    // waiting on the database either, the handshake then runs without a promise.
    return verified instanceof Promise
      ? verified.then((answer) => afterToken(checked, answer))
      : afterToken(checked, verified);
  };

  const afterToken = (checked: Checked, verified: Verification): Response | Promise<Response> => {
    if (!verified.ok) return reject(refusal(verified.error), checked.route);
    const { identity } = verified;
    const conn = crypto.randomUUID();
    if (checked.route !== "openai") return upgrade(checked, identity, conn, []);
    const context = {
      conn,
      user: identity.user,
      model: checked.model ?? "",
      session: checked.url.searchParams.get("session"),
    };
    const pending = features.map((feature) => feature.admit?.(context));
    // Side by side: each feature's database round trip overlaps the others'.
    return pending.some((answer) => answer instanceof Promise)
      ? Promise.all(pending).then((answers) => afterAdmission(checked, identity, conn, answers))
      : afterAdmission(checked, identity, conn, pending as (Admission | Refusal | undefined)[]);
  };

  const afterAdmission = (
    checked: Checked,
    identity: Identity,
    conn: string,
    answers: readonly (Admission | Refusal | undefined)[],
  ): Response => {
    const admissions: Admission[] = [];
    let refused: Refusal | undefined;
    for (const answer of answers) {
      if (answer === undefined) continue;
      if (isRefusal(answer)) refused ??= answer;
      else admissions.push(answer);
    }
    if (refused) {
      cancelAll(admissions);
      return reject(refused, checked.route);
    }
    return upgrade(checked, identity, conn, admissions);
  };

  const upgrade = (
    checked: Checked,
    identity: Identity,
    conn: string,
    admissions: readonly Admission[],
  ): Response => {
    const { request, route, model } = checked;
    const full = registry.reserve(identity.user);
    if (full !== null) {
      cancelAll(admissions);
      return reject(refusal(full), route);
    }
    const protocol = selectProtocol(offeredProtocols(request.headers));
    // Read before upgrading: the request's headers are gone once it is upgraded.
    const origin = request.headers.get("origin");
    let upgraded: { socket: WebSocket; response: Response };
    try {
      // The selected protocol must be passed here to be echoed: browsers fail
      // a handshake that offered protocols and got none back.
      upgraded = Deno.upgradeWebSocket(request, {
        idleTimeout: settings.idleTimeoutS,
        ...(protocol === undefined ? {} : { protocol }),
      });
    } catch {
      registry.release(identity.user);
      cancelAll(admissions);
      return reject(refusal("bad_handshake"), route);
    }

    telemetry.info("websocket.connection.accepted", {
      conn,
      user: identity.user,
      route,
      model,
      origin,
    });
    const session = new RelaySession({
      client: upgraded.socket,
      connect: checked.connect,
      model: model ?? "",
      hooks: composeHooks(admissions.flatMap((admission) => admission.hooks ?? [])),
      limits,
      expiresAtMs: identity.exp === null ? null : identity.exp * 1000,
      telemetry,
      conn,
      user: identity.user,
      now,
      deadlines,
      onEnded: releaseSlot,
    });
    registry.attach(session);
    waitUntil?.(session.done);
    if (draining) session.shutdown();
    return upgraded.response;
  };

  return {
    handler,
    connections: () => registry.size,
    shutdown: () => {
      draining = true;
      const closing = (async () => {
        await registry.shutdownAll();
        await Promise.all(features.map((feature) => feature.close?.()));
        await ownDatabase?.close();
      })();
      // The flush runs after the last socket closed: keep the worker for it too.
      waitUntil?.(closing);
      return closing;
    },
  };
}
