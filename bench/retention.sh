#!/usr/bin/env bash
# Retention benchmark: prune with archive of a monthly partition of ROWS real
# data events (gzip JSON lines, SHA-256, fsync, DROP), restore_archive of that
# file, and the cost of the append-only trigger on inserts (it fires only on
# UPDATE/DELETE: inserts with it enabled and disabled, interleaved).
#   PORT=5499 BENCH_DIR=/tmp/audit_bench_retention ROWS=1000000 ROUNDS=3 bash bench/retention.sh
# Prints a Markdown table; needs audit_ext installed (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgenv.sh
PORT=${PORT:-5499}
DIR=${BENCH_DIR:-/tmp/audit_bench_retention}
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
INS=${INSERT_ROWS:-200000}
rm -rf "$DIR"
trap 'pg_stop "$DIR"; rm -rf "$DIR"' EXIT
pg_start "$DIR" "$PORT" "synchronous_commit = off" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
    "audit_ext.archive_directory = '$DIR/archive'" "audit_ext.maintenance_interval = 3600"
q() { psql -X -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
ms() { date +%s%N | cut -c1-13; }

# Real events: an audited table with a primary key, ROWS inserted, then
# copied into January 2024 (same content, old event_time).
q >/dev/null <<SQL
CREATE EXTENSION audit_ext;
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric, status text, note text);
SELECT audit.enable('orders');
INSERT INTO orders SELECT g, 'customer ' || (g % 5000), (g % 997) * 1.5, 'open', md5(g::text)
  FROM generate_series(1, $ROWS) g;
SELECT audit.create_month_partition('data', '2024-01-01');
INSERT INTO audit.event (event_time, class, action, status, db_user, "session_user", actor, client_addr,
                         application_name, backend_pid, txid, statement_id, statement_seq, schema_name,
                         table_name, record_id, old_data, new_data, changed_columns, detail)
SELECT '2024-01-15'::timestamptz + (id % 86400) * interval '1 second', class, action, status, db_user,
       "session_user", actor, client_addr, application_name, backend_pid, txid, statement_id, statement_seq,
       schema_name, table_name, record_id, old_data, new_data, changed_columns, detail
  FROM audit.event WHERE class = 'data' AND table_name = 'orders';
CHECKPOINT;
SQL
part_bytes=$(q -c "SELECT pg_total_relation_size('audit.event_data_p202401')")
heap_bytes=$(q -c "SELECT pg_relation_size('audit.event_data_p202401')")
n=$(q -c "SELECT count(*) FROM audit.event_data_p202401")

q -c "SELECT audit.set_retention('data', interval '1 year', archive => true)" >/dev/null
t0=$(ms)
q -c "SELECT * FROM audit.prune()" >/dev/null
t1=$(ms)
read -r file rows bytes raw <<<"$(q -F' ' -c "SELECT file, rows, bytes, raw_bytes FROM audit.archives")"
prune_ms=$((t1 - t0))

t0=$(ms)
q -c "SELECT audit.restore_archive('$file')" >/dev/null
t1=$(ms)
restore_ms=$((t1 - t0))

# Append-only trigger on inserts: INS audited rows per run, trigger enabled / disabled, interleaved.
on=(); off=()
for r in $(seq 1 "$ROUNDS"); do
    for mode in on off; do
        if [ $mode = off ]; then q -c "ALTER TABLE audit.event DISABLE TRIGGER audit_append_only" >/dev/null; fi
        q -c "TRUNCATE orders" >/dev/null
        t0=$(ms)
        q -c "INSERT INTO orders SELECT g, 'c', 1, 'open', 'x' FROM generate_series(1, $INS) g" >/dev/null
        t1=$(ms)
        if [ $mode = off ]; then q -c "ALTER TABLE audit.event ENABLE ALWAYS TRIGGER audit_append_only" >/dev/null; off+=($((t1 - t0))); else on+=($((t1 - t0))); fi
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

awk -v n="$n" -v rows="$rows" -v pms="$prune_ms" -v rms="$restore_ms" -v bytes="$bytes" -v raw="$raw" \
    -v part="$part_bytes" -v heap="$heap_bytes" -v on="$(median "${on[@]}")" -v off="$(median "${off[@]}")" \
    -v ins="$INS" -v rounds="$ROUNDS" 'BEGIN {
  printf "| what | value |\n|---|--:|\n"
  printf "| events in the partition | %d (heap %.0f MB, with indexes %.0f MB) |\n", n, heap/1048576, part/1048576
  printf "| prune with archive (write, fsync, rename, DROP) | %.1f s |\n", pms/1000
  printf "| archive throughput | %.0f rows/s, %.1f MB/s of JSON in, %.1f MB/s of gzip out |\n", rows/(pms/1000), raw/1048576/(pms/1000), bytes/1048576/(pms/1000)
  printf "| archive file | %.1f MB (JSON %.1f MB, ratio %.1f:1; %.0f bytes per event) |\n", bytes/1048576, raw/1048576, raw/bytes, bytes/rows
  printf "| restore_archive (verify, gunzip, insert) | %.1f s, %.0f rows/s |\n", rms/1000, rows/(rms/1000)
  printf "| INSERT of %d audited rows, append-only trigger enabled / disabled (median of %d) | %d ms / %d ms (%.2f) |\n", ins, rounds, on, off, on/off
}'
