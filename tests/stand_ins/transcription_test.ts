/**
 * The OpenAI stand-in's transcription sessions, as OpenAI's GA Realtime API
 * has them: `?intent=transcription` without a model opens a session of
 * `type: "transcription"` that transcribes committed audio and never answers;
 * a model URL opens a conversation that refuses to become one; another intent
 * is refused. Real sockets (Deno's WebSocket, as the relay uses), and the
 * official `openai` SDK's `{ intent: "transcription" }` clients over TLS.
 * Sanitizers stay on.
 */

import assert from "node:assert/strict";
import { sleep, TestClient } from "../helpers/ws_client.ts";
import { type Behaviour, type OpenAIStandIn, startOpenAIStandIn } from "./openai.ts";
import { rawClient } from "./raw_client.ts";
import { concatBytes, encodeBase64, tone, withTranscript } from "./realtime_audio.ts";
import { defaultTranscriptionSession } from "./realtime_events.ts";
import { applyTranscriptionSessionUpdate, TYPE_SWITCH_REFUSALS } from "./realtime_session.ts";
import { audioBytes, transcriptionUsage } from "./realtime_usage.ts";
import type { TranscriptionSdkSummary } from "./transcription_sdk_client.ts";

type Json = Record<string, unknown>;

/** A client of the stand-in that reads its events in order. */
class Peer {
  readonly client: TestClient;
  #cursor = 0;

  constructor(client: TestClient) {
    this.client = client;
  }

  send(event: Json): void {
    this.client.socket.send(JSON.stringify(event));
  }

