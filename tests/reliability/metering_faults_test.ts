/**
 * Metering across real relay processes (the entrypoint, as the platform runs
 * it) on one PostgreSQL: a budget spent across two instances closes the
 * user's sessions on both, the session cap counts both, a killed instance's
 * sessions stop counting once its leases expire, and SIGTERM writes what is
 * still held in memory.
 */
import assert from "node:assert/strict";
import { retryAfterSeconds } from "../../supabase/functions/_shared/metering/budget.ts";
import { priceResponse } from "../../supabase/functions/_shared/metering/cost.ts";
import { BUILT_IN_PRICES } from "../../supabase/functions/_shared/metering/prices.ts";
import { LEASE_SECONDS } from "../../supabase/functions/_shared/features/metering.ts";
import { meteringEnv, responseIdOf, say, usageOf, usageRows } from "../helpers/metering.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";
import { standInEnv, startRelay, UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { recordFigure, testCommand } from "./support.ts";

const skip = postgresUnavailable();

async function open(relay: RelayProcess, auth: AuthStandIn, user: string): Promise<TestClient> {
  const client = new TestClient(
    relay.wsUrl("/relay", { jwt: await auth.signEs256({ sub: user }) }),
  );
  await client.opened;
  return client;
}

/** The plain-HTTP answer to an upgrade for `user`: status, body and Retry-After. */
async function attempt(relay: RelayProcess, auth: AuthStandIn, user: string) {
  const token = await auth.signEs256({ sub: user });
  const response = await fetch(`http://127.0.0.1:${relay.port}/relay?jwt=${token}`, {
    headers: UPGRADE_HEADERS,
  });
  const body = response.status === 101 ? null : await response.json() as { error: string };
  if (response.status === 101) await response.body?.cancel();
  return {
    status: response.status,
    error: body?.error,
    retryAfter: response.headers.get("retry-after"),
  };
}

/** The JSON telemetry lines a process wrote, named `event`. */
function eventsOf(relay: RelayProcess, event: string): Record<string, unknown>[] {
  return relay.output().split("\n").filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.event === event);
}

