#!/usr/bin/env bash
# A flood cannot push out what matters (issue 18 D): an unprivileged role
# floods the security-event queue with refused statements while 40 failed
# logins happen (and, the worker held, the application's own failed logins
# after a queue full of refusals); every failed login is recorded, identical refusals are
# coalesced into one event with a count, distinct ones beyond a backend's
# rate are dropped and counted per class in a QUEUE_OVERFLOW event.  A small
# queue (audit_ext.queue_size = 500) and low per-session limits (500 + 50/s
# refusals, 200 + 10/s new statement texts; 2,000 + 500/s and 2,000 + 100/s by
# default) make the flood reach its limits fast, on a slow machine too.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/queue_flood
PORT=$(( ${PGPORT:-5497} + 75 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start_scram "$DIR" "$PORT" "audit_ext.database = 'postgres'" \
    "audit_ext.queue_size = 500" "audit_ext.bulk_events_burst = 500" "audit_ext.bulk_events_per_second = 50" \
    "audit_ext.statement_texts_burst = 200" "audit_ext.statement_texts_per_second = 10" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE ROLE regress_flood LOGIN PASSWORD 'pw-flood';
CREATE ROLE regress_victim LOGIN PASSWORD 'pw-victim';
CREATE ROLE regress_app LOGIN PASSWORD 'pw-app' IN ROLE audit_writer;
CREATE TABLE payroll (id int PRIMARY KEY, salary int);
SELECT audit.enable('payroll');
SQL
flood() {   # SQL of the DO loop's body
    PGPASSWORD=pw-flood psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_flood" -c "$1" >/dev/null 2>&1
}

# --- identical refusals are coalesced ---------------------------------------------
flood "DO \$\$ BEGIN FOR i IN 1..5000 LOOP BEGIN PERFORM * FROM payroll; EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END \$\$"
# an event stands for itself, a summary for its "repeated" occurrences
wait_for "SELECT coalesce(sum(coalesce((detail->>'repeated')::bigint, 1)), 0) = 5000 FROM audit.event
          WHERE class = 'data' AND status = 'failure' AND db_user = 'regress_flood'" 60
got=$?
is "$got" "0" "5,000 identical refused SELECTs are all accounted for: events plus their repeat counts"
is "$(q -d postgres -c "SELECT count(*) <= 20 FROM audit.event WHERE class = 'data' AND status = 'failure' AND db_user = 'regress_flood'")" "t" \
   "... in a handful of events ($(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'data' AND status = 'failure' AND db_user = 'regress_flood'"))"
[ "$got" = 0 ] || q -d postgres -c "SELECT id, detail FROM audit.event WHERE db_user = 'regress_flood' ORDER BY id" | head -20 | sed 's/^/#   /'

# --- distinct refusals flood the queue while 40 logins fail --------------------------
# A DO loop's refusals all carry the DO block's text: coalesced like the above.
# Distinct statements from two clients are the flood a backend cannot coalesce.
distinct() {   # prefix: 20,000 refused statements, each its own text
    seq 1 20000 | sed "s/.*/SELECT $1 FROM payroll WHERE id = &;/" |
        PGPASSWORD=pw-flood psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_flood" >/dev/null 2>&1
}
distinct '*' &
f1=$!
distinct 'salary' &
f2=$!
# the flood is under way: its refusals are being written
wait_for "SELECT count(*) > 100 FROM audit.event WHERE class = 'data' AND status = 'failure' AND detail->>'repeated' IS NULL
          AND db_user = 'regress_flood'" 60
is "$?" "0" "the flood is under way"
for i in $(seq 1 40); do
    PGPASSWORD=wrong psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_victim" -c "SELECT 1" >/dev/null 2>&1 &
done
wait $f1 $f2 2>/dev/null
wait
wait_for "SELECT count(*) = 40 FROM audit.event WHERE action = 'LOGIN_FAILED' AND db_user = 'regress_victim'" 60
is "$?" "0" "all 40 failed logins during the flood are recorded"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE action = 'LOGIN_FAILED' AND db_user = 'regress_victim'")" "40" "... exactly 40"
wait_for "SELECT count(*) > 0 FROM audit.event WHERE action = 'QUEUE_OVERFLOW'" 60
is "$?" "0" "what the flood lost is recorded (QUEUE_OVERFLOW)"
is "$(q -d postgres -c "SELECT bool_and(detail->'by_class' ? 'data') AND NOT bool_or(detail->'by_class' ? 'auth')
                         FROM audit.event WHERE action = 'QUEUE_OVERFLOW'")" "t" \
   "... per class: refused statements (data) were dropped, logins (auth) were not"
