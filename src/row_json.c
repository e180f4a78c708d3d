/*-------------------------------------------------------------------------
 *
 * row_json.c
 *		Turn column values into jsonb values, as to_jsonb() would.
 *
 * Each audited column gets a category once (when the table's capture cache
 * is built); per row, the common scalar types are converted directly into
 * JsonbValues, without going through text.  Everything else (arrays,
 * composites, ranges, ...) goes through PostgreSQL's own to_jsonb(), so the
 * JSON is the same as what a user would get from to_jsonb(row) -- under
 * canonical settings: the trail must not depend on the session that wrote
 * it (a timestamptz key written under three TimeZones had three record_ids).
 * So timestamptz is written in UTC, interval in ISO 8601, floats as their
 * shortest exact decimal, bytea in hex, and a type that contains one of
 * those (or money) inside an array, composite or range is converted with
 * TimeZone, IntervalStyle, extra_float_digits, bytea_output and lc_monetary
 * set to UTC, iso_8601, 1, hex and C for the call (audit.canonical_jsonb()
 * gives the same form to the reading functions' lookups).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/fmgroids.h"
#include "funcapi.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "audit_ext.h"

/*
 * Does a value of this type contain one of a base type that wanted()
 * accepts?  Domains, arrays, composites and ranges are looked through.
 */
static bool
type_contains(Oid typid, bool (*wanted) (Oid base), int depth)
{
	Oid			base = getBaseType(typid);
	Oid			elem;
	char		typtype;
	bool		found = false;

	if (wanted(base))
		return true;
	if (depth > 16)
		return false;
	elem = get_element_type(base);
	if (OidIsValid(elem))
		return type_contains(elem, wanted, depth + 1);
	typtype = get_typtype(base);
	if (typtype == TYPTYPE_RANGE)
		return type_contains(get_range_subtype(base), wanted, depth + 1);
	if (typtype == TYPTYPE_MULTIRANGE)
		return type_contains(get_range_subtype(get_multirange_range(base)), wanted, depth + 1);
	if (typtype == TYPTYPE_COMPOSITE)
	{
		TupleDesc	td = lookup_rowtype_tupdesc(base, -1);

		for (int i = 0; i < td->natts && !found; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);

			if (!att->attisdropped)
				found = type_contains(att->atttypid, wanted, depth + 1);
		}
		ReleaseTupleDesc(td);
	}
	return found;
}

/*
 * json, which jsonb cannot always represent: the json type only checks
 * syntax, so "\u0000" (and, in a database that is not UTF-8, other \u
 * escapes) is valid json but not valid jsonb: converting such a value made
 * the audited INSERT or UPDATE itself fail (found by
 * test/unusual_columns.sql).
 */
static bool
is_json(Oid base)
{
	return base == JSONOID;
}

/*
 * A type whose text (or to_jsonb) form depends on a session setting; other
 * types' output functions are taken to be setting-free.
 */
static bool
depends_on_settings(Oid base)
{
	switch (base)
	{
		case TIMESTAMPTZOID:
		case INTERVALOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case BYTEAOID:
		case CASHOID:
			return true;
		default:
			return false;
	}
}

/*
 * Run fn(arg) with the canonical settings (see the header), restored
 * afterwards (an error restores them with the (sub)transaction).
 */
