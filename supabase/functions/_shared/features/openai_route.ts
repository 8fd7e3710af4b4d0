/**
 * The features the OpenAI route composes, each turned on by its settings, in
 * the order their hooks run: close notices, then (as settings enable them)
 * the session policy, the transcription-model check, metering, resumable
 * sessions and live captions into a room.
 * @module
 */
import type { Database } from "../db/client.ts";
import type { Settings } from "../settings.ts";
import type { Telemetry } from "../telemetry/log.ts";
import { captionsFeature, type CaptionsOptions } from "./captions.ts";
import { closeNoticesFeature } from "./close_notices.ts";
import type { RouteFeature } from "./feature.ts";
import { meteringFeature } from "./metering.ts";
import { resumeFeature } from "./resume.ts";
import { sessionPolicyFeature } from "./session_policy.ts";
import { transcriptionModelsFeature } from "./transcription_models.ts";
import { usageTelemetryFeature } from "./usage_telemetry.ts";

/** What the route's features may use; each defaults to the real thing upstream of here. */
export interface FeatureDeps {
  readonly telemetry: Telemetry;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /**
   * The instance's one database pool, shared by the features that need it
   * (owned and closed by the handler); `null` when none is configured.
   */
  readonly database?: Database | null;
  /** This instance's id (whose database leases are its own). */
  readonly instance?: string;
  /** With rooms on: what `?room=` captions need; `null` with rooms off. */
  readonly captions?: CaptionsOptions | null;
}

/** The OpenAI route's features for `settings`, in hook order. */
export function openAIRouteFeatures(settings: Settings, deps: FeatureDeps): RouteFeature[] {
  const features: RouteFeature[] = [];
  if (settings.closeNotices) features.push(closeNoticesFeature());
  if (settings.sessionPolicy) {
    features.push(sessionPolicyFeature(settings.sessionPolicy, deps.telemetry));
  }
  // The transcription model decides the price: checked on transcription
  // connections always, on conversations when they are metered.
  features.push(
    transcriptionModelsFeature(
      settings.openaiTranscriptionModels,
      settings.metering && deps.database !== null && deps.database !== undefined,
      deps.telemetry,
    ),
  );

  // Metering writes the `usage` line itself, with the cost.
  if (settings.metering && deps.database) {
    features.push(meteringFeature(settings, { ...deps, database: deps.database }));
  } else {
    features.push(usageTelemetryFeature(deps.telemetry));
  }
  // Last: every other feature has seen an upstream message before resume hides a replay's
  // answer, and resume sends the policy's pin again after a restored configuration.
  if (settings.resume && deps.database) {
    features.push(resumeFeature({
      ttlS: settings.resumeTtlS,
      policy: settings.sessionPolicy,
      replayTimeoutMs: settings.upstreamTimeoutMs,
      maxReplayBytes: Math.floor(settings.maxBufferedBytes / 2),
      telemetry: deps.telemetry,
      now: deps.now,
      database: deps.database,
    }));
  }
  // After resume: what it hides (its replay's answers) is not captioned either.
  if (deps.captions) features.push(captionsFeature(deps.captions));
  return features;
}
