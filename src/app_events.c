/*-------------------------------------------------------------------------
 *
 * app_events.c
 *		Application events (class app): audit.log_event(), the application's
 *		own security and business events in the same trail as the
 *		database's.
 *
 * An application whose users are not database roles records what they do
 * (LOGIN, LOGIN_FAILED, EXPORT, PASSWORD_CHANGE ...) with
 * audit.log_event().  The event is built in C like every other event: the
 * class is always "app", who and where (db_user, session_user, actor,
 * client address, backend, transaction, statement) come from the session as
 * for a data event, so a caller can name its entity, record, values, status
 * and risk but never another class or another session's facts.
 *
 * Two paths:
 *	survive_rollback => false: the event buffer of the caller's transaction
 *		(event_writer.c), like a data event: it commits or rolls back with it.
 *	survive_rollback => true: the shared-memory queue and the worker, like a
 *		refused statement (denied.c): a failed login the application rolls
 *		back is kept.  record_id, old_value, new_value and detail travel as
 *		one JSON object in the queue record's detail (at most
 *		AUDIT_QUEUE_DETAIL_LEN bytes; a larger event is refused, 54000).
 *		The worker (worker.c) unpacks them with audit_app_event_fill().
 *
 * Who may call: audit.log_event is executable by audit_writer (and
 * audit_admin, a member) only; EXECUTE is revoked from PUBLIC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "audit_ext.h"

PG_FUNCTION_INFO_V1(audit_log_event);

/* an action fits the queue record's field (and a command tag's length) */
#define APP_ACTION_MAX	(sizeof(((AuditQueueEntry *) NULL)->action) - 1)
#define APP_ENTITY_MAX	(NAMEDATALEN - 1)

/*
 * The documented application actions and their default risk
 * (docs/reading.md, "Application events"; audit.app_actions() lists the
 * same table in SQL).
 */
const AuditAppAction audit_app_actions[] = {
	{"LOGIN", "low"},
	{"LOGIN_FAILED", "medium"},
	{"LOGOUT", "low"},
	{"PASSWORD_CHANGE", "medium"},
	{"PASSWORD_RESET", "medium"},
	{"MFA_ENROLL", "medium"},
	{"MFA_FAILED", "medium"},
	{"ACCOUNT_LOCKED", "high"},
	{"ACCOUNT_UNLOCKED", "medium"},
	{"API_KEY_CREATE", "high"},
	{"API_KEY_REVOKE", "medium"},
	{"PERMISSION_CHANGE", "high"},
	{"ROLE_CHANGE", "high"},
	{"SETTINGS_CHANGE", "medium"},
	{"EXPORT", "medium"},
	{"IMPORT", "medium"},
	{"REPORT_GENERATED", "low"},
	{"VIEW", "low"},
	{"CREATE", "low"},
	{"UPDATE", "low"},
	{"DELETE", "medium"},
	{NULL, NULL}
};

/* The default risk of an application action (custom actions: low). */
const char *
audit_app_default_risk(const char *action)
{
	for (int i = 0; audit_app_actions[i].action != NULL; i++)
		if (strcmp(audit_app_actions[i].action, action) == 0)
			return audit_app_actions[i].risk;
	return "low";
}

bool
audit_valid_risk(const char *risk)
{
	return strcmp(risk, "low") == 0 || strcmp(risk, "medium") == 0 ||
		strcmp(risk, "high") == 0 || strcmp(risk, "critical") == 0;
}

/* Upper-case words of A-Z, 0-9 and _, separated by single spaces. */
static bool
action_shape_ok(const char *s)
{
	bool		word_start = true;

	for (const char *p = s; *p; p++)
	{
		if (word_start)
		{
			if (*p < 'A' || *p > 'Z')
				return false;
			word_start = false;
		}
		else if (*p == ' ')
			word_start = true;
		else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	}
	return !word_start;
}

