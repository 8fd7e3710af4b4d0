/**
 * Fidelity, property-based: random sequences of text and binary messages
 * (empty, 1 byte, multi-byte and astral UTF-8, up to and exactly at the size
 * cap) cross the OpenAI route both ways byte-identical, same type, same order,
 * whatever the upstream handshake delay. Replay a failure with
 * `RELAY_PROOF_SEED=<seed printed below>`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Message, TestClient, until } from "../helpers/ws_client.ts";
import {
  PAYLOAD_MARKER,
  recordFigure,
  sameMessage,
  sameUpstream,
  testCommand,
  withCheckedRelay,
} from "./support.ts";

/** The size cap used here: small enough to be quick, large enough to fragment. */
const CAP = 64 * 1024;
const SEED = Number(Deno.env.get("RELAY_PROOF_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const RUNS = Number(Deno.env.get("RELAY_FIDELITY_RUNS") ?? 75);
const ENV = {
  RELAY_MAX_MESSAGE_BYTES: String(CAP),
  RELAY_RATE_LIMIT: "100000",
  RELAY_MAX_BUFFERED_BYTES: String(64 * 1024 * 1024),
};

/** Text of exactly `bytes` UTF-8 bytes, mixing 1-, 2-, 3- and 4-byte characters from `seed`. */
function textOfBytes(bytes: number, seed: number): string {
  const pieces = ["a", "é", "€", "😀", "\u{10FFFF}", "\u0000", "日"];
  let out = "";
  let left = bytes;
  let i = seed;
  while (left > 0) {
    const piece = pieces[i++ % pieces.length] as string;
    const size = new TextEncoder().encode(piece).byteLength;
    if (size <= left) {
      out += piece;
      left -= size;
    } else {
      out += "a".repeat(left);
      left = 0;
    }
  }
  return out;
}

/** Binary of exactly `bytes` bytes, a pattern from `seed` (cheap for 64 KiB). */
function binaryOfBytes(bytes: number, seed: number): ArrayBuffer {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + seed) & 0xff;
  return data.buffer;
}

/** One message: mostly small, some at and just under the cap. */
const messageArb: fc.Arbitrary<Message> = fc.oneof(
  { arbitrary: fc.constant(""), weight: 2 },
  { arbitrary: fc.constant(new ArrayBuffer(0)), weight: 2 },
  { arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), weight: 3 },
  {
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 1 }).map((b) => b.slice().buffer),
    weight: 3,
  },
  { arbitrary: fc.string({ unit: "binary", maxLength: 64 }), weight: 30 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 200 }), weight: 15 },
  { arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => b.slice().buffer), weight: 25 },
  {
    arbitrary: fc.tuple(fc.integer({ min: 0, max: CAP }), fc.nat(), fc.boolean()).map((
      [n, seed, text],
    ) => text ? textOfBytes(n, seed) : binaryOfBytes(n, seed)),
    weight: 3,
  },
  {
    arbitrary: fc.tuple(fc.constantFrom(CAP, CAP - 1), fc.nat(), fc.boolean()).map((
      [n, seed, text],
    ) => text ? textOfBytes(n, seed) : binaryOfBytes(n, seed)),
    weight: 2,
  },
  { arbitrary: fc.constant(`{"type":"note","text":"${PAYLOAD_MARKER}"}`), weight: 1 },
);

// size "max": lengths spread over the whole range, not fast-check's small-size bias.
const sequenceArb = fc.array(messageArb, { minLength: 80, maxLength: 240, size: "max" });

/** Runs a property; on failure throws a short error naming the seed and shrink path (no huge counterexample dump). */
async function check<T>(property: fc.IAsyncProperty<T>, params: fc.Parameters<T>): Promise<void> {
  const details = await fc.check(property, params);
  if (!details.failed) return;
  const cause = details.errorInstance instanceof Error
    ? details.errorInstance.message
    : String(details.errorInstance);
  throw new Error(
    `property failed (seed ${details.seed}, path ${details.counterexamplePath}): ${cause}`,
  );
}

