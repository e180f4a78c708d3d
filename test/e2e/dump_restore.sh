#!/usr/bin/env bash
# pg_dump / pg_restore of a database with a populated trail.
source "$(dirname "$0")/tap.inc"
SRC=audit_e2e_dump
DST=audit_e2e_restored
TMPD=${AUDIT_TEST_TMP:-/tmp}
q -d postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $SRC" -c "CREATE DATABASE $DST" >/dev/null
q -d $SRC >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE c (id int PRIMARY KEY, name text, pw text, card text);
SELECT audit.enable('c', exclude_columns => '{pw}', mask_columns => '{card}');
INSERT INTO c SELECT g, 'n' || g, 'secret', '4111' FROM generate_series(1, 100) g;
UPDATE c SET name = name || '!' WHERE id <= 10;
DELETE FROM c WHERE id > 90;
SQL
# legal holds: one active over an old month of the trail, one released
q -d $SRC -c "SELECT audit.create_month_partition('data', '2020-01-01')" >/dev/null
q -d $SRC -c "SELECT audit.legal_hold(from_time => '2020-01-01', to_time => '2020-02-01', reason => 'case 1 across dump')" \
   -c "SELECT audit.release_legal_hold(audit.legal_hold(from_time => '2021-01-01', to_time => '2021-02-01', reason => 'released before dump'))" >/dev/null
HOLDS="SELECT string_agg(format('%s %s %s %s', from_time, to_time, reason, released_at IS NULL), ', ' ORDER BY id) FROM audit.legal_holds"
holds_before=$(q -d $SRC -c "$HOLDS")
before=$(q -d $SRC -c "SELECT count(*), md5(string_agg(e::text, '' ORDER BY id)) FROM audit.event e")
is "${before%%|*}" "124" "the source trail has its events (120 data, ENABLE AUDIT, two holds placed and one released)"
srcmax=$(q -d $SRC -c "SELECT max(id) FROM audit.event")
pg_dump -Fc -d $SRC -f "$TMPD/audit.dump"
pg_restore -d $DST "$TMPD/audit.dump" 2> "$TMPD/restore.err"
is "$?" "0" "pg_restore succeeds"
[ -s "$TMPD/restore.err" ] && cat "$TMPD/restore.err"
# the restore's own DDL after the audit triggers exist is recorded, after them
after=$(q -d $DST -c "SELECT count(*), md5(string_agg(e::text, '' ORDER BY id)) FROM audit.event e WHERE id <= $srcmax")
is "$after" "$before" "the restored trail has exactly the same events"
is "$(q -d $DST -c "SELECT count(*) FROM audit.event WHERE id > $srcmax AND class NOT IN ('ddl', 'privilege')")" "0" \
   "events recorded during the restore are its ddl, after the restored ones"
is "$(q -d $DST -c "SELECT exclude_columns, mask_columns FROM audit.audited_tables WHERE table_name = 'c'")" "{pw}|{card}" \
   "the auditing options come back with the table"
is "$(q -d $DST -c "SELECT count(*) FROM audit.statement s WHERE s.statement_id IN (SELECT statement_id FROM audit.event WHERE id <= $srcmax)")" "$(q -d $SRC -c "SELECT count(*) FROM audit.statement")" "statement texts are restored"
is "$(q -d $DST -c "$HOLDS")" "$holds_before" "legal holds come back (the active one active, the released one released)"
# the restored hold binds: retention in the restored database keeps the held month
q -d $DST -c "SELECT audit.set_retention(class => 'data', keep => interval '1 year', archive => false)" >/dev/null
is "$(q -d $DST -c "SELECT string_agg(partition || ':' || action, ',') FROM audit.prune() WHERE partition = 'event_data_p202001'" 2>&1)|$(q -d $DST -c "SELECT to_regclass('audit.event_data_p202001') IS NOT NULL")" \
   "event_data_p202001:held by legal hold 1|t" "audit.prune() in the restored database keeps the month under the restored hold"
q -d $DST -c "SELECT audit.remove_retention('data')" >/dev/null
maxid=$(q -d $DST -c "SELECT max(id) FROM audit.event")
q -d $DST -c "UPDATE c SET pw = 'new', card = '5500', name = 'after restore' WHERE id = 1" >/dev/null
is "$(q -d $DST -c "SELECT id > $maxid, new_data::text FROM audit.event WHERE id = (SELECT max(id) FROM audit.event)")" \
   't|{"card": "[masked]", "name": "after restore"}' "auditing works after restore, ids continue"
# 1.6: the table's identity comes back with its new OID (check_capture(), as
# the maintenance round runs it), and events from then on carry it
src_ident=$(q -d $SRC -c "SELECT audit.table_identity('c')")
q -d $DST -c "SELECT count(*) FROM audit.check_capture()" >/dev/null
is "$(q -d $DST -c "SELECT audit.table_identity('c')")" "$src_ident" "the restored table has its identity again (moved to its new OID)"
q -c "SELECT 1" -d $DST >/dev/null
q -d $DST -c "UPDATE c SET name = 'identity back' WHERE id = 1" >/dev/null
is "$(q -d $DST -c "SELECT table_identity FROM audit.event WHERE id = (SELECT max(id) FROM audit.event)")" "$src_ident" \
   "... and a new session's events carry it"
is "$(q -d $DST -c "SELECT count(*) FROM audit.record_history('c', '{\"id\": 1}')")" \
   "$(( $(q -d $SRC -c "SELECT count(*) FROM audit.record_history('c', '{\"id\": 1}')") + 2 ))" \
   "the record's history holds its events from before the dump and the two since"
done_testing
