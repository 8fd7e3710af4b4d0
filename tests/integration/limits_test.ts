/**
 * CONTRACT.md limits: message size, rate, buffered bytes, connection caps,
 * keepalive, token expiry and shutdown.
 */
import assert from "node:assert/strict";
import { UPGRADE_HEADERS, withRelay } from "../helpers/relay_harness.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { rawClient } from "../stand_ins/raw_client.ts";

Deno.test("a client message over RELAY_MAX_MESSAGE_BYTES closes 1009 message_too_big", async (t) => {
  await withRelay({ env: { RELAY_MAX_MESSAGE_BYTES: "1024" } }, async (relay) => {
    const token = await relay.auth.signEs256();
    const cases: [string, string | ArrayBuffer, boolean][] = [
      ["binary at the cap passes", new ArrayBuffer(1024), true],
      ["text at the cap passes", "x".repeat(1024), true],
      ["binary one byte over", new ArrayBuffer(1025), false],
      ["text counted in UTF-8 bytes, not characters", "€".repeat(342), false],
    ];
    for (const [name, message, passes] of cases) {
      await t.step(name, async () => {
        const client = new TestClient(relay.wsUrl("/relay/echo", { jwt: token }));
        await client.opened;
        client.socket.send(message);
        if (passes) {
          await client.waitForMessages(1);
          await client.close();
        } else {
          const closed = await client.waitClosed();
          assert.deepEqual([closed.code, closed.reason], [1009, "message_too_big"]);
        }
      });
    }
  });
});

Deno.test("a client over RELAY_RATE_LIMIT messages/s closes 1008 rate_limited after its burst", async () => {
  await withRelay({ env: { RELAY_RATE_LIMIT: "5" } }, async (relay) => {
    const client = new TestClient(
      relay.wsUrl("/relay/echo", { jwt: await relay.auth.signEs256() }),
    );
    await client.opened;
    // The burst (2x the rate) and one more. A client that goes on sending past
    // the close may see 1006 instead: Deno tears such sockets down (CONTRACT.md).
    for (let i = 0; i < 11; i++) client.socket.send(`m${i}`);
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1008, "rate_limited"]);
    assert.equal(client.messages.length, 10, "the burst got through");
  });
});

Deno.test("early messages over RELAY_MAX_BUFFERED_BYTES close 1013 buffer_full", async () => {
  await withRelay({ env: { RELAY_MAX_BUFFERED_BYTES: "10000" } }, async (relay) => {
    relay.openai.behaviour = { kind: "hang" };
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    await client.opened;
    for (let i = 0; i < 3; i++) client.socket.send(new ArrayBuffer(4000));
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1013, "buffer_full"]);
    relay.openai.connections[0]?.drop();
  });
});

Deno.test("an upstream that stops reading closes the client 1013 buffer_full", async () => {
  await withRelay({ env: { RELAY_MAX_BUFFERED_BYTES: "262144" } }, async (relay) => {
    relay.openai.behaviour = { kind: "stall" };
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    await client.opened;
    await relay.openai.waitForConnections(1);
    await until(() => relay.events("upstream.connected").length === 1, 2000, "upstream open");
    const chunk = new ArrayBuffer(256 * 1024);
    for (let i = 0; i < 200 && client.socket.readyState === WebSocket.OPEN; i++) {
      client.socket.send(chunk);
      await sleep(2);
    }
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1013, "buffer_full"]);
    relay.openai.connections[0]?.drop();
  });
});

Deno.test("a client that stops reading is closed 1013 buffer_full and released", async () => {
  await withRelay({ env: { RELAY_MAX_BUFFERED_BYTES: "262144" } }, async (relay) => {
    relay.openai.behaviour = { kind: "flood", messageBytes: 64 * 1024, count: 2000 };
    const client = await rawClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    assert.equal(client.status, 101);
    // Never read: TCP buffers fill, then the relay's bufferedAmount grows.
    await until(() => relay.events("websocket.connection.closed").length === 1, 10_000, "close");
    const [closed] = relay.events("websocket.connection.closed");
    assert.deepEqual([closed?.code, closed?.reason, closed?.by], [1013, "buffer_full", "relay"]);
    client.abort();
    await relay.openai.connections[0]?.closed;
  });
});

