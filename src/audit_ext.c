/*-------------------------------------------------------------------------
 *
 * audit_ext.c
 *		Module entry point: GUCs, executor and utility hooks, transaction
 *		callbacks.
 *
 * The hooks exist only to give the event writer flush points: buffered
 * events are written when a statement finishes, so that they are visible to
 * the next statement of the transaction.  Correctness never depends on the
 * hooks: the pre-commit callback writes whatever is still buffered, so the
 * capture path also works when the library is loaded on first use instead
 * of through shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/varlena.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "audit_ext.h"

PG_MODULE_MAGIC;

/* fmgr.h declares _PG_init only from PostgreSQL 16 on. */
void		_PG_init(void);

char	   *audit_actor = NULL;
char	   *audit_secret_setting_names = NULL;
bool		audit_require_actor = false;
bool		audit_log_unchanged_updates = false;
bool		audit_log_statement_text = true;
int			audit_max_statement_length = 65536;
int			audit_export_threshold = 1000;
int			audit_statement_literals = AUDIT_LITERALS_REDACT;
int			audit_flush_fault = AUDIT_FLUSH_FAULT_OFF;

static const struct config_enum_entry statement_literals_options[] = {
	{"redact", AUDIT_LITERALS_REDACT, false},
	{"keep", AUDIT_LITERALS_KEEP, false},
	{NULL, 0, false}
};

static const struct config_enum_entry flush_fault_options[] = {
	{"off", AUDIT_FLUSH_FAULT_OFF, false},
	{"cancel_leaf_indexes", AUDIT_FLUSH_FAULT_CANCEL_LEAF_INDEXES, false},
	{NULL, 0, false}
};

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void audit_ExecutorFinish(QueryDesc *queryDesc);
static void audit_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								 bool readOnlyTree,
								 ProcessUtilityContext context,
								 ParamListInfo params,
								 QueryEnvironment *queryEnv,
								 DestReceiver *dest, QueryCompletion *qc);
static void next_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree,
								ProcessUtilityContext context,
								ParamListInfo params,
								QueryEnvironment *queryEnv,
								DestReceiver *dest, QueryCompletion *qc);
static void follow_column_changes(Node *stmt);
static void audit_xact_callback(XactEvent event, void *arg);
static void audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);
static void audit_relcache_callback(Datum arg, Oid relid);
static void audit_namespace_callback(Datum arg, int cacheid, uint32 hashvalue);

/*
 * audit_ext.actor is a key column of an index of every event partition
 * ((actor, id)).  A value longer than a btree entry may be (about 2.7 kB)
 * made every audited write of the session fail with "index row size
 * exceeds btree maximum" (found by fuzzing, docs/testing.md): refuse it
 * when it is set instead.
 */
#define AUDIT_ACTOR_MAX_LEN 1024

/*
 * The trust model of audit_ext.actor (docs/guide.md, "Who may name the
 * actor"): the application's role is trusted to name its end user.
 *  - A blank actor ("  ") names nobody: refused.
 *  - audit_ext.actor_roles, when set, lists the roles that may name an actor
 *    other than themselves; others may only set their own role name.
 *  - An actor replaced by another within one session, by a role not listed
 *    in audit_ext.actor_roles, is recorded (auth, ACTOR CHANGE, through the
 *    queue): list the pooler's or application's role there to trust it.
 *  - An actor that comes from ALTER ROLE/DATABASE ... SET (or the
 *    configuration file) is a default, not a person: it does not satisfy
 *    audit_ext.require_actor (capture.c asks audit_actor_from_session()).
 */
char	   *audit_actor_roles = NULL;
static GucSource actor_source = PGC_S_DEFAULT;
static char last_actor[AUDIT_ACTOR_MAX_LEN + 1];

static bool
role_listed(const char *list, Oid role)
{
	List	   *names;
	ListCell   *lc;
	char	   *copy;
	bool		found = false;

	if (list == NULL || list[0] == '\0' || !IsTransactionState())
		return false;
	copy = pstrdup(list);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
	{
		Oid			r = get_role_oid((char *) lfirst(lc), true);

		if (OidIsValid(r) && is_member_of_role(role, r))
		{
			found = true;
			break;
		}
	}
	list_free(names);
	pfree(copy);
	return found;
}

