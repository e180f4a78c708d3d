-- pgTAP: context runs (1.6).  Only the first event of a run of events with
-- the same context keys (one writer, one class, within 64 ids, an hour and a
-- month) enters the context indexes; audit.search() finds the others from
-- it.  Transactions here commit and roll back for real (runs end at an
-- abort), so the names are this file's own and its table is dropped.
SELECT plan(41);

CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
CREATE TABLE crun_t (id int PRIMARY KEY, v text);
SELECT audit.enable('crun_t');

-- one session's context, as a pooled application sets it per transaction
-- (the same value each time) or per session
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', is_local => false);
INSERT INTO crun_t VALUES (1, 'a');
INSERT INTO crun_t VALUES (2, 'b'), (3, 'c');
UPDATE crun_t SET v = 'a2' WHERE id = 1;

SELECT is((SELECT array_agg(context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND context ->> 'session_id' = 'RUN-1'),
          ARRAY[false, true, true, true],
          'the first event of the run starts it, the next ones continue it (across transactions)');
SELECT is((SELECT array_agg(record_id ->> 'id' ORDER BY id DESC) FROM audit.search(session_id => 'RUN-1', class => 'data') s WHERE s.id > (SELECT id FROM mark)),
          ARRAY['1', '3', '2', '1'], 'search(session_id) finds the events that continue a run');

-- a rollback ends the run: the next event starts a new one
BEGIN;
INSERT INTO crun_t VALUES (4, 'rolled back');
ROLLBACK;
INSERT INTO crun_t VALUES (5, 'e');
SELECT is((SELECT context_continues FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND record_id = '{"id": 5}'),
          false, 'after a rollback the next event starts a run');

-- a run started in a subtransaction that rolls back is not continued
BEGIN;
SAVEPOINT s1;
UPDATE crun_t SET v = 'gone' WHERE id = 2;
ROLLBACK TO SAVEPOINT s1;
UPDATE crun_t SET v = 'kept' WHERE id = 3;
SAVEPOINT s2;
UPDATE crun_t SET v = 'kept too' WHERE id = 5;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT is((SELECT array_agg((record_id ->> 'id') || ':' || context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND action = 'UPDATE' AND new_data ? 'v'
              AND new_data ->> 'v' LIKE 'kept%'),
          ARRAY['3:false', '5:true'],
          'after ROLLBACK TO SAVEPOINT the next event starts a run; a released savepoint''s events continue it');

-- another context starts a run, and so does coming back to the first
SELECT audit.set_context(actor => 'run-bob', session_id => 'RUN-2', tenant => 'run-t', is_local => false);
INSERT INTO crun_t VALUES (6, 'f');
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', is_local => false);
INSERT INTO crun_t VALUES (7, 'g');
SELECT is((SELECT array_agg((record_id ->> 'id') || ':' || context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND record_id IN ('{"id": 6}', '{"id": 7}')),
          ARRAY['6:false', '7:false'], 'a change of context starts a run, so does the change back');
-- a context that changes only outside the run's keys (a request id, user
-- agent, user role, extra keys: an application that sets its user's
-- context per request) continues the run; a change of a key audit.search()
-- leads with (session_id, tenant, client_ip) starts one
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', request_id => 'r-1', is_local => false);
UPDATE crun_t SET v = 'g2' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', request_id => 'r-2',
                         user_agent => 'curl', user_role => 'clerk', extra => '{"screen": "orders"}', is_local => false);
UPDATE crun_t SET v = 'g2b' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', request_id => 'r-3',
                         client_ip => '192.0.2.7', is_local => false);
UPDATE crun_t SET v = 'g2c' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t2', request_id => 'r-4',
                         client_ip => '192.0.2.7', is_local => false);
UPDATE crun_t SET v = 'g2d' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1b', tenant => 'run-t2', request_id => 'r-5',
                         client_ip => '192.0.2.7', is_local => false);
UPDATE crun_t SET v = 'g2e' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1b', tenant => 'run-t2', request_id => 'r-6',
                         client_ip => '192.0.2.7', user_role => 'admin', is_local => false);
