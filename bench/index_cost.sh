#!/usr/bin/env bash
# What each index of the data-event partitions costs an audited OLTP load.
# Variants, each in its own database (pgbench -i -s SCALE, the three updated
# tables audited as in bench/run.sh):
#   base        no trail
#   all         audit_ext as installed (id, record GIN, (actor, id), BRIN)
#   no_<index>  audit_ext with that one index dropped from every data-event
#               partition (not a configuration to run: a measurement)
#   none        audit_ext with no index on the data-event partitions
#   no_partial  audit_ext without the two partial indexes no OLTP event
#               enters (key_change_idx, truncate_idx): what opening them in
#               every transaction costs (fast-path lock slots among it)
#   all_noav    (only when named in VARIANTS) "all" with autovacuum off on the
#               data-event partitions: does autovacuum of the trail during
#               the run explain the indexes' cost?
# Each cycle runs pgbench -c CLIENTS -j CLIENTS -M prepared -T DURATION on every variant,
# the order rotated per cycle; the report gives each variant's TPS ratio to
# base within each cycle and the median of those ratios.  Own throwaway
# cluster on port 5489, the settings of bench/run.sh.
# Usage: DURATION=20 CYCLES=4 bash bench/index_cost.sh   (as root)
# Knobs: CLIENTS (pgbench -c and -j, default 2), VARIANTS (a subset, in
# order, e.g. VARIANTS="base all none" CLIENTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CYCLES=${CYCLES:-4}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-2}
source scripts/pgenv.sh
source bench/lib.sh
bench_positive_ints DURATION CYCLES SCALE CLIENTS
DIR=/tmp/audit_index_cost
read -r -a VARIANTS <<<"${VARIANTS:-base all no_id no_record no_actor no_time none}"
for v in "${VARIANTS[@]}"; do
    case $v in base | all | no_id | no_record | no_actor | no_time | none | no_partial | all_noav) ;;
        *) echo "VARIANTS: unknown variant '$v'" >&2; exit 1 ;; esac
done
[[ " ${VARIANTS[*]} " == *" base "* ]] || { echo "VARIANTS must include base" >&2; exit 1; }
bench_start_cluster "$DIR" 5489
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# drop_event_index DB SUFFIX: the index named *_SUFFIX on every data-event leaf
drop_event_index() {
    q -d "$1" -c "SET audit_ext.protect_trail = off" -c "
        DO \$\$ DECLARE i regclass; BEGIN
            FOR i IN SELECT x.indexrelid::regclass FROM pg_index x
                      WHERE x.indrelid IN (SELECT relid FROM pg_partition_tree('audit.event_data') WHERE isleaf)
                        AND ('$2' = '' OR x.indexrelid::regclass::text LIKE '%\\_$2') LOOP
                EXECUTE format('DROP INDEX %s', i);
            END LOOP;
        END \$\$"
}

for v in "${VARIANTS[@]}"; do
    log "creating database $v"
    createdb "$v"
    pgbench -i -q -s "$SCALE" "$v" >/dev/null 2>&1
    if [ "$v" != base ]; then
        q -d "$v" -c "CREATE EXTENSION audit_ext" \
            -c "SELECT audit.enable('public.' || t) FROM unnest('{pgbench_accounts,pgbench_tellers,pgbench_branches}'::text[]) t" >/dev/null
        case $v in
            no_id) drop_event_index "$v" id_idx ;;
            no_record) drop_event_index "$v" record_idx ;;
            no_actor) drop_event_index "$v" actor_idx ;;
            no_time) drop_event_index "$v" time_brin ;;
            none) drop_event_index "$v" "" ;;
            no_partial) drop_event_index "$v" key_change_idx && drop_event_index "$v" truncate_idx ;;
            all_noav) q -d "$v" -c "SET audit_ext.protect_trail = off" -c "
                DO \$\$ DECLARE r regclass; BEGIN
                    FOR r IN SELECT relid FROM pg_partition_tree('audit.event_data') WHERE isleaf LOOP
                        EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', r);
                    END LOOP;
                END \$\$" ;;
        esac
    fi
    q -d "$v" -c "VACUUM ANALYZE"
done

RAW=$(mktemp)
VLIST=$(IFS=,; echo "${VARIANTS[*]}")
for ((c = 1; c <= CYCLES; c++)); do
    for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
        v=${VARIANTS[$(((c - 1 + k) % ${#VARIANTS[@]}))]}
        q -d "$v" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history"
        for ((i = 0; i < 300; i++)); do
            [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" = 0 ] && break
            sleep 1
        done
        q -d postgres -c "CHECKPOINT"
        tps=$(pgbench -n -c "$CLIENTS" -j "$CLIENTS" -M prepared -T "$DURATION" "$v" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n1)
        [ -n "$tps" ] || { log "pgbench failed on $v"; exit 1; }
        log "cycle $c $v: $tps TPS"
        echo "$c,$v,$tps" >>"$RAW"
        q -d "$v" -c "VACUUM ANALYZE"
    done
done

echo "# Event indexes under OLTP ($(date -u '+%Y-%m-%d %H:%M UTC'), DURATION=$DURATION CYCLES=$CYCLES SCALE=$SCALE CLIENTS=$CLIENTS)"
echo
echo "| variant | TPS / base per cycle | median | median TPS |"
echo "|---|---|--:|--:|"
q -d postgres <<SQL
CREATE TEMP TABLE raw (cycle int, variant text, tps numeric);
\copy raw FROM '$RAW' WITH (FORMAT csv)
SELECT format('| %s | %s | **%s** | %s |', a.variant,
              string_agg(round(a.tps / b.tps, 2)::text, ', ' ORDER BY a.cycle),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY a.tps / b.tps))::numeric, 2),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY a.tps))::numeric))
  FROM raw a JOIN raw b ON b.cycle = a.cycle AND b.variant = 'base'
 GROUP BY a.variant
 ORDER BY array_position('{$VLIST}'::text[], a.variant);
SQL
rm -f "$RAW"
