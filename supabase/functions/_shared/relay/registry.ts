/**
 * Live connections of this instance: enforces the per-user and per-instance
 * caps and reaches every connection at shutdown.
 * @module
 */

/** What the registry needs of a connection. */
export interface Closable {
  /** Closes the connection with `1012 server_restarting`. */
  shutdown(): void;
  /** Settles when both sockets are closed. */
  readonly done: Promise<void>;
}

/** Tracks connections against `maxPerUser` and `maxTotal`. */
export class ConnectionRegistry {
  readonly #maxPerUser: number;
  readonly #maxTotal: number;
  readonly #perUser = new Map<string, number>();
  readonly #live = new Set<Closable>();
  #total = 0;
  /** Shutdown has begun: whatever is attached from now on is shut down at once. */
  #draining = false;

  constructor(maxPerUser: number, maxTotal: number) {
    this.#maxPerUser = maxPerUser;
    this.#maxTotal = maxTotal;
  }

  /** Connections currently held (reserved or live). */
  get size(): number {
    return this.#total;
  }

  /**
   * Reserves a slot for `user` (`null`), or says which cap is reached.
   * Synchronous, so two concurrent upgrades cannot both take the last slot.
   * Each reservation is released exactly once, with {@linkcode release}.
   */
  reserve(user: string): "too_many_connections" | "at_capacity" | null {
    const held = this.#perUser.get(user) ?? 0;
    if (held >= this.#maxPerUser) return "too_many_connections";
    if (this.#total >= this.#maxTotal) return "at_capacity";
    this.#perUser.set(user, held + 1);
    this.#total++;
    return null;
  }

  /**
   * The connection a reservation became: shutdown reaches it. One admitted
   * while the instance shuts down (its checks were still running) is told
   * to reconnect elsewhere at once.
   */
  attach(connection: Closable): void {
    this.#live.add(connection);
    if (this.#draining) connection.shutdown();
  }

  /** Gives back `user`'s reservation, and forgets its connection if one was attached. */
  release(user: string, connection?: Closable): void {
    if (connection !== undefined) this.#live.delete(connection);
    this.#total--;
    const left = (this.#perUser.get(user) ?? 1) - 1;
    if (left > 0) this.#perUser.set(user, left);
    else this.#perUser.delete(user);
  }

  /**
   * Tells every live connection to reconnect elsewhere, and each one attached
   * from now on as it attaches; settles when all of them are closed.
   */
  async shutdownAll(): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      for (const connection of [...this.#live]) connection.shutdown();
    }
    const awaited = new Set<Closable>();
    for (;;) {
      const left = [...this.#live].filter((connection) => !awaited.has(connection));
      if (left.length === 0) return;
      for (const connection of left) awaited.add(connection);
      await Promise.all(left.map((connection) => connection.done));
    }
  }
}
