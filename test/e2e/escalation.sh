#!/usr/bin/env bash
# Privilege escalation through audit_ext's elevated code (issue 18 A), as an
# attacker does it: login roles over TCP with scram passwords, hostile
# operators planted for every type pair our queries compare, in the schema
# first on the attacker's search_path, in public (the database owner's) and
# in a schema named after the workers' role (anyone with CREATE on the
# database can make it); a domain whose CHECK runs the table owner's code.
# Every planted function tries to make its author superuser and writes
# down who it ran as.  Then every elevated path is driven: the statement
# store (a text stored before by another session), the maintenance worker,
# the security-event worker, refused statements, DDL capture, the reading
# functions (record history, row as of), verify.  None may run the planted
# code as anyone but the attacker.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/escalation
PORT=$(( ${PGPORT:-5497} + 55 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start_scram "$DIR" "$PORT" \
    "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 1" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

as() {   # role, then psql arguments: over TCP with the role's password
    local role=$1
    shift
    # a planted function that blocks must fail the test, not hang it
    PGPASSWORD="pw-$role" PGOPTIONS="-c statement_timeout=60s" psql -X -At -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PORT dbname=postgres user=$role" "$@"
}

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE EXTENSION pgstattuple;
CREATE ROLE regress_mallory LOGIN PASSWORD 'pw-regress_mallory';
CREATE ROLE regress_tabowner LOGIN PASSWORD 'pw-regress_tabowner';
CREATE ROLE regress_dbowner LOGIN PASSWORD 'pw-regress_dbowner';
CREATE ROLE regress_creator LOGIN PASSWORD 'pw-regress_creator';
CREATE ROLE regress_auditor LOGIN PASSWORD 'pw-regress_auditor' IN ROLE audit_reader;
CREATE ROLE regress_admin LOGIN PASSWORD 'pw-regress_admin' IN ROLE audit_admin;
ALTER DATABASE postgres OWNER TO regress_dbowner;
GRANT CREATE ON DATABASE postgres TO regress_creator, regress_mallory, regress_tabowner;
-- the marker: who did a planted function run as?
CREATE TABLE public.ran (who name, what text);
GRANT INSERT, SELECT ON public.ran TO PUBLIC;
-- an audited table the attacker may not read (refused statements are recorded)
CREATE TABLE public.payroll (id int PRIMARY KEY, salary int);
SELECT audit.enable('public.payroll', log_reads => true);
INSERT INTO public.payroll VALUES (1, 100);
SQL

# evil_objects SCHEMA TAG: a function per type pair and operator, which tries
# to make regress_mallory superuser and records the role it runs as.
evil_objects() {
    cat <<SQL
DO \$do\$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT * FROM (VALUES
        ('text', 'text'), ('oid', 'regclass'), ('regclass', 'oid'), ('oid', 'oid'), ('bigint', 'bigint'),
        ('integer', 'integer'), ('jsonb', 'jsonb'), ('timestamptz', 'timestamptz'), ('name', 'name'),
        ('bytea', 'bytea'), ('text', 'name'), ('name', 'text'), ('boolean', 'boolean'), ('inet', 'inet')) v(l, r),
        (VALUES ('='), ('<>'), ('<'), ('>'), ('<='), ('>='), ('@>'), ('~~')) o(op)
    LOOP
        CONTINUE WHEN p.op IN ('@>') AND p.l <> 'jsonb';
        CONTINUE WHEN p.op IN ('~~') AND p.l NOT IN ('text', 'name');
        EXECUTE format(\$f\$
            CREATE FUNCTION %1\$I.%2\$I(a %3\$s, b %4\$s) RETURNS boolean LANGUAGE plpgsql AS \$b\$
            BEGIN
                BEGIN
                    UPDATE pg_catalog.pg_authid SET rolsuper = true WHERE rolname = 'regress_mallory';
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
                INSERT INTO public.ran VALUES (current_user, %5\$L);
                RETURN a::text OPERATOR(pg_catalog.%6\$s) b::text;
            END \$b\$\$f\$,
            '$1', 'evil_' || md5(p.l || p.r || p.op), p.l, p.r, '$2 ' || p.l || ' ' || p.op || ' ' || p.r,
            CASE p.op WHEN '@>' THEN '=' ELSE p.op END);
        EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.%I)',
                       '$1', p.op, p.l, p.r, '$1', 'evil_' || md5(p.l || p.r || p.op));
    END LOOP;
END
\$do\$;
SQL
}

