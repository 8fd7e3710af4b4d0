/**
 * The echo route: every message comes back unchanged, through the same loop
 * and limits as every other route.
 * @module
 */
import { echoConnector } from "../upstream/echo.ts";
import type { Prepared, RouteConnection, WebSocketRoute } from "./route.ts";

const ready: Prepared<null> = { ok: true, plan: null };
const connection: RouteConnection = { connect: echoConnector, model: null, hooks: [] };

/** `/relay/echo`: no checks beyond the token, no hooks. */
export const echoRoute: WebSocketRoute<null> = {
  prepare: () => ready,
  admit: () => connection,
};
