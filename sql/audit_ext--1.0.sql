/* audit_ext 1.0 — install script.  Objects live in the fixed schema "audit". */

\echo Use "CREATE EXTENSION audit_ext" to load this file. \quit

-- ===========================================================================
-- Roles.  Roles are cluster-wide, so a second database must not fail here.
-- ===========================================================================
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_admin') THEN
        CREATE ROLE audit_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_reader') THEN
        CREATE ROLE audit_reader NOLOGIN;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO audit_admin, audit_reader;
COMMENT ON SCHEMA audit IS 'audit_ext: the audit trail and its configuration; readable by audit_admin and audit_reader only';

-- ===========================================================================
-- The store
-- ===========================================================================
CREATE SEQUENCE audit.event_id_seq AS bigint;
COMMENT ON SEQUENCE audit.event_id_seq IS 'Event ids: increasing in the order events were captured';
SELECT pg_catalog.pg_extension_config_dump('audit.event_id_seq', '');

-- One row per audit event.  Partitioned by class (each class can be kept for
-- its own time), then by month of event_time.  Names use the "C" collation:
-- byte-wise comparison is the cheapest to index and the same in every
-- database.  Rows are written by the C
-- event writer (src/event_writer.c) directly, never through SQL by users.
CREATE TABLE audit.event (
    id               bigint      NOT NULL DEFAULT pg_catalog.nextval('audit.event_id_seq'),
    event_time       timestamptz NOT NULL,
    class            text COLLATE "C"        NOT NULL,
    action           text COLLATE "C"        NOT NULL,
    status           text COLLATE "C"        NOT NULL DEFAULT 'success',
    db_user          text COLLATE "C",
    "session_user"   text COLLATE "C",
    actor            text COLLATE "C",
    client_addr      inet,
    application_name text COLLATE "C",
    backend_pid      integer,
    txid             bigint,
    statement_id     bigint,
    statement_seq    integer,
    schema_name      text COLLATE "C",
    table_name       text COLLATE "C",
    record_id        jsonb,
    old_data         jsonb,
    new_data         jsonb,
    changed_columns  text[],
    detail           jsonb,
    CONSTRAINT event_class_check
        CHECK (class IN ('data', 'auth', 'privilege', 'ddl', 'read', 'system')),
    CONSTRAINT event_status_check CHECK (status IN ('success', 'failure'))
) PARTITION BY LIST (class);

COMMENT ON TABLE audit.event IS 'The audit trail: one row per event, partitioned by class and month';
COMMENT ON COLUMN audit.event.id IS 'Event id, increasing in capture order';
COMMENT ON COLUMN audit.event.event_time IS 'Start time of the statement that caused the event (statement_timestamp())';
COMMENT ON COLUMN audit.event.class IS 'data, auth, privilege, ddl, read or system';
COMMENT ON COLUMN audit.event.action IS 'INSERT, UPDATE, DELETE, TRUNCATE for data events';
COMMENT ON COLUMN audit.event.status IS 'success or failure';
COMMENT ON COLUMN audit.event.db_user IS 'current_user when the event happened';
COMMENT ON COLUMN audit.event."session_user" IS 'session_user when the event happened';
COMMENT ON COLUMN audit.event.actor IS 'Application-level user: audit_ext.actor when set, else db_user';
COMMENT ON COLUMN audit.event.client_addr IS 'Client address of the session (NULL for a Unix socket)';
COMMENT ON COLUMN audit.event.application_name IS 'application_name of the session';
COMMENT ON COLUMN audit.event.backend_pid IS 'Process id of the backend';
COMMENT ON COLUMN audit.event.txid IS 'Top-level transaction id (as txid_current())';
COMMENT ON COLUMN audit.event.statement_id IS 'Key of the statement text in audit.statement (text stored once)';
COMMENT ON COLUMN audit.event.statement_seq IS 'Number of the statement within its transaction: (txid, statement_seq) identifies one execution';
COMMENT ON COLUMN audit.event.schema_name IS 'Schema of the audited table (the partitioned root for partitions)';
COMMENT ON COLUMN audit.event.table_name IS 'Name of the audited table (the partitioned root for partitions)';
COMMENT ON COLUMN audit.event.record_id IS 'Primary-key values of the row, or the whole row when the table has no primary key';
COMMENT ON COLUMN audit.event.old_data IS 'DELETE: the old row; UPDATE: old values of the changed columns';
COMMENT ON COLUMN audit.event.new_data IS 'INSERT: the new row; UPDATE: new values of the changed columns';
COMMENT ON COLUMN audit.event.changed_columns IS 'UPDATE: the columns whose value changed';
COMMENT ON COLUMN audit.event.detail IS 'Further facts of the event, by class';

