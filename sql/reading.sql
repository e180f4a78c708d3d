-- Reading the trail: search, changes, record history, row_as_of, undo,
-- user_activity, activity_summary, recent_high_priority, export, access.
-- Event ids are shown relative to a mark; times are compared, not shown.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rd_plain, regress_rd_reader, regress_rd_admin, regress_rd_admin_noprivs;
CREATE TABLE rd_orders (id int PRIMARY KEY, item text, qty int, note text, card text, secret text);
SELECT audit.enable('rd_orders', exclude_columns => '{secret}', mask_columns => '{card}');
CREATE TABLE rd_plain (id int PRIMARY KEY, v text, n int);
SELECT audit.enable('rd_plain');
CREATE TABLE rd_nokey (a int, b text);
SELECT audit.enable('rd_nokey');
CREATE TABLE rd_trunc (id int PRIMARY KEY, v text);
SELECT audit.enable('rd_trunc');
CREATE TABLE rd_part (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE rd_part_eu PARTITION OF rd_part FOR VALUES IN ('eu');
CREATE TABLE rd_part_us PARTITION OF rd_part FOR VALUES IN ('us');
SELECT audit.enable('rd_part');
RESET client_min_messages;

SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset

-- ---------------------------------------------------------------------------
-- Some history: two actors, a masked and an excluded column, a statement on
-- two lines, values with % and _.
-- ---------------------------------------------------------------------------
SET audit_ext.actor = 'regress_rd_alice';
INSERT INTO rd_orders VALUES (1, 'Apple', 1, 'fresh', '4111', 's1'),
                             (2, 'pear', 2, '100% juice', '5500', 's2'),
                             (3, 'plum', 3, 'a_b', NULL, 's3');
UPDATE rd_orders SET qty = 10 WHERE id = 1;
SELECT clock_timestamp() AS t_mid \gset
SET audit_ext.actor = 'regress_rd_bob';
UPDATE rd_orders SET card = '6011', secret = 'x' WHERE id = 2;
UPDATE rd_orders
   SET note = 'two lines' WHERE id = 3;
DELETE FROM rd_orders WHERE id = 2;
RESET audit_ext.actor;

SELECT id - :mark AS n, action, actor, record_id, old_data, new_data, changed_columns
  FROM audit.event WHERE id > :mark ORDER BY id;

-- ---------------------------------------------------------------------------
-- 1. audit.search
-- ---------------------------------------------------------------------------
-- newest first; the statement text comes along
SELECT id - :mark AS n, action, actor, record_id, statement_text
  FROM audit.search(table_name => 'rd_orders');
-- schema.table, quoted names, a table nobody audited
SELECT count(*) FROM audit.search(table_name => 'public.rd_orders');
SELECT count(*) FROM audit.search(table_name => '"public"."rd_orders"');
SELECT count(*) FROM audit.search(table_name => 'other_schema.rd_orders');
SELECT count(*) FROM audit.search(table_name => 'no_such_table');
-- record (containment), actor, action, class, status, combined
SELECT id - :mark AS n, action FROM audit.search(record_id => '{"id": 2}', table_name => 'rd_orders');
SELECT id - :mark AS n, action, record_id FROM audit.search(actor => 'regress_rd_bob');
SELECT id - :mark AS n, record_id FROM audit.search(action => 'UPDATE', class => 'data', table_name => 'rd_orders');
SELECT id - :mark AS n FROM audit.search(actor => 'regress_rd_alice', action => 'UPDATE', table_name => 'public.rd_orders');
SELECT count(*) FROM audit.search(status => 'failure', table_name => 'rd_orders');
SELECT count(*) FROM audit.search(actor => 'regress_rd_nobody');
-- time range: from_time inclusive, to_time exclusive
SELECT id - :mark AS n, actor FROM audit.search(from_time => :'t_mid', table_name => 'rd_orders');
SELECT id - :mark AS n, actor FROM audit.search(to_time => :'t_mid', table_name => 'rd_orders');
SELECT count(*) FROM audit.search(from_time => :'t_mid', to_time => :'t_mid');
-- free text: case-insensitive, over data, record ids, actors and statements;
-- % and _ are literal
SELECT id - :mark AS n, action FROM audit.search(query => 'APPLE', table_name => 'rd_orders');
SELECT id - :mark AS n, action FROM audit.search(query => '100%', table_name => 'rd_orders');
SELECT count(*) FROM audit.search(query => '10_%', table_name => 'rd_orders');
SELECT id - :mark AS n, action FROM audit.search(query => 'a_b', table_name => 'rd_orders');
SELECT id - :mark AS n, action FROM audit.search(query => 'rd_bob', table_name => 'rd_orders');
SELECT id - :mark AS n, action FROM audit.search(query => 'set NOTE = ?', table_name => 'rd_orders');
-- in a closed time range; an empty range
SELECT id - :mark AS n, action FROM audit.search(query => 'rd_orders', from_time => :'t_mid', to_time => 'infinity');
SELECT count(*) FROM audit.search(query => 'rd_orders', from_time => '2001-01-01', to_time => '2001-01-02');
-- masked and excluded values are not in the data, and statement texts have
-- their literals redacted (audit_ext.statement_literals): nothing matches
SELECT count(*) AS matches, count(*) FILTER (WHERE statement_text LIKE '%4111%') AS by_statement_text
  FROM audit.search(query => '4111', table_name => 'rd_orders');
SELECT count(*) AS matches, count(*) FILTER (WHERE statement_text LIKE '%s3%') AS by_statement_text
  FROM audit.search(query => 's3', table_name => 'rd_orders');
-- pages: max_rows, then before_id => the last id of the page
SELECT id - :mark AS n FROM audit.search(table_name => 'rd_orders', max_rows => 2);
SELECT min(id) AS page_end FROM audit.search(table_name => 'rd_orders', max_rows => 2) \gset
SELECT id - :mark AS n FROM audit.search(table_name => 'rd_orders', max_rows => 2, before_id => :page_end);
-- no filter at all: the newest events
SELECT array(SELECT id FROM audit.search(max_rows => 3))
     = array(SELECT id FROM audit.event ORDER BY id DESC LIMIT 3) AS newest_first;
-- actions are checked against their class when it is data, auth or privilege
-- (to_time in 2000: accepted arguments, no events)
SELECT count(*) FROM audit.search(class => 'auth', action => 'LOGIN', to_time => '2000-01-01');
SELECT count(*) FROM audit.search(class => 'privilege', action => 'ALTER DEFAULT PRIVILEGES', to_time => '2000-01-01');
SELECT count(*) FROM audit.search(class => 'ddl', action => 'CREATE TABLE', to_time => '2000-01-01');
SELECT count(*) FROM audit.search(class => 'system', action => 'anything at all', to_time => '2000-01-01');
SELECT count(*) FROM audit.search(action => 'CREATE TABLE', to_time => '2000-01-01');   -- no class: a command tag
-- argument errors: 22023, naming the argument
SELECT * FROM audit.search(class => 'bogus');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(class => 'auth', action => 'INSERT');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(class => 'data', action => 'SELECT');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(action => 'insert');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(from_time => '2030-01-02', to_time => '2030-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(max_rows => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(max_rows => 10001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(max_rows => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(status => 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(before_id => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(record_id => '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(record_id => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(table_name => 'a.b.c');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(table_name => 'bad"name');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(query => '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.search(actor => '');
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------------------
-- 2. audit.changes: one row per changed column
-- ---------------------------------------------------------------------------
SELECT event_id - :mark AS n, action, record_id, column_name, old_value, new_value
  FROM audit.changes WHERE event_id > :mark ORDER BY event_id, column_name;

-- ---------------------------------------------------------------------------
-- 3. audit.record_history
-- ---------------------------------------------------------------------------
SELECT id - :mark AS n, action, actor, old_data, new_data
  FROM audit.record_history('rd_orders', '{"id": 2}');
-- key values are taken through the column types: "2" is 2
SELECT count(*) FROM audit.record_history('rd_orders', '{"id": "2"}');
-- a key names the record that has it now (or had it last): 5 is the record
-- inserted last with 5; the one that moved from 5 to 50 is found by 50,
-- back through its key 5, and never merged with the other
SELECT coalesce(max(id), 0) AS mark2 FROM audit.event \gset
INSERT INTO rd_plain VALUES (5, 'five', 5);
UPDATE rd_plain SET id = 50 WHERE id = 5;
UPDATE rd_plain SET v = 'fifty' WHERE id = 50;
INSERT INTO rd_plain VALUES (5, 'another five', 0);   -- a different record, with its own history
SELECT id - :mark2 AS n, action, record_id, new_data FROM audit.record_history('rd_plain', '{"id": 5}');
SELECT id - :mark2 AS n, action, record_id FROM audit.record_history('rd_plain', '{"id": 50}');
DELETE FROM rd_plain WHERE id IN (5, 50);
-- TRUNCATE ends a record's life: a row inserted again with its key is another
-- record (key 1 names it); key 2's history ends with the TRUNCATE
SELECT coalesce(max(id), 0) AS mark2 FROM audit.event \gset
INSERT INTO rd_trunc VALUES (1, 'a'), (2, 'b');
TRUNCATE rd_trunc;
INSERT INTO rd_trunc VALUES (1, 'again');
SELECT id - :mark2 AS n, action, table_name, record_id FROM audit.record_history('rd_trunc', '{"id": 1}');
SELECT id - :mark2 AS n, action, table_name, record_id FROM audit.record_history('rd_trunc', '{"id": 2}');
-- ... and so does a TRUNCATE of the record's partition (not of another one)
SELECT coalesce(max(id), 0) AS mark2 FROM audit.event \gset
INSERT INTO rd_part VALUES (1, 'eu', 1), (1, 'us', 1);
TRUNCATE rd_part_us;
SELECT id - :mark2 AS n, action, table_name FROM audit.record_history('rd_part', '{"id": 1, "region": "us"}');
SELECT id - :mark2 AS n, action, table_name FROM audit.record_history('rd_part_eu', '{"id": 1, "region": "eu"}');
-- a dropped table: by schema and table name
CREATE TABLE rd_gone (id int PRIMARY KEY, v text);
SELECT audit.enable('rd_gone');
SELECT coalesce(max(id), 0) AS mark2 FROM audit.event \gset
INSERT INTO rd_gone VALUES (7, 'x');
UPDATE rd_gone SET v = 'y';
SELECT max(id) AS gone_event FROM audit.event \gset
DROP TABLE rd_gone;
SELECT id - :mark2 AS n, action, new_data FROM audit.record_history('public', 'rd_gone', '{"id": 7}');
-- errors
SELECT * FROM audit.record_history('rd_part', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.record_history('rd_orders', '{"id": "one"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.record_history('rd_orders', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.record_history('rd_no_such_table', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------------------
-- 4. audit.row_as_of
-- ---------------------------------------------------------------------------
SELECT clock_timestamp() AS t0 \gset
INSERT INTO rd_plain VALUES (1, 'one', 1);
SELECT clock_timestamp() AS t1 \gset
UPDATE rd_plain SET n = 2 WHERE id = 1;
SELECT clock_timestamp() AS t2 \gset
UPDATE rd_plain SET v = 'uno', n = 3 WHERE id = 1;
SELECT clock_timestamp() AS t3 \gset
DELETE FROM rd_plain WHERE id = 1;
SELECT clock_timestamp() AS t4 \gset
INSERT INTO rd_plain VALUES (1, 'one again', 0);
SELECT clock_timestamp() AS t5 \gset
SELECT moment, audit.row_as_of('rd_plain', '{"id": 1}', at) AS row
  FROM (VALUES ('before the insert', :'t0'::timestamptz), ('after the insert', :'t1'),
               ('after update 1', :'t2'), ('after update 2', :'t3'), ('after the delete', :'t4'),
               ('after the new insert', :'t5')) AS v(moment, at);
-- TRUNCATE: the row no longer exists; masked values stay masked
SELECT clock_timestamp() AS t6 \gset
SELECT audit.row_as_of('rd_trunc', '{"id": 2}', :'t6') AS truncated_row,
       audit.row_as_of('rd_part', '{"id": 1, "region": "eu"}', :'t6') AS other_partition,
       audit.row_as_of('rd_orders', '{"id": 2}', :'t_mid') AS masked_row;
-- auditing enabled after the row existed: what the later events tell
CREATE TABLE rd_late (id int PRIMARY KEY, a text, b text, c text);
INSERT INTO rd_late VALUES (1, 'a0', 'b0', 'c0');
SELECT audit.enable('rd_late');
SELECT clock_timestamp() AS l0 \gset
UPDATE rd_late SET a = 'a1';
SELECT clock_timestamp() AS l1 \gset
UPDATE rd_late SET b = 'b1';
SELECT clock_timestamp() AS l2 \gset
SELECT moment, audit.row_as_of('rd_late', '{"id": 1}', at) AS row
  FROM (VALUES ('before the first event', :'l0'::timestamptz), ('after update a', :'l1'), ('after update b', :'l2')) AS v(moment, at);
DELETE FROM rd_late;
SELECT audit.row_as_of('rd_late', '{"id": 1}', :'l0') AS row_before_auditing_completed_by_the_delete;
SELECT audit.row_as_of('rd_plain', '{"id": 999}', now()) AS never_existed;
SELECT audit.row_as_of('rd_plain', '{"id": 1}', NULL);
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------------------
-- 5. audit.undo
-- ---------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS mark3 FROM audit.event \gset
INSERT INTO rd_plain VALUES (2, 'two', 2), (3, 'three', 3);
SELECT id AS ins3 FROM audit.event WHERE id > :mark3 AND record_id = '{"id": 3}' \gset
UPDATE rd_plain SET v = 'deux' WHERE id = 2;
SELECT max(id) AS upd2 FROM audit.event \gset
DELETE FROM rd_plain WHERE id = 2;
SELECT max(id) AS del2 FROM audit.event \gset
-- each kind
SELECT regexp_replace(audit.undo(:del2), 'event \d+', 'event N') AS undo_delete;
SELECT regexp_replace(audit.undo(:upd2), 'event \d+', 'event N') AS undo_update;
SELECT regexp_replace(audit.undo(:ins3), 'event \d+', 'event N') AS undo_insert;
SELECT * FROM rd_plain WHERE id IN (2, 3) ORDER BY id;
-- undoing is itself audited
SELECT action, record_id, old_data, new_data FROM audit.event WHERE id > :del2 ORDER BY id;
-- the row changed since: refused (55000) unless forced
UPDATE rd_plain SET v = 'dos' WHERE id = 2;
SELECT max(id) AS upd2b FROM audit.event \gset
UPDATE rd_plain SET v = 'zwei' WHERE id = 2;
SELECT audit.undo(:upd2b);
\echo :LAST_ERROR_SQLSTATE
UPDATE rd_plain SET n = 20 WHERE id = 2;   -- other columns do not matter
SELECT audit.undo(:upd2b, force => false);
\echo :LAST_ERROR_SQLSTATE
SELECT regexp_replace(audit.undo(:upd2b, force => true), 'event \d+', 'event N') AS forced;
SELECT * FROM rd_plain WHERE id = 2;
INSERT INTO rd_plain VALUES (4, 'four', 4);
SELECT max(id) AS ins4 FROM audit.event \gset
UPDATE rd_plain SET n = 40 WHERE id = 4;
SELECT audit.undo(:ins4);
\echo :LAST_ERROR_SQLSTATE
SELECT regexp_replace(audit.undo(:ins4, force => true), 'event \d+', 'event N') AS forced;
SELECT audit.undo(:ins4, force => true);   -- nothing left to delete
\echo :LAST_ERROR_SQLSTATE
DELETE FROM rd_plain WHERE id = 2;
SELECT max(id) AS del2b FROM audit.event \gset
INSERT INTO rd_plain VALUES (2, 'new two', 0);
SELECT audit.undo(:del2b);
\echo :LAST_ERROR_SQLSTATE
SELECT regexp_replace(audit.undo(:del2b, force => true), 'event \d+', 'event N') AS forced;
SELECT * FROM rd_plain WHERE id = 2;
-- masked and excluded values cannot be restored
SELECT id AS upd_card FROM audit.event WHERE id > :mark AND table_name = 'rd_orders' AND changed_columns = '{card}' \gset
SELECT audit.undo(:upd_card);
\echo :LAST_ERROR_SQLSTATE
SELECT id AS del_masked FROM audit.event WHERE id > :mark AND table_name = 'rd_orders' AND action = 'DELETE' \gset
SELECT audit.undo(:del_masked);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE rd_excl (id int PRIMARY KEY, v text, secret text);
SELECT audit.enable('rd_excl', exclude_columns => '{secret}');
INSERT INTO rd_excl VALUES (1, 'v', 's');
UPDATE rd_excl SET v = 'w', secret = 't';
SELECT max(id) AS upd_excl FROM audit.event \gset
DELETE FROM rd_excl;
SELECT max(id) AS del_excl FROM audit.event \gset
SELECT audit.undo(:del_excl);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rd_excl VALUES (1, 'w', 'u');
SELECT regexp_replace(audit.undo(:upd_excl), 'event \d+', 'event N') AS excluded_not_needed;
SELECT * FROM rd_excl;
-- what cannot be undone at all
SELECT id AS trunc_event FROM audit.event WHERE id > :mark AND table_name = 'rd_trunc' AND action = 'TRUNCATE' \gset
SELECT audit.undo(:trunc_event);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.undo(:gone_event);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.undo(9000000000000000000);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.undo(0);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
INSERT INTO audit.event (event_time, class, action, status, actor)
     VALUES (now(), 'auth', 'LOGIN', 'success', 'regress_rd_alice') RETURNING id AS auth_event \gset
SELECT audit.undo(:auth_event);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- a table without a key: rows are found by all their recorded values
SELECT coalesce(max(id), 0) AS mark4 FROM audit.event \gset
INSERT INTO rd_nokey VALUES (1, 'twin'), (1, 'twin'), (2, 'single');
SELECT max(id) AS nk_ins FROM audit.event \gset
UPDATE rd_nokey SET b = 'changed' WHERE a = 2;
SELECT max(id) AS nk_upd FROM audit.event \gset
SELECT regexp_replace(audit.undo(:nk_upd), 'event \d+', 'event N') AS nokey_update;
SELECT regexp_replace(audit.undo(:nk_ins), 'event \d+', 'event N') AS nokey_insert;
SELECT min(id) AS nk_twin FROM audit.event WHERE id > :mark4 \gset
SELECT regexp_replace(audit.undo(:nk_twin), 'event \d+', 'event N') AS identical_twins_are_interchangeable;
SELECT * FROM rd_nokey ORDER BY a, b;

-- ---------------------------------------------------------------------------
-- 6. audit.user_activity
-- ---------------------------------------------------------------------------
SELECT total_actions, records_created, records_modified, records_deleted, records_viewed, exports,
       logins, failed_logins, sessions, avg_session, actions_by_table, first_activity <= last_activity AS ordered
  FROM audit.user_activity('regress_rd_alice');
SELECT total_actions, actions_by_table FROM audit.user_activity('regress_rd_bob', from_time => :'t_mid');
SELECT total_actions FROM audit.user_activity('regress_rd_bob', to_time => :'t_mid');
SELECT * FROM audit.user_activity('regress_rd_nobody');
-- sessions, logins, reads (those classes are written by later capture paths;
-- here they are made up, in a transaction that is rolled back)
BEGIN;
INSERT INTO audit.event (event_time, class, action, status, actor, backend_pid, detail) VALUES
    ('2001-02-03 08:00+00', 'auth', 'LOGIN',        'success', 'regress_rd_carol', 100, NULL),
    ('2001-02-03 09:00+00', 'read', 'SELECT',       'success', 'regress_rd_carol', 100, '{"rows": 5}'),
    ('2001-02-03 09:01+00', 'read', 'SELECT',       'success', 'regress_rd_carol', 100, '{"rows": 1000}'),
    ('2001-02-03 09:02+00', 'read', 'COPY',         'success', 'regress_rd_carol', 100, '{"rows": 3}'),
    ('2001-02-03 09:03+00', 'read', 'SELECT',       'failure', 'regress_rd_carol', 100, '{"rows": 0}'),
    ('2001-02-03 10:00+00', 'auth', 'LOGOUT',       'success', 'regress_rd_carol', 100, NULL),
    ('2001-02-03 11:00+00', 'auth', 'LOGIN_FAILED', 'failure', 'regress_rd_carol', 101, NULL),
    ('2001-02-03 12:00+00', 'auth', 'LOGIN',        'success', 'regress_rd_carol', 102, NULL),
    ('2001-02-03 12:30+00', 'auth', 'LOGOUT',       'success', 'regress_rd_carol', 102, '{"duration": 600}'),
    ('2001-02-03 13:00+00', 'auth', 'LOGIN',        'success', 'regress_rd_carol', 103, NULL);
SELECT * FROM audit.user_activity('regress_rd_carol');
SELECT logins, sessions, avg_session FROM audit.user_activity('regress_rd_carol', '2001-02-03 11:00+00', '2001-02-04');

-- ---------------------------------------------------------------------------
-- 7. audit.activity_summary (same made-up events, in their own period)
-- ---------------------------------------------------------------------------
INSERT INTO audit.event (event_time, class, action, status, actor, schema_name, table_name) VALUES
    ('2001-02-03 14:00+00', 'data', 'INSERT', 'success', 'regress_rd_dave', 'public', 'rd_x'),
    ('2001-02-03 14:00+00', 'data', 'INSERT', 'success', 'regress_rd_dave', 'public', 'rd_x'),
    ('2001-02-03 14:00+00', 'data', 'UPDATE', 'success', 'regress_rd_dave', 'public', 'rd_y'),
    ('2001-02-03 14:00+00', 'ddl', 'CREATE TABLE', 'success', 'regress_rd_dave', 'public', 'rd_y');
SELECT from_time, to_time, total_events, failures, distinct_actors, events_by_class, events_by_action,
       top_actors, top_tables, storage_bytes > 0 AS has_storage
  FROM audit.activity_summary('2001-02-03', '2001-02-04');
SELECT total_events, events_by_class FROM audit.activity_summary('2001-02-03 12:00+00', '2001-02-03 13:00+00');
ROLLBACK;
SELECT total_events, top_actors, top_tables FROM audit.activity_summary('2001-01-01', '2001-01-02');
SELECT * FROM audit.activity_summary('2030-01-02', '2030-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.user_activity(NULL);
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------------------
-- 8. audit.recent_high_priority
-- ---------------------------------------------------------------------------
SELECT id - :mark AS n, class, action, reason, table_name
  FROM audit.recent_high_priority WHERE id > :mark AND class = 'data';

-- ---------------------------------------------------------------------------
-- 9. audit.export: flat text, oldest first, one line per event
-- ---------------------------------------------------------------------------
\copy (SELECT class, action, status, actor, schema_name, table_name, record_id, changed_columns, old_data, new_data, statement FROM audit.export(table_name => 'rd_orders')) TO STDOUT WITH CSV HEADER
SELECT count(*) AS events,
       bool_and(e.id ~ '^[0-9]+$') AS ids,
       bool_and(e.event_time ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$') AS iso_utc_times,
       bool_and(e.event_time = to_char(a.event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) AS times_match,
       bool_and(e.txid::bigint = a.txid) AS txids,
       bool_and(e.statement !~ '[\r\n]') AS one_line,
       bool_and(e."session_user" = a."session_user" AND e.db_user = a.db_user) AS users
  FROM audit.export(table_name => 'rd_orders') e JOIN audit.event a ON a.id = e.id::bigint;
-- the same events as search, with the same arguments, oldest first
SELECT array_agg(id::bigint - :mark) AS exported FROM audit.export(table_name => 'rd_orders', max_rows => 2);
SELECT array_agg(id - :mark ORDER BY id) AS searched FROM audit.search(table_name => 'rd_orders', max_rows => 2);
SELECT * FROM audit.export(max_rows => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.export(class => 'nope');
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------------------
-- Access: audit roles only; undo for audit_admin only
-- ---------------------------------------------------------------------------
CREATE ROLE regress_rd_plain;
CREATE ROLE regress_rd_reader IN ROLE audit_reader;
CREATE ROLE regress_rd_admin IN ROLE audit_admin;
CREATE ROLE regress_rd_admin_noprivs IN ROLE audit_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON rd_plain TO regress_rd_admin;
SET ROLE regress_rd_plain;
SELECT count(*) FROM audit.search();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM audit.export();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM audit.changes;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM audit.recent_high_priority;
\echo :LAST_ERROR_SQLSTATE
SELECT audit.row_as_of('rd_plain', '{"id": 2}', now());
\echo :LAST_ERROR_SQLSTATE
SELECT audit.undo(1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- even with EXECUTE granted by mistake, the functions check the role
GRANT USAGE ON SCHEMA audit TO regress_rd_plain;
GRANT EXECUTE ON FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint, inet, text, text, text),
                          audit.user_activity(text, timestamptz, timestamptz),
                          audit.require_audit_role(boolean) TO regress_rd_plain;
SET ROLE regress_rd_plain;
SELECT count(*) FROM audit.search();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.user_activity('regress_rd_alice');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE EXECUTE ON FUNCTION audit.search(timestamptz, timestamptz, text, text, text, text, jsonb, text, text, integer, bigint, inet, text, text, text),
                           audit.user_activity(text, timestamptz, timestamptz),
                           audit.require_audit_role(boolean) FROM regress_rd_plain;
REVOKE USAGE ON SCHEMA audit FROM regress_rd_plain;
-- audit_reader reads everything but cannot undo
SET ROLE regress_rd_reader;
SELECT count(*) > 0 AS reader_searches FROM audit.search(table_name => 'rd_orders');
SELECT count(*) > 0 AS reader_exports FROM audit.export(table_name => 'rd_orders');
SELECT count(*) > 0 AS reader_reads_changes FROM audit.changes WHERE table_name = 'rd_orders';
-- (the reader sees exactly what the superuser sees, in one snapshot: events
-- the worker writes meanwhile cannot make the figures differ)
RESET ROLE;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS su_priorities FROM audit.recent_high_priority \gset
SELECT count(*) AS su_window FROM audit.event WHERE event_time >= now() - interval '1 hour' \gset
SET LOCAL ROLE regress_rd_reader;
SELECT count(*) = :su_priorities AND count(*) > 0 AS reader_reads_priorities FROM audit.recent_high_priority;
SELECT total_events = :su_window AND total_events > 0 AS reader_summarises FROM audit.activity_summary(now() - interval '1 hour');
COMMIT;
SET ROLE regress_rd_reader;
SELECT count(*) > 0 AS reader_reads_history FROM audit.record_history('rd_orders', '{"id": 1}');
SELECT audit.row_as_of('rd_plain', '{"id": 2}', now()) IS NOT NULL AS reader_rebuilds_rows;
SELECT total_actions > 0 AS reader_reports FROM audit.user_activity('regress_rd_alice');
SELECT audit.undo(:upd2);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- audit_admin undoes with its own table privileges, and is recorded as the one who did
UPDATE rd_plain SET v = 'to be undone' WHERE id = 2;
SELECT max(id) AS upd_admin FROM audit.event \gset
SET ROLE regress_rd_admin;
SELECT regexp_replace(audit.undo(:upd_admin), 'event \d+', 'event N') AS admin_undo;
RESET ROLE;
SELECT db_user, action, old_data, new_data FROM audit.event WHERE id > :upd_admin ORDER BY id;
SET ROLE regress_rd_admin_noprivs;
SELECT audit.undo(:upd_admin, force => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Privileges and comments of the objects added here.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('audit_reader', p.oid, 'EXECUTE') AS reader,
       has_function_privilege('audit_admin', p.oid, 'EXECUTE') AS admin,
       p.prosecdef AS definer,
       p.proconfig AS config
  FROM pg_proc p
 WHERE p.pronamespace = 'audit'::regnamespace
   AND p.proname IN ('require_audit_role', 'next_record_id', 'one_line', 'detail_interval', 'known_actions',
                     'search_filter', 'search', 'export', 'resolve_record', 'record_in_partition', 'record_events',
                     'record_history', 'row_as_of', 'undo', 'user_activity', 'activity_summary')
 ORDER BY 1::text;
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public,
       has_table_privilege('audit_reader', c.oid, 'SELECT') AS reader,
       has_table_privilege('audit_admin', c.oid, 'SELECT') AS admin
  FROM pg_class c WHERE c.oid IN ('audit.changes'::regclass, 'audit.recent_high_priority'::regclass) ORDER BY 1;
SELECT p.oid::regprocedure AS uncommented_function
  FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.relname AS uncommented_view
  FROM pg_class c
 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'v'
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT t.typname AS uncommented_type
  FROM pg_type t
 WHERE t.typnamespace = 'audit'::regnamespace AND t.typtype = 'c' AND t.typrelid IN
       (SELECT oid FROM pg_class WHERE relkind = 'c')
   AND obj_description(t.oid, 'pg_type') IS NULL;

-- 1.6: table identity.  The errors of the identity forms; a plain role may
-- not read identities or histories by identity; the catalogs are closed to it.
CREATE TABLE rd_ident (id int PRIMARY KEY, v text);
SELECT audit.enable('rd_ident');
INSERT INTO rd_ident VALUES (1, 'x');
ALTER TABLE rd_ident RENAME TO rd_ident2;
SELECT schema_name, table_name, ended_by FROM audit.audited_table_history
 WHERE table_identity = audit.table_identity('rd_ident2') ORDER BY valid_from;
SELECT audit.table_identity('public', 'rd_ident') = audit.table_identity('rd_ident2') AS former_name_finds_it;
SELECT action, table_name FROM audit.record_history_by_identity(audit.table_identity('rd_ident2'), '{"id": "1"}');
SELECT * FROM audit.record_history_by_identity(-1, '{"id": 1}');
SELECT * FROM audit.record_history_by_identity(NULL, '{"id": 1}');
SELECT * FROM audit.record_history_by_identity(audit.table_identity('rd_ident2'), '[]');
SET ROLE regress_rd_plain;
SELECT audit.table_identity('rd_ident2');
SELECT * FROM audit.record_history_by_identity(1, '{"id": 1}');
SELECT count(*) FROM audit.audited_table_history;
SELECT count(*) FROM audit.audited_column_history;
RESET ROLE;

REVOKE ALL ON rd_plain FROM regress_rd_admin;
DROP ROLE regress_rd_plain, regress_rd_reader, regress_rd_admin, regress_rd_admin_noprivs;
