/**
 * The bus through Supabase Realtime, reached with supabase-js's own client:
 * one socket per instance, one private channel `relay:room:<room>` per room
 * with members here, joined with the project's secret key.
 *
 * Realtime shuts a channel down past 5 presence `track`/`untrack` calls per
 * 30 s per socket, and a busy room churns members far faster, so members'
 * presence travels as broadcasts ({@linkcode BusMessage}); Realtime Presence
 * carries only the instance's own liveness: one `track` per channel join,
 * keyed by the instance id. When an instance dies, Realtime drops its socket
 * and its presence, and every other instance drops its users.
 * @module
 */
import { type RealtimeChannel, RealtimeClient } from "@supabase/supabase-js";
import type { Telemetry } from "../telemetry/log.ts";
import type {
  BusChannel,
  BusListener,
  BusMessage,
  PresenceDelta,
  PresenceSnapshot,
  RoomBus,
} from "./bus.ts";

/** What the Realtime bus needs. */
export interface RealtimeBusOptions {
  /** Realtime's socket endpoint, `ws(s)://<project>/realtime/v1`. */
  readonly url: string;
  /** The project's secret (or service-role) key: never logged, never sent to a client. */
  readonly secretKey: string;
  /** This instance's id (its presence key on every channel). */
  readonly instance: string;
  readonly telemetry: Telemetry;
}

/** Channel names of rooms (private: no browser may join them, see the rooms migration). */
export function roomTopic(room: string): string {
  return `relay:room:${room}`;
}

/** The broadcast event each kind of bus message travels as. */
const EVENTS = {
  text: "relay.text",
  binary: "relay.binary",
  presence: "relay.presence",
  snapshot: "relay.snapshot",
} as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reconnect after 0.5, 1, 2, 4, 8, then every 10 s (plus jitter): Realtime may be down for a while. */
function backoffMs(tries: number): number {
  return Math.min(10_000, 500 * 2 ** Math.max(0, tries - 1)) + Math.random() * 250;
}

/** The bus on Supabase Realtime. */
export function realtimeBus(options: RealtimeBusOptions): RoomBus {
  const { telemetry, instance } = options;
  let state: "up" | "down" | null = null;
  const report = (next: "up" | "down", error: string | null) => {
    if (state === next) return;
    state = next;
    telemetry.info("room.bus", { state: next, error });
  };
  const client = new RealtimeClient(options.url, {
    params: { apikey: options.secretKey },
    // Private channels are authorised by the token sent on join: the secret key.
    accessToken: () => Promise.resolve(options.secretKey),
    reconnectAfterMs: backoffMs,
    // httpSend (a server's publish) leaves a 202's body unread; read it, so no response lingers.
    fetch: readingFetch,
    heartbeatCallback: (status) => {
      if (status === "ok") report("up", null);
      else if (status === "disconnected" || status === "timeout" || status === "error") {
        report("down", `heartbeat_${status}`);
      }
    },
  });
  const channels = new Set<RealtimeChannel>();

  return {
    instance,
    join(room, listener) {
      const channel = client.channel(roomTopic(room), {
        config: {
          private: true,
          broadcast: { self: false, ack: false },
          presence: { key: instance, enabled: true },
        },
      });
      channels.add(channel);
      let left = false;
      // Sent only while joined: otherwise supabase-js would fall back to one
      // REST call per message (and warn on stdout each time).
      let joined = false;
      listen(channel, instance, listener, () => left);
      channel.subscribe((status, error) => {
        if (left) return;
        joined = status === "SUBSCRIBED";
        if (status === "SUBSCRIBED") {
          report("up", null);
          listener.onBusReady();
          // The instance's liveness on this channel: one track per join.
          void channel.track({ instance });
        } else if (status === "CHANNEL_ERROR" || status === "TIMED_OUT" || status === "CLOSED") {
          report("down", `channel_${status.toLowerCase()}${error ? `: ${error.message}` : ""}`);
          listener.onBusDown();
        }
      });
      return {
        send: (message) => {
          if (left || !joined) return;
          const [event, payload] = encode(message);
          // Without an ack Realtime never replies, yet supabase-js keeps each
          // push's reply binding and timer for its timeout (10 s by default),
          // and scans those bindings on every message it receives: a busy room
          // would pile up thousands. A 1 ms timeout lets each go at once.
          void channel.send({ type: "broadcast", event, payload }, { timeout: 1 }).catch(() => {});
        },
        leave: () => {
          if (left) return;
          left = true;
          channels.delete(channel);
          void client.removeChannel(channel).catch(() => {});
        },
      } satisfies BusChannel;
    },
    async publish(room, message) {
      const channel = client.channel(roomTopic(room), { config: { private: true } });
      try {
        const [event, payload] = encode(message);
        const sent = await channel.httpSend(event, payload);
        return sent.success;
      } catch {
        return false;
      } finally {
        await client.removeChannel(channel).catch(() => {});
      }
    },
    async close() {
      await Promise.all(
        [...channels].map((channel) => client.removeChannel(channel).catch(() => {})),
      );
      channels.clear();
      await disconnect(client);
    },
  };
}

