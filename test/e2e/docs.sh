#!/usr/bin/env bash
# The documentation is executed: every ```sql block of docs/guide.md runs,
# in order, in a fresh database (as the superuser who set up the example),
# and docs/reference.md must be what scripts/gen-reference.sh prints now.
source "$(dirname "$0")/tap.inc"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DB=audit_docs
TMP=${AUDIT_TEST_TMP:-/tmp}/docs
mkdir -p "$TMP"
q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null

# 1. the reference is complete and current
q -d $DB -c "CREATE EXTENSION audit_ext" >/dev/null
bash "$ROOT/scripts/gen-reference.sh" $DB > "$TMP/reference.md" 2>"$TMP/reference.err"
is "$?$(diff -u "$ROOT/docs/reference.md" "$TMP/reference.md" | head -20)" "0" \
   "docs/reference.md lists every function, view, table and setting as installed (run scripts/gen-reference.sh)"
q -d postgres -c "DROP DATABASE $DB" -c "CREATE DATABASE $DB" >/dev/null
drop_roles() {   # the guide's example roles
    for r in $(q -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'guide\_%'"); do
        q -d postgres -c "DROP ROLE $r" >/dev/null 2>&1
    done
}
drop_roles

# 2. the guide's examples run
awk '/^```sql$/ {inside = 1; n++; print "-- block " n; next}
     /^```/ {if (inside) {inside = 0; print ""}; next}
     inside {print}' "$ROOT/docs/guide.md" > "$TMP/guide.sql"
blocks=$(grep -c '^-- block ' "$TMP/guide.sql")
is "$([ "$blocks" -ge 10 ] && echo yes)" "yes" "docs/guide.md has its examples ($blocks sql blocks)"
psql -X -A -v ON_ERROR_STOP=1 -d $DB -f "$TMP/guide.sql" >"$TMP/guide.out" 2>&1
rc=$?
is "$rc" "0" "every example of docs/guide.md runs without error" "$(tail -15 "$TMP/guide.out")"
# 3. ... and prints what the guide says: the output (unaligned; times, months,
# sizes and the cluster-wide worker counters masked; the NOTICE of events moved out of a
# default partition left out: a maintenance round may have moved them first; PostgreSQL 17's quotes
# around a parameter's name in its own messages taken out) is test/e2e/guide.expected.
# After a deliberate change of the guide: bash test/e2e/docs.sh, then copy
# $AUDIT_TEST_TMP/docs/guide.masked over test/e2e/guide.expected and read the diff.
sed -E -e '/^queue_size\|/{n;s/.*/<worker status>/}' -e '/\|storage_bytes(\|events_by_risk)?$/{n;s/\|[0-9]+(\|\{[^|]*\})?$/|<bytes>\1/}' \
       -e '/^verified\|events\|/{n;s/^t\|[0-9]+\|/t|<n>|/}' "$TMP/guide.out" \
  | sed -E -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(\+00(:00)?)?/<time>/g' \
       -e 's/_p[0-9]{6}/_pYYYYMM/g' -e 's/^psql:[^:]*:[0-9]+: //' \
       -e '/^(WARNING|HINT):/s/"wal_level"/wal_level/g' \
  | grep -v '^NOTICE:  moved [0-9]* events from the default partition' > "$TMP/guide.masked"
is "$(diff -u "$(dirname "$0")/guide.expected" "$TMP/guide.masked" 2>&1 | head -80)" "" \
   "the guide's examples print what test/e2e/guide.expected holds (its DO block's DELETE of events is refused, the rows stay)"
is "$(grep -c 'NOTICE:  refused: DELETE of audit table "audit.event_data_p' "$TMP/guide.out")|$(q -d $DB -c "SELECT count(*) > 0 FROM audit.event WHERE class = 'data'")" \
   "1|t" "the guide's DELETE FROM audit.event was refused (the NOTICE of its EXCEPTION block) and the data events are still there" \
   "$(grep -n -A2 'DO' "$TMP/guide.out" | head -20)"
q -d postgres -c "DROP DATABASE $DB" >/dev/null 2>&1
drop_roles
done_testing
