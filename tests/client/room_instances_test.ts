/**
 * The room client (`joinRoom()`) against two relay instances, each the real
 * entrypoint in its own process (tests/helpers/relay_process.ts), meeting
 * through the Supabase Realtime stand-in and keeping history
 * (`RELAY_ROOM_HISTORY=1000`) in one real PostgreSQL: a scripted conversation
 * of 200 messages between a member on instance A and a member on instance B
 * goes through a restart of A (SIGTERM, so 1012, then a new process on the
 * same port, where the member's URL still points) and a cut of B's member's
 * TCP connection, and both members end with all 200, in offset order, each
 * once, and the database keeps exactly 200. Without PostgreSQL's server
 * binaries the test is ignored, and says why.
 * @module
 */
import assert from "node:assert/strict";
import { postgresUnavailable } from "../helpers/postgres.ts";
import type { RelayProcess } from "../helpers/relay_process.ts";
import { sleep } from "../helpers/ws_client.ts";
import { type RecordedRoom, recordRoom } from "./room_support.ts";
import {
  assertWholeConversation,
  key,
  PATIENT,
  roomUser,
  storedRows,
  withInstances,
} from "./room_instances_support.ts";
import type { TcpProxy } from "./support.ts";

const unavailable = postgresUnavailable();
if (unavailable) console.log(`room client across instances: ignored, ${unavailable}`);

/** Messages in the scripted conversation. */
const TOTAL = 200;

/** A fixed "proxy" that is no proxy: the client connects straight to `port`. */
function direct(port: number): TcpProxy {
  return {
    port,
    target: port,
    cutAfterNotice: false,
    heads: [],
    accepted: 0,
    url: (path) => `ws://127.0.0.1:${port}${path}`,
    dropAll: () => {
      throw new Error("a direct connection has no proxy to cut");
    },
    close: () => Promise.resolve(),
  };
}

Deno.test({
  name: "room client across two relay processes (Realtime stand-in, PostgreSQL)",
  ignore: unavailable !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await withInstances(async ({ pg, auth, start, proxy, defer }) => {
      const [A, B] = await Promise.all([start(), start()]);

      await t.step(
        "200 messages between a member on A and one on B, through a restart of A (1012) and a TCP cut on B: complete, in order, once",
        async () => {
          const room = "conversation";
          const toB = proxy(B.port);
          // Ada on A, straight to its port (the restarted A listens there again); Bob on B
          // through a proxy (his network is cut). Both hear themselves: each has all 200.
          const ada = recordRoom(direct(A.port), roomUser(auth), { room, self: true, ...PATIENT });
          const bob = recordRoom(toB, roomUser(auth), { room, self: true, ...PATIENT });
          defer(() => Promise.all([ada.room.close(), bob.room.close()]));
          await Promise.all([ada.waitState("open", 1, 30_000), bob.waitState("open", 1, 30_000)]);

          const sent = { ada: 0, bob: 0 };
          let restarted: Promise<RelayProcess> | null = null;
          let restartMs = 0;
          /** Lines sent between A's SIGTERM and its replacement answering. */
          let sentWhileDown = 0;
          for (let i = 0; i < TOTAL; i++) {
            const [member, from] = i % 2 === 0 ? [ada, "ada" as const] : [bob, "bob" as const];
            member.room.send("chat", { from, seq: sent[from]++ });
            if (restarted !== null && restartMs === 0) sentWhileDown++;
            if (i === 60) {
              // SIGTERM: A says 1012 server_restarting and exits; a new process takes its
              // port. The conversation goes on meanwhile (Ada's lines are held).
              const at = performance.now();
              restarted = A.stop().then(async (code) => {
                assert.equal(code, 0, "A exits cleanly on SIGTERM");
                const next = await start(A.port);
                restartMs = performance.now() - at;
                return next;
              });
              await ada.waitState("reconnecting", 1, 30_000);
            }
            // The cut lands on a joined connection.
            if (i === 130) await bob.waitState("open", 1).then(() => toB.dropAll());
            await sleep(i % 4 === 0 ? 5 : 0);
          }
          await restarted;
          assert.ok(sentWhileDown > 0, "the conversation went on while A restarted");
          const counts = { ada: TOTAL / 2, bob: TOTAL / 2 };
          await ada.waitFor(() => ada.messages.length >= TOTAL, "200 at Ada", 60_000);
          await bob.waitFor(() => bob.messages.length >= TOTAL, "200 at Bob", 60_000);
          await Promise.all([
            ada.waitFor(() => ada.room.pending.messages === 0, "Ada's acknowledged", 30_000),
            bob.waitFor(() => bob.room.pending.messages === 0, "Bob's acknowledged", 30_000),
          ]);
          await sleep(500); // a duplicate would arrive now

          assertWholeConversation(ada.messages, counts, "Ada");
          assertWholeConversation(bob.messages, counts, "Bob");
          assert.deepEqual(ada.messages.map(key), bob.messages.map(key), "the same order");
          assert.equal(ada.room.offset, TOTAL);
          assert.equal(bob.room.offset, TOTAL);

          // Ada was told 1012 by A, rejoined the new A with ?since=, missing nothing.
          const adaDown = ada.states.find((s) => s.state === "reconnecting")!.info;
          assert.deepEqual([adaDown.why, adaDown.code], ["server_restarting", 1012]);
          // Bob's cut: a 1006 with no notice, then a rejoin.
          const bobDown = bob.states.find((s) => s.state === "reconnecting")!.info;
          assert.equal(bobDown.code, 1006);
          assert.equal(toB.accepted, 2, "Bob joined once and rejoined once");
          assert.ok(/\?since=\d+/.test(toB.heads[1]!.split("\r\n")[0]!), "Bob rejoined ?since=");
          for (const [r, label] of [[ada, "Ada"], [bob, "Bob"]] as const) {
            const opens = r.states.filter((s) => s.state === "open").map((s) => s.info);
            assert.equal(opens.length, 2, `${label}: joined, then rejoined once`);
            assert.deepEqual(
              [opens[1]!.why, opens[1]!.recovered],
              ["rejoined", true],
              `${label} recovered`,
            );
            assert.equal(r.states.at(-1)!.state, "open");
          }

          // The database keeps each line once: offsets 1..200, 200 distinct ids.
          const rows = await storedRows(pg, room);
          assert.deepEqual(
            rows.map((r) => r.offset),
            Array.from({ length: TOTAL }, (_, i) => i + 1),
          );
          assert.equal(new Set(rows.map((r) => r.id)).size, TOTAL);
          assert.deepEqual(rows.map((r) => r.id), ada.messages.map((m) => m.meta.id));

          const raw = (r: RecordedRoom) => r.events.filter((e) => e.type === "broadcast").length;
          console.log(
            `measured: A restarted (SIGTERM to the new process answering /relay/health on ` +
              `port ${A.port}) in ${Math.round(restartMs)} ms, ${sentWhileDown} lines sent ` +
              `meanwhile; Ada rejoined since ` +
              `${ada.states.filter((s) => s.state === "open")[1]!.info.since} after ` +
              `${ada.count("reconnecting")} reconnecting report(s); received ${raw(ada)} at ` +
              `Ada, ${raw(bob)} at Bob (replays and live copies), delivered 200 each`,
          );
        },
      );
    });
  },
});
