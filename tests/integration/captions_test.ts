/**
 * CONTRACT.md "Transcription sessions and live captions" (the captions half):
 * `?room=` on the OpenAI route publishes the connection's transcripts into a
 * room. Two relays, each the real entrypoint in its own process, meet through
 * the Supabase Realtime stand-in and keep room history on a throwaway
 * PostgreSQL: the speaking connection on instance A, members and an SSE
 * follower on instance B. The refusals run in process.
 */
import assert from "node:assert/strict";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";
import { follow, instancesEnv } from "../helpers/rooms.ts";
import { type RelayUnderTest, UPGRADE_HEADERS, withRelay } from "../helpers/relay_harness.ts";
import { type RelayProcess, startRelayProcess } from "../helpers/relay_process.ts";
import { sleep, TestClient, until } from "../helpers/ws_client.ts";
import { type AuthStandIn, startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { encodeBase64, tone, withTranscript } from "../stand_ins/realtime_audio.ts";
import { startRealtimeStandIn } from "../stand_ins/supabase_realtime.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`captions tests on PostgreSQL skipped: ${skip}`);

/** How long "exactly once" waits for a duplicate that should never come. */
const SETTLE_MS = 300;

type Event = { type: string; [key: string]: unknown };
type Meta = { user: string | null; id: string | null; offset: number | null; at: string };
type Broadcast = Event & { event: string; payload: Record<string, unknown>; meta: Meta };

const broadcasts = (events: Event[]) =>
  events.filter((e): e is Broadcast => e.type === "broadcast");

/** Where a caption comes from, as the speaking client saw it from OpenAI. */
const SOURCES: Record<string, { role: string; field: string; done: boolean }> = {
  "conversation.item.input_audio_transcription.delta": {
    role: "user",
    field: "delta",
    done: false,
  },
  "conversation.item.input_audio_transcription.completed": {
    role: "user",
    field: "transcript",
    done: true,
  },
  "response.output_audio_transcript.delta": { role: "assistant", field: "delta", done: false },
  "response.output_audio_transcript.done": { role: "assistant", field: "transcript", done: true },
  "response.output_text.delta": { role: "assistant", field: "delta", done: false },
  "response.output_text.done": { role: "assistant", field: "text", done: true },
};

/** The captions the contract expects for what the speaking client received, in order. */
function expectedCaptions(events: Event[]): { event: string; payload: Record<string, unknown> }[] {
  return events.flatMap((e) => {
    const source = SOURCES[e.type];
    if (!source) return [];
    const text = e[source.field];
    return [{
      event: source.done ? "caption" : "caption.delta",
      payload: source.done
        ? { item_id: e.item_id, role: source.role, text }
        : { item_id: e.item_id, role: source.role, delta: text },
    }];
  });
}

/** A room member over WebSocket and what it received. */
interface Member {
  readonly user: string;
  readonly client: TestClient;
  readonly joined: Event;
  events(): Event[];
}

type WsUrl = (path: string, query?: Record<string, string>) => string;

async function join(auth: AuthStandIn, wsUrl: WsUrl, room: string, query = {}): Promise<Member> {
  const user = crypto.randomUUID();
  const jwt = await auth.signEs256({ sub: user });
  const client = new TestClient(wsUrl(`/relay/rooms/${room}`, { jwt, ...query }));
  await client.waitForMessages(1, 8000);
  const joined = JSON.parse(client.messages[0] as string) as Event;
  assert.equal(joined.type, "room.joined");
  return { user, client, joined, events: () => client.events() };
}

/** Opens the OpenAI route as `user` with `query`. */
async function speaker(
  auth: AuthStandIn,
  wsUrl: WsUrl,
  user: string,
  query: Record<string, string>,
): Promise<TestClient> {
  const jwt = await auth.signEs256({ sub: user });
  const client = new TestClient(wsUrl("/relay", { ...query, jwt }));
  await client.opened;
  await until(() => client.events().some((e) => e.type === "session.created"), 5000, "created");
  return client;
}

/** Sends `messages` one after another, each waiting for its answer of type `until`. */
async function exchange(client: TestClient, steps: [string[], string][]): Promise<void> {
  for (const [messages, type] of steps) {
    const before = client.events().filter((e) => e.type === type).length;
    for (const message of messages) client.socket.send(message);
    await until(
      () => client.events().filter((e) => e.type === type).length > before,
      5000,
      `a ${type}`,
    );
  }
}

/** A spoken turn the stand-in hears as `said`: two appends and a commit. */
function turn(said: string): string[] {
  const audio = withTranscript(said, tone(300));
  const half = Math.floor(audio.byteLength / 2);
  return [
    JSON.stringify({
      type: "input_audio_buffer.append",
      audio: encodeBase64(audio.subarray(0, half)),
    }),
    JSON.stringify({
      type: "input_audio_buffer.append",
      audio: encodeBase64(audio.subarray(half)),
    }),
    '{"type":"input_audio_buffer.commit"}',
  ];
}

const COMPLETED = "conversation.item.input_audio_transcription.completed";

/**
 * What a client receives, with the values OpenAI makes up afresh each time
 * (ids, times) replaced by their order of first appearance: two runs of one
 * script compare equal exactly when the stand-in sent the same thing.
 */
function normalised(client: TestClient): unknown[] {
  const names = new Map<string, string>();
  const walk = (value: unknown, key = ""): unknown => {
    if (Array.isArray(value)) return value.map((v) => walk(v));
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    if (
      typeof value === "string" && (key === "id" || key.endsWith("_id") || key === "expires_at")
    ) {
      if (!names.has(value)) names.set(value, `<${key} ${names.size}>`);
      return names.get(value);
    }
    if (key === "expires_at") return "<expires_at>";
    return value;
  };
  return client.messages.map((m) => typeof m === "string" ? walk(JSON.parse(m)) : m);
}

Deno.test({
  name: "captions across two instances, with room history on PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const realtime = await startRealtimeStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const env = {
      ...instancesEnv(auth, realtime, { pg, keep: 100 }),
      OPENAI_API_KEY: openai.apiKey,
      OPENAI_REALTIME_URL: openai.url,
      RELAY_ROOM_MAX_MEMBERS: "3",
    };
    const started = await Promise.allSettled([startRelayProcess(env), startRelayProcess(env)]);
    const relays = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    const clients: TestClient[] = [];
    const track = <T extends { client: TestClient } | TestClient>(x: T): T => {
      clients.push(x instanceof TestClient ? x : x.client);
      return x;
    };
    try {
      const refused = started.find((r) => r.status === "rejected");
      if (refused) throw (refused as PromiseRejectedResult).reason;
      const [A, B] = relays as [RelayProcess, RelayProcess];

      await t.step(
        "captions: a transcription session on A reaches members and a follower on B, each caption once, deltas in order",
        async () => {
          const room = `captions.${crypto.randomUUID()}`;
          const speaking = crypto.randomUUID();
          const before = openai.connections.length;
          // The speaker first: it holds the room on A without being a member of it.
          const client = track(
            await speaker(auth, A.wsUrl, speaking, { intent: "transcription", room }),
          );
          const b1 = track(await join(auth, B.wsUrl, room));
          const b2 = track(await join(auth, B.wsUrl, room));
          const follower = await follow(
            B,
            room,
            await auth.signEs256({ sub: crypto.randomUUID() }),
          );
          try {
            assert.equal(
              follower.response.status,
              200,
              "the follower is the third of three members",
            );
            // Not in presence: the room holds only its members.
            assert.deepEqual((b1.joined.presence as { user: string }[]).map((p) => p.user), [
              b1.user,
            ]);
            assert.deepEqual(
              (b2.joined.presence as { user: string }[]).map((p) => p.user).sort(),
              [b1.user, b2.user].sort(),
            );
            // A fourth is one too many: the speaker was not counted.
            const fourth = await upgradeAnswer(
              B.wsUrl(`/relay/rooms/${room}`, {
                jwt: await auth.signEs256({ sub: crypto.randomUUID() }),
              }),
            );
            assert.deepEqual([fourth.status, fourth.body.error], [429, "room_full"]);

            const script: [string[], string][] = [
              [[JSON.stringify({
                type: "session.update",
                session: {
                  type: "transcription",
                  audio: { input: { transcription: { model: "gpt-4o-mini-transcribe" } } },
                },
              })], "session.updated"],
              [turn("Good morning, everyone in the room."), COMPLETED],
              [turn("Second line, with ünïcode ✓."), COMPLETED],
            ];
            await exchange(client, script);
            const expected = expectedCaptions(client.events());
            assert.equal(expected.filter((c) => c.event === "caption").length, 2);
            assert.ok(expected.length >= 8, "deltas and the completed ones");
            const upstream = openai.connections[before]!;
            assert.equal(upstream.sessionType, "transcription");
            assert.deepEqual(
              upstream.received.map((m) => m.data),
              script.flatMap(([messages]) => messages),
              "OpenAI heard exactly what the client sent",
            );

            for (const [label, member] of [["b1", b1], ["b2", b2]] as const) {
              await until(
                () => broadcasts(member.events()).length >= expected.length,
                5000,
                `${label}: every caption`,
              );
            }
            await until(
              () =>
                follower.events.filter((e) => e.event === "broadcast").length >= expected.length,
              5000,
              "the follower: every caption",
            );
            await sleep(SETTLE_MS);
            const offsets: number[][] = [];
            for (const [label, member] of [["b1", b1], ["b2", b2]] as const) {
              const got = broadcasts(member.events());
              assert.deepEqual(
                got.map((b) => ({ event: b.event, payload: b.payload })),
                expected,
                `${label}: each caption once, in OpenAI's order`,
              );
              for (const b of got) {
                assert.equal(b.meta.user, speaking, `${label}: from the speaking user`);
                assert.equal(b.meta.id, null);
                if (b.event === "caption.delta") assert.equal(b.meta.offset, null, "ephemeral");
                else assert.equal(typeof b.meta.offset, "number", "kept, with an offset");
              }
              offsets.push(got.filter((b) => b.event === "caption").map((b) => b.meta.offset!));
              assert.deepEqual(Object.keys(got[0]!.payload).sort(), ["delta", "item_id", "role"]);
              // Nothing else of the session: no audio, no other event, no presence of the speaker.
              assert.equal(member.client.messages.filter((m) => typeof m !== "string").length, 0);
              const others = member.events().filter((e) => e.type !== "broadcast");
              assert.ok(
                others.every((e) => ["room.joined", "presence.join"].includes(e.type)),
                `${label}: ${JSON.stringify(others.map((e) => e.type))}`,
              );
              assert.ok(
                member.events().every((e) => e.user !== speaking),
                `${label}: the speaker is never present`,
              );
            }
            assert.deepEqual(offsets[0], offsets[1], "one offset per caption, the same for all");
            assert.ok(offsets[0]![0]! < offsets[0]![1]!);

            // The follower reads the same, the kept ones with their offset as the SSE id.
            const sse = follower.events.filter((e) => e.event === "broadcast");
            assert.deepEqual(
              sse.map((e) => {
                const b = JSON.parse(e.data) as Broadcast;
                return { event: b.event, payload: b.payload };
              }),
              expected,
            );
            for (const e of sse) {
              const b = JSON.parse(e.data) as Broadcast;
              assert.equal(b.meta.user, speaking);
              assert.equal(e.id, b.meta.offset === null ? null : String(b.meta.offset));
            }
            assert.deepEqual(
              follower.events.map((e) => e.event).filter((name) => name !== "broadcast"),
              ["room.joined"],
              "nothing else reaches the follower",
            );

            // History kept the captions only, from the speaking user.
            const kept = await pg.psql(
              `select coalesce(json_agg(json_build_array(sender, msg_id, event, "offset")
               order by "offset"), '[]') from relay.room_messages where room = '${room}'`,
            );
            assert.deepEqual(JSON.parse(kept), [
              [speaking, null, "caption", offsets[0]![0]],
              [speaking, null, "caption", offsets[0]![1]],
            ]);

            // What the speaking client got is what it gets without ?room=.
            const control = track(
              await speaker(auth, A.wsUrl, crypto.randomUUID(), { intent: "transcription" }),
            );
            await exchange(control, script);
            assert.deepEqual(normalised(control), normalised(client));
          } finally {
            await follower.close();
          }
        },
      );

      await t.step(
        "captions: a conversation's input transcription is the user's, its audio transcript and text the assistant's",
        async () => {
          const room = `captions.${crypto.randomUUID()}`;
          const speaking = crypto.randomUUID();
          const b1 = track(await join(auth, B.wsUrl, room));
          const a1 = track(await join(auth, A.wsUrl, room));
          const client = track(await speaker(auth, A.wsUrl, speaking, { room }));
          const script: [string[], string][] = [
            [[JSON.stringify({
              type: "session.update",
              session: {
                type: "realtime",
                audio: {
                  input: {
                    transcription: { model: "gpt-4o-transcribe" },
                    turn_detection: null,
                  },
                },
              },
            })], "session.updated"],
            [turn("What is the weather like?"), COMPLETED],
            [['{"type":"response.create"}'], "response.done"],
            [[JSON.stringify({
              type: "response.create",
              response: { output_modalities: ["text"] },
            })], "response.done"],
          ];
          await exchange(client, script);
          const expected = expectedCaptions(client.events());
          const roles = expected.filter((c) => c.event === "caption").map((c) => c.payload.role);
          assert.deepEqual(roles, ["user", "assistant", "assistant"]);
          assert.ok(
            client.events().some((e) => e.type === "response.output_audio_transcript.done") &&
              client.events().some((e) => e.type === "response.output_text.done"),
            "the stand-in answered with audio, then text",
          );
          for (const [label, member] of [["b1 on B", b1], ["a1 on A", a1]] as const) {
            await until(
              () => broadcasts(member.events()).length >= expected.length,
              5000,
              `${label}: every caption`,
            );
          }
          await sleep(SETTLE_MS);
          for (const [label, member] of [["b1 on B", b1], ["a1 on A", a1]] as const) {
            const got = broadcasts(member.events());
            assert.deepEqual(
              got.map((b) => ({ event: b.event, payload: b.payload })),
              expected,
              label,
            );
            assert.ok(got.every((b) => b.meta.user === speaking && b.meta.id === null), label);
            assert.equal(member.client.messages.filter((m) => typeof m !== "string").length, 0);
          }
          // The assistant's captions name the response's output item.
          const done = client.events().filter((e) => e.type === "response.done")
            .map((e) => ((e.response as { output: { id: string }[] }).output[0]!.id));
          const assistant = expected.filter((c) =>
            c.event === "caption" && c.payload.role === "assistant"
          );
          assert.deepEqual(assistant.map((c) => c.payload.item_id), done);
        },
      );

      await t.step(
        "captions: a late member recovers the kept captions with ?last=, never the deltas",
        async () => {
          const room = `captions.${crypto.randomUUID()}`;
          const client = track(
            await speaker(auth, A.wsUrl, crypto.randomUUID(), { intent: "transcription", room }),
          );
          await exchange(client, [[turn("Kept for later."), COMPLETED]]);
          await sleep(SETTLE_MS);
          const late = track(await join(auth, B.wsUrl, room, { last: "10" }));
          await until(() => broadcasts(late.events()).length >= 1, 5000, "the kept caption");
          await sleep(SETTLE_MS);
          const got = broadcasts(late.events());
          assert.deepEqual(got.map((b) => [b.event, b.payload.text]), [[
            "caption",
            "Kept for later.",
          ]]);
        },
      );
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await Promise.all(relays.map((relay) => relay.stop()));
      await openai.close();
      await realtime.close();
      await auth.close();
      await pg.remove();
    }
  },
});

