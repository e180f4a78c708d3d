#!/usr/bin/env bash
# audit_ext benchmark: OLTP (pgbench), bulk UPDATE and bulk INSERT ... SELECT,
# each without auditing ("base"), with audit_ext and with table_log, all
# variants interleaved in one run on one throwaway cluster.
#
#   bash bench/run.sh                        (as root)
#   DURATION=5 CYCLES=1 bash bench/run.sh    (quick smoke run)
#
# Knobs: DURATION (seconds per pgbench run, default 30), CYCLES (default 3),
# SCALE (pgbench scale, default 10), KEEP_CLUSTER=1 keeps /tmp/audit_bench,
# FLOOR=1 adds two diagnostic variants: audit_noidx, audit_ext with every
# index of the data-event partitions dropped, i.e. what capture and the heap
# writes cost without index maintenance (not a configuration anyone should
# run); and sql_floor, no trigger at all: each statement itself writes one
# (id, time, jsonb of the row) per changed row into an unindexed table
# (WITH ... RETURNING), the cheapest trail of whole rows PostgreSQL can write.
# CONTEXT=1 adds audit_ctx (1.6): audit_ext with 20 risk rules in the
# database and an end-user context set for every session (PGOPTIONS
# audit_ext.context, as audit.set_context(is_local => false) would), so every
# event carries a context, enters the context's partial btrees and a
# risk from the rules: what a set context and risk rules cost on capture.
# Diagnostics for it: audit_rules (the rules, no context), audit_ctx_noidx
# (rules and context, the context indexes dropped), audit_ctx_none (the
# database of audit_ctx, run with no context: audit_ctx / audit_ctx_none is
# the context alone, on the same tables, indexes and rules; needs audit_ctx).
# VARIANTS="base audit_ext audit_ctx" picks the variants (default: base
# audit_ext table_log, plus the FLOOR and CONTEXT ones).
# PHASES (default "oltp oltp_lag bulk_update bulk_insert") runs a subset, e.g.
# PHASES=oltp CYCLES=7 for a tighter OLTP median; PG_MAJOR (default 15).
# oltp_lag (issue 22, needs oltp, base and audit_wal): after the cycle's OLTP
# phase, audit_wal runs pgbench at a fixed rate of LAG_LOAD (default 0.8) x
# the base TPS of that cycle (pgbench -R) for DURATION seconds while
# audit.capture_lag is sampled every 0.2 s; lag.csv and the report give
# the largest and the 95th percentile of seconds_behind and of bytes_behind.
# Progress goes to stderr; the Markdown report goes to stdout and to
# bench/results/latest.md, the per-run numbers to bench/results/raw.csv.
set -euo pipefail

DURATION=${DURATION:-30}
CYCLES=${CYCLES:-3}
SCALE=${SCALE:-10}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
FLOOR=${FLOOR:-0}
PHASES=${PHASES:-oltp oltp_lag bulk_update bulk_insert}
LAG_LOAD=${LAG_LOAD:-0.8}
CLIENTS=2
THREADS=2
PORT=${PORT:-5498}
DIR=${BENCH_DIR:-/tmp/audit_bench}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
RESULTS=$BENCH/results
RAW=$RESULTS/raw.csv
REPORT=$RESULTS/latest.md
CONTEXT=${CONTEXT:-0}
# CTX_SESSIONS=distinct (default shared): the OLTP phase runs each of the
# CLIENTS connections as its own pgbench process (every variant alike), so
# each audit_ctx connection carries its own session_id, as distinct
# application users would; CTX_TENANT=distinct gives each its own tenant too
# (default: all in tenant "acme", the busiest case for the tenant index).
# CTX_PER_TXN=1: every variant runs bench/tpcb_request.pgbench, whose
# transactions start with bench.begin_request(); in audit_ctx and
# audit_ctx_noidx it sets a context for that transaction only
# (audit.set_context, is_local), another user, session and request each
# time, as a pooled web application does, instead of one per connection.
CTX_PER_TXN=${CTX_PER_TXN:-0}
# CTX_REQUEST_SESSION (with CTX_PER_TXN=1): random (default), each request
# from another end-user session and tenant; connection, each connection
# serves one end-user session (its session, tenant and address) and only
# the request id changes per transaction, as a client with its own
# connection (a desktop ERP client, a session-affine pool) sets it.
CTX_REQUEST_SESSION=${CTX_REQUEST_SESSION:-random}
case $CTX_REQUEST_SESSION in random | connection) ;; *) echo "CTX_REQUEST_SESSION: random or connection" >&2; exit 1 ;; esac
CTX_SESSIONS=${CTX_SESSIONS:-shared}
CTX_TENANT=${CTX_TENANT:-shared}
# audit_walp (diagnostic, VARIANTS=...): audit_wal with the capture worker
# paused (audit_ext.wal_capture_pause) during each timed step and resumed
# right after it: the writer's cost alone, with no decoding competing for the
# cores; its drain then holds all of the worker's work.
# audit_wal0 (diagnostic, VARIANTS=...): audit_wal with its capture worker at
# the server's own CPU priority (ALTER DATABASE ... SET
# audit_ext.wal_capture_nice = 0) instead of the default nice 10.
# audit_wal: audit_ext with capture => 'wal' (issue 22); its drain (time
# until the capture worker has written every event of the step) is
# measured after each step, outside the timed part.  VARIANTS="..." picks.
if [ -n "${VARIANTS:-}" ]; then
    read -r -a VARIANTS <<<"$VARIANTS"
