/**
 * Hostile input over real sockets: malformed handshakes on raw TCP, token
 * attacks, message floods, oversized messages and lying frame headers, origin
 * spoofing. Each gets the contract's status or close code; never a 500, a
 * crash or a hang; and the instance serves the next client.
 */
import assert from "node:assert/strict";
import type { RelayUnderTest } from "../helpers/relay_harness.ts";
import { TestClient, until, within } from "../helpers/ws_client.ts";
import { base64url, forgeToken } from "../stand_ins/auth.ts";
import { rawClient } from "../stand_ins/raw_client.ts";
import { encodeFrame, Opcode } from "../stand_ins/ws_frames.ts";
import { recordFigure, testCommand, withCheckedRelay } from "./support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What came back for a raw request: the status (null when TCP closed without one) and the body. */
interface RawAnswer {
  status: number | null;
  head: string;
  body: string;
}

/** No answer within the wait (status of a {@linkcode RawAnswer}). */
const SILENT = -1;

/**
 * Writes `bytes` on a fresh TCP connection and reads one HTTP answer (or the
 * close). Waits up to `ms`; then the status is {@linkcode SILENT}.
 */
async function rawRequest(port: number, bytes: Uint8Array, ms = 3000): Promise<RawAnswer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const silent = new Promise<RawAnswer>((resolve) => {
    timer = setTimeout(() => resolve({ status: SILENT, head: "", body: "" }), ms);
  });
  const answer = (async (): Promise<RawAnswer> => {
    // The server may answer and close before reading everything we send.
    await conn.write(bytes).catch(() => 0);
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const head = text.slice(0, end);
        const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        const body = text.slice(end + 4);
        if (encoder.encode(body).byteLength >= length || / 101 /.test(head.split("\r\n")[0]!)) {
          return { status: Number(head.split(" ")[1]), head, body };
        }
      }
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return { status: null, head: text, body: "" };
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  })();
  try {
    return await Promise.race([answer, silent]);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
    await answer.catch(() => {});
  }
}

function upgradeHead(path: string, headers: Record<string, string>, start = "GET"): string {
  const all: Record<string, string> = {
    host: "127.0.0.1",
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
    ...headers,
  };
  const lines = Object.entries(all).filter(([, v]) => v !== "").map(([k, v]) => `${k}: ${v}\r\n`);
  return `${start} ${path} HTTP/1.1\r\n${lines.join("")}\r\n`;
}

