-- Roles and grants: the roles audit_admin, audit_reader and audit_writer
-- (1.6: may record application events; audit_admin is a member), the schema's
-- privileges and comment, and the access check every reading function starts
-- with (audit.require_audit_role).  Each concern file ends with the
-- privileges of its own objects; what holds for all of them:
--   * tables: SELECT for audit_admin and audit_reader, nothing for anyone
--     else; nobody but the extension writes (src/event_writer.c bypasses SQL
--     permissions by design);
--   * internal functions: EXECUTE revoked from PUBLIC;
--   * the reading functions and views, and the alert and retention
--     functions: open to everyone and checking the role themselves
--     (audit.require_audit_role), so that anyone without access is told so in
--     words: "has no access to the security audit" (42501).

-- Roles are cluster-wide, so a second database must not fail here.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_admin') THEN
        CREATE ROLE audit_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_reader') THEN
        CREATE ROLE audit_reader NOLOGIN;
    END IF;
    -- 1.6: the application's role, granted to the role an application
    -- connects as, may record application events (audit.log_event)
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'audit_writer') THEN
        CREATE ROLE audit_writer NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('audit_admin', 'audit_writer', 'MEMBER') THEN
        GRANT audit_writer TO audit_admin;
    END IF;
END
$roles$;

-- The schema: its objects set their own privileges (at the end of each file).
GRANT USAGE ON SCHEMA audit TO audit_admin, audit_reader, PUBLIC;
COMMENT ON SCHEMA audit IS 'audit_ext: the audit trail and its configuration; readable by audit_admin and audit_reader only';

-- Inside a SECURITY DEFINER function current_user is the function's owner,
-- so a check of current_user alone would always pass there.  The role the
-- session acts as is the "role" setting (SET ROLE) or, when none is set,
-- session_user; SECURITY DEFINER does not change either.  Both that role and
-- current_user must be audit roles (or superusers): in a SECURITY INVOKER
-- context (audit.undo) current_user is the caller; in our SECURITY DEFINER
-- functions it is the owner and the session's role decides.  Consequence:
-- the trail cannot be handed to a non-audit session by wrapping these
-- functions in someone else's SECURITY DEFINER function.
CREATE FUNCTION audit.require_audit_role(admin_only boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    session_role text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                              ELSE current_setting('role') END;
    who text;
BEGIN
    FOREACH who IN ARRAY ARRAY[session_role, current_user::text] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = who AND r.rolsuper);
        CONTINUE WHEN pg_has_role(who, 'audit_admin', 'USAGE');
        CONTINUE WHEN NOT coalesce(admin_only, false) AND pg_has_role(who, 'audit_reader', 'USAGE');
        IF coalesce(admin_only, false) THEN
            RAISE EXCEPTION 'permission denied: role "%" has no administrative access to the security audit', who
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'This needs membership in audit_admin (audit_reader may only read).';
        END IF;
        RAISE EXCEPTION 'permission denied: role "%" has no access to the security audit', who
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Reading the audit trail needs membership in audit_reader or audit_admin.';
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.require_audit_role(boolean) IS
    'Raise 42501 unless the session''s role (SET ROLE, else session_user) and current_user are audit_reader or audit_admin members (audit_admin only when admin_only) or superusers';

-- The same check as a boolean, for the views: a constant condition that the
-- planner evaluates once, before any row is read.
CREATE FUNCTION audit.audit_access_ok()
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.audit_access_ok() IS
    'True for audit roles; raises "no access to the security audit" (42501) for anyone else';

-- The role a session acts as (SET ROLE, else session_user); SECURITY
-- DEFINER does not change it.
CREATE FUNCTION audit.session_role()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text
                  ELSE current_setting('role') END $$;
COMMENT ON FUNCTION audit.session_role() IS
    'Internal: the role the session acts as (SET ROLE, else session_user)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.session_role() FROM PUBLIC;
