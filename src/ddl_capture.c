/*-------------------------------------------------------------------------
 *
 * ddl_capture.c
 *		privilege and ddl events from utility statements.
 *
 * The ProcessUtility hook (audit_ext.c) calls audit_ddl_capture() after a
 * utility statement completed without error.  The event is written like a
 * data event, with the statement's (sub)transaction: if the statement rolls
 * back, so does its event -- the change did not happen.
 *
 *	privilege: GRANT/REVOKE, GRANT/REVOKE ROLE, CREATE/ALTER/DROP ROLE,
 *			   ALTER ROLE ... SET, ALTER DEFAULT PRIVILEGES
 *	ddl:	   every other utility statement that changes database objects,
 *			   action = its command tag (audit_ext.log_ddl turns them off),
 *			   plus the statements that change auditing itself (always):
 *			   any change to an audit trigger, ALTER COLUMN TYPE, DETACH
 *			   PARTITION, inheritance and subscriptions involving an audited
 *			   table (section "Capture cannot be switched off quietly"), SET
 *			   session_replication_role = replica, audit.enable/disable
 *			   (audit.log_config_event).
 *
 * Ddl events only in a database where some table is audited (see
 * any_table_audited) or whose statement dropped an audit trigger;
 * privilege events always.
 *
 * Utility statements run by audit_ext's own functions (audit.enable creates
 * triggers, audit.create_partitions tables, ...) are not recorded: every
 * function of schema audit that runs DDL has a SET clause, so PostgreSQL
 * calls it through fmgr_security_definer, which calls fmgr_hook on entry,
 * exit and abort; our hook counts how deeply we are inside such functions.
 * Nothing the caller controls (GUCs, search_path, role) can fake the depth.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_trigger.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "storage/proc.h"
#include "tcop/cmdtag.h"
#include "tcop/deparse_utility.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit_ext.h"

/* this backend's local transaction id */
#if PG_VERSION_NUM >= 170000
#define AUDIT_MY_LXID (MyProc->vxid.lxid)
#else
#define AUDIT_MY_LXID (MyProc->lxid)
#endif

bool		audit_log_ddl = true;

static int	audit_function_depth = 0;
static int	audit_prune_depth = 0;	/* inside audit.prune() */

static bool any_table_audited(void);
static fmgr_hook_type prev_fmgr_hook = NULL;

static bool set_stmt_secret(VariableSetStmt *s);

/* ----------------------------------------------------------------
 * Suppression inside audit_ext's own functions
 * ----------------------------------------------------------------
 */
static void
audit_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, arg);

	switch (event)
	{
		case FHET_START:
			{
				Oid			nsp = get_func_namespace(flinfo->fn_oid);
				int			kind = 0;

				/*
				 * Only the extension's own functions count, not any function
				 * a superuser puts into schema audit: what they are let do
				 * (DDL not recorded as such) must not be reachable by code
				 * written later.  Replacing a member's body is DDL, recorded.
				 */
				if (OidIsValid(nsp) && nsp == get_namespace_oid("audit", true))
				{
					Oid			ext = get_extension_oid("audit_ext", true);

					if (OidIsValid(ext) &&
						getExtensionOfObject(ProcedureRelationId, flinfo->fn_oid) == ext)
					{
						char	   *name = get_func_name(flinfo->fn_oid);

						kind = (name && strcmp(name, "prune") == 0) ? 2 : 1;
					}
				}
				/*
				 * Its SET clause is applied: replica mode stops the audit
				 * triggers.  (Not ours: our replica-only triggers run in
				 * replica mode when a session SETs it, which has its event.)
				 */
				if (kind == 0)
					audit_check_replication_role("a function's SET clause", false);
				/* remember for END/ABORT: the catalogs may change meanwhile */
				*arg = Int32GetDatum(kind);
				if (kind > 0)
					audit_function_depth++;
				if (kind == 2)
					audit_prune_depth++;
				break;
			}
		case FHET_END:
		case FHET_ABORT:
			if (DatumGetInt32(*arg) > 0 && audit_function_depth > 0)
				audit_function_depth--;
			if (DatumGetInt32(*arg) == 2 && audit_prune_depth > 0)
				audit_prune_depth--;
			break;
	}
}

void
audit_ddl_install_hooks(void)
{
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = audit_fmgr_hook;
}

/*
 * DROP statements and the audited tables that existed before them (see
 * audited_tables_before): a stack, one entry per utility statement in
 * progress, so that a DROP nested in another statement finds its own.
 */
typedef struct DropWatch
{
	Node	   *stmt;
	List	   *relids;			/* audited tables before the statement */
	List	   *schemas;		/* their schemas */
	List	   *tables;			/* and names */
} DropWatch;

/* A watch and everything it holds (all in TopMemoryContext). */
static void
drop_watch_free(DropWatch *w)
{
	list_free(w->relids);
	list_free_deep(w->schemas);
	list_free_deep(w->tables);
	pfree(w);
}

static List *drop_watches = NIL;	/* in TopMemoryContext */

static void drop_watch_prepare(Node *stmt);
static DropWatch *drop_watch_take(Node *stmt);
static bool drop_watch_capture(DropWatch *w, Node *stmt);

/* The end of a transaction that committed: no statement is in progress. */
void
audit_ddl_watch_reset(void)
{
	drop_watches = NIL;
}

void
audit_ddl_xact_end(void)
{
	audit_function_depth = 0;
	audit_prune_depth = 0;
	/* an error left them behind: their statements are gone */
	drop_watches = NIL;
}

/* Inside one of the extension's own functions (its DDL is not recorded as such)? */
bool
audit_in_own_function(void)
{
	return audit_function_depth > 0;
}

/* Inside audit.prune(), the one path that may drop events (retention.c)? */
bool
audit_in_prune(void)
{
	return audit_prune_depth > 0;
}

/* ----------------------------------------------------------------
 * jsonb detail
 * ----------------------------------------------------------------
 */
static void
push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	pushJsonbValue(st, tok, &v);
}

static void
kv_string(JsonbParseState **st, const char *key, const char *val)
{
	push_string(st, WJB_KEY, key);
	push_string(st, WJB_VALUE, val);
}