else
    VARIANTS=(base audit_ext audit_wal table_log)
    [ "$FLOOR" = 1 ] && VARIANTS+=(audit_noidx sql_floor)
    [ "$CONTEXT" = 1 ] && VARIANTS+=(audit_ctx audit_ctx_none)
fi
# the context of every audit_ctx session (what a web application would set)
CTX_JSON='{"tenant":"acme","client_ip":"192.0.2.10","request_id":"req-000123","session_id":"sess-7f3a9c","user_role":"clerk","user_agent":"Mozilla/5.0"}'
AUDITED_TABLES=(pgbench_accounts pgbench_tellers pgbench_branches)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for knob in DURATION CYCLES SCALE; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
for ph in $PHASES; do
    case $ph in oltp | oltp_lag | bulk_update | bulk_insert) ;; *) die "PHASES: unknown phase '$ph' (oltp, oltp_lag, bulk_update, bulk_insert)" ;; esac
done
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
if [[ " ${VARIANTS[*]} " == *" audit_ctx_none "* ]] && [[ " ${VARIANTS[*]} " != *" audit_ctx "* ]]; then
    die "VARIANTS: audit_ctx_none runs on audit_ctx's database, add audit_ctx"
fi
[ "$(id -u)" = 0 ] || die "run as root (the cluster is created as user postgres with runuser)"
# PG_MAJOR (default 15) as in scripts/pgenv.sh: e.g. PG_MAJOR=17 in the Debian 13
# chroot of scripts/test-pg17.sh
PGM=${PG_MAJOR:-15}
# the PostgreSQL tree of PGBIN (default Debian's): never another one's files
EXTDIR=$("${PGBIN:-/usr/lib/postgresql/$PGM/bin}/pg_config" --sharedir)/extension
[ -f "$EXTDIR/audit_ext.control" ] || die "audit_ext is not installed in $EXTDIR: cd $ROOT && make && make install"
if [[ " ${VARIANTS[*]} " == *" table_log "* ]]; then
    [ -f "$EXTDIR/table_log.control" ] || die "table_log is not installed: apt-get install postgresql-$PGM-tablelog"
fi

# One run at a time: a second run would wipe the first one's cluster.
exec 9>"$DIR.lock"
flock -n 9 || die "another bench/run.sh is running (lock $DIR.lock held)"

# shellcheck source-path=SCRIPTDIR/.. source=scripts/pgenv.sh
source "$ROOT/scripts/pgenv.sh"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
command -v pgbench >/dev/null || die "pgbench not found in $PGBIN"
# the PostgreSQL tree of PGBIN (scripts/pgenv.sh), not necessarily the system's
EXTDIR=$("$PGBIN/pg_config" --sharedir)/extension
[ -f "$EXTDIR/audit_ext.control" ] || die "audit_ext is not installed in $EXTDIR: cd $ROOT && make && make install"
if [[ " ${VARIANTS[*]} " == *" table_log "* ]]; then
    [ -f "$EXTDIR/table_log.control" ] || die "table_log is not installed: apt-get install postgresql-$PGM-tablelog"
fi

mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.log
TMP_OUT=$(mktemp)

# What is being measured: src/ and sql/ change under concurrent work, so
# record the installed build and the checkout it most likely came from.
SO=$("$PGBIN/pg_config" --pkglibdir)/audit_ext.so
BUILD_ID="audit_ext.so sha256 $(sha256sum "$SO" | cut -c1-12), installed $(date -u -r "$SO" '+%Y-%m-%d %H:%M:%S UTC')"
if GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- src sql Makefile audit_ext.control 2>/dev/null || GIT_HEAD+=" + uncommitted changes in src/sql"
    BUILD_ID+="; checkout $GIT_HEAD"
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

cleanup() {
    local rc=$?
    set +e
    rm -f "$TMP_OUT"
    if [ -d "$DIR/data" ]; then
        log "stopping the cluster"
        pg_stop "$DIR"
        cp -f "$DIR/server.log" "$RESULTS/server.log" 2>/dev/null
        if [ "$KEEP_CLUSTER" = 1 ]; then
            log "cluster kept in $DIR (KEEP_CLUSTER=1)"
        else
            rm -rf "$DIR"
        fi
    fi
    [ $rc = 0 ] || log "FAILED (exit $rc); logs in $RESULTS/*.log"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

db_of() { # audit_ctx_none runs on audit_ctx's database
    if [ "$1" = audit_ctx_none ]; then echo bench_audit_ctx; else echo "bench_$1"; fi
}
sql() { # sql DB STATEMENT...  -> unaligned tuples on stdout
    local db=$1
    shift
    PGOPTIONS="-c client_min_messages=warning ${CTX_OPTS:-}" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"
}

# Wait until no autovacuum worker is busy (they would compete for the two
# cores and add WAL to the measurement), then checkpoint so every timed step
# starts with a clean buffer cache and the same full-page-write state.
quiesce() {
    local i n
    for ((i = 0; i < 300; i++)); do
        n=$(sql postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
        [ "$n" = 0 ] && break
        sleep 1
    done
    [ "$n" = 0 ] || log "  warning: autovacuum still running after 300 s"
    sql postgres -c "CHECKPOINT"
}

# After a measured step: vacuum and analyze the variant's database ourselves,
# so that autovacuum does not later run in the middle of another variant's
# measurement (the audit trail receives ~1M inserts per bulk step).
settle() {
    sql "$1" -c "VACUUM ANALYZE"
}

# rotate the variant order per cycle: cycle 1 = base audit_ext table_log,
# cycle 2 = audit_ext table_log base, ...
order_for_cycle() {
    local c=$1 k
    for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
        printf '%s ' "${VARIANTS[$(((c - 1 + k) % ${#VARIANTS[@]}))]}"
    done
}

# enable_trail VARIANT DB TABLE: audit/log TABLE (in schema public) in DB
enable_trail() {
    local variant=$1 db=$2 tbl=$3
    case $variant in
        base) ;;
        audit_ext | audit_noidx | audit_ctx | audit_rules | audit_ctx_noidx) sql "$db" -c "SELECT audit.enable('public.$tbl')" >/dev/null ;;
        audit_wal | audit_walp | audit_wal0) sql "$db" -c "SELECT audit.enable('public.$tbl', capture => 'wal')" >/dev/null ;;
        table_log) sql "$db" -c "SELECT table_log_init(5, 'public', '$tbl', 'tlog', '${tbl}_log')" >/dev/null ;;
    esac
}

