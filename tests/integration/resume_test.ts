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
import { connect as connectLibrary, type RelayEvent } from "../../client/relay_client.js";
import { connectDatabase } from "../../supabase/functions/_shared/db/client.ts";
import { sessionStore } from "../../supabase/functions/_shared/db/sessions.ts";
import {
  type RelayUnderTest,
  standInEnv,
  startRelay,
  UPGRADE_HEADERS,
} from "../helpers/relay_harness.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
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

/** Whatever a turn is taken through: a plain test socket, or the client library. */
interface Talker {
  events(): Event[];
  sendText(text: string): void;
}
type Conversant = TestClient | Talker;

function talker(client: Conversant): Talker {
  if (!(client instanceof TestClient)) return client;
  return { events: () => client.events(), sendText: (text) => client.socket.send(text) };
}

function send(client: Conversant, event: Record<string, unknown>): void {
  talker(client).sendText(JSON.stringify(event));
}

function userText(text: string): Record<string, unknown> {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  };
}

/** Events of `client` named `type`. */
function named(client: Conversant, type: string): Event[] {
  return talker(client).events().filter((event) => event.type === type);
}

/** Waits for the `n`th event named `type`. */
async function waitFor(client: Conversant, type: string, n = 1, ms = 8000): Promise<Event> {
  await until(() => named(client, type).length >= n, ms, `${type} #${n}`).catch(() => {
    throw new Error(
      `no ${type} #${n}; got ${JSON.stringify(talker(client).events().map((e) => e.type))}`,
    );
  });
  return named(client, type)[n - 1]!;
}

/** One text turn; resolves to the assistant's answer (its transcript or text). */
async function say(client: Conversant, text: string): Promise<string> {
  const before = named(client, "response.done").length;
  send(client, userText(text));
  send(client, { type: "response.create" });
  const done = await waitFor(client, "response.done", before + 1);
  return answerOf(done);
}

/** One spoken turn (the stand-in transcribes it when the session asks for transcription). */
async function speak(client: Conversant, transcript: string): Promise<string> {
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

/**
 * Polls until `user`'s stored conversation `session` has `n` items (and
 * `holds` says yes to them); returns them.
 */
async function untilStored(
  pg: TestPostgres,
  user: string,
  session: string,
  n: number,
  ms = 10_000,
  holds: (items: Record<string, unknown>[]) => boolean = () => true,
): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const items = await readItems(pg, user, session);
    if (items.length >= n && holds(items)) return items;
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

/**
 * The network between a client and the relays: one address whose relay can
 * change (a platform routing a reconnect to another instance), and a cut
 * that ends every TCP connection without a close frame.
 */
class Network {
  readonly port: number;
  /** Where new connections go. */
  target: number;
  readonly #listener: Deno.Listener;
  readonly #pairs = new Set<[Deno.Conn, Deno.Conn]>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  constructor(target: number) {
    this.target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  url(path: string): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** Ends every connection through it at once, as a dropped network does. */
  cut(): void {
    for (const [a, b] of this.#pairs) {
      closeQuietly(a);
      closeQuietly(b);
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.#listener.close();
    this.cut();
    await this.#accepting;
    await Promise.all(this.#tasks);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return;
      }
      const task: Promise<void> = this.#pipe(client).finally(() => this.#tasks.delete(task));
      this.#tasks.add(task);
    }
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    } catch {
      closeQuietly(client);
      return;
    }
    const pair: [Deno.Conn, Deno.Conn] = [client, server];
    this.#pairs.add(pair);
    await Promise.all([copy(client, server), copy(server, client)]);
    this.#pairs.delete(pair);
    closeQuietly(client);
    closeQuietly(server);
  }
}

async function copy(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
  } catch {
    // cut, or the other side went away
  }
  try {
    await to.closeWrite();
  } catch {
    // closed already
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed already
  }
}

/** The client library's conversation, as a {@linkcode Talker}, with what it reported. */
function library(url: string, getToken: () => Promise<string>, session: string) {
  const events: Event[] = [];
  const states: { state: string; why: string; items?: number; skipped?: number }[] = [];
  const relay = connectLibrary({
    url,
    getToken,
    session,
    backoff: { baseMs: 20, factor: 2, capMs: 200, jitter: 0 },
    onEvent: (event: RelayEvent) => void events.push(event as Event),
    onState: (state, info) => {
      states.push({
        state,
        why: info.why,
        ...(info.items === undefined ? {} : { items: info.items }),
        ...(info.skipped === undefined ? {} : { skipped: info.skipped }),
      });
    },
  });
  const talk: Talker & { relay: typeof relay; states: typeof states } = {
    relay,
    states,
    events: () => events,
    sendText: (text) => relay.send(text),
  };
  return talk;
}

