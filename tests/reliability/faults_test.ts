/**
 * Faults: an upstream that refuses, hangs, drops or closes mid-queue; Supabase
 * Auth down, slow, malformed, refusing connections, rotating keys; clients
 * that vanish mid-traffic; slow readers on either side (relay run as its own
 * process so its RSS can be measured). After each: nothing leaked (Deno's
 * sanitizers) and the instance serves the next client.
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, standInEnv } from "../helpers/relay_harness.ts";
import { sleep, TestClient, until, within } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { rawClient } from "../stand_ins/raw_client.ts";
import {
  assertNoSecrets,
  canMeasureRss,
  recordFigure,
  startRelayProcess,
  testCommand,
  withCheckedRelay,
} from "./support.ts";

const MiB = 1024 * 1024;

/** An echo round trip on the OpenAI route works. */
async function serves(relay: RelayUnderTest, token: string, path = "/relay"): Promise<void> {
  relay.openai.behaviour = { kind: "echo" };
  relay.openai.handshakeDelayMs = 0;
  const client = new TestClient(relay.wsUrl(path, { jwt: token }));
  await client.opened;
  client.socket.send("ping?");
  assert.deepEqual(await client.waitForMessages(1), ["ping?"]);
  await client.close();
}

Deno.test("faults: upstream refuses, hangs, drops mid-stream and closes mid-queue", async () => {
  let cases = 0;
  await withCheckedRelay({ env: { RELAY_UPSTREAM_TIMEOUT_MS: "400" } }, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256());
    for (const status of [400, 401, 403, 404, 429, 500, 502, 503]) {
      relay.openai.behaviour = { kind: "refuse", status };
      const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
      const closed = await client.waitClosed();
      assert.deepEqual([closed.code, closed.reason], [1011, "upstream_unavailable"], `${status}`);
      cases++;
    }
    await serves(relay, token);

    // Hangs with a queue of client messages: 1011 upstream_timeout, the queue is dropped.
    relay.openai.behaviour = { kind: "hang" };
    let client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
    await client.opened;
    for (let i = 0; i < 50; i++) client.socket.send(`queued ${i}`);
    let closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1011, "upstream_timeout"]);
    cases++;
    await serves(relay, token);

    // Drops TCP mid-stream while the client keeps sending.
    relay.openai.behaviour = { kind: "drop", afterMessages: 100 };
    client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
    await client.opened;
    for (let i = 0; i < 150; i++) client.socket.send(new Uint8Array(512).fill(i));
    const started = Date.now();
    closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1011, "upstream_closed_abnormally"]);
    assert.ok(Date.now() - started < 1000);
    cases++;
    await serves(relay, token);

    // Closes right after its (slow) handshake while client messages wait in the relay's queue.
    for (
      const [code, reason] of [[4000, "beta_api_shape_disabled"], [1011, "server_error"], [
        1001,
        "going away",
      ]] as const
    ) {
      relay.openai.behaviour = { kind: "close", code, reason, afterMessages: 0 };
      relay.openai.handshakeDelayMs = 200;
      client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
      await client.opened;
      for (let i = 0; i < 30; i++) client.socket.send(`early ${i}`);
      closed = await client.waitClosed();
      assert.deepEqual([closed.code, closed.reason], [code, reason]);
      cases++;
    }
    await serves(relay, token);
    cases++;
  });
  recordFigure({
    area: "Faults: upstream",
    tried:
      "upstream refuses (400, 401, 403, 404, 429, 500, 502, 503), hangs with 50 queued messages, drops TCP mid-stream under traffic, closes (4000, 1011, 1001) while 30 messages are queued",
    counts: { cases },
    held:
      "1011 upstream_unavailable / upstream_timeout / upstream_closed_abnormally or the upstream's own code; within 1 s of a drop; no leaked socket or timer; next client served",
    command: testCommand("faults_test.ts", "upstream refuses"),
  });
});

