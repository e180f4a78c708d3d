-- Partitioned tables: all current and future partitions are audited, and
-- events name the partitioned table.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE TABLE measurements (id int, region text, v numeric, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us')
    PARTITION BY RANGE (id);
CREATE TABLE measurements_us_low PARTITION OF measurements_us FOR VALUES FROM (0) TO (1000);
SELECT audit.enable('measurements', mask_columns => '{v}');
SELECT table_name, kind, mask_columns, key_columns FROM audit.audited_tables WHERE table_name LIKE 'measurements%';

-- a partition added later is audited too
CREATE TABLE measurements_ap PARTITION OF measurements FOR VALUES IN ('ap');
CREATE TABLE measurements_other (id int NOT NULL, region text NOT NULL, v numeric);
ALTER TABLE measurements ATTACH PARTITION measurements_other DEFAULT;
SELECT c.relname, array_agg(t.tgname ORDER BY t.tgname) AS triggers
  FROM pg_class c JOIN pg_trigger t ON t.tgrelid = c.oid
 WHERE c.relname LIKE 'measurements%' GROUP BY 1 ORDER BY 1;

SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO measurements VALUES (1, 'eu', 1), (2, 'us', 2), (3, 'ap', 3), (4, 'xx', 4);
INSERT INTO measurements_eu VALUES (5, 'eu', 5);       -- straight into a partition
UPDATE measurements SET v = 10 WHERE id = 2;
UPDATE measurements SET region = 'ap' WHERE id = 1;    -- moves the row to another partition
DELETE FROM measurements WHERE id = 3;
SELECT action, schema_name, table_name, record_id, old_data, new_data, changed_columns
  FROM audit.event WHERE id > :mark ORDER BY id;

-- TRUNCATE of a partition is recorded for that partition
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
TRUNCATE measurements_ap;
SELECT action, table_name FROM audit.event WHERE id > :mark ORDER BY id;

-- A partition of an audited table cannot be configured on its own.
SELECT audit.enable('measurements_eu');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.disable('measurements_eu');
\echo :LAST_ERROR_SQLSTATE

-- Auditing a partition first, then its parent, replaces the partition's own trigger.
CREATE TABLE p2 (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE p2_a PARTITION OF p2 FOR VALUES FROM (0) TO (100);
SELECT audit.enable('p2_a');
SELECT audit.enable('p2');
SELECT table_name FROM audit.audited_tables WHERE table_name LIKE 'p2%' ORDER BY 1;
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO p2 VALUES (1);
SELECT table_name, record_id FROM audit.event WHERE id > :mark;
SELECT audit.disable('p2');
SELECT count(*) AS triggers_left FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relname LIKE 'p2%' AND t.tgname LIKE 'audit_ext%';

-- A table audited on its own cannot be attached to an audited partitioned
-- table (PostgreSQL's own error named a trigger, 42710): a clear 55000 that
-- says what to do; after audit.disable() it attaches, audited as the parent's.
SELECT audit.enable('p2');
CREATE TABLE p2_b (id int PRIMARY KEY);
SELECT audit.enable('p2_b');
ALTER TABLE p2 ATTACH PARTITION p2_b FOR VALUES FROM (100) TO (200);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.disable('p2_b');
ALTER TABLE p2 ATTACH PARTITION p2_b FOR VALUES FROM (100) TO (200);
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO p2 VALUES (150);
SELECT table_name, record_id FROM audit.event WHERE id > :mark AND class = 'data';
SELECT audit.disable('p2');
