/**
 * Proves the stand-ins behave like the services they replace, using the same
 * clients the relay uses: Deno's WebSocket and supabase-js. Sanitizers stay on.
 */

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { startAuthStandIn } from "./auth.ts";
import { base64url, decodeJwt, forgeToken } from "./jwt.ts";
import { delay, startOpenAIStandIn } from "./openai.ts";
import { rawClient } from "./raw_client.ts";
import { closePayload, encodeFrame, Opcode } from "./ws_frames.ts";

// ---- helpers ----------------------------------------------------------------

interface Observed {
  ws: WebSocket;
  opened: boolean;
  messages: (string | Uint8Array)[];
  closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
  next(): Promise<string | Uint8Array>;
}

/** Opens Deno's own WebSocket the way the relay does and records everything it sees. */
function connect(url: string, protocols: string[]): Observed {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const messages: (string | Uint8Array)[] = [];
  let wake: (() => void) | undefined;
  const o: Observed = {
    ws,
    opened: false,
    messages,
    closed: new Promise((resolve) => {
      ws.onclose = (e) => {
        wake?.();
        resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      };
    }),
    async next() {
      let i = 0;
      while (messages.length === 0) {
        if (ws.readyState === WebSocket.CLOSED || i++ > 1000) {
          throw new Error("socket closed while waiting for a message");
        }
        await new Promise<void>((r) => (wake = r));
      }
      return messages.shift()!;
    },
  };
  ws.onopen = () => (o.opened = true);
  ws.onerror = () => {};
  ws.onmessage = (e) => {
    messages.push(
      typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer),
    );
    wake?.();
  };
  return o;
}

function opened(o: Observed): Promise<void> {
  return new Promise((resolve, reject) => {
    if (o.ws.readyState === WebSocket.OPEN) return resolve();
    o.ws.addEventListener("open", () => resolve(), { once: true });
    o.ws.addEventListener(
      "close",
      () => reject(new Error("closed before open")),
      { once: true },
    );
  });
}

async function nextJson(o: Observed): Promise<Record<string, unknown>> {
  const m = await o.next();
  assert.equal(typeof m, "string");
  return JSON.parse(m as string);
}

function keyProtocols(key: string): string[] {
  return ["realtime", `openai-insecure-api-key.${key}`];
}

// ---- OpenAI stand-in ---------------------------------------------------------

/**
 * A closure without a close frame. Browsers report 1006; Deno's WebSocket
 * (2.1.4 and 2.9) reports code 0 for a failed handshake or a dropped TCP
 * connection, so the relay must treat both as abnormal.
 */
const ABNORMAL = [1006, 0];

Deno.test("openai echo: text and binary come back byte-identical, handshake recorded", async () => {
  const oa = await startOpenAIStandIn();
  try {
    const c = connect(`${oa.url}?model=gpt-realtime&jwt=secret`, keyProtocols(oa.apiKey));
    await opened(c);
    assert.equal(c.ws.protocol, "realtime");
    const text = 'héllo \u{1F600} {"type":"x"}';
    const bin = new Uint8Array(70000).map((_, i) => (i * 7) & 0xff);
    c.ws.send(text);
    c.ws.send(bin);
    c.ws.send(new Uint8Array(0));
    c.ws.send("");
    assert.equal(await c.next(), text);
    assert.deepEqual(await c.next(), bin);
    assert.deepEqual(await c.next(), new Uint8Array(0));
    assert.equal(await c.next(), "");
    c.ws.close(1000, "bye");
    const ev = await c.closed;
    assert.equal(ev.code, 1000);
    assert.equal(ev.reason, "bye");

    const rec = oa.connections[0]!;
    await rec.closed;
    assert.equal(rec.url, "/v1/realtime?model=gpt-realtime&jwt=secret");
    assert.deepEqual(rec.protocols, keyProtocols(oa.apiKey));
    assert.equal(rec.selectedProtocol, "realtime");
    assert.equal(rec.status, 101);
    assert.equal(rec.headers["upgrade"]?.toLowerCase(), "websocket");
    assert.equal(rec.received.length, 4);
    assert.deepEqual(rec.received[0], { type: "text", data: text });
    assert.deepEqual(rec.received[1], { type: "binary", data: bin });
    assert.deepEqual(rec.closeReceived, { code: 1000, reason: "bye" });
  } finally {
    await oa.close();
  }
});

