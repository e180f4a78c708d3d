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
trap 'pg_stop "$DIR/main"; rm -rf "$DIR"' EXIT
pg_start "$DIR/main" "$PORT" || { cat "$DIR/main/server.log"; exit 1; }
export AUDIT_TEST_TMP=$DIR

passed=0
failed=0
failures=()
record() {   # name status
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok   - $1"
    else failed=$((failed + 1)); failures+=("$1"); echo "FAIL - $1"; fi
}

# 1. pg_regress: the SQL surface and its error messages
echo "== pg_regress"
make -s PG_CONFIG="$PGBIN/pg_config" installcheck
rc=$?
if [ $rc -ne 0 ] && [ -f regression.diffs ]; then head -200 regression.diffs; fi
record "pg_regress" $rc

# 2. pgTAP: behaviour
echo "== pgTAP"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS audit_tap" -c "CREATE DATABASE audit_tap" >/dev/null
psql -X -q -d audit_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION audit_ext" >/dev/null
for t in test/*.sql; do
    pg_prove -d audit_tap "$t"
    rc=$?
    record "pgtap $(basename "$t")" $rc
done

# 3. end to end: real connections, several sessions, clusters of their own
echo "== end to end"
for t in test/e2e/*.sh; do
    bash "$t"
    rc=$?
    record "e2e $(basename "$t")" $rc
done

# The server must not have crashed along the way.
if grep -E "PANIC|terminated by signal|server process .* was terminated" "$DIR/main/server.log"; then
    record "server log free of crashes" 1
else
    record "server log free of crashes" 0
fi

echo
[ $failed -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
