/**
 * Room history's SQL on a real PostgreSQL (a throwaway cluster with the
 * migrations applied by the Supabase CLI): offsets from two instances
 * appending to one room at once, idempotent ids (also concurrently), the
 * trim to the newest N and the TTL, reading since / last, one round trip per
 * call, and that no API role reads or writes a room's history. Then the same
 * migration and calls on the embedded dev database (PGlite).
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  connectDatabase,
  type Database,
  DatabaseError,
} from "../../supabase/functions/_shared/db/client.ts";
import {
  type AppendInput,
  appendRoomMessage,
  deleteExpiredRoomMessages,
  type HistoryKeep,
  latestOffset,
  readRoomHistory,
} from "../../supabase/functions/_shared/db/room_history.ts";
import { recoveredAfter } from "../../supabase/functions/_shared/rooms/recovery.ts";
import { startEmbeddedPostgres } from "../../dev/db/embedded.ts";
import { applyMigrations, readMigrations } from "../../dev/db/migrations.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";

const ROOT = new URL("../../", import.meta.url);

const skip = postgresUnavailable();
if (skip) console.warn(`room history tests skipped: ${skip}`);

/** How long the two instances race on one room. */
const RACE_MS = 10_000;
/** A bound on the race's appends, whatever the machine's speed. */
const RACE_MAX_APPENDS = 100_000;
/** The race checks order, not latency: a loaded machine must not fail it with a timeout. */
const RACE_DEADLINE_MS = 15_000;

const KEEP: HistoryKeep = { max: 1000, ttlS: 3600 };

let rooms = 0;
const newRoom = (kind = "public") => `${kind}:history-${++rooms}-${crypto.randomUUID()}`;

function message(room: string, overrides: Partial<AppendInput> = {}): AppendInput {
  return {
    room,
    user: "user-a",
    id: null,
    event: "chat",
    payloadJson: JSON.stringify({ text: "hello" }),
    at: new Date().toISOString(),
    ...overrides,
  };
}

/** A verified Supabase Auth payload for `sub`. */
function userClaims(sub: string): Record<string, unknown> {
  return {
    sub,
    aud: "authenticated",
    role: "authenticated",
    exp: Math.floor(Date.now() / 1000) + 3600,
  };
}

