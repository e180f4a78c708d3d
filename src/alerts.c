/*-------------------------------------------------------------------------
 *
 * alerts.c
 *		Alert rules, evaluated by the background worker (worker.c).
 *
 * After each drain of the security-event queue the worker calls
 * audit_alerts_evaluate(): one REPEATABLE READ transaction that runs
 * audit.evaluate_alerts() (sql/src/alerts.sql).  That function
 * reads the events committed since its watermark, stores the alerts of the
 * rules that fire and sends them with pg_notify; the notifications are
 * delivered when this transaction commits, together with the alerts and the
 * new watermark.  One snapshot for the whole round is what makes the
 * watermark exact (see the function's comment and docs/architecture.md).
 *
 * Security events (logins, reads, refused statements) set the worker's latch
 * through the queue, so their alerts follow at once; data, privilege and ddl
 * events are committed by the sessions themselves, so while some rule is
 * enabled the worker wakes every audit_ext.alert_interval to look.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "audit_ext.h"

int			audit_alert_interval = 200;

void
audit_alerts_define_gucs(void)
{
	DefineCustomIntVariable("audit_ext.alert_interval",
							"How often the worker looks for new events while alert rules are enabled.",
							"Security and read events wake the worker at once; this bounds the delay for data, privilege and ddl events.",
							&audit_alert_interval,
							200,
							10,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * One evaluation round.  Returns true when some rule is enabled (the worker
 * then naps at most audit_ext.alert_interval).  Errors propagate to the
 * worker's loop, which records them and retries next round.
 */
bool
audit_alerts_evaluate(void)
{
	bool		active = false;
	int			nest;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* one snapshot for the round: set before the first one is taken */
	XactIsoLevel = XACT_REPEATABLE_READ;
	nest = audit_spi_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/* an extension still at 1.0 has no rules */
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('audit.evaluate_alerts()') IS NOT NULL",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		present = SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && DatumGetBool(present))
		{
			pgstat_report_activity(STATE_RUNNING, "evaluating alert rules");
			if (SPI_execute("SELECT audit.evaluate_alerts()", false, 1) != SPI_OK_SELECT ||
				SPI_processed != 1)
				elog(ERROR, "audit.evaluate_alerts() failed");
			active = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1,
												 &isnull)) >= 0;
		}
	}

	audit_spi_finish(nest);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return active;
}

/* The worker's nap: shorter while rules are enabled. */
long
audit_alerts_nap(long nap)
{
	return Min(nap, (long) audit_alert_interval);
}
