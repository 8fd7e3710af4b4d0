/**
 * The room modes of the load generator (bench/load.ts runs them): members join
 * rooms over one of three wires, then either broadcast in a closed loop
 * (fan-out latency and deliveries per second) or sit idle while the
 * orchestrator reads the server's memory.
 *
 * Every member is a Deno `WebSocket` in this one process, whatever the server:
 * the relay and the two `Map` baselines get the relay's client frame
 * (`{"type":"broadcast","event":"m","payload":...}`), Socket.IO gets the frames
 * `socket.io-client` sends over its WebSocket transport (Engine.IO 4, Socket.IO
 * 5: `40{auth}` to connect, `42["m",payload]` per event, `3` for each ping), so
 * that no contender is charged for a different client stack.
 * @module
 */

/** How a member speaks to the server. */
export type RoomWire = "raw" | "relay" | "socketio";

/** One member: its URL (room and token in it), its room and a label to split latencies by. */
export interface RoomMember {
  readonly url: string;
  readonly room: string;
  readonly group: string;
}

/** A room case for the load generator. */
export interface RoomLoadConfig {
  readonly mode: "room_fanout" | "room_idle" | "room_recovery" | "room_sse_idle";
  readonly wire: RoomWire;
  /** room_sse_idle: followers, their URL `http://.../relay/rooms/<room>/events?jwt=...`. */
  readonly members: RoomMember[];
  /** room_idle: members opened, proven and closed first (module loads and JIT are not per member). */
  readonly warm?: RoomMember[];
  /** room_fanout: how many broadcasts are in flight at once (one per sender slot). */
  readonly senders?: number;
  /** room_fanout: the members that take turns to send (default: all). */
  readonly senderPool?: number[];
  readonly payloadBytes?: number;
  readonly durationS: number;
  readonly warmupMs?: number;
  /** room_recovery, room_sse_idle: a server's publish, `http://.../relay/rooms/<room>` (room appended). */
  readonly publishBase?: string;
  /** room_recovery, room_sse_idle: the relay's secret key, for the publish. */
  readonly secretKey?: string;
  /** room_recovery: the numbers of missed broadcasts to recover (the room is filled with the most, plus 10). */
  readonly missed?: number[];
  /** room_recovery: joins timed per number missed. */
  readonly joins?: number;
}

/** A broadcast that has not reached every receiver after this long is counted lost and the next one goes. */
const LOST_AFTER_MS = 2000;
/** How long members may take to hear each other before the case gives up. */
const SYNC_TIMEOUT_MS = 20_000;

/** What a member puts in a broadcast's payload: sender, sequence, send time. */
interface Stamp {
  f: number;
  s: number;
  t: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redact = (url: string) => url.replace(/jwt=[^&]*/, "jwt=<token>");

/** The payload of a broadcast, `bytes` long as JSON: `{"f":..,"s":..,"t":..,"p":"xx.."}`. */
function stamp(f: number, s: number, bytes: number): string {
  const head = `{"f":${f},"s":${s},"t":${performance.now().toFixed(3)},"p":"`;
  return `${head}${"x".repeat(Math.max(0, bytes - head.length - 2))}"}`;
}

/** The frame a member sends to broadcast `payload` (JSON text). */
function frame(wire: RoomWire, payload: string): string {
  return wire === "socketio"
    ? `42["m",${payload}]`
    : `{"type":"broadcast","event":"m","payload":${payload}}`;
}

/** Joins one member; resolves once it hears the room (open; `room.joined`; Socket.IO's connect ack). */
function join(member: RoomMember, wire: RoomWire): Promise<WebSocket> {
  let url = member.url;
  let auth: string | null = null;
  if (wire === "socketio") {
    // socket.io-client sends `auth` in its CONNECT packet, not in the URL.
    const u = new URL(url);
    auth = u.searchParams.get("jwt");
    u.searchParams.delete("jwt");
    url = u.href;
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let settled = false;
    const done = (error: string | null) => {
      if (settled) return;
      settled = true;
      if (error === null) resolve(ws);
      else reject(new Error(`join ${redact(url)}: ${error}`));
    };
    ws.onerror = (e) => {
      e.preventDefault();
      done((e as ErrorEvent).message ?? "error");
    };
    ws.onclose = (e) => done(`closed ${e.code} ${e.reason}`);
    ws.onopen = () => {
      if (wire === "raw") done(null);
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return;
      if (wire === "relay") {
        const message = JSON.parse(e.data);
        if (message.type === "room.joined") done(null);
        else if (message.type === "error") done(`refused: ${e.data}`);
      } else if (wire === "socketio") {
        if (e.data.startsWith("0{")) {
          ws.send(auth ? `40${JSON.stringify({ token: auth })}` : "40");
        } else if (e.data.startsWith("40")) done(null);
        else if (e.data.startsWith("44")) done(`connect_error ${e.data}`);
      }
    };
  });
}