echo "cycle,phase,variant,pos,status,secs,rows,tps,latency_ms,wal_bytes,trail_bytes,trail_rows" >"$RAW"
# server CPU of each OLTP step (ticks of 1/HZ s), in a file of its own
CPUCSV=$RESULTS/cpu.csv
HZ=$(getconf CLK_TCK)
echo "cycle,variant,ticks,txns" >"$CPUCSV"
record() { # record CYCLE PHASE VARIANT POS STATUS SECS ROWS TPS LAT WAL TRAIL_BYTES TRAIL_ROWS
    local IFS=,
    echo "$*" >>"$RAW"
}

# ---------------------------------------------------------------------------
# Cluster and databases
# ---------------------------------------------------------------------------
START_TS=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
SECONDS=0
log "audit_ext benchmark: DURATION=$DURATION CYCLES=$CYCLES SCALE=$SCALE (clients=$CLIENTS threads=$THREADS)"
log "starting a throwaway cluster in $DIR on port $PORT"
pg_stop "$DIR"
rm -rf "$DIR"
# wal_level = logical for every variant (audit_wal needs it; the others pay
# its small extra WAL too, so the ratios compare like with like).  Some
# builds load only the output plugins output_plugin_libraries lists.
PLUGIN_CONF=()
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    PLUGIN_CONF=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
pg_start "$DIR" "$PORT" \
    "${BENCH_PG_CONF[@]}" \
    "wal_level = logical" \
    "max_replication_slots = 10" \
    "${PLUGIN_CONF[@]}"

for v in "${VARIANTS[@]}"; do
    [ "$v" = audit_ctx_none ] && continue   # audit_ctx's database
    db=$(db_of "$v")
    log "creating database $db (pgbench -i -s $SCALE)"
    createdb "$db"
    pgbench -i -s "$SCALE" -q "$db" >"$RESULTS/init-$v.log" 2>&1 || die "pgbench -i failed for $db, see $RESULTS/init-$v.log"
    sql "$db" -f "$BENCH/setup.sql"
    case $v in
        audit_ext | audit_noidx | audit_wal | audit_walp) sql "$db" -c "CREATE EXTENSION audit_ext" ;;
        # before the first enable() starts the database's capture worker
        audit_wal0) sql "$db" -c "CREATE EXTENSION audit_ext" -c "ALTER DATABASE $db SET audit_ext.wal_capture_nice = 0" ;;
        audit_ctx | audit_rules | audit_ctx_noidx) sql "$db" -c "CREATE EXTENSION audit_ext" -c "
            SELECT audit.set_risk('data', 'UPDATE', 'public.pgbench_accounts', 'medium');
            SELECT audit.set_risk('app', a, risk => 'high') FROM unnest(ARRAY['EXPORT', 'IMPORT', 'VIEW', 'CREATE']) a;
            SELECT audit.set_risk('data', table_name => 'public.t' || g, risk => 'high') FROM generate_series(1, 10) g;
            SELECT audit.set_risk(c, risk => 'medium') FROM unnest(ARRAY['ddl', 'read', 'auth', 'system', 'privilege']) c;" >/dev/null ;;
        table_log) sql "$db" -c "CREATE EXTENSION table_log" -c "CREATE SCHEMA tlog" ;;
        sql_floor) sql "$db" -c "CREATE SCHEMA sqlfloor" \
            -c "CREATE TABLE sqlfloor.sink (id bigserial, event_time timestamptz NOT NULL, row_data jsonb NOT NULL)" ;;
    esac
    for t in "${AUDITED_TABLES[@]}"; do enable_trail "$v" "$db" "$t"; done
    if [ "$CTX_PER_TXN" = 1 ] && { [ "$v" = audit_ctx ] || [ "$v" = audit_ctx_noidx ]; }; then
        u='k'   # the end user: the request's random key, or the connection
        [ "$CTX_REQUEST_SESSION" = connection ] && u='pg_backend_pid()'
        # audit_ctx_none runs on this database with bench.no_context = on
        sql "$db" -c "CREATE OR REPLACE FUNCTION bench.begin_request(k integer) RETURNS void LANGUAGE sql VOLATILE AS \$\$
            SELECT CASE WHEN current_setting('bench.no_context', true) IS DISTINCT FROM 'on' THEN
                   audit.set_context(session_id => 'sess-' || ($u % 5000), tenant => 'tenant-' || ($u % 50),
                                     client_ip => ('10.0.' || ($u % 200) || '.' || ($u % 250))::inet,
                                     user_agent => 'Mozilla/5.0', user_role => 'clerk', request_id => 'req-' || k) END
        \$\$" >/dev/null
    fi
    if [ "$v" = audit_ctx_noidx ]; then   # diagnostic: the context without its index
        sql "$db" -c "SET audit_ext.protect_trail = off" -c "
            DO \$\$ DECLARE i regclass; BEGIN
                FOR i IN SELECT x.indexrelid::regclass FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                          WHERE x.indrelid IN (SELECT relid FROM pg_partition_tree('audit.event') WHERE isleaf)
                            AND c.relname LIKE '%\\_ctx\\_%\\_idx' LOOP
                    EXECUTE format('DROP INDEX %s', i);
                END LOOP;
            END \$\$" >/dev/null
    fi
    if [ "$v" = audit_noidx ]; then
        sql "$db" -c "SET audit_ext.protect_trail = off" -c "
            DO \$\$ DECLARE i regclass; BEGIN
                FOR i IN SELECT x.indexrelid::regclass FROM pg_index x
                          WHERE x.indrelid IN (SELECT relid FROM pg_partition_tree('audit.event_data') WHERE isleaf) LOOP
                    EXECUTE format('DROP INDEX %s', i);
                END LOOP;
            END \$\$" >/dev/null
    fi
    sql "$db" -c "VACUUM ANALYZE"
