-- pgTAP: the key of a record is the same for capture and for the reading
-- functions (issue 19): a DEFERRABLE primary key identifies records like any
-- primary key, and no column name can capture the SQL the reading functions
-- generate (every alias they use is a column here: t, i, w, o, r, cur,
-- want_row, toid, tid and more).  Rolled back.
BEGIN;
SELECT plan(46);
SET LOCAL client_min_messages = warning;

-- 1. a DEFERRABLE primary key
CREATE TABLE deferred_key (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
SELECT audit.enable('deferred_key');
INSERT INTO deferred_key VALUES (1, 'a'), (2, 'b');
UPDATE deferred_key SET v = 'a2' WHERE id = 1;
SELECT is((SELECT array_agg(DISTINCT record_id::text) FROM audit.event WHERE table_name = 'deferred_key' AND class = 'data'),
          ARRAY['{"id": 1}', '{"id": 2}'], 'a deferrable primary key is the record_id, not the whole row');
SELECT is(audit.key_columns('deferred_key'), ARRAY['id'], 'key_columns() names the same key');
SELECT is((SELECT count(*)::int FROM audit.record_history('deferred_key', '{"id": 1}')), 2,
          'record_history() finds the record''s events');
SELECT is(audit.row_as_of('deferred_key', '{"id": 1}', clock_timestamp()), '{"id": 1, "v": "a2"}'::jsonb,
          'row_as_of() rebuilds the record');
SELECT alike(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'deferred_key' AND action = 'UPDATE')),
            'undid UPDATE event %', 'undo() of an UPDATE works');
SELECT is((SELECT v FROM deferred_key WHERE id = 1), 'a', '... and restored the old value');
-- a key swap inside one transaction, as deferrable keys allow
UPDATE deferred_key SET id = 3 - id;
SELECT is((SELECT string_agg(action || ':' || (record_id ->> 'id'), ',' ORDER BY id) FROM audit.record_history('deferred_key', '{"id": 2}')),
          'INSERT:1,UPDATE:1,UPDATE:1,UPDATE:1',
          'a key swap: history of the record that now has id 2 follows it from id 1 (its own four events; up to the 1.6 review three events of both records)');
SELECT is((SELECT string_agg(action || ':' || (record_id ->> 'id'), ',' ORDER BY id) FROM audit.record_history('deferred_key', '{"id": 1}')),
          'INSERT:2,UPDATE:2', '... and the record that now has id 1 from id 2, without the other''s move out of 1 in the same statement');
SELECT is(audit.row_as_of('deferred_key', '{"id": 1}', clock_timestamp()) ->> 'v', 'b', '... row_as_of() of id 1: the row that has it');

-- 2. columns named after every alias of the generated SQL
CREATE TABLE aliased (
    id int PRIMARY KEY, t text, i text, w text, o text, r text, e text, k text, a text, c text,
    kc text, ev text, cur text, want_row text, toid text, tid text, cands text, rec text, live text,
    keys text, full_row text, state text, fill text, ident text, cols text, vals text, tbl text,
    record_id text, old_data text, new_data text, "select" text, "*" text, "t.*" text
);
SELECT audit.enable('aliased');
INSERT INTO aliased (id, t, w, r, i, o) VALUES (1, 't1', 'w1', 'r1', 'i1', 'o1');
UPDATE aliased SET t = 't2', w = 'w2', r = 'r2' WHERE id = 1;
SELECT is((SELECT count(*)::int FROM audit.record_history('aliased', '{"id": 1}')), 2,
          'record_history() with columns named r, t, w, i, o');
SELECT is(audit.row_as_of('aliased', '{"id": 1}', clock_timestamp()) ->> 'r', 'r2',
          'row_as_of() with those columns');
SELECT alike(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'aliased' AND action = 'UPDATE')),
            'undid UPDATE event %', 'undo() of an UPDATE with those columns');
