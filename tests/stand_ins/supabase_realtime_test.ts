/**
 * The Realtime stand-in, driven by supabase-js itself (the library the relay
 * uses for its bus), plus raw WebSocket checks of wire details supabase-js
 * hides. A change in supabase-js's protocol that the stand-in does not speak
 * breaks these tests.
 */

import assert from "node:assert/strict";
import { createClient, type RealtimeChannel, type SupabaseClient } from "@supabase/supabase-js";
import {
  type RealtimeStandIn,
  type RealtimeStandInOptions,
  shutDownRealtimeClient,
  startRealtimeStandIn,
} from "./supabase_realtime.ts";
import { startAuthStandIn } from "./auth.ts";

let clientSeq = 0;

/** A supabase-js client; its own auth storage key so auth-js state never leaks across clients. */
function client(
  url: string,
  key: string,
  realtime: Record<string, unknown> = {},
): SupabaseClient {
  return createClient(url, key, {
    auth: {
      persistSession: false,
      autoRefreshToken: false,
      detectSessionInUrl: false,
      storageKey: `sb-realtime-stand-in-${++clientSeq}`,
    },
    // Quick reconnects keep the reconnect tests short; everything else is the default.
    realtime: { reconnectAfterMs: () => 100, ...realtime },
    global: { fetch: readingFetch },
  });
}

/**
 * fetch that reads every response body before handing the response on:
 * realtime-js's `httpSend()` returns on a 202 without reading or cancelling
 * the body (realtime-js 2.119.1, RealtimeChannel.httpSend), which Deno
 * 2.1.4's resource sanitizer reports as a leak.
 */
async function readingFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const res = await fetch(input, init);
  const body = await res.arrayBuffer();
  return new Response(body.byteLength === 0 ? null : body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/** Polls until `check` holds; the timer never outlives it. */
async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Subscribes and records every status supabase-js reports. */
function subscribe(channel: RealtimeChannel): { statuses: string[]; errors: Error[] } {
  const log = { statuses: [] as string[], errors: [] as Error[] };
  channel.subscribe((status, err) => {
    log.statuses.push(status);
    if (err) log.errors.push(err);
  });
  return log;
}

async function subscribed(
  channel: RealtimeChannel,
): Promise<{ statuses: string[]; errors: Error[] }> {
  const log = subscribe(channel);
  await waitFor(`${channel.topic} SUBSCRIBED`, () => log.statuses.includes("SUBSCRIBED"));
  return log;
}

/** Runs `body` with a stand-in and closes every client it made, then the stand-in. */
async function withStandIn(
  opts: RealtimeStandInOptions,
  body: (rt: RealtimeStandIn, make: typeof client) => Promise<void>,
): Promise<void> {
  const rt = await startRealtimeStandIn({ joinErrorDelayMs: 20, ...opts });
  const made: SupabaseClient[] = [];
  try {
    await body(rt, (url, key, realtime) => {
      const c = client(url, key, realtime);
      made.push(c);
      return c;
    });
  } finally {
    for (const c of made) await shutDownRealtimeClient(c);
    await rt.close();
  }
}

const ROOM = "relay:room:lobby";
const PRIVATE = (key: string, extra: Record<string, unknown> = {}) => ({
  config: { private: true, broadcast: { self: false }, presence: { key }, ...extra },
});

Deno.test("Realtime stand-in: secret-key clients exchange JSON broadcasts on a private channel, in order, with self and ack", async () => {
  await withStandIn({}, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const b = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, {
      config: { private: true, broadcast: { self: true, ack: true }, presence: { key: "b" } },
    });
    const gotA: unknown[] = [];
    const gotB: unknown[] = [];
    chA.on("broadcast", { event: "msg" }, (m) => gotA.push(m));
    chB.on("broadcast", { event: "msg" }, (m) => gotB.push(m));
    await subscribed(chA);
    await subscribed(chB);

    // self: false (A) never hears itself; B hears every message, in order.
    for (let i = 0; i < 20; i++) {
      assert.equal(await chA.send({ type: "broadcast", event: "msg", payload: { i } }), "ok");
    }
    await waitFor("20 at B", () => gotB.length === 20);
    assert.deepEqual(
      gotB.map((m) => (m as { payload: { i: number } }).payload.i),
      [...Array(20).keys()],
    );
    assert.deepEqual(gotB[0], { type: "broadcast", event: "msg", payload: { i: 0 } });
    assert.equal(gotA.length, 0);

    // ack: true makes send() wait for Realtime's reply; self: true echoes to B.
    const before = rt.stats.broadcasts;
    assert.equal(await chB.send({ type: "broadcast", event: "msg", payload: { from: "b" } }), "ok");
    assert.equal(rt.stats.broadcasts, before + 1);
    await waitFor("echo at B and delivery at A", () => gotB.length === 21 && gotA.length === 1);
    assert.deepEqual(gotA[0], { type: "broadcast", event: "msg", payload: { from: "b" } });

    // An event filter still applies: "other" reaches nobody listening for "msg" only.
    await chA.send({ type: "broadcast", event: "other", payload: {} });
    await chB.send({ type: "broadcast", event: "msg", payload: { last: true } });
    await waitFor("last", () => gotA.length === 2);
    assert.deepEqual((gotA[1] as { payload: unknown }).payload, { last: true });
    assert.equal(rt.stats.joins, 2);
  });
});

