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
    ADD COLUMN context_continues boolean,
    ADD CONSTRAINT event_risk_check CHECK (risk IN ('low', 'medium', 'high', 'critical'));
COMMENT ON COLUMN audit.event.detail IS
    'Further facts of the event, by class (read events: {"rows": rows returned by the statement}; an UPDATE that changed the key: {"new_record_id": the new key})';
COMMENT ON COLUMN audit.event.table_identity IS
    'The stable identity of the audited table an event is about (data, read and refused events, ENABLE/DISABLE AUDIT; audit.audited_table_history): the same across renames, new for a re-created table; NULL for events captured before 1.6';
COMMENT ON COLUMN audit.event.context IS 'The application''s context when the event was captured (NULL: none set)';
COMMENT ON COLUMN audit.event.risk IS 'Risk level of the event: low, medium, high or critical (NULL: not rated)';
COMMENT ON COLUMN audit.event.context_continues IS
    'Storage, not hashed: true when the event continues the context run of an earlier event of its writer (the same session_id, tenant, client_ip and indexed context keys, within 64 ids and an hour, same class and month) and so is found through that event by the context indexes; false for the first event of such a run; NULL otherwise';

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

CREATE OR REPLACE FUNCTION audit.create_event_indexes(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
    key text;
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
    -- 1.6: the rare events a record's history looks for beyond its own
    -- record_id, each in a partial index that other events never enter: the
    -- UPDATE that gave a record its key (detail.new_record_id, written by
    -- capture) and TRUNCATEs
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((detail -> ''new_record_id'')) '
                   'WHERE detail ? ''new_record_id''', name || '_key_change_idx', part);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (id) WHERE action = ''TRUNCATE''',
                   name || '_truncate_idx', part);
    -- 1.6: searches by the application's context (one session, one tenant
    -- ..., newest first): a btree per indexed key (audit_ext.
    -- context_index_keys, default session_id and tenant), ordered by
    -- (value, id) and partial on the key's presence, so an event without it
    -- enters none.  They replaced a GIN on the whole context (+560 B of WAL
    -- per event and 14% of OLTP TPS, yet a tenant's newest page sorted all
    -- of its events: 309 ms on 10M).  An entry for every event still cost
    -- about 10% of OLTP, so only the first event of a context run enters
    -- them (context_continues is not true; src/event_writer.c): the rest of
    -- the run follows it within 64 ids, and audit.search() reads that range
    -- (docs/performance.md, "1.6: context and risk").  Only documented keys
    -- are taken, whatever the setting says (it is checked by the library
    -- when loaded; a placeholder is not).
    FOR key IN SELECT DISTINCT btrim(k)
                 FROM unnest(string_to_array(coalesce(current_setting('audit_ext.context_index_keys', true),
                                                      'session_id, tenant'), ',')) k
                WHERE btrim(k) IN ('client_ip', 'session_id', 'user_agent', 'user_role', 'tenant', 'request_id') LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((context ->> %L), id) '
                       'WHERE context ? %L AND context_continues IS NOT TRUE',
                       name || '_ctx_' || key || '_idx', part, key, key);
    END LOOP;
    PERFORM audit.tune_event_partition(part);
END
$$;
COMMENT ON FUNCTION audit.create_event_indexes(regclass) IS
    'Internal: create the indexes every audit event partition has';

-- the two new partial indexes on every existing partition (empty but for
-- TRUNCATEs: events before 1.6 have no key-change detail)
SELECT audit.create_event_indexes(p.relid::regclass)
  FROM pg_partition_tree('audit.event') p WHERE p.isleaf ORDER BY p.relid;

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

-- (Re)create the audit triggers with options and flags, keeping the digest
-- columns the table has.
CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
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
                                         OUT inc_events audit.event[], OUT inc_keys jsonb[])
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
    inc_events := coalesce(evk[s:m], '{}');
    inc_keys := array_fill(p_key, ARRAY[cardinality(inc_events)]);
END
$$;
COMMENT ON FUNCTION audit.record_incarnation(audit.table_scope, jsonb, bigint) IS
    'Internal: the events of the last record that had a key (up to an event), from where it got the key, each with the key';

-- The UPDATE that gave a record key k (the last one between lo and hi): found
-- by the new key capture writes into detail ("new_record_id", 1.6) through
-- its partial index.  Tables without a key (every UPDATE changes the whole
-- row that identifies a record) and events captured before 1.6 carry no such
-- detail: for them the table's UPDATEs are read.
CREATE FUNCTION audit.key_moved_to(sc audit.table_scope, k jsonb, lo bigint, hi bigint, keyless boolean)
RETURNS audit.event
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev audit.event;
BEGIN
    IF NOT keyless THEN
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND e.detail ? 'new_record_id' AND (e.detail -> 'new_record_id') = k
           AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.action = 'UPDATE' AND e.status = 'success'
           AND e.id > coalesce(lo, 0) AND e.id < coalesce(hi, 9223372036854775807)
         ORDER BY e.id DESC LIMIT 1;
        IF FOUND OR (sc.table_identity IS NOT NULL AND sc.legacy_from_id IS NULL) THEN
            RETURN ev;
        END IF;
    END IF;
    SELECT * INTO ev FROM audit.event e
     WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
       AND (keyless OR e.table_identity IS NULL)
       AND e.action = 'UPDATE' AND e.status = 'success'
       AND e.id > coalesce(lo, 0) AND e.id < coalesce(hi, 9223372036854775807)
       AND e.record_id IS DISTINCT FROM k AND audit.next_record_id(e.record_id, e.new_data) = k
     ORDER BY e.id DESC LIMIT 1;
    RETURN ev;
END
$$;
COMMENT ON FUNCTION audit.key_moved_to(audit.table_scope, jsonb, bigint, bigint, boolean) IS
    'Internal: the UPDATE that gave a record its key (by the key change capture records, else by reading the table''s UPDATEs)';

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
    upto       bigint;
    first_id   bigint;
    bound      bigint;
    pre_evs    audit.event[];
    pre_keys   jsonb[];
    kt         timestamptz;
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
    SELECT x.inc_events, x.inc_keys INTO evs, idents
      FROM audit.record_incarnation(sc, k, upto) x;
    IF cardinality(evs) = 0 AND upto IS NOT NULL THEN
        ev := audit.key_moved_to(sc, k, NULL, upto + 1, keyless);
        IF ev.id IS NOT NULL THEN
            SELECT x.inc_events, x.inc_keys INTO evs, idents
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
                SELECT x.inc_events, x.inc_keys INTO evs, idents
                  FROM audit.record_incarnation(sc, k, bound) x;
            END IF;
        END IF;
    ELSIF cardinality(evs) = 0 THEN
        -- the record may have got the key by an UPDATE and have no event under it yet
        ev := audit.key_moved_to(sc, k, NULL, NULL, keyless);
        IF ev.id IS NOT NULL THEN
            SELECT x.inc_events, x.inc_keys INTO evs, idents
              FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
        END IF;
    END IF;
    -- The last record with events under the key lost it (DELETE, or an
    -- UPDATE to another key), and another record may have taken it since by
    -- an UPDATE of its key, with no event under the key yet: that record has
    -- the key (up to the 1.6 review the deleted one was answered, and
    -- row_as_of() said NULL for a row in the table)
    n := cardinality(evs);
    IF n > 0 AND NOT keyless AND evs[n].status = 'success' AND idents[n] = k
       AND (evs[n].action = 'DELETE' OR
            (evs[n].action = 'UPDATE' AND audit.next_record_id(idents[n], evs[n].new_data) IS DISTINCT FROM idents[n])) THEN
        -- (after the record's previous event: a swap of two keys in one
        -- statement, as a deferrable key allows, may record the move into
        -- the key before the move out of it)
        ev := audit.key_moved_to(sc, k, CASE WHEN n > 1 THEN evs[n - 1].id ELSE evs[n].id END,
                                 CASE WHEN upto IS NOT NULL THEN upto + 1 END, keyless);
        IF ev.id IS NOT NULL THEN
            SELECT x.inc_events, x.inc_keys INTO evs, idents
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
    SELECT x.evs, x.idents INTO evs, idents FROM audit.record_moves_before(sc, evs, idents, keyless) x;
    -- back, across a rename or a type change of a key column: the events
    -- recorded under the key as it was before, if the record lived then
    -- (up to the 1.6 review the history began after the change)
    WHILE sc.table_identity IS NOT NULL
          AND (cardinality(evs) = 0 OR evs[1].action NOT IN ('INSERT', 'BASELINE')) LOOP
        bound := CASE WHEN cardinality(evs) = 0 THEN upto ELSE evs[1].id - 1 END;
        nk := CASE WHEN cardinality(evs) = 0 THEN k ELSE idents[1] END;
        kt := CASE WHEN cardinality(evs) = 0 THEN 'infinity' ELSE evs[1].event_time END;
        pre_evs := '{}';
        -- change by change (several may have no event between them)
        LOOP
            SELECT * INTO lnk FROM audit.key_before_change(sc.table_identity, nk, kt, p_live);
            EXIT WHEN lnk.old_key IS NULL;
            SELECT x.inc_events, x.inc_keys INTO pre_evs, pre_keys
              FROM audit.record_incarnation(sc, lnk.old_key, bound) x;
            IF cardinality(pre_evs) = 0 THEN
                -- it got that key by an UPDATE (without a key: every UPDATE
                -- gives the record its new whole row)
                ev := audit.key_moved_to(sc, lnk.old_key, NULL, CASE WHEN bound IS NOT NULL THEN bound + 1 END, keyless);
                IF ev.id IS NOT NULL THEN
                    SELECT x.inc_events, x.inc_keys INTO pre_evs, pre_keys
                      FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
                END IF;
            END IF;
            EXIT WHEN cardinality(pre_evs) > 0;
            nk := lnk.old_key;
            kt := lnk.changed_at - interval '1 microsecond';
        END LOOP;
        EXIT WHEN lnk.old_key IS NULL;
        n := cardinality(pre_evs);
        -- it must have lived up to the change, under that key
        EXIT WHEN n = 0 OR pre_evs[n].event_time > lnk.changed_at
               OR (pre_evs[n].status = 'success' AND (pre_evs[n].action = 'DELETE' OR
                   (pre_evs[n].action = 'UPDATE'
                    AND audit.next_record_id(pre_keys[n], pre_evs[n].new_data) IS DISTINCT FROM pre_keys[n]
                    AND audit.next_record_id(pre_keys[n], pre_evs[n].new_data) IS DISTINCT FROM lnk.old_key)));
        evs := pre_evs || evs;
        idents := pre_keys || idents;
        -- and back through the key moves before
        SELECT x.evs, x.idents INTO evs, idents FROM audit.record_moves_before(sc, evs, idents, keyless) x;
    END LOOP;
    -- back, without a key: across changes of the exclude or mask columns
    WHILE keyless AND cardinality(evs) > 0 AND evs[1].action NOT IN ('INSERT', 'BASELINE') LOOP
        SELECT * INTO lnk FROM audit.keyless_link(sc, idents[1], evs[1].id, false);
        EXIT WHEN lnk.key IS NULL;
        n := cardinality(evs);
        SELECT x.inc_events || evs, x.inc_keys || idents
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
                -- a statement changes a row once: an event under the new key
                -- of the statement that moved the record there is the
                -- previous holder's (two keys swapped in one statement)
                CONTINUE WHEN ev.txid = evs[n].txid AND ev.statement_seq = evs[n].statement_seq;
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
            -- The record existed after its last event.  A later INSERT of
            -- its key (another record: with p_at the history was cut there)
            -- says something removed it before (up to the 1.6 review a
            -- TRUNCATE was only looked for when the key was not in the table
            -- now, and row_as_of() showed the truncated row until the key's
            -- next INSERT).  Else, if it is in the table now, nothing removed
            -- it since (assuming auditing went on); else look for a TRUNCATE.
            -- Only possible with a key.
            in_table := NULL;
            SELECT min(e.id) INTO gap_to FROM audit.event e
             WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
               AND e.record_id @> idents[n] AND e.record_id = idents[n] AND e.id > evs[n].id
               AND e.action IN ('INSERT', 'BASELINE') AND e.status = 'success';
            IF gap_to IS NOT NULL THEN
                in_table := false;
            END IF;
            keys := CASE WHEN p_live IS NOT NULL THEN audit.key_columns(p_live) END;
            IF in_table IS NULL AND keys IS NOT NULL
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

-- The rows of a record history: its events (audit.record_events) with each
-- one's statement text, looked up by its key (a join was planned for the
-- function's default 1000 rows as a hash of all of audit.statement).
CREATE FUNCTION audit.history_rows(sc audit.table_scope, p_record jsonb, p_live regclass)
RETURNS SETOF audit.event_with_statement
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
           e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
           e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
           (SELECT s.statement_text FROM audit.statement s WHERE s.statement_id = e.statement_id),
           e.table_identity, e.context, e.risk
      FROM audit.record_events(sc, p_record, p_live) e
     ORDER BY e.id
$$;
COMMENT ON FUNCTION audit.history_rows(audit.table_scope, jsonb, regclass) IS
    'Internal: the rows of a record history, with statement texts';

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
            -- fixed list has it, and ddl, system and app (1.6), whose actions
            -- are open.  Partition pruning then skips the others.
            SELECT c.key INTO action_class FROM jsonb_each(known) c WHERE c.value ? action;
            conds := conds || format('e.class IN (%s)',
                                     array_to_string(ARRAY(SELECT quote_literal(x)
                                                             FROM unnest(ARRAY[action_class, 'ddl', 'system', 'app']) x
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
            -- an application entity (schema_name NULL, 1.6) goes by its name
            -- as given: Customer is not folded to customer
            IF parts[1] IS DISTINCT FROM table_name THEN
                name_cond := format('(e.table_name = $7 OR (e.schema_name IS NULL AND e.table_name = %L))',
                                    table_name);
            ELSE
                name_cond := 'e.table_name = $7';
            END IF;
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
    RETURN QUERY SELECT * FROM audit.history_rows(audit.live_scope(r.live), r.record, r.live);
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
    IF record_history.table_name IS NULL THEN
        RAISE EXCEPTION 'invalid table: table_name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give schema_name and table_name of a table, or schema_name NULL and an application entity.';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- 1.6: schema_name NULL names an application entity (audit.log_event):
    -- its events are those whose record_id holds the key given
    IF record_history.schema_name IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
                   e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
                   e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
                   s.statement_text, e.table_identity, e.context, e.risk
              FROM audit.event e
              LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
             WHERE e.class = 'app' AND e.schema_name IS NULL
               AND e.table_name = record_history.table_name
               AND e.record_id @> rec
             ORDER BY e.id;
        RETURN;
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
    RETURN QUERY SELECT * FROM audit.history_rows(sc, rec, live);
END
$$;
COMMENT ON FUNCTION audit.record_history(text, text, jsonb) IS
    'The events of one record of a table given by its names as recorded (also for a dropped table), oldest first; schema_name NULL: the application events of an entity''s record (audit.log_event)';

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
    RETURN QUERY SELECT * FROM audit.history_rows(audit.identity_scope(record_history_by_identity.table_identity), rec, live);
END
$$;
COMMENT ON FUNCTION audit.record_history_by_identity(bigint, jsonb) IS
    'The events of one record of the table with this identity (across its renames, also once dropped), oldest first';

-- The number of the column that had a name at a moment: the version of
-- that name valid then, else the nearest one (a statement that started just
-- before a rename wrote after it); NULL: the table never had it.
CREATE FUNCTION audit.attnum_at(ident bigint, t timestamptz, name text)
RETURNS smallint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.attnum FROM audit.audited_column_history h
     WHERE h.table_identity = ident AND h.column_name = name
     ORDER BY (h.valid_from <= t AND (h.valid_until IS NULL OR h.valid_until > t)) DESC,
              h.valid_until IS NULL DESC, h.valid_until DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION audit.attnum_at(bigint, timestamptz, text) IS
    'Internal: the number of the column that had a name at a moment (the nearest version of the name)';

-- A jsonb object of column values keyed by column names as they were at a
-- moment, re-keyed by column number (names change, numbers do not).  A name
-- the table never had keeps its name, prefixed with "?".
CREATE FUNCTION audit.by_attnum(ident bigint, t timestamptz, j jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(coalesce(audit.attnum_at(ident, t, k.key)::text, '?' || k.key), k.value), '{}')
      FROM jsonb_each(j) k
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
      LEFT JOIN audit.audited_column_history h
             ON h.table_identity = ident AND h.attnum = audit.attnum_at(ident, t, k.key) AND h.valid_until IS NULL
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
CREATE FUNCTION audit.change_time(ev audit.event, txn_last timestamptz)
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
    RETURN coalesce(txn_last, ev.event_time);
END
$$;
COMMENT ON FUNCTION audit.change_time(audit.event, timestamptz) IS
    'Internal: when a change counts as made for audit.row_as_of() (commit time if known, else txn_last: its transaction''s last statement on the record)';

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
    txn_last timestamptz[];
    key_last timestamptz[] := '{}';
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
    -- A change that ended the record's hold on its key (DELETE, or an UPDATE
    -- to another key) counts together with its transaction's later
    -- statements on that key: a DELETE and an INSERT of the same key in one
    -- transaction never show a moment without the row (up to the 1.6
    -- review: NULL between the two statements)
    FOR i IN 1 .. n LOOP
        key_last := key_last || NULL::timestamptz;
        ev := evs[i];
        CONTINUE WHEN ev.txid IS NULL OR ev.status <> 'success'
                   OR NOT (ev.action = 'DELETE' OR (ev.action = 'UPDATE' AND ev.detail ? 'new_record_id'));
        SELECT max(e.event_time) INTO vt FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.record_id @> ev.record_id AND e.record_id = ev.record_id AND e.txid = ev.txid AND e.id > ev.id;
        key_last[i] := vt;
        SELECT max(e.event_time) INTO vt FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.detail ? 'new_record_id' AND (e.detail -> 'new_record_id') = ev.record_id
           AND e.action = 'UPDATE' AND e.txid = ev.txid AND e.id > ev.id;
        key_last[i] := greatest(key_last[i], vt);
    END LOOP;
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
    -- each event's transaction's last statement on the record, in one pass
    txn_last := ARRAY(SELECT max(x.event_time) OVER (PARTITION BY x.txid)
                        FROM unnest(evs) WITH ORDINALITY x ORDER BY x.ordinality);
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN key_last[i] IS NULL;
        FOR j IN 1 .. n LOOP
            IF evs[j].txid = evs[i].txid THEN
                txn_last[j] := greatest(txn_last[j], key_last[i]);
            END IF;
        END LOOP;
    END LOOP;
    WHILE p < n AND audit.change_time(evs[p + 1], txn_last[p + 1]) <= row_as_of.at LOOP
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
    -- (a key value recorded before a type change of its column is compared
    -- converted as ALTER TYPE did; through a USING expression it cannot be)
    IF state IS NOT NULL AND audit.key_columns(r.live) IS NOT NULL THEN
        FOR c IN SELECT kv.key, kv.value FROM jsonb_each(key_now) kv LOOP
            v := state -> c.key;
            IF ident IS NOT NULL AND v IS DISTINCT FROM c.value AND v IS NOT NULL THEN
                SELECT h.* INTO fv FROM audit.audited_column_history h
                 WHERE h.table_identity = ident AND h.attnum::text = c.key AND h.valid_until IS NULL;
                IF EXISTS (SELECT 1 FROM audit.audited_column_history h
                            WHERE h.table_identity = ident AND h.attnum::text = c.key AND h.converted IS NOT NULL
                              AND h.valid_from > (setat ->> c.key)::timestamptz) THEN
                    IF EXISTS (SELECT 1 FROM audit.audited_column_history h
                                WHERE h.table_identity = ident AND h.attnum::text = c.key AND h.converted = 'using'
                                  AND h.valid_from > (setat ->> c.key)::timestamptz) THEN
                        CONTINUE;
                    END IF;
                    v := audit.value_as_type(r.live, v, fv.data_type);
                END IF;
            END IF;
            IF v IS DISTINCT FROM c.value THEN
                RETURN NULL;
            END IF;
        END LOOP;
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
                -- the type's own conversion, as ALTER ... TYPE without USING did it
                v := coalesce(audit.value_as_type(r.live, v, c.data_type), '"[unknown]"');
            END IF;
        END IF;
        result := result || jsonb_build_object(c.column_name, v);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION audit.row_as_of(regclass, jsonb, timestamptz) IS
    'A record as it was at a moment, rebuilt from the trail (NULL if it did not exist) with the columns the table had then; masked values stay "[masked]", values the trail cannot know are "[unknown]", excluded columns are absent';

-- SECURITY INVOKER on purpose: the DML runs with the caller's own
-- privileges (SELECT plus DELETE, UPDATE or INSERT on the table, row level
-- security included) and the trigger records the caller, not the function's
-- owner, as db_user of the undoing events.
-- Internal to audit.undo: run one statement (DELETE or UPDATE) that must
-- touch exactly the row undo read (tableoid $1, ctid $2, whole row $3, the
-- recorded values $4), so a concurrent change fails instead of being lost.
CREATE OR REPLACE FUNCTION audit.undo_change_row(sql text, action text, tbl regclass, ident jsonb,
                                      row_oid oid, row_tid tid, cur jsonb, vals jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    done bigint;
BEGIN
    BEGIN
        EXECUTE sql USING row_oid, row_tid, cur, vals;
    EXCEPTION WHEN data_exception THEN
        -- an old value the column's type refuses now (an enum label
        -- renamed, a varchar shortened): up to the 1.6 review the input
        -- function's own error (22P02, 22001) came through
        RAISE EXCEPTION 'cannot undo this %: its recorded values no longer fit table %', action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = SQLERRM;
    END;
    GET DIAGNOSTICS done = ROW_COUNT;
    IF done <> 1 AND row_tid IS NULL THEN
        -- the re-insert of a deleted row (audit.undo() passes no row)
        RAISE EXCEPTION 'cannot undo this %: no row was inserted into %', action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A trigger or rule of the table skipped the insert.';
    END IF;
    IF done <> 1 THEN
        RAISE EXCEPTION 'cannot undo this %: the row % of % changed while being undone', action, ident, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Try again.';
    END IF;
END
$$;
COMMENT ON FUNCTION audit.undo_change_row(text, text, regclass, jsonb, oid, tid, jsonb, jsonb) IS
    'Internal to audit.undo(): change exactly the row it read (or insert exactly one), or fail; recorded values the table refuses now are 55000';

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
    PERFORM audit.undo_change_row(
        format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_record(NULL::%s, $4) o',
               tbl,
               (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
               (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
               tbl),
        ev.action, tbl, ident, NULL, NULL, NULL, ev.old_data);
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
                       audit.change_time(audit.event,timestamp with time zone),
                       audit.keyless_link(audit.table_scope,jsonb,bigint,boolean),
                       audit.key_by_history(bigint,jsonb),
                       audit.key_moved_to(audit.table_scope,jsonb,bigint,bigint,boolean),
                       audit.attnum_at(bigint,timestamp with time zone,text),
                       audit.history_rows(audit.table_scope,jsonb,regclass),
                       audit.names_now(bigint,timestamp with time zone,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.event_identity(audit.event),
                          audit.attnum_at(bigint,timestamp with time zone,text),
                          audit.names_now(bigint,timestamp with time zone,jsonb) TO audit_admin;
-- end issue 19
-- ===========================================================================
-- issue 19 (histrev): how a type change converted (from the ALTER's parse tree),
-- a key as recorded before a rename or type change of a key column
-- ===========================================================================
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

-- Back from a record's first events: while the first is not its INSERT (or
-- BASELINE), the UPDATE that moved the record to that key from another one
-- (after the key's previous holder, if any), and the events it had under
-- that key before, prepended (audit.record_events, twice).
CREATE FUNCTION audit.record_moves_before(sc audit.table_scope, INOUT evs audit.event[], INOUT idents jsonb[],
                                          keyless boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_id bigint;
    ev        audit.event;
BEGIN
    WHILE cardinality(evs) > 0 AND evs[1].action NOT IN ('INSERT', 'BASELINE') LOOP
        SELECT max(e.id) INTO before_id FROM audit.event e
         WHERE e.class = 'data' AND (e.table_identity = sc.table_identity OR (e.table_identity IS NULL AND e.schema_name = sc.schema_name AND e.table_name = sc.table_name AND e.id > sc.legacy_from_id))
           AND e.record_id @> idents[1] AND e.record_id = idents[1] AND e.id < evs[1].id;
        ev := audit.key_moved_to(sc, idents[1], before_id, evs[1].id, keyless);
        EXIT WHEN ev.id IS NULL;
        SELECT x.inc_events || evs, x.inc_keys || idents
          INTO evs, idents
          FROM audit.record_incarnation(sc, ev.record_id, ev.id) x;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_moves_before(audit.table_scope, audit.event[], jsonb[], boolean) IS
    'Internal: a record''s events extended back through the key changes that brought it to the key of its first one';

-- A recorded value converted to a type by the type's own conversion (as
-- ALTER ... TYPE without USING does), as the table's owner (its types are
-- its code): the value in canonical JSON, NULL when it does not convert.
CREATE FUNCTION audit.value_as_type(live regclass, v jsonb, data_type text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN audit.eval_as_table_owner(live,
               format('SELECT audit.canonical_jsonb(s.*) -> ''v'' FROM (SELECT ($1 ->> 0)::%s AS v) s', data_type),
               jsonb_build_array(v #>> '{}'));
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION audit.value_as_type(regclass, jsonb, text) IS
    'Internal: a recorded value converted to a type by its own cast, as the table''s owner; NULL when it does not convert';

-- A key as the trail recorded it before the last change of a key column's
-- name or type by t (audit.audited_column_history): the names of before,
-- and values converted back to the types of before by their own cast (as
-- the table's owner: its types are its code).  NULL when no key column
-- changed by then, or the change cannot be undone: a type changed USING an
-- expression, a value that does not convert, a dropped table (no owner to
-- convert as).  changed_at: when the key columns changed.
CREATE FUNCTION audit.key_before_change(ident bigint, key jsonb, t timestamptz, live regclass,
                                        OUT old_key jsonb, OUT changed_at timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kv   record;
    cur  audit.audited_column_history;
    prev audit.audited_column_history;
    v    jsonb;
BEGIN
    SELECT max(h.valid_from) INTO changed_at
      FROM jsonb_each(key) k
      JOIN audit.audited_column_history h
        ON h.table_identity = ident AND h.attnum = audit.attnum_at(ident, t, k.key)
     WHERE h.valid_from <= t
       AND EXISTS (SELECT 1 FROM audit.audited_column_history p
                    WHERE p.table_identity = ident AND p.attnum = h.attnum
                      AND p.valid_until = h.valid_from AND p.ended_by IN ('rename', 'type'));
    IF changed_at IS NULL THEN
        RETURN;
    END IF;
    old_key := '{}';
    FOR kv IN SELECT * FROM jsonb_each(key) LOOP
        SELECT * INTO cur FROM audit.audited_column_history h
         WHERE h.table_identity = ident AND h.attnum = audit.attnum_at(ident, t, kv.key)
           AND h.valid_from = changed_at;
        IF cur.table_identity IS NULL THEN
            -- this key column did not change then
            old_key := old_key || jsonb_build_object(kv.key, kv.value);
            CONTINUE;
        END IF;
        SELECT * INTO prev FROM audit.audited_column_history h
         WHERE h.table_identity = ident AND h.attnum = cur.attnum AND h.valid_until = changed_at
           AND h.ended_by IN ('rename', 'type');
        v := kv.value;
        -- (a whole-row identity may hold NULLs and masked values: kept as they are)
        IF prev.data_type IS DISTINCT FROM cur.data_type AND v <> 'null' AND v <> '"[masked]"' THEN
            IF cur.converted IS DISTINCT FROM 'cast' OR live IS NULL THEN
                old_key := NULL;
                RETURN;
            END IF;
            v := audit.value_as_type(live, kv.value, prev.data_type);
            IF v IS NULL OR v = 'null' THEN
                old_key := NULL;
                RETURN;
            END IF;
        END IF;
        old_key := old_key || jsonb_build_object(prev.column_name, v);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.key_before_change(bigint, jsonb, timestamptz, regclass) IS
    'Internal: a key as recorded before the last rename or type change of a key column by a moment (names and types of before)';

REVOKE ALL ON FUNCTION audit.ddl_type_using(pg_ddl_command, oid),
                       audit.key_before_change(bigint, jsonb, timestamptz, regclass),
                       audit.record_moves_before(audit.table_scope, audit.event[], jsonb[], boolean),
                       audit.value_as_type(regclass, jsonb, text) FROM PUBLIC;
-- end issue 19 (histrev)
-- ===========================================================================
-- issue 20: the application's own trail (application events, digest columns, context, risk)
-- ===========================================================================
-- Application events: class app (its own partitions, chain lanes, queue
-- share), audit.log_event() for the new role audit_writer, audit.app_actions();
-- the reading and report functions count and show them.  Digest columns:
-- audit.enable(digest_columns => ...) records {"sha256", "bytes"}.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_writer') THEN
        CREATE ROLE audit_writer NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('audit_admin', 'audit_writer', 'MEMBER') THEN
        GRANT audit_writer TO audit_admin;
    END IF;
END
$roles$;

-- class app
ALTER TABLE audit.event DROP CONSTRAINT event_class_check;
ALTER TABLE audit.event ADD CONSTRAINT event_class_check
    CHECK (class IN ('data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app'));

COMMENT ON COLUMN audit.event.class IS 'data, auth, privilege, ddl, read, system or app (application events, audit.log_event)';

COMMENT ON COLUMN audit.event.schema_name IS 'Schema of the audited table (the partitioned root for partitions); NULL for application events';

COMMENT ON COLUMN audit.event.table_name IS 'Name of the audited table (the partitioned root for partitions); application events: the entity';

CREATE OR REPLACE FUNCTION audit.event_classes()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app']::text[] $$;

DO $parts$
DECLARE
    cls text := 'app';
BEGIN
    EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.event FOR VALUES IN (%L) PARTITION BY RANGE (event_time)',
                   'event_' || cls, cls);
    EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls,
                   format('Audit events of class %s, by month', cls));
    EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I DEFAULT',
                   'event_' || cls || '_default', 'event_' || cls);
    EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls || '_default',
                   format('Audit events of class %s whose month has no partition yet; audit.create_partitions() moves them', cls));
    PERFORM audit.create_event_indexes(format('audit.%I', 'event_' || cls || '_default')::regclass);
    PERFORM pg_catalog.pg_extension_config_dump(format('audit.%I', 'event_' || cls || '_default'), '');
    EXECUTE format('GRANT SELECT ON audit.%I, audit.%I TO audit_admin, audit_reader',
                   'event_' || cls, 'event_' || cls || '_default');
END
$parts$;

-- reading: app actions found by search(action => ...), entities in changes and record_history

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
            -- fixed list has it, and ddl, system and app (1.6), whose actions
            -- are open.  Partition pruning then skips the others.
            SELECT c.key INTO action_class FROM jsonb_each(known) c WHERE c.value ? action;
            conds := conds || format('e.class IN (%s)',
                                     array_to_string(ARRAY(SELECT quote_literal(x)
                                                             FROM unnest(ARRAY[action_class, 'ddl', 'system', 'app']) x
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
            -- an application entity (schema_name NULL, 1.6) goes by its name
            -- as given: Customer is not folded to customer
            IF parts[1] IS DISTINCT FROM table_name THEN
                name_cond := format('(e.table_name = $7 OR (e.schema_name IS NULL AND e.table_name = %L))',
                                    table_name);
            ELSE
                name_cond := 'e.table_name = $7';
            END IF;
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

CREATE OR REPLACE VIEW audit.changes WITH (security_barrier) AS
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
         WHERE e.action = 'INSERT' AND e.class = 'data'
        UNION ALL
        SELECT o.key, o.value, NULL::jsonb
          FROM jsonb_each(e.old_data) o
         WHERE e.action = 'DELETE' AND e.class = 'data'
        UNION ALL
        SELECT u.col, e.old_data -> u.col, e.new_data -> u.col
          FROM unnest(e.changed_columns) u(col)
         WHERE e.action = 'UPDATE' OR e.class = 'app'
       ) AS c(column_name, old_value, new_value)
 WHERE audit.audit_access_ok()
   AND ((e.class = 'data' AND e.action IN ('INSERT', 'UPDATE', 'DELETE'))
        OR (e.class = 'app' AND e.changed_columns IS NOT NULL));

COMMENT ON VIEW audit.changes IS
    'One row per changed column of each data event (INSERT has no old_value, DELETE no new_value, UPDATE lists changed_columns) and of each application event with old_value/new_value objects (schema_name NULL, table_name the entity)';

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
    IF record_history.table_name IS NULL THEN
        RAISE EXCEPTION 'invalid table: table_name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give schema_name and table_name of a table, or schema_name NULL and an application entity.';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- 1.6: schema_name NULL names an application entity (audit.log_event):
    -- its events are those whose record_id holds the key given
    IF record_history.schema_name IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
                   e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
                   e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
                   s.statement_text, e.table_identity, e.context, e.risk
              FROM audit.event e
              LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
             WHERE e.class = 'app' AND e.schema_name IS NULL
               AND e.table_name = record_history.table_name
               AND e.record_id @> rec
             ORDER BY e.id;
        RETURN;
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
    'The events of one record of a table given by its names as recorded (also for a dropped table), oldest first; schema_name NULL: the application events of an entity''s record (audit.log_event)';

-- application events

CREATE FUNCTION audit.log_event(action           text,
                                entity           text    DEFAULT NULL,
                                record_id        jsonb   DEFAULT NULL,
                                old_value        jsonb   DEFAULT NULL,
                                new_value        jsonb   DEFAULT NULL,
                                status           text    DEFAULT 'success',
                                risk             text    DEFAULT NULL,
                                detail           jsonb   DEFAULT NULL,
                                survive_rollback boolean DEFAULT false)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_log_event';
COMMENT ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) IS
    'audit_writer: record an application event (class app): action (LOGIN, LOGIN_FAILED, EXPORT ... or a custom upper-case action), entity (recorded as table_name), record_id, old_value/new_value, status, risk (NULL: the action''s default), detail; returns the event id, or NULL with survive_rollback => true (queued, kept even if the transaction rolls back)';

-- The documented application actions.  src/app_events.c has the same table
-- (the default risk given to an event that names none); test/app_events.sql
-- checks that the two agree.
CREATE FUNCTION audit.app_actions()
RETURNS TABLE (action text, default_risk text, counted_as text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('LOGIN', 'low', 'logins (user_activity), sessions with LOGOUT'),
           ('LOGIN_FAILED', 'medium', 'failed logins'),
           ('LOGOUT', 'low', 'sessions (paired with LOGIN by context.session_id)'),
           ('PASSWORD_CHANGE', 'medium', 'password changes'),
           ('PASSWORD_RESET', 'medium', NULL),
           ('MFA_ENROLL', 'medium', NULL),
           ('MFA_FAILED', 'medium', NULL),
           ('ACCOUNT_LOCKED', 'high', NULL),
           ('ACCOUNT_UNLOCKED', 'medium', NULL),
           ('API_KEY_CREATE', 'high', NULL),
           ('API_KEY_REVOKE', 'medium', NULL),
           ('PERMISSION_CHANGE', 'high', NULL),
           ('ROLE_CHANGE', 'high', NULL),
           ('SETTINGS_CHANGE', 'medium', NULL),
           ('EXPORT', 'medium', 'exports'),
           ('IMPORT', 'medium', NULL),
           ('REPORT_GENERATED', 'low', 'reports generated'),
           ('VIEW', 'low', 'records viewed'),
           ('CREATE', 'low', NULL),
           ('UPDATE', 'low', NULL),
           ('DELETE', 'medium', NULL)
$$;
COMMENT ON FUNCTION audit.app_actions() IS
    'The documented application actions of audit.log_event(), each with its default risk and what audit.user_activity() counts it as; other upper-case actions are accepted as custom actions (risk low)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) TO audit_writer;

-- user_activity counts application events (two new columns)

DROP FUNCTION audit.user_activity(text, timestamptz, timestamptz);

CREATE FUNCTION audit.user_activity(actor text, from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS TABLE (total_actions bigint, records_created bigint, records_modified bigint, records_deleted bigint,
               records_viewed bigint, exports bigint, logins bigint, failed_logins bigint, sessions bigint,
               avg_session interval, actions_by_table jsonb, first_activity timestamptz, last_activity timestamptz,
               reports_generated bigint, password_changes bigint)
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
                   e.schema_name, e.table_name, e.detail, e.context,
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
            UNION ALL
            -- 1.6: an application session, LOGIN -> LOGOUT (class app) paired
            -- by the context's session_id: the latest LOGIN of that session
            -- before the LOGOUT (a LOGOUT with no session_id or no LOGIN
            -- counts as a session of unknown length)
            SELECT l.event_time - (SELECT li.event_time FROM audit.event li
                                    WHERE li.actor = $1 AND li.class = 'app'
                                      AND li.action = 'LOGIN' AND li.status = 'success'
                                      AND li.context @> jsonb_build_object('session_id', l.context ->> 'session_id')
                                      AND li.id < l.id
                                    ORDER BY li.id DESC LIMIT 1) AS length
              FROM ev l
             WHERE l.class = 'app' AND l.action = 'LOGOUT' AND l.status = 'success'
        ), per_table AS (
            -- application entities (schema_name NULL) by their own name
            SELECT CASE WHEN t.schema_name IS NULL THEN t.table_name
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
               coalesce(sum(ev.nrows) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'), 0)::bigint
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'VIEW' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'
                                  AND (ev.action = 'COPY' OR ev.nrows >= $4))
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'EXPORT' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app') AND ev.action = 'LOGIN' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app')
                                  AND (ev.action = 'LOGIN_FAILED' OR (ev.action = 'LOGIN' AND ev.status = 'failure'))),
               (SELECT count(*) FROM ended),
               (SELECT avg(ended.length) FROM ended),
               coalesce((SELECT jsonb_object_agg(per_table.tbl, per_table.actions) FROM per_table), '{}'::jsonb),
               min(ev.event_time),
               max(ev.event_time),
               count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'REPORT_GENERATED' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'PASSWORD_CHANGE'
                                  AND ev.status = 'success')
          FROM ev
    $q$, conds)
        USING user_activity.actor, user_activity.from_time, user_activity.to_time, threshold;
END
$$;

COMMENT ON FUNCTION audit.user_activity(text, timestamptz, timestamptz) IS
    'What one actor did in a period (from_time inclusive, to_time exclusive): one row of counts, sessions, actions per table and application entity, first and last activity; application events count too (LOGIN, LOGIN_FAILED, LOGOUT, VIEW, EXPORT, REPORT_GENERATED, PASSWORD_CHANGE: audit.app_actions())';

-- digest columns

CREATE OR REPLACE FUNCTION audit.sync_column_options(tbl regclass, old_name text, new_name text)
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

CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
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

CREATE OR REPLACE FUNCTION audit.on_ddl_command_end()
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

DROP FUNCTION audit.enable(regclass, text[], text[], boolean, boolean);

CREATE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT NULL,
                             mask_columns text[] DEFAULT NULL,
                             log_reads boolean DEFAULT NULL,
                             baseline boolean DEFAULT false,
                             digest_columns text[] DEFAULT NULL,
                             sensitivity text DEFAULT NULL)
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
    flags := audit.table_flags(tbl);
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
                                               '{}'::jsonb));
    -- the rows the table holds now, one BASELINE event each (after the
    -- triggers: their lock keeps writers out until this transaction ends)
    IF baseline THEN
        PERFORM audit.record_baseline(tbl);
    END IF;
END
$$;

COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text[], text) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start; digest_columns (bytea, text, jsonb) are recorded as {"sha256": ..., "bytes": n} instead of their value; sensitivity (low, medium, high, critical; ''none'' removes it) raises every data and read event of the table to at least that risk';

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
       coalesce((audit.trigger_arguments(t.tgargs))[4]::text[], '{}') AS digest_columns,
       (SELECT substr(f, 13) FROM unnest((audit.trigger_arguments(t.tgargs))[3]::text[]) f
         WHERE f LIKE 'sensitivity:%' LIMIT 1)      AS sensitivity
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL audit.capture_state(c.oid) s
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;

COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if any audit trigger of the table or of a partition is missing, disabled or replica only, or an inheritance child is not audited (capture_state says which); log_reads: reads are recorded too; replicated_into: subscriptions applying changes to the table (captured only with ENABLE ALWAYS TRIGGER audit_ext_row); digest_columns: recorded as {"sha256", "bytes"} (1.6); sensitivity: the risk level every data and read event of the table has at least (1.6)';

REVOKE ALL ON FUNCTION audit.install_triggers(regclass,text[],text[],text[],text[]),
                       audit.enable(regclass,text[],text[],boolean,boolean,text[],text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text[],text) TO audit_admin;


-- ---------------------------------------------------------------------------
-- The application's end-user context (src/app_context.c): kept in the GUC
-- audit_ext.context, recorded as audit.event.context; searchable through a
-- partial GIN index per leaf partition.
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit.set_context(actor      text    DEFAULT NULL,
                                  client_ip  inet    DEFAULT NULL,
                                  session_id text    DEFAULT NULL,
                                  user_agent text    DEFAULT NULL,
                                  user_role  text    DEFAULT NULL,
                                  tenant     text    DEFAULT NULL,
                                  request_id text    DEFAULT NULL,
                                  extra      jsonb   DEFAULT NULL,
                                  is_local   boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_set_context';
COMMENT ON FUNCTION audit.set_context(text, inet, text, text, text, text, text, jsonb, boolean) IS
    'Set the end-user context recorded with every event (audit.event.context): client_ip, session_id, user_agent, user_role, tenant, request_id and extra''s keys; actor sets audit_ext.actor too; is_local => true (default) for this transaction only, as SET LOCAL';

CREATE FUNCTION audit.clear_context()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_clear_context';
COMMENT ON FUNCTION audit.clear_context() IS
    'Clear the end-user context (for the session, as SET audit_ext.context = '''')';

