-- Capture and its configuration: the C trigger functions (src/capture.c),
-- audit.enable / audit.disable, the triggers that carry each table's options,
-- read auditing's flag, the event trigger that audits new partitions and
-- inheritance children, audit.audited_tables and audit.capture_state.
--
-- The configuration of a table is its audit trigger: the trigger arguments
-- carry the options, so the C trigger needs no lookup, pg_dump keeps the
-- options with the table, and renaming the table changes nothing.

-- The monthly partitions are made at run time, by audit.enable() before the
-- first event can exist and by audit.create_partitions(), and are not
-- extension members: pg_dump dumps them like any table, and a restore's
-- CREATE EXTENSION, which makes only the parents and default partitions,
-- does not collide with them.
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
        SELECT t.tgname, t.tgrelid::regclass AS rel, t.tgargs
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT relid, level FROM pg_partition_tree(tbl) WHERE relid <> tbl) p
          JOIN pg_trigger t ON t.tgrelid = p.relid
         WHERE t.tgname IN ('audit_ext_row', 'audit_ext_truncate', 'audit_ext_wal_part')
           AND t.tgparentid = 0
         ORDER BY p.level
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, trg.rel);
        -- issue 22: a partition of a WAL-mode partitioned table gets its own
        -- replica identity back (kept in its trigger's flags); after the
        -- DROP, so that the ALTER TABLE's event trigger finds nothing to do
        IF trg.tgname = 'audit_ext_wal_part' THEN
            PERFORM audit.restore_replica_identity(trg.rel,
                        (SELECT f FROM unnest((audit.trigger_arguments(trg.tgargs))[3]::text[]) f
                          WHERE f LIKE 'replica\_identity=%' LIMIT 1));
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.drop_audit_triggers(regclass) IS
    'Internal: remove the audit triggers of a table and its partitions (a WAL-mode partition gets its replica identity back)';

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
-- The form without flags (used by audit.sync_column_options) keeps the table's flags.
-- Stable identity of audited tables (1.6).  A table is identified by name in
-- its events, but names change (RENAME, SET SCHEMA, ALTER SCHEMA RENAME) and
-- come back (DROP and CREATE again).  audit.enable() gives a table an
-- identity, kept with its OID and one row per name it has had; every data
-- and read event carries it (audit.event.table_identity, src/capture.c), so
-- a history follows a table across renames and a re-created table starts a
-- new one.  Rows are closed by a rename (a new row follows) or by the drop
-- of the table (audit.on_sql_drop()).  Events captured before 1.6 carry no
-- identity: the row the upgrade wrote for each audited table has
-- legacy_from_id, and those events belong to the table by name after it.
CREATE SEQUENCE audit.table_identity_seq AS bigint;
COMMENT ON SEQUENCE audit.table_identity_seq IS 'Identities of audited tables (audit.audited_table_history)';
CREATE TABLE audit.audited_table_history (
    table_identity  bigint      NOT NULL,
    table_oid       oid         NOT NULL,
    schema_name     text COLLATE "C" NOT NULL,
    table_name      text COLLATE "C" NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz,
    ended_by        text COLLATE "C",
    legacy_from_id  bigint,
    CONSTRAINT audited_table_history_ended_by_check CHECK (ended_by IN ('rename', 'drop'))
);
-- src/capture.c reads the open row of a table by this index
CREATE UNIQUE INDEX audited_table_history_open ON audit.audited_table_history (table_oid)
    WHERE valid_until IS NULL;
CREATE INDEX audited_table_history_identity ON audit.audited_table_history (table_identity);
CREATE INDEX audited_table_history_name ON audit.audited_table_history (schema_name, table_name);
COMMENT ON TABLE audit.audited_table_history IS
    'Audited tables over time: one row per name a table had while it had an identity (valid_from .. valid_until); table_identity is on every data and read event';
COMMENT ON COLUMN audit.audited_table_history.table_identity IS 'Stable identity of the table (audit.event.table_identity)';
COMMENT ON COLUMN audit.audited_table_history.table_oid IS 'OID of the table while it existed';
COMMENT ON COLUMN audit.audited_table_history.valid_from IS 'When the table got this name (or its identity); -infinity for tables audited before 1.6';
COMMENT ON COLUMN audit.audited_table_history.valid_until IS 'When it lost the name (renamed or dropped); NULL: its current name';
COMMENT ON COLUMN audit.audited_table_history.ended_by IS 'rename or drop (NULL while current)';
COMMENT ON COLUMN audit.audited_table_history.legacy_from_id IS
    'Upgrade to 1.6: events with no identity under this name and with a greater id belong to this table';

-- The columns of audited tables over time (1.6), pgMemento's column log
-- for audit_ext: one row per version of a column (its attnum, name and type
-- while they held).  A rename or a type change ends a version and starts the
-- next; a drop ends the last.  audit.row_as_of() rebuilds a past row with
-- the columns the table had then, under their names then.  A column added
-- while the table was audited says what the rows that existed got: "known"
-- (no default, or a default PostgreSQL stored once for all of them:
-- added_value) or "unknown" (a volatile default, an identity or generated
-- column: the table was rewritten without row triggers).
CREATE TABLE audit.audited_column_history (
    table_identity  bigint      NOT NULL,
    attnum          smallint    NOT NULL,
    column_name     text COLLATE "C" NOT NULL,
    data_type       text COLLATE "C" NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz,
    ended_by        text COLLATE "C",
    added           text COLLATE "C",
    added_value     jsonb,
    converted       text COLLATE "C",
    CONSTRAINT audited_column_history_ended_by_check CHECK (ended_by IN ('rename', 'type', 'drop')),
    CONSTRAINT audited_column_history_added_check CHECK (added IN ('known', 'unknown')),
    CONSTRAINT audited_column_history_converted_check CHECK (converted IN ('cast', 'using'))
);
CREATE INDEX audited_column_history_identity ON audit.audited_column_history (table_identity, attnum);
COMMENT ON TABLE audit.audited_column_history IS
    'Columns of audited tables over time: one row per version of a column (name and type from valid_from to valid_until)';
COMMENT ON COLUMN audit.audited_column_history.attnum IS 'The column''s number in the table (kept across renames and type changes)';
COMMENT ON COLUMN audit.audited_column_history.data_type IS 'The column''s type while this version held (format_type)';
COMMENT ON COLUMN audit.audited_column_history.ended_by IS 'rename, type (ALTER ... TYPE) or drop; NULL while current';
COMMENT ON COLUMN audit.audited_column_history.added IS
    'Column added while audited: known (rows that existed got added_value) or unknown (volatile default, identity or generated column); NULL: it existed when auditing began, or is a later version';
COMMENT ON COLUMN audit.audited_column_history.added_value IS 'The value rows that existed got when the column was added (added = known)';
COMMENT ON COLUMN audit.audited_column_history.converted IS
    'After a type change: how existing values were converted, cast (the type''s own conversion) or using (an expression the trail does not know)';

-- The columns of a table whose type an ALTER TABLE command (from
-- pg_event_trigger_ddl_commands()) converted USING an expression
-- (src/ddl_capture.c)
CREATE FUNCTION audit.ddl_type_using(cmd pg_ddl_command, rel oid)
RETURNS text[]
LANGUAGE C
STRICT
STABLE
AS 'MODULE_PATHNAME', 'audit_ddl_type_using';
COMMENT ON FUNCTION audit.ddl_type_using(pg_ddl_command, oid) IS
    'Internal: the columns of a table whose ALTER COLUMN TYPE in a collected ALTER TABLE command had a USING clause';

-- Record the columns of an audited table that changed since last time.
-- The value rows got from a new column's default is evaluated as the
-- table's owner: its types and domains are the owner's code.
CREATE FUNCTION audit.sync_columns(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ident bigint;
    a     record;
    cur   audit.audited_column_history;
    first boolean;
    how   text;
    val   jsonb;
    -- when the change happened, not when its statement began: the events of
    -- the statements before it in one query string, a DO block or a
    -- migration function carry that same statement start (up to the 1.6
    -- review a value an UPDATE wrote just before ALTER ... TYPE ... USING in
    -- one string counted as written after the conversion, and row_as_of()
    -- showed it unconverted); a statement after it in the same string then
    -- counts as before it, which gives "[unknown]" rather than a guess
    now_  timestamptz := clock_timestamp();
    using_cols text[];
    in_trigger boolean;
BEGIN
    SELECT h.table_identity INTO ident FROM audit.audited_table_history h
     WHERE h.table_oid = tbl AND h.valid_until IS NULL;
    IF ident IS NULL THEN
        RETURN;
    END IF;
    -- the columns whose type the ALTER TABLE being ended converted USING an
    -- expression, from its parse tree (the text the client sent may be
    -- "SELECT migrate()"); outside the event trigger (audit.enable() of a
    -- table changed while not audited) how a type change converted is not
    -- known: NULL, taken as "using"
    BEGIN
        PERFORM FROM pg_event_trigger_ddl_commands() LIMIT 1;
        in_trigger := true;
    EXCEPTION WHEN event_trigger_protocol_violated THEN
        in_trigger := false;
    END;
    -- (the upgrade to 1.6 alters audited tables before it creates
    -- audit.ddl_type_using: NULL, unknown, then)
    IF in_trigger AND to_regprocedure('audit.ddl_type_using(pg_ddl_command, oid)') IS NOT NULL THEN
        using_cols := ARRAY(SELECT u FROM pg_event_trigger_ddl_commands() c,
                                          unnest(audit.ddl_type_using(c.command, tbl)) u);
    END IF;
    first := NOT EXISTS (SELECT 1 FROM audit.audited_column_history c WHERE c.table_identity = ident);
    IF first THEN
        -- the columns a table has when auditing begins hold from the start
        -- of the statement that began it (its BASELINE events carry that time)
        now_ := statement_timestamp();
    END IF;
    FOR a IN
        SELECT t.attnum, t.attname::text AS name, format_type(t.atttypid, t.atttypmod) AS typ, t.attisdropped,
               t.atthasmissing, t.attmissingval::text AS missing, t.atthasdef, t.attidentity, t.attgenerated
          FROM pg_attribute t
         WHERE t.attrelid = tbl AND t.attnum > 0
         ORDER BY t.attnum
    LOOP
        SELECT * INTO cur FROM audit.audited_column_history c
         WHERE c.table_identity = ident AND c.attnum = a.attnum AND c.valid_until IS NULL;
        IF a.attisdropped THEN
            IF cur.table_identity IS NOT NULL THEN
                UPDATE audit.audited_column_history SET valid_until = now_, ended_by = 'drop'
                 WHERE table_identity = ident AND attnum = a.attnum AND valid_until IS NULL;
            END IF;
            CONTINUE;
        END IF;
        IF cur.table_identity IS NULL THEN
            how := NULL;
            val := NULL;
            IF NOT first THEN
                IF a.attidentity <> '' OR a.attgenerated <> ''
                   OR a.typ LIKE '%[]' THEN   -- an array's stored default is not taken apart here
                    how := 'unknown';
                ELSIF a.atthasmissing THEN
                    BEGIN
                        val := audit.eval_as_table_owner(tbl,
                                   format('SELECT audit.canonical_jsonb(s.*) -> ''v'' FROM (SELECT (($1 ->> 0)::%s)[1] AS v) s',
                                          format_type((SELECT t.atttypid FROM pg_attribute t
                                                        WHERE t.attrelid = tbl AND t.attnum = a.attnum), NULL) || '[]'),
                                   jsonb_build_array(a.missing));
                        how := 'known';
                    EXCEPTION WHEN OTHERS THEN
                        how := 'unknown';
                    END;
                ELSIF NOT a.atthasdef THEN
                    how := 'known';   -- NULL for every row that existed
                ELSE
                    how := 'unknown';
                END IF;
            END IF;
            INSERT INTO audit.audited_column_history (table_identity, attnum, column_name, data_type, valid_from, added, added_value)
            VALUES (ident, a.attnum, a.name, a.typ, now_, how,
                    CASE WHEN how = 'known' THEN coalesce(val, 'null') END);
        ELSIF cur.column_name IS DISTINCT FROM a.name OR cur.data_type IS DISTINCT FROM a.typ THEN
            UPDATE audit.audited_column_history
               SET valid_until = now_,
                   ended_by = CASE WHEN cur.data_type IS DISTINCT FROM a.typ THEN 'type' ELSE 'rename' END
             WHERE table_identity = ident AND attnum = a.attnum AND valid_until IS NULL;
            INSERT INTO audit.audited_column_history (table_identity, attnum, column_name, data_type, valid_from, converted)
            VALUES (ident, a.attnum, a.name, a.typ, now_,
                    CASE WHEN cur.data_type IS DISTINCT FROM a.typ THEN
                         CASE WHEN a.name = ANY (coalesce(using_cols, ARRAY[a.name])) THEN 'using' ELSE 'cast' END END);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.sync_columns(regclass) IS
    'Internal: record the column versions of an audited table that changed (audit.audited_column_history)';

-- The identity of a table that is being audited, given at the first
-- audit.enable() (or when it becomes a new inheritance child).
CREATE FUNCTION audit.register_table(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ident bigint;
BEGIN
    PERFORM audit.sync_table_names();
    SELECT h.table_identity INTO ident FROM audit.audited_table_history h
     WHERE h.table_oid = tbl AND h.valid_until IS NULL;
    IF ident IS NULL THEN
        ident := nextval('audit.table_identity_seq');
        INSERT INTO audit.audited_table_history (table_identity, table_oid, schema_name, table_name, valid_from)
        SELECT ident, c.oid, n.nspname, c.relname, statement_timestamp()
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = tbl;
    END IF;
    PERFORM audit.sync_columns(tbl);
    RETURN ident;
END
$$;
COMMENT ON FUNCTION audit.register_table(regclass) IS
    'Internal: the identity of an audited table (a new one if it has none)';

-- After ALTER TABLE / ALTER SCHEMA: a table with an identity whose name
-- changed gets a new row of audit.audited_table_history.
CREATE FUNCTION audit.sync_table_names()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
BEGIN
    -- after pg_restore the tables are back under their names with new OIDs
    -- (and their audit triggers): the identity moves to the new OID.
    -- Events captured before that carry no identity; they belong to the
    -- table by name after its last event that had one.
    FOR h IN
        SELECT x.table_identity, x.table_oid AS old_oid, c.oid AS new_oid
          FROM audit.audited_table_history x
          JOIN pg_namespace n ON n.nspname = x.schema_name
          JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = x.table_name
         WHERE x.valid_until IS NULL
           AND NOT EXISTS (SELECT 1 FROM pg_class o WHERE o.oid = x.table_oid)
           AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'audit_ext_row'
                                                    AND t.tgparentid = 0)
           AND NOT EXISTS (SELECT 1 FROM audit.audited_table_history y
                            WHERE y.table_oid = c.oid AND y.valid_until IS NULL)
    LOOP
        UPDATE audit.audited_table_history x
           SET table_oid = h.new_oid,
               legacy_from_id = coalesce(x.legacy_from_id,
                                         (SELECT coalesce(max(e.id), 0) FROM audit.event e
                                           WHERE e.table_identity = h.table_identity))
         WHERE x.table_oid = h.old_oid AND x.valid_until IS NULL;
    END LOOP;
    FOR h IN
        SELECT x.table_identity, x.table_oid, n.nspname::text AS nsp, c.relname::text AS rel
          FROM audit.audited_table_history x
          JOIN pg_class c ON c.oid = x.table_oid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE x.valid_until IS NULL
           AND (x.schema_name, x.table_name) IS DISTINCT FROM (n.nspname::text, c.relname::text)
    LOOP
        UPDATE audit.audited_table_history SET valid_until = statement_timestamp(), ended_by = 'rename'
         WHERE table_oid = h.table_oid AND valid_until IS NULL;
        INSERT INTO audit.audited_table_history (table_identity, table_oid, schema_name, table_name, valid_from)
        VALUES (h.table_identity, h.table_oid, h.nsp, h.rel, statement_timestamp());
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.sync_table_names() IS
    'Internal: record the new names of renamed tables that have an identity';

CREATE FUNCTION audit.on_table_names_change()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel oid;
BEGIN
    PERFORM audit.sync_table_names();
    FOR rel IN
        SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() c
         WHERE c.classid = 'pg_class'::regclass AND c.object_type IN ('table', 'table column')
           AND EXISTS (SELECT 1 FROM audit.audited_table_history h
                        WHERE h.table_oid = c.objid AND h.valid_until IS NULL)
    LOOP
        PERFORM audit.sync_columns(rel::regclass);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.on_table_names_change() IS
    'Event trigger: follows renamed audited tables and schemas in audit.audited_table_history, and their columns in audit.audited_column_history';

CREATE EVENT TRIGGER audit_ext_table_names ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA')
    EXECUTE FUNCTION audit.on_table_names_change();

-- A dropped table's identity ends (a table created later, even with the
-- same name or, rarely, the same OID, is another table).
CREATE FUNCTION audit.on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE audit.audited_table_history h SET valid_until = statement_timestamp(), ended_by = 'drop'
     WHERE h.valid_until IS NULL
       AND h.table_oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                            WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
END
$$;
COMMENT ON FUNCTION audit.on_sql_drop() IS
    'Event trigger: ends the identity of a dropped table in audit.audited_table_history';

CREATE EVENT TRIGGER audit_ext_sql_drop ON sql_drop
    EXECUTE FUNCTION audit.on_sql_drop();

CREATE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, audit.table_flags(tbl));
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
    dig     text[];
    n_excl  text[];
    n_mask  text[];
    n_dig   text[];
