-- audit_ext 1.4 -> 1.5: statement texts pruned with their events (issue 18 D); capture switched off without a statement is found and recorded (issue 18 C)
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.5'" to load this file. \quit

-- ===========================================================================
-- Statement texts pruned with their events (issue 18 D)
-- ===========================================================================
-- audit.statement grew without bound: texts were never deleted when
-- audit.prune() dropped the event partitions that referred to them.  Now
-- audit.prune() ends with audit.prune_statements() (C, src/retention.c): the
-- texts no remaining event refers to are deleted, under a lock that keeps
-- backends from using a statement id meanwhile and a shared generation that
-- makes them forget the ids they cached (src/statement_store.c).  Archives
-- carry the texts their events refer to (format 2, src/archive.c), and
-- audit.restore_archive() puts them back.

-- Archives written before 1.5 carry only statement ids: the texts they refer
-- to are kept (every text first seen before the end of the newest such
-- archive; audit.prune_statements()).
ALTER TABLE audit.archives ADD COLUMN statements_included boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN audit.archives.statements_included IS
    'The file carries the statement texts its events refer to (archive format 2, since 1.5); false: only statement_id (texts first seen before range_to are never pruned)';

DROP FUNCTION audit.archive_partition(regclass);
CREATE FUNCTION audit.archive_partition(part regclass, with_statements boolean DEFAULT false,
    OUT file text, OUT checksum text, OUT rows bigint, OUT min_id bigint,
    OUT max_id bigint, OUT bytes bigint, OUT raw_bytes bigint)
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_archive_partition';
COMMENT ON FUNCTION audit.archive_partition(regclass, boolean) IS
    'Internal: write a partition to a durable gzip JSON-lines file (one row_to_json line per event, in id order; with_statements: then a section line and the statement texts the events refer to) and its .sha256 file in audit_ext.archive_directory';
REVOKE ALL ON FUNCTION audit.archive_partition(regclass, boolean) FROM PUBLIC;

CREATE FUNCTION audit.prune_statements()
RETURNS bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_prune_statements';
COMMENT ON FUNCTION audit.prune_statements() IS
    'Internal: delete the statement texts no remaining event (audit.event, audit.restored_event) refers to; only inside audit.prune(); NULL when texts cannot be pruned (no shared_preload_libraries, or a transaction snapshot)';
REVOKE ALL ON FUNCTION audit.prune_statements() FROM PUBLIC;

CREATE FUNCTION audit.lock_statements()
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_lock_statements';
COMMENT ON FUNCTION audit.lock_statements() IS
    'Internal: audit.prune() locks audit.statement (SHARE) before its drops, in the order writers take their locks; false when texts cannot be pruned (then no lock)';
REVOKE ALL ON FUNCTION audit.lock_statements() FROM PUBLIC;

-- audit.prune() in two phases (1.5).  First every partition whose time has
-- come is archived (with the statement texts its events refer to), while
-- writers go on.  Then audit.statement is locked (SHARE: it waits for the
-- transactions that used a statement id and holds off new ones until prune
-- commits), the partitions are anchored and dropped, and the texts no
-- remaining event refers to are deleted; the call's last PRUNE event says
-- how many ("statements_removed"; null with "statements_kept_reason" when
-- they could not be pruned).  Locking before the drops puts prune's locks in
-- the order writers take theirs (statement lock, then event partitions):
-- taken after the drops it deadlocked with a writer (isolation test
-- prune_race).  When a month of back-dated events gets its partition first
-- (under a lock on the whole class), the statement lock comes before that.  The lock wait is bounded
-- by lock_timeout (the maintenance worker: 5 s): then the partitions are
-- dropped all the same and the texts left for the next prune.  The PRUNE event
-- of each partition is written before the next partition's anchors are
-- compared with the last one recorded, so only the last waits for the count.
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
    c       record;
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
    todo    jsonb := '[]';  -- phase 1's result, in the order returned
    drops   integer := 0;
    locked  boolean := false;
    tried   boolean := false;   -- audit.lock_statements() called
    pending jsonb;          -- the detail of the last PRUNE event, written at the end
    st_removed bigint;
    st_reason  text;
