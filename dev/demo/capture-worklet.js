// The demo page's microphone capture, an AudioWorklet module (loaded by
// audio.js with audioWorklet.addModule). It runs in the AudioWorkletGlobalScope,
// where `sampleRate`, `AudioWorkletProcessor` and `registerProcessor` live.
// It resamples the context's rate to 24 kHz (low-pass, then linear
// interpolation), converts to PCM16 and posts chunks of `chunkSamples`. A
// `mark` message posts what is buffered at once, flagged, so a turn starts and
// ends on the sample where the button moved rather than on a chunk boundary.

/** RBJ biquad low-pass coefficients. */
function lowPass(fc, fs, q) {
  const w0 = (2 * Math.PI * fc) / fs;
  const alpha = Math.sin(w0) / (2 * q);
  const cos = Math.cos(w0);
  const a0 = 1 + alpha;
  return {
    b0: (1 - cos) / 2 / a0,
    b1: (1 - cos) / a0,
    b2: (1 - cos) / 2 / a0,
    a1: (-2 * cos) / a0,
    a2: (1 - alpha) / a0,
    x1: 0,
    x2: 0,
    y1: 0,
    y2: 0,
  };
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, chunkSamples } = options.processorOptions;
    this.chunkSamples = chunkSamples;
    this.chunk = new Int16Array(chunkSamples);
    this.fill = 0;
    this.sumSquares = 0;
    /** Input samples per output sample. */
    this.step = sampleRate / targetRate;
    /** Where the next output sample falls, in input samples from this block's start. */
    this.t = 0;
    /** The previous block's last sample (index -1). */
    this.prev = 0;
    // Two cascaded biquads make a 4th-order Butterworth below the new Nyquist.
    this.filters = this.step > 1
      ? [
        lowPass(targetRate * 0.42, sampleRate, 0.5412),
        lowPass(targetRate * 0.42, sampleRate, 1.3066),
      ]
      : [];
    this.scratch = new Float32Array(128);
    this.port.onmessage = (event) => {
      if (event.data?.type === "mark") this.emit(true);
    };
  }

  emit(mark) {
    const pcm = this.fill === this.chunkSamples ? this.chunk : this.chunk.slice(0, this.fill);
    const rms = this.fill ? Math.sqrt(this.sumSquares / this.fill) : 0;
    this.port.postMessage({ pcm: pcm.buffer, rms, mark }, [pcm.buffer]);
    if (pcm === this.chunk) this.chunk = new Int16Array(this.chunkSamples);
    this.fill = 0;
    this.sumSquares = 0;
  }

  push(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.sumSquares += s * s;
    this.chunk[this.fill++] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
    if (this.fill === this.chunkSamples) this.emit(false);
  }

  process(inputs) {
    const input = inputs[0]?.[0];
    if (!input || input.length === 0) return true;
    const n = input.length;
    if (this.scratch.length < n) this.scratch = new Float32Array(n);
    const x = this.scratch;
    x.set(input);
    for (const f of this.filters) {
      for (let i = 0; i < n; i++) {
        const y = f.b0 * x[i] + f.b1 * f.x1 + f.b2 * f.x2 - f.a1 * f.y1 - f.a2 * f.y2;
        f.x2 = f.x1;
        f.x1 = x[i];
        f.y2 = f.y1;
        f.y1 = y;
        x[i] = y;
      }
    }
    let t = this.t;
    while (t < n - 1) {
      const i = Math.floor(t);
      const frac = t - i;
      const a = i < 0 ? this.prev : x[i];
      this.push(a + (x[i + 1] - a) * frac);
      t += this.step;
    }
    this.t = t - n;
    this.prev = x[n - 1];
    return true;
  }
}

registerProcessor("relay-capture", CaptureProcessor);
