/**
 * Resumable sessions end to end, on a real PostgreSQL (a throwaway cluster
 * with the migrations applied by the Supabase CLI), real sockets and the
 * real handler (in process, and as the real entrypoint in subprocesses),
 * against the OpenAI stand-in's Realtime conversation: what is saved, what a
 * reconnect replays and hides, what the client sees, and the edges (another
 * user, expiry, a second connection, the policy's pin, a database outage, a
 * dropped network, a relay stopped with SIGTERM).
 */
import assert from "node:assert/strict";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { type RelayUnderTest, startRelay, UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import {
  type ConnectionRecord,
  type OpenAIStandIn,
  startOpenAIStandIn,
} from "../stand_ins/openai.ts";
import { encodeBase64, tone, withTranscript } from "../stand_ins/realtime_audio.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`resume tests skipped: ${skip}`);

type Event = { type: string; [key: string]: unknown };

/** The stand-ins and database every step shares. */
interface World {
  readonly pg: TestPostgres;
  readonly auth: AuthStandIn;
  readonly openai: OpenAIStandIn;
}

/** Settings with resume on against `pg`. */
function resumeEnv(pg: TestPostgres, extra: Record<string, string> = {}): Record<string, string> {
  return { RELAY_RESUME: "on", RELAY_DATABASE_URL: pg.url, ...extra };
}

/** Runs `body` against resume-enabled relays on the shared stand-ins; shuts each down (flushing). */
async function withRelays(
  world: World,
  env: Record<string, string>,
  count: number,
  body: (...relays: RelayUnderTest[]) => Promise<void>,
): Promise<void> {
  const relays: RelayUnderTest[] = [];
  let failure: unknown = null;
  try {
    for (let i = 0; i < count; i++) {
      relays.push(
        await startRelay({
          env: resumeEnv(world.pg, env),
          auth: world.auth,
          openai: world.openai,
        }),
      );
    }
    await body(...relays);
  } catch (error) {
    failure = error;
  }
  for (const relay of relays) {
    await relay.relay.shutdown();
    try {
      await relay.close();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== null) throw failure;
}

/** A new session id, as a client picks it. */
function newSession(): string {
  return crypto.randomUUID();
}

/** A client of `relay` as `user` on `session` (not yet open). */
async function connect(relay: RelayUnderTest, user: string, session: string): Promise<TestClient> {
  const token = await relay.auth.signEs256({ sub: user });
  return new TestClient(relay.wsUrl("/relay", { jwt: token, session }));
}

function send(client: TestClient, event: Record<string, unknown>): void {
  client.socket.send(JSON.stringify(event));
}

function userText(text: string): Record<string, unknown> {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  };
}

/** Events of `client` named `type`. */
function named(client: TestClient, type: string): Event[] {
  return client.events().filter((event) => event.type === type);
}

/** Waits for the `n`th event named `type`. */
async function waitFor(client: TestClient, type: string, n = 1, ms = 8000): Promise<Event> {
  await until(() => named(client, type).length >= n, ms, `${type} #${n}`).catch(() => {
    throw new Error(
      `no ${type} #${n}; got ${JSON.stringify(client.events().map((e) => e.type))}`,
    );
  });
  return named(client, type)[n - 1]!;
}

/** One text turn; resolves to the assistant's answer (its transcript or text). */
async function say(client: TestClient, text: string): Promise<string> {
  const before = named(client, "response.done").length;
  send(client, userText(text));
  send(client, { type: "response.create" });
  const done = await waitFor(client, "response.done", before + 1);
  return answerOf(done);
}

/** One spoken turn (the stand-in transcribes it when the session asks for transcription). */
async function speak(client: TestClient, transcript: string): Promise<string> {
  const before = named(client, "response.done").length;
  const transcribed = named(client, "conversation.item.input_audio_transcription.completed").length;
  send(client, {
    type: "input_audio_buffer.append",
    audio: encodeBase64(withTranscript(transcript, tone(300))),
  });
  send(client, { type: "input_audio_buffer.commit" });
  await waitFor(client, "conversation.item.input_audio_transcription.completed", transcribed + 1);
  send(client, { type: "response.create" });
  return answerOf(await waitFor(client, "response.done", before + 1));
}

function answerOf(done: Event): string {
  const output = (done.response as { output: { content?: Record<string, unknown>[] }[] }).output;
  const part = output[0]?.content?.[0] ?? {};
  return String(part.transcript ?? part.text ?? "");
}

function inputTokensOf(done: Event): number {
  return (done.response as { usage: { input_tokens: number } }).usage.input_tokens;
}

/** The stand-in connection a relay opened last. */
function lastUpstream(openai: OpenAIStandIn): ConnectionRecord {
  return openai.connections.at(-1)!;
}

/** The JSON events the relay sent a stand-in connection, in order. */
function sentUpstream(connection: ConnectionRecord): Event[] {
  return connection.received
    .filter((m) => m.type === "text")
    .map((m) => JSON.parse(m.data as string) as Event);
}

/** `user`'s stored items for `session`, in order, as JSON. */
async function readItems(
  pg: TestPostgres,
  user: string,
  session: string,
): Promise<Record<string, unknown>[]> {
  const out = await pg.psql(
    `select coalesce(json_agg(i.item order by i.position, i.done_at), '[]')
       from relay.session_items i join relay.sessions s using (user_id, session_id)
      where i.user_id = '${user}' and i.session_id = '${session}'
        and i.generation = s.generation`,
  );
  return JSON.parse(out);
}

/** Polls until `user`'s stored conversation `session` has `n` items; returns them. */
async function untilStored(
  pg: TestPostgres,
  user: string,
  session: string,
  n: number,
  ms = 10_000,
): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const items = await readItems(pg, user, session);
    if (items.length >= n) return items;
    if (Date.now() > deadline) {
      throw new Error(`expected ${n} stored items, have ${JSON.stringify(items)}`);
    }
    await sleep(50);
  }
}

