import assert from "node:assert/strict";
import {
  messageBytes,
  utf8Length,
} from "../../../supabase/functions/_shared/relay/message_size.ts";

Deno.test("utf8Length equals the encoded length for every kind of character", () => {
  const samples = [
    "",
    "a",
    "hello",
    "é",
    "Zoë",
    "€",
    "日本語",
    "🎧",
    "a🎧b€cé",
    "\u{10FFFF}",
    "\u0000",
    "\u007f\u0080\u07ff\u0800\uffff",
    "x".repeat(1000) + "🎧".repeat(100),
  ];
  for (const sample of samples) {
    assert.equal(utf8Length(sample), new TextEncoder().encode(sample).length, sample.slice(0, 20));
  }
});

Deno.test("messageBytes counts binary by its byte length", () => {
  assert.equal(messageBytes(new ArrayBuffer(0)), 0);
  assert.equal(messageBytes(new ArrayBuffer(32768)), 32768);
  assert.equal(messageBytes("🎧"), 4);
});
