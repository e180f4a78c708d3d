-- The store: audit.event (partitioned by class, then by month), its id
-- sequence, audit.statement (statement texts, stored once), the partitions
-- made at install (one per class, each with its default partition) and the
-- functions that make the monthly ones (audit.create_partitions,
-- audit.create_month_partition) and their indexes and storage settings.

CREATE SEQUENCE audit.event_id_seq AS bigint;
COMMENT ON SEQUENCE audit.event_id_seq IS 'Event ids: increasing in the order events were captured';

SELECT pg_catalog.pg_extension_config_dump('audit.event_id_seq', '');

-- One row per audit event.  Partitioned by class (each class can be kept for
-- its own time), then by month of event_time.  Names use the "C" collation:
-- byte-wise comparison is the cheapest to index and the same in every
-- database.  Rows are written by the C
-- event writer (src/event_writer.c) directly, never through SQL by users.
CREATE TABLE audit.event (
    id               bigint      NOT NULL DEFAULT pg_catalog.nextval('audit.event_id_seq'),
    event_time       timestamptz NOT NULL,
    class            text COLLATE "C"        NOT NULL,
    action           text COLLATE "C"        NOT NULL,
    status           text COLLATE "C"        NOT NULL DEFAULT 'success',
    db_user          text COLLATE "C",
    "session_user"   text COLLATE "C",
    actor            text COLLATE "C",
    client_addr      inet,
    application_name text COLLATE "C",
    backend_pid      integer,
    txid             bigint,
    statement_id     bigint,
    statement_seq    integer,
    schema_name      text COLLATE "C",
    table_name       text COLLATE "C",
    record_id        jsonb,
    old_data         jsonb,
    new_data         jsonb,
    changed_columns  text[],
    detail           jsonb,
    -- Every event carries its place in a chain and a SHA-256 hash over its
    -- columns and the previous hash of that chain (src/chain.c).  A chain
    -- ("lane") is written by one process and holds one class, so concurrent
    -- writers never wait for each other and each class can be pruned alone.
    chain_lane       bigint,
    chain_seq        bigint,
    hash             bytea,
    -- Where an event came from.  NULL for events written here; on a central
    -- cluster that subscribes to other servers' trails, the name of the
    -- subscription that brought the event (sql/src/shipping.sql).
    source           text COLLATE "C",
    -- 1.6: the audited table's stable identity (audit.audited_table_history),
    -- the application's context and the event's risk level.  Covered by the
    -- hash chain when set (src/chain.c, "AUD2").
    table_identity   bigint,
    context          jsonb,
    risk             text COLLATE "C",
    -- 1.6: storage, not a fact (not hashed): true when the event continues
    -- the context run of an earlier event of the same writer, so that it
    -- enters no context index (src/event_writer.c, "Context runs")
    context_continues boolean,
    CONSTRAINT event_class_check
        CHECK (class IN ('data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app')),
    CONSTRAINT event_status_check CHECK (status IN ('success', 'failure')),
    CONSTRAINT event_risk_check CHECK (risk IN ('low', 'medium', 'high', 'critical'))
) PARTITION BY LIST (class);
COMMENT ON TABLE audit.event IS 'The audit trail: one row per event, partitioned by class and month';
COMMENT ON COLUMN audit.event.id IS 'Event id, increasing in capture order';
COMMENT ON COLUMN audit.event.event_time IS 'Start time of the statement that caused the event (statement_timestamp())';
COMMENT ON COLUMN audit.event.class IS 'data, auth, privilege, ddl, read, system or app (application events, audit.log_event)';
COMMENT ON COLUMN audit.event.action IS 'INSERT, UPDATE, DELETE, TRUNCATE for data events';
COMMENT ON COLUMN audit.event.status IS 'success or failure';
COMMENT ON COLUMN audit.event.db_user IS 'current_user when the event happened';
COMMENT ON COLUMN audit.event."session_user" IS 'session_user when the event happened';
COMMENT ON COLUMN audit.event.actor IS 'Application-level user: audit_ext.actor when set, else db_user';
COMMENT ON COLUMN audit.event.client_addr IS 'Client address of the session (NULL for a Unix socket)';
COMMENT ON COLUMN audit.event.application_name IS 'application_name of the session';
COMMENT ON COLUMN audit.event.backend_pid IS 'Process id of the backend';
COMMENT ON COLUMN audit.event.txid IS 'Top-level transaction id (as txid_current())';
COMMENT ON COLUMN audit.event.statement_id IS 'Key of the statement text in audit.statement (text stored once)';
COMMENT ON COLUMN audit.event.statement_seq IS 'Number of the statement within its transaction: (txid, statement_seq) identifies one execution';
COMMENT ON COLUMN audit.event.schema_name IS 'Schema of the audited table (the partitioned root for partitions); NULL for application events';
COMMENT ON COLUMN audit.event.table_name IS 'Name of the audited table (the partitioned root for partitions); application events: the entity';
COMMENT ON COLUMN audit.event.record_id IS 'Primary-key values of the row, or the whole row when the table has no primary key';
COMMENT ON COLUMN audit.event.old_data IS 'DELETE: the old row; UPDATE: old values of the changed columns';
COMMENT ON COLUMN audit.event.new_data IS 'INSERT: the new row; UPDATE: new values of the changed columns';
COMMENT ON COLUMN audit.event.changed_columns IS 'UPDATE: the columns whose value changed';
COMMENT ON COLUMN audit.event.detail IS
    'Further facts of the event, by class (read events: {"rows": rows returned by the statement}; an UPDATE that changed the key: {"new_record_id": the new key})';
