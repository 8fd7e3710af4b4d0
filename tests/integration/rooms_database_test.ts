/**
 * Rooms in `database` mode through the real relay (in process, one instance,
 * `RELAY_ROOMS_BUS=off`) against a real PostgreSQL with the migrations
 * applied by the Supabase CLI: who joins with what access under the default
 * relay.room_access and relay.room_members, a read-only member refused in
 * band, an app's replacement of the function, the database going away (new
 * joins 503, members already in keep talking), a server's publish with a
 * user token and with the secret key, and the round trips a join costs
 * (answers reused for 30 s).
 */
import assert from "node:assert/strict";
import { connectDatabase, type Database } from "../../supabase/functions/_shared/db/client.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { type RelayUnderTest, UPGRADE_HEADERS, withRelay } from "../helpers/relay_harness.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { type OpenAIStandIn, startOpenAIStandIn } from "../stand_ins/openai.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`rooms database tests skipped: ${skip}`);

const SECRET_KEY = "sb_secret_x";

type RoomEvent = { type: string; [key: string]: unknown };

/** The settings every relay here runs with: rooms decided in SQL, on one instance. */
function roomsEnv(pg: TestPostgres): Record<string, string> {
  return {
    RELAY_ROOMS: "database",
    RELAY_ROOMS_BUS: "off",
    RELAY_DATABASE_URL: pg.url,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
  };
}

/** A member: its client and the `room.joined` it got first. */
interface Member {
  readonly client: TestClient;
  readonly joined: RoomEvent;
  /** Every text message after `room.joined`, parsed. */
  events(): RoomEvent[];
}

async function tokenFor(
  relay: RelayUnderTest,
  user: string,
  claims: Record<string, unknown> = {},
): Promise<string> {
  return await relay.auth.signEs256({ sub: user, ...claims });
}

/** Joins `room` as `user` and waits for `room.joined`. */
async function join(
  relay: RelayUnderTest,
  user: string,
  room: string,
  claims: Record<string, unknown> = {},
): Promise<Member> {
  const token = await tokenFor(relay, user, claims);
  const client = new TestClient(relay.wsUrl(`/relay/rooms/${room}`, { jwt: token }));
  await client.opened;
  const [first] = await client.waitForMessages(1);
  const joined = JSON.parse(String(first)) as RoomEvent;
  assert.equal(joined.type, "room.joined", String(first));
  return { client, joined, events: () => client.events().slice(1) };
}

/** A refused join: status, Retry-After and the JSON body. */
async function refusedJoin(
  relay: RelayUnderTest,
  user: string,
  room: string,
  claims: Record<string, unknown> = {},
): Promise<{ status: number; retryAfter: string | null; body: Record<string, unknown> }> {
  const token = await tokenFor(relay, user, claims);
  const response = await fetch(
    `http://127.0.0.1:${relay.port}/relay/rooms/${room}?jwt=${token}`,
    { headers: UPGRADE_HEADERS },
  );
  const body = await response.json() as Record<string, unknown>;
  return { status: response.status, retryAfter: response.headers.get("retry-after"), body };
}

