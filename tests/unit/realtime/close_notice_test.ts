import assert from "node:assert/strict";
import { closeNotice } from "../../../supabase/functions/_shared/realtime/close_notice.ts";
import { RELAY_CLOSE } from "../../../supabase/functions/_shared/relay/close_codes.ts";

Deno.test("closeNotice names each of the relay's own closes by its reason and code", () => {
  for (const frame of Object.values(RELAY_CLOSE)) {
    const notice = JSON.parse(closeNotice(frame, "relay")!);
    assert.equal(notice.type, "error");
    assert.match(notice.event_id, /^relay_/);
    assert.deepEqual(
      { ...notice.error, message: typeof notice.error.message },
      {
        type: "relay_error",
        code: frame.reason,
        message: "string",
        param: null,
        event_id: null,
        close_code: frame.code,
      },
    );
    assert.ok(notice.error.message.length > 10, `a sentence for ${frame.reason}`);
  }
});

Deno.test("closeNotice marks upstream closes as forwarded, except the relay's own upstream failures", () => {
  const forwarded = JSON.parse(
    closeNotice({ code: 4000, reason: "beta_api_shape_disabled" }, "upstream")!,
  );
  assert.deepEqual([forwarded.error.code, forwarded.error.close_code, forwarded.error.message], [
    "upstream_closed",
    4000,
    "beta_api_shape_disabled",
  ]);
  const abnormal = JSON.parse(closeNotice(RELAY_CLOSE.upstreamClosedAbnormally, "upstream")!);
  assert.equal(abnormal.error.code, "upstream_closed_abnormally");
  const unavailable = JSON.parse(closeNotice(RELAY_CLOSE.upstreamUnavailable, "upstream")!);
  assert.equal(unavailable.error.code, "upstream_unavailable");
});

Deno.test("closeNotice gives nothing for a close the client started, and unique ids otherwise", () => {
  assert.equal(closeNotice({ code: 1000, reason: "bye" }, "client"), null);
  const ids = new Set(
    Array.from(
      { length: 100 },
      () => JSON.parse(closeNotice(RELAY_CLOSE.rateLimited, "relay")!).event_id,
    ),
  );
  assert.equal(ids.size, 100);
});
