#!/usr/bin/env bash
# Tamper evidence: the hash chains stay correct under concurrent writers,
# savepoints, rollbacks, prepared transactions, several databases, dump and
# restore, an upgrade from 1.0 and pruning; audit.verify() pinpoints an
# edited, deleted or inserted event, a cut-off tail and a rewritten chain.
source "$(dirname "$0")/tap.inc"
source "$(dirname "$0")/../../scripts/pgenv.sh"
DIR=${AUDIT_TEST_TMP:-/tmp}/integrity
PORT=$(( ${PGPORT:-5497} + 70 ))
rm -rf "$DIR"
trap 'finish_clusters "$DIR"' EXIT
watch_log "$DIR/server.log"
pg_start "$DIR" "$PORT" "max_prepared_transactions = 5" "audit_ext.chain_checkpoint_interval = 1" \
    "audit_ext.maintenance_interval = 2" \
    || { echo "not ok - could not start a cluster in $DIR"; exit 1; }

# As superuser, with the append-only protection switched off for the
# transaction ($UNPROTECT), run SQL that tampers with the trail, then report
# what audit.verify() says; the transaction is rolled back.
# (the documented superuser path, README "Append-only"; DISABLE TRIGGER is
# transactional, so the rollback restores the protection)
UNPROTECT="ALTER TABLE audit.event DISABLE TRIGGER audit_append_only; SET LOCAL audit_ext.protect_trail = off"
REPROTECT="ALTER TABLE audit.event ENABLE ALWAYS TRIGGER audit_append_only"
tamper() {   # db sql
    q -q -d "$1" -c "BEGIN" -c "$UNPROTECT" -c "$2" \
      -c "SELECT first_broken_event_id || '|' || problem FROM audit.verify()" -c "ROLLBACK" 2>&1 | grep -v '^$' | tail -1
}
tamper_id() { tamper "$@" | cut -d'|' -f1; }

q -d postgres >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE acct (id int PRIMARY KEY, bal int, note text);
INSERT INTO acct SELECT g, 0, 'n' FROM generate_series(1, 20) g;
CREATE TABLE log_line (id bigserial PRIMARY KEY, msg text);
SELECT audit.enable('acct');
SELECT audit.enable('log_line');
CREATE FUNCTION risky(i int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE acct SET note = 'inner' WHERE id = i;
        IF i % 2 = 0 THEN RAISE EXCEPTION 'undo'; END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
END $$;
SQL

# 1. Concurrent writers: savepoints, exception blocks, rollbacks.
cat > "$DIR/load.sql" <<'SQL'
\set a random(1, 20)
\set b random(1, 20)
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = :a;
SAVEPOINT s;
INSERT INTO log_line (msg) VALUES ('rolled back');
ROLLBACK TO s;
INSERT INTO log_line (msg) VALUES ('kept');
SELECT risky(:a);
END;
BEGIN;
UPDATE acct SET bal = bal - 1 WHERE id = :b;
ROLLBACK;
SQL
pgbench -n -c 4 -j 2 -T 4 -f "$DIR/load.sql" postgres >"$DIR/pgbench.log" 2>&1
is "$(grep -c 'number of failed transactions: 0' "$DIR/pgbench.log")" "1" "concurrent load ran without failures" "$(tail -40 "$DIR/pgbench.log")"
# one snapshot for the walk and the count: the worker keeps writing login/logout events
is "$(q -d postgres -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
        -c "SELECT verified, breaks, unverifiable_links, events = (SELECT count(*) FROM audit.event) FROM audit.verify()" \
        -c "COMMIT" | grep '|')" \
   "t|0|0|t" "4 concurrent writers with savepoints and exception blocks: every chain verifies"
is "$(q -d postgres -c "SELECT count(*) > 4 AND count(*) = count(DISTINCT (class, chain_lane)) FROM
        (SELECT class, chain_lane, count(*) AS n, max(chain_seq) AS m FROM audit.event GROUP BY 1, 2) l WHERE n = m")" "t" \
   "each chain is gapless: positions 1..n"