-- Indexes live on each leaf partition, not on the partitioned parents: a
-- parent index owned by the extension would make pg_restore collide with the
-- partition indexes it dumps.  audit.create_event_indexes() is the one place
-- that says which indexes a partition has.
CREATE FUNCTION audit.create_event_indexes(part regclass)
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
    -- turns random-key inserts into appends: a btree on the key wrote a
    -- full-page image for most OLTP inserts after each checkpoint (WAL per
    -- pgbench transaction 12.8 kB against 9.3 kB with GIN, 7.3 kB unaudited).
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (record_id jsonb_path_ops) '
                   'WITH (fastupdate = on, gin_pending_list_limit = 2048)', name || '_record_idx', part);
    -- what one actor did, newest first
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (actor, id)', name || '_actor_idx', part);
    -- time ranges inside a partition: tiny, and nearly free to maintain
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING brin (event_time)', name || '_time_brin', part);
END
$$;
COMMENT ON FUNCTION audit.create_event_indexes(regclass) IS
    'Internal: create the indexes every audit event partition has';

-- Statement texts, stored once however many rows or transactions they touch.
CREATE TABLE audit.statement (
    statement_id   bigint      PRIMARY KEY,
    statement_text text        NOT NULL,
    first_seen     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit.statement IS 'SQL text of audited statements, stored once per distinct text';
SELECT pg_catalog.pg_extension_config_dump('audit.statement', '');

-- ===========================================================================
-- Partitions
-- ===========================================================================
CREATE FUNCTION audit.event_classes()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['data', 'auth', 'privilege', 'ddl', 'read', 'system']::text[] $$;
COMMENT ON FUNCTION audit.event_classes() IS 'The event classes, each stored in its own partition tree';

-- Create the monthly partitions from the current month to "months_ahead"
-- months ahead for every class, moving any rows that had landed in a class's
-- default partition into the new partition.
CREATE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 2)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cls     text;
    m       integer;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    created integer := 0;
    moved   bigint;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', coalesce(months_ahead::text, 'NULL'));
    END IF;
    FOREACH cls IN ARRAY audit.event_classes() LOOP
        FOR m IN 0 .. months_ahead LOOP
            lo := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                  + make_interval(months => m);
            hi := lo + interval '1 month';
            part := format('event_%s_p%s', cls, to_char(lo AT TIME ZONE 'UTC', 'YYYYMM'));
            CONTINUE WHEN to_regclass(format('audit.%I', part)) IS NOT NULL;

            -- Rows for this month may already sit in the default partition:
            -- create the partition standalone, move them, then attach.
            EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', 'event_' || cls);
            EXECUTE format('CREATE TABLE audit.%I (LIKE audit.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           part, 'event_' || cls);
            EXECUTE format('WITH m AS (DELETE FROM audit.%I WHERE event_time >= $1 AND event_time < $2 RETURNING *)
                            INSERT INTO audit.%I SELECT * FROM m', 'event_' || cls || '_default', part)
                USING lo, hi;
            GET DIAGNOSTICS moved = ROW_COUNT;
            PERFORM audit.create_event_indexes(format('audit.%I', part)::regclass);
            EXECUTE format('ALTER TABLE audit.%I ATTACH PARTITION audit.%I FOR VALUES FROM (%L) TO (%L)',
                           'event_' || cls, part, lo, hi);
            EXECUTE format('GRANT SELECT ON audit.%I TO audit_admin, audit_reader', part);
            created := created + 1;
            IF moved > 0 THEN
                RAISE NOTICE 'moved % events from the default partition into %', moved, part;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION audit.create_partitions(integer) IS
    'Create monthly audit partitions from this month to months_ahead ahead; returns how many were created';

DO $parts$
DECLARE
    cls text;
BEGIN
    FOREACH cls IN ARRAY audit.event_classes() LOOP
        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.event FOR VALUES IN (%L) PARTITION BY RANGE (event_time)',
                       'event_' || cls, cls);
        EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls,
                       format('Audit events of class %s, by month', cls));
        -- Safety net: a row whose month has no partition yet is never lost.
        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I DEFAULT',
                       'event_' || cls || '_default', 'event_' || cls);
        EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls || '_default',
                       format('Audit events of class %s whose month has no partition yet; audit.create_partitions() moves them', cls));
        PERFORM audit.create_event_indexes(format('audit.%I', 'event_' || cls || '_default')::regclass);
        -- A member (CREATE EXTENSION makes it again on restore) whose rows
        -- pg_dump keeps.
        PERFORM pg_catalog.pg_extension_config_dump(format('audit.%I', 'event_' || cls || '_default'), '');
    END LOOP;
