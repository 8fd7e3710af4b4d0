/**
 * The session store's SQL on a real PostgreSQL (a throwaway cluster with the
 * migrations applied by the Supabase CLI): claims, ordered writes, takeovers,
 * per-user isolation, expiry, idempotent retries, and that no API role can
 * read or write a conversation.
 */
import assert from "node:assert/strict";
import { connectDatabase } from "../../supabase/functions/_shared/db/client.ts";
import {
  type SessionRecord,
  sessionStore,
  type SessionWrite,
} from "../../supabase/functions/_shared/db/sessions.ts";
import type { StoredItem } from "../../supabase/functions/_shared/realtime/conversation.ts";
import { postgresUnavailable, startPostgres } from "../helpers/postgres.ts";

const skip = postgresUnavailable();
if (skip) console.warn(`session store tests skipped: ${skip}`);

const text = (t: string): StoredItem => ({
  type: "message",
  role: "user",
  content: [{ type: "input_text", text: t }],
});

Deno.test({
  name: "sessionStore on real PostgreSQL",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres();
    const database = connectDatabase(pg.url);
    const ttlS = 60;
    const store = sessionStore(database, ttlS);
    const t0 = Date.now();
    let n = 0;
    const sessionId = () => `test-session-${++n}-${crypto.randomUUID()}`;
    const record = (
      key: { user: string; session: string },
      conn: string,
      generation: number | null,
      at: number,
      write: SessionWrite,
    ): SessionRecord => ({ ...key, conn, generation, at, ...write });
    try {
      await t.step(
        "sessionStore.claim creates a session never seen, with nothing stored",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const state = await store.claim(key, crypto.randomUUID(), t0);
          assert.deepEqual(state, { generation: 1, config: null, items: [] });
        },
      );

      await t.step(
        "sessionStore.claim shares a statement between claims that arrive at once; the later of two on one session wins",
        async () => {
          const statements: string[] = [];
          const counted = connectDatabase(pg.url, { onStatement: (sql) => statements.push(sql) });
          try {
            const batched = sessionStore(counted, ttlS);
            const user = crypto.randomUUID();
            const stored = { user, session: sessionId() };
            const conn = crypto.randomUUID();
            const { generation } = await batched.claim(stored, conn, t0);
            await batched.write([
              record(stored, conn, generation, t0 + 1, {
                kind: "config",
                config: { voice: "marin" },
              }),
              record(stored, conn, generation, t0 + 1, { kind: "release" }),
            ]);
            const before = statements.length;
            const fresh = Array.from({ length: 6 }, () => ({ user, session: sessionId() }));
            const twice = { user, session: sessionId() };
            const [first, second] = [crypto.randomUUID(), crypto.randomUUID()];
            const states = await Promise.all([
              ...fresh.map((key) => batched.claim(key, crypto.randomUUID(), t0 + 2)),
              batched.claim(stored, crypto.randomUUID(), t0 + 2),
              batched.claim(twice, first, t0 + 2),
              batched.claim(twice, second, t0 + 3),
            ]);
            const claimsSent = statements.slice(before).filter((sql) =>
              /relay\.sessions/.test(sql)
            );
            assert.ok(
              claimsSent.length <= 3,
              `nine claims at once took ${claimsSent.length} statements`,
            );
            for (const state of states.slice(0, 6)) {
              assert.deepEqual(state, { generation: 1, config: null, items: [] });
            }
            assert.deepEqual(
              states[6]!.config,
              { voice: "marin" },
              "each claim gets its own state",
            );
            const owner = await pg.psql(
              `select owner_conn from relay.sessions where user_id = '${user}'
                and session_id = '${twice.session}'`,
            );
            assert.equal(owner.trim(), second, "the later claim owns the session");
          } finally {
            await counted.close();
          }
        },
      );

      await t.step(
        "sessionStore.write keeps config and items in order; a claim reads them back",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const first = crypto.randomUUID();
          const { generation } = await store.claim(key, first, t0);
          const report = await store.write([
            record(key, first, generation, t0 + 1, {
              kind: "config",
              config: { type: "realtime", instructions: "A" },
            }),
            record(key, first, generation, t0 + 2, {
              kind: "item",
              id: "b",
              position: 2048,
              item: text("two"),
            }),
            record(key, first, generation, t0 + 3, {
              kind: "item",
              id: "a",
              position: 1024,
              item: text("one"),
            }),
            record(key, first, generation, t0 + 4, {
              kind: "item",
              id: "c",
              position: 1536,
              item: text("between"),
            }),
            record(key, first, generation, t0 + 5, {
              kind: "item",
              id: "d",
              position: 4096,
              item: text("gone"),
            }),
            record(key, first, generation, t0 + 6, { kind: "delete", id: "d" }),
            record(key, first, generation, t0 + 7, {
              kind: "item",
              id: "b",
              position: 2048,
              item: text("two, updated"),
            }),
          ]);
          assert.deepEqual(report, { owning: [first], replaced: [], missing: [] });
          const second = crypto.randomUUID();
          const state = await store.claim(key, second, t0 + 10);
          assert.deepEqual(state, {
            generation: 1,
            config: { type: "realtime", instructions: "A" },
            items: [
              { id: "a", position: 1024, item: text("one") },
              { id: "c", position: 1536, item: text("between") },
              { id: "b", position: 2048, item: text("two, updated") },
            ],
          });
          // The first connection learns it was replaced at its next write or check.
          const late = await store.write([
            record(key, first, generation, t0 + 20, {
              kind: "item",
              id: "e",
              position: 8192,
              item: text("after the takeover"),
            }),
          ]);
          assert.deepEqual(late, { owning: [], replaced: [first], missing: [] });
          const checked = await store.check([{ ...key, conn: first }], t0 + 21, t0);
          assert.deepEqual(checked, { owning: [], replaced: [first], missing: [] });
          const again = await store.claim(key, crypto.randomUUID(), t0 + 30);
          assert.deepEqual(again.items.map((i) => i.id), ["a", "c", "b"]);
        },
      );

      await t.step(
        "sessionStore keeps a previous owner's writes made before the takeover",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const old = crypto.randomUUID();
          const { generation } = await store.claim(key, old, t0);
          await store.claim(key, crypto.randomUUID(), t0 + 100);
          // Finished at +50 on the old connection, written after the new one took over.
          await store.write([
            record(key, old, generation, t0 + 50, {
              kind: "item",
              id: "late",
              position: 1024,
              item: text("finished before"),
            }),
            record(key, old, generation, t0 + 150, {
              kind: "item",
              id: "zombie",
              position: 2048,
              item: text("after"),
            }),
            record(key, old, generation, t0 + 160, { kind: "release" }),
          ]);
          const state = await store.claim(key, crypto.randomUUID(), t0 + 200);
          assert.deepEqual(state.items.map((i) => i.id), ["late"]);
        },
      );

      await t.step(
        "sessionStore stores text holding U+0000 (as U+FFFD) instead of failing the batch",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const conn = crypto.randomUUID();
          const { generation } = await store.claim(key, conn, t0);
          await store.write([
            record(key, conn, generation, t0 + 1, {
              kind: "item",
              id: "nul\0id",
              position: 1,
              item: text("before\0after"),
            }),
          ]);
          const state = await store.claim(key, crypto.randomUUID(), t0 + 2);
          assert.deepEqual(state.items, [
            { id: "nul\uFFFDid", position: 1, item: text("before\uFFFDafter") },
          ]);
        },
      );

      await t.step("sessionStore keeps the same id of two users apart", async () => {
        const session = sessionId();
        const alice = { user: crypto.randomUUID(), session };
        const bob = { user: crypto.randomUUID(), session };
        const conn = crypto.randomUUID();
        const { generation } = await store.claim(alice, conn, t0);
        await store.write([
          record(alice, conn, generation, t0 + 1, { kind: "config", config: { type: "realtime" } }),
          record(alice, conn, generation, t0 + 2, {
            kind: "item",
            id: "a",
            position: 1,
            item: text("alice's"),
          }),
        ]);
        const bobs = await store.claim(bob, crypto.randomUUID(), t0 + 3);
        assert.deepEqual(bobs, { generation: 1, config: null, items: [] });
        // Bob's claim did not touch Alice's session.
        assert.deepEqual(await store.check([{ ...alice, conn }], t0 + 4, t0), {
          owning: [conn],
          replaced: [],
          missing: [],
        });
      });

      await t.step(
        "sessionStore gives up expired state at the next claim (a fresh generation); a sweep deletes it",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const conn = crypto.randomUUID();
          const { generation } = await store.claim(key, conn, t0);
          await store.write([
            record(key, conn, generation, t0 + 1, { kind: "config", config: { type: "realtime" } }),
            record(key, conn, generation, t0 + 2, {
              kind: "item",
              id: "a",
              position: 1,
              item: text("old"),
            }),
            record(key, conn, generation, t0 + 3, { kind: "release" }),
          ]);
          // Still there one millisecond before its expiry...
          const before = await store.claim(key, crypto.randomUUID(), t0 + 3 + ttlS * 1000 - 1);
          assert.equal(before.items.length, 1);
          const releasedAt = t0 + 3 + ttlS * 1000 - 1;
          // ...and gone from its expiry on.
          const after = await store.claim(key, crypto.randomUUID(), releasedAt + ttlS * 1000);
          assert.deepEqual(after, { generation: 2, config: null, items: [] });
          // The expired items are deleted by that claim, not left for a sweep.
          const left = await pg.psql(
            `select count(*) from relay.session_items where user_id = '${key.user}'`,
          );
          assert.equal(left.trim(), "0");
          // A sweep deletes the session itself once it expires in turn.
          const deleted = await store.sweep(releasedAt + 3 * ttlS * 1000);
          assert.ok(deleted >= 1);
          const rows = await pg.psql(
            `select count(*) from relay.sessions where user_id = '${key.user}'`,
          );
          assert.equal(rows.trim(), "0");
        },
      );

      await t.step("sessionStore.sweep deletes at most 1000 expired sessions a call", async () => {
        const user = crypto.randomUUID();
        await pg.psql(
          `insert into relay.sessions (user_id, session_id, active_at, expires_at)
             select '${user}', 'sweep-test-session-' || lpad(n::text, 6, '0'), now(), now()
               from generate_series(1, 1500) n`,
        );
        const count = () =>
          pg.psql(`select count(*) from relay.sessions where user_id = '${user}'`).then(Number);
        assert.equal(await store.sweep(Date.now() + 1000), 1000);
        assert.equal(await count(), 500);
        assert.ok((await store.sweep(Date.now() + 1000)) >= 500);
        assert.equal(await count(), 0);
      });

      await t.step(
        "sessionStore.write is idempotent: a retried batch changes nothing",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const conn = crypto.randomUUID();
          const batch = [
            record(key, conn, null, t0, { kind: "restart" }),
            record(key, conn, null, t0 + 1, {
              kind: "item",
              id: "a",
              position: 1024,
              item: text("one"),
            }),
            record(key, conn, null, t0 + 2, { kind: "config", config: { type: "realtime" } }),
          ];
          await store.write(batch);
          const dump = () =>
            pg.psql(
              `select s.generation || ':' || s.config::text || ':' ||
              (select string_agg(i.item_id || '@' || i.generation, ',') from relay.session_items i
                where i.user_id = s.user_id and i.session_id = s.session_id)
             from relay.sessions s where s.user_id = '${key.user}'`,
            );
          const once = await dump();
          assert.deepEqual(await store.write(batch), { owning: [conn], replaced: [], missing: [] });
          assert.equal(await dump(), once);
          assert.match(once, /^1:\{"type": "realtime"\}:a@1/);
        },
      );

      await t.step(
        "sessionStore restart replaces stored state, unless a newer claim came first",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const old = crypto.randomUUID();
          const { generation } = await store.claim(key, old, t0);
          await store.write([
            record(key, old, generation, t0 + 1, {
              kind: "item",
              id: "old",
              position: 1,
              item: text("old"),
            }),
          ]);
          const fresh = crypto.randomUUID();
          await store.write([
            record(key, fresh, null, t0 + 10, { kind: "restart" }),
            record(key, fresh, null, t0 + 11, {
              kind: "item",
              id: "new",
              position: 1,
              item: text("new"),
            }),
          ]);
          const state = await store.claim(key, crypto.randomUUID(), t0 + 20);
          assert.deepEqual(state.items.map((i) => i.id), ["new"]);
          assert.equal(state.generation, 2);
          const rows = await pg.psql(
            `select string_agg(item_id, ',') from relay.session_items where user_id = '${key.user}'`,
          );
          assert.equal(rows.trim(), "new", "the replaced conversation's items are deleted");
          // A restart from a connection older than the current owner's claim loses.
          const stale = crypto.randomUUID();
          const report = await store.write([
            record(key, stale, null, t0 + 15, { kind: "restart" }),
          ]);
          assert.deepEqual(report, { owning: [], replaced: [stale], missing: [] });
        },
      );

      await t.step(
        "sessionStore.check renews live sessions and reports vanished ones",
        async () => {
          const key = { user: crypto.randomUUID(), session: sessionId() };
          const conn = crypto.randomUUID();
          await store.claim(key, conn, t0);
          const expiry = () =>
            pg.psql(
              `select (extract(epoch from expires_at) * 1000)::bigint from relay.sessions
              where user_id = '${key.user}'`,
            );
          const claimedExpiry = Number(await expiry());
          // Renewed only when last renewed before renewBefore.
          await store.check([{ ...key, conn }], t0 + 5000, t0 - 1);
          assert.equal(Number(await expiry()), claimedExpiry);
          await store.check([{ ...key, conn }], t0 + 5000, t0 + 1);
          assert.equal(Number(await expiry()), t0 + 5000 + ttlS * 1000);
          await pg.psql(`delete from relay.sessions where user_id = '${key.user}'`);
          assert.deepEqual(await store.check([{ ...key, conn }], t0 + 6000, t0), {
            owning: [],
            replaced: [],
            missing: [conn],
          });
        },
      );

      await t.step("no API role can read or write a conversation (RLS on, no grants)", async () => {
        for (const role of ["anon", "authenticated", "service_role"]) {
          for (const table of ["relay.sessions", "relay.session_items"]) {
            await assert.rejects(
              pg.psql(`set role ${role}; select count(*) from ${table}`),
              /permission denied/,
              `${role} reads ${table}`,
            );
            await assert.rejects(
              pg.psql(`set role ${role}; delete from ${table}`),
              /permission denied/,
              `${role} deletes from ${table}`,
            );
          }
          await assert.rejects(
            pg.psql(`set role ${role}; select relay.delete_expired_sessions()`),
            /permission denied/,
          );
          await assert.rejects(
            pg.psql(`set role ${role}; select * from relay.write_sessions('[]', 60)`),
            /permission denied/,
          );
        }
        const rls = await pg.psql(
          `select string_agg(relname || '=' || relrowsecurity, ',' order by relname) from pg_class
            where relnamespace = 'relay'::regnamespace and relname in ('sessions', 'session_items')`,
        );
        assert.equal(rls.trim(), "session_items=true,sessions=true");
      });
    } finally {
      await database.close();
      await pg.remove();
    }
  },
});
