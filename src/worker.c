/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Background worker that drains the security-event queue (queue.c)
 *		into audit.event.
 *
 * Structure after contrib/worker_spi and pg_cron: one worker, registered
 * from _PG_init while shared_preload_libraries is processed, connected to
 * the database named by audit_ext.database.  It sleeps on its latch
 * (producers set it) with a 1 s timeout and writes the queue in batches,
 * one transaction per batch, through the same event writer as data capture
 * (audit_event_emit; the pre-commit callback flushes).  Entries leave the
 * queue only after their transaction committed: a failed batch is retried
 * on the next round and given up (counted as dropped) only after
 * AUDIT_WORKER_MAX_FAILURES attempts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "audit_ext.h"

#define AUDIT_WORKER_BATCH			500
#define AUDIT_WORKER_MAX_FAILURES	3
#define AUDIT_WORKER_NAP_MS			1000

char	   *audit_worker_database = NULL;

void
audit_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "audit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "audit_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "audit_ext worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "audit_ext worker");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

static void
worker_exit(int code, Datum arg)
{
	audit_queue_set_worker(0, NULL);
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL || s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* Fill one event from a queued record: the producer's context, not ours. */
static void
emit_queued(const AuditQueueEntry *e)
{
	AuditEventValues ev;
	char		class_name[sizeof(e->class_name)];
	char		action[sizeof(e->action)];
	Datum		user;
	bool		isnull;

	strlcpy(class_name, e->class_name, sizeof(class_name));
	strlcpy(action, e->action, sizeof(action));
	audit_event_init(&ev, class_name, action);
	if (e->failure)
		ev.values[AC_STATUS] = CStringGetTextDatum("failure");

	ev.values[AC_EVENT_TIME] = TimestampTzGetDatum(e->event_time);
	ev.nulls[AC_EVENT_TIME] = false;

	user = text_or_null(e->user_name, &isnull);
	ev.values[AC_DB_USER] = ev.values[AC_SESSION_USER] = ev.values[AC_ACTOR] = user;
	ev.nulls[AC_DB_USER] = ev.nulls[AC_SESSION_USER] = ev.nulls[AC_ACTOR] = isnull;
	if (e->session_user_name[0] != '\0')
		ev.values[AC_SESSION_USER] = text_or_null(e->session_user_name,
												  &ev.nulls[AC_SESSION_USER]);
	if (e->actor[0] != '\0')
		ev.values[AC_ACTOR] = text_or_null(e->actor, &ev.nulls[AC_ACTOR]);
	if (e->schema_name[0] != '\0')
		ev.values[AC_SCHEMA_NAME] = text_or_null(e->schema_name, &ev.nulls[AC_SCHEMA_NAME]);
	if (e->table_name[0] != '\0')
		ev.values[AC_TABLE_NAME] = text_or_null(e->table_name, &ev.nulls[AC_TABLE_NAME]);
	if (e->table_identity != 0)
	{
		ev.values[AC_TABLE_IDENTITY] = Int64GetDatum(e->table_identity);
		ev.nulls[AC_TABLE_IDENTITY] = false;
	}
	if (e->statement[0] != '\0' &&
		pg_verifymbstr(e->statement, strlen(e->statement), true) &&
		audit_store_statement_text(e->statement, e->redact_statement,
								   &ev.values[AC_STATEMENT_ID]))
		ev.nulls[AC_STATEMENT_ID] = false;

	ev.values[AC_APPLICATION_NAME] = text_or_null(e->application_name, &ev.nulls[AC_APPLICATION_NAME]);

	if (e->client_addr[0] != '\0')
	{
		ev.values[AC_CLIENT_ADDR] = DirectFunctionCall1(inet_in, CStringGetDatum(e->client_addr));
		ev.nulls[AC_CLIENT_ADDR] = false;
	}
	if (e->backend_pid != 0)
	{
		ev.values[AC_BACKEND_PID] = Int32GetDatum(e->backend_pid);
		ev.nulls[AC_BACKEND_PID] = false;
	}

	if (strcmp(class_name, "app") == 0)
	{
		/* audit.log_event(survive_rollback => true): the packed values */
		if (pg_verifymbstr(e->detail, strlen(e->detail), true))
			audit_app_event_unpack(&ev, ev.nulls[AC_TABLE_NAME] ? NULL : e->table_name,
								   e->detail);
	}
	else if (e->detail[0] != '\0')
	{
		const char *detail = e->detail;

		/* producers write valid JSON; guard against bytes invalid here */
		if (!pg_verifymbstr(detail, strlen(detail), true))
			detail = "{\"detail\": \"[not valid in the database encoding]\"}";
		ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
		ev.nulls[AC_DETAIL] = false;
	}
	/* 1.6: the producer's context (checked JSON when it was set) */
	if (e->context[0] != '\0' && pg_verifymbstr(e->context, strlen(e->context), true))
	{
		ev.values[AC_CONTEXT] = DirectFunctionCall1(jsonb_in, CStringGetDatum(e->context));
		ev.nulls[AC_CONTEXT] = false;
	}
	/* the database the event happened in: the store may be another one's */
	if (e->database_name[0] != '\0' &&
		pg_verifymbstr(e->database_name, strlen(e->database_name), true))
	{
		JsonbParseState *st = NULL;
		JsonbValue	k;
		JsonbValue	v;
		Datum		db;

		(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		k.type = jbvString;
		k.val.string.val = "database";
		k.val.string.len = strlen("database");
		(void) pushJsonbValue(&st, WJB_KEY, &k);
		v.type = jbvString;
		v.val.string.val = pstrdup(e->database_name);
		v.val.string.len = strlen(e->database_name);
		(void) pushJsonbValue(&st, WJB_VALUE, &v);
		db = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
		ev.values[AC_DETAIL] = ev.nulls[AC_DETAIL] ? db :
			DirectFunctionCall2(jsonb_concat, ev.values[AC_DETAIL], db);
		ev.nulls[AC_DETAIL] = false;
	}
	/* 1.6: its risk, from the rules of this store, at least the floor */
	audit_event_set_risk(&ev, e->risk_floor);
	audit_event_emit(&ev);
}

/*
 * system/QUEUE_OVERFLOW: n events could not be queued or written; how many
 * of each class.
 */
static void
emit_overflow(uint64 n, const uint64 *by_class)
{
	AuditQueueEntry e;
	char		num[32];
	char		classes[256];
	int			len = 0;
	const char *keys[] = {"dropped", "by_class"};
	const char *vals[] = {num, classes};
	const bool	raw[] = {true, true};

	classes[len++] = '{';
	for (int i = 0; i < audit_queue_nclasses(); i++)
		if (by_class[i] > 0)
			len += snprintf(classes + len, sizeof(classes) - len, "%s\"%s\": " UINT64_FORMAT,
							len > 1 ? ", " : "", audit_queue_class_name(i), by_class[i]);
	snprintf(classes + len, sizeof(classes) - len, "}");

	memset(&e, 0, sizeof(e));
	strlcpy(e.class_name, "system", sizeof(e.class_name));
	strlcpy(e.action, "QUEUE_OVERFLOW", sizeof(e.action));
	e.failure = true;
	e.event_time = GetCurrentTimestamp();
	e.backend_pid = MyProcPid;
	strlcpy(e.user_name, GetUserNameFromId(GetUserId(), false), sizeof(e.user_name));
	snprintf(num, sizeof(num), UINT64_FORMAT, n);
	audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
	emit_queued(&e);
}

/*
 * One round: write queued events in batches until the queue is empty.
 * Returns false when audit.event does not exist in this database.
 */
static bool
drain_queue(AuditQueueEntry *batch, int *failures)
{
	for (;;)
	{
		int			n;
		uint64		drops;
		uint64		by_class[AUDIT_QUEUE_MAX_CLASSES];
		bool		installed;

		CHECK_FOR_INTERRUPTS();
		n = audit_queue_peek(batch, AUDIT_WORKER_BATCH);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		installed = OidIsValid(audit_event_relid(true));
		if (!installed)
		{
			PopActiveSnapshot();
			CommitTransactionCommand();
			return false;
		}
		drops = audit_queue_take_unreported_drops(by_class);
		if (n == 0 && drops == 0)
		{
			PopActiveSnapshot();
			CommitTransactionCommand();
			return true;
		}
		pgstat_report_activity(STATE_RUNNING, "writing queued security events");

		PG_TRY();
		{
			for (int i = 0; i < n; i++)
				emit_queued(&batch[i]);
			if (drops > 0)
				emit_overflow(drops, by_class);
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			/* report the overflow again next round */
			if (drops > 0)
				audit_queue_return_drops(drops, by_class);
			(*failures)++;
			if (*failures >= AUDIT_WORKER_MAX_FAILURES)
			{
				/* give up on this batch: counted (and later reported) as dropped */
				audit_queue_consume(n, false);
				*failures = 0;
			}
			PG_RE_THROW();
		}
		PG_END_TRY();

		audit_queue_consume(n, true);
		*failures = 0;
		pgstat_report_activity(STATE_IDLE, NULL);
	}
}

void
audit_worker_main(Datum main_arg)
{
	AuditQueueEntry *batch;
	MemoryContext worker_cxt;
	static int	failures = 0;	/* static: survive the longjmp below */
	static bool missing_logged = false;
	static bool alerts_active = false;	/* some alert rule is enabled */

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(audit_worker_database, NULL, 0);
	pgstat_report_appname("audit_ext worker");
	/* names resolve in pg_catalog only, whatever the database's settings */
	audit_pin_search_path_for_process();

	audit_queue_set_worker(MyProcPid, &MyProc->procLatch);
	before_shmem_exit(worker_exit, (Datum) 0);

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "audit_ext worker",
									   ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAlloc(worker_cxt, sizeof(AuditQueueEntry) * AUDIT_WORKER_BATCH);

	ereport(LOG,
			(errmsg("audit_ext worker started in database \"%s\"", audit_worker_database)));
	/* protections the configuration file turns off are recorded */
	audit_record_weakened_config();

	for (;;)
	{
		long		nap = AUDIT_WORKER_NAP_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			audit_record_weakened_config();
		}

		PG_TRY();
		{
			if (drain_queue(batch, &failures))
			{
				missing_logged = false;
				audit_chain_maybe_checkpoint();
				/* alert rules (alerts.c), after the events are committed */
				alerts_active = audit_alerts_evaluate();
			}
			else if (!missing_logged)
			{
				ereport(LOG,
						(errmsg("audit_ext worker: extension audit_ext is not installed in database \"%s\"; security events stay queued",
								audit_worker_database),
						 errhint("Run CREATE EXTENSION audit_ext in that database, or set audit_ext.database.")));
				missing_logged = true;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/* as worker_spi / pg_cron: report, clean up, keep running */
			MemoryContextSwitchTo(worker_cxt);
			edata = CopyErrorData();
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			audit_queue_set_error(edata->message);
			FreeErrorData(edata);
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(worker_cxt);

		pgstat_report_stat(false);
		if (alerts_active)
			nap = audit_alerts_nap(nap);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
