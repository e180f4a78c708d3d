/*-------------------------------------------------------------------------
 *
 * reports.c
 *		Report files of the scheduled reports (issue 21): the setting
 *		audit_ext.report_directory and audit.write_report_file(), which the
 *		maintenance worker's audit.run_due_reports() calls for each report.
 *
 * A report file is written as archive files are (archive.c):
 *	1. NAME.tmp is written (O_EXCL | O_NOFOLLOW: a planted file or symlink
 *	   is an error, not a target) and fsynced; SHA-256 over its bytes;
 *	2. NAME.sha256.tmp ("<hex>  NAME\n", the format of sha256sum -c) is
 *	   written and fsynced;
 *	3. both are renamed into place with durable_rename(), which fsyncs the
 *	   file and the directory.
 * NAME is a plain file name made by audit.run_due_reports() from the
 * schedule's name (letters, digits, "_" and "-" only), checked again here:
 * nothing can be written outside the directory.  A crash before the
 * transaction that records the file in audit.reports commits leaves at most
 * a complete file that the next round writes again under the same name, and
 * temporary files that the next write of that name replaces.
 *
 * Only the maintenance worker (or a superuser) may write: EXECUTE is revoked
 * from PUBLIC and the function checks it again.
 *
 * Also audit.jsonb_key_count(), with which a rendered data change report
 * counts its detail rows (one per changed field) without making them,
 * audit.data_change_fields(), which makes them, and the aggregate
 * audit.count_distinct_text().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "audit_ext.h"

char	   *audit_report_directory = NULL;

#define REPORT_NAME_MAX		200

void
audit_reports_define_gucs(void)
{
	DefineCustomStringVariable("audit_ext.report_directory",
							   "Directory the maintenance worker writes scheduled reports into.",
							   "A relative path is relative to the data directory. It must exist and be writable by the server; empty: scheduled reports fail with an error in audit.report_schedules.",
							   &audit_report_directory,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}

/* The report directory as an absolute path; it must exist. */
static char *
report_dir(void)
{
	const char *dir = audit_report_directory;
	char	   *path;
	struct stat st;

	if (dir == NULL || dir[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit_ext.report_directory is not set"),
				 errhint("Set audit_ext.report_directory in postgresql.conf to a directory the server can write, and reload.")));
	path = is_absolute_path(dir) ? pstrdup(dir) : psprintf("%s/%s", DataDir, dir);
	canonicalize_path(path);
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access report directory \"%s\": %m", path),
				 errhint("Create it, writable by the server's user, or change audit_ext.report_directory.")));
	if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("report directory \"%s\" is not a directory", path)));
	return path;
}

/* A plain file name: [A-Za-z0-9_.-], not starting with ".", no "..". */
static void
check_report_name(const char *name)
{
	size_t		len = strlen(name);
	const char *p;
	bool		ok = len > 0 && len <= REPORT_NAME_MAX && name[0] != '.' &&
		strstr(name, "..") == NULL;

	for (p = name; ok && *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			ok = false;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid report file name \"%s\"", name),
				 errdetail("A report file is a plain name in audit_ext.report_directory: letters, digits, \"_\", \"-\" and \".\", at most %d characters, not starting with \".\", no \"..\".",
						   REPORT_NAME_MAX)));
}

/* Write data to a new temporary file, fsync it, close it. */
static void
write_durably(const char *tmp, const char *data, size_t len)
{
	int			fd;

	/* a temporary file left by a crash is ours to replace */
	if (unlink(tmp) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", tmp)));
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create report file \"%s\": %m", tmp)));
	audit_write_all(fd, "report file", tmp, data, len);
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync report file \"%s\": %m", tmp)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close report file \"%s\": %m", tmp)));
}

/*
 * A symbolic link where a report file goes is removed first: rename()
 * would replace the link, but durable_rename() opens and fsyncs the file it
 * replaces, and so the link's target (a FIFO made the write fail; another
 * file, it was opened for writing).  Only the server's own OS user, or
 * whoever was given the directory, can plant one.
 */
static void
drop_planted_link(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && unlink(path) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove symbolic link \"%s\": %m", path)));
}

/*
 * audit.write_report_file(file text, content text)
 *		-> (path text, bytes bigint, checksum text)
 */
PG_FUNCTION_INFO_V1(audit_write_report_file);

