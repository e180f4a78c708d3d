-- Shipping the trail to a central cluster (logical replication):
-- audit.publish() and the replica-only triggers that name an event's source
-- (the column audit.event.source is in sql/src/store.sql) and skip rows
-- already there.

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
        -- its round is the source's, not one of this server's rounds
        NEW.round_id := NULL;
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

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION audit.on_replicated_event(),
                       audit.on_replicated_once(),
                       audit.publish(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.publish(name) TO audit_admin;
