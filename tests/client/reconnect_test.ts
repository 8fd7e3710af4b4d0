/**
 * The client library against the real relay (the harness's handler on a real
 * `Deno.serve`, the Auth and OpenAI stand-ins), with a TCP proxy playing the
 * network: what it sends on each connection, when it reconnects and when it
 * does not, and what it holds meanwhile. Under Deno's own WebSocket; the Node
 * run is node_test.ts.
 * @module
 */
import assert from "node:assert/strict";
import { RelayClientError } from "../../client/relay_client.js";
import { sleep } from "../helpers/ws_client.ts";
import { errorEvent } from "../stand_ins/realtime_events.ts";
import { deadPort, itemTexts, type Recorded, userText, withStack } from "./support.ts";

/** The request line and the offered subprotocols of a proxied handshake. */
function handshake(head: string): { line: string; protocols: string | undefined } {
  const [line = "", ...headers] = head.split("\r\n");
  const protocols = headers.find((h) => /^sec-websocket-protocol:/i.test(h))?.replace(
    /^[^:]*:\s*/,
    "",
  );
  return { line, protocols };
}

Deno.test("client sends ?session= and a fresh token as a jwt- subprotocol on every connection", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    const opened = await c.waitState("open");
    assert.deepEqual([opened.why, opened.resumed, opened.attempt], ["started", false, 0]);
    assert.equal(c.events[0]?.type, "session.created");
    proxy.dropAll();
    await c.waitState("open", 2);

    assert.equal(tokens.issued.length, 2, "one getToken() per connection");
    assert.notEqual(tokens.issued[0], tokens.issued[1]);
    assert.equal(proxy.heads.length, 2);
    proxy.heads.forEach((head, i) => {
      const { line, protocols } = handshake(head);
      assert.ok(line.startsWith(`GET /relay?session=${c.relay.session} `), `request line ${i}`);
      // Compared as booleans: an assertion message must not print a token.
      assert.ok(
        !line.includes("jwt=") && !line.includes(tokens.issued[i]!),
        `no token in URL ${i}`,
      );
      assert.ok(protocols === `realtime, jwt-${tokens.issued[i]}`, `subprotocols ${i}`);
    });
    const accepted = relay.events("websocket.connection.accepted");
    assert.deepEqual(accepted.map((e) => e.user), [
      relay.auth.defaultUserId,
      relay.auth.defaultUserId,
    ]);
    const closed = await c.relay.close();
    assert.deepEqual([closed.why, closed.code, closed.unsent], ["client", 1000, 0]);
    assert.equal(c.relay.state, "closed");
  });
});

Deno.test("client with tokenIn query sends ?jwt= and offers no subprotocol", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken, tokenIn: "query" });
    await c.waitState("open");
    const { line, protocols } = handshake(proxy.heads[0]!);
    const url = new URL(line.split(" ")[1]!, "http://relay");
    assert.equal(url.searchParams.get("session"), c.relay.session);
    assert.ok(url.searchParams.get("jwt") === tokens.issued[0], "the token is the ?jwt=");
    assert.equal(protocols, undefined);
  });
});

Deno.test("client reconnects after the relay's 1012 to another relay and delivers what it held, in order", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client, another }) => {
    const second = await another();
    const texts = ["one", "two — ✓", "three"];
    let heldWhileReconnecting = { messages: 0, bytes: 0 };
    const c: Recorded = client({
      url: proxy.url("/relay"),
      getToken: tokens.getToken,
      onState: (state) => {
        if (state !== "reconnecting" || heldWhileReconnecting.messages > 0) return;
        for (const text of texts) c.relay.send(userText(text));
        heldWhileReconnecting = c.relay.held;
      },
    });
    await c.waitState("open");
    proxy.target = second.port; // the platform routes the next connection to a new worker
    await relay.relay.shutdown();
    const reconnecting = await c.waitState("reconnecting");
    assert.deepEqual(
      [reconnecting.why, reconnecting.code, reconnecting.reason, reconnecting.attempt],
      ["server_restarting", 1012, "server_restarting", 1],
    );
    assert.equal(heldWhileReconnecting.messages, 3, "held, not sent into the closing socket");
    const opened = await c.waitState("open", 2);
    assert.equal(opened.attempt, 0);
    assert.deepEqual(c.relay.held, { messages: 0, bytes: 0 });

    assert.equal(second.events("websocket.connection.accepted").length, 1);
    await c.waitFor(
      () => itemTexts(relay.openai.connections[1]?.received ?? []).length === 3,
      "held messages upstream",
    );
    assert.deepEqual(itemTexts(relay.openai.connections[1]!.received), texts);
    assert.deepEqual(itemTexts(relay.openai.connections[0]!.received), []);
    assert.equal(c.events.filter((e) => e.type === "session.created").length, 2);
  });
});

