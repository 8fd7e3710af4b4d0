import assert from "node:assert/strict";
import type {
  RestoredItem,
  StoredItem,
} from "../../../supabase/functions/_shared/realtime/conversation.ts";
import { parseSessionPolicy } from "../../../supabase/functions/_shared/realtime/session_policy.ts";
import {
  configUnderPolicy,
  planReplay,
  replayItem,
  ReplayWatch,
  resumedEvent,
} from "../../../supabase/functions/_shared/realtime/replay.ts";

type Json = Record<string, unknown>;

function policyOf(json: Record<string, unknown>) {
  const parsed = parseSessionPolicy(JSON.stringify(json));
  assert.deepEqual(parsed.problems, []);
  return parsed.policy!;
}

const counter = () => {
  let n = 0;
  return () => `relay_t_${++n}`;
};

Deno.test("replayItem turns audio into its transcript and keeps calls and outputs as they were", () => {
  const table: [StoredItem, Json][] = [
    [
      { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] },
      { id: "r", type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] },
    ],
    [
      {
        type: "message",
        role: "user",
        content: [{ type: "input_audio", transcript: "spoken" }, { type: "omitted" }, {
          type: "input_audio",
          transcript: null,
        }],
      },
      { id: "r", type: "message", role: "user", content: [{ type: "input_text", text: "spoken" }] },
    ],
    [
      {
        type: "message",
        role: "assistant",
        content: [{ type: "output_audio", transcript: "Hello." }, {
          type: "output_text",
          text: " More.",
        }],
      },
      {
        id: "r",
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello." }, { type: "output_text", text: " More." }],
      },
    ],
    [
      { type: "message", role: "system", content: [{ type: "input_text", text: "Be kind." }] },
      {
        id: "r",
        type: "message",
        role: "system",
        content: [{ type: "input_text", text: "Be kind." }],
      },
    ],
    [
      { type: "function_call", call_id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' },
      {
        id: "r",
        type: "function_call",
        call_id: "call_1",
        name: "weather",
        arguments: '{"city":"Oslo"}',
      },
    ],
    [
      { type: "function_call", call_id: null, name: "f", arguments: "" },
      { id: "r", type: "function_call", name: "f", arguments: "" },
    ],
    [
      { type: "function_call_output", call_id: "call_1", output: '{"c":21}' },
      { id: "r", type: "function_call_output", call_id: "call_1", output: '{"c":21}' },
    ],
  ];
  for (const [stored, expected] of table) assert.deepEqual(replayItem(stored, "r"), expected);
  assert.throws(() => replayItem({ type: "other", of: "mcp_call" }, "r"), TypeError);
});

const items: RestoredItem[] = [
  {
    id: "u1",
    position: 1,
    item: { type: "message", role: "user", content: [{ type: "input_text", text: "one" }] },
  },
  {
    id: "v1",
    position: 2,
    item: { type: "message", role: "user", content: [{ type: "input_audio", transcript: null }] },
  },
  {
    id: "a1",
    position: 3,
    item: {
      type: "message",
      role: "assistant",
      content: [{ type: "output_audio", transcript: "reply" }],
    },
  },
  { id: "m1", position: 4, item: { type: "other", of: "mcp_call" } },
];

Deno.test("planReplay sends config, the pin again, each restorable item in order, then the sentinel", () => {
  const plan = planReplay({
    config: { type: "realtime", instructions: "stored" },
    items,
    // Pinned but not locked: a client may change it, so may a restore; the pin still goes last.
    policy: policyOf({
      session: { type: "realtime", instructions: "pinned" },
      locked: ["tools"],
    }),
    newId: counter(),
  });
  const sent = plan.messages.map((m) => JSON.parse(m));
  assert.deepEqual(sent, [
    {
      type: "session.update",
      event_id: "relay_t_1",
      session: { type: "realtime", instructions: "stored" },
    },
    {
      type: "session.update",
      event_id: "relay_t_2",
      session: { type: "realtime", instructions: "pinned" },
    },
    {
      type: "conversation.item.create",
      event_id: "relay_t_4",
      item: {
        id: "relay_t_3",
        type: "message",
        role: "user",
        content: [{ type: "input_text", text: "one" }],
      },
    },
    {
      type: "conversation.item.create",
      event_id: "relay_t_6",
      item: {
        id: "relay_t_5",
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text: "reply" }],
      },
    },
    { type: "input_audio_buffer.clear", event_id: "relay_t_7" },
  ]);
  assert.deepEqual([...plan.replayed], [["u1", "relay_t_3"], ["a1", "relay_t_5"]]);
  assert.equal(plan.items, 2);
  assert.equal(plan.skipped, 2);
});

