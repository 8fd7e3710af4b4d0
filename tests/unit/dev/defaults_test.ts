import assert from "node:assert/strict";
import {
  DEV_DEFAULTS,
  devDatabasePlan,
  redactDatabaseUrl,
  withDevDefaults,
} from "../../../dev/defaults.ts";
import { parseSettings } from "../../../supabase/functions/_shared/settings.ts";

// With the project's secret key, as the platform gives a function: rooms (a dev default) meet
// across instances through Supabase Realtime with it.
const PLATFORM = {
  SUPABASE_URL: "http://127.0.0.1:54321",
  SUPABASE_ANON_KEY: "anon",
  SUPABASE_SECRET_KEYS: '{"default":"sb_secret_x"}',
};
const DB = { RELAY_DATABASE_URL: "postgresql://postgres@127.0.0.1:54322/postgres" };

Deno.test("withDevDefaults fills only what the environment leaves unset", () => {
  const cases: {
    name: string;
    env: Record<string, string>;
    applied: string[];
    expect: Record<string, string | undefined>;
  }[] = [
    {
      name: "nothing set: all of them",
      env: {},
      applied: Object.keys(DEV_DEFAULTS),
      expect: {
        RELAY_METERING: "on",
        RELAY_BUDGET_USD: "0.05",
        RELAY_RESUME: "on",
        RELAY_ROOMS: "database",
        RELAY_ROOM_HISTORY: "100",
      },
    },
    {
      name: "the user's budget stays",
      env: { RELAY_BUDGET_USD: "1.50" },
      applied: Object.keys(DEV_DEFAULTS).filter((name) => name !== "RELAY_BUDGET_USD"),
      expect: { RELAY_BUDGET_USD: "1.50" },
    },
    {
      name: "metering off: no budget (it would need metering)",
      env: { RELAY_METERING: "off" },
      applied: [
        "RELAY_BUDGET_REFRESH_S",
        "RELAY_SESSION_POLICY",
        "RELAY_RESUME",
        "RELAY_ROOMS",
        "RELAY_ROOM_HISTORY",
      ],
      expect: { RELAY_METERING: "off", RELAY_BUDGET_USD: undefined },
    },
    {
      name: "rooms off: no history (it would need rooms)",
      env: { RELAY_ROOMS: "off" },
      applied: Object.keys(DEV_DEFAULTS).filter((name) =>
        name !== "RELAY_ROOMS" && name !== "RELAY_ROOM_HISTORY"
      ),
      expect: { RELAY_ROOMS: "off", RELAY_ROOM_HISTORY: undefined },
    },
    {
      name: "blank counts as unset",
      env: { RELAY_METERING: "  " },
      applied: Object.keys(DEV_DEFAULTS),
      expect: { RELAY_METERING: "on" },
    },
    {
      name: "the user's policy stays",
      env: { RELAY_SESSION_POLICY: '{"locked":["tools"]}' },
      applied: Object.keys(DEV_DEFAULTS).filter((name) => name !== "RELAY_SESSION_POLICY"),
      expect: { RELAY_SESSION_POLICY: '{"locked":["tools"]}' },
    },
    {
      name: "the user's rooms setting stays",
      env: { RELAY_ROOMS: "open" },
      applied: Object.keys(DEV_DEFAULTS).filter((name) => name !== "RELAY_ROOMS"),
      expect: { RELAY_ROOMS: "open" },
    },
  ];
  for (const { name, env, applied, expect } of cases) {
    const result = withDevDefaults(env);
    assert.deepEqual(result.applied, applied, name);
    for (const [key, value] of Object.entries(expect)) assert.equal(result.env[key], value, name);
  }
});

Deno.test("withDevDefaults gives settings the relay's parser accepts", () => {
  for (const env of [{}, { RELAY_METERING: "off" }, { RELAY_RESUME: "off" }]) {
    const settings = parseSettings({ ...PLATFORM, ...DB, ...withDevDefaults(env).env });
    assert.equal(settings.metering, env.RELAY_METERING !== "off");
    assert.deepEqual(settings.sessionPolicy?.locked, ["instructions", "audio.output.voice"]);
  }
  const settings = parseSettings({ ...PLATFORM, ...DB, ...withDevDefaults({}).env });
  assert.equal(settings.budgetMicros, 50_000);
  assert.equal(settings.resume, true);
  assert.equal(settings.rooms, "database");
  assert.equal(settings.roomsBus, "realtime");
});

Deno.test("devDatabasePlan picks the database from metering, resume, rooms and the URLs", () => {
  const cases: [Record<string, string | undefined>, string][] = [
    [{}, "none"],
    [{ RELAY_METERING: "off", RELAY_RESUME: "off" }, "none"],
    [{ RELAY_METERING: "on" }, "embedded"],
    [{ RELAY_METERING: "TRUE" }, "embedded"],
    [{ RELAY_RESUME: "on" }, "embedded"],
    [{ RELAY_METERING: "on", ...DB }, "external"],
    [{ RELAY_RESUME: "on", SUPABASE_DB_URL: DB.RELAY_DATABASE_URL }, "external"],
    [{ RELAY_METERING: "on", RELAY_DATABASE_URL: " " }, "embedded"],
    [{ RELAY_METERING: "off", ...DB }, "none"],
    [{ RELAY_ROOMS: "database" }, "embedded"],
    [{ RELAY_ROOMS: " Database " }, "embedded"],
    [{ RELAY_ROOMS: "database", ...DB }, "external"],
    [{ RELAY_ROOMS: "open" }, "none"],
    [{ RELAY_ROOMS: "off" }, "none"],
    [withDevDefaults({ RELAY_METERING: "off", RELAY_RESUME: "off" }).env, "embedded"],
  ];
  for (const [env, expected] of cases) {
    assert.equal(devDatabasePlan(env), expected, JSON.stringify(env));
  }
});

Deno.test("redactDatabaseUrl never shows a password", () => {
  const cases: [string, string][] = [
    [
      "postgresql://postgres.ref:s3cret@aws-0-eu.pooler.supabase.com:6543/postgres",
      "postgresql://postgres.ref:***@aws-0-eu.pooler.supabase.com:6543/postgres",
    ],
    [
      "postgresql://postgres@127.0.0.1:54322/postgres",
      "postgresql://postgres@127.0.0.1:54322/postgres",
    ],
    ["not a url s3cret", "<database url>"],
  ];
  for (const [url, expected] of cases) assert.equal(redactDatabaseUrl(url), expected);
});
