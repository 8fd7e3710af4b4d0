/**
 * What of an OpenAI Realtime conversation can be restored in a new session,
 * read from the server events of the current one (CONTRACT.md "Resumable
 * sessions"): the effective configuration from `session.updated`, and every
 * finished conversation item that has text, in conversation order, with
 * later transcripts, truncations and deletions applied.
 * @module
 */

type Json = Record<string, unknown>;

/**
 * The keys a `session.update` may set (GA `RealtimeSessionCreateRequest`,
 * less `model`, which is fixed when the session is created). Everything else
 * `session.updated` reports (`id`, `object`, `expires_at`, `model`,
 * `client_secret`, ...) is read-only, and OpenAI refuses an update carrying it.
 */
const SETTABLE_KEYS: readonly string[] = [
  "type",
  "audio",
  "include",
  "instructions",
  "max_output_tokens",
  "output_modalities",
  "parallel_tool_calls",
  "prompt",
  "reasoning",
  "tool_choice",
  "tools",
  "tracing",
  "truncation",
];

/** Top-level keys whose `null` means something (off); other nulls are defaults and left out. */
const NULLABLE_KEYS: readonly string[] = ["prompt", "tracing"];

/**
 * The part of a `session.updated` session that a new session can be given
 * back with `session.update`: the settable keys only, `type` always present.
 */
export function restorableConfig(session: unknown): Json | null {
  if (!isObject(session)) return null;
  const config: Json = {};
  for (const key of SETTABLE_KEYS) {
    if (!(key in session)) continue;
    const value = session[key];
    if (value === undefined || (value === null && !NULLABLE_KEYS.includes(key))) continue;
    config[key] = value;
  }
  if (typeof config.type !== "string") config.type = "realtime";
  return config;
}

/** A text-bearing part of a stored message. */
export type StoredPart =
  | { readonly type: "input_text" | "output_text"; readonly text: string }
  /** Audio is kept as its transcript only; `null` until (or unless) one is known. */
  | { readonly type: "input_audio" | "output_audio"; readonly transcript: string | null }
  /** A part with nothing a replay can carry (an image): kept so content indices still match. */
  | { readonly type: "omitted" };

/** A conversation item as the relay keeps it: what a replay needs, no audio or images. */
export type StoredItem =
  | {
    readonly type: "message";
    readonly role: "user" | "assistant" | "system";
    readonly content: readonly StoredPart[];
  }
  | {
    readonly type: "function_call";
    readonly call_id: string | null;
    readonly name: string;
    readonly arguments: string;
  }
  | { readonly type: "function_call_output"; readonly call_id: string; readonly output: string }
  /** Kept in its place so a resume can count it; never replayed (MCP items, images only...). */
  | { readonly type: "other"; readonly of: string };

const ROLES = ["user", "assistant", "system"] as const;
const TEXT_PARTS = ["input_text", "output_text"] as const;
const AUDIO_PARTS = ["input_audio", "output_audio"] as const;

/** The stored form of a server item (from `conversation.item.done`). */
export function storedItemOf(item: Json): StoredItem {
  const type = typeof item.type === "string" ? item.type : "unknown";
  if (type === "message") {
    const role = ROLES.find((r) => r === item.role);
    if (role === undefined || !Array.isArray(item.content)) return { type: "other", of: type };
    const content: StoredPart[] = [];
    for (const part of item.content) {
      if (!isObject(part)) continue;
      const text = TEXT_PARTS.find((t) => t === part.type);
      if (text !== undefined && typeof part.text === "string") {
        content.push({ type: text, text: part.text });
        continue;
      }
      const audio = AUDIO_PARTS.find((t) => t === part.type);
      if (audio !== undefined) {
        const transcript = typeof part.transcript === "string" ? part.transcript : null;
        content.push({ type: audio, transcript });
        continue;
      }
      // Images and anything newer are not kept: a replay can only carry text.
      content.push({ type: "omitted" });
    }
    return { type: "message", role, content };
  }
  if (type === "function_call" && typeof item.name === "string") {
    return {
      type: "function_call",
      call_id: typeof item.call_id === "string" ? item.call_id : null,
      name: item.name,
      arguments: typeof item.arguments === "string" ? item.arguments : "",
    };
  }
  if (type === "function_call_output" && typeof item.call_id === "string") {
    return {
      type: "function_call_output",
      call_id: item.call_id,
      output: typeof item.output === "string" ? item.output : "",
    };
  }
  return { type: "other", of: type };
}

