// The conversation's session id (kept per tab, so a reload continues the
// conversation) and the test user's tokens from the dev stack's Auth
// stand-in: a fresh one for each connection.
//
// Served as /client/relay_client.js (dev/demo_server.ts). Written relative to
// this file on disk, so Deno's tools find it too: in the browser, from
// /session.js, the two `..` stop at the site's root and it is the same URL.
import { isSessionId, newSessionId } from "../../client/relay_client.js";
import { $, demo, page } from "./state.js";
import { log } from "./log.js";

/** Where the page keeps its session id: per tab, so a reload continues the conversation. */
const SESSION_KEY = "relay-demo-session";

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

/** Takes up the tab's conversation, or starts one when the tab holds none. */
export function restoreSession() {
  setSession(storedSession() ?? newSessionId());
}

/** A new session id: the next connection starts a fresh conversation. */
export function renewSession() {
  setSession(newSessionId());
}

/**
 * Signs in `email` at the dev stack's Auth stand-in (any address: each is a
 * user of its own, so a second tab with another address is another user):
 * the session, `{access_token, expires_at, user: {id, email}}`.
 */
export async function devSession(email, expiresInS = 3600) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, expiresInS }),
  });
  if (!response.ok) throw new Error(`token request failed: ${response.status}`);
  return await response.json();
}

/** Signs in the test user at the dev stack's Auth stand-in (a fresh token per connection). */
async function fetchToken(mine) {
  const session = await devSession($("email").value, Number($("ttl").value));
  if (mine === page.run) {
    demo.user = session.user.email;
    demo.expiresAt = session.expires_at;
    page.accessToken = session.access_token;
    $("user").textContent = `${session.user.email} (${session.user.id.slice(0, 8)}…)`;
  }
  return session.access_token;
}

/** The token the library sends for this connection, as the token mode says. */
export async function tokenFor(mode, mine) {
  // Sent as no token at all: PageSocket leaves it off.
  if (mode === "none") return "left-off";
  try {
    const token = await fetchToken(mine);
    return mode === "bad" ? spoil(token) : token;
  } catch (error) {
    if (mine === page.run) log("sys", "token error", String(error.message ?? error), true);
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

/** Counts down to the token's expiry in the Connection panel (#expires). */
export function tickExpiry() {
  if (demo.expiresAt === null) return;
  const left = Math.round(demo.expiresAt - Date.now() / 1000);
  $("expires").textContent = left > 0 ? `in ${left} s` : `expired ${-left} s ago`;
}