Deno.test("configUnderPolicy leaves out what the policy refuses a client's session.update", () => {
  const policy = policyOf({
    session: { type: "realtime", instructions: "pinned" },
    locked: ["instructions", "audio.output.voice", "tools"],
    max_output_tokens: 1000,
  });
  const table: [Record<string, unknown>, Record<string, unknown> | null][] = [
    [{ type: "realtime", output_modalities: ["text"] }, {
      type: "realtime",
      output_modalities: ["text"],
    }],
    [{ type: "realtime", instructions: "old pin", tools: [] }, { type: "realtime" }],
    [
      {
        type: "realtime",
        audio: { input: { transcription: { model: "whisper-1" } }, output: { voice: "ash" } },
      },
      { type: "realtime", audio: { input: { transcription: { model: "whisper-1" } }, output: {} } },
    ],
    [{ type: "realtime", max_output_tokens: 500 }, { type: "realtime", max_output_tokens: 500 }],
    [{ type: "realtime", max_output_tokens: "inf" }, { type: "realtime" }],
    [{ type: "realtime", max_output_tokens: 4096, instructions: "x" }, { type: "realtime" }],
  ];
  for (const [config, expected] of table) {
    assert.deepEqual(configUnderPolicy(config, policy), expected, JSON.stringify(config));
  }
  // Refused as a whole (here: session.update is not a client's to send): nothing restored.
  const strict = policyOf({ allowed_events: ["response.create"] });
  assert.equal(configUnderPolicy({ type: "realtime" }, strict), null);
});

Deno.test("planReplay under a policy: locked fields stripped, system messages left out while instructions are locked", () => {
  const policy = policyOf({ session: { type: "realtime", instructions: "pinned" } });
  const plan = planReplay({
    config: { type: "realtime", instructions: "from before the lock", output_modalities: ["text"] },
    items: [
      {
        id: "sys",
        position: 1,
        item: { type: "message", role: "system", content: [{ type: "input_text", text: "Obey." }] },
      },
      ...items.slice(0, 1),
    ],
    policy,
    newId: counter(),
  });
  const sent = plan.messages.map((m) => JSON.parse(m));
  assert.deepEqual(sent.map((e) => [e.type, e.session ?? e.item?.role ?? null]), [
    ["session.update", { type: "realtime", output_modalities: ["text"] }],
    ["session.update", { type: "realtime", instructions: "pinned" }],
    ["conversation.item.create", "user"],
    ["input_audio_buffer.clear", null],
  ]);
  assert.deepEqual([plan.items, plan.skipped], [1, 1]);
});

