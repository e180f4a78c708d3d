#!/usr/bin/env bash
# Capture switched off where no statement records it (issue 18 C leftovers,
# 1.5).  A superuser edits pg_trigger (tgenabled = 'D') on each audit
# trigger of a table and of a partition, and disables the extension's event
# trigger: audit.check_capture() records one critical ddl event CAPTURE OFF
# per change ("capture_off", "found_by"), never twice; turned back on and off
# again, again; a change made by a recorded statement (ALTER TABLE ... DISABLE
# TRIGGER) is not recorded a second time; the shipped audit_disabled alert
# fires; the maintenance worker finds a change on its own (interval lowered
# to 1 s by a reload; bounded polls).  A refused rename (or replacement) of an
# audit trigger is recorded although the statement failed; DETACH PARTITION
# CONCURRENTLY of a partition of an audited table is recorded like DETACH.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/capture_check
PORT=$(( ${PGPORT:-5497} + 97 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 3600" \
    "audit_ext.alert_interval = 10" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

sqlstate() {   # psql args: the SQLSTATE of the error, or "ok"
    local out
    out=$(psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$@" 2>&1) && { echo ok; return; }
    echo "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-
}
mark() { MARK=$(q -d postgres -c "SELECT coalesce(max(id), 0) FROM audit.event"); }
# the CAPTURE OFF / CAPTURE ON events after the mark: "action table trigger found_by" per line
found() {
    q -d postgres -c "SELECT action, coalesce(table_name, '-'), coalesce((SELECT string_agg(k, ',') FROM jsonb_object_keys(detail -> 'audit_triggers') k),
                             detail ->> 'event_trigger'), detail ->> 'found_by'
                        FROM audit.event WHERE id > $MARK AND class = 'ddl' AND action IN ('CAPTURE OFF', 'CAPTURE ON')
                       ORDER BY id" -F ' '
}
check() { q -d postgres -c "SELECT count(*) FROM audit.check_capture() WHERE recorded" ; }
tg() {   # table trigger state: UPDATE pg_trigger as a superuser would
    q -d postgres -c "UPDATE pg_catalog.pg_trigger SET tgenabled = '$3' WHERE tgrelid = '$1'::regclass AND tgname = '$2'" >/dev/null
}

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT audit.enable('t');
CREATE TABLE pt (id int, v text) PARTITION BY RANGE (id);
CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
CREATE TABLE pt2 PARTITION OF pt FOR VALUES FROM (100) TO (200);
SELECT audit.enable('pt');
INSERT INTO pt SELECT g, 'x' FROM generate_series(1, 150) g;
SQL

mark
is "$(check)" "0" "nothing to record while every trigger fires"
is "$(q -d postgres -c "SELECT count(*) FROM audit.capture_watch")" "11" \
   "audit.capture_watch knows the eight audit triggers (t, pt, pt1, pt2) and the three event triggers (partitions and children, table names, drops)"

tg t audit_ext_row D
is "$(check)" "1" "UPDATE pg_trigger on the row trigger: check_capture() records it"
is "$(check)" "0" "... once: the next check records nothing"
tg t audit_ext_truncate D
tg pt1 audit_ext_row D
q -d postgres -c "ALTER EVENT TRIGGER audit_ext_ddl_command_end DISABLE" >/dev/null
is "$(check)" "3" "the truncate trigger, a partition's row trigger and the event trigger: three more"
is "$(check)" "0" "... once"
is "$(found)" "CAPTURE OFF t audit_ext_row audit.check_capture()
CAPTURE OFF - audit_ext_ddl_command_end audit.check_capture()
CAPTURE OFF pt1 audit_ext_row audit.check_capture()
CAPTURE OFF t audit_ext_truncate audit.check_capture()" "one CAPTURE OFF event per change, naming the table and trigger"
is "$(q -d postgres -c "SELECT count(*) FILTER (WHERE detail @> '{\"capture_off\": true, \"risk\": \"critical\"}'),
                                count(*) FILTER (WHERE detail @> '{\"audit_trigger_disabled\": true}'),
                                count(*) FILTER (WHERE detail @> '{\"audit_protection_off\": true, \"event_trigger\": \"audit_ext_ddl_command_end\"}'),
                                count(*) FILTER (WHERE detail @> '{\"audited_table\": \"public.pt\"}')
                           FROM audit.event WHERE id > $MARK AND action = 'CAPTURE OFF'")" "4|3|1|1" \
   "critical, capture_off; audit_trigger_disabled on table triggers, audit_protection_off on the event trigger, the partition's audited table"
is "$(q -d postgres -c "SELECT protection_off_events >= 1 FROM audit.verify()")" "t" "audit.verify() counts the event trigger switched off"
wait_for "SELECT count(*) = 3 FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id
          WHERE a.rule = 'audit_disabled' AND e.action = 'CAPTURE OFF' AND e.table_name IS NOT NULL" 30
is "$?" "0" "the shipped audit_disabled alert fires for each table" \
   "$(q -d postgres -c "SELECT a.rule, a.key, e.action, e.table_name FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id")"

# back on and off again, the same way: recorded again
mark
tg t audit_ext_row O
is "$(check)" "1" "turned back on by UPDATE pg_trigger: recorded (CAPTURE ON)"
tg t audit_ext_row D
is "$(check)" "1" "... and off again: recorded again"
is "$(found)" "CAPTURE ON t audit_ext_row audit.check_capture()
CAPTURE OFF t audit_ext_row audit.check_capture()" "CAPTURE ON, then CAPTURE OFF"

# changes recorded by their statements are not recorded twice
mark
q -d postgres -c "ALTER TABLE t ENABLE TRIGGER audit_ext_row" >/dev/null
is "$(check)" "0" "ALTER TABLE ... ENABLE TRIGGER (recorded by the statement): nothing more"
q -d postgres -c "ALTER TABLE t DISABLE TRIGGER audit_ext_row" >/dev/null
is "$(check)" "0" "ALTER TABLE ... DISABLE TRIGGER (recorded by the statement): nothing more"
is "$(found)" "" "no CAPTURE event for changes their statements recorded"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND detail ? 'audit_trigger_disabled'")" "1" \
   "... the statement's own flagged event is there"
q -d postgres -c "ALTER TABLE t ENABLE TRIGGER audit_ext_row" >/dev/null
q -d postgres -c "ALTER EVENT TRIGGER audit_ext_ddl_command_end ENABLE" >/dev/null
tg t audit_ext_truncate O
tg pt1 audit_ext_row O
check >/dev/null
is "$(q -d postgres -c "SELECT string_agg(capture_state, ',') FROM audit.audited_tables")" "capturing,capturing" "everything captures again"

# audit_admin may run it, others are told no
q -d postgres -q -c "CREATE ROLE regress_plain LOGIN" -c "CREATE ROLE regress_admin LOGIN IN ROLE audit_admin" >/dev/null
is "$(sqlstate -d postgres -U regress_plain -c "SELECT * FROM audit.check_capture()")" "42501" "a plain role may not run audit.check_capture()"
is "$(sqlstate -d postgres -U regress_admin -c "SELECT * FROM audit.check_capture()")" "ok" "audit_admin may"

# the maintenance worker does it on its own
mark
tg pt2 audit_ext_truncate D
q -d postgres -c "ALTER SYSTEM SET audit_ext.maintenance_interval = 1" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) >= 1 FROM audit.event WHERE id > $MARK AND action = 'CAPTURE OFF' AND table_name = 'pt2'" 60
is "$?" "0" "the maintenance worker finds a trigger switched off by UPDATE pg_trigger" \
   "$(found; tail -n 20 "$DIR/server.log")"
# a later change found proves later rounds ran: the first is still recorded once
tg pt2 audit_ext_row D
wait_for "SELECT count(*) >= 1 FROM audit.event WHERE id > $MARK AND action = 'CAPTURE OFF' AND table_name = 'pt2'
          AND detail ? 'audit_triggers' AND detail -> 'audit_triggers' ? 'audit_ext_row'" 60
is "$?" "0" "... and a later change in a later round" "$(found)"
is "$(found)" "CAPTURE OFF pt2 audit_ext_truncate maintenance
CAPTURE OFF pt2 audit_ext_row maintenance" "each once, found_by maintenance"
q -d postgres -c "ALTER SYSTEM RESET audit_ext.maintenance_interval" -c "SELECT pg_reload_conf()" >/dev/null
# a round that was running finishes (it would find the hand edits below
# before the test's own check does); none follows for an hour
wait_for "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'audit_ext maintenance'" 60
tg pt2 audit_ext_truncate O
tg pt2 audit_ext_row O

# a refused change of an audit trigger is recorded, although it failed
mark
is "$(sqlstate -d postgres -c "ALTER TRIGGER audit_ext_row ON t RENAME TO quiet")" "55000" "renaming an audit trigger is refused"
is "$(sqlstate -d postgres -c "CREATE OR REPLACE TRIGGER audit_ext_truncate AFTER TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()")" \
   "55000" "replacing one is refused"
wait_for "SELECT count(*) = 2 FROM audit.event WHERE id > $MARK AND class = 'ddl' AND status = 'failure'
          AND detail @> '{\"audit_trigger_change_refused\": true}'" 30
is "$?" "0" "both refusals are recorded (through the queue: they survive the rollback)"
is "$(q -d postgres -c "SELECT action, table_name, detail ->> 'trigger', detail ->> 'attempt', s.statement_text
                         FROM audit.event e LEFT JOIN audit.statement s USING (statement_id)
                        WHERE e.id > $MARK AND e.detail ? 'audit_trigger_change_refused' ORDER BY e.id" -F ' | ')" \
   "ALTER TRIGGER | t | audit_ext_row | rename | ALTER TRIGGER audit_ext_row ON t RENAME TO quiet
CREATE TRIGGER | t | audit_ext_truncate | replace | CREATE OR REPLACE TRIGGER audit_ext_truncate AFTER TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()" \
   "with the table, the trigger, the attempt and the statement"

# DETACH PARTITION CONCURRENTLY (two transactions)
mark
out=$(q -d postgres -c "ALTER TABLE pt DETACH PARTITION pt2 CONCURRENTLY" 2>&1)
is "$(q -d postgres -c "SELECT action, table_name, detail ->> 'partition', detail ->> 'partition_rows', detail ->> 'concurrently', detail ->> 'risk'
                         FROM audit.event WHERE id > $MARK AND class = 'ddl' AND detail ? 'partition_detached'" -F ' ')" \
   "ALTER TABLE pt public.pt2 51 true high" "DETACH PARTITION CONCURRENTLY is recorded like DETACH: flagged, the partition and its rows" "$out"
is "$(q -d postgres -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pt2'::regclass AND tgname LIKE 'audit_ext%'")" "0" \
   "the detached partition keeps no audit trigger (its truncate trigger is dropped with the DETACH)"

# triggers gone: by a recorded statement (the detach above), or deleted from pg_trigger by hand
q -d postgres -c "SELECT count(*) FROM audit.check_capture()" >/dev/null   # the on-again edits above
mark
is "$(check)" "0" "the detached partition's row trigger is gone by a recorded statement: nothing new to record"
q -d postgres -c "DELETE FROM pg_catalog.pg_trigger WHERE tgrelid = 't'::regclass AND tgname = 'audit_ext_truncate'" >/dev/null
is "$(check)" "1" "an audit trigger deleted from pg_trigger by hand: check_capture() records it"
is "$(found)" "CAPTURE OFF t audit_ext_truncate audit.check_capture()" "... as CAPTURE OFF of the table, the trigger missing"
is "$(check)" "0" "... once"

is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "audit.verify()"
done_testing
