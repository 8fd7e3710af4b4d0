/**
 * Close-code matrix (CONTRACT.md "Closing"): every code in the WebSocket test
 * suites' valid set and the unsendable ones, plus an abrupt TCP drop, in both
 * directions, with ASCII, 123-byte multi-byte and astral reasons. Seen on the
 * wire with the raw client, so nothing in a WebSocket library hides a frame.
 */
import assert from "node:assert/strict";
import { until } from "../helpers/ws_client.ts";
import { rawClient } from "../stand_ins/raw_client.ts";
import { recordFigure, testCommand, withCheckedRelay } from "./support.ts";

const VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
/** Codes no endpoint may put on the wire; a peer can still send them. */
const INVALID = [1005, 1006, 1015];

const REASONS: [string, string][] = [
  ["ascii", "bye now"],
  ["empty", ""],
  ["123 bytes of 2-byte chars", "é".repeat(61) + "a"],
  ["123 bytes with astral chars", "😀".repeat(30) + "abc"],
];

const byteLength = (s: string) => new TextEncoder().encode(s).byteLength;

/**
 * What the client must see when the upstream closes with `code` (undefined: an
 * empty close payload, which the relay's socket reports as 1005 "no status").
 * A literal 1005, 1006 or 1015 on the wire is a protocol violation: the
 * relay's socket fails the connection, so the client gets the abnormal close.
 */
function expectedAtClient(code: number | undefined, reason: string): [number, string] {
  if (code === undefined) return [1000, ""];
  if (INVALID.includes(code)) return [1011, "upstream_closed_abnormally"];
  return [code, reason];
}

/** What the upstream must see when the client closes with `code`. */
function expectedUpstreamCode(code: number | undefined): number {
  if (code === 1000 || (code !== undefined && code >= 3000 && code <= 4999)) return code;
  return 1000;
}

Deno.test("close matrix: upstream close codes reach the client per the contract", async () => {
  let cases = 0;
  await withCheckedRelay({}, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256());
    const codes: (number | undefined)[] = [...VALID, ...INVALID, undefined];
    for (const code of codes) {
      for (const [label, reason] of code === undefined ? [REASONS[1]!] : REASONS) {
        assert.ok(byteLength(reason) <= 123);
        relay.openai.behaviour = {
          kind: "close",
          afterMessages: 1,
          reason: code === undefined ? "" : reason,
          ...(code === undefined ? {} : { code }),
        };
        const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
        assert.equal(client.status, 101);
        await client.send("last words");
        const messages: string[] = [];
        const closed = await client.readUntilClose((e) => {
          if (e.kind === "message" && e.type === "text") messages.push(e.data);
        });
        client.abort();
        const [wantCode, wantReason] = expectedAtClient(code, reason);
        assert.deepEqual(
          [closed?.code, closed?.reason],
          [wantCode, wantReason],
          `upstream ${code ?? "no code"} (${label})`,
        );
        // The one message is the relay's in-band notice of the close that followed.
        assert.equal(messages.length, 1, "only the close notice precedes the close");
        const notice = JSON.parse(messages[0]!).error;
        assert.deepEqual([notice.type, notice.close_code, notice.code], [
          "relay_error",
          wantCode,
          wantReason === "upstream_closed_abnormally" ? wantReason : "upstream_closed",
        ]);
        cases++;
      }
    }
    // An abrupt TCP drop after traffic, no close frame at all.
    relay.openai.behaviour = { kind: "drop", afterMessages: 3 };
    const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
    for (const m of ["a", "b", "c"]) await client.send(m);
    const closed = await client.readUntilClose();
    client.abort();
    assert.deepEqual([closed?.code, closed?.reason], [1011, "upstream_closed_abnormally"]);
    cases++;
    await until(() => relay.relay.connections() === 0, 3000, "all released");
  });
  recordFigure({
    area: "Close codes, upstream→client",
    tried: `codes ${VALID.join(", ")}, ${
      INVALID.join(", ")
    }, no code, TCP drop; reasons: ASCII, empty, 123-byte 2-byte UTF-8, 123-byte astral`,
    counts: { cases },
    held:
      "sendable codes and reasons pass unchanged; no code (1005) → 1000; 1005, 1006, 1015 sent on the wire (a protocol violation) and a drop → 1011 upstream_closed_abnormally",
    command: testCommand("close_matrix_test.ts", "upstream close"),
  });
});

Deno.test("close matrix: client close codes reach the upstream per the contract", async () => {
  let cases = 0;
  await withCheckedRelay({}, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256());
    const codes: (number | undefined)[] = [...VALID, ...INVALID, undefined];
    for (const code of codes) {
      for (const [label, reason] of code === undefined ? [REASONS[1]!] : REASONS) {
        const seen = relay.openai.connections.length;
        const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
        assert.equal(client.status, 101);
        await client.send("hello");
        const echo = await client.readEvent();
        assert.equal(echo?.kind, "message");
        const upstream = relay.openai.connections[seen];
        await client.close(code, code === undefined ? undefined : reason);
        await client.readUntilClose();
        client.abort();
        const started = Date.now();
        await upstream?.closed;
        const what = `client ${code ?? "no code"} (${label})`;
        assert.ok(Date.now() - started < 1000, `${what}: upstream closed late`);
        const want = expectedUpstreamCode(code);
        assert.equal(upstream?.closeReceived?.code, want, what);
        if (want === code) assert.equal(upstream?.closeReceived?.reason, reason, what);
        cases++;
      }
    }
    // The client vanishes: no close frame, TCP gone. The upstream gets 1000 within a second.
    const seen = relay.openai.connections.length;
    const client = await rawClient(relay.wsUrl("/relay", { jwt: token }));
    await client.send("hello");
    await client.readEvent();
    const started = Date.now();
    client.abort();
    await relay.openai.connections[seen]?.closed;
    assert.ok(Date.now() - started < 1000, `upstream closed after ${Date.now() - started} ms`);
    assert.equal(relay.openai.connections[seen]?.closeReceived?.code, 1000);
    cases++;
    await until(() => relay.relay.connections() === 0, 3000, "all released");
  });
  recordFigure({
    area: "Close codes, client→upstream",
    tried: `codes ${VALID.join(", ")}, ${INVALID.join(", ")}, no code, TCP drop; same four reasons`,
    counts: { cases },
    held:
      "1000 and 3000-4999 pass with their reason; every other code, no code and a drop → 1000; upstream closed within 1 s",
    command: testCommand("close_matrix_test.ts", "client close"),
  });
});