SELECT is((SELECT t || w || r FROM aliased WHERE id = 1), 't1w1r1', '... restored the values');
DELETE FROM aliased WHERE id = 1;
SELECT alike(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'aliased' AND action = 'DELETE')),
            'undid DELETE event %', 'undo() of a DELETE with those columns');
SELECT is((SELECT t || w || r || i || o FROM aliased WHERE id = 1), 't1w1r1i1o1', '... put the row back');
SELECT alike(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'aliased' AND action = 'INSERT')),
            'undid INSERT event %', 'undo() of an INSERT with those columns');
SELECT is((SELECT count(*)::int FROM aliased), 0, '... deleted the row');
SELECT is((SELECT count(*)::int FROM audit.search(table_name => 'aliased', record_id => '{"id": 1}')), 6,
          'search() by record_id finds all six events (three changes, three undos)');

-- 3. keys whose text depends on session settings
CREATE TABLE ts_key (at timestamptz PRIMARY KEY, v text);
CREATE TABLE iv_key (span interval PRIMARY KEY, v text);
CREATE TABLE fl_key (x float8 PRIMARY KEY, y real, v text);
SELECT audit.enable('ts_key');
SELECT audit.enable('iv_key');
SELECT audit.enable('fl_key');
SET LOCAL TimeZone = 'America/New_York';
SET LOCAL IntervalStyle = 'postgres_verbose';
SET LOCAL extra_float_digits = -3;
INSERT INTO ts_key VALUES ('2026-03-01 12:00:00+00', 'a');
INSERT INTO iv_key VALUES ('1 day 2 hours', 'a');
INSERT INTO fl_key VALUES (0.1::float8 + 0.2::float8, 1.1, 'a');
SET LOCAL TimeZone = 'Asia/Kolkata';
SET LOCAL IntervalStyle = 'sql_standard';
SET LOCAL extra_float_digits = 0;
UPDATE ts_key SET v = 'b';
UPDATE iv_key SET v = 'b';
UPDATE fl_key SET v = 'b';
SET LOCAL TimeZone = 'UTC';
SET LOCAL IntervalStyle = 'iso_8601';
SET LOCAL extra_float_digits = 1;
UPDATE ts_key SET v = 'c';
UPDATE iv_key SET v = 'c';
UPDATE fl_key SET v = 'c';
SELECT is((SELECT count(DISTINCT record_id)::int FROM audit.event WHERE table_name = 'ts_key' AND class = 'data'), 1,
          'a timestamptz key written under three TimeZones has one record_id');
SELECT is((SELECT min(record_id::text) FROM audit.event WHERE table_name = 'ts_key' AND class = 'data'),
          '{"at": "2026-03-01T12:00:00+00:00"}', '... in UTC');
SELECT is((SELECT count(DISTINCT record_id)::int FROM audit.event WHERE table_name = 'iv_key' AND class = 'data'), 1,
          'an interval key written under three IntervalStyles has one record_id, in ISO 8601');
SELECT is((SELECT count(DISTINCT record_id)::int FROM audit.event WHERE table_name = 'fl_key' AND class = 'data'), 1,
          'a float key written under three extra_float_digits has one record_id');
SELECT is((SELECT min(new_data ->> 'x') || ' ' || min(new_data ->> 'y') FROM audit.event WHERE table_name = 'fl_key' AND action = 'INSERT'),
          '0.30000000000000004 1.1', '... the shortest exact decimal, for double and real');
SET LOCAL TimeZone = 'Pacific/Auckland';
SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = -2;
SELECT is((SELECT count(*)::int FROM audit.record_history('ts_key', '{"at": "2026-03-02 01:00:00+13"}')), 3,
          'record_history() from a fourth TimeZone, with the key in its own notation, finds all three events');
SELECT is((SELECT count(*)::int FROM audit.record_history('iv_key', '{"span": "26:00:00"}')), 0,
          'an interval of 26 hours is not the key 1 day 2 hours (no false match)');
