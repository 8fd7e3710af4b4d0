/**
 * CONTRACT.md "Transcription sessions and live captions" (the transcription
 * half), over real sockets: the real handler in front of the OpenAI stand-in,
 * asserting on the URL and the messages the stand-in RECEIVED. The metering
 * and resume parts run on a throwaway PostgreSQL (skipped without one, as the
 * other database tests are).
 */
import assert from "node:assert/strict";
import { BUILT_IN_PRICES } from "../../supabase/functions/_shared/metering/prices.ts";
import { priceTranscription } from "../../supabase/functions/_shared/metering/cost.ts";
import { meteringEnv, spendOf, usageRows } from "../helpers/metering.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import {
  type RelayUnderTest,
  type StartOptions,
  startRelay,
  UPGRADE_HEADERS,
  withRelay,
} from "../helpers/relay_harness.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { encodeBase64, tone, withTranscript } from "../stand_ins/realtime_audio.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`transcription tests on PostgreSQL skipped: ${skip}`);

type Event = { type: string; [key: string]: unknown };
type RelayError = {
  type: string;
  code: string;
  message: string;
  param: string | null;
  event_id: string | null;
  close_code?: number;
};

const COMPLETED = "conversation.item.input_audio_transcription.completed";
const DELTA = "conversation.item.input_audio_transcription.delta";
const MODEL_PARAM = "session.audio.input.transcription.model";

/** Opens the OpenAI route as `user` (a new one by default) with `query`; waits for the upgrade. */
async function open(
  relay: RelayUnderTest,
  query: Record<string, string>,
  user: string = crypto.randomUUID(),
): Promise<TestClient> {
  const jwt = await relay.auth.signEs256({ sub: user });
  const client = new TestClient(relay.wsUrl("/relay", { ...query, jwt }));
  await client.opened;
  return client;
}

/** What upstream connection `index` received, text as is, binary as `<binary n>`. */
function received(relay: RelayUnderTest, index: number): string[] {
  return (relay.openai.connections[index]?.received ?? []).map((m) =>
    typeof m.data === "string" ? m.data : `<binary ${m.data.byteLength}>`
  );
}

/** Waits for the first event of `type` at or after message `from`. */
async function nextEvent(client: TestClient, type: string, from = 0): Promise<Event> {
  await until(
    () => client.events().slice(from).some((e) => e.type === type),
    5000,
    `a ${type} event`,
  );
  return client.events().slice(from).find((e) => e.type === type)!;
}

function refusalsOf(client: TestClient): RelayError[] {
  return client.events()
    .filter((e) => e.type === "error" && (e.error as RelayError).code === "relay_policy_violation")
    .map((e) => e.error as RelayError);
}

/** A transcription `session.update` choosing `model` (as OpenAI documents it). */
function chooseModel(model: unknown, eventId?: string): string {
  return JSON.stringify({
    type: "session.update",
    ...(eventId === undefined ? {} : { event_id: eventId }),
    session: { type: "transcription", audio: { input: { transcription: { model } } } },
  });
}

/**
 * One spoken turn: audio the stand-in hears as `said`, appended in two
 * chunks, then committed; resolves to the `completed` event the client got.
 */
async function speak(client: TestClient, said: string): Promise<Event> {
  const before = client.events().filter((e) => e.type === COMPLETED).length;
  const audio = withTranscript(said, tone(400));
  const half = Math.floor(audio.byteLength / 2);
  client.socket.send(JSON.stringify({
    type: "input_audio_buffer.append",
    audio: encodeBase64(audio.subarray(0, half)),
  }));
  client.socket.send(JSON.stringify({
    type: "input_audio_buffer.append",
    audio: encodeBase64(audio.subarray(half)),
  }));
  client.socket.send('{"type":"input_audio_buffer.commit"}');
  await until(
    () => client.events().filter((e) => e.type === COMPLETED).length > before,
    5000,
    `the transcript of "${said}"`,
  );
  return client.events().filter((e) => e.type === COMPLETED)[before]!;
}

