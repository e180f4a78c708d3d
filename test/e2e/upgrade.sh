#!/usr/bin/env bash
# Extension upgrades: install the oldest version, walk every ALTER EXTENSION
# audit_ext UPDATE step to the default version, keep every event, and end
# with the same objects as a fresh install.
source "$(dirname "$0")/tap.inc"
OLD=audit_e2e_upgraded
NEW=audit_e2e_fresh
for db in $OLD $NEW; do q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null; done

oldest=$(ls "$(pg_config --sharedir)/extension/" | sed -n 's/^audit_ext--\([0-9.]*\)\.sql$/\1/p' | sort -V | head -1)
default=$(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'audit_ext'")
q -d $OLD >/dev/null <<SQL
CREATE EXTENSION audit_ext VERSION '$oldest';
CREATE TABLE "Kunden" (id int PRIMARY KEY, name text, secret text);
SELECT audit.enable('"Kunden"', exclude_columns => '{secret}');
INSERT INTO "Kunden" SELECT g, 'k' || g, 's' FROM generate_series(1, 100) g;
UPDATE "Kunden" SET name = name || '!' WHERE id % 3 = 0;
DELETE FROM "Kunden" WHERE id > 95;
SQL
events() { q -d $OLD -c "SELECT count(*) || ':' || md5(string_agg(concat_ws('|', id, event_time, class, action, actor, txid,
                 statement_id, table_name, record_id, old_data, new_data, changed_columns, detail), ',' ORDER BY id))
                 FROM audit.event WHERE id <= $maxid"; }
maxid=$(q -d $OLD -c "SELECT max(id) FROM audit.event")
before=$(events)

# every step of the update path, one ALTER EXTENSION each
steps=$(q -d $OLD -c "SELECT path FROM pg_extension_update_paths('audit_ext') WHERE source = '$oldest' AND target = '$default'")
is "$([ -n "$steps" ] && echo yes)" "yes" "an update path leads from $oldest to $default ($steps)"
IFS=' ' read -r -a versions <<< "${steps//--/ }"
ok=0
for v in "${versions[@]:1}"; do
    q -d $OLD -c "ALTER EXTENSION audit_ext UPDATE TO '$v'" >/dev/null || ok=1
done
is "$ok$(q -d $OLD -c "SELECT extversion FROM pg_extension WHERE extname = 'audit_ext'")" "0$default" "each ALTER EXTENSION UPDATE step succeeds"
is "$(events)" "$before" "every event is kept, unchanged"
expected_ddl=$(printf 'ALTER EXTENSION,%.0s' "${versions[@]:1}")
is "$(q -d $OLD -c "SELECT string_agg(action, ',' ORDER BY id) FROM audit.event WHERE id > $maxid")" "${expected_ddl%,}" \
   "the upgrade itself is recorded as a ddl event, one per step"

q -d $NEW -c "CREATE EXTENSION audit_ext" >/dev/null
# The objects of the extension, described with everything that defines them.
objects() {
    q -d "$1" <<'SQL'
SELECT pg_describe_object(d.classid, d.objid, 0) || ' ' ||
       coalesce(CASE d.classid
           WHEN 'pg_proc'::regclass THEN
               md5(pg_get_functiondef(d.objid)) || ' ' || coalesce((SELECT proacl::text FROM pg_proc WHERE oid = d.objid), '')
           WHEN 'pg_class'::regclass THEN
               (SELECT relkind::text || ' ' || coalesce(relacl::text, '') || ' ' ||
                       coalesce(pg_get_viewdef(c.oid), '') || ' ' ||
                       coalesce((SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || ':' || attnotnull ||
                                                   ':' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), ',' ORDER BY attnum)
                                   FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') || ' ' ||
                       coalesce((SELECT string_agg(pg_get_triggerdef(t.oid) || ':' || t.tgenabled::text, ',' ORDER BY tgname)
                                   FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '') || ' ' ||
                       coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY conname)
                                   FROM pg_constraint k WHERE k.conrelid = c.oid), '')
                  FROM pg_class c WHERE c.oid = d.objid)
           WHEN 'pg_event_trigger'::regclass THEN
               (SELECT evtevent || ' ' || evtenabled::text || ' ' || coalesce(evttags::text, '') FROM pg_event_trigger WHERE oid = d.objid)
       END, '')
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_ext')
   AND d.deptype = 'e'
UNION ALL
SELECT 'config ' || array_to_string(extconfig::regclass[]::text[], ',') || ' ' || array_to_string(extcondition, ',')
  FROM pg_extension WHERE extname = 'audit_ext'
ORDER BY 1
SQL
}
objects $OLD > "${AUDIT_TEST_TMP:-/tmp}/upgrade_old.txt"
objects $NEW > "${AUDIT_TEST_TMP:-/tmp}/upgrade_new.txt"
is "$(awk 'END {print (NR > 50)}' "${AUDIT_TEST_TMP:-/tmp}/upgrade_new.txt")" "1" "the extension's objects were listed"
difference=$(diff "${AUDIT_TEST_TMP:-/tmp}/upgrade_old.txt" "${AUDIT_TEST_TMP:-/tmp}/upgrade_new.txt")
is "$difference" "" "the upgraded extension has exactly the objects of a fresh install ($(wc -l < "${AUDIT_TEST_TMP:-/tmp}/upgrade_new.txt") compared)"

# auditing goes on after the upgrade
q -d $OLD -c "UPDATE \"Kunden\" SET name = 'after' WHERE id = 1" >/dev/null
is "$(q -d $OLD -c "SELECT count(*) FROM audit.event WHERE new_data->>'name' = 'after' AND hash IS NOT NULL")" "1" \
   "auditing works after the upgrade, with the new columns filled"
is "$(q -d $OLD -c "SELECT verified FROM audit.verify()")" "t" "the upgraded trail verifies"
is "$(q -d $OLD -c "SELECT count(*) FROM audit.event WHERE old_data ? 'secret' OR new_data ? 'secret'")" "0" \
   "the options set before the upgrade still apply (excluded column)"
for db in $OLD $NEW; do q -d postgres -c "DROP DATABASE $db" >/dev/null; done
done_testing