static void
check_action(const char *action)
{
	if (action[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid action \"\": must not be empty"),
				 errhint("Give an upper-case action such as LOGIN, LOGIN_FAILED or EXPORT.")));
	if (strlen(action) > APP_ACTION_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid action \"%s\": longer than %d bytes", action, (int) APP_ACTION_MAX),
				 errhint("Use a shorter action name and put the particulars in detail.")));
	if (!action_shape_ok(action))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid action \"%s\": not an upper-case action name", action),
				 errdetail("Actions are upper-case words of letters, digits and underscores separated by single spaces, as command tags are."),
				 errhint("Known application actions: LOGIN, LOGIN_FAILED, LOGOUT, PASSWORD_CHANGE, EXPORT ... (audit.app_actions() lists them); others of that shape are accepted as custom actions.")));
}

static Jsonb *
object_arg(FunctionCallInfo fcinfo, int argno, const char *name, bool nonempty)
{
	Jsonb	   *j;

	if (PG_ARGISNULL(argno))
		return NULL;
	j = PG_GETARG_JSONB_P(argno);
	if (!JB_ROOT_IS_OBJECT(j) || (nonempty && JB_ROOT_COUNT(j) == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s %s: must be a %sJSON object", name,
						JsonbToCString(NULL, &j->root, VARSIZE(j)),
						nonempty ? "non-empty " : ""),
				 nonempty ? errhint("Give the record's key, e.g. {\"id\": 42}.") : 0));
	return j;
}

/* The top-level keys of an object, appended to *keys (NULL: not an object). */
static void
collect_keys(Jsonb *j, List **keys)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return;
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY)
			*keys = lappend(*keys, pnstrdup(v.val.string.val, v.val.string.len));
}

