/**
 * Where a request enters: route, pre-upgrade checks, token, the route's own
 * admission, caps, upgrade, then a {@linkcode RelaySession} per connection.
 * What differs between routes (OpenAI, echo, rooms) lives in `routes/`.
 * @module
 */
import type { Identity } from "./auth/claims.ts";
import { createTokenVerifier, type TokenVerifier, type Verification } from "./auth/verify.ts";
import { connectDatabase, type Database } from "./db/client.ts";
import { extractToken, offeredProtocols, selectProtocol } from "./auth/token_source.ts";
import { openAIRouteFeatures } from "./features/openai_route.ts";
import { checkUpgradeRequest } from "./http/handshake.ts";
import { type Refusal, refusal, refusalResponse } from "./http/refusal.ts";
import { matchRoute, type Route } from "./http/routes.ts";
import { Deadlines } from "./relay/deadlines.ts";
import { hooksComposer } from "./relay/hooks.ts";
import { ConnectionRegistry } from "./relay/registry.ts";
import { RelaySession } from "./relay/session.ts";
import { localBus, type RoomBus } from "./rooms/bus.ts";
import { RoomHub } from "./rooms/hub.ts";
import { realtimeBus } from "./rooms/realtime_bus.ts";
import { echoRoute } from "./routes/echo.ts";
import { openAIRoute } from "./routes/openai.ts";
import { isRouteRefusal, type RouteConnection, type WebSocketRoute } from "./routes/route.ts";
import { databaseAccess, databaseHistory, openAccess, roomsRoute } from "./routes/rooms.ts";
import type { Settings } from "./settings.ts";
import { createTelemetry, type Telemetry } from "./telemetry/log.ts";
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
  /** This instance's id in the database (its session leases) and on the rooms' bus. @default a random UUID */
  readonly instance?: string;
  /** How rooms meet other instances. @default per `RELAY_ROOMS_BUS`: Supabase Realtime, or none */
  readonly roomBus?: RoomBus;
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
  readonly route: Route;
  readonly handler: WebSocketRoute<unknown>;
  readonly plan: unknown;
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
  const instance = deps.instance ?? crypto.randomUUID();
  const verifyToken = deps.verifyToken ?? createTokenVerifier({
    supabaseUrl: settings.supabaseUrl,
    supabaseKey: settings.supabaseKey,
    jwks: settings.supabaseJwks,
    allowedRoles: settings.allowedRoles,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    ...(deps.authTimeoutMs ? { authTimeoutMs: deps.authTimeoutMs } : {}),
  });
  const openAIOptions = settings.openaiApiKey === null
    ? null
    : { url: settings.openaiRealtimeUrl, apiKey: settings.openaiApiKey };
  const connectOpenAI = deps.connectOpenAI ??
    (openAIOptions === null ? null : openAIConnector(openAIOptions));
  const connectTranscription = openAIOptions === null
    ? null
    : openAIConnector(openAIOptions, "transcription");
  const ownDatabase = deps.database === undefined && settings.databaseUrl !== null &&
      (settings.metering || settings.resume || settings.rooms === "database" ||
        settings.roomHistory > 0)
    ? connectDatabase(settings.databaseUrl)
    : null;
  const database = deps.database ?? ownDatabase;
  const registry = new ConnectionRegistry(settings.maxConnectionsPerUser, settings.maxConnections);
  // One runtime timer for every connection's deadlines.
  const deadlines = new Deadlines();
  const limits = {
    maxMessageBytes: settings.maxMessageBytes,
    maxBufferedBytes: settings.maxBufferedBytes,
    rateLimit: settings.rateLimit,
    upstreamTimeoutMs: settings.upstreamTimeoutMs,
  };
  // Rooms' pieces, shared by the rooms route and the OpenAI route's captions.
  const roomsOn = settings.rooms !== "off";
  const hub = roomsOn
    ? new RoomHub({
      bus: deps.roomBus ?? roomBusFor(settings, instance, telemetry),
      now,
      // Below the loop's open deadline, so a member is let in before it.
      busWaitMs: Math.min(5000, Math.floor(settings.upstreamTimeoutMs / 2)),
    })
    : null;
  const access = settings.rooms === "database" && database !== null
    ? databaseAccess(database, now)
    : openAccess;
  const history = roomsOn && settings.roomHistory > 0 && database !== null
    ? databaseHistory(database, { max: settings.roomHistory, ttlS: settings.roomHistoryTtlS })
    : null;
  const openai = openAIRoute({
    settings,
    connect: connectOpenAI,
    connectTranscription,
    rooms: roomsOn,
    features: openAIRouteFeatures(settings, {
      telemetry,
      now,
      database,
      instance,
      captions: hub === null ? null : { hub, access, history, now },
    }),
  });
  const rooms = hub === null ? null : roomsRoute({
    settings,
    hub,
    access,
    limits,
    telemetry,
    now,
    history,
    registry,
    deadlines,
  });
  const webSocketRoutes: Partial<Record<Route, WebSocketRoute<unknown>>> = {
    openai: openai as WebSocketRoute<unknown>,
    echo: echoRoute as WebSocketRoute<unknown>,
    ...(rooms ? { rooms: rooms as WebSocketRoute<unknown> } : {}),
  };
  const composeHooks = hooksComposer();
  const releaseSlot = (session: RelaySession) => registry.release(session.user, session);

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
    // With rooms off their paths do not exist.
    if (route === null || (rooms === null && (route === "rooms" || route === "room_events"))) {
      return reject(refusal("not_found"), null);
    }
    if (route === "health") {
      if (request.method !== "GET") return reject(refusal("method_not_allowed"), route);
      return Response.json({ status: "ok", connections: registry.size });
    }
    if (rooms !== null) {
      if (route === "rooms" && request.method === "POST") {
        return rooms.publish(request, url, verifyToken);
      }
      if (route === "room_events") return rooms.follow(request, url, verifyToken);
    }
    const handler = webSocketRoutes[route];
    if (handler === undefined) return reject(refusal("not_found"), route);

    const early = checkUpgradeRequest(request.method, request.headers, settings.allowedOrigins);
    if (early) {
      return reject(
        route === "rooms" && early.error === "method_not_allowed" ? ROOMS_METHODS : early,
        route,
      );
    }
    const found = extractToken(url, request.headers);
    if (!found) return reject(refusal("missing_token"), route);
    const prepared = handler.prepare(url);
    if (!prepared.ok) return reject(prepared.refusal, route);

    const checked: Checked = { request, route, handler, plan: prepared.plan };
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
    const admitted = checked.handler.admit(checked.plan, identity, conn);
    return admitted instanceof Promise
      ? admitted.then((answer) => afterAdmission(checked, identity, conn, answer))
      : afterAdmission(checked, identity, conn, admitted);
  };

  const afterAdmission = (
    checked: Checked,
    identity: Identity,
    conn: string,
    admitted: RouteConnection | Refusal,
  ): Response => {
    if (isRouteRefusal(admitted)) return reject(admitted, checked.route);
    const { request, route } = checked;
    const full = registry.reserve(identity.user);
    if (full !== null) {
      admitted.cancel?.();
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
      admitted.cancel?.();
      return reject(refusal("bad_handshake"), route);
    }

    telemetry.info("websocket.connection.accepted", {
      conn,
      user: identity.user,
      route,
      model: admitted.model,
      origin,
      ...admitted.labels,
    });
    const session = new RelaySession({
      client: upgraded.socket,
      connect: admitted.connect,
      model: admitted.model ?? "",
      hooks: composeHooks(admitted.hooks),
      limits: admitted.limits ?? limits,
      expiresAtMs: identity.exp === null ? null : identity.exp * 1000,
      telemetry,
      conn,
      user: identity.user,
      labels: admitted.labels,
      now,
      deadlines,
      onEnded: releaseSlot,
    });
    registry.attach(session);
    waitUntil?.(session.done);
    return upgraded.response;
  };

  return {
    handler,
    connections: () => registry.size,
    shutdown: () => {
      const closing = (async () => {
        await registry.shutdownAll();
        await openai.close?.();
        await rooms?.close?.();
        await ownDatabase?.close();
      })();
      // The flush runs after the last socket closed: keep the worker for it too.
      waitUntil?.(closing);
      return closing;
    },
  };
}

/** Room paths take a server's POST beside the members' GET. */
const ROOMS_METHODS: Refusal = {
  ...refusal("method_not_allowed"),
  message: "Only GET (join) and POST (publish) are allowed here.",
  headers: { allow: "GET, POST" },
};

/** The bus the settings ask for: Supabase Realtime, or this instance alone. */
function roomBusFor(settings: Settings, instance: string, telemetry: Telemetry): RoomBus {
  if (settings.roomsBus === "off" || settings.secretKey === null) return localBus(instance);
  return realtimeBus({
    url: settings.realtimeUrl,
    secretKey: settings.secretKey,
    instance,
    telemetry,
  });
}
