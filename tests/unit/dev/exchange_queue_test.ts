import assert from "node:assert/strict";
import { BackendStream, ExchangeQueue, type RawBackend } from "../../../dev/db/exchange_queue.ts";

/** A backend message: type byte, length (counting itself), body. */
function message(type: string, body: number[] = []): number[] {
  const length = 4 + body.length;
  return [
    type.charCodeAt(0),
    (length >>> 24) & 255,
    (length >>> 16) & 255,
    (length >>> 8) & 255,
    length & 255,
    ...body,
  ];
}
const ready = (status: "I" | "T" | "E") => message("Z", [status.charCodeAt(0)]);
const complete = message("C", [...new TextEncoder().encode("SELECT 1"), 0]);
const row = message("D", [0, 1, 0, 0, 0, 1, 90]); // a DataRow holding "Z"

Deno.test("BackendStream reads the last ReadyForQuery status across chunk boundaries", () => {
  const cases: { name: string; stream: number[]; chunk: number; expected: string | null }[] = [
    { name: "none yet", stream: [...complete], chunk: 100, expected: null },
    {
      name: "idle after a command",
      stream: [...complete, ...ready("I")],
      chunk: 100,
      expected: "I",
    },
    { name: "in a transaction", stream: [...ready("T")], chunk: 100, expected: "T" },
    { name: "failed transaction", stream: [...ready("E")], chunk: 100, expected: "E" },
    {
      name: "the last one wins",
      stream: [...ready("T"), ...ready("I")],
      chunk: 100,
      expected: "I",
    },
    {
      name: "byte by byte",
      stream: [...complete, ...ready("T"), ...row, ...ready("I")],
      chunk: 1,
      expected: "I",
    },
    {
      name: "a Z inside a row's body is not a message",
      stream: [...row, ...complete],
      chunk: 3,
      expected: null,
    },
    { name: "split header", stream: [...ready("T")], chunk: 2, expected: "T" },
  ];
  for (const { name, stream, chunk, expected } of cases) {
    const scanner = new BackendStream();
    for (let at = 0; at < stream.length; at += chunk) {
      scanner.feed(new Uint8Array(stream.slice(at, at + chunk)));
    }
    assert.equal(scanner.lastReady, expected, name);
  }
});

/**
 * A scripted backend: answers each message by its first byte, records what
 * it ran in order.
 */
