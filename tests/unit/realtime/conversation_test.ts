import assert from "node:assert/strict";
import {
  type Change,
  Conversation,
  isRestorable,
  positionBetween,
  restorableConfig,
  type StoredItem,
  storedItemOf,
} from "../../../supabase/functions/_shared/realtime/conversation.ts";

type Json = Record<string, unknown>;

Deno.test("restorableConfig keeps what session.update takes and drops read-only fields", () => {
  const session = {
    type: "realtime",
    object: "realtime.session",
    id: "sess_1",
    model: "gpt-realtime",
    expires_at: 1_800_000_000,
    client_secret: { value: "ek_x" },
    output_modalities: ["text"],
    instructions: "Be brief.",
    tools: [{ type: "function", name: "lookup", parameters: {} }],
    tool_choice: "auto",
    max_output_tokens: "inf",
    tracing: null,
    prompt: null,
    include: null,
    truncation: "auto",
    audio: { input: { transcription: { model: "whisper-1" }, turn_detection: null } },
  };
  assert.deepEqual(restorableConfig(session), {
    type: "realtime",
    output_modalities: ["text"],
    instructions: "Be brief.",
    tools: [{ type: "function", name: "lookup", parameters: {} }],
    tool_choice: "auto",
    max_output_tokens: "inf",
    tracing: null,
    prompt: null,
    truncation: "auto",
    audio: { input: { transcription: { model: "whisper-1" }, turn_detection: null } },
  });
  const table: [unknown, Json | null][] = [
    [{ instructions: "x" }, { type: "realtime", instructions: "x" }],
    [{ type: "transcription", audio: {} }, { type: "transcription", audio: {} }],
    [{ id: "sess", object: "realtime.session" }, { type: "realtime" }],
    [null, null],
    ["session", null],
    [[1], null],
  ];
  for (const [input, expected] of table) assert.deepEqual(restorableConfig(input), expected);
});

Deno.test("storedItemOf keeps text, transcripts, function calls and outputs; no audio or images", () => {
  const table: [Json, StoredItem, boolean][] = [
    [
      {
        id: "i1",
        type: "message",
        role: "user",
        content: [{ type: "input_text", text: "hi" }],
      },
      { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] },
      true,
    ],
    [
      {
        id: "i2",
        type: "message",
        role: "user",
        content: [{ type: "input_audio", audio: "AAAA", transcript: null }],
      },
      { type: "message", role: "user", content: [{ type: "input_audio", transcript: null }] },
      false,
    ],
    [
      {
        id: "i3",
        type: "message",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_audio", transcript: "Hello." }],
      },
      {
        type: "message",
        role: "assistant",
        content: [{ type: "output_audio", transcript: "Hello." }],
      },
      true,
    ],
    [
      {
        type: "message",
        role: "user",
        content: [{ type: "input_image", image_url: "data:image/png;base64,AAAA" }, {
          type: "input_text",
          text: "what is this?",
        }],
      },
      {
        type: "message",
        role: "user",
        content: [{ type: "omitted" }, { type: "input_text", text: "what is this?" }],
      },
      true,
    ],
    [
      { type: "message", role: "user", content: [{ type: "input_image", image_url: "x" }] },
      { type: "message", role: "user", content: [{ type: "omitted" }] },
      false,
    ],
    [
      { type: "message", role: "system", content: [{ type: "input_text", text: "" }] },
      { type: "message", role: "system", content: [{ type: "input_text", text: "" }] },
      false,
    ],
    [
      {
        type: "function_call",
        call_id: "call_1",
        name: "lookup",
        arguments: '{"q":1}',
        status: "completed",
      },
      { type: "function_call", call_id: "call_1", name: "lookup", arguments: '{"q":1}' },
      true,
    ],
    [
      { type: "function_call_output", call_id: "call_1", output: "42" },
      { type: "function_call_output", call_id: "call_1", output: "42" },
      true,
    ],
    [{ type: "mcp_call", name: "x" }, { type: "other", of: "mcp_call" }, false],
    [{ type: "message", role: "developer", content: [] }, { type: "other", of: "message" }, false],
    [{ type: "function_call_output" }, { type: "other", of: "function_call_output" }, false],
    [{}, { type: "other", of: "unknown" }, false],
  ];
  for (const [item, stored, restorable] of table) {
    assert.deepEqual(storedItemOf(item), stored, JSON.stringify(item));
    assert.equal(isRestorable(stored), restorable, JSON.stringify(item));
  }
});

