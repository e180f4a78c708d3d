#!/usr/bin/env bash
# Retention, archive and the maintenance worker, with back-dated events (the
# "fake clock": superuser INSERTs with old event_time, which land in the
# classes' default partitions as events of a restore or a wrong clock would).
# Nothing is run by hand but policies and holds: the worker (interval 1 s)
# creates partitions ahead and prunes, in every database with the extension.
# Archive files are decompressed and compared with the rows; checksums,
# restore, tampering, legal holds; a crash in the middle of an archive.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/retention
PORT=$(( ${PGPORT:-5497} + 60 ))
ARCH=$DIR/archive
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log" 'audit_ext maintenance.* was terminated by signal 9|terminated by signal 9: Killed'
pg_start "$DIR" "$PORT" "audit_ext.maintenance_interval = 1" "audit_ext.partitions_ahead = 3" \
    "audit_ext.archive_directory = '$ARCH'" "fsync = on" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

wait_in() {   # database, SQL returning a boolean, seconds: 0 once it is true (bounded, at least 60 s)
    wait_for "$2" "$(( $3 < 60 ? 60 : $3 ))" "$1"
}
q -d postgres -c "CREATE DATABASE ret2" >/dev/null
for db in postgres ret2; do
    q -d $db -c "CREATE EXTENSION audit_ext" >/dev/null
done

# --- partitions ahead, by the worker, in both databases ---------------------
ahead="SELECT to_regclass(format('audit.event_data_p%s',
          to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months', 'YYYYMM'))) IS NOT NULL"
wait_for "$ahead" 60; is "$?" "0" "the worker creates partitions 3 months ahead (audit_ext.partitions_ahead) in postgres"
wait_in ret2 "$ahead" 20; is "$?" "0" "... and in a second database with the extension"

# --- back-dated events -------------------------------------------------------
# Rows of every kind of column: jsonb with quotes and non-ASCII, arrays, inet.
backdate() {   # db class time count
    q -d "$1" -c "INSERT INTO audit.event (event_time, class, action, status, db_user, actor, client_addr,
                        txid, schema_name, table_name, record_id, new_data, changed_columns, detail)
                  SELECT '$3'::timestamptz + g * interval '1 second', '$2', 'INSERT', 'success', 'alice', 'jane \"J\" Doe',
                         ('10.0.0.' || (g % 250))::inet, g, 'public', 'orders', jsonb_build_object('id', g),
                         jsonb_build_object('note', 'ünïcode ' || g, 'q', 'it''s'), ARRAY['note', 'q'], NULL
                    FROM generate_series(1, $4) g" >/dev/null
}
backdate postgres data '2024-01-10' 1000       # archived and dropped (keep 1 year)
backdate postgres data '2024-06-10' 300        # under a legal hold
backdate postgres data "$(q -d postgres -c "SELECT now() - interval '2 months'")" 200   # kept
backdate postgres auth '2022-02-10' 100        # archived and dropped (keep 2 years)
backdate postgres auth "$(q -d postgres -c "SELECT now() - interval '1 year'")" 100     # kept
backdate postgres read "$(q -d postgres -c "SELECT now() - interval '3 months'")" 50    # dropped, not archived
backdate postgres read "$(q -d postgres -c "SELECT now()")" 10                          # kept
backdate ret2 data '2023-02-10' 70
is "$(q -d postgres -c "SELECT count(*) FROM audit.event_data_default")" "1500" \
   "back-dated events wait in the default partition (their months have no partition)"

# what the archive of January 2024 must contain: row_to_json of each row, in id order
q -d postgres -c "SELECT row_to_json(e)::text FROM audit.event e
                   WHERE class = 'data' AND event_time >= '2024-01-01' AND event_time < '2024-02-01' ORDER BY id" \
    > "$DIR/expected_202401.jsonl"
