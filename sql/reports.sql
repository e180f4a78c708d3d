-- Compliance reports (issue 21): the typed report functions, their columns,
-- argument checks and access; render_report (HTML, CSV) and render_dashboard
-- checked for structure and escaping; schedules (arguments, due times).
-- Times and ids are compared, not shown.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP ROLE IF EXISTS regress_rp_plain, regress_rp_reader, regress_rp_admin;
CREATE TABLE "rp <b>&" (id int PRIMARY KEY, v text);
SELECT audit.enable('"rp <b>&"');
RESET client_min_messages;
SELECT now() - interval '1 hour' AS f, now() + interval '1 hour' AS t \gset

SET audit_ext.actor = '<script>x</script>"&''';
INSERT INTO "rp <b>&" VALUES (1, '<i>one</i>'), (2, 'two');
UPDATE "rp <b>&" SET v = 'a "b" & c' WHERE id = 1;
DELETE FROM "rp <b>&" WHERE id = 2;
RESET audit_ext.actor;

-- the kinds, in the order of a drop-down
SELECT kind, title, function FROM audit.report_kinds ORDER BY position;

-- every function has the same parameters
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments
  FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace AND p.proname LIKE 'report\_%'
   AND p.proname NOT IN ('report_risk', 'report_condition', 'report_number', 'report_page', 'report_figure',
                         'report_table', 'report_columns', 'report_integrity', 'report_due')
 ORDER BY 1;
-- typed columns (no jsonb)
SELECT p.proname, pg_get_function_result(p.oid) AS columns
  FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace
   AND p.proname IN (SELECT substr(k.function, 7) FROM audit.report_kinds k) ORDER BY 1;

-- one row per changed field
SELECT action, status, column_name, old_value, new_value, actor
  FROM audit.report_data_changes(:'f', :'t', ARRAY['<script>x</script>"&''']) ORDER BY event_id, column_name;
SELECT category, action, object FROM audit.report_admin_activity(:'f', :'t') WHERE object LIKE 'public.rp%' AND action = 'ENABLE AUDIT';
SELECT count(*) AS no_rows_for_unknown_actor FROM audit.report_data_changes(:'f', :'t', ARRAY['nobody']);
SELECT count(*) AS failures_only FROM audit.report_data_changes(:'f', :'t', include_success => false)
 WHERE table_name = 'rp <b>&';
SELECT application_name, db_user, changes, failures
  FROM audit.report_system_access(:'f', :'t') WHERE application_name = 'pg_regress/reports';
SELECT audit.report_risk('auth', 'LOGIN_FAILED', 'failure', NULL) AS failed_login,
       audit.report_risk('privilege', 'GRANT', 'success', '{}') AS grant_,
       audit.report_risk('privilege', 'ALTER ROLE', 'success', '{"grants_superuser": true}') AS superuser,
       audit.report_risk('ddl', 'ALTER TABLE', 'success', '{"risk": "critical"}') AS flagged,
       audit.report_risk('data', 'INSERT', 'success', NULL) AS insert_;

-- the key count a rendered data change report counts its rows with (the
-- rows of jsonb_object_keys(), read from the jsonb header): small values,
-- nested ones, a compressed and a toasted one (read as a slice), errors
CREATE TEMP TABLE rp_keys (j jsonb) WITH (toast_tuple_target = 128);
INSERT INTO rp_keys VALUES ('{}'), ('{"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}'),
    ((SELECT jsonb_object_agg('k' || g, repeat('x', 20)) FROM generate_series(1, 300) g)),
    ((SELECT jsonb_object_agg(md5(g::text), md5(g::text)) FROM generate_series(1, 5000) g));
ALTER TABLE rp_keys ALTER COLUMN j SET STORAGE external;
INSERT INTO rp_keys SELECT jsonb_object_agg(md5(g::text), g) FROM generate_series(1, 3000) g;
SELECT audit.jsonb_key_count(j) AS key_count, (SELECT count(*) FROM jsonb_object_keys(j)) AS object_keys
  FROM rp_keys ORDER BY 1;
SELECT audit.jsonb_key_count(NULL) AS null_is_null;
SELECT audit.jsonb_key_count('"scalar"');
SELECT audit.jsonb_key_count('[1, 2]');
DROP TABLE rp_keys;

