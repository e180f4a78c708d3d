-- pgTAP: dropping audited tables is never silent (issue 19, 7).  DROP
-- TABLE of the last audited table, DROP SCHEMA ... CASCADE with audited
-- tables in it, with audit_ext.log_ddl on or off: one critical ddl event
-- naming the audited tables, flagged so that the shipped audit_disabled
-- rule fires.  A DROP rolled back leaves nothing.  Rolled back.
BEGIN;
SELECT plan(8);
SET LOCAL client_min_messages = warning;

CREATE TABLE da_plain (id int PRIMARY KEY);
CREATE TABLE da_one (id int PRIMARY KEY);
SELECT audit.enable('da_one');
-- the only audited table of the database is da_one (the suite's other tables are audited in other databases)
SELECT is((SELECT count(*)::int FROM audit.audited_tables), 1, 'one audited table');
SELECT max(id) AS m FROM audit.event \gset
DROP TABLE da_plain, da_one;
SELECT is((SELECT count(*)::int FROM audit.event WHERE id > :m), 1, 'DROP TABLE of the last audited table: one event');
SELECT is((SELECT action || ' ' || table_name || ' ' || (detail ->> 'capture_off') || ' ' || (detail -> 'audited_tables_dropped')::text
             FROM audit.event WHERE id > :m),
          'DROP TABLE da_one true ["public.da_one"]', '... critical, naming the audited table (not the plain one)');

CREATE SCHEMA da_s;
CREATE TABLE da_s.a (id int PRIMARY KEY);
CREATE TABLE da_s.b (id int PRIMARY KEY);
SELECT audit.enable('da_s.a');
SELECT audit.enable('da_s.b');
SELECT max(id) AS m FROM audit.event \gset
SAVEPOINT before_drop;
DROP SCHEMA da_s CASCADE;
ROLLBACK TO SAVEPOINT before_drop;
SELECT is((SELECT count(*)::int FROM audit.event WHERE id > :m), 0, 'a DROP rolled back leaves no event');
SET LOCAL audit_ext.log_ddl = off;
SELECT max(id) AS m FROM audit.event \gset
DROP SCHEMA da_s CASCADE;
SELECT is((SELECT count(*)::int FROM audit.event WHERE id > :m AND action = 'DROP SCHEMA'), 1,
          'DROP SCHEMA CASCADE with audited tables, log_ddl off: recorded');
SELECT is((SELECT (detail -> 'audited_tables_dropped')::text FROM audit.event WHERE id > :m AND action = 'DROP SCHEMA'),
          '["da_s.a", "da_s.b"]', '... naming both audited tables');
SELECT ok((SELECT audit.alert_matches(r, e) FROM audit.alert_rules r, audit.event e
            WHERE r.name = 'audit_disabled' AND e.id > :m AND e.action = 'DROP SCHEMA'),
          'the shipped audit_disabled rule matches it');
SELECT is((SELECT count(*)::int FROM audit.audited_tables), 0, 'no table is audited any more');

SELECT * FROM finish();
ROLLBACK;
