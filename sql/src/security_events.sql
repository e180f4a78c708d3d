-- Security events: the shared-memory queue and its background worker
-- (src/queue.c, src/worker.c, src/auth_hooks.c).  Both exist only when the
-- library is in shared_preload_libraries; CREATE EXTENSION warns otherwise.

CREATE FUNCTION audit.worker_status()
RETURNS TABLE (queue_size integer, queue_depth integer,
               enqueued bigint, written bigint, dropped bigint,
               last_error text, last_error_time timestamptz, worker_pid integer)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_worker_status';
COMMENT ON FUNCTION audit.worker_status() IS
    'State of the security-event queue and its background worker; one row, NULLs and zeros when audit_ext is not in shared_preload_libraries';

CREATE VIEW audit.worker_status AS SELECT * FROM audit.worker_status();
COMMENT ON VIEW audit.worker_status IS
    'State of the security-event queue (size, depth, enqueued, written, dropped, last error) and the worker''s pid';

DO $$
BEGIN
    IF (SELECT s.queue_size FROM audit.worker_status() s) IS NULL THEN
        RAISE WARNING 'audit_ext is not in shared_preload_libraries: security events (logins, failed logins, logouts) are not recorded'
            USING HINT = 'Set shared_preload_libraries = ''audit_ext'' in postgresql.conf and restart the server.';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.worker_status() TO audit_admin, audit_reader;
GRANT SELECT ON audit.worker_status TO audit_admin, audit_reader;