Deno.test("client reconnects after a dropped TCP connection (1006, no notice)", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    await c.waitState("open");
    proxy.dropAll();
    const reconnecting = await c.waitState("reconnecting");
    assert.deepEqual([reconnecting.why, reconnecting.code], ["connection_lost", 1006]);
    await c.waitState("open", 2);
  });
});

Deno.test("client reconnects after 1011 upstream_closed_abnormally (OpenAI's side dropped)", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    await c.waitState("open");
    relay.openai.connections[0]!.drop();
    const reconnecting = await c.waitState("reconnecting");
    assert.deepEqual([reconnecting.why, reconnecting.code], ["upstream_closed_abnormally", 1011]);
    await c.waitState("open", 2);
    assert.equal(relay.openai.connections.length, 2);
    const notice = c.events.find((e) => e.type === "error");
    assert.equal(
      (notice?.error as { code?: string })?.code,
      "upstream_closed_abnormally",
      "notices reach onEvent",
    );
  });
});

Deno.test("client reconnects after 4001 token_expired with a fresh token", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    // The first token expires 1-2 s from now (exp is in whole seconds): time enough to be
    // accepted even on a busy machine, then 4001.
    tokens.lifetimes.push(2);
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    await c.waitState("open");
    const reconnecting = await c.waitState("reconnecting", 1, 6000);
    assert.deepEqual([reconnecting.why, reconnecting.code], ["token_expired", 4001]);
    await c.waitState("open", 2);
    assert.equal(tokens.issued.length, 2);
  });
});

Deno.test("client reconnects when OpenAI reports session_expired (its session cap)", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    await c.waitState("open");
    await relay.openai.connections[0]!.send(
      JSON.stringify(
        errorEvent("session_expired", "Your session hit the maximum duration of 60 minutes."),
      ),
    );
    const reconnecting = await c.waitState("reconnecting");
    assert.equal(reconnecting.why, "session_expired");
    await c.waitState("open", 2);
    const closed = relay.events("websocket.connection.closed")[0];
    assert.deepEqual([closed?.by, closed?.code, closed?.reason], [
      "client",
      1000,
      "session_expired",
    ]);
  });
});

Deno.test("client does not reconnect after 1008 rate_limited", async () => {
  await withStack({ RELAY_RATE_LIMIT: "2" }, async ({ relay, proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
    await c.waitState("open");
    for (let i = 0; i < 12 && c.relay.state === "open"; i++) {
      c.relay.send({ type: "input_audio_buffer.clear" });
    }
    const closed = await c.waitClosed();
    assert.deepEqual([closed.why, closed.code], ["rate_limited", 1008]);
    assert.equal(c.count("reconnecting"), 0);
    assert.equal(relay.events("websocket.connection.accepted").length, 1);
    assert.throws(
      () => c.relay.send({ type: "response.create" }),
      (e) => e instanceof RelayClientError && e.code === "closed",
    );
  });
});

Deno.test("client does not reconnect after an HTTP refusal of its first connection", async () => {
  await withStack({}, async ({ relay, proxy, client }) => {
    let asked = 0;
    const c = client({
      url: proxy.url("/relay"),
      getToken: () => (asked++, "not-a-token"),
    });
    const closed = await c.waitClosed();
    assert.equal(closed.why, "refused");
    assert.equal(asked, 1);
    assert.deepEqual(c.states.map((s) => s.state), ["connecting", "closed"]);
    const rejected = relay.events("websocket.connection.rejected");
    assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[401, "invalid_token"]]);
  });
});

Deno.test("client retries refusals while reconnecting with backoff, then gives up after maxAttempts", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken, maxAttempts: 3 });
    await c.waitState("open");
    proxy.target = deadPort(); // the network stays down
    proxy.dropAll();
    const closed = await c.waitClosed();
    assert.deepEqual([closed.why, closed.cause], ["gave_up", "refused"]);
    const retries = c.states.filter((s) => s.state === "reconnecting").map((s) => s.info);
    assert.deepEqual(retries.map((i) => [i.why, i.attempt, i.delayMs]), [
      ["connection_lost", 1, 20],
      ["refused", 2, 40],
      ["refused", 3, 80],
    ]);
    assert.equal(proxy.accepted, 4, "the first connection and three attempts");
  });
});

