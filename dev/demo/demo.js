// The demo page's script: plain browser JavaScript, no build step.
// It gets a dev token from the dev stack, opens a WebSocket to the relay the
// way a browser app would (?jwt= or a jwt-<token> subprotocol), and shows what
// happens. `window.relayDemo` mirrors the page's state for the e2e tests.
"use strict";

const $ = (id) => document.getElementById(id);

/** What the page knows of one connection; a new connection starts from this. */
function freshConnection() {
  return {
    opened: false,
    protocol: null,
    closeCode: null,
    closeReason: null,
    wasClean: null,
    closedAfterMs: null,
    lastRttMs: null,
    received: [],
    sent: 0,
    outputText: "",
  };
}

/** What the page knows; read by tests through `window.relayDemo`. */
const demo = {
  config: null,
  state: "idle",
  user: null,
  expiresAt: null,
  ...freshConnection(),
};
globalThis.relayDemo = demo;

let socket = null;
let connectStartedAt = 0;
let pendingSince = null;

function setState(state) {
  demo.state = state;
  const pill = $("state");
  pill.textContent = state;
  pill.className = `pill ${state}`;
  const open = state === "open";
  const busy = state === "connecting" || state === "open" || state === "closing";
  $("connect").disabled = busy;
  $("disconnect").disabled = !busy;
  for (const id of ["send-response", "send-session", "send-ask", "send-text"]) {
    $(id).disabled = !open;
  }
}

function clock() {
  const d = new Date();
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Adds one line to the event log; `dir` is "in", "out" or "sys". */
function log(dir, type, detail = "", isError = false) {
  const li = document.createElement("li");
  if (isError) li.className = "error";
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
  const list = $("log");
  list.append(li);
  list.scrollTop = list.scrollHeight;
  $("counts").textContent = `${demo.received.length} in · ${demo.sent} out`;
}

function resetConnectionView() {
  Object.assign(demo, freshConnection());
  for (const id of ["protocol", "close-code", "close-reason", "close-clean", "rtt"]) {
    $(id).textContent = "–";
  }
  $("output").textContent = "";
  $("log").replaceChildren();
}

/** Signs in the test user at the dev stack's Auth stand-in. */
async function getToken() {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: $("email").value, expiresInS: Number($("ttl").value) }),
  });
  if (!response.ok) throw new Error(`token request failed: ${response.status}`);
  const session = await response.json();
  demo.user = session.user.email;
  demo.expiresAt = session.expires_at;
  $("user").textContent = `${session.user.email} (${session.user.id.slice(0, 8)}…)`;
  return session.access_token;
}

/** Alters one signature character so the token no longer verifies. */
function spoil(token) {
  const [header, payload, signature] = token.split(".");
  const i = 5;
  const swapped = signature[i] === "A" ? "B" : "A";
  return `${header}.${payload}.${signature.slice(0, i)}${swapped}${signature.slice(i + 1)}`;
}

async function connect() {
  resetConnectionView();
  setState("connecting");
  const mode = $("token-mode").value;
  const url = new URL(`${demo.config.relayUrl}${$("route").value}`);
  let protocols = [];
  try {
    if (mode !== "none") {
      const token = await getToken();
      const sent = mode === "bad" ? spoil(token) : token;
      if (mode === "protocol") protocols = ["realtime", `jwt-${sent}`];
      else url.searchParams.set("jwt", sent);
    }
  } catch (error) {
    log("sys", "token error", String(error.message ?? error), true);
    setState("closed");
    return;
  }
  log(
    "sys",
    "connecting",
    `${url.pathname}${mode === "protocol" ? " (token in subprotocol)" : ""}`,
  );
  connectStartedAt = performance.now();
  socket = new WebSocket(url, protocols);
  const current = socket;

  current.addEventListener("open", () => {
    if (current !== socket) return;
    demo.opened = true;
    demo.protocol = current.protocol;
    $("protocol").textContent = current.protocol || "(none)";
    setState("open");
    log("sys", "open", `${Math.round(performance.now() - connectStartedAt)} ms`);
  });
  current.addEventListener("message", (event) => {
    if (current !== socket) return;
    onMessage(event.data);
  });
  current.addEventListener("error", () => {
    if (current !== socket) return;
    log("sys", "error", "the browser gives no detail; see the close code", true);
  });
  current.addEventListener("close", (event) => {
    if (current !== socket) return;
    demo.closeCode = event.code;
    demo.closeReason = event.reason;
    demo.wasClean = event.wasClean;
    demo.closedAfterMs = Math.round(performance.now() - connectStartedAt);
    $("close-code").textContent = String(event.code);
    $("close-reason").textContent = event.reason || "(none)";
    $("close-clean").textContent = event.wasClean ? "yes" : "no";
    setState("closed");
    log("sys", "close", `${event.code} ${event.reason}`, !event.wasClean || event.code !== 1000);
    pendingSince = null;
  });
}

