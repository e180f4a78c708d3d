-- pgTAP: reading the trail (search, changes, record history, row_as_of,
-- undo, user_activity, activity_summary, recent_high_priority, export,
-- access), all inside one transaction that is rolled back.
BEGIN;
-- These tests look for literals in statement texts (free text, CSV escaping),
-- so texts are stored as sent; redaction is tested in sql/capture.sql.
SET LOCAL audit_ext.statement_literals = keep;
SELECT plan(94);

SET LOCAL client_min_messages = warning;
CREATE TABLE rt_orders (id int PRIMARY KEY, item text, qty int, card text, secret text);
SELECT audit.enable('rt_orders', exclude_columns => '{secret}', mask_columns => '{card}');
CREATE TABLE rt_plain (id int PRIMARY KEY, v text, n int);
SELECT audit.enable('rt_plain');
CREATE TABLE rt_nokey (a int, b text);
SELECT audit.enable('rt_nokey');
CREATE TABLE rt_gone (id int PRIMARY KEY, v text);
SELECT audit.enable('rt_gone');
CREATE TABLE rt_late (id int PRIMARY KEY, a text, b text, c text);
INSERT INTO rt_late VALUES (1, 'a0', 'b0', 'c0');         -- before auditing
SELECT audit.enable('rt_late');
RESET client_min_messages;

-- marks and moments, readable by the roles the test switches to
CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
CREATE TEMP TABLE moment (name text PRIMARY KEY, at timestamptz);
CREATE TEMP TABLE ev (name text PRIMARY KEY, id bigint);
GRANT SELECT ON mark, moment, ev TO PUBLIC;
CREATE FUNCTION pg_temp.last_event() RETURNS bigint LANGUAGE sql AS 'SELECT max(id) FROM audit.event';
CREATE FUNCTION pg_temp.ev(n text) RETURNS bigint LANGUAGE sql AS 'SELECT id FROM ev WHERE name = n';
CREATE FUNCTION pg_temp.at(n text) RETURNS timestamptz LANGUAGE sql AS 'SELECT at FROM moment WHERE name = n';

-- ---------------------------------------------------------------------------
-- History to read
-- ---------------------------------------------------------------------------
SET audit_ext.actor = 'tap_alice';
INSERT INTO rt_orders VALUES (1, 'Apple', 1, '4111', 's'), (2, 'pear_50%', 2, '5500', 's');
INSERT INTO ev VALUES ('ins_orders', pg_temp.last_event());
UPDATE rt_orders SET qty = 5 WHERE id = 1;
INSERT INTO moment VALUES ('mid', clock_timestamp());
SET audit_ext.actor = 'tap_bob';
UPDATE rt_orders SET card = '6011' WHERE id = 1;
INSERT INTO ev VALUES ('upd_card', pg_temp.last_event());
UPDATE rt_orders SET item = E'multi\nline' WHERE id = 2;
DELETE FROM rt_orders WHERE id = 2;
INSERT INTO ev VALUES ('del_orders', pg_temp.last_event());
RESET audit_ext.actor;

-- ---------------------------------------------------------------------------
-- audit.search
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(s.action ORDER BY s.ordinality) FROM audit.search(table_name => 'rt_orders', class => 'data') WITH ORDINALITY s),
          ARRAY['DELETE', 'UPDATE', 'UPDATE', 'UPDATE', 'INSERT', 'INSERT'],
          'search by table: every event, newest first');
SELECT is((SELECT count(*) FROM audit.search(table_name => 'public.rt_orders', class => 'data')), 6::bigint,
          'search by schema.table');
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.search(record_id => '{"id": 2}', table_name => 'rt_orders')),
          ARRAY['INSERT', 'UPDATE', 'DELETE'], 'search by record_id');
SELECT is((SELECT count(*) FROM audit.search(actor => 'tap_bob')), 3::bigint, 'search by actor');
SELECT is((SELECT count(*) FROM audit.search(actor => 'tap_alice', action => 'UPDATE', class => 'data')), 1::bigint,
          'search by actor, action and class together');
