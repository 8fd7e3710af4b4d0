/**
 * Who is present in a room, merged across instances: each instance (a
 * source) reports the users it holds with their state and when it was set;
 * a user is present while any source holds them, and the most recently set
 * state wins. Every update returns the changes members must be told of.
 * Pure: the caller supplies times and sources.
 * @module
 */
import type { PresenceChange, PresenceEntry } from "./wire.ts";

/** One user at one source: the state as JSON and when it was set (ms since the epoch). */
export interface HeldPresence {
  readonly stateJson: string;
  readonly at: number;
}

/** A room's presence, merged over its sources. */
export class RoomPresence {
  readonly #sources = new Map<string, Map<string, HeldPresence>>();

  /** Every present user with their winning state, in no particular order. */
  list(): PresenceEntry[] {
    const users = new Set<string>();
    for (const held of this.#sources.values()) for (const user of held.keys()) users.add(user);
    return [...users].map((user) => ({ user, stateJson: this.#winner(user)!.stateJson }));
  }

  /** Whether `user` is present at any source. */
  has(user: string): boolean {
    return this.#winner(user) !== null;
  }

  /** `user` is present at `source` with `held`; returns what changed for members. */
  set(source: string, user: string, held: HeldPresence): PresenceChange[] {
    return this.#changing([user], () => {
      let users = this.#sources.get(source);
      if (users === undefined) this.#sources.set(source, users = new Map());
      users.set(user, held);
    });
  }

  /** `user` is gone from `source`. */
  remove(source: string, user: string): PresenceChange[] {
    return this.#changing([user], () => {
      const users = this.#sources.get(source);
      users?.delete(user);
      if (users?.size === 0) this.#sources.delete(source);
    });
  }

  /** Replaces everything `source` holds (a snapshot from another instance). */
  replace(source: string, users: ReadonlyMap<string, HeldPresence>): PresenceChange[] {
    const touched = new Set([...(this.#sources.get(source)?.keys() ?? []), ...users.keys()]);
    return this.#changing(touched, () => {
      if (users.size === 0) this.#sources.delete(source);
      else this.#sources.set(source, new Map(users));
    });
  }

  /** `source` is gone (an instance left the room or died): its users leave unless held elsewhere. */
  drop(source: string): PresenceChange[] {
    return this.replace(source, new Map());
  }

  /** The sources currently holding someone. */
  sources(): string[] {
    return [...this.#sources.keys()];
  }

  #changing(users: Iterable<string>, update: () => void): PresenceChange[] {
    const before = new Map<string, HeldPresence | null>();
    for (const user of users) before.set(user, this.#winner(user));
    update();
    const changes: PresenceChange[] = [];
    for (const [user, was] of before) {
      const now = this.#winner(user);
      if (was === null && now !== null) {
        changes.push({ type: "presence.join", user, stateJson: now.stateJson });
      } else if (was !== null && now === null) {
        changes.push({ type: "presence.leave", user });
      } else if (was !== null && now !== null && was.stateJson !== now.stateJson) {
        changes.push({ type: "presence.state", user, stateJson: now.stateJson });
      }
    }
    return changes;
  }

  /** The user's most recently set state over every source; `null` when absent. */
  #winner(user: string): HeldPresence | null {
    let best: HeldPresence | null = null;
    let bestSource = "";
    for (const [source, users] of this.#sources) {
      const held = users.get(user);
      if (held === undefined) continue;
      // Ties go to the greater source id, so every instance picks the same one.
      if (best === null || held.at > best.at || (held.at === best.at && source > bestSource)) {
        best = held;
        bestSource = source;
      }
    }
    return best;
  }
}
