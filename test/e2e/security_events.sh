#!/usr/bin/env bash
# Security events through the shared-memory queue and the background worker:
# logins, failed logins (wrong password, unknown role, pg_hba reject),
# logouts; the worker survives SIGKILL (postmaster restarts it) and SIGHUP;
# a burst of 500 failed logins is recorded completely.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/security
PORT=$(( ${PGPORT:-5497} + 30 ))
BURST=${SECURITY_BURST:-500}
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log" 'background worker "audit_ext worker" \(PID [0-9]+\) was terminated by signal 9'
mkdir -p "$DIR"
HBA=$(mktemp /tmp/audit_hba.XXXXXX)
cat > "$HBA" <<'HBA'
local all postgres trust
host  all regress_good     127.0.0.1/32 scram-sha-256
host  all regress_rejected 127.0.0.1/32 reject
host  all all              127.0.0.1/32 scram-sha-256
HBA
chmod 644 "$HBA"
PG_HBA_FILE=$HBA pg_start "$DIR" "$PORT" "password_encryption = 'scram-sha-256'" "audit_ext.database = 'postgres'" \
    || { echo "not ok - could not start a cluster in $DIR"; rm -f "$HBA"; exit 1; }
rm -f "$HBA"

tcp() {   # user password [extra conninfo] -- psql over TCP, output and errors discarded
    PGPASSWORD=$2 psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=$1 ${3:-}" -c "SELECT 1" >/dev/null 2>&1
}

# A login before the extension exists stays queued; the worker logs once
# (counted after the queued logins were written: the whole wait).
q -d postgres -c "SELECT 1" >/dev/null
wait_log "$DIR/server.log" 'extension audit_ext is not installed in database "postgres"' 60
is "$?" "0" "worker waits (and says so) while the extension is not installed"
q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE ROLE regress_good LOGIN PASSWORD 'good-pw';
CREATE ROLE regress_reader LOGIN IN ROLE audit_reader;
CREATE ROLE regress_nologin NOLOGIN PASSWORD 'nologin-pw';
SQL
is "$(q -d postgres -c "SELECT queue_size, worker_pid IS NOT NULL FROM audit.worker_status")" "10000|t" \
   "worker_status: default queue size, worker running"
wait_for "SELECT count(*) > 0 FROM audit.event WHERE class = 'auth' AND db_user = 'postgres' AND action = 'LOGIN'" 60
is "$?" "0" "logins queued before CREATE EXTENSION are written once it exists"
is "$(grep -c 'extension audit_ext is not installed in database "postgres"' "$DIR/server.log")" "1" \
   "the worker said once that it waits for the extension"

tcp regress_good good-pw "application_name=e2e_ok"
tcp regress_good wrong-pw "application_name=e2e_bad"
tcp regress_nobody whatever "application_name=e2e_unknown"
tcp regress_rejected whatever "application_name=e2e_reject"
wait_for "SELECT count(*) >= 5 FROM audit.event WHERE class = 'auth' AND application_name LIKE 'e2e\_%'" 60
is "$?" "0" "the worker wrote the events"

is "$(q -d postgres -c "
    SELECT string_agg(format('%s %s %s %s %s', application_name, action, status, db_user, client_addr), ', ' ORDER BY id)
      FROM audit.event WHERE class = 'auth' AND application_name LIKE 'e2e\_%'")" \
   "e2e_ok LOGIN success regress_good 127.0.0.1, e2e_ok LOGOUT success regress_good 127.0.0.1, e2e_bad LOGIN_FAILED failure regress_good 127.0.0.1, e2e_unknown LOGIN_FAILED failure regress_nobody 127.0.0.1, e2e_reject LOGIN_FAILED failure regress_rejected 127.0.0.1" \
   "LOGIN, LOGOUT and three LOGIN_FAILED, each once, with user and client address"
is "$(q -d postgres -c "SELECT detail->>'method' FROM audit.event WHERE application_name = 'e2e_ok' AND action = 'LOGIN'")" \
   "scram-sha-256" "LOGIN names the method"
is "$(q -d postgres -c "SELECT string_agg(DISTINCT detail->>'database', ',') FROM audit.event WHERE application_name = 'e2e_ok' AND action IN ('LOGIN', 'LOGOUT')")" \
   "postgres" "LOGIN and LOGOUT name the database the session used"
