// The Rooms panel (#rooms): one room of the relay (CONTRACT.md "Rooms" and
// "Room history, recovery and live updates over SSE"), joined as a member
// over WebSocket through the client library's joinRoom() (the newest 50 kept
// broadcasts first; it rejoins with ?since= after a restart and says whether
// nothing was lost), or followed read-only over SSE with the browser's own
// EventSource (`/relay/rooms/<room>/events?jwt=`). It shows the chat (sender,
// text, offset), who is present and their state (a name), the room's offset,
// the state in words, and live captions: `caption.delta` grows each
// item's text per role, the final `caption` replaces it (a Talk panel
// connected with "captions into room" publishes them). The panel has its own
// connection and user (the page's test user, `?as=` in the address), and
// leaves the conversation's alone. `relayDemo.rooms` mirrors it for the tests.
//
// Address parameters: `?join=<room>` joins at load as a member,
// `?follow=<room>` follows over SSE at load (the captions view), `?as=<email>`
// (demo.js) signs in another dev user, `?relay=<ws url>` (demo.js) another relay.
//
// Served as /client/relay_client.js (dev/demo_server.ts). Written relative to
// this file on disk, so Deno's tools find it too (see session.js).
import { joinRoom, ROOM_NAME_PATTERN } from "../../client/relay_client.js";
import { $, demo } from "./state.js";
import { log } from "./log.js";
import { devSession } from "./session.js";

/** What the first join asks for: the room's newest kept broadcasts (a chat's backlog). */
const BACKLOG = 50;
/** The room the panel offers first: public:* rooms are open to every signed-in user. */
const DEFAULT_ROOM = "public:lobby";

/** What the panel knows of one join (or follow), across its reconnects. */
function freshRoom(room = null, mode = "member") {
  return {
    room,
    /** "member" (WebSocket, joinRoom) or "follower" (SSE, read only). */
    mode,
    /** This page's user id in the room, and its access ("read" | "write"). */
    user: null,
    access: null,
    /**
     * The state in words, as the pill shows it: "not joined", "joining",
     * "joined", "recovered", "rejoined", "history lost", "reconnecting", "left",
     * "closed".
     */
    state: "not joined",
    stateLine: "–",
    /** The last (re)join's `recovered` (null on a first join or without history). */
    recovered: null,
    /** Rejoins that recovered everything said meanwhile. */
    recoveries: 0,
    /** `room.joined`s, the first included. */
    joins: 0,
    /** The last offset delivered in order (the `?since=` of the next rejoin). */
    offset: null,
    /** Chat messages in the room's order: {offset, user, name, text, id, at}. */
    messages: [],
    /**
     * Captions per item and role: {itemId, role, user, text, final, deltas,
     * streamed (the deltas joined, as shown before the final caption came)}.
     */
    captions: [],
    /** Who is present: {user, state}. */
    presence: [],
    /** State changes: {state, why, recovered, offset, since, code, atMs}. */
    history: [],
    /** Chat messages sent from this page, and the relay's refusals of them. */
    sent: 0,
    errors: [],
  };
}

/** What the page knows of its room; read by tests through `relayDemo.rooms`. */
const view = freshRoom();
demo.rooms = view;

/** The current join: `{leave(), send(text)}`, or null. Each join makes a new one. */
let current = null;
/** Which join the callbacks belong to: a newer one makes older ones' callbacks no-ops. */
let run = 0;
let startedAt = performance.now();

/** The user's name in the room: the presence state it sets, and sent with each message. */
function displayName() {
  return $("room-display").value.trim() || $("email").value.split("@")[0] || "someone";
}

/** A user's name as the room knows it: their presence state's name, else their id's start. */
function nameOf(user) {
  if (user === null || user === undefined) return "server";
  const entry = view.presence.find((p) => p.user === user);
  const name = entry?.state?.name;
  return typeof name === "string" && name ? name : `${String(user).slice(0, 8)}…`;
}

const PILL = {
  "joining": "connecting",
  "joined": "open",
  "recovered": "open",
  "rejoined": "open",
  "history lost": "closing",
  "reconnecting": "connecting",
  "left": "idle",
  "closed": "closed",
  "not joined": "idle",
};

