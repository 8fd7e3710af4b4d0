/**
 * CONTRACT.md "Rooms" on one instance (`RELAY_ROOMS=open`,
 * `RELAY_ROOMS_BUS=off`), seen on the wire: joining, broadcasts and their
 * meta, acks, binary frames, presence, a server's publish over HTTP, rooms
 * off, and telemetry that names the room but never a payload or a key.
 */
import assert from "node:assert/strict";
import { follow, join, marker, newUser, SECRET_KEY, withRooms } from "../helpers/rooms.ts";
import { UPGRADE_HEADERS, withRelay } from "../helpers/relay_harness.ts";
import { sameBytes } from "../helpers/messages.ts";
import { TestClient, until } from "../helpers/ws_client.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A presence list in a fixed order, for comparison. */
type Present = { user: string; state: unknown };
const sorted = (list: unknown): Present[] =>
  [...list as Present[]].sort((x, y) => x.user.localeCompare(y.user));

Deno.test("rooms: room.joined comes first, at once, with the member's fields and everyone present", async () => {
  await withRooms({}, async (relay, secret) => {
    const a = await newUser(relay);
    const b = await newUser(relay);
    secret(a.token);
    secret(b.token);
    const started = Date.now();
    const alice = await join(relay, "public:lobby", a);
    // One instance alone has nothing to wait for before it hears the room.
    const waited = Date.now() - started;
    assert.ok(waited < 500, `room.joined after ${waited} ms`);
    assert.match(String(alice.joined.conn), UUID);
    assert.deepEqual({ ...alice.joined, conn: "" }, {
      type: "room.joined",
      room: "public:lobby",
      user: a.id,
      conn: "",
      access: "write",
      presence: [{ user: a.id, state: null }],
      offset: null,
      recovered: null,
    });
    const [accepted] = relay.events("websocket.connection.accepted");
    assert.equal(accepted?.conn, alice.joined.conn, "conn is the connection's id");

    const bob = await join(relay, "public:lobby", b);
    assert.deepEqual(
      sorted(bob.joined.presence),
      sorted([
        { user: a.id, state: null },
        { user: b.id, state: null },
      ]),
    );
    await alice.waitFor("presence.join of bob", (e) => e.some((x) => x.type === "presence.join"));
    assert.deepEqual(alice.of("presence.join"), [{
      type: "presence.join",
      user: b.id,
      state: null,
    }]);

    // Bob's second tab: one presence entry for bob, no second presence.join.
    const bobTab2 = await join(relay, "public:lobby", b);
    assert.notEqual(bobTab2.joined.conn, bob.joined.conn);
    assert.deepEqual(
      sorted(bobTab2.joined.presence),
      sorted([
        { user: a.id, state: null },
        { user: b.id, state: null },
      ]),
    );
    bobTab2.send({ type: "broadcast", event: "sentinel", payload: 1 });
    for (const member of [alice, bob]) {
      await member.waitFor("sentinel", (e) => e.some((x) => x.event === "sentinel"));
    }
    assert.deepEqual(alice.events().map((e) => e.type), [
      "room.joined",
      "presence.join",
      "broadcast",
    ]);
    // Bob never hears of his own user joining (neither tab).
    assert.deepEqual(bob.events().map((e) => e.type), ["room.joined", "broadcast"]);
    assert.deepEqual(bobTab2.events().map((e) => e.type), ["room.joined"]);

    for (const member of [alice, bob, bobTab2]) await member.client.close();
    await until(() => relay.events("websocket.connection.closed").length === 3, 3000, "closed");
    for (const line of relay.events("websocket.connection.accepted")) {
      assert.deepEqual([line.route, line.room], ["rooms", "public:lobby"]);
    }
    for (const line of relay.events("websocket.connection.closed")) {
      assert.deepEqual([line.room, line.code], ["public:lobby", 1000]);
    }
  });
});

