#!/usr/bin/env bash
# Print docs/reference.md from a database where audit_ext is installed: every
# function, view, table, GUC and event type of the extension, with the
# comments the install script gives them and the source file (sql/src/) that
# defines each.  The test suite regenerates it and
# fails when the committed file is out of date, so the reference cannot
# miss an object.
#   bash scripts/gen-reference.sh DBNAME > docs/reference.md
set -euo pipefail
DB=${1:?usage: gen-reference.sh DBNAME}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where each object is defined: {"function audit.x": "sql/src/f.sql", ...}
# from the CREATE statements of the concern files.
SOURCES=$(cd "$ROOT" && grep -oE '^CREATE (FUNCTION|VIEW|TABLE) audit\.[A-Za-z0-9_]+' sql/src/*.sql |
          sed -E 's/^([^:]*):CREATE ([A-Z]+) (.*)$/"\L\2\E \3": "\1"/' | sort -u | paste -sd, -)
q() { psql -X -At -v ON_ERROR_STOP=1 -v sources="{$SOURCES}" -d "$DB" "$@"; }

cat <<'EOF'
# audit_ext reference

Generated from the catalog by `scripts/gen-reference.sh` (the test suite checks that it is current). How to
use these objects, with examples, is in [`guide.md`](guide.md).

Access: **PUBLIC** = any role may call it (reading functions check for `audit_admin`/`audit_reader` themselves
and refuse others with `42501`); **audit_admin**, **audit_reader** = roles granted `EXECUTE`/`SELECT`;
**internal** = called by audit_ext itself, not granted to anyone.  Source: the file of `sql/src/` that defines the
object (`docs/architecture.md`, "SQL files").

## Functions

EOF
q <<'SQL'
WITH f AS (
    SELECT p.oid, p.proname,
           pg_get_function_identity_arguments(p.oid) AS args,
           pg_get_function_result(p.oid) AS result,
           obj_description(p.oid, 'pg_proc') AS descr,
           CASE WHEN has_function_privilege('public', p.oid, 'EXECUTE') THEN 'PUBLIC'
                ELSE coalesce(nullif(concat_ws(', ',
                        CASE WHEN has_function_privilege('audit_admin', p.oid, 'EXECUTE') THEN 'audit_admin' END,
                        CASE WHEN has_function_privilege('audit_reader', p.oid, 'EXECUTE') THEN 'audit_reader' END), ''),
                      'internal') END AS access
      FROM pg_proc p
     WHERE p.pronamespace = 'audit'::regnamespace
)
SELECT format(E'### `audit.%s(%s)`\n\nReturns `%s`. Access: %s. Source: `%s`.\n\n%s\n',
              proname, args, result, access, coalesce(:'sources'::jsonb ->> ('function audit.' || proname), '(unknown)'),
              coalesce(descr, '(no description)'))
  FROM f
 ORDER BY access = 'internal', proname, args;
SQL

printf '\n## Views\n\n'
q <<'SQL'
SELECT format(E'### `audit.%s`\n\n%s\n\nSource: `%s`. Columns: %s.\n',
              c.relname, coalesce(obj_description(c.oid, 'pg_class'), '(no description)'),
              coalesce(:'sources'::jsonb ->> ('view audit.' || c.relname), '(unknown)'),
              (SELECT string_agg(format('`%s` %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)
                 FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped))
  FROM pg_class c
 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'v'
 ORDER BY c.relname;
SQL

printf '\n## Tables\n\n'
q <<'SQL'
SELECT format(E'### `audit.%s`\n\n%s\n\nSource: `%s`.\n\n%s\n',
              c.relname, coalesce(obj_description(c.oid, 'pg_class'), '(no description)'),
              coalesce(:'sources'::jsonb ->> ('table audit.' || c.relname), '(unknown)'),
              (SELECT string_agg(format('- `%s` %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                        coalesce(' — ' || col_description(c.oid, a.attnum), '')), E'\n' ORDER BY a.attnum)
                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_class c
 WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
 ORDER BY c.relname;
SQL

printf '\n## Settings (GUCs)\n\n| name | default | context | description |\n|---|---|---|---|\n'
q <<'SQL'
SELECT format('| `%s` | %s | %s | %s%s |', name, coalesce(nullif(boot_val, ''), '(empty)') || coalesce(' ' || unit, ''),
              context, short_desc, coalesce(' ' || extra_desc, ''))
  FROM pg_settings WHERE name LIKE 'audit\_ext.%' ORDER BY name;
SQL

printf '\n## Event classes and actions\n\n| class | actions |\n|---|---|\n'
q <<'SQL'
SELECT format('| `%s` | %s |', c, coalesce((SELECT string_agg('`' || a || '`', ', ' ORDER BY a)
                                               FROM jsonb_array_elements_text(audit.known_actions() -> c) a),
                                              'free list (see the guide)'))
  FROM unnest(audit.event_classes()) c;
SQL
