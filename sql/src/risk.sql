-- Risk levels (1.6, src/risk.c): every event gets low, medium, high or
-- critical when it is captured (audit.event.risk).  The built-in defaults are
-- in src/risk.c and docs/reading.md ("Risk levels"); audit.risk_rules holds
-- the DBA's changes, managed by audit_admin with audit.set_risk() and
-- audit.remove_risk().  Backends read the rules once and again only after a
-- change (the statement trigger below invalidates their caches).

CREATE TABLE audit.risk_rules (
    class      text COLLATE "C" NOT NULL,
    action     text COLLATE "C",
    table_name text COLLATE "C",
    risk       text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL DEFAULT CURRENT_USER,
    CONSTRAINT risk_rules_risk_check CHECK (risk IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT risk_rules_class_check
        CHECK (class IN ('data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app')),
    CONSTRAINT risk_rules_key UNIQUE NULLS NOT DISTINCT (class, action, table_name)
);
COMMENT ON TABLE audit.risk_rules IS
    'Risk rules: the level of events of a class, optionally of one action and/or one table (table or schema.table; an application entity); the most specific rule wins over the built-in default. Managed with audit.set_risk/remove_risk';
COMMENT ON COLUMN audit.risk_rules.action IS 'The action the rule is for; NULL: every action of the class';
COMMENT ON COLUMN audit.risk_rules.table_name IS 'The table (table or schema.table) or application entity the rule is for; NULL: every one';

SELECT pg_catalog.pg_extension_config_dump('audit.risk_rules', '');

CREATE FUNCTION audit.risk_rules_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'audit_risk_rules_changed';
COMMENT ON FUNCTION audit.risk_rules_changed() IS
    'Internal: statement trigger of audit.risk_rules; every backend reads the rules again';

CREATE TRIGGER risk_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON audit.risk_rules
    FOR EACH STATEMENT EXECUTE FUNCTION audit.risk_rules_changed();

CREATE FUNCTION audit.risk_cache_loads()
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_risk_cache_loads';
COMMENT ON FUNCTION audit.risk_cache_loads() IS
    'How many times this backend has read audit.risk_rules (once, then after each change; never per event)';

-- The levels at or above one, for filters (search, alert rules).
CREATE FUNCTION audit.risk_at_least(min_risk text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    levels text[] := ARRAY['low', 'medium', 'high', 'critical'];
    i      integer := array_position(levels, min_risk);
BEGIN
    IF min_risk IS NULL THEN
        RETURN NULL;
    END IF;
    IF i IS NULL THEN
        RAISE EXCEPTION 'invalid min_risk "%": not a risk level', min_risk
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Risk levels: low, medium, high, critical.';
    END IF;
    RETURN levels[i:];
END
$$;
COMMENT ON FUNCTION audit.risk_at_least(text) IS
    'The risk levels at or above min_risk (low, medium, high, critical); 22023 for another value';

CREATE FUNCTION audit.set_risk(class      text,
                               action     text DEFAULT NULL,
                               table_name text DEFAULT NULL,
                               risk       text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role(true);
    IF set_risk.class IS NULL OR NOT set_risk.class OPERATOR(pg_catalog.=) ANY (audit.event_classes()) THEN
        RAISE EXCEPTION 'invalid class "%": not an event class', coalesce(set_risk.class, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'class must be one of: ' || array_to_string(audit.event_classes(), ', ') || '.';
    END IF;
    IF set_risk.action OPERATOR(pg_catalog.=) '' OR set_risk.table_name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'invalid action or table_name "": leave it NULL for every one'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_risk.risk IS NULL OR NOT set_risk.risk OPERATOR(pg_catalog.=) ANY (ARRAY['low', 'medium', 'high', 'critical']) THEN
        RAISE EXCEPTION 'invalid risk "%": not a risk level', coalesce(set_risk.risk, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Risk levels: low, medium, high, critical.';
    END IF;
    INSERT INTO audit.risk_rules AS r (class, action, table_name, risk, created_by)
    VALUES (set_risk.class, set_risk.action, set_risk.table_name, set_risk.risk, audit.session_role()::text)
    ON CONFLICT ON CONSTRAINT risk_rules_key
    DO UPDATE SET risk = EXCLUDED.risk, created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by;
END
$$;
COMMENT ON FUNCTION audit.set_risk(text, text, text, text) IS
    'audit_admin: the risk level of events of a class, optionally of one action and/or table (most specific rule wins; replaces a rule with the same class, action and table)';

CREATE FUNCTION audit.remove_risk(class      text,
                                  action     text DEFAULT NULL,
                                  table_name text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.risk_rules r
     WHERE r.class OPERATOR(pg_catalog.=) remove_risk.class
       AND r.action IS NOT DISTINCT FROM remove_risk.action
       AND r.table_name IS NOT DISTINCT FROM remove_risk.table_name;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;
COMMENT ON FUNCTION audit.remove_risk(text, text, text) IS
    'audit_admin: remove the risk rule of exactly this class, action and table (events fall back to a less specific rule or the default); false when there was none';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON audit.risk_rules FROM PUBLIC;
GRANT SELECT ON audit.risk_rules TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.set_risk(text, text, text, text),
                       audit.remove_risk(text, text, text),
                       audit.risk_rules_changed(),
                       audit.risk_at_least(text),
                       audit.risk_cache_loads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.set_risk(text, text, text, text),
                          audit.remove_risk(text, text, text) TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.risk_at_least(text),
                          audit.risk_cache_loads() TO audit_admin, audit_reader;
