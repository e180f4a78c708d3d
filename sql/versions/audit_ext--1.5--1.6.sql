-- audit_ext 1.5 -> 1.6: stable table identity, columns over time, history you can trust (issue 19);
-- application context, application events, risk levels (issue 20); reports (issue 21)
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.6'" to load this file. \quit

-- ===========================================================================
-- issue 19: new event columns, stable table identity
-- ===========================================================================
-- Three columns on every event, covered by the hash chain when set
-- ("AUD2", src/chain.c): the audited table's stable identity, the
-- application's context and the event's risk level.
ALTER TABLE audit.event
    ADD COLUMN table_identity bigint,
    ADD COLUMN context jsonb,
    ADD COLUMN risk text COLLATE "C",
    ADD CONSTRAINT event_risk_check CHECK (risk IN ('low', 'medium', 'high', 'critical'));
COMMENT ON COLUMN audit.event.table_identity IS
    'Data and read events: the stable identity of the audited table (audit.audited_table_history), the same across renames, new for a re-created table; NULL for events captured before 1.6';
COMMENT ON COLUMN audit.event.context IS 'The application''s context when the event was captured (NULL: none set)';
COMMENT ON COLUMN audit.event.risk IS 'Risk level of the event: low, medium, high or critical (NULL: not rated)';


-- Events with their statement text joined in.  Its columns are those of
-- audit.event in 1.0: a view's "e.*" is expanded when the view is created, so
-- the columns added later (chain_lane, chain_seq, hash, source) are not in
-- the view of an installation upgraded from 1.0, nor, to be the same, here.
-- Those of 1.6 (table_identity, context, risk) come after statement_text.
CREATE OR REPLACE VIEW audit.event_with_statement AS
SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
       e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
       e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
       s.statement_text, e.table_identity, e.context, e.risk
  FROM audit.event e
  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id;

COMMENT ON VIEW audit.event_with_statement IS 'audit.event with the SQL text of each event''s statement';

-- audit.restored_event has the columns of audit.event and then archive_file:
-- rebuilt with the new columns in their place (the rows it holds are kept).
ALTER TABLE audit.restored_event RENAME TO restored_event_1_5;
CREATE TABLE audit.restored_event (LIKE audit.event, archive_file text NOT NULL);
INSERT INTO audit.restored_event
SELECT (jsonb_populate_record(NULL::audit.restored_event, to_jsonb(o))).* FROM audit.restored_event_1_5 o;
DROP TABLE audit.restored_event_1_5;
CREATE INDEX restored_event_file_idx ON audit.restored_event (archive_file, id);
COMMENT ON TABLE audit.restored_event IS
    'Events loaded back from archive files by audit.restore_archive(), with the file they came from; outside the live trail';
GRANT DELETE, SELECT, TRUNCATE ON audit.restored_event TO audit_admin;
GRANT SELECT ON audit.restored_event TO audit_reader;

-- Stable identity of audited tables
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
    now_  timestamptz := statement_timestamp();
BEGIN
    SELECT h.table_identity INTO ident FROM audit.audited_table_history h
     WHERE h.table_oid = tbl AND h.valid_until IS NULL;
    IF ident IS NULL THEN
        RETURN;
    END IF;
    first := NOT EXISTS (SELECT 1 FROM audit.audited_column_history c WHERE c.table_identity = ident);
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
                         CASE WHEN current_query() ~* '\musing\M' THEN 'using' ELSE 'cast' END END);
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

-- (Re)create the audit triggers with options and flags.
CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    PERFORM audit.register_table(tbl);
    PERFORM audit.drop_audit_triggers(tbl);
    EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                   tbl, exclude_columns::text, mask_columns::text, coalesce(flags, '{}')::text);
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
COMMENT ON FUNCTION audit.install_triggers(regclass, text[], text[], text[]) IS
    'Internal: (re)create the audit triggers of a table with its options and flags (log_reads)';

CREATE OR REPLACE FUNCTION audit.check_capture()
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

REVOKE ALL ON FUNCTION audit.register_table(regclass),
                       audit.sync_table_names(),
                       audit.on_table_names_change(),
                       audit.on_sql_drop(),
                       audit.sync_columns(regclass) FROM PUBLIC;
REVOKE ALL ON audit.audited_table_history, audit.audited_column_history FROM PUBLIC;
GRANT SELECT ON audit.audited_table_history, audit.audited_column_history TO audit_admin, audit_reader;
SELECT pg_catalog.pg_extension_config_dump('audit.audited_column_history', '');
SELECT pg_catalog.pg_extension_config_dump('audit.audited_table_history', '');
SELECT pg_catalog.pg_extension_config_dump('audit.table_identity_seq', '');

-- Every table audited now gets an identity.  Its events so far carry none:
-- they belong to it by name, after the last recorded drop of a table of
-- that name (legacy_from_id).  Its earlier names are not known.
INSERT INTO audit.audited_table_history (table_identity, table_oid, schema_name, table_name, valid_from, legacy_from_id)
SELECT nextval('audit.table_identity_seq'), c.oid, n.nspname, c.relname, '-infinity',
       coalesce((SELECT max(e.id) FROM audit.event e
                  WHERE e.class = 'ddl' AND e.status = 'success'
                    AND e.detail -> 'audited_tables_dropped' ? (n.nspname || '.' || c.relname)), 0)
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = 'audit_ext_row' AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure
 ORDER BY c.oid;
-- and its columns as they are now (their earlier names and types are not known)
SELECT audit.sync_columns(h.table_oid::regclass) FROM audit.audited_table_history h ORDER BY h.table_identity;
UPDATE audit.audited_column_history SET valid_from = '-infinity';

-- Reading by identity
DROP FUNCTION audit.record_events(text, text, jsonb, regclass, timestamptz);
DROP FUNCTION audit.record_incarnation(text, text, jsonb, bigint);
-- The identity of the table an event belongs to: the one it carries, or for
-- an event captured before 1.6, the table that had its name then (the row
-- the upgrade wrote for it).  NULL: none known.
CREATE FUNCTION audit.event_identity(ev audit.event)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(ev.table_identity,
                    (SELECT h.table_identity FROM audit.audited_table_history h
                      WHERE ev.class = 'data' AND h.legacy_from_id IS NOT NULL
                        AND h.schema_name = ev.schema_name AND h.table_name = ev.table_name
                        AND ev.id > h.legacy_from_id
                      ORDER BY h.legacy_from_id DESC LIMIT 1))
$$;
COMMENT ON FUNCTION audit.event_identity(audit.event) IS
    'Internal: the identity of the table an event belongs to (also for events captured before 1.6)';

CREATE TYPE audit.table_scope AS (
    table_identity bigint,
    schema_name    text,
    table_name     text,
    legacy_from_id bigint
);
COMMENT ON TYPE audit.table_scope IS
    'Internal: the events of one table: its identity, and the name and first event id of its events from before 1.6';

