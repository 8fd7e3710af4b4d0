/**
 * The load generator: one process, pinned by bench/main.ts to its own core,
 * running one case against one target and printing one JSON result line.
 * `deno run -A bench/load.ts <config.json>`; see {@linkcode LoadConfig}.
 * @module
 */
import { rawClient } from "../tests/stand_ins/raw_client.ts";
import { FLOOD_COMMAND } from "./upstream.ts";
import {
  joinAll,
  roomFanout,
  roomIdle,
  type RoomLoadConfig,
  type RoomMember,
  roomRecovery,
  roomSseIdle,
} from "./rooms_load.ts";

/** What to run: the case, its URLs (one per user; tokens already in them) and sizes. */
export interface LoadConfig {
  readonly mode:
    | "latency"
    | "throughput"
    | "handshake"
    | "idle"
    | "voice"
    | "slow";
  readonly urls: string[];
  readonly protocols?: string[];
  readonly durationS: number;
  readonly connections: number;
  readonly inflight: number;
  readonly messageBytes: number;
  readonly binary: boolean;
  /**
   * Send Realtime client events (a relay with a session policy refuses
   * anything else): text payloads become `conversation.item.create` events of
   * the same size, and the one-message echo sends `input_audio_buffer.clear`.
   */
  readonly events?: boolean;
  /**
   * voice: room members (distinct users, `/relay/rooms/<room>?jwt=`) joined
   * before the sessions open and idle throughout; they count the captions the
   * relay publishes into their room (`?room=` on the sessions' URLs).
   */
  readonly roomMembers?: RoomMember[];
}

const WARMUP_MS = 300;
/** Voice sessions run this long before the CPU window opens (handshakes, JIT). */
const VOICE_WARMUP_MS = 1000;

function open(
  url: string,
  protocols: string[] | undefined,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    // A resumable-session target names a new conversation per connection.
    const ws = new WebSocket(
      url.replace("{session}", crypto.randomUUID()),
      protocols,
    );
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = (e) => {
      e.preventDefault();
      reject(
        new Error(`connect failed: ${(e as ErrorEvent).message ?? "error"}`),
      );
    };
  });
}

function closed(ws: WebSocket): Promise<CloseEvent> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) {
      return resolve(new CloseEvent("close"));
    }
    ws.addEventListener("close", (e) => resolve(e), { once: true });
  });
}

