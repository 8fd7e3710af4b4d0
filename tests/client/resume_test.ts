/**
 * The client library's resume paths against the real relay with
 * `RELAY_RESUME=on` on a real PostgreSQL (tests/helpers/postgres.ts: a
 * throwaway cluster with the migrations applied by the Supabase CLI), per
 * CONTRACT.md "Resumable sessions": a reconnect the relay restores, messages
 * held through the replay, `4409` when another connection takes the session,
 * and a stored id continued by a new client. Nothing of the relay is faked.
 * Without PostgreSQL's server binaries the test is ignored, and says why.
 * @module
 */
import assert from "node:assert/strict";
import { SESSION_RESUMED } from "../../client/relay_client.js";
import { startRelay } from "../helpers/relay_harness.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { sleep } from "../helpers/ws_client.ts";
import { itemTexts, type Recorded, type RelayStarter, userText, withStack } from "./support.ts";

const unavailable = postgresUnavailable();
if (unavailable) console.log(`client resume tests: ignored, ${unavailable}`);

/** Relays with resume on, all on `pg`, so one restores what another saved. */
function resumeRelays(pg: TestPostgres): RelayStarter {
  return (options) =>
    startRelay({
      ...options,
      env: { ...options.env, RELAY_RESUME: "on", RELAY_DATABASE_URL: pg.url },
    });
}

/** Items stored for `session` of `user` (the current generation). */
async function storedItems(pg: TestPostgres, user: string, session: string): Promise<number> {
  const out = await pg.psql(
    `select count(*) from relay.session_items i join relay.sessions s using (user_id, session_id)
      where i.user_id = '${user}' and i.session_id = '${session}'
        and i.generation = s.generation`,
  );
  return Number(out.trim());
}

/** Waits until `n` items of the client's conversation are in the database. */
async function untilStored(pg: TestPostgres, user: string, c: Recorded, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (await storedItems(pg, user, c.relay.session) < n) {
    if (Date.now() > deadline) throw new Error(`expected ${n} stored items`);
    await sleep(50);
  }
}

/** One user turn and OpenAI's answer to it. */
async function turn(c: Recorded, text: string): Promise<void> {
  const done = c.events.filter((e) => e.type === "response.done").length;
  c.relay.send(userText(text));
  c.relay.send({ type: "response.create" });
  await c.waitFor(
    () => c.events.filter((e) => e.type === "response.done").length > done,
    "OpenAI's answer",
  );
}

Deno.test({
  name: "client resume paths on the real relay with RELAY_RESUME=on",
  ignore: unavailable !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const start = resumeRelays(pg);
    try {
      await t.step(
        "after a 1012 the next connection reports relay.session.resumed",
        () =>
          withStack({}, async ({ relay, proxy, tokens, client, another }) => {
            const second = await another();
            const c = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
            await c.waitState("open");
            await turn(c, "my number is 42");
            await untilStored(pg, relay.auth.defaultUserId, c, 2);
            proxy.target = second.port;
            await relay.relay.shutdown();
            assert.equal((await c.waitState("reconnecting")).why, "server_restarting");
            const resumed = await c.waitState("open", 2);
            assert.deepEqual(
              [resumed.why, resumed.resumed, resumed.items, resumed.skipped],
              ["resumed", true, 2, 0],
            );
            const event = c.events.find((e) => e.type === SESSION_RESUMED);
            assert.deepEqual(event, {
              type: SESSION_RESUMED,
              session: c.relay.session,
              items: 2,
              skipped: 0,
            });
            const logged = second.events("session.resumed");
            assert.deepEqual(logged.map((e) => [e.session, e.items]), [[c.relay.session, 2]]);
          }, start),
      );

      await t.step(
        "what is sent while resuming reaches OpenAI after the replay, in order",
        () =>
          withStack({}, async ({ relay, proxy, tokens, client, another }) => {
            const second = await another();
            let sent = false;
            const c: Recorded = client({
              url: proxy.url("/relay"),
              getToken: tokens.getToken,
              onState: (state) => {
                if (state !== "reconnecting" || sent) return;
                sent = true;
                c.relay.send(userText("after one"));
                c.relay.send(userText("after two"));
              },
            });
            await c.waitState("open");
            await turn(c, "before");
            await untilStored(pg, relay.auth.defaultUserId, c, 2);
            proxy.target = second.port;
            await relay.relay.shutdown();
            assert.equal((await c.waitState("open", 2)).why, "resumed");
            const upstream = () => relay.openai.connections.at(-1)?.received ?? [];
            await c.waitFor(() => itemTexts(upstream()).includes("after two"), "held messages");
            const texts = itemTexts(upstream());
            // The replay (the stored "before") first, then what was held, in order.
            assert.deepEqual(texts.slice(-2), ["after one", "after two"]);
            assert.ok(texts.indexOf("before") >= 0 && texts.indexOf("before") < texts.length - 2);
            // The client saw none of the replay's answers: the resume came first.
            const since = c.events.slice(c.events.findIndex((e) => e.type === SESSION_RESUMED));
            assert.equal(since[0]?.type, SESSION_RESUMED);
            assert.ok(!since.some((e) => e.type === "session.created"));
          }, start),
      );

      await t.step(
        "a second connection to the session closes the first with 4409, for good",
        () =>
          withStack({}, async ({ proxy, tokens, client }) => {
            const first = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
            await first.waitState("open");
            const second = client({
              url: proxy.url("/relay"),
              getToken: tokens.getToken,
              session: first.relay.session,
            });
            const closed = await first.waitClosed();
            assert.deepEqual([closed.why, closed.code], ["session_replaced", 4409]);
            assert.equal(first.count("reconnecting"), 0);
            await second.waitState("open");
          }, start),
      );

      await t.step(
        "a stored session id continues the conversation in a new client",
        () =>
          withStack({}, async ({ relay, proxy, tokens, client }) => {
            const before = client({ url: proxy.url("/relay"), getToken: tokens.getToken });
            await before.waitState("open");
            await turn(before, "remember me");
            await untilStored(pg, relay.auth.defaultUserId, before, 2);
            await before.relay.close();
            const after = client({
              url: proxy.url("/relay"),
              getToken: tokens.getToken,
              session: before.relay.session,
            });
            const opened = await after.waitState("open");
            assert.deepEqual([opened.why, opened.resumed, opened.items], ["resumed", true, 2]);
          }, start),
      );
    } finally {
      await pg.remove();
    }
  },
});
