-- pgTAP: documented behaviour that had no test of its own (issue 24, item 4):
-- audit_ext.log_statement_text = off, audit_ext.max_statement_length (texts
-- are cut), TRUNCATE of a partitioned root (one event per table).  One
-- transaction, rolled back.
BEGIN;
SELECT plan(12);
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE mark (id bigint);
CREATE FUNCTION pg_temp.since() RETURNS bigint LANGUAGE sql AS 'SELECT id FROM mark';
CREATE TABLE dt (id int PRIMARY KEY, v text);
SELECT audit.enable('dt');
INSERT INTO mark SELECT coalesce(max(id), 0) FROM audit.event;

-- audit_ext.log_statement_text = off: events, but no statement text
-- (reference.md: "Store the SQL text of the statements that changed audited tables")
SET LOCAL audit_ext.log_statement_text = off;
CREATE TEMP TABLE texts_before AS SELECT count(*) AS n FROM audit.statement;
INSERT INTO dt VALUES (1, 'log_statement_text off');
UPDATE dt SET v = 'still off' WHERE id = 1;
SELECT is((SELECT array_agg(action || ':' || (statement_id IS NULL) ORDER BY id) FROM audit.event
            WHERE id > pg_temp.since() AND table_name = 'dt'),
          ARRAY['INSERT:true', 'UPDATE:true'], 'log_statement_text = off: the events are recorded without a statement id');
SELECT is((SELECT count(*) FROM audit.statement), (SELECT n FROM texts_before),
          'log_statement_text = off: no statement text is stored');
SELECT is((SELECT count(*) FROM audit.statement WHERE statement_text LIKE '%log_statement_text off%'), 0::bigint,
          'log_statement_text = off: the text is nowhere in audit.statement');
RESET audit_ext.log_statement_text;
INSERT INTO dt VALUES (2, 'on again');
SELECT is((SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id)
            WHERE e.id > pg_temp.since() AND e.table_name = 'dt' AND e.record_id = '{"id": 2}'),
          'INSERT INTO dt VALUES (?, ?);', 'log_statement_text back on: the next statement has its text');

-- audit_ext.max_statement_length (minimum 64 bytes): longer texts are cut at
-- a character boundary (reference.md: "Longest statement text stored, in
-- bytes; longer texts are cut").
SET LOCAL audit_ext.max_statement_length = 64;
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
UPDATE dt SET v = v || v WHERE id = 1 AND id IS NOT NULL AND v IS NOT NULL AND id IS NOT NULL;
SELECT is((SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id)
            WHERE e.id > pg_temp.since() AND e.table_name = 'dt'),
          'UPDATE dt SET v = v || v WHERE id = ? AND id IS NOT NULL AND v I',
          'max_statement_length = 64: the text is cut (the cut text, literals redacted)');
-- with literals kept, the cut is at a character boundary, never in the middle of a multibyte character
SET LOCAL audit_ext.statement_literals = keep;
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
UPDATE dt SET v = 'ééééééééééééééééééééééééééééééééééééééééééé' WHERE id = 1;
SELECT is((SELECT octet_length(s.statement_text) || ':' || s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id)
            WHERE e.id > pg_temp.since() AND e.table_name = 'dt'),
          '63:UPDATE dt SET v = ''éééééééééééééééééééééé',
          'max_statement_length = 64, literals kept: cut to 63 bytes, whole characters only');
SET LOCAL audit_ext.statement_literals = redact;
-- A cut that falls inside a string literal or a comment: the text is redacted
-- first and then cut (cut first, it could not be scanned and was lost).
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
UPDATE dt SET v = 'a long value, so that the cut at 64 bytes falls inside this literal' WHERE id = 2;
SELECT isnt((SELECT statement_id FROM audit.event WHERE id > pg_temp.since() AND table_name = 'dt'), NULL,
            'max_statement_length: a text cut inside a string literal is still stored (cut, redacted)');
SELECT is((SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id)
            WHERE e.id > pg_temp.since() AND e.table_name = 'dt'),
          'UPDATE dt SET v = ? WHERE id = ?;', '... redacted first, then cut: the whole statement, its literals as ?');
RESET audit_ext.max_statement_length;

-- TRUNCATE of a partitioned root: one event per table (the root and every
-- partition, sub-partitions included), each naming its table.
CREATE TABLE dm (id int, region text) PARTITION BY LIST (region);
CREATE TABLE dm_us PARTITION OF dm FOR VALUES IN ('us') PARTITION BY RANGE (id);
CREATE TABLE dm_us_low PARTITION OF dm_us FOR VALUES FROM (0) TO (100);
CREATE TABLE dm_eu PARTITION OF dm FOR VALUES IN ('eu');
SELECT audit.enable('dm');
INSERT INTO dm VALUES (1, 'us'), (2, 'eu');
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
TRUNCATE dm;
SELECT is((SELECT array_agg(table_name ORDER BY table_name) FROM audit.event WHERE id > pg_temp.since() AND action = 'TRUNCATE'),
          ARRAY['dm', 'dm_eu', 'dm_us', 'dm_us_low']::text[], 'TRUNCATE of a partitioned root: one TRUNCATE event per table');
SELECT is((SELECT count(DISTINCT statement_id) || ':' || count(DISTINCT txid) || ':' || bool_and(record_id IS NULL)
             FROM audit.event WHERE id > pg_temp.since() AND action = 'TRUNCATE'),
          '1:1:true', 'all of them from the one statement, in one transaction, without a record id');
SELECT is((SELECT count(*) FROM audit.event WHERE id > pg_temp.since() AND action <> 'TRUNCATE'), 0::bigint,
          'and no row events (TRUNCATE does not fire row triggers)');
-- a TRUNCATE of a sub-partitioned partition: that partition and its own partitions
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
TRUNCATE dm_us;
SELECT is((SELECT array_agg(table_name ORDER BY table_name) FROM audit.event WHERE id > pg_temp.since() AND action = 'TRUNCATE'),
          ARRAY['dm_us', 'dm_us_low']::text[], 'TRUNCATE of a partition: it and its own partitions, not the root');

SELECT * FROM finish();
ROLLBACK;