/** The deltas of `itemId`'s input transcription, in order. */
function deltasOf(client: TestClient, itemId: unknown): string[] {
  return client.events()
    .filter((e) => e.type === DELTA && e.item_id === itemId)
    .map((e) => e.delta as string);
}

/** The upgrade answer for `query` on the OpenAI route (refusals come as JSON). */
async function handshake(
  relay: RelayUnderTest,
  query: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(`http://127.0.0.1:${relay.port}/relay`);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  url.searchParams.set("jwt", await relay.auth.signEs256({ sub: crypto.randomUUID() }));
  const response = await fetch(url, { headers: UPGRADE_HEADERS });
  const text = await response.text();
  return { status: response.status, body: text === "" ? {} : JSON.parse(text) };
}

/** Runs `body` against a relay whose OpenAI stand-in speaks the Realtime events. */
async function withRealtimeRelay(
  env: Record<string, string>,
  body: (relay: RelayUnderTest) => Promise<void>,
): Promise<void> {
  await withRelay({ env }, async (relay) => {
    relay.openai.behaviour = { kind: "realtime" };
    await body(relay);
  });
}

Deno.test("transcription route: ?intent=transcription opens a transcription session upstream, with no model, end to end", async () => {
  await withRealtimeRelay({}, async (relay) => {
    for (
      const [i, query] of [
        { intent: "transcription" },
        // A ?model= beside it is ignored: with a model OpenAI would open a conversation.
        { intent: "transcription", model: "gpt-realtime" },
      ].entries()
    ) {
      const client = await open(relay, query);
      const created = await nextEvent(client, "session.created");
      assert.equal(client.events()[0]!.type, "session.created", "session.created comes first");
      const session = created.session as Record<string, unknown>;
      assert.equal(session.type, "transcription");
      assert.equal("model" in session, false, "a transcription session has no model");
      const upstream = relay.openai.connections[i]!;
      assert.equal(upstream.searchParams.get("intent"), "transcription");
      assert.equal(upstream.searchParams.get("model"), null, "no model upstream");
      assert.deepEqual([...upstream.searchParams.keys()], ["intent"], "nothing else either");
      assert.equal(upstream.sessionType, "transcription");

      const update = chooseModel("gpt-4o-mini-transcribe", `evt_${i}`);
      client.socket.send(update);
      const updated = await nextEvent(client, "session.updated");
      const transcription = ((updated.session as { audio: { input: Record<string, unknown> } })
        .audio.input.transcription) as { model: string };
      assert.equal(transcription.model, "gpt-4o-mini-transcribe");

      const said = "Captions for everyone in the room.";
      const completed = await speak(client, said);
      assert.equal(completed.transcript, said);
      const deltas = deltasOf(client, completed.item_id);
      assert.ok(deltas.length >= 3, "the transcript comes as deltas first");
      assert.equal(deltas.join(""), said);
      assert.equal((completed.usage as { type: string }).type, "tokens");
      assert.ok(
        !client.events().some((e) => e.type.startsWith("response.")),
        "a transcription session never answers",
      );
      // Byte for byte what the client sent, nothing added.
      assert.equal(received(relay, i)[0], update);
      assert.equal(received(relay, i).length, 4, "the update, two appends, the commit");
      assert.equal(upstream.realtime?.responses.length, 0);
      await client.close();
    }
    assert.equal(relay.events("policy.refused").length, 0);
  });
});

