-- pgTAP: what the owner of a table audited with capture => 'wal' (issue 22)
-- can do to keep its changes out of the trail, on the wal_level = logical
-- cluster (scripts/test.sh, part "WAL mode").  The owner is an ordinary role:
-- it owns its table, its types and its functions, nothing of the extension.
-- Found by the 1.6 security review (2026-12-06); each section failed before
-- its fix (docs/architecture.md, "Threat model").
--  1. SET UNLOGGED: an unlogged table writes no WAL, so its INSERT, UPDATE
--     and DELETE were not captured at all (SET LOGGED afterwards left only
--     two ordinary ALTER TABLE events); an unlogged partition or inheritance
--     child of a WAL-mode table, the same.
--  2. REPLICA IDENTITY DEFAULT or NOTHING: the WAL then holds no old row (a
--     key only, with DEFAULT and a primary key): a DELETE from a table
--     without a key was not recorded at all, and one with a key was recorded
--     with an old row of NULLs (an UPDATE of the key likewise, with every
--     column "changed").  The decoder is checked on inheritance children,
--     which get the WAL-mode triggers but keep their replica identity (a
--     documented limit).
--  3. the owner's code in the capture worker: a cast of the owner's enum type
--     to json written in PL/pgSQL (to_jsonb() uses it, so the row conversion
--     did) failed in the decoder ("cannot execute SQL without an outer
--     snapshot or portal"; a function that raises, the same), the worker
--     restarted and failed on the same change forever: capture of every
--     WAL-mode table of the database stopped.  In the worker such a column is
--     now recorded as its text.
--  4. not only the owner: any role that may INSERT into a WAL-mode table
--     wrote one value of 270 MB (compressed in the WAL to almost nothing);
--     its JSON exceeds jsonb's 256 MB, the decoder failed on it after every
--     restart, and capture of the database stopped for good (in trigger mode
--     the INSERT itself fails).  A row too large to record is now an event
--     without its values.
--  5. not an owner's route but a superuser's (or a role granted EXECUTE on
--     pg_replication_origin_session_setup): the decoder skipped every change
--     made under the capture worker's replication origin (meant for its own
--     writes), so a session that took the origin while the worker was down
--     (pg_terminate_backend) wrote changes no event ever recorded.  The
--     decoder no longer filters by origin.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(24);

CREATE ROLE wo_owner;
GRANT CREATE ON SCHEMA public TO wo_owner;
SET ROLE wo_owner;
CREATE TABLE wo_u (id int PRIMARY KEY, v text);
CREATE TABLE wo_p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE wo_p1 PARTITION OF wo_p FOR VALUES FROM (0) TO (100);
CREATE UNLOGGED TABLE wo_loose (id int PRIMARY KEY, v text);
CREATE TABLE wo_inh (id int, v text);
RESET ROLE;
SELECT audit.enable('wo_u', capture => 'wal');
SELECT audit.enable('wo_p', capture => 'wal');
SELECT audit.enable('wo_inh', capture => 'wal');
CREATE TABLE wo_mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;

-- 1. unlogged
SET ROLE wo_owner;
SELECT throws_ok($$ALTER TABLE wo_u SET UNLOGGED$$, '55000', NULL,
                 'the owner cannot make a WAL-mode table unlogged');
SELECT throws_ok($$ALTER TABLE wo_p1 SET UNLOGGED$$, '55000', NULL,
                 'nor a partition of a WAL-mode partitioned table');
SELECT throws_ok($$CREATE UNLOGGED TABLE wo_p2 PARTITION OF wo_p FOR VALUES FROM (100) TO (200)$$, '55000', NULL,
                 'nor add an unlogged partition to it');
SELECT throws_ok($$ALTER TABLE wo_p ATTACH PARTITION wo_loose FOR VALUES FROM (200) TO (300)$$, '55000', NULL,
                 'nor attach an unlogged table as a partition');
SELECT throws_ok($$CREATE UNLOGGED TABLE wo_inh_c () INHERITS (wo_inh)$$, '55000', NULL,
                 'nor make an unlogged inheritance child of a WAL-mode table');