Deno.test("openai realtime: GA event sequence with usage, errors for bad input", async () => {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
  try {
    const c = connect(`${oa.url}?model=gpt-realtime`, keyProtocols(oa.apiKey));
    await opened(c);
    const created = await nextJson(c);
    assert.equal(Object.keys(created)[0], "type");
    assert.equal(created.type, "session.created");
    assert.match(String(created.event_id), /^event_/);
    const session = created.session as Record<string, unknown>;
    assert.equal(session.type, "realtime");
    assert.equal(session.model, "gpt-realtime");
    assert.match(String(session.id), /^sess_/);
    assert.deepEqual(session.output_modalities, ["audio"]);

    c.ws.send(JSON.stringify({
      type: "session.update",
      session: { type: "realtime", output_modalities: ["text"] },
    }));
    const updated = await nextJson(c);
    assert.equal(updated.type, "session.updated");
    assert.deepEqual(
      (updated.session as Record<string, unknown>).output_modalities,
      ["text"],
    );

    c.ws.send(
      JSON.stringify({ type: "input_audio_buffer.append", audio: btoa("\0".repeat(4800)) }),
    );
    c.ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    assert.equal((await nextJson(c)).type, "input_audio_buffer.committed");
    assert.equal((await nextJson(c)).type, "conversation.item.added");
    assert.equal((await nextJson(c)).type, "conversation.item.done");

    c.ws.send(JSON.stringify({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "ping pong" }] },
    }));
    assert.equal((await nextJson(c)).type, "conversation.item.added");
    assert.equal((await nextJson(c)).type, "conversation.item.done");

    c.ws.send(JSON.stringify({ type: "response.create" }));
    const types: string[] = [];
    let text = "";
    let done: Record<string, unknown> | undefined;
    while (!done) {
      const e = await nextJson(c);
      assert.equal(Object.keys(e)[0], "type");
      types.push(String(e.type));
      if (e.type === "response.output_text.delta") text += e.delta;
      if (e.type === "response.done") done = e;
    }
    assert.deepEqual(types.filter((t) => t !== "response.output_text.delta"), [
      "response.created",
      "response.output_item.added",
      "conversation.item.added",
      "response.content_part.added",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "conversation.item.done",
      "response.done",
    ]);
    assert.ok(types.filter((t) => t === "response.output_text.delta").length > 1);
    // The answer comes from the context: the audio item before it was heard as its length.
    assert.equal(
      text,
      'You said: "ping pong". I remember 1 earlier item; the first thing you said was: "100 ms of audio".',
    );
    const response = done.response as Record<string, unknown>;
    assert.equal(response.status, "completed");
    const usage = response.usage as Record<string, unknown>;
    assert.equal(
      usage.total_tokens,
      (usage.input_tokens as number) + (usage.output_tokens as number),
    );
    assert.equal(typeof usage.input_token_details, "object");
    assert.equal(typeof usage.output_token_details, "object");

    c.ws.send("{not json");
    const bad = await nextJson(c);
    assert.equal(bad.type, "error");
    assert.equal((bad.error as Record<string, unknown>).code, "invalid_json");
    c.ws.send(JSON.stringify({ type: "nope.nope", event_id: "evt_1" }));
    const unknown = await nextJson(c);
    assert.deepEqual(
      {
        ...(unknown.error as Record<string, unknown>),
        message: undefined,
      },
      {
        type: "invalid_request_error",
        code: "invalid_value",
        message: undefined,
        param: "type",
        event_id: "evt_1",
      },
    );
    c.ws.close(1000, "done");
    await c.closed;
  } finally {
    await oa.close();
  }
});

