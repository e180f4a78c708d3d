/* audit_ext 1.0 -> 1.1: tamper-evident chain, retention and archive, alert
 * rules and read auditing.  CREATE EXTENSION audit_ext installs 1.0 and runs
 * this script, so a fresh install and an upgraded one are the same objects. */
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.1'" to load this file. \quit

-- ====================================================================
-- Integrity: hash chain, verification (src/chain.c)
-- ====================================================================

-- Every event carries its place in a chain and a SHA-256 hash over its
-- columns and the previous hash of that chain (src/chain.c).  A chain
-- ("lane") is written by one process and holds one class, so concurrent
-- writers never wait for each other and each class can be pruned alone.
ALTER TABLE audit.event
    ADD COLUMN chain_lane bigint,
    ADD COLUMN chain_seq  bigint,
    ADD COLUMN hash       bytea;
COMMENT ON COLUMN audit.event.chain_lane IS 'Hash chain the event belongs to (one writing process, one class)';
COMMENT ON COLUMN audit.event.chain_seq IS 'Position of the event in its chain, from 1';
COMMENT ON COLUMN audit.event.hash IS 'SHA-256 over the event''s columns and the hash of the previous event of its chain';

-- Events written before the chain existed (version 1.0) have no hash:
-- audit.verify() counts them instead of reporting them.  A restored
-- database brings its row back (the filter keeps the empty marker of a
-- fresh install out of the dump).
CREATE TABLE audit.chain_origin (
    legacy_max_id bigint      NOT NULL,
    chained_since timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO audit.chain_origin (legacy_max_id)
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit.event_id_seq;
SELECT pg_catalog.pg_extension_config_dump('audit.chain_origin', 'WHERE legacy_max_id > 0');
COMMENT ON TABLE audit.chain_origin IS 'Highest event id written before events were chained (version 1.0)';

-- The heads of what retention removed: the chains continue across a
-- dropped partition.
CREATE TABLE audit.chain_anchor (
    class          text COLLATE "C" NOT NULL,
    chain_lane     bigint      NOT NULL,
    first_seq      bigint      NOT NULL,
    last_seq       bigint      NOT NULL,
    last_event_id  bigint      NOT NULL,
    last_hash      bytea       NOT NULL,
    events         bigint      NOT NULL,
    partition_name text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (class, chain_lane, first_seq)
);
SELECT pg_catalog.pg_extension_config_dump('audit.chain_anchor', '');
COMMENT ON TABLE audit.chain_anchor IS 'Chain positions removed by retention, with the hash of the last one';

-- Chain heads recorded by the worker (audit_ext.chain_checkpoint_interval)
-- and copied to the server log: cutting off the newest events of a chain is
-- noticed too.
CREATE TABLE audit.chain_checkpoint (
    class      text COLLATE "C" NOT NULL,
    chain_lane bigint      NOT NULL,
    chain_seq  bigint      NOT NULL,
    event_id   bigint      NOT NULL,
    hash       bytea       NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (class, chain_lane, chain_seq)
);
SELECT pg_catalog.pg_extension_config_dump('audit.chain_checkpoint', '');
COMMENT ON TABLE audit.chain_checkpoint IS 'Heads of the hash chains, recorded periodically';

GRANT SELECT ON audit.chain_origin, audit.chain_anchor, audit.chain_checkpoint TO audit_admin, audit_reader;

CREATE FUNCTION audit.chain_checkpoint()
RETURNS integer
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'audit_chain_checkpoint';
COMMENT ON FUNCTION audit.chain_checkpoint() IS
    'Record the head of every chain of this database that moved since the last checkpoint; returns how many';
REVOKE ALL ON FUNCTION audit.chain_checkpoint() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.chain_checkpoint() TO audit_admin;

-- Called by retention just before a partition is dropped, in the same
-- transaction: the chains of what remains then still verify.
CREATE FUNCTION audit.chain_record_pruned(part regclass)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
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
COMMENT ON FUNCTION audit.chain_record_pruned(regclass) IS
    'Internal: record the chain heads of a partition about to be dropped by retention';
REVOKE ALL ON FUNCTION audit.chain_record_pruned(regclass) FROM PUBLIC;

-- The chain's definition as a function: what an event's hash is, given the
-- previous hash of its chain (32 zero bytes for the first).
CREATE FUNCTION audit.event_hash(e audit.event, prev_hash bytea)
RETURNS bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_event_hash';
COMMENT ON FUNCTION audit.event_hash(audit.event, bytea) IS
    'SHA-256 chain hash of an event following prev_hash (see docs/integrity.md for the serialisation)';
REVOKE ALL ON FUNCTION audit.event_hash(audit.event, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.event_hash(audit.event, bytea) TO audit_admin, audit_reader;

CREATE FUNCTION audit.verify_chains(from_time timestamptz, to_time timestamptz,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
REVOKE ALL ON FUNCTION audit.verify_chains(timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION audit.verify_chains(timestamptz, timestamptz) IS
    'Internal: the chain walk behind audit.verify()';

-- Walk the chains of the events in [from_time, to_time) (all when NULL) and
-- report the first event where one breaks.
CREATE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    SELECT * INTO verified, events, chains, legacy_events, unverifiable_links, breaks,
                  first_broken_event_id, first_broken_event_time, problem
      FROM audit.verify_chains(from_time, to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL); reports the first event where a chain breaks';
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz) TO PUBLIC;

-- ---- end of integrity ----

-- ====================================================================
-- Shipping the trail to a central cluster (logical replication)
-- ====================================================================

-- Where an event came from.  NULL for events written here; on a central
-- cluster that subscribes to other servers' trails, the name of the
-- subscription that brought the event.
ALTER TABLE audit.event ADD COLUMN source text COLLATE "C";
COMMENT ON COLUMN audit.event.source IS 'NULL: written here; on a central cluster: the subscription that brought the event';

-- On a subscriber, rows arrive through an apply worker, which runs with
-- session_replication_role = replica: these triggers fire only there
-- (ENABLE REPLICA), so they cost local writes nothing.
CREATE FUNCTION audit.on_replicated_event()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.source IS NULL THEN
        -- the apply (or table sync) worker of a subscription is this backend
        NEW.source := (SELECT subname FROM pg_catalog.pg_stat_subscription
                        WHERE pid = pg_catalog.pg_backend_pid() LIMIT 1);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION audit.on_replicated_event() IS
    'Internal: on a central cluster, name the subscription an event came from';
REVOKE ALL ON FUNCTION audit.on_replicated_event() FROM PUBLIC;

CREATE TRIGGER audit_replicated_source BEFORE INSERT ON audit.event
    FOR EACH ROW EXECUTE FUNCTION audit.on_replicated_event();
ALTER TABLE audit.event ENABLE REPLICA TRIGGER audit_replicated_source;

-- Statement texts are keyed by a hash of the text: two servers that ran the
-- same statement send the same row.  Keep the first, skip the others.
CREATE FUNCTION audit.on_replicated_once()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'statement' THEN
        IF EXISTS (SELECT FROM audit.statement WHERE statement_id = NEW.statement_id) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'chain_checkpoint' THEN
        IF EXISTS (SELECT FROM audit.chain_checkpoint
                    WHERE class = NEW.class AND chain_lane = NEW.chain_lane AND chain_seq = NEW.chain_seq) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'chain_anchor' THEN
        IF EXISTS (SELECT FROM audit.chain_anchor
                    WHERE class = NEW.class AND chain_lane = NEW.chain_lane AND first_seq = NEW.first_seq) THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION audit.on_replicated_once() IS
    'Internal: on a central cluster, skip a replicated row that is already there';
REVOKE ALL ON FUNCTION audit.on_replicated_once() FROM PUBLIC;

CREATE TRIGGER audit_replicated_once BEFORE INSERT ON audit.statement
    FOR EACH ROW EXECUTE FUNCTION audit.on_replicated_once();
ALTER TABLE audit.statement ENABLE REPLICA TRIGGER audit_replicated_once;
CREATE TRIGGER audit_replicated_once BEFORE INSERT ON audit.chain_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit.on_replicated_once();
ALTER TABLE audit.chain_checkpoint ENABLE REPLICA TRIGGER audit_replicated_once;
CREATE TRIGGER audit_replicated_once BEFORE INSERT ON audit.chain_anchor
    FOR EACH ROW EXECUTE FUNCTION audit.on_replicated_once();
ALTER TABLE audit.chain_anchor ENABLE REPLICA TRIGGER audit_replicated_once;

-- Publish the trail: the events (as rows of audit.event, whatever partition
-- they sit in, so the central cluster partitions them its own way), the
-- statement texts and the chain records.  Inserts only: the trail is
-- append-only, and retention here must not remove events there.
CREATE FUNCTION audit.publish(publication name DEFAULT 'audit_trail')
RETURNS name
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables text := 'audit.event, audit.statement, audit.chain_checkpoint, audit.chain_anchor';
BEGIN
    PERFORM audit.require_audit_role(true);
    IF publication IS NULL OR publication = '' THEN
        RAISE EXCEPTION 'publication name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM pg_publication WHERE pubname = publication) THEN
        EXECUTE format('ALTER PUBLICATION %I SET TABLE %s', publication, tables);
        EXECUTE format('ALTER PUBLICATION %I SET (publish = ''insert'', publish_via_partition_root = true)', publication);
    ELSE
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = ''insert'', publish_via_partition_root = true)',
                       publication, tables);
    END IF;
    IF current_setting('wal_level') <> 'logical' THEN
        RAISE WARNING 'publication "%" created, but wal_level is %', publication, current_setting('wal_level')
            USING DETAIL = 'Subscribers can connect only when wal_level = logical.',
                  HINT = 'Set wal_level = logical in postgresql.conf and restart the server.';
    END IF;
    PERFORM audit.log_config_event('PUBLISH', NULL,
        jsonb_build_object('publication', publication::text, 'tables', tables));
    RETURN publication;
END
$$;
COMMENT ON FUNCTION audit.publish(name) IS
    'Create (or update) a logical-replication publication of the audit trail for a central cluster';
REVOKE ALL ON FUNCTION audit.publish(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.publish(name) TO audit_admin;



-- ====================================================================
-- Retention, archive, append-only protection, maintenance
-- ====================================================================

-- The store keeps everything until a DBA sets a policy.  audit.prune()
-- drops whole monthly partitions of one class (never a mass DELETE), after
-- writing them to a gzip JSON-lines archive when the policy says so; the
-- maintenance worker (src/maintenance.c) runs it, and creates partitions
-- ahead, in every database that has the extension.  Audit tables are
-- append-only (src/retention.c): UPDATE/DELETE are refused by an ENABLE
-- ALWAYS row trigger, DROP/TRUNCATE/DETACH by the utility hook except inside
-- audit.prune().

-- ---- C entry points (src/retention.c, src/archive.c) ----
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

CREATE FUNCTION audit.archive_partition(part regclass,
    OUT file text, OUT checksum text, OUT rows bigint, OUT min_id bigint,
    OUT max_id bigint, OUT bytes bigint, OUT raw_bytes bigint)
RETURNS record
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_archive_partition';
COMMENT ON FUNCTION audit.archive_partition(regclass) IS
    'Internal: write a partition to a durable gzip JSON-lines file (one row_to_json line per event, in id order) and its .sha256 file in audit_ext.archive_directory';

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

-- ---- Catalogs ----
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
    archived_by    text        NOT NULL
);
COMMENT ON TABLE audit.archives IS
    'Archive files written by audit.prune(): file name in audit_ext.archive_directory, SHA-256 of the file (also in file.sha256), the partition, its range, rows and id range';
COMMENT ON COLUMN audit.archives.bytes IS 'Size of the compressed file';
COMMENT ON COLUMN audit.archives.raw_bytes IS 'Size of the JSON lines before compression';
SELECT pg_catalog.pg_extension_config_dump('audit.archives', '');

-- Archived events loaded back for investigation: never into the live trail.
-- A later version that adds a column to audit.event must add it here too
-- (sql/retention.sql checks that both have the same columns).
CREATE TABLE audit.restored_event (LIKE audit.event);
ALTER TABLE audit.restored_event ADD COLUMN archive_file text NOT NULL;
CREATE INDEX restored_event_file_idx ON audit.restored_event (archive_file, id);
COMMENT ON TABLE audit.restored_event IS
    'Events loaded back from archive files by audit.restore_archive(), with the file they came from; outside the live trail';

-- ---- Append-only ----
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

-- ---- Policies and holds ----
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

-- ---- Partitions of any month ----
-- The monthly partitions of a class with their bounds (from relpartbound).
CREATE FUNCTION audit.partition_bounds(cls text)
RETURNS TABLE (relid regclass, relname name, range_from timestamptz, range_to timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.relid, s.relname, s.r[1]::timestamptz, s.r[2]::timestamptz
      FROM (SELECT t.relid, c.relname,
                   regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                'FROM \(''([^'']*)''\) TO \(''([^'']*)''\)') AS r
              FROM pg_partition_tree(format('audit.%I', 'event_' || cls)::regclass) t
              JOIN pg_class c ON c.oid = t.relid
             WHERE t.isleaf AND t.level = 1) s
     WHERE s.r IS NOT NULL
$$;
COMMENT ON FUNCTION audit.partition_bounds(text) IS
    'Internal: the monthly partitions of a class and their ranges';

-- One month of one class, as audit.create_partitions() does it for the
-- coming months: rows of that month waiting in the class's default partition
-- are moved in before the partition is attached.
CREATE FUNCTION audit.create_month_partition(cls text, month_start timestamptz)
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
    EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', 'event_' || cls);
    EXECUTE format('CREATE TABLE audit.%I (LIKE audit.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part, 'event_' || cls);
    EXECUTE format('WITH m AS (DELETE FROM audit.%I WHERE event_time >= $1 AND event_time < $2 RETURNING *)
                    INSERT INTO audit.%I SELECT * FROM m', 'event_' || cls || '_default', part)
        USING lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
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

-- As in 1.0, but one creator at a time: the maintenance worker, audit.enable()
-- and a DBA may run it concurrently, and two creators of one partition would
-- collide ("already exists").
CREATE OR REPLACE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 2)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cls     text;
    m       integer;
    created integer := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', coalesce(months_ahead::text, 'NULL'));
    END IF;
    FOREACH cls IN ARRAY audit.event_classes() LOOP
        FOR m IN 0 .. months_ahead LOOP
            IF audit.create_month_partition(cls, (date_trunc('month', now() AT TIME ZONE 'UTC')
                                                  + make_interval(months => m)) AT TIME ZONE 'UTC') THEN
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- ---- Prune ----
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
            -- so that audit.verify() still verifies what remains
            PERFORM audit.chain_record_pruned(cand.relid::regclass);
            PERFORM audit.drop_event_partition(cand.relid);

            PERFORM audit.log_system_event('PRUNE',
                jsonb_build_object('partition', cand.relname, 'class', pol.class,
                                   'from_time', cand.lo, 'to_time', cand.hi, 'rows', n,
                                   'keep', pol.keep::text,
                                   'archive_file', a_file, 'checksum', a_sum,
                                   'min_id', a_min, 'max_id', a_max));
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

CREATE FUNCTION audit.in_maintenance_worker()
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'audit_in_maintenance_worker';
COMMENT ON FUNCTION audit.in_maintenance_worker() IS
    'Internal: true in the audit_ext maintenance worker';

-- ---- Restore ----
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
BEGIN
    PERFORM audit.require_audit_role(true);
    SELECT a.checksum INTO known FROM audit.archives a WHERE a.file = file;
    -- the file's own checksum is verified by audit.read_archive; a file the
    -- catalog knows must also match what was recorded when it was written
    IF known IS NOT NULL AND known <> audit.archive_checksum(file) THEN
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
COMMENT ON FUNCTION audit.restore_archive(text) IS
    'Load an archive file (a name listed in audit.archives) into audit.restored_event for investigation, after verifying its checksum; returns the rows loaded';

CREATE FUNCTION audit.archive_checksum(file text)
RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'audit_archive_checksum';
COMMENT ON FUNCTION audit.archive_checksum(text) IS
    'Internal: SHA-256 (hex) of an archive file of audit_ext.archive_directory';

-- ---- Privileges ----
REVOKE ALL ON audit.retention_policies, audit.legal_holds, audit.archives, audit.restored_event FROM PUBLIC;
REVOKE ALL ON SEQUENCE audit.legal_hold_id_seq FROM PUBLIC;
GRANT SELECT ON audit.retention_policies, audit.legal_holds, audit.archives, audit.restored_event
    TO audit_admin, audit_reader;
GRANT DELETE, TRUNCATE ON audit.restored_event TO audit_admin;
REVOKE ALL ON FUNCTION
    audit.refuse_change(), audit.log_system_event(text, jsonb), audit.archive_partition(regclass),
    audit.drop_event_partition(regclass), audit.read_archive(text), audit.archive_checksum(text),
    audit.session_role(), audit.create_month_partition(text, timestamptz), audit.in_maintenance_worker(),
    audit.partition_bounds(text),
    audit.set_retention(text, interval, boolean), audit.remove_retention(text),
    audit.legal_hold(timestamptz, timestamptz, text), audit.release_legal_hold(bigint),
    audit.prune(), audit.restore_archive(text)
  FROM PUBLIC;
-- open to everyone, checked inside: a non-member is told in words (42501)
GRANT EXECUTE ON FUNCTION
    audit.set_retention(text, interval, boolean), audit.remove_retention(text),
    audit.legal_hold(timestamptz, timestamptz, text), audit.release_legal_hold(bigint),
    audit.prune(), audit.restore_archive(text)
  TO PUBLIC;


-- ---- end of retention ----


-- ====================================================================
-- Alert rules and read auditing
-- ====================================================================

-- Read auditing (src/read_audit.c).  The flag travels, like the other
-- options, as an argument of the audit_ext_row trigger: its third argument is
-- a text[] of flags, '{log_reads}' or '{}'.

-- (Re)create the audit triggers with options and flags.
CREATE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[], flags text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    PERFORM audit.drop_audit_triggers(tbl);
    EXECUTE format('CREATE TRIGGER audit_ext_row AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION audit.capture_row(%L, %L, %L)',
                   tbl, exclude_columns::text, mask_columns::text, coalesce(flags, '{}')::text);
    EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                   tbl, exclude_columns::text, mask_columns::text);
    FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.relid <> tbl LOOP
        EXECUTE format('CREATE TRIGGER audit_ext_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate(%L, %L)',
                       part, exclude_columns::text, mask_columns::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.install_triggers(regclass, text[], text[], text[]) IS
    'Internal: (re)create the audit triggers of a table with its options and flags (log_reads)';

-- The 1.0 form (used by audit.sync_column_options) keeps the table's flags.
CREATE OR REPLACE FUNCTION audit.install_triggers(tbl regclass, exclude_columns text[], mask_columns text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, audit.table_flags(tbl));
END
$$;

-- The flags of an audited table ('{}' when none or not audited).
CREATE FUNCTION audit.table_flags(tbl regclass)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT (audit.trigger_arguments(t.tgargs))[3]::text[]
                       FROM pg_trigger t
                      WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0),
                    '{}')
