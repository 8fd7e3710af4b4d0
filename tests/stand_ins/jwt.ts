/**
 * JWT helpers for the Auth stand-in and for tests that need to forge tokens
 * (alg none, tampered payloads, non-JSON segments). WebCrypto only.
 */

const encoder = new TextEncoder();

/** base64url without padding, of bytes or of a string's UTF-8 encoding. */
export function base64url(input: Uint8Array | ArrayBuffer | string): string {
  const bytes = typeof input === "string"
    ? encoder.encode(input)
    : input instanceof Uint8Array
    ? input
    : new Uint8Array(input);
  let bin = "";
  for (let i = 0; i < bytes.byteLength; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decodes base64url (padding optional); throws on invalid input. */
export function base64urlDecode(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) {
    throw new Error("illegal base64url data");
  }
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") +
    "=".repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * Builds `header.payload.signature` without signing. Objects are JSON-encoded,
 * strings are used verbatim (so a test can put non-JSON or non-base64 text in
 * a segment). `signature` defaults to empty, as in an `alg: none` token.
 */
export function forgeToken(
  header: Record<string, unknown> | string,
  payload: Record<string, unknown> | string,
  signature: Uint8Array | string = "",
): string {
  const seg = (v: Record<string, unknown> | string) =>
    typeof v === "string" ? v : base64url(JSON.stringify(v));
  const sig = typeof signature === "string" ? signature : base64url(signature);
  return `${seg(header)}.${seg(payload)}.${sig}`;
}

/** The three decoded parts of a JWT, or undefined when it is not one. */
export interface DecodedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: Uint8Array;
  signature: Uint8Array;
}

/** Why a token cannot be decoded, in golang-jwt's words (what GoTrue reports). */
export class MalformedJwt extends Error {}

/** Decodes without verifying; throws MalformedJwt with golang-jwt's message. */
export function decodeJwt(token: string): DecodedJwt {
  const parts = token.split(".");
  if (parts.length !== 3) {
    throw new MalformedJwt(
      "token is malformed: token contains an invalid number of segments",
    );
  }
  const [h, p, s] = parts as [string, string, string];
  const json = (seg: string, what: string): Record<string, unknown> => {
    let bytes: Uint8Array;
    try {
      bytes = base64urlDecode(seg);
    } catch {
      throw new MalformedJwt(`token is malformed: could not base64 decode ${what}`);
    }
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new MalformedJwt(`token is malformed: could not JSON decode ${what}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new MalformedJwt(`token is malformed: could not JSON decode ${what}`);
    }
    return v as Record<string, unknown>;
  };
  const header = json(h, "header");
  const payload = json(p, "claim");
  let signature: Uint8Array;
  try {
    signature = base64urlDecode(s);
  } catch {
    throw new MalformedJwt("token is malformed: could not base64 decode signature");
  }
  return { header, payload, signingInput: encoder.encode(`${h}.${p}`), signature };
}

/** An HMAC-SHA256 key for HS256 from a secret (string secrets are UTF-8 bytes, as in GoTrue). */
export function hmacKey(secret: string | Uint8Array): Promise<CryptoKey> {
  const raw = typeof secret === "string" ? encoder.encode(secret) : secret.slice();
  return crypto.subtle.importKey(
    "raw",
    raw,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** Signs header+payload with HS256. */
export async function signHs(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  secret: string | Uint8Array,
): Promise<string> {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const sig = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(secret),
    encoder.encode(input),
  );
  return `${input}.${base64url(sig)}`;
}

/** Signs header+payload with ES256 (WebCrypto's ECDSA output is already JWS's raw r||s). */
export async function signEs(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: CryptoKey,
): Promise<string> {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const sig = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    encoder.encode(input),
  );
  return `${input}.${base64url(sig)}`;
}
