-- Alert rules: the SQL surface, its errors, and evaluation (called here
-- directly; in a server the background worker calls it).
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Shipped rules: builtin, not dumped; after_hours_login starts disabled.
SELECT name, class, action, threshold, within, group_by, severity, cooldown, min_rows, outside_hours, enabled
  FROM audit.alert_rules WHERE builtin ORDER BY name;

-- The shipped rules are switched off here (so that this database's earlier
-- tests fire nothing); a round without enabled rules moves the watermark on.
SELECT audit.set_alert_rule_enabled(name, false) FROM audit.alert_rules WHERE builtin ORDER BY name;
SELECT audit.evaluate_alerts() AS no_rule_enabled;

-- A rule of every shape, as the DBA writes them.
SELECT name, threshold, within, group_by FROM audit.create_alert_rule(
  name => 'r_failed', class => 'auth', action => 'LOGIN_FAILED',
  threshold => 3, within => interval '10 minutes', group_by => 'client_addr',
  severity => 'high', cooldown => interval '10 minutes');
SELECT name, min_rows FROM audit.create_alert_rule(name => 'r_export', class => 'read', min_rows => 1000, severity => 'high');
SELECT name, outside_hours, timezone FROM audit.create_alert_rule(name => 'r_night', class => 'auth', action => 'LOGIN',
  outside_hours => '06:00-22:00', timezone => 'Europe/Paris', severity => 'medium');
SELECT name, query FROM audit.create_alert_rule(name => 'r_super', class => 'privilege', query => 'SUPERUSER', severity => 'high');
SELECT name, table_name, actor, channel FROM audit.create_alert_rule(name => 'r_deletes', class => 'data', action => 'DELETE',
  table_name => 'public.accounts_a', threshold => 2, within => '1 hour', group_by => 'actor',
  cooldown => '0', channel => 'accounts_alerts');

-- Bad rules are refused with a clear error.
SELECT audit.create_alert_rule(name => 'bad', class => 'nonsense');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', action => 'LOGON');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', threshold => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', threshold => -3, within => '1 minute');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', threshold => 5);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', outside_hours => '6-22');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', outside_hours => '06:00-25:00');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', outside_hours => '08:00-08:00');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', min_rows => 10);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'read', min_rows => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', group_by => 'colour');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', severity => 'urgent');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', query => '(unclosed');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', timezone => 'Mars/Olympus');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'bad', class => 'auth', cooldown => '-1 minute');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_alert_rule(name => 'r_export', class => 'read');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS no_bad_rule FROM audit.alert_rules WHERE name = 'bad';

-- Managing rules
SELECT audit.set_alert_rule_enabled('r_night', false);
SELECT enabled FROM audit.alert_rules WHERE name = 'r_night';
SELECT audit.set_alert_rule_enabled('no_such_rule', true);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.drop_alert_rule('r_night');
SELECT audit.drop_alert_rule('r_night');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.drop_alert_rule('r_night', if_exists => true);

-- Business hours, in the rule's time zone; an end before the start spans midnight.
SELECT audit.within_hours('2026-01-05 12:00+00', '06:00-22:00', 'UTC') AS noon,
       audit.within_hours('2026-01-05 23:30+00', '06:00-22:00', 'UTC') AS late,
       audit.within_hours('2026-01-05 21:30+00', '06:00-22:00', 'Europe/Paris') AS late_in_paris,
       audit.within_hours('2026-01-05 23:30+00', '22:00-06:00', 'UTC') AS night_shift,
       audit.within_hours('2026-01-05 23:30+00', '00:00-24:00', 'UTC') AS whole_day;

-- Evaluation: three DELETEs by one actor fire r_deletes once per round and
-- key, with the count and the event ids (NOTIFY: test/e2e/alerts.sh).
CREATE TABLE accounts_a (id int PRIMARY KEY, owner text);
SELECT audit.enable('accounts_a');
INSERT INTO accounts_a SELECT g, 'o' || g FROM generate_series(1, 10) g;
-- (not a check: evaluates what earlier statements left, which the worker may
-- have done already, so the count varies; the check is "fired" below)
SELECT audit.evaluate_alerts() >= 0 AS rules_active;
BEGIN;
SET LOCAL audit_ext.actor = 'mallory';
DELETE FROM accounts_a WHERE id <= 3;
COMMIT;
SELECT audit.evaluate_alerts() AS fired;
SELECT rule, severity, key, count, last_event_id - first_event_id AS id_span, channel, acknowledged_at
  FROM audit.alerts ORDER BY alert_id;
