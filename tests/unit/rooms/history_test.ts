import assert from "node:assert/strict";
import {
  Catchup,
  type KeptHistory,
  offsetOf,
  type RoomHistory,
  storedText,
} from "../../../supabase/functions/_shared/rooms/history.ts";
import { broadcastText } from "../../../supabase/functions/_shared/rooms/wire.ts";

const at = "2026-12-07T10:00:00.000Z";
const kept = (offset: number) => ({
  offset,
  user: "u",
  id: `m${offset}`,
  event: "chat",
  payloadJson: `{"n":${offset}}`,
  at,
});

Deno.test("offsetOf reads meta.offset of a broadcast text, and nothing else", () => {
  const table: [string | ArrayBuffer, number | null][] = [
    [broadcastText("e", '{"offset":99}', { user: "u", id: null, offset: 12, at }), 12],
    [broadcastText("e", "1", { user: 'x","offset":5,"', id: null, offset: 3, at }), 3],
    [broadcastText("e", "1", { user: null, id: null, offset: null, at }), null],
    [broadcastText("e", '{"offset":7}', { user: null, id: null, offset: null, at }), null],
    ['{"type":"presence.join","user":"u","state":{"offset":4}}', null],
    [new ArrayBuffer(4), null],
  ];
  for (const [data, expected] of table) assert.equal(offsetOf(data), expected, String(data));
});

Deno.test("storedText is the broadcast text members got live", () => {
  const message = kept(4);
  assert.equal(
    storedText(message),
    broadcastText("chat", '{"n":4}', { user: "u", id: "m4", offset: 4, at }),
  );
});

/** A history answering `answer` once `release()` is called, to hold a catch-up mid-read. */
function slowHistory(answer: KeptHistory | Error) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const history: RoomHistory = {
    append: () => Promise.reject(new Error("unused")),
    latest: () => Promise.resolve(answer instanceof Error ? null : answer.latest),
    read: async () => {
      await gate;
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  return { history, release };
}

Deno.test("Catchup: room.joined, then the replay, then what arrived meanwhile, each offset once", async () => {
  const { history, release } = slowHistory({
    latest: 5,
    oldest: 2,
    messages: [2, 3, 4, 5].map(kept),
  });
  const seen: string[] = [];
  const catchup = new Catchup({
    joined: (offset, recovered) => seen.push(`joined ${offset} ${recovered}`),
    emit: (data) => seen.push(String(offsetOf(data) ?? data)),
    failed: () => seen.push("failed"),
  });
  const started = catchup.start(history, "r", { since: 3 });
  // Arrive during the read: 5 again (already kept), 6 live, an ephemeral one.
  catchup.deliver(storedText(kept(5)));
  catchup.deliver(storedText(kept(6)));
  catchup.deliver('{"type":"presence.leave","user":"v"}');
  assert.deepEqual(seen, [], "held while reading");
  release();
  await started;
  catchup.deliver(storedText(kept(4)));
  catchup.deliver(storedText(kept(7)));
  assert.deepEqual(seen, [
    "joined 5 true",
    "4",
    "5",
    "6",
    '{"type":"presence.leave","user":"v"}',
    "7",
  ]);
});

Deno.test("Catchup: without since, room.joined says the latest and older copies are dropped", async () => {
  const { history, release } = slowHistory({ latest: 9, oldest: 1, messages: [] });
  const seen: string[] = [];
  const catchup = new Catchup({
    joined: (offset, recovered) => seen.push(`joined ${offset} ${recovered}`),
    emit: (data) => seen.push(String(offsetOf(data))),
    failed: () => seen.push("failed"),
  });
  release();
  await catchup.start(history, "r", null);
  catchup.deliver(storedText(kept(9)));
  catchup.deliver(storedText(kept(10)));
  assert.deepEqual(seen, ["joined 9 null", "10"]);
});

Deno.test("Catchup: a failed read is reported, and nothing is emitted", async () => {
  const { history, release } = slowHistory(new Error("database down"));
  const seen: string[] = [];
  const catchup = new Catchup({
    joined: () => seen.push("joined"),
    emit: () => seen.push("emit"),
    failed: () => seen.push("failed"),
  });
  catchup.deliver(storedText(kept(1)));
  release();
  await catchup.start(history, "r", { last: 5 });
  assert.deepEqual(seen, ["failed"]);
});
