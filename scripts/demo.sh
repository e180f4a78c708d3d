#!/usr/bin/env bash
# Demo: build and install audit_ext, start a throwaway cluster (own data
# directory, port ${AUDIT_DEMO_PORT:-5496}, loopback only), audit a small
# schema, make changes as two actors, and print the audit trail; then read
# auditing and alerts, received by the example listener
# (docs/examples/audit_listen), tamper evidence and retention; last, a
# rendered report and the dashboard written to files
# (${AUDIT_DEMO_REPORTS:-/tmp/audit_demo_reports}, kept) to open in a browser.
# The two tables show the two capture modes (issue 22): customers by trigger
# (events written with the change), orders from the WAL (written by the
# capture worker after the commit; the cluster has wal_level = logical).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
PGBIN=${PGBIN:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin}
make -s PG_CONFIG="$PGBIN/pg_config"
make -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
make -s PG_CONFIG="$PGBIN/pg_config" listener

source scripts/pgenv.sh
DIR=$(mktemp -d /tmp/audit_demo.XXXXXX)
LISTENER=""
trap '[ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null; pg_stop "$DIR"; rm -rf "$DIR"' EXIT
# capture => 'wal' needs wal_level = logical; some builds load only the
# output plugins output_plugin_libraries lists
wal_conf=("wal_level = logical" "max_replication_slots = 4" "audit_ext.wal_naptime = 50")
if grep -q '^output_plugin_libraries' <<<"$(cd / && runuser -u postgres -- "$PGBIN/postgres" --describe-config 2>/dev/null)"; then
    wal_conf+=("output_plugin_libraries = 'pgoutput, test_decoding, audit_ext'")
fi
pg_start "$DIR" "${AUDIT_DEMO_PORT:-5496}" "${wal_conf[@]}"
echo "cluster running in $DIR on port $PGPORT"

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
\pset footer off
CREATE EXTENSION audit_ext;
CREATE TABLE customers (id serial PRIMARY KEY, name text, email text,
                        password_hash text, card_number text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                     item text, qty int, price numeric(10,2));
SELECT audit.enable('public.customers', exclude_columns => '{password_hash}',
                                        mask_columns    => '{card_number}');
-- the busy table: its events come from the write-ahead log (issue 22)
SELECT audit.enable('public.orders', capture => 'wal');
\echo
\echo '== audited tables: customers by trigger (events commit with the change), orders from the WAL (events after the lag)'
SELECT table_oid, capture, exclude_columns, mask_columns, key_columns, capturing FROM audit.audited_tables;

-- Jane, through the application (one pooled database role, actor per transaction)
BEGIN;
SET LOCAL audit_ext.actor = 'jane@corp';
INSERT INTO customers (name, email, password_hash, card_number)
     VALUES ('Acme Ltd', 'ops@acme.test', 'x', '4111111111111111');
INSERT INTO orders (customer_id, item, qty, price) VALUES (1, 'widget', 10, 2.50), (1, 'gadget', 1, 99);
COMMIT;
-- Bob corrects an order and the card, then removes an order
BEGIN;
SET LOCAL audit_ext.actor = 'bob@corp';
UPDATE orders SET qty = 12 WHERE item = 'widget';
UPDATE customers SET card_number = '5500000000000004', password_hash = 'y';
DELETE FROM orders WHERE item = 'gadget';
COMMIT;
-- A change that is rolled back leaves no trace
BEGIN;
SET LOCAL audit_ext.actor = 'mallory@corp';
DELETE FROM orders;
ROLLBACK;

\echo
\echo '== orders is captured from the WAL: wait until the capture worker has written every committed change'
SELECT audit.wait_for_capture() AS caught_up;
SELECT slot_name, bytes_behind, seconds_behind, events_written FROM audit.capture_lag;
\echo
\echo '== the audit trail (in time order: ids are in write order, and the worker writes the orders events after their commit)'
SELECT e.id, to_char(e.event_time, 'HH24:MI:SS') AS at, e.actor, e.db_user, e.action,
       e.table_name, CASE WHEN e.class = 'data' THEN (SELECT a.capture FROM audit.audited_tables a WHERE a.table_name = e.table_name) END AS captured_by,
       e.record_id, e.old_data, e.new_data, e.changed_columns
  FROM audit.event e ORDER BY e.event_time, e.id;