BEGIN
    PERFORM audit.require_audit_role(true);
    -- one prune at a time per database (the worker and a DBA may overlap)
    PERFORM pg_advisory_xact_lock(hashtext('audit_ext prune'));

    -- Phase 1: archive what goes
    FOR pol IN SELECT p.class, p.keep, p.archive FROM audit.retention_policies p ORDER BY p.class LOOP
        cutoff := now() - pol.keep;
        -- Events of months that have no partition sit in the default
        -- partition (back-dated events, a restore): give each such past
        -- month its partition so that it is pruned like any other month.
        FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', event_time AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC''
                                   FROM audit.%I WHERE event_time < date_trunc(''month'', now() AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC''',
                                'event_' || pol.class || '_default') LOOP
            -- under a lock on the whole class: the statement lock first
            IF NOT tried THEN
                tried := true;
                BEGIN
                    locked := audit.lock_statements();
                EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                    locked := false;
                    st_reason := SQLERRM;
                END;
            END IF;
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
                todo := todo || jsonb_build_array(jsonb_build_object(
                            'relname', cand.relname, 'cls', pol.class, 'lo', cand.lo, 'hi', cand.hi, 'hold', hold));
                CONTINUE;
            END IF;

            a_file := NULL; a_sum := NULL; a_min := NULL; a_max := NULL;
            IF pol.archive THEN
                -- written, fsynced and renamed into place before anything is dropped
                SELECT a.file, a.checksum, a.rows, a.min_id, a.max_id, a.bytes, a.raw_bytes
                  INTO a_file, a_sum, n, a_min, a_max, a_bytes, a_raw
                  FROM audit.archive_partition(cand.relid, true) a;
                IF a_file IS NOT NULL THEN
                    INSERT INTO audit.archives (file, checksum, class, partition_name, range_from, range_to,
                                                rows, min_id, max_id, bytes, raw_bytes, archived_by,
                                                statements_included)
                    VALUES (a_file, a_sum, pol.class, cand.relname, cand.lo, cand.hi,
                            n, a_min, a_max, a_bytes, a_raw,
                            CASE WHEN audit.in_maintenance_worker() THEN 'worker' ELSE audit.session_role() END,
                            true);
                END IF;
            ELSE
                EXECUTE format('SELECT count(*) FROM %s', cand.relid::regclass) INTO n;
            END IF;
            todo := todo || jsonb_build_array(jsonb_build_object(
                        'relid', cand.relid::oid, 'relname', cand.relname, 'cls', pol.class, 'lo', cand.lo, 'hi', cand.hi,
                        'n', n, 'keep', pol.keep::text, 'a_file', a_file, 'a_sum', a_sum,
                        'a_min', a_min, 'a_max', a_max));
            drops := drops + 1;
        END LOOP;
    END LOOP;

    -- Phase 2: lock the texts, drop, prune the texts
    IF drops > 0 AND NOT tried THEN
        tried := true;
        BEGIN
            locked := audit.lock_statements();
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            locked := false;
            st_reason := SQLERRM;
        END;
    END IF;
    IF tried AND NOT locked AND st_reason IS NULL THEN
        st_reason := CASE WHEN current_setting('transaction_isolation') IN ('repeatable read', 'serializable')
                          THEN 'transaction snapshot (run audit.prune() in READ COMMITTED)'
                          ELSE 'no shared memory (audit_ext is not in shared_preload_libraries)' END;
    END IF;
    FOR c IN SELECT x.* FROM jsonb_to_recordset(todo) AS x(relid oid, relname text, cls text, lo timestamptz,
                                                         hi timestamptz, n bigint, keep text, a_file text,
                                                         a_sum text, a_min bigint, a_max bigint, hold bigint)
    LOOP
        partition := c.relname; class := c.cls; range_from := c.lo; range_to := c.hi;
        IF c.hold IS NOT NULL THEN
            rows := NULL; archive_file := NULL; action := 'held by legal hold ' || c.hold;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- the previous partition's PRUNE event: written before this
        -- partition's anchors are compared with the last one recorded
        IF pending IS NOT NULL THEN
            PERFORM audit.log_system_event('PRUNE', pending);
            pending := NULL;
        END IF;

        -- the integrity chain records the heads of what leaves the trail,
        -- so that audit.verify() still verifies what remains.  The
        -- anchors as they were must be what the last PRUNE event
        -- recorded: anything else was added or removed outside prune.
        digest_before := audit.anchor_digest();
        mismatch := digest_before IS DISTINCT FROM coalesce(audit.recorded_anchor_digest(), digest_before);
        PERFORM audit.chain_record_pruned(c.relid::regclass);
        PERFORM audit.drop_event_partition(c.relid);

        -- the PRUNE event commits to every anchor (audit.verify checks it)
        pending := jsonb_build_object('partition', c.relname, 'class', c.cls,
                               'from_time', c.lo, 'to_time', c.hi, 'rows', c.n,
                               'keep', c.keep,
                               'archive_file', c.a_file, 'checksum', c.a_sum,
                               'min_id', c.a_min, 'max_id', c.a_max,
                               'anchors_digest', audit.anchor_digest())
            || CASE WHEN mismatch THEN jsonb_build_object('anchors_mismatch', true, 'risk', 'critical',
                                                           'anchors_digest_found', digest_before)
                    ELSE '{}' END;
        rows := c.n; archive_file := c.a_file;
        action := CASE WHEN c.a_file IS NOT NULL THEN 'archived and dropped' ELSE 'dropped' END;
        RETURN NEXT;
    END LOOP;

    IF pending IS NOT NULL THEN
        IF locked THEN
            st_removed := audit.prune_statements();
        END IF;
        PERFORM audit.log_system_event('PRUNE', pending
            || jsonb_build_object('statements_removed', st_removed)
            || CASE WHEN st_reason IS NOT NULL THEN jsonb_build_object('statements_kept_reason', st_reason)
                    ELSE '{}' END);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.prune() IS
    'Apply the retention policies: drop each monthly partition older than now() - keep that no active legal hold overlaps, archiving it first (with the statement texts its events refer to) when the policy says so; then delete the statement texts no remaining event refers to; one system/PRUNE event per partition, the last one with statements_removed; returns what was removed (and what a hold kept)';

-- audit.restore_archive(): format 2 archives end with the statement texts
-- their events refer to; they go back into audit.statement (ON CONFLICT DO
-- NOTHING: a text still stored stays as it is), so restored events show
-- their text, and they stay while audit.restored_event refers to them.
-- Archives without the section (format 1, up to 1.4) restore as before.
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
    ns    bigint;
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
    -- One read of the file: event lines, then (format 2) a section line and
    -- the statement texts.  LATERAL: "(f(x)).*" would call f once per column.
    WITH l AS MATERIALIZED (
        SELECT x.line::jsonb AS j, x.n
          FROM audit.read_archive(file) WITH ORDINALITY AS x(line, n)
    ), s AS (
        SELECT coalesce(min(l.n), 9223372036854775807) AS at
          FROM l WHERE l.j ? 'audit_archive_section'
    ), st AS (
        INSERT INTO audit.statement (statement_id, statement_text, first_seen)
        SELECT (l.j ->> 'statement_id')::bigint, l.j ->> 'statement_text',
               coalesce((l.j ->> 'first_seen')::timestamptz, now())
          FROM l, s
         WHERE l.n > s.at
        ON CONFLICT (statement_id) DO NOTHING
        RETURNING 1
    ), ev AS (
        INSERT INTO audit.restored_event
        SELECT r.*
          FROM l, s,
               LATERAL jsonb_populate_record(NULL::audit.restored_event,
                                             l.j || jsonb_build_object('archive_file', file)) r
         WHERE l.n < s.at
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM st) INTO n, ns;
    PERFORM audit.log_system_event('RESTORE ARCHIVE',
        jsonb_build_object('archive_file', file, 'rows', n, 'statements_restored', ns));
    RETURN n;
END
$$;
COMMENT ON FUNCTION audit.restore_archive(text) IS
    'audit_admin: load an archive file of this database (listed in audit.archives, checksum verified) into audit.restored_event, and the statement texts it carries back into audit.statement; returns the number of events';

-- ===========================================================================
-- Capture switched off without a statement (issue 18 C)
-- ===========================================================================
-- A superuser can switch an audit trigger off by editing the catalog
-- (UPDATE pg_trigger SET tgenabled = 'D'), which no hook sees, and ALTER
-- EVENT TRIGGER audit_ext_ddl_command_end DISABLE was not flagged.
-- audit.check_capture() compares every audit trigger (audit_ext_row,
-- audit_ext_truncate, on tables and partitions) and the extension's event
-- triggers with what they must be (firing in normal sessions) and with what
-- it saw last time (audit.capture_watch).  A change to off that no statement
-- recorded (no flagged ddl event of the transaction that last wrote the
-- catalog row, pg_trigger.xmin) becomes a critical ddl event CAPTURE OFF
-- ("capture_off": true, "found_by"), once; turned back on the same way,
-- CAPTURE ON.  The maintenance worker runs it every round in every database
-- (src/maintenance.c); audit_admin may run it at any time.

CREATE TABLE audit.capture_watch (
    catalog     text        NOT NULL,   -- pg_trigger or pg_event_trigger
    object_oid  oid         NOT NULL,
    object_name text        NOT NULL,
    state       "char"      NOT NULL,   -- tgenabled / evtenabled as last seen
    state_xmin  text        NOT NULL,   -- xmin of the catalog row as last seen
    seen_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (catalog, object_oid)
);
COMMENT ON TABLE audit.capture_watch IS
    'Internal: the state of each audit trigger and event trigger as audit.check_capture() last saw it (a change is recorded once)';
REVOKE ALL ON audit.capture_watch FROM PUBLIC;
GRANT SELECT ON audit.capture_watch TO audit_admin, audit_reader;

CREATE FUNCTION audit.check_capture()
RETURNS TABLE (object text, kind text, state text, recorded boolean, note text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r        record;
    w        audit.capture_watch;
    seen     boolean;
    off      boolean;
    was_off  boolean;
    by_stmt  boolean;
    word     text;
    root     text;
    det      jsonb;
    finder   text := CASE WHEN audit.in_maintenance_worker() THEN 'maintenance' ELSE 'audit.check_capture()' END;
BEGIN
    PERFORM audit.require_audit_role(true);
    -- one check at a time per database (the worker and a DBA may overlap)
    PERFORM pg_advisory_xact_lock(hashtext('audit_ext check_capture'));
    FOR r IN
        SELECT 'pg_trigger'::text AS catalog, t.oid AS object_oid, t.tgrelid AS relid,
               t.tgname::text AS name, t.tgenabled AS st, t.xmin::text AS row_xmin,
               CASE WHEN t.tgfoid = 'audit.capture_row()'::regprocedure THEN 'row trigger'
                    ELSE 'truncate trigger' END AS what,
               format('%s.%s', t.tgrelid::regclass, quote_ident(t.tgname)) AS label
          FROM pg_catalog.pg_trigger t
         WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['audit.capture_row()'::regprocedure,
                                                         'audit.capture_truncate()'::regprocedure]::oid[])
        UNION ALL
        SELECT 'pg_event_trigger', e.oid, NULL::oid, e.evtname::text, e.evtenabled, e.xmin::text,
               'event trigger', quote_ident(e.evtname)
          FROM pg_catalog.pg_event_trigger e
          JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_event_trigger'::regclass
                                     AND d.objid OPERATOR(pg_catalog.=) e.oid
                                     AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::regclass
                                     AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension x ON x.oid OPERATOR(pg_catalog.=) d.refobjid
                                         AND x.extname OPERATOR(pg_catalog.=) 'audit_ext'
         ORDER BY 1, 8
    LOOP
        SELECT * INTO w FROM audit.capture_watch c
         WHERE c.catalog = r.catalog AND c.object_oid = r.object_oid;
        seen := FOUND;
        -- off: does not fire in normal sessions (disabled, or replica only)
        off := r.st IN ('D', 'R');
        was_off := seen AND w.state IN ('D', 'R');
        word := CASE r.st WHEN 'O' THEN 'enabled' WHEN 'A' THEN 'always' WHEN 'R' THEN 'replica only'
                          WHEN 'D' THEN 'disabled' ELSE 'unknown' END;
        IF seen AND w.state = r.st AND w.state_xmin = r.row_xmin THEN
            IF off THEN
                object := r.label; kind := r.what; state := word; recorded := false;
                note := 'off, already recorded';
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        INSERT INTO audit.capture_watch AS c (catalog, object_oid, object_name, state, state_xmin)
        VALUES (r.catalog, r.object_oid, r.label, r.st, r.row_xmin)
        ON CONFLICT (catalog, object_oid) DO UPDATE
           SET object_name = EXCLUDED.object_name, state = EXCLUDED.state,
               state_xmin = EXCLUDED.state_xmin, seen_at = now();
        -- no change between on and off (first sight of a firing trigger,
        -- ENABLE ALWAYS, the row rewritten): nothing to say
        IF off = was_off OR (NOT seen AND NOT off) THEN
            IF off THEN
                object := r.label; kind := r.what; state := word; recorded := false;
                note := 'off, already recorded';
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        -- Did a statement record this change?  The utility hook flags its
        -- event (audit_trigger_disabled / audit_trigger_enabled) in the
        -- transaction that wrote the catalog row, whose id is the row's xmin.
        by_stmt := EXISTS (
            SELECT 1 FROM audit.event e
             WHERE e.class = 'ddl'
               AND e.txid IS NOT NULL
               AND (e.txid % 4294967296) = r.row_xmin::bigint
               AND e.detail ? CASE WHEN off THEN 'audit_trigger_disabled' ELSE 'audit_trigger_enabled' END);
        object := r.label; kind := r.what; state := word;
        IF by_stmt THEN
            recorded := false;
            note := CASE WHEN off THEN 'off, recorded by its statement' ELSE 'on again, recorded by its statement' END;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF r.relid IS NOT NULL THEN
            -- a partition's trigger: the audited table it belongs to
            SELECT format('%s.%s', n.nspname, c.relname) INTO root
              FROM pg_catalog.pg_partition_ancestors(r.relid) WITH ORDINALITY AS a(relid, ord)
              JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.relid
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE a.relid OPERATOR(pg_catalog.<>) r.relid
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                            WHERE t.tgrelid OPERATOR(pg_catalog.=) a.relid
                              AND t.tgfoid OPERATOR(pg_catalog.=) 'audit.capture_row()'::regprocedure
                              AND t.tgparentid OPERATOR(pg_catalog.=) 0)
             ORDER BY a.ord
             LIMIT 1;
            det := jsonb_build_object('audit_triggers', jsonb_build_object(r.name, word))
                || CASE WHEN root IS NOT NULL THEN jsonb_build_object('audited_table', root) ELSE '{}' END
                || CASE WHEN off THEN jsonb_build_object('audit_trigger_disabled', true)
                        ELSE jsonb_build_object('audit_trigger_enabled', true) END;
        ELSE
            det := jsonb_build_object('event_trigger', r.name, 'state', word)
                || CASE WHEN off THEN jsonb_build_object('audit_protection_off', true)
                        ELSE '{}' END;
        END IF;
        det := det || jsonb_build_object(CASE WHEN off THEN 'capture_off' ELSE 'capture_on' END, true,
                                         'found_by', finder,
                                         'via', 'catalog changed without a recorded statement');
        IF off THEN
            det := det || jsonb_build_object('risk', 'critical');
        END IF;
        PERFORM audit.log_config_event(CASE WHEN off THEN 'CAPTURE OFF' ELSE 'CAPTURE ON' END,
                                       r.relid::regclass, det);
        recorded := true;
        note := CASE WHEN off THEN 'off, recorded now' ELSE 'on again, recorded now' END;
        RETURN NEXT;
    END LOOP;
    -- triggers gone (audit.disable, DROP TRIGGER, DROP TABLE: recorded by
    -- their statements) are forgotten
    DELETE FROM audit.capture_watch c
     WHERE (c.catalog = 'pg_trigger'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid))
        OR (c.catalog = 'pg_event_trigger'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid));
END
$$;
COMMENT ON FUNCTION audit.check_capture() IS
    'audit_admin: compare every audit trigger and the extension''s event triggers with what they must be; capture switched off (or back on) without a statement that recorded it becomes a ddl event CAPTURE OFF (critical, "capture_off": true, "found_by") or CAPTURE ON, once per change; returns what is off or changed. Run by the maintenance worker every round';
REVOKE ALL ON FUNCTION audit.check_capture() FROM PUBLIC;
-- open to everyone, checked inside: a non-member is told in words (42501)
GRANT EXECUTE ON FUNCTION audit.check_capture() TO PUBLIC;

-- The shipped rule audit_disabled fires on CAPTURE OFF: its detail carries
-- "audit_trigger_disabled": true (an audit trigger) or
-- "audit_protection_off": true (an event trigger of the extension).
UPDATE audit.alert_rules
   SET description = 'Capture switched off on a table: audit.disable, an audit trigger disabled, made replica only or dropped (any route, whatever audit_ext.log_ddl says, also by editing pg_trigger: audit.check_capture), session_replication_role = replica; or a protection of the trail switched off (audit_ext.protect_trail, audit_ext.log_ddl, the extension''s event trigger disabled)'
 WHERE name = 'audit_disabled' AND builtin;
