/**
 * The client library under Node (node_scenario.mjs in a `node` child) against
 * the real relay: with the `ws` package passed in, and found by the library
 * itself from an app's node_modules; and its room client (node_room_scenario.mjs)
 * in a conversation across two relay processes that meet through the Supabase
 * Realtime stand-in and keep history in PostgreSQL. Needs `node` (>= 20) and
 * `npm ci --prefix tests/client/node`; `RELAY_CLIENT_NODE=skip` skips these
 * (announced), otherwise a missing one fails with what to install.
 * @module
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, startRelay } from "../helpers/relay_harness.ts";
import { sleep, until } from "../helpers/ws_client.ts";
import { itemTexts, startProxy, type TcpProxy } from "./support.ts";
import { postgresUnavailable } from "../helpers/postgres.ts";
import type { RelayProcess } from "../helpers/relay_process.ts";
import type { AuthStandIn } from "../stand_ins/auth.ts";
import { recordRoom } from "./room_support.ts";
import {
  assertWholeConversation,
  line,
  PATIENT,
  roomUser,
  storedRows,
  withInstances,
} from "./room_instances_support.ts";

const SKIP = Deno.env.get("RELAY_CLIENT_NODE") === "skip";
if (SKIP) console.log("client under Node: skipped because RELAY_CLIENT_NODE=skip");

const SCENARIO = new URL("./node_scenario.mjs", import.meta.url).pathname;
const ROOM_SCENARIO = new URL("./node_room_scenario.mjs", import.meta.url).pathname;
const CLIENT = new URL("../../client/relay_client.js", import.meta.url).pathname;
const NODE_DEPS = new URL("./node/package.json", import.meta.url).pathname;
const WS = new URL("./node/node_modules/ws", import.meta.url).pathname;
/** Bounds a scenario that hangs. */
const SCENARIO_TIMEOUT_MS = 30_000;

function prerequisites(): void {
  let version = "";
  try {
    const out = new Deno.Command("node", { args: ["--version"], stdout: "piped" }).outputSync();
    version = new TextDecoder().decode(out.stdout).trim();
  } catch { /* not installed */ }
  assert.ok(
    Number(/^v(\d+)/.exec(version)?.[1] ?? 0) >= 20,
    `Node >= 20 is needed (found ${version || "none"}), or set RELAY_CLIENT_NODE=skip`,
  );
  let ws = false;
  try {
    ws = Deno.statSync(`${WS}/package.json`).isFile;
  } catch { /* not installed */ }
  assert.ok(ws, "the ws package is missing: npm ci --prefix tests/client/node");
}

type Line = { kind: string; [key: string]: unknown };
type StateLine = { kind: "state"; state: string; info: Record<string, unknown> };

/** One `node node_scenario.mjs` and what it printed. */
class NodeClient {
  readonly lines: Line[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #read: Promise<void>;
  readonly #stderr: Promise<string>;
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(
    env: Record<string, string>,
    { scenario = SCENARIO, timeoutMs = SCENARIO_TIMEOUT_MS } = {},
  ) {
    this.#child = new Deno.Command("node", {
      args: [scenario],
      env: { ...env, NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#timer = setTimeout(() => this.#child.kill("SIGKILL"), timeoutMs);
    this.#stdin = this.#child.stdin.getWriter();
    const stdout = this.#child.stdout;
    this.#read = (async () => {
      let rest = "";
      for await (const text of stdout.pipeThrough(new TextDecoderStream())) {
        rest += text;
        const parts = rest.split("\n");
        rest = parts.pop() ?? "";
        for (const part of parts) if (part.trim()) this.lines.push(JSON.parse(part));
      }
    })();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  states(state?: string): StateLine[] {
    return (this.lines.filter((l) => l.kind === "state") as StateLine[])
      .filter((l) => state === undefined || l.state === state);
  }

  /** Waits for the `n`th `state` line and returns its info. */
  async waitState(state: string, n = 1, ms = 10_000): Promise<Record<string, unknown>> {
    await until(() => this.states(state).length >= n, ms, `node: ${state} #${n}`).catch(
      (error) => {
        const seen = this.states().map((s) => [s.state, s.info.why]);
        throw new Error(`${error.message}; states ${JSON.stringify(seen)}`);
      },
    );
    return this.states(state)[n - 1]!.info;
  }

  async command(command: Record<string, unknown>): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
  }

