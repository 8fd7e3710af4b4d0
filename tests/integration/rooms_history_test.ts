/**
 * Room history through the real relay (in process, one instance) on a real
 * PostgreSQL with the migrations applied by the Supabase CLI: offsets given
 * before delivery, recovery with `?since=` and `?last=`, idempotent ids,
 * ephemeral messages beside kept ones, the database going away, a server's
 * publish, and followers over server-sent events.
 */
import assert from "node:assert/strict";
import { follow, join, newUser, type RoomEvent, SECRET_KEY, withRooms } from "../helpers/rooms.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { sleep, until } from "../helpers/ws_client.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`rooms history tests skipped: ${skip}`);

function historyEnv(pg: TestPostgres, keep = 100): Record<string, string> {
  return { RELAY_DATABASE_URL: pg.url, RELAY_ROOM_HISTORY: String(keep) };
}

type Broadcast = RoomEvent & {
  event: string;
  payload: unknown;
  meta: { user: string | null; id: string | null; offset: number | null; at: string };
};

const broadcasts = (events: RoomEvent[]) =>
  events.filter((event): event is Broadcast => event.type === "broadcast");

function say(id: string, text: string, extra: Record<string, unknown> = {}) {
  return { type: "broadcast", event: "chat", payload: { text }, id, ...extra };
}

