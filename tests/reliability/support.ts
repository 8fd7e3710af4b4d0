/**
 * Shared pieces of the reliability suite: a relay wrapper that checks the
 * telemetry for secrets after every run and a figures recorder for
 * `deno task proof`; message comparison and the relay as a subprocess are
 * re-exported from tests/helpers.
 * @module
 */
import assert from "node:assert/strict";
import { type RelayUnderTest, type StartOptions, withRelay } from "../helpers/relay_harness.ts";

export { bytesOf, sameBytes, sameMessage, sameUpstream } from "../helpers/messages.ts";
export {
  canMeasureRss,
  type RelayProcess,
  rssOf,
  startRelayProcess,
} from "../helpers/relay_process.ts";

/** One row of docs/RELIABILITY.md. */
export interface Figure {
  /** Area of the suite, e.g. "Fidelity". */
  area: string;
  /** What was tried, in words. */
  tried: string;
  /** Counts, e.g. `{ cases: 12, messages: 10000, connections: 50, seconds: 5 }`. */
  counts: Record<string, number>;
  /** What held, in words. */
  held: string;
  /** The command that reproduces the row. */
  command: string;
}

/** Appends a figure to `$RELAY_PROOF_OUT` (one JSON per line) when `deno task proof` runs. */
export function recordFigure(figure: Figure): void {
  const out = Deno.env.get("RELAY_PROOF_OUT");
  if (!out) return;
  Deno.writeTextFileSync(out, JSON.stringify(figure) + "\n", { append: true });
}

/** The `deno test` command for one file of this suite, with `--filter` when given. */
export function testCommand(file: string, filter?: string): string {
  const f = filter === undefined ? "" : ` --filter "${filter}"`;
  return `deno test -A tests/reliability/${file}${f}`;
}

/** Marker strings put into payloads so the secrets check can look for them. */
export const PAYLOAD_MARKER = "PAYLOAD-MARKER-7f3a";

/**
 * Runs `body` against a fresh in-process relay, then asserts that no telemetry
 * line holds a token, key or payload marker registered through `secret()`.
 */
export async function withCheckedRelay(
  options: StartOptions,
  body: (relay: RelayUnderTest, secret: (value: string) => string) => Promise<void>,
): Promise<void> {
  const secrets = new Set<string>([PAYLOAD_MARKER]);
  let lines: string[] = [];
  await withRelay(options, async (relay) => {
    lines = relay.lines;
    secrets.add(relay.openai.apiKey);
    secrets.add(relay.auth.publishableKey);
    secrets.add(relay.auth.anonKey);
    secrets.add(relay.auth.serviceRoleKey);
    secrets.add(relay.auth.hsSecret);
    await body(relay, (value) => {
      if (value.length >= 8) secrets.add(value);
      return value;
    });
  });
  assertNoSecrets(lines.join("\n"), secrets, "telemetry");
}

/** Fails when `output` contains any of `secrets` (or a JWT's signature segment). */
export function assertNoSecrets(output: string, secrets: Iterable<string>, what: string): void {
  for (const secret of secrets) {
    if (secret.length < 8) continue;
    assert.ok(!output.includes(secret), `${what} leaked a secret (${secret.length} chars)`);
    const parts = secret.split(".");
    const signature = parts[2];
    if (parts.length === 3 && signature && signature.length >= 16) {
      assert.ok(!output.includes(signature), `${what} leaked a token signature`);
    }
  }
}
