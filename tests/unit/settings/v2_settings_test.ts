import assert from "node:assert/strict";
import {
  BUILT_IN_PRICES,
  resolvePrices,
} from "../../../supabase/functions/_shared/metering/prices.ts";
import { parseSettings, SettingsError } from "../../../supabase/functions/_shared/settings.ts";

const REQUIRED = { SUPABASE_URL: "https://abc.supabase.co", SUPABASE_ANON_KEY: "anon" };
const DB = "postgresql://relay:s3cret-pw@db.example.com:6543/postgres";

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    parseSettings({ ...REQUIRED, ...env });
  } catch (error) {
    if (error instanceof SettingsError) return error.problems;
    throw error;
  }
  assert.fail("parseSettings accepted bad settings");
}

Deno.test("parseSettings reads the v2 settings", () => {
  const settings = parseSettings({
    ...REQUIRED,
    RELAY_CLOSE_NOTICES: "off",
    RELAY_METERING: "on",
    SUPABASE_DB_URL: "postgres://fallback@db/postgres",
    RELAY_DATABASE_URL: DB,
    RELAY_BUDGET_USD: "1.5",
    RELAY_BUDGET_PERIOD: "month",
    RELAY_BUDGET_REFRESH_S: "2",
    RELAY_MAX_USER_SESSIONS: "3",
    RELAY_METERING_FAIL_OPEN: "true",
    RELAY_RESUME: "on",
    RELAY_RESUME_TTL_S: "60",
    RELAY_SESSION_POLICY:
      '{"session":{"type":"realtime","instructions":"Be brief."},"max_output_tokens":256}',
  });
  assert.equal(settings.closeNotices, false);
  assert.equal(settings.metering, true);
  assert.equal(settings.databaseUrl, DB, "RELAY_DATABASE_URL wins over SUPABASE_DB_URL");
  assert.equal(settings.budgetMicros, 1_500_000);
  assert.equal(settings.budgetPeriod, "month");
  assert.equal(settings.budgetRefreshS, 2);
  assert.equal(settings.maxUserSessions, 3);
  assert.equal(settings.meteringFailOpen, true);
  assert.equal(settings.resume, true);
  assert.equal(settings.resumeTtlS, 60);
  assert.ok(settings.sessionPolicy?.locked.includes("instructions"), "pinned keys are locked");
  assert.equal(settings.sessionPolicy?.maxOutputTokens, 256);
  assert.equal(settings.sessionPolicy?.allowedEvents.length, 11);
});

Deno.test("parseSettings takes SUPABASE_DB_URL when RELAY_DATABASE_URL is unset", () => {
  const settings = parseSettings({ ...REQUIRED, RELAY_METERING: "on", SUPABASE_DB_URL: DB });
  assert.equal(settings.databaseUrl, DB);
});

Deno.test("parseSettings turns budget dollars into whole micros", async (t) => {
  const cases: [string, number][] = [
    ["0", 0],
    ["0.05", 50_000],
    ["1", 1_000_000],
    ["12.345678", 12_345_678],
    ["0.000001", 1],
  ];
  for (const [dollars, micros] of cases) {
    await t.step(dollars, () => {
      const settings = parseSettings({
        ...REQUIRED,
        RELAY_METERING: "on",
        RELAY_DATABASE_URL: DB,
        RELAY_BUDGET_USD: dollars,
      });
      assert.equal(settings.budgetMicros, micros);
    });
  }
});

Deno.test("parseSettings reports each bad v2 value, naming the variable, never the password", () => {
  const problems = problemsOf({
    RELAY_CLOSE_NOTICES: "maybe",
    RELAY_METERING: "on",
    RELAY_DATABASE_URL: "mysql://relay:s3cret-pw@db/x",
    RELAY_BUDGET_USD: "1.2345678",
    RELAY_BUDGET_PERIOD: "week",
    RELAY_BUDGET_REFRESH_S: "0",
    RELAY_MAX_USER_SESSIONS: "none",
    RELAY_RESUME_TTL_S: "-1",
    RELAY_SESSION_POLICY: '{"session":{},"lockd":[]}',
    RELAY_PRICES: '{"gpt-realtime":{"text_inptu":1}}',
  });
  const named = problems.map((problem) => problem.split(":")[0]);
  for (
    const name of [
      "RELAY_CLOSE_NOTICES",
      "RELAY_DATABASE_URL",
      "RELAY_BUDGET_USD",
      "RELAY_BUDGET_PERIOD",
      "RELAY_BUDGET_REFRESH_S",
      "RELAY_MAX_USER_SESSIONS",
      "RELAY_RESUME_TTL_S",
      "RELAY_SESSION_POLICY",
      "RELAY_PRICES",
    ]
  ) assert.ok(named.includes(name), `${name} is reported: ${problems.join(" | ")}`);
  assert.ok(problems.every((problem) => !problem.includes("s3cret-pw")), "no password echoed");
});

Deno.test("parseSettings refuses settings that need another one", async (t) => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ["metering without a database", { RELAY_METERING: "on" }, /^RELAY_DATABASE_URL/],
    ["resume without a database", { RELAY_RESUME: "on" }, /^RELAY_DATABASE_URL/],
    ["a budget without metering", { RELAY_BUDGET_USD: "1" }, /^RELAY_BUDGET_USD/],
    ["a session cap without metering", { RELAY_MAX_USER_SESSIONS: "2" }, /^RELAY_MAX_USER/],
    ["a budget with an unpriced pickable model", {
      RELAY_METERING: "on",
      RELAY_DATABASE_URL: DB,
      RELAY_BUDGET_USD: "1",
      OPENAI_REALTIME_MODELS: "gpt-realtime,my-model",
    }, /^RELAY_PRICES: no price for my-model/],
  ];
  for (const [name, env, expected] of cases) {
    await t.step(name, () => {
      const problems = problemsOf(env);
      assert.ok(problems.some((p) => expected.test(p)), problems.join(" | "));
    });
  }
});

Deno.test("resolvePrices overrides key by key and requires every key of a new model", () => {
  const overridden = resolvePrices('{"gpt-realtime":{"text_input":5}}');
  assert.deepEqual(overridden.problems, []);
  assert.equal(overridden.table["gpt-realtime"]?.text_input, 5);
  assert.equal(overridden.table["gpt-realtime"]?.audio_output, 64, "other keys stay built in");
  assert.equal(BUILT_IN_PRICES["gpt-realtime"]?.text_input, 4, "the built-in table is untouched");

  const partial = resolvePrices('{"my-model":{"text_input":1,"text_output":2}}');
  assert.equal(partial.problems.length, 1);
  assert.match(
    partial.problems[0]!,
    /"my-model" has no built-in price and lacks cached_text_input/,
  );

  const byMinute = resolvePrices('{"my-whisper":{"per_minute":0.01}}');
  assert.deepEqual(byMinute.problems, []);
  assert.equal(byMinute.table["my-whisper"]?.per_minute, 0.01);

  for (const bad of ["[1]", "nope", '{"m":3}', '{"gpt-realtime":{"text_input":-1}}']) {
    assert.equal(resolvePrices(bad).problems.length, 1, bad);
  }
});
