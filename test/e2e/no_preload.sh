#!/usr/bin/env bash
# Without shared_preload_libraries the library loads on first use: capture
# must still be complete (events are written at the latest before commit).
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/nopreload
PORT=$(( ${PGPORT:-5497} + 10 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "shared_preload_libraries = ''" || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

is "$(q -d postgres -c "SHOW shared_preload_libraries")" "" "cluster runs without preloading audit_ext"
out=$(q -d postgres -c "CREATE EXTENSION audit_ext" 2>&1)
is "$(echo "$out" | grep -c 'WARNING:  audit_ext is not in shared_preload_libraries: security events')" "1" \
   "CREATE EXTENSION warns that security events need shared_preload_libraries"
is "$(q -d postgres -c "SELECT coalesce(queue_size, -1), enqueued, written, dropped, worker_pid IS NULL FROM audit.worker_status")" "-1|0|0|0|t" \
   "audit.worker_status without preloading: one row, NULL size and worker, zero counters"
q -d postgres >/dev/null <<'SQL'
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT audit.enable('t');
SQL
# a fresh session: the first statement loads the library inside the trigger
q -d postgres -c "BEGIN; SET LOCAL audit_ext.actor = 'early'; INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g; UPDATE t SET v = 'y' WHERE id = 1; COMMIT;" >/dev/null
is "$(q -d postgres -c "SELECT count(*), min(actor) FROM audit.event WHERE class = 'data'")" "11|early" \
   "all events of the first transaction are written, actor set before the library loaded"
q -d postgres -c "BEGIN; INSERT INTO t VALUES (100, 'z'); ROLLBACK;" >/dev/null
# visibility: another session sees the events of an open transaction only once it commits
sess_open np -d postgres
sess_run np "BEGIN; INSERT INTO t VALUES (200, 'open');"
is "$?|$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE record_id = '{\"id\": 200}'")" "0|0" \
   "without preloading: the events of an open transaction are invisible to others" "$(sess_out np)"
sess_run np "COMMIT;"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE record_id = '{\"id\": 200}'")" "1" "and visible once it commits" "$(sess_out np)"
sess_close np
# chains: every event hashed, the chains verify
is "$(q -d postgres -c "SELECT count(*) FILTER (WHERE hash IS NULL) FROM audit.event")|$(q -d postgres -c "SELECT verified, breaks, unverifiable_links FROM audit.verify()")" \
   "0|t|0|0" "without preloading: every event is hashed and the chains verify"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE record_id = '{\"id\": 100}'")" "0" "rollback leaves nothing"
# Without the utility hook, a renamed excluded column makes capture fail
# closed (the write is refused) rather than capture the column.
q -d postgres >/dev/null <<'SQL'
CREATE TABLE u (id int PRIMARY KEY, pw text);
SELECT audit.enable('u', exclude_columns => '{pw}');
SQL
psql -X -q -d postgres -c "ALTER TABLE u RENAME COLUMN pw TO secret" >/dev/null
err=$(psql -X -q -d postgres -v VERBOSITY=verbose -c "INSERT INTO u VALUES (1, 'hunter2')" 2>&1)
is "$(echo "$err" | grep -c 'ERROR:  42703: .*named in exclude_columns of audited table "u" does not exist')" "1" \
   "without preloading, a renamed excluded column refuses writes instead of leaking (SQLSTATE 42703)" "$err"
is "$(q -d postgres -c "SELECT count(*) FROM u")" "0" "and nothing was written"

done_testing
