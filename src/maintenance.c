/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *		The maintenance worker: partitions created ahead and retention
 *		applied in every database that has audit_ext, on a schedule.
 *
 * Each database with the extension has its own store, so one worker
 * connected to one database cannot maintain them all.  As pg_cron and the
 * autovacuum launcher do, a launcher ("audit_ext maintenance launcher",
 * registered while shared_preload_libraries is processed, connected to no
 * database) reads pg_database every audit_ext.maintenance_interval and, one
 * database after the other, starts a short-lived dynamic background worker
 * connected to it (BackgroundWorkerInitializeConnectionByOid).  That worker
 * returns at once where audit_ext 1.1 is not installed or pg_restore is
 * connected (its partitions would collide with ours); elsewhere it runs,
 * each in its own transaction,
 *		SELECT audit.create_partitions(audit_ext.partitions_ahead);
 *		SELECT ... FROM audit.prune();
 *		SELECT ... FROM audit.check_capture();		(1.5)
 *		SELECT audit.chain_checkpoint();
 *		SELECT audit.record_verification();			(1.6, the recorded chain walks)
 *		SELECT audit.run_due_reports();				(1.6, the scheduled reports)
 *		SELECT gin_clean_pending_list(...) of the event partitions' GIN indexes;
 * as the extension's owner (the bootstrap superuser only reads pg_extension
 * to find it), with search_path pinned to pg_catalog, pg_temp for the whole
 * process (elevated.c), and exits.  One at a time: maintenance must
 * not compete with the workload for more than one core.  Template databases
 * and databases that refuse connections are skipped (a connection to a
 * template would make CREATE DATABASE fail).
 *
 * A failure in one database is logged and does not stop the others; a crash
 * (or the test-only audit_ext.archive_fault_after_rows) restarts the server
 * processes as any backend crash does, and the launcher starts again after
 * 10 s: nothing is dropped that was not archived (archive.c, audit.prune).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "audit_ext.h"

static bool am_maintenance_worker = false;
static char db_name[NAMEDATALEN];	/* of the per-database worker */

bool
audit_is_maintenance_worker(void)
{
	return am_maintenance_worker;
}

void
audit_maintenance_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "audit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "audit_maintenance_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "audit_ext maintenance launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "audit_ext maintenance launcher");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* Oids of the databases that may be maintained, in cxt. */
static List *
database_list(MemoryContext cxt)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(cxt);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

/* Start the worker of one database and wait until it is done. */
static void
maintain_database(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "audit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "audit_maintenance_db_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "audit_ext maintenance of database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "audit_ext maintenance");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errmsg("audit_ext maintenance: no background worker slot free for database %u", dboid),
				 errhint("Raise max_worker_processes; the database is maintained on a later round.")));
		return;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		return;
	(void) WaitForBackgroundWorkerShutdown(handle);
}

void
audit_maintenance_launcher_main(Datum main_arg)
{
	MemoryContext cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("audit_ext maintenance launcher");

	cxt = AllocSetContextCreate(TopMemoryContext, "audit_ext maintenance launcher",
								ALLOCSET_DEFAULT_SIZES);
	ereport(LOG,
			(errmsg("audit_ext maintenance launcher started (interval %d s)",
					audit_maintenance_interval)));

	/*
	 * The first round comes one interval after start, not at once: a server
	 * that just started (or restarted after a crash) has its clients
	 * connecting and creating extensions, and audit.enable() creates the
	 * partitions it needs itself.
	 */
	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;
		TimestampTz started;
		TimestampTz next;

		/*
		 * A reload that came during the last round counts before the next
		 * one is timed: a longer interval set meanwhile was otherwise
		 * noticed only after one more round at the old one.
		 */
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		started = GetCurrentTimestamp();
		next = TimestampTzPlusMilliseconds(started, (int64) audit_maintenance_interval * 1000);

		/* the latch is also set by our workers' exits and by SIGHUP */
		for (;;)
		{
			long		nap = (long) ((next - GetCurrentTimestamp()) / 1000);

			if (nap <= 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 nap, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				/* the new interval counts from the last round's start */
				next = TimestampTzPlusMilliseconds(started,
												   (int64) audit_maintenance_interval * 1000);
			}
		}

		MemoryContextReset(cxt);
		dbs = database_list(cxt);
		foreach(lc, dbs)
		{
			CHECK_FOR_INTERRUPTS();
			maintain_database(lfirst_oid(lc));
		}
		pgstat_report_stat(false);
	}
}

/*
 * Run one SQL statement in its own transaction; on error report it and go
 * on.  Returns the first column of the first row as int64 (0 if none).
 */
static int64
run_step(const char *what, const char *sql)
{
	volatile int64 result = 0;
	MemoryContext cxt = CurrentMemoryContext;

	/* settings reloaded since this worker started apply to the next step */
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, sql);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(sql, false, 0) < 0)
			elog(ERROR, "could not run %s", sql);
		if (SPI_processed > 0)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				result = DatumGetInt64(d);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("audit_ext maintenance: %s failed in database \"%s\"", what, db_name)));
		result = -1;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

