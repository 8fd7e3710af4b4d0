/**
 * The benchmark suite: the relay against its peers (direct, a naive Deno relay,
 * a Node `ws` relay, nginx), side by side in one run on one echo upstream; and
 * its rooms against the rooms of a Deno `Map`, Node `ws` and Socket.IO.
 * `deno task bench [--quick] [--only case,case] [--targets a,b]`; results go to
 * bench/results/<mode>.json and the chart to docs/benchmarks.svg.
 * @module
 */
import { GA_CLIENT_EVENTS } from "../supabase/functions/_shared/realtime/client_events.ts";
import { startAuthStandIn } from "../tests/stand_ins/auth.ts";
import { FLOOD_COMMAND } from "./upstream.ts";
import {
  postgresUnavailable,
  startPostgres,
  type TestPostgres,
} from "../tests/helpers/postgres.ts";
import { cpuSeconds, rssBytes, type Server, startServer } from "./procs.ts";
import type { LoadConfig } from "./load.ts";
import type { RoomLoadConfig, RoomMember, RoomWire } from "./rooms_load.ts";
import { renderChart, type Report } from "./chart.ts";
import { withTables } from "./report.ts";
import { heapGrowth, type HeapSummary, heapSummary, inspectPortOf } from "./heap.ts";

const QUICK = Deno.args.includes("--quick");
const argValue = (name: string) => {
  const at = Deno.args.indexOf(name);
  return at >= 0 ? Deno.args[at + 1] : undefined;
};
const ONLY = argValue("--only")?.split(",");
const TARGET_FILTER = argValue("--targets")?.split(",");

const BENCH = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();
/** The load generator gets core 0; every server (upstream, relay, baseline) core 1. */
const LOAD_CORE = 0;
/** Extra `deno run` flags for a Deno server, e.g. BENCH_RELAY_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const denoFlags = (variable: string) => (Deno.env.get(variable) ?? "").split(" ").filter(Boolean);
const RELAY_FLAGS = denoFlags("BENCH_RELAY_FLAGS");
const NAIVE_FLAGS = denoFlags("BENCH_NAIVE_FLAGS");
const SERVER_CORE = 1;
/**
 * With BENCH_HEAP_DIR set, the memory cases (5 and R2) also write what each
 * idle connection keeps on the JavaScript heap (two heap snapshots) for a
 * Deno server started with an `--inspect=127.0.0.1:<port>` flag.
 */
const HEAP_DIR = Deno.env.get("BENCH_HEAP_DIR");

const PORTS = {
  upstream: 18080,
  nginx: 18081,
  naive: 18082,
  node: 18083,
  relay: 18084,
  auth: 18085,
  relay_policy: 18090,
  relay_all: 18092,
  rooms_deno_map: 18094,
  rooms_node_ws: 18095,
  rooms_socketio: 18096,
  /** The relay in the one-instance room cases (its own port: no TIME_WAIT shared with case 1-7 runs). */
  relay_rooms: 18097,
  /** The two relay instances of the bus case, and the Realtime stand-in between them. */
  relay_bus_a: 18098,
  relay_bus_b: 18099,
  realtime: 18100,
  /** The relay with room history on (R4, R5), and the one SSE followers hold (R6). */
  relay_history: 18101,
  relay_sse: 18102,
  /** The relay with rooms on in the voice captions case (with and without `?room=`). */
  relay_captions: 18103,
};
/**
 * The upstream listens on one port per relay, so that connections a relay
 * leaves in TIME_WAIT (60 s on Linux) never share a 4-tuple space with the next
 * contender's: a handshake run leaves ~10,000 of them, and a `connect()` that
 * must search past them costs that contender CPU it did not cause.
 */
const UPSTREAM_PORTS = {
  naive: 18086,
  node: 18087,
  nginx: 18088,
  relay: 18089,
  relay_policy: 18091,
  relay_all: 18093,
};
const upstreamFor = (relay: keyof typeof UPSTREAM_PORTS) =>
  `ws://127.0.0.1:${UPSTREAM_PORTS[relay]}`;

type TargetName =
  | "direct"
  | "naive_deno"
  | "node_ws"
  | "nginx"
  | "relay"
  | "relay_policy"
  | "relay_all"
  | RoomPeer
  | RoomRelay
  | "relay_captions";
/** The room baselines: rooms as users of each stack build them (bench/baselines/rooms_*). */
type RoomPeer = "rooms_deno_map" | "rooms_node_ws" | "rooms_socketio";
const ROOM_PEERS: readonly TargetName[] = [
  "rooms_deno_map",
  "rooms_node_ws",
  "rooms_socketio",
];
/**
 * The relay again in cases R4-R6 only: with room history on
 * (`RELAY_ROOM_HISTORY`, in the throwaway PostgreSQL), and with history off
 * but held by SSE followers instead of WebSocket members.
 */
type RoomRelay = "relay_history" | "relay_sse";
/**
 * The voice captions case's sessions with `?room=` (its other side is "relay",
 * the same relay with rooms on and no `?room=`).
 */
const CAPTIONS_TARGET = "relay_captions";
/** Targets of the room cases and the captions case alone (never in cases 1-7). */
const ROOM_ONLY: readonly TargetName[] = [
  ...ROOM_PEERS,
  "relay_history",
  "relay_sse",
  CAPTIONS_TARGET,
];
type RelayTarget = "relay" | "relay_policy" | "relay_all";
const TARGETS: TargetName[] = (
  [
    "direct",
    "naive_deno",
    "node_ws",
    "nginx",
    "relay",
    "relay_policy",
    "relay_all",
    ...ROOM_PEERS,
    "relay_history",
    "relay_sse",
    CAPTIONS_TARGET,
  ] as const
).filter((t) => !TARGET_FILTER || TARGET_FILTER.includes(t));

/**
 * The relay again, with the README's example session policy on: every client
 * message is read strictly and checked. Only the voice case runs it, where
 * the per-message cost shows as CPU per session.
 */
const EXAMPLE_POLICY = JSON.stringify({
  session: {
    type: "realtime",
    instructions: "You are the support assistant of Example Inc. Answer in one short sentence.",
    tools: [],
    tool_choice: "auto",
    audio: { output: { voice: "marin" } },
  },
  locked: [
    "instructions",
    "tools",
    "tool_choice",
    "audio.output.voice",
    "prompt",
  ],
  max_output_tokens: 1024,
});

/**
 * The relay with every v2 feature on: the example policy, metering with a
 * budget (never reached) in a throwaway PostgreSQL, and resumable sessions
 * (each connection names a fresh `?session=`). Runs in every case beside the
 * default configuration.
 */
const ALL_FEATURES = {
  // The example policy, plus the upstream's flood command (case 7) among the allowed events.
  RELAY_SESSION_POLICY: JSON.stringify({
    ...JSON.parse(EXAMPLE_POLICY),
    allowed_events: [...GA_CLIENT_EVENTS, JSON.parse(FLOOD_COMMAND).type],
  }),
  RELAY_METERING: "on",
  RELAY_BUDGET_USD: "1000000",
  RELAY_RESUME: "on",
};