Deno.test({
  name: "room history on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const statements: string[] = [];
    const first = connectDatabase(pg.url, { onStatement: (s) => statements.push(s) });
    const second = connectDatabase(pg.url);
    const sql = postgres(pg.url, { max: 2, prepare: false, onnotice: () => {} });
    const rows = async (room: string) =>
      (await sql<{ offset: string }[]>`
        select m."offset"::text as "offset" from relay.room_messages m where m.room = ${room}
          order by m."offset"`).map((row) => Number(row.offset));
    const range = (from: number, to: number) =>
      Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
    try {
      await t.step(
        "appendRoomMessage from two instances at once: offsets 1..n, no gap, none twice, each caller's in its own order",
        async () => {
          const room = newRoom();
          const keep = { max: 1_000_000, ttlS: 3600 };
          const end = Date.now() + RACE_MS;
          let started = 0;
          // Three callers per instance (its pool's size), each waiting for its own answers.
          const callers = [first, second].flatMap((db, instance) =>
            Array.from({ length: 3 }, (_, c) => ({ db, name: `i${instance}c${c}` }))
          );
          const results = await Promise.all(callers.map(async ({ db, name }) => {
            const offsets: number[] = [];
            let i = 0;
            while (Date.now() < end && started < RACE_MAX_APPENDS) {
              started++;
              const n = i++;
              const { offset, duplicate } = await appendRoomMessage(
                db,
                message(room, {
                  user: name,
                  // Half carry ids (the idempotency check runs), half none.
                  id: n % 2 ? `${name}-${n}` : null,
                  payloadJson: JSON.stringify({ name, n }),
                }),
                keep,
                RACE_DEADLINE_MS,
              );
              assert.equal(duplicate, false);
              offsets.push(offset);
            }
            return { name, offsets };
          }));
          const all: number[] = [];
          for (const { name, offsets } of results) {
            assert.ok(offsets.length > 0, `${name} appended`);
            for (let i = 1; i < offsets.length; i++) {
              assert.ok(offsets[i]! > offsets[i - 1]!, `${name}: increasing in its own order`);
            }
            all.push(...offsets);
          }
          all.sort((a, b) => a - b);
          const n = all.length;
          assert.deepEqual(all, range(1, n), "each offset 1..n given exactly once");
          assert.deepEqual(await rows(room), range(1, n), "stored 1..n");
          assert.equal(await latestOffset(second, room), n);
          console.log(
            `  ${n} appends in ${RACE_MS} ms from two instances (${
              results.map((r) => `${r.name}: ${r.offsets.length}`).join(", ")
            })`,
          );
          // Each stored row is what its caller sent at that offset.
          const read = await readRoomHistory(first, room, { last: 50 }, keep);
          assert.equal(read.messages.length, Math.min(50, n));
          const byOffset = new Map<number, string>();
          for (const { name, offsets } of results) {
            offsets.forEach((offset, n) => byOffset.set(offset, JSON.stringify({ name, n })));
          }
          for (const stored of read.messages) {
            assert.equal(stored.payloadJson, byOffset.get(stored.offset));
            assert.equal(stored.user, JSON.parse(stored.payloadJson).name);
          }
        },
      );

      await t.step(
        "appendRoomMessage keeps an id once per sender and room; a resend gets the first offset",
        async () => {
          const room = newRoom();
          const a = await appendRoomMessage(first, message(room, { id: "m-1" }), KEEP);
          const again = await appendRoomMessage(
            second,
            message(room, { id: "m-1", payloadJson: '{"text":"resent"}' }),
            KEEP,
          );
          assert.deepEqual(a, { offset: 1, duplicate: false });
          assert.deepEqual(again, { offset: 1, duplicate: true });
          // Another sender's id, a server's id, and the same id in another room are others.
          assert.deepEqual(
            await appendRoomMessage(first, message(room, { user: "user-b", id: "m-1" }), KEEP),
            { offset: 2, duplicate: false },
          );
          assert.deepEqual(
            await appendRoomMessage(first, message(room, { user: null, id: "m-1" }), KEEP),
            { offset: 3, duplicate: false },
          );
          assert.deepEqual(
            await appendRoomMessage(second, message(room, { user: null, id: "m-1" }), KEEP),
            { offset: 3, duplicate: true },
            "a server's ids are idempotent too",
          );
          const other = newRoom();
          assert.deepEqual(
            await appendRoomMessage(first, message(other, { id: "m-1" }), KEEP),
            { offset: 1, duplicate: false },
          );
          // A duplicate took no offset: the next one follows without a gap.
          assert.deepEqual(await appendRoomMessage(first, message(room), KEEP), {
            offset: 4,
            duplicate: false,
          });
          assert.deepEqual(await rows(room), [1, 2, 3, 4]);
          const read = await readRoomHistory(first, room, { since: 0 }, KEEP);
          assert.equal(read.messages[0]!.payloadJson, '{"text":"hello"}', "the first one kept");
          assert.deepEqual(read.messages.map((m) => [m.user, m.id]), [
            ["user-a", "m-1"],
            ["user-b", "m-1"],
            [null, "m-1"],
            ["user-a", null],
          ]);
        },
      );

      await t.step(
        "appendRoomMessage: the same id from both instances at once ends as one row, both told its offset",
        async () => {
          const room = newRoom();
          const ids = Array.from({ length: 60 }, (_, i) => `dup-${i}`);
          for (const id of ids) {
            const answers = await Promise.all([
              appendRoomMessage(first, message(room, { id }), KEEP),
              appendRoomMessage(second, message(room, { id }), KEEP),
              appendRoomMessage(first, message(room, { id }), KEEP),
              appendRoomMessage(second, message(room, { id }), KEEP),
              // A different sender's message racing with them.
              appendRoomMessage(second, message(room, { user: "user-b", id }), KEEP),
            ]);
            const twins = answers.slice(0, 4);
            assert.equal(new Set(twins.map((a) => a.offset)).size, 1, `${id}: one offset`);
            assert.equal(twins.filter((a) => !a.duplicate).length, 1, `${id}: stored once`);
            assert.equal(answers[4]!.duplicate, false);
          }
          assert.deepEqual(await rows(room), range(1, 2 * ids.length), "no gap, two rows per id");
          const [counted] = await sql<{ count: number }[]>`
            select count(*)::int as count from relay.room_messages
              where room = ${room} and sender = 'user-a'`;
          assert.equal(counted?.count, ids.length);
        },
      );

      await t.step("appendRoomMessage trims a room to its newest max", async () => {
        const room = newRoom();
        const keep = { max: 5, ttlS: 3600 };
        for (let i = 1; i <= 12; i++) {
          assert.equal((await appendRoomMessage(first, message(room), keep)).offset, i);
        }
        assert.deepEqual(await rows(room), [8, 9, 10, 11, 12]);
        const read = await readRoomHistory(second, room, { since: 0 }, keep);
        assert.deepEqual(
          { latest: read.latest, oldest: read.oldest, offsets: read.messages.map((m) => m.offset) },
          { latest: 12, oldest: 8, offsets: [8, 9, 10, 11, 12] },
        );
        assert.equal(recoveredAfter(0, read), false, "the first seven are gone");
        assert.equal(recoveredAfter(6, read), false);
        assert.equal(recoveredAfter(7, read), true);
        // A smaller max (RELAY_ROOM_HISTORY lowered) reads and trims to the new one.
        const smaller = { max: 2, ttlS: 3600 };
        const narrowed = await readRoomHistory(second, room, { since: 0 }, smaller);
        assert.deepEqual(narrowed.messages.map((m) => m.offset), [11, 12]);
        assert.equal(narrowed.oldest, 11);
        // An id only the trimmed part held is free again.
        await appendRoomMessage(first, message(room, { id: "late" }), smaller);
        assert.deepEqual(await rows(room), [12, 13]);
        assert.equal((await appendRoomMessage(first, message(room), smaller)).offset, 14);
        assert.deepEqual(await rows(room), [13, 14]);
      });

      await t.step(
        "appendRoomMessage and readRoomHistory keep nothing older than the TTL; offsets go on after all expired",
        async () => {
          const room = newRoom();
          const keep = { max: 100, ttlS: 60 };
          for (let i = 0; i < 5; i++) {
            await appendRoomMessage(first, message(room, { id: `t-${i + 1}` }), keep);
          }
          const age = (offsets: string, seconds: number) =>
            pg.psql(`update relay.room_messages set created_at = now() - interval '${seconds} s'
              where room = '${room}' and "offset" in (${offsets})`);
          // Offset 3 is past the TTL; 1 and 2 carry later times (another instance's clock
          // ahead): the room keeps one run, so they go with 3.
          await age("3", 61);
          await age("1, 2", 59);
          let read = await readRoomHistory(second, room, { since: 0 }, keep);
          assert.deepEqual(
            {
              latest: read.latest,
              oldest: read.oldest,
              offsets: read.messages.map((m) => m.offset),
            },
            { latest: 5, oldest: 4, offsets: [4, 5] },
          );
          assert.equal(recoveredAfter(2, read), false);
          assert.equal(recoveredAfter(3, read), true);
          assert.deepEqual(await rows(room), [1, 2, 3, 4, 5], "a read deletes nothing");
          // The next append deletes them, and an id only they held is new again.
          assert.deepEqual(
            await appendRoomMessage(first, message(room, { id: "t-2" }), keep),
            { offset: 6, duplicate: false },
          );
          assert.deepEqual(await rows(room), [4, 5, 6]);
          assert.deepEqual(
            await appendRoomMessage(first, message(room, { id: "t-4" }), keep),
            { offset: 4, duplicate: true },
            "a kept id is still a duplicate",
          );
          // Everything expires: the room reads empty but keeps its latest offset...
          await age("4, 5, 6", 3600);
          read = await readRoomHistory(second, room, { since: 0 }, keep);
          assert.deepEqual(read, { latest: 6, oldest: null, messages: [] });
          assert.equal(await latestOffset(first, room), 6);
          assert.equal(recoveredAfter(6, read), true, "nothing missed");
          assert.equal(recoveredAfter(5, read), false, "one expired");
          // ...and the next broadcast continues from it, never from 1.
          assert.deepEqual(
            await appendRoomMessage(first, message(room, { id: "t-4" }), keep),
            { offset: 7, duplicate: false },
          );
          assert.deepEqual(await rows(room), [7]);
        },
      );

      await t.step(
        "readRoomHistory reads since, last, beyond the latest and before the oldest",
        async () => {
          const room = newRoom();
          const sent: AppendInput[] = [];
          for (let i = 1; i <= 10; i++) {
            const input = message(room, {
              user: i % 3 === 0 ? null : `user-${i % 2}`,
              id: i % 2 ? `id-${i}` : null,
              event: `event.${i}`,
              payloadJson: JSON.stringify({ i }),
              // Distinct times with milliseconds, well inside the TTL.
              at: new Date(Date.now() - 60_000 + i * 1001).toISOString(),
            });
            sent.push(input);
            await appendRoomMessage(first, input, KEEP);
          }
          const offsets = async (from: { since: number } | { last: number }, keep = KEEP) =>
            (await readRoomHistory(second, room, from, keep)).messages.map((m) => m.offset);
          assert.deepEqual(await offsets({ since: 0 }), range(1, 10));
          assert.deepEqual(await offsets({ since: 4 }), range(5, 10));
          assert.deepEqual(await offsets({ since: 9 }), [10]);
          assert.deepEqual(await offsets({ since: 10 }), []);
          assert.deepEqual(await offsets({ since: 11 }), []);
          assert.deepEqual(await offsets({ since: Number.MAX_SAFE_INTEGER }), []);
          assert.deepEqual(await offsets({ last: 3 }), [8, 9, 10]);
          assert.deepEqual(await offsets({ last: 1 }), [10]);
          assert.deepEqual(await offsets({ last: 100 }), range(1, 10));
          assert.deepEqual(await offsets({ last: 100 }, { max: 4, ttlS: 3600 }), [7, 8, 9, 10]);
          assert.deepEqual(await offsets({ since: 2 }, { max: 4, ttlS: 3600 }), [7, 8, 9, 10]);
          assert.deepEqual(
            await readRoomHistory(second, room, { last: 0 }, KEEP),
            { latest: 10, oldest: 1, messages: [] },
            "last 0: the offsets alone",
          );
          const beyond = await readRoomHistory(second, room, { since: 11 }, KEEP);
          assert.deepEqual({ latest: beyond.latest, oldest: beyond.oldest }, {
            latest: 10,
            oldest: 1,
          });
          assert.equal(recoveredAfter(11, beyond), false, "ahead of the latest");
          const all = await readRoomHistory(second, room, { since: 0 }, KEEP);
          assert.equal(recoveredAfter(0, all), true);
          // Every field comes back as sent.
          assert.deepEqual(
            all.messages,
            sent.map((input, i) => ({
              offset: i + 1,
              user: input.user,
              id: input.id,
              event: input.event,
              payloadJson: input.payloadJson,
              at: input.at,
            })),
          );
          // A room that never stored anything.
          const none = await readRoomHistory(second, newRoom(), { since: 0 }, KEEP);
          assert.deepEqual(none, { latest: null, oldest: null, messages: [] });
          assert.equal(recoveredAfter(0, none), true);
          assert.equal(recoveredAfter(1, none), false);
          assert.equal(await latestOffset(second, newRoom()), null);
        },
      );

      await t.step(
        "appendRoomMessage keeps payloads byte for byte, whatever JSON they hold",
        async () => {
          const room = newRoom();
          const payloads = [
            JSON.stringify({ b: 1, a: '\0 nul, \ud800 lone surrogate, \u00e9\u{1F600}\n\t"\\' }),
            JSON.stringify({ n: 1e21, small: 5e-324, neg: -0, f: 1.5, big: 2 ** 53 + 2 }),
            JSON.stringify([{ z: null, y: [true, false], x: {} }, "", 0]),
            JSON.stringify("a string payload"),
            "null",
            JSON.stringify({ a: 1, "": "empty key", " a": 2 }),
          ];
          for (const payloadJson of payloads) {
            await appendRoomMessage(first, message(room, { payloadJson }), KEEP);
          }
          const read = await readRoomHistory(second, room, { since: 0 }, KEEP);
          assert.deepEqual(read.messages.map((m) => m.payloadJson), payloads);
          // Senders that are not UUIDs (third-party auth) come back as they went in.
          const sub = "user_2abc:with'quote\\and\"more";
          await appendRoomMessage(first, message(room, { user: sub, id: "q" }), KEEP);
          const [last] = (await readRoomHistory(second, room, { last: 1 }, KEEP)).messages;
          assert.equal(last?.user, sub);
        },
      );

      await t.step("each call is one statement, one round trip", async () => {
        const room = newRoom();
        const count = async (call: () => Promise<unknown>) => {
          const before = statements.length;
          await call();
          return statements.length - before;
        };
        assert.equal(await count(() => appendRoomMessage(first, message(room), KEEP)), 1);
        assert.equal(
          await count(() => appendRoomMessage(first, message(room, { id: "x" }), KEEP)),
          1,
        );
        assert.equal(
          await count(() => appendRoomMessage(first, message(room, { id: "x" }), KEEP)),
          1,
          "a duplicate too",
        );
        assert.equal(
          await count(() => appendRoomMessage(first, message(newRoom()), KEEP)),
          1,
          "a room's first",
        );
        assert.equal(await count(() => readRoomHistory(first, room, { since: 0 }, KEEP)), 1);
        assert.equal(await count(() => readRoomHistory(first, room, { last: 5 }, KEEP)), 1);
        assert.equal(await count(() => latestOffset(first, room)), 1);
        assert.equal(await count(() => deleteExpiredRoomMessages(first, 3600)), 1);
        // Bad arguments are refused before anything is sent.
        const refused: [string, () => Promise<unknown>][] = [
          ["max 0", () => appendRoomMessage(first, message(room), { max: 0, ttlS: 60 })],
          ["ttl 0", () => appendRoomMessage(first, message(room), { max: 5, ttlS: 0 })],
          ["max 1.5", () => readRoomHistory(first, room, { since: 0 }, { max: 1.5, ttlS: 60 })],
          ["empty user", () => appendRoomMessage(first, message(room, { user: "" }), KEEP)],
          ["since -1", () => readRoomHistory(first, room, { since: -1 }, KEEP)],
          ["since 2^53", () => readRoomHistory(first, room, { since: 2 ** 53 }, KEEP)],
          ["last 1.5", () => readRoomHistory(first, room, { last: 1.5 }, KEEP)],
          ["ttl NaN", () => deleteExpiredRoomMessages(first, NaN)],
        ];
        for (const [name, call] of refused) {
          const before = statements.length;
          await assert.rejects(call(), RangeError, name);
          assert.equal(statements.length, before, `${name}: nothing sent`);
        }
      });

      await t.step(
        "room history calls reject with DatabaseError when the database fails",
        async () => {
          const closed = connectDatabase(pg.url);
          await closed.close();
          const room = newRoom();
          for (
            const call of [
              (db: Database) => appendRoomMessage(db, message(room), KEEP),
              (db: Database) => readRoomHistory(db, room, { since: 0 }, KEEP),
              (db: Database) => latestOffset(db, room),
            ]
          ) {
            await assert.rejects(call(closed), (error) => error instanceof DatabaseError);
          }
          // A row the table refuses (a room name the relay never accepts) fails the call alone.
          await assert.rejects(
            appendRoomMessage(first, message("has space"), KEEP),
            (error) => error instanceof DatabaseError && /check constraint/.test(error.message),
          );
          assert.equal((await appendRoomMessage(first, message(room), KEEP)).offset, 1);
        },
      );

      await t.step(
        "deleteExpiredRoomMessages purges rooms nobody writes to, oldest first by offset",
        async () => {
          const idle = newRoom();
          const live = newRoom();
          for (let i = 0; i < 4; i++) {
            await appendRoomMessage(first, message(idle), KEEP);
            await appendRoomMessage(first, message(live), KEEP);
          }
          await pg.psql(`update relay.room_messages set created_at = now() - interval '2 hours'
            where room = '${idle}' and "offset" in (1, 3)`);
          await pg.psql(`update relay.room_messages set created_at = now() - interval '2 hours'
            where room = '${live}' and "offset" = 1`);
          // A room being appended to (its counter locked) is skipped, not waited for.
          let deleted = 0;
          let release = () => {};
          const released = new Promise<void>((resolve) => release = resolve);
          let locked = () => {};
          const isLocked = new Promise<void>((resolve) => locked = resolve);
          const holder = sql.begin(async (tx) => {
            await tx`select 1 from relay.room_offsets where room = ${live} for update`;
            locked();
            await released;
          });
          try {
            await isLocked;
            deleted = await deleteExpiredRoomMessages(second, 3600);
          } finally {
            release();
            await holder;
          }
          assert.ok(deleted >= 3, `deleted ${deleted}`);
          assert.deepEqual(await rows(idle), [4], "2 goes with 3");
          assert.deepEqual(await rows(live), [1, 2, 3, 4], "skipped while locked");
          assert.ok((await deleteExpiredRoomMessages(second, 3600)) >= 1);
          assert.deepEqual(await rows(live), [2, 3, 4]);
          assert.equal(await latestOffset(first, idle), 4, "the counter stays");
        },
      );

      await t.step("no API role reads or writes room history (RLS on, no grants)", async () => {
        const room = newRoom();
        await appendRoomMessage(first, message(room, { user: "someone" }), KEEP);
        const alice = crypto.randomUUID();
        const as = (role: string) =>
          role === "authenticated"
            ? `set role authenticated; select set_config('request.jwt.claims', '${
              JSON.stringify(userClaims(alice))
            }', false);`
            : `set role ${role}; select set_config('request.jwt.claims', '{"role":"${role}"}', false);`;
        const denied = [
          "select count(*) from relay.room_messages",
          "select count(*) from relay.room_offsets",
          `insert into relay.room_messages (room, "offset", sender, event, payload, created_at)
             values ('public:x', 1000, '${alice}', 'e', '1', now())`,
          "insert into relay.room_offsets (room, latest) values ('public:x', 1000)",
          "update relay.room_messages set payload = '2'",
          "update relay.room_offsets set latest = 0",
          "delete from relay.room_messages",
          "delete from relay.room_offsets",
          `select * from relay.append_room_message('public:x', '${alice}', null, 'e', '1', now(), 10, 60)`,
          "select relay.room_history_floor('public:x', 1, 10, 60)",
          "select relay.delete_expired_room_messages(1, 10)",
        ];
        for (const role of ["anon", "authenticated", "service_role"]) {
          for (const statement of denied) {
            await assert.rejects(
              pg.psql(`${as(role)} ${statement}`),
              /permission denied/,
              `${role}: ${statement}`,
            );
          }
        }
        const rls = await pg.psql(
          `select string_agg(relname || '=' || relrowsecurity, ',' order by relname) from pg_class
            where relnamespace = 'relay'::regnamespace and relname in ('room_messages', 'room_offsets')`,
        );
        assert.equal(rls.trim(), "room_messages=true,room_offsets=true");
        const policies = await pg.psql(
          `select count(*) from pg_policies where schemaname = 'relay'
            and tablename in ('room_messages', 'room_offsets')`,
        );
        assert.equal(policies.trim(), "0", "no policy: no API role sees a row even if granted");
        assert.deepEqual(await rows(room), [1], "nothing changed");
      });
    } finally {
      await sql.end({ timeout: 1 });
      await first.close();
      await second.close();
      await pg.remove();
    }
  },
});

