/**
 * The relay's settings: read once from the environment, validated, frozen.
 * Nothing else in the relay reads `Deno.env`.
 * @module
 */

import { type PriceTable, resolvePrices } from "./metering/prices.ts";
import { parseSessionPolicy, type SessionPolicy } from "./realtime/session_policy.ts";

export type { PriceTable } from "./metering/prices.ts";
export type { SessionPolicy } from "./realtime/session_policy.ts";

/** How much the relay writes to stdout. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** The period a budget applies to, in UTC. */
export type BudgetPeriod = "day" | "month";

/** A JSON Web Key Set as Supabase publishes it. */
export interface Jwks {
  keys: JsonWebKey[];
}

/** Validated settings; see CONTRACT.md "Settings" for each variable. */
export interface Settings {
  readonly supabaseUrl: string;
  /** The publishable (or legacy anon) key sent as `apikey` to Supabase Auth. */
  readonly supabaseKey: string;
  /** The project's public keys when the platform provides them (`SUPABASE_JWKS`). */
  readonly supabaseJwks: Jwks | null;
  /** `null` when unset: the OpenAI route then answers 503. */
  readonly openaiApiKey: string | null;
  readonly openaiRealtimeUrl: string;
  readonly openaiRealtimeModel: string;
  readonly openaiRealtimeModels: readonly string[];
  /**
   * Transcription models a client may choose (`audio.input.transcription.model`),
   * on `?intent=transcription` connections always, on conversations with metering on.
   */
  readonly openaiTranscriptionModels: readonly string[];
  /** `null` when unset: any origin. */
  readonly allowedOrigins: readonly string[] | null;
  readonly allowedRoles: readonly string[];
  readonly maxMessageBytes: number;
  readonly maxBufferedBytes: number;
  /** Client messages per second per connection (token bucket, burst twice this). */
  readonly rateLimit: number;
  readonly maxConnectionsPerUser: number;
  readonly maxConnections: number;
  /** Seconds; 0 disables the keepalive ping. */
  readonly idleTimeoutS: number;
  readonly upstreamTimeoutMs: number;
  readonly logLevel: LogLevel;
  /** Listening port under plain Deno. */
  readonly port: number;
  /** In-band close notices on the OpenAI route (`RELAY_CLOSE_NOTICES`). */
  readonly closeNotices: boolean;
  /** `null`: no policy, the OpenAI route stays byte-transparent. */
  readonly sessionPolicy: SessionPolicy | null;
  /** Per-user metering and budgets in Postgres (`RELAY_METERING=on`). */
  readonly metering: boolean;
  /** `RELAY_DATABASE_URL`, else `SUPABASE_DB_URL`; `null` when neither is set. */
  readonly databaseUrl: string | null;
  /** The default per-user limit per period in millionths of a dollar; `null`: none. */
  readonly budgetMicros: number | null;
  readonly budgetPeriod: BudgetPeriod;
  /** How often other instances' spend is read back, in seconds. */
  readonly budgetRefreshS: number;
  /** Built-in prices with `RELAY_PRICES` applied (USD per 1M tokens). */
  readonly prices: PriceTable;
  /** Live sessions per user across instances; `null`: no cap. */
  readonly maxUserSessions: number | null;
  /** Let connections through while the database is unreachable. */
  readonly meteringFailOpen: boolean;
  /** Resumable sessions (`RELAY_RESUME=on`). */
  readonly resume: boolean;
  /** Seconds a session's stored state outlives its last activity. */
  readonly resumeTtlS: number;
  /** Rooms (`RELAY_ROOMS`): off, every signed-in user may use every room, or access decided in SQL. */
  readonly rooms: RoomsMode;
  /** How instances meet in a room (`RELAY_ROOMS_BUS`): Supabase Realtime, or none (one instance alone). */
  readonly roomsBus: "realtime" | "off";
  /** Supabase Realtime's WebSocket endpoint (`ws(s)://.../realtime/v1`). */
  readonly realtimeUrl: string;
  /**
   * The project's secret key for the Realtime bus (the `default` entry of
   * `SUPABASE_SECRET_KEYS`, else `SUPABASE_SERVICE_ROLE_KEY`); `null` when neither is set.
   */
  readonly secretKey: string | null;
  /** Every secret or service-role key of the project: a server publishing into a room shows one. */
  readonly serverKeys: readonly string[];
  /** Members per room, counted across instances. */
  readonly roomMaxMembers: number;
  /** The largest room message a member or a server may send, in bytes. */
  readonly roomMaxMessageBytes: number;
  /** Broadcasts kept per room (`RELAY_ROOM_HISTORY`); 0: no history. */
  readonly roomHistory: number;
  /** Seconds a kept broadcast lives at most. */
  readonly roomHistoryTtlS: number;
}

