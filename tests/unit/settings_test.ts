import assert from "node:assert/strict";
import { BUILT_IN_PRICES } from "../../supabase/functions/_shared/metering/prices.ts";
import { parseSettings, SettingsError } from "../../supabase/functions/_shared/settings.ts";

function settingsError(env: Record<string, string>): SettingsError {
  try {
    parseSettings(env);
  } catch (error) {
    if (error instanceof SettingsError) return error;
    throw error;
  }
  assert.fail("parseSettings accepted bad settings");
}

const REQUIRED = { SUPABASE_URL: "https://abc.supabase.co", SUPABASE_ANON_KEY: "anon" };

Deno.test("parseSettings applies every default from the contract", () => {
  const settings = parseSettings(REQUIRED);
  assert.deepEqual({ ...settings }, {
    supabaseUrl: "https://abc.supabase.co",
    supabaseKey: "anon",
    supabaseJwks: null,
    openaiApiKey: null,
    openaiRealtimeUrl: "wss://api.openai.com/v1/realtime",
    openaiRealtimeModel: "gpt-realtime",
    openaiRealtimeModels: ["gpt-realtime"],
    openaiTranscriptionModels: ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"],
    allowedOrigins: null,
    allowedRoles: ["authenticated"],
    maxMessageBytes: 1_048_576,
    maxBufferedBytes: 4_194_304,
    rateLimit: 200,
    maxConnectionsPerUser: 5,
    maxConnections: 1000,
    idleTimeoutS: 30,
    upstreamTimeoutMs: 10_000,
    logLevel: "info",
    port: 8000,
    closeNotices: true,
    sessionPolicy: null,
    metering: false,
    databaseUrl: null,
    budgetMicros: null,
    budgetPeriod: "day",
    budgetRefreshS: 5,
    prices: BUILT_IN_PRICES,
    maxUserSessions: null,
    meteringFailOpen: false,
    resume: false,
    resumeTtlS: 900,
    rooms: "off",
    roomsBus: "realtime",
    realtimeUrl: "wss://abc.supabase.co/realtime/v1",
    secretKey: null,
    serverKeys: [],
    roomMaxMembers: 1000,
    roomMaxMessageBytes: 65_536,
    roomHistory: 0,
    roomHistoryTtlS: 86_400,
  });
  assert.ok(Object.isFrozen(settings));
});

Deno.test("parseSettings reads the rooms' settings and what they need", async (t) => {
  await t.step("the secret key: SUPABASE_SECRET_KEYS' default, else the service-role key", () => {
    const settings = parseSettings({
      ...REQUIRED,
      RELAY_ROOMS: "open",
      SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a","ci":"sb_secret_b"}',
      SUPABASE_SERVICE_ROLE_KEY: "service.role.jwt",
      RELAY_REALTIME_URL: "http://127.0.0.1:54321/realtime/v1/",
      RELAY_ROOM_MAX_MEMBERS: "50",
      RELAY_ROOM_MAX_MESSAGE_BYTES: "1024",
    });
    assert.equal(settings.rooms, "open");
    assert.equal(settings.secretKey, "sb_secret_a");
    assert.deepEqual(settings.serverKeys, ["sb_secret_a", "sb_secret_b", "service.role.jwt"]);
    assert.equal(settings.realtimeUrl, "ws://127.0.0.1:54321/realtime/v1");
    assert.equal(settings.roomMaxMembers, 50);
    assert.equal(settings.roomMaxMessageBytes, 1024);
    const legacy = parseSettings({ ...REQUIRED, SUPABASE_SERVICE_ROLE_KEY: "service.role.jwt" });
    assert.equal(legacy.secretKey, "service.role.jwt");
  });
  await t.step("rooms on with the bus need a secret key; database access needs a database", () => {
    const error = settingsError({ ...REQUIRED, RELAY_ROOMS: "database" });
    assert.equal(error.problems.length, 2, error.message);
    assert.match(error.message, /SUPABASE_SECRET_KEYS or SUPABASE_SERVICE_ROLE_KEY: neither/);
    assert.match(error.message, /RELAY_ROOMS=database/);
    assert.doesNotThrow(() =>
      parseSettings({ ...REQUIRED, RELAY_ROOMS: "open", RELAY_ROOMS_BUS: "off" })
    );
  });
  await t.step("bad values are named, a secret never echoed", () => {
    const error = settingsError({
      ...REQUIRED,
      RELAY_ROOMS: "everyone",
      RELAY_ROOMS_BUS: "redis",
      SUPABASE_SECRET_KEYS: '{"primary":"sb_secret_hidden"}',
      RELAY_ROOM_MAX_MEMBERS: "0",
    });
    assert.match(error.message, /RELAY_ROOMS: "everyone"/);
    assert.match(error.message, /RELAY_ROOMS_BUS: "redis"/);
    assert.match(error.message, /SUPABASE_SECRET_KEYS: not a JSON object with a "default" key/);
    assert.match(error.message, /RELAY_ROOM_MAX_MEMBERS/);
    assert.doesNotMatch(error.message, /sb_secret_hidden/);
  });
});

