// Audio: one AudioContext for the microphone (through capture-worklet.js)
// and for playing answers (scheduled gaplessly, with a small adaptive jitter
// buffer). What is heard is recorded in `relayDemo.voice.playback`.
import { $, demo } from "./state.js";
import { AUDIO_RATE, CHUNK_SAMPLES } from "./audio_format.js";
import { updateTalkControls, voice } from "./voice.js";

/** The first chunk of an answer starts this far ahead, so the next chunk can land in time. */
const PLAYBACK_LEAD_S = 0.05;
/** After each underrun the lead doubles, up to this (a small adaptive jitter buffer). */
const MAX_PLAYBACK_LEAD_S = 0.2;

export const audio = (() => {
  let ctx = null;
  let moduleReady = null;
  let mic = null; // {stream, source, node}
  /** Bumped by every start and stop: a start still waiting for the device checks it. */
  let micTicket = 0;
  /** Playback items by item id: {record, chunks: [{start, dur}], cut}. */
  const items = new Map();
  const sources = new Set();
  let nextStart = 0;
  let leadS = PLAYBACK_LEAD_S;

  function playedMs(item, now) {
    let s = 0;
    for (const c of item.chunks) s += Math.min(Math.max(now - c.start, 0), c.dur);
    return s * 1000;
  }

  return {
    /** Creates (or wakes) the AudioContext; call it inside a user gesture. */
    ensureContext() {
      if (!ctx) {
        // ?audio=device: the device's rate, resampled in the worklet, as in
        // browsers that cannot feed a microphone into a 24 kHz context.
        const deviceRate = new URLSearchParams(location.search).get("audio") === "device";
        try {
          // At 24 kHz the browser resamples the microphone for us and plays
          // answers without resampling.
          ctx = new AudioContext(
            deviceRate
              ? { latencyHint: "interactive" }
              : { sampleRate: AUDIO_RATE, latencyHint: "interactive" },
          );
        } catch {
          ctx = new AudioContext({ latencyHint: "interactive" });
        }
      }
      if (ctx.state === "suspended") void ctx.resume();
      demo.voice.contextRate = ctx.sampleRate;
      return ctx;
    },

    /** Starts the microphone for the open session (once; a reconnect starts it again). */
    async startMic(fallback = false) {
      if (mic && !fallback) return;
      // A stop, or a newer start, while this one waits makes it let go of what it got.
      const ticket = fallback ? micTicket : ++micTicket;
      const stale = () => ticket !== micTicket || demo.state !== "open";
      const context = this.ensureContext();
      if (!navigator.mediaDevices?.getUserMedia) {
        throw new Error("this page needs a secure context (http://127.0.0.1 or https)");
      }
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
      const release = () => {
        for (const track of stream.getTracks()) track.stop();
      };
      if (stale()) return release();
      moduleReady ??= context.audioWorklet.addModule("/capture-worklet.js");
      await moduleReady;
      if (stale()) return release();
      let source;
      try {
        source = context.createMediaStreamSource(stream);
      } catch (error) {
        release();
        if (fallback) throw error;
        // Some browsers (Firefox) cannot feed a microphone into a context of
        // another rate: use the device's rate and let the worklet resample.
        void context.close();
        ctx = new AudioContext({ latencyHint: "interactive" });
        moduleReady = null;
        return await this.startMic(true);
      }
      const node = new AudioWorkletNode(context, "relay-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { targetRate: AUDIO_RATE, chunkSamples: CHUNK_SAMPLES },
      });
      node.port.onmessage = (event) => voice.chunk(event.data);
      source.connect(node);
      mic = { stream, source, node };
      demo.voice.micOn = true;
      demo.voice.contextRate = context.sampleRate;
      updateTalkControls();
    },

    stopMic() {
      micTicket++;
      if (!mic) return;
      mic.source.disconnect();
      mic.node.port.onmessage = null;
      mic.node.port.close();
      for (const track of mic.stream.getTracks()) track.stop();
      mic = null;
      demo.voice.micOn = false;
      demo.voice.level = 0;
      $("level").style.width = "0%";
      updateTalkControls();
    },

    /** Asks the worklet to cut its stream here (a `mark` chunk); false without a microphone. */
    markMic() {
      if (!mic) return false;
      mic.node.port.postMessage({ type: "mark" });
      return true;
    },

    /** Schedules 24 kHz PCM16 right after what is already scheduled (gapless). */
    play(itemId, responseId, bytes) {
      if (!ctx || bytes.length < 2) return null;
      let item = items.get(itemId);
      if (!item) {
        const record = {
          itemId,
          responseId,
          scheduledMs: 0,
          chunks: 0,
          gaps: 0,
          playedMs: null,
          truncatedAtMs: null,
          /** performance.now() when its first audio arrived, and how far ahead it was started. */
          firstAudioAt: performance.now(),
          leadMs: Math.round(leadS * 1000),
          /** Silence inserted because audio came late (the network, not the page). */
          gapMs: 0,
          /** The least time a later chunk arrived before it had to play (jitter headroom). */
          minMarginMs: null,
        };
        demo.voice.playback.push(record);
        item = { record, chunks: [], cut: false, firstCtxTime: ctx.currentTime };
        items.set(itemId, item);
      }
      if (item.cut) return null;
      const samples = Math.floor(bytes.length / 2);
      const view = new DataView(bytes.buffer, bytes.byteOffset, samples * 2);
      const buffer = ctx.createBuffer(1, samples, AUDIO_RATE);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples; i++) channel[i] = view.getInt16(i * 2, true) / 0x8000;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      const now = ctx.currentTime;
      let start = nextStart;
      if (item.chunks.length > 0) {
        const margin = Math.round((start - now) * 1000);
        item.record.minMarginMs = Math.min(item.record.minMarginMs ?? margin, margin);
      }
      if (start < now) {
        // Nothing queued (a new answer, or the network fell behind): lead a little.
        const late = item.chunks.length > 0;
        if (late) leadS = Math.min(leadS * 2, MAX_PLAYBACK_LEAD_S);
        const from = start;
        start = now + leadS;
        if (late) {
          item.record.gaps++;
          item.record.gapMs += Math.round((start - from) * 1000);
        }
      }
      source.start(start);
      nextStart = start + buffer.duration;
      sources.add(source);
      source.onended = () => sources.delete(source);
      item.chunks.push({ start, dur: buffer.duration });
      item.record.chunks++;
      item.record.scheduledMs += (samples * 1000) / AUDIO_RATE;
      return item.record;
    },

    /** The assistant item whose audio is audible now or still queued, or null. */
    playing() {
      if (!ctx) return null;
      for (const item of items.values()) {
        const last = item.chunks.at(-1);
        if (!item.cut && last && last.start + last.dur > ctx.currentTime) return item.record;
      }
      return null;
    },

    /** Milliseconds of an item the speaker has played so far. */
    playedMs(itemId) {
      const item = items.get(itemId);
      return item && ctx ? playedMs(item, ctx.currentTime) : 0;
    },

    /**
     * How far the audio clock has fallen behind the wall clock since an
     * item's first audio arrived (ms): a starved audio thread renders late,
     * and what it has not rendered nobody has heard.
     */
    clockLagMs(itemId) {
      const item = items.get(itemId);
      if (!item || !ctx) return 0;
      const wall = performance.now() - item.record.firstAudioAt;
      return Math.round(wall - (ctx.currentTime - item.firstCtxTime) * 1000);
    },

    /** Stops every scheduled source; returns ms played of each item that was cut. */
    stopPlayback() {
      const now = ctx?.currentTime ?? 0;
      for (const source of sources) {
        try {
          source.stop();
        } catch { /* not started yet */ }
      }
      sources.clear();
      nextStart = 0;
      for (const item of items.values()) {
        if (item.record.playedMs === null) item.record.playedMs = playedMs(item, now);
        item.cut = true;
      }
    },

    /** Refuses further audio for an item (its response was cancelled). */
    cut(itemId) {
      const item = items.get(itemId);
      if (item) item.cut = true;
    },

    reset() {
      this.stopPlayback();
      items.clear();
      leadS = PLAYBACK_LEAD_S;
    },
  };
})();