Deno.test("faults: Auth down, slow, malformed, refusing, then back; JWKS rotation", async () => {
  let cases = 0;
  const timings: number[] = [];
  const auth = await startAuthStandIn();
  try {
    // Cold relays (no cached JWKS) for each failure mode.
    for (const mode of ["down", "malformed", "refuse", "slow"] as const) {
      await withCheckedRelay({ auth, deps: { authTimeoutMs: 300 } }, async (relay, secret) => {
        const token = secret(await auth.signEs256());
        const hs = secret(await auth.signHs256());
        await auth.setMode(mode, { slowMs: 3000 });
        try {
          for (const t of [token, hs]) {
            const started = Date.now();
            const client = await rawClient(relay.wsUrl("/relay", { jwt: t }));
            client.abort();
            timings.push(Date.now() - started);
            assert.equal(client.status, 503, `${mode}: ${client.body}`);
            assert.equal(JSON.parse(client.body).error, "auth_unavailable", mode);
            assert.ok(
              Date.now() - started < 2000,
              `${mode}: answered after ${Date.now() - started} ms`,
            );
            cases++;
          }
        } finally {
          await auth.setMode("up");
        }
        await serves(relay, token);
        cases++;
      });
    }

    // A warm relay keeps verifying asymmetric tokens locally while Auth is down;
    // HS256 tokens need Auth and get 503.
    await withCheckedRelay({ auth }, async (relay, secret) => {
      const token = secret(await auth.signEs256());
      await serves(relay, token);
      await auth.setMode("down");
      try {
        await serves(relay, token);
        const hs = await rawClient(relay.wsUrl("/relay", { jwt: secret(await auth.signHs256()) }));
        hs.abort();
        assert.equal(hs.status, 503);
        cases += 2;
      } finally {
        await auth.setMode("up");
      }

      // Rotation: a token from a new key (unknown kid to the cache) is accepted;
      // tokens from the old key still are while it stays published.
      const old = secret(await auth.signEs256());
      await auth.rotateKey();
      const rotated = secret(await auth.signEs256());
      assert.notEqual(rotated.split(".")[0], old.split(".")[0], "new kid");
      await serves(relay, rotated);
      await serves(relay, old);
      const unknown = await rawClient(
        relay.wsUrl("/relay", {
          jwt: secret(await auth.signEs256({}, { kid: "never-published" })),
        }),
      );
      unknown.abort();
      assert.equal(unknown.status, 401);
      cases += 3;
    });
  } finally {
    await auth.close();
  }
  recordFigure({
    area: "Faults: Supabase Auth",
    tried:
      "Auth down (503), malformed answers, refusing connections, slower (3 s) than the 300 ms auth timeout, each on a cold relay with ES256 and HS256 tokens; Auth down on a warm relay; JWKS rotation (new kid), old key, never-published kid",
    counts: { cases, "slowest refusal ms": Math.max(...timings) },
    held:
      "503 auth_unavailable within the timeout (never 401 or a hang), recovery once Auth is back; warm relay keeps accepting ES256 locally; rotated and old keys accepted, unknown kid 401",
    command: testCommand("faults_test.ts", "Auth down"),
  });
});

Deno.test("faults: clients that vanish mid-traffic get their upstreams closed within a second", async () => {
  const count = 20;
  await withCheckedRelay(
    { env: { RELAY_MAX_CONNECTIONS_PER_USER: "50" } },
    async (relay, secret) => {
      const token = secret(await relay.auth.signEs256());
      const clients = await Promise.all(
        Array.from({ length: count }, () => rawClient(relay.wsUrl("/relay", { jwt: token }))),
      );
      await relay.openai.waitForConnections(count);
      for (const client of clients) {
        await client.send(new Uint8Array(1024));
        await client.readEvent();
        void client.send(new Uint8Array(1024)).catch(() => {});
      }
      const started = Date.now();
      for (const client of clients) client.abort();
      await within(
        Promise.all(relay.openai.connections.map((c) => c.closed)),
        1000,
        "upstreams closed",
      );
      const ms = Date.now() - started;
      await until(() => relay.relay.connections() === 0, 2000, "slots released");
      await serves(relay, token);
      recordFigure({
        area: "Faults: vanishing clients",
        tried: `${count} clients drop TCP at once mid-traffic, no close frame`,
        counts: { connections: count, "all upstreams closed after ms": ms },
        held: "every upstream closed within 1 s, every slot released, next client served",
        command: testCommand("faults_test.ts", "vanish"),
      });
    },
  );
});

/** The relay's `websocket.connection.closed` telemetry events in `output`. */
function closedEvents(output: string): { code?: number; reason?: string }[] {
  return output.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line))
    .filter((event) => event.event === "websocket.connection.closed");
}