Deno.test({
  name: "room history: offsets, recovery, idempotent ids, outages and followers on PostgreSQL",
  ignore: skip !== null,
  async fn(t) {
    const pg = await startPostgres();
    try {
      await t.step("offsets are given before delivery, in order; acks carry them", async () => {
        await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
          const alice = await newUser(relay);
          const bob = await newUser(relay);
          secret(alice.token), secret(bob.token);
          const a = await join(relay, "offsets", alice);
          assert.equal(a.joined.offset, null, "nothing kept yet");
          assert.equal(a.joined.recovered, null);
          const b = await join(relay, "offsets", bob);
          for (let i = 1; i <= 5; i++) a.send(say(`m${i}`, `hello ${i}`));
          await b.waitFor("five broadcasts", (events) => broadcasts(events).length === 5);
          assert.deepEqual(broadcasts(b.events()).map((m) => m.meta.offset), [1, 2, 3, 4, 5]);
          assert.deepEqual(broadcasts(b.events()).map((m) => m.meta.id), [
            "m1",
            "m2",
            "m3",
            "m4",
            "m5",
          ]);
          await a.waitFor(
            "five acks",
            (events) => events.filter((e) => e.type === "broadcast.ack").length === 5,
          );
          assert.deepEqual(a.of("broadcast.ack").map((ack) => [ack.id, ack.offset]), [
            ["m1", 1],
            ["m2", 2],
            ["m3", 3],
            ["m4", 4],
            ["m5", 5],
          ]);
          const late = await join(relay, "offsets", bob);
          assert.equal(late.joined.offset, 5, "room.joined says the latest offset");
          assert.equal(late.joined.recovered, null);
          await sleep(100);
          assert.equal(broadcasts(late.events()).length, 0, "no backlog without since or last");
          await Promise.all([a.client.close(), b.client.close(), late.client.close()]);
        });
      });

      await t.step("?since= replays what was missed, then live; ?last= the newest n", async () => {
        await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
          const alice = await newUser(relay);
          secret(alice.token);
          const a = await join(relay, "recover", alice);
          for (let i = 1; i <= 6; i++) a.send(say(`r${i}`, `line ${i}`));
          await a.waitFor(
            "acks",
            (events) => events.filter((e) => e.type === "broadcast.ack").length === 6,
          );
          const bob = await newUser(relay);
          secret(bob.token);
          const b = await join(relay, "recover", bob, { since: "2" });
          assert.equal(b.joined.offset, 6);
          assert.equal(b.joined.recovered, true);
          await b.waitFor("replay", (events) => broadcasts(events).length === 4);
          a.send(say("r7", "live"));
          await b.waitFor("live", (events) => broadcasts(events).length === 5);
          assert.deepEqual(broadcasts(b.events()).map((m) => m.meta.offset), [3, 4, 5, 6, 7]);
          const c = await join(relay, "recover", bob, { last: "2" });
          await c.waitFor("backlog", (events) => broadcasts(events).length === 2);
          assert.deepEqual(broadcasts(c.events()).map((m) => m.meta.offset), [6, 7]);
          assert.equal(c.joined.recovered, null);
          const ahead = await join(relay, "recover", bob, { since: "99" });
          assert.equal(ahead.joined.recovered, false, "since ahead of the latest: history reset");
          const refused = await fetch(
            relay.wsUrl("/relay/rooms/recover", { jwt: bob.token, since: "-1" }).replace(
              "ws:",
              "http:",
            ),
            { headers: UPGRADE_HEADERS },
          );
          assert.equal(refused.status, 400);
          assert.equal((await refused.json()).error, "bad_offset");
          await Promise.all([a, b, c, ahead].map((m) => m.client.close()));
        });
      });

      await t.step("trimmed history: recovered false, the kept ones replayed", async () => {
        await withRooms({ env: historyEnv(pg, 3) }, async (relay, secret) => {
          const alice = await newUser(relay);
          secret(alice.token);
          const a = await join(relay, "trimmed", alice);
          for (let i = 1; i <= 5; i++) a.send(say(`t${i}`, `line ${i}`));
          await a.waitFor(
            "acks",
            (events) => events.filter((e) => e.type === "broadcast.ack").length === 5,
          );
          const b = await join(relay, "trimmed", alice, { since: "0" });
          assert.equal(b.joined.recovered, false, "the oldest two are gone");
          await b.waitFor("kept ones", (events) => broadcasts(events).length === 3);
          assert.deepEqual(broadcasts(b.events()).map((m) => m.meta.offset), [3, 4, 5]);
          const c = await join(relay, "trimmed", alice, { since: "2" });
          assert.equal(c.joined.recovered, true, "everything after 2 is kept");
          await Promise.all([a, b, c].map((m) => m.client.close()));
        });
      });

      await t.step(
        "a resent id is acknowledged with the first offset and delivered once",
        async () => {
          await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
            const alice = await newUser(relay);
            const bob = await newUser(relay);
            secret(alice.token), secret(bob.token);
            const a = await join(relay, "idem", alice);
            const b = await join(relay, "idem", bob);
            a.send(say("same", "once"));
            a.send(say("other", "twice?"));
            a.send(say("same", "once, resent"));
            await a.waitFor(
              "three acks",
              (events) => events.filter((e) => e.type === "broadcast.ack").length === 3,
            );
            assert.deepEqual(a.of("broadcast.ack").map((ack) => [ack.id, ack.offset]), [
              ["same", 1],
              ["other", 2],
              ["same", 1],
            ]);
            await sleep(150);
            assert.deepEqual(
              broadcasts(b.events()).map((m) => m.meta.id),
              ["same", "other"],
            );
            // Reconnected, the same user resends: still one.
            await a.client.close();
            const again = await join(relay, "idem", alice, { since: "2" });
            again.send(say("same", "after a reconnect"));
            await again.waitFor("ack", (events) => events.some((e) => e.type === "broadcast.ack"));
            assert.equal(again.of("broadcast.ack")[0]!.offset, 1);
            await sleep(150);
            assert.equal(broadcasts(b.events()).length, 2, "nobody saw it twice");
            const rows = await pg.psql(
              "select count(*) from relay.room_messages where room = 'idem'",
            );
            assert.equal(rows.trim(), "2");
            await Promise.all([b.client.close(), again.client.close()]);
          });
        },
      );

      await t.step("ephemeral broadcasts are never kept and keep the sender's order", async () => {
        await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
          const alice = await newUser(relay);
          const bob = await newUser(relay);
          secret(alice.token), secret(bob.token);
          const a = await join(relay, "eph", alice);
          const b = await join(relay, "eph", bob);
          for (let i = 0; i < 10; i++) {
            a.send(say(`k${i}`, "kept"));
            a.send({ type: "broadcast", event: "typing", payload: { i }, ephemeral: true });
          }
          await b.waitFor("all 20", (events) => broadcasts(events).length === 20);
          const order = broadcasts(b.events()).map((m) =>
            m.event === "typing" ? `e${(m.payload as { i: number }).i}` : m.meta.id
          );
          const expected = Array.from({ length: 10 }, (_, i) => [`k${i}`, `e${i}`]).flat();
          assert.deepEqual(order, expected, "one sender's order, kept and ephemeral alike");
          for (const m of broadcasts(b.events())) {
            assert.equal(m.meta.offset === null, m.event === "typing");
          }
          await Promise.all([a.client.close(), b.client.close()]);
        });
      });

      await t.step(
        "database down: kept broadcasts refused in band, ephemeral and binary flow, joins 503",
        async () => {
          await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
            const alice = await newUser(relay);
            const bob = await newUser(relay);
            secret(alice.token), secret(bob.token);
            const a = await join(relay, "outage", alice);
            const b = await join(relay, "outage", bob);
            await pg.stop();
            try {
              a.send(say("lost", "not delivered"));
              await a.waitFor(
                "refusal",
                (events) => events.some((e) => e.type === "error"),
                10_000,
              );
              const [refusal] = a.of("error") as unknown as { error: Record<string, unknown> }[];
              assert.equal(refusal!.error.code, "history_unavailable");
              assert.equal(refusal!.error.event_id, "lost");
              a.send({ type: "broadcast", event: "typing", payload: {}, ephemeral: true });
              a.send(new Uint8Array([1, 2, 3]));
              await b.waitFor("ephemeral", (events) => broadcasts(events).length === 1);
              await until(() => b.binaries().length === 1, 5000, "binary");
              assert.equal(broadcasts(b.events())[0]!.event, "typing");
              const carol = await newUser(relay);
              secret(carol.token);
              const joining = await fetch(
                relay.wsUrl("/relay/rooms/outage", { jwt: carol.token }).replace("ws:", "http:"),
                { headers: UPGRADE_HEADERS },
              );
              assert.equal(joining.status, 503);
              assert.equal(joining.headers.get("retry-after"), "5");
              assert.equal((await joining.json()).error, "rooms_unavailable");
            } finally {
              await pg.start();
            }
            a.send(say("lost", "sent again"));
            await b.waitFor("the resend", (events) => broadcasts(events).length === 2, 10_000);
            assert.equal(broadcasts(b.events())[1]!.meta.id, "lost");
            await Promise.all([a.client.close(), b.client.close()]);
          });
        },
      );

      await t.step("a server's publish gets an offset; a resent id the first one", async () => {
        await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
          const bob = await newUser(relay);
          secret(bob.token);
          const b = await join(relay, "publish", bob);
          const post = (body: unknown) =>
            fetch(`http://127.0.0.1:${relay.port}/relay/rooms/publish`, {
              method: "POST",
              headers: { authorization: `Bearer ${SECRET_KEY}` },
              body: JSON.stringify(body),
            }).then(async (response) => ({ status: response.status, body: await response.json() }));
          assert.deepEqual(await post({ event: "deploy", payload: { v: 1 }, id: "d1" }), {
            status: 202,
            body: { offset: 1 },
          });
          assert.deepEqual(await post({ event: "deploy", payload: { v: 1 }, id: "d1" }), {
            status: 202,
            body: { offset: 1 },
          });
          assert.deepEqual(await post({ event: "tick", payload: 1, ephemeral: true }), {
            status: 202,
            body: { offset: null },
          });
          await b.waitFor("two", (events) => broadcasts(events).length === 2);
          await sleep(100);
          assert.deepEqual(broadcasts(b.events()).map((m) => [m.event, m.meta.offset]), [
            ["deploy", 1],
            ["tick", null],
          ]);
          await b.client.close();
        });
      });

      await t.step(
        "SSE: room.joined, replay by Last-Event-ID with ids, live events, close at expiry",
        async () => {
          await withRooms({ env: historyEnv(pg) }, async (relay, secret) => {
            const alice = await newUser(relay);
            secret(alice.token);
            const a = await join(relay, "feed", alice);
            for (let i = 1; i <= 4; i++) a.send(say(`f${i}`, `item ${i}`));
            await a.waitFor(
              "acks",
              (events) => events.filter((e) => e.type === "broadcast.ack").length === 4,
            );
            const reader = await newUser(relay, 3);
            secret(reader.token);
            const feed = await follow(relay, "feed", reader.token, {
              "last-event-id": "2",
              origin: "https://app.example",
            });
            assert.equal(feed.response.status, 200);
            assert.match(feed.response.headers.get("content-type") ?? "", /^text\/event-stream/);
            assert.equal(feed.response.headers.get("access-control-allow-origin"), "*");
            await feed.until("replay", () => feed.events.length >= 3);
            assert.equal(feed.events[0]!.event, "room.joined");
            const joined = JSON.parse(feed.events[0]!.data);
            assert.equal(joined.offset, 4);
            assert.equal(joined.recovered, true);
            assert.deepEqual(feed.events.slice(1, 3).map((e) => [e.event, e.id]), [
              ["broadcast", "3"],
              ["broadcast", "4"],
            ]);
            // A follower counts for nobody's presence.
            assert.deepEqual(
              (joined.presence as { user: string }[]).map((entry) => entry.user),
              [alice.id],
            );
            a.send(say("f5", "live"));
            a.send({ type: "presence", state: { status: "away" } });
            await feed.until("live", () => feed.json("presence.state").length === 1);
            assert.deepEqual(feed.json("broadcast").map((m) => (m as Broadcast).meta.offset), [
              3,
              4,
              5,
            ]);
            // The token expires in ~3 s: a last close event, then the end.
            await feed.until("close", () => feed.events.some((e) => e.event === "close"), 8000);
            const close = feed.events.find((e) => e.event === "close")!;
            assert.deepEqual(JSON.parse(close.data), { code: 4001, reason: "token_expired" });
            assert.equal(close.retry, "1000");
            await feed.ended;
            const lines = relay.events("sse.connection.closed");
            assert.equal(lines.length, 1);
            assert.equal(lines[0]!.room, "feed");
            await a.client.close();
          });
        },
      );

      await t.step("SSE: a follower counts for room_full; shutdown sends close 1012", async () => {
        await withRooms(
          { env: { ...historyEnv(pg), RELAY_ROOM_MAX_MEMBERS: "2" } },
          async (relay, secret) => {
            const alice = await newUser(relay);
            const bob = await newUser(relay);
            secret(alice.token), secret(bob.token);
            const a = await join(relay, "full", alice);
            const feed = await follow(relay, "full", bob.token);
            await feed.until("joined", () => feed.events.length >= 1);
            const third = await follow(relay, "full", bob.token);
            assert.equal(third.response.status, 429);
            assert.equal((await third.response.json()).error, "room_full");
            await a.client.close();
            await relay.relay.shutdown();
            await feed.until("close", () => feed.events.some((e) => e.event === "close"));
            const close = feed.events.find((e) => e.event === "close")!;
            assert.deepEqual(JSON.parse(close.data), { code: 1012, reason: "server_restarting" });
            await feed.ended;
          },
        );
      });
    } finally {
      await pg.remove();
    }
  },
});
