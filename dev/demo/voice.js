// The Talk panel (#voice): push-to-talk (the button or the space bar),
// server VAD, barge-in, and the session configuration they need. Audio goes
// in and out through audio.js; what happened is in `relayDemo.voice`.
import { $, demo, page } from "./state.js";
import { AUDIO_RATE, MIN_COMMIT_BYTES, TRANSCRIPTION_MODEL } from "./audio_format.js";
import { bytesToBase64, concat, sha256Hex } from "./bytes.js";
import { log } from "./log.js";
import { send } from "./connection.js";
import { conversation } from "./conversation.js";
import { audio } from "./audio.js";

export const voice = (() => {
  /**
   * The push-to-talk turn in progress: {startedAt, pieces, appends, heldMs,
   * marks (worklet marks still to come), started (the press's mark came),
   * ending (released)}.
   */
  let turn = null;
  /** The response OpenAI is generating, if any. */
  let activeResponse = null;
  const cancelled = new Set();
  /** When the user's speech ended (commit or speech_stopped), for the latency. */
  let awaitingAudioSince = null;

  /** Set by VAD's speech_started until speech_stopped. */
  let hearing = false;

  function showSent() {
    const v = demo.voice;
    $("voice-sent").textContent = `${
      (v.bytesSent / 2 / AUDIO_RATE).toFixed(2)
    } s · ${v.appendsSent} chunks`;
  }

  function sendAudio(bytes) {
    const sent = send({ type: "input_audio_buffer.append", audio: bytesToBase64(bytes) });
    if (!sent) return false;
    demo.voice.appendsSent++;
    demo.voice.bytesSent += bytes.length;
    showSent();
    return true;
  }

  async function finishTurn() {
    const t = turn;
    turn = null;
    $("talk").classList.remove("held");
    const bytes = concat(t.pieces);
    const record = {
      bytes: bytes.length,
      ms: (bytes.length / 2 / AUDIO_RATE) * 1000,
      heldMs: Math.round(t.heldMs),
      appends: t.appends,
      committed: false,
      sha256: null,
    };
    demo.voice.turns.push(record);
    if (bytes.length < MIN_COMMIT_BYTES) {
      send({ type: "input_audio_buffer.clear" });
      log("sys", "turn too short", "hold the button a little longer (OpenAI needs 100 ms)", true);
    } else if (send({ type: "input_audio_buffer.commit" })) {
      record.committed = true;
      awaitingAudioSince = performance.now();
      /** On the clock of `received[].at` (ms since Connect). */
      record.committedAt = Math.round((awaitingAudioSince - page.connectStartedAt) * 10) / 10;
      conversation.userAudio(record.ms);
      // A transcription session only transcribes: there is no answer to ask for.
      if (!page.transcription) send({ type: "response.create" });
    }
    record.sha256 = await sha256Hex(bytes);
  }

  return {
    /** A chunk from the capture worklet: {pcm: ArrayBuffer, rms, mark}. */
    chunk({ pcm, rms, mark }) {
      const bytes = new Uint8Array(pcm);
      if (bytes.length > 0) {
        demo.voice.level = rms;
        const db = rms > 0 ? 20 * Math.log10(rms) : -100;
        const width = Math.round(Math.min(Math.max((db + 60) / 60, 0), 1) * 100);
        $("level").style.width = `${width}%`;
      }
      if (turn) {
        if (mark) turn.marks--;
        // Before the press's mark: audio from before the button went down.
        if (!turn.started) {
          turn.started = mark;
          return;
        }
        if (bytes.length > 0 && sendAudio(bytes)) {
          turn.pieces.push(bytes);
          turn.appends++;
        }
        if (mark && turn.ending && turn.marks === 0) void finishTurn();
      } else if (demo.voice.vad && bytes.length > 0) {
        sendAudio(bytes);
      }
    },

    /** Push-to-talk pressed. */
    press() {
      if (turn || !canTalk()) return;
      audio.ensureContext();
      this.bargeIn();
      turn = {
        startedAt: performance.now(),
        pieces: [],
        appends: 0,
        heldMs: 0,
        marks: 1,
        started: false,
        ending: false,
      };
      // Anything left in OpenAI's buffer is not part of this turn.
      send({ type: "input_audio_buffer.clear" });
      if (!audio.markMic()) turn.started = true;
      $("talk").classList.add("held");
    },

    /** Push-to-talk released: cut the worklet's stream, then commit and ask for an answer. */
    release() {
      if (!turn || turn.ending) return;
      turn.ending = true;
      turn.heldMs = performance.now() - turn.startedAt;
      if (audio.markMic()) turn.marks++;
      else void finishTurn();
    },

    /**
     * The user speaks over the assistant: stop playback, cancel the response
     * if it is still coming, and truncate the item to what was heard, so the
     * model's context holds no words the user never heard.
     */
    bargeIn({ serverCancelled = false } = {}) {
      const responseId = activeResponse;
      // Playing now, or (the network behind the model) an answer with nothing audible yet.
      const item = audio.playing() ??
        (responseId
          ? demo.voice.playback.findLast((p) => p.responseId === responseId && p.playedMs === null)
          : null);
      if (!item && !responseId) return;
      const heard = item ? Math.floor(audio.playedMs(item.itemId)) : 0;
      audio.stopPlayback();
      if (responseId && !cancelled.has(responseId)) {
        cancelled.add(responseId);
        // A cancel the server already made would only come back as an error.
        if (!serverCancelled && send({ type: "response.cancel", response_id: responseId })) {
          demo.voice.cancels++;
        }
      }
      if (item) {
        item.playedMs = heard;
        item.truncatedAtMs = heard;
        const truncate = {
          type: "conversation.item.truncate",
          item_id: item.itemId,
          content_index: 0,
          audio_end_ms: heard,
        };
        if (send(truncate)) {
          demo.voice.truncates.push({
            item_id: item.itemId,
            audio_end_ms: heard,
            scheduledMs: item.scheduledMs,
            sinceFirstAudioMs: Math.round(performance.now() - item.firstAudioAt),
            audioClockLagMs: audio.clockLagMs(item.itemId),
          });
          $("voice-truncated").textContent = `at ${heard} of ${Math.round(item.scheduledMs)} ms`;
        }
      }
    },

    audioDelta(event, bytes) {
      if (cancelled.has(event.response_id)) return;
      const record = audio.play(event.item_id, event.response_id ?? null, bytes);
      if (!record) return;
      if (awaitingAudioSince !== null) {
        const ms = Math.round(performance.now() - awaitingAudioSince);
        awaitingAudioSince = null;
        demo.voice.latencies.push(ms);
        $("voice-latency").textContent = `${ms} ms (speech end → first audio)`;
      }
      const s = (record.scheduledMs / 1000).toFixed(2);
      if (!record.truncatedAtMs) conversation.assistantAudio(event.item_id, `audio · ${s} s`);
    },

    responseCreated(id) {
      activeResponse = id;
    },

    responseDone(id) {
      if (id === activeResponse) activeResponse = null;
    },

    speechStarted() {
      this.bargeIn({ serverCancelled: demo.voice.serverInterrupts });
      hearing = true;
    },

    speechStopped() {
      awaitingAudioSince = performance.now();
      hearing = false;
    },

    /** What the voice side is doing, for the status pill: [text, pill class]. */
    status() {
      const v = demo.voice;
      if (!v.micOn) return ["mic off", ""];
      if (turn || hearing) return ["listening…", "open"];
      const playing = audio.playing();
      const last = playing ?? v.playback.at(-1);
      if (last) {
        const heard = last.playedMs ?? audio.playedMs(last.itemId);
        const of = `${(heard / 1000).toFixed(2)} of ${(last.scheduledMs / 1000).toFixed(2)} s`;
        $("voice-played").textContent = playing
          ? `${of} played`
          : last.truncatedAtMs !== null
          ? `${of} (interrupted)`
          : `${(last.scheduledMs / 1000).toFixed(2)} s, all played`;
      }
      if (playing) return ["speaking…", "open"];
      if (activeResponse || awaitingAudioSince !== null) return ["thinking…", "connecting"];
      return v.vad ? ["listening (VAD)", "idle"] : ["ready", "idle"];
    },

    /** The connection ended: forget the turn and the response. */
    end() {
      hearing = false;
      turn = null;
      activeResponse = null;
      awaitingAudioSince = null;
      cancelled.clear();
      $("talk").classList.remove("held");
      audio.reset();
    },
  };
})();

