import assert from "node:assert/strict";
import { ConnectionRegistry } from "../../../supabase/functions/_shared/relay/registry.ts";

Deno.test("ConnectionRegistry enforces the per-user cap before the instance cap", () => {
  const registry = new ConnectionRegistry(2, 3);
  assert.equal(registry.reserve("a"), null);
  assert.equal(registry.reserve("a"), null);
  assert.equal(registry.reserve("a"), "too_many_connections");
  assert.equal(registry.reserve("b"), null);
  assert.equal(registry.reserve("c"), "at_capacity");
  assert.equal(registry.reserve("a"), "too_many_connections");
  assert.equal(registry.size, 3);
  registry.release("a");
  assert.equal(registry.size, 2);
  assert.equal(registry.reserve("c"), null, "a freed slot is anyone's");
  assert.equal(registry.reserve("a"), "at_capacity", "a's freed slot went to c");
  registry.release("b");
  assert.equal(registry.reserve("a"), null, "a is below its own cap again");
});

Deno.test("ConnectionRegistry.shutdownAll reaches every attached connection", async () => {
  const registry = new ConnectionRegistry(5, 5);
  const told: string[] = [];
  for (const name of ["x", "y"]) {
    assert.equal(registry.reserve(name), null);
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const connection = {
      shutdown: () => {
        told.push(name);
        resolve();
        registry.release(name, connection);
      },
      done,
    };
    registry.attach(connection);
  }
  await registry.shutdownAll();
  assert.deepEqual(told, ["x", "y"]);
  assert.equal(registry.size, 0);
  await registry.shutdownAll(); // released connections are not told again
  assert.deepEqual(told, ["x", "y"]);
});

Deno.test("ConnectionRegistry: a connection attached once shutdown began is shut down at once", async () => {
  const registry = new ConnectionRegistry(5, 5);
  await registry.shutdownAll();
  assert.equal(registry.reserve("late"), null);
  let told = 0;
  registry.attach({ shutdown: () => told++, done: Promise.resolve() });
  assert.equal(told, 1, "an admission that finished during shutdown reconnects elsewhere");
});

Deno.test("ConnectionRegistry.shutdownAll also waits for connections attached while it waits", async () => {
  const registry = new ConnectionRegistry(5, 5);
  const connection = (name: string) => {
    let end!: () => void;
    const done = new Promise<void>((resolve) => (end = resolve));
    const c = { shutdown: () => {}, done, end: () => (end(), registry.release(name, c)) };
    return c;
  };
  assert.equal(registry.reserve("early"), null);
  const early = connection("early");
  registry.attach(early);
  let settled = false;
  const shutting = registry.shutdownAll().then(() => (settled = true));
  assert.equal(registry.reserve("late"), null);
  const late = connection("late");
  registry.attach(late);
  early.end();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(settled, false, "the late one is still open");
  late.end();
  await shutting;
  assert.equal(registry.size, 0);
});