-- the distinct actors of report_system_access: audit.count_distinct_text()
-- is count(DISTINCT) (NULLs not counted, '' is a value), per group and over
-- all rows, also when parallel workers each hash a part and the leader
-- merges their serialized sets; its support functions refuse to run alone
CREATE TABLE rp_distinct (grp int, a text) WITH (parallel_workers = 2);
INSERT INTO rp_distinct
SELECT g % 7, CASE WHEN g % 11 = 0 THEN NULL WHEN g % 13 = 0 THEN '' ELSE 'actor ' || (g % 997) END
  FROM generate_series(1, 60000) g;
ANALYZE rp_distinct;
SELECT grp, audit.count_distinct_text(a) AS hashed, count(DISTINCT a) AS sorted
  FROM rp_distinct GROUP BY grp ORDER BY grp;
SELECT audit.count_distinct_text(a) AS hashed, count(DISTINCT a) AS sorted FROM rp_distinct;
SELECT audit.count_distinct_text(a) AS no_rows FROM rp_distinct WHERE false;
BEGIN;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
CREATE FUNCTION pg_temp.rp_plan_text(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END $$;
SELECT pg_temp.rp_plan_text('SELECT grp, audit.count_distinct_text(a) FROM rp_distinct GROUP BY grp') ~ 'Partial'
       AS partial_aggregation_in_workers;
SELECT grp, audit.count_distinct_text(a) AS hashed_in_parallel FROM rp_distinct GROUP BY grp ORDER BY grp;
SELECT audit.count_distinct_text(a) AS all_in_parallel FROM rp_distinct;
COMMIT;
DROP TABLE rp_distinct;
-- (its support functions cannot be called from SQL: no value of type
-- internal can be written; each also refuses to run outside an aggregate)
SELECT audit.count_distinct_trans(NULL::internal, 'x');
CREATE ROLE regress_rp_nobody;
SET ROLE regress_rp_nobody;
SELECT audit.count_distinct_text(x) FROM (VALUES ('a')) v(x);
RESET ROLE;
DROP ROLE regress_rp_nobody;

-- argument checks
SELECT * FROM audit.report_user_access(NULL, now());
SELECT * FROM audit.report_user_access('-infinity', now());
SELECT * FROM audit.report_user_access('2026-02-01', '2026-01-01');
SELECT * FROM audit.report_exports(:'f', :'t', '{}');
SELECT * FROM audit.report_exports(:'f', :'t', '{alice,NULL}');
SELECT * FROM audit.report_exports(:'f', :'t', NULL, false, false);
SELECT audit.render_report('nope', :'f', :'t');
SELECT audit.render_report('exports', :'f', :'t', format => 'pdf');

-- HTML: one document, values escaped, no script
SELECT audit.render_report('data_changes', :'f', :'t') AS html \gset
SELECT left(:'html', 15) AS starts,
       right(:'html', 8) = E'</html>\n' AS ends,
       :'html' LIKE '%&lt;script&gt;x&lt;/script&gt;&quot;&amp;&#39;%' AS actor_escaped,
       :'html' LIKE '%rp &lt;b&gt;&amp;%' AS table_escaped,
       :'html' LIKE '%&lt;i&gt;one&lt;/i&gt;%' AS value_escaped,
       :'html' ~ '<script|<i>|<b>' AS raw_markup,
       (SELECT count(*) FROM regexp_matches(:'html', '<g class="bar"', 'g')) > 0 AS has_bars,
       :'html' LIKE '%id="integrity-status"%' AS integrity;
-- CSV: header and quoted fields
SELECT audit.render_report('data_changes', :'f', :'t', format => 'csv') AS csv \gset
SELECT split_part(:'csv', E'\n', 1) AS header;
SELECT regexp_replace(regexp_replace(line, '^[0-9]+,[^,]+,', 'ID,TIME,'), ',[0-9]+$', ',TXID') AS line
  FROM regexp_split_to_table(:'csv', E'\n') line WHERE line LIKE '%UPDATE%' AND line LIKE '%rp <b>&%';
SELECT detail ->> 'kind' AS kind, detail ->> 'format' AS format, (detail ->> 'rows')::int > 0 AS rows
  FROM audit.event WHERE class = 'system' AND action = 'REPORT_GENERATED' ORDER BY id;
SELECT reports_generated FROM audit.user_activity(current_user::text);
SELECT audit.render_dashboard() LIKE '<!DOCTYPE html>%Audit dashboard%' AS dashboard;
SELECT audit.render_dashboard('infinity', now());

-- schedules
SELECT name, kind, every, at, period, format, timezone, next_due > now() AS future
  FROM audit.schedule_report('Daily Admin Activity – 6 AM', 'admin_activity', 'daily');
SELECT name, every, period FROM audit.schedule_report('Weekly Security Summary', 'security_events', 'weekly:monday', '07:30');
SELECT name, every, period, timezone FROM audit.schedule_report('Monthly', 'user_access', 'monthly:1', timezone => 'Europe/Berlin', format => 'csv');
SELECT audit.schedule_report('Monthly', 'user_access', 'monthly:1');
SELECT audit.schedule_report('x', 'user_access', 'hourly');
SELECT audit.schedule_report('x', 'user_access', 'monthly:31');
SELECT audit.schedule_report('x', 'user_access', 'daily', timezone => 'Mars/Olympus');
SELECT audit.schedule_report('', 'user_access', 'daily');
SELECT audit.schedule_report('x', 'user_access', 'daily', period => '-1 day');
-- due times
SELECT audit.report_due('daily', '06:00', 'UTC', '2026-03-10 05:00+00', true) AS daily_before,
       audit.report_due('daily', '06:00', 'UTC', '2026-03-10 05:00+00', false) AS daily_after,
       audit.report_due('weekly:monday', '06:00', 'UTC', '2026-03-11 12:00+00', true) AS monday_before,
       audit.report_due('weekly:monday', '06:00', 'UTC', '2026-03-11 12:00+00', false) AS monday_after,
       audit.report_due('monthly:1', '06:00', 'Europe/Berlin', '2026-03-01 04:59+00', true) AS month_before,
       audit.report_due('monthly:1', '06:00', 'Europe/Berlin', '2026-03-01 05:00+00', true) AS month_at;
SELECT audit.unschedule_report('Monthly');
SELECT audit.unschedule_report('Monthly');
SELECT action, detail ->> 'name' AS name FROM audit.event
 WHERE class = 'system' AND action LIKE '%SCHEDULE REPORT' ORDER BY id;
-- writing files: only the maintenance worker (and a superuser, for repairs)
SELECT audit.write_report_file('../x.html', 'x');
SELECT audit.write_report_file('.hidden', 'x');
SELECT audit.write_report_file('a/b.html', 'x');

-- access
CREATE ROLE regress_rp_plain;
CREATE ROLE regress_rp_reader IN ROLE audit_reader;
CREATE ROLE regress_rp_admin IN ROLE audit_admin;
SET ROLE regress_rp_plain;
SELECT * FROM audit.report_user_access(:'f', :'t');
SELECT audit.render_report('exports', :'f', :'t');
SELECT audit.render_dashboard();
SELECT * FROM audit.report_schedules;
SELECT audit.schedule_report('x', 'exports', 'daily');
SELECT audit.run_due_reports();
SELECT audit.write_report_file('x.html', 'x');
-- the data change report is a SQL function over a view: the same refusal
SELECT * FROM audit.report_data_changes(:'f', :'t');
SELECT count(*) FROM audit.report_data_change_rows;
SELECT audit.record_verification();
RESET ROLE;
SET ROLE regress_rp_reader;
SELECT count(*) > 0 AS reader_reads FROM audit.report_data_changes(:'f', :'t');
SELECT * FROM audit.report_data_changes(:'f', :'t', '{}');
SELECT count(*) > 0 AS reader_reads_view FROM audit.report_data_change_rows;
SELECT audit.schedule_report('x', 'exports', 'daily');
SELECT audit.unschedule_report('Weekly Security Summary');
RESET ROLE;
SET ROLE regress_rp_admin;
SELECT audit.unschedule_report('Weekly Security Summary');
SELECT audit.write_report_file('x.html', 'x');
RESET ROLE;
-- the rows of one event (audit.data_change_fields(), C) against the rule
-- written in SQL that it replaced: strings (quotes, escapes, unicode),
-- numbers, booleans, JSON null, nested values, a column missing from the
-- data, a NULL column name, an empty column list, INSERT/DELETE key order,
-- a TRUNCATE, a refused change, an unknown action, all NULL
CREATE TEMP TABLE rp_fields (n int, action text, status text, changed_columns text[], old_data jsonb, new_data jsonb);
INSERT INTO rp_fields VALUES
    (1, 'UPDATE', 'success', '{v,w,x,y,z,gone}',
     '{"v": "a \"q\" \\ \u00e9", "w": 1.50, "x": true, "y": null, "z": {"b": [1, "2"], "a": null}}',
     '{"v": "", "w": -1e3, "x": false, "y": [], "z": "x", "gone2": 1}'),
    (2, 'UPDATE', 'success', ARRAY[NULL, 'v'], '{"v": 1}', '{"v": 2}'),
    (3, 'UPDATE', 'success', '{}', '{"v": 1}', '{"v": 1}'),
    (4, 'UPDATE', 'success', NULL, '{"v": 1}', '{"v": 2}'),
    (5, 'INSERT', 'success', NULL, NULL, '{"long_key": 1, "id": 7, "b": "x", "a": null}'),
    (6, 'DELETE', 'success', NULL, '{"id": 7, "b": {"c": 1}}', NULL),
    (7, 'INSERT', 'success', NULL, NULL, '{}'),
    (8, 'INSERT', 'success', NULL, NULL, NULL),
    (9, 'TRUNCATE', 'success', NULL, NULL, NULL),
    (10, 'UPDATE', 'failure', '{v}', '{"v": 1}', '{"v": 2}'),
    (11, 'MERGE', 'success', '{v}', '{"v": 1}', '{"v": 2}'),
    (12, NULL, NULL, NULL, NULL, NULL),
    (13, 'DELETE', 'success', NULL, '{"id": 1}', '{"id": 2, "extra": 3}'),
    -- toasted: 3000 keys (not shown, compared below)
    (14, 'INSERT', 'success', NULL, NULL,
     (SELECT jsonb_object_agg(md5(g::text), repeat(md5(g::text), 3)) FROM generate_series(1, 3000) g)),
    (15, 'UPDATE', 'success', (SELECT array_agg(md5(g::text)) FROM generate_series(1, 3000, 7) g),
     (SELECT jsonb_object_agg(md5(g::text), g) FROM generate_series(1, 3000) g),
     (SELECT jsonb_object_agg(md5(g::text), -g) FROM generate_series(1, 3000) g));
ALTER TABLE rp_fields ADD COLUMN record_id jsonb;
UPDATE rp_fields SET record_id = CASE n % 3 WHEN 0 THEN NULL WHEN 1 THEN jsonb_build_object('id', n)
                                  ELSE jsonb_build_object('k', 'a"b', 'n', n) END;
CREATE TEMP VIEW rp_fields_sql AS
SELECT f.n, k.i, k.col AS column_name,
       (f.old_data -> k.col) #>> '{}' AS old_value, (f.new_data -> k.col) #>> '{}' AS new_value,
       CASE WHEN k.i IS NOT NULL THEN f.record_id::text END AS record_text
  FROM rp_fields f
  LEFT JOIN LATERAL unnest(CASE WHEN f.status = 'success' AND f.action = 'UPDATE' THEN f.changed_columns
                                WHEN f.status = 'success' AND f.action IN ('INSERT', 'DELETE')
                                THEN ARRAY(SELECT jsonb_object_keys(coalesce(f.new_data, f.old_data))) END)
            WITH ORDINALITY AS k(col, i) ON true;
CREATE TEMP VIEW rp_fields_c AS
SELECT f.n, k.i, k.column_name, k.old_value, k.new_value, k.record_text
  FROM rp_fields f
  LEFT JOIN LATERAL audit.data_change_fields(f.action, f.status, f.changed_columns, f.old_data, f.new_data, f.record_id)
            WITH ORDINALITY AS k(column_name, old_value, new_value, record_text, i) ON true;
SELECT * FROM rp_fields_c WHERE n < 14 ORDER BY n, i;
SELECT n, count(*), pg_column_size(max(coalesce(new_data, old_data)::text)) > 100000 AS big
  FROM rp_fields_c JOIN rp_fields USING (n) WHERE n >= 14 GROUP BY n ORDER BY n;
SELECT count(*) AS differences
  FROM ((TABLE rp_fields_sql EXCEPT ALL TABLE rp_fields_c) UNION ALL (TABLE rp_fields_c EXCEPT ALL TABLE rp_fields_sql)) d;
SELECT * FROM audit.data_change_fields('INSERT', 'success', NULL, NULL, '[1, 2]', NULL);
SELECT * FROM audit.data_change_fields('DELETE', 'success', NULL, '"scalar"', NULL, '{"id": 1}');
SELECT name FROM audit.report_schedules ORDER BY 1;
SELECT audit.unschedule_report(name) FROM audit.report_schedules;

-- The data change report is inlined into the caller's query (no function
-- scan that would materialise every row first): LIMIT reads a few events.
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE l text;
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP RETURN NEXT l; END LOOP;
END $$;
SELECT count(*) FILTER (WHERE l LIKE '%Function Scan on report_data_changes%') AS function_scans,
       count(*) FILTER (WHERE l LIKE '%Limit%') AS limits
  FROM pg_temp.plan_of(format('SELECT * FROM audit.report_data_changes(%L, %L) LIMIT 2', :'f', :'t')) l;