is "$(q -d postgres -c "SELECT detail->>'reason' FROM audit.event WHERE application_name IN ('e2e_bad', 'e2e_unknown') ORDER BY id")" \
   "password authentication failed
password authentication failed" "wrong password and unknown role: password authentication failed"
is "$(q -d postgres -c "SELECT detail->>'reason' LIKE 'pg_hba.conf rejects connection for host \"127.0.0.1\", user \"regress_rejected\"%', detail->>'sqlstate' FROM audit.event WHERE application_name = 'e2e_reject'")" \
   "t|28000" "pg_hba reject: the server's message and SQLSTATE (from the log hook)"
is "$(q -d postgres -c "SELECT (detail->>'duration')::interval >= '0'::interval, (detail->>'duration_seconds')::numeric < 60, backend_pid = (SELECT backend_pid FROM audit.event WHERE application_name = 'e2e_ok' AND action = 'LOGIN') FROM audit.event WHERE application_name = 'e2e_ok' AND action = 'LOGOUT'")" \
   "t|t|t" "LOGOUT carries the session's duration and the same backend pid"

# Authenticated, then refused while the session is set up: LOGIN_FAILED only
tcp regress_good good-pw "application_name=e2e_nodb dbname=regress_no_such_db"
tcp regress_nologin nologin-pw "application_name=e2e_nologin"
# a session terminated by an administrator still leaves its LOGOUT
PGPASSWORD=good-pw psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_good application_name=e2e_killed" \
    -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
killed_client=$!
wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'e2e_killed'" 60
q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'e2e_killed'" >/dev/null
wait $killed_client 2>/dev/null
wait_for "SELECT count(*) = 1 FROM audit.event WHERE application_name = 'e2e_killed' AND action = 'LOGOUT'" 60
is "$?" "0" "a terminated session is recorded as LOGOUT with its duration"

wait_for "SELECT count(*) >= 2 FROM audit.event WHERE application_name IN ('e2e_nodb', 'e2e_nologin')" 60
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s %s', application_name, action, detail->>'sqlstate', detail->>'reason'), ', ' ORDER BY id) FROM audit.event WHERE application_name IN ('e2e_nodb', 'e2e_nologin')")" \
   "e2e_nodb LOGIN_FAILED 3D000 database \"regress_no_such_db\" does not exist, e2e_nologin LOGIN_FAILED 28000 role \"regress_nologin\" is not permitted to log in" \
   "missing database and role without LOGIN: one LOGIN_FAILED each, no LOGIN or LOGOUT"

# Who may read the status
is "$(q -q -d postgres -c "SET ROLE regress_reader" -c "SELECT enqueued > 0 FROM audit.worker_status" 2>&1)" "t" \
   "audit_reader reads audit.worker_status"
is "$(psql -X -At -d postgres -c "SET ROLE regress_good" -c "SELECT 1 FROM audit.worker_status" 2>&1 | grep -c 'permission denied')" "1" \
   "other roles do not"

# SIGKILL of the worker: the postmaster restarts it (after crash recovery),
# committed events are kept, new logins are recorded.
before=$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'auth'")
old_pid=$(q -d postgres -c "SELECT worker_pid FROM audit.worker_status")
is "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'audit_ext worker' AND pid = $old_pid")" "1" \
   "the worker shows in pg_stat_activity"
kill -9 "$old_pid"
new_pid=""
for _ in $(seq 1 300); do
    new_pid=$(q -d postgres -c "SELECT worker_pid FROM audit.worker_status" 2>/dev/null)
    [ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ] && break
    sleep 0.1
done
is "$([ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ] && echo restarted)" "restarted" "worker restarted after SIGKILL"
after=$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'auth'")
is "$([ "$after" -ge "$before" ] && echo kept)" "kept" "committed events survive ($before before, $after after)"
tcp regress_good good-pw "application_name=e2e_after_kill"
wait_for "SELECT count(*) = 2 FROM audit.event WHERE application_name = 'e2e_after_kill'" 60
is "$?" "0" "logins after the restart are recorded (LOGIN and LOGOUT)"

