/**
 * Money, as pure functions: a metered event's usage and a model's prices in,
 * integer micro-dollars out (CONTRACT.md "Metering and budgets", "Cost").
 *
 * Prices are USD per 1M tokens, which is the same number as micro-dollars per
 * token. Each price is scaled to an integer (millionths of a micro-dollar per
 * token), token counts are multiplied and summed as BigInt, and the total is
 * rounded to whole micros once per event: no float is ever summed.
 * @module
 */
import type { ModelPrices, PriceTable, TokenPriceKey } from "./prices.ts";

/** A usage object as OpenAI sent it (`response.usage`, or a transcription's `usage`). */
export type Usage = Readonly<Record<string, unknown>>;

/** Tokens by the price key they are charged at. */
export type TokenCounts = Readonly<Record<TokenPriceKey, number>>;

const SCALE = 1_000_000n;

/** A whole, non-negative token count, or 0 for anything else (absent, negative, fractional). */
function count(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

function object(value: unknown): Readonly<Record<string, unknown>> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
}

function zero(): Record<TokenPriceKey, number> {
  return {
    text_input: 0,
    cached_text_input: 0,
    text_output: 0,
    audio_input: 0,
    cached_audio_input: 0,
    audio_output: 0,
    image_input: 0,
    cached_image_input: 0,
  };
}

/**
 * A `response.done` usage split by price key. Cached counts come out of the
 * input counts of their kind (OpenAI's `text_tokens` include the cached text
 * tokens). Input or output tokens the details do not account for are charged
 * as text, and with no details at all every input token is text input.
 */
export function responseTokens(usage: Usage): TokenCounts {
  const tokens = zero();
  const input = object(usage.input_token_details);
  const inputTotal = count(usage.input_tokens);
  if (input === null) {
    tokens.text_input = inputTotal;
  } else {
    const cached = object(input.cached_tokens_details);
    const text = count(input.text_tokens);
    const audio = count(input.audio_tokens);
    const image = count(input.image_tokens);
    // Without a breakdown, cached tokens are taken as text: the kind that
    // can be cached in every model.
    const cachedText = cached === null ? count(input.cached_tokens) : count(cached.text_tokens);
    const cachedAudio = cached === null ? 0 : count(cached.audio_tokens);
    const cachedImage = cached === null ? 0 : count(cached.image_tokens);
    tokens.cached_text_input = Math.min(cachedText, text);
    tokens.cached_audio_input = Math.min(cachedAudio, audio);
    tokens.cached_image_input = Math.min(cachedImage, image);
    tokens.text_input = text - tokens.cached_text_input +
      Math.max(0, inputTotal - text - audio - image);
    tokens.audio_input = audio - tokens.cached_audio_input;
    tokens.image_input = image - tokens.cached_image_input;
  }
  const output = object(usage.output_token_details);
  const outputTotal = count(usage.output_tokens);
  if (output === null) {
    tokens.text_output = outputTotal;
  } else {
    const text = count(output.text_tokens);
    const audio = count(output.audio_tokens);
    tokens.text_output = text + Math.max(0, outputTotal - text - audio);
    tokens.audio_output = audio;
  }
  return tokens;
}

/**
 * A transcription's `{"type":"tokens"}` usage split by price key: input as
 * audio (or by kind when detailed), output as text.
 */
export function transcriptionTokens(usage: Usage): TokenCounts {
  const tokens = zero();
  const input = object(usage.input_token_details);
  const inputTotal = count(usage.input_tokens);
  if (input === null) {
    tokens.audio_input = inputTotal;
  } else {
    const text = count(input.text_tokens);
    const audio = count(input.audio_tokens);
    tokens.text_input = text;
    tokens.audio_input = audio + Math.max(0, inputTotal - text - audio);
  }
  tokens.text_output = count(usage.output_tokens);
  return tokens;
}

/** A price in USD per 1M tokens (= micros per token) as millionths of a micro per token. */
function scaled(price: number | undefined): bigint {
  return price === undefined || !Number.isFinite(price) || price <= 0
    ? 0n
    : BigInt(Math.round(price * 1_000_000));
}

/** Rounds `units / divisor` half up, to a whole number. */
function roundDiv(units: bigint, divisor: bigint): number {
  return Number((units + divisor / 2n) / divisor);
}

/** What `tokens` cost at `prices`, in whole micros (a missing price counts as 0). */
export function tokensCostMicros(tokens: TokenCounts, prices: ModelPrices): number {
  let units = 0n;
  for (const [key, n] of Object.entries(tokens) as [TokenPriceKey, number][]) {
    if (n > 0) units += BigInt(n) * scaled(prices[key]);
  }
  return roundDiv(units, SCALE);
}

/** What `seconds` of audio cost at `perMinute` USD, in whole micros. */
export function durationCostMicros(seconds: number, perMinute: number): number {
  if (!Number.isFinite(seconds) || seconds <= 0) return 0;
  if (!Number.isFinite(perMinute) || perMinute <= 0) return 0;
  const ms = BigInt(Math.round(seconds * 1000));
  // USD per minute as millionths of a micro per minute; a minute is 60,000 ms.
  const perMinuteUnits = BigInt(Math.round(perMinute * 1e12));
  return roundDiv(ms * perMinuteUnits, 60_000n * SCALE);
}

/** A priced event: what it cost and the model whose prices were used. */
export interface PricedEvent {
  readonly model: string;
  readonly costMicros: number;
  /** `false` when no entry had the prices this usage needs (then the cost is 0). */
  readonly priced: boolean;
}

/** A `response.done`'s cost with the session model's prices. */
export function priceResponse(usage: Usage, model: string, table: PriceTable): PricedEvent {
  const prices = table[model];
  if (prices === undefined) return { model, costMicros: 0, priced: false };
  return { model, costMicros: tokensCostMicros(responseTokens(usage), prices), priced: true };
}

/**
 * A transcription's cost: with the session's transcription model's entry when
 * it can price this kind of usage (`per_minute` for `{"type":"duration"}`,
 * token prices otherwise), else with the session model's.
 */
export function priceTranscription(
  usage: Usage,
  transcriptionModel: string | null,
  sessionModel: string,
  table: PriceTable,
): PricedEvent {
  const duration = usage.type === "duration";
  const candidates = transcriptionModel === null
    ? [sessionModel]
    : [transcriptionModel, sessionModel];
  for (const model of candidates) {
    const prices = table[model];
    if (prices === undefined) continue;
    if (duration && prices.per_minute !== undefined) {
      const seconds = typeof usage.seconds === "number" ? usage.seconds : 0;
      return { model, costMicros: durationCostMicros(seconds, prices.per_minute), priced: true };
    }
    if (!duration && (prices.audio_input !== undefined || prices.text_output !== undefined)) {
      return {
        model,
        costMicros: tokensCostMicros(transcriptionTokens(usage), prices),
        priced: true,
      };
    }
  }
  return { model: transcriptionModel ?? sessionModel, costMicros: 0, priced: false };
}
