/**
 * Metering and budgets on a real PostgreSQL (a throwaway cluster with the
 * migration applied by the Supabase CLI), through the real handler and real
 * sockets to the OpenAI stand-in: rows and costs, budgets at admission and
 * mid-session, per-user overrides, the session cap across instances, and the
 * database going away.
 */
import assert from "node:assert/strict";
import { connectDatabase } from "../../supabase/functions/_shared/db/client.ts";
import { BUILT_IN_PRICES } from "../../supabase/functions/_shared/metering/prices.ts";
import {
  priceResponse,
  priceTranscription,
} from "../../supabase/functions/_shared/metering/cost.ts";
import { retryAfterSeconds } from "../../supabase/functions/_shared/metering/budget.ts";
import {
  liveLeases,
  meteringEnv,
  responseIdOf,
  say,
  spendOf,
  usageOf,
  usageRows,
} from "../helpers/metering.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { type RelayUnderTest, type StartOptions, startRelay } from "../helpers/relay_harness.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { recordFigure } from "../reliability/support.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`metering tests skipped: ${skip}`);

/** Runs `body` against a metered relay and shuts it down (flushing usage) afterwards. */
async function withMeteredRelay(
  pg: TestPostgres,
  env: Record<string, string>,
  body: (relay: RelayUnderTest) => Promise<void>,
  options: StartOptions = {},
): Promise<void> {
  const relay = await startRelay({ ...options, env: { ...meteringEnv(pg), ...env } });
  let failure: unknown = null;
  try {
    await body(relay);
  } catch (error) {
    failure = error;
  }
  await relay.relay.shutdown();
  try {
    await relay.close();
  } catch (error) {
    failure ??= error;
  }
  if (failure !== null) throw failure;
}

async function connect(relay: RelayUnderTest, user: string): Promise<TestClient> {
  const token = await relay.auth.signEs256({ sub: user });
  const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
  await client.opened;
  return client;
}

