-- Activity and reports: audit.recent_high_priority, audit.user_activity,
-- audit.activity_summary (same access rules as sql/src/reading.sql).

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

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT SELECT ON audit.recent_high_priority TO PUBLIC;