/** The targets a case runs: HS256 handshakes are the relay's alone; the policy runs in voice only. */
function targetsFor(name: string): TargetName[] {
  // Rooms: the three room baselines and the relay with rooms on; the bus case is the relay's alone.
  if (name === "room_bus") return TARGETS.filter((t) => t === "relay");
  // History off against on; recovery needs history; WebSocket members against SSE followers.
  if (name === "room_history") {
    return TARGETS.filter((t) => t === "relay" || t === "relay_history");
  }
  if (name === "room_recovery") {
    return TARGETS.filter((t) => t === "relay_history");
  }
  if (name === "room_sse_memory") {
    return TARGETS.filter((t) => t === "relay" || t === "relay_sse");
  }
  // The same relay (rooms on), without `?room=` and with it.
  if (name === "voice_captions") {
    return TARGETS.filter((t) => t === "relay" || t === CAPTIONS_TARGET);
  }
  if (name.startsWith("room_")) {
    return TARGETS.filter((t) => ROOM_PEERS.includes(t) || t === "relay");
  }
  return relayCaseTargets(name).filter((t) => !ROOM_ONLY.includes(t));
}

/** The targets of cases 1-7. */
function relayCaseTargets(name: string): TargetName[] {
  if (name === "handshake_hs256") return TARGETS.filter((t) => t === "relay");
  if (name === "voice") return TARGETS;
  // Realtime speaks no binary frames, and a policy refuses them: no all-features binary case.
  if (name === "audio_throughput") {
    return TARGETS.filter((t) => t !== "relay_policy" && t !== "relay_all");
  }
  return TARGETS.filter((t) => t !== "relay_policy");
}

/** Sizes per mode: full for the table, quick as CI's smoke check of the harness. */
const SIZE = QUICK
  ? {
    reps: 1,
    seconds: 1,
    idle: 100,
    voiceSessions: 10,
    voiceSeconds: 2,
    /** Voice captions: long enough (with the 1 s warm-up) for a finished transcript, at append 225. */
    captionsVoiceSeconds: 4,
    slowSeconds: 2,
    roomIdleMembers: 200,
    sseFollowers: 200,
    recoveryJoins: 3,
  }
  : {
    reps: 3,
    seconds: 4,
    idle: 2000,
    voiceSessions: 50,
    voiceSeconds: 10,
    captionsVoiceSeconds: 10,
    slowSeconds: 6,
    roomIdleMembers: 2000,
    sseFollowers: 1000,
    recoveryJoins: 5,
  };

/** Room cases: one room of 50 members; the memory case spreads its members over 40 rooms. */
const ROOMS = {
  fanoutMembers: 50,
  /** Members that each keep one broadcast in flight (a few senders at a time, as in a busy chat). */
  fanoutSenders: 4,
  payloadBytes: 64,
  idleRooms: 40,
  warmMembers: 20,
  /** The bus case: 6 members on instance A (one sends at a time), 5 on B. */
  busMembers: 11,
  /** R4, R5: broadcasts each room keeps (`RELAY_ROOM_HISTORY`). */
  historyKeep: 1000,
  /** R5: the numbers of missed broadcasts recovered, and the users taking turns to join. */
  recoveryMissed: [10, 100, 1000],
  recoveryUsers: 10,
  /** R6: the rooms the followers (or members) spread over. */
  sseRooms: 5,
  /** Voice captions: the idle members (distinct users) of the room the sessions caption into. */
  captionMembers: 20,
};

/** The secret key the relay recognises for a server's publish in R5 and R6 (`SUPABASE_SECRET_KEYS`). */
const BENCH_SECRET_KEY = "sb_secret_bench_not_a_real_key";

/** Relay settings: defaults, except the two caps a case needs raised (see docs/BENCHMARKS.md). */
const RELAY_RAISED = {
  // Cases 1-3 send thousands of messages per second on one connection; the
  // limiter still runs on every message, only its ceiling is out of the way.
  RELAY_RATE_LIMIT: "1000000",
  // Case 5 holds 2,000 connections (the default instance cap is 1,000); the
  // per-user cap stays 5 and the cases use several users' tokens instead.
  RELAY_MAX_CONNECTIONS: "2100",
};

const auth = await startAuthStandIn({ port: PORTS.auth });
/** Enough users for the largest case at the default per-user cap of 5. */
const USERS = Math.max(40, SIZE.idle / 5 + 20);
const esTokens: string[] = [];
const hsTokens: string[] = [];
for (let i = 0; i < USERS; i++) {
  const session = await auth.issueDevToken({
    email: `bench${i}@example.com`,
    expiresInS: 7200,
  });
  esTokens.push(session.access_token);
  hsTokens.push(
    await auth.signHs256({
      sub: session.user.id,
      email: `bench${i}@example.com`,
    }, {
      expiresInS: 7200,
    }),
  );
}

/** ES256 tokens of `n` distinct users (rooms count members by user: the per-user cap is 5). */
async function distinctUserTokens(n: number): Promise<string[]> {
  for (let i = esTokens.length; i < n; i++) {
    const session = await auth.issueDevToken({
      email: `bench${i}@example.com`,
      expiresInS: 7200,
    });
    esTokens.push(session.access_token);
  }
  return esTokens.slice(0, n);
}

function relayEnv(target: RelayTarget): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    // An empty DENO_DIR would make the relay's working directory (the repo) its cache.
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    SUPABASE_URL: auth.url,
    SUPABASE_PUBLISHABLE_KEY: auth.publishableKey,
    OPENAI_API_KEY: "sk-bench-not-a-real-key",
    OPENAI_REALTIME_URL: `${upstreamFor(target)}/v1/realtime`,
    PORT: String(PORTS[target]),
    ...RELAY_RAISED,
    ...(target === "relay_policy" ? { RELAY_SESSION_POLICY: EXAMPLE_POLICY } : {}),
    ...(target === "relay_all" ? { ...ALL_FEATURES, RELAY_DATABASE_URL: database!.url } : {}),
    // For experiments, e.g. BENCH_RELAY_ENV="RELAY_LOG_LEVEL=error": never in a published run.
    ...Object.fromEntries(
      denoFlags("BENCH_RELAY_ENV").map((pair) => pair.split("=", 2) as [string, string]),
    ),
  };
}

/** URLs for `users` users on a target; the relay's carry each user's token. */
function urlsFor(
  target: TargetName,
  users: number,
  tokens = esTokens,
): string[] {
  const path = "/v1/realtime?model=gpt-realtime";
  if (target === "relay_policy") {
    return tokens.slice(0, users).map((t) => `ws://127.0.0.1:${PORTS.relay_policy}/relay?jwt=${t}`);
  }
  if (target === "relay_all") {
    // load.ts puts a fresh id in place of {session} for every connection.
    return tokens.slice(0, users).map((t) =>
      `ws://127.0.0.1:${PORTS.relay_all}/relay?jwt=${t}&session={session}`
    );
  }
  if (target !== "relay") {
    const port: number = {
      direct: PORTS.upstream,
      naive_deno: PORTS.naive,
      node_ws: PORTS.node,
      nginx: PORTS.nginx,
    }[target as "direct" | "naive_deno" | "node_ws" | "nginx"];
    // The same request as the relay's, token included: every contender holds
    // what the client sent (Deno keeps an upgraded request's URL, ~0.9 KB with
    // a Supabase access token), and the baselines pass it on as they would.
    return tokens.slice(0, users).map((t) => `ws://127.0.0.1:${port}${path}&jwt=${t}`);
  }
  return tokens.slice(0, users).map((t) => `ws://127.0.0.1:${PORTS.relay}/relay?jwt=${t}`);
}

