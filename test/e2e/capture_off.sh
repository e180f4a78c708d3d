#!/usr/bin/env bash
# Capture cannot be switched off quietly (issue 18 C), on a cluster of its own
# with scram authentication.  A table owner who is no audit role, over TCP
# with a password, tries every route: DISABLE TRIGGER audit_ext_row / ALL /
# USER, ENABLE REPLICA TRIGGER, DROP TRIGGER (also of the last audited table
# of a database), renaming the trigger then disabling it, DISABLE TRIGGER
# audit_ext_truncate then TRUNCATE, a partition's cloned trigger, ALTER TABLE
# ONLY; once with audit_ext.log_ddl on and once with it off (set for the
# owner's role by a superuser).  Each is recorded with the table,
# "audit_trigger_disabled": true and "risk": "critical", fires the built-in
# audit_disabled alert, and audit.audited_tables.capturing says the truth.
# Renaming, replacing or making an extension own an audit trigger is refused.
# Also: ALTER COLUMN ... TYPE ... USING (a data rewrite), inheritance
# children (audited automatically), DETACH PARTITION (the partition and its
# rows), logical replication into an audited table (flagged per table).
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/capture_off
PORT=$(( ${PGPORT:-5497} + 45 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
mkdir -p "$DIR"
HBA=$(mktemp /tmp/audit_hba.XXXXXX)
cat > "$HBA" <<'HBA'
local all postgres trust
local all all      trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
HBA
chmod 644 "$HBA"
PG_HBA_FILE=$HBA pg_start "$DIR" "$PORT" "password_encryption = 'scram-sha-256'" "audit_ext.database = 'postgres'" \
    "wal_level = logical" "max_replication_slots = 4" "max_wal_senders = 4" \
    || { echo "not ok - could not start a cluster in $DIR"; rm -f "$HBA"; exit 1; }
rm -f "$HBA"

# the table owner, over TCP with a password
own() { PGPASSWORD=owner-pw psql -X -At -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$PORT dbname=${DB:-postgres} user=regress_owner" "$@"; }
# SQLSTATE and message of a statement the owner is refused
refused() { PGPASSWORD=owner-pw psql -X -At -v VERBOSITY=verbose "host=127.0.0.1 port=$PORT dbname=postgres user=regress_owner" \
              -c "$1" 2>&1 | sed -n 's/^[^:]*ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' | head -1; }
mark() { MARK=$(q -d "${DB:-postgres}" -c "SELECT coalesce(max(id), 0) FROM audit.event"); }
# ddl events after the mark: "action schema.table flag risk"
ev() {
    q -d "${DB:-postgres}" -c "SELECT format('%s %s.%s %s %s', action, schema_name, table_name,
                                      coalesce(detail->>'audit_trigger_disabled', '-'), coalesce(detail->>'risk', '-'))
                                 FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false) ${1:-} ORDER BY id"
}
state() {   # table: capturing and capture_state
    q -d "${DB:-postgres}" -c "SELECT capturing || ' ' || capture_state FROM audit.audited_tables WHERE table_name = '$1'"
}
# a bounded wait that says what it waited for when it gives up
await() {   # SQL returning a boolean, seconds, description
    if wait_for "$1" "$2"; then return 0; fi
    echo "# gave up after $2 s waiting for $3: $1"
    return 1
}

q -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE ROLE regress_owner LOGIN PASSWORD 'owner-pw';
GRANT CREATE ON SCHEMA public TO regress_owner;
SQL

# One round of every route on tables of their own (suffix $1).
routes() {
    local s=$1 mode=$2
    own -q >/dev/null <<SQL
CREATE TABLE dis_$s (id int PRIMARY KEY, v text);
CREATE TABLE rep_$s (id int PRIMARY KEY, v text);
CREATE TABLE drp_$s (id int PRIMARY KEY, v text);
CREATE TABLE ren_$s (id int PRIMARY KEY, v text);
CREATE TABLE trn_$s (id int PRIMARY KEY, v text);
CREATE TABLE all_$s (id int PRIMARY KEY, v text);
CREATE TABLE prt_$s (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE prt_${s}_eu PARTITION OF prt_$s FOR VALUES IN ('eu');
CREATE TABLE prt_${s}_us PARTITION OF prt_$s FOR VALUES IN ('us');
SQL
    q -d postgres -q >/dev/null <<SQL
SET client_min_messages = warning;
SELECT audit.enable(t) FROM unnest(ARRAY['dis_$s', 'rep_$s', 'drp_$s', 'ren_$s', 'trn_$s', 'all_$s', 'prt_$s']::regclass[]) t;
SQL
    is "$(q -d postgres -c "SELECT string_agg(DISTINCT capturing || ' ' || capture_state, ',') FROM audit.audited_tables WHERE table_name LIKE '%\_$s'")" \
       "true capturing" "log_ddl $mode: seven audited tables, all capturing"

    # DISABLE TRIGGER audit_ext_row: recorded, flagged, capturing false; the gap ends with ENABLE
    mark
    own -c "ALTER TABLE dis_$s DISABLE TRIGGER audit_ext_row" >/dev/null
    is "$(state dis_$s)" "false row trigger disabled" "log_ddl $mode: DISABLE TRIGGER audit_ext_row: audited_tables.capturing false"
    own -c "INSERT INTO dis_$s VALUES (1, 'unseen')" >/dev/null
    own -c "ALTER TABLE dis_$s ENABLE TRIGGER audit_ext_row" >/dev/null
    is "$(state dis_$s)" "true capturing" "log_ddl $mode: ENABLE TRIGGER audit_ext_row: capturing again"
    is "$(ev)" "ALTER TABLE public.dis_$s true critical
ALTER TABLE public.dis_$s - -" "log_ddl $mode: DISABLE TRIGGER audit_ext_row recorded with the table, the flag and critical risk; ENABLE recorded (the gap's end)"
    is "$(q -d postgres -c "SELECT detail->'audit_triggers' FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false) ORDER BY id")" \
       '{"audit_ext_row": "disabled"}
{"audit_ext_row": "enabled"}' "log_ddl $mode: the events name the audit trigger and its state"
    is "$(q -d postgres -c "SELECT DISTINCT db_user FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" "regress_owner" \
       "log_ddl $mode: recorded as the table owner's doing"

    # ENABLE REPLICA TRIGGER: fires only in replica sessions, i.e. not here
    mark
    own -c "ALTER TABLE rep_$s ENABLE REPLICA TRIGGER audit_ext_row" >/dev/null
    is "$(state rep_$s)" "false row trigger replica only" "log_ddl $mode: ENABLE REPLICA TRIGGER: capturing false (was true in 1.3)"
    own -c "ALTER TABLE rep_$s ENABLE ALWAYS TRIGGER audit_ext_row" >/dev/null
    is "$(state rep_$s)" "true capturing" "log_ddl $mode: ENABLE ALWAYS TRIGGER: still capturing (it also fires in replica sessions)"
    is "$(ev)" "ALTER TABLE public.rep_$s true critical
ALTER TABLE public.rep_$s - -" "log_ddl $mode: ENABLE REPLICA recorded and flagged; ENABLE ALWAYS recorded, not flagged"

    # DISABLE TRIGGER ALL and USER
    mark
    own -c "ALTER TABLE all_$s DISABLE TRIGGER ALL" -c "ALTER TABLE all_$s ENABLE TRIGGER ALL" \
        -c "ALTER TABLE all_$s DISABLE TRIGGER USER" >/dev/null
    is "$(state all_$s)" "false row trigger disabled; truncate trigger disabled" "log_ddl $mode: DISABLE TRIGGER USER: capturing false, both triggers named"
    own -c "ALTER TABLE all_$s ENABLE TRIGGER USER" >/dev/null
    is "$(ev "AND detail ? 'audit_trigger_disabled'")" "ALTER TABLE public.all_$s true critical
ALTER TABLE public.all_$s true critical" "log_ddl $mode: DISABLE TRIGGER ALL and USER recorded and flagged"

    # renaming the trigger is refused, so "rename then disable" is a plain disable
    is "$(refused "ALTER TRIGGER audit_ext_row ON ren_$s RENAME TO quiet")" \
       "55000 cannot rename trigger \"audit_ext_row\" of audited table \"ren_$s\"" "log_ddl $mode: renaming the audit trigger is refused (55000)"
    is "$(refused "CREATE OR REPLACE TRIGGER audit_ext_row AFTER INSERT ON ren_$s FOR EACH ROW EXECUTE FUNCTION audit.capture_row()")" \
       "55000 cannot replace trigger \"audit_ext_row\" of audited table \"ren_$s\"" "log_ddl $mode: CREATE OR REPLACE TRIGGER over the audit trigger is refused"
    is "$(refused "ALTER TRIGGER audit_ext_truncate ON ren_$s DEPENDS ON EXTENSION plpgsql")" \
       "55000 cannot make an extension own trigger \"audit_ext_truncate\" of audited table \"ren_$s\"" \
       "log_ddl $mode: ALTER TRIGGER ... DEPENDS ON EXTENSION (a later DROP EXTENSION would drop it) is refused"
    mark
    own -c "ALTER TABLE ren_$s DISABLE TRIGGER audit_ext_row" >/dev/null
    is "$(ev)" "ALTER TABLE public.ren_$s true critical" "log_ddl $mode: the trigger kept its name; disabling it is recorded"

    # DISABLE TRIGGER audit_ext_truncate, then TRUNCATE
    own -c "INSERT INTO trn_$s VALUES (1, 'a')" >/dev/null
    mark
    own -c "ALTER TABLE trn_$s DISABLE TRIGGER audit_ext_truncate" -c "TRUNCATE trn_$s" >/dev/null
    is "$(state trn_$s)" "false truncate trigger disabled" "log_ddl $mode: DISABLE TRIGGER audit_ext_truncate: capturing false"
    is "$(ev)" "ALTER TABLE public.trn_$s true critical" "log_ddl $mode: DISABLE TRIGGER audit_ext_truncate recorded and flagged"
    is "$(q -d postgres -c "SELECT action || ' ' || table_name || ' ' || (detail->>'truncate_trigger') || ' ' || (detail->>'risk') FROM audit.event WHERE id > $MARK AND class = 'data'")" \
       "TRUNCATE trn_$s disabled critical" "log_ddl $mode: the TRUNCATE itself is recorded all the same, flagged"

    # partitions: a clone on a partition; ALTER TABLE ONLY the partitioned table
    mark
    own -c "ALTER TABLE prt_${s}_eu DISABLE TRIGGER audit_ext_row" >/dev/null
    is "$(state prt_$s)" "false partition public.prt_${s}_eu: row trigger disabled" "log_ddl $mode: a partition's cloned trigger disabled: capturing false, the partition named"
    is "$(q -d postgres -c "SELECT table_name || ' ' || (detail->>'audited_table') FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
       "prt_${s}_eu public.prt_$s" "log_ddl $mode: recorded for the partition, naming its audited table"
    own -c "ALTER TABLE prt_${s}_eu ENABLE TRIGGER audit_ext_row" -c "ALTER TABLE ONLY prt_$s DISABLE TRIGGER audit_ext_row" >/dev/null
    is "$(state prt_$s)" "false row trigger disabled" "log_ddl $mode: ALTER TABLE ONLY: capturing false"
    is "$(ev "AND detail ? 'audit_trigger_disabled'")" "ALTER TABLE public.prt_${s}_eu true critical
ALTER TABLE public.prt_$s true critical" "log_ddl $mode: both recorded and flagged"
    own -c "ALTER TABLE prt_$s ENABLE TRIGGER audit_ext_row" >/dev/null

    # DROP TRIGGER: the truncate trigger, then the row trigger
    mark
    own -c "DROP TRIGGER audit_ext_truncate ON drp_$s" >/dev/null
    is "$(state drp_$s)" "false truncate trigger missing" "log_ddl $mode: DROP TRIGGER audit_ext_truncate: capturing false"
    own -c "DROP TRIGGER audit_ext_row ON drp_$s" >/dev/null
    is "$(ev)" "DROP TRIGGER public.drp_$s true critical
DROP TRIGGER public.drp_$s true critical" "log_ddl $mode: DROP TRIGGER of both audit triggers recorded with the table, flagged"
    is "$(q -d postgres -c "SELECT string_agg(detail->>'audit_triggers', ',' ORDER BY id) FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
       '{"audit_ext_truncate": "dropped"},{"audit_ext_row": "dropped"}' "log_ddl $mode: naming the trigger dropped"
    is "$(q -d postgres -c "SELECT count(*) FROM audit.audited_tables WHERE table_name = 'drp_$s'")" "0" \
       "log_ddl $mode: the table is no longer listed as audited"

    # ALTER COLUMN ... TYPE ... USING rewrites audited values outside the trigger
    mark
    own -c "ALTER TABLE dis_$s ALTER COLUMN v TYPE text USING upper(v)" >/dev/null
    is "$(q -d postgres -c "SELECT action || ' ' || table_name || ' ' || (detail->>'data_rewrite') || ' ' || (detail->>'rewritten_columns') || ' ' || (detail->>'using') || ' ' || (detail->>'risk') FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
       "ALTER TABLE dis_$s true [\"v\"] true high" "log_ddl $mode: ALTER COLUMN TYPE USING recorded as a data rewrite, with the column"

    # the built-in alert fires for each flagged event
    local flagged
    flagged=$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false) AND detail->>'audit_trigger_disabled' = 'true' AND table_name LIKE '%\_$s%'")
    await "SELECT count(*) = $flagged FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id
            WHERE a.rule = 'audit_disabled' AND e.table_name LIKE '%\_$s%'" 60 "one audit_disabled alert per flagged event ($flagged)"
    is "$?" "0" "log_ddl $mode: the built-in audit_disabled alert fired for each of the $flagged flagged events"
    is "$(q -d postgres -c "SELECT string_agg(DISTINCT a.severity || ' ' || (a.key = e.schema_name || '.' || e.table_name), ',')
                             FROM audit.alerts a JOIN audit.event e ON e.id = a.last_event_id
                            WHERE a.rule = 'audit_disabled' AND e.table_name LIKE '%\_$s%'")" "critical true" \
       "log_ddl $mode: critical, keyed by the table"
}

routes on on
q -d postgres -c "ALTER ROLE regress_owner SET audit_ext.log_ddl = off" >/dev/null
is "$(own -c "SHOW audit_ext.log_ddl")" "off" "a superuser turned DDL logging off for the owner's sessions"
mark
own -c "CREATE TABLE quiet (id int)" -c "DROP TABLE quiet" >/dev/null
is "$(ev)" "" "log_ddl off: ordinary DDL is not recorded"
routes off off
q -d postgres -c "ALTER ROLE regress_owner RESET audit_ext.log_ddl" >/dev/null

# The last audited table of a database: 1.3 recorded nothing at all.
q -d postgres -c "CREATE DATABASE lonely OWNER regress_owner" >/dev/null
DB=lonely
q -d lonely -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION audit_ext" >/dev/null
own -c "CREATE TABLE only_one (id int PRIMARY KEY)" >/dev/null
q -d lonely -c "SET client_min_messages = warning" -c "SELECT audit.enable('public.only_one')" >/dev/null
q -d lonely -c "ALTER DATABASE lonely SET audit_ext.log_ddl = off" >/dev/null
mark
own -c "DROP TRIGGER audit_ext_truncate ON only_one" -c "DROP TRIGGER audit_ext_row ON only_one" >/dev/null
is "$(ev)" "DROP TRIGGER public.only_one true critical
DROP TRIGGER public.only_one true critical" "the last audited table of a database, log_ddl off: both DROP TRIGGERs recorded"
is "$(q -d lonely -c "SELECT count(*) FROM audit.audited_tables")" "0" "no table of that database is audited any more"
DB=postgres

# A DROP TRIGGER rolled back to a savepoint leaves no event; one run by a DO
# block (a nested statement) is recorded
own -c "CREATE TABLE nest_t (id int PRIMARY KEY)" >/dev/null
q -d postgres -c "SET client_min_messages = warning" -c "SELECT audit.enable('nest_t')" >/dev/null
mark
own >/dev/null <<'SQL'
BEGIN;
SAVEPOINT a;
DROP TRIGGER audit_ext_row ON nest_t;
ROLLBACK TO a;
DO $$ BEGIN EXECUTE 'DROP TRIGGER audit_ext_truncate ON nest_t'; END $$;
COMMIT;
SQL
is "$(q -d postgres -c "SELECT string_agg(action || ' ' || table_name || ' ' || (detail->>'audit_triggers'), E'\n' ORDER BY id) FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
   'DROP TRIGGER nest_t {"audit_ext_truncate": "dropped"}' "a DROP TRIGGER rolled back leaves no event; one in a DO block is recorded"
is "$(state nest_t)" "false truncate trigger missing" "and audited_tables says what is missing"

# Inheritance: a child of an audited table is audited with its parent's options
mark
q -d postgres -c "CREATE TABLE parent_t (id int PRIMARY KEY, secret text); ALTER TABLE parent_t OWNER TO regress_owner" >/dev/null
q -d postgres -c "SELECT audit.enable('parent_t', mask_columns => '{secret}')" >/dev/null
own >/dev/null <<'SQL'
CREATE TABLE child_t (extra int) INHERITS (parent_t);
INSERT INTO child_t VALUES (1, 's1', 10);
UPDATE parent_t SET secret = 's2';
SQL
is "$(q -d postgres -c "SELECT mask_columns::text || ' ' || capturing FROM audit.audited_tables WHERE table_name = 'child_t'")" "{secret} true" \
   "CREATE TABLE ... INHERITS (audited): the child is audited, with its parent's masked column"
is "$(q -d postgres -c "SELECT string_agg(format('%s %s %s', class, action, coalesce(detail->>'inherits', detail->>'inherits_audited', new_data::text)), E'\n' ORDER BY id) FROM audit.event WHERE id > $MARK AND table_name = 'child_t'")" \
   'ddl ENABLE AUDIT public.parent_t
ddl CREATE TABLE ["public.parent_t"]
data INSERT {"id": 1, "extra": 10, "secret": "[masked]"}
data UPDATE {"secret": "[masked]"}' "recorded (ENABLE AUDIT, automatic; CREATE TABLE naming the audited parent); an UPDATE through the parent is captured on the child"
q -d postgres -c "SELECT audit.disable('child_t')" >/dev/null
is "$(state parent_t)" "false inheritance child public.child_t not captured" "a child no longer audited makes its parent's capturing false"

# DETACH PARTITION: the partition leaves the audited table with its rows
own -c "INSERT INTO prt_on SELECT g, 'us', 'x' FROM generate_series(1, 25) g" >/dev/null
mark
own -c "ALTER TABLE prt_on DETACH PARTITION prt_on_us" >/dev/null
is "$(q -d postgres -c "SELECT format('%s %s %s %s %s %s', action, table_name, detail->>'partition_detached', detail->>'partition', detail->>'partition_rows', detail->>'risk') FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
   "ALTER TABLE prt_on true public.prt_on_us 25 high" "DETACH PARTITION: recorded with the partition and its 25 rows"

# Logical replication into an audited table
q -d postgres -c "CREATE DATABASE pub" >/dev/null
q -d pub >/dev/null <<'SQL'
CREATE TABLE feed (id int PRIMARY KEY, v text);
CREATE PUBLICATION feed_pub FOR TABLE feed;
SELECT pg_create_logical_replication_slot('feed_sub', 'pgoutput');
SQL
q -d postgres -c "CREATE TABLE feed (id int PRIMARY KEY, v text)" -c "SELECT audit.enable('feed')" >/dev/null
mark
q -d postgres -c "SET audit_ext.log_ddl = off" \
  -c "CREATE SUBSCRIPTION feed_sub CONNECTION 'host=127.0.0.1 port=$PORT dbname=pub user=postgres' PUBLICATION feed_pub WITH (create_slot = false)" >/dev/null 2>&1
is "$(q -d postgres -c "SELECT format('%s %s %s %s %s', action, table_name, detail->>'subscription', detail->>'replicated_changes_captured', detail->>'risk') FROM audit.event WHERE id > $MARK AND class = 'ddl' AND NOT coalesce(detail ? 'audit_protection_off', false)")" \
   "CREATE SUBSCRIPTION feed feed_sub false high" "CREATE SUBSCRIPTION into an audited table: flagged per table, log_ddl off"
is "$(q -d postgres -c "SELECT capturing || ' ' || capture_state || ' ' || replicated_into::text FROM audit.audited_tables WHERE table_name = 'feed'")" \
   "true changes applied by subscription feed_sub not captured {feed_sub}" "audited_tables: replicated_into and the gap in capture_state"
q -d pub -c "INSERT INTO feed VALUES (1, 'applied')" >/dev/null
await "SELECT count(*) = 1 FROM feed" 60 "the subscription to apply one row"
is "$?" "0" "the row was applied"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE table_name = 'feed' AND class = 'data'")" "0" \
   "as documented: a change applied by the subscription is not captured by default"
q -d postgres -c "ALTER TABLE feed ENABLE ALWAYS TRIGGER audit_ext_row" >/dev/null
is "$(state feed)" "true capturing" "ENABLE ALWAYS TRIGGER audit_ext_row: replicated changes captured"
q -d pub -c "INSERT INTO feed VALUES (2, 'applied and captured')" >/dev/null
await "SELECT count(*) = 1 FROM audit.event WHERE table_name = 'feed' AND class = 'data'" 60 "the applied row's event"
is "$?" "0" "with ENABLE ALWAYS the applied change is captured"
q -d postgres -c "DROP SUBSCRIPTION feed_sub" >/dev/null 2>&1

done_testing
