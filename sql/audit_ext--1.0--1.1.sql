/* audit_ext 1.0 -> 1.1: tamper-evident chain, retention and archive, alert
 * rules and read auditing.  CREATE EXTENSION audit_ext installs 1.0 and runs
 * this script, so a fresh install and an upgraded one are the same objects. */
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '1.1'" to load this file. \quit

-- ====================================================================
-- Integrity: hash chain, verification (src/chain.c)
-- ====================================================================

-- ---- end of integrity ----


-- ====================================================================
-- Retention, archive, append-only protection, maintenance
-- ====================================================================

-- ---- end of retention ----


-- ====================================================================
-- Alert rules and read auditing
-- ====================================================================

-- ---- end of alerts ----
