-- pgTAP: behaviour of capture => 'wal' (issue 22), on a cluster with
-- wal_level = logical (scripts/test.sh, part "WAL mode", database
-- audit_tap_wal).  Events are written by the capture worker after the
-- commit, so this file commits (it cannot run in one rolled-back
-- transaction) and waits for the worker with audit.wait_for_capture(), a
-- bounded wait that returns as soon as the worker has written every earlier
-- commit: no sleep.  A twin table in trigger mode gets the same statements;
-- both trails must be the same.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(21);

CREATE TABLE wb_t (id int PRIMARY KEY, v text, secret text, hidden text, n numeric, tags text[]);
CREATE TABLE wb_w (LIKE wb_t INCLUDING ALL);
SELECT audit.enable('wb_t', exclude_columns => '{hidden}', mask_columns => '{secret}');
SELECT audit.enable('wb_w', exclude_columns => '{hidden}', mask_columns => '{secret}', capture => 'wal');
CREATE TABLE wb_mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;

SELECT is((SELECT capture FROM audit.audited_tables WHERE table_oid = 'wb_w'::regclass), 'wal',
          'audited_tables shows the mode');
SELECT is((SELECT relreplident::text FROM pg_class WHERE oid = 'wb_w'::regclass), 'f',
          'WAL mode sets REPLICA IDENTITY FULL');

-- the same statements on both tables, committed one by one
SET application_name = 'wal-tap';
SET audit_ext.actor = 'alice';
INSERT INTO wb_t VALUES (1, 'a', 's1', 'h1', 1.5, '{x,y}'), (2, 'b', 's2', 'h2', 2, NULL);
INSERT INTO wb_w VALUES (1, 'a', 's1', 'h1', 1.5, '{x,y}'), (2, 'b', 's2', 'h2', 2, NULL);
UPDATE wb_t SET v = 'a2', secret = 's1b', hidden = 'h1b' WHERE id = 1;
UPDATE wb_w SET v = 'a2', secret = 's1b', hidden = 'h1b' WHERE id = 1;
UPDATE wb_t SET hidden = 'only hidden' WHERE id = 2;
UPDATE wb_w SET hidden = 'only hidden' WHERE id = 2;

-- not visible in the writing transaction, visible after the lag
BEGIN;
INSERT INTO wb_w VALUES (3, 'c', NULL, NULL, NULL, NULL);
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM wb_mark) AND table_name = 'wb_w' AND record_id = '{"id": 3}'),
          0::bigint, 'an uncommitted change has no event (WAL mode writes events after the commit)');
COMMIT;
INSERT INTO wb_t VALUES (3, 'c', NULL, NULL, NULL, NULL);
SELECT is(audit.wait_for_capture('60 s'), true, 'wait_for_capture(): the worker caught up');
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM wb_mark) AND table_name = 'wb_w' AND record_id = '{"id": 3}'),
          1::bigint, 'after the lag the committed change has its event');

-- rolled back: a savepoint, an exception block, a whole transaction (the
-- same transactions on each table, so that statement sequences match)
BEGIN;
INSERT INTO wb_t VALUES (4, 'd');
SAVEPOINT a;
DELETE FROM wb_t WHERE id = 1;
UPDATE wb_t SET n = 99;
ROLLBACK TO SAVEPOINT a;
DO $$ BEGIN INSERT INTO wb_t VALUES (50, 'exception'); RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END $$;
UPDATE wb_t SET n = n + 1 WHERE id = 2;
COMMIT;
BEGIN;
INSERT INTO wb_w VALUES (4, 'd');
SAVEPOINT a;
DELETE FROM wb_w WHERE id = 1;
UPDATE wb_w SET n = 99;
ROLLBACK TO SAVEPOINT a;
DO $$ BEGIN INSERT INTO wb_w VALUES (50, 'exception'); RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END $$;
UPDATE wb_w SET n = n + 1 WHERE id = 2;
COMMIT;
BEGIN;
INSERT INTO wb_t VALUES (5, 'never');
INSERT INTO wb_w VALUES (5, 'never');
ROLLBACK;
-- an UPDATE that changes nothing, a DELETE
UPDATE wb_t SET v = v WHERE id = 2;
UPDATE wb_w SET v = v WHERE id = 2;
DELETE FROM wb_t WHERE id = 3;
DELETE FROM wb_w WHERE id = 3;
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up again');

CREATE VIEW wb_cmp AS
SELECT e.table_name, row_number() OVER (PARTITION BY e.table_name ORDER BY e.id) AS k,
       e.action, e.record_id, e.old_data, e.new_data, e.changed_columns, e.db_user, e.session_user,
       e.actor, e.application_name, e.statement_seq, s.statement_text, e.txid IS NOT NULL AS has_txid,
       e.backend_pid = pg_backend_pid() AS our_pid
  FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
 WHERE e.class = 'data' AND e.table_name IN ('wb_t', 'wb_w') AND e.id > (SELECT id FROM wb_mark);

