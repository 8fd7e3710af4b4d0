import assert from "node:assert/strict";
import type { ConnectionLink } from "../../../supabase/functions/_shared/relay/hooks.ts";
import { localBus } from "../../../supabase/functions/_shared/rooms/bus.ts";
import type { RoomHistory } from "../../../supabase/functions/_shared/rooms/history.ts";
import { RoomHub } from "../../../supabase/functions/_shared/rooms/hub.ts";
import { RoomMember } from "../../../supabase/functions/_shared/rooms/member.ts";

/** A history whose every call fails, as when the database goes away after admission. */
const failingHistory: RoomHistory = {
  append: () => Promise.reject(new Error("database gone")),
  read: () => Promise.reject(new Error("database gone")),
  latest: () => Promise.reject(new Error("database gone")),
};

Deno.test("a member whose history cannot be read is over at once: the relay is asked to end it and its side closes", async () => {
  const hub = new RoomHub({ bus: localBus("instance-a"), now: Date.now, busWaitMs: 100 });
  const member = new RoomMember(
    hub,
    "lobby",
    { user: "u1", conn: "c1", access: "write", self: false, notices: false },
    Date.now,
    { store: failingHistory, from: null },
  );
  const seen: string[] = [];
  let closed!: () => void;
  const upstreamClosed = new Promise<void>((resolve) => (closed = resolve));
  member.connect({
    onUpstreamOpen: () => seen.push("open"),
    onUpstreamMessage: (data) => seen.push(`message ${String(data).slice(0, 20)}`),
    onUpstreamClose: (code) => {
      seen.push(`close ${code}`);
      closed();
    },
  });
  // The relay's side of the connection, already ending (a shutdown): end() changes nothing.
  const ends: string[] = [];
  member.started(
    { end: (frame: { reason: string }) => ends.push(frame.reason) } as unknown as ConnectionLink,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const within = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the member never closed")), 2000);
  });
  try {
    await Promise.race([upstreamClosed, within]);
  } finally {
    clearTimeout(timer);
  }
  assert.deepEqual(ends, ["history_unavailable"]);
  assert.deepEqual(seen, ["close 1000"], "never opened, closed once");
  member.ended();
  await hub.close();
});
