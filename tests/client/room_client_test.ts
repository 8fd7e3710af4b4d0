/**
 * The room client's pure decisions (client/relay_client.js, CONTRACT.md
 * "Rooms" and "Room history, recovery and live updates over SSE"): what to do
 * on each close, where a join continues from, the order and deduplication of
 * what arrives, ids and the join's URL, and the options it refuses.
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  joinRoom,
  MESSAGE_ID_PATTERN,
  newMessageId,
  type RoomBroadcast,
  roomCloseDecision,
  RoomOrder,
  roomTarget,
} from "../../client/relay_client.js";
import { closeNotice } from "../../supabase/functions/_shared/realtime/close_notice.ts";
import { RELAY_CLOSE } from "../../supabase/functions/_shared/relay/close_codes.ts";
import { closeNoticeOf } from "../../client/relay_client.js";

/** A stored (offset) or offset-less broadcast as the relay sends it. */
function b(offset: number | null, user = "u1", id: string | null = null): RoomBroadcast {
  return {
    type: "broadcast",
    event: "chat",
    payload: { offset, id },
    meta: { user, id, offset, at: "2026-01-01T00:00:00.000Z" },
  };
}

const offsets = (messages: RoomBroadcast[]) => messages.map((m) => m.meta.offset);

Deno.test("roomCloseDecision: the v2 rules, and 1011 history_unavailable reconnects", () => {
  const cases: [number, string, boolean][] = [
    [1012, "server_restarting", true],
    [1001, "", true],
    [1006, "", true],
    [0, "", true], // Deno's lost connection
    [4001, "token_expired", true],
    [1011, "history_unavailable", true],
    [1011, "internal_error", false],
    [1008, "policy_violation", false],
    [1008, "rate_limited", false],
    [1009, "message_too_big", false],
    [1013, "buffer_full", false],
    [1000, "normal_closure", false],
  ];
  for (const [code, reason, reconnect] of cases) {
    const decision = roomCloseDecision({ opened: true, code, reason, reconnecting: true });
    assert.equal(decision.reconnect, reconnect, `${code} ${reason}`);
  }
});

Deno.test("roomCloseDecision: a bare 1006 is decided by the relay's own notice", () => {
  const notice = (frame: { code: number; reason: string }, by: "relay" | "upstream") =>
    closeNoticeOf(JSON.parse(closeNotice(frame, by)!));
  const cases: [{ code: number; reason: string }, "relay" | "upstream", boolean, string][] = [
    [RELAY_CLOSE.serverRestarting, "relay", true, "server_restarting"],
    [RELAY_CLOSE.tokenExpired, "relay", true, "token_expired"],
    [RELAY_CLOSE.policyViolation, "relay", false, "policy_violation"],
    [RELAY_CLOSE.bufferFull, "relay", false, "buffer_full"],
    // The member ends itself on a failed history read: the loop says "upstream".
    [{ code: 1011, reason: "history_unavailable" }, "upstream", true, "history_unavailable"],
  ];
  for (const [frame, by, reconnect, why] of cases) {
    const decision = roomCloseDecision({
      opened: true,
      code: 1006,
      reason: "",
      notice: notice(frame, by),
      reconnecting: true,
    });
    assert.deepEqual([decision.reconnect, decision.why, decision.code], [
      reconnect,
      why,
      frame.code,
    ]);
  }
});

Deno.test("roomCloseDecision: a refused first join ends; a refused rejoin is retried", () => {
  assert.deepEqual(
    roomCloseDecision({ opened: false, code: 1006, reason: "" }),
    { reconnect: false, why: "refused", code: 1006, reason: "" },
  );
  assert.equal(
    roomCloseDecision({ opened: false, code: 1006, reason: "", reconnecting: true }).reconnect,
    true,
  );
});

Deno.test("roomTarget: /rooms/<room> under the URL, since or last, self, the token", () => {
  const base = { url: "wss://p.supabase.co/functions/v1/relay", room: "public:lobby", token: "T" };
  assert.deepEqual(roomTarget(base), {
    url: "wss://p.supabase.co/functions/v1/relay/rooms/public:lobby",
    protocols: ["realtime", "jwt-T"],
  });
  assert.equal(
    roomTarget({ ...base, url: base.url + "/", since: 0, last: 5, self: true }).url,
    "wss://p.supabase.co/functions/v1/relay/rooms/public:lobby?since=0&self=true",
    "since wins over last",
  );
  assert.equal(roomTarget({ ...base, last: 50 }).url, `${base.url}/rooms/public:lobby?last=50`);
  assert.deepEqual(roomTarget({ ...base, tokenIn: "query" }), {
    url: `${base.url}/rooms/public:lobby?jwt=T`,
    protocols: [],
  });
  assert.deepEqual(roomTarget({ ...base, tokenIn: "header" }).headers, {
    authorization: "Bearer T",
  });
});

