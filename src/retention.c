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
 * a default partition into a new monthly one (audit.create_month_partition
 * calls audit.move_default_events(), C, below), and the trigger lets it
 * through for that one statement on that one default partition only.  (Up
 * to 1.3 any DELETE went through while any function of schema audit with a
 * SET clause ran: a superuser's own function there was enough.)  The
 * chain's tables (chain_anchor, chain_checkpoint, chain_origin) carry the
 * same trigger since 1.4.
 *
 * DROP TABLE, TRUNCATE, ALTER TABLE ... DETACH PARTITION, DROP COLUMN, ALTER
 * COLUMN TYPE and SET SCHEMA of a table of schema audit are refused by the
 * utility hook (not in the extension's own scripts),
 * for everyone, except while audit.drop_event_partition() drops one monthly
 * partition; it refuses to run unless audit.prune() is running (the fmgr
 * hook of ddl_capture.c counts it), so the drop always comes with its archive,
 * chain anchors and PRUNE event.  DROP EXTENSION removes
 * the tables through dependencies, not through these statements, so it
 * keeps working; so does ALTER EXTENSION UPDATE.  audit.restored_event, a
 * scratch table for investigations, is not protected.
 *
 * A superuser can still switch the protections off deliberately: UPDATE and
 * DELETE with ALTER TABLE audit.event DISABLE TRIGGER audit_append_only
 * (recorded as a ddl event like any ALTER TABLE when ddl logging is on),
 * DROP/TRUNCATE/DETACH with SET audit_ext.protect_trail = off (superuser
 * only).  Turning protect_trail or log_ddl off is recorded by every route
 * (queue_weakening() below) and counted by audit.verify().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "utils/acl.h"
#include "catalog/pg_class.h"
#include "commands/dbcommands.h"
#include "catalog/pg_type.h"
#include "catalog/partition.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "libpq/libpq-be.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "storage/lmgr.h"

#include "audit_ext.h"

char	   *audit_archive_directory = NULL;
int			audit_maintenance_interval = 600;
int			audit_partitions_ahead = 2;
int			audit_archive_fault_after_rows = 0;
bool		audit_protect_trail = true;

/* set while audit.drop_event_partition() runs its DROP TABLE */
static bool dropping_partition = false;

/*
 * The default partition audit.move_default_events() is moving rows out of,
 * while its one statement runs: the only relation, and the only moment, at
 * which audit.refuse_change() lets a DELETE through.
 */
static Oid	moving_from = InvalidOid;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static bool audit_check_protect_trail(bool *newval, void **extra, GucSource source);

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
							 audit_check_protect_trail, NULL, NULL);

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
		moving_from = InvalidOid;
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

/* ----------------------------------------------------------------
 * Weakening the trail is always recorded
 * ----------------------------------------------------------------
 *
 * audit_ext.protect_trail = off (DROP/TRUNCATE of audit tables allowed) and
 * audit_ext.log_ddl = off (DDL not recorded) weaken the trail.  Whoever turns
 * one off, by whatever route -- SET, set_config(), a function's SET clause,
 * PGOPTIONS, ALTER ROLE/DATABASE ... SET (applied at connection), ALTER
 * SYSTEM, the configuration file --, a critical ddl event says so.  It goes
 * through the shared-memory queue, so it survives the rollback of the
 * transaction that did it, and it carries "audit_protection_off": true,
 * which the shipped audit_disabled alert rule and audit.verify() look for.
 */
static void
queue_weakening(const char *setting, const char *value, const char *via)
{
	AuditQueueEntry e;
	char		action[32];
	const char *keys[5] = {"setting", "value", "via", "risk", "audit_protection_off"};
	const char *vals[5] = {setting, value, via, "critical", "true"};
	const bool	raw[5] = {false, false, false, false, true};

	/* setting: an audit_ext setting, or session_replication_role */
	snprintf(action, sizeof(action), "SET %s", setting);
	if (!audit_fill_entry_for_session(&e, "ddl", action, false))
		return;
	if (IsTransactionState() && debug_query_string && MyBackendType != B_BG_WORKER)
	{
		e.redact_statement = true;
		strlcpy(e.statement, debug_query_string, sizeof(e.statement));
	}
	audit_json_object(e.detail, sizeof(e.detail), 5, keys, vals, raw);
	(void) audit_queue_enqueue(&e);
}

/*
 * audit_ext.actor replaced by another within a session (audit_ext.c): an
 * auth event through the queue, so that it needs no transaction and survives
 * a rollback.
 */
void
audit_queue_actor_change(const char *from, const char *to)
{
	AuditQueueEntry e;
	const char *keys[2] = {"from", "to"};
	const char *vals[2] = {from, to};
	const bool	raw[2] = {false, false};

	if (!audit_fill_entry_for_session(&e, "auth", "ACTOR CHANGE", false))
		return;
	strlcpy(e.actor, to, sizeof(e.actor));
	audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
	(void) audit_queue_enqueue(&e);
}

static const char *
source_route(GucSource source)
{
	switch (source)
	{
		case PGC_S_DATABASE:
			return "ALTER DATABASE ... SET";
		case PGC_S_USER:
			return "ALTER ROLE ... SET";
		case PGC_S_DATABASE_USER:
			return "ALTER ROLE ... IN DATABASE ... SET";
		case PGC_S_CLIENT:
			return "connection options (PGOPTIONS)";
		case PGC_S_SESSION:
			return "SET, set_config() or a function's SET clause";
		default:
			return NULL;		/* the file, defaults, validation: see below */
	}
}

/*
 * Check hooks: they see the route (GucSource) and run before the value
 * changes, once per change.  Only a change from on to off is recorded;
 * values checked for ALTER ... SET (PGC_S_TEST) are recorded when a session
 * applies them, and the configuration file by the worker
 * (audit_record_weakened_config).
 */
static bool
check_weakening(bool *newval, bool current, const char *setting, GucSource source)
{
	const char *via = source_route(source);

	if (!*newval && current && via != NULL)
		queue_weakening(setting, "off", via);
	return true;
}

bool
audit_check_log_ddl(bool *newval, void **extra, GucSource source)
{
	return check_weakening(newval, audit_log_ddl, "audit_ext.log_ddl", source);
}

static bool
audit_check_protect_trail(bool *newval, void **extra, GucSource source)
{
	return check_weakening(newval, audit_protect_trail, "audit_ext.protect_trail", source);
}

/*
 * The security-event worker, at start and after each reload: a configuration
 * file (or ALTER SYSTEM) that turns a protection off is recorded once per
 * change.
 */
void
audit_record_weakened_config(void)
{
	static bool logged_ddl_off = false;
	static bool logged_protect_off = false;

	if (!audit_log_ddl && !logged_ddl_off)
		queue_weakening("audit_ext.log_ddl", "off", "configuration file");
	if (!audit_protect_trail && !logged_protect_off)
		queue_weakening("audit_ext.protect_trail", "off", "configuration file");
	logged_ddl_off = !audit_log_ddl;
	logged_protect_off = !audit_protect_trail;
}

/*
 * session_replication_role = replica stops every ordinary trigger, the
 * audit triggers included.  SET is recorded by ddl_capture.c; these routes
 * are not statements of their own: set_config(), a function's SET clause
 * (its value is gone when the statement ends), connection options and
 * ALTER ROLE/DATABASE ... SET (in effect from the session's start).  Called
 * at the end of every statement, when a function with a SET clause starts
 * (fmgr hook), and after SET itself (quiet: it has its event).
 */
static int	replication_role_seen = SESSION_REPLICATION_ROLE_ORIGIN;
static bool replication_role_set_running = false;

/*
 * While SET session_replication_role runs, statements our own code runs
 * (the statement store's SPI, the event's flush) end too: they must not
 * report the SET as a set_config().
 */
void
audit_replication_role_set_running(bool running)
{
	replication_role_set_running = running;
}

void
audit_check_replication_role(const char *via, bool quiet)
{
	/* logical replication's apply workers run in replica mode by design */
	if (MyBackendType != B_BACKEND || (replication_role_set_running && !quiet))
		return;
	if (SessionReplicationRole == replication_role_seen)
		return;
	replication_role_seen = SessionReplicationRole;
	if (quiet || SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		return;
	queue_weakening("session_replication_role", "replica", via);
}

/* ALTER SYSTEM SET of a protection to off: recorded when it is written. */
static void
check_alter_system(Node *stmt)
{
	VariableSetStmt *set;
	char	   *value;
	bool		b;

	if (!IsA(stmt, AlterSystemStmt))
		return;
	set = ((AlterSystemStmt *) stmt)->setstmt;
	if (set == NULL || set->name == NULL || set->kind != VAR_SET_VALUE ||
		(strcmp(set->name, "audit_ext.log_ddl") != 0 &&
		 strcmp(set->name, "audit_ext.protect_trail") != 0))
		return;
	value = ExtractSetVariableArgs(set);
	if (value && parse_bool(value, &b) && !b)
		queue_weakening(set->name, "off", "ALTER SYSTEM");
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
	check_alter_system(pstmt->utilityStmt);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

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

	/* rows moved out of a default partition by audit.move_default_events() */
	if (is_delete && OidIsValid(moving_from) &&
		RelationGetRelid(trigdata->tg_relation) == moving_from)
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

	/*
	 * Only audit.prune() drops events: it archives first when the policy
	 * says so, anchors the chains and records a PRUNE event.  Called on its
	 * own (a superuser may execute it) it would remove a month silently.
	 */
	if (!audit_in_prune())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit.drop_event_partition() may only be called by audit.prune()"),
				 errdetail("Dropping events outside retention would leave no PRUNE event and no chain anchor."),
				 errhint("Set a retention policy with audit.set_retention() and run audit.prune().")));

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

/*
 * audit.move_default_events(cls text, part regclass, lo timestamptz,
 * hi timestamptz) -> bigint
 *
 * Moves the events of [lo, hi) out of the class's default partition into
 * part, a new monthly partition not yet attached (audit.create_month_partition).
 * The one DELETE the append-only trigger lets through, on that default
 * partition only, for this one statement; every row lands in part in the same
 * statement, so nothing leaves the trail.
 */
PG_FUNCTION_INFO_V1(audit_move_default_events);

Datum
audit_move_default_events(PG_FUNCTION_ARGS)
{
	char	   *cls = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			part = PG_GETARG_OID(1);
	Datum		args[2] = {PG_GETARG_DATUM(2), PG_GETARG_DATUM(3)};
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			nsp = get_namespace_oid("audit", false);
	char	   *default_name = psprintf("event_%s_default", cls);
	Oid			default_relid = get_relname_relid(default_name, nsp);
	char	   *part_name = get_rel_name(part);
	char	   *prefix = psprintf("event_%s_p", cls);
	int64		moved = 0;
	int			nest;
	char	   *sql;

	if (!OidIsValid(default_relid) || get_rel_relispartition(default_relid) == false)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not an event class with a default partition", cls)));
	if (part_name == NULL || get_rel_namespace(part) != nsp ||
		strncmp(part_name, prefix, strlen(prefix)) != 0 ||
		get_rel_relispartition(part) || get_rel_relkind(part) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a new monthly partition of class %s", part_name ? part_name : "?", cls),
				 errhint("audit.create_month_partition() moves events out of the default partition.")));

	sql = psprintf("WITH m AS (DELETE FROM audit.%s WHERE event_time OPERATOR(pg_catalog.>=) $1"
				   " AND event_time OPERATOR(pg_catalog.<) $2 RETURNING *)"
				   " INSERT INTO audit.%s SELECT * FROM m",
				   quote_identifier(default_name), quote_identifier(part_name));
	nest = audit_spi_connect();
	moving_from = default_relid;
	PG_TRY();
	{
		if (SPI_execute_with_args(sql, 2, types, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not move events out of %s", default_name);
		moved = (int64) SPI_processed;
	}
	PG_FINALLY();
	{
		moving_from = InvalidOid;
	}
	PG_END_TRY();
	audit_spi_finish(nest);
	PG_RETURN_INT64(moved);
}

/*
 * audit.in_prune(): whether audit.prune() is running in this backend
 * (chain_record_pruned refuses to run elsewhere).
 */
PG_FUNCTION_INFO_V1(audit_in_prune_sql);

Datum
audit_in_prune_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audit_in_prune());
}

