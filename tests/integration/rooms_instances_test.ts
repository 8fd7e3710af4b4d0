/**
 * Rooms across instances (CONTRACT.md "Rooms", "Across instances" and
 * "Publishing from a server"): three relays, each the real entrypoint in its
 * own process, meet through one Supabase Realtime stand-in (and share one
 * Auth stand-in), as instances of one project meet through the project's
 * Realtime. Members on every instance chat, see each other's presence, keep
 * per-sender order, survive a Realtime outage and the crash of an instance;
 * servers publish into rooms from any instance; `room_full` counts members
 * on every instance; and the relay stays within Realtime's presence limit
 * whatever the churn.
 * @module
 */
import assert from "node:assert/strict";
import { UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { instancesEnv } from "../helpers/rooms.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { type RealtimeStandIn, startRealtimeStandIn } from "../stand_ins/supabase_realtime.ts";

/** How long "exactly once" waits for a duplicate that should never come. */
const SETTLE_MS = 300;

/** A room member's text events as parsed JSON. */
type RoomEvent = { type: string; [key: string]: unknown };

/** A broadcast as a member receives it. */
interface Broadcast {
  type: "broadcast";
  event: string;
  payload: unknown;
  meta: { user: string | null; id: string | null; offset: number | null; at: string };
}

/** Three relays on one Realtime (and one Auth) stand-in. */
interface Cluster {
  readonly auth: AuthStandIn;
  readonly realtime: RealtimeStandIn;
  readonly relays: RelayProcess[];
}

/**
 * Starts the stand-ins and `count` relay processes, runs `body`, and always
 * stops everything; a failure in `body` is the one reported.
 */
async function withCluster(
  count: number,
  extra: Record<string, string>,
  body: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  const auth = await startAuthStandIn();
  const realtime = await startRealtimeStandIn();
  const env = { ...instancesEnv(auth, realtime), ...extra };
  const started = await Promise.allSettled(
    Array.from({ length: count }, () => startRelayProcess(env)),
  );
  const relays = started.flatMap((result) => result.status === "fulfilled" ? [result.value] : []);
  let failure: unknown = null;
  try {
    const refused = started.find((result) => result.status === "rejected");
    if (refused) throw (refused as PromiseRejectedResult).reason;
    await body({ auth, realtime, relays });
  } catch (error) {
    failure = error;
  }
  await Promise.all(relays.map((relay) => relay.stop()));
  await realtime.close();
  await auth.close();
  if (failure !== null) throw failure;
}

/** The JSON lines a process wrote to stdout named `event`. */
function telemetryOf(relay: RelayProcess, event: string): Record<string, unknown>[] {
  return relay.output().split("\n").filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.event === event);
}

/** One connection to a room, and what it received. */
class Member {
  readonly #parsed: (RoomEvent | null)[] = [];

  constructor(
    readonly label: string,
    readonly user: string,
    readonly client: TestClient,
    readonly joined: RoomEvent,
  ) {}

  /** Every text event so far, parsed once. */
  events(): RoomEvent[] {
    const messages = this.client.messages;
    for (let i = this.#parsed.length; i < messages.length; i++) {
      const message = messages[i]!;
      this.#parsed.push(typeof message === "string" ? JSON.parse(message) as RoomEvent : null);
    }
    return this.#parsed.filter((event): event is RoomEvent => event !== null);
  }

  ofType(type: string): RoomEvent[] {
    return this.events().filter((event) => event.type === type);
  }

  broadcasts(event?: string): Broadcast[] {
    return (this.ofType("broadcast") as unknown as Broadcast[])
      .filter((b) => event === undefined || b.event === event);
  }

  binaries(): Uint8Array[] {
    return this.client.messages.filter((m) => typeof m !== "string")
      .map((m) => new Uint8Array(m as ArrayBuffer));
  }

  /** Users this member knows to be present: `room.joined`'s list, then joins and leaves. */
  presence(): Set<string> {
    const users = new Set((this.joined.presence as { user: string }[]).map((p) => p.user));
    for (const event of this.events()) {
      if (event.type === "presence.join") users.add(event.user as string);
      if (event.type === "presence.leave") users.delete(event.user as string);
    }
    return users;
  }

  /** How many `type` presence events named `user`. */
  presenceEvents(type: "presence.join" | "presence.leave" | "presence.state", user: string) {
    return this.ofType(type).filter((event) => event.user === user);
  }

