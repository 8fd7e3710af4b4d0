import assert from "node:assert/strict";
import { CLIENT_LIBRARY_PATH, demoHandler } from "../../../dev/demo_server.ts";
import type { AuthStandIn } from "../../stand_ins/auth.ts";

const LIBRARY = new URL("../../../client/relay_client.js", import.meta.url);

/** The demo server's handler; these paths never reach the Auth stand-in. */
const handler = demoHandler({
  auth: {} as AuthStandIn,
  relayUrl: "ws://127.0.0.1:1",
  upstream: "stand-in",
});

function get(path: string, method = "GET"): Promise<Response> {
  return handler(new Request(`http://127.0.0.1${path}`, { method }));
}

Deno.test("demoHandler serves the client library at /client/relay_client.js as it is on disk", async () => {
  assert.equal(CLIENT_LIBRARY_PATH, "/client/relay_client.js");
  for (const path of [CLIENT_LIBRARY_PATH, `${CLIENT_LIBRARY_PATH}?v=2`]) {
    const response = await get(path);
    assert.equal(response.status, 200, path);
    // What a module script and its import need: a JavaScript type, and no stale copy.
    assert.equal(response.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), await Deno.readFile(LIBRARY));
  }
});

Deno.test("demoHandler serves nothing else of client/ or the repository through that route", async () => {
  const refused: [string, string][] = [
    ["/client/", "GET"],
    ["/client", "GET"],
    ["/client/relay_client.js/", "GET"],
    ["/client/relay_client.ts", "GET"],
    ["/client/other.js", "GET"],
    ["/client/%2e%2e/deno.json", "GET"],
    ["/client/..%2fdeno.json", "GET"],
    ["/client%2frelay_client.js", "GET"],
    ["/CLIENT/relay_client.js", "GET"],
    // Only in client/, not in dev/demo/: the plain-name route does not find it.
    ["/relay_client.js", "GET"],
    [CLIENT_LIBRARY_PATH, "POST"],
  ];
  for (const [path, method] of refused) {
    const response = await get(path, method);
    assert.equal(response.status, 404, `${method} ${path}`);
    assert.deepEqual(await response.json(), { error: "not_found" }, `${method} ${path}`);
  }
});

Deno.test("demoHandler answers 404 when the client library file is missing, not an error", async () => {
  const missing = demoHandler({
    auth: {} as AuthStandIn,
    relayUrl: "ws://127.0.0.1:1",
    upstream: "stand-in",
    clientLibrary: new URL("./no-such-library.js", import.meta.url),
  });
  const response = await missing(new Request(`http://127.0.0.1${CLIENT_LIBRARY_PATH}`));
  assert.equal(response.status, 404);
  await response.body?.cancel();
});
