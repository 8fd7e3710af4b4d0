/**
 * `deno task dev`'s stack with its defaults (metering, budget, example policy,
 * resume) against the embedded PGlite: the migrations applied at start, a
 * scripted answer of the OpenAI stand-in metered through the real relay into
 * the database, `/api/usage` reading it back as the token's user, the data
 * kept across a restart and wiped by `fresh`, and the demo server's files.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { readMigrations } from "../../dev/db/migrations.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";
import { DEV_SESSION_POLICY, withDevDefaults } from "../../dev/defaults.ts";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";

const FREE_PORTS = { relay: 0, demo: 0, auth: 0, openai: 0, db: 0 };
const MIGRATIONS = new URL("../../supabase/migrations", import.meta.url).pathname;

interface UsageRow {
  user_id: string;
  model: string;
  event_id: string;
  cost_micros: string;
}

/** Starts the dev stack as `deno task dev` configures it, on free ports and `dataDir`. */
function devStack(dataDir: string, auth: AuthStandIn, fresh = false): Promise<DevStack> {
  return startDevStack({
    ports: FREE_PORTS,
    env: withDevDefaults({}).env,
    dataDir,
    fresh,
    auth,
    telemetry: () => {},
  });
}

async function usageOf(stack: DevStack, token: string | null): Promise<Response> {
  return await fetch(new URL("api/usage", stack.demoUrl), {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

async function summaryOf(stack: DevStack, token: string): Promise<Record<string, unknown>> {
  const response = await usageOf(stack, token);
  assert.equal(response.status, 200);
  return await response.json();
}

/** Calls `read` until `done` holds of its answer (at most `ms`), and returns the last answer. */
async function poll<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}

/** One turn through the relay: a user message and response.create; resolves to response.done. */
async function oneTurn(stack: DevStack, token: string): Promise<{ id: string }> {
  const client = new TestClient(`${stack.relayUrl}/relay?jwt=${token}`);
  try {
    await client.opened;
    client.socket.send(JSON.stringify({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "Hello" }] },
    }));
    client.socket.send(JSON.stringify({ type: "response.create" }));
    const done = () => client.events().find((event) => event.type === "response.done");
    await until(() => done() !== undefined, 10_000, "response.done");
    return done()!.response as { id: string };
  } finally {
    await client.close();
  }
}

Deno.test("dev stack meters into the embedded database, /api/usage reads it as the token's user, restarts keep it and fresh wipes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-devstack-" });
  const dataDir = `${dir}/pglite`;
  // Kept across the restarts, so users keep their ids as a project's users do.
  const auth = await startAuthStandIn();
  let stack: DevStack | null = null;
  let sql: postgres.Sql | null = null;
  try {
    stack = await devStack(dataDir, auth);
    const { migrations } = await readMigrations(MIGRATIONS);
    assert.equal(stack.database?.kind, "embedded");
    assert.equal(stack.database?.created, true);
    assert.deepEqual(stack.database?.applied, migrations.map((m) => m.file));
    assert.equal(stack.settings.metering, true);
    assert.equal(stack.settings.budgetMicros, 50_000);

    const dev = await auth.issueDevToken({ email: "dev@example.com" });
    const other = await auth.issueDevToken({ email: "other@example.com" });
    const devId = String(dev.user.id);

    const before = await summaryOf(stack, dev.access_token);
    assert.equal(before.spent_micros, 0);
    assert.equal(before.limit_micros, 50_000);
    assert.equal(before.remaining_micros, 50_000);

    const response = await oneTurn(stack, dev.access_token);
    // The example policy reached OpenAI first, before anything of the client's.
    const upstream = stack.openai!.connections.at(-1)!;
    assert.deepEqual(JSON.parse(String(upstream.received[0]?.data)), {
      type: "session.update",
      session: DEV_SESSION_POLICY.session,
    });

    sql = postgres(stack.database!.displayUrl, { max: 1, prepare: false, onnotice: () => {} });
    const db = sql;
    // The relay writes usage through its outbox, just after the response.
    const rows = await poll(
      async () => [
        ...await db<UsageRow[]>`
        select user_id::text, model, event_id, cost_micros::text from relay.usage`,
      ],
      (found) => found.length > 0,
    );
    assert.equal(rows.length, 1, "one row for the one response.done");
    const [row] = rows;
    assert.equal(row!.user_id, devId);
    assert.equal(row!.model, "gpt-realtime");
    assert.equal(row!.event_id, response.id);
    const cost = Number(row!.cost_micros);
    assert.ok(cost > 0, "the stand-in's answer cost something");

    // As that user: their spend; another user's token sees only their own (nothing).
    const running = stack;
    const summary = await poll(
      () => summaryOf(running, dev.access_token),
      (found) => found.spent_micros === cost,
    );
    assert.deepEqual(Object.keys(summary).sort(), [
      "limit_micros",
      "period_start",
      "remaining_micros",
      "spent_micros",
    ]);
    assert.equal(summary.spent_micros, cost);
    assert.equal(summary.remaining_micros, 50_000 - cost);
    assert.equal(
      summary.period_start,
      new Date(new Date().toISOString().slice(0, 10)).toISOString(),
    );
    assert.equal((await summaryOf(stack, other.access_token)).spent_micros, 0);

    await sql.end({ timeout: 1 });
    sql = null;
    await stack.close();
    stack = null;

    stack = await devStack(dataDir, auth);
    assert.equal(stack.database?.created, false, "the same database opened again");
    assert.deepEqual(stack.database?.applied, [], "nothing left to apply");
    assert.equal((await summaryOf(stack, dev.access_token)).spent_micros, cost);
    await stack.close();
    stack = null;

    stack = await devStack(dataDir, auth, true);
    assert.equal(stack.database?.created, true);
    assert.deepEqual(stack.database?.applied, migrations.map((m) => m.file));
    assert.equal((await summaryOf(stack, dev.access_token)).spent_micros, 0);
  } finally {
    await sql?.end({ timeout: 1 });
    await stack?.close();
    await auth.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dev stack's /api/usage refuses what the relay refuses, and says so when metering is off", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-devstack-" });
  const auth = await startAuthStandIn();
  let stack: DevStack | null = null;
  try {
    stack = await devStack(`${dir}/pglite`, auth);
    const missing = await usageOf(stack, null);
    assert.equal(missing.status, 401);
    assert.equal((await missing.json()).error, "missing_token");
    const forged = await usageOf(stack, "not.a.token");
    assert.equal(forged.status, 401);
    assert.equal((await forged.json()).error, "invalid_token");
    const anon = await usageOf(stack, await auth.signEs256({ sub: "", role: "anon" }));
    assert.equal(anon.status, 403);
    assert.equal((await anon.json()).error, "forbidden");
    await stack.close();
    stack = null;

    // Metering off: no database at all, and the page is told why there is no usage.
    stack = await startDevStack({ ports: FREE_PORTS, auth, telemetry: () => {} });
    assert.equal(stack.database, null);
    const token = (await auth.issueDevToken({ email: "dev@example.com" })).access_token;
    const off = await usageOf(stack, token);
    assert.equal(off.status, 404);
    assert.equal((await off.json()).error, "metering_off");
  } finally {
    await stack?.close();
    await auth.close();
    await Deno.remove(dir, { recursive: true });
  }
});