static int
cmp_cstr(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

static Jsonb *
value_of(Jsonb *j, const char *key)
{
	JsonbValue *v;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return NULL;
	v = getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
	return v ? JsonbValueToJsonb(v) : NULL;
}

/*
 * changed_columns of an application event: the keys of old_value and
 * new_value (objects) whose values differ, a key missing on one side
 * counting as changed; sorted.  NULL when neither is an object.
 */
static bool
app_changed_columns(Jsonb *old_value, Jsonb *new_value, Datum *result)
{
	List	   *keys = NIL;
	List	   *changed = NIL;
	ListCell   *lc;
	const char *prev = NULL;
	Datum	   *elems;
	int			n = 0;

	if ((old_value == NULL || !JB_ROOT_IS_OBJECT(old_value)) &&
		(new_value == NULL || !JB_ROOT_IS_OBJECT(new_value)))
		return false;
	collect_keys(old_value, &keys);
	collect_keys(new_value, &keys);
	list_sort(keys, cmp_cstr);
	foreach(lc, keys)
	{
		const char *k = lfirst(lc);
		Jsonb	   *a;
		Jsonb	   *b;

		if (prev && strcmp(prev, k) == 0)
			continue;
		prev = k;
		a = value_of(old_value, k);
		b = value_of(new_value, k);
		if (a == NULL || b == NULL || compareJsonbContainers(&a->root, &b->root) != 0)
			changed = lappend(changed, (void *) k);
	}
	elems = palloc(sizeof(Datum) * Max(1, list_length(changed)));
	foreach(lc, changed)
		elems[n++] = CStringGetTextDatum((const char *) lfirst(lc));
	*result = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	return true;
}

/*
 * The application's part of an event: entity (table_name; schema_name stays
 * NULL), record_id, old_value/new_value (old_data/new_data) and the
 * changed columns, detail.  Shared by both paths (the worker calls it with
 * what the queue record carried).
 */
void
audit_app_event_fill(AuditEventValues *ev, const char *entity, Jsonb *record_id,
					 Jsonb *old_value, Jsonb *new_value, Jsonb *detail)
{
	Datum		changed;

	ev->nulls[AC_SCHEMA_NAME] = true;
	if (entity && entity[0] != '\0')
	{
		ev->values[AC_TABLE_NAME] = CStringGetTextDatum(entity);
		ev->nulls[AC_TABLE_NAME] = false;
	}
	if (record_id)
	{
		ev->values[AC_RECORD_ID] = JsonbPGetDatum(record_id);
		ev->nulls[AC_RECORD_ID] = false;
	}
	if (old_value)
	{
		ev->values[AC_OLD_DATA] = JsonbPGetDatum(old_value);
		ev->nulls[AC_OLD_DATA] = false;
	}
	if (new_value)
	{
		ev->values[AC_NEW_DATA] = JsonbPGetDatum(new_value);
		ev->nulls[AC_NEW_DATA] = false;
	}
	if (app_changed_columns(old_value, new_value, &changed))
	{
		ev->values[AC_CHANGED_COLUMNS] = changed;
		ev->nulls[AC_CHANGED_COLUMNS] = false;
	}
	if (detail)
	{
		ev->values[AC_DETAIL] = JsonbPGetDatum(detail);
		ev->nulls[AC_DETAIL] = false;
	}
}

/* push key: a Jsonb value (skipped when NULL) */
static void
push_jsonb_pair(JsonbParseState **st, const char *key, Jsonb *value)
{
	JsonbValue	k;
	JsonbValue	v;

	if (value == NULL)
		return;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_text_pair(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	if (value == NULL)
		return;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

/*
 * The queue record's detail of a survive_rollback event:
 * {"app": {"record_id": ..., "old_value": ..., "new_value": ..., "detail":
 * ..., "risk": ...}}.  Only audit.log_event() makes records of class app, so
 * the worker trusts this shape for that class only.
 */
static void
pack_queued(AuditQueueEntry *e, Jsonb *record_id, Jsonb *old_value,
			Jsonb *new_value, Jsonb *detail, const char *risk)
{
	JsonbParseState *st = NULL;
	JsonbValue	k;
	Jsonb	   *inner;
	Jsonb	   *outer;
	char	   *text;
	size_t		len;

	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_jsonb_pair(&st, "record_id", record_id);
	push_jsonb_pair(&st, "old_value", old_value);
	push_jsonb_pair(&st, "new_value", new_value);
	push_jsonb_pair(&st, "detail", detail);
	push_text_pair(&st, "risk", risk);
	inner = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));

	st = NULL;
	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "app";
	k.val.string.len = 3;
	(void) pushJsonbValue(&st, WJB_KEY, &k);
	{
		JsonbValue	v;

		v.type = jbvBinary;
		v.val.binary.data = &inner->root;
		v.val.binary.len = VARSIZE(inner) - VARHDRSZ;
		(void) pushJsonbValue(&st, WJB_VALUE, &v);
	}
	outer = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	text = JsonbToCString(NULL, &outer->root, VARSIZE(outer));
	len = strlen(text);
	if (len >= sizeof(e->detail))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("application event too large to survive a rollback: %zu bytes", len),
				 errdetail("An event queued with survive_rollback => true carries its record_id, old_value, new_value and detail in at most %d bytes of JSON.",
						   (int) sizeof(e->detail) - 1),
				 errhint("Record large values without survive_rollback, or leave them out of the event.")));
	memcpy(e->detail, text, len + 1);
}

/*
 * The worker's side: a queued record of class app back into an event.
 * The record's detail is what pack_queued() wrote.
 */
void
audit_app_event_unpack(AuditEventValues *ev, const char *entity, const char *packed)
{
	Jsonb	   *outer;
	Jsonb	   *inner;

	if (packed == NULL || packed[0] == '\0')
	{
		audit_app_event_fill(ev, entity, NULL, NULL, NULL, NULL);
		return;
	}
	outer = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(packed)));
	inner = value_of(outer, "app");
	{
		/* the risk the application gave (1.6), checked when it was queued */
		JsonbValue *r = NULL;

		if (inner != NULL && JB_ROOT_IS_OBJECT(inner))
			r = getKeyJsonValueFromContainer(&inner->root, "risk", 4, NULL);
		if (r != NULL && r->type == jbvString)
		{
			int			level = audit_risk_level(pnstrdup(r->val.string.val, r->val.string.len));

			if (level > 0)
			{
				ev->values[AC_RISK] = audit_risk_datum(level);
				ev->nulls[AC_RISK] = false;
			}
		}
	}
	audit_app_event_fill(ev, entity,
						 value_of(inner, "record_id"),
						 value_of(inner, "old_value"),
						 value_of(inner, "new_value"),
						 value_of(inner, "detail"));
}

