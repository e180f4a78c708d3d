-- pgTAP: behaviour of the capture path inside one transaction (rolled back).
BEGIN;
SELECT plan(28);

CREATE TABLE items (id int PRIMARY KEY, v text, n int);
SELECT audit.enable('items');
CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;

-- Bulk statements: more events than one buffer flush holds.
INSERT INTO items SELECT g, 'v' || g, g FROM generate_series(1, 2500) g;
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND table_name = 'items'),
          2500::bigint, 'a 2,500-row INSERT records 2,500 events, visible right after the statement');
SELECT is((SELECT count(DISTINCT record_id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          2500::bigint, 'each row has its own record id');
SELECT ok((SELECT bool_and(new_data ? 'id' AND new_data ? 'v' AND new_data ? 'n')
             FROM audit.event WHERE id > (SELECT id FROM mark)), 'every INSERT event has the whole new row');
UPDATE items SET n = n + 1;
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND action = 'UPDATE'),
          2500::bigint, 'a 2,500-row UPDATE records 2,500 events');
SELECT ok((SELECT bool_and(changed_columns = '{n}' AND (new_data->>'n')::int = (old_data->>'n')::int + 1)
             FROM audit.event WHERE id > (SELECT id FROM mark) AND action = 'UPDATE'),
          'UPDATE events hold only the changed column, old and new');