Deno.test("transcription route: without a policy the relay stays byte-transparent on a transcription session", async () => {
  await withRelay({}, async (relay) => {
    relay.openai.behaviour = { kind: "echo" };
    const client = await open(relay, { intent: "transcription" });
    const sent = [
      // Listed model, odd spacing and number spelling: passed as written.
      '{ "type" : "session.update", "session" : { "type":"transcription", "audio" : { "input" : ' +
      '{ "transcription" : { "model" : "gpt-4o-transcribe", "prompt":"caf\\u00e9" } } } }, "n": 1.0e2 }',
      '{"type":"anything.at.all","n":1e400}',
      "not json",
      '{"type":"input_audio_buffer.append","audio":"AAAA"}',
    ];
    for (const text of sent) client.socket.send(text);
    client.socket.send(new Uint8Array([0, 1, 2]));
    await client.waitForMessages(5);
    assert.deepEqual(received(relay, 0), [...sent, "<binary 3>"], "no pin, nothing rewritten");
    assert.deepEqual(client.messages.slice(0, 4), sent, "and back unchanged");
    assert.equal(relay.openai.connections[0]!.searchParams.get("intent"), "transcription");
    assert.equal(relay.events("policy.refused").length, 0);
    await client.close();
  });
});

Deno.test("openai route: ?intent= other than transcription is 400 bad_intent before any upstream", async () => {
  await withRelay({}, async (relay) => {
    for (const intent of ["conversation", "", "TRANSCRIPTION", "transcription ", "translation"]) {
      const { status, body } = await handshake(relay, { intent });
      assert.equal(status, 400, JSON.stringify(intent));
      assert.equal(body.error, "bad_intent", JSON.stringify(intent));
    }
    // Also beside a model, which alone would be fine.
    const { status, body } = await handshake(relay, { intent: "x", model: "gpt-realtime" });
    assert.deepEqual([status, body.error], [400, "bad_intent"]);
    assert.equal(relay.openai.connections.length, 0, "OpenAI was never dialled");
  });
});

Deno.test("transcription models: an unlisted model is refused in band and not forwarded; a listed one passes byte for byte", async () => {
  await withRealtimeRelay({}, async (relay) => {
    const client = await open(relay, { intent: "transcription" });
    await nextEvent(client, "session.created");
    const refused: [string, string, string | null, string | null][] = [
      ["an unlisted model", chooseModel("whisper-1", "evt_whisper"), MODEL_PARAM, "evt_whisper"],
      ["a model that is not a string", chooseModel(3, "evt_three"), MODEL_PARAM, "evt_three"],
      ["an empty model", chooseModel(""), MODEL_PARAM, null],
      [
        "a duplicate key, listed first",
        '{"type":"session.update","event_id":"evt_dup","session":{"type":"transcription",' +
        '"audio":{"input":{"transcription":{"model":"gpt-4o-transcribe","model":"whisper-1"}}}}}',
        null,
        null,
      ],
      [
        "a duplicate key, listed last",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"model":"whisper-1","model":"gpt-4o-transcribe"}}}}}',
        null,
        null,
      ],
      [
        "a duplicate key differing in case",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"model":"gpt-4o-transcribe","MODEL":"whisper-1"}}}}}',
        null,
        null,
      ],
      [
        "a duplicate key written with an escape",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"model":"gpt-4o-transcribe","mod\\u0065l":"whisper-1"}}}}}',
        null,
        null,
      ],
      [
        "an escaped key",
        '{"type":"session.update","event_id":"evt_esc","session":{"type":"transcription",' +
        '"audio":{"input":{"transcription":{"mod\\u0065l":"whisper-1"}}}}}',
        MODEL_PARAM,
        "evt_esc",
      ],
      [
        "an escaped transcription key",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcr\\u0069ption":{"model":"whisper-1"}}}}}',
        MODEL_PARAM,
        null,
      ],
      [
        "an escaped value",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"model":"whisper\\u002d1"}}}}}',
        MODEL_PARAM,
        null,
      ],
      [
        "an escaped event type",
        '{"type":"session.upd\\u0061te","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"model":"whisper-1"}}}}}',
        MODEL_PARAM,
        null,
      ],
      [
        "a key in another case",
        '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
        '{"transcription":{"Model":"whisper-1"}}}}}',
        MODEL_PARAM,
        null,
      ],
    ];
    for (const [, text] of refused) client.socket.send(text);
    await until(() => refusalsOf(client).length === refused.length, 5000, "every refusal");
    const errors = refusalsOf(client);
    for (const [i, [name, , param, eventId]] of refused.entries()) {
      const error = errors[i]!;
      assert.equal(error.type, "invalid_request_error", name);
      assert.equal(error.param, param, name);
      assert.equal(error.event_id, eventId, name);
      if (param !== null) {
        assert.match(error.message, /gpt-4o-transcribe, gpt-4o-mini-transcribe/, name);
      }
    }
    await sleep(100);
    assert.deepEqual(received(relay, 0), [], "nothing refused reached OpenAI");
    const codes = relay.events("policy.refused").map((line) => [line.code, line.param]);
    assert.equal(codes.length, refused.length);
    assert.deepEqual(codes[0], ["transcription_model", MODEL_PARAM]);
    assert.deepEqual(codes[3], ["ambiguous_json", null]);

    // Listed models pass untouched, escapes and all; the session goes on.
    const allowed = [
      chooseModel("gpt-4o-mini-transcribe", "evt_ok"),
      // No model chosen: nothing to check.
      '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
      '{"transcription":{"language":"fr"}}}}}',
      '{"type":"session.update","session":{"type":"transcription","audio":{"input":' +
      '{"transcription":{"model":"gpt-4o-transcr\\u0069be","language":"en"}}}}}',
    ];
    for (const text of allowed) {
      const before = client.messages.length;
      client.socket.send(text);
      await nextEvent(client, "session.updated", before);
    }
    assert.deepEqual(received(relay, 0), allowed, "byte for byte");
    const session = relay.openai.connections[0]!.realtime!.session as {
      audio: { input: { transcription: Record<string, unknown> } };
    };
    assert.equal(session.audio.input.transcription.model, "gpt-4o-transcribe");
    assert.equal(refusalsOf(client).length, refused.length, "no further refusal");
    await client.close();
  });
});