/** Every event the library passed on after the `n`th `open` state (a connection's own). */
function eventsSince(events: Event[], marker: (event: Event) => boolean): Event[] {
  const at = events.findIndex(marker);
  return at < 0 ? [] : events.slice(at);
}

/** What {@linkcode converse} went through: the answers, the model's call, the last response. */
interface Conversation {
  readonly answers: string[];
  readonly call: { call_id: string; name: string; arguments: string };
  readonly lastDone: Event;
}

/** The weather tool the conversation offers the model. */
const WEATHER_TOOL = {
  type: "function",
  name: "weather",
  description: "The weather in a city.",
  parameters: { type: "object", properties: { city: { type: "string" } } },
};

/**
 * A conversation of several kinds of turns: text, speech with transcripts,
 * and a function the model calls, whose output the client gives back.
 */
async function converse(client: Conversant): Promise<Conversation> {
  await waitFor(client, "session.created");
  send(client, {
    type: "session.update",
    session: {
      type: "realtime",
      instructions: INSTRUCTIONS,
      tools: [WEATHER_TOOL],
      audio: { input: { transcription: { model: "whisper-1" } } },
    },
  });
  await waitFor(client, "session.updated");
  const answers = [await say(client, "My name is Ada."), await speak(client, "I live in Oslo.")];
  send(client, userText('Please call weather with {"city":"Oslo"}'));
  send(client, { type: "response.create" });
  const called = await waitFor(client, "response.done", 3);
  const output = (called.response as { output: Record<string, string>[] }).output[0]!;
  assert.equal(output.type, "function_call", "the model called the tool");
  const call = { call_id: output.call_id!, name: output.name!, arguments: output.arguments! };
  assert.deepEqual([call.name, call.arguments], ["weather", '{"city":"Oslo"}']);
  const done = named(client, "conversation.item.done").length;
  send(client, {
    type: "conversation.item.create",
    item: { type: "function_call_output", call_id: call.call_id, output: '{"celsius":21}' },
  });
  await waitFor(client, "conversation.item.done", done + 1);
  send(client, { type: "response.create" });
  const lastDone = await waitFor(client, "response.done", 4);
  answers.push(answerOf(lastDone));
  assert.equal(answers[2], `[${INSTRUCTIONS}] The weather function returned: {"celsius":21}`);
  return { answers, call, lastDone };
}

const INSTRUCTIONS = "Answer in one short sentence.";

/** The items a conversation from {@linkcode converse} is stored and replayed as, in order. */
function expectedReplay({ answers, call }: Conversation): Record<string, unknown>[] {
  const user = (text: string) => ({
    type: "message",
    role: "user",
    content: [{ type: "input_text", text }],
  });
  const assistant = (text: string) => ({
    type: "message",
    role: "assistant",
    content: [{ type: "output_text", text }],
  });
  return [
    user("My name is Ada."),
    assistant(answers[0]!),
    user("I live in Oslo."),
    assistant(answers[1]!),
    user('Please call weather with {"city":"Oslo"}'),
    { type: "function_call", ...call },
    { type: "function_call_output", call_id: call.call_id, output: '{"celsius":21}' },
    assistant(answers[2]!),
  ];
}

