/**
 * A WebSocket test client that records what it receives and how it closed,
 * with waits that clean up their timers (Deno's sanitizers stay on).
 * @module
 */

/** A received message: text as a string, binary as an ArrayBuffer. */
export type Message = string | ArrayBuffer;

/** Waits for `promise`, failing with `what` after `ms`; the timer never outlives the wait. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 10 ms until it holds, up to `ms`. */
export async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A connected (or connecting) client. */
export class TestClient {
  readonly socket: WebSocket;
  readonly messages: Message[] = [];
  /** Resolves on open; rejects if the socket closes first (handshake refused). */
  readonly opened: Promise<void>;
  /** Resolves with the close event. */
  readonly closed: Promise<CloseEvent>;
  #waiters: (() => void)[] = [];

  constructor(url: string, protocols?: string | string[]) {
    this.socket = new WebSocket(url, protocols);
    this.socket.binaryType = "arraybuffer";
    this.closed = new Promise((resolve) => {
      this.socket.addEventListener("close", (event) => {
        resolve(event);
        this.#wake();
      });
    });
    this.opened = new Promise((resolve, reject) => {
      this.socket.addEventListener("open", () => resolve());
      this.socket.addEventListener("close", (event) => reject(new Error(`closed ${event.code}`)));
    });
    // Callers that never await `opened` must not leave an unhandled rejection.
    this.opened.catch(() => {});
    this.socket.addEventListener("error", (event) => event.preventDefault());
    this.socket.addEventListener("message", (event: MessageEvent<Message>) => {
      this.messages.push(event.data);
      this.#wake();
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Waits until at least `count` messages have arrived. */
  async waitForMessages(count: number, ms = 5000): Promise<Message[]> {
    const deadline = Date.now() + ms;
    while (this.messages.length < count) {
      if (this.socket.readyState === WebSocket.CLOSED) {
        throw new Error(`closed after ${this.messages.length} of ${count} messages`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`got ${this.messages.length} of ${count} messages`);
      await within(new Promise<void>((resolve) => this.#waiters.push(resolve)), left, "messages")
        .catch(() => {});
    }
    return this.messages.slice(0, count);
  }

  /** Text messages parsed as JSON (realtime events). */
  events(): { type: string; [key: string]: unknown }[] {
    return this.messages.filter((m) => typeof m === "string").map((m) => JSON.parse(m as string));
  }

  /** Waits for the close event. */
  waitClosed(ms = 5000): Promise<CloseEvent> {
    return within(this.closed, ms, "close event");
  }

  /** Closes (if open) and waits for the close event. */
  async close(code = 1000, reason = "done"): Promise<CloseEvent> {
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(code, reason);
    return await this.waitClosed();
  }
}
