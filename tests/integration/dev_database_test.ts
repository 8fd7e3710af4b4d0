/**
 * The dev database on its own: PGlite served on loopback to real postgres.js
 * pools (the relay's size), its data kept across restarts and wiped by
 * `fresh`, and the migrations recorded exactly as the pinned Supabase CLI
 * records them, checked against the CLI itself.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { startEmbeddedPostgres, wipeDataDir } from "../../dev/db/embedded.ts";
import { applyMigrations, readMigrations } from "../../dev/db/migrations.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";

const ROOT = new URL("../../", import.meta.url);
const STAND_IN_SQL = new URL("tests/sql/supabase_stand_in.sql", ROOT);
const CLI = new URL("tools/node_modules/.bin/supabase", ROOT).pathname;

/** A client like the relay's: a pool of `max`, no prepared statements. */
function client(url: string, max = 3): postgres.Sql {
  return postgres(url, { max, prepare: false, onnotice: () => {}, connect_timeout: 5 });
}

async function withDataDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "relay-devdb-" });
  try {
    await body(`${dir}/pglite`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("startEmbeddedPostgres serves a pool of 3 without mixing one connection's statements with another's", async () => {
  await withDataDir(async (dataDir) => {
    const db = await startEmbeddedPostgres({ dataDir });
    const sql = client(db.url);
    try {
      // Different parameter counts and column sets: a Bind that reached another
      // connection's Parse fails, and a row that reached the wrong caller shows.
      const answers = await Promise.all(Array.from({ length: 300 }, async (_, i) => {
        if (i % 3 === 2) {
          return await sql.begin(async (tx) => {
            await tx`select set_config('dev.probe', ${String(i)}, true)`;
            await tx`select pg_sleep(0.001)`;
            const [row] = await tx<
              { value: string }[]
            >`select current_setting('dev.probe') as value`;
            return Number(row!.value);
          });
        }
        const rows = i % 2
          ? await sql<{ n: number }[]>`select ${i}::int as n, 'odd' as kind`
          : await sql<{ n: number }[]>`select ${String(i)}::text as t, ${i}::int as n, 1 as one`;
        return rows[0]!.n;
      }));
      assert.deepEqual(answers, Array.from({ length: 300 }, (_, i) => i));
    } finally {
      await sql.end({ timeout: 1 });
      await db.close();
    }
  });
});

Deno.test("startEmbeddedPostgres keeps the data across restarts, refuses a second user of the folder, and fresh wipes it", async () => {
  await withDataDir(async (dataDir) => {
    const readBack = async (fresh: boolean) => {
      const db = await startEmbeddedPostgres({ dataDir, fresh });
      const sql = client(db.url, 1);
      try {
        const [found] = await sql<{ present: boolean }[]>`
          select to_regclass('public.kept') is not null as present`;
        const rows = found?.present ? await sql<{ note: string }[]>`select note from kept` : [];
        return { created: db.created, notes: rows.map((row) => row.note), sql, db };
      } catch (error) {
        await sql.end({ timeout: 1 });
        await db.close();
        throw error;
      }
    };

    let run = await readBack(false);
    assert.equal(run.created, true);
    assert.deepEqual(run.notes, []);
    // While it is open, no other start may use the folder, nor wipe it.
    await assert.rejects(
      startEmbeddedPostgres({ dataDir, fresh: true }),
      /is in use by another process/,
    );
    await run.sql`create table kept (note text)`;
    await run.sql`insert into kept values ('written before the restart')`;
    await run.sql.end({ timeout: 1 });
    await run.db.close();

    run = await readBack(false);
    assert.equal(run.created, false, "the second start opens the same database");
    assert.deepEqual(run.notes, ["written before the restart"]);
    await run.sql.end({ timeout: 1 });
    await run.db.close();

    run = await readBack(true);
    assert.equal(run.created, true, "fresh starts from nothing");
    assert.deepEqual(run.notes, []);
    await run.sql.end({ timeout: 1 });
    await run.db.close();
  });
});

Deno.test("wipeDataDir deletes only a database folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-devdb-" });
  try {
    await Deno.writeTextFile(`${dir}/notes.txt`, "not a database");
    await assert.rejects(wipeDataDir(dir), /refusing to delete .*not a database folder/);
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "not a database");
    await Deno.remove(`${dir}/notes.txt`);
    await wipeDataDir(dir); // empty: fine
    await wipeDataDir(dir); // missing: fine
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** Why the comparison with the Supabase CLI cannot run here, or `null`. */
function cliUnavailable(): string | null {
  const pg = postgresUnavailable();
  if (pg) return pg;
  try {
    Deno.statSync(CLI);
    return null;
  } catch {
    return "the Supabase CLI is not installed (npm ci --prefix tools)";
  }
}

const noCli = cliUnavailable();
if (noCli) console.warn(`dev database test against the Supabase CLI skipped: ${noCli}`);

/** SQL the CLI's splitter has rules for; each `;` inside must not end a statement. */
const TRICKY_MIGRATION = `-- a leading comment; with a semicolon
create table dev_probe (a text default 'x;y', b text default 'it''s; ok');
/* block ; comment /* nested; */ still; */
create function dev_probe_f() returns int language plpgsql as $body$
begin
  return 1; -- inside
end;
$body$;
create function dev_probe_g(x int) returns int language sql
begin atomic
  select x + 1;
end;
create view dev_probe_v as select (a) as "q;uote" from dev_probe;
do $$ begin perform 1; end $$;
insert into dev_probe (a) values ('Ünïcödé;'), ('$notatag;');
-- trailing comment only
`;

async function supabase(args: string[], workdir: string): Promise<string> {
  const output = await new Deno.Command(CLI, {
    args: [...args, "--workdir", workdir],
    env: { DO_NOT_TRACK: "1", SUPABASE_TELEMETRY_DISABLED: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  assert.ok(output.success, `supabase ${args[0]} ${args[1]} failed: ${text}`);
  return text;
}

interface HistoryRow {
  version: string;
  name: string;
  statements: string[];
}

async function history(sql: postgres.Sql): Promise<HistoryRow[]> {
  return [
    ...await sql<HistoryRow[]>`
      select version, name, statements from supabase_migrations.schema_migrations
      order by version`,
  ];
}

Deno.test({
  name:
    "applyMigrations records what supabase db push records, and the CLI then finds nothing to push",
  ignore: noCli !== null,
  fn: async () => {
    // A project folder with the repo's migrations and one that exercises the splitter.
    const workdir = await Deno.makeTempDir({ prefix: "relay-devdb-cli-" });
    const migrationsDir = `${workdir}/supabase/migrations`;
    await Deno.mkdir(migrationsDir, { recursive: true });
    await Deno.copyFile(new URL("supabase/config.toml", ROOT), `${workdir}/supabase/config.toml`);
    for (
      const { file } of (await readMigrations(new URL("supabase/migrations", ROOT).pathname))
        .migrations
    ) {
      await Deno.copyFile(new URL(`supabase/migrations/${file}`, ROOT), `${migrationsDir}/${file}`);
    }
    await Deno.writeTextFile(`${migrationsDir}/29991231000000_dev_probe.sql`, TRICKY_MIGRATION);
    await Deno.writeTextFile(`${migrationsDir}/notes.md`, "not a migration: both skip it");

    const pg = await startPostgres({ migrate: false });
    const dataDir = `${workdir}/pglite`;
    const db = await startEmbeddedPostgres({ dataDir });
    const viaCli = client(pg.url, 1);
    const viaDev = client(db.url, 1);
    try {
      const standIn = await Deno.readTextFile(STAND_IN_SQL);
      await viaCli.unsafe(standIn);
      await viaDev.unsafe(standIn);
      await supabase(["db", "push", "--db-url", `${pg.url}?sslmode=disable`, "--yes"], workdir);

      const { migrations, skipped } = await readMigrations(migrationsDir);
      assert.deepEqual(skipped, ["notes.md"]);
      const applied = await applyMigrations(viaDev, migrations);
      assert.deepEqual(applied.map((m) => m.version), migrations.map((m) => m.version));
      assert.ok(migrations.length >= 2, "the repo's migrations and the probe");

      assert.deepEqual(await history(viaDev), await history(viaCli));
      assert.deepEqual(
        await applyMigrations(viaDev, migrations),
        [],
        "a second start applies none",
      );

      const dryRun = await supabase(
        ["db", "push", "--dry-run", "--db-url", `${db.url}?sslmode=disable`],
        workdir,
      );
      assert.match(dryRun, /Remote database is up to date/);
    } finally {
      await viaCli.end({ timeout: 1 });
      await viaDev.end({ timeout: 1 });
      await db.close();
      await pg.remove();
      await Deno.remove(workdir, { recursive: true });
    }
  },
});
