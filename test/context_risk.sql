-- pgTAP: the application's context on every class of event, and risk levels
-- at capture (rules cached per backend), inside one transaction that is
-- rolled back.
BEGIN;
SELECT plan(22);

CREATE TEMP TABLE mark AS SELECT coalesce(max(id), 0) AS id FROM audit.event;
CREATE TABLE cr_t (id int PRIMARY KEY, v text);
SELECT audit.enable('cr_t');

SELECT audit.set_context(actor => 'bob@example.com', session_id => 'S-9', tenant => 't1', client_ip => '198.51.100.4');
INSERT INTO cr_t VALUES (1, 'x');
UPDATE cr_t SET v = 'y';
CREATE TABLE cr_ddl (id int);
GRANT SELECT ON cr_ddl TO audit_reader;
SELECT audit.log_event('VIEW', 'Customer', '{"id": 1}');

SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND context IS NULL
              AND class IN ('data', 'ddl', 'privilege', 'app') AND action <> 'ENABLE AUDIT'),
          0::bigint, 'every data, ddl, privilege and app event captured while the context is set carries it');
SELECT is((SELECT array_agg(DISTINCT class ORDER BY class) FROM audit.event
            WHERE id > (SELECT id FROM mark) AND context @> '{"session_id": "S-9", "tenant": "t1"}'),
          ARRAY['app', 'data', 'ddl', 'privilege']::text[], 'the four classes written by the session have it');
SELECT is((SELECT DISTINCT actor FROM audit.event WHERE id > (SELECT id FROM mark) AND context IS NOT NULL),
          'bob@example.com', 'set_context(actor => ) sets audit_ext.actor too');
SELECT is((SELECT context FROM audit.event WHERE class = 'data' AND id > (SELECT id FROM mark) ORDER BY id LIMIT 1),
          '{"tenant": "t1", "client_ip": "198.51.100.4", "session_id": "S-9"}'::jsonb,
          'context keys as documented, absent keys omitted');

-- the chain covers the context: verify passes, and the hash depends on it
SELECT ok((SELECT e.hash = audit.event_hash(e, (SELECT p.hash FROM audit.event p
                                                  WHERE p.chain_lane = e.chain_lane AND p.chain_seq = e.chain_seq - 1))
             FROM audit.event e WHERE e.class = 'data' AND e.id > (SELECT id FROM mark) ORDER BY e.id DESC LIMIT 1),
          'an event with a context hashes as stored (AUD2 serialisation)');

-- SET LOCAL semantics inside a function with a SET clause and a subtransaction
SAVEPOINT s1;
SELECT audit.set_context(session_id => 'S-10');
ROLLBACK TO SAVEPOINT s1;
SELECT is(audit.current_context() ->> 'session_id', 'S-9', 'ROLLBACK TO SAVEPOINT restores the context');

-- risk at capture
SELECT is((SELECT array_agg(risk ORDER BY id) FROM audit.event WHERE class = 'data' AND table_name = 'cr_t'
              AND id > (SELECT id FROM mark)), ARRAY['low', 'low'], 'data events: low');
SELECT is((SELECT risk FROM audit.event WHERE class = 'privilege' AND id > (SELECT id FROM mark)), 'high',
          'GRANT: high');
SELECT is((SELECT risk FROM audit.event WHERE class = 'app' AND action = 'VIEW' AND id > (SELECT id FROM mark)), 'low',
          'application VIEW: its default, low');
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND risk IS NULL), 0::bigint,
          'no event without a risk');

-- rules: read once, then again only after a change, never per event
SELECT audit.set_risk('data', 'UPDATE', 'cr_t', 'high');
INSERT INTO cr_t VALUES (2, 'v');        -- reads the changed rules once
CREATE TEMP TABLE loads AS SELECT audit.risk_cache_loads() AS n;
INSERT INTO cr_t SELECT g, 'v' FROM generate_series(3, 1001) g;
UPDATE cr_t SET v = 'w' WHERE id <= 500;
SELECT is(audit.risk_cache_loads() - (SELECT n FROM loads), 0::bigint,
          '1,500 events: no read of the rules');