/** Joins every member, at most `parallel` handshakes at a time (load.ts's voice captions too). */
export async function joinAll(
  members: RoomMember[],
  wire: RoomWire,
  parallel = 50,
): Promise<WebSocket[]> {
  const sockets: WebSocket[] = new Array(members.length);
  let next = 0;
  const worker = async () => {
    while (next < members.length) {
      const i = next++;
      sockets[i] = await join(members[i]!, wire);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(parallel, members.length) }, worker),
  );
  return sockets;
}

/** Refusals and errors the relay sent in band (for the result, so a broken run says why). */
const trouble: string[] = [];

/**
 * Calls `onStamp` with the stamp of each broadcast `ws` receives: the payload
 * of the relay's envelope or of the raw frame a baseline forwarded (both are
 * `{"type":"broadcast",...,"payload":...}`), or the argument of a Socket.IO
 * event; anything else (presence, acks, pings) is answered or ignored.
 */
function listen(
  ws: WebSocket,
  wire: RoomWire,
  onStamp: (stamp: Stamp) => void,
): void {
  ws.onmessage = (e) => {
    const data = e.data;
    if (typeof data !== "string") return;
    if (wire === "socketio") {
      if (data === "2") ws.send("3");
      else if (data.startsWith('42["m",')) {
        onStamp(JSON.parse(data.slice(2))[1]);
      }
      return;
    }
    const message = JSON.parse(data);
    if (message.type === "broadcast") onStamp(message.payload);
    else if (message.type === "error" && trouble.length < 5) {
      trouble.push(data.slice(0, 300));
    }
  };
}

async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(sockets.map((ws) =>
    new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve();
      ws.addEventListener("close", () => resolve(), { once: true });
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "bench done");
    })
  ));
}

/**
 * Until each sender's probe has reached every other member of its room (a
 * member may be in the room only once the server has seen its open), sends
 * probes every 150 ms.
 */
async function meet(
  sockets: WebSocket[],
  members: RoomMember[],
  wire: RoomWire,
  senders: number[],
): Promise<void> {
  const roomSize = new Map<string, number>();
  for (const m of members) {
    roomSize.set(m.room, (roomSize.get(m.room) ?? 0) + 1);
  }
  const heard = new Map<number, Set<number>>(
    senders.map((f) => [f, new Set()]),
  );
  sockets.forEach((ws, r) => listen(ws, wire, (p) => heard.get(p.f)?.add(r)));
  const deadline = performance.now() + SYNC_TIMEOUT_MS;
  for (let k = 1;; k++) {
    const waiting = senders.filter((f) => heard.get(f)!.size < roomSize.get(members[f]!.room)! - 1);
    if (waiting.length === 0) return;
    if (performance.now() > deadline) {
      throw new Error(
        `members did not hear each other within ${SYNC_TIMEOUT_MS} ms (${waiting.length} of ${senders.length} senders unheard) ${
          trouble.join(" ")
        }`,
      );
    }
    for (const f of waiting) sockets[f]!.send(frame(wire, stamp(f, -k, 64)));
    await sleep(150);
  }
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ??
    NaN;
}

function sorted(values: number[]): Float64Array {
  return Float64Array.from(values).sort();
}

/** CPU seconds this process has used (utime + stime). */
function ownCpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** What one measured window of a fan-out saw. */
interface Window {
  seconds: number;
  deliveries: number;
  lost: number;
  loadCpu: number;
  /** Send to each receiver, µs, by the receiver's group. */
  byGroup: Map<string, number[]>;
  /** Send to the last receiver, µs, one per broadcast. */
  toLast: number[];
}