Deno.test("parseSettings picks the API key in the contract's order", async (t) => {
  const cases: [string, Record<string, string>, string][] = [
    ["publishable keys JSON first", {
      SUPABASE_PUBLISHABLE_KEYS: '{"default":"sb_publishable_a","other":"b"}',
      SUPABASE_PUBLISHABLE_KEY: "sb_publishable_single",
      SUPABASE_ANON_KEY: "anon",
    }, "sb_publishable_a"],
    ["then the single publishable key", {
      SUPABASE_PUBLISHABLE_KEY: "sb_publishable_single",
      SUPABASE_ANON_KEY: "anon",
    }, "sb_publishable_single"],
    ["then the legacy anon key", { SUPABASE_ANON_KEY: "anon" }, "anon"],
  ];
  for (const [name, env, expected] of cases) {
    await t.step(name, () => {
      const settings = parseSettings({ SUPABASE_URL: "https://x.supabase.co", ...env });
      assert.equal(settings.supabaseKey, expected);
    });
  }
});

Deno.test("parseSettings reads lists trimmed and the JWKS document", () => {
  const settings = parseSettings({
    ...REQUIRED,
    OPENAI_REALTIME_MODELS: " gpt-realtime , gpt-realtime-mini ,",
    RELAY_ALLOWED_ORIGINS: "https://app.example.com, http://localhost:3000",
    RELAY_ALLOWED_ROLES: "authenticated,admin",
    SUPABASE_JWKS: '{"keys":[{"kty":"EC","kid":"k1"}]}',
    RELAY_LOG_LEVEL: "DEBUG",
    RELAY_IDLE_TIMEOUT_S: "0",
    OPENAI_API_KEY: "sk-test",
  });
  assert.deepEqual(settings.openaiRealtimeModels, ["gpt-realtime", "gpt-realtime-mini"]);
  assert.deepEqual(settings.allowedOrigins, ["https://app.example.com", "http://localhost:3000"]);
  assert.deepEqual(settings.allowedRoles, ["authenticated", "admin"]);
  assert.deepEqual(settings.supabaseJwks, { keys: [{ kty: "EC", kid: "k1" }] });
  assert.equal(settings.logLevel, "debug");
  assert.equal(settings.idleTimeoutS, 0);
  assert.equal(settings.openaiApiKey, "sk-test");
});

Deno.test("parseSettings reports every bad variable at once, naming each", () => {
  const env = {
    SUPABASE_URL: "not a url",
    SUPABASE_PUBLISHABLE_KEYS: "{oops",
    OPENAI_REALTIME_URL: "https://api.openai.com/v1/realtime",
    RELAY_MAX_MESSAGE_BYTES: "1MB",
    RELAY_RATE_LIMIT: "0",
    RELAY_MAX_CONNECTIONS: "-3",
    RELAY_UPSTREAM_TIMEOUT_MS: "1.5",
    RELAY_LOG_LEVEL: "loud",
    RELAY_ALLOWED_ROLES: " , ",
    SUPABASE_JWKS: "[]",
    PORT: "70000",
    OPENAI_API_KEY: "sk-secret-value",
  };
  const { problems, message } = settingsError(env);
  const named = problems.map((problem) => problem.split(":")[0]);
  assert.deepEqual(named, [
    "SUPABASE_URL",
    "SUPABASE_PUBLISHABLE_KEYS",
    "SUPABASE_JWKS",
    "OPENAI_REALTIME_URL",
    "RELAY_ALLOWED_ROLES",
    "RELAY_MAX_MESSAGE_BYTES",
    "RELAY_RATE_LIMIT",
    "RELAY_MAX_CONNECTIONS",
    "RELAY_UPSTREAM_TIMEOUT_MS",
    "RELAY_LOG_LEVEL",
    "PORT",
  ]);
  assert.match(message, /RELAY_MAX_MESSAGE_BYTES: "1MB" is not a whole number >= 1/);
  assert.match(message, /OPENAI_REALTIME_URL: .* is not a ws: or wss: URL/);
  assert.ok(!message.includes("sk-secret-value"), "an API key must never be echoed");
});

Deno.test("parseSettings requires the Supabase URL and a key", () => {
  const { problems } = settingsError({});
  assert.equal(problems.length, 2);
  assert.match(problems[0] ?? "", /^SUPABASE_URL: not set/);
  assert.match(problems[1] ?? "", /SUPABASE_ANON_KEY: none is set/);
});
