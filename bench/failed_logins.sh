#!/usr/bin/env bash
# Burst of failed logins: N wrong-password logins over TCP (127.0.0.1, SCRAM)
# from a client script, then how long until the last one is queryable in
# audit.event, and whether any was dropped.  Own throwaway cluster on port
# 5492.  Usage: N=5000 PARALLEL=2 bash bench/failed_logins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgenv.sh
N=${N:-5000}
PARALLEL=${PARALLEL:-2}
DIR=/tmp/audit_failed_logins
rm -rf "$DIR"
HBA=$(mktemp /tmp/audit_hba.XXXXXX)
cat > "$HBA" <<'HBA_EOF'
local all postgres trust
host  all all 127.0.0.1/32 scram-sha-256
HBA_EOF
chmod 644 "$HBA"
trap 'pg_stop "$DIR"; rm -rf "$DIR" "$HBA"' EXIT
PG_HBA_FILE=$HBA pg_start "$DIR" 5492 "password_encryption = 'scram-sha-256'" "audit_ext.database = 'postgres'" \
    "max_connections = 200"
psql -X -q -d postgres -c "CREATE EXTENSION audit_ext" -c "CREATE ROLE burst_user LOGIN PASSWORD 'right'" 2>/dev/null

attempt() {   # $1: first, $2: step
    local i
    for ((i = $1; i <= N; i += $2)); do
        PGPASSWORD=wrong psql -X -q -h 127.0.0.1 -p 5492 -U burst_user -d postgres -c 'SELECT 1' >/dev/null 2>&1 || true
    done
}
echo "sending $N failed logins from $PARALLEL client processes..." >&2
t0=$(date +%s.%N)
for ((p = 1; p <= PARALLEL; p++)); do attempt "$p" "$PARALLEL" & done
wait
t1=$(date +%s.%N)
count=0
for _ in $(seq 1 600); do
    count=$(psql -X -At -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'auth' AND action = 'LOGIN_FAILED'")
    dropped=$(psql -X -At -d postgres -c "SELECT dropped FROM audit.worker_status")
    [ "$count" -ge "$N" ] && break
    [ "$((count + dropped))" -ge "$N" ] && break
    sleep 0.05
done
t2=$(date +%s.%N)
status=$(psql -X -At -F ' ' -d postgres -c "SELECT queue_size, enqueued, written, dropped FROM audit.worker_status")
echo "| failed logins sent | client time (s) | logins/s | recorded | dropped | last one queryable after the client finished (s) | queue_size enqueued written dropped |"
echo "|--:|--:|--:|--:|--:|--:|---|"
awk -v n="$N" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c="$count" -v d="$dropped" -v st="$status" \
    'BEGIN { printf "| %d | %.1f | %.0f | %d | %d | %.2f | %s |\n", n, t1 - t0, n / (t1 - t0), c, d, t2 - t1, st }'