Datum
audit_write_report_file(PG_FUNCTION_ARGS)
{
	char	   *name;
	text	   *content;
	char	   *dir;
	char	   *path;
	char	   *tmp;
	char	   *sum_path;
	char	   *sum_tmp;
	char	   *sum_line;
	size_t		len;
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_STRING_LENGTH];
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (!audit_is_maintenance_worker() && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to write report files"),
				 errdetail("Report files are written by the maintenance worker for the schedules of audit.report_schedules."),
				 errhint("Use audit.schedule_report(), or audit.render_report() to get a report as text.")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("report file name and content must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	content = PG_GETARG_TEXT_PP(1);
	check_report_name(name);
	dir = report_dir();
	path = psprintf("%s/%s", dir, name);
	tmp = psprintf("%s.tmp", path);
	sum_path = psprintf("%s.sha256", path);
	sum_tmp = psprintf("%s.tmp", sum_path);
	len = VARSIZE_ANY_EXHDR(content);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) VARDATA_ANY(content), len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';

	write_durably(tmp, VARDATA_ANY(content), len);
	sum_line = psprintf("%s  %s\n", hex, name);
	write_durably(sum_tmp, sum_line, strlen(sum_line));
	drop_planted_link(path);
	drop_planted_link(sum_path);
	if (durable_rename(tmp, path, ERROR) != 0)
		elog(ERROR, "could not rename \"%s\"", tmp);
	if (durable_rename(sum_tmp, sum_path, ERROR) != 0)
		elog(ERROR, "could not rename \"%s\"", sum_tmp);

	values[0] = CStringGetTextDatum(path);
	values[1] = Int64GetDatum((int64) len);
	values[2] = CStringGetTextDatum(hex);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * audit.jsonb_key_count(j jsonb) -> integer
 *		The number of keys of a JSON object: the rows jsonb_object_keys(j)
 *		returns, read from the header of the jsonb's root container (its
 *		first four bytes, detoasted alone) without looking at the keys or the
 *		values.  audit.build_report() counts the rows of the data change
 *		report with it (an INSERT or DELETE has one row per key of new_data
 *		or old_data, audit.report_data_change_rows).  A scalar or an array is
 *		an error, as it is for jsonb_object_keys(), so that the count never
 *		answers where the report's rows would fail.
 */
PG_FUNCTION_INFO_V1(audit_jsonb_key_count);

Datum
audit_jsonb_key_count(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = (Jsonb *) PG_DETOAST_DATUM_SLICE(PG_GETARG_DATUM(0), 0, sizeof(uint32));

	if (VARSIZE(jb) < VARHDRSZ + sizeof(uint32))
		elog(ERROR, "jsonb value is too short");
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot count the keys of a jsonb %s", JB_ROOT_IS_SCALAR(jb) ? "scalar" : "array"),
				 errdetail("Only a JSON object has keys; jsonb_object_keys() fails on this value the same way.")));
	PG_RETURN_INT32((int32) JB_ROOT_COUNT(jb));
}

/*
 * audit.data_change_fields(action, status, changed_columns, old_data,
 *		new_data, record_id): the rows of one event of the data change report,
 *		one per changed field, as (column_name, old_value, new_value,
 *		record_text).  The fields: an UPDATE's changed_columns, an INSERT's
 *		or DELETE's keys of new_data (else old_data), in the order unnest()
 *		and jsonb_object_keys() give them; each value as (j -> key) #>> '{}'
 *		gives it (a string unquoted, JSON null as NULL, an object or array as
 *		JSON text); record_text is record_id::text, made once per event.  No
 *		row for a TRUNCATE, a refused change or an event without fields: the
 *		view's LEFT JOIN gives those their one row without a field.
 *
 * It replaces, in audit.report_data_change_rows, the same rule in SQL: per
 * event an unnest() (for an INSERT or DELETE of an array made by a subquery
 * over jsonb_object_keys()), per row two jsonb lookups and casts, and
 * record_id::text in the report's select list, once per row.  On a month
 * of 10M events (27.5M rows) making the rows took 1.5 µs a row, now 1.0
 * (docs/performance.md, "The data change rows in C").
 */
typedef struct ChangeFieldsState
{
	Jsonb	   *old_data;
	Jsonb	   *new_data;
	int			nkeys;
	int			next;
	/* an UPDATE: the column names (text datums) */
	Datum	   *columns;
	bool	   *column_nulls;
	/* an INSERT or DELETE: the keys of the object, in its order */
	JsonbValue *keys;
	/* record_id::text */
	Datum		record_text;
	bool		record_null;
} ChangeFieldsState;

static TupleDesc change_fields_desc = NULL;

static TupleDesc
change_fields_tupdesc(void)
{
	if (change_fields_desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	desc = CreateTemplateTupleDesc(4);

		TupleDescInitEntry(desc, (AttrNumber) 1, "column_name", TEXTOID, -1, 0);
		TupleDescInitEntry(desc, (AttrNumber) 2, "old_value", TEXTOID, -1, 0);
		TupleDescInitEntry(desc, (AttrNumber) 3, "new_value", TEXTOID, -1, 0);
		TupleDescInitEntry(desc, (AttrNumber) 4, "record_text", TEXTOID, -1, 0);
		change_fields_desc = BlessTupleDesc(desc);
		MemoryContextSwitchTo(old);
	}
	return change_fields_desc;
}