SELECT is((SELECT count(*) FROM audit.search(from_time => pg_temp.at('mid'), table_name => 'rt_orders')), 3::bigint,
          'search from a time on (inclusive)');
SELECT is((SELECT count(*) FROM audit.search(to_time => pg_temp.at('mid'), table_name => 'rt_orders', class => 'data')), 3::bigint,
          'search up to a time (exclusive)');
SELECT is((SELECT count(*) FROM audit.search(status => 'success', table_name => 'rt_orders', class => 'data')), 6::bigint,
          'search by status');
SELECT is((SELECT array_agg(record_id->>'id' ORDER BY id) FROM audit.search(query => 'APPLE', table_name => 'rt_orders')),
          ARRAY['1', '2'], 'free text is case-insensitive (the statement of row 2 names Apple too)');
SELECT is((SELECT count(*) FROM audit.search(query => 'r_50%', table_name => 'rt_orders')), 3::bigint,
          'free text: % and _ are literal characters');
SELECT is((SELECT count(*) FROM audit.search(query => 'rX50', table_name => 'rt_orders')), 0::bigint,
          'free text: _ matches only itself');
SELECT is((SELECT count(*) FROM audit.search(query => E'multi\nline', table_name => 'rt_orders')), 2::bigint,
          'free text finds values with a newline (escaped in JSON)');
SELECT is((SELECT count(*) FROM audit.search(query => 'tap_bo', table_name => 'rt_orders')), 3::bigint,
          'free text searches actors');
SELECT ok((SELECT bool_and(statement_text IS NOT NULL) FROM audit.search(table_name => 'rt_orders')),
          'search returns the statement text');
SELECT is((SELECT count(*) FROM audit.search(table_name => 'rt_orders', max_rows => 4)), 4::bigint,
          'max_rows limits the page');
SELECT is((SELECT array_agg(id ORDER BY id DESC)
             FROM (SELECT id FROM audit.search(table_name => 'rt_orders', max_rows => 4)
                   UNION ALL
                   SELECT id FROM audit.search(table_name => 'rt_orders', max_rows => 4,
                                               before_id => (SELECT min(id) FROM audit.search(table_name => 'rt_orders', max_rows => 4)))) p),
          (SELECT array_agg(id ORDER BY id DESC) FROM audit.search(table_name => 'rt_orders')),
          'two pages with before_id give every event once, in order');
SELECT is((SELECT condition FROM audit.search_filter(NULL, NULL, 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL)),
          'e.actor = $3', 'only the given filters are in the query (indexes and partition pruning stay usable)');
SELECT is((SELECT condition FROM audit.search_filter(now(), NULL, NULL, NULL, 'data', 'public.t', '{"id": 1}', NULL, NULL, 5)),
          'e.class = $5 AND e.event_time >= $1 AND e.schema_name = $6 AND e.table_name = $7 AND e.record_id @> $8 AND e.id < $12',
          'several filters, each a plain indexable condition');
SELECT is((SELECT condition FROM audit.search_filter(NULL, NULL, NULL, 'DELETE', NULL, NULL, NULL, NULL, NULL, NULL)),
          $$e.class IN ('data', 'ddl', 'system', 'app') AND e.action = $4$$,
          'an action without class searches only the classes where it can occur');
SELECT is((SELECT condition FROM audit.search_filter(NULL, NULL, NULL, 'CREATE TABLE', NULL, NULL, NULL, NULL, NULL, NULL)),
          $$e.class IN ('ddl', 'system', 'app') AND e.action = $4$$, '... a command tag: ddl, system or app (1.6: application actions are open)');