jan_md5=$(q -d postgres -c "SELECT md5(string_agg(to_jsonb(e)::text, E'\n' ORDER BY id)) FROM audit.event e
                             WHERE class = 'data' AND event_time >= '2024-01-01' AND event_time < '2024-02-01'")

# --- policies and a hold: the worker does the rest ---------------------------
q -d postgres >/dev/null <<'SQL'
SELECT audit.legal_hold(from_time => '2024-06-01', to_time => '2024-07-01', reason => 'case 4711');
SELECT audit.set_retention(class => 'auth', keep => interval '2 years', archive => true);
SELECT audit.set_retention(class => 'data', keep => interval '1 year',  archive => true);
SELECT audit.set_retention(class => 'read', keep => interval '30 days', archive => false);
SQL
q -d ret2 -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year')" >/dev/null

wait_for "SELECT count(*) = 3 FROM audit.event WHERE class = 'system' AND action = 'PRUNE'" 60
is "$?" "0" "the worker prunes with no manual step (three partitions)"
is "$(q -d postgres -c "SELECT partition_name, rows, min_id IS NOT NULL, archived_by FROM audit.archives ORDER BY partition_name")" \
   "event_auth_p202202|100|t|worker
event_data_p202401|1000|t|worker" "audit.archives lists the two archived partitions"
is "$(q -d postgres -c "SELECT count(*) FROM pg_class WHERE relname IN ('event_data_p202401', 'event_auth_p202202') OR relname LIKE 'event_read_p%' AND relname < 'event_read_p' || to_char(now() - interval '2 months', 'YYYYMM')")" \
   "0" "the pruned partitions are gone"
is "$(q -d postgres -c "SELECT class, count(*) FROM audit.event WHERE event_time < now() - interval '10 days' GROUP BY 1 ORDER BY 1")" \
   "auth|100
data|500" "kept: auth within 2 years, data within 1 year and under the hold; read older than 30 days gone"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'read'")" "10" "the recent read events stay"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event_data_default")" "0" \
   "prune gave the back-dated months their partitions: the default partition is empty"
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s %s %s', detail->>'partition', detail->>'rows', detail->>'by', actor,
                                                 detail->>'archive_file' IS NOT NULL), ', ' ORDER BY detail->>'partition')
                          FROM audit.event WHERE class = 'system' AND action = 'PRUNE'")" \
   "event_auth_p202202 100 worker audit_ext maintenance worker t, event_data_p202401 1000 worker audit_ext maintenance worker t, event_read_p$(q -d postgres -c "SELECT to_char(now() - interval '3 months', 'YYYYMM')") 50 worker audit_ext maintenance worker f" \
   "each prune is a system event: partition, rows, by the worker, archive file"

# --- the archive file --------------------------------------------------------
file=$(q -d postgres -c "SELECT file FROM audit.archives WHERE partition_name = 'event_data_p202401'")
# ret2's worker archives into the same directory on its own schedule: wait
# until it has recorded its archive (the file is renamed from .tmp before the
# row commits), else a loaded machine catches it halfway
wait_in ret2 "SELECT count(*) = 1 FROM audit.archives" 60
is "$?" "0" "the second database's worker has archived its partition too"
is "$(ls "$ARCH" | grep -c '\.tmp$')" "0" "no temporary files are left"
is "$(zcat "$ARCH/$file" | wc -l)" "1000" "the archive has one line per event"
zcat "$ARCH/$file" | cmp -s - "$DIR/expected_202401.jsonl"
is "$?" "0" "decompressed, the archive is exactly row_to_json of each row, in id order"
is "$(cd "$ARCH" && sha256sum -c "$file.sha256" 2>&1)" "$file: OK" "the checksum file verifies with sha256sum -c"
is "$(sha256sum "$ARCH/$file" | cut -d' ' -f1)" "$(q -d postgres -c "SELECT checksum FROM audit.archives WHERE file = '$file'")" \
   "audit.archives records the same checksum"
is "$(stat -c %a "$ARCH")" "700" "the archive directory was created with mode 0700"

# --- restore -----------------------------------------------------------------
is "$(q -d postgres -c "SELECT audit.restore_archive('$file')")" "1000" "restore_archive loads the archive"
is "$(q -d postgres -c "SELECT md5(string_agg((to_jsonb(r) - 'archive_file')::text, E'\n' ORDER BY id)) FROM audit.restored_event r")" \
   "$jan_md5" "the restored events equal the archived rows, column by column"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE event_time < '2024-02-01' AND class = 'data'")" "0" \
   "restored events do not return to the live trail"
is "$(q -d postgres -c "SELECT audit.restore_archive('$file')")" "1000" "restoring again replaces, not duplicates"

# tampering: one changed line, recompressed
cp "$ARCH/$file" "$DIR/good.gz"
zcat "$DIR/good.gz" | sed '5s/alice/mallory/' | gzip > "$ARCH/$file"
out=$(q -d postgres -c "SELECT audit.restore_archive('$file')" 2>&1)
is "$(echo "$out" | grep -c 'ERROR:  archive file .* does not match the checksum recorded in audit.archives')" "1" \
   "a tampered archive is refused (checksum recorded in audit.archives)"