/** Opens `n` connections, at most `parallel` handshakes at a time. */
async function openMany(
  config: LoadConfig,
  n: number,
  parallel = 50,
): Promise<WebSocket[]> {
  const sockets: WebSocket[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      sockets[i] = await open(
        config.urls[i % config.urls.length]!,
        config.protocols,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return sockets;
}

function payload(config: LoadConfig): string | Uint8Array {
  if (config.binary) return new Uint8Array(config.messageBytes).fill(0x5a);
  if (!config.events) return "x".repeat(config.messageBytes);
  // A user text item of the requested size (or just over): the bench upstream
  // echoes it as it is, one message back for each sent.
  const head =
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"';
  const tail = '"}]}}';
  return `${head}${
    "x".repeat(Math.max(1, config.messageBytes - head.length - tail.length))
  }${tail}`;
}

/** The one message a handshake or idle connection exchanges. */
function pingFor(config: LoadConfig): string {
  return config.events ? '{"type":"input_audio_buffer.clear"}' : "ping";
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** OpenAI's answer to a session policy's pin: not an echo of anything the generator sent. */
const SESSION_UPDATED = '{"type":"session.updated"';

/** Calls `handle` for every message on `ws` but the answer to a policy's pin. */
function onReply(ws: WebSocket, handle: (event: MessageEvent) => void): void {
  ws.onmessage = (event) => {
    if (
      typeof event.data === "string" && event.data.startsWith(SESSION_UPDATED)
    ) return;
    handle(event);
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ??
    NaN;
}

async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(sockets.map((ws) => {
    const done = closed(ws);
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "bench done");
    return done;
  }));
}

async function latency(config: LoadConfig) {
  const [ws] = await openMany(config, 1);
  const data = payload(config);
  const samples: number[] = [];
  const warmupEnd = performance.now() + WARMUP_MS;
  const end = warmupEnd + config.durationS * 1000;
  await new Promise<void>((resolve) => {
    let sentAt = 0;
    onReply(ws!, () => {
      const now = performance.now();
      if (now > warmupEnd) samples.push((now - sentAt) * 1000);
      if (now > end) return resolve();
      sentAt = performance.now();
      ws!.send(data);
    });
    sentAt = performance.now();
    ws!.send(data);
  });
  await closeAll([ws!]);
  const sorted = Float64Array.from(samples).sort();
  return {
    samples: sorted.length,
    p50_us: percentile(sorted, 0.5),
    p99_us: percentile(sorted, 0.99),
    p999_us: percentile(sorted, 0.999),
  };
}

async function throughput(config: LoadConfig) {
  const sockets = await openMany(config, config.connections);
  const data = payload(config);
  let counting = false;
  let received = 0;
  let stop = false;
  for (const ws of sockets) {
    onReply(ws, () => {
      if (counting) received++;
      if (!stop) ws.send(data);
    });
    for (let i = 0; i < config.inflight; i++) ws.send(data);
  }
  await sleep(WARMUP_MS);
  counting = true;
  const start = performance.now();
  await sleep(config.durationS * 1000);
  const seconds = (performance.now() - start) / 1000;
  counting = false;
  stop = true;
  const msgs = received / seconds;
  await sleep(100);
  await closeAll(sockets);
  return { msgs_per_s: msgs, mb_per_s: (msgs * config.messageBytes) / 1e6 };
}

async function handshake(config: LoadConfig) {
  const data = payload(config);
  const end = performance.now() + config.durationS * 1000;
  let done = 0;
  let failed = 0;
  const worker = async (w: number) => {
    for (let k = 0; performance.now() < end; k++) {
      const url = config
        .urls[(w + config.connections * (k % 2)) % config.urls.length]!;
      try {
        const ws = await open(url, config.protocols);
        const echoed = new Promise((r) => onReply(ws, r));
        ws.send(data);
        await echoed;
        const gone = closed(ws);
        ws.close(1000, "bench done");
        await gone;
        done++;
      } catch {
        failed++;
        await sleep(5);
      }
    }
  };
  const start = performance.now();
  await Promise.all(
    Array.from({ length: config.connections }, (_, w) => worker(w)),
  );
  return {
    handshakes_per_s: done / ((performance.now() - start) / 1000),
    failed,
  };
}

const WARM_CONNECTIONS = 20;

async function echoOnce(sockets: WebSocket[], ping: string): Promise<void> {
  await Promise.all(sockets.map((ws) => {
    const echoed = new Promise((r) => onReply(ws, r));
    ws.send(ping);
    return echoed;
  }));
}

async function nextLine(): Promise<void> {
  await Deno.stdin.read(new Uint8Array(16));
}

/**
 * Warms the server up (a few connections opened, used, closed: lazy module
 * loads and JIT are not per-connection memory), says `warm` and waits for a
 * line; then opens the connections, proves each relays, says `ready` and waits
 * for a line to close them.
 */
async function idle(config: LoadConfig) {
  const warm = await openMany(config, WARM_CONNECTIONS);
  await echoOnce(warm, pingFor(config));
  await closeAll(warm);
  console.log(JSON.stringify({ stage: "warm" }));
  await nextLine();
  const sockets = await openMany(config, config.connections);
  await echoOnce(sockets, pingFor(config));
  console.log(JSON.stringify({ stage: "ready" }));
  await nextLine();
  const start = performance.now();
  await closeAll(sockets);
  return { opened: sockets.length, close_ms: performance.now() - start };
}

/** 20 ms of 24 kHz mono PCM16, base64: the size of a browser's append every 20 ms. */
function appendEvent(): string {
  const pcm = new Uint8Array(960);
  for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 37) & 0xff;
  const audio = btoa(String.fromCharCode(...pcm));
  return JSON.stringify({ type: "input_audio_buffer.append", audio });
}

/** What a room member received of the captions published into its room. */
interface CaptionCount {
  deltas: number;
  finished: number;
  other: number;
}

const CAPTION_DELTA = '{"type":"broadcast","event":"caption.delta"';
const CAPTION = '{"type":"broadcast","event":"caption"';

/** Counts the captions each member hears (a prefix test per message: the load core is busy). */
function countCaptions(members: WebSocket[]): CaptionCount[] {
  return members.map((ws) => {
    const count = { deltas: 0, finished: 0, other: 0 };
    ws.onmessage = (e) => {
      const data = e.data;
      if (typeof data !== "string") return;
      if (data.startsWith(CAPTION_DELTA)) count.deltas++;
      else if (data.startsWith(CAPTION)) count.finished++;
      else count.other++;
    };
    return count;
  });
}

/**
 * The transcript events the bench upstream sends a session for `appends`
 * appends (bench/upstream.ts: one small event every 25 appends; of every 250,
 * the 225th is the finished transcript and the 250th `response.done`).
 */
function transcriptEvents(appends: number): { deltas: number; finished: number } {
  const small = Math.floor(appends / 25);
  const finished = Math.floor((appends + 25) / 250);
  return { deltas: small - finished - Math.floor(appends / 250), finished };
}

async function voice(config: LoadConfig) {
  // Members first, so that they hear every caption of the window.
  const members = config.roomMembers?.length ? await joinAll(config.roomMembers, "relay") : [];
  const heard = countCaptions(members);
  const sockets = await openMany(config, config.connections);
  const event = appendEvent();
  let received = 0;
  let sent = 0;
  const sentBy = new Array<number>(sockets.length).fill(0);
  sockets.forEach((ws) => onReply(ws, () => received++));
  const start = performance.now();
  const end = start + config.durationS * 1000 + VOICE_WARMUP_MS;
  let steady = false;
  // One tick for all sessions, each sending its 20 ms of audio.
  for (let tick = 0; performance.now() < end; tick++) {
    if (!steady && performance.now() - start > VOICE_WARMUP_MS) {
      // The orchestrator reads the server's CPU from here to `steady_end`.
      console.log(JSON.stringify({ stage: "steady" }));
      steady = true;
    }
    const due = start + tick * 20;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    for (let i = 0; i < sockets.length; i++) {
      const ws = sockets[i]!;
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(event);
        sent++;
        sentBy[i]!++;
      }
    }
  }
  console.log(JSON.stringify({ stage: "steady_end" }));
  await sleep(200);
  const seconds = (performance.now() - start) / 1000;
  const stillOpen = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
  await closeAll(sockets);
  // The last captions may trail the sessions' last replies by a little.
  if (members.length) await sleep(300);
  await closeAll(members);
  return {
    sent,
    received,
    session_seconds: seconds * config.connections,
    still_open: stillOpen,
    ...(members.length ? captionFigures(heard, sentBy) : {}),
  };
}

