-- capture => 'wal' (issue 22): the SQL surface and its errors on a cluster
-- with wal_level = logical (scripts/test.sh, part "WAL mode"; not in the
-- default REGRESS list: enable_errors.sql covers wal_level = replica).
SET client_min_messages = warning;
CREATE TABLE wm (id int PRIMARY KEY, v text, secret text, hidden text);

-- the first WAL-mode table of a database makes its slot: not in a
-- transaction that already wrote (25001, with the way out)
BEGIN;
CREATE TABLE wm_late (id int PRIMARY KEY);
\set VERBOSITY terse
SELECT audit.enable('wm_late', capture => 'wal');
\set VERBOSITY default
ROLLBACK;

SELECT audit.enable('wm', exclude_columns => '{hidden}', mask_columns => '{secret}', capture => 'wal');
SELECT table_oid, capture, exclude_columns, mask_columns FROM audit.audited_tables WHERE table_oid = 'wm'::regclass;
SELECT relreplident FROM pg_class WHERE oid = 'wm'::regclass;
SELECT slot_name = 'audit_ext_wal_' || (SELECT oid FROM pg_database WHERE datname = current_database()) AS our_slot,
       bytes_behind >= 0 AS bytes_behind_known
  FROM audit.capture_lag;
SELECT slot_type, plugin, database = current_database() AS this_database FROM pg_replication_slots
 WHERE slot_name LIKE 'audit_ext_wal_%';

-- events appear after the lag: wait_for_capture() waits for the worker
INSERT INTO wm VALUES (1, 'a', 's1', 'h1'), (2, 'b', 's2', 'h2');
UPDATE wm SET v = 'a2', secret = 's1b', hidden = 'h1b' WHERE id = 1;
UPDATE wm SET hidden = 'only hidden' WHERE id = 2;
DELETE FROM wm WHERE id = 2;
TRUNCATE wm;
SELECT audit.wait_for_capture();
SELECT action, record_id, old_data, new_data, changed_columns
  FROM audit.event WHERE class = 'data' AND table_name = 'wm' ORDER BY id;

-- wait_for_capture(): its argument
SELECT audit.wait_for_capture('0 s') IS NOT NULL AS answers;
SELECT audit.wait_for_capture(NULL);
SELECT audit.wait_for_capture('-1 s');

-- what WAL mode refuses
SELECT audit.enable('wm', digest_columns => '{v}', capture => 'wal');
SELECT audit.enable('wm', capture => 'logical');

-- switching back to triggers restores the replica identity; the mode is kept
-- by a call that does not name it
SELECT audit.enable('wm', capture => 'trigger');
SELECT relreplident FROM pg_class WHERE oid = 'wm'::regclass;
SELECT audit.enable('wm', capture => 'wal');
SELECT audit.enable('wm', log_reads => false);
SELECT capture FROM audit.audited_tables WHERE table_oid = 'wm'::regclass;
ALTER TABLE wm REPLICA IDENTITY DEFAULT;  -- refused (55000): the WAL would lack the old rows
-- a superuser who edits the catalog instead: the decoder reads the replica
-- identity as of each change, and records the old row as not in the WAL
UPDATE pg_class SET relreplident = 'd' WHERE oid = 'wm'::regclass;
INSERT INTO wm VALUES (5, 'e', NULL, NULL);
UPDATE wm SET v = 'e2' WHERE id = 5;
SELECT audit.wait_for_capture();
SELECT action, old_data, new_data, detail ->> 'old_row' AS old_row
  FROM audit.event WHERE class = 'data' AND table_name = 'wm' AND record_id = '{"id": 5}' ORDER BY id;
SELECT audit.disable('wm');
SELECT relreplident FROM pg_class WHERE oid = 'wm'::regclass;

-- the internals and the lag are not for everyone
CREATE ROLE wm_plain LOGIN;
SET ROLE wm_plain;
SELECT audit.wal_prepare();
SELECT audit.wait_for_capture();
SELECT count(*) FROM audit.capture_lag;
SET audit_ext.wal_capture_pause = on;
RESET ROLE;
GRANT audit_reader TO wm_plain;
SET ROLE wm_plain;
SELECT audit.wait_for_capture();
SELECT count(*) FROM audit.capture_lag;
RESET ROLE;
DROP ROLE wm_plain;

-- nobody but the capture worker reads the slot (it holds it: "active")
DO $$
BEGIN
    PERFORM count(*) FROM pg_logical_slot_peek_changes(
        (SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'audit_ext_wal_%'), NULL, NULL);
    RAISE WARNING 'the slot was read';
EXCEPTION WHEN object_in_use THEN
    RAISE WARNING 'refused: % (the slot is active)', SQLSTATE;
END
$$;

-- verify(): the capture gap columns (none here; test/e2e/walgap.sh makes one)
SELECT verified, capture_gaps, capture_gap_ranges FROM audit.verify();
DROP TABLE wm;