(cd "$ARCH" && sha256sum "$file" > "$file.sha256")
out=$(q -d postgres -c "SELECT audit.restore_archive('$file')" 2>&1)
is "$(echo "$out" | grep -c 'does not match the checksum recorded in audit.archives')" "1" \
   "... also when its checksum file was rewritten to match"
# a file this database's catalog does not list (another database's, another
# server's) is refused, even with a matching .sha256
cp "$DIR/good.gz" "$ARCH/other.jsonl.gz"
(cd "$ARCH" && sha256sum other.jsonl.gz > other.jsonl.gz.sha256)
chown postgres: "$ARCH"/other.*
out=$(q -d postgres -c "SELECT audit.restore_archive('other.jsonl.gz')" 2>&1)
is "$(echo "$out" | grep -c 'ERROR:  archive file "other.jsonl.gz" is not an archive of this database')" "1" \
   "an archive this database's audit.archives does not list is refused"
is "$(q -d postgres -c "SELECT count(*) FROM audit.restored_event WHERE archive_file = 'other.jsonl.gz'")" "0" "... and nothing of it is loaded"
rm -f "$ARCH/other.jsonl.gz" "$ARCH/other.jsonl.gz.sha256"
cp "$DIR/good.gz" "$ARCH/$file"
(cd "$ARCH" && sha256sum "$file" > "$file.sha256")
out=$(q -d postgres -c "SELECT audit.restore_archive('../$(basename "$DIR")/good.gz')" 2>&1)
is "$(echo "$out" | grep -c 'invalid archive file name\|is not an archive of this database')" "1" "paths outside the archive directory are refused"

# --- legal hold released: the held month goes on the next round --------------
q -d postgres -c "SELECT audit.release_legal_hold(id) FROM audit.legal_holds" >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.archives WHERE partition_name = 'event_data_p202406'" 60
is "$?" "0" "after the hold is released the worker archives and drops the held month"
is "$(q -d postgres -c "SELECT rows FROM audit.archives WHERE partition_name = 'event_data_p202406'")" "300" "all 300 held events archived"

# --- the second database is maintained as well --------------------------------
wait_in ret2 "SELECT count(*) = 1 FROM audit.archives" 20
is "$(q -d ret2 -c "SELECT audit.restore_archive('$file')" 2>&1 | grep -o 'is not an archive of this database')" \
   "is not an archive of this database" "another database's archive is refused"
is "$(q -d ret2 -c "SELECT file LIKE 'ret2-' || (SELECT oid FROM pg_database WHERE datname = 'ret2') || '.event_data_p202302.%', rows FROM audit.archives")" "t|70" \
   "the worker prunes every database that has the extension (own archive file prefix)"
# the back-dated rows had no chain hash (inserted by hand); with them pruned
# (their chain heads recorded), everything the trail still holds verifies
is "$(q -d ret2 -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "after pruning, audit.verify() verifies the rest"
is "$(zcat "$ARCH/$file" | head -1 | grep -c '"chain_lane":.*"chain_seq":.*"hash":')" "1" \
   "archive lines carry every column of the event, the chain's included"

# --- refusals (the superuser and owner of the trail is this session) ---------
part=$(q -d postgres -c "SELECT 'audit.' || min(relname) FROM pg_class WHERE relname LIKE 'event_data_p2%'")
for stmt in "UPDATE audit.event SET actor = 'x'" "DELETE FROM audit.event" "TRUNCATE audit.event_data" \
            "DROP TABLE $part" "ALTER TABLE audit.event_data DETACH PARTITION $part"; do
    out=$(q -d postgres -c "$stmt" 2>&1)
    is "$(echo "$out" | grep -c 'ERROR:  .* of audit table .* is not allowed')" "1" "refused for the owner and superuser: $stmt"
done
is "$(q -d postgres -c "SELECT to_regclass('$part') IS NOT NULL")" "t" "the partition is still there"

# --- crash in the middle of an archive ---------------------------------------
# A hold keeps the worker off the month while the rows and the fault are set up.
hold=$(q -d postgres -c "SELECT audit.legal_hold('2023-03-01', '2023-04-01', 'crash test setup')")
backdate postgres data '2023-03-10' 3000
q -d postgres -c "SELECT row_to_json(e)::text FROM audit.event e
                   WHERE class = 'data' AND event_time >= '2023-03-01' AND event_time < '2023-04-01' ORDER BY id" \
    > "$DIR/expected_202303.jsonl"
