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
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);

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

SELECT * FROM finish();