done
sql postgres -c "CHECKPOINT"
PG_VERSION=$(sql postgres -c "SELECT version()")

# audit_wal: seconds until the capture worker has written every event of the
# step just measured (its lag drained), recorded in drain.csv
DRAIN=$RESULTS/drain.csv
echo "cycle,phase,drain_secs,events,variant" >"$DRAIN"
measure_drain() { # measure_drain CYCLE PHASE VARIANT
    local c=$1 phase=$2 v=$3 db lsn t0 t1 ev
    [ "$v" = audit_wal ] || [ "$v" = audit_walp ] || [ "$v" = audit_wal0 ] || return 0
    db=$(db_of "$v")
    [ "$v" = audit_walp ] && wal_pause "$db" off
    lsn=$(sql "$db" -c "SELECT pg_current_wal_insert_lsn()")  # the write position may lag (synchronous_commit = off)
    t0=$(date +%s.%N)
    for ((i = 0; i < 36000; i++)); do
        [ "$(sql "$db" -c "SELECT coalesce((SELECT done_lsn >= '$lsn'::pg_lsn FROM audit.capture_lag), false)")" = t ] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    ev=$(sql "$db" -c "SELECT last_value FROM audit.event_id_seq")
    echo "$c,$phase,$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'),$ev,$v" >>"$DRAIN"
    log "  $phase $v: drained in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
}

# audit_walp: hold the capture worker of DB back (on) or let it go (off);
# returns once the worker says so (pg_stat_activity.query)
wal_pause() { # wal_pause DB on|off
    local db=$1 st=$2 want i
    sql "$db" -c "ALTER SYSTEM SET audit_ext.wal_capture_pause = $st" -c "SELECT pg_reload_conf()" >/dev/null
    [ "$st" = on ] && want=t || want=f
    for ((i = 0; i < 600; i++)); do
        [ "$(sql "$db" -c "SELECT coalesce(bool_or(query LIKE 'paused%'), false) FROM pg_stat_activity WHERE backend_type = 'audit_ext wal capture' AND datname = current_database()")" = $want ] && return 0
        sleep 0.05
    done
    log "  warning: the capture worker of $db did not report pause = $st"
}

