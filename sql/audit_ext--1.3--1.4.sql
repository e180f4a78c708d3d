-- audit_ext 1.3 -> 1.4: trust first (issue 18).
--   * code that runs with elevated rights resolves names in pg_catalog only and
--     never evaluates a user's code with elevated rights;
--   * tamper evidence that holds against a superuser;
--   * capture cannot be switched off quietly.
-- docs/architecture.md, "Threat model", lists every elevated path and its test.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.4'" to load this file. \quit

-- ===========================================================================
-- A. Elevated code never runs a user's code and never resolves a name
--    through the caller's search_path
-- ===========================================================================
-- The C side pins search_path to pg_catalog, pg_temp around every SPI query
-- it runs (src/elevated.c).  The reading functions (SECURITY DEFINER, for
-- the audit roles) populated records of an audited table's row type as the
-- extension's owner: a table owner's DOMAIN ... CHECK (its_function(VALUE))
-- on the key column ran as superuser when an auditor read the record's
-- history.  They now run that part as the table's owner, in a
-- security-restricted operation (as VACUUM and ANALYZE run index
-- expressions).
CREATE FUNCTION audit.eval_as_table_owner(tbl regclass, query text, arg jsonb)
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_eval_as_table_owner';
COMMENT ON FUNCTION audit.eval_as_table_owner(regclass, text, jsonb) IS
    'Internal: runs a query ($1 jsonb, one jsonb column) as the owner of a table, security-restricted, search_path pinned; the reading functions evaluate the table''s types and domains this way';
