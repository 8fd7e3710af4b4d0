/**
 * Real-browser voice suite: Debian's Chromium, with a fake microphone that
 * plays a WAV this suite writes, loads the dev stack's demo page and talks
 * push-to-talk through the unchanged relay to the OpenAI stand-in. It checks
 * the audio path end to end: what the page captured and sent arrives at the
 * stand-in byte for byte, the answer is scheduled in full, both transcripts
 * show, speaking over an answer truncates it where it was heard, and a close
 * the relay starts reaches the page through its in-band notice.
 * Run by voice_browser_test.ts in a child `deno test -A` (see browser_test.ts
 * for why playwright-core gets a process of its own).
 * `RELAY_DEMO_SCREENSHOT=<path>` also saves a screenshot mid-conversation.
 * @module
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { analysePcm16, toneWav } from "../helpers/pcm.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { readDemo, waitForDemo } from "./demo_page.ts";

/** The fake microphone's clip; Chromium loops it. */
const CLIP_MS = 1500;
/** Its tone: the test finds this frequency again in what reached the stand-in. */
const TONE_HZ = 440;
/** The page's chunk length (demo.js CHUNK_MS). */
const CHUNK_MS = 20;
/** PCM16 at 24 kHz: bytes per millisecond. */
const BYTES_PER_MS = 48;
/** What the stand-in transcribes the user's turns as, in order. */
const SAID = [
  "Hello relay, can you hear me?",
  "Tell me a long story about WebSockets.",
  "Sorry, shorter please.",
];

/** The page's voice state (`window.relayDemo.voice` in demo.js). */
interface VoiceState {
  micOn: boolean;
  micError: string | null;
  contextRate: number | null;
  appendsSent: number;
  bytesSent: number;
  turns: {
    bytes: number;
    ms: number;
    heldMs: number;
    appends: number;
    committed: boolean;
    sha256: string | null;
  }[];
  latencies: number[];
  playback: {
    itemId: string;
    responseId: string | null;
    scheduledMs: number;
    chunks: number;
    gaps: number;
    playedMs: number | null;
    truncatedAtMs: number | null;
    firstAudioAt: number;
    leadMs: number;
    gapMs: number;
    minMarginMs: number | null;
  }[];
  truncates: {
    item_id: string;
    audio_end_ms: number;
    scheduledMs: number;
    sinceFirstAudioMs: number;
    audioClockLagMs: number;
  }[];
  cancels: number;
  outputBufferClear: string;
}

/** The page's mirror of its own state. */
interface DemoState {
  state: string;
  stateLine: string;
  closes: { opened: boolean; code: number; notice: { closeCode: number } | null }[];
  opened: boolean;
  closeCode: number | null;
  relayClose: { code: string; closeCode: number; message: string } | null;
  received: { type: string; text: string; bytes?: number; at: number }[];
  transcripts: {
    user: { itemId: string | null; text: string; kind: string }[];
    assistant: { itemId: string | null; text: string; kind: string }[];
  };
  usage: { metering: string } | null;
  banner: { kind: string; text: string } | null;
  refusals: { message: string; param: string | null; eventId: string | null }[];
  voice: VoiceState & { vad: boolean; serverInterrupts: boolean };
}

function demoState(page: Page): Promise<DemoState> {
  return readDemo<DemoState>(page);
}