SELECT is((SELECT count(DISTINCT statement_id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          2::bigint, 'two statements, two statement texts');
SELECT is((SELECT count(DISTINCT event_time) FROM audit.event WHERE id > (SELECT id FROM mark) AND action = 'UPDATE'),
          1::bigint, 'event_time is the statement start time: one value per statement');

-- Savepoints: ROLLBACK TO removes the events of what it undid, and only those.
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
SAVEPOINT a;
INSERT INTO items VALUES (10001, 'kept', 0);
SAVEPOINT b;
INSERT INTO items SELECT g, 'undone', 0 FROM generate_series(20001, 21500) g;
ROLLBACK TO b;
INSERT INTO items VALUES (10002, 'kept too', 0);
RELEASE a;
SELECT is((SELECT array_agg(record_id->>'id' ORDER BY id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          ARRAY['10001', '10002'], 'events of a rolled-back savepoint are gone, the others stay');

-- A PL/pgSQL exception block is a subtransaction too.
CREATE FUNCTION pg_temp.try_insert(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO items VALUES (i, 'in block', 0);
    IF i % 2 = 0 THEN RAISE EXCEPTION 'even'; END IF;
    RETURN 'ok';
EXCEPTION WHEN raise_exception THEN
    RETURN 'rolled back';
END $$;
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
SELECT is((SELECT array_agg(pg_temp.try_insert(g) ORDER BY g) FROM generate_series(30001, 30004) g),
          ARRAY['ok', 'rolled back', 'ok', 'rolled back'], 'exception blocks ran');
SELECT is((SELECT array_agg(record_id->>'id' ORDER BY id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          ARRAY['30001', '30003'], 'only the inserts that survived their exception block have events');
SELECT is((SELECT array_agg(id::text ORDER BY id) FROM items WHERE id BETWEEN 30001 AND 30004),
          ARRAY['30001', '30003'], 'and the table agrees');

-- An audited change made by a trigger of another table is captured too.
CREATE TABLE item_log_source (id int);
CREATE FUNCTION pg_temp.touch_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE items SET v = 'touched' WHERE id = NEW.id; RETURN NEW; END $$;
CREATE TRIGGER touch AFTER INSERT ON item_log_source FOR EACH ROW EXECUTE FUNCTION pg_temp.touch_item();
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
INSERT INTO item_log_source VALUES (1), (2);
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND new_data->>'v' = 'touched'),
          2::bigint, 'changes made by another table''s trigger are captured');

-- COPY FROM fires the row trigger outside the executor: still captured.
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
CREATE TEMP TABLE copy_src AS SELECT g AS id, 'copied' AS v, 1 AS n FROM generate_series(40001, 40010) g;
COPY (SELECT * FROM copy_src) TO '/tmp/audit_ext_copy_test.csv' WITH (FORMAT csv);
COPY items FROM '/tmp/audit_ext_copy_test.csv' WITH (FORMAT csv);
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND new_data->>'v' = 'copied'),
          10::bigint, 'COPY FROM is captured row by row');

-- INSERT ... ON CONFLICT DO UPDATE records what really happened.
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
INSERT INTO items VALUES (1, 'upserted', 1), (50001, 'new', 1)
    ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;
SELECT is((SELECT array_agg(action || ':' || (record_id->>'id') ORDER BY id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          ARRAY['UPDATE:1', 'INSERT:50001'], 'upsert: one UPDATE event and one INSERT event');

-- MERGE
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
MERGE INTO items t USING (VALUES (2, 'merged'), (60001, 'merged new')) s(id, v) ON t.id = s.id
  WHEN MATCHED THEN UPDATE SET v = s.v
  WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v, 0);
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.event WHERE id > (SELECT id FROM mark)),
          ARRAY['UPDATE', 'INSERT'], 'MERGE is captured');

-- Event ids follow capture order: statements of a transaction interleaved on
-- one row and several, rows of one statement in the order it wrote them
-- (in the test's one transaction).
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
INSERT INTO items VALUES (81001, 'a', 0);
UPDATE items SET n = 1 WHERE id = 81001;
INSERT INTO items SELECT g, 'b', 0 FROM generate_series(81004, 81002, -1) g;
DELETE FROM items WHERE id = 81003;
UPDATE items SET n = 2 WHERE id = 81001;
SELECT is((SELECT array_agg(action || ':' || (record_id->>'id') || ':' || coalesce(new_data->>'n', '-') ORDER BY id)
             FROM audit.event WHERE id > (SELECT id FROM mark)),
          ARRAY['INSERT:81001:0', 'UPDATE:81001:1', 'INSERT:81004:0', 'INSERT:81003:0', 'INSERT:81002:0',
                'DELETE:81003:-', 'UPDATE:81001:2'],
          'event ids follow capture order (statements and the rows within one)');

-- TOAST: a large value is captured whole; an UPDATE of another column does not copy it.
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
INSERT INTO items VALUES (70001, repeat('x', 2000000), 0);
UPDATE items SET n = 5 WHERE id = 70001;
SELECT is((SELECT length(new_data->>'v') FROM audit.event WHERE id > (SELECT id FROM mark) AND action = 'INSERT'),
          2000000, 'a 2 MB value is captured whole');
SELECT is((SELECT changed_columns FROM audit.event WHERE id > (SELECT id FROM mark) AND action = 'UPDATE'),
          '{n}'::text[], 'an unchanged TOASTed value is not reported as changed');

-- Columns added and dropped after enabling.
ALTER TABLE items ADD COLUMN extra text;
ALTER TABLE items DROP COLUMN n;
TRUNCATE mark; INSERT INTO mark SELECT max(id) FROM audit.event;
INSERT INTO items VALUES (80001, 'after alter', 'more');
SELECT is((SELECT new_data FROM audit.event WHERE id > (SELECT id FROM mark)),
          '{"id": 80001, "v": "after alter", "extra": "more"}'::jsonb, 'added and dropped columns are followed');

-- Rows whose month has no partition go to the default partition, and
-- create_partitions moves them into the right partition.
INSERT INTO audit.event (event_time, class, action)
    VALUES (date_trunc('month', now()) + interval '5 months 3 days', 'system', 'TEST');
SELECT is((SELECT count(*) FROM audit.event_system_default WHERE action = 'TEST'), 1::bigint,
          'an event beyond the last partition lands in the default partition');
SELECT cmp_ok(audit.create_partitions(6), '>=', 6, 'create_partitions makes the missing months');
SELECT is((SELECT count(*) FROM audit.event_system_default WHERE action = 'TEST'), 0::bigint,
          'the default partition is emptied');
SELECT is((SELECT tableoid::regclass::text FROM audit.event WHERE action = 'TEST'),
          'audit.event_system_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months', 'YYYYMM'),
          'the event now lives in its month''s partition');
SELECT is((SELECT count(*) FROM pg_depend d WHERE d.objid = ('audit.event_system_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months', 'YYYYMM'))::regclass
              AND d.deptype = 'e'), 0::bigint, 'partitions made at run time are not extension members');

-- More distinct strings (actors here) than the writer caches (32): the cache
-- must never free a string the event being built still points at (the event
-- then recorded another string's bytes, or crashed the server on 16+).
CREATE TEMP TABLE mark_actors AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        PERFORM set_config('audit_ext.actor', 'actor_' || lpad(i::text, 3, '0'), true);
        UPDATE items SET v = 'v' || i WHERE id = 1;
    END LOOP;
END $$;
SELECT is((SELECT array_agg(actor || '/' || class || '/' || action || '/' || status ORDER BY id)
             FROM audit.event WHERE id > (SELECT id FROM mark_actors)),
          (SELECT array_agg('actor_' || lpad(i::text, 3, '0') || '/data/UPDATE/success' ORDER BY i)
             FROM generate_series(1, 100) i),
          '100 distinct actors: each event has its own actor, class, action and status');
RESET audit_ext.actor;

-- Record history uses the GIN index on record_id.
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; result text := '';
BEGIN
    FOR r IN EXECUTE 'EXPLAIN ' || q LOOP result := result || r || E'\n'; END LOOP;
    RETURN result;
END $$;
SELECT is((SELECT count(*) FROM audit.event WHERE table_name = 'items' AND record_id @> '{"id": 70001}'), 2::bigint,
          'a record''s events are found by record_id containment');
SELECT matches(pg_temp.plan_of($$SELECT * FROM audit.event WHERE table_name = 'items' AND record_id @> '{"id": 70001}'$$),
               'record_idx', 'record lookups use the record_id GIN index');

-- DDL on the store after writing in the same transaction: the writer's
-- open relations do not get in the way.
INSERT INTO items VALUES (90001, 'before drop', NULL);
SELECT lives_ok('DROP EXTENSION audit_ext CASCADE', 'the extension can be dropped right after audited writes');

SELECT * FROM finish();
ROLLBACK;
