import assert from "node:assert/strict";
import { classifyAuthError } from "../../../supabase/functions/_shared/auth/verify.ts";

Deno.test("classifyAuthError blames Auth only for failures to answer", () => {
  const table: [unknown, string][] = [
    [{ name: "AuthRetryableFetchError", status: 0 }, "auth_unavailable"],
    [{ name: "AuthRetryableFetchError", status: 503 }, "auth_unavailable"],
    [{ name: "AuthUnknownError" }, "auth_unavailable"],
    [{ name: "AuthApiError", status: 500 }, "auth_unavailable"],
    [{ name: "AuthApiError", status: 403, code: "bad_jwt" }, "invalid_token"],
    [{ name: "AuthApiError", status: 401, code: "no_authorization" }, "invalid_token"],
    [{ name: "AuthInvalidJwtError", status: 400 }, "invalid_token"],
    [{ name: "AuthSessionMissingError", status: 400 }, "invalid_token"],
    [null, "invalid_token"],
    ["boom", "invalid_token"],
  ];
  for (const [error, expected] of table) {
    assert.equal(classifyAuthError(error), expected, JSON.stringify(error));
  }
});