\echo
\echo '== each statement, stored once'
SELECT e.id, e.txid, e.statement_seq, s.statement_text
  FROM audit.event e JOIN audit.statement s USING (statement_id) ORDER BY e.id;
SQL

# ---- read auditing and alerts ------------------------------------------
docs/examples/audit_listen "host=$PGHOST port=$PGPORT dbname=postgres user=postgres" > "$DIR/alerts.txt" 2>/dev/null &
LISTENER=$!
for _ in $(seq 1 50); do [ -e "$DIR/alerts.txt" ] && psql -X -At -d postgres -c "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'LISTEN audit_alerts'" | grep -q t && break; sleep 0.1; done
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
\pset footer off
\echo
\echo '== read auditing: customers records who read what, with the rows returned'
SELECT audit.enable('public.customers', log_reads => true);
INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.test' FROM generate_series(1, 2000) g;
CREATE ROLE analyst LOGIN;
GRANT SELECT ON customers TO analyst;
SET ROLE analyst;
\echo 'analyst: SELECT * FROM customers WHERE id <= 1500  (1,500 rows to the client: a mass export)'
SELECT * FROM customers WHERE id <= 1500 \g /dev/null
SELECT name FROM customers WHERE id = 2;
RESET ROLE;
\echo
\echo '== a privilege escalation and auditing turned off'
ALTER ROLE analyst SUPERUSER;
SELECT audit.disable('public.orders');
\echo
\echo '== the application''s own events (class app, audit.log_event, role audit_writer), with the end user''s context'
SELECT audit.create_alert_rule('app_failed_logins', 'app', action => 'LOGIN_FAILED', threshold => 5,
                               within => '10 minutes', group_by => 'client_ip', severity => 'high',
                               description => '5 failed application logins in 10 minutes per client_ip') \g /dev/null
SELECT audit.create_alert_rule('app_account_locked', 'app', action => 'ACCOUNT_LOCKED', severity => 'high') \g /dev/null
\echo 'jane@corp logs in from 192.0.2.10 (the application sets its context per transaction, as SET LOCAL: safe behind a pooler)'
BEGIN;
SELECT audit.set_context(actor => 'jane@corp', client_ip => '192.0.2.10', session_id => 'sess-7f3a',
                         user_agent => 'Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0', user_role => 'accountant',
                         tenant => 'acme', request_id => 'req-0001');
SELECT audit.log_event('LOGIN', 'User', '{"email": "jane@corp"}', detail => '{"method": "password"}') IS NOT NULL AS login_recorded;
COMMIT;
BEGIN;
SELECT audit.set_context(actor => 'jane@corp', client_ip => '192.0.2.10', session_id => 'sess-7f3a', tenant => 'acme',
                         request_id => 'req-0002');
SELECT audit.log_event('EXPORT', 'Customer', detail => '{"rows": 1500, "format": "csv"}') IS NOT NULL AS export_recorded;
UPDATE customers SET email = 'billing@acme.test' WHERE id = 1;
COMMIT;
BEGIN;
SELECT audit.set_context(actor => 'jane@corp', client_ip => '192.0.2.10', session_id => 'sess-7f3a', tenant => 'acme');
SELECT audit.log_event('LOGOUT', 'User', '{"email": "jane@corp"}') IS NOT NULL AS logout_recorded;
COMMIT;
\echo 'someone at 198.51.100.23 fails to log in as eve@corp five times; the application rolls each attempt back (survive_rollback keeps them):'
BEGIN;
SELECT audit.set_context(actor => 'eve@corp', client_ip => '198.51.100.23', session_id => 'sess-anon-1');
SELECT count(*) FILTER (WHERE audit.log_event('LOGIN_FAILED', 'User', '{"email": "eve@corp"}', status => 'failure',
                                               detail => '{"reason": "bad password"}', survive_rollback => true) IS NULL) AS queued
  FROM generate_series(1, 5);
SELECT audit.log_event('ACCOUNT_LOCKED', 'User', '{"email": "eve@corp"}', survive_rollback => true) IS NULL AS queued;
ROLLBACK;
SELECT pg_sleep(1.5);
\echo 'every event carries its context and a risk level, set at capture:'
SELECT id, actor, class, action, status, table_name, risk, context ->> 'client_ip' AS client_ip,
       context ->> 'session_id' AS session_id, context ->> 'tenant' AS tenant
  FROM audit.event WHERE class = 'app' OR context IS NOT NULL ORDER BY id;