static bool
audit_check_actor(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	bool		blank = v != NULL && v[0] != '\0';

	if (v != NULL && strlen(v) > AUDIT_ACTOR_MAX_LEN)
	{
		GUC_check_errdetail("audit_ext.actor is at most %d bytes long.",
							AUDIT_ACTOR_MAX_LEN);
		return false;
	}
	for (const char *p = v; blank && p && *p; p++)
		if (!isspace((unsigned char) *p))
			blank = false;
	if (blank)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("audit_ext.actor must name someone: a value of blanks names nobody.");
		GUC_check_errhint("Set it to the application user's name, or to '' for none.");
		return false;
	}
	if (v != NULL && v[0] != '\0' && source >= PGC_S_CLIENT && source != PGC_S_TEST &&
		IsTransactionState() && audit_actor_roles != NULL && audit_actor_roles[0] != '\0')
	{
		Oid			role = GetUserId();
		char	   *own = GetUserNameFromId(role, true);

		if ((own == NULL || strcmp(own, v) != 0) && !role_listed(audit_actor_roles, role))
		{
			GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
			GUC_check_errdetail("Only members of the roles in audit_ext.actor_roles may name an actor other than themselves.");
			GUC_check_errhint("Ask an administrator to add the application's role to audit_ext.actor_roles.");
			return false;
		}
	}
	/* the route the value came by, for audit_actor_from_session() */
#if PG_VERSION_NUM >= 160000
	*extra = guc_malloc(LOG, sizeof(GucSource));
#else
	*extra = malloc(sizeof(GucSource));	/* 15 frees extras with free() */
#endif
	if (*extra == NULL)
		return false;
	*(GucSource *) *extra = source;

	/* a session's actor replaced by another, by an untrusted role */
	if (v != NULL && v[0] != '\0' && source != PGC_S_TEST && source != PGC_S_DEFAULT)
	{
		if (last_actor[0] != '\0' && strcmp(last_actor, v) != 0 &&
			!role_listed(audit_actor_roles, GetUserId()))
			audit_queue_actor_change(last_actor, v);
		strlcpy(last_actor, v, sizeof(last_actor));
	}
	return true;
}

static void
audit_assign_actor(const char *newval, void *extra)
{
	actor_source = extra ? *(GucSource *) extra : PGC_S_DEFAULT;
}

