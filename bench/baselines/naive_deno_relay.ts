/**
 * Baseline: the relay pattern of the Supabase and OpenAI Deno examples.
 * Upgrade, open `new WebSocket(upstream)`, forward `e.data` both ways, queue
 * until the upstream opens. No auth, no limits, no accounting.
 * `deno run -A bench/baselines/naive_deno_relay.ts --port P --upstream ws://127.0.0.1:U`
 * @module
 */
const arg = (name: string, fallback: string) => {
  const at = Deno.args.indexOf(name);
  return at >= 0 ? Deno.args[at + 1] ?? fallback : fallback;
};
const port = Number(arg("--port", "18082"));
const upstreamBase = arg("--upstream", "ws://127.0.0.1:18080");

Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (req) => {
  const url = new URL(req.url);
  const { socket, response } = Deno.upgradeWebSocket(req);
  const upstream = new WebSocket(upstreamBase + url.pathname + url.search, [
    "realtime",
  ]);
  const queue: unknown[] = [];
  upstream.onopen = () => {
    for (const m of queue) upstream.send(m as string);
    queue.length = 0;
  };
  socket.onmessage = (e) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(e.data);
    else queue.push(e.data);
  };
  upstream.onmessage = (e) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(e.data);
  };
  socket.onclose = () => upstream.readyState <= WebSocket.OPEN && upstream.close();
  upstream.onclose = () => socket.readyState <= WebSocket.OPEN && socket.close();
  socket.onerror = (e) => e.preventDefault();
  upstream.onerror = (e) => e.preventDefault();
  return response;
});
console.log(JSON.stringify({ event: "listening", port }));
// Exit cleanly on SIGTERM so that `--cpu-prof` (BENCH_NAIVE_FLAGS) writes its profile.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
