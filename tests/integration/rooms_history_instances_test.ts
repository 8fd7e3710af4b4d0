/**
 * Room history across instances (CONTRACT.md "Rooms" and "Room history,
 * recovery and live updates over SSE"): three relays, each the real
 * entrypoint in its own process, meet through one Supabase Realtime stand-in,
 * share one Auth stand-in and keep history in one real PostgreSQL (the
 * migrations applied by the Supabase CLI), as instances of one project do.
 * Two instances write to one room at once and the database gives offsets
 * 1..n with no gap or duplicate; a member whose instance is SIGKILLed comes
 * back on another with `?since=` and misses nothing; a member too far behind
 * is told `recovered: false`; a resend is acknowledged, never doubled,
 * whichever instance it reaches; a database outage refuses kept broadcasts
 * to everyone or delivers them to everyone; an SSE follower of an instance
 * that restarts resumes on another with `Last-Event-ID`. Each fault prints
 * what a member sees (`measured: ...`).
 * @module
 */
import assert from "node:assert/strict";
import {
  follow,
  type Follower,
  instancesEnv,
  join,
  type Member,
  type RoomEvent,
  type TestUser,
} from "../helpers/rooms.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { sleep, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { startRealtimeStandIn } from "../stand_ins/supabase_realtime.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`room history across instances skipped: ${skip}`);

/** How long "exactly once" waits for a duplicate that should never come. */
const SETTLE_MS = 300;

/** A broadcast as a member receives it. */
type Broadcast = RoomEvent & {
  event: string;
  payload: { from: string; n: number } & Record<string, unknown>;
  meta: { user: string | null; id: string | null; offset: number | null; at: string };
};

/** A refusal in band. */
type Refusal = RoomEvent & {
  event_id: string;
  error: { type: string; code: string; message: string; param: unknown; event_id: unknown };
};

const broadcastsOf = (member: Member): Broadcast[] =>
  member.events().filter((event): event is Broadcast => event.type === "broadcast");

const acksOf = (member: Member) =>
  member.of("broadcast.ack") as { type: string; id: string; offset: number | null }[];

const refusalsOf = (member: Member) => member.of("error") as Refusal[];

/** A kept chat line with a client id. */
function say(id: string, from: string, n: number): Record<string, unknown> {
  return { type: "broadcast", event: "chat", payload: { from, n }, id };
}

/** The highest `h` such that every offset 1..h is in `offsets` (what a member may resume after). */
function contiguous(offsets: Iterable<number | null>): number {
  const seen = new Set(offsets);
  let h = 0;
  while (seen.has(h + 1)) h++;
  return h;
}

/** `from`..`to`, both included. */
function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** Arrivals whose offset is below one received before it (concurrent senders, other instances). */
function outOfOffsetOrder(received: Broadcast[]): number {
  let highest = 0;
  let behind = 0;
  for (const b of received) {
    if (b.meta.offset! < highest) behind++;
    highest = Math.max(highest, b.meta.offset!);
  }
  return behind;
}

/** Asserts that `received` holds each sender's messages in the order it sent them, offsets increasing. */
function assertPerSenderOrder(received: Broadcast[], label: string): void {
  const bySender = new Map<string, Broadcast[]>();
  for (const b of received) {
    const list = bySender.get(b.meta.user!) ?? [];
    list.push(b);
    bySender.set(b.meta.user!, list);
  }
  for (const [sender, list] of bySender) {
    for (let i = 1; i < list.length; i++) {
      assert.ok(
        list[i]!.payload.n > list[i - 1]!.payload.n &&
          list[i]!.meta.offset! > list[i - 1]!.meta.offset!,
        `${label}: ${sender}'s messages in its order with increasing offsets ` +
          `(${list[i - 1]!.meta.id}@${list[i - 1]!.meta.offset} then ` +
          `${list[i]!.meta.id}@${list[i]!.meta.offset})`,
      );
    }
  }
}

/** A row of relay.room_messages. */
interface StoredRow {
  offset: number;
  sender: string;
  id: string | null;
}

/** The rows a room keeps, in offset order, read with psql. */
async function storedRows(pg: TestPostgres, room: string): Promise<StoredRow[]> {
  const out = await pg.psql(
    `select "offset", sender, coalesce(msg_id, '') from relay.room_messages ` +
      `where room = '${room}' order by "offset"`,
  );
  return out.split("\n").filter((line) => line !== "").map((line) => {
    const [offset, sender, id] = line.split("|");
    return { offset: Number(offset), sender: sender!, id: id === "" ? null : id! };
  });
}

/** The room's counter (relay.room_offsets.latest), read with psql. */
async function latestStored(pg: TestPostgres, room: string): Promise<number | null> {
  const out = (await pg.psql(`select latest from relay.room_offsets where room = '${room}'`))
    .trim();
  return out === "" ? null : Number(out);
}

