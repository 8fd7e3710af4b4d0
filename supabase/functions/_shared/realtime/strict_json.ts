/**
 * A strict reader for client events under a session policy (CONTRACT.md
 * "Session policy"): it accepts only JSON texts that every JSON parser reads
 * the same way, so the event the policy checks is the event OpenAI acts on.
 *
 * `JSON.parse` builds the value; a small tokenizer runs first over the same
 * text and refuses what parsers are known to read differently
 * (the usual JSON interoperability gaps):
 *
 * - duplicate keys at any depth, compared after unescaping and case folding
 *   (`"instr\u0075ctions"` and `"Instructions"` both duplicate `"instructions"`:
 *   parsers differ on first-wins or last-wins, and Go's matches struct fields
 *   case-insensitively);
 * - keys holding a lone surrogate or a control character (parsers replace,
 *   drop or truncate at them, so two distinct keys can collide);
 * - lone surrogates anywhere (escaped or not);
 * - numbers a 64-bit float cannot hold exactly in their shortest form
 *   (`1e400`, `12345678901234567890`, `1e-400`): a double-based and an
 *   arbitrary-precision parser would read different values;
 * - nesting deeper than {@linkcode MAX_DEPTH} (bounds the work, and no stack
 *   is blown here, in `JSON.parse` or in `JSON.stringify`).
 *
 * Work is linear in the text's length: string bodies are skipped with
 * `indexOf`, so a 40 KB base64 audio append costs a few native scans.
 * @module
 */

/** The deepest nesting of objects and arrays accepted. */
export const MAX_DEPTH = 64;

/** Why a text was refused. */
export type StrictJsonProblem =
  /** Not JSON at all. */
  | "invalid_json"
  /** JSON, but readable differently by another parser. */
  | "ambiguous_json"
  /** Nested deeper than {@linkcode MAX_DEPTH}. */
  | "too_deep";