/** Answers a refused upgrade, as plain HTTP. */
async function refusedWith(
  relay: RelayUnderTest,
  query: Record<string, string>,
): Promise<Response> {
  const response = await fetch(relay.wsUrl("/relay", query).replace("ws:", "http:"), {
    headers: UPGRADE_HEADERS,
  });
  await response.body?.cancel();
  return response;
}

/** A conversation of several kinds of turns: text, speech with transcripts, a function call. */
async function converse(client: TestClient): Promise<{ answers: string[]; lastDone: Event }> {
  await waitFor(client, "session.created");
  send(client, {
    type: "session.update",
    session: {
      type: "realtime",
      instructions: "Answer in one short sentence.",
      audio: { input: { transcription: { model: "whisper-1" } } },
    },
  });
  await waitFor(client, "session.updated");
  const answers = [await say(client, "My name is Ada."), await speak(client, "I live in Oslo.")];
  const done = named(client, "conversation.item.done").length;
  send(client, {
    type: "conversation.item.create",
    item: {
      type: "function_call",
      call_id: "call_weather_1",
      name: "weather",
      arguments: '{"city":"Oslo"}',
    },
  });
  send(client, {
    type: "conversation.item.create",
    item: { type: "function_call_output", call_id: "call_weather_1", output: '{"celsius":21}' },
  });
  await waitFor(client, "conversation.item.done", done + 2);
  send(client, { type: "response.create" });
  const lastDone = await waitFor(client, "response.done", 3);
  answers.push(answerOf(lastDone));
  return { answers, lastDone };
}

/** The items a conversation from {@linkcode converse} is stored and replayed as. */
function expectedReplay(answers: string[]): Record<string, unknown>[] {
  const user = (text: string) => ({ role: "user", content: [{ type: "input_text", text }] });
  const assistant = (text: string) => ({
    role: "assistant",
    content: [{ type: "output_text", text }],
  });
  return [
    { type: "message", ...user("My name is Ada.") },
    { type: "message", ...assistant(answers[0]!) },
    { type: "message", ...user("I live in Oslo.") },
    { type: "message", ...assistant(answers[1]!) },
    {
      type: "function_call",
      call_id: "call_weather_1",
      name: "weather",
      arguments: '{"city":"Oslo"}',
    },
    { type: "function_call_output", call_id: "call_weather_1", output: '{"celsius":21}' },
    { type: "message", ...assistant(answers[2]!) },
  ];
}

/** What the relay replayed to a stand-in connection: its items, without the relay's ids. */
function replayedItems(events: Event[]): Record<string, unknown>[] {
  return events
    .filter((event) => event.type === "conversation.item.create")
    .map((event) => {
      const { id, ...item } = event.item as Record<string, unknown>;
      assert.match(String(id), /^relay_/);
      assert.ok(String(id).length <= 32, "OpenAI takes item ids of up to 32 characters");
      return item;
    });
}

/** Server events the client must never see on a resumed connection before `relay.session.resumed`. */
const REPLAY_ANSWERS = new Set([
  "session.created",
  "session.updated",
  "conversation.item.added",
  "conversation.item.created",
  "conversation.item.done",
  "input_audio_buffer.cleared",
]);