$$;
COMMENT ON FUNCTION audit.table_flags(regclass) IS
    'Internal: the flags (log_reads) of an audited table, from its audit trigger';

DROP FUNCTION audit.enable(regclass, text[], text[]);
CREATE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT NULL,
                             mask_columns text[] DEFAULT NULL,
                             log_reads boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       record;
    col       text;
    pk_cols   text[];
    flags     text[];
    cur_exclude text[];
    cur_mask  text[];
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table to audit must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Fuzzing: a multidimensional array failed with "cannot concatenate
    -- incompatible arrays" and a NULL element with 'column "<NULL>"'.
    IF array_ndims(exclude_columns) > 1 OR array_ndims(mask_columns) > 1 THEN
        RAISE EXCEPTION 'exclude_columns and mask_columns must be one-dimensional arrays of column names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(exclude_columns, NULL) IS NOT NULL OR array_position(mask_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'exclude_columns and mask_columns must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT c.oid, c.relkind, c.relpersistence, n.nspname, c.relname
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    -- Fuzzing: an OID that names no relation went on to fail with a syntax
    -- error in the CREATE TRIGGER built from it.
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;

    IF rel.nspname = 'audit' THEN
        RAISE EXCEPTION 'cannot audit "%": it belongs to the audit trail itself', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Objects in schema audit are written only by audit_ext.',
                  HINT = 'Audit the application tables instead.';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot audit "%": it is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('"%s" is a %s.', tbl,
                                  CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                       WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                                       WHEN 'i' THEN 'index' WHEN 'c' THEN 'composite type'
                                       ELSE 'relation of kind ' || rel.relkind::text END),
                  HINT = 'Only ordinary and partitioned tables can be audited.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot audit "%": it is a temporary table', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Temporary tables vanish with their session, so there is no lasting record to keep.',
                  HINT = 'Audit a permanent table.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i
                JOIN pg_trigger t ON t.tgrelid = i.inhparent
               WHERE i.inhrelid = tbl AND t.tgname = 'audit_ext_row' AND t.tgparentid = 0) THEN
        RAISE EXCEPTION 'cannot audit partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Change the options on the partitioned table with audit.enable().';
    END IF;

    -- This month's and the next months' partitions exist before any event.
    PERFORM audit.create_partitions(2);
    -- Concurrent enable/disable calls on one table wait for each other here
    -- (without the lock the second failed: "trigger ... already exists").
    -- ACCESS EXCLUSIVE, the lock DROP TRIGGER takes anyway: a weaker one now
    -- and a stronger one later could deadlock with DML.  Taken after
    -- create_partitions(), which may lock the trail's partitions: a writer
    -- holding those and waiting for this table would otherwise deadlock
    -- with us.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);

    -- An option not given keeps its current value on an audited table (a
    -- call that only turns log_reads on must not unmask a column); on a new
    -- table it is empty.  '{}' clears it.
    -- A column named in the option given leaves the kept one (masked ->
    -- excluded needs no second call).
    SELECT a.exclude_columns, a.mask_columns INTO cur_exclude, cur_mask
      FROM audit.audited_tables a WHERE a.table_oid = tbl;
    IF exclude_columns IS NULL THEN
        exclude_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_exclude) c
                                      WHERE c <> ALL (coalesce(mask_columns, '{}'))), '{}');
    END IF;
    IF mask_columns IS NULL THEN
        mask_columns := coalesce((SELECT array_agg(c) FROM unnest(cur_mask) c
                                   WHERE c <> ALL (exclude_columns)), '{}');
    END IF;

    FOREACH col IN ARRAY exclude_columns || mask_columns LOOP
        IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute
                                       WHERE attrelid = tbl AND attname = col
                                         AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of table "%" does not exist', col, tbl
                USING ERRCODE = 'undefined_column',
                      DETAIL = CASE WHEN col = ANY (exclude_columns)
                                    THEN 'It was named in exclude_columns.'
                                    ELSE 'It was named in mask_columns.' END,
                      HINT = 'Name existing columns, spelled as in the table (case matters).';
        END IF;
    END LOOP;
    IF exclude_columns && mask_columns THEN
        RAISE EXCEPTION 'a column cannot be both excluded and masked'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Named in both: %s.',
                                  (SELECT string_agg(quote_ident(c), ', ')
                                     FROM unnest(exclude_columns) c WHERE c = ANY (mask_columns))),
                  HINT = 'Excluded columns are never stored; masked ones are stored as a marker. Choose one.';
    END IF;

    pk_cols := audit.key_columns(tbl);

    IF pk_cols && (exclude_columns || mask_columns) THEN
        RAISE EXCEPTION 'primary key columns of "%" cannot be excluded or masked', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The primary key is (%s); it identifies each audited record.',
                                  array_to_string(pk_cols, ', ')),
                  HINT = 'Leave key columns out of exclude_columns and mask_columns.';
    END IF;
    IF pk_cols IS NULL THEN
        RAISE NOTICE 'table "%" has no primary key or replica identity index: its records will be identified by the whole row', tbl
            USING HINT = 'Add a primary key for compact record ids and fast record history.';
    END IF;

    -- log_reads NULL: keep what the table had (off for a new one)
    flags := audit.table_flags(tbl);
    IF log_reads THEN
        flags := ARRAY['log_reads'];
    ELSIF NOT log_reads THEN
        flags := '{}';
    END IF;

    -- Idempotent: recreate the triggers with the current options.
    PERFORM audit.install_triggers(tbl, exclude_columns, mask_columns, flags);
    PERFORM audit.log_config_event('ENABLE AUDIT', tbl,
                                   jsonb_build_object('exclude_columns', to_jsonb(exclude_columns),
                                                      'mask_columns', to_jsonb(mask_columns))
                                   || CASE WHEN 'log_reads' = ANY (flags)
                                           THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END);
