/**
 * The metering feature's hooks while the database is away (fail-open): what
 * it reads from upstream events, what it charges, when it closes, and what
 * it refuses from the client. The database here is one that never answers
 * (the state the feature must survive); everything it writes to a real one
 * is tested in tests/integration/metering_test.ts.
 */
import { conversationContext } from "../../helpers/context.ts";
import assert from "node:assert/strict";
import { type Database, DatabaseError } from "../../../supabase/functions/_shared/db/client.ts";
import { isRefusal } from "../../../supabase/functions/_shared/features/feature.ts";
import { meteringFeature } from "../../../supabase/functions/_shared/features/metering.ts";
import type { CloseFrame } from "../../../supabase/functions/_shared/relay/close_codes.ts";
import type {
  ConnectionHooks,
  ConnectionLink,
} from "../../../supabase/functions/_shared/relay/hooks.ts";
import { parseSettings } from "../../../supabase/functions/_shared/settings.ts";
import { createTelemetry } from "../../../supabase/functions/_shared/telemetry/log.ts";
import type { Message } from "../../../supabase/functions/_shared/upstream/upstream.ts";

const away: Database = {
  run: () => Promise.reject(new DatabaseError("failed", "ECONNREFUSED: the database is away")),
  close: () => Promise.resolve(),
};

function setup(env: Record<string, string> = {}) {
  const settings = parseSettings({
    SUPABASE_URL: "http://127.0.0.1:1",
    SUPABASE_PUBLISHABLE_KEY: "sb_publishable_test",
    OPENAI_REALTIME_MODELS: "gpt-realtime,gpt-realtime-mini",
    RELAY_METERING: "on",
    RELAY_DATABASE_URL: "postgresql://127.0.0.1:1/postgres",
    RELAY_METERING_FAIL_OPEN: "true",
    ...env,
  });
  const lines: string[] = [];
  const telemetry = createTelemetry("info", (line) => lines.push(line));
  const feature = meteringFeature(settings, { telemetry, now: Date.now, database: away });
  const events = (name: string) =>
    lines.map((line) => JSON.parse(line)).filter((line) => line.event === name);
  return { feature, events };
}

/** A link that records what the feature asked of the connection. */
function recordingLink() {
  const sent: Message[] = [];
  const ends: CloseFrame[] = [];
  const link: ConnectionLink = {
    conn: "c-test",
    user: "u-test",
    model: "gpt-realtime",
    sendToClient: (data) => void sent.push(data),
    sendToUpstream: () => {},
    holdClient: () => {},
    releaseClient: () => {},
    end: (frame) => void ends.push(frame),
    ending: () => ends.length > 0,
  };
  return { link, sent, ends };
}

async function admit(
  feature: ReturnType<typeof setup>["feature"],
  user: string = crypto.randomUUID(),
) {
  const answer = await feature.admit!(conversationContext({
    conn: crypto.randomUUID(),
    user,
    model: "gpt-realtime",
    session: null,
  }));
  assert.ok(!isRefusal(answer), "admitted (fail-open)");
  return answer.hooks as ConnectionHooks;
}

const done = (id: string, usage: Record<string, unknown>) =>
  JSON.stringify({ type: "response.done", event_id: "e", response: { id, usage } });

Deno.test("meteringFeature prices transcriptions with the model session.updated names", async () => {
  const { feature, events } = setup();
  const hooks = await admit(feature);
  const { link } = recordingLink();
  hooks.started!(link);
  const session = (transcription: unknown) =>
    JSON.stringify({
      type: "session.updated",
      event_id: "e",
      session: { type: "realtime", audio: { input: { transcription } } },
    });
  const transcribed = (usage: unknown) =>
    JSON.stringify({
      type: "conversation.item.input_audio_transcription.completed",
      event_id: "e",
      item_id: "item_1",
      content_index: 0,
      transcript: "hi",
      usage,
    });
  const tokens = { type: "tokens", total_tokens: 26, input_tokens: 17, output_tokens: 9 };
  for (
    const message of [
      session({ model: "whisper-1" }),
      transcribed({ type: "duration", seconds: 10 }),
    ]
  ) {
    assert.equal(hooks.fromUpstream!(message, link), message, "passed on unchanged");
  }
  hooks.fromUpstream!(session({ model: "gpt-4o-mini-transcribe" }), link);
  hooks.fromUpstream!(transcribed(tokens), link);
  hooks.fromUpstream!(session(null), link);
  hooks.fromUpstream!(transcribed(tokens), link);
  const usage = events("usage");
  assert.deepEqual(usage.map((line) => [line.model, line.cost_micros]), [
    ["whisper-1", 1000], // 10 s at 0.006 USD/min
    ["gpt-4o-mini-transcribe", 96], // 17*3 + 9*5
    ["gpt-realtime", 688], // transcription off again: the session model's prices, 17*32 + 9*16
  ]);
  hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
  await feature.close!();
});