  /** Waits for the process to exit; returns its code and stderr. */
  async exited(): Promise<{ code: number; stderr: string }> {
    const { code } = await this.#child.status;
    clearTimeout(this.#timer);
    await this.#stdin.close().catch(() => {});
    await this.#read;
    return { code, stderr: await this.#stderr };
  }
}

/** A token endpoint for the Node side: a fresh dev token per GET, or a bad one. */
function startTokenServer(auth: AuthStandIn, bad = false) {
  const issued: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    const token = bad ? "not-a-token" : (await auth.issueDevToken()).access_token;
    issued.push(token);
    return new Response(token);
  });
  return {
    issued,
    url: `http://127.0.0.1:${server.addr.port}/token`,
    close: () => server.shutdown(),
  };
}

/** Relay (Realtime stand-in), proxy and token server around `body`; all stopped after. */
async function withNodeStack(
  options: { badTokens?: boolean },
  body: (
    s: { relay: RelayUnderTest; proxy: TcpProxy; tokens: ReturnType<typeof startTokenServer> },
  ) => Promise<void>,
): Promise<void> {
  prerequisites();
  const relay = await startRelay({});
  relay.openai.behaviour = { kind: "realtime" };
  const proxy = startProxy(relay.port);
  const tokens = startTokenServer(relay.auth, options.badTokens);
  try {
    await body({ relay, proxy, tokens });
  } finally {
    await proxy.close();
    await tokens.close();
    await relay.close();
  }
}

Deno.test({
  name:
    "client under Node with ws passed in: reconnects after 1012 and a TCP drop, holding in order",
  ignore: SKIP,
  fn: async () => {
    await withNodeStack({}, async ({ relay, proxy, tokens }) => {
      const second = await startRelay({ auth: relay.auth, openai: relay.openai });
      try {
        const texts = ["eins", "zwei ✓", "drei"];
        const node = new NodeClient({
          RELAY_URL: proxy.url("/relay"),
          TOKEN_URL: tokens.url,
          CLIENT_MODULE: CLIENT,
          WS_FROM: NODE_DEPS,
          HELD_TEXTS: JSON.stringify(texts),
        });
        await node.waitState("open");
        proxy.target = second.port;
        await relay.relay.shutdown();
        const restarting = await node.waitState("reconnecting");
        assert.deepEqual([restarting.why, restarting.code], ["server_restarting", 1012]);
        // Printed just after the state line, maybe in the next chunk the test reads.
        await until(() => node.lines.some((l) => l.kind === "held"), 5000, "the held line");
        const held = node.lines.find((l) => l.kind === "held")?.held as { messages: number };
        assert.equal(held?.messages, 3);
        await node.waitState("open", 2);
        await until(
          () => itemTexts(relay.openai.connections[1]?.received ?? []).length === 3,
          5000,
          "held messages upstream",
        );
        assert.deepEqual(itemTexts(relay.openai.connections[1]!.received), texts);

        proxy.dropAll();
        const lost = await node.waitState("reconnecting", 2);
        assert.deepEqual([lost.why, lost.code], ["connection_lost", 1006]);
        await node.waitState("open", 3);
        await node.command({ cmd: "close" });
        const closed = await node.waitState("closed");
        assert.equal(closed.why, "client");
        const { code, stderr } = await node.exited();
        assert.equal(code, 0, stderr);
        assert.equal(stderr, "", "nothing on stderr (no warnings, no token)");

        assert.equal(tokens.issued.length, 3, "a token per connection");
        assert.equal(new Set(tokens.issued).size, 3);
        const session = node.lines.find((l) => l.kind === "session")?.session as string;
        assert.equal(proxy.heads.length, 3);
        proxy.heads.forEach((head, i) => {
          assert.ok(head.startsWith(`GET /relay?session=${session} `), "?session= every time");
          // With ws the token goes as a header (ws joins subprotocols in a way Deno refuses).
          assert.ok(
            head.includes(`\r\nauthorization: Bearer ${tokens.issued[i]}\r\n`),
            `header ${i}`,
          );
          assert.ok(!/sec-websocket-protocol/i.test(head), `no subprotocols ${i}`);
        });
      } finally {
        await second.close();
      }
    });
  },
});

