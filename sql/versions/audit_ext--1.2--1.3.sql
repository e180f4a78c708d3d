-- audit_ext 1.2 -> 1.3: partition maintenance without waiting for writers.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.3'" to load this file. \quit

-- ===========================================================================
-- Creating the coming months' partitions
-- ===========================================================================
-- Up to 1.2 a month's partition was created under LOCK TABLE of the class's
-- partitioned table, which also takes ACCESS EXCLUSIVE on every partition
-- below it: the maintenance worker (and audit.enable()) waited for every
-- open audited transaction and every running report on the trail, up to its
-- lock_timeout of 5 s, and everything that came meanwhile queued behind it.
-- Since 1.3 the writer also opens the leaf of its events' class and month
-- directly, without locking audit.event or the class's table
-- (src/event_writer.c).  A month that has not begun is now attached with the
-- locks ATTACH PARTITION itself needs.  Figures in docs/performance.md.
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