/**
 * The answer to an upgrade request for `wsUrl` made over plain HTTP: a
 * refusal's status and JSON body; a 101 (or no answer in 3 s) fails.
 */
async function upgradeAnswer(
  wsUrl: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 3000);
  try {
    const response = await fetch(wsUrl.replace(/^ws:/, "http:"), {
      headers: UPGRADE_HEADERS,
      signal: stop.signal,
    });
    const text = await response.text();
    return { status: response.status, body: text === "" ? {} : JSON.parse(text) };
  } catch (error) {
    throw new Error(`no refusal for ${wsUrl.split("?")[0]}: ${error}`);
  } finally {
    clearTimeout(timer);
  }
}

/** The upgrade answer for `query` on the OpenAI route as `user`. */
async function handshake(
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

Deno.test("captions: ?room= with rooms off, or an empty or malformed ?room=, is 400 bad_room", async () => {
  await withRelay({}, async (relay) => {
    for (
      const query of [{ room: "lobby" }, { room: "lobby", intent: "transcription" }, { room: "" }]
    ) {
      const { status, body } = await handshake(relay, crypto.randomUUID(), query);
      assert.deepEqual([status, body.error], [400, "bad_room"], JSON.stringify(query));
    }
    assert.equal(relay.openai.connections.length, 0);
  });
  await withRelay({ env: { RELAY_ROOMS: "open", RELAY_ROOMS_BUS: "off" } }, async (relay) => {
    for (const room of ["", "with space", "x".repeat(101), "é"]) {
      for (const intent of [{}, { intent: "transcription" }]) {
        const { status, body } = await handshake(relay, crypto.randomUUID(), { room, ...intent });
        assert.deepEqual([status, body.error], [400, "bad_room"], JSON.stringify(room));
      }
    }
    assert.equal(relay.openai.connections.length, 0);
  });
});

Deno.test({
  name: "captions: without write access to the room, 403 room_forbidden (RELAY_ROOMS=database)",
  ignore: skip !== null,
  fn: async () => {
    const pg = await startPostgres();
    const env = {
      RELAY_ROOMS: "database",
      RELAY_ROOMS_BUS: "off",
      RELAY_DATABASE_URL: pg.url,
    };
    try {
      await withRelay({ env }, async (relay) => {
        relay.openai.behaviour = { kind: "realtime" };
        const user = crypto.randomUUID();
        const room = `team:${crypto.randomUUID()}`;
        await pg.psql(
          `insert into relay.room_members (room, user_id, access) values ('${room}', '${user}', 'read')`,
        );
        for (const intent of [{}, { intent: "transcription" }]) {
          const readOnly = await handshake(relay, user, { room, ...intent });
          assert.deepEqual([readOnly.status, readOnly.body.error], [403, "room_forbidden"]);
          const stranger = await handshake(relay, crypto.randomUUID(), { room, ...intent });
          assert.deepEqual([stranger.status, stranger.body.error], [403, "room_forbidden"]);
          const other = await handshake(relay, user, {
            room: `user:${crypto.randomUUID()}`,
            ...intent,
          });
          assert.deepEqual([other.status, other.body.error], [403, "room_forbidden"]);
        }
        assert.equal(relay.openai.connections.length, 0, "OpenAI was never dialled");
        // A writer is let in, and captions to its own room.
        const writer = crypto.randomUUID();
        const own = `user:${writer}`;
        const listener = new TestClient(
          relay.wsUrl(`/relay/rooms/${own}`, { jwt: await relay.auth.signEs256({ sub: writer }) }),
        );
        await listener.waitForMessages(1);
        const jwt = await relay.auth.signEs256({ sub: writer });
        const client = new TestClient(
          relay.wsUrl("/relay", { intent: "transcription", room: own, jwt }),
        );
        await client.opened;
        await until(
          () => client.events().some((e) => e.type === "session.created"),
          5000,
          "created",
        );
        await exchange(client, [[turn("Only mine."), COMPLETED]]);
        await until(
          () => broadcasts(listener.events()).some((b) => b.event === "caption"),
          5000,
          "the caption",
        );
        const caption = broadcasts(listener.events()).find((b) => b.event === "caption")!;
        assert.deepEqual(caption.payload.text, "Only mine.");
        assert.equal(caption.meta.user, writer);
        assert.equal(caption.meta.offset, null, "history off: no offset");
        await client.close();
        await listener.close();
      });
    } finally {
      await pg.remove();
    }
  },
});