END
$$;
COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list';
REVOKE ALL ON FUNCTION audit.enable(regclass, text[], text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], boolean) TO audit_admin;
REVOKE ALL ON FUNCTION audit.install_triggers(regclass, text[], text[], text[]), audit.table_flags(regclass) FROM PUBLIC;

CREATE OR REPLACE VIEW audit.audited_tables AS
SELECT c.oid::regclass                              AS table_oid,
       n.nspname::text                              AS schema_name,
       c.relname::text                              AS table_name,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       (audit.trigger_arguments(t.tgargs))[1]::text[] AS exclude_columns,
       (audit.trigger_arguments(t.tgargs))[2]::text[] AS mask_columns,
       audit.key_columns(c.oid)                     AS key_columns,
       t.tgenabled <> 'D'                           AS capturing,
       coalesce('log_reads' = ANY ((audit.trigger_arguments(t.tgargs))[3]::text[]), false) AS log_reads
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = 'audit_ext_row'
   AND t.tgparentid = 0
   AND t.tgfoid = 'audit.capture_row()'::regprocedure;
COMMENT ON VIEW audit.audited_tables IS
    'Tables being audited, with their options; capturing is false if someone disabled the audit trigger; log_reads: reads are recorded too';

-- Reads are queued (they survive a rollback) and written by the worker; the
-- rows returned are in detail.rows.  audit.user_activity (1.0) already sums
-- them as records_viewed and counts exports from audit_ext.export_threshold.
COMMENT ON COLUMN audit.event.detail IS
    'Further facts of the event, by class (read events: {"rows": rows returned by the statement})';

