/**
 * Secrets, with metering on: the relay process's whole output never holds the
 * database URL or its password, through normal writes, the database going
 * away (write failures, 503s), a wrong password, and a malformed URL. The
 * cluster checks the password for real (SCRAM), so the driver uses it.
 */
import assert from "node:assert/strict";
import { meteringEnv, say, usageRows } from "../helpers/metering.ts";
import { postgresUnavailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { standInEnv, UPGRADE_HEADERS } from "../helpers/relay_harness.ts";
import { TestClient, until } from "../helpers/ws_client.ts";
import { startAuthStandIn } from "../stand_ins/auth.ts";
import { startOpenAIStandIn } from "../stand_ins/openai.ts";
import { assertNoSecrets, recordFigure, startRelayProcess, testCommand } from "./support.ts";

const skip = postgresUnavailable();

/** A login role that must give its password over TCP; returns its URL. */
async function passwordRole(pg: TestPostgres, role: string, password: string): Promise<string> {
  await pg.psql(`create role ${role} login superuser password '${password}'`);
  const hba = (await pg.psql("show hba_file")).trim();
  const rules = await Deno.readTextFile(hba);
  // First match wins: this role is checked by password, everyone else stays on trust.
  await Deno.writeTextFile(hba, `host all ${role} 127.0.0.1/32 scram-sha-256\n${rules}`);
  await pg.psql("select pg_reload_conf()");
  return `postgresql://${role}:${password}@127.0.0.1:${pg.port}/postgres`;
}

Deno.test({
  name: "secrets: no database URL or password in the relay's output, metering on",
  ignore: skip !== null,
  fn: async () => {
    const pg = await startPostgres();
    const auth = await startAuthStandIn();
    const openai = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
    const password = `pw-${crypto.randomUUID()}`;
    const url = await passwordRole(pg, "relay_writer", password);
    const wrongPassword = `wrong-${crypto.randomUUID()}`;
    const outputs: string[] = [];
    let cases = 0;
    try {
      const env = {
        ...standInEnv(auth, openai),
        ...meteringEnv(pg),
        RELAY_DATABASE_URL: url,
        RELAY_LOG_LEVEL: "debug",
        RELAY_BUDGET_USD: "50",
        RELAY_MAX_USER_SESSIONS: "3",
      };
      const relay = await startRelayProcess(env);
      const user = crypto.randomUUID();
      try {
        const client = new TestClient(
          relay.wsUrl("/relay", { jwt: await auth.signEs256({ sub: user }) }),
        );
        await client.opened;
        await say(client, "written with the password");
        cases++;
        await pg.stop();
        await say(client, "while the database is away");
        await until(() => relay.output().includes("metering.write_failed"), 10_000, "failure");
        const refused = await fetch(
          relay.wsUrl("/relay", { jwt: await auth.signEs256() }).replace("ws:", "http:"),
          { headers: UPGRADE_HEADERS },
        );
        assert.equal(refused.status, 503);
        await refused.body?.cancel();
        cases += 2;
        await pg.start();
        await client.close();
      } finally {
        await pg.start().catch(() => {});
        assert.equal(await relay.stop(), 0);
        outputs.push(relay.output());
      }
      assert.equal((await usageRows(pg, user)).length, 2, "written, with the password");

      // A wrong password: admission fails, and the error says so without either password.
      const wrong = await startRelayProcess({
        ...env,
        RELAY_DATABASE_URL: url.replace(password, wrongPassword),
      });
      try {
        const response = await fetch(
          wrong.wsUrl("/relay", { jwt: await auth.signEs256() }).replace("ws:", "http:"),
          { headers: UPGRADE_HEADERS },
        );
        assert.equal(response.status, 503);
        await response.body?.cancel();
        cases++;
      } finally {
        await wrong.stop();
        outputs.push(wrong.output());
      }
      assert.match(wrong.output(), /metering\.unavailable.*password authentication failed/);

      // A malformed URL holding the password: a settings error that does not show it.
      const malformed = `postgresql://relay_writer:${password}@127.0.0.1:notaport/postgres`;
      const bad = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          new URL("../../supabase/functions/relay/index.ts", import.meta.url).pathname,
        ],
        env: { ...env, RELAY_DATABASE_URL: malformed, NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const badOutput = new TextDecoder().decode(bad.stdout) + new TextDecoder().decode(bad.stderr);
      assert.equal(bad.code, 1, badOutput);
      assert.match(badOutput, /RELAY_DATABASE_URL: not a postgresql:\/\/ URL/);
      outputs.push(badOutput);
      cases++;
    } finally {
      await openai.close();
      await auth.close();
      await pg.remove();
    }
    const output = outputs.join("\n");
    assert.match(output, /metering\.write_failed/, "failures were logged");
    assertNoSecrets(output, [password, wrongPassword, url], "relay output");
    assert.ok(!output.includes(`:${pg.port}/postgres`), "no database URL");
    recordFigure({
      area: "Secrets in output",
      tried:
        "metering on with a password-checked (SCRAM) database URL: writes, the database stopped mid-session (write failures, 503s), a wrong password, a malformed URL",
      counts: { cases, "output lines": output.split("\n").length },
      held: "no database URL, password or wrong password in stdout or stderr",
      command: testCommand("metering_secrets_test.ts"),
    });
  },
});
