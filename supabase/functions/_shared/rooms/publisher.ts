/**
 * A publisher into a room that is not a member (a connection's captions): it
 * keeps the room's channel joined while it lives, and its broadcasts reach
 * every member in the order it published them, kept ones with their offset
 * (the ones after a kept one wait for its database round trip).
 * @module
 */
import type { RoomHistory } from "./history.ts";
import type { RoomHub } from "./hub.ts";
import type { Room } from "./room.ts";
import { broadcastText } from "./wire.ts";

/** One broadcast to publish. */
interface Pending {
  readonly event: string;
  readonly payloadJson: string;
  readonly ephemeral: boolean;
  readonly at: string;
}

/** The most broadcasts waiting behind a kept one before new ones are dropped (the database is slow). */
const MAX_WAITING = 1024;

/** Publishes as `user` into one room. */
export class RoomPublisher {
  readonly #room: Room;
  readonly #user: string;
  readonly #history: RoomHistory | null;
  readonly #now: () => number;
  /** Broadcasts behind a kept one being stored; `null` when none is. */
  #waiting: Pending[] | null = null;
  #stopped = false;

  constructor(
    hub: RoomHub,
    room: string,
    user: string,
    history: RoomHistory | null,
    now: () => number,
  ) {
    this.#room = hub.room(room);
    this.#room.hold();
    this.#user = user;
    this.#history = history;
    this.#now = now;
  }

  /** Publishes a broadcast from the user (`meta.id` null); `ephemeral` ones are never kept. */
  publish(event: string, payloadJson: string, ephemeral: boolean): void {
    if (this.#stopped) return;
    const pending = { event, payloadJson, ephemeral, at: new Date(this.#now()).toISOString() };
    if (this.#waiting === null) this.#send(pending);
    else if (this.#waiting.length < MAX_WAITING) this.#waiting.push(pending);
  }

  /** The connection is over: the room may let its channel go (what is being kept still goes out). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#waiting === null) this.#room.unhold();
  }

  #send(pending: Pending): void {
    const { event, payloadJson, ephemeral, at } = pending;
    const history = this.#history;
    if (history === null || ephemeral) {
      this.#room.broadcast(null, broadcastText(event, payloadJson, this.#meta(null, at)));
      return;
    }
    this.#waiting = [];
    history.append({ room: this.#room.name, user: this.#user, id: null, event, payloadJson, at })
      .then(
        ({ offset }) =>
          this.#room.broadcast(null, broadcastText(event, payloadJson, this.#meta(offset, at))),
        // Not kept (the database is unreachable): a caption is lost, never delivered unkept.
        () => {},
      )
      .finally(() => {
        const waiting = this.#waiting ?? [];
        this.#waiting = null;
        for (let i = 0; i < waiting.length; i++) {
          this.#send(waiting[i]!);
          if (this.#waiting !== null) {
            (this.#waiting as Pending[]).push(...waiting.slice(i + 1));
            return;
          }
        }
        if (this.#stopped) this.#room.unhold();
      });
  }

  #meta(offset: number | null, at: string) {
    return { user: this.#user, id: null, offset, at };
  }
}