SELECT is((SELECT array_agg(id ORDER BY id) FROM audit.search(query => 'rt_orders', from_time => pg_temp.at('mid'), to_time => clock_timestamp())),
          (SELECT array_agg(id ORDER BY id) FROM audit.search(query => 'rt_orders', from_time => pg_temp.at('mid'))),
          'free text in a closed time range (ids bounded to the range) finds the same events');
SELECT ok((SELECT condition LIKE '%e.id >= $15 AND e.id <= $16 AND%'
             FROM audit.search_filter(pg_temp.at('mid'), clock_timestamp(), NULL, NULL, NULL, NULL, NULL, NULL, 'x', NULL)),
          '... through id bounds');
SELECT is((SELECT count(*) FROM audit.search(query => 'rt_orders', from_time => '2001-01-01', to_time => '2001-01-02')), 0::bigint,
          'free text in an empty time range: nothing');
SELECT throws_ok($$SELECT * FROM audit.search(class => 'nope')$$, '22023', NULL, 'unknown class: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(class => 'data', action => 'LOGIN')$$, '22023', NULL,
                 'action not of the class: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(action => 'Drop everything')$$, '22023', NULL,
                 'unknown action without class: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(from_time => now(), to_time => now() - interval '1 day')$$, '22023', NULL,
                 'from_time after to_time: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(max_rows => 0)$$, '22023', NULL, 'max_rows 0: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(max_rows => 10001)$$, '22023', NULL, 'max_rows above 10000: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(status => 'failed')$$, '22023', NULL, 'unknown status: 22023');
SELECT throws_ok($$SELECT * FROM audit.search(before_id => -1)$$, '22023', NULL, 'before_id <= 0: 22023');

-- ---------------------------------------------------------------------------
-- audit.changes
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(column_name || '=' || new_value::text ORDER BY column_name)
             FROM audit.changes WHERE event_id = pg_temp.ev('ins_orders') AND old_value IS NULL),
          ARRAY['card="[masked]"', 'id=2', 'item="pear_50%"', 'qty=2'],
          'changes: an INSERT gives every recorded column, no old value (excluded column absent)');
SELECT is((SELECT array_agg(column_name || ':' || old_value::text || '->' || new_value::text)
             FROM audit.changes WHERE table_name = 'rt_orders' AND action = 'UPDATE' AND record_id = '{"id": 1}'
              AND event_id > (SELECT id FROM mark) AND column_name = 'qty'),
          ARRAY['qty:1->5'], 'changes: an UPDATE gives the changed column with old and new values');
SELECT is((SELECT count(*) FROM audit.changes WHERE event_id = pg_temp.ev('del_orders') AND new_value IS NULL),
          4::bigint, 'changes: a DELETE gives every recorded column, no new value');

-- ---------------------------------------------------------------------------
-- audit.record_history
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.record_history('rt_orders', '{"id": 1}')),
          ARRAY['INSERT', 'UPDATE', 'UPDATE'], 'record history, oldest first');
SELECT is((SELECT array_agg(action) FROM audit.record_history('rt_orders', '{"id": "2"}')),
          ARRAY['INSERT', 'UPDATE', 'DELETE'], 'record ids are taken through the key type');
INSERT INTO rt_plain VALUES (7, 'seven', 7);
UPDATE rt_plain SET id = 70 WHERE id = 7;
UPDATE rt_plain SET v = 'seventy' WHERE id = 70;
INSERT INTO rt_plain VALUES (7, 'other', 0);
SELECT is((SELECT array_agg(coalesce(new_data->>'v', new_data->>'id') ORDER BY id) FROM audit.record_history('rt_plain', '{"id": 70}')),
          ARRAY['seven', '70', 'seventy'], 'history follows a key change back to the record''s first key, and not the new record that took the old key');
SELECT is((SELECT array_agg(coalesce(new_data->>'v', new_data->>'id') ORDER BY id) FROM audit.record_history('rt_plain', '{"id": 7}')),
          ARRAY['other'], 'the old key names the record that has it now, with a history of its own');