CREATE FUNCTION audit.current_context()
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_current_context';
COMMENT ON FUNCTION audit.current_context() IS
    'The end-user context set now (audit.set_context), as recorded with events; NULL when none';




-- the context indexes on the partitions that exist (made by create_event_indexes, as the
-- issue 19 block above defines it)
DO $ctxidx$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT i.indrelid::regclass FROM pg_catalog.pg_index i
                  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
                 WHERE t.relnamespace = 'audit'::regnamespace AND t.relname LIKE 'event\_%'
                   AND c.relname = t.relname || '_record_idx' LOOP
        PERFORM audit.create_event_indexes(part);
    END LOOP;
END
$ctxidx$;

DROP FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint);

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
    before_id  bigint      DEFAULT NULL,
    client_ip  inet        DEFAULT NULL,
    session_id text        DEFAULT NULL,
    tenant     text        DEFAULT NULL,
    min_risk   text        DEFAULT NULL)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
    cond text;
    ctx jsonb := '{}';
    risks text[];
BEGIN
    PERFORM audit.require_audit_role();
    risks := audit.risk_at_least(min_risk);
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'invalid max_rows %: must be between 1 and 10000', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Page through longer results with before_id, or use audit.export().';
    END IF;
    SELECT * INTO f FROM audit.search_filter(from_time, to_time, actor, action, class, table_name,
                                             record_id, status, query, before_id);
    cond := f.condition;
    -- 1.6: the application's context, through the GIN index on context
    -- (audit.create_event_indexes): a host address, a session, a tenant
    -- are containment; a network is a range test on the address
    IF session_id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('session_id', session_id);
    END IF;
    IF tenant IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('tenant', tenant);
    END IF;
    IF client_ip IS NOT NULL THEN
        IF masklen(client_ip) = 32 * (family(client_ip) - 3) THEN   -- a host: /32 or /128
            ctx := ctx || jsonb_build_object('client_ip', host(client_ip));
        ELSE
            cond := cond || ' AND e.context ? ''client_ip'' AND (e.context ->> ''client_ip'')::inet <<= $17';
        END IF;
    END IF;
    IF ctx <> '{}' THEN
        cond := cond || ' AND e.context @> $18';
    END IF;
    IF risks IS NOT NULL THEN
        cond := cond || ' AND e.risk = ANY ($19)';
    END IF;
    -- the page is chosen first; statement texts are joined to its rows only
    RETURN QUERY EXECUTE format(
        'SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,'
        '       e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,'
        '       e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,'
        '       s.statement_text, e.table_identity, e.context, e.risk'
        '  FROM (SELECT * FROM audit.event e WHERE %s ORDER BY e.id DESC LIMIT $13) e'
        '  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id'
        ' ORDER BY e.id DESC', cond)
        USING from_time, to_time, actor, action, class, f.schema_part, f.table_part,
              record_id, status, f.text_pattern, f.json_pattern, before_id, max_rows, f.statement_ids,
              f.id_from, f.id_to, client_ip, ctx, risks;
END
$$;
COMMENT ON FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint, inet, text, text, text) IS
    'Search the trail, newest first: every filter optional; at most max_rows (1..10000) rows; next page with before_id => last id seen; client_ip, session_id, tenant filter by the application''s context, min_risk by risk level';