  broadcast(event: string, payload: unknown, extra: Record<string, unknown> = {}): void {
    this.client.socket.send(JSON.stringify({ type: "broadcast", event, payload, ...extra }));
  }
}

/** Connections a step opened, all closed when it ends. */
class Members {
  readonly #all: Member[] = [];
  readonly #clients: TestClient[] = [];

  constructor(private readonly auth: AuthStandIn) {}

  /** Joins `room` on `relay` as `user` (a new one by default) and waits for `room.joined`. */
  async join(
    label: string,
    relay: RelayProcess,
    room: string,
    options: { user?: string; query?: Record<string, string> } = {},
  ): Promise<Member> {
    const user = options.user ?? crypto.randomUUID();
    const token = await this.auth.signEs256({ sub: user });
    const client = new TestClient(
      relay.wsUrl(`/relay/rooms/${room}`, { jwt: token, ...options.query }),
    );
    this.#clients.push(client);
    await client.waitForMessages(1, 8000);
    const joined = JSON.parse(client.messages[0] as string) as RoomEvent;
    assert.equal(joined.type, "room.joined", `${label}: room.joined first`);
    assert.equal(joined.room, room);
    assert.equal(joined.user, user);
    const member = new Member(label, user, client, joined);
    this.#all.push(member);
    return member;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.close().catch(() => {})));
  }
}

/** Runs `body` with a fresh set of members, closing them whatever happens. */
async function withMembers(
  auth: AuthStandIn,
  body: (members: Members) => Promise<void>,
): Promise<void> {
  const members = new Members(auth);
  try {
    await body(members);
  } finally {
    await members.closeAll();
  }
}

