/**
 * Starts the real relay handler on 127.0.0.1:0 in front of the Auth and
 * OpenAI stand-ins, and captures its telemetry.
 * @module
 */
import {
  createRelayHandler,
  type Relay,
  type RelayDeps,
} from "../../supabase/functions/_shared/handler.ts";
import { parseSettings, type Settings } from "../../supabase/functions/_shared/settings.ts";
import { createTelemetry } from "../../supabase/functions/_shared/telemetry/log.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { type OpenAIStandIn, startOpenAIStandIn } from "../stand_ins/openai.ts";
import { until } from "./ws_client.ts";

/** A telemetry line, parsed. */
export type LogLine = { event: string; ts: string; [key: string]: unknown };

/** A running relay and its stand-ins. */
export interface RelayUnderTest {
  readonly relay: Relay;
  readonly settings: Settings;
  readonly auth: AuthStandIn;
  readonly openai: OpenAIStandIn;
  /** Raw telemetry lines, in order. */
  readonly lines: string[];
  /** Parsed telemetry events named `event`. */
  events(event: string): LogLine[];
  /** `ws://127.0.0.1:<port><path>` with `query` appended. */
  wsUrl(path: string, query?: Record<string, string>): string;
  readonly port: number;
  /** Waits until the relay holds no connection, then stops everything. */
  close(): Promise<void>;
}

/** Options for {@linkcode startRelay}. */
export interface StartOptions {
  /** Environment overrides on top of working defaults (the stand-ins' URLs and keys). */
  env?: Record<string, string>;
  /** Extra dependencies for the handler. */
  deps?: RelayDeps;
  /** Reuse running stand-ins instead of starting new ones (not closed by `close`). */
  auth?: AuthStandIn;
  openai?: OpenAIStandIn;
}

/** The settings that point a relay at the Auth and OpenAI stand-ins. */
export function standInEnv(auth: AuthStandIn, openai: OpenAIStandIn): Record<string, string> {
  return {
    SUPABASE_URL: auth.url,
    SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_REALTIME_URL: openai.url,
  };
}

/** Headers of a well-formed WebSocket upgrade, for requests built in-process. */
export const UPGRADE_HEADERS: Readonly<Record<string, string>> = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

/** Starts a relay wired to fresh stand-ins. */
export async function startRelay(options: StartOptions = {}): Promise<RelayUnderTest> {
  const auth = options.auth ?? await startAuthStandIn();
  const openai = options.openai ?? await startOpenAIStandIn();
  const settings = parseSettings({ ...standInEnv(auth, openai), ...options.env });
  const lines: string[] = [];
  const relay = createRelayHandler(settings, {
    telemetry: createTelemetry(settings.logLevel, (line) => lines.push(line)),
    ...options.deps,
  });
  const stop = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: () => {} },
    relay.handler,
  );
  const port = server.addr.port;
  return {
    relay,
    settings,
    auth,
    openai,
    lines,
    port,
    events: (event) =>
      lines.map((line) => JSON.parse(line) as LogLine).filter((l) => l.event === event),
    wsUrl: (path, query = {}) => {
      const url = new URL(`ws://127.0.0.1:${port}${path}`);
      for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
      return url.href;
    },
    close: async () => {
      // A test that failed midway may leave clients open: end them so the real
      // failure is reported instead of a hang, then insist nothing leaked.
      const leaked = await until(() => relay.connections() === 0, 6000, "connections to end")
        .then(() => null, (error: Error) => error);
      // Rooms hold a bus and timers of their own until the relay shuts down.
      if (leaked || settings.rooms !== "off") await relay.shutdown();
      stop.abort();
      await server.finished;
      if (!options.openai) await openai.close();
      if (!options.auth) await auth.close();
      if (leaked) throw leaked;
    },
  };
}

/**
 * Runs `body` against a fresh relay and always stops it. A failure in `body`
 * is the one reported, not a leak it caused by stopping midway.
 */
export async function withRelay(
  options: StartOptions,
  body: (relay: RelayUnderTest) => Promise<void>,
): Promise<void> {
  const relay = await startRelay(options);
  let failure: unknown = null;
  try {
    await body(relay);
  } catch (error) {
    failure = error;
  }
  try {
    await relay.close();
  } catch (error) {
    failure ??= error;
  }
  if (failure !== null) throw failure;
}