/** A server's publish into `room` with `bearer`. */
async function publish(
  relay: RelayUnderTest,
  room: string,
  bearer: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${relay.port}/relay/rooms/${room}`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

/** Waits for the first event of `member` after `room.joined` that `match` accepts. */
async function next(
  member: Member,
  match: (event: RoomEvent) => boolean,
  what: string,
): Promise<RoomEvent> {
  await until(() => member.events().some(match), 5000, what);
  return member.events().find(match)!;
}

function isBroadcast(event: string): (e: RoomEvent) => boolean {
  return (e) => e.type === "broadcast" && e.event === event;
}

/** Closes every client given, whatever state each is in. */
async function leave(...members: (Member | TestClient)[]): Promise<void> {
  for (const member of members) {
    await (member instanceof TestClient ? member : member.client).close();
  }
}

/** A room_members row, written as the owner (no API role may). */
async function member(
  pg: TestPostgres,
  room: string,
  user: string,
  access: "read" | "write",
): Promise<void> {
  await pg.psql(
    `insert into relay.room_members (room, user_id, access) values ('${room}', '${user}', '${access}')`,
  );
}

/** Statements the relay's database was sent, counted per test. */
class StatementLog {
  readonly statements: string[] = [];
  /** Calls to relay.room_access since the log began. */
  get accessChecks(): number {
    return this.statements.filter((statement) => statement.includes("relay.room_access(")).length;
  }
}

Deno.test({
  name: "rooms route in database mode on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth: AuthStandIn = await startAuthStandIn();
    const openai: OpenAIStandIn = await startOpenAIStandIn();
    const log = new StatementLog();
    // Injected so its statements can be counted; the relay leaves it open.
    const database: Database = connectDatabase(pg.url, {
      max: 3,
      onStatement: (statement) => log.statements.push(statement),
    });
    const withRoomsRelay = (body: (relay: RelayUnderTest) => Promise<void>) =>
      withRelay({ env: roomsEnv(pg), auth, openai, deps: { database } }, body);
    try {
      await t.step(
        "rooms route joins by the default relay.room_access: public, own user rooms, room_members",
        async () => {
          await withRoomsRelay(async (relay) => {
            const alice = crypto.randomUUID();
            const bob = crypto.randomUUID();

            const lobby = await join(relay, alice, "public:x");
            assert.equal(lobby.joined.access, "write");
            assert.equal(lobby.joined.room, "public:x");
            assert.equal(lobby.joined.user, alice);
            assert.equal(typeof lobby.joined.conn, "string");
            assert.deepEqual(lobby.joined.presence, [{ user: alice, state: null }]);
            assert.equal(lobby.joined.offset, null);
            assert.equal(lobby.joined.recovered, null);

            const own = await join(relay, alice, `user:${alice}`);
            assert.equal(own.joined.access, "write");
            const notes = await join(relay, alice, `user:${alice}:notes`);
            assert.equal(notes.joined.access, "write");

            const other = await refusedJoin(relay, alice, `user:${bob}`);
            assert.equal(other.status, 403);
            assert.equal(other.body.error, "room_forbidden");
            const otherNotes = await refusedJoin(relay, alice, `user:${bob}:notes`);
            assert.equal(otherNotes.status, 403);
            assert.equal(otherNotes.body.error, "room_forbidden");
            // A prefix of another user's id is not that user's room.
            const prefix = await refusedJoin(relay, alice, `user:${alice.slice(0, 8)}`);
            assert.equal(prefix.status, 403);

            const room = `team:${crypto.randomUUID()}`;
            await member(pg, room, alice, "read");
            await member(pg, room, bob, "write");
            const reader = await join(relay, alice, room);
            assert.equal(reader.joined.access, "read");
            const writer = await join(relay, bob, room);
            assert.equal(writer.joined.access, "write");
            const stranger = await refusedJoin(relay, crypto.randomUUID(), room);
            assert.equal(stranger.status, 403);
            assert.equal(stranger.body.error, "room_forbidden");
            // A row for another room gives nothing here.
            const elsewhere = await refusedJoin(relay, bob, `team:${crypto.randomUUID()}`);
            assert.equal(elsewhere.status, 403);

            const rejected = relay.events("websocket.connection.rejected")
              .filter((line) => line.route === "rooms");
            assert.ok(rejected.every((line) => line.error === "room_forbidden"));
            assert.equal(rejected.length, 5);
            await leave(lobby, own, notes, reader, writer);
          });
        },
      );

      await t.step(
        "rooms route refuses a read-only member's broadcast, presence and binary in band, and it still hears writers",
        async () => {
          await withRoomsRelay(async (relay) => {
            const room = `team:${crypto.randomUUID()}`;
            const reader = crypto.randomUUID();
            const writer = crypto.randomUUID();
            await member(pg, room, reader, "read");
            await member(pg, room, writer, "write");
            const w = await join(relay, writer, room);
            const r = await join(relay, reader, room);
            assert.equal(r.joined.access, "read");
            assert.deepEqual(
              (r.joined.presence as { user: string }[]).map((entry) => entry.user).sort(),
              [reader, writer].sort(),
            );
            // A reader is present like anyone.
            await next(w, (e) => e.type === "presence.join" && e.user === reader, "reader joins");

            r.client.socket.send(JSON.stringify({
              type: "broadcast",
              event: "chat",
              payload: { text: "from a reader" },
              id: "m-1",
            }));
            r.client.socket.send(JSON.stringify({
              type: "broadcast",
              event: "chat",
              payload: { text: "no id" },
            }));
            r.client.socket.send(JSON.stringify({ type: "presence", state: { name: "Reader" } }));
            r.client.socket.send(new Uint8Array([1, 2, 3]));
            await until(
              () => r.events().filter((e) => e.type === "error").length === 4,
              5000,
              "four refusals",
            );
            const refusals = r.events().filter((e) => e.type === "error");
            const eventIds = new Set<unknown>();
            for (const refused of refusals) {
              assert.deepEqual(Object.keys(refused).sort(), ["error", "event_id", "type"]);
              assert.match(String(refused.event_id), /^relay_/);
              eventIds.add(refused.event_id);
              const error = refused.error as Record<string, unknown>;
              assert.deepEqual(Object.keys(error).sort(), [
                "code",
                "event_id",
                "message",
                "param",
                "type",
              ]);
              assert.equal(error.type, "invalid_request_error");
              assert.equal(error.code, "room_read_only");
              assert.equal(typeof error.message, "string");
              assert.equal(error.param, null);
            }
            assert.equal(eventIds.size, 4, "each refusal has its own event_id");
            assert.deepEqual(
              refusals.map((e) => (e.error as { event_id: unknown }).event_id),
              ["m-1", null, null, null],
            );
            assert.equal(r.client.socket.readyState, WebSocket.OPEN, "the connection goes on");

            // A writer's broadcast reaches the reader; by its ack the writer has
            // been sent anything the reader's messages would have caused.
            w.client.socket.send(JSON.stringify({
              type: "broadcast",
              event: "chat",
              payload: { text: "from a writer" },
              id: "w-1",
            }));
            const heard = await next(r, isBroadcast("chat"), "the writer's broadcast");
            assert.deepEqual(heard.payload, { text: "from a writer" });
            assert.equal((heard.meta as { user: string }).user, writer);
            await next(w, (e) => e.type === "broadcast.ack" && e.id === "w-1", "the ack");
            w.client.socket.send(new Uint8Array([9, 8, 7]));
            await until(
              () => r.client.messages.some((m) => m instanceof ArrayBuffer),
              5000,
              "the writer's binary frame",
            );
            const binary = r.client.messages.find((m) => m instanceof ArrayBuffer) as ArrayBuffer;
            assert.deepEqual(new Uint8Array(binary), new Uint8Array([9, 8, 7]));
            await sleep(100);
            assert.deepEqual(
              w.events().map((e) => e.type),
              ["presence.join", "broadcast.ack"],
              "nothing of the reader's reached the writer",
            );
            assert.ok(w.client.messages.every((m) => typeof m === "string"), "no binary");
            assert.equal(
              r.events().filter((e) => e.type === "presence.state").length,
              0,
              "the refused presence changed nothing",
            );
            await leave(w, r);
          });
        },
      );

      await t.step(
        "rooms route honours an app's replacement of relay.room_access for new users",
        async () => {
          // The default, as a create or replace statement, to put back afterwards.
          const original = await pg.psql(
            "select pg_get_functiondef('relay.room_access(text)'::regprocedure)",
          );
          try {
            await withRoomsRelay(async (relay) => {
              // Before the app's migration: the default answers.
              const before = await join(relay, crypto.randomUUID(), "public:x");
              assert.equal(before.joined.access, "write");
              await leave(before);

              await pg.psql(`
                create or replace function relay.room_access(room text) returns text
                language plpgsql stable security definer set search_path = '' as $$
                begin
                  if room = 'announcements' then
                    return case when auth.jwt() -> 'app_metadata' ->> 'role' = 'admin'
                                then 'write' else 'read' end;
                  end if;
                  return null;
                end $$`);

              // The same relay, new (user, room) pairs: the app's rules answer.
              const admin = crypto.randomUUID();
              const reader = crypto.randomUUID();
              const poster = await join(relay, admin, "announcements", {
                app_metadata: { role: "admin" },
              });
              assert.equal(poster.joined.access, "write");
              const listener = await join(relay, reader, "announcements");
              assert.equal(listener.joined.access, "read");
              // The default's public and user rooms are gone with it.
              const lobby = await refusedJoin(relay, crypto.randomUUID(), "public:x");
              assert.equal(lobby.status, 403);
              assert.equal(lobby.body.error, "room_forbidden");
              const own = crypto.randomUUID();
              assert.equal((await refusedJoin(relay, own, `user:${own}`)).status, 403);
              // The admin's broadcast reaches the listener; the listener may not post.
              poster.client.socket.send(JSON.stringify({
                type: "broadcast",
                event: "notice",
                payload: { text: "maintenance at noon" },
              }));
              const heard = await next(listener, isBroadcast("notice"), "the announcement");
              assert.equal((heard.meta as { user: unknown }).user, admin);
              listener.client.socket.send(JSON.stringify({
                type: "broadcast",
                event: "notice",
                payload: {},
                id: "nope",
              }));
              const refused = await next(listener, (e) => e.type === "error", "the refusal");
              assert.equal((refused.error as { code: unknown }).code, "room_read_only");
              assert.equal((refused.error as { event_id: unknown }).event_id, "nope");
              await leave(poster, listener);
            });
          } finally {
            await pg.psql(original);
          }
          assert.match(
            await pg.psql("select pg_get_functiondef('relay.room_access(text)'::regprocedure)"),
            /public:/,
            "the default is back",
          );
        },
      );

      await t.step(
        "rooms route asks the database once per user and room within 30 s",
        async () => {
          await withRoomsRelay(async (relay) => {
            const user = crypto.randomUUID();
            const before = log.accessChecks;
            const first = await join(relay, user, "public:counted");
            assert.equal(log.accessChecks - before, 1, "the first join: one round trip");
            const statement = log.statements.at(-1)!;
            assert.match(statement, /set_config\('role', 'authenticated', true\)/);
            assert.match(statement, /relay\.room_access\(E'public:counted'\)/);

            const secondTab = await join(relay, user, "public:counted");
            assert.equal(log.accessChecks - before, 1, "a second tab: no round trip");
            assert.notEqual(secondTab.joined.conn, first.joined.conn);
            // One presence entry for the user's two tabs.
            assert.deepEqual(secondTab.joined.presence, [{ user, state: null }]);

            const otherRoom = await join(relay, user, "public:counted-too");
            assert.equal(log.accessChecks - before, 2, "another room: its own round trip");
            const otherUser = await join(relay, crypto.randomUUID(), "public:counted");
            assert.equal(log.accessChecks - before, 3, "another user: their own round trip");

            // A refusal is an answer too: asking again costs nothing.
            const stranger = crypto.randomUUID();
            assert.equal((await refusedJoin(relay, stranger, `user:${user}`)).status, 403);
            assert.equal((await refusedJoin(relay, stranger, `user:${user}`)).status, 403);
            assert.equal(log.accessChecks - before, 4, "one round trip for two refusals");

            // Tabs opening together share one answer.
            const together = crypto.randomUUID();
            const tabs = await Promise.all(
              [1, 2, 3].map(() => join(relay, together, "public:together")),
            );
            assert.equal(log.accessChecks - before, 5, "three tabs at once: one round trip");

            // A publish with the user's token reuses the join's answer.
            const published = await publish(relay, "public:counted", await tokenFor(relay, user), {
              event: "note",
              payload: 1,
            });
            assert.equal(published.status, 202);
            assert.equal(log.accessChecks - before, 5, "the publish: no round trip");
            assert.equal(
              log.statements.length - log.statements.filter((s) => s.includes("room_access"))
                .length,
              0,
              `only access checks were sent: ${log.statements.join("\n---\n")}`,
            );
            await leave(first, secondTab, otherRoom, otherUser, ...tabs);
          });
        },
      );

      await t.step(
        "rooms route publishes for users with write access and for the secret key",
        async () => {
          await withRoomsRelay(async (relay) => {
            const room = `team:${crypto.randomUUID()}`;
            const reader = crypto.randomUUID();
            const writer = crypto.randomUUID();
            await member(pg, room, reader, "read");
            await member(pg, room, writer, "write");
            const listener = await join(relay, reader, room);

            const refused = await publish(relay, room, await tokenFor(relay, reader), {
              event: "news",
              payload: { n: 1 },
            });
            assert.equal(refused.status, 403);
            assert.equal(refused.body.error, "room_forbidden");
            const stranger = await publish(
              relay,
              room,
              await tokenFor(relay, crypto.randomUUID()),
              { event: "news", payload: { n: 1 } },
            );
            assert.equal(stranger.status, 403);
            assert.equal(stranger.body.error, "room_forbidden");

            const accepted = await publish(relay, room, await tokenFor(relay, writer), {
              event: "news",
              payload: { n: 2 },
              id: "p-1",
            });
            assert.equal(accepted.status, 202);
            assert.deepEqual(accepted.body, { offset: null });
            const fromUser = await next(listener, isBroadcast("news"), "the user's publish");
            assert.deepEqual(fromUser.payload, { n: 2 });
            assert.equal((fromUser.meta as { user: unknown }).user, writer);
            assert.equal((fromUser.meta as { id: unknown }).id, "p-1");

            const checks = log.accessChecks;
            const fromServer = await publish(relay, room, SECRET_KEY, {
              event: "server",
              payload: { n: 3 },
            });
            assert.equal(fromServer.status, 202);
            assert.deepEqual(fromServer.body, { offset: null });
            const heard = await next(listener, isBroadcast("server"), "the server's publish");
            assert.deepEqual(heard.payload, { n: 3 });
            assert.equal((heard.meta as { user: unknown }).user, null);
            assert.equal(log.accessChecks, checks, "the secret key asks the database nothing");

            // Refused publishes delivered nothing.
            assert.deepEqual(
              listener.events().filter((e) => e.type === "broadcast").map((e) => e.event),
              ["news", "server"],
            );
            await leave(listener);
          });
        },
      );

      await t.step(
        "rooms route answers 503 rooms_unavailable to new joins while the database is down, and members keep talking",
        async () => {
          await withRoomsRelay(async (relay) => {
            const room = "public:outage";
            const alice = crypto.randomUUID();
            const bob = crypto.randomUUID();
            const carol = crypto.randomUUID();
            const a = await join(relay, alice, room);
            const b = await join(relay, bob, room);
            await next(a, (e) => e.type === "presence.join" && e.user === bob, "bob joins");
            await pg.stop();
            try {
              const refused = await refusedJoin(relay, carol, room);
              assert.equal(refused.status, 503);
              assert.equal(refused.retryAfter, "5");
              assert.equal(refused.body.error, "rooms_unavailable");
              assert.equal(typeof refused.body.message, "string");
              // A user whose answer is not known cannot publish either.
              const unknown = await publish(relay, room, await tokenFor(relay, carol), {
                event: "x",
                payload: null,
              });
              assert.equal(unknown.status, 503);
              assert.equal(unknown.body.error, "rooms_unavailable");

              // Members already in go on, both ways.
              a.client.socket.send(JSON.stringify({
                type: "broadcast",
                event: "chat",
                payload: "still here",
              }));
              const heard = await next(b, isBroadcast("chat"), "alice during the outage");
              assert.equal(heard.payload, "still here");
              b.client.socket.send(JSON.stringify({ type: "presence", state: { away: false } }));
              const state = await next(
                a,
                (e) => e.type === "presence.state" && e.user === bob,
                "bob's state during the outage",
              );
              assert.deepEqual(state.state, { away: false });

              // An answer given within 30 s still holds: alice's second tab joins.
              const tab = await join(relay, alice, room);
              assert.equal(tab.joined.access, "write");

              // The secret key never needs the database.
              const server = await publish(relay, room, SECRET_KEY, {
                event: "server",
                payload: "while down",
              });
              assert.equal(server.status, 202);
              await next(b, isBroadcast("server"), "the server's publish during the outage");
              await leave(tab);
            } finally {
              await pg.start();
            }
            // The refusal was not remembered: carol joins at once.
            const c = await join(relay, carol, room);
            assert.equal(c.joined.access, "write");
            assert.equal(a.client.socket.readyState, WebSocket.OPEN);
            assert.equal(b.client.socket.readyState, WebSocket.OPEN);
            const unavailable = relay.events("websocket.connection.rejected")
              .filter((line) => line.error === "rooms_unavailable");
            assert.deepEqual(unavailable.map((line) => line.status), [503, 503]);
            await leave(a, b, c);
          });
        },
      );
    } finally {
      await pg.start().catch(() => {});
      await database.close();
      await openai.close();
      await auth.close();
      await pg.remove();
    }
  },
});