lost=$(q -d postgres -c "SELECT sum((detail->>'dropped')::bigint) FROM audit.event WHERE action = 'QUEUE_OVERFLOW'")
kept=$(q -d postgres -c "SELECT sum(coalesce((detail->>'repeated')::bigint, 1)) FROM audit.event
                          WHERE class = 'data' AND status = 'failure' AND db_user = 'regress_flood'")
is "$(( kept + lost ))" "45000" "every refusal is either recorded or counted as dropped ($kept recorded, $lost dropped)"

# --- refusals cannot crowd out the application's events --------------------------------
# The worker held (the data partitions locked against its writes) while
# distinct refusals fill the queue as far as they may: the application's
# failed logins (audit.log_event, survive_rollback) queued next still fit.
# Refusals and application events shared one share of the ring (80 %), so
# any login role could make an application's failed logins be dropped.
sess_open locker -d postgres
sess_run locker "BEGIN; LOCK TABLE audit.event_data IN SHARE MODE;"
seq 1 600 | sed "s/.*/SELECT id FROM payroll WHERE id = & + 100000;/" |
    PGPASSWORD=pw-flood psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_flood" >/dev/null 2>&1
depth=$(q -d postgres -c "SELECT queue_depth FROM audit.worker_status")
# (one connection, as an application's pool would use)
seq 1 40 | sed "s/.*/SELECT audit.log_event('LOGIN_FAILED', 'User', jsonb_build_object('attempt', &), status => 'failure', survive_rollback => true);/" |
    PGPASSWORD=pw-app psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_app" >/dev/null 2>&1
sess_run locker "COMMIT;"
sess_close locker
wait_for "SELECT count(*) = 40 FROM audit.event WHERE class = 'app' AND action = 'LOGIN_FAILED' AND db_user = 'regress_app'" 60
is "$?|$([ "$depth" -ge 250 ] && echo full)" "0|full" \
   "refusals filled the queue as far as they may ($depth of 500 entries) while the worker was held: all 40 application failed logins queued after them are recorded"
wait_for "SELECT queue_depth = 0 FROM audit.worker_status" 60
is "$(q -d postgres -c "SELECT bool_or(detail->'by_class' ? 'data') AND NOT bool_or(detail->'by_class' ? 'app') FROM audit.event WHERE action = 'QUEUE_OVERFLOW'")" "t" \
   "... no application event was dropped (refusals were)"

# --- distinct statement texts are bounded per session ---------------------------------
# Each text is a row of audit.statement; a comment is enough to make a new one.
q -d postgres -q -c "CREATE TABLE flood_t (id int PRIMARY KEY)" -c "ALTER TABLE flood_t OWNER TO regress_flood" \
   -c "SELECT audit.enable('flood_t')" >/dev/null
start=$(date +%s)
seq 1 1000 | sed "s|.*|/* & */ INSERT INTO flood_t VALUES (&);|" |
    PGPASSWORD=pw-flood psql -X -q "host=127.0.0.1 port=$PORT dbname=postgres user=regress_flood" >/dev/null 2>&1
took=$(( $(date +%s) - start + 1 ))
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE table_name = 'flood_t' AND action = 'INSERT'")" "1000" \
   "1,000 INSERTs with distinct comments: every one recorded"
texts=$(q -d postgres -c "SELECT count(DISTINCT statement_id) FROM audit.event WHERE table_name = 'flood_t' AND action = 'INSERT'")
# at most the burst, what the rate refilled while they ran, and the placeholder
is "$([ "$texts" -le $(( 200 + 10 * took + 1 )) ] && [ "$texts" -lt 1000 ] && echo bounded)" "bounded" \
   "... but at most the session's burst and rate of new texts are stored ($texts distinct in about $took s)"
is "$(q -d postgres -c "SELECT count(*) > 0 FROM audit.event e JOIN audit.statement s USING (statement_id)
                         WHERE e.table_name = 'flood_t' AND s.statement_text LIKE '[statement text not stored:%'")" "t" \
   "the others refer to one placeholder text that says why"
wait_for "SELECT count(*) >= 1 FROM audit.event WHERE action = 'STATEMENT_TEXT_LIMIT' AND db_user = 'regress_flood'" 60
is "$?" "0" "the session reaching the limit is a system event"

done_testing