BEGIN
    SELECT audit.trigger_arguments(t.tgargs) INTO args
      FROM pg_trigger t
     WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0;
    IF args IS NULL THEN
        RETURN false;
    END IF;
    excl := coalesce(args[1]::text[], '{}');
    mask := coalesce(args[2]::text[], '{}');
    dig := coalesce(args[4]::text[], '{}');
    IF old_name IS NOT NULL THEN
        n_excl := array_replace(excl, old_name, new_name);
        n_mask := array_replace(mask, old_name, new_name);
        n_dig := array_replace(dig, old_name, new_name);
    ELSE
        n_excl := excl;
        n_mask := mask;
        n_dig := dig;
    END IF;
    -- names that are no longer columns were dropped
    SELECT coalesce(array_agg(c ORDER BY o), '{}') INTO n_excl
      FROM unnest(n_excl) WITH ORDINALITY u(c, o)
     WHERE EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    SELECT coalesce(array_agg(c ORDER BY o), '{}') INTO n_mask
      FROM unnest(n_mask) WITH ORDINALITY u(c, o)
     WHERE EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    SELECT coalesce(array_agg(c ORDER BY o), '{}') INTO n_dig
      FROM unnest(n_dig) WITH ORDINALITY u(c, o)
     WHERE EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = c AND attnum > 0 AND NOT attisdropped);
    IF n_excl = excl AND n_mask = mask AND n_dig = dig THEN
        RETURN false;
    END IF;
    PERFORM audit.install_triggers(tbl, n_excl, n_mask, audit.table_flags(tbl), n_dig);
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.sync_column_options(regclass, text, text) IS
    'Internal: follow renamed and dropped excluded/masked/digest columns in a table''s audit options';

