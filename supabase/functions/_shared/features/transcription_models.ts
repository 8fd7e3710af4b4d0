/**
 * The transcription-model feature: refuses in band a client's choice of a
 * transcription model outside `OPENAI_TRANSCRIPTION_MODELS`, on
 * `?intent=transcription` connections always and on conversations with
 * metering on; the 20th refusal closes `1008 policy_violation`, as the
 * session policy's do.
 * @module
 */
import { checkTranscriptionModel } from "../realtime/transcription_models.ts";
import type { ConnectionHooks } from "../relay/hooks.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { RouteFeature } from "./feature.ts";
import { refusingInBand } from "./session_policy.ts";

/** The check on transcription connections, and on conversations too when `conversationsToo` (metering). */
export function transcriptionModelsFeature(
  models: readonly string[],
  conversationsToo: boolean,
  telemetry: Telemetry,
): RouteFeature {
  return {
    admit: ({ conn, user, intent }) => {
      if (intent === "conversation" && !conversationsToo) return {};
      const hooks: ConnectionHooks = {
        fromClient: refusingInBand(
          (data) => checkTranscriptionModel(data, models) ?? { pass: true, forward: data },
          { conn, user, telemetry },
        ),
      };
      return { hooks };
    },
  };
}
