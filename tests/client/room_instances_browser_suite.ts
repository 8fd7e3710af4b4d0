/**
 * The room client in a real browser across instances: Debian's Chromium
 * (playwright-core) loads a page that imports `client/relay_client.js` as it
 * is and joins a room on relay process A; a Deno member joins it on relay
 * process B; both processes meet through the Supabase Realtime stand-in and
 * keep history (`RELAY_ROOM_HISTORY=1000`) in one PostgreSQL. A scripted
 * conversation of 200 messages goes through a restart of A (SIGTERM, 1012,
 * then a new process on the same port) and a cut of the page's TCP
 * connection (a proxy in front of A drops it: the browser sees 1006), and
 * both members end with all 200, in offset order, each once; the database
 * keeps exactly 200. Run by
 * room_instances_browser_test.ts in a child `deno test -A`; ignored without
 * PostgreSQL's server binaries.
 * @module
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import type { RoomBroadcast } from "../../client/relay_client.js";
import { CHROMIUM, CHROMIUM_ARGS } from "../e2e/chromium.ts";
import { postgresUnavailable } from "../helpers/postgres.ts";
import type { RelayProcess } from "../helpers/relay_process.ts";
import { sleep } from "../helpers/ws_client.ts";
import type { AuthStandIn } from "../stand_ins/auth.ts";
import { recordRoom } from "./room_support.ts";
import {
  assertWholeConversation,
  key,
  PATIENT,
  roomUser,
  storedRows,
  withInstances,
} from "./room_instances_support.ts";

const unavailable = postgresUnavailable();
if (unavailable) console.log(`room client in Chromium across instances: ignored, ${unavailable}`);

const CLIENT = new URL("../../client/relay_client.js", import.meta.url);
const TOTAL = 200;

/** The page: the library as a module, and the functions the test calls. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>relay room client</title>
<script type="module">
  import { joinRoom } from "/relay_client.js";
  const log = { states: [], messages: [] };
  let room;
  globalThis.log = log;
  globalThis.start = (url, name, options) => {
    room = joinRoom({
      ...options,
      url,
      room: name,
      self: true,
      getToken: async () => (await fetch("/token")).text(),
      onState: (state, info) => log.states.push({ state, ...info }),
      onMessage: (message) => log.messages.push(message),
    });
  };
  globalThis.say = (from, seq) => room.send("chat", { from, seq });
  globalThis.pending = () => room.pending.messages;
  globalThis.offset = () => room.offset;
  globalThis.stop = () => room.close().then(() => true);
  document.body.dataset.ready = "true";
</script>
<body></body>`;

/** Serves the page, the library file and tokens of one user on 127.0.0.1:0. */
function servePage(auth: AuthStandIn, user: string) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
    if (path === "/relay_client.js") {
      return new Response(await Deno.readFile(CLIENT), {
        headers: { "content-type": "text/javascript; charset=utf-8" },
      });
    }
    if (path === "/token") return new Response(await auth.signEs256({ sub: user }));
    return new Response("not found", { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

interface PageState {
  state: string;
  why: string;
  code?: number;
  recovered?: boolean | null;
}

interface PageLog {
  states: PageState[];
  messages: RoomBroadcast[];
}

Deno.test({
  name:
    "room client in Chromium and in Deno on two relay processes, through a restart and a TCP cut",
  ignore: unavailable !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await withInstances(async ({ pg, auth, start, proxy, defer }) => {
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [...CHROMIUM_ARGS],
      });
      defer(() => browser.close());
      const site = servePage(auth, crypto.randomUUID());
      defer(() => site.close());
      const [A, B] = await Promise.all([start(), start()]);
      const page = await browser.newPage();
      const pageLog = () => page.evaluate(() => (globalThis as unknown as { log: PageLog }).log);
      const waitPage = (condition: string, what: string, ms = 30_000) =>
        page.waitForFunction(condition, null, { timeout: ms }).catch((error) => {
          throw new Error(`timed out waiting for ${what} in the page: ${error}`);
        });

      await t.step(
        "200 messages between Chromium on A and Deno on B, through a restart of A (1012) and a TCP cut of the page (1006): complete, in order, once",
        async () => {
          const room = "browser-conversation";
          await page.goto(site.url);
          await page.waitForSelector("body[data-ready=true]", { state: "attached" });
          // Chromium on A through a proxy (the restarted A listens on the same port; the
          // proxy cuts the page's network).
          const toA = proxy(A.port);
          await page.evaluate(
            ([url, name, options]) =>
              (globalThis as unknown as { start(u: string, n: string, o: unknown): void })
                .start(url, name, options),
            [toA.url("/relay"), room, PATIENT] as const,
          );
          const toB = proxy(B.port);
          const deno = recordRoom(toB, roomUser(auth), { room, self: true, ...PATIENT });
          defer(() => deno.room.close());
          await waitPage(
            `globalThis.log.states.some((s) => s.state === "open")`,
            "the first join",
          );
          await deno.waitState("open", 1, 30_000);

          const sent = { page: 0, deno: 0 };
          let restarted: Promise<RelayProcess> | null = null;
          let restartMs = 0;
          let sentWhileDown = 0;
          for (let i = 0; i < TOTAL; i++) {
            if (i % 2 === 0) {
              const seq = sent.page++;
              await page.evaluate(
                (seq) =>
                  (globalThis as unknown as { say(f: string, s: number): void }).say("page", seq),
                seq,
              );
            } else {
              deno.room.send("chat", { from: "deno", seq: sent.deno++ });
            }
            if (restarted !== null && restartMs === 0) sentWhileDown++;
            if (i === 60) {
              const at = performance.now();
              restarted = A.stop().then(async (code) => {
                assert.equal(code, 0, "A exits cleanly on SIGTERM");
                const next = await start(A.port);
                restartMs = performance.now() - at;
                return next;
              });
              await waitPage(
                `globalThis.log.states.some((s) => s.state === "reconnecting")`,
                "the 1012",
              );
            }
            // The cut lands on a joined connection: after the rejoin on the new A.
            if (i === 130) {
              await waitPage(
                `globalThis.log.states.filter((s) => s.state === "open").length >= 2`,
                "the rejoin after the restart",
              );
              toA.dropAll();
            }
            await sleep(i % 4 === 0 ? 5 : 0);
          }
          await restarted;
          assert.ok(sentWhileDown > 0, "the conversation went on while A restarted");
          await waitPage(`globalThis.log.messages.length >= ${TOTAL}`, "200 in the page", 60_000);
          await waitPage(`globalThis.pending() === 0`, "the page's acknowledged");
          await deno.waitFor(() => deno.messages.length >= TOTAL, "200 in Deno", 60_000);
          await deno.waitFor(() => deno.room.pending.messages === 0, "Deno's acknowledged");
          await sleep(500); // a duplicate would arrive now

          const log = await pageLog();
          const counts = { page: TOTAL / 2, deno: TOTAL / 2 };
          assertWholeConversation(log.messages, counts, "Chromium");
          assertWholeConversation(deno.messages, counts, "Deno");
          assert.deepEqual(log.messages.map(key), deno.messages.map(key), "the same order");
          assert.equal(
            await page.evaluate(() => (globalThis as unknown as { offset(): number }).offset()),
            TOTAL,
          );
          const downs = log.states.filter((s) => s.state === "reconnecting");
          assert.deepEqual([downs[0]!.why, downs[0]!.code], ["server_restarting", 1012]);
          assert.ok(
            downs.some((s) => s.why === "connection_lost" && s.code === 1006),
            `the cut seen as a lost connection: ${JSON.stringify(downs)}`,
          );
          const opens = log.states.filter((s) => s.state === "open");
          assert.equal(opens.length, 3, "joined, rejoined after the restart and after the cut");
          for (const open of opens.slice(1)) {
            assert.deepEqual([open.why, open.recovered], ["rejoined", true]);
          }
          assert.equal(deno.count("open"), 1, "the Deno member on B was never disconnected");

          const rows = await storedRows(pg, room);
          assert.deepEqual(
            rows.map((r) => r.offset),
            Array.from({ length: TOTAL }, (_, i) => i + 1),
          );
          assert.deepEqual(rows.map((r) => r.id), deno.messages.map((m) => m.meta.id));
          console.log(
            `measured: Chromium's instance A restarted in ${Math.round(restartMs)} ms ` +
              `(${sentWhileDown} lines sent meanwhile); the page reported ` +
              `${downs.length} reconnecting (restart and cut), rejoined recovered each time; ` +
              `200 delivered in each member, one order, 200 rows`,
          );
          await page.evaluate(() => (globalThis as unknown as { stop(): Promise<boolean> }).stop())
            .catch(() => {});
          await page.close();
        },
      );
    });
  },
});