-- A ddl event about auditing itself (audit.enable/disable), written with the
-- caller's transaction; the user recorded is the session's role.
CREATE FUNCTION audit.log_config_event(action text, tbl regclass, detail jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'audit_log_config_event';
COMMENT ON FUNCTION audit.log_config_event(text, regclass, jsonb) IS
    'Internal: record a change to auditing (ENABLE AUDIT, DISABLE AUDIT) as a ddl event';

CREATE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT NULL,
                             mask_columns text[] DEFAULT NULL,
                             log_reads boolean DEFAULT NULL,
                             baseline boolean DEFAULT false,
                             digest_columns text[] DEFAULT NULL,
                             sensitivity text DEFAULT NULL,
                             capture text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       record;
    col       text;
    pk_cols   text[];
    flags     text[];
    cur_exclude text[];
    cur_mask  text[];
    cur_digest text[];
    typ       regtype;
    cur_flags text[];
    prev_ri   text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table to audit must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
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
    IF array_ndims(digest_columns) > 1 THEN
        RAISE EXCEPTION 'digest_columns must be a one-dimensional array of column names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(digest_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'digest_columns must not contain NULL'
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

    -- issue 22: capture => 'wal' (src/wal_capture.c).  The slot is made
    -- before this transaction writes anything (audit.wal_prepare()).
    -- Not given (NULL) keeps the table's current mode, like every other
    -- option (trigger for a table not audited yet): a call that only changes
    -- log_reads must not move a WAL-mode table back to triggers.
    IF capture IS NULL THEN
        capture := CASE WHEN 'wal' = ANY (audit.table_flags(tbl)) THEN 'wal' ELSE 'trigger' END;
    END IF;
    IF capture NOT IN ('trigger', 'wal') THEN
        RAISE EXCEPTION 'capture must be ''trigger'' or ''wal'', not %', quote_literal(capture)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'trigger: events written with the change; wal: decoded from the WAL by the capture worker.';
    END IF;
    IF capture = 'wal' THEN
        IF cardinality(digest_columns) > 0 OR cardinality((SELECT a.digest_columns FROM audit.audited_tables a
                                                            WHERE a.table_oid = tbl)) > 0 AND digest_columns IS NULL THEN
            RAISE EXCEPTION 'cannot audit "%" with capture => ''wal'' and digest columns', tbl
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'The WAL capture worker does not compute digests; it would record the values.',
                      HINT = 'Use capture => ''trigger'' for a table with digest_columns, or clear them with digest_columns => ''{}''.';
        END IF;
        PERFORM audit.wal_prepare();
    END IF;

    -- This month's and the next months' partitions exist before any event.
    PERFORM audit.create_partitions(2);
    -- Concurrent enable/disable calls on one table wait for each other here
    -- (without the lock the second failed: "trigger ... already exists").
    -- ACCESS EXCLUSIVE, the lock DROP TRIGGER takes anyway: a weaker one now
    -- and a stronger one later could deadlock with DML.  Taken after
    -- create_partitions(), which may lock the trail's partitions: a writer
    -- holding those and waiting for this table would otherwise deadlock
    -- with us.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);

    -- An option not given keeps its current value on an audited table (a
    -- call that only turns log_reads on must not unmask a column); on a new
    -- table it is empty.  '{}' clears it.
    -- A column named in the option given leaves the kept one (masked ->
    -- excluded needs no second call).
    SELECT a.exclude_columns, a.mask_columns, a.digest_columns INTO cur_exclude, cur_mask, cur_digest
      FROM audit.audited_tables a WHERE a.table_oid = tbl;
    IF exclude_columns IS NULL THEN
        exclude_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_exclude) c
                                      WHERE c <> ALL (coalesce(mask_columns, '{}'))
                                        AND c <> ALL (coalesce(digest_columns, '{}'))), '{}');
    END IF;
    IF mask_columns IS NULL THEN
        mask_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_mask) c
                                   WHERE c <> ALL (exclude_columns)
                                     AND c <> ALL (coalesce(digest_columns, '{}'))), '{}');
    END IF;
    IF digest_columns IS NULL THEN
        digest_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_digest) c
                                     WHERE c <> ALL (exclude_columns) AND c <> ALL (mask_columns)), '{}');
    END IF;

    FOREACH col IN ARRAY exclude_columns || mask_columns || digest_columns LOOP
        IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute
                                       WHERE attrelid = tbl AND attname = col
                                         AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of table "%" does not exist', col, tbl
                USING ERRCODE = 'undefined_column',
                      DETAIL = CASE WHEN col = ANY (exclude_columns)
                                    THEN 'It was named in exclude_columns.'
                                    WHEN col = ANY (mask_columns)
                                    THEN 'It was named in mask_columns.'
                                    ELSE 'It was named in digest_columns.' END,
                      HINT = 'Name existing columns, spelled as in the table (case matters).';
        END IF;
    END LOOP;
    -- digests are of bytes, text or jsonb (1.6)
    FOREACH col IN ARRAY digest_columns LOOP
        SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END::regtype INTO typ
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = tbl AND a.attname = col;
        IF typ NOT IN ('bytea'::regtype, 'text'::regtype, 'character varying'::regtype, 'jsonb'::regtype) THEN
            RAISE EXCEPTION 'column "%" of table "%" cannot be a digest column: its type is %', col, tbl, typ
                USING ERRCODE = 'wrong_object_type',
                      DETAIL = 'digest_columns records a SHA-256 and a size instead of the value; it applies to bytea, text, varchar and jsonb columns.',
                      HINT = 'Use exclude_columns or mask_columns for other columns.';
        END IF;
    END LOOP;
    IF (exclude_columns || mask_columns) && digest_columns THEN
        RAISE EXCEPTION 'a column cannot be both a digest column and excluded or masked'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Named in both: %s.',
                                  (SELECT string_agg(quote_ident(c), ', ')
                                     FROM unnest(digest_columns) c WHERE c = ANY (exclude_columns || mask_columns))),
                  HINT = 'Excluded columns are never stored, masked ones as a marker, digest columns as {"sha256", "bytes"}. Choose one.';
    END IF;
    IF exclude_columns && mask_columns THEN
        RAISE EXCEPTION 'a column cannot be both excluded and masked'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Named in both: %s.',
                                  (SELECT string_agg(quote_ident(c), ', ')
                                     FROM unnest(exclude_columns) c WHERE c = ANY (mask_columns))),
                  HINT = 'Excluded columns are never stored; masked ones are stored as a marker. Choose one.';
    END IF;

    pk_cols := audit.key_columns(tbl);

    IF pk_cols && digest_columns THEN
        RAISE EXCEPTION 'primary key columns of "%" cannot be digest columns', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The primary key is (%s); it identifies each audited record.',
                                  array_to_string(pk_cols, ', ')),
                  HINT = 'Leave key columns out of digest_columns.';
    END IF;
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

    -- log_reads NULL: keep what the table had (off for a new one)
    cur_flags := audit.table_flags(tbl);
    -- the flags kept: log_reads and sensitivity (the capture mode's are set below)
    flags := ARRAY(SELECT f FROM unnest(cur_flags) f WHERE f <> 'wal' AND f NOT LIKE 'replica\_identity=%');
    IF log_reads THEN
        flags := array_remove(flags, 'log_reads') || 'log_reads'::text;
    ELSIF NOT log_reads THEN
        flags := array_remove(flags, 'log_reads');
    END IF;
    -- 1.6: sensitivity (a flag "sensitivity:LEVEL"): NULL keeps what the
    -- table had, 'none' removes it; data and read events of the table get at
    -- least that risk (src/risk.c)
    IF sensitivity IS NOT NULL THEN
        IF NOT sensitivity = ANY (ARRAY['none', 'low', 'medium', 'high', 'critical']) THEN
            RAISE EXCEPTION 'invalid sensitivity "%": not a risk level', sensitivity
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'sensitivity is low, medium, high or critical; none removes it.';
        END IF;
        flags := ARRAY(SELECT f FROM unnest(flags) f WHERE f NOT LIKE 'sensitivity:%');
        IF sensitivity <> 'none' THEN
            flags := flags || ('sensitivity:' || sensitivity);
        END IF;
    END IF;
    -- capture => 'wal': the old row of every UPDATE and DELETE in the WAL
    -- (REPLICA IDENTITY FULL); the table's own setting is kept in the flags
    -- and restored when it leaves WAL mode.  The switch is atomic: the old
    -- triggers go and the new ones come in this transaction, under ACCESS
    -- EXCLUSIVE, and the decoder reads each change with the catalog of its
    -- time, so every change is captured by exactly one of the two modes.
    prev_ri := (SELECT f FROM unnest(cur_flags) f WHERE f LIKE 'replica\_identity=%' LIMIT 1);
    IF capture = 'wal' THEN
        IF prev_ri IS NULL THEN
            prev_ri := 'replica_identity=' ||
                       (SELECT c.relreplident::text ||
                               CASE WHEN c.relreplident = 'i'
                                    THEN ':' || (SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                                  WHERE i.indrelid = tbl AND i.indisreplident)
                                    ELSE '' END
                          FROM pg_class c WHERE c.oid = tbl);
        END IF;
        flags := flags || ARRAY['wal', prev_ri];
        IF (SELECT c.relreplident FROM pg_class c WHERE c.oid = tbl) <> 'f' THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
        END IF;
    ELSIF prev_ri IS NOT NULL THEN
        PERFORM audit.restore_replica_identity(tbl, prev_ri);
    END IF;

    -- Idempotent: recreate the triggers with the current options.
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, flags, digest_columns);
    PERFORM audit.log_config_event('ENABLE AUDIT', tbl,
                                   jsonb_build_object('exclude_columns', to_jsonb(exclude_columns),
                                                      'mask_columns', to_jsonb(mask_columns))
                                   || CASE WHEN cardinality(digest_columns) > 0
                                           THEN jsonb_build_object('digest_columns', to_jsonb(digest_columns))
                                           ELSE '{}'::jsonb END
                                   || CASE WHEN 'log_reads' = ANY (flags)
                                           THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END
                                   || CASE WHEN baseline THEN '{"baseline": true}'::jsonb ELSE '{}'::jsonb END
                                   || coalesce((SELECT jsonb_build_object('sensitivity', substr(f, 13))
                                                  FROM unnest(flags) f WHERE f LIKE 'sensitivity:%' LIMIT 1),
                                               '{}'::jsonb)
                                   || CASE WHEN capture = 'wal' THEN '{"capture": "wal"}'::jsonb ELSE '{}'::jsonb END);
    -- the rows the table holds now, one BASELINE event each (after the
    -- triggers: their lock keeps writers out until this transaction ends)
    IF baseline THEN
        PERFORM audit.record_baseline(tbl);
    END IF;