/*
 * audit.log_event(action text, entity text, record_id jsonb, old_value jsonb,
 *				   new_value jsonb, status text, risk text, detail jsonb,
 *				   survive_rollback boolean) RETURNS bigint
 */
Datum
audit_log_event(PG_FUNCTION_ARGS)
{
	char	   *action;
	char	   *entity = NULL;
	char	   *status = "success";
	char	   *risk = NULL;
	Jsonb	   *record_id;
	Jsonb	   *old_value = NULL;
	Jsonb	   *new_value = NULL;
	Jsonb	   *detail;
	bool		survive = !PG_ARGISNULL(8) && PG_GETARG_BOOL(8);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid action: must not be NULL"),
				 errhint("Give an upper-case action such as LOGIN, LOGIN_FAILED or EXPORT.")));
	action = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_action(action);

	if (!PG_ARGISNULL(1))
	{
		entity = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (entity[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid entity \"\": must not be empty"),
					 errhint("Leave entity NULL for an event that concerns no entity.")));
		if (strlen(entity) > APP_ENTITY_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid entity: longer than %d bytes", (int) APP_ENTITY_MAX),
					 errdetail("The entity is recorded as the event's table_name, a name of at most %d bytes.",
							   (int) APP_ENTITY_MAX)));
	}
	record_id = object_arg(fcinfo, 2, "record_id", true);
	if (!PG_ARGISNULL(3))
		old_value = PG_GETARG_JSONB_P(3);
	if (!PG_ARGISNULL(4))
		new_value = PG_GETARG_JSONB_P(4);
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid status: must not be NULL"),
				 errhint("status is success or failure.")));
	status = text_to_cstring(PG_GETARG_TEXT_PP(5));
	if (strcmp(status, "success") != 0 && strcmp(status, "failure") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid status \"%s\": must be success or failure", status)));
	if (!PG_ARGISNULL(6))
	{
		risk = text_to_cstring(PG_GETARG_TEXT_PP(6));
		if (!audit_valid_risk(risk))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid risk \"%s\": must be low, medium, high or critical", risk),
					 errhint("Leave risk NULL for the action's default (audit.app_actions()).")));
	}
	detail = object_arg(fcinfo, 7, "detail", false);

	if (survive)
	{
		AuditQueueEntry e;

		if (!audit_fill_entry_for_session(&e, "app", action, strcmp(status, "failure") == 0))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("survive_rollback needs audit_ext in shared_preload_libraries"),
					 errdetail("Such events travel through the shared-memory queue and the background worker%s.",
							   IsParallelWorker() ? ", which a parallel worker cannot reach" : ""),
					 errhint("Add audit_ext to shared_preload_libraries and restart, or record the event with survive_rollback => false.")));
		audit_fill_entry_from_statement(&e, debug_query_string);
		if (entity)
			strlcpy(e.table_name, entity, sizeof(e.table_name));
		pack_queued(&e, record_id, old_value, new_value, detail, risk);
		if (!audit_queue_enqueue(&e))
			ereport(WARNING,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("application event %s was not queued: the security-event queue is full or this session exceeded its rate", action),
					 errdetail("The drop is counted and recorded as a system/QUEUE_OVERFLOW event."),
					 errhint("See audit.worker_status(); audit_ext.bulk_events_burst and audit_ext.bulk_events_per_second bound a session's queued events.")));
		PG_RETURN_NULL();
	}
	else
	{
		AuditEventValues ev;

		audit_event_init(&ev, "app", action);
		if (strcmp(status, "failure") == 0)
			ev.values[AC_STATUS] = CStringGetTextDatum("failure");
		audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE);
		audit_app_event_fill(&ev, entity, record_id, old_value, new_value, detail);
		/* 1.6: the level given, else the rules' or the action's default at emit */
		if (risk)
		{
			ev.values[AC_RISK] = audit_risk_datum(audit_risk_level(risk));
			ev.nulls[AC_RISK] = false;
		}
		audit_event_emit(&ev);
		PG_RETURN_INT64(DatumGetInt64(ev.values[AC_ID]));
	}
}