Deno.test("rooms: each broadcast reaches every other member once, with its meta, payload JSON-equal", async () => {
  await withRooms({}, async (relay, secret) => {
    const [a, b, c] = [await newUser(relay), await newUser(relay), await newUser(relay)];
    for (const user of [a, b, c]) secret(user.token);
    const alice = await join(relay, "chat", a);
    const bob = await join(relay, "chat", b);
    const carol = await join(relay, "chat", c);
    const mark = secret(marker());
    const sent: { event: string; payload: unknown; id?: string; ephemeral?: boolean }[] = [
      { event: "chat.message", payload: { text: mark, n: 1 }, id: "m-1" },
      { event: "typing", payload: { who: "alice", mark }, ephemeral: true },
      { event: "e", payload: null },
      { event: "e", payload: [1, "two", { three: [3] }, mark], id: "m.2:x_y-z" },
      { event: "cursor", payload: { x: 1.5, y: -2e-7 }, ephemeral: false, id: "m3" },
      { event: "u", payload: `quote " backslash \\ emoji \u{1f600} ${mark}` },
      { event: "num", payload: 12345678901234 },
      { event: "x".repeat(64), payload: {}, id: "i".repeat(64) },
    ];
    const before = Date.now();
    for (const message of sent) alice.send({ type: "broadcast", ...message });
    for (const member of [bob, carol]) {
      await member.waitFor(
        "every broadcast",
        (e) => e.filter((x) => x.type === "broadcast").length === sent.length,
      );
    }
    const after = Date.now();
    for (const member of [bob, carol]) {
      const got = member.of("broadcast");
      assert.equal(got.length, sent.length, "each exactly once");
      got.forEach((event, i) => {
        const want = sent[i]!;
        const meta = event.meta as Record<string, unknown>;
        assert.deepEqual(
          { ...event, meta: { ...meta, at: "" } },
          {
            type: "broadcast",
            event: want.event,
            payload: want.payload,
            meta: { user: a.id, id: want.id ?? null, offset: null, at: "" },
          },
          `broadcast ${i}`,
        );
        const at = Date.parse(String(meta.at));
        assert.match(String(meta.at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
        assert.ok(
          at >= before - 1000 && at <= after + 1000,
          `meta.at ${meta.at} is when it was sent`,
        );
      });
    }
    // The sender gets an ack for each message with an id, in order, and nothing else.
    const ids = sent.flatMap((m) => (m.id === undefined ? [] : [m.id]));
    await alice.waitFor(
      "acks",
      (e) => e.filter((x) => x.type === "broadcast.ack").length === ids.length,
    );
    bob.send({ type: "broadcast", event: "sentinel", payload: 0 });
    await alice.waitFor("sentinel", (e) => e.some((x) => x.event === "sentinel"));
    assert.deepEqual(
      alice.events().filter((e) => e.type !== "presence.join" && e.type !== "room.joined"),
      [
        ...ids.map((id) => ({ type: "broadcast.ack", id, offset: null })),
        { type: "broadcast", event: "sentinel", payload: 0, meta: alice.of("broadcast")[0]!.meta },
      ],
      "no broadcast of its own (no ?self), one ack per id",
    );
    for (const member of [alice, bob, carol]) await member.client.close();
  });
});

Deno.test("rooms: messages from one sender arrive in the order sent (200 each, two senders)", async () => {
  await withRooms({}, async (relay, secret) => {
    const [a, b, c] = [await newUser(relay), await newUser(relay), await newUser(relay)];
    for (const user of [a, b, c]) secret(user.token);
    const reader = await join(relay, "order", c);
    const senders = [await join(relay, "order", a), await join(relay, "order", b)];
    for (let i = 0; i < 200; i++) {
      for (const [s, sender] of senders.entries()) {
        sender.send({ type: "broadcast", event: "n", payload: { s, i }, ephemeral: i % 3 === 0 });
      }
    }
    await reader.waitFor(
      "400 broadcasts",
      (e) => e.filter((x) => x.type === "broadcast").length === 400,
      10_000,
    );
    for (const [s, sender] of senders.entries()) {
      const got = reader.of("broadcast")
        .filter((e) => (e.meta as { user: string }).user === sender.joined.user)
        .map((e) => (e.payload as { s: number; i: number }));
      assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => ({ s, i })), `sender ${s}`);
    }
    // Each sender heard the other's 200, in order, and none of its own.
    for (const [s, sender] of senders.entries()) {
      await sender.waitFor(
        "the other's 200",
        (e) => e.filter((x) => x.type === "broadcast").length === 200,
        10_000,
      );
      const got = sender.of("broadcast").map((e) => (e.payload as { s: number; i: number }));
      assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => ({ s: 1 - s, i })));
    }
    for (const member of [reader, ...senders]) await member.client.close();
  });
});