const tmp = await Deno.makeTempDir({ prefix: "relay-bench-" });

async function startTarget(
  target: TargetName,
  caseName: string,
): Promise<Server> {
  const env = {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "/tmp",
  };
  // The voice captions case, both sides: the relay with rooms on (one instance).
  if (
    target === CAPTIONS_TARGET ||
    (target === "relay" && caseName === "voice_captions")
  ) {
    return await startRoomRelay(target, PORTS.relay_captions, {
      RELAY_ROOMS_BUS: "off",
    });
  }
  if (target === "relay" && caseName.startsWith("room_")) {
    return await startRoomRelay("relay", PORTS.relay_rooms, {
      RELAY_ROOMS_BUS: "off",
    });
  }
  if (target === "relay_history") {
    if (!database) {
      throw new Skip(`no database for room history: ${databaseProblem}`);
    }
    return await startRoomRelay(target, PORTS.relay_history, {
      RELAY_ROOMS_BUS: "off",
      RELAY_ROOM_HISTORY: String(ROOMS.historyKeep),
      RELAY_DATABASE_URL: database.url,
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: BENCH_SECRET_KEY }),
    });
  }
  if (target === "relay_sse") {
    return await startRoomRelay(target, PORTS.relay_sse, {
      RELAY_ROOMS_BUS: "off",
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: BENCH_SECRET_KEY }),
    });
  }
  switch (target) {
    case "rooms_deno_map":
      return await startServer(
        target,
        [
          DENO,
          "run",
          "-A",
          ...NAIVE_FLAGS,
          `${BENCH}baselines/rooms_deno_map.ts`,
          "--port",
          String(PORTS.rooms_deno_map),
        ],
        { port: PORTS.rooms_deno_map, core: SERVER_CORE, env },
      );
    case "rooms_node_ws":
    case "rooms_socketio":
      return await startServer(
        target,
        [
          "node",
          `${BENCH}baselines/${target}.${target === "rooms_socketio" ? "cjs" : "mjs"}`,
          "--port",
          String(PORTS[target]),
        ],
        { port: PORTS[target], core: SERVER_CORE, env },
      );
    case "direct":
      return upstream;
    case "naive_deno":
      return await startServer(
        target,
        [
          DENO,
          "run",
          "-A",
          ...NAIVE_FLAGS,
          `${BENCH}baselines/naive_deno_relay.ts`,
          "--port",
          String(PORTS.naive),
          "--upstream",
          upstreamFor("naive"),
        ],
        { port: PORTS.naive, core: SERVER_CORE, env },
      );
    case "node_ws":
      return await startServer(
        target,
        [
          "node",
          `${BENCH}baselines/node_ws_relay.mjs`,
          "--port",
          String(PORTS.node),
          "--upstream",
          upstreamFor("node"),
        ],
        { port: PORTS.node, core: SERVER_CORE, env },
      );
    case "nginx": {
      const prefix = `${tmp}/nginx/`;
      await Deno.mkdir(`${prefix}tmp`, { recursive: true });
      return await startServer(
        target,
        ["nginx", "-c", `${BENCH}baselines/nginx.conf`, "-p", prefix],
        { port: PORTS.nginx, core: SERVER_CORE, env },
      );
    }
    case "relay":
    case "relay_policy":
    case "relay_all":
      return await startServer(
        target,
        [
          DENO,
          "run",
          "-A",
          ...RELAY_FLAGS,
          `${ROOT}supabase/functions/relay/index.ts`,
        ],
        {
          port: PORTS[target],
          core: SERVER_CORE,
          env: relayEnv(target),
          cwd: ROOT,
        },
      );
  }
}

async function stopTarget(server: Server): Promise<void> {
  if (server !== upstream) await server.stop();
}

/** Runs the load generator on its own core; `onLine` sees its progress lines. */
async function load(
  config: LoadConfig | RoomLoadConfig,
  during?: (
    line: Record<string, unknown>,
    stdin: WritableStreamDefaultWriter<Uint8Array>,
  ) => Promise<void>,
): Promise<Record<string, number | string | null>> {
  const file = `${tmp}/load-${crypto.randomUUID()}.json`;
  await Deno.writeTextFile(file, JSON.stringify(config));
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec taskset -c ${LOAD_CORE} '${DENO}' run -A '${BENCH}load.ts' '${file}'`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let result: Record<string, number | string | null> | null = null;
  let rest = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const line = JSON.parse(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
      if (line.result) result = line.result;
      else if (during) await during(line, stdin);
    }
  }
  await stdin.close().catch(() => {});
  const status = await child.status;
  await Deno.remove(file);
  if (!status.success || !result) {
    throw new Error(`load generator failed (${config.mode})`);
  }
  return result;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const base = {
  protocols: ["realtime"],
  connections: 1,
  inflight: 1,
  messageBytes: 64,
  binary: false,
};

/** Thrown by a case that cannot run on this build (said in the results, not a failure). */
class Skip extends Error {}

/** One case: what it measures, and how to run it once against a target. */
interface CaseDef {
  readonly title: string;
  readonly metric: string;
  readonly unit: string;
  readonly better: "higher" | "lower";
  /** Repetitions in a full run, when not SIZE.reps (a small difference to measure). */
  readonly reps?: number;
  /** Why the whole case cannot run here (e.g. a stand-in not written yet), or null. */
  skip?(): Promise<string | null>;
  /** Starts what the case runs against, when that is not one target's server. */
  start?(target: TargetName): Promise<Server>;
  /** Why a started target cannot take this case (e.g. a route it does not have yet), or null. */
  unavailable?(target: TargetName): Promise<string | null>;
  run(
    target: TargetName,
    server: Server,
  ): Promise<Record<string, number | string | null>>;
  /** Figures across targets of the same run (e.g. history on against off), for the results. */
  derive?(
    targets: Record<
      string,
      { median: number; runs: Record<string, unknown>[] }
    >,
  ): Record<string, number>;
}

/** Settings of the relay in the room cases, beside RELAY_RAISED (see docs/BENCHMARKS.md, "Rooms"). */
const ROOM_RELAY = { RELAY_ROOMS: "open" };

/**
 * With BENCH_HEAP_DIR set and the target started with an inspector flag: a
 * function to call once warm and once with all `count` connections open; the
 * second call writes what each keeps on the JavaScript heap. Otherwise a no-op.
 */
function heapProbe(t: TargetName, count: number): () => Promise<void> {
  const port = HEAP_DIR === undefined ? null : inspectPortOf(
    t === "naive_deno" || t === "rooms_deno_map"
      ? NAIVE_FLAGS
      : t.startsWith("relay")
      ? RELAY_FLAGS
      : [],
  );
  let warm: HeapSummary | null = null;
  return async () => {
    if (port === null) return;
    const heap = await heapSummary(port);
    if (warm === null) warm = heap;
    else {
      await Deno.writeTextFile(
        `${HEAP_DIR}/${t}-${Date.now()}.json`,
        JSON.stringify(heapGrowth(warm, heap, count), null, 2),
      );
    }
  };
}

/** The real entrypoint with rooms on, on `port`; `extra` chooses the bus. */
async function startRoomRelay(
  name: string,
  port: number,
  extra: Record<string, string>,
): Promise<Server> {
  return await startServer(
    name,
    [
      DENO,
      "run",
      "-A",
      ...RELAY_FLAGS,
      `${ROOT}supabase/functions/relay/index.ts`,
    ],
    {
      port,
      core: SERVER_CORE,
      env: {
        ...relayEnv("relay"),
        PORT: String(port),
        ...ROOM_RELAY,
        ...extra,
      },
      cwd: ROOT,
    },
  );
}

/** Null when the relay on `port` has the rooms route; else why not (a build before rooms). */
async function roomsRouteMissing(port: number): Promise<string | null> {
  const res = await fetch(`http://127.0.0.1:${port}/relay/rooms/bench-probe`);
  const body = (await res.text()).slice(0, 120);
  return res.status === 404
    ? `the relay answers 404 on /relay/rooms/<room> with RELAY_ROOMS=open (${body}): this build has no rooms route yet`
    : null;
}

