/**
 * The client library's pure decisions, table by table: the backoff schedule,
 * the close decision for every code and reason in the contract (and for the
 * relay's own notices, made by the relay's own code), session ids, the hold
 * bound and the connection target.
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  backoffDelay,
  backoffOptions,
  closeDecision,
  closeNoticeOf,
  connect,
  connectionTarget,
  DEFAULT_BACKOFF,
  fitsHold,
  isSessionId,
  messageBytes,
  newSessionId,
} from "../../client/relay_client.js";
import { closeNotice } from "../../supabase/functions/_shared/realtime/close_notice.ts";
import { RELAY_CLOSE } from "../../supabase/functions/_shared/relay/close_codes.ts";

const exact = { baseMs: 500, factor: 2, capMs: 30_000, jitter: 0 };

Deno.test("backoffDelay grows by the factor from the base and stops at the cap", () => {
  const cases: [number, number][] = [
    [0, 500],
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [4, 8000],
    [5, 16_000],
    [6, 30_000],
    [7, 30_000],
    [60, 30_000],
    [10_000, 30_000], // factor ** attempt overflows to Infinity: still the cap
    [-1, 500], // never below the first delay
  ];
  for (const [attempt, want] of cases) {
    assert.equal(backoffDelay(attempt, exact, () => 0.5), want, `attempt ${attempt}`);
  }
});

Deno.test("backoffDelay takes a random share up to jitter off the ceiling", () => {
  const cases: [number, number, number][] = [
    // [jitter, random, delay of attempt 2 (ceiling 2000)]
    [0, 0.99, 2000],
    [0.5, 0, 2000],
    [0.5, 0.5, 1500],
    [0.5, 0.999, 1001],
    [1, 0, 2000],
    [1, 0.5, 1000],
    [1, 0.9999, 0],
    [1, Number.NaN, 2000], // a broken random source never means no wait
    [1, -3, 2000],
    [1, 7, 0],
  ];
  for (const [jitter, random, want] of cases) {
    assert.equal(
      backoffDelay(2, { ...exact, jitter }, () => random),
      want,
      `jitter ${jitter}, random ${random}`,
    );
  }
});

Deno.test("backoffDelay with the defaults waits 0.25-0.5 s first and at most 30 s", () => {
  assert.deepEqual(DEFAULT_BACKOFF, { baseMs: 500, factor: 2, capMs: 30_000, jitter: 0.5 });
  fc.assert(
    fc.property(
      fc.nat(100),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (n, r) => {
        const delay = backoffDelay(n, DEFAULT_BACKOFF, () => r);
        const ceiling = Math.min(30_000, 500 * 2 ** n);
        return Number.isInteger(delay) && delay >= ceiling / 2 && delay <= ceiling;
      },
    ),
  );
});

Deno.test("backoffOptions fills in the defaults and names a bad field", () => {
  assert.deepEqual(backoffOptions({ baseMs: 100 }), { ...DEFAULT_BACKOFF, baseMs: 100 });
  const bad: [Record<string, number>, RegExp][] = [
    [{ baseMs: -1 }, /backoff\.baseMs/],
    [{ baseMs: Number.NaN }, /backoff\.baseMs/],
    [{ factor: 0.5 }, /backoff\.factor/],
    [{ capMs: 100 }, /backoff\.capMs must be a number >= baseMs/],
    [{ jitter: 1.5 }, /backoff\.jitter/],
    [{ jitter: -0.1 }, /backoff\.jitter/],
  ];
  for (const [partial, message] of bad) {
    assert.throws(
      () => backoffOptions(partial),
      (e) => e instanceof RangeError && message.test(e.message),
    );
  }
});

type Notice = { code: string; closeCode: number; message: string };
const notice = (closeCode: number, code: string, message = ""): Notice => ({
  code,
  closeCode,
  message,
});

Deno.test("closeDecision: every close in the contract, as a non-browser client sees it", () => {
  const cases: [number, string, boolean, string][] = [
    // [code, reason, reconnect, why]
    [1012, "server_restarting", true, "server_restarting"],
    [1011, "upstream_closed_abnormally", true, "upstream_closed_abnormally"],
    [4001, "token_expired", true, "token_expired"],
    [1001, "", true, "going_away"],
    [1006, "", true, "connection_lost"],
    [4002, "budget_exceeded", false, "budget_exceeded"],
    [4409, "session_replaced", false, "session_replaced"],
    [1008, "rate_limited", false, "rate_limited"],
    [1008, "policy_violation", false, "policy_violation"],
    [1009, "message_too_big", false, "message_too_big"],
    [1013, "buffer_full", false, "buffer_full"],
    [1011, "upstream_timeout", false, "upstream_timeout"],
    [1011, "upstream_unavailable", false, "upstream_unavailable"],
    [1011, "some other server error", false, "some other server error"],
    [1000, "", false, "normal_closure"],
    [1000, "done", false, "done"],
    [1005, "", false, "no_status"],
    // Closes forwarded from OpenAI, code and reason as OpenAI sent them.
    [3000, "invalid_request_error.invalid_api_key", false, "invalid_request_error.invalid_api_key"],
    [
      4000,
      "invalid_request_error.beta_api_shape_disabled",
      false,
      "invalid_request_error.beta_api_shape_disabled",
    ],
    [4999, "", false, "close_4999"],
  ];
  for (const [code, reason, reconnect, why] of cases) {
    assert.deepEqual(
      closeDecision({ opened: true, code, reason }),
      { reconnect, why, code, reason },
      `${code} ${reason}`,
    );
  }
});

Deno.test("closeDecision: a bare 1006 (a browser on the edge runtime) is decided by the notice", () => {
  const cases: [Notice, boolean, string, number][] = [
    // [notice, reconnect, why, code]
    [notice(1012, "server_restarting"), true, "server_restarting", 1012],
    [notice(1011, "upstream_closed_abnormally"), true, "upstream_closed_abnormally", 1011],
    [notice(4001, "token_expired"), true, "token_expired", 4001],
    [notice(4002, "budget_exceeded"), false, "budget_exceeded", 4002],
    [notice(4409, "session_replaced"), false, "session_replaced", 4409],
    [notice(1008, "rate_limited"), false, "rate_limited", 1008],
    [notice(1008, "policy_violation"), false, "policy_violation", 1008],
    [notice(1009, "message_too_big"), false, "message_too_big", 1009],
    [notice(1013, "buffer_full"), false, "buffer_full", 1013],
    [notice(1011, "upstream_timeout"), false, "upstream_timeout", 1011],
    [notice(1011, "upstream_unavailable"), false, "upstream_unavailable", 1011],
    // Forwarded from OpenAI: the reason is the notice's message.
    [
      notice(4000, "upstream_closed", "invalid_request_error.x"),
      false,
      "invalid_request_error.x",
      4000,
    ],
    [
      notice(1000, "upstream_closed", "OpenAI closed the connection."),
      false,
      "OpenAI closed the connection.",
      1000,
    ],
  ];
  for (const [given, reconnect, why, code] of cases) {
    const decision = closeDecision({ opened: true, code: 1006, reason: "", notice: given });
    assert.deepEqual([decision.reconnect, decision.why, decision.code], [reconnect, why, code]);
  }
});

Deno.test("closeDecision: a code outside 1000-4999 (Deno reports 0 for a lost connection) is 1006", () => {
  for (const code of [0, 1, 999, 5000, Number.NaN]) {
    assert.deepEqual(closeDecision({ opened: true, code, reason: "" }), {
      reconnect: true,
      why: "connection_lost",
      code: 1006,
      reason: "",
    });
    const decided = closeDecision({
      opened: true,
      code,
      reason: "",
      notice: notice(1008, "rate_limited"),
    });
    assert.deepEqual([decided.reconnect, decided.why, decided.code], [false, "rate_limited", 1008]);
  }
});

Deno.test("closeDecision: a real code wins over a notice; no notice and 1006 is a lost connection", () => {
  const stale = notice(1008, "rate_limited");
  assert.equal(
    closeDecision({ opened: true, code: 1012, reason: "server_restarting", notice: stale })
      .reconnect,
    true,
  );
  assert.equal(
    closeDecision({
      opened: true,
      code: 1000,
      reason: "",
      notice: notice(1012, "server_restarting"),
    }).reconnect,
    false,
  );
  assert.deepEqual(closeDecision({ opened: true, code: 1006, reason: "", notice: null }), {
    reconnect: true,
    why: "connection_lost",
    code: 1006,
    reason: "",
  });
});

Deno.test("closeDecision: a connection that never opened ends the first connection, is retried later", () => {
  // Deno reports a failed handshake as code 0, browsers and ws as 1006: neither matters.
  for (const code of [0, 1006, 1015]) {
    assert.deepEqual(closeDecision({ opened: false, code, reason: "" }), {
      reconnect: false,
      why: "refused",
      code,
      reason: "",
    });
    assert.equal(
      closeDecision({ opened: false, code, reason: "", reconnecting: true }).reconnect,
      true,
    );
  }
});

Deno.test("closeNoticeOf reads every notice the relay sends, made by the relay's own code", () => {
  for (const frame of Object.values(RELAY_CLOSE)) {
    const sent = closeNotice(frame, "relay");
    assert.ok(sent !== null);
    const read = closeNoticeOf(JSON.parse(sent));
    assert.deepEqual([read?.code, read?.closeCode], [frame.reason, frame.code], frame.reason);
    // Decided on the notice over a bare 1006, as on the real code.
    const onNotice = closeDecision({ opened: true, code: 1006, reason: "", notice: read });
    const onCode = closeDecision({ opened: true, code: frame.code, reason: frame.reason });
    assert.deepEqual(onNotice, onCode, frame.reason);
  }
  const forwarded = closeNotice({ code: 4000, reason: "invalid_request_error.x" }, "upstream");
  assert.deepEqual(closeNoticeOf(JSON.parse(forwarded!)), {
    code: "upstream_closed",
    closeCode: 4000,
    message: "invalid_request_error.x",
  });
  const abnormal = closeNotice(RELAY_CLOSE.upstreamClosedAbnormally, "upstream");
  assert.equal(closeNoticeOf(JSON.parse(abnormal!))?.code, "upstream_closed_abnormally");
});

Deno.test("closeNoticeOf ignores everything that is not a relay notice", () => {
  const openaiError = {
    type: "error",
    event_id: "event_1",
    error: { type: "invalid_request_error", code: "session_expired", message: "m", param: null },
  };
  const policy = {
    type: "error",
    event_id: "relay_1",
    error: { type: "invalid_request_error", code: "relay_policy_violation", message: "m" },
  };
  const cases: unknown[] = [
    openaiError,
    policy,
    { type: "error", error: { type: "relay_error", code: "x" } }, // no close_code
    { type: "error", error: { type: "relay_error", close_code: 1012 } }, // no code
    { type: "session.created", error: { type: "relay_error", code: "x", close_code: 1 } },
    { type: "error", error: null },
    { type: "error" },
    null,
    "error",
    [],
  ];
  for (const event of cases) assert.equal(closeNoticeOf(event), null, JSON.stringify(event));
});

Deno.test("isSessionId accepts 22-64 characters of [A-Za-z0-9_-] and nothing else", () => {
  const cases: [unknown, boolean][] = [
    ["a".repeat(22), true],
    ["Z9_-".repeat(16), true], // 64
    [crypto.randomUUID().replaceAll("-", ""), true], // 32
    ["a".repeat(21), false],
    ["a".repeat(65), false],
    ["a".repeat(21) + "+", false],
    ["a".repeat(21) + "/", false],
    ["a".repeat(21) + "=", false],
    ["a".repeat(21) + " ", false],
    ["a".repeat(21) + "é", false],
    ["a".repeat(22) + "\n", false],
    ["", false],
    [undefined, false],
    [12345678901234567890123, false],
  ];
  for (const [value, want] of cases) assert.equal(isSessionId(value), want, String(value));
});

Deno.test("newSessionId is base64url of 16 random bytes: 22 characters the relay accepts", () => {
  assert.equal(newSessionId(() => new Uint8Array(16)), "A".repeat(22));
  assert.equal(newSessionId(() => new Uint8Array(16).fill(255)), "_".repeat(21) + "w");
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const want = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
        .replace(/=+$/, "");
      return newSessionId(() => bytes) === want;
    }),
  );
  const ids = new Set(Array.from({ length: 1000 }, () => newSessionId()));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.ok(isSessionId(id) && id.length === 22, id);
});

Deno.test("messageBytes counts UTF-8 bytes of text and bytes of binary", () => {
  const cases: [string | ArrayBuffer | Uint8Array, number][] = [
    ["", 0],
    ["a", 1],
    ["é", 2],
    ["€", 3],
    ["😀", 4],
    ["\ud800", 3], // a lone surrogate goes out as U+FFFD
    ["\udc00x", 4],
    ['{"type":"response.create"}', 26],
    [new ArrayBuffer(5), 5],
    [new Uint8Array(7).subarray(2), 5],
  ];
  for (const [data, want] of cases) assert.equal(messageBytes(data), want, String(data));
  const unit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));
  fc.assert(
    fc.property(
      fc.string({ unit, maxLength: 64 }),
      (text) => messageBytes(text) === new TextEncoder().encode(text).byteLength,
    ),
  );
});

Deno.test("fitsHold allows up to the bound, not past it", () => {
  const cases: [number, number, number, boolean][] = [
    [0, 0, 0, true],
    [0, 10, 10, true],
    [10, 0, 10, true],
    [5, 5, 10, true],
    [5, 6, 10, false],
    [0, 11, 10, false],
    [1_048_576, 1, 1_048_576, false],
  ];
  for (const [held, size, max, want] of cases) {
    assert.equal(fitsHold(held, size, max), want, `${held} + ${size} <= ${max}`);
  }
});

Deno.test("connectionTarget puts the session in the URL and the token in a subprotocol or ?jwt=", () => {
  const session = "s".repeat(22);
  assert.deepEqual(
    connectionTarget({ url: "wss://p.supabase.co/functions/v1/relay", session, token: "a.b.c" }),
    {
      url: `wss://p.supabase.co/functions/v1/relay?session=${session}`,
      protocols: ["realtime", "jwt-a.b.c"],
    },
  );
  assert.deepEqual(
    connectionTarget({
      url: "ws://127.0.0.1:8000/relay?x=1&session=old",
      session,
      token: "a.b.c",
      tokenIn: "query",
      model: "gpt-realtime",
    }),
    {
      url: `ws://127.0.0.1:8000/relay?x=1&session=${session}&model=gpt-realtime&jwt=a.b.c`,
      protocols: [],
    },
  );
});

Deno.test("connectionTarget with tokenIn header sends Authorization: Bearer and no subprotocol", () => {
  const session = "s".repeat(22);
  assert.deepEqual(
    connectionTarget({ url: "ws://127.0.0.1/relay", session, token: "a.b.c", tokenIn: "header" }),
    {
      url: `ws://127.0.0.1/relay?session=${session}`,
      protocols: [],
      headers: { authorization: "Bearer a.b.c" },
    },
  );
});

Deno.test("connect refuses bad options at once, naming them", () => {
  const getToken = () => "t";
  const url = "ws://127.0.0.1:1/relay";
  const cases: [Record<string, unknown>, new (...args: never[]) => Error, RegExp][] = [
    [{ url }, TypeError, /getToken/],
    [{ url: "https://example.com/relay", getToken }, TypeError, /ws:\/\/ or wss:\/\//],
    [{ url: "not a url", getToken }, TypeError, /url/],
    [{ url, getToken, session: "short" }, TypeError, /session must be 22-64/],
    [{ url, getToken, tokenIn: "cookie" }, TypeError, /tokenIn/],
    [{ url, getToken, readyOn: "later" }, TypeError, /readyOn/],
    [{ url, getToken, maxHeldBytes: -1 }, RangeError, /maxHeldBytes/],
    [{ url, getToken, maxAttempts: 1.5 }, RangeError, /maxAttempts/],
    [{ url, getToken, connectTimeoutMs: "5" }, RangeError, /connectTimeoutMs/],
    [{ url, getToken, backoff: { jitter: 2 } }, RangeError, /backoff\.jitter/],
  ];
  for (const [options, kind, message] of cases) {
    assert.throws(
      () => connect(options as never),
      (e) => e instanceof kind && message.test((e as Error).message),
      JSON.stringify(options),
    );
  }
});