Deno.test("transcription models: a case variant of the transcription key is refused too", async () => {
  // The check folds keys as OpenAI's parser may ("Model" is refused above);
  // "Transcription" holding an unlisted model must not slip past it.
  await withRealtimeRelay({}, async (relay) => {
    const client = await open(relay, { intent: "transcription" });
    await nextEvent(client, "session.created");
    for (const key of ["Transcription", "TRANSCRIPTION", "tran\u017fcription"]) {
      const before = refusalsOf(client).length;
      client.socket.send(
        `{"type":"session.update","event_id":"evt_case","session":{"type":"transcription",` +
          `"audio":{"input":{"${key}":{"model":"whisper-1"}}}}}`,
      );
      await until(() => refusalsOf(client).length > before, 2000, `a refusal for "${key}"`)
        .catch(() => {});
      const error = refusalsOf(client)[before];
      assert.ok(error, `"${key}" with an unlisted model was forwarded to OpenAI`);
      assert.equal(error.param, MODEL_PARAM);
    }
    assert.deepEqual(received(relay, 0), []);
    await client.close();
  });
});

Deno.test("transcription models: OPENAI_TRANSCRIPTION_MODELS decides; conversations are unchecked without metering", async () => {
  await withRealtimeRelay({ OPENAI_TRANSCRIPTION_MODELS: "whisper-1" }, async (relay) => {
    const transcription = await open(relay, { intent: "transcription" });
    await nextEvent(transcription, "session.created");
    transcription.socket.send(chooseModel("gpt-4o-transcribe", "evt_default"));
    const [refusal] = await until(() => refusalsOf(transcription).length === 1, 5000, "a refusal")
      .then(() => refusalsOf(transcription));
    assert.deepEqual([refusal!.param, refusal!.event_id], [MODEL_PARAM, "evt_default"]);
    assert.match(refusal!.message, /allowed: whisper-1\.$/);
    const allowed = chooseModel("whisper-1");
    transcription.socket.send(allowed);
    await nextEvent(transcription, "session.updated");
    assert.deepEqual(received(relay, 0), [allowed]);
    // One delta, duration usage: whisper-1 did transcribe.
    const completed = await speak(transcription, "one two three");
    assert.equal((completed.usage as { type: string }).type, "duration");
    await transcription.close();

    // A conversation, metering off: the relay does not read its session.update.
    const conversation = await open(relay, {});
    await nextEvent(conversation, "session.created");
    const unlisted = JSON.stringify({
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { transcription: { model: "gpt-4o-mini-transcribe" } } },
      },
    });
    conversation.socket.send(unlisted);
    await nextEvent(conversation, "session.updated");
    assert.equal(relay.openai.connections[1]!.sessionType, "realtime");
    assert.equal(relay.openai.connections[1]!.searchParams.get("model"), "gpt-realtime");
    assert.deepEqual(received(relay, 1), [unlisted]);
    assert.equal(refusalsOf(conversation).length, 0);
    await conversation.close();
  });
});