function wireOf(target: TargetName): RoomWire {
  return target === "relay" || target === "relay_history" ||
      target === "relay_sse"
    ? "relay"
    : target === "rooms_socketio"
    ? "socketio"
    : "raw";
}

/** The port of a target in the room cases. */
function roomPort(target: TargetName): number {
  return target === "relay"
    ? PORTS.relay_rooms
    : target === "relay_history" || target === "relay_sse"
    ? PORTS[target]
    : PORTS[target as RoomPeer];
}

/**
 * Members for a target: one per entry of `layout`, each with its own user's
 * token. Every contender gets the token (in `?jwt=`, as the relay's members
 * send it; Socket.IO's in its CONNECT packet's `auth`, where its users put it),
 * so that each keeps what its clients send.
 */
function roomMembers(
  target: TargetName,
  layout: { room: string; group: string; port?: number }[],
  tokens: string[],
): RoomMember[] {
  return layout.map(({ room, group, port }, i) => {
    const token = tokens[i % tokens.length]!;
    const at = `ws://127.0.0.1:${port ?? roomPort(target)}`;
    const url = wireOf(target) === "relay"
      ? `${at}/relay/rooms/${room}?jwt=${token}`
      : target === "rooms_socketio"
      ? `${at}/socket.io/?room=${room}&EIO=4&transport=websocket&jwt=${token}`
      : `${at}/rooms/${room}?jwt=${token}`;
    return { url, room, group };
  });
}

/**
 * Runs a fan-out and reads the server's CPU over its measured window; with
 * `databasePid`, the database's too (its postmaster and backends).
 */
async function fanout(
  config: RoomLoadConfig,
  server: Server,
  databasePid: number | null = null,
): Promise<Record<string, number | string | null>> {
  const window = { cpu: 0, cpuS: 0, db: 0, dbS: 0 };
  const result = await load(config, (line) => {
    if (line.stage === "steady") {
      window.cpu = cpuSeconds(server.pid);
      if (databasePid !== null) window.db = cpuSeconds(databasePid);
    } else if (line.stage === "steady_end") {
      window.cpuS = cpuSeconds(server.pid) - window.cpu;
      if (databasePid !== null) {
        window.dbS = cpuSeconds(databasePid) - window.db;
      }
    }
    return Promise.resolve();
  });
  return {
    ...result,
    steady_cpu_s: window.cpuS,
    server_cpu_us_per_delivery: (window.cpuS / Number(result.deliveries)) * 1e6,
    ...(databasePid === null ? {} : {
      steady_database_cpu_s: window.dbS,
      database_cpu_us_per_delivery: (window.dbS / Number(result.deliveries)) *
        1e6,
    }),
  };
}

