/**
 * The room client with room history (`RELAY_ROOM_HISTORY=100` on a real
 * PostgreSQL with the migrations applied by the Supabase CLI,
 * tests/helpers/postgres.ts), against the real relay in process: a scripted
 * 200-message conversation between two members through a relay restart and
 * TCP cuts arrives complete, in offset order, each once; `recovered: false`
 * is reported as `history_lost`; a broadcast refused `history_unavailable`
 * is resent and kept once. Without PostgreSQL's server binaries the tests are
 * ignored, and say why.
 * @module
 */
import assert from "node:assert/strict";
import type { RoomBroadcast } from "../../client/relay_client.js";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { sleep } from "../helpers/ws_client.ts";
import { deadPort } from "./support.ts";
import { type RecordedRoom, requestLines, roomEnv, withRoomStack } from "./room_support.ts";

const unavailable = postgresUnavailable();
if (unavailable) console.log(`room client history tests: ignored, ${unavailable}`);

type Line = { from: string; seq: number };
const line = (m: RoomBroadcast) => m.payload as Line;

/**
 * Checks what `r` delivered: offsets strictly increasing, no (from, seq) twice,
 * and each sender's lines complete and in its order.
 */
function assertConversation(r: RecordedRoom, expected: Record<string, number>): void {
  const offsets = r.messages.map((m) => m.meta.offset);
  assert.ok(offsets.every((o) => typeof o === "number"), "every broadcast has an offset");
  for (let i = 1; i < offsets.length; i++) {
    assert.ok(
      offsets[i]! > offsets[i - 1]!,
      `offset order at ${i}: ${offsets[i - 1]}, ${offsets[i]}`,
    );
  }
  const keys = r.messages.map((m) => `${line(m).from}:${line(m).seq}`);
  assert.equal(new Set(keys).size, keys.length, "no duplicate");
  for (const [from, n] of Object.entries(expected)) {
    const seqs = r.messages.filter((m) => line(m).from === from).map((m) => line(m).seq);
    assert.deepEqual(seqs, [...Array(n).keys()], `${from}'s lines complete and in order`);
  }
  const others = r.messages.filter((m) => !(line(m).from in expected));
  assert.equal(others.length, 0);
}

