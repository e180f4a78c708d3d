-- audit_ext 1.3 -> 1.4: trust first (issue 18).
--   * code that runs with elevated rights resolves names in pg_catalog only and
--     never evaluates a user's code with elevated rights;
--   * tamper evidence that holds against a superuser;
--   * capture cannot be switched off quietly.
-- docs/architecture.md, "Threat model", lists every elevated path and its test.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.4'" to load this file. \quit
