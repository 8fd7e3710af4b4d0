/**
 * Giving a new OpenAI session a stored conversation back (CONTRACT.md
 * "Resumable sessions"): the client events that replay it, and which of
 * OpenAI's answers to them the client must not see.
 * @module
 */
import { isRestorable, partText, type RestoredItem, type StoredItem } from "./conversation.ts";
import { policyVerdict } from "./policy_verdict.ts";
import type { SessionPolicy } from "./session_policy.ts";

type Json = Record<string, unknown>;

const encoder = new TextEncoder();

/** What to send a new session, and how to recognise its answers. */
export interface ReplayPlan {
  /** Client events to send upstream, in order (each a JSON text). */
  readonly messages: readonly string[];
  /** Stored id → the relay's id for the item in the new session. */
  readonly replayed: ReadonlyMap<string, string>;
  /** Event id of each replayed item's `conversation.item.create` → its stored id. */
  readonly itemEvents: ReadonlyMap<string, string>;
  /** Event ids of the `session.update`s sent (the restore, then the policy's pin again). */
  readonly configEvents: ReadonlySet<string>;
  /** The event whose answer (`input_audio_buffer.cleared`) closes the replay. */
  readonly sentinel: string;
  /** Items replayed, and items that could not be (no text: audio without transcript, ...). */
  readonly items: number;
  readonly skipped: number;
}

/** What {@linkcode planReplay} works from. */
export interface ReplayInput {
  /** The stored configuration, or `null` when none was kept. */
  readonly config: Json | null;
  /** Stored items in conversation order. */
  readonly items: readonly RestoredItem[];
  /**
   * The session policy, if any. The replay passes its checks as a client's
   * own messages would (what it refuses is left out: locked fields of the
   * configuration, system messages while the instructions are locked), and
   * its pinned session is sent again after the restored configuration, so a
   * stored configuration never undoes the policy, whichever went first.
   */
  readonly policy: SessionPolicy | null;
  /** A fresh id (`relay_<unique>`, at most 32 characters, OpenAI's limit for item ids). */
  readonly newId: () => string;
  /**
   * The most item bytes (UTF-8) to replay: the oldest items past it are left
   * out (and counted as skipped), newest kept, so a long conversation cannot
   * overrun the connection's buffer. OpenAI's context holds far less anyway.
   * @default Infinity
   */
  readonly maxBytes?: number;
}

/**
 * The replay of a stored conversation: the configuration as `session.update`
 * (then the policy's pin), every restorable item as `conversation.item.create`
 * with a relay id, and last an `input_audio_buffer.clear` (the new session's
 * buffer is empty) whose answer says OpenAI has answered everything before it.
 */
export function planReplay(input: ReplayInput): ReplayPlan {
  const messages: string[] = [];
  const configEvents = new Set<string>();
  const replayed = new Map<string, string>();
  const itemEvents = new Map<string, string>();
  let skipped = 0;
  const policy = input.policy === null ? null : relaysOwn(input.policy);
  const config = input.config === null || policy === null
    ? input.config
    : configUnderPolicy(input.config, policy);
  if (config !== null) {
    for (const session of [config, input.policy?.session ?? null]) {
      if (session === null) continue;
      const eventId = input.newId();
      configEvents.add(eventId);
      messages.push(JSON.stringify({ type: "session.update", event_id: eventId, session }));
    }
  }
  const creates: { stored: string; id: string; eventId: string; message: string }[] = [];
  for (const stored of input.items) {
    if (!isRestorable(stored.item)) {
      skipped++;
      continue;
    }
    const id = input.newId();
    const eventId = input.newId();
    const create = {
      type: "conversation.item.create",
      event_id: eventId,
      item: replayItem(stored.item, id),
    };
    if (policy !== null && !policyVerdict(policy, create).pass) {
      skipped++;
      continue;
    }
    const message = JSON.stringify(create);
    creates.push({ stored: stored.id, id, eventId, message });
  }
  // Newest first until the budget is spent: a conversation's end matters most.
  let budget = input.maxBytes ?? Infinity;
  let first = creates.length;
  while (first > 0) {
    const bytes = encoder.encode(creates[first - 1]!.message).byteLength;
    if (bytes > budget) break;
    budget -= bytes;
    first--;
  }
  skipped += first;
  for (const create of creates.slice(first)) {
    replayed.set(create.stored, create.id);
    itemEvents.set(create.eventId, create.stored);
    messages.push(create.message);
  }
  const sentinel = input.newId();
  messages.push(JSON.stringify({ type: "input_audio_buffer.clear", event_id: sentinel }));
  return {
    messages,
    replayed,
    itemEvents,
    configEvents,
    sentinel,
    items: replayed.size,
    skipped,
  };
}

/** The relay's own events are not the client's to choose: only the policy's content rules apply. */
function relaysOwn(policy: SessionPolicy): SessionPolicy {
  return {
    ...policy,
    allowedEvents: [...policy.allowedEvents, "session.update", "conversation.item.create"],
  };
}

/** Most fields a configuration could have to drop: a bound on the loop below. */
const MAX_DROPS = 64;

/**
 * `config` less what the policy refuses a client's `session.update` (locked
 * fields, `max_output_tokens` over the cap), or `null` when it refuses more
 * than fields.
 */
