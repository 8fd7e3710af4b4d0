/**
 * The dev stack with `deno task dev`'s defaults (rooms decided in the
 * embedded database, history on, the bus on the Supabase Realtime stand-in)
 * and a second relay instance on the same settings, database and Realtime
 * stand-in, as tests/integration/dev_rooms_test.ts runs it: two instances of
 * one project. The demo page reaches the second with `?relay=<its url>`.
 * @module
 */
import { withDevDefaults } from "../../dev/defaults.ts";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { createRelayHandler, type Relay } from "../../supabase/functions/_shared/handler.ts";
import { createTelemetry } from "../../supabase/functions/_shared/telemetry/log.ts";

/** A second relay instance beside the dev stack's. */
export interface SecondRelay {
  /** e.g. `ws://127.0.0.1:40123` */
  readonly url: string;
  /**
   * Restarts it as the platform recycles a worker (as `DevStack.restartRelay`
   * does for the first): the running handler shuts down (clients get 1012),
   * bounded by `graceMs`, then a new one serves the same port.
   */
  restart(graceMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Both relays and what they run on. */
export interface TwoRelays {
  readonly stack: DevStack;
  readonly second: SecondRelay;
  /** Stops both and deletes the database's folder. */
  close(): Promise<void>;
}

/** Waits for `relay` to shut down, at most `graceMs`. */
async function shutDown(relay: Relay, graceMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  await Promise.race([relay.shutdown(), grace]);
  clearTimeout(timer);
}

/** Starts the dev stack (free ports, a fresh database) and a second relay instance. */
export async function startTwoRelays(
  env: Record<string, string | undefined> = {},
): Promise<TwoRelays> {
  const dir = await Deno.makeTempDir({ prefix: "relay-e2e-rooms-" });
  const stack = await startDevStack({
    ports: { relay: 0, demo: 0, auth: 0, openai: 0, db: 0 },
    env: withDevDefaults(env).env,
    dataDir: `${dir}/pglite`,
    fresh: true,
    telemetry: () => {},
  });
  const make = () =>
    createRelayHandler(stack.settings, {
      telemetry: createTelemetry(stack.settings.logLevel, () => {}),
    });
  let relay = make();
  const abort = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: abort.signal, onListen: () => {} },
    (request) => relay.handler(request),
  );
  let stopped = false;
  const second: SecondRelay = {
    url: `ws://127.0.0.1:${server.addr.port}`,
    restart: async (graceMs = 4000) => {
      await shutDown(relay, graceMs);
      relay = make();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await shutDown(relay, 2000);
      abort.abort();
      await server.finished;
    },
  };
  return {
    stack,
    second,
    close: async () => {
      await second.stop().catch(() => {});
      await stack.close(2000).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