/** The instance still answers health and relays an echo round trip. */
async function stillServes(relay: RelayUnderTest, token: string): Promise<void> {
  const health = await fetch(`http://127.0.0.1:${relay.port}/relay/health`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
  const client = new TestClient(relay.wsUrl("/relay/echo", { jwt: token }));
  await client.opened;
  client.socket.send("still here");
  assert.deepEqual(await client.waitForMessages(1), ["still here"]);
  await client.close();
}

Deno.test("hostile handshakes over raw TCP get a 4xx, never a 500 or a hang", async () => {
  let cases = 0;
  await withCheckedRelay({ env: { RELAY_UPSTREAM_TIMEOUT_MS: "500" } }, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256());
    const q = `?jwt=${token}`;
    // [name, raw request, acceptable statuses (null: TCP closed without an answer), expected error code]
    const table: [string, string | Uint8Array, (number | null)[], string?][] = [
      [
        "missing Sec-WebSocket-Key",
        upgradeHead(`/relay/echo${q}`, { "sec-websocket-key": "" }),
        [400],
        "bad_handshake",
      ],
      [
        "version 8",
        upgradeHead(`/relay/echo${q}`, { "sec-websocket-version": "8" }),
        [400],
        "bad_handshake",
      ],
      [
        "key not 16 bytes of base64",
        upgradeHead(`/relay/echo${q}`, { "sec-websocket-key": "not a key!" }),
        [400],
        "bad_handshake",
      ],
      [
        "Upgrade: websocketx",
        upgradeHead(`/relay/echo${q}`, { upgrade: "websocketx" }),
        [426],
        "upgrade_required",
      ],
      [
        "Connection: close",
        upgradeHead(`/relay/echo${q}`, { connection: "close" }),
        [400],
        "bad_handshake",
      ],
      [
        "POST with upgrade",
        upgradeHead(`/relay/echo${q}`, {}, "POST"),
        [405],
        "method_not_allowed",
      ],
      ["unknown method", upgradeHead(`/relay/echo${q}`, {}, "BREW"), [405, 400]],
      [
        "HTTP/1.0 upgrade",
        upgradeHead(`/relay/echo${q}`, {}).replace("HTTP/1.1", "HTTP/1.0"),
        // Deno 2.9 upgrades an HTTP/1.0 request that carries a valid handshake (the
        // token still applies); 2.1.4 never answers it. regressions_test.ts proves
        // that such a stuck upgrade releases its slot and upstream.
        [101, 400, 426, 505, null, SILENT],
      ],
      ["garbage bytes", crypto.getRandomValues(new Uint8Array(2048)), [400, null]],
      ["not HTTP at all", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", [
        400,
        null,
      ]],
      [
        "a 100 KiB header",
        upgradeHead(`/relay/echo${q}`, { "x-huge": "a".repeat(100 * 1024) }),
        [101, 400, 431, null],
      ],
      [
        "2,000 headers",
        upgradeHead(
          `/relay/echo${q}`,
          Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`x-h${i}`, "v"])),
        ),
        [101, 400, 431, null],
      ],
      ["a 64 KiB path", upgradeHead(`/relay/${"a".repeat(64 * 1024)}`, {}), [
        400,
        404,
        414,
        431,
        null,
      ]],
      [
        "a control byte in a header value",
        upgradeHead(`/relay/echo${q}`, { "x-bad": "a\x01b" }),
        [400, null],
      ],
      ["path traversal", upgradeHead(`/relay/echo/../../etc/passwd${q}`, {}), [404, 400]],
      ["no token", upgradeHead(`/relay/echo`, {}), [401], "missing_token"],
      ["empty jwt", upgradeHead(`/relay/echo?jwt=`, {}), [401], "missing_token"],
    ];
    // Huge but well-formed requests carry a valid token: Deno 2.1.4 upgrades them
    // (101), 2.9 refuses them (431 or a closed socket). Neither is a 500 or a hang.
    for (const [name, request, statuses, error] of table) {
      const bytes = typeof request === "string" ? encoder.encode(request) : request;
      const answer = await rawRequest(relay.port, bytes, statuses.includes(SILENT) ? 1000 : 3000);
      assert.ok(
        statuses.includes(answer.status),
        `${name}: got ${answer.status === SILENT ? "no answer" : answer.status}, want one of ${
          statuses.join(", ")
        }`,
      );
      assert.notEqual(answer.status, 500, name);
      if (error) {
        assert.equal(JSON.parse(answer.body).error, error, name);
        assert.match(answer.head, /content-type: application\/json/i, name);
      }
      assert.ok(
        !answer.body.includes(token) && !answer.head.includes(token),
        `${name}: token echoed`,
      );
      cases++;
    }
    await stillServes(relay, token);
    // An upgrade left unanswered (HTTP/1.0 on Deno 2.1.4) is released after the upstream timeout.
    await until(() => relay.relay.connections() === 0, 8000, "stuck upgrades released");
  });
  recordFigure({
    area: "Hostile handshakes (raw TCP)",
    tried:
      "missing key, version 8, bad key, wrong Upgrade, Connection: close, POST/unknown method, HTTP/1.0, garbage and TLS bytes, 100 KiB header, 2,000 headers, 64 KiB path, control bytes, path traversal, no/empty token",
    counts: { cases },
    held:
      "each answered with the contract's 4xx (or a closed socket for non-HTTP); no 500, no hang; the instance served the next client",
    command: testCommand("hostile_test.ts", "hostile handshakes"),
  });
});

