/*-------------------------------------------------------------------------
 *
 * app_context.c
 *		The application's end-user context (1.6): audit.set_context(),
 *		audit.clear_context(), audit.current_context(), and the context of
 *		every event captured while one is set.
 *
 * The context lives in a GUC of its own, audit_ext.context (not shown,
 * not settable in the configuration file), whose value is the context as
 * canonical JSON text.  A GUC gives exactly the semantics the issue asks
 * for without any bookkeeping of ours: set_context(is_local => true) is SET
 * LOCAL (gone at COMMIT or ROLLBACK, restored by ROLLBACK TO SAVEPOINT and
 * at the end of a function with a SET clause), is_local => false is SET
 * (undone by a rollback of the transaction that set it), and DISCARD ALL /
 * RESET ALL (a pooler's reset query) clear it.  It is never written to a
 * table.  Behind PgBouncer in transaction pooling mode, a context set with
 * is_local => true cannot outlive the client's transaction, so the next
 * client on the same server connection never sees it
 * (test/e2e/pgbouncer.sh).
 *
 * The check hook validates every value, whatever route it came by (SET,
 * set_config, PGOPTIONS): a JSON object of at most audit_ext.max_context_bytes
 * bytes whose client_ip is an address.  Its "extra" is the jsonb form,
 * which the event writer stores as audit.event.context with no parsing per
 * event (event_writer.c); queued events carry the text
 * (AuditQueueEntry.context, auth_hooks.c), which the worker parses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "audit_ext.h"

PG_FUNCTION_INFO_V1(audit_set_context);
PG_FUNCTION_INFO_V1(audit_clear_context);
PG_FUNCTION_INFO_V1(audit_current_context);

char	   *audit_context_text = NULL;
int			audit_max_context_bytes = 1024;
char	   *audit_context_index_keys = NULL;
static Jsonb *context_jsonb = NULL;	/* the GUC's extra, malloc'd */

/*
 * The context audit.set_context() is setting, built and checked by it, and
 * its text: the check hook takes it as it is instead of parsing the text
 * again (about 5 µs of a 13 µs call, perf).  Set only around that one
 * set_config_option() call; any other way of setting audit_ext.context
 * (SET, set_config(), PGOPTIONS) is parsed and checked in full.
 */
static Jsonb *pending_context = NULL;
static const char *pending_context_text = NULL;
static bool pending_context_local = true;

/* the documented keys, in the order of set_context's arguments */
static const char *const context_keys[] = {
	"client_ip", "session_id", "user_agent", "user_role", "tenant", "request_id"
};
#define N_CONTEXT_KEYS lengthof(context_keys)

static bool
is_documented_key(const char *k, int len)
{
	for (int i = 0; i < (int) N_CONTEXT_KEYS; i++)
		if ((int) strlen(context_keys[i]) == len && strncmp(context_keys[i], k, len) == 0)
			return true;
	/* actor is a column of its own: a context key of that name would shadow it */
	return len == 5 && strncmp(k, "actor", 5) == 0;
}