Deno.test("rooms: binary frames arrive byte-identical, as binary, in order; ?self=true echoes text and binary", async () => {
  await withRooms({}, async (relay, secret) => {
    const [a, b] = [await newUser(relay), await newUser(relay)];
    secret(a.token);
    secret(b.token);
    const alice = await join(relay, "media", a, { self: "true" });
    const bob = await join(relay, "media", b);
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const random = crypto.getRandomValues(new Uint8Array(60_000));
    const markBytes = new TextEncoder().encode(secret(marker()));
    const frames = [new Uint8Array(0), allBytes, random, markBytes, allBytes.slice().reverse()];
    for (const frame of frames) alice.send(frame);
    alice.send({ type: "broadcast", event: "after", payload: 1, id: "self-1" });
    for (const member of [alice, bob]) {
      await member.waitFor("text after binaries", (e) => e.some((x) => x.event === "after"));
      const got = member.binaries();
      assert.equal(got.length, frames.length, "every frame once");
      got.forEach((frame, i) => {
        assert.ok(sameBytes(new Uint8Array(frame), frames[i]!), `frame ${i} byte-identical`);
      });
    }
    // With ?self=true the sender heard its own broadcast too, and got its ack.
    const own = alice.of("broadcast");
    assert.equal(own.length, 1);
    assert.deepEqual(own[0]?.meta && (own[0].meta as { user: string; id: string }).id, "self-1");
    assert.equal((own[0]?.meta as { user: string }).user, a.id);
    assert.deepEqual(alice.of("broadcast.ack"), [{
      type: "broadcast.ack",
      id: "self-1",
      offset: null,
    }]);
    // Without it, bob hears nothing of his own.
    bob.send(allBytes);
    bob.send({ type: "broadcast", event: "from-bob", payload: 2 });
    await alice.waitFor("bob's broadcast", (e) => e.some((x) => x.event === "from-bob"));
    assert.equal(alice.binaries().length, frames.length + 1);
    bob.send({ type: "broadcast", event: "sentinel", payload: 3 });
    await alice.waitFor("sentinel", (e) => e.some((x) => x.event === "sentinel"));
    await until(() => bob.of("broadcast").length === 1, 2000, "bob has alice's one broadcast");
    assert.equal(bob.binaries().length, frames.length, "bob heard none of his own binary");
    assert.deepEqual(bob.of("broadcast").map((e) => e.event), ["after"]);
    for (const member of [alice, bob]) await member.client.close();
  });
});

Deno.test("rooms: presence state, last write wins across tabs; leave when the last tab closes, not before", async () => {
  await withRooms({}, async (relay, secret) => {
    const [a, b, d] = [await newUser(relay), await newUser(relay), await newUser(relay)];
    for (const user of [a, b, d]) secret(user.token);
    const alice = await join(relay, "team", a);
    const bob = await join(relay, "team", b);
    const bobTab2 = await join(relay, "team", b);
    const mark = secret(marker());
    bob.send({ type: "presence", state: { name: "Bob", status: "tab1", mark } });
    await alice.waitFor("first state", (e) => e.some((x) => x.type === "presence.state"));
    bobTab2.send({ type: "presence", state: { name: "Bob", status: "tab2" } });
    await alice.waitFor(
      "second state",
      (e) => e.filter((x) => x.type === "presence.state").length === 2,
    );
    // The same state again is no change.
    bobTab2.send({ type: "presence", state: { name: "Bob", status: "tab2" } });
    bobTab2.send({ type: "broadcast", event: "sentinel", payload: 1 });
    await alice.waitFor("sentinel", (e) => e.some((x) => x.event === "sentinel"));
    assert.deepEqual(alice.of("presence.state"), [
      { type: "presence.state", user: b.id, state: { name: "Bob", status: "tab1", mark } },
      { type: "presence.state", user: b.id, state: { name: "Bob", status: "tab2" } },
    ]);
    // A newcomer sees the last write, one entry per user.
    const dave = await join(relay, "team", d);
    assert.deepEqual(
      sorted(dave.joined.presence),
      sorted([
        { user: a.id, state: null },
        { user: b.id, state: { name: "Bob", status: "tab2" } },
        { user: d.id, state: null },
      ]),
    );
    // Alice's own state.
    alice.send({ type: "presence", state: { name: "Alice" } });
    await dave.waitFor("alice's state", (e) => e.some((x) => x.type === "presence.state"));
    assert.deepEqual(dave.of("presence.state"), [
      { type: "presence.state", user: a.id, state: { name: "Alice" } },
    ]);

    // Bob's first tab goes: bob is still present.
    const bobConn = bob.joined.conn;
    await bob.client.close();
    await until(
      () => relay.events("websocket.connection.closed").some((l) => l.conn === bobConn),
      3000,
      "bob's first tab closed",
    );
    bobTab2.send({ type: "broadcast", event: "still-here", payload: 1 });
    for (const member of [alice, dave]) {
      await member.waitFor("still-here", (e) => e.some((x) => x.event === "still-here"));
      assert.deepEqual(member.of("presence.leave"), [], "no leave while a tab remains");
    }
    await bobTab2.client.close();
    for (const member of [alice, dave]) {
      await member.waitFor("bob's leave", (e) => e.some((x) => x.type === "presence.leave"));
      assert.deepEqual(member.of("presence.leave"), [{ type: "presence.leave", user: b.id }]);
    }
    for (const member of [alice, dave]) await member.client.close();
  });
});