/** Who may use rooms (`RELAY_ROOMS`). */
export type RoomsMode = "off" | "open" | "database";

/** Thrown by {@linkcode parseSettings} with every problem found, one per line. */
export class SettingsError extends Error {
  /** One sentence per bad variable. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid relay settings:\n  - ${problems.join("\n  - ")}`);
    this.name = "SettingsError";
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/**
 * Parses and validates the relay's settings from an environment map.
 * Collects every problem before throwing, so an operator fixes them in one go.
 *
 * @example
 * ```ts
 * const settings = parseSettings(Deno.env.toObject());
 * ```
 */
export function parseSettings(env: Env): Settings {
  const problems: string[] = [];
  const reader = new EnvReader(env, problems);

  const supabaseUrl = reader.url("SUPABASE_URL", ["http:", "https:"], null);
  const supabaseKey = readSupabaseKey(env, problems);
  const supabaseJwks = reader.jwks("SUPABASE_JWKS");
  const openaiRealtimeModel = reader.text("OPENAI_REALTIME_MODEL", "gpt-realtime");
  const settings: Settings = {
    supabaseUrl: supabaseUrl ?? "",
    supabaseKey: supabaseKey ?? "",
    supabaseJwks,
    openaiApiKey: reader.optionalText("OPENAI_API_KEY"),
    openaiRealtimeUrl:
      reader.url("OPENAI_REALTIME_URL", ["ws:", "wss:"], "wss://api.openai.com/v1/realtime") ??
        "",
    openaiRealtimeModel,
    openaiRealtimeModels: reader.list("OPENAI_REALTIME_MODELS") ?? [openaiRealtimeModel],
    openaiTranscriptionModels: reader.list("OPENAI_TRANSCRIPTION_MODELS") ??
      ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"],
    allowedOrigins: reader.list("RELAY_ALLOWED_ORIGINS"),
    allowedRoles: reader.list("RELAY_ALLOWED_ROLES") ?? ["authenticated"],
    maxMessageBytes: reader.integer("RELAY_MAX_MESSAGE_BYTES", 1_048_576, 1),
    maxBufferedBytes: reader.integer("RELAY_MAX_BUFFERED_BYTES", 4_194_304, 1),
    rateLimit: reader.integer("RELAY_RATE_LIMIT", 200, 1),
    maxConnectionsPerUser: reader.integer("RELAY_MAX_CONNECTIONS_PER_USER", 5, 1),
    maxConnections: reader.integer("RELAY_MAX_CONNECTIONS", 1000, 1),
    idleTimeoutS: reader.integer("RELAY_IDLE_TIMEOUT_S", 30, 0),
    upstreamTimeoutMs: reader.integer("RELAY_UPSTREAM_TIMEOUT_MS", 10_000, 1),
    logLevel: reader.choice("RELAY_LOG_LEVEL", LOG_LEVELS, "info"),
    port: reader.integer("PORT", 8000, 0, 65_535),
    ...readV2Settings(env, reader, problems),
    ...readRoomSettings(env, reader, supabaseUrl, problems),
  };
  checkV2Dependencies(settings, problems);
  checkRoomDependencies(settings, problems);
  if (problems.length > 0) throw new SettingsError(problems);
  return Object.freeze(settings);
}

type V2Settings = Pick<
  Settings,
  | "closeNotices"
  | "sessionPolicy"
  | "metering"
  | "databaseUrl"
  | "budgetMicros"
  | "budgetPeriod"
  | "budgetRefreshS"
  | "prices"
  | "maxUserSessions"
  | "meteringFailOpen"
  | "resume"
  | "resumeTtlS"
>;

function readV2Settings(env: Env, reader: EnvReader, problems: string[]): V2Settings {
  const policy = parseSessionPolicy(env.RELAY_SESSION_POLICY);
  problems.push(...policy.problems);
  const prices = resolvePrices(env.RELAY_PRICES);
  problems.push(...prices.problems);
  const databaseName = env.RELAY_DATABASE_URL?.trim() ? "RELAY_DATABASE_URL" : "SUPABASE_DB_URL";
  return {
    closeNotices: reader.toggle("RELAY_CLOSE_NOTICES", true),
    sessionPolicy: policy.policy,
    metering: reader.toggle("RELAY_METERING", false),
    databaseUrl: reader.databaseUrl(databaseName),
    budgetMicros: reader.dollarsAsMicros("RELAY_BUDGET_USD"),
    budgetPeriod: reader.choice("RELAY_BUDGET_PERIOD", ["day", "month"] as const, "day"),
    budgetRefreshS: reader.integer("RELAY_BUDGET_REFRESH_S", 5, 1),
    prices: prices.table,
    maxUserSessions: reader.optionalInteger("RELAY_MAX_USER_SESSIONS", 1),
    meteringFailOpen: reader.toggle("RELAY_METERING_FAIL_OPEN", false),
    resume: reader.toggle("RELAY_RESUME", false),
    resumeTtlS: reader.integer("RELAY_RESUME_TTL_S", 900, 1),
  };
}

/** Settings that only make sense together. */
function checkV2Dependencies(settings: Settings, problems: string[]): void {
  const needsDatabase = [
    settings.metering ? "RELAY_METERING=on" : null,
    settings.resume ? "RELAY_RESUME=on" : null,
  ].filter((name) => name !== null);
  if (needsDatabase.length > 0 && settings.databaseUrl === null) {
    problems.push(
      `RELAY_DATABASE_URL (or SUPABASE_DB_URL): not set; ${
        needsDatabase.join(" and ")
      } needs the project's Postgres (e.g. postgresql://postgres.<ref>:<password>@<pooler host>:6543/postgres)`,
    );
  }
  if (!settings.metering) {
    if (settings.budgetMicros !== null) {
      problems.push("RELAY_BUDGET_USD: set but RELAY_METERING is off; a budget needs metering on");
    }
    if (settings.maxUserSessions !== null) {
      problems.push(
        "RELAY_MAX_USER_SESSIONS: set but RELAY_METERING is off; the cap across instances needs metering on",
      );
    }
  } else if (settings.budgetMicros !== null) {
    const unpriced = [...settings.openaiRealtimeModels, ...settings.openaiTranscriptionModels]
      .filter((model) => !settings.prices[model]);
    if (unpriced.length > 0) {
      problems.push(
        `RELAY_PRICES: no price for ${
          unpriced.join(", ")
        } (in OPENAI_REALTIME_MODELS or OPENAI_TRANSCRIPTION_MODELS); with a budget every model a client can pick needs one`,
      );
    }
  }
}

type RoomSettings = Pick<
  Settings,
  | "rooms"
  | "roomsBus"
  | "realtimeUrl"
  | "secretKey"
  | "serverKeys"
  | "roomMaxMembers"
  | "roomMaxMessageBytes"
  | "roomHistory"
  | "roomHistoryTtlS"
>;

function readRoomSettings(
  env: Env,
  reader: EnvReader,
  supabaseUrl: string | null,
  problems: string[],
): RoomSettings {
  const serviceRoleKey = env.SUPABASE_SERVICE_ROLE_KEY?.trim() || null;
  const secretKeys = readSecretKeys(env, problems);
  const fallback = supabaseUrl === null ? null : `${supabaseUrl}/realtime/v1`;
  // Without SUPABASE_URL (already reported) there is nothing to fall back on.
  const realtimeUrl = fallback === null && !env.RELAY_REALTIME_URL?.trim()
    ? null
    : reader.url("RELAY_REALTIME_URL", ["ws:", "wss:", "http:", "https:"], fallback);
  return {
    rooms: reader.choice("RELAY_ROOMS", ["off", "open", "database"] as const, "off"),
    roomsBus: reader.choice("RELAY_ROOMS_BUS", ["realtime", "off"] as const, "realtime"),
    // RealtimeClient wants the socket's scheme; the gateway serves both on one origin.
    realtimeUrl: (realtimeUrl ?? "").replace(/^http/, "ws"),
    secretKey: secretKeys.default ?? serviceRoleKey,
    serverKeys: Object.freeze(
      [...secretKeys.all, ...(serviceRoleKey ? [serviceRoleKey] : [])],
    ),
    roomMaxMembers: reader.integer("RELAY_ROOM_MAX_MEMBERS", 1000, 1),
    roomMaxMessageBytes: reader.integer("RELAY_ROOM_MAX_MESSAGE_BYTES", 65_536, 1),
    roomHistory: reader.integer("RELAY_ROOM_HISTORY", 0, 0),
    roomHistoryTtlS: reader.integer("RELAY_ROOM_HISTORY_TTL_S", 86_400, 1),
  };
}

/** `SUPABASE_SECRET_KEYS` (`{"default":"sb_secret_...", ...}`): its default entry and every key. */
function readSecretKeys(
  env: Env,
  problems: string[],
): { default: string | null; all: string[] } {
  const json = env.SUPABASE_SECRET_KEYS?.trim();
  if (!json) return { default: null, all: [] };
  const entries = jsonObject(json);
  const all = entries === null
    ? []
    : Object.values(entries).filter((key): key is string => typeof key === "string" && key !== "");
  const first = entries?.default;
  if (typeof first !== "string" || first.trim() === "") {
    // Never echoed: the value is a secret.
    problems.push(
      'SUPABASE_SECRET_KEYS: not a JSON object with a "default" key; expected {"default":"sb_secret_..."} (its value is not shown)',
    );
    return { default: null, all };
  }
  return { default: first.trim(), all: all.map((key) => key.trim()) };
}

function checkRoomDependencies(settings: Settings, problems: string[]): void {
  if (settings.rooms === "off") {
    if (settings.roomHistory > 0) {
      problems.push("RELAY_ROOM_HISTORY: set but RELAY_ROOMS is off; history needs rooms on");
    }
    return;
  }
  const needsDatabase = [
    settings.rooms === "database" ? "RELAY_ROOMS=database decides access" : null,
    settings.roomHistory > 0 ? "RELAY_ROOM_HISTORY keeps broadcasts" : null,
  ].filter((need) => need !== null);
  if (needsDatabase.length > 0 && settings.databaseUrl === null) {
    problems.push(
      `RELAY_DATABASE_URL (or SUPABASE_DB_URL): not set; ${
        needsDatabase.join(" and ")
      } in the project's Postgres`,
    );
  }
  if (settings.roomsBus === "realtime" && settings.secretKey === null) {
    problems.push(
      "SUPABASE_SECRET_KEYS or SUPABASE_SERVICE_ROLE_KEY: neither is set; rooms meet across instances through Supabase Realtime with the project's secret key (or set RELAY_ROOMS_BUS=off for one instance alone)",
    );
  }
}

function readSupabaseKey(env: Env, problems: string[]): string | null {
  const keys = env.SUPABASE_PUBLISHABLE_KEYS?.trim();
  if (keys) {
    const fromJson = defaultEntry(keys);
    if (fromJson) return fromJson;
    problems.push(
      'SUPABASE_PUBLISHABLE_KEYS: not a JSON object with a "default" key; expected {"default":"sb_publishable_..."}',
    );
    return null;
  }
  const single = env.SUPABASE_PUBLISHABLE_KEY?.trim() || env.SUPABASE_ANON_KEY?.trim();
  if (single) return single;
  problems.push(
    "SUPABASE_PUBLISHABLE_KEYS, SUPABASE_PUBLISHABLE_KEY or SUPABASE_ANON_KEY: none is set; one is required (the project's publishable key)",
  );
  return null;
}

function defaultEntry(json: string): string | null {
  const value = jsonObject(json)?.default;
  return typeof value === "string" && value.trim() ? value.trim() : null;
}

function jsonObject(json: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(json);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? parsed as Record<string, unknown>
      : null;
  } catch {
    return null;
  }
}

