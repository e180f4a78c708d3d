-- What cannot be audited is refused with a clear error and SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE TABLE t_ok (id int PRIMARY KEY, a text, secret text);
CREATE VIEW v_orders AS SELECT 1 AS x;
CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
CREATE SEQUENCE s1;
CREATE TEMP TABLE tmp_t (id int);

SELECT audit.enable('no_such_table');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('v_orders');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('mv');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('s1');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('tmp_t');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('audit.event');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('audit.statement');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', exclude_columns => '{nope}');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', mask_columns => '{Secret}');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', exclude_columns => '{secret}', mask_columns => '{secret}');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', exclude_columns => '{id}');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', mask_columns => '{id}');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('t_ok', exclude_columns => '{ctid}');
\echo :LAST_ERROR_SQLSTATE
-- nothing was left behind by the failed calls
SELECT count(*) AS audited FROM audit.audited_tables WHERE table_name = 't_ok';
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 't_ok'::regclass;

-- disable
SELECT audit.disable('t_ok');
SELECT audit.disable(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.disable('no_such_table');
\echo :LAST_ERROR_SQLSTATE

-- The trigger functions refuse to be misused.
SELECT audit.capture_row();
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE misuse (id int);
CREATE TRIGGER bad BEFORE INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION audit.capture_row();
INSERT INTO misuse VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON misuse;
CREATE TRIGGER bad AFTER INSERT ON misuse FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_row();
INSERT INTO misuse VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON misuse;
CREATE TRIGGER bad AFTER INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION audit.capture_truncate();
INSERT INTO misuse VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON misuse;
-- a trigger argument that is not a text[] literal
CREATE TRIGGER bad AFTER INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION audit.capture_row('not an array');
INSERT INTO misuse VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bad ON misuse;

-- create_partitions checks its argument
SELECT audit.create_partitions(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_partitions(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.create_partitions(2) AS created_again;

-- issue 22: capture => 'wal' (the test cluster has wal_level = replica)
CREATE TABLE wal_err (id int PRIMARY KEY, v text);
CREATE TABLE wal_err_part (id int, v text) PARTITION BY RANGE (id);
SELECT audit.enable('wal_err', capture => 'bogus');
SELECT audit.enable('wal_err', capture => NULL);  -- NULL: keep the mode (trigger for a new table)
SELECT audit.disable('wal_err');
SELECT audit.enable('wal_err_part', capture => 'wal');  -- partitioned tables too (issue 22), with the same requirements
SELECT audit.enable('wal_err', capture => 'wal');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS wal_tables FROM audit.audited_tables WHERE capture = 'wal';
SELECT count(*) AS capture_slots FROM audit.capture_lag;
-- the plugin is read by the capture worker only (the slot would need
-- wal_level = logical anyway): nothing else may call its internals
SET ROLE audit_admin;
SELECT audit.wal_prepare();
RESET ROLE;
SELECT audit.enable('wal_err');
SELECT table_oid, capture FROM audit.audited_tables WHERE table_oid = 'wal_err'::regclass;
SELECT audit.disable('wal_err');
DROP TABLE wal_err, wal_err_part;