Deno.test("transcription models: the 20th refusal closes 1008 policy_violation", async () => {
  await withRealtimeRelay({}, async (relay) => {
    const client = await open(relay, { intent: "transcription" });
    await nextEvent(client, "session.created");
    for (let i = 1; i <= 20; i++) client.socket.send(chooseModel("whisper-1", `bad_${i}`));
    const closed = await client.waitClosed();
    assert.deepEqual([closed.code, closed.reason], [1008, "policy_violation"]);
    assert.equal(refusalsOf(client).length, 20);
    const last = client.events().at(-1)!.error as RelayError;
    assert.deepEqual([last.code, last.close_code], ["policy_violation", 1008]);
    assert.deepEqual(received(relay, 0), []);
  });
});

/** A policy for both kinds of session. */
const POLICY = {
  session: { type: "realtime", instructions: "Answer in one sentence." },
  transcription_session: {
    type: "transcription",
    audio: {
      input: {
        transcription: { model: "gpt-4o-mini-transcribe", language: "en", prompt: "Names" },
        noise_reduction: { type: "near_field" },
      },
    },
  },
};
const POLICY_ENV = { RELAY_SESSION_POLICY: JSON.stringify(POLICY) };
const PIN = JSON.stringify({ type: "session.update", session: POLICY.session });
const TRANSCRIPTION_PIN = JSON.stringify({
  type: "session.update",
  session: POLICY.transcription_session,
});

