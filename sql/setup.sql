-- The extension's objects, roles and privileges after CREATE EXTENSION.
\set VERBOSITY terse
SELECT extname, extversion, extrelocatable FROM pg_extension WHERE extname = 'audit_ext';
SELECT nspname FROM pg_namespace WHERE nspname = 'audit';
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('audit_admin', 'audit_reader') ORDER BY 1;

-- The store: partitioned by class, then by month, each class with a default.
SELECT c.relname, c.relkind, pg_get_partkeydef(c.oid) AS partkey
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'audit' AND c.relkind = 'p' ORDER BY 1;
SELECT parent.relname AS parent, count(*) AS partitions,
       count(*) FILTER (WHERE child.relname LIKE '%default') AS defaults
  FROM pg_inherits i
  JOIN pg_class parent ON parent.oid = i.inhparent
  JOIN pg_class child ON child.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = parent.relnamespace
 WHERE n.nspname = 'audit' AND parent.relname <> 'event' AND parent.relkind = 'p'
 GROUP BY 1 ORDER BY 1;
-- CREATE EXTENSION makes no monthly partition (see the install script);
-- audit.enable() and audit.create_partitions() do.
SELECT audit.create_partitions(2) AS created;
-- current month and the next two exist for every class
SELECT count(*) AS monthly_partitions_now_and_ahead
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'audit'
   AND c.relname ~ '^event_[a-z]+_p[0-9]{6}$'
   AND substring(c.relname from '[0-9]{6}$') IN (
        to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), 'YYYYMM'),
        to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month', 'YYYYMM'),
        to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', 'YYYYMM'));

-- Monthly partitions are not extension members (pg_dump dumps them); the
-- default partitions are members whose rows pg_dump dumps.
SELECT c.relname AS member_table, cfg.oid IS NOT NULL AS rows_dumped
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
  LEFT JOIN pg_extension cfg ON cfg.extname = 'audit_ext' AND c.oid = ANY (cfg.extconfig)
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_ext')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
   AND c.relkind IN ('r', 'S')
 ORDER BY 1;
SELECT count(*) AS monthly_partitions_that_are_members
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_ext')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
   AND c.relkind = 'r' AND c.relname ~ '_p[0-9]{6}$';

-- Columns of audit.event
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_attribute WHERE attrelid = 'audit.event'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;
-- indexes of each leaf partition
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid = 'audit.event_data_default'::regclass ORDER BY 1;
SELECT count(*) AS leaf_partitions_without_eight_indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'audit' AND c.relkind = 'r' AND c.relname LIKE 'event\_%'
   AND (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) <> 8;

-- Every object has a comment.
SELECT c.relname AS uncommented_relation
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p', 'v', 'S')
   AND c.relname !~ '_p[0-9]{6}$'
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.oid::regprocedure AS uncommented_function
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'audit' AND obj_description(p.oid, 'pg_proc') IS NULL;

-- Nobody but the audit roles can read the tables, nobody can write them; the
-- reading views are open but check the role themselves (see sql/reading.sql).
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select,
       has_table_privilege('audit_reader', c.oid, 'SELECT') AS reader_select,
       has_table_privilege('audit_admin', c.oid, 'SELECT') AS admin_select,
       has_table_privilege('audit_admin', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS admin_write
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p', 'v') AND c.relname !~ '_p[0-9]{6}$'
 ORDER BY 1;
SELECT has_schema_privilege('public', 'audit', 'USAGE') AS public_usage;
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       has_function_privilege('audit_admin', p.oid, 'EXECUTE') AS admin_execute
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'audit' ORDER BY 1;

-- GUCs
SELECT name, setting, context, vartype FROM pg_settings WHERE name LIKE 'audit\_ext.%' ORDER BY 1;
SET audit_ext.no_such_setting = 1;

-- Security events: the queue and its worker (the test cluster preloads audit_ext)
SELECT pg_get_function_result('audit.worker_status()'::regprocedure) AS worker_status_columns;
SELECT queue_size, dropped, last_error, worker_pid IS NOT NULL AS worker_running
  FROM audit.worker_status;
-- without the library preloaded the function answers NULLs and zeros, and
-- CREATE EXTENSION warns (tested in test/e2e/no_preload.sh)
