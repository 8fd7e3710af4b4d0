/**
 * The local dev stack: the unchanged relay handler, the Supabase Auth
 * stand-in, the OpenAI Realtime stand-in (when no real key is given), the
 * demo page and, when metering or resume is on, a database: the embedded
 * PGlite prepared like a Supabase project, or the one `RELAY_DATABASE_URL`
 * names. Each on 127.0.0.1. Used by `deno task dev` and the e2e tests.
 * @module
 */
import postgres from "postgres";
import { createTokenVerifier } from "../supabase/functions/_shared/auth/verify.ts";
import { connectDatabase, describe } from "../supabase/functions/_shared/db/client.ts";
import {
  createRelayHandler,
  type Relay,
  type RelayDeps,
} from "../supabase/functions/_shared/handler.ts";
import { parseSettings, type Settings } from "../supabase/functions/_shared/settings.ts";
import { createTelemetry } from "../supabase/functions/_shared/telemetry/log.ts";
import { type AuthStandIn, startAuthStandIn } from "../tests/stand_ins/auth.ts";
import { type OpenAIStandIn, type Pace, startOpenAIStandIn } from "../tests/stand_ins/openai.ts";
import {
  type RealtimeStandIn,
  startRealtimeStandIn,
} from "../tests/stand_ins/supabase_realtime.ts";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./db/embedded.ts";
import { applyMigrations, pendingMigrations, readMigrations } from "./db/migrations.ts";
import { devDatabasePlan, redactDatabaseUrl } from "./defaults.ts";
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
  /** The embedded database. @default 54322 (the local Supabase database port) */
  db: number;
}

/** The default ports, each overridable through the environment. */
export const DEFAULT_PORTS: Readonly<DevPorts> = {
  relay: 8000,
  demo: 8080,
  auth: 54321,
  openai: 54399,
  db: 54322,
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
  /**
   * The embedded database's folder, used when metering or resume is on and
   * no database URL is given. @default .dev-data/pglite in the repository
   */
  dataDir?: string;
  /** Delete the embedded database's data first (`deno task dev --fresh`). */
  fresh?: boolean;
  /**
   * How the OpenAI stand-in streams audio answers: `realtime` as fast as they
   * play, so a person can interrupt one (`deno task dev`). @default "instant"
   */
  pace?: Pace;
  /**
   * An Auth stand-in to use instead of starting one (not closed by `close`):
   * its users keep their ids across a restart of the rest, as a project's do.
   */
  auth?: AuthStandIn;
}

/** The relay's database in dev. */
export interface DevDatabase {
  /** `embedded`: PGlite in this process; `external`: the database `RELAY_DATABASE_URL` names. */
  readonly kind: "embedded" | "external";
  /** The URL the relay connects to, fit to print (a password shows as `***`). */
  readonly displayUrl: string;
  /** The embedded database's folder; `null` for an external one. */
  readonly dataDir: string | null;
  /** Whether this start created the embedded database. */
  readonly created: boolean;
  /** Migration files applied at this start (embedded), e.g. `20261201000100_relay_metering.sql`. */
  readonly applied: readonly string[];
  /** Migration files the database's history lacks (external: apply them with `supabase db push`). */
  readonly pending: readonly string[];
}

/** A running dev stack. */
export interface DevStack {
  readonly relay: Relay;
  readonly settings: Settings;
  readonly auth: AuthStandIn;
  /** `null` when relaying to the real OpenAI API. */
  readonly openai: OpenAIStandIn | null;
  /**
   * The Supabase Realtime stand-in the rooms' bus meets on (at the Auth
   * stand-in's origin, as the gateway serves `/realtime/v1`); `null` when
   * rooms or their bus are off.
   */
  readonly realtime: RealtimeStandIn | null;
  /** `null` when neither metering nor resume is on. */
  readonly database: DevDatabase | null;
  /** e.g. `ws://127.0.0.1:8000` (routes are `/relay`, `/relay/echo`, ...). */
  readonly relayUrl: string;
  /** The demo page, e.g. `http://127.0.0.1:8080/`. */
  readonly demoUrl: string;
  readonly ports: DevPorts;
  /** Human sentences about fallbacks (a taken port). */
  readonly notes: string[];
  /**
   * Restarts the relay as the platform recycles a worker: the running relay
   * shuts down (clients get 1012; what it holds is flushed to the database),
   * bounded by `graceMs`, then a new relay handler with the same settings
   * serves the same port and database. `relay` is the new one afterwards.
   * Connections that arrive while the old one drains get its 1012 too.
   */
  restartRelay(graceMs?: number): Promise<void>;
  /** Closes clients with 1012 (bounded by `graceMs`), then stops every server. */
  close(graceMs?: number): Promise<void>;
}