Deno.test("rooms: POST /relay/rooms/<room> publishes as the server or a user, and refuses the rest", async (t) => {
  const env = { RELAY_ROOM_MAX_MESSAGE_BYTES: "2048" };
  await withRooms({ env }, async (relay, secret) => {
    const [a, b] = [await newUser(relay), await newUser(relay)];
    secret(a.token);
    secret(b.token);
    const alice = await join(relay, "news", a);
    const url = `http://127.0.0.1:${relay.port}/relay/rooms/news`;
    const post = (body: BodyInit | null, token?: string, init: RequestInit = {}) =>
      fetch(url, {
        method: "POST",
        body,
        ...init,
        headers: {
          "content-type": "application/json",
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...init.headers as Record<string, string> | undefined,
        },
      });
    const mark = secret(marker());
    let published = 0;

    await t.step("the secret key: 202, meta.user null", async () => {
      const body = JSON.stringify({ event: "deploy", payload: { v: 2, mark }, id: "srv-1" });
      const response = await post(body, SECRET_KEY);
      assert.equal(response.status, 202);
      assert.deepEqual(await response.json(), { offset: null });
      published++;
      await alice.waitFor("server broadcast", (e) => e.some((x) => x.event === "deploy"));
      const [got] = alice.of("broadcast");
      assert.deepEqual({ ...got, meta: { ...got!.meta as object, at: "" } }, {
        type: "broadcast",
        event: "deploy",
        payload: { v: 2, mark },
        meta: { user: null, id: "srv-1", offset: null, at: "" },
      });
      assert.ok(!Number.isNaN(Date.parse(String((got!.meta as { at: string }).at))));
      const [line] = relay.events("room.published");
      assert.deepEqual({ ...line, ts: "" }, {
        event: "room.published",
        ts: "",
        room: "news",
        user: null,
        offset: null,
        bytes: new TextEncoder().encode(body).byteLength,
      });
    });

    await t.step("a user's token: 202, meta.user is the user", async () => {
      const response = await post(
        JSON.stringify({ event: "note", payload: "from bob", ephemeral: true }),
        b.token,
      );
      assert.equal(response.status, 202);
      assert.deepEqual(await response.json(), { offset: null });
      published++;
      await alice.waitFor("bob's publish", (e) => e.some((x) => x.event === "note"));
      const got = alice.of("broadcast").find((e) => e.event === "note")!;
      assert.deepEqual([got.payload, (got.meta as { user: string }).user], ["from bob", b.id]);
      assert.deepEqual((got.meta as { id: unknown }).id, null);
      assert.equal(relay.events("room.published").at(-1)?.user, b.id);
    });

    await t.step("into a room nobody is in: 202", async () => {
      const response = await fetch(`http://127.0.0.1:${relay.port}/relay/rooms/empty-room`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET_KEY}` },
        body: JSON.stringify({ event: "e", payload: 1 }),
      });
      assert.equal(response.status, 202);
      await response.body?.cancel();
    });

    await t.step("at exactly RELAY_ROOM_MAX_MESSAGE_BYTES: 202", async () => {
      const shell = JSON.stringify({ event: "big", payload: "" });
      const body = JSON.stringify({ event: "big", payload: "x".repeat(2048 - shell.length) });
      assert.equal(body.length, 2048);
      const response = await post(body, SECRET_KEY);
      assert.equal(response.status, 202);
      await response.body?.cancel();
      published++;
      const chunked = await post(
        new Blob([body]).stream(),
        SECRET_KEY,
      );
      assert.equal(chunked.status, 202, "streamed, no content-length, at the cap");
      await chunked.body?.cancel();
      published++;
    });

    const refusals: [
      name: string,
      body: BodyInit | null,
      token: string | undefined,
      status: number,
      error: string,
    ][] = [
      [
        "the anon key",
        JSON.stringify({ event: "e", payload: mark }),
        relay.auth.anonKey,
        403,
        "forbidden",
      ],
      ["no token", JSON.stringify({ event: "e", payload: mark }), undefined, 401, "missing_token"],
      [
        "a bad token",
        JSON.stringify({ event: "e", payload: 1 }),
        "not.a.token",
        401,
        "invalid_token",
      ],
      ["not JSON", `${mark} not json`, SECRET_KEY, 400, "bad_message"],
      ["no body", null, SECRET_KEY, 400, "bad_message"],
      ["a JSON array", "[]", SECRET_KEY, 400, "bad_message"],
      ["JSON null", "null", SECRET_KEY, 400, "bad_message"],
      ["no event", JSON.stringify({ payload: 1 }), SECRET_KEY, 400, "bad_message"],
      ["a bad event", JSON.stringify({ event: "a b", payload: 1 }), SECRET_KEY, 400, "bad_message"],
      ["no payload", JSON.stringify({ event: "e" }), SECRET_KEY, 400, "bad_message"],
      [
        "a bad id",
        JSON.stringify({ event: "e", payload: 1, id: "a/b" }),
        SECRET_KEY,
        400,
        "bad_message",
      ],
      [
        "ephemeral not boolean",
        JSON.stringify({ event: "e", payload: 1, ephemeral: "no" }),
        SECRET_KEY,
        400,
        "bad_message",
      ],
      [
        "one byte over the cap",
        JSON.stringify({ event: "big", payload: "x".repeat(2048 - 27) }),
        SECRET_KEY,
        413,
        "message_too_big",
      ],
      [
        "over the cap, streamed without content-length",
        new Blob([JSON.stringify({ event: "big", payload: "y".repeat(100_000) })]).stream(),
        SECRET_KEY,
        413,
        "message_too_big",
      ],
    ];
    for (const [name, body, token, status, error] of refusals) {
      await t.step(`${name}: ${status} ${error}`, async () => {
        const response = await post(body, token);
        assert.equal(response.status, status);
        assert.match(response.headers.get("content-type") ?? "", /application\/json/);
        const answer = await response.json();
        assert.equal(answer.error, error);
        assert.equal(typeof answer.message, "string");
        if (status === 401) assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer/);
      });
    }

    await t.step("a content-length over the cap is refused before the body is read", async () => {
      const answer = await rawPost(relay.port, "/relay/rooms/news", [
        "content-length: 1000000",
      ], '{"event":"e","payload":1}');
      assert.equal(answer.status, 413);
      assert.equal(JSON.parse(answer.body).error, "message_too_big");
    });

    await t.step("a content-length under what is sent: only what it declares is read", async () => {
      const answer = await rawPost(relay.port, "/relay/rooms/news", [
        "content-length: 10",
      ], JSON.stringify({ event: "e", payload: "z".repeat(5000) }));
      assert.equal(answer.status, 400);
      assert.equal(JSON.parse(answer.body).error, "bad_message");
    });

    await t.step("chunked over the cap, by hand: 413", async () => {
      const chunk = "a".repeat(1000);
      const chunks = `{"event":"e","payload":"` + chunk.repeat(3) + `"}`;
      const body = [...chunks.matchAll(/.{1,700}/gs)].map(([c]) =>
        `${c.length.toString(16)}\r\n${c}\r\n`
      ).join("") + "0\r\n\r\n";
      const answer = await rawPost(relay.port, "/relay/rooms/news", [
        "transfer-encoding: chunked",
      ], body);
      assert.equal(answer.status, 413);
      assert.equal(JSON.parse(answer.body).error, "message_too_big");
    });

    await t.step(
      "GET without an upgrade: 426; other methods: 405 with Allow: GET, POST",
      async () => {
        const get = await fetch(url, { headers: { authorization: `Bearer ${a.token}` } });
        assert.equal(get.status, 426);
        assert.equal((await get.json()).error, "upgrade_required");
        assert.equal(get.headers.get("upgrade")?.toLowerCase(), "websocket");
        for (const method of ["PUT", "DELETE", "PATCH"]) {
          const response = await fetch(url, {
            method,
            headers: { authorization: `Bearer ${SECRET_KEY}` },
            body: method === "DELETE" ? null : "{}",
          });
          assert.equal(response.status, 405, method);
          assert.equal(response.headers.get("allow"), "GET, POST", method);
          assert.equal((await response.json()).error, "method_not_allowed");
        }
      },
    );

    // The member got exactly what was published, nothing of what was refused.
    alice.send({ type: "presence", state: {} });
    await until(() => alice.of("broadcast").length >= published, 3000, "every publish");
    await alice.waitFor("own state", (e) => e.some((x) => x.type === "presence.state"));
    assert.equal(alice.of("broadcast").length, published);
    await alice.client.close();
    for (const line of relay.events("websocket.connection.rejected")) {
      assert.equal(line.route, "rooms");
    }
  });
});

Deno.test("rooms: a member or follower admitted while the instance shuts down is told 1012 at once; nothing is left running", async () => {
  // A reconnect can reach an instance between the start of its shutdown and
  // its end (its checks were running when the shutdown began). It must not
  // join a room the instance already left, nor keep a stream or a timer alive:
  // Deno's sanitizers fail this test on any timer or resource left behind.
  await withRooms({}, async (relay, secret) => {
    const a = await newUser(relay);
    secret(a.token);
    const alice = await join(relay, "late", a);
    const stopping = relay.relay.shutdown();
    assert.equal((await alice.client.closed).code, 1012);
    await stopping;

    const late = new TestClient(relay.wsUrl("/relay/rooms/late", { jwt: a.token }));
    await late.opened;
    const closed = await late.closed;
    assert.equal(closed.code, 1012);
    assert.equal(closed.reason, "server_restarting");
    assert.ok(
      !late.events().some((event) => event.type === "room.joined"),
      "not let into a room the instance left",
    );

    const feed = await follow(relay, "late", a.token);
    assert.equal(feed.response.status, 200);
    let ended = false;
    void feed.ended.then(() => (ended = true));
    await feed.until("the stream to end", () => ended, 3000);
    assert.deepEqual(feed.events.map((e) => e.event), ["close"]);
    assert.deepEqual(JSON.parse(feed.events[0]!.data), { code: 1012, reason: "server_restarting" });

    const published = await fetch(`http://127.0.0.1:${relay.port}/relay/rooms/late`, {
      method: "POST",
      body: JSON.stringify({ event: "note", payload: 1 }),
      headers: { "content-type": "application/json", authorization: `Bearer ${SECRET_KEY}` },
    });
    assert.equal(published.status, 503);
    assert.equal((await published.json()).error, "rooms_unavailable");
    await until(() => relay.relay.connections() === 0, 2000, "the late ones to end");
  });
});