static void
kv_bool(JsonbParseState **st, const char *key, bool val)
{
	JsonbValue	v;

	push_string(st, WJB_KEY, key);
	v.type = jbvBool;
	v.val.boolean = val;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
kv_int(JsonbParseState **st, const char *key, int val)
{
	JsonbValue	v;

	push_string(st, WJB_KEY, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(val);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* key: [names...] */
static void
kv_strings(JsonbParseState **st, const char *key, List *names)
{
	ListCell   *lc;

	push_string(st, WJB_KEY, key);
	pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, names)
		push_string(st, WJB_ELEM, (const char *) lfirst(lc));
	pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

static Datum
finish_object(JsonbParseState **st)
{
	JsonbValue *res = pushJsonbValue(st, WJB_END_OBJECT, NULL);

	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* ----------------------------------------------------------------
 * Names from parse trees
 * ----------------------------------------------------------------
 */
static char *
rangevar_name(RangeVar *rv)
{
	if (rv->schemaname)
		return psprintf("%s.%s", rv->schemaname, rv->relname);
	return pstrdup(rv->relname);
}

static char *node_name(Node *n);

/*
 * Names of a list joined by sep.  Unlike NameListToString, any node the
 * parser puts in such lists (TypeName of a cast, NULL for NONE) is fine:
 * this runs after the statement succeeded and must not fail it.
 */
static char *
join_names(List *names, const char *sep)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
	{
		char	   *name = node_name(lfirst(lc));

		if (lc != list_head(names))
			appendStringInfoString(&buf, sep);
		appendStringInfoString(&buf, name ? name : "NONE");
	}
	return buf.data;
}

/* The name of an object as the parser gives it, or NULL. */
static char *
node_name(Node *n)
{
	if (n == NULL)
		return NULL;
	switch (nodeTag(n))
	{
		case T_RangeVar:
			return rangevar_name((RangeVar *) n);
		case T_String:
			return pstrdup(strVal(n));
		case T_List:
			return join_names((List *) n, ".");
		case T_TypeName:
			return TypeNameToString((TypeName *) n);
		case T_ObjectWithArgs:
			{
				ObjectWithArgs *owa = (ObjectWithArgs *) n;

				if (owa->args_unspecified)
					return join_names(owa->objname, ".");
				return psprintf("%s(%s)", join_names(owa->objname, "."),
								join_names(owa->objargs, ", "));
			}
		case T_RoleSpec:
			{
				RoleSpec   *r = (RoleSpec *) n;

				switch (r->roletype)
				{
					case ROLESPEC_CSTRING:
						return pstrdup(r->rolename);
					case ROLESPEC_PUBLIC:
						return pstrdup("PUBLIC");
					case ROLESPEC_SESSION_USER:
						return GetUserNameFromId(GetSessionUserId(), true);
					default:
						return GetUserNameFromId(GetUserId(), true);
				}
			}
		case T_AccessPriv:
			{
				AccessPriv *p = (AccessPriv *) n;
				char	   *name = p->priv_name ? p->priv_name : "all";

				if (p->cols != NIL)
				{
					StringInfoData buf;
					ListCell   *lc;

					initStringInfo(&buf);
					appendStringInfo(&buf, "%s (", name);
					foreach(lc, p->cols)
						appendStringInfo(&buf, "%s%s",
										 lc == list_head(p->cols) ? "" : ", ",
										 strVal(lfirst(lc)));
					appendStringInfoChar(&buf, ')');
					return buf.data;
				}
				return pstrdup(name);
			}
		default:
			return NULL;
	}
}

static List *
node_names(List *nodes)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, nodes)
	{
		char	   *name = node_name(lfirst(lc));

		if (name)
			names = lappend(names, name);
	}
	return names;
}

static const char *
object_type_name(ObjectType t)
{
	switch (t)
	{
		case OBJECT_ACCESS_METHOD:	return "access method";
		case OBJECT_AGGREGATE:		return "aggregate";
		case OBJECT_CAST:			return "cast";
		case OBJECT_COLUMN:			return "column";
		case OBJECT_COLLATION:		return "collation";
		case OBJECT_CONVERSION:		return "conversion";
		case OBJECT_DATABASE:		return "database";
		case OBJECT_DOMAIN:			return "domain";
		case OBJECT_DOMCONSTRAINT:	return "domain constraint";
		case OBJECT_EVENT_TRIGGER:	return "event trigger";
		case OBJECT_EXTENSION:		return "extension";
		case OBJECT_FDW:			return "foreign-data wrapper";
		case OBJECT_FOREIGN_SERVER: return "server";
		case OBJECT_FOREIGN_TABLE:	return "foreign table";
		case OBJECT_FUNCTION:		return "function";
		case OBJECT_INDEX:			return "index";
		case OBJECT_LANGUAGE:		return "language";
		case OBJECT_LARGEOBJECT:	return "large object";
		case OBJECT_MATVIEW:		return "materialized view";
		case OBJECT_OPCLASS:		return "operator class";
		case OBJECT_OPERATOR:		return "operator";
		case OBJECT_OPFAMILY:		return "operator family";
		case OBJECT_POLICY:			return "policy";
		case OBJECT_PROCEDURE:		return "procedure";
		case OBJECT_PUBLICATION:	return "publication";
		case OBJECT_ROLE:			return "role";
		case OBJECT_ROUTINE:		return "routine";
		case OBJECT_RULE:			return "rule";
		case OBJECT_SCHEMA:			return "schema";
		case OBJECT_SEQUENCE:		return "sequence";
		case OBJECT_SUBSCRIPTION:	return "subscription";
		case OBJECT_STATISTIC_EXT:	return "statistics";
		case OBJECT_TABCONSTRAINT:	return "table constraint";
		case OBJECT_TABLE:			return "table";
		case OBJECT_TABLESPACE:		return "tablespace";
		case OBJECT_TRIGGER:		return "trigger";
		case OBJECT_TSCONFIGURATION: return "text search configuration";
		case OBJECT_TSDICTIONARY:	return "text search dictionary";
		case OBJECT_TSPARSER:		return "text search parser";
		case OBJECT_TSTEMPLATE:		return "text search template";
		case OBJECT_TYPE:			return "type";
		case OBJECT_VIEW:			return "view";
		default:					return NULL;
	}
}

/* "CREATE TABLE" -> "table": the object type when the tree has none. */
static char *
object_type_from_tag(const char *tag)
{
	const char *sp = strchr(tag, ' ');
	char	   *s;

	if (sp == NULL)
		return NULL;
	s = pstrdup(sp + 1);
	for (char *p = s; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return s;
}

/* ----------------------------------------------------------------
 * Emitting
 * ----------------------------------------------------------------
 */
static void
emit_event(const char *class_name, const char *action,
		   const char *schema_name, const char *table_name,
		   Datum detail, bool redact_statement)
{
	AuditEventValues ev;

	audit_event_init(&ev, class_name, action);
	audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE |
							 (redact_statement ? AUDIT_CTX_REDACT_STATEMENT : 0));
	if (schema_name)
	{
		ev.values[AC_SCHEMA_NAME] = CStringGetTextDatum(schema_name);
		ev.nulls[AC_SCHEMA_NAME] = false;
	}
	if (table_name)
	{
		ev.values[AC_TABLE_NAME] = CStringGetTextDatum(table_name);
		ev.nulls[AC_TABLE_NAME] = false;
	}
	if (detail != (Datum) 0)
	{
		ev.values[AC_DETAIL] = detail;
		ev.nulls[AC_DETAIL] = false;
	}
	audit_event_emit(&ev);
}

/* Role options, never with the password itself. */
static void
push_role_options(JsonbParseState **st, List *options, int action)
{
	ListCell   *lc;

	push_string(st, WJB_KEY, "options");
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, options)
	{
		DefElem    *d = lfirst_node(DefElem, lc);
		const char *key = d->defname;

		if (strcmp(key, "canlogin") == 0)
			key = "login";
		else if (strcmp(key, "isreplication") == 0)
			key = "replication";
		else if (strcmp(key, "connectionlimit") == 0)
			key = "connection_limit";
		else if (strcmp(key, "validUntil") == 0)
			key = "valid_until";
		else if (strcmp(key, "addroleto") == 0)
			key = "in_role";
		else if (strcmp(key, "rolemembers") == 0)
			key = action == 0 ? "role" : action > 0 ? "add_members" : "drop_members";
		else if (strcmp(key, "adminmembers") == 0)
			key = "admin";

		if (strcmp(d->defname, "password") == 0)
			kv_string(st, key, d->arg ? "[redacted]" : NULL);
		else if (d->arg == NULL)
			kv_bool(st, key, true);
		else if (IsA(d->arg, Boolean))
			kv_bool(st, key, boolVal(d->arg));
		else if (IsA(d->arg, Integer))
		{
			/* boolean options are Integer 0/1 before Boolean nodes */
			if (strcmp(key, "connection_limit") == 0 || strcmp(key, "sysid") == 0)
				kv_int(st, key, intVal(d->arg));
			else
				kv_bool(st, key, intVal(d->arg) != 0);
		}
		else if (IsA(d->arg, List))
			kv_strings(st, key, node_names((List *) d->arg));
		else
			kv_string(st, key, node_name(d->arg));
	}
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/*
 * Does granting membership in these roles hand out superuser, or the
 * built-in roles that reach the server's files and programs?  Looked up when
 * the statement has succeeded, so the names exist; the shipped
 * privilege_escalation rule matches the flags ("GRANT postgres TO x",
 * "CREATE ROLE x IN ROLE postgres", "GRANT pg_execute_server_program TO x").
 */
static void
kv_powerful_roles(JsonbParseState **st, List *names)
{
	ListCell   *lc;
	bool		super = false;
	bool		server = false;

	foreach(lc, names)
	{
		Oid			r = get_role_oid((const char *) lfirst(lc), true);

		if (!OidIsValid(r))
			continue;
		if (superuser_arg(r))
			super = true;
		if (has_privs_of_role(r, ROLE_PG_EXECUTE_SERVER_PROGRAM) ||
			has_privs_of_role(r, ROLE_PG_WRITE_SERVER_FILES) ||
			has_privs_of_role(r, ROLE_PG_READ_SERVER_FILES))
			server = true;
	}
	if (super)
		kv_bool(st, "grants_superuser", true);
	if (server)
		kv_bool(st, "grants_server_access", true);
}

static List *
option_names(List *options, const char *defname)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst_node(DefElem, lc);

		if (strcmp(d->defname, defname) == 0 && d->arg && IsA(d->arg, List))
			return node_names((List *) d->arg);
	}
	return NIL;
}

static bool
options_have_password(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst_node(DefElem, lc);

		if (strcmp(d->defname, "password") == 0)
			return true;
	}
	return false;
}

static void
push_grant(JsonbParseState **st, GrantStmt *g)
{
	const char *objtype = object_type_name(g->objtype);

	kv_string(st, "objtype", objtype ? objtype : "object");
	if (g->targtype == ACL_TARGET_ALL_IN_SCHEMA)
		kv_strings(st, "all_in_schema", node_names(g->objects));
	else if (g->objects != NIL)
		kv_strings(st, "objects", node_names(g->objects));
	if (g->privileges == NIL)
		kv_strings(st, "privileges", list_make1("all"));
	else
		kv_strings(st, "privileges", node_names(g->privileges));
	kv_strings(st, "grantees", node_names(g->grantees));
	if (g->grant_option)
		kv_bool(st, "grant_option", true);
}

/* Schema and table of a relation named in a statement (best effort). */
static bool
relation_names(RangeVar *rv, const char **schema_name, const char **table_name)
{
	Oid			relid;
	bool		temp = (rv->relpersistence == RELPERSISTENCE_TEMP);

	*table_name = rv->relname;
	*schema_name = rv->schemaname;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(relid))
	{
		Oid			nspid = get_rel_namespace(relid);
		char	   *nsp = get_namespace_name(nspid);
		char	   *rel = get_rel_name(relid);

		if (nsp && rel)
		{
			*schema_name = nsp;
			*table_name = rel;
		}
		temp |= isAnyTempNamespace(nspid);
	}
	return temp;
}

/*
 * WITH ADMIN OPTION / REVOKE ADMIN OPTION FOR.  PostgreSQL 16 replaced
 * GrantRoleStmt.admin_opt with a DefElem list (admin, inherit, set); a
 * REVOKE ... OPTION FOR carries the option with the value false.
 */
static bool
grant_role_admin_option(GrantRoleStmt *g)
{
#if PG_VERSION_NUM >= 160000
	ListCell   *lc;

	foreach(lc, g->opt)
	{
		DefElem    *d = lfirst_node(DefElem, lc);

		if (strcmp(d->defname, "admin") == 0)
			return g->is_grant ? defGetBoolean(d) : true;
	}
	return false;
#else
	return g->admin_opt;
#endif
}

/*
 * The privilege class.  Returns false if the statement is not one of them.
 */