\echo 'a DBA raises the risk of exports (risk rules, audit_admin) and searches by session and by risk:'
SELECT audit.set_risk('app', 'EXPORT', risk => 'high');
SELECT id, action, risk FROM audit.search(session_id => 'sess-7f3a') ORDER BY id;
SELECT id, class, action, risk FROM audit.search(min_risk => 'high', max_rows => 8);
SELECT logins, failed_logins, sessions, avg_session IS NOT NULL AS session_length_known, exports FROM audit.user_activity('jane@corp');
SELECT id, actor, action, table_name, detail->>'rows' AS rows FROM audit.event WHERE class = 'read' ORDER BY id;
SELECT records_viewed, exports FROM audit.user_activity('analyst');
\echo
\echo '== open alerts (the rules: SELECT * FROM audit.alert_rules)'
SELECT alert_id, rule, severity, key, count, first_event_id, last_event_id, to_char(fired_at, 'HH24:MI:SS.MS') AS fired
  FROM audit.alerts WHERE acknowledged_at IS NULL ORDER BY alert_id;
SELECT alert_id, acknowledged_by, note FROM audit.acknowledge_alert(
    (SELECT min(alert_id) FROM audit.alerts WHERE rule = 'mass_export'), note => 'checked with the analyst');
SQL
echo
echo "== what the listener (docs/examples/audit_listen, LISTEN audit_alerts) printed"
cat "$DIR/alerts.txt"

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
\pset footer off
\echo
\echo '== tamper evidence: every event is hash-chained; audit.verify() walks the chains'
SELECT verified, events, chains, breaks FROM audit.verify();
\echo 'a superuser switches the append-only trigger off and edits one event (in a transaction, rolled back):'
BEGIN;
ALTER TABLE audit.event DISABLE TRIGGER audit_append_only;
UPDATE audit.event SET actor = 'someone else' WHERE id = (SELECT min(id) FROM audit.event WHERE class = 'data');
SELECT first_broken_event_id, problem FROM audit.verify();
ROLLBACK;
\echo
\echo '== retention: per class, whole partitions, archived first (the maintenance worker runs audit.prune())'
SELECT audit.set_retention(class => 'read', keep => interval '30 days', archive => true);
SELECT class, keep, archive FROM audit.retention_policies;
SELECT count(*) AS partitions_removed_now FROM audit.prune();
SQL

# ---- reports (issue 21) --------------------------------------------------
OUT=${AUDIT_DEMO_REPORTS:-/tmp/audit_demo_reports}
mkdir -p "$OUT"
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
\pset footer off
\echo
\echo '== reports: six typed report functions (for BI tools), rendered as self-contained HTML with SVG charts'
SELECT kind, title FROM audit.report_kinds ORDER BY position;
SELECT event_time::time(0), actor, table_name, action, column_name, old_value, new_value
  FROM audit.report_data_changes(now() - interval '1 day', now() + interval '1 hour') LIMIT 8;
\echo 'a scheduled report, written by the maintenance worker into audit_ext.report_directory:'
SELECT name, kind, every, at, next_due FROM audit.schedule_report('Weekly Security Summary', 'security_events', 'weekly:monday');
SQL
psql -X -At -v ON_ERROR_STOP=1 -d postgres \
     -c "SELECT audit.render_report('data_changes', date_trunc('day', now()) - interval '6 days', date_trunc('day', now()) + interval '1 day')" \
     > "$OUT/data_changes.html"
psql -X -At -v ON_ERROR_STOP=1 -d postgres \
     -c "SELECT audit.render_report('security_events', date_trunc('day', now()) - interval '6 days', date_trunc('day', now()) + interval '1 day')" \
     > "$OUT/security_events.html"
psql -X -At -v ON_ERROR_STOP=1 -d postgres -c "SELECT audit.render_dashboard()" > "$OUT/dashboard.html"
echo
echo "== rendered (open in any browser; they work offline, and print to PDF):"
for f in data_changes security_events dashboard; do echo "   file://$OUT/$f.html"; done
echo "   a PDF of a report: bash scripts/report-pdf.sh security_events 2026-01-01 2026-02-01 report.pdf"