Deno.test("newMessageId: 16 random characters the relay accepts as an id", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = newMessageId();
    assert.match(id, MESSAGE_ID_PATTERN);
    assert.equal(id.length, 16);
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
  assert.equal(newMessageId((n) => new Uint8Array(n)), "AAAAAAAAAAAAAAAA");
});

Deno.test("RoomOrder: in order, a gap waits and fills, duplicates dropped", () => {
  const order = new RoomOrder({ gapMs: 1000 });
  order.joined({ offset: 10, recovered: null, since: null });
  assert.equal(order.offset, 10);
  assert.deepEqual(offsets(order.receive(b(11), 0)), [11]);
  assert.deepEqual(offsets(order.receive(b(13), 0)), [], "13 waits for 12");
  assert.equal(order.waiting, 1);
  assert.equal(order.deadline, 1000);
  assert.deepEqual(offsets(order.receive(b(13), 1)), [], "a second 13 is dropped");
  assert.deepEqual(offsets(order.receive(b(12), 2)), [12, 13]);
  assert.deepEqual(offsets(order.receive(b(12), 3)), [], "delivered already");
  assert.deepEqual(offsets(order.receive(b(5), 3)), [], "from before the join");
  assert.equal(order.offset, 13);
  assert.equal(order.since, 13);
  assert.equal(order.deadline, null);
});

Deno.test("RoomOrder: a gap that never fills is skipped after gapMs; a late one still comes", () => {
  const order = new RoomOrder({ gapMs: 1000 });
  order.joined({ offset: 0, recovered: null, since: null });
  order.receive(b(1), 0);
  assert.deepEqual(offsets(order.receive(b(4), 100)), []);
  assert.deepEqual(offsets(order.receive(b(6), 200)), []);
  assert.deepEqual(offsets(order.due(1099)), []);
  assert.deepEqual(offsets(order.due(1100)), [4], "2 and 3 skipped; 6 still waits for 5");
  assert.equal(order.since, 1, "the next join asks again from before the first skipped");
  assert.deepEqual(offsets(order.due(1200)), [6]);
  assert.deepEqual(offsets(order.receive(b(3), 1300)), [3], "late beats never");
  assert.deepEqual(offsets(order.receive(b(3), 1300)), [], "but once");
  assert.equal(order.since, 1);
  assert.deepEqual(offsets(order.receive(b(2), 1400)), [2]);
  assert.equal(order.since, 4, "5 is still missing");
  assert.deepEqual(offsets(order.receive(b(5), 1500)), [5]);
  assert.equal(order.since, 6);
});

Deno.test("RoomOrder: an own offset (an ack, without self) fills the order", () => {
  const order = new RoomOrder();
  order.joined({ offset: 3, recovered: null, since: null });
  assert.deepEqual(offsets(order.receive(b(5), 0)), []);
  assert.deepEqual(offsets(order.fill(4, 0)), [5]);
  assert.deepEqual(offsets(order.fill(4, 0)), []);
  assert.equal(order.offset, 5);
});

Deno.test("RoomOrder: offset-less broadcasts go at once, each (user, id) once within the window", () => {
  const order = new RoomOrder({ dedupeWindow: 2 });
  order.joined({ offset: null, recovered: null, since: null });
  assert.equal(order.receive(b(null, "u1", "a"), 0).length, 1);
  assert.equal(order.receive(b(null, "u1", "a"), 0).length, 0, "a repeat");
  assert.equal(order.receive(b(null, "u2", "a"), 0).length, 1, "another user's a");
  assert.equal(order.receive(b(null, "u1"), 0).length, 1, "no id: nothing to compare");
  assert.equal(order.receive(b(null, "u1"), 0).length, 1);
  assert.equal(order.receive(b(null, "u1", "c"), 0).length, 1);
  assert.equal(order.receive(b(null, "u1", "a"), 0).length, 1, "out of the window");
  assert.equal(order.offset, 0);
});

