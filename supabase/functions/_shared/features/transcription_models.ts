/**
 * The transcription-model feature: refuses in band a client's choice of a
 * transcription model outside `OPENAI_TRANSCRIPTION_MODELS`, on
 * `?intent=transcription` connections always and on conversations with
 * metering on; the 20th refusal closes `1008 policy_violation`, as the
 * session policy's do.
 * @module
 */
import { policyRefusalEvent } from "../realtime/policy_verdict.ts";
import { checkTranscriptionModel } from "../realtime/transcription_models.ts";
import { RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ConnectionHooks } from "../relay/hooks.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { RouteFeature } from "./feature.ts";
import { MAX_POLICY_REFUSALS } from "./session_policy.ts";

/** The check for connections of `intents` (`metering`: conversations too). */
export function transcriptionModelsFeature(
  models: readonly string[],
  conversationsToo: boolean,
  telemetry: Telemetry,
): RouteFeature {
  return {
    admit: ({ conn, user, intent }) => {
      if (intent === "conversation" && !conversationsToo) return {};
      let refusals = 0;
      const hooks: ConnectionHooks = {
        fromClient: (data, link) => {
          const refused = checkTranscriptionModel(data, models);
          if (refused === null) return data;
          refusals++;
          telemetry.info("policy.refused", {
            conn,
            user,
            code: refused.code,
            param: refused.param,
          });
          link.sendToClient(policyRefusalEvent(refused, refused.eventId));
          if (refusals >= MAX_POLICY_REFUSALS) link.end(RELAY_CLOSE.policyViolation);
          return null;
        },
      };
      return { hooks };
    },
  };
}
