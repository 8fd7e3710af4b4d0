import assert from "node:assert/strict";

const read = (path: string) => Deno.readTextFileSync(new URL(`../../${path}`, import.meta.url));

Deno.test("config pins one supabase-js for the tests and the deployed function", () => {
  const root = JSON.parse(read("deno.json"));
  const fn = JSON.parse(read("supabase/functions/relay/deno.json"));
  const pin = fn.imports["@supabase/supabase-js"];
  assert.match(pin, /^npm:@supabase\/supabase-js@\d+\.\d+\.\d+$/, "an exact version");
  assert.equal(root.imports["@supabase/supabase-js"], pin);
});

Deno.test("config commits version-4 locks, the only version Deno 2.1.4 reads", () => {
  for (const path of ["deno.lock", "supabase/functions/relay/deno.lock"]) {
    assert.equal(JSON.parse(read(path)).version, "4", path);
  }
  assert.equal(JSON.parse(read("deno.json")).lock.frozen, true);
  assert.equal(JSON.parse(read("supabase/functions/relay/deno.json")).lock.frozen, true);
});

Deno.test("config.toml turns off the gateway's JWT check and keeps one worker", () => {
  const toml = read("supabase/config.toml");
  assert.match(toml, /\[functions\.relay\][^[]*\nverify_jwt = false/);
  assert.match(toml, /\[edge_runtime\][^[]*\npolicy = "per_worker"/);
});