SELECT count(*) AS two FROM (SELECT * FROM audit.report_data_changes(:'f', :'t') LIMIT 2) x;

-- Recorded verifications: a walk of everything below the last checkpoint
-- round's horizon (here it includes an event an earlier test inserted without
-- a hash: the walk says so, as audit.verify() does); a report of a later
-- period reuses the walks that reach into it and still shows an event
-- rewritten or removed after its walk, and a newer one edited.
SELECT audit.chain_checkpoint() >= 0 AS checkpoint;
SELECT audit.record_verification() > 0 AS recorded;
SELECT count(*) = 1 AS one_walk, (SELECT verified FROM audit.verify()) = bool_and(breaks = 0) AS as_verify_says
  FROM audit.verification;
SELECT now() AS f2 \gset
INSERT INTO "rp <b>&" VALUES (4, 'four'), (5, 'five');
UPDATE "rp <b>&" SET v = 'four!' WHERE id = 4;
SELECT audit.chain_checkpoint() >= 0 AS checkpoint;
SELECT audit.record_verification() AS walked_events;
SELECT count(*) AS walks, bool_and(breaks = 0) FILTER (WHERE after_event_id > 0) AS later_walk_unbroken
  FROM audit.verification;
-- (the first walk's events reach into every period: an earlier test wrote one
-- in 2099; its break, the event without a hash, shows in every report)
SELECT substring(r FROM 'id="integrity-status" data-verified="[a-z]*"') AS status,
       r LIKE '%walked by the recorded verifications%' AS reused,
       r LIKE '%has no valid chain hash%' AS says_first_walk_break,
       r LIKE '%rewritten or added after%' OR r LIKE '%no longer there%' OR r LIKE '%does not match its hash%' AS says_more
  FROM audit.render_report('data_changes', :'f2', :'t') r;
