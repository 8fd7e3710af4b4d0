/**
 * Real-browser suite for the in-band close notices (CONTRACT.md "In-band close
 * notices"): Debian's Chromium, driven by playwright-core, loads a tiny page
 * served here and connects to the unchanged relay handler running under this
 * Deno. Whatever close code Chromium reports (1006 on Deno 2.1.4, the real one
 * on later Deno), the page has the notice, with the code and reason, first.
 * Run by close_notices_browser_test.ts in a child `deno test -A` (see
 * browser_test.ts for why).
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { startRelay } from "../helpers/relay_harness.ts";
import { until } from "../helpers/ws_client.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";

/** The page: what browser code does, and a log of what it saw, in order. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>close notices</title>
<script>
  // Connects, optionally sends one message on open, and resolves with every
  // event in the order the page saw them.
  window.watch = (url, send) => new Promise((resolve) => {
    const log = [];
    const ws = new WebSocket(url);
    ws.onopen = () => {
      log.push({ kind: "open", at: performance.now() });
      if (send) ws.send(send);
    };
    ws.onmessage = (event) => log.push({ kind: "message", data: event.data, at: performance.now() });
    ws.onclose = (event) => {
      log.push({
        kind: "close",
        code: event.code,
        reason: event.reason,
        wasClean: event.wasClean,
        at: performance.now(),
      });
      resolve(log);
    };
  });
</script>
<body>close notices</body>`;

type Seen =
  | { kind: "open"; at: number }
  | { kind: "message"; data: string; at: number }
  | { kind: "close"; code: number; reason: string; wasClean: boolean; at: number };

function watch(page: Page, url: string, send?: string): Promise<Seen[]> {
  return page.evaluate(
    ([url, send]) =>
      (globalThis as unknown as { watch(u: string, s?: string): Promise<Seen[]> }).watch(url, send),
    [url, send] as const,
  );
}

/** How browser code reads a notice: `error.close_code` and `error.code` of an `error` event. */
function assertNoticeThenClose(
  seen: Seen[],
  closeCode: number,
  code: string,
  reason: string,
): void {
  const close = seen.at(-1);
  assert.equal(close?.kind, "close", "the close event came last");
  assert.equal(seen[0]?.kind, "open");
  const notice = seen.at(-2);
  assert.equal(notice?.kind, "message", "a message right before the close event");
  const event = JSON.parse((notice as { data: string }).data);
  assert.equal(event.type, "error");
  assert.deepEqual([event.error.type, event.error.code, event.error.close_code], [
    "relay_error",
    code,
    closeCode,
  ]);
  const { code: got, reason: gotReason } = close as { code: number; reason: string };
  // Chromium's own report: the real close on a fixed Deno, 1006 on 2.1.4.
  assert.ok(
    (got === closeCode && gotReason === reason) || (got === 1006 && gotReason === ""),
    `Chromium reported ${got} ${JSON.stringify(gotReason)}`,
  );
  assert.ok(close!.at - notice!.at < 2000, "the close follows the notice at once");
  console.log(
    `  Chromium: notice ${code}/${closeCode}, then close ${got} ${JSON.stringify(gotReason)}`,
  );
}

Deno.test({
  name: "close notices in Chromium: the page reads the code before the close event",
  fn: async (t) => {
    const relay = await startRelay({ env: { RELAY_IDLE_TIMEOUT_S: "30" } });
    const pageServer = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } }),
    );
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${pageServer.addr.port}/`);
      await page.waitForFunction("typeof globalThis.watch === 'function'");
      relay.openai.behaviour = { kind: "echo" };

      await t.step("token_expired (4001)", async () => {
        const token = await relay.auth.signEs256({}, { expiresInS: 2 });
        const seen = await watch(page, relay.wsUrl("/relay", { jwt: token }), "hello");
        assertNoticeThenClose(seen, 4001, "token_expired", "token_expired");
        assert.equal((seen[1] as { data: string }).data, "hello", "the echo came first");
      });

      await t.step("a forwarded upstream 4000", async () => {
        const reason = "invalid_request_error.beta_api_shape_disabled";
        relay.openai.behaviour = { kind: "close", code: 4000, reason, afterMessages: 1 };
        const token = await relay.auth.signEs256();
        const seen = await watch(page, relay.wsUrl("/relay", { jwt: token }), "hello");
        assertNoticeThenClose(seen, 4000, "upstream_closed", reason);
        const notice = JSON.parse((seen.at(-2) as { data: string }).data);
        assert.equal(notice.error.message, reason, "OpenAI's reason, readable in the page");
        relay.openai.behaviour = { kind: "echo" };
      });

      // Last: the relay drains for good.
      await t.step("server_restarting (1012)", async () => {
        const token = await relay.auth.signEs256();
        const watching = watch(page, relay.wsUrl("/relay", { jwt: token }));
        await until(() => relay.relay.connections() === 1, 5000, "the page to connect");
        await until(() => relay.openai.connections.length > 0, 5000, "the upstream");
        await relay.relay.shutdown();
        assertNoticeThenClose(await watching, 1012, "server_restarting", "server_restarting");
      });
    } finally {
      await browser?.close();
      await pageServer.shutdown();
      await relay.close();
    }
  },
});
