-- audit_ext.actor and audit_ext.require_actor; who may read the trail.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
SELECT audit.enable('accounts');
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset

INSERT INTO accounts VALUES (1, 100);
BEGIN;
SET LOCAL audit_ext.actor = 'jane@corp';
UPDATE accounts SET balance = 90 WHERE id = 1;
COMMIT;
UPDATE accounts SET balance = 80 WHERE id = 1;     -- SET LOCAL ended with the transaction
SET audit_ext.actor = 'svc-batch';
UPDATE accounts SET balance = 70 WHERE id = 1;
RESET audit_ext.actor;
SELECT action, actor, db_user, new_data FROM audit.event WHERE id > :mark ORDER BY id;

-- require_actor: a write without an actor fails, and leaves nothing behind
SET audit_ext.require_actor = on;
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
UPDATE accounts SET balance = 60 WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE accounts;
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM accounts;
BEGIN;
SET LOCAL audit_ext.actor = 'bob@corp';
UPDATE accounts SET balance = 60 WHERE id = 1;
COMMIT;
SELECT action, actor FROM audit.event WHERE id > :mark ORDER BY id;
RESET audit_ext.require_actor;

-- require_actor is for superusers to set (per database or role), not users
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_clerk, regress_reader_user, regress_admin_user, regress_nobody;
RESET client_min_messages;
CREATE ROLE regress_clerk;
GRANT ALL ON accounts TO regress_clerk;
ALTER ROLE regress_clerk SET audit_ext.require_actor = on;
SELECT rolname, setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname = 'regress_clerk';
SET ROLE regress_clerk;
SET audit_ext.require_actor = off;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER ROLE regress_clerk RESET ALL;

-- Reading the trail: audit roles only.
CREATE ROLE regress_reader_user IN ROLE audit_reader;
CREATE ROLE regress_admin_user IN ROLE audit_admin;
CREATE ROLE regress_nobody;
SET ROLE regress_nobody;
SELECT count(*) FROM audit.event;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM audit.statement;
\echo :LAST_ERROR_SQLSTATE
SELECT audit.enable('accounts');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_reader_user;
SELECT count(*) > 0 AS reader_sees_events FROM audit.event;
SELECT count(*) > 0 AS reader_sees_statements FROM audit.statement;
SELECT count(*) >= 1 AS reader_sees_config FROM audit.audited_tables;
INSERT INTO audit.event (event_time, class, action) VALUES (now(), 'data', 'INSERT');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.disable('accounts');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- audit_admin configures auditing but cannot edit the trail
SET ROLE regress_admin_user;
SELECT audit.enable('accounts', exclude_columns => '{balance}');
DELETE FROM audit.event;
\echo :LAST_ERROR_SQLSTATE
UPDATE audit.event SET actor = 'someone else';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audit.event;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT exclude_columns FROM audit.audited_tables WHERE table_name = 'accounts';

REVOKE ALL ON accounts FROM regress_clerk;
DROP ROLE regress_clerk, regress_reader_user, regress_admin_user, regress_nobody;
