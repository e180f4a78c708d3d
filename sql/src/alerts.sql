-- Alert rules and their evaluation by the background worker (src/alerts.c):
-- audit.alert_rules, audit.alerts, audit.alert_state, the rule functions,
-- audit.evaluate_alerts(), signed notifications, and the rules shipped with
-- the extension.

CREATE TABLE audit.alert_rules (
    name          text COLLATE "C" PRIMARY KEY,
    class         text COLLATE "C" NOT NULL,
    action        text COLLATE "C",
    table_name    text COLLATE "C",
    actor         text COLLATE "C",
    status        text COLLATE "C",
    query         text,
    min_rows      bigint,
    threshold     integer     NOT NULL DEFAULT 1,
    within        interval,
    group_by      text COLLATE "C",
    outside_hours text,
    timezone      text,
    severity      text COLLATE "C" NOT NULL DEFAULT 'medium',
    cooldown      interval    NOT NULL DEFAULT '10 minutes',
    channel       text        NOT NULL DEFAULT 'audit_alerts',
    enabled       boolean     NOT NULL DEFAULT true,
    builtin       boolean     NOT NULL DEFAULT false,
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL DEFAULT current_user,
    -- 1.6: only events of at least this risk level (src/risk.c)
    min_risk      text COLLATE "C",
    CONSTRAINT alert_rules_threshold_check CHECK (threshold > 0),
    CONSTRAINT alert_rules_severity_check CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT alert_rules_min_risk_check CHECK (min_risk IN ('low', 'medium', 'high', 'critical'))
);
COMMENT ON TABLE audit.alert_rules IS
    'Alert rules: which events (class, action, table, actor, status, query, min_rows, outside_hours), how many (threshold within, per group_by key), how loud (severity, channel, cooldown). Managed with audit.create_alert_rule/drop_alert_rule/set_alert_rule_enabled';

-- pg_dump keeps the rules users made; the shipped ones come with the extension.
SELECT pg_catalog.pg_extension_config_dump('audit.alert_rules', 'WHERE NOT builtin');

CREATE TABLE audit.alerts (
    alert_id         bigserial PRIMARY KEY,
    rule             text COLLATE "C" NOT NULL,
    severity         text COLLATE "C" NOT NULL,
    key              text        NOT NULL,
    count            bigint      NOT NULL,
    first_event_id   bigint      NOT NULL,
    last_event_id    bigint      NOT NULL,
    first_event_time timestamptz,
    last_event_time  timestamptz,
    channel          text        NOT NULL,
    fired_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    note             text
);

CREATE INDEX alerts_rule_key_idx ON audit.alerts (rule, key, fired_at);

CREATE INDEX alerts_open_idx ON audit.alerts (alert_id) WHERE acknowledged_at IS NULL;
COMMENT ON TABLE audit.alerts IS
    'Alerts fired by the rules: one row per firing (rule, severity, grouping key, count of events in the window, first and last event ids), acknowledged with audit.acknowledge_alert()';

SELECT pg_catalog.pg_extension_config_dump('audit.alerts', '');
COMMENT ON SEQUENCE audit.alerts_alert_id_seq IS 'Alert ids, increasing in the order alerts fired';

SELECT pg_catalog.pg_extension_config_dump('audit.alerts_alert_id_seq', '');

-- Where the worker stands.  Not dumped: a restored database starts at the
-- events it had when the extension was created (started_at), so restored
-- events do not fire again.
CREATE TABLE audit.alert_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    started_at       timestamptz NOT NULL DEFAULT now(),
    high_watermark   bigint,
    pending          jsonb       NOT NULL DEFAULT '{}',
    evaluated_at     timestamptz,
    events_evaluated bigint      NOT NULL DEFAULT 0,
    alerts_fired     bigint      NOT NULL DEFAULT 0
);
COMMENT ON TABLE audit.alert_state IS
    'Progress of alert evaluation: every visible event with id <= high_watermark has been evaluated, except those of the transactions in pending ({txid: id they may start above}), re-examined when those commit';

INSERT INTO audit.alert_state DEFAULT VALUES;

-- What a rule may group by, and how the key of an event is made.
CREATE FUNCTION audit.alert_group_keys()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['client_addr', 'actor', 'db_user', 'session_user', 'table', 'application_name', 'database', 'action',
                    'client_ip', 'session_id', 'tenant']::text[] $$;
COMMENT ON FUNCTION audit.alert_group_keys() IS 'The values group_by of an alert rule may take (client_ip, session_id, tenant: the application''s context)';

CREATE FUNCTION audit.alert_key(group_by text, e audit.event)
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

