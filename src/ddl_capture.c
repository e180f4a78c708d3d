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
 *			   plus the statements that weaken auditing itself (always):
 *			   ALTER TABLE ... DISABLE TRIGGER on an audited table, SET
 *			   session_replication_role = replica, audit.enable/disable
 *			   (audit.log_config_event).
 *
 * Ddl events only in a database where some table is audited (see
 * any_table_audited); privilege events always.
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
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "audit_ext.h"

bool		audit_log_ddl = true;

static int	audit_function_depth = 0;
static int	audit_prune_depth = 0;	/* inside audit.prune() */

static bool any_table_audited(void);
static fmgr_hook_type prev_fmgr_hook = NULL;

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

void
audit_ddl_xact_end(void)
{
	audit_function_depth = 0;
	audit_prune_depth = 0;
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
				if (s->kind == VAR_SET_VALUE)
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

/* Statements whose text may carry a secret besides role passwords. */
static bool
carries_secret(Node *stmt)
{
	switch (nodeTag(stmt))
	{
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

/* ALTER TABLE ... DISABLE TRIGGER audit_ext_row / ALL / USER? */
static bool
disables_audit_trigger(AlterTableStmt *a)
{
	ListCell   *lc;

	foreach(lc, a->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_DisableTrigAll ||
			cmd->subtype == AT_DisableTrigUser ||
			(cmd->subtype == AT_DisableTrig && cmd->name &&
			 strcmp(cmd->name, "audit_ext_row") == 0))
		{
			Oid			relid = RangeVarGetRelid(a->relation, NoLock, true);

			return OidIsValid(relid) && audit_has_own_trigger(relid);
		}
	}
	return false;
}

static void
capture_ddl(Node *stmt, const char *pre_schema)
{
	JsonbParseState *st = NULL;
	const char *tag = GetCommandTagName(CreateCommandTag(stmt));
	const char *objtype = NULL;
	List	   *objects = NIL;
	RangeVar   *rel = NULL;
	const char *schema_name = NULL;
	const char *table_name = NULL;
	bool		tamper = false;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			{
				AlterTableStmt *a = (AlterTableStmt *) stmt;

				rel = a->relation;
				objtype = object_type_name(a->objtype);
				tamper = disables_audit_trigger(a);
				break;
			}
		case T_CreateStmt:
			rel = ((CreateStmt *) stmt)->relation;
			objtype = "table";
			break;
		case T_CreateForeignTableStmt:
			rel = ((CreateForeignTableStmt *) stmt)->base.relation;
			objtype = "foreign table";
			break;
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

	if (!tamper && !audit_log_ddl)
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
	if (tamper)
		kv_bool(&st, "audit_trigger_disabled", true);
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
 * After a utility statement completed: record it if it is a privilege
 * change, DDL, or a change to auditing itself.
 */
void
audit_ddl_capture(PlannedStmt *pstmt, int context, const char *pre_schema)
{
	Node	   *stmt = pstmt->utilityStmt;

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
	if (any_table_audited())
		capture_ddl(stmt, pre_schema);
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
	if (!PG_ARGISNULL(2))
	{
		ev.values[AC_DETAIL] = PG_GETARG_DATUM(2);
		ev.nulls[AC_DETAIL] = false;
	}
	audit_event_emit(&ev);
	PG_RETURN_VOID();
}