/** The throwaway cluster's postmaster (its backends are its children), or null when unknown. */
async function databasePid(): Promise<number | null> {
  try {
    const dir = (await database!.psql("SHOW data_directory")).trim();
    const pid = Number(
      (await Deno.readTextFile(`${dir}/postmaster.pid`)).split("\n")[0],
    );
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** A room name of its own for each run: history stays in the database between runs. */
const freshRoom = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;

/** Why the room history cases cannot run here, or null. */
function historySkip(): Promise<string | null> {
  return Promise.resolve(
    database ? null : `no database for room history: ${databaseProblem}`,
  );
}

/** RSS per idle occupant of a room case: read after the warm-up and with all open, as R2 does. */
async function idleRss(
  config: RoomLoadConfig,
  server: Server,
  n: number,
): Promise<Record<string, number | string | null>> {
  const rss = { warm: 0, open: 0 };
  const result = await load(config, async (line, stdin) => {
    await sleep(500);
    if (line.stage === "warm") rss.warm = rssBytes(server.pid);
    else rss.open = rssBytes(server.pid);
    await stdin.write(new TextEncoder().encode("go\n"));
  });
  await sleep(1500);
  const after = rssBytes(server.pid);
  return {
    ...result,
    kib_per_member: (rss.open - rss.warm) / 1024 / n,
    rss_warm_mib: rss.warm / 2 ** 20,
    rss_open_mib: rss.open / 2 ** 20,
    rss_after_close_mib: after / 2 ** 20,
  };
}

const REALTIME_STAND_IN = `${ROOT}tests/stand_ins/supabase_realtime.ts`;

/** The voice captions case's target: captions into a room of 20 cost at most this much more CPU. */
const CAPTIONS_TARGET_RATIO = 1.15;

/**
 * Runs voice sessions (case 6's profile) and reads the server's CPU over the
 * steady window only: one-time warm-up (module loads, JIT) is not per session;
 * a session's handshake is case 4.
 */
async function voiceSessions(
  server: Server,
  config: LoadConfig,
): Promise<Record<string, number | string | null>> {
  const window = { cpu: 0, at: 0, seconds: 0, cpuS: 0 };
  const result = await load(config, (line) => {
    if (line.stage === "steady") {
      window.cpu = cpuSeconds(server.pid);
      window.at = performance.now();
    } else if (line.stage === "steady_end") {
      window.cpuS = cpuSeconds(server.pid) - window.cpu;
      window.seconds = (performance.now() - window.at) / 1000;
    }
    return Promise.resolve();
  });
  const sessionSeconds = window.seconds * config.connections;
  return {
    ...result,
    steady_cpu_s: window.cpuS,
    steady_session_s: sessionSeconds,
    cpu_s_per_400s: (window.cpuS / sessionSeconds) * 400,
  };
}

/** What the bus case uses of the Supabase Realtime stand-in. */
interface RealtimeStandIn {
  readonly url: string;
  readonly secretKey: string;
  close(): Promise<void> | void;
}

const CASES: Record<string, CaseDef> = {
  latency: {
    title: "1. Round trip, 64 B text, 1 connection (p50)",
    metric: "p50_us",
    unit: "µs",
    better: "lower",
    run: (t) =>
      load({
        ...base,
        events: t === "relay_all",
        mode: "latency",
        urls: urlsFor(t, 1),
        durationS: SIZE.seconds,
      }),
  },
  small_throughput: {
    title: "2. Throughput, 64 B text, 50 conns x 16 in flight",
    metric: "msgs_per_s",
    unit: "msg/s",
    better: "higher",
    run: (t) =>
      load({
        ...base,
        events: t === "relay_all",
        mode: "throughput",
        urls: urlsFor(t, 10),
        durationS: SIZE.seconds,
        connections: 50,
        inflight: 16,
      }),
  },
  audio_throughput: {
    title: "3. Throughput, 32 KiB binary, 10 conns x 4 in flight",
    metric: "mb_per_s",
    unit: "MB/s",
    better: "higher",
    run: (t) =>
      load({
        ...base,
        events: t === "relay_all",
        mode: "throughput",
        urls: urlsFor(t, 2),
        durationS: SIZE.seconds,
        connections: 10,
        inflight: 4,
        messageBytes: 32 * 1024,
        binary: true,
      }),
  },
  handshake: {
    title: "4. Handshakes (open, echo, close), concurrency 20, ES256 via JWKS",
    metric: "handshakes_per_s",
    unit: "/s",
    better: "higher",
    run: (t) =>
      load({
        ...base,
        events: t === "relay_all",
        mode: "handshake",
        urls: urlsFor(t, 40),
        durationS: SIZE.seconds,
        connections: 20,
      }),
  },
  handshake_hs256: {
    title: "4b. Handshakes, concurrency 20, HS256 via /auth/v1/user",
    metric: "handshakes_per_s",
    unit: "/s",
    better: "higher",
    run: (t) =>
      load({
        ...base,
        events: t === "relay_all",
        mode: "handshake",
        urls: urlsFor(t, 40, hsTokens),
        durationS: SIZE.seconds,
        connections: 20,
      }),
  },
  memory: {
    title: `5. RSS per idle relayed connection (${SIZE.idle} connections)`,
    metric: "kib_per_conn",
    unit: "KiB",
    better: "lower",
    async run(t, server) {
      const rss = { warm: 0, open: 0 };
      const snapshot = heapProbe(t, SIZE.idle);
      const result = await load(
        {
          ...base,
          events: t === "relay_all",
          mode: "idle",
          urls: urlsFor(t, SIZE.idle / 5 + 4),
          durationS: 0,
          connections: SIZE.idle,
        },
        async (line, stdin) => {
          await sleep(500);
          if (line.stage === "warm") rss.warm = rssBytes(server.pid);
          else rss.open = rssBytes(server.pid);
          await snapshot();
          await stdin.write(new TextEncoder().encode("go\n"));
        },
      );
      await sleep(1500);
      const after = rssBytes(server.pid);
      return {
        ...result,
        kib_per_conn: (rss.open - rss.warm) / 1024 / SIZE.idle,
        rss_warm_mib: rss.warm / 2 ** 20,
        rss_open_mib: rss.open / 2 ** 20,
        rss_after_close_mib: after / 2 ** 20,
      };
    },
  },
  voice: {
    title: `6. Voice sessions (${SIZE.voiceSessions} at once): CPU-s per 400 s session`,
    metric: "cpu_s_per_400s",
    unit: "CPU-s",
    better: "lower",
    run: (t, server) =>
      voiceSessions(server, {
        ...base,
        events: t === "relay_all",
        mode: "voice",
        urls: urlsFor(t, SIZE.voiceSessions / 5),
        durationS: SIZE.voiceSeconds,
        connections: SIZE.voiceSessions,
      }),
  },
  voice_captions: {
    title:
      `6c. Voice sessions (${SIZE.voiceSessions} at once), rooms on: CPU-s per 400 s session, without ?room= and with captions to ${ROOMS.captionMembers} members`,
    metric: "cpu_s_per_400s",
    unit: "CPU-s",
    better: "lower",
    // The difference sought is about 10 %, within one run's spread on this VM.
    reps: 6,
    unavailable: () => roomsRouteMissing(PORTS.relay_captions),
    async run(t, server) {
      // Case 6's sessions, on users of their own (5 connections each, the
      // per-user cap); the members are other users, joined on both sides, so
      // that `?room=` is the only difference.
      const sessionUsers = SIZE.voiceSessions / 5;
      const tokens = await distinctUserTokens(
        sessionUsers + ROOMS.captionMembers,
      );
      const room = freshRoom("captions");
      const at = `ws://127.0.0.1:${PORTS.relay_captions}`;
      const captions = t === CAPTIONS_TARGET;
      const result = await voiceSessions(server, {
        ...base,
        mode: "voice",
        urls: tokens.slice(0, sessionUsers).map((token) =>
          `${at}/relay?jwt=${token}${captions ? `&room=${room}` : ""}`
        ),
        durationS: SIZE.captionsVoiceSeconds,
        connections: SIZE.voiceSessions,
        roomMembers: tokens.slice(sessionUsers).map((token) => ({
          url: `${at}/relay/rooms/${room}?jwt=${token}`,
          room,
          group: "all",
        })),
      });
      // The proof: with `?room=` every member heard captions (finished ones
      // too, once a session reached one); without, none.
      const heard = Number(result.caption_deltas_received) +
        Number(result.captions_received);
      if (captions) {
        const flowed = Number(result.caption_deltas_per_member_min) > 0 &&
          (Number(result.captions_expected) === 0 ||
            Number(result.captions_per_member_min) > 0);
        if (!flowed) {
          throw new Error(
            `voice_captions: captions did not reach every member: ${JSON.stringify(result)}`,
          );
        }
      } else if (heard !== 0) {
        throw new Error(
          `voice_captions: members heard ${heard} captions without ?room=`,
        );
      }
      return {
        ...result,
        caption_delivery_share: captions
          ? heard /
            ((Number(result.caption_deltas_expected) +
              Number(result.captions_expected)) *
              Number(result.caption_members))
          : 0,
      };
    },
    derive(targets) {
      const off = targets.relay;
      const on = targets[CAPTIONS_TARGET];
      if (!off || !on) return {};
      // Also per repetition (the two sides run back to back), which drift on the machine hits less.
      const paired = on.runs.flatMap((r, i) => {
        const o = off.runs[i];
        return o ? [Number(r.cpu_s_per_400s) / Number(o.cpu_s_per_400s)] : [];
      });
      const spread = summarise(paired);
      return {
        captions_to_without_cpu_ratio: on.median / off.median,
        paired_ratio_median: spread.median,
        paired_ratio_min: spread.min,
        paired_ratio_max: spread.max,
        target_ratio_at_most: CAPTIONS_TARGET_RATIO,
      };
    },
  },
  slow_reader: {
    title: "7. Slow reader: peak RSS growth while the upstream floods",
    metric: "rss_growth_mib",
    unit: "MiB",
    better: "lower",
    async run(t, server) {
      let before = 0;
      const samples: number[] = [];
      let sampling = false;
      const sampler = (async () => {
        while (!sampling) await sleep(20);
        while (sampling) {
          samples.push((rssBytes(server.pid) - before) / 2 ** 20);
          await sleep(250);
        }
      })();
      const result = await load(
        {
          ...base,
          events: t === "relay_all",
          mode: "slow",
          urls: urlsFor(t, 1),
          durationS: SIZE.slowSeconds,
        },
        async (_line, stdin) => {
          // After the warm-up: the baseline, then the flood.
          await sleep(300);
          before = rssBytes(server.pid);
          sampling = true;
          await stdin.write(new TextEncoder().encode("go\n"));
        },
      );
      sampling = false;
      await sampler;
      return {
        ...result,
        rss_growth_mib: Math.max(0, ...samples),
        rss_series_mib: samples.map((s) => s.toFixed(1)).join(" "),
      };
    },
  },
  room_fanout: {
    title:
      `R1. Room fan-out, ${ROOMS.fanoutMembers} members, 64 B payload (deliveries/s, ${ROOMS.fanoutSenders} in flight)`,
    metric: "deliveries_per_s",
    unit: "deliveries/s",
    better: "higher",
    unavailable: (t) =>
      t === "relay" ? roomsRouteMissing(PORTS.relay_rooms) : Promise.resolve(null),
    async run(t, server) {
      const tokens = await distinctUserTokens(ROOMS.fanoutMembers);
      return await fanout({
        mode: "room_fanout",
        wire: wireOf(t),
        members: roomMembers(
          t,
          tokens.map(() => ({ room: "fanout", group: "all" })),
          tokens,
        ),
        senders: ROOMS.fanoutSenders,
        payloadBytes: ROOMS.payloadBytes,
        durationS: SIZE.seconds,
        warmupMs: QUICK ? 300 : 1000,
      }, server);
    },
  },
  room_memory: {
    title:
      `R2. RSS per idle room member (${SIZE.roomIdleMembers} members, ${ROOMS.idleRooms} rooms)`,
    metric: "kib_per_member",
    unit: "KiB",
    better: "lower",
    unavailable: (t) =>
      t === "relay" ? roomsRouteMissing(PORTS.relay_rooms) : Promise.resolve(null),
    async run(t, server) {
      const n = SIZE.roomIdleMembers;
      const tokens = await distinctUserTokens(n);
      const rss = { warm: 0, open: 0 };
      const snapshot = heapProbe(t, n);
      const warmLayout = Array.from(
        { length: ROOMS.warmMembers },
        (_, i) => ({ room: `warm-${i % 2}`, group: "all" }),
      );
      const layout = tokens.map((_, i) => ({
        room: `room-${i % ROOMS.idleRooms}`,
        group: "all",
      }));
      const result = await load(
        {
          mode: "room_idle",
          wire: wireOf(t),
          warm: roomMembers(t, warmLayout, tokens),
          members: roomMembers(t, layout, tokens),
          durationS: 0,
        },
        async (line, stdin) => {
          await sleep(500);
          if (line.stage === "warm") rss.warm = rssBytes(server.pid);
          else rss.open = rssBytes(server.pid);
          await snapshot();
          await stdin.write(new TextEncoder().encode("go\n"));
        },
      );
      await sleep(1500);
      const after = rssBytes(server.pid);
      return {
        ...result,
        kib_per_member: (rss.open - rss.warm) / 1024 / n,
        rss_warm_mib: rss.warm / 2 ** 20,
        rss_open_mib: rss.open / 2 ** 20,
        rss_after_close_mib: after / 2 ** 20,
      };
    },
  },
  room_bus: {
    title: "R3. Room across two relay instances via the Realtime stand-in: p50 the bus adds",
    metric: "bus_added_p50_us",
    unit: "µs",
    better: "lower",
    async skip() {
      if (!(await Deno.stat(REALTIME_STAND_IN).catch(() => null))) {
        return "tests/stand_ins/supabase_realtime.ts (the Supabase Realtime stand-in) is not in this tree yet";
      }
      return null;
    },
    async start() {
      // A computed specifier: `deno check bench/` must not need the stand-in to exist.
      const module = REALTIME_STAND_IN;
      let realtime: RealtimeStandIn;
      try {
        const { startRealtimeStandIn } = await import(module) as {
          startRealtimeStandIn(
            options?: { port?: number },
          ): Promise<RealtimeStandIn>;
        };
        realtime = await startRealtimeStandIn({ port: PORTS.realtime });
      } catch (e) {
        throw new Skip(
          `the Realtime stand-in did not start: ${(e as Error).message}`,
        );
      }
      const bus = {
        RELAY_ROOMS_BUS: "realtime",
        RELAY_REALTIME_URL: `${realtime.url.replace(/\/$/, "")}/realtime/v1`,
        SUPABASE_SECRET_KEYS: JSON.stringify({ default: realtime.secretKey }),
      };
      const started: Server[] = [];
      try {
        started.push(
          await startRoomRelay("relay_bus_a", PORTS.relay_bus_a, bus),
        );
        started.push(
          await startRoomRelay("relay_bus_b", PORTS.relay_bus_b, bus),
        );
      } catch (e) {
        for (const s of started) await s.stop();
        await realtime.close();
        throw new Skip(
          `the relay did not start with RELAY_ROOMS_BUS=realtime: ${(e as Error).message}`,
        );
      }
      const [a, b] = started as [Server, Server];
      return {
        ...a,
        async stop() {
          await b.stop();
          await a.stop();
          await realtime.close();
        },
      };
    },
    async unavailable() {
      return await roomsRouteMissing(PORTS.relay_bus_a) ??
        await roomsRouteMissing(PORTS.relay_bus_b);
    },
    async run(t, server) {
      // Members on A take turns to send; half the receivers are on A, half on B
      // (through the bus). Few, so that the load generator's queue of 49
      // deliveries per broadcast does not hide the path.
      const tokens = await distinctUserTokens(ROOMS.busMembers);
      const onA = Math.ceil(ROOMS.busMembers / 2);
      const layout = tokens.map((_, i) => {
        const local = i < onA;
        return {
          room: "bus",
          group: local ? "local" : "bus",
          port: local ? PORTS.relay_bus_a : PORTS.relay_bus_b,
        };
      });
      const result = await fanout({
        mode: "room_fanout",
        wire: wireOf(t),
        members: roomMembers(t, layout, tokens),
        senders: 1,
        senderPool: Array.from({ length: onA }, (_, i) => i),
        payloadBytes: ROOMS.payloadBytes,
        durationS: SIZE.seconds,
        warmupMs: QUICK ? 300 : 1000,
      }, server);
      return {
        ...result,
        bus_added_p50_us: Number(result.bus_p50_us) -
          Number(result.local_p50_us),
        bus_added_p99_us: Number(result.bus_p99_us) -
          Number(result.local_p99_us),
      };
    },
  },
  room_history: {
    title:
      `R4. Room history, off against on (RELAY_ROOM_HISTORY=${ROOMS.historyKeep}): fan-out as R1, ${ROOMS.fanoutMembers} members, 64 B, deliveries/s with ${ROOMS.fanoutSenders} in flight`,
    metric: "deliveries_per_s",
    unit: "deliveries/s",
    better: "higher",
    skip: historySkip,
    unavailable: (t) => roomsRouteMissing(roomPort(t)),
    async run(t, server) {
      // R1's shape, on a room of its own per run (the database keeps every run's history).
      const tokens = await distinctUserTokens(ROOMS.fanoutMembers);
      const room = freshRoom("history");
      return await fanout(
        {
          mode: "room_fanout",
          wire: wireOf(t),
          members: roomMembers(
            t,
            tokens.map(() => ({ room, group: "all" })),
            tokens,
          ),
          senders: ROOMS.fanoutSenders,
          payloadBytes: ROOMS.payloadBytes,
          durationS: SIZE.seconds,
          warmupMs: QUICK ? 300 : 1000,
        },
        server,
        t === "relay_history" ? await databasePid() : null,
      );
    },
    derive(targets) {
      const off = targets.relay;
      const on = targets.relay_history;
      if (!off || !on) return {};
      const med = (runs: Record<string, unknown>[], key: string) =>
        summarise(runs.map((r) => Number(r[key]))).median;
      return {
        added_p50_us: med(on.runs, "p50_us") - med(off.runs, "p50_us"),
        added_p99_us: med(on.runs, "p99_us") - med(off.runs, "p99_us"),
        deliveries_per_s_ratio: on.median / off.median,
        server_cpu_per_delivery_ratio: med(on.runs, "server_cpu_us_per_delivery") /
          med(off.runs, "server_cpu_us_per_delivery"),
      };
    },
  },
  room_recovery: {
    title:
      `R5. Recovery with ?since=: open to room.joined and the last of 1,000 missed broadcasts replayed (median of ${SIZE.recoveryJoins} joins)`,
    metric: "recover_1000_ms",
    unit: "ms",
    better: "lower",
    skip: historySkip,
    unavailable: (t) => roomsRouteMissing(roomPort(t)),
    async run(t) {
      const tokens = await distinctUserTokens(ROOMS.recoveryUsers);
      const room = freshRoom("recovery");
      return await load({
        mode: "room_recovery",
        wire: wireOf(t),
        members: roomMembers(
          t,
          tokens.map(() => ({ room, group: "all" })),
          tokens,
        ),
        publishBase: `http://127.0.0.1:${roomPort(t)}/relay/rooms/`,
        secretKey: BENCH_SECRET_KEY,
        missed: ROOMS.recoveryMissed,
        joins: SIZE.recoveryJoins,
        payloadBytes: ROOMS.payloadBytes,
        durationS: 0,
      });
    },
  },
  room_sse_memory: {
    title: `R6. RSS per idle room connection, WebSocket member against SSE follower (${
      SIZE.sseFollowers.toLocaleString("en-US")
    } in ${ROOMS.sseRooms} rooms, history off)`,
    metric: "kib_per_member",
    unit: "KiB",
    better: "lower",
    unavailable: (t) => roomsRouteMissing(roomPort(t)),
    async run(t, server) {
      const n = SIZE.sseFollowers;
      const tokens = await distinctUserTokens(n);
      const warmLayout = Array.from(
        { length: ROOMS.warmMembers },
        (_, i) => ({ room: `warm-${i % 2}`, group: "all" }),
      );
      const layout = tokens.map((_, i) => ({
        room: `room-${i % ROOMS.sseRooms}`,
        group: "all",
      }));
      const sse = t === "relay_sse";
      // Followers read /relay/rooms/<room>/events; members join as in R2.
      const asFollowers = (members: RoomMember[]) =>
        sse
          ? members.map((m) => ({
            ...m,
            url: m.url.replace(/^ws:/, "http:").replace(
              /\?jwt=/,
              "/events?jwt=",
            ),
          }))
          : members;
      return await idleRss(
        {
          mode: sse ? "room_sse_idle" : "room_idle",
          wire: wireOf(t),
          warm: asFollowers(roomMembers(t, warmLayout, tokens)),
          members: asFollowers(roomMembers(t, layout, tokens)),
          publishBase: `http://127.0.0.1:${roomPort(t)}/relay/rooms/`,
          secretKey: BENCH_SECRET_KEY,
          durationS: 0,
        },
        server,
        n,
      );
    },
  },
};

function summarise(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted.length % 2
    ? sorted[(sorted.length - 1) / 2]!
    : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return (new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr)).trim()
      .split("\n")[0]!;
  } catch {
    return "unavailable";
  }
}