const HOST = "127.0.0.1";
const ROOT = new URL("../", import.meta.url);

/** Where `deno task dev` keeps the embedded database (gitignored). */
export const DEFAULT_DATA_DIR = new URL(".dev-data/pglite", ROOT).pathname;
/** What a Supabase project's database has before any migration (roles, `auth.uid()`). */
const SUPABASE_STAND_IN_SQL = new URL("tests/sql/supabase_stand_in.sql", ROOT);
const MIGRATIONS_DIR = new URL("supabase/migrations", ROOT).pathname;

/** Reads DEV ports from the environment: PORT, DEMO_PORT, AUTH_PORT, OPENAI_STAND_IN_PORT, DB_PORT. */
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
  assign("db", "DB_PORT");
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
    const given = options.auth;
    const roomsOn = (env.RELAY_ROOMS?.trim().toLowerCase() ?? "off") !== "off" &&
      env.RELAY_ROOMS_BUS?.trim().toLowerCase() !== "off";
    // Served by the Auth stand-in, on its origin, as Supabase's gateway serves
    // /realtime/v1 beside /auth/v1; a given Auth stand-in cannot mount it, so
    // it then listens on a port of its own.
    const realtime = roomsOn
      ? await startRealtimeStandIn({ hostname: HOST, listen: given !== undefined })
      : null;
    if (realtime) cleanups.push(() => realtime.close());
    const auth = given ?? await bindWithFallback(
      "the Auth stand-in",
      want.auth,
      notes,
      (port) =>
        startAuthStandIn({
          hostname: HOST,
          port,
          ...(realtime ? { gateway: (request: Request) => realtime.handle(request) } : {}),
        }),
    );
    if (!given) cleanups.push(() => auth.close());

    const realKey = env.OPENAI_API_KEY?.trim() || null;
    let openai: OpenAIStandIn | null = null;
    if (realKey === null) {
      openai = await bindWithFallback(
        "the OpenAI stand-in",
        want.openai,
        notes,
        (port) => startOpenAIStandIn({ port, behaviour: { kind: "realtime" } }),
      );
      openai.pace = options.pace ?? "instant";
      const standIn = openai;
      cleanups.push(() => standIn.close());
    }

    const planned = devDatabasePlan(env);
    let embedded: EmbeddedPostgres | null = null;
    if (planned === "embedded") {
      const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
      const db = await startEmbeddedPostgres({
        dataDir,
        fresh: options.fresh ?? false,
        port: want.db,
      });
      embedded = db;
      cleanups.push(() => db.close());
      if (want.db !== 0 && db.port !== want.db) {
        notes.push(`port ${want.db} for the database is in use; using a free port instead`);
      }
    }
    if (options.fresh && planned === "external") {
      notes.push(
        "--fresh left the database alone: it is RELAY_DATABASE_URL's, not the embedded one",
      );
    }
    const database = embedded
      ? await prepareEmbedded(embedded)
      : planned === "external"
      ? await inspectExternal(env.RELAY_DATABASE_URL?.trim() || env.SUPABASE_DB_URL!.trim(), notes)
      : null;

    const relayEnv: Record<string, string | undefined> = {
      ...env,
      SUPABASE_URL: auth.url,
      SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
      // What the platform provides, so tokens verify locally like in production.
      SUPABASE_JWKS: JSON.stringify(auth.jwks),
      ...(openai ? { OPENAI_API_KEY: openai.apiKey, OPENAI_REALTIME_URL: openai.url } : {}),
      ...(embedded ? { RELAY_DATABASE_URL: embedded.url } : {}),
      ...(realtime
        ? {
          SUPABASE_SECRET_KEYS: JSON.stringify({ default: realtime.secretKey }),
          RELAY_REALTIME_URL: `${given ? realtime.url : auth.url}/realtime/v1`,
        }
        : {}),
    };
    const settings = parseSettings(relayEnv);
    const relayDeps: RelayDeps = {
      ...(options.telemetry
        ? { telemetry: createTelemetry(settings.logLevel, options.telemetry) }
        : {}),
      ...options.deps,
    };
    let relay = createRelayHandler(settings, relayDeps);
    /** Waits for the relay to shut down, at most `graceMs`. */
    const shutDownRelay = async (graceMs: number) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([relay.shutdown(), grace]);
      clearTimeout(timer);
    };

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
    // Through `relay`, so a restart swaps the handler behind the same port.
    const relayPort = await serve("the relay", want.relay, (request) => relay.handler(request));
    const relayUrl = `ws://${HOST}:${relayPort}`;
    let usage = null;
    if (settings.metering && settings.databaseUrl !== null) {
      // Its own small pool, as Supabase's REST layer is a client of its own.
      const usageDatabase = connectDatabase(settings.databaseUrl, { max: 1 });
      cleanups.push(() => usageDatabase.close());
      usage = {
        database: usageDatabase,
        verifyToken: options.deps?.verifyToken ?? createTokenVerifier({
          supabaseUrl: settings.supabaseUrl,
          supabaseKey: settings.supabaseKey,
          jwks: settings.supabaseJwks,
          allowedRoles: settings.allowedRoles,
        }),
      };
    }
    const demoPort = await serve(
      "the demo page",
      want.demo,
      demoHandler({ auth, relayUrl, upstream: openai ? "stand-in" : "openai", usage }),
    );

    return {
      get relay() {
        return relay;
      },
      settings,
      auth,
      openai,
      realtime,
      database,
      relayUrl,
      demoUrl: `http://${HOST}:${demoPort}/`,
      ports: {
        relay: relayPort,
        demo: demoPort,
        auth: auth.port,
        openai: openai?.port ?? 0,
        db: embedded?.port ?? 0,
      },
      notes,
      restartRelay: async (graceMs = 4000) => {
        await shutDownRelay(graceMs);
        relay = createRelayHandler(settings, relayDeps);
      },
      close: async (graceMs = 4000) => {
        await shutDownRelay(graceMs);
        await stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** A short-lived client for setup steps (one connection, statements unprepared as the relay's). */
function setupClient(url: string): postgres.Sql {
  return postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 5 });
}

/**
 * Prepares the embedded database like a Supabase project (roles, schema
 * `auth`, `auth.uid()` from `request.jwt.claims`; idempotent), then applies
 * the migrations it lacks, recorded as `supabase db push` records them.
 */
async function prepareEmbedded(db: EmbeddedPostgres): Promise<DevDatabase> {
  const sql = setupClient(db.url);
  try {
    await sql.unsafe(await Deno.readTextFile(SUPABASE_STAND_IN_SQL));
    const { migrations } = await readMigrations(MIGRATIONS_DIR);
    const applied = await applyMigrations(sql, migrations);
    return {
      kind: "embedded",
      displayUrl: db.url,
      dataDir: db.dataDir,
      created: db.created,
      applied: applied.map((migration) => migration.file),
      pending: [],
    };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * An external database is used as it is: dev never changes a schema it does
 * not own. It only says which migrations the database's history lacks.
 */
async function inspectExternal(url: string, notes: string[]): Promise<DevDatabase> {
  const displayUrl = redactDatabaseUrl(url);
  const { migrations } = await readMigrations(MIGRATIONS_DIR);
  let pending: string[] = [];
  const database = connectDatabase(url, { max: 1 });
  try {
    const lacking = await database.run((sql) => pendingMigrations(sql, migrations), 5000);
    pending = lacking.map((migration) => migration.file);
    if (pending.length > 0) {
      notes.push(
        `the database at ${displayUrl} lacks ${
          pending.join(", ")
        }: apply them with supabase db push`,
      );
    }
  } catch (error) {
    notes.push(`could not read the migration history of ${displayUrl}: ${describe(error)}`);
  } finally {
    await database.close(1);
  }
  return { kind: "external", displayUrl, dataDir: null, created: false, applied: [], pending };
}
