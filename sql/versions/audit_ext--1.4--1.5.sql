-- audit_ext 1.4 -> 1.5: chain rounds bind lane starts (issue 18 B); statement texts pruned with their
-- events (issue 18 D); capture switched off without a statement is found and recorded (issue 18 C);
-- canonical record keys, baselines, histories that follow records (issue 19)
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


-- ===========================================================================
-- Canonical record keys (issue 19): capture writes timestamptz in UTC,
-- interval in ISO 8601, floats shortest, bytea in hex whatever the session's
-- settings, and lookups turn the caller's key into the same form.
-- ===========================================================================
-- A row in the form capture writes it (src/row_json.c): timestamptz in UTC,
-- interval in ISO 8601, floats shortest, bytea in hex, whatever the session's
-- settings.  Lookups turn the caller's key into it.
CREATE FUNCTION audit.canonical_jsonb(r anyelement)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'audit_canonical_jsonb';
COMMENT ON FUNCTION audit.canonical_jsonb(anyelement) IS
    'A row as jsonb in the form capture writes it, independent of session settings (timestamptz in UTC, interval in ISO 8601, floats shortest, bytea in hex)';

-- Resolve a live table and a record_id given by the user to the names its
-- events carry (the audited partitioned root for a partition) and the
-- record_id exactly as captured: for a table with a key, record_id must name
-- exactly the key columns; values are converted through the column types
-- ({"id": "42"} becomes {"id": 42}).  Without a key, record_id is the whole
-- recorded row and is taken as given.
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
        -- the table's column types and domains are its owner's code: run
        -- them as the owner, never with this function's rights
        full_row := audit.eval_as_table_owner(live,
                        format('SELECT audit.canonical_jsonb(r.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r', live),
                        resolve_record.record_id);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'invalid record_id %: a value does not fit its key column of %', resolve_record.record_id, live
            USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    SELECT jsonb_object_agg(k, full_row -> k) INTO record FROM unnest(keys) k;
END
$$;

-- ===========================================================================
-- Reading functions (issue 19): audit.undo's generated SQL writes whole-row
-- references as t.* and w.* (a column named t or w made it fail with 42702);
-- BASELINE events (audit.enable(baseline => true)) count as the row's
-- first state in row_as_of() and record_history(), and cannot be undone; a
-- record's history follows it back through the keys it had and never merges
-- two records that had one key (audit.record_incarnation); a table re-created
-- under a dropped one's name is another table (audit.table_dropped_at): its
-- history does not include the dropped one's, and undo of the dropped one's
-- events is refused (42P01).
-- ===========================================================================
CREATE FUNCTION audit.table_dropped_at(p_schema text, p_table text)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(e.id) FROM audit.event e
     WHERE e.class = 'ddl' AND e.status = 'success'
       AND e.detail -> 'audited_tables_dropped' ? (p_schema || '.' || p_table)
$$;
COMMENT ON FUNCTION audit.table_dropped_at(text, text) IS
    'Internal: the id of the last event that recorded the drop of an audited table of this schema and name (NULL: none)';
