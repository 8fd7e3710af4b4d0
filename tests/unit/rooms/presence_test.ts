import assert from "node:assert/strict";
import {
  type HeldPresence,
  RoomPresence,
} from "../../../supabase/functions/_shared/rooms/presence.ts";
import type { PresenceChange } from "../../../supabase/functions/_shared/rooms/wire.ts";

const held = (stateJson: string, at: number): HeldPresence => ({ stateJson, at });
const join = (user: string, stateJson = "null"): PresenceChange => ({
  type: "presence.join",
  user,
  stateJson,
});
const leave = (user: string): PresenceChange => ({ type: "presence.leave", user });
const state = (user: string, stateJson: string): PresenceChange => ({
  type: "presence.state",
  user,
  stateJson,
});

/** The present users and their winning states, sorted for comparison. */
function listed(presence: RoomPresence): [string, string][] {
  return presence.list().map((e): [string, string] => [e.user, e.stateJson]).sort();
}

Deno.test("RoomPresence: a user joins with their first source and leaves with their last", () => {
  const presence = new RoomPresence();
  const steps: [name: string, act: () => PresenceChange[], want: PresenceChange[]][] = [
    ["u1 appears at A", () => presence.set("A", "u1", held("null", 0)), [join("u1")]],
    ["u1 appears at B too: no change", () => presence.set("B", "u1", held("null", 0)), []],
    ["u2 appears at B", () => presence.set("B", "u2", held('{"n":2}', 5)), [join("u2", '{"n":2}')]],
    ["u1 leaves A, still at B", () => presence.remove("A", "u1"), []],
    ["removing what is not held changes nothing", () => presence.remove("A", "u1"), []],
    ["an unknown user at an unknown source", () => presence.remove("Z", "nobody"), []],
    ["u1 leaves B: gone", () => presence.remove("B", "u1"), [leave("u1")]],
  ];
  for (const [name, act, want] of steps) assert.deepEqual(act(), want, name);
  assert.deepEqual(listed(presence), [["u2", '{"n":2}']]);
  assert.equal(presence.has("u1"), false);
  assert.equal(presence.has("u2"), true);
  assert.deepEqual(presence.sources(), ["B"]);
  assert.deepEqual(presence.remove("B", "u2"), [leave("u2")]);
  assert.deepEqual(presence.sources(), [], "a source holding nobody is forgotten");
  assert.deepEqual(presence.list(), []);
});

Deno.test("RoomPresence: two sources holding one user list one entry", () => {
  const presence = new RoomPresence();
  presence.set("A", "u1", held('{"tab":1}', 10));
  presence.set("B", "u1", held('{"tab":2}', 20));
  presence.set("C", "u1", held('{"tab":3}', 15));
  assert.deepEqual(listed(presence), [["u1", '{"tab":2}']]);
  assert.equal(presence.list().length, 1);
});

Deno.test("RoomPresence: the most recently set state wins, whatever order the news arrives in", () => {
  const orders: [string, string, number][][] = [
    [["A", '{"s":"old"}', 10], ["B", '{"s":"new"}', 20]],
    [["B", '{"s":"new"}', 20], ["A", '{"s":"old"}', 10]],
  ];
  for (const order of orders) {
    const presence = new RoomPresence();
    for (const [source, json, at] of order) presence.set(source, "u1", held(json, at));
    assert.deepEqual(listed(presence), [["u1", '{"s":"new"}']], JSON.stringify(order));
  }
  // An older write arriving late changes nothing for members.
  const presence = new RoomPresence();
  presence.set("A", "u1", held('{"s":"new"}', 20));
  assert.deepEqual(presence.set("B", "u1", held('{"s":"old"}', 10)), []);
  // A newer one does, once.
  assert.deepEqual(presence.set("B", "u1", held('{"s":"newer"}', 30)), [
    state("u1", '{"s":"newer"}'),
  ]);
  // The same state again, later: nothing to tell.
  assert.deepEqual(presence.set("A", "u1", held('{"s":"newer"}', 40)), []);
  // A source overwriting its own state, at any time, is that source's latest.
  assert.deepEqual(presence.set("A", "u1", held('{"s":"mine"}', 50)), [
    state("u1", '{"s":"mine"}'),
  ]);
});

Deno.test("RoomPresence: equal times go to the greater source id, deterministically", () => {
  for (const order of [["a", "b"], ["b", "a"]]) {
    const presence = new RoomPresence();
    for (const source of order) presence.set(source, "u1", held(`{"from":"${source}"}`, 100));
    assert.deepEqual(listed(presence), [["u1", '{"from":"b"}']], order.join(","));
  }
  // Dropping the winner of a tie falls back to the other source's state.
  const presence = new RoomPresence();
  presence.set("a", "u1", held('{"from":"a"}', 100));
  presence.set("b", "u1", held('{"from":"b"}', 100));
  assert.deepEqual(presence.remove("b", "u1"), [state("u1", '{"from":"a"}')]);
});

Deno.test("RoomPresence.replace returns exactly the joins, leaves and state changes of a snapshot", () => {
  const presence = new RoomPresence();
  presence.set("A", "local", held("null", 0));
  presence.set("A", "shared", held('{"s":"A"}', 50));
  const first = presence.replace(
    "B",
    new Map([
      ["b1", held("null", 1)],
      ["b2", held('{"s":2}', 2)],
      ["shared", held('{"s":"B"}', 10)], // older than A's: no change
    ]),
  );
  assert.deepEqual(first, [join("b1"), join("b2", '{"s":2}')]);
  const second = presence.replace(
    "B",
    new Map([
      ["b2", held('{"s":2}', 2)], // unchanged
      ["b3", held("null", 3)], // new
      ["shared", held('{"s":"B2"}', 60)], // now newer than A's
    ]),
  );
  assert.deepEqual(
    [...second].sort((x, y) => x.user.localeCompare(y.user)),
    [leave("b1"), join("b3"), state("shared", '{"s":"B2"}')],
  );
  assert.deepEqual(
    presence.replace(
      "B",
      new Map([["b2", held('{"s":2}', 2)], ["b3", held("null", 3)], [
        "shared",
        held('{"s":"B2"}', 60),
      ]]),
    ),
    [],
    "the same snapshot again changes nothing",
  );
  assert.deepEqual(listed(presence), [
    ["b2", '{"s":2}'],
    ["b3", "null"],
    ["local", "null"],
    ["shared", '{"s":"B2"}'],
  ]);
});

Deno.test("RoomPresence.drop: a source's users leave unless held elsewhere, whose state then wins", () => {
  const presence = new RoomPresence();
  presence.set("A", "both", held('{"at":"A"}', 1));
  presence.set("A", "onlyA", held("null", 1));
  presence.set("B", "both", held('{"at":"B"}', 2));
  presence.set("B", "onlyB", held("null", 2));
  presence.set("B", "onlyB2", held('{"x":1}', 2));
  const changes = presence.drop("B");
  assert.deepEqual(
    [...changes].sort((x, y) => x.user.localeCompare(y.user)),
    [state("both", '{"at":"A"}'), leave("onlyB"), leave("onlyB2")],
  );
  assert.deepEqual(presence.sources(), ["A"]);
  assert.deepEqual(presence.drop("B"), [], "dropping twice changes nothing");
  assert.deepEqual(presence.drop("nowhere"), []);
  assert.deepEqual(listed(presence), [["both", '{"at":"A"}'], ["onlyA", "null"]]);
});
