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
psql -X -q -v ON_ERROR_STOP=1 -d $DB -f "$TMP/guide.sql" >"$TMP/guide.out" 2>&1
rc=$?
is "$rc" "0" "every example of docs/guide.md runs without error"
[ $rc -ne 0 ] && tail -15 "$TMP/guide.out"
q -d postgres -c "DROP DATABASE $DB" >/dev/null 2>&1
drop_roles
done_testing
