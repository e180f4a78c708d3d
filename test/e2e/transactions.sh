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

# Sessions are driven statement by statement (tap.inc: sess_*): each step
# waits, bounded, for the state the next one needs; no sleeps.

# Another session sees the events only when the transaction commits.
sess_open w1 -d $DB
sess_run w1 "BEGIN; UPDATE acct SET bal = 1 WHERE id = 1;"
is "$?|$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE new_data->>'bal' = '1'")" "0|0" \
   "uncommitted events are invisible to others (the UPDATE has run, its transaction is open)" "$(sess_out w1)"
sess_run w1 "COMMIT;"
is "$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE new_data->>'bal' = '1'")" "1" "visible after commit" "$(sess_out w1)"
sess_close w1

# Two writers on one row: both changes are recorded, in the order they happened.
# The second waits for the first's row lock (checked in pg_stat_activity).
sess_open first -d $DB
sess_open second -d $DB
sess_run first "BEGIN; SET LOCAL audit_ext.actor = 'first'; UPDATE acct SET bal = bal + 1 WHERE id = 2;"
sess_send second "BEGIN; SET LOCAL audit_ext.actor = 'second'; UPDATE acct SET bal = bal + 1 WHERE id = 2; COMMIT;"
wait_blocked second
blocked=$?
sess_run first "COMMIT;"
sess_wait second
is "$blocked|$(q -d $DB -c "SELECT string_agg(actor || ':' || (old_data->>'bal') || '->' || (new_data->>'bal'), ' ' ORDER BY id) FROM audit.event WHERE actor IN ('first', 'second')")" \
   "0|first:110->111 second:111->112" "concurrent writers on one row: the second waited for the first; both events, each with the values it saw" \
   "first: $(sess_out first)"$'\n'"second: $(sess_out second)"
sess_close first; sess_close second

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
# (the COMMENT must not wait for the writer: lock_timeout makes a wait fail)
sess_open writer -d $DB
sess_run writer "BEGIN; INSERT INTO acct VALUES (10, 1);"
out=$(PGOPTIONS='-c lock_timeout=30s' q -d $DB -c "COMMENT ON TABLE audit.event IS 'The audit trail (comment changed by a test)'" 2>&1)
sess_run writer "INSERT INTO acct VALUES (11, 1); UPDATE acct SET bal = 2 WHERE id IN (10, 11); COMMIT;"
is "$out|$(q -d $DB -c "SELECT count(*) FROM audit.event WHERE record_id->>'id' IN ('10', '11')")" "COMMENT|4" \
   "an invalidation of the store (COMMENT, done while the writer's transaction was open) mid-transaction loses no event" \
   "writer: $(sess_out writer)"$'\n'"comment: $out"
sess_close writer

# A statement cancelled while its events are being written, inside a
# savepoint, then ROLLBACK TO SAVEPOINT: the session goes on, nothing of the
# cancelled statement is kept, nothing leaks (this crashed the server once:
# the abort path freed events the flush had already written).  The timeouts
# sweep the statement so that some cancels land in the middle of a flush.
# The timeouts are fractions of the statement's own duration on this machine
# (measured first), so every one of them lands inside the statement however
# fast or loaded the machine is; a statement that still finished before its
# timeout is retried with half the timeout.  All eight must be cancelled.
q -d $DB -c "CREATE TABLE cancelled (id int PRIMARY KEY, f text)" -c "SELECT audit.enable('cancelled')" >/dev/null
big="INSERT INTO cancelled SELECT g, repeat('x', 100) FROM generate_series(1000, 200000) g;"
full_ms=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $DB 2>&1 <<SQL
BEGIN;
SELECT clock_timestamp() AS t0 \gset
$big
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000)::int;
ROLLBACK;
SQL
)
out="uncancelled: $full_ms ms"$'\n'
cancelled=0
for pct in 5 15 25 35 45 55 65 75; do
    t=$(( full_ms * pct / 100 )); [ $t -lt 1 ] && t=1
    for attempt in 1 2 3; do
        run=$(psql -X -q -At -d $DB 2>&1 <<SQL
BEGIN;
SAVEPOINT a;
SET LOCAL statement_timeout = '${t}ms';
$big
ROLLBACK TO SAVEPOINT a;
INSERT INTO cancelled VALUES ($pct, 'kept') ON CONFLICT DO NOTHING;
COMMIT;
SQL
)
        out+="$pct% (${t} ms, attempt $attempt): $run"$'\n'
        grep -q 'canceling statement' <<<"$run" && { cancelled=$((cancelled + 1)); break; }
        t=$(( t / 2 )); [ $t -lt 1 ] && t=1
    done
done
is "$cancelled|$(grep -ciE 'warning|leak|terminated|closed' <<<"$out")" "8|0" \
   "cancels inside a flush in a savepoint (8 of 8 cancelled): no warning, no lost connection" "$out"
