/**
 * Token verification through `@supabase/supabase-js`: `auth.getClaims` checks
 * ES256/RS256 tokens locally against the project's (cached) JWKS and asks
 * Supabase Auth (`/auth/v1/user`) about HS256 tokens and unknown key ids.
 * @module
 */
import { createClient } from "@supabase/supabase-js";
import type { Jwks } from "../settings.ts";
import { decodeHeader, decodePayload, type Identity, identityFromPayload } from "./claims.ts";
import { isJwksVerified, VerifiedTokenCache } from "./verified_cache.ts";

/** The outcome of verifying a token. */
export type Verification =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly error: "invalid_token" | "forbidden" | "auth_unavailable" };

/** Verifies an access token; never throws. */
export type TokenVerifier = (token: string) => Verification | Promise<Verification>;

/** What {@linkcode createTokenVerifier} needs. */
export interface VerifierOptions {
  readonly supabaseUrl: string;
  readonly supabaseKey: string;
  readonly jwks: Jwks | null;
  readonly allowedRoles: readonly string[];
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /**
   * How long one request to Supabase Auth may take before the token is
   * refused as `auth_unavailable`.
   * @default 5000
   */
  readonly authTimeoutMs?: number;
  /** Remembers JWKS-verified tokens for reconnects. @default a new cache */
  readonly cache?: VerifiedTokenCache;
}

/** Creates the verifier the relay uses for every upgrade. */
export function createTokenVerifier(options: VerifierOptions): TokenVerifier {
  const baseFetch = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.authTimeoutMs ?? 5000;
  const client = createClient(options.supabaseUrl, options.supabaseKey, {
    auth: {
      persistSession: false,
      autoRefreshToken: false,
      detectSessionInUrl: false,
      // supabase-js caches JWKS per storage key for the whole process; a key of
      // our own keeps relays built for different projects (or tests) apart.
      storageKey: `relay-${crypto.randomUUID()}`,
    },
    global: { fetch: withTimeout(baseFetch, timeoutMs) },
  });
  // SUPABASE_JWKS spares a key fetch; supabase-js types JWKs more narrowly than WebCrypto.
  const claimsOptions = (options.jwks ? { jwks: options.jwks } : {}) as Parameters<
    typeof client.auth.getClaims
  >[1];

  const cache = options.cache ?? new VerifiedTokenCache();

  // A remembered token is answered at once (no promise): the reconnect path.
  return (token) => {
    const cached = cache.get(token);
    return cached ? { ok: true, identity: cached } : verifyAfresh(token);
  };

  async function verifyAfresh(token: string): Promise<Verification> {
    // Checked before verifying: Auth answers tokens without a user (anon and
    // service-role keys) with 403 bad_jwt, which would read as invalid_token.
    const claimed = identityFromPayload(decodePayload(token), options.allowedRoles);
    if (claimed === "malformed") return { ok: false, error: "invalid_token" };
    if (claimed === "forbidden") return { ok: false, error: "forbidden" };
    try {
      const { data, error } = await client.auth.getClaims(token, claimsOptions);
      if (error || !data) return { ok: false, error: classifyAuthError(error) };
      const verified = identityFromPayload(
        data.claims as Record<string, unknown>,
        options.allowedRoles,
      );
      if (typeof verified === "string") return { ok: false, error: "forbidden" };
      if (isJwksVerified(decodeHeader(token))) cache.set(token, verified);
      return { ok: true, identity: verified };
    } catch {
      // getClaims throws (rather than returning an error) on some malformed
      // tokens, e.g. an unknown `alg`: that is still the token's fault.
      return { ok: false, error: "invalid_token" };
    }
  }
}

/**
 * Whether a supabase-js auth error means the token is bad or that Auth could
 * not answer. Network failures, timeouts, 5xx and unparseable answers are
 * Auth's fault (retryable); any other answer from Auth rejects the token.
 */
export function classifyAuthError(error: unknown): "invalid_token" | "auth_unavailable" {
  if (typeof error !== "object" || error === null) return "invalid_token";
  const { name, status } = error as { name?: unknown; status?: unknown };
  if (name === "AuthRetryableFetchError" || name === "AuthUnknownError") return "auth_unavailable";
  if (typeof status === "number" && status >= 500) return "auth_unavailable";
  return "invalid_token";
}

/** A fetch that gives up after `ms` waiting for response headers. */
function withTimeout(baseFetch: typeof fetch, ms: number): typeof fetch {
  return async (input, init) => {
    const controller = new AbortController();
    const callerSignal = (init as RequestInit | undefined)?.signal;
    callerSignal?.addEventListener("abort", () => controller.abort(callerSignal.reason));
    const timer = setTimeout(() => controller.abort(new Error("auth request timed out")), ms);
    try {
      return await baseFetch(input, { ...init, signal: controller.signal });
    } finally {
      clearTimeout(timer);
    }
  };
}
