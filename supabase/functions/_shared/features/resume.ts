/**
 * Resumable sessions (CONTRACT.md "Resumable sessions"): a `?session=`
 * conversation outlives its connection. While it runs, what OpenAI needs to
 * continue is kept in Postgres (through an outbox, off the message path);
 * a reconnect, on any instance, gives a new OpenAI session the stored
 * configuration and items, hides OpenAI's answers to that replay, and tells
 * the client `relay.session.resumed`. One connection per session: a newer
 * one replaces the older (`4409`).
 * @module
 */
import type { Database } from "../db/client.ts";
import { Outbox } from "../db/outbox.ts";
import {
  type ClaimedState,
  heartbeatPlan,
  type OwnerReport,
  type SessionRecord,
  type SessionStore,
  sessionStore,
  type SessionWrite,
} from "../db/sessions.ts";
import { refusal } from "../http/refusal.ts";
import { type Change, Conversation } from "../realtime/conversation.ts";
import { relayEventId } from "../realtime/event_id.ts";
import { eventTypeOf } from "../realtime/event_type.ts";
import {
  planReplay,
  REPLAY_ANSWER_TYPES,
  type ReplayPlan,
  ReplayWatch,
  resumedEvent,
} from "../realtime/replay.ts";
import { isSessionId } from "../realtime/session_id.ts";
import type { SessionPolicy } from "../realtime/session_policy.ts";
import { RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ConnectionHooks, ConnectionLink } from "../relay/hooks.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Message } from "../upstream/upstream.ts";
import type { RouteFeature } from "./feature.ts";

/** What the feature needs. */
export interface ResumeOptions {
  /** `RELAY_RESUME_TTL_S`. */
  readonly ttlS: number;
  /** The session policy: a replay passes its checks, and its pin goes again after a restore. */
  readonly policy: SessionPolicy | null;
  /** How long a replay may wait for OpenAI's answers before the client is let through anyway. */
  readonly replayTimeoutMs: number;
  /**
   * The most item bytes a replay sends (the newest items are kept): well
   * under `RELAY_MAX_BUFFERED_BYTES`, which a replay must not overrun.
   */
  readonly maxReplayBytes: number;
  readonly telemetry: Telemetry;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** The instance's database pool (shared with metering; the handler closes it). */
  readonly database: Database;
  /** @default the SQL store on `database` */
  readonly store?: SessionStore;
}

/** The server events the conversation or a replay reads; every other message is not parsed. */
const READ_TYPES: ReadonlySet<string> = new Set([
  ...REPLAY_ANSWER_TYPES,
  "conversation.item.input_audio_transcription.completed",
  "conversation.item.truncated",
  "conversation.item.deleted",
]);

/** How long `close()` keeps writing what is pending (inside the shutdown grace). */
const FLUSH_DEADLINE_MS = 2500;
/** Expired state is swept at most this often per instance. */
const SWEEP_EVERY_MS = 60_000;
/** Upstream messages held while the stored state loads (OpenAI sends one: `session.created`). */
const MAX_HELD_UPSTREAM = 64;

