/**
 * Property: what the session policy lets through means the same to every JSON
 * parser (CONTRACT.md "Session policy": "What OpenAI receives is exactly what
 * was checked"). Generated client messages, with duplicate keys, escaped and
 * case-varied keys, lone surrogates, deep nesting, non-objects and huge
 * numbers; for each one the relay's policy path would forward, the forwarded
 * text read first-wins, last-wins (`JSON.parse`) and first-wins with
 * case-folded keys (Go's struct matching) gives one event, and it passes.
 * A smaller run goes end to end through the real relay and the stand-in.
 *
 * `POLICY_PROPERTY_SEED=<n>` replays a run; the seed is printed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { GA_CLIENT_EVENTS } from "../../supabase/functions/_shared/realtime/client_events.ts";
import {
  checkClientMessage,
  policyVerdict,
} from "../../supabase/functions/_shared/realtime/policy_verdict.ts";
import { parseSessionPolicy } from "../../supabase/functions/_shared/realtime/session_policy.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { recordFigure, testCommand, withCheckedRelay } from "./support.ts";

const RUNS = 10_000;
const END_TO_END_RUNS = 400;
const SEED = Number(Deno.env.get("POLICY_PROPERTY_SEED") ?? Math.floor(Math.random() * 2 ** 31));

const POLICY_JSON = {
  session: {
    type: "realtime",
    instructions: "Pinned instructions.",
    tools: [],
    tool_choice: "auto",
    audio: { output: { voice: "marin" } },
  },
  locked: ["instructions", "tools", "tool_choice", "audio.output.voice", "prompt", "model"],
  max_output_tokens: 1024,
};
const POLICY = parseSessionPolicy(JSON.stringify(POLICY_JSON)).policy!;

// ---------------------------------------------------------------------------
// Readers with other duplicate-key semantics than JSON.parse's last-wins.

/**
 * A minimal JSON parser where the first of duplicate keys wins, optionally
 * folding keys as a case-insensitive matcher would. Throws on invalid JSON.
 */
