/**
 * Test audio: a WAV for Chromium's fake microphone, and what a PCM16 signal
 * holds (its strongest frequency and level), so tests can tell that audio
 * crossed a resampler and a relay intact.
 * @module
 */

/**
 * A mono 16-bit WAV: `toneHz` in syllable-like bursts for `ms` (so noise
 * suppression keeps it), then `silenceMs` of digital silence.
 */
export function toneWav(rate: number, ms: number, toneHz: number, silenceMs = 0): Uint8Array {
  const voiced = Math.round((rate * ms) / 1000);
  const n = voiced + Math.round((rate * silenceMs) / 1000);
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
  for (let i = 0; i < voiced; i++) {
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
