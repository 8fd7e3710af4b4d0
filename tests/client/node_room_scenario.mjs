// The room client under Node, driven by node_test.ts: it joins ROOM through
// the relay with joinRoom(), reports every state, delivered broadcast and
// pending count as a JSON line on stdout, and obeys commands on stdin
// ({"cmd":"send","payload":{...}} or {"cmd":"close"}). It exits once the room
// is closed.
//
// Environment: RELAY_URL, TOKEN_URL (GET: a fresh access token per request),
// CLIENT_MODULE (path of relay_client.js), WS_FROM (a package.json whose
// node_modules has ws, passed in as `WebSocket`; unset: the library finds ws
// itself), ROOM.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const env = process.env;
const { joinRoom } = await import(pathToFileURL(env.CLIENT_MODULE).href);
const WebSocket = env.WS_FROM ? createRequire(env.WS_FROM)("ws").WebSocket : undefined;
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const room = joinRoom({
  url: env.RELAY_URL,
  room: env.ROOM,
  getToken: async () => {
    const answer = await fetch(env.TOKEN_URL);
    return await answer.text();
  },
  ...(WebSocket ? { WebSocket } : {}),
  backoff: { baseMs: 20, factor: 2, capMs: 200, jitter: 0 },
  // Patient: an instance restarting (a new process starting) refuses connections for a while.
  maxAttempts: 1000,
  connectTimeoutMs: 30_000,
  onMessage: (message) => print({ kind: "message", payload: message.payload, meta: message.meta }),
  onEvent: (event) => {
    // onEvent comes before the library handles the event: count after it.
    if (event.type === "broadcast.ack") {
      queueMicrotask(() => print({ kind: "pending", pending: room.pending }));
    }
  },
  onPresence: (list) => print({ kind: "presence", users: list.map((p) => p.user) }),
  onState: (state, info) => {
    print({ kind: "state", state, info, offset: room.offset });
    if (state === "closed") process.exit(0);
  },
});

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "send") room.send("chat", command.payload);
  if (command.cmd === "close") room.close();
});