SELECT max(id) AS victim FROM audit.event WHERE table_name = 'rp <b>&' AND action = 'UPDATE' \gset
BEGIN;
ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
SET LOCAL audit_ext.protect_trail = off;
UPDATE audit.event SET new_data = '{"v": "forged"}' WHERE id = :victim;
SELECT substring(r FROM 'id="integrity-status" data-verified="[a-z]*"') AS status,
       r LIKE '%rewritten or added after the recorded walk%' AS says_rewritten
  FROM audit.render_report('data_changes', :'f2', :'t') r;
ROLLBACK;
BEGIN;
ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
SET LOCAL audit_ext.protect_trail = off;
DELETE FROM audit.event WHERE id = :victim;
SELECT substring(r FROM 'id="integrity-status" data-verified="[a-z]*"') AS status,
       r LIKE '%are no longer there: deleted%' AS says_deleted
  FROM audit.render_report('data_changes', :'f2', :'t') r;
ROLLBACK;
BEGIN;
INSERT INTO "rp <b>&" VALUES (6, 'six');
ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
SET LOCAL audit_ext.protect_trail = off;
UPDATE audit.event SET new_data = '{"v": "forged"}'
 WHERE id = (SELECT max(id) FROM audit.event WHERE table_name = 'rp <b>&');
SELECT substring(r FROM 'id="integrity-status" data-verified="[a-z]*"') AS status,
       r LIKE '%does not match its hash%' AS says_edited
  FROM audit.render_report('data_changes', :'f2', :'t') r;
ROLLBACK;
SELECT audit.disable('"rp <b>&"');
DROP TABLE "rp <b>&";
DROP ROLE regress_rp_plain, regress_rp_reader, regress_rp_admin;
