#!/usr/bin/env bash
# The application's context behind PgBouncer in transaction pooling mode
# (issue 20): two clients share one server connection (default_pool_size = 1)
# and run interleaved transactions; each event carries the context of the
# transaction that captured it and never the other client's, including after
# a ROLLBACK and in a transaction that sets none.  Every event is asserted.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/pgbouncer
PORT=$(( ${PGPORT:-5497} + 121 ))
BPORT=$(( ${PGPORT:-5497} + 122 ))
PGB=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
rm -rf "$DIR"
stop_bouncer() { [ -f "$DIR/pgb/pgbouncer.pid" ] && kill "$(cat "$DIR/pgb/pgbouncer.pid")" 2>/dev/null; sleep 0.2; }
trap 'stop_bouncer; finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
mkdir -p "$DIR"
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE ROLE regress_web LOGIN IN ROLE audit_writer;
CREATE TABLE orders (id serial PRIMARY KEY, who text);
GRANT ALL ON orders, orders_id_seq TO regress_web;
SELECT audit.enable('orders');
SQL

# PgBouncer (Debian's package), transaction pooling, one server connection
mkdir -p "$DIR/pgb"
cat > "$DIR/pgb/pgbouncer.ini" <<INI
[databases]
postgres = host=$DIR port=$PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = trust
auth_file = $DIR/pgb/users.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
logfile = $DIR/pgb/pgbouncer.log
pidfile = $DIR/pgb/pgbouncer.pid
INI
echo '"regress_web" ""' > "$DIR/pgb/users.txt"
chown -R postgres: "$DIR/pgb"
if ! (cd / && runuser -u postgres -- "$PGB" -d "$DIR/pgb/pgbouncer.ini"); then
    fail "pgbouncer starts" "$(cat "$DIR/pgb/pgbouncer.log" 2>/dev/null)"; done_testing; exit 1
fi
for _ in $(seq 50); do psql -X -At -h 127.0.0.1 -p "$BPORT" -U regress_web -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

sess_open A -h 127.0.0.1 -p "$BPORT" -U regress_web -d postgres
sess_open B -h 127.0.0.1 -p "$BPORT" -U regress_web -d postgres
ins() { echo "INSERT INTO orders (who) VALUES ('$1'); SELECT audit.log_event('VIEW', 'Order', jsonb_build_object('who', '$1'));"; }

# 1. A sets its context for its transaction; B's transaction waits for the
#    one server connection, then runs after A's commit on the same backend
sess_run A "BEGIN; SELECT audit.set_context(actor => 'alice', client_ip => '10.0.0.1', session_id => 'sA', tenant => 'ta'); $(ins A1)"
sess_send B "BEGIN; $(ins B1) COMMIT;"
sleep 0.5
sess_run A "COMMIT;"
sess_wait B
# 2. B sets its own; then A runs a transaction that sets none
sess_run B "BEGIN; SELECT audit.set_context(actor => 'bob', client_ip => '10.0.0.2', session_id => 'sB', tenant => 'tb'); $(ins B2) COMMIT;"
sess_run A "BEGIN; $(ins A2) COMMIT;"
# 3. A sets one and rolls back; B's next transaction has none
sess_run A "BEGIN; SELECT audit.set_context(session_id => 'sA-rolled-back'); $(ins A3) ROLLBACK;"
sess_run B "BEGIN; $(ins B3) COMMIT;"
# 4. autocommit statements (each its own transaction): no context leaks in
sess_run A "SELECT audit.set_context(session_id => 'sA-single');"
sess_run B "$(ins B4)"
# 5. both set theirs, interleaved: A's transaction open while B queues
sess_run A "BEGIN; SELECT audit.set_context(actor => 'alice', session_id => 'sA5', tenant => 'ta'); $(ins A5)"
sess_send B "BEGIN; SELECT audit.set_context(actor => 'bob', session_id => 'sB5', tenant => 'tb'); $(ins B5) COMMIT;"
sleep 0.5
sess_run A "$(ins A5b) COMMIT;"
sess_wait B
sess_close A
sess_close B

is "$(sess_out A | grep -c ERROR)$(sess_out B | grep -c ERROR)" "00" "no statement failed" "$(sess_out A; sess_out B)"
is "$(q -d postgres -c "SELECT count(DISTINCT backend_pid) FROM audit.event WHERE class IN ('data', 'app')")" "1" \
   "all transactions ran on one server connection"
# every event: who wrote it, with which context and actor
got=$(q -d postgres -c "SELECT string_agg(format('%s/%s:%s:%s:%s:%s', class, coalesce(new_data ->> 'who', record_id ->> 'who'),
                                                  coalesce(context ->> 'session_id', '-'), coalesce(context ->> 'tenant', '-'),
                                                  coalesce(context ->> 'client_ip', '-'), actor), ' ' ORDER BY id)
                          FROM audit.event WHERE class IN ('data', 'app')")
is "$got" "data/A1:sA:ta:10.0.0.1:alice app/A1:sA:ta:10.0.0.1:alice data/B1:-:-:-:regress_web app/B1:-:-:-:regress_web data/B2:sB:tb:10.0.0.2:bob app/B2:sB:tb:10.0.0.2:bob data/A2:-:-:-:regress_web app/A2:-:-:-:regress_web data/B3:-:-:-:regress_web app/B3:-:-:-:regress_web data/B4:-:-:-:regress_web app/B4:-:-:-:regress_web data/A5:sA5:ta:-:alice app/A5:sA5:ta:-:alice data/A5b:sA5:ta:-:alice app/A5b:sA5:ta:-:alice data/B5:sB5:tb:-:bob app/B5:sB5:tb:-:bob" \
   "every event has its own transaction's context (and actor), never the other client's (B5 waited for A's transaction)"
is "$(q -d postgres -c "SELECT count(*) FROM audit.event WHERE context ->> 'session_id' LIKE 'sA-%'")" "0" \
   "a rolled-back context and an autocommit one are recorded nowhere"
is "$(q -d postgres -c "SELECT string_agg(DISTINCT e.id::text, ',') IS NOT NULL FROM audit.search(session_id => 'sB5') e")" "t" \
   "audit.search finds the events by session_id"
is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "the trail verifies (contexts are covered by the chain)"
done_testing
