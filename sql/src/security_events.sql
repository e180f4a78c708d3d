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

-- The scheduled reports (1.6) are run by the maintenance worker: failing
-- schedules are shown here too (sql/src/reports.sql).
CREATE VIEW audit.worker_status AS
SELECT s.*,
       (SELECT pg_catalog.count(*) FROM audit.report_schedules r WHERE r.last_error IS NOT NULL) AS failing_report_schedules,
       (SELECT r.name || ': ' || r.last_error FROM audit.report_schedules r
         WHERE r.last_error IS NOT NULL ORDER BY r.last_error_at DESC, r.name LIMIT 1) AS last_report_error
  FROM audit.worker_status() s;
COMMENT ON VIEW audit.worker_status IS
    'State of the security-event queue (size, depth, enqueued, written, dropped, last error), the worker''s pid, and failing scheduled reports (count, the newest error)';

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
