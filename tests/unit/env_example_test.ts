import assert from "node:assert/strict";

const read = (path: string) => Deno.readTextFileSync(new URL(`../../${path}`, import.meta.url));

Deno.test(".env.example and README document every setting the relay reads", () => {
  const source = read("supabase/functions/_shared/settings.ts");
  const names = new Set(
    [...source.matchAll(/"((?:SUPABASE|OPENAI|RELAY)_[A-Z_]+|PORT)"/g)].map((m) => m[1]),
  );
  for (
    const name of ["SUPABASE_PUBLISHABLE_KEYS", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_ANON_KEY"]
  ) {
    names.add(name);
  }
  assert.ok(names.size >= 18, `found ${names.size} settings`);
  const example = read(".env.example");
  const readme = read("README.md");
  for (const name of names) {
    assert.match(example, new RegExp(`^#? ?${name}=`, "m"), `.env.example lacks ${name}`);
    assert.ok(readme.includes(`\`${name}\``), `README lacks ${name}`);
  }
});
