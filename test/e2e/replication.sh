#!/usr/bin/env bash
# Shipping the trail: two source databases on one cluster publish their
# trails (audit.publish()), a central cluster subscribes with PostgreSQL's
# logical replication.  Events arrive complete, name their source, verify
# there, and a central cluster that was down catches up.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
BASE=${AUDIT_TEST_TMP:-/tmp}/replication
SRC_PORT=$(( ${PGPORT:-5497} + 80 ))
CEN_PORT=$(( ${PGPORT:-5497} + 90 ))
rm -rf "$BASE"
mkdir -p "$BASE"
trap 'finish_clusters "$BASE/source" "$BASE/central"; [ -n "${KEEP:-}" ] || rm -rf "$BASE"' EXIT
watch_log "$BASE/source/server.log"
watch_log "$BASE/central/server.log"
pg_start "$BASE/source" "$SRC_PORT" "wal_level = logical" "max_wal_senders = 10" "max_replication_slots = 10" \
    || { echo "not ok - could not start the source cluster"; exit 1; }
pg_start "$BASE/central" "$CEN_PORT" "max_logical_replication_workers = 8" \
    || { echo "not ok - could not start the central cluster"; exit 1; }
src() { PGHOST=127.0.0.1 PGPORT=$SRC_PORT q "$@"; }
cen() { PGHOST=127.0.0.1 PGPORT=$CEN_PORT q "$@"; }
cen_wait() { PGHOST=127.0.0.1 PGPORT=$CEN_PORT wait_for "$@"; }

# Two source databases, each with its own trail; the same statement text in both.
for db in shop1 shop2; do
    src -d postgres -c "CREATE DATABASE $db" >/dev/null
    src -d $db >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text);
SELECT audit.enable('orders');
INSERT INTO orders SELECT g, g * 1.5, 'ünïcode ' || g FROM generate_series(1, 200) g;
UPDATE orders SET amount = amount + 1 WHERE id <= 50;
DELETE FROM orders WHERE id > 190;
SQL
done
is "$(src -d shop1 -c "SELECT audit.publish()")" "audit_trail" "audit.publish() creates the publication"
src -d shop2 -c "SELECT audit.publish()" >/dev/null
is "$(src -d shop1 -c "SELECT pubinsert, pubupdate, pubdelete, pubviaroot FROM pg_publication WHERE pubname = 'audit_trail'")" "t|f|f|t" \
   "inserts only, published via the partition root"
is "$(src -d shop1 -c "SELECT count(*) FROM audit.event WHERE action = 'PUBLISH'")" "1" "publishing is itself an audit event"
is "$(src -d shop1 -c "SELECT audit.publish()")" "audit_trail" "audit.publish() again updates it"

# The central cluster: audit_ext for the store, one subscription per source.
cen -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
SELECT audit.create_partitions();
SQL
for db in shop1 shop2; do
    cen -d postgres -c "CREATE SUBSCRIPTION $db CONNECTION 'host=127.0.0.1 port=$SRC_PORT dbname=$db user=postgres' PUBLICATION audit_trail" >/dev/null 2>&1
done

fingerprint() {   # the events of one source, in id order, without the source column
    "$@" -c "SELECT count(*) || ':' || md5(string_agg(concat_ws('|', id, event_time, class, action, status, db_user, actor,
                  txid, statement_id, schema_name, table_name, record_id, old_data, new_data, changed_columns,
                  detail, chain_lane, chain_seq, encode(hash, 'hex')), ',' ORDER BY id))
             FROM audit.event WHERE $WHERE"
}
src_count() { src -d "$1" -c "SELECT count(*) FROM audit.event"; }
n1=$(src_count shop1)
n2=$(src_count shop2)
cen_wait "SELECT count(*) FILTER (WHERE source = 'shop1') = $n1 AND count(*) FILTER (WHERE source = 'shop2') = $n2 FROM audit.event" 60
is "$?" "0" "the central cluster receives both trails ($n1 + $n2 events), each row naming its source"
WHERE="true" fingerprint src -d shop1 > "$BASE/s1"
WHERE="source = 'shop1'" fingerprint cen -d postgres > "$BASE/c1"
is "$(cat "$BASE/c1")" "$(cat "$BASE/s1")" "the replicated events are identical to the source's"
is "$(cen -d postgres -c "SELECT count(*) FROM audit.event e WHERE source IS NOT NULL AND statement_id IS NOT NULL
                            AND NOT EXISTS (SELECT FROM audit.statement s WHERE s.statement_id = e.statement_id)")" "0" \
   "statement texts arrive too (every replicated event's text is there)"
texts() { src -d "$1" -c "SELECT DISTINCT md5(statement_text) FROM audit.statement" | sort; }
common=$(comm -12 <(texts shop1) <(texts shop2))
ncommon=$(grep -c . <<<"$common")
in_list=$(sed "s/.*/'&'/" <<<"$common" | paste -sd,)
is "$([ "$ncommon" -gt 0 ] && echo some)|$(cen -d postgres -c "SELECT count(*) FROM audit.statement WHERE md5(statement_text) IN (${in_list:-''})" 2>&1)" \
   "some|$ncommon" "the same text from two sources is stored once ($ncommon texts both sources have: one row each)" \
   "$(cen -d postgres -c "SELECT md5(statement_text), count(*) FROM audit.statement WHERE md5(statement_text) IN (${in_list:-''}) GROUP BY 1 HAVING count(*) > 1" 2>&1)"
is "$(cen -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the chains verify on the central cluster"

# The central cluster goes down; the sources keep writing; it catches up.
pg_stop "$BASE/central"
for db in shop1 shop2; do
    src -d $db -c "INSERT INTO orders SELECT g, g, 'while the central was down' FROM generate_series(1000, 1999) g" >/dev/null
done
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$BASE/central/data" -l "$BASE/central/server.log" -w -t 60 start >/dev/null)
n1=$(src_count shop1)
n2=$(src_count shop2)
cen_wait "SELECT count(*) FILTER (WHERE source = 'shop1') = $n1 AND count(*) FILTER (WHERE source = 'shop2') = $n2 FROM audit.event" 60
is "$?" "0" "a central cluster that was down catches up"
WHERE="true" fingerprint src -d shop2 > "$BASE/s2"
WHERE="source = 'shop2'" fingerprint cen -d postgres > "$BASE/c2"
is "$(cat "$BASE/c2")" "$(cat "$BASE/s2")" "nothing lost or doubled"
is "$(cen -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "and the chains still verify"

# Throughput of the shipping (informational, not an assertion).
t0=$(date +%s%N)
src -d shop1 -c "INSERT INTO orders SELECT g, g, 'bulk' FROM generate_series(100000, 149999) g" >/dev/null
n1=$(src_count shop1)
cen_wait "SELECT count(*) = $n1 FROM audit.event WHERE source = 'shop1'" 120
is "$?" "0" "50,000 more events arrive"
t1=$(date +%s%N)
echo "# 50000 events written and shipped in $(( (t1 - t0) / 1000000 )) ms"

done_testing
