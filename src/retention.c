/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Append-only protection of the audit tables, the GUCs of retention
 *		and archive, system events of audit.prune() and policy changes.
 *
 * UPDATE and DELETE are refused by the row trigger audit.refuse_change()
 * (BEFORE UPDATE OR DELETE, ENABLE ALWAYS, on audit.event -- cloned to every
 * partition --, audit.statement and audit.archives).  It is the table
 * owner's and the superuser's barrier: other roles have no such privilege
 * anyway.  The only legitimate DELETE is audit_ext's own: moving rows out of
 * a default partition into a new monthly one (audit.create_partitions,
 * audit.create_month_partition).  Those functions have a SET clause, so
 * PostgreSQL runs them through fmgr_security_definer, which calls fmgr_hook;
 * ddl_capture.c's hook counts how deep we are inside functions of schema
 * audit (audit_in_own_function()).  Nothing a session
 * controls -- GUCs, roles, search_path -- fakes that depth, and creating a
 * function in schema audit needs a superuser.
 *
 * DROP TABLE, TRUNCATE, ALTER TABLE ... DETACH PARTITION, DROP COLUMN, ALTER
 * COLUMN TYPE and SET SCHEMA of a table of schema audit are refused by the
 * utility hook (not in the extension's own scripts),
 * for everyone, except while audit.drop_event_partition() (called by
 * audit.prune() only) drops one monthly partition.  DROP EXTENSION removes
 * the tables through dependencies, not through these statements, so it
 * keeps working; so does ALTER EXTENSION UPDATE.  audit.restored_event, a
 * scratch table for investigations, is not protected.
 *
 * A superuser can still switch the protections off deliberately: UPDATE and
 * DELETE with ALTER TABLE audit.event DISABLE TRIGGER audit_append_only
 * (recorded as a ddl event like any ALTER TABLE when ddl logging is on),
 * DROP/TRUNCATE/DETACH with SET audit_ext.protect_trail = off (superuser
 * only; always recorded as a ddl event).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "utils/acl.h"
#include "catalog/pg_class.h"
#include "catalog/partition.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "audit_ext.h"

char	   *audit_archive_directory = NULL;
int			audit_maintenance_interval = 600;
int			audit_partitions_ahead = 2;
int			audit_archive_fault_after_rows = 0;
bool		audit_protect_trail = true;

/* set while audit.drop_event_partition() runs its DROP TABLE */
static bool dropping_partition = false;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void retention_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
									 bool readOnlyTree,
									 ProcessUtilityContext context,
									 ParamListInfo params,
									 QueryEnvironment *queryEnv,
									 DestReceiver *dest, QueryCompletion *qc);

void
audit_retention_define_gucs(void)
{
	DefineCustomStringVariable("audit_ext.archive_directory",
							   "Directory the archive files of audit.prune() are written to.",
							   "A relative path is relative to the data directory. It is created (mode 0700) when missing.",
							   &audit_archive_directory,
							   "audit_archive",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("audit_ext.maintenance_interval",
							"Time between two runs of the maintenance worker (partitions ahead, retention).",
							NULL,
							&audit_maintenance_interval,
							600,
							1,
							7 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("audit_ext.partitions_ahead",
							"Months of audit partitions the maintenance worker keeps created ahead of the current one.",
							NULL,
							&audit_partitions_ahead,
							2,
							1,
							120,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("audit_ext.protect_trail",
							 "Refuse DROP, TRUNCATE, DETACH PARTITION, DROP COLUMN, ALTER COLUMN TYPE and SET SCHEMA of audit tables.",
							 "Only a superuser can turn it off, for a deliberate repair; turning it off is recorded as a ddl event.",
							 &audit_protect_trail,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Fault injection for the crash test: after writing this many rows of an
	 * archive, the process kills itself with SIGKILL, as a crash would.  Once
	 * per partition: the run after the crash (which finds the temporary file
	 * the crash left) completes, so the server does not crash in a loop.
	 */
	DefineCustomIntVariable("audit_ext.archive_fault_after_rows",
							"Testing only: crash (SIGKILL) after writing this many rows of an archive, once per partition; 0 = never.",
							NULL,
							&audit_archive_fault_after_rows,
							0,
							0,
							INT_MAX,
							PGC_SUSET,
							GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
}

static void
retention_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		dropping_partition = false;
	}
}

void
audit_retention_install_hooks(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = retention_ProcessUtility;
	RegisterXactCallback(retention_xact_callback, NULL);
}

/* ----------------------------------------------------------------
 * Refusals
 * ----------------------------------------------------------------
 */

/* A table of schema audit that is part of the trail (not the scratch table). */
static bool
is_protected_relation(Oid relid)
{
	Oid			nsp;
	char		relkind;
	char	   *name;

	if (!OidIsValid(relid))
		return false;
	nsp = get_namespace_oid("audit", true);
	if (!OidIsValid(nsp) || get_rel_namespace(relid) != nsp)
		return false;
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return false;
	name = get_rel_name(relid);
	return name != NULL && strcmp(name, "restored_event") != 0;
}

static void
refuse(const char *what, Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s of audit table \"audit.%s\" is not allowed", what,
					get_rel_name(relid)),
			 errdetail("The audit trail is append-only: events leave it only through audit.prune(), which archives and drops whole partitions according to the retention policies."),
			 errhint("Use audit.set_retention() and audit.prune(); DROP EXTENSION audit_ext removes the whole trail.")));
}

