#!/usr/bin/env bash
# Application events (issue 20): audit.log_event(survive_rollback => true)
# keeps an event through a ROLLBACK, a terminated backend and a backend
# killed with SIGKILL right after the call returned; an alert rule on class
# app fires; three versions of a 50 MB file (digest_columns) give three
# digests and grow the store by less than 10 kB.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/app_events
PORT=$(( ${PGPORT:-5497} + 120 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
# the SIGKILL below is ours: the postmaster reports it and restarts
watch_log "$DIR/server.log" 'server process \(PID [0-9]+\) was terminated by signal 9|terminating any other active server processes|terminating connection because of crash of another server process|all server processes terminated; reinitializing|database system was interrupted|was not properly shut down|redo|connection to client lost|could not receive data from client|FATAL:  terminating connection due to administrator command'
mkdir -p "$DIR"
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.alert_interval = 100" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE ROLE regress_webapp LOGIN IN ROLE audit_writer;
CREATE TABLE sessions_app (id int PRIMARY KEY, who text);
GRANT ALL ON sessions_app TO regress_webapp;
SQL
app() { psql -X -At -d postgres -U regress_webapp "$@"; }

# 1. a failed login the application rolls back is kept
out=$(app -c "BEGIN" -c "SET LOCAL audit_ext.actor = 'mallory@example.com'" \
          -c "SELECT audit.log_event('LOGIN_FAILED', 'User', '{\"email\": \"mallory@example.com\"}', status => 'failure', detail => '{\"reason\": \"bad password\"}', survive_rollback => true) IS NULL" \
          -c "ROLLBACK" 2>&1)
is "$out" "BEGIN
SET
t
ROLLBACK" "survive_rollback returns NULL (the event is queued)"
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'app' AND action = 'LOGIN_FAILED'" 30
is "$?" "0" "the worker wrote it although the transaction rolled back"
is "$(q -d postgres -c "SELECT format('%s %s %s %s %s %s %s', status, db_user, actor, schema_name IS NULL, table_name, record_id, detail)
                          FROM audit.event WHERE class = 'app' AND action = 'LOGIN_FAILED'")" \
   'failure regress_webapp mallory@example.com t User {"email": "mallory@example.com"} {"reason": "bad password", "database": "postgres"}' \
   "with the caller's user and actor, the entity, record and detail"
is "$(q -d postgres -c "SELECT s.statement_text LIKE '%log_event%' FROM audit.event e JOIN audit.statement s USING (statement_id)
                          WHERE e.class = 'app' AND e.action = 'LOGIN_FAILED'")" "t" "and the statement that recorded it"

# 2. a backend terminated inside its transaction right after the call
sess_open term -d postgres -U regress_webapp
sess_run term "BEGIN; INSERT INTO sessions_app VALUES (1, 'x'); SELECT audit.log_event('ACCOUNT_LOCKED', 'User', '{\"id\": 2}', survive_rollback => true);"
pid=$(q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'term'")
q -d postgres -c "SELECT pg_terminate_backend($pid)" >/dev/null
sess_close term
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'app' AND action = 'ACCOUNT_LOCKED'" 30
is "$?|$(q -d postgres -c "SELECT count(*) FROM sessions_app")" "0|0" \
   "terminated backend: its change is gone, the application event is kept"

# 3. SIGKILL right after the call returned: the worker commits the event on
# its own, so the crash of the backend (and the restart of every process)
# cannot take it back; the backend's own transaction is lost
sess_open killed -d postgres -U regress_webapp
sess_run killed "BEGIN; INSERT INTO sessions_app VALUES (2, 'y'); SELECT audit.log_event('EXPORT', 'Customer', detail => '{\"rows\": 5000}', survive_rollback => true);"
pid=$(q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'killed'")
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'app' AND action = 'EXPORT'" 30
kill -9 "$pid"
sess_close killed
wait_for "SELECT true" 60 >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'app' AND action = 'EXPORT'" 60
is "$?|$(q -d postgres -c "SELECT count(*) FROM sessions_app")" "0|0" \
   "SIGKILL after the call: the event is kept, the backend's change is not"
is "$(grep -c 'terminated by signal 9' "$DIR/server.log")" "1" "it was a real crash"
is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "the trail verifies (app lanes included)"

# 4. an alert rule on class app: 5 failed application logins in 10 minutes
q -d postgres -c "SELECT audit.create_alert_rule('app_failed_logins', 'app', action => 'LOGIN_FAILED', threshold => 5,
                                                 within => '10 minutes', group_by => 'actor', severity => 'high')" >/dev/null
for i in 1 2 3 4 5; do
    app -c "SET audit_ext.actor = 'eve@example.com'" \
        -c "SELECT audit.log_event('LOGIN_FAILED', 'User', '{\"email\": \"eve@example.com\"}', status => 'failure', survive_rollback => true)" >/dev/null
done
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'app_failed_logins' AND key = 'eve@example.com'" 30
is "$?|$(q -d postgres -c "SELECT count FROM audit.alerts WHERE rule = 'app_failed_logins'")" "0|5" \
   "the alert fires once the fifth failed login is recorded (five events, none coalesced)"

# 5. three versions of a 50 MB file: three digests, sizes, the store hardly grows
q -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE files (id int PRIMARY KEY, name text, content bytea);
ALTER TABLE files ALTER content SET STORAGE EXTERNAL;
SELECT audit.enable('files', digest_columns => '{content}');
-- a first small version: the partitions' first pages and the statement texts exist
INSERT INTO files VALUES (1, 'report.pdf', '\x00');
UPDATE files SET content = (SELECT string_agg(decode(md5((i + 0)::text), 'hex'), '') FROM generate_series(1, 2) i) WHERE id = 1;
SQL
# the store but the auth partitions (each psql below is a login and a logout
# of its own, written there by the worker) and the maintenance worker's own
# records, which a round adds whatever the events hold (chain checkpoints and
# rounds, and since 1.6 its recorded chain walks; on a loaded machine a round
# falls into the measured window)
size() { q -d postgres -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'm') AND c.relname NOT LIKE 'event\_auth\_%' AND c.relname NOT IN ('chain_checkpoint', 'chain_round', 'verification', 'verification_head')"; }
before=$(size)
for v in 1 2 3; do
    q -d postgres -c "UPDATE files SET content = (SELECT string_agg(decode(md5((i + $v)::text), 'hex'), '') FROM generate_series(1, 3276800) i) WHERE id = 1" >/dev/null
done
after=$(size)
is "$(q -d postgres -c "SELECT count(DISTINCT new_data -> 'content' ->> 'sha256'), min((new_data -> 'content' ->> 'bytes')::bigint), max((new_data -> 'content' ->> 'bytes')::bigint)
                          FROM (SELECT new_data FROM audit.event WHERE class = 'data' AND table_name = 'files' AND action = 'UPDATE' ORDER BY id DESC LIMIT 3) v")" \
   "3|52428800|52428800" "three versions of 50 MB: three distinct digests, the size of each"
is "$(q -d postgres -c "SELECT (SELECT new_data -> 'content' ->> 'sha256' FROM audit.event WHERE table_name = 'files' ORDER BY id DESC LIMIT 1)
                               = encode(sha256(content), 'hex') FROM files")" "t" "the digest is the file's SHA-256"
grown=$(( after - before ))
is "$([ "$grown" -lt 10240 ] && echo small)" "small" "the store grew by $grown bytes (< 10 kB) for 150 MB of versions"

# which context keys are indexed: audit_ext.context_index_keys (checked; new
# partitions follow it; searches use the index of a key that has one)
err=$(q -d postgres -v VERBOSITY=verbose -c "ALTER SYSTEM SET audit_ext.context_index_keys = 'tenant, bogus'" 2>&1)
is "$(grep -c 'ERROR:  22023: invalid value for parameter "audit_ext.context_index_keys"' <<<"$err")|$(grep -c '"bogus" is not a context key' <<<"$err")|$(grep -c 'HINT:  Index any of client_ip, session_id' <<<"$err")" "1|1|1" \
   "an unknown key in audit_ext.context_index_keys is refused (22023), naming it, with the keys it may be" "$err"
q -d postgres -c "ALTER SYSTEM SET audit_ext.context_index_keys = 'client_ip, request_id'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT current_setting('audit_ext.context_index_keys') = 'client_ip, request_id'" 30
q -d postgres -c "SELECT audit.create_partitions(14)" >/dev/null
is "$(q -d postgres -c "SELECT string_agg(replace(c.relname, 'event_data_' || to_char(now() + interval '14 months', 'pYYYYMM') || '_', ''), ',' ORDER BY c.relname)
                          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                         WHERE i.indrelid = ('audit.event_data_' || to_char(now() + interval '14 months', 'pYYYYMM'))::regclass AND c.relname LIKE '%\_ctx\_%'")" \
   "ctx_client_ip_idx,ctx_request_id_idx" "a partition made after the change indexes client_ip and request_id, not session_id or tenant"
is "$(q -d postgres -c "SELECT string_agg(replace(c.relname, 'event_data_' || to_char(now(), 'pYYYYMM') || '_', ''), ',' ORDER BY c.relname)
                          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                         WHERE i.indrelid = ('audit.event_data_' || to_char(now(), 'pYYYYMM'))::regclass AND c.relname LIKE '%\_ctx\_%'")" \
   "ctx_session_id_idx,ctx_tenant_idx" "this month's partition keeps the indexes of the default (session_id, tenant)"
q -d postgres -c "ALTER SYSTEM RESET audit_ext.context_index_keys" -c "SELECT pg_reload_conf()" >/dev/null

done_testing
