// Baseline: Socket.IO rooms as its docs show them: the client names its room
// at connect (`io(url, { query: { room }, auth: { token } })`), the server
// `socket.join(room)`s it and relays each "m" event with
// `socket.to(room).emit("m", payload)` (everyone in the room but the sender).
// WebSocket transport only (no long-polling), on both sides, so that every
// contender is measured over the same kind of connection; the default
// in-memory adapter (one process), no auth check.
// `node bench/baselines/rooms_socketio.cjs --port P` (CommonJS, as the
// Socket.IO docs' require() examples: `deno check bench/` then leaves the
// Node-only import alone).
const { createServer } = require("node:http");
const { Server } = require("socket.io");

const arg = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] ?? fallback : fallback;
};
const port = Number(arg("--port", "18096"));

const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => {
  const room = String(socket.handshake.query.room ?? "");
  if (!room) return socket.disconnect(true);
  socket.join(room);
  socket.on("m", (payload) => socket.to(room).emit("m", payload));
});
http.listen(
  port,
  "127.0.0.1",
  () => console.log(JSON.stringify({ event: "listening", port })),
);
