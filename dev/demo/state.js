// What the page knows, shared by every panel: `window.relayDemo` (the state
// the e2e tests read, tests/e2e/demo_page.ts), the values one Connect shares
// between modules, and the element lookup. It imports no panel, so any
// module may import it.
import { CHUNK_MS } from "./audio_format.js";

/** The page's element with this id. */
export const $ = (id) => document.getElementById(id);

/** What the page knows of one connection's voice side. */
function freshVoice() {
  return {
    /** The microphone is captured and the worklet runs. */
    micOn: false,
    micError: null,
    /** The AudioContext's rate (24000 when the browser resamples the microphone itself). */
    contextRate: null,
    chunkMs: CHUNK_MS,
    /** Microphone level (RMS of the last chunk, 0..1). */
    level: 0,
    vad: false,
    /** The session's VAD interrupts answers itself (turn_detection.interrupt_response). */
    serverInterrupts: false,
    appendsSent: 0,
    /** PCM16 bytes sent in input_audio_buffer.append, over the connection. */
    bytesSent: 0,
    /** One per push-to-talk turn: what was sent, and its SHA-256 (hex). */
    turns: [],
    /** Commit (or VAD's speech_stopped) to first audio delta, ms, per answer. */
    latencies: [],
    /** One per assistant audio item: what was scheduled and played. */
    playback: [],
    truncates: [],
    cancels: 0,
    /**
     * Over WebSocket the page owns playback, so stopping it is the clear;
     * `output_audio_buffer.clear` is for WebRTC/SIP sessions only (API reference).
     */
    outputBufferClear: "not sent: WebRTC/SIP only",
  };
}

/** What the page knows of one Connect: one conversation, across the library's reconnects. */
export function freshConnection() {
  return {
    /** Whether the latest socket opened. */
    opened: false,
    protocol: null,
    /**
     * The close the panel shows: the browser's own close event of the latest
     * socket that opened (a refused retry while reconnecting does not hide
     * it), or of the latest socket when none opened.
     */
    closeCode: null,
    closeReason: null,
    wasClean: null,
    closedAfterMs: null,
    /** Every socket's close, in order: {opened, code, reason, wasClean, notice, atMs}. */
    closes: [],
    /** The library's state changes: {state, why, code, delayMs, attempt, line, atMs}. */
    history: [],
    /** The state in words, as shown under the pill. */
    stateLine: "not connected",
    /** Times the conversation opened again after its connection was lost. */
    reconnects: 0,
    /** Each relay.session.resumed: {items, skipped, afterMs (since the connection was lost)}. */
    resumes: [],
    lastRttMs: null,
    /**
     * Every message received, with `at` (ms since Connect); JSON events as
     * the library parsed them (`text` is their JSON), audio deltas keep
     * `text: ""` and their decoded `bytes`.
     */
    received: [],
    sent: 0,
    /** Concatenated response.output_text.delta. */
    outputText: "",
    /** The relay's last in-band close notice: {code, closeCode, message}. */
    relayClose: null,
    /** Session-policy refusals: {message, param, eventId}. */
    refusals: [],
    banner: null,
    usage: null,
    /** Conversation turns as shown: {itemId, text, kind: "audio" | "text"}. */
    transcripts: { user: [], assistant: [] },
    voice: freshVoice(),
  };
}

/** What the page knows; read by tests through `window.relayDemo`. */
export const demo = {
  config: null,
  state: "idle",
  /** The conversation's id, sent as ?session= on every connection. */
  session: null,
  user: null,
  expiresAt: null,
  ...freshConnection(),
};
globalThis.relayDemo = demo;

/**
 * What one Connect shares between modules and the tests do not read
 * (an ES module's importers cannot assign its `let`s, so they live here).
 */
export const page = {
  /** Which Connect the callbacks belong to: a newer one makes older ones' callbacks no-ops. */
  run: 0,
  /** performance.now() at Connect: the clock of the log, `received[].at` and `closes[].atMs`. */
  connectStartedAt: 0,
  /** When the message awaiting an answer went out (the round trip), or null. */
  pendingSince: null,
  /** The signed-in user's access token, for /api/usage. */
  accessToken: null,
  /** The OpenAI route (voice, usage), not the echo route. */
  voiceRoute: false,
  /** A transcription session (`?intent=transcription`): turns get transcripts, no answers. */
  transcription: false,
  /** The close notice the current socket got, if any. */
  socketNotice: null,
};

/** Milliseconds since Connect. */
export function sinceConnect() {
  return Math.round(performance.now() - page.connectStartedAt);
}

/** Milliseconds since Connect to a tenth, as `received[].at` holds them. */
export function receivedAt() {
  return Math.round((performance.now() - page.connectStartedAt) * 10) / 10;
}