# ---------------------------------------------------------------------------
# Phase 1: OLTP
# ---------------------------------------------------------------------------
run_oltp() {
    local c=$1 v=$2 pos=$3 db p0 p1 out rc tps lat txns wal tb tr
    db=$(db_of "$v")
    out=$RESULTS/oltp-c$c-$v.log
    # what pgbench would do itself before the run, kept out of the measurement
    sql "$db" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history"
    quiesce
    p0=$(sql "$db" -F ' ' -c "SELECT lsn, trail_bytes, trail_rows FROM bench.probe()")
    sleep 0.2   # the probe's backend gone
    local k0 k1
    k0=$(bench_server_ticks "$DIR")
    # sql_floor: the TPC-B-like transaction whose three UPDATEs each write
    # their row's jsonb themselves (bench/sql_floor.pgbench)
    local script=()
    [ "$v" = sql_floor ] && script=(-s "$SCALE" -f "$BENCH/sql_floor.pgbench")
    [ "$CTX_PER_TXN" = 1 ] && script=(-s "$SCALE" -f "$BENCH/tpcb_request.pgbench")
    rc=0
    local opts=""
    [ "$v" = audit_ctx ] || [ "$v" = audit_ctx_noidx ] && [ "$CTX_PER_TXN" != 1 ] && opts="-c audit_ext.context=$CTX_JSON"
    [ "$v" = audit_ctx_none ] && opts="-c bench.no_context=on"
    [ "$v" = audit_walp ] && wal_pause "$db" on
    if [ "$CTX_SESSIONS" = distinct ]; then
        # one pgbench process per client, every variant alike, so each
        # audit_ctx connection can carry its own context
        local i pids=() ctx
        for ((i = 1; i <= CLIENTS; i++)); do
            ctx=$CTX_JSON
            ctx=${ctx/sess-7f3a9c/sess-$c-$i}
            [ "$CTX_TENANT" = distinct ] && ctx=${ctx/\"acme\"/\"tenant-$i\"}
            opts=""
            [ "$v" = audit_ctx ] || [ "$v" = audit_ctx_noidx ] && [ "$CTX_PER_TXN" != 1 ] && opts="-c audit_ext.context=$ctx"
            [ "$v" = audit_ctx_none ] && opts="-c bench.no_context=on"
            PGOPTIONS="$opts" pgbench -n -c 1 -j 1 -M prepared -T "$DURATION" "${script[@]}" "$db" >"$out.$i" 2>&1 &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || rc=$?; done
        # the clients' figures summed (TPS, transactions), latency averaged
        cat "$out".[0-9]* >"$out"
        awk '/^tps = /{t+=$3} /^number of transactions actually processed:/{n+=$6}
             /^latency average = /{l+=$4; k++}
             END{printf "number of transactions actually processed: %d\nlatency average = %.3f ms\ntps = %.6f (sum of the clients)\n", n, l/k, t}' \
            "$out".[0-9]* >"$out.sum"
        # the summed lines must be the first ones the parsing below finds
        { cat "$out.sum"; grep -v '^tps = \|^latency average = \|^number of transactions actually processed:' "$out"; } >"$out.tmp"
        mv "$out.tmp" "$out"
        rm -f "$out".[0-9]* "$out.sum"
    else
        PGOPTIONS="$opts" pgbench -n -c "$CLIENTS" -j "$THREADS" -M prepared -T "$DURATION" "${script[@]}" "$db" >"$out" 2>&1 || rc=$?
    fi
    p1=$(sql "$db" -F ' ' -c "SELECT lsn, trail_bytes, trail_rows FROM bench.probe()")
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -n1)
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -n1)
    read -r wal tb tr < <(sql "$db" -F ' ' -c "SELECT pg_wal_lsn_diff(b.lsn, a.lsn)::bigint, b.tb - a.tb, b.tr - a.tr
        FROM (SELECT '$(cut -d' ' -f1 <<<"$p0")'::pg_lsn AS lsn, $(cut -d' ' -f2 <<<"$p0")::bigint AS tb, $(cut -d' ' -f3 <<<"$p0")::bigint AS tr) a,
             (SELECT '$(cut -d' ' -f1 <<<"$p1")'::pg_lsn AS lsn, $(cut -d' ' -f2 <<<"$p1")::bigint AS tb, $(cut -d' ' -f3 <<<"$p1")::bigint AS tr) b")
    if [ $rc = 0 ] && [ -n "$tps" ] && [ -n "$txns" ] && ! grep -qiE 'aborted|error' "$out"; then
        record "$c" oltp "$v" "$pos" ok "$DURATION" "$txns" "$tps" "$lat" "$wal" "$tb" "$tr"
        log "  oltp $v: $tps TPS, latency $lat ms, $txns txns, $((wal / txns)) WAL B/txn, $((tb / txns)) audit B/txn, trail rows/txn $(awk -v a="$tr" -v b="$txns" 'BEGIN{printf "%.2f", a/b}')"
    else
        record "$c" oltp "$v" "$pos" error "$DURATION" "${txns:-}" "${tps:-}" "${lat:-}" "$wal" "$tb" "$tr"
        log "  oltp $v: FAILED (pgbench exit $rc), see $out:"
        grep -iE 'aborted|error' "$out" | head -n5 | sed 's/^/    /' >&2 || true
    fi
    measure_drain "$c" oltp "$v"
    # audit_wal: after the drain, so that the capture worker's work counts
    sleep 0.2
    k1=$(bench_server_ticks "$DIR")
    [ $rc = 0 ] && [ -n "$txns" ] && echo "$c,$v,$((k1 - k0)),$txns" >>"$CPUCSV"
    settle "$db"
}