Deno.test("session policy: transcription_session is pinned first on a transcription connection, session on a conversation", async () => {
  await withRealtimeRelay(POLICY_ENV, async (relay) => {
    relay.openai.handshakeDelayMs = 200;
    const client = await open(relay, { intent: "transcription" });
    // Queued while the upstream is connecting: still after the pin.
    const early = '{"type":"input_audio_buffer.clear"}';
    client.socket.send(early);
    const updated = await nextEvent(client, "session.updated");
    const input = (updated.session as { audio: { input: Record<string, unknown> } }).audio.input;
    assert.deepEqual(input.transcription, POLICY.transcription_session.audio.input.transcription);
    assert.deepEqual(input.noise_reduction, { type: "near_field" });
    await until(() => received(relay, 0).length === 2, 5000, "the pin and the early message");
    assert.deepEqual(received(relay, 0), [TRANSCRIPTION_PIN, early], "the pin first, exactly");

    // Locked: `audio` (the top-level keys of transcription_session but type).
    const locked = JSON.stringify({
      type: "session.update",
      event_id: "evt_locked",
      session: { type: "transcription", audio: { input: { noise_reduction: null } } },
    });
    client.socket.send(locked);
    await until(() => refusalsOf(client).length === 1, 5000, "the refusal");
    const [refusal] = refusalsOf(client);
    assert.deepEqual([refusal!.param, refusal!.event_id], ["session.audio", "evt_locked"]);
    // Not locked here: include passes (it is no conversation field).
    const include = JSON.stringify({
      type: "session.update",
      session: { type: "transcription", include: ["item.input_audio_transcription.logprobs"] },
    });
    const before = client.messages.length;
    client.socket.send(include);
    await nextEvent(client, "session.updated", before);
    assert.deepEqual(received(relay, 0), [TRANSCRIPTION_PIN, early, include]);
    const said = "Pinned and transcribed.";
    const completed = await speak(client, said);
    assert.equal(completed.transcript, said);
    await client.close();

    // A conversation gets `session`, never transcription_session.
    relay.openai.handshakeDelayMs = 0;
    const conversation = await open(relay, {});
    await nextEvent(conversation, "session.updated");
    assert.equal(relay.openai.connections[1]!.sessionType, "realtime");
    assert.deepEqual(received(relay, 1), [PIN]);
    const instructions = JSON.stringify({
      type: "session.update",
      event_id: "evt_instr",
      session: { type: "realtime", instructions: "Be verbose." },
    });
    conversation.socket.send(instructions);
    await until(() => refusalsOf(conversation).length === 1, 5000, "the conversation's refusal");
    assert.equal(refusalsOf(conversation)[0]!.param, "session.instructions");
    // On a conversation, `audio` is not locked (transcription_session locks only its own kind).
    const voice = JSON.stringify({
      type: "session.update",
      session: { type: "realtime", audio: { output: { voice: "ash" } } },
    });
    const mark = conversation.messages.length;
    conversation.socket.send(voice);
    await nextEvent(conversation, "session.updated", mark);
    assert.deepEqual(received(relay, 1), [PIN, voice]);
    await conversation.close();
  });
});

Deno.test("session policy: without transcription_session a transcription connection gets no pin, and never the conversation's", async () => {
  await withRealtimeRelay(
    { RELAY_SESSION_POLICY: JSON.stringify({ session: POLICY.session }) },
    async (relay) => {
      const client = await open(relay, { intent: "transcription" });
      await nextEvent(client, "session.created");
      const update = chooseModel("gpt-4o-transcribe");
      client.socket.send(update);
      await nextEvent(client, "session.updated");
      assert.deepEqual(received(relay, 0), [update]);
      await client.close();
    },
  );
});

// ---- on PostgreSQL: metering, budgets, resume ---------------------------------

/** Runs `body` against a relay with `env` and shuts it down (flushing usage) afterwards. */
async function withDatabaseRelay(
  env: Record<string, string>,
  options: StartOptions,
  body: (relay: RelayUnderTest) => Promise<void>,
): Promise<void> {
  const relay = await startRelay({ ...options, env });
  let failure: unknown = null;
  try {
    await body(relay);
  } catch (error) {
    failure = error;
  }
  await relay.relay.shutdown();
  try {
    await relay.close();
  } catch (error) {
    failure ??= error;
  }
  if (failure !== null) throw failure;
}

async function count(pg: TestPostgres, sql: string): Promise<number> {
  return Number((await pg.psql(sql)).trim());
}

