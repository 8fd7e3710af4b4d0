/**
 * Where the e2e tests find Chromium and how they start it.
 * @module
 */

/** Debian's Chromium (`apt-get install chromium`); override with RELAY_E2E_CHROMIUM. */
export const CHROMIUM: string = Deno.env.get("RELAY_E2E_CHROMIUM") ?? "/usr/bin/chromium";

/** Headless in a container: no sandbox, no GPU, no network chatter of its own. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Whether the Chromium binary is there. */
export function chromiumPresent(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}
