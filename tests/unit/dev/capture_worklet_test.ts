/**
 * The demo page's capture worklet (dev/demo/capture-worklet.js), run outside
 * a browser: the AudioWorkletGlobalScope's `sampleRate`, `AudioWorkletProcessor`
 * and `registerProcessor` are stood in for, and the processor is fed blocks of
 * 128 frames as the audio thread would. Chromium gives the page a 24 kHz
 * context, so the browser test never reaches the resampler; this does.
 * @module
 */
import assert from "node:assert/strict";
import { analysePcm16 } from "../../helpers/pcm.ts";

/** What the processor posts: a PCM16 chunk, its RMS, and whether a `mark` cut it. */
interface Posted {
  pcm: ArrayBuffer;
  rms: number;
  mark: boolean;
}

interface Processor {
  port: { onmessage: ((event: { data: unknown }) => void) | null; posted: Posted[] };
  process(inputs: Float32Array[][]): boolean;
}

type ProcessorClass = new (options: { processorOptions: Record<string, number> }) => Processor;

const WORKLET = new URL("../../../dev/demo/capture-worklet.js", import.meta.url);
let loads = 0;

/** The worklet's processor class, as `registerProcessor` receives it. */
async function processorClass(): Promise<ProcessorClass> {
  const scope = globalThis as Record<string, unknown>;
  let registered: ProcessorClass | undefined;
  scope.AudioWorkletProcessor = class {
    port = {
      onmessage: null,
      posted: [] as Posted[],
      postMessage(message: Posted) {
        this.posted.push(message);
      },
    };
  };
  scope.registerProcessor = (name: string, cls: ProcessorClass) => {
    assert.equal(name, "relay-capture");
    registered = cls;
  };
  try {
    // A fresh module each time, so it registers again.
    await import(`${WORKLET.href}?load=${++loads}`);
  } finally {
    delete scope.AudioWorkletProcessor;
    delete scope.registerProcessor;
  }
  assert.ok(registered, "the module registers its processor");
  return registered;
}

/** Runs `input` through a processor built at context rate `rate`, in 128-frame blocks. */
async function capture(
  rate: number,
  input: Float32Array,
  opts: { chunkSamples?: number; markAfterBlock?: number } = {},
): Promise<Posted[]> {
  const Capture = await processorClass();
  const scope = globalThis as Record<string, unknown>;
  scope.sampleRate = rate;
  try {
    const node = new Capture({
      processorOptions: { targetRate: 24_000, chunkSamples: opts.chunkSamples ?? 480 },
    });
    for (let at = 0, block = 0; at < input.length; at += 128, block++) {
      node.process([[input.subarray(at, at + 128)]]);
      if (block === opts.markAfterBlock) node.port.onmessage?.({ data: { type: "mark" } });
    }
    return node.port.posted;
  } finally {
    delete scope.sampleRate;
  }
}

function sine(rate: number, hz: number, seconds: number, amplitude = 0.5): Float32Array {
  return Float32Array.from(
    { length: Math.round(rate * seconds) },
    (_, i) => amplitude * Math.sin((2 * Math.PI * hz * i) / rate),
  );
}

function pcmOf(posted: Posted[]): Uint8Array {
  const out = new Uint8Array(posted.reduce((n, p) => n + p.pcm.byteLength, 0));
  let at = 0;
  for (const p of posted) {
    out.set(new Uint8Array(p.pcm), at);
    at += p.pcm.byteLength;
  }
  return out;
}

const RESAMPLING: { rate: number; hz: number }[] = [
  { rate: 48_000, hz: 440 },
  { rate: 44_100, hz: 880 },
  { rate: 96_000, hz: 300 },
];

for (const { rate, hz } of RESAMPLING) {
  Deno.test(`capture worklet resamples ${rate} Hz to 24 kHz PCM16 and keeps a ${hz} Hz tone`, async () => {
    const seconds = 1;
    const pcm = pcmOf(await capture(rate, sine(rate, hz, seconds)));
    const samples = pcm.byteLength / 2;
    // One second in, one second out (to within the blocks' rounding).
    assert.ok(Math.abs(samples - 24_000 * seconds) <= 2, `${samples} samples`);
    const { hz: found, rms } = analysePcm16(pcm);
    assert.equal(found, hz);
    // The low-pass leaves speech frequencies alone: a 0.5 sine has an RMS of 0.354.
    assert.ok(Math.abs(rms - 0.5 / Math.SQRT2) < 0.01, `rms ${rms}`);
  });
}

Deno.test("capture worklet passes a 24 kHz context through sample for sample", async () => {
  const input = Float32Array.from({ length: 128 * 10 }, (_, i) => ((i % 200) - 100) / 100);
  // A mark after the last block posts what has not filled a chunk.
  const pcm = pcmOf(await capture(24_000, input, { markAfterBlock: 9 }));
  const out = new Int16Array(pcm.buffer);
  // Everything but the newest sample, which waits for the next block.
  assert.equal(out.length, input.length - 1);
  for (let i = 0; i < out.length; i++) {
    const x = input[i]!;
    assert.equal(out[i], Math.round(x < 0 ? x * 0x8000 : x * 0x7fff), `sample ${i}`);
  }
});

Deno.test("capture worklet low-passes what 24 kHz cannot hold instead of folding it down", async () => {
  // 20 kHz at 48 kHz would alias to 4 kHz; the filter takes it down by more than 20 dB.
  const pcm = pcmOf(await capture(48_000, sine(48_000, 20_000, 0.5)));
  const { rms } = analysePcm16(pcm);
  assert.ok(rms < 0.05 * 0.5, `rms ${rms}`);
});

Deno.test("capture worklet clamps to the PCM16 range", async () => {
  const input = new Float32Array(128 * 4).fill(1.7);
  input.fill(-3, 256);
  const out = new Int16Array(pcmOf(await capture(24_000, input)).buffer);
  assert.equal(out[0], 32767);
  assert.equal(out.at(-1), -32768);
});

Deno.test("capture worklet posts 20 ms chunks, and a mark cuts one short", async () => {
  const posted = await capture(24_000, sine(24_000, 440, 0.1), { markAfterBlock: 4 });
  // 5 blocks (640 samples, less the one held back) when the mark came: one chunk and a cut.
  assert.deepEqual(
    posted.slice(0, 2).map((p) => [p.pcm.byteLength / 2, p.mark]),
    [[480, false], [639 - 480, true]],
  );
  // After the mark, chunks start afresh.
  assert.ok(posted.slice(2).every((p) => p.pcm.byteLength === 960 && !p.mark));
  assert.ok(posted.every((p) => p.rms > 0.3 && p.rms < 0.4), "each chunk says how loud it was");
});

Deno.test("capture worklet answers a mark with an empty chunk when nothing is buffered", async () => {
  const Capture = await processorClass();
  (globalThis as Record<string, unknown>).sampleRate = 24_000;
  try {
    const node = new Capture({ processorOptions: { targetRate: 24_000, chunkSamples: 480 } });
    node.port.onmessage?.({ data: { type: "mark" } });
    assert.deepEqual(
      node.port.posted.map((p) => [p.pcm.byteLength, p.rms, p.mark]),
      [[0, 0, true]],
    );
  } finally {
    delete (globalThis as Record<string, unknown>).sampleRate;
  }
});
