/**
 * Room access in `database` mode on a real PostgreSQL (a throwaway cluster
 * with Supabase's stand-in and the migrations applied by the Supabase CLI):
 * the default relay.room_access answered through readRoomAccess exactly as
 * the relay asks it (as the user, one round trip), an app's replacement,
 * room_members under row level security, and the restrictive policy that
 * keeps browsers off the relay's Realtime channels whatever the app's own
 * policies allow, checked the way Realtime Authorization checks a join.
 * Then the same migrations and check on the embedded dev database (PGlite)
 * without a realtime schema.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { connectDatabase, DatabaseError } from "../../supabase/functions/_shared/db/client.ts";
import {
  readRoomAccess,
  type RoomAccess,
  roomAccessStatement,
} from "../../supabase/functions/_shared/db/rooms.ts";
import { startEmbeddedPostgres } from "../../dev/db/embedded.ts";
import { applyMigrations, readMigrations } from "../../dev/db/migrations.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";

const ROOT = new URL("../../", import.meta.url);
const MIGRATION = new URL("supabase/migrations/20261207000100_relay_rooms.sql", ROOT);

const skip = postgresUnavailable();
if (skip) console.warn(`rooms access tests skipped: ${skip}`);

/** The verified payload of a Supabase Auth access token for `sub`. */
function userClaims(sub: string): Record<string, unknown> {
  return {
    iss: "https://project.supabase.co/auth/v1",
    sub,
    aud: "authenticated",
    role: "authenticated",
    exp: Math.floor(Date.now() / 1000) + 3600,
    app_metadata: { provider: "email" },
    is_anonymous: false,
  };
}

/** A client like the relay's (no prepared statements) for the test's own SQL. */
function client(url: string): postgres.Sql {
  return postgres(url, { max: 2, prepare: false, onnotice: () => {}, connect_timeout: 5 });
}

/**
 * Runs `work` in a transaction as PostgREST would for a request with
 * `claims` (role set, claims set), and rolls it back.
 */