Deno.test("RoomOrder: where joins continue from (since), per room.joined", () => {
  // First join without since: the room's latest offset, or 0 for an empty room / no history.
  const fresh = new RoomOrder();
  assert.equal(fresh.since, null);
  fresh.joined({ offset: null, recovered: null, since: null });
  assert.equal(fresh.since, 0);
  fresh.joined({ offset: null, recovered: null, since: 0 }); // a relay without history
  assert.equal(fresh.since, 0);

  // Recovered: the replay continues from since, duplicates of what was delivered dropped.
  const recovered = new RoomOrder();
  recovered.joined({ offset: 7, recovered: null, since: null });
  recovered.receive(b(8), 0);
  recovered.joined({ offset: 10, recovered: true, since: 8 });
  assert.deepEqual(offsets(recovered.receive(b(8), 0)), []);
  assert.deepEqual(offsets(recovered.receive(b(9), 0)), [9]);

  // An app's stored offset on the first join.
  const stored = new RoomOrder();
  stored.joined({ offset: 50, recovered: true, since: 40 });
  assert.equal(stored.offset, 40);
  assert.deepEqual(offsets(stored.receive(b(41), 0)), [41]);

  // The oldest were trimmed: the replay's first offset starts the order at once.
  const trimmed = new RoomOrder({ gapMs: 1000 });
  trimmed.joined({ offset: 5, recovered: null, since: null });
  trimmed.joined({ offset: 300, recovered: false, since: 5 });
  assert.deepEqual(offsets(trimmed.receive(b(201), 0)), [201]);
  assert.deepEqual(offsets(trimmed.receive(b(202), 0)), [202]);
  assert.equal(trimmed.since, 202);

  // The history was reset (since ahead of the latest): offsets start again.
  const reset = new RoomOrder();
  reset.joined({ offset: 90, recovered: null, since: null });
  reset.joined({ offset: 2, recovered: false, since: 90 });
  assert.equal(reset.offset, 2);
  assert.deepEqual(offsets(reset.receive(b(3), 0)), [3]);
  const emptied = new RoomOrder();
  emptied.joined({ offset: 90, recovered: null, since: null });
  emptied.joined({ offset: null, recovered: false, since: 90 });
  assert.deepEqual(offsets(emptied.receive(b(1), 0)), [1]);

  // ?last=: the backlog's first offset starts the order.
  const backlog = new RoomOrder();
  backlog.joined({ offset: 100, recovered: null, since: null, last: true });
  assert.equal(backlog.since, null);
  assert.deepEqual(offsets(backlog.receive(b(91), 0)), [91]);
  assert.deepEqual(offsets(backlog.receive(b(92), 0)), [92]);
  const emptyBacklog = new RoomOrder();
  emptyBacklog.joined({ offset: null, recovered: null, since: null, last: true });
  assert.deepEqual(offsets(emptyBacklog.receive(b(1), 0)), [1]);
});

Deno.test("RoomOrder: any arrival order of offsets, with repeats, is delivered 1..n once, in order", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }).chain((n) =>
        fc.tuple(
          fc.constant(n),
          fc.shuffledSubarray([...Array(n).keys()].map((i) => i + 1), { minLength: n }),
          fc.array(fc.integer({ min: 1, max: n }), { maxLength: 20 }),
        )
      ),
      ([n, shuffled, repeats]) => {
        const order = new RoomOrder({ gapMs: 1_000_000 });
        order.joined({ offset: 0, recovered: null, since: null });
        const out: (number | null)[] = [];
        const arrivals = [...shuffled];
        for (const r of repeats) arrivals.splice(r % (arrivals.length + 1), 0, r);
        for (const o of arrivals) out.push(...offsets(order.receive(b(o), 0)));
        assert.deepEqual(out, [...Array(n).keys()].map((i) => i + 1));
      },
    ),
  );
});

Deno.test("joinRoom refuses bad options at once, naming them", () => {
  const ok = { url: "ws://127.0.0.1:1/relay", room: "public:lobby", getToken: () => "t" };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...ok, room: "no spaces" }, /room/],
    [{ ...ok, room: "" }, /room/],
    [{ ...ok, url: "https://x/relay" }, /ws:\/\//],
    [{ ...ok, getToken: "t" }, /getToken/],
    [{ ...ok, since: -1 }, /since/],
    [{ ...ok, last: 1.5 }, /last/],
    [{ ...ok, tokenIn: "cookie" }, /tokenIn/],
    [{ ...ok, gapMs: -5 }, /gapMs/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => joinRoom(options as never), message);
  }
});

Deno.test("RelayRoom.send checks the event and id, and is closed after close()", async () => {
  const room = joinRoom({
    url: "ws://127.0.0.1:1/relay",
    room: "r",
    getToken: () => "t",
    maxAttempts: 0,
    maxHeldBytes: 200,
  });
  assert.throws(() => room.send("bad event", {}), /event/);
  assert.throws(() => room.send("chat", {}, { id: "x".repeat(65) }), /id/);
  assert.throws(() => room.send("chat", undefined), /payload/);
  assert.equal(room.send("chat", { n: 1 }, { id: "m-1" }), "m-1");
  assert.throws(() => room.send("chat", {}, { id: "m-1" }), /pending/);
  assert.match(room.send("chat", {}), MESSAGE_ID_PATTERN);
  assert.throws(
    () => room.send("chat", "x".repeat(200)),
    (e: Error & { code?: string }) => e.code === "hold_full",
  );
  assert.deepEqual(room.pending.messages, 2);
  const closed = await room.close();
  assert.deepEqual([closed.why, closed.unsent, closed.room], ["client", 2, "r"]);
  assert.throws(() => room.send("chat", {}), (e: Error & { code?: string }) => e.code === "closed");
});
