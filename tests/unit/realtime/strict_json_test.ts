import assert from "node:assert/strict";
import {
  decimalOf,
  foldKey,
  MAX_DEPTH,
  readStrictJson,
} from "../../../supabase/functions/_shared/realtime/strict_json.ts";

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

Deno.test("readStrictJson accepts plain JSON and forwards it unchanged when it has no escape", async (t) => {
  const cases: [string, string, unknown][] = [
    ["an object", '{"type":"response.create"}', { type: "response.create" }],
    ["whitespace kept", ' {\n\t"a" : [ 1 , 2 ] }\r\n', { a: [1, 2] }],
    ["scalars", '[true,false,null,"x",0,-1,0.5,1.5e3,1E3]', [
      true,
      false,
      null,
      "x",
      0,
      -1,
      0.5,
      1500,
      1000,
    ]],
    ["a top-level string", '"hi"', "hi"],
    ["empty containers", '{"a":{},"b":[]}', { a: {}, b: [] }],
    ["keys differing in content", '{"a":1,"b":{"a":2}}', { a: 1, b: { a: 2 } }],
    ["the same key in sibling objects", '[{"a":1},{"a":2}]', [{ a: 1 }, { a: 2 }]],
    ["a __proto__ key is data", '{"__proto__":{"x":1}}', JSON.parse('{"__proto__":{"x":1}}')],
    ["non-ASCII text", '{"é":"😀"}', { "é": "😀" }],
    ["the smallest double", "5e-324", 5e-324],
    ["exactly held integers", "[9007199254740992, 123456789012345, 1e21]", [
      2 ** 53,
      123456789012345,
      1e21,
    ]],
    ["trailing zeros", "[1.50, 100, 1.0e2]", [1.5, 100, 100]],
    ["negative zero", "-0", -0],
    ["at the depth limit", nested(MAX_DEPTH), JSON.parse(nested(MAX_DEPTH))],
  ];
  for (const [name, text, value] of cases) {
    await t.step(name, () => {
      const read = readStrictJson(text);
      assert.ok(read.ok, `${name}: ${JSON.stringify(read)}`);
      assert.deepEqual(read.value, value);
      assert.equal(read.text, text);
    });
  }
});

Deno.test("readStrictJson re-serialises a text with escapes, JSON-equal", async (t) => {
  const cases: [string, string, string][] = [
    ["an escaped key", '{"instr\\u0075ctions":"x"}', '{"instructions":"x"}'],
    ["escaped quotes and newlines", '{"a":"say \\"hi\\"\\n"}', '{"a":"say \\"hi\\"\\n"}'],
    ["a surrogate pair", '"\\ud83d\\ude00"', '"😀"'],
    ["an escaped backslash before a quote", '["a\\\\","b"]', '["a\\\\","b"]'],
    ["escaped solidus", '"\\/"', '"/"'],
  ];
  for (const [name, text, forwarded] of cases) {
    await t.step(name, () => {
      const read = readStrictJson(text);
      assert.ok(read.ok, `${name}: ${JSON.stringify(read)}`);
      assert.equal(read.text, forwarded);
      assert.deepEqual(JSON.parse(read.text), JSON.parse(text));
    });
  }
});

Deno.test("readStrictJson refuses what another parser could read differently", async (t) => {
  const cases: [string, string, string][] = [
    ["a duplicate key", '{"a":1,"a":2}', "ambiguous_json"],
    ["a duplicate key deep down", '{"x":[{"y":{"a":1,"b":2,"a":3}}]}', "ambiguous_json"],
    [
      "a key duplicated by an escape",
      '{"instructions":1,"instr\\u0075ctions":2}',
      "ambiguous_json",
    ],
    [
      "a key duplicated by an escaped first letter",
      '{"\\u0074ype":"a","type":"b"}',
      "ambiguous_json",
    ],
    ["a key duplicated by case", '{"instructions":1,"Instructions":2}', "ambiguous_json"],
    ["a key duplicated by the Kelvin sign", '{"k":1,"\\u212a":2}', "ambiguous_json"],
    ["a key duplicated by the long s", '{"s":1,"\\u017f":2}', "ambiguous_json"],
    ["a lone high surrogate in a key", '{"a\\ud800":1}', "ambiguous_json"],
    ["a lone low surrogate in a key", '{"\\udc00":1}', "ambiguous_json"],
    ["a raw lone surrogate in a key", '{"a\ud800":1}', "ambiguous_json"],
    ["a lone surrogate in a value", '{"a":"\\udfff"}', "ambiguous_json"],
    ["a reversed surrogate pair", '"\\ude00\\ud83d"', "ambiguous_json"],
    ["a raw lone surrogate in a value", '"\ud800"', "ambiguous_json"],
    ["a NUL in a key", '{"instructions\\u0000":1}', "ambiguous_json"],
    ["a control character in a key", '{"a\\n":1}', "ambiguous_json"],
    ["a number beyond a double", "1e400", "ambiguous_json"],
    ["a negative number beyond a double", '{"a":-1e309}', "ambiguous_json"],
    ["an integer beyond 2^53 that rounds", "12345678901234567890", "ambiguous_json"],
    ["2^53 + 1", "9007199254740993", "ambiguous_json"],
    ["too many decimals", "0.10000000000000000000001", "ambiguous_json"],
    ["an underflow to zero", "1e-400", "ambiguous_json"],
    ["one level too deep", nested(MAX_DEPTH + 1), "too_deep"],
    ["far too deep (no stack blown)", nested(200_000), "too_deep"],
  ];
  for (const [name, text, problem] of cases) {
    await t.step(name, () => {
      const read = readStrictJson(text);
      assert.ok(!read.ok, `${name} was accepted`);
      assert.equal(read.problem, problem);
      assert.ok(read.message.length > 0);
    });
  }
});

