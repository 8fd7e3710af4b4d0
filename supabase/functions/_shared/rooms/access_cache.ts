/**
 * Reuse of room access answers (CONTRACT.md "Rooms": "An answer may be reused
 * for up to 30 s"): a user reconnecting, or opening a second tab, joins without
 * a database round trip, and joins that arrive together share one.
 * @module
 */
import type { RoomAccess } from "../db/rooms.ts";

/** The longest an answer may be reused, per the contract. */
export const MAX_ROOM_ACCESS_TTL_MS = 30_000;

/** Options for {@linkcode RoomAccessCache}. */
export interface RoomAccessCacheOptions {
  /** How long an answer is reused, in ms: 0 to {@linkcode MAX_ROOM_ACCESS_TTL_MS}. @default 30000 */
  readonly ttlMs?: number;
  /** Answers kept at most; past it the oldest go first. @default 10000 */
  readonly maxEntries?: number;
  /** The clock, ms. @default Date.now */
  readonly now?: () => number;
}

interface Entry {
  readonly access: RoomAccess | null;
  /** When the answer was asked for: its age counts from there. */
  readonly at: number;
}

/**
 * Answers per (user, room), each reused for at most `ttlMs` from when it was
 * asked for; no access (`null`) is an answer too, so a refused user retrying
 * is not a round trip each time. Errors are never kept. Bounded: every entry
 * lives equally long, so the oldest stored is the first to expire and goes
 * first when the cache is full.
 *
 * @example
 * ```ts
 * const cache = new RoomAccessCache();
 * const access = await cache.lookup(user, room, () => readRoomAccess(db, claims, room));
 * ```
 */
export class RoomAccessCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #loading = new Map<string, Promise<RoomAccess | null>>();
  /** Bumped by {@linkcode clear}: a load begun before it stores nothing. */
  #generation = 0;

  constructor(options: RoomAccessCacheOptions = {}) {
    const ttlMs = options.ttlMs ?? MAX_ROOM_ACCESS_TTL_MS;
    if (!(ttlMs >= 0 && ttlMs <= MAX_ROOM_ACCESS_TTL_MS)) {
      throw new RangeError(
        `ttlMs must be from 0 to ${MAX_ROOM_ACCESS_TTL_MS} (got ${ttlMs})`,
      );
    }
    const maxEntries = options.maxEntries ?? 10_000;
    if (!(Number.isInteger(maxEntries) && maxEntries >= 1)) {
      throw new RangeError(`maxEntries must be a positive integer (got ${maxEntries})`);
    }
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#now = options.now ?? Date.now;
  }

  /** Answers held, fresh or not yet swept. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The reusable answer for `user` in `room`: `read`, `write` or `null` (no
   * access), or `undefined` when there is none (never asked, or too old).
   */
  get(user: string, room: string): RoomAccess | null | undefined {
    const key = keyOf(user, room);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#fresh(entry, this.#now())) return entry.access;
    this.#entries.delete(key);
    return undefined;
  }

  /** Keeps `access` for `user` in `room`, as asked for at `at` (default: now). */
  set(user: string, room: string, access: RoomAccess | null, at: number = this.#now()): void {
    const key = keyOf(user, room);
    // Re-inserting keeps the map in the order answers were asked for.
    this.#entries.delete(key);
    this.#entries.set(key, { access, at });
    this.#prune();
  }

  /** Forgets the answer for `user` in `room` (say, after the app changed their membership). */
  delete(user: string, room: string): void {
    this.#entries.delete(keyOf(user, room));
  }

  /** Forgets every answer; loads under way store nothing. */
  clear(): void {
    this.#entries.clear();
    this.#loading.clear();
    this.#generation++;
  }

  /**
   * The answer for `user` in `room`: the reusable one, else `load()`'s,
   * kept. Lookups of the same (user, room) while a load is under way share it.
   * A failed load is not kept: its callers see its error, the next lookup loads
   * again.
   */
  lookup(
    user: string,
    room: string,
    load: () => Promise<RoomAccess | null>,
  ): Promise<RoomAccess | null> {
    const known = this.get(user, room);
    if (known !== undefined) return Promise.resolve(known);
    const key = keyOf(user, room);
    const pending = this.#loading.get(key);
    if (pending) return pending;
    const at = this.#now();
    const generation = this.#generation;
    const loading = Promise.resolve()
      .then(load)
      .then((access) => {
        if (generation === this.#generation) this.set(user, room, access, at);
        return access;
      })
      .finally(() => {
        if (this.#loading.get(key) === loading) this.#loading.delete(key);
      });
    this.#loading.set(key, loading);
    return loading;
  }

  #fresh(entry: Entry, now: number): boolean {
    const age = now - entry.at;
    // A clock that went back makes an answer's age unknown: ask again.
    return age >= 0 && age < this.#ttlMs;
  }

  /** Drops expired answers from the oldest end, then the oldest past the bound. */
  #prune(): void {
    const now = this.#now();
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size > this.#maxEntries || !this.#fresh(entry, now)) {
        this.#entries.delete(key);
      } else {
        break;
      }
    }
  }
}

/** One key per (user, room), unambiguous whatever characters either holds. */
function keyOf(user: string, room: string): string {
  return `${user.length}:${user}${room}`;
}
