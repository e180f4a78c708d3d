#!/usr/bin/env bash
# Statement texts pruned with their events (issue 18 D, 1.5).
# The cluster starts under a clock 460 days back (then 400: two old months) (libfaketime reading its
# offset from a file, so the running server's clock is set right again
# without a restart and its sessions, with their cached statement ids, live
# on).  Then audit.prune() drops the old month: texts only old events
# referred to are deleted and counted in the PRUNE event, texts of kept events
# stay; a session that had one of the deleted texts cached (stored under the
# old clock) writes again and its event has its text; a session that used a
# cached id in a transaction still open when prune started makes prune wait
# (ShareLock on audit.statement) and its text is kept; the archive carries the
# texts and audit.restore_archive() brings them back; a DELETE of
# audit.statement by a superuser is refused, also inside a function of schema
# audit; an archive of the old layout (events only) still restores.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/statement_prune
PORT=$(( ${PGPORT:-5497} + 93 ))
ARCH=$DIR/archive
rm -rf "$DIR"
trap 'exec 7>&- 2>/dev/null; finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
FAKE_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$FAKE_LIB" ] || { echo "not ok - libfaketime not found (Debian package faketime)"; exit 1; }
mkdir -p "$DIR"
CLOCK=$DIR/clock
echo "-460d" > "$CLOCK"
chmod 644 "$CLOCK"
LD_PRELOAD=$FAKE_LIB FAKETIME_TIMESTAMP_FILE=$CLOCK FAKETIME_CACHE_DURATION=1 \
    pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 604800" \
    "audit_ext.archive_directory = '$ARCH'" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

sqlstate() {   # psql args: the SQLSTATE of the error, or "ok"
    local out
    out=$(psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$@" 2>&1) && { echo ok; return; }
    echo "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-
}
text_count() {   # LIKE pattern: how many stored texts match
    q -d postgres -c "SELECT count(*) FROM audit.statement WHERE statement_text LIKE '$1'"
}

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY, v text);
SQL
# audit.enable() makes the month's partitions; the security-event worker may
# be routing LOGIN events into a default partition at that moment, which
# making a partition can deadlock with: try again.
for i in 1 2 3 4 5; do
    q -d postgres -c "SELECT audit.enable('t')" >/dev/null 2>&1 && break
    sleep 1