SELECT is((SELECT count(*) FROM audit.event WHERE class = 'data' AND action = 'UPDATE' AND risk = 'high'
              AND id > (SELECT id FROM mark) AND table_name = 'cr_t'), 500::bigint,
          'the rule applies to the events captured after it (same transaction)');
SELECT is((SELECT count(*) FROM audit.event WHERE class = 'data' AND action = 'INSERT' AND risk = 'low'
              AND id > (SELECT id FROM mark) AND table_name = 'cr_t'), 1001::bigint,
          'other actions keep theirs');

-- sensitivity
SELECT audit.enable('cr_t', sensitivity => 'critical');
DELETE FROM cr_t WHERE id = 2;
SELECT is((SELECT risk FROM audit.event WHERE class = 'data' AND action = 'DELETE' AND id > (SELECT id FROM mark)),
          'critical', 'enable(sensitivity => critical): every data event at least critical');

-- an application can name its risk, but never another class
SELECT audit.log_event('EXPORT', 'Customer', risk => 'critical');
SELECT is((SELECT class || '/' || risk FROM audit.event WHERE action = 'EXPORT' AND id > (SELECT id FROM mark)),
          'app/critical', 'log_event(risk => ) is stored, in class app');
SELECT is((SELECT count(*) FROM audit.event WHERE id > (SELECT id FROM mark) AND class <> 'app'
              AND context ? 'risk'), 0::bigint, 'no context key can name a risk or class');

-- search by the context: exact rows, through the per-key btrees (index scans
-- counted in this transaction's statistics, not a plan guess)
SELECT audit.set_context(session_id => 'S-11', tenant => 't2', client_ip => '2001:db8::7');
INSERT INTO cr_t VALUES (5000, 'a'), (5001, 'b');
SELECT audit.set_context(session_id => 'S-12', tenant => 't2', client_ip => '198.51.100.200');
UPDATE cr_t SET v = 'c' WHERE id = 5000;
SELECT audit.clear_context();
UPDATE cr_t SET v = 'd' WHERE id = 5001;
CREATE FUNCTION pg_temp.ctx_scans(suffix text) RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(pg_stat_get_xact_numscans(c.oid))::bigint FROM pg_class c
     WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'i' AND c.relname LIKE '%\_' || suffix || '\_idx' $$;
CREATE TEMP TABLE scans AS SELECT pg_temp.ctx_scans('ctx\_session\_id') AS s, pg_temp.ctx_scans('ctx\_tenant') AS t;
SELECT is((SELECT array_agg(record_id ->> 'id' ORDER BY id) FROM audit.search(session_id => 'S-11')),
          ARRAY['5000', '5001'], 'search(session_id): the session''s events, newest first');
SELECT is((SELECT array_agg(action || ':' || (record_id ->> 'id') ORDER BY id DESC) FROM audit.search(tenant => 't2')),
          ARRAY['UPDATE:5000', 'INSERT:5001', 'INSERT:5000'], 'search(tenant): both sessions'' events, not the one without a context');
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit.search(client_ip => '198.51.100.200')),
          ARRAY['UPDATE'], 'search(client_ip => a host)');
SELECT is((SELECT count(*) FROM audit.search(client_ip => '2001:db8::/32', tenant => 't2')), 2::bigint,
          'search(client_ip => a network): the addresses in it');
SELECT is((SELECT count(*) FROM audit.search(session_id => 'S-11', tenant => 't1')), 0::bigint,
          'context filters combine with AND');
SELECT ok(pg_temp.ctx_scans('ctx\_session\_id') > (SELECT s FROM scans) AND pg_temp.ctx_scans('ctx\_tenant') > (SELECT t FROM scans),
          'session and tenant searches read their btree indexes (audit_ext.context_index_keys by default)');

SELECT * FROM finish();
ROLLBACK;
