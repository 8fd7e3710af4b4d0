import assert from "node:assert/strict";
import {
  type HistoryStart,
  type KeptRange,
  type OffsetProblem,
  parseOffset,
  readHistoryStart,
  recoveredAfter,
  recoveredFor,
} from "../../../supabase/functions/_shared/rooms/recovery.ts";

Deno.test("parseOffset reads plain non-negative decimal integers and nothing else", () => {
  const table: [text: string, want: number | null][] = [
    ["0", 0],
    ["1", 1],
    ["42", 42],
    ["9007199254740991", Number.MAX_SAFE_INTEGER],
    ["", null],
    ["-1", null],
    ["-0", null],
    ["+1", null],
    ["1.5", null],
    ["1.0", null],
    ["1e3", null],
    ["1E3", null],
    ["0x10", null],
    ["01", null],
    ["00", null],
    [" 1", null],
    ["1 ", null],
    ["1\n", null],
    ["1_000", null],
    ["\u0661", null], // ARABIC-INDIC DIGIT ONE
    ["Infinity", null],
    ["NaN", null],
    ["9007199254740992", null], // 2^53: not exactly representable as the next integer
    ["9999999999999999", null],
    ["12345678901234567", null], // 17 digits
    ["1".repeat(400), null],
    ["abc", null],
  ];
  for (const [text, want] of table) {
    assert.equal(parseOffset(text), want, JSON.stringify(text));
  }
});

Deno.test("readHistoryStart reads since, last and Last-Event-ID, with the resume point first", () => {
  const table: [
    name: string,
    query: string,
    lastEventId: string | null,
    want: HistoryStart | null,
  ][] = [
    ["nothing", "", null, null],
    ["other parameters only", "jwt=x&self=true", null, null],
    ["since", "since=5", null, { since: 5 }],
    ["since 0", "since=0", null, { since: 0 }],
    ["last", "last=50", null, { last: 50 }],
    ["last 0", "last=0", null, { last: 0 }],
    ["Last-Event-ID", "", "17", { since: 17 }],
    ["Last-Event-ID 0", "", "0", { since: 0 }],
    ["an empty Last-Event-ID is no header", "", "", null],
    ["an empty Last-Event-ID leaves since", "since=3", "", { since: 3 }],
    ["since wins over last", "since=5&last=50", null, { since: 5 }],
    ["since wins over last, either order", "last=50&since=5", null, { since: 5 }],
    ["Last-Event-ID wins over since (EventSource reopens its URL)", "since=5", "9", {
      since: 9,
    }],
    ["Last-Event-ID wins over last", "last=50", "9", { since: 9 }],
    ["Last-Event-ID wins over both", "since=5&last=50", "9", { since: 9 }],
    ["the first of a repeated since counts", "since=5&since=x", null, { since: 5 }],
  ];
  for (const [name, query, lastEventId, want] of table) {
    assert.deepEqual(readHistoryStart(new URLSearchParams(query), lastEventId), want, name);
  }
});

Deno.test("readHistoryStart refuses a malformed value as bad_offset naming it, used or not", () => {
  const table: [name: string, query: string, lastEventId: string | null, param: string][] = [
    ["since -1", "since=-1", null, "since"],
    ["since 1.5", "since=1.5", null, "since"],
    ["since 01", "since=01", null, "since"],
    ["since 1e3", "since=1e3", null, "since"],
    ["since beyond 2^53", "since=9007199254740993", null, "since"],
    ["since far beyond 2^53", "since=123456789012345678901234567890", null, "since"],
    ["since empty", "since=", null, "since"],
    ["since with a blank", "since=%201", null, "since"],
    ["since a word", "since=latest", null, "since"],
    ["last -1", "last=-1", null, "last"],
    ["last 1.5", "last=1.5", null, "last"],
    ["last empty", "last=", null, "last"],
    ["last beyond 2^53", "last=9007199254740992", null, "last"],
    ["Last-Event-ID -1", "", "-1", "Last-Event-ID"],
    ["Last-Event-ID not an offset", "", "relay_abc", "Last-Event-ID"],
    ["Last-Event-ID 1e3", "", "1e3", "Last-Event-ID"],
    ["Last-Event-ID 01", "", "01", "Last-Event-ID"],
    ["a malformed last beside a good since", "since=5&last=x", null, "last"],
    ["a malformed since beside a good Last-Event-ID", "since=x", "5", "since"],
    ["a malformed Last-Event-ID beside a good since", "since=5", "x", "Last-Event-ID"],
  ];
  for (const [name, query, lastEventId, param] of table) {
    const got = readHistoryStart(new URLSearchParams(query), lastEventId);
    assert.ok(got !== null && "kind" in got, `${name}: refused`);
    const problem = got as OffsetProblem;
    assert.equal(problem.code, "bad_offset", name);
    assert.equal(problem.param, param, name);
    assert.ok(problem.message.length > 10, `${name}: a sentence`);
  }
});

Deno.test("recoveredAfter is true only when every broadcast after since is still kept", () => {
  const table: [name: string, since: number, kept: KeptRange, want: boolean][] = [
    ["0 with an empty room", 0, { latest: null, oldest: null }, true],
    ["0 with everything kept", 0, { latest: 5, oldest: 1 }, true],
    ["0 with the first gone", 0, { latest: 5, oldest: 2 }, false],
    ["before the oldest kept, the next one kept", 3, { latest: 10, oldest: 4 }, true],
    ["before the oldest kept, one missing", 3, { latest: 10, oldest: 5 }, false],
    ["long before the oldest kept", 1, { latest: 1000, oldest: 901 }, false],
    ["inside the kept range", 7, { latest: 10, oldest: 4 }, true],
    ["at the oldest kept", 4, { latest: 10, oldest: 4 }, true],
    ["one before the latest", 9, { latest: 10, oldest: 10 }, true],
    ["equal to the latest", 10, { latest: 10, oldest: 4 }, true],
    ["equal to the latest, everything expired", 10, { latest: 10, oldest: null }, true],
    ["behind the latest, everything expired", 9, { latest: 10, oldest: null }, false],
    ["0 behind the latest, everything expired", 0, { latest: 10, oldest: null }, false],
    ["ahead of the latest: reset", 11, { latest: 10, oldest: 4 }, false],
    ["ahead of an empty room: reset", 3, { latest: null, oldest: null }, false],
    ["far ahead", Number.MAX_SAFE_INTEGER, { latest: 10, oldest: 1 }, false],
  ];
  for (const [name, since, kept, want] of table) {
    assert.equal(recoveredAfter(since, kept), want, name);
  }
});

Deno.test("recoveredFor is null without a since", () => {
  const kept = { latest: 10, oldest: 4 };
  assert.equal(recoveredFor(null, kept), null);
  assert.equal(recoveredFor({ last: 5 }, kept), null);
  assert.equal(recoveredFor({ last: 0 }, { latest: null, oldest: null }), null);
  assert.equal(recoveredFor({ since: 3 }, kept), true);
  assert.equal(recoveredFor({ since: 2 }, kept), false);
  assert.equal(recoveredFor({ since: 11 }, kept), false);
});
