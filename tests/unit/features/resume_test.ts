/**
 * The resume feature's hooks against a scripted store and a recording link,
 * for the orders a real run leaves to chance: the stored state arriving
 * before or after OpenAI's handshake, a load that fails, a connection that
 * ends while loading, a takeover reported by the database.
 */
import { conversationContext } from "../../helpers/context.ts";
import assert from "node:assert/strict";
import type { Database } from "../../../supabase/functions/_shared/db/client.ts";
import type {
  ClaimedState,
  OwnerReport,
  SessionRecord,
  SessionStore,
} from "../../../supabase/functions/_shared/db/sessions.ts";
import type { ConnectionContext } from "../../../supabase/functions/_shared/features/feature.ts";
import { isRefusal } from "../../../supabase/functions/_shared/features/feature.ts";
import { resumeFeature } from "../../../supabase/functions/_shared/features/resume.ts";
import { parseSessionPolicy } from "../../../supabase/functions/_shared/realtime/session_policy.ts";
import type { CloseFrame } from "../../../supabase/functions/_shared/relay/close_codes.ts";
import type {
  ConnectionHooks,
  ConnectionLink,
} from "../../../supabase/functions/_shared/relay/hooks.ts";
import { createTelemetry } from "../../../supabase/functions/_shared/telemetry/log.ts";

type Json = Record<string, unknown>;

/** A store whose answers the test gives, one call at a time. */
class ScriptedStore implements SessionStore {
  readonly written: SessionRecord[] = [];
  claims: { resolve: (s: ClaimedState) => void; reject: (e: Error) => void }[] = [];
  report: OwnerReport = { owning: [], replaced: [], missing: [] };
  claim(): Promise<ClaimedState> {
    return new Promise((resolve, reject) => this.claims.push({ resolve, reject }));
  }
  write(batch: readonly SessionRecord[]): Promise<OwnerReport> {
    this.written.push(...batch);
    return Promise.resolve(this.report);
  }
  check(): Promise<OwnerReport> {
    return Promise.resolve({ owning: [], replaced: [], missing: [] });
  }
  sweep(): Promise<number> {
    return Promise.resolve(0);
  }
}

/** What the feature did to its connection. */
class RecordingLink implements ConnectionLink {
  readonly conn = "c-test";
  readonly user = "u-test";
  readonly model = "gpt-realtime";
  readonly toClient: string[] = [];
  readonly toUpstream: string[] = [];
  holds = 0;
  ended: CloseFrame | null = null;
  sendToClient(data: string | ArrayBuffer): void {
    this.toClient.push(String(data));
  }
  sendToUpstream(data: string | ArrayBuffer): void {
    this.toUpstream.push(String(data));
  }
  holdClient(): void {
    this.holds++;
  }
  releaseClient(): void {
    this.holds--;
  }
  end(frame: CloseFrame): void {
    this.ended ??= frame;
  }
  ending(): boolean {
    return this.ended !== null;
  }
}

const noDatabase = {} as Database;
const lines: string[] = [];
const telemetry = createTelemetry("info", (line) => lines.push(line));
const SESSION = "a-session-id-of-22-chars";

function setUp(policyJson: Json | null = null) {
  const store = new ScriptedStore();
  const policy = policyJson === null ? null : parseSessionPolicy(JSON.stringify(policyJson)).policy;
  const feature = resumeFeature({
    ttlS: 900,
    policy,
    replayTimeoutMs: 5000,
    maxReplayBytes: 1 << 20,
    telemetry,
    now: Date.now,
    database: noDatabase,
    store,
  });
  const open = (conn = crypto.randomUUID()) => {
    const context: ConnectionContext = conversationContext({
      conn,
      user: "user-1",
      model: "gpt-realtime",
      session: SESSION,
    });
    const admission = feature.admit!(context);
    assert.ok(!(admission instanceof Promise) && !isRefusal(admission));
    const hooks = admission.hooks as ConnectionHooks;
    const link = new RecordingLink();
    hooks.started!(link);
    return { hooks, link, conn };
  };
  return { store, feature, open };
}

const event = (type: string, fields: Json = {}) => JSON.stringify({ type, ...fields });
const types = (messages: string[]) => messages.map((m) => JSON.parse(m).type);
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

const STATE: ClaimedState = {
  generation: 1,
  config: { type: "realtime", instructions: "stored" },
  items: [{
    id: "item_1",
    position: 1024,
    item: { type: "message", role: "user", content: [{ type: "input_text", text: "hello" }] },
  }],
};

Deno.test("resumeFeature.check refuses a malformed ?session= and ignores its absence", () => {
  const { feature } = setUp();
  const url = (q: string) => new URL(`http://relay/relay${q}`);
  assert.equal(feature.check!(url("")), null);
  assert.equal(feature.check!(url(`?session=${SESSION}`)), null);
  assert.equal(feature.check!(url("?session=short"))?.error, "bad_session");
  assert.equal(feature.check!(url("?session="))?.error, "bad_session");
  // No ?session=: no hooks at all, the connection is untouched.
  const admission = feature.admit!(
    conversationContext({ conn: "c", user: "u", model: "m", session: null }),
  );
  assert.deepEqual(admission, {});
});

Deno.test("resumeFeature holds the client and OpenAI's first events while loading; a fresh id shows them", async () => {
  const { store, open, feature } = setUp();
  const { hooks, link } = open();
  assert.equal(link.holds, 1, "client messages wait from the start");
  hooks.upstreamOpened!(link);
  const created = event("session.created", { session: { id: "sess_1" } });
  assert.equal(hooks.fromUpstream!(created, link), null, "held while loading");
  store.claims[0]!.resolve({ generation: 1, config: null, items: [] });
  await tick();
  assert.deepEqual(link.toClient, [created]);
  assert.deepEqual(link.toUpstream, []);
  assert.equal(link.holds, 0);
  hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
  await feature.close!();
  assert.deepEqual(store.written.map((r) => r.kind), ["release"]);
});