is "$(q -d $DB -c "SELECT count(*), min((record_id->>'id')::int), max((record_id->>'id')::int) FROM audit.event WHERE table_name = 'cancelled' AND class = 'data'")|$(q -d $DB -c "SELECT count(*) FROM cancelled")" \
   "8|5|75|8" "only the statements after the rollback have events" "$out"

# Routing is skipped while events stay within the last leaf's own time range:
# a transaction whose statements cross partition boundaries still puts each
# event in the partition of its own event_time.  The month's partition is
# replaced by three of a few seconds each (in a database of its own).
# The session checks that each statement ran inside the partition it was
# meant for (a loaded machine may delay the first past its boundary: then the
# attempt is rolled back and repeated, at most three times, and the check
# fails if none ran as planned).
RDB=audit_e2e_route
routed="" tries=""
for attempt in 1 2 3; do
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
SELECT statement_timestamp() < :'t0'::timestamptz + interval '3 s' AS in_time \gset
\if :in_time
SELECT pg_sleep(extract(epoch FROM :'t0'::timestamptz + interval '3.2 s' - clock_timestamp())) \g /dev/null
INSERT INTO routed VALUES (2);
SELECT pg_sleep(extract(epoch FROM :'t0'::timestamptz + interval '6.2 s' - clock_timestamp())) \g /dev/null
UPDATE routed SET id = 3 WHERE id = 2;
COMMIT;
SELECT string_agg(tableoid::regclass || ':' || (record_id->>'id'), ' ' ORDER BY id)
FROM audit.event WHERE table_name = 'routed' AND class = 'data';
\else
ROLLBACK;
\echo late
\endif
SQL
)
tries+="attempt $attempt: $routed"$'\n'
[ "$routed" != "late" ] && break
done
is "$routed" "audit.event_data_r1:1 audit.event_data_r2:2 audit.event_data_r3:2" \
   "one transaction across three partitions: each event in the partition of its time" "$tries"
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

# A new session holds its first audited transaction open, writing $1 before
# the other session's step and $2 after it.  The other session's statement
# must not wait for it: lock_timeout turns such a wait into an error.
open_writer() { sess_open "w$1" -d $DDB; sess_run "w$1" "BEGIN; INSERT INTO direct VALUES ($1);"; }
close_writer() { sess_run "w$1" "INSERT INTO direct VALUES ($2); COMMIT;"; sess_close "w$1"; }

open_writer 10
created=$(PGOPTIONS='-c lock_timeout=30s' q -d $DDB -c "SELECT audit.create_partitions(4)" 2>&1)
close_writer 10 11
is "$created|$(q -d $DDB -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event WHERE table_name = 'direct' AND (record_id->>'id')::int >= 10")" \
   "14|10,11" "the partitions of two coming months are created (7 classes) without waiting for an open audited transaction; its events are all there" \
   "writer: $(sess_out w10)"

q -d $DDB -c "SELECT audit.create_month_partition('data', '2020-01-01')" \
  -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => false)" >/dev/null
open_writer 30
pruned=$(PGOPTIONS='-c lock_timeout=30s' q -d $DDB -c "SELECT partition || ':' || action FROM audit.prune()" 2>&1)
close_writer 30 31
q -d $DDB -c "SELECT audit.remove_retention('data')" >/dev/null
is "$pruned|$(q -d $DDB -c "SELECT string_agg(record_id->>'id', ',' ORDER BY id) FROM audit.event WHERE table_name = 'direct' AND (record_id->>'id')::int BETWEEN 30 AND 39")" \
   "event_data_p202001:dropped|30,31" "an old month is pruned without waiting for an open audited transaction; its events are all there" \
   "writer: $(sess_out w30)"

# A session writes 20, another detaches that leaf, the session writes 21.
sess_open det -d $DDB
sess_run det "INSERT INTO direct VALUES (20);"
leaf=$(q -d $DDB -c "SELECT tableoid::regclass FROM audit.event WHERE table_name = 'direct' AND record_id->>'id' = '20'")
detach=$(PGOPTIONS='-c lock_timeout=30s' q -d $DDB -c "SET audit_ext.protect_trail = off" -c "ALTER TABLE audit.event_data DETACH PARTITION $leaf" 2>&1)
sess_run det "INSERT INTO direct VALUES (21);
SELECT tableoid::regclass FROM audit.event WHERE table_name = 'direct' AND record_id->>'id' = '21';"
is "$(sess_out det)|$(q -d $DDB -c "SELECT count(*) FROM $leaf WHERE record_id->>'id' = '21'")" \
   "audit.event_data_default|0" "after its leaf was detached by another session, the next transaction's events go where routing sends them" \
   "leaf: $leaf; detach: $detach"
sess_close det
dropdb $DDB

done_testing