-- one event alone is below the threshold; nothing new fires in a round without events
SET audit_ext.actor = 'eve';
DELETE FROM accounts_a WHERE id = 4;
RESET audit_ext.actor;
SELECT audit.evaluate_alerts() AS fired_below_threshold;
SELECT audit.evaluate_alerts() AS fired_nothing_new;

-- A rule matching on the statement text and detail (regular expression).
SELECT name FROM audit.create_alert_rule(name => 'r_owner_change', class => 'data', action => 'UPDATE',
  query => 'SET owner', cooldown => '0');
UPDATE accounts_a SET owner = 'x' WHERE id = 5;
UPDATE accounts_a SET id = 50 WHERE id = 6;
SELECT audit.evaluate_alerts() AS fired;
SELECT rule, key, count FROM audit.alerts WHERE rule = 'r_owner_change';

-- Acknowledgement
SELECT alert_id AS first_alert FROM audit.alerts ORDER BY alert_id LIMIT 1 \gset
SELECT acknowledged_at IS NOT NULL AS acked, acknowledged_by = current_user AS by_me, note
  FROM audit.acknowledge_alert(:first_alert, note => 'checked with the user');
SELECT audit.acknowledge_alert(:first_alert);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.acknowledge_alert(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS open_alerts FROM audit.alerts WHERE acknowledged_at IS NULL;

-- Who may do what: audit_reader reads, audit_admin manages, others nothing.
CREATE ROLE regress_alert_admin IN ROLE audit_admin;
CREATE ROLE regress_alert_reader IN ROLE audit_reader;
CREATE ROLE regress_alert_nobody;
SET ROLE regress_alert_reader;
SELECT count(*) > 0 AS reader_reads_alerts FROM audit.alerts;
SELECT count(*) > 0 AS reader_reads_rules FROM audit.alert_rules;
SELECT audit.create_alert_rule(name => 'r_reader', class => 'auth');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.acknowledge_alert(:first_alert);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_alert_nobody;
SELECT count(*) FROM audit.alerts;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM audit.alert_rules;
\echo :LAST_ERROR_SQLSTATE
SELECT audit.drop_alert_rule('r_export');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_alert_admin;
SELECT name, created_by FROM audit.create_alert_rule(name => 'r_admin', class => 'ddl', action => 'DROP TABLE');
SELECT audit.drop_alert_rule('r_admin');
RESET ROLE;

-- Read auditing is an option of audit.enable (NULL keeps the setting).
SELECT audit.enable('accounts_a', log_reads => true);
SELECT table_name, log_reads FROM audit.audited_tables WHERE table_name = 'accounts_a';
SELECT audit.enable('accounts_a', exclude_columns => '{owner}');
SELECT table_name, exclude_columns, log_reads FROM audit.audited_tables WHERE table_name = 'accounts_a';
ALTER TABLE accounts_a RENAME COLUMN owner TO holder;
SELECT exclude_columns, log_reads FROM audit.audited_tables WHERE table_name = 'accounts_a';
SELECT audit.enable('accounts_a', log_reads => false);
SELECT log_reads FROM audit.audited_tables WHERE table_name = 'accounts_a';
SELECT detail FROM audit.event WHERE action = 'ENABLE AUDIT' AND table_name = 'accounts_a' ORDER BY id;

-- The first round takes the events older than the alert state for history,
-- but only those below the first event of its time: an old event numbered
-- after a new one (a login queued before CREATE EXTENSION, written by the
-- worker after the statements that followed it) does not make the new one
-- history.  The round is held for this transaction (the worker's rounds wait).
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('audit_ext'), hashtext('evaluate_alerts'));
UPDATE audit.alert_state SET high_watermark = NULL, pending = '{}', started_at = now();
SELECT name FROM audit.create_alert_rule(name => 'r_first_round', class => 'privilege', action => 'GRANT',
  cooldown => '0');
INSERT INTO audit.event (event_time, class, action) VALUES (now(), 'privilege', 'GRANT');
INSERT INTO audit.event (event_time, class, action) VALUES (now() - interval '1 minute', 'auth', 'LOGIN');
SELECT audit.evaluate_alerts() >= 1 AS fired;
SELECT rule, count FROM audit.alerts WHERE rule = 'r_first_round';
ROLLBACK;

-- clean up
SELECT audit.disable('accounts_a');
DROP TABLE accounts_a;
SELECT audit.drop_alert_rule(name) FROM audit.alert_rules WHERE NOT builtin ORDER BY name;
DROP ROLE regress_alert_admin, regress_alert_reader, regress_alert_nobody;
SELECT audit.set_alert_rule_enabled(name, name <> 'after_hours_login') FROM audit.alert_rules WHERE builtin ORDER BY name;