Deno.test("positionBetween splits the gap, appends and prepends a step away, and says when doubles run out", () => {
  assert.equal(positionBetween(), 1024);
  assert.equal(positionBetween(1024), 2048);
  assert.equal(positionBetween(undefined, 1024), 0);
  assert.equal(positionBetween(1024, 2048), 1536);
  assert.equal(positionBetween(1, 1 + Number.EPSILON), null);
});

/** Server events, as OpenAI sends them. */
const user = (id: string, text: string) => ({
  id,
  type: "message",
  role: "user",
  content: [{ type: "input_text", text }],
});
const assistant = (id: string, transcript: string) => ({
  id,
  type: "message",
  role: "assistant",
  status: "completed",
  content: [{ type: "output_audio", transcript }],
});
const added = (item: Json, previous: string | null) => ({
  type: "conversation.item.added",
  previous_item_id: previous,
  item: { ...item, status: "in_progress", content: [] },
});
const done = (item: Json, previous: string | null) => ({
  type: "conversation.item.done",
  previous_item_id: previous,
  item,
});

function run(conversation: Conversation, events: Json[]): Change[] {
  return events.flatMap((event) => conversation.apply(event));
}

Deno.test("Conversation records config from session.updated only when it changes", () => {
  const conversation = new Conversation();
  const session = { type: "realtime", id: "sess_1", instructions: "A" };
  const changes = run(conversation, [
    { type: "session.created", session },
    { type: "session.updated", session },
    { type: "session.updated", session: { ...session, expires_at: 5 } },
    { type: "session.updated", session: { ...session, instructions: "B" } },
  ]);
  assert.deepEqual(changes, [
    { kind: "config", config: { type: "realtime", instructions: "A" } },
    { kind: "config", config: { type: "realtime", instructions: "B" } },
  ]);
});