# SIGHUP: reload keeps the same worker running
# (handshake: the postmaster has reloaded, pg_conf_load_time() of a new session moved)
pid=$(q -d postgres -c "SELECT worker_pid FROM audit.worker_status")
loaded=$(q -d postgres -c "SELECT pg_conf_load_time()")
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" reload >/dev/null)
wait_for "SELECT pg_conf_load_time() > '$loaded'" 60
is "$?|$(q -d postgres -c "SELECT worker_pid FROM audit.worker_status")" "0|$pid" "reload: the worker keeps running"
tcp regress_good wrong-pw "application_name=e2e_after_reload"
wait_for "SELECT count(*) = 1 FROM audit.event WHERE application_name = 'e2e_after_reload'" 60
is "$?|$(q -d postgres -c "SELECT worker_pid FROM audit.worker_status")" "0|$pid" "and keeps recording (the same worker, after it got the SIGHUP)"

# Burst of failed logins over loopback
start=$(date +%s.%N)
for i in $(seq 1 "$BURST"); do tcp regress_good "wrong-$i" "application_name=e2e_burst"; done
sent=$(date +%s.%N)
wait_for "SELECT count(*) = $BURST FROM audit.event WHERE application_name = 'e2e_burst'" 60
is "$?" "0" "all $BURST failed logins of the burst are recorded"
done_at=$(date +%s.%N)
# (queue_depth is not asserted: this very session's LOGIN may still be queued)
is "$(q -d postgres -c "SELECT dropped, enqueued = written + queue_depth FROM audit.worker_status")" "0|t" \
   "nothing dropped; every queued event written or still queued"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'system' AND action = 'QUEUE_OVERFLOW'")" "0" "no overflow event"
echo "# burst: $BURST failed logins sent in $(echo "$sent - $start" | bc) s; last one queryable $(echo "$done_at - $sent" | bc) s after the last was sent"

# A write error: the worker records it as last_error and retries; after three
# failed attempts it gives the batch up, counted as dropped and reported by
# system/QUEUE_OVERFLOW events.  (auth events have no partition meanwhile.)
# (the trail is protected: a superuser turns that off for a deliberate change)
q -d postgres -c "SET audit_ext.protect_trail = off" -c "ALTER TABLE audit.event_auth DETACH PARTITION audit.event_auth_default" >/dev/null
tcp regress_good wrong-pw "application_name=e2e_lost"
wait_for "SELECT dropped > 0 FROM audit.worker_status" 60
is "$?" "0" "a batch that cannot be written is given up after retries, counted as dropped"
is "$(q -d postgres -c "SELECT last_error LIKE 'no partition of relation \"event_auth\" found for row%', last_error_time > now() - interval '1 minute' FROM audit.worker_status")" \
   "t|t" "the error is recorded as last_error with its time"
q -d postgres -c "ALTER TABLE audit.event_auth ATTACH PARTITION audit.event_auth_default DEFAULT" >/dev/null
wait_for "SELECT (SELECT sum((detail->>'dropped')::bigint) FROM audit.event WHERE class = 'system' AND action = 'QUEUE_OVERFLOW') = dropped FROM audit.worker_status" 60
is "$?" "0" "QUEUE_OVERFLOW events account for every dropped event"
is "$(q -d postgres -c "SELECT status, backend_pid = (SELECT worker_pid FROM audit.worker_status) FROM audit.event WHERE action = 'QUEUE_OVERFLOW' ORDER BY id LIMIT 1")" \
   "failure|t" "written by the worker, status failure"
tcp regress_good good-pw "application_name=e2e_recovered"
wait_for "SELECT count(*) = 2 FROM audit.event WHERE application_name = 'e2e_recovered'" 60
is "$?" "0" "recording resumes once the store is writable again"
# The reading functions understand these events (e2e_ok, e2e_killed, e2e_after_kill, e2e_after_reload)
is "$(q -d postgres -c "SELECT logins, failed_logins, sessions, avg_session > '0'::interval FROM audit.user_activity('regress_good')")" \
   "4|$(( BURST + 3 ))|4|t" "audit.user_activity counts the logins, failed logins and sessions (durations from LOGOUT)"
done_testing