/** `fetch` whose response body is read at once (Realtime's REST answers are tiny). */
async function readingFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  const body = await response.arrayBuffer();
  return new Response(body.byteLength > 0 ? body : null, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * Closes the client's socket without leaving a timer behind: realtime-js's
 * `disconnect()` races the close against a 10 s timer it never clears, and
 * removing the last channel arms a deferred disconnect. A relay in a test (or
 * in a worker that is winding down) must leave nothing running, so the
 * deferred disconnect is cancelled and the Phoenix socket closed directly
 * when realtime-js still has those internals; otherwise the public call.
 */
async function disconnect(client: RealtimeClient): Promise<void> {
  const internals = client as unknown as {
    _cancelPendingDisconnect?: () => void;
    socketAdapter?: { getSocket?: () => { disconnect(done: () => void): void } };
  };
  const socket = internals.socketAdapter?.getSocket?.();
  if (socket === undefined || typeof internals._cancelPendingDisconnect !== "function") {
    await client.disconnect().catch(() => {});
    return;
  }
  internals._cancelPendingDisconnect();
  await new Promise<void>((resolve) => socket.disconnect(resolve));
}

/** A bus message as a broadcast event and payload: texts and frames as bytes, presence as JSON. */
function encode(message: BusMessage): [string, unknown] {
  switch (message.kind) {
    case "text":
      return [EVENTS.text, encoder.encode(message.text).buffer];
    case "binary":
      return [EVENTS.binary, message.data];
    case "presence":
      return [EVENTS.presence, message.delta];
    case "snapshot":
      return [EVENTS.snapshot, message.snapshot];
  }
}

/** Routes the channel's broadcasts and presence to the room's listener. */
function listen(
  channel: RealtimeChannel,
  instance: string,
  listener: BusListener,
  left: () => boolean,
): void {
  const deliver = (message: BusMessage) => !left() && listener.onBusMessage(message);
  channel.on("broadcast", { event: EVENTS.text }, ({ payload }) => {
    if (payload instanceof ArrayBuffer) deliver({ kind: "text", text: decoder.decode(payload) });
  });
  channel.on("broadcast", { event: EVENTS.binary }, ({ payload }) => {
    if (payload instanceof ArrayBuffer) deliver({ kind: "binary", data: payload });
  });
  channel.on("broadcast", { event: EVENTS.presence }, ({ payload }) => {
    if (isPresenceDelta(payload)) deliver({ kind: "presence", delta: payload });
  });
  channel.on("broadcast", { event: EVENTS.snapshot }, ({ payload }) => {
    if (isSnapshot(payload)) deliver({ kind: "snapshot", snapshot: payload });
  });
  channel.on("presence", { event: "sync" }, () => {
    if (left()) return;
    const others = new Set(Object.keys(channel.presenceState()));
    // Until this instance's own track shows, an instance joining now would not
    // see it either (and would let its members in without this one's users):
    // the room waits for a state that holds itself.
    if (!others.delete(instance)) return;
    listener.onBusInstances(others);
  });
}

/** Another instance's message is checked before use: the channel is shared with every instance. */
function isRecordList(value: unknown): boolean {
  return Array.isArray(value) &&
    value.every((record) =>
      Array.isArray(record) && typeof record[0] === "string" && typeof record[1] === "string" &&
      typeof record[2] === "number"
    );
}

function isPresenceDelta(value: unknown): value is PresenceDelta {
  const delta = value as Partial<PresenceDelta> | null;
  return typeof delta?.instance === "string" && typeof delta.count === "number" &&
    isRecordList(delta.set) && Array.isArray(delta.gone) &&
    delta.gone.every((user) => typeof user === "string");
}

function isSnapshot(value: unknown): value is PresenceSnapshot {
  const snapshot = value as Partial<PresenceSnapshot> | null;
  return typeof snapshot?.instance === "string" && typeof snapshot.count === "number" &&
    isRecordList(snapshot.users);
}