function waitFor(page: Page, condition: string, timeout = 10_000): Promise<DemoState> {
  return waitForDemo<DemoState>(page, condition, timeout);
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  // A copy: its buffer is a plain ArrayBuffer, which digest() wants.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function decodeBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function concat(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The client events the stand-in received on its latest connection, parsed. */
function standInEvents(stack: DevStack): Record<string, unknown>[] {
  const record = stack.openai!.connections.at(-1);
  assert.ok(record, "the stand-in saw a connection");
  return record.received
    .filter((m) => m.type === "text")
    .map((m) => JSON.parse(m.data as string) as Record<string, unknown>);
}

/** The audio of the `turn`-th push-to-talk turn (0-based) as the stand-in received it. */
function turnAudio(events: Record<string, unknown>[], turn: number): Uint8Array {
  const turns: Uint8Array[][] = [];
  let current: Uint8Array[] | null = null;
  for (const e of events) {
    if (e.type === "input_audio_buffer.clear") current = [];
    else if (e.type === "input_audio_buffer.append" && current) {
      current.push(decodeBase64(e.audio as string));
    } else if (e.type === "input_audio_buffer.commit" && current) {
      turns.push(current);
      current = null;
    }
  }
  assert.ok(turns[turn], `the stand-in received turn ${turn + 1}`);
  return concat(turns[turn]!);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts Chromium with a fake microphone playing `wavPath` (looped). */
function launch(wavPath: string): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      ...CHROMIUM_ARGS,
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${wavPath}`,
    ],
  });
}

/** Opens the demo page (with `query`), connects to the OpenAI route, waits for the microphone. */
async function openDemo(browser: Browser, stack: DevStack, query = ""): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(`${stack.demoUrl}${query}`);
  await page.waitForSelector("body[data-ready=true]");
  await page.selectOption("#route", "/relay");
  await page.selectOption("#token-mode", "protocol");
  await page.click("#connect");
  await waitFor(
    page,
    "d.state === 'open' && d.voice.micOn && d.received.some((m) => m.type === 'session.updated')",
  );
  // The space bar must reach the document, not a focused button.
  await page.evaluate("document.activeElement?.blur()");
  return page;
}

/** Prints a measured value in a form voice_browser_test.ts passes on. */
function measured(what: string): void {
  console.log(`measured: ${what}`);
}

Deno.test({
  name: "voice demo in Chromium: push-to-talk audio through the relay, playback and barge-in",
  fn: async (t) => {
    const wavPath = await Deno.makeTempFile({ prefix: "relay-voice-", suffix: ".wav" });
    await Deno.writeFile(wavPath, toneWav(48_000, CLIP_MS, TONE_HZ));
    const stack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
      telemetry: () => {},
    });
    let browser: Browser | undefined;
    try {
      stack.openai!.transcripts.push(...SAID);
      browser = await launch(wavPath);
      const page = await openDemo(browser, stack);
      let state: DemoState;

      await t.step("the session asks for PCM16, input transcription and push-to-talk", () => {
        const update = standInEvents(stack).find((e) => e.type === "session.update");
        const audio = (update?.session as { audio: Record<string, Record<string, unknown>> })
          .audio;
        assert.deepEqual(audio.input!.format, { type: "audio/pcm", rate: 24_000 });
        assert.deepEqual(audio.output!.format, { type: "audio/pcm", rate: 24_000 });
        assert.equal(audio.input!.turn_detection, null, "the page decides turns");
        assert.equal(typeof (audio.input!.transcription as { model?: unknown }).model, "string");
      });

      await t.step("push-to-talk: the stand-in gets the page's PCM16 byte for byte", async () => {
        await page.keyboard.down("Space");
        await sleep(CLIP_MS);
        await page.keyboard.up("Space");
        state = await waitFor(
          page,
          "d.voice.turns.length === 1 && d.voice.turns[0].sha256 !== null && " +
            "d.received.some((m) => m.type === 'response.done')",
        );
        const turn = state.voice.turns[0]!;
        const events = standInEvents(stack);
        const received = turnAudio(events, 0);
        assert.equal(received.byteLength, turn.bytes, "as many bytes as the page sent");
        assert.equal(await sha256Hex(received), turn.sha256, "the same bytes");
        assert.equal(turn.committed, true);
        // 20 ms chunks, the last one cut where the key came up.
        const appends = events.filter((e) => e.type === "input_audio_buffer.append")
          .map((e) => decodeBase64(e.audio as string).byteLength);
        assert.equal(appends.length, turn.appends);
        assert.ok(
          appends.slice(0, -1).every((n) => n === CHUNK_MS * BYTES_PER_MS),
          `append sizes ${appends}`,
        );
        assert.ok(appends.at(-1)! <= CHUNK_MS * BYTES_PER_MS, `last append ${appends.at(-1)}`);
        const sentMs = received.byteLength / BYTES_PER_MS;
        measured(
          `push-to-talk held ${turn.heldMs} ms (driver asked ${CLIP_MS}), sent ${sentMs} ms ` +
            `in ${turn.appends} appends, AudioContext at ${state.voice.contextRate} Hz`,
        );
        assert.ok(
          Math.abs(sentMs - turn.heldMs) <= CHUNK_MS,
          `sent ${sentMs} ms of audio for a ${turn.heldMs} ms hold`,
        );
        assert.ok(Math.abs(turn.heldMs - CLIP_MS) < 250, `the key was held ${turn.heldMs} ms`);
        const { hz, rms } = analysePcm16(received);
        measured(`the stand-in heard ${hz} Hz at rms ${rms.toFixed(3)} (clip: ${TONE_HZ} Hz)`);
        assert.ok(Math.abs(hz - TONE_HZ) <= TONE_HZ * 0.02, `the tone came out at ${hz} Hz`);
        assert.ok(rms > 0.02, `the microphone was heard (rms ${rms})`);
      });

      await t.step(
        "the answer is scheduled in full and gapless; both transcripts show",
        async () => {
          state = await waitFor(
            page,
            "d.transcripts.user[0]?.text && d.voice.playback[0]?.playedMs === null && " +
              "d.received.filter((m) => m.type === 'response.done').length === 1",
          );
          const turn = state.voice.turns[0]!;
          const answer = state.voice.playback[0]!;
          const deltas = state.received.filter((m) => m.type === "response.output_audio.delta");
          const answerBytes = deltas.reduce((n, m) => n + m.bytes!, 0);
          // The stand-in plays the user's audio back: the answer is as long as the turn.
          assert.equal(answerBytes, turn.bytes, "the whole answer arrived through the relay");
          assert.equal(answer.scheduledMs, answerBytes / BYTES_PER_MS, "all of it was scheduled");
          assert.equal(answer.chunks, deltas.length);
          assert.equal(answer.gaps, 0, "back to back on the AudioContext clock");
          measured(
            `answer 1: ${answer.scheduledMs} ms in ${answer.chunks} deltas, no gap; ` +
              `each delta came at least ${answer.minMarginMs} ms before it had to play`,
          );
          await waitFor(
            page,
            `d.voice.playback[0].scheduledMs && !document.querySelector(
          "#voice-status").textContent.startsWith("speaking")`,
            CLIP_MS + 3000,
          );
          assert.match(await page.textContent("#voice-played") ?? "", /all played/);

          assert.deepEqual(state.transcripts.user.map((u) => u.text), [SAID[0]]);
          const heard = await page.textContent("#conversation .turn.user .text");
          assert.equal(heard, SAID[0], "the user's transcript shows");
          const said = state.received
            .filter((m) => m.type === "response.output_audio_transcript.delta")
            .map((m) => JSON.parse(m.text).delta as string).join("");
          assert.ok(said.length > 0, "the answer came with a transcript");
          assert.equal(state.transcripts.assistant[0]?.text, said);
          const shown = await page.textContent("#conversation .turn.assistant .text");
          assert.equal(shown, said, "the assistant's transcript shows");

          const latency = state.voice.latencies[0]!;
          measured(`round trip through the relay: commit to first audio delta ${latency} ms`);
          assert.ok(latency >= 0 && latency < 2000, `latency ${latency}`);
          assert.match(await page.textContent("#voice-latency") ?? "", /^\d+ ms/);
        },
      );

      await t.step(
        "speaking over an answer cancels it and truncates it where it was heard",
        async () => {
          // From here answers stream as fast as they play (OpenAI's come at least that fast),
          // so this one is still streaming when it is cut short.
          stack.openai!.pace = "realtime";
          await page.keyboard.down("Space");
          await sleep(CLIP_MS);
          await page.keyboard.up("Space");
          await waitFor(page, "d.voice.playback.length === 2");
          // Let about half of the answer play, then press the button (the pointer this time).
          await sleep(CLIP_MS / 2);
          const talk = (await page.locator("#talk").boundingBox())!;
          await page.mouse.move(talk.x + talk.width / 2, talk.y + talk.height / 2);
          await page.mouse.down();
          state = await waitFor(page, "d.voice.truncates.length === 1");
          const truncate = state.voice.truncates[0]!;
          const answer = state.voice.playback[1]!;
          assert.equal(truncate.item_id, answer.itemId);
          // What was heard: the time since its first audio arrived, less the lead it started
          // with, any silence inserted because audio came late, and however far the audio
          // clock fell behind the wall clock (a starved audio thread plays late).
          const lag = truncate.audioClockLagMs;
          const wall = truncate.sinceFirstAudioMs - answer.leadMs - answer.gapMs;
          measured(
            `barge-in after ${truncate.sinceFirstAudioMs} ms: truncate at ${truncate.audio_end_ms} ` +
              `ms of ${truncate.scheduledMs} ms scheduled (wall clock says ${wall}; audio clock ` +
              `${lag} ms behind; ${answer.gaps} late deltas)`,
          );
          // (Capped at what was scheduled: an answer that already ended is heard in full.)
          const heard = Math.min(wall - lag, truncate.scheduledMs);
          assert.ok(
            Math.abs(truncate.audio_end_ms - heard) <= 25,
            `audio_end_ms ${truncate.audio_end_ms}, expected about ${heard}`,
          );
          assert.ok(lag >= -25 && lag <= 250, `the audio clock ran ${lag} ms behind`);
          assert.ok(
            truncate.audio_end_ms > 0 && truncate.audio_end_ms < state.voice.turns[1]!.ms,
            `audio_end_ms ${truncate.audio_end_ms} within the ${
              state.voice.turns[1]!.ms
            } ms answer`,
          );
          assert.ok(truncate.audio_end_ms <= truncate.scheduledMs, "never past what was scheduled");
          assert.equal(state.voice.cancels, 1, "the answer was still streaming: cancelled");

          // What crossed the relay to OpenAI, in order, and what came back.
          await waitFor(
            page,
            "d.received.some((m) => m.type === 'conversation.item.truncated') && " +
              "d.received.filter((m) => m.type === 'response.done').length === 2",
          );
          const events = standInEvents(stack);
          const cancel = events.findIndex((e) => e.type === "response.cancel");
          const cut = events.findIndex((e) => e.type === "conversation.item.truncate");
          assert.ok(cancel >= 0 && cut > cancel, "response.cancel, then the truncate");
          assert.deepEqual(events[cut], {
            type: "conversation.item.truncate",
            item_id: answer.itemId,
            content_index: 0,
            audio_end_ms: truncate.audio_end_ms,
          });
          assert.equal(
            events.filter((e) => e.type === "output_audio_buffer.clear").length,
            0,
            "output_audio_buffer.clear is for WebRTC/SIP; over WebSocket stopping playback is the clear",
          );
          state = await demoState(page);
          const done = state.received.filter((m) => m.type === "response.done").at(-1)!;
          assert.equal(JSON.parse(done.text).response.status, "cancelled");
          assert.match(
            await page.textContent("#conversation .turn.assistant.cut .meta") ?? "",
            /interrupted · heard \d\.\d\d s/,
          );
          assert.equal(
            state.voice.playback[1]!.scheduledMs,
            answer.scheduledMs,
            "nothing of the cancelled answer was scheduled after the barge-in",
          );
        },
      );

      await t.step("the interrupting turn is a turn of its own", async () => {
        await sleep(800);
        await page.mouse.up();
        state = await waitFor(page, "d.voice.turns.length === 3 && d.voice.playback.length === 3");
        assert.equal(state.voice.turns[2]!.committed, true);
        const received = turnAudio(standInEvents(stack), 2);
        assert.equal(await sha256Hex(received), state.voice.turns[2]!.sha256);
        // Mid-conversation: the third answer is playing.
        await sleep(500);
        const screenshot = Deno.env.get("RELAY_DEMO_SCREENSHOT");
        if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
      });

      await t.step("a close the relay starts reaches the page as its notice's code", async () => {
        await stack.relay.shutdown();
        // 1012 is one the client library reconnects on (the draining relay sends it 1012 again).
        state = await waitFor(page, "d.closes.length >= 1 && d.state === 'reconnecting'");
        assert.deepEqual(
          [state.relayClose?.closeCode, state.relayClose?.code],
          [1012, "server_restarting"],
        );
        // Deno 2.1.4 (the edge runtime's) makes Chromium report 1006: the notice says 1012.
        measured(`the browser reported ${state.closeCode}; the page shows the notice's 1012`);
        assert.match(await page.textContent("#close-code") ?? "", /^1012\b/);
        assert.equal(await page.textContent("#close-reason"), "server_restarting");
        assert.match(await page.textContent("#banner") ?? "", /restarting.*1012/);
        assert.match(state.stateLine, /^reconnecting in \d\.\d s \(1012 server_restarting\)/);
        assert.equal(state.voice.micOn, false, "the microphone is released");
      });
    } finally {
      await browser?.close();
      await stack.close(2000);
      await Deno.remove(wavPath).catch(() => {});
    }
  },
});