# ---------------------------------------------------------------------------
# Phase 1b: audit_wal's lag under a fixed OLTP load (LAG_LOAD x base TPS)
# ---------------------------------------------------------------------------
LAGCSV=$RESULTS/lag.csv
echo "cycle,rate,tps,samples,lag_max_s,lag_p95_s,lag_median_s,bytes_max,bytes_p95,variant" >"$LAGCSV"
run_oltp_lag() {
    local c=$1 lv=${2:-audit_wal} db base_tps rate out samples rc tps
    db=$(db_of "$lv")
    base_tps=$(awk -F, -v c="$c" '$1==c && $2=="oltp" && $3=="base" && $5=="ok" {print $8}' "$RAW")
    if [ -z "$base_tps" ]; then
        log "  oltp_lag: no base TPS in cycle $c, skipped"
        return 0
    fi
    rate=$(awk -v t="$base_tps" -v l="$LAG_LOAD" 'BEGIN{printf "%d", t * l}')
    out=$RESULTS/oltp_lag-c$c-$lv.log
    samples=$RESULTS/oltp_lag-c$c-$lv.samples
    sql "$db" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history"
    quiesce
    log " oltp_lag $lv: pgbench -R $rate ($LAG_LOAD x base $base_tps TPS) -T $DURATION, capture_lag sampled every 0.2 s"
    : >"$samples"
    # one psql session samples the view (\watch): one connection, no fork per sample
    psql -X -q -At -F ' ' -d "$db" >>"$samples" 2>/dev/null \
        <<<$'SELECT seconds_behind, bytes_behind FROM audit.capture_lag\n\\watch 0.2' &
    local sampler=$!
    rc=0
    pgbench -n -c "$CLIENTS" -j "$THREADS" -M prepared -R "$rate" -T "$DURATION" "$db" >"$out" 2>&1 || rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null || true
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n1)
    if [ $rc != 0 ] || [ -z "$tps" ]; then
        log "  oltp_lag: FAILED (pgbench exit $rc), see $out"
        return 0
    fi
    awk -v c="$c" -v r="$rate" -v t="$tps" -v lv="$lv" '
        NF == 2 && $1 ~ /^[0-9.]+$/ { n++; s[n] = $1 + 0; b[n] = $2 + 0 }
        function sort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
        END {
            if (n == 0) { printf "%s,%s,%s,0,,,,,,%s\n", c, r, t, lv; exit }
            sort(s, n); sort(b, n)
            p = int(0.95 * n + 0.999); if (p < 1) p = 1; if (p > n) p = n
            m = int((n + 1) / 2)
            printf "%s,%s,%s,%d,%.3f,%.3f,%.3f,%d,%d,%s\n", c, r, t, n, s[n], s[p], s[m], b[n], b[p], lv
        }' "$samples" >>"$LAGCSV"
    log "  oltp_lag $lv: $tps TPS at -R $rate; lag $(tail -n1 "$LAGCSV" | awk -F, '{print "max " $5 " s, p95 " $6 " s, median " $7 " s over " $4 " samples; bytes max " $8}')"
    measure_drain "$c" oltp_lag "$lv"
    settle "$db"
}

# ---------------------------------------------------------------------------
# Phases 2 and 3: bulk statements, timed by bench/measure.sql
# ---------------------------------------------------------------------------
# run_bulk CYCLE PHASE VARIANT POS STATEMENT
run_bulk() {
    local c=$1 phase=$2 v=$3 pos=$4 stmt=$5 db out line secs rows wal tb tr
    db=$(db_of "$v")
    out=$RESULTS/$phase-c$c-$v.log
    quiesce
    [ "$v" = audit_walp ] && wal_pause "$db" on
    line=""
    # audit_ctx: the statement runs with the context set, like the OLTP sessions
    local CTX_OPTS=""
    [ "$v" = audit_ctx ] || [ "$v" = audit_ctx_noidx ] && CTX_OPTS="-c audit_ext.context=$CTX_JSON"
    CTX_OPTS=$CTX_OPTS sql "$db" -v stmt="$stmt" -f "$BENCH/measure.sql" >"$TMP_OUT" 2>"$out" && line=$(cat "$TMP_OUT")
    IFS='|' read -r secs rows wal tb tr <<<"$line"
    if [[ ${rows:-} =~ ^[1-9][0-9]*$ ]]; then
        record "$c" "$phase" "$v" "$pos" ok "$secs" "$rows" "" "" "$wal" "$tb" "$tr"
        log "  $phase $v: $rows rows in $(printf '%.2f' "$secs") s, $((wal / rows)) WAL B/row, $((tb / rows)) audit B/row, trail rows/row $(awk -v a="$tr" -v b="$rows" 'BEGIN{printf "%.2f", a/b}')"
    else
        record "$c" "$phase" "$v" "$pos" error "${secs:-}" "${rows:-}" "" "" "${wal:-}" "${tb:-}" "${tr:-}"
        log "  $phase $v: FAILED (no rows changed or an error), see $out:"
        head -n5 "$out" | sed 's/^/    /' >&2
    fi
    measure_drain "$c" "$phase" "$v"
    settle "$db"
}

prepare_bulk_update() {
    sql "$(db_of "$1")" -c "VACUUM pgbench_accounts"
}

prepare_bulk_insert() {
    local v=$1 db
    db=$(db_of "$v")
    # audit_ext: the trail of earlier cycles stays; table_log: its log table goes too
    sql "$db" -c "DROP TABLE IF EXISTS bulk_target"
    if [ "$v" = table_log ]; then
        sql "$db" -c "DROP TABLE IF EXISTS tlog.bulk_target_log" -c "DROP SEQUENCE IF EXISTS tlog.bulk_target_log_seq"
    fi
    sql "$db" -c "CREATE TABLE bulk_target (LIKE pgbench_accounts INCLUDING ALL)"
    enable_trail "$v" "$db" bulk_target
}

# bulk_phase CYCLE PHASE STATEMENT: every variant of the cycle's order, each
# after prepare_PHASE
bulk_phase() {
    local c=$1 phase=$2 stmt=$3 v pos=0
    has_phase "$phase" || return 0
    for v in "${order[@]}"; do
        pos=$((pos + 1))
        log " $phase $v"
        "prepare_$phase" "$v"
        if [ "$v" = sql_floor ]; then
            run_bulk "$c" "$phase" "$v" "$pos" "WITH r AS ($stmt RETURNING *)
                INSERT INTO sqlfloor.sink (event_time, row_data) SELECT now(), to_jsonb(r) FROM r"
        else
            run_bulk "$c" "$phase" "$v" "$pos" "$stmt"
        fi
    done
}

