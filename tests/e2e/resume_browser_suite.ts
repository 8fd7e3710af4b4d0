/**
 * Real-browser suite for resumable sessions (CONTRACT.md "Resumable
 * sessions"): Debian's Chromium, driven by playwright-core, loads the dev
 * stack's demo page, which talks to the relay through the client library
 * (`client/relay_client.js`), with `deno task dev`'s defaults (resume,
 * metering, the example policy) on its embedded database. The page has a
 * conversation, the relay restarts under it (1012, then a new relay handler
 * on the same port and database, as the platform recycles a worker), and the
 * page shows the resume; the stand-in's next answer names how many earlier
 * items it remembers and the first thing the user said, so it proves the
 * context came back. Then the stored id continues the conversation after a
 * reload, and "new conversation" starts a fresh one.
 * Run by resume_browser_test.ts in a child `deno test -A` (see
 * browser_test.ts for why playwright-core gets a process of its own).
 * @module
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { type Browser, chromium, type Page } from "playwright-core";
import { DEV_SESSION_POLICY, withDevDefaults } from "../../dev/defaults.ts";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { instructionsPrefix } from "../stand_ins/realtime_reply.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { readDemo, waitForDemo } from "./demo_page.ts";

/** Deno 2.1.4 (the edge runtime's) makes Chromium report 1006 for the relay's closes. */
const [MAJOR = 0, MINOR = 0] = Deno.version.deno.split(".").map(Number);
const BROWSER_SEES_1006 = MAJOR === 2 && MINOR <= 1;

/** What the user types, turn by turn, before the restart. */
const SAID = ["My name is Ada.", "I live in Lisbon.", "I like WebSockets."];
const SESSION_KEY = "relay-demo-session";

/** The page's mirror of its own state (`window.relayDemo` in demo.js). */
interface DemoState {
  state: string;
  session: string;
  stateLine: string;
  reconnects: number;
  resumes: { items: number; skipped: number; afterMs: number | null }[];
  history: { state: string; why: string; code: number | null; line: string; atMs: number }[];
  closes: {
    opened: boolean;
    code: number;
    notice: { code: string; closeCode: number } | null;
    atMs: number;
  }[];
  received: { type: string; text: string }[];
  refusals: unknown[];
  banner: { kind: string; text: string } | null;
  transcripts: { assistant: { text: string }[] };
}

function demoState(page: Page): Promise<DemoState> {
  return readDemo<DemoState>(page);
}

function waitFor(page: Page, condition: string, timeout = 10_000): Promise<DemoState> {
  return waitForDemo<DemoState>(page, condition, timeout);
}

/** Prints a measured value in a form resume_browser_test.ts passes on. */
function measured(what: string): void {
  console.log(`measured: ${what}`);
}

const doneCount = (state: DemoState) =>
  state.received.filter((m) => m.type === "response.done").length;

/** Types `text`, presses Ask, and returns the assistant's answer as the page shows it. */
async function ask(page: Page, text: string): Promise<string> {
  const before = doneCount(await demoState(page));
  await page.fill("#free-text", text);
  await page.click("#send-ask");
  await waitFor(
    page,
    `d.received.filter((m) => m.type === "response.done").length > ${before}`,
  );
  return await page.textContent("#conversation .turn.assistant:last-child .text") ?? "";
}

/**
 * The stand-in's answer to `said` when the context holds `earlier` items
 * before it and the user's first words were `first` (realtime_reply.ts),
 * after the prefix of the instructions in effect.
 */
function answer(prefix: string, said: string, earlier = 0, first = ""): string {
  const memory = earlier > 0
    ? ` I remember ${earlier} earlier items; the first thing you said was: "${first}".`
    : "";
  return `${prefix}You said: "${said}".${memory}`;
}

