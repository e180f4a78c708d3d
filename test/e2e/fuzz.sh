#!/usr/bin/env bash
# Bad input: every function of schema audit that PUBLIC or audit_admin may
# execute (found in the catalog, so new functions are covered) is called
# with NULLs, empty arrays, 1 MB values, extreme numbers and times, wrong
# types, quoted/unicode names, missing objects and injection attempts, as
# superuser, as an audit_admin member and as a plain role (test/e2e/fuzz.sql
# builds the calls).  Every call must succeed or fail with a proper SQLSTATE
# (not XX000 and the like, not a syntax error from SQL a function built, not
# a bare RAISE without errcode); afterwards the server has not crashed, the
# events that existed before are unchanged and the chains verify.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${AUDIT_TEST_TMP:-/tmp}/fuzz
PORT=$(( ${PGPORT:-5497} + 80 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "log_min_error_statement = panic" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
DB=fuzz
COMBOS=${FUZZ_COMBOS:-12}

q -d postgres -c "CREATE DATABASE $DB" >/dev/null
q -d $DB >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE ROLE fuzz_admin IN ROLE audit_admin;
CREATE ROLE fuzz_plain;
GRANT USAGE ON SCHEMA public TO fuzz_admin, fuzz_plain;
-- tables to point the functions at: plain, unicode and quoted names, an
-- injection-shaped name, a partitioned one, a view, a sequence
CREATE TABLE fz (id int PRIMARY KEY, v text, w text);
CREATE TABLE "Ünï ""cödé"" 表" ("ïd ""1""" int, "Kéy 2" text, "çøl ""x""" text, PRIMARY KEY ("ïd ""1""", "Kéy 2"));
CREATE TABLE "x'); DROP TABLE fz; --" (id int PRIMARY KEY, "a'b" text);
CREATE TABLE fz_part (id int, v text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE fz_part_1 PARTITION OF fz_part FOR VALUES FROM (0) TO (1000);
CREATE VIEW fz_view AS SELECT * FROM fz;
CREATE SEQUENCE fz_seq;
GRANT ALL ON ALL TABLES IN SCHEMA public TO fuzz_admin;
SELECT audit.enable('fz', mask_columns => '{w}');
SELECT audit.enable('"Ünï ""cödé"" 表"', exclude_columns => '{"çøl \"x\""}');
SELECT audit.enable('"x''); DROP TABLE fz; --"');
SELECT audit.enable('fz_part');
INSERT INTO fz SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 20) g;
UPDATE fz SET v = v || '!' WHERE id <= 10;
DELETE FROM fz WHERE id > 15;
INSERT INTO "Ünï ""cödé"" 表" VALUES (1, 'ä', 'hidden'), (2, 'b''"', 'hidden');
UPDATE "Ünï ""cödé"" 表" SET "Kéy 2" = 'ö' WHERE "ïd ""1""" = 1;
INSERT INTO "x'); DROP TABLE fz; --" VALUES (1, 'x');
INSERT INTO fz_part VALUES (1, 'p');
SQL
q -d $DB -f "$HERE/fuzz.sql" >/dev/null || { echo "not ok - fuzz harness did not load"; exit 1; }

# What is stored before: every event and statement text
SNAP="SELECT max(id), count(*), md5(string_agg(e::text, '|' ORDER BY e.id)) FROM audit.event e WHERE e.id <= (SELECT max_id FROM fuzz.before)"
q -d $DB -c "CREATE TABLE fuzz.before AS SELECT max(id) AS max_id FROM audit.event" >/dev/null
before=$(q -d $DB -c "$SNAP")
objects="SELECT string_agg(c.oid || ':' || c.relname, ',' ORDER BY c.relname) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')"
objects_before=$(q -d $DB -c "$objects")
STMTS="SELECT count(*), md5(string_agg(s::text, '|' ORDER BY s.statement_id)) FROM audit.statement s WHERE s.statement_id IN (SELECT statement_id FROM fuzz.statements_before)"
q -d $DB -c "CREATE TABLE fuzz.statements_before AS SELECT statement_id FROM audit.statement" >/dev/null
stmts_before=$(q -d $DB -c "$STMTS")

ncalls=$(q -d $DB -c "SELECT fuzz.make_calls($COMBOS)")
nfuncs=$(q -d $DB -c "SELECT count(*) FROM fuzz.target")
echo "# $nfuncs functions, $ncalls calls per role"
is "$( [ "$nfuncs" -ge 20 ] && echo yes )" "yes" "the catalog lists the public functions of schema audit ($nfuncs)"

start=$(date +%s)
crashed=""
for fn in $(q -d $DB -c "SELECT oid FROM fuzz.target ORDER BY fn::text"); do
    name=$(q -d $DB -c "SELECT $fn::regprocedure")
    for role in "" fuzz_admin fuzz_plain; do
        if [ -n "$role" ]; then r="'$role'"; else r=NULL; fi
        if ! q -q -d $DB -c "SET statement_timeout = '60s'" -c "CALL fuzz.run($fn, $r)" >"$DIR/run.out" 2>&1; then
            crashed="$crashed $name(${role:-superuser})"
            echo "# $name as ${role:-superuser}: $(tail -3 "$DIR/run.out")"
            # let a crashed server come back before going on
            for _ in $(seq 1 300); do q -d $DB -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
        fi
    done
done
echo "# calls took $(( $(date +%s) - start )) s"
is "$crashed" "" "every batch of calls ran to its end (no crash, no timeout)"

# Outcomes that are not a clean success or a clean, specific error.
bad=$(q -d $DB <<'SQL'
SELECT string_agg(format('%s as %s: %s %s -- %s', c.fn, r.role, r.sqlstate, left(r.message, 160), left(c.sql, 300)), E'\n' ORDER BY c.n, r.role)
  FROM fuzz.result r JOIN fuzz.call c USING (n)
 WHERE (r.sqlstate LIKE 'XX%' OR r.sqlstate LIKE '58%' OR r.sqlstate IN ('P0001', 'P0004', '42601', '42883')
        OR r.sqlstate IS NULL
        OR r.message ~* 'cache lookup failed|query string argument of EXECUTE is null|unrecognized|unexpected')
   AND NOT EXISTS (SELECT 1 FROM fuzz.allow a
                    WHERE a.proname = (SELECT p.proname FROM pg_proc p WHERE p.oid = c.fn) AND a.sqlstate = r.sqlstate)
SQL
)
rc=$?   # (a failed query prints nothing on stdout: its status and error are part of the check)
is "$rc|$bad" "0|" "every call succeeded or failed with a specific SQLSTATE (no XX000, no syntax error from built SQL, no bare RAISE)"
[ -n "$bad" ] && echo "$bad" | head -60 | sed 's/^/#   /'

is "$(q -d $DB -c "SELECT count(DISTINCT role) FROM fuzz.result")|$(q -d $DB -c "SELECT count(*) = 3 * $ncalls FROM fuzz.result")" "3|t" \
   "every call ran as superuser, as audit_admin and as a plain role"
q -d $DB -c "SELECT role, count(*) FILTER (WHERE sqlstate = '00000') AS ok, count(*) FILTER (WHERE sqlstate <> '00000') AS errors FROM fuzz.result GROUP BY 1 ORDER BY 1" \
    | sed 's/^/#   /'
# A plain role gets nothing: every call fails before the function runs (a
# value that does not fit its type) or with 42501, except known_actions()
# and canonical_jsonb() (public, no data), the end-user context functions
# (1.6: any role sets its own context, as it sets audit_ext.actor) and the
# planner folding a STRICT function of NULLs.
is "$(q -d $DB -c "SELECT count(*) FILTER (WHERE r.role = 'fuzz_plain') > 0, string_agg(DISTINCT c.fn::text || ' ' || r.sqlstate, ', ') FILTER (WHERE r.role = 'fuzz_plain' AND r.sqlstate NOT IN ('42501', '22P02', '22007', '42P01', '42846') AND r.message NOT LIKE 'invalid hexadecimal digit%' AND c.fn NOT IN ('audit.known_actions()'::regprocedure, 'audit.canonical_jsonb(anyelement)'::regprocedure, 'audit.set_context(text,inet,text,text,text,text,text,jsonb,boolean)'::regprocedure, 'audit.clear_context()'::regprocedure, 'audit.current_context()'::regprocedure) AND NOT (r.sqlstate = '00000' AND c.n = (SELECT min(n) FROM fuzz.call c2 WHERE c2.fn = c.fn))) FROM fuzz.result r JOIN fuzz.call c USING (n)" 2>&1)" \
   "t|" "a plain role is refused (42501) by every function that reads or changes the trail"
is "$(q -d $DB -c "SELECT count(*) * 2 > $ncalls FROM fuzz.result r WHERE r.role = 'fuzz_plain' AND r.sqlstate = '42501'")" \
   "t" "most plain-role calls reach the privilege check (the values fit their types)"

# The fuzzed calls may have disabled auditing of fz (audit.disable is one of
# them, and which values each call gets depends on the number of functions):
# audit it again for the checks below.
q -d $DB -c "SELECT audit.enable('fz', mask_columns => '{w}', digest_columns => '{}', sensitivity => 'none')" >/dev/null 2>&1
# The one setting every user may set: audit_ext.actor.  Huge values are
# refused when set (they made every audited write fail in the (actor, id)
# index); quotes, unicode and injection text are recorded as they are.
is "$(q -d $DB -c "SELECT set_config('audit_ext.actor', (SELECT t FROM fuzz.big), false)" 2>&1 | grep -o 'invalid value for parameter "audit_ext.actor"')" \
   'invalid value for parameter "audit_ext.actor"' "a 1 MB audit_ext.actor is refused when set"
is "$(q -d $DB -c "SELECT set_config('audit_ext.actor', repeat('é', 512), false)" -c "INSERT INTO fz VALUES (1001, 'a', 'b')" \
        -c "SELECT actor = repeat('é', 512) FROM audit.event WHERE record_id = '{\"id\": 1001}'" 2>&1 | tail -1)" \
   "t" "the longest allowed actor (1024 bytes) is recorded"
is "$(q -d $DB -c "SET audit_ext.actor = 'Ünï \"cödé\" 表 x''); DROP TABLE fz; --'" -c "INSERT INTO fz VALUES (1002, 'a', 'b')" \
        -c "SELECT actor FROM audit.event WHERE record_id = '{\"id\": 1002}'" 2>&1 | tail -1)" \
   "Ünï \"cödé\" 表 x'); DROP TABLE fz; --" "an actor with quotes, unicode and an injection is recorded as it is"

# DDL and utility statements with unusual names through the utility hook
# (src/ddl_capture.c), with statement literals kept: all succeed, each is
# recorded, no password reaches the trail.
q -d postgres -c "CREATE DATABASE fuzz_ddl" >/dev/null
q -d fuzz_ddl >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE seed (id int PRIMARY KEY);
SELECT audit.enable('seed');
ALTER DATABASE fuzz_ddl SET audit_ext.statement_literals = keep;
SQL
q -q -d fuzz_ddl -c "SET client_min_messages = error" -f "$HERE/fuzz_ddl.sql" >"$DIR/ddl.out" 2>&1
is "$?|$(grep -c ERROR "$DIR/ddl.out")" "0|0" "$(grep -c ';' "$HERE/fuzz_ddl.sql") DDL and utility statements with unusual names ran without an error" \
   "$(grep -B3 -A3 -E 'ERROR|FATAL' "$DIR/ddl.out" | head -60)"
# Exactly 101 events: every DDL and privilege statement of the file has its
# own (one each; some come through the worker, hence the wait).  The rest are
# not DDL: REINDEX, REFRESH, CLUSTER, VACUUM, LOCK, PREPARE/EXECUTE/DEALLOCATE,
# COPY, TRUNCATE (data events), a temporary table, SET ... = DEFAULT.
DDL_EVENTS="SELECT count(*) FROM audit.event WHERE class IN ('ddl', 'privilege')"
wait_for "SELECT ($DDL_EVENTS) >= 101" 60 fuzz_ddl
is "$(q -d fuzz_ddl -c "$DDL_EVENTS")|$(q -d fuzz_ddl -c "SELECT count(*) FROM audit.event WHERE class IN ('ddl', 'privilege') AND statement_id IS NULL")" \
   "101|0" "and each DDL and privilege statement was recorded, with its text" \
   "$(q -d fuzz_ddl -c "SELECT e.action || ': ' || left(s.statement_text, 100) FROM audit.event e LEFT JOIN audit.statement s USING (statement_id) WHERE e.class IN ('ddl', 'privilege') ORDER BY e.id" 2>&1)"
is "$(q -d fuzz_ddl -c "SELECT (SELECT count(*) FROM audit.event e WHERE e::text ~ 'sëcret|nëw') + (SELECT count(*) FROM audit.statement s WHERE s::text ~ 'sëcret|nëw')")" \
   "0" "no password of CREATE ROLE or USER MAPPING reached the trail (literals kept)"
is "$(q -d fuzz_ddl -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the chains of that database verify"

# Afterwards: alive, nothing stored changed, the chains verify, no crash
is "$(q -d $DB -c "SELECT 1")" "1" "the server is alive"
is "$(q -d $DB -c "$SNAP")" "$before" "events stored before the calls are unchanged (count and md5)"
is "$(q -d $DB -c "$STMTS")" "$stmts_before" "statement texts stored before are unchanged"
is "$(q -d $DB -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "audit.verify() still finds every chain intact"
is "$(q -d $DB -c "$objects" 2>&1)|$(q -d $DB -c "SELECT to_regclass('fuzz.value') IS NOT NULL" 2>&1)" \
   "$objects_before|t" "no injected statement ran (the tables, views and sequences named in the injections are the same objects, same OIDs)"
is "$(grep -cE 'PANIC|terminated by signal|server process .* was terminated' "$DIR/server.log")" "0" \
   "the server log has no PANIC and no backend terminated by a signal"
done_testing