Deno.test({
  name: "voice demo in Chromium: policy refusals and the usage panel, in words",
  fn: async (t) => {
    const wavPath = await Deno.makeTempFile({ prefix: "relay-voice-", suffix: ".wav" });
    await Deno.writeFile(wavPath, toneWav(48_000, CLIP_MS, TONE_HZ));
    const policy = { session: { type: "realtime", instructions: "Answer in one sentence." } };
    const stack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
      env: { RELAY_SESSION_POLICY: JSON.stringify(policy) },
      telemetry: () => {},
    });
    let browser: Browser | undefined;
    try {
      browser = await launch(wavPath);
      // The device's rate: the page's own resampler (the worklet) makes the 24 kHz.
      const page = await openDemo(browser, stack, "?audio=device");

      await t.step("without metering the usage panel says so", async () => {
        await waitFor(page, "d.usage !== null");
        assert.equal(await page.textContent("#usage-state"), "metering off");
      });

      await t.step(
        "the page's own flow passes the policy; its override button does not",
        async () => {
          // Configuring the session (audio formats, transcription, turns) sets nothing locked.
          assert.deepEqual((await demoState(page)).refusals, []);
          await page.click("#override-instructions");
          const state = await waitFor(page, "d.refusals.length === 1");
          assert.equal(state.refusals[0]?.param, "session.instructions");
          const banner = await page.textContent("#banner") ?? "";
          assert.match(banner, /policy refused/);
          assert.match(banner, /session\.instructions/);
          assert.equal(state.state, "open", "the session goes on");
          const updates = standInEvents(stack).filter((e) => e.type === "session.update");
          assert.ok(
            updates.every((e) =>
              (e.session as { instructions?: string }).instructions !== "Be brief."
            ),
            "the refused instructions never reached OpenAI",
          );
        },
      );

      await t.step("push-to-talk under the policy, resampled by the page's worklet", async () => {
        await page.keyboard.down("Space");
        await sleep(800);
        await page.keyboard.up("Space");
        const state = await waitFor(
          page,
          "d.voice.turns.length === 1 && d.voice.turns[0].sha256 !== null && " +
            "d.received.some((m) => m.type === 'response.done')",
        );
        assert.notEqual(state.voice.contextRate, 24_000, "the context runs at the device's rate");
        // Under a policy the relay may re-serialise what it checked: the audio is the same.
        const received = turnAudio(standInEvents(stack), 0);
        assert.equal(await sha256Hex(received), state.voice.turns[0]!.sha256);
        const turn = state.voice.turns[0]!;
        const sentMs = received.byteLength / BYTES_PER_MS;
        assert.ok(Math.abs(sentMs - turn.heldMs) <= CHUNK_MS, `${sentMs} ms for ${turn.heldMs}`);
        const { hz, rms } = analysePcm16(received);
        measured(
          `worklet resampling ${state.voice.contextRate} Hz to 24 kHz: ${hz} Hz at rms ` +
            rms.toFixed(3),
        );
        assert.ok(Math.abs(hz - TONE_HZ) <= TONE_HZ * 0.02, `the tone came out at ${hz} Hz`);
        assert.ok(rms > 0.02, `the microphone was heard (rms ${rms})`);
      });
    } finally {
      await browser?.close();
      await stack.close(2000);
      await Deno.remove(wavPath).catch(() => {});
    }
  },
});

