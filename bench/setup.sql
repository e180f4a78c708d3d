-- Helpers installed in every benchmark database (schema "bench").
-- bench.probe(): WAL insert position, wall clock, and the size / row count of
-- the audit trail kept by the variant of this database:
--   audit_ext: all relations of schema "audit" (partitions, statement texts,
--              indexes, TOAST), rows = events taken from audit.event_id_seq
--   table_log: all relations of schema "tlog" (the log tables, their
--              trigger_id primary keys), rows = sum of the log sequences
--   sql_floor: schema "sqlfloor" (its unindexed sink), rows = its id sequence
--   base:      none of these schemas exists, so 0 and 0.
CREATE SCHEMA IF NOT EXISTS bench;

CREATE OR REPLACE FUNCTION bench.probe(OUT lsn pg_lsn, OUT trail_bytes bigint, OUT trail_rows bigint)
LANGUAGE sql VOLATILE
AS $$
SELECT pg_current_wal_lsn(),
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('audit', 'tlog', 'sqlfloor') AND c.relkind IN ('r', 'm')),
       (SELECT coalesce(sum(s.last_value), 0)::bigint
          FROM pg_sequences s
         WHERE (s.schemaname = 'audit' AND s.sequencename = 'event_id_seq')
            OR s.schemaname IN ('tlog', 'sqlfloor'))
$$;

-- bench/tpcb_request.pgbench (CTX_PER_TXN=1) calls this at the start of each
-- transaction; bench/run.sh replaces it in the audit_ctx databases by one
-- that sets the request's end-user context.
CREATE OR REPLACE FUNCTION bench.begin_request(k integer)
RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT NULL::void $$;
