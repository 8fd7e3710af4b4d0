/**
 * Runs before the suite (`deno task test`): installs the npm-side tools the
 * tests use when they are missing, so the test command works on a machine
 * with only Node.js: the pinned Supabase CLI (tools/, applies the migrations
 * as users do) and `ws` for the client library's Node tests. System packages
 * (PostgreSQL, Chromium) are not installed here: `.ci/run` does that, and the
 * tests that need them say what is missing.
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname;

/** Folders with a package.json whose node_modules the tests need. */
const NPM_FOLDERS = ["tools", "tests/client/node"];

for (const folder of NPM_FOLDERS) {
  const dir = `${ROOT}${folder}`;
  try {
    Deno.statSync(`${dir}/node_modules`);
    continue;
  } catch {
    // not installed yet
  }
  console.error(`tests: installing ${folder}'s npm dependencies (npm ci --prefix ${folder})`);
  const { success } = await new Deno.Command("npm", {
    args: ["ci", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"],
    stdin: "null",
  }).output();
  if (!success) {
    console.error(`tests: npm ci --prefix ${folder} failed; the tests that need it will say so`);
  }
}
