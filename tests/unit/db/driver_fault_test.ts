/**
 * postgres.js on Deno 2.1.4 was seen throwing an uncaught TypeError from a
 * timer in its connection.js after the server dropped its connections, which
 * ended the process. The relay swallows exactly those (and replaces the pool);
 * anything else stays fatal. Proven in a subprocess, on the Deno running this.
 */
import assert from "node:assert/strict";
import { isDriverFault } from "../../../supabase/functions/_shared/db/client.ts";

const CONFIG = new URL("../../../deno.json", import.meta.url).pathname;
const CLIENT = new URL("../../../supabase/functions/_shared/db/client.ts", import.meta.url).href;

function errorWithStack(top: string): Error {
  const error = new TypeError("Cannot read properties of null (reading 'write')");
  error.stack = `TypeError: Cannot read properties of null (reading 'write')\n    at ${top}\n` +
    "    at processImmediate (ext:deno_node/internal/timers.mjs:2:3)";
  return error;
}

Deno.test("isDriverFault names errors thrown from postgres.js's connection.js only", () => {
  const table: [unknown, boolean][] = [
    [
      errorWithStack(
        "nextWrite (file:///root/.cache/deno/npm/registry.npmjs.org/postgres/3.4.9/src/connection.js:255:22)",
      ),
      true,
    ],
    [
      errorWithStack(
        "file:///var/tmp/sb-compile-edge-runtime/node_modules/localhost/postgres/3.4.9/src/connection.js:255:22",
      ),
      true,
    ],
    [
      errorWithStack("nextWrite (/app/node_modules/postgres/3.4.9/cjs/src/connection.js:1:1)"),
      true,
    ],
    [errorWithStack("handle (file:///x/postgres/3.4.9/src/query.js:10:2)"), false],
    [errorWithStack("file:///work/main/supabase/functions/_shared/relay/session.ts:3:4"), false],
    [errorWithStack("file:///work/main/my-postgres/connection.js:3:4"), false],
    [new Error("no stack frames"), false],
    ["a string", false],
    [null, false],
  ];
  for (const [error, expected] of table) {
    assert.equal(isDriverFault(error), expected, String((error as Error)?.stack ?? error));
  }
});

async function runScript(body: string): Promise<{ code: number; output: string }> {
  const dir = await Deno.makeTempDir({ prefix: "relay-fault-" });
  try {
    // A file where the driver's lives, so the thrown error's stack is genuine.
    await Deno.mkdir(`${dir}/postgres/3.4.9/src`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/postgres/3.4.9/src/connection.js`,
      `import { setImmediate } from "node:timers";
export function fault() {
  setImmediate(() => { const socket = null; socket.write("x"); });
}
`,
    );
    await Deno.writeTextFile(`${dir}/main.ts`, body.replaceAll("CLIENT", CLIENT));
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "--config", CONFIG, `${dir}/main.ts`],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: output.code, output: decode(output.stdout) + decode(output.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("connectDatabase keeps a driver fault from ending the process, and says so", async () => {
  const { code, output } = await runScript(`
    import { connectDatabase } from "CLIENT";
    import { fault } from "./postgres/3.4.9/src/connection.js";
    const db = connectDatabase("postgresql://relay:secret@127.0.0.1:1/postgres", {
      onDriverFault: (message) => console.log("fault reported:", message),
    });
    fault();
    setTimeout(async () => {
      console.log("still alive");
      await db.close();
    }, 200);
  `);
  assert.equal(code, 0, output);
  assert.match(output, /fault reported: Cannot read properties of null \(reading 'write'\)/);
  assert.match(output, /still alive/);
  assert.ok(!output.includes("secret"), "no password in the output");
});

Deno.test("connectDatabase leaves every other uncaught error fatal", async () => {
  const { code, output } = await runScript(`
    import { connectDatabase } from "CLIENT";
    const db = connectDatabase("postgresql://127.0.0.1:1/postgres");
    setTimeout(() => { throw new TypeError("a bug of ours"); }, 10);
    setTimeout(() => console.log("should not be reached"), 300);
  `);
  assert.notEqual(code, 0);
  assert.match(output, /a bug of ours/);
  assert.ok(!output.includes("should not be reached"));
});
