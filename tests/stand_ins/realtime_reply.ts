/**
 * What the OpenAI stand-in answers, as a pure function of what it reads: the
 * response's context (its items, in order) and its configuration. Answers
 * come from the context, so a test can tell a restored conversation from a
 * fresh one, and can compute the answer it expects:
 *
 * - after a `function_call_output`: "The <name> function returned: <output>";
 * - when a function tool is offered and the last user text says
 *   `call <name>` (optionally `call <name> with {json}`), or `tool_choice`
 *   forces a function (`required`: the first one): a `function_call` with
 *   those arguments (`{}` without JSON); `tool_choice: "none"` never calls;
 * - otherwise: `You said: "<last user text>".`, then, when the context holds
 *   earlier items, `I remember <N> earlier item(s); the first thing you said
 *   was: "<first user text>".` (no user text at all: "Hello from the
 *   stand-in.");
 * - all of it after `[<instructions>] ` when the instructions are not the
 *   session's defaults, so tests can see which instructions took effect.
 *
 * User audio "says" its transcript: the one given, else what the stand-in
 * heard (a queued transcript, a marker, or "<N> ms of audio").
 * @module
 */

type Json = Record<string, unknown>;

/** One item of a response's context, with what the stand-in heard in its audio. */
export interface ContextItem {
  /** The GA item. */
  item: Json;
  /** The transcript the stand-in gives the item's audio when the item has none. */
  heard?: string | undefined;
}

/** What a response does under this context and configuration. */
export type Reply =
  | { kind: "text"; text: string }
  | { kind: "function_call"; name: string; arguments: string };

/** The configuration a reply depends on. */
export interface ReplyConfig {
  /** The effective instructions. */
  instructions: string;
  /** The tools offered; function tools can be called. */
  tools: readonly unknown[];
  /** `auto`, `none`, `required`, or `{ type: "function", name }`. */
  tool_choice: unknown;
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `[<instructions>] ` when they differ from the defaults (cut to 60 characters), else "". */
export function instructionsPrefix(instructions: string, defaults: string): string {
  if (instructions === defaults) return "";
  const chars = [...instructions];
  const shown = chars.length > 60 ? `${chars.slice(0, 59).join("")}…` : instructions;
  return `[${shown}] `;
}

/** What a user message says: its texts, and its audio by transcript (or what was heard). */
export function userText(c: ContextItem): string | undefined {
  const content = Array.isArray(c.item.content) ? c.item.content.filter(isObject) : [];
  const said = content.map((part) => {
    if (typeof part.text === "string") return part.text;
    if (part.type === "input_audio") {
      return typeof part.transcript === "string" ? part.transcript : c.heard ?? "";
    }
    return "";
  }).filter((t) => t.length > 0);
  return said.length > 0 ? said.join(" ") : undefined;
}

function isUser(c: ContextItem): boolean {
  return c.item.type === "message" && c.item.role === "user";
}

/** The function names offered by `tools`. */
function functionNames(tools: readonly unknown[]): string[] {
  return tools.filter(isObject)
    .filter((t) => t.type === "function" && typeof t.name === "string")
    .map((t) => t.name as string);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The arguments `call <name> with {json}` gives, compact; `{}` when there are none. */
function argumentsFor(text: string, name: string): string {
  const m = new RegExp(`\\bcall\\s+${escapeRegExp(name)}\\s+with\\s+(\\{.*\\})`, "is").exec(text);
  if (m) {
    try {
      const parsed: unknown = JSON.parse(m[1]!);
      if (isObject(parsed)) return JSON.stringify(parsed);
    } catch { /* not JSON: no arguments */ }
  }
  return "{}";
}

/** The answer to `context` under `config`; `defaults` are the session's first instructions. */
export function replyFor(
  context: readonly ContextItem[],
  config: ReplyConfig,
  defaults: string,
): Reply {
  const prefix = instructionsPrefix(config.instructions, defaults);
  const names = functionNames(config.tools);
  const last = context.at(-1);
  const lastUserIndex = context.findLastIndex(isUser);
  const lastUser = lastUserIndex >= 0 ? context[lastUserIndex]! : undefined;
  const lastText = lastUser ? userText(lastUser) ?? "" : "";
  const choice = config.tool_choice;
  const forced = isObject(choice) && choice.type === "function" && typeof choice.name === "string"
    ? choice.name
    : choice === "required"
    ? names[0]
    : undefined;
  const afterOutput = last?.item.type === "function_call_output";
  if (forced !== undefined) {
    return { kind: "function_call", name: forced, arguments: argumentsFor(lastText, forced) };
  }
  if (!afterOutput && choice !== "none") {
    const asked = names.find((n) =>
      new RegExp(`\\bcall\\s+${escapeRegExp(n)}(?![\\w-])`, "i").test(lastText)
    );
    if (asked !== undefined) {
      return { kind: "function_call", name: asked, arguments: argumentsFor(lastText, asked) };
    }
  }
  if (afterOutput) {
    const callId = last!.item.call_id;
    const call = context.find((c) => c.item.type === "function_call" && c.item.call_id === callId);
    const name = typeof call?.item.name === "string"
      ? `The ${call.item.name} function`
      : "The function";
    return { kind: "text", text: `${prefix}${name} returned: ${String(last!.item.output ?? "")}` };
  }
  if (!lastUser) {
    const n = context.length;
    const memory = n > 0 ? ` I remember ${n} earlier ${n === 1 ? "item" : "items"}.` : "";
    return { kind: "text", text: `${prefix}Hello from the stand-in.${memory}` };
  }
  let text = `${prefix}You said: "${lastText}".`;
  if (lastUserIndex > 0) {
    const firstUser = context.slice(0, lastUserIndex).find(isUser);
    const first = firstUser ? userText(firstUser) : undefined;
    text += ` I remember ${lastUserIndex} earlier ${lastUserIndex === 1 ? "item" : "items"}`;
    text += first !== undefined ? `; the first thing you said was: "${first}".` : ".";
  }
  return { kind: "text", text };
}
