-- Time one bulk statement and measure what it wrote.
-- Usage: psql -v stmt='UPDATE ...' -f bench/measure.sql
-- Prints one line: seconds|rows|wal_bytes|trail_bytes|trail_rows
\set ON_ERROR_STOP 1
SELECT lsn AS lsn0, trail_bytes AS tb0, trail_rows AS tr0 FROM bench.probe() \gset
SELECT clock_timestamp() AS t0 \gset
:stmt ;
\set nrows :ROW_COUNT
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
SELECT :'secs', :nrows, pg_wal_lsn_diff(p.lsn, :'lsn0'), p.trail_bytes - :tb0, p.trail_rows - :tr0
  FROM bench.probe() p;
