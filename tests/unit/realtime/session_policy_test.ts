import assert from "node:assert/strict";
import { GA_CLIENT_EVENTS } from "../../../supabase/functions/_shared/realtime/client_events.ts";
import {
  parseSessionPolicy,
  transcriptionPolicy,
} from "../../../supabase/functions/_shared/realtime/session_policy.ts";

Deno.test("parseSessionPolicy reads a full policy", () => {
  const { policy, problems } = parseSessionPolicy(JSON.stringify({
    session: { type: "realtime", instructions: "x", max_output_tokens: 512 },
    locked: ["instructions", "audio.output.voice"],
    max_output_tokens: 1024,
    allowed_events: ["input_audio_buffer.append", "response.create"],
  }));
  assert.deepEqual(problems, []);
  assert.deepEqual(policy, {
    session: { type: "realtime", instructions: "x", max_output_tokens: 512 },
    locked: ["instructions", "audio.output.voice"],
    maxOutputTokens: 1024,
    allowedEvents: ["input_audio_buffer.append", "response.create"],
    transcriptionSession: null,
    transcriptionLocked: ["instructions", "audio.output.voice"],
  });
  assert.ok(Object.isFrozen(policy) && Object.isFrozen(policy!.session));
});

Deno.test("parseSessionPolicy applies the contract's defaults", async (t) => {
  const cases: [string, string | undefined, unknown][] = [
    ["unset", undefined, null],
    ["blank", "  ", null],
    ["empty object", "{}", {
      session: null,
      locked: [],
      maxOutputTokens: null,
      allowedEvents: GA_CLIENT_EVENTS,
      transcriptionSession: null,
      transcriptionLocked: [],
    }],
    [
      "locked defaults to the session's keys, type excepted",
      '{"session":{"type":"realtime","instructions":"x","tools":[]}}',
      {
        session: { type: "realtime", instructions: "x", tools: [] },
        locked: ["instructions", "tools"],
        maxOutputTokens: null,
        allowedEvents: GA_CLIENT_EVENTS,
        transcriptionSession: null,
        transcriptionLocked: [],
      },
    ],
    [
      "an explicit empty lock list",
      '{"session":{"type":"realtime","instructions":"x"},"locked":[]}',
      {
        session: { type: "realtime", instructions: "x" },
        locked: [],
        maxOutputTokens: null,
        allowedEvents: GA_CLIENT_EVENTS,
        transcriptionSession: null,
        transcriptionLocked: [],
      },
    ],
    [
      "a transcription session pinned, its keys locked on transcription connections",
      '{"transcription_session":{"type":"transcription","audio":{"input":{"transcription":{"model":"gpt-4o-transcribe"}}}}}',
      {
        session: null,
        locked: [],
        maxOutputTokens: null,
        allowedEvents: GA_CLIENT_EVENTS,
        transcriptionSession: {
          type: "transcription",
          audio: { input: { transcription: { model: "gpt-4o-transcribe" } } },
        },
        transcriptionLocked: ["audio"],
      },
    ],
  ];
  for (const [name, raw, policy] of cases) {
    await t.step(name, () => {
      const parsed = parseSessionPolicy(raw);
      assert.deepEqual(parsed.problems, []);
      assert.deepEqual(parsed.policy, policy);
    });
  }
});

Deno.test("parseSessionPolicy names each problem", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "{session:", /not JSON/],
    ["not an object", "[]", /expected a JSON object/],
    ["a duplicate key", '{"locked":["tools"],"locked":[]}', /"locked" appears twice/],
    [
      "a duplicate key inside the session",
      '{"session":{"type":"realtime","voice":"a","voice":"b"}}',
      /"voice" appears twice/,
    ],
    ["an unknown key", '{"lock":["tools"]}', /unknown key "lock"/],
    ["session not an object", '{"session":"x"}', /"session" is not an object/],
    ["session without a type", '{"session":{"instructions":"x"}}', /needs "type": "realtime"/],
    ["session with an unknown type", '{"session":{"type":"chat"}}', /needs "type": "realtime"/],
    ["locked not a list", '{"locked":"tools"}', /"locked" is not an array/],
    [
      "a locked path with a blank segment",
      '{"locked":["audio..voice"]}',
      /locked path "audio..voice" is not a dotted name/,
    ],
    [
      "a locked path with a space",
      '{"locked":["tool choice"]}',
      /locked path "tool choice" is not a dotted name/,
    ],
    ["an empty locked path", '{"locked":[""]}', /locked path "" is not a dotted name/],
    [
      "a locked path with an index",
      '{"locked":["tools.0"]}',
      /locked path "tools.0" is not a dotted name/,
    ],
    ["a cap of zero", '{"max_output_tokens":0}', /"max_output_tokens" is not a whole number >= 1/],
    [
      "a cap of inf",
      '{"max_output_tokens":"inf"}',
      /"max_output_tokens" is not a whole number >= 1/,
    ],
    [
      "a fractional cap",
      '{"max_output_tokens":1.5}',
      /"max_output_tokens" is not a whole number >= 1/,
    ],
    [
      "a pinned value over the cap",
      '{"session":{"type":"realtime","max_output_tokens":"inf"},"max_output_tokens":100}',
      /over "max_output_tokens" \(100\)/,
    ],
    [
      "allowed_events not a list",
      '{"allowed_events":"response.create"}',
      /"allowed_events" is not an array/,
    ],
    ["an empty event name", '{"allowed_events":[""]}', /"allowed_events" is not an array/],
  ];
  for (const [name, raw, problem] of cases) {
    await t.step(name, () => {
      const parsed = parseSessionPolicy(raw);
      assert.equal(parsed.policy, null);
      assert.ok(parsed.problems.length > 0, "a problem is reported");
      assert.ok(parsed.problems.every((p) => p.startsWith("RELAY_SESSION_POLICY: ")));
      assert.ok(
        parsed.problems.some((p) => problem.test(p)),
        `${name}: ${JSON.stringify(parsed.problems)}`,
      );
    });
  }
});

Deno.test("parseSessionPolicy refuses a transcription_session that is not one", () => {
  for (
    const raw of [
      '{"transcription_session":{"type":"realtime"}}',
      '{"transcription_session":{}}',
      '{"transcription_session":"gpt-4o-transcribe"}',
    ]
  ) {
    const { policy, problems } = parseSessionPolicy(raw);
    assert.equal(policy, null, raw);
    assert.match(
      problems.join("\n"),
      /"transcription_session" is not an object with "type": "transcription"/,
    );
  }
});

Deno.test("transcriptionPolicy pins and locks the transcription session in place of the conversation's", () => {
  const { policy } = parseSessionPolicy(JSON.stringify({
    session: { type: "realtime", instructions: "x" },
    transcription_session: { type: "transcription", include: [] },
  }));
  const transcription = transcriptionPolicy(policy!);
  assert.deepEqual(transcription.session, { type: "transcription", include: [] });
  assert.deepEqual(transcription.locked, ["include"]);
  assert.deepEqual(policy!.locked, ["instructions"], "the conversation's own lock is unchanged");
});
