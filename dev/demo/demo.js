// The demo page's script: a browser ES module, no build step.
// It signs in a test user at the dev stack and talks to the relay through the
// repository's client library (client/relay_client.js), the way an app would:
// the library picks the conversation's session id, gets a fresh token for each
// connection (?jwt= or a jwt-<token> subprotocol), reconnects when the relay
// restarts or the network drops, and reports when the relay resumed the
// conversation. The page talks by voice (push-to-talk or server VAD) or text,
// and shows what happens, reconnects and resumes included.
// `window.relayDemo` mirrors the page's state for the e2e tests.
// Served as /client/relay_client.js (dev/demo_server.ts). Written relative to this
// file on disk, so Deno's tools find it too: in the browser, from /demo.js, the
// two `..` stop at the site's root and it is the same URL.
import { connect as connectRelay, isSessionId, newSessionId } from "../../client/relay_client.js";

const $ = (id) => document.getElementById(id);

/** What OpenAI's Realtime API takes and gives: 24 kHz mono PCM16. */
const AUDIO_RATE = 24_000;
/** Microphone audio goes out in chunks this long (the Realtime guide suggests 20-40 ms). */
const CHUNK_MS = 20;
const CHUNK_SAMPLES = (AUDIO_RATE * CHUNK_MS) / 1000;
/** OpenAI refuses to commit less than 100 ms of audio; 2 bytes per sample. */
const MIN_COMMIT_BYTES = (AUDIO_RATE / 10) * 2;
/** The first chunk of an answer starts this far ahead, so the next chunk can land in time. */
const PLAYBACK_LEAD_S = 0.05;
/** After each underrun the lead doubles, up to this (a small adaptive jitter buffer). */
const MAX_PLAYBACK_LEAD_S = 0.2;
/** How long after a response.done the usage panel reads again (the relay writes it meanwhile). */
const USAGE_FOLLOW_UP_MS = 1500;
/** Input transcription model asked for in session.update (the stand-in accepts any). */
const TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe";
/** Where the page keeps its session id: per tab, so a reload continues the conversation. */
const SESSION_KEY = "relay-demo-session";

/** What the page knows of one connection's voice side. */
function freshVoice() {
  return {
    /** The microphone is captured and the worklet runs. */
    micOn: false,
    micError: null,
    /** The AudioContext's rate (24000 when the browser resamples the microphone itself). */
    contextRate: null,
    chunkMs: CHUNK_MS,
    /** Microphone level (RMS of the last chunk, 0..1). */
    level: 0,
    vad: false,
    /** The session's VAD interrupts answers itself (turn_detection.interrupt_response). */
    serverInterrupts: false,
    appendsSent: 0,
    /** PCM16 bytes sent in input_audio_buffer.append, over the connection. */
    bytesSent: 0,
    /** One per push-to-talk turn: what was sent, and its SHA-256 (hex). */
    turns: [],
    /** Commit (or VAD's speech_stopped) to first audio delta, ms, per answer. */
    latencies: [],
    /** One per assistant audio item: what was scheduled and played. */
    playback: [],
    truncates: [],
    cancels: 0,
    /**
     * Over WebSocket the page owns playback, so stopping it is the clear;
     * `output_audio_buffer.clear` is for WebRTC/SIP sessions only (API reference).
     */
    outputBufferClear: "not sent: WebRTC/SIP only",
  };
}

/** What the page knows of one connection; a new connection starts from this. */

/** What the page knows of one Connect: one conversation, across the library's reconnects. */
function freshConnection() {
  return {
    /** Whether the latest socket opened. */
    opened: false,
    protocol: null,
    /**
     * The close the panel shows: the browser's own close event of the latest
     * socket that opened (a refused retry while reconnecting does not hide
     * it), or of the latest socket when none opened.
     */
    closeCode: null,
    closeReason: null,
    wasClean: null,
    closedAfterMs: null,
    /** Every socket's close, in order: {opened, code, reason, wasClean, notice, atMs}. */
    closes: [],
    /** The library's state changes: {state, why, code, delayMs, attempt, line, atMs}. */
    history: [],
    /** The state in words, as shown under the pill. */
    stateLine: "not connected",
    /** Times the conversation opened again after its connection was lost. */
    reconnects: 0,
    /** Each relay.session.resumed: {items, skipped, afterMs (since the connection was lost)}. */
    resumes: [],
    lastRttMs: null,
    /**
     * Every message received, with `at` (ms since Connect); JSON events as
     * the library parsed them (`text` is their JSON), audio deltas keep
     * `text: ""` and their decoded `bytes`.
     */
    received: [],
    sent: 0,
    /** Concatenated response.output_text.delta. */
    outputText: "",
    /** The relay's last in-band close notice: {code, closeCode, message}. */
    relayClose: null,
    /** Session-policy refusals: {message, param, eventId}. */
    refusals: [],
    banner: null,
    usage: null,
    /** Conversation turns as shown: {itemId, text, kind: "audio" | "text"}. */
    transcripts: { user: [], assistant: [] },
    voice: freshVoice(),
  };
}