Deno.test("openai refuse: HTTP status with OpenAI's JSON error, the client never opens", async () => {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "refuse", status: 503 } });
  try {
    const c = connect(`${oa.url}?model=gpt-realtime`, keyProtocols(oa.apiKey));
    const ev = await c.closed;
    assert.equal(c.opened, false);
    assert.equal(ev.wasClean, false);
    assert.ok(ABNORMAL.includes(ev.code), `code ${ev.code}`);

    oa.behaviour = { kind: "refuse", status: 429 };
    const raw = await rawClient(`${oa.url}?model=gpt-realtime`);
    try {
      assert.equal(raw.status, 429);
      assert.equal(raw.headers["content-type"], "application/json");
      const body = JSON.parse(raw.body);
      assert.equal(body.error.code, "rate_limit_exceeded");
    } finally {
      raw.abort();
    }
    assert.equal(oa.connections[1]!.status, 429);
  } finally {
    await oa.close();
  }
});

Deno.test("openai hang: the upgrade is never answered; handshakeDelayMs delays it", async () => {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "hang" } });
  try {
    const c = connect(`${oa.url}?model=gpt-realtime`, keyProtocols(oa.apiKey));
    await oa.waitForConnections(1);
    // Client-side timeout: nothing arrives within 300 ms.
    await delay(300);
    assert.equal(c.ws.readyState, WebSocket.CONNECTING);
    assert.equal(oa.connections[0]!.status, undefined);
    c.ws.close();
    // Deno cannot abort its own pending handshake: 2.1.4 stays CLOSING (no
    // close event) and 2.9 keeps the TCP connection open, until the server
    // side ends it. So the test ends it from the stand-in.
    oa.connections[0]!.drop();
    await c.closed;
    assert.equal(c.opened, false);
    await oa.connections[0]!.closed;

    oa.behaviour = { kind: "echo" };
    oa.handshakeDelayMs = 250;
    const t0 = performance.now();
    const d = connect(`${oa.url}?model=gpt-realtime`, keyProtocols(oa.apiKey));
    await opened(d);
    assert.ok(performance.now() - t0 >= 240);
    d.ws.close(1000, "x");
    await d.closed;
  } finally {
    await oa.close();
  }
});

Deno.test("openai close: 4000 with reason, 1011 after a message, empty payload is 1005", async () => {
  const oa = await startOpenAIStandIn({
    behaviour: { kind: "close", code: 4000, reason: "custom reason" },
  });
  try {
    const a = connect(`${oa.url}?model=m`, keyProtocols(oa.apiKey));
    assert.deepEqual(
      { ...(await a.closed), wasClean: undefined },
      { code: 4000, reason: "custom reason", wasClean: undefined },
    );

    oa.behaviour = { kind: "close", code: 1011, reason: "boom", afterMessages: 2 };
    const b = connect(`${oa.url}?model=m`, keyProtocols(oa.apiKey));
    await opened(b);
    b.ws.send("one");
    b.ws.send("two");
    const bev = await b.closed;
    assert.equal(bev.code, 1011);
    assert.equal(bev.reason, "boom");
    await oa.connections[1]!.closed;
    assert.deepEqual(oa.connections[1]!.closeSent, { code: 1011, reason: "boom" });

    oa.behaviour = { kind: "close" };
    const c = connect(`${oa.url}?model=m`, keyProtocols(oa.apiKey));
    assert.equal((await c.closed).code, 1005);

    // A code no API may send (1006) still goes out byte for byte.
    oa.behaviour = { kind: "close", code: 1006, reason: "raw", raw: true };
    const r = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });
    try {
      const f = await r.readFrame();
      assert.equal(f?.opcode, Opcode.Close);
      assert.deepEqual(f?.payload, closePayload(1006, "raw"));
      assert.equal(await r.readFrame(), null); // raw: TCP ends right after
    } finally {
      r.abort();
    }
  } finally {
    await oa.close();
  }
});

