-- audit_ext 1.5 -> 1.6: the application's own trail (issue 20) and the lead's and helpers' changes
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.6'" to load this file. \quit

-- ===========================================================================
-- issue 20: the application's own trail (application events, digest columns)
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
                conds := conds || format('(e.table_name = $7 OR (e.schema_name IS NULL AND e.table_name = %L))',
                                         table_name);
            ELSE
                conds := conds || 'e.table_name = $7'::text;
            END IF;
        ELSIF array_length(parts, 1) = 2 THEN
            schema_part := parts[1];
            table_part := parts[2];
            conds := conds || 'e.schema_name = $6'::text;
            conds := conds || 'e.table_name = $7'::text;
        ELSE
            RAISE EXCEPTION 'invalid table_name "%": too many dotted names', table_name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Write table or schema.table.';
        END IF;
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
                   s.statement_text
              FROM audit.event e
              LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
             WHERE e.class = 'app' AND e.schema_name IS NULL
               AND e.table_name = record_history.table_name
               AND e.record_id @> rec
             ORDER BY e.id;
        RETURN;
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
        -- by name: a table of that name was dropped before this one was
        -- created; its events count here too (the regclass form is this
        -- table's own history)
        IF audit.table_dropped_at(record_history.schema_name, record_history.table_name) IS NOT NULL THEN
            live := NULL;
        END IF;
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
                             digest_columns text[] DEFAULT NULL)
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
        flags := ARRAY['log_reads'];
    ELSIF NOT log_reads THEN
        flags := '{}';
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
                                   || CASE WHEN baseline THEN '{"baseline": true}'::jsonb ELSE '{}'::jsonb END);
    -- the rows the table holds now, one BASELINE event each (after the
    -- triggers: their lock keeps writers out until this transaction ends)
    IF baseline THEN
        PERFORM audit.record_baseline(tbl);
    END IF;
END
$$;

COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean, text[]) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start; digest_columns (bytea, text, jsonb) are recorded as {"sha256": ..., "bytes": n} instead of their value';

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
       coalesce((audit.trigger_arguments(t.tgargs))[4]::text[], '{}') AS digest_columns
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL audit.capture_state(c.oid) s
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;

COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if any audit trigger of the table or of a partition is missing, disabled or replica only, or an inheritance child is not audited (capture_state says which); log_reads: reads are recorded too; replicated_into: subscriptions applying changes to the table (captured only with ENABLE ALWAYS TRIGGER audit_ext_row); digest_columns: recorded as {"sha256", "bytes"} (1.6)';

REVOKE ALL ON FUNCTION audit.install_triggers(regclass,text[],text[],text[],text[]),
                       audit.enable(regclass,text[],text[],boolean,boolean,text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean,text[]) TO audit_admin;

-- end issue 20