/** HMAC-SHA256 over `input` with `secret`, as a forger holding only public material would. */
async function hs256(input: string, secret: Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return base64url(await crypto.subtle.sign("HMAC", key, encoder.encode(input)));
}

Deno.test("token attacks over real sockets get 401 or 403 and never reach the upstream", async () => {
  let cases = 0;
  await withCheckedRelay({}, async (relay, secret) => {
    const { auth } = relay;
    const now = Math.floor(Date.now() / 1000);
    const good = secret(await auth.signEs256());
    const [goodHeader, goodPayload, goodSig] = good.split(".") as [string, string, string];
    const claims = {
      sub: auth.defaultUserId,
      role: "authenticated",
      aud: "authenticated",
      exp: now + 3600,
      iat: now,
    };
    const jwk = auth.jwks.keys[0] as JsonWebKey & { kid: string; x: string; y: string };
    const fromB64url = (s: string) =>
      Uint8Array.from(
        atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4)),
        (c) => c.charCodeAt(0),
      );
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y },
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["verify"],
    );
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
    const rawXY = new Uint8Array([...fromB64url(jwk.x), ...fromB64url(jwk.y)]);
    const confused = async (secretBytes: Uint8Array, kid?: string) => {
      const header = base64url(
        JSON.stringify({ alg: "HS256", typ: "JWT", ...(kid ? { kid } : {}) }),
      );
      const payload = base64url(JSON.stringify(claims));
      return `${header}.${payload}.${await hs256(`${header}.${payload}`, secretBytes)}`;
    };
    const pad = "x".repeat(8 * 1024);

    const table: [string, string, number, string][] = [
      ["alg none", forgeToken({ alg: "none", typ: "JWT" }, claims, ""), 401, "invalid_token"],
      [
        "alg None with a signature",
        forgeToken({ alg: "None", typ: "JWT", kid: jwk.kid }, claims, goodSig),
        401,
        "invalid_token",
      ],
      ["HS256 keyed with the JWK's x||y", await confused(rawXY, jwk.kid), 401, "invalid_token"],
      ["HS256 keyed with the SPKI DER", await confused(spki, jwk.kid), 401, "invalid_token"],
      [
        "HS256 keyed with the JWK JSON",
        await confused(encoder.encode(JSON.stringify(jwk))),
        401,
        "invalid_token",
      ],
      [
        "HS256 keyed with the publishable key",
        await confused(encoder.encode(auth.publishableKey)),
        401,
        "invalid_token",
      ],
      [
        "unknown kid",
        await auth.signEs256({}, { kid: "kid-that-does-not-exist" }),
        401,
        "invalid_token",
      ],
      [
        "expired an hour ago",
        await auth.signEs256({}, { expiresInS: -3600 }),
        401,
        "invalid_token",
      ],
      [
        "tampered payload",
        `${goodHeader}.${base64url(JSON.stringify({ ...claims, sub: "someone-else" }))}.${goodSig}`,
        401,
        "invalid_token",
      ],
      [
        "tampered header (alg RS256)",
        `${
          base64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid: jwk.kid }))
        }.${goodPayload}.${goodSig}`,
        401,
        "invalid_token",
      ],
      ["signature stripped", `${goodHeader}.${goodPayload}.`, 401, "invalid_token"],
      ["anon key", auth.anonKey, 403, "forbidden"],
      ["service-role key", auth.serviceRoleKey, 403, "forbidden"],
      [
        "valid signature, role service_role",
        await auth.signEs256({ role: "service_role" }),
        403,
        "forbidden",
      ],
      ["valid signature, no sub", await auth.signEs256({ sub: undefined }), 403, "forbidden"],
      ["non-base64 segments", "!!!.@@@.###", 401, "invalid_token"],
      ["non-JSON header", `bm90IGpzb24.${goodPayload}.${goodSig}`, 401, "invalid_token"],
      ["non-JSON payload", `${goodHeader}.bm90IGpzb24.${goodSig}`, 401, "invalid_token"],
      [
        "JSON array payload",
        `${goodHeader}.${base64url("[1,2]")}.${goodSig}`,
        401,
        "invalid_token",
      ],
      ["two segments", `${goodHeader}.${goodPayload}`, 401, "invalid_token"],
      ["four segments", `${good}.extra`, 401, "invalid_token"],
      [
        "8 KiB forged token",
        forgeToken({ alg: "ES256", kid: jwk.kid }, { ...claims, pad }, goodSig),
        401,
        "invalid_token",
      ],
    ];
    for (const [name, token, status, error] of table) {
      secret(token);
      const upstreamBefore = relay.openai.connections.length;
      const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
      client.abort();
      assert.equal(client.status, status, name);
      assert.equal(JSON.parse(client.body).error, error, name);
      assert.ok(!client.body.includes(token), `${name}: token echoed`);
      assert.equal(
        relay.openai.connections.length,
        upstreamBefore,
        `${name}: reached the upstream`,
      );
      cases++;
    }

    // Accepted: a valid 8 KiB token (query, header and subprotocol), a legacy HS256 user token.
    const big = secret(await auth.signEs256({ pad }));
    assert.ok(big.length > 8 * 1024);
    const accepted: [string, string, Record<string, string>, string[]][] = [
      ["8 KiB valid token in the query", `?jwt=${big}`, {}, []],
      ["8 KiB valid token as Bearer", "", { authorization: `Bearer ${big}` }, []],
      ["8 KiB valid token as a subprotocol", "", {}, [`jwt-${big}`, "realtime"]],
      [
        "HS256 user token signed with the project secret",
        `?jwt=${secret(await auth.signHs256())}`,
        {},
        [],
      ],
    ];
    for (const [name, query, headers, protocols] of accepted) {
      const client = await rawClient(`ws://127.0.0.1:${relay.port}/relay/echo${query}`, {
        headers,
        protocols,
      });
      assert.equal(client.status, 101, `${name}: ${client.body}`);
      await client.send("ok");
      const echo = await client.readEvent();
      assert.equal(echo?.kind === "message" ? echo.data : null, "ok", name);
      await client.close(1000, "bye");
      await client.readUntilClose();
      client.abort();
      cases++;
    }

    // nbf: getClaims checks signature and exp only (CONTRACT.md "The token"), so a
    // token that is not yet valid is accepted. Pinned here so a change is noticed.
    const notYet = secret(await auth.signEs256({ nbf: now + 3600 }));
    const early = await rawClient(relay.wsUrl("/relay/echo", { jwt: notYet }));
    early.abort();
    assert.equal(early.status, 101, "nbf in the future is not checked by getClaims");
    cases++;
    await stillServes(relay, good);
  });
  recordFigure({
    area: "Token attacks",
    tried:
      "alg none/None, HS256 keyed with public material (x||y, SPKI, JWK JSON, publishable key), unknown kid, expired, tampered payload and header, stripped signature, anon and service-role keys, forbidden role, no sub, non-base64/non-JSON segments, wrong segment counts, 8 KiB forged token; positives: 8 KiB valid token in query/Bearer/subprotocol, legacy HS256 user token; nbf in the future",
    counts: { cases },
    held:
      "every attack 401 invalid_token or 403 forbidden, never reached the upstream, never echoed; valid tokens accepted; nbf is not enforced (getClaims checks signature and exp only: documented)",
    command: testCommand("hostile_test.ts", "token attacks"),
  });
});