/*
 * Refuse the statement on a protected relation to those whom PostgreSQL
 * would let do it (owner, superuser, a role granted TRUNCATE); everyone else
 * gets PostgreSQL's own "permission denied" as before.
 */
static void
check_range_var(const char *what, RangeVar *rv, bool truncate)
{
	Oid			relid;
	bool		allowed;

	if (!audit_protect_trail)
		return;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!is_protected_relation(relid))
		return;
	if (truncate)
		allowed = pg_class_aclcheck(relid, GetUserId(), ACL_TRUNCATE) == ACLCHECK_OK;
	else
#if PG_VERSION_NUM >= 160000
		allowed = object_ownercheck(RelationRelationId, relid, GetUserId());
#else
		allowed = pg_class_ownercheck(relid, GetUserId());
#endif
	if (allowed)
		refuse(what, relid);
}

static void
check_utility(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_TruncateStmt:
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				check_range_var("TRUNCATE", lfirst_node(RangeVar, lc), true);
			break;
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) stmt;

				if (drop->removeType != OBJECT_TABLE || dropping_partition)
					break;
				foreach(lc, drop->objects)
				{
					RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));

					check_range_var("DROP", rv, false);
				}
				break;
			}
		case T_AlterTableStmt:
			{
				AlterTableStmt *at = (AlterTableStmt *) stmt;

				foreach(lc, at->cmds)
				{
					AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

					if (cmd->subtype == AT_DetachPartition ||
						cmd->subtype == AT_DetachPartitionFinalize)
						check_range_var("DETACH PARTITION", at->relation, false);
					/* both destroy or rewrite recorded values */
					else if (cmd->subtype == AT_DropColumn)
						check_range_var("DROP COLUMN", at->relation, false);
					else if (cmd->subtype == AT_AlterColumnType)
						check_range_var("ALTER COLUMN TYPE", at->relation, false);
				}
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *as = (AlterObjectSchemaStmt *) stmt;

				if (as->objectType == OBJECT_TABLE && as->relation != NULL)
					check_range_var("SET SCHEMA", as->relation, false);
				break;
			}
		default:
			break;
	}
}

/*
 * SET audit_ext.protect_trail = off is recorded (ddl, whatever
 * audit_ext.log_ddl says), as SET session_replication_role = replica is:
 * both weaken the trail.  Only where audit_ext is installed.
 */
static void
record_protection_off(VariableSetStmt *stmt)
{
	AuditEventValues ev;

	if (stmt->name == NULL || strcmp(stmt->name, "audit_ext.protect_trail") != 0 ||
		!OidIsValid(audit_event_relid(true)))
		return;
	audit_event_init(&ev, "ddl", "SET audit_ext.protect_trail");
	audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE);
	ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"value\": \"off\"}"));
	ev.nulls[AC_DETAIL] = false;
	audit_event_emit(&ev);
}

static void
retention_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	/*
	 * Catalog lookups need a transaction; DROP TABLE etc. always have one.
	 * The extension's own scripts (ALTER EXTENSION UPDATE) are trusted.
	 */
	if (IsTransactionState() && !creating_extension)
		check_utility(pstmt->utilityStmt);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (IsA(pstmt->utilityStmt, VariableSetStmt) && !audit_protect_trail &&
		IsTransactionState())
		record_protection_off((VariableSetStmt *) pstmt->utilityStmt);
}

