#!/usr/bin/env bash
# Commit, rollback and concurrency with real sessions.
source "$(dirname "$0")/tap.inc"
DB=audit_e2e_tx
q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
q -d $DB >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE acct (id int PRIMARY KEY, bal int);
INSERT INTO acct VALUES (1, 100), (2, 100);
SELECT audit.enable('acct');
SQL

# Each check passes what its sessions printed (stdout and stderr) to is(),
# which shows it when the check fails: a flaky failure explains itself.

# A rolled-back transaction leaves no events; a committed one has all of them.
out=$(q -d $DB -c "BEGIN; UPDATE acct SET bal = 0; ROLLBACK;" 2>&1)
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE table_name = 'acct' AND class = 'data'")" "0" "rollback leaves no events" "$out"
out=$(q -d $DB -c "BEGIN; SET LOCAL audit_ext.actor = 'ann'; UPDATE acct SET bal = bal - 10 WHERE id = 1; UPDATE acct SET bal = bal + 10 WHERE id = 2; COMMIT;" 2>&1)
is "$(q -d $DB -c "SELECT count(*), count(DISTINCT txid), min(actor) FROM audit.event WHERE table_name = 'acct' AND class = 'data'")" "2|1|ann" \
   "a committed transaction has all its events, one txid" "$out"

# Another session sees the events only when the transaction commits.
bg_out=$(mktemp)
q -d $DB >"$bg_out" 2>&1 <<'SQL' &
BEGIN;
UPDATE acct SET bal = 1 WHERE id = 1;
SELECT pg_sleep(2);
COMMIT;
SQL
sleep 1
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE new_data->>'bal' = '1'")" "0" "uncommitted events are invisible to others"
wait
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE new_data->>'bal' = '1'")" "1" "visible after commit" "$(cat "$bg_out")"

# Two writers on one row: both changes are recorded, in the order they happened.
q -d $DB >"$bg_out" 2>&1 <<'SQL' &
BEGIN;
SET LOCAL audit_ext.actor = 'first';
UPDATE acct SET bal = bal + 1 WHERE id = 2;
SELECT pg_sleep(1);
COMMIT;
SQL
sleep 0.3
out=$(q -d $DB -c "BEGIN; SET LOCAL audit_ext.actor = 'second'; UPDATE acct SET bal = bal + 1 WHERE id = 2; COMMIT;" 2>&1)
wait
is "$(q -d $DB -c "SELECT string_agg(actor || ':' || (old_data->>'bal') || '->' || (new_data->>'bal'), ' ' ORDER BY id) FROM audit.event WHERE actor IN ('first', 'second')")" \
   "first:110->111 second:111->112" "concurrent writers on one row: both events, each with the values it saw" \
   "first: $(cat "$bg_out")"$'\n'"second: $out"

# A failed statement in a transaction block, then more work, then commit.
out=$(psql -X -q -d $DB 2>&1 <<'SQL'
BEGIN;
INSERT INTO acct VALUES (3, 1);
SAVEPOINT s;
INSERT INTO acct VALUES (3, 1);
ROLLBACK TO s;
INSERT INTO acct VALUES (4, 1);
COMMIT;
SQL
)
is "$(q -d $DB -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event WHERE action = 'INSERT'")" "3,4" \
   "a failed statement rolled back to a savepoint leaves the other events" "$out"

# An error at commit (deferred constraint) rolls the events back too.
q -d $DB >/dev/null <<'SQL'
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
SELECT audit.enable('child');
SQL
out=$(q -d $DB -c "BEGIN; INSERT INTO child VALUES (1, 999); COMMIT;" 2>&1)
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE table_name = 'child' AND class = 'data'")" "0" "a commit that fails leaves no events" "$out"

# The store's definition changes under an open writer (another session
# invalidates audit.event's relcache entry): the writer is rebuilt, nothing lost.
psql -X -q -d $DB >"$bg_out" 2>&1 <<'SQL' &
BEGIN;
INSERT INTO acct VALUES (10, 1);
SELECT pg_sleep(1);
INSERT INTO acct VALUES (11, 1);
UPDATE acct SET bal = 2 WHERE id IN (10, 11);
COMMIT;
SQL
sleep 0.4
out=$(q -d $DB -c "COMMENT ON TABLE audit.event IS 'The audit trail (comment changed by a test)'" 2>&1)
wait
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE record_id->>'id' IN ('10', '11')")" "4" \
   "an invalidation of the store mid-transaction loses no event" "writer: $(cat "$bg_out")"$'\n'"comment: $out"
