-- Retention policies, legal holds, prune, restore: the SQL surface and its
-- errors; the append-only protection of the trail (also against superusers).
-- Archives, the worker and crashes are tested in test/e2e/retention.sh.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset

-- The default is to keep everything: no policy, nothing pruned.
SELECT count(*) AS policies FROM audit.retention_policies;
SELECT * FROM audit.prune();

-- Policies
SELECT audit.set_retention(class => 'auth', keep => interval '2 years', archive => true);
SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => true);
SELECT audit.set_retention(class => 'read', keep => interval '30 days', archive => false);
SELECT audit.set_retention(class => 'data', keep => interval '18 months');   -- archive defaults to true
SELECT class, keep, archive, set_by FROM audit.retention_policies ORDER BY class;
SELECT audit.set_retention(class => 'nope', keep => interval '1 year');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.set_retention(class => 'data', keep => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.set_retention(class => 'data', keep => interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit.remove_retention('read') AS removed, audit.remove_retention('read') AS removed_again;
SELECT class FROM audit.retention_policies ORDER BY class;

-- Legal holds
SELECT audit.legal_hold(from_time => '2024-01-01', to_time => '2024-07-01', reason => 'case 4711') AS hold \gset
SELECT from_time, to_time, reason, created_by, released_at IS NULL AS active
  FROM audit.legal_holds WHERE id = :hold;
SELECT audit.legal_hold(from_time => '2024-07-01', to_time => '2024-01-01', reason => 'backwards');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.legal_hold(from_time => '2024-01-01', to_time => '2024-07-01', reason => ' ');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.release_legal_hold(:hold);
SELECT released_by, released_at IS NOT NULL AS released FROM audit.legal_holds WHERE id = :hold;
SELECT audit.release_legal_hold(:hold);
\echo :LAST_ERROR_SQLSTATE

-- Every policy change and hold is a system event, naming who did it.
SELECT class, action, db_user, detail
  FROM audit.event WHERE id > :mark AND class = 'system' ORDER BY id;

-- Only audit_admin configures retention; audit_reader reads it.
CREATE ROLE regress_ret_reader IN ROLE audit_reader;
CREATE ROLE regress_ret_nobody;
SET ROLE regress_ret_reader;
SELECT class FROM audit.retention_policies ORDER BY class;
SELECT audit.set_retention(class => 'data', keep => interval '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.prune();
\echo :LAST_ERROR_SQLSTATE
SELECT audit.legal_hold('2024-01-01', '2024-02-01', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.restore_archive('x.jsonl.gz');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_ret_nobody;
SELECT audit.remove_retention('data');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit.archives;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- restore_archive takes a file name of the archive directory, nothing else
SELECT audit.restore_archive('../../postgresql.conf');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.restore_archive('sub/x.jsonl.gz');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.restore_archive('..jsonl.gz');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.restore_archive('/etc/passwd');
\echo :LAST_ERROR_SQLSTATE

-- Append-only: refused for the owner and superuser (this session is both),
-- also with session_replication_role = replica.  (INSERT stays allowed to
-- the owner: pg_restore loads the trail with COPY.)
INSERT INTO audit.event (event_time, class, action) VALUES ('2099-01-15', 'system', 'TEST')
RETURNING id AS victim \gset
UPDATE audit.event SET actor = 'someone else' WHERE id = :victim;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM audit.event WHERE id = :victim;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
DELETE FROM audit.event WHERE id = :victim;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
UPDATE audit.statement SET statement_text = 'x';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audit.event;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audit.event_system_default;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audit.statement;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE audit.event_system_default;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE audit.archives;
\echo :LAST_ERROR_SQLSTATE
SELECT format('audit.%I', c.relname) AS part
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'audit.event_system'::regclass AND c.relname <> 'event_system_default'
 ORDER BY c.relname LIMIT 1 \gset
\set VERBOSITY sqlstate
DROP TABLE :part;
ALTER TABLE audit.event_system DETACH PARTITION :part;
\set VERBOSITY default
ALTER TABLE audit.event DETACH PARTITION audit.event_system;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE audit.event_system_default SET SCHEMA public;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE audit.event DROP COLUMN new_data;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE audit.event ALTER COLUMN actor TYPE text USING 'nobody';
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE audit.statement ALTER COLUMN statement_text TYPE varchar(10);
\echo :LAST_ERROR_SQLSTATE
-- the internal drop function accepts monthly event partitions only
SELECT audit.drop_event_partition('audit.statement');
\echo :LAST_ERROR_SQLSTATE
SELECT audit.drop_event_partition('audit.event_system_default');
\echo :LAST_ERROR_SQLSTATE
-- nothing was removed
SELECT count(*) AS event_still_there FROM audit.event WHERE id = :victim;
SELECT to_regclass(:'part') IS NOT NULL AS partition_still_there;

-- audit.restored_event has every column of audit.event (a version that adds
-- one to audit.event must add it there too, or restores would drop it).
SELECT a.attname, a.atttypid::regtype FROM pg_attribute a
 WHERE a.attrelid = 'audit.event'::regclass AND a.attnum > 0 AND NOT a.attisdropped
EXCEPT
SELECT a.attname, a.atttypid::regtype FROM pg_attribute a
 WHERE a.attrelid = 'audit.restored_event'::regclass AND a.attnum > 0 AND NOT a.attisdropped;

-- The investigation table is not part of the trail: audit_admin may clear it.
TRUNCATE audit.restored_event;

-- The protection is a trigger a superuser can switch off on purpose.
SELECT tgrelid::regclass AS rel, tgenabled FROM pg_trigger
 WHERE tgname = 'audit_append_only' AND tgparentid = 0 ORDER BY tgrelid::regclass::text;

-- A superuser switches the protections off deliberately, and it shows.
ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
UPDATE audit.event SET actor = 'tampered' WHERE id = :victim;
ALTER TABLE audit.event ENABLE ALWAYS TRIGGER audit_append_only;
SELECT actor FROM audit.event WHERE id = :victim;
SELECT count(*) AS disabled_triggers FROM pg_trigger WHERE tgname = 'audit_append_only' AND tgenabled <> 'A';
-- (SET audit_ext.protect_trail = off is recorded through the worker, in the
-- database audit_ext.database names: test/e2e/tamper.sh)
SET audit_ext.protect_trail = off;
RESET audit_ext.protect_trail;
SELECT class, action, table_name, detail FROM audit.event
 WHERE id > :victim AND class = 'ddl' ORDER BY id;
SET ROLE regress_ret_reader;
SET audit_ext.protect_trail = off;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT audit.remove_retention('auth'), audit.remove_retention('data');
DROP ROLE regress_ret_reader, regress_ret_nobody;