INSERT INTO rt_gone VALUES (1, 'x');
UPDATE rt_gone SET v = 'y';
INSERT INTO ev VALUES ('upd_gone', pg_temp.last_event());
DROP TABLE rt_gone;
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.record_history('public', 'rt_gone', '{"id": 1}')),
          ARRAY['INSERT', 'UPDATE'], 'history of a dropped table by its names');
CREATE TABLE rt_trunc (id int PRIMARY KEY);
SELECT audit.enable('rt_trunc');
INSERT INTO rt_trunc VALUES (1);
TRUNCATE rt_trunc;
INSERT INTO ev VALUES ('truncate', pg_temp.last_event());
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.record_history('rt_trunc', '{"id": 1}')),
          ARRAY['INSERT', 'TRUNCATE'], 'history ends with the TRUNCATE that removed the record');
SELECT throws_ok($$SELECT * FROM audit.record_history('rt_orders', '{"item": "Apple"}')$$, '22023', NULL,
                 'record_id must give the key columns: 22023');

-- ---------------------------------------------------------------------------
-- audit.row_as_of
-- ---------------------------------------------------------------------------
INSERT INTO moment VALUES ('r0', clock_timestamp());
INSERT INTO rt_plain VALUES (1, 'one', 1);
INSERT INTO moment VALUES ('r1', clock_timestamp());
UPDATE rt_plain SET n = 2 WHERE id = 1;
INSERT INTO moment VALUES ('r2', clock_timestamp());
DELETE FROM rt_plain WHERE id = 1;
INSERT INTO moment VALUES ('r3', clock_timestamp());
INSERT INTO rt_plain VALUES (1, 'back', 9);
INSERT INTO moment VALUES ('r4', clock_timestamp());
SELECT is(audit.row_as_of('rt_plain', '{"id": 1}', pg_temp.at('r0')), NULL, 'row_as_of before the INSERT: NULL');
SELECT is(audit.row_as_of('rt_plain', '{"id": 1}', pg_temp.at('r1')), '{"id": 1, "v": "one", "n": 1}'::jsonb,
          'row_as_of after the INSERT');
SELECT is(audit.row_as_of('rt_plain', '{"id": 1}', pg_temp.at('r2')), '{"id": 1, "v": "one", "n": 2}'::jsonb,
          'row_as_of after the UPDATE');
SELECT is(audit.row_as_of('rt_plain', '{"id": 1}', pg_temp.at('r3')), NULL, 'row_as_of after the DELETE: NULL');
SELECT is(audit.row_as_of('rt_plain', '{"id": 1}', pg_temp.at('r4')), '{"id": 1, "v": "back", "n": 9}'::jsonb,
          'row_as_of after the row came back');
SELECT is(audit.row_as_of('rt_trunc', '{"id": 1}', clock_timestamp()), NULL, 'row_as_of after a TRUNCATE: NULL');
SELECT is(audit.row_as_of('rt_orders', '{"id": 1}', pg_temp.at('mid')),
          '{"id": 1, "item": "Apple", "qty": 5, "card": "[masked]"}'::jsonb,
          'masked values stay masked, excluded columns are absent');
INSERT INTO moment VALUES ('l0', clock_timestamp());
UPDATE rt_late SET a = 'a1';
SELECT is(audit.row_as_of('rt_late', '{"id": 1}', pg_temp.at('l0')), '{"id": 1, "a": "a0", "b": "[unknown]", "c": "[unknown]"}'::jsonb,
          'audited after the row existed: what the trail tells, "[unknown]" for the columns it never saw');
DELETE FROM rt_late;
SELECT is(audit.row_as_of('rt_late', '{"id": 1}', pg_temp.at('l0')), '{"id": 1, "a": "a0", "b": "b0", "c": "c0"}'::jsonb,
          '... and a later DELETE tells the rest');

