/**
 * Rooms in `deno task dev`'s stack with its defaults (`RELAY_ROOMS=database`
 * against the embedded PGlite, the bus on the Supabase Realtime stand-in
 * served on the Auth stand-in's origin, as the gateway serves `/realtime/v1`
 * beside `/auth/v1`): two users meet in a public room, see each other's
 * presence and chat; another user's own room is refused; the relay's bus
 * joined the room's channel on the stand-in, and a second relay instance on
 * the same settings meets the first there.
 */
import assert from "node:assert/strict";
import { withDevDefaults } from "../../dev/defaults.ts";
import { type DevStack, startDevStack } from "../../dev/stack.ts";
import { createRelayHandler } from "../../supabase/functions/_shared/handler.ts";
import { createTelemetry } from "../../supabase/functions/_shared/telemetry/log.ts";
import { UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { TestClient, until } from "../helpers/ws_client.ts";

const FREE_PORTS = { relay: 0, demo: 0, auth: 0, openai: 0, db: 0 };

type RoomEvent = { type: string; [key: string]: unknown };

/** A member: its client and the `room.joined` it got first. */
interface Member {
  readonly client: TestClient;
  readonly joined: RoomEvent;
  /** Every text message after `room.joined`, parsed. */
  events(): RoomEvent[];
}

async function join(relayUrl: string, token: string, room: string): Promise<Member> {
  const client = new TestClient(`${relayUrl}/relay/rooms/${room}?jwt=${token}`);
  await client.opened;
  const [first] = await client.waitForMessages(1);
  const joined = JSON.parse(String(first)) as RoomEvent;
  assert.equal(joined.type, "room.joined", String(first));
  return { client, joined, events: () => client.events().slice(1) };
}

async function next(
  member: Member,
  match: (event: RoomEvent) => boolean,
  what: string,
  ms = 5000,
): Promise<RoomEvent> {
  await until(() => member.events().some(match), ms, what);
  return member.events().find(match)!;
}

function say(member: Member, text: string, id: string): void {
  member.client.socket.send(
    JSON.stringify({ type: "broadcast", event: "chat", payload: { text }, id }),
  );
}

function chat(member: Member): string[] {
  return member.events()
    .filter((e) => e.type === "broadcast" && e.event === "chat")
    .map((e) => (e.payload as { text: string }).text);
}

Deno.test("dev stack runs rooms in the embedded database with the bus on the Realtime stand-in at the Auth origin", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-devrooms-" });
  let stack: DevStack | null = null;
  const clients: TestClient[] = [];
  try {
    stack = await startDevStack({
      ports: FREE_PORTS,
      env: withDevDefaults({}).env,
      dataDir: `${dir}/pglite`,
      fresh: true,
      telemetry: () => {},
    });
    const { auth, realtime, settings } = stack;
    assert.equal(settings.rooms, "database");
    assert.equal(settings.roomsBus, "realtime");
    assert.equal(stack.database?.kind, "embedded");
    assert.ok(
      stack.database?.applied.includes("20261207000100_relay_rooms.sql"),
      "the rooms migration is applied",
    );
    assert.ok(realtime, "the Realtime stand-in runs");
    assert.equal(realtime.url, "", "mounted, not listening on a port of its own");
    assert.ok(
      settings.realtimeUrl.startsWith(auth.url.replace(/^http/, "ws")),
      `${settings.realtimeUrl} is on the Auth stand-in's origin ${auth.url}`,
    );
    assert.equal(settings.realtimeUrl, `${auth.url.replace(/^http/, "ws")}/realtime/v1`);
    assert.equal(settings.secretKey, realtime.secretKey);

    const alice = await auth.issueDevToken({ email: "alice@example.com" });
    const bob = await auth.issueDevToken({ email: "bob@example.com" });
    const aliceId = String(alice.user.id);
    const bobId = String(bob.user.id);

    const a = await join(stack.relayUrl, alice.access_token, "public:lobby");
    clients.push(a.client);
    assert.equal(a.joined.access, "write");
    assert.equal(a.joined.user, aliceId);
    assert.deepEqual(a.joined.presence, [{ user: aliceId, state: null }]);
    a.client.socket.send(JSON.stringify({ type: "presence", state: { name: "Alice" } }));

    const b = await join(stack.relayUrl, bob.access_token, "public:lobby");
    clients.push(b.client);
    assert.equal(b.joined.access, "write");
    // Alice's state may or may not have landed before Bob joined: wait for it either way.
    const present = (b.joined.presence as { user: string }[]).map((entry) => entry.user).sort();
    assert.deepEqual(present, [aliceId, bobId].sort());
    await next(a, (e) => e.type === "presence.join" && e.user === bobId, "bob's presence.join");
    b.client.socket.send(JSON.stringify({ type: "presence", state: { name: "Bob" } }));
    const bobState = await next(
      a,
      (e) => e.type === "presence.state" && e.user === bobId,
      "bob's state",
    );
    assert.deepEqual(bobState.state, { name: "Bob" });
    const aliceName = (b.joined.presence as { user: string; state: unknown }[])
      .find((entry) => entry.user === aliceId)!.state;
    if (aliceName === null) {
      const aliceState = await next(
        b,
        (e) => e.type === "presence.state" && e.user === aliceId,
        "alice's state",
      );
      assert.deepEqual(aliceState.state, { name: "Alice" });
    } else {
      assert.deepEqual(aliceName, { name: "Alice" });
    }

    say(a, "hi Bob", "a-1");
    const heard = await next(b, (e) => e.type === "broadcast", "alice's message");
    assert.deepEqual(heard.payload, { text: "hi Bob" });
    assert.equal((heard.meta as { user: string }).user, aliceId);
    assert.equal((heard.meta as { id: string }).id, "a-1");
    await next(a, (e) => e.type === "broadcast.ack" && e.id === "a-1", "alice's ack");
    say(b, "hi Alice", "b-1");
    await until(() => chat(a).length === 1, 5000, "bob's answer");
    assert.deepEqual(chat(a), ["hi Alice"], "alice hears bob, not herself");
    assert.deepEqual(chat(b), ["hi Bob"]);

    // The relay's bus joined the room's private channel on the stand-in, with the secret key.
    assert.ok(realtime.stats.joins > 0, `joins: ${realtime.stats.joins}`);
    const busSockets = realtime.sockets().filter((socket) =>
      socket.topics.includes("realtime:relay:room:public:lobby")
    );
    assert.equal(busSockets.length, 1, JSON.stringify(realtime.sockets()));
    assert.equal(busSockets[0]!.role, "service_role");

    // Someone else's own room is refused; one's own is writable.
    const refused = await fetch(
      `${
        stack.relayUrl.replace(/^ws/, "http")
      }/relay/rooms/user:${bobId}?jwt=${alice.access_token}`,
      { headers: UPGRADE_HEADERS },
    );
    assert.equal(refused.status, 403);
    assert.equal((await refused.json()).error, "room_forbidden");
    const own = await join(stack.relayUrl, alice.access_token, `user:${aliceId}`);
    clients.push(own.client);
    assert.equal(own.joined.access, "write");

    // A member leaving is seen by the others.
    await b.client.close();
    await next(a, (e) => e.type === "presence.leave" && e.user === bobId, "bob leaves");
  } finally {
    for (const client of clients) await client.close();
    await stack?.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dev stack's rooms meet across two relay instances through the Realtime stand-in", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-devrooms-" });
  let stack: DevStack | null = null;
  const clients: TestClient[] = [];
  // A second instance of the relay, on the dev stack's settings (same database, same bus).
  let second: { relay: ReturnType<typeof createRelayHandler>; stop(): Promise<void> } | null = null;
  try {
    stack = await startDevStack({
      ports: FREE_PORTS,
      env: withDevDefaults({}).env,
      dataDir: `${dir}/pglite`,
      fresh: true,
      telemetry: () => {},
    });
    const relay = createRelayHandler(stack.settings, {
      telemetry: createTelemetry(stack.settings.logLevel, () => {}),
    });
    const abort = new AbortController();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: abort.signal, onListen: () => {} },
      relay.handler,
    );
    second = {
      relay,
      stop: async () => {
        await relay.shutdown();
        abort.abort();
        await server.finished;
      },
    };
    const secondUrl = `ws://127.0.0.1:${server.addr.port}`;
    const realtime = stack.realtime!;

    const alice = await stack.auth.issueDevToken({ email: "alice@example.com" });
    const bob = await stack.auth.issueDevToken({ email: "bob@example.com" });
    const bobId = String(bob.user.id);
    const a = await join(stack.relayUrl, alice.access_token, "public:across");
    clients.push(a.client);
    const b = await join(secondUrl, bob.access_token, "public:across");
    clients.push(b.client);
    assert.equal(b.joined.access, "write");

    // Both instances are on the room's channel.
    await until(
      () =>
        realtime.sockets().filter((socket) =>
          socket.topics.includes("realtime:relay:room:public:across")
        ).length === 2,
      5000,
      "two instances on the channel",
    );
    await next(a, (e) => e.type === "presence.join" && e.user === bobId, "bob seen across", 10_000);

    say(a, "over the bus", "x-1");
    const heard = await next(b, (e) => e.type === "broadcast", "alice's message across");
    assert.deepEqual(heard.payload, { text: "over the bus" });
    say(b, "and back", "y-1");
    await until(() => chat(a).length === 1, 5000, "bob's answer across");
    assert.deepEqual(chat(a), ["and back"]);
    assert.ok(realtime.stats.broadcasts > 0 && realtime.stats.deliveries > 0);
  } finally {
    for (const client of clients) await client.close();
    await second?.stop();
    await stack?.close();
    await Deno.remove(dir, { recursive: true });
  }
});