class FakeBackend implements RawBackend {
  readonly ran: string[] = [];
  answers: Record<string, number[]> = {};
  failOn: string | null = null;
  async execProtocolRawStream(
    data: Uint8Array,
    options: { onRawData: (data: Uint8Array) => void },
  ): Promise<void> {
    const label = new TextDecoder().decode(data.subarray(5)).replace(/\0$/, "") ||
      String.fromCharCode(data[0]!);
    await Promise.resolve();
    this.ran.push(label);
    if (label === this.failOn) throw new Error("injected backend failure");
    options.onRawData(new Uint8Array(this.answers[label] ?? ready("I")));
  }
  runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** A client message whose body is `label` (the fake answers by label). */
function query(label: string): Uint8Array {
  const text = new TextEncoder().encode(`${label}\0`);
  const bytes = new Uint8Array(5 + text.length);
  bytes[0] = 0x51;
  new DataView(bytes.buffer).setInt32(1, 4 + text.length);
  bytes.set(text, 5);
  return bytes;
}

Deno.test("ExchangeQueue keeps the backend for one connection until it is idle again", async () => {
  const backend = new FakeBackend();
  backend.answers = { "a:begin": ready("T"), "a:insert": ready("T"), "a:commit": ready("I") };
  const queue = new ExchangeQueue(backend);
  const noop = () => {};
  const a1 = queue.enqueue(1, query("a:begin"), noop);
  const b1 = queue.enqueue(2, query("b:select"), noop);
  const a2 = queue.enqueue(1, query("a:insert"), noop);
  await a1;
  await a2;
  // b waits: a's transaction is open.
  assert.deepEqual(backend.ran, ["a:begin", "a:insert"]);
  assert.equal(queue.owner, 1);
  await Promise.all([queue.enqueue(1, query("a:commit"), noop), b1]);
  assert.deepEqual(backend.ran, ["a:begin", "a:insert", "a:commit", "b:select"]);
  assert.equal(queue.owner, null);
  queue.close();
});

Deno.test("ExchangeQueue keeps an extended-protocol batch together until its Sync", async () => {
  const backend = new FakeBackend();
  // Parse, Bind, Execute answer without ReadyForQuery; only Sync ends the batch.
  backend.answers = {
    "a:parse": message("1"),
    "a:bind": message("2"),
    "b:parse": message("1"),
    "b:bind": message("2"),
  };
  const queue = new ExchangeQueue(backend);
  const noop = () => {};
  const sent = [
    queue.enqueue(1, query("a:parse"), noop),
    queue.enqueue(2, query("b:parse"), noop),
    queue.enqueue(1, query("a:bind"), noop),
    queue.enqueue(2, query("b:bind"), noop),
    queue.enqueue(1, query("a:sync"), noop),
    queue.enqueue(2, query("b:sync"), noop),
  ];
  await Promise.all(sent);
  assert.deepEqual(backend.ran, ["a:parse", "a:bind", "a:sync", "b:parse", "b:bind", "b:sync"]);
  queue.close();
});

Deno.test("ExchangeQueue ends a departed connection's batch and rolls its transaction back", async () => {
  const backend = new FakeBackend();
  backend.answers = { "a:begin": ready("T"), S: ready("T"), ROLLBACK: ready("I") };
  const queue = new ExchangeQueue(backend);
  const noop = () => {};
  await queue.enqueue(1, query("a:begin"), noop);
  const waiting = queue.enqueue(2, query("b:select"), noop);
  queue.clearQueueForHandler(1);
  await queue.clearTransactionIfNeeded(1);
  await waiting;
  assert.deepEqual(backend.ran, ["a:begin", "S", "ROLLBACK", "b:select"]);
  // A connection that held nothing costs nothing when it leaves.
  await queue.clearTransactionIfNeeded(3);
  assert.equal(backend.ran.length, 4);
  queue.close();
});

Deno.test("ExchangeQueue serves others after a backend failure instead of wedging", async () => {
  const backend = new FakeBackend();
  backend.failOn = "a:boom";
  const queue = new ExchangeQueue(backend);
  const noop = () => {};
  const failed = queue.enqueue(1, query("a:boom"), noop);
  const other = queue.enqueue(2, query("b:select"), noop);
  await assert.rejects(failed, /injected backend failure/);
  // The failed connection is dropped by its handler, which clears it like any departure.
  queue.clearQueueForHandler(1);
  await queue.clearTransactionIfNeeded(1);
  await other;
  assert.ok(backend.ran.includes("b:select"));
  queue.close();
});

Deno.test("ExchangeQueue reports a connection that holds the backend idle while others wait", async () => {
  const backend = new FakeBackend();
  backend.answers = { "a:begin": ready("T") };
  const held: number[] = [];
  const queue = new ExchangeQueue(backend, { idleHoldMs: 30, onIdleHold: (id) => held.push(id) });
  const noop = () => {};
  await queue.enqueue(1, query("a:begin"), noop);
  const waiting = queue.enqueue(2, query("b:select"), noop);
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.deepEqual(held, [1]);
  queue.clearQueueForHandler(1);
  await queue.clearTransactionIfNeeded(1);
  await waiting;
  queue.close();
});

Deno.test("ExchangeQueue refuses messages once closed, and those still waiting", async () => {
  const backend = new FakeBackend();
  backend.answers = { "a:begin": ready("T") };
  const queue = new ExchangeQueue(backend);
  const noop = () => {};
  await queue.enqueue(1, query("a:begin"), noop);
  const waiting = queue.enqueue(2, query("b:select"), noop);
  queue.close();
  await assert.rejects(waiting, /closed/);
  await assert.rejects(queue.enqueue(3, query("c:select"), noop), /closed/);
  assert.deepEqual(backend.ran, ["a:begin"]);
});