static bool
capture_privilege(Node *stmt)
{
	JsonbParseState *st = NULL;
	const char *action;
	const char *schema_name = NULL;
	const char *table_name = NULL;
	bool		redact = false;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	switch (nodeTag(stmt))
	{
		case T_GrantStmt:
			{
				GrantStmt  *g = (GrantStmt *) stmt;

				action = g->is_grant ? "GRANT" : "REVOKE";
				push_grant(&st, g);
				if (g->targtype == ACL_TARGET_OBJECT &&
					g->objtype == OBJECT_TABLE && list_length(g->objects) == 1 &&
					IsA(linitial(g->objects), RangeVar))
					relation_names(linitial(g->objects), &schema_name, &table_name);
				break;
			}
		case T_GrantRoleStmt:
			{
				GrantRoleStmt *g = (GrantRoleStmt *) stmt;

				action = g->is_grant ? "GRANT ROLE" : "REVOKE ROLE";
				kv_strings(&st, "roles", node_names(g->granted_roles));
				kv_strings(&st, "grantees", node_names(g->grantee_roles));
				kv_bool(&st, "admin_option", grant_role_admin_option(g));
				if (g->is_grant)
					kv_powerful_roles(&st, node_names(g->granted_roles));
				break;
			}
		case T_CreateRoleStmt:
			{
				CreateRoleStmt *c = (CreateRoleStmt *) stmt;

				action = "CREATE ROLE";
				kv_string(&st, "role", c->role);
				push_role_options(&st, c->options, 0);
				kv_powerful_roles(&st, option_names(c->options, "addroleto"));
				redact = options_have_password(c->options);
				break;
			}
		case T_AlterRoleStmt:
			{
				AlterRoleStmt *a = (AlterRoleStmt *) stmt;

				action = "ALTER ROLE";
				kv_string(&st, "role", node_name((Node *) a->role));
				push_role_options(&st, a->options, a->action);
				redact = options_have_password(a->options);
				break;
			}
		case T_AlterRoleSetStmt:
			{
				AlterRoleSetStmt *a = (AlterRoleSetStmt *) stmt;
				VariableSetStmt *s = a->setstmt;

				action = "ALTER ROLE";
				kv_string(&st, "role", a->role ? node_name((Node *) a->role) : "ALL");
				if (a->database)
					kv_string(&st, "database", a->database);
				push_string(&st, WJB_KEY, "setting");
				pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
				kv_string(&st, "name", s->name ? s->name : "ALL");
				if (s->kind == VAR_SET_VALUE && set_stmt_secret(s))
				{
					kv_string(&st, "value", "[redacted]");
					redact = true;
				}
				else if (s->kind == VAR_SET_VALUE)
					kv_string(&st, "value", ExtractSetVariableArgs(s));
				else if (s->kind == VAR_SET_CURRENT)
					kv_bool(&st, "from_current", true);
				else
					kv_bool(&st, "reset", true);
				pushJsonbValue(&st, WJB_END_OBJECT, NULL);
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;

				if (r->renameType != OBJECT_ROLE)
				{
					pushJsonbValue(&st, WJB_END_OBJECT, NULL);
					return false;
				}
				action = "ALTER ROLE";
				kv_string(&st, "role", r->subname);
				kv_string(&st, "new_name", r->newname);
				break;
			}
		case T_DropOwnedStmt:
			action = "DROP OWNED";
			kv_strings(&st, "roles", node_names(((DropOwnedStmt *) stmt)->roles));
			break;
		case T_ReassignOwnedStmt:
			action = "REASSIGN OWNED";
			kv_strings(&st, "roles", node_names(((ReassignOwnedStmt *) stmt)->roles));
			kv_string(&st, "new_role", node_name((Node *) ((ReassignOwnedStmt *) stmt)->newrole));
			break;
		case T_DropRoleStmt:
			{
				DropRoleStmt *d = (DropRoleStmt *) stmt;

				action = "DROP ROLE";
				kv_strings(&st, "roles", node_names(d->roles));
				break;
			}
		case T_AlterDefaultPrivilegesStmt:
			{
				AlterDefaultPrivilegesStmt *a = (AlterDefaultPrivilegesStmt *) stmt;
				ListCell   *lc;

				action = "ALTER DEFAULT PRIVILEGES";
				kv_string(&st, "action", a->action->is_grant ? "GRANT" : "REVOKE");
				push_grant(&st, a->action);
				foreach(lc, a->options)
				{
					DefElem    *d = lfirst_node(DefElem, lc);

					if (strcmp(d->defname, "schemas") == 0)
						kv_strings(&st, "in_schemas", node_names((List *) d->arg));
					else if (strcmp(d->defname, "roles") == 0)
						kv_strings(&st, "for_roles", node_names((List *) d->arg));
				}
				break;
			}
		default:
			pushJsonbValue(&st, WJB_END_OBJECT, NULL);
			return false;
	}
	emit_event("privilege", action, schema_name, table_name,
			   finish_object(&st), redact);
	return true;
}

/* Utility statements that are not DDL: never recorded. */
static bool
is_not_ddl(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_ExplainStmt:
		case T_CopyStmt:
		case T_PrepareStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_ListenStmt:
		case T_NotifyStmt:
		case T_UnlistenStmt:
		case T_VacuumStmt:
		case T_CheckPointStmt:
		case T_LockStmt:
		case T_DiscardStmt:
		case T_FetchStmt:
		case T_ClosePortalStmt:
		case T_DeclareCursorStmt:
		case T_CallStmt:
		case T_DoStmt:
		case T_ConstraintsSetStmt:
		case T_TruncateStmt:	/* a data event, from the trigger */
		case T_ReindexStmt:
		case T_ClusterStmt:
		case T_RefreshMatViewStmt:
		case T_LoadStmt:
			return true;
		default:
			return false;
	}
}

/*
 * Does a setting's name look like it holds a secret?  Case-insensitive
 * substring match against audit_ext.secret_setting_names (a comma-separated
 * list: "app.api_key", "primary_conninfo", "my.db_password" all match the
 * default).  Their values never land in the trail: "[redacted]" in detail,
 * the statement's literals redacted whatever audit_ext.statement_literals
 * says.
 */
bool
audit_secret_setting(const char *name)
{
	const char *p;

	if (name == NULL || audit_secret_setting_names == NULL)
		return false;
	p = audit_secret_setting_names;
	while (*p)
	{
		const char *end = strchr(p, ',');
		int			len = end ? (int) (end - p) : (int) strlen(p);

		while (len > 0 && (*p == ' ' || *p == '\t'))
		{
			p++;
			len--;
		}
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > 0)
		{
			for (const char *n = name; *n; n++)
				if (pg_strncasecmp(n, p, len) == 0)
					return true;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

static bool
set_stmt_secret(VariableSetStmt *s)
{
	return s != NULL && s->name != NULL && audit_secret_setting(s->name);
}

/* Statements whose text may carry a secret besides role passwords. */
static bool
carries_secret(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_AlterSystemStmt:
			return set_stmt_secret(((AlterSystemStmt *) stmt)->setstmt);
		case T_AlterDatabaseSetStmt:
			return set_stmt_secret(((AlterDatabaseSetStmt *) stmt)->setstmt);
		case T_CreateUserMappingStmt:
		case T_AlterUserMappingStmt:
		case T_CreateSubscriptionStmt:
		case T_AlterSubscriptionStmt:
		case T_CreateForeignServerStmt:
		case T_AlterForeignServerStmt:
			return true;
		default:
			return false;
	}
}

/* ----------------------------------------------------------------
 * Capture cannot be switched off quietly (1.4)
 *
 * Every statement that stops, or bypasses, the audit triggers of an audited
 * table is recorded whatever audit_ext.log_ddl says, and even when it leaves
 * no table of the database audited:
 *	ALTER TABLE ... DISABLE TRIGGER name/ALL/USER, ENABLE REPLICA TRIGGER on
 *	an audit trigger (row or truncate, of the table or of a partition):
 *		"audit_trigger_disabled": true, "risk": "critical" (the built-in
 *		alert audit_disabled fires); ENABLE [ALWAYS] TRIGGER is recorded too
 *		("audit_trigger_enabled": true), so the trail shows where a gap ends;
 *	DROP TRIGGER of an audit trigger: the same flags, with the table;
 *	ALTER COLUMN ... TYPE: "data_rewrite": true, the columns, "using";
 *	DETACH PARTITION: "partition_detached": true, the partition and its rows;
 *	a subscription that applies changes to an audited table whose row
 *	trigger does not fire in the apply worker: one event per table.
 * Refused (55000): renaming an audit trigger, CREATE OR REPLACE TRIGGER over
 * one, ALTER TRIGGER ... DEPENDS ON EXTENSION (a later DROP EXTENSION would
 * drop it quietly).  CREATE TABLE ... INHERITS / ALTER TABLE ... INHERIT
 * an audited table: recorded, "inherits_audited" and "child_audited" (the
 * event trigger audit.on_ddl_command_end audits an ordinary child, 1.4).
 * Audit triggers are recognised by their function (audit.capture_row,
 * audit.capture_truncate), not by name.
 * ----------------------------------------------------------------
 */
typedef struct AuditTrig
{
	char		name[NAMEDATALEN];
	char		kind;			/* 'r' capture_row, 't' capture_truncate */
	char		enabled;		/* pg_trigger.tgenabled */
	bool		clone;			/* tgparentid set: cloned from a partitioned table */
	bool		wal;			/* a capture => 'wal' statement trigger (flag "wal") */
} AuditTrig;

/* DROP TRIGGER of an audit trigger, found before the statement ran */
typedef struct PendingDrop
{
	Node	   *stmt;			/* with subid: the statement (parse trees of */
	SubTransactionId subid;		/* failed statements' addresses get reused) */
	char	   *schema_name;
	char	   *table_name;
	char	   *trigger;
	char		kind;
	char	   *audited_table;	/* a partition's audited root, "schema.name" */
} PendingDrop;

static List *pending_drops = NIL;	/* in TopTransactionContext */
static LocalTransactionId pending_lxid = InvalidLocalTransactionId;

/* 'r', 't' or 0: which audit trigger a trigger function makes */
static char
audit_trigger_kind(Oid tgfoid, Oid audit_nsp)
{
	char	   *name;

	if (!OidIsValid(audit_nsp) || get_func_namespace(tgfoid) != audit_nsp)
		return 0;
	name = get_func_name(tgfoid);
	if (name == NULL)
		return 0;
	if (strcmp(name, "capture_row") == 0)
		return 'r';
	if (strcmp(name, "capture_truncate") == 0)
		return 't';
	return 0;
}

/*
 * The third argument of an audit trigger (its flags), NULL if it has none;
 * audit_trigger_flags_are_wal() reads it as audit_trigger_is_wal() reads the
 * relcache's.  tgargs is the arguments one after the other, each ended by a
 * NUL.
 */
static char *
trigger_flags(Relation tgrel, HeapTuple tup)
{
	Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);
	bool		isnull;
	Datum		d;
	bytea	   *args;
	const char *p;
	const char *end;

	if (tg->tgnargs < 3)
		return NULL;
	d = heap_getattr(tup, Anum_pg_trigger_tgargs, RelationGetDescr(tgrel), &isnull);
	if (isnull)
		return NULL;
	args = DatumGetByteaPP(d);
	p = VARDATA_ANY(args);
	end = p + VARSIZE_ANY_EXHDR(args);
	for (int i = 0; i < 2 && p < end; i++)
		p += strnlen(p, end - p) + 1;
	if (p >= end)
		return NULL;
	return pnstrdup(p, strnlen(p, end - p));
}

