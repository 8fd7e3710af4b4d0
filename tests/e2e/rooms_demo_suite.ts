/**
 * The demo page's Rooms panel in Chromium (issue "Rooms that outlive the
 * worker", item 5): two pages, signed in as two dev users, each on its own
 * relay instance of one dev stack (the second page reaches the second
 * instance with `?relay=`), chat through the panel (the client library's
 * joinRoom()); each instance restarts under them in turn while the other
 * page goes on talking; both pages end with every message once, in the
 * room's order, and say they recovered. A third page, another user,
 * follows the room over SSE (EventSource) and shows the same list.
 * Run by rooms_demo_browser_test.ts in a child `deno test -A` (see
 * child_suite.ts). `RELAY_ROOMS_SCREENSHOT=<path>` also saves the panel
 * mid-chat (docs/rooms.png).
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { readDemo, waitForDemo } from "./demo_page.ts";
import { startTwoRelays } from "./two_relays.ts";

/** `relayDemo.rooms` (dev/demo/rooms.js). */
interface RoomsView {
  room: string;
  mode: string;
  user: string | null;
  access: string | null;
  state: string;
  stateLine: string;
  recovered: boolean | null;
  recoveries: number;
  joins: number;
  offset: number | null;
  messages: { offset: number | null; user: string | null; name: string; text: string }[];
  presence: { user: string; state: { name?: string } | null }[];
  history: { state: string; why: string | null; recovered: boolean | null }[];
  sent: number;
  errors: { code: string | null; message: string }[];
}

const ROOM = "public:lobby";
/** The machine is shared with other test runs: waits are generous. */
const WAIT_MS = 30_000;

async function rooms(page: Page): Promise<RoomsView> {
  return (await readDemo<{ rooms: RoomsView }>(page)).rooms;
}

async function waitRooms(page: Page, condition: string, timeout = WAIT_MS): Promise<RoomsView> {
  return (await waitForDemo<{ rooms: RoomsView }>(
    page,
    `(() => { const r = d.rooms; return ${condition}; })()`,
    timeout,
  )).rooms;
}

/** Types `text` into the panel's send box and sends it with Enter. */
async function say(page: Page, text: string): Promise<void> {
  await page.fill("#room-text", text);
  await page.press("#room-text", "Enter");
}

/** The chat as the page shows it: `#<offset> <name> <text>` per line. */
function shown(page: Page): Promise<string[]> {
  return page.$$eval(
    "#room-chat li:not(#room-chat-empty)",
    (items) =>
      items.map((li) =>
        [".offset", ".who", ".text"].map((s) => li.querySelector(s)?.textContent ?? "").join(" ")
      ),
  );
}

