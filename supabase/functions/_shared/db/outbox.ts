/**
 * Writes that must not be lost while the database is away: records wait in
 * memory, in order, and are written in batches off the per-message path,
 * retried with capped exponential backoff, and flushed at shutdown. Each
 * batch writer must be idempotent (a batch whose answer was lost is sent
 * again), e.g. `insert ... on conflict do nothing`.
 * @module
 */

/** Options for {@linkcode Outbox}. */
export interface OutboxOptions<T> {
  /** Writes one batch, in order; rejects when it did not (or may not have) happen. */
  readonly write: (batch: readonly T[]) => Promise<void>;
  /** Told of each failed attempt, with the records still pending. */
  readonly onFailure?: (error: unknown, pending: number) => void;
  /** Records per write. @default 100 */
  readonly batchSize?: number;
  /** First retry delay; doubles up to `maxDelayMs`. @default 250 */
  readonly baseDelayMs?: number;
  /** @default 5000 */
  readonly maxDelayMs?: number;
}

/** An in-memory, ordered, retrying write queue. */
export class Outbox<T> {
  readonly #options: OutboxOptions<T>;
  readonly #batchSize: number;
  #queue: T[] = [];
  #writing: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;
  #closed = false;

  constructor(options: OutboxOptions<T>) {
    this.#options = options;
    this.#batchSize = options.batchSize ?? 100;
  }

  /** Records not yet written. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues a record; the write starts on the next turn, so a burst goes in one batch. */
  add(record: T): void {
    this.#queue.push(record);
    if (this.#writing === null && this.#timer === undefined && !this.#closed) {
      this.#schedule(0);
    }
  }

  /**
   * Writes everything pending, retrying until done or `deadlineMs` passes;
   * resolves to the number of records still unwritten (0 when all made it).
   */
  async flush(deadlineMs: number): Promise<number> {
    const deadline = Date.now() + deadlineMs;
    this.#cancelTimer();
    while (this.#queue.length > 0 && Date.now() < deadline) {
      if (this.#writing) {
        await this.#writing;
        continue;
      }
      const ok = await this.#attempt();
      if (!ok) {
        const wait = Math.min(this.#delay(), deadline - Date.now());
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    if (this.#writing) await this.#writing;
    return this.#queue.length;
  }

  /** Flushes within `deadlineMs` and stops retrying; resolves to what is left unwritten. */
  async close(deadlineMs: number): Promise<number> {
    const left = await this.flush(deadlineMs);
    this.#closed = true;
    this.#cancelTimer();
    return left;
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#attempt().then((ok) => {
        if (this.#closed || this.#queue.length === 0) return;
        this.#schedule(ok ? 0 : this.#delay());
      });
    }, ms);
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #delay(): number {
    const base = this.#options.baseDelayMs ?? 250;
    const max = this.#options.maxDelayMs ?? 5000;
    return Math.min(max, base * 2 ** Math.max(0, this.#failures - 1));
  }

  /** One batch; resolves to whether it was written. Never rejects. */
  #attempt(): Promise<boolean> {
    if (this.#writing || this.#queue.length === 0) return Promise.resolve(true);
    const batch = this.#queue.slice(0, this.#batchSize);
    let ok = false;
    this.#writing = this.#options.write(batch).then(
      () => {
        // Only now are they written: a failed batch stays at the head, in order.
        this.#queue.splice(0, batch.length);
        this.#failures = 0;
        ok = true;
      },
      (error: unknown) => {
        this.#failures++;
        this.#options.onFailure?.(error, this.#queue.length);
      },
    ).finally(() => {
      this.#writing = null;
    });
    return this.#writing.then(() => ok);
  }
}