/* The audit triggers of a relation (list of AuditTrig *), as committed now. */
static List *
audit_triggers_of(Oid relid)
{
	Relation	tgrel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *result = NIL;
	Oid			audit_nsp = get_namespace_oid("audit", true);

	if (!OidIsValid(audit_nsp) || !OidIsValid(relid))
		return NIL;
	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&skey, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);
		char		kind = audit_trigger_kind(tg->tgfoid, audit_nsp);

		if (kind != 0)
		{
			AuditTrig  *t = palloc0(sizeof(AuditTrig));

			strlcpy(t->name, NameStr(tg->tgname), NAMEDATALEN);
			t->kind = kind;
			t->enabled = tg->tgenabled;
			t->clone = OidIsValid(tg->tgparentid);
			t->wal = audit_trigger_flags_are_wal(trigger_flags(tgrel, tup), tg->tgtype);
			result = lappend(result, t);
		}
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return result;
}

static AuditTrig *
find_trig(List *trigs, const char *name, char kind)
{
	ListCell   *lc;

	foreach(lc, trigs)
	{
		AuditTrig  *t = lfirst(lc);

		if ((name == NULL || strcmp(t->name, name) == 0) &&
			(kind == 0 || t->kind == kind))
			return t;
	}
	return NULL;
}

/* Is the relation covered by an audit row trigger (its own or a clone)? */
static bool
rel_is_audited(Oid relid)
{
	return find_trig(audit_triggers_of(relid), NULL, 'r') != NULL;
}

static const char *
tgenabled_word(char c)
{
	switch (c)
	{
		case TRIGGER_FIRES_ON_ORIGIN:
			return "enabled";
		case TRIGGER_FIRES_ALWAYS:
			return "always";
		case TRIGGER_FIRES_ON_REPLICA:
			return "replica only";
		case TRIGGER_DISABLED:
			return "disabled";
		default:
			return "unknown";
	}
}

/* "schema.name" of a relation, or NULL */
static char *
qualified_rel_name(Oid relid)
{
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);

	if (nsp == NULL || rel == NULL)
		return NULL;
	return psprintf("%s.%s", nsp, rel);
}

/* The audited table whose trigger a partition's clone comes from, "schema.name". */
static char *
audited_root_name(Oid relid)
{
	char	   *nsp;
	char	   *rel;

	if (!audit_recorded_names(relid, true, &nsp, &rel, NULL))
		return NULL;
	return psprintf("%s.%s", nsp, rel);
}

/* The relation of a trigger named by [schema.]table.trigger (DROP TRIGGER). */
static Oid
trigger_list_relid(List *names, char **trigname)
{
	List	   *relname;

	if (list_length(names) < 2)
		return InvalidOid;
	relname = list_copy_head(names, list_length(names) - 1);
	*trigname = strVal(llast(names));
	return RangeVarGetRelid(makeRangeVarFromNameList(relname), NoLock, true);
}

/*
 * A refused change of an audit trigger is an attempt to switch capture off:
 * recorded (1.5) as a ddl event with status failure, through the
 * shared-memory queue like other refusals (denied.c), so that it survives
 * the rollback the refusal causes.  Without shared memory, nothing.
 */
static void
queue_refused_trigger_change(Oid relid, AuditTrig *t, const char *what)
{
	AuditQueueEntry e;
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);
	char	   *root = t->clone ? audited_root_name(relid) : NULL;
	const char *action = strcmp(what, "replace") == 0 ? "CREATE TRIGGER" : "ALTER TRIGGER";
	const char *keys[6] = {"refused", "attempt", "trigger", "audit_trigger_change_refused", "risk", "audited_table"};
	const char *vals[6] = {"true", what, t->name, "true", "high", root};
	const bool	raw[6] = {true, false, false, true, false, false};

	if (!audit_fill_entry_for_session(&e, "ddl", action, true))
		return;
	audit_fill_entry_from_statement(&e, debug_query_string);
	if (nsp)
		strlcpy(e.schema_name, nsp, sizeof(e.schema_name));
	if (rel)
		strlcpy(e.table_name, rel, sizeof(e.table_name));
	audit_json_object(e.detail, sizeof(e.detail), root ? 6 : 5, keys, vals, raw);
	(void) audit_queue_enqueue(&e);
}

static void
refuse_trigger_change(Oid relid, const char *trigname, const char *what)
{
	AuditTrig  *t = find_trig(audit_triggers_of(relid), trigname, 0);

	if (t == NULL)
		return;
	queue_refused_trigger_change(relid, t, what);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s trigger \"%s\" of audited table \"%s\"",
					what, trigname, get_rel_name(relid)),
			 errdetail("\"%s\" is an audit trigger of audit_ext; changing it would switch capture off without a trace.",
					   trigname),
			 errhint("Use audit.disable() to stop auditing the table, audit.enable() to change its options.")));
}

/*
 * capture => 'wal' (issue 22) reads a table's changes from the WAL, so a
 * statement that keeps them out of it switches capture off as surely as
 * disabling the trigger: SET UNLOGGED (no WAL at all), or a
 * REPLICA IDENTITY other than FULL (no old row of an UPDATE or DELETE in
 * the WAL: a DELETE from a table without a key left nothing to record).
 * Refused (55000) on a
 * table with a WAL-mode audit trigger (its own audit_ext_row, or a
 * partition's audit_ext_wal_part), and recorded through the queue as the
 * refused trigger changes are (it survives the rollback).  New unlogged
 * partitions and children of such a table are refused by
 * audit.install_triggers / audit.install_wal_partition_triggers.
 */
static AuditTrig *
wal_audit_trigger(Oid relid)
{
	ListCell   *lc;

	foreach(lc, audit_triggers_of(relid))
	{
		AuditTrig  *t = lfirst(lc);

		if (t->kind == 'r' && t->wal)
			return t;
	}
	return NULL;
}

static void
refuse_wal_table_change(Oid relid, const char *what, const char *attempt,
						const char *why)
{
	AuditTrig  *t;
	AuditQueueEntry e;
	char	   *nsp;
	char	   *rel;
	const char *keys[5] = {"refused", "attempt", "trigger", "wal_capture_change_refused", "risk"};
	const char *vals[5] = {"true", attempt, NULL, "true", "high"};
	const bool	raw[5] = {true, false, false, true, false};

	if (!OidIsValid(relid) || (t = wal_audit_trigger(relid)) == NULL)
		return;
	nsp = get_namespace_name(get_rel_namespace(relid));
	rel = get_rel_name(relid);
	vals[2] = t->name;
	if (audit_fill_entry_for_session(&e, "ddl", "ALTER TABLE", true))
	{
		audit_fill_entry_from_statement(&e, debug_query_string);
		if (nsp)
			strlcpy(e.schema_name, nsp, sizeof(e.schema_name));
		if (rel)
			strlcpy(e.table_name, rel, sizeof(e.table_name));
		audit_json_object(e.detail, sizeof(e.detail), 5, keys, vals, raw);
		(void) audit_queue_enqueue(&e);
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s table \"%s\": it is audited with capture => 'wal'", what, rel),
			 errdetail("%s", why),
			 errhint("Have an audit administrator switch the table to trigger capture first: audit.enable('%s', capture => 'trigger').",
					 quote_qualified_identifier(nsp, rel))));
}

/*
 * ATTACH PARTITION of a table audited on its own to an audited partitioned
 * table: PostgreSQL would clone the parent's audit trigger onto it and fail
 * on the name its own audit trigger has ("trigger ... already exists",
 * 42710), which says nothing of auditing.  Refused first, saying what to do.
 */
static void
refuse_attach_audited(Oid parent, Oid child)
{
	ListCell   *lc;
	ListCell   *lc2;

	List	   *own;

	if (!OidIsValid(parent) || !OidIsValid(child))
		return;
	own = audit_triggers_of(child);
	foreach(lc, audit_triggers_of(parent))
	{
		AuditTrig  *p = lfirst(lc);

		/* only row triggers are cloned onto a new partition */
		if (p->kind != 'r' || p->wal)
			continue;
		foreach(lc2, own)
		{
			AuditTrig  *c = lfirst(lc2);
			char	   *nsp;

			if (c->kind != 'r' || c->clone || strcmp(c->name, p->name) != 0)
				continue;
			nsp = get_namespace_name(get_rel_namespace(child));
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot attach table \"%s\" as a partition of \"%s\": both are audited",
							get_rel_name(child), get_rel_name(parent)),
					 errdetail("A partition is audited as part of its partitioned table; the table's own auditing must end first."),
					 errhint("Run audit.disable('%s') first: its events so far keep its own identity, and once attached its changes are audited as the partitioned table's.",
							 quote_qualified_identifier(nsp, get_rel_name(child)))));
		}
	}
}