REVOKE ALL ON FUNCTION audit.table_dropped_at(text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.table_dropped_at(text,text) TO audit_admin;

CREATE FUNCTION audit.record_incarnation(p_schema text, p_table text, p_key jsonb, upto_id bigint,
                                         OUT e audit.event, OUT k jsonb)
RETURNS SETOF record
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    evk audit.event[];
    s   integer := 1;
    m   integer;
    ev  audit.event;
BEGIN
    evk := ARRAY(SELECT x FROM audit.event x
                  WHERE x.class = 'data' AND x.schema_name = p_schema AND x.table_name = p_table
                    AND x.record_id @> p_key AND x.record_id = p_key
                    AND (upto_id IS NULL OR x.id <= upto_id)
                  ORDER BY x.id);
    m := coalesce(array_length(evk, 1), 0);
    FOR i IN 1 .. m LOOP
        ev := evk[i];
        CONTINUE WHEN ev.status <> 'success';
        IF ev.action = 'INSERT' THEN
            s := i;
        ELSIF i < m AND (ev.action = 'DELETE' OR
                         (ev.action = 'UPDATE' AND audit.next_record_id(p_key, ev.new_data) IS DISTINCT FROM p_key)) THEN
            s := i + 1;
        END IF;
    END LOOP;
    FOR i IN s .. m LOOP
        e := evk[i];
        k := p_key;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_incarnation(text, text, jsonb, bigint) IS
    'Internal: the events of the last record that had a key (up to an event), from where it got the key';
REVOKE ALL ON FUNCTION audit.record_incarnation(text,text,jsonb,bigint) FROM PUBLIC;

DROP FUNCTION audit.record_events(text, text, jsonb, regclass);
CREATE FUNCTION audit.record_events(p_schema text, p_table text, p_record jsonb, p_live regclass,
                                    p_at timestamptz DEFAULT NULL)
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
    before_id  bigint;
    upto       bigint;
    first_id   bigint;
    bound      bigint;
    kept       audit.event[];
    kept_ids   jsonb[];
BEGIN
    -- The record's own events.  A key names the record that has it now or
    -- had it last: its events under the key since it got the key (an
    -- INSERT, or an UPDATE that moved it there from another key, or the
    -- start of the trail), back through each key it had before and forward
    -- through each key it took after.  A DELETE ends a record, and a later
    -- record that takes the same key has a history of its own.
    -- With p_at: the record that had the key at that moment (the last one
    -- that had it by then, else the first one to have it after).
    IF p_at IS NOT NULL THEN
        SELECT max(e.id) INTO upto FROM audit.event e WHERE e.class = 'data' AND e.event_time <= p_at;
        upto := coalesce(upto, 0);
    END IF;
    SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
      INTO evs, idents
      FROM audit.record_incarnation(p_schema, p_table, k, upto) x;
    IF cardinality(evs) = 0 AND upto IS NOT NULL THEN
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> k AND e.id <= upto
           AND e.record_id IS DISTINCT FROM k AND audit.next_record_id(e.record_id, e.new_data) = k
         ORDER BY e.id DESC LIMIT 1;
        IF FOUND THEN
            SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
              INTO evs, idents
              FROM audit.record_incarnation(p_schema, p_table, ev.record_id, ev.id) x;
        ELSE
            -- nothing had the key by then: the first record to have it after
            SELECT min(e.id) INTO first_id FROM audit.event e
             WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
               AND e.record_id @> k AND e.record_id = k AND e.id > upto;
            IF first_id IS NOT NULL THEN
                -- up to its DELETE or move to another key, or just before the next INSERT
                SELECT CASE WHEN e.action = 'INSERT' THEN e.id - 1 ELSE e.id END INTO bound
                  FROM audit.event e
                 WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
                   AND e.record_id @> k AND e.record_id = k AND e.id >= first_id AND e.status = 'success'
                   AND (e.action = 'DELETE' OR (e.action = 'INSERT' AND e.id > first_id) OR
                        (e.action = 'UPDATE' AND audit.next_record_id(k, e.new_data) IS DISTINCT FROM k))
                 ORDER BY e.id LIMIT 1;
                SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
                  INTO evs, idents
                  FROM audit.record_incarnation(p_schema, p_table, k, bound) x;
            END IF;
        END IF;
    ELSIF cardinality(evs) = 0 THEN
        -- the record may have got the key by an UPDATE and have no event under it yet
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> k
           AND e.record_id IS DISTINCT FROM k AND audit.next_record_id(e.record_id, e.new_data) = k
         ORDER BY e.id DESC LIMIT 1;
        IF FOUND THEN
            SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}'), coalesce(array_agg(x.k ORDER BY (x.e).id), '{}')
              INTO evs, idents
              FROM audit.record_incarnation(p_schema, p_table, ev.record_id, ev.id) x;
        END IF;
    END IF;
    -- with p_at the incarnation was cut at that moment: its later events
    -- under the same key belong to it too
    n := cardinality(evs);
    IF upto IS NOT NULL AND n > 0 AND NOT (evs[n].status = 'success' AND
           (evs[n].action = 'DELETE' OR
            (evs[n].action = 'UPDATE' AND audit.next_record_id(idents[n], evs[n].new_data) IS DISTINCT FROM idents[n]))) THEN
        k := idents[n];
        FOR ev IN SELECT * FROM audit.event e
                   WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
                     AND e.record_id @> k AND e.record_id = k AND e.id > evs[n].id
                   ORDER BY e.id
        LOOP
            EXIT WHEN ev.action IN ('INSERT', 'BASELINE') AND ev.status = 'success';
            evs := evs || ev;
            idents := idents || k;
            EXIT WHEN ev.status = 'success' AND (ev.action = 'DELETE' OR
                      (ev.action = 'UPDATE' AND audit.next_record_id(k, ev.new_data) IS DISTINCT FROM k));
        END LOOP;
    END IF;
    -- back: the UPDATE that moved the record to the key of its first event
    WHILE cardinality(evs) > 0 AND evs[1].action NOT IN ('INSERT', 'BASELINE') LOOP
        -- after the previous holder of that key, if any
        SELECT max(e.id) INTO before_id FROM audit.event e
         WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
           AND e.record_id @> idents[1] AND e.record_id = idents[1] AND e.id < evs[1].id;
        SELECT * INTO ev FROM audit.event e
         WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
           AND e.action = 'UPDATE' AND e.status = 'success' AND e.new_data @> idents[1]
           AND e.id < evs[1].id AND e.id > coalesce(before_id, 0)
           AND e.record_id IS DISTINCT FROM idents[1] AND audit.next_record_id(e.record_id, e.new_data) = idents[1]
         ORDER BY e.id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT coalesce(array_agg(x.e ORDER BY (x.e).id), '{}') || evs, coalesce(array_agg(x.k ORDER BY (x.e).id), '{}') || idents
          INTO evs, idents
          FROM audit.record_incarnation(p_schema, p_table, ev.record_id, ev.id) x;
    END LOOP;
    -- a table of this name that exists now is not the one a recorded DROP
    -- removed: that one's events are not its history
    IF p_live IS NOT NULL THEN
        before_id := audit.table_dropped_at(p_schema, p_table);
        IF before_id IS NOT NULL THEN
            kept := '{}';
            kept_ids := '{}';
            FOR i IN 1 .. coalesce(array_length(evs, 1), 0) LOOP
                CONTINUE WHEN evs[i].id <= before_id;
                kept := kept || evs[i];
                kept_ids := kept_ids || idents[i];
            END LOOP;
            evs := kept;
            idents := kept_ids;
        END IF;
    END IF;
    -- forward: each key change out of the last key, until a DELETE
    n := cardinality(evs);
    WHILE n > 0 AND evs[n].action = 'UPDATE' AND evs[n].status = 'success' LOOP
        k := audit.next_record_id(idents[n], evs[n].new_data);
        EXIT WHEN k IS NOT DISTINCT FROM idents[n];
        after_id := evs[n].id;
        FOR ev IN SELECT * FROM audit.event e
                   WHERE e.class = 'data' AND e.schema_name = p_schema AND e.table_name = p_table
                     AND e.record_id @> k AND e.record_id = k AND e.id > after_id
                   ORDER BY e.id
        LOOP
            -- an INSERT under the new key is another record (ours was removed)
            EXIT WHEN ev.action IN ('INSERT', 'BASELINE') AND ev.status = 'success';
            evs := evs || ev;
            idents := idents || k;
            EXIT WHEN ev.status = 'success' AND (ev.action = 'DELETE' OR
                      (ev.action = 'UPDATE' AND audit.next_record_id(k, ev.new_data) IS DISTINCT FROM k));
        END LOOP;
        EXIT WHEN cardinality(evs) = n;
        n := cardinality(evs);
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
                present := ev.action IN ('INSERT', 'UPDATE', 'BASELINE');
            END IF;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audit.record_events(text, text, jsonb, regclass, timestamptz) IS
    'Internal: the events of one record oldest first, following key changes, with the TRUNCATE that removed it';