-- ---------------------------------------------------------------------------
-- audit.undo
-- ---------------------------------------------------------------------------
INSERT INTO rt_plain VALUES (2, 'two', 2);
INSERT INTO ev VALUES ('ins2', pg_temp.last_event());
UPDATE rt_plain SET v = 'deux' WHERE id = 2;
INSERT INTO ev VALUES ('upd2', pg_temp.last_event());
DELETE FROM rt_plain WHERE id = 2;
INSERT INTO ev VALUES ('del2', pg_temp.last_event());
SELECT matches(audit.undo(pg_temp.ev('del2')), '^undid DELETE event \d+: re-inserted', 'undo a DELETE');
SELECT is((SELECT v FROM rt_plain WHERE id = 2), 'deux', '... the row is back');
SELECT matches(audit.undo(pg_temp.ev('upd2')), '^undid UPDATE event \d+: restored v', 'undo an UPDATE');
SELECT is((SELECT v FROM rt_plain WHERE id = 2), 'two', '... the old value is back');
SELECT matches(audit.undo(pg_temp.ev('ins2')), '^undid INSERT event \d+: deleted', 'undo an INSERT');
SELECT is((SELECT count(*) FROM rt_plain WHERE id = 2), 0::bigint, '... the row is gone');
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.event WHERE id > pg_temp.ev('del2')),
          ARRAY['INSERT', 'UPDATE', 'DELETE'], 'each undo is itself audited');
INSERT INTO rt_plain VALUES (3, 'three', 3);
UPDATE rt_plain SET v = 'drei' WHERE id = 3;
INSERT INTO ev VALUES ('upd3', pg_temp.last_event());
UPDATE rt_plain SET v = 'tres' WHERE id = 3;
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('upd3')), '55000', NULL,
                 'undo refuses when the row changed since: 55000');
SELECT matches(audit.undo(pg_temp.ev('upd3'), force => true), 'forced: v had changed since', '... unless forced');
SELECT is((SELECT v FROM rt_plain WHERE id = 3), 'three', '... which restores the old value');
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('truncate')), '22023', NULL, 'a TRUNCATE cannot be undone');
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('upd_gone')), '42P01', NULL,
                 'an event of a dropped table cannot be undone: 42P01');
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('upd_card')), '55000', NULL,
                 'an UPDATE of a masked column cannot be undone');
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('del_orders')), '55000', NULL,
                 'a DELETE of a row with masked or excluded columns cannot be undone');
INSERT INTO audit.event (event_time, class, action, status, actor) VALUES (now(), 'auth', 'LOGIN', 'success', 'x');
INSERT INTO ev VALUES ('auth', pg_temp.last_event());
SELECT throws_ok(format('SELECT audit.undo(%s)', pg_temp.ev('auth')), '22023', NULL, 'only data events can be undone');
INSERT INTO rt_nokey VALUES (1, 'same'), (1, 'same');
UPDATE rt_nokey SET b = 'changed';
INSERT INTO ev VALUES ('nokey_upd', pg_temp.last_event());
SELECT lives_ok(format('SELECT audit.undo(%s)', pg_temp.ev('nokey_upd')),
                'a table without a key: identical rows are interchangeable');
SELECT is((SELECT array_agg(b ORDER BY b) FROM rt_nokey), ARRAY['changed', 'same'],
          'that undo put back exactly one of the two identical rows');

-- ---------------------------------------------------------------------------
-- audit.user_activity
-- ---------------------------------------------------------------------------
SELECT is((SELECT row(total_actions, records_created, records_modified, records_deleted)::text
             FROM audit.user_activity('tap_bob')),
          '(3,0,2,1)', 'user_activity counts the actor''s changes');
SELECT is((SELECT actions_by_table FROM audit.user_activity('tap_alice')),
          '{"public.rt_orders": {"INSERT": 2, "UPDATE": 1}}'::jsonb, 'user_activity: actions per table');
