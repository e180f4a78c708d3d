-- What one row change records.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE TABLE orders (id int PRIMARY KEY, item text, qty int, price numeric(10,2), note varchar(20));
SELECT audit.enable('public.orders');
RESET client_min_messages;

-- event ids are compared relative to this mark
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset

INSERT INTO orders VALUES (1, 'apple', 3, 1.50, NULL), (2, 'pear', 1, 2, 'ripe');
UPDATE orders SET qty = qty + 1 WHERE id = 1;
UPDATE orders SET note = 'x', price = 9.99 WHERE id = 2;
DELETE FROM orders WHERE id = 2;

SELECT id - :mark AS n, class, action, status, schema_name, table_name, record_id,
       old_data, new_data, changed_columns
  FROM audit.event WHERE id > :mark ORDER BY id;

-- context columns
SELECT count(*) AS events,
       bool_and(db_user = current_user) AS db_user_ok,
       bool_and("session_user" = session_user) AS session_user_ok,
       bool_and(actor = current_user) AS actor_defaults_to_db_user,
       bool_and(backend_pid = pg_backend_pid()) AS pid_ok,
       bool_and(application_name = current_setting('application_name')) AS appname_ok,
       bool_and(client_addr IS NOT DISTINCT FROM inet_client_addr()) AS client_addr_ok,
       bool_and(event_time <= now() + interval '1 minute' AND event_time > now() - interval '1 hour') AS time_ok
  FROM audit.event WHERE id > :mark;

-- one transaction, several statements: same txid, statement_seq counts them
BEGIN;
INSERT INTO orders VALUES (3, 'plum', 1, 1, NULL);
UPDATE orders SET qty = 7 WHERE id = 3;
SELECT count(DISTINCT txid) AS txids, array_agg(statement_seq ORDER BY id) AS seqs,
       bool_and(txid = txid_current()) AS txid_is_current
  FROM audit.event WHERE id > :mark AND record_id = '{"id": 3}';
COMMIT;

-- statement text is stored once per distinct statement, however many rows
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO orders SELECT g, 'bulk', g, g, NULL FROM generate_series(100, 149) g;
SELECT count(*) AS events, count(DISTINCT statement_id) AS statements
  FROM audit.event WHERE id > :mark;
SELECT s.statement_text
  FROM audit.statement s
 WHERE s.statement_id IN (SELECT statement_id FROM audit.event WHERE id > :mark);
UPDATE orders SET qty = 0 WHERE id = 100;
UPDATE orders SET qty = 0 WHERE id = 100;   -- same text again: no new statement row
UPDATE orders SET qty = 1 WHERE id = 100;   -- literals are redacted: the same text too
SELECT count(*) AS statement_rows FROM audit.statement WHERE statement_text LIKE 'UPDATE orders SET qty = ? WHERE id = ?;%';
SELECT e.action, e.changed_columns, s.statement_text
  FROM audit.event_with_statement e JOIN audit.statement s USING (statement_id)
 WHERE e.id > :mark AND e.record_id = '{"id": 100}' ORDER BY e.id;

-- audit_ext.statement_literals = keep stores the text as sent.
SET audit_ext.statement_literals = keep;
UPDATE orders SET qty = 2 WHERE id = 100;
RESET audit_ext.statement_literals;
UPDATE orders SET qty = 3 WHERE id = 100 AND item <> 'it''s -- not a comment' AND qty > -1.5e3;
SELECT s.statement_text
  FROM audit.event e JOIN audit.statement s USING (statement_id)
 WHERE e.id > :mark AND e.record_id = '{"id": 100}' AND e.new_data->>'qty' IN ('2', '3') ORDER BY e.id;
-- every kind of literal the scanner knows is redacted: string, E'', U&'',
-- dollar-quoted, bit string, hex string, integer, numeric
UPDATE orders SET note = 'a' || E'b\n' || U&'\0063' || $q$d$q$ || b'101'::text || x'1F'::text,
                  qty = 4 + 0 WHERE id = 100 AND price > 1.5;
