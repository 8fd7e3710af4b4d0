// The Connection panel's status (#state, #state-line, #close-*): the page's
// state, the library's state in words, and how the last socket closed. The
// page's state also decides which buttons work, on every panel.
import { $, demo, page } from "./state.js";
import { updateTalkControls } from "./voice.js";

export function setState(state) {
  demo.state = state;
  const pill = $("state");
  pill.textContent = state;
  pill.className = `pill ${state}`;
  // While reconnecting, what is sent is held by the library and goes out after the resume.
  const live = state === "open" || state === "reconnecting";
  const busy = live || state === "connecting" || state === "closing";
  $("connect").disabled = busy;
  $("disconnect").disabled = !busy;
  for (const id of ["send-response", "override-instructions", "send-ask"]) $(id).disabled = !live;
  // OpenAI takes only JSON events: a raw frame is for the echo route.
  $("send-text").disabled = !live || page.voiceRoute;
  updateTalkControls();
}

/** The panel's close rows: the browser's code, or the relay's notice where the browser saw 1006. */
export function showClose({ code, reason, wasClean, notice, atMs }) {
  demo.closeCode = code;
  demo.closeReason = reason;
  demo.wasClean = wasClean;
  demo.closedAfterMs = atMs;
  // The browser may report 1006 for a close the relay started (Deno 2.1.4 on
  // the edge runtime); the relay's in-band notice carries the real code.
  $("close-code").textContent = notice && notice.closeCode !== code
    ? `${notice.closeCode} (the browser saw ${code})`
    : String(code);
  $("close-reason").textContent = notice
    ? notice.code === "upstream_closed" ? `upstream_closed: ${notice.message}` : notice.code
    : reason || "(none)";
  $("close-clean").textContent = wasClean ? "yes" : "no";
}

/** The library's state in words: the line under the pill. */
export function stateLine(state, info) {
  switch (state) {
    case "connecting":
      return "connecting…";
    case "open":
      if (info.resumed) {
        const items = `${info.items} ${info.items === 1 ? "item" : "items"}`;
        return `resumed: ${items} restored, ${info.skipped} skipped`;
      }
      return info.why === "socket_open" ? "open" : "open · a new conversation";
    case "reconnecting": {
      const cause = info.why === "refused"
        ? "refused, or the relay is unreachable"
        : info.code === undefined
        ? info.why
        : `${info.code} ${info.why}`;
      const nth = info.attempt > 1 ? ` · attempt ${info.attempt}` : "";
      return `reconnecting in ${(info.delayMs / 1000).toFixed(1)} s (${cause})${nth}`;
    }
    default:
      switch (info.why) {
        case "client":
          return `closed (${info.code} ${info.reason})`;
        case "refused":
          return "closed: the relay refused the connection";
        case "gave_up":
          return `closed: gave up reconnecting (${info.cause})`;
        case "token_unavailable":
          return "closed: no token from the dev server";
        default:
          return info.code === undefined
            ? `closed: ${info.why}`
            : `closed (${info.code} ${info.why})`;
      }
  }
}
