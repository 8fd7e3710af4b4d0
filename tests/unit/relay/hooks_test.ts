import assert from "node:assert/strict";
import {
  composeHooks,
  type ConnectionHooks,
  type ConnectionLink,
  hooksComposer,
} from "../../../supabase/functions/_shared/relay/hooks.ts";

const link = {} as ConnectionLink;

Deno.test("composeHooks returns nothing for no parts and the part itself for one", () => {
  assert.equal(composeHooks([]), undefined);
  const only: ConnectionHooks = { fromClient: (data) => data };
  assert.equal(composeHooks([only]), only);
});

Deno.test("composeHooks chains message hooks in order and stops at a drop", () => {
  const seen: string[] = [];
  const hooks = composeHooks([
    { fromClient: (data) => (seen.push(`a:${data}`), `${data}+a`) },
    { fromUpstream: (data) => (seen.push(`up:${data}`), data) },
    { fromClient: (data) => (seen.push(`b:${data}`), data === "drop+a" ? null : `${data}+b`) },
    { fromClient: (data) => (seen.push(`c:${data}`), data) },
  ])!;
  assert.equal(hooks.fromClient!("x", link), "x+a+b");
  assert.equal(hooks.fromClient!("drop", link), null);
  assert.equal(hooks.fromUpstream!("y", link), "y");
  assert.deepEqual(seen, ["a:x", "b:x+a", "c:x+a+b", "a:drop", "b:drop+a", "up:y"]);
});

Deno.test("composeHooks offers the first close notice and runs every lifecycle hook", () => {
  const calls: string[] = [];
  const hooks = composeHooks([
    { started: () => calls.push("started 1"), closeNotice: () => null },
    {
      upstreamOpened: () => calls.push("opened 2"),
      closeNotice: (frame) => `notice ${frame.code}`,
      ended: () => calls.push("ended 2"),
    },
    { closeNotice: () => "never", ended: () => calls.push("ended 3") },
  ])!;
  hooks.started!(link);
  hooks.upstreamOpened!(link);
  assert.equal(hooks.closeNotice!({ code: 4001, reason: "token_expired" }, "relay"), "notice 4001");
  hooks.ended!({ frame: { code: 1000, reason: "" }, by: "client" });
  assert.deepEqual(calls, ["started 1", "opened 2", "ended 2", "ended 3"]);
  assert.equal(hooks.fromClient, undefined, "no part handles client messages: none is composed");
});

Deno.test("hooksComposer reuses a composition while the parts are the same objects", () => {
  const compose = hooksComposer();
  const shared: ConnectionHooks = { fromUpstream: (data) => data };
  const notices: ConnectionHooks = { closeNotice: () => "notice" };
  const first = compose([shared, notices]);
  assert.ok(first !== undefined);
  assert.equal(compose([shared, notices]), first, "same parts, same hooks");
  const own: ConnectionHooks = { fromClient: () => null };
  const third = compose([shared, own]);
  assert.notEqual(third, first, "another part, another composition");
  assert.equal(third!.fromClient!("x", link), null);
  assert.equal(compose([]), undefined);
  assert.equal(compose([shared]), shared, "a single part is itself");
});