/** What the page knows; read by tests through `window.relayDemo`. */
const demo = {
  config: null,
  state: "idle",
  /** The conversation's id, sent as ?session= on every connection. */
  session: null,
  user: null,
  expiresAt: null,
  ...freshConnection(),
};
globalThis.relayDemo = demo;

let connectStartedAt = 0;
let pendingSince = null;
let accessToken = null;
let voiceRoute = false;

// ---------------------------------------------------------------------------
// The connection: the client library owns it. The page hands the library a
// watched WebSocket (for the panel's subprotocol and close codes) and reacts
// to its states and events.
// ---------------------------------------------------------------------------

/** The library's connection of the current Connect, or null. */
let relay = null;
/** Which Connect the callbacks belong to: a newer one makes older ones' callbacks no-ops. */
let run = 0;
/** Per Connect: some socket opened; some session opened; when the connection was lost. */
let everOpened = false;
let everReady = false;
let lostAt = null;
/** The close notice the current socket got, if any. */
let socketNotice = null;
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
      if (mine !== run) return;
      demo.opened = false;
      socketNotice = null;
      this.addEventListener("open", () => {
        if (mine === run) socketOpened(this);
      });
      this.addEventListener("error", () => {
        if (mine === run) log("sys", "error", "the browser gives no detail; see the close", true);
      });
      this.addEventListener("close", (event) => {
        if (mine === run) socketClosed(this, event);
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

function sinceConnect() {
  return Math.round(performance.now() - connectStartedAt);
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
    notice: socketNotice,
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

/** The panel's close rows: the browser's code, or the relay's notice where the browser saw 1006. */
function showClose({ code, reason, wasClean, notice, atMs }) {
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
function stateLine(state, info) {
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
  } else if (again && voiceRoute) {
    showBanner(
      "warn",
      "Reconnected as a new conversation: the relay had nothing stored for this session " +
        "(resume off, or its state expired).",
    );
  }
  setState("open");
  log("sys", info.resumed ? "resumed" : "open", `${demo.stateLine} · ${sinceConnect()} ms`);
  if (voiceRoute) {
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
    if (!voiceRoute || !accessToken) {
      showBanner("bad", refused);
      return;
    }
    // A spent budget is one refusal the page can tell: the usage panel says so.
    void refreshUsage().then((spent) => {
      if (mine !== run) return;
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
  pendingSince = null;
}

// ---------------------------------------------------------------------------
// Page state and the event log
// ---------------------------------------------------------------------------

function setState(state) {
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
  $("send-text").disabled = !live || voiceRoute;
  updateTalkControls();
}

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
function log(dir, type, detail = "", isError = false) {
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

/** Shows one sentence above the page; `kind` is "info", "warn" or "bad"; null hides it. */
function showBanner(kind, text) {
  demo.banner = kind ? { kind, text } : null;
  const banner = $("banner");
  banner.hidden = !kind;
  banner.className = `banner ${kind ?? ""}`;
  banner.textContent = text ?? "";
}

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
  $("log").replaceChildren();
  showBanner(null);
}

// ---------------------------------------------------------------------------
// The session id and tokens
// ---------------------------------------------------------------------------

/** The tab's stored session id, if it holds a valid one. */
function storedSession() {
  try {
    const id = sessionStorage.getItem(SESSION_KEY);
    return isSessionId(id) ? id : null;
  } catch {
    return null; // storage off: a new id per page
  }
}

function setSession(id) {
  demo.session = id;
  try {
    sessionStorage.setItem(SESSION_KEY, id);
  } catch { /* storage off: kept for this page only */ }
  $("session-id").textContent = id;
}

/** Starts a fresh conversation: a new id, and a new connection when one is live. */
function newConversation() {
  setSession(newSessionId());
  if (relay && demo.state !== "closed") {
    connect();
  } else {
    conversation.reset();
    log("sys", "new conversation", "the next Connect starts it");
  }
}

/** Signs in the test user at the dev stack's Auth stand-in (a fresh token per connection). */
async function fetchToken(mine) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: $("email").value, expiresInS: Number($("ttl").value) }),
  });
  if (!response.ok) throw new Error(`token request failed: ${response.status}`);
  const session = await response.json();
  if (mine === run) {
    demo.user = session.user.email;
    demo.expiresAt = session.expires_at;
    accessToken = session.access_token;
    $("user").textContent = `${session.user.email} (${session.user.id.slice(0, 8)}…)`;
  }
  return session.access_token;
}

/** The token the library sends for this connection, as the token mode says. */
async function tokenFor(mode, mine) {
  // Sent as no token at all: PageSocket leaves it off.
  if (mode === "none") return "left-off";
  try {
    const token = await fetchToken(mine);
    return mode === "bad" ? spoil(token) : token;
  } catch (error) {
    if (mine === run) log("sys", "token error", String(error.message ?? error), true);
    throw error;
  }
}

/** Alters one signature character so the token no longer verifies. */
function spoil(token) {
  const [header, payload, signature] = token.split(".");
  const i = 5;
  const swapped = signature[i] === "A" ? "B" : "A";
  return `${header}.${payload}.${signature.slice(0, i)}${swapped}${signature.slice(i + 1)}`;
}

// ---------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------

const MODE_WORDS = {
  query: "token in ?jwt=",
  protocol: "token in a subprotocol",
  bad: "an altered token",
  none: "no token",
};

function connect() {
  const previous = relay;
  const mine = ++run;
  relay = null;
  if (previous) {
    endVoice();
    void previous.close(1000, "new connection");
  }
  resetConnectionView();
  const mode = $("token-mode").value;
  const route = $("route").value;
  voiceRoute = route !== "/relay/echo";
  // Made inside the click, so the browser lets it play without another gesture.
  if (voiceRoute) audio.ensureContext();
  accessToken = null;
  everOpened = false;
  everReady = false;
  lostAt = null;
  socketNotice = null;
  connectStartedAt = performance.now();
  setState("connecting");
  log("sys", "connecting", `${route} · session ${demo.session} · ${MODE_WORDS[mode] ?? mode}`);
  try {
    relay = connectRelay({
      url: `${demo.config.relayUrl}${route}`,
      session: demo.session,
      tokenIn: mode === "protocol" ? "protocol" : "query",
      // The echo route's server never speaks first: ready once the socket opens.
      readyOn: voiceRoute ? "session" : "open",
      getToken: () => tokenFor(mode, mine),
      WebSocket: pageSocketClass(mode, mine),
      onEvent: (event) => {
        if (mine === run) onEvent(event);
      },
      onMessage: (data) => {
        if (mine === run) onRawMessage(data);
      },
      onState: (state, info) => {
        if (mine === run) onRelayState(state, info, mine);
      },
    });
  } catch (error) {
    log("sys", "connect failed", String(error.message ?? error), true);
    setState("closed");
  }
}

/** Sends one client event (an object, or text as it is); false when there is no conversation. */
function send(payload) {
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
  if (type !== "input_audio_buffer.append" && !held) pendingSince ??= performance.now();
  log(
    "out",
    type,
    held ? `${text.length} chars · held for the next session` : `${text.length} chars`,
  );
  return true;
}

// ---------------------------------------------------------------------------
// Incoming events
// ---------------------------------------------------------------------------

/** The round trip: from the first message sent to the next one received. */
function measureRtt() {
  if (pendingSince === null) return;
  demo.lastRttMs = Math.round(performance.now() - pendingSince);
  $("rtt").textContent = `${demo.lastRttMs} ms`;
  pendingSince = null;
}

function receivedAt() {
  return Math.round((performance.now() - connectStartedAt) * 10) / 10;
}

/** A message that is not a JSON event (e.g. the echo route's text): shown as it came. */
function onRawMessage(data) {
  measureRtt();
  const text = typeof data === "string" ? data : `(binary, ${data.byteLength} bytes)`;
  demo.received.push({ type: "message", text, at: receivedAt() });
  log("in", "message", text);
}

/** A server event, as the library parsed it. */
function onEvent(event) {
  measureRtt();
  const at = receivedAt();
  if (event.type === "response.output_audio.delta") {
    const bytes = typeof event.delta === "string" ? base64ToBytes(event.delta) : new Uint8Array();
    demo.received.push({ type: event.type, text: "", bytes: bytes.length, at });
    log("in", event.type, `${bytes.length} bytes`);
    voice.audioDelta(event, bytes);
    return;
  }
  demo.received.push({ type: event.type, text: JSON.stringify(event), at });
  log("in", event.type, summarise(event), event.type === "error");
  handleEvent(event);
}

/** What each server event does to the page. */
function handleEvent(event) {
  switch (event.type) {
    case "session.created":
      // A new OpenAI session (not after a resume: the relay restored the configuration).
      if (voiceRoute) configureSession();
      break;
    case "session.updated": {
      const td = event.session?.audio?.input?.turn_detection;
      // With it, OpenAI cancels an answer itself when VAD hears speech start.
      demo.voice.serverInterrupts = Boolean(td?.type) && td.interrupt_response !== false;
      break;
    }
    case "error":
      onError(event.error ?? {});
      break;
    case "input_audio_buffer.committed":
      conversation.userCommitted(event.item_id);
      break;
    case "input_audio_buffer.speech_started":
      voice.speechStarted();
      break;
    case "input_audio_buffer.speech_stopped":
      voice.speechStopped();
      break;
    case "conversation.item.input_audio_transcription.delta":
      conversation.userTranscript(event.item_id, event.delta ?? "", false);
      break;
    case "conversation.item.input_audio_transcription.completed":
      conversation.userTranscript(event.item_id, event.transcript ?? "", true);
      break;
    case "response.created":
      voice.responseCreated(event.response?.id ?? null);
      break;
    case "response.output_item.added":
      if (event.item?.role === "assistant") conversation.assistant(event.item.id);
      break;
    case "response.output_text.delta":
      if (typeof event.delta === "string") {
        demo.outputText += event.delta;
        conversation.assistantText(event.item_id, event.delta, "text");
      }
      break;
    case "response.output_audio_transcript.delta":
      if (typeof event.delta === "string") {
        conversation.assistantText(event.item_id, event.delta, "audio");
      }
      break;
    case "conversation.item.truncated":
      conversation.truncated(event.item_id, event.audio_end_ms);
      break;
    case "response.done":
      voice.responseDone(event.response?.id ?? null);
      refreshUsageSoon();
      break;
  }
}

/** In-band close notices and policy refusals (CONTRACT.md) get words, not just a log line. */
function onError(error) {
  if (error.type === "relay_error") {
    demo.relayClose = {
      code: String(error.code ?? ""),
      closeCode: Number(error.close_code),
      message: String(error.message ?? ""),
    };
    socketNotice = demo.relayClose;
    if (error.code === "budget_exceeded") {
      showBanner(
        "bad",
        "Budget spent: your usage budget for this period has run out, so the relay closed " +
          `the connection (${error.close_code} budget_exceeded). It renews when the period ends.`,
      );
      $("usage-state").textContent = "budget spent";
      refreshUsageSoon();
    } else {
      showBanner(
        error.close_code === 1012 ? "info" : "bad",
        `The relay is closing the connection: ${error.message} (${error.close_code} ${error.code})`,
      );
    }
  } else if (error.code === "relay_policy_violation") {
    demo.refusals.push({
      message: String(error.message ?? ""),
      param: error.param ?? null,
      eventId: error.event_id ?? null,
    });
    const param = error.param ? ` (${error.param})` : "";
    const count = demo.refusals.length > 1 ? ` · ${demo.refusals.length} refused so far` : "";
    showBanner(
      "warn",
      `The relay's session policy refused a message: ${error.message}${param}${count}`,
    );
  }
}

/** A short, payload-light description of a Realtime event. */
function summarise(event) {
  switch (event.type) {
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta":
    case "conversation.item.input_audio_transcription.delta":
      return JSON.stringify(event.delta);
    case "conversation.item.input_audio_transcription.completed":
      return JSON.stringify(event.transcript);
    case "response.done":
      return event.response?.usage
        ? `${event.response.status} · usage ${JSON.stringify(event.response.usage)}`
        : event.response?.status ?? "";
    case "error":
      return `${event.error?.code ?? ""}: ${event.error?.message ?? ""}`;
    case "conversation.item.truncated":
      return `${event.item_id} at ${event.audio_end_ms} ms`;
    case "relay.session.resumed":
      return `${event.items} items restored, ${event.skipped} skipped`;
    case "session.created":
    case "session.updated": {
      const s = event.session ?? {};
      const vad = s.audio?.input?.turn_detection?.type ?? "off";
      const stt = s.audio?.input?.transcription?.model ?? "off";
      return `model ${
        s.model ?? "?"
      }, output ${s.output_modalities}, vad ${vad}, transcription ${stt}`;
    }
    default:
      return event.response?.id ?? event.item_id ?? event.item?.id ?? "";
  }
}

// ---------------------------------------------------------------------------
// Client events
// ---------------------------------------------------------------------------

/** Asks for PCM16 both ways, input transcription, and push-to-talk or server VAD. */
function configureSession() {
  send({
    type: "session.update",
    session: {
      type: "realtime",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: AUDIO_RATE },
          transcription: { model: TRANSCRIPTION_MODEL },
          // null: the page decides turns (push-to-talk); OpenAI's default is server VAD.
          turn_detection: demo.voice.vad ? { type: "server_vad" } : null,
        },
        output: { format: { type: "audio/pcm", rate: AUDIO_RATE } },
      },
    },
  });
}

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

