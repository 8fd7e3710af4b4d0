/**
 * The room client (`joinRoom` in client/relay_client.js) against the real
 * relay in process (`RELAY_ROOMS=open`, `RELAY_ROOMS_BUS=off`), without room
 * history: a fresh token per connection, rejoining after a TCP cut and a
 * relay restart, the presence list kept and replaced, unacknowledged
 * broadcasts resent with their ids and delivered once, and no reconnect where
 * the contract says none. History (`?since=`, offsets) is room_history_test.ts.
 * Under Deno's own WebSocket; the Node run is node_test.ts.
 * @module
 */
import assert from "node:assert/strict";
import { RelayClientError } from "../../client/relay_client.js";
import { sleep } from "../helpers/ws_client.ts";
import { requestLines, roomEnv, withRoomStack } from "./room_support.ts";

const ROOM = "public:lobby";

Deno.test("joinRoom: a fresh token per connection, presence kept, rejoined after a TCP cut", async () => {
  await withRoomStack(roomEnv(), async ({ user, join }) => {
    const ada = user();
    const bob = user();
    const a = join(ada, { room: ROOM });
    const joined = await a.waitState("open");
    assert.deepEqual([joined.why, joined.recovered, joined.offset, joined.since], [
      "joined",
      null,
      null,
      null,
    ]);
    assert.equal(a.room.user, ada.id);
    assert.deepEqual(a.room.presence, [{ user: ada.id, state: null }]);
    a.room.setPresence({ name: "Ada" });
    const b = join(bob, { room: ROOM });
    await b.waitState("open");
    await a.waitFor(() => a.room.presence.length === 2, "Bob in Ada's list");
    await b.waitFor(
      () => b.room.presence.find((p) => p.user === ada.id)?.state?.name === "Ada",
      "Ada's state in Bob's list",
    );

    a.proxy.dropAll(); // Ada's network only
    const lost = await a.waitState("reconnecting");
    assert.deepEqual([lost.why, lost.code], ["connection_lost", 1006]);
    const rejoined = await a.waitState("open", 2);
    assert.equal(rejoined.why, "rejoined");
    assert.equal(rejoined.since, 0, "asks from where it was (ignored without history)");
    // The list is replaced on the rejoin, and the state set again.
    const replaced = a.presence.filter((p) => p.change.type === "room.joined");
    assert.equal(replaced.length, 2);
    await b.waitFor(
      () =>
        b.presence.some((p) => p.change.type === "presence.leave") &&
        b.room.presence.find((p) => p.user === ada.id)?.state?.name === "Ada",
      "Ada left and came back with her state",
    );
    await a.waitFor(
      () => a.room.presence.find((p) => p.user === ada.id)?.state?.name === "Ada",
      "Ada's own state restored",
    );

    assert.equal(ada.issued.length, 2, "one getToken() per connection");
    assert.notEqual(ada.issued[0], ada.issued[1]);
    const lines = requestLines(a.proxy);
    assert.ok(lines[0]!.startsWith(`GET /relay/rooms/${ROOM} `), lines[0]);
    assert.ok(lines[1]!.startsWith(`GET /relay/rooms/${ROOM}?since=0 `), lines[1]);
    assert.ok(a.proxy.heads.every((h, i) => !h.split("\r\n")[0]!.includes(ada.issued[i]!)));
    const closed = await a.room.close();
    assert.deepEqual([closed.why, closed.unsent], ["client", 0]);
    await b.waitFor(() => b.room.presence.length === 1, "Ada gone from Bob's list");
  });
});