END
$$;

CREATE FUNCTION audit.record_baseline(tbl regclass)
RETURNS bigint
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'audit_record_baseline';
COMMENT ON FUNCTION audit.record_baseline(regclass) IS
    'Internal to audit.enable(baseline => true): one data/BASELINE event per current row of the table, new_data the row; returns how many';

-- Hardened by the fuzz tests (docs/testing.md): an OID naming no relation is
-- refused (42P01), and the table is locked before its triggers are read, so
-- that concurrent calls on one table wait for each other.
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
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname IN ('audit_ext_row', 'audit_ext_wal_part')) THEN
        RAISE NOTICE 'table "%" is not audited', tbl;
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl
                  AND (tgname = 'audit_ext_row' AND tgparentid <> 0 OR tgname = 'audit_ext_wal_part')) THEN
        RAISE EXCEPTION 'cannot stop auditing partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call audit.disable() on the partitioned table.';
    END IF;
    PERFORM audit.log_config_event('DISABLE AUDIT', tbl,
               (SELECT jsonb_build_object('exclude_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[1]::text[]),
                                          'mask_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[2]::text[]))
                  FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row'));
    -- issue 22: a table audited from the WAL gets its replica identity back
    IF 'wal' = ANY (audit.table_flags(tbl)) THEN
        PERFORM audit.restore_replica_identity(tbl,
                    (SELECT f FROM unnest(audit.table_flags(tbl)) f WHERE f LIKE 'replica\_identity=%' LIMIT 1));
    END IF;
    PERFORM audit.drop_audit_triggers(tbl);
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.disable(regclass) IS
    'Stop auditing a table; its history stays. Returns false (with a NOTICE) if it was not audited';

-- New partitions of an audited partitioned table get the TRUNCATE trigger
-- too (row triggers are cloned by PostgreSQL itself).
-- Inheritance children (1.4).  UPDATE and DELETE through an audited table
-- (without ONLY) change the rows of its inheritance children, which fire the
-- children's triggers, not the parent's: those changes went unrecorded.  The
-- event trigger that gives new partitions their TRUNCATE trigger now also
-- audits a table that starts inheriting from an audited one (CREATE TABLE
-- ... INHERITS, ALTER TABLE ... INHERIT) with that parent's options (the
-- first audited parent), recorded as ENABLE AUDIT with "inherits" and
-- "automatic": true.  Temporary and foreign children cannot be audited; the
-- utility hook's event says so ("child_audited": false) and
-- audited_tables.capture_state names them.  An event trigger works with or
-- without shared_preload_libraries; pg_restore creates tables before their
-- triggers, so a restored child keeps exactly the triggers it had.
CREATE FUNCTION audit.on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part  oid;
    root  record;
    rel   oid;
    par   regclass;
    args  text[];
    flags text[];
BEGIN
    -- A partition detached from an audited table is no longer audited: its
    -- row trigger (a clone) went with the DETACH, which was recorded; its own
    -- truncate trigger goes now (it kept recording TRUNCATEs of a table whose
    -- changes were no longer captured).
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c WHERE c.command_tag = 'ALTER TABLE') THEN
        FOR rel IN
            SELECT t.tgrelid
              FROM pg_trigger t JOIN pg_class k ON k.oid = t.tgrelid
             WHERE t.tgname = 'audit_ext_truncate' AND t.tgparentid = 0 AND NOT k.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_trigger r
                                WHERE r.tgrelid = t.tgrelid AND r.tgfoid = 'audit.capture_row()'::regprocedure)
        LOOP
            EXECUTE format('DROP TRIGGER audit_ext_truncate ON %s', rel::regclass);
        END LOOP;
        -- issue 22: one detached from a WAL-mode partitioned table loses its
        -- statement triggers and gets its own replica identity back
        FOR rel IN
            SELECT t.tgrelid
              FROM pg_trigger t JOIN pg_class k ON k.oid = t.tgrelid
             WHERE t.tgname = 'audit_ext_wal_part' AND NOT k.relispartition
        LOOP
            PERFORM audit.drop_audit_triggers(rel::regclass);
        END LOOP;
    END IF;

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
            -- issue 22: under a WAL-mode partitioned table, the statement
            -- triggers and REPLICA IDENTITY FULL instead
            IF 'wal' = ANY (coalesce(root.args[3]::text[], '{}')) THEN
                PERFORM audit.install_wal_partition_triggers(part::regclass, root.args[1]::text[],
                                                             root.args[2]::text[], root.args[3]::text[]);
                CONTINUE;
            END IF;
            EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                           part::regclass, root.args[1], root.args[2]);
        END LOOP;
    END LOOP;

    -- An ordinary permanent table, not audited, inheriting from an audited one.
    FOR rel IN
        SELECT DISTINCT c.objid
          FROM pg_event_trigger_ddl_commands() c
          JOIN pg_class k ON k.oid = c.objid
         WHERE c.object_type = 'table' AND c.classid = 'pg_class'::regclass
           AND k.relkind = 'r' AND k.relpersistence <> 't' AND NOT k.relispartition
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger t
                               WHERE t.tgrelid = rel AND t.tgfoid = 'audit.capture_row()'::regprocedure);
        par := NULL;
        SELECT i.inhparent, audit.trigger_arguments(t.tgargs) INTO par, args
          FROM pg_inherits i
          JOIN pg_trigger t ON t.tgrelid = i.inhparent AND t.tgparentid = 0
                           AND t.tgfoid = 'audit.capture_row()'::regprocedure
         WHERE i.inhrelid = rel
         ORDER BY i.inhseqno
         LIMIT 1;
        CONTINUE WHEN par IS NULL;
        flags := coalesce(args[3]::text[], '{}');
        PERFORM audit.install_triggers(rel::regclass, args[1]::text[], args[2]::text[], flags,
                                       coalesce(args[4]::text[], '{}'));
        PERFORM audit.log_config_event('ENABLE AUDIT', rel::regclass,
                   jsonb_build_object('exclude_columns', to_jsonb(args[1]::text[]),
                                      'mask_columns', to_jsonb(args[2]::text[]),
                                      'inherits', par::text,
                                      'automatic', true)
                   || CASE WHEN 'log_reads' = ANY (flags) THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.on_ddl_command_end() IS
    'Event trigger: gives new partitions of audited tables their TRUNCATE trigger (under a WAL-mode partitioned table: the statement triggers and REPLICA IDENTITY FULL; a detached one loses them), audits a new inheritance child of an audited table with its parent''s options';

CREATE EVENT TRIGGER audit_ext_ddl_command_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION audit.on_ddl_command_end();

-- Read auditing (src/read_audit.c).  The flag travels, like the other
-- options, as an argument of the audit_ext_row trigger: its third argument is
-- a text[] of flags, '{log_reads}' or '{}'.

-- (Re)create the audit triggers with options and flags, keeping the digest
-- columns the table has.
CREATE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, flags,
                                   coalesce((SELECT (audit.trigger_arguments(t.tgargs))[4]::text[]
                                               FROM pg_trigger t
                                              WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0),
                                            '{}'));