/**
 * Fan-out in two windows: first one broadcast in flight at a time (latency:
 * send to each receiver, one sample per delivery, and to the last receiver,
 * one per broadcast), then `senders` at a time (deliveries per second, and
 * latency under that load). Each sender slot sends its next broadcast the
 * moment every other member has received its last one, and members take turns
 * to send, as people do in a chat: Deno's WebSocket client leaves Nagle's
 * algorithm on, and a socket that sent twice in a row while receiving nothing
 * would wait for the server's delayed ACK (docs/BENCHMARKS.md, "Nagle"); a
 * member that has received since it last sent has had its data ACKed.
 * `steady` and `steady_end` lines frame the second window, for the
 * orchestrator's reading of the server's CPU.
 */
/** What one room run measured, by name (numbers, or the relay's errors). */
export type RoomRunResult = Record<string, number | string | null>;

export async function roomFanout(config: RoomLoadConfig): Promise<RoomRunResult> {
  const wire = config.wire;
  const members = config.members;
  const sockets = await joinAll(members, wire);
  const pool = config.senderPool ?? members.map((_, i) => i);
  const most = Math.min(Math.max(1, config.senders ?? 1), pool.length);
  await meet(sockets, members, wire, pool);
  const bytes = config.payloadBytes ?? 64;
  const receivers = members.length - 1;
  const seq = new Array<number>(most).fill(0);
  const remaining = new Array<number>(most).fill(0);
  const sentAt = new Array<number>(most).fill(0);
  let running = 0;
  let measuring = false;
  let windowStart = Infinity;
  let w: Window;
  const send = (f: number) => {
    if (f >= running) return;
    seq[f]! += 1;
    remaining[f] = receivers;
    sentAt[f] = performance.now();
    sockets[pool[(f + most * seq[f]!) % pool.length]!]!.send(
      frame(wire, stamp(f, seq[f]!, bytes)),
    );
  };
  sockets.forEach((ws, r) => {
    const group = members[r]!.group;
    listen(ws, wire, (p) => {
      if (p.s !== seq[p.f]) return; // a probe, or a broadcast already given up on
      const now = performance.now();
      const counted = measuring && p.t >= windowStart;
      if (measuring) w.deliveries++;
      if (counted) w.byGroup.get(group)!.push((now - p.t) * 1000);
      if (--remaining[p.f]! === 0) {
        if (counted) w.toLast.push((now - p.t) * 1000);
        send(p.f);
      }
    });
  });
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (let f = 0; f < running; f++) {
      if (now - sentAt[f]! > LOST_AFTER_MS) {
        if (measuring) w.lost += remaining[f]!;
        send(f);
      }
    }
  }, 250);
  const measure = async (
    senders: number,
    frameCpu: boolean,
  ): Promise<Window> => {
    w = {
      seconds: 0,
      deliveries: 0,
      lost: 0,
      loadCpu: 0,
      byGroup: new Map(members.map((m) => [m.group, []])),
      toLast: [],
    };
    running = senders;
    for (let f = 0; f < senders; f++) send(f);
    await sleep(config.warmupMs ?? 500);
    if (frameCpu) console.log(JSON.stringify({ stage: "steady" }));
    const cpu0 = ownCpuSeconds();
    windowStart = performance.now();
    measuring = true;
    await sleep(config.durationS * 1000);
    measuring = false;
    w.seconds = (performance.now() - windowStart) / 1000;
    w.loadCpu = ownCpuSeconds() - cpu0;
    if (frameCpu) console.log(JSON.stringify({ stage: "steady_end" }));
    running = 0;
    await sleep(200); // what is still in flight arrives, uncounted
    return w;
  };
  const one = await measure(1, most === 1);
  const many = most > 1 ? await measure(most, true) : one;
  clearInterval(watchdog);
  await closeAll(sockets);
  const all = sorted([...one.byGroup.values()].flat());
  const last = sorted(one.toLast);
  const loaded = sorted([...many.byGroup.values()].flat());
  const result: RoomRunResult = {
    members: members.length,
    senders: most,
    p50_us: percentile(all, 0.5),
    p99_us: percentile(all, 0.99),
    last_receiver_p50_us: percentile(last, 0.5),
    last_receiver_p99_us: percentile(last, 0.99),
    latency_samples: all.length,
    deliveries: many.deliveries,
    deliveries_per_s: many.deliveries / many.seconds,
    broadcasts_per_s: many.toLast.length / many.seconds,
    loaded_p50_us: percentile(loaded, 0.5),
    loaded_p99_us: percentile(loaded, 0.99),
    lost: one.lost + (many === one ? 0 : many.lost),
    // Near 1, the load generator's core, not the server's, may be what limits the rate.
    load_cpu_share: many.loadCpu / many.seconds,
    relay_errors: trouble.length ? trouble.join(" ") : null,
  };
  if (one.byGroup.size > 1) {
    for (const [group, samples] of one.byGroup) {
      const s = sorted(samples);
      result[`${group}_p50_us`] = percentile(s, 0.5);
      result[`${group}_p99_us`] = percentile(s, 0.99);
      result[`${group}_samples`] = s.length;
    }
  }
  return result;
}