END
$parts$;

-- The monthly partitions are made at run time, by audit.enable() before the
-- first event can exist and by audit.create_partitions(), and are not
-- extension members: pg_dump dumps them like any table, and a restore's
-- CREATE EXTENSION, which makes only the parents and default partitions,
-- does not collide with them.

-- ===========================================================================
-- Capture (C)
-- ===========================================================================
CREATE FUNCTION audit.capture_row()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_capture_row';
COMMENT ON FUNCTION audit.capture_row() IS
    'Row trigger installed by audit.enable(): captures INSERT, UPDATE and DELETE; arguments: excluded columns, masked columns';

CREATE FUNCTION audit.capture_truncate()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_capture_truncate';
COMMENT ON FUNCTION audit.capture_truncate() IS
    'Statement trigger installed by audit.enable(): captures TRUNCATE';

CREATE FUNCTION audit.trigger_arguments(tgargs bytea)
RETURNS text[]
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_trigger_arguments';
COMMENT ON FUNCTION audit.trigger_arguments(bytea) IS
    'Decode pg_trigger.tgargs into a text array';

-- ===========================================================================
-- Configuration: audit.enable / audit.disable / audit.audited_tables
--
-- The configuration of a table is its audit trigger: the trigger arguments
-- carry the options, so the C trigger needs no lookup, pg_dump keeps the
-- options with the table, and renaming the table changes nothing.
-- ===========================================================================
-- Remove the audit triggers of a table and of all its partitions.
CREATE FUNCTION audit.drop_audit_triggers(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg record;
BEGIN
    FOR trg IN
        SELECT t.tgname, t.tgrelid::regclass AS rel
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT relid, level FROM pg_partition_tree(tbl) WHERE relid <> tbl) p
          JOIN pg_trigger t ON t.tgrelid = p.relid
         WHERE t.tgname IN ('audit_ext_row', 'audit_ext_truncate')
           AND t.tgparentid = 0
         ORDER BY p.level
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, trg.rel);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.drop_audit_triggers(regclass) IS
    'Internal: remove the audit triggers of a table and its partitions';

-- The columns that identify a record: the primary key, else the replica
-- identity index (the same choice the C trigger makes); NULL if neither.
CREATE FUNCTION audit.key_columns(tbl regclass)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
      FROM (SELECT i.indrelid, i.indkey
              FROM pg_index i
             WHERE i.indrelid = tbl AND (i.indisprimary OR i.indisreplident)
             ORDER BY i.indisprimary DESC
             LIMIT 1) i
      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
$$;
COMMENT ON FUNCTION audit.key_columns(regclass) IS
    'Columns that identify a record of the table in record_id: primary key, else replica identity index';