/** Reads one variable at a time, recording a problem instead of throwing. */
class EnvReader {
  constructor(private readonly env: Env, private readonly problems: string[]) {}

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  text(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optionalText(name: string): string | null {
    return this.raw(name) ?? null;
  }

  integer(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
    if (Number.isSafeInteger(parsed) && parsed >= min && parsed <= max) return parsed;
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    this.problems.push(
      `${name}: "${value}" is not a whole number ${range}; expected e.g. ${fallback}`,
    );
    return fallback;
  }

  optionalInteger(name: string, min: number): number | null {
    return this.raw(name) === undefined ? null : this.integer(name, min, min);
  }

  /** `on`/`off` (also `true`/`false`). */
  toggle(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (value === "on" || value === "true") return true;
    if (value === "off" || value === "false") return false;
    this.problems.push(`${name}: "${value}" is not on or off (true or false)`);
    return fallback;
  }

  /** A dollar amount such as `0.50`, as whole millionths of a dollar. */
  dollarsAsMicros(name: string): number | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    const match = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(value);
    if (match) return Number(match[1]) * 1_000_000 + Number((match[2] ?? "").padEnd(6, "0"));
    this.problems.push(
      `${name}: "${value}" is not an amount in US dollars with at most 6 decimals; expected e.g. 0.50`,
    );
    return null;
  }

