/**
 * The local dev stack: the unchanged relay handler, the Supabase Auth
 * stand-in, the OpenAI Realtime stand-in (when no real key is given) and the
 * demo page, each on 127.0.0.1. Used by `deno task dev` and the e2e tests.
 * @module
 */
import {
  createRelayHandler,
  type Relay,
  type RelayDeps,
} from "../supabase/functions/_shared/handler.ts";
import { parseSettings, type Settings } from "../supabase/functions/_shared/settings.ts";
import { createTelemetry } from "../supabase/functions/_shared/telemetry/log.ts";
import { type AuthStandIn, startAuthStandIn } from "../tests/stand_ins/auth.ts";
import { type OpenAIStandIn, startOpenAIStandIn } from "../tests/stand_ins/openai.ts";
import { demoHandler } from "./demo_server.ts";

/** Where each service listens; 0 picks a free port. */
export interface DevPorts {
  /** @default 8000 (like `supabase functions serve`) */
  relay: number;
  /** @default 8080 */
  demo: number;
  /** @default 54321 (the local Supabase API port) */
  auth: number;
  /** @default 54399 */
  openai: number;
}

/** The default ports, each overridable through the environment. */
export const DEFAULT_PORTS: Readonly<DevPorts> = {
  relay: 8000,
  demo: 8080,
  auth: 54321,
  openai: 54399,
};

/** Options for {@linkcode startDevStack}. */
export interface DevStackOptions {
  /** Ports to try first; a taken one falls back to a free port (see `notes`). */
  ports?: Partial<DevPorts>;
  /** The relay's environment (RELAY_*, OPENAI_*); the stand-ins' URLs and keys are added. */
  env?: Record<string, string | undefined>;
  /** Receives each relay telemetry line. @default stdout */
  telemetry?: (line: string) => void;
  /** Extra relay dependencies (tests). */
  deps?: RelayDeps;
}

/** A running dev stack. */
export interface DevStack {
  readonly relay: Relay;
  readonly settings: Settings;
  readonly auth: AuthStandIn;
  /** `null` when relaying to the real OpenAI API. */
  readonly openai: OpenAIStandIn | null;
  /** e.g. `ws://127.0.0.1:8000` (routes are `/relay`, `/relay/echo`, ...). */
  readonly relayUrl: string;
  /** The demo page, e.g. `http://127.0.0.1:8080/`. */
  readonly demoUrl: string;
  readonly ports: DevPorts;
  /** Human sentences about fallbacks (a taken port). */
  readonly notes: string[];
  /** Closes clients with 1012 (bounded by `graceMs`), then stops every server. */
  close(graceMs?: number): Promise<void>;
}

const HOST = "127.0.0.1";

/** Reads DEV ports from the environment: PORT, DEMO_PORT, AUTH_PORT, OPENAI_STAND_IN_PORT. */
export function portsFromEnv(env: Record<string, string | undefined>): Partial<DevPorts> {
  const pick = (name: string): number | undefined => {
    const value = env[name]?.trim();
    if (!value) return undefined;
    const port = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!(port >= 0 && port <= 65_535)) {
      throw new Error(`${name}: "${value}" is not a port number from 0 to 65535`);
    }
    return port;
  };
  const ports: Partial<DevPorts> = {};
  const assign = (key: keyof DevPorts, name: string) => {
    const port = pick(name);
    if (port !== undefined) ports[key] = port;
  };
  assign("relay", "PORT");
  assign("demo", "DEMO_PORT");
  assign("auth", "AUTH_PORT");
  assign("openai", "OPENAI_STAND_IN_PORT");
  return ports;
}

/** Runs `bind(port)`, and `bind(0)` when that port is taken, noting the fallback. */
async function bindWithFallback<T>(
  name: string,
  port: number,
  notes: string[],
  bind: (port: number) => Promise<T> | T,
): Promise<T> {
  try {
    return await bind(port);
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse) || port === 0) throw error;
    notes.push(`port ${port} for ${name} is in use; using a free port instead`);
    return await bind(0);
  }
}

/** Starts the stack; with `OPENAI_API_KEY` in `env` the relay talks to OpenAI itself. */
export async function startDevStack(options: DevStackOptions = {}): Promise<DevStack> {
  const want = { ...DEFAULT_PORTS, ...options.ports };
  const env = options.env ?? {};
  const notes: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  };
  try {
    const auth = await bindWithFallback(
      "the Auth stand-in",
      want.auth,
      notes,
      (port) => startAuthStandIn({ hostname: HOST, port }),
    );
    cleanups.push(() => auth.close());

    const realKey = env.OPENAI_API_KEY?.trim() || null;
    let openai: OpenAIStandIn | null = null;
    if (realKey === null) {
      openai = await bindWithFallback(
        "the OpenAI stand-in",
        want.openai,
        notes,
        (port) => startOpenAIStandIn({ port, behaviour: { kind: "realtime" } }),
      );
      const standIn = openai;
      cleanups.push(() => standIn.close());
    }

    const relayEnv: Record<string, string | undefined> = {
      ...env,
      SUPABASE_URL: auth.url,
      SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
      // What the platform provides, so tokens verify locally like in production.
      SUPABASE_JWKS: JSON.stringify(auth.jwks),
      ...(openai ? { OPENAI_API_KEY: openai.apiKey, OPENAI_REALTIME_URL: openai.url } : {}),
    };
    const settings = parseSettings(relayEnv);
    const relay = createRelayHandler(settings, {
      ...(options.telemetry
        ? { telemetry: createTelemetry(settings.logLevel, options.telemetry) }
        : {}),
      ...options.deps,
    });

    const serve = (name: string, port: number, handler: Deno.ServeHandler) =>
      bindWithFallback(name, port, notes, (p) => {
        const stop = new AbortController();
        const server = Deno.serve({
          hostname: HOST,
          port: p,
          signal: stop.signal,
          onListen: () => {},
        }, handler);
        cleanups.push(async () => {
          stop.abort();
          await server.finished;
        });
        return server.addr.port;
      });
    const relayPort = await serve("the relay", want.relay, relay.handler);
    const relayUrl = `ws://${HOST}:${relayPort}`;
    const demoPort = await serve(
      "the demo page",
      want.demo,
      demoHandler({ auth, relayUrl, upstream: openai ? "stand-in" : "openai" }),
    );

    return {
      relay,
      settings,
      auth,
      openai,
      relayUrl,
      demoUrl: `http://${HOST}:${demoPort}/`,
      ports: {
        relay: relayPort,
        demo: demoPort,
        auth: auth.port,
        openai: openai?.port ?? 0,
      },
      notes,
      close: async (graceMs = 4000) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
        await Promise.race([relay.shutdown(), grace]);
        clearTimeout(timer);
        await stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
