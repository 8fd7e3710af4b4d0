/**
 * Route matching. Paths are as the function sees them: the platform strips
 * `/functions/v1`, so a browser's `/functions/v1/relay/echo` arrives as `/relay/echo`.
 * @module
 */

/** What a path leads to. */
export type Route = "openai" | "echo" | "health";

const ROUTES: Readonly<Record<string, Route>> = {
  "/relay": "openai",
  // These two let the official `openai` SDK use `baseURL = <project>/functions/v1/relay`.
  "/relay/realtime": "openai",
  "/relay/v1/realtime": "openai",
  "/relay/echo": "echo",
  "/relay/health": "health",
};

/** The route for a path, tolerating one trailing slash; `null` when unknown. */
export function matchRoute(pathname: string): Route | null {
  const path = pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname;
  return Object.hasOwn(ROUTES, path) ? ROUTES[path] ?? null : null;
}