UPDATE crun_t SET v = 'g2f' WHERE id = 7;
SELECT is((SELECT array_agg((new_data ->> 'v') || ':' || context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND record_id = '{"id": 7}' AND action = 'UPDATE'),
          ARRAY['g2:true', 'g2b:true', 'g2c:false', 'g2d:false', 'g2e:false', 'g2f:true'],
          'request id, user agent, user role and extra keys continue a run; client_ip, tenant and session_id start one');
SELECT is((SELECT array_agg(s.new_data ->> 'v' ORDER BY s.id) FROM audit.search(session_id => 'RUN-1', action => 'UPDATE') s
            WHERE s.id > (SELECT id FROM mark) AND s.new_data ->> 'v' LIKE 'g2%'),
          ARRAY['g2', 'g2b', 'g2c', 'g2d'], 'search(session_id) finds the events of a run whose request ids differ');
SELECT is((SELECT array_agg(s.new_data ->> 'v' ORDER BY s.id) FROM audit.search(client_ip => '192.0.2.7', action => 'UPDATE') s
            WHERE s.id > (SELECT id FROM mark)),
          ARRAY['g2c', 'g2d', 'g2e', 'g2f'], 'search(client_ip) finds them from the runs'' starts');
SELECT is((SELECT array_agg(s.new_data ->> 'v' ORDER BY s.id) FROM audit.search(tenant => 'run-t2', action => 'UPDATE') s
            WHERE s.id > (SELECT id FROM mark)),
          ARRAY['g2d', 'g2e', 'g2f'], 'search(tenant) too');
-- a key named in audit_ext.context_index_keys decides runs as well (a
-- reload applies it between statements)
ALTER SYSTEM SET audit_ext.context_index_keys = 'session_id, tenant, user_role';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2) WHERE current_setting('audit_ext.context_index_keys') NOT LIKE '%user_role%';
SELECT pg_sleep(0.5) WHERE current_setting('audit_ext.context_index_keys') NOT LIKE '%user_role%';
SELECT pg_sleep(1) WHERE current_setting('audit_ext.context_index_keys') NOT LIKE '%user_role%';
SELECT pg_sleep(2) WHERE current_setting('audit_ext.context_index_keys') NOT LIKE '%user_role%';
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1b', tenant => 'run-t2', request_id => 'r-7',
                         client_ip => '192.0.2.7', user_role => 'clerk', is_local => false);
UPDATE crun_t SET v = 'g2g' WHERE id = 7;
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1b', tenant => 'run-t2', request_id => 'r-8',
                         client_ip => '192.0.2.7', user_role => 'clerk', user_agent => 'wget', is_local => false);
UPDATE crun_t SET v = 'g2h' WHERE id = 7;
ALTER SYSTEM RESET audit_ext.context_index_keys;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2) WHERE current_setting('audit_ext.context_index_keys') LIKE '%user_role%';
SELECT pg_sleep(0.5) WHERE current_setting('audit_ext.context_index_keys') LIKE '%user_role%';
SELECT pg_sleep(1) WHERE current_setting('audit_ext.context_index_keys') LIKE '%user_role%';
SELECT pg_sleep(2) WHERE current_setting('audit_ext.context_index_keys') LIKE '%user_role%';
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1b', tenant => 'run-t2', request_id => 'r-9',
                         client_ip => '192.0.2.7', user_role => 'auditor', is_local => false);
UPDATE crun_t SET v = 'g2i' WHERE id = 7;
SELECT is((SELECT array_agg((new_data ->> 'v') || ':' || context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class = 'data' AND record_id = '{"id": 7}' AND action = 'UPDATE'
              AND new_data ->> 'v' IN ('g2g', 'g2h', 'g2i')),
          ARRAY['g2g:false', 'g2h:true', 'g2i:true'],
          'with user_role indexed a change of it starts a run; with the setting reset it does not');
SELECT audit.set_context(actor => 'run-alice', session_id => 'RUN-1', tenant => 'run-t', request_id => 'r-1', is_local => false);
UPDATE crun_t SET v = 'g2j' WHERE id = 7;

-- each class has its own run: an application event in the same transaction
BEGIN;
UPDATE crun_t SET v = 'g3' WHERE id = 7;
SELECT audit.log_event('VIEW', 'Customer', '{"id": 7}');
SELECT audit.log_event('EXPORT', 'Customer', '{"id": 7}');
COMMIT;
SELECT is((SELECT array_agg(class || ':' || context_continues ORDER BY id) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND class IN ('data', 'app')
              AND (action IN ('VIEW', 'EXPORT') OR new_data ->> 'v' = 'g3')),
          ARRAY['data:true', 'app:false', 'app:true'], 'each class (chain lane) has its own runs');

-- a run spans at most 64 ids: a statement of 600 rows starts ten or more
SELECT audit.set_context(actor => 'run-carol', session_id => 'RUN-BULK', tenant => 'run-t', is_local => false);
INSERT INTO crun_t SELECT g, 'bulk' FROM generate_series(1000, 1599) g;
SELECT cmp_ok((SELECT count(*) FILTER (WHERE NOT context_continues) FROM audit.event
                WHERE id > (SELECT id FROM mark) AND context ->> 'session_id' = 'RUN-BULK' AND class = 'data'),
              '>=', 10::bigint, '600 events of one statement: at least ten runs (one per 65 ids at most)');
SELECT cmp_ok((SELECT max(id - run_start) FROM (
                 SELECT id, max(id) FILTER (WHERE NOT context_continues) OVER (ORDER BY id) AS run_start
                   FROM audit.event WHERE id > (SELECT id FROM mark) AND class = 'data'
                                      AND context ->> 'session_id' = 'RUN-BULK') x),
          '<=', 64::bigint, 'no event is more than 64 ids after the start of its run');
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-BULK', max_rows => 10000) s WHERE s.id > (SELECT id FROM mark)), 600::bigint,
          'search(session_id) finds all 600');
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-BULK', max_rows => 10000, before_id => (
              SELECT id FROM audit.event WHERE id > (SELECT id FROM mark) AND record_id = '{"id": 1300}')) s
            WHERE s.id > (SELECT id FROM mark)),
          300::bigint, 'before_id: the 300 older ones');

