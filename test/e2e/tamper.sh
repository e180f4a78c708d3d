#!/usr/bin/env bash
# Tampering as a superuser (issue 18 B): the chain's own tables are
# append-only, the one DELETE the trail allows is exactly one operation, only
# audit.prune() drops events, forged anchors are caught by audit.verify(),
# and switching a protection off is recorded by every route (SET,
# set_config, a function's SET clause, PGOPTIONS, ALTER ROLE ... SET,
# ALTER SYSTEM), also when the transaction rolls back, fires the shipped
# audit_disabled alert and is counted by audit.verify().
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/tamper
PORT=$(( ${PGPORT:-5497} + 35 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
# The cluster first runs under a clock 400 days back (libfaketime, Debian's
# faketime): what it captures lands, with intact chains, in a month that
# retention may prune once the clock is right again.
FAKE_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$FAKE_LIB" ] || { echo "not ok - libfaketime not found (Debian package faketime)"; exit 1; }
LD_PRELOAD=$FAKE_LIB FAKETIME="-400d" pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.maintenance_interval = 3600" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT audit.enable('t');
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 20) g;
UPDATE t SET v = 'y' WHERE id <= 5;
SELECT audit.chain_checkpoint();
SQL
old_month=$(q -d postgres -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")
pg_stop "$DIR"
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null) \
    || { echo "not ok - could not restart the cluster with the real clock"; exit 1; }
is "$(q -d postgres -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM') <> '$old_month'")" "t" "the clock is right again (old month $old_month)"

