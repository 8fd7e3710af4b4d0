/**
 * Real-browser suite for rooms across instances (CONTRACT.md "Rooms"):
 * Debian's Chromium, driven by playwright-core, opens two pages of a tiny
 * page served here; each joins the same room with a plain
 * `new WebSocket(url)` (token in `?jwt=`) on its own relay instance, both
 * instances being the real entrypoint in its own process and meeting through
 * one Supabase Realtime stand-in. The pages chat both ways and see each other
 * in presence; then one instance shuts down (SIGTERM) and its page reads the
 * in-band `server_restarting` notice before its close event, whatever close
 * code Chromium reports (1006 on Deno 2.1.4, 1012 on later Deno). Run by
 * rooms_browser_test.ts in a child `deno test -A` (see child_suite.ts).
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startRealtimeStandIn } from "../stand_ins/supabase_realtime.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";

/** The page: browser code that joins a room and logs what it sees, in order. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>rooms</title>
<script>
  window.seen = [];
  window.join = (url) => {
    const ws = new WebSocket(url);
    window.socket = ws;
    ws.onopen = () => window.seen.push({ kind: "open", at: performance.now() });
    ws.onmessage = (event) =>
      window.seen.push({ kind: "message", data: event.data, at: performance.now() });
    ws.onclose = (event) => window.seen.push({
      kind: "close",
      code: event.code,
      reason: event.reason,
      wasClean: event.wasClean,
      at: performance.now(),
    });
  };
  window.say = (text) => window.socket.send(JSON.stringify({
    type: "broadcast",
    event: "chat",
    payload: { text },
    id: "m" + Math.random().toString(36).slice(2, 10),
  }));
</script>
<body>rooms</body>`;

type Seen =
  | { kind: "open"; at: number }
  | { kind: "message"; data: string; at: number }
  | { kind: "close"; code: number; reason: string; wasClean: boolean; at: number };

type RoomEvent = { type: string; [key: string]: unknown };

/** What the page has seen so far. */
function seen(page: Page): Promise<Seen[]> {
  return page.evaluate(() => (globalThis as unknown as { seen: Seen[] }).seen);
}

/** The page's text messages, parsed. */
async function events(page: Page): Promise<RoomEvent[]> {
  return (await seen(page)).flatMap((s) =>
    s.kind === "message" ? [JSON.parse(s.data) as RoomEvent] : []
  );
}

