/**
 * CONTRACT.md "In-band close notices", seen on the wire with the raw client: on
 * the OpenAI route, every close the relay sends a client comes right after one
 * `error` event naming it; none after a client's own close, none on echo,
 * none with `RELAY_CLOSE_NOTICES=off`.
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, withRelay } from "../helpers/relay_harness.ts";
import { until } from "../helpers/ws_client.ts";
import { type RawClient, rawClient } from "../stand_ins/raw_client.ts";

type Close = { code?: number; reason: string };

/** Text (or `<binary n>`) messages in wire order, then the server's close frame. */
async function readToClose(
  client: RawClient,
): Promise<{ messages: string[]; close: Close | null }> {
  const messages: string[] = [];
  const close = await client.readUntilClose((event) => {
    if (event.kind !== "message") return;
    messages.push(event.type === "text" ? event.data : `<binary ${event.data.byteLength}>`);
  });
  // Answer the close, as a browser would, then drop TCP.
  await client.close(1000, "").catch(() => {});
  client.abort();
  return { messages, close };
}

async function open(relay: RelayUnderTest, path: string, token?: string): Promise<RawClient> {
  const client = await rawClient(relay.wsUrl(path, { jwt: token ?? await relay.auth.signEs256() }));
  assert.equal(client.status, 101);
  return client;
}

/** Asserts that `text` is the notice of the close `close`, with `code` as its error code. */
function assertNotice(text: string | undefined, close: Close | null, code: string): void {
  assert.ok(text !== undefined, "a message precedes the close");
  const notice = JSON.parse(text);
  assert.equal(notice.type, "error");
  assert.match(notice.event_id, /^relay_[0-9a-f]{8}_[0-9a-z]+$/);
  assert.ok(typeof notice.error.message === "string" && notice.error.message.length > 0);
  assert.deepEqual({ ...notice.error, message: "" }, {
    type: "relay_error",
    code,
    message: "",
    param: null,
    event_id: null,
    close_code: close?.code,
  });
}

const LIMITS = {
  RELAY_MAX_MESSAGE_BYTES: "1024",
  RELAY_RATE_LIMIT: "5",
  RELAY_UPSTREAM_TIMEOUT_MS: "300",
  RELAY_MAX_BUFFERED_BYTES: "3000",
};

Deno.test("close notices: each close the relay starts on the OpenAI route follows its notice", async (t) => {
  await withRelay({ env: LIMITS }, async (relay) => {
    const cases: [
      name: string,
      behaviour: typeof relay.openai.behaviour,
      act: (client: RawClient) => Promise<void>,
      close: [number, string],
      code: string,
    ][] = [
      [
        "1009 message_too_big",
        { kind: "echo" },
        async (c) => {
          await c.send("hi");
          await c.send("x".repeat(2000));
        },
        [1009, "message_too_big"],
        "message_too_big",
      ],
      [
        "1008 rate_limited",
        { kind: "echo" },
        async (c) => {
          // The burst is 2 x 5; the 11th is over. More would arrive after the close,
          // and Deno tears down a socket that keeps sending (see the contract).
          for (let i = 0; i < 11; i++) await c.send(`m${i}`);
        },
        [1008, "rate_limited"],
        "rate_limited",
      ],
      [
        "1011 upstream_timeout",
        { kind: "hang" },
        async () => {},
        [1011, "upstream_timeout"],
        "upstream_timeout",
      ],
      [
        "1013 buffer_full",
        { kind: "hang" },
        async (c) => {
          for (let i = 0; i < 4; i++) await c.send("b".repeat(1000));
        },
        [1013, "buffer_full"],
        "buffer_full",
      ],
      ["1011 upstream_unavailable", { kind: "refuse", status: 503 }, async () => {}, [
        1011,
        "upstream_unavailable",
      ], "upstream_unavailable"],
      [
        "1011 upstream_closed_abnormally (TCP dropped)",
        { kind: "drop", afterMessages: 1 },
        async (c) => {
          await c.send("last words");
        },
        [1011, "upstream_closed_abnormally"],
        "upstream_closed_abnormally",
      ],
    ];
    for (const [name, behaviour, act, [code, reason], noticeCode] of cases) {
      await t.step(name, async () => {
        relay.openai.behaviour = behaviour;
        const client = await open(relay, "/relay");
        await act(client);
        const { messages, close } = await readToClose(client);
        assert.deepEqual([close?.code, close?.reason], [code, reason]);
        assertNotice(messages.at(-1), close, noticeCode);
        // Only the notice is the relay's own: the rest came from upstream.
        assert.equal(messages.filter((m) => m.includes('"relay_error"')).length, 1);
      });
    }
    await t.step("4001 token_expired", async () => {
      relay.openai.behaviour = { kind: "echo" };
      const token = await relay.auth.signEs256({}, { expiresInS: 2 });
      const client = await open(relay, "/relay", token);
      await client.send("still here");
      const { messages, close } = await readToClose(client);
      assert.deepEqual([close?.code, close?.reason], [4001, "token_expired"]);
      assert.deepEqual(messages.slice(0, -1), ["still here"], "the echo, then the notice");
      assertNotice(messages.at(-1), close, "token_expired");
      assert.match(JSON.parse(messages.at(-1)!).error.message, /reconnect with a fresh one/);
    });
  });
});