function showState(state, line, info = {}) {
  view.state = state;
  view.stateLine = line;
  view.history.push({
    state,
    why: info.why ?? null,
    recovered: info.recovered ?? null,
    offset: info.offset ?? null,
    since: info.since ?? null,
    code: info.code ?? null,
    atMs: Math.round(performance.now() - startedAt),
  });
  const pill = $("room-state");
  pill.textContent = state;
  pill.className = `pill ${PILL[state] ?? "idle"}`;
  $("room-state-line").textContent = line;
  updateControls();
}

function showOffset() {
  $("room-offset").textContent = view.offset === null ? "–" : String(view.offset);
}

function updateControls() {
  const live = current !== null;
  const joined = ["joined", "recovered", "rejoined", "history lost"].includes(view.state);
  $("room-join").disabled = live;
  $("room-leave").disabled = !live;
  $("room-name").disabled = live;
  $("room-mode").disabled = live;
  // A member sends while reconnecting too: the library holds it and sends it after the rejoin.
  const canSend = live && view.mode === "member" && view.access !== "read" &&
    (joined || view.state === "reconnecting");
  $("room-send").disabled = !canSend;
  $("room-text").disabled = !canSend;
  $("room-hint").textContent = view.mode === "follower" && live
    ? "following over SSE: read only, not in the presence list"
    : "public:* rooms are open to every signed-in user";
  updateLinks();
}

/** The other dev user a "second member" link signs in as. */
function otherUser() {
  const me = $("email").value.trim().toLowerCase();
  return me === "guest@example.com" ? "dev@example.com" : "guest@example.com";
}

/** The links that open this room in a new tab as another user: a member, and an SSE follower. */
function updateLinks() {
  const room = $("room-name").value.trim() || DEFAULT_ROOM;
  const here = new URLSearchParams(location.search);
  const link = (params) => {
    const query = new URLSearchParams(params);
    const relay = here.get("relay");
    if (relay) query.set("relay", relay);
    return `/?${query}`;
  };
  $("room-second").href = link({ as: otherUser(), join: room });
  $("room-follow").href = link({ as: "reader@example.com", follow: room });
}

/** Puts the presence list on screen. */
function showPresence(list) {
  view.presence = list.map(({ user, state }) => ({ user, state: state ?? null }));
  const ul = $("room-presence");
  ul.replaceChildren();
  for (const { user, state } of view.presence) {
    const li = document.createElement("li");
    if (user === view.user) li.className = "me";
    const name = document.createElement("strong");
    name.textContent = typeof state?.name === "string" ? state.name : "(no name)";
    const id = document.createElement("span");
    id.className = "muted small";
    id.textContent = ` ${user.slice(0, 8)}…${user === view.user ? " (you)" : ""}`;
    li.append(name, id);
    if (state && Object.keys(state).some((key) => key !== "name")) {
      const rest = document.createElement("code");
      rest.textContent = ` ${JSON.stringify(state)}`;
      li.append(rest);
    }
    ul.append(li);
  }
  if (view.presence.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = view.mode === "follower" ? "(followers see who is present)" : "nobody yet";
    ul.append(li);
  }
}

/** One broadcast, whichever way it came: chat to the list, captions to theirs. */
function received(message) {
  const payload = message.payload ?? {};
  const meta = message.meta ?? {};
  const offset = typeof meta.offset === "number" ? meta.offset : null;
  if (offset !== null && (view.offset === null || offset > view.offset)) {
    view.offset = offset;
    showOffset();
  }
  if (message.event === "chat") {
    addChat({
      offset,
      user: meta.user ?? null,
      name: typeof payload.name === "string" ? payload.name : nameOf(meta.user),
      text: typeof payload.text === "string" ? payload.text : JSON.stringify(payload),
      id: meta.id ?? null,
      at: meta.at ?? null,
    });
  } else if (message.event === "caption.delta" || message.event === "caption") {
    addCaption(message.event, payload, meta.user ?? null);
  }
}

function addChat(entry) {
  // The room's order: by offset where there is one (a follower may get two
  // instances' messages out of order); each offset once.
  if (entry.offset !== null && view.messages.some((m) => m.offset === entry.offset)) return;
  let index = view.messages.length;
  if (entry.offset !== null) {
    while (
      index > 0 && view.messages[index - 1].offset !== null &&
      view.messages[index - 1].offset > entry.offset
    ) index--;
  }
  view.messages.splice(index, 0, entry);
  const li = document.createElement("li");
  if (entry.user !== null && entry.user === view.user) li.className = "mine";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = entry.name;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = entry.text;
  const offset = document.createElement("span");
  offset.className = "offset";
  offset.textContent = entry.offset === null ? "–" : `#${entry.offset}`;
  offset.title = entry.at ? `offset ${entry.offset}, accepted ${entry.at}` : "no offset";
  li.append(offset, who, text);
  const list = $("room-chat");
  $("room-chat-empty").hidden = true;
  const shown = list.querySelectorAll("li:not(#room-chat-empty)");
  list.insertBefore(li, shown[index] ?? null);
  list.scrollTop = list.scrollHeight;
}

