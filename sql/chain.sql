-- The hash chain's SQL surface: verify, checkpoints, event_hash, publish;
-- every error with its SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE TABLE chain_t (id int PRIMARY KEY, v text);
SELECT audit.enable('chain_t');
INSERT INTO chain_t VALUES (1, 'a'), (2, 'b');
UPDATE chain_t SET v = 'c' WHERE id = 1;

-- (earlier files insert events by hand as superuser: verify this file's window)
SELECT verified, breaks, first_broken_event_id, problem
  FROM audit.verify(now() - interval '1 hour', now() + interval '1 hour');
SELECT verified FROM audit.verify('2026-01-02', '2026-01-01');
\echo :LAST_ERROR_SQLSTATE

-- each event's hash follows from its columns and its predecessor's hash
-- (a NULL hash or a NULL comparison counts as not reproduced: bool_and skips NULLs)
SELECT bool_and(coalesce(audit.event_hash(e, coalesce(p.hash, decode(repeat('00', 32), 'hex'))) = e.hash, false)) AS hashes_reproduced,
       count(*) AS events
  FROM audit.event e
  LEFT JOIN audit.event p ON p.class = e.class AND p.chain_lane = e.chain_lane AND p.chain_seq = e.chain_seq - 1
 WHERE e.table_name = 'chain_t';
SELECT audit.event_hash(e, '\x00') FROM audit.event e WHERE e.table_name = 'chain_t' LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
SELECT audit.event_hash(ROW(1, now(), 'data', 'INSERT', 'success', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::audit.event,
                        decode(repeat('00', 32), 'hex'));
\echo :LAST_ERROR_SQLSTATE

-- a checkpoint counts as taken only when its transaction commits
BEGIN;
SELECT audit.chain_checkpoint() > 0 AS recorded;
ROLLBACK;
SELECT audit.chain_checkpoint() > 0 AS recorded_again_after_rollback;
SELECT audit.chain_checkpoint() AS nothing_moved_since;
SELECT count(*) > 0 AS checkpoints FROM audit.chain_checkpoint WHERE class = 'data';

-- publishing the trail
SELECT audit.publish('');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.publish(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.publish('chain_test_pub');
SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication WHERE pubname = 'chain_test_pub';
SELECT string_agg(tablename, ', ' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'chain_test_pub';
DROP PUBLICATION chain_test_pub;

-- who may
CREATE ROLE chain_nobody;
CREATE ROLE chain_reader IN ROLE audit_reader;
SET ROLE chain_nobody;
SELECT verified FROM audit.verify();
\echo :LAST_ERROR_SQLSTATE
SELECT audit.publish();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE chain_reader;
SELECT verified FROM audit.verify(now() - interval '1 hour', now() + interval '1 hour');
SELECT audit.publish();
\echo :LAST_ERROR_SQLSTATE
SELECT audit.chain_checkpoint();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DROP ROLE chain_nobody, chain_reader;
SELECT audit.disable('chain_t');
DROP TABLE chain_t;
