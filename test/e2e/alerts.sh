#!/usr/bin/env bash
# Alert rules end to end, on a cluster of its own with scram authentication:
# five wrong passwords from one address fire exactly one failed_logins alert,
# received by a real LISTENing connection (docs/examples/audit_listen);
# cooldown; a 1,500-row SELECT of a read-audited table fires mass_export;
# acknowledgement; only audit roles read alerts; a transaction that commits
# after later ones still has its events evaluated, and so has an event a
# writer numbered before a round and wrote after it; rules survive a restart.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${AUDIT_TEST_TMP:-/tmp}/alerts
PORT=$(( ${PGPORT:-5497} + 50 ))
rm -rf "$DIR"
LISTENER_PIDS=()
cleanup() {
    local rc=$?
    for p in "${LISTENER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    (exit $rc); finish_clusters "$DIR"
}
trap cleanup EXIT
watch_log "$DIR/server.log"
mkdir -p "$DIR"
make -s -C "$ROOT" PG_CONFIG="$PGBIN/pg_config" listener >/dev/null || { echo "not ok - could not build the listener"; exit 1; }
LISTEN_BIN=$ROOT/docs/examples/audit_listen
HBA=$(mktemp /tmp/audit_hba.XXXXXX)
cat > "$HBA" <<'HBA'
local all postgres trust
local all all      trust
host  all all      127.0.0.1/32 scram-sha-256
HBA
chmod 644 "$HBA"
# The server's time zone puts it in the night (02:00-03:59 local), so that the
# shipped after_hours_login rule (outside 06:00-22:00, server time zone) fires
# when it is switched on at the end.
off=$(( 2 - 10#$(date -u +%H) )); [ $off -lt -12 ] && off=$((off + 24)); [ $off -gt 14 ] && off=$((off - 24))
NIGHT_TZ="Etc/GMT$([ $off -ge 0 ] && echo "-$off" || echo "+${off#-}")"
PG_HBA_FILE=$HBA pg_start "$DIR" "$PORT" "password_encryption = 'scram-sha-256'" "audit_ext.database = 'postgres'" "timezone = '$NIGHT_TZ'" \
    || { echo "not ok - could not start a cluster in $DIR"; rm -f "$HBA"; exit 1; }
rm -f "$HBA"

tcp() {   # user password [application_name]
    PGPASSWORD=$2 psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=$1 application_name=${3:-e2e_alerts}" \
        -c "SELECT 1" >/dev/null 2>&1
}
listen() {   # output-file [channel]: start a listener, wait until it listens
    "$LISTEN_BIN" -c "${2:-audit_alerts}" "host=$DIR port=$PORT dbname=postgres user=postgres" >"$1" 2>"$1.err" &
    LISTENER_PIDS+=($!)
    wait_log "$1.err" '^listening' 60
}
lines() {   # file pattern: how many lines match
    grep -c "$2" "$1" 2>/dev/null || true
}
wait_lines() {   # file pattern n seconds
    local i
    for i in $(seq 1 $(( $4 * 10 ))); do [ "$(lines "$1" "$2")" -ge "$3" ] && return 0; sleep 0.1; done
    echo "# gave up after $4 s waiting for $3 lines /$2/ in $1; it has:"
    sed 's/^/#   /' "$1" "$1.err" 2>&1 | tail -20
    return 1
}
# every event committed so far has been evaluated by the worker
evaluated() {
    wait_for "SELECT (SELECT high_watermark FROM audit.alert_state) >= (SELECT max(id) FROM audit.event)
                 AND (SELECT queue_depth FROM audit.worker_status) = 0" "${1:-60}"
}

q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE ROLE regress_app LOGIN PASSWORD 'app-pw';
CREATE ROLE regress_admin LOGIN IN ROLE audit_admin;
CREATE ROLE regress_reader LOGIN IN ROLE audit_reader;
CREATE ROLE regress_nobody LOGIN;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers SELECT g, 'name ' || g, 'c' || g || '@example.test' FROM generate_series(1, 2000) g;
GRANT SELECT ON customers TO regress_app;
SELECT audit.enable('customers', log_reads => true);
SQL
listen "$DIR/alerts.txt"
is "$?" "0" "a client LISTENs on audit_alerts"
# (privilege events are recorded from the start)
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'privilege_escalation'" 60
is "$?" "0" "CREATE ROLE ... IN ROLE audit_admin fired privilege_escalation"

# Five wrong passwords from 127.0.0.1: one failed_logins alert, NOTIFYed.
for i in 1 2 3 4 5; do tcp regress_app "wrong-$i" e2e_bad; done
wait_lines "$DIR/alerts.txt" '"rule" : "failed_logins"' 1 60
is "$?" "0" "the listener receives failed_logins"
is "$(q -d postgres -c "SELECT count(*), min(key), min(count), min(severity) FROM audit.alerts WHERE rule = 'failed_logins'")" \
   "1|127.0.0.1|5|high" "exactly one failed_logins alert, keyed by the client address, counting 5 events"
payload=$(grep '"rule" : "failed_logins"' "$DIR/alerts.txt" | head -1 | cut -d' ' -f3-)
# Anyone may LISTEN: the payload names the alert and is signed; its key (here
# a client address) and events are in audit.alerts, for the audit roles only.
is "$(echo "SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys((:'p')::jsonb) k)" | q -d postgres -v p="$payload")" \
   "{alert_id,database,fired_at_us,rule,severity,signature}" "the payload carries alert_id, rule, severity, database, time and a signature, nothing else"
is "$(q -d postgres -v p="$payload" <<< "SELECT a.alert_id = ((:'p')::jsonb->>'alert_id')::bigint
            AND (SELECT count(*) FROM audit.event e WHERE e.id BETWEEN a.first_event_id AND a.last_event_id
                    AND e.action = 'LOGIN_FAILED' AND e.client_addr = '127.0.0.1') = 5
       FROM audit.alerts a WHERE a.rule = 'failed_logins'")" "t" "payload and stored alert agree; the stored event ids span the 5 failures"
is "$(q -d postgres -v p="$payload" <<< "SELECT audit.alert_is_genuine(:'p')")" "t" "audit.alert_is_genuine() accepts the real payload"
forged=$(q -d postgres -v p="$payload" <<< "SELECT jsonb_set((:'p')::jsonb, '{severity}', '\"low\"')::text")
is "$(q -d postgres -v p="$forged" <<< "SELECT audit.alert_is_genuine(:'p')")" "f" "... and refuses it altered"
forged=$(q -d postgres -v p="$payload" <<< "SELECT jsonb_set((:'p')::jsonb, '{signature}', to_jsonb(md5('x') || md5('y')))::text")
is "$(q -d postgres -v p="$forged" <<< "SELECT audit.alert_is_genuine(:'p')")" "f" "... or with a signature made up"
is "$(q -d postgres -c "SELECT audit.alert_is_genuine('not json')")" "f" "... or not JSON at all"
# an unprivileged role forges a notification on the channel: listeners get
# it (PostgreSQL has no privilege on NOTIFY), the check tells
forged=$(q -d postgres -v p="$payload" <<< "SELECT jsonb_set((:'p')::jsonb, '{rule}', '\"regress_forged\"')::text")
PGPASSWORD=app-pw psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_app" \
    -c "SELECT pg_notify('audit_alerts', \$f\$$forged\$f\$)" >/dev/null
wait_lines "$DIR/alerts.txt" 'regress_forged' 1 60
is "$?" "0" "any role can send a notification on audit_alerts"
is "$(q -d postgres -v p="$forged" <<< "SELECT audit.alert_is_genuine(:'p')")" "f" "audit.alert_is_genuine() tells it is forged"
# latency: the fifth failed login's event time (its connection) to the alert
echo "# failed login -> alert stored: $(q -d postgres -c "SELECT round(extract(epoch FROM a.fired_at - e.event_time) * 1000) FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id WHERE a.rule = 'failed_logins'") ms"

# Cooldown: three more failures within 10 minutes fire nothing new.
for i in 6 7 8; do tcp regress_app "wrong-$i" e2e_bad; done
wait_for "SELECT count(*) = 8 FROM audit.event WHERE action = 'LOGIN_FAILED'" 60
evaluated
is "$?" "0" "the later failures were evaluated"
is "$(q -d postgres -c "SELECT count(*) FROM audit.alerts WHERE rule = 'failed_logins'")" "1" "cooldown: still one failed_logins alert"
is "$(lines "$DIR/alerts.txt" '"rule" : "failed_logins"')" "1" "and one notification"

# Mass export: a 1,500-row SELECT of a read-audited table.
PGPASSWORD=app-pw psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_app" \
    -c "SELECT * FROM customers WHERE id <= 1500" >/dev/null
PGPASSWORD=app-pw psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_app" \
    -c "SELECT * FROM customers WHERE id <= 10" >/dev/null
wait_lines "$DIR/alerts.txt" '"rule" : "mass_export"' 1 60
is "$?" "0" "the listener receives mass_export"
is "$(q -d postgres -c "SELECT a.key, a.count, e.action, e.detail->>'rows', e.actor FROM audit.alerts a JOIN audit.event e ON e.id = a.first_event_id WHERE a.rule = 'mass_export'")" \
   "regress_app|1|SELECT|1500|regress_app" "mass_export points at the read event of 1,500 rows"
is "$(q -d postgres -c "SELECT string_agg(detail->>'rows', ',' ORDER BY id) FROM audit.event WHERE class = 'read' AND actor = 'regress_app'")" \
   "1500,10" "both reads are recorded with the executor's row counts"
is "$(q -d postgres -c "SELECT records_viewed, exports FROM audit.user_activity('regress_app')")" "1510|1" \
   "audit.user_activity: records viewed and one export"

# What counts as a read: one event per statement and table, rows from the executor.
q -d postgres >/dev/null <<'SQL'
CREATE TABLE plain (id int PRIMARY KEY);
INSERT INTO plain SELECT generate_series(1, 50);
CREATE TABLE m (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE m1 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE m2 PARTITION OF m FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
INSERT INTO m SELECT g, date '2026-01-01' + g FROM generate_series(1, 300) g;
SELECT audit.enable('m', log_reads => true);
CREATE VIEW some_customers AS SELECT id, name FROM customers WHERE id <= 7;
CREATE FUNCTION customer_name(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN (SELECT name FROM customers WHERE id = i); END $$;
SQL
mark=$(q -d postgres -c "SELECT max(id) FROM audit.event")
PGAPPNAME=e2e_reads q -d postgres >/dev/null \
  -c "SELECT count(*) FROM plain" \
  -c "SELECT * FROM m WHERE at >= '2026-06-01'" \
  -c "SELECT * FROM m1" \
  -c "SELECT * FROM some_customers" \
  -c "SELECT customer_name(g) FROM generate_series(1, 4) g" \
  -c "EXPLAIN SELECT * FROM customers" \
  -c "COPY (SELECT * FROM customers WHERE id <= 5) TO STDOUT" \
  -c "COPY customers TO STDOUT" \
  -c "BEGIN" -c "SELECT * FROM customers WHERE id <= 2" -c "ROLLBACK" \
  -c "SELECT p.id FROM plain p JOIN customers c ON c.id = p.id"
wait_for "SELECT count(*) >= 8 FROM audit.event WHERE class = 'read' AND id > $mark AND application_name = 'e2e_reads'" 60
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s', action, table_name, detail->>'rows'), ', ' ORDER BY id) FROM audit.event WHERE class = 'read' AND id > $mark AND application_name = 'e2e_reads'")" \
   "SELECT m 150, SELECT m 180, SELECT customers 7, SELECT customers 4, COPY customers 5, COPY customers 2000, SELECT customers 2, SELECT customers 50" \
   "reads: partitioned table (once), partition (as its root), view, function per row (once), COPY, rolled back, join; no event for unaudited tables or EXPLAIN"

# Cursors: each FETCH is a read, with the DECLARE's text, whether the
# transaction commits or rolls back (up to 1.3: nothing when it rolled back,
# "COMMIT;" and the last FETCH's rows when it committed).
mark=$(q -d postgres -c "SELECT max(id) FROM audit.event")
PGAPPNAME=e2e_cursor q -d postgres >/dev/null \
  -c "BEGIN" -c "DECLARE c CURSOR FOR SELECT * FROM customers WHERE id <= 10" -c "FETCH 3 FROM c" -c "FETCH ALL FROM c" -c "ROLLBACK" \
  -c "BEGIN" -c "DECLARE d CURSOR FOR SELECT * FROM customers WHERE id <= 6" -c "FETCH ALL FROM d" -c "COMMIT"
wait_for "SELECT count(*) >= 3 FROM audit.event WHERE class = 'read' AND id > $mark AND application_name = 'e2e_cursor'" 60
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s %s', action, detail->>'rows', detail->>'cursor', s.statement_text), ' | ' ORDER BY e.id)
                         FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE class = 'read' AND id > $mark AND application_name = 'e2e_cursor'")" \
   "SELECT 3 true DECLARE c CURSOR FOR SELECT * FROM customers WHERE id <= ? | SELECT 7 true DECLARE c CURSOR FOR SELECT * FROM customers WHERE id <= ? | SELECT 6 true DECLARE d CURSOR FOR SELECT * FROM customers WHERE id <= ?" \
   "cursor reads: each FETCH with its rows and the DECLARE's text, rolled back or committed"

# An aggregate returns one row and reads the whole table: rows_read, which
# the mass-export rule also looks at.
q -d postgres -q -c "CREATE ROLE regress_agg LOGIN PASSWORD 'agg-pw'" -c "GRANT SELECT ON customers TO regress_agg" >/dev/null
mark=$(q -d postgres -c "SELECT max(id) FROM audit.event")
PGPASSWORD=agg-pw psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_agg" \
    -c "SELECT length(string_agg(name, ',')) FROM customers" >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.event WHERE class = 'read' AND id > $mark AND db_user = 'regress_agg'" 60
is "$(q -d postgres -c "SELECT detail->>'rows', detail->>'rows_read' FROM audit.event WHERE class = 'read' AND id > $mark AND db_user = 'regress_agg'")" \
   "1|2000" "string_agg over the table: 1 row returned, 2000 read"
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'mass_export' AND key = 'regress_agg'" 60
is "$?" "0" "mass_export fires for it (rows_read)"

# The extended protocol (prepared statements): the portal ends after its
# message, the statement text is still recorded.
echo "SELECT * FROM customers WHERE id <= 3;" > "$DIR/prepared.sql"
mark=$(q -d postgres -c "SELECT max(id) FROM audit.event")
PGAPPNAME=e2e_prepared pgbench -n -M prepared -t 3 -f "$DIR/prepared.sql" postgres >/dev/null 2>&1
wait_for "SELECT sum(coalesce((detail->>'repeated')::int, 1)) >= 3 FROM audit.event WHERE class = 'read' AND id > $mark AND application_name = 'e2e_prepared'" 60
# (a backend's run of identical reads is one event, then one with "repeated": n: queue.c)
is "$(q -d postgres -c "SELECT sum(coalesce((detail->>'repeated')::int, 1)), min(detail->>'rows'), min(s.statement_text) FROM audit.event e JOIN audit.statement s USING (statement_id) WHERE class = 'read' AND id > $mark AND application_name = 'e2e_prepared'")" \
   "3|3|SELECT * FROM customers WHERE id <= ?;" "prepared statements (extended protocol): every read counted, with rows and statement text"

# Reads inside writes: INSERT ... SELECT and CREATE TABLE AS read the
# read-audited table (reading.md): one read event each, with the rows read.
mark=$(q -d postgres -c "SELECT max(id) FROM audit.event")
PGAPPNAME=e2e_rw q -d postgres -c "CREATE TABLE cust_copy AS SELECT * FROM customers WHERE id <= 7" \
    -c "INSERT INTO cust_copy SELECT * FROM customers WHERE id BETWEEN 8 AND 10" >/dev/null
wait_for "SELECT count(*) >= 2 FROM audit.event WHERE class = 'read' AND id > $mark AND application_name = 'e2e_rw'" 60
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s', e.table_name, e.detail->>'rows', s.statement_text), E'\n' ORDER BY e.id) FROM audit.event e LEFT JOIN audit.statement s USING (statement_id) WHERE class = 'read' AND id > $mark AND application_name = 'e2e_rw'")" \
   "customers 7 CREATE TABLE cust_copy AS SELECT * FROM customers WHERE id <= ?
customers 3 INSERT INTO cust_copy SELECT * FROM customers WHERE id BETWEEN ? AND ?" \
   "CREATE TABLE AS and INSERT ... SELECT from a read-audited table: a read event each, with its rows and text"

# Acknowledgement, and who may read alerts.
id=$(q -d postgres -c "SELECT alert_id FROM audit.alerts WHERE rule = 'failed_logins'")
is "$(q -d postgres -c "SET ROLE regress_admin" -c "SELECT acknowledged_by, note FROM audit.acknowledge_alert($id, note => 'checked with the user')" | tail -1)" \
   "regress_admin|checked with the user" "audit_admin acknowledges an alert"
is "$(q -d postgres -c "SELECT string_agg(rule, ',' ORDER BY rule) FROM audit.alerts WHERE acknowledged_at IS NULL")" \
   "mass_export,mass_export,mass_export,privilege_escalation" "the others stay open (COPY customers above and the aggregate were mass exports too)"
is "$(q -d postgres -c "SET ROLE regress_reader" -c "SELECT count(*) FROM audit.alerts" | tail -1)" "5" "audit_reader reads the alerts"
is "$(psql -X -At -d postgres -U regress_nobody -c "SELECT count(*) FROM audit.alerts" 2>&1 | grep -c 'permission denied for table alerts')" "1" \
   "other roles cannot read them"
is "$(psql -X -At -d postgres -U regress_nobody -c "SELECT audit.acknowledge_alert($id)" 2>&1 | grep -c 'has no administrative access to the security audit')" "1" \
   "nor acknowledge them"
is "$(psql -X -At -d postgres -U regress_reader -c "SELECT audit.create_alert_rule(name => 'x', class => 'auth')" 2>&1 | grep -c 'has no administrative access')" "1" \
   "audit_reader cannot make rules"

# Event ids are not commit order: a transaction that got its ids first and
# commits last is still evaluated.
q -d postgres >/dev/null <<'SQL'
CREATE TABLE payments (id int PRIMARY KEY, amount int);
SELECT audit.enable('payments');
INSERT INTO payments SELECT g, g FROM generate_series(1, 10) g;
SELECT audit.create_alert_rule(name => 'payment_deleted', class => 'data', action => 'DELETE',
                               table_name => 'public.payments', group_by => 'actor', cooldown => '0');
SQL
sess_open slow -d postgres
sess_run slow "BEGIN; SET LOCAL audit_ext.actor = 'slow'; DELETE FROM payments WHERE id = 1;"
q -d postgres -c "SET audit_ext.actor = 'fast'" -c "DELETE FROM payments WHERE id = 2" >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'payment_deleted' AND key = 'fast'" 60
is "$?|$(q -d postgres -c "SELECT count(*) FROM audit.alerts WHERE rule = 'payment_deleted' AND key = 'slow'")" "0|0" \
   "the later transaction's delete fires first (the earlier one still open)" "$(sess_out slow)"
sess_run slow "COMMIT;"
sess_close slow
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'payment_deleted' AND key = 'slow'" 60
is "$?" "0" "the earlier-numbered delete fires once its transaction commits"
is "$(q -d postgres -c "SELECT bool_and(a.first_event_id < b.first_event_id) FROM audit.alerts a, audit.alerts b WHERE a.key = 'slow' AND b.key = 'fast'")" \
   "t" "(its event id is the lower one)"
# Data events wake no one: the worker looks every audit_ext.alert_interval.
echo "# commit -> alert stored (data event): $(q -d postgres -c "SELECT round(extract(epoch FROM a.fired_at - e.event_time) * 1000) FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id WHERE a.key = 'fast'") ms (includes the statement itself)"

# A writer numbers its events before its transaction has an id a snapshot
# would list (the worker: a failed login's event, numbered, then written at
# its commit).  Held there (its partition locked against writes), a later
# event committed and a round made meanwhile: the round must not pass the
# held id, or its alert never fires (it did not: the round read up to the
# newest visible id).
q -d postgres -c "SELECT audit.create_alert_rule(name => 'held_login_failed', class => 'auth', action => 'LOGIN_FAILED', cooldown => '0')" >/dev/null
evaluated
sess_open locker -d postgres
sess_run locker "BEGIN; LOCK TABLE audit.event_auth IN SHARE MODE;"
# (an unknown role over the socket: its own key for failed_logins, no address)
psql -X -q "host=$DIR port=$PORT dbname=postgres user=regress_no_such_role application_name=e2e_held" -c "SELECT 1" >/dev/null 2>&1
wait_for "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'audit_ext worker' AND wait_event_type = 'Lock')" 30
held=$?
q -d postgres -c "DELETE FROM payments WHERE id = 3" >/dev/null
q -d postgres -c "SELECT audit.evaluate_alerts()" >/dev/null
is "$held|$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE application_name = 'e2e_held'")|$(q -d postgres -c "SELECT count(*) FROM audit.alerts WHERE rule = 'held_login_failed'")" \
   "0|0|0" "the worker's failed-login event is numbered and held (its partition locked); a later delete committed and a round ran"
sess_run locker "COMMIT;"
sess_close locker
wait_for "SELECT count(*) = 1 FROM audit.alerts a JOIN audit.event e ON e.id = a.first_event_id WHERE a.rule = 'held_login_failed' AND e.application_name = 'e2e_held'" 60
is "$?" "0" "once written, the held event fires its alert (the round did not pass it)"
q -d postgres -c "SELECT audit.drop_alert_rule('held_login_failed')" >/dev/null

# Privilege escalation (shipped rule) and a rule on another channel.
listen "$DIR/priv.txt" privilege_alerts
q -d postgres -c "SELECT audit.create_alert_rule(name => 'new_role', class => 'privilege', action => 'CREATE ROLE', channel => 'privilege_alerts', cooldown => '0')" >/dev/null
q -d postgres -c "CREATE ROLE regress_intruder" -c "ALTER ROLE regress_intruder CREATEROLE" -c "GRANT audit_admin TO regress_nobody" >/dev/null
wait_for "SELECT count(*) = 3 FROM audit.alerts WHERE rule = 'privilege_escalation'" 60
is "$?" "0" "privilege_escalation fires for CREATEROLE and for membership in audit_admin"
wait_lines "$DIR/priv.txt" '"rule" : "new_role"' 1 60
is "$?" "0" "a rule's own channel is notified"
is "$(lines "$DIR/priv.txt" 'privilege_escalation')" "0" "and only with that rule's alerts"

# Rules survive a restart; the worker keeps evaluating after it.
before=$(q -d postgres -c "SELECT string_agg(name || ':' || enabled, ',' ORDER BY name) FROM audit.alert_rules")
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w restart -l "$DIR/server.log" >/dev/null)
is "$(q -d postgres -c "SELECT string_agg(name || ':' || enabled, ',' ORDER BY name) FROM audit.alert_rules")" "$before" \
   "the rules are the same after a restart"
q -d postgres -c "DELETE FROM payments WHERE id = 3" >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.alerts WHERE rule = 'payment_deleted' AND key = 'postgres'" 60
is "$?" "0" "alerts fire after the restart"
is "$(q -d postgres -c "SELECT count(*) FROM audit.alerts WHERE rule = 'failed_logins'")" "1" "and old events do not fire again"
# pg_dump/pg_restore: user rules and alerts come back, shipped rules once,
# and restored events are history (a round in the restored database fires nothing).
pg_dump -Fc -d postgres -f "$DIR/alerts.dump"
q -d postgres -c "CREATE DATABASE alerts_restored" >/dev/null
pg_restore -d alerts_restored "$DIR/alerts.dump" 2> "$DIR/restore.err"
is "$?" "0" "pg_restore succeeds"
[ -s "$DIR/restore.err" ] && sed 's/^/# /' "$DIR/restore.err"
is "$(q -d alerts_restored -c "SELECT string_agg(name || ':' || enabled || ':' || builtin, ',' ORDER BY name) FROM audit.alert_rules")" \
   "$(q -d postgres -c "SELECT string_agg(name || ':' || enabled || ':' || builtin, ',' ORDER BY name) FROM audit.alert_rules")" \
   "the rules are restored: the user's from the dump, the shipped ones once"
is "$(q -d alerts_restored -c "SELECT count(*), max(alert_id) FROM audit.alerts")" "$(q -d postgres -c "SELECT count(*), max(alert_id) FROM audit.alerts")" \
   "the alerts are restored"
is "$(q -d alerts_restored -c "SELECT audit.evaluate_alerts()")" "0" "restored events do not fire again"

# The shipped after_hours_login rule, switched on: a login at night fires it,
# once per actor (cooldown one hour).
is "$(q -d postgres -c "SELECT extract(hour FROM now())::int NOT BETWEEN 6 AND 21, count(*) FROM audit.alerts WHERE rule = 'after_hours_login'")" "t|0" \
   "the server's local time is outside 06:00-22:00 ($NIGHT_TZ) and the rule has not fired while disabled"
q -d postgres -c "SELECT audit.set_alert_rule_enabled('after_hours_login', true)" >/dev/null
tcp regress_app app-pw e2e_night
tcp regress_app app-pw e2e_night
wait_for "SELECT count(*) >= 1 FROM audit.alerts WHERE rule = 'after_hours_login' AND key = 'regress_app'" 60
evaluated
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s', key, count, severity), ', ') FROM audit.alerts WHERE rule = 'after_hours_login' AND key = 'regress_app'")" \
   "regress_app 1 medium" "after_hours_login fires for a login at night: one alert for the actor (the second login is in its cooldown; the test's own logins as postgres fire theirs)" \
   "$(q -d postgres -c "SELECT id, action, db_user, actor, event_time FROM audit.event WHERE class = 'auth' AND application_name = 'e2e_night'" 2>&1)"

done_testing
