// The demo page's entry module (index.html loads it): browser ES modules, no
// build step. It signs in a test user at the dev stack and talks to the relay
// through the repository's client library (client/relay_client.js), the way
// an app would: the library picks the conversation's session id, gets a fresh
// token for each connection (?jwt= or a jwt-<token> subprotocol), reconnects
// when the relay restarts or the network drops, and reports when the relay
// resumed the conversation. The page talks by voice (push-to-talk or server
// VAD) or text, and shows what happens, reconnects and resumes included.
// `window.relayDemo` mirrors the page's state for the e2e tests (state.js).
//
// One module per panel or shared piece, each served as /<name>.js from this
// folder (dev/demo_server.ts serves plain names only, no subfolders):
//
//   demo.js          this file: the header, the page's start, the panels' wiring
//   state.js         `$`, `relayDemo` and what one Connect shares between modules
//   connection.js    Connect/Disconnect, the library's connection, `send`
//   session.js       the session id (per tab) and the test user's tokens
//   status.js        the Connection panel's state, state line and close rows
//   events.js        what each message from the relay does to the page
//   conversation.js  the Conversation panel: bubbles and the text buttons
//   voice.js         the Talk panel: push-to-talk, server VAD, barge-in
//   audio.js         the AudioContext: microphone capture and playback
//   audio_format.js  24 kHz PCM16, chunk length, the transcription model
//   usage.js         the Usage panel (/api/usage)
//   rooms.js         the Rooms panel: a room's chat, presence and live captions
//   log.js           the Events panel
//   banner.js        the banner above the panels
//   bytes.js         base64 and SHA-256 helpers
//   capture-worklet.js  the microphone's AudioWorklet (loaded by audio.js)
//
// Adding a panel (e.g. rooms): its markup is a `<section class="card"
// id="...">` in index.html, its styles go in demo.css, and its code is one
// module here named after it (`rooms.js`) that imports what it shares from
// state.js (`$`, `demo`, `demo.config` once the page has started), log.js
// and banner.js, keeps its own state in `relayDemo.<panel>` when the tests
// should read it, and exports one `bind<Panel>()` that wires its elements;
// add that call to `start()` below. A panel with its own connection opens
// it through the client library as connection.js does, and leaves this
// conversation's connection and its `send` alone.
import { $, demo } from "./state.js";
import { log } from "./log.js";
import { restoreSession, tickExpiry } from "./session.js";
import { bindConnection } from "./connection.js";
import { setState } from "./status.js";
import { bindComposer } from "./conversation.js";
import { bindTalk, showVoiceStatus } from "./voice.js";
import { bindRooms } from "./rooms.js";

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
  $("captions-room").placeholder = "off · e.g. public:lobby";
  $("captions-room").title =
    "at the next Connect: ?room= publishes this conversation's transcripts into the room " +
    "as live captions (caption.delta, then caption)";
  $("transcribe-only").title =
    "at the next Connect: ?intent=transcription, a transcription session (no answers)";
}

/**
 * What the page's address may change: `?as=<email>` signs in another dev user
 * (a second member of a room is another user), `?relay=<ws url>` talks to
 * another relay than the dev server's (a second instance on the same stack),
 * `?captions=<room>` fills the Talk panel's "captions into room" and
 * `?intent=transcription` ticks "transcribe only". The Rooms panel reads
 * `?join=` and `?follow=` itself (rooms.js).
 */
function fromAddress(config) {
  const query = new URLSearchParams(location.search);
  const as = query.get("as")?.trim();
  if (as && as.includes("@")) $("email").value = as;
  const captions = query.get("captions")?.trim();
  if (captions) $("captions-room").value = captions;
  if (query.get("intent") === "transcription") $("transcribe-only").checked = true;
  const relay = query.get("relay")?.trim();
  if (relay && /^wss?:\/\/[^?#]+$/.test(relay.replace(/\/+$/, ""))) {
    config.relayUrl = relay.replace(/\/+$/, "");
  }
  return config;
}

async function start() {
  decorate();
  demo.config = fromAddress(await (await fetch("/dev/config")).json());
  $("relay-url").textContent = demo.config.relayUrl;
  $("upstream").textContent = demo.config.upstream === "openai"
    ? "OpenAI (real API key)"
    : "the local OpenAI stand-in";
  restoreSession();
  bindConnection();
  bindComposer();
  bindTalk();
  bindRooms();
  setInterval(tickExpiry, 500);
  setInterval(showVoiceStatus, 100);
  setState("idle");
  document.body.dataset.ready = "true";
}

start().catch((error) => log("sys", "init failed", String(error), true));