-- ---------------------------------------------------------------------------
-- Alert rules (evaluated by the background worker, src/alerts.c)
-- ---------------------------------------------------------------------------
CREATE TABLE audit.alert_rules (
    name          text COLLATE "C" PRIMARY KEY,
    class         text COLLATE "C" NOT NULL,
    action        text COLLATE "C",
    table_name    text COLLATE "C",
    actor         text COLLATE "C",
    status        text COLLATE "C",
    query         text,
    min_rows      bigint,
    threshold     integer     NOT NULL DEFAULT 1,
    within        interval,
    group_by      text COLLATE "C",
    outside_hours text,
    timezone      text,
    severity      text COLLATE "C" NOT NULL DEFAULT 'medium',
    cooldown      interval    NOT NULL DEFAULT '10 minutes',
    channel       text        NOT NULL DEFAULT 'audit_alerts',
    enabled       boolean     NOT NULL DEFAULT true,
    builtin       boolean     NOT NULL DEFAULT false,
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL DEFAULT current_user,
    CONSTRAINT alert_rules_threshold_check CHECK (threshold > 0),
    CONSTRAINT alert_rules_severity_check CHECK (severity IN ('low', 'medium', 'high', 'critical'))
);
COMMENT ON TABLE audit.alert_rules IS
    'Alert rules: which events (class, action, table, actor, status, query, min_rows, outside_hours), how many (threshold within, per group_by key), how loud (severity, channel, cooldown). Managed with audit.create_alert_rule/drop_alert_rule/set_alert_rule_enabled';