done
is "$(q -d postgres -c "SELECT count(*) FROM audit.audited_tables WHERE table_name = 't'")" "1" "t is audited"
old_month=$(q -d postgres -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")

# Session B lives through the whole test: it stores and caches texts under
# the old clock.
mkfifo "$DIR/b.in"
psql -X -At -d postgres -v ON_ERROR_STOP=0 < "$DIR/b.in" > "$DIR/b.out" 2>&1 &
exec 7> "$DIR/b.in"
b() { echo "$1" >&7; }
b_idle() {   # state, text of B's last statement: wait until B has run it and is in that state
    wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'session_b'
              AND state = '$1' AND query = \$\$$2\$\$" 30
}
b "SET application_name = 'session_b';"
b "INSERT INTO t VALUES (1, 'a') /* old-only */;"
b "INSERT INTO t VALUES (2, 'b') /* race */;"
b "SELECT 'b-ready';"
b_idle idle "SELECT 'b-ready';"; is "$?" "0" "session B wrote its events under the old clock" "$(cat "$DIR/b.out")"
q -d postgres -q >/dev/null <<'SQL'
INSERT INTO t VALUES (3, 'c') /* gone */;
UPDATE t SET v = 'k' WHERE id = 3 /* shared */;
SQL
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'data' AND statement_id IS NOT NULL
                         AND to_char(event_time AT TIME ZONE 'UTC', 'YYYYMM') = '$old_month'")" "4" \
   "four data events with texts in the old month ($old_month)"

# A second old month: prune drops two partitions in one call.
echo "-400d" > "$CLOCK"
wait_for "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM') <> '$old_month'" 30
is "$?" "0" "the clock moves on to the next month"
second_month=$(q -d postgres -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")
# (its partition may have been made ahead; if not, the event waits in the
# default partition and prune gives it its month first, under the statement lock)
q -d postgres -c "INSERT INTO t VALUES (7, 'g') /* second month */;" >/dev/null
is "$(q -d postgres -c "SELECT to_char(event_time AT TIME ZONE 'UTC', 'YYYYMM') FROM audit.event WHERE new_data ->> 'id' = '7'")" \
   "$second_month" "an event with its text in the second month"

# The clock is set right; the server keeps running.
echo "+0" > "$CLOCK"
wait_for "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM') NOT IN ('$old_month', '$second_month')" 30
is "$?" "0" "the clock is right again, without a restart"
# The month's partitions.  Right after a jump of the clock the security-event
# worker routes the sessions' LOGIN events into a default partition, which
# creating the month's partition may deadlock with: try again.
for i in 1 2 3 4 5; do
    q -d postgres -c "SELECT audit.create_partitions()" >/dev/null 2>&1 && break
    sleep 1
done
q -d postgres -c "UPDATE t SET v = 'k2' WHERE id = 3 /* shared */;" >/dev/null

# B uses a cached id in a transaction that is still open when prune starts.
# First a committed event of the new month: B's writer then opens that
# month's partition directly, and its open transaction holds no lock that
# dropping the old month waits for (only the statement lock).
b "INSERT INTO t VALUES (6, 'w') /* warm */;"
b "BEGIN;"
b "INSERT INTO t VALUES (4, 'd') /* race */;"
b_idle "idle in transaction" "INSERT INTO t VALUES (4, 'd') /* race */;"; is "$?" "0" "session B holds a transaction that used a cached statement id" "$(cat "$DIR/b.out")"
is "$(q -d postgres -c "SELECT count(*) FROM audit.statement WHERE statement_text LIKE '%/* race */%'")" "1" \
   "... the text was not stored again (the id came from B's cache)"

q -d postgres -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => true)" >/dev/null
prune_out=$DIR/prune.out
q -d postgres -c "SET statement_timeout = '120s'" -c "SELECT partition, action FROM audit.prune()" > "$prune_out" 2>&1 &
prune_pid=$!
wait_for "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'audit.statement'::regclass AND mode = 'ShareLock')" 30
is "$?" "0" "prune waits for the transaction that used a cached statement id (ShareLock on audit.statement)" \
   "$(cat "$prune_out"; q -d postgres -c "SELECT pid, locktype, relation::regclass, mode, granted FROM pg_locks WHERE NOT granted OR relation = 'audit.statement'::regclass")"
b "COMMIT;"
wait $prune_pid
is "$(grep -c 'archived and dropped' "$prune_out")" "2" "prune archived and dropped the two old months" "$(cat "$prune_out")"

is "$(text_count '%/* old-only */%')|$(text_count '%/* gone */%')|$(text_count '%/* second month */%')" "0|0|0" "texts only the pruned months referred to are deleted"
is "$(text_count '%/* shared */%')|$(text_count '%/* race */%')" "1|1" \
   "texts of kept events stay (also one referred to by the transaction prune waited for)"
# (empty months between and after the two are dropped too: how many depends on the date)
is "$(q -d postgres -c "SELECT (array_agg(detail ->> 'statements_removed' ORDER BY id DESC))[1],
                                count(*) FILTER (WHERE detail ? 'statements_removed'), count(*) > 1
                           FROM audit.event WHERE class = 'system' AND action = 'PRUNE'")" \
   "3|1|t" "the call's last PRUNE event counts the texts removed (the three only the pruned months referred to)"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event e WHERE e.statement_id IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM audit.statement s WHERE s.statement_id = e.statement_id)")" "0" \
   "every remaining event's text is there"

# B had the /* old-only */ text cached from before the prune.
b "INSERT INTO t VALUES (5, 'e') /* old-only */;"
b "SELECT 'b-after';"
b_idle idle "SELECT 'b-after';"
is "$(q -d postgres -c "SELECT s.statement_text FROM audit.event e JOIN audit.statement s USING (statement_id)
                         WHERE e.class = 'data' AND e.new_data ->> 'id' = '5'")" "INSERT INTO t VALUES (?, ?) /* old-only */;" \
   "a session with the text cached before the prune stores it again: its new event has its text" "$(cat "$DIR/b.out")"

