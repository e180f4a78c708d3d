#!/usr/bin/env bash
# What opening the leaf's partial indexes in every audited transaction costs
# (stop 34).  The writer opens the TRUNCATE, key-change and context indexes
# only for a batch holding an event that may enter them, recognising them by
# their predicate (src/event_writer.c, writer_open_leaf_indexes()).  This
# script alternates, on one database, the indexes as installed ("deferred")
# with the same two partial indexes re-created under a predicate the writer
# does not recognise, so it opens them in every transaction ("opened"), as
# before stop 34.  The load is bench/tpcb_request.pgbench with a context per
# transaction (another session, tenant and request each time), whose first
# event opens the two context indexes: 18 relation locks per transaction
# with the partial indexes opened, 16 (the backend's fast-path slots)
# without.  Each round: CHECKPOINT, pgbench -c 2 -j 2 -M prepared -T
# DURATION; the order A B B A A B ... balances drift.  Own throwaway cluster
# on port 5488, the settings of bench/run.sh.
# Usage: DURATION=30 ROUNDS=8 bash bench/deferred_indexes.sh   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-8}
SCALE=${SCALE:-10}
source scripts/pgenv.sh
source bench/lib.sh
bench_positive_ints DURATION ROUNDS SCALE
DIR=/tmp/audit_deferred_indexes
bench_start_cluster "$DIR" 5488
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

createdb bench
pgbench -i -q -s "$SCALE" bench >/dev/null 2>&1
q -d bench -f bench/setup.sql >/dev/null
q -d bench -c "CREATE EXTENSION audit_ext" \
    -c "SELECT audit.enable('public.' || t) FROM unnest('{pgbench_accounts,pgbench_tellers,pgbench_branches}'::text[]) t" \
    -c "CREATE OR REPLACE FUNCTION bench.begin_request(k integer) RETURNS void LANGUAGE sql VOLATILE AS \$\$
            SELECT audit.set_context(session_id => 'sess-' || (k % 5000), tenant => 'tenant-' || (k % 50),
                                     client_ip => ('10.0.' || (k % 200) || '.' || (k % 250))::inet,
                                     user_agent => 'Mozilla/5.0', user_role => 'clerk', request_id => 'req-' || k)
        \$\$" >/dev/null

# set_state deferred|opened: the two partial indexes of every data-event leaf
# with the predicate audit.create_event_indexes() gives, or with one the
# writer does not recognise (the same rows, one clause more)
set_state() {
    local extra=''
    [ "$1" = opened ] && extra=' AND id IS NOT NULL'
    q -d bench -c "SET audit_ext.protect_trail = off" -c "
        DO \$\$ DECLARE p regclass; n text; BEGIN
            FOR p, n IN SELECT relid, relid::regclass::text FROM pg_partition_tree('audit.event_data') WHERE isleaf LOOP
                EXECUTE format('DROP INDEX IF EXISTS %s, %s', n || '_key_change_idx', n || '_truncate_idx');
                EXECUTE format('CREATE INDEX %I ON %s ((detail -> ''new_record_id'')) WHERE detail ? ''new_record_id''$extra',
                               split_part(n, '.', 2) || '_key_change_idx', p);
                EXECUTE format('CREATE INDEX %I ON %s (id) WHERE action = ''TRUNCATE''$extra',
                               split_part(n, '.', 2) || '_truncate_idx', p);
            END LOOP;
        END \$\$"
}

RAW=$(mktemp)
for ((r = 1; r <= ROUNDS; r++)); do
    for s in deferred opened; do
        # A B B A A B ...: flip the order every other round
        if (( (r / 2) % 2 == 1 )); then [ $s = deferred ] && s=opened || s=deferred; fi
        set_state $s
        q -d bench -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "TRUNCATE pgbench_history" -c "CHECKPOINT"
        out=$(pgbench -n -c 2 -j 2 -M prepared -T "$DURATION" -s "$SCALE" -f bench/tpcb_request.pgbench bench 2>&1)
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1)
        [ -n "$tps" ] || { log "pgbench failed: $out"; exit 1; }
        log "round $r $s: $tps TPS"
        echo "$r,$s,$tps" >>"$RAW"
    done
done

echo "# Deferred partial indexes under a context per transaction ($(date -u '+%Y-%m-%d %H:%M UTC'), DURATION=$DURATION ROUNDS=$ROUNDS SCALE=$SCALE)"
echo
q -d postgres <<SQL
CREATE TEMP TABLE raw (round int, state text, tps numeric);
\copy raw FROM '$RAW' WITH (FORMAT csv)
SELECT format('deferred / opened per round: %s; median **%s**; median TPS deferred %s, opened %s',
              string_agg(round(d.tps / o.tps, 2)::text, ', ' ORDER BY d.round),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d.tps / o.tps))::numeric, 3),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d.tps))::numeric),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY o.tps))::numeric))
  FROM raw d JOIN raw o ON o.round = d.round AND o.state = 'opened'
 WHERE d.state = 'deferred';
SQL
rm -f "$RAW"
