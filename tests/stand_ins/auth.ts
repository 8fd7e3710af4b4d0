/**
 * A local Supabase Auth (GoTrue behind the API gateway), faithful in what
 * supabase-js's `auth.getClaims()` touches: the JWKS document, `GET /user`
 * with GoTrue's error codes and messages (in both API-version shapes), the
 * gateway's API-key checks, and failure modes (down, slow, malformed, refused).
 */

import { base64url, decodeJwt, hmacKey, MalformedJwt, signEs, signHs } from "./jwt.ts";

export { base64url, base64urlDecode, decodeJwt, forgeToken } from "./jwt.ts";

/** Failure modes; "refuse" stops listening (connection refused) until another mode is set. */
export type AuthMode = "up" | "down" | "slow" | "malformed" | "refuse";

/** A signed-in session as GoTrue's token endpoint returns it (without refresh token). */
export interface DevSession {
  access_token: string;
  token_type: "bearer";
  expires_in: number;
  expires_at: number;
  user: Record<string, unknown>;
}

/** The running stand-in. */
export interface AuthStandIn {
  /** SUPABASE_URL, e.g. "http://127.0.0.1:54321" (Auth lives under /auth/v1). */
  readonly url: string;
  readonly port: number;
  /** The API key to send as `apikey` (sb_publishable_...). */
  readonly publishableKey: string;
  /** Legacy anon key: HS256 JWT, role anon, no sub. */
  readonly anonKey: string;
  /** Legacy service-role key: HS256 JWT, role service_role, no sub. */
  readonly serviceRoleKey: string;
  /** The current public JWKS (what SUPABASE_JWKS would hold). */
  readonly jwks: { keys: JsonWebKey[] };
  /** The project's legacy HS256 secret. */
  readonly hsSecret: string;
  /** The kid of the current ES256 signing key. */
  readonly currentKid: string;
  /** The default signed-in user's id (sub of tokens signed without an explicit sub). */
  readonly defaultUserId: string;
  /** Request counters, to prove JWKS caching and the /user fallback. */
  readonly requests: { jwks: number; user: number };
  /** Signs an ES256 access token with the current key; `claims` are merged over a logged-in user's defaults (set one to undefined to drop it). */
  signEs256(
    claims?: Record<string, unknown>,
    opts?: {
      expiresInS?: number;
      kid?: string;
      header?: Record<string, unknown>;
    },
  ): Promise<string>;
  /** Signs an HS256 access token with hsSecret (or `secret`); no kid unless given in `header`. */
  signHs256(
    claims?: Record<string, unknown>,
    opts?: {
      expiresInS?: number;
      secret?: string | Uint8Array;
      header?: Record<string, unknown>;
    },
  ): Promise<string>;
  /** Makes a new ES256 key current and publishes it; older keys stay published unless `dropOld`. */
  rotateKey(opts?: { dropOld?: boolean }): Promise<void>;
  /** Switches failure mode; await it when switching to or from "refuse". */
  setMode(mode: AuthMode, opts?: { slowMs?: number }): Promise<void>;
  /** A session for a named user (same as signEs256 with that user's sub/email). */
  issueDevToken(
    opts?: { email?: string; expiresInS?: number },
  ): Promise<DevSession>;
  /** Deletes a user: /user then answers 403 user_not_found for its tokens. */
  deleteUser(id: string): void;
  /** Stops the server, aborting slow answers; the port then refuses connections. */
  close(): Promise<void>;
}

/** Options for startAuthStandIn. */
export interface AuthStandInOptions {
  port?: number;
  hostname?: string;
  /**
   * Serves paths outside `/auth/v1/` first, as Supabase's API gateway puts
   * other services (e.g. Realtime's `handle`) on the same origin; null or
   * undefined falls through to the gateway's 404. Auth's failure modes do not
   * apply to it, except "refuse" (the whole port stops listening).
   */
  gateway?: (request: Request) => Response | Promise<Response> | null | undefined;
}

const API_VERSION = "2024-01-01";

interface StoredUser {
  id: string;
  email: string;
  created_at: string;
}