Deno.test({
  name: "client under Node finds ws itself from an app's node_modules and reconnects after 1011",
  ignore: SKIP,
  fn: async () => {
    await withNodeStack({}, async ({ relay, proxy, tokens }) => {
      // An app that vendored the file: app/relay_client.js beside app/node_modules/ws.
      const app = await Deno.makeTempDir({ prefix: "relay_client_app_" });
      try {
        await Deno.copyFile(CLIENT, `${app}/relay_client.js`);
        await Deno.writeTextFile(`${app}/package.json`, '{"type":"module","private":true}\n');
        await Deno.mkdir(`${app}/node_modules`);
        await Deno.symlink(WS, `${app}/node_modules/ws`);
        const node = new NodeClient({
          RELAY_URL: proxy.url("/relay"),
          TOKEN_URL: tokens.url,
          CLIENT_MODULE: `${app}/relay_client.js`,
        });
        await node.waitState("open");
        relay.openai.connections[0]!.drop();
        const abnormal = await node.waitState("reconnecting");
        assert.deepEqual([abnormal.why, abnormal.code], ["upstream_closed_abnormally", 1011]);
        await node.waitState("open", 2);
        await node.command({ cmd: "close" });
        const { code, stderr } = await node.exited();
        assert.equal(code, 0, stderr);
      } finally {
        await Deno.remove(app, { recursive: true });
      }
    });
  },
});

Deno.test({
  name: "client under Node does not reconnect after a refused first connection",
  ignore: SKIP,
  fn: async () => {
    await withNodeStack({ badTokens: true }, async ({ relay, proxy, tokens }) => {
      const node = new NodeClient({
        RELAY_URL: proxy.url("/relay"),
        TOKEN_URL: tokens.url,
        CLIENT_MODULE: CLIENT,
        WS_FROM: NODE_DEPS,
      });
      const closed = await node.waitState("closed");
      assert.equal(closed.why, "refused");
      const { code, stderr } = await node.exited();
      assert.equal(code, 0, stderr);
      assert.deepEqual(node.states().map((s) => s.state), ["connecting", "closed"]);
      assert.equal(tokens.issued.length, 1);
      const rejected = relay.events("websocket.connection.rejected");
      assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[401, "invalid_token"]]);
    });
  },
});

Deno.test({
  name: "client under Node: ws with subprotocols is refused 400 by Deno's upgradeWebSocket, " +
    "which is why the library sends the token as a header with ws",
  ignore: SKIP,
  fn: async () => {
    // ws offers "realtime,jwt-..." and Deno splits the list on ", ": the protocol the relay
    // selects is then "not in the request's protocol list" and the upgrade throws. When this
    // test fails, Deno parses the list properly and "protocol" could be ws's default again.
    await withNodeStack({}, async ({ relay, proxy, tokens }) => {
      const node = new NodeClient({
        RELAY_URL: proxy.url("/relay"),
        TOKEN_URL: tokens.url,
        CLIENT_MODULE: CLIENT,
        WS_FROM: NODE_DEPS,
        TOKEN_IN: "protocol",
      });
      const closed = await node.waitState("closed");
      assert.equal(closed.why, "refused");
      assert.equal((await node.exited()).code, 0);
      assert.ok(/^sec-websocket-protocol: realtime,jwt-/im.test(proxy.heads[0] ?? ""), "ws's list");
      const rejected = relay.events("websocket.connection.rejected");
      assert.deepEqual(rejected.map((e) => [e.status, e.error]), [[400, "bad_handshake"]]);
    });
  },
});

const noPostgres = postgresUnavailable();
if (noPostgres && !SKIP) console.log(`room client under Node: ignored, ${noPostgres}`);