SELECT is((SELECT count(*)::int FROM audit.record_history('iv_key', '{"span": "1 day 02:00:00"}')), 3,
          'record_history() of the interval key in another IntervalStyle finds all three events');

-- 4. rows that existed before auditing began: audit.enable(baseline => true)
SET LOCAL TimeZone = 'UTC';
CREATE TABLE existing (id int PRIMARY KEY, v text, secret text, hidden text);
INSERT INTO existing SELECT g, 'v' || g, 's', 'h' FROM generate_series(1, 250) g;
CREATE TABLE existing_parts (id int, v text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE existing_parts_1 PARTITION OF existing_parts FOR VALUES FROM (0) TO (100);
CREATE TABLE existing_parts_2 PARTITION OF existing_parts FOR VALUES FROM (100) TO (1000);
INSERT INTO existing_parts SELECT g, 'p' || g FROM generate_series(1, 150) g;
SELECT audit.enable('existing', exclude_columns => '{hidden}', mask_columns => '{secret}', baseline => true);
SELECT audit.enable('existing_parts', baseline => true);
SELECT is((SELECT count(*)::int FROM audit.event WHERE table_name = 'existing' AND action = 'BASELINE'), 250,
          'baseline => true records one BASELINE event per existing row');
SELECT is((SELECT new_data FROM audit.event WHERE table_name = 'existing' AND action = 'BASELINE' AND record_id = '{"id": 7}'),
          '{"id": 7, "v": "v7", "secret": "[masked]"}'::jsonb, '... with the row, masked and excluded columns applied');
SELECT is((SELECT count(*)::int || '/' || count(DISTINCT schema_name || '.' || table_name)
             FROM audit.event WHERE action = 'BASELINE' AND table_name LIKE 'existing_parts%'), '150/1',
          'a partitioned table: every row of every partition, named by the partitioned table');
SELECT is((SELECT detail ->> 'baseline' FROM audit.event WHERE class = 'ddl' AND action = 'ENABLE AUDIT'
            AND table_name = 'existing' ORDER BY id DESC LIMIT 1), 'true', 'the ENABLE AUDIT event says a baseline was taken');
SELECT pg_sleep(0.01);
UPDATE existing SET v = 'changed' WHERE id = 7;
SELECT is(audit.row_as_of('existing', '{"id": 7}', (SELECT event_time FROM audit.event
                                                      WHERE table_name = 'existing' AND action = 'BASELINE' LIMIT 1)),
          '{"id": 7, "v": "v7", "secret": "[masked]"}'::jsonb,
          'row_as_of() at the baseline: the whole row, though it was never inserted under audit');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('existing', '{"id": 7}')), 'BASELINE,UPDATE',
          'record_history() starts with the BASELINE event');
SELECT throws_ok(format('SELECT audit.undo(%s)', (SELECT id FROM audit.event WHERE table_name = 'existing' AND action = 'BASELINE' AND record_id = '{"id": 8}')),
                 '22023', NULL, 'a BASELINE event cannot be undone (22023)');
SELECT is((SELECT count(*)::int FROM audit.event WHERE table_name = 'deferred_key' AND action = 'BASELINE'), 0,
          'without baseline => true, no BASELINE events');
SELECT ok((SELECT verified FROM audit.verify()), 'the chains verify with the baseline events');
-- the baseline turns rows into JSON with the table owner's code (here a cast
-- to json of its enum type): as the table's owner, never as audit.enable()'s
CREATE ROLE hk_owner;
CREATE TYPE hk_mood AS ENUM ('calm', 'wild');
CREATE TABLE hk_seen (who text);
GRANT INSERT ON hk_seen TO PUBLIC;
CREATE FUNCTION hk_mood_json(m hk_mood) RETURNS json LANGUAGE sql
    AS $$ INSERT INTO public.hk_seen VALUES (current_user) RETURNING to_json(m::text) $$;