Deno.test("readStrictJson refuses what is not JSON, with a clear problem", async (t) => {
  const cases: [string, string][] = [
    ["empty", ""],
    ["blank", "   "],
    ["truncated", '{"a":'],
    ["unclosed string", '{"a":"b}'],
    ["trailing comma in an object", '{"a":1,}'],
    ["trailing comma in an array", "[1,]"],
    ["two values", "{} {}"],
    ["a single-quoted key", "{'a':1}"],
    ["a bare key", "{a:1}"],
    ["a comment", '{"a":1 /* x */}'],
    ["NaN", "NaN"],
    ["a leading zero", "01"],
    ["a plus sign", "+1"],
    ["a lone minus", "-"],
    ["a byte order mark", '\ufeff{"a":1}'],
    ["a non-breaking space", '{\u00a0"a":1}'],
    ["a raw control character in a string", '"a\u0001"'],
    ["a bad escape", '"\\x41"'],
    ["mismatched brackets", "[}"],
    ["a missing colon", '{"a" 1}'],
    ["a stray close", "]"],
    ["a backslash outside strings", '{"a":1}\\'],
    ["true misspelt", "tru"],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => {
      const read = readStrictJson(text);
      assert.ok(!read.ok, `${name} was accepted`);
      assert.equal(read.problem, "invalid_json");
    });
  }
});

Deno.test("readStrictJson reads a 40 KB audio append and forwards the same string", () => {
  const audio = btoa(String.fromCharCode(...new Uint8Array(30_000).map((_, i) => i * 7)));
  const text = JSON.stringify({ type: "input_audio_buffer.append", audio, event_id: "e1" });
  const read = readStrictJson(text);
  assert.ok(read.ok);
  assert.equal(read.text, text, "no re-serialisation for a message without escapes");
  assert.equal((read.value as { audio: string }).audio, audio);
});

Deno.test("readStrictJson stays linear on hostile input", () => {
  const cases = [
    // Many strings, one backslash at the very end: each string must not rescan the rest.
    "[" + Array.from({ length: 50_000 }, () => '"aaaaaaaaaa"').join(",") + ',"\\n"]',
    // Long runs of escaped backslashes before quotes.
    '"' + "\\\\".repeat(200_000) + '"',
    // An object with many keys.
    "{" + Array.from({ length: 50_000 }, (_, i) => `"k${i}":${i}`).join(",") + "}",
  ];
  for (const text of cases) {
    const started = performance.now();
    const read = readStrictJson(text);
    assert.ok(read.ok);
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms for ${text.length} characters`);
  }
});

Deno.test("decimalOf gives one spelling per decimal value", () => {
  const same: [string, string][] = [
    ["1", "1.0"],
    ["1000", "1E3"],
    ["1e+21", "1000000000000000000000"],
    ["0.5", "5e-1"],
    ["0", "-0"],
    ["0", "0.000e99"],
    ["-1.25", "-125e-2"],
  ];
  for (const [a, b] of same) assert.equal(decimalOf(a), decimalOf(b), `${a} = ${b}`);
  const different: [string, string][] = [["1", "10"], ["1", "-1"], ["0.1", "0.10000000000000001"]];
  for (const [a, b] of different) assert.notEqual(decimalOf(a), decimalOf(b), `${a} != ${b}`);
});

Deno.test("foldKey folds case the way case-insensitive matchers do", () => {
  const table: [string, string][] = [
    ["instructions", "instructions"],
    ["Instructions", "instructions"],
    ["INSTRUCTIONS", "instructions"],
    ["\u212a", "k"],
    ["\u017f", "s"],
    ["max_output_tokens", "max_output_tokens"],
  ];
  for (const [key, folded] of table) assert.equal(foldKey(key), folded, key);
});