END
$$;
COMMENT ON FUNCTION audit.install_triggers(regclass, text[], text[], text[]) IS
    'Internal: (re)create the audit triggers of a table with its options and flags (log_reads), keeping its digest columns';

-- issue 22: one partition of a partitioned table audited with capture =>
-- 'wal': BEFORE ... FOR EACH STATEMENT triggers that write the statement's
-- context (a statement may name the partition itself), REPLICA IDENTITY FULL
-- (its own setting kept in the trigger's flags, restored by
-- audit.drop_audit_triggers()).
CREATE FUNCTION audit.install_wal_partition_triggers(part regclass, exclude_columns text[], mask_columns text[],
                                                     flags text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pflags text[];
BEGIN
    -- an unlogged partition writes no WAL: its changes would be lost to the
    -- trail (CREATE UNLOGGED TABLE ... PARTITION OF, ATTACH PARTITION)
    IF (SELECT c.relpersistence = 'u' FROM pg_class c WHERE c.oid = part) THEN
        RAISE EXCEPTION 'partition "%" is unlogged: a partition of a table audited with capture => ''wal'' must be logged', part
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'An unlogged table writes no WAL, so none of its changes could be captured from it.',
                  HINT = 'Make it logged (ALTER TABLE ... SET LOGGED) before attaching it, or audit the partitioned table with capture => ''trigger''.';
    END IF;
    pflags := ARRAY(SELECT f FROM unnest(flags) f WHERE f NOT LIKE 'replica\_identity=%') ||
              ('replica_identity=' ||
               (SELECT c.relreplident::text ||
                       CASE WHEN c.relreplident = 'i'
                            THEN ':' || (SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                          WHERE i.indrelid = part AND i.indisreplident)
                            ELSE '' END
                  FROM pg_class c WHERE c.oid = part));
    EXECUTE format('CREATE TRIGGER audit_ext_wal_part BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                   part, exclude_columns::text, mask_columns::text, pflags::text);
    EXECUTE format('CREATE TRIGGER audit_ext_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L, %L)',
                   part, exclude_columns::text, mask_columns::text, pflags::text);
    IF (SELECT c.relkind = 'r' AND c.relreplident <> 'f' FROM pg_class c WHERE c.oid = part) THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', part);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.install_wal_partition_triggers(regclass, text[], text[], text[]) IS
    'Internal: the WAL-mode statement triggers and REPLICA IDENTITY FULL of one partition of a partitioned table audited with capture => ''wal''';

-- (Re)create the audit triggers with options, flags and digest columns (1.6:
-- the row trigger's fourth argument; '{}' leaves it out).
CREATE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[],
                                       digest_columns text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    PERFORM audit.register_table(tbl);
    PERFORM audit.drop_audit_triggers(tbl);
    -- issue 22: capture => 'wal': the triggers write the statement's context
    -- for the decoder, once per statement; the rows come from the WAL
    IF 'wal' = ANY (flags) THEN
        -- an unlogged table writes no WAL: nothing of it would be captured
        -- (ALTER TABLE ... SET UNLOGGED of a WAL-mode table is refused in C)
        IF (SELECT c.relpersistence = 'u' FROM pg_class c WHERE c.oid = tbl) THEN
            RAISE EXCEPTION 'table "%" is unlogged: it cannot be audited with capture => ''wal''', tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'An unlogged table writes no WAL, so none of its changes could be captured from it.',
                      HINT = 'Make it logged (ALTER TABLE ... SET LOGGED), or audit it with capture => ''trigger''.';
        END IF;
        EXECUTE format('CREATE TRIGGER audit_ext_row BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, flags::text);
        EXECUTE format('CREATE TRIGGER audit_ext_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, flags::text);
        -- A partitioned table: statement triggers are not cloned, and a
        -- statement may name a partition directly, so every partition gets
        -- the statement's context triggers too (audit_ext_wal_part; new
        -- partitions get them from audit.on_ddl_command_end()), and REPLICA
        -- IDENTITY FULL (the old rows are logged per partition).  The decoder
        -- records a partition's changes under the audited partitioned table.
        FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.relid <> tbl LOOP
            PERFORM audit.install_wal_partition_triggers(part, exclude_columns, mask_columns, flags);
        END LOOP;
        RETURN;
    END IF;
    IF cardinality(digest_columns) > 0 THEN
        EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, coalesce(flags, '{}')::text,
                       digest_columns::text);
    ELSE
        EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, coalesce(flags, '{}')::text);
    END IF;
    EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                   tbl, exclude_columns::text, mask_columns::text);
    FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.relid <> tbl LOOP
        EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                       part, exclude_columns::text, mask_columns::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.install_triggers(regclass, text[], text[], text[], text[]) IS
    'Internal: (re)create the audit triggers of a table with its options, flags (log_reads) and digest columns';

-- The flags of an audited table ('{}' when none or not audited).
CREATE FUNCTION audit.table_flags(tbl regclass)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT (audit.trigger_arguments(t.tgargs))[3]::text[]
                       FROM pg_trigger t
                      WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0),
                    '{}')