void
audit_maintenance_db_main(Datum main_arg)
{
	bool		installed;
	int64		pruned;
	char	   *sql;
	Oid			ext_owner = InvalidOid;

	am_maintenance_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	pgstat_report_appname("audit_ext maintenance");
	/* names resolve in pg_catalog only, whatever the database's settings */
	audit_pin_search_path_for_process();

	/* only where audit_ext 1.1 (audit.prune) is installed */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	strlcpy(db_name, get_database_name(MyDatabaseId), sizeof(db_name));
	installed = OidIsValid(get_extension_oid("audit_ext", true));
	if (installed)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * Not while pg_restore fills the database: partitions we created
		 * would collide with the ones it restores.  Only a session that
		 * could restore the database counts (a superuser's or the database
		 * owner's): any client may call itself pg_restore, and must not be
		 * able to stop partition creation and retention that way.
		 */
		installed = SPI_execute("SELECT pg_catalog.to_regprocedure('audit.prune()') IS NOT NULL"
								" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a"
								"   JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) a.datid"
								"  WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()"
								"    AND a.application_name OPERATOR(pg_catalog.=) 'pg_restore'"
								"    AND (a.usesysid OPERATOR(pg_catalog.=) d.datdba"
								"         OR EXISTS (SELECT 1 FROM pg_catalog.pg_authid r"
								"                     WHERE r.oid OPERATOR(pg_catalog.=) a.usesysid AND r.rolsuper)))",
								true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1 &&
			strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
		SPI_finish();
	}
	if (installed)
	{
		/*
		 * Every step runs as the extension's owner, the role that owns every
		 * object maintenance touches (docs/architecture.md, "Threat model"),
		 * not as the bootstrap superuser the worker connected as.
		 */
		Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
					CStringGetDatum("audit_ext"));
		scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
			ext_owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!installed)
		proc_exit(0);
	if (OidIsValid(ext_owner))
		SetUserIdAndSecContext(ext_owner, SECURITY_LOCAL_USERID_CHANGE);

	/*
	 * Never make a client wait or fail for maintenance: our deadlock check
	 * runs long before a client's (deadlock_timeout defaults to 1 s), so in
	 * a deadlock it is the worker that gives up; and it waits for a lock at
	 * most lock_timeout.  Whatever was not done is done on the next round.
	 */
	SetConfigOption("deadlock_timeout", "100", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "5000", PGC_SUSET, PGC_S_OVERRIDE);

	sql = psprintf("SELECT audit.create_partitions(%d)::bigint", audit_partitions_ahead);
	(void) run_step("creating partitions ahead", sql);
	pruned = run_step("pruning",
					  "SELECT count(*) FROM audit.prune() WHERE action NOT LIKE 'held%'");
	if (pruned > 0)
		ereport(LOG,
				(errmsg("audit_ext maintenance: pruned %lld partitions in database \"%s\"",
						(long long) pruned, db_name)));
	/*
	 * Capture switched off where no statement recorded it (an UPDATE of
	 * pg_trigger, ALTER EVENT TRIGGER ... DISABLE): audit.check_capture()
	 * (1.5) records it once per change.
	 */
	if (run_step("looking for audit.check_capture()",
				 "SELECT (pg_catalog.to_regprocedure('audit.check_capture()') IS NOT NULL)::pg_catalog.int4::pg_catalog.int8") == 1)
		(void) run_step("checking capture",
						"SELECT pg_catalog.count(*) FROM audit.check_capture() c WHERE c.recorded");
	/* the heads of this database's hash chains (chain.c) */
	(void) run_step("recording chain checkpoints", "SELECT audit.chain_checkpoint()::bigint");

	/*
	 * A walk of the chains of what arrived since the last one, below the
	 * horizon of the round just taken (1.6, audit.record_verification()):
	 * rendered reports and the dashboard reuse it instead of re-walking
	 * their period.
	 */
	if (run_step("looking for audit.record_verification()",
				 "SELECT (pg_catalog.to_regprocedure('audit.record_verification()') IS NOT NULL)::pg_catalog.int4::pg_catalog.int8") == 1)
		(void) run_step("recording a verification of the chains",
						"SELECT audit.record_verification()");

	/*
	 * Scheduled reports (1.6): each due schedule writes one report into
	 * audit_ext.report_directory, in a subtransaction of its own; a failing
	 * one is recorded in audit.report_schedules (audit.worker_status shows
	 * it) and tried again only after a backoff, never in a loop here.
	 */
	if (run_step("looking for audit.run_due_reports()",
				 "SELECT (pg_catalog.to_regprocedure('audit.run_due_reports()') IS NOT NULL)::pg_catalog.int4::pg_catalog.int8") == 1)
	{
		int64		written = run_step("running scheduled reports",
									   "SELECT audit.run_due_reports()::pg_catalog.int8");

		if (written > 0)
			ereport(LOG,
					(errmsg("audit_ext maintenance: wrote %lld scheduled reports in database \"%s\"",
							(long long) written, db_name)));
	}

	/*
	 * Autovacuum merges the record indexes' GIN pending lists (see
	 * audit.tune_event_partition()); this is the backstop for a database
	 * where it is off or behind, so that no user statement finds a full
	 * 64 MB list to merge.  An empty list costs one metapage read.
	 */
	(void) run_step("merging GIN pending lists",
					"SELECT coalesce(sum(pg_catalog.gin_clean_pending_list(i.indexrelid::pg_catalog.regclass)), 0)::bigint"
					"  FROM pg_catalog.pg_index i"
					"  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
					"  JOIN pg_catalog.pg_am a ON a.oid = c.relam"
					" WHERE a.amname = 'gin'"
					"   AND i.indrelid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT t.relid::pg_catalog.oid"
					"         FROM pg_catalog.pg_partition_tree('audit.event'::pg_catalog.regclass) t WHERE t.isleaf))");
	proc_exit(0);
}