  async next(ms = 5000): Promise<Json> {
    await this.client.waitForMessages(this.#cursor + 1, ms);
    return JSON.parse(this.client.messages[this.#cursor++] as string);
  }

  async expect(type: string): Promise<Json> {
    const e = await this.next();
    assert.equal(e.type, type, `expected ${type}, got ${JSON.stringify(e).slice(0, 300)}`);
    return e;
  }

  /** Events up to and including the first of `type`. */
  async until(type: string): Promise<Json[]> {
    const seen: Json[] = [];
    for (;;) {
      const e = await this.next();
      seen.push(e);
      if (e.type === type) return seen;
    }
  }

  /** Asserts nothing more arrives within `ms`. */
  async quiet(ms = 150): Promise<void> {
    await sleep(ms);
    const extra = this.client.messages.slice(this.#cursor);
    assert.deepEqual(extra, [], "no further events");
  }

  close(): Promise<CloseEvent> {
    return this.client.close();
  }
}

async function withStandIn(
  fn: (oa: OpenAIStandIn, open: (query: string) => Promise<[Peer, Json]>) => Promise<void>,
  behaviour: Behaviour = { kind: "realtime" },
): Promise<void> {
  const oa = await startOpenAIStandIn({ behaviour });
  const peers: Peer[] = [];
  const open = async (query: string): Promise<[Peer, Json]> => {
    const c = new TestClient(`${oa.url}?${query}`, [
      "realtime",
      `openai-insecure-api-key.${oa.apiKey}`,
    ]);
    const p = new Peer(c);
    peers.push(p);
    await c.opened;
    const created = await p.expect("session.created");
    return [p, created];
  };
  try {
    await fn(oa, open);
  } finally {
    for (const p of peers) await p.close();
    await oa.close();
  }
}

function obj(v: unknown): Json {
  assert.ok(typeof v === "object" && v !== null && !Array.isArray(v), `object: ${v}`);
  return v as Json;
}

const TRANSCRIBE = { type: "transcription" };

Deno.test("transcription session: ?intent=transcription opens type transcription with the default config", async () => {
  await withStandIn(async (oa, open) => {
    const [p, created] = await open("intent=transcription");
    const session = obj(created.session);
    assert.equal(session.type, "transcription");
    assert.equal(session.object, "realtime.session");
    assert.match(String(session.id), /^sess_/);
    // Only the transcription request's fields, plus what the server adds (id, object, expires_at).
    assert.deepEqual(
      Object.keys(session).sort(),
      ["audio", "expires_at", "id", "include", "object", "type"],
    );
    const input = obj(obj(session.audio).input);
    assert.deepEqual(input.format, { type: "audio/pcm", rate: 24000 });
    assert.deepEqual(input.transcription, {
      model: "gpt-4o-transcribe",
      language: null,
      prompt: "",
    });
    assert.equal(input.noise_reduction, null);
    assert.equal(obj(input.turn_detection).type, "server_vad");
    assert.equal(session.include, null);

    // What a relay test reads back: the URL, its query, and the kind of session.
    const record = oa.connections[0]!;
    assert.equal(record.url, "/v1/realtime?intent=transcription");
    assert.equal(record.searchParams.get("intent"), "transcription");
    assert.equal(record.searchParams.get("model"), null);
    assert.equal(record.sessionType, "transcription");
    assert.equal(record.realtime?.type, "transcription");
    assert.deepEqual(record.realtime?.session, session);
    await p.quiet();
  });
});

Deno.test("transcription session: session.update sets the model, language, prompt, noise reduction, include", async () => {
  await withStandIn(async (oa, open) => {
    const [p] = await open("intent=transcription");
    p.send({
      type: "session.update",
      session: {
        type: "transcription",
        audio: {
          input: {
            transcription: { model: "gpt-4o-mini-transcribe", language: "en", prompt: "names" },
            noise_reduction: { type: "near_field" },
            turn_detection: { type: "server_vad", silence_duration_ms: 500 },
          },
        },
        include: ["item.input_audio_transcription.logprobs"],
      },
    });
    const updated = obj((await p.expect("session.updated")).session);
    assert.equal(updated.type, "transcription");
    const input = obj(obj(updated.audio).input);
    assert.deepEqual(input.transcription, {
      model: "gpt-4o-mini-transcribe",
      language: "en",
      prompt: "names",
    });
    assert.deepEqual(input.noise_reduction, { type: "near_field" });
    assert.deepEqual(input.format, { type: "audio/pcm", rate: 24000 }, "the format is kept");
    assert.deepEqual(input.turn_detection, {
      type: "server_vad",
      threshold: 0.5,
      prefix_padding_ms: 300,
      silence_duration_ms: 500,
    });
    assert.deepEqual(updated.include, ["item.input_audio_transcription.logprobs"]);
    assert.deepEqual(oa.connections[0]!.realtime?.session, updated);
  });
});

Deno.test("transcription session: a commit is committed, the item, deltas, completed with token usage; never a response", async () => {
  await withStandIn(async (oa, open) => {
    const [p] = await open("intent=transcription");
    p.send({
      type: "session.update",
      session: {
        ...TRANSCRIBE,
        audio: {
          input: { transcription: { model: "gpt-4o-mini-transcribe", prompt: "greetings" } },
        },
      },
    });
    await p.expect("session.updated");
    const said = "Hello there, caption reader.";
    const audio = withTranscript(said, tone(600));
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio.subarray(0, 10000)) });
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio.subarray(10000)) });
    p.send({ type: "input_audio_buffer.commit" });
    const committed = await p.expect("input_audio_buffer.committed");
    assert.equal(committed.previous_item_id, null);
    const itemId = String(committed.item_id);
    assert.equal(obj((await p.expect("conversation.item.added")).item).id, itemId);
    assert.equal(obj((await p.expect("conversation.item.done")).item).id, itemId);
    const events = await p.until("conversation.item.input_audio_transcription.completed");
    const deltas = events.slice(0, -1);
    assert.ok(deltas.length >= 3, "a few deltas");
    for (const d of deltas) {
      assert.equal(d.type, "conversation.item.input_audio_transcription.delta");
      assert.equal(d.item_id, itemId);
      assert.equal(d.content_index, 0);
      assert.equal("logprobs" in d, false, "no logprobs unless included");
    }
    assert.equal(deltas.map((d) => d.delta).join(""), said);
    const completed = events.at(-1)!;
    assert.equal(completed.item_id, itemId);
    assert.equal(completed.content_index, 0);
    assert.equal(completed.transcript, said);
    assert.deepEqual(
      completed.usage,
      transcriptionUsage("gpt-4o-mini-transcribe", audio.byteLength, said, "greetings"),
    );
    assert.equal(obj(completed.usage).type, "tokens");
    await p.quiet();
    const conv = oa.connections[0]!.realtime!;
    assert.equal(conv.responses.length, 0);
    assert.equal(conv.items.length, 1);

    // A second turn follows the first; the stand-in's queue says what it was.
    oa.transcripts.push("Second line.");
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(tone(200)) });
    p.send({ type: "input_audio_buffer.commit" });
    const second = await p.expect("input_audio_buffer.committed");
    assert.equal(second.previous_item_id, itemId);
    const done = (await p.until("conversation.item.input_audio_transcription.completed")).at(-1)!;
    assert.equal(done.transcript, "Second line.");
    await p.quiet();
  });
});

