/*-------------------------------------------------------------------------
 *
 * denied.c
 *		data/<command> events with status 'failure' for statements on
 *		audited tables refused for lack of privilege (SQLSTATE 42501).
 *
 * The refused statement's transaction aborts, so its event cannot be
 * written with it: it goes through the shared-memory queue (queue.c) to the
 * background worker, like a failed login.
 *
 * Catalog access is not safe once an error is being thrown, so everything
 * is prepared before the statement runs, and only when it can matter: an
 * audited table (one with our audit_ext_row trigger, seen in the relcache
 * entry) on which the user lacks a table-level privilege the statement
 * needs.  Then the statement runs inside PG_TRY; if it fails with 42501,
 * the prepared records get the error message and are queued, and the
 * original error is re-thrown untouched.
 *
 *	SELECT/INSERT/UPDATE/DELETE/MERGE: ExecutorStart hook (the permission
 *		check is in standard_ExecutorStart).  The relations in the range
 *		table are locked already (parser/planner or AcquireExecutorLocks).
 *	COPY table, TRUNCATE: the ProcessUtility hook (audit_ext.c).
 *
 * A statement refused on a table the user may not use, that also reads an
 * audited table with only column privileges, is recorded on the audited
 * table too (best effort; the message names the table that was refused).
 * Needs shared_preload_libraries (the queue).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "executor/executor.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define DENIED_MAX_TABLES 8

typedef struct DeniedTable
{
	char		schema_name[NAMEDATALEN];
	char		table_name[NAMEDATALEN];
	int64		identity;		/* of the audited table; 0: none */
	int			sensitivity;	/* 1.6: audit.enable(sensitivity), a floor of
								 * the refusal's risk; 0: none */
} DeniedTable;

/* prepared by one statement; lives in the statement's memory context */
typedef struct DeniedState
{
	MemoryContext cxt;
	int			ntables;
	DeniedTable tables[DENIED_MAX_TABLES];
	AuditQueueEntry entry;		/* everything but table and detail */
} DeniedState;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;

/*
 * Is this relation audited (does it carry our row trigger)?  Only the
 * relcache entry is read.  *clone: the trigger was cloned from a
 * partitioned parent; *sensitivity: the table's (the trigger's flags; a
 * clone carries its parent's).
 */
static bool
has_row_trigger(Oid relid, bool *clone, int *sensitivity)
{
	Relation	rel = RelationIdGetRelation(relid);
	Trigger    *tg;
	bool		audited = false;

	if (!RelationIsValid(rel))
		return false;
	if ((tg = audit_row_trigger(rel)) != NULL)
	{
		audited = true;
		*clone = tg->tgisclone;
		*sensitivity = audit_trigger_sensitivity(tg);
	}
	RelationClose(rel);
	return audited;
}

/*
 * The names the audited relation's events are recorded under (its audited
 * root's for a cloned trigger); false when it is gone.
 */
static bool
audited_names(Oid relid, bool clone, DeniedTable *t)
{
	char	   *nsp;
	char	   *name;

	if (!audit_recorded_names(relid, clone, &nsp, &name, &t->identity))
		return false;
	strlcpy(t->schema_name, nsp, sizeof(t->schema_name));
	strlcpy(t->table_name, name, sizeof(t->table_name));
	return true;
}

static DeniedState *
denied_add(DeniedState *d, const char *action, DeniedTable *t)
{
	if (d == NULL)
	{
		AuditQueueEntry *e;
		const char *query = debug_query_string;

		d = palloc0(sizeof(DeniedState));
		d->cxt = CurrentMemoryContext;
		e = &d->entry;
		audit_fill_entry_from_port(e, MyProcPort, "data", action, true);
		audit_fill_entry_from_statement(e, query);
	}
	for (int i = 0; i < d->ntables; i++)
		if (strcmp(d->tables[i].schema_name, t->schema_name) == 0 &&
			strcmp(d->tables[i].table_name, t->table_name) == 0)
			return d;
	if (d->ntables < DENIED_MAX_TABLES)
		d->tables[d->ntables++] = *t;
	return d;
}

/*
 * In PG_CATCH: if the error is insufficient_privilege, queue the prepared
 * events with its message.  Allocates only in the statement's context;
 * never throws.
 */
static void
denied_report(DeniedState *d)
{
	MemoryContext old;
	ErrorData  *edata;

	if (d == NULL || geterrcode() != ERRCODE_INSUFFICIENT_PRIVILEGE)
		return;
	old = MemoryContextSwitchTo(d->cxt);
	edata = CopyErrorData();
	{
		const char *keys[] = {"sqlstate", "message"};
		const char *vals[] = {unpack_sql_state(edata->sqlerrcode),
		edata->message ? edata->message : ""};
		const bool	raw[] = {false, false};

		audit_json_object(d->entry.detail, sizeof(d->entry.detail), 2, keys,
						  vals, raw);
	}
	for (int i = 0; i < d->ntables; i++)
	{
		strlcpy(d->entry.schema_name, d->tables[i].schema_name,
				sizeof(d->entry.schema_name));
		strlcpy(d->entry.table_name, d->tables[i].table_name,
				sizeof(d->entry.table_name));
		d->entry.table_identity = d->tables[i].identity;
		d->entry.risk_floor = d->tables[i].sensitivity;
		(void) audit_queue_enqueue(&d->entry);
	}
	MemoryContextSwitchTo(old);
}

