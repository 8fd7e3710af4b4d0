/**
 * Every row of CONTRACT.md "Before the upgrade": the real handler, called
 * in-process for plain-HTTP refusals, with the real Auth stand-in behind it.
 */
import assert from "node:assert/strict";
import { createTokenVerifier } from "../../supabase/functions/_shared/auth/verify.ts";
import { VerifiedTokenCache } from "../../supabase/functions/_shared/auth/verified_cache.ts";
import { forgeToken } from "../stand_ins/jwt.ts";
import { startRelay, UPGRADE_HEADERS, withRelay } from "../helpers/relay_harness.ts";

function request(path: string, headers: Record<string, string> = UPGRADE_HEADERS, method = "GET") {
  return new Request(`http://relay.local${path}`, { method, headers });
}

async function refusalOf(response: Response) {
  const body = await response.json();
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.deepEqual(Object.keys(body), ["error", "message"]);
  return { status: response.status, error: body.error as string, body: JSON.stringify(body) };
}

Deno.test("handler refuses bad requests before the upgrade, per the contract", async (t) => {
  const env = { RELAY_ALLOWED_ORIGINS: "https://app.example" };
  await withRelay({ env }, async (relay) => {
    const good = await relay.auth.signEs256();
    const table: [string, Request, number, string, Record<string, string>?][] = [
      ["unknown path", request("/elsewhere"), 404, "not_found"],
      ["POST", request("/relay", UPGRADE_HEADERS, "POST"), 405, "method_not_allowed", {
        allow: "GET",
      }],
      [
        "no Upgrade",
        request("/relay", { "sec-websocket-version": "13" }),
        426,
        "upgrade_required",
        {
          upgrade: "websocket",
        },
      ],
      [
        "missing key",
        request(`/relay?jwt=${good}`, { ...UPGRADE_HEADERS, "sec-websocket-key": "" }),
        400,
        "bad_handshake",
      ],
      [
        "version 8",
        request(`/relay?jwt=${good}`, { ...UPGRADE_HEADERS, "sec-websocket-version": "8" }),
        400,
        "bad_handshake",
      ],
      [
        "foreign origin",
        request(`/relay?jwt=${good}`, { ...UPGRADE_HEADERS, origin: "https://evil.example" }),
        403,
        "origin_not_allowed",
      ],
      ["no token", request("/relay"), 401, "missing_token", { "www-authenticate": "Bearer" }],
      ["model not listed", request(`/relay?jwt=${good}&model=gpt-4o`), 400, "model_not_allowed"],
      ["health is GET only", request("/relay/health", {}, "DELETE"), 405, "method_not_allowed"],
    ];
    for (const [name, req, status, error, headers] of table) {
      await t.step(name, async () => {
        const response = await relay.relay.handler(req);
        const refused = await refusalOf(response);
        assert.deepEqual([refused.status, refused.error], [status, error]);
        for (const [header, value] of Object.entries(headers ?? {})) {
          assert.equal(response.headers.get(header), value);
        }
        assert.ok(!refused.body.includes(good), "the token never comes back");
      });
    }
    const rejected = relay.events("websocket.connection.rejected");
    assert.equal(rejected.length, table.length);
    assert.deepEqual(rejected[0], { ...rejected[0], status: 404, error: "not_found", route: null });
    assert.ok(relay.lines.every((line) => !line.includes(good)), "no token in telemetry");
  });
});

Deno.test("handler answers 503 upstream_not_configured without an OpenAI key, echo still works", async () => {
  await withRelay({ env: { OPENAI_API_KEY: "" } }, async (relay) => {
    const token = await relay.auth.signEs256();
    const refused = await refusalOf(await relay.relay.handler(request(`/relay?jwt=${token}`)));
    assert.deepEqual([refused.status, refused.error], [503, "upstream_not_configured"]);
    const unverified = await refusalOf(
      await relay.relay.handler(request("/relay?jwt=not.a.token")),
    );
    assert.equal(unverified.error, "upstream_not_configured", "checked before the token");
  });
});

Deno.test("handler refuses tokens per the contract's token rows", async (t) => {
  await withRelay({ env: { RELAY_ALLOWED_ROLES: "authenticated" } }, async (relay) => {
    const { auth } = relay;
    const now = Math.floor(Date.now() / 1000);
    const good = await auth.signEs256();
    const [header, payload] = good.split(".");
    const other = await startRelay({ openai: relay.openai });
    const foreignKey = await other.auth.signEs256({}, { kid: auth.currentKid });
    await other.close();
    const tampered = `${header}.${
      forgeToken({}, { sub: "someone-else", role: "authenticated", exp: now + 3600 }).split(".")[1]
    }.${good.split(".")[2]}`;
    const table: [string, string, number, string][] = [
      ["garbage", "not-a-jwt", 401, "invalid_token"],
      ["non-JSON payload", `${header}.bm90IGpzb24.c2ln`, 401, "invalid_token"],
      ["expired ES256", await auth.signEs256({}, { expiresInS: -60 }), 401, "invalid_token"],
      ["tampered payload", tampered, 401, "invalid_token"],
      ["signed by another key with a known kid", foreignKey, 401, "invalid_token"],
      ["unknown kid", await auth.signEs256({}, { kid: "no-such-kid" }), 401, "invalid_token"],
      [
        "alg none",
        forgeToken({ alg: "none", typ: "JWT" }, {
          sub: "u",
          role: "authenticated",
          exp: now + 3600,
        }, ""),
        401,
        "invalid_token",
      ],
      [
        "HS256 with the wrong secret",
        await auth.signHs256({}, { secret: "wrong" }),
        401,
        "invalid_token",
      ],
      ["expired HS256", await auth.signHs256({}, { expiresInS: -60 }), 401, "invalid_token"],
      ["anon key", auth.anonKey, 403, "forbidden"],
      ["service-role key", auth.serviceRoleKey, 403, "forbidden"],
      ["no sub", await auth.signEs256({ sub: undefined }), 403, "forbidden"],
      ["role not allowed", await auth.signEs256({ role: "anon" }), 403, "forbidden"],
      ["payload only", `${payload}`, 401, "invalid_token"],
    ];
    for (const [name, token, status, error] of table) {
      await t.step(name, async () => {
        const refused = await refusalOf(
          await relay.relay.handler(request(`/relay/echo?jwt=${token}`)),
        );
        assert.deepEqual([refused.status, refused.error], [status, error]);
        assert.ok(!refused.body.includes(token));
      });
    }
    assert.ok(relay.lines.every((line) => !table.some(([, token]) => line.includes(token))));
  });
});

