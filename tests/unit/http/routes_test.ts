import assert from "node:assert/strict";
import { matchRoute, roomSegment } from "../../../supabase/functions/_shared/http/routes.ts";

Deno.test("matchRoute maps each contract path, tolerating one trailing slash", () => {
  const table: [string, ReturnType<typeof matchRoute>][] = [
    ["/relay", "openai"],
    ["/relay/", "openai"],
    ["/relay/realtime", "openai"],
    ["/relay/v1/realtime", "openai"],
    ["/relay/v1/realtime/", "openai"],
    ["/relay/echo", "echo"],
    ["/relay/echo/", "echo"],
    ["/relay/health", "health"],
    ["/", null],
    ["/relay//", null],
    ["/relay/unknown", null],
    ["/functions/v1/relay", null],
    ["/relay/constructor", null],
    ["/RELAY", null],
    // v3 rooms: the name is checked by the route, not here.
    ["/relay/rooms/x", "rooms"],
    ["/relay/rooms/x/", "rooms"],
    ["/relay/rooms/public:lobby", "rooms"],
    ["/relay/rooms/events", "rooms"],
    ["/relay/rooms/a%2Fb", "rooms"],
    ["/relay/rooms/x/events", "room_events"],
    ["/relay/rooms/x/events/", "room_events"],
    ["/relay/rooms/events/events", "room_events"],
    ["/relay/rooms", null],
    ["/relay/rooms/", null],
    ["/relay/rooms//", null],
    ["/relay/rooms/x//", null],
    ["/relay/rooms/a/b", null],
    ["/relay/rooms/x/events/more", null],
    ["/relay/rooms/x/EVENTS", null],
    ["/relay/room/x", null],
    ["/relay/ROOMS/x", null],
    ["/functions/v1/relay/rooms/x", null],
  ];
  for (const [path, expected] of table) assert.equal(matchRoute(path), expected, path);
});

Deno.test("roomSegment gives a room path's segment as sent, never decoded", () => {
  const table: [string, string | null][] = [
    ["/relay/rooms/x", "x"],
    ["/relay/rooms/x/", "x"],
    ["/relay/rooms/x/events", "x"],
    ["/relay/rooms/x/events/", "x"],
    ["/relay/rooms/public:lobby", "public:lobby"],
    ["/relay/rooms/a%2Fb", "a%2Fb"],
    ["/relay/rooms/%C3%A9", "%C3%A9"],
    ["/relay/rooms/", null],
    ["/relay/rooms", null],
    ["/relay/rooms/a/b", null],
    ["/relay/echo", null],
    ["/relay", null],
  ];
  for (const [path, expected] of table) assert.equal(roomSegment(path), expected, path);
});