Deno.test({
  name: "resumable sessions on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const world: World = { pg, auth, openai };
    try {
      await t.step(
        "a malformed ?session= is refused 400 bad_session before the token is verified",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            for (const session of ["short", "x".repeat(65), "has space in it, 22+ chars", ""]) {
              // Not even a valid token: the id is checked first.
              const response = await refusedWith(relay, { jwt: "not-a-token", session });
              assert.equal(response.status, 400, session);
              assert.equal(
                relay.events("websocket.connection.rejected").at(-1)?.error,
                "bad_session",
              );
            }
          });
        },
      );

      await t.step(
        "a new id starts fresh: OpenAI's session.created, no resumed event; saved as it goes",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const client = await connect(relay, user, session);
            await waitFor(client, "session.created");
            const answer = await say(client, "Hello there.");
            const stored = await untilStored(pg, user, session, 2);
            assert.deepEqual(stored, [
              {
                type: "message",
                role: "user",
                content: [{ type: "input_text", text: "Hello there." }],
              },
              {
                type: "message",
                role: "assistant",
                content: [{ type: "output_audio", transcript: answer }],
              },
            ]);
            await client.close();
            assert.equal(named(client, "relay.session.resumed").length, 0);
            assert.equal(client.events()[0]?.type, "session.created");
            assert.equal(relay.events("session.resumed").length, 0);
          });
        },
      );

      await t.step(
        "a reconnect on another instance replays config and items in order, hides OpenAI's answers, then relay.session.resumed",
        async () => {
          await withRelays(world, {}, 2, async (first, second) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(first, user, session);
            const { answers, lastDone } = await converse(one);
            await untilStored(pg, user, session, 7);
            await one.close();

            const two = await connect(second, user, session);
            const resumed = await waitFor(two, "relay.session.resumed");
            assert.deepEqual(resumed, {
              type: "relay.session.resumed",
              session,
              items: 7,
              skipped: 0,
            });
            assert.equal(two.events()[0]?.type, "relay.session.resumed", "nothing came before it");
            const upstream = sentUpstream(lastUpstream(openai));
            assert.deepEqual(upstream[0], {
              type: "session.update",
              event_id: upstream[0]!.event_id,
              session: {
                type: "realtime",
                instructions: "Answer in one short sentence.",
                audio: (lastUpstream(openai).realtime!.session as { audio: unknown }).audio,
                ...pickKeys(upstream[0]!.session as Record<string, unknown>, [
                  "output_modalities",
                  "tools",
                  "tool_choice",
                  "max_output_tokens",
                  "tracing",
                  "prompt",
                  "truncation",
                ]),
              },
            });
            const restored = upstream[0]!.session as Record<string, unknown>;
            for (const key of ["id", "object", "expires_at", "model"]) {
              assert.equal(key in restored, false, `read-only ${key} is not sent back`);
            }
            assert.deepEqual(replayedItems(upstream), expectedReplay(answers));
            assert.equal(upstream.at(-1)?.type, "input_audio_buffer.clear");
            assert.equal(upstream.length, 1 + 7 + 1);
            // The new OpenAI session holds the conversation, and answers from all of it.
            const conversation = lastUpstream(openai).realtime!;
            assert.equal(conversation.session.instructions, "Answer in one short sentence.");
            assert.equal(conversation.items.length, 7);
            const next = await say(two, "What is my name?");
            assert.ok(next.length > 0);
            const nextDone = named(two, "response.done")[0]!;
            assert.ok(
              inputTokensOf(nextDone) > inputTokensOf(lastDone),
              `the answer read the restored context (${inputTokensOf(nextDone)} input tokens, ${
                inputTokensOf(lastDone)
              } before the reconnect)`,
            );
            for (const event of two.events()) {
              if (event.type === "relay.session.resumed") continue;
              if (!REPLAY_ANSWERS.has(event.type)) continue;
              const id = (event.item as { id?: string } | undefined)?.id ?? "";
              assert.ok(!id.startsWith("relay_"), `the replay's ${event.type} reached the client`);
            }
            const telemetry = second.events("session.resumed");
            assert.equal(telemetry.length, 1);
            assert.deepEqual(pickKeys(telemetry[0]!, ["user", "session", "items", "skipped"]), {
              user,
              session,
              items: 7,
              skipped: 0,
            });
            await two.close();
            // Stored: the 7 restored items under their first ids, and the new turn after them.
            const stored = await untilStored(pg, user, session, 9);
            assert.deepEqual(stored.slice(7, 8), [
              {
                type: "message",
                role: "user",
                content: [{ type: "input_text", text: "What is my name?" }],
              },
            ]);
          });
        },
      );

      await t.step("messages sent during the replay reach OpenAI after it, in order", async () => {
        await withRelays(world, {}, 1, async (relay) => {
          const user = crypto.randomUUID();
          const session = newSession();
          const one = await connect(relay, user, session);
          await waitFor(one, "session.created");
          await say(one, "First.");
          await untilStored(pg, user, session, 2);
          await one.close();
          // OpenAI answering the handshake late keeps the replay under way for a while.
          openai.handshakeDelayMs = 300;
          const two = await connect(relay, user, session);
          try {
            await two.opened;
            assert.equal(two.events().length, 0, "sent while the replay is still under way");
            send(two, userText("Second."));
            send(two, userText("Third."));
            send(two, { type: "response.create" });
          } finally {
            openai.handshakeDelayMs = 0;
          }
          await waitFor(two, "response.done");
          const upstream = sentUpstream(lastUpstream(openai));
          const types = upstream.map((e) =>
            e.type === "conversation.item.create"
              ? `item:${(e.item as { content: { text: string }[] }).content[0]!.text}`
              : e.type
          );
          assert.deepEqual(types.slice(-6), [
            "item:First.",
            `item:${answerOf(named(one, "response.done")[0]!)}`,
            "input_audio_buffer.clear",
            "item:Second.",
            "item:Third.",
            "response.create",
          ]);
          // The client heard of the resume before anything its own messages caused.
          const seen = two.events().map((e) => e.type);
          assert.equal(seen[0], "relay.session.resumed");
          assert.ok(seen.indexOf("conversation.item.added") > 0);
          await two.close();
        });
      });

      await t.step(
        "the same id from another user is another session: fresh, nothing shown",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            const session = newSession();
            const alice = crypto.randomUUID();
            const one = await connect(relay, alice, session);
            await waitFor(one, "session.created");
            await say(one, "Alice's secret.");
            await untilStored(pg, alice, session, 2);
            await one.close();
            const bob = await connect(relay, crypto.randomUUID(), session);
            await waitFor(bob, "session.created");
            await sleep(100);
            assert.equal(named(bob, "relay.session.resumed").length, 0);
            const upstream = sentUpstream(lastUpstream(openai));
            assert.equal(upstream.length, 0, "nothing of Alice's was sent to Bob's session");
            await bob.close();
            // Alice's conversation is untouched by Bob's.
            assert.equal((await readItems(pg, alice, session)).length, 2);
          });
        },
      );

      await t.step(
        "an id whose state expired (TTL after its last activity) starts fresh",
        async () => {
          await withRelays(world, { RELAY_RESUME_TTL_S: "1" }, 1, async (relay) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(relay, user, session);
            await waitFor(one, "session.created");
            await say(one, "Remember this.");
            await untilStored(pg, user, session, 2);
            await one.close();
            // Within the TTL it resumes...
            const two = await connect(relay, user, session);
            await waitFor(two, "relay.session.resumed");
            await two.close();
            // ...and one TTL after the last activity it is gone.
            await sleep(1300);
            const three = await connect(relay, user, session);
            await waitFor(three, "session.created");
            await sleep(100);
            assert.equal(named(three, "relay.session.resumed").length, 0);
            assert.equal(sentUpstream(lastUpstream(openai)).length, 0);
            await three.close();
            assert.deepEqual(await readItems(pg, user, session), []);
          });
        },
      );

      await t.step(
        "a second connection replaces the first: 4409 with its notice, at once on the same instance",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(relay, user, session);
            await waitFor(one, "session.created");
            const two = await connect(relay, user, session);
            const closed = await one.waitClosed(3000);
            assert.deepEqual([closed.code, closed.reason], [4409, "session_replaced"]);
            const notice = named(one, "error").at(-1)!;
            assert.equal((notice.error as Record<string, unknown>).code, "session_replaced");
            assert.equal((notice.error as Record<string, unknown>).close_code, 4409);
            await waitFor(two, "session.created");
            await say(two, "Still here.");
            await two.close();
          });
        },
      );

      await t.step(
        "a second connection on another instance replaces the first within 2 s",
        async () => {
          await withRelays(world, {}, 2, async (first, second) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(first, user, session);
            await waitFor(one, "session.created");
            await say(one, "On the first instance.");
            await untilStored(pg, user, session, 2);
            const started = Date.now();
            const two = await connect(second, user, session);
            await waitFor(two, "relay.session.resumed");
            const closed = await one.waitClosed(4000);
            const ms = Date.now() - started;
            assert.deepEqual([closed.code, closed.reason], [4409, "session_replaced"]);
            assert.ok(ms < 2600, `the first instance learnt within a heartbeat (${ms} ms)`);
            await say(two, "On the second.");
            await two.close();
            assert.equal((await untilStored(pg, user, session, 4)).length, 4);
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

function pickKeys(object: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in object).map((k) => [k, object[k]]));
}
