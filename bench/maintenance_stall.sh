#!/usr/bin/env bash
# Partition maintenance next to an open audited transaction.  A new session
# holds its first audited transaction open for 12 s; meanwhile two pgbench
# clients write audited rows (-N: pgbench_accounts, audited) and, 2 s in,
# partition maintenance runs as the maintenance worker runs it
# (lock_timeout = 5s):
#   create: audit.create_partitions(4) -- the partitions of two coming months
#   prune:  audit.prune() of a month older than the retention (2020-01)
# Reports how long maintenance took, whether it succeeded, and the clients'
# TPS per second (the lowest second shows a stall).  Own throwaway cluster on
# port 5490.  Usage: ROUNDS=2 bash bench/maintenance_stall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgenv.sh
ROUNDS=${ROUNDS:-2}
DIR=/tmp/audit_maint_stall
rm -rf "$DIR"
trap 'pg_stop "$DIR"; rm -rf "$DIR"' EXIT
pg_start "$DIR" 5490 "synchronous_commit = off" "shared_buffers = 512MB" >/dev/null
export PGHOST=$DIR PGPORT=5490 PGUSER=postgres
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }

echo "| round | maintenance | took (s) | result | clients' TPS per second | lowest second |"
echo "|--:|---|--:|---|---|--:|"
for ((r = 1; r <= ROUNDS; r++)); do
    for what in create prune; do
        db=stall_$what
        PGOPTIONS="-c client_min_messages=warning" q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
        pgbench -q -i -s 1 $db >/dev/null 2>&1
        q -d $db -c "SET client_min_messages = warning" -c "CREATE EXTENSION audit_ext" \
          -c "SELECT audit.enable('pgbench_accounts'), audit.enable('pgbench_tellers'), audit.enable('pgbench_branches')" \
          -c "SELECT audit.create_month_partition('data', '2020-01-01')" \
          -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => false)" >/dev/null
        psql -X -q -d $db >/dev/null 2>&1 <<'SQL' &
BEGIN;
UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;
SELECT pg_sleep(12);
COMMIT;
SQL
        long=$!
        pgbench -n -c 2 -j 2 -M prepared -T 10 -P 1 -N $db 2>&1 | grep '^progress' > "$DIR/pgbench.out" &
        bench=$!
        sleep 2
        if [ $what = create ]; then sql="SELECT audit.create_partitions(4) || ' partitions created'"
        else sql="SELECT string_agg(partition || ' ' || action, ', ') FROM audit.prune()"; fi
        t0=$(date +%s.%N)
        res=$(PGOPTIONS='-c lock_timeout=5s' q -d $db -c "$sql" 2>&1 | head -1) || true
        t1=$(date +%s.%N)
        wait $bench $long || true
        tps=$(awk '{printf "%s%.0f", (NR > 1 ? " " : ""), $4}' "$DIR/pgbench.out")
        low=$(awk 'NR == 1 || $4 < m { m = $4 } END { printf "%.0f", m }' "$DIR/pgbench.out")
        printf '| %d | %s | %.2f | %s | %s | %s |\n' "$r" "$what" "$(echo "$t1 - $t0" | bc)" "$res" "$tps" "$low"
    done
done