Deno.test("transcription session: whisper-1 is one delta with duration usage; logprobs when included", async () => {
  await withStandIn(async (_oa, open) => {
    const [p] = await open("intent=transcription");
    p.send({
      type: "session.update",
      session: {
        ...TRANSCRIBE,
        audio: { input: { transcription: { model: "whisper-1" } } },
        include: ["item.input_audio_transcription.logprobs"],
      },
    });
    await p.expect("session.updated");
    const audio = withTranscript("one two three", tone(1500));
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(audio) });
    p.send({ type: "input_audio_buffer.commit" });
    const events = await p.until("conversation.item.input_audio_transcription.completed");
    const deltas = events.filter((e) =>
      e.type === "conversation.item.input_audio_transcription.delta"
    );
    assert.equal(deltas.length, 1);
    assert.equal(deltas[0]!.delta, "one two three");
    assert.deepEqual(deltas[0]!.logprobs, [{
      token: "one two three",
      logprob: 0,
      bytes: [...new TextEncoder().encode("one two three")],
    }]);
    const completed = events.at(-1)!;
    assert.deepEqual(completed.usage, transcriptionUsage("whisper-1", audio.byteLength, ""));
    assert.equal(obj(completed.usage).type, "duration");
    assert.ok(Array.isArray(completed.logprobs));
  });
});

Deno.test("transcription session: server VAD turns speech into a transcript, never a response", async () => {
  await withStandIn(async (oa, open) => {
    const [p] = await open("intent=transcription");
    oa.transcripts.push("Spoken aloud.");
    const turn = concatBytes([tone(300), new Uint8Array(audioBytes(400))]);
    p.send({ type: "input_audio_buffer.append", audio: encodeBase64(turn) });
    const started = await p.expect("input_audio_buffer.speech_started");
    const stopped = await p.expect("input_audio_buffer.speech_stopped");
    assert.equal(stopped.item_id, started.item_id);
    const committed = await p.expect("input_audio_buffer.committed");
    assert.equal(committed.item_id, started.item_id);
    const events = await p.until("conversation.item.input_audio_transcription.completed");
    assert.equal(events.at(-1)!.transcript, "Spoken aloud.");
    assert.ok(events.every((e) => !String(e.type).startsWith("response.")));
    await p.quiet(200);
    assert.equal(oa.connections[0]!.realtime!.responses.length, 0);
  }, { kind: "realtime", vad: true });
});