async function untilAsync(condition: () => Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test({
  name: "metering across relay processes",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const base = { ...standInEnv(auth, openai), ...meteringEnv(pg) };
    const processes: RelayProcess[] = [];
    const start = async (env: Record<string, string>) => {
      const relay = await startRelayProcess({ ...base, ...env });
      processes.push(relay);
      return relay;
    };
    try {
      // What the stand-in charges for a first "hello" (the same on every new connection).
      const probe = await startRelay({ auth, openai });
      let firstCost: number;
      try {
        const client = new TestClient(probe.wsUrl("/relay", { jwt: await auth.signEs256() }));
        await client.opened;
        firstCost =
          priceResponse(usageOf(await say(client, "hello")), "gpt-realtime", BUILT_IN_PRICES)
            .costMicros;
        await client.close();
      } finally {
        await probe.close();
      }
      assert.ok(firstCost > 0);

      await t.step(
        "a budget spent across two instances closes the user on both, 4002",
        async () => {
          const user = crypto.randomUUID();
          // One first response fits, two do not.
          const limit = Math.floor(firstCost * 1.5);
          const env = { RELAY_BUDGET_USD: (limit / 1e6).toFixed(6), RELAY_BUDGET_REFRESH_S: "1" };
          const [one, two] = [await start(env), await start(env)];
          const a = await open(one, auth, user);
          const b = await open(two, auth, user);
          await say(a, "hello");
          await untilAsync(async () => (await usageRows(pg, user)).length === 1, 5000, "first row");
          assert.equal(a.socket.readyState, WebSocket.OPEN, "within budget after one response");
          await say(b, "hello");
          const closedB = await b.waitClosed();
          const atB = Date.now();
          assert.equal(closedB.code, 4002, "the instance whose event crossed it");
          assert.equal(closedB.reason, "budget_exceeded");
          const closedA = await a.waitClosed(5000);
          const lag = Date.now() - atB;
          assert.equal(closedA.code, 4002, "the other instance, at its refresh");
          assert.ok(lag <= 1000 + 1500, `closed ${lag} ms later (refresh every 1 s)`);
          for (const client of [a, b]) {
            const notice = client.events().at(-1) as {
              error?: { code: string; close_code: number };
            };
            assert.equal(notice.error?.code, "budget_exceeded");
            assert.equal(notice.error?.close_code, 4002);
          }
          for (const relay of [one, two]) {
            const refused = await attempt(relay, auth, user);
            assert.equal(refused.status, 429);
            assert.equal(refused.error, "budget_exceeded");
            const expected = retryAfterSeconds(Date.now(), "day");
            assert.ok(
              Math.abs(Number(refused.retryAfter) - expected) <= 2,
              refused.retryAfter ?? "",
            );
            const [exceeded] = eventsOf(relay, "budget.exceeded");
            assert.equal(exceeded?.user, user);
            assert.equal(exceeded?.limit_micros, limit);
          }
          recordFigure({
            area: "Metering",
            tried: "two relay processes on one Postgres, one user, a budget of 1.5 responses",
            counts: { instances: 2, "other instance's close after (ms)": lag },
            held:
              "both sessions closed 4002 with the notice (at once where the event crossed, at the refresh elsewhere); both then refused 429 budget_exceeded with Retry-After to midnight UTC",
            command: testCommand("metering_faults_test.ts"),
          });
          for (const relay of [one, two]) assert.equal(await relay.stop(), 0);
        },
      );

      await t.step("the session cap counts every instance; a killed one's expire", async () => {
        const user = crypto.randomUUID();
        const env = { RELAY_MAX_USER_SESSIONS: "2", RELAY_BUDGET_REFRESH_S: "1" };
        const [one, two] = [await start(env), await start(env)];
        const a = await open(one, auth, user);
        const b = await open(two, auth, user);
        for (const relay of [one, two]) {
          const refused = await attempt(relay, auth, user);
          assert.equal(refused.status, 429);
          assert.equal(refused.error, "too_many_connections");
        }
        // The instance dies without a word: its lease is never released.
        Deno.kill(one.pid, "SIGKILL");
        await one.stop();
        const killedAt = Date.now();
        await a.waitClosed(5000);
        assert.equal((await attempt(two, auth, user)).status, 429, "still counted at first");
        let admitted: TestClient | null = null;
        while (admitted === null) {
          assert.ok(Date.now() - killedAt < (LEASE_SECONDS + 10) * 1000, "the lease never expired");
          admitted = await open(two, auth, user).catch(() => null);
          if (admitted === null) await new Promise((resolve) => setTimeout(resolve, 500));
        }
        const after = Date.now() - killedAt;
        assert.ok(after <= (LEASE_SECONDS + 2) * 1000, `counted for ${after} ms`);
        recordFigure({
          area: "Metering",
          tried: "RELAY_MAX_USER_SESSIONS=2 across two relay processes, then SIGKILL one",
          counts: { "dead instance's session counted for (ms)": after },
          held:
            `a third session refused 429 on both; the killed instance's lease expired within ${LEASE_SECONDS} s`,
          command: testCommand("metering_faults_test.ts"),
        });
        await admitted.close();
        await b.close();
        assert.equal(await two.stop(), 0);
      });

      await t.step("SIGTERM writes the usage still held in memory", async () => {
        const user = crypto.randomUUID();
        const relay = await start({});
        const client = await open(relay, auth, user);
        await pg.stop();
        const ids: string[] = [];
        try {
          for (const text of ["one", "two", "three"]) {
            ids.push(responseIdOf(await say(client, text)));
          }
          // Five attempts failed: the next retry is 4 s away (backoff 0.25 s doubling), far
          // beyond the restart below, so only the shutdown's flush can write them.
          await until(() => eventsOf(relay, "metering.write_failed").length >= 5, 15_000, "fails");
        } finally {
          await pg.start();
        }
        const pending = eventsOf(relay, "metering.write_failed").at(-1)?.pending;
        assert.equal(pending, 3, "all three held in memory");
        assert.equal((await usageRows(pg, user)).length, 0, "none written before SIGTERM");
        const code = await relay.stop();
        assert.equal(code, 0);
        const closed = await client.waitClosed();
        assert.equal(closed.code, 1012);
        const rows = await usageRows(pg, user);
        assert.deepEqual(rows.map((row) => row.event_id).sort(), ids.sort());
      });
    } finally {
      for (const relay of processes) await relay.stop().catch(() => {});
      await pg.start().catch(() => {});
      await openai.close();
      await auth.close();
      await pg.remove();
    }
  },
});