Deno.test("joinRoom without history: 200 broadcasts through the sender's TCP cuts arrive once, in order", async () => {
  await withRoomStack(roomEnv(), async ({ user, join }) => {
    const ada = user();
    const a = join(ada, { room: ROOM });
    const b = join(user(), { room: ROOM });
    await Promise.all([a.waitState("open"), b.waitState("open")]);
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      ids.push(a.room.send("chat", { seq: i, text: `message ${i} ✓` }));
      // In flight: acks lost, some never arrived. Each cut lands on a joined connection.
      if (i === 70) a.proxy.dropAll();
      if (i === 150) await a.waitState("open", 2).then(() => a.proxy.dropAll());
      if (i % 10 === 9) await sleep(2);
    }
    await b.waitFor(() => b.messages.length >= 200, "200 at Bob", 15_000);
    await a.waitFor(() => a.room.pending.messages === 0, "every broadcast acknowledged");
    await sleep(200); // a duplicate would arrive now
    assert.deepEqual(b.messages.map((m) => (m.payload as { seq: number }).seq), [
      ...Array(200).keys(),
    ]);
    assert.deepEqual(b.messages.map((m) => m.meta.id), ids, "the ids the sender gave");
    assert.ok(b.messages.every((m) => m.meta.user === ada.id && m.meta.offset === null));
    assert.equal(a.messages.length, 0, "no self: the sender hears nothing of its own");
    assert.ok(a.count("reconnecting") >= 2, "cut twice");
    const repeats = b.events.filter((e) => e.type === "broadcast").length - 200;
    console.log(`  (${repeats} resent broadcasts reached Bob and were dropped)`);
  });
});

Deno.test("joinRoom: a relay restart (1012) rejoins the new relay; held broadcasts go out there", async () => {
  await withRoomStack(roomEnv(), async ({ user, join, restart, relay }) => {
    const first = relay;
    const bob = user();
    const b = join(bob, { room: ROOM });
    await b.waitState("open");
    let held = 0;
    const a = join(user(), {
      room: ROOM,
      onState: (state) => {
        if (state !== "reconnecting" || held > 0) return;
        for (let i = 0; i < 3; i++) a.room.send("chat", { held: i });
        held = a.room.pending.messages;
      },
    });
    await a.waitState("open");
    await restart();
    const restarting = await a.waitState("reconnecting");
    assert.deepEqual([restarting.why, restarting.code], ["server_restarting", 1012]);
    assert.equal(held, 3, "held while reconnecting");
    await Promise.all([a.waitState("open", 2), b.waitState("open", 2)]);
    await a.waitFor(() => a.room.pending.messages === 0, "held broadcasts acknowledged");
    // Bob may rejoin after Ada's held broadcasts went out (nothing keeps them without history).
    assert.ok(b.messages.length <= 3);
    a.room.send("chat", { after: true });
    await b.waitFor(() => b.messages.some((m) => (m.payload as { after?: boolean }).after), "live");
    assert.equal(first.events("websocket.connection.accepted").length, 2);
  });
});

Deno.test("joinRoom: no reconnect after 1009, nor after a refused first join", async () => {
  await withRoomStack(
    { ...roomEnv(), RELAY_ROOM_MAX_MESSAGE_BYTES: "1024" },
    async ({ user, join, relay }) => {
      const a = join(user(), { room: ROOM });
      await a.waitState("open");
      a.room.send("chat", "x".repeat(2000));
      const closed = await a.waitClosed();
      assert.deepEqual([closed.why, closed.code, closed.unsent], ["message_too_big", 1009, 1]);
      assert.equal(a.count("reconnecting"), 0);
      assert.throws(() => a.room.send("chat", 1), (e) => e instanceof RelayClientError);

      const refusedUser = { ...user(), getToken: () => Promise.resolve("not-a-token") };
      const r = join(refusedUser, { room: ROOM });
      assert.equal((await r.waitClosed()).why, "refused");
      assert.deepEqual(r.states.map((s) => s.state), ["connecting", "closed"]);
      assert.equal(relay.events("websocket.connection.rejected").at(-1)?.status, 401);
    },
  );
});

Deno.test("joinRoom: 4001 at token expiry rejoins with a fresh token", async () => {
  await withRoomStack(roomEnv(), async ({ user, join }) => {
    const ada = user();
    ada.lifetimes.push(2);
    const a = join(ada, { room: ROOM });
    await a.waitState("open");
    const expired = await a.waitState("reconnecting", 1, 8000);
    assert.deepEqual([expired.why, expired.code], ["token_expired", 4001]);
    await a.waitState("open", 2);
    assert.equal(ada.issued.length, 2);
  });
});
