-- pgTAP: a partitioned table audited with capture => 'wal' (issue 22), on the
-- wal_level = logical cluster (scripts/test.sh, part "WAL mode").  Statement
-- triggers are not cloned to partitions, so enable() puts the statement's
-- context triggers (audit_ext_wal_part) and REPLICA IDENTITY FULL on every
-- partition, new ones included; the decoder records a partition's changes
-- under the audited partitioned table, as trigger mode does.  A twin
-- partitioned table in trigger mode gets the same statements.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(19);

CREATE TABLE wp_t (id int, region text, v text, secret text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE wp_t_eu PARTITION OF wp_t FOR VALUES IN ('eu');
CREATE TABLE wp_t_us PARTITION OF wp_t FOR VALUES IN ('us') PARTITION BY RANGE (id);
CREATE TABLE wp_t_us1 PARTITION OF wp_t_us FOR VALUES FROM (0) TO (1000);
CREATE TABLE wp_w (id int, region text, v text, secret text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE wp_w_eu PARTITION OF wp_w FOR VALUES IN ('eu');
CREATE TABLE wp_w_us PARTITION OF wp_w FOR VALUES IN ('us') PARTITION BY RANGE (id);
CREATE TABLE wp_w_us1 PARTITION OF wp_w_us FOR VALUES FROM (0) TO (1000);
ALTER TABLE wp_w_eu REPLICA IDENTITY NOTHING;   -- its own setting, given back on disable
SELECT audit.enable('wp_t', mask_columns => '{secret}');
SELECT audit.enable('wp_w', mask_columns => '{secret}', capture => 'wal');
CREATE TABLE wp_mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;

SELECT is((SELECT kind || ':' || capture || ':' || capturing FROM audit.audited_tables WHERE table_oid = 'wp_w'::regclass),
          'partitioned table:wal:true', 'a partitioned table can be audited from the WAL; audited_tables lists it once, capturing');
SELECT is((SELECT count(*) FROM audit.audited_tables WHERE table_name LIKE 'wp\_w%'), 1::bigint,
          'its partitions are not listed as tables of their own');
SELECT is((SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class
            WHERE relname IN ('wp_w_eu', 'wp_w_us1')), 'wp_w_eu=f,wp_w_us1=f',
          'every partition with rows has REPLICA IDENTITY FULL');

-- the same statements on both
INSERT INTO wp_t VALUES (1, 'eu', 'a', 's'), (2, 'us', 'b', 's');
INSERT INTO wp_w VALUES (1, 'eu', 'a', 's'), (2, 'us', 'b', 's');
INSERT INTO wp_t_eu VALUES (3, 'eu', 'direct', 's');      -- straight into a partition
INSERT INTO wp_w_eu VALUES (3, 'eu', 'direct', 's');
UPDATE wp_t SET v = v || '!' WHERE id IN (1, 2);
UPDATE wp_w SET v = v || '!' WHERE id IN (1, 2);
UPDATE wp_t_us1 SET v = 'deep' WHERE id = 2;              -- a partition two levels down
UPDATE wp_w_us1 SET v = 'deep' WHERE id = 2;
DELETE FROM wp_t_eu WHERE id = 1;
DELETE FROM wp_w_eu WHERE id = 1;
-- a partition created after enable
CREATE TABLE wp_t_asia PARTITION OF wp_t FOR VALUES IN ('asia');
CREATE TABLE wp_w_asia PARTITION OF wp_w FOR VALUES IN ('asia');
INSERT INTO wp_t VALUES (4, 'asia', 'new', 's');
INSERT INTO wp_w VALUES (4, 'asia', 'new', 's');
UPDATE wp_t_asia SET v = 'new2';
UPDATE wp_w_asia SET v = 'new2';
BEGIN;
INSERT INTO wp_w VALUES (9, 'eu', 'rolled back', 's');
ROLLBACK;
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up');

CREATE VIEW wp_cmp AS
SELECT e.table_name, row_number() OVER (PARTITION BY e.table_name ORDER BY e.id) AS k,
       e.schema_name, e.action, e.record_id, e.old_data, e.new_data, e.changed_columns, e.actor, e.statement_seq,
       replace(s.statement_text, 'wp_w', 'wp_t') AS statement_text, e.table_identity
  FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
 WHERE e.class = 'data' AND e.table_name IN ('wp_t', 'wp_w') AND e.id > (SELECT id FROM wp_mark);

SELECT is((SELECT count(*) FROM wp_cmp WHERE table_name = 'wp_w'), 9::bigint,
          'every committed change of every partition has its event, under the partitioned table''s name');
SELECT is((SELECT count(*) FROM wp_cmp WHERE table_name = 'wp_t'), 9::bigint, 'trigger mode: the same number');
SELECT is_empty($$
    SELECT k, schema_name, action, record_id, old_data, new_data, changed_columns, actor, statement_seq, statement_text
      FROM wp_cmp WHERE table_name = 'wp_w'
    EXCEPT
    SELECT k, schema_name, action, record_id, old_data, new_data, changed_columns, actor, statement_seq, statement_text
      FROM wp_cmp WHERE table_name = 'wp_t'$$,
    'the WAL-mode events of the partitions equal the trigger-mode ones (rows, changed columns, masking, statements)');
SELECT is((SELECT count(DISTINCT table_identity) FROM wp_cmp WHERE table_name = 'wp_w' AND table_identity IS NOT NULL),
          1::bigint, 'all of them carry the partitioned table''s identity');
SELECT ok((SELECT bool_and(table_identity = (SELECT table_identity FROM audit.audited_table_history
                                               WHERE table_oid = 'wp_w'::regclass AND valid_until IS NULL))
             FROM wp_cmp WHERE table_name = 'wp_w'), 'the identity is the partitioned table''s');
SELECT is((SELECT count(*) FROM wp_cmp WHERE table_name = 'wp_w' AND record_id = '{"id": 9, "region": "eu"}'),
          0::bigint, 'a rolled-back change has no event');
SELECT is((SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class WHERE relname = 'wp_w_asia'),
          'wp_w_asia=f', 'a partition created later gets REPLICA IDENTITY FULL');

-- a partition on its own: refused, as in trigger mode
SELECT throws_ok($$SELECT audit.disable('wp_w_eu')$$, '55000', NULL, 'disable() of a partition alone is refused');
SELECT throws_ok($$SELECT audit.enable('wp_w_eu', capture => 'trigger')$$, '55000', NULL,
                 'enable() of a partition alone is refused');

-- TRUNCATE of a partition names the partition (as trigger mode's does)
TRUNCATE wp_w_asia;
SELECT is(audit.wait_for_capture('60 s'), true, 'the worker caught up again');
SELECT is((SELECT string_agg(table_name, ',') FROM audit.event
            WHERE id > (SELECT id FROM wp_mark) AND class = 'data' AND action = 'TRUNCATE'), 'wp_w_asia',
          'a TRUNCATE of a partition: one event naming it');

-- a partition detached: no longer audited, its triggers go, its replica identity comes back
ALTER TABLE wp_w DETACH PARTITION wp_w_eu;
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'wp_w_eu'::regclass AND tgname LIKE 'audit\_ext%')
          || ':' || (SELECT relreplident::text FROM pg_class WHERE oid = 'wp_w_eu'::regclass),
          '0:n', 'a detached partition loses its WAL-mode triggers and gets its replica identity back');
INSERT INTO wp_w_eu VALUES (20, 'eu', 'detached', 's');
INSERT INTO wp_w VALUES (21, 'asia', 'still audited', 's');
SELECT is(audit.wait_for_capture('60 s'), true, 'caught up after the detach');
SELECT is((SELECT string_agg(record_id ->> 'id', ',') FROM audit.event
            WHERE id > (SELECT id FROM wp_mark) AND class = 'data' AND (record_id ->> 'id')::int IN (20, 21)),
          '21', 'changes of the detached table are not captured, the partitioned table''s still are');
ALTER TABLE wp_w ATTACH PARTITION wp_w_eu FOR VALUES IN ('eu');

-- disable: the triggers go from every partition, each gets its own replica identity back
SELECT audit.disable('wp_w');
SELECT is((SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class
            WHERE relname IN ('wp_w', 'wp_w_eu', 'wp_w_us1', 'wp_w_asia')),
          'wp_w=d,wp_w_asia=d,wp_w_eu=n,wp_w_us1=d',
          'disable: every partition has its own replica identity back, no audit trigger is left')
  FROM (SELECT 1) x
 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'audit\_ext%' AND tgrelid::regclass::text LIKE 'wp\_w%');

SELECT * FROM finish();
SELECT audit.disable('wp_t');
DROP VIEW wp_cmp;
DROP TABLE wp_t, wp_w, wp_mark;