/** The items stored for `session` (its current generation), read from the dev database. */
async function storedItems(sql: postgres.Sql, session: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n from relay.session_items i
      join relay.sessions s using (user_id, session_id)
     where i.session_id = ${session} and i.generation = s.generation`;
  return row?.n ?? 0;
}

async function untilStored(sql: postgres.Sql, session: string, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (await storedItems(sql, session) < n) {
    if (Date.now() > deadline) throw new Error(`expected ${n} stored items of ${session}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test({
  name: "resume in Chromium: the demo page keeps its conversation across a relay restart",
  fn: async (t) => {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-resume-db-" });
    const lines: string[] = [];
    // deno task dev's defaults: resume, metering with its budget, the example policy.
    const stack: DevStack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0, db: 0 },
      env: withDevDefaults({}).env,
      dataDir,
      fresh: true,
      telemetry: (line) => lines.push(line),
    });
    const events = (name: string) =>
      lines.map((line) => JSON.parse(line)).filter((line) => line.event === name);
    const sql = postgres(stack.database!.displayUrl, {
      max: 1,
      prepare: false,
      onnotice: () => {},
    });
    let browser: Browser | undefined;
    try {
      assert.equal(stack.settings.resume, true);
      assert.notEqual(stack.settings.sessionPolicy, null);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          ...CHROMIUM_ARGS,
          "--use-fake-ui-for-media-stream",
          "--use-fake-device-for-media-stream",
        ],
      });
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      await page.goto(stack.demoUrl);
      await page.waitForSelector("body[data-ready=true]");
      await page.selectOption("#route", "/relay");
      await page.selectOption("#token-mode", "protocol");
      let session = "";
      /** The instructions' prefix in the stand-in's answers: the policy's, not its defaults. */
      let prefix = "";

      await t.step(
        "a conversation through the client library, with no policy refusal",
        async () => {
          await page.click("#connect");
          let state = await waitFor(
            page,
            "d.state === 'open' && d.received.some((m) => m.type === 'session.updated')",
          );
          session = state.session;
          assert.match(session, /^[A-Za-z0-9_-]{22}$/, "the library's id");
          assert.equal(await page.textContent("#session-id"), session);
          assert.equal(state.stateLine, "open · a new conversation");
          // The policy reached OpenAI first: the relay's pinned instructions and voice.
          const upstream = stack.openai!.connections.at(-1)!;
          assert.deepEqual(JSON.parse(String(upstream.received[0]?.data)), {
            type: "session.update",
            session: DEV_SESSION_POLICY.session,
          });
          const created = state.received.find((m) => m.type === "session.created")!;
          const defaults = JSON.parse(created.text).session.instructions as string;
          prefix = instructionsPrefix(DEV_SESSION_POLICY.session.instructions, defaults);
          assert.notEqual(prefix, "", "the policy's instructions differ from the stand-in's");
          for (const [i, said] of SAID.entries()) {
            assert.equal(await ask(page, said), answer(prefix, said, 2 * i, SAID[0]));
          }
          state = await demoState(page);
          // The page's own flow (session.update, item, response.create) sets nothing locked.
          assert.deepEqual(state.refusals, []);
          assert.deepEqual(state.received.filter((m) => m.type === "error"), []);
        },
      );

      await t.step("the relay restarts: 1012, then the page resumes every item", async () => {
        const began = Date.now();
        // Clients get 1012; the relay flushes what it holds; a new one serves the port.
        await stack.restartRelay();
        const restartMs = Date.now() - began;
        const state = await waitFor(page, "d.state === 'open' && d.resumes.length === 1", 15_000);
        const tookMs = Date.now() - began;
        const reconnecting = state.history.find((h) => h.state === "reconnecting");
        assert.deepEqual([reconnecting?.why, reconnecting?.code], ["server_restarting", 1012]);
        assert.match(reconnecting!.line, /^reconnecting in \d\.\d s \(1012 server_restarting\)$/);
        // The browser's own view of that close, and the notice that came before it.
        const close = state.closes[0]!;
        assert.equal(close.opened, true);
        assert.deepEqual([close.notice?.closeCode, close.notice?.code], [
          1012,
          "server_restarting",
        ]);
        assert.equal(close.code, BROWSER_SEES_1006 ? 1006 : 1012);
        // What the page shows.
        const resume = state.resumes[0]!;
        assert.deepEqual([resume.items, resume.skipped], [6, 0], "three turns: six items");
        assert.equal(await page.textContent("#state-line"), "resumed: 6 items restored, 0 skipped");
        assert.equal(await page.textContent("#reconnects"), "1");
        assert.equal(await page.textContent("#session-id"), session, "the same conversation");
        assert.match(state.banner?.text ?? "", /^Resumed: the relay restored this conversation/);
        // Nothing of the replay reached the page: the notice, then the resume.
        const types = state.received.map((m) => m.type);
        const notice = types.lastIndexOf("error");
        assert.equal(types[notice + 1], "relay.session.resumed");
        assert.ok(!types.slice(notice).includes("session.created"), types.join(" "));
        const logged = events("session.resumed");
        assert.deepEqual(logged.map((e) => [e.session, e.items, e.skipped]), [[session, 6, 0]]);
        measured(
          `resume: the page was open again, resumed, ${resume.afterMs} ms after its socket ` +
            `closed (relay shut down in ${restartMs} ms; ${tookMs} ms from the restart call)`,
        );
        assert.ok(resume.afterMs !== null && resume.afterMs < 10_000, `${resume.afterMs} ms`);
      });

      await t.step("the next answer proves the context came back", async () => {
        const said = "What did I say first?";
        assert.equal(await ask(page, said), answer(prefix, said, 6, SAID[0]));
        assert.deepEqual((await demoState(page)).refusals, []);
      });

      await t.step("after a reload, the tab's stored session id continues it", async () => {
        await untilStored(sql, session, 8);
        await page.click("#disconnect");
        await waitFor(page, "d.state === 'closed'");
        await page.reload();
        await page.waitForSelector("body[data-ready=true]");
        assert.equal(
          await page.evaluate((key) => sessionStorage.getItem(key), SESSION_KEY),
          session,
        );
        assert.equal(await page.textContent("#session-id"), session);
        await page.selectOption("#route", "/relay");
        await page.selectOption("#token-mode", "protocol");
        await page.click("#connect");
        const state = await waitFor(page, "d.state === 'open' && d.resumes.length === 1");
        assert.deepEqual(state.resumes[0], { items: 8, skipped: 0, afterMs: null });
        assert.equal(state.stateLine, "resumed: 8 items restored, 0 skipped");
        assert.equal(state.reconnects, 0, "a Connect, not a reconnect");
        const said = "And what was it?";
        assert.equal(await ask(page, said), answer(prefix, said, 8, SAID[0]));
      });

      await t.step("new conversation: a fresh session id, nothing remembered", async () => {
        await page.click("#new-session");
        const state = await waitFor(
          page,
          `d.state === 'open' && d.session !== ${JSON.stringify(session)}`,
        );
        assert.match(state.session, /^[A-Za-z0-9_-]{22}$/);
        assert.equal(await page.textContent("#session-id"), state.session);
        assert.equal(
          await page.evaluate((key) => sessionStorage.getItem(key), SESSION_KEY),
          state.session,
        );
        assert.equal(state.stateLine, "open · a new conversation");
        assert.deepEqual(state.resumes, []);
        const said = "Who am I?";
        assert.equal(await ask(page, said), answer(prefix, said));
      });
    } finally {
      await browser?.close();
      await sql.end({ timeout: 1 });
      await stack.close(2000);
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
