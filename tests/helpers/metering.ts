/**
 * Pieces the metering tests share: the settings that turn metering on against
 * a throwaway cluster, a scripted turn of conversation through the relay, and
 * the rows the database holds, read back as JSON.
 * @module
 */
import type { TestPostgres } from "./postgres.ts";
import { type TestClient, until } from "./ws_client.ts";

/** Settings that meter against `pg` (a budget only when `budgetUsd` is given). */
export function meteringEnv(
  pg: TestPostgres,
  extra: Record<string, string> = {},
): Record<string, string> {
  return { RELAY_METERING: "on", RELAY_DATABASE_URL: pg.url, ...extra };
}

/** A parsed realtime event. */
export type Event = { type: string; [key: string]: unknown };

/** The `response.done` events `client` received, in order. */
export function responsesDone(client: TestClient): Event[] {
  return client.events().filter((event) => event.type === "response.done");
}

/**
 * One turn: a user text item and `response.create`; resolves to the
 * `response.done` the client received for it.
 */
export async function say(client: TestClient, text: string, ms = 5000): Promise<Event> {
  const before = responsesDone(client).length;
  client.socket.send(JSON.stringify({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  }));
  client.socket.send(JSON.stringify({ type: "response.create" }));
  await until(() => responsesDone(client).length > before, ms, "response.done");
  return responsesDone(client)[before]!;
}

/** The usage object of a `response.done`. */
export function usageOf(done: Event): Record<string, unknown> {
  return (done.response as { usage: Record<string, unknown> }).usage;
}

/** The id of a `response.done`'s response. */
export function responseIdOf(done: Event): string {
  return (done.response as { id: string }).id;
}

/** A row of relay.usage as JSON. */
export interface UsageRow {
  user_id: string;
  conn: string;
  model: string;
  event_id: string;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost_micros: number;
  details: Record<string, unknown>;
  created_at: string;
}

/** `user`'s relay.usage rows, oldest first. */
export async function usageRows(pg: TestPostgres, user: string): Promise<UsageRow[]> {
  const out = await pg.psql(
    `select coalesce(json_agg(u order by u.created_at, u.event_id), '[]') from relay.usage u
      where u.user_id = '${uuid(user)}'`,
  );
  return JSON.parse(out) as UsageRow[];
}

/** `user`'s spend in the current UTC day (and month), from relay.spend. */
export async function spendOf(
  pg: TestPostgres,
  user: string,
): Promise<{ day: number; month: number }> {
  const out = await pg.psql(
    `select coalesce(sum(spent_micros) filter (where period = 'day'), 0) || ',' ||
            coalesce(sum(spent_micros) filter (where period = 'month'), 0)
       from relay.spend where user_id = '${uuid(user)}'
        and period_start = date_trunc(period, now(), 'UTC')`,
  );
  const [day, month] = out.trim().split(",").map(Number);
  return { day: day!, month: month! };
}

/** Live (unexpired) session leases of `user`. */
export async function liveLeases(pg: TestPostgres, user: string): Promise<number> {
  const out = await pg.psql(
    `select count(*) from relay.leases where user_id = '${uuid(user)}' and expires_at > now()`,
  );
  return Number(out.trim());
}

/** Guards the SQL built above: only uuids are interpolated. */
function uuid(value: string): string {
  if (!/^[0-9a-f-]{36}$/i.test(value)) throw new TypeError(`not a uuid: ${value}`);
  return value;
}
