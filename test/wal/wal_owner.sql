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
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(16);

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

SELECT * FROM finish();