Deno.test("close notices: closes forwarded from OpenAI carry its code and reason", async (t) => {
  await withRelay({}, async (relay) => {
    const reason = "invalid_request_error.beta_api_shape_disabled";
    const cases: [string, typeof relay.openai.behaviour, [number, string], string][] = [
      ["4000 with OpenAI's reason", { kind: "close", code: 4000, reason, afterMessages: 1 }, [
        4000,
        reason,
      ], reason],
      ["1011 from OpenAI itself", {
        kind: "close",
        code: 1011,
        reason: "server_error",
        afterMessages: 1,
      }, [
        1011,
        "server_error",
      ], "server_error"],
      [
        "no status becomes 1000",
        { kind: "close", afterMessages: 1 },
        [1000, ""],
        "OpenAI closed the connection.",
      ],
    ];
    for (const [name, behaviour, [code, closeReason], message] of cases) {
      await t.step(name, async () => {
        relay.openai.behaviour = behaviour;
        const client = await open(relay, "/relay");
        await client.send("hello");
        const { messages, close } = await readToClose(client);
        assert.deepEqual([close?.code, close?.reason], [code, closeReason]);
        assert.equal(messages.length, 1, "the notice, nothing else");
        assertNotice(messages[0], close, "upstream_closed");
        assert.equal(JSON.parse(messages[0]!).error.message, message);
      });
    }
  });
});

Deno.test("close notices: shutdown tells OpenAI-route clients 1012 in band, echo clients not", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "echo" };
    const openai = await open(relay, "/relay");
    const echo = await open(relay, "/relay/echo");
    await until(() => relay.relay.connections() === 2, 3000, "both connected");
    const shutdown = relay.relay.shutdown();
    const [seenOpenAI, seenEcho] = await Promise.all([readToClose(openai), readToClose(echo)]);
    await shutdown;
    assert.deepEqual([seenOpenAI.close?.code, seenOpenAI.close?.reason], [
      1012,
      "server_restarting",
    ]);
    assert.equal(seenOpenAI.messages.length, 1);
    assertNotice(seenOpenAI.messages[0], seenOpenAI.close, "server_restarting");
    assert.deepEqual([seenEcho.close?.code, seenEcho.close?.reason], [1012, "server_restarting"]);
    assert.deepEqual(seenEcho.messages, [], "no notice on the echo route");
  });
});

Deno.test("close notices: none on the echo route", async (t) => {
  await withRelay({ env: LIMITS }, async (relay) => {
    await t.step("1009 message_too_big", async () => {
      const client = await open(relay, "/relay/echo");
      await client.send("x".repeat(2000));
      const { messages, close } = await readToClose(client);
      assert.equal(close?.code, 1009);
      assert.deepEqual(messages, []);
    });
    await t.step("4001 token_expired", async () => {
      const client = await open(
        relay,
        "/relay/echo",
        await relay.auth.signEs256({}, { expiresInS: 1 }),
      );
      const { messages, close } = await readToClose(client);
      assert.equal(close?.code, 4001);
      assert.deepEqual(messages, []);
    });
  });
});

Deno.test("close notices: none when the client starts the close", async (t) => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "echo" };
    for (
      const [code, reason] of [[1000, "bye"], [4321, "user hung up"], [1001, "tab closed"]] as const
    ) {
      await t.step(`client closes ${code}`, async () => {
        const seen = relay.openai.connections.length;
        const client = await open(relay, "/relay");
        await client.send("hello");
        assert.deepEqual(await client.readEvent(), {
          kind: "message",
          type: "text",
          data: "hello",
        });
        await client.close(code, reason);
        const messages: string[] = [];
        const close = await client.readUntilClose((e) => {
          if (e.kind === "message" && e.type === "text") messages.push(e.data);
        });
        client.abort();
        assert.equal(close?.code, code, "the relay answers the client's own close");
        assert.deepEqual(messages, [], "with no notice");
        await relay.openai.connections[seen]?.closed;
      });
    }
  });
});

Deno.test("close notices: RELAY_CLOSE_NOTICES=off sends none", async (t) => {
  const env = {
    RELAY_MAX_MESSAGE_BYTES: "1024",
    RELAY_CLOSE_NOTICES: "off",
    RELAY_SESSION_POLICY: JSON.stringify({ locked: [] }),
  };
  await withRelay({ env }, async (relay) => {
    relay.openai.behaviour = { kind: "echo" };
    await t.step("1009 message_too_big", async () => {
      const client = await open(relay, "/relay");
      await client.send("x".repeat(2000));
      const { messages, close } = await readToClose(client);
      assert.equal(close?.code, 1009);
      assert.deepEqual(messages, []);
    });
    await t.step("a forwarded 4000", async () => {
      relay.openai.behaviour = { kind: "close", code: 4000, reason: "bye", afterMessages: 1 };
      const client = await open(relay, "/relay");
      await client.send("{}"); // refused by the policy: not forwarded, so send an allowed one
      await client.send('{"type":"input_audio_buffer.clear"}');
      const { messages, close } = await readToClose(client);
      assert.deepEqual([close?.code, close?.reason], [4000, "bye"]);
      assert.equal(messages.length, 1, "only the policy refusal");
      assert.equal(JSON.parse(messages[0]!).error.code, "relay_policy_violation");
      relay.openai.behaviour = { kind: "echo" };
    });
    await t.step("1008 policy_violation", async () => {
      const client = await open(relay, "/relay");
      for (let i = 0; i < 20; i++) await client.send("[]");
      const { messages, close } = await readToClose(client);
      assert.deepEqual([close?.code, close?.reason], [1008, "policy_violation"]);
      assert.equal(messages.length, 20, "the 20 refusals, no notice");
      assert.ok(messages.every((m) => JSON.parse(m).error.code === "relay_policy_violation"));
    });
  });
});