static Datum
call_with_canonical_settings(FmgrInfo *fn, Datum arg)
{
	int			nest = NewGUCNestLevel();
	Datum		result;

	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("IntervalStyle", "iso_8601", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("lc_monetary", "C", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	result = FunctionCall1(fn, arg);
	AtEOXact_GUC(true, nest);
	return result;
}

/*
 * A type with a cast to json whose function is SQL or PL code (not C or
 * internal, which only a superuser can create): to_jsonb() calls such a
 * cast, so converting a value runs its owner's code.  The capture worker
 * (capture => 'wal') does not run it: it decodes outside any snapshot, where
 * SQL cannot run at all, and a cast that failed there failed on the same
 * change after every restart, stopping capture of every WAL-mode table of
 * the database (found by the 1.6 security review).  There a column of such a
 * type (or containing one) is recorded as its text (its output function).
 */
static bool
has_user_json_cast(Oid base)
{
	Oid			castfunc = InvalidOid;
	HeapTuple	tup;
	Oid			lang;

	if (base < FirstNormalObjectId ||
		find_coercion_pathway(JSONOID, base, COERCION_EXPLICIT, &castfunc) != COERCION_PATH_FUNC)
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(castfunc));
	if (!HeapTupleIsValid(tup))
		return true;
	lang = ((Form_pg_proc) GETSTRUCT(tup))->prolang;
	ReleaseSysCache(tup);
	return lang != ClanguageId && lang != INTERNALlanguageId;
}

void
audit_json_column_init(AuditColumnInfo *col, Oid typid, const char *name,
					   MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	Oid			outfn;
	bool		isvarlena;

	col->name = pstrdup(name);
	col->namelen = strlen(name);
	col->typid = typid;
	col->basetypid = getBaseType(typid);

	switch (col->basetypid)
	{
		case BOOLOID:
			col->category = AJC_BOOL;
			break;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			col->category = AJC_INT;
			break;
		case NUMERICOID:
			col->category = AJC_NUMERIC;
			break;
		case FLOAT4OID:
		case FLOAT8OID:
			col->category = AJC_FLOAT;
			break;
		case TEXTOID:
		case VARCHAROID:
			col->category = AJC_TEXT;
			break;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			col->category = AJC_DATETIME;
			break;
		case JSONBOID:
			col->category = AJC_JSONB;
			break;
		case JSONOID:
			col->category = AJC_JSON;
			break;
		case INTERVALOID:
			col->category = AJC_INTERVAL;
			break;
		case BYTEAOID:
			col->category = AJC_BYTEA;
			break;
		default:
			{
				char		typtype = get_typtype(col->basetypid);
				Oid			castfunc;

				/*
				 * The last test is to_jsonb()'s own rule for types of
				 * extensions with a cast to json (hstore becomes an object):
				 * without it they were recorded as strings (found by
				 * test/unusual_columns.sql).
				 */
				if (audit_in_wal_worker() && type_contains(typid, has_user_json_cast, 0))
					col->category = AJC_OUTPUT;
				else if (OidIsValid(get_element_type(col->basetypid)) ||
					typtype == TYPTYPE_COMPOSITE || typtype == TYPTYPE_RANGE ||
					typtype == TYPTYPE_MULTIRANGE ||
					col->basetypid == RECORDOID ||
					(col->basetypid >= FirstNormalObjectId &&
					 find_coercion_pathway(JSONOID, col->basetypid, COERCION_EXPLICIT,
										   &castfunc) == COERCION_PATH_FUNC))
				{
					/* to_jsonb() of this type, with the argument type known */
					FuncExpr   *expr;

					col->category = AJC_TO_JSONB;
					fmgr_info_cxt(F_TO_JSONB, &col->tojsonb, mcxt);
					expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
										list_make1(makeNullConst(typid, -1, InvalidOid)),
										InvalidOid, InvalidOid,
										COERCE_EXPLICIT_CALL);
					col->tojsonb.fn_expr = (Node *) expr;
				}
				else
					col->category = AJC_OUTPUT;
			}
			break;
	}

	/*
	 * outfunc of an AJC_TO_JSONB column marks a type that may hold json (see
	 * is_json): its values are converted with a fallback.
	 */
	col->fixed_settings = (col->category == AJC_TO_JSONB || col->category == AJC_OUTPUT) &&
		type_contains(typid, depends_on_settings, 0);
	if (col->category == AJC_OUTPUT || col->category == AJC_JSON ||
		(col->category == AJC_TO_JSONB && type_contains(typid, is_json, 0)))
	{
		getTypeOutputInfo(col->basetypid, &outfn, &isvarlena);
		fmgr_info_cxt(outfn, &col->outfunc, mcxt);
	}
	MemoryContextSwitchTo(old);
}

void
audit_json_push_key(JsonbParseState **state, AuditColumnInfo *col)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = col->name;
	k.val.string.len = col->namelen;
	(void) pushJsonbValue(state, WJB_KEY, &k);
}