Deno.test("transcription session: refuses a realtime update, conversation fields and events; the session goes on", async () => {
  await withStandIn(async (oa, open) => {
    const [p, created] = await open("intent=transcription");
    const refusals: [Json, string, string | null][] = [
      [
        { type: "session.update", event_id: "c1", session: { type: "realtime" } },
        "invalid_parameter",
        "",
      ],
      [
        { type: "session.update", session: { ...TRANSCRIBE, instructions: "x" } },
        "unknown_parameter",
        "session.instructions",
      ],
      [
        { type: "session.update", session: { ...TRANSCRIBE, audio: { output: { voice: "ash" } } } },
        "unknown_parameter",
        "session.audio.output",
      ],
      [
        { type: "session.update", session: { ...TRANSCRIBE, include: ["x"] } },
        "invalid_value",
        "session.include[0]",
      ],
      [{ type: "response.create" }, "invalid_value", "type"],
      [
        {
          type: "conversation.item.create",
          item: { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] },
        },
        "invalid_value",
        "type",
      ],
    ];
    for (const [event, code, param] of refusals) {
      p.send(event);
      const e = obj((await p.expect("error")).error);
      assert.equal(e.type, "invalid_request_error");
      assert.equal(e.code, code, JSON.stringify(event));
      assert.equal(e.param, param, JSON.stringify(event));
    }
    assert.deepEqual(
      oa.connections[0]!.realtime!.session,
      created.session,
      "refusals change nothing",
    );
    // The whole event refused, the session goes on: a transcription update still applies.
    p.send({
      type: "session.update",
      session: { ...TRANSCRIBE, audio: { input: { transcription: { model: "whisper-1" } } } },
    });
    const updated = obj((await p.expect("session.updated")).session);
    assert.equal(obj(obj(obj(updated.audio).input).transcription).model, "whisper-1");
  });
});

Deno.test("conversation session: a transcription session.update is refused as OpenAI does; the session goes on", async () => {
  await withStandIn(async (oa, open) => {
    for (const query of ["model=gpt-realtime", "model=gpt-realtime&intent=transcription"]) {
      const before = oa.connections.length;
      const [p, created] = await open(query);
      assert.equal(obj(created.session).type, "realtime", "a model makes a conversation");
      assert.equal(oa.connections[before]!.sessionType, "realtime");
      p.send({
        type: "session.update",
        event_id: "evt_client_1",
        session: {
          type: "transcription",
          audio: { input: { transcription: { model: "gpt-4o-transcribe" } } },
        },
      });
      const error = await p.expect("error");
      assert.deepEqual(error.error, {
        type: "invalid_request_error",
        code: "invalid_parameter",
        message:
          "Passing a transcription session update event to a realtime session is not allowed.",
        param: "",
        event_id: "evt_client_1",
      });
      p.send({
        type: "session.update",
        session: { type: "realtime", instructions: "Still here." },
      });
      const updated = obj((await p.expect("session.updated")).session);
      assert.equal(updated.instructions, "Still here.");
      assert.equal(updated.type, "realtime");
    }
  });
});

Deno.test("handshake: another intent is refused in band and closed 4000; no model, no intent is missing_model", async () => {
  const oa = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
  try {
    for (
      const [query, code] of [
        ["intent=conversation", "invalid_value"],
        ["intent=", "invalid_value"],
        ["intent=translation&model=gpt-realtime", "invalid_value"],
        ["", "missing_model"],
      ] as const
    ) {
      const before = oa.connections.length;
      const r = await rawClient(`${oa.url}?${query}`, {
        protocols: ["realtime", `openai-insecure-api-key.${oa.apiKey}`],
      });
      try {
        assert.equal(r.status, 101);
        const first = await r.readEvent();
        assert.equal(first?.kind, "message");
        const ev = JSON.parse((first as { data: string }).data);
        assert.equal(ev.type, "error", query);
        assert.equal(ev.error.type, "invalid_request_error");
        assert.equal(ev.error.code, code, query);
        if (code === "invalid_value") {
          const intent = new URLSearchParams(query).get("intent");
          assert.equal(
            ev.error.message,
            `Invalid value: '${intent}'. Supported values are: 'transcription'.`,
          );
        }
        assert.deepEqual(await r.readEvent(), {
          kind: "close",
          code: 4000,
          reason: `invalid_request_error.${code}`,
        });
        await r.close(4000, "");
        assert.equal(await r.readFrame().catch(() => null), null);
      } finally {
        r.abort();
      }
      assert.equal(oa.connections[before]!.sessionType, undefined, "no session opened");
    }
  } finally {
    await oa.close();
  }
});

