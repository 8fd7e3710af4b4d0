/**
 * Reading the demo page's mirror of its own state (`window.relayDemo` in
 * dev/demo/demo.js) from a browser test. Each suite names the shape it reads.
 * @module
 */
import type { Page } from "playwright-core";

/** The page's current `relayDemo`, as `T`. */
export function readDemo<T>(page: Page): Promise<T> {
  return page.evaluate(() => (globalThis as unknown as { relayDemo: T }).relayDemo);
}

/**
 * Waits until `condition` (a JavaScript expression over `d`, the page's
 * `relayDemo`) holds in the page, then reads the state.
 */
export async function waitForDemo<T>(page: Page, condition: string, timeout: number): Promise<T> {
  await page.waitForFunction(
    `(() => { const d = globalThis.relayDemo; return ${condition}; })()`,
    null,
    { timeout },
  );
  return await readDemo<T>(page);
}