/** Waits until `condition` holds over the page's events. */
async function waitForEvents(
  page: Page,
  condition: (events: RoomEvent[]) => boolean,
  what: string,
  ms = 8000,
): Promise<RoomEvent[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await events(page);
    if (condition(got)) return got;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(got)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test({
  name:
    "rooms in Chromium: two pages on two instances chat, see each other, and read the restart notice",
  fn: async (t) => {
    const auth = await startAuthStandIn();
    const realtime = await startRealtimeStandIn();
    const env = {
      SUPABASE_URL: auth.url,
      SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
      RELAY_ROOMS: "open",
      RELAY_REALTIME_URL: `${realtime.url}/realtime/v1`,
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: realtime.secretKey }),
    };
    const pageServer = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } }),
    );
    const relays: RelayProcess[] = [];
    let browser: Browser | undefined;
    try {
      relays.push(...await Promise.all([startRelayProcess(env), startRelayProcess(env)]));
      const [one, two] = relays as [RelayProcess, RelayProcess];
      browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
      const open = async () => {
        const page = await browser!.newPage();
        await page.goto(`http://127.0.0.1:${pageServer.addr.port}/`);
        await page.waitForFunction("typeof globalThis.join === 'function'");
        return page;
      };
      const [ada, bo] = [await open(), await open()];
      const [adaUser, boUser] = [crypto.randomUUID(), crypto.randomUUID()];
      const room = "browser-lobby";
      const urlFor = async (relay: RelayProcess, user: string) =>
        relay.wsUrl(`/relay/rooms/${room}`, { jwt: await auth.signEs256({ sub: user }) });

      await t.step(
        "each page joins on its own instance and sees the other in presence",
        async () => {
          const adaUrl = await urlFor(one, adaUser);
          await ada.evaluate(
            (url) => (globalThis as unknown as { join(u: string): void }).join(url),
            adaUrl,
          );
          const [adaJoined] = await waitForEvents(ada, (e) => e.length >= 1, "ada's room.joined");
          assert.equal(adaJoined?.type, "room.joined");
          assert.deepEqual(adaJoined?.presence, [{ user: adaUser, state: null }]);

          const boUrl = await urlFor(two, boUser);
          await bo.evaluate(
            (url) => (globalThis as unknown as { join(u: string): void }).join(url),
            boUrl,
          );
          const [boJoined] = await waitForEvents(bo, (e) => e.length >= 1, "bo's room.joined");
          assert.equal(boJoined?.type, "room.joined");
          assert.equal(boJoined?.user, boUser);
          // Ada, on the other instance, is listed: she was there before bo joined.
          assert.deepEqual(
            (boJoined?.presence as { user: string }[]).map((p) => p.user).sort(),
            [adaUser, boUser].sort(),
          );
          await waitForEvents(
            ada,
            (e) => e.some((x) => x.type === "presence.join" && x.user === boUser),
            "ada to see bo join",
          );
          assert.equal((await seen(ada))[0]?.kind, "open");
        },
      );

      await t.step("the pages chat both ways across instances", async () => {
        await ada.evaluate(() => (globalThis as unknown as { say(t: string): void }).say("hi bo"));
        const boGot = await waitForEvents(
          bo,
          (e) => e.some((x) => x.type === "broadcast"),
          "bo to hear ada",
        );
        const fromAda = boGot.find((x) => x.type === "broadcast")!;
        assert.equal(fromAda.event, "chat");
        assert.deepEqual(fromAda.payload, { text: "hi bo" });
        assert.equal((fromAda.meta as { user: string }).user, adaUser);

        await bo.evaluate(() =>
          (globalThis as unknown as { say(t: string): void }).say("hi ada ✓")
        );
        const adaGot = await waitForEvents(
          ada,
          (e) => e.some((x) => x.type === "broadcast"),
          "ada to hear bo",
        );
        const fromBo = adaGot.find((x) => x.type === "broadcast")!;
        assert.deepEqual(fromBo.payload, { text: "hi ada ✓" });
        assert.equal((fromBo.meta as { user: string }).user, boUser);
        // Each page got its own ack, never its own broadcast.
        for (const got of [await events(ada), await events(bo)]) {
          assert.equal(got.filter((x) => x.type === "broadcast").length, 1);
          assert.equal(got.filter((x) => x.type === "broadcast.ack").length, 1);
        }
      });

      await t.step(
        "the instance shuts down: its page reads server_restarting before the close",
        async () => {
          const code = await two.stop();
          assert.equal(code, 0, "the instance exited cleanly");
          const deadline = Date.now() + 8000;
          let log = await seen(bo);
          while (log.at(-1)?.kind !== "close") {
            if (Date.now() > deadline) throw new Error(`no close event: ${JSON.stringify(log)}`);
            await new Promise((resolve) => setTimeout(resolve, 50));
            log = await seen(bo);
          }
          const close = log.at(-1) as Extract<Seen, { kind: "close" }>;
          const notice = log.at(-2);
          assert.equal(notice?.kind, "message", "a message right before the close event");
          const event = JSON.parse((notice as { data: string }).data);
          assert.equal(event.type, "error");
          assert.match(event.event_id, /^relay_/);
          assert.deepEqual(
            [event.error.type, event.error.code, event.error.close_code],
            ["relay_error", "server_restarting", 1012],
          );
          // Chromium's own report: the real close on a fixed Deno, 1006 on 2.1.4.
          assert.ok(
            (close.code === 1012 && close.reason === "server_restarting") ||
              (close.code === 1006 && close.reason === ""),
            `Chromium reported ${close.code} ${JSON.stringify(close.reason)}`,
          );
          assert.ok(close.at - notice!.at < 2000, "the close follows the notice at once");
          console.log(
            `  Chromium: notice server_restarting/1012, then close ${close.code} ` +
              JSON.stringify(close.reason),
          );
          // The other instance's page sees bo leave.
          await waitForEvents(
            ada,
            (e) => e.some((x) => x.type === "presence.leave" && x.user === boUser),
            "ada to see bo leave",
          );
          assert.equal((await seen(ada)).at(-1)?.kind, "message", "ada's socket stays open");
        },
      );
    } finally {
      await browser?.close();
      await Promise.all(relays.map((relay) => relay.stop()));
      await pageServer.shutdown();
      await realtime.close();
      await auth.close();
    }
  },
});
