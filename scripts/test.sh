#!/usr/bin/env bash
# Run the whole audit_ext test suite on a throwaway cluster:
#   pg_regress (sql/, expected/), pgTAP (test/*.sql), end-to-end (test/e2e/*.sh).
# As root on Debian 12 (PostgreSQL 15; PG_MAJOR=17 on Debian 13): installs the Debian packages it needs, builds,
# installs, starts its own cluster on 127.0.0.1:${AUDIT_TEST_PORT:-5497},
# and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

export PG_MAJOR=${PG_MAJOR:-15}
bash scripts/install-deps.sh || exit 1
export PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}   # another PostgreSQL tree may be named (parallel development)
make -s clean >/dev/null 2>&1
make -s PG_CONFIG="$PGBIN/pg_config" || exit 1
make -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null || exit 1

source scripts/pgenv.sh
PORT=${AUDIT_TEST_PORT:-5497}
DIR=$(mktemp -d /tmp/audit_test.XXXXXX)
chmod 755 "$DIR"
# Server logs of failed tests are kept here (each e2e test keeps its own
# clusters' logs; the main cluster's is kept if any check of it fails).
export AUDIT_FAIL_LOGS=${AUDIT_FAIL_LOGS:-$(mktemp -d /tmp/audit_failures.XXXXXX)}
trap 'pg_stop "$DIR/main"; rm -rf "$DIR"; rmdir "$AUDIT_FAIL_LOGS" 2>/dev/null' EXIT
pg_start "$DIR/main" "$PORT" || { cat "$DIR/main/server.log"; exit 1; }
export AUDIT_TEST_TMP=$DIR
source test/e2e/tap.inc >/dev/null   # scan_log, LOG_PROBLEMS
trap 'pg_stop "$DIR/main"; rm -rf "$DIR" "$_sess_dir"; rmdir "$AUDIT_FAIL_LOGS" 2>/dev/null' EXIT

passed=0
failed=0
failures=()
record() {   # name status
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok   - $1"
    else failed=$((failed + 1)); failures+=("$1"); echo "FAIL - $1"; fi
}
# The main cluster's log is scanned after each part, for the lines that part
# added: a crash, signal, TRAP or leak warning is charged to the test that
# caused it (no allow-list: nothing on the main cluster provokes one).
MAINLOG=$DIR/main/server.log
log_mark=0
scan_main() {   # name of the part that just ran
    local hits size
    size=$(stat -c %s "$MAINLOG")
    hits=$(tail -c +$((log_mark + 1)) "$MAINLOG" | head -c $((size - log_mark)) > "$DIR/part.log"; scan_log "$DIR/part.log")
    log_mark=$size
    if [ -n "$hits" ]; then
        echo "$hits" | head -50 | sed 's/^/#   /'
        cp "$DIR/part.log" "$AUDIT_FAIL_LOGS/main_during_$(echo "$1" | tr ' /' '__').log"
        echo "#   the main cluster's log of that part: $AUDIT_FAIL_LOGS/main_during_$(echo "$1" | tr ' /' '__').log"
        record "main server log during $1: no PANIC, signal, TRAP or leak warning" 1
    fi
}

# 1. pg_regress: the SQL surface and its error messages
echo "== pg_regress"
make -s PG_CONFIG="$PGBIN/pg_config" installcheck
rc=$?
if [ $rc -ne 0 ]; then
    for d in regression.diffs output_iso/regression.diffs; do
        [ -f "$d" ] && { echo "== $d"; head -300 "$d"; cp "$d" "$AUDIT_FAIL_LOGS/$(echo "$d" | tr '/' '_')"; }
    done
fi
record "pg_regress" $rc
scan_main "pg_regress"

# 2. pgTAP: behaviour
echo "== pgTAP"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS audit_tap" -c "CREATE DATABASE audit_tap" >/dev/null
psql -X -q -d audit_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION audit_ext" >/dev/null
for t in test/*.sql; do
    pg_prove -d audit_tap "$t"
    rc=$?
    record "pgtap $(basename "$t")" $rc
    scan_main "pgtap $(basename "$t")"
done

# 3. end to end: real connections, several sessions, clusters of their own
echo "== end to end"
for t in test/e2e/*.sh; do
    bash "$t"
    rc=$?
    record "e2e $(basename "$t")" $rc
    scan_main "e2e $(basename "$t")"
done

# 4. capture => 'wal' (issue 22): its pg_regress, isolation and pgTAP files
# need wal_level = logical, so they run on a cluster of their own (port + 150)
echo "== WAL mode (wal_level = logical)"
main_env=("$PGHOST" "$PGPORT")
WALDIR=$DIR/wal
trap 'pg_stop "$WALDIR"; pg_stop "$DIR/main"; rm -rf "$DIR" "$_sess_dir"; rmdir "$AUDIT_FAIL_LOGS" 2>/dev/null' EXIT
wal_extra=()
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    wal_extra+=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
if pg_start "$WALDIR" $((PORT + 150)) "wal_level = logical" "max_replication_slots = 8" "audit_ext.wal_naptime = 50" "audit_ext.wal_test_fault = 'we_poison'" "${wal_extra[@]}"; then
    make -s PG_CONFIG="$PGBIN/pg_config" installcheck REGRESS="$(sed -n 's/^REGRESS_WAL = //p' Makefile)" \
        ISOLATION="$(sed -n 's/^ISOLATION_WAL = //p' Makefile)"
    rc=$?
    if [ $rc -ne 0 ]; then
        for d in regression.diffs output_iso/regression.diffs; do
            [ -f "$d" ] && { echo "== $d"; head -300 "$d"; cp "$d" "$AUDIT_FAIL_LOGS/wal_$(echo "$d" | tr '/' '_')"; }
        done
    fi
    record "pg_regress and isolation, WAL mode" $rc
    psql -X -q -d postgres -c "CREATE DATABASE audit_tap_wal" >/dev/null
    psql -X -q -d audit_tap_wal -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION audit_ext" >/dev/null
    for t in test/wal/*.sql; do
        pg_prove -d audit_tap_wal "$t"
        record "pgtap wal/$(basename "$t")" $?
    done
    hits=$(scan_log "$WALDIR/server.log")
    if [ -n "$hits" ]; then
        echo "$hits" | head -50 | sed 's/^/#   /'
        cp "$WALDIR/server.log" "$AUDIT_FAIL_LOGS/wal_server.log"
        record "WAL-mode cluster log free of crashes, TRAPs and leak warnings" 1
    fi
    pg_stop "$WALDIR"
else
    cat "$WALDIR/server.log"
    record "WAL-mode cluster starts" 1
fi
export PGHOST=${main_env[0]} PGPORT=${main_env[1]}

# The server must not have crashed along the way (the whole log, once more).
pg_stop "$DIR/main"
hits=$(scan_log "$MAINLOG")
if [ -n "$hits" ]; then
    echo "$hits" | head -50 | sed 's/^/#   /'
    record "main server log free of crashes, TRAPs and leak warnings" 1
else
    record "main server log free of crashes, TRAPs and leak warnings" 0
fi

echo
if [ $failed -gt 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
    cp "$MAINLOG" "$AUDIT_FAIL_LOGS/main_server.log"
    echo "server logs of the failures are kept in $AUDIT_FAIL_LOGS"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