-- paging newest first with small pages: every event once, in order
CREATE TEMP TABLE paged (n int, id bigint);
DO $$
DECLARE
    last bigint;
    page int := 0;
    got int;
BEGIN
    LOOP
        INSERT INTO paged SELECT page, s.id FROM audit.search(session_id => 'RUN-BULK', max_rows => 7, before_id => last) s
                                   WHERE s.id > (SELECT id FROM mark);
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got = 0;
        SELECT min(id) INTO last FROM paged WHERE n = page;
        page := page + 1;
    END LOOP;
END
$$;
SELECT is((SELECT count(*) FROM paged), 600::bigint, 'pages of 7: 600 events');
SELECT is((SELECT count(DISTINCT id) FROM paged), 600::bigint, 'pages of 7: no event twice');
SELECT is((SELECT count(*) FROM (SELECT n, count(*) AS c FROM paged GROUP BY n) x WHERE c <> 7), 1::bigint,
          'every page full but the last');
SELECT ok((SELECT bool_and(a.id > b.id) FROM paged a JOIN paged b ON b.n = a.n + 1
            WHERE a.id = (SELECT min(id) FROM paged WHERE n = a.n) AND b.id = (SELECT max(id) FROM paged WHERE n = b.n)),
          'pages newest first, each below the last');

-- the other filters apply to every event of a run, not only to its start
UPDATE crun_t SET v = 'bulk2' WHERE id BETWEEN 1100 AND 1109;
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-BULK', action => 'UPDATE') s WHERE s.id > (SELECT id FROM mark)), 10::bigint,
          'search(session_id, action): the UPDATEs only (not the run''s start)');
SELECT is((SELECT count(*) FROM audit.search(tenant => 'run-t', action => 'UPDATE', max_rows => 5) s WHERE s.id > (SELECT id FROM mark)), 5::bigint,
          'search(tenant, action, max_rows): a full page');
SELECT is((SELECT array_agg(s.id ORDER BY s.id DESC) FROM audit.search(tenant => 'run-t', max_rows => 50) s),
          (SELECT array_agg(e.id ORDER BY e.id DESC) FROM (SELECT id FROM audit.event
             WHERE context ->> 'tenant' = 'run-t' ORDER BY id DESC LIMIT 50) e),
          'search(tenant): the same newest 50 as a scan of the whole trail');
SELECT is((SELECT count(*) FROM audit.search(tenant => 'run-t', session_id => 'RUN-2') s WHERE s.id > (SELECT id FROM mark)), 1::bigint,
          'two context filters: both apply');
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-1', to_time => now() - interval '1 day') s WHERE s.id > (SELECT id FROM mark)), 0::bigint,
          'to_time before the runs: nothing');
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-BULK', from_time => now() - interval '1 hour', max_rows => 10000) s WHERE s.id > (SELECT id FROM mark)),
          610::bigint, 'from_time: the runs of the period');

-- the indexes hold the starts of runs only
SELECT ok((SELECT pg_get_indexdef(indexrelid) LIKE '%context_continues IS NOT TRUE%' FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
           WHERE c.relname LIKE 'event\_data\_p%\_ctx\_session\_id\_idx' ORDER BY c.relname DESC LIMIT 1),
          'the context indexes are partial on the start of a run');
