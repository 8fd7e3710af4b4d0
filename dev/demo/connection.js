// The connection: the client library owns it. The page hands the library a
// watched WebSocket (for the panel's subprotocol and close codes) and reacts
// to its states and events. Holds Connect, Disconnect and "new conversation"
// (the Connect panel's buttons) and `send`, which every panel sends through.
//
// Served as /client/relay_client.js (dev/demo_server.ts). Written relative to
// this file on disk, so Deno's tools find it too: in the browser, from
// /connection.js, the two `..` stop at the site's root and it is the same URL.
import { connect as connectRelay } from "../../client/relay_client.js";
import { $, demo, freshConnection, page, sinceConnect } from "./state.js";
import { clearLog, log } from "./log.js";
import { showBanner } from "./banner.js";
import { renewSession, tokenFor } from "./session.js";
import { setState, showClose, stateLine } from "./status.js";
import { onEvent, onRawMessage } from "./events.js";
import { conversation } from "./conversation.js";
import { audio } from "./audio.js";
import { updateTalkControls, voice } from "./voice.js";
import { refreshUsage } from "./usage.js";

/** The library's connection of the current Connect, or null. */
let relay = null;
/** Per Connect: some socket opened; some session opened; when the connection was lost. */
let everOpened = false;
let everReady = false;
let lostAt = null;
/** Sockets that opened. */
const openedSockets = new WeakSet();

/**
 * The browser's WebSocket as the page hands it to the library, watched for
 * the status panel: the subprotocol the relay selected and the browser's own
 * close event, which the library's states summarise (a browser on the edge
 * runtime sees 1006 where the relay's notice says the real code). In "no
 * token" mode it leaves the token off, as a page that forgot it would: the
 * library always sends one.
 */
function pageSocketClass(mode, mine) {
  return class PageSocket extends WebSocket {
    constructor(url, protocols) {
      const target = mode === "none" ? withoutToken(url, protocols) : { url, protocols };
      super(target.url, target.protocols);
      if (mine !== page.run) return;
      demo.opened = false;
      page.socketNotice = null;
      this.addEventListener("open", () => {
        if (mine === page.run) socketOpened(this);
      });
      this.addEventListener("error", () => {
        if (mine === page.run) {
          log("sys", "error", "the browser gives no detail; see the close", true);
        }
      });
      this.addEventListener("close", (event) => {
        if (mine === page.run) socketClosed(this, event);
      });
    }
  };
}

/** `url` and `protocols` without the token (`?jwt=`, a `jwt-` entry). */
function withoutToken(url, protocols) {
  const address = new URL(url);
  address.searchParams.delete("jwt");
  const kept = (protocols ?? []).filter((p) => !p.startsWith("jwt-"));
  return { url: address.href, protocols: kept.length > 0 ? kept : undefined };
}

function socketOpened(ws) {
  openedSockets.add(ws);
  everOpened = true;
  demo.opened = true;
  demo.protocol = ws.protocol;
  $("protocol").textContent = ws.protocol || "(none)";
  log("sys", "socket open", `${sinceConnect()} ms after Connect`);
}

function socketClosed(ws, event) {
  const record = {
    opened: openedSockets.has(ws),
    code: event.code,
    reason: event.reason,
    wasClean: event.wasClean,
    notice: page.socketNotice,
    atMs: sinceConnect(),
  };
  demo.closes.push(record);
  if (record.opened || !everOpened) showClose(record);
  log(
    "sys",
    "socket closed",
    `${event.code} ${event.reason}`,
    !event.wasClean || event.code !== 1000,
  );
}