const noPostgres = postgresUnavailable();
if (noPostgres) console.warn(`dev stack test with RELAY_DATABASE_URL skipped: ${noPostgres}`);

Deno.test({
  name:
    "dev stack uses RELAY_DATABASE_URL as it is: no embedded database, its schema untouched, what it lacks named, no password shown",
  ignore: noPostgres !== null,
  fn: async () => {
    const pg = await startPostgres({ migrate: false });
    let stack: DevStack | null = null;
    try {
      // Trust authentication ignores the password; it is there to be hidden.
      const url = pg.url.replace("postgres@", "postgres:s3cret-pw@");
      stack = await startDevStack({
        ports: FREE_PORTS,
        env: withDevDefaults({ RELAY_DATABASE_URL: url }).env,
        fresh: true,
        telemetry: () => {},
      });
      const { migrations } = await readMigrations(MIGRATIONS);
      assert.equal(stack.database?.kind, "external");
      assert.equal(stack.database?.dataDir, null);
      assert.equal(stack.ports.db, 0, "no embedded database");
      assert.deepEqual(stack.database?.pending, migrations.map((m) => m.file));
      assert.equal(stack.database?.displayUrl, url.replace("s3cret-pw", "***"));
      assert.ok(stack.notes.some((note) => /supabase db push/.test(note)), stack.notes.join("\n"));
      assert.ok(stack.notes.some((note) => /--fresh left the database alone/.test(note)));
      assert.ok(stack.notes.every((note) => !note.includes("s3cret-pw")));
      const tables = await pg.psql(
        "select count(*) from pg_tables where schemaname in ('relay', 'supabase_migrations')",
      );
      assert.equal(tables.trim(), "0", "dev changed nothing in a database it does not own");
    } finally {
      await stack?.close();
      await pg.remove();
    }
  },
});

Deno.test("dev stack's demo server serves any file directly in dev/demo/ by type and nothing outside it", async () => {
  const stack = await startDevStack({ ports: FREE_PORTS, telemetry: () => {} });
  try {
    const get = (path: string) => fetch(`${stack.demoUrl.replace(/\/$/, "")}${path}`);
    for (const file of Deno.readDirSync(new URL("../../dev/demo/", import.meta.url))) {
      if (!file.isFile || !/\.(html|js|css|png|svg|wav)$/.test(file.name)) continue;
      const response = await get(`/${file.name}`);
      assert.equal(response.status, 200, file.name);
      const body = new Uint8Array(await response.arrayBuffer());
      const onDisk = await Deno.readFile(new URL(`../../dev/demo/${file.name}`, import.meta.url));
      assert.deepEqual(body, onDisk, file.name);
    }
    const script = await get("/demo.js");
    assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
    await script.body?.cancel();
    const page = await get("/");
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    await page.body?.cancel();
    for (const path of ["/stack.ts", "/%2e%2e%2fstack.ts", "/..%2fmain.ts", "/missing.js"]) {
      const response = await get(path);
      assert.equal(response.status, 404, path);
      assert.deepEqual(await response.json(), { error: "not_found" });
    }
  } finally {
    await stack.close();
  }
});
