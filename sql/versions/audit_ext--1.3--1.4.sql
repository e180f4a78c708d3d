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

-- ===========================================================================
-- B. Tamper evidence that holds against a superuser
-- ===========================================================================
-- The chain's own tables are append-only like the events (UPDATE and DELETE
-- refused, DROP/TRUNCATE refused by the utility hook as for every table of
-- schema audit).
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.chain_anchor
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
ALTER TABLE audit.chain_anchor ENABLE ALWAYS TRIGGER audit_append_only;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.chain_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
ALTER TABLE audit.chain_checkpoint ENABLE ALWAYS TRIGGER audit_append_only;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.chain_origin
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
ALTER TABLE audit.chain_origin ENABLE ALWAYS TRIGGER audit_append_only;

-- Up to 1.3 the append-only trigger let any DELETE through while any
-- function of schema audit with a SET clause was running.  Now the one
-- legitimate DELETE -- events moved out of a default partition into their
-- new month -- is done by this C function, and the trigger lets through only
-- its one statement on that one default partition.
CREATE FUNCTION audit.move_default_events(cls text, part regclass, lo timestamptz, hi timestamptz)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_move_default_events';
COMMENT ON FUNCTION audit.move_default_events(text, regclass, timestamptz, timestamptz) IS
    'Internal: move the events of [lo, hi) out of a class''s default partition into its new monthly partition (the only DELETE the append-only trigger allows)';