/** The resumable-sessions feature of the OpenAI route. */
export function resumeFeature(options: ResumeOptions): RouteFeature {
  const store = options.store ?? sessionStore(options.database, options.ttlS);
  const { telemetry, now } = options;
  const heartbeat = heartbeatPlan(options.ttlS);
  /** Live connections by session (this instance), to replace one at once. */
  const bySession = new Map<string, ResumeConnection>();
  /** Live connections by conn id, for what the database reports. */
  const byConn = new Map<string, ResumeConnection>();
  let timer: ReturnType<typeof setInterval> | undefined;
  let ticking: Promise<void> | null = null;
  let lastSweep = 0;
  let closed = false;

  const apply = (report: OwnerReport) => {
    for (const conn of report.owning) byConn.get(conn)?.confirmed();
    for (const conn of report.replaced) byConn.get(conn)?.replaced();
    for (const conn of report.missing) byConn.get(conn)?.restart();
  };
  const outbox = new Outbox<SessionRecord>({
    write: async (batch) => apply(await store.write(batch)),
    onFailure: (error, pending) =>
      telemetry.error("session.write_failed", { error: errorText(error), pending }),
  });

  const tick = () => {
    if (ticking !== null) return;
    const at = now();
    const owners = [...byConn.values()].filter((c) => c.owning).map((c) => c.ownership);
    const sweep = at - lastSweep >= SWEEP_EVERY_MS;
    ticking = (async () => {
      // A failed check changes nothing: a database outage must not cost live sessions.
      const report = await store.check(owners, at, at - heartbeat.renewAfterMs).catch(() => null);
      if (report) apply(report);
      if (sweep) {
        lastSweep = at;
        await store.sweep(at).catch(() => 0);
      }
    })().finally(() => (ticking = null));
  };
  const track = (connection: ResumeConnection) => {
    byConn.set(connection.conn, connection);
    timer ??= setInterval(tick, heartbeat.everyMs);
  };
  const untrack = (connection: ResumeConnection) => {
    if (byConn.get(connection.conn) === connection) byConn.delete(connection.conn);
    if (bySession.get(connection.key) === connection) bySession.delete(connection.key);
    if (byConn.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const shared: Shared = {
    store,
    outbox,
    telemetry,
    now,
    policy: options.policy,
    replayTimeoutMs: options.replayTimeoutMs,
    maxReplayBytes: options.maxReplayBytes,
    begin: (connection) => {
      // Same instance: the older connection learns at once.
      const older = bySession.get(connection.key);
      if (older && older !== connection) older.replaced();
      bySession.set(connection.key, connection);
      track(connection);
    },
    finish: untrack,
  };

  return {
    check: (url) => {
      const session = url.searchParams.get("session");
      return session === null || isSessionId(session) ? null : refusal("bad_session");
    },
    admit: (context) => {
      // A transcription session has no conversation to carry over: each
      // connection opens a new one, and ?session= is not used (README).
      if (context.session === null || context.intent === "transcription") return {};
      const connection = new ResumeConnection(shared, {
        conn: context.conn,
        user: context.user,
        session: context.session,
      });
      return { hooks: connection.hooks };
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await ticking;
      const left = await outbox.close(FLUSH_DEADLINE_MS);
      if (left > 0) {
        telemetry.error("session.write_failed", {
          error: "stopped with writes pending",
          pending: left,
        });
      }
    },
  };
}

/** What every connection of one feature shares. */
interface Shared {
  readonly store: SessionStore;
  readonly outbox: Outbox<SessionRecord>;
  readonly telemetry: Telemetry;
  readonly now: () => number;
  readonly policy: SessionPolicy | null;
  readonly replayTimeoutMs: number;
  readonly maxReplayBytes: number;
  begin(connection: ResumeConnection): void;
  finish(connection: ResumeConnection): void;
}

type Phase = "loading" | "replaying" | "live" | "ended";

/** One connection of a resumable session. */
class ResumeConnection {
  readonly conn: string;
  readonly user: string;
  readonly session: string;
  /** `user` and `session` as one map key. */
  readonly key: string;
  readonly hooks: ConnectionHooks;

  readonly #shared: Shared;
  #link: ConnectionLink | null = null;
  #phase: Phase = "loading";
  #upstreamOpen = false;
  /** `undefined` while loading; `null` when the load failed. */
  #claimed: ClaimedState | null | undefined = undefined;
  /** The generation this connection writes in; `null` while it is not known. */
  #generation: number | null = null;
  /**
   * Whether the database has this connection as the session's owner (its
   * claim or restart landed): only then can a check find it replaced.
   */
  #owning = false;
  /** A restart is queued and has not been seen to land. */
  #restarting = false;
  #conversation = new Conversation();
  #watch: ReplayWatch | null = null;
  #plan: ReplayPlan | null = null;
  #replayTimer: ReturnType<typeof setTimeout> | undefined;
  #startedAt = 0;
  /** Upstream messages that arrived while the state was loading, in order. */
  #held: Message[] = [];

  constructor(shared: Shared, ids: { conn: string; user: string; session: string }) {
    this.#shared = shared;
    this.conn = ids.conn;
    this.user = ids.user;
    this.session = ids.session;
    this.key = `${ids.user}\u0000${ids.session}`;
    this.hooks = {
      started: (link) => this.#started(link),
      upstreamOpened: () => {
        this.#upstreamOpen = true;
        this.#proceed();
      },
      fromUpstream: (data) => this.#fromUpstream(data),
      ended: () => this.#ended(),
    };
  }

  /** Whether the heartbeat should check this connection's ownership. */
  get owning(): boolean {
    return this.#owning && this.#phase !== "ended";
  }

  get ownership(): { user: string; session: string; conn: string } {
    return { user: this.user, session: this.session, conn: this.conn };
  }

  /** A write landed with this connection as the owner. */
  confirmed(): void {
    if (this.#phase === "ended") return;
    this.#owning = true;
    this.#restarting = false;
  }

  /** Another connection took the session over: close this one `4409`. */
  replaced(): void {
    if (this.#phase === "ended") return;
    this.#owning = false;
    this.#link?.end(RELAY_CLOSE.sessionReplaced);
  }

  /**
   * The state is gone from under this live connection (or never loaded):
   * start it afresh from here with everything this connection knows, so
   * nothing it goes on with is lost.
   */
  restart(): void {
    if (this.#phase === "ended" || this.#restarting) return;
    this.#restarting = true;
    this.#owning = false;
    this.#generation = null;
    this.#enqueue({ kind: "restart" });
    for (const change of this.#conversation.snapshot()) this.#record(change);
  }

  #started(link: ConnectionLink): void {
    this.#link = link;
    this.#startedAt = this.#shared.now();
    // Nothing the client sends may reach OpenAI before the replay has.
    link.holdClient();
    this.#shared.begin(this);
    // The load overlaps OpenAI's handshake: the upstream is connecting already.
    this.#shared.store.claim(this, this.conn, this.#startedAt).then(
      (state) => this.#loaded(state),
      (error: unknown) => {
        this.#shared.telemetry.error("session.load_failed", {
          conn: this.conn,
          user: this.user,
          error: errorText(error),
        });
        this.#loaded(null);
      },
    );
  }

  #loaded(state: ClaimedState | null): void {
    this.#claimed = state;
    if (state !== null) {
      this.#generation = state.generation;
      this.#owning = true;
      // Ended while loading: give the session up again.
      if (this.#phase === "ended") return this.#enqueue({ kind: "release" });
    } else if (this.#phase !== "ended") {
      this.restart();
    }
    this.#proceed();
  }

  /** Once both the state and the upstream are there: replay, or let everything through. */
  #proceed(): void {
    if (this.#phase !== "loading" || this.#claimed === undefined || !this.#upstreamOpen) return;
    const link = this.#link!;
    if (link.ending()) return;
    const state = this.#claimed;
    const held = this.#held;
    this.#held = [];
    if (state === null || (state.config === null && state.items.length === 0)) {
      // A fresh conversation: the client sees OpenAI's own session.created.
      this.#phase = "live";
      for (const message of held) {
        this.#read(message);
        link.sendToClient(message);
      }
      link.releaseClient();
      return;
    }
    const plan = planReplay({
      config: state.config,
      items: state.items,
      policy: this.#shared.policy,
      newId: relayEventId,
      maxBytes: this.#shared.maxReplayBytes,
    });
    this.#plan = plan;
    this.#watch = new ReplayWatch(plan);
    this.#conversation = new Conversation(state.items, plan.replayed, state.config);
    this.#phase = "replaying";
    for (const message of plan.messages) link.sendToUpstream(message);
    this.#replayTimer = setTimeout(() => this.#resumed(), this.#shared.replayTimeoutMs);
    for (const message of held) {
      const shown = this.#fromUpstream(message);
      if (shown !== null) link.sendToClient(shown);
    }
  }

  #fromUpstream(data: Message): Message | null {
    if (this.#phase === "loading") {
      this.#held.push(data);
      if (this.#held.length > MAX_HELD_UPSTREAM) this.#link?.end(RELAY_CLOSE.bufferFull);
      return null;
    }
    const event = this.#read(data);
    if (this.#phase !== "replaying" || event === null) return data;
    const verdict = this.#watch!.see(event.type, event.event);
    if (verdict.finished) this.#resumed();
    return verdict.hide ? null : data;
  }

  /** Feeds the conversation from a server message; returns it parsed when it is one we read. */
  #read(data: Message): { type: string; event: Record<string, unknown> } | null {
    if (typeof data !== "string") return null;
    const type = eventTypeOf(data);
    if (type === null || !READ_TYPES.has(type)) return null;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(data);
    } catch {
      return null;
    }
    for (const change of this.#conversation.apply(event)) this.#record(change);
    return { type, event };
  }

  /** The replay is over (or given up on): tell the client, then let its messages go. */
  #resumed(): void {
    if (this.#phase !== "replaying") return;
    clearTimeout(this.#replayTimer);
    this.#phase = "live";
    const watch = this.#watch!;
    const { items, skipped } = watch.counts;
    const link = this.#link!;
    link.sendToClient(resumedEvent(this.session, items, skipped));
    const fields = { conn: this.conn, user: this.user };
    this.#shared.telemetry.info("session.resumed", {
      ...fields,
      session: this.session,
      items,
      skipped,
      ms: this.#shared.now() - this.#startedAt,
    });
    // What OpenAI refused of the replay (the client never sees those errors): worth a look.
    if (watch.configFailed || watch.failed.size > 0 || !watch.finished) {
      this.#shared.telemetry.info("session.restore_incomplete", {
        ...fields,
        config_refused: watch.configFailed,
        items_refused: watch.failed.size,
        timed_out: !watch.finished,
      });
    }
    link.releaseClient();
  }

  #record(change: Change): void {
    switch (change.kind) {
      case "config":
        return this.#enqueue({ kind: "config", config: change.config });
      case "item":
        return this.#enqueue({
          kind: "item",
          id: change.id,
          position: change.position,
          item: change.item,
        });
      case "delete":
        return this.#enqueue({ kind: "delete", id: change.id });
    }
  }

  #enqueue(write: SessionWrite): void {
    this.#shared.outbox.add({
      user: this.user,
      session: this.session,
      conn: this.conn,
      generation: this.#generation,
      at: this.#shared.now(),
      ...write,
    });
  }

  #ended(): void {
    if (this.#phase === "ended") return;
    const wasLoading = this.#claimed === undefined;
    this.#phase = "ended";
    clearTimeout(this.#replayTimer);
    this.#held = [];
    this.#shared.finish(this);
    // Still loading: the load's answer decides (see #loaded).
    if (!wasLoading && (this.#owning || this.#restarting)) this.#enqueue({ kind: "release" });
    this.#owning = false;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : "unknown error";
}