CREATE FUNCTION audit.identity_scope(ident bigint)
RETURNS audit.table_scope
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(ident, h.schema_name, h.table_name, h.legacy_from_id)::audit.table_scope
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (SELECT x.schema_name, x.table_name, x.legacy_from_id
                           FROM audit.audited_table_history x
                          WHERE x.table_identity = ident AND x.legacy_from_id IS NOT NULL
                          ORDER BY x.valid_from LIMIT 1) h ON true
$$;
COMMENT ON FUNCTION audit.identity_scope(bigint) IS
    'Internal: the events of the table with this identity';

-- The identity of the table that had a name: at a moment, or (at NULL) the
-- table that has it now, else the last one that had it.
CREATE FUNCTION audit.identity_by_name(p_schema text, p_table text, p_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.table_identity FROM audit.audited_table_history h
     WHERE h.schema_name = p_schema AND h.table_name = p_table
       AND (p_at IS NULL OR (h.valid_from <= p_at AND (h.valid_until IS NULL OR h.valid_until > p_at)))
     ORDER BY h.valid_until IS NULL DESC, h.valid_until DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION audit.identity_by_name(text, text, timestamptz) IS
    'Internal: the identity of the table that had this name at a moment (NULL: has it now, else had it last)';

CREATE FUNCTION audit.name_scope(p_schema text, p_table text, p_at timestamptz DEFAULT NULL)
RETURNS audit.table_scope
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ident bigint := audit.identity_by_name(p_schema, p_table, p_at);
BEGIN
    IF ident IS NOT NULL THEN
        RETURN audit.identity_scope(ident);
    END IF;
    RETURN ROW(NULL, p_schema, p_table,
               CASE WHEN EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = p_schema AND c.relname = p_table)
                    THEN coalesce(audit.table_dropped_at(p_schema, p_table), 0) ELSE 0 END)::audit.table_scope;
END
$$;
COMMENT ON FUNCTION audit.name_scope(text, text, timestamptz) IS
    'Internal: the events of the table that had this name (at a moment, or now, or last)';

-- The events of a live table (its audited root for a partition).
CREATE FUNCTION audit.live_scope(live regclass)
RETURNS audit.table_scope
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ident bigint;
    nsp   text;
    rel   text;
BEGIN
    SELECT h.table_identity INTO ident FROM audit.audited_table_history h
     WHERE h.table_oid = live AND h.valid_until IS NULL;
    IF ident IS NOT NULL THEN
        RETURN audit.identity_scope(ident);
    END IF;
    SELECT n.nspname, c.relname INTO nsp, rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = live;
    RETURN ROW(NULL, nsp, rel, coalesce(audit.table_dropped_at(nsp, rel), 0))::audit.table_scope;
END
$$;
COMMENT ON FUNCTION audit.live_scope(regclass) IS
    'Internal: the events of a live table';

-- The names a table's events carry (the TRUNCATEs of the table itself).
CREATE FUNCTION audit.scope_names(sc audit.table_scope, OUT s text, OUT t text)
RETURNS SETOF record
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT x.s, x.t FROM (
        SELECT h.schema_name::text, h.table_name::text FROM audit.audited_table_history h
         WHERE h.table_identity = sc.table_identity
        UNION ALL
        SELECT sc.schema_name, sc.table_name WHERE sc.schema_name IS NOT NULL) x(s, t)
$$;
COMMENT ON FUNCTION audit.scope_names(audit.table_scope) IS
    'Internal: every schema and table name the events of a table carry';

