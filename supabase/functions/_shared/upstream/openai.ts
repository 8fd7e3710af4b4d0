/**
 * The OpenAI Realtime upstream (GA interface): a WebSocket authenticated with
 * subprotocols, since the edge runtime cannot set request headers on one.
 * @module
 */
import type { Message, Upstream, UpstreamConnector, UpstreamEvents } from "./upstream.ts";

/** Where and how to reach OpenAI. */
export interface OpenAIUpstreamOptions {
  readonly url: string;
  readonly apiKey: string;
}

/** The upstream URL for a model: only `model` is forwarded, never the client's query. */
export function realtimeUrl(base: string, model: string): string {
  const url = new URL(base);
  url.search = "";
  url.searchParams.set("model", model);
  return url.href;
}

/** The upstream URL of a transcription session: `?intent=transcription`, no model (OpenAI's documented form). */
export function transcriptionUrl(base: string): string {
  const url = new URL(base);
  url.search = "";
  url.searchParams.set("intent", "transcription");
  return url.href;
}

/** A bound on the URLs kept, should a caller pass models unchecked. */
const MAX_CACHED_URLS = 64;

/**
 * Connects to OpenAI Realtime for each relayed connection: a conversation
 * with the connection's model, or (`intent: "transcription"`) a
 * transcription session, which takes no model.
 */
export function openAIConnector(
  options: OpenAIUpstreamOptions,
  intent: "conversation" | "transcription" = "conversation",
): UpstreamConnector {
  // No `openai-beta.*` entry: OpenAI closes beta-shaped sessions with 4000.
  const protocols = ["realtime", `openai-insecure-api-key.${options.apiKey}`];
  // Built once per model (the handler only lets allowed models through): URL
  // parsing was 2 % of the relay's CPU per handshake.
  const urls = new Map<string, string>();
  const transcription = intent === "transcription" ? transcriptionUrl(options.url) : null;
  const urlFor = (model: string) => {
    if (transcription !== null) return transcription;
    let url = urls.get(model);
    if (url === undefined) {
      url = realtimeUrl(options.url, model);
      if (urls.size < MAX_CACHED_URLS) urls.set(model, url);
    }
    return url;
  };
  return (model: string, events: UpstreamEvents): Upstream => {
    const socket = new WebSocket(urlFor(model), protocols);
    // Deno's default is "blob", which would make every binary frame an async read.
    socket.binaryType = "arraybuffer";
    const listener = new UpstreamListener(events);
    for (const type of SOCKET_EVENTS) socket.addEventListener(type, listener);
    return socket;
  };
}

const SOCKET_EVENTS = ["message", "open", "close", "error"] as const;

/**
 * One listener object for the socket's four events: an `on...` handler costs
 * each idle connection a closure and the runtime's wrapper around it.
 */
class UpstreamListener {
  readonly #events: UpstreamEvents;

  constructor(events: UpstreamEvents) {
    this.#events = events;
  }

  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        return this.#events.onUpstreamMessage((event as MessageEvent<Message>).data);
      case "open":
        return this.#events.onUpstreamOpen();
      case "close": {
        const { code, reason } = event as CloseEvent;
        return this.#events.onUpstreamClose(code, reason);
      }
      // An error is always followed by a close event, which carries the decision.
      case "error":
        return event.preventDefault();
    }
  }
}