Deno.test("rooms off (the default): every room path answers 404 not_found", async () => {
  await withRelay({}, async (relay) => {
    const token = await relay.auth.signEs256();
    const requests: [string, RequestInit][] = [
      ["/relay/rooms/x", { headers: UPGRADE_HEADERS }],
      ["/relay/rooms/x/", { headers: UPGRADE_HEADERS }],
      ["/relay/rooms/x", {}],
      ["/relay/rooms/x", { method: "POST", body: '{"event":"e","payload":1}' }],
      ["/relay/rooms/x", { method: "PUT", body: "{}" }],
      ["/relay/rooms/x/events", {}],
      ["/relay/rooms/x/events", { headers: UPGRADE_HEADERS }],
      ["/relay/rooms/bad%2Fname", { headers: UPGRADE_HEADERS }],
    ];
    for (const [path, init] of requests) {
      const response = await relay.relay.handler(
        new Request(`http://relay.local${path}?jwt=${token}`, init),
      );
      assert.equal(response.status, 404, `${init.method ?? "GET"} ${path}`);
      assert.equal((await response.json()).error, "not_found");
    }
  });
});

/** A POST written by hand on raw TCP (for lying or absent content-lengths); one answer back. */
async function rawPost(
  port: number,
  path: string,
  headers: string[],
  body: string,
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = [
      `POST ${path} HTTP/1.1`,
      "host: 127.0.0.1",
      `authorization: Bearer ${SECRET_KEY}`,
      "content-type: application/json",
      "connection: close",
      ...headers,
    ].join("\r\n");
    // The relay may answer and close before reading all of it.
    await conn.write(new TextEncoder().encode(`${head}\r\n\r\n${body}`)).catch(() => 0);
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder();
    for (;;) {
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const length = Number(/content-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? -1);
        const rest = text.slice(end + 4);
        if (length >= 0 && new TextEncoder().encode(rest).byteLength >= length) {
          return { status: Number(text.split(" ")[1]), body: rest.slice(0, length) };
        }
      }
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) throw new Error(`connection ended: ${JSON.stringify(text)}`);
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
