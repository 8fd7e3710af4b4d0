/**
 * CONTRACT.md "Closing": what each side is told when the other closes, and
 * upstream failures before it opens.
 */
import assert from "node:assert/strict";
import { withRelay } from "../helpers/relay_harness.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { rawClient } from "../stand_ins/raw_client.ts";

Deno.test("upstream close codes reach the client as the contract maps them", async (t) => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const euro = "€".repeat(41); // 123 bytes
    const table: [string, number | undefined, string, number, string][] = [
      ["normal", 1000, "bye", 1000, "bye"],
      ["going away", 1001, "away", 1001, "away"],
      ["policy", 1008, "policy", 1008, "policy"],
      ["internal error", 1011, "oops", 1011, "oops"],
      ["restart", 1012, "restart", 1012, "restart"],
      ["try again", 1013, "later", 1013, "later"],
      ["OpenAI's beta refusal", 4000, "beta_api_shape_disabled", 4000, "beta_api_shape_disabled"],
      ["application code", 3000, euro, 3000, euro],
      ["no status becomes normal", undefined, "", 1000, ""],
      ["1006 on the wire is abnormal", 1006, "", 1011, "upstream_closed_abnormally"],
      ["1015 is abnormal", 1015, "", 1011, "upstream_closed_abnormally"],
      ["1014 is not forwarded", 1014, "", 1011, "upstream_closed_abnormally"],
    ];
    for (const [name, code, reason, expectedCode, expectedReason] of table) {
      await t.step(name, async () => {
        relay.openai.behaviour = {
          kind: "close",
          afterMessages: 1,
          reason,
          ...(code === undefined ? {} : { code }),
        };
        const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
        await client.opened;
        client.socket.send("last words");
        const closed = await client.waitClosed();
        assert.deepEqual([closed.code, closed.reason], [expectedCode, expectedReason]);
        assert.equal(relay.openai.connections.at(-1)?.received.length, 1, "the message went first");
      });
    }
    const closed = relay.events("websocket.connection.closed");
    assert.ok(closed.every((event) => event.by === "upstream"));
  });
});

Deno.test("an upstream that drops TCP mid-stream gives the client 1011 upstream_closed_abnormally", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "drop", afterMessages: 2 };
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    await client.opened;
    client.socket.send("one");
    client.socket.send("two");
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1011, "upstream_closed_abnormally"]);
  });
});

Deno.test("client close codes reach the upstream as the contract maps them", async (t) => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const table: [string, number | undefined, string, number | undefined, string][] = [
      ["normal", 1000, "bye", 1000, "bye"],
      ["application code", 4321, "user hung up", 4321, "user hung up"],
      ["3000", 3000, "x", 3000, "x"],
      ["going away becomes normal", 1001, "tab closed", 1000, "tab closed"],
      ["protocol error becomes normal", 1002, "", 1000, ""],
      ["no status becomes normal", undefined, "", 1000, ""],
    ];
    for (const [name, code, reason, expectedCode, expectedReason] of table) {
      await t.step(name, async () => {
        const seen = relay.openai.connections.length;
        const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
        assert.equal(client.status, 101);
        await relay.openai.waitForConnections(seen + 1);
        const upstream = relay.openai.connections[seen];
        await client.send("hello");
        assert.equal((await client.readEvent())?.kind, "message");
        await client.close(code, reason);
        await client.readUntilClose();
        client.abort();
        await upstream?.closed;
        assert.deepEqual(upstream?.closeReceived, { code: expectedCode, reason: expectedReason });
      });
    }
  });
});

Deno.test("a client that vanishes without a close frame gets its upstream closed within a second", async () => {
  await withRelay({}, async (relay) => {
    const client = await rawClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    await relay.openai.waitForConnections(1);
    await client.send("hi");
    await client.readEvent();
    const started = Date.now();
    client.abort();
    await relay.openai.connections[0]?.closed;
    assert.ok(Date.now() - started < 1000, `upstream closed after ${Date.now() - started} ms`);
    await until(() => relay.relay.connections() === 0, 2000, "release");
  });
});

Deno.test("an upstream that refuses gives the client 1011 upstream_unavailable", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "refuse", status: 503 };
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1011, "upstream_unavailable"]);
    assert.deepEqual(relay.events("upstream.failed").map((e) => e.error), ["upstream_unavailable"]);
  });
});

Deno.test("an upstream that never answers gives the client 1011 upstream_timeout", async () => {
  await withRelay({ env: { RELAY_UPSTREAM_TIMEOUT_MS: "300" } }, async (relay) => {
    relay.openai.behaviour = { kind: "hang" };
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    await client.opened;
    client.socket.send("queued while connecting");
    const started = Date.now();
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1011, "upstream_timeout"]);
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(relay.events("upstream.failed").map((e) => e.error), ["upstream_timeout"]);
  });
});

Deno.test("a wrong OpenAI key surfaces OpenAI's own error event and close code", async () => {
  await withRelay({ env: { OPENAI_API_KEY: "sk-wrong" } }, async (relay) => {
    const client = new TestClient(relay.wsUrl("/relay", { jwt: await relay.auth.signEs256() }));
    const closed = await client.waitClosed();
    const [error] = client.events();
    assert.equal(error?.type, "error");
    assert.equal(closed.code, relay.openai.connections[0]?.closeSent?.code);
    assert.ok(relay.lines.every((line) => !line.includes("sk-wrong")));
  });
});
