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
import { type CloseFrame, MAX_REFUSALS, RELAY_CLOSE } from "../relay/close_codes.ts";
import type { ClosedBy, ConnectionHooks, ConnectionLink } from "../relay/hooks.ts";
import type { Message, Upstream, UpstreamEvents } from "../upstream/upstream.ts";
import { Catchup, type RecoverFrom, type RoomHistory } from "./history.ts";
import type { RoomHub } from "./hub.ts";
import type { Occupant, Room } from "./room.ts";
import {
  ackText,
  type BroadcastIntent,
  broadcastText,
  historyUnavailableProblem,
  type PresenceEntry,
  problemText,
  readMemberText,
  readOnlyProblem,
  type RoomAccess,
  roomJoinedText,
  type WireProblem,
} from "./wire.ts";

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

/** With history on: the store, and where this member recovers from (`?since=`, `?last=`). */
export interface MemberHistory {
  readonly store: RoomHistory;
  readonly from: RecoverFrom | null;
}

/** Messages a member may send while one of its broadcasts is being stored (they wait, in order). */
export const MAX_WAITING_BEHIND_STORE = 512;

/** The history could not be read after the member was admitted: it should come back. */
const HISTORY_UNAVAILABLE = { code: 1011, reason: "history_unavailable" } as const;

/** One member of one room. */
export class RoomMember implements Upstream, ConnectionHooks, Occupant {
  readonly present = true;
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
  readonly #history: MemberHistory | null;
  /** With history on, from the member's open: its replay and what arrives meanwhile. */
  #catchup: Catchup | null = null;
  /** Messages behind a broadcast being stored, in the order sent; `null` when none is. */
  #waiting: Message[] | null = null;

  constructor(
    hub: RoomHub,
    room: string,
    identity: MemberIdentity,
    now: () => number,
    history: MemberHistory | null = null,
  ) {
    this.#history = history;
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
    // After the loop's constructor has returned (as echo opens): a room that
    // already hears opens the member at once, and the loop must be whole by then.
    queueMicrotask(() => {
      if (this.#closed) return;
      this.#room = this.#hub.room(this.#roomName);
      this.#room.admit(this);
    });
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
    if (this.#history === null) return this.#joined(presence, null, null);
    // room.joined carries the latest offset: read first, holding what arrives meanwhile.
    const catchup = this.#catchup = new Catchup({
      joined: (offset, recovered) => this.#joined(presence, offset, recovered),
      emit: (data) => !this.#closed && this.#events?.onUpstreamMessage(data),
      failed: () => {
        this.#link?.end(HISTORY_UNAVAILABLE);
        // Over now: the loop waits for a far side that never opened to open
        // before closing it, and this one never will (nor would a connection
        // the relay was already ending be told anything by end()).
        this.close(1000, "");
      },
    });
    void catchup.start(this.#history.store, this.#roomName, this.#history.from);
  }

  /** room.joined first: the loop's queue of client messages flushes on open, after it. */
  #joined(
    presence: readonly PresenceEntry[],
    offset: number | null,
    recovered: boolean | null,
  ): void {
    if (this.#closed) return;
    this.#events?.onUpstreamMessage(roomJoinedText({
      room: this.#roomName,
      user: this.user,
      conn: this.conn,
      access: this.access,
      presence,
      offset,
      recovered,
    }));
    this.#events?.onUpstreamOpen();
  }

  deliver(data: Message): void {
    if (!this.#opened || this.#closed) return;
    if (this.#catchup !== null) this.#catchup.deliver(data);
    else this.#events?.onUpstreamMessage(data);
  }

  /** A client message that passed the loop's size and rate checks. */
  send(data: Message): void {
    if (this.#waiting !== null) {
      // One sender's messages stay in order, even behind a broadcast being stored.
      if (this.#waiting.length >= MAX_WAITING_BEHIND_STORE) {
        return this.#link?.end(RELAY_CLOSE.bufferFull);
      }
      this.#waiting.push(data);
      return;
    }
    this.#handle(data);
  }

  #handle(data: Message): void {
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
    if (this.#history !== null && !intent.ephemeral) return this.#store(room, intent, at);
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

  /**
   * Keeps a broadcast, then delivers it with its offset; what the member
   * sends meanwhile waits. Delivered even if the member has gone since:
   * it is kept, so the room must hear it.
   */
  #store(room: Room, intent: BroadcastIntent, at: string): void {
    this.#waiting = [];
    const { event, payloadJson, id } = intent;
    this.#history!.store.append({ room: room.name, user: this.user, id, event, payloadJson, at })
      .then(({ offset, duplicate }) => {
        // A resend of a kept id: acknowledged with the first offset, never delivered twice.
        if (!duplicate) {
          room.broadcast(
            this,
            broadcastText(event, payloadJson, { user: this.user, id, offset, at }),
          );
        }
        if (id !== null && !this.#closed) this.#events?.onUpstreamMessage(ackText(id, offset));
      }, () => {
        // Not the member's fault: refused so it resends, not counted towards the 20.
        if (!this.#closed) {
          this.#events?.onUpstreamMessage(problemText(historyUnavailableProblem(id)));
        }
      })
      .finally(() => {
        const waiting = this.#waiting ?? [];
        this.#waiting = null;
        for (let i = 0; i < waiting.length; i++) {
          this.#handle(waiting[i]!);
          // Behind another stored broadcast: the rest wait again, in order.
          if (this.#waiting !== null) {
            (this.#waiting as Message[]).push(...waiting.slice(i + 1));
            break;
          }
        }
      });
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