INSERT INTO wo_u VALUES (1, 'a'), (2, 'b');
UPDATE wo_u SET v = 'a1' WHERE id = 1;
DELETE FROM wo_u WHERE id = 2;
INSERT INTO wo_p VALUES (1, 'p');
RESET ROLE;
SELECT throws_ok($$SELECT audit.enable('wo_loose', capture => 'wal')$$, '55000', NULL,
                 'an unlogged table cannot be enabled with capture => ''wal''');
SELECT lives_ok($$SELECT audit.enable('wo_loose')$$, 'it can be audited by trigger');
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up');
SELECT is((SELECT string_agg(e.table_name || ' ' || e.action, ', ' ORDER BY e.id) FROM audit.event e
            WHERE e.id > (SELECT id FROM wo_mark) AND e.class = 'data'),
          'wo_u INSERT, wo_u INSERT, wo_u UPDATE, wo_u DELETE, wo_p INSERT',
          'every change of the tables is in the trail');

-- 2. replica identity
CREATE TABLE wo_mark2 AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
SET ROLE wo_owner;
SELECT throws_ok($$ALTER TABLE wo_u REPLICA IDENTITY DEFAULT$$, '55000', NULL,
                 'the owner cannot give a WAL-mode table REPLICA IDENTITY DEFAULT');
SELECT throws_ok($$ALTER TABLE wo_u REPLICA IDENTITY NOTHING$$, '55000', NULL, 'nor NOTHING');
SELECT throws_ok($$ALTER TABLE wo_p1 REPLICA IDENTITY USING INDEX wo_p1_pkey$$, '55000', NULL,
                 'nor USING INDEX, on a partition of a WAL-mode table');
SELECT lives_ok($$ALTER TABLE wo_u REPLICA IDENTITY FULL$$, 'FULL (what it has) is allowed');
CREATE TABLE wo_inh_n (LIKE wo_inh) INHERITS (wo_inh);
CREATE TABLE wo_inh_k (PRIMARY KEY (id)) INHERITS (wo_inh);
INSERT INTO wo_inh_n VALUES (1, 'n');
INSERT INTO wo_inh_k VALUES (1, 'k'), (2, 'k2');
DELETE FROM wo_inh_n;
DELETE FROM wo_inh_k WHERE id = 1;
UPDATE wo_inh_k SET id = 3, v = 'k3' WHERE id = 2;
RESET ROLE;
SELECT is((SELECT count(*) FROM pg_trigger t WHERE t.tgrelid IN ('wo_inh_n'::regclass, 'wo_inh_k'::regclass)
            AND t.tgname = 'audit_ext_row'), 2::bigint, 'both children are audited in WAL mode');
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up');
SELECT is((SELECT string_agg(concat_ws(' ', e.table_name, e.action, e.record_id::text, coalesce(e.old_data::text, '-'),
                                       e.detail ->> 'old_row'), ' | ' ORDER BY e.id)
             FROM audit.event e
            WHERE e.id > (SELECT id FROM wo_mark2) AND e.class = 'data' AND e.action IN ('DELETE', 'UPDATE')),
          'wo_inh_n DELETE - not in the WAL | wo_inh_k DELETE {"id": 1} - not in the WAL | '
          'wo_inh_k UPDATE {"id": 2} - not in the WAL',
          'a DELETE without an old row is recorded, and a key-only old row is never recorded as the row');