sqlstate() {   # psql args: the SQLSTATE of the error, or "ok"
    local out
    out=$(psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$@" 2>&1) && { echo ok; return; }
    echo "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-
}
# events that switched a protection off, from the mark: "setting via" per line
weakened() {   # each route once, in the order first seen (a function's SET clause may be applied twice)
    q -d postgres -c "SELECT detail ->> 'setting', detail ->> 'via' FROM audit.event
                       WHERE id > $MARK AND class = 'ddl' AND detail @> '{\"audit_protection_off\": true}'
                       GROUP BY 1, 2 ORDER BY min(id)" -F ' | '
}
mark() { MARK=$(q -d postgres -c "SELECT coalesce(max(id), 0) FROM audit.event"); }
wait_weakened() {   # count: wait until that many protection-off events after the mark are written
    wait_for "SELECT count(*) >= $1 FROM audit.event WHERE id > $MARK AND class = 'ddl'
              AND detail @> '{\"audit_protection_off\": true}'" 60 \
        || echo "# waited for $1 protection-off events, have: $(weakened | tr '\n' ';')"
}

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE regress_app LOGIN;
SELECT audit.create_partitions();
INSERT INTO t SELECT g, 'now' FROM generate_series(21, 30) g;
SQL
is "$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the trail of both clocks verifies"

# --- pruning: anchors, bound to the PRUNE event --------------------------------
q -d postgres -q -c "SELECT audit.set_retention('data', interval '1 year', archive => false)" >/dev/null
pruned=$(q -d postgres -c "SELECT string_agg(partition || ' ' || rows, ', ') FROM audit.prune()")
is "$pruned" "event_data_p$old_month 25" "audit.prune() drops the old month (20 INSERTs and 5 UPDATEs)"
is "$(q -d postgres -c "SELECT count(*) > 0, sum(events) FROM audit.chain_anchor")" "t|25" "its chain positions are anchored"
is "$(q -d postgres -c "SELECT detail ->> 'anchors_digest' = audit.anchor_digest() FROM audit.event
                         WHERE class = 'system' AND action = 'PRUNE' ORDER BY id DESC LIMIT 1")" "t" \
   "the PRUNE event commits to the anchors"
q -d postgres -q -c "UPDATE t SET v = 'after' WHERE id = 1" >/dev/null
is "$(q -d postgres -c "SELECT verified, breaks, unverifiable_links FROM audit.verify()")" "t|0|0" "the trail verifies after the prune"
q -d postgres -c "CREATE DATABASE restored" >/dev/null
pg_dump -Fc -d postgres -f "$DIR/dump" && pg_restore -d restored "$DIR/dump" 2>"$DIR/restore.err"
is "$(q -d restored -c "SELECT verified, breaks, (SELECT count(*) FROM audit.chain_anchor) > 0 FROM audit.verify()")" "t|0|t" \
   "a dump and restore of a pruned trail verifies (anchors and PRUNE event restored)"

# --- the chain's tables are append-only --------------------------------------
is "$(sqlstate -d postgres -c "UPDATE audit.chain_anchor SET last_seq = last_seq + 1")" "42501" "a superuser cannot UPDATE audit.chain_anchor"
is "$(sqlstate -d postgres -c "DELETE FROM audit.chain_anchor")" "42501" "... nor DELETE from it"
is "$(sqlstate -d postgres -c "DELETE FROM audit.chain_checkpoint")" "42501" "... nor from audit.chain_checkpoint"
is "$(sqlstate -d postgres -c "UPDATE audit.chain_checkpoint SET hash = hash")" "42501" "... nor UPDATE it"
is "$(sqlstate -d postgres -c "TRUNCATE audit.chain_anchor")" "42501" "... nor TRUNCATE audit.chain_anchor"

# --- forged anchors --------------------------------------------------------------
# Delete-by-anchor: claim that positions of a live lane were pruned.
forged=$(q -d postgres -c "BEGIN" \
  -c "INSERT INTO audit.chain_anchor (class, chain_lane, first_seq, last_seq, last_event_id, last_hash, events, partition_name)
      SELECT class, chain_lane, 1000, 1001, 1, '\\x00', 2, 'forged' FROM audit.event WHERE class = 'data' AND table_name = 't' LIMIT 1" \
  -c "SELECT verified || '|' || breaks || '|' || problem FROM audit.verify()" -c "ROLLBACK" | grep '|')
is "$forged" "false|1|audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()" \
   "a forged anchor is reported by verify()"

# --- only audit.prune() drops events, only its move deletes --------------------------
part=$(q -d postgres -c "SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = 'audit.event_data'::regclass AND c.relname LIKE 'event_data_p%' ORDER BY c.relname LIMIT 1")
is "$(sqlstate -d postgres -c "SELECT audit.drop_event_partition('$part')")" "42501" "audit.drop_event_partition() outside audit.prune() is refused, even to a superuser"
is "$(sqlstate -d postgres -c "SELECT audit.chain_record_pruned('$part')")" "42501" "... and so is audit.chain_record_pruned()"
is "$(q -d postgres -c "SELECT to_regclass('$part') IS NOT NULL")" "t" "the partition is still there"
# a function of the superuser's own in schema audit is not one of ours
q -d postgres -q >/dev/null <<'SQL'
CREATE FUNCTION audit.sneaky_delete() RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE n bigint;
BEGIN
    DELETE FROM audit.event WHERE table_name = 't' AND action = 'INSERT';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
CREATE FUNCTION audit.sneaky_ddl() RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CREATE TABLE public.made_inside (id int);
END $$;
SQL
is "$(sqlstate -d postgres -c "SELECT audit.sneaky_delete()")" "42501" "a DELETE inside a superuser's function in schema audit is refused"
mark
q -d postgres -q -c "SELECT audit.sneaky_ddl()" >/dev/null
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND class = 'ddl' AND action = 'CREATE TABLE'")" "1" \
   "DDL inside a superuser's function in schema audit is recorded"
is "$(sqlstate -d postgres -c "SELECT audit.move_default_events('data', 't', '-infinity', 'infinity')")" "22023" \
   "audit.move_default_events() refuses a target that is not a new month of audit"
# the move itself works: a back-dated event lands in its new month
q -d postgres -q >/dev/null <<'SQL'
INSERT INTO audit.event (event_time, class, action, status, db_user, "session_user", schema_name, table_name)
VALUES (timestamptz '2031-03-15 00:00+00', 'data', 'INSERT', 'success', 'future', 'future', 'public', 'later');
SELECT audit.create_month_partition('data', timestamptz '2031-03-15 00:00+00');
SQL
is "$(q -d postgres -c "SELECT tableoid::regclass FROM audit.event WHERE db_user = 'future'")" "audit.event_data_p203103" \
   "create_month_partition still moves events out of the default partition"
is "$(q -d postgres -c "SELECT verified, breaks, problem LIKE '%inserted or altered outside audit_ext%' FROM audit.verify()")" "f|1|t" \
   "the event the superuser inserted by hand is reported by verify(), after its move too"

# --- switching a protection off is recorded, by every route -----------------------
mark
q -d postgres -q -c "SET audit_ext.log_ddl = off" -c "SELECT 1" >/dev/null
q -d postgres -q -c "SELECT set_config('audit_ext.protect_trail', 'off', false)" >/dev/null
q -d postgres -q -c "BEGIN" -c "SET LOCAL audit_ext.log_ddl = off" -c "ROLLBACK" >/dev/null
q -d postgres -q >/dev/null <<'SQL'
CREATE FUNCTION public.quiet() RETURNS int LANGUAGE sql SET audit_ext.log_ddl = off AS 'SELECT 1';
SELECT public.quiet();
SQL
PGOPTIONS="-c audit_ext.protect_trail=off" q -d postgres -c "SELECT 1" >/dev/null
q -d postgres -q -c "ALTER ROLE regress_app SET audit_ext.log_ddl = off" >/dev/null
q -d postgres -U regress_app -c "SELECT 1" >/dev/null
q -d postgres -q -c "ALTER SYSTEM SET audit_ext.protect_trail = off" >/dev/null
wait_weakened 7
n_set=$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND detail @> '{\"audit_protection_off\": true, \"setting\": \"audit_ext.log_ddl\"}'
                          AND detail ->> 'via' LIKE 'SET%'")
is "$([ "$n_set" -ge 3 ] && echo yes)" "yes" "SET, SET LOCAL in a rolled-back transaction and the function's SET clause each recorded ($n_set)"
got=$(weakened)
is "$got" "audit_ext.log_ddl | SET, set_config() or a function's SET clause
audit_ext.protect_trail | SET, set_config() or a function's SET clause
audit_ext.protect_trail | connection options (PGOPTIONS)
audit_ext.log_ddl | ALTER ROLE ... SET
audit_ext.protect_trail | ALTER SYSTEM" \
   "SET, set_config, PGOPTIONS, ALTER ROLE ... SET, ALTER SYSTEM: each route recorded"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND detail @> '{\"audit_protection_off\": true, \"risk\": \"critical\"}'
                         AND db_user IS NULL")" "0" "each as critical, with who did it"
# the configuration file: the worker records it after the reload
mark
q -d postgres -q -c "SELECT pg_reload_conf()" >/dev/null
wait_weakened 1
is "$(weakened)" "audit_ext.protect_trail | configuration file" "a configuration file that turns protection off is recorded at the reload"
q -d postgres -q -c "ALTER SYSTEM RESET audit_ext.protect_trail" -c "ALTER ROLE regress_app RESET audit_ext.log_ddl" -c "SELECT pg_reload_conf()" >/dev/null
# the shipped alert rule fires
wait_for "SELECT count(*) > 0 FROM audit.alerts WHERE rule = 'audit_disabled'" 60
is "$?" "0" "the audit_disabled alert fires for protection switched off"
is "$(q -d postgres -c "SELECT protection_off_events >= 8 FROM audit.verify()")" "t" "audit.verify() counts the events that switched a protection off"


# --- privilege escalation the shipped rule missed up to 1.3 -------------------
mark
q -d postgres -q >/dev/null <<'SQL'
CREATE ROLE regress_x1;
GRANT postgres TO regress_x1;
CREATE ROLE regress_x2 IN ROLE postgres;
GRANT pg_execute_server_program TO regress_x1;
GRANT pg_read_server_files TO regress_x2;
GRANT pg_write_server_files TO regress_x1;
GRANT pg_monitor TO regress_x2;
SQL
is "$(q -d postgres -c "SELECT string_agg(action || ' ' || coalesce(detail->>'grants_superuser', '-') || ' ' || coalesce(detail->>'grants_server_access', '-'), ', ' ORDER BY id)
                         FROM audit.event WHERE id > $MARK AND class = 'privilege'")" \
   "CREATE ROLE - -, GRANT ROLE true true, CREATE ROLE true true, GRANT ROLE - true, GRANT ROLE - true, GRANT ROLE - true, GRANT ROLE - -" \
   "grants of a superuser role and of the server-access roles are flagged (pg_monitor is not)"
wait_for "SELECT count(*) = 5 FROM audit.alerts a WHERE a.rule = 'privilege_escalation' AND a.last_event_id > $MARK" 60
is "$?" "0" "privilege_escalation fires for GRANT postgres, CREATE ROLE IN ROLE postgres and the three server-access roles"

# --- changes to alert rules and acknowledgements are events -------------------
mark
q -d postgres -q >/dev/null <<'SQL'
SELECT audit.create_alert_rule('regress_rule', 'data', threshold => 3, within => interval '1 minute');
SELECT audit.set_alert_rule_enabled('regress_rule', false);
SELECT audit.set_alert_rule_enabled('audit_disabled', false);
SELECT audit.set_alert_rule_enabled('audit_disabled', true);
SELECT audit.drop_alert_rule('regress_rule');
SQL
q -d postgres -q -c "SELECT audit.acknowledge_alert(min(alert_id), 'seen') FROM audit.alerts WHERE rule = 'privilege_escalation'" >/dev/null
is "$(q -d postgres -c "SELECT string_agg(action || ' ' || coalesce(detail->>'rule', ''), ', ' ORDER BY id) FROM audit.event
                         WHERE id > $MARK AND class = 'system'")" \
   "CREATE ALERT RULE regress_rule, DISABLE ALERT RULE regress_rule, DISABLE ALERT RULE audit_disabled, ENABLE ALERT RULE audit_disabled, DROP ALERT RULE regress_rule, ACKNOWLEDGE ALERT privilege_escalation" \
   "creating, switching, dropping alert rules and acknowledging alerts are system events"


# --- secrets never land in the trail ---------------------------------------------
mark
for mode in redact keep; do
    q -d postgres -q >/dev/null <<SQL
SET client_min_messages = warning;
SET audit_ext.statement_literals = $mode;
CREATE OR REPLACE FUNCTION public.mkuser(n text, p text) RETURNS void LANGUAGE plpgsql
    AS \$f\$ BEGIN EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', n, p); END \$f\$;
SELECT public.mkuser('regress_bob_$mode', 'S3cretPw-$mode');
CREATE ROLE regress_carol_$mode;
ALTER ROLE regress_carol_$mode SET app.api_key = 'KEY-123-$mode';
ALTER ROLE regress_carol_$mode IN DATABASE postgres SET app.api_key = 'KEY-456-$mode';
ALTER DATABASE postgres SET app.secret_token = 'TOK-789-$mode';
ALTER SYSTEM SET primary_conninfo = 'host=x user=rep password=ConnSecret-$mode';
ALTER ROLE regress_carol_$mode SET work_mem = '7MB';
SQL
done
q -d postgres -q -c "ALTER SYSTEM RESET primary_conninfo" -c "ALTER DATABASE postgres RESET app.secret_token" >/dev/null
is "$(q -d postgres -c "SELECT count(*) FROM audit.event e LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
                         WHERE e.id > $MARK AND (e::text ~ 'S3cretPw|KEY-[0-9]|TOK-789|ConnSecret'
                                                 OR s.statement_text ~ 'S3cretPw|KEY-[0-9]|TOK-789|ConnSecret')")" "0" \
   "no secret in any event or statement text, with statement_literals redact or keep"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND detail -> 'setting' ->> 'value' = '[redacted]'")" "4" \
   "ALTER ROLE ... SET of a secret-looking setting stores [redacted] (both modes, with and without IN DATABASE)"
is "$(q -d postgres -c "SELECT string_agg(DISTINCT s.statement_text, ' | ') FROM audit.event e JOIN audit.statement s ON s.statement_id = e.statement_id
                         WHERE e.id > $MARK AND e.detail -> 'setting' ->> 'name' = 'work_mem'")" \
   "ALTER ROLE regress_carol_keep SET work_mem = '7MB'; | ALTER ROLE regress_carol_redact SET work_mem = ?;" \
   "other settings keep their value as the mode says"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND detail -> 'setting' ->> 'value' = '7MB'")" "2" \
   "... in detail too"


# --- session_replication_role = replica, by the routes that are no SET statement ---
mark
q -d postgres -q >/dev/null <<'SQL'
SELECT set_config('session_replication_role', 'replica', false);
INSERT INTO t VALUES (1001, 'unseen 1');
SQL
q -d postgres -q >/dev/null <<'SQL'
CREATE FUNCTION public.quiet_insert(i int) RETURNS void LANGUAGE sql SET session_replication_role = replica
    AS 'INSERT INTO public.t VALUES (i, ''unseen 2'')';
SELECT public.quiet_insert(1002);
SQL
PGOPTIONS="-c session_replication_role=replica" q -d postgres -c "INSERT INTO t VALUES (1003, 'unseen 3')" >/dev/null
q -d postgres -q -c "ALTER ROLE regress_app SET session_replication_role = replica" >/dev/null
q -d postgres -q -c "GRANT INSERT ON t TO regress_app" >/dev/null
q -d postgres -U regress_app -c "INSERT INTO t VALUES (1004, 'unseen 4')" >/dev/null
q -d postgres -q -c "ALTER ROLE regress_app RESET session_replication_role" >/dev/null
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND table_name = 't' AND class = 'data'")" "0" \
   "(in replica mode the four INSERTs were not captured: that is what must not go unseen)"
wait_for "SELECT count(*) >= 4 FROM audit.event WHERE id > $MARK AND action = 'SET session_replication_role'
          AND detail @> '{\"audit_protection_off\": true}'" 60
is "$(q -d postgres -c "SELECT string_agg(DISTINCT detail->>'via', ' | ' ORDER BY detail->>'via') FROM audit.event
                         WHERE id > $MARK AND action = 'SET session_replication_role' AND detail @> '{\"audit_protection_off\": true}'")" \
   "a function's SET clause | connection options or ALTER ROLE/DATABASE ... SET | set_config()" \
   "replica mode by set_config(), a function's SET clause, PGOPTIONS and ALTER ROLE ... SET: each recorded as critical"
is "$(q -d postgres -c "SELECT count(DISTINCT db_user) FROM audit.event WHERE id > $MARK AND action = 'SET session_replication_role'
                         AND detail->>'via' LIKE 'connection%'")" "2" "... with who (the superuser's PGOPTIONS, the role's ALTER ROLE default)"


# SET itself has its event (ddl_capture.c), written in its transaction; the
# statements our code runs while SET runs (the statement store's SPI) must
# not report it once more as a set_config() through the queue.
mark
q -d postgres -q -c "SET session_replication_role = replica" -c "SET session_replication_role = origin" >/dev/null
q -d postgres -q -c "CREATE ROLE regress_queue_marker" -c "DROP ROLE regress_queue_marker" >/dev/null
# the queue is first in, first out: once this later login's LOGOUT is written, anything the SET queued is too
q -d postgres -c "SELECT 1" >/dev/null
wait_for "SELECT count(*) >= 2 FROM audit.event WHERE id > $MARK AND class = 'auth' AND action = 'LOGOUT'" 60
is "$(q -d postgres -c "SELECT string_agg(coalesce(detail->>'via', 'SET statement'), ', ' ORDER BY id) FROM audit.event
                         WHERE id > $MARK AND action = 'SET session_replication_role'")" "SET statement" \
   "SET session_replication_role is recorded once, as the SET it is"

done_testing