/** What the members heard against what the sessions' transcripts were: the proof that captions flowed. */
function captionFigures(heard: CaptionCount[], sentBy: number[]) {
  const expected = { deltas: 0, finished: 0 };
  for (const appends of sentBy) {
    const events = transcriptEvents(appends);
    expected.deltas += events.deltas;
    expected.finished += events.finished;
  }
  const deltas = heard.map((c) => c.deltas);
  const finished = heard.map((c) => c.finished);
  const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  return {
    caption_members: heard.length,
    /** Per member, if every session's transcripts became captions. */
    caption_deltas_expected: expected.deltas,
    captions_expected: expected.finished,
    caption_deltas_received: sum(deltas),
    captions_received: sum(finished),
    caption_deltas_per_member_min: Math.min(...deltas),
    captions_per_member_min: Math.min(...finished),
    member_other_messages: sum(heard.map((c) => c.other)),
  };
}

/** Asks for a flood, stops reading for `durationS`, then reads to the close frame. */
async function slow(config: LoadConfig) {
  // Warm-up first (one connection opened, used, closed), so that the server's
  // one-time module loading is not counted as memory the flood cost.
  const warm = await openMany(config, 1);
  await echoOnce(warm, pingFor(config));
  await closeAll(warm);
  console.log(JSON.stringify({ stage: "warm" }));
  await nextLine();
  const client = await rawClient(
    config.urls[0]!.replace("{session}", crypto.randomUUID()),
    {
      protocols: config.protocols ?? [],
    },
  );
  await client.send(FLOOD_COMMAND);
  await sleep(config.durationS * 1000);
  let bytes = 0;
  const drain = client.readUntilClose((e) => {
    if (e.kind === "message") bytes += e.data.length;
  });
  // Long enough to drain what a bounded relay kept; a relay that never closes is "still open".
  const timeout = sleep(Math.max(3, config.durationS) * 1000).then(() => "timeout" as const);
  const outcome = await Promise.race([drain, timeout]);
  client.abort();
  if (outcome === "timeout") {
    return { close_code: null, reason: "still open", read_bytes: bytes };
  }
  return {
    close_code: outcome?.code ?? null,
    reason: outcome?.reason ?? "",
    read_bytes: bytes,
  };
}

if (import.meta.main) {
  const config: LoadConfig | RoomLoadConfig = JSON.parse(
    await Deno.readTextFile(Deno.args[0]!),
  );
  const result = "wire" in config
    ? await {
      room_fanout: roomFanout,
      room_idle: roomIdle,
      room_recovery: roomRecovery,
      room_sse_idle: roomSseIdle,
    }[config.mode](config)
    : await { latency, throughput, handshake, idle, voice, slow }[config.mode](
      config,
    );
  console.log(JSON.stringify({ result }));
  Deno.exit(0);
}
