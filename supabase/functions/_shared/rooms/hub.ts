/**
 * The rooms of one instance: made when a first member arrives, let go (and
 * their channel left) a few seconds after the last one leaves, so a member
 * who reconnects at once does not make the instance leave and rejoin.
 * @module
 */
import { type BusMessage, localBus, type RoomBus } from "./bus.ts";
import { Room } from "./room.ts";

/** What the hub is built with. */
export interface HubOptions {
  readonly bus: RoomBus;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** How long a member waits for the room's channel before local delivery only. */
  readonly busWaitMs: number;
  /**
   * How long an empty room keeps its channel (the contract allows 10 s).
   * @default 5000
   */
  readonly lingerMs?: number;
}

/** Every room this instance has members (or followers) in. */
export class RoomHub {
  readonly #options: HubOptions;
  readonly #rooms = new Map<string, Room>();
  readonly #letGo = new Map<Room, ReturnType<typeof setTimeout>>();
  readonly #onEmpty = (room: Room) => this.#scheduleLetGo(room);
  #closed = false;

  constructor(options: HubOptions) {
    this.#options = options;
  }

  /**
   * The room named `name`, joined now if this instance had none. Once the hub
   * is closed (the instance is stopping) a late arrival, which is being told
   * to reconnect elsewhere, gets a room of its own on no bus.
   */
  room(name: string): Room {
    let room = this.#rooms.get(name);
    if (room === undefined) {
      room = new Room({
        name,
        bus: this.#closed ? localBus(this.#options.bus.instance) : this.#options.bus,
        now: this.#options.now,
        busWaitMs: this.#options.busWaitMs,
        onEmpty: this.#onEmpty,
      });
      if (!this.#closed) this.#rooms.set(name, room);
    } else {
      const timer = this.#letGo.get(room);
      if (timer !== undefined) {
        clearTimeout(timer);
        this.#letGo.delete(room);
      }
    }
    return room;
  }

  /** Members of `name` across instances, as far as this instance knows. */
  count(name: string): number {
    return this.#rooms.get(name)?.count() ?? 0;
  }

  /**
   * A server's broadcast into `name`: to members here and through the room's
   * channel, or once through the bus when this instance is not in the room;
   * refused once the hub is closed.
   */
  publish(name: string, text: string): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    const room = this.#rooms.get(name);
    if (room !== undefined) {
      room.broadcast(null, text);
      return Promise.resolve(true);
    }
    const message: BusMessage = { kind: "text", text };
    return this.#options.bus.publish(name, message);
  }

  /** Leaves every room and the bus. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#letGo.values()) clearTimeout(timer);
    this.#letGo.clear();
    for (const room of this.#rooms.values()) room.close();
    this.#rooms.clear();
    await this.#options.bus.close();
  }

  #scheduleLetGo(room: Room): void {
    // Stopping: nothing lingers, and no timer may outlive the instance.
    if (this.#closed) return room.close();
    if (this.#letGo.has(room)) return;
    this.#letGo.set(
      room,
      setTimeout(() => {
        this.#letGo.delete(room);
        if (room.inUse || this.#rooms.get(room.name) !== room) return;
        this.#rooms.delete(room.name);
        room.close();
      }, this.#options.lingerMs ?? 5000),
    );
  }
}
