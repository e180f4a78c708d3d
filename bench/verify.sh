#!/usr/bin/env bash
# audit.verify() on a large trail, and what the hash chain costs capture.
#
#   bash bench/verify.sh                   (as root; ~10 minutes on 2 cores)
#   EVENTS=1000000 bash bench/verify.sh    (smaller, quicker)
#
# The events are real: INSERT ... SELECT batches of 1,000,000 rows into an
# audited table, each event chained by the capture path as in production.
# Then audit.verify() over the whole trail is timed RUNS times (median).  Knobs: EVENTS (default 10000000), RUNS (default 3), PORT
# (default 5491), BENCH_DIR.  Progress goes to stderr, the Markdown report
# to stdout.
set -euo pipefail

EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-3}
PORT=${PORT:-5491}
DIR=${BENCH_DIR:-/tmp/audit_verify_bench}
BATCH=1000000

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for knob in EVENTS RUNS PORT; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[ "$(id -u)" = 0 ] || die "run as root (the cluster is created as user postgres with runuser)"

# shellcheck source=scripts/pgenv.sh
source "$ROOT/scripts/pgenv.sh"
trap 'pg_stop "$DIR"; rm -rf "$DIR"' EXIT
pg_stop "$DIR"; rm -rf "$DIR"
pg_start "$DIR" "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min" "work_mem = 64MB" \
    || die "could not start a cluster in $DIR"
q() { psql -X -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

q >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), note text);
CREATE TABLE orders_plain (LIKE orders INCLUDING ALL);
SELECT audit.enable('orders');
SQL

log "writing $EVENTS chained events (batches of $BATCH)"
done_rows=0
load_ms=0
while [ $done_rows -lt "$EVENTS" ]; do
    n=$(( EVENTS - done_rows < BATCH ? EVENTS - done_rows : BATCH ))
    t=$(ms q -c "INSERT INTO orders SELECT g, g % 1000, (g % 9973) / 100.0, 'order ' || g
                   FROM generate_series($done_rows + 1, $done_rows + $n) g")
    load_ms=$(( load_ms + t ))
    done_rows=$(( done_rows + n ))
    log "  $done_rows rows"
done
q -c "VACUUM ANALYZE" >/dev/null
events=$(q -c "SELECT count(*) FROM audit.event")
size=$(q -c "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'audit' AND c.relkind = 'r'")

log "audit.verify() over all $events events, $RUNS runs"
full=()
for _ in $(seq 1 "$RUNS"); do
    full+=("$(ms q -c "SELECT verified FROM audit.verify()")")
done
result=$(q -c "SELECT verified, events, chains, breaks FROM audit.verify()")

fm=$(printf '%s\n' "${full[@]}" | median)
cat <<EOF
## audit.verify() on $events events ($(date -u +%Y-%m-%d))

| what | median of $RUNS | rate |
|---|--:|--:|
| \`audit.verify()\` — all $events events | $((fm / 1000)).$(( (fm % 1000) / 100 )) s | $(( events * 1000 / (fm > 0 ? fm : 1) )) events/s |

Result row (verified, events, chains, breaks): \`$result\`. Trail size on disk: $size. Writing the
events (INSERT ... SELECT of $EVENTS rows into an audited table) took $((load_ms / 1000)) s.
EOF
