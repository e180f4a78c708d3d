#!/usr/bin/env bash
# Read auditing overhead and alert latency, on a throwaway cluster.
#
#   bash bench/read_audit.sh                  (as root)
#   DURATION=10 CYCLES=3 bash bench/read_audit.sh
#
# 1. pgbench -S (select-only, prepared, 2 clients, scale SCALE) on
#    pgbench_accounts in three states, interleaved (order rotated per cycle):
#      none   the table is not audited
#      writes audit.enable(pgbench_accounts): changes audited, reads not
#      reads  audit.enable(pgbench_accounts, log_reads => true)
#    median TPS per state and the ratio to "none"; for "reads" also how many
#    read events were recorded and dropped (queue full).
# 2. Event -> NOTIFY latency, received by docs/examples/audit_listen:
#      read:   a SELECT of a read-audited table (rule: min_rows 1, cooldown 0);
#      data:   a committed DELETE on an audited table (rule: cooldown 0);
#      login:  the 5th wrong password (a rule like the shipped failed_logins,
#              grouped by application_name so that each round is a new key).
#    Time from the client starting the statement (or the connection) to the
#    listener receiving the notification; median and max over ROUNDS.
# Knobs: DURATION (s, 20), CYCLES (3), SCALE (10), ROUNDS (20), PORT (5499),
# BENCH_DIR (/tmp/audit_bench_reads), PGBIN.
set -euo pipefail
DURATION=${DURATION:-20}
CYCLES=${CYCLES:-3}
SCALE=${SCALE:-10}
ROUNDS=${ROUNDS:-20}
PORT=${PORT:-5499}
DIR=${BENCH_DIR:-/tmp/audit_bench_reads}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/pgenv.sh"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s -C "$ROOT" PG_CONFIG="$PGBIN/pg_config" listener >/dev/null
LISTEN_BIN=$ROOT/docs/examples/audit_listen
rm -rf "$DIR"
HBA=$(mktemp /tmp/audit_hba.XXXXXX)
cat > "$HBA" <<'HBA_EOF'
local all all trust
host  all postgres 127.0.0.1/32 trust
host  all all 127.0.0.1/32 scram-sha-256
HBA_EOF
chmod 644 "$HBA"
LPID=""
trap '[ -n "$LPID" ] && kill $LPID 2>/dev/null; pg_stop "$DIR"; rm -rf "$DIR" "$HBA"' EXIT
PG_HBA_FILE=$HBA pg_start "$DIR" "$PORT" "audit_ext.database = 'bench'" "synchronous_commit = off" \
    "password_encryption = 'scram-sha-256'" >/dev/null
createdb bench
psql -X -q -d bench -c "CREATE EXTENSION audit_ext" 2>/dev/null
log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -X -q -d bench -c "VACUUM ANALYZE" >/dev/null

set_state() {
    case $1 in
        none)   psql -X -q -d bench -c "SELECT audit.disable('pgbench_accounts')" >/dev/null 2>&1 ;;
        writes) psql -X -q -d bench -c "SELECT audit.enable('pgbench_accounts', log_reads => false)" >/dev/null ;;
        reads)  psql -X -q -d bench -c "SELECT audit.enable('pgbench_accounts', log_reads => true)" >/dev/null ;;
    esac
}
STATES=(none writes reads)
declare -A TPS WCPU
for c in $(seq 1 "$CYCLES"); do
    for k in 0 1 2; do
        s=${STATES[$(( (k + c) % 3 ))]}
        set_state "$s"
        psql -X -q -d bench -c "CHECKPOINT" >/dev/null
        before=$(psql -X -At -d bench -c "SELECT written, dropped FROM audit.worker_status")
        wpid=$(psql -X -At -d bench -c "SELECT worker_pid FROM audit.worker_status")
        cpu0=$(awk '{ print $14 + $15 }' "/proc/$wpid/stat")
        tps=$(pgbench -n -S -M prepared -c 2 -j 2 -T "$DURATION" bench 2>/dev/null | awk '/^tps/ { print $3 }')
        # let the worker finish writing before the next state
        for _ in $(seq 1 600); do
            [ "$(psql -X -At -d bench -c "SELECT queue_depth FROM audit.worker_status")" = 0 ] && break; sleep 0.1
        done
        after=$(psql -X -At -d bench -c "SELECT written, dropped FROM audit.worker_status")
        cpu=$(( $(awk '{ print $14 + $15 }' "/proc/$wpid/stat") - cpu0 ))
        TPS[$s]+="$tps "
        WCPU[$s]+="$(echo "scale=2; $cpu / $(getconf CLK_TCK)" | bc) "
        log "cycle $c $s: $tps tps (written, dropped: $before -> $after; worker CPU ${cpu} ticks)"
        [ "$s" = reads ] && echo "$before $after" >> "$DIR/reads_counts"
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m_none=$(echo "${TPS[none]}" | median)
m_writes=$(echo "${TPS[writes]}" | median)
m_reads=$(echo "${TPS[reads]}" | median)
read_events=$(psql -X -At -d bench -c "SELECT count(*) FROM audit.event WHERE class = 'read'")
dropped=$(psql -X -At -d bench -c "SELECT dropped FROM audit.worker_status")
set_state none