async function nextLine(): Promise<void> {
  await Deno.stdin.read(new Uint8Array(16));
}

/** Proves that every member hears its room: the last member of each room broadcasts to the rest. */
async function proveRooms(
  sockets: WebSocket[],
  members: RoomMember[],
  wire: RoomWire,
) {
  const lastOf = new Map<string, number>();
  members.forEach((m, i) => lastOf.set(m.room, i));
  await meet(sockets, members, wire, [...lastOf.values()]);
}

/**
 * Idle members: a warm-up (members joined, proven, gone), `warm`, a line from
 * the orchestrator; then every member joined and proven, `ready`, a line, and
 * all close.
 */
export async function roomIdle(config: RoomLoadConfig): Promise<RoomRunResult> {
  const warmMembers = config.warm ?? [];
  if (warmMembers.length) {
    const warm = await joinAll(warmMembers, config.wire);
    await proveRooms(warm, warmMembers, config.wire);
    await closeAll(warm);
  }
  console.log(JSON.stringify({ stage: "warm" }));
  await nextLine();
  const sockets = await joinAll(config.members, config.wire);
  await proveRooms(sockets, config.members, config.wire);
  console.log(JSON.stringify({ stage: "ready" }));
  await nextLine();
  const start = performance.now();
  await closeAll(sockets);
  return {
    members: sockets.length,
    rooms: new Set(config.members.map((m) => m.room)).size,
    close_ms: performance.now() - start,
    relay_errors: trouble.length ? trouble.join(" ") : null,
  };
}

/** A server's publish of one broadcast (`body`, JSON) into `room`; resolves to its offset. */
async function publish(
  config: RoomLoadConfig,
  room: string,
  body: string,
): Promise<number | null> {
  const res = await fetch(`${config.publishBase}${room}`, {
    method: "POST",
    headers: { authorization: `Bearer ${config.secretKey}`, "content-type": "application/json" },
    body,
  });
  const text = await res.text();
  if (res.status !== 202) {
    throw new Error(`publish into ${room}: ${res.status} ${text.slice(0, 300)}`);
  }
  return (JSON.parse(text) as { offset: number | null }).offset;
}