rm -f "$bg_out"

# A statement cancelled while its events are being written, inside a
# savepoint, then ROLLBACK TO SAVEPOINT: the session goes on, nothing of the
# cancelled statement is kept, nothing leaks (this crashed the server once:
# the abort path freed events the flush had already written).  The timeouts
# sweep the statement so that some cancels land in the middle of a flush.
q -d $DB -c "CREATE TABLE cancelled (id int PRIMARY KEY, f text)" -c "SELECT audit.enable('cancelled')" >/dev/null
out=""
for t in 50 150 300 450 600 800 1000 1300; do
    out+=$(psql -X -q -At -d $DB 2>&1 <<SQL
BEGIN;
SAVEPOINT a;
SET LOCAL statement_timeout = '${t}ms';
INSERT INTO cancelled SELECT g, repeat('x', 100) FROM generate_series(1000, 200000) g;
ROLLBACK TO SAVEPOINT a;
INSERT INTO cancelled VALUES ($t, 'kept');
COMMIT;
SQL
)$'\n'
done
n=$(grep -c 'canceling statement' <<<"$out")
is "$((n >= 5))|$(grep -ciE 'warning|leak|terminated|closed' <<<"$out")" "1|0" \
   "cancels inside a flush in a savepoint ($n of 8 cancelled): no warning, no lost connection" "$out"
is "$(q -d $DB -c "SELECT count(*), min(record_id->>'id'), max(record_id->>'id') FROM audit.event WHERE table_name = 'cancelled' AND class = 'data'")|$(q -d $DB -c "SELECT count(*) FROM cancelled")" \
   "8|1000|800|8" "only the statements after the rollback have events" "$out"

# Routing is skipped while events stay within the last leaf's own time range:
# a transaction whose statements cross partition boundaries still puts each
# event in the partition of its own event_time.  The month's partition is
# replaced by three of a few seconds each (in a database of its own).
RDB=audit_e2e_route
dropdb --if-exists $RDB 2>/dev/null; createdb $RDB
routed=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $RDB 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE routed (id int PRIMARY KEY);
SELECT audit.enable('routed') \g /dev/null
INSERT INTO routed VALUES (0);
SELECT tableoid::regclass AS leaf FROM audit.event WHERE table_name = 'routed' AND class = 'data' \gset
SET audit_ext.protect_trail = off;
ALTER TABLE audit.event_data DETACH PARTITION :leaf;
RESET audit_ext.protect_trail;
SELECT clock_timestamp() - interval '0.5 s' AS t0 \gset
SELECT format('CREATE TABLE audit.event_data_r%s PARTITION OF audit.event_data FOR VALUES FROM (%L) TO (%L)',
              i, :'t0'::timestamptz + (i - 1) * interval '3 s',
              :'t0'::timestamptz + CASE WHEN i = 3 THEN interval '1 hour' ELSE i * interval '3 s' END)
FROM generate_series(1, 3) i \gexec
BEGIN;
INSERT INTO routed VALUES (1);
SELECT pg_sleep(extract(epoch FROM :'t0'::timestamptz + interval '3.2 s' - clock_timestamp())) \g /dev/null
INSERT INTO routed VALUES (2);
SELECT pg_sleep(extract(epoch FROM :'t0'::timestamptz + interval '6.2 s' - clock_timestamp())) \g /dev/null
UPDATE routed SET id = 3 WHERE id = 2;
COMMIT;
SELECT string_agg(tableoid::regclass || ':' || (record_id->>'id'), ' ' ORDER BY id)
FROM audit.event WHERE table_name = 'routed' AND class = 'data';
SQL
)
is "$routed" "audit.event_data_r1:1 audit.event_data_r2:2 audit.event_data_r3:2" \
   "one transaction across three partitions: each event in the partition of its time"
dropdb $RDB