Deno.test({
  name: "rooms panel in Chromium: two pages on two instances chat through restarts; SSE follows",
  fn: async (t) => {
    const relays = await startTwoRelays();
    const { stack, second } = relays;
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
      const open = async (query: Record<string, string>) => {
        const page = await browser!.newPage({ viewport: { width: 1280, height: 1100 } });
        const errors: string[] = [];
        page.on("pageerror", (error) => errors.push(String(error)));
        await page.goto(`${stack.demoUrl}?${new URLSearchParams(query)}`);
        await page.waitForSelector("body[data-ready=true]");
        return { page, errors };
      };
      const ada = await open({ as: "ada@example.com", join: ROOM });
      const bo = await open({ as: "bo@example.com", join: ROOM, relay: second.url });
      const cy = await open({ as: "cy@example.com", follow: ROOM, relay: second.url });
      const said: string[] = [];

      await t.step("each page joins on its own instance; the members see each other", async () => {
        const a = await waitRooms(ada.page, "r.state === 'joined'");
        const b = await waitRooms(bo.page, "r.state === 'joined'");
        const c = await waitRooms(cy.page, "r.state === 'joined'");
        assert.equal(a.access, "write");
        assert.equal(b.access, "write");
        assert.equal(c.mode, "follower");
        assert.notEqual(a.user, b.user, "two users");
        assert.equal(await ada.page.textContent("#room-state"), "joined");
        assert.equal(await ada.page.textContent("#room-user"), "ada@example.com");
        // Each member's presence lists both, by the name each set.
        for (const page of [ada.page, bo.page]) {
          const view = await waitRooms(
            page,
            "r.presence.length === 2 && r.presence.every((p) => p.state?.name)",
          );
          assert.deepEqual(view.presence.map((p) => p.state?.name).sort(), ["ada", "bo"]);
        }
        assert.match(await ada.page.textContent("#room-presence") ?? "", /ada.*\(you\)/);
        // The link opens the room in a new tab as another user.
        const href = await ada.page.getAttribute("#room-second", "href");
        const link = new URL(href!, stack.demoUrl);
        assert.equal(link.searchParams.get("join"), ROOM);
        assert.equal(link.searchParams.get("as"), "guest@example.com");
        assert.equal(await ada.page.getAttribute("#room-second", "target"), "_blank");
      });

      await t.step("the two pages chat across instances; the follower reads along", async () => {
        for (let i = 1; i <= 3; i++) {
          await say(ada.page, `ada ${i}`);
          said.push(`ada ${i}`);
          await say(bo.page, `bo ${i}`);
          said.push(`bo ${i}`);
        }
        for (const page of [ada.page, bo.page, cy.page]) {
          await waitRooms(page, `r.messages.length === ${said.length}`);
        }
        const a = await rooms(ada.page);
        assert.deepEqual(a.messages.map((m) => m.offset), [1, 2, 3, 4, 5, 6]);
        // Each sender's messages in the order sent.
        const texts = a.messages.map((m) => m.text);
        assert.deepEqual(texts.filter((x) => x.startsWith("ada")), ["ada 1", "ada 2", "ada 3"]);
        assert.deepEqual(texts.filter((x) => x.startsWith("bo")), ["bo 1", "bo 2", "bo 3"]);
        assert.deepEqual(a.messages.map((m) => m.name), texts.map((x) => x.split(" ")[0]));
        for (const page of [bo.page, cy.page]) {
          assert.deepEqual((await rooms(page)).messages, a.messages);
        }
        assert.equal(await ada.page.textContent("#room-offset"), "6");
        assert.equal((await shown(ada.page))[0], `#1 ${a.messages[0]!.name} ${texts[0]}`);
        const screenshot = Deno.env.get("RELAY_ROOMS_SCREENSHOT");
        if (screenshot) await ada.page.locator("#rooms").screenshot({ path: screenshot });
      });

      await t.step("the first instance restarts: ada recovers what bo said meanwhile", async () => {
        const restart = stack.restartRelay();
        await waitRooms(ada.page, "r.state === 'reconnecting'");
        await say(bo.page, "bo while ada is away");
        said.push("bo while ada is away");
        // Held by the library while reconnecting, sent after the rejoin.
        await say(ada.page, "ada typed while away");
        said.push("ada typed while away");
        await restart;
        const a = await waitRooms(
          ada.page,
          `r.state === 'recovered' && r.messages.length === ${said.length}`,
        );
        assert.equal(a.recovered, true);
        assert.ok(a.recoveries >= 1);
        assert.equal(await ada.page.textContent("#room-state"), "recovered");
        assert.match(await ada.page.textContent("#room-state-line") ?? "", /nothing .* lost/);
        assert.ok(
          a.history.some((h) => h.state === "reconnecting"),
          "the page said it was reconnecting",
        );
      });

      await t.step("the second instance restarts: bo and the follower recover", async () => {
        const restart = second.restart();
        await waitRooms(bo.page, "r.state === 'reconnecting'");
        await say(ada.page, "ada while bo is away");
        said.push("ada while bo is away");
        await restart;
        for (const page of [bo.page, cy.page]) {
          const view = await waitRooms(
            page,
            `r.state === 'recovered' && r.messages.length === ${said.length}`,
          );
          assert.equal(view.recovered, true);
          assert.ok(view.recoveries >= 1);
        }
        await waitRooms(ada.page, `r.messages.length === ${said.length}`);
      });

      await t.step("every page shows every message once, in the room's order", async () => {
        const n = said.length;
        const a = await rooms(ada.page);
        assert.deepEqual(
          a.messages.map((m) => m.offset),
          Array.from({ length: n }, (_, i) => i + 1),
        );
        assert.deepEqual(a.messages.map((m) => m.text).sort(), [...said].sort());
        for (const page of [bo.page, cy.page]) {
          assert.deepEqual((await rooms(page)).messages, a.messages);
          assert.deepEqual(await shown(page), await shown(ada.page));
        }
        assert.equal((await shown(ada.page)).length, n);
        for (const page of [ada, bo, cy]) {
          assert.deepEqual(page.errors, [], "no uncaught error in the page");
        }
        const c = await rooms(cy.page);
        console.log(
          `  rooms: ${n} messages on 3 pages; ada ${a.joins} joins, bo ${
            (await rooms(bo.page)).joins
          }, follower ${c.joins}`,
        );
      });
    } finally {
      await browser?.close();
      await relays.close();
    }
  },
});
