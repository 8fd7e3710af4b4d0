/**
 * Regressions: bugs this suite found in the relay, each pinned by the test
 * that first failed.
 */
import assert from "node:assert/strict";
import { until } from "../helpers/ws_client.ts";
import { recordFigure, testCommand, withCheckedRelay } from "./support.ts";

const encoder = new TextEncoder();

/**
 * Found on Deno 2.1.4 (the edge runtime's Deno): an upgrade the client never
 * completes (an HTTP/1.0 request with a valid handshake and token gets no 101
 * there) left the session waiting for the client's `open` forever, holding a
 * per-user slot and an open upstream (OpenAI) socket after the client's TCP
 * was gone. The relay now gives the client as long to open as the upstream.
 */
Deno.test("regression: an upgrade the client never completes releases its slot and upstream", async () => {
  let cases = 0;
  await withCheckedRelay(
    { env: { RELAY_UPSTREAM_TIMEOUT_MS: "500", RELAY_MAX_CONNECTIONS_PER_USER: "2" } },
    async (relay, secret) => {
      const token = secret(await relay.auth.signEs256());
      const attempts: [string, string][] = [
        ["HTTP/1.0 upgrade, then TCP closed", "HTTP/1.0"],
        ["HTTP/1.1 upgrade, TCP closed before reading the 101", "HTTP/1.1"],
      ];
      for (const [name, version] of attempts) {
        const before = relay.openai.connections.length;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
        await conn.write(encoder.encode(
          `GET /relay?jwt=${token} ${version}\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n` +
            "connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
            "sec-websocket-version: 13\r\n\r\n",
        ));
        await relay.openai.waitForConnections(before + 1);
        conn.close();
        // Upstream timeout (0.5 s) plus the session's 5 s linger, with margin.
        await until(() => relay.relay.connections() === 0, 8000, `${name}: slot released`);
        await relay.openai.connections[before]?.closed;
        cases++;
      }
      // The user can still connect: no slot was lost.
      const conn = await fetch(`http://127.0.0.1:${relay.port}/relay/health`);
      assert.equal((await conn.json()).connections, 0);
    },
  );
  recordFigure({
    area: "Regression: upgrade never completed (Deno 2.1.4)",
    tried:
      "HTTP/1.0 upgrade with a valid token, and an HTTP/1.1 upgrade whose client closes TCP at once",
    counts: { cases },
    held: "the slot and the upstream socket are released (upstream timeout + linger), no leak",
    command: testCommand("regressions_test.ts"),
  });
});
