/**
 * The benches' common upstream: a Deno.serve + upgradeWebSocket echo that also
 * plays the two scripted parts the benches need (a voice session and a flood).
 * Run as its own process so it can be pinned to a core:
 * `deno run -A bench/upstream.ts --port 18080 [--port 18086 ...]` (one listener per port).
 * @module
 */

/** First bytes of a client audio append (the voice profile's trigger). */
const APPEND_PREFIX = '{"type":"input_audio_buffer.append"';
const SESSION_UPDATE_PREFIX = '{"type":"session.update"';
/** What OpenAI answers a `session.update` with (its session object left out). */
const SESSION_UPDATED =
  '{"type":"session.updated","event_id":"event_pin","session":{"type":"realtime"}}';

/** A client text message that starts the flood (slow-reader case). */
export const FLOOD_COMMAND = '{"type":"bench.flood"}';
/** Flood message size and ceiling: enough to show whether a relay's memory is bounded. */
const FLOOD_MESSAGE_BYTES = 32 * 1024;
const FLOOD_TOTAL_BYTES = 96 * 1024 * 1024;
/** The upstream keeps at most this much queued itself, so only the relay buffers. */
const FLOOD_OWN_BUFFER = 1024 * 1024;

/** The audio delta that answers one 20 ms append: same audio, OpenAI's GA event shape. */
function audioDelta(append: string, n: number): string {
  const start = append.indexOf('"audio":"');
  const audio = start < 0 ? "" : append.slice(start + 9, append.indexOf('"', start + 9));
  return `{"type":"response.output_audio.delta","event_id":"event_${n}","response_id":"resp_bench",` +
    `"item_id":"item_bench","output_index":0,"content_index":0,"delta":"${audio}"}`;
}

/** Transcript deltas per 250 appends before the finished transcript (at 25, 50, ..., 200). */
const TRANSCRIPT = "hello ".repeat(8);

/**
 * Small events a real session interleaves with audio, one every 25 appends:
 * transcript deltas, the finished transcript (at 225 of every 250, in place of
 * a delta, so the number of messages is unchanged) and a usage report (at 250).
 * With `?room=` the relay turns the deltas into `caption.delta` and the
 * finished transcript into `caption`.
 */
function smallEvent(n: number): string {
  if (n % 250 === 0) {
    return `{"type":"response.done","event_id":"event_${n}","response":{"id":"resp_bench",` +
      `"status":"completed","usage":{"total_tokens":120,"input_tokens":80,"output_tokens":40}}}`;
  }
  if (n % 250 === 225) {
    return `{"type":"response.output_audio_transcript.done","event_id":"event_${n}",` +
      `"response_id":"resp_bench","item_id":"item_bench","output_index":0,"content_index":0,` +
      `"transcript":"${TRANSCRIPT}"}`;
  }
  return `{"type":"response.output_audio_transcript.delta","event_id":"event_${n}",` +
    `"response_id":"resp_bench","item_id":"item_bench","output_index":0,"content_index":0,` +
    `"delta":"hello "}`;
}

function flood(socket: WebSocket): void {
  const chunk = new Uint8Array(FLOOD_MESSAGE_BYTES).fill(0x61);
  let sent = 0;
  const pump = () => {
    while (socket.readyState === WebSocket.OPEN && sent < FLOOD_TOTAL_BYTES) {
      if (socket.bufferedAmount > FLOOD_OWN_BUFFER) {
        return void setTimeout(pump, 5);
      }
      socket.send(chunk);
      sent += chunk.byteLength;
    }
  };
  pump();
}

/** Handles one upgraded socket: echo, plus the scripted parts. */
function serveSocket(socket: WebSocket): void {
  socket.binaryType = "arraybuffer";
  let appends = 0;
  socket.onmessage = (event) => {
    const data = event.data;
    if (typeof data === "string" && data.startsWith(APPEND_PREFIX)) {
      appends++;
      socket.send(audioDelta(data, appends));
      if (appends % 25 === 0) socket.send(smallEvent(appends));
      return;
    }
    if (data === FLOOD_COMMAND) return flood(socket);
    // A session policy's pin, sent as the upstream opens: answered as OpenAI
    // does, with `session.updated` (which the load generator does not count).
    // Left unanswered, Nagle's algorithm, which Deno's WebSocket client leaves
    // on, would hold the relay's next frame until this side's delayed ACK (40 ms).
    if (typeof data === "string" && data.startsWith(SESSION_UPDATE_PREFIX)) {
      socket.send(SESSION_UPDATED);
      return;
    }
    socket.send(data);
  };
  socket.onerror = (event) => event.preventDefault();
}

/** Starts the upstream on 127.0.0.1:`port`; any path, selects `realtime` when offered. */
export function startUpstream(port: number): Deno.HttpServer {
  return Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    (request) => {
      const offered = (request.headers.get("sec-websocket-protocol") ?? "")
        .split(",")
        .map((p) => p.trim());
      const { socket, response } = Deno.upgradeWebSocket(request, {
        ...(offered.includes("realtime") ? { protocol: "realtime" } : {}),
        idleTimeout: 0,
      });
      serveSocket(socket);
      return response;
    },
  );
}

if (import.meta.main) {
  const ports = Deno.args.flatMap((arg, i) => arg === "--port" ? [Number(Deno.args[i + 1])] : []);
  if (ports.length === 0) ports.push(18080);
  for (const port of ports) startUpstream(port);
  console.log(JSON.stringify({ event: "listening", ports }));
}