  /** A Postgres connection URL; the password never appears in a problem. */
  databaseUrl(name: string): string | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    try {
      const url = new URL(value);
      if (url.protocol === "postgres:" || url.protocol === "postgresql:") return value;
    } catch {
      // reported below
    }
    this.problems.push(
      `${name}: not a postgresql:// URL (its value is not shown: it may hold a password)`,
    );
    return null;
  }

  list(name: string): readonly string[] | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    const items = value.split(",").map((item) => item.trim()).filter((item) => item !== "");
    if (items.length > 0) return Object.freeze(items);
    this.problems.push(`${name}: "${value}" has no entries; expected a comma-separated list`);
    return null;
  }

  choice<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const match = choices.find((choice) => choice === value.toLowerCase());
    if (match) return match;
    this.problems.push(`${name}: "${value}" is not one of ${choices.join(", ")}`);
    return fallback;
  }

  url(name: string, protocols: readonly string[], fallback: string | null): string | null {
    const value = this.raw(name) ?? fallback;
    if (value === null) {
      this.problems.push(`${name}: not set; required (e.g. https://<project>.supabase.co)`);
      return null;
    }
    try {
      const url = new URL(value);
      if (protocols.includes(url.protocol)) return value.replace(/\/+$/, "");
    } catch {
      // reported below
    }
    this.problems.push(`${name}: "${value}" is not a ${protocols.join(" or ")} URL`);
    return null;
  }

  jwks(name: string): Jwks | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    try {
      const parsed: unknown = JSON.parse(value);
      const keys = (parsed as { keys?: unknown } | null)?.keys;
      if (Array.isArray(keys) && keys.every((key) => typeof key === "object" && key !== null)) {
        return { keys: keys as JsonWebKey[] };
      }
    } catch {
      // reported below
    }
    this.problems.push(`${name}: not a JWKS document; expected {"keys":[...]}`);
    return null;
  }
}
