/**
 * The metering schema as a signed-in user meets it: PostgREST's way in (role
 * `authenticated` with `request.jwt.claims` set, as supabase-js `rpc` and
 * `from()` reach it), on a real PostgreSQL with the migration applied by the
 * Supabase CLI. Users read their own rows only, write nothing, and
 * public.relay_usage_summary() agrees with what the relay recorded.
 */
import assert from "node:assert/strict";
import { meteringEnv, say, usageRows } from "../helpers/metering.ts";
import {
  applyMigrations,
  postgresUnavailable,
  startPostgres,
  type TestPostgres,
} from "../helpers/postgres.ts";
import { startRelay } from "../helpers/relay_harness.ts";
import { TestClient } from "../helpers/ws_client.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";

const skip = postgresUnavailable();

/**
 * What a Supabase project grants the API roles on everything created in
 * `public` (its default privileges), so that the migration's revokes are
 * proven against them rather than against plain PostgreSQL's narrower defaults.
 */
const SUPABASE_DEFAULT_PRIVILEGES = `
  alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
  alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
  alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
`;

/** Runs `sql` the way PostgREST does for a request with `claims`: one transaction, role set. */
function as(pg: TestPostgres, role: string, claims: Record<string, unknown> | null, sql: string) {
  const set = claims === null
    ? ""
    : `select set_config('request.jwt.claims', '${JSON.stringify(claims)}', true);`;
  return pg.psql(`begin; set local role ${role}; ${set} ${sql}; commit;`)
    // psql prints the set_config result first; the answer is the last line.
    .then((out) => out.trim().split("\n").at(-1) ?? "");
}

