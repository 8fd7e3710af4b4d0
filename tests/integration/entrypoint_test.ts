/**
 * The real entrypoint under plain Deno, as a subprocess: settings validation
 * at start, serving on $PORT, and shutdown on SIGTERM (CONTRACT.md).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { freePort } from "../helpers/relay_process.ts";
import { TestClient, within } from "../helpers/ws_client.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ENTRY = "supabase/functions/relay/index.ts";

/** The environment a subprocess needs to find Deno's cache, and nothing of ours. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "DENO_TLS_CA_STORE", "DENO_CERT"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** The entrypoint with `deno task serve`'s permissions and no environment of ours. */
function spawnRelay(env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", ENTRY],
    cwd: ROOT,
    clearEnv: true,
    env: { ...baseEnv(), ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test("entrypoint refuses to start on bad settings, naming every bad variable", async () => {
  const child = spawnRelay({
    SUPABASE_URL: "nope",
    RELAY_RATE_LIMIT: "fast",
    OPENAI_API_KEY: "sk-must-not-be-printed",
  });
  const { code, stdout, stderr } = await within(child.output(), 30_000, "exit");
  const text = new TextDecoder().decode(stderr) + new TextDecoder().decode(stdout);
  assert.equal(code, 1);
  assert.match(text, /SUPABASE_URL: "nope" is not a http: or https: URL/);
  assert.match(text, /SUPABASE_ANON_KEY: none is set/);
  assert.match(text, /RELAY_RATE_LIMIT: "fast" is not a whole number/);
  assert.ok(!text.includes("sk-must-not-be-printed"));
});

Deno.test("entrypoint serves on $PORT and says 1012 to clients on SIGTERM, then exits", async () => {
  const auth = await startAuthStandIn();
  const port = freePort();
  const child = spawnRelay({
    SUPABASE_URL: auth.url,
    SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
    PORT: String(port),
  });
  const output = child.output();
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/relay/health`);
        assert.deepEqual(await response.json(), { status: "ok", connections: 0 });
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const token = await auth.signEs256();
    const client = new TestClient(`ws://127.0.0.1:${port}/relay/echo?jwt=${token}`);
    await client.opened;
    client.socket.send("through the real entrypoint");
    await client.waitForMessages(1);
    const started = Date.now();
    child.kill("SIGTERM");
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1012, "server_restarting"]);
    const result = await within(output, 5000, "exit after SIGTERM");
    assert.equal(result.code, 0);
    assert.ok(Date.now() - started < 5000);
    const lines = new TextDecoder().decode(result.stdout).trim().split("\n").map((line) =>
      JSON.parse(line)
    );
    const events = lines.map((line) => line.event);
    assert.ok(events.includes("websocket.connection.accepted"));
    assert.equal(lines.find((line) => line.event === "websocket.connection.closed")?.code, 1012);
    assert.ok(lines.every((line) => !JSON.stringify(line).includes(token)));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await output;
    await auth.close();
  }
});
