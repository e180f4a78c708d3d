-- The application's end-user context (audit.set_context, audit.clear_context,
-- audit.current_context) and risk levels (audit.event.risk, audit.risk_rules,
-- audit.set_risk, audit.remove_risk, enable(sensitivity), search filters):
-- the SQL surface and every error.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS mark FROM audit.event \gset
CREATE TABLE ctx_t (id int PRIMARY KEY, v text);
SELECT audit.enable('ctx_t');

-- no context: NULL
SELECT audit.current_context();

-- set for the transaction (the default): gone at COMMIT
BEGIN;
SELECT audit.set_context(actor => 'ann@example.com', client_ip => '203.0.113.7', session_id => 's-1',
                         user_agent => 'Firefox/126', user_role => 'clerk', tenant => 'acme',
                         request_id => 'r-42', extra => '{"device": "kiosk-7"}');
SELECT audit.current_context();
SHOW audit_ext.actor;
INSERT INTO ctx_t VALUES (1, 'a');
SELECT audit.log_event('EXPORT', 'Customer') IS NOT NULL AS logged;
COMMIT;
SELECT audit.current_context();
SELECT class, action, actor, context, risk FROM audit.event WHERE id > :mark AND class IN ('data', 'app') ORDER BY id;

-- rolled back: gone; a savepoint restores the one before
BEGIN;
SELECT audit.set_context(session_id => 'outer');
SAVEPOINT a;
SELECT audit.set_context(session_id => 'inner');
SELECT audit.current_context();
ROLLBACK TO SAVEPOINT a;
SELECT audit.current_context();
ROLLBACK;
SELECT audit.current_context();

-- for the session (is_local => false); clear_context ends it
SELECT audit.set_context(tenant => 'globex', is_local => false);
SELECT audit.current_context();
SELECT audit.clear_context();
SELECT audit.current_context();
-- absent keys are omitted; nothing at all is no context
SELECT audit.set_context(session_id => '', is_local => false);
SELECT audit.current_context();
-- direct SET is checked the same way
SET audit_ext.context = '{"tenant": "initech"}';
SELECT audit.current_context();
RESET audit_ext.context;

-- errors
SELECT audit.set_context(client_ip => 'not an address');
SELECT audit.set_context(extra => '{"session_id": "forged"}');
SELECT audit.set_context(extra => '{"actor": "someone"}');
SELECT audit.set_context(extra => '[1, 2]');
SELECT audit.set_context(extra => jsonb_build_object('blob', repeat('x', 2000)));
SET audit_ext.context = '[1]';
SET audit_ext.context = '{"client_ip": "nowhere"}';
-- nor can a direct SET name an actor, or give a documented key a non-string
SET audit_ext.context = '{"actor": "ceo@example.com", "tenant": "acme"}';
SET audit_ext.context = '{"session_id": {"forged": true}}';
-- (SQLSTATE only: PostgreSQL 17 writes the range with its unit, "64 B .. 1024 B")
\set VERBOSITY sqlstate
SET audit_ext.max_context_bytes = 10;
\set VERBOSITY default

-- risk: the defaults (docs/reading.md, "Risk levels")
SELECT :mark AS mark2 \gset
SELECT max(id) AS mark2 FROM audit.event \gset
INSERT INTO ctx_t VALUES (2, 'b');
TRUNCATE ctx_t;
CREATE TABLE ctx_dropme (id int);
DROP TABLE ctx_dropme;
SELECT audit.log_event('LOGIN') IS NOT NULL AS logged;
SELECT audit.log_event('LOGIN_FAILED') IS NOT NULL AS logged;
SELECT audit.log_event('ACCOUNT_LOCKED') IS NOT NULL AS logged;
SELECT audit.log_event('LOGIN', risk => 'critical') IS NOT NULL AS logged;
SELECT class, action, risk FROM audit.event WHERE id > :mark2 ORDER BY id;