Deno.test("client decides on the close notice when the socket reports only 1006", async (t) => {
  const socketCloses: number[] = [];
  /** Deno's WebSocket, recording what its close events said. */
  class Observed extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("close", (event) => socketCloses.push(event.code));
    }
  }

  await t.step("1008 rate_limited then a cut: no reconnect", async () => {
    await withStack({ RELAY_RATE_LIMIT: "2" }, async ({ relay, proxy, tokens, client }) => {
      proxy.cutAfterNotice = true;
      const c = client({
        url: proxy.url("/relay"),
        getToken: tokens.getToken,
        WebSocket: Observed,
      });
      await c.waitState("open");
      for (let i = 0; i < 12 && c.relay.state === "open"; i++) {
        c.relay.send({ type: "input_audio_buffer.clear" });
      }
      const closed = await c.waitClosed();
      // No close frame: Deno's WebSocket says 0 where a browser says 1006.
      assert.ok([0, 1006].includes(socketCloses.at(-1)!), `socket close ${socketCloses.at(-1)}`);
      assert.deepEqual([closed.why, closed.code], ["rate_limited", 1008]);
      assert.equal(relay.events("websocket.connection.accepted").length, 1);
    });
  });

  await t.step("1012 server_restarting then a cut: reconnect", async () => {
    await withStack({}, async ({ relay, proxy, tokens, client, another }) => {
      const second = await another();
      proxy.cutAfterNotice = true;
      const c = client({
        url: proxy.url("/relay"),
        getToken: tokens.getToken,
        WebSocket: Observed,
      });
      await c.waitState("open");
      proxy.target = second.port;
      await relay.relay.shutdown();
      const reconnecting = await c.waitState("reconnecting");
      // No close frame: Deno's WebSocket says 0 where a browser says 1006.
      assert.ok([0, 1006].includes(socketCloses.at(-1)!), `socket close ${socketCloses.at(-1)}`);
      assert.deepEqual([reconnecting.why, reconnecting.code], ["server_restarting", 1012]);
      await c.waitState("open", 2);
    });
  });
});

Deno.test("client holds messages while connecting, in order, and refuses past maxHeldBytes", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client }) => {
    const one = JSON.stringify(userText("held 0"));
    const c = client({
      url: proxy.url("/relay"),
      getToken: tokens.getToken,
      maxHeldBytes: 3 * one.length,
    });
    for (let i = 0; i < 3; i++) c.relay.send(userText(`held ${i}`));
    assert.deepEqual(c.relay.held, { messages: 3, bytes: 3 * one.length });
    assert.throws(
      () => c.relay.send(userText("held 3")),
      (e) =>
        e instanceof RelayClientError && e.code === "hold_full" && /maxHeldBytes/.test(e.message),
    );
    assert.equal(c.relay.held.messages, 3, "the refused one is not held");
    await c.waitState("open");
    await c.waitFor(
      () => itemTexts(relay.openai.connections[0]?.received ?? []).length === 3,
      "delivery",
    );
    assert.deepEqual(itemTexts(relay.openai.connections[0]!.received), [
      "held 0",
      "held 1",
      "held 2",
    ]);
    c.relay.send(userText("direct")); // open: straight through
    assert.deepEqual(c.relay.held, { messages: 0, bytes: 0 });
    await c.waitFor(() => itemTexts(relay.openai.connections[0]!.received).length === 4, "direct");
  });
});

Deno.test("client close() during a backoff ends at once and no attempt follows", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    const c = client({
      url: proxy.url("/relay"),
      getToken: tokens.getToken,
      backoff: { baseMs: 400, jitter: 0 },
    });
    await c.waitState("open");
    proxy.dropAll();
    await c.waitState("reconnecting");
    c.relay.send(userText("never sent"));
    const closed = await c.relay.close();
    assert.deepEqual([closed.why, closed.unsent], ["client", 1]);
    assert.equal(c.relay.close(), c.relay.closed, "closing again is the same promise");
    await sleep(500);
    assert.equal(proxy.accepted, 1);
  });
});

Deno.test("client with readyOn open works on the echo route, where the server never speaks first", async () => {
  await withStack({}, async ({ proxy, tokens, client }) => {
    const raw: (string | ArrayBuffer)[] = [];
    const c = client({
      url: proxy.url("/relay/echo"),
      getToken: tokens.getToken,
      readyOn: "open",
      onMessage: (data) => raw.push(data),
    });
    c.relay.send("plain text");
    c.relay.send({ type: "ping.test" });
    const chunk = new Uint8Array([1, 2, 3]);
    c.relay.send(chunk);
    chunk.fill(9); // the app reuses its buffer: what was held is a copy
    const opened = await c.waitState("open");
    assert.equal(opened.why, "socket_open");
    await c.waitFor(() => raw.length === 2 && c.events.length === 1, "echoes");
    assert.equal(raw[0], "plain text");
    assert.deepEqual(new Uint8Array(raw[1] as ArrayBuffer), new Uint8Array([1, 2, 3]));
    assert.deepEqual(c.events, [{ type: "ping.test" }]);
  });
});

Deno.test("client gives up a first connection that is not ready within connectTimeoutMs", async () => {
  await withStack({}, async ({ relay, proxy, tokens, client }) => {
    relay.openai.behaviour = { kind: "hang" }; // the socket opens, OpenAI never answers
    const c = client({
      url: proxy.url("/relay"),
      getToken: tokens.getToken,
      connectTimeoutMs: 300,
    });
    const closed = await c.waitClosed();
    assert.equal(closed.why, "connect_timeout");
    assert.equal(c.count("reconnecting"), 0);
    await c.waitFor(() => relay.relay.connections() === 0, "the relay let the connection go");
  });
});
