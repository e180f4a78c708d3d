#!/usr/bin/env bash
# privilege and ddl events (issue 4): GRANT/REVOKE, roles, passwords never
# stored, ALTER DEFAULT PRIVILEGES, DDL with its command tag, audit.enable/
# disable, disabling the audit trigger, session_replication_role, rollback;
# statements refused on audited tables (42501) recorded through the worker.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/ddl_privilege
PORT=$(( ${PGPORT:-5497} + 40 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
mkdir -p "$DIR"
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

ev() {   # events after the mark: "class action schema.table detail" per line
    q -d postgres -c "SELECT format('%s %s %s.%s %s', class, action, schema_name, table_name, detail)
                        FROM audit.event WHERE id > $MARK AND class IN ('ddl', 'privilege') ${1:-} ORDER BY id"
}
mark() { MARK=$(q -d postgres -c "SELECT coalesce(max(id), 0) FROM audit.event"); }

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
SQL
# privilege events from the start; ddl events once a table of the database is audited
mark
q -d postgres -q -c "CREATE ROLE regress_early" -c "CREATE TABLE early_t (id int)" >/dev/null
is "$(ev)" 'privilege CREATE ROLE . {"role": "regress_early", "options": {}}' \
   "before any table is audited: privilege events yes, ddl events not yet"
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP ROLE regress_early;
DROP TABLE early_t;
CREATE TABLE anchor (id int PRIMARY KEY);
SELECT audit.enable('anchor');
CREATE ROLE regress_u1 LOGIN;
CREATE ROLE regress_grp;
SQL

# --- privilege class --------------------------------------------------------
mark
q -d postgres -q >/dev/null <<'SQL'
CREATE TABLE pv (id int PRIMARY KEY, v text);
GRANT SELECT, UPDATE (v) ON pv TO regress_u1;
REVOKE UPDATE (v) ON pv FROM regress_u1;
GRANT regress_grp TO regress_u1 WITH ADMIN OPTION;
REVOKE regress_grp FROM regress_u1;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO regress_grp;
ALTER ROLE regress_u1 SUPERUSER CREATEROLE;
ALTER ROLE regress_u1 NOSUPERUSER;
ALTER ROLE regress_u1 SET work_mem = '8MB';
SQL
is "$(ev "AND class = 'privilege'")" \
'privilege GRANT public.pv {"objects": ["pv"], "objtype": "table", "grantees": ["regress_u1"], "privileges": ["select", "update (v)"]}
privilege REVOKE public.pv {"objects": ["pv"], "objtype": "table", "grantees": ["regress_u1"], "privileges": ["update (v)"]}
privilege GRANT ROLE . {"roles": ["regress_grp"], "grantees": ["regress_u1"], "admin_option": true}
privilege REVOKE ROLE . {"roles": ["regress_grp"], "grantees": ["regress_u1"], "admin_option": false}
privilege ALTER DEFAULT PRIVILEGES . {"action": "GRANT", "objtype": "table", "grantees": ["regress_grp"], "in_schemas": ["public"], "privileges": ["select"]}
privilege ALTER ROLE . {"role": "regress_u1", "options": {"superuser": true, "createrole": true}}
privilege ALTER ROLE . {"role": "regress_u1", "options": {"superuser": false}}
privilege ALTER ROLE . {"role": "regress_u1", "setting": {"name": "work_mem", "value": "8MB"}}' \
   "GRANT/REVOKE on a table, GRANT/REVOKE ROLE, ALTER DEFAULT PRIVILEGES, ALTER ROLE options and settings"
is "$(q -d postgres -c "SELECT DISTINCT db_user || ' ' || status || ' ' || (txid IS NOT NULL) || ' ' || (statement_id IS NOT NULL) FROM audit.event WHERE id > $MARK AND class = 'privilege'")" \
   "postgres success true true" "with user, status, transaction and statement"

# Passwords: nowhere in the trail, with statement_literals redact and keep
for mode in redact keep; do
    q -d postgres -q >/dev/null <<SQL
SET audit_ext.statement_literals = $mode;
CREATE ROLE regress_pw_$mode LOGIN PASSWORD 'secret-$mode-1';
ALTER ROLE regress_pw_$mode PASSWORD 'secret-$mode-2' VALID UNTIL 'infinity';
ALTER USER regress_pw_$mode WITH PASSWORD 'secret-$mode-3';
SELECT 1; ALTER ROLE regress_pw_$mode PASSWORD 'secret-$mode-4';
SQL
    is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE detail->>'role' = 'regress_pw_$mode'")" "4" \
       "statement_literals = $mode: CREATE ROLE and ALTER ROLE ... PASSWORD recorded"
    is "$(q -d postgres -c "SELECT (SELECT count(*) FROM audit.event e WHERE e::text LIKE '%secret-%')
                                 + (SELECT count(*) FROM audit.statement s WHERE s::text LIKE '%secret-%')")" "0" \
       "statement_literals = $mode: the password appears nowhere in audit.event or audit.statement"
done
is "$(q -d postgres -c "SELECT detail->'options'->>'password', detail->'options'->>'login' FROM audit.event WHERE action = 'CREATE ROLE' AND detail->>'role' = 'regress_pw_keep'")" \
   "[redacted]|true" "the detail says a password was set, as [redacted]"
is "$(q -d postgres -c "SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE e.action = 'CREATE ROLE' AND e.detail->>'role' = 'regress_pw_keep'")" \
   "CREATE ROLE regress_pw_keep LOGIN PASSWORD ?;" "the statement text is stored redacted even under keep"
q -d postgres -q -c "SET audit_ext.statement_literals = keep" -c "CREATE ROLE regress_kept CONNECTION LIMIT 3" >/dev/null
is "$(q -d postgres -c "SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE e.detail->>'role' = 'regress_kept'")" \
   "CREATE ROLE regress_kept CONNECTION LIMIT 3" "other statements keep their literals under keep"
mark
q -d postgres -q -c "DROP ROLE regress_pw_redact, regress_kept" >/dev/null
is "$(ev)" 'privilege DROP ROLE . {"roles": ["regress_pw_redact", "regress_kept"]}' "DROP ROLE"

# --- ddl class ------------------------------------------------------------------
mark
q -d postgres -q -c "CREATE TEMP TABLE tmp1 (id int)" -c "DROP TABLE tmp1" >/dev/null
q -d postgres -q >/dev/null <<'SQL'
CREATE SCHEMA app;
CREATE TABLE app.t (id int PRIMARY KEY, v text);
ALTER TABLE app.t ADD COLUMN w int;
CREATE INDEX t_v ON app.t (v);
COMMENT ON TABLE app.t IS 'x';
CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE VIEW app.vw AS SELECT * FROM app.t;
SET search_path = app;
DROP VIEW vw;
DROP TABLE t;
RESET search_path;
BEGIN; CREATE TABLE app.gone (id int); ROLLBACK;
BEGIN; SAVEPOINT s; CREATE TABLE app.gone2 (id int); ROLLBACK TO s; CREATE TABLE app.kept (id int); COMMIT;
-- not DDL
SELECT 1; VACUUM app.kept; ANALYZE app.kept; SET work_mem = '5MB'; SHOW work_mem; RESET work_mem;
BEGIN; LOCK app.kept; COMMIT; CHECKPOINT; DISCARD PLANS; LISTEN x; NOTIFY x; UNLISTEN x;
PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p; EXPLAIN SELECT 1;
COPY app.kept TO STDOUT;
SQL
is "$(ev)" \
'ddl CREATE SCHEMA . {"objects": ["app"], "object_type": "schema"}
ddl CREATE TABLE app.t {"objects": ["app.t"], "object_type": "table"}
ddl ALTER TABLE app.t {"objects": ["app.t"], "object_type": "table"}
ddl CREATE INDEX app.t {"objects": ["t_v"], "object_type": "index"}
ddl COMMENT app.t {"objects": ["app.t"], "object_type": "table"}
ddl CREATE FUNCTION . {"objects": ["app.f"], "object_type": "function"}
ddl CREATE VIEW app.vw {"objects": ["app.vw"], "object_type": "view"}
ddl DROP VIEW app.vw {"objects": ["vw"], "object_type": "view"}
ddl DROP TABLE app.t {"objects": ["t"], "object_type": "table"}
ddl CREATE TABLE app.kept {"objects": ["app.kept"], "object_type": "table"}' \
   "DDL with its command tag, schema and table; nothing from rolled-back DDL or non-DDL statements"

# audit.enable / audit.disable; disabling the audit trigger; session_replication_role
mark
q -d postgres -q >/dev/null <<'SQL'
SELECT audit.enable('pv', mask_columns => '{v}');
ALTER TABLE pv DISABLE TRIGGER audit_ext_row;
ALTER TABLE pv ENABLE TRIGGER audit_ext_row;
ALTER TABLE pv DISABLE TRIGGER ALL;
ALTER TABLE pv ENABLE TRIGGER ALL;
SET session_replication_role = replica;
SET session_replication_role = origin;
SELECT audit.disable('pv');
SQL
is "$(ev)" \
'ddl ENABLE AUDIT public.pv {"mask_columns": ["v"], "exclude_columns": []}
ddl ALTER TABLE public.pv {"risk": "critical", "objects": ["public.pv"], "object_type": "table", "audit_triggers": {"audit_ext_row": "disabled"}, "audit_trigger_disabled": true}
ddl ALTER TABLE public.pv {"objects": ["public.pv"], "object_type": "table", "audit_triggers": {"audit_ext_row": "enabled"}, "audit_trigger_enabled": true}
ddl ALTER TABLE public.pv {"risk": "critical", "objects": ["public.pv"], "object_type": "table", "audit_triggers": {"audit_ext_row": "disabled", "audit_ext_truncate": "disabled"}, "audit_trigger_disabled": true}
ddl ALTER TABLE public.pv {"objects": ["public.pv"], "object_type": "table", "audit_triggers": {"audit_ext_row": "enabled", "audit_ext_truncate": "enabled"}, "audit_trigger_enabled": true}
ddl SET session_replication_role . {"value": "replica"}
ddl DISABLE AUDIT public.pv {"mask_columns": ["v"], "exclude_columns": []}' \
   "audit.enable/disable, DISABLE TRIGGER on an audited table, session_replication_role = replica (and no DDL run inside audit_ext's functions)"
is "$(q -d postgres -c "SELECT string_agg(DISTINCT db_user, ',') FROM audit.event WHERE id > $MARK AND action LIKE '%AUDIT'")" \
   "postgres" "audit.enable/disable record the calling role"

# audit_ext.log_ddl = off: no ddl events, but privilege changes and changes to
# the audit triggers (disabling them, and enabling them again: where a gap ends)
# still are
mark
q -d postgres -q >/dev/null <<'SQL'
SELECT audit.enable('pv');
SET audit_ext.log_ddl = off;
CREATE TABLE app.quiet (id int);
ALTER TABLE pv DISABLE TRIGGER audit_ext_row;
ALTER TABLE pv ENABLE TRIGGER audit_ext_row;
GRANT SELECT ON app.quiet TO regress_u1;
SQL
is "$(q -d postgres -c "SELECT string_agg(action || coalesce(' ' || (detail->>'audit_trigger_disabled'), ''), ', ' ORDER BY id) FROM audit.event WHERE id > $MARK AND class IN ('ddl', 'privilege')
                         AND NOT detail ? 'audit_protection_off'")" \
   "ENABLE AUDIT, ALTER TABLE true, ALTER TABLE, GRANT" "log_ddl = off: only privilege changes and changes to auditing"
# turning it off is itself recorded, through the worker (tamper.sh tests every route)
wait_for "SELECT count(*) = 1 FROM audit.event WHERE id > $MARK AND action = 'SET audit_ext.log_ddl' AND detail @> '{\"audit_protection_off\": true}'" 60
is "$?" "0" "SET audit_ext.log_ddl = off is recorded"

# --- denied statements on audited tables --------------------------------------
mark
q -d postgres -q >/dev/null <<'SQL'
INSERT INTO pv VALUES (1, 'a');
CREATE TABLE plain (id int);
CREATE ROLE regress_nopriv LOGIN;
GRANT SELECT ON plain TO regress_nopriv;
SQL
# (a refused text is cut to 511 bytes in the queue, at a character boundary)
long_sql="UPDATE pv SET v = v WHERE $(for i in $(seq 1 60); do printf 'id IS NOT NULL AND '; done)v <> 'é'"
refused_out=""
for sql in "UPDATE pv SET v = 'b'" "SELECT * FROM pv" "DELETE FROM pv" "TRUNCATE pv" "COPY pv TO STDOUT" \
           "INSERT INTO pv VALUES (2, 'x')" \
           "MERGE INTO pv USING (VALUES (1)) s(id) ON pv.id = s.id WHEN MATCHED THEN UPDATE SET v = 'm'" \
           "$long_sql" \
           "INSERT INTO plain VALUES (1)" "SELECT * FROM plain"; do
    refused_out+=$(psql -X -q -d postgres -U regress_nopriv -c "SET audit_ext.actor = 'eve@corp'" -c "$sql" 2>&1)$'\n'
done
wait_for "SELECT count(*) >= 8 FROM audit.event WHERE id > $MARK AND status = 'failure'" 60
is "$?" "0" "denied statements are written by the worker" "$refused_out"
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s %s %s.%s %s %s', class, action, db_user, actor, schema_name, table_name, detail->>'sqlstate', detail->>'message'), E'\n' ORDER BY id) FROM audit.event WHERE id > $MARK AND status = 'failure'")" \
"data UPDATE regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data SELECT regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data DELETE regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data TRUNCATE regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data COPY regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data INSERT regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data MERGE regress_nopriv eve@corp public.pv 42501 permission denied for table pv
data UPDATE regress_nopriv eve@corp public.pv 42501 permission denied for table pv" \
   "denied UPDATE, SELECT, DELETE, TRUNCATE, COPY, INSERT, MERGE on the audited table: failure events with user, actor, table and SQLSTATE; none for other tables" \
   "$refused_out"
is "$(q -d postgres -c "SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE e.id > $MARK AND e.status = 'failure' AND e.action = 'UPDATE' ORDER BY e.id LIMIT 1")" \
   "UPDATE pv SET v = ?" "the refused statement's text, literals redacted"
is "$(q -d postgres -c "SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE e.id > $MARK AND e.status = 'failure' AND e.action IN ('INSERT', 'MERGE') ORDER BY e.id")" \
   "INSERT INTO pv VALUES (?, ?)
MERGE INTO pv USING (VALUES (?)) s(id) ON pv.id = s.id WHEN MATCHED THEN UPDATE SET v = ?" "the refused INSERT's and MERGE's texts"
is "$(q -d postgres -c "SELECT octet_length(s.statement_text), s.statement_text = left(\$\$$long_sql\$\$, 511) FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE e.id > $MARK AND e.status = 'failure' AND e.action = 'UPDATE' ORDER BY e.id DESC LIMIT 1" 2>&1)" \
   "511|t" "a refused statement's long text ($(echo -n "$long_sql" | wc -c) bytes) is cut to its first 511 bytes"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND class = 'data' AND status = 'success'")" "1" \
   "the refused statements changed nothing (only the INSERT by postgres is a data event)"

is "$(q -d postgres -c "SELECT string_agg(DISTINCT risk, ',') FROM audit.event WHERE id > $MARK AND status = 'failure'")" "medium" \
   "a refused statement on a table of no sensitivity: risk medium (the default of a denied attempt)"

# a sensitive table: its refusals are at least the table's level, through the
# executor (UPDATE) and the utility (COPY, TRUNCATE) paths
mark
q -d postgres -c "SELECT audit.enable('pv', sensitivity => 'critical')" >/dev/null
for sql in "UPDATE pv SET v = 'c'" "COPY pv TO STDOUT" "TRUNCATE pv"; do
    psql -X -q -d postgres -U regress_nopriv -c "$sql" >/dev/null 2>&1
done
wait_for "SELECT count(*) >= 3 FROM audit.event WHERE id > $MARK AND status = 'failure'" 60
is "$(q -d postgres -c "SELECT string_agg(action || ':' || risk, ',' ORDER BY id) FROM audit.event WHERE id > $MARK AND status = 'failure'")" \
   "UPDATE:critical,COPY:critical,TRUNCATE:critical" \
   "refusals on a table enabled with sensitivity => critical are critical"

done_testing