/** The text of a part, or `null` when it has none (audio without a transcript, an empty one). */
export function partText(part: StoredPart): string | null {
  if (part.type === "omitted") return null;
  const text = "text" in part ? part.text : part.transcript;
  return text === null || text === "" ? null : text;
}

/** Whether a stored item can be replayed: messages with some text, function calls and outputs. */
export function isRestorable(item: StoredItem): boolean {
  switch (item.type) {
    case "message":
      return item.content.some((part) => partText(part) !== null);
    case "function_call":
    case "function_call_output":
      return true;
    default:
      return false;
  }
}

/** An item as loaded from storage: its stored id, its place, its content. */
export interface RestoredItem {
  readonly id: string;
  readonly position: number;
  readonly item: StoredItem;
}

/** A change to persist, as the conversation goes. */
export type Change =
  | { readonly kind: "config"; readonly config: Json }
  | {
    readonly kind: "item";
    readonly id: string;
    readonly position: number;
    readonly item: StoredItem;
  }
  | { readonly kind: "delete"; readonly id: string };

interface Node {
  /** The id OpenAI knows the item by in this session; `null` for stored items not replayed. */
  readonly upstream: string | null;
  /** The id it is stored under (its first session's id). */
  readonly stored: string;
  position: number;
  /** Set once the item is done (or was restored). */
  item: StoredItem | null;
  /** Loaded from storage: its content is stored already. */
  readonly restored: boolean;
  /** Transcripts that arrived before the item was done, by content index. */
  early?: Map<number, string>;
}

/** Gap between appended positions; halving it leaves room for ~50 insertions in one place. */
const STEP = 1024;

/**
 * The restorable state of one conversation, kept from its server events.
 * Order follows `previous_item_id` (insertion after a known item, at the
 * start for `null`), else arrival; positions are numbers between neighbours,
 * so an insertion rewrites one stored row, not every row after it.
 *
 * @example
 * ```ts
 * const conversation = new Conversation();
 * const changes = conversation.apply(JSON.parse(serverEventText));
 * ```
 */
export class Conversation {
  #nodes: Node[] = [];
  #byUpstream = new Map<string, Node>();
  #config: string | null = null;
  /** Positions were renumbered: every stored item must be written again. */
  #renumbered = false;

  /**
   * Starts from stored state: `replayed` maps the stored id of each item
   * replayed into the new session to the id it has there.
   */
  constructor(
    restored: readonly RestoredItem[] = [],
    replayed: ReadonlyMap<string, string> = new Map(),
    config: Json | null = null,
  ) {
    const sorted = [...restored].sort((a, b) => a.position - b.position);
    for (const { id, position, item } of sorted) {
      const upstream = replayed.get(id) ?? null;
      const node: Node = { upstream, stored: id, position, item, restored: true };
      this.#nodes.push(node);
      if (node.upstream !== null) this.#byUpstream.set(node.upstream, node);
    }
    if (config !== null) this.#config = JSON.stringify(config);
  }

  /** Stored ids in conversation order, with their positions (for tests and diagnostics). */
  order(): { id: string; position: number; done: boolean }[] {
    return this.#nodes.map((n) => ({ id: n.stored, position: n.position, done: n.item !== null }));
  }

