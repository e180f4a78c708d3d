#!/usr/bin/env bash
# Which table an event belongs to (issue 19, 4): a session that started
# before ALTER SCHEMA ... RENAME or a rename of the audited partitioned table
# records the new names at once (its cached names were never invalidated);
# a table dropped and created again under its name is another table: the new
# one's history does not include the old one's events, and undo of the old
# one's events is refused with 42P01 instead of writing into the new table.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/identity
PORT=$(( ${PGPORT:-5497} + 101 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 3600" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
watch_log "$DIR/server.log"
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE SCHEMA s1;
CREATE TABLE s1.p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE s1.p1 PARTITION OF s1.p FOR VALUES FROM (0) TO (100);
CREATE TABLE s1.plain (id int PRIMARY KEY, v text);
SELECT audit.enable('s1.p');
SELECT audit.enable('s1.plain');
SQL

# a session that writes before and after the renames, without reconnecting
coproc OLD { psql -X -q -At -d postgres 2>&1; }
old_pid=$OLD_PID   # bash unsets OLD_PID as soon as the coprocess ends
say() {   # SQL: run it in the old session and wait until it has
    echo "$1" >&"${OLD[1]}"
    echo '\echo ok' >&"${OLD[1]}"
    local line
    read -r -t 60 line <&"${OLD[0]}"
    echo "$line"
}
is "$(say "INSERT INTO s1.p VALUES (1, 'a'); INSERT INTO s1.plain VALUES (1, 'a');")" "ok" "the old session writes before the renames"
q -d postgres -c "ALTER SCHEMA s1 RENAME TO s2" >/dev/null
is "$(say "INSERT INTO s2.p VALUES (2, 'b'); INSERT INTO s2.plain VALUES (2, 'b');")" "ok" "... and after ALTER SCHEMA RENAME"
q -d postgres -c "ALTER TABLE s2.p RENAME TO q" >/dev/null
is "$(say "INSERT INTO s2.q VALUES (3, 'c');")" "ok" "... and after the partitioned table was renamed"
echo '\q' >&"${OLD[1]}"
wait "$old_pid" 2>/dev/null || true
is "$(q -d postgres -c "SELECT string_agg(schema_name || '.' || table_name || ':' || (record_id ->> 'id'), ' ' ORDER BY id)
                         FROM audit.event WHERE class = 'data'")" \
   "s1.p:1 s1.plain:1 s2.p:2 s2.plain:2 s2.q:3" \
   "a session that started before the renames records the new schema and table names at once"

# dropped and created again under the same name
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE public.t (id int PRIMARY KEY, v text);
SELECT audit.enable('public.t');
INSERT INTO public.t VALUES (1, 'old');
DELETE FROM public.t WHERE id = 1;
DROP TABLE public.t;
CREATE TABLE public.t (id int PRIMARY KEY, v text);
SELECT audit.enable('public.t');
INSERT INTO public.t VALUES (2, 'new');
SQL
old_delete=$(q -d postgres -c "SELECT id FROM audit.event WHERE table_name = 't' AND action = 'DELETE'")
out=$(psql -X -At -v VERBOSITY=verbose -d postgres -c "SELECT audit.undo($old_delete)" 2>&1)
is "$(grep -o 'ERROR:  [0-9A-Z]\{5\}' <<<"$out" | cut -c9-)" "42P01" "undo of the dropped table's DELETE is refused (42P01), not written into the new table" "$out"
is "$(q -d postgres -c "SELECT count(*) FROM public.t WHERE id = 1")" "0" "... and the new table did not get the old row"
is "$(q -d postgres -c "SELECT count(*) FROM audit.record_history('public.t', '{\"id\": 1}')")" "0" \
   "the new table's history of key 1 does not include the dropped table's events"
is "$(q -d postgres -c "SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('public.t', '{\"id\": 2}')")" "INSERT" \
   "its own record's history is there"
is "$(q -d postgres -c "SELECT audit.row_as_of('public.t', '{\"id\": 1}', now() - interval '1 hour') IS NULL")" "t" \
   "row_as_of() of the new table knows nothing of the old one's rows"
is "$(q -d postgres -c "SELECT count(*) FROM audit.record_history('public', 't', '{\"id\": 1}')")" "0" \
   "by schema and table name: the table that has the name now"
is "$(q -d postgres -c "SELECT count(DISTINCT table_identity) || ':' || count(*) FILTER (WHERE ended_by = 'drop')
                         FROM audit.audited_table_history WHERE schema_name = 'public' AND table_name = 't'")" "2:1" \
   "the re-created table has an identity of its own; the dropped one's ended with the drop"
dropped_at=$(q -d postgres -c "SELECT valid_until FROM audit.audited_table_history WHERE table_name = 't' AND ended_by = 'drop'")
is "$(q -d postgres -c "SELECT string_agg(action, ',' ORDER BY id)
                         FROM audit.record_history_by_identity(audit.table_identity('public', 't', at => '$dropped_at'::timestamptz - interval '1 microsecond'),
                                                               '{\"id\": 1}')")" "INSERT,DELETE" \
   "by the name at a moment before the drop: the dropped table's record is found"

# renames keep one history (issue 19, 4): the events of the old session,
# written under three names, carry one identity, and the history of a record
# asked for by the current name holds all of them
is "$(q -d postgres -c "SELECT count(DISTINCT table_identity) || ':' || count(*) FILTER (WHERE table_identity IS NULL)
                         FROM audit.event WHERE class = 'data' AND table_name IN ('p', 'q')")" "1:0" \
   "the partitioned table's events under its three names carry one identity"
is "$(q -d postgres -c "SELECT string_agg(schema_name || '.' || table_name || ' until ' || coalesce(ended_by, 'now'), ', ' ORDER BY valid_from)
                         FROM audit.audited_table_history WHERE table_identity = audit.table_identity('s2.q')")" \
   "s1.p until rename, s2.p until rename, s2.q until now" \
   "audit.audited_table_history holds its names over time"
is "$(q -d postgres -c "SELECT audit.table_identity('s1', 'plain', now() - interval '1 hour') IS NULL,
                                audit.table_identity('s1', 'plain') = audit.table_identity('s2.plain')")" "t|t" \
   "audit.table_identity() by a former name: the table that had it (nothing before it was audited)"
q -d postgres -c "UPDATE s2.plain SET v = 'a2' WHERE id = 1" -c "ALTER TABLE s2.plain RENAME TO plain2" \
  -c "UPDATE s2.plain2 SET v = 'a3' WHERE id = 1" >/dev/null
is "$(q -d postgres -c "SELECT string_agg(action || ' ' || schema_name || '.' || table_name, ', ' ORDER BY id)
                         FROM audit.record_history('s2.plain2', '{\"id\": 1}')")" \
   "INSERT s1.plain, UPDATE s2.plain, UPDATE s2.plain2" \
   "a record's history follows its table across schema and table renames"
is "$(q -d postgres -c "SELECT count(*) FROM audit.record_history('s1', 'plain', '{\"id\": 1}')")" "3" \
   "... also asked for by a former name"
is "$(q -d postgres -c "SELECT audit.row_as_of('s2.plain2', '{\"id\": 1}', now())->>'v'")" "a3" "row_as_of() after the renames"
undo_ev=$(q -d postgres -c "SELECT max(id) FROM audit.event WHERE table_name = 'plain' AND action = 'UPDATE'")
is "$(q -d postgres -c "SELECT audit.undo($undo_ev, force => true)" >/dev/null && q -d postgres -c "SELECT v FROM s2.plain2 WHERE id = 1")" "a" \
   "audit.undo() of an event recorded under a former name changes the renamed table"

# read events carry the identity too (they go through the worker)
q -d postgres -c "SELECT audit.enable('s2.plain2', log_reads => true)" >/dev/null
q -d postgres -c "SELECT count(*) FROM s2.plain2" >/dev/null
wait_for "SELECT count(*) > 0 FROM audit.event WHERE class = 'read' AND table_name = 'plain2'" 30 postgres
is "$(q -d postgres -c "SELECT bool_and(table_identity = audit.table_identity('s2.plain2')) FROM audit.event
                         WHERE class = 'read' AND table_name = 'plain2'")" "t" "read events carry the table's identity"

# row_as_of(): a transaction's changes count together (issue 19, 9): a
# moment between two of its statements sees neither
q -d postgres -c "CREATE TABLE tx (id int PRIMARY KEY, v text)" -c "SELECT audit.enable('tx')" \
  -c "INSERT INTO tx VALUES (1, 'before')" >/dev/null
mid=$(q -d postgres -c "BEGIN" -c "UPDATE tx SET v = 'first'" -c "SELECT pg_sleep(0.05)" \
        -c "SELECT clock_timestamp()" -c "SELECT pg_sleep(0.05)" -c "UPDATE tx SET v = 'second'" -c "COMMIT" | grep '^20[0-9][0-9]-')
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 1}', '$mid')->>'v'")" "before" \
   "row_as_of() between two statements of a transaction: the row before the transaction, never a state it passed through"
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 1}', clock_timestamp())->>'v'")" "second" "... and after it, its result"
# ... also when the transaction deletes the row and inserts another with its
# key, or moves another row to its key (histrev): the moment between the two
# statements showed no row (NULL) for key 1, a state no other session saw
q -d postgres -c "INSERT INTO tx VALUES (2, 'two'), (3, 'three')" >/dev/null
mid=$(q -d postgres -c "BEGIN" -c "DELETE FROM tx WHERE id = 2" -c "SELECT pg_sleep(0.05)" \
        -c "SELECT clock_timestamp()" -c "SELECT pg_sleep(0.05)" -c "INSERT INTO tx VALUES (2, 'two again')" -c "COMMIT" | grep '^20[0-9][0-9]-')
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 2}', '$mid')->>'v'")" "two" \
   "row_as_of() between a DELETE and the INSERT of the same key in one transaction: the row before the transaction"
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 2}', clock_timestamp())->>'v'")" "two again" "... and after it, the new row"
mid=$(q -d postgres -c "BEGIN" -c "DELETE FROM tx WHERE id = 2" -c "SELECT pg_sleep(0.05)" \
        -c "SELECT clock_timestamp()" -c "SELECT pg_sleep(0.05)" -c "UPDATE tx SET id = 2 WHERE id = 3" -c "COMMIT" | grep '^20[0-9][0-9]-')
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 2}', '$mid')->>'v'")" "two again" \
   "row_as_of() between a DELETE and an UPDATE that moves another row to the key, in one transaction: the row before it"
is "$(q -d postgres -c "SELECT audit.row_as_of('tx', '{\"id\": 2}', clock_timestamp())->>'v'")" "three" "... and after it, the moved row"
is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "the chains verify"
done_testing