Deno.test("transcription session type is recorded whatever the behaviour (echo)", async () => {
  const oa = await startOpenAIStandIn();
  try {
    const c = new TestClient(`${oa.url}?intent=transcription`, [
      "realtime",
      `openai-insecure-api-key.${oa.apiKey}`,
    ]);
    await c.opened;
    await oa.waitForConnections(1);
    assert.equal(oa.connections[0]!.sessionType, "transcription");
    await c.close();
  } finally {
    await oa.close();
  }
});

Deno.test("applyTranscriptionSessionUpdate refuses what is not a transcription field and merges audio.input", () => {
  const current = defaultTranscriptionSession();
  const snapshot = structuredClone(current);
  const refusals: [Json, string, string | null][] = [
    [{ audio: {} }, "missing_required_parameter", "session.type"],
    [{ type: "realtime" }, "invalid_parameter", ""],
    [{ type: "translation" }, "invalid_value", "session.type"],
    [{ ...TRANSCRIBE, model: "gpt-4o-transcribe" }, "unknown_parameter", "session.model"],
    [{ ...TRANSCRIBE, tools: [] }, "unknown_parameter", "session.tools"],
    [{ ...TRANSCRIBE, id: "sess_x" }, "unknown_parameter", "session.id"],
    [
      { ...TRANSCRIBE, audio: { input: { vad: 1 } } },
      "unknown_parameter",
      "session.audio.input.vad",
    ],
    [
      { ...TRANSCRIBE, audio: { input: { transcription: { model: 3 } } } },
      "invalid_type",
      "session.audio.input.transcription.model",
    ],
    [
      { ...TRANSCRIBE, audio: { input: { transcription: { voice: "x" } } } },
      "unknown_parameter",
      "session.audio.input.transcription.voice",
    ],
    [
      { ...TRANSCRIBE, audio: { input: { turn_detection: { type: "magic" } } } },
      "invalid_value",
      "session.audio.input.turn_detection.type",
    ],
    [{ ...TRANSCRIBE, include: "x" }, "invalid_type", "session.include"],
  ];
  for (const [update, code, param] of refusals) {
    const r = applyTranscriptionSessionUpdate(current, update);
    assert.ok("error" in r, JSON.stringify(update));
    assert.equal(r.error.code, code, JSON.stringify(update));
    assert.equal(r.error.param, param, JSON.stringify(update));
  }
  const r = applyTranscriptionSessionUpdate(current, { type: "realtime" });
  assert.ok("error" in r);
  assert.deepEqual(r.error, TYPE_SWITCH_REFUSALS.toRealtime);

  const ok = applyTranscriptionSessionUpdate(current, {
    ...TRANSCRIBE,
    audio: { input: { turn_detection: null, transcription: { model: "whisper-1" } } },
  });
  assert.ok("session" in ok);
  const input = obj(obj(ok.session.audio).input);
  assert.equal(input.turn_detection, null);
  assert.deepEqual(input.transcription, { model: "whisper-1" });
  assert.deepEqual(input.format, { type: "audio/pcm", rate: 24000 });
  assert.equal(ok.session.id, current.id);
  assert.deepEqual(current, snapshot, "the current session is not changed in place");
});

// ---- the official SDK ---------------------------------------------------------

const REPO_ROOT = new URL("../../", import.meta.url);
const SDK_CLIENT = new URL("./transcription_sdk_client.ts", import.meta.url);