/** Asserts that each broadcast is the stored row of its offset (same sender, same id). */
function assertMatchesRows(received: Broadcast[], rows: StoredRow[], label: string): void {
  const byOffset = new Map(rows.map((row) => [row.offset, row]));
  for (const b of received) {
    const row = byOffset.get(b.meta.offset!);
    assert.ok(row, `${label}: offset ${b.meta.offset} is stored`);
    assert.deepEqual(
      [b.meta.user, b.meta.id],
      [row.sender, row.id],
      `${label}: offset ${b.meta.offset} is the stored message`,
    );
  }
}

/**
 * Sends a kept broadcast and, as a client does, sends it again (same id)
 * while it is refused `history_unavailable`, until it is acknowledged.
 */
async function resendUntilAcked(
  member: Member,
  message: Record<string, unknown>,
  ms = 10_000,
): Promise<{ refusals: number; ms: number }> {
  const id = message.id as string;
  const refused = () => refusalsOf(member).filter((r) => r.error.event_id === id).length;
  const acked = () => acksOf(member).some((ack) => ack.id === id);
  const before = refused();
  const startedAt = performance.now();
  const deadline = Date.now() + ms;
  for (;;) {
    const seen = refused();
    member.send(message);
    await until(
      () => acked() || refused() > seen,
      Math.max(0, deadline - Date.now()),
      `${id}'s ack`,
    );
    if (acked()) return { refusals: refused() - before, ms: performance.now() - startedAt };
    const refusal = refusalsOf(member).filter((r) => r.error.event_id === id).at(-1)!;
    assert.equal(refusal.error.code, "history_unavailable");
    await sleep(100);
  }
}

/** Members and followers a step opened; all closed when it ends, whatever happens. */
class Scope {
  readonly #members: Member[] = [];
  readonly #followers: Follower[] = [];

  constructor(private readonly auth: AuthStandIn) {}

  /** A new user (a token expiring in `expiresInS`, default an hour). */
  async user(expiresInS?: number): Promise<TestUser & { exp: number }> {
    const id = crypto.randomUUID();
    const lifetime = expiresInS ?? 3600;
    const exp = Math.floor(Date.now() / 1000) + lifetime;
    const token = await this.auth.signEs256({ sub: id }, { expiresInS: lifetime });
    return { id, token, exp };
  }

  async join(
    relay: RelayProcess,
    room: string,
    user: TestUser,
    query: Record<string, string> = {},
  ): Promise<Member> {
    const member = await join(relay, room, user, query);
    this.#members.push(member);
    return member;
  }

  async follow(
    relay: RelayProcess,
    room: string,
    user: TestUser,
    headers: Record<string, string> = {},
  ): Promise<Follower> {
    const follower = await follow(relay, room, user.token, headers);
    this.#followers.push(follower);
    return follower;
  }

  async close(): Promise<void> {
    await Promise.all([
      ...this.#members.map((member) => member.client.close().catch(() => {})),
      ...this.#followers.map((follower) => follower.close()),
    ]);
  }
}

/** An upgrade attempt to join `room` on `relay`, answered without an upgrade: its status and error. */
async function refusedJoin(
  relay: RelayProcess,
  room: string,
  token: string,
): Promise<{ status: number; error: unknown; retryAfter: string | null }> {
  const response = await fetch(
    relay.wsUrl(`/relay/rooms/${room}`, { jwt: token }).replace("ws:", "http:"),
    { headers: UPGRADE_HEADERS },
  );
  const text = await response.text();
  let error: unknown = text;
  try {
    error = (JSON.parse(text) as { error: unknown }).error;
  } catch { /* not JSON: reported as is */ }
  return { status: response.status, error, retryAfter: response.headers.get("retry-after") };
}

