#!/usr/bin/env bash
# An error while the event writer opens the store inside a savepoint or a
# PL/pgSQL EXCEPTION block (issue 18, section E): a statement cancelled while
# a session's first flush opens the leaf and its indexes, or a lock timeout
# on one of the indexes of the leaf it opens directly or of the default
# partition it routes to.  Everything the failed open acquired must be freed
# with the error: no resource-leak WARNING at COMMIT, REINDEX of the
# partition works later in the same transaction, the session keeps no old
# snapshot (xmin), and the events of the surviving part of the transaction
# are all there, none of the rolled-back part's.
#
# The cancel is injected with the test-only audit_ext.flush_fault: it is
# flagged as a SIGINT would flag it just before the writer opens the leaf's
# indexes, and raised by the first interrupt check inside PostgreSQL's
# opening code: in a new session, the heap scan of pg_am that builds the
# relcache entry of the leaf's GIN index, with its first btree index open
# and the scan's own relation, tuple descriptor and snapshot references
# held.  That is the moment a statement_timeout sweep hit in 5-10% of
# sessions (the flaky check 9 of transactions.sh).  A lock timeout is a
# query cancel too (raised by the interrupt check in the lock wait), with
# the partition and its earlier indexes open.
#
# A cluster of its own: no maintenance round (it would create the month
# partition the routing database removes), no autovacuum (its transactions
# would blur the xmin check).
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/flush_errors
PORT=$(( ${PGPORT:-5497} + 25 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "audit_ext.maintenance_interval = 604800" "autovacuum = off" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
OTHER="host=$DIR port=$PORT user=postgres"

setup_db() {   # database: audited table f, unaudited table plain, dblink for a second session
    q -d postgres -c "CREATE DATABASE $1" >/dev/null
    q -d "$1" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE EXTENSION dblink;
CREATE TABLE f (id int PRIMARY KEY, tag text);
CREATE TABLE plain (id int);
SELECT audit.enable('f');
INSERT INTO f VALUES (0, 'setup');
SQL
}

# The events of f with ids in [$2, $2 + 99999], and the rows of f there.
events_of() {   # database, first id
    echo "$(q -d "$1" -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event
                          WHERE table_name = 'f' AND class = 'data' AND (record_id->>'id')::int BETWEEN $2 AND $2 + 99999")|$(
            q -d "$1" -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM f WHERE id BETWEEN $2 AND $2 + 99999")"
}

# A new session whose first flush fails inside SAVEPOINT a ($2: SQL), while
# another session (through dblink) holds a transaction id and, if $5 is
# given, ACCESS EXCLUSIVE on index $5; then ROLLBACK TO SAVEPOINT, the other
# session commits, two audited statements ($4 and $4 + 1, the second in a
# released savepoint), and inside the same transaction: the session's xmin
# is newer than the other's transaction id, REINDEX of $3 works (if it
# fails, the transaction goes on to COMMIT: ON_ERROR_ROLLBACK).  Prints what
# psql printed: the only error must be the injected one, and COMMIT must
# print no WARNING.
savepoint_case() {   # database, failing SQL, partition to reindex, first kept id[, index the other session locks]
    psql -X -q -At -d "$1" 2>&1 <<SQL
SELECT dblink_connect('other', '$OTHER dbname=$1') \g /dev/null
SELECT dblink_exec('other', 'BEGIN') \g /dev/null
SELECT x AS other_xid FROM dblink('other', 'SELECT txid_current()') AS t(x bigint) \gset
${5:+SELECT dblink_exec('other', 'ALTER INDEX $5 SET TABLESPACE pg_default') \g /dev/null}
BEGIN;
INSERT INTO plain VALUES (1);
SAVEPOINT a;
$2
ROLLBACK TO SAVEPOINT a;
SELECT dblink_exec('other', 'COMMIT') \g /dev/null
INSERT INTO f VALUES ($4, 'kept');
SAVEPOINT b;
INSERT INTO f VALUES ($4 + 1, 'kept');
RELEASE SAVEPOINT b;
SELECT CASE WHEN backend_xmin::text::bigint > :other_xid THEN 'xmin newer than the other transaction'
            ELSE 'old xmin ' || backend_xmin || ' kept (the other transaction is ' || :other_xid || ')' END
FROM pg_stat_activity WHERE pid = pg_backend_pid();
\\set ON_ERROR_ROLLBACK on
REINDEX TABLE $3;
COMMIT;
SQL
}

# The same in a PL/pgSQL EXCEPTION block: the other session locks index $5
# (if given) until the block has failed.
exception_case() {   # database, failing SQL, condition caught, partition to reindex, kept id[, index the other session locks]
    psql -X -q -At -d "$1" 2>&1 <<SQL
SELECT dblink_connect('other', '$OTHER dbname=$1') \g /dev/null
SELECT dblink_exec('other', 'BEGIN') \g /dev/null
${6:+SELECT dblink_exec('other', 'ALTER INDEX $6 SET TABLESPACE pg_default') \g /dev/null}
BEGIN;
DO \$\$
BEGIN
    BEGIN
        $2
    EXCEPTION WHEN $3 THEN
        RAISE NOTICE 'caught: %', SQLERRM;
    END;
    PERFORM dblink_exec('other', 'COMMIT');
    INSERT INTO f VALUES ($5, 'kept');
END
\$\$;
\\set ON_ERROR_ROLLBACK on
REINDEX TABLE $4;
COMMIT;
SQL
}

# The last index of a partition: the leaf and its other indexes are open
# when its lock is awaited.
last_index() {   # database, partition[, regular expression the index name must not match]
    q -d "$1" -c "SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$2'::regclass
                   AND indexrelid::regclass::text !~ '${3:-^$}' ORDER BY indexrelid DESC LIMIT 1"
}

ok_case='xmin newer than the other transaction'

# 1. The leaf opened directly (its month's partition exists).
DB=audit_e2e_flush
setup_db $DB
LEAF=$(q -d $DB -c "SELECT tableoid::regclass FROM audit.event WHERE table_name = 'f' AND class = 'data'")
CANCEL="SET LOCAL audit_ext.flush_fault = cancel_leaf_indexes;"
out=$(savepoint_case $DB "$CANCEL
INSERT INTO f SELECT g, 'cancelled' FROM generate_series(100002, 101500) g;" "$LEAF" 100000)
is "$out" $'ERROR:  canceling statement due to user request\n'"$ok_case" \
   "a cancel while the first flush opens the leaf's indexes, in a savepoint: no leak warning, fresh xmin, REINDEX of $LEAF works"
is "$(events_of $DB 100000)" "100000,100001|100000,100001" \
   "the events of the statements after the rollback are all there, none of the cancelled one's" "$out"

out=$(exception_case $DB "PERFORM set_config('audit_ext.flush_fault', 'cancel_leaf_indexes', true);
        INSERT INTO f SELECT g, 'cancelled' FROM generate_series(200001, 201500) g;" query_canceled "$LEAF" 200000)
is "$out" 'NOTICE:  caught: canceling statement due to user request' \
   "a cancel while the first flush opens the leaf's indexes, in a PL/pgSQL EXCEPTION block: no leak warning, REINDEX works"
is "$(events_of $DB 200000)" "200000|200000" "after the EXCEPTION block: its events are gone, the block's later ones are there" "$out"

# Another session holds the leaf's last index (ACCESS EXCLUSIVE): a lock
# timeout after the leaf and its other indexes were opened.  The context
# indexes (stop 32) and the TRUNCATE and key-change indexes (stop 34) are
# opened only for an event that may enter them: the last of the others
# here, a context index below.
IDX=$(last_index $DB "$LEAF" '_(ctx_.*|truncate|key_change)_idx$')
out=$(savepoint_case $DB "SET LOCAL lock_timeout = '200ms';
INSERT INTO f SELECT g, 'cancelled' FROM generate_series(300002, 301500) g;" "$LEAF" 300000 "$IDX")
is "$out" $'ERROR:  canceling statement due to lock timeout\n'"$ok_case" \
   "a lock timeout on $IDX while the first flush opens the leaf, in a savepoint: no leak warning, REINDEX works"
is "$(events_of $DB 300000)" "300000,300001|300000,300001" \
   "after the lock timeout: the later events are there, none of the failed statement's" "$out"

# The same on a context index, which the writer opens in the middle of the
# flush, once it meets the first event with a context: a lock timeout there
# leaves nothing behind either.
IDX=$(last_index $DB "$LEAF")
out=$(savepoint_case $DB "SET LOCAL lock_timeout = '200ms';
SELECT audit.set_context(session_id => 'flush-errors') \\g /dev/null
INSERT INTO f SELECT g, 'cancelled' FROM generate_series(500002, 501500) g;" "$LEAF" 500000 "$IDX")
is "$out" $'ERROR:  canceling statement due to lock timeout\n'"$ok_case" \
   "a lock timeout on $IDX (a context index, opened for the first event with a context), in a savepoint: no leak warning, REINDEX works"
is "$(events_of $DB 500000)" "500000,500001|500000,500001" \
   "after that lock timeout: the later events are there, none of the failed statement's" "$out"

# 2. Routing: no partition holds this month, the events go to the default
# partition through ExecFindPartition(), which opens it and its indexes.
RDB=audit_e2e_flush_route
setup_db $RDB
q -d $RDB >/dev/null <<'SQL'
SELECT tableoid::regclass AS leaf FROM audit.event WHERE table_name = 'f' AND class = 'data' \gset
SET audit_ext.protect_trail = off;
ALTER TABLE audit.event_data DETACH PARTITION :leaf;
DROP TABLE :leaf;
SQL
DEF=audit.event_data_default
IDX=$(last_index $RDB $DEF)
out=$(savepoint_case $RDB "SET LOCAL lock_timeout = '200ms';
INSERT INTO f SELECT g, 'cancelled' FROM generate_series(100002, 101500) g;" $DEF 100000 "$IDX")
is "$out" $'ERROR:  canceling statement due to lock timeout\n'"$ok_case" \
   "a lock timeout on $IDX while the first flush routes to the default partition, in a savepoint: no leak warning, REINDEX works"
is "$(events_of $RDB 100000)|$(q -d $RDB -c "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM audit.event WHERE table_name = 'f' AND (record_id->>'id')::int >= 100000")" \
   "100000,100001|100000,100001|$DEF" \
   "the events of the statements after the rollback are all there, in the default partition, none of the failed one's" "$out"

out=$(exception_case $RDB "SET LOCAL lock_timeout = '200ms';
        INSERT INTO f SELECT g, 'cancelled' FROM generate_series(200001, 201500) g;" lock_not_available $DEF 200000 "$IDX")
is "$out" 'NOTICE:  caught: canceling statement due to lock timeout' \
   "a lock timeout on $IDX while the first flush routes, in a PL/pgSQL EXCEPTION block: no leak warning, REINDEX works"
is "$(events_of $RDB 200000)" "200000|200000" "after the EXCEPTION block: its events are gone, the block's later one is there" "$out"

# 3. A partition created in a savepoint that is rolled back, after the
# writer routed events into it: the writer's references to it go with the
# savepoint (they used to outlive it: "cannot remove relcache entry ...
# because it has nonzero refcount").
out=$(psql -X -q -At -d $RDB 2>&1 <<'SQL'
SET client_min_messages = warning;
BEGIN;
INSERT INTO f VALUES (400000, 'kept');
SAVEPOINT s;
SELECT audit.create_month_partition('data', now()) \g /dev/null
INSERT INTO f VALUES (400001, 'rolled back');
ROLLBACK TO SAVEPOINT s;
INSERT INTO f VALUES (400002, 'kept');
COMMIT;
SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM audit.event WHERE table_name = 'f' AND (record_id->>'id')::int >= 400000;
SQL
)
is "$out" "$DEF" "a partition created and written in a savepoint that is rolled back: no warning, the events stay in the default partition"
is "$(events_of $RDB 400000)" "400000,400002|400000,400002" "the events of the rolled-back savepoint are gone, the others are there" "$out"

done_testing