INSERT INTO audit.event (event_time, class, action, status, actor, backend_pid, detail) VALUES
    ('2002-03-04 08:00+00', 'auth', 'LOGIN',        'success', 'tap_carol', 10, NULL),
    ('2002-03-04 08:10+00', 'read', 'SELECT',       'success', 'tap_carol', 10, '{"rows": 40}'),
    ('2002-03-04 08:20+00', 'read', 'SELECT',       'success', 'tap_carol', 10, '{"rows": 2000}'),
    ('2002-03-04 09:00+00', 'auth', 'LOGOUT',       'success', 'tap_carol', 10, NULL),
    ('2002-03-04 09:30+00', 'auth', 'LOGIN_FAILED', 'failure', 'tap_carol', 11, NULL),
    ('2002-03-04 10:00+00', 'auth', 'LOGIN',        'success', 'tap_carol', 12, NULL),
    ('2002-03-04 10:30+00', 'auth', 'LOGOUT',       'success', 'tap_carol', 12, '{"duration": "00:20:00"}');
SELECT is((SELECT row(records_viewed, exports, logins, failed_logins, sessions, avg_session)::text
             FROM audit.user_activity('tap_carol')),
          '(2040,1,2,1,2,00:40:00)', 'user_activity: reads, exports, logins, failed logins, sessions');
SELECT is((SELECT row(total_actions, first_activity, last_activity)::text
             FROM audit.user_activity('tap_carol', '2002-03-04 09:30+00', '2002-03-04 10:30+00')),
          (SELECT row(2::bigint, '2002-03-04 09:30+00'::timestamptz, '2002-03-04 10:00+00'::timestamptz)::text),
          'user_activity in a period: from_time inclusive, to_time exclusive');
SELECT is((SELECT count(*) FROM audit.user_activity('tap_nobody')), 1::bigint, 'user_activity: one row for anyone');

-- ---------------------------------------------------------------------------
-- audit.activity_summary
-- ---------------------------------------------------------------------------
SELECT is((SELECT row(total_events, failures, distinct_actors)::text FROM audit.activity_summary('2002-03-04', '2002-03-05')),
          '(7,1,1)', 'activity_summary: totals');
SELECT is((SELECT events_by_class FROM audit.activity_summary('2002-03-04', '2002-03-05')),
          '{"auth": 5, "read": 2}'::jsonb, 'activity_summary: events by class');
SELECT is((SELECT events_by_action -> 'auth' FROM audit.activity_summary('2002-03-04', '2002-03-05')),
          '{"LOGIN": 2, "LOGOUT": 2, "LOGIN_FAILED": 1}'::jsonb, 'activity_summary: events by action');
SELECT is((SELECT top_actors -> 0 ->> 'actor' FROM audit.activity_summary(pg_temp.at('r0'))),
          (SELECT actor FROM audit.event WHERE event_time >= pg_temp.at('r0') GROUP BY actor ORDER BY count(*) DESC, actor LIMIT 1),
          'activity_summary: top actor');
SELECT ok((SELECT storage_bytes > 0 FROM audit.activity_summary()), 'activity_summary: storage used');

-- ---------------------------------------------------------------------------
-- audit.recent_high_priority
-- ---------------------------------------------------------------------------
INSERT INTO audit.event (event_time, class, action, status, actor) VALUES (now(), 'auth', 'LOGIN_FAILED', 'failure', 'tap_mallory');
SELECT is((SELECT array_agg(reason ORDER BY id) FROM audit.recent_high_priority WHERE id > (SELECT id FROM mark) AND class NOT IN ('ddl', 'privilege')),
          ARRAY['table truncated', 'failed login'], 'recent_high_priority: the TRUNCATE and the failed login, nothing else');

-- ---------------------------------------------------------------------------
-- audit.export
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'audit.export_row'::regtype)),
          ARRAY['id', 'event_time', 'class', 'action', 'status', 'actor', 'db_user', 'session_user', 'client_addr',
                'application_name', 'schema_name', 'table_name', 'record_id', 'changed_columns', 'old_data',
                'new_data', 'statement', 'txid'], 'export: the columns, in order');
