/**
 * Runs one Realtime session with the official `openai` SDK against the relay,
 * then prints a JSON summary on stdout. Spawned by openai_sdk_test.ts with
 * `DENO_CERT` trusting the test's certificate authority.
 *
 * Environment: `RELAY_BASE_URL` (https://127.0.0.1:<port>/relay), `RELAY_TOKEN`
 * (the user's Supabase access token, used as the SDK's API key), `SDK_CLIENT`
 * (`websocket`: the runtime-WebSocket client, key in a subprotocol; `ws`: the
 * Node `ws` client, key in an Authorization header). Both trust the test's CA
 * through `DENO_CERT` (Deno's Node compatibility honours it for `ws` too).
 * @module
 */
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

/** What the parent test asserts on. */
export interface SdkRunSummary {
  client: string;
  /** The URL the SDK built, without its query (no secrets there anyway). */
  path: string;
  protocol: string | null;
  events: string[];
  text: string;
  usage: unknown;
  sessionInstructions: unknown;
  closeCode: number | null;
  error: string | null;
}

const baseURL = Deno.env.get("RELAY_BASE_URL") ?? "";
const apiKey = Deno.env.get("RELAY_TOKEN") ?? "";
const which = Deno.env.get("SDK_CLIENT") ?? "websocket";
const TIMEOUT_MS = 10_000;

async function run(): Promise<SdkRunSummary> {
  const client = new OpenAI({ apiKey, baseURL, organization: null, project: null });
  const summary: SdkRunSummary = {
    client: which,
    path: "",
    protocol: null,
    events: [],
    text: "",
    usage: null,
    sessionInstructions: null,
    closeCode: null,
    error: null,
  };
  const rt = which === "ws"
    ? new OpenAIRealtimeWS({ model: "gpt-realtime" }, client)
    : new OpenAIRealtimeWebSocket({ model: "gpt-realtime" }, client);
  summary.path = rt.url.pathname;

  const finished = Promise.withResolvers<void>();
  const timer = setTimeout(() => finished.reject(new Error("session timed out")), TIMEOUT_MS);
  rt.on("error", (error) => {
    summary.error = error.message;
    finished.reject(error);
  });
  rt.on("event", (event) => summary.events.push(event.type));
  rt.on("session.created", () => {
    rt.send({
      type: "session.update",
      session: { type: "realtime", output_modalities: ["text"], instructions: "Be brief." },
    });
  });
  rt.on("session.updated", (event) => {
    summary.sessionInstructions = "instructions" in event.session
      ? event.session.instructions
      : null;
    rt.send({ type: "response.create", response: { output_modalities: ["text"] } });
  });
  rt.on("response.output_text.delta", (event) => (summary.text += event.delta));
  rt.on("response.done", (event) => {
    summary.usage = event.response.usage;
    finished.resolve();
  });

  const onOpen = () => (summary.protocol = rt.socket.protocol);
  const closed = new Promise<void>((resolve) => {
    if (rt instanceof OpenAIRealtimeWS) {
      rt.socket.on("open", onOpen);
      rt.socket.on("close", (code: number) => {
        summary.closeCode = code;
        resolve();
      });
    } else {
      rt.socket.addEventListener("open", onOpen);
      rt.socket.addEventListener("close", (event: CloseEvent) => {
        summary.closeCode = event.code;
        resolve();
      });
    }
  });
  try {
    await finished.promise;
  } catch (error) {
    summary.error ??= error instanceof Error ? error.message : String(error);
  } finally {
    clearTimeout(timer);
  }
  rt.close({ code: 1000, reason: "done" });
  await closed;
  return summary;
}

console.log(JSON.stringify(await run()));