-- Business hours 'HH:MM-HH:MM' (an end before the start spans midnight).
CREATE FUNCTION audit.within_hours(t timestamptz, hours text, tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m     text[] := regexp_match(hours, '^\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*$');
    t_on  time;
    t_off time;
    local time;
BEGIN
    IF m IS NULL OR m[1]::int > 24 OR m[3]::int > 24 OR m[2]::int > 59 OR m[4]::int > 59
       OR (m[1]::int = 24 AND m[2]::int > 0) OR (m[3]::int = 24 AND m[4]::int > 0) THEN
        RAISE EXCEPTION 'invalid hours "%"', hours
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Hours are written HH:MM-HH:MM, for example 06:00-22:00 (24:00 is the end of the day).',
                  HINT = 'An end before the start spans midnight: 22:00-06:00 are night hours.';
    END IF;
    t_on := make_time(m[1]::int % 24, m[2]::int, 0);
    t_off := CASE WHEN m[3]::int = 24 THEN time '24:00' ELSE make_time(m[3]::int, m[4]::int, 0) END;
    IF t_on = t_off AND m[3]::int <> 24 THEN
        RAISE EXCEPTION 'invalid hours "%": the start and the end are the same', hours
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 00:00-24:00 for the whole day.';
    END IF;
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    local := (t AT TIME ZONE coalesce(tz, current_setting('TimeZone')))::time;
    IF t_on < t_off THEN
        RETURN local >= t_on AND local < t_off;
    END IF;
    RETURN local >= t_on OR local < t_off;
END
$$;
COMMENT ON FUNCTION audit.within_hours(timestamptz, text, text) IS
    'Internal: whether a time falls in the hours HH:MM-HH:MM in time zone tz (NULL: the server''s TimeZone); raises 22023 on malformed hours';

-- Does an event match a rule (everything but threshold and cooldown)?
-- Read events carry "rows_read" beside "rows" (src/read_audit.c): an
-- aggregate over a whole table returns one row and reads them all.  A rule's
-- min_rows compares the larger of the two.
CREATE FUNCTION audit.alert_matches(r audit.alert_rules, e audit.event)
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

-- Checks every argument of a rule; raises with a clear message.
CREATE FUNCTION audit.check_alert_rule(r audit.alert_rules)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known jsonb := audit.known_actions();
BEGIN
    IF r.name IS NULL OR btrim(r.name) = '' THEN
        RAISE EXCEPTION 'invalid alert rule: name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.class IS NULL OR NOT r.class = ANY (audit.event_classes()) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown class "%"', r.name, r.class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Classes: ' || array_to_string(audit.event_classes(), ', ') || '.';
    END IF;
    IF r.action IS NOT NULL AND known ? r.class AND NOT (known -> r.class) ? r.action
       AND NOT (r.class = 'privilege' AND r.action IN ('DROP OWNED', 'REASSIGN OWNED')) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown action "%" for class %', r.name, r.action, r.class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Actions of class %s: %s.', r.class,
                                (SELECT string_agg(a, ', ') FROM jsonb_array_elements_text(known -> r.class) a));
    END IF;
    IF r.action IS NOT NULL AND btrim(r.action) = '' THEN
        RAISE EXCEPTION 'invalid alert rule "%": action must not be empty', r.name
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave action NULL to match every action.';
    END IF;
    IF r.status IS NOT NULL AND r.status NOT IN ('success', 'failure') THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown status "%"', r.name, r.status
            USING ERRCODE = 'invalid_parameter_value', HINT = 'status is success or failure.';
    END IF;
    IF r.threshold IS NULL OR r.threshold <= 0 THEN
        RAISE EXCEPTION 'invalid alert rule "%": threshold must be positive, not %', r.name, coalesce(r.threshold::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'threshold is the number of matching events (within the interval "within") that fires the rule; 1 fires on every event.';
    END IF;
    IF r.threshold > 1 AND r.within IS NULL THEN
        RAISE EXCEPTION 'invalid alert rule "%": a threshold of % needs "within"', r.name, r.threshold
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say in which time the events must happen, for example within => interval ''10 minutes''.';
    END IF;
    IF r.within IS NOT NULL AND r.within <= interval '0' THEN
        RAISE EXCEPTION 'invalid alert rule "%": within must be a positive interval', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.min_rows IS NOT NULL AND r.min_rows <= 0 THEN
        RAISE EXCEPTION 'invalid alert rule "%": min_rows must be positive', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.min_rows IS NOT NULL AND r.class <> 'read' THEN
        RAISE EXCEPTION 'invalid alert rule "%": min_rows applies to class read only', r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Read events carry the rows returned; other classes have no row count.';
    END IF;
    IF r.group_by IS NOT NULL AND NOT r.group_by = ANY (audit.alert_group_keys()) THEN
        RAISE EXCEPTION 'invalid alert rule "%": cannot group by "%"', r.name, r.group_by
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'group_by is one of ' || array_to_string(audit.alert_group_keys(), ', ') || '.';
    END IF;
    IF r.severity IS NULL OR r.severity NOT IN ('low', 'medium', 'high', 'critical') THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown severity "%"', r.name, r.severity
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Severities: low, medium, high, critical.';
    END IF;
    IF r.cooldown IS NULL OR r.cooldown < interval '0' THEN
        RAISE EXCEPTION 'invalid alert rule "%": cooldown must be zero or positive', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.channel IS NULL OR r.channel = '' OR octet_length(r.channel) >= 64 THEN
        RAISE EXCEPTION 'invalid alert rule "%": channel must be a name of 1 to 63 bytes', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.timezone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = r.timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_abbrevs WHERE abbrev = r.timezone) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown time zone "%"', r.name, r.timezone
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a name from pg_timezone_names, such as Europe/Paris.';
    END IF;
    IF r.outside_hours IS NOT NULL THEN
        PERFORM audit.within_hours(NULL, r.outside_hours, NULL);
    END IF;
    IF r.query IS NOT NULL THEN
        PERFORM '' ~* r.query;  -- 2201B on a malformed regular expression
    END IF;