Deno.test("Realtime stand-in: a binary ArrayBuffer broadcast arrives byte-identical as an ArrayBuffer", async () => {
  await withStandIn({}, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const b = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, PRIVATE("b"));
    const got: { event: string; payload: unknown }[] = [];
    chB.on(
      "broadcast",
      { event: "audio" },
      (m) => got.push({ event: m.event, payload: m.payload }),
    );
    await subscribed(chA);
    await subscribed(chB);

    const bytes = new Uint8Array(70_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) % 256;
    assert.equal(
      await chA.send({ type: "broadcast", event: "audio", payload: bytes.buffer }),
      "ok",
    );
    await waitFor("binary at B", () => got.length === 1);
    const payload = got[0]!.payload;
    assert.ok(payload instanceof ArrayBuffer, "payload is an ArrayBuffer");
    assert.deepEqual(new Uint8Array(payload), bytes);
    assert.equal(got[0]!.event, "audio");
  });
});

Deno.test("Realtime stand-in: presence sync, join and leave through supabase-js's presence API; a dropped socket leaves at once", async () => {
  await withStandIn({}, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const b = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("instance-a"));
    const chB = b.channel(ROOM, PRIVATE("instance-b"));
    const events: string[] = [];
    let syncs = 0;
    chA.on("presence", { event: "sync" }, () => syncs++);
    chA.on("presence", { event: "join" }, ({ key }) => events.push(`join ${key}`));
    chA.on("presence", { event: "leave" }, ({ key }) => events.push(`leave ${key}`));
    chB.on("presence", { event: "sync" }, () => {});
    await subscribed(chA);
    await waitFor("initial sync", () => syncs === 1);
    assert.deepEqual(chA.presenceState(), {});

    assert.equal(await chA.track({ at: 1 }), "ok");
    await subscribed(chB);
    assert.equal(await chB.track({ at: 2 }), "ok");
    await waitFor("both present", () => Object.keys(chA.presenceState()).length === 2);
    assert.deepEqual(events, ["join instance-a", "join instance-b"]);
    const state = chA.presenceState() as Record<string, { at: number; presence_ref: string }[]>;
    assert.equal(state["instance-b"]![0]!.at, 2);
    assert.equal(typeof state["instance-b"]![0]!.presence_ref, "string");
    // B's presence_state after its join already held A.
    await waitFor("B sees A", () => "instance-a" in chB.presenceState());
    assert.deepEqual(Object.keys(rt.presenceState(`realtime:${ROOM}`, { private: true })).sort(), [
      "instance-a",
      "instance-b",
    ]);

    // Kill B's socket like a crash: A sees the leave at once, through supabase-js.
    const bSocket = rt.sockets().find((s) => s.presenceKeys.includes("instance-b"));
    assert.ok(bSocket);
    const drops = rt.stats.drops;
    bSocket.drop();
    assert.equal(rt.stats.drops, drops + 1);
    await waitFor("leave of B", () => events.includes("leave instance-b"));
    assert.deepEqual(Object.keys(chA.presenceState()), ["instance-a"]);

    // untrack is a leave too.
    assert.equal(await chA.untrack(), "ok");
    await waitFor("leave of A", () => events.includes("leave instance-a"));
    assert.deepEqual(chA.presenceState(), {});
  });
});