# The first events of a transaction that go where the previous transaction's
# went are written straight into that leaf, without tuple routing: such a
# transaction locks neither audit.event nor the class's partitioned table, so
# partition maintenance on the tree does not wait for it.  A leaf detached by
# another session in between is no longer written to.
DDB=audit_e2e_direct
dropdb --if-exists $DDB 2>/dev/null; createdb $DDB
q -d $DDB >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE direct (id int PRIMARY KEY);
SELECT audit.enable('direct');
SQL
locks_held() {   # the session's locks on the store's parents; its RowExclusiveLocks on the leaf of event $1
    echo "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
           WHERE l.pid = pg_backend_pid() AND c.relname IN ('event', 'event_data');
          SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'RowExclusiveLock' AND relation = (
            SELECT tableoid FROM audit.event WHERE table_name = 'direct' AND record_id->>'id' = '$1');"
}
locks=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $DDB <<SQL
BEGIN;
INSERT INTO direct VALUES (1);
$(locks_held 1)
COMMIT;
-- an invalidation of the leaf (as autovacuum sends) between two transactions
SELECT tableoid::regclass AS leaf FROM audit.event WHERE table_name = 'direct' AND class = 'data' \gset
ANALYZE :leaf;
BEGIN;
INSERT INTO direct VALUES (2);
$(locks_held 2)
COMMIT;
SQL
)
is "$locks" $'\n1\n\n1' "a session's first audited transaction, and one after its leaf was analyzed, lock neither audit.event nor audit.event_data, only the leaf"

# In the background: a new session holds its first audited transaction open
# for 2 s, writing $1 before and $2 after (its output in $writer_out).
writer_out=$(mktemp)
open_writer() {
    psql -X -q -d $DDB >"$writer_out" 2>&1 <<SQL &
BEGIN;
INSERT INTO direct VALUES ($1);
SELECT pg_sleep(2);
INSERT INTO direct VALUES ($2);
COMMIT;
SQL
}

open_writer 10 11
sleep 0.7
created=$(PGOPTIONS='-c lock_timeout=1s' q -d $DDB -c "SELECT audit.create_partitions(4)" 2>&1)
wait
is "$created|$(q -d $DDB -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event WHERE table_name = 'direct' AND (record_id->>'id')::int >= 10")" \
   "12|10,11" "the partitions of two coming months are created without waiting for an open audited transaction; its events are all there" \
   "writer: $(cat "$writer_out")"

q -d $DDB -c "SELECT audit.create_month_partition('data', '2020-01-01')" \
  -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => false)" >/dev/null
open_writer 30 31
sleep 0.7
pruned=$(PGOPTIONS='-c lock_timeout=1s' q -d $DDB -c "SELECT partition || ':' || action FROM audit.prune()" 2>&1)
wait
q -d $DDB -c "SELECT audit.remove_retention('data')" >/dev/null
is "$pruned|$(q -d $DDB -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event WHERE table_name = 'direct' AND (record_id->>'id')::int BETWEEN 30 AND 39")" \
   "event_data_p202001:dropped|30,31" "an old month is pruned without waiting for an open audited transaction; its events are all there" \
   "writer: $(cat "$writer_out")"
rm -f "$writer_out"

detached_out=$(mktemp)
psql -X -q -At -d $DDB >"$detached_out" 2>&1 <<'SQL' &
INSERT INTO direct VALUES (20);
SELECT pg_sleep(1.5) \g /dev/null
INSERT INTO direct VALUES (21);
SELECT tableoid::regclass FROM audit.event WHERE table_name = 'direct' AND record_id->>'id' = '21';
SQL
sleep 0.7
leaf=$(q -d $DDB -c "SELECT tableoid::regclass FROM audit.event WHERE table_name = 'direct' AND record_id->>'id' = '20'")
q -d $DDB -c "SET audit_ext.protect_trail = off" -c "ALTER TABLE audit.event_data DETACH PARTITION $leaf" >/dev/null
wait
is "$(cat "$detached_out")|$(q -d $DDB -c "SELECT count(*) FROM $leaf WHERE record_id->>'id' = '21'")" \
   "audit.event_data_default|0" "after its leaf was detached by another session, the next transaction's events go where routing sends them"
rm -f "$detached_out"
dropdb $DDB

done_testing
