// The Events panel (#log, #counts): one line per message in, message out and
// page event, with streamed deltas sharing a line.
import { $, demo } from "./state.js";

function clock() {
  const d = new Date();
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Streams that would flood the log: consecutive ones share a line with a count. */
const COALESCED = new Set([
  "input_audio_buffer.append",
  "response.output_audio.delta",
  "response.output_audio_transcript.delta",
  "response.output_text.delta",
  "conversation.item.input_audio_transcription.delta",
]);

/** The log line a streamed event joins: the same stream among the last few stream lines. */
function streamLine(list, dir, type) {
  if (!COALESCED.has(type)) return null;
  let li = list.lastElementChild;
  // Audio and transcript deltas interleave: look past the other streams' lines.
  for (let i = 0; li && i < 3 && COALESCED.has(li.dataset.type); i++) {
    if (li.dataset.dir === dir && li.dataset.type === type) return li;
    li = li.previousElementSibling;
  }
  return null;
}

/** Adds one line to the event log; `dir` is "in", "out" or "sys". */
export function log(dir, type, detail = "", isError = false) {
  const list = $("log");
  const last = streamLine(list, dir, type);
  if (last) {
    const count = Number(last.dataset.count) + 1;
    last.dataset.count = String(count);
    last.querySelector(".type").textContent = `${type} ×${count}`;
    last.querySelector(".detail").textContent = detail;
    last.querySelector(".time").textContent = clock();
  } else {
    const li = document.createElement("li");
    if (isError) li.className = "error";
    Object.assign(li.dataset, { dir, type, count: "1" });
    const cells = [
      ["time", clock()],
      [`dir ${dir}`, dir === "in" ? "←" : dir === "out" ? "→" : "•"],
      ["type", type],
      ["detail", detail],
    ];
    for (const [cls, text] of cells) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
  $("counts").textContent = `${demo.received.length} in · ${demo.sent} out`;
}

/** Empties the log (a new Connect). */
export function clearLog() {
  $("log").replaceChildren();
}