Deno.test("Realtime stand-in: a client whose heartbeats stop is closed after heartbeatTimeoutMs and the others see it leave", async () => {
  await withStandIn({ heartbeatTimeoutMs: 400 }, async (rt, make) => {
    // A heartbeats every 100 ms and stays; B's first heartbeat would come after a minute.
    const a = make(rt.url, rt.secretKey, { heartbeatIntervalMs: 100 });
    const b = make(rt.url, rt.secretKey, {
      heartbeatIntervalMs: 60_000,
      reconnectAfterMs: () => 60_000,
    });
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, PRIVATE("b"));
    const left: string[] = [];
    chA.on("presence", { event: "leave" }, ({ key }) => left.push(key));
    await subscribed(chA);
    await chA.track({});
    const logB = await subscribed(chB);
    await chB.track({});
    await waitFor("both present", () => Object.keys(chA.presenceState()).length === 2);

    await waitFor("B timed out", () => rt.stats.timeouts === 1, 3000);
    await waitFor("A sees B leave", () => left.includes("b"));
    await waitFor("B's channel errored", () => logB.statuses.includes("CHANNEL_ERROR"));
    assert.equal(rt.stats.timeouts, 1, "A, heartbeating, stays");
    assert.ok(rt.stats.heartbeats >= 3);
    assert.deepEqual(Object.keys(chA.presenceState()), ["a"]);
  });
});

Deno.test("Realtime stand-in: past the presence rate limit the channel is shut down with a system message and closed", async () => {
  await withStandIn({ presenceMaxCalls: 3, presenceWindowMs: 60_000 }, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const b = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, PRIVATE("b"));
    const system: Record<string, unknown>[] = [];
    chA.on("system", {}, (m) => system.push(m));
    const leftAtB: string[] = [];
    chB.on("presence", { event: "leave" }, ({ key }) => leftAtB.push(key));
    const logA = await subscribed(chA);
    await subscribed(chB);

    for (let i = 1; i <= 3; i++) assert.equal(await chA.track({ i }), "ok");
    await waitFor("B sees A", () => "a" in chB.presenceState());
    // The 4th call within the window gets no reply: Realtime shuts the channel down.
    assert.equal(await chA.track({ i: 4 }, { timeout: 300 }), "timed out");
    assert.deepEqual(system, [{
      extension: "system",
      status: "error",
      message: "Client presence rate limit exceeded",
      channel: ROOM,
    }]);
    await waitFor("CLOSED", () => logA.statuses.includes("CLOSED"));
    assert.equal(chA.state, "closed");
    await waitFor("A's presence left", () => leftAtB.includes("a"));
    assert.equal(rt.stats.channelShutdowns, 1);
    assert.equal(rt.stats.presenceCalls, 4);
    // The socket itself stays: B's channel and A's socket are unharmed.
    assert.equal(rt.stats.sockets, 2);
  });
});