END
$$;
COMMENT ON FUNCTION audit.check_alert_rule(audit.alert_rules) IS
    'Internal: refuse a malformed alert rule (22023, 2201B) with a message naming the problem';

-- Alert rules created, dropped, switched on or off, and alerts acknowledged
-- are system events (like retention policies and legal holds), with who.
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

CREATE FUNCTION audit.drop_alert_rule(name text, if_exists boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old audit.alert_rules;
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.alert_rules r WHERE r.name = drop_alert_rule.name RETURNING r.* INTO old;
    IF FOUND THEN
        PERFORM audit.log_system_event('DROP ALERT RULE',
            jsonb_build_object('rule', old.name, 'builtin', old.builtin, 'was_enabled', old.enabled, 'class', old.class));
    ELSE
        IF if_exists THEN
            RAISE NOTICE 'alert rule "%" does not exist, skipping', drop_alert_rule.name;
            RETURN false;
        END IF;
        RAISE EXCEPTION 'alert rule "%" does not exist', drop_alert_rule.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The rules are listed in audit.alert_rules.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.drop_alert_rule(text, boolean) IS
    'audit_admin: remove an alert rule (its alerts stay); 42704 if there is none unless if_exists';

CREATE FUNCTION audit.set_alert_rule_enabled(name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role(true);
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE audit.alert_rules r SET enabled = set_alert_rule_enabled.enabled
     WHERE r.name = set_alert_rule_enabled.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert rule "%" does not exist', set_alert_rule_enabled.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The rules are listed in audit.alert_rules.';
    END IF;
    PERFORM audit.log_system_event(CASE WHEN enabled THEN 'ENABLE ALERT RULE' ELSE 'DISABLE ALERT RULE' END,
        jsonb_build_object('rule', set_alert_rule_enabled.name));
END
$$;
COMMENT ON FUNCTION audit.set_alert_rule_enabled(text, boolean) IS
    'audit_admin: turn an alert rule on or off';

CREATE FUNCTION audit.acknowledge_alert(alert_id bigint, note text DEFAULT NULL)
RETURNS audit.alerts
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a audit.alerts;
BEGIN
    PERFORM audit.require_audit_role(true);
    SELECT * INTO a FROM audit.alerts x WHERE x.alert_id = acknowledge_alert.alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', acknowledge_alert.alert_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Open alerts: SELECT * FROM audit.alerts WHERE acknowledged_at IS NULL.';
    END IF;
    IF a.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'alert % was already acknowledged by %', a.alert_id, a.acknowledged_by
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its acknowledged_at and note are in audit.alerts.';
    END IF;
    UPDATE audit.alerts x
       SET acknowledged_at = clock_timestamp(),
           acknowledged_by = CASE WHEN current_setting('role') = 'none' THEN session_user::text
                                  ELSE current_setting('role') END,
           note = acknowledge_alert.note
     WHERE x.alert_id = acknowledge_alert.alert_id
    RETURNING x.* INTO a;
    PERFORM audit.log_system_event('ACKNOWLEDGE ALERT',
        jsonb_build_object('alert_id', a.alert_id, 'rule', a.rule, 'key', a.key, 'severity', a.severity,
                           'note', a.note));
    RETURN a;
END
$$;
COMMENT ON FUNCTION audit.acknowledge_alert(bigint, text) IS
    'audit_admin: mark an alert as handled, with who, when and an optional note; 42704 for an unknown alert, 55000 if already acknowledged';

CREATE FUNCTION audit.evaluate_alerts()
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

-- The rules shipped with the extension (builtin: not dumped, see above).
-- after_hours_login is off: business hours differ from site to site.
-- privilege_escalation also fires for membership in a superuser role
-- ("GRANT postgres TO x", "CREATE ROLE x IN ROLE postgres") and in the roles
-- that reach the server's files and programs (pg_execute_server_program,
-- pg_write_server_files, pg_read_server_files): the capture flags them
-- (src/ddl_capture.c, grants_superuser / grants_server_access).
-- audit_disabled fires on every route (the flag "audit_trigger_disabled":
-- true is on each of them, whatever log_ddl says) and when a protection of the
-- trail is switched off ("audit_protection_off": true); capture switched off
-- is the worst thing that can happen to a trail: critical.  Shipped rules are
-- not dumped (WHERE NOT builtin), so changing a row here (and in the upgrade
-- script) also changes it for a database restored and re-created.
INSERT INTO audit.alert_rules (name, class, action, threshold, within, group_by, severity, cooldown,
                               min_rows, outside_hours, query, enabled, builtin, description, created_by)
VALUES
  ('failed_logins', 'auth', 'LOGIN_FAILED', 5, '10 minutes', 'client_addr', 'high', '10 minutes',
   NULL, NULL, NULL, true, true, '5 failed logins from one client address in 10 minutes', 'audit_ext'),
  ('mass_export', 'read', NULL, 1, NULL, 'actor', 'high', '10 minutes',
   1000, NULL, NULL, true, true, 'One statement read 1,000 rows or more from a read-audited table', 'audit_ext'),
  ('privilege_escalation', 'privilege', NULL, 1, NULL, NULL, 'high', '0',
   NULL, NULL, '^(CREATE ROLE|ALTER ROLE|GRANT ROLE)\n.*("(superuser|createrole)": true|"(roles|in_role)": \[[^]]*"audit_admin"|"grants_(superuser|server_access)": true)',
   true, true, 'A role granted SUPERUSER, CREATEROLE, membership in a superuser role, in audit_admin, or in pg_execute_server_program / pg_write_server_files / pg_read_server_files', 'audit_ext'),
  ('after_hours_login', 'auth', 'LOGIN', 1, NULL, 'actor', 'medium', '1 hour',
   NULL, '06:00-22:00', NULL, false, true, 'A login outside 06:00-22:00 (server time zone); enable with audit.set_alert_rule_enabled', 'audit_ext'),
  ('audit_disabled', 'ddl', NULL, 1, NULL, 'table', 'critical', '0',
   NULL, NULL, '^(DISABLE AUDIT|SET session_replication_role)\n|"audit_trigger_disabled": true|"audit_protection_off": true',
   true, true, 'Capture switched off on a table: audit.disable, an audit trigger disabled, made replica only or dropped (any route, whatever audit_ext.log_ddl says, also by editing pg_trigger: audit.check_capture), session_replication_role = replica; or a protection of the trail switched off (audit_ext.protect_trail, audit_ext.log_ddl, the extension''s event trigger disabled)', 'audit_ext'),
  ('capture_gap', 'system', 'CAPTURE_GAP', 1, NULL, NULL, 'critical', '0',
   NULL, NULL, NULL,
   true, true, 'Changes of tables audited from the WAL (capture => ''wal'') were not captured: the capture slot was invalidated (max_slot_wal_keep_size), dropped or advanced by someone else; the event names the LSN range', 'audit_ext');

-- Rows an event stands for, for rules' min_rows: the larger of "rows"
-- (returned) and "rows_read" (read from the table); -1 without either.
-- One definition for the candidate filter of audit.evaluate_alerts() and
-- for audit.alert_matches().
CREATE FUNCTION audit.event_rows(detail jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- no SET clause: it is inlined into its callers (whose search_path is
-- pinned) instead of being called per event; operators are qualified
AS $$
    SELECT greatest(
        coalesce(CASE WHEN detail OPERATOR(pg_catalog.->>) 'rows' OPERATOR(pg_catalog.~) '^[0-9]{1,18}$'
                      THEN (detail OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int8 END, -1),
        coalesce(CASE WHEN detail OPERATOR(pg_catalog.->>) 'rows_read' OPERATOR(pg_catalog.~) '^[0-9]{1,18}$'
                      THEN (detail OPERATOR(pg_catalog.->>) 'rows_read')::pg_catalog.int8 END, -1))
$$;
COMMENT ON FUNCTION audit.event_rows(jsonb) IS
    'Internal: the rows an event stands for in alert rules'' min_rows: the larger of detail rows and rows_read, -1 without either';

-- PostgreSQL has no privilege on LISTEN or NOTIFY: every role of every
-- database can listen on audit_alerts and can send a notification there.
-- Since 1.4 the payload carries the alert's id, rule, severity, database and
-- time only (the key -- a client address, an actor, a table -- and the event
-- ids are read from audit.alerts, which only the audit roles may), and a
-- signature: a keyed SHA-256 with a secret of this database that only the
-- audit roles can read (audit.alert_secret).  audit.alert_is_genuine(payload)
-- checks it and that the alert exists as described.
CREATE TABLE audit.alert_secret (
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit.alert_secret IS
    'The key alert notifications are signed with (one row); readable by the audit roles only';

SELECT pg_catalog.pg_extension_config_dump('audit.alert_secret', '');

INSERT INTO audit.alert_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                               || pg_catalog.clock_timestamp()::text, 'UTF8'));

-- The signed part: alert_id|rule|severity|database|fired_at (fired_at as
-- microseconds since the epoch, whatever the session's settings).
CREATE FUNCTION audit.alert_signature(alert_id bigint, rule text, severity text, database text, fired_at_us bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(s.secret || convert_to(format('%s|%s|%s|%s|%s', alert_id, rule, severity, database, fired_at_us), 'UTF8')
                         || s.secret), 'hex')
      FROM audit.alert_secret s
     ORDER BY s.created_at DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION audit.alert_signature(bigint, text, text, text, bigint) IS
    'Internal: the signature of an alert notification: hex SHA-256 of secret || "alert_id|rule|severity|database|fired_at_us" || secret';

CREATE FUNCTION audit.alert_payload(a audit.alerts)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object('alert_id', a.alert_id, 'rule', a.rule, 'severity', a.severity,
                             'database', current_database(),
                             'fired_at_us', (extract(epoch FROM a.fired_at) * 1000000)::bigint,
                             'signature', audit.alert_signature(a.alert_id, a.rule, a.severity, current_database(),
                                                                (extract(epoch FROM a.fired_at) * 1000000)::bigint))::text
$$;
COMMENT ON FUNCTION audit.alert_payload(audit.alerts) IS
    'Internal: the NOTIFY payload of an alert: alert_id, rule, severity, database, fired_at_us and its signature; details are in audit.alerts';

CREATE FUNCTION audit.alert_is_genuine(payload text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb;
BEGIN
    PERFORM audit.require_audit_role();
    BEGIN
        p := payload::jsonb;
    EXCEPTION WHEN others THEN
        RETURN false;
    END;
    IF p IS NULL OR jsonb_typeof(p) <> 'object' OR NOT p ?& ARRAY['alert_id', 'rule', 'severity', 'database', 'fired_at_us', 'signature']
       OR p ->> 'database' <> current_database() THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT 1 FROM audit.alerts a
         WHERE a.alert_id::text = p ->> 'alert_id' AND a.rule = p ->> 'rule' AND a.severity = p ->> 'severity'
           AND (extract(epoch FROM a.fired_at) * 1000000)::bigint::text = p ->> 'fired_at_us'
           AND audit.alert_signature(a.alert_id, a.rule, a.severity, current_database(),
                                     (extract(epoch FROM a.fired_at) * 1000000)::bigint) = p ->> 'signature');
END
$$;
COMMENT ON FUNCTION audit.alert_is_genuine(text) IS
    'Whether an alert notification''s payload was sent by audit_ext: its signature verifies and the alert exists as described (audit roles; 42501 otherwise)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT SELECT ON audit.alert_rules,
                audit.alerts,
                audit.alert_state,
                audit.alert_secret TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.alert_group_keys(),
                       audit.alert_key(text,audit.event),
                       audit.within_hours(timestamp with time zone,text,text),
                       audit.alert_matches(audit.alert_rules,audit.event),
                       audit.check_alert_rule(audit.alert_rules),
                       audit.evaluate_alerts(),
                       audit.event_rows(jsonb),
                       audit.alert_signature(bigint,text,text,text,bigint),
                       audit.alert_payload(audit.alerts) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.alert_group_keys() TO audit_admin, audit_reader;
