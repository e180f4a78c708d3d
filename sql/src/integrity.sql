-- Integrity: the hash chains (src/chain.c, src/verify.c).  The chain columns
-- of audit.event are in sql/src/store.sql; here: the chain tables
-- (chain_origin, chain_anchor, chain_checkpoint, chain_round), append-only
-- like the events, audit.verify() and what retention records about the chains
-- it cuts.

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
    round_id   bigint,
    in_doubt   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (class, chain_lane, chain_seq)
);

SELECT pg_catalog.pg_extension_config_dump('audit.chain_checkpoint', '');
COMMENT ON TABLE audit.chain_checkpoint IS 'Heads of the hash chains, recorded periodically';
COMMENT ON COLUMN audit.chain_checkpoint.round_id IS
    'The checkpoint round that recorded the head (audit.chain_round); NULL: recorded before 1.5, or replicated from another server';
COMMENT ON COLUMN audit.chain_checkpoint.in_doubt IS
    'The head of a prepared transaction, recorded before it was committed or rolled back';
CREATE INDEX chain_checkpoint_round_idx ON audit.chain_checkpoint (round_id) WHERE round_id IS NOT NULL;

-- Checkpoint rounds (src/chain.c, audit_chain_checkpoint): each records its
-- horizon (an event id below which every lane must already have been in
-- shared memory) and a SHA-256 over its checkpoint rows chained to the
-- previous round.  audit.verify() reports a lane that starts below a round's
-- horizon and that no round recorded: it was inserted outside audit_ext.
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

-- Granted to audit_admin but inserts into a table audit_admin may only
-- read: it runs as the owner, its SPI path pinned (src/elevated.c).
CREATE FUNCTION audit.chain_checkpoint()
RETURNS integer
LANGUAGE C VOLATILE STRICT
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'audit_chain_checkpoint';
COMMENT ON FUNCTION audit.chain_checkpoint() IS
    'Record the head of every chain of this database that moved since the last checkpoint; returns how many';

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
COMMENT ON FUNCTION audit.chain_record_pruned(regclass) IS
    'Internal: record the chain heads of a partition about to be dropped by retention';

-- The chain's definition as a function: what an event's hash is, given the
-- previous hash of its chain (32 zero bytes for the first).
CREATE FUNCTION audit.event_hash(e audit.event, prev_hash bytea)
RETURNS bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'audit_event_hash';
COMMENT ON FUNCTION audit.event_hash(audit.event, bytea) IS
    'SHA-256 chain hash of an event following prev_hash (see docs/integrity.md for the serialisation)';

CREATE FUNCTION audit.verify_chains(from_time timestamptz, to_time timestamptz,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT unconfirmed_chains bigint)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
COMMENT ON FUNCTION audit.verify_chains(timestamptz, timestamptz) IS
    'Internal: the chain walk behind audit.verify()';

-- Walk the chains of the events in [from_time, to_time) (all when NULL) and
-- report the first event where one breaks.  The anchors must be what the
-- last PRUNE event recorded.  protection_off_events: the events of the range
-- that switched a protection off (audit_ext.protect_trail, audit_ext.log_ddl,
-- by any route), so that a "verified" trail still says when it was left open.
-- The checkpoint rounds must form an unbroken chain; unconfirmed_chains:
-- lanes that only the first round after a restart could have recorded.
-- capture_gaps, capture_gap_ranges (issue 22): the system/CAPTURE_GAP events
-- of the range, i.e. WAL whose changes of tables audited with capture =>
-- 'wal' were never captured (slot invalidated by max_slot_wal_keep_size,
-- dropped or advanced by someone else), each as 'from_lsn-to_lsn (reason)'.
-- The chains of what was captured can verify (verified stays about them),
-- but the trail is known to be incomplete there: never silent.
CREATE FUNCTION audit.verify(from_time timestamptz DEFAULT NULL, to_time timestamptz DEFAULT NULL,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT protection_off_events bigint,
    OUT unconfirmed_chains bigint, OUT capture_gaps bigint, OUT capture_gap_ranges text[])
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
    SELECT count(*), coalesce(array_agg(format('%s-%s (%s)', e.detail ->> 'from_lsn', e.detail ->> 'to_lsn',
                                               e.detail ->> 'reason') ORDER BY e.id), '{}')
      INTO capture_gaps, capture_gap_ranges
      FROM audit.event e
     WHERE e.class = 'system' AND e.action = 'CAPTURE_GAP'
       AND (from_time IS NULL OR e.event_time >= from_time)
       AND (to_time IS NULL OR e.event_time < to_time);
