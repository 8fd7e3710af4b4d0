/**
 * Real-browser end-to-end suite: Debian's Chromium (driven by playwright-core)
 * loads the dev stack's demo page and talks to the unchanged relay over real
 * sockets through the client library, the way a browser app would. Where the
 * relay closes a connection the library reconnects on (4001, 1011
 * upstream_closed_abnormally, 1012), the page records the browser's own close
 * event of that socket and shows the reconnect. Run by browser_test.ts in a child
 * `deno test -A`: playwright-core reads /proc at import, which Deno 2.9 allows
 * only with --allow-all, and the suite's `deno task test` grants less.
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { waitForDemo } from "./demo_page.ts";

/**
 * After a server-initiated close, Deno 2.1.4 (the edge runtime's) answers the
 * peer's close frame with a second close frame (denoland/deno#21642, fixed by
 * denoland/deno#31747, January 2026). Chromium then fails the connection with
 * "Close received after close" and reports 1006 instead of the relay's code.
 * Measured here: 2.1.4 sends it, 2.9.6 does not; releases in between are not
 * asserted either way.
 */
const [MAJOR = 0, MINOR = 0] = Deno.version.deno.split(".").map(Number);
const DOUBLE_CLOSE_FRAME: boolean | "unknown" = MAJOR !== 2
  ? false
  : MINOR <= 1
  ? true
  : MINOR >= 9
  ? false
  : "unknown";

/** One socket's close as the browser reported it (`relayDemo.closes` in demo.js). */
interface SocketClose {
  opened: boolean;
  code: number;
  reason: string;
  wasClean: boolean;
  notice: { code: string; closeCode: number; message: string } | null;
}

/** The page's mirror of its own state (`window.relayDemo` in demo.js). */
interface DemoState {
  state: string;
  stateLine: string;
  reconnects: number;
  closes: SocketClose[];
  history: { state: string; why: string; code: number | null; line: string }[];
  banner: { kind: string; text: string } | null;
  opened: boolean;
  protocol: string | null;
  closeCode: number | null;
  closeReason: string | null;
  wasClean: boolean | null;
  closedAfterMs: number | null;
  lastRttMs: number | null;
  /** The token's `exp` (seconds). */
  expiresAt: number | null;
  received: { type: string; text: string }[];
  outputText: string;
}

function waitFor(page: Page, condition: string, timeout = 8000): Promise<DemoState> {
  return waitForDemo<DemoState>(page, condition, timeout);
}

/** Sets the page's controls and clicks Connect. */
async function connect(
  page: Page,
  opts: {
    route: "/relay" | "/relay/echo";
    mode: "query" | "protocol" | "bad" | "none";
    ttl?: number;
  },
): Promise<void> {
  await page.selectOption("#route", opts.route);
  await page.selectOption("#token-mode", opts.mode);
  await page.fill("#ttl", String(opts.ttl ?? 3600));
  await page.click("#connect");
}

/** What the page shows in its status panel, as a user would read it. */
async function shownClose(page: Page): Promise<{ code: string; reason: string; clean: string }> {
  return {
    code: await page.textContent("#close-code") ?? "",
    reason: await page.textContent("#close-reason") ?? "",
    clean: await page.textContent("#close-clean") ?? "",
  };
}