function canTalk() {
  return demo.state === "open" && page.voiceRoute && demo.voice.micOn && !demo.voice.vad;
}

export function updateTalkControls() {
  const v = demo.voice;
  $("talk").disabled = !canTalk();
  $("vad").disabled = !(demo.state === "open" && page.voiceRoute);
  const hint = $("voice-hint");
  if (page.voiceRoute && demo.state === "reconnecting") {
    hint.textContent = "reconnecting: the microphone waits for the session";
  } else if (!page.voiceRoute || demo.state !== "open") {
    hint.textContent = "connect to the OpenAI route";
  } else if (v.micError) {
    hint.textContent = `no microphone: ${v.micError}`;
  } else if (!v.micOn) {
    hint.textContent = "waiting for the microphone…";
  } else if (v.vad) {
    hint.textContent = demo.config?.upstream === "openai"
      ? "hands-free: just speak"
      : "hands-free needs real OpenAI (the stand-in has no VAD)";
  } else {
    const path = v.contextRate === AUDIO_RATE
      ? "the browser resamples the mic"
      : `the worklet resamples ${v.contextRate} Hz`;
    hint.textContent = `hold the button or the space bar · ${path} to 24 kHz PCM16`;
  }
  showVoiceStatus();
}

/** Keeps the status pill and the playing time current (10 times a second). */
export function showVoiceStatus() {
  const [text, kind] = voice.status();
  const pill = $("voice-status");
  if (pill.textContent !== text) pill.textContent = text;
  pill.className = `pill ${kind}`;
}