/*
 * audit.prune_statements() -> bigint: delete the statement texts that no
 * remaining event refers to (1.5).  Only inside audit.prune(), at its end,
 * after the month partitions are dropped; returns how many texts it removed,
 * or NULL when it may not prune them (see below).
 *
 * Kept: a text referred to by any event of audit.event (any class, any
 * partition, the default ones included) or by an event loaded back into
 * audit.restored_event; and every text first seen before the end of the
 * newest archive written before 1.5, whose files carry only the ids (an
 * archive written since carries the texts its events refer to, archive.c).
 *
 * Backends cache the ids of texts they know are stored (statement_store.c).
 * ShareLock on audit.statement waits for every transaction that uses a
 * statement id (they hold RowExclusiveLock from their first one to their end)
 * and holds off new ones until this transaction ends; the shared generation
 * is bumped while the lock is held, so a backend that takes its lock after
 * this commit forgets its cached ids and stores the text again.  Bumped
 * before the delete: a prune that rolls back costs the backends one store
 * of each text they use next, nothing worse.  The candidates are read with a
 * snapshot taken after the lock was granted, so every event of a transaction
 * that used an id before is seen.  No shared memory (not preloaded): no
 * generation, no prune of texts (NULL).  REPEATABLE READ or SERIALIZABLE:
 * the transaction's snapshot predates the lock, NULL as well.
 *
 * The rows are deleted here, in C, not by an SQL DELETE: the append-only
 * trigger audit_append_only keeps refusing every DELETE of audit.statement,
 * for everyone; this function is the only way a text leaves, and it refuses
 * to run outside audit.prune().
 */
