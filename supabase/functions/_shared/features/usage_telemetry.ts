/**
 * The `usage` telemetry line for each upstream `response.done` that carries
 * usage, when metering is off (metering writes its own, with the cost).
 * @module
 */
import { usageOf } from "../realtime/usage.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { ConnectionLink } from "../relay/hooks.ts";
import type { Message } from "../upstream/upstream.ts";
import type { RouteFeature } from "./feature.ts";

/** Reports OpenAI's usage per response, as OpenAI sent it. */
export function usageTelemetryFeature(telemetry: Telemetry): RouteFeature {
  // One set of hooks for every connection: the link says whose the message is.
  const admission = {
    hooks: {
      fromUpstream: (data: Message, link: ConnectionLink) => {
        if (typeof data === "string") {
          const usage = usageOf(data);
          if (usage !== null) {
            telemetry.info("usage", { conn: link.conn, user: link.user, model: link.model, usage });
          }
        }
        return data;
      },
    },
  };
  return { admit: () => admission };
}
