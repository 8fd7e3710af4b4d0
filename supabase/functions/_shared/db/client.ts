/**
 * The relay's connection to the project's Postgres: one small postgres.js pool
 * per instance, usable through Supabase's transaction pooler (no prepared
 * statements, no session state), with a deadline on every call. A database
 * outage must never cost live sessions, so nothing here throws past a call's
 * own promise.
 * @module
 */
import postgres from "postgres";

/** The postgres.js handle a call receives (tagged templates, `sql.begin`). */
export type Sql = postgres.Sql;

/** A failed or overdue database call; `message` never holds the URL or a password. */
export class DatabaseError extends Error {
  /** `timeout` when the deadline passed, else `failed`. */
  readonly kind: "timeout" | "failed";
  constructor(kind: "timeout" | "failed", message: string) {
    super(message);
    this.name = "DatabaseError";
    this.kind = kind;
  }
}

/** The relay's database. */
export interface Database {
  /**
   * Runs `work` against the pool and settles within `deadlineMs`, with a
   * {@linkcode DatabaseError} when it fails or is overdue.
   */
  run<T>(work: (sql: Sql) => Promise<T>, deadlineMs?: number): Promise<T>;
  /** Ends the pool (waits at most `timeoutS` for running queries). */
  close(timeoutS?: number): Promise<void>;
}

/** Options for {@linkcode connectDatabase}. */
export interface DatabaseOptions {
  /** Connections in the pool. @default 3 */
  readonly max?: number;
  /** The deadline of a call that names none. @default 3000 */
  readonly deadlineMs?: number;
  /**
   * Told of each statement sent (its SQL text, never its parameters), e.g. to
   * count round trips in a test.
   */
  readonly onStatement?: (statement: string) => void;
  /**
   * Told when the driver threw outside any call (see {@linkcode isDriverFault}):
   * the relay swallowed it and replaced the pool.
   */
  readonly onDriverFault?: (message: string) => void;
}

/**
 * A pool for `url`. It connects lazily, on the first call. When a call
 * misses its deadline the pool is replaced: postgres.js on Deno 2.1.4 was seen
 * leaving queries unanswered forever after the server dropped its
 * connections, and a fresh pool is the only reliable way back.
 */
export function connectDatabase(url: string, options: DatabaseOptions = {}): Database {
  const max = options.max ?? 3;
  const defaultDeadline = options.deadlineMs ?? 3000;
  const onStatement = options.onStatement;
  const open = () =>
    postgres(url, {
      max,
      ...(onStatement ? { debug: (_: number, statement: string) => onStatement(statement) } : {}),
      // Supabase's transaction pooler (port 6543) cannot keep prepared statements.
      prepare: false,
      // No array or custom types are sent or read (lists go as JSON or array
      // literals), so each new connection skips the pg_type round trip.
      fetch_types: false,
      idle_timeout: 30,
      connect_timeout: 5,
      // postgres.js's own reconnect wait grows past 7 s after a few failures,
      // longer than any call's deadline: kept under half a second, a call made
      // just after the database came back is not refused for a stale wait.
      backoff: (attempt: number) => Math.min(0.5, 0.01 * 3 ** attempt),
      max_lifetime: 60 * 30,
      onnotice: () => {},
      connection: { application_name: "relay" },
    });
  let pool: Sql | null = null;
  let closed = false;

  const discard = (stale: Sql) => {
    if (pool === stale) pool = null;
    stale.end({ timeout: 0 }).catch(() => {});
  };
  const onFault = (message: string) => {
    if (pool) discard(pool);
    options.onDriverFault?.(message);
  };
  guardDriverFaults();
  faultListeners.add(onFault);

  return {
    run<T>(work: (sql: Sql) => Promise<T>, deadlineMs = defaultDeadline): Promise<T> {
      if (closed) return Promise.reject(new DatabaseError("failed", "the database is closed"));
      const sql = pool ??= open();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const overdue = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          discard(sql);
          reject(
            new DatabaseError("timeout", `no answer from the database within ${deadlineMs} ms`),
          );
        }, deadlineMs);
      });
      const call = Promise.resolve()
        .then(() => work(sql))
        .catch((error: unknown) => {
          throw error instanceof DatabaseError
            ? error
            : new DatabaseError("failed", describe(error));
        });
      // The loser of the race must not surface as an unhandled rejection.
      call.catch(() => {});
      return Promise.race([call, overdue]).finally(() => clearTimeout(timer));
    },
    async close(timeoutS = 2) {
      closed = true;
      faultListeners.delete(onFault);
      const current = pool;
      pool = null;
      if (current) await current.end({ timeout: timeoutS }).catch(() => {});
    },
  };
}

/** A database error as a short sentence: its code and message, never the connection string. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const text = error.message.replace(/postgres(ql)?:\/\/\S+/gi, "<database url>");
    return typeof code === "string" ? `${code}: ${text}` : text;
  }
  return "unknown database error";
}

/** Pools told of a driver fault, so they can replace themselves. */
const faultListeners = new Set<(message: string) => void>();
let guarded = false;

/**
 * Whether an uncaught error came from inside postgres.js's connection code:
 * on Deno 2.1.4, after the server dropped its connections, the driver was
 * seen throwing a `TypeError` (reading `write` of a socket it had already
 * cleared) from a timer in its `connection.js`, which ended the process.
 * Only errors whose first stack frame is that file count: anything else
 * stays uncaught, as it should.
 */
export function isDriverFault(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const frame = (error.stack ?? "").split("\n").find((line) => /^\s+at /.test(line)) ?? "";
  return /[\\/]postgres[\\/]\d+\.\d+\.\d+[\\/](?:cjs[\\/])?src[\\/]connection\.js:/.test(frame);
}

/**
 * Installs, once per process, the listeners that keep a driver fault from
 * ending the relay: a database outage must never cost live sessions. Each
 * pool then starts afresh; its callers see their calls fail or time out.
 */
function guardDriverFaults(): void {
  if (guarded) return;
  guarded = true;
  const swallow = (event: Event, error: unknown) => {
    if (!isDriverFault(error)) return;
    event.preventDefault();
    const message = describe(error);
    for (const listener of [...faultListeners]) listener(message);
  };
  globalThis.addEventListener("error", (event) => swallow(event, event.error));
  globalThis.addEventListener("unhandledrejection", (event) => swallow(event, event.reason));
}
