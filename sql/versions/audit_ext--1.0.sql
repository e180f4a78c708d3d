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

-- (Re)create the audit triggers of a table with the given options.  The
-- options travel as trigger arguments (text[] literals).
CREATE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
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
COMMENT ON FUNCTION audit.install_triggers(regclass, text[], text[]) IS
    'Internal: (re)create the audit triggers of a table with its options';

-- Keep the options of an audited table true after ALTER TABLE: a renamed
-- excluded or masked column keeps being hidden under its new name, a dropped
-- one leaves the lists.  Called by the library's utility hook after
-- RENAME COLUMN (old_name, new_name) and after ALTER TABLE (NULL, NULL).
-- Without the hook (library not preloaded) capture fails closed instead.
CREATE FUNCTION audit.sync_column_options(tbl regclass, old_name text, new_name text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args    text[];
    excl    text[];
    mask    text[];
    n_excl  text[];
    n_mask  text[];
BEGIN
    SELECT audit.trigger_arguments(t.tgargs) INTO args
      FROM pg_trigger t
     WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0;
    IF args IS NULL THEN
        RETURN false;
    END IF;
    excl := coalesce(args[1]::text[], '{}');
    mask := coalesce(args[2]::text[], '{}');
    IF old_name IS NOT NULL THEN
        n_excl := array_replace(excl, old_name, new_name);
        n_mask := array_replace(mask, old_name, new_name);
    ELSE
        n_excl := excl;
        n_mask := mask;
    END IF;
    -- names that are no longer columns were dropped
    SELECT coalesce(array_agg(c ORDER BY o), '{}') INTO n_excl
      FROM unnest(n_excl) WITH ORDINALITY u(c, o)
     WHERE EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    SELECT coalesce(array_agg(c ORDER BY o), '{}') INTO n_mask
      FROM unnest(n_mask) WITH ORDINALITY u(c, o)
     WHERE EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    IF n_excl = excl AND n_mask = mask THEN
        RETURN false;
    END IF;
    PERFORM audit.install_triggers(tbl, n_excl, n_mask);
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.sync_column_options(regclass, text, text) IS
    'Internal: follow renamed and dropped excluded/masked columns in a table''s audit options';

-- A ddl event about auditing itself (audit.enable/disable), written with the
-- caller's transaction; the user recorded is the session's role.
CREATE FUNCTION audit.log_config_event(action text, tbl regclass, detail jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'audit_log_config_event';
COMMENT ON FUNCTION audit.log_config_event(text, regclass, jsonb) IS
    'Internal: record a change to auditing (ENABLE AUDIT, DISABLE AUDIT) as a ddl event';

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
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns);
    PERFORM audit.log_config_event('ENABLE AUDIT', tbl,
                                   jsonb_build_object('exclude_columns', to_jsonb(exclude_columns),
                                                      'mask_columns', to_jsonb(mask_columns)));
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
    PERFORM audit.log_config_event('DISABLE AUDIT', tbl,
               (SELECT jsonb_build_object('exclude_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[1]::text[]),
                                          'mask_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[2]::text[]))
                  FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row'));
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

-- ===========================================================================
-- Reading the trail (issue 3): search, change views, record history,
-- point-in-time rows, undo, activity reports, CSV export.
--
-- Appended to the install script after its privilege section, so every
-- object below sets its own privileges.  Who may call what:
--   audit_admin, audit_reader : every reading function and view
--   audit_admin only          : audit.undo()
--   everyone else             : nothing (SQLSTATE 42501)
-- The reading functions are SECURITY DEFINER (they read the trail as its
-- owner) and start with audit.require_audit_role(), which checks the role of
-- the session, not the definer: see that function.  audit.undo() is
-- SECURITY INVOKER on purpose (see there).  docs/reading.md is the user's
-- guide to all of this.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Access check
-- ---------------------------------------------------------------------------
-- Inside a SECURITY DEFINER function current_user is the function's owner,
-- so a check of current_user alone would always pass there.  The role the
-- session acts as is the "role" setting (SET ROLE) or, when none is set,
-- session_user; SECURITY DEFINER does not change either.  Both that role and
-- current_user must be audit roles (or superusers): in a SECURITY INVOKER
-- context (audit.undo) current_user is the caller; in our SECURITY DEFINER
-- functions it is the owner and the session's role decides.  Consequence:
-- the trail cannot be handed to a non-audit session by wrapping these
-- functions in someone else's SECURITY DEFINER function.
CREATE FUNCTION audit.require_audit_role(admin_only boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    session_role text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                              ELSE current_setting('role') END;
    who text;
BEGIN
    FOREACH who IN ARRAY ARRAY[session_role, current_user::text] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = who AND r.rolsuper);
        CONTINUE WHEN pg_has_role(who, 'audit_admin', 'USAGE');
        CONTINUE WHEN NOT coalesce(admin_only, false) AND pg_has_role(who, 'audit_reader', 'USAGE');
        IF coalesce(admin_only, false) THEN
            RAISE EXCEPTION 'permission denied: role "%" has no administrative access to the security audit', who
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'This needs membership in audit_admin (audit_reader may only read).';
        END IF;
        RAISE EXCEPTION 'permission denied: role "%" has no access to the security audit', who
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Reading the audit trail needs membership in audit_reader or audit_admin.';
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.require_audit_role(boolean) IS
    'Raise 42501 unless the session''s role (SET ROLE, else session_user) and current_user are audit_reader or audit_admin members (audit_admin only when admin_only) or superusers';

-- The same check as a boolean, for the views: a constant condition that the
-- planner evaluates once, before any row is read.
CREATE FUNCTION audit.audit_access_ok()
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.audit_access_ok() IS
    'True for audit roles; raises "no access to the security audit" (42501) for anyone else';

-- ---------------------------------------------------------------------------
-- Small internal helpers
-- ---------------------------------------------------------------------------
-- The identity (record_id) of a record after an UPDATE: the key values of
-- record_id, replaced by new values where the UPDATE changed a key column.
-- For tables without a key record_id is the whole row, so this is the whole
-- new row.
CREATE FUNCTION audit.next_record_id(record_id jsonb, new_data jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_object_agg(k.key, CASE WHEN new_data ? k.key THEN new_data -> k.key ELSE k.value END)
      FROM jsonb_each(record_id) AS k
$$;
COMMENT ON FUNCTION audit.next_record_id(jsonb, jsonb) IS
    'Internal: the record_id of a record after an UPDATE event (record_id with changed key values from new_data)';

-- One line per value: backslash, carriage return and line feed written as
-- \\, \r and \n, so the original text can be recovered exactly.
CREATE FUNCTION audit.one_line(t text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(t, E'\\', E'\\\\'), E'\r', E'\\r'), E'\n', E'\\n')
$$;
COMMENT ON FUNCTION audit.one_line(text) IS
    'Internal: text on one line for CSV export; backslash, CR and LF written as \\, \r and \n';

-- A duration given in an event's detail: seconds as a number, or any
-- interval literal; NULL when it is neither.
CREATE FUNCTION audit.detail_interval(v text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF v IS NULL OR btrim(v) = '' THEN
        RETURN NULL;
    ELSIF btrim(v) ~ '^[0-9]+(\.[0-9]*)?$' THEN
        RETURN make_interval(secs => btrim(v)::double precision);
    END IF;
    RETURN v::interval;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION audit.detail_interval(text) IS
    'Internal: a session duration from an event detail (seconds or an interval literal), NULL if unreadable';

-- The actions known for each class, for argument checks.  ddl takes any
-- command tag, read SELECT and COPY, system anything.
CREATE FUNCTION audit.known_actions()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '{"data":      ["INSERT", "UPDATE", "DELETE", "TRUNCATE"],
             "auth":      ["LOGIN", "LOGIN_FAILED", "LOGOUT"],
             "privilege": ["GRANT", "REVOKE", "CREATE ROLE", "ALTER ROLE", "DROP ROLE",
                           "GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES"],
             "read":      ["SELECT", "COPY"]}'::jsonb
$$;
COMMENT ON FUNCTION audit.known_actions() IS
    'The actions of the classes whose actions are a fixed list (data, auth, privilege, read), as {class: [actions]}';

-- The one check of a (from_time, to_time) pair, for every reading function.
CREATE FUNCTION audit.check_time_range(from_time timestamptz, to_time timestamptz)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF from_time > to_time THEN
        RAISE EXCEPTION 'invalid time range: from_time (%) is after to_time (%)', from_time, to_time
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'from_time is the inclusive start, to_time the exclusive end.';
    END IF;
END
$$;
COMMENT ON FUNCTION audit.check_time_range(timestamptz, timestamptz) IS
    'Internal: refuse a time range whose start is after its end (22023)';

-- ---------------------------------------------------------------------------
-- Search filters, shared by audit.search() and audit.export()
-- ---------------------------------------------------------------------------
-- Checks the arguments and returns the WHERE condition over "audit.event e"
-- containing only the filters that were given, with fixed parameter numbers:
--   $1 from_time  $2 to_time  $3 actor  $4 action  $5 class
--   $6 schema     $7 table    $8 record_id  $9 status
--   $10 LIKE pattern of query  $11 the same, JSON-escaped  $12 before_id
--   $14 ids of the statements whose text matches query (looked up once here,
--       rather than once per partition by a subquery)
--   $15, $16 the smallest and largest id of the events in [from_time,
--       to_time), when both and query are given (see below)
-- Only given filters appear, so each query is planned for exactly its
-- filters: indexes and partition pruning work (a generic "$1 IS NULL OR ..."
-- would defeat both).
CREATE FUNCTION audit.search_filter(
    from_time timestamptz, to_time timestamptz, actor text, action text, class text,
    table_name text, record_id jsonb, status text, query text, before_id bigint,
    OUT condition text, OUT schema_part text, OUT table_part text,
    OUT text_pattern text, OUT json_pattern text, OUT statement_ids bigint[],
    OUT id_from bigint, OUT id_to bigint)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conds   text[] := '{}';
    parts   text[];
    known   jsonb := audit.known_actions();
    all_known text[];
    json_q  text;
    action_class text;
BEGIN
    -- class and action
    IF class IS NOT NULL THEN
        IF NOT class = ANY (audit.event_classes()) THEN
            RAISE EXCEPTION 'invalid class "%": not an event class', class
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'class must be one of: ' || array_to_string(audit.event_classes(), ', ') || '.';
        END IF;
        conds := conds || 'e.class = $5'::text;
    END IF;
    IF action IS NOT NULL THEN
        IF class IN ('data', 'auth', 'privilege') THEN
            IF NOT (known -> class) ? action THEN
                RAISE EXCEPTION 'invalid action "%": not an action of class %', action, class
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Actions of class %s: %s.', class,
                                        (SELECT string_agg(a, ', ') FROM jsonb_array_elements_text(known -> class) a));
            END IF;
        ELSIF class IS NULL THEN
            SELECT array_agg(a) INTO all_known
              FROM jsonb_each(known) c CROSS JOIN LATERAL jsonb_array_elements_text(c.value) a;
            IF NOT (action = ANY (all_known) OR action ~ '^[A-Z][A-Z0-9_]*( [A-Z][A-Z0-9_]*)*$') THEN
                RAISE EXCEPTION 'invalid action "%": not a known action or command tag', action
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Actions are upper case: INSERT, UPDATE, DELETE, TRUNCATE, LOGIN, GRANT, CREATE TABLE, ... '
                                 'For other system actions give class => ''system''.';
            END IF;
            -- Only the classes where this action can occur: the class whose
            -- fixed list has it, and ddl and system, whose actions are open.
            -- Partition pruning then skips the others.
            SELECT c.key INTO action_class FROM jsonb_each(known) c WHERE c.value ? action;
            conds := conds || format('e.class IN (%s)',
                                     array_to_string(ARRAY(SELECT quote_literal(x)
                                                             FROM unnest(ARRAY[action_class, 'ddl', 'system']) x
                                                            WHERE x IS NOT NULL), ', '));
        ELSIF action = '' THEN
            RAISE EXCEPTION 'invalid action "": must not be empty'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        conds := conds || 'e.action = $4'::text;
    END IF;

    IF status IS NOT NULL THEN
        IF status NOT IN ('success', 'failure') THEN
            RAISE EXCEPTION 'invalid status "%": must be success or failure', status
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        conds := conds || 'e.status = $9'::text;
    END IF;

    PERFORM audit.check_time_range(from_time, to_time);
    IF from_time IS NOT NULL THEN
        conds := conds || 'e.event_time >= $1'::text;
    END IF;
    IF to_time IS NOT NULL THEN
        conds := conds || 'e.event_time < $2'::text;
    END IF;

    IF actor IS NOT NULL THEN
        IF actor = '' THEN
            RAISE EXCEPTION 'invalid actor "": must not be empty'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Leave actor NULL to search all actors; search parts of names with query.';
        END IF;
        conds := conds || 'e.actor = $3'::text;
    END IF;

    IF table_name IS NOT NULL THEN
        BEGIN
            parts := parse_ident(table_name);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'invalid table_name "%": not a table name', table_name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Write table or schema.table, as in SQL (quote names with upper case or special characters).';
        END;
        IF array_length(parts, 1) = 1 THEN
            table_part := parts[1];
        ELSIF array_length(parts, 1) = 2 THEN
            schema_part := parts[1];
            table_part := parts[2];
            conds := conds || 'e.schema_name = $6'::text;
        ELSE
            RAISE EXCEPTION 'invalid table_name "%": too many dotted names', table_name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Write table or schema.table.';
        END IF;
        conds := conds || 'e.table_name = $7'::text;
    END IF;

    IF record_id IS NOT NULL THEN
        IF jsonb_typeof(record_id) <> 'object' OR record_id = '{}' THEN
            RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', record_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give key columns and values, e.g. {"id": 42}.';
        END IF;
        -- containment is what the GIN index (jsonb_path_ops) answers
        conds := conds || 'e.record_id @> $8'::text;
    END IF;

    IF query IS NOT NULL THEN
        IF query = '' THEN
            RAISE EXCEPTION 'invalid query "": must not be empty'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- ILIKE patterns matching the text literally: escape \ % _
        text_pattern := '%' || replace(replace(replace(query, '\', '\\'), '%', '\%'), '_', '\_') || '%';
        -- in JSON text, " \ and control characters of values are escaped
        json_q := to_jsonb(query)::text;
        json_q := substr(json_q, 2, length(json_q) - 2);
        json_pattern := '%' || replace(replace(replace(json_q, '\', '\\'), '%', '\%'), '_', '\_') || '%';
        statement_ids := ARRAY(SELECT st.statement_id FROM audit.statement st
                                WHERE st.statement_text ILIKE text_pattern);
        -- Free text costs much per event.  With a closed time range, bound
        -- the ids to those of the events in the range (exact: the smallest
        -- and largest id among exactly those events, read cheaply through
        -- the BRIN index), so that the newest-first scan starts inside the
        -- range instead of walking down through every newer event.
        IF from_time IS NOT NULL AND to_time IS NOT NULL THEN
            EXECUTE format('SELECT min(e.id + 0), max(e.id + 0) FROM audit.event e'
                           ' WHERE e.event_time >= $1 AND e.event_time < $2%s',
                           CASE WHEN class IS NOT NULL THEN ' AND e.class = $3' ELSE '' END)
                INTO id_from, id_to USING from_time, to_time, class;
            conds := conds || CASE WHEN id_from IS NULL THEN 'false'
                                   ELSE 'e.id >= $15 AND e.id <= $16' END;
        END IF;
        conds := conds || ('((e.actor COLLATE "default") ILIKE $10'
                           ' OR e.record_id::text ILIKE $11'
                           ' OR e.new_data::text ILIKE $11'
                           ' OR e.old_data::text ILIKE $11'
                           || CASE WHEN cardinality(statement_ids) > 0 THEN ' OR e.statement_id = ANY ($14)' ELSE '' END
                           || ')')::text;
    END IF;

    IF before_id IS NOT NULL THEN
        IF before_id <= 0 THEN
            RAISE EXCEPTION 'invalid before_id %: must be positive', before_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the id of the last event of the previous page.';
        END IF;
        conds := conds || 'e.id < $12'::text;
    END IF;

    condition := CASE WHEN cardinality(conds) = 0 THEN 'true' ELSE array_to_string(conds, ' AND ') END;
END
$$;
COMMENT ON FUNCTION audit.search_filter(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, bigint) IS
    'Internal: check the search arguments and build the WHERE condition of audit.search() and audit.export()';

-- ---------------------------------------------------------------------------
-- 1. audit.search
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit.search(
    from_time  timestamptz DEFAULT NULL,
    to_time    timestamptz DEFAULT NULL,
    actor      text        DEFAULT NULL,
    action     text        DEFAULT NULL,
    class      text        DEFAULT NULL,
    table_name text        DEFAULT NULL,
    record_id  jsonb       DEFAULT NULL,
    status     text        DEFAULT NULL,
    query      text        DEFAULT NULL,
    max_rows   integer     DEFAULT 100,
    before_id  bigint      DEFAULT NULL)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    PERFORM audit.require_audit_role();
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'invalid max_rows %: must be between 1 and 10000', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Page through longer results with before_id, or use audit.export().';
    END IF;
    SELECT * INTO f FROM audit.search_filter(from_time, to_time, actor, action, class, table_name,
                                             record_id, status, query, before_id);
    -- the page is chosen first; statement texts are joined to its rows only
    RETURN QUERY EXECUTE format(
        'SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,'
        '       e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,'
        '       e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,'
        '       s.statement_text'
        '  FROM (SELECT * FROM audit.event e WHERE %s ORDER BY e.id DESC LIMIT $13) e'
        '  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id'
        ' ORDER BY e.id DESC', f.condition)
        USING from_time, to_time, actor, action, class, f.schema_part, f.table_part,
              record_id, status, f.text_pattern, f.json_pattern, before_id, max_rows, f.statement_ids,
              f.id_from, f.id_to;
END
$$;
COMMENT ON FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint) IS
    'Search the trail, newest first: every filter optional; at most max_rows (1..10000) rows; next page with before_id => last id seen';

-- ---------------------------------------------------------------------------
-- 9. audit.export
-- ---------------------------------------------------------------------------
CREATE TYPE audit.export_row AS (
    id               text,
    event_time       text,
    class            text,
    action           text,
    status           text,
    actor            text,
    db_user          text,
    "session_user"   text,
    client_addr      text,
    application_name text,
    schema_name      text,
    table_name       text,
    record_id        text,
    changed_columns  text,
    old_data         text,
    new_data         text,
    statement        text,
    txid             text
);
COMMENT ON TYPE audit.export_row IS
    'One exported event as flat text columns in a fixed order (audit.export)';

CREATE FUNCTION audit.export(
    from_time  timestamptz DEFAULT NULL,
    to_time    timestamptz DEFAULT NULL,
    actor      text        DEFAULT NULL,
    action     text        DEFAULT NULL,
    class      text        DEFAULT NULL,
    table_name text        DEFAULT NULL,
    record_id  jsonb       DEFAULT NULL,
    status     text        DEFAULT NULL,
    query      text        DEFAULT NULL,
    max_rows   integer     DEFAULT NULL,
    before_id  bigint      DEFAULT NULL)
RETURNS SETOF audit.export_row
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f      record;
    chosen text;
BEGIN
    PERFORM audit.require_audit_role();
    IF max_rows IS NOT NULL AND max_rows < 1 THEN
        RAISE EXCEPTION 'invalid max_rows %: must be positive, or NULL for no limit', max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO f FROM audit.search_filter(from_time, to_time, actor, action, class, table_name,
                                             record_id, status, query, before_id);
    -- The events audit.search() would return with the same arguments (all
    -- of them when max_rows is NULL), listed oldest first.
    IF max_rows IS NULL THEN
        chosen := format('SELECT * FROM audit.event e WHERE %s', f.condition);
    ELSE
        chosen := format('SELECT * FROM audit.event e WHERE %s ORDER BY e.id DESC LIMIT $13', f.condition);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT e.id::text,'
        '       to_char(e.event_time AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.US"Z"''),'
        '       e.class::text, e.action::text, e.status::text,'
        '       audit.one_line(e.actor), audit.one_line(e.db_user), audit.one_line(e."session_user"),'
        '       host(e.client_addr), audit.one_line(e.application_name),'
        '       audit.one_line(e.schema_name), audit.one_line(e.table_name),'
        '       e.record_id::text,'
        '       CASE WHEN e.changed_columns IS NOT NULL THEN'
        '           audit.one_line(array_to_string(ARRAY(SELECT CASE WHEN c ~ ''[,"]'''
        '                                                       THEN ''"'' || replace(c, ''"'', ''""'') || ''"'''
        '                                                       ELSE c END'
        '                                                  FROM unnest(e.changed_columns) c), '','')) END,'
        '       e.old_data::text, e.new_data::text,'
        '       audit.one_line(s.statement_text),'
        '       e.txid::text'
        '  FROM (%s) e'
        '  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id'
        ' ORDER BY e.id', chosen)
        USING from_time, to_time, actor, action, class, f.schema_part, f.table_part,
              record_id, status, f.text_pattern, f.json_pattern, before_id, max_rows, f.statement_ids,
              f.id_from, f.id_to;
END
$$;
COMMENT ON FUNCTION audit.export(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint) IS
    'Events matching the audit.search() filters as flat text columns, oldest first, for \copy ... WITH CSV HEADER; max_rows NULL = all';

-- ---------------------------------------------------------------------------
-- 2. audit.changes
-- ---------------------------------------------------------------------------
CREATE VIEW audit.changes WITH (security_barrier) AS
SELECT e.id          AS event_id,
       e.event_time,
       e.actor,
       e.schema_name,
       e.table_name,
       e.record_id,
       e.action,
       c.column_name,
       c.old_value,
       c.new_value
  FROM audit.event e
 CROSS JOIN LATERAL (
        SELECT n.key, NULL::jsonb, n.value
          FROM jsonb_each(e.new_data) n
         WHERE e.action = 'INSERT'
        UNION ALL
        SELECT o.key, o.value, NULL::jsonb
          FROM jsonb_each(e.old_data) o
         WHERE e.action = 'DELETE'
        UNION ALL
        SELECT u.col, e.old_data -> u.col, e.new_data -> u.col
          FROM unnest(e.changed_columns) u(col)
         WHERE e.action = 'UPDATE'
       ) AS c(column_name, old_value, new_value)
 WHERE audit.audit_access_ok()
   AND e.class = 'data'
   AND e.action IN ('INSERT', 'UPDATE', 'DELETE');
COMMENT ON VIEW audit.changes IS
    'One row per changed column of each data event: INSERT has no old_value, DELETE no new_value, UPDATE lists changed_columns';

-- ---------------------------------------------------------------------------
-- 8. audit.recent_high_priority
-- ---------------------------------------------------------------------------
CREATE VIEW audit.recent_high_priority WITH (security_barrier) AS
SELECT e.id,
       e.event_time,
       e.class,
       e.action,
       e.status,
       CASE
           WHEN e.class = 'auth' THEN 'failed login'
           WHEN e.class = 'privilege' THEN 'privilege change'
           WHEN e.class = 'ddl' THEN 'schema change'
           WHEN e.class = 'system' THEN 'system event'
           WHEN e.class = 'read' THEN 'denied read'
           WHEN e.action = 'TRUNCATE' AND e.status = 'success' THEN 'table truncated'
           ELSE 'failed change'
       END AS reason,
       e.actor,
       e.db_user,
       e."session_user",
       e.client_addr,
       e.application_name,
       e.schema_name,
       e.table_name,
       e.record_id,
       e.detail,
       s.statement_text
  FROM audit.event e
  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
 WHERE audit.audit_access_ok()
   AND e.event_time >= pg_catalog.now() - interval '7 days'
   AND (   (e.class = 'auth' AND (e.status = 'failure' OR e.action = 'LOGIN_FAILED'))
        OR e.class IN ('privilege', 'ddl', 'system')
        OR (e.class = 'data' AND (e.action = 'TRUNCATE' OR e.status = 'failure'))
        OR (e.class = 'read' AND e.status = 'failure'))
 ORDER BY e.id DESC;
COMMENT ON VIEW audit.recent_high_priority IS
    'Events of the last 7 days that need attention, newest first: failed logins, privilege and schema changes, system events, TRUNCATEs, failed changes, denied reads';

-- ---------------------------------------------------------------------------
-- 3./4. One record: identity, history, state at a point in time
-- ---------------------------------------------------------------------------
-- Resolve a live table and a record_id given by the user to the names its
-- events carry (the audited partitioned root for a partition) and the
-- record_id exactly as captured: for a table with a key, record_id must name
-- exactly the key columns; values are converted through the column types
-- ({"id": "42"} becomes {"id": 42}).  Without a key, record_id is the whole
-- recorded row and is taken as given.
CREATE FUNCTION audit.resolve_record(tbl regclass, record_id jsonb,
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
COMMENT ON FUNCTION audit.resolve_record(regclass, jsonb) IS
    'Internal: the schema and table name events of a table carry, and a record_id normalised to the captured form';

-- Is the record (its identity given as jsonb) in this partition?  Evaluates
-- the partition constraint on the identity's values; true when that cannot
-- be decided.
CREATE FUNCTION audit.record_in_partition(part regclass, identity jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inside boolean;
    bound  text := pg_get_partition_constraintdef(part);
BEGIN
    IF bound IS NULL THEN
        RETURN true;
    END IF;
    EXECUTE format('SELECT (%s) IS NOT FALSE FROM jsonb_populate_record(NULL::%s, $1) r', bound, part)
        INTO inside USING identity;
    RETURN coalesce(inside, true);
EXCEPTION WHEN OTHERS THEN
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.record_in_partition(regclass, jsonb) IS
    'Internal: whether a record (identity as jsonb) falls in a partition, by its partition constraint';

-- The events of one record, oldest first.  Follows the record across key
-- changes (an UPDATE that changes key columns is the last event under the old
-- record_id; the history continues under the new one), and adds the TRUNCATE
-- that removed the record where the record's own events show it vanished: an
-- INSERT while it existed, or it existing at the end of its events while it
-- is not in the table now.  The search for that TRUNCATE reads the data
-- events between (no index leads to TRUNCATEs), so it is only done in those
-- two cases.
CREATE FUNCTION audit.record_events(p_schema text, p_table text, p_record jsonb, p_live regclass)
RETURNS SETOF audit.event
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k          jsonb := p_record;
    nk         jsonb;
    after_id   bigint := 0;
    ev         audit.event;
    tr         audit.event;
    evs        audit.event[] := '{}';
    idents     jsonb[] := '{}';
    t_schemas  text[] := ARRAY[p_schema];
    t_tables   text[] := ARRAY[p_table];
    t_rels     regclass[] := ARRAY[NULL::regclass];
    keys       text[];
    in_table   boolean;
    present    boolean;
    n          integer;
    gap_from   bigint;
    gap_to     bigint;
    gap_ident  jsonb;
BEGIN
    -- The record's own events, following key changes forward.
    <<segments>>
    LOOP
        FOR ev IN SELECT * FROM audit.event e
                   WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
                     AND e.record_id @> k AND e.record_id = k AND e.id > after_id
                   ORDER BY e.id
        LOOP
            evs := evs || ev;
            idents := idents || k;
            IF ev.action = 'UPDATE' AND ev.status = 'success' THEN
                nk := audit.next_record_id(k, ev.new_data);
                IF nk IS DISTINCT FROM k THEN
                    k := nk;
                    after_id := ev.id;
                    CONTINUE segments;
                END IF;
            END IF;
        END LOOP;
        EXIT;
    END LOOP;

    -- TRUNCATE events name the truncated table: the table and, for a
    -- partitioned table, each of its partitions.
    IF p_live IS NOT NULL THEN
        SELECT t_schemas || coalesce(array_agg(nsp.nspname::text ORDER BY c.oid), '{}'),
               t_tables || coalesce(array_agg(c.relname::text ORDER BY c.oid), '{}'),
               t_rels || coalesce(array_agg(c.oid::regclass ORDER BY c.oid), '{}')
          INTO t_schemas, t_tables, t_rels
          FROM pg_partition_tree(p_live) pt
          JOIN pg_class c ON c.oid = pt.relid
          JOIN pg_namespace nsp ON nsp.oid = c.relnamespace
         WHERE pt.relid <> p_live;
    END IF;

    n := coalesce(array_length(evs, 1), 0);
    present := NULL;
    FOR i IN 1 .. n + 1 LOOP
        gap_from := NULL;
        IF i <= n THEN
            ev := evs[i];
            IF present AND ev.action = 'INSERT' THEN
                gap_from := evs[i - 1].id;
                gap_to := ev.id;
                gap_ident := idents[i];
            END IF;
        ELSIF present THEN
            -- The record existed after its last event.  If it is in the
            -- table now, nothing removed it since (assuming auditing went
            -- on); else look for a TRUNCATE.  Only possible with a key.
            in_table := NULL;
            keys := CASE WHEN p_live IS NOT NULL THEN audit.key_columns(p_live) END;
            IF keys IS NOT NULL
               AND ARRAY(SELECT jsonb_object_keys(k) ORDER BY 1) = ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
                BEGIN
                    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t, jsonb_populate_record(NULL::%s, $1) r WHERE %s)',
                                   p_live, p_live,
                                   (SELECT string_agg(format('t.%I = r.%I', kc, kc), ' AND ') FROM unnest(keys) kc))
                        INTO in_table USING k;
                EXCEPTION WHEN OTHERS THEN
                    in_table := NULL;
                END;
            END IF;
            IF in_table IS NOT TRUE THEN
                gap_from := evs[n].id;
                gap_to := NULL;
                gap_ident := k;
            END IF;
        END IF;

        IF gap_from IS NOT NULL THEN
            FOR tr IN SELECT * FROM audit.event e
                       WHERE e.class = 'data' AND e.action = 'TRUNCATE'
                         AND e.id > gap_from AND e.id < coalesce(gap_to, 9223372036854775807)
                         AND (e.schema_name, e.table_name) IN (SELECT * FROM unnest(t_schemas, t_tables))
                       ORDER BY e.id
            LOOP
                -- the table itself, or a partition the record is in
                IF (tr.schema_name = p_schema AND tr.table_name = p_table)
                   OR EXISTS (SELECT 1 FROM unnest(t_schemas, t_tables, t_rels) u(s, t, r)
                               WHERE u.s = tr.schema_name AND u.t = tr.table_name
                                 AND u.r IS NOT NULL AND audit.record_in_partition(u.r, gap_ident)) THEN
                    RETURN NEXT tr;
                    EXIT;
                END IF;
            END LOOP;
        END IF;

        IF i <= n THEN
            RETURN NEXT ev;
            IF ev.status = 'success' THEN
                present := ev.action IN ('INSERT', 'UPDATE');
            END IF;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_events(text, text, jsonb, regclass) IS
    'Internal: the events of one record oldest first, following key changes, with the TRUNCATE that removed it';

CREATE FUNCTION audit.record_history(tbl regclass, record_id jsonb)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM audit.require_audit_role();
    SELECT * INTO r FROM audit.resolve_record(tbl, record_id);
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text
          FROM audit.record_events(r.schema_name, r.table_name, r.record, r.live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION audit.record_history(regclass, jsonb) IS
    'The events of one record of a table, oldest first, following key changes and including the TRUNCATE that removed it';

CREATE FUNCTION audit.record_history(schema_name text, table_name text, record_id jsonb)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live regclass;
    rec  jsonb := record_history.record_id;
BEGIN
    PERFORM audit.require_audit_role();
    IF record_history.schema_name IS NULL OR record_history.table_name IS NULL THEN
        RAISE EXCEPTION 'invalid table: schema_name and table_name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- A table of that name that exists now: normalise the record id like
    -- the regclass form does (if it fits), and let TRUNCATEs of its
    -- partitions count.
    SELECT c.oid INTO live
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = record_history.schema_name AND c.relname = record_history.table_name
       AND c.relkind IN ('r', 'p');
    IF live IS NOT NULL THEN
        BEGIN
            SELECT r.record INTO rec FROM audit.resolve_record(live, rec) r;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;   -- e.g. the key changed since: match the record id as given
        END;
    END IF;
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text
          FROM audit.record_events(record_history.schema_name, record_history.table_name, rec, live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION audit.record_history(text, text, jsonb) IS
    'The events of one record of a table given by its names as recorded (also for a dropped table), oldest first';

CREATE FUNCTION audit.row_as_of(tbl regclass, record_id jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    evs      audit.event[];
    ev       audit.event;
    n        integer;
    p        integer := 0;
    present  boolean := NULL;   -- NULL: before the record's first event
    complete boolean := false;  -- state holds every recorded column
    state    jsonb := '{}';
    touched  text[] := '{}';
    fill     jsonb;
BEGIN
    PERFORM audit.require_audit_role();
    IF row_as_of.at IS NULL THEN
        RAISE EXCEPTION 'invalid at: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO r FROM audit.resolve_record(tbl, record_id);
    evs := ARRAY(SELECT e FROM audit.record_events(r.schema_name, r.table_name, r.record, r.live) e ORDER BY e.id);
    n := coalesce(array_length(evs, 1), 0);

    -- Replay the events up to "at": in id order, up to the first one whose
    -- statement started after "at".
    WHILE p < n AND evs[p + 1].event_time <= row_as_of.at LOOP
        p := p + 1;
        ev := evs[p];
        CONTINUE WHEN ev.status <> 'success';
        IF ev.action = 'INSERT' THEN
            state := ev.new_data;
            present := true;
            complete := true;
        ELSIF ev.action = 'UPDATE' THEN
            IF present IS NOT TRUE THEN
                state := '{}';
                complete := false;
            END IF;
            -- before the UPDATE the row had record_id's and old_data's values
            state := (ev.record_id || coalesce(ev.old_data, '{}')) || state;
            state := state || coalesce(ev.new_data, '{}');
            present := true;
        ELSE    -- DELETE, TRUNCATE
            state := NULL;
            present := false;
            complete := false;
        END IF;
    END LOOP;

    IF present IS FALSE THEN
        RETURN NULL;
    END IF;
    IF present IS NULL THEN
        -- before the first event: the row existed if the trail starts with a
        -- change of an existing row
        IF p >= n OR evs[p + 1].action NOT IN ('UPDATE', 'DELETE') THEN
            RETURN NULL;
        END IF;
        state := '{}';
    END IF;

    -- A trail that does not start with an INSERT knows only part of the row:
    -- later events tell the values of the columns they change (old values)
    -- and, at a DELETE, the whole row.  A column not changed between "at"
    -- and that event had the same value at "at".
    IF NOT complete THEN
        FOR i IN p + 1 .. n LOOP
            ev := evs[i];
            CONTINUE WHEN ev.status <> 'success';
            EXIT WHEN ev.action NOT IN ('UPDATE', 'DELETE');
            fill := CASE WHEN ev.action = 'UPDATE' THEN ev.record_id || coalesce(ev.old_data, '{}')
                         ELSE ev.old_data END;
            SELECT state || coalesce(jsonb_object_agg(f.key, f.value), '{}') INTO state
              FROM jsonb_each(fill) f
             WHERE NOT state ? f.key AND NOT f.key = ANY (touched);
            EXIT WHEN ev.action = 'DELETE';
            touched := touched || coalesce(ev.changed_columns, '{}');
        END LOOP;
    END IF;
    RETURN state;
END
$$;
COMMENT ON FUNCTION audit.row_as_of(regclass, jsonb, timestamptz) IS
    'A record as it was at a moment, rebuilt from the trail (NULL if it did not exist); masked values stay "[masked]", excluded columns are absent';

-- ---------------------------------------------------------------------------
-- 5. audit.undo
-- ---------------------------------------------------------------------------
-- SECURITY INVOKER on purpose: the DML runs with the caller's own
-- privileges (SELECT plus DELETE, UPDATE or INSERT on the table, row level
-- security included) and the trigger records the caller, not the function's
-- owner, as db_user of the undoing events.
-- Internal to audit.undo: run one statement (DELETE or UPDATE) that must
-- touch exactly the row undo read (tableoid $1, ctid $2, whole row $3, the
-- recorded values $4), so a concurrent change fails instead of being lost.
CREATE FUNCTION audit.undo_change_row(sql text, action text, tbl regclass, ident jsonb,
                                      row_oid oid, row_tid tid, cur jsonb, vals jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    done bigint;
BEGIN
    EXECUTE sql USING row_oid, row_tid, cur, vals;
    GET DIAGNOSTICS done = ROW_COUNT;
    IF done <> 1 THEN
        RAISE EXCEPTION 'cannot undo this %: the row % of % changed while being undone', action, ident, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Try again.';
    END IF;
END
$$;
COMMENT ON FUNCTION audit.undo_change_row(text, text, regclass, jsonb, oid, tid, jsonb, jsonb) IS
    'Internal to audit.undo(): change exactly the row it read, or fail';

CREATE FUNCTION audit.undo(event_id bigint, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev        audit.event;
    tbl       regclass;
    keys      text[];
    live_cols text[];        -- columns that can be written (not generated)
    all_cols  text[];
    ident     jsonb;         -- the row's identity after the event
    match_ident jsonb;
    match_cols text[];
    want      jsonb;         -- recorded after-state to compare with
    cond      text;
    cands     record;
    found_n   integer := 0;
    row_oid   oid;
    row_tid   tid;
    cur       jsonb;
    want_row  jsonb;
    diff      text[];
    cols      text[];
    bad       text[];
    restore_sql text;
    forced    text := '';
    ambiguous_ok boolean;
BEGIN
    PERFORM audit.require_audit_role(true);
    IF undo.event_id IS NULL OR undo.event_id <= 0 THEN
        RAISE EXCEPTION 'invalid event_id %: must be a positive event id', coalesce(undo.event_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO ev FROM audit.event e WHERE e.id = undo.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot undo event %: there is no such event', undo.event_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ev.class <> 'data' THEN
        RAISE EXCEPTION 'cannot undo this % event: only data changes can be undone', ev.class
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ev.action = 'TRUNCATE' THEN
        RAISE EXCEPTION 'cannot undo a TRUNCATE: the trail does not hold the rows it removed'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Restore the table from a backup; audit.row_as_of() rebuilds single rows that have a history.';
    END IF;
    IF ev.action NOT IN ('INSERT', 'UPDATE', 'DELETE') OR ev.status <> 'success' THEN
        RAISE EXCEPTION 'cannot undo this % event: with status % it changed nothing', ev.action, ev.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    tbl := to_regclass(format('%I.%I', ev.schema_name, ev.table_name));
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        RAISE EXCEPTION 'cannot undo this %: table %.% no longer exists', ev.action,
                        quote_ident(ev.schema_name), quote_ident(ev.table_name)
            USING ERRCODE = 'undefined_table',
                  HINT = 'A renamed table is not followed; audit.record_history(schema_name, table_name, record_id) shows the history of a dropped table.';
    END IF;

    SELECT array_agg(a.attname::text ORDER BY a.attnum),
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '')
      INTO all_cols, live_cols
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    keys := audit.key_columns(tbl);

    -- the row as the event left it
    IF ev.action = 'INSERT' THEN
        ident := ev.record_id;
        want := ev.new_data;
    ELSIF ev.action = 'UPDATE' THEN
        ident := audit.next_record_id(ev.record_id, ev.new_data);
        SELECT jsonb_object_agg(c, ev.new_data -> c) INTO want
          FROM unnest(ev.changed_columns) c WHERE ev.new_data ? c;
    ELSE
        ident := ev.record_id;
        want := NULL;
    END IF;
    -- masked values cannot be compared
    SELECT jsonb_object_agg(w.key, w.value) INTO want
      FROM jsonb_each(want) w WHERE w.value <> '"[masked]"' AND w.key = ANY (all_cols);

    -- How the row is found: by its key, or (no key) by every recorded,
    -- unmasked column.
    IF keys IS NOT NULL THEN
        IF ARRAY(SELECT jsonb_object_keys(ident) ORDER BY 1) <> ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
            RAISE EXCEPTION 'cannot undo this %: the key of % is now (%), the event identifies its row by %',
                            ev.action, tbl, array_to_string(keys, ', '), ev.record_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        match_cols := keys;
        match_ident := ident;
        cond := (SELECT string_agg(format('t.%I = i.%I', c, c), ' AND ') FROM unnest(keys) c);
    ELSE
        SELECT array_agg(i.key ORDER BY i.key), jsonb_object_agg(i.key, i.value) INTO match_cols, match_ident
          FROM jsonb_each(ident) i WHERE i.value <> '"[masked]"' AND i.key = ANY (all_cols);
        cond := coalesce((SELECT string_agg(format('to_jsonb(t.%I) IS NOT DISTINCT FROM to_jsonb(i.%I)', c, c), ' AND ')
                            FROM unnest(match_cols) c), 'true');
    END IF;
    -- Rows identical in every compared column are interchangeable only if
    -- every column of the table was compared.
    ambiguous_ok := keys IS NULL AND all_cols <@ coalesce(match_cols, '{}');

    -- What must be restorable.
    IF ev.action = 'UPDATE' THEN
        bad := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE ev.old_data -> c = '"[masked]"');
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this UPDATE: the old value of masked column % was not recorded',
                            array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Masked columns are stored as "[masked]".';
        END IF;
        bad := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE NOT c = ANY (all_cols));
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this UPDATE: column % of % no longer exists', array_to_string(bad, ', '), tbl
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        cols := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE c = ANY (live_cols));
    ELSIF ev.action = 'DELETE' THEN
        bad := ARRAY(SELECT c FROM unnest(live_cols) c WHERE ev.old_data -> c = '"[masked]"');
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this DELETE: the value of masked column % was not recorded',
                            array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Masked columns are stored as "[masked]".';
        END IF;
        bad := ARRAY(SELECT c FROM unnest(live_cols) c WHERE NOT ev.old_data ? c);
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this DELETE: the value of column % was not recorded', array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'The column is excluded from auditing, or was added to the table after the event.';
        END IF;
        cols := live_cols;
    END IF;

    -- Find the row as it is now (at most two, to see ambiguity).
    BEGIN
        FOR cands IN EXECUTE format(
                'SELECT t.tableoid AS toid, t.ctid AS tid, to_jsonb(t) AS cur, to_jsonb(w) AS want_row'
                '  FROM %s t, jsonb_populate_record(NULL::%s, $1) i, jsonb_populate_record(NULL::%s, $2) w'
                ' WHERE %s LIMIT 2', tbl, tbl, tbl, cond)
            USING match_ident, coalesce(want, '{}')
        LOOP
            found_n := found_n + 1;
            IF found_n = 1 THEN
                row_oid := cands.toid;
                row_tid := cands.tid;
                cur := cands.cur;
                want_row := cands.want_row;
            END IF;
        END LOOP;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'cannot undo this %: its recorded values no longer fit table %', ev.action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = SQLERRM;
    END;
    IF ev.action IN ('INSERT', 'UPDATE') THEN
        IF found_n > 1 AND NOT ambiguous_ok THEN
            RAISE EXCEPTION 'cannot undo this %: several rows of % match %', ev.action, tbl, match_ident
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'The table has no key and the trail does not record every column of these rows.';
        END IF;
        IF found_n = 0 THEN
            RAISE EXCEPTION 'cannot undo this %: the row % is no longer in %', ev.action, ident, tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'It was deleted or its key changed after the event, or row level security hides it from you.',
                      HINT = 'audit.record_history() shows what happened to it.';
        END IF;
        diff := ARRAY(SELECT w.key FROM jsonb_each(want) w
                       WHERE cur -> w.key IS DISTINCT FROM want_row -> w.key ORDER BY w.key);
        IF cardinality(diff) > 0 THEN
            IF NOT coalesce(undo.force, false) THEN
                RAISE EXCEPTION 'cannot undo this %: the row % of % has changed since', ev.action, ident, tbl
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = format('Changed since the event: %s.', array_to_string(diff, ', ')),
                          HINT = 'Pass force => true to undo the event anyway.';
            END IF;
            forced := format(' (forced: %s had changed since)', array_to_string(diff, ', '));
        END IF;
    END IF;

    -- The change.  tableoid and ctid name the row just read; the re-check of
    -- the whole row makes a concurrent change fail instead of being lost.
    restore_sql := format('UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $4) o)'
                          ' WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t) = $3',
                          tbl,
                          (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                          (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
                          tbl);
    IF ev.action = 'INSERT' THEN
        PERFORM audit.undo_change_row(
            format('DELETE FROM %s t WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t) = $3', tbl),
            ev.action, tbl, ident, row_oid, row_tid, cur, NULL);
        RETURN format('undid INSERT event %s: deleted the row %s from %s%s', ev.id, ident, tbl, forced);
    END IF;

    IF ev.action = 'UPDATE' THEN
        IF cardinality(cols) = 0 THEN
            RETURN format('undid UPDATE event %s: nothing to restore in %s (only generated columns changed)', ev.id, tbl);
        END IF;
        PERFORM audit.undo_change_row(restore_sql, ev.action, tbl, ident, row_oid, row_tid, cur, ev.old_data);
        RETURN format('undid UPDATE event %s: restored %s of the row %s in %s%s', ev.id,
                      array_to_string(cols, ', '), ev.record_id, tbl, forced);
    END IF;

    -- DELETE: put the row back.
    IF found_n > 0 AND keys IS NOT NULL THEN
        IF NOT coalesce(undo.force, false) THEN
            RAISE EXCEPTION 'cannot undo this DELETE: a row with key % is in % again', ident, tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Pass force => true to overwrite it with the deleted row''s values.';
        END IF;
        PERFORM audit.undo_change_row(restore_sql, ev.action, tbl, ident, row_oid, row_tid, cur, ev.old_data);
        RETURN format('undid DELETE event %s: overwrote the row %s in %s with the deleted values (forced: a row with that key had been inserted since)',
                      ev.id, ident, tbl);
    END IF;
    BEGIN
        EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_record(NULL::%s, $1) o',
                       tbl,
                       (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
                       tbl)
            USING ev.old_data;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'cannot undo this %: its recorded values no longer fit table %', ev.action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = SQLERRM;
    END;
    RETURN format('undid DELETE event %s: re-inserted the row %s into %s', ev.id, ident, tbl);
END
$$;
COMMENT ON FUNCTION audit.undo(bigint, boolean) IS
    'audit_admin: revert one data event on the live table (INSERT: delete the row; UPDATE: restore the old values; DELETE: re-insert); refuses (55000) if the row changed since unless force; runs with the caller''s privileges';

-- ---------------------------------------------------------------------------
-- 6. audit.user_activity
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit.user_activity(actor text, from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS TABLE (total_actions bigint, records_created bigint, records_modified bigint, records_deleted bigint,
               records_viewed bigint, exports bigint, logins bigint, failed_logins bigint, sessions bigint,
               avg_session interval, actions_by_table jsonb, first_activity timestamptz, last_activity timestamptz)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    threshold_setting text := current_setting('audit_ext.export_threshold', true);
    threshold bigint;
    conds     text := 'e.actor = $1';
BEGIN
    PERFORM audit.require_audit_role();
    IF user_activity.actor IS NULL THEN
        RAISE EXCEPTION 'invalid actor: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM audit.check_time_range(user_activity.from_time, user_activity.to_time);
    IF coalesce(btrim(threshold_setting), '') = '' THEN
        threshold := 1000;
    ELSIF btrim(threshold_setting) ~ '^[0-9]{1,18}$' AND btrim(threshold_setting)::bigint > 0 THEN
        threshold := btrim(threshold_setting)::bigint;
    ELSE
        RAISE EXCEPTION 'invalid audit_ext.export_threshold "%": must be a positive number of rows', threshold_setting
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF user_activity.from_time IS NOT NULL THEN
        conds := conds || ' AND e.event_time >= $2';
    END IF;
    IF user_activity.to_time IS NOT NULL THEN
        conds := conds || ' AND e.event_time < $3';
    END IF;

    RETURN QUERY EXECUTE format($q$
        WITH ev AS MATERIALIZED (
            SELECT e.id, e.event_time, e.class, e.action, e.status, e.backend_pid,
                   e.schema_name, e.table_name, e.detail,
                   CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END AS nrows
              FROM audit.event e
             WHERE %s
        ), ended AS (
            -- a session's length: detail.duration of its LOGOUT, else the
            -- time since the same backend's last successful LOGIN
            SELECT coalesce(audit.detail_interval(l.detail ->> 'duration'),
                            l.event_time - (SELECT li.event_time FROM audit.event li
                                             WHERE li.actor = $1 AND li.class = 'auth'
                                               AND li.action = 'LOGIN' AND li.status = 'success'
                                               AND li.backend_pid = l.backend_pid AND li.id < l.id
                                             ORDER BY li.id DESC LIMIT 1)) AS length
              FROM ev l
             WHERE l.class = 'auth' AND l.action = 'LOGOUT'
        ), per_table AS (
            SELECT CASE WHEN t.schema_name IS NULL THEN format('%%I', t.table_name)
                        ELSE format('%%I.%%I', t.schema_name, t.table_name) END AS tbl,
                   jsonb_object_agg(t.action, t.n) AS actions
              FROM (SELECT x.schema_name, x.table_name, x.action, count(*) AS n
                      FROM ev x WHERE x.table_name IS NOT NULL
                     GROUP BY 1, 2, 3) t
             GROUP BY 1
        )
        SELECT count(*),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'INSERT' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'UPDATE' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'DELETE' AND ev.status = 'success'),
               coalesce(sum(ev.nrows) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'), 0)::bigint,
               count(*) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'
                                  AND (ev.action = 'COPY' OR ev.nrows >= $4)),
               count(*) FILTER (WHERE ev.class = 'auth' AND ev.action = 'LOGIN' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'auth'
                                  AND (ev.action = 'LOGIN_FAILED' OR (ev.action = 'LOGIN' AND ev.status = 'failure'))),
               (SELECT count(*) FROM ended),
               (SELECT avg(ended.length) FROM ended),
               coalesce((SELECT jsonb_object_agg(per_table.tbl, per_table.actions) FROM per_table), '{}'::jsonb),
               min(ev.event_time),
               max(ev.event_time)
          FROM ev
    $q$, conds)
        USING user_activity.actor, user_activity.from_time, user_activity.to_time, threshold;
END
$$;
COMMENT ON FUNCTION audit.user_activity(text, timestamptz, timestamptz) IS
    'What one actor did in a period (from_time inclusive, to_time exclusive): one row of counts, sessions, actions per table, first and last activity';

-- ---------------------------------------------------------------------------
-- 7. audit.activity_summary
-- ---------------------------------------------------------------------------
CREATE TYPE audit.activity_summary_row AS (
    from_time        timestamptz,
    to_time          timestamptz,
    total_events     bigint,
    failures         bigint,
    distinct_actors  bigint,
    events_by_class  jsonb,
    events_by_action jsonb,
    top_actors       jsonb,
    top_tables       jsonb,
    storage_bytes    bigint
);
COMMENT ON TYPE audit.activity_summary_row IS
    'What audit.activity_summary() returns: one dashboard row';

CREATE FUNCTION audit.activity_summary(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS SETOF audit.activity_summary_row
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conds text[] := '{}';
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    IF from_time IS NOT NULL THEN
        conds := conds || 'e.event_time >= $1'::text;
    END IF;
    IF to_time IS NOT NULL THEN
        conds := conds || 'e.event_time < $2'::text;
    END IF;
    -- One pass over the events, grouped four ways at once.
    RETURN QUERY EXECUTE format($q$
        WITH g AS (
            SELECT e.class, e.action, e.actor, e.schema_name, e.table_name,
                   GROUPING(e.class, e.action) AS g_ca,
                   GROUPING(e.actor) AS g_a,
                   GROUPING(e.schema_name, e.table_name) AS g_t,
                   count(*) AS n,
                   count(*) FILTER (WHERE e.status = 'failure') AS failed
              FROM audit.event e
             WHERE %s
             GROUP BY GROUPING SETS ((e.class, e.action), (e.actor), (e.schema_name, e.table_name), ())
        )
        SELECT $1, $2,
               coalesce((SELECT g.n FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 3), 0),
               coalesce((SELECT g.failed FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 3), 0),
               (SELECT count(*) FROM g WHERE g.g_a = 0 AND g.actor IS NOT NULL),
               coalesce((SELECT jsonb_object_agg(c.class, c.n)
                           FROM (SELECT g.class, sum(g.n)::bigint AS n FROM g WHERE g.g_ca = 0 GROUP BY 1) c),
                        '{}'::jsonb),
               coalesce((SELECT jsonb_object_agg(c.class, c.actions)
                           FROM (SELECT g.class, jsonb_object_agg(g.action, g.n) AS actions
                                   FROM g WHERE g.g_ca = 0 GROUP BY 1) c),
                        '{}'::jsonb),
               coalesce((SELECT jsonb_agg(jsonb_build_object('actor', t.actor, 'events', t.n) ORDER BY t.n DESC, t.actor)
                           FROM (SELECT g.actor, g.n FROM g WHERE g.g_a = 0 AND g.actor IS NOT NULL
                                  ORDER BY g.n DESC, g.actor LIMIT 10) t),
                        '[]'::jsonb),
               coalesce((SELECT jsonb_agg(jsonb_build_object('table', t.tbl, 'events', t.n) ORDER BY t.n DESC, t.tbl)
                           FROM (SELECT CASE WHEN g.schema_name IS NULL THEN format('%%I', g.table_name)
                                             ELSE format('%%I.%%I', g.schema_name, g.table_name) END AS tbl,
                                        g.n
                                   FROM g WHERE g.g_t = 0 AND g.table_name IS NOT NULL
                                  ORDER BY g.n DESC, 1 LIMIT 10) t),
                        '[]'::jsonb),
               (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                  FROM pg_class c
                 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'm'))
    $q$, CASE WHEN cardinality(conds) = 0 THEN 'true' ELSE array_to_string(conds, ' AND ') END)
        USING from_time, to_time;
END
$$;
COMMENT ON FUNCTION audit.activity_summary(timestamptz, timestamptz) IS
    'Dashboard figures for a period (from_time inclusive, to_time exclusive): totals, failures, events by class and action, top 10 actors and tables, storage used by the whole trail';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    audit.check_time_range(timestamptz, timestamptz),
    audit.require_audit_role(boolean),
    audit.next_record_id(jsonb, jsonb),
    audit.one_line(text),
    audit.detail_interval(text),
    audit.known_actions(),
    audit.search_filter(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, bigint),
    audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint),
    audit.export(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint),
    audit.resolve_record(regclass, jsonb),
    audit.record_in_partition(regclass, jsonb),
    audit.record_events(text, text, jsonb, regclass),
    audit.record_history(regclass, jsonb),
    audit.record_history(text, text, jsonb),
    audit.row_as_of(regclass, jsonb, timestamptz),
    audit.undo(bigint, boolean),
    audit.undo_change_row(text, text, regclass, jsonb, oid, tid, jsonb, jsonb),
    audit.user_activity(text, timestamptz, timestamptz),
    audit.activity_summary(timestamptz, timestamptz)
  FROM PUBLIC;
REVOKE ALL ON audit.changes, audit.recent_high_priority FROM PUBLIC;

-- The reading functions and views are open to everyone and check the role
-- themselves, so that anyone without access is told so in words: "has no
-- access to the security audit" (42501).  The tables stay closed.
GRANT USAGE ON SCHEMA audit TO PUBLIC;
GRANT SELECT ON audit.changes, audit.recent_high_priority TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    audit.require_audit_role(boolean),
    audit.audit_access_ok(),
    audit.undo(bigint, boolean),
    audit.known_actions(),
    audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint),
    audit.export(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint),
    audit.record_history(regclass, jsonb),
    audit.record_history(text, text, jsonb),
    audit.row_as_of(regclass, jsonb, timestamptz),
    audit.user_activity(text, timestamptz, timestamptz),
    audit.activity_summary(timestamptz, timestamptz)
  TO PUBLIC;
-- audit.undo runs as the caller: it needs these as well.
GRANT EXECUTE ON FUNCTION
    audit.undo_change_row(text, text, regclass, jsonb, oid, tid, jsonb, jsonb),
    audit.next_record_id(jsonb, jsonb)
  TO audit_admin;

-- ---------------------------------------------------------------------------
-- Security events: the shared-memory queue and its background worker
-- (src/queue.c, src/worker.c, src/auth_hooks.c).  Both exist only when the
-- library is in shared_preload_libraries.
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit.worker_status()
RETURNS TABLE (queue_size integer, queue_depth integer,
               enqueued bigint, written bigint, dropped bigint,
               last_error text, last_error_time timestamptz, worker_pid integer)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_worker_status';
COMMENT ON FUNCTION audit.worker_status() IS
    'State of the security-event queue and its background worker; one row, NULLs and zeros when audit_ext is not in shared_preload_libraries';

CREATE VIEW audit.worker_status AS SELECT * FROM audit.worker_status();
COMMENT ON VIEW audit.worker_status IS
    'State of the security-event queue (size, depth, enqueued, written, dropped, last error) and the worker''s pid';

REVOKE ALL ON FUNCTION audit.worker_status() FROM PUBLIC;
REVOKE ALL ON audit.worker_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.worker_status() TO audit_admin, audit_reader;
GRANT SELECT ON audit.worker_status TO audit_admin, audit_reader;

DO $$
BEGIN
    IF (SELECT s.queue_size FROM audit.worker_status() s) IS NULL THEN
        RAISE WARNING 'audit_ext is not in shared_preload_libraries: security events (logins, failed logins, logouts) are not recorded'
            USING HINT = 'Set shared_preload_libraries = ''audit_ext'' in postgresql.conf and restart the server.';
    END IF;
END
$$;