COMMENT ON COLUMN audit.event.chain_lane IS 'Hash chain the event belongs to (one writing process, one class)';
COMMENT ON COLUMN audit.event.chain_seq IS 'Position of the event in its chain, from 1';
COMMENT ON COLUMN audit.event.hash IS 'SHA-256 over the event''s columns and the hash of the previous event of its chain';
COMMENT ON COLUMN audit.event.source IS 'NULL: written here; on a central cluster: the subscription that brought the event';
COMMENT ON COLUMN audit.event.table_identity IS
    'The stable identity of the audited table an event is about (data, read and refused events, ENABLE/DISABLE AUDIT; audit.audited_table_history): the same across renames, new for a re-created table; NULL for events captured before 1.6';
COMMENT ON COLUMN audit.event.context IS 'The application''s context when the event was captured (NULL: none set)';
COMMENT ON COLUMN audit.event.risk IS 'Risk level of the event: low, medium, high or critical (NULL: not rated)';
COMMENT ON COLUMN audit.event.context_continues IS
    'Storage, not hashed: true when the event continues the context run of an earlier event of its writer (the same session_id, tenant, client_ip and indexed context keys, within 64 ids and an hour, same class and month) and so is found through that event by the context indexes; false for the first event of such a run; NULL otherwise';

-- Indexes live on each leaf partition, not on the partitioned parents: a
-- parent index owned by the extension would make pg_restore collide with the
-- partition indexes it dumps.  audit.create_event_indexes() is the one place
-- that says which indexes a partition has.
-- The record index is a GIN whose pending list turns random-key inserts into
-- appends.  With a 2 MB pending list the statement that filled it merged it
-- into the index tree itself: 9 of the 21 s of an audited 1M-row INSERT, and
-- an occasional OLTP transaction paying for thousands of events before it.
-- The list may now grow to 64 MB (about 2M events) and autovacuum cleans it:
-- every event partition is vacuumed after 20,000 inserts rather than after
-- 20% of its rows, which also keeps its BRIN summarised and its pages
-- all-visible.  Figures in docs/performance.md.
CREATE FUNCTION audit.tune_event_partition(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
    -- Insert-only: vacuum after a fixed number of inserts, whatever the
    -- partition's size, so that the GIN pending list is merged by autovacuum
    -- and not by the statement that happens to overflow it.
    EXECUTE format('ALTER TABLE %s SET (autovacuum_vacuum_insert_threshold = 20000, '
                   'autovacuum_vacuum_insert_scale_factor = 0)', part);
    IF to_regclass(format('audit.%I', name || '_record_idx')) IS NOT NULL THEN
        EXECUTE format('ALTER INDEX audit.%I SET (gin_pending_list_limit = 65536)', name || '_record_idx');
    END IF;
END
$$;
COMMENT ON FUNCTION audit.tune_event_partition(regclass) IS
    'Internal: storage settings of an event partition (autovacuum after 20,000 inserts, 64 MB GIN pending list)';

CREATE FUNCTION audit.create_event_indexes(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
    key text;
BEGIN
    -- keyset pagination and lookups by id
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (id)', name || '_id_idx', part);
    -- record history: record_id @> '{"id": 42}'.  GIN with its pending list
    -- turns random-key inserts into appends (a btree on the key wrote a
    -- full-page image for most OLTP inserts after each checkpoint); the list
    -- is merged by (auto)vacuum; its size is set by audit.tune_event_partition().
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (record_id jsonb_path_ops) '
                   'WITH (fastupdate = on)', name || '_record_idx', part);
    -- what one actor did, newest first
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (actor, id)', name || '_actor_idx', part);
    -- time ranges inside a partition: tiny, and nearly free to maintain
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING brin (event_time)', name || '_time_brin', part);
    -- 1.6: the rare events a record's history looks for beyond its own
    -- record_id, each in a partial index that other events never enter: the
    -- UPDATE that gave a record its key (detail.new_record_id, written by
    -- capture) and TRUNCATEs
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((detail -> ''new_record_id'')) '
                   'WHERE detail ? ''new_record_id''', name || '_key_change_idx', part);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (id) WHERE action = ''TRUNCATE''',
                   name || '_truncate_idx', part);
    -- 1.6: searches by the application's context (one session, one tenant
    -- ..., newest first): a btree per indexed key (audit_ext.
    -- context_index_keys, default session_id and tenant), ordered by
    -- (value, id) and partial on the key's presence, so an event without it
    -- enters none.  They replaced a GIN on the whole context (+560 B of WAL
    -- per event and 14% of OLTP TPS, yet a tenant's newest page sorted all
    -- of its events: 309 ms on 10M).  An entry for every event still cost
    -- about 10% of OLTP, so only the first event of a context run enters
    -- them (context_continues is not true; src/event_writer.c): the rest of
    -- the run follows it within 64 ids, and audit.search() reads that range
    -- (docs/performance.md, "1.6: context and risk").  Only documented keys
    -- are taken, whatever the setting says (it is checked by the library
    -- when loaded; a placeholder is not).
    FOR key IN SELECT DISTINCT btrim(k)
                 FROM unnest(string_to_array(coalesce(current_setting('audit_ext.context_index_keys', true),
                                                      'session_id, tenant'), ',')) k
                WHERE btrim(k) IN ('client_ip', 'session_id', 'user_agent', 'user_role', 'tenant', 'request_id') LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((context ->> %L), id) '
                       'WHERE context ? %L AND context_continues IS NOT TRUE',
                       name || '_ctx_' || key || '_idx', part, key, key);
    END LOOP;
    PERFORM audit.tune_event_partition(part);
END
$$;
COMMENT ON FUNCTION audit.create_event_indexes(regclass) IS
    'Internal: create the indexes every audit event partition has';

-- Statement texts, stored once however many rows or transactions they touch.
CREATE TABLE audit.statement (
    statement_id   bigint      PRIMARY KEY,
    statement_text text        NOT NULL,
    first_seen     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit.statement IS 'SQL text of audited statements, stored once per distinct text';

SELECT pg_catalog.pg_extension_config_dump('audit.statement', '');

CREATE FUNCTION audit.event_classes()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['data', 'auth', 'privilege', 'ddl', 'read', 'system', 'app']::text[] $$;
COMMENT ON FUNCTION audit.event_classes() IS 'The event classes, each stored in its own partition tree';

-- Create the monthly partitions from the current month to "months_ahead"
-- months ahead for every class, moving any rows that had landed in a class's
-- default partition into the new partition.
-- One creator at a time: the maintenance worker, audit.enable() and a DBA
-- may run it concurrently, and two creators of one partition would collide
-- ("already exists").
CREATE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 2)
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
COMMENT ON FUNCTION audit.create_partitions(integer) IS
    'Create monthly audit partitions from this month to months_ahead ahead; returns how many were created';

DO $parts$
DECLARE
    cls text;
BEGIN
    FOREACH cls IN ARRAY audit.event_classes() LOOP
        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.event FOR VALUES IN (%L) PARTITION BY RANGE (event_time)',
                       'event_' || cls, cls);
        EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls,
                       format('Audit events of class %s, by month', cls));
        -- Safety net: a row whose month has no partition yet is never lost.
        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I DEFAULT',
                       'event_' || cls || '_default', 'event_' || cls);
        EXECUTE format('COMMENT ON TABLE audit.%I IS %L', 'event_' || cls || '_default',
                       format('Audit events of class %s whose month has no partition yet; audit.create_partitions() moves them', cls));
        PERFORM audit.create_event_indexes(format('audit.%I', 'event_' || cls || '_default')::regclass);
        -- A member (CREATE EXTENSION makes it again on restore) whose rows
        -- pg_dump keeps.
        PERFORM pg_catalog.pg_extension_config_dump(format('audit.%I', 'event_' || cls || '_default'), '');
        EXECUTE format('GRANT SELECT ON audit.%I, audit.%I TO audit_admin, audit_reader',
                       'event_' || cls, 'event_' || cls || '_default');
    END LOOP;
END
$parts$;

-- Events with their statement text joined in.  Its columns are those of
-- audit.event in 1.0: a view's "e.*" is expanded when the view is created, so
-- the columns added later (chain_lane, chain_seq, hash, source) are not in
-- the view of an installation upgraded from 1.0, nor, to be the same, here.
-- Those of 1.6 (table_identity, context, risk) come after statement_text.
CREATE VIEW audit.event_with_statement AS
SELECT e.id, e.event_time, e.class, e.action, e.status, e.db_user, e."session_user", e.actor,
       e.client_addr, e.application_name, e.backend_pid, e.txid, e.statement_id, e.statement_seq,
       e.schema_name, e.table_name, e.record_id, e.old_data, e.new_data, e.changed_columns, e.detail,
       s.statement_text, e.table_identity, e.context, e.risk
  FROM audit.event e
  LEFT JOIN audit.statement s ON s.statement_id = e.statement_id;
COMMENT ON VIEW audit.event_with_statement IS 'audit.event with the SQL text of each event''s statement';

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
-- Up to 1.2 a month's partition was created under LOCK TABLE of the class's
-- partitioned table, which also takes ACCESS EXCLUSIVE on every partition
-- below it: the maintenance worker (and audit.enable()) waited for every
-- open audited transaction and every running report on the trail, up to its
-- lock_timeout of 5 s, and everything that came meanwhile queued behind it.
-- Since 1.3 the writer also opens the leaf of its events' class and month
-- directly, without locking audit.event or the class's table
-- (src/event_writer.c).  A month that has not begun is now attached with the
-- locks ATTACH PARTITION itself needs.  Figures in docs/performance.md.
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

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT SELECT ON audit.event,
                audit.statement,
                audit.event_with_statement TO audit_admin, audit_reader;
REVOKE ALL ON FUNCTION audit.create_event_indexes(regclass),
                       audit.event_classes(),
                       audit.create_partitions(integer),
                       audit.partition_bounds(text),
                       audit.create_month_partition(text,timestamp with time zone),
                       audit.tune_event_partition(regclass),
                       audit.move_default_events(text,regclass,timestamp with time zone,timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.event_classes() TO audit_admin, audit_reader;
GRANT EXECUTE ON FUNCTION audit.create_partitions(integer) TO audit_admin;
