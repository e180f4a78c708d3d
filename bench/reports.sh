#!/usr/bin/env bash
# The compliance reports (issue 21) on a large trail: the synthetic events of
# bench/search.sh (EVENTS over the last 8 weeks: 95 % data, 3 % auth, 2 % read),
# then each typed report function and each rendered report over the last 30
# days, timed RUNS times (median), after one warm-up run.
#
# Before the timings the maintenance worker's recorded verification is made
# as the worker makes it (one checkpoint round, then audit.record_verification()
# until it has walked every event; its time is reported): rendered reports
# reuse it.  A typed function is timed as SELECT count(x) FROM f(...) x: every
# column of every row is computed (report_data_changes is inlined into the
# caller's query, where count(*) would skip its columns).  The data change
# report also: its first 1000 rows (LIMIT 1000) and one actor's rows.
#
#   bash bench/reports.sh                     (as root; 10M events: about 10 minutes on 2 cores)
#   EVENTS=1000000 bash bench/reports.sh      (smaller, quicker)
#   DAYS=29 bash bench/reports.sh             (a month of 10M events: all of them inside the 30 days)
#
# Knobs: EVENTS (default 10000000), DAYS (default 56: the events spread over
# the last DAYS days, about 54 % of them in the 30 days; 29: every one of
# them), RUNS (default 3), PORT (default 5493).
# Progress goes to stderr; the Markdown report to stdout.  The cluster is
# bench/search.sh's, in BENCH_DIR (default /tmp/audit_reports_bench), stopped and removed at the end.
set -euo pipefail
EVENTS=${EVENTS:-10000000}
DAYS=${DAYS:-56}
RUNS=${RUNS:-3}
PORT=${PORT:-5493}
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DIR=${BENCH_DIR:-/tmp/audit_reports_bench}
DB=search_bench
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source-path=SCRIPTDIR/.. source=scripts/pgenv.sh
source "$ROOT/scripts/pgenv.sh"
trap 'pg_stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT

loaded=$(BENCH_DIR=$DIR EVENTS=$EVENTS DAYS=$DAYS PORT=$PORT KEEP_CLUSTER=1 SEARCHES=0 bash "$BENCH/search.sh")
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
sql -c "ANALYZE" >/dev/null
# The synthetic events take the ids from 1 on, which the extension's own
# events of CREATE EXTENSION (written at install, now) already have: give
# those new ids at the end, as a real trail would have them (ids grow with
# time), so that no recorded walk of the chains spans the whole 8 weeks.
sql -c "BEGIN; ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
        UPDATE audit.event SET id = nextval('audit.event_id_seq')
         WHERE event_time > now() - interval '1 day' AND id <= 1000 AND class <> 'data';
        ALTER TABLE audit.event ENABLE ALWAYS TRIGGER audit_append_only; COMMIT" >/dev/null
# the recorded verification, as the maintenance worker makes it
t0=$(date +%s%N)
sql -c "SELECT audit.chain_checkpoint()" >/dev/null
while [ "$(sql -c "SELECT audit.record_verification()")" != 0 ]; do :; done
t_rec=$(( ($(date +%s%N) - t0) / 1000000 ))
walks=$(sql -c "SELECT count(*) || ' walks, ' || sum(events) || ' events' FROM audit.verification")
log "  recorded verification: $walks in $t_rec ms"

F="now() - interval '30 days'"
T="now()"
month=$(sql -c "SELECT count(*) FROM audit.event WHERE event_time >= $F AND event_time < $T")
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
timed() {   # SQL: milliseconds of each of RUNS runs after a warm-up (client-side, \timing)
    for _ in $(seq $((RUNS + 1))); do echo '\timing on'; echo "$1"; done | sql 2>&1 \
        | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n "$RUNS"
}

echo "## Compliance reports on $month events of the last 30 days ($loaded)"
echo
echo "$(nproc) cores; median of $RUNS runs after a warm-up, client-side time (psql \\timing), data cached."
echo
echo "| report | rows | typed function, ms | render_report (HTML), ms |"
echo "|---|---:|---:|---:|"
for kind in user_access data_changes security_events exports admin_activity system_access; do
    rows=$(sql -c "SELECT count(*) FROM audit.report_$kind($F, $T)")
    t_fn=$(timed "SELECT count(x) FROM audit.report_$kind($F, $T) x;" | median)
    t_html=$(timed "SELECT length(audit.render_report('$kind', $F, $T));" | median)
    log "  $kind: $rows rows, function $t_fn ms, rendered $t_html ms"
    echo "| $kind | $rows | $t_fn | $t_html |"
done
t_dash=$(timed "SELECT length(audit.render_dashboard());" | median)
t_verify=$(timed "SELECT verified FROM audit.verify($F, $T);" | median)
t_integ=$(timed "SELECT length(audit.report_integrity($F, $T));" | median)
t_first=$(timed "SELECT count(x) FROM (SELECT * FROM audit.report_data_changes($F, $T) LIMIT 1000) x;" | median)
one=$(sql -c "SELECT actor FROM audit.event WHERE class = 'data' AND event_time >= $F LIMIT 1")
t_one=$(timed "SELECT count(x) FROM audit.report_data_changes($F, $T, ARRAY['$one']) x;" | median)
log "  dashboard $t_dash ms, verify $t_verify ms, integrity section $t_integ ms, data changes: first 1000 rows $t_first ms, one actor $t_one ms"
echo
echo "render_dashboard() (30 days): $t_dash ms. audit.verify() of the same 30 days: $t_verify ms; the integrity"
echo "section of a rendered report (audit.report_integrity(), reusing the recorded verification: $walks walked"
echo "in $t_rec ms beforehand): $t_integ ms. report_data_changes: the first 1000 rows (LIMIT 1000) $t_first ms,"
echo "one actor's rows $t_one ms."
