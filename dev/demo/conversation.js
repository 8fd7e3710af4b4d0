// The Conversation panel: one bubble per item (#conversation, mirrored in
// `relayDemo.transcripts`) and the text controls under it (#free-text, Ask,
// Send raw frame, response.create, the instructions override).
import { $, demo } from "./state.js";
import { send } from "./connection.js";
import { voice } from "./voice.js";

export const conversation = (() => {
  /** itemId -> {el, text, record} */
  const bubbles = new Map();
  /** User audio turns waiting for their item id, oldest first. */
  const waiting = [];

  function bubble(role, kind, note) {
    const box = $("conversation");
    box.querySelector(".empty")?.remove();
    const el = document.createElement("div");
    el.className = `turn ${role} ${kind}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    const text = document.createElement("p");
    text.className = "text";
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = note ?? "";
    el.append(who, text, meta);
    box.append(el);
    box.scrollTop = box.scrollHeight;
    return el;
  }

  function set(entry, text) {
    entry.record.text = text;
    entry.el.querySelector(".text").textContent = text;
    $("conversation").scrollTop = $("conversation").scrollHeight;
  }

  return {
    reset() {
      bubbles.clear();
      waiting.length = 0;
      const hint = document.createElement("p");
      hint.className = "empty muted";
      hint.textContent = "Hold the button (or the space bar) and speak, or type below.";
      $("conversation").replaceChildren(hint);
    },
    /** A user audio turn just committed; its item id comes with input_audio_buffer.committed. */
    userAudio(ms) {
      const record = { itemId: null, text: "", kind: "audio" };
      demo.transcripts.user.push(record);
      const el = bubble("user", "audio", `voice · ${(ms / 1000).toFixed(2)} s`);
      el.querySelector(".text").textContent = "…";
      waiting.push({ el, text: "", record });
    },
    userText(text) {
      const record = { itemId: null, text, kind: "text" };
      demo.transcripts.user.push(record);
      bubble("user", "text").querySelector(".text").textContent = text;
    },
    userCommitted(itemId) {
      if (typeof itemId !== "string") return;
      // Under server VAD the turn starts here, not at a button.
      const entry = waiting.shift() ?? (() => {
        const record = { itemId: null, text: "", kind: "audio" };
        demo.transcripts.user.push(record);
        const el = bubble("user", "audio", "voice · server VAD");
        el.querySelector(".text").textContent = "…";
        return { el, text: "", record };
      })();
      entry.record.itemId = itemId;
      bubbles.set(itemId, entry);
    },
    userTranscript(itemId, text, final) {
      const entry = bubbles.get(itemId);
      if (!entry) return;
      entry.text = final ? text : entry.text + text;
      set(entry, entry.text);
    },
    assistant(itemId) {
      if (typeof itemId !== "string" || bubbles.has(itemId)) return bubbles.get(itemId);
      const record = { itemId, text: "", kind: "text" };
      demo.transcripts.assistant.push(record);
      const entry = { el: bubble("assistant", "text"), text: "", record };
      bubbles.set(itemId, entry);
      return entry;
    },
    assistantText(itemId, delta, kind) {
      const entry = this.assistant(itemId);
      if (!entry) return;
      entry.record.kind = kind;
      entry.el.classList.remove("text", "audio");
      entry.el.classList.add(kind);
      entry.text += delta;
      set(entry, entry.text);
    },
    /** The audio note of an assistant bubble, e.g. "audio · 1.20 s". */
    assistantAudio(itemId, note) {
      const entry = this.assistant(itemId);
      if (entry) entry.el.querySelector(".meta").textContent = note;
    },
    truncated(itemId, ms) {
      const entry = bubbles.get(itemId);
      if (!entry) return;
      entry.el.classList.add("cut");
      const heard = (ms / 1000).toFixed(2);
      entry.el.querySelector(".meta").textContent = `interrupted · heard ${heard} s`;
    },
  };
})();

/**
 * A text answer now. It sets no instructions of its own: under a session
 * policy that pins them (deno task dev's example), that would be refused.
 */
function sendResponseCreate() {
  send({ type: "response.create", response: { output_modalities: ["text"] } });
}

/**
 * Deliberately against deno task dev's example policy, which pins the
 * instructions and locks them: the relay refuses this in band and the banner
 * says what it refused (without a policy, the instructions change).
 */
function overrideInstructions() {
  send({ type: "session.update", session: { type: "realtime", instructions: "Be brief." } });
}

function ask() {
  const text = $("free-text").value.trim();
  if (!text) return;
  voice.bargeIn();
  const sent = send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  });
  if (sent) conversation.userText(text);
  send({ type: "response.create", response: { output_modalities: ["text"] } });
}

/** Wires the buttons under the conversation. */
export function bindComposer() {
  $("send-response").addEventListener("click", sendResponseCreate);
  $("override-instructions").addEventListener("click", overrideInstructions);
  $("send-ask").addEventListener("click", ask);
  $("send-text").addEventListener("click", () => send($("free-text").value));
}