-- a later statement whose first rows continue the run and whose later rows
-- start new ones: the writer opens the context indexes it had deferred in
-- the middle of the batch (src/event_writer.c), and every start is in them
INSERT INTO crun_t SELECT g, 'bulk b' FROM generate_series(2000, 2299) g;
SET enable_seqscan = off;
SELECT is((SELECT count(*) FROM audit.event WHERE context ? 'session_id' AND (context ->> 'session_id') = 'RUN-BULK'
              AND context_continues IS NOT TRUE AND class = 'data'),
          (SELECT count(*) FROM audit.event WHERE context ->> 'session_id' = 'RUN-BULK' AND class = 'data'
              AND NOT context_continues), 'the session index holds every start of a run (read through the index)');
SELECT is((SELECT count(*) FROM audit.event WHERE context ? 'tenant' AND (context ->> 'tenant') = 'run-t'
              AND context_continues IS NOT TRUE AND class = 'data'),
          (SELECT count(*) FROM audit.event WHERE context ->> 'tenant' = 'run-t' AND class = 'data'
              AND NOT context_continues), 'so does the tenant index');
RESET enable_seqscan;
SELECT is((SELECT count(*) FROM audit.search(session_id => 'RUN-BULK', max_rows => 10000) s WHERE s.id > (SELECT id FROM mark)),
          910::bigint, 'search(session_id) finds the 300 events of the later statement too');