END
$$;
COMMENT ON FUNCTION audit.verify(timestamptz, timestamptz) IS
    'Check the hash chains of the events in [from_time, to_time) (all when NULL), the chain anchors and the checkpoint rounds; reports the first event where a chain breaks, how many events of the range switched a protection off, how many chains only a restart could explain, and the capture gaps of WAL capture (CAPTURE_GAP events: LSN ranges whose changes are not in the trail)';

-- Recorded verifications (1.6): the maintenance worker walks the chains of
-- the events that arrived since the last recorded walk (audit.
-- record_verification(), each round), continuing every lane from the head
-- that walk left, and records what it found.  A rendered report or the
-- dashboard then re-walks only what is newer than the last record and
-- checks the older part of its period for rows rewritten or added since
-- their walk (their row version: xmin), instead of re-hashing the period.
CREATE TABLE audit.verification (
    verification_id         bigint      PRIMARY KEY,
    verified_at             timestamptz NOT NULL DEFAULT pg_catalog.now(),
    verified_by             text        NOT NULL,
    after_event_id          bigint      NOT NULL,
    upto_event_id           bigint      NOT NULL,
    snapshot_xmax           xid8        NOT NULL,
    events                  bigint      NOT NULL,
    min_event_time          timestamptz,
    max_event_time          timestamptz,
    chains                  bigint      NOT NULL,
    legacy_events           bigint      NOT NULL,
    breaks                  bigint      NOT NULL,
    first_broken_event_id   bigint,
    first_broken_event_time timestamptz,
    problem                 text,
    CHECK (upto_event_id > after_event_id)
);
COMMENT ON TABLE audit.verification IS
    'Recorded walks of the hash chains (audit.record_verification(), run by the maintenance worker): each covers the events with ids in (after_event_id, upto_event_id], continuing from the previous one';
COMMENT ON COLUMN audit.verification.verified_by IS 'Role that ran the walk (the maintenance worker''s)';
COMMENT ON COLUMN audit.verification.after_event_id IS 'The walk covered the events with a higher id (the previous walk''s upto_event_id; 0: the first walk)';
COMMENT ON COLUMN audit.verification.upto_event_id IS 'The walk covered the events up to this id (below the horizon of the last checkpoint round: no transaction could still add an event below it)';
COMMENT ON COLUMN audit.verification.snapshot_xmax IS 'Every row version written by a transaction from this one on was written after the walk looked: a rewritten or added event of the walked range has such an xmin';
COMMENT ON COLUMN audit.verification.events IS 'Events the walk read (a report compares it with the events of those ids still there: one removed since is missing)';
COMMENT ON COLUMN audit.verification.min_event_time IS 'Earliest event_time among them (NULL: none)';
COMMENT ON COLUMN audit.verification.max_event_time IS 'Latest event_time among them';
COMMENT ON COLUMN audit.verification.breaks IS 'Breaks the walk found (0: every chain it walked is unbroken)';

CREATE TABLE audit.verification_head (
    verification_id bigint      NOT NULL REFERENCES audit.verification,
    class           text COLLATE "C" NOT NULL,
    chain_lane      bigint      NOT NULL,
    chain_seq       bigint      NOT NULL,
    event_id        bigint      NOT NULL,
    hash            bytea       NOT NULL,
    PRIMARY KEY (class, chain_lane, verification_id)
);
COMMENT ON TABLE audit.verification_head IS
    'Where each recorded walk left the lanes it moved (position, event, hash): the next walk continues from there';

CREATE FUNCTION audit.verify_chains_from(after_id bigint, before_id bigint, from_time timestamptz,
    to_time timestamptz, seed bigint,
    OUT verified boolean, OUT events bigint, OUT chains bigint, OUT legacy_events bigint,
    OUT unverifiable_links bigint, OUT breaks bigint, OUT first_broken_event_id bigint,
    OUT first_broken_event_time timestamptz, OUT problem text, OUT unconfirmed_chains bigint,
    OUT heads jsonb, OUT min_event_time timestamptz, OUT max_event_time timestamptz)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'audit_verify';
