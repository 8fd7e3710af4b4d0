/**
 * Opens a Realtime transcription session with the official `openai` SDK
 * (`{ intent: "transcription" }`) against the OpenAI stand-in behind a TLS
 * pipe, transcribes one committed turn, and prints a JSON summary on stdout.
 * Spawned by transcription_test.ts with `DENO_CERT` trusting the test's CA
 * (the SDK builds `wss:` URLs only).
 *
 * Environment: `OPENAI_BASE_URL` (https://127.0.0.1:<port>/v1), `OPENAI_KEY`
 * (the stand-in's key), `SDK_CLIENT` (`websocket`: the runtime WebSocket;
 * `ws`: the Node `ws` client), `TRANSCRIPT` (what the audio says).
 * @module
 */
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";
import { OpenAIRealtimeWS } from "openai/realtime/ws";
import { encodeBase64, tone, withTranscript } from "./realtime_audio.ts";

/** What the parent test asserts on. */
export interface TranscriptionSdkSummary {
  client: string;
  /** The URL the SDK built: path and query. */
  url: string;
  events: string[];
  sessionType: unknown;
  updatedModel: unknown;
  deltas: string[];
  transcript: string | null;
  usage: unknown;
  closeCode: number | null;
  error: string | null;
}

const baseURL = Deno.env.get("OPENAI_BASE_URL") ?? "";
const apiKey = Deno.env.get("OPENAI_KEY") ?? "";
const which = Deno.env.get("SDK_CLIENT") ?? "websocket";
const said = Deno.env.get("TRANSCRIPT") ?? "";
const TIMEOUT_MS = 10_000;

async function run(): Promise<TranscriptionSdkSummary> {
  const client = new OpenAI({ apiKey, baseURL, organization: null, project: null });
  const summary: TranscriptionSdkSummary = {
    client: which,
    url: "",
    events: [],
    sessionType: null,
    updatedModel: null,
    deltas: [],
    transcript: null,
    usage: null,
    closeCode: null,
    error: null,
  };
  const rt = which === "ws"
    ? new OpenAIRealtimeWS({ intent: "transcription" }, client)
    : new OpenAIRealtimeWebSocket({ intent: "transcription" }, client);
  summary.url = rt.url.pathname + rt.url.search;

  const finished = Promise.withResolvers<void>();
  const timer = setTimeout(() => finished.reject(new Error("session timed out")), TIMEOUT_MS);
  rt.on("error", (error) => {
    summary.error = error.message;
    finished.reject(error);
  });
  rt.on("event", (event) => summary.events.push(event.type));
  rt.on("session.created", (event) => {
    summary.sessionType = event.session.type;
    rt.send({
      type: "session.update",
      session: {
        type: "transcription",
        audio: { input: { transcription: { model: "gpt-4o-mini-transcribe", language: "en" } } },
      },
    });
  });
  rt.on("session.updated", (event) => {
    const session = event.session;
    summary.updatedModel = session.type === "transcription"
      ? session.audio?.input?.transcription?.model ?? null
      : null;
    rt.send({
      type: "input_audio_buffer.append",
      audio: encodeBase64(withTranscript(said, tone(400))),
    });
    rt.send({ type: "input_audio_buffer.commit" });
  });
  rt.on("conversation.item.input_audio_transcription.delta", (event) => {
    summary.deltas.push(event.delta ?? "");
  });
  rt.on("conversation.item.input_audio_transcription.completed", (event) => {
    summary.transcript = event.transcript;
    summary.usage = event.usage;
    finished.resolve();
  });

  const closed = new Promise<void>((resolve) => {
    if (rt instanceof OpenAIRealtimeWS) {
      rt.socket.on("close", (code: number) => {
        summary.closeCode = code;
        resolve();
      });
    } else {
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