SELECT s.statement_text
  FROM audit.event e JOIN audit.statement s USING (statement_id)
 WHERE e.id > :mark AND e.record_id = '{"id": 100}' AND e.new_data->>'qty' = '4';
-- and only superusers choose
CREATE ROLE regress_literal_user;
SET ROLE regress_literal_user;
SET audit_ext.statement_literals = keep;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE regress_literal_user;

-- An UPDATE that changes nothing is not an event, unless configured.
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
UPDATE orders SET qty = qty WHERE id = 1;
SELECT count(*) AS unchanged_events FROM audit.event WHERE id > :mark;
SET audit_ext.log_unchanged_updates = on;
UPDATE orders SET qty = qty WHERE id = 1;
RESET audit_ext.log_unchanged_updates;
SELECT action, old_data, new_data, changed_columns FROM audit.event WHERE id > :mark;

-- TRUNCATE is one event
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
TRUNCATE orders;
SELECT action, schema_name, table_name, record_id, old_data FROM audit.event WHERE id > :mark;

-- Values of many types become JSON as to_jsonb() makes them.
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE typed (
    id bigint PRIMARY KEY, b bool, i2 smallint, i4 int, i8 bigint, n numeric, nn numeric,
    f4 real, f8 double precision, fnan double precision, t text, c char(3), vc varchar,
    d date, ts timestamp, tstz timestamptz, tm time, iv interval, u uuid, j json, jb jsonb,
    arr int[], tarr text[], m mood, dom posint, comp pair, by bytea, r int4range, ip inet);
SELECT audit.enable('typed');
-- the trail is written in canonical settings whatever the session's (UTC,
-- ISO 8601 intervals): in them, to_jsonb gives the same
SET timezone = 'Europe/Berlin';
SET IntervalStyle = 'postgres_verbose';
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO typed VALUES (
    1, true, 2, 4, 8, 12345678901234567890.123, 'NaN', 1.5, 2.25, 'Infinity', 'tëxt "q"', 'ab', 'v',
    '2026-01-02', '2026-01-02 03:04:05.6', '2026-01-02 03:04:05+02', '10:11:12', '1 day 2 hours',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{"z": null, "a": {"b": 1}}',
    '{1,2,3}', '{x,NULL}', 'happy', 5, ROW(1, 'x'), '\x0102', '[1,5)', '10.0.0.1/32');
SELECT jsonb_pretty(new_data) FROM audit.event WHERE id > :mark;
-- identical to to_jsonb of the row under the canonical settings
SET timezone = 'UTC';
SET IntervalStyle = 'iso_8601';
SELECT e.new_data = to_jsonb(ty.*) AS same_as_to_jsonb
  FROM audit.event e, typed ty WHERE e.id > :mark AND ty.id = 1;
RESET IntervalStyle;
UPDATE typed SET arr = '{1,2,4}', jb = jb || '{"new": true}', comp = ROW(2, 'y'), t = NULL WHERE id = 1;
SELECT changed_columns, old_data, new_data FROM audit.event WHERE id > :mark AND action = 'UPDATE';
RESET timezone;

-- A user with no rights on the audit schema can change an audited table;
-- the events are written anyway, and the user cannot read them.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_plain_user;
RESET client_min_messages;
CREATE ROLE regress_plain_user;
GRANT ALL ON orders TO regress_plain_user;
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
SET ROLE regress_plain_user;
INSERT INTO orders VALUES (500, 'by plain user', 1, 1, NULL);
SELECT count(*) FROM audit.event;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT action, db_user, "session_user", actor, record_id FROM audit.event WHERE id > :mark;

-- Dropping an audited table breaks nothing; its history stays.
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
CREATE TABLE short_lived (id int PRIMARY KEY, v text);
SELECT audit.enable('short_lived');
INSERT INTO short_lived VALUES (1, 'a');
DROP TABLE short_lived;
SELECT action, schema_name, table_name, new_data FROM audit.event
 WHERE id > :mark AND table_name = 'short_lived' ORDER BY id;
SELECT count(*) AS still_listed FROM audit.audited_tables WHERE table_name = 'short_lived';

REVOKE ALL ON orders FROM regress_plain_user;
DROP ROLE regress_plain_user;
