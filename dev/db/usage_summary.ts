/**
 * Reads a user's `public.relay_usage_summary()` AS THAT USER, the way
 * Supabase's REST layer (PostgREST) runs `supabase.rpc("relay_usage_summary")`:
 * in one transaction it takes the token's role and claims
 * (`set_config('role', ...)`, `set_config('request.jwt.claims', ...)`, both
 * local to the transaction), then calls the function, so `auth.uid()`, row
 * level security and the grants decide what comes back, not the dev server.
 * @module
 */
import type { Database } from "../../supabase/functions/_shared/db/client.ts";

/** What `/api/usage` answers: the summary, with micros as JSON numbers. */
export interface UsageSummary {
  /** ISO 8601, the start of the current budget period (UTC). */
  readonly period_start: string;
  readonly spent_micros: number;
  /** `null`: unlimited. */
  readonly limit_micros: number | null;
  /** `null`: unlimited. */
  readonly remaining_micros: number | null;
}

/** The verified claims the request runs with (PostgREST's `request.jwt.claims`). */
export interface RequestClaims {
  readonly sub: string;
  readonly role: string;
}

interface SummaryRow {
  period_start: Date | string;
  spent_micros: string | number | null;
  limit_micros: string | number | null;
  remaining_micros: string | number | null;
}

/** Calls `public.relay_usage_summary()` as the user `claims` names. */
export async function usageSummaryAs(
  database: Database,
  claims: RequestClaims,
): Promise<UsageSummary> {
  const row = await database.run((sql) =>
    sql.begin(async (tx) => {
      await tx`select set_config('role', ${claims.role}, true),
        set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
      const [summary] = await tx<SummaryRow[]>`
        select period_start, spent_micros, limit_micros, remaining_micros
          from public.relay_usage_summary()`;
      return summary;
    })
  );
  if (!row) throw new Error("public.relay_usage_summary() returned no row");
  return {
    period_start: new Date(row.period_start).toISOString(),
    spent_micros: micros(row.spent_micros) ?? 0,
    limit_micros: micros(row.limit_micros),
    remaining_micros: micros(row.remaining_micros),
  };
}

/** A bigint column (postgres.js gives it as a string) as a JSON number: micros stay far below 2^53. */
function micros(value: string | number | null): number | null {
  return value === null ? null : Number(value);
}
