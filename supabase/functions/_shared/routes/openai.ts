/**
 * The OpenAI route (`/relay`, `/relay/realtime`, `/relay/v1/realtime`): the
 * model check, the upstream, and the protocol-aware features its settings
 * turn on (close notices, policy, metering, resume), each admitting the
 * connection side by side.
 * @module
 */
import { type Admission, isRefusal, type RouteFeature } from "../features/feature.ts";
import { type Refusal, refusal } from "../http/refusal.ts";
import type { Settings } from "../settings.ts";
import type { UpstreamConnector } from "../upstream/upstream.ts";
import type { Prepared, RouteConnection, WebSocketRoute } from "./route.ts";

/** What the OpenAI route needs. */
export interface OpenAIRouteOptions {
  readonly settings: Settings;
  /** `null` without an API key: the route answers 503. */
  readonly connect: UpstreamConnector | null;
  /** The features its settings turn on, in hook order. */
  readonly features: readonly RouteFeature[];
}

/** What the checks before the token established. */
interface OpenAIPlan {
  readonly model: string;
  readonly connect: UpstreamConnector;
  readonly session: string | null;
}

/** The connection did not go ahead: every feature that admitted it lets go. */
function cancelAll(admissions: readonly Admission[]): void {
  for (const admission of admissions) admission.cancel?.();
}

/** The OpenAI route for `options`. */
export function openAIRoute(options: OpenAIRouteOptions): WebSocketRoute<OpenAIPlan> {
  const { settings, connect, features } = options;
  const refused = (code: Parameters<typeof refusal>[0]): Prepared<OpenAIPlan> => ({
    ok: false,
    refusal: refusal(code),
  });

  const combine = (answers: readonly (Admission | Refusal | undefined)[], plan: OpenAIPlan) => {
    const admissions: Admission[] = [];
    let first: Refusal | undefined;
    for (const answer of answers) {
      if (answer === undefined) continue;
      if (isRefusal(answer)) first ??= answer;
      else admissions.push(answer);
    }
    if (first) {
      cancelAll(admissions);
      return first;
    }
    const connection: RouteConnection = {
      connect: plan.connect,
      model: plan.model,
      hooks: admissions.flatMap((admission) => admission.hooks ?? []),
      cancel: () => cancelAll(admissions),
    };
    return connection;
  };

  return {
    prepare(url) {
      const requested = url.searchParams.get("model");
      if (requested !== null && !settings.openaiRealtimeModels.includes(requested)) {
        return refused("model_not_allowed");
      }
      if (connect === null) return refused("upstream_not_configured");
      for (const feature of features) {
        const problem = feature.check?.(url);
        if (problem) return { ok: false, refusal: problem };
      }
      const model = requested ?? settings.openaiRealtimeModel;
      return { ok: true, plan: { model, connect, session: url.searchParams.get("session") } };
    },
    admit(plan, identity, conn) {
      const context = { conn, user: identity.user, model: plan.model, session: plan.session };
      const pending = features.map((feature) => feature.admit?.(context));
      // Side by side: each feature's database round trip overlaps the others'.
      return pending.some((answer) => answer instanceof Promise)
        ? Promise.all(pending).then((answers) => combine(answers, plan))
        : combine(pending as (Admission | Refusal | undefined)[], plan);
    },
    async close() {
      await Promise.all(features.map((feature) => feature.close?.()));
    },
  };
}