Deno.test({
  name: "metering schema under row level security",
  ignore: skip !== null,
  fn: async (t) => {
    const pg = await startPostgres({ migrate: false });
    const standIn = new URL("../sql/supabase_stand_in.sql", import.meta.url);
    await pg.psql(await Deno.readTextFile(standIn));
    await pg.psql(SUPABASE_DEFAULT_PRIVILEGES);
    await applyMigrations(pg.url);
    const alice = crypto.randomUUID();
    const bob = crypto.randomUUID();
    const aliceClaims = { sub: alice, role: "authenticated" };
    try {
      await pg.psql(`
        insert into relay.usage (user_id, conn, model, event_id, input_tokens, output_tokens,
                                 total_tokens, cost_micros, details)
          values ('${alice}', gen_random_uuid(), 'gpt-realtime', 'resp_a1', 1, 2, 3, 100, '{}'),
                 ('${alice}', gen_random_uuid(), 'gpt-realtime', 'resp_a2', 1, 2, 3, 200, '{}'),
                 ('${bob}', gen_random_uuid(), 'gpt-realtime', 'resp_b1', 1, 2, 3, 999, '{}');
        insert into relay.spend (user_id, period, period_start, spent_micros)
          values ('${alice}', 'day', date_trunc('day', now(), 'UTC'), 300),
                 ('${bob}', 'day', date_trunc('day', now(), 'UTC'), 999);
        insert into relay.budgets (user_id, limit_micros) values ('${alice}', 5000), ('${bob}', 1);
        insert into relay.defaults (limit_micros, period) values (1000, 'day');
        insert into relay.leases (conn, user_id, instance, expires_at)
          values (gen_random_uuid(), '${alice}', gen_random_uuid(), now() + interval '30 s');
      `);

      await t.step("a signed-in user reads only their own usage, spend and budget", async () => {
        const table: [string, string][] = [
          ["select count(*) || ':' || sum(cost_micros) from relay.usage", "2:300"],
          [
            "select string_agg(event_id, ',' order by event_id) from relay.usage",
            "resp_a1,resp_a2",
          ],
          ["select count(*) || ':' || sum(spent_micros) from relay.spend", "1:300"],
          ["select count(*) || ':' || max(limit_micros) from relay.budgets", "1:5000"],
          ["select count(*) from relay.usage where user_id <> auth.uid()", "0"],
          ["select limit_micros || ':' || period from relay.defaults", "1000:day"],
        ];
        for (const [sql, expected] of table) {
          assert.equal(await as(pg, "authenticated", aliceClaims, sql), expected, sql);
        }
      });

      await t.step("a signed-in user writes nothing and cannot see leases", async () => {
        const denied = [
          `insert into relay.usage (user_id, conn, model, event_id, cost_micros, details)
             values ('${alice}', gen_random_uuid(), 'm', 'forged', 0, '{}')`,
          "update relay.usage set cost_micros = 0",
          "delete from relay.usage",
          `insert into relay.budgets (user_id, limit_micros) values ('${alice}', null)`,
          "update relay.budgets set limit_micros = null",
          "update relay.spend set spent_micros = 0",
          "delete from relay.spend",
          "update relay.defaults set limit_micros = null",
          "select count(*) from relay.leases",
          `select * from relay.admit('${alice}', gen_random_uuid(), gen_random_uuid(), 'day',
             now(), null, null, 30)`,
          "select * from relay.refresh(gen_random_uuid(), '{}', '{}', '{}', 'day', now(), null, null)",
        ];
        for (const sql of denied) {
          await assert.rejects(as(pg, "authenticated", aliceClaims, sql), /permission denied/, sql);
        }
        assert.equal(
          await pg.psql("select count(*) from relay.usage where event_id = 'forged'"),
          "0\n",
        );
      });

      await t.step("anon and service_role neither read nor write metering", async () => {
        // The default privileges are in force here: a new public function is anyone's...
        await pg.psql(
          "create function public.relay_probe() returns int language sql as 'select 1'",
        );
        assert.equal(
          await pg.psql("select has_function_privilege('anon', 'public.relay_probe()', 'execute')"),
          "t\n",
        );
        // ...but the migration took the summary back from everyone except signed-in users.
        for (
          const [role, allowed] of [["anon", "f"], ["service_role", "f"], ["authenticated", "t"]]
        ) {
          assert.equal(
            await pg.psql(
              `select has_function_privilege('${role}', 'public.relay_usage_summary()', 'execute')`,
            ),
            `${allowed}\n`,
            role,
          );
        }
        for (const role of ["anon", "service_role"]) {
          for (
            const sql of [
              "select count(*) from relay.usage",
              `insert into relay.budgets (user_id, limit_micros) values ('${bob}', null)`,
              "select * from public.relay_usage_summary()",
            ]
          ) {
            await assert.rejects(
              as(pg, role, { role }, sql),
              /permission denied/,
              `${role}: ${sql}`,
            );
          }
        }
      });

      await t.step(
        "relay_usage_summary gives the caller's period, spend, limit and remainder",
        async () => {
          const summary = (sub: string) =>
            as(
              pg,
              "authenticated",
              { sub, role: "authenticated" },
              `select json_build_object('period_start', period_start = date_trunc('day', now(), 'UTC'),
                'spent', spent_micros, 'limit', limit_micros, 'remaining', remaining_micros)
               from public.relay_usage_summary()`,
            ).then(JSON.parse);
          assert.deepEqual(await summary(alice), {
            period_start: true,
            spent: 300,
            limit: 5000,
            remaining: 4700,
          });
          assert.deepEqual(await summary(bob), {
            period_start: true,
            spent: 999,
            limit: 1,
            remaining: 0,
          });
          const carol = crypto.randomUUID();
          assert.deepEqual(await summary(carol), {
            period_start: true,
            spent: 0,
            limit: 1000,
            remaining: 1000,
          }, "no row of their own: the relay's default");
          await pg.psql(
            `insert into relay.budgets (user_id, limit_micros) values ('${carol}', null)`,
          );
          assert.deepEqual(await summary(carol), {
            period_start: true,
            spent: 0,
            limit: null,
            remaining: null,
          }, "a null override is unlimited");
          await assert.rejects(
            as(
              pg,
              "authenticated",
              { role: "authenticated" },
              "select * from public.relay_usage_summary()",
            ),
            /no signed-in user/,
          );
        },
      );

      await t.step("relay_usage_summary agrees with what a relay recorded", async () => {
        const user = crypto.randomUUID();
        const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
        const relay = await startRelay({
          env: meteringEnv(pg, { RELAY_BUDGET_USD: "0.25", RELAY_BUDGET_PERIOD: "month" }),
          openai,
        });
        try {
          const token = await relay.auth.signEs256({ sub: user });
          const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
          await client.opened;
          await say(client, "what does this cost");
          await client.close();
        } finally {
          await relay.relay.shutdown();
          await relay.close();
          await openai.close();
        }
        const [row] = await usageRows(pg, user);
        assert.ok(row && row.cost_micros > 0);
        const out = await as(
          pg,
          "authenticated",
          { sub: user, role: "authenticated" },
          `select row_to_json(s) from public.relay_usage_summary() s`,
        );
        const summary = JSON.parse(out);
        assert.equal(summary.spent_micros, row.cost_micros);
        assert.equal(summary.limit_micros, 250_000, "the relay recorded RELAY_BUDGET_USD");
        assert.equal(summary.remaining_micros, 250_000 - row.cost_micros);
        const monthStart = new Date();
        monthStart.setUTCDate(1);
        monthStart.setUTCHours(0, 0, 0, 0);
        assert.equal(Date.parse(summary.period_start), monthStart.getTime(), "RELAY_BUDGET_PERIOD");
      });
    } finally {
      await pg.remove();
    }
  },
});
