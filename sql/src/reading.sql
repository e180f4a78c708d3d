-- Reading the trail (issue 3): search, CSV export, change views, record
-- history, point-in-time rows, undo; their argument checks and helpers.
--
-- Who may call what:
--   audit_admin, audit_reader : every reading function and view
--   audit_admin only          : audit.undo()
--   everyone else             : nothing (SQLSTATE 42501)
-- The reading functions are SECURITY DEFINER (they read the trail as its
-- owner) and start with audit.require_audit_role() (sql/src/roles.sql),
-- which checks the role of the session, not the definer.  audit.undo() is
-- SECURITY INVOKER on purpose (see there).  docs/reading.md is the user's
-- guide to all of this.

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
    SELECT '{"data":      ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "BASELINE"],
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

-- A row in the form capture writes it (src/row_json.c): timestamptz in UTC,
-- interval in ISO 8601, floats shortest, bytea in hex, whatever the session's
-- settings.  Lookups turn the caller's key into it.
CREATE FUNCTION audit.canonical_jsonb(r anyelement)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_canonical_jsonb';
COMMENT ON FUNCTION audit.canonical_jsonb(anyelement) IS
    'A row as jsonb in the form capture writes it, independent of session settings (timestamptz in UTC, interval in ISO 8601, floats shortest, bytea in hex)';

-- Resolve a live table and a record_id given by the user to the names its
-- events carry (the audited partitioned root for a partition) and the
-- record_id exactly as captured: for a table with a key, record_id must name
-- exactly the key columns; values are converted through the column types
-- ({"id": "42"} becomes {"id": 42}).  Without a key, record_id is the whole
-- recorded row and is taken as given.
-- audit.record_history(regclass, ...) and audit.row_as_of(): an OID that
-- names no relation returned an empty history / NULL as if the table existed
-- without events; refuse it like a missing table name (42P01).
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
        -- the table's column types and domains are its owner's code: run
        -- them as the owner, never with this function's rights
        full_row := audit.eval_as_table_owner(live,
                        format('SELECT audit.canonical_jsonb(r.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r', live),
                        resolve_record.record_id);
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
    -- the partition's expressions and column types are its owner's code
    inside := audit.eval_as_table_owner(part,
                  format('SELECT pg_catalog.to_jsonb((%s) IS NOT FALSE) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r',
                         bound, part),
                  identity)::text::boolean;
    RETURN coalesce(inside, true);
EXCEPTION WHEN OTHERS THEN
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.record_in_partition(regclass, jsonb) IS
    'Internal: whether a record (identity as jsonb) falls in a partition, by its partition constraint';

-- The last event that recorded the drop of an audited table of this name
-- (since 1.5 every DROP that takes audited tables with it names them): a
-- table created with the name afterwards is another table, with a history
-- of its own.  NULL: none recorded.
CREATE FUNCTION audit.table_dropped_at(p_schema text, p_table text)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(e.id) FROM audit.event e
     WHERE e.class = 'ddl' AND e.status = 'success'
       AND e.detail -> 'audited_tables_dropped' ? (p_schema || '.' || p_table)
$$;
COMMENT ON FUNCTION audit.table_dropped_at(text, text) IS
    'Internal: the id of the last event that recorded the drop of an audited table of this schema and name (NULL: none)';

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

-- Which events belong to a table (1.6): those carrying its identity, and
-- the events with none (captured before 1.6) under legacy names after
-- legacy_from_id.  A table that never had an identity is its name, after the
-- last recorded drop of a table of that name when one of that name exists
-- now (that one is another table).
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
    RETURN QUERY SELECT * FROM audit.history_rows(audit.live_scope(r.live), r.record, r.live);
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
CREATE FUNCTION audit.row_as_of(tbl regclass, record_id jsonb, at timestamptz)
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
CREATE FUNCTION audit.undo_change_row(sql text, action text, tbl regclass, ident jsonb,
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

-- Elevated code never runs a user's code (docs/architecture.md, "Threat
-- model", lists every elevated path and its test).  The C side pins search_path to pg_catalog, pg_temp around every SPI query
-- it runs (src/elevated.c).  The reading functions (SECURITY DEFINER, for
-- the audit roles) populated records of an audited table's row type as the
-- extension's owner: a table owner's DOMAIN ... CHECK (its_function(VALUE))
-- on the key column ran as superuser when an auditor read the record's
-- history.  They run that part as the table's owner, in a
-- security-restricted operation (as VACUUM and ANALYZE run index
-- expressions).
CREATE FUNCTION audit.eval_as_table_owner(tbl regclass, query text, arg jsonb)
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_eval_as_table_owner';
COMMENT ON FUNCTION audit.eval_as_table_owner(regclass, text, jsonb) IS
    'Internal: runs a query ($1 jsonb, one jsonb column) as the owner of a table, security-restricted, search_path pinned; the reading functions evaluate the table''s types and domains this way';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.next_record_id(jsonb,jsonb),
                       audit.one_line(text),
                       audit.detail_interval(text),
                       audit.check_time_range(timestamp with time zone,timestamp with time zone),
                       audit.search_filter(timestamp with time zone,timestamp with time zone,text,text,text,text,jsonb,text,text,bigint),
                       audit.resolve_record(regclass,jsonb),
                       audit.record_in_partition(regclass,jsonb),
                       audit.record_events(audit.table_scope,jsonb,regclass,timestamp with time zone),
                       audit.record_incarnation(audit.table_scope,jsonb,bigint),
                       audit.key_before_change(bigint,jsonb,timestamp with time zone,regclass),
                       audit.record_moves_before(audit.table_scope,audit.event[],jsonb[],boolean),
                       audit.value_as_type(regclass,jsonb,text),
                       audit.event_identity(audit.event),
                       audit.identity_scope(bigint),
                       audit.identity_by_name(text,text,timestamp with time zone),
                       audit.name_scope(text,text,timestamp with time zone),
                       audit.live_scope(regclass),
                       audit.scope_names(audit.table_scope),
                       audit.attnum_at(bigint,timestamp with time zone,text),
                       audit.history_rows(audit.table_scope,jsonb,regclass),
                       audit.by_attnum(bigint,timestamp with time zone,jsonb),
                       audit.attnums_of(bigint,timestamp with time zone,text[]),
                       audit.change_time(audit.event,timestamp with time zone),
                       audit.keyless_link(audit.table_scope,jsonb,bigint,boolean),
                       audit.key_by_history(bigint,jsonb),
                       audit.key_moved_to(audit.table_scope,jsonb,bigint,bigint,boolean),
                       audit.names_now(bigint,timestamp with time zone,jsonb),
                       audit.table_dropped_at(text,text),
                       audit.undo_change_row(text,text,regclass,jsonb,oid,tid,jsonb,jsonb),
                       audit.eval_as_table_owner(regclass,text,jsonb) FROM PUBLIC;
-- audit.undo runs as the caller: it needs these as well.  The reading
-- functions and audit.changes keep EXECUTE/SELECT for PUBLIC: they check the
-- role themselves (sql/src/roles.sql).
GRANT EXECUTE ON FUNCTION audit.next_record_id(jsonb,jsonb),
                          audit.table_dropped_at(text,text),
                          audit.event_identity(audit.event),
                          audit.attnum_at(bigint,timestamp with time zone,text),
                          audit.names_now(bigint,timestamp with time zone,jsonb),
                          audit.undo_change_row(text,text,regclass,jsonb,oid,tid,jsonb,jsonb) TO audit_admin;
GRANT SELECT ON audit.changes TO PUBLIC;