/* The value of key in a jsonb object as text, as (j -> key) #>> '{}' is. */
static Datum
change_field_value(Jsonb *j, const char *key, int keylen, bool *isnull)
{
	JsonbValue	vbuf;
	JsonbValue *v;

	*isnull = true;
	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return (Datum) 0;
	v = getKeyJsonValueFromContainer(&j->root, key, keylen, &vbuf);
	if (v == NULL)
		return (Datum) 0;
	switch (v->type)
	{
		case jbvNull:
			return (Datum) 0;
		case jbvString:
			*isnull = false;
			return PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
		case jbvNumeric:
			*isnull = false;
			return PointerGetDatum(cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
																						NumericGetDatum(v->val.numeric)))));
		case jbvBool:
			*isnull = false;
			return PointerGetDatum(cstring_to_text(v->val.boolean ? "true" : "false"));
		case jbvBinary:
			*isnull = false;
			return PointerGetDatum(cstring_to_text(JsonbToCString(NULL, v->val.binary.data,
																  v->val.binary.len)));
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(audit_data_change_fields);

Datum
audit_data_change_fields(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	ChangeFieldsState *st;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		const char *action;
		bool		update = false;

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		st = (ChangeFieldsState *) palloc0(sizeof(ChangeFieldsState));
		funcctx->user_fctx = st;
		funcctx->tuple_desc = change_fields_tupdesc();

		/* only a change that happened has fields */
		if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1) &&
			strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), "success") == 0)
		{
			action = text_to_cstring(PG_GETARG_TEXT_PP(0));
			if (strcmp(action, "UPDATE") == 0)
				update = true;
			else if (strcmp(action, "INSERT") != 0 && strcmp(action, "DELETE") != 0)
				action = NULL;
		}
		else
			action = NULL;

		if (action != NULL)
		{
			st->old_data = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
			st->new_data = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
			if (update)
			{
				if (!PG_ARGISNULL(2))
					deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT,
									  &st->columns, &st->column_nulls, &st->nkeys);
			}
			else
			{
				Jsonb	   *from = st->new_data ? st->new_data : st->old_data;

				if (from != NULL)
				{
					JsonbIterator *it;
					JsonbValue	v;
					JsonbIteratorToken r;
					int			n = 0;

					if (!JB_ROOT_IS_OBJECT(from))
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("cannot call %s on %s", "jsonb_object_keys",
										JB_ROOT_IS_SCALAR(from) ? "a scalar" : "an array")));
					st->keys = (JsonbValue *) palloc(sizeof(JsonbValue) * Max(JB_ROOT_COUNT(from), 1));
					it = JsonbIteratorInit(&from->root);
					while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
					{
						if (r == WJB_KEY && n < (int) JB_ROOT_COUNT(from))
							st->keys[n++] = v;
					}
					st->nkeys = n;
				}
			}
			st->record_null = PG_ARGISNULL(5);
			if (st->nkeys > 0 && !st->record_null)
			{
				Jsonb	   *rid = PG_GETARG_JSONB_P(5);

				st->record_text = PointerGetDatum(cstring_to_text(JsonbToCString(NULL, &rid->root,
																				 VARSIZE(rid))));
			}
		}
		MemoryContextSwitchTo(old);
	}

	funcctx = SRF_PERCALL_SETUP();
	st = (ChangeFieldsState *) funcctx->user_fctx;
	while (st->next < st->nkeys)
	{
		int			i = st->next++;
		Datum		values[4];
		bool		nulls[4];
		const char *key;
		int			keylen;

		if (st->columns != NULL)
		{
			text	   *col;

			if (st->column_nulls[i])
			{
				/* unnest() gives a row for a NULL element: so does this */
				nulls[0] = nulls[1] = nulls[2] = true;
				values[3] = st->record_text;
				nulls[3] = st->record_null;
				SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc,
																		   values, nulls)));
			}
			col = DatumGetTextPP(st->columns[i]);
			key = VARDATA_ANY(col);
			keylen = VARSIZE_ANY_EXHDR(col);
			values[0] = PointerGetDatum(col);
		}
		else
		{
			key = st->keys[i].val.string.val;
			keylen = st->keys[i].val.string.len;
			values[0] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
		}
		nulls[0] = false;
		values[1] = change_field_value(st->old_data, key, keylen, &nulls[1]);
		values[2] = change_field_value(st->new_data, key, keylen, &nulls[2]);
		values[3] = st->record_text;
		nulls[3] = st->record_null;
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc, values, nulls)));
	}
	SRF_RETURN_DONE(funcctx);
}