/* Was the actor set by the session (SET, set_config, connection options)? */
bool
audit_actor_from_session(void)
{
	return actor_source >= PGC_S_CLIENT;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("audit_ext.actor",
							   "Application-level user recorded as the actor of audit events.",
							   "Set it per transaction with SET LOCAL so that it works through connection poolers. "
							   "When empty, the database user is recorded.",
							   &audit_actor,
							   "",
							   PGC_USERSET,
							   0,
							   audit_check_actor, audit_assign_actor, NULL);

	DefineCustomStringVariable("audit_ext.actor_roles",
							   "Roles allowed to set audit_ext.actor to someone other than themselves; empty: every role.",
							   "A role not listed may only name itself; changes of the actor within a session by a role not listed are recorded (auth, ACTOR CHANGE).",
							   &audit_actor_roles,
							   "",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("audit_ext.require_actor",
							 "Refuse writes to audited tables when audit_ext.actor is not set.",
							 "Set it per database or role (ALTER DATABASE/ROLE ... SET) to require that every change is attributed to a person.",
							 &audit_require_actor,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("audit_ext.log_unchanged_updates",
							 "Record UPDATEs that change no audited column.",
							 NULL,
							 &audit_log_unchanged_updates,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("audit_ext.log_statement_text",
							 "Store the SQL text of the statements that changed audited tables.",
							 "The text is stored once per distinct statement in audit.statement.",
							 &audit_log_statement_text,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("audit_ext.statement_literals",
							 "Whether literals in stored statement texts are kept or replaced by \"?\".",
							 "redact (the default) keeps excluded and masked values, passwords and other secrets written as literals out of audit.statement.",
							 &audit_statement_literals,
							 AUDIT_LITERALS_REDACT,
							 statement_literals_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("audit_ext.log_ddl",
							 "Record DDL statements (class ddl).",
							 "Privilege changes and changes to auditing itself (audit.enable/disable; an audit trigger disabled, enabled, made replica only or dropped; ALTER COLUMN TYPE, DETACH PARTITION, inheritance and subscriptions involving an audited table; session_replication_role = replica) are recorded regardless.",
							 &audit_log_ddl,
							 true,
							 PGC_SUSET,
							 0,
							 audit_check_log_ddl, NULL, NULL);

	DefineCustomStringVariable("audit_ext.secret_setting_names",
							   "Settings whose names contain one of these (comma-separated, any case) hold secrets.",
							   "Their values are stored as [redacted] in event details and the statements that set them "
							   "(ALTER ROLE/DATABASE ... SET, ALTER SYSTEM) have their literals redacted whatever audit_ext.statement_literals says.",
							   &audit_secret_setting_names,
							   "password,passwd,pwd,secret,token,key,credential,conninfo,dsn",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("audit_ext.statement_texts_burst",
							"New statement texts a session may store at once before audit_ext.statement_texts_per_second applies.",
							"Beyond the limit a session's events refer to one placeholder text, and a system/STATEMENT_TEXT_LIMIT event records it: any role can make distinct texts at will.",
							&audit_statement_texts_burst,
							2000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("audit_ext.statement_texts_per_second",
							"New statement texts a session may store per second, after its burst.",
							NULL,
							&audit_statement_texts_per_second,
							100, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("audit_ext.bulk_events_burst",
							"Refused statements and reads a session may queue at once before audit_ext.bulk_events_per_second applies.",
							"Beyond the limit they are dropped and counted per class (system/QUEUE_OVERFLOW); runs of identical ones are coalesced first.",
							&audit_bulk_events_burst,
							2000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("audit_ext.bulk_events_per_second",
							"Refused statements and reads a session may queue per second, after its burst.",
							NULL,
							&audit_bulk_events_per_second,
							500, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("audit_ext.max_statement_length",
							"Longest statement text stored, in bytes; longer texts are cut.",
							NULL,
							&audit_max_statement_length,
							65536,
							64,
							MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("audit_ext.export_threshold",
							"Rows read by one statement from which a read counts as an export.",
							"Used by audit.user_activity() to count exports among read events.",
							&audit_export_threshold,
							1000,
							1,
							INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	/*
	 * Fault injection for test/e2e/flush_errors.sh: a query cancel arrives
	 * at the moment the event writer opens the indexes of the leaf it writes
	 * (see flush_fault_arm() in event_writer.c).  Superuser only, off by
	 * default, hidden from SHOW ALL and the sample file; an enum so that
	 * other points can be added.
	 */
	DefineCustomEnumVariable("audit_ext.flush_fault",
							 "Testing only: a query cancel arrives while the event writer opens the indexes of a leaf it opened directly (cancel_leaf_indexes); off = never.",
							 NULL,
							 &audit_flush_fault,
							 AUDIT_FLUSH_FAULT_OFF,
							 flush_fault_options,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							 NULL, NULL, NULL);

	/*
	 * Security events need shared memory, the worker and the authentication
	 * hooks: all only when loaded through shared_preload_libraries.  Their
	 * PGC_POSTMASTER settings can only be defined then, too.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("audit_ext.queue_size",
								"Entries of the shared-memory queue of security events.",
								"Events that find the queue full are counted as dropped and reported by one system/QUEUE_OVERFLOW event.",
								&audit_queue_size,
								10000,
								16,
								1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

		DefineCustomStringVariable("audit_ext.database",
								   "Database the audit_ext background worker writes security events into.",
								   "The extension must be installed in that database.",
								   &audit_worker_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

		audit_queue_install_hooks();
		audit_worker_register();
		audit_auth_hooks_install();

		/* -- preload-only setup of the integrity chain (chain.c) -- */
		audit_chain_install_hooks();
		DefineCustomIntVariable("audit_ext.chain_checkpoint_interval",
								"Seconds between two records of the hash-chain heads by the worker.",
								"A checkpoint copies the head of every chain that moved into audit.chain_checkpoint and the server log, so that deleting the newest events is detected by audit.verify(). 0 disables.",
								&audit_chain_checkpoint_interval,
								60,
								0,
								86400,
								PGC_SIGHUP,
								GUC_UNIT_S,
								NULL, NULL, NULL);

		/* -- preload-only setup of retention and archive (retention) -- */
		audit_maintenance_register();

		/* -- preload-only setup of alerts and read auditing (alerts) -- */
		audit_alerts_define_gucs();

		/* -- preload-only: capture => 'wal' (wal_capture.c) -- */
		audit_wal_register();
	}

	/* before the prefix is reserved: values from postgresql.conf stay */
	audit_retention_define_gucs();
	audit_reports_define_gucs();

	/* 1.6: the application's end-user context (app_context.c) */
	DefineCustomIntVariable("audit_ext.max_context_bytes",
							"Largest application context (audit.set_context), in bytes of JSON text.",
							"Every event captured while a context is set carries it; queued events carry at most 1024 bytes.",
							&audit_max_context_bytes,
							1024,
							64,
							AUDIT_QUEUE_CONTEXT_LEN - 1,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomStringVariable("audit_ext.context_index_keys",
							   "Context keys that new event partitions index (searches by them, newest first).",
							   "A comma-separated list of client_ip, session_id, user_agent, user_role, tenant, request_id; the first event of each context run (events of one writer whose contexts agree in session_id, tenant, client_ip and the indexed keys) enters one btree per indexed key; '' for none. Partitions made from then on follow it.",
							   &audit_context_index_keys,
							   "session_id, tenant",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   audit_check_context_index_keys, audit_assign_context_index_keys, NULL);
	DefineCustomStringVariable("audit_ext.context",
							   "The application's end-user context, as JSON: set it with audit.set_context().",
							   "Recorded as audit.event.context of every event captured while it is set.",
							   &audit_context_text,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   audit_check_context, audit_assign_context, NULL);

	MarkGUCPrefixReserved("audit_ext");

	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = audit_ExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = audit_ProcessUtility;
	audit_ddl_install_hooks();
	audit_denied_install_hooks();

	/* -- always: integrity chain (chain.c) -- */

	/* -- always: retention and archive (retention) -- */
	audit_retention_install_hooks();

	/* -- always: alerts and read auditing (alerts) -- */
	audit_read_install_hooks();

	RegisterXactCallback(audit_xact_callback, NULL);
	RegisterSubXactCallback(audit_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
	/*
	 * A renamed schema does not invalidate the relcache entries of its
	 * tables, but the capture cache holds the schema's name: sessions that
	 * started before ALTER SCHEMA ... RENAME kept recording the old name.
	 */
	CacheRegisterSyscacheCallback(NAMESPACEOID, audit_namespace_callback, (Datum) 0);
}

/*
 * After the statement's AFTER triggers have fired (in standard
 * ExecutorFinish), write what they captured.
 */
static void
audit_ExecutorFinish(QueryDesc *queryDesc)
{
	if (prev_ExecutorFinish)
		prev_ExecutorFinish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);

	audit_flush_events();
	audit_check_replication_role("set_config()", false);
}

/*
 * Utility statements fire triggers outside the executor (COPY, TRUNCATE):
 * flush after them.  Also flush before them, so DDL never runs with events
 * of earlier statements still unwritten.  A statement that completed is
 * recorded as a privilege or ddl event (ddl_capture.c); a COPY or TRUNCATE
 * of an audited table refused for lack of privilege is queued as a failure
 * (denied.c).
 */
static void
audit_ProcessUtility_inner(PlannedStmt *pstmt, const char *queryString,
						   bool readOnlyTree, ProcessUtilityContext context,
						   ParamListInfo params, QueryEnvironment *queryEnv,
						   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		xact_control = IsA(stmt, TransactionStmt);
	char	   *volatile pre_schema = NULL;
	void	   *denied = NULL;

	if (!xact_control)
	{
		audit_writer_finish();
		pre_schema = audit_ddl_prepare(stmt);
		denied = audit_denied_prepare_utility(stmt);
	}

	if (denied == NULL)
		next_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
	{
		/* COPY or TRUNCATE of an audited table the user may be refused */
		PG_TRY();
		{
			next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		}
		PG_CATCH();
		{
			audit_denied_report_utility(denied);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}

	if (!xact_control)
	{
		audit_ddl_capture(pstmt, (int) context, pre_schema);
		audit_flush_events();
		follow_column_changes(stmt);
	}
}

static void
audit_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	/* SET session_replication_role has its own event (ddl_capture.c) */
	if (IsA(stmt, VariableSetStmt) && ((VariableSetStmt *) stmt)->name != NULL &&
		strcmp(((VariableSetStmt *) stmt)->name, "session_replication_role") == 0)
	{
		audit_replication_role_set_running(true);
		PG_TRY();
		{
			audit_ProcessUtility_inner(pstmt, queryString, readOnlyTree, context,
									   params, queryEnv, dest, qc);
		}
		PG_FINALLY();
		{
			audit_replication_role_set_running(false);
		}
		PG_END_TRY();
		audit_check_replication_role(NULL, true);
		return;
	}
	audit_ProcessUtility_inner(pstmt, queryString, readOnlyTree, context,
							   params, queryEnv, dest, qc);
	audit_check_replication_role("set_config()", false);
}

static void
next_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * After RENAME COLUMN or ALTER TABLE ... DROP COLUMN on an audited table,
 * bring its excluded and masked column names up to date, so a renamed
 * column stays hidden (audit.sync_column_options).  Runs as the owner of the
 * audit schema: the user altering the table need not be an audit role.
 */
static void
follow_column_changes(Node *stmt)
{
	RangeVar   *rv = NULL;
	const char *old_name = NULL;
	const char *new_name = NULL;
	Oid			relid;
	Oid			nsp;
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (IsA(stmt, RenameStmt) &&
		((RenameStmt *) stmt)->renameType == OBJECT_COLUMN &&
		((RenameStmt *) stmt)->relation != NULL)
	{
		rv = ((RenameStmt *) stmt)->relation;
		old_name = ((RenameStmt *) stmt)->subname;
		new_name = ((RenameStmt *) stmt)->newname;
	}
	else if (IsA(stmt, AlterTableStmt))
	{
		ListCell   *lc;

		foreach(lc, ((AlterTableStmt *) stmt)->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			if (cmd->subtype == AT_DropColumn)
				rv = ((AlterTableStmt *) stmt)->relation;
		}
	}
	if (rv == NULL || !IsTransactionState())
		return;

	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid) || !audit_has_own_trigger(relid))
		return;
	nsp = get_namespace_oid("audit", true);
	if (!OidIsValid(nsp))
		return;
	{
		HeapTuple	tp = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));

		if (!HeapTupleIsValid(tp))
			return;
		owner = ((Form_pg_namespace) GETSTRUCT(tp))->nspowner;
		ReleaseSysCache(tp);
	}

	values[0] = ObjectIdGetDatum(relid);
	values[1] = old_name ? CStringGetTextDatum(old_name) : (Datum) 0;
	values[2] = new_name ? CStringGetTextDatum(new_name) : (Datum) 0;
	if (!old_name)
		nulls[1] = nulls[2] = 'n';

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Oid			types[3] = {OIDOID, TEXTOID, TEXTOID};
		int			nest = audit_spi_connect();

		if (SPI_execute_with_args("SELECT audit.sync_column_options($1::regclass, $2, $3)",
								  3, types, values, nulls, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not update the audit options of relation %u", relid);
		audit_spi_finish(nest);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

static void
audit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			audit_writer_finish();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (event == XACT_EVENT_PREPARE)
				audit_context_runs_reset();	/* it may yet roll back */
			audit_writer_xact_callback(0);
			audit_chain_xact_end(event == XACT_EVENT_COMMIT ? 0 : 2);
			audit_statement_xact_end(false, true);
			audit_capture_xact_end();
			audit_ddl_watch_reset();
			if (event == XACT_EVENT_COMMIT)
				audit_auth_xact_commit();	/* a pending LOGIN */
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			audit_context_runs_reset();
			audit_writer_xact_callback(1);
			audit_chain_xact_end(1);
			audit_statement_xact_end(true, true);
			audit_capture_xact_end();
			audit_ddl_xact_end();
			break;
		default:
			break;
	}
}

static void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	switch (event)
	{
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			/* write this subtransaction's events under its own xid */
			audit_flush_events();
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			audit_writer_subxact_abort(mySubid);
			audit_context_runs_reset();
			audit_chain_subxact_abort(mySubid);
			audit_statement_xact_end(true, false);
			audit_wal_subxact_abort(mySubid);
			break;
		default:
			break;
	}
}

static void
audit_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	audit_capture_invalidate(InvalidOid);
}

static void
audit_relcache_callback(Datum arg, Oid relid)
{
	audit_capture_invalidate(relid);
	audit_writer_invalidate(relid);
	audit_risk_invalidate(relid);
}