Deno.test("Conversation stores finished items in conversation order, inserting after previous_item_id", () => {
  const conversation = new Conversation();
  const changes = run(conversation, [
    added(user("u1", "one"), null),
    done(user("u1", "one"), null),
    added(assistant("a1", "reply one"), "u1"),
    // the user spoke while a1 was in progress: u2 goes after a1, in its own place
    done(user("u2", "two"), "a1"),
    done(assistant("a1", "reply one"), "u1"),
    // inserted between u1 and a1 by a client's previous_item_id
    done(user("x", "inserted"), "u1"),
    // no predecessor: the start
    done(user("r", "root"), null),
  ]);
  assert.deepEqual(conversation.order().map((o) => o.id), ["r", "u1", "x", "a1", "u2"]);
  const positions = new Map(conversation.order().map((o) => [o.id, o.position]));
  const stored = changes.filter((c) => c.kind === "item");
  assert.deepEqual(stored.map((c) => c.id), ["u1", "u2", "a1", "x", "r"]);
  for (const change of stored) assert.equal(change.position, positions.get(change.id));
  const sorted = [...positions.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
  assert.deepEqual(sorted, ["r", "u1", "x", "a1", "u2"]);
});

Deno.test("Conversation adds input transcripts that come before or after the item is done", () => {
  const audio = (id: string) => ({
    id,
    type: "message",
    role: "user",
    status: "completed",
    content: [{ type: "input_audio", transcript: null }],
  });
  const transcribed = (id: string, transcript: string) => ({
    type: "conversation.item.input_audio_transcription.completed",
    item_id: id,
    content_index: 0,
    transcript,
  });
  const conversation = new Conversation();
  const changes = run(conversation, [
    done(audio("v1"), null),
    transcribed("v1", "spoken one"),
    added(audio("v2"), "v1"),
    transcribed("v2", "spoken two"),
    done(audio("v2"), "v1"),
    transcribed("unknown", "ignored"),
    { ...transcribed("v1", "wrong index"), content_index: 3 },
  ]);
  const items = changes.map((c) => c.kind === "item" ? [c.id, c.item] : c.kind);
  const heard = (t: string | null) => ({
    type: "message",
    role: "user",
    content: [{ type: "input_audio", transcript: t }],
  });
  assert.deepEqual(items, [
    ["v1", heard(null)],
    ["v1", heard("spoken one")],
    ["v2", heard("spoken two")],
  ]);
});

Deno.test("Conversation applies deletions and truncations (truncated audio loses its transcript)", () => {
  const conversation = new Conversation();
  const changes = run(conversation, [
    done(user("u1", "one"), null),
    done(assistant("a1", "a long answer"), "u1"),
    done(user("u2", "two"), "a1"),
    added(user("p", "pending"), "u2"),
    { type: "conversation.item.truncated", item_id: "a1", content_index: 0, audio_end_ms: 400 },
    { type: "conversation.item.truncated", item_id: "a1", content_index: 0, audio_end_ms: 400 },
    { type: "conversation.item.deleted", item_id: "u2" },
    // never done: nothing stored, nothing to delete
    { type: "conversation.item.deleted", item_id: "p" },
    { type: "conversation.item.deleted", item_id: "nope" },
  ]);
  assert.deepEqual(changes.slice(3), [
    {
      kind: "item",
      id: "a1",
      position: 2048,
      item: {
        type: "message",
        role: "assistant",
        content: [{ type: "output_audio", transcript: null }],
      },
    },
    { kind: "delete", id: "u2" },
  ]);
  assert.deepEqual(conversation.order().map((o) => o.id), ["u1", "a1"]);
});

Deno.test("Conversation from stored state knows replayed ids, stores nothing again, and appends after them", () => {
  const restored = [
    { id: "old1", position: 1024, item: storedItemOf(user("old1", "hello")) },
    { id: "old2", position: 2048, item: { type: "other", of: "mcp_call" } as const },
    { id: "old3", position: 3072, item: storedItemOf(assistant("old3", "hi there")) },
  ];
  const conversation = new Conversation(
    restored,
    new Map([["old1", "relay_a"], ["old3", "relay_b"]]),
    { type: "realtime", instructions: "A" },
  );
  const changes = run(conversation, [
    { type: "session.updated", session: { type: "realtime", instructions: "A" } },
    done({ ...user("relay_a", "hello") }, null),
    done({ ...assistant("relay_b", "hi there") }, "relay_a"),
    done(user("new1", "next"), "relay_b"),
    { type: "conversation.item.deleted", item_id: "relay_a" },
  ]);
  assert.deepEqual(changes, [
    {
      kind: "item",
      id: "new1",
      position: 4096,
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "next" }] },
    },
    { kind: "delete", id: "old1" },
  ]);
  assert.deepEqual(conversation.order().map((o) => o.id), ["old2", "old3", "new1"]);
});

Deno.test("Conversation renumbers every stored item when an insertion finds no room", () => {
  const conversation = new Conversation();
  run(conversation, [done(user("a", "a"), null), done(user("z", "z"), "a")]);
  let changes: Change[] = [];
  // Each insertion right after "a" halves the gap; doubles run out after ~60.
  for (let i = 0; i < 80 && changes.length <= 1; i++) {
    changes = conversation.apply(done(user(`m${i}`, "m"), "a"));
  }
  assert.ok(changes.length > 2, "a renumbering rewrote every item");
  const order = conversation.order();
  assert.deepEqual(order.map((o) => o.position), order.map((_, i) => (i + 1) * 1024));
  assert.deepEqual(
    changes.map((c) => c.kind === "item" ? c.position : -1).sort((x, y) => x - y),
    order.map((o) => o.position),
  );
});

Deno.test("Conversation snapshot holds the config and every stored item, for a restart", () => {
  const conversation = new Conversation();
  run(conversation, [
    { type: "session.updated", session: { type: "realtime", instructions: "A" } },
    done(user("u1", "one"), null),
    added(user("p", "pending"), "u1"),
  ]);
  assert.deepEqual(conversation.snapshot(), [
    { kind: "config", config: { type: "realtime", instructions: "A" } },
    {
      kind: "item",
      id: "u1",
      position: 1024,
      item: { type: "message", role: "user", content: [{ type: "input_text", text: "one" }] },
    },
  ]);
});
