/**
 * Baseline: rooms the way a Deno app keeps them in one isolate, as in Deno's
 * chat examples: `Deno.serve` + `Deno.upgradeWebSocket` on `/rooms/<room>`, a
 * `Map<room, Set<WebSocket>>`, and each message's `event.data` forwarded as it
 * is to every other open socket of the room. No auth, no limits, no envelope.
 * `deno run -A bench/baselines/rooms_deno_map.ts --port P`
 * @module
 */
const arg = (name: string, fallback: string) => {
  const at = Deno.args.indexOf(name);
  return at >= 0 ? Deno.args[at + 1] ?? fallback : fallback;
};
const port = Number(arg("--port", "18094"));

const rooms = new Map<string, Set<WebSocket>>();

Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (req) => {
  const match = /^\/rooms\/([^/]+)\/?$/.exec(new URL(req.url).pathname);
  if (!match) return new Response("not found", { status: 404 });
  const room = match[1]!;
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onopen = () => {
    let members = rooms.get(room);
    if (!members) rooms.set(room, members = new Set());
    members.add(socket);
  };
  socket.onmessage = (event) => {
    for (const peer of rooms.get(room) ?? []) {
      if (peer !== socket && peer.readyState === WebSocket.OPEN) {
        peer.send(event.data);
      }
    }
  };
  socket.onclose = () => {
    const members = rooms.get(room);
    members?.delete(socket);
    if (members?.size === 0) rooms.delete(room);
  };
  socket.onerror = (e) => e.preventDefault();
  return response;
});
console.log(JSON.stringify({ event: "listening", port }));
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
