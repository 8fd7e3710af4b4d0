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
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";

/** The fake microphone's clip; Chromium loops it. */
const CLIP_MS = 1500;
/** Its tone: the test finds this frequency again in what reached the stand-in. */
const TONE_HZ = 440;
/** The page's chunk length (demo.js CHUNK_MS). */
const CHUNK_MS = 20;
/** PCM16 at 24 kHz: bytes per millisecond. */
const BYTES_PER_MS = 48;

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
  }[];
  truncates: {
    item_id: string;
    audio_end_ms: number;
    scheduledMs: number;
    sinceFirstAudioMs: number;
  }[];
  cancels: number;
}

/** The page's mirror of its own state. */
interface DemoState {
  state: string;
  opened: boolean;
  closeCode: number | null;
  relayClose: { code: string; closeCode: number; message: string } | null;
  received: { type: string; text: string; bytes?: number; at: number }[];
  transcripts: {
    user: { itemId: string | null; text: string; kind: string }[];
    assistant: { itemId: string | null; text: string; kind: string }[];
  };
  usage: { metering: string } | null;
  refusals: { message: string; param: string | null; eventId: string | null }[];
  voice: VoiceState;
}

function demoState(page: Page): Promise<DemoState> {
  return page.evaluate(() => (globalThis as unknown as { relayDemo: DemoState }).relayDemo);
}

async function waitFor(page: Page, condition: string, timeout = 10_000): Promise<DemoState> {
  await page.waitForFunction(
    `(() => { const d = globalThis.relayDemo; return ${condition}; })()`,
    null,
    { timeout },
  );
  return await demoState(page);
}

/** A mono 16-bit WAV: `tone` Hz in syllable-like bursts, so noise suppression keeps it. */
export function toneWav(rate: number, ms: number, toneHz: number): Uint8Array {
  const n = Math.round((rate * ms) / 1000);
  const out = new Uint8Array(44 + n * 2);
  const v = new DataView(out.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i));
  };
  ascii(0, "RIFF");
  v.setUint32(4, 36 + n * 2, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  ascii(36, "data");
  v.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    // Four bursts a second, never quite silent (0.35..1).
    const envelope = 0.675 - 0.325 * Math.cos(2 * Math.PI * 4 * t);
    const x = 0.5 * envelope * Math.sin(2 * Math.PI * toneHz * t);
    v.setInt16(44 + i * 2, Math.round(x * 32767), true);
  }
  return out;
}

/**
 * The strongest frequency (Hz, 100-1000 in 1 Hz steps, by Goertzel) in 24 kHz
 * PCM16, and the signal's RMS (0..1): a wrong resampling ratio moves the tone.
 */
export function analysePcm16(bytes: Uint8Array): { hz: number; rms: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const x = Float64Array.from(
    { length: Math.floor(bytes.byteLength / 2) },
    (_, i) => v.getInt16(i * 2, true) / 32768,
  );
  let best = { hz: 0, power: 0 };
  for (let hz = 100; hz <= 1000; hz++) {
    const k = 2 * Math.cos((2 * Math.PI * hz) / 24_000);
    let s1 = 0;
    let s2 = 0;
    for (const sample of x) {
      const s0 = sample + k * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    const power = s1 * s1 + s2 * s2 - k * s1 * s2;
    if (power > best.power) best = { hz, power };
  }
  const rms = x.length ? Math.sqrt(x.reduce((sum, s) => sum + s * s, 0) / x.length) : 0;
  return { hz: best.hz, rms };
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

/** Opens the demo page, connects to the OpenAI route, waits for the microphone. */
async function openDemo(browser: Browser, stack: DevStack): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(stack.demoUrl);
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
        assert.ok(appends.slice(0, -1).every((n) => n === CHUNK_MS * BYTES_PER_MS));
        assert.ok(appends.at(-1)! <= CHUNK_MS * BYTES_PER_MS);
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

      const screenshot = Deno.env.get("RELAY_DEMO_SCREENSHOT");
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

      await t.step("a close the relay starts reaches the page as its notice's code", async () => {
        await stack.relay.shutdown();
        state = await waitFor(page, "d.state === 'closed'");
        assert.deepEqual(
          [state.relayClose?.closeCode, state.relayClose?.code],
          [1012, "server_restarting"],
        );
        // Deno 2.1.4 (the edge runtime's) makes Chromium report 1006: the notice says 1012.
        measured(`the browser reported ${state.closeCode}; the page shows the notice's 1012`);
        assert.match(await page.textContent("#close-code") ?? "", /^1012\b/);
        assert.equal(await page.textContent("#close-reason"), "server_restarting");
        assert.match(await page.textContent("#banner") ?? "", /restarting.*1012/);
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
      const page = await openDemo(browser, stack);

      await t.step("without metering the usage panel says so", async () => {
        await waitFor(page, "d.usage !== null");
        assert.equal(await page.textContent("#usage-state"), "metering off");
      });

      await t.step("a refused session.update shows what the policy refused", async () => {
        await page.click("#send-session");
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
      });

      await t.step("push-to-talk still works under the policy", async () => {
        await page.keyboard.down("Space");
        await sleep(400);
        await page.keyboard.up("Space");
        const state = await waitFor(
          page,
          "d.voice.turns.length === 1 && d.voice.turns[0].sha256 !== null && " +
            "d.received.some((m) => m.type === 'response.done')",
        );
        const received = turnAudio(standInEvents(stack), 0);
        assert.equal(await sha256Hex(received), state.voice.turns[0]!.sha256);
      });
    } finally {
      await browser?.close();
      await stack.close(2000);
      await Deno.remove(wavPath).catch(() => {});
    }
  },
});
