import assert from "node:assert/strict";
import { parseMigrationFileName, splitStatements } from "../../../dev/db/migrations.ts";

Deno.test("parseMigrationFileName reads version and name as the Supabase CLI does", () => {
  const cases: [string, { version: string; name: string } | null][] = [
    ["20261201000100_relay_metering.sql", { version: "20261201000100", name: "relay_metering" }],
    ["1_a.sql", { version: "1", name: "a" }],
    ["20261201000100_.sql", { version: "20261201000100", name: "" }],
    ["20261201000100_two_parts_name.sql", {
      version: "20261201000100",
      name: "two_parts_name",
    }],
    ["relay_metering.sql", null],
    ["20261201000100.sql", null],
    ["20261201000100_relay.sql.bak", null],
    ["README.md", null],
  ];
  for (const [file, expected] of cases) {
    assert.deepEqual(parseMigrationFileName(file), expected, file);
  }
});

Deno.test("splitStatements splits at semicolons outside quotes, comments and bodies", () => {
  const cases: { name: string; sql: string; expected: string[] }[] = [
    { name: "two statements", sql: "select 1; select 2;", expected: ["select 1", "select 2"] },
    {
      name: "no final semicolon",
      sql: "select 1;\nselect 2\n",
      expected: ["select 1", "select 2"],
    },
    { name: "blank and empty", sql: " ;; \n ;", expected: [] },
    {
      name: "quotes keep semicolons",
      sql: "select 'a;b', 'it''s;'; select \"x;y\" from t;",
      expected: ["select 'a;b', 'it''s;'", 'select "x;y" from t'],
    },
    {
      name: "line comment stays with the next statement",
      sql: "-- first; still a comment\nselect 1;",
      expected: ["-- first; still a comment\nselect 1"],
    },
    {
      name: "nested block comment",
      sql: "/* a; /* b; */ c; */ select 1; select 2",
      expected: ["/* a; /* b; */ c; */ select 1", "select 2"],
    },
    {
      name: "dollar quotes, tagged and not",
      sql:
        "create function f() returns int as $body$ begin return 1; end; $body$ language plpgsql;" +
        " do $$ begin perform 1; end $$;",
      expected: [
        "create function f() returns int as $body$ begin return 1; end; $body$ language plpgsql",
        "do $$ begin perform 1; end $$",
      ],
    },
    {
      name: "a positional parameter is no tag",
      sql: "select $1; select 2",
      expected: ["select $1", "select 2"],
    },
    {
      name: "parentheses keep semicolons",
      sql: "select (';'); select 2",
      expected: ["select (';')", "select 2"],
    },
    {
      name: "begin atomic body",
      sql:
        "create function g(x int) returns int language sql\nbegin atomic\n select x; select x;\nend;" +
        " select 3;",
      expected: [
        "create function g(x int) returns int language sql\nbegin atomic\n select x; select x;\nend",
        "select 3",
      ],
    },
    {
      name: "a backslash escapes outside quotes only (the CLI's rule)",
      sql: "select 1 \\; select 2; select 3",
      expected: ["select 1 \\; select 2", "select 3"],
    },
    {
      name: "a trailing comment is a statement of its own",
      sql: "select 1;\n-- the end\n",
      expected: ["select 1", "-- the end"],
    },
    {
      name: "unicode",
      sql: "insert into t values ('Ünï;cödé'); select 'ß'",
      expected: ["insert into t values ('Ünï;cödé')", "select 'ß'"],
    },
  ];
  for (const { name, sql, expected } of cases) {
    assert.deepEqual(splitStatements(sql), expected, name);
  }
});
