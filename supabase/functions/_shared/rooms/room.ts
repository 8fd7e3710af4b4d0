/**
 * One room on one instance: who is here, who gets what, and the room's link
 * to the other instances through its bus channel. Local members hear each
 * other at once; other instances hear them through the channel.
 * @module
 */
import type { Message } from "../upstream/upstream.ts";
import type { BusChannel, BusListener, BusMessage, PresenceRecord, RoomBus } from "./bus.ts";
import { type HeldPresence, RoomPresence } from "./presence.ts";
import { type PresenceChange, type PresenceEntry, presenceText } from "./wire.ts";

/** What a room needs of a member (a {@linkcode RoomMember}) or an SSE follower. */
export interface Occupant {
  readonly user: string;
  /** Whether it counts in presence (members do; SSE followers only listen). */
  readonly present: boolean;
  /** Whether it hears its own broadcasts and binary frames (`?self=true`). */
  readonly self: boolean;
  /** Its instance hears the room now: send `room.joined` with this presence list. */
  open(presence: readonly PresenceEntry[]): void;
  /** A message for it (only called once it is open). */
  deliver(data: Message): void;
}

/** How long a newly joined channel waits for the other instances' snapshots before members are let in. */
const SNAPSHOT_WAIT_MS = 1000;

/**
 * How long an instance may be missing from the channel's presence before its
 * users leave: long enough for every instance to rejoin after a Realtime
 * restart, well within the contract's 30 s for a dead instance.
 */
const INSTANCE_GONE_GRACE_MS = 3000;

/** What a room is built with. */
export interface RoomOptions {
  readonly name: string;
  readonly bus: RoomBus;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /**
   * How long a member waits for the channel before it is let in with local
   * delivery only (Realtime unreachable).
   */
  readonly busWaitMs: number;
  /** The room has no local member left (the hub decides when to let it go). */
  readonly onEmpty: (room: Room) => void;
}

/** A user's connections here and the state they set. */
interface LocalUser {
  conns: number;
  held: HeldPresence;
}

/** A room's members on this instance, and its channel. */
export class Room implements BusListener {
  readonly name: string;
  readonly #options: RoomOptions;
  readonly #instance: string;
  readonly #members = new Set<Occupant>();
  /** Members whose instance does not hear the room yet. */
  #waiting: Occupant[] = [];
  readonly #users = new Map<string, LocalUser>();
  readonly #presence = new RoomPresence();
  /** Members each other instance holds, from their presence messages. */
  readonly #remoteCounts = new Map<string, number>();
  /** Instances on the channel (from Realtime Presence), and those whose snapshot arrived. */
  #instances: ReadonlySet<string> = new Set();
  readonly #snapshotsFrom = new Set<string>();
  /** Instances missing from the channel's presence, dropped unless they come back in time. */
  readonly #drops = new Map<string, ReturnType<typeof setTimeout>>();
  #channel: BusChannel | null;
  /** The channel is joined. */
  #busReady = false;
  /** Realtime Presence has said who is on the channel since it was joined. */
  #synced = false;
  /** Members are let in (the channel is joined and the others' presence is known, or waiting gave up). */
  #hearing = false;
  #gate: ReturnType<typeof setTimeout> | undefined;
  /** Publishers that are not members (a connection's captions) keeping the channel joined. */
  #holds = 0;

  constructor(options: RoomOptions) {
    this.name = options.name;
    this.#options = options;
    this.#instance = options.bus.instance;
    this.#channel = options.bus.join(options.name, this);
    // Realtime may be unreachable: members are then let in with local delivery.
    this.#gate = setTimeout(() => this.#letIn(), options.busWaitMs);
  }

