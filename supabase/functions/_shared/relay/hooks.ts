/**
 * The one seam between the protocol-blind relay loop and the features that
 * read a protocol (close notices, session policy, metering, resume). A route
 * builds one {@linkcode ConnectionHooks} per connection; the loop calls it at
 * fixed points and applies what it returns. Echo gets none.
 * @module
 */
import type { Message } from "../upstream/upstream.ts";
import type { CloseFrame } from "./close_codes.ts";

/** Who ended a connection, for telemetry. */
export type ClosedBy = "client" | "upstream" | "relay";

/** What a feature may do to the connection it was given. */
export interface ConnectionLink {
  /** The connection's id, its user and its model: a hook shared by every connection reads them here. */
  readonly conn: string;
  readonly user: string;
  readonly model: string;
  /** Sends to the client now (queued while its socket is still opening); no hook sees it. */
  sendToClient(data: Message): void;
  /** Sends to the upstream now; only valid once it has opened. No hook sees it. */
  sendToUpstream(data: Message): void;
  /**
   * Client messages wait, in order and within the buffer bound, until as many
   * {@linkcode releaseClient} calls as holds. Used while a feature talks to
   * the upstream first (a replayed conversation).
   */
  holdClient(): void;
  releaseClient(): void;
  /** Closes the connection as the relay: the client gets `frame` (after its notice). */
  end(frame: CloseFrame): void;
  /** Whether the connection has started closing. */
  ending(): boolean;
}

/** A connection's end, as features see it. */
export interface ConnectionEnd {
  readonly frame: CloseFrame;
  readonly by: ClosedBy;
}

/** Called by the relay loop; every member is optional. */
export interface ConnectionHooks {
  /** Once, as the connection starts: the link stays valid until it ends. */
  started?(link: ConnectionLink): void;
  /** The upstream opened; runs before anything the client queued is delivered. */
  upstreamOpened?(link: ConnectionLink): void;
  /**
   * A client message that passed the size and rate checks. Returns what to
   * forward (the same message, or a replacement), or `null` to forward nothing.
   */
  fromClient?(data: Message, link: ConnectionLink): Message | null;
  /** An upstream message before it reaches the client; `null` hides it. */
  fromUpstream?(data: Message, link: ConnectionLink): Message | null;
  /**
   * The relay is about to close the client with `frame` (a close the client
   * did not start): a message to send right before the close frame, or `null`.
   */
  closeNotice?(frame: CloseFrame, by: ClosedBy): Message | null;
  /** Once, when the connection is over. */
  ended?(end: ConnectionEnd): void;
}

/**
 * One set of hooks running each of `parts` in order. A message dropped by one
 * part reaches none after it; the first close notice offered is the one sent.
 */
export function composeHooks(parts: readonly ConnectionHooks[]): ConnectionHooks | undefined {
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  const having = <K extends keyof ConnectionHooks>(key: K) =>
    parts.filter((part) => part[key] !== undefined).map((part) => part[key]!);
  const started = having("started");
  const opened = having("upstreamOpened");
  const fromClient = having("fromClient");
  const fromUpstream = having("fromUpstream");
  const notices = having("closeNotice");
  const ended = having("ended");
  const chain = (steps: typeof fromClient) =>
    steps.length === 0 ? undefined : (data: Message, link: ConnectionLink) => {
      let current: Message | null = data;
      for (const step of steps) {
        current = step(current, link);
        if (current === null) return null;
      }
      return current;
    };
  const hooks: ConnectionHooks = {};
  if (started.length) hooks.started = (link) => started.forEach((run) => run(link));
  if (opened.length) hooks.upstreamOpened = (link) => opened.forEach((run) => run(link));
  const client = chain(fromClient);
  if (client) hooks.fromClient = client;
  const upstream = chain(fromUpstream);
  if (upstream) hooks.fromUpstream = upstream;
  if (notices.length) {
    hooks.closeNotice = (frame, by) => {
      for (const notice of notices) {
        const message = notice(frame, by);
        if (message !== null) return message;
      }
      return null;
    };
  }
  if (ended.length) hooks.ended = (end) => ended.forEach((run) => run(end));
  return hooks;
}

/**
 * {@linkcode composeHooks} for one connection after another, reusing the last
 * composition while each connection's parts are the same objects as the one
 * before's: features whose hooks are shared by every connection (close
 * notices, usage telemetry) then cost a connection no hooks of its own.
 */
export function hooksComposer(): (
  parts: readonly ConnectionHooks[],
) => ConnectionHooks | undefined {
  let last: readonly ConnectionHooks[] = [];
  let composed: ConnectionHooks | undefined;
  return (parts) => {
    const same = parts.length === last.length && parts.every((part, i) => part === last[i]);
    if (!same) {
      last = parts;
      composed = composeHooks(parts);
    }
    return composed;
  };
}
