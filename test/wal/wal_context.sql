-- pgTAP: the statement context of capture => 'wal' (issue 22, section 2), on
-- the wal_level = logical cluster (scripts/test.sh, part "WAL mode").  Since
-- 1.6 the writer's message carries only what changed since the previous
-- message of the transaction (src/wal_capture.c, audit_wal_log_context),
-- and the decoder rebuilds each event's context from the transaction's
-- messages in order.  These statements change the context in every way a
-- transaction can: set_context() between statements, the actor, the
-- application name, the role, log_unchanged_updates mid-transaction; a
-- savepoint rolled back with the transaction's first message in it, a context
-- set inside a savepoint rolled back and set again, an exception block; a
-- statement whose text repeats, a prepared statement, a SECURITY DEFINER
-- function.  A twin table in trigger mode gets the same statements; every
-- fact of every event must be the same, the context included.  Last,
-- messages with audit_ext's prefix that audit_ext did not write are ignored.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(10);

CREATE TABLE wc_t (id int PRIMARY KEY, v text, n int);
CREATE TABLE wc_w (LIKE wc_t INCLUDING ALL);
SELECT audit.enable('wc_t');
SELECT audit.enable('wc_w', capture => 'wal');
CREATE ROLE wc_writer;
CREATE ROLE wc_owner;
GRANT SELECT, INSERT, UPDATE ON wc_t, wc_w TO wc_writer, wc_owner;
CREATE FUNCTION wc_bump(tbl text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog AS
$$ BEGIN EXECUTE format('UPDATE %I SET n = n + 10 WHERE id = 1', tbl); END $$;
ALTER FUNCTION wc_bump(text) OWNER TO wc_owner;
CREATE TABLE wc_mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
SET application_name = 'wc-app';
SET audit_ext.actor = 'alice';

-- 1. the context set between statements and changed mid-transaction; the
-- actor, the application, the role changed mid-transaction
BEGIN;
SELECT audit.set_context(session_id => 's-1', tenant => 'acme');
INSERT INTO wc_t VALUES (1, 'a', 0), (3, 'c', 0);
UPDATE wc_t SET v = 'a1' WHERE id = 1;
SELECT audit.set_context(session_id => 's-2', tenant => 'acme', extra => '{"step": 2}');
UPDATE wc_t SET v = 'a2' WHERE id = 1;
SET LOCAL audit_ext.actor = 'bob';
SET LOCAL application_name = 'wc-app-2';
UPDATE wc_t SET v = 'a3' WHERE id = 1;
SET LOCAL ROLE wc_writer;
UPDATE wc_t SET v = 'a4' WHERE id = 1;
RESET ROLE;
SET LOCAL audit_ext.log_unchanged_updates = on;
UPDATE wc_t SET v = v WHERE id = 1;
SET LOCAL audit_ext.log_unchanged_updates = off;
SELECT audit.clear_context();
UPDATE wc_t SET v = 'a5' WHERE id = 1;
COMMIT;
-- 2. savepoints: the transaction's first message rolled back with its
-- savepoint; a context set, rolled back and set again; an exception block
BEGIN;
SELECT audit.set_context(session_id => 's-3');
SAVEPOINT a;
INSERT INTO wc_t VALUES (2, 'b', 0);
ROLLBACK TO SAVEPOINT a;
UPDATE wc_t SET v = 'c1' WHERE id = 3;
SAVEPOINT b;
SELECT audit.set_context(session_id => 's-4');
UPDATE wc_t SET v = 'c2' WHERE id = 3;
ROLLBACK TO SAVEPOINT b;
SELECT audit.set_context(session_id => 's-4');
UPDATE wc_t SET v = 'c3' WHERE id = 3;
SAVEPOINT c;
SET LOCAL audit_ext.actor = 'carol';
UPDATE wc_t SET v = 'c4' WHERE id = 3;
RELEASE SAVEPOINT c;
UPDATE wc_t SET v = 'c5' WHERE id = 3;
DO $$ BEGIN UPDATE wc_t SET v = 'never' WHERE id = 3; PERFORM set_config('audit_ext.actor', 'dave', true); RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END $$;
UPDATE wc_t SET v = 'c6' WHERE id = 3;
COMMIT;
-- 3. a statement whose text repeats, a prepared statement, a function
-- running as its owner (another db_user for one statement)
PREPARE wc_upd_wc_t(int, text) AS UPDATE wc_t SET v = $2 WHERE id = $1;
BEGIN;
EXECUTE wc_upd_wc_t(1, 'p1');
EXECUTE wc_upd_wc_t(1, 'p2');
UPDATE wc_t SET n = n + 1 WHERE id = 3;
UPDATE wc_t SET n = n + 1 WHERE id = 3;
SELECT wc_bump('wc_t');
UPDATE wc_t SET n = n + 1 WHERE id = 3;
COMMIT;
EXECUTE wc_upd_wc_t(3, 'p3');
UPDATE wc_t SET n = n + 1 WHERE id = 3;
UPDATE wc_t SET n = n + 1 WHERE id = 3;
SELECT wc_bump('wc_t');
DEALLOCATE wc_upd_wc_t;

-- the same on the WAL-mode twin
-- 1. the context set between statements and changed mid-transaction; the
-- actor, the application, the role changed mid-transaction
BEGIN;
SELECT audit.set_context(session_id => 's-1', tenant => 'acme');
INSERT INTO wc_w VALUES (1, 'a', 0), (3, 'c', 0);
UPDATE wc_w SET v = 'a1' WHERE id = 1;
SELECT audit.set_context(session_id => 's-2', tenant => 'acme', extra => '{"step": 2}');
UPDATE wc_w SET v = 'a2' WHERE id = 1;
SET LOCAL audit_ext.actor = 'bob';
SET LOCAL application_name = 'wc-app-2';
UPDATE wc_w SET v = 'a3' WHERE id = 1;
SET LOCAL ROLE wc_writer;
UPDATE wc_w SET v = 'a4' WHERE id = 1;
RESET ROLE;
SET LOCAL audit_ext.log_unchanged_updates = on;
UPDATE wc_w SET v = v WHERE id = 1;
SET LOCAL audit_ext.log_unchanged_updates = off;
SELECT audit.clear_context();
UPDATE wc_w SET v = 'a5' WHERE id = 1;
COMMIT;
-- 2. savepoints: the transaction's first message rolled back with its
-- savepoint; a context set, rolled back and set again; an exception block
BEGIN;
SELECT audit.set_context(session_id => 's-3');
SAVEPOINT a;
INSERT INTO wc_w VALUES (2, 'b', 0);
ROLLBACK TO SAVEPOINT a;
UPDATE wc_w SET v = 'c1' WHERE id = 3;
SAVEPOINT b;
SELECT audit.set_context(session_id => 's-4');
UPDATE wc_w SET v = 'c2' WHERE id = 3;
ROLLBACK TO SAVEPOINT b;
SELECT audit.set_context(session_id => 's-4');
UPDATE wc_w SET v = 'c3' WHERE id = 3;
SAVEPOINT c;
SET LOCAL audit_ext.actor = 'carol';
UPDATE wc_w SET v = 'c4' WHERE id = 3;
RELEASE SAVEPOINT c;
UPDATE wc_w SET v = 'c5' WHERE id = 3;
DO $$ BEGIN UPDATE wc_w SET v = 'never' WHERE id = 3; PERFORM set_config('audit_ext.actor', 'dave', true); RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END $$;
UPDATE wc_w SET v = 'c6' WHERE id = 3;
COMMIT;
-- 3. a statement whose text repeats, a prepared statement, a function
-- running as its owner (another db_user for one statement)
PREPARE wc_upd_wc_w(int, text) AS UPDATE wc_w SET v = $2 WHERE id = $1;
BEGIN;
EXECUTE wc_upd_wc_w(1, 'p1');
EXECUTE wc_upd_wc_w(1, 'p2');
UPDATE wc_w SET n = n + 1 WHERE id = 3;
UPDATE wc_w SET n = n + 1 WHERE id = 3;
SELECT wc_bump('wc_w');
UPDATE wc_w SET n = n + 1 WHERE id = 3;
COMMIT;
EXECUTE wc_upd_wc_w(3, 'p3');
UPDATE wc_w SET n = n + 1 WHERE id = 3;
UPDATE wc_w SET n = n + 1 WHERE id = 3;
SELECT wc_bump('wc_w');
DEALLOCATE wc_upd_wc_w;
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up');

CREATE VIEW wc_cmp AS
SELECT e.table_name, row_number() OVER (PARTITION BY e.table_name ORDER BY e.id) AS k,
       e.action, e.record_id, e.old_data, e.new_data, e.changed_columns, e.db_user, e.session_user AS session_role,
       e.actor, e.application_name, e.client_addr, e.context, e.statement_seq,
       replace(s.statement_text, e.table_name, 'TBL') AS statement_text, e.txid IS NOT NULL AS has_txid,
       e.backend_pid = pg_backend_pid() AS our_pid
  FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
 WHERE e.class = 'data' AND e.table_name IN ('wc_t', 'wc_w') AND e.id > (SELECT id FROM wc_mark);

SELECT is((SELECT count(*) FROM wc_cmp WHERE table_name = 'wc_w'),
          (SELECT count(*) FROM wc_cmp WHERE table_name = 'wc_t'),
          'as many events in WAL mode as in trigger mode');
SELECT is_empty($$
    SELECT k, action, record_id, old_data, new_data, changed_columns, db_user, session_role, actor, application_name,
           client_addr, context, statement_seq, statement_text, has_txid, our_pid FROM wc_cmp WHERE table_name = 'wc_w'
    EXCEPT
    SELECT k, action, record_id, old_data, new_data, changed_columns, db_user, session_role, actor, application_name,
           client_addr, context, statement_seq, statement_text, has_txid, our_pid FROM wc_cmp WHERE table_name = 'wc_t'$$,
    'every WAL-mode event has the facts of its trigger-mode twin: users, actor, application, context, statement and its sequence');
-- the comparison above is only as good as the variety it compares
SELECT is((SELECT count(DISTINCT coalesce(context::text, '-')) || '/' || count(DISTINCT actor) || '/' || count(DISTINCT db_user)
                  || '/' || count(DISTINCT application_name)
             FROM wc_cmp WHERE table_name = 'wc_w'),
          '5/3/3/2',
          'the WAL-mode events saw 5 contexts (none included), 3 actors, 3 database users, 2 application names');
SELECT is((SELECT string_agg(coalesce(context ->> 'session_id', '-') || ':' || actor || ':' || db_user, ',' ORDER BY k)
             FROM wc_cmp WHERE table_name = 'wc_w' AND record_id = '{"id": 3}' AND action = 'UPDATE'
              AND new_data ? 'v' AND new_data ->> 'v' LIKE 'c%'),
          replace('s-3:alice:U,s-4:alice:U,s-4:carol:U,s-4:carol:U,s-4:carol:U', 'U', current_user),
          'after a rollback to a savepoint the context is the one in force, not the rolled-back one');
SELECT is((SELECT string_agg(db_user, ',' ORDER BY k) FROM wc_cmp WHERE table_name = 'wc_w' AND action = 'UPDATE' AND new_data ? 'n'
              AND record_id = '{"id": 1}'),
          'wc_owner,wc_owner', 'a SECURITY DEFINER function''s statement records its owner as db_user');
SELECT is((SELECT count(*) FROM wc_cmp WHERE table_name = 'wc_w' AND (record_id = '{"id": 2}' OR new_data ->> 'v' IN ('never', 'c2'))),
          0::bigint, 'nothing of what the savepoints and the exception block rolled back');

-- Forged messages.  pg_logical_emit_message() is open to every role: an
-- ordinary one puts messages with audit_ext's prefix into its own
-- transaction from a function called inside an audited statement (after the
-- statement's own message, before the row's change): one in the first
-- message format claiming other users (accepted before messages were
-- authenticated) and a malformed one (it stopped the decoder then).  Both are
-- ignored: the rows keep their true facts, capture goes on, and the trail
-- records the attempt (src/wal_capture.c, "Message authentication").
CREATE FUNCTION wc_forge(msg bytea) RETURNS text LANGUAGE sql
    AS $f$ SELECT pg_logical_emit_message(true, 'audit_ext', msg)::text $f$;
INSERT INTO wc_w VALUES (90, 'f0', 0), (91, 'f0', 0);
SET ROLE wc_writer;
BEGIN;
UPDATE wc_w SET v = wc_forge(
    decode('0100' || '34120000' || repeat('00', 16) || '07000000' || repeat('00', 8), 'hex')
    || convert_to('v1user', 'UTF8') || '\x00'::bytea || convert_to('v1session', 'UTF8') || '\x00'::bytea
    || convert_to('v1actor', 'UTF8') || '\x00'::bytea || '\x00'::bytea
    || convert_to('v1app', 'UTF8') || '\x00'::bytea) WHERE id = 90;
UPDATE wc_w SET v = wc_forge('\x02ff00'::bytea) WHERE id = 91;
COMMIT;
RESET ROLE;
SELECT audit.wait_for_capture('60 s');
SELECT is((SELECT string_agg(e.db_user || '/' || e.session_user || '/' || coalesce(e.actor, '-') || '/' || e.application_name,
                             ',' ORDER BY e.record_id ->> 'id')
             FROM audit.event e WHERE table_name = 'wc_w' AND action = 'UPDATE' AND record_id ->> 'id' IN ('90', '91')),
          'wc_writer/' || session_user || '/alice/wc-app,wc_writer/' || session_user || '/alice/wc-app',
          'forged messages change no fact of the rows that follow them');
SELECT is((SELECT (e.detail ->> 'messages') || '/' || e.risk || '/' || e.status FROM audit.event e
            WHERE e.class = 'system' AND e.action = 'CAPTURE_MESSAGE_REJECTED' AND e.id > (SELECT id FROM wc_mark)),
          '2/critical/failure', 'the two forged messages are one system/CAPTURE_MESSAGE_REJECTED event');
INSERT INTO wc_w VALUES (92, 'after', 0);
SELECT audit.wait_for_capture('60 s');
SELECT is((SELECT count(*) FROM audit.event WHERE table_name = 'wc_w' AND record_id = '{"id": 92}'),
          1::bigint, 'capture goes on after them');

SELECT * FROM finish();
RESET audit_ext.actor;
RESET application_name;
SELECT audit.disable('wc_t');
SELECT audit.disable('wc_w');
DROP VIEW wc_cmp;
DROP TABLE wc_t, wc_w, wc_mark;
DROP FUNCTION wc_bump(text);
DROP FUNCTION wc_forge(bytea);
DROP OWNED BY wc_writer, wc_owner;
DROP ROLE wc_writer, wc_owner;