function addCaption(event, payload, user) {
  const itemId = typeof payload.item_id === "string" ? payload.item_id : null;
  const role = payload.role === "assistant" ? "assistant" : "user";
  let entry = view.captions.find((c) => c.itemId === itemId && c.role === role);
  if (!entry) {
    entry = { itemId, role, user, text: "", final: false, deltas: 0, streamed: "" };
    view.captions.push(entry);
  }
  if (event === "caption") {
    entry.text = typeof payload.text === "string" ? payload.text : "";
    entry.final = true;
  } else if (!entry.final && typeof payload.delta === "string") {
    entry.text += payload.delta;
    entry.streamed += payload.delta;
    entry.deltas++;
  }
  showCaptions();
}

function showCaptions() {
  const box = $("room-captions");
  box.replaceChildren();
  for (const caption of view.captions) {
    const p = document.createElement("p");
    p.className = `caption ${caption.role}${caption.final ? " final" : ""}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = caption.role === "user" ? nameOf(caption.user) : "assistant";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = caption.text;
    p.append(who, text);
    box.append(p);
  }
  if (view.captions.length === 0) {
    const p = document.createElement("p");
    p.className = "muted small";
    p.textContent =
      "Captions appear here live when a Talk panel connects with “captions into room” set to this room.";
    box.append(p);
  }
  box.scrollTop = box.scrollHeight;
}

/** The relay's OpenAI route URL, e.g. `ws://127.0.0.1:8000/relay` (rooms are under it). */
function relayBase() {
  return `${demo.config.relayUrl}/relay`;
}

async function tokenFor(mine) {
  const session = await devSession($("email").value, 3600);
  if (mine === run) $("room-user").textContent = session.user.email;
  return session.access_token;
}

/** Joins as a member over WebSocket, through the client library. */
function joinAsMember(room, mine) {
  const handle = joinRoom({
    url: relayBase(),
    room,
    // Its own broadcasts come back with their offsets: one list in the room's order.
    self: true,
    last: BACKLOG,
    getToken: () => tokenFor(mine),
    onMessage: (message) => {
      if (mine === run) received(message);
    },
    onPresence: (list) => {
      if (mine !== run) return;
      showPresence(list);
      // Names may have arrived after their messages: a caption's speaker is looked up again.
      showCaptions();
    },
    onEvent: (event) => {
      if (mine !== run) return;
      if (event.type === "room.joined") {
        view.user = typeof event.user === "string" ? event.user : null;
        view.access = event.access ?? null;
      } else if (event.type === "error") {
        const error = event.error ?? {};
        view.errors.push({ code: error.code ?? null, message: error.message ?? "" });
        log("sys", "room refused", `${error.code}: ${error.message}`, true);
      }
    },
    onState: (state, info) => {
      if (mine === run) memberState(state, info);
    },
  });
  handle.setPresence({ name: displayName() });
  return {
    leave: () => void handle.close(1000, "left"),
    send: (text) => handle.send("chat", { text, name: displayName() }),
    pending: () => handle.pending.messages,
    offset: () => handle.offset,
  };
}

function memberState(state, info) {
  if (state === "connecting") {
    showState("joining", `joining ${info.room}…`, info);
  } else if (state === "open") {
    view.joins++;
    view.recovered = info.recovered ?? null;
    if (info.recovered === true) view.recoveries++;
    const words = info.why === "history_lost"
      ? "history lost"
      : info.why === "rejoined"
      ? (info.recovered === true ? "recovered" : "rejoined")
      : "joined";
    const line = words === "history lost"
      ? `rejoined, but broadcasts after #${info.since} are gone: what shows may miss some`
      : words === "recovered"
      ? `rejoined from #${info.since}: nothing said meanwhile was lost`
      : words === "rejoined"
      ? "rejoined (the relay keeps no history here)"
      : `joined as ${view.access ?? "?"} · the newest ${BACKLOG} kept messages first`;
    showState(words, line, info);
    log("sys", `room ${words}`, `${info.room} · ${line}`);
  } else if (state === "reconnecting") {
    const close = info.code ? ` (${info.code} ${info.reason || info.why})` : ` (${info.why})`;
    showState(
      "reconnecting",
      `reconnecting in ${((info.delayMs ?? 0) / 1000).toFixed(1)} s${close}`,
      info,
    );
    log("sys", "room reconnecting", `${info.room}${close}`);
  } else {
    current = null;
    const left = info.why === "client";
    const unsent = info.unsent ? `; ${info.unsent} not sent` : "";
    showState(
      left ? "left" : "closed",
      left ? `left the room${unsent}` : `closed: ${info.why}${info.code ? ` (${info.code})` : ""}`,
      info,
    );
    log("sys", left ? "room left" : "room closed", `${info.room} · ${info.why}`, !left);
  }
}

/**
 * Follows the room over SSE: read only, with the browser's EventSource. On
 * the relay's `close` event (shutdown, token expiry) it comes back with a
 * fresh token and `?since=` the last offset it holds in order.
 */
function followOverSse(room, mine) {
  let source = null;
  let timer;
  let attempt = 0;
  /** Every offset up to this one was shown (null: take the first one that comes). */
  let base = null;
  const seen = new Set();
  let joinedOnce = false;
  let stopped = false;

  const advance = (offset) => {
    seen.add(offset);
    if (base === null) base = offset - 1;
    while (seen.has(base + 1)) seen.delete(++base);
    view.offset = Math.max(view.offset ?? 0, offset);
  };

  const again = (why, code = null) => {
    source?.close();
    source = null;
    if (stopped || mine !== run) return;
    const delayMs = Math.min(500 * 2 ** attempt, 8000);
    attempt++;
    showState(
      "reconnecting",
      `reconnecting in ${(delayMs / 1000).toFixed(1)} s (${code ? `${code} ` : ""}${why})`,
      { why, code },
    );
    timer = setTimeout(open, delayMs);
  };

  async function open() {
    if (stopped || mine !== run) return;
    let token;
    try {
      token = await tokenFor(mine);
    } catch {
      again("token_unavailable");
      return;
    }
    if (stopped || mine !== run) return;
    const address = new URL(`${relayBase().replace(/^ws/, "http")}/rooms/${room}/events`);
    address.searchParams.set("jwt", token);
    const since = joinedOnce ? base ?? view.offset : null;
    if (since !== null) address.searchParams.set("since", String(since));
    else address.searchParams.set("last", String(BACKLOG));
    const es = new EventSource(address.href);
    source = es;
    const on = (type, handle) =>
      es.addEventListener(type, (event) => {
        if (es !== source || mine !== run) return;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        handle(data);
      });
    on("room.joined", (joined) => {
      attempt = 0;
      view.joins++;
      view.user = joined.user ?? null;
      view.access = joined.access ?? null;
      const rejoin = joinedOnce;
      joinedOnce = true;
      if (joined.offset === null && base === null) base = 0;
      view.recovered = joined.recovered ?? null;
      if (joined.recovered === true && rejoin) view.recoveries++;
      if (joined.recovered === false && typeof joined.offset === "number") {
        // What was missed is gone (or the history was reset): start over from what comes.
        base = joined.offset < (since ?? 0) ? joined.offset : null;
        seen.clear();
      }
      const words = joined.recovered === false
        ? "history lost"
        : rejoin
        ? (joined.recovered === true ? "recovered" : "rejoined")
        : "joined";
      const line = words === "recovered"
        ? `followed again from #${since}: nothing said meanwhile was lost`
        : words === "history lost"
        ? `followed again, but broadcasts after #${since} are gone`
        : words === "rejoined"
        ? "followed again (the relay keeps no history here)"
        : `following over SSE as ${view.access ?? "?"} · the newest ${BACKLOG} kept messages first`;
      showState(words, line, {
        why: rejoin ? "rejoined" : "joined",
        recovered: joined.recovered ?? null,
        offset: joined.offset ?? null,
        since,
      });
      showPresence(Array.isArray(joined.presence) ? joined.presence : []);
      showOffset();
      log("sys", `room ${words}`, `${room} over SSE · ${line}`);
    });
    on("broadcast", (message) => {
      const offset = message.meta?.offset;
      if (typeof offset === "number") {
        if (base !== null && offset <= base) return; // shown already
        advance(offset);
      }
      received(message);
      showOffset();
    });
    const presence = (change) => {
      const list = view.presence.filter((p) => p.user !== change.user);
      if (change.type !== "presence.leave") list.push({ user: change.user, state: change.state });
      showPresence(list);
      showCaptions();
    };
    on("presence.join", presence);
    on("presence.state", presence);
    on("presence.leave", presence);
    // The relay ends the stream (shutdown, token expiry): come back with a fresh token.
    on("close", (close) => again(close.reason ?? "closed", close.code ?? null));
    es.addEventListener("error", () => {
      if (es !== source || mine !== run) return;
      // A dropped stream the browser retries itself (with Last-Event-ID); a refused one it
      // does not: then the panel comes back itself, with a fresh token.
      if (es.readyState === EventSource.CLOSED) again("refused");
      else showState("reconnecting", "reconnecting: the stream dropped", { why: "dropped" });
    });
  }

  showState("joining", `following ${room} over SSE…`, { why: "start" });
  void open();
  return {
    leave: () => {
      stopped = true;
      clearTimeout(timer);
      source?.close();
      source = null;
      current = null;
      showState("left", "stopped following", { why: "client" });
    },
    send: () => {
      throw new Error("a follower only reads");
    },
    pending: () => 0,
    offset: () => base,
  };
}

/** Starts a join (or a follow) of the room named in the panel; a fresh list. */
function join(mode = $("room-mode").value) {
  const room = $("room-name").value.trim();
  if (!ROOM_NAME_PATTERN.test(room)) {
    showState("not joined", "a room name is 1-100 of A-Z a-z 0-9 _ . : -");
    return;
  }
  current?.leave();
  const mine = ++run;
  startedAt = performance.now();
  Object.assign(view, freshRoom(room, mode));
  $("room-mode").value = mode;
  $("room-chat").querySelectorAll("li:not(#room-chat-empty)").forEach((li) => li.remove());
  $("room-chat-empty").hidden = false;
  showPresence([]);
  showCaptions();
  showOffset();
  current = mode === "follower" ? followOverSse(room, mine) : joinAsMember(room, mine);
  updateControls();
}

function leave() {
  const leaving = current;
  if (!leaving) return;
  if (view.mode === "follower") leaving.leave();
  else leaving.leave(); // the library's closed state says "left"
}

function sendChat() {
  const input = $("room-text");
  const text = input.value.trim();
  if (!text || !current || view.mode !== "member") return;
  try {
    current.send(text);
    view.sent++;
    input.value = "";
    const waiting = current.pending();
    $("room-pending").textContent = waiting > 0 ? `${waiting} waiting for the relay` : "";
  } catch (error) {
    log("sys", "room: not sent", String(error.message ?? error), true);
  }
}

/** Wires the Rooms panel; `?join=` / `?follow=` in the address join at once. */
export function bindRooms() {
  const query = new URLSearchParams(location.search);
  const auto = query.get("follow") ?? query.get("join");
  $("room-name").value = auto && ROOM_NAME_PATTERN.test(auto) ? auto : DEFAULT_ROOM;
  $("room-display").placeholder = $("email").value.split("@")[0];
  $("room-text").placeholder = "Say something to the room…";
  $("captions-hint").textContent = "caption.delta grows a line; the final caption replaces it";
  $("room-join").addEventListener("click", () => join());
  $("room-leave").addEventListener("click", leave);
  $("room-send").addEventListener("click", sendChat);
  $("room-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      sendChat();
    }
  });
  $("room-name").addEventListener("input", updateLinks);
  $("email").addEventListener("input", () => {
    $("room-display").placeholder = $("email").value.split("@")[0];
    updateLinks();
  });
  // Acknowledged messages leave the "waiting" count.
  setInterval(() => {
    if (!current) return;
    const waiting = current.pending();
    $("room-pending").textContent = waiting > 0 ? `${waiting} waiting for the relay` : "";
    view.offset = view.mode === "member" ? current.offset() : view.offset;
    showOffset();
  }, 250);
  showPresence([]);
  showCaptions();
  updateControls();
  if (auto && ROOM_NAME_PATTERN.test(auto)) join(query.has("follow") ? "follower" : "member");
}