// ---------------------------------------------------------------------------
// The conversation as shown: one bubble per item
// ---------------------------------------------------------------------------

const conversation = (() => {
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

// ---------------------------------------------------------------------------
// Audio: one AudioContext for the microphone and for playback
// ---------------------------------------------------------------------------

const audio = (() => {
  let ctx = null;
  let moduleReady = null;
  let mic = null; // {stream, source, node}
  /** Bumped by every start and stop: a start still waiting for the device checks it. */
  let micTicket = 0;
  /** Playback items by item id: {record, chunks: [{start, dur}], cut}. */
  const items = new Map();
  const sources = new Set();
  let nextStart = 0;
  let leadS = PLAYBACK_LEAD_S;

  function playedMs(item, now) {
    let s = 0;
    for (const c of item.chunks) s += Math.min(Math.max(now - c.start, 0), c.dur);
    return s * 1000;
  }

  return {
    /** Creates (or wakes) the AudioContext; call it inside a user gesture. */
    ensureContext() {
      if (!ctx) {
        // ?audio=device: the device's rate, resampled in the worklet, as in
        // browsers that cannot feed a microphone into a 24 kHz context.
        const deviceRate = new URLSearchParams(location.search).get("audio") === "device";
        try {
          // At 24 kHz the browser resamples the microphone for us and plays
          // answers without resampling.
          ctx = new AudioContext(
            deviceRate
              ? { latencyHint: "interactive" }
              : { sampleRate: AUDIO_RATE, latencyHint: "interactive" },
          );
        } catch {
          ctx = new AudioContext({ latencyHint: "interactive" });
        }
      }
      if (ctx.state === "suspended") void ctx.resume();
      demo.voice.contextRate = ctx.sampleRate;
      return ctx;
    },

    /** Starts the microphone for the open session (once; a reconnect starts it again). */
    async startMic(fallback = false) {
      if (mic && !fallback) return;
      // A stop, or a newer start, while this one waits makes it let go of what it got.
      const ticket = fallback ? micTicket : ++micTicket;
      const stale = () => ticket !== micTicket || demo.state !== "open";
      const context = this.ensureContext();
      if (!navigator.mediaDevices?.getUserMedia) {
        throw new Error("this page needs a secure context (http://127.0.0.1 or https)");
      }
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
      const release = () => {
        for (const track of stream.getTracks()) track.stop();
      };
      if (stale()) return release();
      moduleReady ??= context.audioWorklet.addModule("/capture-worklet.js");
      await moduleReady;
      if (stale()) return release();
      let source;
      try {
        source = context.createMediaStreamSource(stream);
      } catch (error) {
        release();
        if (fallback) throw error;
        // Some browsers (Firefox) cannot feed a microphone into a context of
        // another rate: use the device's rate and let the worklet resample.
        void context.close();
        ctx = new AudioContext({ latencyHint: "interactive" });
        moduleReady = null;
        return await this.startMic(true);
      }
      const node = new AudioWorkletNode(context, "relay-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { targetRate: AUDIO_RATE, chunkSamples: CHUNK_SAMPLES },
      });
      node.port.onmessage = (event) => voice.chunk(event.data);
      source.connect(node);
      mic = { stream, source, node };
      demo.voice.micOn = true;
      demo.voice.contextRate = context.sampleRate;
      updateTalkControls();
    },

    stopMic() {
      micTicket++;
      if (!mic) return;
      mic.source.disconnect();
      mic.node.port.onmessage = null;
      mic.node.port.close();
      for (const track of mic.stream.getTracks()) track.stop();
      mic = null;
      demo.voice.micOn = false;
      demo.voice.level = 0;
      $("level").style.width = "0%";
      updateTalkControls();
    },

    /** Asks the worklet to cut its stream here (a `mark` chunk); false without a microphone. */
    markMic() {
      if (!mic) return false;
      mic.node.port.postMessage({ type: "mark" });
      return true;
    },

    /** Schedules 24 kHz PCM16 right after what is already scheduled (gapless). */
    play(itemId, responseId, bytes) {
      if (!ctx || bytes.length < 2) return null;
      let item = items.get(itemId);
      if (!item) {
        const record = {
          itemId,
          responseId,
          scheduledMs: 0,
          chunks: 0,
          gaps: 0,
          playedMs: null,
          truncatedAtMs: null,
          /** performance.now() when its first audio arrived, and how far ahead it was started. */
          firstAudioAt: performance.now(),
          leadMs: Math.round(leadS * 1000),
          /** Silence inserted because audio came late (the network, not the page). */
          gapMs: 0,
          /** The least time a later chunk arrived before it had to play (jitter headroom). */
          minMarginMs: null,
        };
        demo.voice.playback.push(record);
        item = { record, chunks: [], cut: false, firstCtxTime: ctx.currentTime };
        items.set(itemId, item);
      }
      if (item.cut) return null;
      const samples = Math.floor(bytes.length / 2);
      const view = new DataView(bytes.buffer, bytes.byteOffset, samples * 2);
      const buffer = ctx.createBuffer(1, samples, AUDIO_RATE);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples; i++) channel[i] = view.getInt16(i * 2, true) / 0x8000;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      const now = ctx.currentTime;
      let start = nextStart;
      if (item.chunks.length > 0) {
        const margin = Math.round((start - now) * 1000);
        item.record.minMarginMs = Math.min(item.record.minMarginMs ?? margin, margin);
      }
      if (start < now) {
        // Nothing queued (a new answer, or the network fell behind): lead a little.
        const late = item.chunks.length > 0;
        if (late) leadS = Math.min(leadS * 2, MAX_PLAYBACK_LEAD_S);
        const from = start;
        start = now + leadS;
        if (late) {
          item.record.gaps++;
          item.record.gapMs += Math.round((start - from) * 1000);
        }
      }
      source.start(start);
      nextStart = start + buffer.duration;
      sources.add(source);
      source.onended = () => sources.delete(source);
      item.chunks.push({ start, dur: buffer.duration });
      item.record.chunks++;
      item.record.scheduledMs += (samples * 1000) / AUDIO_RATE;
      return item.record;
    },

    /** The assistant item whose audio is audible now or still queued, or null. */
    playing() {
      if (!ctx) return null;
      for (const item of items.values()) {
        const last = item.chunks.at(-1);
        if (!item.cut && last && last.start + last.dur > ctx.currentTime) return item.record;
      }
      return null;
    },

    /** Milliseconds of an item the speaker has played so far. */
    playedMs(itemId) {
      const item = items.get(itemId);
      return item && ctx ? playedMs(item, ctx.currentTime) : 0;
    },

    /**
     * How far the audio clock has fallen behind the wall clock since an
     * item's first audio arrived (ms): a starved audio thread renders late,
     * and what it has not rendered nobody has heard.
     */
    clockLagMs(itemId) {
      const item = items.get(itemId);
      if (!item || !ctx) return 0;
      const wall = performance.now() - item.record.firstAudioAt;
      return Math.round(wall - (ctx.currentTime - item.firstCtxTime) * 1000);
    },

    /** Stops every scheduled source; returns ms played of each item that was cut. */
    stopPlayback() {
      const now = ctx?.currentTime ?? 0;
      for (const source of sources) {
        try {
          source.stop();
        } catch { /* not started yet */ }
      }
      sources.clear();
      nextStart = 0;
      for (const item of items.values()) {
        if (item.record.playedMs === null) item.record.playedMs = playedMs(item, now);
        item.cut = true;
      }
    },

    /** Refuses further audio for an item (its response was cancelled). */
    cut(itemId) {
      const item = items.get(itemId);
      if (item) item.cut = true;
    },

    reset() {
      this.stopPlayback();
      items.clear();
      leadS = PLAYBACK_LEAD_S;
    },
  };
})();

