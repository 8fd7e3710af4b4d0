import assert from "node:assert/strict";
import {
  ackText,
  broadcastText,
  isRoomName,
  MAX_PRESENCE_STATE_BYTES,
  type MemberIntent,
  presenceText,
  problemText,
  readBroadcast,
  readMemberText,
  readOnlyProblem,
  roomJoinedText,
} from "../../../supabase/functions/_shared/rooms/wire.ts";

/** What a refusal must say: its `param` and the message's own id (CONTRACT.md "Rooms"). */
type Refused = { param: string | null; eventId: string | null };

function assertRefused(intent: MemberIntent, want: Refused, name: string): void {
  assert.equal(intent.kind, "problem", `${name}: refused`);
  if (intent.kind !== "problem") return;
  assert.equal(intent.code, "room_bad_message", name);
  assert.equal(intent.param, want.param, `${name}: param`);
  assert.equal(intent.eventId, want.eventId, `${name}: event_id`);
  assert.ok(intent.message.length > 10, `${name}: a sentence`);
}

const name64 = "e".repeat(64);
const name65 = "e".repeat(65);

Deno.test("readMemberText refuses every malformed shape with the right param and event_id", () => {
  const table: [name: string, text: string, want: Refused][] = [
    ["not JSON", "hello", { param: null, eventId: null }],
    ["truncated JSON", '{"type":"broadcast"', { param: null, eventId: null }],
    ["empty text", "", { param: null, eventId: null }],
    ["an array", '[{"type":"broadcast","event":"e","payload":1}]', { param: null, eventId: null }],
    ["null", "null", { param: null, eventId: null }],
    ["a string", '"broadcast"', { param: null, eventId: null }],
    ["a number", "42", { param: null, eventId: null }],
    ["no type", '{"event":"e","payload":1}', { param: "type", eventId: null }],
    ["unknown type", '{"type":"shout","event":"e","payload":1}', { param: "type", eventId: null }],
    ["type not a string", '{"type":1}', { param: "type", eventId: null }],
    ["type in another case", '{"type":"Broadcast","event":"e","payload":1}', {
      param: "type",
      eventId: null,
    }],
    ["missing event", '{"type":"broadcast","payload":1}', { param: "event", eventId: null }],
    ["empty event", '{"type":"broadcast","event":"","payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event with a space", '{"type":"broadcast","event":"a b","payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event with a slash", '{"type":"broadcast","event":"a/b","payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event not ASCII", '{"type":"broadcast","event":"caf\u00e9","payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event with a trailing newline", '{"type":"broadcast","event":"a\\n","payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event a number", '{"type":"broadcast","event":7,"payload":1}', {
      param: "event",
      eventId: null,
    }],
    ["event of 65 characters", `{"type":"broadcast","event":"${name65}","payload":1}`, {
      param: "event",
      eventId: null,
    }],
    ["bad event keeps the good id", '{"type":"broadcast","id":"m1","event":"","payload":1}', {
      param: "event",
      eventId: "m1",
    }],
    ["empty id", '{"type":"broadcast","id":"","event":"e","payload":1}', {
      param: "id",
      eventId: null,
    }],
    ["id with a space", '{"type":"broadcast","id":"a b","event":"e","payload":1}', {
      param: "id",
      eventId: null,
    }],
    ["id of 65 characters", `{"type":"broadcast","id":"${name65}","event":"e","payload":1}`, {
      param: "id",
      eventId: null,
    }],
    ["id a number", '{"type":"broadcast","id":5,"event":"e","payload":1}', {
      param: "id",
      eventId: null,
    }],
    ["missing payload", '{"type":"broadcast","id":"m2","event":"e"}', {
      param: "payload",
      eventId: "m2",
    }],
    ["ephemeral a string", '{"type":"broadcast","event":"e","payload":1,"ephemeral":"yes"}', {
      param: "ephemeral",
      eventId: null,
    }],
    ["ephemeral a number", '{"type":"broadcast","id":"m3","event":"e","payload":1,"ephemeral":1}', {
      param: "ephemeral",
      eventId: "m3",
    }],
    ["presence without state", '{"type":"presence"}', { param: "state", eventId: null }],
    ["presence state null", '{"type":"presence","state":null}', { param: "state", eventId: null }],
    ["presence state an array", '{"type":"presence","state":[1]}', {
      param: "state",
      eventId: null,
    }],
    ["presence state a string", '{"type":"presence","state":"away"}', {
      param: "state",
      eventId: null,
    }],
    ["presence state a number", '{"type":"presence","state":3}', {
      param: "state",
      eventId: null,
    }],
  ];
  for (const [name, text, want] of table) assertRefused(readMemberText(text), want, name);
});

Deno.test("readMemberText accepts the contract's broadcast shapes, payload re-serialised JSON-equal", () => {
  const payloads: unknown[] = [
    null,
    0,
    -1.5e300,
    "",
    'text with "quotes", \\ and \u2028 and \u{1f600}',
    [],
    [1, [2, [3]]],
    {},
    { nested: { deep: [true, false, null], "": "empty key" } },
  ];
  for (const payload of payloads) {
    const intent = readMemberText(JSON.stringify({ type: "broadcast", event: "e", payload }));
    assert.equal(intent.kind, "broadcast", JSON.stringify(payload));
    if (intent.kind !== "broadcast") continue;
    assert.deepEqual(JSON.parse(intent.payloadJson), payload);
    assert.deepEqual([intent.event, intent.id, intent.ephemeral], ["e", null, false]);
  }
  const table: [name: string, message: Record<string, unknown>, want: Record<string, unknown>][] = [
    ["event of 64 characters", { event: name64 }, { event: name64 }],
    ["every allowed character", { event: "Az09_.:-" }, { event: "Az09_.:-" }],
    ["an id of 64 characters", { id: name64 }, { id: name64 }],
    ["an id of one character", { id: "x" }, { id: "x" }],
    ["ephemeral true", { ephemeral: true }, { ephemeral: true }],
    ["ephemeral false", { ephemeral: false }, { ephemeral: false }],
  ];
  for (const [name, fields, want] of table) {
    const intent = readMemberText(
      JSON.stringify({ type: "broadcast", event: "e", payload: { n: 1 }, ...fields }),
    );
    assert.equal(intent.kind, "broadcast", name);
    if (intent.kind !== "broadcast") continue;
    const got = { event: intent.event, id: intent.id, ephemeral: intent.ephemeral };
    assert.deepEqual(got, { event: "e", id: null, ephemeral: false, ...want }, name);
    assert.equal(intent.payloadJson, '{"n":1}', name);
  }
});

Deno.test("readMemberText bounds a presence state at 1024 bytes of JSON, counted in UTF-8", () => {
  assert.equal(MAX_PRESENCE_STATE_BYTES, 1024);
  // `{"s":""}` is 8 bytes; the rest is the string's content.
  const state = (content: string) => JSON.stringify({ type: "presence", state: { s: content } });
  const table: [name: string, content: string, accepted: boolean][] = [
    ["ASCII, exactly 1024 bytes", "x".repeat(1016), true],
    ["ASCII, 1025 bytes", "x".repeat(1017), false],
    ["2-byte characters, exactly 1024 bytes", "\u00e9".repeat(508), true],
    ["2-byte characters, 1025 bytes", "\u00e9".repeat(508) + "x", false],
    ["3-byte characters under 1024 UTF-16 units but 1025 bytes", "\u20ac".repeat(339), false],
    ["3-byte characters, exactly 1024 bytes", "\u20ac".repeat(338) + "xx", true],
    ["4-byte characters, exactly 1024 bytes", "\u{1f600}".repeat(254), true],
    ["4-byte characters, 1025 bytes", "\u{1f600}".repeat(254) + "x", false],
    // Escapes count as sent: a newline is two bytes of JSON (`\n`).
    ["escapes counted as JSON, 1024 bytes", "\n".repeat(508), true],
    ["escapes counted as JSON, 1026 bytes", "\n".repeat(509), false],
  ];
  for (const [name, content, accepted] of table) {
    const intent = readMemberText(state(content));
    if (accepted) {
      assert.equal(intent.kind, "presence", name);
      if (intent.kind !== "presence") continue;
      assert.equal(new TextEncoder().encode(intent.stateJson).byteLength <= 1024, true, name);
      assert.deepEqual(JSON.parse(intent.stateJson), { s: content }, name);
    } else assertRefused(intent, { param: "state", eventId: null }, name);
  }
  const empty = readMemberText('{"type":"presence","state":{}}');
  assert.deepEqual(empty, { kind: "presence", stateJson: "{}" });
});

Deno.test("readBroadcast reads a server's publish body with the member's rules", () => {
  assert.deepEqual(readBroadcast({ event: "news", payload: [1], id: "p1", ephemeral: true }), {
    kind: "broadcast",
    event: "news",
    payloadJson: "[1]",
    id: "p1",
    ephemeral: true,
  });
  // `type` plays no part in a publish body.
  assert.equal(readBroadcast({ event: "news", payload: null }).kind, "broadcast");
  const table: [name: string, body: Record<string, unknown>, want: Refused][] = [
    ["empty body", {}, { param: "event", eventId: null }],
    ["no payload", { event: "news" }, { param: "payload", eventId: null }],
    ["bad event", { event: "no way", payload: 1 }, { param: "event", eventId: null }],
    ["bad id", { event: "news", payload: 1, id: "a/b" }, { param: "id", eventId: null }],
    ["ephemeral not boolean", { event: "news", payload: 1, id: "k", ephemeral: "true" }, {
      param: "ephemeral",
      eventId: "k",
    }],
  ];
  for (const [name, body, want] of table) assertRefused(readBroadcast(body), want, name);
});

Deno.test("isRoomName takes 1-100 characters of [A-Za-z0-9_.:-] and nothing else", () => {
  const table: [string, boolean][] = [
    ["a", true],
    ["x".repeat(100), true],
    ["x".repeat(101), false],
    ["", false],
    ["public:lobby", true],
    ["user:7d2c1a3e-0000-4000-8000-000000000000:notes", true],
    ["A-Z_a-z.0-9:", true],
    // `.` is one of the allowed characters, so `..` is a name by the contract's
    // definition; a bare `..` path segment never reaches the relay as a room
    // (the URL parser resolves it first: see rooms_hostile_test.ts).
    ["..", true],
    ["a..b", true],
    ["../echo", false],
    ["a/b", false],
    ["%2F", false],
    ["a%2Fb", false],
    ["%2e%2e", false],
    ["caf\u00e9", false],
    ["\u0430", false], // Cyrillic a
    ["\uff41", false], // fullwidth a
    ["\u{1f600}", false],
    ["a b", false],
    ["a\n", false],
    ["\na", false],
    ["a\u0000", false],
    ["a?b", false],
    ["a#b", false],
    ["a+b", false],
  ];
  for (const [name, valid] of table) assert.equal(isRoomName(name), valid, JSON.stringify(name));
});

Deno.test("broadcastText parses back to the contract's broadcast with meta", () => {
  const at = new Date(1_700_000_000_000).toISOString();
  const payload = { text: "hi \u{1f600}", n: [1, 2] };
  const fromUser = JSON.parse(
    broadcastText("chat.message", JSON.stringify(payload), {
      user: "u1",
      id: "m1",
      offset: null,
      at,
    }),
  );
  assert.deepEqual(fromUser, {
    type: "broadcast",
    event: "chat.message",
    payload,
    meta: { user: "u1", id: "m1", offset: null, at },
  });
  const fromServer = JSON.parse(
    broadcastText("e", "null", { user: null, id: null, offset: 7, at }),
  );
  assert.deepEqual(fromServer, {
    type: "broadcast",
    event: "e",
    payload: null,
    meta: { user: null, id: null, offset: 7, at },
  });
  assert.ok(!Number.isNaN(Date.parse(fromServer.meta.at)), "meta.at is ISO 8601");
});

Deno.test("ackText, roomJoinedText and presenceText parse back to the contract's shapes", () => {
  assert.deepEqual(JSON.parse(ackText("m1", null)), {
    type: "broadcast.ack",
    id: "m1",
    offset: null,
  });
  assert.deepEqual(JSON.parse(ackText("m2", 12)), { type: "broadcast.ack", id: "m2", offset: 12 });
  const joined = (offset: number | null, recovered: boolean | null) =>
    JSON.parse(roomJoinedText({
      room: "public:lobby",
      user: "u1",
      conn: "c1",
      access: "read",
      presence: [
        { user: "u1", stateJson: "null" },
        { user: "u2", stateJson: '{"name":"Bo","status":"away"}' },
      ],
      offset,
      recovered,
    }));
  const presence = [
    { user: "u1", state: null },
    { user: "u2", state: { name: "Bo", status: "away" } },
  ];
  const base = {
    type: "room.joined",
    room: "public:lobby",
    user: "u1",
    conn: "c1",
    access: "read",
    presence,
  };
  assert.deepEqual(joined(null, null), { ...base, offset: null, recovered: null });
  assert.deepEqual(joined(41, true), { ...base, offset: 41, recovered: true });
  assert.deepEqual(joined(0, false), { ...base, offset: 0, recovered: false });
  const empty = JSON.parse(roomJoinedText({
    room: "r",
    user: "u",
    conn: "c",
    access: "write",
    presence: [],
    offset: null,
    recovered: null,
  }));
  assert.deepEqual(empty.presence, []);
  assert.equal(empty.access, "write");

  const table: [Parameters<typeof presenceText>[0], unknown][] = [
    [{ type: "presence.join", user: "u2", stateJson: "null" }, {
      type: "presence.join",
      user: "u2",
      state: null,
    }],
    [{ type: "presence.join", user: "u2", stateJson: '{"a":1}' }, {
      type: "presence.join",
      user: "u2",
      state: { a: 1 },
    }],
    [{ type: "presence.leave", user: "u2" }, { type: "presence.leave", user: "u2" }],
    [{ type: "presence.state", user: 'u"3', stateJson: '{"s":"\\n"}' }, {
      type: "presence.state",
      user: 'u"3',
      state: { s: "\n" },
    }],
  ];
  for (const [change, want] of table) assert.deepEqual(JSON.parse(presenceText(change)), want);
});

Deno.test("problemText is the contract's in-band refusal, with a unique relay_ event_id", () => {
  const refusal = readMemberText('{"type":"broadcast","id":"m9","event":"e"}');
  assert.equal(refusal.kind, "problem");
  if (refusal.kind !== "problem") return;
  const parsed = JSON.parse(problemText(refusal));
  assert.match(parsed.event_id, /^relay_/);
  assert.deepEqual({ ...parsed, event_id: "", error: { ...parsed.error, message: "" } }, {
    type: "error",
    event_id: "",
    error: {
      type: "invalid_request_error",
      code: "room_bad_message",
      message: "",
      param: "payload",
      event_id: "m9",
    },
  });
  const readOnly = JSON.parse(problemText(readOnlyProblem("m1")));
  assert.deepEqual([readOnly.error.code, readOnly.error.param, readOnly.error.event_id], [
    "room_read_only",
    null,
    "m1",
  ]);
  assert.equal(readOnlyProblem().eventId, null);
  const ids = new Set(Array.from({ length: 100 }, () => JSON.parse(problemText(refusal)).event_id));
  assert.equal(ids.size, 100);
});
