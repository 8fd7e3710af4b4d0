/**
 * A throwaway PostgreSQL cluster from Debian's packages, for tests: created in
 * a temporary folder, run as the `postgres` user on a free loopback port,
 * prepared with what Supabase provides (tests/sql/supabase_stand_in.sql), with
 * the project's migrations applied by the real Supabase CLI (`supabase db
 * push`), exactly as users apply them. Removed by `remove()`.
 * @module
 */

/** A running (or stopped) throwaway cluster. */
export interface TestPostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres` (trust auth on loopback). */
  readonly url: string;
  readonly port: number;
  /** Runs SQL through psql as the superuser; resolves to psql's stdout (unaligned, tuples only). */
  psql(sql: string): Promise<string>;
  /** Stops the server (immediate mode, like a crash or an outage); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops the server and deletes the cluster. */
  remove(): Promise<void>;
}

/**
 * Why PostgreSQL tests cannot run here, or `null` when they can. Under CI
 * (`CI=true`) always `null`: there a missing server must fail the tests, not
 * skip them.
 */
export function postgresUnavailable(): string | null {
  if (Deno.env.get("CI") === "true") return null;
  return findBinDir() === null
    ? "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
    : null;
}

const ROOT = new URL("../../", import.meta.url);

/** Options for {@linkcode startPostgres}. */
export interface StartPostgresOptions {
  /** Apply tests/sql/supabase_stand_in.sql, then `supabase db push`. @default true */
  migrate?: boolean;
}

/** Creates and starts a cluster; by default with Supabase's roles and the migrations applied. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const bin = findBinDir();
  if (bin === null) throw new Error(postgresUnavailable()!);
  const dir = await Deno.makeTempDir({ prefix: "relay-pg-" });
  const data = `${dir}/data`;
  const asRoot = Deno.uid() === 0;
  if (asRoot) await run(["chown", "postgres:postgres", dir]);
  const asPostgres = (args: string[]) =>
    asRoot ? ["runuser", "-u", "postgres", "--", ...args] : args;
  await run(
    asPostgres([
      `${bin}/initdb`,
      "-D",
      data,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-sync",
    ]),
  );
  const port = freePort();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const start = () =>
    run(asPostgres([
      `${bin}/pg_ctl`,
      "-D",
      data,
      "-w",
      "-l",
      `${dir}/server.log`,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
      "start",
    ]));
  const stop = () =>
    run(asPostgres([`${bin}/pg_ctl`, "-D", data, "-m", "immediate", "-w", "stop"]));
  let running = false;
  const pg: TestPostgres = {
    url,
    port,
    psql: (sql) =>
      run([
        "psql",
        url,
        "-v",
        "ON_ERROR_STOP=1",
        "-X",
        "-q",
        "-A",
        "-t",
        "-c",
        sql,
      ]),
    start: async () => {
      await start();
      running = true;
    },
    stop: async () => {
      if (!running) return;
      await stop();
      running = false;
    },
    remove: async () => {
      if (running) await stop().catch(() => {});
      running = false;
      await Deno.remove(dir, { recursive: true });
    },
  };
  await pg.start();
  if (options.migrate ?? true) {
    try {
      await run([
        "psql",
        url,
        "-v",
        "ON_ERROR_STOP=1",
        "-X",
        "-q",
        "-f",
        path("tests/sql/supabase_stand_in.sql"),
      ]);
      await applyMigrations(url);
    } catch (error) {
      await pg.remove();
      throw error;
    }
  }
  return pg;
}

/**
 * Applies supabase/migrations with the pinned Supabase CLI, as users do:
 * `supabase db push --db-url <url>?sslmode=disable --yes`.
 */
export async function applyMigrations(url: string): Promise<string> {
  const cli = path("tools/node_modules/.bin/supabase");
  try {
    await Deno.stat(cli);
  } catch {
    throw new Error(
      `the Supabase CLI is not installed: run npm ci --prefix tools (looked for ${cli})`,
    );
  }
  // The CLI writes supabase/.temp/ into its workdir: a temporary one keeps
  // it out of the repo, with the repo's migrations linked in.
  const workdir = await Deno.makeTempDir({ prefix: "relay-supabase-" });
  try {
    await Deno.mkdir(`${workdir}/supabase`);
    await Deno.copyFile(path("supabase/config.toml"), `${workdir}/supabase/config.toml`);
    await Deno.symlink(path("supabase/migrations"), `${workdir}/supabase/migrations`);
    return await run([
      cli,
      "db",
      "push",
      "--db-url",
      `${url}?sslmode=disable`,
      "--yes",
      "--workdir",
      workdir,
    ], {
      DO_NOT_TRACK: "1",
      SUPABASE_TELEMETRY_DISABLED: "1",
    });
  } finally {
    await Deno.remove(workdir, { recursive: true });
  }
}

function path(relative: string): string {
  return new URL(relative, ROOT).pathname;
}

function findBinDir(): string | null {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((entry) => entry.name)
      .filter((name) => /^\d+$/.test(name))
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const bin = `/usr/lib/postgresql/${version}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        return bin;
      } catch {
        // try the next version
      }
    }
  } catch {
    // no PostgreSQL installed
  }
  return null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function run(cmd: string[], env: Record<string, string> = {}): Promise<string> {
  const [program, ...args] = cmd;
  const output = await new Deno.Command(program!, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(
      `${program} ${args[0] ?? ""} failed (exit ${output.code}): ${stderr.trim() || stdout.trim()}`,
    );
  }
  return stdout;
}
