#!/usr/bin/env bash
# capture => 'wal' (issue 22): a real capture gap, provoked, never silent.
#  - audit_ext.wal_capture_pause holds the capture worker back (it keeps its
#    slot and decodes nothing): system/CAPTURE PAUSED, audit.wait_for_capture()
#    gives up, capture_lag shows the lag
#  - changes made meanwhile, then WAL past max_slot_wal_keep_size and a
#    CHECKPOINT: PostgreSQL invalidates the slot (terminating the worker)
#  - the restarted worker records system/CAPTURE_GAP with the LSN range that
#    holds the lost changes, a WARNING, the shipped critical alert capture_gap
#    fires, audit.verify() reports the gap (capture_gaps, capture_gap_ranges)
#  - capture resumes (CAPTURE RESUMED): changes after the gap are captured;
#    the lost ones are not invented; the chains verify
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/walgap
PORT=$(( ${PGPORT:-5497} + 145 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
# (the checkpointer terminates the worker that holds the slot it invalidates:
# a SIGTERM, not a crash; the log must show no crash)
watch_log "$DIR/server.log"
extra=()
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    extra+=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
pg_start "$DIR" "$PORT" "wal_level = logical" "max_replication_slots = 4" \
    "max_slot_wal_keep_size = '32MB'" "wal_keep_size = 0" "min_wal_size = '32MB'" "max_wal_size = '64MB'" \
    "audit_ext.wal_naptime = 50" "audit_ext.alert_interval = 10" "${extra[@]}" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE gapt (id int PRIMARY KEY, v text);
CREATE TABLE filler (id serial, pad text);
SQL
q -d postgres -c "SELECT audit.enable('gapt', capture => 'wal')" >/dev/null
q -d postgres -c "INSERT INTO gapt VALUES (1, 'before')" >/dev/null
is "$(q -d postgres -c "SELECT audit.wait_for_capture('60 s')")" "t" "wait_for_capture: the worker caught up"
is "$(q -d postgres -c "SELECT string_agg(action || ':' || (record_id ->> 'id'), ',' ORDER BY id) FROM audit.event WHERE class = 'data' AND table_name = 'gapt'")" \
   "INSERT:1" "the change before the pause is captured"

# hold the worker back
q -d postgres -c "ALTER SYSTEM SET audit_ext.wal_capture_pause = on" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT EXISTS (SELECT 1 FROM audit.event WHERE class = 'system' AND action = 'CAPTURE PAUSED')" 60
is "$?" "0" "the worker records system/CAPTURE PAUSED"
is "$(q -d postgres -c "SELECT risk, detail ->> 'setting' FROM audit.event WHERE action = 'CAPTURE PAUSED'")" \
   "high|audit_ext.wal_capture_pause" "the pause event: high risk, names the setting"

from_lsn=$(q -d postgres -c "SELECT pg_current_wal_insert_lsn()")
q -d postgres -c "INSERT INTO gapt VALUES (2, 'lost')" -c "UPDATE gapt SET v = 'lost too' WHERE id = 1" >/dev/null
lost_end=$(q -d postgres -c "SELECT pg_current_wal_insert_lsn()")
is "$(q -d postgres -c "SELECT audit.wait_for_capture('1 s')")" "f" "wait_for_capture gives up while the worker is paused"
sleep_ok=$(q -d postgres -c "SELECT pg_sleep(0.3), seconds_behind > 0 AND bytes_behind > 0 FROM audit.capture_lag" | cut -d'|' -f2)
is "$sleep_ok" "t" "capture_lag shows the lag while paused"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'data' AND table_name = 'gapt'")" "1" "nothing captured while paused"

# WAL past max_slot_wal_keep_size (32 MB): each switch ends a 16 MB segment
for i in 1 2 3 4 5 6; do
    q -d postgres -c "INSERT INTO filler (pad) VALUES ('x')" -c "SELECT pg_switch_wal()" >/dev/null
done
q -d postgres -c "CHECKPOINT" >/dev/null
wait_for "SELECT EXISTS (SELECT 1 FROM audit.event WHERE class = 'system' AND action = 'CAPTURE_GAP')" 60
is "$?" "0" "the invalidated slot is recorded as system/CAPTURE_GAP"
gap=$(q -d postgres -c "SELECT status, risk, detail ->> 'reason',
                               (detail ->> 'from_lsn')::pg_lsn <= '$from_lsn'::pg_lsn,
                               (detail ->> 'to_lsn')::pg_lsn >= '$lost_end'::pg_lsn,
                               detail ->> 'slot' = 'audit_ext_wal_' || (SELECT oid FROM pg_database WHERE datname = 'postgres')
                          FROM audit.event WHERE action = 'CAPTURE_GAP'")
is "$gap" "failure|critical|replication slot invalidated (max_slot_wal_keep_size)|t|t|t" \
   "the gap event: failure, critical, reason, an LSN range that holds the lost changes, the slot"
is "$(grep -c 'audit_ext wal capture: changes between .* were not captured (replication slot invalidated' "$DIR/server.log")" "1" \
   "a WARNING in the server log"
wait_for "SELECT EXISTS (SELECT 1 FROM audit.alerts WHERE rule = 'capture_gap' AND severity = 'critical')" 60
is "$?" "0" "the shipped alert rule capture_gap fires, critical"
is "$(q -d postgres -c "SELECT a.last_event_id = e.id FROM audit.alerts a, audit.event e WHERE a.rule = 'capture_gap' AND e.action = 'CAPTURE_GAP'")" \
   "t" "the alert names the gap event"
v=$(q -d postgres -c "SELECT verified, capture_gaps, capture_gap_ranges[1] = (SELECT (detail ->> 'from_lsn') || '-' || (detail ->> 'to_lsn') || ' (' || (detail ->> 'reason') || ')'
                             FROM audit.event WHERE action = 'CAPTURE_GAP') FROM audit.verify()")
is "$v" "t|1|t" "audit.verify() reports the gap (capture_gaps, its LSN range and reason); the chains still verify"
is "$(q -d postgres -c "SELECT capture_gaps FROM audit.verify(now() - interval '1 day', now() - interval '1 hour')")" "0" \
   "verify() of a period without the gap reports none"
is "$(q -d postgres -c "SELECT wal_status FROM pg_replication_slots WHERE slot_name LIKE 'audit_ext_wal_%'")" "reserved" \
   "the worker made a new slot"

# resume: new changes are captured, the lost ones are not invented
q -d postgres -c "ALTER SYSTEM RESET audit_ext.wal_capture_pause" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT EXISTS (SELECT 1 FROM audit.event WHERE class = 'system' AND action = 'CAPTURE RESUMED')" 60
is "$?" "0" "the worker records system/CAPTURE RESUMED"
q -d postgres -c "INSERT INTO gapt VALUES (3, 'after')" -c "DELETE FROM gapt WHERE id = 2" >/dev/null
is "$(q -d postgres -c "SELECT audit.wait_for_capture('60 s')")" "t" "capture resumes after the gap"
is "$(q -d postgres -c "SELECT string_agg(action || ':' || (record_id ->> 'id') || ':' || coalesce(old_data ->> 'v', '-'), ',' ORDER BY id) FROM audit.event WHERE class = 'data' AND table_name = 'gapt'")" \
   "INSERT:1:-,INSERT:3:-,DELETE:2:lost" \
   "events after the gap are captured (the DELETE still has its old row); the lost INSERT and UPDATE are not invented"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE action = 'CAPTURE_GAP'")" "1" "one gap, recorded once"
is "$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the chains verify"
done_testing