Deno.test({
  name: "demo page in Chromium relays through the client library, reports close codes, reconnects",
  // playwright-core's pipe to Chromium and its child process are Node-compat
  // resources Deno's sanitizers track per test; they are closed in `finally`.
  fn: async (t) => {
    const lines: string[] = [];
    const stack: DevStack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
      env: { RELAY_IDLE_TIMEOUT_S: "30" },
      telemetry: (line) => lines.push(line),
    });
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
      const page = await browser.newPage();
      await page.goto(stack.demoUrl);
      await page.waitForSelector("body[data-ready=true]");
      const events = (name: string) =>
        lines.map((line) => JSON.parse(line)).filter((line) => line.event === name);

      await t.step("?jwt= on the OpenAI route: response.create streams text deltas", async () => {
        await connect(page, { route: "/relay", mode: "query" });
        let state = await waitFor(page, "d.state === 'open' && d.received.length >= 1");
        assert.equal(state.protocol, "", "nothing offered, nothing selected");
        assert.equal(state.received[0]?.type, "session.created");
        await page.click("#send-response");
        state = await waitFor(page, "d.received.some((m) => m.type === 'response.done')");
        const types = state.received.map((m) => m.type);
        assert.ok(types.includes("response.created"));
        const deltas = state.received
          .filter((m) => m.type === "response.output_text.delta")
          .map((m) => JSON.parse(m.text).delta as string);
        assert.ok(deltas.length > 0, "text deltas arrived");
        assert.equal(state.outputText, deltas.join(""));
        // The page shows the streamed text as the assistant's turn of the conversation.
        assert.equal(
          await page.textContent("#conversation .turn.assistant:last-child .text"),
          state.outputText,
        );
        const done = JSON.parse(state.received.find((m) => m.type === "response.done")!.text);
        assert.ok(done.response.usage.total_tokens > 0, "usage crossed unchanged");
        assert.match(await page.textContent("#rtt") ?? "", /^\d+ ms$/);
        await page.click("#disconnect");
        state = await waitFor(page, "d.state === 'closed'");
        // A client-initiated close completes normally on every Deno version.
        assert.deepEqual(await shownClose(page), {
          code: "1000",
          reason: "user closed",
          clean: "yes",
        });
      });

      await t.step("jwt-<token> subprotocol: the relay selects realtime and echoes", async () => {
        await connect(page, { route: "/relay/echo", mode: "protocol" });
        let state = await waitFor(page, "d.state === 'open'");
        assert.equal(state.protocol, "realtime", "the credential entry is never selected");
        assert.equal(await page.textContent("#protocol"), "realtime");
        await page.fill("#free-text", "héllo, relay ✓");
        await page.click("#send-text");
        state = await waitFor(page, "d.received.length === 1");
        assert.equal(state.received[0]?.text, "héllo, relay ✓");
        assert.ok(state.lastRttMs !== null && state.lastRttMs < 2000);
        await page.click("#disconnect");
        await waitFor(page, "d.state === 'closed'");
        assert.equal((await shownClose(page)).code, "1000");
      });

      await t.step("a bad token is refused before the upgrade", async () => {
        const before = events("websocket.connection.rejected").length;
        await connect(page, { route: "/relay/echo", mode: "bad" });
        const state = await waitFor(page, "d.state === 'closed'");
        assert.equal(state.opened, false);
        // Browsers hide the HTTP answer of a failed handshake: 1006 is all they see.
        assert.equal(state.closeCode, 1006);
        assert.equal(state.wasClean, false);
        const rejected = events("websocket.connection.rejected").slice(before);
        assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[401, "invalid_token"]]);
        // The library ends a first connection that never opened: no retry, and words for it.
        assert.equal(state.closes.length, 1);
        assert.equal(state.stateLine, "closed: the relay refused the connection");
        assert.match(await page.textContent("#banner") ?? "", /refused.*401 invalid_token/);
      });

      await t.step("no token is refused before the upgrade, as missing", async () => {
        const before = events("websocket.connection.rejected").length;
        await connect(page, { route: "/relay", mode: "none" });
        const state = await waitFor(page, "d.state === 'closed'");
        assert.deepEqual([state.opened, state.closeCode], [false, 1006]);
        const rejected = events("websocket.connection.rejected").slice(before);
        assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[401, "missing_token"]]);
        assert.match(await page.textContent("#banner") ?? "", /refused.*401 missing_token/);
      });

      await t.step(
        "token expiry closes the socket with 4001; a fresh token reconnects",
        async () => {
          await connect(page, { route: "/relay/echo", mode: "query", ttl: 2 });
          let state = await waitFor(page, "d.state === 'open'");
          const expiresAt = state.expiresAt!;
          state = await waitFor(page, "d.closes.length >= 1", 6000);
          const closed = events("websocket.connection.closed").at(-1);
          assert.equal(closed?.code, 4001, "the relay closed with 4001");
          assert.equal(closed?.reason, "token_expired");
          assertRelayClose(state.closes[0]!, 4001, "token_expired", expiresAt * 1000);
          // The library's answer to 4001: a new connection with a new token.
          state = await waitFor(page, "d.state === 'open' && d.reconnects === 1", 6000);
          assert.ok(state.expiresAt! > expiresAt, "the reconnect got a fresh token");
          const reconnecting = state.history.find((h) => h.state === "reconnecting")!;
          // The echo route sends no notice: on 2.1.4 the browser's 1006 is all the library has.
          assert.match(
            reconnecting.line,
            DOUBLE_CLOSE_FRAME === true
              ? /^reconnecting in \d\.\d s \(1006 connection_lost\)$/
              : /^reconnecting in \d\.\d s \((4001 token_expired|1006 connection_lost)\)$/,
          );
          assert.equal(await page.textContent("#reconnects"), "1");
          await page.click("#disconnect");
          await waitFor(page, "d.state === 'closed'");
        },
      );

      await t.step(
        "an upstream that drops closes the socket with 1011; the page reconnects",
        async () => {
          // Right after the relay reached it: the page's socket is open, its session not yet.
          stack.openai!.behaviour = { kind: "drop", afterMessages: 0 };
          const sent = Date.now();
          await connect(page, { route: "/relay", mode: "query" });
          let state = await waitFor(page, "d.closes.length >= 1", 6000);
          assertRelayClose(state.closes[0]!, 1011, "upstream_closed_abnormally", sent);
          assert.deepEqual(
            [state.closes[0]!.notice?.closeCode, state.closes[0]!.notice?.code],
            [1011, "upstream_closed_abnormally"],
            "the notice came before the close",
          );
          stack.openai!.behaviour = { kind: "realtime" };
          state = await waitFor(page, "d.state === 'open'", 10_000);
          assert.ok(
            state.history.some((h) =>
              h.state === "reconnecting" && h.why === "upstream_closed_abnormally" &&
              h.code === 1011
            ),
            JSON.stringify(state.history),
          );
          // The dropped attempt never got that far: this is the reconnect's new OpenAI session.
          assert.ok(state.received.some((m) => m.type === "session.created"));
          await page.click("#disconnect");
          await waitFor(page, "d.state === 'closed'");
        },
      );

      await t.step("relay shutdown closes the socket with 1012; the page reconnects", async () => {
        await connect(page, { route: "/relay/echo", mode: "query" });
        await waitFor(page, "d.state === 'open'");
        const began = Date.now();
        await stack.relay.shutdown();
        const state = await waitFor(
          page,
          "d.closes.length >= 1 && d.state === 'reconnecting'",
          6000,
        );
        assertRelayClose(state.closes[0]!, 1012, "server_restarting", began);
        assert.ok(
          state.history.some((h) => h.state === "reconnecting"),
          "the library reconnects after 1012 (or the 1006 Deno 2.1.4 makes of it)",
        );
      });
    } finally {
      await browser?.close();
      await stack.close(2000);
    }
  },
});

/** Asserts what Chromium reported for a close the relay started, `sinceMs` after it began. */
function assertRelayClose(close: SocketClose, code: number, reason: string, sinceMs: number): void {
  assert.equal(close.opened, true);
  // On every Deno the close event comes at once (no waiting for a TCP timeout).
  assert.ok(Date.now() - sinceMs < 2000, `close reported after ${Date.now() - sinceMs} ms`);
  const got = [close.code, close.reason, close.wasClean];
  if (DOUBLE_CLOSE_FRAME === "unknown") {
    assert.ok(
      [JSON.stringify([code, reason, true]), JSON.stringify([1006, "", false])]
        .includes(JSON.stringify(got)),
      `unexpected close ${JSON.stringify(got)}`,
    );
  } else if (DOUBLE_CLOSE_FRAME) {
    // Deno 2.1.4 (the edge runtime's) sends a second close frame in answer to
    // Chromium's; Chromium fails the connection and reports 1006, no reason.
    // What stays reliable there: the close event arrives at once, not clean.
    assert.deepEqual(got, [1006, "", false]);
  } else {
    assert.deepEqual(got, [code, reason, true]);
  }
}
