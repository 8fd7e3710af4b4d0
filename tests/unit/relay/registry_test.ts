import assert from "node:assert/strict";
import { ConnectionRegistry } from "../../../supabase/functions/_shared/relay/registry.ts";

Deno.test("ConnectionRegistry enforces the per-user cap before the instance cap", () => {
  const registry = new ConnectionRegistry(2, 3);
  const a1 = registry.reserve("a");
  const a2 = registry.reserve("a");
  assert.equal(registry.reserve("a"), "too_many_connections");
  const b1 = registry.reserve("b");
  assert.equal(registry.reserve("c"), "at_capacity");
  assert.equal(registry.reserve("a"), "too_many_connections");
  assert.equal(registry.size, 3);
  assert.ok(typeof a1 !== "string" && typeof a2 !== "string" && typeof b1 !== "string");
  a1.release();
  a1.release(); // twice is harmless
  assert.equal(registry.size, 2);
  assert.notEqual(typeof registry.reserve("c"), "string");
});

Deno.test("ConnectionRegistry.shutdownAll reaches every attached connection", async () => {
  const registry = new ConnectionRegistry(5, 5);
  const told: string[] = [];
  for (const name of ["x", "y"]) {
    const lease = registry.reserve(name);
    assert.ok(typeof lease !== "string");
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    lease.attach({
      shutdown: () => {
        told.push(name);
        resolve();
        lease.release();
      },
      done,
    });
  }
  await registry.shutdownAll();
  assert.deepEqual(told, ["x", "y"]);
  assert.equal(registry.size, 0);
});
