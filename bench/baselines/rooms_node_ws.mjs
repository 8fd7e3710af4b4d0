// Baseline: rooms on Node with `ws`, the way its README's broadcast example
// and most chat tutorials keep them: a Map of room -> Set of sockets, each
// message forwarded as it is (same frame type) to every other open socket of
// the room. No auth, no limits, no envelope.
// `node bench/baselines/rooms_node_ws.mjs --port P`; members connect to /rooms/<room>.
import { WebSocket, WebSocketServer } from "ws";

const arg = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] ?? fallback : fallback;
};
const port = Number(arg("--port", "18095"));

const rooms = new Map();
const wss = new WebSocketServer({ host: "127.0.0.1", port });
wss.on("connection", (socket, req) => {
  const match = /^\/rooms\/([^/?]+)\/?(\?|$)/.exec(req.url ?? "");
  if (!match) return socket.close(1008, "not a room");
  const room = match[1];
  let members = rooms.get(room);
  if (!members) rooms.set(room, members = new Set());
  members.add(socket);
  socket.on("message", (data, isBinary) => {
    for (const peer of rooms.get(room) ?? []) {
      if (peer !== socket && peer.readyState === WebSocket.OPEN) {
        peer.send(data, { binary: isBinary });
      }
    }
  });
  socket.on("close", () => {
    const members = rooms.get(room);
    members?.delete(socket);
    if (members?.size === 0) rooms.delete(room);
  });
  socket.on("error", () => socket.terminate());
});
wss.on(
  "listening",
  () => console.log(JSON.stringify({ event: "listening", port })),
);