  /** Everything to persist to store this conversation from nothing: its config, then its items. */
  snapshot(): Change[] {
    const config: Change[] = this.#config === null
      ? []
      : [{ kind: "config", config: JSON.parse(this.#config) }];
    return [...config, ...this.#everyItem()];
  }

  /** Applies one parsed server event; returns what to persist because of it. */
  apply(event: Json): Change[] {
    const changes = this.#apply(event);
    if (!this.#renumbered) return changes;
    this.#renumbered = false;
    return [...changes.filter((change) => change.kind !== "item"), ...this.#everyItem()];
  }

  #apply(event: Json): Change[] {
    switch (event.type) {
      case "session.updated":
        return this.#sessionUpdated(event.session);
      case "conversation.item.added":
      case "conversation.item.created":
        if (isObject(event.item)) this.#place(event.item, event.previous_item_id);
        return [];
      case "conversation.item.done":
        return isObject(event.item) ? this.#done(event.item, event.previous_item_id) : [];
      case "conversation.item.input_audio_transcription.completed":
        return this.#transcribed(event.item_id, event.content_index, event.transcript);
      case "conversation.item.truncated":
        return this.#truncated(event.item_id, event.content_index);
      case "conversation.item.deleted":
        return this.#deleted(event.item_id);
      default:
        return [];
    }
  }

  #sessionUpdated(session: unknown): Change[] {
    const config = restorableConfig(session);
    if (config === null) return [];
    const text = JSON.stringify(config);
    if (text === this.#config) return [];
    this.#config = text;
    return [{ kind: "config", config }];
  }

  /** The node for `item`, inserted where `previous` says when it is new. */
  #place(item: Json, previous: unknown): Node | null {
    if (typeof item.id !== "string" || item.id === "") return null;
    const known = this.#byUpstream.get(item.id);
    if (known) return known;
    let index = this.#nodes.length;
    if (previous === null) index = 0;
    else if (typeof previous === "string") {
      const after = this.#byUpstream.get(previous);
      if (after) index = this.#nodes.indexOf(after) + 1;
    }
    const node: Node = {
      upstream: item.id,
      stored: item.id,
      position: 0,
      item: null,
      restored: false,
    };
    this.#nodes.splice(index, 0, node);
    this.#byUpstream.set(item.id, node);
    this.#assignPosition(index);
    return node;
  }

  /** Gives the node at `index` a position between its neighbours, renumbering all when none is left. */
  #assignPosition(index: number): void {
    const before = this.#nodes[index - 1]?.position;
    const after = this.#nodes[index + 1]?.position;
    const position = positionBetween(before, after);
    if (position !== null) {
      this.#nodes[index]!.position = position;
      return;
    }
    this.#nodes.forEach((node, i) => (node.position = (i + 1) * STEP));
    this.#renumbered = true;
  }

  #done(item: Json, previous: unknown): Change[] {
    const node = this.#place(item, previous);
    if (node === null || node.restored) return [];
    let stored = storedItemOf(item);
    if (node.early && stored.type === "message") {
      stored = withTranscripts(stored, node.early);
      delete node.early;
    }
    node.item = stored;
    return [this.#itemChange(node)];
  }

  #transcribed(itemId: unknown, index: unknown, transcript: unknown): Change[] {
    if (typeof itemId !== "string" || typeof index !== "number" || typeof transcript !== "string") {
      return [];
    }
    const node = this.#byUpstream.get(itemId);
    if (!node) return [];
    if (node.item === null) {
      (node.early ??= new Map()).set(index, transcript);
      return [];
    }
    if (node.item.type !== "message") return [];
    const updated = withTranscripts(node.item, new Map([[index, transcript]]));
    if (updated === node.item) return [];
    node.item = updated;
    return [this.#itemChange(node)];
  }

  /** OpenAI deletes the transcript of truncated audio, so that no unheard text stays in context. */
  #truncated(itemId: unknown, index: unknown): Change[] {
    if (typeof itemId !== "string" || typeof index !== "number") return [];
    const node = this.#byUpstream.get(itemId);
    if (!node || node.item?.type !== "message") return [];
    const part = node.item.content[index];
    if (part === undefined || !("transcript" in part) || part.transcript === null) return [];
    const content = node.item.content.map((p, i) =>
      i === index ? { type: part.type, transcript: null } : p
    );
    node.item = { ...node.item, content };
    return [this.#itemChange(node)];
  }

  #deleted(itemId: unknown): Change[] {
    if (typeof itemId !== "string") return [];
    const node = this.#byUpstream.get(itemId);
    if (!node) return [];
    this.#byUpstream.delete(itemId);
    this.#nodes.splice(this.#nodes.indexOf(node), 1);
    return node.item === null ? [] : [{ kind: "delete", id: node.stored }];
  }

  #itemChange(node: Node): Change {
    return { kind: "item", id: node.stored, position: node.position, item: node.item! };
  }

  #everyItem(): Change[] {
    return this.#nodes.filter((node) => node.item !== null).map((node) => this.#itemChange(node));
  }
}

/**
 * A position strictly between two neighbours' (either may be absent), or
 * `null` when doubles have no room left between them.
 */
export function positionBetween(before?: number, after?: number): number | null {
  if (before === undefined && after === undefined) return STEP;
  if (after === undefined) return before! + STEP;
  if (before === undefined) return after - STEP;
  const middle = before + (after - before) / 2;
  return middle > before && middle < after ? middle : null;
}

function withTranscripts(
  item: Extract<StoredItem, { type: "message" }>,
  transcripts: ReadonlyMap<number, string>,
): Extract<StoredItem, { type: "message" }> {
  let changed = false;
  const content = item.content.map((part, i) => {
    const transcript = transcripts.get(i);
    if (transcript === undefined || !("transcript" in part) || part.transcript === transcript) {
      return part;
    }
    changed = true;
    return { type: part.type, transcript };
  });
  return changed ? { ...item, content } : item;
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
