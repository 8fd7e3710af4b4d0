/**
 * `deno task dev [--fresh]`: the relay, the Supabase Auth stand-in, the
 * OpenAI Realtime stand-in (unless `OPENAI_API_KEY` is set), the demo page
 * and the embedded database (unless `RELAY_DATABASE_URL` is set) on
 * localhost, with metering, a small budget, an example session policy,
 * resumable sessions and rooms (over the Supabase Realtime stand-in, served
 * on the Auth stand-in's origin) on unless the environment says otherwise
 * (dev/defaults.ts). `--fresh` deletes the embedded database's data first.
 * The relay runs in this process with the function's own handler and
 * settings parser; nothing in the function changes for dev mode.
 * @module
 */
import { withDevDefaults } from "./defaults.ts";
import { type DevStack, portsFromEnv, startDevStack } from "./stack.ts";

/** How long Ctrl-C waits for clients to take their 1012 before stopping anyway. */
const SHUTDOWN_GRACE_MS = 4000;

const USAGE = "usage: deno task dev [--fresh]";

async function main(): Promise<void> {
  const args = Deno.args.filter((arg) => arg !== "--fresh");
  if (args.length > 0) {
    console.error(`unknown argument ${args[0]}\n${USAGE}`);
    Deno.exit(2);
  }
  const fresh = Deno.args.includes("--fresh");
  const { env } = withDevDefaults(Deno.env.toObject());
  let stack;
  try {
    // Audio answers stream as fast as they play, as OpenAI's do, so a person can talk over one.
    stack = await startDevStack({ ports: portsFromEnv(env), env, fresh, pace: "realtime" });
  } catch (error) {
    console.error(`dev stack failed to start: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
  for (const note of stack.notes) console.error(`note: ${note}`);

  const { ports } = stack;
  const token = (await stack.auth.issueDevToken({ email: "dev@example.com", expiresInS: 3600 }))
    .access_token;
  const lines = [
    `auth     http://127.0.0.1:${ports.auth}/auth/v1  Supabase Auth stand-in (ES256 dev tokens, JWKS)`,
    stack.openai
      ? `openai   ws://127.0.0.1:${ports.openai}/v1/realtime  OpenAI Realtime stand-in (set OPENAI_API_KEY to use OpenAI)`
      : `openai   ${stack.settings.openaiRealtimeUrl}  real OpenAI (OPENAI_API_KEY is set)`,
    ...databaseLines(stack),
    `relay    ${stack.relayUrl}/relay  the relay function (also /relay/echo, /relay/health)`,
    `         ${policyLine(stack)}`,
    ...roomLines(stack),
    `demo     ${stack.demoUrl}  open this in a browser`,
    "",
    "try it (token for dev@example.com, valid 1 h):",
    `  websocat '${stack.relayUrl}/relay/echo?jwt=${token}'`,
    ...(stack.settings.rooms === "off" ? [] : [
      "a room (public:* rooms are open to every signed-in user; send",
      '  {"type":"broadcast","event":"chat","payload":{"text":"hi"}}):',
      `  websocat '${stack.relayUrl}/relay/rooms/public:lobby?jwt=${token}'`,
    ]),
    "",
    "relay telemetry follows; Ctrl-C stops everything.",
  ];
  console.log(lines.join("\n"));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      console.log(`${signal} again: stopping now`);
      Deno.exit(1);
    }
    stopping = true;
    console.log(`${signal}: closing clients with 1012 and stopping`);
    // Whatever hangs (a stand-in, the database), the process still ends.
    setTimeout(() => {
      console.error("stopping took too long; exiting anyway");
      Deno.exit(1);
    }, SHUTDOWN_GRACE_MS + 4000);
    await stack.close(SHUTDOWN_GRACE_MS);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}

/** The database's line and what runs on it, or none without metering and resume. */
function databaseLines(stack: DevStack): string[] {
  const { database, settings } = stack;
  if (database === null) return [];
  let line: string;
  if (database.kind === "external") {
    line = `db       ${database.displayUrl}  RELAY_DATABASE_URL, used as it is`;
  } else {
    const cwd = `${Deno.cwd()}/`;
    const where = database.dataDir?.startsWith(cwd)
      ? database.dataDir.slice(cwd.length)
      : database.dataDir;
    const state = database.created ? "new" : "kept from the last run";
    line = `db       ${database.displayUrl}  embedded PGlite, data in ${where} ` +
      `(${state}; deno task dev --fresh wipes it)`;
  }
  const budget = settings.budgetMicros === null
    ? "no budget"
    : `budget $${settings.budgetMicros / 1e6} per user per ${settings.budgetPeriod}`;
  const applied = database.applied.length > 0 ? `; applied ${database.applied.join(", ")}` : "";
  return [
    line,
    `         metering ${settings.metering ? "on" : "off"}, ${budget}, ` +
    `resume ${settings.resume ? "on" : "off"}${applied}`,
  ];
}

/** How rooms run, in words, or nothing with rooms off. */
function roomLines(stack: DevStack): string[] {
  const { settings, realtime } = stack;
  if (settings.rooms === "off") return [];
  const access = settings.rooms === "database"
    ? "access by relay.room_access() in the database"
    : "every signed-in user in every room";
  const bus = realtime
    ? `members meet through the Supabase Realtime stand-in at ${settings.realtimeUrl}`
    : "one instance alone (RELAY_ROOMS_BUS=off)";
  return [`rooms    ${stack.relayUrl}/relay/rooms/<room>  ${access}; ${bus}`];
}

/** What the session policy pins, in words. */
function policyLine(stack: DevStack): string {
  const policy = stack.settings.sessionPolicy;
  if (policy === null) return "no session policy (RELAY_SESSION_POLICY unset)";
  return `session policy: locked ${policy.locked.join(", ")} (RELAY_SESSION_POLICY)`;
}

if (import.meta.main) await main();