/** Publishes `n` broadcasts of `bytes` into `room`, `parallel` at a time; resolves to the highest offset. */
async function fill(
  config: RoomLoadConfig,
  room: string,
  n: number,
  bytes: number,
  parallel = 8,
): Promise<number> {
  let next = 0;
  let latest = 0;
  const worker = async () => {
    while (next < n) {
      const s = next++;
      const offset = await publish(config, room, `{"event":"m","payload":${stamp(-1, s, bytes)}}`);
      if (offset === null) throw new Error(`publish into ${room}: no offset (is history on?)`);
      latest = Math.max(latest, offset);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return latest;
}

/**
 * One recovering join: opens `url` with `&since=<since>`, then times
 * `room.joined` and the last of the `missed` replayed broadcasts, checking
 * that the relay said `recovered: true` and replayed since+1 .. since+missed
 * in order; resolves once the socket has closed again.
 */
function recoverOnce(
  url: string,
  since: number,
  missed: number,
): Promise<{ joinedMs: number; doneMs: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const ws = new WebSocket(`${url}&since=${since}`);
    let settled = false;
    let joinedMs = NaN;
    let got = 0;
    const timer = setTimeout(
      () => fail(`no full replay within ${SYNC_TIMEOUT_MS} ms`),
      SYNC_TIMEOUT_MS,
    );
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "bench done");
      reject(new Error(`recover ${redact(url)} since ${since}: ${why}`));
    };
    const done = (doneMs: number) => {
      settled = true;
      clearTimeout(timer);
      ws.onclose = () => resolve({ joinedMs, doneMs });
      ws.close(1000, "bench done");
    };
    ws.onerror = (e) => {
      e.preventDefault();
      fail((e as ErrorEvent).message ?? "error");
    };
    ws.onclose = (e) => fail(`closed ${e.code} ${e.reason}`);
    ws.onmessage = (e) => {
      if (settled || typeof e.data !== "string") return;
      const message = JSON.parse(e.data);
      if (message.type === "room.joined") {
        joinedMs = performance.now() - start;
        if (message.recovered !== true || message.offset !== since + missed) {
          return fail(`room.joined said offset ${message.offset}, recovered ${message.recovered}`);
        }
        if (missed === 0) done(joinedMs);
      } else if (message.type === "broadcast") {
        const offset = message.meta?.offset;
        if (offset !== since + got + 1) {
          return fail(`replay gave offset ${offset}, expected ${since + got + 1}`);
        }
        if (++got === missed) done(performance.now() - start);
      } else if (message.type === "error") fail(`refused: ${e.data.slice(0, 300)}`);
    };
  });
}

function median(values: number[]): number {
  const s = sorted(values);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * Recovery: fills one room through the server's publish with the largest
 * number of `missed` plus 10 broadcasts (so the room is trimmed as it
 * fills), then, for each number missed in turn (interleaved), joins with
 * `?since=` that many behind the room's latest offset, `joins` times each,
 * one join at a time, members rotating over the users of `members`.
 */
export async function roomRecovery(config: RoomLoadConfig): Promise<RoomRunResult> {
  const missed = config.missed ?? [10, 100, 1000];
  const joins = config.joins ?? 3;
  const room = config.members[0]!.room;
  const bytes = config.payloadBytes ?? 64;
  const total = Math.max(...missed) + 10;
  const fillStart = performance.now();
  const latest = await fill(config, room, total, bytes);
  const fillS = (performance.now() - fillStart) / 1000;
  let turn = 0;
  const urlOf = () => config.members[turn++ % config.members.length]!.url;
  // Warm-up (module loads, JIT, the token cache), uncounted.
  for (let i = 0; i < 3; i++) await recoverOnce(urlOf(), latest - missed[0]!, missed[0]!);
  const times = new Map(missed.map((n) => [n, { joined: [] as number[], done: [] as number[] }]));
  for (let j = 0; j < joins; j++) {
    for (const n of missed) {
      const { joinedMs, doneMs } = await recoverOnce(urlOf(), latest - n, n);
      times.get(n)!.joined.push(joinedMs);
      times.get(n)!.done.push(doneMs);
    }
  }
  const result: RoomRunResult = {
    room_filled_with: total,
    latest_offset: latest,
    fill_publishes_per_s: total / fillS,
    joins_per_count: joins,
  };
  for (const [n, t] of times) {
    const done = sorted(t.done);
    result[`recover_${n}_ms`] = median(t.done);
    result[`recover_${n}_min_ms`] = done[0]!;
    result[`recover_${n}_max_ms`] = done[done.length - 1]!;
    result[`joined_${n}_ms`] = median(t.joined);
    result[`replay_${n}_us_per_msg`] = ((median(t.done) - median(t.joined)) / n) * 1000;
  }
  result.relay_errors = trouble.length ? trouble.join(" ") : null;
  return result;
}

/** An SSE follower over a raw TCP connection: one connection each, nothing pooled. */
interface Follower {
  readonly conn: Deno.TcpConn;
  readonly room: string;
  /** `event: broadcast` lines read so far. */
  broadcasts: number;
  /** Settles when the stream has ended. */
  reading: Promise<void>;
}

const encoder = new TextEncoder();

/** Opens the event stream of `member.url`; resolves once `event: room.joined` arrives. */
async function follow(member: RoomMember): Promise<Follower> {
  const u = new URL(member.url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  const request = encoder.encode(
    `GET ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\naccept: text/event-stream\r\n\r\n`,
  );
  for (let at = 0; at < request.length;) at += await conn.write(request.subarray(at));
  let joined!: () => void;
  let failed!: (error: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    joined = resolve;
    failed = reject;
  });
  const follower: Follower = { conn, room: member.room, broadcasts: 0, reading: Promise.resolve() };
  follower.reading = (async () => {
    const buffer = new Uint8Array(8192);
    const decoder = new TextDecoder();
    let rest = "";
    let head = true;
    let isJoined = false;
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      rest += decoder.decode(buffer.subarray(0, n), { stream: true });
      if (head) {
        const end = rest.indexOf("\r\n\r\n");
        if (end < 0) continue;
        const status = rest.slice(0, rest.indexOf("\r\n"));
        if (!status.startsWith("HTTP/1.1 200 ")) {
          failed(
            new Error(`follow ${redact(member.url)}: ${status} ${rest.slice(end + 4, end + 300)}`),
          );
          break;
        }
        head = false;
        rest = rest.slice(end + 4);
      }
      // Chunk-size lines of the chunked body fall between events and match nothing.
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line === "event: broadcast") follower.broadcasts++;
        else if (line === "event: room.joined") {
          isJoined = true;
          joined();
        }
      }
    }
    if (!isJoined) failed(new Error(`follow ${redact(member.url)}: ended before room.joined`));
  })();
  await ready;
  return follower;
}

