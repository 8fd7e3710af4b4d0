/**
 * The relay's settings: read once from the environment, validated, frozen.
 * Nothing else in the relay reads `Deno.env`.
 * @module
 */

/** How much the relay writes to stdout. */
export type LogLevel = "debug" | "info" | "warn" | "error";

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
}

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
  };
  if (problems.length > 0) throw new SettingsError(problems);
  return Object.freeze(settings);
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
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed !== "object" || parsed === null) return null;
    const value = (parsed as Record<string, unknown>).default;
    return typeof value === "string" && value.trim() ? value.trim() : null;
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