Deno.test("floods, oversized messages and lying frame headers close with 1008 or 1009", async () => {
  let cases = 0;
  const cap = 16 * 1024;
  await withCheckedRelay(
    { env: { RELAY_MAX_MESSAGE_BYTES: String(cap), RELAY_RATE_LIMIT: "50" } },
    async (relay, secret) => {
      const token = secret(await relay.auth.signEs256());
      const open = async () => {
        const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
        assert.equal(client.status, 101);
        return client;
      };
      const expectClose = async (
        client: Awaited<ReturnType<typeof open>>,
        code: number,
        reason: string,
        what: string,
      ) => {
        const closed = await within(client.readUntilClose(), 3000, what);
        client.abort();
        // CONTRACT: a client that keeps sending may see the socket torn down (null) after the code.
        if (closed !== null) assert.deepEqual([closed.code, closed.reason], [code, reason], what);
        cases++;
      };

      // A flood: 5,000 messages at once against 50/s (burst 100).
      let client = await open();
      const flood = Array.from(
        { length: 5000 },
        () => encodeFrame({ opcode: Opcode.Text, payload: "x", mask: true }),
      );
      const burst = new Uint8Array(flood.reduce((n, f) => n + f.byteLength, 0));
      flood.reduce((at, f) => (burst.set(f, at), at + f.byteLength), 0);
      await client.writeRaw(burst).catch(() => {});
      await expectClose(client, 1008, "rate_limited", "flood");

      // One byte over the cap, text and binary.
      client = await open();
      await client.send("a".repeat(cap + 1));
      await expectClose(client, 1009, "message_too_big", "text over the cap");
      client = await open();
      await client.send(new Uint8Array(cap + 1));
      await expectClose(client, 1009, "message_too_big", "binary over the cap");

      // Over the cap across continuation frames.
      client = await open();
      await client.sendFrame({
        opcode: Opcode.Binary,
        fin: false,
        payload: new Uint8Array(cap / 2),
      });
      await client.sendFrame({
        opcode: Opcode.Continuation,
        fin: false,
        payload: new Uint8Array(cap / 2),
      });
      await client.sendFrame({
        opcode: Opcode.Continuation,
        fin: true,
        payload: new Uint8Array(16),
      });
      await expectClose(client, 1009, "message_too_big", "fragments over the cap");

      // A frame header claiming 2^53 bytes, then nothing: must not wait for them or allocate them.
      for (const claimed of [2 ** 53, 2 ** 31, 200 * 1024 * 1024]) {
        client = await open();
        const header = new Uint8Array(14);
        header[0] = 0x82; // FIN + binary
        header[1] = 0x80 | 127; // masked, 64-bit length
        new DataView(header.buffer).setBigUint64(2, BigInt(claimed));
        header.set([1, 2, 3, 4], 10);
        await client.writeRaw(header);
        const closed = await within(
          client.readUntilClose(),
          3000,
          `header claiming ${claimed} bytes`,
        );
        client.abort();
        // Deno's socket refuses such a frame itself (1009) or drops TCP; either way no hang.
        assert.ok(
          closed === null || closed.code === 1009 || closed.code === 1002,
          `claimed ${claimed}: ${closed?.code}`,
        );
        cases++;
      }
      // An unmasked client frame: RFC 6455 says fail the connection, Deno's socket
      // accepts it. Either way it must be handled (relayed unchanged or closed), no hang.
      client = await open();
      await client.sendFrame({ opcode: Opcode.Text, payload: "unmasked", mask: false });
      const event = await within(client.readEvent(), 3000, "unmasked frame");
      assert.ok(
        event === null || (event.kind === "message" && event.data === "unmasked") ||
          (event.kind === "close" && event.code === 1002),
        `unmasked: ${event?.kind}`,
      );
      await client.close(1000, "bye").catch(() => {});
      await within(client.readUntilClose(), 3000, "close after unmasked");
      client.abort();
      cases++;
      // A message exactly at the cap still passes, after all of that.
      client = await open();
      await client.send(new Uint8Array(cap).fill(7));
      const echo = await client.readEvent();
      assert.equal(
        echo?.kind === "message" && echo.type === "binary" ? echo.data.byteLength : -1,
        cap,
      );
      await client.close(1000, "bye");
      await client.readUntilClose();
      client.abort();
      cases++;
      await stillServes(relay, token);
    },
  );
  recordFigure({
    area: "Floods and oversized frames",
    tried:
      "5,000-message burst at 50 msg/s, text/binary one byte over a 16 KiB cap, over the cap across fragments, frame headers claiming 2^53, 2^31 and 200 MiB, an unmasked frame, a message exactly at the cap",
    counts: { cases },
    held:
      "1008 rate_limited, 1009 message_too_big, 1009/1002 or a closed socket for lying headers; no hang; at-cap message relayed",
    command: testCommand("hostile_test.ts", "floods"),
  });
});