Deno.test({
  name: "room history across instances: three relay processes, one Realtime, one PostgreSQL",
  ignore: skip !== null,
  async fn(t) {
    const [pg, auth, realtime] = await Promise.all([
      startPostgres(),
      startAuthStandIn(),
      startRealtimeStandIn(),
    ]);
    const env = instancesEnv(auth, realtime, { pg, keep: 1000 });
    /** Every process started, for the teardown (killed ones included). */
    const everyProcess: RelayProcess[] = [];
    const start = async (processEnv: Record<string, string>) => {
      const relay = await startRelayProcess(processEnv);
      everyProcess.push(relay);
      return relay;
    };
    let failure: unknown = null;
    try {
      const startedAt = performance.now();
      /** A, B and C; A is replaced when it is restarted. */
      const relays = await Promise.all([start(env), start(env), start(env)]);
      console.log(
        `measured: three relay processes answered /relay/health ` +
          `${Math.round(performance.now() - startedAt)} ms after spawning`,
      );
      const A = () => relays[0]!;
      const B = () => relays[1]!;
      const C = () => relays[2]!;
      const scoped = async (body: (scope: Scope) => Promise<void>) => {
        const scope = new Scope(auth);
        try {
          await body(scope);
        } finally {
          await scope.close();
        }
      };

      await t.step(
        "room history across instances: members on A and B send 300 kept broadcasts each at once; C gets each once, offsets 1..600 without gap or duplicate",
        () =>
          scoped(async (scope) => {
            const room = "concurrent";
            const [ua, ub, uc] = await Promise.all([scope.user(), scope.user(), scope.user()]);
            const a = await scope.join(A(), room, ua);
            const b = await scope.join(B(), room, ub);
            const c = await scope.join(C(), room, uc);
            const N = 300;
            const total = 2 * N;
            const sentAt = performance.now();
            // As fast as the rate limit allows: 300 is within its burst of 2 x 200.
            for (let n = 0; n < N; n++) {
              a.send(say(`a-${n}`, "a", n));
              b.send(say(`b-${n}`, "b", n));
            }
            await c.waitFor("600 broadcasts on C", () => broadcastsOf(c).length >= total, 20_000);
            const deliveredMs = performance.now() - sentAt;
            await a.waitFor("300 acks on A", () => acksOf(a).length >= N, 10_000);
            await b.waitFor("300 acks on B", () => acksOf(b).length >= N, 10_000);
            await a.waitFor("B's 300 on A", () => broadcastsOf(a).length >= N, 10_000);
            await b.waitFor("A's 300 on B", () => broadcastsOf(b).length >= N, 10_000);
            await sleep(SETTLE_MS);

            const got = broadcastsOf(c);
            assert.equal(got.length, total, "C got each broadcast once");
            const keys = got.map((m) => `${m.meta.user}/${m.meta.id}`);
            assert.equal(new Set(keys).size, total, "no broadcast twice on C");
            const expectedKeys = [
              ...range(0, N - 1).map((n) => `${ua.id}/a-${n}`),
              ...range(0, N - 1).map((n) => `${ub.id}/b-${n}`),
            ];
            assert.deepEqual([...keys].sort(), expectedKeys.sort(), "every broadcast reached C");
            const offsets = got.map((m) => m.meta.offset!);
            assert.deepEqual([...offsets].sort((x, y) => x - y), range(1, total), "offsets 1..600");
            assertPerSenderOrder(got, "C");
            for (const [member, other, sender] of [[a, b, ub], [b, a, ua]] as const) {
              const heard = broadcastsOf(member);
              assert.equal(heard.length, N, "each sender heard the other's 300 once, not its own");
              assert.ok(heard.every((m) => m.meta.user === sender.id));
              assertPerSenderOrder(heard, "a sender");
              // Its own acks: in its order, with the offsets everyone else saw.
              const acks = acksOf(other);
              assert.equal(acks.length, N);
              const seenAt = new Map(
                got.map((m) => [`${m.meta.user}/${m.meta.id}`, m.meta.offset]),
              );
              const otherUser = other === a ? ua.id : ub.id;
              const prefix = other === a ? "a" : "b";
              assert.deepEqual(
                acks.map((ack) => ack.id),
                range(0, N - 1).map((n) => `${prefix}-${n}`),
              );
              for (let i = 0; i < N; i++) {
                assert.equal(acks[i]!.offset, seenAt.get(`${otherUser}/${acks[i]!.id}`));
                if (i > 0) assert.ok(acks[i]!.offset! > acks[i - 1]!.offset!, "acks increase");
              }
            }
            // The database says the same: 600 rows, offsets 1..600, each the message C saw.
            const rows = await storedRows(pg, room);
            assert.deepEqual(rows.map((row) => row.offset), range(1, total), "stored offsets");
            assert.equal(await latestStored(pg, room), total);
            assertMatchesRows(got, rows, "C");
            const interleaving = rows.slice(1).filter((row, i) => row.sender !== rows[i]!.sender)
              .length;

            // A late member replays all 600 in offset order.
            const replayAt = performance.now();
            const late = await scope.join(C(), room, await scope.user(), { since: "0" });
            assert.equal(late.joined.offset, total);
            assert.equal(late.joined.recovered, true);
            await late.waitFor("the replay", () => broadcastsOf(late).length >= total, 10_000);
            const replayMs = performance.now() - replayAt;
            assert.deepEqual(broadcastsOf(late).map((m) => m.meta.offset), range(1, total));
            assertMatchesRows(broadcastsOf(late), rows, "late");
            console.log(
              `measured: 2 x ${N} kept broadcasts sent at once from A and B: all ${total} on C ` +
                `${Math.round(deliveredMs)} ms after the first send ` +
                `(${Math.round(total / (deliveredMs / 1000))}/s through one room's counter); ` +
                `offsets 1..${total}, no gap, no duplicate; ${outOfOffsetOrder(got)} of ${total} ` +
                `reached C below an offset it already had (another instance's, never one ` +
                `sender's); senders alternate ${interleaving} times in offset order; a late ` +
                `member's ?since=0 replay of ${total} took ${Math.round(replayMs)} ms`,
            );
          }),
      );

      await t.step(
        "room history across instances: a member whose instance is SIGKILLed rejoins another with ?since= and gets exactly what it missed, then live ones",
        () =>
          scoped(async (scope) => {
            const room = "failover";
            const [um, ub, uc] = await Promise.all([scope.user(), scope.user(), scope.user()]);
            const m = await scope.join(A(), room, um);
            const sb = await scope.join(B(), room, ub);
            const sc = await scope.join(C(), room, uc);
            let sent = 0;
            const send = (member: Member, from: string, n: number) => {
              member.send(say(`${from}-${n}`, from, n));
              sent++;
            };
            for (let n = 0; n < 10; n++) send(sb, "b", n), send(sc, "c", n);
            await m.waitFor("the first 20", () => broadcastsOf(m).length >= 20);

            // B and C keep sending (50 more) while A is killed.
            const keepSending = (async () => {
              for (let n = 10; n < 35; n++) {
                send(sb, "b", n);
                send(sc, "c", n);
                await sleep(20);
              }
            })();
            await m.waitFor("some of the next ones", () => broadcastsOf(m).length >= 26);
            const killedAt = performance.now();
            Deno.kill(A().pid, "SIGKILL");
            const closed = await m.client.waitClosed(5000);
            const closedMs = performance.now() - killedAt;
            const before = broadcastsOf(m);
            const since = contiguous(before.map((b) => b.meta.offset));
            const highest = Math.max(...before.map((b) => b.meta.offset!));
            const rejoinAt = performance.now();
            const back = await scope.join(B(), room, um, { since: String(since) });
            const rejoinMs = performance.now() - rejoinAt;
            assert.equal(back.joined.recovered, true, "everything after since is kept");
            const latestAtJoin = back.joined.offset as number;
            assert.ok(latestAtJoin >= since);
            await keepSending;
            for (let n = 35; n < 38; n++) send(sc, "c", n);
            assert.equal(sent, 73);
            await back.waitFor(
              "every broadcast after since",
              () => broadcastsOf(back).length >= sent - since,
              10_000,
            );
            const caughtUpMs = performance.now() - rejoinAt;
            await sleep(SETTLE_MS);

            const got = broadcastsOf(back);
            assert.equal(got.length, sent - since, "nothing twice, nothing missing");
            const replay = got.slice(0, latestAtJoin - since);
            assert.deepEqual(
              replay.map((b) => b.meta.offset),
              range(since + 1, latestAtJoin),
              "what it missed first, in offset order",
            );
            assert.deepEqual(
              got.map((b) => b.meta.offset!).sort((x, y) => x - y),
              range(since + 1, sent),
              "then live ones: every offset after since once",
            );
            assertPerSenderOrder(got, "the rejoined member");
            const rows = await storedRows(pg, room);
            assert.deepEqual(rows.map((row) => row.offset), range(1, sent));
            assertMatchesRows([...before, ...got], rows, "the member");
            console.log(
              `measured: SIGKILL of the member's instance: its socket closed ` +
                `${Math.round(closedMs)} ms later (code ${closed.code}); it had seen ` +
                `${before.length} broadcasts, offsets 1..${since} without a hole (highest ` +
                `${highest}); rejoined on B with ?since=${since} in ${Math.round(rejoinMs)} ms: ` +
                `recovered true, ${replay.length} replayed (offsets ${
                  since + 1
                }..${latestAtJoin}) ` +
                `then ${got.length - replay.length} live; all ${sent} offsets covered ` +
                `${Math.round(caughtUpMs)} ms after rejoining, none twice`,
            );

            // A comes back for the next steps.
            const restartAt = performance.now();
            relays[0] = await start(env);
            console.log(
              `measured: instance A restarted (new process) in ` +
                `${Math.round(performance.now() - restartAt)} ms`,
            );
          }),
      );

      await t.step(
        "room history across instances: too far behind (RELAY_ROOM_HISTORY=5 on another pair): recovered false and only the kept ones",
        async () => {
          const shortEnv = instancesEnv(auth, realtime, { pg, keep: 5 });
          const [P, Q] = await Promise.all([start(shortEnv), start(shortEnv)]);
          try {
            await scoped(async (scope) => {
              const room = "short";
              const [uw, ul] = await Promise.all([scope.user(), scope.user()]);
              const w = await scope.join(P, room, uw);
              for (let n = 1; n <= 12; n++) w.send(say(`s-${n}`, "w", n));
              await w.waitFor("12 acks", () => acksOf(w).length >= 12);
              assert.deepEqual(acksOf(w).map((ack) => ack.offset), range(1, 12));

              const joinAt = performance.now();
              const behind = await scope.join(Q, room, ul, { since: "2" });
              assert.equal(behind.joined.offset, 12);
              assert.equal(behind.joined.recovered, false, "offsets 3..7 are gone");
              await behind.waitFor("the kept five", () => broadcastsOf(behind).length >= 5);
              const replayMs = performance.now() - joinAt;
              w.send(say("s-13", "w", 13));
              await behind.waitFor("the live one", () => broadcastsOf(behind).length >= 6);
              await sleep(SETTLE_MS);
              assert.deepEqual(broadcastsOf(behind).map((b) => b.meta.offset), range(8, 13));
              assert.deepEqual(
                broadcastsOf(behind).map((b) => b.meta.id),
                range(8, 13).map((n) => `s-${n}`),
              );

              // Just within reach, on the other instance: recovered.
              const within = await scope.join(P, room, ul, { since: "8" });
              assert.equal(within.joined.recovered, true, "9..13 are all kept");
              await within.waitFor("9..13", () => broadcastsOf(within).length >= 5);
              // A backlog larger than what is kept gives what is kept.
              const backlog = await scope.join(Q, room, ul, { last: "50" });
              assert.equal(backlog.joined.recovered, null);
              await backlog.waitFor("the newest 5", () => broadcastsOf(backlog).length >= 5);
              // An SSE follower with an old Last-Event-ID, too.
              const feed = await scope.follow(Q, room, ul, { "last-event-id": "1" });
              assert.equal(feed.response.status, 200);
              await feed.until("joined and 5", () => feed.events.length >= 6);
              assert.equal(feed.json("room.joined")[0]!.recovered, false);
              assert.deepEqual(
                feed.events.filter((e) => e.event === "broadcast").map((e) => e.id),
                range(9, 13).map(String),
              );
              await sleep(SETTLE_MS);
              assert.deepEqual(broadcastsOf(within).map((b) => b.meta.offset), range(9, 13));
              assert.deepEqual(broadcastsOf(backlog).map((b) => b.meta.offset), range(9, 13));
              assert.deepEqual(
                (await storedRows(pg, room)).map((row) => row.offset),
                range(9, 13),
                "the database keeps the newest 5",
              );
              console.log(
                `measured: too far behind (5 kept, since=2, latest 12): room.joined recovered ` +
                  `false, the 5 kept (8..12) replayed within ${Math.round(replayMs)} ms of ` +
                  `joining, then live; since=8 recovered true`,
              );
            });
          } finally {
            await Promise.all([P.stop(), Q.stop()]);
          }
        },
      );

      await t.step(
        "room history across instances: a resend with the same id after a reconnect to another instance is acknowledged with the first offset and seen once everywhere",
        () =>
          scoped(async (scope) => {
            const room = "resend";
            const [us, uo, u1, u2, u3, ur] = await Promise.all([
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(),
            ]);
            const listeners = [
              await scope.join(A(), room, u1),
              await scope.join(B(), room, u2),
              await scope.join(C(), room, u3),
            ];
            const feed = await scope.follow(C(), room, ur);
            await feed.until("joined", () => feed.events.length >= 1);

            const s = await scope.join(A(), room, us);
            s.send(say("r-1", "s", 1));
            s.send(say("r-2", "s", 2));
            await s.waitFor("two acks", () => acksOf(s).length >= 2);
            assert.deepEqual(acksOf(s).map((ack) => [ack.id, ack.offset]), [["r-1", 1], [
              "r-2",
              2,
            ]]);
            await s.client.close();

            // Back on B, unsure of r-1: resent, acknowledged with its first offset.
            const again = await scope.join(B(), room, us, { since: "2" });
            assert.equal(again.joined.recovered, true);
            again.send(say("r-1", "s", 1));
            await again.waitFor("the ack", () => acksOf(again).length >= 1);
            assert.deepEqual(acksOf(again)[0], { type: "broadcast.ack", id: "r-1", offset: 1 });
            // Two tabs of the user on A and C resend r-2 at the same moment.
            const tabA = await scope.join(A(), room, us);
            const tabC = await scope.join(C(), room, us);
            tabA.send(say("r-2", "s", 2));
            tabC.send(say("r-2", "s", 2));
            // And both send a new id at the same moment: stored once, one offset for both.
            tabA.send(say("r-new", "s", 3));
            tabC.send(say("r-new", "s", 3));
            await tabA.waitFor("acks on A", () => acksOf(tabA).length >= 2);
            await tabC.waitFor("acks on C", () => acksOf(tabC).length >= 2);
            assert.deepEqual(acksOf(tabA).map((ack) => [ack.id, ack.offset]), [["r-2", 2], [
              "r-new",
              3,
            ]]);
            assert.deepEqual(acksOf(tabA), acksOf(tabC), "both tabs told the same offsets");
            // Ids are each user's: another user's r-1 is a new message.
            const other = await scope.join(C(), room, uo);
            other.send(say("r-1", "o", 1));
            await other.waitFor("its ack", () => acksOf(other).length >= 1);
            assert.equal(acksOf(other)[0]!.offset, 4);

            const expected = [[us.id, "r-1", 1], [us.id, "r-2", 2], [us.id, "r-new", 3], [
              uo.id,
              "r-1",
              4,
            ]];
            for (const listener of listeners) {
              await listener.waitFor("four", () => broadcastsOf(listener).length >= 4);
            }
            await feed.until("four over SSE", () => feed.json("broadcast").length >= 4);
            await sleep(SETTLE_MS);
            for (const [i, listener] of listeners.entries()) {
              assert.deepEqual(
                broadcastsOf(listener).map((b) => [b.meta.user, b.meta.id, b.meta.offset]),
                expected,
                `the listener on instance ${"ABC"[i]} saw each once`,
              );
            }
            assert.deepEqual(
              (feed.json("broadcast") as Broadcast[]).map((b) => [
                b.meta.user,
                b.meta.id,
                b.meta.offset,
              ]),
              expected,
              "the SSE follower saw each once",
            );
            // The user's connections never hear a resend; its other connections hear
            // r-new once (from whichever tab stored it), the storing tab not at all.
            const fromUs = (tab: Member) =>
              broadcastsOf(tab).filter((b) => b.meta.user === us.id).map((b) => b.meta.id);
            assert.deepEqual(fromUs(again), ["r-new"]);
            assert.deepEqual([...fromUs(tabA), ...fromUs(tabC)], ["r-new"]);
            assert.deepEqual(
              (await storedRows(pg, room)).map((row) => [row.sender, row.id, row.offset]),
              expected,
              "stored once each",
            );
            console.log(
              `measured: resends of a kept id from 3 instances (after a reconnect, and from two ` +
                `tabs at once, one a new id): acknowledged with the first offset each time; ` +
                `3 members on 3 instances and 1 SSE follower saw 4 broadcasts, each once`,
            );
          }),
      );

      await t.step(
        "room history across instances: database stopped mid-chat: kept broadcasts refused in band and delivered to nobody, ephemeral ones cross instances, joins 503; then normal service",
        () =>
          scoped(async (scope) => {
            const room = "outage";
            const [ua, ub, uc, ur, un] = await Promise.all([
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(),
            ]);
            const a = await scope.join(A(), room, ua);
            const b = await scope.join(B(), room, ub);
            const c = await scope.join(C(), room, uc);
            const feed = await scope.follow(C(), room, ur);
            a.send(say("w-1", "a", 1));
            b.send(say("w-2", "b", 1));
            await c.waitFor("the warm-up", () => broadcastsOf(c).length >= 2);

            // A burst from A while the database stops under it.
            const BURST = 20;
            const burst = (async () => {
              for (let n = 0; n < BURST; n++) {
                a.send(say(`u-${n}`, "a", 10 + n));
                await sleep(5);
              }
            })();
            await sleep(30);
            const stopAt = performance.now();
            let restarted = false;
            try {
              await pg.stop();
              const stopMs = performance.now() - stopAt;
              await burst;
              const answered = (id: string) =>
                acksOf(a).some((ack) => ack.id === id) ||
                refusalsOf(a).some((r) => r.error.event_id === id);
              await a.waitFor(
                "every burst message answered",
                () => range(0, BURST - 1).every((n) => answered(`u-${n}`)),
                15_000,
              );
              const burstAnsweredMs = performance.now() - stopAt;

              const refusedAt = performance.now();
              a.send(say("lost-a", "a", 100));
              b.send(say("lost-b", "b", 100));
              await a.waitFor("A's refusal", () =>
                refusalsOf(a).some((r) => r.error.event_id === "lost-a"), 10_000);
              const refusalMs = performance.now() - refusedAt;
              await b.waitFor("B's refusal", () =>
                refusalsOf(b).some((r) =>
                  r.error.event_id === "lost-b"
                ), 10_000);
              for (const [member, id] of [[a, "lost-a"], [b, "lost-b"]] as const) {
                const refusal = refusalsOf(member).find((r) =>
                  r.error.event_id === id
                )!;
                assert.equal(refusal.type, "error");
                assert.match(refusal.event_id, /^relay_/);
                assert.equal(refusal.error.type, "invalid_request_error");
                assert.equal(refusal.error.code, "history_unavailable");
              }
              // Ephemeral broadcasts and binary frames still cross instances.
              const ephemeralAt = performance.now();
              a.send({
                type: "broadcast",
                event: "typing",
                payload: { from: "a" },
                ephemeral: true,
              });
              b.send(new Uint8Array([7, 7, 7]));
              const typing = (member: Member) =>
                broadcastsOf(member).filter((m) =>
                  m.event === "typing"
                );
              await b.waitFor("typing on B", () => typing(b).length === 1);
              await c.waitFor("typing on C", () => typing(c).length === 1);
              await feed.until(
                "typing over SSE",
                () => feed.json("broadcast").some((m) => m.event === "typing"),
              );
              await until(
                () => a.binaries().length === 1 && c.binaries().length === 1,
                5000,
                "binary on A and C",
              );
              const ephemeralMs = performance.now() - ephemeralAt;
              assert.ok(typing(c).every((m) => m.meta.offset === null));
              // Joining and following need the database.
              const refused = await refusedJoin(C(), room, un.token);
              assert.deepEqual(refused, {
                status: 503,
                error: "rooms_unavailable",
                retryAfter: "5",
              });
              const refusedFeed = await follow(B(), room, un.token);
              assert.equal(refusedFeed.response.status, 503);
              assert.equal((await refusedFeed.response.json()).error, "rooms_unavailable");
              await refusedFeed.close();

              await sleep(SETTLE_MS);
              // Nothing half-delivered: an accepted message reached everyone, a refused one nobody.
              const acked = new Map(acksOf(a).map((ack) => [ack.id, ack.offset]));
              const refusedIds = new Set(refusalsOf(a).map((r) => r.error.event_id as string));
              const burstIds = range(0, BURST - 1).map((n) => `u-${n}`);
              for (const id of burstIds) {
                assert.ok(acked.has(id) !== refusedIds.has(id), `${id}: answered once`);
              }
              const feedBroadcasts = () => feed.json("broadcast") as Broadcast[];
              for (
                const [label, heard] of [
                  ["B", () => broadcastsOf(b)],
                  ["C", () => broadcastsOf(c)],
                  ["the SSE follower", feedBroadcasts],
                ] as const
              ) {
                const ids = heard().map((m) => m.meta.id);
                for (const id of burstIds) {
                  assert.equal(
                    ids.filter((x) => x === id).length,
                    acked.has(id) ? 1 : 0,
                    `${label} got ${id} ${acked.has(id) ? "once" : "never"}`,
                  );
                }
                assert.ok(
                  !ids.includes("lost-a") && !ids.includes("lost-b"),
                  `${label}: none lost`,
                );
              }
              assert.ok(!broadcastsOf(a).some((m) => m.meta.id === "lost-b"), "A: not lost-b");
              const acceptedBurst = burstIds.filter((id) => acked.has(id));
              console.log(
                `measured: database stopped during a burst of ${BURST} kept broadcasts from A ` +
                  `(pg_ctl stop -m immediate took ${Math.round(stopMs)} ms): ` +
                  `${acceptedBurst.length} acknowledged and delivered everywhere, ` +
                  `${BURST - acceptedBurst.length} refused history_unavailable and delivered ` +
                  `nowhere, all answered ${Math.round(burstAnsweredMs)} ms after the stop began; ` +
                  `with the database down a kept broadcast is refused in ` +
                  `${Math.round(refusalMs)} ms; ephemeral and binary crossed instances in ` +
                  `${Math.round(ephemeralMs)} ms; a join got 503 rooms_unavailable`,
              );

              const startAt = performance.now();
              await pg.start();
              restarted = true;
              const startMs = performance.now() - startAt;
              const latest = (await latestStored(pg, room))!;
              const rows = await storedRows(pg, room);
              // What was acknowledged is stored at its offset; what was refused is not.
              for (const id of acceptedBurst) {
                assert.equal(rows.find((row) => row.id === id)?.offset, acked.get(id), id);
              }
              const refusedButStored = rows.filter((row) =>
                row.id !== null && refusedIds.has(row.id)
              );
              assert.deepEqual(refusedButStored, [], "a refused broadcast is not stored");
              assert.equal(latest, 2 + acceptedBurst.length);

              // Normal service: the resends get the next offsets, each delivered once. A
              // client resends what is refused; right after the start a pool still
              // backing off may refuse once more (counted and printed).
              const resentAt = performance.now();
              const lateA = await resendUntilAcked(a, say("lost-a", "a", 100));
              const lateB = await resendUntilAcked(b, say("lost-b", "b", 100));
              const resentMs = performance.now() - resentAt;
              assert.equal(acksOf(a).find((ack) => ack.id === "lost-a")!.offset, latest + 1);
              assert.equal(acksOf(b).find((ack) => ack.id === "lost-b")!.offset, latest + 2);
              const joined = await scope.join(C(), room, un, { since: String(latest) });
              assert.equal(joined.joined.recovered, true);
              await joined.waitFor("the two resends", () => broadcastsOf(joined).length >= 2);
              await c.waitFor(
                "the resends on C",
                () => broadcastsOf(c).some((m) => m.meta.id === "lost-b"),
              );
              await sleep(SETTLE_MS);
              assert.deepEqual(
                broadcastsOf(joined).map((m) => [m.meta.id, m.meta.offset]),
                [["lost-a", latest + 1], ["lost-b", latest + 2]],
              );
              for (
                const [label, heard] of [
                  ["A", broadcastsOf(a)],
                  ["B", broadcastsOf(b)],
                  ["C", broadcastsOf(c)],
                ] as const
              ) {
                for (const id of ["lost-a", "lost-b"]) {
                  const own = (label === "A" && id === "lost-a") ||
                    (label === "B" && id === "lost-b");
                  assert.equal(
                    heard.filter((m) => m.meta.id === id).length,
                    own ? 0 : 1,
                    `${label} got ${id} ${own ? "never (its own)" : "once"}`,
                  );
                }
              }
              await feed.until(
                "the resends over SSE",
                () => feedBroadcasts().some((m) => m.meta.id === "lost-b"),
              );
              for (const socket of [a, b, c]) {
                assert.equal(socket.client.socket.readyState, WebSocket.OPEN, "nobody was closed");
              }
              assert.deepEqual(
                (await storedRows(pg, room)).map((row) => row.offset),
                range(1, latest + 2),
                "no gap",
              );
              console.log(
                `measured: database started again in ${Math.round(startMs)} ms; the resent ` +
                  `broadcasts were acknowledged with offsets ${latest + 1} and ${latest + 2} ` +
                  `(the next ones) within ${Math.round(resentMs)} ms (refused again after the ` +
                  `start: ${lateA.refusals} + ${lateB.refusals} times, first ack after ` +
                  `${Math.round(lateA.ms)} ms) and delivered once everywhere; no member was ` +
                  `disconnected by the outage`,
              );
            } finally {
              if (!restarted) await pg.start();
            }
          }),
      );

      await t.step(
        "room history across instances: an SSE follower of an instance that restarts resumes on another with Last-Event-ID; a token expiring ends a follower with 4001",
        () =>
          scoped(async (scope) => {
            const room = "feed";
            const [ub, uc, ur, ux] = await Promise.all([
              scope.user(),
              scope.user(),
              scope.user(),
              scope.user(3),
            ]);
            const expiring = await scope.follow(C(), room, ux);
            assert.equal(expiring.response.status, 200);
            const sb = await scope.join(B(), room, ub);
            const sc = await scope.join(C(), room, uc);
            const feed = await scope.follow(A(), room, ur);
            assert.equal(feed.response.status, 200);
            await feed.until("joined", () => feed.events.length >= 1);
            let sent = 0;
            const send = (member: Member, from: string, n: number) => {
              member.send(say(`${from}-${n}`, from, n));
              sent++;
            };
            for (let n = 0; n < 5; n++) send(sb, "b", n);
            await feed.until("the first 5", () => feed.json("broadcast").length >= 5);

            const keepSending = (async () => {
              for (let n = 5; n < 25; n++) {
                send(n % 2 === 0 ? sb : sc, n % 2 === 0 ? "b" : "c", n);
                await sleep(15);
              }
            })();
            await feed.until("a few more", () => feed.json("broadcast").length >= 8);
            const termAt = performance.now();
            const stopping = A().stop();
            await feed.until("close", () => feed.events.some((e) => e.event === "close"), 8000);
            const closeMs = performance.now() - termAt;
            const close = feed.events.find((e) => e.event === "close")!;
            assert.deepEqual(JSON.parse(close.data), { code: 1012, reason: "server_restarting" });
            assert.equal(close.retry, "1000");
            await feed.ended;
            assert.equal(feed.events.at(-1), close, "close is the last event");
            const ids = feed.events.filter((e) => e.id !== null).map((e) => e.id!);
            const lastId = ids.at(-1)!;
            const since = Number(lastId);
            assert.equal(contiguous(ids.map(Number)), since, "A gave the follower 1..last id");

            const resumeAt = performance.now();
            const resumed = await scope.follow(B(), room, ur, { "last-event-id": lastId });
            assert.equal(resumed.response.status, 200);
            await resumed.until("room.joined", () => resumed.events.length >= 1);
            const resumeMs = performance.now() - resumeAt;
            const joined = resumed.json("room.joined")[0]!;
            assert.equal(joined.recovered, true);
            const latestAtJoin = joined.offset as number;
            await keepSending;
            for (let n = 25; n < 28; n++) send(sc, "c", n);
            await resumed.until(
              "everything after the last id",
              () => resumed.json("broadcast").length >= sent - since,
              10_000,
            );
            await sleep(SETTLE_MS);
            const exitCode = await stopping;
            const exitMs = performance.now() - termAt;

            const got = resumed.events.filter((e) => e.event === "broadcast");
            assert.equal(got.length, sent - since, "nothing twice, nothing missing");
            for (const e of got) {
              assert.equal(e.id, String((JSON.parse(e.data) as Broadcast).meta.offset), "id");
            }
            const replayed = got.slice(0, latestAtJoin - since);
            assert.deepEqual(
              replayed.map((e) => e.id),
              range(since + 1, latestAtJoin).map(String),
              "the missed ones first, in offset order, with their ids",
            );
            assert.deepEqual(
              got.map((e) => Number(e.id)).sort((x, y) => x - y),
              range(since + 1, sent),
              "then live ones",
            );
            const received = got.map((e) => JSON.parse(e.data) as Broadcast);
            assertPerSenderOrder(received, "the resumed follower");
            assertMatchesRows(received, await storedRows(pg, room), "the resumed follower");
            console.log(
              `measured: SIGTERM of the follower's instance: event close 1012 retry 1000 after ` +
                `${Math.round(closeMs)} ms (process exited ${exitCode} within ` +
                `${Math.round(exitMs)} ms); it had ids 1..${since}; resumed on B with ` +
                `Last-Event-ID ${since}: room.joined in ${Math.round(resumeMs)} ms, recovered ` +
                `true, ${replayed.length} replayed with ids ${since + 1}..${latestAtJoin}, ` +
                `then ${got.length - replayed.length} live, none twice`,
            );

            // The follower whose token expires in ~3 s.
            await expiring.until(
              "the expiry close",
              () => expiring.events.some((e) => e.event === "close"),
              10_000,
            );
            const expiredAt = Date.now();
            const expiry = expiring.events.find((e) => e.event === "close")!;
            assert.deepEqual(JSON.parse(expiry.data), { code: 4001, reason: "token_expired" });
            assert.equal(expiry.retry, "1000");
            await expiring.ended;
            assert.equal(expiring.events.at(-1), expiry);
            assert.ok(
              expiring.json("broadcast").length >= 5,
              "it heard the room until it expired",
            );
            console.log(
              `measured: SSE token expiry: event close 4001 token_expired retry 1000 ` +
                `${expiredAt - ux.exp * 1000} ms after the token's exp (exp has 1 s resolution) ` +
                `after ${expiring.json("broadcast").length} broadcasts`,
            );
          }),
      );
    } catch (error) {
      failure = error;
    }
    await Promise.all(everyProcess.map((relay) => relay.stop()));
    await realtime.close();
    await auth.close();
    await pg.remove();
    if (failure !== null) throw failure;
  },
});
