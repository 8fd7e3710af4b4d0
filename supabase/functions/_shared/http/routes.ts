/**
 * Route matching. Paths are as the function sees them: the platform strips
 * `/functions/v1`, so a browser's `/functions/v1/relay/echo` arrives as `/relay/echo`.
 * @module
 */

/** What a path leads to. */
export type Route = "openai" | "echo" | "health" | "rooms" | "room_events";

const ROUTES: Readonly<Record<string, Route>> = {
  "/relay": "openai",
  // These two let the official `openai` SDK use `baseURL = <project>/functions/v1/relay`.
  "/relay/realtime": "openai",
  "/relay/v1/realtime": "openai",
  "/relay/echo": "echo",
  "/relay/health": "health",
};

/** `/relay/rooms/<room>` and `/relay/rooms/<room>/events`; the name is checked by the route. */
const ROOM_PATH = /^\/relay\/rooms\/([^/]+)(\/events)?$/;

/** The route for a path, tolerating one trailing slash; `null` when unknown. */
export function matchRoute(pathname: string): Route | null {
  const path = trimSlash(pathname);
  if (Object.hasOwn(ROUTES, path)) return ROUTES[path] ?? null;
  const room = ROOM_PATH.exec(path);
  if (room === null) return null;
  return room[2] ? "room_events" : "rooms";
}

/**
 * The room segment of a room path as sent (still percent-encoded: a name
 * with `%` is refused, never decoded into something else); `null` elsewhere.
 */
export function roomSegment(pathname: string): string | null {
  return ROOM_PATH.exec(trimSlash(pathname))?.[1] ?? null;
}

function trimSlash(pathname: string): string {
  return pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname;
}