-- pg_dump keeps the rules users made; the shipped ones come with the extension.
SELECT pg_catalog.pg_extension_config_dump('audit.alert_rules', 'WHERE NOT builtin');

CREATE TABLE audit.alerts (
    alert_id         bigserial PRIMARY KEY,
    rule             text COLLATE "C" NOT NULL,
    severity         text COLLATE "C" NOT NULL,
    key              text        NOT NULL,
    count            bigint      NOT NULL,
    first_event_id   bigint      NOT NULL,
    last_event_id    bigint      NOT NULL,
    first_event_time timestamptz,
    last_event_time  timestamptz,
    channel          text        NOT NULL,
    fired_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    note             text
);
CREATE INDEX alerts_rule_key_idx ON audit.alerts (rule, key, fired_at);
CREATE INDEX alerts_open_idx ON audit.alerts (alert_id) WHERE acknowledged_at IS NULL;
COMMENT ON TABLE audit.alerts IS
    'Alerts fired by the rules: one row per firing (rule, severity, grouping key, count of events in the window, first and last event ids), acknowledged with audit.acknowledge_alert()';
SELECT pg_catalog.pg_extension_config_dump('audit.alerts', '');
COMMENT ON SEQUENCE audit.alerts_alert_id_seq IS 'Alert ids, increasing in the order alerts fired';
SELECT pg_catalog.pg_extension_config_dump('audit.alerts_alert_id_seq', '');

