#!/usr/bin/env bash
# Lane starts are bound to checkpoint rounds (issue 18 B): an event a
# superuser inserts as position 1 of a chain that never existed, with a hash
# recomputed by audit.event_hash(), is reported by audit.verify() once a
# round has passed it; a checkpoint row forged to cover it breaks the chain
# of rounds.  No false alarm: concurrent sessions that connect and
# disconnect, a transaction that stays open across rounds, prepared
# transactions that commit or roll back.  Lanes lost in a crash are counted
# as unconfirmed, not as breaks.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/lanes
PORT=$(( ${PGPORT:-5497} + 99 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
# Rounds only when the test asks for them (interval 0, maintenance an hour
# away after its first round), so each check knows which rounds exist.
pg_start "$DIR" "$PORT" "audit_ext.database = 'postgres'" "audit_ext.chain_checkpoint_interval = 0" \
    "audit_ext.maintenance_interval = 3600" "max_prepared_transactions = 5" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT audit.enable('t');
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 20) g;
SQL
# the maintenance worker's first round runs at its start: let it pass
wait_for "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type LIKE 'audit_ext maintenance%' AND datname = 'postgres' AND state = 'active')" 30
verify() { q -d postgres -c "SELECT verified || '|' || breaks || '|' || unconfirmed_chains || '|' || coalesce(problem, '') FROM audit.verify()"; }
round() { q -d "${1:-postgres}" -c "SELECT audit.chain_checkpoint()" >/dev/null; }

round
is "$(verify)" "true|0|0|" "a trail written by audit_ext verifies after a round"
is "$(q -d postgres -c "SELECT count(*) > 0 AND bool_and(hash = audit.chain_round_digest(round_id, horizon, shm_epoch, prev_hash))
                          FROM audit.chain_round")" "t" "rounds are recorded, each with its digest"
is "$(grep -c 'audit_ext chain round: database' "$DIR/server.log" | awk '$1 > 0 {print "yes"}')" "yes" "each round is also written to the server log"

# --- the forgery: a copy of the last data event, edited, as position 1 of a new lane
q -d postgres -q >/dev/null <<'SQL'
SET client_min_messages = warning;
ALTER TABLE audit.event DISABLE TRIGGER USER;
CREATE TABLE forged AS SELECT * FROM audit.event WHERE class = 'data' ORDER BY id DESC LIMIT 1;
UPDATE forged SET id = nextval('audit.event_id_seq'), chain_lane = 4242, chain_seq = 1,
                  new_data = '{"id": 99, "v": "forged"}', hash = NULL;
UPDATE forged f SET hash = audit.event_hash(ROW(f.*)::audit.event, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
INSERT INTO audit.event SELECT * FROM forged;
ALTER TABLE audit.event ENABLE TRIGGER USER;
SQL
forged_id=$(q -d postgres -c "SELECT id FROM forged")
is "$(q -d postgres -c "SELECT audit.event_hash(e, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) = e.hash FROM audit.event e WHERE id = $forged_id")" \
   "t" "the forged event carries a correct hash for position 1"
is "$(verify)" "true|0|0|" "before the next round, nothing can tell it from a lane just started"
round
out=$(verify)
is "$(cut -d'|' -f1-2 <<<"$out")" "false|1" "after a round, audit.verify() reports the forged lane" "$out"
is "$(grep -c "starts at event $forged_id, which a checkpoint round should have recorded" <<<"$out")" "1" "... naming its first event" "$out"

# covering it with a checkpoint row: in the last round (digest no longer
# matches) or in none (does not bind)
last_round=$(q -d postgres -c "SELECT max(round_id) FROM audit.chain_round")
q -d postgres -q -c "INSERT INTO audit.chain_checkpoint (class, chain_lane, chain_seq, event_id, hash, round_id)
                     SELECT class, chain_lane, chain_seq, id, hash, $last_round FROM forged" >/dev/null
out=$(verify)
is "$(grep -c "checkpoint round $last_round does not match its hash" <<<"$out")" "1" "a checkpoint row added to a round breaks the chain of rounds" "$out"

# --- no false alarms: a second cluster state, built from a fresh database
q -d postgres -c "CREATE DATABASE busy" >/dev/null
q -d busy -q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT audit.enable('t');
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g;
SQL
vbusy() { q -d busy -c "SELECT verified || '|' || breaks || '|' || unconfirmed_chains || '|' || coalesce(problem, '') FROM audit.verify()"; }

is "$(vbusy)" "true|0|0|" "baseline in the second database"

# sessions that connect, write and leave while rounds are taken
cat > "$DIR/write.sql" <<'SQL'
\set id random(1, 1000)
UPDATE t SET v = md5(random()::text) WHERE id = :id;
SQL
cat > "$DIR/round.sql" <<'SQL'
SELECT audit.chain_checkpoint();
SQL
chown postgres: "$DIR"/*.sql
(cd / && runuser -u postgres -- "$PGBIN/pgbench" -h "$DIR" -p "$PORT" -n -C -c 4 -j 2 -T 6 -f "$DIR/write.sql" busy >"$DIR/pgbench.out" 2>&1) &
bench=$!
(cd / && runuser -u postgres -- "$PGBIN/pgbench" -h "$DIR" -p "$PORT" -n -c 1 -T 6 -f "$DIR/round.sql" busy >"$DIR/rounds.out" 2>&1) &
rounds=$!
wait $bench; rc1=$?
wait $rounds; rc2=$?
is "$rc1$rc2" "00" "pgbench with reconnecting sessions and a session taking rounds both ran" "$(cat "$DIR/pgbench.out" "$DIR/rounds.out")"
q -d busy -c "SELECT audit.chain_checkpoint()" >/dev/null
out=$(vbusy)
is "$out" "true|0|0|" "no lane written by audit_ext is reported, however rounds and sessions interleave" \
   "$out
$(q -d busy -c "SELECT count(*) || ' rounds, ' || count(DISTINCT shm_epoch) || ' epochs' FROM audit.chain_round")"

# a transaction still open across rounds: its first ids hold the horizon back
coproc LONG { psql -X -q -At -d busy 2>&1; }
long_pid=$LONG_PID   # bash unsets LONG_PID as soon as the coprocess ends
echo "BEGIN; UPDATE t SET v = 'long' WHERE id <= 5; GRANT SELECT ON t TO PUBLIC;" >&"${LONG[1]}"
echo '\echo ready' >&"${LONG[1]}"
read -r -t 60 line <&"${LONG[0]}"
is "$line" "ready" "a session holds a transaction that has written events"
round busy; round busy
out=$(vbusy)
is "$out" "true|0|0|" "rounds taken while it is open: no break" "$out"
echo "COMMIT;" >&"${LONG[1]}"
echo '\echo committed' >&"${LONG[1]}"
read -r -t 60 line <&"${LONG[0]}"
is "$line" "committed" "the long transaction commits after the rounds"
echo '\q' >&"${LONG[1]}"
wait "$long_pid" 2>/dev/null || true
out=$(vbusy)
is "$out" "true|0|0|" "verified right after the commit, before any new round: the rounds taken meanwhile did not claim its ids" "$out"
round busy
out=$(vbusy)
is "$out" "true|0|0|" "its lanes, started below the horizon of earlier rounds, are bound by the next round" "$out"

# prepared transactions: commit one, roll one back, rounds in between (each
# grants on its own table: two prepared grants on one would wait on each other)
q -d busy -q >/dev/null <<'SQL'
CREATE TABLE u (id int);
BEGIN; UPDATE t SET v = 'p1' WHERE id = 1; GRANT SELECT ON t TO audit_reader; PREPARE TRANSACTION 'p1';
SELECT audit.chain_checkpoint();
BEGIN; UPDATE t SET v = 'p2' WHERE id = 2; GRANT SELECT ON u TO audit_reader; PREPARE TRANSACTION 'p2';
SELECT audit.chain_checkpoint();
COMMIT PREPARED 'p1';
ROLLBACK PREPARED 'p2';
SELECT audit.chain_checkpoint();
UPDATE t SET v = 'after' WHERE id = 3;
SELECT audit.chain_checkpoint();
SQL
is "$(q -d busy -c "SELECT count(*) FILTER (WHERE in_doubt) > 0 FROM audit.chain_checkpoint")" "t" "heads of prepared transactions are recorded, in doubt"
out=$(vbusy)
is "$out" "true|0|0|" "a prepared transaction committed or rolled back is no break" "$out"

# --- a crash loses the lanes written since the last round: unconfirmed, not broken
q -d busy -q >/dev/null <<'SQL'
SELECT audit.chain_checkpoint();
SQL
psql -X -q -d busy -c "GRANT SELECT ON t TO audit_admin" -c "UPDATE t SET v = 'lost' WHERE id = 7" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null) \
    || { echo "not ok - could not restart after the crash"; exit 1; }
q -d busy -c "SELECT audit.chain_checkpoint()" >/dev/null
out=$(vbusy)
is "$(cut -d'|' -f1-2 <<<"$out")" "true|0" "after a crash, the lanes lost from shared memory are no break" "$out"
is "$(cut -d'|' -f3 <<<"$out" | awk '$1 >= 1 {print "yes"}')" "yes" "... but are counted in unconfirmed_chains" "$out"
is "$(q -d busy -c "SELECT count(DISTINCT shm_epoch) FROM audit.chain_round")" "2" "the round after the restart records the new shared memory"

# append-only like the rest of the chain
out=$(q -d busy -c "DELETE FROM audit.chain_round" 2>&1)
is "$(grep -c '42501\|may not\|refuse\|append-only' <<<"$out" | awk '$1 > 0 {print "refused"}')" "refused" "rounds cannot be deleted, by a superuser either" "$out"

done_testing