// ---------------------------------------------------------------------------
// Voice turns: push-to-talk, server VAD, barge-in
// ---------------------------------------------------------------------------

const voice = (() => {
  /**
   * The push-to-talk turn in progress: {startedAt, pieces, appends, heldMs,
   * marks (worklet marks still to come), started (the press's mark came),
   * ending (released)}.
   */
  let turn = null;
  /** The response OpenAI is generating, if any. */
  let activeResponse = null;
  const cancelled = new Set();
  /** When the user's speech ended (commit or speech_stopped), for the latency. */
  let awaitingAudioSince = null;

  /** Set by VAD's speech_started until speech_stopped. */
  let hearing = false;

  function showSent() {
    const v = demo.voice;
    $("voice-sent").textContent = `${
      (v.bytesSent / 2 / AUDIO_RATE).toFixed(2)
    } s · ${v.appendsSent} chunks`;
  }

  function sendAudio(bytes) {
    const sent = send({ type: "input_audio_buffer.append", audio: bytesToBase64(bytes) });
    if (!sent) return false;
    demo.voice.appendsSent++;
    demo.voice.bytesSent += bytes.length;
    showSent();
    return true;
  }

  async function finishTurn() {
    const t = turn;
    turn = null;
    $("talk").classList.remove("held");
    const bytes = concat(t.pieces);
    const record = {
      bytes: bytes.length,
      ms: (bytes.length / 2 / AUDIO_RATE) * 1000,
      heldMs: Math.round(t.heldMs),
      appends: t.appends,
      committed: false,
      sha256: null,
    };
    demo.voice.turns.push(record);
    if (bytes.length < MIN_COMMIT_BYTES) {
      send({ type: "input_audio_buffer.clear" });
      log("sys", "turn too short", "hold the button a little longer (OpenAI needs 100 ms)", true);
    } else if (send({ type: "input_audio_buffer.commit" })) {
      record.committed = true;
      awaitingAudioSince = performance.now();
      /** On the clock of `received[].at` (ms since Connect). */
      record.committedAt = Math.round((awaitingAudioSince - connectStartedAt) * 10) / 10;
      conversation.userAudio(record.ms);
      send({ type: "response.create" });
    }
    record.sha256 = await sha256Hex(bytes);
  }

  return {
    /** A chunk from the capture worklet: {pcm: ArrayBuffer, rms, mark}. */
    chunk({ pcm, rms, mark }) {
      const bytes = new Uint8Array(pcm);
      if (bytes.length > 0) {
        demo.voice.level = rms;
        const db = rms > 0 ? 20 * Math.log10(rms) : -100;
        const width = Math.round(Math.min(Math.max((db + 60) / 60, 0), 1) * 100);
        $("level").style.width = `${width}%`;
      }
      if (turn) {
        if (mark) turn.marks--;
        // Before the press's mark: audio from before the button went down.
        if (!turn.started) {
          turn.started = mark;
          return;
        }
        if (bytes.length > 0 && sendAudio(bytes)) {
          turn.pieces.push(bytes);
          turn.appends++;
        }
        if (mark && turn.ending && turn.marks === 0) void finishTurn();
      } else if (demo.voice.vad && bytes.length > 0) {
        sendAudio(bytes);
      }
    },

    /** Push-to-talk pressed. */
    press() {
      if (turn || !canTalk()) return;
      audio.ensureContext();
      this.bargeIn();
      turn = {
        startedAt: performance.now(),
        pieces: [],
        appends: 0,
        heldMs: 0,
        marks: 1,
        started: false,
        ending: false,
      };
      // Anything left in OpenAI's buffer is not part of this turn.
      send({ type: "input_audio_buffer.clear" });
      if (!audio.markMic()) turn.started = true;
      $("talk").classList.add("held");
    },

    /** Push-to-talk released: cut the worklet's stream, then commit and ask for an answer. */
    release() {
      if (!turn || turn.ending) return;
      turn.ending = true;
      turn.heldMs = performance.now() - turn.startedAt;
      if (audio.markMic()) turn.marks++;
      else void finishTurn();
    },

    /**
     * The user speaks over the assistant: stop playback, cancel the response
     * if it is still coming, and truncate the item to what was heard, so the
     * model's context holds no words the user never heard.
     */
    bargeIn({ serverCancelled = false } = {}) {
      const responseId = activeResponse;
      // Playing now, or (the network behind the model) an answer with nothing audible yet.
      const item = audio.playing() ??
        (responseId
          ? demo.voice.playback.findLast((p) => p.responseId === responseId && p.playedMs === null)
          : null);
      if (!item && !responseId) return;
      const heard = item ? Math.floor(audio.playedMs(item.itemId)) : 0;
      audio.stopPlayback();
      if (responseId && !cancelled.has(responseId)) {
        cancelled.add(responseId);
        // A cancel the server already made would only come back as an error.
        if (!serverCancelled && send({ type: "response.cancel", response_id: responseId })) {
          demo.voice.cancels++;
        }
      }
      if (item) {
        item.playedMs = heard;
        item.truncatedAtMs = heard;
        const truncate = {
          type: "conversation.item.truncate",
          item_id: item.itemId,
          content_index: 0,
          audio_end_ms: heard,
        };
        if (send(truncate)) {
          demo.voice.truncates.push({
            item_id: item.itemId,
            audio_end_ms: heard,
            scheduledMs: item.scheduledMs,
            sinceFirstAudioMs: Math.round(performance.now() - item.firstAudioAt),
            audioClockLagMs: audio.clockLagMs(item.itemId),
          });
          $("voice-truncated").textContent = `at ${heard} of ${Math.round(item.scheduledMs)} ms`;
        }
      }
    },

    audioDelta(event, bytes) {
      if (cancelled.has(event.response_id)) return;
      const record = audio.play(event.item_id, event.response_id ?? null, bytes);
      if (!record) return;
      if (awaitingAudioSince !== null) {
        const ms = Math.round(performance.now() - awaitingAudioSince);
        awaitingAudioSince = null;
        demo.voice.latencies.push(ms);
        $("voice-latency").textContent = `${ms} ms (speech end → first audio)`;
      }
      const s = (record.scheduledMs / 1000).toFixed(2);
      if (!record.truncatedAtMs) conversation.assistantAudio(event.item_id, `audio · ${s} s`);
    },

    responseCreated(id) {
      activeResponse = id;
    },

    responseDone(id) {
      if (id === activeResponse) activeResponse = null;
    },

    speechStarted() {
      this.bargeIn({ serverCancelled: demo.voice.serverInterrupts });
      hearing = true;
    },

    speechStopped() {
      awaitingAudioSince = performance.now();
      hearing = false;
    },

    /** What the voice side is doing, for the status pill: [text, pill class]. */
    status() {
      const v = demo.voice;
      if (!v.micOn) return ["mic off", ""];
      if (turn || hearing) return ["listening…", "open"];
      const playing = audio.playing();
      const last = playing ?? v.playback.at(-1);
      if (last) {
        const heard = last.playedMs ?? audio.playedMs(last.itemId);
        const of = `${(heard / 1000).toFixed(2)} of ${(last.scheduledMs / 1000).toFixed(2)} s`;
        $("voice-played").textContent = playing
          ? `${of} played`
          : last.truncatedAtMs !== null
          ? `${of} (interrupted)`
          : `${(last.scheduledMs / 1000).toFixed(2)} s, all played`;
      }
      if (playing) return ["speaking…", "open"];
      if (activeResponse || awaitingAudioSince !== null) return ["thinking…", "connecting"];
      return v.vad ? ["listening (VAD)", "idle"] : ["ready", "idle"];
    },

    /** The connection ended: forget the turn and the response. */
    end() {
      hearing = false;
      turn = null;
      activeResponse = null;
      awaitingAudioSince = null;
      cancelled.clear();
      $("talk").classList.remove("held");
      audio.reset();
    },
  };
})();