export function configUnderPolicy(config: Json, policy: SessionPolicy): Json | null {
  let current: Json = structuredClone(config);
  for (let i = 0; i < MAX_DROPS; i++) {
    const verdict = policyVerdict(policy, { type: "session.update", session: current });
    if (verdict.pass) return current;
    const path = verdict.param?.split(".") ?? [];
    if (path[0] !== "session" || path.length < 2) return null;
    current = withoutPath(current, path.slice(1));
  }
  return null;
}

/** `object` without the value at `path` (and only that). */
function withoutPath(object: Json, path: readonly string[]): Json {
  const [head, ...rest] = path;
  const out: Json = { ...object };
  if (head === undefined || !(head in out)) return out;
  const value = out[head];
  if (rest.length === 0 || !isObject(value)) delete out[head];
  else out[head] = withoutPath(value, rest);
  return out;
}

/**
 * The `conversation.item.create` item for a stored one, under `id`: user
 * audio becomes `input_text` with its transcript, assistant audio becomes
 * `output_text` with its transcript (OpenAI cannot take assistant audio
 * back), function calls and outputs go as they were.
 */
export function replayItem(item: StoredItem, id: string): Json {
  switch (item.type) {
    case "message": {
      const kind = item.role === "assistant" ? "output_text" : "input_text";
      const content = item.content.flatMap((part) => {
        const text = partText(part);
        return text === null ? [] : [{ type: kind, text }];
      });
      return { id, type: "message", role: item.role, content };
    }
    case "function_call":
      return {
        id,
        type: "function_call",
        ...(item.call_id === null ? {} : { call_id: item.call_id }),
        name: item.name,
        arguments: item.arguments,
      };
    case "function_call_output":
      return { id, type: "function_call_output", call_id: item.call_id, output: item.output };
    default:
      throw new TypeError(`replayItem: a ${item.of} item cannot be replayed`);
  }
}

/** The event the client gets once its conversation is back. */
export function resumedEvent(session: string, items: number, skipped: number): string {
  return JSON.stringify({ type: "relay.session.resumed", session, items, skipped });
}

/** The server event types the replay's answers come as (the rest are never hidden). */
export const REPLAY_ANSWER_TYPES: ReadonlySet<string> = new Set([
  "session.created",
  "session.updated",
  "conversation.item.added",
  "conversation.item.created",
  "conversation.item.done",
  "input_audio_buffer.cleared",
  "error",
]);

/** What {@linkcode ReplayWatch.see} decided about one server event. */
export interface ReplayVerdict {
  /** Keep it from the client. */
  readonly hide: boolean;
  /** This was the last answer: the replay is over. */
  readonly finished: boolean;
}

const PASS: ReplayVerdict = { hide: false, finished: false };
const HIDE: ReplayVerdict = { hide: true, finished: false };

/**
 * Sorts the new session's events while a replay is under way: its answers
 * are hidden (`session.created`, every `session.updated` before the end,
 * item events for replayed ids, errors naming the replay's events), the rest
 * pass. An error for a replayed item counts it as skipped.
 */
export class ReplayWatch {
  readonly #plan: ReplayPlan;
  readonly #itemIds: ReadonlySet<string>;
  #failed = new Set<string>();
  #configFailed = false;
  #finished = false;

  constructor(plan: ReplayPlan) {
    this.#plan = plan;
    this.#itemIds = new Set(plan.replayed.values());
  }

  /** Items OpenAI took, and items skipped (not restorable, or refused by OpenAI). */
  get counts(): { items: number; skipped: number } {
    return {
      items: this.#plan.items - this.#failed.size,
      skipped: this.#plan.skipped + this.#failed.size,
    };
  }

  /** Stored ids of the items OpenAI refused. */
  get failed(): ReadonlySet<string> {
    return this.#failed;
  }

  /** Whether OpenAI refused the restored configuration (or the pin after it). */
  get configFailed(): boolean {
    return this.#configFailed;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Judges one parsed server event of type `type`. */
  see(type: string, event: Json): ReplayVerdict {
    if (this.#finished) return PASS;
    switch (type) {
      case "session.created":
      case "session.updated":
        return HIDE;
      case "conversation.item.added":
      case "conversation.item.created":
      case "conversation.item.done": {
        const item = event.item;
        const id = isObject(item) ? item.id : undefined;
        return typeof id === "string" && this.#itemIds.has(id) ? HIDE : PASS;
      }
      case "input_audio_buffer.cleared":
        return this.#finish();
      case "error": {
        const error = event.error;
        const about = isObject(error) ? error.event_id : undefined;
        if (typeof about !== "string") return PASS;
        if (about === this.#plan.sentinel) return this.#finish();
        const stored = this.#plan.itemEvents.get(about);
        if (stored !== undefined) {
          this.#failed.add(stored);
          return HIDE;
        }
        if (this.#plan.configEvents.has(about)) {
          this.#configFailed = true;
          return HIDE;
        }
        return PASS;
      }
      default:
        return PASS;
    }
  }

  #finish(): ReplayVerdict {
    this.#finished = true;
    return { hide: true, finished: true };
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