# 2. Prepared transactions end their chains; committed or rolled back, the rest verifies.
q -d postgres >/dev/null <<'SQL'
BEGIN; UPDATE acct SET bal = 100 WHERE id = 1; PREPARE TRANSACTION 'p1';
UPDATE acct SET bal = 101 WHERE id = 2;
COMMIT PREPARED 'p1';
BEGIN; UPDATE acct SET bal = 102 WHERE id = 3; PREPARE TRANSACTION 'p2';
UPDATE acct SET bal = 103 WHERE id = 4;
ROLLBACK PREPARED 'p2';
UPDATE acct SET bal = 104 WHERE id = 5;
SQL
is "$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" \
   "COMMIT PREPARED and ROLLBACK PREPARED leave verifiable chains"

# 3. A second database: its own store, its own chains.
q -d postgres -c "CREATE DATABASE other" >/dev/null
q -d other >/dev/null <<'SQL'
CREATE EXTENSION audit_ext;
CREATE TABLE t (id int PRIMARY KEY);
SELECT audit.enable('t');
INSERT INTO t SELECT generate_series(1, 50);
SQL
q -d postgres -c "UPDATE acct SET bal = 7 WHERE id = 6" >/dev/null
q -d other -c "DELETE FROM t WHERE id <= 10" >/dev/null
is "$(q -d other -c "SELECT verified, breaks FROM audit.verify()")|$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" \
   "t|0|t|0" "sessions alternating between databases: both stores verify"

# 4. Checkpoints: the worker records the heads (and logs them).
last=$(q -d postgres -c "SELECT max(id) FROM audit.event WHERE class = 'data'")
wait_for "SELECT EXISTS (SELECT FROM audit.chain_checkpoint WHERE event_id = $last)" 60
is "$?" "0" "the worker checkpoints the newest chain head within seconds"
is "$(grep -c "audit_ext chain checkpoint: class data" "$DIR/server.log" | awk '{print ($1 > 0)}')" "1" \
   "checkpoints are copied to the server log"
other_last=$(q -d other -c "SELECT max(id) FROM audit.event WHERE class = 'data'")
wait_for "SELECT EXISTS (SELECT FROM audit.chain_checkpoint WHERE event_id = $other_last)" 60 other
is "$(q -d other -c "SELECT EXISTS (SELECT FROM audit.chain_checkpoint WHERE event_id = $other_last)")" "t" \
   "the maintenance worker checkpoints the chains of another database"

# 5. Tampering is pinpointed.
victim=$(q -d postgres -c "SELECT id FROM audit.event WHERE class = 'data' AND action = 'UPDATE' ORDER BY id LIMIT 1 OFFSET 10")
is "$(tamper_id postgres "UPDATE audit.event SET new_data = '{\"bal\": 1000000}' WHERE id = $victim")" "$victim" \
   "an edited event is pinpointed"
is "$(tamper postgres "UPDATE audit.event SET actor = 'someone else' WHERE id = $victim" | cut -d'|' -f2)" \
   "event $victim does not match its hash: it was edited after it was written" "with a clear message"
