-- Application events (1.6, src/app_events.c): audit.log_event(), the
-- application's own security and business events (class app) in the same
-- trail as the database's, and audit.app_actions(), the documented actions
-- with their default risk.

CREATE FUNCTION audit.log_event(action           text,
                                entity           text    DEFAULT NULL,
                                record_id        jsonb   DEFAULT NULL,
                                old_value        jsonb   DEFAULT NULL,
                                new_value        jsonb   DEFAULT NULL,
                                status           text    DEFAULT 'success',
                                risk             text    DEFAULT NULL,
                                detail           jsonb   DEFAULT NULL,
                                survive_rollback boolean DEFAULT false)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_log_event';
COMMENT ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) IS
    'audit_writer: record an application event (class app): action (LOGIN, LOGIN_FAILED, EXPORT ... or a custom upper-case action), entity (recorded as table_name), record_id, old_value/new_value, status, risk (NULL: the action''s default), detail; returns the event id, or NULL with survive_rollback => true (queued, kept even if the transaction rolls back)';

-- The documented application actions.  src/app_events.c has the same table
-- (the default risk given to an event that names none); test/app_events.sql
-- checks that the two agree.
CREATE FUNCTION audit.app_actions()
RETURNS TABLE (action text, default_risk text, counted_as text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('LOGIN', 'low', 'logins (user_activity), sessions with LOGOUT'),
           ('LOGIN_FAILED', 'medium', 'failed logins'),
           ('LOGOUT', 'low', 'sessions (paired with LOGIN by context.session_id)'),
           ('PASSWORD_CHANGE', 'medium', 'password changes'),
           ('PASSWORD_RESET', 'medium', NULL),
           ('MFA_ENROLL', 'medium', NULL),
           ('MFA_FAILED', 'medium', NULL),
           ('ACCOUNT_LOCKED', 'high', NULL),
           ('ACCOUNT_UNLOCKED', 'medium', NULL),
           ('API_KEY_CREATE', 'high', NULL),
           ('API_KEY_REVOKE', 'medium', NULL),
           ('PERMISSION_CHANGE', 'high', NULL),
           ('ROLE_CHANGE', 'high', NULL),
           ('SETTINGS_CHANGE', 'medium', NULL),
           ('EXPORT', 'medium', 'exports'),
           ('IMPORT', 'medium', NULL),
           ('REPORT_GENERATED', 'low', 'reports generated'),
           ('VIEW', 'low', 'records viewed'),
           ('CREATE', 'low', NULL),
           ('UPDATE', 'low', NULL),
           ('DELETE', 'medium', NULL)
$$;
COMMENT ON FUNCTION audit.app_actions() IS
    'The documented application actions of audit.log_event(), each with its default risk and what audit.user_activity() counts it as; other upper-case actions are accepted as custom actions (risk low)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_event(text, text, jsonb, jsonb, jsonb, text, text, jsonb, boolean) TO audit_writer;

-- ---------------------------------------------------------------------------
-- The application's end-user context (1.6, src/app_context.c)
-- ---------------------------------------------------------------------------
-- Kept in the GUC audit_ext.context (never in a table): is_local => true is
-- SET LOCAL (gone at the end of the transaction, which is what makes it safe
-- behind a pooler in transaction mode), false is SET.  Every event captured
-- while it is set carries it in audit.event.context.
CREATE FUNCTION audit.set_context(actor      text    DEFAULT NULL,
                                  client_ip  inet    DEFAULT NULL,
                                  session_id text    DEFAULT NULL,
                                  user_agent text    DEFAULT NULL,
                                  user_role  text    DEFAULT NULL,
                                  tenant     text    DEFAULT NULL,
                                  request_id text    DEFAULT NULL,
                                  extra      jsonb   DEFAULT NULL,
                                  is_local   boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_set_context';
COMMENT ON FUNCTION audit.set_context(text, inet, text, text, text, text, text, jsonb, boolean) IS
    'Set the end-user context recorded with every event (audit.event.context): client_ip, session_id, user_agent, user_role, tenant, request_id and extra''s keys; actor sets audit_ext.actor too; is_local => true (default) for this transaction only, as SET LOCAL';

CREATE FUNCTION audit.clear_context()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_clear_context';
COMMENT ON FUNCTION audit.clear_context() IS
    'Clear the end-user context (for the session, as SET audit_ext.context = '''')';

CREATE FUNCTION audit.current_context()
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_current_context';
COMMENT ON FUNCTION audit.current_context() IS
    'The end-user context set now (audit.set_context), as recorded with events; NULL when none';
