/* audit_ext 1.0 -> 1.1: tamper-evident chain, retention and archive, alert
 * rules and read auditing.  CREATE EXTENSION audit_ext installs 1.0 and runs
 * this script, so a fresh install and an upgraded one are the same objects. */
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.1'" to load this file. \quit

-- ====================================================================
-- Integrity: hash chain, verification (src/chain.c)
-- ====================================================================

-- Every event carries its place in a chain and a SHA-256 hash over its
-- columns and the previous hash of that chain (src/chain.c).  A chain
-- ("lane") is written by one process and holds one class, so concurrent
-- writers never wait for each other and each class can be pruned alone.
ALTER TABLE audit.event
    ADD COLUMN chain_lane bigint,
    ADD COLUMN chain_seq  bigint,
    ADD COLUMN hash       bytea;
COMMENT ON COLUMN audit.event.chain_lane IS 'Hash chain the event belongs to (one writing process, one class)';
COMMENT ON COLUMN audit.event.chain_seq IS 'Position of the event in its chain, from 1';
COMMENT ON COLUMN audit.event.hash IS 'SHA-256 over the event''s columns and the hash of the previous event of its chain';

-- Events written before the chain existed (version 1.0) have no hash:
-- audit.verify() counts them instead of reporting them.  A restored
-- database brings its row back (the filter keeps the empty marker of a
-- fresh install out of the dump).
CREATE TABLE audit.chain_origin (
    legacy_max_id bigint      NOT NULL,
    chained_since timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO audit.chain_origin (legacy_max_id)
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit.event_id_seq;
SELECT pg_catalog.pg_extension_config_dump('audit.chain_origin', 'WHERE legacy_max_id > 0');
COMMENT ON TABLE audit.chain_origin IS 'Highest event id written before events were chained (version 1.0)';

-- The heads of what retention removed: the chains continue across a
-- dropped partition.
CREATE TABLE audit.chain_anchor (
    class          text COLLATE "C" NOT NULL,
    chain_lane     bigint      NOT NULL,
    first_seq      bigint      NOT NULL,
    last_seq       bigint      NOT NULL,
    last_event_id  bigint      NOT NULL,
    last_hash      bytea       NOT NULL,
    events         bigint      NOT NULL,
    partition_name text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (class, chain_lane, first_seq)
);
SELECT pg_catalog.pg_extension_config_dump('audit.chain_anchor', '');
COMMENT ON TABLE audit.chain_anchor IS 'Chain positions removed by retention, with the hash of the last one';

-- Chain heads recorded by the worker (audit_ext.chain_checkpoint_interval)
-- and copied to the server log: cutting off the newest events of a chain is
-- noticed too.
CREATE TABLE audit.chain_checkpoint (
    class      text COLLATE "C" NOT NULL,
    chain_lane bigint      NOT NULL,
    chain_seq  bigint      NOT NULL,
    event_id   bigint      NOT NULL,
    hash       bytea       NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (class, chain_lane, chain_seq)
);
SELECT pg_catalog.pg_extension_config_dump('audit.chain_checkpoint', '');
COMMENT ON TABLE audit.chain_checkpoint IS 'Heads of the hash chains, recorded periodically';

GRANT SELECT ON audit.chain_origin, audit.chain_anchor, audit.chain_checkpoint TO audit_admin, audit_reader;

CREATE FUNCTION audit.chain_checkpoint()
RETURNS integer
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_chain_checkpoint';
COMMENT ON FUNCTION audit.chain_checkpoint() IS
    'Record the head of every chain of this database that moved since the last checkpoint; returns how many';
REVOKE ALL ON FUNCTION audit.chain_checkpoint() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.chain_checkpoint() TO audit_admin;

-- Called by retention just before a partition is dropped, in the same
-- transaction: the chains of what remains then still verify.
CREATE FUNCTION audit.chain_record_pruned(part regclass)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    EXECUTE format(
        'INSERT INTO audit.chain_anchor (class, chain_lane, first_seq, last_seq, last_event_id, last_hash, events, partition_name)
         SELECT class, chain_lane, min(chain_seq), max(chain_seq),
                (array_agg(id ORDER BY chain_seq DESC))[1],
                (array_agg(hash ORDER BY chain_seq DESC))[1],
                count(*), %L
           FROM %s
          WHERE chain_lane IS NOT NULL AND chain_seq IS NOT NULL AND hash IS NOT NULL
          GROUP BY class, chain_lane
         ON CONFLICT (class, chain_lane, first_seq) DO NOTHING', part::text, part);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION audit.chain_record_pruned(regclass) IS
    'Internal: record the chain heads of a partition about to be dropped by retention';
REVOKE ALL ON FUNCTION audit.chain_record_pruned(regclass) FROM PUBLIC;

-- The chain's definition as a function: what an event's hash is, given the
-- previous hash of its chain (32 zero bytes for the first).
CREATE FUNCTION audit.event_hash(e audit.event, prev_hash bytea)
RETURNS bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_event_hash';
COMMENT ON FUNCTION audit.event_hash(audit.event, bytea) IS
    'SHA-256 chain hash of an event following prev_hash (see docs/integrity.md for the serialisation)';
REVOKE ALL ON FUNCTION audit.event_hash(audit.event, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.event_hash(audit.event, bytea) TO audit_admin, audit_reader;

CREATE FUNCTION audit.verify_chains(from_time timestamptz, to_time timestamptz,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
REVOKE ALL ON FUNCTION audit.verify_chains(timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION audit.verify_chains(timestamptz, timestamptz) IS
    'Internal: the chain walk behind audit.verify()';

-- Walk the chains of the events in [from_time, to_time) (all when NULL) and
-- report the first event where one breaks.
CREATE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    SELECT * INTO verified, events, chains, legacy_events, unverifiable_links, breaks,
                  first_broken_event_id, first_broken_event_time, problem
      FROM audit.verify_chains(from_time, to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL); reports the first event where a chain breaks';
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz) TO PUBLIC;

-- ---- end of integrity ----


-- ====================================================================
-- Retention, archive, append-only protection, maintenance
-- ====================================================================

-- ---- end of retention ----


-- ====================================================================
-- Alert rules and read auditing
-- ====================================================================

-- ---- end of alerts ----


-- ====================================================================
-- Hardening (fuzz fixes)
--
-- Found by test/e2e/fuzz.sh and the isolation tests (specs/); see
-- docs/testing.md.  audit.enable / audit.disable: an OID naming no relation
-- is refused (42P01) instead of failing with a syntax error, malformed
-- option arrays get a clear error, and the table is locked before its
-- triggers are read, so that concurrent calls on one table wait for each
-- other instead of failing.  audit.resolve_record: an OID naming no
-- relation is refused (42P01).
-- ====================================================================

CREATE OR REPLACE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT '{}',
                             mask_columns text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       record;
    col       text;
    pk_cols   text[];
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table to audit must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    exclude_columns := coalesce(exclude_columns, '{}');
    mask_columns := coalesce(mask_columns, '{}');
    -- Fuzzing: a multidimensional array failed with "cannot concatenate
    -- incompatible arrays" and a NULL element with 'column "<NULL>"'.
    IF array_ndims(exclude_columns) > 1 OR array_ndims(mask_columns) > 1 THEN
        RAISE EXCEPTION 'exclude_columns and mask_columns must be one-dimensional arrays of column names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(exclude_columns, NULL) IS NOT NULL OR array_position(mask_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'exclude_columns and mask_columns must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT c.oid, c.relkind, c.relpersistence, n.nspname, c.relname
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    -- Fuzzing: an OID that names no relation went on to fail with a syntax
    -- error in the CREATE TRIGGER built from it.
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;

    IF rel.nspname = 'audit' THEN
        RAISE EXCEPTION 'cannot audit "%": it belongs to the audit trail itself', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Objects in schema audit are written only by audit_ext.',
                  HINT = 'Audit the application tables instead.';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot audit "%": it is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('"%s" is a %s.', tbl,
                                  CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                       WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                                       WHEN 'i' THEN 'index' WHEN 'c' THEN 'composite type'
                                       ELSE 'relation of kind ' || rel.relkind::text END),
                  HINT = 'Only ordinary and partitioned tables can be audited.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot audit "%": it is a temporary table', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Temporary tables vanish with their session, so there is no lasting record to keep.',
                  HINT = 'Audit a permanent table.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i
                JOIN pg_trigger t ON t.tgrelid = i.inhparent
               WHERE i.inhrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0) THEN
        RAISE EXCEPTION 'cannot audit partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Change the options on the partitioned table with audit.enable().';
    END IF;

    FOREACH col IN ARRAY exclude_columns || mask_columns LOOP
        IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute
                                       WHERE attrelid = tbl AND attname = col
                                         AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of table "%" does not exist', col, tbl
                USING ERRCODE = 'undefined_column',
                      DETAIL = CASE WHEN col = ANY (exclude_columns)
                                    THEN 'It was named in exclude_columns.'
                                    ELSE 'It was named in mask_columns.' END,
                      HINT = 'Name existing columns, spelled as in the table (case matters).';
        END IF;
    END LOOP;
    IF exclude_columns && mask_columns THEN
        RAISE EXCEPTION 'a column cannot be both excluded and masked'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Named in both: %s.',
                                  (SELECT string_agg(quote_ident(c), ', ')
                                     FROM unnest(exclude_columns) c WHERE c = ANY (mask_columns))),
                  HINT = 'Excluded columns are never stored; masked ones are stored as a marker. Choose one.';
    END IF;

    pk_cols := audit.key_columns(tbl);

    -- This month's and the next months' partitions exist before any event.
    PERFORM audit.create_partitions(2);
    -- Concurrent enable/disable calls on one table: wait here for the
    -- other to commit, then read the triggers it left.  Without this lock
    -- the second call failed ("trigger ... already exists" / "does not
    -- exist").  ACCESS EXCLUSIVE, the lock DROP TRIGGER takes anyway: a
    -- weaker one now and a stronger one later could deadlock with DML.
    -- Taken after create_partitions(), which may lock the trail's
    -- partitions: a writer holding those and waiting for this table would
    -- otherwise deadlock with us.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
    IF pk_cols && (exclude_columns || mask_columns) THEN
        RAISE EXCEPTION 'primary key columns of "%" cannot be excluded or masked', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The primary key is (%s); it identifies each audited record.',
                                  array_to_string(pk_cols, ', ')),
                  HINT = 'Leave key columns out of exclude_columns and mask_columns.';
    END IF;
    IF pk_cols IS NULL THEN
        RAISE NOTICE 'table "%" has no primary key or replica identity index: its records will be identified by the whole row', tbl
            USING HINT = 'Add a primary key for compact record ids and fast record history.';
    END IF;

    -- Idempotent: recreate the triggers with the current options.
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns);
    PERFORM audit.log_config_event('ENABLE AUDIT', tbl,
                                   jsonb_build_object('exclude_columns', to_jsonb(exclude_columns),
                                                      'mask_columns', to_jsonb(mask_columns)));
END
$$;

CREATE OR REPLACE FUNCTION audit.disable(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    -- Wait for a concurrent enable/disable of the table (and for DML in
    -- progress) before reading its triggers; see audit.enable().  Only
    -- tables can carry the audit triggers.
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row') THEN
        RAISE NOTICE 'table "%" is not audited', tbl;
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row' AND tgparentid <> 0) THEN
        RAISE EXCEPTION 'cannot stop auditing partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call audit.disable() on the partitioned table.';
    END IF;
    PERFORM audit.log_config_event('DISABLE AUDIT', tbl,
               (SELECT jsonb_build_object('exclude_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[1]::text[]),
                                          'mask_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[2]::text[]))
                  FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row'));
    PERFORM audit.drop_audit_triggers(tbl);
    RETURN true;
END
$$;

-- audit.record_history(regclass, ...) and audit.row_as_of(): an OID that
-- names no relation returned an empty history / NULL as if the table existed
-- without events; refuse it like a missing table name (42P01).
CREATE OR REPLACE FUNCTION audit.resolve_record(tbl regclass, record_id jsonb,
                                     OUT schema_name text, OUT table_name text,
                                     OUT record jsonb, OUT live regclass)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys  text[];
    given text[];
    full_row jsonb;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'invalid tbl: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF record_id IS NULL OR jsonb_typeof(record_id) <> 'object' OR record_id = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(record_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- events of a partition carry the name of the audited partitioned table
    SELECT a.relid INTO live
      FROM pg_partition_ancestors(tbl) WITH ORDINALITY AS a(relid, ord)
     WHERE EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = a.relid AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0)
     ORDER BY a.ord DESC
     LIMIT 1;
    live := coalesce(live, pg_partition_root(tbl), tbl);
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = live;

    keys := audit.key_columns(live);
    IF keys IS NULL THEN
        record := resolve_record.record_id;
        RETURN;
    END IF;
    given := ARRAY(SELECT jsonb_object_keys(resolve_record.record_id) ORDER BY 1);
    IF given <> ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
        RAISE EXCEPTION 'invalid record_id %: must name exactly the key columns of % (%)',
                        resolve_record.record_id, live, array_to_string(keys, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('For example {%s}.',
                                (SELECT string_agg(format('"%s": ...', k), ', ') FROM unnest(keys) k));
    END IF;
    BEGIN
        EXECUTE format('SELECT to_jsonb(r) FROM jsonb_populate_record(NULL::%s, $1) r', live)
            INTO full_row USING resolve_record.record_id;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'invalid record_id %: a value does not fit its key column of %', resolve_record.record_id, live
            USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    SELECT jsonb_object_agg(k, full_row -> k) INTO record FROM unnest(keys) k;
END
$$;
