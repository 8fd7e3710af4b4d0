/**
 * Prices per model, in US dollars per million tokens (CONTRACT.md "Metering
 * and budgets"): built in for the models the relay knows, overridden or
 * extended by `RELAY_PRICES`.
 * @module
 */

/** The token kinds OpenAI reports, each priced separately. */
export const TOKEN_PRICE_KEYS = [
  "text_input",
  "cached_text_input",
  "text_output",
  "audio_input",
  "cached_audio_input",
  "audio_output",
  "image_input",
  "cached_image_input",
] as const;

/** One token kind's price key. */
export type TokenPriceKey = typeof TOKEN_PRICE_KEYS[number];

/** Every key a price entry may have: token kinds, and `per_minute` for duration-priced transcription. */
export type PriceKey = TokenPriceKey | "per_minute";

/** A model's prices: USD per 1M tokens by kind, and USD per minute for duration usage. */
export type ModelPrices = Readonly<Partial<Record<PriceKey, number>>>;

/** Prices by model name. */
export type PriceTable = Readonly<Record<string, ModelPrices>>;

const PRICE_KEYS: readonly PriceKey[] = [...TOKEN_PRICE_KEYS, "per_minute"];

/** When and where the built-in prices were read. */
export const BUILT_IN_PRICES_SOURCE = {
  taken: "2026-12-01",
  from:
    "OpenAI's model pages (developers.openai.com/api/docs/models/<model>: gpt-realtime-1.5, gpt-realtime-2, gpt-realtime-2.1, gpt-realtime-2.1-mini, gpt-4o-transcribe, gpt-realtime-whisper) and the pricing page's transcription table (text and audio tokens of gpt-4o-transcribe and gpt-4o-mini-transcribe, whisper-1 per minute)",
} as const;

/** gpt-realtime (GA, 2025-08-28) and gpt-realtime-1.5: same prices on both pages. */
const REALTIME: ModelPrices = {
  text_input: 4,
  cached_text_input: 0.4,
  text_output: 16,
  audio_input: 32,
  cached_audio_input: 0.4,
  audio_output: 64,
  image_input: 5,
  cached_image_input: 0.5,
};

/** gpt-realtime-2 and gpt-realtime-2.1: text output costs more, the rest as gpt-realtime. */
const REALTIME_2: ModelPrices = { ...REALTIME, text_output: 24 };

/** gpt-realtime-mini (and its snapshots) and gpt-realtime-2.1-mini. */
const REALTIME_MINI: ModelPrices = {
  text_input: 0.6,
  cached_text_input: 0.06,
  text_output: 2.4,
  audio_input: 10,
  cached_audio_input: 0.3,
  audio_output: 20,
  image_input: 0.8,
  cached_image_input: 0.08,
};

/** Built-in prices (see {@linkcode BUILT_IN_PRICES_SOURCE}). */
export const BUILT_IN_PRICES: PriceTable = Object.freeze({
  "gpt-realtime": REALTIME,
  "gpt-realtime-2025-08-28": REALTIME,
  "gpt-realtime-1.5": REALTIME,
  "gpt-realtime-2": REALTIME_2,
  "gpt-realtime-2.1": REALTIME_2,
  "gpt-realtime-mini": REALTIME_MINI,
  "gpt-realtime-mini-2025-10-06": REALTIME_MINI,
  "gpt-realtime-mini-2025-12-15": REALTIME_MINI,
  "gpt-realtime-2.1-mini": REALTIME_MINI,
  // Transcription of the user's audio in a Realtime session, reported as
  // token usage: audio input, text (prompt) input, text output.
  "gpt-4o-transcribe": { text_input: 2.5, audio_input: 6, text_output: 10 },
  "gpt-4o-mini-transcribe": { text_input: 1.25, audio_input: 3, text_output: 5 },
  // Reported as duration usage.
  "whisper-1": { per_minute: 0.006 },
  "gpt-realtime-whisper": { per_minute: 0.017 },
});

/** The built-in table with `RELAY_PRICES` applied, or the problems that stop it. */
export interface ResolvedPrices {
  readonly table: PriceTable;
  readonly problems: readonly string[];
}

/**
 * Applies a `RELAY_PRICES` value (JSON `{"<model>":{"text_input":4,...}}`) to
 * the built-in table: key by key for a known model; a new model must give all
 * eight token keys, or `per_minute`.
 */
export function resolvePrices(raw: string | undefined): ResolvedPrices {
  if (raw === undefined || raw.trim() === "") return { table: BUILT_IN_PRICES, problems: [] };
  const problems: string[] = [];
  const fail = (problem: string) => {
    problems.push(`RELAY_PRICES: ${problem}`);
    return { table: BUILT_IN_PRICES, problems };
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return fail('not JSON; expected {"<model>":{"text_input":4,...}} in USD per 1M tokens');
  }
  if (!isPlainObject(parsed)) return fail('expected a JSON object {"<model>":{...}}');
  const table: Record<string, ModelPrices> = { ...BUILT_IN_PRICES };
  for (const [model, entry] of Object.entries(parsed)) {
    if (!isPlainObject(entry)) {
      problems.push(`RELAY_PRICES: "${model}" is not an object of prices`);
      continue;
    }
    const prices: Partial<Record<PriceKey, number>> = {};
    for (const [key, value] of Object.entries(entry)) {
      if (!(PRICE_KEYS as readonly string[]).includes(key)) {
        problems.push(
          `RELAY_PRICES: "${model}" has unknown key "${key}"; expected ${PRICE_KEYS.join(", ")}`,
        );
      } else if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
        problems.push(`RELAY_PRICES: "${model}".${key} is not a price >= 0 (USD per 1M tokens)`);
      } else {
        prices[key as PriceKey] = value;
      }
    }
    const builtIn = BUILT_IN_PRICES[model];
    if (builtIn === undefined && prices.per_minute === undefined) {
      const missing = TOKEN_PRICE_KEYS.filter((key) => !(key in entry));
      if (missing.length > 0) {
        problems.push(
          `RELAY_PRICES: "${model}" has no built-in price and lacks ${missing.join(", ")}`,
        );
      }
    }
    table[model] = Object.freeze({ ...builtIn, ...prices });
  }
  return { table: Object.freeze(table), problems };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