function parseFirstWins(text: string, fold = false): unknown {
  let at = 0;
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at]!)) at++;
  };
  const expect = (char: string) => {
    if (text[at] !== char) throw new SyntaxError(`expected ${char} at ${at}`);
    at++;
  };
  const string = (): string => {
    const start = at;
    expect('"');
    while (text[at] !== '"') {
      if (at >= text.length) throw new SyntaxError("unterminated string");
      at += text[at] === "\\" ? 2 : 1;
    }
    at++;
    return JSON.parse(text.slice(start, at)) as string;
  };
  const value = (): unknown => {
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const object: Record<string, unknown> = {};
      space();
      if (text[at] === "}") return at++, object;
      for (;;) {
        space();
        const raw = string();
        // Folded here, not with the relay's foldKey, so the check stays independent.
        const key = fold ? raw.toUpperCase().toLowerCase() : raw;
        space();
        expect(":");
        const inner = value();
        if (!Object.hasOwn(object, key)) {
          Object.defineProperty(object, key, {
            value: inner,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
        space();
        if (text[at] === ",") at++;
        else return expect("}"), object;
      }
    }
    if (c === "[") {
      at++;
      const array: unknown[] = [];
      space();
      if (text[at] === "]") return at++, array;
      for (;;) {
        array.push(value());
        space();
        if (text[at] === ",") at++;
        else return expect("]"), array;
      }
    }
    if (c === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(
      text.slice(at, at + 400),
    );
    if (literal === null) throw new SyntaxError(`unexpected ${c} at ${at}`);
    at += literal[0].length;
    return JSON.parse(literal[0]);
  };
  const result = value();
  space();
  if (at !== text.length) throw new SyntaxError("trailing text");
  return result;
}

// ---------------------------------------------------------------------------
// Generated messages: trees rendered to text with chosen key and value spellings.

type KeyStyle = "plain" | "escaped" | "upper" | "title" | "long_s" | "kelvin" | "nul" | "lone";
type Key = { name: string; style: KeyStyle; at: number };
type Node =
  | { k: "obj"; entries: [Key, Node][] }
  | { k: "arr"; items: Node[] }
  | { k: "str"; value: string; style: "plain" | "escaped" | "nul" | "lone" }
  | { k: "raw"; text: string };

const NAMES = [
  "type",
  "session",
  "response",
  "item",
  "instructions",
  "tools",
  "tool_choice",
  "audio",
  "output",
  "voice",
  "input",
  "role",
  "max_output_tokens",
  "model",
  "prompt",
  "event_id",
  "content",
  "metadata",
  "speed",
];
/** Names for objects anywhere: the policy's, and as many others. */
const ANY_NAMES = [...NAMES, ..."abcdefghijklmnopqrst".split("").map((c) => `field_${c}`)];
const STRINGS = [
  "system",
  "user",
  "assistant",
  "realtime",
  "inf",
  "marin",
  "message",
  "x",
  ...GA_CLIENT_EVENTS,
];
const NUMBERS = ["1", "100", "1024", "1025", "0", "-5", "10.5", "1.0e3", "1024.0", "-0", "4096"];
/** Numbers a double cannot hold exactly: always refused. */
const AMBIGUOUS_NUMBERS = [
  "1e400",
  "-1e400",
  "1e-400",
  "12345678901234567890",
  "9007199254740993",
  "1024.0000000000000001",
];

const keyStyle = fc.oneof(
  { arbitrary: fc.constant<KeyStyle>("plain"), weight: 40 },
  fc.constantFrom<KeyStyle>("escaped", "upper", "title", "long_s", "kelvin", "nul", "lone"),
);
const keyOf = (names: readonly string[]) =>
  fc.record({ name: fc.constantFrom(...names), style: keyStyle, at: fc.nat(40) });
const str = (values: readonly string[]) =>
  fc.record({
    k: fc.constant("str" as const),
    value: fc.oneof({ arbitrary: fc.constantFrom(...values), weight: 5 }, fc.string()),
    style: fc.oneof(
      { arbitrary: fc.constant("plain" as const), weight: 40 },
      fc.constantFrom("escaped" as const, "nul" as const, "lone" as const),
    ),
  });
const num = fc.oneof(
  { arbitrary: fc.constantFrom(...NUMBERS), weight: 6 },
  fc.constantFrom(...AMBIGUOUS_NUMBERS),
  fc.integer({ min: -10, max: 5000 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
).map((text): Node => ({ k: "raw", text }));
const literal = fc.constantFrom("true", "false", "null").map((text): Node => ({ k: "raw", text }));
const obj = (entries: fc.Arbitrary<[Key, Node]>, maxLength = 4) =>
  fc.array(entries, { maxLength }).map((e): Node => ({ k: "obj", entries: e }));

const { node } = fc.letrec<{ node: Node; object: Node; array: Node }>((tie) => ({
  node: fc.oneof(
    { maxDepth: 3, depthIdentifier: "node" },
    str(STRINGS),
    num,
    literal,
    tie("object"),
    tie("array"),
  ),
  object: obj(fc.tuple(keyOf(ANY_NAMES), tie("node")), 3),
  array: fc.array(tie("node"), { maxLength: 3 }).map((items): Node => ({ k: "arr", items })),
}));

const item = obj(fc.oneof(
  fc.tuple(keyOf(["role"]), fc.oneof(str(["system", "user", "assistant", "System"]), node)),
  fc.tuple(keyOf(["type"]), str(["message", "function_call_output", "item_reference"])),
  fc.tuple(keyOf(["content", "id"]), node),
));
const audio = fc.oneof(
  {
    arbitrary: obj(fc.tuple(
      keyOf(["output", "input"]),
      fc.oneof(
        obj(fc.tuple(keyOf(["voice", "speed", "format"]), node)),
        literal,
        str(["x"]),
      ),
    )),
    weight: 4,
  },
  literal,
  node,
);
const body = obj(
  fc.oneof(
    fc.tuple(keyOf(["instructions", "tools", "tool_choice", "model", "prompt"]), node),
    fc.tuple(keyOf(["audio"]), audio),
    fc.tuple(keyOf(["max_output_tokens"]), fc.oneof(num, str(["inf", "100"]))),
    fc.tuple(keyOf(["type"]), str(["realtime", "transcription"])),
    fc.tuple(
      keyOf(["input"]),
      fc.array(item, { maxLength: 3 }).map((items): Node => ({ k: "arr", items })),
    ),
    fc.tuple(keyOf(["output_modalities", "truncation", "metadata", "conversation"]), node),
  ),
  5,
);
const TYPES = [...GA_CLIENT_EVENTS, "transcription_session.update", "error", "Session.Update"];

/** Client events: a type, the body that type carries, extra (often duplicate) members, any order. */
/** The member each event type carries its settings in. */
const BODY_OF: Record<string, string> = {
  "session.update": "session",
  "response.create": "response",
  "conversation.item.create": "item",
};
const bodyFor = (name: string) =>
  fc.tuple(
    keyOf([name]),
    name === "item" ? item : fc.oneof({ arbitrary: body, weight: 5 }, node),
  );
const typed = fc.oneof(
  { arbitrary: fc.constantFrom(...Object.keys(BODY_OF)), weight: 3 },
  fc.constantFrom(...TYPES),
).chain((type) =>
  fc.tuple(
    fc.tuple(
      fc.oneof(
        { arbitrary: fc.constant<Key>({ name: "type", style: "plain", at: 0 }), weight: 6 },
        keyOf(["type"]),
      ),
      fc.oneof(
        {
          arbitrary: fc.constant<Node>({ k: "str", value: type, style: "plain" }),
          weight: 6,
        },
        str([type]),
      ),
    ),
    // Mostly the member this type carries, sometimes another.
    fc.oneof(
      { arbitrary: bodyFor(BODY_OF[type] ?? "session"), weight: 4 },
      fc.constantFrom("session", "response", "item").chain(bodyFor),
    ),
  )
);
const event = fc.record({
  typeAndBody: typed,
  // Often none; else members that often duplicate the type or the body.
  extra: fc.oneof(
    { arbitrary: fc.constant([]), weight: 4 },
    fc.array(
      fc.tuple(
        keyOf(["type", "session", "response", "item", "event_id"]),
        fc.oneof(body, item, node),
      ),
      { maxLength: 2 },
    ),
  ),
  order: fc.nat(),
}).map(({ typeAndBody: [type, body], extra, order }): Node => {
  const entries: [Key, Node][] = [type, body, ...extra];
  // A deterministic rotation: the type need not come first.
  const shift = order % entries.length;
  return { k: "obj", entries: [...entries.slice(shift), ...entries.slice(0, shift)] };
});

/** An event with `depth` levels of nesting inside it. */
const deep = fc.tuple(fc.integer({ min: 50, max: 80 }), fc.boolean()).map(([depth, arrays]) => {
  let inner: Node = { k: "raw", text: "1" };
  for (let i = 0; i < depth; i++) {
    inner = arrays ? { k: "arr", items: [inner] } : {
      k: "obj",
      entries: [[{ name: "metadata", style: "plain", at: 0 }, inner]],
    };
  }
  const key = (name: string): Key => ({ name, style: "plain", at: 0 });
  return {
    k: "obj",
    entries: [
      [key("type"), { k: "str", value: "response.create", style: "plain" }],
      [key("response"), { k: "obj", entries: [[key("metadata"), inner]] }],
    ],
  } as Node;
});

const message = fc.record({
  tree: fc.oneof(
    { arbitrary: event, weight: 14 },
    { arbitrary: node, weight: 2 },
    { arbitrary: deep, weight: 1 },
  ),
  spaced: fc.boolean(),
  cut: fc.oneof({ arbitrary: fc.constant(-1), weight: 12 }, fc.nat()),
}).map(({ tree, spaced, cut }) => {
  const text = render(tree, spaced ? " " : "");
  // Now and then a truncated text: not JSON at all.
  return cut < 0 ? text : text.slice(0, cut % Math.max(1, text.length));
});

function escapeAt(text: string, at: number): string {
  if (text.length === 0) return text;
  const i = at % text.length;
  const hex = text.charCodeAt(i).toString(16).padStart(4, "0");
  return text.slice(0, i) + `\\u${hex}` + text.slice(i + 1);
}

/** A JSON string literal's body (between the quotes) for `value`, kept escaped as given. */
function body_(value: string): string {
  return JSON.stringify(value).slice(1, -1);
}

function renderKey(key: Key): string {
  const { name, style, at } = key;
  switch (style) {
    case "plain":
      return `"${name}"`;
    case "escaped":
      return `"${escapeAt(name, at)}"`;
    case "upper":
      return `"${name.toUpperCase()}"`;
    case "title":
      return `"${name.charAt(0).toUpperCase()}${name.slice(1)}"`;
    case "long_s":
      return `"${name.replaceAll("s", at % 2 ? "\u017f" : "\\u017f")}"`;
    case "kelvin":
      return `"${name.replaceAll("k", at % 2 ? "\u212a" : "\\u212a")}"`;
    case "nul":
      return `"${name}\\u0000"`;
    case "lone":
      return `"${name}${at % 2 ? "\\ud800" : "\\udc00"}"`;
  }
}

function render(tree: Node, gap: string): string {
  switch (tree.k) {
    case "raw":
      return tree.text;
    case "str": {
      const text = body_(tree.value);
      if (tree.style === "escaped") return `"${escapeAt(text.replace(/\\/g, ""), 0)}"`;
      if (tree.style === "nul") return `"${text}\\u0000"`;
      if (tree.style === "lone") return `"${text}\\ud83d"`;
      return `"${text}"`;
    }
    case "arr":
      return `[${gap}${tree.items.map((i) => render(i, gap)).join(`,${gap}`)}${gap}]`;
    case "obj":
      return `{${gap}${
        tree.entries.map(([key, value]) => `${renderKey(key)}${gap}:${gap}${render(value, gap)}`)
          .join(`,${gap}`)
      }${gap}}`;
  }
}

// ---------------------------------------------------------------------------

/** Every reading of what goes upstream passes the policy, and all readings agree. */
function assertForwardedIsSafe(original: string, forward: string): void {
  const readings = {
    "last-wins": JSON.parse(forward) as unknown,
    "first-wins": parseFirstWins(forward),
    "first-wins, case-folded keys": parseFirstWins(forward, true),
  };
  for (const [name, value] of Object.entries(readings)) {
    const verdict = policyVerdict(POLICY, value);
    assert.ok(verdict.pass, `${name} reading fails the policy: ${forward}`);
  }
  assert.ok(
    jsonEqual(readings["first-wins"], readings["last-wins"]),
    `readings differ: ${forward}`,
  );
  // What was sent and what goes upstream are the same event, to either reader.
  assert.ok(jsonEqual(JSON.parse(original), readings["last-wins"]), `not JSON-equal: ${original}`);
  assert.ok(jsonEqual(parseFirstWins(original), readings["first-wins"]), `first-wins: ${original}`);
}

/** JSON equality: numbers by value (-0 is 0, as JSON.stringify writes it), objects unordered. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (typeof a === "number" || typeof b === "number") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
      a.every((value, i) => jsonEqual(value, b[i]));
  }
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length &&
      keys.every((key) =>
        Object.hasOwn(b, key) &&
        jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])
      );
  }
  return a === b;
}

Deno.test(`policy property: ${RUNS} generated client messages, every forwarded one passes under every reading`, () => {
  console.log(`policy property: seed ${SEED} (replay with POLICY_PROPERTY_SEED=${SEED})`);
  const counts = { forwarded: 0, refused: 0, reSerialised: 0 };
  const codes = new Map<string, number>();
  fc.assert(
    fc.property(message, (text) => {
      const decision = checkClientMessage(POLICY, text);
      if (!decision.pass) {
        counts.refused++;
        codes.set(decision.code, (codes.get(decision.code) ?? 0) + 1);
        return;
      }
      counts.forwarded++;
      if (decision.forward !== text) counts.reSerialised++;
      assertForwardedIsSafe(text, decision.forward);
    }),
    { numRuns: RUNS, seed: SEED },
  );
  console.log(
    `policy property: ${counts.forwarded} forwarded (${counts.reSerialised} re-serialised), ` +
      `${counts.refused} refused: ${JSON.stringify(Object.fromEntries(codes))}`,
  );
  // The generator must reach both sides and every kind of refusal that matters here.
  assert.ok(counts.forwarded >= RUNS * 0.1, "enough forwarded messages");
  assert.ok(counts.refused >= RUNS * 0.1, "enough refused messages");
  for (const code of ["ambiguous_json", "locked_field", "max_output_tokens", "system_message"]) {
    assert.ok((codes.get(code) ?? 0) > 20, `the generator reaches ${code}`);
  }
  recordFigure({
    area: "Session policy",
    tried:
      `${RUNS} generated client messages (duplicate, escaped and case-varied keys, lone surrogates, deep nesting, non-objects, huge numbers, truncated texts), seed ${SEED}`,
    counts: { messages: RUNS, forwarded: counts.forwarded, refused: counts.refused },
    held:
      "every forwarded text, read last-wins, first-wins and first-wins with case-folded keys, is one event that passes the policy and equals what the client sent",
    command: testCommand("policy_property_test.ts", "policy property"),
  });
});

Deno.test(`policy property end to end: ${END_TO_END_RUNS} messages through the real relay, the stand-in receives what was checked`, async () => {
  const samples = fc.sample(message, { numRuns: END_TO_END_RUNS, seed: SEED });
  const env = { RELAY_SESSION_POLICY: JSON.stringify(POLICY_JSON), RELAY_RATE_LIMIT: "100000" };
  const counts = { forwarded: 0, refused: 0 };
  await withCheckedRelay({ env }, async (relay, secret) => {
    relay.openai.behaviour = { kind: "echo" };
    const token = secret(await relay.auth.signEs256());
    let client: TestClient | null = null;
    let upstream = -1;
    let refusedHere = 0;
    for (const generated of samples) {
      // A WebSocket carries UTF-8: a lone surrogate arrives as U+FFFD.
      const text = generated.toWellFormed();
      if (client === null || refusedHere === 15) {
        await client?.close();
        client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
        await client.opened;
        await client.waitForMessages(1); // the pin, echoed: the stand-in has the connection
        upstream = relay.openai.connections.length - 1;
        refusedHere = 0;
      }
      const open: TestClient = client;
      const before: number = open.messages.length;
      const received = relay.openai.connections[upstream]!.received;
      const upstreamBefore = received.length;
      open.socket.send(text);
      const [reply] = (await open.waitForMessages(before + 1)).slice(before);
      const expected = checkClientMessage(POLICY, text);
      const event = JSON.parse(reply as string);
      if (event.type === "error" && event.error?.code === "relay_policy_violation") {
        assert.ok(!expected.pass, `the relay refused what the policy passes: ${text}`);
        assert.equal(event.error.param, expected.param);
        assert.equal(received.length, upstreamBefore, "a refusal reaches nobody upstream");
        counts.refused++;
        refusedHere++;
      } else {
        assert.ok(expected.pass, `the relay forwarded what the policy refuses: ${text}`);
        await until(
          () => received.length === upstreamBefore + 1,
          2000,
          "the stand-in to receive it",
        );
        const got = received.at(-1)!.data as string;
        assert.equal(got, expected.forward, "the stand-in received exactly what was checked");
        assert.equal(reply, got, "and echoed it");
        assertForwardedIsSafe(text, got);
        counts.forwarded++;
      }
    }
    await client?.close();
  });
  console.log(
    `policy property end to end: ${counts.forwarded} forwarded, ${counts.refused} refused`,
  );
  assert.ok(counts.forwarded > 20 && counts.refused > 20);
});