Deno.test("openai drop: TCP ends without a close frame, the client sees an abnormal closure", async () => {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "drop", afterMessages: 1 } });
  try {
    const c = connect(`${oa.url}?model=m`, keyProtocols(oa.apiKey));
    await opened(c);
    c.ws.send("hi");
    const ev = await c.closed;
    assert.ok(ABNORMAL.includes(ev.code), `code ${ev.code}`);
    assert.equal(ev.wasClean, false);

    // On the wire: the stream simply ends, no close frame.
    oa.behaviour = { kind: "drop" };
    const r = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });
    try {
      assert.equal(r.status, 101);
      assert.equal(await r.readUntilClose(), null);
    } finally {
      r.abort();
    }
  } finally {
    await oa.close();
  }
});

Deno.test("openai handshake rules: bad key, beta shape, missing model, bearer header", async () => {
  const oa = await startOpenAIStandIn();
  try {
    const expectRefusal = async (
      url: string,
      opts: Parameters<typeof rawClient>[1],
      code: string,
      closeCode: number,
    ) => {
      const r = await rawClient(url, opts);
      try {
        assert.equal(r.status, 101);
        const first = await r.readEvent();
        assert.equal(first?.kind, "message");
        const ev = JSON.parse((first as { data: string }).data);
        assert.equal(ev.type, "error");
        assert.equal(ev.error.code, code);
        const close = await r.readEvent();
        assert.deepEqual(close, {
          kind: "close",
          code: closeCode,
          reason: `invalid_request_error.${code}`,
        });
        await r.close(closeCode, "");
        assert.equal(await r.readFrame().catch(() => null), null);
      } finally {
        r.abort();
      }
    };
    await expectRefusal(
      `${oa.url}?model=m`,
      { protocols: keyProtocols("sk-wrong") },
      "invalid_api_key",
      3000,
    );
    await expectRefusal(`${oa.url}?model=m`, {}, "invalid_api_key", 3000);
    await expectRefusal(
      `${oa.url}?model=m`,
      { protocols: [...keyProtocols(oa.apiKey), "openai-beta.realtime-v1"] },
      "beta_api_shape_disabled",
      4000,
    );
    await expectRefusal(
      `${oa.url}?model=m`,
      { headers: { authorization: `Bearer ${oa.apiKey}`, "openai-beta": "realtime=v1" } },
      "beta_api_shape_disabled",
      4000,
    );
    await expectRefusal(oa.url, { protocols: keyProtocols(oa.apiKey) }, "missing_model", 4000);

    // Bearer header auth works, and no protocol is echoed when none was offered.
    const ok = await rawClient(`${oa.url}?model=m`, {
      headers: { authorization: `Bearer ${oa.apiKey}` },
    });
    try {
      assert.equal(ok.status, 101);
      assert.equal(ok.protocol, undefined);
      await ok.send("x");
      assert.deepEqual(await ok.readEvent(), { kind: "message", type: "text", data: "x" });
      await ok.close(1000, "");
      assert.deepEqual(await ok.readUntilClose(), { kind: "close", code: 1000, reason: "" });
    } finally {
      ok.abort();
    }
    const wrongPath = await rawClient(oa.url.replace("/v1/realtime", "/v1/nope"));
    wrongPath.abort();
    assert.equal(wrongPath.status, 404);
  } finally {
    await oa.close();
  }
});

Deno.test("openai framing: fragments with an interleaved ping, pong, unmasked frame is a protocol error", async () => {
  const oa = await startOpenAIStandIn();
  try {
    const r = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });
    try {
      await r.sendFrame({ opcode: Opcode.Text, fin: false, payload: "frag" });
      await r.sendFrame({ opcode: Opcode.Ping, payload: "p1" });
      await r.sendFrame({ opcode: Opcode.Continuation, fin: false, payload: "men" });
      await r.sendFrame({ opcode: Opcode.Continuation, fin: true, payload: "ted" });
      assert.deepEqual(await r.readEvent(), {
        kind: "pong",
        payload: new TextEncoder().encode("p1"),
      });
      assert.deepEqual(await r.readEvent(), { kind: "message", type: "text", data: "fragmented" });
      await r.writeRaw(encodeFrame({ opcode: Opcode.Text, payload: "unmasked" }));
      const close = await r.readEvent();
      assert.equal(close?.kind, "close");
      assert.equal((close as { code: number }).code, 1002);
    } finally {
      r.abort();
    }
  } finally {
    await oa.close();
  }
});

