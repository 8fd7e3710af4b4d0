// The client library under Node, driven by node_test.ts: it connects through
// the relay, reports every state and event as a JSON line on stdout, holds
// HELD_TEXTS (sent when it first starts reconnecting) and obeys commands on
// stdin ({"cmd":"send","event":{...}} or {"cmd":"close"}). It exits once the
// conversation is closed.
//
// Environment: RELAY_URL, TOKEN_URL (GET: a fresh access token per request),
// CLIENT_MODULE (path of relay_client.js), WS_FROM (a package.json whose
// node_modules has ws, passed in as `WebSocket`; unset: the library finds ws
// itself), HELD_TEXTS (JSON array), MAX_ATTEMPTS, TOKEN_IN (the tokenIn option).
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const env = process.env;
const { connect } = await import(pathToFileURL(env.CLIENT_MODULE).href);
const WebSocket = env.WS_FROM ? createRequire(env.WS_FROM)("ws").WebSocket : undefined;
const heldTexts = JSON.parse(env.HELD_TEXTS ?? "[]");
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
let held = false;

const relay = connect({
  url: env.RELAY_URL,
  getToken: async () => {
    const answer = await fetch(env.TOKEN_URL);
    return await answer.text();
  },
  ...(WebSocket ? { WebSocket } : {}),
  ...(env.TOKEN_IN ? { tokenIn: env.TOKEN_IN } : {}),
  backoff: { baseMs: 20, factor: 2, capMs: 200, jitter: 0 },
  maxAttempts: Number(env.MAX_ATTEMPTS ?? 10),
  onEvent: (event) => print({ kind: "event", type: event.type }),
  onState: (state, info) => {
    print({ kind: "state", state, info, held: relay.held });
    if (state === "reconnecting" && !held) {
      held = true;
      for (const text of heldTexts) {
        relay.send({
          type: "conversation.item.create",
          item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
        });
      }
      print({ kind: "held", held: relay.held });
    }
    if (state === "closed") process.exit(0);
  },
});
print({ kind: "session", session: relay.session, node: process.version });

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "send") relay.send(command.event);
  if (command.cmd === "close") relay.close();
});