Deno.test("spoofed origins get 403 origin_not_allowed when an allow-list is set", async () => {
  let cases = 0;
  await withCheckedRelay(
    { env: { RELAY_ALLOWED_ORIGINS: "https://app.example.com" } },
    async (relay, secret) => {
      const token = secret(await relay.auth.signEs256());
      const table: [string, number][] = [
        ["https://app.example.com", 101],
        ["https://APP.example.com", 101],
        ["https://evil.com", 403],
        ["https://app.example.com.evil.com", 403],
        ["https://evil.com/https://app.example.com", 403],
        ["http://app.example.com", 403],
        ["https://app.example.co", 403],
        ["https://sub.app.example.com", 403],
        ["null", 403],
        ["https://app.example.com, https://evil.com", 403],
        ["https://evil.com, https://app.example.com", 403],
        ["", 403],
      ];
      for (const [origin, status] of table) {
        const client = await rawClient(relay.wsUrl("/relay/echo", { jwt: token }), {
          headers: { origin },
        });
        client.abort();
        assert.equal(client.status, status, `origin ${JSON.stringify(origin)}`);
        if (status === 403) assert.equal(JSON.parse(client.body).error, "origin_not_allowed");
        cases++;
      }
    },
  );
  recordFigure({
    area: "Origin spoofing",
    tried:
      "look-alike hosts, other schemes, suffix and prefix tricks, `null`, two origins in one header, empty",
    counts: { cases },
    held:
      "only the listed origin (host case-insensitive) upgrades; all others 403 origin_not_allowed",
    command: testCommand("hostile_test.ts", "spoofed origins"),
  });
});

