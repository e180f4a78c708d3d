-- Markdown tables from the raw per-run numbers (read from stdin as CSV).
-- Usage: psql -X -q -At -f bench/report.sql < bench/results/raw.csv
-- Medians are over the successful runs of each variant; "vs base" ratios
-- are ratios of those medians.
\set ON_ERROR_STOP 1
\pset footer off
CREATE TEMP TABLE raw (
    cycle       int,
    phase       text,
    variant     text,
    pos         int,
    status      text,
    secs        numeric,
    rows        bigint,
    tps         numeric,
    latency_ms  numeric,
    wal_bytes   numeric,
    trail_bytes numeric,
    trail_rows  numeric
);
\copy raw FROM pstdin WITH (FORMAT csv, HEADER true)

CREATE TEMP VIEW med AS
SELECT phase, variant,
       CASE variant WHEN 'base' THEN 1 WHEN 'audit_ext' THEN 2 WHEN 'table_log' THEN 3 WHEN 'audit_noidx' THEN 4 ELSE 5 END AS vord,
       count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)                         AS tps,
       min(tps) AS tps_min, max(tps) AS tps_max,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)                  AS lat,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY secs)                        AS secs,
       min(secs) AS secs_min, max(secs) AS secs_max,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY rows)                        AS rows,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes / nullif(rows, 0))   AS wal_per,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY trail_bytes / nullif(rows, 0)) AS trail_per,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY trail_rows / nullif(rows, 0))  AS trows_per
  FROM raw
 WHERE status = 'ok'
 GROUP BY phase, variant;

CREATE TEMP VIEW rel AS
SELECT m.*,
       m.tps / nullif(b.tps, 0)          AS tps_r,
       m.secs / nullif(b.secs, 0)        AS secs_r,
       m.wal_per / nullif(b.wal_per, 0)  AS wal_r
  FROM med m LEFT JOIN med b ON b.phase = m.phase AND b.variant = 'base';