Deno.test({
  name: "voice demo in Chromium: hands-free turns by server VAD, and barge-in by speaking",
  fn: async () => {
    // Speech, then silence long enough for the VAD to end the turn; looped by Chromium.
    const wavPath = await Deno.makeTempFile({ prefix: "relay-voice-vad-", suffix: ".wav" });
    await Deno.writeFile(wavPath, toneWav(48_000, 1000, TONE_HZ, 1500));
    const stack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0 },
      telemetry: () => {},
    });
    let browser: Browser | undefined;
    try {
      // The stand-in's energy VAD stands in for OpenAI's (its rules: realtime_events.ts).
      stack.openai!.vad = true;
      stack.openai!.pace = "realtime";
      stack.openai!.transcripts.push(...SAID);
      browser = await launch(wavPath);
      const page = await openDemo(browser, stack);
      await page.check("#vad");
      let state = await waitFor(page, "d.voice.serverInterrupts");
      assert.equal(await page.isDisabled("#talk"), true, "no push-to-talk while hands-free");
      const update = standInEvents(stack).filter((e) => e.type === "session.update").at(-1)!;
      assert.equal(
        (update.session as { audio: { input: { turn_detection: { type: string } } } }).audio
          .input.turn_detection.type,
        "server_vad",
      );

      // A VAD turn gets an answer; the next burst of speech interrupts one.
      state = await waitFor(page, "d.voice.truncates.length >= 1", 20_000);
      const types = state.received.map((m) => m.type);
      for (const type of ["speech_started", "speech_stopped", "committed"]) {
        assert.ok(types.includes(`input_audio_buffer.${type}`), `input_audio_buffer.${type}`);
      }
      const events = standInEvents(stack);
      assert.equal(events.filter((e) => e.type === "input_audio_buffer.commit").length, 0);
      assert.ok(state.voice.appendsSent > 0, "the microphone streams");
      assert.equal(state.voice.turns.length, 0, "no push-to-talk turn");
      assert.equal(state.transcripts.user[0]?.text, SAID[0]);
      const latency = state.voice.latencies[0]!;
      measured(`hands-free: speech_stopped to first audio delta ${latency} ms`);
      assert.ok(latency >= 0 && latency < 2000, `latency ${latency}`);

      const truncate = state.voice.truncates[0]!;
      const answer = state.voice.playback.find((p) => p.itemId === truncate.item_id)!;
      measured(
        `hands-free barge-in: truncate at ${truncate.audio_end_ms} of ` +
          `${truncate.scheduledMs} ms scheduled`,
      );
      const wall = truncate.sinceFirstAudioMs - answer.leadMs - answer.gapMs;
      // An answer that had just ended when speech began is heard in full.
      const heard = Math.min(wall - truncate.audioClockLagMs, truncate.scheduledMs);
      assert.ok(
        Math.abs(truncate.audio_end_ms - heard) <= 25,
        `audio_end_ms ${truncate.audio_end_ms}, expected about ${heard}`,
      );
      assert.ok(
        truncate.audio_end_ms > 0 && truncate.audio_end_ms <= truncate.scheduledMs,
        `audio_end_ms ${truncate.audio_end_ms} of ${truncate.scheduledMs} scheduled`,
      );
      await waitFor(page, "d.received.some((m) => m.type === 'conversation.item.truncated')");
      const cut = standInEvents(stack).find((e) => e.type === "conversation.item.truncate");
      assert.deepEqual(cut, {
        type: "conversation.item.truncate",
        item_id: truncate.item_id,
        content_index: 0,
        audio_end_ms: truncate.audio_end_ms,
      });
      // interrupt_response: OpenAI cancels the answer itself; a second cancel would be an error.
      assert.equal(events.filter((e) => e.type === "response.cancel").length, 0);
      state = await demoState(page);
      assert.ok(
        !state.received.some((m) => m.type === "error"),
        `no error came back: ${
          state.received.filter((m) => m.type === "error").map((m) => m.text)
        }`,
      );
    } finally {
      await browser?.close();
      await stack.close(2000);
      await Deno.remove(wavPath).catch(() => {});
    }
  },
});

