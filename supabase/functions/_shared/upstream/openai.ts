/**
 * The OpenAI Realtime upstream (GA interface): a WebSocket authenticated with
 * subprotocols, since the edge runtime cannot set request headers on one.
 * @module
 */
import type { Upstream, UpstreamConnector, UpstreamEvents } from "./upstream.ts";

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

/** Connects to OpenAI Realtime for each relayed connection. */
export function openAIConnector(options: OpenAIUpstreamOptions): UpstreamConnector {
  // No `openai-beta.*` entry: OpenAI closes beta-shaped sessions with 4000.
  const protocols = ["realtime", `openai-insecure-api-key.${options.apiKey}`];
  return (model: string, events: UpstreamEvents): Upstream => {
    const socket = new WebSocket(realtimeUrl(options.url, model), protocols);
    // Deno's default is "blob", which would make every binary frame an async read.
    socket.binaryType = "arraybuffer";
    socket.onopen = () => events.onOpen();
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => events.onMessage(event.data);
    socket.onclose = (event) => events.onClose(event.code, event.reason);
    // An error is always followed by a close event, which carries the decision.
    socket.onerror = (event) => event.preventDefault();
    return socket;
  };
}
