/**
 * CONTRACT.md "The relay": real clients through the real handler to the OpenAI
 * stand-in (or the echo route), asserting bytes, frame types, order and what
 * the upstream was sent.
 */
import assert from "node:assert/strict";
import { sameMessage, sameUpstream } from "../helpers/messages.ts";
import { withRelay } from "../helpers/relay_harness.ts";
import { type Message, TestClient, until } from "../helpers/ws_client.ts";

/** Text and binary messages that break naive relays: empty, multi-byte, astral, zero bytes. */
function sampleMessages(): Message[] {
  const binary = new Uint8Array(256).map((_, i) => i);
  return [
    "hello",
    "",
    "Zoë 日本語 🎧 \u{10FFFF}",
    binary.buffer,
    new ArrayBuffer(0),
    new Uint8Array([0]).buffer,
    JSON.stringify({ type: "input_audio_buffer.append", audio: "A".repeat(4000) }),
    new Uint8Array(32 * 1024).map((_, i) => (i * 7) & 0xff).buffer,
  ];
}

Deno.test("echo route returns every message unchanged, same type, same order", async () => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const client = new TestClient(relay.wsUrl("/relay/echo", { jwt: token }));
    await client.opened;
    const sent = sampleMessages();
    for (const message of sent) client.socket.send(message);
    const received = await client.waitForMessages(sent.length);
    sent.forEach((message, i) => assert.ok(sameMessage(received[i], message), `message ${i}`));
    assert.equal((await client.close(1000, "bye")).code, 1000);
  });
});

Deno.test("openai route queues early messages and delivers them in order once upstream opens", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.handshakeDelayMs = 400;
    const token = await relay.auth.signEs256();
    const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
    await client.opened;
    // The upstream handshake is under way (unanswered for 400 ms) while the client is already open.
    await relay.openai.waitForConnections(1, 300);
    assert.equal(relay.openai.connections[0]?.status, undefined, "upstream still connecting");
    const sent = sampleMessages();
    for (const message of sent) client.socket.send(message);
    const received = await client.waitForMessages(sent.length);
    sent.forEach((message, i) => assert.ok(sameMessage(received[i], message), `message ${i}`));
    const upstream = relay.openai.connections[0];
    assert.equal(upstream?.received.length, sent.length);
    sent.forEach((message, i) => {
      assert.ok(sameUpstream(upstream?.received[i], message), `upstream message ${i}`);
    });
    await client.close();
  });
});

Deno.test("openai route authenticates upstream with subprotocols and forwards only the model", async () => {
  await withRelay({
    env: { OPENAI_REALTIME_MODELS: "gpt-realtime,gpt-realtime-mini" },
  }, async (relay) => {
    const token = await relay.auth.signEs256();
    for (
      const [path, query, model] of [
        ["/relay", { jwt: token, foo: "bar" }, "gpt-realtime"],
        ["/relay/realtime", { token, model: "gpt-realtime-mini" }, "gpt-realtime-mini"],
        ["/relay/v1/realtime/", { jwt: token, model: "gpt-realtime" }, "gpt-realtime"],
      ] as const
    ) {
      const client = new TestClient(relay.wsUrl(path, query));
      await client.opened;
      client.socket.send("ping");
      await client.waitForMessages(1);
      await client.close();
      const upstream = relay.openai.connections.at(-1);
      assert.equal(upstream?.url, `/v1/realtime?model=${model}`);
      assert.deepEqual(upstream?.protocols, [
        "realtime",
        `openai-insecure-api-key.${relay.openai.apiKey}`,
      ]);
      assert.equal(upstream?.selectedProtocol, "realtime");
      const headers = JSON.stringify(upstream?.headers);
      assert.ok(!headers.includes(token), "the user's token never goes upstream");
      assert.ok(!/openai-beta/i.test(headers), "GA interface only");
    }
  });
});

Deno.test("openai route completes a realtime exchange and reports usage", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "realtime" };
    const token = await relay.auth.signEs256();
    const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
    await client.opened;
    client.socket.send(
      JSON.stringify({ type: "response.create", response: { output_modalities: ["text"] } }),
    );
    await until(
      () => client.events().some((e) => e.type === "response.done"),
      5000,
      "response.done",
    );
    const types = client.events().map((event) => event.type);
    assert.equal(types[0], "session.created");
    assert.ok(types.includes("response.output_text.delta"));
    await client.close();
    await until(() => relay.relay.connections() === 0, 3000, "close");
    const usage = relay.events("usage");
    assert.equal(usage.length, 1);
    assert.equal(usage[0]?.model, "gpt-realtime");
    assert.equal(typeof (usage[0]?.usage as { total_tokens?: unknown }).total_tokens, "number");
  });
});

Deno.test("openai route echoes a plain subprotocol and never a credential", async () => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const viaJwt = new TestClient(relay.wsUrl("/relay/echo"), ["realtime", `jwt-${token}`]);
    await viaJwt.opened;
    assert.equal(viaJwt.socket.protocol, "realtime");
    await viaJwt.close();
    const viaSdk = new TestClient(relay.wsUrl("/relay"), [
      "realtime",
      `openai-insecure-api-key.${token}`,
    ]);
    await viaSdk.opened;
    assert.equal(viaSdk.socket.protocol, "realtime");
    await viaSdk.close();
    const accepted = relay.events("websocket.connection.accepted");
    assert.equal(accepted.length, 2);
    assert.ok(relay.lines.every((line) => !line.includes(token)));
  });
});

Deno.test("relay telemetry records accepted, upstream.connected and closed with counters", async () => {
  await withRelay({ env: { RELAY_LOG_LEVEL: "debug" } }, async (relay) => {
    const token = await relay.auth.signEs256();
    const secret = "PAYLOAD-MARKER-7f3a";
    const client = new TestClient(relay.wsUrl("/relay", { jwt: token }), "realtime");
    await client.opened;
    client.socket.send(secret);
    client.socket.send(new Uint8Array(10).buffer);
    await client.waitForMessages(2);
    await client.close(4000, "client done");
    await until(() => relay.events("websocket.connection.closed").length === 1, 3000, "closed");
    const [accepted] = relay.events("websocket.connection.accepted");
    assert.deepEqual(
      { ...accepted, conn: "", ts: "" },
      {
        event: "websocket.connection.accepted",
        ts: "",
        conn: "",
        user: relay.auth.defaultUserId,
        route: "openai",
        model: "gpt-realtime",
        origin: null,
      },
    );
    const [connected] = relay.events("upstream.connected");
    assert.equal(connected?.conn, accepted?.conn);
    assert.equal(typeof connected?.ms, "number");
    const [closed] = relay.events("websocket.connection.closed");
    assert.deepEqual(
      { ...closed, ts: "", ms: 0 },
      {
        event: "websocket.connection.closed",
        ts: "",
        ms: 0,
        conn: accepted?.conn,
        user: relay.auth.defaultUserId,
        code: 4000,
        reason: "client done",
        by: "client",
        msgs_in: 2,
        msgs_out: 2,
        bytes_in: secret.length + 10,
        bytes_out: secret.length + 10,
      },
    );
    const received = relay.events("message.received");
    assert.deepEqual(received.map((e) => [e.type, e.bytes]), [["text", secret.length], [
      "binary",
      10,
    ]]);
    assert.equal(relay.events("message.sent").length, 2);
    assert.ok(relay.lines.every((line) => !line.includes(secret) && !line.includes(token)));
    assert.ok(relay.lines.every((line) => !line.includes(relay.openai.apiKey)));
  });
});
