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
before=$(q -d $SRC -c "SELECT count(*), md5(string_agg(e::text, '' ORDER BY id)) FROM audit.event e")
is "${before%%|*}" "121" "the source trail has its events (120 data, ENABLE AUDIT)"
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
maxid=$(q -d $DST -c "SELECT max(id) FROM audit.event")
q -d $DST -c "UPDATE c SET pw = 'new', card = '5500', name = 'after restore' WHERE id = 1" >/dev/null
is "$(q -d $DST -c "SELECT id > $maxid, new_data::text FROM audit.event WHERE id = (SELECT max(id) FROM audit.event)")" \
   't|{"card": "[masked]", "name": "after restore"}' "auditing works after restore, ids continue"
done_testing
