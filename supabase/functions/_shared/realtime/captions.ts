/**
 * Captions from a Realtime session's transcripts (CONTRACT.md "Transcription
 * sessions and live captions"): which server events carry a transcript, and
 * the room broadcast each becomes. Pure.
 * @module
 */

/** A broadcast to publish into the room for one server event. */
export interface Caption {
  /** `caption.delta` (ephemeral) or `caption` (kept with history). */
  readonly event: "caption.delta" | "caption";
  readonly ephemeral: boolean;
  /** `{"item_id","role","delta"}` or `{"item_id","role","text"}`, as JSON. */
  readonly payloadJson: string;
}

/** Server event types that carry a transcript: its role, and the field holding the text. */
const SOURCES: Readonly<
  Record<string, { role: "user" | "assistant"; field: string; done: boolean }>
> = {
  "conversation.item.input_audio_transcription.delta": {
    role: "user",
    field: "delta",
    done: false,
  },
  "conversation.item.input_audio_transcription.completed": {
    role: "user",
    field: "transcript",
    done: true,
  },
  "response.output_audio_transcript.delta": { role: "assistant", field: "delta", done: false },
  "response.output_audio_transcript.done": { role: "assistant", field: "transcript", done: true },
  "response.output_text.delta": { role: "assistant", field: "delta", done: false },
  "response.output_text.done": { role: "assistant", field: "text", done: true },
};

/** Whether a server event of `type` becomes a caption (checked before parsing it). */
export function isCaptionSource(type: string): boolean {
  return Object.hasOwn(SOURCES, type);
}

/** The caption for a parsed server event, or `null` when it carries no transcript text. */
export function captionOf(event: Record<string, unknown>): Caption | null {
  const type = event.type;
  if (typeof type !== "string" || !isCaptionSource(type)) return null;
  const source = SOURCES[type]!;
  const text = event[source.field];
  if (typeof text !== "string") return null;
  const itemId = typeof event.item_id === "string" ? event.item_id : null;
  return source.done
    ? {
      event: "caption",
      ephemeral: false,
      payloadJson: JSON.stringify({ item_id: itemId, role: source.role, text }),
    }
    : {
      event: "caption.delta",
      ephemeral: true,
      payloadJson: JSON.stringify({ item_id: itemId, role: source.role, delta: text }),
    };
}