/*
 * Before a utility statement runs: refuse what would hide an audit trigger,
 * remember the audit trigger a DROP TRIGGER removes (after the statement it
 * is gone, and the table may have been the last one audited).
 */
static void
guard_prepare(Node *stmt)
{
	if (audit_in_own_function() || creating_extension || !IsTransactionState())
		return;
	switch (nodeTag(stmt))
	{
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;

				if (r->renameType != OBJECT_TRIGGER || r->relation == NULL || r->subname == NULL)
					return;
				refuse_trigger_change(RangeVarGetRelid(r->relation, NoLock, true),
									  r->subname, "rename");
				return;
			}
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *c = (CreateTrigStmt *) stmt;

				if (!c->replace || c->relation == NULL || c->trigname == NULL)
					return;
				refuse_trigger_change(RangeVarGetRelid(c->relation, NoLock, true),
									  c->trigname, "replace");
				return;
			}
		case T_AlterObjectDependsStmt:
			{
				AlterObjectDependsStmt *a = (AlterObjectDependsStmt *) stmt;

				if (a->objectType != OBJECT_TRIGGER || a->relation == NULL ||
					a->remove || a->object == NULL || !IsA(a->object, List))
					return;
				refuse_trigger_change(RangeVarGetRelid(a->relation, NoLock, true),
									  strVal(llast((List *) a->object)),
									  "make an extension own");
				return;
			}
		case T_AlterTableStmt:
			{
				AlterTableStmt *a = (AlterTableStmt *) stmt;
				ListCell   *lc;

				if (a->relation == NULL)
					return;
				foreach(lc, a->cmds)
				{
					AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

					if (cmd->subtype == AT_SetUnLogged)
						refuse_wal_table_change(RangeVarGetRelid(a->relation, NoLock, true),
												"make unlogged", "set unlogged",
												"An unlogged table writes no WAL: none of its changes would reach the audit trail, and nothing would say so.");
					else if (cmd->subtype == AT_AttachPartition && IsA(cmd->def, PartitionCmd))
						refuse_attach_audited(RangeVarGetRelid(a->relation, NoLock, true),
											  RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true));
					else if (cmd->subtype == AT_ReplicaIdentity &&
							 ((ReplicaIdentityStmt *) cmd->def)->identity_type != REPLICA_IDENTITY_FULL)
						refuse_wal_table_change(RangeVarGetRelid(a->relation, NoLock, true),
												"change the replica identity of", "replica identity",
												"Capture from the WAL needs REPLICA IDENTITY FULL: with any other setting the WAL holds no old row of an UPDATE or DELETE, and none at all of a DELETE from a table without a key.");
				}
				return;
			}
		case T_DropStmt:
			{
				DropStmt   *d = (DropStmt *) stmt;
				char	   *trigname = NULL;
				Oid			relid;
				AuditTrig  *t;
				PendingDrop *p;
				MemoryContext old;

				if (d->removeType != OBJECT_TRIGGER || list_length(d->objects) != 1 ||
					!IsA(linitial(d->objects), List))
					return;
				relid = trigger_list_relid(linitial(d->objects), &trigname);
				if (!OidIsValid(relid) ||
					(t = find_trig(audit_triggers_of(relid), trigname, 0)) == NULL)
					return;
				if (pending_lxid != AUDIT_MY_LXID)
				{
					/* the list of an earlier transaction went with its memory */
					pending_drops = NIL;
					pending_lxid = AUDIT_MY_LXID;
				}
				old = MemoryContextSwitchTo(TopTransactionContext);
				p = palloc0(sizeof(PendingDrop));
				p->stmt = stmt;
				p->subid = GetCurrentSubTransactionId();
				p->schema_name = get_namespace_name(get_rel_namespace(relid));
				p->table_name = get_rel_name(relid);
				p->trigger = pstrdup(trigname);
				p->kind = t->kind;
				/* a partition's own truncate trigger: name the audited table */
				p->audited_table = audited_root_name(relid);
				if (p->audited_table && p->schema_name && p->table_name &&
					strcmp(p->audited_table,
						   psprintf("%s.%s", p->schema_name, p->table_name)) == 0)
					p->audited_table = NULL;
				pending_drops = lappend(pending_drops, p);
				MemoryContextSwitchTo(old);
				return;
			}
		default:
			return;
	}
}

/* The DROP TRIGGER of an audit trigger this statement was, or NULL. */
static PendingDrop *
take_pending_drop(Node *stmt)
{
	PendingDrop *found;

	if (pending_drops == NIL || pending_lxid != AUDIT_MY_LXID)
		return NULL;
	/*
	 * The newest entry for this statement; entries after it belong to
	 * statements that failed inside it (caught by an exception block).
	 * Entries before it are of statements still running around it.
	 */
	for (int i = list_length(pending_drops) - 1; i >= 0; i--)
	{
		found = list_nth(pending_drops, i);
		if (found->stmt == stmt && found->subid == GetCurrentSubTransactionId())
		{
			pending_drops = list_truncate(pending_drops, i);
			return found;
		}
	}
	return NULL;
}

/* What a statement did to auditing, found after it completed. */
typedef struct GuardFacts
{
	bool		forced;			/* record it whatever log_ddl says */
	bool		trigger_disabled;	/* an audit trigger no longer fires in normal sessions */
	bool		trigger_enabled;	/* an audit trigger was (re-)enabled */
	List	   *trig_names;		/* audit triggers the statement touched */
	List	   *trig_states;	/* their state after it */
	char	   *audited_table;	/* the audited root of a partition */
	List	   *rewritten;		/* columns whose type changed */
	bool		rewrite_using;
	char	   *detached;		/* DETACH PARTITION: the partition */
	int64		detached_rows;
	bool		detached_concurrently;
	List	   *inherits;		/* audited tables the relation now inherits from */
	bool		child_audited;	/* ... and it was given the audit triggers */
	PendingDrop *drop;
} GuardFacts;

/* Exact number of rows in a relation and its partitions (seq scans). */
static int64
count_rows(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, AccessShareLock, NULL);
	ListCell   *lc;
	int64		n = 0;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	foreach(lc, rels)
	{
		Relation	r = table_open(lfirst_oid(lc), AccessShareLock);

		if (RELKIND_HAS_STORAGE(r->rd_rel->relkind))
		{
			TableScanDesc scan = table_beginscan(r, snap, 0, NULL);
			TupleTableSlot *slot = table_slot_create(r, NULL);

			while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
			{
				CHECK_FOR_INTERRUPTS();
				n++;
			}
			ExecDropSingleTupleTableSlot(slot);
			table_endscan(scan);
		}
		table_close(r, AccessShareLock);
	}
	UnregisterSnapshot(snap);
	return n;
}

/* Is the relation audited by a row trigger of its own (not a clone)? */
static bool
rel_has_own_audit_trigger(Oid relid)
{
	AuditTrig  *t = find_trig(audit_triggers_of(relid), NULL, 'r');

	return t != NULL && !t->clone;
}

static void
note_trigger(GuardFacts *f, AuditTrig *t)
{
	ListCell   *lc;

	foreach(lc, f->trig_names)
		if (strcmp((char *) lfirst(lc), t->name) == 0)
			return;
	f->trig_names = lappend(f->trig_names, pstrdup(t->name));
	f->trig_states = lappend(f->trig_states, (void *) tgenabled_word(t->enabled));
	if (t->enabled == TRIGGER_DISABLED || t->enabled == TRIGGER_FIRES_ON_REPLICA)
		f->trigger_disabled = true;
	else
		f->trigger_enabled = true;
}

static void
guard_alter_table(AlterTableStmt *a, GuardFacts *f)
{
	Oid			relid = RangeVarGetRelid(a->relation, NoLock, true);
	List	   *trigs;
	ListCell   *lc;

	if (!OidIsValid(relid))
		return;
	trigs = audit_triggers_of(relid);
	foreach(lc, a->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_EnableTrig:
			case AT_EnableAlwaysTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
				{
					AuditTrig  *t = cmd->name ? find_trig(trigs, cmd->name, 0) : NULL;

					if (t)
						note_trigger(f, t);
					break;
				}
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				{
					ListCell   *lc2;

					foreach(lc2, trigs)
						note_trigger(f, lfirst(lc2));
					break;
				}
			case AT_AlterColumnType:
				if (find_trig(trigs, NULL, 'r') && cmd->name)
				{
					f->rewritten = lappend(f->rewritten, pstrdup(cmd->name));
					if (cmd->def && IsA(cmd->def, ColumnDef) &&
						((ColumnDef *) cmd->def)->raw_default != NULL)
						f->rewrite_using = true;
				}
				break;
			case AT_DetachPartition:
				if (find_trig(trigs, NULL, 'r') && cmd->def && IsA(cmd->def, PartitionCmd))
				{
					PartitionCmd *pc = (PartitionCmd *) cmd->def;
					Oid			part = RangeVarGetRelid(pc->name, NoLock, true);

					if (OidIsValid(part))
					{
						f->detached = qualified_rel_name(part);
						f->detached_rows = count_rows(part);
						f->detached_concurrently = pc->concurrent;
					}
				}
				break;
			case AT_AddInherit:
				if (cmd->def && IsA(cmd->def, RangeVar))
				{
					Oid			parent = RangeVarGetRelid((RangeVar *) cmd->def, NoLock, true);

					if (OidIsValid(parent) && rel_is_audited(parent))
					{
						f->inherits = lappend(f->inherits, qualified_rel_name(parent));
						/* audited by the event trigger (audit.on_ddl_command_end) */
						f->child_audited = rel_has_own_audit_trigger(relid);
					}
				}
				break;
			default:
				break;
		}
	}
	/* (the statement has run: the states read are those it left) */
	if (f->trig_names != NIL)
	{
		AuditTrig  *row = find_trig(trigs, NULL, 'r');

		if (row && row->clone)
			f->audited_table = audited_root_name(relid);
	}
	f->forced = f->trig_names != NIL || f->rewritten != NIL || f->detached != NULL ||
		f->inherits != NIL;
}