async function refusedWith(relay: RelayUnderTest, user: string): Promise<Response> {
  const token = await relay.auth.signEs256({ sub: user });
  const response = await fetch(`http://127.0.0.1:${relay.port}/relay?jwt=${token}`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  await response.body?.cancel();
  return response;
}

Deno.test({
  name: "metering on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const shared = { auth, openai };
    try {
      await t.step("metering records one row per response with the exact cost", async () => {
        const user = crypto.randomUUID();
        await withMeteredRelay(pg, {}, async (relay) => {
          const client = await connect(relay, user);
          const first = await say(client, "hello");
          const second = await say(client, "and again");
          await client.close();
          await relay.relay.shutdown();
          const rows = await usageRows(pg, user);
          assert.equal(rows.length, 2);
          for (const [row, done] of [[rows[0]!, first], [rows[1]!, second]] as const) {
            const usage = usageOf(done);
            assert.equal(row.event_id, responseIdOf(done));
            assert.equal(row.model, "gpt-realtime");
            assert.deepEqual(row.details, usage);
            assert.equal(row.input_tokens, usage.input_tokens);
            assert.equal(row.output_tokens, usage.output_tokens);
            assert.equal(row.total_tokens, usage.total_tokens);
            const expected = priceResponse(usage, "gpt-realtime", BUILT_IN_PRICES).costMicros;
            assert.ok(expected > 0, "the stand-in's usage costs something");
            assert.equal(row.cost_micros, expected);
          }
          // The stand-in reports the earlier turn as cached, as OpenAI does: priced as cached.
          const cached = (usageOf(second).input_token_details as { cached_tokens: number })
            .cached_tokens;
          assert.ok(cached > 0, "the second response has cached input");
          const total = rows[0]!.cost_micros + rows[1]!.cost_micros;
          assert.deepEqual(await spendOf(pg, user), { day: total, month: total });
          const lines = relay.events("usage");
          assert.equal(lines.length, 2);
          assert.deepEqual(lines.map((line) => line.cost_micros), rows.map((r) => r.cost_micros));
          assert.equal(lines[0]!.user, user);
        }, shared);
      });

      await t.step("metering records input transcriptions priced with their model", async () => {
        const user = crypto.randomUUID();
        // With metering on, a client may pick only a listed transcription model (it sets the price).
        const models = { OPENAI_TRANSCRIPTION_MODELS: "gpt-4o-transcribe,whisper-1" };
        await withMeteredRelay(pg, models, async (relay) => {
          const client = await connect(relay, user);
          const completed = () =>
            client.events().filter((event) =>
              event.type === "conversation.item.input_audio_transcription.completed"
            );
          const transcribe = async (model: string) => {
            client.socket.send(JSON.stringify({
              type: "session.update",
              session: { type: "realtime", audio: { input: { transcription: { model } } } },
            }));
            // 200 ms of 24 kHz PCM16 silence, committed as one user turn.
            const audio = btoa(String.fromCharCode(...new Uint8Array(9600)));
            client.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio }));
            const before = completed().length;
            client.socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
            await until(() => completed().length > before, 5000, `${model} transcription`);
            return completed()[before]!;
          };
          const events = [await transcribe("gpt-4o-transcribe"), await transcribe("whisper-1")];
          await client.close();
          await relay.relay.shutdown();
          const rows = await usageRows(pg, user);
          assert.equal(rows.length, 2);
          for (const [i, model] of ["gpt-4o-transcribe", "whisper-1"].entries()) {
            const event = events[i]! as unknown as {
              item_id: string;
              usage: Record<string, unknown>;
            };
            const row = rows.find((r) => r.event_id === event.item_id)!;
            assert.ok(row, `a row for the transcribed item (${model})`);
            assert.equal(row.model, model);
            assert.deepEqual(row.details, event.usage);
            const expected = priceTranscription(
              event.usage,
              model,
              "gpt-realtime",
              BUILT_IN_PRICES,
            );
            assert.ok(expected.priced && expected.costMicros > 0, model);
            assert.equal(row.cost_micros, expected.costMicros);
          }
          assert.equal(rows.find((r) => r.model === "whisper-1")!.details.type, "duration");
        }, shared);
      });

      await t.step("metering refuses 429 with Retry-After once the budget is spent", async () => {
        const user = crypto.randomUUID();
        // One micro-dollar: the first response crosses it.
        await withMeteredRelay(pg, { RELAY_BUDGET_USD: "0.000001" }, async (relay) => {
          const client = await connect(relay, user);
          await say(client, "spend it");
          const closed = await client.waitClosed();
          assert.equal(closed.code, 4002);
          assert.equal(closed.reason, "budget_exceeded");
          const notice = client.events().at(-1)!;
          assert.equal(notice.type, "error");
          assert.equal((notice.error as { close_code: number }).close_code, 4002);
          const [exceeded] = relay.events("budget.exceeded");
          assert.equal(exceeded?.user, user);
          assert.equal(exceeded?.limit_micros, 1);
          const response = await refusedWith(relay, user);
          assert.equal(response.status, 429);
          const body = await refusedJson(relay, user);
          assert.equal(body.error, "budget_exceeded");
          const retryAfter = Number(response.headers.get("retry-after"));
          const expected = retryAfterSeconds(Date.now(), "day");
          assert.ok(Math.abs(retryAfter - expected) <= 2, `${retryAfter} vs ${expected}`);
        }, shared);
      });

      await t.step(
        "metering readmits on a recent read only within RELAY_BUDGET_REFRESH_S",
        async () => {
          const user = crypto.randomUUID();
          const env = { RELAY_BUDGET_USD: "0.000001", RELAY_BUDGET_REFRESH_S: "1" };
          await withMeteredRelay(pg, env, async (first) => {
            await withMeteredRelay(pg, env, async (second) => {
              const before = await connect(first, user);
              await before.close();
              await until(() => first.relay.connections() === 0, 6000, "closed");
              // The budget is spent on the other instance.
              const spender = await connect(second, user);
              await say(spender, "spend it");
              assert.equal((await spender.waitClosed()).code, 4002);
              await untilAsync(async () => (await usageRows(pg, user)).length === 1, 5000, "row");
              await new Promise((resolve) => setTimeout(resolve, 1100));
              const refused = await refusedWith(first, user);
              assert.equal(refused.status, 429, "a read older than the interval is read again");
            }, shared);
          }, shared);
        },
      );

      await t.step("metering honours a relay.budgets override, both ways", async () => {
        const generous = crypto.randomUUID();
        const barred = crypto.randomUUID();
        const unlimited = crypto.randomUUID();
        await pg.psql(`insert into relay.budgets (user_id, limit_micros) values
          ('${generous}', 1000000000), ('${barred}', 0), ('${unlimited}', null)`);
        await withMeteredRelay(pg, { RELAY_BUDGET_USD: "0.000001" }, async (relay) => {
          for (const user of [generous, unlimited]) {
            const client = await connect(relay, user);
            await say(client, "one");
            await say(client, "two");
            assert.equal(client.socket.readyState, WebSocket.OPEN, "within their budget");
            await client.close();
          }
          assert.equal((await refusedWith(relay, barred)).status, 429);
        }, shared);
      });

      await t.step("metering caps live sessions per user across instances", async () => {
        const user = crypto.randomUUID();
        const env = { RELAY_MAX_USER_SESSIONS: "1" };
        await withMeteredRelay(pg, env, async (first) => {
          await withMeteredRelay(pg, env, async (second) => {
            const client = await connect(first, user);
            assert.equal(await liveLeases(pg, user), 1);
            const refused = await refusedWith(second, user);
            assert.equal(refused.status, 429);
            assert.equal((await refusedJson(second, user)).error, "too_many_connections");
            await client.close();
            await until(() => first.relay.connections() === 0, 6000, "first closed");
            // The release is written off the close path; the next admission sees it.
            await untilAsync(async () => (await liveLeases(pg, user)) === 0, 5000, "release");
            const other = await connect(second, user);
            await other.close();
          }, shared);
        }, shared);
      });

      await t.step(
        "metering answers 503 while the database is down, unless fail-open",
        async () => {
          const user = crypto.randomUUID();
          await pg.stop();
          try {
            await withMeteredRelay(pg, {}, async (relay) => {
              const response = await refusedWith(relay, user);
              assert.equal(response.status, 503);
              assert.equal((await refusedJson(relay, user)).error, "metering_unavailable");
            }, shared);
            await withMeteredRelay(pg, { RELAY_METERING_FAIL_OPEN: "true" }, async (relay) => {
              const client = await connect(relay, user);
              const done = await say(client, "while the database is away");
              await until(() => relay.events("metering.write_failed").length > 0, 5000, "failure");
              await pg.start();
              await untilAsync(async () => (await usageRows(pg, user)).length === 1, 10_000, "row");
              assert.equal((await usageRows(pg, user))[0]!.event_id, responseIdOf(done));
              await client.close();
            }, shared);
          } finally {
            await pg.start().catch(() => {});
          }
        },
      );

      await t.step(
        "metering keeps sessions going through an outage and writes each event once",
        async () => {
          const user = crypto.randomUUID();
          await withMeteredRelay(pg, { RELAY_BUDGET_USD: "100" }, async (relay) => {
            const client = await connect(relay, user);
            const ids = [responseIdOf(await say(client, "before"))];
            await untilAsync(async () => (await usageRows(pg, user)).length === 1, 5000, "first");
            await pg.stop();
            for (const text of ["during one", "during two", "during three"]) {
              ids.push(responseIdOf(await say(client, text)));
            }
            await until(() => relay.events("metering.write_failed").length > 0, 5000, "failure");
            const [failed] = relay.events("metering.write_failed");
            assert.equal(typeof failed?.error, "string");
            assert.ok(Number(failed?.pending) >= 1);
            await pg.start();
            ids.push(responseIdOf(await say(client, "after")));
            await untilAsync(async () => (await usageRows(pg, user)).length === 5, 15_000, "all");
            assert.equal(client.socket.readyState, WebSocket.OPEN, "the session went on");
            await client.close();
            await relay.relay.shutdown();
            const rows = await usageRows(pg, user);
            assert.deepEqual(rows.map((row) => row.event_id).sort(), [...ids].sort());
            const total = rows.reduce((sum, row) => sum + row.cost_micros, 0);
            assert.equal((await spendOf(pg, user)).day, total, "the rollup counted each once");
          }, shared);
        },
      );

      await t.step(
        "metering costs one round trip per connection and one per response",
        async () => {
          const statements: string[] = [];
          const database = connectDatabase(pg.url, {
            onStatement: (statement) => statements.push(statement),
          });
          const user = crypto.randomUUID();
          const responses = 4;
          const since = new Date().toISOString();
          try {
            await withMeteredRelay(pg, { RELAY_BUDGET_USD: "100" }, async (relay) => {
              // Let the start-up write (the recorded defaults) go by first.
              await untilAsync(
                async () =>
                  (await pg.psql(
                    `select count(*) from relay.defaults where updated_at >= '${since}'`,
                  ))
                    .trim() === "1",
                5000,
                "defaults",
              );
              const before = statements.length;
              const client = await connect(relay, user);
              const admitted = statements.length - before;
              for (let i = 0; i < responses; i++) {
                await say(client, `turn ${i}`);
                await untilAsync(
                  async () => (await usageRows(pg, user)).length === i + 1,
                  5000,
                  "row",
                );
              }
              await client.close();
              await until(() => relay.relay.connections() === 0, 6000, "closed");
              // A reconnect within RELAY_BUDGET_REFRESH_S (a resumed session, a dropped
              // socket) is admitted on the standing read moments ago.
              const beforeReconnect = statements.length;
              const again = await connect(relay, user);
              const readmitted = statements.length - beforeReconnect;
              await again.close();
              await until(() => relay.relay.connections() === 0, 6000, "closed again");
              assert.equal(readmitted, 0, "no round trip to readmit");
              const during = statements.slice(before);
              const count = (pattern: RegExp) => during.filter((s) => pattern.test(s)).length;
              const writes = count(/insert into relay\.usage/);
              const refreshes = count(/relay\.refresh/);
              assert.equal(admitted, 1, "one round trip to admit");
              assert.equal(count(/relay\.admit/), 1);
              assert.equal(writes, responses, "one write per response (written as they came)");
              assert.equal(
                during.length,
                1 + writes + refreshes,
                `nothing else: ${during.join(" | ").slice(0, 500)}`,
              );
              recordFigure({
                area: "Metering",
                tried: `one connection, ${responses} responses, metering with a budget`,
                counts: {
                  "round trips to admit": admitted,
                  "round trips to readmit within the refresh interval": readmitted,
                  "round trips per response": writes / responses,
                  "refreshes (one per RELAY_BUDGET_REFRESH_S per instance)": refreshes,
                },
                held:
                  "admission is one statement (none for a reconnect within the refresh interval); each response's usage row and spend rollup one statement; no database work per message",
                command: "deno test -A tests/integration/metering_test.ts",
              });
            }, { ...shared, deps: { database } });
          } finally {
            await database.close();
          }
        },
      );
    } finally {
      await pg.start().catch(() => {});
      await openai.close();
      await auth.close();
      await pg.remove();
    }
  },
});

async function refusedJson(relay: RelayUnderTest, user: string): Promise<{ error: string }> {
  const token = await relay.auth.signEs256({ sub: user });
  const response = await fetch(`http://127.0.0.1:${relay.port}/relay?jwt=${token}`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  return await response.json();
}

async function untilAsync(condition: () => Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
