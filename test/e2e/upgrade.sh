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

# The fresh install runs the script make generates from sql/src/ (one script,
# the current definitions); the upgraded one ran 1.0 and every upgrade
# script.  Both must be the same objects.
q -d $NEW -c "CREATE EXTENSION audit_ext" >/dev/null
# The objects of the extension, described with everything that defines them:
# function definitions (with their SET clauses: proconfig), columns in their
# order, defaults, constraints, triggers, indexes, storage options, sequences,
# composite types, privileges (effective: NULL means the default, items
# sorted), comments of every object and column; then the schema, the roles the
# extension creates with their memberships, the configuration tables, and the
# rows it ships (built-in alert rules).
objects() {
    q -d "$1" <<'SQL'
CREATE FUNCTION pg_temp.acl(a aclitem[], kind "char", owner oid) RETURNS text LANGUAGE sql AS
  $$ SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(a, acldefault(kind, owner))) x $$;
SELECT pg_describe_object(d.classid, d.objid, 0) || ' ' ||
       coalesce(CASE d.classid
           WHEN 'pg_proc'::regclass THEN
               (SELECT md5(CASE WHEN p.prokind = 'a'   -- an aggregate: its support functions and state
                                THEN (SELECT format('%s %s %s %s %s %s %s %s', a.aggtransfn, a.aggtranstype::regtype,
                                                    a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, a.aggfinalfn,
                                                    p.proparallel, pg_get_function_arguments(p.oid))
                                        FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
                                ELSE pg_get_functiondef(p.oid) END) ||
                       ' acl=' || pg_temp.acl(p.proacl, 'f', p.proowner) ||
                       ' config=' || coalesce(p.proconfig::text, '')
                  FROM pg_proc p WHERE p.oid = d.objid)
           WHEN 'pg_class'::regclass THEN
               (SELECT relkind::text || ' acl=' ||
                       pg_temp.acl(relacl, CASE relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", relowner) ||
                       ' options=' || coalesce(reloptions::text, '') || ' ' ||
                       coalesce(pg_get_viewdef(c.oid), '') || ' ' ||
                       CASE WHEN relkind = 'i' THEN pg_get_indexdef(c.oid) ELSE '' END ||
                       coalesce((SELECT format('seq %s %s %s %s %s %s', seqtypid::regtype, seqstart, seqincrement,
                                               seqmax, seqmin, seqcycle)
                                   FROM pg_sequence WHERE seqrelid = c.oid), '') || ' ' ||
                       coalesce((SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || ':' || attnotnull ||
                                                   ':' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') ||
                                                   ':' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '') ||
                                                   ':' || coalesce(attacl::text, '') ||
                                                   ':' || coalesce(col_description(c.oid, a.attnum), ''), ',' ORDER BY attnum)
                                   FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') || ' ' ||
                       coalesce((SELECT string_agg(pg_get_triggerdef(t.oid) || ':' || t.tgenabled::text, ',' ORDER BY tgname)
                                   FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '') || ' ' ||
                       coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY conname)
                                   FROM pg_constraint k WHERE k.conrelid = c.oid), '') || ' ' ||
                       coalesce((SELECT string_agg(i.indexrelid::regclass::text || '=' || pg_get_indexdef(i.indexrelid) ||
                                                   coalesce((SELECT r.reloptions::text FROM pg_class r WHERE r.oid = i.indexrelid), ''),
                                                   ',' ORDER BY i.indexrelid::regclass::text)
                                   FROM pg_index i WHERE i.indrelid = c.oid), '')
                  FROM pg_class c WHERE c.oid = d.objid)
           WHEN 'pg_type'::regclass THEN
               (SELECT 'acl=' || pg_temp.acl(t.typacl, 'T', t.typowner) || ' ' ||
                       coalesce((SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
                                   FROM pg_attribute WHERE attrelid = t.typrelid AND attnum > 0 AND NOT attisdropped), '')
                  FROM pg_type t WHERE t.oid = d.objid)
           WHEN 'pg_event_trigger'::regclass THEN
               (SELECT evtevent || ' ' || evtenabled::text || ' ' || coalesce(evttags::text, '') || ' ' || evtfoid::regproc::text
                  FROM pg_event_trigger WHERE oid = d.objid)
       END, '') || ' comment=' || coalesce(obj_description(d.objid, d.classid::regclass::name), '')
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_ext')
   AND d.deptype = 'e'
UNION ALL
SELECT 'schema ' || nspname || ' acl=' || pg_temp.acl(nspacl, 'n', nspowner) ||
       ' comment=' || coalesce(obj_description(oid, 'pg_namespace'), '')
  FROM pg_namespace WHERE nspname = 'audit'
UNION ALL
SELECT 'role ' || r.rolname || ' ' || concat_ws(',', r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
                                                r.rolreplication, r.rolbypassrls) ||
       ' member of: ' || coalesce((SELECT string_agg(m.roleid::regrole::text || CASE WHEN m.admin_option THEN ' (admin)' ELSE '' END,
                                                     ',' ORDER BY m.roleid::regrole::text)
                                     FROM pg_auth_members m WHERE m.member = r.oid), '') ||
       ' members: ' || coalesce((SELECT string_agg(m.member::regrole::text, ',' ORDER BY m.member::regrole::text)
                                   FROM pg_auth_members m WHERE m.roleid = r.oid), '')
  FROM pg_roles r WHERE r.rolname IN ('audit_admin', 'audit_reader')
UNION ALL
-- one line per configuration table (the order pg_extension_config_dump() was called in means nothing)
SELECT 'config ' || c.tbl::regclass::text || ' ' || c.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) c(tbl, cond) WHERE e.extname = 'audit_ext'
UNION ALL
SELECT 'shipped alert rule ' || (to_jsonb(r) - 'created_at')::text FROM audit.alert_rules r WHERE r.builtin
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
# 1.6: the audited table got an identity; its events from before carry none
# and still belong to it, also after a rename
is "$(q -d $OLD -c "SELECT count(*) FROM audit.audited_table_history WHERE table_name = 'Kunden' AND legacy_from_id = 0 AND valid_until IS NULL")" "1" \
   "the upgrade gave the audited table an identity, its older events by name"
is "$(q -d $OLD -c "SELECT e.table_identity = h.table_identity FROM audit.event e, audit.audited_table_history h
                     WHERE e.new_data->>'name' = 'after' AND h.table_name = 'Kunden'")" "t" \
   "an event captured after the upgrade carries the table's identity"
q -d $OLD -c "ALTER TABLE \"Kunden\" RENAME TO \"Kunden2\"" -c "UPDATE \"Kunden2\" SET name = 'renamed' WHERE id = 3" >/dev/null
is "$(q -d $OLD -c "SELECT string_agg(action || ':' || table_name || ':' || (table_identity IS NOT NULL), ',' ORDER BY id)
                     FROM audit.record_history('\"Kunden2\"', '{\"id\": 3}')")" \
   "INSERT:Kunden:false,UPDATE:Kunden:false,UPDATE:Kunden2:true" \
   "a record's history after a rename holds its events from before the upgrade and after the rename"
for db in $OLD $NEW; do q -d postgres -c "DROP DATABASE $db" >/dev/null; done
done_testing
