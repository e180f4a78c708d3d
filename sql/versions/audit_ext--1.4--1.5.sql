-- audit_ext 1.4 -> 1.5
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.5'" to load this file. \quit

-- ===========================================================================
-- Chain rounds: lane starts bound to checkpoint rounds (issue 18, B)
-- ===========================================================================
-- Each checkpoint round is recorded in audit.chain_round with its horizon (an
-- event id below which every lane must already have been seen in shared
-- memory) and a SHA-256 over its checkpoint rows chained to the previous
-- round.  audit.verify() reports a lane that starts below a round's horizon
-- and that no round recorded: it was inserted outside audit_ext.
ALTER TABLE audit.chain_checkpoint
    ADD COLUMN round_id bigint,
    ADD COLUMN in_doubt boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN audit.chain_checkpoint.round_id IS
    'The checkpoint round that recorded the head (audit.chain_round); NULL: recorded before 1.5, or replicated from another server';
COMMENT ON COLUMN audit.chain_checkpoint.in_doubt IS
    'The head of a prepared transaction, recorded before it was committed or rolled back';
CREATE INDEX chain_checkpoint_round_idx ON audit.chain_checkpoint (round_id) WHERE round_id IS NOT NULL;

CREATE TABLE audit.chain_round (
    round_id   bigint      PRIMARY KEY,
    taken_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    horizon    bigint,
    shm_epoch  timestamptz NOT NULL,
    lanes      integer     NOT NULL,
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('audit.chain_round', '');
COMMENT ON TABLE audit.chain_round IS
    'Checkpoint rounds: which lanes each round recorded (horizon: every lane starting below it was recorded by this round or an earlier one), chained by SHA-256';
COMMENT ON COLUMN audit.chain_round.horizon IS
    'Every event with a lower id belonged to a finished transaction when the round looked; NULL: unknown (a backend did not finish taking an id in time)';
COMMENT ON COLUMN audit.chain_round.shm_epoch IS
    'When the server''s shared memory was set up: a new value means a restart, whose lost lanes the round could not see';
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.chain_round
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
ALTER TABLE audit.chain_round ENABLE ALWAYS TRIGGER audit_append_only;
GRANT SELECT ON audit.chain_round TO audit_admin, audit_reader;

CREATE FUNCTION audit.chain_round_digest(round bigint, horizon bigint, shm_epoch timestamptz, prev_hash bytea)
RETURNS bytea
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(prev_hash || convert_to(
               format('AUDR1|%s|%s|%s', round, coalesce(horizon::text, ''),
                      (extract(epoch FROM shm_epoch) * 1000000)::bigint) ||
               coalesce((SELECT string_agg(format(E'\n%s|%s|%s|%s|%s|%s', c.class, c.chain_lane, c.chain_seq,
                                                  c.event_id, encode(c.hash, 'hex'), c.in_doubt),
                                           '' ORDER BY c.class, c.chain_lane, c.chain_seq)
                           FROM audit.chain_checkpoint c
                          WHERE c.round_id = round), ''),
               'UTF8'))
$$;
COMMENT ON FUNCTION audit.chain_round_digest(bigint, bigint, timestamptz, bytea) IS
    'Internal: SHA-256 of a checkpoint round (its number, horizon, shared-memory epoch and checkpoint rows) after the previous round''s hash';
REVOKE ALL ON FUNCTION audit.chain_round_digest(bigint, bigint, timestamptz, bytea) FROM PUBLIC;

-- Replicated checkpoint rows are bound to rounds on their own server.
CREATE OR REPLACE FUNCTION audit.on_replicated_once()
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

DROP FUNCTION audit.verify(timestamptz, timestamptz);
DROP FUNCTION audit.verify_chains(timestamptz, timestamptz);
CREATE FUNCTION audit.verify_chains(from_time timestamptz, to_time timestamptz,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT unconfirmed_chains bigint)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
REVOKE ALL ON FUNCTION audit.verify_chains(timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION audit.verify_chains(timestamptz, timestamptz) IS
    'Internal: the chain walk behind audit.verify()';

-- audit.verify() gains unconfirmed_chains (lanes that only the first round
-- after a restart could have recorded) and checks the chain of rounds.
CREATE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT protection_off_events bigint,
    OUT unconfirmed_chains bigint)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded text;
    actual   text;
    rnd      record;
    prev     bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    expect   bigint := 1;
BEGIN
    PERFORM audit.require_audit_role();
    PERFORM audit.check_time_range(from_time, to_time);
    SELECT * INTO verified, events, chains, legacy_events, unverifiable_links, breaks,
                  first_broken_event_id, first_broken_event_time, problem, unconfirmed_chains
      FROM audit.verify_chains(from_time, to_time);
    recorded := audit.recorded_anchor_digest();
    actual := audit.anchor_digest();
    IF EXISTS (SELECT 1 FROM audit.chain_anchor) AND recorded IS DISTINCT FROM actual THEN
        verified := false;
        breaks := breaks + 1;
        problem := coalesce(problem || '; ', '') ||
                   'audit.chain_anchor is not what the last PRUNE event recorded: an anchor was added or removed outside audit.prune()';
    END IF;
    -- the rounds form a chain over their checkpoint rows
    FOR rnd IN SELECT * FROM audit.chain_round ORDER BY round_id LOOP
        IF rnd.round_id <> expect OR rnd.prev_hash <> prev OR
           rnd.hash IS DISTINCT FROM audit.chain_round_digest(rnd.round_id, rnd.horizon, rnd.shm_epoch, rnd.prev_hash) THEN
            verified := false;
            breaks := breaks + 1;
            problem := coalesce(problem || '; ', '') ||
                       format('checkpoint round %s does not match its hash or does not follow round %s: a round or one of its checkpoint rows was added, removed or changed',
                              rnd.round_id, expect - 1);
            EXIT;
        END IF;
        prev := rnd.hash;
        expect := rnd.round_id + 1;
    END LOOP;
    SELECT count(*) INTO protection_off_events
      FROM audit.event e
     WHERE e.class = 'ddl' AND e.detail @> '{"audit_protection_off": true}'
       AND (from_time IS NULL OR e.event_time >= from_time)
       AND (to_time IS NULL OR e.event_time < to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL), the chain anchors and the checkpoint rounds; reports the first event where a chain breaks, how many events of the range switched a protection off, and how many chains only a restart could explain';
GRANT EXECUTE ON FUNCTION audit.verify(timestamptz, timestamptz) TO PUBLIC;

-- ===========================================================================
-- Partitions ahead are created class by class in the order a query of
-- audit.event locks the class trees: the maintenance worker creating them
-- while the alert worker reads the trail deadlocked (auth before data there,
-- data before auth here), and the month was created only on a later round.
-- ===========================================================================
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
    -- in the order a query of audit.event locks the class trees (bound order),
    -- so that creating partitions while the alert worker reads cannot deadlock
    FOREACH cls IN ARRAY (SELECT array_agg(c ORDER BY c COLLATE "C") FROM unnest(audit.event_classes()) c) LOOP
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