Deno.test("Realtime stand-in: a publishable-key client is refused on a private channel and welcome on a public one", async () => {
  await withStandIn({}, async (rt, make) => {
    const anon = make(rt.url, rt.publishableKey);
    const priv = anon.channel(ROOM, PRIVATE("x"));
    const log = subscribe(priv);
    await waitFor("CHANNEL_ERROR", () => log.statuses.includes("CHANNEL_ERROR"));
    assert.equal(
      log.errors[0]?.message,
      `Unauthorized: You do not have permissions to read from this Channel topic: ${ROOM}`,
    );
    assert.ok(rt.stats.joinRefusals >= 1);

    const pub = anon.channel("public-room");
    const got: unknown[] = [];
    pub.on("broadcast", { event: "hi" }, (m) => got.push(m));
    await subscribed(pub);
    // A public topic is a different topic from the private one of the same name.
    const service = make(rt.url, rt.secretKey);
    const pubService = service.channel("public-room");
    await subscribed(pubService);
    await pubService.send({ type: "broadcast", event: "hi", payload: { ok: true } });
    await waitFor("public broadcast", () => got.length === 1);

    // The legacy service-role key is as good as the secret key for private channels.
    const legacy = make(rt.url, rt.serviceRoleKey);
    await subscribed(legacy.channel(ROOM, PRIVATE("legacy")));
  });
});