Deno.test("openai flood and stall: backpressure both ways, close() cleans up", async () => {
  const oa = await startOpenAIStandIn({
    behaviour: { kind: "flood", messageBytes: 65536, count: 50 },
  });
  // Deno 2.1.4 cannot cancel a blocked write by closing the socket: it settles
  // only when the peer goes away, so it is awaited after the stand-in closed.
  let blockedWrite: Promise<unknown> | undefined;
  try {
    const r = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });
    try {
      let bytes = 0;
      for (let i = 0; i < 50; i++) {
        const ev = await r.readEvent();
        assert.equal(ev?.kind, "message");
        bytes += (ev as { data: Uint8Array }).data.byteLength;
      }
      assert.equal(bytes, 50 * 65536);
    } finally {
      r.abort();
    }

    // Unbounded flood towards a client that does not read: the stand-in blocks, not the test.
    oa.behaviour = { kind: "flood", messageBytes: 1 << 20 };
    const idle = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });

    oa.behaviour = { kind: "stall" };
    const s = await rawClient(`${oa.url}?model=m`, { protocols: keyProtocols(oa.apiKey) });
    const big = new Uint8Array(1 << 20);
    let written = 0;
    let blocked = false;
    for (let i = 0; i < 64 && !blocked; i++) {
      const w = s.send(big).then(() => true);
      const res = await Promise.race([w, delay(200).then(() => false)]);
      if (res) written++;
      else {
        blocked = true;
        s.abort();
        blockedWrite = w.catch(() => {});
      }
    }
    assert.ok(blocked, `stalled peer accepted ${written} MiB without blocking`);
    idle.abort();
  } finally {
    await oa.close();
    await blockedWrite;
  }
});

Deno.test("openai live controls: send and close from the test on an open connection", async () => {
  const oa = await startOpenAIStandIn();
  try {
    const c = connect(`${oa.url}?model=m`, keyProtocols(oa.apiKey));
    await opened(c);
    const rec = oa.connections[0]!;
    await rec.send("pushed");
    await rec.send(new Uint8Array([1, 2, 3]));
    assert.equal(await c.next(), "pushed");
    assert.deepEqual(await c.next(), new Uint8Array([1, 2, 3]));
    await rec.close(4321, "from test");
    assert.equal((await c.closed).code, 4321);
    await rec.closed;
  } finally {
    await oa.close();
  }
});

// ---- Auth stand-in -------------------------------------------------------------

let clientSeq = 0;

/**
 * A fresh supabase-js client per test. auth-js caches the JWKS in a module
 * global keyed by storageKey (default "sb-127-auth-token" for 127.0.0.1), so
 * each client gets its own storageKey or caches would leak across tests.
 */
function supabase(url: string, key: string) {
  return createClient(url, key, {
    auth: {
      persistSession: false,
      autoRefreshToken: false,
      detectSessionInUrl: false,
      storageKey: `sb-stand-in-${++clientSeq}`,
    },
  });
}

Deno.test("auth: ES256 via cached JWKS, HS256 via /user, expired and tampered fail", async () => {
  const auth = await startAuthStandIn();
  try {
    const sb = supabase(auth.url, auth.publishableKey);
    const token = await auth.signEs256();
    const r1 = await sb.auth.getClaims(token);
    assert.equal(r1.error, null);
    assert.equal(r1.data?.claims.sub, auth.defaultUserId);
    assert.equal(r1.data?.claims.role, "authenticated");
    assert.equal(r1.data?.header.kid, auth.currentKid);
    const r2 = await sb.auth.getClaims(await auth.signEs256({ email: "b@example.com" }));
    assert.equal(r2.error, null);
    assert.deepEqual(auth.requests, { jwks: 1, user: 0 });

    const hs = await auth.signHs256();
    const r3 = await sb.auth.getClaims(hs);
    assert.equal(r3.error, null);
    assert.deepEqual(auth.requests, { jwks: 1, user: 1 });

    const expired = await sb.auth.getClaims(await auth.signEs256({}, { expiresInS: -10 }));
    assert.equal(expired.data, null);
    assert.equal(expired.error?.name, "AuthInvalidJwtError");

    const [h, p] = token.split(".");
    const payload = decodeJwt(token).payload;
    const tampered = `${h}.${base64url(JSON.stringify({ ...payload, role: "service_role" }))}.${
      token.split(".")[2]
    }`;
    const t = await sb.auth.getClaims(tampered);
    assert.equal(t.error?.name, "AuthInvalidJwtError");
    void p;

    // Through /user, a forged HS256 signature is GoTrue's 403 bad_jwt.
    const forged = await sb.auth.getClaims(await auth.signHs256({}, { secret: "not-the-secret" }));
    assert.equal(forged.error?.status, 403);
    assert.equal((forged.error as { code?: string }).code, "bad_jwt");
    assert.match(forged.error!.message, /^invalid JWT: unable to parse or verify signature, /);
  } finally {
    await auth.close();
  }
});