function setVad(on) {
  demo.voice.vad = on;
  if (demo.state === "open" && page.voiceRoute) {
    configureSession();
    if (!on) send({ type: "input_audio_buffer.clear" });
  }
  updateTalkControls();
}

/**
 * Asks for PCM16 both ways, input transcription, and push-to-talk or server
 * VAD; a transcription session (`?intent=transcription`) takes its own shape,
 * input only.
 */
export function configureSession() {
  if (page.transcription) {
    send({
      type: "session.update",
      session: {
        type: "transcription",
        audio: {
          input: {
            format: { type: "audio/pcm", rate: AUDIO_RATE },
            transcription: { model: TRANSCRIPTION_MODEL },
            turn_detection: demo.voice.vad ? { type: "server_vad" } : null,
          },
        },
      },
    });
    return;
  }
  send({
    type: "session.update",
    session: {
      type: "realtime",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: AUDIO_RATE },
          transcription: { model: TRANSCRIPTION_MODEL },
          // null: the page decides turns (push-to-talk); OpenAI's default is server VAD.
          turn_detection: demo.voice.vad ? { type: "server_vad" } : null,
        },
        output: { format: { type: "audio/pcm", rate: AUDIO_RATE } },
      },
    },
  });
}

/**
 * Wires the hands-free switch, and push-to-talk from the button (pointer) and
 * from the space bar outside text fields.
 */
export function bindTalk() {
  $("vad").addEventListener("change", (event) => setVad(event.target.checked));
  const button = $("talk");
  button.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    button.setPointerCapture(event.pointerId);
    voice.press();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    button.addEventListener(type, () => voice.release());
  }
  const typing = (target) =>
    target instanceof HTMLElement && target.matches("input, textarea, select");
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target) || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    if (!event.repeat) voice.press();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    voice.release();
  });
  globalThis.addEventListener("blur", () => voice.release());
}