for ((c = 1; c <= CYCLES; c++)); do
    read -r -a order <<<"$(order_for_cycle "$c")"
    log "cycle $c/$CYCLES, order: ${order[*]}"

    pos=0
    if has_phase oltp; then
        for v in "${order[@]}"; do
            pos=$((pos + 1))
            log " oltp $v: pgbench -c $CLIENTS -j $THREADS -M prepared -T $DURATION"
            run_oltp "$c" "$v" "$pos"
        done
    fi
    if has_phase oltp_lag && [[ " ${VARIANTS[*]} " == *" audit_wal "* ]]; then
        run_oltp_lag "$c" audit_wal
    fi
    if has_phase oltp_lag && [[ " ${VARIANTS[*]} " == *" audit_wal0 "* ]]; then
        run_oltp_lag "$c" audit_wal0
    fi

    bulk_phase "$c" bulk_update "UPDATE pgbench_accounts SET abalance = abalance + 1"
    bulk_phase "$c" bulk_insert "INSERT INTO bulk_target SELECT * FROM pgbench_accounts"
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
log "writing the report"
trail_sizes=""
for v in "${VARIANTS[@]}"; do
    [ "$v" = base ] || [ "$v" = audit_ctx_none ] && continue
    trail_sizes+="${trail_sizes:+; }$v $(sql "$(db_of "$v")" -c "SELECT pg_size_pretty(trail_bytes) || ' (' || trail_rows || ' rows)' FROM bench.probe()")"