function joinedUsers(member: Member): string[] {
  return (member.joined.presence as { user: string }[]).map((p) => p.user).sort();
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A JSON POST to `/relay/rooms/<room>` on `relay` with `token` as the bearer. */
async function publish(
  relay: RelayProcess,
  room: string,
  token: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${relay.port}/relay/rooms/${room}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

Deno.test({
  name: "rooms across instances: three relay processes meet through one Realtime",
  fn: async (t) => {
    await withCluster(3, {}, async ({ auth, realtime, relays }) => {
      const [A, B, C] = relays as [RelayProcess, RelayProcess, RelayProcess];

      await t.step(
        "rooms across instances: members on each instance chat, each broadcast reaches every other member once with its meta",
        () =>
          withMembers(auth, async (members) => {
            const room = "chat";
            const a1 = await members.join("a1", A, room);
            const b1 = await members.join("b1", B, room);
            const c1 = await members.join("c1", C, room);
            const a2 = await members.join("a2", A, room, { query: { self: "true" } });
            const all = [a1, b1, c1, a2];

            // room.joined lists every user present, on every instance.
            assert.deepEqual(joinedUsers(a1), [a1.user]);
            assert.deepEqual(joinedUsers(b1), [a1.user, b1.user].sort());
            assert.deepEqual(joinedUsers(c1), [a1.user, b1.user, c1.user].sort());
            assert.deepEqual(joinedUsers(a2), all.map((m) => m.user).sort());
            for (const p of c1.joined.presence as { state: unknown }[]) assert.equal(p.state, null);
            // Earlier members heard each newcomer exactly once, never themselves.
            await until(
              () => all.every((m) => m.presence().size === all.length),
              5000,
              "every member to see all four users",
            );
            await sleep(SETTLE_MS);
            for (const m of all) {
              assert.equal(m.presenceEvents("presence.join", m.user).length, 0, m.label);
              for (const other of all) {
                if (other === m) continue;
                const expected = joinedUsers(m).includes(other.user) ? 0 : 1;
                assert.equal(
                  m.presenceEvents("presence.join", other.user).length,
                  expected,
                  `${m.label} heard ${other.label} join`,
                );
              }
            }

            // Each member broadcasts once (with an id) on its instance.
            const before = Date.now();
            for (const m of all) {
              m.broadcast("chat", { from: m.label, text: `hé ${m.label} ✓`, n: [1, { x: null }] }, {
                id: `msg-${m.label}`,
              });
            }
            // Each hears the three others; a2 (?self=true) hears itself too.
            const expectedCount = (m: Member) => m === a2 ? 4 : 3;
            await until(
              () => all.every((m) => m.broadcasts("chat").length >= expectedCount(m)),
              5000,
              "every broadcast everywhere",
            );
            await sleep(SETTLE_MS);
            const after = Date.now();
            for (const m of all) {
              const got = m.broadcasts("chat");
              assert.equal(got.length, expectedCount(m), `${m.label} got each broadcast once`);
              const senders = got.map((b) => (b.payload as { from: string }).from).sort();
              const expected = all.filter((s) => s !== m || m === a2).map((s) => s.label).sort();
              assert.deepEqual(senders, expected, `${m.label} heard from`);
              for (const b of got) {
                const sender = all.find((s) => s.label === (b.payload as { from: string }).from)!;
                assert.deepEqual(b.payload, {
                  from: sender.label,
                  text: `hé ${sender.label} ✓`,
                  n: [1, { x: null }],
                });
                assert.equal(b.meta.user, sender.user);
                assert.equal(b.meta.id, `msg-${sender.label}`);
                assert.equal(b.meta.offset, null);
                const at = Date.parse(b.meta.at);
                assert.match(b.meta.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
                assert.ok(at >= before - 1000 && at <= after + 1000, `meta.at ${b.meta.at}`);
              }
              // The sender's ack, once.
              assert.deepEqual(m.ofType("broadcast.ack"), [{
                type: "broadcast.ack",
                id: `msg-${m.label}`,
                offset: null,
              }]);
            }

            // Binary frames, byte-identical on every instance (a2 hears its own).
            const frames = new Map<Member, Uint8Array>();
            for (const [i, m] of all.entries()) {
              const bytes = new Uint8Array(i === 0 ? 60_000 : 256 + i);
              for (let j = 0; j < bytes.length; j++) bytes[j] = (j * 7 + i * 13) & 0xff;
              bytes[0] = i;
              frames.set(m, bytes);
              m.client.socket.send(bytes);
            }
            await until(
              () => all.every((m) => m.binaries().length >= expectedCount(m)),
              5000,
              "every binary frame everywhere",
            );
            await sleep(SETTLE_MS);
            for (const m of all) {
              const got = m.binaries().map(hex).sort();
              const expected = all.filter((s) => s !== m || m === a2)
                .map((s) => hex(frames.get(s)!)).sort();
              assert.deepEqual(got, expected, `${m.label}'s binary frames`);
            }
          }),
      );

      await t.step(
        "rooms across instances: per-sender order holds for 100 interleaved messages from each of 3 senders",
        () =>
          withMembers(auth, async (members) => {
            const room = "order";
            const senders = [
              await members.join("a", A, room),
              await members.join("b", B, room),
              await members.join("c", C, room),
            ];
            const listeners = [
              await members.join("la", A, room),
              await members.join("lb", B, room),
              await members.join("lc", C, room),
            ];
            const N = 100;
            for (let n = 0; n < N; n++) {
              for (const s of senders) s.broadcast("seq", { from: s.label, n });
            }
            const expectedCount = (m: Member) => senders.includes(m) ? 2 * N : 3 * N;
            const everyone = [...senders, ...listeners];
            await until(
              () => everyone.every((m) => m.broadcasts("seq").length >= expectedCount(m)),
              10_000,
              "300 messages everywhere",
            );
            await sleep(SETTLE_MS);
            for (const m of everyone) {
              const got = m.broadcasts("seq");
              assert.equal(got.length, expectedCount(m), `${m.label}: each message once`);
              for (const s of senders) {
                if (s === m) continue;
                const seq = got.filter((b) => b.meta.user === s.user)
                  .map((b) => (b.payload as { n: number }).n);
                assert.deepEqual(
                  seq,
                  Array.from({ length: N }, (_, n) => n),
                  `${m.label} hears ${s.label} in order`,
                );
              }
            }
          }),
      );

      await t.step(
        "rooms across instances: a second tab on another instance is one presence entry; closing it does not make the user leave",
        () =>
          withMembers(auth, async (members) => {
            const room = "tabs";
            const watcher = await members.join("watcher", C, room);
            const tab1 = await members.join("tab1", A, room);
            const tab2 = await members.join("tab2", B, room, { user: tab1.user });
            const user = tab1.user;
            assert.deepEqual(joinedUsers(tab2), [user, watcher.user].sort(), "one entry per user");
            await until(() => watcher.presence().has(user), 5000, "the watcher to see the user");
            // The second tab sets the user's state: the watcher hears it, not a second join.
            tab2.client.socket.send(
              JSON.stringify({ type: "presence", state: { name: "U", tab: 2 } }),
            );
            await until(
              () => watcher.presenceEvents("presence.state", user).length > 0,
              5000,
              "the state change",
            );
            assert.deepEqual(watcher.presenceEvents("presence.state", user).at(-1)?.state, {
              name: "U",
              tab: 2,
            });
            await tab2.client.close();
            // A newcomer on the closed tab's instance still sees the user (held on A).
            const late = await members.join("late", B, room);
            assert.deepEqual(joinedUsers(late), [user, watcher.user, late.user].sort());
            await sleep(1000);
            assert.equal(watcher.presenceEvents("presence.join", user).length, 1);
            assert.equal(watcher.presenceEvents("presence.leave", user).length, 0, "still here");
            assert.equal(late.presenceEvents("presence.leave", user).length, 0);
            // The last tab closes: the user leaves, once, everywhere.
            await tab1.client.close();
            await until(
              () => !watcher.presence().has(user) && !late.presence().has(user),
              5000,
              "the user to leave",
            );
            await sleep(SETTLE_MS);
            assert.equal(watcher.presenceEvents("presence.leave", user).length, 1);
            assert.equal(late.presenceEvents("presence.leave", user).length, 1);
          }),
      );

      await t.step(
        "rooms across instances: a server publishes from an instance with no member and from one with members",
        () =>
          withMembers(auth, async (members) => {
            const room = "news";
            const a = await members.join("a", A, room);
            const b = await members.join("b", B, room);
            const a2 = await members.join("a2", A, room, { query: { self: "true" } });
            const all = [a, b, a2];
            await until(() => all.every((m) => m.presence().size === 3), 5000, "presence");

            // C has no member of the room: through Realtime's REST broadcast.
            const fromC = await publish(C, room, realtime.secretKey, {
              event: "notice",
              payload: { from: "C" },
              id: "srv-c",
            });
            assert.deepEqual(fromC, { status: 202, body: { offset: null } });
            // A has members: to them at once and through the channel to B.
            const fromA = await publish(A, room, realtime.secretKey, {
              event: "notice",
              payload: { from: "A" },
              id: "srv-a",
            });
            assert.deepEqual(fromA, { status: 202, body: { offset: null } });
            // A user's token (not a member): meta.user is the user.
            const writer = crypto.randomUUID();
            const fromUser = await publish(B, room, await auth.signEs256({ sub: writer }), {
              event: "notice",
              payload: { from: "user" },
            });
            assert.deepEqual(fromUser, { status: 202, body: { offset: null } });
            // The anon key is no user's and no server's.
            const anon = await publish(C, room, auth.anonKey, { event: "notice", payload: {} });
            assert.equal(anon.status, 403, JSON.stringify(anon.body));

            await until(
              () => all.every((m) => m.broadcasts("notice").length >= 3),
              5000,
              "every publish everywhere",
            );
            await sleep(SETTLE_MS);
            for (const m of all) {
              const got = m.broadcasts("notice");
              assert.equal(got.length, 3, `${m.label} got each publish once`);
              const by = (from: string) =>
                got.filter((x) => (x.payload as { from: string }).from === from);
              for (const [from, id] of [["C", "srv-c"], ["A", "srv-a"]] as const) {
                assert.equal(by(from).length, 1);
                assert.equal(by(from)[0]!.meta.user, null);
                assert.equal(by(from)[0]!.meta.id, id);
              }
              assert.equal(by("user")[0]?.meta.user, writer);
              assert.equal(by("user")[0]?.meta.id, null);
            }
            const published = telemetryOf(C, "room.published");
            assert.deepEqual(
              published.map((line) => [line.room, line.user]),
              [[room, null]],
              "C logged its server publish (the anon key's was refused)",
            );
            assert.ok(!C.output().includes(realtime.secretKey), "the secret key is never logged");
          }),
      );

      await t.step(
        "rooms across instances: 30 members joining and leaving quickly stay within Realtime's presence limit",
        () =>
          withMembers(auth, async (members) => {
            const room = "churn";
            const watcher = await members.join("watcher", B, room);
            const before = { ...realtime.stats };
            const churners: string[] = [];
            for (let wave = 0; wave < 3; wave++) {
              await Promise.all(Array.from({ length: 10 }, async (_, i) => {
                const m = await members.join(`churn${wave}.${i}`, A, room);
                churners.push(m.user);
                m.client.socket.send(JSON.stringify({ type: "presence", state: { wave, i } }));
                await sleep(20);
                await m.client.close();
              }));
            }
            await until(
              () => churners.every((u) => watcher.presenceEvents("presence.leave", u).length > 0),
              10_000,
              "the watcher to see every churner leave",
            );
            await sleep(SETTLE_MS);
            for (const u of churners) {
              assert.ok(
                watcher.presenceEvents("presence.join", u).length <= 1,
                "joined at most once",
              );
              assert.equal(watcher.presenceEvents("presence.leave", u).length, 1, "left once");
            }
            assert.deepEqual([...watcher.presence()], [watcher.user]);
            const last = await members.join("last", C, room);
            assert.deepEqual(joinedUsers(last), [watcher.user, last.user].sort());
            const calls = realtime.stats.presenceCalls - before.presenceCalls;
            const joins = realtime.stats.joins - before.joins;
            console.log(
              `measured: churn of 30 members: ${calls} presence calls, ${joins} channel joins, ` +
                `${realtime.stats.channelShutdowns} channel shutdowns`,
            );
            assert.ok(calls <= joins, `${calls} presence calls for ${joins} channel joins`);
            assert.equal(realtime.stats.channelShutdowns, 0, "Realtime shut no channel down");
            assert.equal(realtime.stats.connections, before.connections, "no instance reconnected");
          }),
      );

      await t.step(
        "rooms across instances: Realtime stopped and started: local delivery goes on, cross-instance delivery resumes",
        () =>
          withMembers(auth, async (members) => {
            const room = "outage";
            const pairs = [
              [await members.join("a1", A, room), await members.join("a2", A, room)],
              [await members.join("b1", B, room), await members.join("b2", B, room)],
              [await members.join("c1", C, room), await members.join("c2", C, room)],
            ] as [Member, Member][];
            const everyone = pairs.flat();
            await until(() => everyone.every((m) => m.presence().size === 6), 5000, "presence");
            const busBefore = relays.map((relay) => telemetryOf(relay, "room.bus").length);

            await realtime.stop();
            const downAt = Date.now();
            // While Realtime is down, each instance's members keep hearing each other.
            let worstLocalMs = 0;
            for (let i = 0; i < 15; i++) {
              const sentAt = Date.now();
              for (const [from] of pairs) from.broadcast("local", { from: from.label, i });
              await until(
                () =>
                  pairs.every(([from, to]) =>
                    to.broadcasts("local").some((b) =>
                      b.meta.user === from.user && (b.payload as { i: number }).i === i
                    )
                  ),
                2000,
                `local delivery ${i} during the outage`,
              );
              worstLocalMs = Math.max(worstLocalMs, Date.now() - sentAt);
              await sleep(150);
            }
            await until(
              () =>
                relays.every((relay, i) => telemetryOf(relay, "room.bus").length > busBefore[i]!),
              10_000,
              "every instance to report its bus down",
            );

            await realtime.start();
            const upAt = Date.now();
            // Probes until every instance hears every other again.
            let probe = 0;
            const heard = (to: Member, from: Member) =>
              to.broadcasts("probe").some((b) => b.meta.user === from.user);
            const recovered = () =>
              pairs.every(([from], i) =>
                pairs.every((pair, j) => i === j || pair.every((to) => heard(to, from)))
              );
            const deadline = Date.now() + 30_000;
            while (!recovered()) {
              if (Date.now() > deadline) throw new Error("cross-instance delivery never resumed");
              for (const [from] of pairs) from.broadcast("probe", { n: probe });
              probe++;
              await sleep(100);
            }
            const recoveryMs = Date.now() - upAt;
            console.log(
              `measured: Realtime down for ${upAt - downAt} ms; local delivery at worst ` +
                `${worstLocalMs} ms meanwhile; cross-instance delivery back ${recoveryMs} ms ` +
                `after Realtime started`,
            );
            // After recovery, each broadcast once everywhere, and presence whole again.
            await until(
              () => everyone.every((m) => m.presence().size === 6),
              10_000,
              "presence to be whole again",
            );
            for (const m of everyone) m.broadcast("after", { from: m.label });
            await until(
              () => everyone.every((m) => m.broadcasts("after").length >= 5),
              5000,
              "every broadcast after recovery",
            );
            await sleep(SETTLE_MS);
            for (const m of everyone) {
              assert.equal(m.broadcasts("after").length, 5, `${m.label}: each once after recovery`);
              const probes = m.broadcasts("probe").map((b) =>
                `${b.meta.user} ${JSON.stringify(b.payload)}`
              );
              assert.equal(new Set(probes).size, probes.length, `${m.label}: no probe twice`);
            }
            // Nobody left: Realtime's restart must not show users leaving and coming back
            // (an instance missing from presence while it rejoins is given a grace).
            const labelOf = (user: unknown) => everyone.find((m) => m.user === user)?.label;
            for (const m of everyone) {
              const leaves = m.ofType("presence.leave").map((e) => labelOf(e.user));
              assert.deepEqual(leaves, [], `${m.label} saw users leave across the outage`);
            }
            for (const [i, relay] of relays.entries()) {
              const states = telemetryOf(relay, "room.bus").map((line) => line.state);
              const down = states.indexOf("down");
              assert.ok(down >= 0, `instance ${i} logged room.bus down: ${states}`);
              assert.ok(states.indexOf("up", down) > down, `then up: ${states}`);
              assert.equal(states.at(-1), "up");
              assert.ok(
                !relay.output().includes(realtime.secretKey),
                "the secret key is never logged",
              );
            }
          }),
      );

      await t.step(
        "rooms across instances: SIGKILL of one instance: its users leave everyone's presence, the rest keep talking",
        () =>
          withMembers(auth, async (members) => {
            const room = "crash";
            const a = await members.join("a", A, room);
            const b = await members.join("b", B, room);
            const c1 = await members.join("c1", C, room);
            const c2 = await members.join("c2", C, room);
            // A user with tabs on B and C stays present through C's crash.
            const d1 = await members.join("d1", C, room);
            await members.join("d2", B, room, { user: d1.user });
            const expected = new Set([a.user, b.user, c1.user, c2.user, d1.user]);
            await until(
              () => [a, b].every((m) => m.presence().size === expected.size),
              5000,
              "presence",
            );

            Deno.kill(C.pid, "SIGKILL");
            const killedAt = Date.now();
            const gone = [c1.user, c2.user];
            await until(
              () => [a, b].every((m) => gone.every((u) => !m.presence().has(u))),
              30_000,
              "the crashed instance's users to leave",
            );
            const leaveMs = Date.now() - killedAt;
            console.log(`measured: presence.leave everywhere ${leaveMs} ms after SIGKILL`);
            assert.ok(leaveMs < 30_000);
            await sleep(SETTLE_MS);
            for (const m of [a, b]) {
              assert.deepEqual([...m.presence()].sort(), [a.user, b.user, d1.user].sort());
              assert.equal(m.presenceEvents("presence.leave", d1.user).length, 0, "d stays");
            }
            a.broadcast("still", { from: "a" });
            b.broadcast("still", { from: "b" });
            await until(
              () => a.broadcasts("still").length === 1 && b.broadcasts("still").length === 1,
              5000,
              "A and B to keep talking",
            );
            assert.equal(a.broadcasts("still")[0]?.meta.user, b.user);
            assert.equal(b.broadcasts("still")[0]?.meta.user, a.user);
            await c1.client.waitClosed(5000);
          }),
      );
    });
  },
});

Deno.test({
  name: "rooms across instances: room_full counts the members of every instance",
  fn: async () => {
    await withCluster(3, { RELAY_ROOM_MAX_MEMBERS: "3" }, async ({ auth, relays }) => {
      const [A, B, C] = relays as [RelayProcess, RelayProcess, RelayProcess];
      await withMembers(auth, async (members) => {
        const room = "small";
        const m1 = await members.join("m1", A, room);
        const m2 = await members.join("m2", B, room);
        const m3 = await members.join("m3", C, room);
        const all = [m1, m2, m3];
        // The instances know of each other once every member sees every user.
        await until(() => all.every((m) => m.presence().size === 3), 5000, "presence");
        await sleep(200);
        const attempt = async (relay: RelayProcess) => {
          const token = await auth.signEs256({ sub: crypto.randomUUID() });
          const response = await fetch(
            `http://127.0.0.1:${relay.port}/relay/rooms/${room}?jwt=${token}`,
            { headers: UPGRADE_HEADERS },
          );
          const body = await response.text();
          return { status: response.status, body };
        };
        for (const [name, relay] of [["A", A], ["B", B], ["C", C]] as const) {
          const refused = await attempt(relay);
          assert.equal(refused.status, 429, `a 4th member on ${name}: ${refused.body}`);
          assert.equal(JSON.parse(refused.body).error, "room_full");
        }
        // One leaves on C: A counts it gone and lets a new member in.
        await m3.client.close();
        await until(() => !m1.presence().has(m3.user), 5000, "A to see m3 leave");
        const m4 = await members.join("m4", A, room);
        assert.deepEqual(joinedUsers(m4), [m1.user, m2.user, m4.user].sort());
      });
    });
  },
});
