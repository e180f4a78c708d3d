-- Retention, archives, append-only protection.
--
-- The store keeps everything until a DBA sets a policy.  audit.prune()
-- drops whole monthly partitions of one class (never a mass DELETE), after
-- writing them to a gzip JSON-lines archive when the policy says so; the
-- maintenance worker (src/maintenance.c) runs it, and creates partitions
-- ahead, in every database that has the extension.  Audit tables are
-- append-only (src/retention.c): UPDATE/DELETE are refused by an ENABLE
-- ALWAYS row trigger, DROP/TRUNCATE/DETACH by the utility hook except inside
-- audit.prune().  Legal holds keep partitions; archives are verified and can
-- be loaded back into audit.restored_event.

-- C entry points (src/retention.c, src/archive.c).
CREATE FUNCTION audit.refuse_change()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_refuse_change';
COMMENT ON FUNCTION audit.refuse_change() IS
    'Trigger: refuses UPDATE and DELETE on the append-only audit tables (SQLSTATE 42501)';

CREATE FUNCTION audit.log_system_event(action text, detail jsonb)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_log_system_event';
COMMENT ON FUNCTION audit.log_system_event(text, jsonb) IS
    'Internal: record a system event (retention policy change, prune) in the caller''s transaction; detail gets "by": the session''s role or "worker"';

CREATE FUNCTION audit.archive_partition(part regclass, with_statements boolean DEFAULT false,
    OUT file text, OUT checksum text, OUT rows bigint, OUT min_id bigint,
    OUT max_id bigint, OUT bytes bigint, OUT raw_bytes bigint)
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_archive_partition';
COMMENT ON FUNCTION audit.archive_partition(regclass, boolean) IS
    'Internal: write a partition to a durable gzip JSON-lines file (one row_to_json line per event, in id order; with_statements: then a section line and the statement texts the events refer to) and its .sha256 file in audit_ext.archive_directory';

-- Statement texts are pruned with their events (src/retention.c): only
-- inside audit.prune(), under a lock and a shared generation (src/statement_store.c).
CREATE FUNCTION audit.prune_statements()
RETURNS bigint
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_prune_statements';
COMMENT ON FUNCTION audit.prune_statements() IS
    'Internal: delete the statement texts no remaining event (audit.event, audit.restored_event) refers to; only inside audit.prune(); NULL when texts cannot be pruned (no shared_preload_libraries, or a transaction snapshot)';

CREATE FUNCTION audit.lock_statements()
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_lock_statements';
COMMENT ON FUNCTION audit.lock_statements() IS
    'Internal: audit.prune() locks audit.statement (SHARE) before its drops, in the order writers take their locks; false when texts cannot be pruned (then no lock)';

CREATE FUNCTION audit.drop_event_partition(part regclass)
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_drop_event_partition';
COMMENT ON FUNCTION audit.drop_event_partition(regclass) IS
    'Internal: drop one monthly leaf partition of audit.event (the only way past the DROP protection); used by audit.prune()';

CREATE FUNCTION audit.read_archive(file text)
RETURNS SETOF text
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_read_archive';
COMMENT ON FUNCTION audit.read_archive(text) IS
    'Internal: the lines of an archive file of audit_ext.archive_directory, after its checksum was verified';

CREATE TABLE audit.retention_policies (
    class     text COLLATE "C" PRIMARY KEY
              CONSTRAINT retention_class_check CHECK (class = ANY (audit.event_classes())),
    keep      interval    NOT NULL CONSTRAINT retention_keep_check CHECK (keep > interval '0'),
    archive   boolean     NOT NULL DEFAULT true,
    set_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by    text        NOT NULL
);
COMMENT ON TABLE audit.retention_policies IS
    'How long each class of events is kept (whole months older than now() - keep are pruned) and whether it is archived first; a class without a row is kept forever';

SELECT pg_catalog.pg_extension_config_dump('audit.retention_policies', '');

CREATE SEQUENCE audit.legal_hold_id_seq AS bigint;
COMMENT ON SEQUENCE audit.legal_hold_id_seq IS 'Legal hold ids';

SELECT pg_catalog.pg_extension_config_dump('audit.legal_hold_id_seq', '');

