/**
 * The OpenAI route (`/relay`, `/relay/realtime`, `/relay/v1/realtime`): the
 * model check, the upstream, and the protocol-aware features its settings
 * turn on (close notices, policy, metering, resume), each admitting the
 * connection side by side.
 * @module
 */
import { type Admission, type Intent, isRefusal, type RouteFeature } from "../features/feature.ts";
import { type Refusal, refusal } from "../http/refusal.ts";
import type { Settings } from "../settings.ts";
import type { UpstreamConnector } from "../upstream/upstream.ts";
import type { Prepared, RouteConnection, WebSocketRoute } from "./route.ts";

/** What the OpenAI route needs. */
export interface OpenAIRouteOptions {
  readonly settings: Settings;
  /** `null` without an API key: the route answers 503. */
  readonly connect: UpstreamConnector | null;
  /** Opens transcription sessions (`?intent=transcription`); `null` without an API key. */
  readonly connectTranscription: UpstreamConnector | null;
  /** Whether rooms are on (`?room=` needs them). */
  readonly rooms: boolean;
  /** The features its settings turn on, in hook order. */
  readonly features: readonly RouteFeature[];
}

/** What the checks before the token established. */
interface OpenAIPlan {
  readonly model: string;
  readonly intent: Intent;
  readonly connect: UpstreamConnector;
  readonly session: string | null;
  readonly room: string | null;
}

/** The connection did not go ahead: every feature that admitted it lets go. */
function cancelAll(admissions: readonly Admission[]): void {
  for (const admission of admissions) admission.cancel?.();
}

/** The OpenAI route for `options`. */
export function openAIRoute(options: OpenAIRouteOptions): WebSocketRoute<OpenAIPlan> {
  const { settings, connect, connectTranscription, features } = options;
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
      const { searchParams } = url;
      const wanted = searchParams.get("intent");
      if (wanted !== null && wanted !== "transcription") return refused("bad_intent");
      const intent: Intent = wanted === null ? "conversation" : "transcription";
      // A ?model= beside ?intent=transcription is ignored: the session takes none.
      const requested = intent === "conversation" ? searchParams.get("model") : null;
      if (requested !== null && !settings.openaiRealtimeModels.includes(requested)) {
        return refused("model_not_allowed");
      }
      const room = searchParams.get("room");
      if (room !== null && !options.rooms) return refused("bad_room");
      const upstream = intent === "conversation" ? connect : connectTranscription;
      if (upstream === null) return refused("upstream_not_configured");
      for (const feature of features) {
        const problem = feature.check?.(url);
        if (problem) return { ok: false, refusal: problem };
      }
      // A transcription session's model is the client's choice in session.update;
      // until it says, the first allowed one names it (telemetry, metering's fallback).
      const model = intent === "conversation"
        ? requested ?? settings.openaiRealtimeModel
        : settings.openaiTranscriptionModels[0] ?? "";
      return {
        ok: true,
        plan: { model, intent, connect: upstream, session: searchParams.get("session"), room },
      };
    },
    admit(plan, identity, conn) {
      const context = {
        conn,
        user: identity.user,
        model: plan.model,
        session: plan.session,
        intent: plan.intent,
        room: plan.room,
        identity,
      };
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