// Read once: the preflight below needs them, and so does the report.
const NODE_VERSION = await version("node", ["--version"]);
const NGINX_VERSION = await version("nginx", ["-v"]);

/** The targets the chosen cases run: only what they use must be installed. */
const NEEDED = new Set(
  Object.keys(CASES).filter((name) => !ONLY || ONLY.includes(name)).flatMap(
    targetsFor,
  ),
);

/** What the chosen baselines need installed; checked first, so a run fails at once and says how to fix it. */
async function missingPrerequisites(): Promise<string[]> {
  const missing: string[] = [];
  if (NEEDED.has("node_ws")) {
    if (NODE_VERSION === "unavailable") {
      missing.push("node_ws: Node.js 18+ on PATH");
    } else if (
      !(await Deno.stat(`${BENCH}node_modules/ws`).catch(() => null))
    ) {
      missing.push("node_ws: the ws package (npm ci --prefix bench)");
    }
  }
  for (
    const [target, pkg] of [["rooms_node_ws", "ws"], [
      "rooms_socketio",
      "socket.io",
    ]]
  ) {
    if (!NEEDED.has(target as TargetName)) continue;
    if (NODE_VERSION === "unavailable") {
      missing.push(`${target}: Node.js 18+ on PATH`);
    } else if (
      !(await Deno.stat(`${BENCH}node_modules/${pkg}`).catch(() => null))
    ) {
      missing.push(`${target}: the ${pkg} package (npm ci --prefix bench)`);
    }
  }
  if (NEEDED.has("nginx") && NGINX_VERSION === "unavailable") {
    missing.push("nginx: the nginx package (apt-get install -y nginx)");
  }
  const noPostgres = postgresUnavailable();
  if (NEEDED.has("relay_all") && noPostgres) {
    missing.push(`relay_all: ${noPostgres}`);
  }
  return missing;
}
const missing = await missingPrerequisites();
if (missing.length > 0) {
  console.error(
    `bench: missing prerequisites (or leave those out with --targets):`,
  );
  for (const line of missing) console.error(`  - ${line}`);
  Deno.exit(1);
}