-- ---------------------------------------------------------------------------
-- Risk levels (src/risk.c, sql/src/risk.sql)
-- ---------------------------------------------------------------------------
CREATE TABLE audit.risk_rules (
    class      text COLLATE "C" NOT NULL,
    action     text COLLATE "C",
    table_name text COLLATE "C",
    risk       text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL DEFAULT CURRENT_USER,
    CONSTRAINT risk_rules_risk_check CHECK (risk IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT risk_rules_class_check
        CHECK (class IN ('data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app')),
    CONSTRAINT risk_rules_key UNIQUE NULLS NOT DISTINCT (class, action, table_name)
);
COMMENT ON TABLE audit.risk_rules IS
    'Risk rules: the level of events of a class, optionally of one action and/or one table (table or schema.table; an application entity); the most specific rule wins over the built-in default. Managed with audit.set_risk/remove_risk';
COMMENT ON COLUMN audit.risk_rules.action IS 'The action the rule is for; NULL: every action of the class';
COMMENT ON COLUMN audit.risk_rules.table_name IS 'The table (table or schema.table) or application entity the rule is for; NULL: every one';

SELECT pg_catalog.pg_extension_config_dump('audit.risk_rules', '');

CREATE FUNCTION audit.risk_rules_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'audit_risk_rules_changed';
COMMENT ON FUNCTION audit.risk_rules_changed() IS
    'Internal: statement trigger of audit.risk_rules; every backend reads the rules again';

CREATE TRIGGER risk_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON audit.risk_rules
    FOR EACH STATEMENT EXECUTE FUNCTION audit.risk_rules_changed();

CREATE FUNCTION audit.risk_cache_loads()
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_risk_cache_loads';
COMMENT ON FUNCTION audit.risk_cache_loads() IS
    'How many times this backend has read audit.risk_rules (once, then after each change; never per event)';

-- The levels at or above one, for filters (search, alert rules).
CREATE FUNCTION audit.risk_at_least(min_risk text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    levels text[] := ARRAY['low', 'medium', 'high', 'critical'];
    i      integer := array_position(levels, min_risk);
BEGIN
    IF min_risk IS NULL THEN
        RETURN NULL;
    END IF;
    IF i IS NULL THEN
        RAISE EXCEPTION 'invalid min_risk "%": not a risk level', min_risk
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Risk levels: low, medium, high, critical.';
    END IF;
    RETURN levels[i:];
END
$$;
COMMENT ON FUNCTION audit.risk_at_least(text) IS
    'The risk levels at or above min_risk (low, medium, high, critical); 22023 for another value';

CREATE FUNCTION audit.set_risk(class      text,
                               action     text DEFAULT NULL,
                               table_name text DEFAULT NULL,
                               risk       text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role(true);
    IF set_risk.class IS NULL OR NOT set_risk.class OPERATOR(pg_catalog.=) ANY (audit.event_classes()) THEN
        RAISE EXCEPTION 'invalid class "%": not an event class', coalesce(set_risk.class, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'class must be one of: ' || array_to_string(audit.event_classes(), ', ') || '.';
    END IF;
    IF set_risk.action OPERATOR(pg_catalog.=) '' OR set_risk.table_name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'invalid action or table_name "": leave it NULL for every one'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_risk.risk IS NULL OR NOT set_risk.risk OPERATOR(pg_catalog.=) ANY (ARRAY['low', 'medium', 'high', 'critical']) THEN
        RAISE EXCEPTION 'invalid risk "%": not a risk level', coalesce(set_risk.risk, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Risk levels: low, medium, high, critical.';
    END IF;
    INSERT INTO audit.risk_rules AS r (class, action, table_name, risk, created_by)
    VALUES (set_risk.class, set_risk.action, set_risk.table_name, set_risk.risk, audit.session_role()::text)
    ON CONFLICT ON CONSTRAINT risk_rules_key
    DO UPDATE SET risk = EXCLUDED.risk, created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by;
END
$$;
COMMENT ON FUNCTION audit.set_risk(text, text, text, text) IS
    'audit_admin: the risk level of events of a class, optionally of one action and/or table (most specific rule wins; replaces a rule with the same class, action and table)';

CREATE FUNCTION audit.remove_risk(class      text,
                                  action     text DEFAULT NULL,
                                  table_name text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.risk_rules r
     WHERE r.class OPERATOR(pg_catalog.=) remove_risk.class
       AND r.action IS NOT DISTINCT FROM remove_risk.action
       AND r.table_name IS NOT DISTINCT FROM remove_risk.table_name;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;
COMMENT ON FUNCTION audit.remove_risk(text, text, text) IS
    'audit_admin: remove the risk rule of exactly this class, action and table (events fall back to a less specific rule or the default); false when there was none';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON audit.risk_rules FROM PUBLIC;
GRANT SELECT ON audit.risk_rules TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.set_risk(text, text, text, text),
                       audit.remove_risk(text, text, text),
                       audit.risk_rules_changed(),
                       audit.risk_at_least(text),
                       audit.risk_cache_loads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.set_risk(text, text, text, text),
                          audit.remove_risk(text, text, text) TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.risk_at_least(text),
                          audit.risk_cache_loads() TO audit_admin, audit_reader;

-- alert rules: min_risk, grouping by the application's context
ALTER TABLE audit.alert_rules ADD COLUMN min_risk text COLLATE "C",
    ADD CONSTRAINT alert_rules_min_risk_check CHECK (min_risk IN ('low', 'medium', 'high', 'critical'));

CREATE OR REPLACE FUNCTION audit.alert_group_keys()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['client_addr', 'actor', 'db_user', 'session_user', 'table', 'application_name', 'database', 'action',
                    'client_ip', 'session_id', 'tenant']::text[] $$;
COMMENT ON FUNCTION audit.alert_group_keys() IS 'The values group_by of an alert rule may take (client_ip, session_id, tenant: the application''s context)';

CREATE OR REPLACE FUNCTION audit.alert_key(group_by text, e audit.event)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(CASE group_by
                        WHEN 'client_addr' THEN coalesce(host(e.client_addr), 'local')
                        WHEN 'actor' THEN e.actor
                        WHEN 'db_user' THEN e.db_user
                        WHEN 'session_user' THEN e."session_user"
                        WHEN 'table' THEN CASE WHEN e.table_name IS NOT NULL
                                               THEN coalesce(e.schema_name || '.', '') || e.table_name END
                        WHEN 'application_name' THEN e.application_name
                        WHEN 'database' THEN coalesce(e.detail ->> 'database', current_database())
                        WHEN 'action' THEN e.action
                        -- 1.6: the application's context (audit.set_context);
                        -- client_ip falls back to the connection's address
                        WHEN 'client_ip' THEN coalesce(e.context ->> 'client_ip', host(e.client_addr), 'local')
                        WHEN 'session_id' THEN e.context ->> 'session_id'
                        WHEN 'tenant' THEN e.context ->> 'tenant'
                    END, '')
$$;
COMMENT ON FUNCTION audit.alert_key(text, audit.event) IS
    'Internal: the grouping key of an event for a rule''s group_by ('''' without group_by)';

CREATE OR REPLACE FUNCTION audit.alert_matches(r audit.alert_rules, e audit.event)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.class = r.class
       AND (r.action IS NULL OR e.action = r.action)
       AND (r.status IS NULL OR e.status = r.status)
       AND (r.actor IS NULL OR e.actor = r.actor)
       AND (r.table_name IS NULL OR r.table_name = e.table_name
            OR r.table_name = e.schema_name || '.' || e.table_name)
       AND (r.min_rows IS NULL OR audit.event_rows(e.detail) >= r.min_rows)
       AND (r.min_risk IS NULL OR e.risk = ANY (audit.risk_at_least(r.min_risk)))
       AND (r.query IS NULL
            OR (e.action || E'\n' || coalesce(e.detail::text, '') || E'\n' || coalesce((SELECT s.statement_text FROM audit.statement s
                                 WHERE s.statement_id = e.statement_id), '')) ~* r.query)
       AND (r.outside_hours IS NULL OR NOT audit.within_hours(e.event_time, r.outside_hours, r.timezone))
$$;
COMMENT ON FUNCTION audit.alert_matches(audit.alert_rules, audit.event) IS
    'Internal: whether an event matches a rule''s filters; query is a case-insensitive regular expression over action, detail and statement text (one line each)';


DROP FUNCTION audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text);

CREATE FUNCTION audit.create_alert_rule(
    name          text,
    class         text,
    action        text     DEFAULT NULL,
    threshold     integer  DEFAULT 1,
    within        interval DEFAULT NULL,
    group_by      text     DEFAULT NULL,
    severity      text     DEFAULT 'medium',
    cooldown      interval DEFAULT '10 minutes',
    min_rows      bigint   DEFAULT NULL,
    outside_hours text     DEFAULT NULL,
    query         text     DEFAULT NULL,
    table_name    text     DEFAULT NULL,
    actor         text     DEFAULT NULL,
    status        text     DEFAULT NULL,
    timezone      text     DEFAULT NULL,
    channel       text     DEFAULT 'audit_alerts',
    enabled       boolean  DEFAULT true,
    description   text     DEFAULT NULL,
    min_risk      text     DEFAULT NULL)
RETURNS audit.alert_rules
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r audit.alert_rules;
BEGIN
    PERFORM audit.require_audit_role(true);
    r.name := create_alert_rule.name;
    r.class := create_alert_rule.class;
    r.action := create_alert_rule.action;
    r.table_name := create_alert_rule.table_name;
    r.actor := create_alert_rule.actor;
    r.status := create_alert_rule.status;
    r.query := create_alert_rule.query;
    r.min_rows := create_alert_rule.min_rows;
    r.threshold := create_alert_rule.threshold;
    r.within := create_alert_rule.within;
    r.group_by := create_alert_rule.group_by;
    r.outside_hours := create_alert_rule.outside_hours;
    r.timezone := create_alert_rule.timezone;
    r.severity := create_alert_rule.severity;
    r.cooldown := create_alert_rule.cooldown;
    r.channel := create_alert_rule.channel;
    r.enabled := coalesce(create_alert_rule.enabled, true);
    r.builtin := false;
    r.description := create_alert_rule.description;
    r.min_risk := create_alert_rule.min_risk;
    PERFORM audit.risk_at_least(r.min_risk);   -- 22023 for a level that is not one
    r.created_at := now();
    r.created_by := CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END;
    PERFORM audit.check_alert_rule(r);
    IF EXISTS (SELECT 1 FROM audit.alert_rules x WHERE x.name = r.name) THEN
        RAISE EXCEPTION 'alert rule "%" already exists', r.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with audit.drop_alert_rule(), or choose another name.';
    END IF;
    INSERT INTO audit.alert_rules SELECT r.*;
    PERFORM audit.log_system_event('CREATE ALERT RULE', jsonb_build_object('rule', r.name) || (to_jsonb(r) - 'created_at' - 'created_by' - 'builtin'));
    RETURN r;
END
$$;
COMMENT ON FUNCTION audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text, text) IS
    'audit_admin: add an alert rule; fires when threshold matching events (class, action, table_name, actor, status, query regex, min_rows, outside_hours, min_risk) happen within "within" per group_by key; one alert per rule and key per cooldown, sent with NOTIFY on channel';


-- reports: recent_high_priority by risk and open alerts, sessions of the
-- application, events by risk
CREATE FUNCTION audit.open_alert_event_ids()
RETURNS SETOF bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT audit.audit_access_ok() THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT x.id FROM audit.alerts a
                   CROSS JOIN LATERAL (VALUES (a.first_event_id), (a.last_event_id)) x(id)
                  WHERE a.acknowledged_at IS NULL AND x.id IS NOT NULL;
END
$$;
COMMENT ON FUNCTION audit.open_alert_event_ids() IS
    'Internal (audit.recent_high_priority): the first and last event ids of the alerts not yet acknowledged; nothing for a role without access to the trail';


CREATE OR REPLACE VIEW audit.recent_high_priority WITH (security_barrier) AS
SELECT e.id,
       e.event_time,
       e.class,
       e.action,
       e.status,
       CASE
           WHEN e.class = 'app' THEN 'application event'
           WHEN e.class = 'auth' THEN 'failed login'
           WHEN e.class = 'privilege' THEN 'privilege change'
           WHEN e.class = 'ddl' THEN 'schema change'
           WHEN e.class = 'system' THEN 'system event'
           WHEN e.class = 'read' AND e.status = 'success' THEN 'read'
           WHEN e.class = 'read' THEN 'denied read'
           WHEN e.action = 'TRUNCATE' AND e.status = 'success' THEN 'table truncated'
           WHEN e.status = 'success' THEN 'change'
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
       s.statement_text,
       e.risk,
       e.context
  FROM audit.event e
  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
 WHERE audit.audit_access_ok()
   AND e.event_time >= pg_catalog.now() - interval '7 days'
   AND (   e.risk IN ('high', 'critical')
        OR e.id IN (SELECT audit.open_alert_event_ids())
        OR (e.risk IS NULL
            AND (   (e.class = 'auth' AND (e.status = 'failure' OR e.action = 'LOGIN_FAILED'))
                 OR e.class IN ('privilege', 'ddl', 'system')
                 OR (e.class = 'data' AND (e.action = 'TRUNCATE' OR e.status = 'failure'))
                 OR (e.class = 'read' AND e.status = 'failure'))))
 ORDER BY e.id DESC;
COMMENT ON VIEW audit.recent_high_priority IS
    'Events of the last 7 days that need attention, newest first: risk high or critical, and the events of alerts not yet acknowledged (events captured before 1.6: failed logins, privilege and schema changes, system events, TRUNCATEs, failed changes, denied reads)';


CREATE OR REPLACE FUNCTION audit.user_activity(actor text, from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS TABLE (total_actions bigint, records_created bigint, records_modified bigint, records_deleted bigint,
               records_viewed bigint, exports bigint, logins bigint, failed_logins bigint, sessions bigint,
               avg_session interval, actions_by_table jsonb, first_activity timestamptz, last_activity timestamptz,
               reports_generated bigint, password_changes bigint)
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
                   e.schema_name, e.table_name, e.detail, e.context,
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
            UNION ALL
            -- 1.6: an application session, LOGIN -> LOGOUT (class app) paired
            -- by the context's session_id: the latest LOGIN of that session
            -- before the LOGOUT (a LOGOUT with no session_id or no LOGIN
            -- counts as a session of unknown length)
            SELECT l.event_time - (SELECT li.event_time FROM audit.event li
                                    WHERE li.actor = $1 AND li.class = 'app'
                                      AND li.action = 'LOGIN' AND li.status = 'success'
                                      AND li.context @> jsonb_build_object('session_id', l.context ->> 'session_id')
                                      AND li.id < l.id
                                    ORDER BY li.id DESC LIMIT 1) AS length
              FROM ev l
             WHERE l.class = 'app' AND l.action = 'LOGOUT' AND l.status = 'success'
        ), per_table AS (
            -- application entities (schema_name NULL) by their own name
            SELECT CASE WHEN t.schema_name IS NULL THEN t.table_name
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
               coalesce(sum(ev.nrows) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'), 0)::bigint
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'VIEW' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'
                                  AND (ev.action = 'COPY' OR ev.nrows >= $4))
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'EXPORT' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app') AND ev.action = 'LOGIN' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app')
                                  AND (ev.action = 'LOGIN_FAILED' OR (ev.action = 'LOGIN' AND ev.status = 'failure'))),
               (SELECT count(*) FROM ended),
               (SELECT avg(ended.length) FROM ended),
               coalesce((SELECT jsonb_object_agg(per_table.tbl, per_table.actions) FROM per_table), '{}'::jsonb),
               min(ev.event_time),
               max(ev.event_time),
               count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'REPORT_GENERATED' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'PASSWORD_CHANGE'
                                  AND ev.status = 'success')
          FROM ev
    $q$, conds)
        USING user_activity.actor, user_activity.from_time, user_activity.to_time, threshold;
END
$$;
COMMENT ON FUNCTION audit.user_activity(text, timestamptz, timestamptz) IS
    'What one actor did in a period (from_time inclusive, to_time exclusive): one row of counts, sessions, actions per table and application entity, first and last activity; application events count too (LOGIN, LOGIN_FAILED, LOGOUT, VIEW, EXPORT, REPORT_GENERATED, PASSWORD_CHANGE: audit.app_actions())';


ALTER TYPE audit.activity_summary_row ADD ATTRIBUTE events_by_risk jsonb;

CREATE OR REPLACE FUNCTION audit.activity_summary(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
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
            SELECT e.class, e.action, e.actor, e.schema_name, e.table_name, e.risk,
                   GROUPING(e.class, e.action) AS g_ca,
                   GROUPING(e.actor) AS g_a,
                   GROUPING(e.schema_name, e.table_name) AS g_t,
                   GROUPING(e.risk) AS g_r,
                   count(*) AS n,
                   count(*) FILTER (WHERE e.status = 'failure') AS failed
              FROM audit.event e
             WHERE %s
             GROUP BY GROUPING SETS ((e.class, e.action), (e.actor), (e.schema_name, e.table_name), (e.risk), ())
        )
        SELECT $1, $2,
               coalesce((SELECT g.n FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 3 AND g.g_r = 1), 0),
               coalesce((SELECT g.failed FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 3 AND g.g_r = 1), 0),
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
                 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'm')),
               -- 1.6: events per risk level (events captured before 1.6 have none)
               coalesce((SELECT jsonb_object_agg(coalesce(g.risk, 'none'), g.n)
                           FROM g WHERE g.g_r = 0 AND g.g_ca = 3), '{}'::jsonb)
    $q$, CASE WHEN cardinality(conds) = 0 THEN 'true' ELSE array_to_string(conds, ' AND ') END)
        USING from_time, to_time;
END
$$;
COMMENT ON FUNCTION audit.activity_summary(timestamptz, timestamptz) IS
    'Dashboard figures for a period (from_time inclusive, to_time exclusive): totals, failures, events by class and action, top 10 actors and tables, storage used by the whole trail, events by risk level';



-- end issue 20

-- ===========================================================================
-- issue 21: reports (typed report functions, rendered reports and dashboard,
-- scheduled reports).  The same definitions as sql/src/reports.sql,
-- sql/src/report_render.sql and the view in sql/src/security_events.sql.

-- audit.user_activity: a new last column, reports_generated
DROP FUNCTION audit.user_activity(text, timestamptz, timestamptz);
CREATE FUNCTION audit.user_activity(actor text, from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS TABLE (total_actions bigint, records_created bigint, records_modified bigint, records_deleted bigint,
               records_viewed bigint, exports bigint, logins bigint, failed_logins bigint, sessions bigint,
               avg_session interval, actions_by_table jsonb, first_activity timestamptz, last_activity timestamptz,
               reports_generated bigint)
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
               max(ev.event_time),
               count(*) FILTER (WHERE ev.class = 'system' AND ev.action = 'REPORT_GENERATED')
          FROM ev
    $q$, conds)
        USING user_activity.actor, user_activity.from_time, user_activity.to_time, threshold;
END
$$;
COMMENT ON FUNCTION audit.user_activity(text, timestamptz, timestamptz) IS
    'What one actor did in a period (from_time inclusive, to_time exclusive): one row of counts, sessions, actions per table, first and last activity, reports generated';

-- ===========================================================================
-- Compliance reports (issue 21): one typed set-returning function per kind,
-- the same parameters for all, readable by the audit roles only.  Each kind
-- reads the events of its scope (audit.report_condition(): a WHERE condition
-- over "audit.event e" with fixed parameters, so partition pruning, the BRIN
-- index on event_time and the (actor, id) index apply); audit.render_report()
-- (sql/src/report_render.sql) charts the same scope.
-- ===========================================================================

CREATE TABLE audit.report_kinds (
    kind        text COLLATE "C" PRIMARY KEY,
    title       text NOT NULL,
    function    text NOT NULL,
    description text NOT NULL,
    position    integer NOT NULL
);
COMMENT ON TABLE audit.report_kinds IS
    'The report kinds (for a UI''s drop-down): kind, title, the typed function that returns its rows, what it shows';
COMMENT ON COLUMN audit.report_kinds.kind IS 'Name given to audit.render_report() and audit.schedule_report()';
COMMENT ON COLUMN audit.report_kinds.title IS 'Title of the rendered report';
COMMENT ON COLUMN audit.report_kinds.function IS 'The typed function returning the report''s detail rows';
COMMENT ON COLUMN audit.report_kinds.description IS 'What the report shows';
COMMENT ON COLUMN audit.report_kinds.position IS 'Order in a drop-down';
INSERT INTO audit.report_kinds VALUES
    ('user_access', 'User Access Report', 'audit.report_user_access',
     'Who accessed what, when: logins (database, application, client), failed logins, logouts and audited reads', 1),
    ('data_changes', 'Data Change Report', 'audit.report_data_changes',
     'Every modification of audited tables with its before and after value, one row per changed field; refused changes', 2),
    ('security_events', 'Security Event Report', 'audit.report_security_events',
     'Login attempts, failed logins, privilege and role changes, denied attempts, auditing switched off, with risk', 3),
    ('exports', 'Data Export Report', 'audit.report_exports',
     'Data exports by user: reads returning at least audit_ext.export_threshold rows and COPY TO, with row counts', 4),
    ('admin_activity', 'Administrative Activity Report', 'audit.report_admin_activity',
     'Administrative actions: DDL, privileges, auditing enabled or disabled, retention and alert-rule changes, protection bypasses', 5),
    ('system_access', 'System Access Report', 'audit.report_system_access',
     'Access by application name, database role and client address: sessions, failed logins, reads, changes', 6);

-- The risk of an event.  INTERIM (issue 20 adds audit.event.risk, written at
-- capture): until then it is derived here, in one place, from the event's own
-- "risk" detail (what capture already records for critical events) and its
-- class, action and status.  Once issue 20 lands, the reports read e.risk
-- instead: replace the calls of audit.report_risk(...) by e.risk.
CREATE FUNCTION audit.report_risk(class text, action text, status text, detail jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN detail ->> 'risk' IN ('low', 'medium', 'high', 'critical') THEN detail ->> 'risk'
        WHEN (detail ->> 'grants_superuser') = 'true' OR (detail ->> 'audit_protection_off') = 'true'
             OR (detail ->> 'capture_off') = 'true' THEN 'critical'
        WHEN class = 'privilege' THEN 'high'
        WHEN class = 'auth' AND (action = 'LOGIN_FAILED' OR status = 'failure') THEN 'medium'
        WHEN status = 'failure' THEN 'medium'
        WHEN class IN ('ddl', 'system') THEN 'medium'
        ELSE 'low'
    END
$$;
COMMENT ON FUNCTION audit.report_risk(text, text, text, jsonb) IS
    'Internal: risk of an event for the reports (low, medium, high, critical), derived until audit.event.risk exists';

-- audit_ext.export_threshold as a number (rows of a read that make it an export).
CREATE FUNCTION audit.export_threshold()
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    setting text := current_setting('audit_ext.export_threshold', true);
BEGIN
    IF coalesce(btrim(setting), '') = '' THEN
        RETURN 1000;
    ELSIF btrim(setting) ~ '^[0-9]{1,18}$' AND btrim(setting)::bigint > 0 THEN
        RETURN btrim(setting)::bigint;
    END IF;
    RAISE EXCEPTION 'invalid audit_ext.export_threshold "%": must be a positive number of rows', setting
        USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION audit.export_threshold() IS
    'Internal: audit_ext.export_threshold (default 1000) as a number; 22023 when it is not a positive number';

-- Checks the common report arguments and returns the WHERE condition over
-- "audit.event e" of the kind's scope, with fixed parameters:
--   $1 from_time  $2 to_time  $3 actors  $4 export threshold
CREATE FUNCTION audit.report_condition(kind text, from_time timestamptz, to_time timestamptz,
                                       actors text[], include_success boolean, include_failures boolean)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conds text[] := ARRAY['e.event_time >= $1', 'e.event_time < $2'];
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'invalid report period: from_time and to_time must be given and finite'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A report covers [from_time, to_time), e.g. from_time => ''2026-01-01'', to_time => ''2026-02-01''.';
    END IF;
    PERFORM audit.check_time_range(from_time, to_time);
    IF actors IS NOT NULL THEN
        IF cardinality(actors) = 0 OR array_position(actors, NULL) IS NOT NULL OR '' = ANY (actors) THEN
            RAISE EXCEPTION 'invalid actors %: must be NULL (all actors) or a list of non-empty names', actors
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        conds := conds || 'e.actor = ANY ($3)'::text;
    END IF;
    IF include_success IS NULL OR include_failures IS NULL THEN
        RAISE EXCEPTION 'invalid include_success/include_failures: must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF NOT include_success AND NOT include_failures THEN
        RAISE EXCEPTION 'invalid report filter: include_success and include_failures are both false'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A report shows successes, failures or both.';
    ELSIF NOT include_success THEN
        conds := conds || 'e.status = ''failure'''::text;
    ELSIF NOT include_failures THEN
        conds := conds || 'e.status = ''success'''::text;
    END IF;
    -- the scope of each kind.  Issue 20 (application events, class "app"):
    -- add its account/MFA/API-key events to security_events and its EXPORT
    -- events to exports here.
    conds := conds || CASE kind
        WHEN 'user_access' THEN $c$e.class IN ('auth', 'read')$c$
        WHEN 'data_changes' THEN $c$e.class = 'data' AND e.action IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')$c$
        WHEN 'security_events' THEN
            $c$(   (e.class = 'auth' AND e.action <> 'LOGOUT')
                OR e.class = 'privilege'
                OR e.status = 'failure'
                OR (e.class IN ('ddl', 'system')
                    AND (e.detail ? 'risk' OR e.detail ? 'audit_protection_off' OR e.detail ? 'capture_off'
                         OR e.detail ? 'audit_trigger_disabled')))$c$
        WHEN 'exports' THEN
            $c$e.class = 'read' AND (e.action = 'COPY'
                OR (CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END) >= $4)$c$
        WHEN 'admin_activity' THEN $c$e.class IN ('ddl', 'privilege', 'system')$c$
        WHEN 'system_access' THEN $c$true$c$
    END;
    IF kind IS NULL OR NOT EXISTS (SELECT 1 FROM audit.report_kinds k WHERE k.kind = report_condition.kind) THEN
        RAISE EXCEPTION 'invalid report kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are listed in audit.report_kinds: '
                         || (SELECT string_agg(k.kind, ', ' ORDER BY k.position) FROM audit.report_kinds k) || '.';
    END IF;
    RETURN array_to_string(conds, ' AND ');
END
$$;
COMMENT ON FUNCTION audit.report_condition(text, timestamptz, timestamptz, text[], boolean, boolean) IS
    'Internal: check the report arguments and build the WHERE condition of a report kind''s events ($1 from, $2 to, $3 actors, $4 export threshold)';

CREATE FUNCTION audit.report_user_access(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                         include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, access text,
               class text, action text, status text, database text, application_name text,
               client_addr inet, schema_name text, table_name text, rows bigint, reason text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text,
               CASE WHEN e.class = 'read' AND e.status = 'failure' THEN 'read denied'
                    WHEN e.class = 'read' AND e.action = 'COPY' THEN 'copy'
                    WHEN e.class = 'read' THEN 'read'
                    WHEN e.action = 'LOGOUT' THEN 'logout'
                    WHEN e.action = 'LOGIN_FAILED' OR e.status = 'failure' THEN 'login failed'
                    ELSE 'login' END,
               e.class::text, e.action::text, e.status::text,
               coalesce(e.detail ->> 'database', pg_catalog.current_database()::text),
               e.application_name::text, e.client_addr, e.schema_name::text, e.table_name::text,
               CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END,
               e.detail ->> 'reason'
          FROM audit.event e
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('user_access', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_user_access(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: who accessed what, when (logins with database, application and client, failed logins, logouts, audited reads); [from_time, to_time), actors NULL = all';

CREATE FUNCTION audit.report_data_changes(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                          include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, schema_name text,
               table_name text, record_id text, action text, status text, column_name text,
               old_value text, new_value text, txid bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    -- One row per changed field, as audit.changes shows them (INSERT: the
    -- keys of new_data, DELETE: of old_data, UPDATE: changed_columns, each
    -- with its old and new value); a TRUNCATE or a refused change is one row
    -- without a field.  One unnest per event (a UNION of three function
    -- scans per event, as in the view, cost three times as much on a million
    -- events), in id order straight from the id indexes (no sort).
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text, e.schema_name::text, e.table_name::text,
               e.record_id::text, e.action::text, e.status::text, k.col,
               (e.old_data -> k.col) #>> '{}', (e.new_data -> k.col) #>> '{}', e.txid
          FROM audit.event e
          LEFT JOIN LATERAL unnest(CASE WHEN e.status = 'success' AND e.action = 'UPDATE' THEN e.changed_columns
                                        WHEN e.status = 'success' AND e.action IN ('INSERT', 'DELETE')
                                        THEN ARRAY(SELECT jsonb_object_keys(coalesce(e.new_data, e.old_data))) END)
                    AS k(col) ON true
         WHERE %s
         ORDER BY e.id
    $q$, audit.report_condition('data_changes', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_data_changes(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: every modification with before and after per field (one row per changed field; TRUNCATE and refused changes one row without a field)';

CREATE FUNCTION audit.report_security_events(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                             include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, category text, risk text,
               class text, action text, status text, object text, application_name text, client_addr inet,
               reason text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    -- risk: audit.report_risk() until issue 20's audit.event.risk exists
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text,
               CASE WHEN e.class = 'auth' AND (e.action = 'LOGIN_FAILED' OR e.status = 'failure') THEN 'failed login'
                    WHEN e.class = 'auth' AND e.action = 'LOGIN' THEN 'login'
                    WHEN e.class = 'auth' THEN lower(e.action)
                    WHEN e.class = 'privilege' AND e.action IN ('CREATE ROLE', 'ALTER ROLE', 'DROP ROLE',
                                                                'GRANT ROLE', 'REVOKE ROLE') THEN 'role change'
                    WHEN e.class = 'privilege' THEN 'privilege change'
                    WHEN e.status = 'failure' THEN 'denied'
                    ELSE 'auditing switched off' END,
               audit.report_risk(e.class, e.action, e.status, e.detail),
               e.class::text, e.action::text, e.status::text,
               coalesce(CASE WHEN e.table_name IS NOT NULL THEN
                            coalesce(e.schema_name || '.', '') || e.table_name END,
                        e.detail ->> 'role',
                        CASE WHEN e.detail ? 'grantees' THEN 'to ' || (e.detail ->> 'grantees') END),
               e.application_name::text, e.client_addr,
               coalesce(e.detail ->> 'reason', e.detail ->> 'error')
          FROM audit.event e
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('security_events', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_security_events(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: login attempts, failed logins, privilege and role changes, denied attempts, auditing switched off, each with its risk';

CREATE FUNCTION audit.report_exports(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                     include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, schema_name text,
               table_name text, action text, status text, rows bigint, rows_read bigint,
               application_name text, client_addr inet, statement_text text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text, e.schema_name::text, e.table_name::text,
               e.action::text, e.status::text,
               CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END,
               CASE WHEN e.detail ->> 'rows_read' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows_read')::bigint END,
               e.application_name::text, e.client_addr, s.statement_text
          FROM audit.event e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('exports', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors, audit.export_threshold();
END
$$;
COMMENT ON FUNCTION audit.report_exports(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: data exports by user (audited reads of at least audit_ext.export_threshold rows, COPY TO) with row counts';

CREATE FUNCTION audit.report_admin_activity(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                            include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, category text,
               class text, action text, status text, object text, statement_text text, detail text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text,
               CASE WHEN (e.detail ->> 'audit_protection_off') = 'true' OR (e.detail ->> 'capture_off') = 'true'
                         OR (e.detail ->> 'audit_trigger_disabled') = 'true' THEN 'protection bypass'
                    WHEN e.action IN ('ENABLE AUDIT', 'DISABLE AUDIT') THEN 'auditing'
                    WHEN e.class = 'system' AND e.action IN ('SET RETENTION', 'REMOVE RETENTION', 'LEGAL HOLD',
                                                             'RELEASE LEGAL HOLD', 'PRUNE', 'RESTORE ARCHIVE')
                         THEN 'retention'
                    WHEN e.class = 'system' AND e.action LIKE '%%ALERT%%' THEN 'alert rules'
                    WHEN e.class = 'system' AND e.action LIKE '%%REPORT%%' THEN 'reports'
                    WHEN e.class = 'privilege' THEN 'privileges'
                    WHEN e.class = 'ddl' THEN 'schema change'
                    ELSE 'system' END,
               e.class::text, e.action::text, e.status::text,
               coalesce(CASE WHEN e.table_name IS NOT NULL THEN
                            coalesce(e.schema_name || '.', '') || e.table_name END,
                        e.detail ->> 'role', e.detail ->> 'rule', e.detail ->> 'object'),
               s.statement_text, e.detail::text
          FROM audit.event e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('admin_activity', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_admin_activity(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: administrative actions (DDL, privileges, auditing enabled/disabled, retention, alert rules, reports, protection bypasses)';

-- count(DISTINCT x) of a text that runs in parallel and hashes (src/reports.c;
-- audit.report_system_access counts each group's distinct actors with it).
-- Its support functions take or return internal: SQL cannot call them with a
-- state of its own, and each refuses to run outside an aggregate.
CREATE FUNCTION audit.count_distinct_trans(internal, text)
RETURNS internal
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_count_distinct_trans';
CREATE FUNCTION audit.count_distinct_combine(internal, internal)
RETURNS internal
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_count_distinct_combine';
CREATE FUNCTION audit.count_distinct_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_count_distinct_serialize';
CREATE FUNCTION audit.count_distinct_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_count_distinct_deserialize';
CREATE FUNCTION audit.count_distinct_final(internal)
RETURNS bigint
LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_count_distinct_final';
COMMENT ON FUNCTION audit.count_distinct_trans(internal, text) IS 'Internal: transition function of audit.count_distinct_text';
COMMENT ON FUNCTION audit.count_distinct_combine(internal, internal) IS 'Internal: combine function of audit.count_distinct_text';
COMMENT ON FUNCTION audit.count_distinct_serialize(internal) IS 'Internal: serialization function of audit.count_distinct_text';
COMMENT ON FUNCTION audit.count_distinct_deserialize(bytea, internal) IS 'Internal: deserialization function of audit.count_distinct_text';
COMMENT ON FUNCTION audit.count_distinct_final(internal) IS 'Internal: final function of audit.count_distinct_text';
CREATE AGGREGATE audit.count_distinct_text(text) (
    SFUNC = audit.count_distinct_trans,
    STYPE = internal,
    COMBINEFUNC = audit.count_distinct_combine,
    SERIALFUNC = audit.count_distinct_serialize,
    DESERIALFUNC = audit.count_distinct_deserialize,
    FINALFUNC = audit.count_distinct_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE audit.count_distinct_text(text) IS
    'count(DISTINCT x) of a text, exact, by hashing and in parallel (NULLs not counted); used by audit.report_system_access';

-- audit.count_distinct_text() (report_system_access's distinct actors) is
-- the extension's own
REVOKE ALL ON FUNCTION audit.count_distinct_trans(internal, text),
                       audit.count_distinct_combine(internal, internal),
                       audit.count_distinct_serialize(internal),
                       audit.count_distinct_deserialize(bytea, internal),
                       audit.count_distinct_final(internal),
                       audit.count_distinct_text(text) FROM PUBLIC;

CREATE FUNCTION audit.report_system_access(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                           include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (application_name text, db_user text, client_addr inet, distinct_actors bigint, sessions bigint,
               failed_logins bigint, reads bigint, rows_read bigint, changes bigint, failures bigint,
               events bigint, first_seen timestamptz, last_seen timestamptz)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN QUERY EXECUTE format($q$
        SELECT e.application_name::text, e.db_user::text, e.client_addr,
               count(DISTINCT e.actor),
               count(*) FILTER (WHERE e.class = 'auth' AND e.action = 'LOGIN' AND e.status = 'success'),
               count(*) FILTER (WHERE e.class = 'auth' AND (e.action = 'LOGIN_FAILED' OR e.status = 'failure')),
               count(*) FILTER (WHERE e.class = 'read' AND e.status = 'success'),
               coalesce(sum(CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END)
                            FILTER (WHERE e.class = 'read' AND e.status = 'success'), 0)::bigint,
               count(*) FILTER (WHERE e.class = 'data' AND e.status = 'success'),
               count(*) FILTER (WHERE e.status = 'failure'),
               count(*),
               min(e.event_time), max(e.event_time)
          FROM audit.event e
         WHERE %s
         GROUP BY 1, 2, 3
         ORDER BY count(*) DESC, 1, 2, 3
    $q$, audit.report_condition('system_access', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_system_access(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: access grouped by application_name, database role and client address (sessions, failed logins, reads, changes, failures, events, first and last seen)';

-- Scheduled reports (written by the maintenance worker, src/reports.c and
-- audit.run_due_reports() in sql/src/report_render.sql).
CREATE TABLE audit.report_schedules (
    name          text COLLATE "C" PRIMARY KEY,
    kind          text COLLATE "C" NOT NULL REFERENCES audit.report_kinds (kind),
    every         text NOT NULL,
    at            time NOT NULL,
    period        interval NOT NULL,
    format        text NOT NULL,
    timezone      text NOT NULL,
    next_due      timestamptz NOT NULL,
    last_due      timestamptz,
    last_file     text,
    last_run_at   timestamptz,
    failures      integer NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz,
    retry_after   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by    text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('audit.report_schedules', '');
COMMENT ON TABLE audit.report_schedules IS
    'Scheduled reports (audit.schedule_report): the maintenance worker writes each due one into audit_ext.report_directory';
COMMENT ON COLUMN audit.report_schedules.name IS 'Name of the schedule (the file name starts with it, reduced to letters, digits, _ and -)';
COMMENT ON COLUMN audit.report_schedules.kind IS 'Report kind (audit.report_kinds)';
COMMENT ON COLUMN audit.report_schedules.every IS 'daily, weekly:monday ... weekly:sunday, or monthly:1 ... monthly:28';
COMMENT ON COLUMN audit.report_schedules.at IS 'Local time of day (in timezone) the report is due';
COMMENT ON COLUMN audit.report_schedules.period IS 'Length of the period covered, ending at the due time';
COMMENT ON COLUMN audit.report_schedules.format IS 'html or csv';
COMMENT ON COLUMN audit.report_schedules.timezone IS 'Time zone of "at" and of the times in the report';
COMMENT ON COLUMN audit.report_schedules.next_due IS 'When the next report is due';
COMMENT ON COLUMN audit.report_schedules.last_due IS 'Due time of the last report written';
COMMENT ON COLUMN audit.report_schedules.last_file IS 'File of the last report written';
COMMENT ON COLUMN audit.report_schedules.last_run_at IS 'When the last report was written';
COMMENT ON COLUMN audit.report_schedules.failures IS 'Failed attempts since the last success';
COMMENT ON COLUMN audit.report_schedules.last_error IS 'SQLSTATE and message of the last failed attempt (NULL after a success)';
COMMENT ON COLUMN audit.report_schedules.last_error_at IS 'When the last attempt failed';
COMMENT ON COLUMN audit.report_schedules.retry_after IS 'A failed schedule is not tried again before this time (backoff: 1 minute doubling up to 1 hour)';
COMMENT ON COLUMN audit.report_schedules.created_at IS 'When the schedule was made';
COMMENT ON COLUMN audit.report_schedules.created_by IS 'Role that made the schedule';

CREATE TABLE audit.reports (
    file         text PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    period_from  timestamptz NOT NULL,
    period_to    timestamptz NOT NULL,
    format       text NOT NULL,
    rows         bigint NOT NULL,
    bytes        bigint NOT NULL,
    checksum     text NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('audit.reports', '');
COMMENT ON TABLE audit.reports IS
    'Report files written by the maintenance worker for the schedules (audit_ext.report_directory), with their SHA-256';
COMMENT ON COLUMN audit.reports.file IS 'File name in audit_ext.report_directory (a FILE.sha256 lies beside it)';
COMMENT ON COLUMN audit.reports.name IS 'Schedule that made it';
COMMENT ON COLUMN audit.reports.kind IS 'Report kind';
COMMENT ON COLUMN audit.reports.period_from IS 'Start of the period covered (inclusive)';
COMMENT ON COLUMN audit.reports.period_to IS 'End of the period covered (exclusive): the due time';
COMMENT ON COLUMN audit.reports.format IS 'html or csv';
COMMENT ON COLUMN audit.reports.rows IS 'Detail rows of the report';
COMMENT ON COLUMN audit.reports.bytes IS 'Size of the file';
COMMENT ON COLUMN audit.reports.checksum IS 'SHA-256 of the file, hex (as in FILE.sha256)';
COMMENT ON COLUMN audit.reports.generated_at IS 'When it was written';

REVOKE ALL ON FUNCTION audit.report_risk(text, text, text, jsonb),
                       audit.export_threshold(),
                       audit.report_condition(text, timestamptz, timestamptz, text[], boolean, boolean) FROM PUBLIC;
GRANT SELECT ON audit.report_kinds, audit.report_schedules, audit.reports TO audit_admin, audit_reader;

-- The scheduled reports (1.6) are run by the maintenance worker: failing
-- schedules are shown here too (sql/src/reports.sql).
CREATE OR REPLACE VIEW audit.worker_status AS
SELECT s.*,
       (SELECT pg_catalog.count(*) FROM audit.report_schedules r WHERE r.last_error IS NOT NULL) AS failing_report_schedules,
       (SELECT r.name || ': ' || r.last_error FROM audit.report_schedules r
         WHERE r.last_error IS NOT NULL ORDER BY r.last_error_at DESC, r.name LIMIT 1) AS last_report_error
  FROM audit.worker_status() s;
COMMENT ON VIEW audit.worker_status IS
    'State of the security-event queue (size, depth, enqueued, written, dropped, last error), the worker''s pid, and failing scheduled reports (count, the newest error)';

-- from sql/src/report_render.sql
-- Rendered reports (issue 21): audit.render_report() (one self-contained HTML
-- document with inline-SVG charts, or CSV), audit.render_dashboard(), and the
-- scheduled reports the maintenance worker writes (audit.schedule_report,
-- audit.unschedule_report, audit.run_due_reports; files by src/reports.c).
-- The typed report functions and the tables are in sql/src/reports.sql.
--
-- Everything put into a page goes through audit.html() (text and attribute
-- values alike); pages carry a Content-Security-Policy that allows no script,
-- no external fetch, only inline styles, as a second line of defence.
-- Who may call what: the render functions, the audit roles (42501 otherwise);
-- schedule_report/unschedule_report, audit_admin; run_due_reports and
-- write_report_file, nobody but the extension's owner (the maintenance worker).

-- HTML-escape text for element content and quoted attribute values.
CREATE FUNCTION audit.html(t text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(replace(replace(replace(replace(replace(t, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                                    '"', '&quot;'), '''', '&#39;'), '')
$$;
COMMENT ON FUNCTION audit.html(text) IS
    'Internal: text escaped for HTML content and attribute values (& < > " '' as entities; NULL as empty)';

-- A figure with thousands separators, as text.
CREATE FUNCTION audit.report_number(n bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(replace(to_char(n, 'FM999,999,999,999,999,999'), ' ', ''), '0') $$;
COMMENT ON FUNCTION audit.report_number(bigint) IS 'Internal: a count with thousands separators';

-- One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF or
-- starts or ends with a space; NULL is an empty field.
CREATE FUNCTION audit.csv_field(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN v IS NULL THEN ''
                WHEN v ~ '[",\r\n]' OR v ~ '^\s' OR v ~ '\s$' THEN '"' || replace(v, '"', '""') || '"'
                ELSE v END
$$;
COMMENT ON FUNCTION audit.csv_field(text) IS 'Internal: one CSV field, quoted when needed (RFC 4180)';

-- Horizontal bar chart: one <g class="bar"> per label, with data-label and
-- data-value (what the end-to-end test reads back).
CREATE FUNCTION audit.svg_bar_chart(chart_id text, title text, labels text[], vals bigint[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n      integer := coalesce(cardinality(labels), 0);
    top    bigint := greatest(coalesce((SELECT max(v) FROM unnest(vals) v), 0), 1);
    row_h  integer := 22;
    width  integer := 540;
    label_w integer := 200;
    plot_w integer := 270;
    h      integer;
    out    text;
    i      integer;
    w      numeric;
BEGIN
    h := greatest(n, 1) * row_h + 34;
    out := format('<figure class="chart" id="%s"><figcaption>%s</figcaption>'
                  '<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">',
                  audit.html(chart_id), audit.html(title), width, h, width, h, audit.html(title));
    IF n = 0 THEN
        out := out || '<text x="10" y="24" class="empty">no events</text>';
    END IF;
    FOR i IN 1 .. n LOOP
        w := round(plot_w * coalesce(vals[i], 0)::numeric / top, 1);
        out := out || format('<g class="bar" data-label="%s" data-value="%s" transform="translate(0,%s)">'
                             '<title>%s: %s</title>'
                             '<text x="%s" y="15" text-anchor="end" class="label">%s</text>'
                             '<rect x="%s" y="3" width="%s" height="16" class="v"/>'
                             '<text x="%s" y="15" class="value">%s</text></g>',
                             audit.html(labels[i]), coalesce(vals[i], 0), 10 + (i - 1) * row_h,
                             audit.html(labels[i]), coalesce(vals[i], 0),
                             label_w - 6, audit.html(left(labels[i], 30)),
                             label_w, w,
                             label_w + w + 6, audit.report_number(vals[i]));
    END LOOP;
    RETURN out || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION audit.svg_bar_chart(text, text, text[], bigint[]) IS
    'Internal: an inline-SVG horizontal bar chart, one <g class="bar"> per label';

-- Vertical bars over time, stacked by outcome: one <g class="bar"> per bucket
-- with data-label, data-success and data-failure.
CREATE FUNCTION audit.svg_time_chart(chart_id text, title text, labels text[], ok bigint[], failed bigint[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n      integer := coalesce(cardinality(labels), 0);
    top    bigint := 1;
    width  integer := 720;
    height integer := 220;
    left_m integer := 50;
    plot_w integer := 650;
    plot_h integer := 160;
    slot   numeric;
    bw     numeric;
    step   integer;
    out    text;
    i      integer;
    hs     numeric;
    hf     numeric;
    x      numeric;
BEGIN
    FOR i IN 1 .. n LOOP
        top := greatest(top, coalesce(ok[i], 0) + coalesce(failed[i], 0));
    END LOOP;
    slot := plot_w::numeric / greatest(n, 1);
    bw := greatest(round(slot * 0.8, 2), 0.5);
    step := greatest(ceil(n / 12.0)::integer, 1);
    out := format('<figure class="chart" id="%s"><figcaption>%s</figcaption>'
                  '<svg xmlns="http://www.w3.org/2000/svg" class="time" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">'
                  '<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>'
                  '<text x="%s" y="%s" text-anchor="end" class="tick">%s</text>'
                  '<text x="%s" y="%s" text-anchor="end" class="tick">0</text>'
                  '<g class="legend"><rect x="%s" y="4" width="10" height="10" class="ok"/><text x="%s" y="13">success</text>'
                  '<rect x="%s" y="4" width="10" height="10" class="fail"/><text x="%s" y="13">failure</text></g>',
                  audit.html(chart_id), audit.html(title), width, height, width, height, audit.html(title),
                  left_m, 20 + plot_h, left_m + plot_w, 20 + plot_h,
                  left_m - 4, 26, audit.report_number(top),
                  left_m - 4, 20 + plot_h,
                  width - 150, width - 136, width - 80, width - 66);
    FOR i IN 1 .. n LOOP
        hs := round(plot_h * coalesce(ok[i], 0)::numeric / top, 2);
        hf := round(plot_h * coalesce(failed[i], 0)::numeric / top, 2);
        x := round(left_m + (i - 1) * slot + (slot - bw) / 2, 2);
        out := out || format('<g class="bar" data-label="%s" data-success="%s" data-failure="%s">'
                             '<title>%s: %s success, %s failure</title>'
                             '<rect x="%s" y="%s" width="%s" height="%s" class="ok"/>'
                             '<rect x="%s" y="%s" width="%s" height="%s" class="fail"/>',
                             audit.html(labels[i]), coalesce(ok[i], 0), coalesce(failed[i], 0),
                             audit.html(labels[i]), coalesce(ok[i], 0), coalesce(failed[i], 0),
                             x, 20 + plot_h - hs, bw, hs,
                             x, 20 + plot_h - hs - hf, bw, hf);
        IF (i - 1) % step = 0 THEN
            out := out || format('<text x="%s" y="%s" text-anchor="middle" class="tick">%s</text>',
                                 round(x + bw / 2, 2), 36 + plot_h, audit.html(labels[i]));
        END IF;
        out := out || '</g>';
    END LOOP;
    IF n = 0 THEN
        out := out || format('<text x="%s" y="100" class="empty">no events</text>', left_m + 10);
    END IF;
    RETURN out || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION audit.svg_time_chart(text, text, text[], bigint[], bigint[]) IS
    'Internal: an inline-SVG chart of events over time stacked by outcome, one <g class="bar"> per bucket';

-- The page around a report or the dashboard: self-contained (inline style,
-- no script, no external resource), with a print stylesheet.
CREATE FUNCTION audit.report_page(title text, body text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT '<!DOCTYPE html>' || E'\n'
    || '<html lang="en"><head><meta charset="utf-8">' || E'\n'
    || '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''; img-src data:">' || E'\n'
    || '<meta name="viewport" content="width=device-width, initial-scale=1">' || E'\n'
    || '<meta name="generator" content="audit_ext">' || E'\n'
    || '<title>' || audit.html(title) || '</title>' || E'\n'
    || '<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1f2933;margin:24px;font-size:14px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
.meta{color:#52606d;margin:0 0 12px}.meta td{padding:1px 12px 1px 0}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.figure{border:1px solid #d9e2ec;border-radius:6px;padding:8px 14px;min-width:120px}
.figure .n{font-size:22px;font-weight:600}.figure .l{color:#52606d;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure.chart{margin:0;border:1px solid #d9e2ec;border-radius:6px;padding:8px;max-width:100%;overflow:hidden}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font-size:11px;fill:#334e68}svg .value{fill:#52606d}svg .empty{fill:#9aa5b1}
svg rect.v{fill:#2f80ed}svg rect.ok{fill:#27ae60}svg rect.fail{fill:#eb5757}svg .axis{stroke:#9aa5b1}
table.detail{border-collapse:collapse;width:100%;font-size:12px}
table.detail th,table.detail td{border:1px solid #d9e2ec;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
table.detail th{background:#f0f4f8;overflow-wrap:normal}
table.detail tr:nth-child(even) td{background:#fafbfc}
.ok{color:#1e7e34}.bad{color:#c0392b;font-weight:600}
.risk-critical{color:#fff;background:#c0392b;padding:0 4px;border-radius:3px}
.risk-high{color:#c0392b;font-weight:600}.risk-medium{color:#b7791f}.risk-low{color:#52606d}
.note{color:#52606d;font-size:12px}
footer{margin-top:24px;color:#9aa5b1;font-size:11px}
@media print{body{margin:10mm;font-size:11px}figure.chart,.figure,tr{break-inside:avoid}h2{break-after:avoid}
table.detail{font-size:9px}@page{size:A4 landscape;margin:10mm}}
</style></head><body>' || E'\n' || body || E'\n</body></html>\n'
$$;
COMMENT ON FUNCTION audit.report_page(text, text) IS
    'Internal: a self-contained HTML page (inline style with a print stylesheet, no script, a CSP allowing none)';

-- One summary figure box.
CREATE FUNCTION audit.report_figure(label text, value text, id text DEFAULT NULL)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<div class="figure"' || CASE WHEN id IS NULL THEN '' ELSE ' id="' || audit.html(id) || '"' END
        || '><div class="n">' || audit.html(value) || '</div><div class="l">' || audit.html(label) || '</div></div>'
$$;
COMMENT ON FUNCTION audit.report_figure(text, text, text) IS 'Internal: one summary figure of a report page';

-- Rows (a JSON array of objects, in column order) as an HTML table; every
-- value escaped; timestamps shown without the ISO "T" and fraction.
CREATE FUNCTION audit.report_table(columns text[], rows json, css text DEFAULT 'detail')
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '<table class="' || audit.html(css) || '"><thead><tr>'
        || (SELECT string_agg('<th>' || audit.html(c) || '</th>', '' ORDER BY i)
              FROM unnest(columns) WITH ORDINALITY u(c, i))
        || '</tr></thead><tbody>'
        || coalesce((SELECT string_agg('<tr>'
                          || (SELECT string_agg(CASE WHEN v.key = 'risk' AND v.value IS NOT NULL
                                                     THEN '<td><span class="risk-' || audit.html(v.value) || '">'
                                                          || audit.html(v.value) || '</span></td>'
                                                     WHEN v.key = 'status' AND v.value = 'failure'
                                                     THEN '<td class="bad">failure</td>'
                                                     ELSE '<td>' || audit.html(regexp_replace(v.value,
                                                          '^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?', '\1 \2')) || '</td>'
                                                END, '' ORDER BY v.i)
                                FROM json_each_text(r.j) WITH ORDINALITY v(key, value, i))
                          || '</tr>', E'\n' ORDER BY r.n)
                       FROM json_array_elements(rows) WITH ORDINALITY r(j, n)), '')
        || '</tbody></table>'
$$;
COMMENT ON FUNCTION audit.report_table(text[], json, text) IS
    'Internal: JSON rows as an HTML table, every value escaped';

-- The output columns of a report kind's typed function, in order.
CREATE FUNCTION audit.report_columns(kind text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(u.n ORDER BY u.i)
      FROM audit.report_kinds k
      JOIN pg_catalog.pg_proc p
        ON p.oid = (k.function || '(timestamptz, timestamptz, text[], boolean, boolean)')::pg_catalog.regprocedure
     CROSS JOIN LATERAL unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY u(n, m, i)
     WHERE k.kind = report_columns.kind AND u.m = 't'
$$;
COMMENT ON FUNCTION audit.report_columns(text) IS 'Internal: the output columns of a report kind''s function';

-- The integrity section: audit.verify() of the period and the chain heads of
-- the last checkpoint round before its end.
CREATE FUNCTION audit.report_integrity(from_time timestamptz, to_time timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v     record;
    rnd   record;
    heads text;
BEGIN
    SELECT * INTO v FROM audit.verify(from_time, to_time);
    SELECT r.round_id, r.taken_at, r.lanes, encode(r.hash, 'hex') AS hash INTO rnd
      FROM audit.chain_round r
     WHERE r.taken_at < to_time
     ORDER BY r.round_id DESC LIMIT 1;
    SELECT string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>',
                             audit.html(h.class), h.lanes, h.last_event_id, audit.html(h.hash)), '' ORDER BY h.class)
      INTO heads
      FROM (SELECT c.class, count(*) AS lanes, max(c.event_id) AS last_event_id,
                   left(encode((array_agg(c.hash ORDER BY c.event_id DESC))[1], 'hex'), 16) || '…' AS hash
              FROM audit.chain_checkpoint c
             WHERE c.round_id = rnd.round_id
             GROUP BY c.class) h;
    RETURN '<section id="integrity"><h2>Integrity of the trail</h2>'
        || format('<p id="integrity-status" data-verified="%s" class="%s">%s</p>',
                  CASE WHEN v.verified THEN 'true' ELSE 'false' END, CASE WHEN v.verified THEN 'ok' ELSE 'bad' END,
                  CASE WHEN v.verified
                       THEN format('Verified: the hash chains of the %s events of the period are unbroken (audit.verify()).',
                                   audit.report_number(v.events))
                       ELSE format('NOT VERIFIED: %s break(s), first at event %s (%s). %s',
                                   v.breaks, coalesce(v.first_broken_event_id::text, '?'),
                                   coalesce(v.first_broken_event_time::text, '?'), audit.html(v.problem)) END)
        || format('<table class="detail"><tr><th>events checked</th><td>%s</td><th>chains</th><td>%s</td>'
                  '<th>links not checkable in a bounded window</th><td>%s</td><th>protection-off events</th><td>%s</td>'
                  '<th>unconfirmed chains</th><td>%s</td></tr></table>',
                  v.events, v.chains, v.unverifiable_links, v.protection_off_events, v.unconfirmed_chains)
        || CASE WHEN rnd.round_id IS NULL THEN '<p class="note">No checkpoint round of the chain heads before the end of the period.</p>'
                ELSE format('<p class="note">Chain heads at checkpoint round %s (%s, %s lanes), round hash <code>%s</code>:</p>',
                            rnd.round_id, audit.html(rnd.taken_at::text), rnd.lanes, audit.html(rnd.hash))
                     || '<table class="detail"><thead><tr><th>class</th><th>lanes</th><th>last event id</th><th>head hash</th></tr></thead><tbody>'
                     || coalesce(heads, '') || '</tbody></table>' END
        || '</section>';
END
$$;
COMMENT ON FUNCTION audit.report_integrity(timestamptz, timestamptz) IS
    'Internal: the integrity section of a report (audit.verify() of the period, chain heads of the last checkpoint round)';

-- The report itself, and its count of detail rows (for audit.reports).
CREATE FUNCTION audit.build_report(kind text, from_time timestamptz, to_time timestamptz, actors text[],
                                   include_success boolean, include_failures boolean, format text,
                                   OUT content text, OUT rows bigint)
RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap       constant integer := 1000;     -- detail rows shown in HTML (CSV has all)
    k         audit.report_kinds;
    cond      text;
    fn        text;
    cols      text[];
    total     bigint;
    detail    json;
    csv       text;
    unit      text;
    days      numeric;
    g         record;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ca_labels text[];
    ca_vals   bigint[];
    a_labels  text[];
    a_vals    bigint[];
    r_labels  text[];
    r_vals    bigint[];
    n_events  bigint;
    n_fail    bigint;
    n_actors  bigint;
    first_t   timestamptz;
    last_t    timestamptz;
    body      text;
    fmt_label text;
    risk_expr text := 'NULL::text';
BEGIN
    IF build_report.format IS NULL OR build_report.format NOT IN ('html', 'csv') THEN
        RAISE EXCEPTION 'invalid format "%": must be html or csv', build_report.format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PDF is made from the HTML by scripts/report-pdf.sh.';
    END IF;
    cond := audit.report_condition(build_report.kind, from_time, to_time, actors, include_success, include_failures);
    SELECT * INTO k FROM audit.report_kinds rk WHERE rk.kind = build_report.kind;
    fn := k.function;
    cols := audit.report_columns(k.kind);

    IF build_report.format = 'csv' THEN
        EXECUTE pg_catalog.format(
            'SELECT count(*), string_agg((SELECT string_agg(audit.csv_field(v.value), '','' ORDER BY v.i)'
            '                             FROM json_each_text(r.j) WITH ORDINALITY v(key, value, i)), E''\n'' ORDER BY r.n)'
            '  FROM (SELECT row_to_json(x) AS j, row_number() OVER () AS n FROM %s($1, $2, $3, $4, $5) x) r', fn)
            INTO total, csv USING from_time, to_time, actors, include_success, include_failures;
        PERFORM audit.log_system_event('REPORT_GENERATED',
            jsonb_build_object('kind', k.kind, 'format', 'csv', 'from', from_time, 'to', to_time,
                               'actors', to_jsonb(actors), 'rows', total));
        content := (SELECT string_agg(audit.csv_field(c), ',' ORDER BY i) FROM unnest(cols) WITH ORDINALITY u(c, i))
                   || E'\n' || coalesce(csv || E'\n', '');
        rows := total;
        RETURN;
    END IF;


    -- One statement for the detail rows (all counted, the first "cap" kept)
    -- and the charts: one snapshot, so that the figures and the rows agree
    -- even in READ COMMITTED (the typed functions are STABLE: they run in
    -- the snapshot of the statement that calls them).
    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    fmt_label := CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW' WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END;
    IF k.kind = 'security_events' THEN
        -- issue 20: e.risk instead of audit.report_risk(...)
        risk_expr := 'audit.report_risk(e.class, e.action, e.status, e.detail)';
    END IF;
    -- First one hash aggregate over the events (bucket, status, class,
    -- action, actor, risk), then the four groupings over its rows: grouping
    -- sets straight over a million events sorted them once per set.
    EXECUTE pg_catalog.format($q$
        WITH det AS (
            SELECT count(*) AS total, json_agg(r.j ORDER BY r.n) FILTER (WHERE r.n <= $7) AS detail
              FROM (SELECT CASE WHEN row_number() OVER () <= $7 THEN row_to_json(x) END AS j,
                           row_number() OVER () AS n FROM %4$s($1, $2, $3, $5, $6) x) r
        ), base AS (
            SELECT date_trunc(%1$L, e.event_time) AS bucket, e.status, e.class, e.action, e.actor, %2$s AS risk,
                   count(*) AS n, min(e.event_time) AS first_t, max(e.event_time) AS last_t
              FROM audit.event e
             WHERE %3$s
             GROUP BY 1, 2, 3, 4, 5, 6
        ), g AS (
            SELECT CASE WHEN GROUPING(b.bucket) = 0 THEN 1
                        WHEN GROUPING(b.class) = 0 THEN 2
                        WHEN GROUPING(b.actor) = 0 THEN 3
                        WHEN GROUPING(b.risk) = 0 THEN 4 ELSE 0 END AS k,
                   b.bucket, b.status, b.class, b.action, b.actor, b.risk,
                   sum(b.n)::bigint AS n, (sum(b.n) FILTER (WHERE b.status = 'failure'))::bigint AS failed,
                   min(b.first_t) AS first_t, max(b.last_t) AS last_t
              FROM base b
             GROUP BY GROUPING SETS ((b.bucket, b.status), (b.class, b.action), (b.actor), (b.risk), ())
        )
        SELECT (SELECT det.total FROM det), (SELECT det.detail FROM det),
               (SELECT coalesce(sum(g.n), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT coalesce(sum(g.failed), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT count(*) FROM g WHERE g.k = 3 AND g.actor IS NOT NULL),
               (SELECT min(g.first_t) FROM g WHERE g.k = 0),
               (SELECT max(g.last_t) FROM g WHERE g.k = 0),
               (SELECT json_agg(json_build_object('bucket', g.bucket, 'status', g.status, 'n', g.n)) FROM g WHERE g.k = 1),
               (SELECT array_agg(x.class || ' ' || x.action ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(coalesce(x.actor, '(none)') ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(g.risk ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL),
               (SELECT array_agg(g.n ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL)
    $q$, unit, risk_expr, cond, fn)
        INTO total, detail, n_events, n_fail, n_actors, first_t, last_t, t_json, ca_labels, ca_vals, a_labels, a_vals,
             r_labels, r_vals
        USING from_time, to_time, actors, audit.export_threshold(), include_success, include_failures, cap;

    -- time buckets: every bucket of the period when there are at most 400,
    -- else only those with events
    FOR g IN
        SELECT b.bucket,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'success'), 0)::bigint AS ok,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'failure'), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, j.value ->> 'status' AS status,
                            (j.value ->> 'n')::bigint AS n
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, fmt_label);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    body := pg_catalog.format('<header><h1>%s</h1>', audit.html(k.title))
        || pg_catalog.format('<table class="meta" id="meta">'
                  '<tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                  '<tr><td>Actors</td><td id="filter-actors">%s</td></tr>'
                  '<tr><td>Outcomes</td><td id="filter-outcomes">%s</td></tr>'
                  '<tr><td>Generated</td><td id="generated">%s by %s%s, database %s</td></tr></table>'
                  '<p class="meta">%s</p></header>',
                  audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                  CASE WHEN actors IS NULL THEN 'all' ELSE audit.html(array_to_string(actors, ', ')) END,
                  CASE WHEN include_success AND include_failures THEN 'successes and failures'
                       WHEN include_success THEN 'successes only' ELSE 'failures only' END,
                  audit.html(now()::text), audit.html(audit.session_role()),
                  CASE WHEN coalesce(current_setting('audit_ext.actor', true), '') NOT IN ('', audit.session_role())
                       THEN ' (actor ' || audit.html(current_setting('audit_ext.actor', true)) || ')' ELSE '' END,
                  audit.html(current_database()), audit.html(k.description))
        || '<section id="summary"><h2>Summary</h2><div class="figures">'
        || audit.report_figure('events', audit.report_number(n_events), 'fig-events')
        || audit.report_figure('failures', audit.report_number(n_fail), 'fig-failures')
        || audit.report_figure('actors', audit.report_number(n_actors), 'fig-actors')
        || audit.report_figure('detail rows', audit.report_number(total), 'fig-rows')
        || audit.report_figure('first event', coalesce(to_char(first_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || audit.report_figure('last event', coalesce(to_char(last_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || '</div></section><section id="charts"><h2>Charts</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-class-action', 'Events by class and action', ca_labels, ca_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || CASE WHEN k.kind = 'security_events'
                THEN audit.svg_bar_chart('chart-risk', 'Events by risk', r_labels, r_vals) ELSE '' END
        || '</div></section>'
        || '<section id="detail"><h2>Detail</h2>'
        || pg_catalog.format('<p class="note" id="detail-count" data-total="%s" data-shown="%s">%s</p>',
                             total, least(total, cap),
                             CASE WHEN total > cap
                                  THEN pg_catalog.format('The first %s of %s rows are shown; the full list: format => ''csv'' or %s(...).',
                                                         audit.report_number(cap), audit.report_number(total), audit.html(fn))
                                  ELSE pg_catalog.format('All %s rows.', audit.report_number(total)) END)
        || audit.report_table(cols, coalesce(detail, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · %s(%s, %s) · recorded as system/REPORT_GENERATED</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')),
                             audit.html(fn), audit.html(from_time::text), audit.html(to_time::text));

    PERFORM audit.log_system_event('REPORT_GENERATED',
        jsonb_build_object('kind', k.kind, 'format', 'html', 'from', from_time, 'to', to_time,
                           'actors', to_jsonb(actors), 'rows', total, 'events', n_events));
    content := audit.report_page(k.title || ' ' || to_char(from_time, 'YYYY-MM-DD') || ' – ' || to_char(to_time, 'YYYY-MM-DD'),
                                 body);
    rows := total;
END
$$;
COMMENT ON FUNCTION audit.build_report(text, timestamptz, timestamptz, text[], boolean, boolean, text) IS
    'Internal: audit.render_report() without the access check, with the number of detail rows';

CREATE FUNCTION audit.render_report(kind text, from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                    include_success boolean DEFAULT true, include_failures boolean DEFAULT true,
                                    format text DEFAULT 'html')
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN (SELECT b.content FROM audit.build_report(kind, from_time, to_time, actors, include_success,
                                                     include_failures, format) b);
END
$$;
COMMENT ON FUNCTION audit.render_report(text, timestamptz, timestamptz, text[], boolean, boolean, text) IS
    'A report as one self-contained HTML document (summary, inline-SVG charts, the first 1000 detail rows, integrity status) or, format => ''csv'', all detail rows as CSV; records system/REPORT_GENERATED';

CREATE FUNCTION audit.render_dashboard(from_time timestamptz DEFAULT now() - interval '30 days',
                                       to_time timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today     bigint;
    week      bigint;
    month     bigint;
    active    bigint;
    texts     bigint;
    arch_n    bigint;
    arch_b    bigint;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ty_labels text[];
    ty_vals   bigint[];
    summary   audit.activity_summary_row;
    a_labels  text[];
    a_vals    bigint[];
    recent    json;
    alerts    json;
    open_n    bigint;
    g         record;
    days      numeric;
    unit      text;
    body      text;
BEGIN
    PERFORM audit.require_audit_role();
    IF from_time IS NULL OR to_time IS NULL OR NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'invalid dashboard period: from_time and to_time must be given and finite'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM audit.check_time_range(from_time, to_time);

    SELECT count(*) FILTER (WHERE e.event_time >= date_trunc('day', now())),
           count(*) FILTER (WHERE e.event_time >= date_trunc('week', now())),
           count(*) FILTER (WHERE e.event_time >= date_trunc('month', now()))
      INTO today, week, month
      FROM audit.event e
     WHERE e.event_time >= least(date_trunc('week', now()), date_trunc('month', now()));
    SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint INTO active
      FROM pg_partition_tree('audit.event'::regclass) t WHERE t.isleaf;
    texts := pg_total_relation_size('audit.statement'::regclass);
    SELECT count(*), coalesce(sum(a.bytes), 0)::bigint INTO arch_n, arch_b FROM audit.archives a;

    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    SELECT json_agg(json_build_object('bucket', x.bucket, 'ok', x.ok, 'failed', x.failed)) INTO t_json
      FROM (SELECT date_trunc(unit, e.event_time) AS bucket,
                   count(*) FILTER (WHERE e.status = 'success') AS ok,
                   count(*) FILTER (WHERE e.status = 'failure') AS failed
              FROM audit.event e
             WHERE e.event_time >= from_time AND e.event_time < to_time
             GROUP BY 1) x;
    FOR g IN
        SELECT b.bucket, coalesce(max(x.ok), 0)::bigint AS ok, coalesce(max(x.failed), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, (j.value ->> 'ok')::bigint AS ok,
                            (j.value ->> 'failed')::bigint AS failed
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW'
                                                             WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    SELECT * INTO summary FROM audit.activity_summary(from_time, to_time);
    -- activity by type.  Issue 20: application events (class "app") become
    -- the type "application" here.
    SELECT array_agg(t.type ORDER BY t.o), array_agg(t.n ORDER BY t.o) INTO ty_labels, ty_vals
      FROM (SELECT x.type, x.o, coalesce(sum((summary.events_by_class ->> c.c)::bigint), 0)::bigint AS n
              FROM (VALUES ('data changes', 1, ARRAY['data']), ('reads', 2, ARRAY['read']),
                           ('security', 3, ARRAY['auth', 'privilege']), ('system', 4, ARRAY['ddl', 'system']))
                   x(type, o, classes)
              LEFT JOIN LATERAL unnest(x.classes) c(c) ON true
             GROUP BY x.type, x.o) t;
    SELECT array_agg(a.value ->> 'actor' ORDER BY a.i), array_agg((a.value ->> 'events')::bigint ORDER BY a.i)
      INTO a_labels, a_vals
      FROM jsonb_array_elements(summary.top_actors) WITH ORDINALITY a(value, i);

    -- issue 20: r.risk instead of audit.report_risk(...)
    SELECT json_agg(json_build_object('event_time', r.event_time, 'risk', audit.report_risk(r.class, r.action, r.status, r.detail),
                                      'reason', r.reason, 'class', r.class, 'action', r.action, 'status', r.status,
                                      'actor', r.actor,
                                      'object', coalesce(r.schema_name || '.', '') || r.table_name) ORDER BY r.id DESC)
      INTO recent
      FROM (SELECT * FROM audit.recent_high_priority h ORDER BY h.id DESC LIMIT 10) r;
    SELECT count(*) INTO open_n FROM audit.alerts a WHERE a.acknowledged_at IS NULL;
    SELECT json_agg(json_build_object('fired_at', a.fired_at, 'severity', a.severity, 'rule', a.rule, 'key', a.key,
                                      'count', a.count) ORDER BY a.fired_at DESC)
      INTO alerts
      FROM (SELECT * FROM audit.alerts a WHERE a.acknowledged_at IS NULL ORDER BY a.fired_at DESC LIMIT 10) a;

    body := '<header><h1>Audit dashboard</h1>'
        || pg_catalog.format('<table class="meta" id="meta"><tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                             '<tr><td>Generated</td><td id="generated">%s by %s, database %s</td></tr></table></header>',
                             audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                             audit.html(now()::text), audit.html(audit.session_role()), audit.html(current_database()))
        || '<section id="summary"><h2>Events</h2><div class="figures">'
        || audit.report_figure('events today', audit.report_number(today), 'fig-today')
        || audit.report_figure('this week', audit.report_number(week), 'fig-week')
        || audit.report_figure('this month', audit.report_number(month), 'fig-month')
        || audit.report_figure('events in period', audit.report_number(summary.total_events), 'fig-events')
        || audit.report_figure('failures in period', audit.report_number(summary.failures), 'fig-failures')
        || audit.report_figure('open alerts', audit.report_number(open_n), 'fig-alerts')
        || '</div><h2>Storage</h2><div class="figures">'
        || audit.report_figure('active trail', pg_size_pretty(active), 'fig-storage-active')
        || audit.report_figure('statement texts', pg_size_pretty(texts), 'fig-storage-texts')
        || audit.report_figure(arch_n || ' archives', pg_size_pretty(arch_b), 'fig-storage-archives')
        || '</div></section><section id="charts"><h2>Activity</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-types', 'Activity by type', ty_labels, ty_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || '</div></section>'
        || '<section id="recent"><h2>Recent high-priority events (last 7 days)</h2>'
        || audit.report_table(ARRAY['event_time', 'risk', 'reason', 'class', 'action', 'status', 'actor', 'object'],
                              coalesce(recent, '[]'::json))
        || '</section><section id="alerts"><h2>Open alerts</h2>'
        || pg_catalog.format('<p class="note" id="alerts-count" data-open="%s">%s open (the newest 10 shown; audit.alerts)</p>',
                             open_n, audit.report_number(open_n))
        || audit.report_table(ARRAY['fired_at', 'severity', 'rule', 'key', 'count'], coalesce(alerts, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · audit.render_dashboard()</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')));
    RETURN audit.report_page('Audit dashboard', body);
END
$$;
COMMENT ON FUNCTION audit.render_dashboard(timestamptz, timestamptz) IS
    'The dashboard page as self-contained HTML: events today/this week/this month, storage, activity by type, top actors, recent high-priority events with risk, open alerts, integrity status';

-- ---------------------------------------------------------------------------
-- Scheduled reports
-- ---------------------------------------------------------------------------

-- Writes one report file into audit_ext.report_directory durably (NAME.tmp,
-- fsync, rename; NAME.sha256 beside it), src/reports.c.
CREATE FUNCTION audit.write_report_file(file text, content text, OUT path text, OUT bytes bigint, OUT checksum text)
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_write_report_file';
COMMENT ON FUNCTION audit.write_report_file(text, text) IS
    'Internal: write a report file (a plain name) into audit_ext.report_directory with fsync and rename, and FILE.sha256; maintenance worker or superuser only';

-- The schedule's due times, in its time zone: the last one at or before t
-- (before => true) or the first one after t.
CREATE FUNCTION audit.report_due(every text, at time, timezone text, t timestamptz, before boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc   timestamp := t AT TIME ZONE timezone;
    cand  timestamp;
    dow   integer;
    dom   integer;
BEGIN
    IF every = 'daily' THEN
        cand := date_trunc('day', loc) + at;
        IF before AND cand > loc THEN cand := cand - interval '1 day'; END IF;
        IF NOT before AND cand <= loc THEN cand := cand + interval '1 day'; END IF;
    ELSIF every LIKE 'weekly:%' THEN
        dow := array_position(ARRAY['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'],
                              substr(every, 8));
        cand := date_trunc('day', loc) - make_interval(days => ((extract(isodow FROM loc)::integer - dow + 7) % 7)) + at;
        IF before AND cand > loc THEN cand := cand - interval '7 days'; END IF;
        IF NOT before AND cand <= loc THEN cand := cand + interval '7 days'; END IF;
    ELSE
        dom := substr(every, 9)::integer;
        cand := date_trunc('month', loc) + make_interval(days => dom - 1) + at;
        IF before AND cand > loc THEN cand := date_trunc('month', loc - interval '1 month') + make_interval(days => dom - 1) + at; END IF;
        IF NOT before AND cand <= loc THEN cand := date_trunc('month', loc + interval '1 month') + make_interval(days => dom - 1) + at; END IF;
    END IF;
    RETURN cand AT TIME ZONE timezone;
END
$$;
COMMENT ON FUNCTION audit.report_due(text, time, text, timestamptz, boolean) IS
    'Internal: a schedule''s last due time at or before t (before => true) or its first one after t';

CREATE FUNCTION audit.schedule_report(name text, kind text, every text, at time DEFAULT '06:00',
                                      period interval DEFAULT NULL, format text DEFAULT 'html',
                                      timezone text DEFAULT 'UTC')
RETURNS audit.report_schedules
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s audit.report_schedules;
BEGIN
    PERFORM audit.require_audit_role(admin_only => true);
    IF name IS NULL OR btrim(name) = '' OR length(name) > 100 THEN
        RAISE EXCEPTION 'invalid schedule name: must be 1 to 100 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind IS NULL OR NOT EXISTS (SELECT 1 FROM audit.report_kinds k WHERE k.kind = schedule_report.kind) THEN
        RAISE EXCEPTION 'invalid report kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are listed in audit.report_kinds: '
                         || (SELECT string_agg(k.kind, ', ' ORDER BY k.position) FROM audit.report_kinds k) || '.';
    END IF;
    IF every IS NULL OR every !~ '^(daily|weekly:(monday|tuesday|wednesday|thursday|friday|saturday|sunday)|monthly:([1-9]|1[0-9]|2[0-8]))$' THEN
        RAISE EXCEPTION 'invalid every "%"', every
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write daily, weekly:monday ... weekly:sunday, or monthly:1 ... monthly:28.';
    END IF;
    IF at IS NULL THEN
        RAISE EXCEPTION 'invalid at: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period IS NOT NULL AND (period <= interval '0' OR period > interval '366 days') THEN
        RAISE EXCEPTION 'invalid period %: must be positive and at most 366 days', period
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF format IS NULL OR format NOT IN ('html', 'csv') THEN
        RAISE EXCEPTION 'invalid format "%": must be html or csv', format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PDF is made from the HTML by scripts/report-pdf.sh.';
    END IF;
    IF timezone IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = schedule_report.timezone) THEN
        RAISE EXCEPTION 'invalid timezone "%"', timezone
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give a name of pg_timezone_names, e.g. UTC or Europe/Berlin.';
    END IF;
    IF EXISTS (SELECT 1 FROM audit.report_schedules r WHERE r.name = schedule_report.name) THEN
        RAISE EXCEPTION 'report schedule "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Remove it first with audit.unschedule_report().';
    END IF;
    INSERT INTO audit.report_schedules (name, kind, every, at, period, format, timezone, next_due, created_by)
    VALUES (name, kind, every, at,
            coalesce(period, CASE WHEN every = 'daily' THEN interval '1 day'
                                  WHEN every LIKE 'weekly:%' THEN interval '7 days' ELSE interval '1 month' END),
            format, timezone, audit.report_due(every, at, timezone, now(), false), audit.session_role())
    RETURNING * INTO s;
    PERFORM audit.log_system_event('SCHEDULE REPORT',
        jsonb_build_object('name', s.name, 'kind', s.kind, 'every', s.every, 'at', s.at, 'period', s.period,
                           'format', s.format, 'timezone', s.timezone));
    RETURN s;
END
$$;
COMMENT ON FUNCTION audit.schedule_report(text, text, text, time, interval, text, text) IS
    'audit_admin: schedule a report (every daily, weekly:monday ..., monthly:1 ...; at local time in timezone; period ending at the due time, default the interval between runs) that the maintenance worker writes into audit_ext.report_directory';

CREATE FUNCTION audit.unschedule_report(name text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old audit.report_schedules;
BEGIN
    PERFORM audit.require_audit_role(admin_only => true);
    DELETE FROM audit.report_schedules r WHERE r.name = unschedule_report.name RETURNING * INTO old;
    IF old.name IS NULL THEN
        RAISE EXCEPTION 'report schedule "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The schedules are listed in audit.report_schedules.';
    END IF;
    PERFORM audit.log_system_event('UNSCHEDULE REPORT', jsonb_build_object('name', old.name, 'kind', old.kind));
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.unschedule_report(text) IS
    'audit_admin: remove a report schedule (files already written stay); 42704 when there is none';

-- Run by the maintenance worker (src/maintenance.c) each round: every
-- schedule that is due writes one report, for its latest due time (missed
-- ones after downtime: once, never twice), each in a subtransaction so that
-- one failing schedule does not stop the others.  A failure is recorded in
-- the schedule (shown in audit.worker_status) and retried after a backoff.
CREATE FUNCTION audit.run_due_reports()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       audit.report_schedules;
    due     timestamptz;
    content text;
    fname   text;
    w       record;
    nrows   bigint;
    written integer := 0;
    msg     text;
    state   text;
    zone    text := current_setting('TimeZone');
BEGIN
    FOR s IN SELECT * FROM audit.report_schedules r
              WHERE r.next_due <= now() AND (r.retry_after IS NULL OR r.retry_after <= now())
              ORDER BY r.next_due, r.name
    LOOP
        BEGIN
            due := audit.report_due(s.every, s.at, s.timezone, now(), true);
            PERFORM set_config('TimeZone', s.timezone, true);
            SELECT b.content, b.rows INTO content, nrows
              FROM audit.build_report(s.kind, due - s.period, due, NULL, true, true, s.format) b;
            PERFORM set_config('TimeZone', zone, true);
            -- the file name: the schedule's name reduced to letters, digits,
            -- "_" and "-" (a name cannot reach outside the directory), the
            -- due time, the format
            fname := regexp_replace(s.name, '[^A-Za-z0-9_-]', '_', 'g')
                     || '_' || to_char(due AT TIME ZONE s.timezone, 'YYYYMMDD"T"HH24MI') || '.' || s.format;
            SELECT * INTO w FROM audit.write_report_file(fname, content);
            INSERT INTO audit.reports (file, name, kind, period_from, period_to, format, rows, bytes, checksum)
            VALUES (fname, s.name, s.kind, due - s.period, due, s.format, coalesce(nrows, 0), w.bytes, w.checksum)
            ON CONFLICT (file) DO UPDATE
               SET rows = excluded.rows, bytes = excluded.bytes, checksum = excluded.checksum,
                   generated_at = excluded.generated_at;
            UPDATE audit.report_schedules r
               SET last_due = due, last_file = fname, last_run_at = now(), failures = 0,
                   last_error = NULL, last_error_at = NULL, retry_after = NULL,
                   next_due = audit.report_due(s.every, s.at, s.timezone, now(), false)
             WHERE r.name = s.name;
            PERFORM pg_notify('audit_reports',
                              json_build_object('name', s.name, 'kind', s.kind, 'file', fname,
                                                'from', due - s.period, 'to', due, 'checksum', w.checksum)::text);
            written := written + 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            UPDATE audit.report_schedules r
               SET failures = r.failures + 1, last_error = state || ': ' || msg, last_error_at = now(),
                   retry_after = now() + least(interval '1 minute' * power(2, least(r.failures, 10)), interval '1 hour')
             WHERE r.name = s.name;
            RAISE WARNING 'audit_ext: scheduled report "%" failed: %', s.name, msg
                USING ERRCODE = state,
                      HINT = 'See audit.report_schedules.last_error; it is tried again after a backoff (1 minute, doubling up to 1 hour).';
        END;
    END LOOP;
    RETURN written;
END
$$;
COMMENT ON FUNCTION audit.run_due_reports() IS
    'Internal: the maintenance worker''s step that writes the due scheduled reports; returns how many were written';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.html(text),
                       audit.report_number(bigint),
                       audit.csv_field(text),
                       audit.svg_bar_chart(text, text, text[], bigint[]),
                       audit.svg_time_chart(text, text, text[], bigint[], bigint[]),
                       audit.report_page(text, text),
                       audit.report_figure(text, text, text),
                       audit.report_table(text[], json, text),
                       audit.report_columns(text),
                       audit.report_integrity(timestamptz, timestamptz),
                       audit.build_report(text, timestamptz, timestamptz, text[], boolean, boolean, text),
                       audit.write_report_file(text, text),
                       audit.report_due(text, time, text, timestamptz, boolean),
                       audit.run_due_reports() FROM PUBLIC;
-- end issue 21

-- ===========================================================================
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
                                         OUT events_written bigint, OUT failures integer,
                                         OUT last_error text, OUT last_error_at timestamptz,
                                         OUT unconverted_changes bigint)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_wal_capture_status';
COMMENT ON FUNCTION audit.wal_capture_status() IS
    'Internal: the state of this database''s WAL capture (audit.capture_lag)';

CREATE VIEW audit.capture_lag AS
SELECT s.slot_name, s.worker_pid, s.confirmed_lsn, s.done_lsn, s.bytes_behind,
       CASE WHEN s.bytes_behind = 0 THEN 0 ELSE s.seconds_behind END AS seconds_behind,
       s.last_batch_at, s.last_batch_events, s.events_written,
       s.failures, s.last_error, s.last_error_at, s.unconverted_changes
  FROM audit.wal_capture_status() s
 WHERE s.slot_name IS NOT NULL;
COMMENT ON VIEW audit.capture_lag IS
    'WAL capture (capture => ''wal'') of this database: its slot, worker, the LSN up to which every committed change is in the trail (done_lsn), bytes and seconds behind, last batch; failures in a row, the last error and when, changes recorded without their values (conversion failed)';


-- audit.enable gains capture (last parameter); its table flags may hold
-- "wal" and "replica_identity=..."
-- (audit.enable, audit.install_triggers, audit.disable and audit.audited_tables:
-- in the merged section at the end, with the options of issues 20 and 22)


INSERT INTO audit.alert_rules (name, class, action, threshold, within, group_by, severity, cooldown,
                               min_rows, outside_hours, query, enabled, builtin, description, created_by)
VALUES
  ('capture_gap', 'system', 'CAPTURE_GAP', 1, NULL, NULL, 'critical', '0',
   NULL, NULL, NULL,
   true, true, 'Changes of tables audited from the WAL (capture => ''wal'') were not captured: the capture slot was invalidated (max_slot_wal_keep_size), dropped or advanced by someone else; the event names the LSN range', 'audit_ext');

REVOKE ALL ON FUNCTION audit.wal_prepare(),
                       audit.restore_replica_identity(regclass,text),
                       audit.wal_capture_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.wal_capture_status() TO audit_admin, audit_reader;
GRANT SELECT ON audit.capture_lag TO audit_admin, audit_reader;
-- end issue 22
-- issue 22 (waltests): audit.verify() reports capture gaps (two new OUT
-- columns: the merged section re-creates it), audit.wait_for_capture(),
-- partitioned tables in WAL mode (audit.install_wal_partition_triggers();
-- drop_audit_triggers, on_ddl_command_end, install_triggers, enable and
-- disable changed: re-created in the merged section)
DROP FUNCTION audit.verify(timestamptz, timestamptz);

CREATE FUNCTION audit.wait_for_capture(timeout interval DEFAULT '30 s')
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULL;   -- replaced in the merged section below
END
$$;
REVOKE ALL ON FUNCTION audit.wait_for_capture(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.wait_for_capture(interval) TO audit_admin, audit_reader;

-- partitioned tables in WAL mode: the triggers of each partition
CREATE FUNCTION audit.install_wal_partition_triggers(part regclass, exclude_columns text[], mask_columns text[],
                                                     flags text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN;   -- replaced in the merged section below
END
$$;
REVOKE ALL ON FUNCTION audit.install_wal_partition_triggers(regclass,text[],text[],text[]) FROM PUBLIC;
-- end issue 22 (waltests)
-- ===========================================================================
-- issue 21 (repperf): recorded verifications of the chains (reports reuse
-- them), the data change report as an inlinable SQL function over a view
-- ===========================================================================
-- Recorded verifications (1.6): the maintenance worker walks the chains of
-- the events that arrived since the last recorded walk (audit.
-- record_verification(), each round), continuing every lane from the head
-- that walk left, and records what it found.  A rendered report or the
-- dashboard then re-walks only what is newer than the last record and
-- checks the older part of its period for rows rewritten or added since
-- their walk (their row version: xmin), instead of re-hashing the period.
CREATE TABLE audit.verification (
    verification_id         bigint      PRIMARY KEY,
    verified_at             timestamptz NOT NULL DEFAULT pg_catalog.now(),
    verified_by             text        NOT NULL,
    after_event_id          bigint      NOT NULL,
    upto_event_id           bigint      NOT NULL,
    snapshot_xmax           xid8        NOT NULL,
    events                  bigint      NOT NULL,
    min_event_time          timestamptz,
    max_event_time          timestamptz,
    chains                  bigint      NOT NULL,
    legacy_events           bigint      NOT NULL,
    breaks                  bigint      NOT NULL,
    first_broken_event_id   bigint,
    first_broken_event_time timestamptz,
    problem                 text,
    CHECK (upto_event_id > after_event_id)
);

COMMENT ON TABLE audit.verification IS
    'Recorded walks of the hash chains (audit.record_verification(), run by the maintenance worker): each covers the events with ids in (after_event_id, upto_event_id], continuing from the previous one';
COMMENT ON COLUMN audit.verification.verified_by IS 'Role that ran the walk (the maintenance worker''s)';
COMMENT ON COLUMN audit.verification.after_event_id IS 'The walk covered the events with a higher id (the previous walk''s upto_event_id; 0: the first walk)';
COMMENT ON COLUMN audit.verification.upto_event_id IS 'The walk covered the events up to this id (below the horizon of the last checkpoint round: no transaction could still add an event below it)';
COMMENT ON COLUMN audit.verification.snapshot_xmax IS 'Every row version written by a transaction from this one on was written after the walk looked: a rewritten or added event of the walked range has such an xmin';
COMMENT ON COLUMN audit.verification.events IS 'Events the walk read (a report compares it with the events of those ids still there: one removed since is missing)';
COMMENT ON COLUMN audit.verification.min_event_time IS 'Earliest event_time among them (NULL: none)';
COMMENT ON COLUMN audit.verification.max_event_time IS 'Latest event_time among them';
COMMENT ON COLUMN audit.verification.breaks IS 'Breaks the walk found (0: every chain it walked is unbroken)';

CREATE TABLE audit.verification_head (
    verification_id bigint      NOT NULL REFERENCES audit.verification,
    class           text COLLATE "C" NOT NULL,
    chain_lane      bigint      NOT NULL,
    chain_seq       bigint      NOT NULL,
    event_id        bigint      NOT NULL,
    hash            bytea       NOT NULL,
    PRIMARY KEY (class, chain_lane, verification_id)
);

COMMENT ON TABLE audit.verification_head IS
    'Where each recorded walk left the lanes it moved (position, event, hash): the next walk continues from there';

CREATE FUNCTION audit.verify_chains_from(after_id bigint, before_id bigint, from_time timestamptz,
    to_time timestamptz, seed bigint,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT unconfirmed_chains bigint,
    OUT heads jsonb, OUT min_event_time timestamptz, OUT max_event_time timestamptz)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
COMMENT ON FUNCTION audit.verify_chains_from(bigint, bigint, timestamptz, timestamptz, bigint) IS
    'Internal: the chain walk of the events with ids in (after_id, before_id) (before_id NULL: all newer), each lane continued from the heads of the recorded verifications up to seed; returns the heads it moved and the earliest and latest event time it read';

-- Walk the chains of the events that arrived since the last recorded walk
-- and record it, in walks of at most 100,000 ids (a report compares a walk's
-- count of events with what is there: the smaller a walk, the fewer events
-- outside a period it reads), at most ten a call (the first calls start from
-- the first event).  Run by the maintenance worker after the checkpoint
-- round, whose horizon bounds the walk: every event below it belongs to a
-- finished transaction, so a later walk never finds an older id appear.
-- Returns the number of events walked (0: nothing new).
CREATE FUNCTION audit.record_verification()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last    audit.verification;
    horizon bigint;
    xmax    xid8;
    upto    bigint;
    v       record;
    vid     bigint;
    walked  bigint := 0;
BEGIN
    -- one walk at a time
    LOCK TABLE audit.verification IN SHARE ROW EXCLUSIVE MODE;
    SELECT max(r.horizon) INTO horizon FROM audit.chain_round r;
    FOR i IN 1 .. 10 LOOP
        SELECT * INTO last FROM audit.verification r ORDER BY r.verification_id DESC LIMIT 1;
        IF horizon IS NULL OR horizon - 1 <= coalesce(last.upto_event_id, 0) THEN
            EXIT;
        END IF;
        upto := least(horizon - 1, coalesce(last.upto_event_id, 0) + 100000);
        -- taken before the walk: every event the walk reads was written by
        -- a transaction below it
        xmax := pg_snapshot_xmax(pg_current_snapshot());
        SELECT * INTO v FROM audit.verify_chains_from(coalesce(last.upto_event_id, 0), upto + 1, NULL, NULL,
                                                      coalesce(last.verification_id, 0));
        vid := coalesce(last.verification_id, 0) + 1;
        INSERT INTO audit.verification (verification_id, verified_by, after_event_id, upto_event_id, snapshot_xmax,
                                        events, min_event_time, max_event_time, chains, legacy_events, breaks,
                                        first_broken_event_id, first_broken_event_time, problem)
        VALUES (vid, audit.session_role(), coalesce(last.upto_event_id, 0), upto, xmax, v.events, v.min_event_time,
                v.max_event_time, v.chains, v.legacy_events, v.breaks, v.first_broken_event_id,
                v.first_broken_event_time, v.problem);
        INSERT INTO audit.verification_head (verification_id, class, chain_lane, chain_seq, event_id, hash)
        SELECT vid, h.class, h.lane, h.seq, h.event_id, decode(h.hash, 'hex')
          FROM jsonb_to_recordset(v.heads) h(class text, lane bigint, seq bigint, event_id bigint, hash text);
        walked := walked + v.events;
    END LOOP;
    RETURN walked;
END
$$;
COMMENT ON FUNCTION audit.record_verification() IS
    'Internal (maintenance worker): walk the hash chains of the events that arrived since the last recorded walk (walks of at most 100,000 ids, ten a call) and record each walk''s result and lane heads in audit.verification';

-- The arguments of a report checked once per call, for the typed functions
-- written in SQL (audit.report_data_changes): raises what
-- audit.report_condition() raises (22023) after the access check (42501),
-- else true.  Given only the call's arguments it is a constant condition,
-- which the planner evaluates once before any row is read.  PARALLEL
-- RESTRICTED: it runs in the leader, the scan below it may be parallel.
CREATE FUNCTION audit.valid_report_args(kind text, from_time timestamptz, to_time timestamptz, actors text[],
                                     include_success boolean, include_failures boolean)
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL RESTRICTED
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.report_condition(kind, from_time, to_time, actors, include_success, include_failures);
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.valid_report_args(text, timestamptz, timestamptz, text[], boolean, boolean) IS
    'Internal: the access check (42501) and the argument checks (22023) of a typed report written in SQL; true when both pass';

-- The access check of audit.report_data_change_rows, PARALLEL RESTRICTED
-- (audit.audit_access_ok() is unsafe and would keep the scan serial).
CREATE FUNCTION audit.reports_access_ok()
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.reports_access_ok() IS
    'Internal: true for audit roles, "no access to the security audit" (42501) for anyone else; parallel restricted';

-- The rows of one event of the data change report (src/reports.c): one per
-- changed field, (column_name, old_value, new_value) as the view below
-- names them, and the event's record_id as text on each; none for a
-- TRUNCATE, a refused change or an event without fields (the view's LEFT
-- JOIN gives those their one row).  It replaces, on the same rule, an
-- unnest of the column list (for an INSERT or DELETE of an array made by a
-- subquery over jsonb_object_keys()), two jsonb lookups and casts per row,
-- and record_id::text made once per row instead of once per event
-- (docs/performance.md, "The data change rows in C").  A pure function of
-- its arguments: EXECUTE stays with PUBLIC, as the view it serves is PUBLIC
-- and checks the access itself.
CREATE FUNCTION audit.data_change_fields(action text, status text, changed_columns text[], old_data jsonb,
                                         new_data jsonb, record_id jsonb, OUT column_name text,
                                         OUT old_value text, OUT new_value text, OUT record_text text)
RETURNS SETOF record
LANGUAGE c IMMUTABLE PARALLEL SAFE ROWS 3
AS 'MODULE_PATHNAME', 'audit_data_change_fields';
COMMENT ON FUNCTION audit.data_change_fields(text, text, text[], jsonb, jsonb, jsonb) IS
    'Internal (audit.report_data_change_rows): the changed fields of one data event with their old and new values as text, and its record_id as text; no row for a TRUNCATE or a refused change';

-- The rows of the data change report, one per changed field (INSERT: the
-- keys of new_data, DELETE: of old_data, UPDATE: changed_columns, each with
-- its old and new value; a TRUNCATE or a refused change one row without a
-- field).  A view, so that audit.report_data_changes() can be a SQL function
-- the planner inlines into the caller's query: its rows then stream (LIMIT
-- 1000 reads about 1000 events, a cursor gets its first rows at once),
-- the caller's filters reach the indexes and the scan may run in parallel.
-- It reads the events with its owner's rights and lets the audit roles only
-- through (42501 otherwise): its access check is a constant condition, which
-- the executor evaluates before any row is read.  Not a security_barrier
-- view: it hides no rows from the roles it lets through, and a barrier
-- would keep the caller's conditions (the period, the actors) out of the
-- scan of the events.
CREATE VIEW audit.report_data_change_rows AS
SELECT e.id AS event_id, e.event_time, e.actor, e.db_user, e.schema_name, e.table_name,
       coalesce(k.record_text, e.record_id::text) AS record_id, e.action, e.status, k.column_name, k.old_value,
       k.new_value, e.txid
  FROM audit.event e
  LEFT JOIN LATERAL audit.data_change_fields(e.action, e.status, e.changed_columns, e.old_data, e.new_data,
                                             e.record_id) k
         ON true
 WHERE audit.reports_access_ok()
   AND e.class = 'data' AND e.action IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');

COMMENT ON VIEW audit.report_data_change_rows IS
    'Internal (audit.report_data_changes): every data change event, one row per changed field; audit roles only (42501 otherwise)';

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.verification
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.verification ENABLE ALWAYS TRIGGER audit_append_only;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.verification_head
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.verification_head ENABLE ALWAYS TRIGGER audit_append_only;

GRANT SELECT ON audit.verification, audit.verification_head TO audit_admin, audit_reader;
GRANT SELECT ON audit.report_data_change_rows TO PUBLIC;
REVOKE ALL ON FUNCTION audit.verify_chains_from(bigint, bigint, timestamptz, timestamptz, bigint),
                       audit.record_verification() FROM PUBLIC;
-- end issue 21 (repperf)
-- ===========================================================================
-- issue 21 (repfast): a rendered data change report counts its rows per
-- event from the jsonb key sets (audit.build_report(), merged below)
-- ===========================================================================
CREATE FUNCTION audit.jsonb_key_count(j jsonb)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_jsonb_key_count';
COMMENT ON FUNCTION audit.jsonb_key_count(jsonb) IS
    'Internal: the number of keys of a JSON object (the rows of jsonb_object_keys()), read from the jsonb header; 22023 for a scalar or an array';
REVOKE ALL ON FUNCTION audit.jsonb_key_count(jsonb) FROM PUBLIC;
-- end issue 21 (repfast)
-- ===========================================================================
-- merged: objects that the blocks above define more than once, or that changed after them, end as
-- sql/src/ has them
-- ===========================================================================
CREATE OR REPLACE FUNCTION audit.create_event_indexes(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
    key text;
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
    -- 1.6: the rare events a record's history looks for beyond its own
    -- record_id, each in a partial index that other events never enter: the
    -- UPDATE that gave a record its key (detail.new_record_id, written by
    -- capture) and TRUNCATEs
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((detail -> ''new_record_id'')) '
                   'WHERE detail ? ''new_record_id''', name || '_key_change_idx', part);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (id) WHERE action = ''TRUNCATE''',
                   name || '_truncate_idx', part);
    -- 1.6: searches by the application's context (one session, one tenant
    -- ..., newest first): a btree per indexed key (audit_ext.
    -- context_index_keys, default session_id and tenant), ordered by
    -- (value, id) and partial on the key's presence, so an event without it
    -- enters none.  They replaced a GIN on the whole context (+560 B of WAL
    -- per event and 14% of OLTP TPS, yet a tenant's newest page sorted all
    -- of its events: 309 ms on 10M).  An entry for every event still cost
    -- about 10% of OLTP, so only the first event of a context run enters
    -- them (context_continues is not true; src/event_writer.c): the rest of
    -- the run follows it within 64 ids, and audit.search() reads that range
    -- (docs/performance.md, "1.6: context and risk").  Only documented keys
    -- are taken, whatever the setting says (it is checked by the library
    -- when loaded; a placeholder is not).
    FOR key IN SELECT DISTINCT btrim(k)
                 FROM unnest(string_to_array(coalesce(current_setting('audit_ext.context_index_keys', true),
                                                      'session_id, tenant'), ',')) k
                WHERE btrim(k) IN ('client_ip', 'session_id', 'user_agent', 'user_role', 'tenant', 'request_id') LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((context ->> %L), id) '
                       'WHERE context ? %L AND context_continues IS NOT TRUE',
                       name || '_ctx_' || key || '_idx', part, key, key);
    END LOOP;
    PERFORM audit.tune_event_partition(part);
END
$$;
COMMENT ON FUNCTION audit.create_event_indexes(regclass) IS
    'Internal: create the indexes every audit event partition has';

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
            -- fixed list has it, and ddl, system and app (1.6), whose actions
            -- are open.  Partition pruning then skips the others.
            SELECT c.key INTO action_class FROM jsonb_each(known) c WHERE c.value ? action;
            conds := conds || format('e.class IN (%s)',
                                     array_to_string(ARRAY(SELECT quote_literal(x)
                                                             FROM unnest(ARRAY[action_class, 'ddl', 'system', 'app']) x
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
            -- an application entity (schema_name NULL, 1.6) goes by its name
            -- as given: Customer is not folded to customer
            IF parts[1] IS DISTINCT FROM table_name THEN
                name_cond := format('(e.table_name = $7 OR (e.schema_name IS NULL AND e.table_name = %L))',
                                    table_name);
            ELSE
                name_cond := 'e.table_name = $7';
            END IF;
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
    before_id  bigint      DEFAULT NULL,
    client_ip  inet        DEFAULT NULL,
    session_id text        DEFAULT NULL,
    tenant     text        DEFAULT NULL,
    min_risk   text        DEFAULT NULL)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f         record;
    cond      text;
    risks     text[];
    lead_key  text;
    lead_ix   integer;
    heads     text;
    ranges    text;
    hd        record;
    part      audit.event[];
    found     audit.event[] := '{}';
    below     bigint;
    batch     integer;
    nth       bigint;
    -- a context run's bounds, as capture draws them (src/event_writer.c:
    -- AUDIT_CONTEXT_RUN_IDS, AUDIT_CONTEXT_RUN_SECONDS)
    run_ids   CONSTANT bigint := 64;
    run_span  CONSTANT interval := '1 hour';
BEGIN
    PERFORM audit.require_audit_role();
    risks := audit.risk_at_least(min_risk);
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'invalid max_rows %: must be between 1 and 10000', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Page through longer results with before_id, or use audit.export().';
    END IF;
    SELECT * INTO f FROM audit.search_filter(from_time, to_time, actor, action, class, table_name,
                                             record_id, status, query, before_id);
    cond := f.condition;
    -- 1.6: the application's context.  The key's presence is spelled out
    -- so that the planner may use a partial index; a network (not a host)
    -- is a range test on the address.
    IF session_id IS NOT NULL THEN
        cond := cond || ' AND e.context ? ''session_id'' AND (e.context ->> ''session_id'') = $18[1]';
    END IF;
    IF tenant IS NOT NULL THEN
        cond := cond || ' AND e.context ? ''tenant'' AND (e.context ->> ''tenant'') = $18[2]';
    END IF;
    IF client_ip IS NOT NULL THEN
        IF masklen(client_ip) = 32 * (family(client_ip) - 3) THEN   -- a host: /32 or /128
            cond := cond || ' AND e.context ? ''client_ip'' AND (e.context ->> ''client_ip'') = $18[3]';
        ELSE
            cond := cond || ' AND e.context ? ''client_ip'' AND (e.context ->> ''client_ip'')::inet <<= $17';
        END IF;
    END IF;
    IF risks IS NOT NULL THEN
        cond := cond || ' AND e.risk = ANY ($19)';
    END IF;

    -- A context key with an index (audit_ext.context_index_keys) leads the
    -- search.  Its index holds the first event of each context run only
    -- (audit.create_event_indexes); the rest of a run is in the same class
    -- and month, within 64 ids and an hour after it (src/event_writer.c,
    -- "Context runs").  So: take the key's run starts newest first, a batch
    -- at a time, read each one's id range with every filter, and stop once
    -- max_rows events are found that no older run can reach past.
    SELECT k.key, k.ix INTO lead_key, lead_ix
      FROM (VALUES ('session_id', 1, search.session_id IS NOT NULL),
                   ('tenant', 2, search.tenant IS NOT NULL),
                   ('client_ip', 3, search.client_ip IS NOT NULL
                                    AND masklen(search.client_ip) = 32 * (family(search.client_ip) - 3))) k(key, ix, given)
     WHERE k.given
       AND k.key IN (SELECT btrim(x) FROM unnest(string_to_array(coalesce(current_setting('audit_ext.context_index_keys', true),
                                                                      'session_id, tenant'), ',')) x)
     ORDER BY k.ix LIMIT 1;

    IF lead_key IS NULL THEN
        -- the page is chosen first; statement texts are joined to its rows only
        RETURN QUERY EXECUTE format(
            'SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,'
            '       e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,'
            '       e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,'
            '       s.statement_text, e.table_identity, e.context, e.risk'
            '  FROM (SELECT * FROM audit.event e WHERE %s ORDER BY e.id DESC LIMIT $13) e'
            '  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id'
            ' ORDER BY e.id DESC', cond)
            USING from_time, to_time, actor, action, class, f.schema_part, f.table_part,
                  record_id, status, f.text_pattern, f.json_pattern, before_id, max_rows, f.statement_ids,
                  f.id_from, f.id_to, client_ip, ARRAY[session_id, tenant, host(client_ip)], risks;
        RETURN;
    END IF;

    -- the run starts of the key's value $3 below $4, newest first, $5 of
    -- them (an event of the period has its run's start at most $6, an
    -- hour, before it); the other filters apply to the ranges only
    heads := format('SELECT array_agg(h.id ORDER BY h.id DESC) AS ids, array_agg(h.class ORDER BY h.id DESC) AS classes,'
                    '       array_agg(h.context_continues IS NOT NULL ORDER BY h.id DESC) AS runs,'
                    '       array_agg(DISTINCT h.class) AS class_set, min(h.event_time) AS t_min, max(h.event_time) AS t_max'
                    '  FROM (SELECT h.id, h.class, h.event_time, h.context_continues FROM audit.event h'
                    '         WHERE h.context ? %1$L AND (h.context ->> %1$L) = $3'
                    '           AND h.context_continues IS NOT TRUE AND h.id < $4%2$s%3$s'
                    '         ORDER BY h.id DESC LIMIT $5) h',
                    lead_key,
                    CASE WHEN to_time IS NOT NULL THEN ' AND h.event_time < $2' END,
                    CASE WHEN from_time IS NOT NULL THEN ' AND h.event_time >= $1 - $6' END);
    -- the events of those runs' ranges that pass every filter (a start
    -- whose context_continues is NULL is its own range).  The classes and
    -- the time span of the batch (a run lasts at most an hour) are
    -- parameters, so only the leaves they touch are planned; OFFSET 0 keeps
    -- each range a nested loop, read by id.
    ranges := format('SELECT array_agg(r.ev) FROM unnest($20, $21, $22) h(id, class, run)'
                     ' CROSS JOIN LATERAL'
                     '   (SELECT e AS ev FROM audit.event e'
                     '     WHERE e.class = ANY ($23) AND e.event_time >= $24 AND e.event_time <= $25'
                     '       AND e.class = h.class AND e.id >= h.id'
                     '       AND e.id <= h.id + CASE WHEN h.run THEN $26 ELSE 0 END'
                     '       AND %s OFFSET 0) r', cond);
    below := coalesce(before_id, 9223372036854775807);
    -- a run usually holds many events: a few starts first, then four times
    -- as many each round
    batch := 8;
    LOOP
        EXECUTE heads INTO hd
            USING from_time, to_time, (ARRAY[session_id, tenant, host(client_ip)])[lead_ix], below, batch, run_span;
        EXIT WHEN hd.ids IS NULL;
        EXECUTE ranges INTO part
            USING from_time, to_time, actor, action, class, f.schema_part, f.table_part,
                  record_id, status, f.text_pattern, f.json_pattern, before_id, max_rows, f.statement_ids,
                  f.id_from, f.id_to, client_ip, ARRAY[session_id, tenant, host(client_ip)], risks,
                  hd.ids, hd.classes, hd.runs, hd.class_set, hd.t_min, hd.t_max + run_span, run_ids;
        found := found || coalesce(part, '{}');
        below := hd.ids[cardinality(hd.ids)];
        EXIT WHEN cardinality(hd.ids) < batch;
        batch := least(batch * 4, 1024);
        -- done when the max_rows-th newest event found lies beyond every
        -- range still to read (their starts are below "below")
        IF cardinality(found) >= max_rows THEN
            SELECT x.id INTO nth
              FROM (SELECT DISTINCT u.id FROM unnest(found) u ORDER BY u.id DESC OFFSET max_rows - 1 LIMIT 1) x;
            EXIT WHEN nth >= below + run_ids;
        END IF;
    END LOOP;
    -- ranges may overlap: each event once
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text, e.table_identity, e.context, e.risk
          FROM (SELECT DISTINCT ON (u.id) u.* FROM unnest(found) u ORDER BY u.id DESC LIMIT max_rows) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id DESC;
END
$$;
COMMENT ON FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint, inet, text, text, text) IS
    'Search the trail, newest first: every filter optional; at most max_rows (1..10000) rows; next page with before_id => last id seen; client_ip, session_id, tenant filter by the application''s context, min_risk by risk level';

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
    IF record_history.table_name IS NULL THEN
        RAISE EXCEPTION 'invalid table: table_name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give schema_name and table_name of a table, or schema_name NULL and an application entity.';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- 1.6: schema_name NULL names an application entity (audit.log_event):
    -- its events are those whose record_id holds the key given
    IF record_history.schema_name IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
                   e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
                   e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
                   s.statement_text, e.table_identity, e.context, e.risk
              FROM audit.event e
              LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
             WHERE e.class = 'app' AND e.schema_name IS NULL
               AND e.table_name = record_history.table_name
               AND e.record_id @> rec
             ORDER BY e.id;
        RETURN;
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
    RETURN QUERY SELECT * FROM audit.history_rows(sc, rec, live);
END
$$;
COMMENT ON FUNCTION audit.record_history(text, text, jsonb) IS
    'The events of one record of a table given by its names as recorded (also for a dropped table), oldest first; schema_name NULL: the application events of an entity''s record (audit.log_event)';

-- (Re)create the audit triggers with options and flags, keeping the digest
-- columns the table has.
CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
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

-- A table's current name by its identity ("schema.table", quoted as in SQL;
-- the last name of a dropped one), for the figures that count per table.
CREATE FUNCTION audit.identity_label(ident bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', h.schema_name, h.table_name) FROM audit.audited_table_history h
     WHERE h.table_identity = ident
     ORDER BY h.valid_until IS NULL DESC, h.valid_until DESC LIMIT 1
$$;
COMMENT ON FUNCTION audit.identity_label(bigint) IS
    'Internal: the current (or last) name of the table with this identity, as schema.table';

REVOKE ALL ON FUNCTION audit.identity_label(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.activity_summary(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
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
            SELECT e.class, e.action, e.actor, e.table_identity, e.schema_name, e.table_name, e.risk,
                   GROUPING(e.class, e.action) AS g_ca,
                   GROUPING(e.actor) AS g_a,
                   GROUPING(e.table_identity, e.schema_name, e.table_name) AS g_t,
                   GROUPING(e.risk) AS g_r,
                   count(*) AS n,
                   count(*) FILTER (WHERE e.status = 'failure') AS failed
              FROM audit.event e
             WHERE %s
             GROUP BY GROUPING SETS ((e.class, e.action), (e.actor), (e.table_identity, e.schema_name, e.table_name), (e.risk), ())
        )
        SELECT $1, $2,
               coalesce((SELECT g.n FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 7 AND g.g_r = 1), 0),
               coalesce((SELECT g.failed FROM g WHERE g.g_ca = 3 AND g.g_a = 1 AND g.g_t = 7 AND g.g_r = 1), 0),
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
                           -- a table by its identity under its current name (1.6)
                           FROM (SELECT coalesce(audit.identity_label(g.table_identity),
                                                 CASE WHEN g.schema_name IS NULL THEN format('%%I', g.table_name)
                                                      ELSE format('%%I.%%I', g.schema_name, g.table_name) END) AS tbl,
                                        sum(g.n)::bigint AS n
                                   FROM g WHERE g.g_t = 0 AND g.table_name IS NOT NULL
                                  GROUP BY 1
                                  ORDER BY 2 DESC, 1 LIMIT 10) t),
                        '[]'::jsonb),
               (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                  FROM pg_class c
                 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'm')),
               -- 1.6: events per risk level (events captured before 1.6 have none)
               coalesce((SELECT jsonb_object_agg(coalesce(g.risk, 'none'), g.n)
                           FROM g WHERE g.g_r = 0 AND g.g_ca = 3), '{}'::jsonb)
    $q$, CASE WHEN cardinality(conds) = 0 THEN 'true' ELSE array_to_string(conds, ' AND ') END)
        USING from_time, to_time;
END
$$;
COMMENT ON FUNCTION audit.activity_summary(timestamptz, timestamptz) IS
    'Dashboard figures for a period (from_time inclusive, to_time exclusive): totals, failures, events by class and action, top 10 actors and tables, storage used by the whole trail, events by risk level';

DROP FUNCTION audit.user_activity(text, timestamptz, timestamptz);
CREATE FUNCTION audit.user_activity(actor text, from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL)
RETURNS TABLE (total_actions bigint, records_created bigint, records_modified bigint, records_deleted bigint,
               records_viewed bigint, exports bigint, logins bigint, failed_logins bigint, sessions bigint,
               avg_session interval, actions_by_table jsonb, first_activity timestamptz, last_activity timestamptz,
               reports_generated bigint, password_changes bigint)
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
                   e.schema_name, e.table_name, e.table_identity, e.detail, e.context,
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
            UNION ALL
            -- 1.6: an application session, LOGIN -> LOGOUT (class app) paired
            -- by the context's session_id: the latest LOGIN of that session
            -- before the LOGOUT (a LOGOUT with no session_id or no LOGIN
            -- counts as a session of unknown length)
            SELECT l.event_time - (SELECT li.event_time FROM audit.event li
                                    WHERE li.actor = $1 AND li.class = 'app'
                                      AND li.action = 'LOGIN' AND li.status = 'success'
                                      AND li.context ? 'session_id' AND (li.context ->> 'session_id') = (l.context ->> 'session_id')
                                      AND li.id < l.id
                                    ORDER BY li.id DESC LIMIT 1) AS length
              FROM ev l
             WHERE l.class = 'app' AND l.action = 'LOGOUT' AND l.status = 'success'
        ), per_table AS (
            -- a table by its identity under its current name (1.6: renames
            -- are one table); application entities (schema_name NULL) by
            -- their own name
            SELECT t.tbl, jsonb_object_agg(t.action, t.n) AS actions
              FROM (SELECT coalesce(audit.identity_label(g.table_identity),
                                    CASE WHEN g.schema_name IS NULL THEN g.table_name
                                         ELSE format('%%I.%%I', g.schema_name, g.table_name) END) AS tbl,
                           g.action, sum(g.n)::bigint AS n
                      FROM (SELECT x.table_identity, x.schema_name, x.table_name, x.action, count(*) AS n
                              FROM ev x WHERE x.table_name IS NOT NULL
                             GROUP BY 1, 2, 3, 4) g
                     GROUP BY 1, 2) t
             GROUP BY 1
        )
        SELECT count(*),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'INSERT' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'UPDATE' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'data' AND ev.action = 'DELETE' AND ev.status = 'success'),
               coalesce(sum(ev.nrows) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'), 0)::bigint
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'VIEW' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'read' AND ev.status = 'success'
                                  AND (ev.action = 'COPY' OR ev.nrows >= $4))
                 + count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'EXPORT' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app') AND ev.action = 'LOGIN' AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class IN ('auth', 'app')
                                  AND (ev.action = 'LOGIN_FAILED' OR (ev.action = 'LOGIN' AND ev.status = 'failure'))),
               (SELECT count(*) FROM ended),
               (SELECT avg(ended.length) FROM ended),
               coalesce((SELECT jsonb_object_agg(per_table.tbl, per_table.actions) FROM per_table), '{}'::jsonb),
               min(ev.event_time),
               max(ev.event_time),
               count(*) FILTER (WHERE ev.action = 'REPORT_GENERATED' AND ev.class IN ('system', 'app')
                                  AND ev.status = 'success'),
               count(*) FILTER (WHERE ev.class = 'app' AND ev.action = 'PASSWORD_CHANGE'
                                  AND ev.status = 'success')
          FROM ev
    $q$, conds)
        USING user_activity.actor, user_activity.from_time, user_activity.to_time, threshold;
END
$$;
COMMENT ON FUNCTION audit.user_activity(text, timestamptz, timestamptz) IS
    'What one actor did in a period (from_time inclusive, to_time exclusive): one row of counts, sessions, actions per table and application entity, first and last activity, reports generated (audit.render_report() and application REPORT_GENERATED events), password changes; application events count too (LOGIN, LOGIN_FAILED, LOGOUT, VIEW, EXPORT, REPORT_GENERATED, PASSWORD_CHANGE: audit.app_actions())';

DROP FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text[], text);
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

COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text[], text, text) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start; digest_columns (bytea, text, jsonb) are recorded as {"sha256": ..., "bytes": n} instead of their value; sensitivity (low, medium, high, critical; ''none'' removes it) raises every data and read event of the table to at least that risk; capture => ''wal'' captures the table''s changes from the WAL (asynchronous, needs wal_level = logical; sets REPLICA IDENTITY FULL), ''trigger'' with the change (not given: the table keeps its mode; a new table is captured by trigger)';

-- (Re)create the audit triggers with options, flags and digest columns (1.6:
-- the row trigger's fourth argument; '{}' leaves it out).
CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[],
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

-- Hardened by the fuzz tests (docs/testing.md): an OID naming no relation is
-- refused (42P01), and the table is locked before its triggers are read, so
-- that concurrent calls on one table wait for each other.
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

-- The audited tables with their options.  capturing tells the truth: false
-- for a replica-only trigger, a missing or disabled truncate trigger, a
-- partition or inheritance child not captured (audit.capture_state() says
-- which).  Upgrades replace it with CREATE OR REPLACE VIEW, so new columns
-- go at the end.
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

REVOKE ALL ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text[],text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text[],text,text) TO audit_admin;

-- The risk of an event captured before 1.6 (since then capture writes
-- audit.event.risk and the reports read coalesce(e.risk, audit.report_risk(...))):
-- derived in one place from the event's own "risk" detail (what capture
-- recorded for critical events) and its class, action and status.
CREATE OR REPLACE FUNCTION audit.report_risk(class text, action text, status text, detail jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN detail ->> 'risk' IN ('low', 'medium', 'high', 'critical') THEN detail ->> 'risk'
        WHEN (detail ->> 'grants_superuser') = 'true' OR (detail ->> 'audit_protection_off') = 'true'
             OR (detail ->> 'capture_off') = 'true' THEN 'critical'
        WHEN class = 'privilege' THEN 'high'
        WHEN class = 'auth' AND (action = 'LOGIN_FAILED' OR status = 'failure') THEN 'medium'
        WHEN status = 'failure' THEN 'medium'
        WHEN class IN ('ddl', 'system') THEN 'medium'
        ELSE 'low'
    END
$$;
COMMENT ON FUNCTION audit.report_risk(text, text, text, jsonb) IS
    'Internal: risk of an event captured before 1.6 for the reports (low, medium, high, critical); later events carry audit.event.risk';

-- Checks the common report arguments and returns the WHERE condition over
-- "audit.event e" of the kind's scope, with fixed parameters:
--   $1 from_time  $2 to_time  $3 actors  $4 export threshold
CREATE OR REPLACE FUNCTION audit.report_condition(kind text, from_time timestamptz, to_time timestamptz,
                                       actors text[], include_success boolean, include_failures boolean)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conds text[] := ARRAY['e.event_time >= $1', 'e.event_time < $2'];
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'invalid report period: from_time and to_time must be given and finite'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A report covers [from_time, to_time), e.g. from_time => ''2026-01-01'', to_time => ''2026-02-01''.';
    END IF;
    PERFORM audit.check_time_range(from_time, to_time);
    IF actors IS NOT NULL THEN
        IF cardinality(actors) = 0 OR array_position(actors, NULL) IS NOT NULL OR '' = ANY (actors) THEN
            RAISE EXCEPTION 'invalid actors %: must be NULL (all actors) or a list of non-empty names', actors
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        conds := conds || 'e.actor = ANY ($3)'::text;
    END IF;
    IF include_success IS NULL OR include_failures IS NULL THEN
        RAISE EXCEPTION 'invalid include_success/include_failures: must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF NOT include_success AND NOT include_failures THEN
        RAISE EXCEPTION 'invalid report filter: include_success and include_failures are both false'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A report shows successes, failures or both.';
    ELSIF NOT include_success THEN
        conds := conds || 'e.status = ''failure'''::text;
    ELSIF NOT include_failures THEN
        conds := conds || 'e.status = ''success'''::text;
    END IF;
    -- the scope of each kind; the application's own events (class app) count
    -- where the database's would: logins and views, account events, exports,
    -- settings and permission changes.  An event rated high or critical is a
    -- security event whatever its class.
    conds := conds || CASE kind
        WHEN 'user_access' THEN
            $c$(e.class IN ('auth', 'read')
                OR (e.class = 'app' AND e.action IN ('LOGIN', 'LOGIN_FAILED', 'LOGOUT', 'VIEW')))$c$
        WHEN 'data_changes' THEN $c$e.class = 'data' AND e.action IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')$c$
        WHEN 'security_events' THEN
            $c$(   (e.class = 'auth' AND e.action <> 'LOGOUT')
                OR e.class = 'privilege'
                OR e.status = 'failure'
                OR (e.class IN ('ddl', 'system')
                    AND (e.detail ? 'risk' OR e.detail ? 'audit_protection_off' OR e.detail ? 'capture_off'
                         OR e.detail ? 'audit_trigger_disabled'))
                OR (e.class = 'app' AND e.action IN ('LOGIN', 'LOGIN_FAILED', 'PASSWORD_CHANGE', 'PASSWORD_RESET',
                                                     'MFA_ENROLL', 'MFA_FAILED', 'ACCOUNT_LOCKED', 'ACCOUNT_UNLOCKED',
                                                     'API_KEY_CREATE', 'API_KEY_REVOKE', 'PERMISSION_CHANGE',
                                                     'ROLE_CHANGE'))
                OR e.risk IN ('high', 'critical'))$c$
        WHEN 'exports' THEN
            $c$((e.class = 'read' AND (e.action = 'COPY'
                 OR (CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END) >= $4))
                OR (e.class = 'app' AND e.action = 'EXPORT'))$c$
        WHEN 'admin_activity' THEN
            $c$(e.class IN ('ddl', 'privilege', 'system')
                OR (e.class = 'app' AND e.action IN ('SETTINGS_CHANGE', 'PERMISSION_CHANGE', 'ROLE_CHANGE',
                                                     'API_KEY_CREATE', 'API_KEY_REVOKE')))$c$
        WHEN 'system_access' THEN $c$true$c$
    END;
    IF kind IS NULL OR NOT EXISTS (SELECT 1 FROM audit.report_kinds k WHERE k.kind = report_condition.kind) THEN
        RAISE EXCEPTION 'invalid report kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are listed in audit.report_kinds: '
                         || (SELECT string_agg(k.kind, ', ' ORDER BY k.position) FROM audit.report_kinds k) || '.';
    END IF;
    RETURN array_to_string(conds, ' AND ');
END
$$;
COMMENT ON FUNCTION audit.report_condition(text, timestamptz, timestamptz, text[], boolean, boolean) IS
    'Internal: check the report arguments and build the WHERE condition of a report kind''s events ($1 from, $2 to, $3 actors, $4 export threshold)';

CREATE OR REPLACE FUNCTION audit.report_user_access(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                         include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, access text,
               class text, action text, status text, database text, application_name text,
               client_addr inet, schema_name text, table_name text, rows bigint, reason text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text,
               CASE WHEN e.class = 'app' AND e.action = 'VIEW' THEN 'view'
                    WHEN e.class = 'read' AND e.status = 'failure' THEN 'read denied'
                    WHEN e.class = 'read' AND e.action = 'COPY' THEN 'copy'
                    WHEN e.class = 'read' THEN 'read'
                    WHEN e.action = 'LOGOUT' THEN 'logout'
                    WHEN e.action = 'LOGIN_FAILED' OR e.status = 'failure' THEN 'login failed'
                    ELSE 'login' END,
               e.class::text, e.action::text, e.status::text,
               coalesce(e.detail ->> 'database', pg_catalog.current_database()::text),
               e.application_name::text, e.client_addr, e.schema_name::text, e.table_name::text,
               CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END,
               e.detail ->> 'reason'
          FROM audit.event e
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('user_access', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_user_access(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: who accessed what, when (logins with database, application and client, failed logins, logouts, audited reads); [from_time, to_time), actors NULL = all';

CREATE OR REPLACE FUNCTION audit.report_security_events(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                             include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, category text, risk text,
               class text, action text, status text, object text, application_name text, client_addr inet,
               reason text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    -- risk: the event's own (1.6), derived for events captured before
    RETURN QUERY EXECUTE format($q$
        SELECT e.id, e.event_time, e.actor::text, e.db_user::text,
               CASE WHEN e.class IN ('auth', 'app') AND (e.action = 'LOGIN_FAILED' OR e.status = 'failure') THEN 'failed login'
                    WHEN e.class IN ('auth', 'app') AND e.action = 'LOGIN' THEN 'login'
                    WHEN e.class = 'app' AND e.action IN ('PASSWORD_CHANGE', 'PASSWORD_RESET') THEN 'password change'
                    WHEN e.class = 'app' AND e.action IN ('MFA_ENROLL', 'MFA_FAILED') THEN 'two-factor'
                    WHEN e.class = 'app' AND e.action IN ('ACCOUNT_LOCKED', 'ACCOUNT_UNLOCKED') THEN 'account'
                    WHEN e.class = 'app' AND e.action IN ('API_KEY_CREATE', 'API_KEY_REVOKE') THEN 'api key'
                    WHEN e.class = 'app' AND e.action IN ('PERMISSION_CHANGE', 'ROLE_CHANGE') THEN 'role change'
                    WHEN e.class = 'auth' THEN lower(e.action)
                    WHEN e.class = 'privilege' AND e.action IN ('CREATE ROLE', 'ALTER ROLE', 'DROP ROLE',
                                                                'GRANT ROLE', 'REVOKE ROLE') THEN 'role change'
                    WHEN e.class = 'privilege' THEN 'privilege change'
                    WHEN e.status = 'failure' THEN 'denied'
                    ELSE 'auditing switched off' END,
               coalesce(e.risk, audit.report_risk(e.class, e.action, e.status, e.detail))::text,
               e.class::text, e.action::text, e.status::text,
               coalesce(CASE WHEN e.table_name IS NOT NULL THEN
                            coalesce(e.schema_name || '.', '') || e.table_name END,
                        e.detail ->> 'role',
                        CASE WHEN e.detail ? 'grantees' THEN 'to ' || (e.detail ->> 'grantees') END),
               e.application_name::text, e.client_addr,
               coalesce(e.detail ->> 'reason', e.detail ->> 'error')
          FROM audit.event e
         WHERE %s
         ORDER BY e.event_time, e.id
    $q$, audit.report_condition('security_events', from_time, to_time, actors, include_success, include_failures))
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_security_events(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: login attempts, failed logins, privilege and role changes, denied attempts, auditing switched off, each with its risk';

-- The report itself, and its count of detail rows (for audit.reports).
CREATE OR REPLACE FUNCTION audit.build_report(kind text, from_time timestamptz, to_time timestamptz, actors text[],
                                   include_success boolean, include_failures boolean, format text,
                                   OUT content text, OUT rows bigint)
RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap       constant integer := 1000;     -- detail rows shown in HTML (CSV has all)
    k         audit.report_kinds;
    cond      text;
    fn        text;
    cols      text[];
    total     bigint;
    detail    json;
    csv       text;
    unit      text;
    days      numeric;
    g         record;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ca_labels text[];
    ca_vals   bigint[];
    a_labels  text[];
    a_vals    bigint[];
    r_labels  text[];
    r_vals    bigint[];
    n_events  bigint;
    n_fail    bigint;
    n_actors  bigint;
    first_t   timestamptz;
    last_t    timestamptz;
    body      text;
    fmt_label text;
    risk_expr text := 'NULL::text';
    rows_expr text := 'NULL::integer';
    det_rows  text;
BEGIN
    IF build_report.format IS NULL OR build_report.format NOT IN ('html', 'csv') THEN
        RAISE EXCEPTION 'invalid format "%": must be html or csv', build_report.format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PDF is made from the HTML by scripts/report-pdf.sh.';
    END IF;
    cond := audit.report_condition(build_report.kind, from_time, to_time, actors, include_success, include_failures);
    SELECT * INTO k FROM audit.report_kinds rk WHERE rk.kind = build_report.kind;
    fn := k.function;
    cols := audit.report_columns(k.kind);

    IF build_report.format = 'csv' THEN
        EXECUTE pg_catalog.format(
            'SELECT count(*), string_agg((SELECT string_agg(audit.csv_field(v.value), '','' ORDER BY v.i)'
            '                             FROM json_each_text(r.j) WITH ORDINALITY v(key, value, i)), E''\n'' ORDER BY r.n)'
            '  FROM (SELECT row_to_json(x) AS j, row_number() OVER () AS n FROM %s($1, $2, $3, $4, $5) x) r', fn)
            INTO total, csv USING from_time, to_time, actors, include_success, include_failures;
        PERFORM audit.log_system_event('REPORT_GENERATED',
            jsonb_build_object('kind', k.kind, 'format', 'csv', 'from', from_time, 'to', to_time,
                               'actors', to_jsonb(actors), 'rows', total));
        content := (SELECT string_agg(audit.csv_field(c), ',' ORDER BY i) FROM unnest(cols) WITH ORDINALITY u(c, i))
                   || E'\n' || coalesce(csv || E'\n', '');
        rows := total;
        RETURN;
    END IF;


    -- One statement for the detail rows (all counted, the first "cap" made)
    -- and the charts: one snapshot, so that the figures and the rows agree
    -- even in READ COMMITTED (the typed functions are STABLE: they run in
    -- the snapshot of the statement that calls them).
    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    fmt_label := CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW' WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END;
    IF k.kind = 'security_events' THEN
        -- the event's own risk (1.6), derived for events captured before
        risk_expr := 'coalesce(e.risk, audit.report_risk(e.class, e.action, e.status, e.detail))';
    END IF;
    IF k.kind = 'data_changes' THEN
        -- The data change report has one row per changed field: making every
        -- one of them to count them cost 156 s for a month of 5.36M events.
        -- They are counted per event instead, in the pass of the charts
        -- below, exactly as audit.report_data_change_rows makes them (its
        -- LEFT JOIN LATERAL unnest(...): an UPDATE one per element of
        -- changed_columns, an INSERT or DELETE one per key of new_data, else
        -- old_data, at least one; a TRUNCATE or a refused change one), and
        -- only the first "cap" rows are made (audit.report_data_changes() is
        -- inlined and streams: LIMIT stops it).  The same events: the
        -- kind's condition is the typed function's.
        rows_expr := $r$CASE WHEN e.status = 'success' AND e.action = 'UPDATE'
                             THEN greatest(coalesce(cardinality(e.changed_columns), 0), 1)
                             WHEN e.status = 'success' AND e.action IN ('INSERT', 'DELETE')
                             THEN greatest(coalesce(audit.jsonb_key_count(coalesce(e.new_data, e.old_data)), 0), 1)
                             ELSE 1 END$r$;
        det_rows := $d$
            SELECT NULL::bigint AS total, json_agg(r.j ORDER BY r.n) AS detail
              FROM (SELECT row_to_json(x) AS j, row_number() OVER () AS n
                      FROM (SELECT * FROM %s($1, $2, $3, $5, $6) LIMIT $7) x) r$d$;
    ELSE
        -- one row per event (a group for system_access) made by a plpgsql
        -- function, which makes them all before the first leaves: counted
        -- as they come, the first "cap" kept
        det_rows := $d$
            SELECT count(*) AS total, json_agg(r.j ORDER BY r.n) FILTER (WHERE r.n <= $7) AS detail
              FROM (SELECT CASE WHEN row_number() OVER () <= $7 THEN row_to_json(x) END AS j,
                           row_number() OVER () AS n FROM %s($1, $2, $3, $5, $6) x) r$d$;
    END IF;
    -- First one hash aggregate over the events (bucket, status, class,
    -- action, actor, risk), then the four groupings over its rows: grouping
    -- sets straight over a million events sorted them once per set.  The
    -- events come through a subquery that is not flattened (OFFSET 0): the
    -- planner then does not derive the number of buckets from event_time's
    -- distinct values (one per event) and hashes the groups (about 90,000
    -- for a month of 10M events) instead of sorting every event by them on
    -- disk (1.9 GB, most of 77 s for the data change report).
    EXECUTE pg_catalog.format($q$
        WITH det AS (%4$s
        ), base AS (
            SELECT s.bucket, s.status, s.class, s.action, s.actor, s.risk,
                   count(*) AS n, sum(s.nrows)::bigint AS nrows, min(s.event_time) AS first_t, max(s.event_time) AS last_t
              FROM (SELECT date_trunc(%1$L, e.event_time) AS bucket, e.status, e.class, e.action, e.actor,
                           %2$s AS risk, %5$s AS nrows, e.event_time
                      FROM audit.event e
                     WHERE %3$s
                    OFFSET 0) s
             GROUP BY 1, 2, 3, 4, 5, 6
        ), g AS (
            SELECT CASE WHEN GROUPING(b.bucket) = 0 THEN 1
                        WHEN GROUPING(b.class) = 0 THEN 2
                        WHEN GROUPING(b.actor) = 0 THEN 3
                        WHEN GROUPING(b.risk) = 0 THEN 4 ELSE 0 END AS k,
                   b.bucket, b.status, b.class, b.action, b.actor, b.risk,
                   sum(b.n)::bigint AS n, (sum(b.n) FILTER (WHERE b.status = 'failure'))::bigint AS failed,
                   sum(b.nrows)::bigint AS nrows, min(b.first_t) AS first_t, max(b.last_t) AS last_t
              FROM base b
             GROUP BY GROUPING SETS ((b.bucket, b.status), (b.class, b.action), (b.actor), (b.risk), ())
        )
        SELECT coalesce((SELECT det.total FROM det), (SELECT coalesce(sum(g.nrows), 0)::bigint FROM g WHERE g.k = 0)),
               (SELECT det.detail FROM det),
               (SELECT coalesce(sum(g.n), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT coalesce(sum(g.failed), 0)::bigint FROM g WHERE g.k = 0),
               (SELECT count(*) FROM g WHERE g.k = 3 AND g.actor IS NOT NULL),
               (SELECT min(g.first_t) FROM g WHERE g.k = 0),
               (SELECT max(g.last_t) FROM g WHERE g.k = 0),
               (SELECT json_agg(json_build_object('bucket', g.bucket, 'status', g.status, 'n', g.n)) FROM g WHERE g.k = 1),
               (SELECT array_agg(x.class || ' ' || x.action ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.class, x.action)
                  FROM (SELECT * FROM g WHERE g.k = 2 ORDER BY g.n DESC, g.class, g.action LIMIT 15) x),
               (SELECT array_agg(coalesce(x.actor, '(none)') ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(x.n ORDER BY x.n DESC, x.actor)
                  FROM (SELECT * FROM g WHERE g.k = 3 ORDER BY g.n DESC, g.actor LIMIT 10) x),
               (SELECT array_agg(g.risk ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL),
               (SELECT array_agg(g.n ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], g.risk))
                  FROM g WHERE g.k = 4 AND g.risk IS NOT NULL)
    $q$, unit, risk_expr, cond, pg_catalog.format(det_rows, fn), rows_expr)
        INTO total, detail, n_events, n_fail, n_actors, first_t, last_t, t_json, ca_labels, ca_vals, a_labels, a_vals,
             r_labels, r_vals
        USING from_time, to_time, actors, audit.export_threshold(), include_success, include_failures, cap;

    -- time buckets: every bucket of the period when there are at most 400,
    -- else only those with events
    FOR g IN
        SELECT b.bucket,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'success'), 0)::bigint AS ok,
               coalesce(sum(x.n) FILTER (WHERE x.status = 'failure'), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, j.value ->> 'status' AS status,
                            (j.value ->> 'n')::bigint AS n
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, fmt_label);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    body := pg_catalog.format('<header><h1>%s</h1>', audit.html(k.title))
        || pg_catalog.format('<table class="meta" id="meta">'
                  '<tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                  '<tr><td>Actors</td><td id="filter-actors">%s</td></tr>'
                  '<tr><td>Outcomes</td><td id="filter-outcomes">%s</td></tr>'
                  '<tr><td>Generated</td><td id="generated">%s by %s%s, database %s</td></tr></table>'
                  '<p class="meta">%s</p></header>',
                  audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                  CASE WHEN actors IS NULL THEN 'all' ELSE audit.html(array_to_string(actors, ', ')) END,
                  CASE WHEN include_success AND include_failures THEN 'successes and failures'
                       WHEN include_success THEN 'successes only' ELSE 'failures only' END,
                  audit.html(now()::text), audit.html(audit.session_role()),
                  CASE WHEN coalesce(current_setting('audit_ext.actor', true), '') NOT IN ('', audit.session_role())
                       THEN ' (actor ' || audit.html(current_setting('audit_ext.actor', true)) || ')' ELSE '' END,
                  audit.html(current_database()), audit.html(k.description))
        || '<section id="summary"><h2>Summary</h2><div class="figures">'
        || audit.report_figure('events', audit.report_number(n_events), 'fig-events')
        || audit.report_figure('failures', audit.report_number(n_fail), 'fig-failures')
        || audit.report_figure('actors', audit.report_number(n_actors), 'fig-actors')
        || audit.report_figure('detail rows', audit.report_number(total), 'fig-rows')
        || audit.report_figure('first event', coalesce(to_char(first_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || audit.report_figure('last event', coalesce(to_char(last_t, 'YYYY-MM-DD HH24:MI'), '-'))
        || '</div></section><section id="charts"><h2>Charts</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-class-action', 'Events by class and action', ca_labels, ca_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || CASE WHEN k.kind = 'security_events'
                THEN audit.svg_bar_chart('chart-risk', 'Events by risk', r_labels, r_vals) ELSE '' END
        || '</div></section>'
        || '<section id="detail"><h2>Detail</h2>'
        || pg_catalog.format('<p class="note" id="detail-count" data-total="%s" data-shown="%s">%s</p>',
                             total, least(total, cap),
                             CASE WHEN total > cap
                                  THEN pg_catalog.format('The first %s of %s rows are shown; the full list: format => ''csv'' or %s(...).',
                                                         audit.report_number(cap), audit.report_number(total), audit.html(fn))
                                  ELSE pg_catalog.format('All %s rows.', audit.report_number(total)) END)
        || audit.report_table(cols, coalesce(detail, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · %s(%s, %s) · recorded as system/REPORT_GENERATED</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')),
                             audit.html(fn), audit.html(from_time::text), audit.html(to_time::text));

    PERFORM audit.log_system_event('REPORT_GENERATED',
        jsonb_build_object('kind', k.kind, 'format', 'html', 'from', from_time, 'to', to_time,
                           'actors', to_jsonb(actors), 'rows', total, 'events', n_events));
    content := audit.report_page(k.title || ' ' || to_char(from_time, 'YYYY-MM-DD') || ' – ' || to_char(to_time, 'YYYY-MM-DD'),
                                 body);
    rows := total;
END
$$;
COMMENT ON FUNCTION audit.build_report(text, timestamptz, timestamptz, text[], boolean, boolean, text) IS
    'Internal: audit.render_report() without the access check, with the number of detail rows';

CREATE OR REPLACE FUNCTION audit.render_dashboard(from_time timestamptz DEFAULT now() - interval '30 days',
                                       to_time timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today     bigint;
    week      bigint;
    month     bigint;
    active    bigint;
    texts     bigint;
    arch_n    bigint;
    arch_b    bigint;
    t_json    json;
    t_labels  text[] := '{}';
    t_ok      bigint[] := '{}';
    t_fail    bigint[] := '{}';
    ty_labels text[];
    ty_vals   bigint[];
    n_events  bigint;
    n_fail    bigint;
    by_class  jsonb;
    d_day     timestamptz;
    d_week    timestamptz;
    d_month   timestamptz;
    a_labels  text[];
    a_vals    bigint[];
    recent    json;
    alerts    json;
    open_n    bigint;
    g         record;
    days      numeric;
    unit      text;
    body      text;
BEGIN
    PERFORM audit.require_audit_role();
    IF from_time IS NULL OR to_time IS NULL OR NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'invalid dashboard period: from_time and to_time must be given and finite'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM audit.check_time_range(from_time, to_time);

    SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint INTO active
      FROM pg_partition_tree('audit.event'::regclass) t WHERE t.isleaf;
    texts := pg_total_relation_size('audit.statement'::regclass);
    SELECT count(*), coalesce(sum(a.bytes), 0)::bigint INTO arch_n, arch_b FROM audit.archives a;

    days := (extract(epoch FROM to_time) - extract(epoch FROM from_time)) / 86400;   -- (to - from overflows for extreme times)
    unit := CASE WHEN days <= 62 THEN 'day' WHEN days <= 371 THEN 'week' WHEN days <= 3660 THEN 'month' ELSE 'year' END;
    -- One pass over the period's events for the figures, the events per
    -- day, the activity by type and the top actors: a hash aggregate by
    -- (bucket, status, class, actor).  It replaces three passes over the
    -- period (today/week/month, the buckets, audit.activity_summary()'s
    -- grouping sets, which also grouped by action, table and risk for
    -- figures the page does not show).  Today, this week and this month:
    -- with day buckets (periods up to 62 days) sums of whole buckets (their
    -- starts are midnights: an event is at or after one exactly when its day
    -- is), with longer buckets counted by each group; the events of those
    -- ranges outside the period (a period that starts after the month does,
    -- events after to_time) are counted apart, from those ranges only.
    d_day := date_trunc('day', now());
    d_week := date_trunc('week', now());
    d_month := date_trunc('month', now());
    -- (the subquery, not flattened, as in audit.build_report(): hashed
    -- groups, not every event sorted by them)
    EXECUTE pg_catalog.format($q$
        WITH base AS (
            SELECT s.bucket, s.status, s.class, s.actor, count(*) AS n, %s
              FROM (SELECT date_trunc($3, e.event_time) AS bucket, e.status, e.class, e.actor, e.event_time
                      FROM audit.event e
                     WHERE e.event_time >= $1 AND e.event_time < $2
                    OFFSET 0) s
             GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT json_agg(json_build_object('bucket', x.bucket, 'ok', x.ok, 'failed', x.failed))
                  FROM (SELECT b.bucket, coalesce(sum(b.n) FILTER (WHERE b.status = 'success'), 0)::bigint AS ok,
                               coalesce(sum(b.n) FILTER (WHERE b.status = 'failure'), 0)::bigint AS failed
                          FROM base b GROUP BY 1) x),
               (SELECT coalesce(sum(b.n), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n) FILTER (WHERE b.status = 'failure'), 0)::bigint FROM base b),
               (SELECT coalesce(jsonb_object_agg(c.class, c.n), '{}'::jsonb)
                  FROM (SELECT b.class, sum(b.n)::bigint AS n FROM base b GROUP BY 1) c),
               (SELECT array_agg(t.actor::text ORDER BY t.n DESC, t.actor)
                  FROM (SELECT b.actor, sum(b.n)::bigint AS n FROM base b WHERE b.actor IS NOT NULL
                         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
               (SELECT array_agg(t.n ORDER BY t.n DESC, t.actor)
                  FROM (SELECT b.actor, sum(b.n)::bigint AS n FROM base b WHERE b.actor IS NOT NULL
                         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10) t),
               (SELECT coalesce(sum(b.n_day), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n_week), 0)::bigint FROM base b),
               (SELECT coalesce(sum(b.n_month), 0)::bigint FROM base b)
    $q$, CASE WHEN unit = 'day'
              THEN 'CASE WHEN s.bucket >= $4 THEN count(*) END AS n_day,
                    CASE WHEN s.bucket >= $5 THEN count(*) END AS n_week,
                    CASE WHEN s.bucket >= $6 THEN count(*) END AS n_month'
              ELSE 'count(*) FILTER (WHERE s.event_time >= $4) AS n_day,
                    count(*) FILTER (WHERE s.event_time >= $5) AS n_week,
                    count(*) FILTER (WHERE s.event_time >= $6) AS n_month' END)
        INTO t_json, n_events, n_fail, by_class, a_labels, a_vals, today, week, month
        USING from_time, to_time, unit, d_day, d_week, d_month;
    SELECT today + count(*) FILTER (WHERE x.event_time >= d_day),
           week + count(*) FILTER (WHERE x.event_time >= d_week),
           month + count(*) FILTER (WHERE x.event_time >= d_month)
      INTO today, week, month
      FROM (SELECT e.event_time FROM audit.event e
             WHERE e.event_time >= least(d_week, d_month) AND e.event_time < from_time
            UNION ALL
            SELECT e.event_time FROM audit.event e
             WHERE e.event_time >= greatest(least(d_week, d_month), to_time)) x;
    FOR g IN
        SELECT b.bucket, coalesce(max(x.ok), 0)::bigint AS ok, coalesce(max(x.failed), 0)::bigint AS failed
          FROM (SELECT s AS bucket
                  FROM generate_series(date_trunc(unit, from_time),
                                       CASE WHEN days / CASE unit WHEN 'day' THEN 1 WHEN 'week' THEN 7
                                                                  WHEN 'month' THEN 28 ELSE 365 END <= 400
                                            THEN to_time - interval '1 microsecond'
                                            ELSE '-infinity' END,
                                       ('1 ' || unit)::interval) s
                UNION
                SELECT (j.value ->> 'bucket')::timestamptz FROM json_array_elements(t_json) j) b
          LEFT JOIN (SELECT (j.value ->> 'bucket')::timestamptz AS bucket, (j.value ->> 'ok')::bigint AS ok,
                            (j.value ->> 'failed')::bigint AS failed
                       FROM json_array_elements(t_json) j) x ON x.bucket = b.bucket
         GROUP BY b.bucket
         ORDER BY b.bucket
    LOOP
        t_labels := t_labels || to_char(g.bucket, CASE unit WHEN 'day' THEN 'YYYY-MM-DD' WHEN 'week' THEN 'IYYY-"W"IW'
                                                             WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY' END);
        t_ok := t_ok || g.ok;
        t_fail := t_fail || g.failed;
    END LOOP;

    -- activity by type: the application's own events (class app) are "application"
    SELECT array_agg(t.type ORDER BY t.o), array_agg(t.n ORDER BY t.o) INTO ty_labels, ty_vals
      FROM (SELECT x.type, x.o, coalesce(sum((by_class ->> c.c)::bigint), 0)::bigint AS n
              FROM (VALUES ('data changes', 1, ARRAY['data']), ('reads', 2, ARRAY['read']),
                           ('application', 3, ARRAY['app']),
                           ('security', 4, ARRAY['auth', 'privilege']), ('system', 5, ARRAY['ddl', 'system']))
                   x(type, o, classes)
              LEFT JOIN LATERAL unnest(x.classes) c(c) ON true
             GROUP BY x.type, x.o) t;

    -- the event's own risk (1.6), derived for events captured before
    SELECT json_agg(json_build_object('event_time', r.event_time, 'risk', coalesce(r.risk, audit.report_risk(r.class, r.action, r.status, r.detail)),
                                      'reason', r.reason, 'class', r.class, 'action', r.action, 'status', r.status,
                                      'actor', r.actor,
                                      'object', coalesce(r.schema_name || '.', '') || r.table_name) ORDER BY r.id DESC)
      INTO recent
      FROM (SELECT * FROM audit.recent_high_priority h ORDER BY h.id DESC LIMIT 10) r;
    SELECT count(*) INTO open_n FROM audit.alerts a WHERE a.acknowledged_at IS NULL;
    SELECT json_agg(json_build_object('fired_at', a.fired_at, 'severity', a.severity, 'rule', a.rule, 'key', a.key,
                                      'count', a.count) ORDER BY a.fired_at DESC)
      INTO alerts
      FROM (SELECT * FROM audit.alerts a WHERE a.acknowledged_at IS NULL ORDER BY a.fired_at DESC LIMIT 10) a;

    body := '<header><h1>Audit dashboard</h1>'
        || pg_catalog.format('<table class="meta" id="meta"><tr><td>Period</td><td id="period">%s to %s (%s)</td></tr>'
                             '<tr><td>Generated</td><td id="generated">%s by %s, database %s</td></tr></table></header>',
                             audit.html(from_time::text), audit.html(to_time::text), audit.html(current_setting('TimeZone')),
                             audit.html(now()::text), audit.html(audit.session_role()), audit.html(current_database()))
        || '<section id="summary"><h2>Events</h2><div class="figures">'
        || audit.report_figure('events today', audit.report_number(today), 'fig-today')
        || audit.report_figure('this week', audit.report_number(week), 'fig-week')
        || audit.report_figure('this month', audit.report_number(month), 'fig-month')
        || audit.report_figure('events in period', audit.report_number(n_events), 'fig-events')
        || audit.report_figure('failures in period', audit.report_number(n_fail), 'fig-failures')
        || audit.report_figure('open alerts', audit.report_number(open_n), 'fig-alerts')
        || '</div><h2>Storage</h2><div class="figures">'
        || audit.report_figure('active trail', pg_size_pretty(active), 'fig-storage-active')
        || audit.report_figure('statement texts', pg_size_pretty(texts), 'fig-storage-texts')
        || audit.report_figure(arch_n || ' archives', pg_size_pretty(arch_b), 'fig-storage-archives')
        || '</div></section><section id="charts"><h2>Activity</h2><div class="charts">'
        || audit.svg_time_chart('chart-time', 'Events per ' || unit || ' by outcome', t_labels, t_ok, t_fail)
        || audit.svg_bar_chart('chart-types', 'Activity by type', ty_labels, ty_vals)
        || audit.svg_bar_chart('chart-actors', 'Top actors', a_labels, a_vals)
        || '</div></section>'
        || '<section id="recent"><h2>Recent high-priority events (last 7 days)</h2>'
        || audit.report_table(ARRAY['event_time', 'risk', 'reason', 'class', 'action', 'status', 'actor', 'object'],
                              coalesce(recent, '[]'::json))
        || '</section><section id="alerts"><h2>Open alerts</h2>'
        || pg_catalog.format('<p class="note" id="alerts-count" data-open="%s">%s open (the newest 10 shown; audit.alerts)</p>',
                             open_n, audit.report_number(open_n))
        || audit.report_table(ARRAY['fired_at', 'severity', 'rule', 'key', 'count'], coalesce(alerts, '[]'::json))
        || '</section>'
        || audit.report_integrity(from_time, to_time)
        || pg_catalog.format('<footer>audit_ext %s · audit.render_dashboard()</footer>',
                             audit.html((SELECT e.extversion FROM pg_extension e WHERE e.extname = 'audit_ext')));
    RETURN audit.report_page('Audit dashboard', body);
END
$$;
COMMENT ON FUNCTION audit.render_dashboard(timestamptz, timestamptz) IS
    'The dashboard page as self-contained HTML: events today/this week/this month, storage, activity by type, top actors, recent high-priority events with risk, open alerts, integrity status';

-- Walk the chains of the events in [from_time, to_time) (all when NULL) and
-- report the first event where one breaks.  The anchors must be what the
-- last PRUNE event recorded.  protection_off_events: the events of the range
-- that switched a protection off (audit_ext.protect_trail, audit_ext.log_ddl,
-- by any route), so that a "verified" trail still says when it was left open.
-- The checkpoint rounds must form an unbroken chain; unconfirmed_chains:
-- lanes that only the first round after a restart could have recorded.
-- capture_gaps, capture_gap_ranges (issue 22): the system/CAPTURE_GAP events
-- of the range, i.e. WAL whose changes of tables audited with capture =>
-- 'wal' were never captured (slot invalidated by max_slot_wal_keep_size,
-- dropped or advanced by someone else), each as 'from_lsn-to_lsn (reason)'.
-- The chains of what was captured can verify (verified stays about them),
-- but the trail is known to be incomplete there: never silent.
CREATE OR REPLACE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT protection_off_events bigint,
    OUT unconfirmed_chains bigint, OUT capture_gaps bigint, OUT capture_gap_ranges text[])
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded text;
    actual   text;
    rnd      record;
    prev     bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    expect   bigint := 1;
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    SELECT * INTO verified, events, chains, legacy_events, unverifiable_links, breaks,
                  first_broken_event_id, first_broken_event_time, problem, unconfirmed_chains
      FROM audit.verify_chains(from_time, to_time);
    recorded := audit.recorded_anchor_digest();
    actual := audit.anchor_digest();
    IF EXISTS (SELECT 1 FROM audit.chain_anchor) AND recorded IS DISTINCT FROM actual THEN
        verified := false;
        breaks := breaks + 1;
        problem := coalesce(problem || '; ', '') ||
                   'audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()';
    END IF;
    -- the rounds form a chain over their checkpoint rows
    FOR rnd IN SELECT * FROM audit.chain_round ORDER BY round_id LOOP
        IF rnd.round_id <> expect OR rnd.prev_hash <> prev OR
           rnd.hash IS DISTINCT FROM audit.chain_round_digest(rnd.round_id, rnd.horizon, rnd.shm_epoch, rnd.prev_hash) THEN
            verified := false;
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       format('checkpoint round %s does not match its hash or does not follow round %s: a round or one of its checkpoint rows was added, removed or changed',
                              rnd.round_id, expect - 1);
            EXIT;
        END IF;
        prev := rnd.hash;
        expect := rnd.round_id + 1;
    END LOOP;
    SELECT count(*) INTO protection_off_events
      FROM audit.event e
     WHERE e.class = 'ddl' AND e.detail @> '{"audit_protection_off": true}'
       AND (from_time IS NULL OR e.event_time >= from_time)
       AND (to_time IS NULL OR e.event_time < to_time);
    SELECT count(*), coalesce(array_agg(format('%s-%s (%s)', e.detail ->> 'from_lsn', e.detail ->> 'to_lsn',
                                               e.detail ->> 'reason') ORDER BY e.id), '{}')
      INTO capture_gaps, capture_gap_ranges
      FROM audit.event e
     WHERE e.class = 'system' AND e.action = 'CAPTURE_GAP'
       AND (from_time IS NULL OR e.event_time >= from_time)
       AND (to_time IS NULL OR e.event_time < to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL), the chain anchors and the checkpoint rounds; reports the first event where a chain breaks, how many events of the range switched a protection off, how many chains only a restart could explain, and the capture gaps of WAL capture (CAPTURE_GAP events: LSN ranges whose changes are not in the trail)';

-- Wait until every change committed before the call is in the trail (WAL
-- capture: the worker has written the events of all WAL up to the insert
-- position taken at the call); true when it is, false when timeout passed
-- first (the worker stopped, paused or behind).  True at once when the
-- database has no WAL capture (trigger mode: events commit with the
-- change).  For readers that need their own writes (tests, an export right
-- after a batch job): it polls audit.capture_lag every 10 ms.
CREATE OR REPLACE FUNCTION audit.wait_for_capture(timeout interval DEFAULT '30 s')
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

-- Remove the audit triggers of a table and of all its partitions.
CREATE OR REPLACE FUNCTION audit.drop_audit_triggers(tbl regclass)
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
CREATE OR REPLACE FUNCTION audit.on_ddl_command_end()
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

-- issue 22: one partition of a partitioned table audited with capture =>
-- 'wal': BEFORE ... FOR EACH STATEMENT triggers that write the statement's
-- context (a statement may name the partition itself), REPLICA IDENTITY FULL
-- (its own setting kept in the trigger's flags, restored by
-- audit.drop_audit_triggers()).
CREATE OR REPLACE FUNCTION audit.install_wal_partition_triggers(part regclass, exclude_columns text[], mask_columns text[],
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

-- SQL, SECURITY INVOKER, no SET clause: what lets the planner inline it.
-- The rights come from the view; the body names every object and operator
-- with its schema, so the caller's search_path chooses nothing.
CREATE OR REPLACE FUNCTION audit.report_data_changes(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                          include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (event_id bigint, event_time timestamptz, actor text, db_user text, schema_name text,
               table_name text, record_id text, action text, status text, column_name text,
               old_value text, new_value text, txid bigint)
LANGUAGE sql
STABLE
AS $$
    SELECT v.event_id, v.event_time, v.actor::pg_catalog.text, v.db_user::pg_catalog.text,
           v.schema_name::pg_catalog.text, v.table_name::pg_catalog.text, v.record_id,
           v.action::pg_catalog.text, v.status::pg_catalog.text, v.column_name, v.old_value, v.new_value, v.txid
      FROM audit.report_data_change_rows v
     WHERE audit.valid_report_args('data_changes', from_time, to_time, actors, include_success, include_failures)
       -- The conditions are written so that no invalid argument makes them
       -- contradict each other (a NULL or reversed period, '{}' actors, both
       -- outcomes off): PostgreSQL would prove the plan empty and skip the
       -- argument checks above.  For valid arguments they fold to the plain
       -- conditions, constants the planner estimates, prunes partitions and
       -- picks indexes with.
       AND v.event_time OPERATOR(pg_catalog.>=) coalesce(from_time, '-infinity')
       AND v.event_time OPERATOR(pg_catalog.<) CASE WHEN to_time OPERATOR(pg_catalog.>=) from_time THEN to_time
                                                    ELSE 'infinity' END
       AND (actors IS NULL OR pg_catalog.cardinality(actors) OPERATOR(pg_catalog.=) 0
            OR v.actor OPERATOR(pg_catalog.=) ANY (actors))
       AND (coalesce(include_failures, true) OR NOT coalesce(include_success, true)
            OR v.status OPERATOR(pg_catalog.=) 'success')
       AND (coalesce(include_success, true) OR NOT coalesce(include_failures, true)
            OR v.status OPERATOR(pg_catalog.=) 'failure')
     ORDER BY v.event_id
$$;
COMMENT ON FUNCTION audit.report_data_changes(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: every modification with before and after per field (one row per changed field; TRUNCATE and refused changes one row without a field)';

CREATE OR REPLACE FUNCTION audit.report_system_access(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
                                           include_success boolean DEFAULT true, include_failures boolean DEFAULT true)
RETURNS TABLE (application_name text, db_user text, client_addr inet, distinct_actors bigint, sessions bigint,
               failed_logins bigint, reads bigint, rows_read bigint, changes bigint, failures bigint,
               events bigint, first_seen timestamptz, last_seen timestamptz)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cond text;
BEGIN
    PERFORM audit.require_audit_role();
    -- One pass, by one hash aggregate over the events (a few groups), in
    -- parallel: the distinct actors of each group by
    -- audit.count_distinct_text(), a hash set per group merged across the
    -- workers.  count(DISTINCT actor) sorted every event of the period by
    -- its group (45 s for 5.36M events, spilling); a second hash aggregate
    -- over (group, actor) read the period again in one process (15.5 s for
    -- both passes on a month of 10M events, 6.8 s now: docs/performance.md).
    cond := audit.report_condition('system_access', from_time, to_time, actors, include_success, include_failures);
    RETURN QUERY EXECUTE format($q$
        SELECT e.application_name::text, e.db_user::text, e.client_addr,
               audit.count_distinct_text(e.actor),
               count(*) FILTER (WHERE e.class = 'auth' AND e.action = 'LOGIN' AND e.status = 'success'),
               count(*) FILTER (WHERE e.class = 'auth' AND (e.action = 'LOGIN_FAILED' OR e.status = 'failure')),
               count(*) FILTER (WHERE e.class = 'read' AND e.status = 'success'),
               coalesce(sum(CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$' THEN (e.detail ->> 'rows')::bigint END)
                            FILTER (WHERE e.class = 'read' AND e.status = 'success'), 0)::bigint,
               count(*) FILTER (WHERE e.class = 'data' AND e.status = 'success'),
               count(*) FILTER (WHERE e.status = 'failure'),
               count(*),
               min(e.event_time), max(e.event_time)
          FROM audit.event e
         WHERE %1$s
         GROUP BY 1, 2, 3
         ORDER BY 11 DESC, 1, 2, 3
    $q$, cond)
        USING from_time, to_time, actors;
END
$$;
COMMENT ON FUNCTION audit.report_system_access(timestamptz, timestamptz, text[], boolean, boolean) IS
    'Report: access grouped by application_name, database role and client address (sessions, failed logins, reads, changes, failures, events, first and last seen)';

-- The integrity section: the verification of the period and the chain heads
-- of the last checkpoint round before its end.  When the maintenance worker
-- has recorded walks of the chains (audit.verification, audit.
-- record_verification()), the period is not walked again: the events newer
-- than the last recorded walk are walked now (from the heads it left), and
-- the period's older events are checked for rows rewritten or added since
-- the walk that covered them (a row version written after that walk's
-- snapshot: xmin at or above its snapshot_xmax); a recorded walk that found
-- a break keeps saying so.  Without a usable record (none yet, or one so old
-- that transaction ids may have wrapped around), audit.verify() of the
-- period as before.  The anchors and the checkpoint rounds are checked each
-- time (a few rows), as audit.verify() does.
CREATE OR REPLACE FUNCTION audit.report_integrity(from_time timestamptz, to_time timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v       record;
    rnd     record;
    heads   text;
    last    audit.verification;
    tail    record;
    seg     record;
    walks   record;
    g       record;
    bad     record;
    stale   boolean := false;
    n_period    bigint := 0;
    n_walked    bigint := 0;
    n_rewritten bigint := 0;
    n_missing   bigint := 0;
    first_rewritten bigint;
    prev    bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    expect  bigint := 1;
    how     text;
    breaks  bigint := 0;
    problem text;
    first_id bigint;
    first_t  timestamptz;
BEGIN
    SELECT * INTO last FROM audit.verification r ORDER BY r.verification_id DESC LIMIT 1;
    -- only walks that have reached the period: while the worker is still
    -- catching up (the first rounds after an upgrade walk an existing trail
    -- 1,000,000 ids a round) the newer events would be most of the trail
    IF last.verification_id IS NOT NULL
       AND NOT coalesce((SELECT max(r.max_event_time) FROM audit.verification r) >= from_time, false) THEN
        last := NULL;
    END IF;
    IF last.verification_id IS NOT NULL THEN
        -- the recorded walks: where each ends (width_bucket thresholds) and
        -- its snapshot_xmax as a distance back from the next transaction id
        -- (NULL: more than 1,000,000,000 transactions ago, too old to
        -- compare row versions with); and the walks whose events may lie in
        -- the period (from the first to the last one whose events' times
        -- reach into it): their ids, how many events they read, the times
        -- those lie in, and whether the count can still be compared (not
        -- when retention dropped a partition their events may have been in)
        SELECT array_agg(r.upto_event_id + 1 ORDER BY r.verification_id) AS thr,
               array_agg(CASE WHEN d.dist < 1000000000 THEN d.dist END ORDER BY r.verification_id) AS lim,
               min(r.verification_id) FILTER (WHERE r.min_event_time < to_time AND r.max_event_time >= from_time) AS first_walk,
               max(r.verification_id) FILTER (WHERE r.min_event_time < to_time AND r.max_event_time >= from_time) AS last_walk,
               max(p.pruned_to) AS pruned_to
          INTO seg
          FROM audit.verification r
         CROSS JOIN LATERAL (SELECT ((pg_snapshot_xmax(pg_current_snapshot())::text::numeric
                                      - r.snapshot_xmax::text::numeric))::bigint AS dist) d
         CROSS JOIN (SELECT max((e.detail ->> 'to_time')::timestamptz) AS pruned_to FROM audit.event e
                      WHERE e.class = 'system' AND e.action = 'PRUNE' AND e.detail ? 'to_time') p;
        SELECT min(r.after_event_id) + 1 AS a_id, max(r.upto_event_id) AS b_id, sum(r.events)::bigint AS events,
               least(from_time, min(r.min_event_time)) AS lo, greatest(to_time, max(r.max_event_time)) AS hi,
               coalesce(bool_and(r.min_event_time >= coalesce(seg.pruned_to, '-infinity') OR r.events = 0), true) AS countable
          INTO walks
          FROM audit.verification r
         WHERE r.verification_id BETWEEN seg.first_walk AND seg.last_walk;
        -- one pass over the events of the period and of those walks (one
        -- row: it may run in parallel): how many of the period, how many the
        -- walks read are still there, and how many rows of the period were
        -- written after the walk that read them looked (xmin at or after
        -- its snapshot_xmax: rewritten or added since)
        EXECUTE $q$
            SELECT count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2) AS in_period,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9) AS walked,
                   count(*) FILTER (WHERE e.id BETWEEN $7 AND $8) AS in_walks,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                      AND $4[width_bucket(e.id, $3) + 1] IS NULL) AS stale,
                   count(*) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                      AND ($10 - e.xmin::text::bigint + 4294967296) % 4294967296
                                          <= $4[width_bucket(e.id, $3) + 1]) AS rewritten,
                   min(e.id) FILTER (WHERE e.event_time >= $1 AND e.event_time < $2 AND e.id < $9
                                       AND ($10 - e.xmin::text::bigint + 4294967296) % 4294967296
                                           <= $4[width_bucket(e.id, $3) + 1]) AS first_rewritten
              FROM audit.event e
             WHERE e.event_time >= $5 AND e.event_time <= $6 $q$
            INTO g
            USING from_time, to_time, seg.thr, seg.lim, coalesce(walks.lo, from_time), coalesce(walks.hi, to_time),
                  coalesce(walks.a_id, 0), coalesce(walks.b_id, -1), last.upto_event_id + 1,
                  (pg_snapshot_xmax(pg_current_snapshot())::text::numeric % 4294967296)::bigint;
        n_period := g.in_period;
        n_walked := g.walked;
        stale := g.stale > 0;
        n_rewritten := g.rewritten;
        first_rewritten := g.first_rewritten;
        IF walks.countable AND walks.events IS NOT NULL AND g.in_walks < walks.events THEN
            n_missing := walks.events - g.in_walks;
        END IF;
    END IF;
    IF last.verification_id IS NULL OR stale THEN
        SELECT * INTO v FROM audit.verify(from_time, to_time);
        how := format('walked now (audit.verify() of the period: %s events)', audit.report_number(v.events));
    ELSE
        -- what arrived since the last recorded walk, up to the end of the
        -- period: walked now, each lane from where the walks left it
        SELECT * INTO tail FROM audit.verify_chains_from(last.upto_event_id, NULL, NULL, to_time, last.verification_id);
        breaks := tail.breaks;
        problem := tail.problem;
        first_id := tail.first_broken_event_id;
        first_t := tail.first_broken_event_time;
        IF n_rewritten > 0 THEN
            breaks := breaks + n_rewritten;
            SELECT e.event_time INTO first_t FROM audit.event e WHERE e.id = first_rewritten
             ORDER BY e.event_time LIMIT 1;
            first_id := first_rewritten;
            problem := coalesce(problem || '; ', '') ||
                       format('%s event(s) of the period were rewritten or added after the recorded walk of their chains (row written later than the walk), first event %s',
                              n_rewritten, first_rewritten);
        END IF;
        IF n_missing > 0 THEN
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       format('%s event(s) that the recorded verifications %s to %s walked (ids %s to %s) are no longer there: deleted',
                              n_missing, seg.first_walk, seg.last_walk, walks.a_id, walks.b_id);
        END IF;
        -- a recorded walk that found a break among events that may lie in
        -- the period
        SELECT count(*) AS walks, sum(r.breaks) AS breaks, min(r.first_broken_event_id) AS first_id,
               (array_agg(r.problem ORDER BY r.first_broken_event_id))[1] AS problem,
               (array_agg(r.first_broken_event_time ORDER BY r.first_broken_event_id))[1] AS first_t,
               (array_agg(r.verified_at ORDER BY r.first_broken_event_id))[1] AS verified_at
          INTO bad FROM audit.verification r
         WHERE r.breaks > 0 AND (r.min_event_time IS NULL OR (r.min_event_time < to_time AND r.max_event_time >= from_time));
        IF bad.walks > 0 THEN
            breaks := breaks + bad.breaks;
            IF first_id IS NULL OR bad.first_id < first_id THEN
                first_id := bad.first_id;
                first_t := bad.first_t;
            END IF;
            problem := coalesce(problem || '; ', '') ||
                       format('the recorded walk of %s found: %s', bad.verified_at, bad.problem);
        END IF;
        -- the anchors and the checkpoint rounds, as audit.verify() checks them
        IF EXISTS (SELECT 1 FROM audit.chain_anchor) AND
           audit.recorded_anchor_digest() IS DISTINCT FROM audit.anchor_digest() THEN
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       'audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()';
        END IF;
        FOR rnd IN SELECT * FROM audit.chain_round ORDER BY round_id LOOP
            IF rnd.round_id <> expect OR rnd.prev_hash <> prev OR
               rnd.hash IS DISTINCT FROM audit.chain_round_digest(rnd.round_id, rnd.horizon, rnd.shm_epoch, rnd.prev_hash) THEN
                breaks := breaks + 1;
                problem := coalesce(problem || '; ', '') ||
                           format('checkpoint round %s does not match its hash or does not follow round %s: a round or one of its checkpoint rows was added, removed or changed',
                                  rnd.round_id, expect - 1);
                EXIT;
            END IF;
            prev := rnd.hash;
            expect := rnd.round_id + 1;
        END LOOP;
        SELECT breaks = 0 AS verified, n_period AS events, tail.chains AS chains,
               tail.unverifiable_links AS unverifiable_links, breaks AS breaks,
               first_id AS first_broken_event_id, first_t AS first_broken_event_time, problem AS problem,
               (SELECT count(*) FROM audit.event e
                 WHERE e.class = 'ddl' AND e.detail @> '{"audit_protection_off": true}'
                   AND e.event_time >= from_time AND e.event_time < to_time) AS protection_off_events,
               tail.unconfirmed_chains AS unconfirmed_chains
          INTO v;
        how := format('%s walked by the recorded verifications (the last by %s at %s, every event up to id %s; audit.verification), '
                      '%s since (row versions and counts checked now); %s newer event(s) before the end of the period walked now',
                      audit.report_number(n_walked), audit.html(last.verified_by), audit.html(last.verified_at::text),
                      last.upto_event_id,
                      CASE WHEN n_rewritten = 0 AND n_missing = 0 THEN 'none of their rows rewritten, added or removed'
                           ELSE format('%s rewritten or added, %s removed', n_rewritten, n_missing) END,
                      audit.report_number(tail.events));
    END IF;
    SELECT r.round_id, r.taken_at, r.lanes, encode(r.hash, 'hex') AS hash INTO rnd
      FROM audit.chain_round r
     WHERE r.taken_at < to_time
     ORDER BY r.round_id DESC LIMIT 1;
    SELECT string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>',
                             audit.html(h.class), h.lanes, h.last_event_id, audit.html(h.hash)), '' ORDER BY h.class)
      INTO heads
      FROM (SELECT c.class, count(*) AS lanes, max(c.event_id) AS last_event_id,
                   left(encode((array_agg(c.hash ORDER BY c.event_id DESC))[1], 'hex'), 16) || '…' AS hash
              FROM audit.chain_checkpoint c
             WHERE c.round_id = rnd.round_id
             GROUP BY c.class) h;
    RETURN '<section id="integrity"><h2>Integrity of the trail</h2>'
        || format('<p id="integrity-status" data-verified="%s" class="%s">%s</p>',
                  CASE WHEN v.verified THEN 'true' ELSE 'false' END, CASE WHEN v.verified THEN 'ok' ELSE 'bad' END,
                  CASE WHEN v.verified
                       THEN format('Verified: the hash chains of the %s events of the period are unbroken.',
                                   audit.report_number(v.events))
                       ELSE format('NOT VERIFIED: %s break(s), first at event %s (%s). %s',
                                   v.breaks, coalesce(v.first_broken_event_id::text, '?'),
                                   coalesce(v.first_broken_event_time::text, '?'), audit.html(v.problem)) END)
        || format('<p class="note" id="integrity-how" data-recorded-upto="%s">How: %s.</p>',
                  CASE WHEN last.verification_id IS NULL OR stale THEN '' ELSE last.upto_event_id::text END, how)
        || format('<table class="detail"><tr><th>events checked</th><td>%s</td><th>chains</th><td>%s</td>'
                  '<th>links not checkable in a bounded window</th><td>%s</td><th>protection-off events</th><td>%s</td>'
                  '<th>unconfirmed chains</th><td>%s</td></tr></table>',
                  v.events, v.chains, v.unverifiable_links, v.protection_off_events, v.unconfirmed_chains)
        || CASE WHEN rnd.round_id IS NULL THEN '<p class="note">No checkpoint round of the chain heads before the end of the period.</p>'
                ELSE format('<p class="note">Chain heads at checkpoint round %s (%s, %s lanes), round hash <code>%s</code>:</p>',
                            rnd.round_id, audit.html(rnd.taken_at::text), rnd.lanes, audit.html(rnd.hash))
                     || '<table class="detail"><thead><tr><th>class</th><th>lanes</th><th>last event id</th><th>head hash</th></tr></thead><tbody>'
                     || coalesce(heads, '') || '</tbody></table>' END
        || '</section>';
END
$$;
COMMENT ON FUNCTION audit.report_integrity(timestamptz, timestamptz) IS
    'Internal: the integrity section of a report (the recorded verifications, the events newer than them walked now and the period''s older rows checked for rewrites; without a record audit.verify() of the period; chain heads of the last checkpoint round)';

CREATE OR REPLACE FUNCTION audit.evaluate_alerts()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st        audit.alert_state;
    xips      xid8[];
    run_ids   bigint[];
    run_lo    bigint[];
    still     jsonb := '{}';
    done_xids bigint[] := '{}';
    done_lo32 bigint[];
    done_lo   bigint;
    hi        bigint;
    new_hi    bigint;
    n_cand    bigint;
    fired     integer := 0;
    cand      audit.event[];
    rr        audit.alert_rules;
    g         record;
    w         record;
    a         audit.alerts;
    p         record;
BEGIN
    -- one round at a time; an advisory lock rather than FOR UPDATE, which
    -- would cost a transaction id and WAL every round
    IF NOT pg_try_advisory_xact_lock(hashtext('audit_ext'), hashtext('evaluate_alerts')) THEN
        RETURN 0;
    END IF;
    SELECT * INTO st FROM audit.alert_state;
    IF NOT FOUND THEN
        INSERT INTO audit.alert_state DEFAULT VALUES RETURNING * INTO st;
    END IF;
    hi := st.high_watermark;
    IF hi IS NULL THEN
        -- first round: events older than the extension's alert state (a
        -- restored trail) are history, not news; but only those below the
        -- first event of its time: a login queued before CREATE EXTENSION
        -- and written by the worker after it is old yet numbered after the
        -- statements that followed, which the newest old event's id passed
        -- for good (alerts.sh, CI of 2026-12-07)
        hi := coalesce((SELECT e.id FROM audit.event e
                         WHERE e.event_time < st.started_at
                           AND e.id < coalesce((SELECT n.id FROM audit.event n WHERE n.event_time >= st.started_at
                                                 ORDER BY n.id LIMIT 1), 9223372036854775807)
                         ORDER BY e.id DESC LIMIT 1), 0);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM audit.alert_rules WHERE enabled) THEN
        -- nothing to evaluate: move on, so that enabling a rule later does
        -- not fire on the past
        new_hi := greatest(hi, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit.event_id_seq));
        IF st.high_watermark IS DISTINCT FROM new_hi OR st.pending <> '{}' THEN
            UPDATE audit.alert_state SET high_watermark = new_hi, pending = '{}', evaluated_at = now();
        END IF;
        RETURN -1;
    END IF;

    -- At most 10,000 new events a round (the rest next round, in id order).
    -- The transactions running are read in the same statement, so from the
    -- same snapshot as the events: an id up to new_hi that it does not show
    -- belongs to one of them, since every writer has its transaction id
    -- before it numbers an event (src/event_writer.c).  Read in statements of
    -- their own, a transaction could start, number an event and stay open
    -- between the two, and the round passed its event for good.
    SELECT max(x.id), count(*), ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot()))
      INTO new_hi, n_cand, xips
      FROM (SELECT e.id FROM audit.event e WHERE e.id > hi ORDER BY e.id LIMIT 10000) x;
    new_hi := greatest(hi, new_hi);

    FOR p IN SELECT k.key, k.value FROM jsonb_each_text(st.pending) k LOOP
        IF p.key::xid8 = ANY (xips) THEN
            still := still || jsonb_build_object(p.key, p.value::bigint);
        ELSE
            done_xids := done_xids || p.key::bigint;
            done_lo := least(done_lo, p.value::bigint);
        END IF;
    END LOOP;
    -- The transactions an event waits for: its own (txid) and the one that
    -- wrote it (xmin: a worker's, for the events it writes on others'
    -- behalf; xmin is 32 bits, compared with the low half of a
    -- transaction id).  An event is evaluated once neither is running,
    -- whichever ends last.
    -- (the pending ones still running are among them)
    run_ids := ARRAY(SELECT x::text::bigint FROM unnest(xips) x);
    run_lo := ARRAY(SELECT x::text::bigint & 4294967295 FROM unnest(xips) x);
    done_lo32 := ARRAY(SELECT x & 4294967295 FROM unnest(done_xids) x);

    -- only events some enabled rule could match (class, action, rows) are
    -- read whole: most events (e.g. small reads) stop at this semi-join
    cand := ARRAY(SELECT e FROM audit.event e
                   WHERE e.id > hi AND e.id <= new_hi
                     AND NOT (coalesce(e.txid = ANY (run_ids), false)
                              OR e.xmin::text::bigint = ANY (run_lo))
                     AND EXISTS (SELECT 1 FROM audit.alert_rules r
                                     WHERE r.enabled AND r.class = e.class
                                       AND (r.action IS NULL OR r.action = e.action)
                                       AND (r.min_rows IS NULL OR r.min_rows <= audit.event_rows(e.detail)))
                   ORDER BY e.id);
    IF cardinality(done_xids) > 0 THEN
        cand := cand || ARRAY(SELECT e FROM audit.event e
                               WHERE e.id > done_lo AND e.id <= hi
                                 AND (e.txid = ANY (done_xids) OR e.xmin::text::bigint = ANY (done_lo32))
                                 AND NOT (coalesce(e.txid = ANY (run_ids), false)
                                          OR e.xmin::text::bigint = ANY (run_lo))
                                 AND EXISTS (SELECT 1 FROM audit.alert_rules r
                                     WHERE r.enabled AND r.class = e.class
                                       AND (r.action IS NULL OR r.action = e.action)
                                       AND (r.min_rows IS NULL OR r.min_rows <= audit.event_rows(e.detail))));
    END IF;

    IF cardinality(cand) > 0 THEN
        FOR g IN
            SELECT r.name, audit.alert_key(r.group_by, c) AS key,
                   count(*) AS n, min(c.id) AS first_id, max(c.id) AS last_id,
                   min(c.event_time) AS first_time, max(c.event_time) AS last_time
              FROM unnest(cand) c
              JOIN audit.alert_rules r ON r.enabled AND r.class = c.class
             WHERE audit.alert_matches(r, c)
             -- without threshold and cooldown, every event is an alert of its own
             GROUP BY r.name, 2, CASE WHEN r.threshold = 1 AND r.cooldown = interval '0' THEN c.id END
             ORDER BY min(c.id)
        LOOP
            SELECT * INTO rr FROM audit.alert_rules r WHERE r.name = g.name;
            -- one rule and key fire at most once per cooldown
            CONTINUE WHEN rr.cooldown > interval '0'
                      AND EXISTS (SELECT 1 FROM audit.alerts x
                                   WHERE x.rule = rr.name AND x.key = g.key
                                     AND x.fired_at > now() - rr.cooldown);
            IF rr.threshold > 1 THEN
                -- matching events of this key in the window ending at the newest one
                SELECT count(*) AS n, min(e.id) AS first_id, max(e.id) AS last_id,
                       min(e.event_time) AS first_time, max(e.event_time) AS last_time
                  INTO w
                  FROM audit.event e
                 WHERE e.class = rr.class
                   AND e.event_time > g.last_time - rr.within AND e.event_time <= g.last_time
                   AND audit.alert_matches(rr, e)
                   AND audit.alert_key(rr.group_by, e) = g.key;
                CONTINUE WHEN w.n < rr.threshold;
            ELSE
                w := g;
            END IF;
            INSERT INTO audit.alerts (rule, severity, key, count, first_event_id, last_event_id,
                                      first_event_time, last_event_time, channel)
            VALUES (rr.name, rr.severity, g.key, w.n, w.first_id, w.last_id,
                    w.first_time, w.last_time, rr.channel)
            RETURNING * INTO a;
            -- Anyone may LISTEN (PostgreSQL has no privilege for it): the
            -- payload names the alert, never its key or events, and is
            -- signed so that listeners can tell it from a forged NOTIFY.
            PERFORM pg_notify(a.channel, audit.alert_payload(a));
            fired := fired + 1;
        END LOOP;
    END IF;

    -- transactions in progress now: their events may still appear above
    -- the old watermark (or above their own start when already pending)
    SELECT still || coalesce(jsonb_object_agg(x::text, hi), '{}') INTO still
      FROM unnest(xips) x
     WHERE NOT still ? x::text;
    IF n_cand > 0 OR fired > 0 OR st.high_watermark IS DISTINCT FROM new_hi OR st.pending <> still THEN
        UPDATE audit.alert_state
           SET high_watermark = new_hi, pending = still, evaluated_at = now(),
               events_evaluated = events_evaluated + n_cand, alerts_fired = alerts_fired + fired;
    END IF;
    RETURN fired;
END
$$;
COMMENT ON FUNCTION audit.evaluate_alerts() IS
    'Internal (background worker): evaluate the enabled alert rules over the events committed since the last round, store and NOTIFY the alerts; -1 when no rule is enabled';

-- end merged
