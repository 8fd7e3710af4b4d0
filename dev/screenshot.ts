/**
 * Regenerates docs/demo.png: starts the dev stack on free ports, drives the
 * demo page in Debian's Chromium through one Realtime exchange, screenshots it.
 * `deno run -A dev/screenshot.ts [out.png]`
 * @module
 */
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "../tests/e2e/chromium.ts";
import { startDevStack } from "./stack.ts";

const out = Deno.args[0] ?? new URL("../docs/demo.png", import.meta.url).pathname;
const stack = await startDevStack({
  ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
  telemetry: () => {},
});
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [...CHROMIUM_ARGS],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(stack.demoUrl);
  await page.waitForSelector("body[data-ready=true]");
  await page.selectOption("#token-mode", "protocol");
  await page.click("#connect");
  await page.waitForFunction("globalThis.relayDemo.state === 'open'");
  await page.click("#send-session");
  await page.waitForFunction("globalThis.relayDemo.received.length >= 2");
  await page.click("#send-ask");
  await page.waitForFunction(
    "globalThis.relayDemo.received.some((m) => m.type === 'response.done')",
  );
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await stack.close(1000);
}