Deno.test("Realtime stand-in: REST broadcast reaches subscribers; private topics need the secret key", async () => {
  await withStandIn({}, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("a"));
    const got: { event: string; payload: unknown }[] = [];
    chA.on("broadcast", { event: "*" }, (m) => got.push({ event: m.event, payload: m.payload }));
    await subscribed(chA);

    const post = (key: string, body: unknown, bearer = key) =>
      fetch(`${rt.url}/realtime/v1/api/broadcast`, {
        method: "POST",
        headers: {
          apikey: key,
          authorization: `Bearer ${bearer}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(body),
      });
    const r1 = await post(rt.secretKey, {
      messages: [{ topic: ROOM, event: "from-server", payload: { n: 1 }, private: true }],
    });
    assert.equal(r1.status, 202);
    assert.equal(await r1.text(), "");
    await waitFor("REST broadcast", () => got.length === 1);
    assert.deepEqual(got[0], { event: "from-server", payload: { n: 1 } });

    // With the publishable key a private message is accepted (202) but silently not delivered.
    const r2 = await post(rt.publishableKey, {
      messages: [{ topic: ROOM, event: "sneaky", payload: {}, private: true }],
    });
    assert.equal(r2.status, 202);
    await r2.body?.cancel();
    // Unknown key: the gateway refuses.
    const r3 = await post("sb_secret_wrong", { messages: [] });
    assert.equal(r3.status, 401);
    assert.equal((await r3.json()).message, "Invalid API key");
    // Missing fields: 422.
    const r4 = await post(rt.secretKey, { messages: [{ topic: ROOM }] });
    assert.equal(r4.status, 422);
    await r4.body?.cancel();

    // supabase-js's own REST path (httpSend, the single-message endpoint), JSON and binary.
    const sender = make(rt.url, rt.secretKey);
    const restCh = sender.channel(ROOM, PRIVATE("sender"));
    assert.deepEqual(await restCh.httpSend("via-http", { n: 2 }), { success: true });
    await restCh.httpSend("via-http-bin", new Uint8Array([1, 2, 3]).buffer);
    await waitFor("httpSend deliveries", () => got.length === 3);
    assert.deepEqual(got.map((m) => m.event), ["from-server", "via-http", "via-http-bin"]);
    assert.deepEqual(got[1]!.payload, { n: 2 });
    assert.deepEqual(new Uint8Array(got[2]!.payload as ArrayBuffer), new Uint8Array([1, 2, 3]));
    const anon = make(rt.url, rt.publishableKey);
    await assert.rejects(
      anon.channel(ROOM, PRIVATE("anon")).httpSend("x", {}),
      /Unauthorized/,
    );
  });
});

Deno.test("Realtime stand-in: stop() cuts every socket and refuses connections; after start() supabase-js reconnects and rejoins by itself", async () => {
  await withStandIn({}, async (rt, make) => {
    const a = make(rt.url, rt.secretKey);
    const b = make(rt.url, rt.secretKey);
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, PRIVATE("b"));
    const got: unknown[] = [];
    chB.on("broadcast", { event: "msg" }, (m) => got.push(m));
    const logA = await subscribed(chA);
    const logB = await subscribed(chB);
    const port = rt.port;

    await rt.stop();
    assert.equal(rt.stats.sockets, 0);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }).then((c) => c.close()),
      Deno.errors.ConnectionRefused,
    );
    await waitFor(
      "both channels errored",
      () => logA.statuses.includes("CHANNEL_ERROR") && logB.statuses.includes("CHANNEL_ERROR"),
    );
    const joins = rt.stats.joins;

    await rt.start();
    assert.equal(rt.port, port);
    await waitFor(
      "both rejoined",
      () =>
        logA.statuses.filter((s) => s === "SUBSCRIBED").length === 2 &&
        logB.statuses.filter((s) => s === "SUBSCRIBED").length === 2,
      5000,
    );
    assert.equal(rt.stats.joins, joins + 2);
    await chA.send({ type: "broadcast", event: "msg", payload: { after: "restart" } });
    await waitFor("broadcast after restart", () => got.length === 1);
  });
});

Deno.test("Realtime stand-in: mounted on the Auth stand-in's origin through its gateway option", async () => {
  const auth = await startAuthStandIn({ gateway: (req) => realtime.handle(req) });
  const realtime = await startRealtimeStandIn({
    listen: false,
    publishableKey: auth.publishableKey,
    serviceRoleKey: auth.serviceRoleKey,
    anonKey: auth.anonKey,
    jwtSecret: auth.hsSecret,
  });
  const a = client(auth.url, auth.serviceRoleKey);
  const b = client(auth.url, auth.serviceRoleKey);
  try {
    const chA = a.channel(ROOM, PRIVATE("a"));
    const chB = b.channel(ROOM, PRIVATE("b"));
    const got: unknown[] = [];
    chB.on("broadcast", { event: "msg" }, (m) => got.push(m));
    await subscribed(chA);
    await subscribed(chB);
    await chA.send({ type: "broadcast", event: "msg", payload: { via: "gateway" } });
    await waitFor("delivery through the mounted Realtime", () => got.length === 1);
    // Auth still answers its own paths on the same origin.
    const jwks = await fetch(`${auth.url}/auth/v1/.well-known/jwks.json`);
    assert.equal(jwks.status, 200);
    await jwks.body?.cancel();
    // A service_role JWT signed with the project's secret works as an access token too.
    const token = await auth.signHs256({ role: "service_role", sub: undefined });
    await a.realtime.setAuth(token);
    await chA.send({ type: "broadcast", event: "msg", payload: { n: 2 } });
    await waitFor("second delivery", () => got.length === 2);
  } finally {
    await shutDownRealtimeClient(a);
    await shutDownRealtimeClient(b);
    await realtime.close();
    await auth.close();
  }
});

// ---- wire details supabase-js does not show ---------------------------------------

/** A raw WebSocket that collects frames. */
async function raw(url: string): Promise<{
  ws: WebSocket;
  frames: (string | ArrayBuffer)[];
  closed: Promise<CloseEvent>;
}> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const frames: (string | ArrayBuffer)[] = [];
  ws.onmessage = (e) => frames.push(e.data);
  const closed = new Promise<CloseEvent>((r) => ws.onclose = r);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  return { ws, frames, closed };
}

Deno.test("Realtime stand-in: wire shapes of vsn 2.0.0 and 1.0.0 frames, heartbeats, unmatched topics and key refusals", async () => {
  const rt = await startRealtimeStandIn({ joinErrorDelayMs: 0 });
  try {
    const base = `ws://127.0.0.1:${rt.port}/realtime/v1/websocket`;
    // An unknown key is refused before the upgrade, with the gateway's body.
    const refused = await fetch(`${rt.url}/realtime/v1/websocket?apikey=nope&vsn=2.0.0`, {
      headers: { upgrade: "websocket", connection: "Upgrade" },
    });
    assert.equal(refused.status, 401);
    assert.equal((await refused.json()).message, "Invalid API key");

    const v2 = await raw(`${base}?apikey=${rt.secretKey}&vsn=2.0.0`);
    v2.ws.send(JSON.stringify([null, "1", "phoenix", "heartbeat", {}]));
    v2.ws.send(JSON.stringify(["2", "2", "realtime:t", "phx_join", {
      config: { broadcast: { self: true }, presence: { enabled: true, key: "k" }, private: false },
      access_token: rt.secretKey,
    }]));
    v2.ws.send(JSON.stringify([null, "3", "realtime:other", "broadcast", {}]));
    // A JSON-array broadcast comes back as a JSON-array broadcast (self: true).
    v2.ws.send(JSON.stringify(["2", "4", "realtime:t", "broadcast", {
      type: "broadcast",
      event: "e",
      payload: { x: 1 },
    }]));
    await waitFor("v2 frames", () => v2.frames.length === 5);
    assert.deepEqual(v2.frames.map((f) => JSON.parse(f as string)), [
      [null, "1", "phoenix", "phx_reply", { status: "ok", response: {} }],
      ["2", "2", "realtime:t", "phx_reply", { status: "ok", response: { postgres_changes: [] } }],
      ["2", null, "realtime:t", "presence_state", {}],
      [null, "3", "realtime:other", "phx_reply", {
        status: "error",
        response: { reason: "unmatched topic" },
      }],
      [null, null, "realtime:t", "broadcast", { type: "broadcast", event: "e", payload: { x: 1 } }],
    ]);

    // A vsn 1.0.0 socket speaks objects, and gets user broadcasts converted to JSON.
    const v1 = await raw(`${base}?apikey=${rt.secretKey}&vsn=1.0.0`);
    v1.ws.send(
      JSON.stringify({
        topic: "realtime:t",
        event: "phx_join",
        payload: {},
        ref: "1",
        join_ref: "1",
      }),
    );
    await waitFor("v1 join reply", () => v1.frames.length === 1);
    assert.deepEqual(JSON.parse(v1.frames[0] as string), {
      topic: "realtime:t",
      event: "phx_reply",
      payload: { status: "ok", response: { postgres_changes: [] } },
      ref: "1",
    });
    // Binary user broadcast push (kind 3, JSON encoding) from the v2 socket.
    const enc = new TextEncoder();
    const parts = ["2", "5", "realtime:t", "ev", ""].map((s) => enc.encode(s));
    const body = enc.encode(JSON.stringify({ y: 2 }));
    const frame = new Uint8Array(7 + parts.reduce((n, p) => n + p.length, 0) + body.length);
    frame.set([3, ...parts.map((p) => p.length), 1]);
    let off = 7;
    for (const p of [...parts, body]) {
      frame.set(p, off);
      off += p.length;
    }
    v2.ws.send(frame);
    await waitFor("deliveries", () => v1.frames.length === 2 && v2.frames.length === 6);
    assert.deepEqual(JSON.parse(v1.frames[1] as string), {
      topic: "realtime:t",
      event: "broadcast",
      payload: { event: "ev", payload: { y: 2 }, type: "broadcast" },
      ref: null,
    });
    // The v2 socket (self) gets the kind-4 frame: topic, event, no metadata, JSON encoding.
    const back = new Uint8Array(v2.frames[5] as ArrayBuffer);
    const topic = enc.encode("realtime:t");
    assert.deepEqual([...back.subarray(0, 5)], [4, topic.length, 2, 0, 1]);
    assert.equal(
      new TextDecoder().decode(back.subarray(5)),
      `realtime:tev${JSON.stringify({ y: 2 })}`,
    );

    v1.ws.close();
    v2.ws.close();
    await v1.closed;
    await v2.closed;
  } finally {
    await rt.close();
  }
});