static void
push_jsonb_datum(JsonbParseState **state, Jsonb *jb)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &jb->root;
	v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_string(JsonbParseState **state, char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = s;
	v.val.string.len = len;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * Run fn(arg) in an internal subtransaction of its own.  NULL when it
 * succeeded; else the subtransaction is rolled back (with whatever fn
 * changed: user id, GUC levels, locks, buffers) and the error is returned,
 * copied into the caller's memory context, for the caller to keep or
 * re-throw.  The idiom of PL/pgSQL's exception blocks.
 */
ErrorData *
audit_run_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}

typedef struct JsonbCall
{
	FmgrInfo   *fn;
	PGFunction	direct;
	Datum		arg;
	Jsonb	   *result;
} JsonbCall;

static void
jsonb_call(void *arg)
{
	JsonbCall  *c = (JsonbCall *) arg;
	Datum		d = c->fn ? FunctionCall1(c->fn, c->arg) : DirectFunctionCall1(c->direct, c->arg);

	c->result = DatumGetJsonbP(d);
}

/*
 * Convert a value to jsonb with fn (jsonb_in of json text, or to_jsonb),
 * returning NULL instead of failing when the value holds json that jsonb
 * cannot represent (a data exception).  Runs fn in a subtransaction; only
 * called for values whose text contains a \u escape, the cases where json
 * and jsonb differ.  Other errors (cancel, out of memory) are re-thrown.
 */
static Jsonb *
jsonb_or_null(FmgrInfo *fn, PGFunction direct, Datum arg)
{
	JsonbCall	c = {fn, direct, arg, NULL};
	ErrorData  *edata = audit_run_in_subxact(jsonb_call, &c);

	if (edata == NULL)
		return c.result;
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return NULL;
}