/*
 * audit.count_distinct_text(text): count(DISTINCT x) as an aggregate that
 *		runs in parallel and hashes.  report_system_access counts the
 *		distinct actors of each (application, role, address): with
 *		count(DISTINCT actor) every event of the period was sorted by its
 *		group, and as a second hash aggregate over (group, actor) the month
 *		was read twice, the second time by one process (10 s of 15 s on 10M
 *		events).  The state is a hash set of the values (whole strings: the
 *		count is exact), merged across parallel workers (combine, serialize,
 *		deserialize).  NULLs are not counted, as with count(DISTINCT).
 */
typedef struct TextSetEntry
{
	const char *value;
	uint32		hash;
	char		status;
} TextSetEntry;

#define SH_PREFIX textset
#define SH_ELEMENT_TYPE TextSetEntry
#define SH_KEY_TYPE const char *
#define SH_KEY value
#define SH_HASH_KEY(tb, key) hash_bytes((const unsigned char *) (key), strlen(key))
#define SH_EQUAL(tb, a, b) (strcmp(a, b) == 0)
#define SH_SCOPE static inline
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_DEFINE
#define SH_DECLARE
#include "lib/simplehash.h"

typedef struct TextSet
{
	MemoryContext cxt;			/* the aggregate's: values are copied into it */
	textset_hash *set;
} TextSet;

static TextSet *
text_set_new(MemoryContext cxt)
{
	TextSet    *ts = MemoryContextAlloc(cxt, sizeof(TextSet));

	ts->cxt = cxt;
	ts->set = textset_create(cxt, 8, NULL);
	return ts;
}

static void
text_set_add(TextSet *ts, const char *value, int len)
{
	bool		found;
	char	   *key = MemoryContextAlloc(ts->cxt, len + 1);

	memcpy(key, value, len);
	key[len] = '\0';
	(void) textset_insert(ts->set, key, &found);
	if (found)
		pfree(key);
}

static MemoryContext
aggregate_context(FunctionCallInfo fcinfo)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is a support function of the aggregate audit.count_distinct_text()",
						get_func_name(fcinfo->flinfo->fn_oid)),
				 errhint("Call audit.count_distinct_text(value) instead.")));
	return cxt;
}

PG_FUNCTION_INFO_V1(audit_count_distinct_trans);

Datum
audit_count_distinct_trans(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = aggregate_context(fcinfo);
	TextSet    *ts = PG_ARGISNULL(0) ? text_set_new(cxt) : (TextSet *) PG_GETARG_POINTER(0);

	if (!PG_ARGISNULL(1))
	{
		text	   *t = PG_GETARG_TEXT_PP(1);

		text_set_add(ts, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	PG_RETURN_POINTER(ts);
}

PG_FUNCTION_INFO_V1(audit_count_distinct_combine);

Datum
audit_count_distinct_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = aggregate_context(fcinfo);
	TextSet    *a = PG_ARGISNULL(0) ? NULL : (TextSet *) PG_GETARG_POINTER(0);
	TextSet    *b = PG_ARGISNULL(1) ? NULL : (TextSet *) PG_GETARG_POINTER(1);
	textset_iterator it;
	TextSetEntry *e;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = text_set_new(cxt);
	textset_start_iterate(b->set, &it);
	while ((e = textset_iterate(b->set, &it)) != NULL)
		text_set_add(a, e->value, strlen(e->value));
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(audit_count_distinct_serialize);

Datum
audit_count_distinct_serialize(PG_FUNCTION_ARGS)
{
	TextSet    *ts = (TextSet *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	textset_iterator it;
	TextSetEntry *e;

	(void) aggregate_context(fcinfo);
	pq_begintypsend(&buf);
	pq_sendint32(&buf, ts->set->members);
	textset_start_iterate(ts->set, &it);
	while ((e = textset_iterate(ts->set, &it)) != NULL)
	{
		int			len = strlen(e->value);

		pq_sendint32(&buf, len);
		pq_sendbytes(&buf, e->value, len);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(audit_count_distinct_deserialize);

Datum
audit_count_distinct_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = aggregate_context(fcinfo);
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	TextSet    *ts = text_set_new(cxt);
	uint32		n;

	/* read in place (initReadOnlyStringInfo() from PostgreSQL 17 on) */
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	n = pq_getmsgint(&buf, 4);
	for (uint32 i = 0; i < n; i++)
	{
		int			len = pq_getmsgint(&buf, 4);

		/* pq_getmsgbytes checks the length against what is left */
		text_set_add(ts, pq_getmsgbytes(&buf, len), len);
	}
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(ts);
}

PG_FUNCTION_INFO_V1(audit_count_distinct_final);

Datum
audit_count_distinct_final(PG_FUNCTION_ARGS)
{
	(void) aggregate_context(fcinfo);
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64((int64) ((TextSet *) PG_GETARG_POINTER(0))->set->members);
}
