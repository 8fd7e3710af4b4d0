/**
 * The `relay` edge function's entrypoint: reads settings, serves the relay.
 * Runs unchanged under `supabase functions serve`, on the platform, and under
 * plain Deno (`deno run -A supabase/functions/relay/index.ts`, on `$PORT`).
 * @module
 */
import { createRelayHandler } from "../_shared/handler.ts";
import { parseSettings, SettingsError } from "../_shared/settings.ts";

declare const EdgeRuntime: unknown;
const onEdgeRuntime = typeof EdgeRuntime !== "undefined";

/** How long plain Deno waits for sockets to close after SIGINT/SIGTERM. */
const SHUTDOWN_GRACE_MS = 4000;

function loadSettings() {
  try {
    return parseSettings(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof SettingsError) || onEdgeRuntime) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
}

const settings = loadSettings();
const relay = createRelayHandler(settings);

if (onEdgeRuntime) {
  // The platform is about to stop this worker: tell clients to reconnect.
  addEventListener("beforeunload", () => void relay.shutdown());
  Deno.serve(relay.handler);
} else {
  const stop = new AbortController();
  const server = Deno.serve({ port: settings.port, signal: stop.signal }, relay.handler);
  const shutdown = async () => {
    const grace = new Promise((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS));
    await Promise.race([relay.shutdown(), grace]);
    stop.abort();
    await Promise.race([server.finished, grace]);
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, shutdown);
}