$$;
COMMENT ON FUNCTION audit.table_flags(regclass) IS
    'Internal: the flags (log_reads) of an audited table, from its audit trigger';
COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text[], text, text) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start; digest_columns (bytea, text, jsonb) are recorded as {"sha256": ..., "bytes": n} instead of their value; sensitivity (low, medium, high, critical; ''none'' removes it) raises every data and read event of the table to at least that risk; capture => ''wal'' captures the table''s changes from the WAL (asynchronous, needs wal_level = logical; sets REPLICA IDENTITY FULL), ''trigger'' with the change (not given: the table keeps its mode; a new table is captured by trigger)';

-- src/ddl_capture.c records every statement that stops or bypasses an audit
-- trigger (DISABLE TRIGGER name/ALL/USER, ENABLE REPLICA TRIGGER, DROP
-- TRIGGER, of the row or the truncate trigger, on the table or a partition)
-- whatever audit_ext.log_ddl says, with "audit_trigger_disabled": true and
-- "risk": "critical"; it refuses renaming an audit trigger, replacing it and
-- making an extension own it.  Here: what the views and rules need.

-- What is not captured on an audited table, read from the catalog.
-- capturing: every audit trigger of the table and of its partitions exists
-- and fires in normal sessions (tgenabled O or A), and every permanent
-- inheritance child is audited.  capture_state: 'capturing', or every gap ('; ').
-- replicated_into: the subscriptions of this database that apply changes to
-- the table or its partitions; their changes are captured only if the row
-- trigger fires in replica sessions (ENABLE ALWAYS TRIGGER audit_ext_row).
CREATE FUNCTION audit.capture_state(tbl regclass,
                                    OUT capturing boolean,
                                    OUT capture_state text,
                                    OUT replicated_into text[])
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gaps   text[] := '{}';
    r      record;
    what   text;
    root_row "char";
BEGIN
    FOR r IN
        SELECT p.relid, p.level,
               (SELECT t.tgenabled FROM pg_trigger t
                 WHERE t.tgrelid = p.relid AND t.tgfoid = 'audit.capture_row()'::regprocedure
                 LIMIT 1) AS row_state,
               (SELECT t.tgenabled FROM pg_trigger t
                 WHERE t.tgrelid = p.relid AND t.tgfoid = 'audit.capture_truncate()'::regprocedure
                 LIMIT 1) AS truncate_state
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT pt.relid, pt.level FROM pg_partition_tree(tbl) pt WHERE pt.relid <> tbl) p
         ORDER BY p.level, p.relid::regclass::text
    LOOP
        what := CASE WHEN r.level = 0 THEN '' ELSE format('partition %s: ', r.relid::regclass) END;
        IF r.level = 0 THEN
            root_row := r.row_state;
        END IF;
        gaps := gaps || CASE coalesce(r.row_state, '-')
                            WHEN '-' THEN what || 'row trigger missing'
                            WHEN 'D' THEN what || 'row trigger disabled'
                            WHEN 'R' THEN what || 'row trigger replica only'
                        END;
        gaps := gaps || CASE coalesce(r.truncate_state, '-')
                            WHEN '-' THEN what || 'truncate trigger missing'
                            WHEN 'D' THEN what || 'truncate trigger disabled'
                            WHEN 'R' THEN what || 'truncate trigger replica only'
                        END;
    END LOOP;
    -- rows of an inheritance child change through the parent (UPDATE, DELETE
    -- without ONLY) and fire the child's triggers, not the parent's
    SELECT gaps || coalesce(array_agg(format('inheritance child %s not captured', i.inhrelid::regclass)
                                      ORDER BY i.inhrelid::regclass::text), '{}')
      INTO gaps
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = tbl AND NOT c.relispartition AND c.relpersistence <> 't'
       AND NOT EXISTS (SELECT 1 FROM pg_trigger t
                        WHERE t.tgrelid = i.inhrelid AND t.tgfoid = 'audit.capture_row()'::regprocedure
                          AND t.tgenabled IN ('O', 'A'));
    capturing := cardinality(array_remove(gaps, NULL)) = 0;

    SELECT array_agg(DISTINCT s.subname::text ORDER BY s.subname::text) INTO replicated_into
      FROM pg_subscription_rel sr
      JOIN pg_subscription s ON s.oid = sr.srsubid
     WHERE sr.srrelid = tbl OR sr.srrelid IN (SELECT p.relid FROM pg_partition_tree(tbl) p);
    -- the apply worker runs as a replica session: O and D do not fire there
    IF replicated_into IS NOT NULL AND coalesce(root_row, 'D') NOT IN ('A', 'R') THEN
        gaps := gaps || format('changes applied by subscription %s not captured',
                               array_to_string(replicated_into, ', '));
    END IF;
    capture_state := coalesce(nullif(array_to_string(gaps, '; '), ''), 'capturing');
END
$$;
COMMENT ON FUNCTION audit.capture_state(regclass) IS
    'What is not captured on an audited table: capturing (every audit trigger of the table and its partitions fires in normal sessions, every permanent inheritance child is audited), capture_state (''capturing'' or the gaps), replicated_into (subscriptions applying changes to it)';

-- The audited tables with their options.  capturing tells the truth: false
-- for a replica-only trigger, a missing or disabled truncate trigger, a
-- partition or inheritance child not captured (audit.capture_state() says
-- which).  Upgrades replace it with CREATE OR REPLACE VIEW, so new columns
-- go at the end.
CREATE VIEW audit.audited_tables AS
SELECT c.oid::regclass                              AS table_oid,
       n.nspname::text                              AS schema_name,
       c.relname::text                              AS table_name,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       (audit.trigger_arguments(t.tgargs))[1]::text[] AS exclude_columns,
       (audit.trigger_arguments(t.tgargs))[2]::text[] AS mask_columns,
       audit.key_columns(c.oid)                     AS key_columns,
       s.capturing                                  AS capturing,
       coalesce('log_reads' = ANY ((audit.trigger_arguments(t.tgargs))[3]::text[]), false) AS log_reads,
       s.capture_state                              AS capture_state,
       s.replicated_into                            AS replicated_into,
       coalesce((audit.trigger_arguments(t.tgargs))[4]::text[], '{}') AS digest_columns,
       (SELECT substr(f, 13) FROM unnest((audit.trigger_arguments(t.tgargs))[3]::text[]) f
         WHERE f LIKE 'sensitivity:%' LIMIT 1)      AS sensitivity,
       CASE WHEN 'wal' = ANY ((audit.trigger_arguments(t.tgargs))[3]::text[])
            THEN 'wal' ELSE 'trigger' END           AS capture
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL audit.capture_state(c.oid) s
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;
COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if any audit trigger of the table or of a partition is missing, disabled or replica only, or an inheritance child is not audited (capture_state says which); log_reads: reads are recorded too; replicated_into: subscriptions applying changes to the table (captured only with ENABLE ALWAYS TRIGGER audit_ext_row); digest_columns: recorded as {"sha256", "bytes"} (1.6); sensitivity: the risk level every data and read event of the table has at least (1.6); capture: trigger (events written with the change) or wal (decoded from the WAL by the capture worker, audit.capture_lag)';

-- Capture switched off without a statement (audit.check_capture()).
-- A superuser can switch an audit trigger off by editing the catalog
-- (UPDATE pg_trigger SET tgenabled = 'D'), which no hook sees, and ALTER
-- EVENT TRIGGER audit_ext_ddl_command_end DISABLE was not flagged.
-- audit.check_capture() compares every audit trigger (audit_ext_row,
-- audit_ext_truncate, on tables and partitions) and the extension's event
-- triggers with what they must be (firing in normal sessions) and with what
-- it saw last time (audit.capture_watch).  A change to off that no statement
-- recorded (no flagged ddl event of the transaction that last wrote the
-- catalog row, pg_trigger.xmin) becomes a critical ddl event CAPTURE OFF
-- ("capture_off": true, "found_by"), once; turned back on the same way,
-- CAPTURE ON.  The maintenance worker runs it every round in every database
-- (src/maintenance.c); audit_admin may run it at any time.

CREATE TABLE audit.capture_watch (
    catalog     text        NOT NULL,   -- pg_trigger or pg_event_trigger
    object_oid  oid         NOT NULL,
    object_name text        NOT NULL,
    state       "char"      NOT NULL,   -- tgenabled / evtenabled as last seen
    state_xmin  text        NOT NULL,   -- xmin of the catalog row as last seen
    seen_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (catalog, object_oid)
);
COMMENT ON TABLE audit.capture_watch IS
    'Internal: the state of each audit trigger and event trigger as audit.check_capture() last saw it (a change is recorded once)';