/* jsonb from text without throwing: NULL when not valid JSON */
static Jsonb *
parse_jsonb_soft(const char *text)
{
	Jsonb	   *volatile result = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

static bool
valid_inet_text(const char *s)
{
	volatile bool ok = true;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) DirectFunctionCall1(inet_in, CStringGetDatum(s));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * A check hook's new value and extra belong to guc.c, which frees them: with
 * free() up to 15, with pfree() (they live in its own memory context) from
 * 16 on.  Memory from the wrong allocator crashed 17 at the first rollback
 * of a transaction that had set a context ("pfree called with invalid
 * pointer").
 */
static void *
context_guc_malloc(size_t size)
{
#if PG_VERSION_NUM >= 160000
	return guc_malloc(LOG, size);
#else
	return malloc(size);
#endif
}

static void
context_guc_free(void *ptr)
{
#if PG_VERSION_NUM >= 160000
	guc_free(ptr);
#else
	free(ptr);
#endif
}

/*
 * audit_ext.context: '' (none) or a JSON object of at most
 * audit_ext.max_context_bytes bytes, client_ip (if present) a string that
 * is an address.  The value is replaced by jsonb's canonical text.
 */
bool
audit_check_context(char **newval, void **extra, GucSource source)
{
	Jsonb	   *j;
	JsonbValue *ip;
	char	   *canon;
	size_t		len;
	Jsonb	   *copy;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		*extra = NULL;
		return true;
	}
	if (pending_context != NULL && pending_context_text != NULL &&
		strcmp(*newval, pending_context_text) == 0)
	{
		/* audit.set_context()'s own: canonical text, every rule checked */
		copy = context_guc_malloc(VARSIZE(pending_context));
		if (copy == NULL)
			return false;
		memcpy(copy, pending_context, VARSIZE(pending_context));
		*extra = copy;
		return true;
	}
	j = parse_jsonb_soft(*newval);
	if (j == NULL || !JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
	{
		GUC_check_errdetail("audit_ext.context must be a JSON object; use audit.set_context().");
		return false;
	}
	/*
	 * The rules of audit.set_context() hold for SET, set_config() and
	 * PGOPTIONS too (up to the 1.6 security review only client_ip was
	 * checked here): no "actor" key (the actor is audit_ext.actor, under
	 * audit_ext.actor_roles), and the documented keys are strings.
	 */
	{
		JsonbIterator *it = JsonbIteratorInit(&j->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		bool		documented = false;
		int			level = 0;

		while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		{
			if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
				level++;
			else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
				level--;
			if (level == 1 && tok == WJB_KEY)
			{
				if (v.val.string.len == 5 && strncmp(v.val.string.val, "actor", 5) == 0)
				{
					GUC_check_errdetail("The context cannot name an actor.");
					GUC_check_errhint("Set audit_ext.actor (or audit.set_context(actor => ...)), which audit_ext.actor_roles governs.");
					return false;
				}
				documented = is_documented_key(v.val.string.val, v.val.string.len);
			}
			else if (documented && (tok == WJB_VALUE || tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY))
			{
				if (tok != WJB_VALUE || (v.type != jbvString && v.type != jbvNull))
				{
					GUC_check_errdetail("The documented context keys (client_ip, session_id, user_agent, user_role, tenant, request_id) are strings.");
					return false;
				}
				documented = false;
			}
		}
	}
	ip = getKeyJsonValueFromContainer(&j->root, "client_ip", 9, NULL);
	if (ip != NULL &&
		(ip->type != jbvString ||
		 !valid_inet_text(pnstrdup(ip->val.string.val, ip->val.string.len))))
	{
		GUC_check_errdetail("client_ip must be an IP address.");
		return false;
	}
	canon = JsonbToCString(NULL, &j->root, VARSIZE(j));
	len = strlen(canon);
	if (len > (size_t) audit_max_context_bytes)
	{
		GUC_check_errdetail("The context is %zu bytes; audit_ext.max_context_bytes is %d.",
							len, audit_max_context_bytes);
		return false;
	}
	if (JB_ROOT_COUNT(j) == 0)
	{
		*extra = NULL;
		canon = "";
	}
	else
	{
		copy = context_guc_malloc(VARSIZE(j));
		if (copy == NULL)
			return false;
		memcpy(copy, j, VARSIZE(j));
		*extra = copy;
	}
	if (strcmp(canon, *newval) != 0)
	{
		char	   *v = context_guc_malloc(strlen(canon) + 1);

		if (v == NULL)
			return false;
		strcpy(v, canon);
		context_guc_free(*newval);
		*newval = v;
	}
	return true;
}

void
audit_assign_context(const char *newval, void *extra)
{
	context_jsonb = (Jsonb *) extra;
}

/*
 * The keys whose values decide a context run (audit_context_same_run()):
 * the keys audit.search() can lead with through a context index
 * (client_ip, session_id, tenant) always, and every key in
 * audit_ext.context_index_keys.  Bit i is context_keys[i].
 */
#define CONTEXT_SEARCH_KEYS ((1 << 0) | (1 << 1) | (1 << 4))
static int	context_run_keys = CONTEXT_SEARCH_KEYS;

/*
 * audit_ext.context_index_keys: a comma-separated list of documented keys
 * ('' for none), each given a btree on new event partitions
 * (audit.create_event_indexes).
 */
bool
audit_check_context_index_keys(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *keys;
	ListCell   *lc;
	int			mask = 0;
	int		   *result;

	if (*newval != NULL && (*newval)[0] != '\0')
	{
		copy = pstrdup(*newval);
		if (!SplitIdentifierString(copy, ',', &keys))
		{
			GUC_check_errdetail("List syntax is invalid.");
			return false;
		}
		foreach(lc, keys)
		{
			const char *k = (const char *) lfirst(lc);
			bool		known = false;

			for (int i = 0; i < (int) N_CONTEXT_KEYS; i++)
				if (strcmp(context_keys[i], k) == 0)
				{
					known = true;
					mask |= 1 << i;
				}
			if (!known)
			{
				GUC_check_errdetail("\"%s\" is not a context key.", k);
				GUC_check_errhint("Index any of client_ip, session_id, user_agent, user_role, tenant, request_id.");
				return false;
			}
		}
		list_free(keys);
		pfree(copy);
	}
	result = context_guc_malloc(sizeof(int));
	if (result == NULL)
		return false;
	*result = mask;
	*extra = result;
	return true;
}

void
audit_assign_context_index_keys(const char *newval, void *extra)
{
	context_run_keys = CONTEXT_SEARCH_KEYS | (extra ? *(int *) extra : 0);
}

/*
 * Do two contexts belong to one context run?  They do when every key of
 * context_run_keys is absent from both or has the same value in both:
 * a context that changes only in its request id, user agent, user role or
 * extra keys (set per request by an application that keeps its end-user
 * session)
 * continues the run, so it enters no context index.  A search by a key
 * reads the run's id range and tests every event (audit.search), so only
 * the keys it leads with, and the indexed ones, must hold across a run.
 */
bool
audit_context_same_run(Jsonb *a, Jsonb *b)
{
	if (!JB_ROOT_IS_OBJECT(a) || !JB_ROOT_IS_OBJECT(b))
		return false;
	for (int i = 0; i < (int) N_CONTEXT_KEYS; i++)
	{
		JsonbValue *va;
		JsonbValue *vb;
		bool		same;

		if (!(context_run_keys & (1 << i)))
			continue;
		va = getKeyJsonValueFromContainer(&a->root, context_keys[i],
										  strlen(context_keys[i]), NULL);
		vb = getKeyJsonValueFromContainer(&b->root, context_keys[i],
										  strlen(context_keys[i]), NULL);
		if (va == NULL || vb == NULL)
			same = va == vb;
		else if (va->type == jbvString && vb->type == jbvString)
			same = va->val.string.len == vb->val.string.len &&
				memcmp(va->val.string.val, vb->val.string.val, va->val.string.len) == 0;
		else					/* a documented key is a string or null */
			same = va->type == jbvNull && vb->type == jbvNull;
		if (va)
			pfree(va);
		if (vb)
			pfree(vb);
		if (!same)
			return false;
	}
	return true;
}

/* The context of an event captured now; false when none is set. */
bool
audit_current_context_datum(Datum *value)
{
	if (context_jsonb == NULL)
		return false;
	*value = PointerGetDatum(context_jsonb);
	return true;
}

static void
push_string(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
set_guc(const char *name, const char *value, bool is_local)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 is_local ? GUC_ACTION_LOCAL : GUC_ACTION_SET,
							 true, 0, false);
}

/*
 * Set audit_ext.context to a context set_context() has built and checked,
 * handing it to the check hook (pending_context).  Nothing of the caller's
 * lives across the PG_TRY (gcc 14's -Wclobbered).
 */
static void
set_checked_context(Jsonb *j, const char *text, bool is_local)
{
	pending_context = j;
	pending_context_text = text;
	pending_context_local = is_local;
	PG_TRY();
	{
		set_guc("audit_ext.context", pending_context_text, pending_context_local);
	}
	PG_FINALLY();
	{
		pending_context = NULL;
		pending_context_text = NULL;
	}
	PG_END_TRY();
}

/*
 * audit.set_context(actor text, client_ip inet, session_id text,
 *					 user_agent text, user_role text, tenant text,
 *					 request_id text, extra jsonb, is_local boolean)
 */
Datum
audit_set_context(PG_FUNCTION_ARGS)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	Jsonb	   *j;
	char	   *ctx_text;
	size_t		len;
	bool		is_local = PG_ARGISNULL(8) ? true : PG_GETARG_BOOL(8);

	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (!PG_ARGISNULL(1))
		push_string(&st, "client_ip",
					DatumGetCString(DirectFunctionCall1(inet_out, PG_GETARG_DATUM(1))));
	for (int i = 1; i < (int) N_CONTEXT_KEYS; i++)
	{
		char	   *v;

		if (PG_ARGISNULL(i + 1))
			continue;
		v = text_to_cstring(PG_GETARG_TEXT_PP(i + 1));
		if (v[0] == '\0')
			continue;			/* absent keys omitted */
		push_string(&st, context_keys[i], v);
	}
	if (!PG_ARGISNULL(7))
	{
		Jsonb	   *extra = PG_GETARG_JSONB_P(7);
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		if (!JB_ROOT_IS_OBJECT(extra) || JB_ROOT_IS_SCALAR(extra))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid extra: must be a JSON object"),
					 errhint("Give further context as keys and values, e.g. {\"device\": \"kiosk-7\"}.")));
		it = JsonbIteratorInit(&extra->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				if (is_documented_key(v.val.string.val, v.val.string.len))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid extra: key \"%s\" shadows a documented context key",
									pnstrdup(v.val.string.val, v.val.string.len)),
							 errhint("Give %s as its own argument of audit.set_context().",
									 pnstrdup(v.val.string.val, v.val.string.len))));
				(void) pushJsonbValue(&st, WJB_KEY, &v);
			}
			else if (tok == WJB_VALUE)
				(void) pushJsonbValue(&st, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	j = JsonbValueToJsonb(res);
	ctx_text = JB_ROOT_COUNT(j) > 0 ? JsonbToCString(NULL, &j->root, VARSIZE(j)) : "";
	len = strlen(ctx_text);
	if (len > (size_t) audit_max_context_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context too large: %zu bytes, audit_ext.max_context_bytes is %d",
						len, audit_max_context_bytes),
				 errdetail("Every event captured while the context is set carries it."),
				 errhint("Keep the context to identifiers; record particulars in an event's detail.")));

	if (ctx_text[0] == '\0')
		set_guc("audit_ext.context", ctx_text, is_local);
	else
		set_checked_context(j, ctx_text, is_local);
	if (!PG_ARGISNULL(0))
		set_guc("audit_ext.actor", text_to_cstring(PG_GETARG_TEXT_PP(0)), is_local);
	PG_RETURN_VOID();
}

/* audit.clear_context(): no context from here on (in this session) */
Datum
audit_clear_context(PG_FUNCTION_ARGS)
{
	set_guc("audit_ext.context", "", false);
	PG_RETURN_VOID();
}

/* audit.current_context() RETURNS jsonb: NULL when none is set */
Datum
audit_current_context(PG_FUNCTION_ARGS)
{
	Jsonb	   *copy;

	if (context_jsonb == NULL)
		PG_RETURN_NULL();
	copy = palloc(VARSIZE(context_jsonb));
	memcpy(copy, context_jsonb, VARSIZE(context_jsonb));
	PG_RETURN_JSONB_P(copy);
}

/* the context as text for a queue record ("" none; fits AUDIT_QUEUE_CONTEXT_LEN) */
void
audit_context_for_queue(char *dst, size_t size)
{
	dst[0] = '\0';
	if (context_jsonb != NULL && audit_context_text != NULL &&
		strlen(audit_context_text) < size)
		strlcpy(dst, audit_context_text, size);
}
