/**
 * The features the OpenAI route composes, each turned on by its settings, in
 * the order their hooks run: close notices, then (as settings enable them)
 * the session policy, metering and resumable sessions.
 * @module
 */
import type { Settings } from "../settings.ts";
import type { Telemetry } from "../telemetry/log.ts";
import { closeNoticesFeature } from "./close_notices.ts";
import type { RouteFeature } from "./feature.ts";
import { sessionPolicyFeature } from "./session_policy.ts";
import { usageTelemetryFeature } from "./usage_telemetry.ts";

/** What the route's features may use; each defaults to the real thing upstream of here. */
export interface FeatureDeps {
  readonly telemetry: Telemetry;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
}

/** The OpenAI route's features for `settings`, in hook order. */
export function openAIRouteFeatures(settings: Settings, deps: FeatureDeps): RouteFeature[] {
  const features: RouteFeature[] = [];
  if (settings.closeNotices) features.push(closeNoticesFeature());
  if (settings.sessionPolicy) {
    features.push(sessionPolicyFeature(settings.sessionPolicy, deps.telemetry));
  }
  features.push(usageTelemetryFeature(deps.telemetry));
  return features;
}