next=$(q -d postgres -c "SELECT min(e2.id) FROM audit.event e1 JOIN audit.event e2
          ON e2.class = e1.class AND e2.chain_lane = e1.chain_lane AND e2.chain_seq = e1.chain_seq + 1 WHERE e1.id = $victim")
is "$(tamper_id postgres "DELETE FROM audit.event WHERE id = $victim")" "$next" \
   "a deleted event: the next event of its chain is reported"
is "$(tamper postgres "DELETE FROM audit.event WHERE id = $victim" | grep -c 'missing before event')" "1" \
   "as missing events"
is "$(tamper_id postgres "INSERT INTO audit.event (id, event_time, class, action) VALUES (999999, now(), 'data', 'DELETE')")" "999999" \
   "an event inserted without a hash is pinpointed"
is "$(tamper_id postgres "INSERT INTO audit.event SELECT (jsonb_populate_record(e, '{\"id\": 999998}')).* FROM audit.event e WHERE id = $victim")" "999998" \
   "a copy of an event (a repeated chain position) is pinpointed"
is "$(tamper_id postgres "DELETE FROM audit.event WHERE id = $last")" "$last" \
   "deleting the newest event of a chain is caught by the checkpoint"
# Rewriting an event and recomputing its hash (what a superuser with the
# source can do) keeps the chain consistent; the checkpoint still differs.
is "$(tamper postgres "UPDATE audit.event e SET new_data = '{\"bal\": 5}',
                          hash = audit.event_hash(jsonb_populate_record(e, '{\"new_data\": {\"bal\": 5}}'),
                                                  coalesce((SELECT p.hash FROM audit.event p WHERE p.class = e.class
                                                      AND p.chain_lane = e.chain_lane AND p.chain_seq = e.chain_seq - 1),
                                                      decode(repeat('00', 32), 'hex')))
                        WHERE id = $last" | grep -c "differs from the chain checkpoint")" "1" \
   "an edit with a recomputed hash is caught by the checkpoint"
is "$(q -d postgres -c "SELECT verified FROM audit.verify()")" "t" "the rolled-back tampering left the trail intact"
is "$(q -d postgres -c "SELECT audit.event_hash(e, coalesce((SELECT p.hash FROM audit.event p WHERE p.class = e.class
          AND p.chain_lane = e.chain_lane AND p.chain_seq = e.chain_seq - 1), decode(repeat('00', 32), 'hex'))) = e.hash
          FROM audit.event e WHERE id = $victim")" "t" "audit.event_hash() reproduces a stored hash"

# The hash is the SHA-256 of the serialisation documented in docs/integrity.md,
# recomputed here without audit_ext: PostgreSQL's own sha256() over the bytes
# of a TRUNCATE event (no jsonb, inet or array value, whose binary forms SQL
# cannot produce; a Unix-socket connection has no client address).  It has a
# table_identity and a risk (1.6), so the form is "AUD2" with the three added
# columns (context NULL).
q -d postgres -c "CREATE TABLE hash_probe (id int PRIMARY KEY)" -c "SELECT audit.enable('hash_probe')" \
  -c "TRUNCATE hash_probe" >/dev/null
is "$(q -q -d postgres <<'SQL'
CREATE FUNCTION pg_temp.f(b bytea) RETURNS bytea LANGUAGE sql
    AS $$ SELECT CASE WHEN b IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea || b END $$;
CREATE FUNCTION pg_temp.t(x text) RETURNS bytea LANGUAGE sql
    AS $$ SELECT int4send(octet_length(x)) || textsend(x) $$;
SELECT e.hash = sha256('AUD2'::bytea
         || coalesce(p.hash, decode(repeat('00', 32), 'hex'))
         || int8send(e.chain_lane) || int8send(e.chain_seq)
         || pg_temp.f(int8send(e.id)) || pg_temp.f(timestamptz_send(e.event_time))
         || pg_temp.f(pg_temp.t(e.class)) || pg_temp.f(pg_temp.t(e.action)) || pg_temp.f(pg_temp.t(e.status))
         || pg_temp.f(pg_temp.t(e.db_user)) || pg_temp.f(pg_temp.t(e.session_user))
         || pg_temp.f(pg_temp.t(e.actor)) || '\x00'::bytea || pg_temp.f(pg_temp.t(e.application_name))
         || pg_temp.f(int4send(e.backend_pid)) || pg_temp.f(int8send(e.txid))
         || pg_temp.f(int8send(e.statement_id)) || pg_temp.f(int4send(e.statement_seq))
         || pg_temp.f(pg_temp.t(e.schema_name)) || pg_temp.f(pg_temp.t(e.table_name))
         || '\x0000000000'::bytea
         || pg_temp.f(int8send(e.table_identity)) || '\x00'::bytea || pg_temp.f(pg_temp.t(e.risk)))
FROM audit.event e
LEFT JOIN audit.event p ON p.class = e.class AND p.chain_lane = e.chain_lane AND p.chain_seq = e.chain_seq - 1
WHERE e.table_name = 'hash_probe' AND e.action = 'TRUNCATE' AND e.client_addr IS NULL
  AND e.record_id IS NULL AND e.old_data IS NULL AND e.new_data IS NULL
  AND e.changed_columns IS NULL AND e.detail IS NULL
  AND e.table_identity IS NOT NULL AND e.context IS NULL AND e.risk IS NOT NULL;
SQL
)" "t" "a stored hash equals PostgreSQL's sha256() of the documented serialisation"