/** What {@linkcode readStrictJson} found. */
export type StrictJson =
  | {
    readonly ok: true;
    /** The value, as `JSON.parse` built it. */
    readonly value: unknown;
    /**
     * The text to pass on: the original when it holds no escape sequence
     * (then every parser reads it as `value`), else `JSON.stringify(value)`.
     */
    readonly text: string;
  }
  | { readonly ok: false; readonly problem: StrictJsonProblem; readonly message: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const SHORT_INTEGER = /^-?[0-9]{1,15}$/;
const LOWER_ASCII_KEY = /^[a-z0-9_.\-]*$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The form two keys are compared in: Unicode case folding wide enough to
 * cover what case-insensitive matchers fold (`K` Kelvin sign to `k`, `ſ` to
 * `s`), so any such pair counts as the same key.
 */
export function foldKey(key: string): string {
  return LOWER_ASCII_KEY.test(key) ? key : key.toUpperCase().toLowerCase();
}

class Refused {
  constructor(readonly problem: StrictJsonProblem, readonly message: string) {}
}

const invalid = () => new Refused("invalid_json", "The message is not valid JSON.");

/**
 * Reads `text` as one JSON value, refusing anything another parser could
 * read differently (see the module summary).
 *
 * @example
 * ```ts
 * readStrictJson('{"a":1,"a":2}'); // { ok: false, problem: "ambiguous_json", ... }
 * ```
 */
export function readStrictJson(text: string, maxDepth: number = MAX_DEPTH): StrictJson {
  if (!text.isWellFormed()) {
    return refused(new Refused("ambiguous_json", "The message holds a lone surrogate."));
  }
  let escaped: boolean;
  try {
    escaped = scan(text, maxDepth);
  } catch (error) {
    if (error instanceof Refused) return refused(error);
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return refused(invalid());
  }
  return { ok: true, value, text: escaped ? JSON.stringify(value) : text };
}

function refused(error: Refused): StrictJson {
  return { ok: false, problem: error.problem, message: error.message };
}

/**
 * Walks the tokens of `text`, checking structure, keys, numbers and depth;
 * throws {@linkcode Refused}. Returns whether any string holds an escape.
 */
function scan(text: string, maxDepth: number): boolean {
  const length = text.length;
  /** Keys seen in each open object (folded); `null` for an array. */
  const open: (Set<string> | null)[] = [];
  let escaped = false;
  /** The next backslash at or after the current string, cached so each is searched for once. */
  let nextBackslash = -1;
  let at = skipSpace(text, 0);

  /** The index of the quote closing the string opened at `start`. */
  const stringEnd = (start: number): number => {
    let from = start + 1;
    for (;;) {
      const quote = text.indexOf('"', from);
      if (quote === -1) throw invalid();
      let before = quote - 1;
      while (before > start && text.charCodeAt(before) === BACKSLASH) before--;
      // An even run of backslashes escapes itself, not the quote.
      if ((quote - 1 - before) % 2 === 0) return quote;
      from = quote + 1;
    }
  };
  const hasEscape = (start: number, end: number): boolean => {
    if (nextBackslash !== Infinity && nextBackslash < start) {
      const found = text.indexOf("\\", start);
      nextBackslash = found === -1 ? Infinity : found;
    }
    return nextBackslash < end;
  };
  const decoded = (start: number, end: number): string => {
    try {
      return JSON.parse(text.slice(start, end + 1)) as string;
    } catch {
      throw invalid();
    }
  };

  for (;;) {
    // A value starts at `at`.
    const c = text.charCodeAt(at);
    let closedValue = true;
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (open.length >= maxDepth) {
        throw new Refused("too_deep", `The message is nested deeper than ${maxDepth} levels.`);
      }
      open.push(c === 0x7b ? new Set() : null);
      at = skipSpace(text, at + 1);
      const close = c === 0x7b ? 0x7d : 0x5d;
      if (text.charCodeAt(at) === close) {
        open.pop();
        at++;
      } else closedValue = false;
    } else if (c === QUOTE) {
      const end = stringEnd(at);
      if (hasEscape(at, end)) {
        escaped = true;
        if (!decoded(at, end).isWellFormed()) {
          throw new Refused("ambiguous_json", "A string holds a lone surrogate.");
        }
      }
      at = end + 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      NUMBER.lastIndex = at;
      const match = NUMBER.exec(text);
      if (match === null) throw invalid();
      checkNumber(match[0]);
      at += match[0].length;
    } else if (text.startsWith("true", at)) at += 4;
    else if (text.startsWith("false", at)) at += 5;
    else if (text.startsWith("null", at)) at += 4;
    else throw invalid();

    if (closedValue) {
      // After a value: a comma, or closing brackets, until the next value or the end.
      for (;;) {
        at = skipSpace(text, at);
        const top = open.length === 0 ? undefined : open[open.length - 1];
        if (top === undefined) {
          if (at !== length) throw invalid();
          return escaped;
        }
        const next = text.charCodeAt(at);
        if (next === 0x2c /* , */) {
          at = skipSpace(text, at + 1);
          if (top !== null) at = readKey(at, top);
          break;
        }
        if (next !== (top === null ? 0x5d : 0x7d)) throw invalid();
        open.pop();
        at++;
      }
    } else {
      const top = open[open.length - 1];
      if (top) at = readKey(at, top);
    }
  }

  /** Reads `"key":` at `start` into `keys`; returns where its value starts. */
  function readKey(start: number, keys: Set<string>): number {
    if (text.charCodeAt(start) !== QUOTE) throw invalid();
    const end = stringEnd(start);
    let key: string;
    if (hasEscape(start, end)) {
      escaped = true;
      key = decoded(start, end);
      if (!key.isWellFormed()) throw new Refused("ambiguous_json", "A key holds a lone surrogate.");
    } else key = text.slice(start + 1, end);
    if (CONTROL.test(key)) {
      throw new Refused("ambiguous_json", "A key holds a control character.");
    }
    const folded = foldKey(key);
    if (keys.has(folded)) {
      throw new Refused(
        "ambiguous_json",
        `The key ${quoteShort(key)} appears twice in one object (keys are compared unescaped and ` +
          "case-folded).",
      );
    }
    keys.add(folded);
    const colon = skipSpace(text, end + 1);
    if (text.charCodeAt(colon) !== 0x3a /* : */) throw invalid();
    return skipSpace(text, colon + 1);
  }
}

function skipSpace(text: string, from: number): number {
  let at = from;
  for (;;) {
    const c = text.charCodeAt(at);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) at++;
    else return at;
  }
}

/** Refuses a number whose value a double and an exact decimal reader would see differently. */
function checkNumber(literal: string): void {
  if (SHORT_INTEGER.test(literal)) return;
  const value = Number(literal);
  if (!Number.isFinite(value) || decimalOf(literal) !== decimalOf(String(value))) {
    throw new Refused(
      "ambiguous_json",
      "A number can not be held exactly by a 64-bit float (out of range or too precise).",
    );
  }
}

/**
 * A number's exact decimal value as `<digits>e<exponent>`, with no leading or
 * trailing zeros in the digits ("0" for zero, whatever its sign). Accepts
 * JSON literals and what `String(number)` writes (`1e+21`, `5e-324`).
 */
export function decimalOf(literal: string): string {
  let rest = literal;
  const negative = rest.startsWith("-");
  if (negative) rest = rest.slice(1);
  let exponent = 0;
  const e = rest.search(/[eE]/);
  if (e >= 0) {
    exponent = Number(rest.slice(e + 1));
    rest = rest.slice(0, e);
  }
  const dot = rest.indexOf(".");
  let digits = rest;
  if (dot >= 0) {
    digits = rest.slice(0, dot) + rest.slice(dot + 1);
    exponent -= rest.length - dot - 1;
  }
  let first = 0;
  while (first < digits.length && digits.charCodeAt(first) === 0x30) first++;
  let last = digits.length;
  while (last > first && digits.charCodeAt(last - 1) === 0x30) last--;
  if (first === last) return "0";
  exponent += digits.length - last;
  return `${negative ? "-" : ""}${digits.slice(first, last)}e${exponent}`;
}

/** `value` quoted for a message, cut to 40 characters. */
export function quoteShort(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}
