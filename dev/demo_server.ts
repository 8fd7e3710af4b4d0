/**
 * Serves the demo page, the client library it imports, and the dev-only routes
 * it needs: a dev token from the Auth stand-in, the relay's address, and the
 * signed-in user's usage. Never part of the function.
 * @module
 */
import type { TokenVerifier } from "../supabase/functions/_shared/auth/verify.ts";
import { type Database, describe } from "../supabase/functions/_shared/db/client.ts";
import type { AuthStandIn } from "../tests/stand_ins/auth.ts";
import { usageSummaryAs } from "./db/usage_summary.ts";

/** What `/api/usage` needs: the relay's database and its token check. */
export interface UsageConfig {
  readonly database: Database;
  /** The relay's own verifier (supabase-js `getClaims`), so the page's token is checked as the relay checks it. */
  readonly verifyToken: TokenVerifier;
}

/** What the demo page needs to know about the stack. */
export interface DemoConfig {
  readonly auth: AuthStandIn;
  /** e.g. `ws://127.0.0.1:8000` */
  readonly relayUrl: string;
  /** Where the OpenAI route leads, shown on the page. */
  readonly upstream: "stand-in" | "openai";
  /** `null` when metering is off: `/api/usage` answers 404 `metering_off`. @default null */
  readonly usage?: UsageConfig | null;
  /** The folder the page's files are served from. @default dev/demo/ */
  readonly staticDir?: URL;
  /** The client library the page imports. @default client/relay_client.js */
  readonly clientLibrary?: URL;
}

/**
 * Where the page imports the client library from. The library lives outside
 * dev/demo/ (it is the repository's, not the demo's), so this one path names
 * that one file and nothing else of its folder is served.
 */
export const CLIENT_LIBRARY_PATH = "/client/relay_client.js";

/** Content types by file extension; a file with any other extension is not served. */
export const STATIC_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  // Also what an AudioWorklet's addModule() requires of its module.
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wav": "audio/wav",
};

/**
 * The file a request path names directly in the static folder and its
 * content type, or `null`: only `/<name>` with a known extension, never a
 * `/`, `..`, a leading dot or anything but `[A-Za-z0-9._-]` in the (decoded)
 * name. `/` is `index.html`.
 */
export function staticFileFor(pathname: string): { file: string; type: string } | null {
  if (pathname === "/") return { file: "index.html", type: STATIC_TYPES[".html"]! };
  let name: string;
  try {
    name = decodeURIComponent(pathname.slice(1));
  } catch {
    return null;
  }
  // Plain names only: letters, digits, `_`, `-` and dots, so the name can
  // neither climb out of the folder nor read as a URL's query or fragment.
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name) || name.includes("..")) return null;
  const dot = name.lastIndexOf(".");
  const type = dot > 0 ? STATIC_TYPES[name.slice(dot).toLowerCase()] : undefined;
  return type ? { file: name, type } : null;
}

/** The longest dev token lifetime the page may ask for (a day). */
const MAX_TTL_S = 86_400;

const NO_STORE = { "cache-control": "no-store" };

/** Builds the demo server's request handler. */
export function demoHandler(config: DemoConfig): (request: Request) => Promise<Response> {
  const staticDir = config.staticDir ?? new URL("./demo/", import.meta.url);
  const clientLibrary = config.clientLibrary ??
    new URL("../client/relay_client.js", import.meta.url);
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/dev/config" && request.method === "GET") {
      return Response.json({ relayUrl: config.relayUrl, upstream: config.upstream });
    }
    if (pathname === "/dev/token" && request.method === "POST") {
      return await issueToken(config.auth, request);
    }
    if (pathname === "/api/usage" && request.method === "GET") {
      return await usage(config.usage ?? null, request);
    }
    if (pathname === "/favicon.ico") return new Response(null, { status: 204 });
    if (pathname === CLIENT_LIBRARY_PATH && request.method === "GET") {
      const found = await fileResponse(clientLibrary, STATIC_TYPES[".js"]!);
      if (found) return found;
    }
    const asset = request.method === "GET" ? staticFileFor(pathname) : null;
    if (asset) {
      const found = await fileResponse(new URL(asset.file, staticDir), asset.type);
      if (found) return found;
    }
    return Response.json({ error: "not_found" }, { status: 404 });
  };
}

/** The file at `url` as a `type` response, or `null` when it is not a regular file. */
async function fileResponse(url: URL, type: string): Promise<Response | null> {
  try {
    // lstat: a symlink in the folder is not followed out of it.
    const info = await Deno.lstat(url);
    if (!info.isFile) return null;
    // Read per request so edits to the page (and the library) show on reload.
    const body = await Deno.readFile(url);
    return new Response(body, { headers: { "content-type": type, ...NO_STORE } });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Signs in a named test user at the stand-in; body `{email?, expiresInS?}`. */
async function issueToken(auth: AuthStandIn, request: Request): Promise<Response> {
  let body: { email?: unknown; expiresInS?: unknown } = {};
  try {
    const text = await request.text();
    if (text) body = JSON.parse(text);
  } catch {
    return Response.json({ error: "bad_request", message: "expected a JSON body" }, {
      status: 400,
    });
  }
  const email = typeof body.email === "string" && body.email.includes("@")
    ? body.email
    : "dev@example.com";
  const ttl = typeof body.expiresInS === "number" && Number.isInteger(body.expiresInS)
    ? Math.min(Math.max(body.expiresInS, 1), MAX_TTL_S)
    : 3600;
  const session = await auth.issueDevToken({ email, expiresInS: ttl });
  return Response.json(session, { headers: NO_STORE });
}

const VERIFY_STATUS = { invalid_token: 401, forbidden: 403, auth_unavailable: 503 } as const;

/**
 * `GET /api/usage` with `Authorization: Bearer <access token>`: the token's
 * user's `relay_usage_summary()`, read as that user. The user comes from the
 * verified token and nothing else, as in Supabase's REST layer: a query
 * parameter naming a user would let the page read anyone's spend.
 */
async function usage(config: UsageConfig | null, request: Request): Promise<Response> {
  if (config === null) {
    return Response.json({
      error: "metering_off",
      message: "metering is off (RELAY_METERING): there is no usage to show",
    }, { status: 404, headers: NO_STORE });
  }
  const token = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  if (!token) {
    return Response.json({
      error: "missing_token",
      message: "send the page's access token as Authorization: Bearer <token>",
    }, { status: 401, headers: { "www-authenticate": "Bearer", ...NO_STORE } });
  }
  const verified = await config.verifyToken(token);
  if (!verified.ok) {
    return Response.json({
      error: verified.error,
      message: "the access token was not accepted, as the relay would not accept it",
    }, { status: VERIFY_STATUS[verified.error], headers: NO_STORE });
  }
  try {
    const summary = await usageSummaryAs(config.database, {
      sub: verified.identity.user,
      role: verified.identity.role,
    });
    return Response.json(summary, { headers: NO_STORE });
  } catch (error) {
    return Response.json({
      error: "database_unavailable",
      message: `reading relay_usage_summary() failed: ${describe(error)}`,
    }, { status: 503, headers: NO_STORE });
  }
}