done
server_problems=$(grep -cE '(ERROR|PANIC|WARNING):' "$DIR/server.log" || true)
{
    echo "# audit_ext benchmark"
    echo
    echo "- Date: $START_TS (took $((SECONDS / 60)) min $((SECONDS % 60)) s)"
    echo "- PostgreSQL: $PG_VERSION"
    echo "- audit_ext: $BUILD_ID"
    echo "- Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM"
    echo "- Knobs: DURATION=$DURATION s, CYCLES=$CYCLES, SCALE=$SCALE, PHASES=$PHASES (pgbench -c $CLIENTS -j $THREADS -M prepared$( [ "$CTX_SESSIONS" = distinct ] && echo "; one pgbench -c 1 per client, CTX_SESSIONS=distinct CTX_TENANT=$CTX_TENANT"))"
    echo "- Load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes the OLTP numbers noisy)"
    echo "- Cluster: synchronous_commit=off, shared_buffers=1GB, max_wal_size=8GB, checkpoint_timeout=30min, fsync=on, wal_level=logical, shared_preload_libraries=audit_ext (in all variants)"
    floor_note=""
    [ "$FLOOR" = 1 ] && floor_note="; audit_noidx (diagnostic, FLOOR=1) = audit_ext with no index on the data-event partitions; sql_floor (diagnostic, FLOOR=1) = no trigger, each statement writes (id, now(), to_jsonb(row)) per changed row into an unindexed table itself (WITH ... RETURNING; OLTP: bench/sql_floor.pgbench)"
    [ "$CONTEXT" = 1 ] || [[ " ${VARIANTS[*]} " == *" audit_ctx "* ]] && floor_note+="; audit_ctx (CONTEXT=1) = audit_ext with 20 risk rules and an end-user context on every session (PGOPTIONS -c audit_ext.context=$CTX_JSON): every event (OLTP and bulk) carries the context, the first event of each context run enters its two partial btree indexes (session_id, tenant: audit_ext.context_index_keys), and every event takes a risk from the rules; audit_ctx_none = audit_ctx's database run with no context set (the same tables, trail, indexes and rules): audit_ctx / audit_ctx_none is what the context alone costs"
    [ "$CTX_PER_TXN" = 1 ] && [ "$CTX_REQUEST_SESSION" = random ] && floor_note+="; CTX_PER_TXN=1: every variant runs bench/tpcb_request.pgbench (bench.begin_request() first in each transaction); in audit_ctx and audit_ctx_noidx it sets the transaction's own context (audit.set_context, is_local: another session, tenant and request each time), so each transaction is a context run of its own"
    [ "$CTX_PER_TXN" = 1 ] && [ "$CTX_REQUEST_SESSION" = connection ] && floor_note+="; CTX_PER_TXN=1 CTX_REQUEST_SESSION=connection: every variant runs bench/tpcb_request.pgbench (bench.begin_request() first in each transaction); in audit_ctx and audit_ctx_noidx it sets the transaction's own context (audit.set_context, is_local): the connection's end-user session, tenant and address, a new request id each time"
    echo "- Variants: base = no trail; audit_ext = audit.enable() on the updated tables; audit_wal = audit.enable(..., capture => 'wal') (events written by the capture worker after the commit: its trail bytes/rows in a step count what it had written when the step ended; the drain is below); table_log = table_log_init(5, ...) (full mode: trigger_id and trigger_user) into schema tlog; audit_walp (diagnostic, when selected) = audit_wal with the capture worker paused during each timed step (audit_ext.wal_capture_pause) and resumed after it: the writer's cost alone, all of the worker's work in its drain; audit_wal0 (diagnostic, when selected) = audit_wal with its capture worker at nice 0 (audit_ext.wal_capture_nice, default 10)$floor_note"
    echo "- Order rotated per cycle; medians over cycles; ratios are ratios of medians, with the ratio within each cycle and its median under each table. WAL = pg_current_wal_lsn() difference; audit bytes = growth of pg_total_relation_size over schema audit (audit_ext) or tlog (table_log); audit rows = events (audit.event_id_seq) or log rows (table_log sequences)."
    echo
    sql postgres -f "$BENCH/report.sql" <"$RAW"
    if [ "$(wc -l <"$CPUCSV")" -gt 1 ]; then
        echo
        echo "### Server CPU per OLTP transaction"
        echo
        echo "CPU time of all PostgreSQL processes over each OLTP step (/proc: the postmaster, its live children, its exited ones; audit_wal's capture worker up to the end of its drain; pgbench itself not counted), divided by the step's transactions. It does not count time spent waiting, so it moves far less with the machine's other load than TPS."
        echo
        echo "| variant | µs per transaction (median) | per cycle | vs base (median of the cycles) |"
        echo "|---|--:|---|--:|"
        for v in "${VARIANTS[@]}"; do
            awk -F, -v v="$v" -v hz="$HZ" '
                NR > 1 { us[$1 "," $2] = $3 * 1e6 / hz / $4; if ($2 == v) cyc[++n] = $1 }
                function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                               return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
                END {
                    if (n == 0) exit
                    for (i = 1; i <= n; i++) { x[i] = us[cyc[i] "," v]; list = list (i > 1 ? ", " : "") sprintf("%.0f", x[i])
                                               if ((cyc[i] ",base") in us) r[++m] = x[i] / us[cyc[i] ",base"] }
                    printf "| %s | %.0f | %s | %s |\n", v, med(x, n), list, (m ? sprintf("%.3f", med(r, m)) : "")
                }' "$CPUCSV"
        done
        # the context variants against their references, cycle by cycle
        for pair in "audit_ctx audit_ctx_none" "audit_ctx_none audit_ext" "audit_rules audit_ext" "audit_ctx audit_ext" "audit_ctx_noidx audit_ext" "audit_ctx audit_ctx_noidx"; do
            read -r a b <<<"$pair"
            awk -F, -v a="$a" -v b="$b" '
                NR > 1 { us[$1 "," $2] = $3 / $4; cy[$1] = 1 }
                END {
                    for (c in cy) if ((c "," a) in us && (c "," b) in us) { r[++n] = us[c "," a] / us[c "," b]; cs[n] = c }
                    if (n == 0) exit
                    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (cs[j] + 0 < cs[i] + 0) { t = cs[i]; cs[i] = cs[j]; cs[j] = t; t = r[i]; r[i] = r[j]; r[j] = t }
                    for (i = 1; i <= n; i++) { list = list (i > 1 ? ", " : "") sprintf("%.3f", r[i]); s[i] = r[i] }
                    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
                    printf "\nServer CPU per transaction, %s / %s per cycle: %s (median **%.3f**).\n", a, b, list, (n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2)
                }' "$CPUCSV"
        done
    fi
    echo
    echo "Trail size at the end: $trail_sizes."
    if [ "$(wc -l <"$DRAIN")" -gt 1 ]; then
        echo
        echo "Drain of audit_wal (and audit_walp: from the resume) — seconds from the end of a step until every event of it is in the trail; medians over cycles:"
        echo
        echo "| variant | phase | drain s (median) | per cycle |"
        echo "|---|---|---|---|"
        for dv in audit_wal audit_wal0 audit_walp; do for ph in $PHASES; do
            [ "$ph" = oltp_lag ] && continue
            vals=$(awk -F, -v p="$ph" -v w="$dv" 'NR>1 && $2==p && $5==w {print $3}' "$DRAIN" | sort -n)
            [ -n "$vals" ] || continue
            echo "| $dv | $ph | $(echo "$vals" | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}') | $(echo "$vals" | paste -sd' ') |"
        done; done
    fi
    if [ "$(wc -l <"$LAGCSV")" -gt 1 ]; then
        echo
        echo "audit_wal lag under a fixed OLTP load of $LAG_LOAD x the cycle's base TPS (pgbench -R, $DURATION s; audit.capture_lag sampled every 0.2 s):"
        echo
        echo "| cycle | variant | rate (TPS) | achieved TPS | samples | seconds_behind max | p95 | median | bytes_behind max | p95 |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        awk -F, 'NR>1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $10, $2, $3, $4, $5, $6, $7, $8, $9}' "$LAGCSV"
        echo
        for lv in audit_wal audit_wal0; do
            grep -q ",$lv\$" "$LAGCSV" || continue
            echo "$lv: median over cycles of the largest seconds_behind: $(awk -F, -v lv="$lv" 'NR>1 && $10 == lv && $5 != "" {print $5}' "$LAGCSV" | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}') s; of its p95: $(awk -F, -v lv="$lv" 'NR>1 && $10 == lv && $6 != "" {print $6}' "$LAGCSV" | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}') s."
            echo
        done
    fi
    if [ "$server_problems" != 0 ]; then
        echo
        echo "Server log: $server_problems ERROR/WARNING/PANIC line(s), first ones:"
        echo
        echo '```'
        grep -E '(ERROR|PANIC|WARNING):' "$DIR/server.log" | head -n 10
        echo '```'
    fi
    echo
    echo "Raw numbers: bench/results/raw.csv"
} >"$REPORT"
cat "$REPORT"
log "done in $((SECONDS / 60)) min $((SECONDS % 60)) s; report in $REPORT"
