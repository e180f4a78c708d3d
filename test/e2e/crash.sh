#!/usr/bin/env bash
# Crash safety: a write load on audited tables (pgbench TPC-B plus a custom
# script), the postmaster killed with SIGKILL in the middle, restart.
# CRASH_ROUNDS=10 for a longer run.  Afterwards every committed change has
# exactly its events and no event exists for a change that did not commit.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/crash
PORT=$(( ${PGPORT:-5497} + 20 ))
ROUNDS=${CRASH_ROUNDS:-2}
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "fsync = on" "synchronous_commit = on" || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE ledger (id bigint PRIMARY KEY, amount int, note text);
CREATE TABLE balance (id int PRIMARY KEY, total bigint);
INSERT INTO balance SELECT g, 0 FROM generate_series(1, 10) g;
SELECT audit.enable('ledger');
SELECT audit.enable('balance');
CREATE SEQUENCE ledger_id;
SQL
# pgbench's own TPC-B tables, audited, run beside the custom script
pgbench -i -q -s 1 postgres >/dev/null 2>&1 || { echo "not ok - pgbench -i failed"; exit 1; }
q -d postgres >/dev/null <<'SQL'
SELECT audit.enable('pgbench_accounts');
SELECT audit.enable('pgbench_branches');
SELECT audit.enable('pgbench_history');
SQL
cat > "$DIR/load.sql" <<'SQL'
\set b random(1, 10)
\set a random(1, 1000)
BEGIN;
INSERT INTO ledger VALUES (nextval('ledger_id'), :a, 'x');
UPDATE balance SET total = total + :a WHERE id = :b;
SAVEPOINT s;
INSERT INTO ledger VALUES (nextval('ledger_id'), -:a, 'undone');
ROLLBACK TO s;
END;
SQL

for round in $(seq 1 "$ROUNDS"); do
    pgbench -n -c 4 -j 2 -T 20 -b tpcb-like -f "$DIR/load.sql" postgres >/dev/null 2>&1 &
    bench=$!
    # handshake: the load is under way (more rows committed than before the round)
    before_round=$(q -d postgres -c "SELECT count(*) FROM ledger")
    wait_for "SELECT count(*) >= $before_round + 200 * $round FROM ledger" 60
    is "$?" "0" "round $round: the load is under way when the postmaster is killed"
    pm=$(head -1 "$DIR/data/postmaster.pid")
    kill -9 "$pm"
    wait $bench 2>/dev/null
    # the backends notice the postmaster's death and exit; wait for all of them
    for _ in $(seq 1 600); do
        [ -z "$(ps -o pid= --ppid "$pm" 2>/dev/null)" ] && ! kill -0 "$pm" 2>/dev/null && break
        sleep 0.1
    done
    rm -f "$DIR/data/postmaster.pid" "$DIR/.s.PGSQL.$PORT.lock"
    (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 120 start >/dev/null) \
        || { echo "not ok - restart after crash $round failed"; tail -20 "$DIR/server.log"; exit 1; }

    rows=$(q -d postgres -c "SELECT count(*) FROM ledger")
    is "$([ "$rows" -gt 0 ] && echo yes)" "yes" "round $round: committed rows survived the crash ($rows)"
    # every ledger row has exactly one INSERT event with its values, and no event lacks its row
    is "$(q -d postgres -c "
        SELECT count(*) FROM ledger l
          FULL JOIN (SELECT (record_id->>'id')::bigint AS id, count(*) AS n, min(new_data->>'amount') AS amount
                       FROM audit.event WHERE table_name = 'ledger' AND action = 'INSERT' GROUP BY 1) e
            ON e.id = l.id
         WHERE e.id IS NULL OR l.id IS NULL OR e.n <> 1 OR e.amount <> l.amount::text")" "0" \
       "round $round: ledger rows and INSERT events match one to one"
    is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE new_data->>'note' = 'undone'")" "0" \
       "round $round: no event of a rolled-back savepoint"
    # the balance totals equal the sum of the recorded changes
    is "$(q -d postgres -c "
        SELECT count(*) FROM balance b
          LEFT JOIN (SELECT (record_id->>'id')::int AS id,
                            sum((new_data->>'total')::bigint - (old_data->>'total')::bigint) AS delta
                       FROM audit.event WHERE table_name = 'balance' AND action = 'UPDATE' GROUP BY 1) e
            ON e.id = b.id
         WHERE b.total <> coalesce(e.delta, 0)")" "0" \
       "round $round: each balance equals the sum of its recorded changes"
    # pgbench's tables: one INSERT event per history row; balances equal their recorded changes
    is "$(q -d postgres -c "SELECT (SELECT count(*) FROM pgbench_history) = (SELECT count(*) FROM audit.event
              WHERE table_name = 'pgbench_history' AND action = 'INSERT') AND (SELECT count(*) FROM pgbench_history) > 0")" "t" \
       "round $round: pgbench_history rows and their INSERT events match"
    is "$(q -d postgres -c "
        SELECT count(*) FROM pgbench_accounts a
          LEFT JOIN (SELECT (record_id->>'aid')::int AS aid,
                            sum((new_data->>'abalance')::bigint - (old_data->>'abalance')::bigint) AS delta
                       FROM audit.event WHERE table_name = 'pgbench_accounts' AND action = 'UPDATE' GROUP BY 1) e
            ON e.aid = a.aid
         WHERE a.abalance <> coalesce(e.delta, 0)")" "0" \
       "round $round: each pgbench account balance equals the sum of its recorded changes"
    is "$(q -d postgres -c "SELECT verified, breaks, unverifiable_links FROM audit.verify()")" "t|0|0" \
       "round $round: the hash chains verify after the crash"
done
done_testing