/*
 * audit.refuse_change(): BEFORE UPDATE OR DELETE row trigger.
 */
PG_FUNCTION_INFO_V1(audit_refuse_change);

Datum
audit_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		is_delete;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "audit.refuse_change() must be a BEFORE ROW trigger");

	is_delete = TRIGGER_FIRED_BY_DELETE(trigdata->tg_event);

	/* rows moved out of a default partition by audit_ext's own functions */
	if (is_delete && audit_in_own_function())
		return PointerGetDatum(trigdata->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s of audit table \"%s.%s\" is not allowed",
					is_delete ? "DELETE" : "UPDATE",
					get_namespace_name(RelationGetNamespace(trigdata->tg_relation)),
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("The audit trail is append-only: no event can be changed or removed, not even by the table owner or a superuser."),
			 errhint("Events leave the trail only through audit.prune() according to the retention policies (audit.set_retention).")));
	PG_RETURN_NULL();			/* not reached */
}

/*
 * audit.drop_event_partition(part regclass): drop one monthly leaf
 * partition of audit.event.  The one way past the DROP protection; its
 * EXECUTE is revoked from PUBLIC and audit.prune() calls it.
 */
PG_FUNCTION_INFO_V1(audit_drop_event_partition);

Datum
audit_drop_event_partition(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			event_relid = audit_event_relid(false);
	List	   *ancestors;
	char	   *sql;
	char	   *name = get_rel_name(relid);
	int			nest;

	ancestors = name ? get_partition_ancestors(relid) : NIL;
	if (list_length(ancestors) != 2 || llast_oid(ancestors) != event_relid ||
		get_rel_relkind(relid) != RELKIND_RELATION ||
		strstr(name, "_default") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a monthly partition of audit.event",
						name ? name : "?"),
				 errhint("audit.prune() drops the monthly partitions whose time has come.")));

	sql = psprintf("DROP TABLE %s",
				   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name));
	nest = audit_spi_connect();
	dropping_partition = true;
	PG_TRY();
	{
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not drop partition %s", name);
	}
	PG_FINALLY();
	{
		dropping_partition = false;
	}
	PG_END_TRY();
	audit_spi_finish(nest);
	PG_RETURN_VOID();
}

/*
 * audit.log_system_event(action text, detail jsonb): a system event in the
 * caller's transaction.  The user recorded is the session's role (the
 * callers are SECURITY DEFINER); detail gets "by": that role, or "worker"
 * in the maintenance worker.
 */
PG_FUNCTION_INFO_V1(audit_log_system_event);

Datum
audit_log_system_event(PG_FUNCTION_ARGS)
{
	AuditEventValues ev;
	Oid			role = GetCurrentRoleId();
	char	   *who;
	Datum		user;
	Datum		by;
	char	   *action;
	StringInfoData buf;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	action = text_to_cstring(PG_GETARG_TEXT_PP(0));
	who = GetUserNameFromId(OidIsValid(role) ? role : GetSessionUserId(), false);

	audit_event_init(&ev, "system", action);
	audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE);
	user = CStringGetTextDatum(who);
	if (ev.values[AC_ACTOR] == ev.values[AC_DB_USER])
		ev.values[AC_ACTOR] = user;
	ev.values[AC_DB_USER] = user;
	if (audit_is_maintenance_worker())
	{
		ev.values[AC_ACTOR] = CStringGetTextDatum("audit_ext maintenance worker");
		ev.nulls[AC_ACTOR] = false;
	}

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"by\": ");
	escape_json(&buf, audit_is_maintenance_worker() ? "worker" : who);
	appendStringInfoChar(&buf, '}');
	by = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	if (!PG_ARGISNULL(1))
		by = DirectFunctionCall2(jsonb_concat, PG_GETARG_DATUM(1), by);
	ev.values[AC_DETAIL] = by;
	ev.nulls[AC_DETAIL] = false;
	audit_event_emit(&ev);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(audit_in_maintenance_worker);

Datum
audit_in_maintenance_worker(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audit_is_maintenance_worker());
}
