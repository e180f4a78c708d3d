#!/usr/bin/env bash
# audit.search() on a large trail: 10,000,000 synthetic events spread over
# the last 8 weeks, then the first page (max_rows 50) of typical searches,
# each timed 5 times (median), after one warm-up run.
#
#   bash bench/search.sh                   (as root; 2-4 minutes on 2 cores)
#   EVENTS=1000000 bash bench/search.sh    (smaller, quicker)
#   PLANS=1 bash bench/search.sh           (also print the plan of each search)
#
# Knobs: EVENTS (default 10000000), RUNS (default 5), PORT (default 5493),
# DAYS (default 56: the events spread over the last DAYS days),
# KEEP_CLUSTER=1 keeps /tmp/audit_search_bench and leaves it running,
# SEARCHES=0 only loads the events (bench/reports.sh uses the trail).
# Progress goes to stderr; the Markdown report to stdout.
#
# The events are written straight into the monthly partitions (as superuser,
# with INSERT ... SELECT generate_series), not through the capture trigger:
# this measures reading, not capture.  The cluster is a throwaway one with
# fsync off and wal_level minimal to load quickly; reads do not depend on
# either.
set -euo pipefail

EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-5}
PORT=${PORT:-5493}
PLANS=${PLANS:-0}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
DIR=${BENCH_DIR:-/tmp/audit_search_bench}
DB=search_bench
DAYS=${DAYS:-56}
ACTORS=1000
TABLES=50
KEYS=100000          # record ids per table: ~2 events per record on average
STATEMENTS=10000

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for knob in EVENTS RUNS PORT DAYS; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[ "$(id -u)" = 0 ] || die "run as root (the cluster is created as user postgres with runuser)"
[ -f /usr/share/postgresql/15/extension/audit_ext.control ] || die "audit_ext is not installed: cd $ROOT && make && make install"

# shellcheck source-path=SCRIPTDIR/.. source=scripts/pgenv.sh
source "$ROOT/scripts/pgenv.sh"

exec 9> "$DIR.lock"
flock -n 9 || die "another bench/search.sh run holds $DIR.lock"