  /** Members here and on every other instance (it may overshoot briefly while instances learn of each other). */
  count(): number {
    let total = this.#members.size;
    for (const count of this.#remoteCounts.values()) total += count;
    return total;
  }

  /** Members and followers on this instance. */
  get localSize(): number {
    return this.#members.size;
  }

  /** Whether anything here still needs the room: a member, a follower or a publisher. */
  get inUse(): boolean {
    return this.#members.size > 0 || this.#holds > 0;
  }

  /** A publisher that is not a member (captions) keeps the room's channel while it lives. */
  hold(): void {
    this.#holds++;
  }

  /** The publisher is done. */
  unhold(): void {
    if (this.#holds > 0) this.#holds--;
    if (!this.inUse) this.#options.onEmpty(this);
  }

  /** Adds a member or follower; it is opened once this instance hears the room. */
  admit(member: Occupant): void {
    this.#members.add(member);
    const local = this.#users.get(member.user);
    if (!member.present) this.#publishCount();
    else if (local) {
      local.conns++;
      this.#publishCount();
    } else {
      const held = { stateJson: "null", at: 0 };
      this.#users.set(member.user, { conns: 1, held });
      this.#changed(this.#presence.set(this.#instance, member.user, held), [[
        member.user,
        held.stateJson,
        held.at,
      ]], []);
    }
    if (this.#hearing) member.open(this.#presence.list());
    else this.#waiting.push(member);
  }

  /** Removes a member (idempotent). */
  leave(member: Occupant): void {
    if (!this.#members.delete(member)) return;
    this.#waiting = this.#waiting.filter((waiting) => waiting !== member);
    const local = member.present ? this.#users.get(member.user) : undefined;
    if (local && --local.conns === 0) {
      this.#users.delete(member.user);
      this.#changed(this.#presence.remove(this.#instance, member.user), [], [member.user]);
    } else this.#publishCount();
    if (!this.inUse) this.#options.onEmpty(this);
  }

  /** A member's new presence state (last write wins, across tabs and instances). */
  setState(member: Occupant, stateJson: string): void {
    const local = this.#users.get(member.user);
    if (!local || !member.present || !this.#members.has(member)) return;
    local.held = { stateJson, at: this.#options.now() };
    this.#changed(this.#presence.set(this.#instance, member.user, local.held), [[
      member.user,
      stateJson,
      local.held.at,
    ]], []);
  }