Deno.test({
  name: "transcription route on real PostgreSQL: metering, budgets and resume",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const shared = { auth, openai };
    try {
      await t.step(
        "metering prices transcription events by the session's transcription model",
        async () => {
          const user = crypto.randomUUID();
          await withDatabaseRelay(meteringEnv(pg), shared, async (relay) => {
            const before = openai.connections.length;
            const client = await open(relay, { intent: "transcription" }, user);
            await nextEvent(client, "session.created");
            // The default model first, then the one the client picks.
            const first = await speak(client, "First, with the default model.");
            client.socket.send(chooseModel("gpt-4o-mini-transcribe"));
            await nextEvent(client, "session.updated");
            const second = await speak(client, "Second, with the mini model.");
            assert.equal(openai.connections[before]!.sessionType, "transcription");
            await client.close();
            await relay.relay.shutdown();
            const rows = await usageRows(pg, user);
            assert.equal(rows.length, 2);
            for (
              const [event, model] of [
                [first, "gpt-4o-transcribe"],
                [second, "gpt-4o-mini-transcribe"],
              ] as const
            ) {
              const row = rows.find((r) => r.event_id === event.item_id);
              assert.ok(row, `a row for item ${event.item_id}`);
              assert.equal(row.model, model);
              const usage = event.usage as Record<string, unknown>;
              assert.deepEqual(row.details, usage);
              assert.equal(row.input_tokens, usage.input_tokens);
              assert.equal(row.output_tokens, usage.output_tokens);
              assert.equal(row.total_tokens, usage.total_tokens);
              const priced = priceTranscription(usage, model, "unused", BUILT_IN_PRICES);
              assert.ok(priced.priced && priced.costMicros > 0, model);
              assert.equal(priced.model, model);
              assert.equal(row.cost_micros, priced.costMicros);
            }
            const total = rows[0]!.cost_micros + rows[1]!.cost_micros;
            assert.deepEqual(await spendOf(pg, user), { day: total, month: total });
            const lines = relay.events("usage");
            assert.deepEqual(lines.map((l) => l.model), [
              "gpt-4o-transcribe",
              "gpt-4o-mini-transcribe",
            ]);
          });
        },
      );

      await t.step(
        "metering closes a transcription session 4002 budget_exceeded once spent, after its notice",
        async () => {
          const user = crypto.randomUUID();
          const env = meteringEnv(pg, { RELAY_BUDGET_USD: "0.000001" });
          await withDatabaseRelay(env, shared, async (relay) => {
            const client = await open(relay, { intent: "transcription" }, user);
            await nextEvent(client, "session.created");
            const said = "This costs more than a micro-dollar.";
            const completed = await speak(client, said);
            assert.equal(completed.transcript, said, "the transcript that spent it is delivered");
            const closed = await client.waitClosed();
            assert.deepEqual([closed.code, closed.reason], [4002, "budget_exceeded"]);
            const notice = client.events().at(-1)!;
            assert.equal(notice.type, "error");
            const error = notice.error as RelayError;
            assert.deepEqual([error.code, error.close_code], ["budget_exceeded", 4002]);
            const [exceeded] = relay.events("budget.exceeded");
            assert.equal(exceeded?.user, user);
            // A new transcription session is refused at the door.
            const again = await handshakeAs(relay, user, { intent: "transcription" });
            assert.deepEqual([again.status, again.body.error], [429, "budget_exceeded"]);
            await relay.relay.shutdown();
            const rows = await usageRows(pg, user);
            assert.equal(rows.length, 1);
            assert.equal(rows[0]!.model, "gpt-4o-transcribe");
          });
        },
      );

      await t.step("transcription models are checked on a metered conversation", async () => {
        await withDatabaseRelay(meteringEnv(pg), shared, async (relay) => {
          const before = openai.connections.length;
          const client = await open(relay, {});
          await nextEvent(client, "session.created");
          const unlisted = JSON.stringify({
            type: "session.update",
            event_id: "evt_conv",
            session: {
              type: "realtime",
              audio: { input: { transcription: { model: "whisper-1" } } },
            },
          });
          client.socket.send(unlisted);
          await until(() => refusalsOf(client).length === 1, 5000, "the refusal");
          const [refusal] = refusalsOf(client);
          assert.deepEqual([refusal!.param, refusal!.event_id], [MODEL_PARAM, "evt_conv"]);
          // The check folds keys as OpenAI's parser may ("Model" is refused on a
          // transcription connection): a case variant of "transcription" choosing an
          // unlisted model must not slip past it on a conversation either.
          for (const key of ["Transcription", "TRANSCRIPTION", "tran\u017fcription"]) {
            const before = refusalsOf(client).length;
            client.socket.send(
              `{"type":"session.update","event_id":"evt_case","session":{"type":"realtime",` +
                `"audio":{"input":{"${key}":{"model":"whisper-1"}}}}}`,
            );
            await until(() => refusalsOf(client).length > before, 1000, `a refusal for "${key}"`)
              .catch(() => {});
            const error = refusalsOf(client)[before];
            assert.ok(error, `"${key}" choosing whisper-1 was forwarded to OpenAI unchecked`);
            assert.equal(error.param, MODEL_PARAM);
          }
          const listed = JSON.stringify({
            type: "session.update",
            session: {
              type: "realtime",
              audio: { input: { transcription: { model: "gpt-4o-mini-transcribe" } } },
            },
          });
          const mark = client.messages.length;
          client.socket.send(listed);
          await nextEvent(client, "session.updated", mark);
          const upstream = openai.connections[before]!;
          assert.equal(upstream.sessionType, "realtime");
          assert.deepEqual(
            upstream.received.map((m) => m.data),
            [listed],
            "only the listed one, byte for byte",
          );
          await client.close();
        });
      });

      await t.step(
        "resume does not apply to a transcription session: ?session= is ignored",
        async () => {
          const user = crypto.randomUUID();
          const session = `transcribe_${crypto.randomUUID().replaceAll("-", "")}`;
          const env = { RELAY_RESUME: "on", RELAY_DATABASE_URL: pg.url };
          await withDatabaseRelay(env, shared, async (relay) => {
            const query = { intent: "transcription", session };
            for (const said of ["Before the drop.", "After the drop."]) {
              const before = openai.connections.length;
              const client = await open(relay, query, user);
              const created = await nextEvent(client, "session.created");
              assert.equal(client.events()[0]!.type, "session.created", "OpenAI's own, first");
              assert.equal((created.session as { type: string }).type, "transcription");
              const completed = await speak(client, said);
              assert.equal(completed.transcript, said);
              const upstream = openai.connections[before]!;
              assert.deepEqual(
                [...upstream.searchParams.keys()],
                ["intent"],
                "?session= stays here",
              );
              // Only what the client sent: no replay on the second connection.
              assert.equal(upstream.received.length, 3, "two appends and a commit");
              await client.close();
            }
            assert.equal(relay.events("session.resumed").length, 0);
            // A malformed ?session= is still refused, as on every connection.
            const bad = await handshakeAs(relay, user, { intent: "transcription", session: "x" });
            assert.deepEqual([bad.status, bad.body.error], [400, "bad_session"]);
            await relay.relay.shutdown();
            const stored = await count(
              pg,
              `select (select count(*) from relay.sessions where user_id = '${user}') +
                    (select count(*) from relay.session_items where user_id = '${user}')`,
            );
            assert.equal(stored, 0, "nothing stored for a transcription session");
          });
          // The same ?session= on a conversation is resumable (stored), so the one above was ignored.
          await withDatabaseRelay(env, shared, async (relay) => {
            const client = await open(relay, { session }, user);
            await nextEvent(client, "session.created");
            client.socket.send(JSON.stringify({
              type: "session.update",
              session: { type: "realtime", instructions: "Remember me." },
            }));
            await nextEvent(client, "session.updated");
            await client.close();
            await relay.relay.shutdown();
            const stored = await count(
              pg,
              `select count(*) from relay.sessions where user_id = '${user}'`,
            );
            assert.equal(stored, 1, "the conversation was stored");
          });
        },
      );
    } finally {
      await openai.close();
      await auth.close();
      await pg.remove();
    }
  },
});

/** The upgrade answer for `query` as `user`. */
async function handshakeAs(
  relay: RelayUnderTest,
  user: string,
  query: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(`http://127.0.0.1:${relay.port}/relay`);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  url.searchParams.set("jwt", await relay.auth.signEs256({ sub: user }));
  const response = await fetch(url, { headers: UPGRADE_HEADERS });
  const text = await response.text();
  return { status: response.status, body: text === "" ? {} : JSON.parse(text) };
}
