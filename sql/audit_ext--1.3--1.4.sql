-- audit_ext 1.3 -> 1.4: trust first (issue 18).
--   * code that runs with elevated rights resolves names in pg_catalog only and
--     never evaluates a user's code with elevated rights;
--   * tamper evidence that holds against a superuser;
--   * capture cannot be switched off quietly.
-- docs/architecture.md, "Threat model", lists every elevated path and its test.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.4'" to load this file. \quit

-- ===========================================================================
-- Capture cannot be switched off quietly (issue 18 C)
-- ===========================================================================
-- src/ddl_capture.c records every statement that stops or bypasses an audit
-- trigger (DISABLE TRIGGER name/ALL/USER, ENABLE REPLICA TRIGGER, DROP
-- TRIGGER, of the row or the truncate trigger, on the table or a partition)
-- whatever audit_ext.log_ddl says, with "audit_trigger_disabled": true and
-- "risk": "critical"; it refuses renaming an audit trigger, replacing it and
-- making an extension own it.  Here: what the views and rules need.

-- What is not captured on an audited table, read from the catalog.
-- capturing: every audit trigger of the table and of its partitions exists
-- and fires in normal sessions (tgenabled O or A), and every permanent
-- inheritance child is audited.  capture_state: 'capturing', or every gap ('; ').
-- replicated_into: the subscriptions of this database that apply changes to
-- the table or its partitions; their changes are captured only if the row
-- trigger fires in replica sessions (ENABLE ALWAYS TRIGGER audit_ext_row).
CREATE FUNCTION audit.capture_state(tbl regclass,
                                    OUT capturing boolean,
                                    OUT capture_state text,
                                    OUT replicated_into text[])
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gaps   text[] := '{}';
    r      record;
    what   text;
    root_row "char";
BEGIN
    FOR r IN
        SELECT p.relid, p.level,
               (SELECT t.tgenabled FROM pg_trigger t
                 WHERE t.tgrelid = p.relid AND t.tgfoid = 'audit.capture_row()'::regprocedure
                 LIMIT 1) AS row_state,
               (SELECT t.tgenabled FROM pg_trigger t
                 WHERE t.tgrelid = p.relid AND t.tgfoid = 'audit.capture_truncate()'::regprocedure
                 LIMIT 1) AS truncate_state
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT pt.relid, pt.level FROM pg_partition_tree(tbl) pt WHERE pt.relid <> tbl) p
         ORDER BY p.level, p.relid::regclass::text
    LOOP
        what := CASE WHEN r.level = 0 THEN '' ELSE format('partition %s: ', r.relid::regclass) END;
        IF r.level = 0 THEN
            root_row := r.row_state;
        END IF;
        gaps := gaps || CASE coalesce(r.row_state, '-')
                            WHEN '-' THEN what || 'row trigger missing'
                            WHEN 'D' THEN what || 'row trigger disabled'
                            WHEN 'R' THEN what || 'row trigger replica only'
                        END;
        gaps := gaps || CASE coalesce(r.truncate_state, '-')
                            WHEN '-' THEN what || 'truncate trigger missing'
                            WHEN 'D' THEN what || 'truncate trigger disabled'
                            WHEN 'R' THEN what || 'truncate trigger replica only'
                        END;
    END LOOP;
    -- rows of an inheritance child change through the parent (UPDATE, DELETE
    -- without ONLY) and fire the child's triggers, not the parent's
    SELECT gaps || coalesce(array_agg(format('inheritance child %s not captured', i.inhrelid::regclass)
                                      ORDER BY i.inhrelid::regclass::text), '{}')
      INTO gaps
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = tbl AND NOT c.relispartition AND c.relpersistence <> 't'
       AND NOT EXISTS (SELECT 1 FROM pg_trigger t
                        WHERE t.tgrelid = i.inhrelid AND t.tgfoid = 'audit.capture_row()'::regprocedure
                          AND t.tgenabled IN ('O', 'A'));
    capturing := cardinality(array_remove(gaps, NULL)) = 0;

    SELECT array_agg(DISTINCT s.subname::text ORDER BY s.subname::text) INTO replicated_into
      FROM pg_subscription_rel sr
      JOIN pg_subscription s ON s.oid = sr.srsubid
     WHERE sr.srrelid = tbl OR sr.srrelid IN (SELECT p.relid FROM pg_partition_tree(tbl) p);
    -- the apply worker runs as a replica session: O and D do not fire there
    IF replicated_into IS NOT NULL AND coalesce(root_row, 'D') NOT IN ('A', 'R') THEN
        gaps := gaps || format('changes applied by subscription %s not captured',
                               array_to_string(replicated_into, ', '));
    END IF;
    capture_state := coalesce(nullif(array_to_string(gaps, '; '), ''), 'capturing');
END
$$;
COMMENT ON FUNCTION audit.capture_state(regclass) IS
    'What is not captured on an audited table: capturing (every audit trigger of the table and its partitions fires in normal sessions, every permanent inheritance child is audited), capture_state (''capturing'' or the gaps), replicated_into (subscriptions applying changes to it)';
