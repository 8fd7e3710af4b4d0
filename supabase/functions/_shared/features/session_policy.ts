/**
 * The session-policy feature (CONTRACT.md "Session policy"): pins the
 * operator's session the moment the upstream opens, checks every client
 * message before it is forwarded, answers refusals in band, and closes
 * `1008 policy_violation` on the 20th. Server-to-client traffic is untouched.
 * @module
 */
import {
  checkClientMessage,
  type MessageDecision,
  policyRefusalEvent,
} from "../realtime/policy_verdict.ts";
import { type SessionPolicy, transcriptionPolicy } from "../realtime/session_policy.ts";
import { MAX_REFUSALS, RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ConnectionHooks, ConnectionLink } from "../relay/hooks.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Message } from "../upstream/upstream.ts";
import type { RouteFeature } from "./feature.ts";

/** Who a connection is, for the `policy.refused` lines. */
export interface RefusalContext {
  readonly conn: string;
  readonly user: string;
  readonly telemetry: Telemetry;
}

/**
 * A client-message hook applying `check`: what passes is forwarded (as
 * `forward` says), a refusal is answered in band with the contract's
 * `relay_policy_violation` event and named in telemetry (never its content),
 * and the connection's 20th refusal closes it `1008 policy_violation`.
 */
export function refusingInBand(
  check: (
    data: Message,
  ) =>
    | { readonly pass: true; readonly forward: Message }
    | Exclude<MessageDecision, { pass: true }>,
  context: RefusalContext,
): NonNullable<ConnectionHooks["fromClient"]> {
  let refusals = 0;
  return (data: Message, link: ConnectionLink) => {
    const decision = check(data);
    if (decision.pass) return decision.forward;
    refusals++;
    context.telemetry.info("policy.refused", {
      conn: context.conn,
      user: context.user,
      code: decision.code,
      param: decision.param,
    });
    link.sendToClient(policyRefusalEvent(decision, decision.eventId));
    if (refusals >= MAX_REFUSALS) link.end(RELAY_CLOSE.policyViolation);
    return null;
  };
}

/** The policy's hooks for each connection of the OpenAI route. */
export function sessionPolicyFeature(
  conversations: SessionPolicy,
  telemetry: Telemetry,
): RouteFeature {
  // A transcription connection gets the transcription session pinned and locked instead.
  const transcriptions = transcriptionPolicy(conversations);
  // Serialised once: every connection sends the same pin.
  const pinOf = (policy: SessionPolicy) =>
    policy.session === null
      ? null
      : JSON.stringify({ type: "session.update", session: policy.session });
  const pins = { conversation: pinOf(conversations), transcription: pinOf(transcriptions) };
  return {
    admit: ({ conn, user, intent }) => {
      const policy = intent === "transcription" ? transcriptions : conversations;
      const pin = pins[intent];
      const hooks: ConnectionHooks = {
        fromClient: refusingInBand((data) => checkClientMessage(policy, data), {
          conn,
          user,
          telemetry,
        }),
      };
      // The loop runs this before it flushes what the client queued, so the
      // pin is the first thing OpenAI hears.
      if (pin !== null) hooks.upstreamOpened = (link) => link.sendToUpstream(pin);
      return { hooks };
    },
  };
}