COMMENT ON FUNCTION audit.verify_chains_from(bigint, bigint, timestamptz, timestamptz, bigint) IS
    'Internal: the chain walk of the events with ids in (after_id, before_id) (before_id NULL: all newer), each lane continued from the heads of the recorded verifications up to seed; returns the heads it moved and the earliest and latest event time it read';

-- Walk the chains of the events that arrived since the last recorded walk
-- and record it, in walks of at most 100,000 ids (a report compares a walk's
-- count of events with what is there: the smaller a walk, the fewer events
-- outside a period it reads), at most ten a call (the first calls start from
-- the first event).  Run by the maintenance worker after the checkpoint
-- round, whose horizon bounds the walk: every event below it belongs to a
-- finished transaction, so a later walk never finds an older id appear.
-- Returns the number of events walked (0: nothing new).
CREATE FUNCTION audit.record_verification()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last    audit.verification;
    horizon bigint;
    xmax    xid8;
    upto    bigint;
    v       record;
    vid     bigint;
    walked  bigint := 0;
BEGIN
    -- one walk at a time
    LOCK TABLE audit.verification IN SHARE ROW EXCLUSIVE MODE;
    SELECT max(r.horizon) INTO horizon FROM audit.chain_round r;
    FOR i IN 1 .. 10 LOOP
        SELECT * INTO last FROM audit.verification r ORDER BY r.verification_id DESC LIMIT 1;
        IF horizon IS NULL OR horizon - 1 <= coalesce(last.upto_event_id, 0) THEN
            EXIT;
        END IF;
        upto := least(horizon - 1, coalesce(last.upto_event_id, 0) + 100000);
        -- taken before the walk: every event the walk reads was written by
        -- a transaction below it
        xmax := pg_snapshot_xmax(pg_current_snapshot());
        SELECT * INTO v FROM audit.verify_chains_from(coalesce(last.upto_event_id, 0), upto + 1, NULL, NULL,
                                                      coalesce(last.verification_id, 0));
        vid := coalesce(last.verification_id, 0) + 1;
        INSERT INTO audit.verification (verification_id, verified_by, after_event_id, upto_event_id, snapshot_xmax,
                                        events, min_event_time, max_event_time, chains, legacy_events, breaks,
                                        first_broken_event_id, first_broken_event_time, problem)
        VALUES (vid, audit.session_role(), coalesce(last.upto_event_id, 0), upto, xmax, v.events, v.min_event_time,
                v.max_event_time, v.chains, v.legacy_events, v.breaks, v.first_broken_event_id,
                v.first_broken_event_time, v.problem);
        INSERT INTO audit.verification_head (verification_id, class, chain_lane, chain_seq, event_id, hash)
        SELECT vid, h.class, h.lane, h.seq, h.event_id, decode(h.hash, 'hex')
          FROM jsonb_to_recordset(v.heads) h(class text, lane bigint, seq bigint, event_id bigint, hash text);
        walked := walked + v.events;
    END LOOP;
    RETURN walked;
END
$$;
COMMENT ON FUNCTION audit.record_verification() IS
    'Internal (maintenance worker): walk the hash chains of the events that arrived since the last recorded walk (walks of at most 100,000 ids, ten a call) and record each walk''s result and lane heads in audit.verification';

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

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.chain_round
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.chain_round ENABLE ALWAYS TRIGGER audit_append_only;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.verification
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.verification ENABLE ALWAYS TRIGGER audit_append_only;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit.verification_head
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

ALTER TABLE audit.verification_head ENABLE ALWAYS TRIGGER audit_append_only;

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

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT SELECT ON audit.chain_origin,
                audit.chain_anchor,
                audit.chain_checkpoint,
                audit.chain_round,
                audit.verification,
                audit.verification_head TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.chain_checkpoint(),
                       audit.chain_record_pruned(regclass),
                       audit.event_hash(audit.event,bytea),
                       audit.verify_chains(timestamp with time zone,timestamp with time zone),
                       audit.verify_chains_from(bigint, bigint, timestamptz, timestamptz, bigint),
                       audit.record_verification(),
                       audit.anchor_digest(),
                       audit.recorded_anchor_digest(),
                       audit.chain_round_digest(bigint,bigint,timestamp with time zone,bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.chain_checkpoint() TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.event_hash(audit.event,bytea) TO audit_admin, audit_reader;