# 6. A time window verifies what lies inside it.
is "$(q -d postgres -c "SELECT verified, events > 0 FROM audit.verify(now() - interval '1 hour', now() + interval '1 hour')")" "t|t" \
   "verify over a time window"

# 7. Who may verify.
q -d postgres >/dev/null <<'SQL'
CREATE ROLE nobody_special LOGIN;
CREATE ROLE auditor LOGIN IN ROLE audit_reader;
SQL
is "$(q -d postgres -U nobody_special -c "SELECT verified FROM audit.verify()" 2>&1 | grep -o 'has no access to the security audit')" \
   "has no access to the security audit" "a role without audit access is refused"
is "$(q -d postgres -U auditor -c "SELECT verified FROM audit.verify()")" "t" "audit_reader may verify"

# 8. Pruning by hand is refused: audit.prune() is the only path that drops
# events (it archives, anchors the chains and records a PRUNE event).
# test/e2e/tamper.sh prunes a month captured under a clock 400 days back and
# checks the anchors, the chain after them, and a dump and restore.
part=$(q -d postgres -c "SELECT tableoid::regclass FROM audit.event WHERE class = 'data' LIMIT 1")
is "$(q -d postgres -c "SELECT audit.chain_record_pruned('$part')" 2>&1 | grep -o 'may only be called by audit.prune()')" \
   "may only be called by audit.prune()" "recording chain heads by hand is refused"
is "$(q -d postgres -c "SELECT verified, breaks FROM audit.verify()")" "t|0" "the trail verifies"

# 9. Dump and restore keep the chains.
q -d postgres -c "CREATE DATABASE restored" >/dev/null
pg_dump -Fc -d postgres -f "$DIR/dump" 2>"$DIR/restore.err" && pg_restore -d restored "$DIR/dump" 2>>"$DIR/restore.err"
rc=$?
is "$rc|$(wc -c <"$DIR/restore.err")|$(q -d restored -c "SELECT verified, breaks, events > 0 FROM audit.verify()" 2>&1)" "0|0|t|0|t" \
   "pg_dump and pg_restore succeed without a message; the restored trail verifies" "$(head -40 "$DIR/restore.err")"

# 10. Upgrade from 1.0: old events are counted as legacy, new ones chained.
q -d postgres -c "CREATE DATABASE upgraded" >/dev/null
q -d upgraded >/dev/null <<'SQL'
CREATE EXTENSION audit_ext VERSION '1.0';
CREATE TABLE t (id int PRIMARY KEY);
SELECT audit.enable('t');
INSERT INTO t SELECT generate_series(1, 10);
ALTER EXTENSION audit_ext UPDATE;
INSERT INTO t SELECT generate_series(11, 15);
SQL
is "$(q -d upgraded -c "SELECT verified, legacy_events > 10, events - legacy_events >= 5 FROM audit.verify()")" "t|t|t" \
   "after ALTER EXTENSION UPDATE: 1.0 events are legacy, new events are chained"
is "$(tamper upgraded "INSERT INTO audit.event (event_time, class, action) VALUES (now(), 'data', 'DELETE')" | grep -c 'no valid chain hash')" "1" \
   "but an event without a hash inserted after the upgrade is a break"

done_testing