Deno.test({
  name: "room client with history on the real relay and PostgreSQL",
  ignore: unavailable !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const pg: TestPostgres = await startPostgres();
    try {
      await t.step(
        "a 200-message conversation through a relay restart and TCP cuts: complete, in order, once",
        () =>
          withRoomStack(roomEnv(pg), async ({ user, join, restart }) => {
            const room = "public:conversation";
            // Ada hears herself too (self); Bob does not (his acks fill his own offsets).
            const a = join(user(), { room, self: true });
            const b = join(user(), { room });
            await Promise.all([a.waitState("open"), b.waitState("open")]);
            const sent = { ada: 0, bob: 0 };
            for (let i = 0; i < 200; i++) {
              const [sender, from] = i % 3 === 2 ? [b, "bob" as const] : [a, "ada" as const];
              sender.room.send("chat", { from, seq: sent[from]++ });
              if (i === 60) await restart();
              // Each cut lands on a joined connection (not on a rejoin still under way).
              if (i === 120) await b.waitState("open", 2).then(() => b.proxy.dropAll());
              if (i === 160) await a.waitState("open", 2).then(() => a.proxy.dropAll());
              await sleep(i % 4 === 0 ? 3 : 0);
            }
            const counts = { ada: 134, bob: 66 };
            await a.waitFor(() => a.messages.length >= 200, "200 at Ada", 20_000);
            await b.waitFor(() => b.messages.length >= counts.ada, "Ada's lines at Bob", 20_000);
            await Promise.all([
              a.waitFor(() => a.room.pending.messages === 0, "Ada's acknowledged"),
              b.waitFor(() => b.room.pending.messages === 0, "Bob's acknowledged"),
            ]);
            await sleep(300); // a duplicate would arrive now
            assertConversation(a, counts);
            assertConversation(b, { ada: counts.ada });
            assert.deepEqual(
              a.messages.map((m) => m.meta.offset),
              [...Array(200).keys()].map((i) => i + 1),
              "Ada has every offset of the room, one line each",
            );
            assert.equal(a.room.offset, 200);
            assert.equal(b.room.offset, 200, "Bob's own offsets count as seen");
            for (const r of [a, b]) {
              assert.ok(r.count("reconnecting") >= 2, "restarted and cut");
              assert.ok(r.count("open") >= 3, "joined, rejoined after the restart and the cut");
              const opens = r.states.filter((s) => s.state === "open").slice(1);
              assert.ok(opens.every((s) => s.info.why === "rejoined" && s.info.recovered === true));
              // Every rejoin asked for ?since= the last offset it had delivered in order.
              assert.ok(requestLines(r.proxy).slice(1).every((l) => /\?since=\d+/.test(l)));
            }
            // 200 lines on offsets 1-200: no resend was kept twice.
            const raw = (r: RecordedRoom) => r.events.filter((e) => e.type === "broadcast").length;
            console.log(
              `  (received ${raw(a)} at Ada, ${raw(b)} at Bob, replays and live copies included)`,
            );
          }),
      );

      await t.step(
        "a rejoin past what the room keeps is reported as history_lost (recovered: false)",
        () =>
          withRoomStack(roomEnv(pg, 20), async ({ user, join }) => {
            const room = "public:trimmed";
            const a = join(user(), { room });
            const b = join(user(), { room, maxAttempts: 1000 });
            await Promise.all([a.waitState("open"), b.waitState("open")]);
            for (let i = 0; i < 5; i++) a.room.send("chat", { from: "ada", seq: i });
            await b.waitFor(() => b.messages.length === 5, "the first 5");
            const live = b.proxy.target;
            b.proxy.target = deadPort(); // Bob's network is down for a while
            b.proxy.dropAll();
            await b.waitState("reconnecting");
            for (let i = 5; i < 40; i++) a.room.send("chat", { from: "ada", seq: i });
            await a.waitFor(() => a.room.pending.messages === 0, "all kept");
            b.proxy.target = live;
            const open = await b.waitState("open", 2);
            assert.deepEqual([open.why, open.recovered, open.since, open.offset], [
              "history_lost",
              false,
              5,
              40,
            ]);
            await b.waitFor(() => b.messages.length === 25, "what is still kept");
            assert.deepEqual(
              b.messages.map((m) => line(m).seq),
              [...Array(5).keys(), ...Array.from({ length: 20 }, (_, i) => 20 + i)],
            );
            assert.equal(b.room.offset, 40);
          }),
      );

      await t.step(
        "?last= on the first join gives the backlog, then live, in order",
        () =>
          withRoomStack(roomEnv(pg), async ({ user, join }) => {
            const room = "public:backlog";
            const a = join(user(), { room });
            await a.waitState("open");
            for (let i = 0; i < 30; i++) a.room.send("chat", { from: "ada", seq: i });
            await a.waitFor(() => a.room.pending.messages === 0, "kept");
            const b = join(user(), { room, last: 10 });
            await b.waitState("open");
            a.room.send("chat", { from: "ada", seq: 30 });
            await b.waitFor(() => b.messages.length === 11, "backlog and live");
            assert.deepEqual(
              b.messages.map((m) => line(m).seq),
              [...Array(11).keys()].map((i) => i + 20),
            );
            assert.equal(b.room.offset, 31);
          }),
      );

      await t.step(
        "a broadcast refused history_unavailable is resent and kept once when the database is back",
        () =>
          withRoomStack(roomEnv(pg), async ({ user, join }) => {
            const room = "public:outage";
            const a = join(user(), {
              room,
              backoff: { baseMs: 200, factor: 2, capMs: 1000, jitter: 0 },
            });
            const b = join(user(), { room });
            await Promise.all([a.waitState("open"), b.waitState("open")]);
            a.room.send("chat", { from: "ada", seq: 0 });
            await b.waitFor(() => b.messages.length === 1, "before the outage");
            await pg.stop();
            let restarted = false;
            try {
              a.room.send("chat", { from: "ada", seq: 1 });
              await a.waitFor(
                () =>
                  a.events.some((e) =>
                    e.type === "error" &&
                    (e.error as { code?: string }).code === "history_unavailable"
                  ),
                "the refusal",
              );
              assert.equal(a.room.pending.messages, 1, "still waiting to be resent");
              await pg.start();
              restarted = true;
            } finally {
              if (!restarted) await pg.start();
            }
            await b.waitFor(() => b.messages.length === 2, "resent and delivered", 20_000);
            await a.waitFor(() => a.room.pending.messages === 0, "acknowledged");
            await sleep(300);
            assertConversation(b, { ada: 2 });
          }),
      );
    } finally {
      await pg.remove();
    }
  },
});
