-- pgTAP: history and time travel in cases issue 19's tests did not cover
-- (histrev review, after the regression suites of pgMemento, temporal_tables
-- and table_log): a type change with USING run from a function, a key column
-- renamed or retyped, a key deleted and inserted again in one transaction.
-- Each block failed before its fix.  Rolled back.
BEGIN;
SELECT plan(32);
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE moment (name text PRIMARY KEY, at timestamptz);
CREATE FUNCTION pg_temp.at(n text) RETURNS timestamptz LANGUAGE sql AS $$ SELECT at FROM moment WHERE name = n $$;
CREATE FUNCTION pg_temp.mark(n text) RETURNS void LANGUAGE sql
    AS $$ SELECT pg_sleep(0.002); INSERT INTO moment VALUES (n, clock_timestamp()); SELECT pg_sleep(0.002) $$;

-- 1. ALTER COLUMN ... TYPE ... USING run by a migration function: the
-- statement the client sent (SELECT migrate()) holds no USING, and the
-- conversion was taken for the type's own cast (row_as_of said 7, the row
-- held 700)
CREATE TABLE hm_using (id int PRIMARY KEY, d int, e int);
SELECT audit.enable('hm_using');
INSERT INTO hm_using VALUES (1, 7, 8);
CREATE FUNCTION hm_migrate() RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN ALTER TABLE hm_using ALTER COLUMN d TYPE bigint USING d * 100, ALTER COLUMN e TYPE bigint; END $$;
SELECT hm_migrate();
SELECT pg_temp.mark('u1');
SELECT is(audit.row_as_of('hm_using', '{"id": 1}', pg_temp.at('u1')), '{"id": 1, "d": "[unknown]", "e": 8}'::jsonb,
          'a type change USING an expression run inside a function: "[unknown]", not the cast''s value (the other column, cast, is known)');
SELECT is((SELECT string_agg(column_name || ':' || converted, ',' ORDER BY column_name) FROM audit.audited_column_history
            WHERE table_identity = audit.table_identity('hm_using') AND converted IS NOT NULL),
          'd:using,e:cast', 'audited_column_history says which column was converted how');
-- the word "using" elsewhere in the statement does not make a cast unknown
ALTER TABLE hm_using ALTER COLUMN e TYPE numeric /* not using anything */;
SELECT is((SELECT converted FROM audit.audited_column_history
            WHERE table_identity = audit.table_identity('hm_using') AND column_name = 'e' AND data_type = 'numeric'),
          'cast', 'a comment saying "using" is not a USING clause');

-- 2. a key taken by an UPDATE after the record that had it was deleted,
-- with no event under the key since: the history of the key was the deleted
-- record's, and row_as_of() said NULL for a row in the table
CREATE TABLE hm_take (id int PRIMARY KEY, v text);
SELECT audit.enable('hm_take');
INSERT INTO hm_take VALUES (2, 'x'), (3, 'y');
DELETE FROM hm_take WHERE id = 2;
SELECT pg_temp.mark('k1');
UPDATE hm_take SET id = 2 WHERE id = 3;
SELECT is((SELECT string_agg(action || ':' || (record_id ->> 'id'), ',' ORDER BY id) FROM audit.record_history('hm_take', '{"id": 2}')),
          'INSERT:3,UPDATE:3', 'a key taken over by an UPDATE: the history of the record that has it now');
SELECT is(audit.row_as_of('hm_take', '{"id": 2}', clock_timestamp()), '{"id": 2, "v": "y"}'::jsonb,
          '... row_as_of() now: the row in the table');
SELECT is(audit.row_as_of('hm_take', '{"id": 2}', pg_temp.at('k1')), NULL,
          '... and between the DELETE and the UPDATE: no row had the key');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('hm_take', '{"id": 3}')),
          'INSERT,UPDATE', '... asked by its old key: the same record');

-- 3. a key column renamed, and a key column's type changed: events before
-- the change carry the key under its old name or in its old type, and the
-- history of the record began at its first event after the change (an
-- UPDATE), without its INSERT
CREATE TABLE hm_kren (id int, sub int, v text, PRIMARY KEY (id, sub));
SELECT audit.enable('hm_kren');
INSERT INTO hm_kren VALUES (1, 1, 'a'), (1, 2, 'other');
SELECT pg_temp.mark('r0');
ALTER TABLE hm_kren RENAME COLUMN sub TO part;
SELECT pg_temp.mark('r1');
UPDATE hm_kren SET v = 'b' WHERE part = 1;
SELECT is((SELECT string_agg(action || ':' || record_id::text, ',' ORDER BY id) FROM audit.record_history('hm_kren', '{"id": 1, "part": 1}')),
          'INSERT:{"id": 1, "sub": 1},UPDATE:{"id": 1, "part": 1}',
          'a renamed key column: the history holds the events recorded under the old name');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('hm_kren', '{"id": 1, "part": 2}')),
          'INSERT', '... also for a record with no event since the rename');