Deno.test("fidelity: random message sequences cross the OpenAI route both ways unchanged", async () => {
  console.log(`fidelity seed ${SEED} (replay with RELAY_PROOF_SEED=${SEED})`);
  let toUpstream = 0;
  let toClient = 0;
  let capSized = 0;
  let runs = 0;
  const started = performance.now();
  await withCheckedRelay({ env: ENV }, async (relay, secret) => {
    const token = secret(await relay.auth.signEs256());
    await check(
      fc.asyncProperty(sequenceArb, fc.integer({ min: 0, max: 60 }), async (sent, delayMs) => {
        relay.openai.behaviour = { kind: "echo" };
        relay.openai.handshakeDelayMs = delayMs;
        const index = relay.openai.connections.length;
        const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
        await client.opened;
        // Sent at once: with a delay most of them wait in the relay's queue.
        for (const message of sent) client.socket.send(message);
        const received = await client.waitForMessages(sent.length, 20_000).catch(async (e) => {
          const c = await client.waitClosed();
          throw new Error(`${e.message}; client closed ${c.code} ${c.reason}`);
        });
        const upstream = relay.openai.connections[index];
        sent.forEach((message, i) => {
          assert.ok(sameUpstream(upstream?.received[i], message), `to upstream #${i}`);
          assert.ok(sameMessage(received[i], message), `back to the client #${i}`);
        });
        assert.equal(upstream?.received.length, sent.length, "nothing extra upstream");
        const closed = await client.close(1000, "done");
        assert.equal(closed.code, 1000);
        assert.equal(client.messages.length, sent.length, "nothing extra to the client");
        toUpstream += sent.length;
        toClient += sent.length;
        capSized += sent.filter((m) =>
          (typeof m === "string" ? new TextEncoder().encode(m).byteLength : m.byteLength) === CAP
        ).length;
        runs++;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );

    // Upstream-initiated traffic: a scripted sequence the upstream sends on its own.
    await check(
      fc.asyncProperty(sequenceArb, fc.integer({ min: 0, max: 60 }), async (script, delayMs) => {
        relay.openai.behaviour = { kind: "echo" };
        relay.openai.handshakeDelayMs = delayMs;
        const index = relay.openai.connections.length;
        const client = new TestClient(relay.wsUrl("/relay", { jwt: token }));
        await client.opened;
        await relay.openai.waitForConnections(index + 1);
        const upstream = relay.openai.connections[index];
        // The record exists from the request head on; frames may follow only the 101.
        await until(() => upstream?.status === 101, 5000, "upstream upgrade");
        for (const message of script) {
          await upstream?.send(typeof message === "string" ? message : new Uint8Array(message));
        }
        const received = await client.waitForMessages(script.length, 20_000).catch(async (e) => {
          const c = await client.waitClosed();
          throw new Error(`${e.message}; client closed ${c.code} ${c.reason}`);
        });
        script.forEach((message, i) => assert.ok(sameMessage(received[i], message), `#${i}`));
        await client.close(1000, "done");
        toClient += script.length;
        runs++;
      }),
      { seed: SEED + 1, numRuns: Math.ceil(RUNS / 3), endOnFailure: true },
    );
  });
  const seconds = (performance.now() - started) / 1000;
  // At least 10,000 messages each way per CI run (unless fewer runs were asked for).
  if (!Deno.env.has("RELAY_FIDELITY_RUNS")) {
    assert.ok(toUpstream >= 10_000, `only ${toUpstream} client→upstream messages`);
    assert.ok(toClient >= 10_000, `only ${toClient} upstream→client messages`);
  }
  recordFigure({
    area: "Fidelity (property-based)",
    tried:
      `random sequences of 80-240 text/binary messages (empty, 1 byte, multi-byte and astral UTF-8, up to and at the ${CAP}-byte cap), random upstream handshake delay 0-60 ms; seed ${SEED}`,
    counts: {
      sequences: runs,
      "client→upstream": toUpstream,
      "upstream→client": toClient,
      "at cap": capSized,
      seconds: Math.round(seconds),
    },
    held: "every message byte-identical, same type, same order, nothing extra, both ways",
    command: `RELAY_PROOF_SEED=${SEED} ${testCommand("fidelity_test.ts")}`,
  });
});
