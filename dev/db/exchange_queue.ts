/**
 * Lets several Postgres wire connections share PGlite's one backend without
 * reading each other's half-finished work. pglite-socket's own multiplexer
 * (0.2.17, `maxConnections > 1`) interleaves single protocol messages and keeps
 * a connection's turn only while `isInTransaction()`, so two postgres.js
 * connections' Parse/Bind/Execute/Sync batches mix and bind each other's
 * unnamed statement (electric-sql/pglite#1046; reproduced here with the
 * relay's pool of 3). This queue gives one connection the backend from its
 * first message until the backend says ReadyForQuery *idle*: a whole
 * extended-protocol batch, or a whole transaction, runs as one exchange.
 * @module
 */

/** A backend's transaction status from ReadyForQuery: idle, in a transaction, or in a failed one. */
export type ReadyStatus = "I" | "T" | "E";

/**
 * Follows the backend's message stream (type byte, 4-byte length, body) across
 * chunk boundaries and remembers the last ReadyForQuery status.
 */
export class BackendStream {
  #header = new Uint8Array(5);
  #headerLength = 0;
  /** Body bytes of the current message still to skip. */
  #remaining = 0;
  #readyPending = false;
  /** The status of the last complete ReadyForQuery; `null` before any. */
  lastReady: ReadyStatus | null = null;

  /** Feeds the next chunk of backend output. */
  feed(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - at);
        if (this.#readyPending && take > 0) {
          const status = String.fromCharCode(chunk[at]!);
          if (status === "I" || status === "T" || status === "E") this.lastReady = status;
          this.#readyPending = false;
        }
        this.#remaining -= take;
        at += take;
        continue;
      }
      this.#header[this.#headerLength++] = chunk[at++]!;
      if (this.#headerLength < 5) continue;
      this.#headerLength = 0;
      const type = this.#header[0]!;
      const length = new DataView(this.#header.buffer).getInt32(1);
      // The length counts itself; anything shorter is not a message: resync on the next byte.
      this.#remaining = Math.max(length - 4, 0);
      this.#readyPending = type === 0x5a /* Z */ && length === 5;
    }
  }
}

/** The backend the queue serves: PGlite's raw protocol entry and its mutex. */
export interface RawBackend {
  execProtocolRawStream(
    message: Uint8Array,
    options: { onRawData: (data: Uint8Array) => void },
  ): Promise<void>;
  runExclusive<T>(fn: () => Promise<T>): Promise<T>;
}

interface Job {
  readonly handlerId: number;
  readonly message: Uint8Array;
  readonly onData: (data: Uint8Array) => void;
  readonly resolve: (bytes: number) => void;
  readonly reject: (error: Error) => void;
}

/** Options for {@linkcode ExchangeQueue}. */
export interface ExchangeQueueOptions {
  /**
   * How long a connection may hold the backend between two of its messages
   * while others wait (an idle transaction), like Postgres's
   * `idle_in_transaction_session_timeout`. @default 10000
   */
  readonly idleHoldMs?: number;
  /** Told which connection held the backend too long; it should be dropped. */
  readonly onIdleHold?: (handlerId: number) => void;
}

/** Sync: ends an extended-protocol batch (the backend answers ReadyForQuery). */
const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);

/** A simple-protocol Query message for `sql`. */
function queryMessage(sql: string): Uint8Array {
  const text = new TextEncoder().encode(sql);
  const message = new Uint8Array(1 + 4 + text.length + 1);
  message[0] = 0x51; // Q
  new DataView(message.buffer).setInt32(1, 4 + text.length + 1);
  message.set(text, 5);
  return message;
}

/**
 * The queue pglite-socket's `PGLiteSocketHandler` sends each client message
 * through (its `queryQueue` option): same three methods as the package's
 * own, with whole exchanges instead of single messages.
 */
export class ExchangeQueue {
  readonly #backend: RawBackend;
  readonly #stream = new BackendStream();
  readonly #idleHoldMs: number;
  readonly #onIdleHold: ((handlerId: number) => void) | undefined;
  #waiting: Job[] = [];
  /** The connection whose exchange is in progress; `null` when the backend is idle. */
  #owner: number | null = null;
  #running = false;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(backend: RawBackend, options: ExchangeQueueOptions = {}) {
    this.#backend = backend;
    this.#idleHoldMs = options.idleHoldMs ?? 10_000;
    this.#onIdleHold = options.onIdleHold;
  }

  /** The connection holding the backend, if any (for tests and logs). */
  get owner(): number | null {
    return this.#owner;
  }

  /** Runs one client message when the backend is this connection's; resolves to the bytes answered. */
  enqueue(
    handlerId: number,
    message: Uint8Array,
    onData: (data: Uint8Array) => void,
  ): Promise<number> {
    if (this.#closed) return Promise.reject(new Error("the embedded database is closed"));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ handlerId, message, onData, resolve, reject });
      this.#pump();
    });
  }

  /** Drops the messages of a connection that went away. */
  clearQueueForHandler(handlerId: number): void {
    const mine = this.#waiting.filter((job) => job.handlerId === handlerId);
    this.#waiting = this.#waiting.filter((job) => job.handlerId !== handlerId);
    for (const job of mine) job.reject(new Error("the connection went away"));
  }

  /**
   * A connection went away mid-exchange: end its batch (Sync) and roll back
   * its transaction, so the next connection finds the backend idle.
   */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.#owner !== handlerId || this.#closed) return;
    const done = new Promise<number>((resolve, reject) => {
      // Ahead of everyone: the backend is still this connection's.
      this.#waiting.unshift({ handlerId, message: SYNC, onData: () => {}, resolve, reject });
    });
    this.#pump();
    await done.catch(() => {});
    if (this.#owner === handlerId && !this.#closed) {
      const rolledBack = new Promise<number>((resolve, reject) => {
        this.#waiting.unshift({
          handlerId,
          message: queryMessage("ROLLBACK"),
          onData: () => {},
          resolve,
          reject,
        });
      });
      this.#pump();
      await rolledBack.catch(() => {});
    }
    if (this.#owner === handlerId) this.#owner = null;
    this.#pump();
  }

  /** Refuses everything still waiting; later messages are refused too. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#holdTimer);
    for (const job of this.#waiting.splice(0)) {
      job.reject(new Error("the embedded database is closed"));
    }
  }

  #next(): Job | undefined {
    const index = this.#owner === null
      ? 0
      : this.#waiting.findIndex((job) => job.handlerId === this.#owner);
    return index < 0 ? undefined : this.#waiting.splice(index, 1)[0];
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    try {
      for (let job = this.#next(); job && !this.#closed; job = this.#next()) {
        this.#owner = job.handlerId;
        this.#stream.lastReady = null;
        let bytes = 0;
        try {
          await this.#backend.runExclusive(() =>
            this.#backend.execProtocolRawStream(job.message, {
              onRawData: (data) => {
                bytes += data.length;
                this.#stream.feed(data);
                job.onData(data);
              },
            })
          );
          job.resolve(bytes);
        } catch (error) {
          job.reject(error instanceof Error ? error : new Error(String(error)));
        }
        // Only an idle backend may change hands: mid-batch or mid-transaction it stays.
        if (this.#stream.lastReady === "I") this.#owner = null;
      }
    } finally {
      this.#running = false;
    }
    const owner = this.#owner;
    if (owner !== null && this.#waiting.length > 0 && !this.#closed) {
      this.#holdTimer = setTimeout(() => {
        this.#holdTimer = undefined;
        if (this.#owner === owner) this.#onIdleHold?.(owner);
      }, this.#idleHoldMs);
    }
  }
}