SELECT is(audit.row_as_of('hm_kren', '{"id": 1, "part": 1}', pg_temp.at('r0')), '{"id": 1, "sub": 1, "v": "a"}'::jsonb,
          '... row_as_of() before the rename: the row under the names of then');
SELECT is(audit.row_as_of('hm_kren', '{"id": 1, "part": 1}', pg_temp.at('r1')), '{"id": 1, "part": 1, "v": "a"}'::jsonb,
          '... between the rename and the UPDATE: the whole row as inserted, under the new name');

CREATE TABLE hm_ktype (id int PRIMARY KEY, v text);
SELECT audit.enable('hm_ktype');
INSERT INTO hm_ktype VALUES (1, 'a'), (2, 'b');
SELECT pg_temp.mark('y0');
ALTER TABLE hm_ktype ALTER COLUMN id TYPE text;
SELECT pg_temp.mark('y1');
UPDATE hm_ktype SET v = 'a2' WHERE id = '1';
SELECT is((SELECT string_agg(action || ':' || record_id::text, ',' ORDER BY id) FROM audit.record_history('hm_ktype', '{"id": "1"}')),
          'INSERT:{"id": 1},UPDATE:{"id": "1"}',
          'a key column whose type changed (int to text): the history holds the events recorded in the old type');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('hm_ktype', '{"id": "2"}')),
          'INSERT', '... also for a record with no event since');
SELECT is(audit.row_as_of('hm_ktype', '{"id": "1"}', pg_temp.at('y0')), '{"id": 1, "v": "a"}'::jsonb,
          '... row_as_of() before the change: the row in the types of then');
SELECT is(audit.row_as_of('hm_ktype', '{"id": "1"}', pg_temp.at('y1')), '{"id": "1", "v": "a"}'::jsonb,
          '... after the change: converted as ALTER TYPE did');
SELECT is(audit.row_as_of('hm_ktype', '{"id": "2"}', clock_timestamp()), '{"id": "2", "v": "b"}'::jsonb,
          '... and now, for the record with no event since');
-- a key converted USING an expression cannot be followed back: the history
-- starts after the change, as the trail cannot tell which old key it was
ALTER TABLE hm_ktype ALTER COLUMN id TYPE int USING (id::int * 10);
UPDATE hm_ktype SET v = 'a3' WHERE id = 10;
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('hm_ktype', '{"id": 10}')),
          'UPDATE', 'a key converted USING an expression: the history starts after the change (documented limit)');

-- ... and a table without a key, whose record is its whole row: a rename or
-- a type change of any column split its history the same way
CREATE TABLE hm_kl (a int, b text, c int);
SELECT audit.enable('hm_kl');
INSERT INTO hm_kl VALUES (1, 'x', NULL);
UPDATE hm_kl SET b = 'w';
ALTER TABLE hm_kl RENAME b TO bb;
ALTER TABLE hm_kl ALTER c TYPE bigint;
ALTER TABLE hm_kl ALTER a TYPE text;
UPDATE hm_kl SET bb = 'y';
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('hm_kl', '{"a": "1", "bb": "y", "c": null}')),
          'INSERT,UPDATE,UPDATE', 'keyless: the history goes back across a rename and type changes');
SELECT is(audit.row_as_of('hm_kl', '{"a": "1", "bb": "y", "c": null}', clock_timestamp()), '{"a": "1", "bb": "y", "c": null}'::jsonb,
          '... and row_as_of() rebuilds the row now');

-- 4. undo of an UPDATE whose old value no longer fits the column (an enum
-- label renamed since): reading.md promises 55000; it failed with the input
-- function's own 22P02, and the same for a DELETE over a row forced back
CREATE TYPE hm_mood AS ENUM ('sad', 'ok');
CREATE TABLE hm_enum (id int PRIMARY KEY, m hm_mood);
SELECT audit.enable('hm_enum');
INSERT INTO hm_enum VALUES (1, 'sad'), (2, 'sad');
UPDATE hm_enum SET m = 'ok' WHERE id = 1;
DELETE FROM hm_enum WHERE id = 2;
INSERT INTO hm_enum VALUES (2, 'ok');
ALTER TYPE hm_mood RENAME VALUE 'sad' TO 'unhappy';
SELECT throws_ok(format('SELECT audit.undo(%s)', (SELECT max(id) FROM audit.event WHERE table_name = 'hm_enum' AND action = 'UPDATE')),
                 '55000', NULL, 'undo of an UPDATE whose old value no longer fits its column: 55000, as documented');
