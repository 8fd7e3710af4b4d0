/**
 * The bus between instances: how a room's members on different instances
 * hear each other. One small interface; Supabase Realtime is the real one
 * (realtime_bus.ts), and {@linkcode localBus} serves one instance alone.
 * @module
 */

/**
 * What travels on a room's channel:
 * - `text`: a member-facing text (a broadcast, already serialised with its meta);
 * - `binary`: a member's binary frame, byte for byte;
 * - `presence`: one instance's changes ({@linkcode PresenceDelta});
 * - `snapshot`: everything one instance holds ({@linkcode PresenceSnapshot}).
 */
export type BusMessage =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "binary"; readonly data: ArrayBuffer }
  | { readonly kind: "presence"; readonly delta: PresenceDelta }
  | { readonly kind: "snapshot"; readonly snapshot: PresenceSnapshot };

/** One user as an instance reports them: id, state JSON (`null` when unset), time set, present. */
export type PresenceRecord = readonly [user: string, stateJson: string, at: number];

/** Changes at one instance: users now present (with state) and users gone. */
export interface PresenceDelta {
  readonly instance: string;
  /** Members (and followers) the instance holds in the room now. */
  readonly count: number;
  readonly set: readonly PresenceRecord[];
  readonly gone: readonly string[];
}

/** Everything one instance holds in a room. */
export interface PresenceSnapshot {
  readonly instance: string;
  readonly count: number;
  readonly users: readonly PresenceRecord[];
}

/** What a room hears from its channel. */
export interface BusListener {
  /** The channel is joined (again): what is sent now reaches every instance on it. */
  onBusReady(): void;
  /** The channel is lost (Realtime unreachable); the bus rejoins by itself. */
  onBusDown(): void;
  /** A message from another instance. */
  onBusMessage(message: BusMessage): void;
  /** The instances on the channel now, this one excluded (from Realtime Presence). */
  onBusInstances(instances: ReadonlySet<string>): void;
}

/** A room's channel, joined for as long as the instance has members there. */
export interface BusChannel {
  send(message: BusMessage): void;
  /** Leaves the channel; the listener hears nothing more. */
  leave(): void;
}

/** The bus of one instance. */
export interface RoomBus {
  /** This instance's id on every channel. */
  readonly instance: string;
  /** Joins room `room`'s channel; the listener is told when it is ready. */
  join(room: string, listener: BusListener): BusChannel;
  /**
   * Sends once into a room this instance has no channel for (a server's
   * publish); resolves whether it was accepted.
   */
  publish(room: string, message: BusMessage): Promise<boolean>;
  /** Leaves every channel and disconnects. */
  close(): Promise<void>;
}

/** No bus (`RELAY_ROOMS_BUS=off`): every room lives on this instance alone. */
export function localBus(instance: string): RoomBus {
  return {
    instance,
    join(_room, listener) {
      let open = true;
      queueMicrotask(() => {
        if (!open) return;
        listener.onBusReady();
        // Alone: no other instance will send a snapshot, so members are let in at once.
        listener.onBusInstances(new Set());
      });
      return {
        send() {},
        leave() {
          open = false;
        },
      };
    },
    publish: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
}