/** What the library says about the conversation's connection. */
function onRelayState(state, info, mine) {
  const line = stateLine(state, info);
  demo.history.push({
    state,
    why: info.why,
    code: info.code ?? null,
    delayMs: info.delayMs ?? null,
    attempt: info.attempt,
    line,
    atMs: sinceConnect(),
  });
  demo.stateLine = line;
  $("state-line").textContent = line;
  if (state === "connecting") {
    setState("connecting");
  } else if (state === "open") {
    onOpen(info);
  } else if (state === "reconnecting") {
    if (demo.state === "open") lostAt = performance.now();
    endVoice();
    setState("reconnecting");
    log("sys", "reconnecting", line);
  } else {
    endVoice();
    setState("closed");
    log("sys", "closed", line, info.why !== "client");
    onClosed(info, mine);
  }
}

function onOpen(info) {
  const again = everReady;
  everReady = true;
  if (again) {
    demo.reconnects++;
    $("reconnects").textContent = String(demo.reconnects);
  }
  const afterMs = lostAt === null ? null : Math.round(performance.now() - lostAt);
  lostAt = null;
  if (info.resumed) {
    demo.resumes.push({ items: info.items, skipped: info.skipped, afterMs });
    const after = afterMs === null
      ? ""
      : `, ${(afterMs / 1000).toFixed(1)} s after the connection was lost`;
    showBanner(
      "info",
      `Resumed: the relay restored this conversation (${info.items} items, ${info.skipped} ` +
        `skipped${after}). It goes on where it was.`,
    );
  } else if (again && page.voiceRoute) {
    showBanner(
      "warn",
      "Reconnected as a new conversation: the relay had nothing stored for this session " +
        "(resume off, or its state expired).",
    );
  }
  setState("open");
  log("sys", info.resumed ? "resumed" : "open", `${demo.stateLine} · ${sinceConnect()} ms`);
  if (page.voiceRoute) {
    void refreshUsage();
    audio.startMic().catch((error) => {
      demo.voice.micError = String(error.message ?? error);
      log("sys", "microphone unavailable", demo.voice.micError, true);
      updateTalkControls();
    });
  }
}

/** The conversation is over; a refusal gets words (a browser is not told its status). */
function onClosed(info, mine) {
  if (info.why === "refused") {
    const mode = $("token-mode").value;
    const expected = mode === "bad"
      ? " (here 401 invalid_token: the token's signature was altered)"
      : mode === "none"
      ? " (here 401 missing_token: no token was sent)"
      : "";
    const refused = "The relay refused the connection before the upgrade. A browser is not " +
      `told why, it sees only 1006; the relay's log names it${expected}.`;
    if (!page.voiceRoute || !page.accessToken) {
      showBanner("bad", refused);
      return;
    }
    // A spent budget is one refusal the page can tell: the usage panel says so.
    void refreshUsage().then((spent) => {
      if (mine !== page.run) return;
      showBanner(
        "bad",
        spent
          ? "Budget spent: the relay refused the connection (429 budget_exceeded) because " +
            "your usage budget for this period has run out. It renews when the period ends."
          : refused,
      );
    });
  } else if (info.why === "gave_up") {
    showBanner("bad", `The page gave up reconnecting after ${info.attempt} attempts.`);
  } else if (info.why === "token_unavailable") {
    showBanner("bad", "The dev server gave no token, so the page could not connect.");
  }
}

/** The connection is gone or paused: the microphone and playback stop with it. */
function endVoice() {
  voice.end();
  audio.stopMic();
  audio.stopPlayback();
  page.pendingSince = null;
}

/** A new Connect starts from empty panels. */
function resetConnectionView() {
  Object.assign(demo, freshConnection());
  for (
    const id of [
      "protocol",
      "close-code",
      "close-reason",
      "close-clean",
      "rtt",
      "voice-latency",
      "voice-sent",
      "voice-played",
      "voice-truncated",
    ]
  ) {
    $(id).textContent = "–";
  }
  $("reconnects").textContent = "0";
  $("state-line").textContent = demo.stateLine;
  conversation.reset();
  clearLog();
  showBanner(null);
}

/** Starts a fresh conversation: a new id, and a new connection when one is live. */
function newConversation() {
  renewSession();
  if (relay && demo.state !== "closed") {
    connect();
  } else {
    conversation.reset();
    log("sys", "new conversation", "the next Connect starts it");
  }
}