-- The identity of a table (audit.event.table_identity): of a table that
-- exists, or of the table that had a name at a moment (or has it now, or had
-- it last).  For the reading functions that take a table_identity.
CREATE FUNCTION audit.table_identity(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN (SELECT h.table_identity FROM audit.audited_table_history h
             WHERE h.table_oid = tbl AND h.valid_until IS NULL);
END
$$;
COMMENT ON FUNCTION audit.table_identity(regclass) IS
    'The stable identity of an audited table (NULL: it has none, never audited since 1.6)';

CREATE FUNCTION audit.table_identity(schema_name text, table_name text, at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN audit.identity_by_name(table_identity.schema_name, table_identity.table_name, table_identity.at);
END
$$;
COMMENT ON FUNCTION audit.table_identity(text, text, timestamptz) IS
    'The identity of the table that had this name at a moment (at NULL: the table that has it now, else the last one that had it)';

-- One incarnation of a key: the events of the last record that had the key
-- (up to event upto_id when given), from the event where it got the key (an
-- INSERT, the first event after the previous holder's DELETE or move to
-- another key, or the start of the trail) to the last event under the key.
CREATE FUNCTION audit.record_incarnation(sc audit.table_scope, p_key jsonb, upto_id bigint,
                                         OUT e audit.event, OUT k jsonb)
RETURNS SETOF record
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    evk audit.event[];
    s   integer := 1;
    m   integer;
    ev  audit.event;
BEGIN
    evk := ARRAY(SELECT x FROM audit.event x
                  WHERE x.class = 'data' AND (x.table_identity = sc.table_identity OR (x.table_identity IS NULL AND x.schema_name = sc.schema_name AND x.table_name = sc.table_name AND x.id > sc.legacy_from_id))
                    AND x.record_id @> p_key AND x.record_id = p_key
                    AND (upto_id IS NULL OR x.id <= upto_id)
                  ORDER BY x.id);
    m := coalesce(array_length(evk, 1), 0);
    FOR i IN 1 .. m LOOP
        ev := evk[i];
        CONTINUE WHEN ev.status <> 'success';
        IF ev.action = 'INSERT' THEN
            s := i;
        ELSIF i < m AND (ev.action = 'DELETE' OR
                         (ev.action = 'UPDATE' AND audit.next_record_id(p_key, ev.new_data) IS DISTINCT FROM p_key)) THEN
            s := i + 1;
        END IF;
    END LOOP;
    FOR i IN s .. m LOOP
        e := evk[i];
        k := p_key;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_incarnation(audit.table_scope, jsonb, bigint) IS
    'Internal: the events of the last record that had a key (up to an event), from where it got the key';

-- A table without a key identifies a record by its whole recorded row, so a
-- change of its exclude or mask columns changes the record_id its events
-- carry.  The record's id on the other side of such a change (an ENABLE
-- AUDIT event): forward, the record_id of the first event after the change
-- (and before the next one) that holds every value of k still recorded;
-- back, that of the last event before it whose recorded values include
-- those of k.  NULL when there is none.  Rows identical in every recorded
-- value cannot be told apart: the first one found is taken.
CREATE FUNCTION audit.keyless_link(sc audit.table_scope, k jsonb, from_id bigint, forward boolean,
                                   OUT link_id bigint, OUT key jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg    record;
    nxt    bigint;
    hidden text[];
    base   jsonb;
BEGIN
    FOR cfg IN
        SELECT c.id, c.detail FROM audit.event c
         WHERE c.class = 'ddl' AND c.action = 'ENABLE AUDIT' AND c.status = 'success'
           AND (c.schema_name, c.table_name) IN (SELECT n.s, n.t FROM audit.scope_names(sc) n)
           AND CASE WHEN forward THEN c.id > from_id ELSE c.id < from_id END
         ORDER BY CASE WHEN forward THEN c.id ELSE -c.id END
    LOOP
        -- the next change the other way bounds the search
        SELECT CASE WHEN forward THEN min(c.id) ELSE max(c.id) END INTO nxt FROM audit.event c
         WHERE c.class = 'ddl' AND c.action = 'ENABLE AUDIT' AND c.status = 'success'
           AND (c.schema_name, c.table_name) IN (SELECT n.s, n.t FROM audit.scope_names(sc) n)
           AND CASE WHEN forward THEN c.id > cfg.id ELSE c.id < cfg.id END;
        hidden := CASE WHEN forward
                       THEN ARRAY(SELECT jsonb_array_elements_text(coalesce(cfg.detail -> 'exclude_columns', '[]')))
                            || ARRAY(SELECT jsonb_array_elements_text(coalesce(cfg.detail -> 'mask_columns', '[]')))
                       ELSE '{}'::text[] END;
        SELECT jsonb_object_agg(f.key, f.value) INTO base FROM jsonb_each(k) f
         WHERE f.key <> ALL (hidden) AND f.value <> '"[masked]"';
        CONTINUE WHEN base IS NULL;
        IF forward THEN
            -- the record's first event after the change
            SELECT e.record_id INTO key FROM audit.event e
             WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
               AND e.record_id @> base AND e.id > cfg.id AND e.id < coalesce(nxt, 9223372036854775807)
             ORDER BY e.id LIMIT 1;
            link_id := cfg.id;
        ELSE
            -- its last event before the change: the row that event left
            -- (no index leads there: the events since the change before)
            SELECT e.record_id, e.id INTO key, link_id FROM audit.event e
             WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
               AND e.id < cfg.id AND e.id > coalesce(nxt, 0) AND e.status = 'success'
               AND e.action IN ('INSERT', 'BASELINE', 'UPDATE')
               AND audit.next_record_id(e.record_id, CASE WHEN e.action = 'UPDATE' THEN e.new_data END) @> base
             ORDER BY e.id DESC LIMIT 1;
        END IF;
        IF key IS NOT NULL AND key IS DISTINCT FROM k THEN
            RETURN;
        END IF;
        key := NULL;
        link_id := NULL;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.keyless_link(audit.table_scope, jsonb, bigint, boolean) IS
    'Internal: a keyless record''s id across a change of its table''s exclude or mask columns';

-- The events of one record, oldest first.  Follows the record across key
-- changes (an UPDATE that changes key columns is the last event under the old
-- record_id; the history continues under the new one), and adds the TRUNCATE
-- that removed the record where the record's own events show it vanished: an
-- INSERT while it existed, or it existing at the end of its events while it
-- is not in the table now.  The search for that TRUNCATE reads the data
-- events between (no index leads to TRUNCATEs), so it is only done in those
-- two cases.
CREATE FUNCTION audit.record_events(sc audit.table_scope, p_record jsonb, p_live regclass,
                                    p_at timestamptz DEFAULT NULL)
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
    t_schemas  text[];
    t_tables   text[];
    t_rels     regclass[];
    keyless    boolean := p_live IS NOT NULL AND audit.key_columns(p_live) IS NULL;
    once       integer;
    lnk        record;
    keys       text[];
    in_table   boolean;
    present    boolean;
    n          integer;
    gap_from   bigint;
    gap_to     bigint;
    gap_ident  jsonb;
    before_id  bigint;
    upto       bigint;
    first_id   bigint;
    bound      bigint;
BEGIN
    -- The record's own events.  A key names the record that has it now or
    -- had it last: its events under the key since it got the key (an
    -- INSERT, or an UPDATE that moved it there from another key, or the
    -- start of the trail), back through each key it had before and forward
    -- through each key it took after.  A DELETE ends a record, and a later
    -- record that takes the same key has a history of its own.
    -- With p_at: the record that had the key at that moment (the last one
    -- that had it by then, else the first one to have it after).
    IF p_at IS NOT NULL THEN
        SELECT max(e.id) INTO upto FROM audit.event e WHERE e.class = 'data' AND e.event_time <= p_at;
        upto := coalesce(upto, 0);
    END IF;
    SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
      INTO evs, idents
      FROM audit.record_incarnation(sc, k, upto) x;
    IF cardinality(evs) = 0 AND upto IS NOT NULL THEN
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> k AND e.id <= upto
           AND e.record_id IS DISTINCT FROM k AND audit.next_record_id(e.record_id, e.new_data) = k
         ORDER BY e.id DESC LIMIT 1;
        IF FOUND THEN
            SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
              INTO evs, idents
              FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
        ELSE
            -- nothing had the key by then: the first record to have it after
            SELECT min(e.id) INTO first_id FROM audit.event e
             WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
               AND e.record_id @> k AND e.record_id = k AND e.id > upto;
            IF first_id IS NOT NULL THEN
                -- up to its DELETE or move to another key, or just before the next INSERT
                SELECT CASE WHEN e.action = 'INSERT' THEN e.id - 1 ELSE e.id END INTO bound
                  FROM audit.event e
                 WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
                   AND e.record_id @> k AND e.record_id = k AND e.id >= first_id AND e.status = 'success'
                   AND (e.action = 'DELETE' OR (e.action = 'INSERT' AND e.id > first_id) OR
                        (e.action = 'UPDATE' AND audit.next_record_id(k, e.new_data) IS DISTINCT FROM k))
                 ORDER BY e.id LIMIT 1;
                SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
                  INTO evs, idents
                  FROM audit.record_incarnation(sc, k, bound) x;
            END IF;
        END IF;
    ELSIF cardinality(evs) = 0 THEN
        -- the record may have got the key by an UPDATE and have no event under it yet
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> k
           AND e.record_id IS DISTINCT FROM k AND audit.next_record_id(e.record_id, e.new_data) = k
         ORDER BY e.id DESC LIMIT 1;
        IF FOUND THEN
            SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
              INTO evs, idents
              FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
        END IF;
    END IF;
    -- with p_at the incarnation was cut at that moment: its later events
    -- under the same key belong to it too
    n := cardinality(evs);
    IF upto IS NOT NULL AND n > 0 AND NOT (evs[n].status = 'success' AND
           (evs[n].action = 'DELETE' OR
            (evs[n].action = 'UPDATE' AND audit.next_record_id(idents[n], evs[n].new_data) IS DISTINCT FROM idents[n]))) THEN
        k := idents[n];
        FOR ev IN SELECT * FROM audit.event e
                   WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
                     AND e.record_id @> k AND e.record_id = k AND e.id > evs[n].id
                   ORDER BY e.id
        LOOP
            EXIT WHEN ev.action IN ('INSERT', 'BASELINE') AND ev.status = 'success';
            evs := evs || ev;
            idents := idents || k;
            EXIT WHEN ev.status = 'success' AND (ev.action = 'DELETE' OR
                      (ev.action = 'UPDATE' AND audit.next_record_id(k, ev.new_data) IS DISTINCT FROM k));
        END LOOP;
    END IF;
    -- back: the UPDATE that moved the record to the key of its first event
    WHILE cardinality(evs) > 0 AND evs[1].action NOT IN ('INSERT', 'BASELINE') LOOP
        -- after the previous holder of that key, if any
        SELECT max(e.id) INTO before_id FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.record_id @> idents[1] AND e.record_id = idents[1] AND e.id < evs[1].id;
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> idents[1]
           AND e.id < evs[1].id AND e.id > coalesce(before_id, 0)
           AND e.record_id IS DISTINCT FROM idents[1] AND audit.next_record_id(e.record_id, e.new_data) = idents[1]
         ORDER BY e.id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}') || evs, coalesce(array_agg(x.k ORDER BY (x.e).id), '{}') || idents
          INTO evs, idents
          FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
    END LOOP;
    -- back, without a key: across changes of the exclude or mask columns
    WHILE keyless AND cardinality(evs) > 0 AND evs[1].action NOT IN ('INSERT', 'BASELINE') LOOP
        SELECT * INTO lnk FROM audit.keyless_link(sc, idents[1], evs[1].id, false);
        EXIT WHEN lnk.key IS NULL;
        n := cardinality(evs);
        SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}') || evs, coalesce(array_agg(x.k ORDER BY (x.e).id), '{}') || idents
          INTO evs, idents
          FROM audit.record_incarnation(sc, lnk.key, lnk.link_id) x;
        EXIT WHEN cardinality(evs) = n;
    END LOOP;
    -- forward: each key change out of the last key, until a DELETE
    n := cardinality(evs);
    LOOP
        WHILE n > 0 AND evs[n].action = 'UPDATE' AND evs[n].status = 'success' LOOP
            k := audit.next_record_id(idents[n], evs[n].new_data);
            EXIT WHEN k IS NOT DISTINCT FROM idents[n];
            after_id := evs[n].id;
            FOR ev IN SELECT * FROM audit.event e
                       WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
                         AND e.record_id @> k AND e.record_id = k AND e.id > after_id
                       ORDER BY e.id
            LOOP
                -- an INSERT under the new key is another record (ours was removed)
                EXIT WHEN ev.action IN ('INSERT', 'BASELINE') AND ev.status = 'success';
                evs := evs || ev;
                idents := idents || k;
                EXIT WHEN ev.status = 'success' AND (ev.action = 'DELETE' OR
                          (ev.action = 'UPDATE' AND audit.next_record_id(k, ev.new_data) IS DISTINCT FROM k));
            END LOOP;
            EXIT WHEN cardinality(evs) = n;
            n := cardinality(evs);
        END LOOP;
        -- forward, without a key: across changes of the exclude or mask columns
        EXIT WHEN NOT keyless OR n = 0 OR (evs[n].status = 'success' AND evs[n].action IN ('DELETE', 'TRUNCATE'));
        -- (one link, then key changes again)
        FOR once IN 1 .. 1 LOOP
            k := CASE WHEN evs[n].action = 'UPDATE' AND evs[n].status = 'success'
                      THEN audit.next_record_id(idents[n], evs[n].new_data) ELSE idents[n] END;
            SELECT * INTO lnk FROM audit.keyless_link(sc, k, evs[n].id, true);
            EXIT WHEN lnk.key IS NULL;
            k := lnk.key;
            FOR ev IN SELECT * FROM audit.event e
                       WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
                         AND e.record_id @> k AND e.record_id = k AND e.id > lnk.link_id
                       ORDER BY e.id
            LOOP
                EXIT WHEN ev.action IN ('INSERT', 'BASELINE') AND ev.status = 'success';
                evs := evs || ev;
                idents := idents || k;
                EXIT WHEN ev.status = 'success' AND (ev.action = 'DELETE' OR
                          (ev.action = 'UPDATE' AND audit.next_record_id(k, ev.new_data) IS DISTINCT FROM k));
            END LOOP;
        END LOOP;
        EXIT WHEN cardinality(evs) = n;
        n := cardinality(evs);

    END LOOP;

    -- TRUNCATE events name the truncated table: the table under each name
    -- it had and, for a partitioned table, each of its partitions.
    SELECT array_agg(n.s), array_agg(n.t), array_agg(NULL::regclass)
      INTO t_schemas, t_tables, t_rels
      FROM audit.scope_names(sc) n;
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
                    -- as the table's owner: its types, domains and operators are its code
                    in_table := audit.eval_as_table_owner(p_live,
                        format('SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) r WHERE %s))',
                               p_live, p_live,
                               (SELECT string_agg(format('t.%I = r.%I', kc, kc), ' AND ') FROM unnest(keys) kc)),
                        k)::text::boolean;
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
                IF EXISTS (SELECT 1 FROM unnest(t_schemas, t_tables, t_rels) u(s, t, r)
                            WHERE u.s = tr.schema_name AND u.t = tr.table_name AND u.r IS NULL)
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
                present := ev.action IN ('INSERT', 'UPDATE', 'BASELINE');
            END IF;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_events(audit.table_scope, jsonb, regclass, timestamptz) IS
    'Internal: the events of one record oldest first, following key changes, with the TRUNCATE that removed it';

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
CREATE OR REPLACE FUNCTION audit.search_filter(
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
    name_cond text;
    idents  bigint[];
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
            name_cond := 'e.table_name = $7';
        ELSIF array_length(parts, 1) = 2 THEN
            schema_part := parts[1];
            table_part := parts[2];
            name_cond := 'e.schema_name = $6 AND e.table_name = $7';
        ELSE
            RAISE EXCEPTION 'invalid table_name "%": too many dotted names', table_name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Write table or schema.table.';
        END IF;
        -- the events recorded under that name, and (since 1.6) those of the
        -- table that has the name now under the names it had before
        SELECT array_agg(DISTINCT h.table_identity ORDER BY h.table_identity) INTO idents
          FROM audit.audited_table_history h
         WHERE h.valid_until IS NULL AND h.table_name = table_part
           AND (schema_part IS NULL OR h.schema_name = schema_part);
        IF idents IS NOT NULL THEN
            name_cond := format('(%s OR e.table_identity = ANY (%L::bigint[]))', name_cond, idents);
        END IF;
        conds := conds || name_cond;
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

CREATE OR REPLACE FUNCTION audit.search(
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
        '       s.statement_text, e.table_identity, e.context, e.risk'
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

CREATE OR REPLACE FUNCTION audit.record_history(tbl regclass, record_id jsonb)
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
               s.statement_text, e.table_identity, e.context, e.risk
          FROM audit.record_events(audit.live_scope(r.live), r.record, r.live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION audit.record_history(regclass, jsonb) IS
    'The events of one record of a table, oldest first, following key changes and including the TRUNCATE that removed it';

CREATE OR REPLACE FUNCTION audit.record_history(schema_name text, table_name text, record_id jsonb)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live regclass;
    rec  jsonb := record_history.record_id;
    sc   audit.table_scope;
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
    -- The table that has this name now, else the last that had it (since
    -- 1.6 followed across renames: its events under every name; a table of
    -- the name dropped before this one was created is another table).
    sc := audit.name_scope(record_history.schema_name, record_history.table_name);
    IF sc.table_identity IS NOT NULL THEN
        SELECT h.table_oid::regclass INTO live FROM audit.audited_table_history h
          JOIN pg_class c ON c.oid = h.table_oid
         WHERE h.table_identity = sc.table_identity AND h.valid_until IS NULL;
    ELSE
        SELECT c.oid INTO live
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = record_history.schema_name AND c.relname = record_history.table_name
           AND c.relkind IN ('r', 'p');
    END IF;
    -- normalise the record id like the regclass form does (if it fits),
    -- and let TRUNCATEs of its partitions count
    IF live IS NOT NULL THEN
        BEGIN
            SELECT r.record INTO rec FROM audit.resolve_record(live, rec) r;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;   -- e.g. the key changed since: match the record id as given
        END;
    ELSIF sc.table_identity IS NOT NULL THEN
        rec := audit.key_by_history(sc.table_identity, rec);
    END IF;
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text, e.table_identity, e.context, e.risk
          FROM audit.record_events(sc, rec, live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION audit.record_history(text, text, jsonb) IS
    'The events of one record of a table given by its names as recorded (also for a dropped table), oldest first';

-- A key given for a dropped table, converted to the form capture wrote
-- through the column types the table had (audit.audited_column_history):
-- {"id": "42"} finds {"id": 42}.  Only PostgreSQL's own types are converted
-- (a type of the table's owner is its code, and the table is gone); other
-- values are taken as given.
CREATE FUNCTION audit.key_by_history(ident bigint, key jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f      record;
    typ    regtype;
    v      jsonb;
    result jsonb := '{}';
BEGIN
    FOR f IN SELECT k.key, k.value FROM jsonb_each(key) k LOOP
        v := f.value;
        SELECT to_regtype(h.data_type) INTO typ FROM audit.audited_column_history h
         WHERE h.table_identity = ident AND h.column_name = f.key
         ORDER BY h.valid_until IS NULL DESC, h.valid_until DESC LIMIT 1;
        IF typ IS NOT NULL AND jsonb_typeof(v) NOT IN ('object', 'array', 'null')
           AND (SELECT t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b'
                  FROM pg_type t WHERE t.oid = typ) THEN
            BEGIN
                EXECUTE format('SELECT audit.canonical_jsonb(s.*) -> ''v'' FROM (SELECT ($1 ->> 0)::%s AS v) s', typ)
                   INTO v USING jsonb_build_array(f.value #>> '{}');
            EXCEPTION WHEN OTHERS THEN
                v := f.value;
            END;
        END IF;
        result := result || jsonb_build_object(f.key, v);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION audit.key_by_history(bigint, jsonb) IS
    'Internal: a key given for a dropped table, converted through the column types it had';

-- By identity (audit.table_identity(), audit.event.table_identity): the
-- history of a record of that table whatever names it had, dropped or not.
CREATE FUNCTION audit.record_history_by_identity(table_identity bigint, record_id jsonb)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live regclass;
    rec  jsonb := record_history_by_identity.record_id;
BEGIN
    PERFORM audit.require_audit_role();
    IF record_history_by_identity.table_identity IS NULL
       OR NOT EXISTS (SELECT 1 FROM audit.audited_table_history h
                       WHERE h.table_identity = record_history_by_identity.table_identity) THEN
        RAISE EXCEPTION 'invalid table_identity %: no audited table has it', coalesce(record_history_by_identity.table_identity::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'audit.table_identity(schema_name, table_name, at) gives the identity of a table by name; audit.audited_table_history lists them.';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    SELECT h.table_oid::regclass INTO live FROM audit.audited_table_history h
      JOIN pg_class c ON c.oid = h.table_oid
     WHERE h.table_identity = record_history_by_identity.table_identity AND h.valid_until IS NULL;
    IF live IS NOT NULL THEN
        BEGIN
            SELECT r.record INTO rec FROM audit.resolve_record(live, rec) r;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;
        END;
    ELSE
        rec := audit.key_by_history(record_history_by_identity.table_identity, rec);
    END IF;
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text, e.table_identity, e.context, e.risk
          FROM audit.record_events(audit.identity_scope(record_history_by_identity.table_identity), rec, live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION audit.record_history_by_identity(bigint, jsonb) IS
    'The events of one record of the table with this identity (across its renames, also once dropped), oldest first';

-- A jsonb object of column values keyed by column names as they were at a
-- moment, re-keyed by column number (names change, numbers do not).  A name
-- the table never had at that moment is matched to the nearest version of
-- that name; one it never had at all keeps its name, prefixed with "?".
CREATE FUNCTION audit.by_attnum(ident bigint, t timestamptz, j jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(coalesce(m.attnum::text, '?' || k.key), k.value), '{}')
      FROM jsonb_each(j) k
      LEFT JOIN LATERAL (SELECT h.attnum FROM audit.audited_column_history h
                          WHERE h.table_identity = ident AND h.column_name = k.key
                          ORDER BY (h.valid_from <= t AND (h.valid_until IS NULL OR h.valid_until > t)) DESC,
                                   h.valid_until IS NULL DESC, h.valid_until DESC
                          LIMIT 1) m ON true
$$;
COMMENT ON FUNCTION audit.by_attnum(bigint, timestamptz, jsonb) IS
    'Internal: column values keyed by names at a moment, re-keyed by column number';

-- Column values keyed by the names they had at a moment, re-keyed by the
-- names the columns have now (audit.undo() after RENAME COLUMN).  A column
-- dropped since keeps its old name.
CREATE FUNCTION audit.names_now(ident bigint, t timestamptz, j jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(coalesce(h.column_name, k.key), k.value), j)
      FROM jsonb_each(j) k
      LEFT JOIN LATERAL (SELECT x.attnum FROM audit.audited_column_history x
                          WHERE x.table_identity = ident AND x.column_name = k.key
                          ORDER BY (x.valid_from <= t AND (x.valid_until IS NULL OR x.valid_until > t)) DESC,
                                   x.valid_until IS NULL DESC, x.valid_until DESC
                          LIMIT 1) m ON true
      LEFT JOIN audit.audited_column_history h
             ON h.table_identity = ident AND h.attnum = m.attnum AND h.valid_until IS NULL
$$;
COMMENT ON FUNCTION audit.names_now(bigint, timestamptz, jsonb) IS
    'Internal: column values keyed by names at a moment, re-keyed by the columns'' current names';

CREATE FUNCTION audit.attnums_of(ident bigint, t timestamptz, names text[])
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(
        audit.by_attnum(ident, t, (SELECT jsonb_object_agg(n, true) FROM unnest(names) n))) k
$$;
COMMENT ON FUNCTION audit.attnums_of(bigint, timestamptz, text[]) IS
    'Internal: column names at a moment as column numbers';

-- When a record's change counts as made, for audit.row_as_of(): at its
-- transaction's commit when track_commit_timestamp knows it, else at the
-- start of the last statement of its transaction that changed the record (a
-- transaction's changes to a record count together: never a state between
-- two of its statements).  The caller's own transaction sees its changes
-- statement by statement, as it sees its rows.
CREATE FUNCTION audit.change_time(ev audit.event, evs audit.event[])
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t timestamptz;
BEGIN
    -- our own transaction sees its changes statement by statement
    IF ev.txid IS NULL OR ev.txid = txid_current_if_assigned() THEN
        RETURN ev.event_time;
    END IF;
    IF current_setting('track_commit_timestamp') = 'on' THEN
        BEGIN
            t := pg_xact_commit_timestamp((ev.txid % 4294967296)::text::xid);
        EXCEPTION WHEN OTHERS THEN
            t := NULL;
        END;
        IF t IS NOT NULL AND t >= ev.event_time THEN
            RETURN t;
        END IF;
    END IF;
    SELECT max(x.event_time) INTO t FROM unnest(evs) x WHERE x.txid = ev.txid;
    RETURN coalesce(t, ev.event_time);
END
$$;
COMMENT ON FUNCTION audit.change_time(audit.event, audit.event[]) IS
    'Internal: when a change counts as made for audit.row_as_of() (commit time if known, else its transaction''s last statement on the record)';

-- A record as it was at a moment.  With the columns of the table over time
-- known (audit.audited_column_history, since 1.6): the columns the table had
-- then, under their names then, values converted through the type changes
-- since they were recorded; "[unknown]" where the trail cannot know a value
-- (a column added with a volatile default while the row existed, a type
-- changed with USING, a column the trail never saw a value of because the
-- row existed before auditing began).  Excluded columns are absent, masked
-- ones "[masked]".
CREATE OR REPLACE FUNCTION audit.row_as_of(tbl regclass, record_id jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    sc       audit.table_scope;
    evs      audit.event[];
    ev       audit.event;
    n        integer;
    p        integer := 0;
    present  boolean := NULL;   -- NULL: before the record's first event
    complete boolean := false;  -- state holds every recorded column
    state    jsonb := '{}';
    touched  text[] := '{}';
    fill     jsonb;
    ident    bigint;
    setat    jsonb := '{}';     -- column number -> when its value was recorded
    result   jsonb;
    c        record;
    fv       audit.audited_column_history;
    v        jsonb;
    vt       timestamptz;
    excluded text[];
    key_now  jsonb;
BEGIN
    PERFORM audit.require_audit_role();
    IF row_as_of.at IS NULL THEN
        RAISE EXCEPTION 'invalid at: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO r FROM audit.resolve_record(tbl, record_id);
    sc := audit.live_scope(r.live);
    -- the record that had this key at that moment
    evs := ARRAY(SELECT e FROM audit.record_events(sc, r.record, r.live, row_as_of.at) e ORDER BY e.id);
    n := coalesce(array_length(evs, 1), 0);
    IF sc.table_identity IS NOT NULL
       AND EXISTS (SELECT 1 FROM audit.audited_column_history h WHERE h.table_identity = sc.table_identity) THEN
        ident := sc.table_identity;
        -- each event's columns by number: names change, numbers do not
        FOR i IN 1 .. n LOOP
            ev := evs[i];
            ev.record_id := audit.by_attnum(ident, ev.event_time, ev.record_id);
            ev.old_data := audit.by_attnum(ident, ev.event_time, ev.old_data);
            ev.new_data := audit.by_attnum(ident, ev.event_time, ev.new_data);
            ev.changed_columns := audit.attnums_of(ident, ev.event_time, ev.changed_columns);
            evs[i] := ev;
        END LOOP;
    END IF;

    -- Replay the changes made by "at": in id order, each at its
    -- transaction's commit if known, else its transaction's last statement
    -- on the record (audit.change_time()).
    WHILE p < n AND audit.change_time(evs[p + 1], evs) <= row_as_of.at LOOP
        p := p + 1;
        ev := evs[p];
        CONTINUE WHEN ev.status <> 'success';
        IF ev.action IN ('INSERT', 'BASELINE') THEN
            -- BASELINE: the row as it was when auditing began
            state := ev.new_data;
            setat := (SELECT coalesce(jsonb_object_agg(k, ev.event_time), '{}') FROM jsonb_object_keys(state) k);
            present := true;
            complete := true;
        ELSIF ev.action = 'UPDATE' THEN
            IF present IS NOT TRUE THEN
                state := '{}';
                setat := '{}';
                complete := false;
            END IF;
            -- before the UPDATE the row had record_id's and old_data's values
            setat := (SELECT coalesce(jsonb_object_agg(k, ev.event_time), '{}')
                        FROM jsonb_object_keys(ev.record_id || coalesce(ev.old_data, '{}')) k WHERE NOT state ? k) || setat;
            state := (ev.record_id || coalesce(ev.old_data, '{}')) || state;
            state := state || coalesce(ev.new_data, '{}');
            setat := setat || (SELECT coalesce(jsonb_object_agg(k, ev.event_time), '{}') FROM jsonb_object_keys(coalesce(ev.new_data, '{}')) k);
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
            SELECT setat || coalesce(jsonb_object_agg(f.key, ev.event_time), '{}'),
                   state || coalesce(jsonb_object_agg(f.key, f.value), '{}')
              INTO setat, state
              FROM jsonb_each(fill) f
             WHERE NOT state ? f.key AND NOT f.key = ANY (touched);
            EXIT WHEN ev.action = 'DELETE';
            touched := touched || coalesce(ev.changed_columns, '{}');
        END LOOP;
    END IF;
    -- the record had this key at that moment, or it is not the row asked for
    key_now := CASE WHEN ident IS NULL THEN r.record ELSE audit.by_attnum(ident, now(), r.record) END;
    IF state IS NOT NULL AND audit.key_columns(r.live) IS NOT NULL
       AND EXISTS (SELECT 1 FROM jsonb_each(key_now) kv WHERE state -> kv.key IS DISTINCT FROM kv.value) THEN
        RETURN NULL;
    END IF;
    IF ident IS NULL THEN
        RETURN state;
    END IF;

    -- The columns the table had at that moment, under their names then.
    excluded := audit.attnums_of(ident, now(),
                    (SELECT a.exclude_columns FROM audit.audited_tables a WHERE a.table_oid = r.live));
    result := '{}';
    FOR c IN
        SELECT h.* FROM audit.audited_column_history h
         WHERE h.table_identity = ident AND h.valid_from <= row_as_of.at
           AND (h.valid_until IS NULL OR h.valid_until > row_as_of.at)
         ORDER BY h.attnum
    LOOP
        CONTINUE WHEN c.attnum::text = ANY (coalesce(excluded, '{}'));
        SELECT * INTO fv FROM audit.audited_column_history h
         WHERE h.table_identity = ident AND h.attnum = c.attnum ORDER BY h.valid_from LIMIT 1;
        IF state ? c.attnum::text THEN
            v := state -> c.attnum::text;
            vt := (setat ->> c.attnum::text)::timestamptz;
        ELSIF fv.added = 'known' THEN
            -- added while the row existed: it got the value every row got
            v := fv.added_value;
            vt := fv.valid_from;
        ELSE
            -- added with a value the trail does not know, or never seen
            result := result || jsonb_build_object(c.column_name, '[unknown]');
            CONTINUE;
        END IF;
        -- type changes since the value was recorded
        IF v IS DISTINCT FROM '"[masked]"' AND v IS DISTINCT FROM 'null'
           AND EXISTS (SELECT 1 FROM audit.audited_column_history h
                        WHERE h.table_identity = ident AND h.attnum = c.attnum AND h.converted IS NOT NULL
                          AND h.valid_from > vt AND h.valid_from <= row_as_of.at) THEN
            IF EXISTS (SELECT 1 FROM audit.audited_column_history h
                        WHERE h.table_identity = ident AND h.attnum = c.attnum AND h.converted = 'using'
                          AND h.valid_from > vt AND h.valid_from <= row_as_of.at) THEN
                v := '"[unknown]"';
            ELSE
                BEGIN
                    -- the type's own conversion, as ALTER ... TYPE without
                    -- USING did it; the table's types are its owner's code
                    v := audit.eval_as_table_owner(r.live,
                             format('SELECT audit.canonical_jsonb(s.*) -> ''v'' FROM (SELECT ($1 ->> 0)::%s AS v) s', c.data_type),
                             jsonb_build_array(v #>> '{}'));
                EXCEPTION WHEN OTHERS THEN
                    v := '"[unknown]"';
                END;
            END IF;
        END IF;
        result := result || jsonb_build_object(c.column_name, v);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION audit.row_as_of(regclass, jsonb, timestamptz) IS
    'A record as it was at a moment, rebuilt from the trail (NULL if it did not exist) with the columns the table had then; masked values stay "[masked]", values the trail cannot know are "[unknown]", excluded columns are absent';

CREATE OR REPLACE FUNCTION audit.undo(event_id bigint, force boolean DEFAULT false)
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
    tbl_ident bigint;
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
    -- The event's table: by its identity (followed across renames; a table
    -- of the same name created after it was dropped is another table), or
    -- for an event from before 1.6 of a table that has none, by name.
    tbl_ident := audit.event_identity(ev);
    IF tbl_ident IS NOT NULL THEN
        SELECT h.table_oid::regclass INTO tbl FROM audit.audited_table_history h
         WHERE h.table_identity = tbl_ident AND h.valid_until IS NULL
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = h.table_oid);
        IF tbl IS NULL THEN
            RAISE EXCEPTION 'cannot undo this %: table %.% was dropped after it', ev.action,
                            quote_ident(ev.schema_name), quote_ident(ev.table_name)
                USING ERRCODE = 'undefined_table',
                      DETAIL = 'The table the event belongs to was dropped (audit.audited_table_history); a table of that name created since is another table.',
                      HINT = 'audit.record_history(schema_name, table_name, record_id) shows the history of the dropped table.';
        END IF;
    ELSE
        IF to_regclass(format('%I.%I', ev.schema_name, ev.table_name)) IS NOT NULL
           AND ev.id < audit.table_dropped_at(ev.schema_name, ev.table_name) THEN
            RAISE EXCEPTION 'cannot undo this %: table %.% was dropped after it', ev.action,
                            quote_ident(ev.schema_name), quote_ident(ev.table_name)
                USING ERRCODE = 'undefined_table',
                      DETAIL = format('Event %s recorded its drop; a table of that name created since is another table.',
                                      audit.table_dropped_at(ev.schema_name, ev.table_name)),
                      HINT = 'audit.record_history(schema_name, table_name, record_id) shows the history of the dropped table.';
        END IF;
        tbl := to_regclass(format('%I.%I', ev.schema_name, ev.table_name));
    END IF;
    IF ev.action = 'BASELINE' THEN
        RAISE EXCEPTION 'cannot undo a BASELINE event: it records a row as it was when auditing began, not a change'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Undo the changes recorded after it.';
    END IF;
    IF ev.action NOT IN ('INSERT', 'UPDATE', 'DELETE') OR ev.status <> 'success' THEN
        RAISE EXCEPTION 'cannot undo this % event: with status % it changed nothing', ev.action, ev.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- columns renamed since the event: their values under the names of now
    IF tbl_ident IS NOT NULL
       AND EXISTS (SELECT 1 FROM audit.audited_column_history h WHERE h.table_identity = tbl_ident) THEN
        ev.record_id := audit.names_now(tbl_ident, ev.event_time, ev.record_id);
        ev.old_data := audit.names_now(tbl_ident, ev.event_time, ev.old_data);
        ev.new_data := audit.names_now(tbl_ident, ev.event_time, ev.new_data);
        ev.changed_columns := ARRAY(SELECT jsonb_object_keys(audit.names_now(tbl_ident, ev.event_time,
                                        (SELECT jsonb_object_agg(c, true) FROM unnest(ev.changed_columns) c))));
    END IF;

    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        RAISE EXCEPTION 'cannot undo this %: table %.% no longer exists', ev.action,
                        quote_ident(ev.schema_name), quote_ident(ev.table_name)
            USING ERRCODE = 'undefined_table',
                  HINT = 'audit.record_history(schema_name, table_name, record_id) shows the history of a dropped table.';
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
                'SELECT t.tableoid AS toid, t.ctid AS tid, to_jsonb(t.*) AS cur, to_jsonb(w.*) AS want_row'
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
                          ' WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t.*) = $3',
                          tbl,
                          (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                          (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
                          tbl);
    IF ev.action = 'INSERT' THEN
        PERFORM audit.undo_change_row(
            format('DELETE FROM %s t WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t.*) = $3', tbl),
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

REVOKE ALL ON FUNCTION audit.record_events(audit.table_scope,jsonb,regclass,timestamp with time zone),
                       audit.record_incarnation(audit.table_scope,jsonb,bigint),
                       audit.event_identity(audit.event),
                       audit.identity_scope(bigint),
                       audit.identity_by_name(text,text,timestamp with time zone),
                       audit.name_scope(text,text,timestamp with time zone),
                       audit.live_scope(regclass),
                       audit.scope_names(audit.table_scope),
                       audit.by_attnum(bigint,timestamp with time zone,jsonb),
                       audit.attnums_of(bigint,timestamp with time zone,text[]),
                       audit.change_time(audit.event,audit.event[]),
                       audit.keyless_link(audit.table_scope,jsonb,bigint,boolean),
                       audit.key_by_history(bigint,jsonb),
                       audit.names_now(bigint,timestamp with time zone,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.event_identity(audit.event),
                          audit.names_now(bigint,timestamp with time zone,jsonb) TO audit_admin;
-- end issue 19

-- issue 22: capture => 'wal' (asynchronous capture from the WAL, src/wal_capture.c)
CREATE FUNCTION audit.wal_prepare()
RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_wal_prepare';
COMMENT ON FUNCTION audit.wal_prepare() IS
    'Internal to audit.enable(capture => ''wal''): check wal_level and shared_preload_libraries, create this database''s capture slot if missing; its name';


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
                                         OUT events_written bigint)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_wal_capture_status';
COMMENT ON FUNCTION audit.wal_capture_status() IS
    'Internal: the state of this database''s WAL capture (audit.capture_lag)';

CREATE VIEW audit.capture_lag AS
SELECT s.slot_name, s.worker_pid, s.confirmed_lsn, s.done_lsn, s.bytes_behind,
       CASE WHEN s.bytes_behind = 0 THEN 0 ELSE s.seconds_behind END AS seconds_behind,
       s.last_batch_at, s.last_batch_events, s.events_written
  FROM audit.wal_capture_status() s
 WHERE s.slot_name IS NOT NULL;
COMMENT ON VIEW audit.capture_lag IS
    'WAL capture (capture => ''wal'') of this database: its slot, worker, the LSN up to which every committed change is in the trail (done_lsn), bytes and seconds behind, last batch';


-- audit.enable gains capture (last parameter); its table flags may hold
-- "wal" and "replica_identity=..."
DROP FUNCTION audit.enable(regclass, text[], text[], boolean, boolean);
CREATE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT NULL,
                             mask_columns text[] DEFAULT NULL,
                             log_reads boolean DEFAULT NULL,
                             baseline boolean DEFAULT false,
                             capture text DEFAULT 'trigger')
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
    -- NULL keeps the table's current mode (trigger for a table not audited)
    IF capture IS NULL THEN
        capture := CASE WHEN 'wal' = ANY (audit.table_flags(tbl)) THEN 'wal' ELSE 'trigger' END;
    END IF;
    IF capture NOT IN ('trigger', 'wal') THEN
        RAISE EXCEPTION 'capture must be ''trigger'' or ''wal'', not %', quote_literal(capture)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'trigger: events written with the change; wal: decoded from the WAL by the capture worker.';
    END IF;
    IF capture = 'wal' THEN
        IF rel.relkind = 'p' THEN
            RAISE EXCEPTION 'cannot audit partitioned table "%" with capture => ''wal''', tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Audit it with capture => ''trigger''.';
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
    SELECT a.exclude_columns, a.mask_columns INTO cur_exclude, cur_mask
      FROM audit.audited_tables a WHERE a.table_oid = tbl;
    IF exclude_columns IS NULL THEN
        exclude_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_exclude) c
                                      WHERE c <> ALL (coalesce(mask_columns, '{}'))), '{}');
    END IF;
    IF mask_columns IS NULL THEN
        mask_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_mask) c
                                   WHERE c <> ALL (exclude_columns)), '{}');
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
    flags := CASE WHEN 'log_reads' = ANY (cur_flags) THEN ARRAY['log_reads'] ELSE '{}' END;
    IF log_reads THEN
        flags := ARRAY['log_reads'];
    ELSIF NOT log_reads THEN
        flags := '{}';
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
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, flags);
    PERFORM audit.log_config_event('ENABLE AUDIT', tbl,
                                   jsonb_build_object('exclude_columns', to_jsonb(exclude_columns),
                                                      'mask_columns', to_jsonb(mask_columns))
                                   || CASE WHEN 'log_reads' = ANY (flags)
                                           THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END
                                   || CASE WHEN baseline THEN '{"baseline": true}'::jsonb ELSE '{}'::jsonb END
                                   || CASE WHEN capture = 'wal' THEN '{"capture": "wal"}'::jsonb ELSE '{}'::jsonb END);
    -- the rows the table holds now, one BASELINE event each (after the
    -- triggers: their lock keeps writers out until this transaction ends)
    IF baseline THEN
        PERFORM audit.record_baseline(tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start; capture => ''wal'' captures the table''s changes from the WAL (asynchronous, needs wal_level = logical; sets REPLICA IDENTITY FULL), ''trigger'' (the default) with the change';

CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
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
        EXECUTE format('CREATE TRIGGER audit_ext_row BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, flags::text);
        EXECUTE format('CREATE TRIGGER audit_ext_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L, %L)',
                       tbl, exclude_columns::text, mask_columns::text, flags::text);
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                   tbl, exclude_columns::text, mask_columns::text, coalesce(flags, '{}')::text);
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
    -- issue 22: a table audited from the WAL gets its replica identity back
    IF 'wal' = ANY (audit.table_flags(tbl)) THEN
        PERFORM audit.restore_replica_identity(tbl,
                    (SELECT f FROM unnest(audit.table_flags(tbl)) f WHERE f LIKE 'replica\_identity=%' LIMIT 1));
    END IF;
    PERFORM audit.drop_audit_triggers(tbl);
    RETURN true;
END
$$;

CREATE OR REPLACE VIEW audit.audited_tables AS
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
    'Tables being audited, with their options; capturing is false if any audit trigger of the table or of a partition is missing, disabled or replica only, or an inheritance child is not audited (capture_state says which); log_reads: reads are recorded too; replicated_into: subscriptions applying changes to the table (captured only with ENABLE ALWAYS TRIGGER audit_ext_row); capture: trigger (events written with the change) or wal (decoded from the WAL by the capture worker, audit.capture_lag)';

INSERT INTO audit.alert_rules (name, class, action, threshold, within, group_by, severity, cooldown,
                               min_rows, outside_hours, query, enabled, builtin, description, created_by)
VALUES
  ('capture_gap', 'system', 'CAPTURE_GAP', 1, NULL, NULL, 'critical', '0',
   NULL, NULL, NULL,
   true, true, 'Changes of tables audited from the WAL (capture => ''wal'') were not captured: the capture slot was invalidated (max_slot_wal_keep_size), dropped or advanced by someone else; the event names the LSN range', 'audit_ext');

REVOKE ALL ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text),
                       audit.wal_prepare(),
                       audit.restore_replica_identity(regclass,text),
                       audit.wal_capture_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text) TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.wal_capture_status() TO audit_admin, audit_reader;
GRANT SELECT ON audit.capture_lag TO audit_admin, audit_reader;
-- end issue 22