cleanup() {
    local rc=$?
    set +e
    if [ -d "$DIR/data" ] && [ "$KEEP_CLUSTER" != 1 ]; then
        pg_stop "$DIR"
        rm -rf "$DIR"
    elif [ -d "$DIR/data" ]; then
        log "cluster kept running in $DIR on port $PORT (KEEP_CLUSTER=1)"
    fi
    [ $rc = 0 ] || log "FAILED (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

# ---------------------------------------------------------------------------
# Cluster and extension
# ---------------------------------------------------------------------------
started=$(date +%s)
pg_stop "$DIR"
rm -rf "$DIR"
log "starting a throwaway cluster in $DIR on port $PORT"
pg_start "$DIR" "$PORT" \
    "shared_buffers = 2GB" "work_mem = 64MB" "maintenance_work_mem = 512MB" \
    "max_wal_size = 16GB" "checkpoint_timeout = 1h" "fsync = off" "synchronous_commit = off" \
    "full_page_writes = off" "wal_level = minimal" "max_wal_senders = 0" "autovacuum = off" \
    "max_parallel_workers_per_gather = 2" "jit = off" \
    || { cat "$DIR/server.log" >&2; die "cluster did not start"; }
psql -X -q -d postgres -c "CREATE DATABASE $DB"
sql -c "CREATE EXTENSION audit_ext"
# The reading functions: part of the installed extension once
# sql/parts/reading.sql is in its install script; loaded from the source
# tree before that.
if [ "$(sql -c "SELECT to_regproc('audit.search') IS NULL")" = t ]; then
    log "loading sql/parts/reading.sql (the installed extension does not have it yet)"
    sql -f "$ROOT/sql/parts/reading.sql" >/dev/null
fi

# ---------------------------------------------------------------------------
# Synthetic events
# ---------------------------------------------------------------------------
# Event i (1..EVENTS) happens at t0 + (i - 1) * step, so ids grow with time
# as they do in a real trail.  95 % data, 3 % auth, 2 % read events; 1000
# actors, 50 tables of 100,000 records, 10,000 distinct statement texts;
# actor, table, action and record of an event are independent (hashes of i).
log "generating $EVENTS events over the last $DAYS days"
sql <<SQL
CREATE TABLE public.bench_params AS
SELECT date_trunc('second', now()) - interval '$DAYS days' AS t0,
       interval '$DAYS days' / $EVENTS::bigint AS step,
       $EVENTS::bigint AS n;

INSERT INTO audit.statement (statement_id, statement_text, first_seen)
SELECT s, CASE s % 3
            WHEN 0 THEN format('INSERT INTO app.t%s (id, status, amount, email, note) VALUES (\$1, \$2, \$3, \$4, \$5) /* %s */', s % $TABLES, md5(s::text))
            WHEN 1 THEN format(E'UPDATE app.t%s\n   SET status = \$1, amount = \$2\n WHERE id = \$3 /* %s */', s % $TABLES, md5(s::text))
            ELSE format('DELETE FROM app.t%s WHERE id = \$1 /* %s */', s % $TABLES, md5(s::text)) END,
       now() - interval '$DAYS days'
  FROM generate_series(1, $STATEMENTS) s;

-- One partition: a standalone table made and filled in one transaction
-- (no WAL with wal_level minimal), with a CHECK constraint that lets ATTACH
-- skip its validation scan.
CREATE FUNCTION public.bench_fill(cls text, lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql AS \$fn\$
DECLARE
    p    record;
    part text := format('event_%s_p%s', cls, to_char(lo AT TIME ZONE 'UTC', 'YYYYMM'));
    i_lo bigint;
    i_hi bigint;
    n_rows bigint;
    keep text := CASE cls WHEN 'data' THEN 'i % 100 < 95' WHEN 'auth' THEN 'i % 100 BETWEEN 95 AND 97'
                          ELSE 'i % 100 >= 98' END;
BEGIN
    SELECT * INTO p FROM public.bench_params;
    i_lo := greatest(1, floor(extract(epoch FROM lo - p.t0) / extract(epoch FROM p.step))::bigint);
    i_hi := least(p.n, ceil(extract(epoch FROM hi - p.t0) / extract(epoch FROM p.step))::bigint + 1);
    EXECUTE format('CREATE TABLE audit.%I (LIKE audit.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                    CONSTRAINT bench_bound CHECK (class = %L AND event_time >= %L AND event_time < %L))',
                   part, 'event_' || cls, cls, lo, hi);
    EXECUTE format(\$q\$
        INSERT INTO audit.%I
        SELECT i, t, %L, a.action, a.status, 'app', 'app',
               'user' || abs(hashint8extended(i, 1) %% $ACTORS),
               ('10.0.' || (i %% 200) || '.' || (i %% 250))::inet,
               'bench', 10000 + (i %% 5000)::int, i / 3,
               CASE WHEN %L = 'data' THEN 1 + (i %% $STATEMENTS) END, 1,
               CASE WHEN %L <> 'auth' THEN 'app' END,
               CASE WHEN %L <> 'auth' THEN 't' || abs(hashint8extended(i, 2) %% $TABLES) END,
               CASE WHEN %L = 'data' THEN jsonb_build_object('id', a.k) END,
               CASE WHEN a.action = 'UPDATE' THEN jsonb_build_object('status', 'st-' || ((i + 1) %% 997), 'amount', ((i + 1) %% 10000) / 100.0)
                    WHEN a.action = 'DELETE' THEN jsonb_build_object('id', a.k, 'status', 'st-' || (i %% 997), 'amount', (i %% 10000) / 100.0,
                                                                     'email', 'customer' || a.k || '@example.com', 'note', 'order ' || i) END,
               CASE WHEN a.action = 'UPDATE' THEN jsonb_build_object('status', 'st-' || (i %% 997), 'amount', (i %% 10000) / 100.0)
                    WHEN a.action = 'INSERT' THEN jsonb_build_object('id', a.k, 'status', 'st-' || (i %% 997), 'amount', (i %% 10000) / 100.0,
                                                                     'email', 'customer' || a.k || '@example.com', 'note', 'order ' || i) END,
               CASE WHEN a.action = 'UPDATE' THEN '{status,amount}'::text[] END,
               CASE WHEN %L = 'read' THEN jsonb_build_object('rows', (i * 37) %% 2000) END,
               NULL, NULL, NULL, NULL,
               -- 1.6: each table's identity (audit.audited_table_history, below)
               CASE WHEN %L <> 'auth' THEN 1 + abs(hashint8extended(i, 2) %% $TABLES) END,
               -- 1.6: an application's context on every event (a session of
               -- 20 events, 200 tenants) ...
               jsonb_build_object('session_id', 'sess-' || (i / 20), 'tenant', 'tenant-' || ((i / 20) %% 200),
                                  'client_ip', '10.1.' || ((i / 20) %% 200) || '.' || ((i / 20) %% 250)),
               NULL,
               -- ... in context runs as capture writes them: a session's
               -- events of one class are consecutive, its first event of
               -- each class starts a run (src/event_writer.c)
               NOT (i %% 20 = 0 OR i %% 100 IN (95, 98))
          FROM generate_series(\$1, \$2) i
         CROSS JOIN LATERAL (SELECT \$3 + (i - 1) * \$4 AS t) ts
         CROSS JOIN LATERAL (
               SELECT CASE %L
                        WHEN 'data' THEN CASE WHEN abs(hashint8extended(i, 3) %% 10) < 2 THEN 'INSERT'
                                              WHEN abs(hashint8extended(i, 3) %% 10) < 9 THEN 'UPDATE' ELSE 'DELETE' END
                        WHEN 'auth' THEN CASE WHEN i %% 7 = 0 THEN 'LOGIN_FAILED' WHEN i %% 2 = 0 THEN 'LOGIN' ELSE 'LOGOUT' END
                        ELSE CASE WHEN i %% 50 = 0 THEN 'COPY' ELSE 'SELECT' END END AS action,
                      CASE WHEN %L = 'auth' AND i %% 7 = 0 THEN 'failure' ELSE 'success' END AS status,
                      abs(hashint8extended(i, 4) %% $KEYS) AS k) a
         WHERE %s AND ts.t >= \$5 AND ts.t < \$6\$q\$,
        part, cls, cls, cls, cls, cls, cls, cls, cls, cls, keep)
        USING i_lo, i_hi, p.t0, p.step, lo, hi;
    GET DIAGNOSTICS n_rows = ROW_COUNT;
    RETURN n_rows;
END
\$fn\$;

-- Then the partition gets what audit.create_partitions() gives its own.
CREATE FUNCTION public.bench_attach(cls text, lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE plpgsql AS \$fn\$
DECLARE
    part text := format('event_%s_p%s', cls, to_char(lo AT TIME ZONE 'UTC', 'YYYYMM'));
BEGIN
    PERFORM audit.create_event_indexes(format('audit.%I', part)::regclass);
    EXECUTE format('ALTER TABLE audit.%I ATTACH PARTITION audit.%I FOR VALUES FROM (%L) TO (%L)',
                   'event_' || cls, part, lo, hi);
    EXECUTE format('ALTER TABLE audit.%I DROP CONSTRAINT bench_bound', part);
    EXECUTE format('GRANT SELECT ON audit.%I TO audit_admin, audit_reader', part);
END
\$fn\$;

-- the tables' identities, as audit.enable() records them (the tables
-- themselves do not exist here: histories are asked for by name)
INSERT INTO audit.audited_table_history (table_identity, table_oid, schema_name, table_name, valid_from)
SELECT t + 1, 4000000000::bigint - t, 'app', 't' || t, now() - interval '$DAYS days' FROM generate_series(0, $TABLES - 1) t;

-- the (class, month) partitions to make: every month the events touch
CREATE TABLE public.bench_parts AS
SELECT c.cls, m.lo, m.lo + interval '1 month' AS hi
  FROM unnest(ARRAY['data', 'auth', 'read']) c(cls),
       LATERAL (SELECT (date_trunc('month', g AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS lo
                  FROM public.bench_params p,
                       generate_series(date_trunc('month', p.t0 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                                       p.t0 + p.step * p.n, interval '1 month') g) m;
SQL

# Two workers: one partition after the other, biggest first.
mapfile -t parts < <(sql -c "SELECT cls, lo, hi FROM public.bench_parts ORDER BY cls = 'data' DESC, lo DESC")
work() {
    set -euo pipefail
    local cls lo hi rows
    IFS='|' read -r cls lo hi <<< "$1"
    rows=$(sql -c "SELECT public.bench_fill('$cls', '$lo', '$hi')")
    log "  event_${cls} from ${lo%% *}: $rows events loaded, indexing"
    sql -c "SET maintenance_work_mem = '512MB'" -c "SELECT public.bench_attach('$cls', '$lo', '$hi')" >/dev/null
    sql -c "VACUUM (ANALYZE) audit.event_${cls}_p$(date -u -d "${lo}" +%Y%m)" >/dev/null
}
export -f work sql log
export DB
printf '%s\n' "${parts[@]}" | xargs -P 2 -I{} bash -c 'work "$@"' _ {}
sql -c "SELECT setval('audit.event_id_seq', $EVENTS)" -c "SELECT audit.create_partitions(2)" >/dev/null
sql -c "ANALYZE audit.event" -c "ANALYZE audit.statement" -c "CHECKPOINT"
total=$(sql -c "SELECT count(*) FROM audit.event")
size=$(sql -c "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'r'")
loaded=$(date +%s)
log "loaded $total events ($size with indexes) in $((loaded - started)) s"
if [ "${SEARCHES:-1}" = 0 ]; then
    echo "loaded $total events ($size with indexes) in $((loaded - started)) s"
    exit 0
fi

# ---------------------------------------------------------------------------
# The searches
# ---------------------------------------------------------------------------
# Targets taken from the data: a record and an actor that exist, a day and a
# week well inside the trail (not the newest ones, which would be easiest).
IFS='|' read -r rec_table rec_id <<< "$(sql -c "SELECT schema_name || '.' || table_name, record_id FROM audit.event WHERE id = $((EVENTS / 2)) AND class = 'data'")"
actor=$(sql -c "SELECT actor FROM audit.event WHERE id = $((EVENTS / 3)) AND class = 'data'")
week_from=$(sql -c "SELECT date_trunc('day', now()) - interval '21 days'")
week_to=$(sql -c "SELECT date_trunc('day', now()) - interval '14 days'")
day_from=$(sql -c "SELECT date_trunc('day', now()) - interval '10 days'")
day_to=$(sql -c "SELECT date_trunc('day', now()) - interval '9 days'")
rare_key=$(sql -c "SELECT (record_id->>'id')::int + 1 FROM audit.event WHERE id = $((EVENTS / 4)) AND class = 'data'")

declare -a NAMES ARGS
add() { NAMES+=("$1"); ARGS+=("$2"); }
add "record: one record of one table"          "record_id => '$rec_id', table_name => '$rec_table'"
add "record: a record id in every table"       "record_id => '$rec_id'"
add "actor within a week (3 weeks ago)"        "actor => '$actor', from_time => '$week_from', to_time => '$week_to'"
add "actor, all time"                          "actor => '$actor'"
add "table + action"                           "table_name => '$rec_table', action => 'DELETE'"
add "unfiltered, newest first"                 ""
add "free text within a day, frequent term"    "query => 'st-123', from_time => '$day_from', to_time => '$day_to'"
add "free text within a day, rare term"        "query => 'customer${rare_key}@', from_time => '$day_from', to_time => '$day_to'"
add "free text within a day, statement text"   "query => '/* $(sql -c "SELECT md5('4242')")', from_time => '$day_from', to_time => '$day_to'"
add "page 2 of actor within a week"            "actor => '$actor', from_time => '$week_from', to_time => '$week_to', before_id => BEFORE"
add "one session (context)"                    "session_id => 'sess-$((EVENTS / 40))'"
add "one tenant, newest first (context)"       "tenant => 'tenant-7'"

# Execution times (ms) of SELECT * FROM audit.search(...): $2 calls in one
# session, of which the first is dropped (warm), or the first call in each
# of $2 new sessions (new connection: plpgsql compiles, caches fill).
exec_times() {
    local args=$1 n=$2 mode=$3
    if [ "$mode" = warm ]; then
        for _ in $(seq $((n + 1))); do
            echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT * FROM audit.search($args);"
        done | sql | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' | tail -n "$n"
    else
        for _ in $(seq "$n"); do
            sql -c "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT * FROM audit.search($args)" \
                | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p'
        done
    fi
}
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

log "timing ${#NAMES[@]} searches, first page (max_rows 50), median of $RUNS"
declare -a RESULTS COLD ROWS
for k in "${!NAMES[@]}"; do
    args=${ARGS[$k]}
    if [[ $args == *BEFORE* ]]; then
        before=$(sql -c "SELECT min(id) FROM audit.search(actor => '$actor', from_time => '$week_from', to_time => '$week_to', max_rows => 50)")
        args=${args/BEFORE/$before}
    fi
    args=${args:+$args, }"max_rows => 50"
    ROWS[$k]=$(sql -c "SELECT count(*) FROM audit.search($args)")
    RESULTS[$k]=$(exec_times "$args" "$RUNS" warm | median)
    COLD[$k]=$(exec_times "$args" "$RUNS" new | median)
    log "  ${NAMES[$k]}: ${RESULTS[$k]} ms, new session ${COLD[$k]} ms (${ROWS[$k]} rows)"
    ARGS[$k]=$args
done

# A record's history and its state at a moment (the functions that follow a
# record by its table's identity), the same way: warm and new session.
hist_args="'${rec_table%%.*}', '${rec_table#*.}', '$rec_id'"
rec_times() {   # SQL, count, mode
    local q=$1 n=$2 mode=$3
    if [ "$mode" = warm ]; then
        for _ in $(seq $((n + 1))); do echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) $q;"; done | sql \
            | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' | tail -n "$n"
    else
        for _ in $(seq "$n"); do
            sql -c "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) $q" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p'
        done
    fi
}
declare -a HNAMES HQ HWARM HCOLD HROWS
HNAMES=("record_history(schema, table, record)" "record_history_by_identity(identity, record)")
HQ=("SELECT * FROM audit.record_history($hist_args)"
    "SELECT * FROM audit.record_history_by_identity(audit.table_identity('${rec_table%%.*}', '${rec_table#*.}'), '$rec_id')")
for k in "${!HNAMES[@]}"; do
    HROWS[$k]=$(sql -c "SELECT count(*) FROM (${HQ[$k]}) h")
    HWARM[$k]=$(rec_times "${HQ[$k]}" "$RUNS" warm | median)
    HCOLD[$k]=$(rec_times "${HQ[$k]}" "$RUNS" new | median)
    log "  ${HNAMES[$k]}: ${HWARM[$k]} ms, new session ${HCOLD[$k]} ms (${HROWS[$k]} events)"
done

echo "## audit.search() on $total events ($size), first page of 50"
echo
echo "$(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GB RAM, shared_buffers 2GB, data cached; load took $((loaded - started)) s."
echo "Server-side execution time of \`SELECT * FROM audit.search(...)\` (EXPLAIN ANALYZE, timing off), median of $RUNS:"
echo "*warm*: repeated calls in one session (a pooled connection); *new session*: the first call on a new connection."
echo
echo "| search | arguments | rows | warm ms | new session ms |"
echo "|---|---|---:|---:|---:|"
for k in "${!NAMES[@]}"; do
    printf '| %s | `%s` | %s | %s | %s |\n' "${NAMES[$k]}" "${ARGS[$k]//|/\\|}" "${ROWS[$k]}" "${RESULTS[$k]}" "${COLD[$k]}"
done

echo
echo "A record's history, followed by its table's identity (1.6), on the same trail, median of $RUNS:"
echo
echo "| function | arguments | events | warm ms | new session ms |"
echo "|---|---|---:|---:|---:|"
for k in "${!HNAMES[@]}"; do
    printf '| %s | `%s` | %s | %s | %s |\n' "${HNAMES[$k]}" "$hist_args" "${HROWS[$k]}" "${HWARM[$k]}" "${HCOLD[$k]}"
done

if [ "$PLANS" = 1 ]; then
    echo
    echo "## Plans (auto_explain of the query each search runs)"
    for k in "${!NAMES[@]}"; do
        echo
        echo "### ${NAMES[$k]}"
        echo '```'
        PGOPTIONS="-c client_min_messages=log" psql -X -q -At -d "$DB" \
            -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
            -c "SET auto_explain.log_nested_statements = on" -c "SET auto_explain.log_analyze = on" \
            -c "SET auto_explain.log_buffers = on" -c "SET auto_explain.log_level = log" \
            -c "SELECT count(*) FROM audit.search(${ARGS[$k]})" 2>&1 | grep -v '^[0-9]*$' || true
        echo '```'
    done
fi
log "done in $(( $(date +%s) - started )) s"