CREATE CAST (hk_mood AS json) WITH FUNCTION hk_mood_json(hk_mood);
CREATE TABLE hk_owned (id int PRIMARY KEY, m hk_mood);
INSERT INTO hk_owned VALUES (1, 'wild');
ALTER TABLE hk_owned OWNER TO hk_owner;
SELECT audit.enable('hk_owned', baseline => true);
SELECT is((SELECT string_agg(DISTINCT who, ',') FROM hk_seen), 'hk_owner',
          'the table''s own code ran as the table''s owner during the baseline, not as the extension''s owner');
SELECT is((SELECT new_data FROM audit.event WHERE table_name = 'hk_owned' AND action = 'BASELINE'),
          '{"id": 1, "m": "wild"}'::jsonb, '... and the row is recorded through it');

-- 5. key changes and key reuse: one record, one history; two records, two
CREATE TABLE moving (id int PRIMARY KEY, v text);
SELECT audit.enable('moving');
INSERT INTO moving VALUES (5, 'x-first');             -- record X has key 5
SELECT pg_sleep(0.01);
CREATE TEMP TABLE marks AS SELECT clock_timestamp() AS t1;
UPDATE moving SET v = 'x-second' WHERE id = 5;
DELETE FROM moving WHERE id = 5;                       -- X is gone
INSERT INTO moving VALUES (1, 'y-first');             -- record Y has key 1
SELECT pg_sleep(0.01);
UPDATE marks SET t1 = t1;
ALTER TABLE marks ADD COLUMN t2 timestamptz;
UPDATE marks SET t2 = clock_timestamp();
SELECT pg_sleep(0.01);
UPDATE moving SET id = 5, v = 'y-as-5' WHERE id = 1;  -- Y takes X's old key
UPDATE moving SET v = 'y-later' WHERE id = 5;
SELECT is((SELECT string_agg(action || coalesce(':' || (new_data ->> 'v'), ''), ',' ORDER BY id)
             FROM audit.record_history('moving', '{"id": 5}')),
          'INSERT:y-first,UPDATE:y-as-5,UPDATE:y-later',
          'the history of key 5 is the record that has it now, back through its key 1, without the deleted record that had 5 before');
SELECT is(audit.row_as_of('moving', '{"id": 5}', (SELECT t2 FROM marks)), NULL,
          'row_as_of() of key 5 after X''s delete and before Y took 5: no row had id 5 (not a row that never existed)');
SELECT is(audit.row_as_of('moving', '{"id": 1}', (SELECT t2 FROM marks)), '{"id": 1, "v": "y-first"}'::jsonb,
          'row_as_of() of key 1 then: Y, as it was');
SELECT is(audit.row_as_of('moving', '{"id": 5}', (SELECT t1 FROM marks)), '{"id": 5, "v": "x-first"}'::jsonb,
          'row_as_of() of key 5 before X''s delete: X, the row that had id 5 then');
SELECT is(audit.row_as_of('moving', '{"id": 5}', clock_timestamp()), '{"id": 5, "v": "y-later"}'::jsonb,
          'row_as_of() now: the record with its current key');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('moving', '{"id": 1}')),
          'INSERT,UPDATE,UPDATE', 'asking by its old key 1 gives the same record, forward through the key change');
UPDATE moving SET id = 9 WHERE id = 5;                 -- Y moves on; nothing holds 5 now
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('moving', '{"id": 5}')),
          'INSERT,UPDATE,UPDATE,UPDATE', 'key 5 last belonged to Y: its history, on to key 9');
INSERT INTO moving VALUES (5, 'z');                    -- record Z takes 5
SELECT is((SELECT string_agg(action || ':' || (new_data ->> 'v'), ',' ORDER BY id) FROM audit.record_history('moving', '{"id": 5}')),
          'INSERT:z', 'a record inserted with a reused key starts a history of its own');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('moving', '{"id": 9}')),
          'INSERT,UPDATE,UPDATE,UPDATE', 'Y by its current key 9: its whole history, from key 1 through 5');

SELECT * FROM finish();
ROLLBACK;