SELECT throws_ok(format('SELECT audit.undo(%s, force => true)', (SELECT max(id) FROM audit.event WHERE table_name = 'hm_enum' AND action = 'DELETE')),
                 '55000', NULL, '... and of a DELETE forced over the row inserted since');
SELECT is((SELECT string_agg(id || ':' || m, ',' ORDER BY id) FROM hm_enum), '1:ok,2:ok', '... nothing changed');
-- the same DELETE undone by re-inserting the row (the key is free again)
DELETE FROM hm_enum WHERE id = 2;
SELECT throws_ok(format('SELECT audit.undo(%s)', (SELECT min(id) FROM audit.event WHERE table_name = 'hm_enum' AND action = 'DELETE')),
                 '55000', NULL, '... and of a DELETE undone by re-inserting the row');
SELECT is((SELECT string_agg(id || ':' || m, ',' ORDER BY id) FROM hm_enum), '1:ok', '... nothing inserted');
SELECT alike(audit.undo((SELECT max(id) FROM audit.event WHERE table_name = 'hm_enum' AND action = 'DELETE')),
            'undid DELETE event % re-inserted the row %', '... a DELETE whose values fit is re-inserted');
SELECT is((SELECT string_agg(id || ':' || m, ',' ORDER BY id) FROM hm_enum), '1:ok,2:ok', '... the row is back');
-- a trigger that skips the re-insert: an error, not a false "re-inserted"
CREATE FUNCTION pg_temp.hm_skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
DELETE FROM hm_enum WHERE id = 2;
CREATE TRIGGER hm_skip BEFORE INSERT ON hm_enum FOR EACH ROW EXECUTE FUNCTION pg_temp.hm_skip();
SELECT throws_ok(format('SELECT audit.undo(%s)', (SELECT max(id) FROM audit.event WHERE table_name = 'hm_enum' AND action = 'DELETE')),
                 '55000', 'cannot undo this DELETE: no row was inserted into public.hm_enum',
                 '... a DELETE whose re-insert a trigger skips: 55000');
DROP TRIGGER hm_skip ON hm_enum;

-- 5. TRUNCATE, then a new row with the key: row_as_of() between the two
-- showed the truncated row (the lookup of the TRUNCATE that removed a record
-- only ran when the key was not in the table now)
CREATE TABLE hm_trunc (id int PRIMARY KEY, v text);
SELECT audit.enable('hm_trunc');
INSERT INTO hm_trunc VALUES (1, 'a');
TRUNCATE hm_trunc;
SELECT pg_temp.mark('t1');
INSERT INTO hm_trunc VALUES (1, 'b');
SELECT is(audit.row_as_of('hm_trunc', '{"id": 1}', pg_temp.at('t1')), NULL,
          'row_as_of() after a TRUNCATE and before the key was inserted again: no row');
SELECT is(audit.row_as_of('hm_trunc', '{"id": 1}', (SELECT event_time FROM audit.event WHERE table_name = 'hm_trunc' AND action = 'TRUNCATE')), NULL,
          '... also at the TRUNCATE''s own time');
SELECT is(audit.row_as_of('hm_trunc', '{"id": 1}', clock_timestamp()), '{"id": 1, "v": "b"}'::jsonb, '... and the new row after');

-- 6. an UPDATE and ALTER ... TYPE ... USING sent as one query string (a
-- migration file run in one Exec): both have the same statement start, and
-- the value the UPDATE wrote was taken as written after the conversion
-- (row_as_of said 7; the table held 700)
CREATE TABLE hm_multi (id int PRIMARY KEY, d int);
SELECT audit.enable('hm_multi');
INSERT INTO hm_multi VALUES (1, 1);
SELECT pg_temp.mark('m0');
DO $$ BEGIN
    -- one top-level statement, as one query string is: one statement_timestamp()
    UPDATE hm_multi SET d = 7;
    ALTER TABLE hm_multi ALTER COLUMN d TYPE bigint USING d * 100;
END $$;
SELECT is(audit.row_as_of('hm_multi', '{"id": 1}', clock_timestamp()), '{"id": 1, "d": "[unknown]"}'::jsonb,
          'an UPDATE and a USING conversion in one statement start: "[unknown]", not the value before the conversion');
SELECT is(audit.row_as_of('hm_multi', '{"id": 1}', pg_temp.at('m0')), '{"id": 1, "d": 1}'::jsonb,
          '... and the value before both');

SELECT * FROM finish();
ROLLBACK;