# --- planting -------------------------------------------------------------
as regress_mallory -q -c "CREATE SCHEMA mal" >/dev/null
evil_objects mal "attacker path" | as regress_mallory -q >/dev/null
is "$?" "0" "the attacker plants operators for every type pair in a schema of its own"
evil_objects public "public" | as regress_dbowner -q >/dev/null
is "$?" "0" "the database owner plants them in public"
as regress_creator -q -c "CREATE SCHEMA postgres" >/dev/null && evil_objects postgres "\$user" | as regress_creator -q >/dev/null
is "$?" "0" "a role with CREATE on the database plants them in a schema named after the workers' role"
planted=$(q -d postgres -c "SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
                            WHERE n.nspname IN ('mal', 'public', 'postgres')")
is "$([ "$planted" -gt 200 ] && echo yes)" "yes" "hostile operators in place ($planted)"

# The table owner's domain: its CHECK runs whenever a value of the type is made.
as regress_tabowner -q >/dev/null <<'SQL'
CREATE SCHEMA own;
CREATE FUNCTION own.check_key(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE pg_catalog.pg_authid SET rolsuper = true WHERE rolname = 'regress_tabowner';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    INSERT INTO public.ran VALUES (current_user, 'domain check');
    RETURN v > 0;
END $$;
CREATE DOMAIN own.key_t AS int CHECK (own.check_key(VALUE));
CREATE TABLE own.orders (id own.key_t PRIMARY KEY, item text);
CREATE TABLE own.parted (id own.key_t PRIMARY KEY, item text) PARTITION BY RANGE (id);
CREATE TABLE own.parted_1 PARTITION OF own.parted FOR VALUES FROM (1) TO (100);
GRANT USAGE ON SCHEMA own TO regress_auditor;
SQL
q -d postgres -q -c "SELECT audit.enable('own.orders')" -c "SELECT audit.enable('own.parted')" >/dev/null
as regress_tabowner -q -c "INSERT INTO own.orders VALUES (1, 'a'), (2, 'b')" -c "UPDATE own.orders SET item = 'c' WHERE id = 1" \
   -c "INSERT INTO own.parted VALUES (5, 'x')" -c "TRUNCATE own.parted_1" >/dev/null
q -d postgres -q -c "TRUNCATE public.ran"

# --- A1: the statement store --------------------------------------------
# Another session stores the text first; the attacker's session then runs
# the same text with its operators first on the path: the store reads the
# stored text back and compares it.
as regress_mallory -q -c "ALTER ROLE regress_mallory SET work_mem = '5MB'" >/dev/null
as regress_mallory -q -c "SET search_path = mal, pg_catalog" -c "ALTER ROLE regress_mallory SET work_mem = '5MB'" >/dev/null
is "$?" "0" "the attacker's second ALTER ROLE (a text already stored) succeeds"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'privilege' AND action = 'ALTER ROLE'
                          AND db_user = 'regress_mallory'")" "2" "both ALTER ROLEs are recorded"
# a text stored by the attacker's own path first, then by a clean session
as regress_mallory -q -c "SET search_path = mal, pg_catalog" -c "ALTER ROLE regress_mallory SET work_mem = '6MB'" >/dev/null
as regress_mallory -q -c "SET search_path = mal, pg_catalog" -c "ALTER ROLE regress_mallory SET work_mem = '6MB'" >/dev/null

# --- refused statements, reads, DDL, under the hostile path ----------------
as regress_mallory -q >/dev/null 2>&1 <<'SQL'
SET search_path = mal, public, pg_catalog;
SELECT * FROM public.payroll;
SQL
as regress_mallory -q >/dev/null 2>&1 <<'SQL'
SET search_path = mal, public, pg_catalog;
UPDATE public.payroll SET salary = 0;
SQL
as regress_mallory -q >/dev/null <<'SQL'
SET search_path = mal, public, pg_catalog;
CREATE TABLE mal.t (id int);
ALTER TABLE mal.t ADD COLUMN x text;
GRANT SELECT ON mal.t TO PUBLIC;
DROP TABLE mal.t;
SQL
wait_for "SELECT count(*) >= 2 FROM audit.event WHERE class = 'data' AND status = 'failure'
          AND table_name = 'payroll' AND db_user = 'regress_mallory'" 60
is "$?" "0" "the refused statements are recorded (through the security-event worker)"

# --- A2: the maintenance worker -------------------------------------------
# Its GIN step compared oid with regclass: an operator =(oid, regclass)
# in public or in "postgres" matched exactly.  Wait for two rounds that ran
# that very query: new events' pending GIN entries are merged by it.
q -d postgres -q -c "ALTER TABLE public.payroll SET (autovacuum_enabled = off)" \
   -c "INSERT INTO public.payroll SELECT g, g FROM generate_series(2, 200) g" >/dev/null
cur_idx="audit.event_data_p$(date -u +%Y%m)_record_idx"
wait_for "SELECT pending_tuples = 0 FROM pgstatginindex('$cur_idx')" 60
is "$?" "0" "a maintenance round ran the GIN step after the planting"
# An unprivileged client calling itself pg_restore must not pause maintenance
# (a restore by a superuser or the database owner does).
PGPASSWORD=pw-regress_mallory sess_open mallory_restore "host=127.0.0.1 port=$PORT dbname=postgres user=regress_mallory application_name=pg_restore"
sess_run mallory_restore "SELECT 1;"
wait_for "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pg_restore' AND usename = 'regress_mallory')" 60
is "$?" "0" "an unprivileged session named pg_restore is connected"
q -d postgres -q -c "INSERT INTO public.payroll SELECT g, g FROM generate_series(201, 300) g" >/dev/null
wait_for "SELECT pending_tuples = 0 FROM pgstatginindex('$cur_idx')" 60
is "$?" "0" "... and another maintenance round ran while it was connected"
sess_close mallory_restore
# A superuser's session named pg_restore (a restore in progress) pauses
# maintenance of that database, and only of that one: a witness database is
# maintained twice meanwhile (its GIN pending list merged after two inserts
# made while the session is connected), this one's pending entries stay; once
# the session ends, the next round merges them.
q -d postgres -c "CREATE DATABASE witness" >/dev/null
q -d witness -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE EXTENSION pgstattuple;
CREATE TABLE w (id int PRIMARY KEY);
ALTER TABLE w SET (autovacuum_enabled = off);
SELECT audit.enable('w');
SQL
# (autovacuum, which also empties GIN pending lists, is off for the month's partition here)
q -d postgres -q -c "ALTER TABLE ${cur_idx%_record_idx} SET (autovacuum_enabled = off)" >/dev/null
sess_open pg_restore -d postgres
sess_run pg_restore "SELECT 1;"
wait_for "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pg_restore' AND usename = 'postgres')" 60
# a round of this database that started before the session connected may still run: let it end
since=$(q -d postgres -c "SELECT backend_start FROM pg_stat_activity WHERE application_name = 'pg_restore'")
wait_for "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'audit_ext maintenance' AND datname = 'postgres'
                               AND backend_start <= '$since')" 60
q -d postgres -q -c "INSERT INTO public.payroll SELECT g, g FROM generate_series(301, 400) g" >/dev/null
for round in 1 2; do
    q -d witness -q -c "INSERT INTO w SELECT g FROM generate_series($round * 1000, $round * 1000 + 99) g" >/dev/null
    wait_for "SELECT pending_tuples = 0 FROM pgstatginindex('$cur_idx')" 60 witness
    witnessed=$?
done
is "$witnessed|$(q -d postgres -c "SELECT pending_tuples > 0 FROM pgstatginindex('$cur_idx')")" "0|t" \
   "while a superuser's pg_restore session is connected, maintenance skips that database (another database was maintained twice)"
sess_close pg_restore
wait_for "SELECT pending_tuples = 0 FROM pgstatginindex('$cur_idx')" 60
is "$?" "0" "once the restore session is gone, maintenance of the database resumes"

# --- A3: the reading functions, as an auditor -----------------------------
hist=$(as regress_auditor -c "SELECT count(*) FROM audit.record_history('own.orders'::regclass, '{\"id\": 1}')" 2>&1)
is "$hist" "2" "record_history over a table whose key is a hostile domain answers"
hist=$(as regress_auditor -c "SELECT count(*) FROM audit.record_history('own', 'orders', '{\"id\": \"1\"}')" 2>&1)
is "$hist" "2" "record_history by name too (the key normalised through the domain)"
asof=$(as regress_auditor -c "SELECT audit.row_as_of('own.orders', '{\"id\": 1}', now()) ->> 'item'" 2>&1)
is "$asof" "c" "row_as_of answers"
hist=$(as regress_auditor -c "SELECT string_agg(action, ',' ORDER BY id) FROM audit.record_history('own.parted'::regclass, '{\"id\": 5}')" 2>&1)
is "$hist" "INSERT,TRUNCATE" "the history of a row of a partitioned table finds the partition's TRUNCATE"
ran_domain=$(q -d postgres -c "SELECT count(*) FROM public.ran WHERE what = 'domain check'")
is "$([ "$ran_domain" -gt 0 ] && echo ran)" "ran" "the domain's CHECK did run during the reads (the test is not vacuous: $ran_domain times)"
is "$(q -d postgres -c "SELECT coalesce(string_agg(DISTINCT who, ','), '') FROM public.ran WHERE what = 'domain check'")" \
   "regress_tabowner" "... as the table's owner only"
as regress_auditor -q -c "SET search_path = mal, public, pg_catalog" \
   -c "SELECT count(*) FROM audit.search(from_time => now() - interval '1 hour', table_name => 'payroll')" \
   -c "SELECT count(*) FROM audit.verify()" >/dev/null 2>&1
is "$(as regress_admin -q -c "SET search_path = mal, public, pg_catalog" -c "SELECT audit.chain_checkpoint() >= 0" 2>&1)" "t" \
   "audit_admin may take a chain checkpoint (it runs as the owner, its path pinned)"

# The owner of an audited partitioned table adds partitions (up to 1.3:
# "permission denied for function" with a blank name: the cloned trigger's
# function needed EXECUTE), and their rows are captured.
is "$(as regress_tabowner -q -c "CREATE TABLE own.parted_2 PARTITION OF own.parted FOR VALUES FROM (100) TO (200)" \
        -c "CREATE TABLE own.parted_3 (id own.key_t NOT NULL, item text)" \
        -c "ALTER TABLE own.parted ATTACH PARTITION own.parted_3 FOR VALUES FROM (200) TO (300)" \
        -c "INSERT INTO own.parted VALUES (150, 'p2'), (250, 'p3')" 2>&1)" "" \
   "the table owner creates and attaches partitions of its audited table"
is "$(q -d postgres -c "SELECT string_agg(new_data->>'item', ',' ORDER BY id) FROM audit.event WHERE table_name = 'parted' AND action = 'INSERT' AND new_data->>'id' IN ('150', '250')")" \
   "p2,p3" "... and their rows are captured"

# --- verdict ------------------------------------------------------------------
is "$(q -d postgres -c "SELECT string_agg(rolname || '=' || rolsuper, ',' ORDER BY rolname) FROM pg_roles
                         WHERE rolname IN ('regress_mallory', 'regress_tabowner', 'regress_dbowner', 'regress_creator')")" \
   "regress_creator=false,regress_dbowner=false,regress_mallory=false,regress_tabowner=false" \
   "no attacker became superuser"
bad=$(q -d postgres -c "SELECT coalesce(string_agg(DISTINCT r.who || ': ' || r.what, '; '), '')
                         FROM public.ran r JOIN pg_roles o ON o.rolname = r.who
                        WHERE o.rolsuper OR r.who NOT IN ('regress_mallory', 'regress_tabowner', 'regress_dbowner', 'regress_creator', 'regress_auditor', 'regress_admin')")
is "$bad" "" "no planted function ran with anyone's rights but its caller's"
is "$(q -d postgres -c "SELECT count(*) FROM public.ran WHERE what NOT LIKE 'domain%' AND who NOT LIKE 'regress_%'")" "0" \
   "no planted operator ran inside our code"

done_testing
