/**
 * The `usage` telemetry line for each upstream `response.done` that carries
 * usage, when metering is off (metering writes its own, with the cost).
 * @module
 */
import { usageOf } from "../realtime/usage.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Message } from "../upstream/upstream.ts";
import type { RouteFeature } from "./feature.ts";

/** Reports OpenAI's usage per response, as OpenAI sent it. */
export function usageTelemetryFeature(telemetry: Telemetry): RouteFeature {
  return {
    admit: ({ conn, user, model }) => ({
      hooks: {
        fromUpstream: (data: Message) => {
          if (typeof data === "string") {
            const usage = usageOf(data);
            if (usage !== null) telemetry.info("usage", { conn, user, model, usage });
          }
          return data;
        },
      },
    }),
  };
}