Deno.test("auth: anon and service-role keys, alg none and unknown kid are 403 bad_jwt", async () => {
  const auth = await startAuthStandIn();
  try {
    const sb = supabase(auth.url, auth.publishableKey);
    assert.equal(decodeJwt(auth.anonKey).payload.sub, undefined);
    for (const key of [auth.anonKey, auth.serviceRoleKey]) {
      const r = await sb.auth.getClaims(key);
      assert.equal(r.error?.name, "AuthApiError");
      assert.equal(r.error?.status, 403);
      assert.equal((r.error as { code?: string }).code, "bad_jwt");
      assert.equal(r.error?.message, "invalid claim: missing sub claim");
    }
    const none = forgeToken(
      { alg: "none", typ: "JWT" },
      decodeJwt(await auth.signEs256()).payload,
    );
    const rn = await sb.auth.getClaims(none);
    assert.equal(rn.error?.status, 403);
    assert.match(rn.error!.message, /signing method none is invalid/);

    const unknownKid = await sb.auth.getClaims(await auth.signEs256({}, { kid: "nope" }));
    assert.equal(unknownKid.error?.status, 403);
    assert.match(unknownKid.error!.message, /invalid kid: nope/);
    assert.equal(auth.requests.jwks, 1); // fetched once, kid still unknown: /user decided
  } finally {
    await auth.close();
  }
});

Deno.test("auth: rotated key is fetched on unknown kid; SUPABASE_JWKS-style jwks skips the fetch", async () => {
  const auth = await startAuthStandIn();
  try {
    const sb = supabase(auth.url, auth.publishableKey);
    assert.equal((await sb.auth.getClaims(await auth.signEs256())).error, null);
    const oldToken = await auth.signEs256();
    await auth.rotateKey();
    assert.equal(auth.jwks.keys.length, 2);
    assert.equal((await sb.auth.getClaims(await auth.signEs256())).error, null);
    assert.equal(auth.requests.jwks, 2);
    assert.equal((await sb.auth.getClaims(oldToken)).error, null);

    const fresh = supabase(auth.url, auth.publishableKey);
    const r = await fresh.auth.getClaims(await auth.signEs256(), {
      // auth-js's JWK type requires members JsonWebKey leaves optional.
      jwks: auth.jwks as never,
    });
    assert.equal(r.error, null);
    assert.equal(auth.requests.jwks, 2);

    await auth.rotateKey({ dropOld: true });
    assert.equal(auth.jwks.keys.length, 1);
    for (const k of auth.jwks.keys) assert.equal("d" in k, false);
  } finally {
    await auth.close();
  }
});