async function openssl(dir: string, args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** A throwaway CA and a 127.0.0.1 certificate it signed. */
async function makeCerts(dir: string): Promise<{ caFile: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=stand-in test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  await openssl(dir, [
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "1",
    "-extfile",
    "server.ext",
  ]);
  return {
    caFile: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/server.pem`),
    key: await Deno.readTextFile(`${dir}/server.key`),
  };
}

/** TLS in front of the stand-in's plain TCP: each connection piped both ways, byte for byte. */
function tlsPipe(
  cert: string,
  key: string,
  port: number,
): { port: number; close(): Promise<void> } {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const conns = new Set<Deno.Conn>();
  const pipes = new Set<Promise<unknown>>();
  const accepting = (async () => {
    for (;;) {
      let outer: Deno.TlsConn;
      try {
        outer = await listener.accept();
      } catch {
        return;
      }
      const inner = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(outer);
      conns.add(inner);
      const shut = () => {
        for (const c of [outer, inner]) {
          conns.delete(c);
          try {
            c.close();
          } catch { /* closed */ }
        }
      };
      const pipe = Promise.allSettled([
        outer.readable.pipeTo(inner.writable, { preventClose: true }),
        inner.readable.pipeTo(outer.writable, { preventClose: true }),
      ]).finally(shut);
      pipes.add(pipe);
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      await accepting;
      for (const c of [...conns]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled([...pipes]);
    },
  };
}

Deno.test("openai SDK opens a transcription session ({ intent: 'transcription' }) and gets the transcript", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "stand-in-tls-" });
  const oa = await startOpenAIStandIn({ behaviour: { kind: "realtime" } });
  let pipe: { port: number; close(): Promise<void> } | undefined;
  try {
    const certs = await makeCerts(dir);
    pipe = tlsPipe(certs.cert, certs.key, oa.port);
    const said = "Captions from the SDK.";
    for (const client of ["websocket", "ws"] as const) {
      await t.step(`${client} client`, async () => {
        const before = oa.connections.length;
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-net=127.0.0.1",
            "--allow-env",
            "--allow-read",
            SDK_CLIENT.pathname,
          ],
          cwd: REPO_ROOT.pathname,
          env: {
            DENO_CERT: certs.caFile,
            OPENAI_BASE_URL: `https://127.0.0.1:${pipe!.port}/v1`,
            OPENAI_KEY: oa.apiKey,
            SDK_CLIENT: client,
            TRANSCRIPT: said,
            NO_COLOR: "1",
          },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        const output = await child.output();
        clearTimeout(timer);
        const stderr = new TextDecoder().decode(output.stderr);
        assert.ok(
          output.success,
          `transcription_sdk_client (${client}) exited ${output.code}:\n${stderr}`,
        );
        const stdout = new TextDecoder().decode(output.stdout).trim();
        const summary = JSON.parse(stdout.split("\n").at(-1) ?? "") as TranscriptionSdkSummary;
        assert.equal(summary.error, null);
        assert.equal(summary.url, "/v1/realtime?intent=transcription");
        assert.equal(summary.sessionType, "transcription");
        assert.equal(summary.updatedModel, "gpt-4o-mini-transcribe");
        assert.equal(summary.deltas.join(""), said);
        assert.equal(summary.transcript, said);
        assert.equal((summary.usage as { type: string }).type, "tokens");
        assert.ok(!summary.events.some((e) => e.startsWith("response.")));
        assert.equal(summary.closeCode, 1000);
        const record = oa.connections[before]!;
        assert.equal(record.sessionType, "transcription");
        assert.equal(record.searchParams.get("intent"), "transcription");
        assert.equal(record.realtime?.responses.length, 0);
        await record.closed;
      });
    }
  } finally {
    await pipe?.close();
    await oa.close();
    await Deno.remove(dir, { recursive: true });
  }
});