Deno.test("connection caps answer 429 per user and 503 per instance", async () => {
  const env = { RELAY_MAX_CONNECTIONS_PER_USER: "1", RELAY_MAX_CONNECTIONS: "2" };
  await withRelay({ env }, async (relay) => {
    const alice = await relay.auth.signEs256();
    const bob = await relay.auth.signEs256({ sub: crypto.randomUUID(), email: "bob@example.com" });
    const carol = await relay.auth.signEs256({ sub: crypto.randomUUID(), email: "c@example.com" });
    const first = new TestClient(relay.wsUrl("/relay/echo", { jwt: alice }));
    await first.opened;
    const again = await relay.relay.handler(
      new Request(`http://relay.local/relay/echo?jwt=${alice}`, { headers: UPGRADE_HEADERS }),
    );
    assert.equal(again.status, 429);
    assert.equal((await again.json()).error, "too_many_connections");
    const second = new TestClient(relay.wsUrl("/relay/echo", { jwt: bob }));
    await second.opened;
    const health = await relay.relay.handler(new Request("http://relay.local/relay/health"));
    assert.deepEqual(await health.json(), { status: "ok", connections: 2 });
    const full = await relay.relay.handler(
      new Request(`http://relay.local/relay/echo?jwt=${carol}`, { headers: UPGRADE_HEADERS }),
    );
    assert.equal(full.status, 503);
    assert.equal((await full.json()).error, "at_capacity");
    await first.close();
    await until(() => relay.relay.connections() === 1, 2000, "first released");
    const third = new TestClient(relay.wsUrl("/relay/echo", { jwt: carol }));
    await third.opened;
    await third.close();
    await second.close();
  });
});

Deno.test("the token's expiry closes the connection 4001 token_expired", async () => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256({}, { expiresInS: 2 });
    const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
    await client.opened;
    const closed = await client.waitClosed(4000);
    assert.deepEqual([closed.code, closed.reason], [4001, "token_expired"]);
    await relay.openai.connections[0]?.closed;
    assert.equal(relay.openai.connections[0]?.closeReceived?.code, 1000);
  });
});

Deno.test("shutdown closes every client 1012 server_restarting and settles", async () => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const clients = [
      new TestClient(relay.wsUrl("/relay", { jwt: token })),
      new TestClient(relay.wsUrl("/relay/echo", { jwt: token })),
    ];
    await Promise.all(clients.map((client) => client.opened));
    await relay.openai.waitForConnections(1);
    await relay.relay.shutdown();
    for (const client of clients) {
      const closed = await client.waitClosed();
      assert.deepEqual([closed.code, closed.reason], [1012, "server_restarting"]);
    }
    assert.equal(relay.relay.connections(), 0);
    await relay.openai.connections[0]?.closed;
    assert.equal(relay.openai.connections[0]?.closeReceived?.code, 1000);
    // A client arriving while draining is told to reconnect too.
    const late = new TestClient(relay.wsUrl("/relay/echo", { jwt: token }));
    assert.equal((await late.waitClosed()).code, 1012);
  });
});

Deno.test("keepalive pings an idle client and drops one that never answers", async () => {
  await withRelay({ env: { RELAY_IDLE_TIMEOUT_S: "2" } }, async (relay) => {
    const token = await relay.auth.signEs256();
    const healthy = new TestClient(relay.wsUrl("/relay/echo", { jwt: token }));
    await healthy.opened;
    const silent = await rawClient(relay.wsUrl("/relay/echo", { jwt: token }));
    const started = Date.now();
    let pinged = false;
    // Read frames without answering pings, until the relay gives up on us.
    for (;;) {
      const frame = await silent.readFrame();
      if (frame === null || frame.opcode === 0x8) break;
      if (frame.opcode === 0x9) pinged = true;
    }
    silent.abort();
    const elapsed = Date.now() - started;
    assert.ok(pinged, "a ping was sent");
    assert.ok(elapsed >= 1500 && elapsed < 5000, `dropped after ${elapsed} ms`);
    assert.equal(healthy.socket.readyState, WebSocket.OPEN, "a client that answers stays");
    await healthy.close();
  });
});