/** Opens every follower, at most `parallel` at a time. */
async function followAll(members: RoomMember[], parallel = 50): Promise<Follower[]> {
  const followers: Follower[] = new Array(members.length);
  let next = 0;
  const worker = async () => {
    while (next < members.length) {
      const i = next++;
      followers[i] = await follow(members[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, members.length) }, worker));
  return followers;
}

/** Proves that every follower hears its room: one server publish into each room reaches all of them. */
async function proveFollowers(config: RoomLoadConfig, followers: Follower[]): Promise<void> {
  const want = new Map(followers.map((f) => [f, f.broadcasts + 1]));
  for (const room of new Set(followers.map((f) => f.room))) {
    await publish(config, room, `{"event":"m","payload":${stamp(-1, 0, 64)}}`);
  }
  const deadline = performance.now() + SYNC_TIMEOUT_MS;
  for (;;) {
    const waiting = followers.filter((f) => f.broadcasts < want.get(f)!).length;
    if (waiting === 0) return;
    if (performance.now() > deadline) {
      throw new Error(
        `${waiting} of ${followers.length} followers did not hear their room's publish`,
      );
    }
    await sleep(50);
  }
}

async function closeFollowers(followers: Follower[]): Promise<void> {
  for (const f of followers) {
    try {
      f.conn.close();
    } catch { /* closed */ }
  }
  await Promise.all(followers.map((f) => f.reading));
}

/**
 * Idle SSE followers, in the stages of {@linkcode roomIdle}: a warm-up
 * (followers opened, proven, gone), `warm`, a line; then every follower
 * open and proven (a server publish into each room reaches all of them),
 * `ready`, a line, and all close.
 */
export async function roomSseIdle(config: RoomLoadConfig): Promise<RoomRunResult> {
  const warmMembers = config.warm ?? [];
  if (warmMembers.length) {
    const warm = await followAll(warmMembers);
    await proveFollowers(config, warm);
    await closeFollowers(warm);
  }
  console.log(JSON.stringify({ stage: "warm" }));
  await nextLine();
  const followers = await followAll(config.members);
  await proveFollowers(config, followers);
  console.log(JSON.stringify({ stage: "ready" }));
  await nextLine();
  const start = performance.now();
  await closeFollowers(followers);
  return {
    followers: followers.length,
    rooms: new Set(config.members.map((m) => m.room)).size,
    close_ms: performance.now() - start,
  };
}