Deno.test("planReplay keeps the newest items within maxBytes and counts the older ones as skipped", () => {
  const many: RestoredItem[] = Array.from({ length: 10 }, (_, i) => ({
    id: `s${i}`,
    position: i,
    item: {
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: `${i}`.repeat(50) }],
    },
  }));
  const all = planReplay({ config: null, items: many, policy: null, newId: counter() });
  const sizes = all.messages.slice(0, -1).map((m) => new TextEncoder().encode(m).byteLength);
  // Room for exactly the last three.
  const budget = sizes.slice(-3).reduce((a, b) => a + b, 0);
  const table: [maxBytes: number, kept: string[]][] = [
    [Infinity, many.map((m) => m.id)],
    [budget, ["s7", "s8", "s9"]],
    [budget - 1, ["s8", "s9"]],
    [0, []],
  ];
  for (const [maxBytes, kept] of table) {
    const plan = planReplay({
      config: null,
      items: many,
      policy: null,
      newId: counter(),
      maxBytes,
    });
    assert.deepEqual([...plan.replayed.keys()], kept, `maxBytes ${maxBytes}`);
    assert.equal(plan.items, kept.length);
    assert.equal(plan.skipped, 10 - kept.length);
    assert.equal(plan.messages.length, kept.length + 1);
    const texts = plan.messages.slice(0, -1).map((m) => JSON.parse(m).item.content[0].text[0]);
    assert.deepEqual(texts, kept.map((id) => id.slice(1)), "in order");
  }
});

Deno.test("planReplay without stored config sends no session.update (the policy's pin stands)", () => {
  const plan = planReplay({
    config: null,
    items: items.slice(0, 1),
    policy: policyOf({ session: { type: "realtime", instructions: "pinned" } }),
    newId: counter(),
  });
  assert.deepEqual(plan.messages.map((m) => JSON.parse(m).type), [
    "conversation.item.create",
    "input_audio_buffer.clear",
  ]);
  assert.equal(plan.configEvents.size, 0);
});

Deno.test("ReplayWatch hides the replay's answers, counts refused items as skipped, ends on the sentinel", () => {
  const plan = planReplay({
    config: { type: "realtime" },
    items,
    policy: null,
    newId: counter(),
  });
  const watch = new ReplayWatch(plan);
  const [user, assistant] = [...plan.replayed.values()];
  const assistantEvent = [...plan.itemEvents.keys()][1]!;
  const configEvent = [...plan.configEvents][0]!;
  const table: [Json, hide: boolean, finished: boolean][] = [
    [{ type: "session.created", session: {} }, true, false],
    [{ type: "session.updated", session: {} }, true, false],
    [{ type: "error", error: { event_id: configEvent, code: "unknown_parameter" } }, true, false],
    [{ type: "conversation.item.added", item: { id: user } }, true, false],
    [{ type: "conversation.item.done", item: { id: user } }, true, false],
    [{ type: "conversation.item.added", item: { id: "item_other" } }, false, false],
    [{ type: "error", error: { event_id: assistantEvent, code: "invalid_value" } }, true, false],
    [{ type: "error", error: { event_id: "evt_client", code: "x" } }, false, false],
    [{ type: "error", error: { event_id: null, code: "server_error" } }, false, false],
    [{ type: "rate_limits.updated" }, false, false],
    [{ type: "input_audio_buffer.cleared" }, true, true],
    // after the end, nothing more is hidden
    [{ type: "session.updated", session: {} }, false, false],
    [{ type: "conversation.item.done", item: { id: assistant } }, false, false],
  ];
  for (const [event, hide, finished] of table) {
    assert.deepEqual(
      watch.see(event.type as string, event),
      { hide, finished },
      JSON.stringify(event),
    );
  }
  assert.equal(watch.configFailed, true);
  assert.deepEqual([...watch.failed], ["a1"]);
  assert.deepEqual(watch.counts, { items: 1, skipped: 3 });
});

Deno.test("ReplayWatch also ends on an error answering the sentinel", () => {
  const plan = planReplay({ config: null, items: [], policy: null, newId: counter() });
  const watch = new ReplayWatch(plan);
  const verdict = watch.see("error", { type: "error", error: { event_id: plan.sentinel } });
  assert.deepEqual(verdict, { hide: true, finished: true });
  assert.deepEqual(watch.counts, { items: 0, skipped: 0 });
});

Deno.test("resumedEvent is the contract's relay.session.resumed", () => {
  assert.deepEqual(JSON.parse(resumedEvent("abc", 3, 1)), {
    type: "relay.session.resumed",
    session: "abc",
    items: 3,
    skipped: 1,
  });
});