/**
 * The all-features relay's database, a throwaway cluster with the migrations
 * applied; the room history cases use it too, and are skipped (with the
 * reason) when it cannot be had.
 */
let databaseProblem: string | null = NEEDED.has("relay_history")
  ? postgresUnavailable()
  : "relay_history is not among the chosen targets (--targets)";
let database: TestPostgres | null = null;
if (NEEDED.has("relay_all")) database = await startPostgres();
else if (NEEDED.has("relay_history") && databaseProblem === null) {
  try {
    database = await startPostgres();
  } catch (e) {
    databaseProblem = `the throwaway PostgreSQL did not start: ${
      (e as Error).message.slice(0, 500)
    }`;
  }
}

const startedAt = new Date();
const upstream: Server = await startServer(
  "upstream",
  [
    DENO,
    "run",
    "-A",
    `${BENCH}upstream.ts`,
    ...[PORTS.upstream, ...Object.values(UPSTREAM_PORTS)].flatMap((
      p,
    ) => ["--port", String(p)]),
  ],
  {
    port: PORTS.upstream,
    core: SERVER_CORE,
    env: { PATH: Deno.env.get("PATH") ?? "" },
  },
);

const results: Record<string, unknown> = {};
try {
  for (const [name, def] of Object.entries(CASES)) {
    if (ONLY && !ONLY.includes(name)) continue;
    const runs: Record<string, Record<string, unknown>[]> = {};
    const targets = targetsFor(name);
    /** Targets (or "*", the whole case) that cannot run on this build, and why. */
    const skipped: Record<string, string> = {};
    const caseSkip = targets.length ? await def.skip?.() ?? null : null;
    if (caseSkip) skipped["*"] = caseSkip;
    const reps = QUICK ? SIZE.reps : def.reps ?? SIZE.reps;
    for (let rep = 0; rep < reps && !caseSkip; rep++) {
      // Targets interleave within each repetition, so drift on the machine hits
      // all alike, and the order rotates between repetitions, so that no target
      // always runs right after the others (e.g. amid their TIME_WAIT sockets).
      // (A step of 2 would never rotate a pair: a pair alternates which goes first.)
      const step = targets.length === 2 ? 1 : 2;
      const order = targets.map((_, i) => targets[(i + rep * step) % targets.length]!);
      for (const target of order) {
        if (skipped[target] || skipped["*"]) continue;
        let server: Server;
        try {
          server = def.start ? await def.start(target) : await startTarget(target, name);
        } catch (e) {
          if (!(e instanceof Skip)) throw e;
          skipped["*"] = e.message;
          break;
        }
        try {
          const why = await def.unavailable?.(target) ?? null;
          if (why) {
            skipped[target] = why;
            continue;
          }
          const cpu0 = cpuSeconds(server.pid);
          const upstreamCpu0 = cpuSeconds(upstream.pid);
          const run = await def.run(target, server);
          run.server_cpu_s = cpuSeconds(server.pid) - cpu0;
          run.upstream_cpu_s = cpuSeconds(upstream.pid) - upstreamCpu0;
          (runs[target] ??= []).push(run);
          console.error(
            `${name} ${target} #${rep + 1}: ${def.metric}=${
              Number(run[def.metric]).toFixed(2)
            } server_cpu=${Number(run.server_cpu_s).toFixed(2)}s upstream_cpu=${
              Number(run.upstream_cpu_s).toFixed(2)
            }s`,
          );
        } finally {
          await stopTarget(server);
        }
      }
    }
    const summary: Record<
      string,
      { median: number; runs: Record<string, unknown>[] }
    > = {};
    for (const [target, list] of Object.entries(runs)) {
      summary[target] = {
        ...summarise(list.map((r) => Number(r[def.metric]))),
        runs: list,
      };
    }
    const derived = def.derive?.(summary) ?? {};
    for (const [target, why] of Object.entries(skipped)) {
      console.error(
        `${name} ${target === "*" ? "" : `${target} `}SKIPPED: ${why}`,
      );
    }
    results[name] = {
      title: def.title,
      metric: def.metric,
      unit: def.unit,
      better: def.better,
      targets: summary,
      ...(Object.keys(derived).length ? { derived } : {}),
      ...(Object.keys(skipped).length ? { skipped } : {}),
    };
  }
} finally {
  await upstream.stop();
  await auth.close();
  await database?.remove();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

const report: Record<string, unknown> & {
  cases: Record<string, unknown>;
  started_at: string;
} = {
  mode: QUICK ? "quick" : "full",
  started_at: startedAt.toISOString(),
  duration_s: Math.round((Date.now() - startedAt.getTime()) / 1000),
  machine: {
    cpus: navigator.hardwareConcurrency,
    cpu_model: /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))
      ?.[1] ?? "",
    mem_gib: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    kernel: Deno.osRelease(),
    pinning:
      `load generator on core ${LOAD_CORE}; upstream and server under test on core ${SERVER_CORE}`,
  },
  versions: {
    deno: Deno.version.deno,
    node: NODE_VERSION,
    nginx: NGINX_VERSION,
    ws: JSON.parse(await Deno.readTextFile(`${BENCH}package.json`)).dependencies
      .ws,
    "socket.io": JSON.parse(await Deno.readTextFile(`${BENCH}package.json`)).dependencies[
      "socket.io"
    ],
  },
  relay_settings_raised: RELAY_RAISED,
  relay_room_settings: {
    ...ROOM_RELAY,
    RELAY_ROOMS_BUS: "off (R1, R2, R4-R6, voice_captions); realtime (R3)",
    RELAY_ROOM_HISTORY: `${ROOMS.historyKeep} for relay_history (R4, R5); off elsewhere`,
  },
  sizes: SIZE,
  cases: results,
};
// A run limited to some targets has no peers to compare with, and a filtered
// quick run is not the smoke result: both go to partial.json (not committed).
const partial = TARGET_FILTER !== undefined || (QUICK && ONLY !== undefined);
const out = `${BENCH}results/${partial ? "partial" : QUICK ? "quick" : "full"}.json`;
if (!QUICK && ONLY && !TARGET_FILTER) {
  // A partial full run (a rerun of noisy cases) replaces those cases in the last full results.
  const last = JSON.parse(await Deno.readTextFile(out).catch(() => "null"));
  if (last?.cases) {
    report.cases = { ...last.cases, ...results };
    report.started_at = last.started_at;
    // Earlier reruns stay listed: each says which cases are not from the first run.
    const rerun = { cases: ONLY, at: startedAt.toISOString() };
    const earlier = last.rerun === undefined ? [] : [last.reruns_before ?? [], last.rerun].flat();
    Object.assign(report, {
      rerun,
      ...(earlier.length ? { reruns_before: earlier } : {}),
    });
  }
}
await Deno.writeTextFile(out, JSON.stringify(report, null, 2) + "\n");
console.error(`wrote ${out}`);
if (!QUICK && !TARGET_FILTER) {
  await Deno.writeTextFile(
    `${ROOT}docs/benchmarks.svg`,
    renderChart(report as unknown as Report),
  );
  const doc = `${ROOT}docs/BENCHMARKS.md`;
  const text = await Deno.readTextFile(doc).catch(() => null);
  if (text !== null) {
    await Deno.writeTextFile(
      doc,
      withTables(text, report as unknown as Report),
    );
  }
  // Keep the generated files as `deno fmt --check` wants them (the repo's line width).
  await new Deno.Command(DENO, {
    args: [
      "fmt",
      "--config",
      `${ROOT}deno.json`,
      `${ROOT}docs/benchmarks.svg`,
      doc,
      out,
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  console.error(
    "wrote docs/benchmarks.svg and the tables of docs/BENCHMARKS.md",
  );
}

if (QUICK) {
  // CI's smoke check: every case produced a figure for every target (not a timing check).
  const missing: string[] = [];
  for (
    const [name, c] of Object.entries(results) as [
      string,
      {
        targets: Record<string, { median: number }>;
        skipped?: Record<string, string>;
      },
    ][]
  ) {
    // A skip (a stand-in or route not in this tree yet) is said above and in the JSON, not a failure.
    if (c.skipped?.["*"]) continue;
    const want = targetsFor(name).filter((t) => !c.skipped?.[t]);
    for (const t of want) {
      if (!Number.isFinite(c.targets[t]?.median)) missing.push(`${name}/${t}`);
    }
  }
  for (const name of Object.keys(CASES)) {
    if (!ONLY && !(name in results)) missing.push(name);
  }
  if (missing.length) {
    console.error(`bench --quick: no result for ${missing.join(", ")}`);
    Deno.exit(1);
  }
  console.log(
    `bench --quick: ${
      Object.keys(results).length
    } cases x ${TARGETS.length} targets produced results`,
  );
}
