/**
 * Secrets: the relay process's whole stdout and stderr, at debug level, never
 * hold a token (from any of its five sources, accepted or refused), an API key
 * or a message payload. (Every in-process test of this suite also checks its
 * telemetry lines, through `withCheckedRelay`.)
 */
import assert from "node:assert/strict";
import { standInEnv } from "../helpers/relay_harness.ts";
import { TestClient } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { rawClient } from "../stand_ins/raw_client.ts";
import {
  assertNoSecrets,
  PAYLOAD_MARKER,
  recordFigure,
  startRelayProcess,
  testCommand,
} from "./support.ts";

Deno.test("secrets: relay process output never holds tokens, keys or payloads", async () => {
  const auth = await startAuthStandIn();
  const openai = await startOpenAIStandIn();
  const relay = await startRelayProcess({
    ...standInEnv(auth, openai),
    RELAY_LOG_LEVEL: "debug",
    RELAY_ALLOWED_ORIGINS: "https://app.example.com",
  });
  const secrets: string[] = [
    openai.apiKey,
    auth.publishableKey,
    auth.anonKey,
    auth.serviceRoleKey,
    auth.hsSecret,
    PAYLOAD_MARKER,
  ];
  let cases = 0;
  try {
    const url = (path: string) => `ws://127.0.0.1:${relay.port}${path}`;
    // Accepted tokens, one per source.
    const sources: [string, (t: string) => [string, Record<string, string>, string[]]][] = [
      ["?jwt=", (t) => [url(`/relay?jwt=${t}`), {}, []]],
      ["?token=", (t) => [url(`/relay?token=${t}`), {}, []]],
      ["Bearer", (t) => [url("/relay"), { authorization: `Bearer ${t}` }, []]],
      ["jwt- subprotocol", (t) => [url("/relay"), {}, ["realtime", `jwt-${t}`]]],
      [
        "openai-insecure-api-key subprotocol",
        (t) => [url("/relay"), {}, ["realtime", `openai-insecure-api-key.${t}`]],
      ],
    ];
    for (const [name, build] of sources) {
      const token = await auth.signEs256();
      secrets.push(token);
      const [address, headers, protocols] = build(token);
      const client = await rawClient(address, { headers, protocols });
      assert.equal(client.status, 101, name);
      const payload = `{"type":"conversation.item.create","text":"${PAYLOAD_MARKER} ${name}"}`;
      await client.send(payload);
      const echo = await client.readEvent();
      assert.equal(echo?.kind === "message" ? echo.data : null, payload);
      await client.send(new TextEncoder().encode(`${PAYLOAD_MARKER} binary`));
      await client.readEvent();
      await client.close(4000, `bye ${name}`);
      await client.readUntilClose();
      client.abort();
      cases++;
    }
    // Refused tokens, bad origin, Auth down: refusals are logged, the tokens never.
    const refused = [
      await auth.signEs256({}, { expiresInS: -60 }),
      await auth.signEs256({}, { kid: "unknown" }),
      auth.anonKey,
      auth.serviceRoleKey,
      "not.a.jwt-but-secret-looking-string",
    ];
    secrets.push(...refused);
    for (const token of refused) {
      const client = await rawClient(url(`/relay?jwt=${token}`));
      client.abort();
      assert.ok(client.status === 401 || client.status === 403, `${client.status}`);
      cases++;
    }
    const badOrigin = await auth.signEs256();
    secrets.push(badOrigin);
    const origin = await rawClient(url(`/relay?jwt=${badOrigin}`), {
      headers: { origin: "https://evil.com" },
    });
    origin.abort();
    assert.equal(origin.status, 403);
    await auth.setMode("down");
    const hs = await auth.signHs256();
    secrets.push(hs);
    const down = await rawClient(url(`/relay?jwt=${hs}`));
    down.abort();
    assert.equal(down.status, 503);
    await auth.setMode("up");
    // The OpenAI SDK's own client path, with a realtime exchange that reports usage.
    openai.behaviour = { kind: "realtime" };
    const token = await auth.signEs256();
    secrets.push(token);
    const sdk = new TestClient(url("/relay/v1/realtime?model=gpt-realtime"), [
      "realtime",
      `openai-insecure-api-key.${token}`,
    ]);
    await sdk.opened;
    sdk.socket.send(
      JSON.stringify({
        type: "conversation.item.create",
        item: {
          type: "message",
          role: "user",
          content: [{ type: "input_text", text: PAYLOAD_MARKER }],
        },
      }),
    );
    sdk.socket.send(JSON.stringify({ type: "response.create" }));
    await sdk.waitForMessages(3);
    await sdk.close();
    cases += 3;
  } finally {
    await relay.stop();
    await openai.close();
    await auth.close();
  }
  const output = relay.output();
  assert.ok(output.includes("websocket.connection.closed"), "telemetry was captured");
  assert.ok(output.includes("message.received"), "debug telemetry was on");
  assertNoSecrets(output, secrets, "relay process output");
  recordFigure({
    area: "Secrets in output",
    tried:
      "relay process at debug level: accepted tokens from all five sources, refused tokens (expired, unknown kid, anon, service-role, garbage), bad origin, Auth down, realtime exchange; every in-process test also checks its telemetry",
    counts: { cases, "secrets checked": secrets.length, "output lines": output.split("\n").length },
    held:
      "no token, token signature, API key, project secret or payload marker in stdout or stderr",
    command: testCommand("secrets_test.ts"),
  });
});
