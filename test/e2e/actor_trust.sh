#!/usr/bin/env bash
# Who may name the actor (issue 18 D): a blank actor is refused, an actor
# that comes from ALTER ROLE ... SET does not satisfy require_actor, a change
# of actor within a session by a role not trusted with it is recorded (auth,
# ACTOR CHANGE), and with audit_ext.actor_roles set only those roles may
# name someone other than themselves.  Over TCP with scram passwords.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/actor_trust
PORT=$(( ${PGPORT:-5497} + 65 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start_scram "$DIR" "$PORT" "audit_ext.database = 'postgres'" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

as() {   # role, then psql arguments
    local role=$1
    shift
    PGPASSWORD="pw-$role" psql -X -At -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$PORT dbname=postgres user=$role" "$@"
}
sqlstate() {   # role, psql args: the SQLSTATE of the error, or "ok"
    local role=$1 out
    shift
    out=$(PGPASSWORD="pw-$role" psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
          "host=127.0.0.1 port=$PORT dbname=postgres user=$role" "$@" 2>&1) && { echo ok; return; }
    echo "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-
}
mark() { MARK=$(q -d postgres -c "SELECT coalesce(max(id), 0) FROM audit.event"); }

q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE ROLE regress_app LOGIN PASSWORD 'pw-regress_app';
CREATE ROLE regress_pool LOGIN PASSWORD 'pw-regress_pool';
CREATE TABLE orders (id int PRIMARY KEY, item text);
GRANT ALL ON orders TO regress_app, regress_pool;
SELECT audit.enable('orders');
SQL

# --- blank actors ---------------------------------------------------------------
is "$(sqlstate regress_app -c "SET audit_ext.actor = ' '")" "22023" "a blank actor is refused (22023)"
is "$(sqlstate regress_app -c "SELECT set_config('audit_ext.actor', E' \\t ', false)")" "22023" "... also through set_config"
is "$(sqlstate regress_app -c "SET audit_ext.actor = ''")" "ok" "'' (no actor) is allowed"

# --- require_actor is not satisfied by a role's default ---------------------------
q -d postgres -q -c "ALTER ROLE regress_app SET audit_ext.require_actor = on" -c "ALTER ROLE regress_app SET audit_ext.actor = 'regress_app'" >/dev/null
is "$(sqlstate regress_app -c "INSERT INTO orders VALUES (1, 'a')")" "28000" \
   "an actor from ALTER ROLE ... SET does not satisfy require_actor"
is "$(sqlstate regress_app -c "BEGIN" -c "SET LOCAL audit_ext.actor = 'jane@corp'" -c "INSERT INTO orders VALUES (1, 'a')" -c "COMMIT")" "ok" \
   "an actor the session sets does"
q -d postgres -q -c "ALTER ROLE regress_app RESET audit_ext.require_actor" -c "ALTER ROLE regress_app RESET audit_ext.actor" >/dev/null

# --- a change of actor within a session is recorded ---------------------------------
mark
as regress_app -q -c "SET audit_ext.actor = 'alice'" -c "INSERT INTO orders VALUES (2, 'b')" \
   -c "SET audit_ext.actor = 'bob'" -c "INSERT INTO orders VALUES (3, 'c')" -c "SET audit_ext.actor = 'bob'" >/dev/null
wait_for "SELECT count(*) = 1 FROM audit.event WHERE id > $MARK AND class = 'auth' AND action = 'ACTOR CHANGE'" 60
is "$?" "0" "alice -> bob in one session is recorded once (setting the same actor again is not a change)"
is "$(q -d postgres -c "SELECT db_user, actor, detail->>'from', detail->>'to' FROM audit.event WHERE id > $MARK AND action = 'ACTOR CHANGE'")" \
   "regress_app|bob|alice|bob" "with the role, the old and the new actor"

# --- audit_ext.actor_roles ------------------------------------------------------------
q -d postgres -q -c "ALTER SYSTEM SET audit_ext.actor_roles = 'regress_pool'" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT current_setting('audit_ext.actor_roles') = 'regress_pool'" 60
is "$(sqlstate regress_app -c "SET audit_ext.actor = 'mallory'")" "42501" "a role not listed cannot name someone else (42501)"
is "$(sqlstate regress_app -c "SET audit_ext.actor = 'regress_app'")" "ok" "... but may name itself"
is "$(PGOPTIONS='-c audit_ext.actor=mallory' as regress_app -c "SELECT 1" 2>&1 | grep -o 'FATAL:  invalid value for parameter "audit_ext.actor"')" \
   'FATAL:  invalid value for parameter "audit_ext.actor"' "... not through connection options either"
mark
is "$(sqlstate regress_pool -c "SET audit_ext.actor = 'alice'" -c "INSERT INTO orders VALUES (4, 'd')" -c "SET audit_ext.actor = 'bob'" -c "INSERT INTO orders VALUES (5, 'e')")" "ok" \
   "a listed role names anyone"
is "$(q -d postgres -c "SELECT string_agg(actor, ',' ORDER BY id) FROM audit.event WHERE id > $MARK AND class = 'data'")" "alice,bob" \
   "its events carry the actors it named"
# the queue is first in, first out: once the pool session's LOGOUT is
# written, an ACTOR CHANGE it had queued before would be written too
wait_for "SELECT count(*) >= 1 FROM audit.event WHERE id > $MARK AND class = 'auth' AND action = 'LOGOUT' AND db_user = 'regress_pool'" 60
is "$?" "0" "(the pool session's LOGOUT is written)"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE id > $MARK AND action = 'ACTOR CHANGE'")" "0" \
   "a listed role's changes of actor are not recorded (it is trusted to switch end users)"
q -d postgres -q -c "ALTER SYSTEM RESET audit_ext.actor_roles" -c "SELECT pg_reload_conf()" >/dev/null

done_testing