function canTalk() {
  return demo.state === "open" && voiceRoute && demo.voice.micOn && !demo.voice.vad;
}

function updateTalkControls() {
  const v = demo.voice;
  $("talk").disabled = !canTalk();
  $("vad").disabled = !(demo.state === "open" && voiceRoute);
  const hint = $("voice-hint");
  if (voiceRoute && demo.state === "reconnecting") {
    hint.textContent = "reconnecting: the microphone waits for the session";
  } else if (!voiceRoute || demo.state !== "open") {
    hint.textContent = "connect to the OpenAI route";
  } else if (v.micError) {
    hint.textContent = `no microphone: ${v.micError}`;
  } else if (!v.micOn) {
    hint.textContent = "waiting for the microphone…";
  } else if (v.vad) {
    hint.textContent = demo.config?.upstream === "openai"
      ? "hands-free: just speak"
      : "hands-free needs real OpenAI (the stand-in has no VAD)";
  } else {
    const path = v.contextRate === AUDIO_RATE
      ? "the browser resamples the mic"
      : `the worklet resamples ${v.contextRate} Hz`;
    hint.textContent = `hold the button or the space bar · ${path} to 24 kHz PCM16`;
  }
  showVoiceStatus();
}

/** Keeps the status pill and the playing time current (10 times a second). */
function showVoiceStatus() {
  const [text, kind] = voice.status();
  const pill = $("voice-status");
  if (pill.textContent !== text) pill.textContent = text;
  pill.className = `pill ${kind}`;
}