Deno.test("meteringFeature closes 4002 after the crossing response is delivered, and refuses response.create in band", async () => {
  const { feature, events } = setup({ RELAY_BUDGET_USD: "0.001" });
  const user = crypto.randomUUID();
  const hooks = await admit(feature, user);
  const { link, sent, ends } = recordingLink();
  hooks.started!(link);
  const small = { input_tokens: 10, output_tokens: 5 }; // 10*4 + 5*16 = 120 micros
  const big = { input_tokens: 100, output_tokens: 100 }; // 400 + 1600 = 2000 micros
  const first = done("resp_1", small);
  assert.equal(hooks.fromUpstream!(first, link), first);
  await Promise.resolve();
  assert.deepEqual(ends, [], "within the 1000-micro budget");
  const crossing = done("resp_2", big);
  assert.equal(hooks.fromUpstream!(crossing, link), crossing, "the crossing response is delivered");
  assert.deepEqual(ends, [], "not closed before the client has it");
  await Promise.resolve();
  assert.deepEqual(ends, [{ code: 4002, reason: "budget_exceeded" }]);
  const [exceeded] = events("budget.exceeded");
  assert.equal(exceeded.spent_micros, 2120);
  assert.equal(exceeded.limit_micros, 1000);
  // Anything still arriving from the client: no response is created.
  const create = '{"type":"response.create","event_id":"evt_7"}';
  assert.equal(hooks.fromClient!(create, link), null);
  const refusal = JSON.parse(sent.at(-1) as string);
  assert.equal(refusal.type, "error");
  assert.equal(refusal.error.code, "budget_exceeded");
  assert.equal(refusal.error.event_id, "evt_7");
  assert.match(refusal.event_id, /^relay_/);
  const append = '{"type":"input_audio_buffer.append","audio":"AAAA"}';
  assert.equal(
    hooks.fromClient!(append, link),
    append,
    "other events are not the budget's to stop",
  );
  hooks.ended!({ frame: { code: 4002, reason: "budget_exceeded" }, by: "relay" });
  // The database is still away: a new connection is refused on what this instance knows.
  const again = await feature.admit!(conversationContext({
    conn: crypto.randomUUID(),
    user,
    model: "gpt-realtime",
    session: null,
  }));
  assert.ok(isRefusal(again));
  assert.equal(again.status, 429);
  assert.equal(again.error, "budget_exceeded");
  assert.ok(Number(again.headers["retry-after"]) >= 1);
  await feature.close!();
  const failed = events("metering.write_failed").at(-1);
  assert.equal(failed.pending, 2, "the unwritten usage is reported, not silently dropped");
});

Deno.test("meteringFeature answers 503 metering_unavailable without fail-open", async () => {
  const { feature, events } = setup({ RELAY_METERING_FAIL_OPEN: "false" });
  const answer = await feature.admit!(conversationContext({
    conn: crypto.randomUUID(),
    user: crypto.randomUUID(),
    model: "gpt-realtime",
    session: null,
  }));
  assert.ok(isRefusal(answer));
  assert.equal(answer.status, 503);
  assert.equal(answer.error, "metering_unavailable");
  assert.match(events("metering.unavailable")[0].error, /the database is away/);
  await feature.close!();
});

Deno.test("meteringFeature refuses a token whose sub is no Supabase user id", async () => {
  const { feature } = setup();
  const answer = await feature.admit!(conversationContext({
    conn: crypto.randomUUID(),
    user: "not-a-uuid",
    model: "gpt-realtime",
    session: null,
  }));
  assert.ok(isRefusal(answer));
  assert.equal(answer.error, "forbidden");
  await feature.close!();
});