REVOKE ALL ON FUNCTION audit.capture_state(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.capture_state(regclass) TO audit_admin, audit_reader;

-- Same columns as before (capturing now tells the truth: false for a
-- replica-only trigger, a missing or disabled truncate trigger, a partition
-- or inheritance child not captured), two more at the end.
CREATE OR REPLACE VIEW audit.audited_tables AS
SELECT c.oid::regclass                              AS table_oid,
       n.nspname::text                              AS schema_name,
       c.relname::text                              AS table_name,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       (audit.trigger_arguments(t.tgargs))[1]::text[] AS exclude_columns,
       (audit.trigger_arguments(t.tgargs))[2]::text[] AS mask_columns,
       audit.key_columns(c.oid)                     AS key_columns,
       s.capturing                                  AS capturing,
       coalesce('log_reads' = ANY ((audit.trigger_arguments(t.tgargs))[3]::text[]), false) AS log_reads,
       s.capture_state                              AS capture_state,
       s.replicated_into                            AS replicated_into
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL audit.capture_state(c.oid) s
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;
COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if any audit trigger of the table or of a partition is missing, disabled or replica only, or an inheritance child is not audited (capture_state says which); log_reads: reads are recorded too; replicated_into: subscriptions applying changes to the table (captured only with ENABLE ALWAYS TRIGGER audit_ext_row)';

-- Inheritance children (1.4).  UPDATE and DELETE through an audited table
-- (without ONLY) change the rows of its inheritance children, which fire the
-- children's triggers, not the parent's: those changes went unrecorded.  The
-- event trigger that gives new partitions their TRUNCATE trigger now also
-- audits a table that starts inheriting from an audited one (CREATE TABLE
-- ... INHERITS, ALTER TABLE ... INHERIT) with that parent's options (the
-- first audited parent), recorded as ENABLE AUDIT with "inherits" and
-- "automatic": true.  Temporary and foreign children cannot be audited; the
-- utility hook's event says so ("child_audited": false) and
-- audited_tables.capture_state names them.  An event trigger works with or
-- without shared_preload_libraries; pg_restore creates tables before their
-- triggers, so a restored child keeps exactly the triggers it had.
CREATE OR REPLACE FUNCTION audit.on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part  oid;
    root  record;
    rel   oid;
    par   regclass;
    args  text[];
    flags text[];
BEGIN
    -- CREATE TABLE ... PARTITION OF names the new partition; ALTER TABLE ...
    -- ATTACH PARTITION names the parent: look at the whole tree below each.
    FOR part IN
        SELECT DISTINCT t.relid
          FROM pg_event_trigger_ddl_commands() c
          CROSS JOIN LATERAL (SELECT c.objid AS relid
                              UNION ALL
                              SELECT relid FROM pg_partition_tree(c.objid)) t
         WHERE c.object_type IN ('table', 'table column') AND c.classid = 'pg_class'::regclass
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part AND tgname = 'audit_ext_truncate');
        FOR root IN
            SELECT audit.trigger_arguments(t.tgargs) AS args
              FROM pg_partition_ancestors(part) WITH ORDINALITY a(relid, ord)
              JOIN pg_trigger t ON t.tgrelid = a.relid AND t.tgname = 'audit_ext_truncate'
             WHERE a.relid <> part
             ORDER BY a.ord
             LIMIT 1
        LOOP
            EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                           part::regclass, root.args[1], root.args[2]);
        END LOOP;
    END LOOP;

    -- An ordinary permanent table, not audited, inheriting from an audited one.
    FOR rel IN
        SELECT DISTINCT c.objid
          FROM pg_event_trigger_ddl_commands() c
          JOIN pg_class k ON k.oid = c.objid
         WHERE c.object_type = 'table' AND c.classid = 'pg_class'::regclass
           AND k.relkind = 'r' AND k.relpersistence <> 't' AND NOT k.relispartition
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger t
                               WHERE t.tgrelid = rel AND t.tgfoid = 'audit.capture_row()'::regprocedure);
        par := NULL;
        SELECT i.inhparent, audit.trigger_arguments(t.tgargs) INTO par, args
          FROM pg_inherits i
          JOIN pg_trigger t ON t.tgrelid = i.inhparent AND t.tgparentid = 0
                           AND t.tgfoid = 'audit.capture_row()'::regprocedure
         WHERE i.inhrelid = rel
         ORDER BY i.inhseqno
         LIMIT 1;
        CONTINUE WHEN par IS NULL;
        flags := coalesce(args[3]::text[], '{}');
        PERFORM audit.install_triggers(rel::regclass, args[1]::text[], args[2]::text[], flags);
        PERFORM audit.log_config_event('ENABLE AUDIT', rel::regclass,
                   jsonb_build_object('exclude_columns', to_jsonb(args[1]::text[]),
                                      'mask_columns', to_jsonb(args[2]::text[]),
                                      'inherits', par::text,
                                      'automatic', true)
                   || CASE WHEN 'log_reads' = ANY (flags) THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.on_ddl_command_end() IS
    'Event trigger: gives new partitions of audited tables their TRUNCATE trigger, audits a new inheritance child of an audited table with its parent''s options';

-- The built-in rule audit_disabled fires on every route (the flag
-- "audit_trigger_disabled": true is on each of them, whatever log_ddl says);
-- capture switched off is the worst thing that can happen to a trail:
-- critical.  Shipped rules are not dumped (WHERE NOT builtin), so changing
-- the row here also changes it for a database restored and re-created.
UPDATE audit.alert_rules
   SET severity = 'critical',
       description = 'Capture switched off on a table: audit.disable, an audit trigger disabled, made replica only or dropped (any route, whatever audit_ext.log_ddl says), session_replication_role = replica'
 WHERE name = 'audit_disabled' AND builtin;
