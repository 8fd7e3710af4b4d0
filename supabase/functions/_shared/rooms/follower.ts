/**
 * A room's follower over server-sent events: it hears what members hear
 * (text only), counts for `room_full`, is absent from presence, and is
 * dropped, never buffered without bound, when it stops reading.
 * @module
 */
import { eventTypeOf } from "../realtime/event_type.ts";
import { RELAY_CLOSE } from "../relay/close_codes.ts";
import type { Deadline, Deadlines } from "../relay/deadlines.ts";
import type { Telemetry } from "../telemetry/log.ts";
import type { Message } from "../upstream/upstream.ts";
import { Catchup, offsetOf, type RecoverFrom, type RoomHistory } from "./history.ts";
import type { RoomHub } from "./hub.ts";
import type { Occupant, Room } from "./room.ts";
import { SSE_KEEPALIVE, sseClose, sseEvent } from "./sse.ts";
import { type PresenceEntry, type RoomAccess, roomJoinedText } from "./wire.ts";

/** A comment at least this often keeps the stream open (the contract: at least every 15 s). */
export const SSE_KEEPALIVE_MS = 15_000;

/** Everything one follower needs. */
export interface FollowerOptions {
  readonly hub: RoomHub;
  readonly room: string;
  readonly user: string;
  readonly conn: string;
  readonly access: RoomAccess;
  /** With history on: the store and where to recover from (`Last-Event-ID`, `?since=`). */
  readonly history: { readonly store: RoomHistory; readonly from: RecoverFrom | null } | null;
  /** Bytes queued for a follower that does not read before it is dropped. */
  readonly maxBufferedBytes: number;
  /** Token expiry in ms since the epoch; `null` when the token has none. */
  readonly expiresAtMs: number | null;
  readonly deadlines: Deadlines;
  readonly telemetry: Telemetry;
  readonly now: () => number;
  /** Called once when the stream is over (its slot is released). */
  readonly onEnded: (follower: RoomFollower) => void;
}

const encoder = new TextEncoder();

/** One SSE follower of one room, from its response until its stream ends. */
export class RoomFollower implements Occupant {
  readonly present = false;
  readonly self = false;
  readonly user: string;
  readonly conn: string;
  /** The response body. */
  readonly stream: ReadableStream<Uint8Array>;

  readonly #options: FollowerOptions;
  readonly #startedAt: number;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #room: Room | null = null;
  #catchup: Catchup | null = null;
  #keepalive: Deadline | undefined;
  #expiry: Deadline | undefined;
  #ended = false;
  #events = 0;
  #done: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(options: FollowerOptions) {
    this.#options = options;
    this.user = options.user;
    this.conn = options.conn;
    this.#startedAt = options.now();
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      // The client went away.
      cancel: () => this.#end(null),
    }, { highWaterMark: options.maxBufferedBytes, size: (chunk) => chunk.byteLength });
    options.telemetry.info("sse.connection.opened", {
      conn: this.conn,
      user: this.user,
      room: options.room,
    });
    this.#room = options.hub.room(options.room);
    this.#room.admit(this);
    this.#keepalive = options.deadlines.after(SSE_KEEPALIVE_MS, RoomFollower.#tick, this);
    if (options.expiresAtMs !== null) {
      this.#expiry = options.deadlines.after(
        options.expiresAtMs - options.now(),
        RoomFollower.#expired,
        this,
      );
    }
  }

  static #tick(follower: RoomFollower): void {
    follower.#write(SSE_KEEPALIVE);
    if (!follower.#ended) {
      follower.#keepalive = follower.#options.deadlines.after(
        SSE_KEEPALIVE_MS,
        RoomFollower.#tick,
        follower,
      );
    }
  }

  static #expired(follower: RoomFollower): void {
    follower.#end(RELAY_CLOSE.tokenExpired);
  }

  /** Settles once the stream has ended. */
  get done(): Promise<void> {
    if (this.#done === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => (resolve = settle));
      this.#done = { promise, resolve };
      if (this.#ended) resolve();
    }
    return this.#done.promise;
  }

  /** The instance is stopping: a last `close` event (1012), then the end. */
  shutdown(): void {
    this.#end(RELAY_CLOSE.serverRestarting);
  }

  open(presence: readonly PresenceEntry[]): void {
    const joined = (offset: number | null, recovered: boolean | null) =>
      this.#write(sseEvent(
        "room.joined",
        roomJoinedText({
          room: this.#options.room,
          user: this.user,
          conn: this.conn,
          access: this.#options.access,
          presence,
          offset,
          recovered,
        }),
      ));
    const history = this.#options.history;
    if (history === null) return joined(null, null);
    this.#catchup = new Catchup({
      joined,
      emit: (data) => this.#emit(data),
      failed: () => this.#end({ code: 1011, reason: "history_unavailable" }),
    });
    void this.#catchup.start(history.store, this.#options.room, history.from);
  }

  deliver(data: Message): void {
    if (this.#ended || typeof data !== "string") return;
    if (this.#catchup !== null) this.#catchup.deliver(data);
    else this.#emit(data);
  }

  #emit(data: Message): void {
    if (typeof data !== "string") return;
    const type = eventTypeOf(data);
    if (type === null) return;
    this.#events++;
    this.#write(sseEvent(type, data, offsetOf(data)));
  }

  #write(text: string): void {
    if (this.#ended) return;
    this.#controller.enqueue(encoder.encode(text));
    // Not reading: dropped at the bound, what it queued discarded.
    if ((this.#controller.desiredSize ?? 0) < 0) this.#end(null, new Error("follower too slow"));
  }

  /** Ends the stream: with a last `close` event when the relay ends it, else at once. */
  #end(close: { code: number; reason: string } | null, failure?: Error): void {
    if (this.#ended) return;
    if (close !== null) this.#write(sseClose(close.code, close.reason));
    // Writing it may have found the follower too slow and ended it already.
    if (this.#ended) return;
    this.#ended = true;
    const { deadlines, telemetry } = this.#options;
    deadlines.cancel(this.#keepalive);
    deadlines.cancel(this.#expiry);
    this.#room?.leave(this);
    try {
      if (failure) this.#controller.error(failure);
      else this.#controller.close();
    } catch {
      // Already closed or cancelled by the client.
    }
    telemetry.info("sse.connection.closed", {
      conn: this.conn,
      user: this.user,
      room: this.#options.room,
      ms: this.#options.now() - this.#startedAt,
      events: this.#events,
    });
    this.#options.onEnded(this);
    this.#done?.resolve();
  }
}
