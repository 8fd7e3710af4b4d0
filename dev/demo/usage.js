// The Usage panel (#usage, #usage-*): the signed-in user's spend from
// GET /api/usage on the demo server (404 when metering is off).
import { $, demo, page } from "./state.js";

/** How long after a response.done the usage panel reads again (the relay writes it meanwhile). */
const USAGE_FOLLOW_UP_MS = 1500;

function dollars(micros) {
  if (micros === null || micros === undefined) return "unlimited";
  const usd = micros / 1_000_000;
  return `$${usd.toFixed(Math.abs(usd) < 1 ? 4 : 2)}`;
}

let usageFollowUp = null;

/**
 * Reads usage now and once more a moment later: the relay records a
 * response's cost after it has passed it on, so a read at response.done can
 * come before the write.
 */
export function refreshUsageSoon() {
  void refreshUsage();
  clearTimeout(usageFollowUp);
  usageFollowUp = setTimeout(() => void refreshUsage(), USAGE_FOLLOW_UP_MS);
}

/** Reads and shows the user's usage; resolves to whether the budget is spent. */
export async function refreshUsage() {
  let body = null;
  try {
    const response = await fetch("/api/usage", {
      headers: page.accessToken ? { authorization: `Bearer ${page.accessToken}` } : {},
      cache: "no-store",
    });
    if (response.ok) body = await response.json();
  } catch { /* the demo server or the database is away: same as off */ }
  const valid = body && Number.isFinite(body.spent_micros);
  demo.usage = valid ? { metering: "on", ...body } : { metering: "off" };
  const spent = valid && body.remaining_micros !== null && body.remaining_micros <= 0;
  $("usage-state").textContent = !valid
    ? "metering off"
    : spent || demo.relayClose?.code === "budget_exceeded"
    ? "budget spent"
    : "metering on";
  $("usage-spent").textContent = valid ? dollars(body.spent_micros) : "–";
  $("usage-limit").textContent = valid ? dollars(body.limit_micros) : "–";
  $("usage-remaining").textContent = valid ? dollars(body.remaining_micros) : "–";
  $("usage-period").textContent = valid && body.period_start
    ? new Date(body.period_start).toLocaleString()
    : "–";
  $("usage").classList.toggle("spent", Boolean(spent));
  return Boolean(spent);
}