PG_FUNCTION_INFO_V1(audit_prune_statements);

Datum
audit_prune_statements(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_namespace_oid("audit", false);
	Oid			relid = get_relname_relid("statement", nsp);
	Relation	rel;
	Portal		portal;
	SPIPlanPtr	plan;
	int64		removed = 0;
	int			nest;

	if (!audit_in_prune())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit.prune_statements() may only be called by audit.prune()"),
				 errdetail("Statement texts leave the trail only with the events that refer to them."),
				 errhint("Set a retention policy with audit.set_retention() and run audit.prune().")));
	if (!OidIsValid(relid))
		elog(ERROR, "audit.statement does not exist");
	if (!audit_queue_available() || IsolationUsesXactSnapshot())
		PG_RETURN_NULL();

	/* audit.prune() took it already (audit.lock_statements), before its drops */
	LockRelationOid(relid, ShareLock);
	audit_statement_generation_bump();

	/*
	 * This transaction's own buffered events (PRUNE events of the partitions
	 * dropped so far) refer to texts too: written now, they are seen below.
	 */
	audit_flush_events();
	CommandCounterIncrement();

	rel = table_open(relid, RowExclusiveLock);
	nest = audit_spi_connect();
	/* the ids still referred to, distinct (few), then the texts without one */
	plan = SPI_prepare("WITH live AS MATERIALIZED ("
					   "  SELECT e.statement_id FROM audit.event e WHERE e.statement_id IS NOT NULL"
					   "  UNION"
					   "  SELECT r.statement_id FROM audit.restored_event r WHERE r.statement_id IS NOT NULL)"
					   " SELECT s.ctid, s.xmin FROM audit.statement s"
					   " WHERE NOT EXISTS (SELECT 1 FROM live l"
					   "                    WHERE l.statement_id OPERATOR(pg_catalog.=) s.statement_id)"
					   "   AND s.first_seen OPERATOR(pg_catalog.>=)"
					   "       coalesce((SELECT pg_catalog.max(a.range_to) FROM audit.archives a"
					   "                  WHERE NOT a.statements_included),"
					   "                '-infinity'::pg_catalog.timestamptz)",
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the statement prune query: %s",
			 SPI_result_code_string(SPI_result));
	/* not read-only: a snapshot taken now, after the lock */
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, false);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			ItemPointer tid = (ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[i],
																		  SPI_tuptable->tupdesc, 1, &isnull));

			TransactionId xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[i],
																	 SPI_tuptable->tupdesc, 2, &isnull));

			/*
			 * A text this transaction stored (the text of the statement that
			 * runs audit.prune(), whose last PRUNE event comes after this)
			 * is about to be referred to by it.
			 */
			if (isnull || TransactionIdIsCurrentTransactionId(xmin))
				continue;
			simple_table_tuple_delete(rel, tid, GetActiveSnapshot());
			removed++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	audit_spi_finish(nest);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	/* this backend's own cache: the rest of this transaction stores again */
	if (removed > 0)
		audit_statement_forget_cache();
	PG_RETURN_INT64(removed);
}

/*
 * audit.lock_statements() -> boolean: audit.prune() takes ShareLock on
 * audit.statement before it drops a partition, so that its locks come in
 * the order the writers take theirs (the statement lock at a transaction's
 * first statement id, the event partitions at the flush after it): taken
 * after the drops, it made a deadlock with a writer that had its statement
 * lock and waited for the partition lock prune held (found by the isolation
 * test prune_race).  Returns whether texts will be pruned (see
 * audit_prune_statements): false takes no lock.
 */
PG_FUNCTION_INFO_V1(audit_lock_statements);

Datum
audit_lock_statements(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_namespace_oid("audit", false);
	Oid			relid = get_relname_relid("statement", nsp);

	if (!audit_in_prune())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit.lock_statements() may only be called by audit.prune()")));
	if (!OidIsValid(relid) || !audit_queue_available() || IsolationUsesXactSnapshot())
		PG_RETURN_BOOL(false);
	LockRelationOid(relid, ShareLock);
	audit_statement_generation_bump();
	PG_RETURN_BOOL(true);
}