  /**
   * Delivers a text or binary message to every member here (the sender too
   * only with `self`) and to the other instances.
   */
  broadcast(from: Occupant | null, data: Message): void {
    for (const member of this.#members) {
      if (member !== from || member.self) this.#deliverTo(member, data);
    }
    this.#channel?.send(
      typeof data === "string" ? { kind: "text", text: data } : { kind: "binary", data },
    );
  }

  /** Leaves the channel: the hub let the room go. */
  close(): void {
    clearTimeout(this.#gate);
    for (const timer of this.#drops.values()) clearTimeout(timer);
    this.#drops.clear();
    this.#channel?.leave();
    this.#channel = null;
  }

  onBusReady(): void {
    this.#busReady = true;
    // Whoever is on the channel learns what this instance holds.
    this.#channel?.send({ kind: "snapshot", snapshot: this.#snapshot() });
    if (!this.#hearing) {
      // Joined: the others' snapshots should follow at once; do not wait long for them.
      clearTimeout(this.#gate);
      this.#gate = setTimeout(() => this.#letIn(), SNAPSHOT_WAIT_MS);
    }
    this.#maybeLetIn();
  }

  onBusDown(): void {
    this.#busReady = false;
    this.#synced = false;
  }

  onBusInstances(instances: ReadonlySet<string>): void {
    const before = this.#instances;
    this.#instances = instances;
    this.#synced = true;
    for (const instance of instances) {
      clearTimeout(this.#drops.get(instance));
      this.#drops.delete(instance);
    }
    // An instance missing from Realtime Presence may only be rejoining
    // (after a Realtime restart, whoever rejoins first sees the others
    // missing): its users leave only if it is still missing a moment later.
    for (const gone of new Set([...before, ...this.#remoteCounts.keys()])) {
      if (instances.has(gone) || this.#drops.has(gone)) continue;
      this.#drops.set(gone, setTimeout(() => this.#drop(gone), INSTANCE_GONE_GRACE_MS));
    }
    // A newcomer has not heard what this instance holds.
    if ([...instances].some((instance) => !before.has(instance)) && this.#busReady) {
      this.#channel?.send({ kind: "snapshot", snapshot: this.#snapshot() });
    }
    this.#maybeLetIn();
  }

  /** `instance` is gone (it died, or left the room): its users leave unless held elsewhere. */
  #drop(instance: string): void {
    this.#drops.delete(instance);
    if (this.#instances.has(instance)) return;
    this.#remoteCounts.delete(instance);
    this.#snapshotsFrom.delete(instance);
    this.#deliverChanges(this.#presence.drop(instance));
  }

  onBusMessage(message: BusMessage): void {
    switch (message.kind) {
      case "text":
      case "binary": {
        const data = message.kind === "text" ? message.text : message.data;
        for (const member of this.#members) this.#deliverTo(member, data);
        return;
      }
      case "presence": {
        const { instance, count, set, gone } = message.delta;
        if (instance === this.#instance) return;
        this.#remoteCounts.set(instance, count);
        const changes: PresenceChange[] = [];
        for (const [user, stateJson, at] of set) {
          changes.push(...this.#presence.set(instance, user, { stateJson, at }));
        }
        for (const user of gone) changes.push(...this.#presence.remove(instance, user));
        return this.#deliverChanges(changes);
      }
      case "snapshot": {
        const { instance, count, users } = message.snapshot;
        if (instance === this.#instance) return;
        this.#remoteCounts.set(instance, count);
        this.#snapshotsFrom.add(instance);
        const held = new Map(users.map(([user, stateJson, at]) => [user, { stateJson, at }]));
        this.#deliverChanges(this.#presence.replace(instance, held));
        return this.#maybeLetIn();
      }
    }
  }

  #snapshot() {
    return { instance: this.#instance, count: this.localSize, users: this.#records() };
  }

  #records(): PresenceRecord[] {
    return [...this.#users].map(([user, { held }]) => [user, held.stateJson, held.at] as const);
  }

  #publishCount(): void {
    this.#channel?.send({
      kind: "presence",
      delta: { instance: this.#instance, count: this.localSize, set: [], gone: [] },
    });
  }

  /** Local presence changed: tell members here, and the other instances. */
  #changed(changes: PresenceChange[], set: PresenceRecord[], gone: string[]): void {
    this.#deliverChanges(changes);
    this.#channel?.send({
      kind: "presence",
      delta: { instance: this.#instance, count: this.localSize, set, gone },
    });
  }

  #deliverChanges(changes: readonly PresenceChange[]): void {
    for (const change of changes) {
      const text = presenceText(change);
      for (const member of this.#members) {
        // A member already knows its own user is here (room.joined lists it).
        if (change.type === "presence.join" && member.user === change.user) continue;
        this.#deliverTo(member, text);
      }
    }
  }

  #deliverTo(member: Occupant, data: Message): void {
    // Before the room is heard every member is still waiting for room.joined.
    if (this.#hearing) member.deliver(data);
  }

  /**
   * Lets members in once the channel is joined, its presence known, and every
   * instance on it has said what it holds (or the wait gave up).
   */
  #maybeLetIn(): void {
    if (this.#hearing || !this.#busReady || !this.#synced) return;
    for (const instance of this.#instances) if (!this.#snapshotsFrom.has(instance)) return;
    this.#letIn();
  }

  #letIn(): void {
    clearTimeout(this.#gate);
    this.#gate = undefined;
    if (this.#hearing) return;
    this.#hearing = true;
    const waiting = this.#waiting;
    this.#waiting = [];
    const presence = this.#presence.list();
    for (const member of waiting) member.open(presence);
  }
}