/** Starts the stand-in (port 0 picks a free one). */
export async function startAuthStandIn(
  opts: AuthStandInOptions = {},
): Promise<AuthStandIn> {
  const s = new AuthServer(opts.hostname ?? "127.0.0.1", opts.gateway);
  await s.init(opts.port ?? 0);
  return s;
}

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JsonWebKey;
}

class AuthServer implements AuthStandIn {
  url = "";
  port = 0;
  readonly publishableKey = `sb_publishable_${randomToken(22)}`;
  anonKey = "";
  serviceRoleKey = "";
  readonly hsSecret = randomToken(40);
  readonly requests = { jwks: 0, user: 0 };
  readonly #hostname: string;
  readonly #gateway: AuthStandInOptions["gateway"];
  readonly #ref = randomToken(20).toLowerCase();
  #keys: SigningKey[] = [];
  #mode: AuthMode = "up";
  #slowMs = 1000;
  #server: Deno.HttpServer | undefined;
  // Aborting this cancels every slow answer's timer (Deno's test sanitizers).
  #inflight = new AbortController();
  #users = new Map<string, StoredUser>();
  #emails = new Map<string, string>();
  defaultUserId = "";

  constructor(hostname: string, gateway?: AuthStandInOptions["gateway"]) {
    this.#hostname = hostname;
    this.#gateway = gateway;
  }

  get jwks(): { keys: JsonWebKey[] } {
    return { keys: this.#keys.map((k) => ({ ...k.publicJwk })) };
  }

  get currentKid(): string {
    return this.#keys[0]?.kid ?? "";
  }

  async init(port: number): Promise<void> {
    await this.rotateKey();
    this.#serve(port);
    this.url = `http://${this.#hostname}:${this.port}`;
    const now = Math.floor(Date.now() / 1000);
    const tenYears = 10 * 365 * 24 * 3600;
    const legacy = (role: string) =>
      signHs({ alg: "HS256", typ: "JWT" }, {
        iss: "supabase",
        ref: this.#ref,
        role,
        iat: now,
        exp: now + tenYears,
      }, this.hsSecret);
    this.anonKey = await legacy("anon");
    this.serviceRoleKey = await legacy("service_role");
    this.defaultUserId = this.#userFor("user@example.com").id;
  }

  #serve(port: number): void {
    this.#server = Deno.serve({
      hostname: this.#hostname,
      port,
      onListen: () => {},
    }, (req) => this.#handle(req));
    this.port = (this.#server.addr as Deno.NetAddr).port;
  }