q -d postgres -c "ALTER SYSTEM SET audit_ext.archive_fault_after_rows = 1000" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT current_setting('audit_ext.archive_fault_after_rows') = '1000'" 60
# a maintenance worker started before the reload may still be running: wait for it to end
since=$(q -d postgres -c "SELECT now()")
wait_for "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'audit_ext maintenance'
                               AND backend_start < '$since')" 60
q -d postgres -c "SELECT audit.release_legal_hold($hold)" >/dev/null
wait_log "$DIR/server.log" "archive_fault_after_rows reached" 60
is "$(grep -c 'archive_fault_after_rows reached after 1000 rows' "$DIR/server.log")" "1" "the worker crashes after 1000 rows of the archive"
wait_for "SELECT count(*) = 1 FROM audit.archives WHERE partition_name = 'event_data_p202303'" 60
is "$?" "0" "after the restart the next run completes the archive"
is "$(grep -c 'terminated by signal 9' "$DIR/server.log")" "1" "it was a real crash (SIGKILL, server restarted)"
is "$(grep -c 'removed incomplete archive file .*event_data_p202303' "$DIR/server.log")" "1" \
   "the incomplete file the crash left was found and removed"
f2=$(q -d postgres -c "SELECT file FROM audit.archives WHERE partition_name = 'event_data_p202303'")
zcat "$ARCH/$f2" | cmp -s - "$DIR/expected_202303.jsonl"
is "$?" "0" "the completed archive has all 3000 rows, exactly"
is "$(q -d postgres -c "SELECT rows FROM audit.archives WHERE partition_name = 'event_data_p202303'")" "3000" "recorded once, with all rows"
is "$(ls "$ARCH" | grep -c '\.tmp$')" "0" "no temporary files are left"
q -d postgres -c "ALTER SYSTEM RESET audit_ext.archive_fault_after_rows" -c "SELECT pg_reload_conf()" >/dev/null

# --- DROP EXTENSION still removes the whole (protected) trail -----------------
q -d ret2 -c "DROP EXTENSION audit_ext" >/dev/null
is "$?" "0" "DROP EXTENSION audit_ext works despite the protection"
is "$(q -d ret2 -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'audit'")" "0" \
   "... and removes the trail, monthly partitions included"

# --- policies survive pg_dump / pg_restore -----------------------------------
pg_dump -Fc -d postgres -f "$DIR/ret.dump"
q -d postgres -c "CREATE DATABASE ret_restored" >/dev/null
pg_restore -d ret_restored "$DIR/ret.dump" 2> "$DIR/restore.err"
is "$?" "0" "pg_restore of a database with policies, holds and archives succeeds"
[ -s "$DIR/restore.err" ] && head -20 "$DIR/restore.err"
is "$(q -d ret_restored -c "SELECT string_agg(class || ' ' || keep || ' ' || archive, ', ' ORDER BY class) FROM audit.retention_policies")" \
   "auth 2 years true, data 1 year true, read 30 days false" "retention policies are restored"
is "$(q -d ret_restored -c "SELECT count(*) FROM audit.archives")" "4" "the archive catalog is restored"
is "$(q -d ret_restored -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_append_only' AND tgenabled <> 'A'")" "0" \
   "restored partitions are protected (ENABLE ALWAYS)"
# --- GIN pending lists: autovacuum settings, the worker's backstop -----------
is "$(q -d postgres -c "SELECT count(*) FROM pg_partition_tree('audit.event') t JOIN pg_class c ON c.oid = t.relid
                         WHERE t.isleaf AND NOT c.reloptions @> '{autovacuum_vacuum_insert_threshold=20000,autovacuum_vacuum_insert_scale_factor=0}'")" "0" \
   "every event partition, the worker's included, is vacuumed after 20,000 inserts"
q -d postgres -c "CREATE DATABASE ret_pending" >/dev/null
q -d ret_pending >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE EXTENSION pgstattuple;
CREATE TABLE pend (id int PRIMARY KEY);
SELECT audit.enable('pend');
INSERT INTO pend SELECT generate_series(1, 5000);
SQL
cur_idx="audit.event_data_p$(date -u +%Y%m)_record_idx"
# 5,000 events stay below autovacuum's threshold: only the maintenance worker merges them
wait_for "SELECT pending_tuples = 0 FROM pgstatginindex('$cur_idx')" 60 ret_pending
is "$?" "0" "the maintenance worker merges the GIN pending list of the record index"
is "$(q -d ret_pending -c "SELECT count(*) FROM audit.event WHERE record_id @> '{\"id\": 4711}' AND table_name = 'pend'")" "1" \
   "records are found after the merge"

done_testing