-- a context per request, as a pooled application sets it: every
-- transaction starts a run and enters both indexes, whose prepared state the
-- writer keeps for the session (src/event_writer.c, ctx_index_info()); it
-- must follow a REINDEX and an index dropped and created again in the
-- session, between transactions and inside one
CREATE FUNCTION pg_temp.crun_requests(first int, n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first .. first + n - 1 LOOP
        PERFORM audit.set_context(session_id => 'REQ-' || i, tenant => 'req-t' || (i % 3), request_id => 'r' || i);
        INSERT INTO crun_t VALUES (i, 'request');
    END LOOP;
END $$;
SELECT pg_temp.crun_requests(3000, 5);
SELECT pg_temp.crun_requests(3005, 5);
-- the leaf these events are written to (not a month created ahead)
SELECT format('%I.%I', n.nspname, t.relname) AS crun_leaf FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE t.oid = (SELECT e.tableoid FROM audit.event e WHERE e.id = (SELECT max(id) FROM audit.event WHERE class = 'data')) \gset
SELECT format('%I.%I', n.nspname, c.relname) AS crun_leaf_idx FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.indrelid = :'crun_leaf'::regclass AND c.relname LIKE '%\_ctx\_session\_id\_idx' \gset
REINDEX INDEX :crun_leaf_idx;
SELECT pg_temp.crun_requests(3010, 5);
DROP INDEX :crun_leaf_idx;
SELECT pg_temp.crun_requests(3015, 5);
SELECT audit.create_event_indexes(:'crun_leaf'::regclass);
SELECT pg_temp.crun_requests(3020, 5);
BEGIN;
SELECT pg_temp.crun_requests(3025, 2);
DROP INDEX :crun_leaf_idx;
SELECT pg_temp.crun_requests(3027, 2);
SELECT audit.create_event_indexes(:'crun_leaf'::regclass);
SELECT pg_temp.crun_requests(3029, 2);
COMMIT;
SET enable_seqscan = off;
SELECT is((SELECT count(*) FROM audit.event WHERE context ? 'session_id' AND (context ->> 'session_id') LIKE 'REQ-%'
              AND context_continues IS NOT TRUE AND class = 'data' AND id > (SELECT id FROM mark)),
          31::bigint, 'a context per request: every request is a run start, in the session index');
SELECT is((SELECT count(*) FROM audit.event WHERE context ? 'tenant' AND (context ->> 'tenant') = 'req-t1'
              AND context_continues IS NOT TRUE AND class = 'data' AND id > (SELECT id FROM mark)),
          10::bigint, '... and in the tenant index');
RESET enable_seqscan;
SELECT is((SELECT array_agg(s.record_id ->> 'id') FROM audit.search(session_id => 'REQ-3027') s
            WHERE s.id > (SELECT id FROM mark)), ARRAY['3027'],
          '... search() finds a request written between a DROP INDEX and its re-creation in one transaction');
-- a context index of the DBA's own, with the predicate's shape and a key
-- that calls a function of the DBA's: deferred, but prepared in each
-- transaction (only indexes that call built-in functions alone are
-- prepared once per session)
CREATE FUNCTION crun_lower(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN lower(t); END';
SELECT c.relname || '_ctx_lowtenant_idx' AS crun_low_idx FROM pg_class c WHERE c.oid = :'crun_leaf'::regclass \gset
CREATE INDEX :"crun_low_idx" ON :crun_leaf ((public.crun_lower(context ->> 'tenant')))
    WHERE context ? 'tenant' AND context_continues IS NOT TRUE;
SELECT pg_temp.crun_requests(3031, 4);
SET enable_seqscan = off;
SELECT is((SELECT count(*) FROM audit.event WHERE context ? 'tenant' AND public.crun_lower(context ->> 'tenant') = 'req-t1'
              AND context_continues IS NOT TRUE AND class = 'data' AND id > (SELECT id FROM mark)),
          12::bigint, 'an index of the DBA''s own with another key holds the requests written after it');
RESET enable_seqscan;
-- the TRUNCATE and key-change indexes are deferred the same way (stop 34):
-- a transaction whose events enter neither does not open (nor lock) them,
-- so an audited pgbench transaction keeps its relation locks within the 16
-- fast-path slots.  A statement of more than 1000 events flushes in the
-- middle of the transaction, so its locks can be seen here.
SELECT audit.clear_context();
CREATE TABLE crun_d (id int PRIMARY KEY, v text);
SELECT audit.enable('crun_d');
CREATE FUNCTION pg_temp.crun_locked(pattern text) RETURNS bigint LANGUAGE sql AS
  $$SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relname ~ pattern$$;
BEGIN;
INSERT INTO crun_d SELECT g, 'x' FROM generate_series(1, 1200) g;
SELECT is(pg_temp.crun_locked('^event_data_p[0-9]+_(truncate|key_change|ctx_.*)_idx$'), 0::bigint,
          'a flush of plain INSERTs opens none of the deferred indexes');
SELECT is(pg_temp.crun_locked('^event_data_p[0-9]+_(id|actor|record)_idx$'), 3::bigint, '... but the others');
UPDATE crun_d SET id = 5000 WHERE id = 1;
INSERT INTO crun_d SELECT g, 'y' FROM generate_series(2000, 3100) g;
SELECT is(pg_temp.crun_locked('^event_data_p[0-9]+_key_change_idx$') || '/' || pg_temp.crun_locked('^event_data_p[0-9]+_truncate_idx$'), '1/0',
          'a key change in a batch opens the key-change index, not the TRUNCATE index');
TRUNCATE crun_d;
INSERT INTO crun_d SELECT g, 'z' FROM generate_series(1, 1100) g;
SELECT is(pg_temp.crun_locked('^event_data_p[0-9]+_truncate_idx$'), 1::bigint, 'a TRUNCATE in a batch opens the TRUNCATE index');
COMMIT;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT is((SELECT count(*) FROM audit.event WHERE class = 'data' AND action = 'TRUNCATE' AND table_name = 'crun_d'
              AND id > (SELECT id FROM mark)), 1::bigint, 'the TRUNCATE is found through its index');
SELECT is((SELECT count(*) FROM audit.event WHERE class = 'data' AND detail ? 'new_record_id' AND table_name = 'crun_d'
              AND id > (SELECT id FROM mark)), 1::bigint, 'the key change is found through its index');
RESET enable_bitmapscan;
RESET enable_seqscan;

-- amcheck (contrib) checks that every row of the partition that satisfies a
-- deferred index's predicate has its entry, with the key its expression gives
CREATE EXTENSION IF NOT EXISTS amcheck;
SELECT lives_ok($$SELECT bt_index_check(c.oid, true) FROM pg_class c
                   WHERE c.relname LIKE 'event\_data\_p%\_ctx\_%\_idx' OR c.relname LIKE 'event\_app\_p%\_ctx\_%\_idx'
                      OR c.relname ~ '^event_data_p[0-9]+_(truncate|key_change)_idx$'$$,
                'bt_index_check(heapallindexed): the deferred indexes hold exactly the rows their predicate takes');

-- an event whose flag is NULL (written by an older version, or by hand) is
-- found through the index by itself
SELECT is((SELECT count(*) FROM audit.event WHERE context_continues IS NULL AND context IS NOT NULL
              AND id > (SELECT id FROM mark)), 0::bigint, 'capture sets the flag on every event with a context');

DROP INDEX audit.:"crun_low_idx";
DROP FUNCTION crun_lower(text);
DROP TABLE crun_t;
DROP TABLE crun_d;
SELECT audit.clear_context();
SELECT * FROM finish();