function onMessage(data) {
  const text = typeof data === "string" ? data : `(binary, ${data.size ?? data.byteLength} bytes)`;
  if (pendingSince !== null) {
    demo.lastRttMs = Math.round(performance.now() - pendingSince);
    $("rtt").textContent = `${demo.lastRttMs} ms`;
    pendingSince = null;
  }
  let type = "message";
  let detail = text;
  let isError = false;
  try {
    const event = JSON.parse(text);
    if (event && typeof event.type === "string") {
      type = event.type;
      detail = summarise(event);
      isError = type === "error";
      if (type === "response.output_text.delta" && typeof event.delta === "string") {
        demo.outputText += event.delta;
        $("output").textContent = demo.outputText;
      }
    }
  } catch {
    // Not JSON (e.g. the echo route): show it as it came.
  }
  demo.received.push({ type, text });
  log("in", type, detail, isError);
}

/** A short, payload-light description of a Realtime event. */
function summarise(event) {
  switch (event.type) {
    case "response.output_text.delta":
      return JSON.stringify(event.delta);
    case "response.done":
      return event.response?.usage ? `usage ${JSON.stringify(event.response.usage)}` : "";
    case "error":
      return `${event.error?.code ?? ""}: ${event.error?.message ?? ""}`;
    case "session.created":
    case "session.updated":
      return `model ${event.session?.model ?? "?"}, output ${event.session?.output_modalities}`;
    default:
      return event.response?.id ?? event.item_id ?? event.item?.id ?? "";
  }
}

function send(payload) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const text = typeof payload === "string" ? payload : JSON.stringify(payload);
  socket.send(text);
  demo.sent++;
  pendingSince ??= performance.now();
  let type = "message";
  try {
    type = JSON.parse(text).type ?? type;
  } catch { /* raw text */ }
  log("out", type, `${text.length} chars`);
}

function sendResponseCreate() {
  send({
    type: "response.create",
    response: { output_modalities: ["text"], instructions: "Greet the user in one sentence." },
  });
}

function sendSessionUpdate() {
  send({
    type: "session.update",
    session: { type: "realtime", output_modalities: ["text"], instructions: "Be brief." },
  });
}

function ask() {
  const text = $("free-text").value.trim();
  if (!text) return;
  send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  });
  send({ type: "response.create", response: { output_modalities: ["text"] } });
}

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
  $("send-text").title = "sends the text as one frame, unchanged";
}

async function init() {
  decorate();
  demo.config = await (await fetch("/dev/config")).json();
  $("relay-url").textContent = demo.config.relayUrl;
  $("upstream").textContent = demo.config.upstream === "openai"
    ? "OpenAI (real API key)"
    : "the local OpenAI stand-in";
  $("connect").addEventListener("click", () => void connect());
  $("disconnect").addEventListener("click", () => {
    if (!socket) return;
    setState("closing");
    socket.close(1000, "user closed");
  });
  $("send-response").addEventListener("click", sendResponseCreate);
  $("send-session").addEventListener("click", sendSessionUpdate);
  $("send-ask").addEventListener("click", ask);
  $("send-text").addEventListener("click", () => send($("free-text").value));
  setInterval(tickExpiry, 500);
  setState("idle");
  document.body.dataset.ready = "true";
}

init().catch((error) => log("sys", "init failed", String(error), true));
