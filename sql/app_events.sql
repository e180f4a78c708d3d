-- Application events (audit.log_event, class app), the role audit_writer,
-- every error of the SQL surface; digest columns (audit.enable(digest_columns)).
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset

-- the documented actions and their default risk
SELECT action, default_risk, counted_as FROM audit.app_actions() ORDER BY 1;

-- written in the caller's transaction: an id comes back, the event is class app
SELECT audit.log_event('LOGIN', detail => '{"method": "password"}') IS NOT NULL AS got_id;
SET audit_ext.actor = 'jane@corp';
SELECT audit.log_event('UPDATE', 'Customer', '{"id": 7}',
                       old_value => '{"name": "Ann", "tier": 1}',
                       new_value => '{"name": "Anne", "tier": 1, "vip": true}') IS NOT NULL AS got_id;
SELECT audit.log_event('REPORT_GENERATED', 'Report', '{"id": "sales-q1"}') IS NOT NULL AS got_id;
SELECT audit.log_event('CUSTOM THING_42', status => 'failure') IS NOT NULL AS got_id;
RESET audit_ext.actor;
BEGIN;
SELECT audit.log_event('EXPORT', 'Customer') IS NOT NULL AS got_id;
ROLLBACK;                                   -- rolled back with the transaction
SELECT class, action, status, actor, schema_name, table_name, record_id, old_data, new_data,
       changed_columns, detail, chain_seq IS NOT NULL AS chained
  FROM audit.event WHERE id > :mark ORDER BY id;

-- the reading functions show them
SELECT table_name, column_name, old_value, new_value FROM audit.changes
 WHERE event_id > :mark ORDER BY event_id, column_name;
SELECT action, table_name FROM audit.record_history(NULL, 'Customer', '{"id": 7}');
SELECT action FROM audit.search(action => 'REPORT_GENERATED', class => 'app');
SELECT action FROM audit.search(class => 'app', table_name => 'Customer');
SELECT reports_generated, actions_by_table FROM audit.user_activity('jane@corp');

-- errors: each argument named, 22023
SELECT audit.log_event(NULL);
SELECT audit.log_event('');
SELECT audit.log_event('login');
SELECT audit.log_event('LOGIN  TWICE');
SELECT audit.log_event('A_VERY_LONG_ACTION_NAME_OVER_THIRTY_ONE');
SELECT audit.log_event('LOGIN', entity => '');
SELECT audit.log_event('LOGIN', entity => repeat('x', 64));
SELECT audit.log_event('LOGIN', record_id => '{}');
SELECT audit.log_event('LOGIN', record_id => '42');
SELECT audit.log_event('LOGIN', status => 'ok');
SELECT audit.log_event('LOGIN', status => NULL);
SELECT audit.log_event('LOGIN', risk => 'severe');
SELECT audit.log_event('LOGIN', detail => '[1, 2]');
-- survive_rollback: a queued event is at most 1 kB of JSON (54000)
SELECT audit.log_event('IMPORT', new_value => jsonb_build_object('blob', repeat('x', 2000)),
                       survive_rollback => true);

-- who may call it: audit_writer (and audit_admin, a member), nobody else
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_app, regress_stranger;
RESET client_min_messages;
CREATE ROLE regress_app;
CREATE ROLE regress_stranger;
GRANT audit_writer TO regress_app;
SELECT pg_has_role('audit_admin', 'audit_writer', 'MEMBER') AS admin_is_writer;
SET ROLE regress_stranger;
SELECT audit.log_event('LOGIN');
RESET ROLE;
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
SET ROLE regress_app;
SELECT audit.log_event('LOGIN_FAILED', 'User', '{"id": 3}', status => 'failure') IS NOT NULL AS got_id;
-- an application cannot write the trail by other means
INSERT INTO audit.event (event_time, class, action) VALUES (now(), 'privilege', 'GRANT');
RESET ROLE;
-- db_user is the caller, whatever it claims; the class is always app
SELECT class, action, status, db_user, table_name FROM audit.event WHERE id > :mark ORDER BY id;
DROP ROLE regress_app;
DROP ROLE regress_stranger;

-- digest columns: {"sha256", "bytes"} instead of the value
CREATE TABLE documents (id int PRIMARY KEY, title text, body bytea, notes text, meta jsonb, pages int);
SELECT audit.enable('documents', digest_columns => '{body,meta}');
SELECT digest_columns FROM audit.audited_tables WHERE table_name = 'documents';
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
INSERT INTO documents VALUES (1, 'v1', '\x0102', 'n', '{"k": 1}', 3);
UPDATE documents SET title = 'v1b';                      -- body unchanged: not listed
UPDATE documents SET body = '\x010203';
UPDATE documents SET body = '\x010203', meta = '{"k": 1}';  -- same digests: no change
SELECT action, changed_columns, new_data, old_data FROM audit.event WHERE id > :mark ORDER BY id;
SELECT encode(sha256('\x010203'::bytea), 'hex') AS expected_sha256;
-- errors
SELECT audit.enable('documents', digest_columns => '{id}');
SELECT audit.enable('documents', digest_columns => '{pages}');
SELECT audit.enable('documents', digest_columns => '{missing}');
SELECT audit.enable('documents', digest_columns => '{body}', exclude_columns => '{body}');
SELECT audit.enable('documents', digest_columns => '{{body}}');
SELECT audit.enable('documents', digest_columns => ARRAY[NULL]::text[]);
CREATE TABLE blobs (k bytea PRIMARY KEY, v text);
SELECT audit.enable('blobs', digest_columns => '{k}');
-- a renamed digest column stays a digest column, a dropped one leaves the list
ALTER TABLE documents RENAME body TO content;
SELECT digest_columns FROM audit.audited_tables WHERE table_name = 'documents';
ALTER TABLE documents DROP COLUMN meta;
SELECT digest_columns FROM audit.audited_tables WHERE table_name = 'documents';
-- an option not given keeps its value; '{}' clears it
SELECT audit.enable('documents', log_reads => false);
SELECT digest_columns FROM audit.audited_tables WHERE table_name = 'documents';
SELECT audit.enable('documents', digest_columns => '{}');
SELECT digest_columns FROM audit.audited_tables WHERE table_name = 'documents';
SELECT audit.disable('documents');
SELECT audit.disable('blobs');
DROP TABLE documents, blobs;