/** The stand-in's answer to `question` in a conversation from {@linkcode converse}: it remembers. */
function rememberingAnswer(question: string): string {
  return `[${INSTRUCTIONS}] You said: "${question}". I remember 8 earlier items; ` +
    `the first thing you said was: "My name is Ada.".`;
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
            const conversation = await converse(one);
            await untilStored(pg, user, session, 8);
            await one.close();

            const two = await connect(second, user, session);
            const resumed = await waitFor(two, "relay.session.resumed");
            assert.deepEqual(resumed, {
              type: "relay.session.resumed",
              session,
              items: 8,
              skipped: 0,
            });
            assert.equal(two.events()[0]?.type, "relay.session.resumed", "nothing came before it");
            const upstream = sentUpstream(lastUpstream(openai));
            // The configuration as session.updated showed it, less its read-only fields.
            const shown = named(one, "session.updated").at(-1)!.session as Record<string, unknown>;
            const { id: _id, object: _object, expires_at: _expires, model: _model, ...settable } =
              shown;
            assert.ok(_id !== undefined && _object !== undefined && _model !== undefined);
            assert.deepEqual(upstream[0], {
              type: "session.update",
              event_id: upstream[0]!.event_id,
              session: Object.fromEntries(
                Object.entries(settable).filter(([k, v]) =>
                  v !== null || k === "tracing" || k === "prompt"
                ),
              ),
            });
            assert.deepEqual((upstream[0]!.session as Record<string, unknown>).tools, [
              WEATHER_TOOL,
            ]);
            assert.deepEqual(replayedItems(upstream), expectedReplay(conversation));
            assert.equal(upstream.at(-1)?.type, "input_audio_buffer.clear");
            assert.equal(upstream.length, 1 + 8 + 1);
            // The new OpenAI session holds the conversation, and answers from all of it.
            const restored = lastUpstream(openai).realtime!;
            assert.equal(restored.session.instructions, INSTRUCTIONS);
            assert.equal(restored.items.length, 8);
            assert.equal(
              await say(two, "What is my name?"),
              rememberingAnswer("What is my name?"),
            );
            const nextDone = named(two, "response.done")[0]!;
            assert.ok(inputTokensOf(nextDone) > inputTokensOf(conversation.lastDone));
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
              items: 8,
              skipped: 0,
            });
            await two.close();
            // Stored: the 8 restored items under their first ids, and the new turn after them.
            const stored = await untilStored(pg, user, session, 10);
            assert.deepEqual(stored.slice(8, 9), [
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
      await t.step("a pinned policy session lands after the restored configuration", async () => {
        const policy = (instructions: string) =>
          // Pinned, not locked (a client may change it): only the order keeps the pin in force.
          JSON.stringify({ session: { type: "realtime", instructions }, locked: ["tools"] });
        const user = crypto.randomUUID();
        const session = newSession();
        await withRelays(
          world,
          { RELAY_SESSION_POLICY: policy("First pin.") },
          1,
          async (relay) => {
            const one = await connect(relay, user, session);
            await waitFor(one, "session.created");
            send(one, {
              type: "session.update",
              session: { type: "realtime", output_modalities: ["text"] },
            });
            await until(
              () =>
                named(one, "session.updated").some((e) =>
                  JSON.stringify((e.session as Record<string, unknown>).output_modalities) ===
                    '["text"]'
                ),
              5000,
              "the client's update",
            );
            await say(one, "Pinned?");
            await untilStored(pg, user, session, 2);
            await one.close();
          },
        );
        // The operator changed the pin since: the stored configuration still holds the old one.
        await withRelays(
          world,
          { RELAY_SESSION_POLICY: policy("Second pin.") },
          1,
          async (relay) => {
            const two = await connect(relay, user, session);
            await waitFor(two, "relay.session.resumed");
            const updates = sentUpstream(lastUpstream(openai))
              .filter((e) => e.type === "session.update")
              .map((e) => e.session as Record<string, unknown>);
            assert.deepEqual(updates.map((u) => u.instructions), [
              "Second pin.", // the policy's, the moment OpenAI answered
              "First pin.", // the restored configuration, as it was stored
              "Second pin.", // the pin again, so a stored configuration never undoes it
            ]);
            const effective = lastUpstream(openai).realtime!.session;
            assert.equal(effective.instructions, "Second pin.");
            assert.deepEqual(
              effective.output_modalities,
              ["text"],
              "the client's own setting is back",
            );
            await two.close();
          },
        );
      });

      await t.step(
        "with metering on too, both features share the instance's one pool",
        async () => {
          await withRelays(world, { RELAY_METERING: "on" }, 1, async (relay) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(relay, user, session);
            await waitFor(one, "session.created");
            await say(one, "Metered and kept.");
            await untilStored(pg, user, session, 2);
            await one.close();
            const two = await connect(relay, user, session);
            assert.equal((await waitFor(two, "relay.session.resumed")).items, 2);
            await say(two, "Still metered.");
            await two.close();
            await relay.relay.shutdown();
            const rows = await pg.psql(
              `select count(*) from relay.usage where user_id = '${user}'`,
            );
            assert.equal(rows.trim(), "2", "both responses metered, the replay cost nothing");
          });
        },
      );

      await t.step(
        "a connection while the database is down runs fresh and is kept once it is back",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            const user = crypto.randomUUID();
            const session = newSession();
            const one = await connect(relay, user, session);
            await waitFor(one, "session.created");
            await say(one, "Before the outage.");
            await untilStored(pg, user, session, 2);
            await one.close();
            await pg.stop();
            let restarted = false;
            try {
              const two = await connect(relay, user, session);
              // The state cannot be read: a fresh conversation, as the client sees.
              await waitFor(two, "session.created", 1, 8000);
              assert.equal(named(two, "relay.session.resumed").length, 0);
              assert.ok(relay.events("session.load_failed").length >= 1);
              await say(two, "During the outage.");
              await pg.start();
              restarted = true;
              // The outbox writes it once the database is back: this conversation replaces the
              // stored one, since this OpenAI session never knew the old.
              const textOf = (item: Record<string, unknown>) =>
                (item.content as { text?: string }[])[0]?.text;
              const stored = await untilStored(
                pg,
                user,
                session,
                2,
                15_000,
                (items) => textOf(items[0]!) === "During the outage.",
              );
              assert.equal(stored.length, 2, "nothing from before the outage is left");
              await two.close();
            } finally {
              if (!restarted) await pg.start();
            }
            const three = await connect(relay, user, session);
            const resumed = await waitFor(three, "relay.session.resumed");
            assert.equal(resumed.items, 2);
            await three.close();
          });
        },
      );

      await t.step("a dropped network (TCP cut) resumes, through the client library", async () => {
        await withRelays(world, {}, 1, async (relay) => {
          const network = new Network(relay.port);
          const user = crypto.randomUUID();
          const session = newSession();
          const client = library(
            network.url("/relay"),
            () => auth.signEs256({ sub: user }),
            session,
          );
          try {
            await converse(client);
            await untilStored(pg, user, session, 8);
            network.cut();
            await until(
              () => client.states.some((s) => s.state === "open" && s.why === "resumed"),
              8000,
              "the library's resume",
            );
            assert.deepEqual(client.states.find((s) => s.why === "resumed"), {
              state: "open",
              why: "resumed",
              items: 8,
              skipped: 0,
            });
            assert.ok(client.states.some((s) => s.state === "reconnecting"));
            assert.equal(
              await say(client, "Are you still there?"),
              rememberingAnswer("Are you still there?"),
            );
            const after = eventsSince(client.events(), (e) => e.type === "relay.session.resumed");
            assert.ok(
              after.every((e) => e.type !== "session.created" && e.type !== "session.updated"),
              "none of the replay's answers reached the client",
            );
          } finally {
            client.relay.close();
            await client.relay.closed;
            await network.close();
          }
        });
      });

      await t.step(
        "the relay process stopped with SIGTERM mid-conversation: the library resumes on a second process",
        async () => {
          const env = { ...standInEnv(auth, openai), ...resumeEnv(pg) };
          const processes: RelayProcess[] = [];
          const first = await startRelayProcess(env);
          processes.push(first);
          const network = new Network(first.port);
          const user = crypto.randomUUID();
          const session = newSession();
          const client = library(
            network.url("/relay"),
            () => auth.signEs256({ sub: user }),
            session,
          );
          try {
            const conversation = await converse(client);
            const second = await startRelayProcess(env);
            processes.push(second);
            network.target = second.port;
            const before = openai.connections.length;
            // No waiting for the database: what the first process holds is flushed as it stops.
            assert.equal(await first.stop(), 0);
            assert.match(first.output(), /"code":1012/);
            // Sent while reconnecting: the library holds it, the relay after the replay.
            send(client, userText("What is my name?"));
            send(client, { type: "response.create" });
            const next = await waitFor(client, "response.done", 5, 10_000);
            const resumed = named(client, "relay.session.resumed");
            assert.deepEqual(resumed, [{
              type: "relay.session.resumed",
              session,
              items: 8,
              skipped: 0,
            }]);
            // The answer proves the context came back: it remembers the first thing said.
            assert.equal(answerOf(next), rememberingAnswer("What is my name?"));
            // Between the restart notice and the resume, nothing of the replay reached the client.
            const events = client.events();
            const notice = events.findIndex((e) =>
              e.type === "error" && (e.error as Record<string, unknown>).close_code === 1012
            );
            assert.ok(notice >= 0, "the 1012 notice came");
            assert.equal(events[notice + 1]?.type, "relay.session.resumed");
            for (const event of events.slice(notice + 1)) {
              assert.ok(
                !["session.created", "session.updated", "input_audio_buffer.cleared"].includes(
                  event.type,
                ),
                `the replay's ${event.type} reached the client`,
              );
            }
            // OpenAI's new session got the configuration and every item in order, then the held turn.
            const upstream = sentUpstream(openai.connections[before]!);
            assert.equal(upstream[0]?.type, "session.update");
            assert.equal(
              (upstream[0]!.session as Record<string, unknown>).instructions,
              INSTRUCTIONS,
            );
            assert.deepEqual(replayedItems(upstream.slice(0, 9)), expectedReplay(conversation));
            assert.deepEqual(upstream.slice(9).map((e) => e.type), [
              "input_audio_buffer.clear",
              "conversation.item.create",
              "response.create",
            ]);
            assert.ok(inputTokensOf(next) > inputTokensOf(conversation.lastDone));
            assert.match(second.output(), /"event":"session.resumed"/);
          } finally {
            client.relay.close();
            await client.relay.closed;
            await network.close();
            for (const process of processes) await process.stop();
          }
        },
      );

      await t.step(
        "a resume takes (connect to relay.session.resumed), for 10 and 100 stored items",
        async () => {
          await withRelays(world, {}, 1, async (relay) => {
            const database = connectDatabase(pg.url);
            const store = sessionStore(database, 900);
            const user = crypto.randomUUID();
            /** A stored conversation of `count` spoken turns (about 150 characters each). */
            const seed = async (count: number) => {
              const session = newSession();
              const conn = crypto.randomUUID();
              const { generation } = await store.claim({ user, session }, conn, Date.now());
              const at = Date.now();
              const base = { user, session, conn, generation, at };
              await store.write([
                ...Array.from({ length: count }, (_, i) => ({
                  ...base,
                  kind: "item" as const,
                  id: `item_${i}`,
                  position: (i + 1) * 1024,
                  item: {
                    type: "message" as const,
                    role: i % 2 === 0 ? "user" as const : "assistant" as const,
                    content: [{
                      type: i % 2 === 0 ? "input_audio" as const : "output_audio" as const,
                      transcript: `Turn ${i}: ${"a sentence of about this length. ".repeat(4)}`,
                    }],
                  },
                })),
                { ...base, kind: "release" as const },
              ]);
              return session;
            };
            /** Connect, until the first message: `relay.session.resumed` or `session.created`. */
            const time = async (session: string, expect: string) => {
              const token = await auth.signEs256({ sub: user });
              const started = performance.now();
              const client = new TestClient(relay.wsUrl("/relay", { jwt: token, session }));
              await client.waitForMessages(1);
              const ms = performance.now() - started;
              assert.equal(client.events()[0]?.type, expect);
              await client.close();
              return ms;
            };
            const median = (times: number[]) => {
              const sorted = [...times].sort((x, y) => x - y);
              return `median ${sorted[sorted.length >> 1]!.toFixed(1)} ms (min ${
                sorted[0]!.toFixed(1)
              }, max ${sorted.at(-1)!.toFixed(1)})`;
            };
            try {
              const ten = await seed(10);
              const hundred = await seed(100);
              const times = { fresh: [] as number[], ten: [] as number[], hundred: [] as number[] };
              // Interleaved, after a warm-up, so no case gets the cold start or a quieter moment.
              for (let run = -3; run < 15; run++) {
                const fresh = await time(newSession(), "session.created");
                const a = await time(ten, "relay.session.resumed");
                const b = await time(hundred, "relay.session.resumed");
                if (run < 0) continue;
                times.fresh.push(fresh);
                times.ten.push(a);
                times.hundred.push(b);
              }
              assert.ok(Math.max(...times.hundred) < 2000, "a resume of 100 items stays quick");
              console.log(
                `resume timing on Deno ${Deno.version.deno}, loopback PostgreSQL, 15 runs each: ` +
                  `fresh session (to session.created) ${median(times.fresh)}; ` +
                  `10 items ${median(times.ten)}; 100 items ${median(times.hundred)}`,
              );
            } finally {
              await database.close();
            }
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
