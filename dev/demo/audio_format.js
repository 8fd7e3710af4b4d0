// The audio the page sends and plays: what OpenAI's Realtime API takes and
// gives, and how the page cuts the microphone's stream into events.

/** What OpenAI's Realtime API takes and gives: 24 kHz mono PCM16. */
export const AUDIO_RATE = 24_000;
/** Microphone audio goes out in chunks this long (the Realtime guide suggests 20-40 ms). */
export const CHUNK_MS = 20;
export const CHUNK_SAMPLES = (AUDIO_RATE * CHUNK_MS) / 1000;
/** OpenAI refuses to commit less than 100 ms of audio; 2 bytes per sample. */
export const MIN_COMMIT_BYTES = (AUDIO_RATE / 10) * 2;
/** Input transcription model asked for in session.update (the stand-in accepts any). */
export const TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe";