REVOKE ALL ON audit.capture_watch FROM PUBLIC;
GRANT SELECT ON audit.capture_watch TO audit_admin, audit_reader;

CREATE FUNCTION audit.check_capture()
RETURNS TABLE (object text, kind text, state text, recorded boolean, note text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r        record;
    w        audit.capture_watch;
    seen     boolean;
    off      boolean;
    was_off  boolean;
    by_stmt  boolean;
    word     text;
    root     text;
    det      jsonb;
    finder   text := CASE WHEN audit.in_maintenance_worker() THEN 'maintenance' ELSE 'audit.check_capture()' END;
BEGIN
    PERFORM audit.require_audit_role(true);
    -- one check at a time per database (the worker and a DBA may overlap)
    PERFORM pg_advisory_xact_lock(hashtext('audit_ext check_capture'));
    -- table identities follow renames and restores (a rename is followed at
    -- once by an event trigger; this catches what no event trigger saw)
    PERFORM audit.sync_table_names();
    FOR r IN
        SELECT 'pg_trigger'::text AS catalog, t.oid AS object_oid, t.tgrelid AS relid,
               t.tgname::text AS name, t.tgenabled AS st, t.xmin::text AS row_xmin,
               CASE WHEN t.tgfoid = 'audit.capture_row()'::regprocedure THEN 'row trigger'
                    ELSE 'truncate trigger' END AS what,
               format('%s.%s', t.tgrelid::regclass, quote_ident(t.tgname)) AS label
          FROM pg_catalog.pg_trigger t
         WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['audit.capture_row()'::regprocedure,
                                                         'audit.capture_truncate()'::regprocedure]::oid[])
        UNION ALL
        SELECT 'pg_event_trigger', e.oid, NULL::oid, e.evtname::text, e.evtenabled, e.xmin::text,
               'event trigger', quote_ident(e.evtname)
          FROM pg_catalog.pg_event_trigger e
          JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_event_trigger'::regclass
                                     AND d.objid OPERATOR(pg_catalog.=) e.oid
                                     AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::regclass
                                     AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension x ON x.oid OPERATOR(pg_catalog.=) d.refobjid
                                         AND x.extname OPERATOR(pg_catalog.=) 'audit_ext'
         ORDER BY 1, 8
    LOOP
        SELECT * INTO w FROM audit.capture_watch c
         WHERE c.catalog = r.catalog AND c.object_oid = r.object_oid;
        seen := FOUND;
        -- off: does not fire in normal sessions (disabled, or replica only)
        off := r.st IN ('D', 'R');
        was_off := seen AND w.state IN ('D', 'R');
        word := CASE r.st WHEN 'O' THEN 'enabled' WHEN 'A' THEN 'always' WHEN 'R' THEN 'replica only'
                          WHEN 'D' THEN 'disabled' ELSE 'unknown' END;
        IF seen AND w.state = r.st AND w.state_xmin = r.row_xmin THEN
            IF off THEN
                object := r.label; kind := r.what; state := word; recorded := false;
                note := 'off, already recorded';
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        INSERT INTO audit.capture_watch AS c (catalog, object_oid, object_name, state, state_xmin)
        VALUES (r.catalog, r.object_oid, r.label, r.st, r.row_xmin)
        ON CONFLICT (catalog, object_oid) DO UPDATE
           SET object_name = EXCLUDED.object_name, state = EXCLUDED.state,
               state_xmin = EXCLUDED.state_xmin, seen_at = now();
        -- no change between on and off (first sight of a firing trigger,
        -- ENABLE ALWAYS, the row rewritten): nothing to say
        IF off = was_off OR (NOT seen AND NOT off) THEN
            IF off THEN
                object := r.label; kind := r.what; state := word; recorded := false;
                note := 'off, already recorded';
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        -- Did a statement record this change?  The utility hook flags its
        -- event (audit_trigger_disabled / audit_trigger_enabled) in the
        -- transaction that wrote the catalog row, whose id is the row's xmin.
        by_stmt := EXISTS (
            SELECT 1 FROM audit.event e
             WHERE e.class = 'ddl'
               AND e.txid IS NOT NULL
               AND (e.txid % 4294967296) = r.row_xmin::bigint
               AND e.detail ? CASE WHEN off THEN 'audit_trigger_disabled' ELSE 'audit_trigger_enabled' END);
        object := r.label; kind := r.what; state := word;
        IF by_stmt THEN
            recorded := false;
            note := CASE WHEN off THEN 'off, recorded by its statement' ELSE 'on again, recorded by its statement' END;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF r.relid IS NOT NULL THEN
            -- a partition's trigger: the audited table it belongs to
            SELECT format('%s.%s', n.nspname, c.relname) INTO root
              FROM pg_catalog.pg_partition_ancestors(r.relid) WITH ORDINALITY AS a(relid, ord)
              JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.relid
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE a.relid OPERATOR(pg_catalog.<>) r.relid
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                            WHERE t.tgrelid OPERATOR(pg_catalog.=) a.relid
                              AND t.tgfoid OPERATOR(pg_catalog.=) 'audit.capture_row()'::regprocedure
                              AND t.tgparentid OPERATOR(pg_catalog.=) 0)
             ORDER BY a.ord
             LIMIT 1;
            det := jsonb_build_object('audit_triggers', jsonb_build_object(r.name, word))
                || CASE WHEN root IS NOT NULL THEN jsonb_build_object('audited_table', root) ELSE '{}' END
                || CASE WHEN off THEN jsonb_build_object('audit_trigger_disabled', true)
                        ELSE jsonb_build_object('audit_trigger_enabled', true) END;
        ELSE
            det := jsonb_build_object('event_trigger', r.name, 'state', word)
                || CASE WHEN off THEN jsonb_build_object('audit_protection_off', true)
                        ELSE '{}' END;
        END IF;
        det := det || jsonb_build_object(CASE WHEN off THEN 'capture_off' ELSE 'capture_on' END, true,
                                         'found_by', finder,
                                         'via', 'catalog changed without a recorded statement');
        IF off THEN
            det := det || jsonb_build_object('risk', 'critical');
        END IF;
        PERFORM audit.log_config_event(CASE WHEN off THEN 'CAPTURE OFF' ELSE 'CAPTURE ON' END,
                                       r.relid::regclass, det);
        recorded := true;
        note := CASE WHEN off THEN 'off, recorded now' ELSE 'on again, recorded now' END;
        RETURN NEXT;
    END LOOP;
    -- Audit triggers gone.  audit.disable, DROP TRIGGER, DROP TABLE and
    -- DETACH PARTITION record themselves; a trigger deleted from pg_trigger
    -- by hand, on a table that still exists, with no such event since the
    -- last check, is capture switched off without a statement.
    FOR w IN SELECT * FROM audit.capture_watch c
              WHERE c.catalog = 'pg_trigger'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid)
              ORDER BY c.object_name
    LOOP
        root := regexp_replace(w.object_name, '\.(audit_ext_row|audit_ext_truncate)$', '');
        CONTINUE WHEN root = w.object_name OR pg_catalog.to_regclass(root) IS NULL;
        by_stmt := EXISTS (
            SELECT 1 FROM audit.event e
             WHERE e.class = 'ddl' AND e.event_time >= w.seen_at
               AND (e.action = 'DISABLE AUDIT' OR e.detail ? 'audit_trigger_disabled'
                    OR e.detail ? 'partition_detached' OR e.detail ? 'audited_tables_dropped')
               AND ((e.schema_name, e.table_name) = (SELECT n.nspname::text, c.relname::text
                                                        FROM pg_catalog.pg_class c
                                                        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                                                       WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(root))
                    OR e.detail ->> 'audited_table' = root OR e.detail ->> 'partition' = root));
        object := w.object_name;
        kind := CASE WHEN w.object_name LIKE '%.audit_ext_row' THEN 'row trigger' ELSE 'truncate trigger' END;
        state := 'missing';
        IF by_stmt THEN
            recorded := false;
            note := 'gone, recorded by its statement';
        ELSE
            PERFORM audit.log_config_event('CAPTURE OFF', pg_catalog.to_regclass(root),
                jsonb_build_object('audit_triggers',
                                   jsonb_build_object(substring(w.object_name from '(audit_ext_row|audit_ext_truncate)$'), 'missing'),
                                   'audited_table', root,
                                   'audit_trigger_disabled', true, 'capture_off', true, 'found_by', finder,
                                   'via', 'audit trigger removed from the catalog without a recorded statement',
                                   'risk', 'critical'));
            recorded := true;
            note := 'missing, recorded now';
        END IF;
        RETURN NEXT;
    END LOOP;
    -- and then forgotten
    DELETE FROM audit.capture_watch c
     WHERE (c.catalog = 'pg_trigger'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid))
        OR (c.catalog = 'pg_event_trigger'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid));
