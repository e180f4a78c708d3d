#!/usr/bin/env bash
# CPU time per pgbench transaction, by process, for WAL capture mode
# (issue 22 section 2): a fixed number of transactions per step, so the
# figure depends far less on how busy a shared machine is than TPS does.
#
#   bash bench/cpu_probe.sh                 (as root; TXNS=20000 REPS=3)
#   VARS="base wal walp" bash bench/cpu_probe.sh
#
# Variants, each in its own database of a throwaway cluster (PORT, default
# 5499; BENCH_DIR, default /tmp/audit_cpu_probe; same settings as
# bench/run.sh): base (no trail), wal (the three pgbench tables audited with
# capture => 'wal'), wal0 (the same, capture worker at
# audit_ext.wal_capture_nice = 0), walp (wal with the worker paused during the
# step, then let go).  Per step: CHECKPOINT, pgbench -c 2 -j 2 -M prepared
# -t TXNS/2, wait until the worker has written every event (drain), then CPU
# ticks from /proc: every live child of the postmaster plus the postmaster's
# own and reaped children's (exited backends), the capture worker's apart.
# Prints CSV: server CPU ms per transaction without the worker, the worker's
# ms per transaction, WAL bytes per transaction, and the logical-message
# records and bytes of the step (pg_waldump --stats=record).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (the cluster runs as user postgres)" >&2; exit 1; }
# shellcheck source=scripts/pgenv.sh
source "$ROOT/scripts/pgenv.sh"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
D=${BENCH_DIR:-/tmp/audit_cpu_probe}
PORT=${PORT:-5499}
TXNS=${TXNS:-20000}
REPS=${REPS:-3}
VARS=${VARS:-base wal wal0 walp}
pg_stop "$D"; rm -rf "$D"
trap 'pg_stop "$D"; rm -rf "$D"' EXIT
PLUGIN_CONF=()
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    PLUGIN_CONF=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
pg_start "$D" "$PORT" "${BENCH_PG_CONF[@]}" \
    "wal_level = logical" "max_replication_slots = 10" "${PLUGIN_CONF[@]}" >/dev/null || exit 1
HZ=$(getconf CLK_TCK)
q() { psql -X -q -At -d "$@"; }
for v in $VARS; do
    createdb "bench_$v"
    pgbench -i -s 10 -q "bench_$v" >/dev/null 2>&1
    if [ "$v" != base ]; then
        q "bench_$v" -c "CREATE EXTENSION audit_ext" >/dev/null
        [ "$v" = wal0 ] && q "bench_$v" -c "ALTER DATABASE bench_wal0 SET audit_ext.wal_capture_nice = 0" >/dev/null
        for t in pgbench_accounts pgbench_tellers pgbench_branches; do
            q "bench_$v" -v ON_ERROR_STOP=1 -c "SELECT audit.enable('$t', capture => 'wal')" >/dev/null || exit 1
        done
    fi
    q "bench_$v" -c "VACUUM ANALYZE" >/dev/null
done
ticks_pid() { local f; read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }
worker_pid() { q postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'audit_ext wal capture' AND datname = 'bench_$1'"; }
drain() {
    local lsn i
    lsn=$(q "bench_$1" -c "SELECT pg_current_wal_insert_lsn()")
    for ((i = 0; i < 6000; i++)); do
        [ "$(q "bench_$1" -c "SELECT coalesce((SELECT done_lsn >= '$lsn'::pg_lsn FROM audit.capture_lag), false)")" = t ] && return
        sleep 0.05
    done
}
pause() { q postgres -c "ALTER SYSTEM SET audit_ext.wal_capture_pause = $1" -c "SELECT pg_reload_conf()" >/dev/null; }
echo "variant,rep,txns,secs,server_ms_per_txn,worker_ms_per_txn,wal_bytes_per_txn,msg_records,msg_bytes"
for ((r = 1; r <= REPS; r++)); do
    for v in $VARS; do
        q "bench_$v" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" -c "CHECKPOINT" >/dev/null
        [ "$v" = walp ] && { pause on; sleep 1; }
        w=""
        [ "$v" != base ] && w=$(worker_pid "$v")
        l0=$(q postgres -c "SELECT pg_current_wal_insert_lsn()")
        t0=$(bench_server_ticks "$D"); w0=0; [ -n "$w" ] && w0=$(ticks_pid "$w")
        s0=$(date +%s.%N)
        pgbench -n -c 2 -j 2 -M prepared -t $((TXNS / 2)) "bench_$v" >/dev/null 2>&1
        s1=$(date +%s.%N)
        l1=$(q postgres -c "SELECT pg_current_wal_insert_lsn()")
        [ "$v" = walp ] && pause off
        [ "$v" != base ] && drain "$v"
        t1=$(bench_server_ticks "$D"); w1=0; [ -n "$w" ] && w1=$(ticks_pid "$w")
        sleep 1
        msg=$(cd / && runuser -u postgres -- "$PGBIN/pg_waldump" -p "$D/data/pg_wal" -s "$l0" -e "$l1" --stats=record 2>/dev/null |
              awk '/LogicalMessage\/MESSAGE/ {gsub(/\([^)]*\)/, ""); print $2 "," $3}')
        wal=$(q postgres -c "SELECT pg_wal_lsn_diff('$l1', '$l0')::bigint")
        awk -v v="$v" -v r="$r" -v n="$TXNS" -v a="$s0" -v b="$s1" -v t=$((t1 - t0)) -v w=$((w1 - w0)) -v hz="$HZ" -v wal="$wal" -v m="${msg:-0,0}" \
            'BEGIN { printf "%s,%d,%d,%.1f,%.4f,%.4f,%d,%s\n", v, r, n, b - a, (t - w) * 1000 / hz / n, w * 1000 / hz / n, wal / n, m }'
    done
done