REVOKE ALL ON FUNCTION audit.record_events(text,text,jsonb,regclass,timestamp with time zone) FROM PUBLIC;

CREATE OR REPLACE FUNCTION audit.known_actions()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '{"data":      ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "BASELINE"],
             "auth":      ["LOGIN", "LOGIN_FAILED", "LOGOUT"],
             "privilege": ["GRANT", "REVOKE", "CREATE ROLE", "ALTER ROLE", "DROP ROLE",
                           "GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES"],
             "read":      ["SELECT", "COPY"]}'::jsonb
$$;

CREATE OR REPLACE FUNCTION audit.row_as_of(tbl regclass, record_id jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    evs      audit.event[];
    ev       audit.event;
    n        integer;
    p        integer := 0;
    present  boolean := NULL;   -- NULL: before the record's first event
    complete boolean := false;  -- state holds every recorded column
    state    jsonb := '{}';
    touched  text[] := '{}';
    fill     jsonb;
BEGIN
    PERFORM audit.require_audit_role();
    IF row_as_of.at IS NULL THEN
        RAISE EXCEPTION 'invalid at: must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO r FROM audit.resolve_record(tbl, record_id);
    -- the record that had this key at that moment
    evs := ARRAY(SELECT e FROM audit.record_events(r.schema_name, r.table_name, r.record, r.live, row_as_of.at) e ORDER BY e.id);
    n := coalesce(array_length(evs, 1), 0);

    -- Replay the events up to "at": in id order, up to the first one whose
    -- statement started after "at".
    WHILE p < n AND evs[p + 1].event_time <= row_as_of.at LOOP
        p := p + 1;
        ev := evs[p];
        CONTINUE WHEN ev.status <> 'success';
        IF ev.action IN ('INSERT', 'BASELINE') THEN
            -- BASELINE: the row as it was when auditing began
            state := ev.new_data;
            present := true;
            complete := true;
        ELSIF ev.action = 'UPDATE' THEN
            IF present IS NOT TRUE THEN
                state := '{}';
                complete := false;
            END IF;
            -- before the UPDATE the row had record_id's and old_data's values
            state := (ev.record_id || coalesce(ev.old_data, '{}')) || state;
            state := state || coalesce(ev.new_data, '{}');
            present := true;
        ELSE    -- DELETE, TRUNCATE
            state := NULL;
            present := false;
            complete := false;
        END IF;
    END LOOP;

    IF present IS FALSE THEN
        RETURN NULL;
    END IF;
    IF present IS NULL THEN
        -- before the first event: the row existed if the trail starts with a
        -- change of an existing row
        IF p >= n OR evs[p + 1].action NOT IN ('UPDATE', 'DELETE') THEN
            RETURN NULL;
        END IF;
        state := '{}';
    END IF;

    -- A trail that does not start with an INSERT knows only part of the row:
    -- later events tell the values of the columns they change (old values)
    -- and, at a DELETE, the whole row.  A column not changed between "at"
    -- and that event had the same value at "at".
    IF NOT complete THEN
        FOR i IN p + 1 .. n LOOP
            ev := evs[i];
            CONTINUE WHEN ev.status <> 'success';
            EXIT WHEN ev.action NOT IN ('UPDATE', 'DELETE');
            fill := CASE WHEN ev.action = 'UPDATE' THEN ev.record_id || coalesce(ev.old_data, '{}')
                         ELSE ev.old_data END;
            SELECT state || coalesce(jsonb_object_agg(f.key, f.value), '{}') INTO state
              FROM jsonb_each(fill) f
             WHERE NOT state ? f.key AND NOT f.key = ANY (touched);
            EXIT WHEN ev.action = 'DELETE';
            touched := touched || coalesce(ev.changed_columns, '{}');
        END LOOP;
    END IF;
    -- the record had this key at that moment, or it is not the row asked for
    IF state IS NOT NULL AND audit.key_columns(r.live) IS NOT NULL
       AND EXISTS (SELECT 1 FROM jsonb_each(r.record) kv WHERE state -> kv.key IS DISTINCT FROM kv.value) THEN
        RETURN NULL;
    END IF;
    RETURN state;
END
$$;

CREATE OR REPLACE FUNCTION audit.undo(event_id bigint, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev        audit.event;
    tbl       regclass;
    keys      text[];
    live_cols text[];        -- columns that can be written (not generated)
    all_cols  text[];
    ident     jsonb;         -- the row's identity after the event
    match_ident jsonb;
    match_cols text[];
    want      jsonb;         -- recorded after-state to compare with
    cond      text;
    cands     record;
    found_n   integer := 0;
    row_oid   oid;
    row_tid   tid;
    cur       jsonb;
    want_row  jsonb;
    diff      text[];
    cols      text[];
    bad       text[];
    restore_sql text;
    forced    text := '';
    ambiguous_ok boolean;
BEGIN
    PERFORM audit.require_audit_role(true);
    IF undo.event_id IS NULL OR undo.event_id <= 0 THEN
        RAISE EXCEPTION 'invalid event_id %: must be a positive event id', coalesce(undo.event_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO ev FROM audit.event e WHERE e.id = undo.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot undo event %: there is no such event', undo.event_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ev.class <> 'data' THEN
        RAISE EXCEPTION 'cannot undo this % event: only data changes can be undone', ev.class
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ev.action = 'TRUNCATE' THEN
        RAISE EXCEPTION 'cannot undo a TRUNCATE: the trail does not hold the rows it removed'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Restore the table from a backup; audit.row_as_of() rebuilds single rows that have a history.';
    END IF;
    -- a table of the event's name that exists now was created after the
    -- event's table was dropped: another table
    IF to_regclass(format('%I.%I', ev.schema_name, ev.table_name)) IS NOT NULL
       AND ev.id < audit.table_dropped_at(ev.schema_name, ev.table_name) THEN
        RAISE EXCEPTION 'cannot undo this %: table %.% was dropped after it', ev.action,
                        quote_ident(ev.schema_name), quote_ident(ev.table_name)
            USING ERRCODE = 'undefined_table',
                  DETAIL = format('Event %s recorded its drop; a table of that name created since is another table.',
                                  audit.table_dropped_at(ev.schema_name, ev.table_name)),
                  HINT = 'audit.record_history(schema_name, table_name, record_id) shows the history of the dropped table.';
    END IF;
    IF ev.action = 'BASELINE' THEN
        RAISE EXCEPTION 'cannot undo a BASELINE event: it records a row as it was when auditing began, not a change'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Undo the changes recorded after it.';
    END IF;
    IF ev.action NOT IN ('INSERT', 'UPDATE', 'DELETE') OR ev.status <> 'success' THEN
        RAISE EXCEPTION 'cannot undo this % event: with status % it changed nothing', ev.action, ev.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    tbl := to_regclass(format('%I.%I', ev.schema_name, ev.table_name));
    IF tbl IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tbl AND c.relkind IN ('r', 'p')) THEN
        RAISE EXCEPTION 'cannot undo this %: table %.% no longer exists', ev.action,
                        quote_ident(ev.schema_name), quote_ident(ev.table_name)
            USING ERRCODE = 'undefined_table',
                  HINT = 'A renamed table is not followed; audit.record_history(schema_name, table_name, record_id) shows the history of a dropped table.';
    END IF;

    SELECT array_agg(a.attname::text ORDER BY a.attnum),
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attgenerated = '')
      INTO all_cols, live_cols
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    keys := audit.key_columns(tbl);

    -- the row as the event left it
    IF ev.action = 'INSERT' THEN
        ident := ev.record_id;
        want := ev.new_data;
    ELSIF ev.action = 'UPDATE' THEN
        ident := audit.next_record_id(ev.record_id, ev.new_data);
        SELECT jsonb_object_agg(c, ev.new_data -> c) INTO want
          FROM unnest(ev.changed_columns) c WHERE ev.new_data ? c;
    ELSE
        ident := ev.record_id;
        want := NULL;
    END IF;
    -- masked values cannot be compared
    SELECT jsonb_object_agg(w.key, w.value) INTO want
      FROM jsonb_each(want) w WHERE w.value <> '"[masked]"' AND w.key = ANY (all_cols);

    -- How the row is found: by its key, or (no key) by every recorded,
    -- unmasked column.
    IF keys IS NOT NULL THEN
        IF ARRAY(SELECT jsonb_object_keys(ident) ORDER BY 1) <> ARRAY(SELECT unnest(keys) ORDER BY 1) THEN
            RAISE EXCEPTION 'cannot undo this %: the key of % is now (%), the event identifies its row by %',
                            ev.action, tbl, array_to_string(keys, ', '), ev.record_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        match_cols := keys;
        match_ident := ident;
        cond := (SELECT string_agg(format('t.%I = i.%I', c, c), ' AND ') FROM unnest(keys) c);
    ELSE
        SELECT array_agg(i.key ORDER BY i.key), jsonb_object_agg(i.key, i.value) INTO match_cols, match_ident
          FROM jsonb_each(ident) i WHERE i.value <> '"[masked]"' AND i.key = ANY (all_cols);
        cond := coalesce((SELECT string_agg(format('to_jsonb(t.%I) IS NOT DISTINCT FROM to_jsonb(i.%I)', c, c), ' AND ')
                            FROM unnest(match_cols) c), 'true');
    END IF;
    -- Rows identical in every compared column are interchangeable only if
    -- every column of the table was compared.
    ambiguous_ok := keys IS NULL AND all_cols <@ coalesce(match_cols, '{}');

    -- What must be restorable.
    IF ev.action = 'UPDATE' THEN
        bad := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE ev.old_data -> c = '"[masked]"');
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this UPDATE: the old value of masked column % was not recorded',
                            array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Masked columns are stored as "[masked]".';
        END IF;
        bad := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE NOT c = ANY (all_cols));
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this UPDATE: column % of % no longer exists', array_to_string(bad, ', '), tbl
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        cols := ARRAY(SELECT c FROM unnest(ev.changed_columns) c WHERE c = ANY (live_cols));
    ELSIF ev.action = 'DELETE' THEN
        bad := ARRAY(SELECT c FROM unnest(live_cols) c WHERE ev.old_data -> c = '"[masked]"');
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this DELETE: the value of masked column % was not recorded',
                            array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Masked columns are stored as "[masked]".';
        END IF;
        bad := ARRAY(SELECT c FROM unnest(live_cols) c WHERE NOT ev.old_data ? c);
        IF cardinality(bad) > 0 THEN
            RAISE EXCEPTION 'cannot undo this DELETE: the value of column % was not recorded', array_to_string(bad, ', ')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'The column is excluded from auditing, or was added to the table after the event.';
        END IF;
        cols := live_cols;
    END IF;

    -- Find the row as it is now (at most two, to see ambiguity).
    BEGIN
        FOR cands IN EXECUTE format(
                'SELECT t.tableoid AS toid, t.ctid AS tid, to_jsonb(t.*) AS cur, to_jsonb(w.*) AS want_row'
                '  FROM %s t, jsonb_populate_record(NULL::%s, $1) i, jsonb_populate_record(NULL::%s, $2) w'
                ' WHERE %s LIMIT 2', tbl, tbl, tbl, cond)
            USING match_ident, coalesce(want, '{}')
        LOOP
            found_n := found_n + 1;
            IF found_n = 1 THEN
                row_oid := cands.toid;
                row_tid := cands.tid;
                cur := cands.cur;
                want_row := cands.want_row;
            END IF;
        END LOOP;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'cannot undo this %: its recorded values no longer fit table %', ev.action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = SQLERRM;
    END;
    IF ev.action IN ('INSERT', 'UPDATE') THEN
        IF found_n > 1 AND NOT ambiguous_ok THEN
            RAISE EXCEPTION 'cannot undo this %: several rows of % match %', ev.action, tbl, match_ident
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'The table has no key and the trail does not record every column of these rows.';
        END IF;
        IF found_n = 0 THEN
            RAISE EXCEPTION 'cannot undo this %: the row % is no longer in %', ev.action, ident, tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'It was deleted or its key changed after the event, or row level security hides it from you.',
                      HINT = 'audit.record_history() shows what happened to it.';
        END IF;
        diff := ARRAY(SELECT w.key FROM jsonb_each(want) w
                       WHERE cur -> w.key IS DISTINCT FROM want_row -> w.key ORDER BY w.key);
        IF cardinality(diff) > 0 THEN
            IF NOT coalesce(undo.force, false) THEN
                RAISE EXCEPTION 'cannot undo this %: the row % of % has changed since', ev.action, ident, tbl
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = format('Changed since the event: %s.', array_to_string(diff, ', ')),
                          HINT = 'Pass force => true to undo the event anyway.';
            END IF;
            forced := format(' (forced: %s had changed since)', array_to_string(diff, ', '));
        END IF;
    END IF;

    -- The change.  tableoid and ctid name the row just read; the re-check of
    -- the whole row makes a concurrent change fail instead of being lost.
    restore_sql := format('UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $4) o)'
                          ' WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t.*) = $3',
                          tbl,
                          (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                          (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
                          tbl);
    IF ev.action = 'INSERT' THEN
        PERFORM audit.undo_change_row(
            format('DELETE FROM %s t WHERE t.tableoid = $1 AND t.ctid = $2 AND to_jsonb(t.*) = $3', tbl),
            ev.action, tbl, ident, row_oid, row_tid, cur, NULL);
        RETURN format('undid INSERT event %s: deleted the row %s from %s%s', ev.id, ident, tbl, forced);
    END IF;

    IF ev.action = 'UPDATE' THEN
        IF cardinality(cols) = 0 THEN
            RETURN format('undid UPDATE event %s: nothing to restore in %s (only generated columns changed)', ev.id, tbl);
        END IF;
        PERFORM audit.undo_change_row(restore_sql, ev.action, tbl, ident, row_oid, row_tid, cur, ev.old_data);
        RETURN format('undid UPDATE event %s: restored %s of the row %s in %s%s', ev.id,
                      array_to_string(cols, ', '), ev.record_id, tbl, forced);
    END IF;

    -- DELETE: put the row back.
    IF found_n > 0 AND keys IS NOT NULL THEN
        IF NOT coalesce(undo.force, false) THEN
            RAISE EXCEPTION 'cannot undo this DELETE: a row with key % is in % again', ident, tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Pass force => true to overwrite it with the deleted row''s values.';
        END IF;
        PERFORM audit.undo_change_row(restore_sql, ev.action, tbl, ident, row_oid, row_tid, cur, ev.old_data);
        RETURN format('undid DELETE event %s: overwrote the row %s in %s with the deleted values (forced: a row with that key had been inserted since)',
                      ev.id, ident, tbl);
    END IF;
    BEGIN
        EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_record(NULL::%s, $1) o',
                       tbl,
                       (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c),
                       tbl)
            USING ev.old_data;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'cannot undo this %: its recorded values no longer fit table %', ev.action, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = SQLERRM;
    END;
    RETURN format('undid DELETE event %s: re-inserted the row %s into %s', ev.id, ident, tbl);
END
$$;


-- audit.enable(..., baseline => true): the current rows as BASELINE events.
CREATE FUNCTION audit.record_baseline(tbl regclass)
RETURNS bigint
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'audit_record_baseline';
COMMENT ON FUNCTION audit.record_baseline(regclass) IS
    'Internal to audit.enable(baseline => true): one data/BASELINE event per current row of the table, new_data the row; returns how many';
REVOKE ALL ON FUNCTION audit.record_baseline(regclass) FROM PUBLIC;

DROP FUNCTION audit.enable(regclass, text[], text[], boolean);
CREATE FUNCTION audit.enable(tbl regclass,
                             exclude_columns text[] DEFAULT NULL,
                             mask_columns text[] DEFAULT NULL,
                             log_reads boolean DEFAULT NULL,
                             baseline boolean DEFAULT false)
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
                                           THEN '{"log_reads": true}'::jsonb ELSE '{}'::jsonb END
                                   || CASE WHEN baseline THEN '{"baseline": true}'::jsonb ELSE '{}'::jsonb END);
    -- the rows the table holds now, one BASELINE event each (after the
    -- triggers: their lock keeps writers out until this transaction ends)
    IF baseline THEN
        PERFORM audit.record_baseline(tbl);
    END IF;
