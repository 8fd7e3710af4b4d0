/**
 * The dev database: PGlite (Postgres compiled to WASM, in this process) with
 * its data in a folder, served on 127.0.0.1 over the Postgres wire protocol
 * by pglite-socket's connection handler, so the relay reaches it with its
 * normal postgres.js pool exactly as it reaches Supabase.
 *
 * pglite-socket's handler does the wire framing (startup, SSLRequest, message
 * reassembly); the scheduling is {@linkcode ExchangeQueue}'s, because the
 * package's own multiplexer mixes concurrent connections' statements (see
 * there). PGlite has one backend: session state (`SET` without `LOCAL`,
 * prepared statement names) is shared by every connection. The relay keeps
 * none, as Supabase's transaction pooler requires.
 * @module
 */
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import { createServer, type Server, type Socket } from "node:net";
import { ExchangeQueue } from "./exchange_queue.ts";

/** Options for {@linkcode startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** The folder PGlite keeps its data in (created when missing). */
  readonly dataDir: string;
  /** Delete the data first (only a database folder, or an empty one, is ever deleted). */
  readonly fresh?: boolean;
  /** Port to listen on; when taken, a free one is used instead. @default 0 */
  readonly port?: number;
  /** See {@linkcode ExchangeQueue}. @default 10000 */
  readonly idleHoldMs?: number;
}

/** A running embedded database. */
export interface EmbeddedPostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres` (no password: loopback only). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Whether this start created the database (first run, or `fresh`). */
  readonly created: boolean;
  /** PGlite itself, for the dev stack's own setup steps. */
  readonly db: PGlite;
  /** Drops every connection, stops listening and closes PGlite (its data stays). */
  close(): Promise<void>;
}

const HOST = "127.0.0.1";

/** Opens (or creates) the database in `dataDir` and serves it on loopback. */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const { dataDir } = options;
  const lock = await lockDataDir(dataDir);
  let db: PGlite;
  let created: boolean;
  try {
    if (options.fresh) await wipeDataDir(dataDir);
    created = !(await exists(`${dataDir}/PG_VERSION`));
    await Deno.mkdir(dataDir, { recursive: true });
    db = await PGlite.create({ dataDir });
  } catch (error) {
    lock.close();
    throw new Error(
      `the embedded database in ${dataDir} did not open: ${describe(error)}` +
        " (deno task dev --fresh starts it over)",
    );
  }

  const sockets = new Map<number, Socket>();
  const closedSockets = new Set<Promise<void>>();
  const queue = new ExchangeQueue(db, {
    ...(options.idleHoldMs === undefined ? {} : { idleHoldMs: options.idleHoldMs }),
    // An idle transaction would stall every other connection on the one backend.
    onIdleHold: (handlerId) => sockets.get(handlerId)?.destroy(),
  });
  type QueueOption = ConstructorParameters<typeof PGLiteSocketHandler>[0]["queryQueue"];
  const server = createServer((socket) => {
    const handler = new PGLiteSocketHandler({
      // Same three methods as the package's queue; the class type is nominal (private fields).
      queryQueue: queue as unknown as QueueOption,
      closeOnDetach: true,
    });
    const id = handler.handlerId;
    sockets.set(id, socket);
    closedSockets.add(
      new Promise<void>((resolve) =>
        socket.once("close", () => {
          sockets.delete(id);
          resolve();
        })
      ),
    );
    // A client that vanished mid-message must not surface as an uncaught error.
    socket.on("error", () => {});
    handler.attach(socket).catch(() => socket.destroy());
  });

  let port: number;
  try {
    port = await listen(server, options.port ?? 0).catch((error) => {
      if ((error as { code?: string }).code !== "EADDRINUSE" || !options.port) throw error;
      return listen(server, 0);
    });
  } catch (error) {
    await db.close().catch(() => {});
    lock.close();
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    url: `postgresql://postgres@${HOST}:${port}/postgres`,
    port,
    dataDir,
    created,
    db,
    close: () =>
      closing ??= (async () => {
        queue.close();
        for (const socket of sockets.values()) socket.destroy();
        await Promise.all(closedSockets);
        await stopListening(server);
        await db.close().catch(() => {});
        lock.close();
      })(),
  };
}

/** How long a start waits for another process's hold on the data folder. */
const LOCK_WAIT_MS = 1500;

/**
 * Holds an exclusive lock on `<dataDir>.lock` (beside the folder, so `fresh`
 * keeps it) while the database is open: PGlite has no postmaster.pid, and two
 * processes writing one folder would corrupt it. The OS drops the lock when
 * the process ends, however it ends.
 */
async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  const path = `${dataDir.replace(/\/+$/, "")}.lock`;
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
  const file = await Deno.open(path, { create: true, write: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const locked = await Promise.race([
    file.lock(true).then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), LOCK_WAIT_MS))),
  ]).finally(() => clearTimeout(timer));
  if (!locked) {
    // Closing the file also ends the lock request that is still waiting.
    file.close();
    throw new Error(
      `the embedded database in ${dataDir} is in use by another process (another deno task dev?)`,
    );
  }
  return file;
}

/**
 * Closes the listener. Deno 2.1.4's `node:net` never calls `close`'s callback
 * once the server has accepted a connection, though the listener does close
 * (a new connection is refused): so wait for the callback only briefly.
 */
async function stopListening(server: Server): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    new Promise<void>((resolve) => server.close(() => resolve())),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, 250))),
  ]);
  clearTimeout(timer);
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (error: Error) => reject(error);
    server.once("error", failed);
    server.listen(port, HOST, () => {
      server.off("error", failed);
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

/**
 * Deletes a database folder. Refuses anything that is neither missing, empty
 * nor a Postgres data folder (`PG_VERSION`), so a mistyped path is never wiped.
 */
export async function wipeDataDir(dataDir: string): Promise<void> {
  if (!(await exists(dataDir))) return;
  const isDatabase = await exists(`${dataDir}/PG_VERSION`);
  let empty = true;
  for await (const _ of Deno.readDir(dataDir)) {
    empty = false;
    break;
  }
  if (!isDatabase && !empty) {
    throw new Error(`refusing to delete ${dataDir}: it is not a database folder (no PG_VERSION)`);
  }
  await Deno.remove(dataDir, { recursive: true });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