/*
 * CREATE [FOREIGN] TABLE ... INHERITS (audited): UPDATE and DELETE through
 * the parent change the child's rows, which fire the child's triggers only.
 * The event trigger audit.on_ddl_command_end (1.4) audits an ordinary child
 * with its parent's options; recorded either way.  (Partitions need nothing:
 * the row trigger is cloned, the event trigger adds the truncate trigger.)
 */
static void
guard_create_table(CreateStmt *c, GuardFacts *f)
{
	ListCell   *lc;

	if (c->partbound != NULL)
		return;
	foreach(lc, c->inhRelations)
	{
		Oid			parent = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);

		if (OidIsValid(parent) && rel_is_audited(parent))
			f->inherits = lappend(f->inherits, qualified_rel_name(parent));
	}
	if (f->inherits == NIL)
		return;
	f->child_audited = rel_has_own_audit_trigger(RangeVarGetRelid(c->relation, NoLock, true));
	f->forced = true;
}

static void
guard_push_facts(JsonbParseState **st, GuardFacts *f)
{
	if (f->trig_names != NIL)
	{
		ListCell   *n,
				   *s;

		push_string(st, WJB_KEY, "audit_triggers");
		pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
		forboth(n, f->trig_names, s, f->trig_states)
			kv_string(st, lfirst(n), lfirst(s));
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	if (f->drop)
	{
		push_string(st, WJB_KEY, "audit_triggers");
		pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
		kv_string(st, f->drop->trigger, "dropped");
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
		if (f->drop->audited_table)
			kv_string(st, "audited_table", f->drop->audited_table);
	}
	if (f->audited_table)
		kv_string(st, "audited_table", f->audited_table);
	if (f->trigger_disabled)
		kv_bool(st, "audit_trigger_disabled", true);
	else if (f->trigger_enabled)
		kv_bool(st, "audit_trigger_enabled", true);
	if (f->rewritten != NIL)
	{
		kv_bool(st, "data_rewrite", true);
		kv_strings(st, "rewritten_columns", f->rewritten);
		kv_bool(st, "using", f->rewrite_using);
	}
	if (f->detached)
	{
		JsonbValue	v;

		kv_bool(st, "partition_detached", true);
		kv_string(st, "partition", f->detached);
		push_string(st, WJB_KEY, "partition_rows");
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(f->detached_rows);
		pushJsonbValue(st, WJB_VALUE, &v);
		if (f->detached_concurrently)
			kv_bool(st, "concurrently", true);
	}
	if (f->inherits != NIL)
	{
		kv_strings(st, "inherits_audited", f->inherits);
		kv_bool(st, "child_audited", f->child_audited);
	}
	if (f->trigger_disabled)
		kv_string(st, "risk", "critical");
	else if (f->rewritten != NIL || f->detached ||
			 (f->inherits != NIL && !f->child_audited))
		kv_string(st, "risk", "high");
}

/* Would the trigger fire in this session? */
static bool
trigger_fires_here(AuditTrig *t)
{
	if (t == NULL || t->enabled == TRIGGER_DISABLED)
		return false;
	if (t->enabled == TRIGGER_FIRES_ALWAYS)
		return true;
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return t->enabled == TRIGGER_FIRES_ON_REPLICA;
	return t->enabled == TRIGGER_FIRES_ON_ORIGIN;
}

/*
 * TRUNCATE of an audited table whose truncate trigger did not fire (disabled,
 * replica only, dropped, or session_replication_role = replica): the data
 * event the trigger would have written, flagged, so the emptying of the
 * table is in the trail all the same.
 */
static void
guard_truncate(TruncateStmt *t)
{
	ListCell   *lc;
	List	   *done = NIL;

	foreach(lc, t->relations)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);
		List	   *rels;
		ListCell   *lc2;

		if (!OidIsValid(relid))
			continue;
		/* the statement locked them all */
		rels = rv->inh ? find_all_inheritors(relid, NoLock, NULL) : list_make1_oid(relid);
		foreach(lc2, rels)
		{
			Oid			rel = lfirst_oid(lc2);
			List	   *trigs;
			AuditTrig  *row;
			AuditTrig  *trunc;
			JsonbParseState *st = NULL;
			char	   *nsp;
			char	   *name;

			if (list_member_oid(done, rel))
				continue;
			done = lappend_oid(done, rel);
			trigs = audit_triggers_of(rel);
			row = find_trig(trigs, NULL, 'r');
			trunc = find_trig(trigs, NULL, 't');
			if (row == NULL || trigger_fires_here(trunc))
				continue;
			nsp = get_namespace_name(get_rel_namespace(rel));
			name = get_rel_name(rel);
			if (nsp == NULL || name == NULL)
				continue;
			pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
			kv_bool(&st, "audit_trigger_disabled", true);
			kv_string(&st, "truncate_trigger",
					  trunc ? tgenabled_word(trunc->enabled) : "missing");
			if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
				kv_string(&st, "session_replication_role", "replica");
			kv_string(&st, "recorded_by", "utility hook");
			kv_string(&st, "risk", "critical");
			emit_event("data", "TRUNCATE", nsp, name, finish_object(&st), false);
		}
	}
}

/*
 * CREATE/ALTER SUBSCRIPTION: the apply worker runs with
 * session_replication_role = replica, so an audit row trigger that fires on
 * origin only (the default) records nothing of what it applies.  One event
 * per audited table the subscription writes into, whatever log_ddl says.
 */
static void
guard_subscription(const char *subname, const char *tag)
{
	Oid			subid;
	Relation	srel;
	SysScanDesc scan;
	ScanKeyData skey;
	HeapTuple	tup;
	List	   *relids = NIL;
	ListCell   *lc;

	if (subname == NULL)
		return;
	subid = get_subscription_oid(subname, true);
	if (!OidIsValid(subid))
		return;
	srel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyInit(&skey, Anum_pg_subscription_rel_srsubid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(subid));
	scan = systable_beginscan(srel, InvalidOid, false, NULL, 1, &skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		relids = lappend_oid(relids, ((Form_pg_subscription_rel) GETSTRUCT(tup))->srrelid);
	systable_endscan(scan);
	table_close(srel, AccessShareLock);

	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		AuditTrig  *t = find_trig(audit_triggers_of(relid), NULL, 'r');
		JsonbParseState *st = NULL;
		char	   *nsp;
		char	   *rel;

		if (t == NULL || t->enabled == TRIGGER_FIRES_ALWAYS ||
			t->enabled == TRIGGER_FIRES_ON_REPLICA)
			continue;
		if (!audit_recorded_names(relid, t->clone, &nsp, &rel, NULL))
			continue;
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		kv_string(&st, "object_type", "subscription");
		kv_strings(&st, "objects", list_make1(pstrdup(subname)));
		kv_string(&st, "subscription", subname);
		if (t->clone)
			kv_string(&st, "partition", qualified_rel_name(relid));
		kv_bool(&st, "replicated_changes_captured", false);
		kv_string(&st, "risk", "high");
		emit_event("ddl", tag, nsp, rel, finish_object(&st), true);
	}
}

