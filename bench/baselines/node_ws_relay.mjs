// Baseline: the relay pattern of openai-realtime-console's relay server, on
// Node with `ws`: one upstream socket per client, client messages queued until
// the upstream opens, every message forwarded with its frame type. No auth, no
// limits. `node bench/baselines/node_ws_relay.mjs --port P --upstream ws://127.0.0.1:U`
import { WebSocket, WebSocketServer } from "ws";

const arg = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] ?? fallback : fallback;
};
const port = Number(arg("--port", "18083"));
const upstreamBase = arg("--upstream", "ws://127.0.0.1:18080");

const wss = new WebSocketServer({ host: "127.0.0.1", port });
wss.on("connection", (client, req) => {
  const upstream = new WebSocket(upstreamBase + req.url, ["realtime"]);
  const queue = [];
  upstream.on("open", () => {
    for (const [data, isBinary] of queue) {
      upstream.send(data, { binary: isBinary });
    }
    queue.length = 0;
  });
  client.on("message", (data, isBinary) => {
    if (upstream.readyState === WebSocket.OPEN) {
      upstream.send(data, { binary: isBinary });
    } else queue.push([data, isBinary]);
  });
  upstream.on("message", (data, isBinary) => {
    if (client.readyState === WebSocket.OPEN) {
      client.send(data, { binary: isBinary });
    }
  });
  client.on("close", () => upstream.close());
  upstream.on("close", () => client.close());
  client.on("error", () => upstream.terminate());
  upstream.on("error", () => client.terminate());
});
wss.on(
  "listening",
  () => console.log(JSON.stringify({ event: "listening", port })),
);