CREATE TABLE audit.legal_holds (
    id          bigint      PRIMARY KEY DEFAULT pg_catalog.nextval('audit.legal_hold_id_seq'),
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  text        NOT NULL,
    released_at timestamptz,
    released_by text,
    CONSTRAINT legal_hold_range_check CHECK (from_time < to_time)
);
COMMENT ON TABLE audit.legal_holds IS
    'Legal holds: while a hold is not released, no partition overlapping [from_time, to_time) is pruned; released holds stay listed';

SELECT pg_catalog.pg_extension_config_dump('audit.legal_holds', '');

CREATE TABLE audit.archives (
    file           text        PRIMARY KEY,
    checksum       text        NOT NULL,
    class          text        NOT NULL,
    partition_name text        NOT NULL,
    range_from     timestamptz NOT NULL,
    range_to       timestamptz NOT NULL,
    rows           bigint      NOT NULL,
    min_id         bigint,
    max_id         bigint,
    bytes          bigint      NOT NULL,
    raw_bytes      bigint      NOT NULL,
    archived_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    archived_by    text        NOT NULL,
    statements_included boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE audit.archives IS
    'Archive files written by audit.prune(): file name in audit_ext.archive_directory, SHA-256 of the file (also in file.sha256), the partition, its range, rows and id range';
COMMENT ON COLUMN audit.archives.bytes IS 'Size of the compressed file';
COMMENT ON COLUMN audit.archives.raw_bytes IS 'Size of the JSON lines before compression';
COMMENT ON COLUMN audit.archives.statements_included IS
    'The file carries the statement texts its events refer to (archive format 2, since 1.5); false: only statement_id (texts first seen before range_to are never pruned)';

SELECT pg_catalog.pg_extension_config_dump('audit.archives', '');

-- Archived events loaded back for investigation: never into the live trail.
-- A later version that adds a column to audit.event must add it here too
-- (sql/retention.sql checks that both have the same columns).
CREATE TABLE audit.restored_event (LIKE audit.event, archive_file text NOT NULL);

CREATE INDEX restored_event_file_idx ON audit.restored_event (archive_file, id);
COMMENT ON TABLE audit.restored_event IS
    'Events loaded back from archive files by audit.restore_archive(), with the file they came from; outside the live trail';

-- Row triggers on the partitioned parent are cloned to every partition,
-- present and future.  ENABLE ALWAYS: session_replication_role = replica
-- does not silence them.
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.event
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.event ENABLE ALWAYS TRIGGER audit_append_only;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.statement
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.statement ENABLE ALWAYS TRIGGER audit_append_only;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.archives
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.archives ENABLE ALWAYS TRIGGER audit_append_only;

CREATE FUNCTION audit.set_retention(class text, keep interval, archive boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    old audit.retention_policies;
BEGIN
    PERFORM audit.require_audit_role(true);
    IF class IS NULL OR NOT class = ANY (audit.event_classes()) THEN
        RAISE EXCEPTION 'unknown event class "%"', class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Classes are %s.', array_to_string(audit.event_classes(), ', '));
    END IF;
    IF keep IS NULL OR keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', coalesce(keep::text, 'NULL')),
                  HINT = 'To keep a class forever, use audit.remove_retention(class).';
    END IF;
    IF archive IS NULL THEN
        RAISE EXCEPTION 'archive must be true or false'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO old FROM audit.retention_policies p WHERE p.class = class;
    INSERT INTO audit.retention_policies AS p (class, keep, archive, set_at, set_by)
         VALUES (class, keep, archive, now(), audit.session_role())
    ON CONFLICT ON CONSTRAINT retention_policies_pkey
    DO UPDATE SET keep = EXCLUDED.keep, archive = EXCLUDED.archive,
                  set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by;
    PERFORM audit.log_system_event('SET RETENTION',
        jsonb_build_object('class', class, 'keep', keep::text, 'archive', archive,
                           'previous', CASE WHEN old.class IS NULL THEN NULL
                                            ELSE jsonb_build_object('keep', old.keep::text, 'archive', old.archive) END));
END
$$;
COMMENT ON FUNCTION audit.set_retention(text, interval, boolean) IS
    'Keep events of a class for "keep" (whole months older than that are pruned), archiving them first when archive is true; recorded as a system event';

CREATE FUNCTION audit.remove_retention(class text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    old audit.retention_policies;
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.retention_policies p WHERE p.class = class RETURNING * INTO old;
    IF old.class IS NULL THEN
        RETURN false;
    END IF;
    PERFORM audit.log_system_event('REMOVE RETENTION',
        jsonb_build_object('class', class, 'previous',
                           jsonb_build_object('keep', old.keep::text, 'archive', old.archive)));
    RETURN true;
END
$$;
COMMENT ON FUNCTION audit.remove_retention(text) IS
    'Remove the retention policy of a class: its events are kept forever again; recorded as a system event';

CREATE FUNCTION audit.legal_hold(from_time timestamptz, to_time timestamptz, reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hold_id bigint;
BEGIN
    PERFORM audit.require_audit_role(true);
    IF from_time IS NULL OR to_time IS NULL OR from_time >= to_time THEN
        RAISE EXCEPTION 'a legal hold needs from_time before to_time'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('from_time was %s, to_time %s.',
                                  coalesce(from_time::text, 'NULL'), coalesce(to_time::text, 'NULL'));
    END IF;
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION 'a legal hold needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the case or request the hold is for.';
    END IF;
    INSERT INTO audit.legal_holds (from_time, to_time, reason, created_by)
         VALUES (from_time, to_time, reason, audit.session_role())
      RETURNING id INTO hold_id;
    PERFORM audit.log_system_event('LEGAL HOLD',
        jsonb_build_object('id', hold_id, 'from_time', from_time, 'to_time', to_time, 'reason', reason));
    RETURN hold_id;
END
$$;
COMMENT ON FUNCTION audit.legal_hold(timestamptz, timestamptz, text) IS
    'Place a legal hold: no partition overlapping [from_time, to_time) is pruned until the hold is released; returns its id';

CREATE FUNCTION audit.release_legal_hold(id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    h audit.legal_holds;
BEGIN
    PERFORM audit.require_audit_role(true);
    UPDATE audit.legal_holds l SET released_at = now(), released_by = audit.session_role()
     WHERE l.id = id AND l.released_at IS NULL
    RETURNING * INTO h;
    IF h.id IS NULL THEN
        RAISE EXCEPTION 'no active legal hold with id %', id
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT * FROM audit.legal_holds WHERE released_at IS NULL lists the active holds.';
    END IF;
    PERFORM audit.log_system_event('RELEASE LEGAL HOLD',
        jsonb_build_object('id', h.id, 'from_time', h.from_time, 'to_time', h.to_time, 'reason', h.reason));
END
$$;
COMMENT ON FUNCTION audit.release_legal_hold(bigint) IS
    'Release a legal hold: its range may be pruned again; the hold stays listed with released_at';

-- audit.prune() in two phases.  First every partition whose time has
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
CREATE FUNCTION audit.prune()
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

CREATE FUNCTION audit.in_maintenance_worker()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'audit_in_maintenance_worker';
COMMENT ON FUNCTION audit.in_maintenance_worker() IS
    'Internal: true in the audit_ext maintenance worker';

-- Archives: audit.restore_archive() loads only files this database's
-- audit.archives lists; file names carry the database's OID
-- (src/archive.c), so databases "x.y" and "x_y" no longer share names.
CREATE FUNCTION audit.restore_archive(file text)
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

CREATE FUNCTION audit.archive_checksum(file text)
RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'audit_archive_checksum';
COMMENT ON FUNCTION audit.archive_checksum(text) IS
    'Internal: SHA-256 (hex) of an archive file of audit_ext.archive_directory';

-- Only audit.prune() removes events: audit.drop_event_partition() (C) and
-- audit.chain_record_pruned() refuse to run anywhere else.
CREATE FUNCTION audit.in_prune()
RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'audit_in_prune_sql';
COMMENT ON FUNCTION audit.in_prune() IS
    'Internal: whether audit.prune() is running in this session';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.refuse_change(),
                       audit.log_system_event(text,jsonb),
                       audit.archive_partition(regclass,boolean),
                       audit.prune_statements(),
                       audit.lock_statements(),
                       audit.drop_event_partition(regclass),
                       audit.read_archive(text),
                       audit.in_maintenance_worker(),
                       audit.archive_checksum(text),
                       audit.in_prune() FROM PUBLIC;
GRANT SELECT ON audit.retention_policies,
                audit.legal_holds,
                audit.archives TO audit_admin, audit_reader;
GRANT DELETE, SELECT, TRUNCATE ON audit.restored_event TO audit_admin;
GRANT SELECT ON audit.restored_event TO audit_reader;
