-- pgTAP: application events (audit.log_event) and digest columns, inside one
-- transaction that is rolled back.
BEGIN;
SELECT plan(12);

CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
SET LOCAL audit_ext.actor = 'ann@example.com';

SELECT ok(audit.log_event('LOGIN', detail => '{"method": "sso"}') > (SELECT id FROM mark),
          'log_event returns the new event''s id');
SELECT is((SELECT class || '/' || action || '/' || status FROM audit.event WHERE id > (SELECT id FROM mark) ORDER BY id LIMIT 1),
          'app/LOGIN/success', 'the event is of class app');
SELECT is((SELECT actor FROM audit.event WHERE class = 'app' AND id > (SELECT id FROM mark) ORDER BY id LIMIT 1),
          'ann@example.com', 'actor comes from audit_ext.actor, as for data events');

SAVEPOINT s1;
SELECT audit.log_event('EXPORT', 'Customer');
ROLLBACK TO SAVEPOINT s1;
SELECT is((SELECT count(*) FROM audit.event WHERE class = 'app' AND action = 'EXPORT' AND id > (SELECT id FROM mark)),
          0::bigint, 'without survive_rollback the event rolls back with its (sub)transaction');

SELECT audit.log_event('UPDATE', 'Device', '{"serial": "D-1"}', '{"fw": "1.0", "site": "A"}', '{"fw": "1.1", "site": "A"}');
SELECT is((SELECT changed_columns FROM audit.event WHERE class = 'app' AND table_name = 'Device'),
          '{fw}'::text[], 'changed_columns: the keys whose values differ');
SELECT is((SELECT count(*) FROM audit.changes WHERE table_name = 'Device' AND column_name = 'fw'
              AND old_value = '"1.0"' AND new_value = '"1.1"'), 1::bigint, 'audit.changes shows the entity''s change');
SELECT is((SELECT count(*) FROM audit.record_history(NULL, 'Device', '{"serial": "D-1"}')), 1::bigint,
          'record_history(NULL, entity, key) finds it');
SELECT is((SELECT count(*) FROM audit.search(table_name => 'Device', class => 'app')), 1::bigint,
          'search(table_name => entity) finds it by its exact name');
SELECT is((SELECT chain_seq IS NOT NULL AND hash IS NOT NULL FROM audit.event WHERE class = 'app' AND table_name = 'Device'),
          true, 'application events are hash-chained (their own lanes)');

SELECT audit.log_event('VIEW', 'Customer', '{"id": 1}');
SELECT audit.log_event('PASSWORD_CHANGE');
SELECT audit.log_event('LOGIN_FAILED', status => 'failure');
SELECT is((SELECT format('%s %s %s %s', logins, failed_logins, records_viewed, password_changes)
             FROM audit.user_activity('ann@example.com')),
          '1 1 1 1', 'user_activity counts application logins, failed logins, views and password changes');

-- digest columns
SET LOCAL client_min_messages = warning;
CREATE TABLE tap_files (id int PRIMARY KEY, body text);
SELECT audit.enable('tap_files', digest_columns => '{body}');
INSERT INTO tap_files VALUES (1, repeat('abc', 100000));    -- compressed in TOAST: detoasted once
SELECT is((SELECT new_data -> 'body' FROM audit.event WHERE table_name = 'tap_files' AND action = 'INSERT'),
          jsonb_build_object('bytes', 300000, 'sha256', encode(sha256(convert_to(repeat('abc', 100000), 'UTF8')), 'hex')),
          'a digest column is stored as its SHA-256 and size');
UPDATE tap_files SET body = repeat('abc', 100000);
SELECT is((SELECT count(*) FROM audit.event WHERE table_name = 'tap_files' AND action = 'UPDATE'), 0::bigint,
          'an UPDATE that leaves the digest unchanged records nothing');

SELECT * FROM finish();
ROLLBACK;
