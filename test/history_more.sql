-- pgTAP: history and time travel in cases issue 19's tests did not cover
-- (histrev review, after the regression suites of pgMemento, temporal_tables
-- and table_log): a type change with USING run from a function, a key column
-- renamed or retyped, a key deleted and inserted again in one transaction.
-- Each block failed before its fix.  Rolled back.
BEGIN;
SELECT plan(3);
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

SELECT * FROM finish();
ROLLBACK;
