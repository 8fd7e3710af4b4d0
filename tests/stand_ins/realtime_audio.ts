/**
 * 24 kHz PCM16 mono audio for the OpenAI stand-in: base64 both ways, joining
 * and chunking buffers, and a synthetic tone for answers that have no user
 * audio to play back.
 * @module
 */

import { audioBytes, PCM_BYTES_PER_MS } from "./realtime_usage.ts";

/**
 * Audio that starts with these bytes, then UTF-8 text and a newline, is
 * understood (and transcribed) as that text by the stand-in: how a client
 * that cannot reach the stand-in gives its audio meaning.
 */
export const TRANSCRIPT_MARKER = "#transcript:";

/** `audio` prefixed so the stand-in hears `transcript` (see {@linkcode TRANSCRIPT_MARKER}). */
export function withTranscript(transcript: string, audio: Uint8Array): Uint8Array {
  return concatBytes([new TextEncoder().encode(`${TRANSCRIPT_MARKER}${transcript}\n`), audio]);
}

/** Sample rate of the Realtime API's default `audio/pcm` format. */
export const SAMPLE_RATE = 24000;

/** Base64 of `bytes`, in slices so large buffers do not overflow the call stack. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The bytes of base64 `data`; throws on anything that is not base64. */
export function decodeBase64(data: string): Uint8Array {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** `parts` as one buffer. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** `audio` cut into chunks of `chunkMs` (the last may be shorter), each a view, never a copy. */
export function audioChunks(audio: Uint8Array, chunkMs: number): Uint8Array[] {
  const size = Math.max(2, audioBytes(chunkMs));
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < audio.byteLength; at += size) {
    chunks.push(audio.subarray(at, Math.min(audio.byteLength, at + size)));
  }
  return chunks;
}

/**
 * `ms` of a quiet sine tone at `hz`, faded in and out so it does not click:
 * what the stand-in "says" when there is no user audio to play back.
 */
export function tone(ms: number, hz = 440, amplitude = 0.2): Uint8Array {
  const samples = Math.floor(ms * PCM_BYTES_PER_MS / 2);
  const out = new Uint8Array(samples * 2);
  const view = new DataView(out.buffer);
  const fade = Math.max(1, Math.min(samples / 2, SAMPLE_RATE / 100)); // 10 ms
  for (let i = 0; i < samples; i++) {
    const edge = Math.min(1, i / fade, (samples - 1 - i) / fade);
    const v = Math.sin(2 * Math.PI * hz * i / SAMPLE_RATE) * amplitude * Math.max(0, edge);
    view.setInt16(i * 2, Math.round(v * 32767), true);
  }
  return out;
}

/**
 * Audio that grows chunk by chunk (a response being spoken) and may be cut
 * (`conversation.item.truncate`), joined only when read.
 */
export class Track {
  #chunks: Uint8Array[] = [];
  #length = 0;
  #joined: Uint8Array | undefined;
  #cut = false;

  /** A track holding `initial`, if given. */
  constructor(initial?: Uint8Array) {
    if (initial) this.append(initial);
  }

  /** Bytes held. */
  get byteLength(): number {
    return this.#length;
  }

  /** Whether the track was truncated: it then takes no more audio. */
  get cut(): boolean {
    return this.#cut;
  }

  /** Adds `chunk` at the end, unless the track was truncated. */
  append(chunk: Uint8Array): void {
    if (this.#cut || chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
    this.#joined = undefined;
  }

  /** The whole track as one buffer. */
  bytes(): Uint8Array {
    if (!this.#joined) {
      this.#joined = concatBytes(this.#chunks);
      this.#chunks = [this.#joined];
    }
    return this.#joined;
  }

  /** Keeps the first `bytes` only, and takes no more audio from then on. */
  truncate(bytes: number): void {
    const kept = this.bytes().slice(0, Math.max(0, Math.min(bytes, this.#length)));
    this.#chunks = [kept];
    this.#joined = kept;
    this.#length = kept.byteLength;
    this.#cut = true;
  }
}
