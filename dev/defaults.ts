/**
 * What `deno task dev` turns on when the environment does not say otherwise:
 * metering with a budget small enough to watch run out, an example session
 * policy, resumable sessions and rooms, all against the embedded database. The relay
 * reads them through its normal settings parser, like any environment.
 * @module
 */

/** The example policy: the instructions and the voice are the relay's, and locked. */
export const DEV_SESSION_POLICY = {
  session: {
    type: "realtime",
    instructions:
      "You are the relay's demo assistant. Answer in one or two short sentences, and say so when you do not know.",
    audio: { output: { voice: "marin" } },
  },
  locked: ["instructions", "audio.output.voice"],
} as const;

/**
 * Dev defaults, each applied only where the environment leaves it unset.
 * `RELAY_BUDGET_USD` needs metering, so it is applied only when metering ends up on.
 */
export const DEV_DEFAULTS: Readonly<Record<string, string>> = {
  RELAY_METERING: "on",
  // The stand-in answers in audio: its first turn costs about 0.6 cents, each
  // later one about 1.3 (the conversation is input again), so the fifth spends it.
  RELAY_BUDGET_USD: "0.05",
  RELAY_BUDGET_REFRESH_S: "2",
  RELAY_SESSION_POLICY: JSON.stringify(DEV_SESSION_POLICY),
  RELAY_RESUME: "on",
  // Rooms with access decided in SQL (relay.room_access), as a project would run them.
  RELAY_ROOMS: "database",
  // Each room keeps its newest 100 broadcasts: a member who reconnects gets what it missed.
  RELAY_ROOM_HISTORY: "100",
};

/** Whether a toggle variable reads as on, as the settings parser reads it (`on`, `true`). */
export function isOn(value: string | undefined): boolean {
  const normalized = value?.trim().toLowerCase();
  return normalized === "on" || normalized === "true";
}

function isSet(env: Readonly<Record<string, string | undefined>>, name: string): boolean {
  return (env[name]?.trim() ?? "") !== "";
}

/** `env` with the dev defaults filled in, and the names that were filled. */
export function withDevDefaults(
  env: Readonly<Record<string, string | undefined>>,
): { env: Record<string, string | undefined>; applied: string[] } {
  const result: Record<string, string | undefined> = { ...env };
  const applied: string[] = [];
  for (const [name, value] of Object.entries(DEV_DEFAULTS)) {
    if (isSet(env, name)) continue;
    if (name === "RELAY_BUDGET_USD" && !isOn(result.RELAY_METERING)) continue;
    if (
      name === "RELAY_ROOM_HISTORY" && (result.RELAY_ROOMS ?? "off").trim().toLowerCase() === "off"
    ) {
      continue;
    }
    result[name] = value;
    applied.push(name);
  }
  return { env: result, applied };
}

/** Where the relay's database comes from in dev. */
export type DevDatabasePlan =
  /** Neither metering, resume nor database-decided rooms is on: no database. */
  | "none"
  /** `RELAY_DATABASE_URL` (or `SUPABASE_DB_URL`) is set: that database, as it is. */
  | "external"
  /** The embedded PGlite, prepared like a Supabase project with the migrations applied. */
  | "embedded";

/** Which database the dev stack uses for `env`. */
export function devDatabasePlan(
  env: Readonly<Record<string, string | undefined>>,
): DevDatabasePlan {
  const roomsInDatabase = env.RELAY_ROOMS?.trim().toLowerCase() === "database" ||
    Number(env.RELAY_ROOM_HISTORY?.trim() || "0") > 0;
  if (!isOn(env.RELAY_METERING) && !isOn(env.RELAY_RESUME) && !roomsInDatabase) return "none";
  return isSet(env, "RELAY_DATABASE_URL") || isSet(env, "SUPABASE_DB_URL")
    ? "external"
    : "embedded";
}

/** A database URL fit to print: the password replaced by `***`. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<database url>";
  }
}