Deno.test("resumeFeature replays once both the state and OpenAI are there, in either order", async () => {
  for (const order of ["state first", "upstream first"]) {
    const { store, open, feature } = setUp({ session: { type: "realtime", instructions: "pin" } });
    const { hooks, link } = open();
    if (order === "state first") {
      store.claims[0]!.resolve(STATE);
      await tick();
      assert.deepEqual(link.toUpstream, [], "nothing before OpenAI answered");
      hooks.upstreamOpened!(link);
    } else {
      hooks.upstreamOpened!(link);
      assert.equal(hooks.fromUpstream!(event("session.created"), link), null);
      store.claims[0]!.resolve(STATE);
      await tick();
    }
    assert.deepEqual(types(link.toUpstream), [
      "session.update",
      "session.update",
      "conversation.item.create",
      "input_audio_buffer.clear",
    ], order);
    // Instructions are locked by the pin: the restore leaves them out, the pin goes again.
    assert.deepEqual(link.toUpstream.slice(0, 2).map((m) => JSON.parse(m).session), [
      { type: "realtime" },
      { type: "realtime", instructions: "pin" },
    ]);
    const item = JSON.parse(link.toUpstream[2]!).item;
    const clear = JSON.parse(link.toUpstream[3]!).event_id;
    const answers = [
      event("session.created"),
      event("session.updated", { session: { type: "realtime", instructions: "pin" } }),
      event("session.updated", { session: { type: "realtime", instructions: "pin" } }),
      event("conversation.item.added", { previous_item_id: null, item }),
      event("conversation.item.done", { previous_item_id: null, item }),
    ];
    for (const answer of order === "state first" ? answers : answers.slice(1)) {
      assert.equal(hooks.fromUpstream!(answer, link), null, answer);
    }
    assert.deepEqual(link.toClient, [], "nothing of the replay reaches the client");
    assert.equal(link.holds, 1);
    const other = event("rate_limits.updated", { rate_limits: [] });
    assert.equal(hooks.fromUpstream!(other, link), other, "the rest passes");
    assert.equal(
      hooks.fromUpstream!(event("input_audio_buffer.cleared", { event_id: clear }), link),
      null,
    );
    assert.deepEqual(link.toClient.map((m) => JSON.parse(m)), [
      { type: "relay.session.resumed", session: SESSION, items: 1, skipped: 0 },
    ]);
    assert.equal(link.holds, 0, "the client's messages go now");
    hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
    await feature.close!();
    // The pinned session's answer changed the stored configuration: kept.
    assert.deepEqual(store.written.map((r) => r.kind), ["config", "release"], order);
  }
});

Deno.test("resumeFeature starts afresh when the state cannot be loaded, and keeps what follows", async () => {
  const { store, open, feature } = setUp();
  const { hooks, link } = open();
  hooks.upstreamOpened!(link);
  const created = event("session.created");
  assert.equal(hooks.fromUpstream!(created, link), null);
  store.claims[0]!.reject(new Error("no answer from the database within 2000 ms"));
  await tick();
  assert.deepEqual(link.toClient, [created], "a fresh conversation, as OpenAI started it");
  assert.equal(link.holds, 0);
  const item = {
    id: "item_a",
    type: "message",
    role: "user",
    content: [{ type: "input_text", text: "hi" }],
  };
  hooks.fromUpstream!(event("conversation.item.done", { previous_item_id: null, item }), link);
  hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
  await feature.close!();
  assert.deepEqual(store.written.map((r) => [r.kind, r.generation]), [
    ["restart", null],
    ["item", null],
    ["release", null],
  ]);
  assert.ok(lines.some((l) => l.includes('"event":"session.load_failed"')));
});

Deno.test("resumeFeature gives a session back when its connection ended while it loaded", async () => {
  const { store, open, feature } = setUp();
  const { hooks } = open();
  hooks.ended!({ frame: { code: 1006, reason: "" }, by: "client" });
  store.claims[0]!.resolve(STATE);
  await tick();
  await feature.close!();
  assert.deepEqual(store.written.map((r) => r.kind), ["release"]);
});

Deno.test("resumeFeature closes a connection 4409 when the database says another took over", async () => {
  const { store, open, feature } = setUp();
  const { hooks, link, conn } = open();
  hooks.upstreamOpened!(link);
  store.claims[0]!.resolve({ generation: 1, config: null, items: [] });
  await tick();
  store.report = { owning: [], replaced: [conn], missing: [] };
  const item = { id: "item_b", type: "function_call_output", call_id: "c1", output: "42" };
  hooks.fromUpstream!(event("conversation.item.done", { previous_item_id: null, item }), link);
  await tick();
  await tick();
  assert.deepEqual(link.ended, { code: 4409, reason: "session_replaced" });
  hooks.ended!({ frame: { code: 4409, reason: "session_replaced" }, by: "relay" });
  await feature.close!();
});

Deno.test("resumeFeature replaces an older connection of the same session on this instance at once", async () => {
  const { store, open, feature } = setUp();
  const first = open();
  const second = open();
  assert.deepEqual(first.link.ended, { code: 4409, reason: "session_replaced" });
  assert.equal(second.link.ended, null);
  for (const claim of store.claims) claim.resolve({ generation: 1, config: null, items: [] });
  await tick();
  first.hooks.ended!({ frame: { code: 4409, reason: "session_replaced" }, by: "relay" });
  second.hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
  await feature.close!();
});
