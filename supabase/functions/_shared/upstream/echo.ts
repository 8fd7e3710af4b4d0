/**
 * The echo upstream: every message comes straight back, same type, same bytes.
 * Runs inside the relay loop so it gets the same limits as the OpenAI route.
 * @module
 */
import type { Upstream, UpstreamEvents } from "./upstream.ts";

/** Connects each client to a loopback that answers every message with itself. */
export function echoConnector(_model: string, events: UpstreamEvents): Upstream {
  let open = true;
  queueMicrotask(() => open && events.onUpstreamOpen());
  return {
    bufferedAmount: 0,
    send(data) {
      if (open) events.onUpstreamMessage(data);
    },
    close(code, reason) {
      if (!open) return;
      open = false;
      queueMicrotask(() => events.onUpstreamClose(code, reason));
    },
  };
}