Deno.test("handler answers 503 auth_unavailable when Auth is down or unreachable", async () => {
  await withRelay({ deps: { authTimeoutMs: 300 } }, async (relay) => {
    const hs256 = await relay.auth.signHs256();
    await relay.auth.setMode("down");
    let refused = await refusalOf(await relay.relay.handler(request(`/relay/echo?jwt=${hs256}`)));
    assert.deepEqual([refused.status, refused.error], [503, "auth_unavailable"]);
    await relay.auth.setMode("malformed");
    refused = await refusalOf(await relay.relay.handler(request(`/relay/echo?jwt=${hs256}`)));
    assert.deepEqual([refused.status, refused.error], [503, "auth_unavailable"]);
    await relay.auth.setMode("slow", { slowMs: 2000 });
    refused = await refusalOf(await relay.relay.handler(request(`/relay/echo?jwt=${hs256}`)));
    assert.deepEqual([refused.status, refused.error], [503, "auth_unavailable"]);
    await relay.auth.setMode("up");
    // An ES256 token whose key is not cached needs the JWKS: also Auth's fault when it fails.
    const es256 = await relay.auth.signEs256();
    await relay.auth.setMode("down");
    refused = await refusalOf(await relay.relay.handler(request(`/relay/echo?jwt=${es256}`)));
    assert.deepEqual([refused.status, refused.error], [503, "auth_unavailable"]);
    await relay.auth.setMode("refuse");
    refused = await refusalOf(await relay.relay.handler(request(`/relay/echo?jwt=${hs256}`)));
    assert.deepEqual([refused.status, refused.error], [503, "auth_unavailable"]);
    await relay.auth.setMode("up");
  });
});

Deno.test("handler runs checks that need no user before verifying the token", async () => {
  await withRelay({ env: { RELAY_ALLOWED_ORIGINS: "https://app.example" } }, async (relay) => {
    const before = relay.auth.requests.user + relay.auth.requests.jwks;
    const cases: [Request, string][] = [
      [
        request("/relay?jwt=bad", { ...UPGRADE_HEADERS, origin: "https://evil.example" }),
        "origin_not_allowed",
      ],
      [request("/relay?jwt=bad&model=other"), "model_not_allowed"],
    ];
    for (const [req, error] of cases) {
      assert.equal((await refusalOf(await relay.relay.handler(req))).error, error);
    }
    assert.equal(relay.auth.requests.user + relay.auth.requests.jwks, before, "Auth never asked");
  });
});

Deno.test("handler serves /relay/health without auth", async () => {
  await withRelay({}, async (relay) => {
    for (const path of ["/relay/health", "/relay/health/"]) {
      const response = await relay.relay.handler(request(path, {}));
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { status: "ok", connections: 0 });
    }
  });
});

Deno.test("handler remembers JWKS-verified tokens for reconnects, never HS256 ones", async () => {
  const cache = new VerifiedTokenCache();
  await withRelay({}, async (relay) => {
    const verifyToken = createTokenVerifier({
      supabaseUrl: relay.auth.url,
      supabaseKey: relay.auth.publishableKey,
      jwks: null,
      allowedRoles: ["authenticated"],
      cache,
    });
    const es256 = await relay.auth.signEs256();
    const hs256 = await relay.auth.signHs256();
    assert.equal((await verifyToken(hs256)).ok, true);
    assert.equal(cache.size, 0, "HS256 is checked by Auth every time");
    const before = relay.auth.requests.user;
    assert.equal((await verifyToken(hs256)).ok, true);
    assert.equal(relay.auth.requests.user, before + 1);
    assert.equal((await verifyToken(es256)).ok, true);
    assert.equal(cache.size, 1);
    assert.ok(cache.get(es256));
    assert.deepEqual(await verifyToken(es256), { ok: true, identity: cache.get(es256) });
    const expired = await relay.auth.signEs256({}, { expiresInS: -1 });
    assert.deepEqual(await verifyToken(expired), { ok: false, error: "invalid_token" });
    assert.equal(cache.size, 1);
  });
});