Deno.test({
  name: "room client under Node with ws and in Deno on two relay processes: a 200-message " +
    "conversation through a restart (1012) and TCP cuts arrives complete, in offset order, once",
  ignore: SKIP || noPostgres !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    prerequisites();
    await withInstances(async ({ pg, auth, start, proxy, defer }) => {
      const tokens = startTokenServer(auth);
      defer(() => tokens.close());
      const [A, B] = await Promise.all([start(), start()]);
      const room = "public:node";
      // Node on A, Ada (Deno) on B, each through a proxy that can cut its network;
      // the restarted A listens on the same port, behind the same proxy.
      const toA = proxy(A.port);
      const toB = proxy(B.port);
      const a = recordRoom(toB, roomUser(auth), { room, self: true, ...PATIENT });
      defer(() => a.room.close());
      await a.waitState("open", 1, 30_000);
      const node = new NodeClient({
        RELAY_URL: toA.url("/relay"),
        TOKEN_URL: tokens.url,
        CLIENT_MODULE: CLIENT,
        WS_FROM: NODE_DEPS,
        ROOM: room,
      }, { scenario: ROOM_SCENARIO, timeoutMs: 120_000 });
      await node.waitState("open", 1, 30_000);
      const messages = () =>
        node.lines.filter((l) => l.kind === "message") as unknown as {
          payload: { from: string; seq: number };
          meta: { offset: number };
        }[];
      const sent = { ada: 0, node: 0 };
      let restarted: Promise<RelayProcess> | null = null;
      for (let i = 0; i < 200; i++) {
        if (i % 3 === 2) {
          await node.command({ cmd: "send", payload: { from: "node", seq: sent.node++ } });
        } else a.room.send("chat", { from: "ada", seq: sent.ada++ });
        if (i === 60) {
          // SIGTERM: A says 1012 server_restarting and exits; a new process takes its
          // port while the conversation goes on (Node's lines are held meanwhile).
          restarted = A.stop().then(async (code) => {
            assert.equal(code, 0, "A exits cleanly on SIGTERM");
            return await start(A.port);
          });
          await node.waitState("reconnecting", 1, 30_000);
        }
        // Each cut lands on a joined connection (not on a rejoin still under way).
        if (i === 120) await node.waitState("open", 2, 30_000).then(() => toA.dropAll());
        if (i === 160) await a.waitState("open", 1).then(() => toB.dropAll());
        if (i % 4 === 0) await sleep(3);
      }
      await restarted;
      await a.waitFor(() => a.messages.length >= 200, "200 at Ada", 60_000);
      await until(() => messages().length >= 134, 60_000, "Ada's lines under Node");
      await until(
        () => {
          const last = node.lines.filter((l) => l.kind === "pending").at(-1);
          return (last?.pending as { messages: number } | undefined)?.messages === 0;
        },
        30_000,
        "Node's broadcasts acknowledged",
      );
      await a.waitFor(() => a.room.pending.messages === 0, "Ada's acknowledged", 30_000);
      await sleep(500); // a duplicate would arrive now

      // Ada (self) has the room's every offset, one line each: nothing was kept twice.
      assertWholeConversation(a.messages, { ada: 134, node: 66 }, "Ada");
      // Node got Ada's 134 lines, in offset order, once each, and none of its own.
      const got = messages();
      assert.equal(got.length, 134);
      assert.ok(got.every((m) => m.payload.from === "ada"));
      assert.deepEqual(got.map((m) => m.payload.seq), [...Array(134).keys()]);
      assert.deepEqual(
        got.map((m) => m.meta.offset),
        a.messages.filter((m) => line(m).from === "ada").map((m) => m.meta.offset),
        "Node's offsets are the room's",
      );
      const opens = node.states("open");
      assert.equal(opens.length, 3, "joined, rejoined after the restart and after the cut");
      assert.ok(
        opens.slice(1).every((s) => s.info.why === "rejoined" && s.info.recovered === true),
        "recovered each time",
      );
      const downs = node.states("reconnecting").map((s) => [s.info.why, s.info.code]);
      assert.deepEqual(downs[0], ["server_restarting", 1012]);
      assert.ok(
        downs.some(([why, code]) => why === "connection_lost" && code === 1006),
        JSON.stringify(downs),
      );
      assert.equal(a.count("open"), 2, "Ada on B: joined, then rejoined after her cut");
      await node.command({ cmd: "close" });
      const { code, stderr } = await node.exited();
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "", "nothing on stderr");
      // The database keeps each line once.
      const rows = await storedRows(pg, room);
      assert.deepEqual(rows.map((r) => r.id), a.messages.map((m) => m.meta.id));
      // With ws the token goes as a header, a fresh one each time; every rejoin asks ?since=.
      assert.equal(new Set(tokens.issued).size, tokens.issued.length, "a fresh token each time");
      assert.ok(toA.heads.length >= 3);
      toA.heads.forEach((head, i) => {
        const bearer = /\r\nauthorization: Bearer (\S+)\r\n/.exec(head)?.[1];
        assert.ok(bearer !== undefined && tokens.issued.includes(bearer), `header ${i}`);
        if (i > 0) {
          assert.ok(/^GET \/relay\/rooms\/public:node\?since=\d+ /.test(head), `since ${i}`);
        }
      });
      console.log(
        `measured: Node on A rejoined ${opens.length - 1} times (restart, cut), ` +
          `recovered each time; ${got.length} of Ada's lines at Node, 200 at Ada, 200 rows`,
      );
    });
  },
});