echo
echo "### pgbench -S, scale $SCALE, 2 clients, prepared, ${DURATION} s x $CYCLES cycles (median TPS)"
echo
echo "| pgbench_accounts | TPS (runs) | median | vs not audited | worker CPU s per run (median) |"
echo "|---|---|--:|--:|--:|"
for s in none writes reads; do
    m=$(echo "${TPS[$s]}" | median)
    printf '| %s | %s | %.0f | %.3f | %s |\n' "$s" "${TPS[$s]% }" "$m" "$(echo "$m / $m_none" | bc -l)" "$(echo "${WCPU[$s]}" | median)"
done
echo
echo "read events recorded: $read_events; dropped (queue full): $dropped"

# ---- latency -------------------------------------------------------------
psql -X -q -d bench >/dev/null <<'SQL'
CREATE TABLE watched (id int PRIMARY KEY, v int);
INSERT INTO watched SELECT g, g FROM generate_series(1, 100000) g;
SELECT audit.enable('watched', log_reads => true);
SELECT audit.create_alert_rule(name => 'bench_read', class => 'read', table_name => 'watched', min_rows => 1, cooldown => '0');
SELECT audit.create_alert_rule(name => 'bench_delete', class => 'data', action => 'DELETE', table_name => 'watched', cooldown => '0');
SELECT audit.set_alert_rule_enabled('failed_logins', false);
SELECT audit.create_alert_rule(name => 'bench_logins', class => 'auth', action => 'LOGIN_FAILED', threshold => 5,
                               within => '10 minutes', group_by => 'application_name');
CREATE ROLE bench_user LOGIN PASSWORD 'right';
SQL
"$LISTEN_BIN" "host=$DIR port=$PORT dbname=bench user=postgres" >"$DIR/notes" 2>"$DIR/notes.err" &
LPID=$!
for _ in $(seq 1 100); do grep -q listening "$DIR/notes.err" 2>/dev/null && break; sleep 0.1; done
now() { date +%s.%N; }
wait_notes() {   # n
    for _ in $(seq 1 200); do [ "$(wc -l < "$DIR/notes")" -ge "$1" ] && return 0; sleep 0.01; done
    return 1
}
n=0
: > "$DIR/lat"
for r in $(seq 1 "$ROUNDS"); do
    t0=$(now); psql -X -q -d bench -c "SELECT v FROM watched WHERE id = $r" >/dev/null
    n=$((n + 1)); wait_notes $n || { log "no notification for read round $r"; continue; }
    echo "read $t0 $(sed -n "${n}p" "$DIR/notes" | cut -d' ' -f1)" >> "$DIR/lat"
    t0=$(now); psql -X -q -d bench -c "DELETE FROM watched WHERE id = $r" >/dev/null
    n=$((n + 1)); wait_notes $n || { log "no notification for delete round $r"; continue; }
    echo "data $t0 $(sed -n "${n}p" "$DIR/notes" | cut -d' ' -f1)" >> "$DIR/lat"
done
# failed logins: 4 wrong passwords, then time the 5th (a new key each round)
for r in $(seq 1 5); do
    conn="host=127.0.0.1 port=$PORT dbname=bench user=bench_user application_name=bench_$r"
    for i in 1 2 3 4; do PGPASSWORD=wrong psql -X -q "$conn" -c "SELECT 1" >/dev/null 2>&1 || true; done
    sleep 0.5   # the first four alone must not be what is timed
    t0=$(now); PGPASSWORD=wrong psql -X -q "$conn" -c "SELECT 1" >/dev/null 2>&1 || true
    n=$((n + 1)); wait_notes $n || { log "no notification for failed logins round $r"; continue; }
    echo "login $t0 $(sed -n "${n}p" "$DIR/notes" | cut -d' ' -f1)" >> "$DIR/lat"
done
echo
echo "### event -> NOTIFY received by a LISTENing client (ms; from the client starting the statement or connection)"
echo
python3 - "$DIR/lat" <<'PY'
import sys, statistics, datetime
rows = {}
for line in open(sys.argv[1]):
    kind, t0, t1 = line.split()
    t1 = datetime.datetime.strptime(t1, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    rows.setdefault(kind, []).append((t1 - float(t0)) * 1000)
print("| event | rounds | median | max |")
print("|---|--:|--:|--:|")
names = {"read": "read (SELECT, via the queue)", "data": "data (DELETE committed by the session)", "login": "5th failed login (via the queue)"}
for k in ("read", "data", "login"):
    if k in rows:
        v = rows[k]
        print(f"| {names[k]} | {len(v)} | {statistics.median(v):.0f} | {max(v):.0f} |")
PY
echo
echo "alert_interval = $(psql -X -At -d bench -c "SHOW audit_ext.alert_interval")"