Deno.test("a token accepted once is refused after it expires, and after tampering, despite any cache", async () => {
  await withCheckedRelay({}, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256({}, { expiresInS: 2 }));
    const status = async (jwt: string) => {
      const client = await rawClient(relay.wsUrl("/relay/echo", { jwt }));
      if (client.status === 101) {
        await client.close(1000, "bye");
        await client.readUntilClose();
      }
      client.abort();
      return client.status;
    };
    assert.equal(await status(token), 101, "fresh token accepted");
    assert.equal(await status(token), 101, "accepted again (a cache may answer)");
    const [h, p, s] = token.split(".") as [string, string, string];
    const flipped = `${h}.${p}.${s.slice(0, -2)}${s.endsWith("AA") ? "BB" : "AA"}`;
    assert.equal(await status(secret(flipped)), 401, "same payload, other signature");
    await new Promise((resolve) => setTimeout(resolve, 2600));
    assert.equal(
      await status(token),
      401,
      "expired token refused even though it was accepted before",
    );
  });
  recordFigure({
    area: "Token reuse after expiry",
    tried: "a 2 s token accepted twice, its signature altered, then reused after it expired",
    counts: { cases: 4 },
    held: "altered signature 401; expired token 401 although accepted (and possibly cached) before",
    command: testCommand("hostile_test.ts", "accepted once"),
  });
});