SELECT is((SELECT count(*) FROM wb_cmp WHERE table_name = 'wb_w'),
          (SELECT count(*) FROM wb_cmp WHERE table_name = 'wb_t'),
          'as many events in WAL mode as in trigger mode');
SELECT is_empty($$
    SELECT k, action, record_id, old_data, new_data, changed_columns, db_user, session_user, actor, application_name,
           statement_seq, replace(statement_text, 'wb_w', 'wb_t'), has_txid, our_pid FROM wb_cmp WHERE table_name = 'wb_w'
    EXCEPT
    SELECT k, action, record_id, old_data, new_data, changed_columns, db_user, session_user, actor, application_name,
           statement_seq, statement_text, has_txid, our_pid FROM wb_cmp WHERE table_name = 'wb_t'$$,
    'the WAL-mode events equal the trigger-mode events: rows, changed columns, users, actor, application, statement');
SELECT is((SELECT string_agg(action || ':' || (record_id ->> 'id'), ',' ORDER BY k) FROM wb_cmp WHERE table_name = 'wb_w'),
          'INSERT:1,INSERT:2,UPDATE:1,INSERT:3,INSERT:4,UPDATE:2,DELETE:3',
          'exactly the committed changes, in commit order');
SELECT is((SELECT count(*) FROM wb_cmp WHERE table_name = 'wb_w' AND (record_id ->> 'id')::int IN (5, 50) OR new_data ->> 'n' = '99'),
          0::bigint, 'nothing of a rolled-back transaction or exception block');
SELECT is((SELECT count(*) FROM wb_cmp WHERE table_name = 'wb_w' AND action = 'DELETE' AND record_id = '{"id": 1}'),
          0::bigint, 'nothing of a subtransaction rolled back to its savepoint');
SELECT ok((SELECT bool_and(NOT (coalesce(old_data, '{}') ? 'hidden') AND NOT (coalesce(new_data, '{}') ? 'hidden'))
             FROM wb_cmp WHERE table_name = 'wb_w'), 'an excluded column is never recorded');
SELECT ok((SELECT bool_and(new_data ->> 'secret' IS DISTINCT FROM 's1' AND new_data ->> 'secret' IS DISTINCT FROM 's1b')
             FROM wb_cmp WHERE table_name = 'wb_w'), 'a masked column is never recorded in clear');
SELECT is((SELECT changed_columns FROM wb_cmp WHERE table_name = 'wb_w' AND action = 'UPDATE' AND record_id = '{"id": 1}'),
          '{v,secret}'::text[], 'UPDATE records only the changed columns (excluded ones not among them)');
SELECT is((SELECT old_data FROM wb_cmp WHERE table_name = 'wb_w' AND action = 'DELETE'),
          '{"id": 3, "n": null, "v": "c", "tags": null, "secret": "[masked]"}'::jsonb,
          'DELETE has the old row from the WAL (REPLICA IDENTITY FULL)');
SELECT is((SELECT actor || '/' || application_name FROM wb_cmp WHERE table_name = 'wb_w' LIMIT 1), 'alice/wal-tap',
          'the session context travels in the statement message');

-- TRUNCATE, then switching modes: the next change is recorded by the new mode, once
TRUNCATE wb_w;
SELECT audit.enable('wb_w', capture => 'trigger');
INSERT INTO wb_w VALUES (7, 'after switch');
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM wb_mark) AND table_name = 'wb_w' AND record_id = '{"id": 7}'),
          1::bigint, 'switched to triggers: the event is there at once');
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up after the switch');
SELECT is((SELECT string_agg(action || ':' || coalesce(record_id ->> 'id', '-'), ',' ORDER BY event_time, id)
             FROM audit.event WHERE id > (SELECT id FROM wb_mark) AND class = 'data' AND table_name = 'wb_w'
               AND (action = 'TRUNCATE' OR record_id = '{"id": 7}')),
          'TRUNCATE:-,INSERT:7',
          'the TRUNCATE (WAL mode) and the INSERT (trigger mode), each once, in time order (ids are in write order: the worker writes the TRUNCATE after the trigger wrote the INSERT)');
SELECT is((SELECT relreplident::text FROM pg_class WHERE oid = 'wb_w'::regclass), 'd',
          'back in trigger mode: the replica identity is restored');
SELECT is((SELECT verified FROM audit.verify()), true, 'the chains verify');

SELECT * FROM finish();
SELECT audit.disable('wb_t');
SELECT audit.disable('wb_w');
DROP VIEW wb_cmp;
DROP TABLE wb_t, wb_w, wb_mark;