CREATE FUNCTION audit.enable(tbl regclass,
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
    part      regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table to audit must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    exclude_columns := coalesce(exclude_columns, '{}');
    mask_columns := coalesce(mask_columns, '{}');

    SELECT c.oid, c.relkind, c.relpersistence, n.nspname, c.relname
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;

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
    PERFORM audit.drop_audit_triggers(tbl);
    EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L)',
                   tbl, exclude_columns::text, mask_columns::text);
    EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                   tbl, exclude_columns::text, mask_columns::text);
    -- Statement triggers are not cloned to partitions: give each existing
    -- partition its own TRUNCATE trigger (new ones get it from
    -- audit.on_ddl_command_end).
    FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.relid <> tbl LOOP
        EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                       part, exclude_columns::text, mask_columns::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.enable(regclass, text[], text[]) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event';

CREATE FUNCTION audit.disable(tbl regclass)
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
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row') THEN
        RAISE NOTICE 'table "%" is not audited', tbl;
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row' AND tgparentid <> 0) THEN
        RAISE EXCEPTION 'cannot stop auditing partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call audit.disable() on the partitioned table.';
    END IF;
    PERFORM audit.drop_audit_triggers(tbl);
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.disable(regclass) IS
    'Stop auditing a table; its history stays. Returns false (with a NOTICE) if it was not audited';

-- New partitions of an audited partitioned table get the TRUNCATE trigger
-- too (row triggers are cloned by PostgreSQL itself).
CREATE FUNCTION audit.on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part oid;
    root record;
BEGIN
    -- CREATE TABLE ... PARTITION OF names the new partition; ALTER TABLE ...
    -- ATTACH PARTITION names the parent: look at the whole tree below each.
    FOR part IN
        SELECT DISTINCT t.relid
          FROM pg_event_trigger_ddl_commands() c
          CROSS JOIN LATERAL (SELECT c.objid AS relid
                              UNION ALL
                              SELECT relid FROM pg_partition_tree(c.objid)) t
         WHERE c.object_type IN ('table', 'table column') AND c.classid = 'pg_class'::regclass
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part AND tgname = 'audit_ext_truncate');
        FOR root IN
            SELECT audit.trigger_arguments(t.tgargs) AS args
              FROM pg_partition_ancestors(part) WITH ORDINALITY a(relid, ord)
              JOIN pg_trigger t ON t.tgrelid = a.relid AND t.tgname = 'audit_ext_truncate'
             WHERE a.relid <> part
             ORDER BY a.ord
             LIMIT 1
        LOOP
            EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                           part::regclass, root.args[1], root.args[2]);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.on_ddl_command_end() IS
    'Event trigger: gives new partitions of audited tables their TRUNCATE trigger';

CREATE EVENT TRIGGER audit_ext_ddl_command_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION audit.on_ddl_command_end();

CREATE VIEW audit.audited_tables AS
SELECT c.oid::regclass                              AS table_oid,
       n.nspname::text                              AS schema_name,
       c.relname::text                              AS table_name,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       (audit.trigger_arguments(t.tgargs))[1]::text[] AS exclude_columns,
       (audit.trigger_arguments(t.tgargs))[2]::text[] AS mask_columns,
       audit.key_columns(c.oid)                     AS key_columns,
       t.tgenabled <> 'D'                           AS capturing
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;
COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if someone disabled the audit trigger';

-- Events with their statement text joined in.
CREATE VIEW audit.event_with_statement AS
SELECT e.*, s.statement_text
  FROM audit.event e
  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id;
COMMENT ON VIEW audit.event_with_statement IS 'audit.event with the SQL text of each event''s statement';

-- ===========================================================================
-- Privileges: audit roles read; nobody but the extension writes.
-- ===========================================================================
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA audit TO audit_admin, audit_reader;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[]), audit.disable(regclass),
                          audit.create_partitions(integer) TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.trigger_arguments(bytea),
                          audit.key_columns(regclass),
                          audit.event_classes() TO audit_admin, audit_reader;