REVOKE ALL ON FUNCTION audit.move_default_events(text, regclass, timestamptz, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.create_month_partition(cls text, month_start timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- months in UTC, whatever the session's TimeZone
    lo    timestamptz := date_trunc('month', month_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi    timestamptz := (date_trunc('month', month_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    part  text := format('event_%s_p%s', cls, to_char(lo AT TIME ZONE 'UTC', 'YYYYMM'));
    moved bigint;
BEGIN
    IF to_regclass(format('audit.%I', part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- one creator at a time (held to the end of the transaction); then look again
    PERFORM pg_advisory_xact_lock(hashtext('audit_ext partitions'));
    IF to_regclass(format('audit.%I', part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Partitions made by 1.0 in a session whose TimeZone has DST can be an
    -- hour off the UTC month: fit between the neighbours instead of failing.
    SELECT coalesce(max(b.range_to), lo) INTO lo
      FROM audit.partition_bounds(cls) b WHERE b.range_from < lo AND b.range_to > lo;
    SELECT coalesce(min(b.range_from), hi) INTO hi
      FROM audit.partition_bounds(cls) b WHERE b.range_from < hi AND b.range_to > hi;
    IF lo >= hi OR EXISTS (SELECT 1 FROM audit.partition_bounds(cls) b
                            WHERE b.range_from < hi AND b.range_to > lo) THEN
        RETURN false;
    END IF;
    IF lo > now() + interval '1 day' THEN
        -- No event is routed to a month that has not begun.  ATTACH needs
        -- only SHARE UPDATE EXCLUSIVE on the class's table and ACCESS
        -- EXCLUSIVE on its default partition (the rows moved out of it must
        -- not come back in before the attach).  Writers of the current
        -- month and readers of any month neither wait for this nor block it.
        EXECUTE format('LOCK TABLE ONLY audit.%I IN SHARE UPDATE EXCLUSIVE MODE', 'event_' || cls);
        EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', 'event_' || cls || '_default');
    ELSE
        -- A month that has begun (missing partitions, back-dated events):
        -- writers may be routing its events into the default partition
        -- right now; they wait, and are routed to the new partition after.
        EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', 'event_' || cls);
    END IF;
    EXECUTE format('CREATE TABLE audit.%I (LIKE audit.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part, 'event_' || cls);
    -- the one DELETE the append-only trigger lets through (src/retention.c)
    moved := audit.move_default_events(cls, format('audit.%I', part)::regclass, lo, hi);
    PERFORM audit.create_event_indexes(format('audit.%I', part)::regclass);
    EXECUTE format('ALTER TABLE audit.%I ATTACH PARTITION audit.%I FOR VALUES FROM (%L) TO (%L)',
                   'event_' || cls, part, lo, hi);
    EXECUTE format('GRANT SELECT ON audit.%I TO audit_admin, audit_reader', part);
    IF moved > 0 THEN
        RAISE NOTICE 'moved % events from the default partition into %', moved, part;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.create_month_partition(text, timestamptz) IS
    'Internal: create the monthly partition of a class for the month of month_start, moving its rows out of the default partition';

-- Only audit.prune() removes events: audit.drop_event_partition() (C) and
-- audit.chain_record_pruned() refuse to run anywhere else.
CREATE FUNCTION audit.in_prune()
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_in_prune_sql';
COMMENT ON FUNCTION audit.in_prune() IS
    'Internal: whether audit.prune() is running in this session';
REVOKE ALL ON FUNCTION audit.in_prune() FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.chain_record_pruned(part regclass)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF NOT audit.in_prune() THEN
        RAISE EXCEPTION 'audit.chain_record_pruned() may only be called by audit.prune()'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'An anchor outside retention would make verify() accept events that were removed.',
                  HINT = 'Set a retention policy with audit.set_retention() and run audit.prune().';
    END IF;
    EXECUTE format(
        'INSERT INTO audit.chain_anchor (class, chain_lane, first_seq, last_seq, last_event_id, last_hash, events, partition_name)
         SELECT class, chain_lane, min(chain_seq), max(chain_seq),
                (array_agg(id ORDER BY chain_seq DESC))[1],
                (array_agg(hash ORDER BY chain_seq DESC))[1],
                count(*), %L
           FROM %s
          WHERE chain_lane IS NOT NULL AND chain_seq IS NOT NULL AND hash IS NOT NULL
          GROUP BY class, chain_lane
         ON CONFLICT (class, chain_lane, first_seq) DO NOTHING', part::text, part);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Anchors are bound to the trail: every PRUNE event records a digest of all
-- anchors after it added its own; audit.verify() compares the table with the
-- last one.  A forged anchor (or one removed with the trigger disabled) no
-- longer lets verify() accept deleted positions.
CREATE FUNCTION audit.anchor_digest()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(coalesce(string_agg(
               format('%s|%s|%s|%s|%s|%s', a.class, a.chain_lane, a.first_seq, a.last_seq, a.last_event_id,
                      encode(a.last_hash, 'hex')),
               E'\n' ORDER BY a.class, a.chain_lane, a.first_seq), ''), 'UTF8')), 'hex')
      FROM audit.chain_anchor a
$$;
COMMENT ON FUNCTION audit.anchor_digest() IS
    'Internal: SHA-256 over every row of audit.chain_anchor (class, lane, positions, last event, last hash), in key order';

CREATE FUNCTION audit.recorded_anchor_digest()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.detail ->> 'anchors_digest'
      FROM audit.event e
     WHERE e.class = 'system' AND e.action IN ('PRUNE', 'CHAIN ANCHORS') AND e.detail ? 'anchors_digest'
     ORDER BY e.id DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION audit.recorded_anchor_digest() IS
    'Internal: the anchor digest the last PRUNE (or CHAIN ANCHORS) event recorded; NULL when none';
REVOKE ALL ON FUNCTION audit.anchor_digest(), audit.recorded_anchor_digest() FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.prune()
RETURNS TABLE (partition text, class text, range_from timestamptz, range_to timestamptz,
               rows bigint, archive_file text, action text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    pol     record;
    cand    record;
    m       timestamptz;
    a_file  text;
    a_sum   text;
    a_min   bigint;
    a_max   bigint;
    a_bytes bigint;
    a_raw   bigint;
    hold    bigint;
    n       bigint;
    cutoff  timestamptz;
    digest_before text;
    mismatch boolean;
BEGIN
    PERFORM audit.require_audit_role(true);
    -- one prune at a time per database (the worker and a DBA may overlap)
    PERFORM pg_advisory_xact_lock(hashtext('audit_ext prune'));
    FOR pol IN SELECT p.class, p.keep, p.archive FROM audit.retention_policies p ORDER BY p.class LOOP
        cutoff := now() - pol.keep;
        -- Events of months that have no partition sit in the default
        -- partition (back-dated events, a restore): give each such past
        -- month its partition so that it is pruned like any other month.
        FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', event_time AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC''
                                   FROM audit.%I WHERE event_time < date_trunc(''month'', now() AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC''',
                                'event_' || pol.class || '_default') LOOP
            PERFORM audit.create_month_partition(pol.class, m);
        END LOOP;

        FOR cand IN
            SELECT b.relid, b.relname, b.range_from AS lo, b.range_to AS hi
              FROM audit.partition_bounds(pol.class) b
             WHERE b.range_to <= cutoff
             ORDER BY b.range_from
        LOOP
            SELECT min(h.id) INTO hold FROM audit.legal_holds h
             WHERE h.released_at IS NULL
               AND tstzrange(h.from_time, h.to_time) && tstzrange(cand.lo, cand.hi);
            IF hold IS NOT NULL THEN
                partition := cand.relname; class := pol.class; range_from := cand.lo; range_to := cand.hi;
                rows := NULL; archive_file := NULL; action := 'held by legal hold ' || hold;
                RETURN NEXT;
                CONTINUE;
            END IF;

            a_file := NULL; a_sum := NULL; a_min := NULL; a_max := NULL;
            IF pol.archive THEN
                -- written, fsynced and renamed into place before anything is dropped
                SELECT a.file, a.checksum, a.rows, a.min_id, a.max_id, a.bytes, a.raw_bytes
                  INTO a_file, a_sum, n, a_min, a_max, a_bytes, a_raw
                  FROM audit.archive_partition(cand.relid) a;
                IF a_file IS NOT NULL THEN
                    INSERT INTO audit.archives (file, checksum, class, partition_name, range_from, range_to,
                                                rows, min_id, max_id, bytes, raw_bytes, archived_by)
                    VALUES (a_file, a_sum, pol.class, cand.relname, cand.lo, cand.hi,
                            n, a_min, a_max, a_bytes, a_raw,
                            CASE WHEN audit.in_maintenance_worker() THEN 'worker' ELSE audit.session_role() END);
                END IF;
            ELSE
                EXECUTE format('SELECT count(*) FROM %s', cand.relid::regclass) INTO n;
            END IF;

            -- the integrity chain records the heads of what leaves the trail,
            -- so that audit.verify() still verifies what remains.  The
            -- anchors as they were must be what the last PRUNE event
            -- recorded: anything else was added or removed outside prune.
            digest_before := audit.anchor_digest();
            mismatch := digest_before IS DISTINCT FROM coalesce(audit.recorded_anchor_digest(), digest_before);
            PERFORM audit.chain_record_pruned(cand.relid::regclass);
            PERFORM audit.drop_event_partition(cand.relid);

            -- the PRUNE event commits to every anchor (audit.verify checks it)
            PERFORM audit.log_system_event('PRUNE',
                jsonb_build_object('partition', cand.relname, 'class', pol.class,
                                   'from_time', cand.lo, 'to_time', cand.hi, 'rows', n,
                                   'keep', pol.keep::text,
                                   'archive_file', a_file, 'checksum', a_sum,
                                   'min_id', a_min, 'max_id', a_max,
                                   'anchors_digest', audit.anchor_digest())
                || CASE WHEN mismatch THEN jsonb_build_object('anchors_mismatch', true, 'risk', 'critical',
                                                               'anchors_digest_found', digest_before)
                        ELSE '{}' END);
            partition := cand.relname; class := pol.class; range_from := cand.lo; range_to := cand.hi;
            rows := n; archive_file := a_file;
            action := CASE WHEN a_file IS NOT NULL THEN 'archived and dropped' ELSE 'dropped' END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.prune() IS
    'Apply the retention policies: drop each monthly partition older than now() - keep that no active legal hold overlaps, archiving it first when the policy says so; one system/PRUNE event per partition; returns what was removed (and what a hold kept)';

-- audit.verify() gains protection_off_events: the events of the range that
-- switched a protection off (audit_ext.protect_trail, audit_ext.log_ddl, by
-- any route), so that a "verified" trail still says when it was left open.
-- The anchors must be what the last PRUNE event recorded.
DROP FUNCTION audit.verify(timestamptz, timestamptz);
CREATE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT protection_off_events bigint)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded text;
    actual   text;
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    SELECT * INTO verified, events, chains, legacy_events, unverifiable_links, breaks,
                  first_broken_event_id, first_broken_event_time, problem
      FROM audit.verify_chains(from_time, to_time);
    recorded := audit.recorded_anchor_digest();
    actual := audit.anchor_digest();
    IF EXISTS (SELECT 1 FROM audit.chain_anchor) AND recorded IS DISTINCT FROM actual THEN
        verified := false;
        breaks := breaks + 1;
        problem := coalesce(problem || '; ', '') ||
                   'audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()';
    END IF;
    SELECT count(*) INTO protection_off_events
      FROM audit.event e
     WHERE e.class = 'ddl' AND e.detail @> '{"audit_protection_off": true}'
       AND (from_time IS NULL OR e.event_time >= from_time)
       AND (to_time IS NULL OR e.event_time < to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL) and the chain anchors; reports the first event where a chain breaks, and how many events of the range switched a protection off';
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz) TO PUBLIC;

-- An installation that already pruned: its anchors are committed to now.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit.chain_anchor) THEN
        PERFORM audit.log_system_event('CHAIN ANCHORS',
            jsonb_build_object('anchors_digest', audit.anchor_digest(),
                               'anchors', (SELECT count(*) FROM audit.chain_anchor),
                               'reason', 'upgrade to 1.4'));
    END IF;
END
$$;

-- The shipped alert rule also fires when a protection is switched off.
UPDATE audit.alert_rules
   SET query = '^(DISABLE AUDIT|SET session_replication_role)\n|"audit_trigger_disabled": true|"audit_protection_off": true',
       description = 'Auditing turned off on a table (audit.disable, DISABLE TRIGGER, session_replication_role = replica), or a protection of the trail switched off (audit_ext.protect_trail, audit_ext.log_ddl)'
 WHERE name = 'audit_disabled' AND builtin;

-- ===========================================================================
-- D. Every change to auditing's own configuration is an event
-- ===========================================================================
-- Alert rules created, dropped, switched on or off, and alerts acknowledged
-- are system events (like retention policies and legal holds), with who.
CREATE OR REPLACE FUNCTION audit.create_alert_rule(
    name          text,
    class         text,
    action        text     DEFAULT NULL,
    threshold     integer  DEFAULT 1,
    within        interval DEFAULT NULL,
    group_by      text     DEFAULT NULL,
    severity      text     DEFAULT 'medium',
    cooldown      interval DEFAULT '10 minutes',
    min_rows      bigint   DEFAULT NULL,
    outside_hours text     DEFAULT NULL,
    query         text     DEFAULT NULL,
    table_name    text     DEFAULT NULL,
    actor         text     DEFAULT NULL,
    status        text     DEFAULT NULL,
    timezone      text     DEFAULT NULL,
    channel       text     DEFAULT 'audit_alerts',
    enabled       boolean  DEFAULT true,
    description   text     DEFAULT NULL)
RETURNS audit.alert_rules
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r audit.alert_rules;
BEGIN
    PERFORM audit.require_audit_role(true);
    r.name := create_alert_rule.name;
    r.class := create_alert_rule.class;
    r.action := create_alert_rule.action;
    r.table_name := create_alert_rule.table_name;
    r.actor := create_alert_rule.actor;
    r.status := create_alert_rule.status;
    r.query := create_alert_rule.query;
    r.min_rows := create_alert_rule.min_rows;
    r.threshold := create_alert_rule.threshold;
    r.within := create_alert_rule.within;
    r.group_by := create_alert_rule.group_by;
    r.outside_hours := create_alert_rule.outside_hours;
    r.timezone := create_alert_rule.timezone;
    r.severity := create_alert_rule.severity;
    r.cooldown := create_alert_rule.cooldown;
    r.channel := create_alert_rule.channel;
    r.enabled := coalesce(create_alert_rule.enabled, true);
    r.builtin := false;
    r.description := create_alert_rule.description;
    r.created_at := now();
    r.created_by := CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END;
    PERFORM audit.check_alert_rule(r);
    IF EXISTS (SELECT 1 FROM audit.alert_rules x WHERE x.name = r.name) THEN
        RAISE EXCEPTION 'alert rule "%" already exists', r.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with audit.drop_alert_rule(), or choose another name.';
    END IF;
    INSERT INTO audit.alert_rules SELECT r.*;
    PERFORM audit.log_system_event('CREATE ALERT RULE', jsonb_build_object('rule', r.name) || (to_jsonb(r) - 'created_at' - 'created_by' - 'builtin'));
    RETURN r;
END
$$;
COMMENT ON FUNCTION audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text) IS
    'audit_admin: add an alert rule; fires when threshold matching events (class, action, table_name, actor, status, query regex, min_rows, outside_hours) happen within "within" per group_by key; one alert per rule and key per cooldown, sent with NOTIFY on channel';

CREATE OR REPLACE FUNCTION audit.drop_alert_rule(name text, if_exists boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old audit.alert_rules;
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.alert_rules r WHERE r.name = drop_alert_rule.name RETURNING r.* INTO old;
    IF FOUND THEN
        PERFORM audit.log_system_event('DROP ALERT RULE',
            jsonb_build_object('rule', old.name, 'builtin', old.builtin, 'was_enabled', old.enabled, 'class', old.class));
    ELSE
        IF if_exists THEN
            RAISE NOTICE 'alert rule "%" does not exist, skipping', drop_alert_rule.name;
            RETURN false;
        END IF;
        RAISE EXCEPTION 'alert rule "%" does not exist', drop_alert_rule.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The rules are listed in audit.alert_rules.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.drop_alert_rule(text, boolean) IS
    'audit_admin: remove an alert rule (its alerts stay); 42704 if there is none unless if_exists';

CREATE OR REPLACE FUNCTION audit.set_alert_rule_enabled(name text, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role(true);
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE audit.alert_rules r SET enabled = set_alert_rule_enabled.enabled
     WHERE r.name = set_alert_rule_enabled.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert rule "%" does not exist', set_alert_rule_enabled.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'The rules are listed in audit.alert_rules.';
    END IF;
    PERFORM audit.log_system_event(CASE WHEN enabled THEN 'ENABLE ALERT RULE' ELSE 'DISABLE ALERT RULE' END,
        jsonb_build_object('rule', set_alert_rule_enabled.name));
END
$$;
COMMENT ON FUNCTION audit.set_alert_rule_enabled(text, boolean) IS
    'audit_admin: turn an alert rule on or off';

CREATE OR REPLACE FUNCTION audit.acknowledge_alert(alert_id bigint, note text DEFAULT NULL)
RETURNS audit.alerts
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a audit.alerts;
BEGIN
    PERFORM audit.require_audit_role(true);
    SELECT * INTO a FROM audit.alerts x WHERE x.alert_id = acknowledge_alert.alert_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % does not exist', acknowledge_alert.alert_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Open alerts: SELECT * FROM audit.alerts WHERE acknowledged_at IS NULL.';
    END IF;
    IF a.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'alert % was already acknowledged by %', a.alert_id, a.acknowledged_by
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its acknowledged_at and note are in audit.alerts.';
    END IF;
    UPDATE audit.alerts x
       SET acknowledged_at = clock_timestamp(),
           acknowledged_by = CASE WHEN current_setting('role') = 'none' THEN session_user::text
                                  ELSE current_setting('role') END,
           note = acknowledge_alert.note
     WHERE x.alert_id = acknowledge_alert.alert_id
    RETURNING x.* INTO a;
    PERFORM audit.log_system_event('ACKNOWLEDGE ALERT',
        jsonb_build_object('alert_id', a.alert_id, 'rule', a.rule, 'key', a.key, 'severity', a.severity,
                           'note', a.note));
    RETURN a;
END
$$;

-- The owner of an audited partitioned table may create and attach
-- partitions: PostgreSQL clones the row trigger onto them and checks EXECUTE
-- on its function for the current user (a blank name in the error, because
-- the clone has no function name).  Called other than as a trigger, the
-- functions refuse; as a trigger they record the changes of the table they
-- are on, nothing else.
GRANT EXECUTE ON FUNCTION audit.capture_row(), audit.capture_truncate() TO PUBLIC;

-- audit.chain_checkpoint() is granted to audit_admin but inserted into a
-- table audit_admin may only read: it runs as the owner now, its SPI path
-- pinned (src/elevated.c).
ALTER FUNCTION audit.chain_checkpoint() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Archives: audit.restore_archive() loads only files this database's
-- audit.archives lists; file names carry the database's OID
-- (src/archive.c), so databases "x.y" and "x_y" no longer share names.
CREATE OR REPLACE FUNCTION audit.restore_archive(file text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    known text;
    n     bigint;
BEGIN
    PERFORM audit.require_audit_role(true);
    SELECT a.checksum INTO known FROM audit.archives a WHERE a.file = file;
    -- Only this database's own archives: another database's file (or one
    -- copied in from elsewhere) would load events this trail never held.
    IF known IS NULL THEN
        -- a path or a malformed name: the C check (archive.c) says which rule it breaks
        IF file IS NULL OR strpos(file, '/') > 0 OR strpos(file, '..') > 0 OR left(file, 1) = '.'
           OR right(file, 9) <> '.jsonl.gz' THEN
            PERFORM audit.archive_checksum(file);
        END IF;
        RAISE EXCEPTION 'archive file "%" is not an archive of this database', file
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'audit.archives of this database does not list it.',
                  HINT = 'Restore it in the database whose audit.archives lists it; SELECT file FROM audit.archives lists this one''s.';
    END IF;
    -- the file's own checksum is verified by audit.read_archive; it must
    -- also match what was recorded when it was written
    IF known <> audit.archive_checksum(file) THEN
        RAISE EXCEPTION 'archive file "%" does not match the checksum recorded in audit.archives', file
            USING ERRCODE = 'data_corrupted',
                  DETAIL = format('Recorded: %s.', known),
                  HINT = 'The file was replaced or altered after it was written; restore it from a backup copy.';
    END IF;
    DELETE FROM audit.restored_event r WHERE r.archive_file = file;
    -- LATERAL: "(f(x)).*" would call f once per column
    INSERT INTO audit.restored_event
    SELECT r.*
      FROM audit.read_archive(file) l,
           LATERAL jsonb_populate_record(NULL::audit.restored_event,
                                         l::jsonb || jsonb_build_object('archive_file', file)) r;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM audit.log_system_event('RESTORE ARCHIVE', jsonb_build_object('archive_file', file, 'rows', n));
    RETURN n;
END
$$;

-- privilege_escalation also fires for membership in a superuser role
-- ("GRANT postgres TO x", "CREATE ROLE x IN ROLE postgres") and in the roles
-- that reach the server's files and programs (pg_execute_server_program,
-- pg_write_server_files, pg_read_server_files): the capture flags them
-- (src/ddl_capture.c, grants_superuser / grants_server_access).
UPDATE audit.alert_rules
   SET query = '^(CREATE ROLE|ALTER ROLE|GRANT ROLE)\n.*("(superuser|createrole)": true|"(roles|in_role)": \[[^]]*"audit_admin"|"grants_(superuser|server_access)": true)',
       description = 'A role granted SUPERUSER, CREATEROLE, membership in a superuser role, in audit_admin, or in pg_execute_server_program / pg_write_server_files / pg_read_server_files'
 WHERE name = 'privilege_escalation' AND builtin;


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
       description = 'Capture switched off on a table: audit.disable, an audit trigger disabled, made replica only or dropped (any route, whatever audit_ext.log_ddl says), session_replication_role = replica; or a protection of the trail switched off (audit_ext.protect_trail, audit_ext.log_ddl)'
 WHERE name = 'audit_disabled' AND builtin;

-- Rows an event stands for, for rules' min_rows: the larger of "rows"
-- (returned) and "rows_read" (read from the table); -1 without either.
-- One definition for the candidate filter of audit.evaluate_alerts() and
-- for audit.alert_matches().
CREATE FUNCTION audit.event_rows(detail jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- no SET clause: it is inlined into its callers (whose search_path is
-- pinned) instead of being called per event; operators are qualified
AS $$
    SELECT greatest(
        coalesce(CASE WHEN detail OPERATOR(pg_catalog.->>) 'rows' OPERATOR(pg_catalog.~) '^[0-9]{1,18}$'
                      THEN (detail OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int8 END, -1),
        coalesce(CASE WHEN detail OPERATOR(pg_catalog.->>) 'rows_read' OPERATOR(pg_catalog.~) '^[0-9]{1,18}$'
                      THEN (detail OPERATOR(pg_catalog.->>) 'rows_read')::pg_catalog.int8 END, -1))
$$;
COMMENT ON FUNCTION audit.event_rows(jsonb) IS
    'Internal: the rows an event stands for in alert rules'' min_rows: the larger of detail rows and rows_read, -1 without either';
REVOKE ALL ON FUNCTION audit.event_rows(jsonb) FROM PUBLIC;

-- ===========================================================================
-- D. Alert notifications anyone can see, and tell from forgeries
-- ===========================================================================
-- PostgreSQL has no privilege on LISTEN or NOTIFY: every role of every
-- database can listen on audit_alerts and can send a notification there.
-- Since 1.4 the payload carries the alert's id, rule, severity, database and
-- time only (the key -- a client address, an actor, a table -- and the event
-- ids are read from audit.alerts, which only the audit roles may), and a
-- signature: a keyed SHA-256 with a secret of this database that only the
-- audit roles can read (audit.alert_secret).  audit.alert_is_genuine(payload)
-- checks it and that the alert exists as described.
CREATE TABLE audit.alert_secret (
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit.alert_secret IS
    'The key alert notifications are signed with (one row); readable by the audit roles only';
SELECT pg_catalog.pg_extension_config_dump('audit.alert_secret', '');
INSERT INTO audit.alert_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                               || pg_catalog.clock_timestamp()::text, 'UTF8'));
REVOKE ALL ON audit.alert_secret FROM PUBLIC;
GRANT SELECT ON audit.alert_secret TO audit_admin, audit_reader;

-- The signed part: alert_id|rule|severity|database|fired_at (fired_at as
-- microseconds since the epoch, whatever the session's settings).
CREATE FUNCTION audit.alert_signature(alert_id bigint, rule text, severity text, database text, fired_at_us bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(s.secret || convert_to(format('%s|%s|%s|%s|%s', alert_id, rule, severity, database, fired_at_us), 'UTF8')
                         || s.secret), 'hex')
      FROM audit.alert_secret s
     ORDER BY s.created_at DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION audit.alert_signature(bigint, text, text, text, bigint) IS
    'Internal: the signature of an alert notification: hex SHA-256 of secret || "alert_id|rule|severity|database|fired_at_us" || secret';
REVOKE ALL ON FUNCTION audit.alert_signature(bigint, text, text, text, bigint) FROM PUBLIC;

CREATE FUNCTION audit.alert_payload(a audit.alerts)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object('alert_id', a.alert_id, 'rule', a.rule, 'severity', a.severity,
                             'database', current_database(),
                             'fired_at_us', (extract(epoch FROM a.fired_at) * 1000000)::bigint,
                             'signature', audit.alert_signature(a.alert_id, a.rule, a.severity, current_database(),
                                                                (extract(epoch FROM a.fired_at) * 1000000)::bigint))::text
$$;
COMMENT ON FUNCTION audit.alert_payload(audit.alerts) IS
    'Internal: the NOTIFY payload of an alert: alert_id, rule, severity, database, fired_at_us and its signature; details are in audit.alerts';
REVOKE ALL ON FUNCTION audit.alert_payload(audit.alerts) FROM PUBLIC;

CREATE FUNCTION audit.alert_is_genuine(payload text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb;
BEGIN
    PERFORM audit.require_audit_role();
    BEGIN
        p := payload::jsonb;
    EXCEPTION WHEN others THEN
        RETURN false;
    END;
    IF p IS NULL OR jsonb_typeof(p) <> 'object' OR NOT p ?& ARRAY['alert_id', 'rule', 'severity', 'database', 'fired_at_us', 'signature']
       OR p ->> 'database' <> current_database() THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT 1 FROM audit.alerts a
         WHERE a.alert_id::text = p ->> 'alert_id' AND a.rule = p ->> 'rule' AND a.severity = p ->> 'severity'
           AND (extract(epoch FROM a.fired_at) * 1000000)::bigint::text = p ->> 'fired_at_us'
           AND audit.alert_signature(a.alert_id, a.rule, a.severity, current_database(),
                                     (extract(epoch FROM a.fired_at) * 1000000)::bigint) = p ->> 'signature');
END
$$;
COMMENT ON FUNCTION audit.alert_is_genuine(text) IS
    'Whether an alert notification''s payload was sent by audit_ext: its signature verifies and the alert exists as described (audit roles; 42501 otherwise)';
REVOKE ALL ON FUNCTION audit.alert_is_genuine(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.alert_is_genuine(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION audit.evaluate_alerts()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st        audit.alert_state;
    xips      xid8[] := ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot()));
    still     jsonb := '{}';
    done_xids bigint[] := '{}';
    done_lo   bigint;
    hi        bigint;
    new_hi    bigint;
    n_cand    bigint;
    fired     integer := 0;
    cand      audit.event[];
    rr        audit.alert_rules;
    g         record;
    w         record;
    a         audit.alerts;
    p         record;
BEGIN
    -- one round at a time; an advisory lock rather than FOR UPDATE, which
    -- would cost a transaction id and WAL every round
    IF NOT pg_try_advisory_xact_lock(hashtext('audit_ext'), hashtext('evaluate_alerts')) THEN
        RETURN 0;
    END IF;
    SELECT * INTO st FROM audit.alert_state;
    IF NOT FOUND THEN
        INSERT INTO audit.alert_state DEFAULT VALUES RETURNING * INTO st;
    END IF;
    hi := st.high_watermark;
    IF hi IS NULL THEN
        -- first round: events older than the extension's alert state (a
        -- restored trail) are history, not news
        hi := coalesce((SELECT e.id FROM audit.event e WHERE e.event_time < st.started_at
                         ORDER BY e.id DESC LIMIT 1), 0);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM audit.alert_rules WHERE enabled) THEN
        -- nothing to evaluate: move on, so that enabling a rule later does
        -- not fire on the past
        new_hi := greatest(hi, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit.event_id_seq));
        IF st.high_watermark IS DISTINCT FROM new_hi OR st.pending <> '{}' THEN
            UPDATE audit.alert_state SET high_watermark = new_hi, pending = '{}', evaluated_at = now();
        END IF;
        RETURN -1;
    END IF;

    FOR p IN SELECT k.key, k.value FROM jsonb_each_text(st.pending) k LOOP
        IF p.key::xid8 = ANY (xips) THEN
            still := still || jsonb_build_object(p.key, p.value::bigint);
        ELSE
            done_xids := done_xids || p.key::bigint;
            done_lo := least(done_lo, p.value::bigint);
        END IF;
    END LOOP;

    -- at most 10,000 new events a round (the rest next round, in id order)
    SELECT max(x.id), count(*) INTO new_hi, n_cand
      FROM (SELECT e.id FROM audit.event e WHERE e.id > hi ORDER BY e.id LIMIT 10000) x;
    new_hi := greatest(hi, new_hi);
    -- only events some enabled rule could match (class, action, rows) are
    -- read whole: most events (e.g. small reads) stop at this semi-join
    cand := ARRAY(SELECT e FROM audit.event e
                   WHERE e.id > hi AND e.id <= new_hi
                     AND EXISTS (SELECT 1 FROM audit.alert_rules r
                                     WHERE r.enabled AND r.class = e.class
                                       AND (r.action IS NULL OR r.action = e.action)
                                       AND (r.min_rows IS NULL OR r.min_rows <= audit.event_rows(e.detail)))
                   ORDER BY e.id);
    IF cardinality(done_xids) > 0 THEN
        cand := cand || ARRAY(SELECT e FROM audit.event e
                               WHERE e.id > done_lo AND e.id <= hi AND e.txid = ANY (done_xids)
                                 AND EXISTS (SELECT 1 FROM audit.alert_rules r
                                     WHERE r.enabled AND r.class = e.class
                                       AND (r.action IS NULL OR r.action = e.action)
                                       AND (r.min_rows IS NULL OR r.min_rows <= audit.event_rows(e.detail))));
    END IF;

    IF cardinality(cand) > 0 THEN
        FOR g IN
            SELECT r.name, audit.alert_key(r.group_by, c) AS key,
                   count(*) AS n, min(c.id) AS first_id, max(c.id) AS last_id,
                   min(c.event_time) AS first_time, max(c.event_time) AS last_time
              FROM unnest(cand) c
              JOIN audit.alert_rules r ON r.enabled AND r.class = c.class
             WHERE audit.alert_matches(r, c)
             -- without threshold and cooldown, every event is an alert of its own
             GROUP BY r.name, 2, CASE WHEN r.threshold = 1 AND r.cooldown = interval '0' THEN c.id END
             ORDER BY min(c.id)
        LOOP
            SELECT * INTO rr FROM audit.alert_rules r WHERE r.name = g.name;
            -- one rule and key fire at most once per cooldown
            CONTINUE WHEN rr.cooldown > interval '0'
                      AND EXISTS (SELECT 1 FROM audit.alerts x
                                   WHERE x.rule = rr.name AND x.key = g.key
                                     AND x.fired_at > now() - rr.cooldown);
            IF rr.threshold > 1 THEN
                -- matching events of this key in the window ending at the newest one
                SELECT count(*) AS n, min(e.id) AS first_id, max(e.id) AS last_id,
                       min(e.event_time) AS first_time, max(e.event_time) AS last_time
                  INTO w
                  FROM audit.event e
                 WHERE e.class = rr.class
                   AND e.event_time > g.last_time - rr.within AND e.event_time <= g.last_time
                   AND audit.alert_matches(rr, e)
                   AND audit.alert_key(rr.group_by, e) = g.key;
                CONTINUE WHEN w.n < rr.threshold;
            ELSE
                w := g;
            END IF;
            INSERT INTO audit.alerts (rule, severity, key, count, first_event_id, last_event_id,
                                      first_event_time, last_event_time, channel)
            VALUES (rr.name, rr.severity, g.key, w.n, w.first_id, w.last_id,
                    w.first_time, w.last_time, rr.channel)
            RETURNING * INTO a;
            -- Anyone may LISTEN (PostgreSQL has no privilege for it): the
            -- payload names the alert, never its key or events, and is
            -- signed so that listeners can tell it from a forged NOTIFY.
            PERFORM pg_notify(a.channel, audit.alert_payload(a));
            fired := fired + 1;
        END LOOP;
    END IF;

    -- transactions in progress now: their events may still appear above
    -- the old watermark (or above their own start when already pending)
    SELECT still || coalesce(jsonb_object_agg(x::text, hi), '{}') INTO still
      FROM unnest(xips) x
     WHERE NOT still ? x::text;
    IF n_cand > 0 OR fired > 0 OR st.high_watermark IS DISTINCT FROM new_hi OR st.pending <> still THEN
        UPDATE audit.alert_state
           SET high_watermark = new_hi, pending = still, evaluated_at = now(),
               events_evaluated = events_evaluated + n_cand, alerts_fired = alerts_fired + fired;
    END IF;
    RETURN fired;
END
$$;

-- Read events carry "rows_read" beside "rows" (src/read_audit.c): an
-- aggregate over a whole table returns one row and reads them all.  A rule's
-- min_rows compares the larger of the two.
CREATE OR REPLACE FUNCTION audit.alert_matches(r audit.alert_rules, e audit.event)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.class = r.class
       AND (r.action IS NULL OR e.action = r.action)
       AND (r.status IS NULL OR e.status = r.status)
       AND (r.actor IS NULL OR e.actor = r.actor)
       AND (r.table_name IS NULL OR r.table_name = e.table_name
            OR r.table_name = e.schema_name || '.' || e.table_name)
       AND (r.min_rows IS NULL OR audit.event_rows(e.detail) >= r.min_rows)
       AND (r.query IS NULL
            OR (e.action || E'\n' || coalesce(e.detail::text, '') || E'\n' || coalesce((SELECT s.statement_text FROM audit.statement s
                                 WHERE s.statement_id = e.statement_id), '')) ~* r.query)
       AND (r.outside_hours IS NULL OR NOT audit.within_hours(e.event_time, r.outside_hours, r.timezone))
$$;
