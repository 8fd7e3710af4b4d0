/**
 * One timer for every connection's deadlines (open, token expiry, linger).
 * Each `setTimeout` on current Deno builds a Node-compat `Timeout` object and
 * registers a runtime timer; three per connection were 2 % of the relay's
 * handshake CPU. Here a deadline is a heap entry, and one runtime timer waits
 * for the earliest.
 * @module
 */

/** A scheduled deadline; pass it to {@linkcode Deadlines.cancel}. */
export interface Deadline {
  /** When it fires, in `performance.now()` milliseconds. */
  readonly at: number;
}

interface Entry extends Deadline {
  readonly at: number;
  readonly run: (subject: unknown) => void;
  /** Dropped on cancel: a cancelled entry waits in the heap, its connection need not. */
  subject: unknown;
  /** Order among equal `at`: first scheduled fires first. */
  readonly seq: number;
  done: boolean;
}

/** setTimeout's ceiling; a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Deadlines of many connections behind one runtime timer. */
export class Deadlines {
  readonly #now: () => number;
  #heap: Entry[] = [];
  #live = 0;
  #seq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;

  /** `now` is monotonic milliseconds. @default performance.now */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Deadlines scheduled and neither fired nor cancelled. */
  get size(): number {
    return this.#live;
  }

  /**
   * Runs `run(subject)` once, `delayMs` from now (clamped at 0). A shared
   * `run` with the connection as `subject` costs a connection no closure.
   */
  after<T>(delayMs: number, run: (subject: T) => void, subject?: T): Deadline {
    const entry: Entry = {
      at: this.#now() + Math.max(0, delayMs),
      run: run as (subject: unknown) => void,
      subject,
      seq: this.#seq++,
      done: false,
    };
    this.#push(entry);
    this.#live++;
    if (entry.at < this.#armedAt) this.#arm(entry.at);
    return entry;
  }

  /** Cancels a deadline; a fired or cancelled one is left alone. */
  cancel(deadline: Deadline | undefined): void {
    const entry = deadline as Entry | undefined;
    if (!entry || entry.done) return;
    entry.done = true;
    entry.subject = undefined;
    // Cancelled entries stay in the heap until they surface; with none live
    // the heap and the runtime timer go, so nothing outlives the connections.
    if (--this.#live === 0) this.#reset();
  }

  #reset(): void {
    this.#heap = [];
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#now()));
    this.#timer = setTimeout(() => this.#fire(), delay);
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = this.#now();
    for (;;) {
      const head = this.#heap[0];
      if (head === undefined) break;
      if (head.done) {
        this.#pop();
        continue;
      }
      if (head.at > now) break;
      this.#pop();
      head.done = true;
      this.#live--;
      head.run(head.subject);
    }
    // A deadline scheduled by `run` may have armed the timer for itself; the
    // earliest one left is the head.
    const head = this.#heap[0];
    if (this.#live === 0) this.#reset();
    else if (head && head.at !== this.#armedAt) this.#arm(head.at);
  }

  #before(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let first = i;
      if (left < heap.length && this.#before(heap[left]!, heap[first]!)) first = left;
      if (right < heap.length && this.#before(heap[right]!, heap[first]!)) first = right;
      if (first === i) return;
      [heap[i], heap[first]] = [heap[first]!, heap[i]!];
      i = first;
    }
  }
}
