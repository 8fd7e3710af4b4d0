/**
 * Applies `supabase/migrations/` to the dev database the way `supabase db
 * push` does (Supabase CLI, pkg/migration): files named `<digits>_<name>.sql`
 * in name order, each split into statements by the CLI's rules and run in one
 * transaction together with its row in `supabase_migrations.schema_migrations`
 * (version, name, statements); versions already there are skipped. A later
 * `supabase db push` against the same database then finds nothing to do.
 * @module
 */
import type postgres from "postgres";

/** One migration file, as the Supabase CLI reads it. */
export interface Migration {
  /** The leading digits of the file name, e.g. `20261201000100`. */
  readonly version: string;
  /** The rest of the name without `.sql`, e.g. `relay_metering`. */
  readonly name: string;
  readonly file: string;
  /** The file split into statements ({@linkcode splitStatements}). */
  readonly statements: readonly string[];
}

/** The CLI's pattern for a migration file name. */
const MIGRATION_FILE = /^([0-9]+)_(.*)\.sql$/;

/** The version and name of a migration file, or `null` when the CLI would skip the file. */
export function parseMigrationFileName(file: string): { version: string; name: string } | null {
  const match = MIGRATION_FILE.exec(file);
  return match ? { version: match[1]!, name: match[2]! } : null;
}

/** What the CLI found in a migrations folder: the migrations, and the files it skips. */
export interface MigrationsFolder {
  readonly migrations: readonly Migration[];
  readonly skipped: readonly string[];
}

/** Reads every migration in `dir` (name order); a missing folder has none. */
export async function readMigrations(dir: string): Promise<MigrationsFolder> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { migrations: [], skipped: [] };
    throw error;
  }
  names.sort();
  const migrations: Migration[] = [];
  const skipped: string[] = [];
  for (const file of names) {
    const parsed = parseMigrationFileName(file);
    if (!parsed) {
      skipped.push(file);
      continue;
    }
    const text = await Deno.readTextFile(`${dir}/${file}`);
    migrations.push({ ...parsed, file, statements: splitStatements(text) });
  }
  return { migrations, skipped };
}

// The CLI's tokenizer (pkg/parser/state.go): a state machine over the text
// since the statement began, so quotes, comments, dollar quotes, parentheses
// and BEGIN ATOMIC bodies keep their semicolons. Ported rule for rule,
// quirks included, so the statements recorded match the CLI's.
type State =
  | { kind: "ready" }
  | { kind: "comment" }
  | { kind: "block"; depth: number }
  | { kind: "quote"; delimiter: string; escape: boolean }
  | { kind: "dollar"; delimiter: string }
  | { kind: "tag"; offset: number }
  | { kind: "escape" }
  | { kind: "atomic"; prev: State; delimiter: string };

const READY: State = { kind: "ready" };

/** The next state from `ready`; `null` ends the statement. */
function fromReady(char: string, data: string): State | null {
  switch (char) {
    case "$":
      return { kind: "tag", offset: data.length - char.length };
    case "'":
    case '"':
      return { kind: "quote", delimiter: char, escape: false };
    case "-":
      return { kind: "comment" };
    case "/":
      return { kind: "block", depth: 0 };
    case "\\":
      return { kind: "escape" };
    case ";":
      return null;
    case "(":
      return { kind: "atomic", prev: READY, delimiter: ")" };
    case "c":
    case "C": {
      const offset = data.length - "ATOMIC".length;
      const atomic = offset > 0 && data.slice(offset).toUpperCase() === "ATOMIC" &&
        /\s/.test(data[offset - 1]!);
      return atomic ? { kind: "atomic", prev: READY, delimiter: "END" } : READY;
    }
    default:
      return READY;
  }
}