REVOKE ALL ON FUNCTION audit.eval_as_table_owner(regclass, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.record_in_partition(part regclass, identity jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inside boolean;
    bound  text := pg_get_partition_constraintdef(part);
BEGIN
    IF bound IS NULL THEN
        RETURN true;
    END IF;
    -- the partition's expressions and column types are its owner's code
    inside := audit.eval_as_table_owner(part,
                  format('SELECT pg_catalog.to_jsonb((%s) IS NOT FALSE) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r',
                         bound, part),
                  identity)::text::boolean;
    RETURN coalesce(inside, true);
EXCEPTION WHEN OTHERS THEN
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION audit.resolve_record(tbl regclass, record_id jsonb,
                                     OUT schema_name text, OUT table_name text,
                                     OUT record jsonb, OUT live regclass)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys  text[];
    given text[];
    full_row jsonb;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'invalid tbl: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF record_id IS NULL OR jsonb_typeof(record_id) <> 'object' OR record_id = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(record_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- events of a partition carry the name of the audited partitioned table
    SELECT a.relid INTO live
      FROM pg_partition_ancestors(tbl) WITH ORDINALITY AS a(relid, ord)
     WHERE EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = a.relid AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0)
     ORDER BY a.ord DESC
     LIMIT 1;
    live := coalesce(live, pg_partition_root(tbl), tbl);
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = live;

    keys := audit.key_columns(live);
    IF keys IS NULL THEN
        record := resolve_record.record_id;
        RETURN;
    END IF;
    given := ARRAY(SELECT jsonb_object_keys(resolve_record.record_id) ORDER BY 1);
    IF given <> ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
        RAISE EXCEPTION 'invalid record_id %: must name exactly the key columns of % (%)',
                        resolve_record.record_id, live, array_to_string(keys, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('For example {%s}.',
                                (SELECT string_agg(format('"%s": ...', k), ', ') FROM unnest(keys) k));
    END IF;
    BEGIN
        -- the table's column types and domains are its owner's code: run
        -- them as the owner, never with this function's rights
        full_row := audit.eval_as_table_owner(live,
                        format('SELECT pg_catalog.to_jsonb(r.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r', live),
                        resolve_record.record_id);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'invalid record_id %: a value does not fit its key column of %', resolve_record.record_id, live
            USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    SELECT jsonb_object_agg(k, full_row -> k) INTO record FROM unnest(keys) k;
END
$$;

CREATE OR REPLACE FUNCTION audit.record_events(p_schema text, p_table text, p_record jsonb, p_live regclass)
RETURNS SETOF audit.event
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k          jsonb := p_record;
    nk         jsonb;
    after_id   bigint := 0;
    ev         audit.event;
    tr         audit.event;
    evs        audit.event[] := '{}';
    idents     jsonb[] := '{}';
    t_schemas  text[] := ARRAY[p_schema];
    t_tables   text[] := ARRAY[p_table];
    t_rels     regclass[] := ARRAY[NULL::regclass];
    keys       text[];
    in_table   boolean;
    present    boolean;
    n          integer;
    gap_from   bigint;
    gap_to     bigint;
    gap_ident  jsonb;
BEGIN
    -- The record's own events, following key changes forward.
    <<segments>>
    LOOP
        FOR ev IN SELECT * FROM audit.event e
                   WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
                     AND e.record_id @> k AND e.record_id = k AND e.id > after_id
                   ORDER BY e.id
        LOOP
            evs := evs || ev;
            idents := idents || k;
            IF ev.action = 'UPDATE' AND ev.status = 'success' THEN
                nk := audit.next_record_id(k, ev.new_data);
                IF nk IS DISTINCT FROM k THEN
                    k := nk;
                    after_id := ev.id;
                    CONTINUE segments;
                END IF;
            END IF;
        END LOOP;
        EXIT;
    END LOOP;

    -- TRUNCATE events name the truncated table: the table and, for a
    -- partitioned table, each of its partitions.
    IF p_live IS NOT NULL THEN
        SELECT t_schemas || coalesce(array_agg(nsp.nspname::text ORDER BY c.oid), '{}'),
               t_tables || coalesce(array_agg(c.relname::text ORDER BY c.oid), '{}'),
               t_rels || coalesce(array_agg(c.oid::regclass ORDER BY c.oid), '{}')
          INTO t_schemas, t_tables, t_rels
          FROM pg_partition_tree(p_live) pt
          JOIN pg_class c ON c.oid = pt.relid
          JOIN pg_namespace nsp ON nsp.oid = c.relnamespace
         WHERE pt.relid <> p_live;
    END IF;

    n := coalesce(array_length(evs, 1), 0);
    present := NULL;
    FOR i IN 1 .. n + 1 LOOP
        gap_from := NULL;
        IF i <= n THEN
            ev := evs[i];
            IF present AND ev.action = 'INSERT' THEN
                gap_from := evs[i - 1].id;
                gap_to := ev.id;
                gap_ident := idents[i];
            END IF;
        ELSIF present THEN
            -- The record existed after its last event.  If it is in the
            -- table now, nothing removed it since (assuming auditing went
            -- on); else look for a TRUNCATE.  Only possible with a key.
            in_table := NULL;
            keys := CASE WHEN p_live IS NOT NULL THEN audit.key_columns(p_live) END;
            IF keys IS NOT NULL
               AND ARRAY(SELECT jsonb_object_keys(k) ORDER BY 1) = ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
                BEGIN
                    -- as the table's owner: its types, domains and operators are its code
                    in_table := audit.eval_as_table_owner(p_live,
                        format('SELECT pg_catalog.to_jsonb(EXISTS (SELECT 1 FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) r WHERE %s))',
                               p_live, p_live,
                               (SELECT string_agg(format('t.%I = r.%I', kc, kc), ' AND ') FROM unnest(keys) kc)),
                        k)::text::boolean;
                EXCEPTION WHEN OTHERS THEN
                    in_table := NULL;
                END;
            END IF;
            IF in_table IS NOT TRUE THEN
                gap_from := evs[n].id;
                gap_to := NULL;
                gap_ident := k;
            END IF;
        END IF;

        IF gap_from IS NOT NULL THEN
            FOR tr IN SELECT * FROM audit.event e
                       WHERE e.class = 'data' AND e.action = 'TRUNCATE'
                         AND e.id > gap_from AND e.id < coalesce(gap_to, 9223372036854775807)
                         AND (e.schema_name, e.table_name) IN (SELECT * FROM unnest(t_schemas, t_tables))
                       ORDER BY e.id
            LOOP
                -- the table itself, or a partition the record is in
                IF (tr.schema_name = p_schema AND tr.table_name = p_table)
                   OR EXISTS (SELECT 1 FROM unnest(t_schemas, t_tables, t_rels) u(s, t, r)
                               WHERE u.s = tr.schema_name AND u.t = tr.table_name
                                 AND u.r IS NOT NULL AND audit.record_in_partition(u.r, gap_ident)) THEN
                    RETURN NEXT tr;
                    EXIT;
                END IF;
            END LOOP;
        END IF;

        IF i <= n THEN
            RETURN NEXT ev;
            IF ev.status = 'success' THEN
                present := ev.action IN ('INSERT', 'UPDATE');
            END IF;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_events(text, text, jsonb, regclass) IS
    'Internal: the events of one record oldest first, following key changes, with the TRUNCATE that removed it';
