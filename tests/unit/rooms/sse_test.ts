import assert from "node:assert/strict";
import {
  SSE_KEEPALIVE,
  sseClose,
  sseEvent,
} from "../../../supabase/functions/_shared/rooms/sse.ts";

Deno.test("sseEvent frames the event name, the id when kept, and every data line", () => {
  const table: [Parameters<typeof sseEvent>, string][] = [
    [["broadcast", '{"a":1}', 7], 'event: broadcast\nid: 7\ndata: {"a":1}\n\n'],
    [["presence.join", '{"user":"u"}'], 'event: presence.join\ndata: {"user":"u"}\n\n'],
    [["broadcast", '{"a":1}', null], 'event: broadcast\ndata: {"a":1}\n\n'],
    [
      ["x", "one\ntwo\r\nthree\rfour"],
      "event: x\ndata: one\ndata: two\ndata: three\ndata: four\n\n",
    ],
    [["x", ""], "event: x\ndata: \n\n"],
    [["broadcast", "{}", 0], "event: broadcast\nid: 0\ndata: {}\n\n"],
  ];
  for (const [args, expected] of table) assert.equal(sseEvent(...args), expected, args.join("|"));
});

Deno.test("sseClose ends with the code and reason as JSON and a one-second retry", () => {
  assert.equal(
    sseClose(4001, "token_expired"),
    'event: close\ndata: {"code":4001,"reason":"token_expired"}\nretry: 1000\n\n',
  );
  assert.equal(SSE_KEEPALIVE.startsWith(":"), true, "a comment line");
  assert.equal(SSE_KEEPALIVE.endsWith("\n\n"), true);
});