-- Where the worker stands.  Not dumped: a restored database starts at the
-- events it had when the extension was created (started_at), so restored
-- events do not fire again.
CREATE TABLE audit.alert_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    started_at       timestamptz NOT NULL DEFAULT now(),
    high_watermark   bigint,
    pending          jsonb       NOT NULL DEFAULT '{}',
    evaluated_at     timestamptz,
    events_evaluated bigint      NOT NULL DEFAULT 0,
    alerts_fired     bigint      NOT NULL DEFAULT 0
);
COMMENT ON TABLE audit.alert_state IS
    'Progress of alert evaluation: every visible event with id <= high_watermark has been evaluated, except those of the transactions in pending ({txid: id they may start above}), re-examined when those commit';
INSERT INTO audit.alert_state DEFAULT VALUES;

REVOKE ALL ON audit.alert_rules, audit.alerts, audit.alert_state FROM PUBLIC;
REVOKE ALL ON SEQUENCE audit.alerts_alert_id_seq FROM PUBLIC;
GRANT SELECT ON audit.alert_rules, audit.alerts, audit.alert_state TO audit_admin, audit_reader;

-- What a rule may group by, and how the key of an event is made.
CREATE FUNCTION audit.alert_group_keys()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['client_addr', 'actor', 'db_user', 'session_user', 'table', 'application_name', 'database', 'action']::text[] $$;
COMMENT ON FUNCTION audit.alert_group_keys() IS 'The values group_by of an alert rule may take';

CREATE FUNCTION audit.alert_key(group_by text, e audit.event)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(CASE group_by
                        WHEN 'client_addr' THEN coalesce(host(e.client_addr), 'local')
                        WHEN 'actor' THEN e.actor
                        WHEN 'db_user' THEN e.db_user
                        WHEN 'session_user' THEN e."session_user"
                        WHEN 'table' THEN CASE WHEN e.table_name IS NOT NULL
                                               THEN coalesce(e.schema_name || '.', '') || e.table_name END
                        WHEN 'application_name' THEN e.application_name
                        WHEN 'database' THEN coalesce(e.detail ->> 'database', current_database())
                        WHEN 'action' THEN e.action
                    END, '')