Deno.test({
  name: "voice demo in Chromium: the usage panel, and a spent budget explained",
  fn: async (t) => {
    const wavPath = await Deno.makeTempFile({ prefix: "relay-voice-", suffix: ".wav" });
    await Deno.writeFile(wavPath, toneWav(48_000, CLIP_MS, TONE_HZ));
    const dataDir = await Deno.makeTempDir({ prefix: "relay-voice-db-" });
    // One spoken turn spends this (the stand-in prices audio by its duration, as OpenAI does).
    const stack = await startDevStack({
      ports: { relay: 0, demo: 0, auth: 0, openai: 0, db: 0 },
      env: { RELAY_METERING: "on", RELAY_BUDGET_USD: "0.001" },
      dataDir,
      fresh: true,
      telemetry: () => {},
    });
    let browser: Browser | undefined;
    try {
      browser = await launch(wavPath);
      const page = await openDemo(browser, stack);

      await t.step("on connect the panel shows the period's spend and limit", async () => {
        const state = await waitFor(page, "d.usage !== null");
        assert.equal(state.usage?.metering, "on");
        assert.equal(await page.textContent("#usage-state"), "metering on");
        assert.equal(await page.textContent("#usage-spent"), "$0.0000");
        assert.equal(await page.textContent("#usage-limit"), "$0.0010");
        assert.equal(await page.textContent("#usage-remaining"), "$0.0010");
      });

      await t.step("a turn that spends the budget: 4002 and why, in words", async () => {
        await page.keyboard.down("Space");
        await sleep(CLIP_MS);
        await page.keyboard.up("Space");
        const state = await waitFor(page, "d.state === 'closed'", 15_000);
        assert.deepEqual(
          [state.relayClose?.closeCode, state.relayClose?.code],
          [4002, "budget_exceeded"],
        );
        measured(`budget: the browser reported ${state.closeCode}; the page shows 4002`);
        assert.match(await page.textContent("#close-code") ?? "", /^4002\b/);
        assert.equal(await page.textContent("#close-reason"), "budget_exceeded");
        assert.match(await page.textContent("#banner") ?? "", /^Budget spent: .*4002/);
        // The relay writes the cost after relaying the answer; the panel reads it again shortly.
        const after = await waitFor(page, "d.usage?.spent_micros >= 1000", 5000);
        const usage = after.usage as unknown as { spent_micros: number; limit_micros: number };
        measured(`budget: ${usage.spent_micros} micros spent of ${usage.limit_micros}`);
        assert.equal(usage.limit_micros, 1000);
        assert.equal(await page.textContent("#usage-state"), "budget spent");
        assert.equal(await page.textContent("#usage-remaining"), "$0.0000");
        assert.match(await page.textContent("#usage-spent") ?? "", /^\$0\.\d{4}$/);
      });

      await t.step("connecting again is refused, and the page says it is the budget", async () => {
        await page.click("#connect");
        const state = await waitFor(page, "d.state === 'closed' && d.banner !== null");
        assert.equal(state.opened, false);
        assert.equal(state.closeCode, 1006, "a refused upgrade is all a browser sees");
        assert.match(await page.textContent("#banner") ?? "", /refused.*429 budget_exceeded/);
      });
    } finally {
      await browser?.close();
      await stack.close(2000);
      await Deno.remove(wavPath).catch(() => {});
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
