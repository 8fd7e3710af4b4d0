import assert from "node:assert/strict";
import { createTelemetry } from "../../../supabase/functions/_shared/telemetry/log.ts";

Deno.test("createTelemetry writes one JSON object per line: event, ts, then the fields", () => {
  const lines: string[] = [];
  const telemetry = createTelemetry(
    "info",
    (line) => lines.push(line),
    () => Date.UTC(2026, 11, 1),
  );
  telemetry.info("usage", { conn: "c1", user: 'u"1', usage: { total_tokens: 3 }, n: null });
  telemetry.info("empty", {});
  telemetry.debug("message.received", { conn: "c1" });
  assert.equal(lines.length, 2, "debug is below info");
  assert.deepEqual(lines.map((line) => JSON.parse(line)), [
    {
      event: "usage",
      ts: "2026-12-01T00:00:00.000Z",
      conn: "c1",
      user: 'u"1',
      usage: { total_tokens: 3 },
      n: null,
    },
    { event: "empty", ts: "2026-12-01T00:00:00.000Z" },
  ]);
  assert.deepEqual(Object.keys(JSON.parse(lines[0]!)).slice(0, 2), ["event", "ts"]);
});