$$;
COMMENT ON FUNCTION audit.alert_key(text, audit.event) IS
    'Internal: the grouping key of an event for a rule''s group_by ('''' without group_by)';

-- Business hours 'HH:MM-HH:MM' (an end before the start spans midnight).
CREATE FUNCTION audit.within_hours(t timestamptz, hours text, tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m     text[] := regexp_match(hours, '^\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*$');
    t_on  time;
    t_off time;
    local time;
BEGIN
    IF m IS NULL OR m[1]::int > 24 OR m[3]::int > 24 OR m[2]::int > 59 OR m[4]::int > 59
       OR (m[1]::int = 24 AND m[2]::int > 0) OR (m[3]::int = 24 AND m[4]::int > 0) THEN
        RAISE EXCEPTION 'invalid hours "%"', hours
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Hours are written HH:MM-HH:MM, for example 06:00-22:00 (24:00 is the end of the day).',
                  HINT = 'An end before the start spans midnight: 22:00-06:00 are night hours.';
    END IF;
    t_on := make_time(m[1]::int % 24, m[2]::int, 0);
    t_off := CASE WHEN m[3]::int = 24 THEN time '24:00' ELSE make_time(m[3]::int, m[4]::int, 0) END;
    IF t_on = t_off AND m[3]::int <> 24 THEN
        RAISE EXCEPTION 'invalid hours "%": the start and the end are the same', hours
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 00:00-24:00 for the whole day.';
    END IF;
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    local := (t AT TIME ZONE coalesce(tz, current_setting('TimeZone')))::time;
    IF t_on < t_off THEN
        RETURN local >= t_on AND local < t_off;
    END IF;
    RETURN local >= t_on OR local < t_off;
END
$$;
COMMENT ON FUNCTION audit.within_hours(timestamptz, text, text) IS
    'Internal: whether a time falls in the hours HH:MM-HH:MM in time zone tz (NULL: the server''s TimeZone); raises 22023 on malformed hours';

-- Does an event match a rule (everything but threshold and cooldown)?
CREATE FUNCTION audit.alert_matches(r audit.alert_rules, e audit.event)
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
       AND (r.min_rows IS NULL
            OR coalesce(CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$'
                             THEN (e.detail ->> 'rows')::bigint END, -1) >= r.min_rows)
       AND (r.query IS NULL
            OR (e.action || E'\n' || coalesce(e.detail::text, '') || E'\n' || coalesce((SELECT s.statement_text FROM audit.statement s
                                 WHERE s.statement_id = e.statement_id), '')) ~* r.query)
       AND (r.outside_hours IS NULL OR NOT audit.within_hours(e.event_time, r.outside_hours, r.timezone))
$$;
COMMENT ON FUNCTION audit.alert_matches(audit.alert_rules, audit.event) IS
    'Internal: whether an event matches a rule''s filters; query is a case-insensitive regular expression over action, detail and statement text (one line each)';

-- Checks every argument of a rule; raises with a clear message.
CREATE FUNCTION audit.check_alert_rule(r audit.alert_rules)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known jsonb := audit.known_actions();
BEGIN
    IF r.name IS NULL OR btrim(r.name) = '' THEN
        RAISE EXCEPTION 'invalid alert rule: name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.class IS NULL OR NOT r.class = ANY (audit.event_classes()) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown class "%"', r.name, r.class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Classes: ' || array_to_string(audit.event_classes(), ', ') || '.';
    END IF;
    IF r.action IS NOT NULL AND known ? r.class AND NOT (known -> r.class) ? r.action
       AND NOT (r.class = 'privilege' AND r.action IN ('DROP OWNED', 'REASSIGN OWNED')) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown action "%" for class %', r.name, r.action, r.class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Actions of class %s: %s.', r.class,
                                (SELECT string_agg(a, ', ') FROM jsonb_array_elements_text(known -> r.class) a));
    END IF;
    IF r.action IS NOT NULL AND btrim(r.action) = '' THEN
        RAISE EXCEPTION 'invalid alert rule "%": action must not be empty', r.name
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave action NULL to match every action.';
    END IF;
    IF r.status IS NOT NULL AND r.status NOT IN ('success', 'failure') THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown status "%"', r.name, r.status
            USING ERRCODE = 'invalid_parameter_value', HINT = 'status is success or failure.';
    END IF;
    IF r.threshold IS NULL OR r.threshold <= 0 THEN
        RAISE EXCEPTION 'invalid alert rule "%": threshold must be positive, not %', r.name, coalesce(r.threshold::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'threshold is the number of matching events (within the interval "within") that fires the rule; 1 fires on every event.';
    END IF;
    IF r.threshold > 1 AND r.within IS NULL THEN
        RAISE EXCEPTION 'invalid alert rule "%": a threshold of % needs "within"', r.name, r.threshold
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say in which time the events must happen, for example within => interval ''10 minutes''.';
    END IF;
    IF r.within IS NOT NULL AND r.within <= interval '0' THEN
        RAISE EXCEPTION 'invalid alert rule "%": within must be a positive interval', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.min_rows IS NOT NULL AND r.min_rows <= 0 THEN
        RAISE EXCEPTION 'invalid alert rule "%": min_rows must be positive', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.min_rows IS NOT NULL AND r.class <> 'read' THEN
        RAISE EXCEPTION 'invalid alert rule "%": min_rows applies to class read only', r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Read events carry the rows returned; other classes have no row count.';
    END IF;
    IF r.group_by IS NOT NULL AND NOT r.group_by = ANY (audit.alert_group_keys()) THEN
        RAISE EXCEPTION 'invalid alert rule "%": cannot group by "%"', r.name, r.group_by
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'group_by is one of ' || array_to_string(audit.alert_group_keys(), ', ') || '.';
    END IF;
    IF r.severity IS NULL OR r.severity NOT IN ('low', 'medium', 'high', 'critical') THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown severity "%"', r.name, r.severity
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Severities: low, medium, high, critical.';
    END IF;
    IF r.cooldown IS NULL OR r.cooldown < interval '0' THEN
        RAISE EXCEPTION 'invalid alert rule "%": cooldown must be zero or positive', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.channel IS NULL OR r.channel = '' OR octet_length(r.channel) >= 64 THEN
        RAISE EXCEPTION 'invalid alert rule "%": channel must be a name of 1 to 63 bytes', r.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.timezone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = r.timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_abbrevs WHERE abbrev = r.timezone) THEN
        RAISE EXCEPTION 'invalid alert rule "%": unknown time zone "%"', r.name, r.timezone
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a name from pg_timezone_names, such as Europe/Paris.';
    END IF;
    IF r.outside_hours IS NOT NULL THEN
        PERFORM audit.within_hours(NULL, r.outside_hours, NULL);
    END IF;
    IF r.query IS NOT NULL THEN
        PERFORM '' ~* r.query;  -- 2201B on a malformed regular expression
    END IF;
END
$$;
COMMENT ON FUNCTION audit.check_alert_rule(audit.alert_rules) IS
    'Internal: refuse a malformed alert rule (22023, 2201B) with a message naming the problem';

CREATE FUNCTION audit.create_alert_rule(
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
    RETURN r;
END
$$;
COMMENT ON FUNCTION audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text) IS
    'audit_admin: add an alert rule; fires when threshold matching events (class, action, table_name, actor, status, query regex, min_rows, outside_hours) happen within "within" per group_by key; one alert per rule and key per cooldown, sent with NOTIFY on channel';

CREATE FUNCTION audit.drop_alert_rule(name text, if_exists boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.require_audit_role(true);
    DELETE FROM audit.alert_rules r WHERE r.name = drop_alert_rule.name;
    IF NOT FOUND THEN
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

CREATE FUNCTION audit.set_alert_rule_enabled(name text, enabled boolean)
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
END
$$;
COMMENT ON FUNCTION audit.set_alert_rule_enabled(text, boolean) IS
    'audit_admin: turn an alert rule on or off';

CREATE FUNCTION audit.acknowledge_alert(alert_id bigint, note text DEFAULT NULL)
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
    RETURN a;
END
$$;
COMMENT ON FUNCTION audit.acknowledge_alert(bigint, text) IS
    'audit_admin: mark an alert as handled, with who, when and an optional note; 42704 for an unknown alert, 55000 if already acknowledged';

-- ---------------------------------------------------------------------------
-- Evaluation: called by the background worker in a REPEATABLE READ
-- transaction (one snapshot), so the alerts, the NOTIFY and the new
-- watermark commit together.
--
-- Event ids come from a sequence at capture time, not in commit order.  The
-- state says: every event with id <= high_watermark visible now has been
-- evaluated, except the events of the transactions in "pending", each with
-- the watermark it may start above.  A round:
--   1. candidates: events with id > high_watermark, and events of pending
--      transactions that have finished (not in this snapshot's xip list),
--      with ids in (their start, high_watermark];
--   2. pending := the transactions in progress now (pg_snapshot_xip); new
--      ones start above the old high watermark: a transaction that got its
--      xid after the previous snapshot drew its ids after it too (the
--      event writer assigns the xid before the id);
--   3. high_watermark := the largest candidate id.
-- Only the worker's own events (queued security events) carry no txid: the
-- worker writes them before it evaluates.  Returns the number of alerts
-- fired, -1 when no rule is enabled.
-- ---------------------------------------------------------------------------
CREATE FUNCTION audit.evaluate_alerts()
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
                                       AND (r.min_rows IS NULL OR r.min_rows <= coalesce(
                                            CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$'
                                                 THEN (e.detail ->> 'rows')::bigint END, -1)))
                   ORDER BY e.id);
    IF cardinality(done_xids) > 0 THEN
        cand := cand || ARRAY(SELECT e FROM audit.event e
                               WHERE e.id > done_lo AND e.id <= hi AND e.txid = ANY (done_xids)
                                 AND EXISTS (SELECT 1 FROM audit.alert_rules r
                                     WHERE r.enabled AND r.class = e.class
                                       AND (r.action IS NULL OR r.action = e.action)
                                       AND (r.min_rows IS NULL OR r.min_rows <= coalesce(
                                            CASE WHEN e.detail ->> 'rows' ~ '^[0-9]{1,18}$'
                                                 THEN (e.detail ->> 'rows')::bigint END, -1))));
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
            PERFORM pg_notify(a.channel,
                              json_build_object('alert_id', a.alert_id, 'rule', a.rule, 'severity', a.severity,
                                                'key', a.key, 'count', a.count,
                                                'first_event_id', a.first_event_id, 'last_event_id', a.last_event_id,
                                                'fired_at', a.fired_at, 'database', current_database())::text);
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
COMMENT ON FUNCTION audit.evaluate_alerts() IS
    'Internal (background worker): evaluate the enabled alert rules over the events committed since the last round, store and NOTIFY the alerts; -1 when no rule is enabled';

-- The rules shipped with the extension (builtin: not dumped, see above).
-- after_hours_login is off: business hours differ from site to site.
INSERT INTO audit.alert_rules (name, class, action, threshold, within, group_by, severity, cooldown,
                               min_rows, outside_hours, query, enabled, builtin, description, created_by)
VALUES
  ('failed_logins', 'auth', 'LOGIN_FAILED', 5, '10 minutes', 'client_addr', 'high', '10 minutes',
   NULL, NULL, NULL, true, true, '5 failed logins from one client address in 10 minutes', 'audit_ext'),
  ('mass_export', 'read', NULL, 1, NULL, 'actor', 'high', '10 minutes',
   1000, NULL, NULL, true, true, 'One statement read 1,000 rows or more from a read-audited table', 'audit_ext'),
  ('privilege_escalation', 'privilege', NULL, 1, NULL, NULL, 'high', '0',
   NULL, NULL, '^(CREATE ROLE|ALTER ROLE|GRANT ROLE)\n.*("(superuser|createrole)": true|"(roles|in_role)": \[[^]]*"audit_admin")',
   true, true, 'A role granted SUPERUSER, CREATEROLE, or membership in audit_admin', 'audit_ext'),
  ('after_hours_login', 'auth', 'LOGIN', 1, NULL, 'actor', 'medium', '1 hour',
   NULL, '06:00-22:00', NULL, false, true, 'A login outside 06:00-22:00 (server time zone); enable with audit.set_alert_rule_enabled', 'audit_ext'),
  ('audit_disabled', 'ddl', NULL, 1, NULL, 'table', 'high', '0',
   NULL, NULL, '^(DISABLE AUDIT|SET session_replication_role)\n|"audit_trigger_disabled": true',
   true, true, 'Auditing turned off on a table (audit.disable, DISABLE TRIGGER, session_replication_role = replica)', 'audit_ext');

REVOKE ALL ON FUNCTION
    audit.alert_group_keys(),
    audit.alert_key(text, audit.event),
    audit.within_hours(timestamptz, text, text),
    audit.alert_matches(audit.alert_rules, audit.event),
    audit.check_alert_rule(audit.alert_rules),
    audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text),
    audit.drop_alert_rule(text, boolean),
    audit.set_alert_rule_enabled(text, boolean),
    audit.acknowledge_alert(bigint, text),
    audit.evaluate_alerts()
  FROM PUBLIC;
-- Like the reading functions: open to everyone, checking the role
-- themselves, so that anyone else is told "has no administrative access".
GRANT EXECUTE ON FUNCTION
    audit.create_alert_rule(text, text, text, integer, interval, text, text, interval, bigint, text, text, text, text, text, text, text, boolean, text),
    audit.drop_alert_rule(text, boolean),
    audit.set_alert_rule_enabled(text, boolean),
    audit.acknowledge_alert(bigint, text)
  TO PUBLIC;
GRANT EXECUTE ON FUNCTION audit.alert_group_keys() TO audit_admin, audit_reader;


-- ---- end of alerts ----


-- ====================================================================
-- Hardening (fuzz fixes)
--
-- Found by test/e2e/fuzz.sh and the isolation tests (specs/); see
-- docs/testing.md.  audit.enable / audit.disable: an OID naming no relation
-- is refused (42P01) instead of failing with a syntax error, malformed
-- option arrays get a clear error, and the table is locked before its
-- triggers are read, so that concurrent calls on one table wait for each
-- other instead of failing.  audit.resolve_record: an OID naming no
-- relation is refused (42P01).
-- ====================================================================

-- audit.enable: these fixes are in its 1.1 definition (section "Alert rules and read
-- auditing"), which also added log_reads.

CREATE OR REPLACE FUNCTION audit.disable(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    -- Wait for a concurrent enable/disable of the table (and for DML in
    -- progress) before reading its triggers; see audit.enable().  Only
    -- tables can carry the audit triggers.
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row') THEN
        RAISE NOTICE 'table "%" is not audited', tbl;
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'audit_ext_row' AND tgparentid <> 0) THEN
        RAISE EXCEPTION 'cannot stop auditing partition "%" on its own: its partitioned table is audited', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call audit.disable() on the partitioned table.';
    END IF;
    PERFORM audit.log_config_event('DISABLE AUDIT', tbl,
               (SELECT jsonb_build_object('exclude_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[1]::text[]),
                                          'mask_columns', to_jsonb((audit.trigger_arguments(t.tgargs))[2]::text[]))
                  FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'audit_ext_row'));
    PERFORM audit.drop_audit_triggers(tbl);
    RETURN true;
END
$$;

-- audit.record_history(regclass, ...) and audit.row_as_of(): an OID that
-- names no relation returned an empty history / NULL as if the table existed
-- without events; refuse it like a missing table name (42P01).
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
        EXECUTE format('SELECT to_jsonb(r) FROM jsonb_populate_record(NULL::%s, $1) r', live)
            INTO full_row USING resolve_record.record_id;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'invalid record_id %: a value does not fit its key column of %', resolve_record.record_id, live
            USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    SELECT jsonb_object_agg(k, full_row -> k) INTO record FROM unnest(keys) k;
END
$$;