static void
capture_ddl(Node *stmt, const char *pre_schema, PendingDrop *drop)
{
	JsonbParseState *st = NULL;
	const char *tag = GetCommandTagName(CreateCommandTag(stmt));
	const char *objtype = NULL;
	List	   *objects = NIL;
	RangeVar   *rel = NULL;
	const char *schema_name = NULL;
	const char *table_name = NULL;
	GuardFacts	facts;

	memset(&facts, 0, sizeof(facts));
	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			{
				AlterTableStmt *a = (AlterTableStmt *) stmt;

				rel = a->relation;
				objtype = object_type_name(a->objtype);
				CommandCounterIncrement();
				guard_alter_table(a, &facts);
				break;
			}
		case T_CreateStmt:
			rel = ((CreateStmt *) stmt)->relation;
			objtype = "table";
			CommandCounterIncrement();
			guard_create_table((CreateStmt *) stmt, &facts);
			break;
		case T_CreateForeignTableStmt:
			rel = ((CreateForeignTableStmt *) stmt)->base.relation;
			objtype = "foreign table";
			CommandCounterIncrement();
			guard_create_table(&((CreateForeignTableStmt *) stmt)->base, &facts);
			break;
		case T_CreateSubscriptionStmt:
			objtype = "subscription";
			objects = list_make1(pstrdup(((CreateSubscriptionStmt *) stmt)->subname));
			CommandCounterIncrement();
			guard_subscription(((CreateSubscriptionStmt *) stmt)->subname, tag);
			break;
		case T_AlterSubscriptionStmt:
			{
				AlterSubscriptionStmt *a = (AlterSubscriptionStmt *) stmt;

				objtype = "subscription";
				objects = list_make1(pstrdup(a->subname));
				if (a->kind == ALTER_SUBSCRIPTION_REFRESH ||
					a->kind == ALTER_SUBSCRIPTION_SET_PUBLICATION ||
					a->kind == ALTER_SUBSCRIPTION_ADD_PUBLICATION ||
					a->kind == ALTER_SUBSCRIPTION_ENABLED)
				{
					CommandCounterIncrement();
					guard_subscription(a->subname, tag);
				}
				break;
			}
		case T_IndexStmt:
			rel = ((IndexStmt *) stmt)->relation;
			objtype = "index";
			if (((IndexStmt *) stmt)->idxname)
				objects = list_make1(pstrdup(((IndexStmt *) stmt)->idxname));
			break;
		case T_CreateTrigStmt:
			rel = ((CreateTrigStmt *) stmt)->relation;
			objtype = "trigger";
			objects = list_make1(pstrdup(((CreateTrigStmt *) stmt)->trigname));
			break;
		case T_CreatePolicyStmt:
			rel = ((CreatePolicyStmt *) stmt)->table;
			objtype = "policy";
			objects = list_make1(pstrdup(((CreatePolicyStmt *) stmt)->policy_name));
			break;
		case T_AlterPolicyStmt:
			rel = ((AlterPolicyStmt *) stmt)->table;
			objtype = "policy";
			objects = list_make1(pstrdup(((AlterPolicyStmt *) stmt)->policy_name));
			break;
		case T_RuleStmt:
			rel = ((RuleStmt *) stmt)->relation;
			objtype = "rule";
			objects = list_make1(pstrdup(((RuleStmt *) stmt)->rulename));
			break;
		case T_ViewStmt:
			rel = ((ViewStmt *) stmt)->view;
			objtype = "view";
			break;
		case T_CreateTableAsStmt:
			rel = ((CreateTableAsStmt *) stmt)->into->rel;
			objtype = object_type_name(((CreateTableAsStmt *) stmt)->objtype);
			break;
		case T_CreateSeqStmt:
			rel = ((CreateSeqStmt *) stmt)->sequence;
			objtype = "sequence";
			break;
		case T_AlterSeqStmt:
			rel = ((AlterSeqStmt *) stmt)->sequence;
			objtype = "sequence";
			break;
		case T_DropStmt:
			{
				DropStmt   *d = (DropStmt *) stmt;

				objtype = object_type_name(d->removeType);
				objects = node_names(d->objects);
				if (list_length(d->objects) == 1 && IsA(linitial(d->objects), List) &&
					(d->removeType == OBJECT_TABLE || d->removeType == OBJECT_VIEW ||
					 d->removeType == OBJECT_MATVIEW || d->removeType == OBJECT_FOREIGN_TABLE ||
					 d->removeType == OBJECT_SEQUENCE))
				{
					/* the relation is gone: its schema was resolved before */
					RangeVar   *rv = makeRangeVarFromNameList(linitial(d->objects));

					table_name = rv->relname;
					schema_name = rv->schemaname ? rv->schemaname : pre_schema;
				}
				if (drop)
				{
					/* DROP TRIGGER of an audit trigger: capture is off */
					schema_name = drop->schema_name;
					table_name = drop->table_name;
					facts.drop = drop;
					facts.trigger_disabled = true;
					facts.forced = true;
				}
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;

				objtype = object_type_name(r->renameType);
				if (r->relation)
				{
					if (r->renameType == OBJECT_TABLE || r->renameType == OBJECT_VIEW ||
						r->renameType == OBJECT_MATVIEW || r->renameType == OBJECT_FOREIGN_TABLE ||
						r->renameType == OBJECT_SEQUENCE || r->renameType == OBJECT_INDEX)
					{
						/* the old name is gone */
						RangeVar   *rv = copyObject(r->relation);

						rv->relname = r->newname;
						rel = rv;
					}
					else
						rel = r->relation;
				}
				else if (r->object)
					objects = list_make1(node_name(r->object));
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *a = (AlterObjectSchemaStmt *) stmt;

				objtype = object_type_name(a->objectType);
				if (a->relation)
				{
					RangeVar   *rv = copyObject(a->relation);

					rv->schemaname = a->newschema;
					rel = rv;
				}
				else if (a->object)
					objects = list_make1(node_name(a->object));
				break;
			}
		case T_AlterOwnerStmt:
			{
				AlterOwnerStmt *a = (AlterOwnerStmt *) stmt;

				objtype = object_type_name(a->objectType);
				if (a->relation)
					rel = a->relation;
				else if (a->object)
					objects = list_make1(node_name(a->object));
				break;
			}
		case T_CommentStmt:
			{
				CommentStmt *c = (CommentStmt *) stmt;

				objtype = object_type_name(c->objtype);
				objects = list_make1(node_name(c->object));
				if ((c->objtype == OBJECT_TABLE || c->objtype == OBJECT_VIEW) &&
					IsA(c->object, List))
					rel = makeRangeVarFromNameList((List *) c->object);
				break;
			}
		case T_DefineStmt:
			objtype = object_type_name(((DefineStmt *) stmt)->kind);
			objects = list_make1(join_names(((DefineStmt *) stmt)->defnames, "."));
			break;
		case T_CreateFunctionStmt:
			objtype = ((CreateFunctionStmt *) stmt)->is_procedure ? "procedure" : "function";
			objects = list_make1(join_names(((CreateFunctionStmt *) stmt)->funcname, "."));
			break;
		case T_AlterFunctionStmt:
			objtype = object_type_name(((AlterFunctionStmt *) stmt)->objtype);
			objects = list_make1(node_name((Node *) ((AlterFunctionStmt *) stmt)->func));
			break;
		case T_CreateSchemaStmt:
			objtype = "schema";
			if (((CreateSchemaStmt *) stmt)->schemaname)
				objects = list_make1(pstrdup(((CreateSchemaStmt *) stmt)->schemaname));
			break;
		case T_CreateExtensionStmt:
			objtype = "extension";
			objects = list_make1(pstrdup(((CreateExtensionStmt *) stmt)->extname));
			break;
		case T_CreatedbStmt:
			objtype = "database";
			objects = list_make1(pstrdup(((CreatedbStmt *) stmt)->dbname));
			break;
		case T_DropdbStmt:
			objtype = "database";
			objects = list_make1(pstrdup(((DropdbStmt *) stmt)->dbname));
			break;
		case T_CompositeTypeStmt:
			objtype = "type";
			objects = list_make1(rangevar_name(((CompositeTypeStmt *) stmt)->typevar));
			break;
		case T_CreateEnumStmt:
			objtype = "type";
			objects = list_make1(join_names(((CreateEnumStmt *) stmt)->typeName, "."));
			break;
		case T_CreateDomainStmt:
			objtype = "domain";
			objects = list_make1(join_names(((CreateDomainStmt *) stmt)->domainname, "."));
			break;
		case T_AlterSystemStmt:
			{
				VariableSetStmt *v = ((AlterSystemStmt *) stmt)->setstmt;

				objtype = "configuration parameter";
				objects = list_make1(pstrdup(v->name ? v->name : "ALL"));
				break;
			}
		case T_CreateEventTrigStmt:
			objtype = "event trigger";
			objects = list_make1(pstrdup(((CreateEventTrigStmt *) stmt)->trigname));
			break;
		case T_AlterEventTrigStmt:
			objtype = "event trigger";
			objects = list_make1(pstrdup(((AlterEventTrigStmt *) stmt)->trigname));
			break;
		default:
			break;
	}

	/* changes to auditing itself are recorded whatever log_ddl says */
	if (!facts.forced && !audit_log_ddl)
		return;

	/* temporary objects vanish with the session: nothing lasting changed */
	if (schema_name && strncmp(schema_name, "pg_temp", 7) == 0)
		return;
	if (rel != NULL && table_name == NULL)
	{
		if (relation_names(rel, &schema_name, &table_name))
			return;
		if (objects == NIL)
			objects = list_make1(schema_name ?
								 psprintf("%s.%s", schema_name, table_name) :
								 pstrdup(table_name));
	}
	if (objtype == NULL)
		objtype = object_type_from_tag(tag);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (objtype)
		kv_string(&st, "object_type", objtype);
	if (objects != NIL)
		kv_strings(&st, "objects", objects);
	guard_push_facts(&st, &facts);
	emit_event("ddl", tag, schema_name, table_name, finish_object(&st),
			   carries_secret(stmt));
}

/* SET [LOCAL] session_replication_role = replica: ordinary triggers off */
static void
capture_replication_role(VariableSetStmt *s)
{
	JsonbParseState *st = NULL;

	if (s->name == NULL || strcmp(s->name, "session_replication_role") != 0 ||
		SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA ||
		!OidIsValid(audit_event_relid(true)) || !any_table_audited())
		return;
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	kv_string(&st, "value", "replica");
	if (s->is_local)
		kv_bool(&st, "local", true);
	emit_event("ddl", "SET session_replication_role", NULL, NULL,
			   finish_object(&st), false);
}

/*
 * Before the statement runs: what it would be too late to find out after.
 * Returns the schema of the relation a DROP names without a schema.
 */
char *
audit_ddl_prepare(Node *stmt)
{
	DropStmt   *d;
	Oid			relid;

	drop_watch_prepare(stmt);
	if ((IsA(stmt, RenameStmt) || IsA(stmt, CreateTrigStmt) ||
		 IsA(stmt, AlterObjectDependsStmt) || IsA(stmt, AlterTableStmt) ||
		 (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_TRIGGER)) &&
		IsTransactionState() && OidIsValid(audit_event_relid(true)))
	{
		guard_prepare(stmt);
		return NULL;
	}
	if (!IsA(stmt, DropStmt) || !audit_log_ddl)
		return NULL;
	d = (DropStmt *) stmt;
	if (list_length(d->objects) != 1 || !IsA(linitial(d->objects), List) ||
		list_length(linitial(d->objects)) != 1 || !IsTransactionState())
		return NULL;
	relid = RangeVarGetRelid(makeRangeVarFromNameList(linitial(d->objects)),
							 NoLock, true);
	if (!OidIsValid(relid))
		return NULL;
	return get_namespace_name(get_rel_namespace(relid));
}

/*
 * Is any table of this database audited?  Ddl events are recorded only
 * then: pg_restore creates the trail's monthly partitions
 * (and attaches them) before it creates the audit triggers, and an event
 * written meanwhile would land in a default partition and make the attach
 * fail.  A seq scan of pg_trigger, once per utility statement.
 */
static bool
any_table_audited(void)
{
	Relation	tgrel;
	ScanKeyData skey;
	SysScanDesc scan;
	bool		found;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&skey, Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("audit_ext_row"));
	scan = systable_beginscan(tgrel, InvalidOid, false, NULL, 1, &skey);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

/*
 * The tables that have an audit row trigger of their own (not a partition's
 * clone): OIDs, schemas and names, in TopMemoryContext.
 */