Deno.test({
  name: "faults: slow readers on either side are cut at the buffer cap and memory stays bounded" +
    (canMeasureRss ? "" : " (skipped: RSS is read from /proc, which needs Linux and --allow-all)"),
  ignore: !canMeasureRss,
  fn: async () => {
    const cap = 1 * MiB;
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn();
    const relay = await startRelayProcess({
      ...standInEnv(auth, openai),
      RELAY_MAX_BUFFERED_BYTES: String(cap),
      RELAY_RATE_LIMIT: "100000",
      RELAY_MAX_MESSAGE_BYTES: String(MiB),
    });
    const token = await auth.signEs256();
    const figures: Record<string, number> = {};
    try {
      const baseline = relay.rss();
      figures["baseline RSS MiB"] = Math.round(baseline / MiB);

      // Slow client: the upstream floods 64 KiB messages, the client never reads.
      openai.behaviour = { kind: "flood", messageBytes: 64 * 1024 };
      const reader = await rawClient(relay.wsUrl("/relay", { jwt: token }));
      assert.equal(reader.status, 101);
      let peak = baseline;
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline && openai.connections[0]?.closeReceived === undefined) {
        peak = Math.max(peak, relay.rss());
        await sleep(50);
      }
      await within(openai.connections[0]!.closed, 5000, "flooding upstream closed");
      assert.equal(openai.connections[0]?.closeReceived?.code, 1000, "upstream told 1000");
      // The client reads at last: what was buffered, then 1013 buffer_full.
      const closed = await within(reader.readUntilClose(), 10_000, "slow client's close");
      reader.abort();
      assert.deepEqual([closed?.code, closed?.reason], [1013, "buffer_full"]);
      figures["slow client peak RSS growth MiB"] = Math.round((peak - baseline) / MiB);

      // Slow upstream: it stops reading, the client sends 64 KiB messages as fast as it can.
      openai.behaviour = { kind: "stall" };
      const writer = new TestClient(relay.wsUrl("/relay", { jwt: token }));
      await writer.opened;
      await openai.waitForConnections(2);
      const chunk = new Uint8Array(64 * 1024).fill(1);
      let sent = 0;
      let peak2 = relay.rss();
      while (writer.socket.readyState === WebSocket.OPEN && sent < 2000) {
        if (writer.socket.bufferedAmount < 4 * MiB) {
          writer.socket.send(chunk);
          sent++;
        } else await sleep(5);
        if (sent % 16 === 0) {
          peak2 = Math.max(peak2, relay.rss());
          await sleep(0);
        }
      }
      const writerClosed = await writer.waitClosed(10_000);
      // CONTRACT: a client that keeps sending after the relay closed it may see the
      // socket torn down instead of the code; the relay's telemetry shows its decision.
      if (writerClosed.code !== 1013) {
        assert.ok([0, 1006].includes(writerClosed.code), `writer saw ${writerClosed.code}`);
      }
      // A stalled upstream never answers the relay's close: the session lingers up to 5 s.
      await until(() => closedEvents(relay.output()).length >= 2, 10_000, "both closes logged");
      for (const decided of closedEvents(relay.output())) {
        assert.deepEqual([decided.code, decided.reason], [1013, "buffer_full"]);
      }
      figures["slow upstream: close code the writer saw (0: torn down)"] = writerClosed.code;
      figures["slow upstream: MiB sent before the cut"] = Math.round(sent * 64 / 1024);
      figures["slow upstream peak RSS growth MiB"] = Math.round((peak2 - baseline) / MiB);
      // Bounded: the cap is 1 MiB per side; allow generous runtime overhead, not the flood.
      assert.ok(
        peak - baseline < 96 * MiB,
        `slow client grew RSS by ${(peak - baseline) / MiB} MiB`,
      );
      assert.ok(
        peak2 - baseline < 96 * MiB,
        `slow upstream grew RSS by ${(peak2 - baseline) / MiB} MiB`,
      );
      const health = await fetch(`http://127.0.0.1:${relay.port}/relay/health`);
      assert.equal((await health.json()).status, "ok");
      // Still serves.
      openai.behaviour = { kind: "echo" };
      const next = new TestClient(relay.wsUrl("/relay", { jwt: token }));
      await next.opened;
      next.socket.send("after");
      assert.deepEqual(await next.waitForMessages(1), ["after"]);
      await next.close();
    } finally {
      const code = await relay.stop();
      assert.equal(code, 0, "clean exit on SIGTERM");
      assertNoSecrets(
        relay.output(),
        [token, openai.apiKey, auth.publishableKey],
        "relay process output",
      );
      await openai.close();
      await auth.close();
    }
    recordFigure({
      area: "Faults: slow readers (relay process RSS)",
      tried:
        "client that never reads while the upstream floods 64 KiB messages; upstream that never reads while the client sends 64 KiB messages; RELAY_MAX_BUFFERED_BYTES = 1 MiB",
      counts: figures,
      held:
        "client gets 1013 buffer_full, upstream 1000; relay RSS growth bounded (asserted < 96 MiB); clean exit",
      command: testCommand("faults_test.ts", "slow readers"),
    });
  },
});