/**
 * The route's URL, with the Talk panel's choices on the OpenAI route:
 * `?room=` publishes the conversation's transcripts into that room as live
 * captions, `?intent=transcription` opens a transcription session instead of
 * a conversation. Also the words the log says about them.
 */
function voiceUrl(route) {
  const url = new URL(`${demo.config.relayUrl}${route}`);
  if (route === "/relay/echo") return { url, captions: "" };
  const room = $("captions-room").value.trim();
  if (room) url.searchParams.set("room", room);
  if ($("transcribe-only").checked) url.searchParams.set("intent", "transcription");
  const words = [
    ...(room ? [`captions into ${room}`] : []),
    ...($("transcribe-only").checked ? ["transcription only"] : []),
  ];
  return { url, captions: words.length > 0 ? ` · ${words.join(", ")}` : "" };
}

const MODE_WORDS = {
  query: "token in ?jwt=",
  protocol: "token in a subprotocol",
  bad: "an altered token",
  none: "no token",
};

function connect() {
  const previous = relay;
  const mine = ++page.run;
  relay = null;
  if (previous) {
    endVoice();
    void previous.close(1000, "new connection");
  }
  resetConnectionView();
  const mode = $("token-mode").value;
  const route = $("route").value;
  page.voiceRoute = route !== "/relay/echo";
  const { url, captions } = voiceUrl(route);
  page.transcription = url.searchParams.get("intent") === "transcription";
  // Made inside the click, so the browser lets it play without another gesture.
  if (page.voiceRoute) audio.ensureContext();
  page.accessToken = null;
  everOpened = false;
  everReady = false;
  lostAt = null;
  page.socketNotice = null;
  page.connectStartedAt = performance.now();
  setState("connecting");
  log(
    "sys",
    "connecting",
    `${route} · session ${demo.session} · ${MODE_WORDS[mode] ?? mode}${captions}`,
  );
  try {
    relay = connectRelay({
      url: url.href,
      session: demo.session,
      tokenIn: mode === "protocol" ? "protocol" : "query",
      // The echo route's server never speaks first: ready once the socket opens.
      readyOn: page.voiceRoute ? "session" : "open",
      getToken: () => tokenFor(mode, mine),
      WebSocket: pageSocketClass(mode, mine),
      onEvent: (event) => {
        if (mine === page.run) onEvent(event);
      },
      onMessage: (data) => {
        if (mine === page.run) onRawMessage(data);
      },
      onState: (state, info) => {
        if (mine === page.run) onRelayState(state, info, mine);
      },
    });
  } catch (error) {
    log("sys", "connect failed", String(error.message ?? error), true);
    setState("closed");
  }
}

function disconnect() {
  if (!relay) return;
  setState("closing");
  void relay.close(1000, "user closed");
}

/** Sends one client event (an object, or text as it is); false when there is no conversation. */
export function send(payload) {
  if (!relay || relay.state === "closed") return false;
  const text = typeof payload === "string" ? payload : JSON.stringify(payload);
  const held = relay.state !== "open";
  try {
    relay.send(text);
  } catch (error) {
    log("sys", "not sent", String(error.message ?? error), true);
    return false;
  }
  demo.sent++;
  let type = "message";
  try {
    type = JSON.parse(text).type ?? type;
  } catch { /* raw text */ }
  // Appends get no answer: timing from one would measure the user's speech.
  if (type !== "input_audio_buffer.append" && !held) page.pendingSince ??= performance.now();
  log(
    "out",
    type,
    held ? `${text.length} chars · held for the next session` : `${text.length} chars`,
  );
  return true;
}

/** Wires the Connect panel's buttons: Connect, Disconnect, new conversation. */
export function bindConnection() {
  $("connect").addEventListener("click", () => connect());
  $("disconnect").addEventListener("click", disconnect);
  $("new-session").addEventListener("click", newConversation);
}
