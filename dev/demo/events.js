// Incoming: what each message from the relay does to the page. Server events
// go to the panel they concern (voice, conversation, usage, the banner); all
// are kept in `relayDemo.received` and logged.
import { $, demo, page, receivedAt } from "./state.js";
import { log } from "./log.js";
import { showBanner } from "./banner.js";
import { base64ToBytes } from "./bytes.js";
import { conversation } from "./conversation.js";
import { configureSession, voice } from "./voice.js";
import { refreshUsageSoon } from "./usage.js";

/** The round trip: from the first message sent to the next one received. */
function measureRtt() {
  if (page.pendingSince === null) return;
  demo.lastRttMs = Math.round(performance.now() - page.pendingSince);
  $("rtt").textContent = `${demo.lastRttMs} ms`;
  page.pendingSince = null;
}

/** A message that is not a JSON event (e.g. the echo route's text): shown as it came. */
export function onRawMessage(data) {
  measureRtt();
  const text = typeof data === "string" ? data : `(binary, ${data.byteLength} bytes)`;
  demo.received.push({ type: "message", text, at: receivedAt() });
  log("in", "message", text);
}

/** A server event, as the library parsed it. */
export function onEvent(event) {
  measureRtt();
  const at = receivedAt();
  if (event.type === "response.output_audio.delta") {
    const bytes = typeof event.delta === "string" ? base64ToBytes(event.delta) : new Uint8Array();
    demo.received.push({ type: event.type, text: "", bytes: bytes.length, at });
    log("in", event.type, `${bytes.length} bytes`);
    voice.audioDelta(event, bytes);
    return;
  }
  demo.received.push({ type: event.type, text: JSON.stringify(event), at });
  log("in", event.type, summarise(event), event.type === "error");
  handleEvent(event);
}

/** What each server event does to the page. */
function handleEvent(event) {
  switch (event.type) {
    case "session.created":
      // A new OpenAI session (not after a resume: the relay restored the configuration).
      if (page.voiceRoute) configureSession();
      break;
    case "session.updated": {
      const td = event.session?.audio?.input?.turn_detection;
      // With it, OpenAI cancels an answer itself when VAD hears speech start.
      demo.voice.serverInterrupts = Boolean(td?.type) && td.interrupt_response !== false;
      break;
    }
    case "error":
      onError(event.error ?? {});
      break;
    case "input_audio_buffer.committed":
      conversation.userCommitted(event.item_id);
      break;
    case "input_audio_buffer.speech_started":
      voice.speechStarted();
      break;
    case "input_audio_buffer.speech_stopped":
      voice.speechStopped();
      break;
    case "conversation.item.input_audio_transcription.delta":
      conversation.userTranscript(event.item_id, event.delta ?? "", false);
      break;
    case "conversation.item.input_audio_transcription.completed":
      conversation.userTranscript(event.item_id, event.transcript ?? "", true);
      break;
    case "response.created":
      voice.responseCreated(event.response?.id ?? null);
      break;
    case "response.output_item.added":
      if (event.item?.role === "assistant") conversation.assistant(event.item.id);
      break;
    case "response.output_text.delta":
      if (typeof event.delta === "string") {
        demo.outputText += event.delta;
        conversation.assistantText(event.item_id, event.delta, "text");
      }
      break;
    case "response.output_audio_transcript.delta":
      if (typeof event.delta === "string") {
        conversation.assistantText(event.item_id, event.delta, "audio");
      }
      break;
    case "conversation.item.truncated":
      conversation.truncated(event.item_id, event.audio_end_ms);
      break;
    case "response.done":
      voice.responseDone(event.response?.id ?? null);
      refreshUsageSoon();
      break;
  }
}

/** In-band close notices and policy refusals (CONTRACT.md) get words, not just a log line. */
function onError(error) {
  if (error.type === "relay_error") {
    demo.relayClose = {
      code: String(error.code ?? ""),
      closeCode: Number(error.close_code),
      message: String(error.message ?? ""),
    };
    page.socketNotice = demo.relayClose;
    if (error.code === "budget_exceeded") {
      showBanner(
        "bad",
        "Budget spent: your usage budget for this period has run out, so the relay closed " +
          `the connection (${error.close_code} budget_exceeded). It renews when the period ends.`,
      );
      $("usage-state").textContent = "budget spent";
      refreshUsageSoon();
    } else {
      showBanner(
        error.close_code === 1012 ? "info" : "bad",
        `The relay is closing the connection: ${error.message} (${error.close_code} ${error.code})`,
      );
    }
  } else if (error.code === "relay_policy_violation") {
    demo.refusals.push({
      message: String(error.message ?? ""),
      param: error.param ?? null,
      eventId: error.event_id ?? null,
    });
    const param = error.param ? ` (${error.param})` : "";
    const count = demo.refusals.length > 1 ? ` · ${demo.refusals.length} refused so far` : "";
    showBanner(
      "warn",
      `The relay's session policy refused a message: ${error.message}${param}${count}`,
    );
  }
}

/** A short, payload-light description of a Realtime event. */
function summarise(event) {
  switch (event.type) {
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta":
    case "conversation.item.input_audio_transcription.delta":
      return JSON.stringify(event.delta);
    case "conversation.item.input_audio_transcription.completed":
      return JSON.stringify(event.transcript);
    case "response.done":
      return event.response?.usage
        ? `${event.response.status} · usage ${JSON.stringify(event.response.usage)}`
        : event.response?.status ?? "";
    case "error":
      return `${event.error?.code ?? ""}: ${event.error?.message ?? ""}`;
    case "conversation.item.truncated":
      return `${event.item_id} at ${event.audio_end_ms} ms`;
    case "relay.session.resumed":
      return `${event.items} items restored, ${event.skipped} skipped`;
    case "session.created":
    case "session.updated": {
      const s = event.session ?? {};
      const vad = s.audio?.input?.turn_detection?.type ?? "off";
      const stt = s.audio?.input?.transcription?.model ?? "off";
      return `model ${
        s.model ?? "?"
      }, output ${s.output_modalities}, vad ${vad}, transcription ${stt}`;
    }
    default:
      return event.response?.id ?? event.item_id ?? event.item?.id ?? "";
  }
}
