/**
 * A room member as the relay loop sees it: the far side of a client's
 * connection (an {@linkcode Upstream}) and the hooks that speak the room's
 * wire shapes, in one object per connection. The loop gives it what it gives
 * every far side (size and rate limits, the slow-reader bound, keepalive,
 * deadlines, close codes and notices, shutdown); the member reads each
 * message, refuses in band what a room cannot take, and hands the rest to
 * its {@linkcode Room}.
 * @module
 */
import { closeNotice } from "../realtime/close_notice.ts";
import { type CloseFrame, RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ClosedBy, ConnectionHooks, ConnectionLink } from "../relay/hooks.ts";
import type { Message, Upstream, UpstreamEvents } from "../upstream/upstream.ts";
import type { RoomHub } from "./hub.ts";
import type { Occupant, Room } from "./room.ts";
import {
  ackText,
  broadcastText,
  type PresenceEntry,
  problemText,
  readMemberText,
  readOnlyProblem,
  type RoomAccess,
  roomJoinedText,
  type WireProblem,
} from "./wire.ts";

/** Refusals one connection may earn before it is closed `1008 policy_violation`. */
export const MAX_REFUSALS = 20;

/** Who a member is. */
export interface MemberIdentity {
  readonly user: string;
  readonly conn: string;
  readonly access: RoomAccess;
  /** Hears its own broadcasts and binary frames (`?self=true`). */
  readonly self: boolean;
  /** Told in band why the relay closes it (`RELAY_CLOSE_NOTICES`). */
  readonly notices: boolean;
}

/** One member of one room. */
export class RoomMember implements Upstream, ConnectionHooks, Occupant {
  readonly user: string;
  readonly conn: string;
  readonly access: RoomAccess;
  readonly self: boolean;
  readonly bufferedAmount = 0;

  readonly #hub: RoomHub;
  readonly #roomName: string;
  /** Joined when the loop connects the member (after every check passed). */
  #room: Room | null = null;
  readonly #now: () => number;
  readonly #notices: boolean;
  #events: UpstreamEvents | null = null;
  #link: ConnectionLink | null = null;
  #opened = false;
  #closed = false;
  #refusals = 0;

  constructor(hub: RoomHub, room: string, identity: MemberIdentity, now: () => number) {
    this.#hub = hub;
    this.#roomName = room;
    this.user = identity.user;
    this.conn = identity.conn;
    this.access = identity.access;
    this.self = identity.self;
    this.#notices = identity.notices;
    this.#now = now;
  }

  /** The relay loop's connector for this member: joins the room. */
  connect(events: UpstreamEvents): Upstream {
    this.#events = events;
    this.#room = this.#hub.room(this.#roomName);
    this.#room.admit(this);
    return this;
  }

  started(link: ConnectionLink): void {
    this.#link = link;
  }

  /** The in-band notice before a close the relay starts (browsers on Deno 2.1.4 see only 1006). */
  closeNotice(frame: CloseFrame, by: ClosedBy): string | null {
    return this.#notices ? closeNotice(frame, by) : null;
  }

  /** The loop is done with the connection: whatever happened, the member is gone. */
  ended(): void {
    this.#closed = true;
    this.#room?.leave(this);
  }

  open(presence: readonly PresenceEntry[]): void {
    if (this.#closed || this.#opened) return;
    this.#opened = true;
    // room.joined first: the loop's queue of client messages flushes on open, after it.
    this.#events?.onUpstreamMessage(roomJoinedText({
      room: this.#roomName,
      user: this.user,
      conn: this.conn,
      access: this.access,
      presence,
      offset: null,
      recovered: null,
    }));
    this.#events?.onUpstreamOpen();
  }

  deliver(data: Message): void {
    if (this.#opened && !this.#closed) this.#events?.onUpstreamMessage(data);
  }

  /** A client message that passed the loop's size and rate checks. */
  send(data: Message): void {
    const room = this.#room;
    if (this.#closed || room === null) return;
    if (typeof data !== "string") {
      if (this.access !== "write") return this.#refuse(readOnlyProblem());
      return room.broadcast(this, data);
    }
    const intent = readMemberText(data);
    if (intent.kind === "problem") return this.#refuse(intent);
    if (this.access !== "write") {
      return this.#refuse(readOnlyProblem(intent.kind === "broadcast" ? intent.id : null));
    }
    if (intent.kind === "presence") return room.setState(this, intent.stateJson);
    const at = new Date(this.#now()).toISOString();
    room.broadcast(
      this,
      broadcastText(intent.event, intent.payloadJson, {
        user: this.user,
        id: intent.id,
        offset: null,
        at,
      }),
    );
    if (intent.id !== null) this.#events?.onUpstreamMessage(ackText(intent.id, null));
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#room?.leave(this);
    const events = this.#events;
    queueMicrotask(() => events?.onUpstreamClose(code, reason));
  }

  #refuse(problem: WireProblem): void {
    this.#events?.onUpstreamMessage(problemText(problem));
    if (++this.#refusals >= MAX_REFUSALS) this.#link?.end(RELAY_CLOSE.policyViolation);
  }
}