CREATE FUNCTION pg_temp.r(x double precision, d int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(round(x::numeric, d)::text, 'n/a') $$;
CREATE FUNCTION pg_temp.i(x double precision) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(to_char(round(x::numeric), 'FM999,999,999,990'), 'n/a') $$;
-- ratio of one variant's median to another's, for one phase and column
CREATE FUNCTION pg_temp.ratio(ph text, a text, b text, col text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE x double precision; y double precision;
BEGIN
    EXECUTE format('SELECT (SELECT %1$I FROM med WHERE phase = $1 AND variant = $2),
                           (SELECT %1$I FROM med WHERE phase = $1 AND variant = $3)', col)
       INTO x, y USING ph, a, b;
    RETURN pg_temp.r(x / nullif(y, 0), 3);
END $$;

-- The ratio audit_ext / base within each cycle (both ran minutes apart in
-- it), and their median: the machine's speed drifts between cycles, and a
-- ratio of medians can mix a fast cycle's base with a slow one's variant.
CREATE FUNCTION pg_temp.per_cycle(ph text, col text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
    EXECUTE format($q$
        WITH c AS (
            SELECT a.cycle, a.%1$I / nullif(b.%1$I, 0) AS x
              FROM raw a JOIN raw b ON b.cycle = a.cycle AND b.phase = a.phase AND b.variant = 'base'
             WHERE a.phase = $1 AND a.variant = 'audit_ext' AND a.status = 'ok' AND b.status = 'ok')
        SELECT CASE WHEN count(x) = 0 THEN NULL
                    ELSE format('per cycle, audit_ext / base: %%s (median %%s)',
                                string_agg(format('%%s', pg_temp.r(x, 2)), ', ' ORDER BY cycle),
                                pg_temp.r(percentile_cont(0.5) WITHIN GROUP (ORDER BY x), 3)) END
          FROM c$q$, col)
       INTO res USING ph;
    RETURN coalesce(res, 'per cycle: n/a');
END $$;

-- FLOOR=1: the two diagnostic variants set against base and audit_ext (no
-- row when they did not run); col is tps (higher is better) or secs
CREATE FUNCTION pg_temp.floors(ph text, col text) RETURNS SETOF text
LANGUAGE sql AS $$
SELECT format('Floors (FLOOR=1): sql_floor / base = **%s**, audit_noidx / base = **%s**, audit_ext / sql_floor = **%s**, audit_ext / audit_noidx = **%s**.',
              pg_temp.ratio(ph, 'sql_floor', 'base', col), pg_temp.ratio(ph, 'audit_noidx', 'base', col),
              pg_temp.ratio(ph, 'audit_ext', 'sql_floor', col), pg_temp.ratio(ph, 'audit_ext', 'audit_noidx', col))
 WHERE EXISTS (SELECT FROM med WHERE phase = ph AND variant IN ('sql_floor', 'audit_noidx'))
$$;

-- CONTEXT=1: audit_ctx (a context on every session, risk rules) against
-- audit_ext, and against audit_ctx_none (its own database run with no
-- context), per cycle (they ran minutes apart in it) and their median
CREATE FUNCTION pg_temp.context_pair(ph text, col text, va text, vb text) RETURNS SETOF text
LANGUAGE sql AS $$
WITH c AS (
    SELECT a.cycle,
           CASE col WHEN 'tps' THEN a.tps / nullif(b.tps, 0) ELSE a.secs / nullif(b.secs, 0) END AS x
      FROM raw a JOIN raw b ON b.cycle = a.cycle AND b.phase = a.phase AND b.variant = vb
     WHERE a.phase = ph AND a.variant = va AND a.status = 'ok' AND b.status = 'ok')
SELECT format('%s / %s per cycle: %s (median **%s**)',
              va, vb, string_agg(pg_temp.r(x, 3)::text, ', ' ORDER BY cycle),
              pg_temp.r(percentile_cont(0.5) WITHIN GROUP (ORDER BY x), 3))
  FROM c HAVING count(x) > 0
$$;
CREATE FUNCTION pg_temp.context_cost(ph text, col text) RETURNS SETOF text
LANGUAGE sql AS $$
SELECT format('Context and risk rules (CONTEXT=1): %s; audit_ctx / base = **%s**.',
              string_agg(p, '; ' ORDER BY k), pg_temp.ratio(ph, 'audit_ctx', 'base', col))
  FROM (SELECT 1, pg_temp.context_pair(ph, col, 'audit_ctx', 'audit_ext')
        UNION ALL
        SELECT 2, pg_temp.context_pair(ph, col, 'audit_ctx', 'audit_ctx_none')
        UNION ALL
        SELECT 3, pg_temp.context_pair(ph, col, 'audit_ctx_none', 'audit_ext')) x(k, p)
HAVING count(p) > 0
$$;

-- a section only for the phases that ran (bench/run.sh PHASES)
SELECT bool_or(phase = 'oltp') AS ran_oltp, bool_or(phase = 'bulk_update') AS ran_bulk_update,
       bool_or(phase = 'bulk_insert') AS ran_bulk_insert FROM raw \gset
\if :ran_oltp
\echo '## 1. OLTP (pgbench TPC-B-like)'
\echo
\echo '| variant | runs | median TPS | min–max TPS | TPS vs base | median latency (ms) | WAL bytes/txn | audit bytes/txn | audit rows/txn |'
\echo '|---|--:|--:|--:|--:|--:|--:|--:|--:|'
SELECT format('| %s | %s | %s | %s–%s | %s | %s | %s | %s | %s |',
              variant, n, pg_temp.r(tps, 1), pg_temp.r(tps_min, 1), pg_temp.r(tps_max, 1), pg_temp.r(tps_r, 3), pg_temp.r(lat, 3),
              pg_temp.i(wal_per), pg_temp.i(trail_per), pg_temp.r(trows_per, 2))
  FROM rel WHERE phase = 'oltp' ORDER BY vord;
\echo
SELECT format('TPS ratios: audit_ext/base = **%s**, table_log/base = **%s**, audit_ext/table_log = **%s** (>1: audit_ext faster).',
              pg_temp.ratio('oltp', 'audit_ext', 'base', 'tps'), pg_temp.ratio('oltp', 'table_log', 'base', 'tps'),
              pg_temp.ratio('oltp', 'audit_ext', 'table_log', 'tps'));
\echo
SELECT format('TPS, %s.', pg_temp.per_cycle('oltp', 'tps'));
\echo
SELECT f || E'\n' FROM pg_temp.floors('oltp', 'tps') f;
SELECT f || E'\n' FROM pg_temp.context_cost('oltp', 'tps') f;
\endif

\if :ran_bulk_update
\echo '## 2. Bulk UPDATE of every pgbench_accounts row'
\echo
\echo '| variant | runs | rows | median time (s) | min–max (s) | time vs base | WAL bytes/row | WAL vs base | audit bytes/row | audit rows/row |'
\echo '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|'
SELECT format('| %s | %s | %s | %s | %s–%s | %s | %s | %s | %s | %s |',
              variant, n, pg_temp.i(rows), pg_temp.r(secs, 2), pg_temp.r(secs_min, 2), pg_temp.r(secs_max, 2), pg_temp.r(secs_r, 3),
              pg_temp.i(wal_per), pg_temp.r(wal_r, 3), pg_temp.i(trail_per), pg_temp.r(trows_per, 2))
  FROM rel WHERE phase = 'bulk_update' ORDER BY vord;
\echo
SELECT format('audit_ext/table_log: time **%s**, WAL/row **%s**, audit bytes/row **%s** (<1: audit_ext cheaper).',
              pg_temp.ratio('bulk_update', 'audit_ext', 'table_log', 'secs'),
              pg_temp.ratio('bulk_update', 'audit_ext', 'table_log', 'wal_per'),
              pg_temp.ratio('bulk_update', 'audit_ext', 'table_log', 'trail_per'));
\echo
SELECT format('Time, %s.', pg_temp.per_cycle('bulk_update', 'secs'));
\echo
SELECT f || E'\n' FROM pg_temp.floors('bulk_update', 'secs') f;
\endif

\if :ran_bulk_insert
\echo '## 3. Bulk INSERT ... SELECT into a fresh audited table'
\echo
\echo '| variant | runs | rows | median time (s) | min–max (s) | time vs base | WAL bytes/row | WAL vs base | audit bytes/row | audit rows/row |'
\echo '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|'
SELECT format('| %s | %s | %s | %s | %s–%s | %s | %s | %s | %s | %s |',
              variant, n, pg_temp.i(rows), pg_temp.r(secs, 2), pg_temp.r(secs_min, 2), pg_temp.r(secs_max, 2), pg_temp.r(secs_r, 3),
              pg_temp.i(wal_per), pg_temp.r(wal_r, 3), pg_temp.i(trail_per), pg_temp.r(trows_per, 2))
  FROM rel WHERE phase = 'bulk_insert' ORDER BY vord;
\echo
SELECT format('audit_ext/table_log: time **%s**, WAL/row **%s**, audit bytes/row **%s** (<1: audit_ext cheaper).',
              pg_temp.ratio('bulk_insert', 'audit_ext', 'table_log', 'secs'),
              pg_temp.ratio('bulk_insert', 'audit_ext', 'table_log', 'wal_per'),
              pg_temp.ratio('bulk_insert', 'audit_ext', 'table_log', 'trail_per'));
\echo
SELECT format('Time, %s.', pg_temp.per_cycle('bulk_insert', 'secs'));
\echo
SELECT f || E'\n' FROM pg_temp.floors('bulk_insert', 'secs') f;
\endif

SELECT CASE WHEN count(*) = 0 THEN 'All runs succeeded.'
            ELSE format('**%s run(s) failed** and are left out of the medians: %s. See bench/results/*.log.',
                        count(*), string_agg(format('cycle %s %s/%s', cycle, phase, variant), ', ' ORDER BY cycle, phase, variant))
       END
  FROM raw WHERE status <> 'ok';
