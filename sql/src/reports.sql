-- Activity and reports: audit.recent_high_priority, audit.user_activity,
-- audit.activity_summary (same access rules as sql/src/reading.sql); the
-- typed report functions of issue 21 (audit.report_user_access ...
-- audit.report_system_access, audit.report_kinds) and the tables of scheduled
-- reports (audit.report_schedules, audit.reports).  Rendering (HTML, CSV, the
-- dashboard) and the schedule functions are in sql/src/report_render.sql.

-- The ids of the events that open (unacknowledged) alerts name (first and
-- last of each): plpgsql, because audit.alerts is created after this file
-- (sql/src/alerts.sql).
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

-- 1.6: defined by risk (high or critical, src/risk.c) plus the events of
-- open alerts; events captured before 1.6 (no risk) by the rules of 1.5.
CREATE VIEW audit.recent_high_priority WITH (security_barrier) AS
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
    storage_bytes    bigint,
    events_by_risk   jsonb
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

-- The risk of an event captured before 1.6 (since then capture writes
-- audit.event.risk and the reports read coalesce(e.risk, audit.report_risk(...))):
-- derived in one place from the event's own "risk" detail (what capture
-- recorded for critical events) and its class, action and status.
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
    'Internal: risk of an event captured before 1.6 for the reports (low, medium, high, critical); later events carry audit.event.risk';

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

-- The number of keys of a JSON object, from the jsonb header (src/reports.c):
-- audit.build_report() counts the data change report's rows per event
-- with it, as audit.report_data_change_rows makes them (an INSERT or DELETE:
-- one per key of new_data or old_data), without making them.
CREATE FUNCTION audit.jsonb_key_count(j jsonb)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_jsonb_key_count';
COMMENT ON FUNCTION audit.jsonb_key_count(jsonb) IS
    'Internal: the number of keys of a JSON object (the rows of jsonb_object_keys()), read from the jsonb header; 22023 for a scalar or an array';

-- SQL, SECURITY INVOKER, no SET clause: what lets the planner inline it.
-- The rights come from the view; the body names every object and operator
-- with its schema, so the caller's search_path chooses nothing.
CREATE FUNCTION audit.report_data_changes(from_time timestamptz, to_time timestamptz, actors text[] DEFAULT NULL,
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

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT SELECT ON audit.recent_high_priority, audit.report_data_change_rows TO PUBLIC;

REVOKE ALL ON FUNCTION audit.report_risk(text, text, text, jsonb),
                       audit.export_threshold(),
                       audit.jsonb_key_count(jsonb),
                       audit.report_condition(text, timestamptz, timestamptz, text[], boolean, boolean),
                       audit.count_distinct_trans(internal, text),
                       audit.count_distinct_combine(internal, internal),
                       audit.count_distinct_serialize(internal),
                       audit.count_distinct_deserialize(bytea, internal),
                       audit.count_distinct_final(internal),
                       audit.count_distinct_text(text) FROM PUBLIC;
GRANT SELECT ON audit.report_kinds, audit.report_schedules, audit.reports TO audit_admin, audit_reader;
