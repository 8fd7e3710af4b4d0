/**
 * Serves the demo page and the dev-only routes it needs: a dev token from the
 * Auth stand-in and the relay's address. Never part of the function.
 * @module
 */
import type { AuthStandIn } from "../tests/stand_ins/auth.ts";

/** What the demo page needs to know about the stack. */
export interface DemoConfig {
  readonly auth: AuthStandIn;
  /** e.g. `ws://127.0.0.1:8000` */
  readonly relayUrl: string;
  /** Where the OpenAI route leads, shown on the page. */
  readonly upstream: "stand-in" | "openai";
}

const STATIC: Readonly<Record<string, { file: string; type: string }>> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/demo.js": { file: "demo.js", type: "text/javascript; charset=utf-8" },
  "/demo.css": { file: "demo.css", type: "text/css; charset=utf-8" },
};

/** The longest dev token lifetime the page may ask for (a day). */
const MAX_TTL_S = 86_400;

/** Builds the demo server's request handler. */
export function demoHandler(config: DemoConfig): (request: Request) => Promise<Response> {
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/dev/config" && request.method === "GET") {
      return Response.json({ relayUrl: config.relayUrl, upstream: config.upstream });
    }
    if (pathname === "/dev/token" && request.method === "POST") {
      return await issueToken(config.auth, request);
    }
    const asset = STATIC[pathname];
    if (asset && request.method === "GET") {
      // Read per request so edits to the page show on reload.
      const body = await Deno.readFile(new URL(`./demo/${asset.file}`, import.meta.url));
      return new Response(body, {
        headers: { "content-type": asset.type, "cache-control": "no-store" },
      });
    }
    if (pathname === "/favicon.ico") return new Response(null, { status: 204 });
    return Response.json({ error: "not_found" }, { status: 404 });
  };
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
  return Response.json(session, { headers: { "cache-control": "no-store" } });
}