-- 3. the owner's cast to json
CREATE TABLE wo_mark3 AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
SET ROLE wo_owner;
CREATE TYPE wo_mood AS ENUM ('calm', 'boom');
CREATE FUNCTION wo_mood_json(m wo_mood) RETURNS json LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN IF m = 'boom' THEN RAISE EXCEPTION 'stop the capture worker'; END IF; RETURN json_build_object('mood', m::text); END $$;
CREATE CAST (wo_mood AS json) WITH FUNCTION wo_mood_json(wo_mood);
CREATE TYPE wo_pair AS (a int, m wo_mood);
CREATE TABLE wo_m (id int PRIMARY KEY, m wo_mood, ms wo_mood[], p wo_pair);
RESET ROLE;
SELECT audit.enable('wo_m', capture => 'wal');
SET ROLE wo_owner;
INSERT INTO wo_m VALUES (1, 'calm', '{calm,boom}', '(1,boom)'), (2, 'boom', NULL, NULL);
UPDATE wo_m SET m = 'calm' WHERE id = 2;
RESET ROLE;
INSERT INTO wo_u VALUES (10, 'after');
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up past the changes of a table with the owner''s cast');
SELECT is((SELECT string_agg(concat_ws(' ', e.table_name, e.action, e.new_data::text), ' | ' ORDER BY e.id)
             FROM audit.event e WHERE e.id > (SELECT id FROM wo_mark3) AND e.class = 'data'),
          'wo_m INSERT {"m": "calm", "p": "(1,boom)", "id": 1, "ms": "{calm,boom}"} | '
          'wo_m INSERT {"m": "boom", "p": null, "id": 2, "ms": null} | wo_m UPDATE {"m": "calm"} | '
          'wo_u INSERT {"v": "after", "id": 10}',
          'its rows are recorded (the owner''s type as text), and the next table''s change too');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit.capture_lag WHERE worker_pid IS NULL), 'the worker is running');

-- 4. a row too large for the trail, written by an ordinary role
CREATE TABLE wo_mark4 AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
CREATE TABLE wo_big (id int PRIMARY KEY, t text);
SELECT audit.enable('wo_big', capture => 'wal');
CREATE ROLE wo_writer;
GRANT INSERT ON wo_big TO wo_writer;
SET ROLE wo_writer;
INSERT INTO wo_big VALUES (1, repeat('x', 270000000));
INSERT INTO wo_big VALUES (2, 'small');
RESET ROLE;
INSERT INTO wo_u VALUES (20, 'after big');
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up past a 270 MB value');
SELECT is((SELECT string_agg(concat_ws(' ', e.table_name, e.action, e.record_id::text, coalesce(e.new_data::text, '-'),
                                       e.detail ->> 'row'), ' | ' ORDER BY e.id)
             FROM audit.event e WHERE e.id > (SELECT id FROM wo_mark4) AND e.class = 'data'),
          'wo_big INSERT {"id": 1} - too large to record | wo_big INSERT {"id": 2} {"t": "small", "id": 2} | '
          'wo_u INSERT {"id": 20} {"v": "after big", "id": 20}',
          'the large row is an event without its values; the next rows are recorded');

-- 5. changes made under the capture worker's replication origin
CREATE TABLE wo_mark5 AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
SELECT pg_terminate_backend(worker_pid) FROM audit.capture_lag WHERE worker_pid IS NOT NULL;
DO $$
BEGIN
    FOR i IN 1 .. 3000 LOOP
        BEGIN
            PERFORM pg_replication_origin_session_setup('audit_ext_wal_' ||
                        (SELECT oid FROM pg_database WHERE datname = current_database()));
            RETURN;
        EXCEPTION WHEN object_in_use THEN
            PERFORM pg_sleep(0.01);
        END;
    END LOOP;
END $$;
SELECT ok(pg_replication_origin_session_is_setup(), 'this session holds the capture worker''s origin');
INSERT INTO wo_u VALUES (30, 'under the origin');
UPDATE wo_u SET v = 'a2' WHERE id = 1;
SELECT pg_replication_origin_session_reset();
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker, started again, caught up');
SELECT is((SELECT string_agg(concat_ws(' ', e.action, e.record_id::text), ', ' ORDER BY e.id)
             FROM audit.event e WHERE e.id > (SELECT id FROM wo_mark5) AND e.table_name = 'wo_u'),
          'INSERT {"id": 30}, UPDATE {"id": 1}',
          'the changes made under the worker''s origin are in the trail');

SELECT * FROM finish();