static void
audited_tables_now(List **relids, List **schemas, List **tables)
{
	Relation	tgrel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tup;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&skey, Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("audit_ext_row"));
	scan = systable_beginscan(tgrel, InvalidOid, false, NULL, 1, &skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger t = (Form_pg_trigger) GETSTRUCT(tup);
		char	   *nsp;
		char	   *rel;

		if (OidIsValid(t->tgparentid))
			continue;
		nsp = get_namespace_name(get_rel_namespace(t->tgrelid));
		rel = get_rel_name(t->tgrelid);
		*relids = lappend_oid(*relids, t->tgrelid);
		*schemas = lappend(*schemas, nsp ? nsp : pstrdup("?"));
		*tables = lappend(*tables, rel ? rel : pstrdup("?"));
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	MemoryContextSwitchTo(old);
}

/*
 * Before a DROP (of tables, a schema, an extension, DROP OWNED ...): note the
 * audited tables, to tell afterwards which of them it dropped.  Dropping
 * the last audited table (or a schema with it) used to leave no event at
 * all: ddl events are recorded only while some table is audited, which is
 * no longer true when the statement has run.
 */
static void
drop_watch_prepare(Node *stmt)
{
	DropWatch  *w;

	if (!(IsA(stmt, DropStmt) || IsA(stmt, DropOwnedStmt)) ||
		!IsTransactionState() || !OidIsValid(audit_event_relid(true)))
		return;
	w = MemoryContextAllocZero(TopMemoryContext, sizeof(DropWatch));
	w->stmt = stmt;
	audited_tables_now(&w->relids, &w->schemas, &w->tables);
	if (w->relids == NIL)
	{
		drop_watch_free(w);
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		drop_watches = lappend(drop_watches, w);
		MemoryContextSwitchTo(old);
	}
}

/*
 * After the statement: the audited tables it dropped, recorded as one
 * critical ddl event whatever audit_ext.log_ddl says ("capture_off",
 * "audit_trigger_disabled": the shipped audit_disabled rule fires).
 * Returns true when it recorded the statement.
 */
static DropWatch *
drop_watch_take(Node *stmt)
{
	/* entries above ours belong to statements an error ended */
	while (drop_watches != NIL)
	{
		DropWatch  *top = (DropWatch *) llast(drop_watches);

		drop_watches = list_delete_last(drop_watches);
		if (top->stmt == stmt)
			return top;
		drop_watch_free(top);
	}
	return NULL;
}

static bool
drop_watch_capture(DropWatch *w, Node *stmt)
{
	List	   *dropped = NIL;
	const char *schema_name = NULL;
	const char *table_name = NULL;
	JsonbParseState *st = NULL;
	bool		recorded = false;

	if (w == NULL)
		return false;
	for (int i = 0; i < list_length(w->relids); i++)
	{
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(list_nth_oid(w->relids, i))))
			continue;
		schema_name = list_nth(w->schemas, i);
		table_name = list_nth(w->tables, i);
		dropped = lappend(dropped, psprintf("%s.%s", schema_name, table_name));
	}
	if (dropped != NIL && OidIsValid(audit_event_relid(true)))
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		kv_strings(&st, "audited_tables_dropped", dropped);
		kv_bool(&st, "capture_off", true);
		kv_bool(&st, "audit_trigger_disabled", true);
		kv_string(&st, "risk", "critical");
		/* the event names the table when there is one */
		emit_event("ddl", GetCommandTagName(CreateCommandTag(stmt)),
				   list_length(dropped) == 1 ? schema_name : NULL,
				   list_length(dropped) == 1 ? table_name : NULL,
				   finish_object(&st), false);
		recorded = true;
	}
	return recorded;
}

/*
 * After a utility statement completed: record it if it is a privilege
 * change, DDL, or a change to auditing itself.
 */
static void ddl_capture(PlannedStmt *pstmt, int context, const char *pre_schema,
						DropWatch *watch);

void
audit_ddl_capture(PlannedStmt *pstmt, int context, const char *pre_schema)
{
	DropWatch  *watch = drop_watch_take(pstmt->utilityStmt);

	ddl_capture(pstmt, context, pre_schema, watch);
	if (watch)
		drop_watch_free(watch);
}

static void
ddl_capture(PlannedStmt *pstmt, int context, const char *pre_schema,
			DropWatch *watch)
{
	Node	   *stmt = pstmt->utilityStmt;
	PendingDrop *drop;

	/* parts of a bigger statement (CREATE SCHEMA ... CREATE TABLE) */
	if (context == PROCESS_UTILITY_SUBCOMMAND)
		return;
	if (audit_function_depth > 0 || creating_extension)
		return;
	if (!IsTransactionState() || IsAbortedTransactionBlockState())
		return;
	if (IsA(stmt, VariableSetStmt))
	{
		capture_replication_role((VariableSetStmt *) stmt);
		return;
	}
	if (IsA(stmt, TruncateStmt))
	{
		/* a data event from the trigger, unless it did not fire */
		if (OidIsValid(audit_event_relid(true)))
			guard_truncate((TruncateStmt *) stmt);
		return;
	}
	if (is_not_ddl(stmt))
		return;
	/* not installed in this database (or just dropped) */
	if (!OidIsValid(audit_event_relid(true)))
		return;
	/* the trail starts after its own creation */
	if (IsA(stmt, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) stmt)->extname, "audit_ext") == 0)
		return;
	/*
	 * Privilege changes always.  pg_restore runs GRANTs only in its last
	 * (ACL) pass, after the trail's partitions are attached and its data
	 * loaded, so recording them cannot disturb a restore.
	 */
	if (capture_privilege(stmt))
		return;
	/* a DROP that took audited tables with it: one flagged event */
	if (drop_watch_capture(watch, stmt))
	{
		(void) take_pending_drop(stmt);
		return;
	}
	/* (the table whose audit trigger was dropped may have been the last one) */
	drop = take_pending_drop(stmt);
	if (drop != NULL || any_table_audited())
		capture_ddl(stmt, pre_schema, drop);
}

/*
 * audit.log_config_event(action text, tbl regclass, detail jsonb): called
 * by audit.enable() and audit.disable().  They are SECURITY DEFINER, so the
 * user recorded is the session's role (SET ROLE, else the session user),
 * not the functions' owner.
 */
PG_FUNCTION_INFO_V1(audit_log_config_event);

Datum
audit_log_config_event(PG_FUNCTION_ARGS)
{
	AuditEventValues ev;
	char	   *action;
	Oid			relid;
	Oid			role = GetCurrentRoleId();
	char	   *nsp;
	char	   *rel;
	Datum		user;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	action = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* NULL: a change that concerns no table (publishing the trail) */
	relid = PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1);

	audit_event_init(&ev, "ddl", action);
	audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE);
	user = CStringGetTextDatum(GetUserNameFromId(OidIsValid(role) ? role : GetSessionUserId(), false));
	if (ev.values[AC_ACTOR] == ev.values[AC_DB_USER])
		ev.values[AC_ACTOR] = user;
	ev.values[AC_DB_USER] = user;

	nsp = OidIsValid(relid) ? get_namespace_name(get_rel_namespace(relid)) : NULL;
	rel = OidIsValid(relid) ? get_rel_name(relid) : NULL;
	if (nsp && rel)
	{
		ev.values[AC_SCHEMA_NAME] = CStringGetTextDatum(nsp);
		ev.nulls[AC_SCHEMA_NAME] = false;
		ev.values[AC_TABLE_NAME] = CStringGetTextDatum(rel);
		ev.nulls[AC_TABLE_NAME] = false;
	}
	/* ENABLE/DISABLE AUDIT belong to the table's history like its changes */
	if (OidIsValid(relid))
	{
		int64		identity = audit_table_identity(relid);

		if (identity != 0)
		{
			ev.values[AC_TABLE_IDENTITY] = Int64GetDatum(identity);
			ev.nulls[AC_TABLE_IDENTITY] = false;
		}
	}
	if (!PG_ARGISNULL(2))
	{
		ev.values[AC_DETAIL] = PG_GETARG_DATUM(2);
		ev.nulls[AC_DETAIL] = false;
	}
	audit_event_emit(&ev);
	PG_RETURN_VOID();
}

/*
 * audit.ddl_type_using(cmd pg_ddl_command, rel oid) RETURNS text[]: the
 * columns of rel whose ALTER COLUMN ... TYPE in this collected ALTER TABLE
 * command had a USING clause (audit.sync_columns(), called from the
 * ddl_command_end event trigger).  The parse tree says it, whatever text the
 * client sent: up to 1.6's review the statement text was searched for the
 * word "using", which a migration function (SELECT migrate()) does not
 * show and a comment can.  An empty array for any other command.
 */
PG_FUNCTION_INFO_V1(audit_ddl_type_using);

Datum
audit_ddl_type_using(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	Oid			relid = PG_GETARG_OID(1);
	ArrayBuildState *astate = NULL;
	ListCell   *lc;

	if (cmd != NULL && cmd->type == SCT_AlterTable &&
		cmd->d.alterTable.objectId == relid)
	{
		foreach(lc, cmd->d.alterTable.subcmds)
		{
			CollectedATSubcmd *sub = (CollectedATSubcmd *) lfirst(lc);
			AlterTableCmd *atc = (AlterTableCmd *) sub->parsetree;
			ColumnDef  *def;

			if (atc == NULL || !IsA(atc, AlterTableCmd) ||
				atc->subtype != AT_AlterColumnType || atc->name == NULL)
				continue;
			def = (ColumnDef *) atc->def;
			if (def == NULL || !IsA(def, ColumnDef) || def->raw_default == NULL)
				continue;
			astate = accumArrayResult(astate, CStringGetTextDatum(atc->name), false,
									  TEXTOID, CurrentMemoryContext);
		}
	}
	if (astate == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}
