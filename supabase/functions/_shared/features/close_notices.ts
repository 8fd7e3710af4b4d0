/**
 * The close-notice feature: before each close the relay sends a client on the
 * OpenAI route, an OpenAI-shaped `error` event naming it.
 * @module
 */
import { closeNotice } from "../realtime/close_notice.ts";
import type { RouteFeature } from "./feature.ts";

const admission = { hooks: { closeNotice } } as const;

/** Close notices for every connection (stateless, so one set of hooks serves all). */
export function closeNoticesFeature(): RouteFeature {
  return { admit: () => admission };
}
