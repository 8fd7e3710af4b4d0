/**
 * A token bucket: `ratePerSecond` messages per second on average, bursts of
 * up to twice that.
 * @module
 */

/** Counts messages against a per-connection rate with a burst allowance. */
export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #capacity: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  /** `now` returns milliseconds from any fixed origin (e.g. `performance.now`). */
  constructor(ratePerSecond: number, now: () => number, burstFactor = 2) {
    this.#ratePerMs = ratePerSecond / 1000;
    this.#capacity = ratePerSecond * burstFactor;
    this.#now = now;
    this.#tokens = this.#capacity;
    this.#last = now();
  }

  /** Takes one token; `false` when the bucket is empty (the message is over the rate). */
  take(): boolean {
    const now = this.#now();
    const elapsed = now - this.#last;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#capacity, this.#tokens + elapsed * this.#ratePerMs);
      this.#last = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
