-- audit_ext 1.1 -> 1.2: the write path of the trail, made leaner.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.2'" to load this file. \quit

-- ===========================================================================
-- Event partitions: GIN pending list cleaned off the writer's path
-- ===========================================================================
-- The record index is a GIN whose pending list turns random-key inserts into
-- appends.  With a 2 MB pending list the statement that filled it merged it
-- into the index tree itself: 9 of the 21 s of an audited 1M-row INSERT, and
-- an occasional OLTP transaction paying for thousands of events before it.
-- The list may now grow to 64 MB (about 2M events) and autovacuum cleans it:
-- every event partition is vacuumed after 20,000 inserts rather than after
-- 20% of its rows, which also keeps its BRIN summarised and its pages
-- all-visible.  Figures in docs/performance.md.
CREATE OR REPLACE FUNCTION audit.create_event_indexes(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
    -- keyset pagination and lookups by id
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (id)', name || '_id_idx', part);
    -- record history: record_id @> '{"id": 42}'.  GIN with its pending list
    -- turns random-key inserts into appends (a btree on the key wrote a
    -- full-page image for most OLTP inserts after each checkpoint); the list
    -- is merged by (auto)vacuum; its size is set by audit.tune_event_partition().
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (record_id jsonb_path_ops) '
                   'WITH (fastupdate = on)', name || '_record_idx', part);
    -- what one actor did, newest first
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (actor, id)', name || '_actor_idx', part);
    -- time ranges inside a partition: tiny, and nearly free to maintain
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING brin (event_time)', name || '_time_brin', part);
    PERFORM audit.tune_event_partition(part);
END
$$;

CREATE FUNCTION audit.tune_event_partition(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
    -- Insert-only: vacuum after a fixed number of inserts, whatever the
    -- partition's size, so that the GIN pending list is merged by autovacuum
    -- and not by the statement that happens to overflow it.
    EXECUTE format('ALTER TABLE %s SET (autovacuum_vacuum_insert_threshold = 20000, '
                   'autovacuum_vacuum_insert_scale_factor = 0)', part);
    IF to_regclass(format('audit.%I', name || '_record_idx')) IS NOT NULL THEN
        EXECUTE format('ALTER INDEX audit.%I SET (gin_pending_list_limit = 65536)', name || '_record_idx');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION audit.tune_event_partition(regclass) FROM PUBLIC;
COMMENT ON FUNCTION audit.tune_event_partition(regclass) IS
    'Internal: storage settings of an event partition (autovacuum after 20,000 inserts, 64 MB GIN pending list)';

SELECT audit.tune_event_partition(t.relid)
  FROM pg_catalog.pg_partition_tree('audit.event') t
 WHERE t.isleaf;