function setVad(on) {
  demo.voice.vad = on;
  if (demo.state === "open" && voiceRoute) {
    configureSession();
    if (!on) send({ type: "input_audio_buffer.clear" });
  }
  updateTalkControls();
}

// ---------------------------------------------------------------------------
// Usage (GET /api/usage on the demo server; 404 when metering is off)
// ---------------------------------------------------------------------------

function dollars(micros) {
  if (micros === null || micros === undefined) return "unlimited";
  const usd = micros / 1_000_000;
  return `$${usd.toFixed(Math.abs(usd) < 1 ? 4 : 2)}`;
}

let usageFollowUp = null;

/**
 * Reads usage now and once more a moment later: the relay records a
 * response's cost after it has passed it on, so a read at response.done can
 * come before the write.
 */
function refreshUsageSoon() {
  void refreshUsage();
  clearTimeout(usageFollowUp);
  usageFollowUp = setTimeout(() => void refreshUsage(), USAGE_FOLLOW_UP_MS);
}

/** Reads and shows the user's usage; resolves to whether the budget is spent. */
async function refreshUsage() {
  let body = null;
  try {
    const response = await fetch("/api/usage", {
      headers: accessToken ? { authorization: `Bearer ${accessToken}` } : {},
      cache: "no-store",
    });
    if (response.ok) body = await response.json();
  } catch { /* the demo server or the database is away: same as off */ }
  const valid = body && Number.isFinite(body.spent_micros);
  demo.usage = valid ? { metering: "on", ...body } : { metering: "off" };
  const spent = valid && body.remaining_micros !== null && body.remaining_micros <= 0;
  $("usage-state").textContent = !valid
    ? "metering off"
    : spent || demo.relayClose?.code === "budget_exceeded"
    ? "budget spent"
    : "metering on";
  $("usage-spent").textContent = valid ? dollars(body.spent_micros) : "–";
  $("usage-limit").textContent = valid ? dollars(body.limit_micros) : "–";
  $("usage-remaining").textContent = valid ? dollars(body.remaining_micros) : "–";
  $("usage-period").textContent = valid && body.period_start
    ? new Date(body.period_start).toLocaleString()
    : "–";
  $("usage").classList.toggle("spent", Boolean(spent));
  return Boolean(spent);
}

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

function bytesToBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function base64ToBytes(text) {
  try {
    const s = atob(text);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes;
  } catch {
    return new Uint8Array();
  }
}

function concat(pieces) {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

function tickExpiry() {
  if (demo.expiresAt === null) return;
  const left = Math.round(demo.expiresAt - Date.now() / 1000);
  $("expires").textContent = left > 0 ? `in ${left} s` : `expired ${-left} s ago`;
}

/** Attributes kept out of index.html so both Deno formatters agree on its layout. */
function decorate() {
  Object.assign($("ttl"), { type: "number", min: "1" });
  $("free-text").placeholder = "Say something…";
  $("send-ask").title = "conversation.item.create + response.create";
  $("send-text").title = "sends the text as one frame, unchanged (echo route: OpenAI takes JSON)";
  $("send-response").title = "response.create for a text answer, with no instructions of its own";
  $("override-instructions").title =
    "session.update setting instructions: refused in band where a session policy locks them";
  $("new-session").title = "a new session id: the next connection starts a fresh conversation";
  $("talk").title = "hold to speak (or hold the space bar); speaking over an answer interrupts it";
  $("vad").title = "session.update with audio.input.turn_detection = server_vad";
}

/** Push-to-talk from the button (pointer) and from the space bar outside text fields. */
function bindTalk() {
  const button = $("talk");
  button.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    button.setPointerCapture(event.pointerId);
    voice.press();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    button.addEventListener(type, () => voice.release());
  }
  const typing = (target) =>
    target instanceof HTMLElement && target.matches("input, textarea, select");
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target) || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    if (!event.repeat) voice.press();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    voice.release();
  });
  globalThis.addEventListener("blur", () => voice.release());
}

async function init() {
  decorate();
  demo.config = await (await fetch("/dev/config")).json();
  $("relay-url").textContent = demo.config.relayUrl;
  $("upstream").textContent = demo.config.upstream === "openai"
    ? "OpenAI (real API key)"
    : "the local OpenAI stand-in";
  setSession(storedSession() ?? newSessionId());
  $("connect").addEventListener("click", () => connect());
  $("disconnect").addEventListener("click", () => {
    if (!relay) return;
    setState("closing");
    void relay.close(1000, "user closed");
  });
  $("new-session").addEventListener("click", newConversation);
  $("send-response").addEventListener("click", sendResponseCreate);
  $("override-instructions").addEventListener("click", overrideInstructions);
  $("send-ask").addEventListener("click", ask);
  $("send-text").addEventListener("click", () => send($("free-text").value));
  $("vad").addEventListener("change", (event) => setVad(event.target.checked));
  bindTalk();
  setInterval(tickExpiry, 500);
  setInterval(showVoiceStatus, 100);
  setState("idle");
  document.body.dataset.ready = "true";
}

init().catch((error) => log("sys", "init failed", String(error), true));