Deno.test("auth: down is a retryable 503, malformed and refused fail, slow delays", async () => {
  const auth = await startAuthStandIn();
  try {
    const sb = supabase(auth.url, auth.publishableKey);
    const hs = await auth.signHs256();

    await auth.setMode("down");
    const down = await sb.auth.getClaims(hs);
    assert.equal(down.error?.name, "AuthRetryableFetchError");
    assert.equal(down.error?.status, 503);
    const downEs = await sb.auth.getClaims(await auth.signEs256());
    assert.equal(downEs.error?.name, "AuthRetryableFetchError");

    await auth.setMode("malformed");
    const bad = await sb.auth.getClaims(hs);
    assert.ok(bad.error, "a non-JSON 200 must be an error");
    assert.equal(bad.error?.name, "AuthRetryableFetchError");

    await auth.setMode("slow", { slowMs: 300 });
    const t0 = performance.now();
    assert.equal((await sb.auth.getClaims(hs)).error, null);
    assert.ok(performance.now() - t0 >= 290);

    await auth.setMode("refuse");
    await assert.rejects(fetch(`${auth.url}/auth/v1/health`));
    const refused = await sb.auth.getClaims(hs);
    assert.equal(refused.error?.name, "AuthRetryableFetchError");
    assert.equal(refused.error?.status, 0);

    await auth.setMode("up");
    assert.equal((await sb.auth.getClaims(hs)).error, null);

    // close() during a slow answer: the timer is cleared, nothing leaks.
    await auth.setMode("slow", { slowMs: 60_000 });
    const pending = fetch(`${auth.url}/auth/v1/user`).then((r) => r.body?.cancel(), () => {});
    await delay(50);
    await auth.close();
    await pending;
  } finally {
    await auth.close();
  }
});

Deno.test("auth: gateway and GoTrue error shapes over plain fetch", async () => {
  const auth = await startAuthStandIn();
  try {
    const get = async (headers: Record<string, string>) => {
      const r = await fetch(`${auth.url}/auth/v1/user`, { headers });
      return { status: r.status, headers: r.headers, body: await r.json() };
    };
    const noKey = await get({});
    assert.equal(noKey.status, 401);
    assert.equal(noKey.body.message, "No API key found in request");
    const wrongKey = await get({ apikey: "sb_publishable_wrong" });
    assert.equal(wrongKey.status, 401);
    assert.equal(wrongKey.body.message, "Invalid API key");

    const v = { apikey: auth.publishableKey, "x-supabase-api-version": "2024-01-01" };
    const noBearer = await get(v);
    assert.equal(noBearer.status, 401);
    assert.deepEqual(noBearer.body, {
      code: "no_authorization",
      message: "This endpoint requires a Bearer token",
    });
    assert.equal(noBearer.headers.get("x-supabase-api-version"), "2024-01-01");
    assert.equal(noBearer.headers.get("content-type"), "application/json");

    const legacy = await get({ apikey: auth.anonKey, authorization: "Bearer x.y" });
    assert.equal(legacy.status, 403);
    assert.equal(legacy.body.error_code, "bad_jwt");
    assert.equal(legacy.body.code, 403);
    assert.match(legacy.body.msg, /invalid number of segments/);

    const session = await auth.issueDevToken({ email: "dev@example.com" });
    const ok = await get({ ...v, authorization: `Bearer ${session.access_token}` });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.id, session.user.id);
    assert.equal(ok.body.email, "dev@example.com");
    assert.equal(ok.body.aud, "authenticated");
    assert.ok(Array.isArray(ok.body.identities));
    assert.equal(session.token_type, "bearer");
    assert.ok(session.expires_at > Date.now() / 1000);
    const again = await auth.issueDevToken({ email: "dev@example.com" });
    assert.equal(again.user.id, session.user.id);

    auth.deleteUser(String(session.user.id));
    const gone = await get({ ...v, authorization: `Bearer ${session.access_token}` });
    assert.equal(gone.status, 403);
    assert.equal(gone.body.code, "user_not_found");

    const expired = await get({
      ...v,
      authorization: `Bearer ${await auth.signHs256({}, { expiresInS: -5 })}`,
    });
    assert.equal(expired.status, 403);
    assert.equal(
      expired.body.message,
      "invalid JWT: unable to parse or verify signature, token has invalid claims: token is expired",
    );

    const jwks = await fetch(`${auth.url}/auth/v1/.well-known/jwks.json`);
    const doc = await jwks.json();
    assert.equal(doc.keys[0].kty, "EC");
    assert.equal(doc.keys[0].alg, "ES256");
    assert.equal(doc.keys[0].kid, auth.currentKid);
  } finally {
    await auth.close();
  }
});
