/**
 * The client library in a real browser: Debian's Chromium (playwright-core)
 * loads a page that imports `client/relay_client.js` as it is (no build step)
 * and talks to the real relay through the test proxy. On Deno 2.1.4, the edge
 * runtime's, Chromium reports every close the relay starts as 1006: the
 * library must still reconnect after a 1012 and stop after a 1008, from the
 * in-band notices. Run by browser_test.ts in a child `deno test -A`.
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../e2e/chromium.ts";
import { type RelayUnderTest, startRelay } from "../helpers/relay_harness.ts";
import { startProxy, type TcpProxy } from "./support.ts";

const CLIENT = new URL("../../client/relay_client.js", import.meta.url);
const [MAJOR = 0, MINOR = 0] = Deno.version.deno.split(".").map(Number);
/** Deno 2.1.4 answers Chromium's close reply with a second close frame (docs/browser-close-codes.md). */
const BROWSER_SEES_1006 = MAJOR === 2 && MINOR <= 1;

/** The page: the library as a module, and a few functions the test calls. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>relay client</title>
<script type="module">
  import { connect } from "/relay_client.js";
  const log = { states: [], events: [], socketCloses: [] };
  // The page's WebSocket, recording what its close events said.
  class Observed extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("close", (event) => log.socketCloses.push(event.code));
    }
  }
  let relay;
  globalThis.log = log;
  globalThis.start = (url, badToken) => {
    relay = connect({
      url,
      getToken: async () => badToken ? "not-a-token" : (await fetch("/token")).text(),
      WebSocket: Observed,
      backoff: { baseMs: 20, factor: 2, capMs: 200, jitter: 0 },
      onEvent: (event) => log.events.push(event.type),
      onState: (state, info) => log.states.push({ state, ...info }),
    });
    return relay.session;
  };
  globalThis.sendMany = (n) => {
    for (let i = 0; i < n && relay.state === "open"; i++) relay.send({ type: "input_audio_buffer.clear" });
  };
  globalThis.stop = () => relay.close().then(() => true);
  document.body.dataset.ready = "true";
</script>
<body></body>`;

interface PageState {
  state: string;
  why: string;
  code?: number;
  reason?: string;
  resumed?: boolean;
}

/** Serves the page, the library file and dev tokens on 127.0.0.1:0. */
function servePage(relay: RelayUnderTest) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
    if (path === "/relay_client.js") {
      return new Response(await Deno.readFile(CLIENT), {
        headers: { "content-type": "text/javascript; charset=utf-8" },
      });
    }
    if (path === "/token") return new Response((await relay.auth.issueDevToken()).access_token);
    return new Response("not found", { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

async function states(page: Page): Promise<PageState[]> {
  return await page.evaluate(() =>
    (globalThis as unknown as { log: { states: PageState[] } }).log.states
  );
}

async function socketCloses(page: Page): Promise<number[]> {
  return await page.evaluate(() =>
    (globalThis as unknown as { log: { socketCloses: number[] } }).log.socketCloses
  );
}

/** Waits for the `n`th report of `state` and returns it. */
async function waitState(page: Page, state: string, n = 1): Promise<PageState> {
  await page.waitForFunction(
    `globalThis.log.states.filter((s) => s.state === ${JSON.stringify(state)}).length >= ${n}`,
    null,
    { timeout: 8000 },
  );
  return (await states(page)).filter((s) => s.state === state)[n - 1]!;
}

/** A fresh page on a relay (Realtime stand-in) behind a proxy; everything stopped after. */
async function withPage(
  browser: Browser,
  env: Record<string, string>,
  body: (s: { page: Page; relay: RelayUnderTest; proxy: TcpProxy }) => Promise<void>,
): Promise<void> {
  const relay = await startRelay({ env });
  relay.openai.behaviour = { kind: "realtime" };
  const proxy = startProxy(relay.port);
  const site = servePage(relay);
  const page = await browser.newPage();
  try {
    await page.goto(site.url);
    await page.waitForSelector("body[data-ready=true]", { state: "attached" });
    await body({ page, relay, proxy });
  } finally {
    await page.evaluate(() => (globalThis as unknown as { stop(): Promise<boolean> }).stop())
      .catch(() => {});
    await page.close();
    await site.close();
    await proxy.close();
    await relay.relay.shutdown();
    await relay.close();
  }
}

Deno.test({
  name: "client library in Chromium: reconnects after 1012, stops after 1008, on every Deno",
  fn: async (t) => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
    try {
      await t.step("1012 server_restarting: reconnects to the next relay", async () => {
        await withPage(browser, {}, async ({ page, relay, proxy }) => {
          const second = await startRelay({ auth: relay.auth, openai: relay.openai });
          try {
            await page.evaluate((url) =>
              (globalThis as unknown as { start(u: string): string })
                .start(url), proxy.url("/relay"));
            const opened = await waitState(page, "open");
            assert.equal(opened.why, "started");
            proxy.target = second.port;
            await relay.relay.shutdown();
            const reconnecting = await waitState(page, "reconnecting");
            assert.deepEqual([reconnecting.why, reconnecting.code], ["server_restarting", 1012]);
            // What the browser itself said about that close.
            assert.equal((await socketCloses(page))[0], BROWSER_SEES_1006 ? 1006 : 1012);
            await waitState(page, "open", 2);
            assert.equal(second.events("websocket.connection.accepted").length, 1);
          } finally {
            await page.evaluate(() =>
              (globalThis as unknown as { stop(): Promise<boolean> }).stop()
            );
            await second.relay.shutdown();
            await second.close();
          }
        });
      });

      await t.step("1008 rate_limited: the conversation ends, no reconnect", async () => {
        await withPage(browser, { RELAY_RATE_LIMIT: "2" }, async ({ page, relay, proxy }) => {
          await page.evaluate((url) =>
            (globalThis as unknown as { start(u: string): string })
              .start(url), proxy.url("/relay"));
          await waitState(page, "open");
          // One over the burst of 4: the fifth is the one refused. More would arrive after
          // the relay's close, and a socket closed with unread data is reset, which can
          // discard the notice and the close frame still queued (the client then sees 1006
          // with no notice, and reconnects).
          await page.evaluate(() =>
            (globalThis as unknown as { sendMany(n: number): void })
              .sendMany(5)
          );
          const closed = await waitState(page, "closed");
          assert.deepEqual([closed.why, closed.code], ["rate_limited", 1008]);
          // What the browser reports depends on when Deno tears the socket down (on 2.1.4
          // usually 1006, under load 1008): the notice decides either way.
          const seen = (await socketCloses(page))[0]!;
          assert.ok([1006, 1008].includes(seen), `${seen}`);
          assert.equal((await states(page)).filter((s) => s.state === "reconnecting").length, 0);
          assert.equal(relay.events("websocket.connection.accepted").length, 1);
        });
      });

      await t.step("a refused first connection ends at once", async () => {
        await withPage(browser, {}, async ({ page, relay, proxy }) => {
          await page.evaluate(
            (url) =>
              (globalThis as unknown as { start(u: string, bad: boolean): string })
                .start(url, true),
            proxy.url("/relay"),
          );
          const closed = await waitState(page, "closed");
          assert.equal(closed.why, "refused");
          assert.deepEqual((await states(page)).map((s) => s.state), ["connecting", "closed"]);
          const rejected = relay.events("websocket.connection.rejected");
          assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[401, "invalid_token"]]);
        });
      });
    } finally {
      await browser.close();
    }
  },
});