async function asRole<T>(
  sql: postgres.Sql,
  role: string,
  claims: Record<string, unknown> | null,
  work: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<T> {
  let result: T;
  const rollback = new Error("rollback");
  await sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true),
      set_config('request.jwt.claims', ${claims ? JSON.stringify(claims) : ""}, true)`;
    result = await work(tx);
    throw rollback;
  }).catch((error) => {
    if (error !== rollback) throw error;
  });
  return result!;
}

/**
 * Realtime Authorization's check of a private channel join, as
 * supabase/realtime (lib/realtime/tenants/authorization.ex) runs it: read:
 * rows for the topic are inserted by Realtime itself, then selected as the
 * user with `realtime.topic` set; write: a row inserted as the user (under a
 * savepoint); each in a transaction rolled back.
 */
async function realtimeJoin(
  sql: postgres.Sql,
  role: string,
  claims: Record<string, unknown>,
  topic: string,
): Promise<{ read: boolean; write: boolean }> {
  const read = await rolledBack(sql, async (tx) => {
    const inserted = await tx<{ id: string }[]>`
      insert into realtime.messages (topic, extension)
        values (${topic}, 'broadcast'), (${topic}, 'presence')
        returning id`;
    await setRealtimeConfig(tx, role, claims, topic);
    const seen = await tx<{ id: string }[]>`
      select id from realtime.messages
        where topic = ${topic} and id in ${tx(inserted.map((row) => row.id))}`;
    return seen.length === 2;
  });
  const write = await rolledBack(sql, async (tx) => {
    await setRealtimeConfig(tx, role, claims, topic);
    try {
      await tx.savepoint((sp) =>
        sp`insert into realtime.messages (topic, extension) values (${topic}, 'broadcast')`
      );
      return true;
    } catch (error) {
      // Realtime reads insufficient_privilege (RLS refused the row) as "may not write".
      if ((error as { code?: string }).code === "42501") return false;
      throw error;
    }
  });
  return { read, write };
}

function setRealtimeConfig(
  tx: postgres.TransactionSql,
  role: string,
  claims: Record<string, unknown>,
  topic: string,
) {
  return tx`select set_config('role', ${role}, true),
    set_config('realtime.topic', ${topic}, true),
    set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
    set_config('request.headers', '{}', true)`;
}

async function rolledBack<T>(
  sql: postgres.Sql,
  work: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<T> {
  let result: T;
  const rollback = new Error("rollback");
  await sql.begin(async (tx) => {
    result = await work(tx);
    throw rollback;
  }).catch((error) => {
    if (error !== rollback) throw error;
  });
  return result!;
}

Deno.test({
  name: "relay.room_access and relay.room_members on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const statements: string[] = [];
    const database = connectDatabase(pg.url, {
      max: 1,
      onStatement: (statement) => statements.push(statement),
    });
    const sql = client(pg.url);
    const alice = crypto.randomUUID();
    const bob = crypto.randomUUID();
    const carol = crypto.randomUUID();
    try {
      await sql`
        insert into relay.room_members (room, user_id, access) values
          ('team:red', ${alice}, 'write'),
          ('team:red', ${bob}, 'read'),
          ('team:blue', ${bob}, 'write'),
          ('lobby', ${carol}, 'read')`;

      await t.step("readRoomAccess answers the default rules, as the user", async () => {
        const anonKey = { iss: "supabase", ref: "project", role: "anon", exp: 1 << 31 };
        const serviceKey = { iss: "supabase", ref: "project", role: "service_role" };
        const cases: [string, Record<string, unknown>, string, RoomAccess | null][] = [
          ["public room, any signed-in user", userClaims(alice), "public:lobby", "write"],
          ["public room, another user", userClaims(carol), "public:lobby", "write"],
          ["public room with colons", userClaims(bob), "public:a:b:c", "write"],
          ["own user room", userClaims(alice), `user:${alice}`, "write"],
          ["own user room with a suffix", userClaims(alice), `user:${alice}:inbox`, "write"],
          ["own user room, suffix with colons", userClaims(alice), `user:${alice}:a:b`, "write"],
          ["someone else's user room", userClaims(bob), `user:${alice}`, null],
          ["someone else's user room with a suffix", userClaims(bob), `user:${alice}:x`, null],
          ["a prefix of one's id is another user", userClaims(alice), `user:${alice}x`, null],
          ["user room of nobody", userClaims(alice), "user:lobby", null],
          ["member with write", userClaims(alice), "team:red", "write"],
          ["member with read", userClaims(bob), "team:red", "read"],
          ["member of another room", userClaims(bob), "team:blue", "write"],
          ["no row", userClaims(carol), "team:red", null],
          ["no row in a room nobody is in", userClaims(alice), "team:green", null],
          ["rooms are case-sensitive", userClaims(alice), "Team:red", null],
          ["the anon key is nobody", anonKey, "public:lobby", null],
          ["the anon key is no member", anonKey, "team:red", null],
          ["the service-role key is nobody", serviceKey, "public:lobby", null],
          ["no claims at all", {}, "public:lobby", null],
          ["an empty sub", { ...userClaims(alice), sub: "" }, "public:lobby", null],
          [
            "claims for a user but role anon",
            { ...userClaims(alice), role: "anon" },
            "team:red",
            "write",
          ],
        ];
        for (const [name, claims, room, expected] of cases) {
          const before = statements.length;
          assert.equal(await readRoomAccess(database, claims, room), expected, name);
          assert.equal(statements.length - before, 1, `${name}: one round trip`);
        }
      });

      await t.step("readRoomAccess for a third-party subject that is not a UUID", async () => {
        const sub = "user_2abcDEF:with'quote\\and\"more";
        const claims = { ...userClaims(sub) };
        const cases: [string, RoomAccess | null][] = [
          ["public:lobby", "write"],
          [`user:${sub}`, "write"],
          [`user:${sub}:inbox`, "write"],
          [`user:${alice}`, null],
          ["team:red", null],
        ];
        for (const [room, expected] of cases) {
          assert.equal(await readRoomAccess(database, claims, room), expected, room);
        }
      });

      await t.step("readRoomAccess sends values as literals that read back exactly", async () => {
        const room = "x'); drop table relay.room_members; --\\'";
        assert.equal(await readRoomAccess(database, userClaims(alice), room), null);
        assert.equal(await readRoomAccess(database, userClaims(alice), "nul\0room"), null);
        const echoed = await database.run((s) =>
          s.unsafe(
            roomAccessStatement(
              { sub: "a'b\\c", note: "\u00e9\u{1F600}\n\t" },
              room,
            ).replace("relay.room_access(", "("),
          )
        ) as unknown as { access: string }[][];
        assert.equal(echoed.at(-1)?.[0]?.access, room);
        const [counted] = await sql<{ count: number }[]>`
          select count(*)::int as count from relay.room_members`;
        assert.equal(counted?.count, 4);
      });

      await t.step(
        "readRoomAccess leaves the pooled connection as it found it (role, claims)",
        async () => {
          await readRoomAccess(database, userClaims(alice), "team:red");
          const [after] = await database.run((s) =>
            s<{ role: string; claims: string | null }[]>`
              select current_user as role,
                     coalesce(current_setting('request.jwt.claims', true), '') as claims`
          );
          assert.deepEqual(after, { role: "postgres", claims: "" });
          // The role is set for the call itself: the function sees the user's role.
          await sql`create function public.rooms_probe_role(room text) returns text
            language sql stable as $$ select current_user::text || ':' || auth.role() $$`;
          await sql`grant execute on function public.rooms_probe_role(text) to authenticated`;
          const probe = await database.run((s) =>
            s.unsafe(
              roomAccessStatement(userClaims(alice), "r").replace(
                "relay.room_access(",
                "public.rooms_probe_role(",
              ),
            )
          ) as unknown as { access: string }[][];
          assert.equal(probe.at(-1)?.[0]?.access, "authenticated:authenticated");
        },
      );

      await t.step("readRoomAccess rejects with DatabaseError when the call fails", async () => {
        const closed = connectDatabase(pg.url);
        await closed.close();
        await assert.rejects(
          readRoomAccess(closed, userClaims(alice), "public:x"),
          (error) => error instanceof DatabaseError,
        );
        // A statement that fails inside the transaction: the connection is usable after.
        const broken = connectDatabase(pg.url, { max: 1 });
        try {
          await sql`create function public.rooms_probe_fail(room text) returns text
            language plpgsql as $$ begin raise exception 'app rule failed'; end $$`;
          await assert.rejects(
            broken.run((s) =>
              s.unsafe(
                roomAccessStatement(userClaims(alice), "r").replace(
                  "relay.room_access(",
                  "public.rooms_probe_fail(",
                ),
              )
            ),
            (error) => error instanceof DatabaseError && /app rule failed/.test(error.message),
          );
          assert.equal(await readRoomAccess(broken, userClaims(alice), "team:red"), "write");
          const [row] = await broken.run((s) => s`select current_user as role`);
          assert.equal(row?.role, "postgres");
        } finally {
          await broken.close();
        }
        await assert.rejects(
          readRoomAccess(database, userClaims(alice), "team:red", 0),
          (error) => error instanceof DatabaseError && error.kind === "timeout",
        );
      });

      await t.step(
        "room_members: a signed-in user reads only their own rows and writes nothing",
        async () => {
          const mine = await asRole(
            sql,
            "authenticated",
            userClaims(bob),
            (tx) =>
              tx<{ room: string; access: string }[]>`
              select room, access from relay.room_members order by room`,
          );
          assert.deepEqual([...mine], [
            { room: "team:blue", access: "write" },
            { room: "team:red", access: "read" },
          ]);
          const others = await asRole(
            sql,
            "authenticated",
            userClaims(bob),
            (tx) => tx`select 1 from relay.room_members where user_id <> ${bob}`,
          );
          assert.equal(others.length, 0);
          const denied = [
            `insert into relay.room_members (room, user_id, access) values ('team:red', '${carol}', 'write')`,
            `insert into relay.room_members (room, user_id, access) values ('x', '${bob}', 'write')`,
            "update relay.room_members set access = 'write'",
            `update relay.room_members set access = 'write' where user_id = '${bob}'`,
            "delete from relay.room_members",
            `delete from relay.room_members where user_id = '${bob}'`,
          ];
          for (const role of ["authenticated", "anon", "service_role"]) {
            const claims = role === "authenticated" ? userClaims(bob) : { role };
            for (const statement of denied) {
              await assert.rejects(
                asRole(sql, role, claims, (tx) => tx.unsafe(statement)),
                /permission denied/,
                `${role}: ${statement}`,
              );
            }
          }
          for (const role of ["anon", "service_role"]) {
            await assert.rejects(
              asRole(sql, role, { role }, (tx) => tx`select count(*) from relay.room_members`),
              /permission denied/,
              role,
            );
          }
          const [counted] = await sql<{ count: number }[]>`
            select count(*)::int as count from relay.room_members`;
          assert.equal(counted?.count, 4, "nothing changed");
        },
      );

      await t.step("room_members refuses rows the relay could never use", async () => {
        for (
          const [room, access] of [
            ["team:red", "admin"],
            ["", "read"],
            ["has space", "read"],
            ["x".repeat(101), "read"],
          ]
        ) {
          await assert.rejects(
            sql`insert into relay.room_members (room, user_id, access)
                  values (${room!}, ${carol}, ${access!})`,
            /check constraint/,
            `${room} ${access}`,
          );
        }
      });

      await t.step(
        "relay.room_access: only authenticated may call it, security definer with a fixed search_path",
        async () => {
          const rows = await sql<{ role: string; allowed: boolean }[]>`
            select r as role, has_function_privilege(r, 'relay.room_access(text)', 'execute') as allowed
              from unnest(array['anon', 'authenticated', 'service_role']) as r`;
          assert.deepEqual(
            Object.fromEntries(rows.map((row) => [row.role, row.allowed])),
            { anon: false, authenticated: true, service_role: false },
          );
          const [fn] = await sql<{ definer: boolean; config: string[] | null }[]>`
            select prosecdef as definer, proconfig as config from pg_proc
              where oid = 'relay.room_access(text)'::regprocedure`;
          assert.equal(fn?.definer, true);
          assert.equal(String(fn?.config), 'search_path=""');
          await assert.rejects(
            asRole(sql, "anon", { role: "anon" }, (tx) => tx`select relay.room_access('public:x')`),
            /permission denied/,
          );
          // It reads room_members whatever the member-read policy says.
          await sql`drop policy "users read their own room memberships" on relay.room_members`;
          try {
            assert.equal(await readRoomAccess(database, userClaims(bob), "team:red"), "read");
          } finally {
            await sql`create policy "users read their own room memberships" on relay.room_members
              for select to authenticated using (user_id = (select auth.uid()))`;
          }
        },
      );

      await t.step(
        "realtime.messages: browsers cannot join or send on relay:room:*, whatever the app allows",
        async () => {
          const [policy] = await sql<{ permissive: string; roles: string[]; cmd: string }[]>`
            select permissive, roles::text[] as roles, cmd from pg_policies
              where schemaname = 'realtime' and tablename = 'messages'`;
          assert.deepEqual(policy, {
            permissive: "RESTRICTIVE",
            roles: ["anon", "authenticated"],
            cmd: "ALL",
          });
          const user = userClaims(alice);
          const anon = { role: "anon", iss: "supabase" };
          const none = { read: false, write: false };
          const all = { read: true, write: true };

          // Restrictive alone grants nothing: without an app policy, nobody joins anything.
          assert.deepEqual(await realtimeJoin(sql, "authenticated", user, "app:x"), none);

          // The app lets every browser do everything on every channel...
          await sql`create policy "app: everyone uses every channel" on realtime.messages
            for all to anon, authenticated using (true) with check (true)`;
          const cases: [string, Record<string, unknown>, string, typeof all][] = [
            ["authenticated", user, "app:x", all],
            ["anon", anon, "app:x", all],
            ["authenticated", user, "room:x", all],
            ["authenticated", user, "relay:rooms", all],
            ["authenticated", user, "relay:room:x", none],
            ["authenticated", user, "relay:room:public:lobby", none],
            ["anon", anon, "relay:room:x", none],
            // ...but the relay's own key is untouched (service_role bypasses RLS).
            ["service_role", { role: "service_role" }, "relay:room:x", all],
          ];
          for (const [role, claims, topic, expected] of cases) {
            assert.deepEqual(
              await realtimeJoin(sql, role, claims, topic),
              expected,
              `${role} on ${topic}`,
            );
          }

          // Stored messages of relay channels stay unreadable by other means too.
          await sql`insert into realtime.messages (topic, extension, event, payload, private)
            values ('relay:room:x', 'broadcast', 'chat', '{"text":"secret"}', true),
                   ('app:x', 'broadcast', 'chat', '{"text":"hello"}', true)`;
          for (const topic of [null, "app:x"]) {
            const seen = await asRole(sql, "authenticated", user, async (tx) => {
              if (topic) await tx`select set_config('realtime.topic', ${topic}, true)`;
              return await tx<{ topic: string }[]>`select topic from realtime.messages`;
            });
            assert.deepEqual([...seen], [{ topic: "app:x" }], `realtime.topic = ${topic}`);
          }
          // Nor can a row be moved onto a relay channel.
          await assert.rejects(
            asRole(
              sql,
              "authenticated",
              user,
              (tx) => tx`update realtime.messages set topic = 'relay:room:x' where topic = 'app:x'`,
            ),
            /row-level security/,
          );
        },
      );

      await t.step(
        "the migration's realtime block may be run again: it adds no second policy",
        async () => {
          const text = await Deno.readTextFile(MIGRATION);
          const block = text.slice(text.lastIndexOf("\ndo $$"));
          await pg.psql(block);
          await pg.psql(block);
          const [counted] = await sql<{ count: number }[]>`
            select count(*)::int as count from pg_policies
              where schemaname = 'realtime' and tablename = 'messages'
                and permissive = 'RESTRICTIVE'`;
          assert.equal(counted?.count, 1);
        },
      );

      await t.step("an app's create or replace of relay.room_access is honoured", async () => {
        // The app's own table, under its own RLS; the replacement runs as the user
        // (security invoker), so those policies decide.
        await sql.unsafe(`
          create table public.documents (id text primary key, owner uuid not null);
          alter table public.documents enable row level security;
          create policy "owners see their documents" on public.documents
            for select to authenticated using (owner = (select auth.uid()));
          grant select on public.documents to authenticated;
          insert into public.documents values ('d1', '${alice}'), ('d2', '${bob}');

          create or replace function relay.room_access(room text) returns text
          language plpgsql stable set search_path = '' as $$
          begin
            if room = 'announcements' then
              return case when auth.jwt() -> 'app_metadata' ->> 'role' = 'admin'
                          then 'write' else 'read' end;
            end if;
            if starts_with(room, 'doc:') then
              -- RLS hides other people's documents: the user's own rows only.
              return (select 'write' from public.documents d where d.id = substr(room, 5));
            end if;
            if room = 'odd' then
              return 'admin';
            end if;
            return null;
          end $$;
        `);
        const admin = { ...userClaims(carol), app_metadata: { role: "admin" } };
        const cases: [string, Record<string, unknown>, string, RoomAccess | null][] = [
          ["admin posts announcements", admin, "announcements", "write"],
          ["others read them", userClaims(bob), "announcements", "read"],
          ["the owner's document", userClaims(alice), "doc:d1", "write"],
          ["someone else's document, hidden by RLS", userClaims(alice), "doc:d2", null],
          ["the default rules are gone", userClaims(alice), "public:lobby", null],
          ["the default rules are gone (members)", userClaims(alice), "team:red", null],
          ["an answer other than read or write is no access", userClaims(alice), "odd", null],
        ];
        for (const [name, claims, room, expected] of cases) {
          assert.equal(await readRoomAccess(database, claims, room), expected, name);
        }
        // create or replace kept the migration's grants.
        const [row] = await sql<{ anon: boolean; authenticated: boolean }[]>`
          select has_function_privilege('anon', 'relay.room_access(text)', 'execute') as anon,
                 has_function_privilege('authenticated', 'relay.room_access(text)', 'execute')
                   as authenticated`;
        assert.deepEqual(row, { anon: false, authenticated: true });
      });
    } finally {
      await sql.end({ timeout: 1 });
      await database.close();
      await pg.remove();
    }
  },
});

Deno.test("the rooms migration applies on the embedded dev database without a realtime schema, and readRoomAccess works there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-rooms-devdb-" });
  const db = await startEmbeddedPostgres({ dataDir: `${dir}/pglite` });
  const sql = client(db.url);
  const database = connectDatabase(db.url);
  try {
    await sql.unsafe(await Deno.readTextFile(new URL("tests/sql/supabase_stand_in.sql", ROOT)));
    await sql`drop schema realtime cascade`;
    const { migrations } = await readMigrations(new URL("supabase/migrations", ROOT).pathname);
    const applied = await applyMigrations(sql, migrations);
    assert.ok(applied.some((migration) => migration.name === "relay_rooms"));
    const alice = crypto.randomUUID();
    await sql`insert into relay.room_members values ('team:red', ${alice}, 'read')`;
    const cases: [string, RoomAccess | null][] = [
      ["public:lobby", "write"],
      [`user:${alice}`, "write"],
      ["team:red", "read"],
      ["team:blue", null],
    ];
    for (const [room, expected] of cases) {
      assert.equal(await readRoomAccess(database, userClaims(alice), room), expected, room);
    }
  } finally {
    await database.close();
    await sql.end({ timeout: 1 });
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