Deno.test("the room history migration applies on the embedded dev database, and its calls work there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-history-devdb-" });
  const db = await startEmbeddedPostgres({ dataDir: `${dir}/pglite` });
  const sql = postgres(db.url, { max: 2, prepare: false, onnotice: () => {}, connect_timeout: 5 });
  const a = connectDatabase(db.url);
  const b = connectDatabase(db.url);
  try {
    await sql.unsafe(await Deno.readTextFile(new URL("tests/sql/supabase_stand_in.sql", ROOT)));
    await sql`drop schema realtime cascade`;
    const { migrations } = await readMigrations(new URL("supabase/migrations", ROOT).pathname);
    const applied = await applyMigrations(sql, migrations);
    assert.ok(applied.some((migration) => migration.name === "relay_room_history"));
    const room = "public:lobby";
    const keep = { max: 20, ttlS: 3600 };
    // PGlite runs every statement in this process, one at a time: a correctness check, not a
    // latency one, so a busy machine gets time.
    const SLOW = 30_000;
    const answers = await Promise.all(
      Array.from(
        { length: 30 },
        (_, i) =>
          appendRoomMessage(i % 2 ? a : b, message(room, { id: `m-${i % 15}` }), keep, SLOW),
      ),
    );
    assert.equal(answers.filter((answer) => !answer.duplicate).length, 15);
    assert.deepEqual(
      [...new Set(answers.map((answer) => answer.offset))].sort((x, y) => x - y),
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
    const read = await readRoomHistory(b, room, { last: 3 }, keep, SLOW);
    assert.equal(read.latest, 15);
    assert.equal(read.oldest, 1);
    assert.deepEqual(read.messages.map((m) => m.offset), [13, 14, 15]);
    assert.equal(await latestOffset(a, room, SLOW), 15);
  } finally {
    await a.close();
    await b.close();
    await sql.end({ timeout: 1 });
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