  async #stopServer(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#inflight.abort();
    this.#inflight = new AbortController();
    await server.shutdown();
    await server.finished;
  }

  async setMode(mode: AuthMode, opts: { slowMs?: number } = {}): Promise<void> {
    if (opts.slowMs !== undefined) this.#slowMs = opts.slowMs;
    const was = this.#mode;
    this.#mode = mode;
    if (mode === "refuse" && was !== "refuse") await this.#stopServer();
    else if (mode !== "refuse" && was === "refuse") this.#serve(this.port);
  }

  async close(): Promise<void> {
    await this.#stopServer();
  }

  #userFor(email: string): StoredUser {
    const known = this.#emails.get(email);
    const existing = known ? this.#users.get(known) : undefined;
    if (existing) return existing;
    const user = {
      id: crypto.randomUUID(),
      email,
      created_at: new Date().toISOString(),
    };
    this.#users.set(user.id, user);
    this.#emails.set(email, user.id);
    return user;
  }

  deleteUser(id: string): void {
    const u = this.#users.get(id);
    if (u) this.#emails.delete(u.email);
    this.#users.delete(id);
  }

  /** Claims of a freshly signed-in email user, like GoTrue's access tokens. */
  #defaultClaims(expiresInS: number): Record<string, unknown> {
    const user = this.#users.get(this.defaultUserId) ??
      this.#userFor("user@example.com");
    const iat = Math.floor(Date.now() / 1000);
    return {
      iss: `${this.url}/auth/v1`,
      sub: user.id,
      aud: "authenticated",
      exp: iat + expiresInS,
      iat,
      email: user.email,
      phone: "",
      app_metadata: { provider: "email", providers: ["email"] },
      user_metadata: {
        email: user.email,
        email_verified: true,
        phone_verified: false,
        sub: user.id,
      },
      role: "authenticated",
      aal: "aal1",
      amr: [{ method: "password", timestamp: iat }],
      session_id: crypto.randomUUID(),
      is_anonymous: false,
    };
  }

  #claims(
    claims: Record<string, unknown>,
    expiresInS: number,
  ): Record<string, unknown> {
    const merged = { ...this.#defaultClaims(expiresInS), ...claims };
    // A token for a new sub/email pair registers that user, as signing up would.
    if (typeof merged.sub === "string" && !this.#users.has(merged.sub)) {
      const email = typeof merged.email === "string" ? merged.email : "";
      if (!this.#emails.has(email) || email === "") {
        this.#users.set(merged.sub, {
          id: merged.sub,
          email,
          created_at: new Date().toISOString(),
        });
        if (email) this.#emails.set(email, merged.sub);
      }
    }
    return merged;
  }

  async signEs256(
    claims: Record<string, unknown> = {},
    opts: {
      expiresInS?: number;
      kid?: string;
      header?: Record<string, unknown>;
    } = {},
  ): Promise<string> {
    const key = this.#keys[0];
    if (!key) throw new Error("no signing key");
    const header = {
      alg: "ES256",
      kid: opts.kid ?? key.kid,
      typ: "JWT",
      ...opts.header,
    };
    return await signEs(
      header,
      this.#claims(claims, opts.expiresInS ?? 3600),
      key.privateKey,
    );
  }

  async signHs256(
    claims: Record<string, unknown> = {},
    opts: {
      expiresInS?: number;
      secret?: string | Uint8Array;
      header?: Record<string, unknown>;
    } = {},
  ): Promise<string> {
    return await signHs(
      { alg: "HS256", typ: "JWT", ...opts.header },
      this.#claims(claims, opts.expiresInS ?? 3600),
      opts.secret ?? this.hsSecret,
    );
  }

  async rotateKey(opts: { dropOld?: boolean } = {}): Promise<void> {
    const pair = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign", "verify"],
    ) as CryptoKeyPair;
    const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const kid = crypto.randomUUID();
    // Only the public members, in the shape GoTrue publishes.
    const publicJwk: JsonWebKey = {
      alg: "ES256",
      crv: "P-256",
      ext: true,
      key_ops: ["verify"],
      kty: "EC",
      use: "sig",
      x: jwk.x!,
      y: jwk.y!,
    };
    (publicJwk as Record<string, unknown>).kid = kid;
    const key = { kid, privateKey: pair.privateKey, publicJwk };
    this.#keys = opts.dropOld ? [key] : [key, ...this.#keys];
  }

  async issueDevToken(
    opts: { email?: string; expiresInS?: number } = {},
  ): Promise<DevSession> {
    const user = this.#userFor(opts.email ?? "user@example.com");
    const expiresIn = opts.expiresInS ?? 3600;
    const access_token = await this.signEs256({
      sub: user.id,
      email: user.email,
      user_metadata: {
        email: user.email,
        email_verified: true,
        phone_verified: false,
        sub: user.id,
      },
    }, { expiresInS: expiresIn });
    const claims = decodeJwt(access_token).payload;
    return {
      access_token,
      token_type: "bearer",
      expires_in: expiresIn,
      expires_at: claims.exp as number,
      user: this.#userJson(claims),
    };
  }

  // ---- HTTP ----------------------------------------------------------------

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, "");
    if (path === "/auth/v1/.well-known/jwks.json") this.requests.jwks++;
    if (path === "/auth/v1/user") this.requests.user++;
    if (this.#gateway && !path.startsWith("/auth/v1/")) {
      const routed = await this.#gateway(req);
      if (routed) return routed;
    }

    if (this.#mode === "slow") {
      try {
        // Only close() cuts this short: touching req.signal makes Deno 2.9 warn.
        await abortableDelay(this.#slowMs, this.#inflight.signal);
      } catch {
        return gatewayError(503, "The upstream server is timing out");
      }
    }
    if (this.#mode === "down") {
      return gatewayError(503, "The upstream server is currently unavailable");
    }
    if (this.#mode === "malformed") {
      return new Response(
        "<html><head><title>502 Bad Gateway</title></head><body>oops",
        { status: 200, headers: { "content-type": "text/html" } },
      );
    }

    if (path === "/auth/v1/.well-known/jwks.json" && req.method === "GET") {
      // Public: the gateway lets JWKS through without an API key.
      return json(200, this.jwks, {
        "cache-control": "public, max-age=600",
      });
    }
    if (!path.startsWith("/auth/v1/")) {
      return gatewayError(404, "no Route matched with those values");
    }
    const keyError = this.#checkApiKey(req, url);
    if (keyError) return keyError;

    if (path === "/auth/v1/user" && req.method === "GET") {
      return await this.#getUser(req);
    }
    if (path === "/auth/v1/health" && req.method === "GET") {
      return json(200, {
        version: "v2.180.0",
        name: "GoTrue",
        description: "GoTrue is a user registration and authentication API",
      });
    }
    return this.#goTrueError(req, 404, "not_found", "Not Found");
  }

  /** The gateway's API-key check (apikey header or ?apikey=). */
  #checkApiKey(req: Request, url: URL): Response | undefined {
    const key = req.headers.get("apikey") ?? url.searchParams.get("apikey");
    if (!key) {
      return json(401, {
        message: "No API key found in request",
        hint: "No `apikey` request header or url param was found.",
      });
    }
    if (
      key !== this.publishableKey && key !== this.anonKey &&
      key !== this.serviceRoleKey
    ) {
      return json(401, {
        message: "Invalid API key",
        hint: "Double check your Supabase `anon` or `service_role` API key.",
      });
    }
    return undefined;
  }

  /** GoTrue's error body: `{code,message}` for API version 2024-01-01, else the legacy shape. */
  #goTrueError(
    req: Request,
    status: number,
    code: string,
    message: string,
  ): Response {
    if (req.headers.get("x-supabase-api-version") === API_VERSION) {
      return json(status, { code, message }, {
        "x-supabase-api-version": API_VERSION,
      });
    }
    return json(status, { code: status, error_code: code, msg: message });
  }

  async #getUser(req: Request): Promise<Response> {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(
      req.headers.get("authorization") ?? "",
    )?.[1];
    if (!bearer) {
      return this.#goTrueError(
        req,
        401,
        "no_authorization",
        "This endpoint requires a Bearer token",
      );
    }
    const bad = (why: string) =>
      this.#goTrueError(
        req,
        403,
        "bad_jwt",
        `invalid JWT: unable to parse or verify signature, ${why}`,
      );
    let claims: Record<string, unknown>;
    try {
      claims = await this.#verify(bearer);
    } catch (err) {
      return bad(err instanceof Error ? err.message : String(err));
    }
    const sub = claims.sub;
    if (typeof sub !== "string" || sub === "") {
      return this.#goTrueError(
        req,
        403,
        "bad_jwt",
        "invalid claim: missing sub claim",
      );
    }
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(sub)) {
      return this.#goTrueError(
        req,
        400,
        "bad_jwt",
        "invalid claim: sub claim must be a UUID",
      );
    }
    if (!this.#users.has(sub)) {
      return this.#goTrueError(
        req,
        403,
        "user_not_found",
        "User from sub claim in JWT does not exist",
      );
    }
    const headers: Record<string, string> = {};
    if (req.headers.get("x-supabase-api-version") === API_VERSION) {
      headers["x-supabase-api-version"] = API_VERSION;
    }
    return json(200, this.#userJson(claims), headers);
  }

  /** Verifies like GoTrue (golang-jwt v5): kid selects a published key, HS256 without kid uses the secret; messages follow golang-jwt. */
  async #verify(token: string): Promise<Record<string, unknown>> {
    let d;
    try {
      d = decodeJwt(token);
    } catch (err) {
      if (err instanceof MalformedJwt) throw err;
      throw new Error("token is malformed");
    }
    const alg = d.header.alg;
    if (alg !== "ES256" && alg !== "HS256") {
      if (alg === "none" || alg === "RS256" || alg === "HS384" || alg === "ES384") {
        throw new Error(
          `token signature is invalid: signing method ${String(alg)} is invalid`,
        );
      }
      throw new Error(
        "token is unverifiable: signing method (alg) is unavailable",
      );
    }
    const kid = d.header.kid;
    let ok: boolean;
    if (typeof kid === "string") {
      const key = this.#keys.find((k) => k.kid === kid);
      if (!key) {
        throw new Error(
          `token is unverifiable: error while executing keyfunc: invalid kid: ${kid}`,
        );
      }
      if (alg !== "ES256") {
        throw new Error(
          "token signature is invalid: key is of invalid type",
        );
      }
      const pub = await crypto.subtle.importKey(
        "jwk",
        { ...key.publicJwk },
        { name: "ECDSA", namedCurve: "P-256" },
        false,
        ["verify"],
      );
      ok = d.signature.byteLength === 64 && await crypto.subtle.verify(
        { name: "ECDSA", hash: "SHA-256" },
        pub,
        // slice(): a plain ArrayBuffer-backed copy, as WebCrypto's types want.
        d.signature.slice(),
        d.signingInput.slice(),
      );
      if (!ok) {
        throw new Error(
          "token signature is invalid: crypto/ecdsa: verification error",
        );
      }
    } else if (alg === "HS256") {
      ok = await crypto.subtle.verify(
        "HMAC",
        await hmacKey(this.hsSecret),
        d.signature.slice(),
        d.signingInput.slice(),
      );
      if (!ok) {
        throw new Error("token signature is invalid: signature is invalid");
      }
    } else {
      throw new Error(
        "token is unverifiable: error while executing keyfunc: missing kid",
      );
    }
    const exp = d.payload.exp;
    if (typeof exp === "number" && exp <= Math.floor(Date.now() / 1000)) {
      throw new Error("token has invalid claims: token is expired");
    }
    return d.payload;
  }

  /** GoTrue's user object, from the stored user and the token's claims. */
  #userJson(claims: Record<string, unknown>): Record<string, unknown> {
    const id = String(claims.sub);
    const stored = this.#users.get(id);
    const email = stored?.email ??
      (typeof claims.email === "string" ? claims.email : "");
    const created = stored?.created_at ?? new Date().toISOString();
    const now = new Date().toISOString();
    return {
      id,
      aud: claims.aud ?? "authenticated",
      role: claims.role ?? "authenticated",
      email,
      email_confirmed_at: created,
      phone: "",
      confirmed_at: created,
      last_sign_in_at: now,
      app_metadata: claims.app_metadata ??
        { provider: "email", providers: ["email"] },
      user_metadata: claims.user_metadata ?? {},
      identities: [{
        identity_id: crypto.randomUUID(),
        id,
        user_id: id,
        identity_data: {
          email,
          email_verified: true,
          phone_verified: false,
          sub: id,
        },
        provider: "email",
        last_sign_in_at: created,
        created_at: created,
        updated_at: now,
        email,
      }],
      created_at: created,
      updated_at: now,
      is_anonymous: claims.is_anonymous ?? false,
    };
  }
}

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Errors produced by the API gateway itself: `{"message": ...}`, no GoTrue code. */
function gatewayError(status: number, message: string): Response {
  return json(status, { message });
}

function randomToken(n: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(n))).slice(0, n)
    .replace(/[-_]/g, "x");
}

/** Waits `ms` unless either signal aborts first; the timer never outlives it. */
function abortableDelay(
  ms: number,
  ...signals: AbortSignal[]
): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      cleanup();
      reject(new Error("aborted"));
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve();
    }, ms);
    for (const s of signals) {
      if (s.aborted) return onAbort();
      s.addEventListener("abort", onAbort, { once: true });
    }
  });
}