/* Push one value (the key must have been pushed already). */
void
audit_json_push_value(JsonbParseState **state, AuditColumnInfo *col,
					  Datum value, bool isnull)
{
	JsonbValue	v;

	if (isnull)
	{
		v.type = jbvNull;
		(void) pushJsonbValue(state, WJB_VALUE, &v);
		return;
	}

	switch (col->category)
	{
		case AJC_BOOL:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			(void) pushJsonbValue(state, WJB_VALUE, &v);
			break;
		case AJC_INT:
			{
				int64		i;

				if (col->basetypid == INT2OID)
					i = DatumGetInt16(value);
				else if (col->basetypid == INT4OID)
					i = DatumGetInt32(value);
				else
					i = DatumGetInt64(value);
				v.type = jbvNumeric;
				v.val.numeric = int64_to_numeric(i);
				(void) pushJsonbValue(state, WJB_VALUE, &v);
			}
			break;
		case AJC_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(value);

				if (numeric_is_nan(n) || numeric_is_inf(n))
				{
					char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));

					push_string(state, s, strlen(s));
				}
				else
				{
					v.type = jbvNumeric;
					v.val.numeric = n;
					(void) pushJsonbValue(state, WJB_VALUE, &v);
				}
			}
			break;
		case AJC_FLOAT:
			{
				/* the shortest exact decimal, whatever extra_float_digits says */
				double		d = (col->basetypid == FLOAT4OID) ?
				(double) DatumGetFloat4(value) : DatumGetFloat8(value);

				if (isnan(d))
					push_string(state, "NaN", 3);
				else if (isinf(d))
					push_string(state, d > 0 ? "Infinity" : "-Infinity", d > 0 ? 8 : 9);
				else
				{
					char	   *s = (col->basetypid == FLOAT4OID) ?
					float_to_shortest_decimal(DatumGetFloat4(value)) :
					double_to_shortest_decimal(d);

					v.type = jbvNumeric;
					v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																		CStringGetDatum(s),
																		ObjectIdGetDatum(InvalidOid),
																		Int32GetDatum(-1)));
					(void) pushJsonbValue(state, WJB_VALUE, &v);
				}
			}
			break;
		case AJC_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				push_string(state, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			break;
		case AJC_DATETIME:
			{
				/* a timestamptz in UTC, whatever TimeZone says */
				int			utc = 0;
				char	   *s = JsonEncodeDateTime(NULL, value, col->basetypid,
												   col->basetypid == TIMESTAMPTZOID ? &utc : NULL);

				push_string(state, s, strlen(s));
			}
			break;
		case AJC_JSONB:
			push_jsonb_datum(state, DatumGetJsonbP(value));
			break;
		case AJC_JSON:
			{
				char	   *s = OutputFunctionCall(&col->outfunc, value);
				Jsonb	   *jb;

				/* json that jsonb cannot hold is kept as its text */
				if (strstr(s, "\\u") == NULL)
					jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
				else
					jb = jsonb_or_null(NULL, jsonb_in, CStringGetDatum(s));
				if (jb)
					push_jsonb_datum(state, jb);
				else
					push_string(state, s, strlen(s));
			}
			break;
		case AJC_TO_JSONB:
			if (OidIsValid(col->outfunc.fn_oid))
			{
				/* may hold json: as above, for arrays and composites */
				char	   *s = OutputFunctionCall(&col->outfunc, value);
				Jsonb	   *jb = NULL;

				if (strstr(s, "\\u") == NULL)
					jb = DatumGetJsonbP(col->fixed_settings ?
										call_with_canonical_settings(&col->tojsonb, value) :
										FunctionCall1(&col->tojsonb, value));
				else
					jb = jsonb_or_null(&col->tojsonb, NULL, value);
				if (jb)
					push_jsonb_datum(state, jb);
				else
					push_string(state, s, strlen(s));
			}
			else if (col->fixed_settings)
				push_jsonb_datum(state, DatumGetJsonbP(call_with_canonical_settings(&col->tojsonb, value)));
			else
				push_jsonb_datum(state, DatumGetJsonbP(FunctionCall1(&col->tojsonb, value)));
			break;
		case AJC_OUTPUT:
			{
				char	   *s = col->fixed_settings ?
				DatumGetCString(call_with_canonical_settings(&col->outfunc, value)) :
				OutputFunctionCall(&col->outfunc, value);

				push_string(state, s, strlen(s));
			}
			break;
		case AJC_INTERVAL:
			{
				Interval   *span = DatumGetIntervalP(value);
				char		buf[MAXDATELEN + 1];
				char	   *s = buf;

#if PG_VERSION_NUM >= 170000
				if (INTERVAL_NOT_FINITE(span))
					s = DatumGetCString(DirectFunctionCall1(interval_out, value));
				else
#endif
				{
					struct pg_itm itm;

					interval2itm(*span, &itm);
					EncodeInterval(&itm, INTSTYLE_ISO_8601, buf);
					s = pstrdup(buf);	/* the JsonbValue keeps the pointer */
				}
				push_string(state, s, strlen(s));
			}
			break;
		case AJC_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(value);
				int			len = VARSIZE_ANY_EXHDR(b);
				char	   *s = palloc(len * 2 + 3);

				s[0] = '\\';
				s[1] = 'x';
				s[2 + hex_encode(VARDATA_ANY(b), len, s + 2)] = '\0';
				push_string(state, s, len * 2 + 2);
			}
			break;
	}
}

PG_FUNCTION_INFO_V1(audit_canonical_jsonb);

/*
 * audit.canonical_jsonb(r anyelement): a row as capture writes it (the
 * canonical form above), so that a key given by a reader in any session
 * matches the record_id written by any other.
 */
Datum
audit_canonical_jsonb(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row;
	TupleDesc	desc;
	HeapTupleData tuple;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);

	if (!type_is_rowtype(argtype))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("audit.canonical_jsonb() takes a row, not a value of type %s",
						format_type_be(argtype))));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	row = PG_GETARG_HEAPTUPLEHEADER(0);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row),
								  HeapTupleHeaderGetTypMod(row));
	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AuditColumnInfo col;
		bool		isnull;
		Datum		value;

		if (att->attisdropped)
			continue;
		memset(&col, 0, sizeof(col));
		audit_json_column_init(&col, att->atttypid, NameStr(att->attname),
							   CurrentMemoryContext);
		value = heap_getattr(&tuple, i + 1, desc, &isnull);
		audit_json_push_key(&state, &col);
		audit_json_push_value(&state, &col, value, isnull);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	ReleaseTupleDesc(desc);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}