static const char *
operation_name(CmdType op)
{
	switch (op)
	{
		case CMD_SELECT:
			return "SELECT";
		case CMD_INSERT:
			return "INSERT";
		case CMD_UPDATE:
			return "UPDATE";
		case CMD_DELETE:
			return "DELETE";
		case CMD_MERGE:
			return "MERGE";
		default:
			return NULL;
	}
}

static DeniedState *
prepare_executor(QueryDesc *queryDesc)
{
	DeniedState *d = NULL;
	const char *action = operation_name(queryDesc->operation);
	ListCell   *lc;

	if (action == NULL || queryDesc->plannedstmt == NULL)
		return NULL;
	foreach(lc, queryDesc->plannedstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		DeniedTable t;
		Oid			userid;
		bool		clone = false;
		int			sensitivity = 0;
		AclMode		required;
		Oid			check_as;

#if PG_VERSION_NUM >= 160000
		RTEPermissionInfo *perminfo;

		if (rte->rtekind != RTE_RELATION || rte->perminfoindex == 0)
			continue;
		perminfo = getRTEPermissionInfo(queryDesc->plannedstmt->permInfos, rte);
		required = perminfo->requiredPerms;
		check_as = perminfo->checkAsUser;
#else
		if (rte->rtekind != RTE_RELATION)
			continue;
		required = rte->requiredPerms;
		check_as = rte->checkAsUser;
#endif
		if (required == 0)
			continue;
		if (rte->relkind != RELKIND_RELATION &&
			rte->relkind != RELKIND_PARTITIONED_TABLE)
			continue;

		/*
		 * Cheapest test first: this runs for every statement.  Looking up
		 * the recorded names (syscache, strings) before the privilege check
		 * was 0.8% of an audited OLTP backend's CPU.
		 */
		if (!has_row_trigger(rte->relid, &clone, &sensitivity))
			continue;
		userid = OidIsValid(check_as) ? check_as : GetUserId();
		if (pg_class_aclmask(rte->relid, userid, required,
							 ACLMASK_ALL) == required)
			continue;
		if (!audited_names(rte->relid, clone, &t))
			continue;
		t.sensitivity = sensitivity;
		d = denied_add(d, action, &t);
	}
	return d;
}

static void
audit_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	DeniedState *volatile d = NULL;

	if (audit_queue_available() && !IsParallelWorker() &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
		d = prepare_executor(queryDesc);

	if (d == NULL)
	{
		if (prev_ExecutorStart)
			prev_ExecutorStart(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
		return;
	}

	PG_TRY();
	{
		if (prev_ExecutorStart)
			prev_ExecutorStart(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
	}
	PG_CATCH();
	{
		denied_report(d);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

void
audit_denied_install_hooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = audit_ExecutorStart;
}

/* COPY table and TRUNCATE: prepared before the utility statement runs. */
void *
audit_denied_prepare_utility(Node *stmt)
{
	DeniedState *d = NULL;
	List	   *rels = NIL;
	const char *action;
	AclMode		mode;
	ListCell   *lc;

	if (!audit_queue_available() || !IsTransactionState())
		return NULL;
	if (IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->relation != NULL)
	{
		rels = list_make1(((CopyStmt *) stmt)->relation);
		action = "COPY";
		mode = ((CopyStmt *) stmt)->is_from ? ACL_INSERT : ACL_SELECT;
	}
	else if (IsA(stmt, TruncateStmt))
	{
		rels = ((TruncateStmt *) stmt)->relations;
		action = "TRUNCATE";
		mode = ACL_TRUNCATE;
	}
	else
		return NULL;

	foreach(lc, rels)
	{
		Oid			relid = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);
		DeniedTable t;
		bool		clone = false;
		int			sensitivity = 0;

		if (!OidIsValid(relid) ||
			pg_class_aclcheck(relid, GetUserId(), mode) == ACLCHECK_OK ||
			!has_row_trigger(relid, &clone, &sensitivity) || clone)
			continue;
		/* its own trigger: recorded under its own names */
		if (audited_names(relid, false, &t))
		{
			t.sensitivity = sensitivity;
			d = denied_add(d, action, &t);
		}
	}
	return d;
}

void
audit_denied_report_utility(void *state)
{
	denied_report((DeniedState *) state);
}