END
$$;

COMMENT ON FUNCTION audit.enable(regclass, text[], text[], boolean, boolean) IS
    'Start auditing a table (or update its options): every INSERT, UPDATE, DELETE and TRUNCATE is recorded in audit.event; log_reads => true records reads too (read events with the rows returned); an option not given (NULL) keeps its current value, ''{}'' clears a column list; baseline => true records every current row as a BASELINE event so that each row has a history from the start';
REVOKE ALL ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass,text[],text[],boolean,boolean) TO audit_admin;

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
    -- Audit triggers gone.  audit.disable, DROP TRIGGER, DROP TABLE and
    -- DETACH PARTITION record themselves; a trigger deleted from pg_trigger
    -- by hand, on a table that still exists, with no such event since the
    -- last check, is capture switched off without a statement.
    FOR w IN SELECT * FROM audit.capture_watch c
              WHERE c.catalog = 'pg_trigger'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.oid OPERATOR(pg_catalog.=) c.object_oid)
              ORDER BY c.object_name
    LOOP
        root := regexp_replace(w.object_name, '\.(audit_ext_row|audit_ext_truncate)$', '');
        CONTINUE WHEN root = w.object_name OR pg_catalog.to_regclass(root) IS NULL;
        by_stmt := EXISTS (
            SELECT 1 FROM audit.event e
             WHERE e.class = 'ddl' AND e.event_time >= w.seen_at
               AND (e.action = 'DISABLE AUDIT' OR e.detail ? 'audit_trigger_disabled'
                    OR e.detail ? 'partition_detached' OR e.detail ? 'audited_tables_dropped')
               AND ((e.schema_name, e.table_name) = (SELECT n.nspname::text, c.relname::text
                                                        FROM pg_catalog.pg_class c
                                                        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                                                       WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(root))
                    OR e.detail ->> 'audited_table' = root OR e.detail ->> 'partition' = root));
        object := w.object_name;
        kind := CASE WHEN w.object_name LIKE '%.audit_ext_row' THEN 'row trigger' ELSE 'truncate trigger' END;
        state := 'missing';
        IF by_stmt THEN
            recorded := false;
            note := 'gone, recorded by its statement';
        ELSE
            PERFORM audit.log_config_event('CAPTURE OFF', pg_catalog.to_regclass(root),
                jsonb_build_object('audit_triggers',
                                   jsonb_build_object(substring(w.object_name from '(audit_ext_row|audit_ext_truncate)$'), 'missing'),
                                   'audited_table', root,
                                   'audit_trigger_disabled', true, 'capture_off', true, 'found_by', finder,
                                   'via', 'audit trigger removed from the catalog without a recorded statement',
                                   'risk', 'critical'));
            recorded := true;
            note := 'missing, recorded now';
        END IF;
        RETURN NEXT;
    END LOOP;
    -- and then forgotten
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

