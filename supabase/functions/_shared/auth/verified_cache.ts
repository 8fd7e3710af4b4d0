/**
 * Remembers tokens whose signature was checked locally against the project's
 * public keys, so a client that reconnects with the same token (the common
 * case: a dropped socket, a 1012 restart) skips the ECDSA/RSA verification.
 * @module
 */
import type { Identity } from "./claims.ts";

/** What {@linkcode VerifiedTokenCache} keeps, and for how long. */
export interface VerifiedCacheOptions {
  /** Most tokens kept; the oldest goes first. @default 1000 */
  readonly maxEntries?: number;
  /**
   * Longest a verification is trusted, whatever the token's `exp`: the same
   * bound supabase-js puts on its JWKS cache, so a withdrawn key stops working
   * as soon as it would without this cache. @default 600000
   */
  readonly maxAgeMs?: number;
  /** Milliseconds since the epoch. @default Date.now */
  readonly now?: () => number;
}

/** Whether a token is checked against the JWKS (asymmetric, with a key id): only those are cached. */
export function isJwksVerified(header: Record<string, unknown> | null): boolean {
  const alg = header?.alg;
  return typeof alg === "string" && /^(ES|RS|PS)\d+$|^EdDSA$/.test(alg) &&
    typeof header?.kid === "string";
}

/**
 * Verified identities by token, each until the earlier of its `exp` and
 * `maxAgeMs` after it was verified. HS256 tokens are never cached: Supabase
 * Auth checks their session on every connection.
 */
export class VerifiedTokenCache {
  readonly #entries = new Map<string, { identity: Identity; until: number }>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(options: VerifiedCacheOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 1000;
    this.#maxAgeMs = options.maxAgeMs ?? 600_000;
    this.#now = options.now ?? Date.now;
  }

  /** The identity verified for `token`, if still trusted. */
  get(token: string): Identity | undefined {
    const entry = this.#entries.get(token);
    if (!entry) return undefined;
    if (entry.until <= this.#now()) {
      this.#entries.delete(token);
      return undefined;
    }
    return entry.identity;
  }

  /** Remembers a verified token (tokens without `exp` are not kept). */
  set(token: string, identity: Identity): void {
    if (identity.exp === null) return;
    const until = Math.min(identity.exp * 1000, this.#now() + this.#maxAgeMs);
    this.#entries.delete(token);
    this.#entries.set(token, { identity, until });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  /** Tokens held. */
  get size(): number {
    return this.#entries.size;
  }
}