/** The next state after `char`; `null` ends the statement. `data` is the text so far, `char` included. */
function next(state: State, char: string, data: string): State | null {
  switch (state.kind) {
    case "ready":
      return fromReady(char, data);
    case "comment":
      // `--` runs to the end of the line, where nothing is escaped.
      return char === "-" ? { kind: "dollar", delimiter: "\n" } : next(READY, char, data);
    case "block":
      if (data.endsWith("/*")) return { kind: "block", depth: state.depth + 1 };
      if (state.depth === 0) return next(READY, char, data);
      if (data.endsWith("*/")) {
        return state.depth === 1 ? READY : { kind: "block", depth: state.depth - 1 };
      }
      return state;
    case "quote":
      if (state.escape) {
        // A doubled quote stays inside the string.
        if (char === state.delimiter) return { ...state, escape: false };
        return next(READY, char, data);
      }
      return char === state.delimiter ? { ...state, escape: true } : state;
    case "dollar":
      return data.endsWith(state.delimiter) ? READY : state;
    case "tag":
      if (char === "$") return { kind: "dollar", delimiter: data.slice(state.offset) };
      if (/[\p{L}\p{Nd}_]/u.test(char)) return state;
      return next(READY, char, data);
    case "escape":
      return READY;
    case "atomic": {
      const prev = next(state.prev, char, data) ?? state.prev;
      if (
        prev.kind === "ready" &&
        data.slice(-state.delimiter.length).toUpperCase() === state.delimiter.toUpperCase()
      ) {
        return READY;
      }
      return { ...state, prev };
    }
  }
}

/**
 * Splits SQL into statements as the Supabase CLI does (`parser.SplitAndTrim`):
 * at each `;` outside quotes, comments, dollar quotes, parentheses and BEGIN
 * ATOMIC bodies; each statement keeps its comments, loses its trailing `;`
 * and surrounding blanks; empty ones are dropped.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  const keep = (token: string) => {
    const trimmed = token.replace(/;+$/, "").trim();
    if (trimmed.length > 0) statements.push(trimmed);
  };
  let state: State = READY;
  let data = "";
  for (const char of sql) {
    data += char;
    const after = next(state, char, data);
    if (after === null) {
      keep(data);
      data = "";
      state = READY;
    } else {
      state = after;
    }
  }
  keep(data);
  return statements;
}

// What the CLI runs before every push (pkg/migration/history.go).
const HISTORY_DDL = [
  "create schema if not exists supabase_migrations",
  "create table if not exists supabase_migrations.schema_migrations (version text not null primary key)",
  "alter table supabase_migrations.schema_migrations add column if not exists statements text[]",
  "alter table supabase_migrations.schema_migrations add column if not exists name text",
];

/** The versions recorded in the database's migration history (none when it has no history). */
export async function appliedVersions(sql: postgres.Sql): Promise<Set<string>> {
  const [found] = await sql<{ present: boolean }[]>`
    select to_regclass('supabase_migrations.schema_migrations') is not null as present`;
  if (!found?.present) return new Set();
  const rows = await sql<{ version: string }[]>`
    select version from supabase_migrations.schema_migrations`;
  return new Set(rows.map((row) => row.version));
}

/** The migrations the database's history does not list yet. */
export async function pendingMigrations(
  sql: postgres.Sql,
  migrations: readonly Migration[],
): Promise<Migration[]> {
  const applied = await appliedVersions(sql);
  return migrations.filter((migration) => !applied.has(migration.version));
}

/**
 * Applies the pending migrations in order, each in its own transaction with
 * its history row; resolves to the ones applied. A failing statement rolls
 * its migration back and rejects with the file and the statement's number.
 */
export async function applyMigrations(
  sql: postgres.Sql,
  migrations: readonly Migration[],
): Promise<Migration[]> {
  await sql.begin(async (tx) => {
    for (const statement of HISTORY_DDL) await tx.unsafe(statement);
  });
  const pending = await pendingMigrations(sql, migrations);
  for (const migration of pending) {
    await sql.begin(async (tx) => {
      for (const [index, statement] of migration.statements.entries()) {
        try {
          await tx.unsafe(statement);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new Error(
            `migration ${migration.file} failed at statement ${index + 1}: ${reason}`,
          );
        }
      }
      await tx`
        insert into supabase_migrations.schema_migrations (version, name, statements)
        values (${migration.version}, ${migration.name}, ${tx.array([...migration.statements])})`;
    });
  }
  return pending;
}
