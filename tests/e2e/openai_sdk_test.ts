/**
 * End-to-end test with a client nobody here wrote: the official `openai` SDK's
 * Realtime clients, pointed at the relay (`baseURL` = its `/relay` URL, API key
 * = the user's Supabase access token), complete a session against the OpenAI
 * stand-in behind the relay. The SDK only builds `wss:` URLs, so the relay is
 * served over TLS with a certificate made for this test.
 * @module
 */
import assert from "node:assert/strict";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import type { SdkRunSummary } from "./sdk_client.ts";

const REPO_ROOT = new URL("../../", import.meta.url);
const SDK_CLIENT = new URL("./sdk_client.ts", import.meta.url);
const RUN_TIMEOUT_MS = 20_000;

/** A throwaway CA and a 127.0.0.1 server certificate it signed, made with the openssl CLI. */
interface TestCerts {
  caFile: string;
  cert: string;
  key: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("openssl not found: install it (apt-get install openssl) to run this test");
    }
    throw error;
  }
  if (!output.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

async function makeCerts(dir: string): Promise<TestCerts> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=relay e2e test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  await openssl(dir, [
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "1",
    "-extfile",
    "server.ext",
  ]);
  return {
    caFile: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/server.pem`),
    key: await Deno.readTextFile(`${dir}/server.key`),
  };
}

/** Runs sdk_client.ts in its own Deno (same binary), trusting the test CA through DENO_CERT. */
async function runSdkClient(
  client: "websocket" | "ws",
  env: { baseURL: string; token: string; caFile: string },
): Promise<SdkRunSummary> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read", SDK_CLIENT.pathname],
    cwd: REPO_ROOT.pathname,
    env: {
      DENO_CERT: env.caFile,
      // The token goes through the environment, never the command line.
      RELAY_BASE_URL: env.baseURL,
      RELAY_TOKEN: env.token,
      SDK_CLIENT: client,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const output = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr).replaceAll(env.token, "<token>");
  assert.ok(output.success, `sdk_client (${client}) exited ${output.code}:\n${stderr}`);
  return JSON.parse(stdout.split("\n").at(-1) ?? "") as SdkRunSummary;
}

Deno.test("openai SDK realtime clients complete a session through the relay over TLS", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "relay-e2e-tls-" });
  const lines: string[] = [];
  let stack: DevStack | undefined;
  const stop = new AbortController();
  let tls: Deno.HttpServer | undefined;
  try {
    const certs = await makeCerts(dir);
    stack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
      telemetry: (line) => lines.push(line),
    });
    const relayStack = stack;
    tls = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: certs.cert,
      key: certs.key,
      signal: stop.signal,
      onListen: () => {},
    }, relayStack.relay.handler);
    const baseURL = `https://127.0.0.1:${(tls.addr as Deno.NetAddr).port}/relay`;
    const session = await relayStack.auth.issueDevToken({ email: "sdk@example.com" });
    const userId = String(session.user.id);

    for (
      const [client, offered] of [
        ["websocket", "realtime"], // runtime WebSocket, key as openai-insecure-api-key.<key>
        ["ws", ""], // Node `ws` package, key as Authorization: Bearer
      ] as const
    ) {
      await t.step(
        `${client} client: session.update, response.create, text deltas, response.done`,
        async () => {
          const upstreamBefore = relayStack.openai!.connections.length;
          const summary = await runSdkClient(client, {
            baseURL,
            token: session.access_token,
            caFile: certs.caFile,
          });
          assert.equal(summary.error, null);
          assert.equal(summary.path, "/relay/realtime");
          assert.equal(summary.protocol, offered);
          for (
            const type of [
              "session.created",
              "session.updated",
              "response.created",
              "response.output_text.delta",
              "response.done",
            ]
          ) {
            assert.ok(summary.events.includes(type), `${type} reached the SDK`);
          }
          assert.equal(summary.sessionInstructions, "Be brief.");
          assert.ok(summary.text.length > 0);
          assert.ok((summary.usage as { total_tokens: number }).total_tokens > 0);
          assert.equal(summary.closeCode, 1000);

          const accepted = lines.map((line) => JSON.parse(line))
            .filter((line) => line.event === "websocket.connection.accepted").at(-1);
          assert.equal(accepted?.user, userId);
          assert.equal(accepted?.route, "openai");
          assert.equal(accepted?.model, "gpt-realtime");
          const upstream = relayStack.openai!.connections.slice(upstreamBefore);
          assert.equal(upstream.length, 1);
          assert.deepEqual(
            upstream[0]!.received.map((m) => JSON.parse(String(m.data)).type),
            ["session.update", "response.create"],
          );
          // The user's token stays at the relay: the upstream sees the server's key only.
          assert.ok(!JSON.stringify(upstream[0]!.headers).includes(session.access_token));
        },
      );
    }
  } finally {
    stop.abort();
    await tls?.finished;
    await stack?.close(2000);
    await Deno.remove(dir, { recursive: true });
  }
});