# The archive carries the texts of its events.
file=$(q -d postgres -c "SELECT file FROM audit.archives WHERE partition_name LIKE '%$old_month'")
is "$(q -d postgres -c "SELECT statements_included FROM audit.archives WHERE file = '$file'")" "t" "audit.archives says the file carries its texts"
is "$(zcat "$ARCH/$file" | grep -c '"audit_archive_section": "statements", "format": 2')" "1" "the archive has a statements section (format 2)"
is "$(zcat "$ARCH/$file" | grep -c '"statement_text" : "INSERT INTO t VALUES (?, ?) /\* gone \*/;"')" "1" "... with the text of a pruned statement"
is "$(q -d postgres -c "SELECT audit.restore_archive('$file')")" "4" "restore_archive loads the four events"
is "$(q -d postgres -c "SELECT count(*), count(s.statement_text) FROM audit.restored_event r
                         LEFT JOIN audit.statement s USING (statement_id) WHERE r.archive_file = '$file'")" "4|4" \
   "... and every restored event shows its statement text again"
is "$(text_count '%/* gone */%')" "1" "the pruned text is back in audit.statement"
is "$(q -d postgres -c "SELECT detail ->> 'statements_restored' FROM audit.event WHERE class = 'system' AND action = 'RESTORE ARCHIVE' ORDER BY id DESC LIMIT 1")" \
   "1" "the RESTORE ARCHIVE event counts the texts put back (the others were still stored)"

# Nothing but prune deletes a text.
is "$(sqlstate -d postgres -c "DELETE FROM audit.statement WHERE statement_text LIKE '%/* gone */%'")" "42501" \
   "a superuser's DELETE of audit.statement is refused (42501)"
is "$(sqlstate -d postgres <<'SQL'
CREATE FUNCTION audit.sneaky_text_delete() RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
AS $$ WITH d AS (DELETE FROM audit.statement RETURNING 1) SELECT count(*) FROM d $$;
SELECT audit.sneaky_text_delete();
SQL
)" "42501" "... also inside the superuser's own function in schema audit"
is "$(sqlstate -d postgres -c "SELECT audit.prune_statements()")" "42501" "audit.prune_statements() called directly is refused (42501)"
q -d postgres -c "DROP FUNCTION IF EXISTS audit.sneaky_text_delete()" >/dev/null 2>&1
is "$(text_count '%/* gone */%')" "1" "... and the text is still there"

# An archive of the old layout (up to 1.4: events only) still restores.
old=$(echo "$file" | sed 's/\.jsonl\.gz$/-old.jsonl.gz/')
zcat "$ARCH/$file" | sed '/"audit_archive_section"/,$d' | gzip > "$ARCH/$old"
sum=$(sha256sum "$ARCH/$old" | cut -d' ' -f1)
echo "$sum  $old" > "$ARCH/$old.sha256"
chown postgres: "$ARCH/$old" "$ARCH/$old.sha256"
is "$(zcat "$ARCH/$old" | wc -l)" "4" "an archive of the old layout: one line per event, no texts"
q -d postgres -c "INSERT INTO audit.archives (file, checksum, class, partition_name, range_from, range_to, rows, min_id, max_id,
                                              bytes, raw_bytes, archived_by, statements_included)
                  SELECT '$old', '$sum', class, partition_name || '_old', range_from, range_to, rows, min_id, max_id,
                         bytes, raw_bytes, 'test', false
                    FROM audit.archives WHERE file = '$file'" >/dev/null
is "$(q -d postgres -c "SELECT audit.restore_archive('$old')")" "4" "restore_archive loads an archive of the old layout"
is "$(q -d postgres -c "SELECT detail ->> 'statements_restored' FROM audit.event WHERE class = 'system' AND action = 'RESTORE ARCHIVE' ORDER BY id DESC LIMIT 1")" \
   "0" "... which carries no texts"
is "$(q -d postgres -c "SELECT count(*) FROM audit.restored_event WHERE archive_file = '$old' AND event_time IS NOT NULL")" "4" \
   "... every event restored"

is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "audit.verify() after prune and restores"
b "\\q"
done_testing