-- ===========================================================================
-- A partition detached from an audited table keeps no truncate trigger
-- (issue 19, 9): the event trigger drops it at the end of the ALTER TABLE.
-- ===========================================================================
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
    -- A partition detached from an audited table is no longer audited: its
    -- row trigger (a clone) went with the DETACH, which was recorded; its own
    -- truncate trigger goes now (it kept recording TRUNCATEs of a table whose
    -- changes were no longer captured).
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c WHERE c.command_tag = 'ALTER TABLE') THEN
        FOR rel IN
            SELECT t.tgrelid
              FROM pg_trigger t JOIN pg_class k ON k.oid = t.tgrelid
             WHERE t.tgname = 'audit_ext_truncate' AND t.tgparentid = 0 AND NOT k.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_trigger r
                                WHERE r.tgrelid = t.tgrelid AND r.tgfoid = 'audit.capture_row()'::regprocedure)
        LOOP
            EXECUTE format('DROP TRIGGER audit_ext_truncate ON %s', rel::regclass);
        END LOOP;
    END IF;

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

-- ===========================================================================
-- audit.record_history(schema_name, table_name, record_id) goes by name: when
-- a table of that name was dropped and created again, both tables' events
-- count (the regclass form is the live table's own history).
-- ===========================================================================
CREATE OR REPLACE FUNCTION audit.record_history(schema_name text, table_name text, record_id jsonb)
RETURNS SETOF audit.event_with_statement
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live regclass;
    rec  jsonb := record_history.record_id;
BEGIN
    PERFORM audit.require_audit_role();
    IF record_history.schema_name IS NULL OR record_history.table_name IS NULL THEN
        RAISE EXCEPTION 'invalid table: schema_name and table_name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rec IS NULL OR jsonb_typeof(rec) <> 'object' OR rec = '{}' THEN
        RAISE EXCEPTION 'invalid record_id %: must be a non-empty JSON object', coalesce(rec::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the key columns and values, e.g. {"id": 42}.';
    END IF;
    -- A table of that name that exists now: normalise the record id like
    -- the regclass form does (if it fits), and let TRUNCATEs of its
    -- partitions count.
    SELECT c.oid INTO live
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = record_history.schema_name AND c.relname = record_history.table_name
       AND c.relkind IN ('r', 'p');
    IF live IS NOT NULL THEN
        BEGIN
            SELECT r.record INTO rec FROM audit.resolve_record(live, rec) r;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;   -- e.g. the key changed since: match the record id as given
        END;
        -- by name: a table of that name was dropped before this one was
        -- created; its events count here too (the regclass form is this
        -- table's own history)
        IF audit.table_dropped_at(record_history.schema_name, record_history.table_name) IS NOT NULL THEN
            live := NULL;
        END IF;
    END IF;
    RETURN QUERY
        SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
               e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
               e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
               s.statement_text
          FROM audit.record_events(record_history.schema_name, record_history.table_name, rec, live) e
          LEFT JOIN audit.statement s ON s.statement_id = e.statement_id
         ORDER BY e.id;
END
$$;
