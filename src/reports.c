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
 * counts its detail rows (one per changed field) without making them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

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
