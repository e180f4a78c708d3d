#!/usr/bin/env bash
# capture => 'wal' (issue 22, src/wal_capture.c): events decoded from the WAL.
#  - the same events as trigger mode for the same statements (twin tables),
#    exclude and mask, context (users, actor, application, statement), a
#    rolled-back savepoint, an UPDATE that changes nothing
#  - REPLICA IDENTITY FULL while in WAL mode, restored after
#  - a column added and one dropped while in WAL mode, TRUNCATE
#  - a large transaction (one batch, never split)
#  - switching modes both ways under concurrent writes: nothing lost or doubled
#  - SIGKILL of the capture worker and of the postmaster under load: exactly
#    one event per committed change
#  - nobody else reads or advances the slot; the chains verify
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/walcap
PORT=$(( ${PGPORT:-5497} + 140 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
# the kills below are on purpose
watch_log "$DIR/server.log" 'terminated by signal 9|was terminated by signal 9|terminating any other active server processes|server process .* was terminated by signal 9|database system was interrupted|not properly shut down|could not receive data from client|connection to client lost|unexpected EOF'
extra=()
# some builds load only the output plugins this setting lists
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    extra+=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
pg_start "$DIR" "$PORT" "wal_level = logical" "max_replication_slots = 4" "fsync = on" \
    "audit_ext.wal_naptime = 50" "${extra[@]}" || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

drain() {   # wait until every change committed so far is in the trail
    local lsn
    lsn=$(q -d postgres -c "SELECT pg_current_wal_insert_lsn()")
    wait_for "SELECT coalesce((SELECT done_lsn >= '$lsn'::pg_lsn FROM audit.capture_lag), false)" 120
}

q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE tw (id int PRIMARY KEY, name text, secret text, hidden text, n numeric, at timestamptz, tags text[]);
CREATE TABLE ww (LIKE tw INCLUDING ALL);
SELECT audit.enable('tw', exclude_columns => '{hidden}', mask_columns => '{secret}');
SELECT audit.enable('ww', exclude_columns => '{hidden}', mask_columns => '{secret}', capture => 'wal');
SQL
is "$(q -d postgres -c "SELECT table_oid || ':' || capture FROM audit.audited_tables ORDER BY 1")" "tw:trigger
ww:wal" "audited_tables shows the capture mode"
is "$(q -d postgres -c "SELECT relreplident FROM pg_class WHERE relname = 'ww'")" "f" "WAL mode sets REPLICA IDENTITY FULL"
is "$(q -d postgres -c "SELECT count(*) FROM audit.capture_lag")" "1" "capture_lag has this database's slot"

# audit_ext.wal_capture_nice: the worker lowers its own CPU priority (10 by
# default), further at a reload
wpid=""
for _ in $(seq 1 100); do
    wpid=$(q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'audit_ext wal capture'")
    [ -n "$wpid" ] && break
    sleep 0.1
done
pm_nice=$(ps -o ni= -p "$(head -1 "$DIR/data/postmaster.pid")" | tr -d ' ')
is "$(ps -o ni= -p "$wpid" | tr -d ' ')" "$((pm_nice + 10))" "the capture worker runs at nice +10 (audit_ext.wal_capture_nice)"
q -d postgres -c "ALTER SYSTEM SET audit_ext.wal_capture_nice = 15" -c "SELECT pg_reload_conf()" >/dev/null
ok=0
for _ in $(seq 1 100); do [ "$(ps -o ni= -p "$wpid" | tr -d ' ')" = "$((pm_nice + 15))" ] && { ok=1; break; }; sleep 0.1; done
is "$ok" "1" "a reload applies a higher audit_ext.wal_capture_nice to the running worker"
q -d postgres -c "ALTER SYSTEM RESET audit_ext.wal_capture_nice" -c "SELECT pg_reload_conf()" >/dev/null

# the same statements on both tables
for t in tw ww; do
q -d postgres >/dev/null <<SQL
SET application_name = 'walcap-test';
SET audit_ext.actor = 'alice';
INSERT INTO $t VALUES (1, 'a', 's1', 'h1', 1.50, '2024-01-02 03:04:05+02', '{x,y}'), (2, 'b', 's2', 'h2', 2, NULL, NULL);
UPDATE $t SET name = 'a2', secret = 's1b', hidden = 'h1b' WHERE id = 1;
UPDATE $t SET hidden = 'only hidden' WHERE id = 2;
UPDATE $t SET name = name WHERE id = 2;
BEGIN;
UPDATE $t SET n = n + 1;
SAVEPOINT s;
DELETE FROM $t WHERE id = 1;
ROLLBACK TO s;
INSERT INTO $t VALUES (3, 'c', NULL, NULL, NULL, NULL, NULL);
COMMIT;
BEGIN;
INSERT INTO $t VALUES (4);
ROLLBACK;
DELETE FROM $t WHERE id = 2;
SQL
# a new session: its first message carries everything again
q -d postgres >/dev/null <<SQL
SET audit_ext.actor = 'erin';
SELECT audit.set_context(session_id => 'walcap-2', is_local => false);
UPDATE $t SET n = 7 WHERE id = 3;
BEGIN;
UPDATE $t SET name = 'c2' WHERE id = 3;
SELECT audit.set_context(session_id => 'walcap-3', tenant => 't1');
UPDATE $t SET name = 'c3' WHERE id = 3;
COMMIT;
SQL
done
drain
is "$?" "0" "the capture worker catches up"
cmp_cols="action, record_id, old_data, new_data, changed_columns, db_user, e.session_user AS session_role, actor, application_name, context, statement_seq, s.statement_text"
diffs=$(q -d postgres -c "
    WITH t AS (SELECT row_number() OVER (ORDER BY e.id) AS k, $cmp_cols FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
                WHERE e.class = 'data' AND e.table_name = 'tw'),
         w AS (SELECT row_number() OVER (ORDER BY e.id) AS k, $cmp_cols FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
                WHERE e.class = 'data' AND e.table_name = 'ww')
    SELECT coalesce(t.k, w.k) || ': ' || row(t.*)::text || ' <> ' || row(w.*)::text
      FROM t FULL JOIN w ON t.k = w.k
     WHERE row(t.action, t.record_id, t.old_data, t.new_data, t.changed_columns, t.db_user, t.session_role, t.actor, t.application_name, t.context, t.statement_seq)
           IS DISTINCT FROM row(w.action, w.record_id, w.old_data, w.new_data, w.changed_columns, w.db_user, w.session_role, w.actor, w.application_name, w.context, w.statement_seq)
        OR replace(t.statement_text, 'tw', 'ww') IS DISTINCT FROM w.statement_text")
is "$diffs" "" "WAL mode records the same events as trigger mode (values, exclude, mask, users, actor, application, context, statement; two sessions)"
is "$(q -d postgres -c "SELECT string_agg(DISTINCT context ->> 'session_id', ',' ORDER BY context ->> 'session_id') FROM audit.event WHERE table_name = 'ww'")" "walcap-2,walcap-3" "the contexts of the second session are in its WAL-mode events"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE table_name = 'ww'")" "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE table_name = 'tw'")" "as many events in WAL mode as in trigger mode (no rolled-back change, no unchanged update)"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event e JOIN audit.event t ON t.table_name = 'tw' AND t.txid IS NOT NULL
                         WHERE e.table_name = 'ww' AND e.txid IS NULL")" "0" "WAL events carry their transaction id"

# DDL while in WAL mode, TRUNCATE
q -d postgres >/dev/null <<'SQL'
ALTER TABLE ww ADD COLUMN extra int DEFAULT 7;
UPDATE ww SET extra = 8 WHERE id = 1;
ALTER TABLE ww DROP COLUMN tags;
INSERT INTO ww (id, name) VALUES (10, 'after drop');
TRUNCATE ww;
SQL
drain
is "$(q -d postgres -c "SELECT old_data::text || ' ' || new_data::text FROM audit.event WHERE table_name = 'ww' AND action = 'UPDATE' ORDER BY id DESC LIMIT 1")" \
   '{"extra": 7} {"extra": 8}' "a column added in WAL mode is decoded with its own value"
is "$(q -d postgres -c "SELECT new_data ? 'tags' FROM audit.event WHERE table_name = 'ww' AND action = 'INSERT' ORDER BY id DESC LIMIT 1")" \
   "f" "a dropped column is gone from later events"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE table_name = 'ww' AND action = 'TRUNCATE'")" "1" "TRUNCATE is decoded"

# a large transaction: one batch, never split
q -d postgres -c "INSERT INTO ww (id, name) SELECT g, 'bulk' FROM generate_series(100, 60099) g" >/dev/null
drain
is "$(q -d postgres -c "SELECT count(*), count(DISTINCT txid) FROM audit.event WHERE table_name = 'ww' AND new_data->>'name' = 'bulk'")" \
   "60000|1" "a 60,000-row transaction has its 60,000 events"

# --- switching modes under concurrent writes -----------------------------
q -d postgres >/dev/null <<'SQL'
CREATE TABLE ledger (id bigint PRIMARY KEY, amount int, note text);
CREATE TABLE balance (id int PRIMARY KEY, total bigint);
INSERT INTO balance SELECT g, 0 FROM generate_series(1, 10) g;
CREATE SEQUENCE ledger_id;
SELECT audit.enable('ledger');
SELECT audit.enable('balance', capture => 'wal');
SQL
cat > "$DIR/load.sql" <<'SQL'
\set b random(1, 10)
\set a random(1, 1000)
BEGIN;
INSERT INTO ledger VALUES (nextval('ledger_id'), :a, 'x');
UPDATE balance SET total = total + :a WHERE id = :b;
SAVEPOINT s;
INSERT INTO ledger VALUES (nextval('ledger_id'), -:a, 'undone');
ROLLBACK TO s;
END;
SQL
check_ground_truth() {   # label
    is "$(q -d postgres -c "
        SELECT count(*) FROM ledger l
          FULL JOIN (SELECT (record_id->>'id')::bigint AS id, count(*) AS n, min(new_data->>'amount') AS amount
                       FROM audit.event WHERE table_name = 'ledger' AND action = 'INSERT' GROUP BY 1) e
            ON e.id = l.id
         WHERE e.id IS NULL OR l.id IS NULL OR e.n <> 1 OR e.amount <> l.amount::text")" "0" \
       "$1: ledger rows and INSERT events match one to one"
    is "$(q -d postgres -c "
        SELECT count(*) FROM balance b
          LEFT JOIN (SELECT (record_id->>'id')::int AS id,
                            sum((new_data->>'total')::bigint - (old_data->>'total')::bigint) AS delta
                       FROM audit.event WHERE table_name = 'balance' AND action = 'UPDATE' GROUP BY 1) e
            ON e.id = b.id
         WHERE b.total <> coalesce(e.delta, 0)")" "0" \
       "$1: each balance equals the sum of its recorded changes (none lost, none doubled)"
    is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE new_data->>'note' = 'undone'")" "0" \
       "$1: no event of a rolled-back savepoint"
}
pgbench -n -c 3 -j 2 -T 12 -f "$DIR/load.sql" postgres >/dev/null 2>&1 &
bench=$!
sleep 1
for i in 1 2 3; do
    q -d postgres -c "SELECT audit.enable('ledger', capture => 'wal')" >/dev/null || fail "switch ledger to wal ($i)"
    q -d postgres -c "SELECT audit.enable('balance', capture => 'trigger')" >/dev/null || fail "switch balance to trigger ($i)"
    sleep 1
    q -d postgres -c "SELECT audit.enable('ledger', capture => 'trigger')" >/dev/null || fail "switch ledger to trigger ($i)"
    q -d postgres -c "SELECT audit.enable('balance', capture => 'wal')" >/dev/null || fail "switch balance to wal ($i)"
    sleep 1
done
wait $bench
drain
is "$(q -d postgres -c "SELECT count(*) > 200 FROM ledger")" "t" "the load committed transactions during the switches"
check_ground_truth "mode switches"
is "$(q -d postgres -c "SELECT relreplident FROM pg_class WHERE relname = 'ledger'")" "d" "back in trigger mode, the replica identity is restored"

# --- SIGKILL of the capture worker, then of the postmaster, under load -----
q -d postgres -c "SELECT audit.enable('ledger', capture => 'wal')" >/dev/null
# an option changed later, capture not named: the table keeps its mode
q -d postgres -c "SELECT audit.enable('ledger', log_reads => false)" >/dev/null
is "$(q -d postgres -c "SELECT capture FROM audit.audited_tables WHERE table_name = 'ledger'")" "wal" \
   "audit.enable() without capture keeps the table in WAL mode"
for what in worker postmaster; do
    pgbench -n -c 3 -j 2 -T 20 -f "$DIR/load.sql" postgres >/dev/null 2>&1 &
    bench=$!
    before=$(q -d postgres -c "SELECT count(*) FROM ledger")
    wait_for "SELECT count(*) >= $before + 300 FROM ledger" 60
    if [ "$what" = worker ]; then
        pid=$(q -d postgres -c "SELECT worker_pid FROM audit.capture_lag")
        kill -9 "$pid"
        wait $bench 2>/dev/null
        # the postmaster restarts every process after a crash
        wait_for "SELECT true" 60 >/dev/null
    else
        pm=$(head -1 "$DIR/data/postmaster.pid")
        kill -9 "$pm"
        wait $bench 2>/dev/null
        for _ in $(seq 1 600); do
            [ -z "$(ps -o pid= --ppid "$pm" 2>/dev/null)" ] && ! kill -0 "$pm" 2>/dev/null && break
            sleep 0.1
        done
        rm -f "$DIR/data/postmaster.pid" "$DIR/.s.PGSQL.$PORT.lock"
        (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 120 start >/dev/null) \
            || { echo "not ok - restart after the crash failed"; tail -20 "$DIR/server.log"; exit 1; }
    fi
    for _ in $(seq 1 100); do q -d postgres -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
    drain
    is "$?" "0" "SIGKILL of the $what: the capture worker catches up again"
    check_ground_truth "SIGKILL of the $what"
done
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE action = 'CAPTURE_GAP'")" "0" "no capture gap after the crashes"

# --- nobody else reads or advances the slot ----------------------------------
slot=$(q -d postgres -c "SELECT slot_name FROM audit.capture_lag")
out=$(q -d postgres -c "SELECT count(*) FROM pg_logical_slot_get_changes('$slot', NULL, NULL)" 2>&1)
is "$(echo "$out" | grep -c 'ERROR')" "1" "reading the capture slot from a session is refused" "$out"
out=$(q -d postgres -c "SELECT * FROM pg_create_logical_replication_slot('thief', 'audit_ext')" 2>&1; \
      q -d postgres -c "SELECT count(*) FROM pg_logical_slot_get_changes('thief', NULL, NULL)" 2>&1; \
      q -d postgres -c "SELECT pg_drop_replication_slot('thief')" 2>&1)
is "$(echo "$out" | grep -c 'read only by the audit_ext capture worker')" "1" "the plugin refuses any reader but the capture worker" "$out"

is "$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the hash chains verify"
q -d postgres -c "SELECT audit.disable('ww')" >/dev/null
is "$(q -d postgres -c "SELECT relreplident FROM pg_class WHERE relname = 'ww'")" "d" "disable restores the replica identity"
done_testing