-- rules: audit_admin changes them; the most specific wins
SELECT audit.set_risk('data', table_name => 'public.ctx_t', risk => 'high');
SELECT audit.set_risk('data', 'DELETE', 'ctx_t', 'critical');
SELECT audit.set_risk('app', 'LOGIN', risk => 'medium');
SELECT audit.set_risk('app', 'LOGIN', risk => 'high');   -- replaces the rule
SELECT class, action, table_name, risk, created_by FROM audit.risk_rules ORDER BY 1, 2, 3;
SELECT max(id) AS mark3 FROM audit.event \gset
INSERT INTO ctx_t VALUES (3, 'c');
DELETE FROM ctx_t WHERE id = 3;
SELECT audit.log_event('LOGIN') IS NOT NULL AS logged;
SELECT class, action, risk FROM audit.event WHERE id > :mark3 ORDER BY id;
SELECT audit.remove_risk('data', 'DELETE', 'ctx_t');
SELECT audit.remove_risk('data', 'DELETE', 'ctx_t');   -- none left: false
SELECT audit.remove_risk('data', table_name => 'public.ctx_t');
SELECT audit.remove_risk('app', 'LOGIN');
SELECT count(*) FROM audit.risk_rules;

-- rule errors
SELECT audit.set_risk('bogus', risk => 'high');
SELECT audit.set_risk(NULL, risk => 'high');
SELECT audit.set_risk('data', risk => 'severe');
SELECT audit.set_risk('data');
SELECT audit.set_risk('data', '', risk => 'low');

-- sensitivity: data and read events of the table at least that level
SELECT audit.enable('ctx_t', sensitivity => 'high', log_reads => true);
SELECT sensitivity FROM audit.audited_tables WHERE table_oid = 'ctx_t'::regclass;
SELECT max(id) AS mark4 FROM audit.event \gset
INSERT INTO ctx_t VALUES (4, 'd');
SELECT class, action, risk FROM audit.event WHERE id > :mark4 AND class = 'data' ORDER BY id;
SELECT audit.enable('ctx_t', sensitivity => 'severe');
SELECT audit.enable('ctx_t', sensitivity => 'none');
SELECT sensitivity FROM audit.audited_tables WHERE table_oid = 'ctx_t'::regclass;

-- search by context and risk
SELECT action, context ->> 'session_id' AS session_id FROM audit.search(session_id => 's-1') ORDER BY id;
SELECT action FROM audit.search(tenant => 'acme', class => 'app');
SELECT action FROM audit.search(client_ip => '203.0.113.7') ORDER BY id;
SELECT action FROM audit.search(client_ip => '203.0.113.0/24') ORDER BY id;
SELECT class, action, risk FROM audit.search(min_risk => 'critical', from_time => now() - interval '1 hour') WHERE id > :mark ORDER BY id;
SELECT audit.search(min_risk => 'extreme');
-- alert rules by risk, grouped by the context's client_ip
SELECT name, min_risk, group_by FROM audit.create_alert_rule('ctx_failed_app_logins', 'app', 'LOGIN_FAILED', threshold => 5,
                                 within => '10 minutes', group_by => 'client_ip', min_risk => 'medium');
SELECT audit.create_alert_rule('ctx_bad', 'app', min_risk => 'extreme');
SELECT audit.drop_alert_rule('ctx_failed_app_logins');

-- who may change rules: audit_admin only
CREATE ROLE ctx_nobody;
CREATE ROLE ctx_reader IN ROLE audit_reader;
SET ROLE ctx_nobody;
SELECT audit.set_risk('data', risk => 'low');
SELECT audit.remove_risk('data');
SELECT * FROM audit.risk_rules;
INSERT INTO audit.risk_rules (class, risk) VALUES ('data', 'low');
SELECT audit.set_context(tenant => 'anyone may');   -- like SET audit_ext.actor
RESET ROLE;
-- even with EXECUTE granted by mistake, the functions check the role
GRANT EXECUTE ON FUNCTION audit.set_risk(text, text, text, text), audit.remove_risk(text, text, text) TO ctx_nobody;
SET ROLE ctx_nobody;
SELECT audit.set_risk('data', risk => 'low');
SELECT audit.remove_risk('data');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION audit.set_risk(text, text, text, text), audit.remove_risk(text, text, text) FROM ctx_nobody;
SET ROLE ctx_reader;
SELECT audit.set_risk('data', risk => 'low');
SELECT count(*) FROM audit.risk_rules;
RESET ROLE;
DROP ROLE ctx_nobody;
DROP ROLE ctx_reader;
SELECT audit.disable('ctx_t');
DROP TABLE ctx_t;
