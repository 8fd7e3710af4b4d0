/**
 * `deno task dev`: the relay, the Supabase Auth stand-in, the OpenAI Realtime
 * stand-in (unless `OPENAI_API_KEY` is set) and the demo page on localhost.
 * The relay runs in this process with the function's own handler and
 * settings parser; nothing in the function changes for dev mode.
 * @module
 */
import { portsFromEnv, startDevStack } from "./stack.ts";

/** How long Ctrl-C waits for clients to take their 1012 before stopping anyway. */
const SHUTDOWN_GRACE_MS = 4000;

async function main(): Promise<void> {
  const env = Deno.env.toObject();
  let stack;
  try {
    stack = await startDevStack({ ports: portsFromEnv(env), env });
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
    `relay    ${stack.relayUrl}/relay  the relay function (also /relay/echo, /relay/health)`,
    `demo     ${stack.demoUrl}  open this in a browser`,
    "",
    "try it (token for dev@example.com, valid 1 h):",
    `  websocat '${stack.relayUrl}/relay/echo?jwt=${token}'`,
    "",
    "relay telemetry follows; Ctrl-C stops everything.",
  ];
  console.log(lines.join("\n"));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing clients with 1012 and stopping`);
    await stack.close(SHUTDOWN_GRACE_MS);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.main) await main();