SELECT is((SELECT array_agg(x.id::bigint ORDER BY x.ordinality) FROM audit.export(table_name => 'rt_orders') WITH ORDINALITY x),
          (SELECT array_agg(id ORDER BY id) FROM audit.search(table_name => 'rt_orders')),
          'export: the events search finds, oldest first');
SELECT ok((SELECT bool_and(event_time ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$') FROM audit.export(table_name => 'rt_orders')),
          'export: times in ISO 8601, UTC');
SELECT is((SELECT statement FROM audit.export(table_name => 'rt_orders') WHERE new_data LIKE '%multi%'),
          'UPDATE rt_orders SET item = E''multi\\nline'' WHERE id = 2;',
          'export: statement texts keep backslashes recoverable (\\ for \)');
UPDATE rt_plain SET v = E'x', n = 0 WHERE id = 3;
SELECT is((SELECT changed_columns FROM audit.export(table_name => 'rt_plain', max_rows => 1)), 'v,n',
          'export: changed columns comma separated');
CREATE TABLE rt_lines (id int PRIMARY KEY, "odd,name" text);
SELECT audit.enable('rt_lines');
INSERT INTO rt_lines VALUES (1, 'y');
UPDATE rt_lines
   SET "odd,name" = 'z';
SELECT is((SELECT row(changed_columns, statement)::text FROM audit.export(table_name => 'rt_lines', action => 'UPDATE')),
          row('"odd,name"', E'UPDATE rt_lines\\n   SET "odd,name" = ''z'';')::text,
          'export: one line per event, column names with commas quoted');

-- ---------------------------------------------------------------------------
-- Access
-- ---------------------------------------------------------------------------
CREATE ROLE tap_plain;
CREATE ROLE tap_reader IN ROLE audit_reader;
CREATE ROLE tap_admin IN ROLE audit_admin;
SET LOCAL ROLE tap_plain;
SELECT throws_ok($$SELECT * FROM audit.search()$$, '42501', NULL, 'a plain role cannot search');
SELECT throws_ok($$SELECT * FROM audit.changes$$, '42501', NULL, 'a plain role cannot read audit.changes');
SELECT throws_ok($$SELECT * FROM audit.export()$$, '42501', NULL, 'a plain role cannot export');
SELECT throws_ok($$SELECT * FROM audit.user_activity('tap_bob')$$, '42501', NULL, 'a plain role cannot report');
RESET ROLE;
GRANT USAGE ON SCHEMA audit TO tap_plain;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA audit TO tap_plain;
SET LOCAL ROLE tap_plain;
SELECT throws_ok($$SELECT * FROM audit.search()$$, '42501',
                 'permission denied: role "tap_plain" has no access to the security audit',
                 'EXECUTE granted by mistake: the function still refuses');
SELECT throws_ok($$SELECT * FROM audit.record_history('rt_plain', '{"id": 3}')$$, '42501', NULL,
                 '... record_history too');
RESET ROLE;
SET LOCAL ROLE tap_reader;
SELECT lives_ok($$SELECT * FROM audit.search(max_rows => 1)$$, 'audit_reader can search');
SELECT throws_ok(format('SELECT audit.undo(%s, true)', pg_temp.ev('upd3')), '42501', NULL, 'audit_reader cannot undo');
RESET ROLE;
SET LOCAL ROLE tap_admin;
SELECT throws_ok(format('SELECT audit.undo(%s, true)', pg_temp.ev('upd3')), '42501', NULL,
                 'audit_admin cannot undo on a table it may not write');
RESET ROLE;
GRANT SELECT, UPDATE ON rt_plain TO tap_admin;
SET LOCAL ROLE tap_admin;
SELECT lives_ok(format('SELECT audit.undo(%s, true)', pg_temp.ev('upd3')), 'audit_admin can undo with table privileges');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
