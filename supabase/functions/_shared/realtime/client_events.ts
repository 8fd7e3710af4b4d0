/**
 * The client events of OpenAI's GA Realtime interface.
 * @module
 */

/** The 11 GA client event types: the default of a policy's `allowed_events`. */
export const GA_CLIENT_EVENTS: readonly string[] = Object.freeze([
  "session.update",
  "input_audio_buffer.append",
  "input_audio_buffer.commit",
  "input_audio_buffer.clear",
  "conversation.item.create",
  "conversation.item.retrieve",
  "conversation.item.truncate",
  "conversation.item.delete",
  "response.create",
  "response.cancel",
  "output_audio_buffer.clear",
]);
