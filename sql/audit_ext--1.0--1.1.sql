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

-- ---- end of retention ----


-- ====================================================================
-- Alert rules and read auditing
-- ====================================================================

-- ---- end of alerts ----
