/**
 * Structured telemetry: one JSON object per line with `event` and `ts`.
 * Callers pass metadata only; no token, key or message payload is ever given
 * to this module, so none can reach a log line.
 * @module
 */
import type { LogLevel } from "../settings.ts";

/** Field values a telemetry event may carry. */
export type Fields = Readonly<Record<string, string | number | boolean | null | object>>;

/** Emits telemetry events. */
export interface Telemetry {
  /** Whether per-message debug events are wanted (checked before building them). */
  readonly debugEnabled: boolean;
  info(event: string, fields: Fields): void;
  debug(event: string, fields: Fields): void;
  error(event: string, fields: Fields): void;
}

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Creates a telemetry sink writing JSON lines through `write` (default: stdout). */
export function createTelemetry(
  level: LogLevel,
  write: (line: string) => void = (line) => console.log(line),
  now: () => number = Date.now,
): Telemetry {
  const emit = (at: LogLevel, event: string, fields: Fields) => {
    if (RANK[at] < RANK[level]) return;
    // Spliced rather than spread into a new object: three lines per
    // connection made that copy part of the handshake's cost.
    const rest = JSON.stringify(fields);
    const head = `{"event":${JSON.stringify(event)},"ts":"${new Date(now()).toISOString()}"`;
    write(rest.length > 2 ? `${head},${rest.slice(1)}` : `${head}}`);
  };
  return {
    debugEnabled: level === "debug",
    info: (event, fields) => emit("info", event, fields),
    debug: (event, fields) => emit("debug", event, fields),
    error: (event, fields) => emit("error", event, fields),
  };
}