END
$$;
COMMENT ON FUNCTION audit.check_capture() IS
    'audit_admin: compare every audit trigger and the extension''s event triggers with what they must be; capture switched off (or back on) without a statement that recorded it becomes a ddl event CAPTURE OFF (critical, "capture_off": true, "found_by") or CAPTURE ON, once per change; returns what is off or changed. Run by the maintenance worker every round';
REVOKE ALL ON FUNCTION audit.check_capture() FROM PUBLIC;
-- open to everyone, checked inside: a non-member is told in words (42501)
GRANT EXECUTE ON FUNCTION audit.check_capture() TO PUBLIC;

-- ---------------------------------------------------------------------------
-- issue 22: capture => 'wal' (src/wal_capture.c)
-- ---------------------------------------------------------------------------
-- Requirements checked (wal_level = logical: 55000; a free replication slot:
-- 53400), this database's slot audit_ext_wal_<oid> created if missing.
CREATE FUNCTION audit.wal_prepare()
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_wal_prepare';
COMMENT ON FUNCTION audit.wal_prepare() IS
    'Internal to audit.enable(capture => ''wal''): check wal_level and shared_preload_libraries, create this database''s capture slot if missing; its name';

-- Put back the replica identity a table had before WAL mode (a flag
-- replica_identity=d|n|f|i:<index>).
CREATE FUNCTION audit.restore_replica_identity(tbl regclass, flag text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ri text := substring(flag from '^replica_identity=(.*)$');
BEGIN
    IF ri IS NULL OR ri = 'f' THEN
        RETURN;
    ELSIF ri = 'n' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY NOTHING', tbl);
    ELSIF ri LIKE 'i:%' AND EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                     WHERE i.indrelid = tbl AND ic.relname = substr(ri, 3)) THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', tbl, substr(ri, 3));
    ELSE
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY DEFAULT', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.restore_replica_identity(regclass, text) IS
    'Internal: give a table leaving WAL mode the replica identity it had before';

CREATE FUNCTION audit.wal_capture_status(OUT slot_name text, OUT worker_pid integer,
                                         OUT confirmed_lsn pg_lsn, OUT done_lsn pg_lsn,
                                         OUT bytes_behind bigint, OUT seconds_behind double precision,
                                         OUT last_batch_at timestamptz, OUT last_batch_events bigint,
                                         OUT events_written bigint, OUT failures integer,
                                         OUT last_error text, OUT last_error_at timestamptz,
                                         OUT unconverted_changes bigint)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_wal_capture_status';
COMMENT ON FUNCTION audit.wal_capture_status() IS
    'Internal: the state of this database''s WAL capture (audit.capture_lag)';

-- The lag of WAL capture in this database: no row when no table was ever
-- audited with capture => 'wal'.  done_lsn: every change committed before
-- it is in the trail; bytes_behind: WAL written since; seconds_behind: time
-- since the worker last reached the end of the WAL (an upper bound of how
-- old the newest missing event can be).  failures: starts of the worker in a
-- row that ended in an error (0 once a batch is written again), last_error
-- and last_error_at the last such error; unconverted_changes: changes the
-- worker recorded without their values because converting them failed
-- (careful mode, src/wal_capture.c), since the server started.
CREATE VIEW audit.capture_lag AS
SELECT s.slot_name, s.worker_pid, s.confirmed_lsn, s.done_lsn, s.bytes_behind,
       CASE WHEN s.bytes_behind = 0 THEN 0 ELSE s.seconds_behind END AS seconds_behind,
       s.last_batch_at, s.last_batch_events, s.events_written,
       s.failures, s.last_error, s.last_error_at, s.unconverted_changes
  FROM audit.wal_capture_status() s
 WHERE s.slot_name IS NOT NULL;
COMMENT ON VIEW audit.capture_lag IS
    'WAL capture (capture => ''wal'') of this database: its slot, worker, the LSN up to which every committed change is in the trail (done_lsn), bytes and seconds behind, last batch; failures in a row, the last error and when, changes recorded without their values (conversion failed)';

-- Wait until every change committed before the call is in the trail (WAL
-- capture: the worker has written the events of all WAL up to the insert
-- position taken at the call); true when it is, false when timeout passed
-- first (the worker stopped, paused or behind).  True at once when the
-- database has no WAL capture (trigger mode: events commit with the
-- change).  For readers that need their own writes (tests, an export right
-- after a batch job): it polls audit.capture_lag every 10 ms.
CREATE FUNCTION audit.wait_for_capture(timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target   pg_lsn := pg_catalog.pg_current_wal_insert_lsn();
    deadline timestamptz;
    done     pg_lsn;
BEGIN
    IF timeout IS NULL OR timeout < interval '0' THEN
        RAISE EXCEPTION 'timeout must be zero or more, not %', coalesce(timeout::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    deadline := pg_catalog.clock_timestamp() + timeout;
    LOOP
        SELECT l.done_lsn INTO done FROM audit.capture_lag l;
        IF NOT FOUND THEN
            RETURN true;
        END IF;
        IF done OPERATOR(pg_catalog.>=) target THEN
            RETURN true;
        END IF;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.01);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.wait_for_capture(interval) IS
    'Wait until every change committed before the call is in the trail (WAL capture worker caught up); false if timeout passed first; true at once without WAL capture';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
-- audit.capture_row() and audit.capture_truncate() keep EXECUTE for PUBLIC:
-- the owner of an audited partitioned table may create and attach
-- partitions, and PostgreSQL clones the row trigger onto them and checks
-- EXECUTE on its function for the current user (a blank name in the error,
-- because the clone has no function name).  Called other than as a trigger,
-- the functions refuse; as a trigger they record the changes of the table
-- they are on, nothing else.
REVOKE ALL ON FUNCTION audit.trigger_arguments(bytea),
                       audit.drop_audit_triggers(regclass),
                       audit.key_columns(regclass),
                       audit.install_triggers(regclass,text[],text[]),
                       audit.sync_column_options(regclass,text,text),
                       audit.log_config_event(text,regclass,jsonb),
                       audit.disable(regclass),
                       audit.on_ddl_command_end(),
                       audit.install_triggers(regclass,text[],text[],text[]),
                       audit.install_triggers(regclass,text[],text[],text[],text[]),
                       audit.table_flags(regclass),
                       audit.enable(regclass,text[],text[],boolean,boolean,text[],text,text),
                       audit.wal_prepare(),
                       audit.restore_replica_identity(regclass,text),
                       audit.wal_capture_status(),
                       audit.capture_state(regclass),
                       audit.record_baseline(regclass),
                       audit.register_table(regclass),
                       audit.sync_table_names(),
                       audit.on_table_names_change(),
                       audit.on_sql_drop(),
                       audit.sync_columns(regclass),
                       audit.ddl_type_using(pg_ddl_command, oid) FROM PUBLIC;
REVOKE ALL ON audit.audited_table_history, audit.audited_column_history FROM PUBLIC;
GRANT SELECT ON audit.audited_table_history, audit.audited_column_history TO audit_admin, audit_reader;
SELECT pg_catalog.pg_extension_config_dump('audit.audited_column_history', '');
SELECT pg_catalog.pg_extension_config_dump('audit.audited_table_history', '');
SELECT pg_catalog.pg_extension_config_dump('audit.table_identity_seq', '');
GRANT EXECUTE ON FUNCTION audit.trigger_arguments(bytea),
                          audit.key_columns(regclass),
                          audit.capture_state(regclass) TO audit_admin, audit_reader;
GRANT EXECUTE ON FUNCTION audit.disable(regclass),
                          audit.enable(regclass,text[],text[],boolean,boolean,text[],text,text) TO audit_admin;
GRANT SELECT ON audit.audited_tables TO audit_admin, audit_reader;
GRANT EXECUTE ON FUNCTION audit.wal_capture_status() TO audit_admin, audit_reader;
GRANT SELECT ON audit.capture_lag TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.wait_for_capture(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.install_wal_partition_triggers(regclass,text[],text[],text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.wait_for_capture(interval) TO audit_admin, audit_reader;
