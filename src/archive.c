/*-------------------------------------------------------------------------
 *
 * archive.c
 *		Archive files of audit.prune(): one monthly partition written as
 *		gzip-compressed JSON lines (one row_to_json() of the event row per
 *		line, in id order) with a SHA-256 checksum file, durably; and read
 *		back, verified, for audit.restore_archive().
 *
 * Durability order (the partition is dropped only after all of it, in
 * audit.prune()'s transaction):
 *	1. stale temporary files of this database are removed (a crash left them);
 *	2. NAME.tmp is written and fsynced;
 *	3. NAME.sha256.tmp ("<hex>  NAME\n", the format of sha256sum -c) is
 *	   written and fsynced;
 *	4. both are renamed into place with durable_rename(), which fsyncs the
 *	   file and the directory.
 * A crash anywhere before the commit leaves the partition in place; the next
 * run starts again from 1.  A complete file whose transaction did not commit
 * is simply written again under the same name.
 *
 * Statement texts (format 2, 1.5): audit.prune() deletes the texts no
 * remaining event refers to, so an archive carries the texts its events
 * refer to.  After the event lines comes one section line,
 *		{"audit_archive_section": "statements", "format": 2, "count": n}
 * then n lines {"statement_id": ..., "statement_text": ..., "first_seen": ...}.
 * A partition whose events refer to no text has no section, and its file is
 * what format 1 (up to 1.4) wrote: events only.  audit.restore_archive()
 * reads both.
 *
 * The line is row_to_json() of the whole row, so columns added to
 * audit.event later (the integrity chain's) are archived without a change
 * here, and restoring with jsonb_populate_record() maps them back by name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include "access/htup_details.h"
#include "common/cryptohash.h"
#include "common/file_perm.h"
#include "common/sha2.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "audit_ext.h"

#define ARCHIVE_SUFFIX		".jsonl.gz"
#define CHECKSUM_SUFFIX		".sha256"
#define TEMP_SUFFIX			".tmp"
#define ARCHIVE_FETCH		10000
#define ARCHIVE_OUTBUF		(256 * 1024)
#define ARCHIVE_LEVEL		3	/* ratio within 10% of level 6 on event JSON, 2.5x faster */

/* The archive directory as an absolute path, created (0700) if missing. */
char *
audit_archive_dir(bool create)
{
	const char *dir = audit_archive_directory;
	char	   *path;
	struct stat st;

	if (dir == NULL || dir[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("audit_ext.archive_directory is not set"),
				 errhint("Set audit_ext.archive_directory in postgresql.conf and reload.")));
	path = is_absolute_path(dir) ? pstrdup(dir) : psprintf("%s/%s", DataDir, dir);
	canonicalize_path(path);

	if (stat(path, &st) != 0)
	{
		if (errno != ENOENT || !create)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not access archive directory \"%s\": %m", path)));
		if (MakePGDirectory(path) != 0 && errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create archive directory \"%s\": %m", path),
					 errhint("Create it, owned by the server's user with mode 0700, or set audit_ext.archive_directory.")));
		fsync_fname(path, true);
	}
	else if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("archive directory \"%s\" is not a directory", path)));
	return path;
}

/*
 * An archive file is named by audit.archives, never by a path: a plain name
 * ending in .jsonl.gz, so nothing outside the archive directory can be read.
 */
static void
check_archive_name(const char *name)
{
	size_t		len = strlen(name);
	size_t		slen = strlen(ARCHIVE_SUFFIX);

	if (len <= slen || strcmp(name + len - slen, ARCHIVE_SUFFIX) != 0 ||
		strchr(name, '/') != NULL || strchr(name, '\\') != NULL ||
		strstr(name, "..") != NULL || name[0] == '.')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive file name \"%s\"", name),
				 errdetail("An archive is named by its file name in audit_ext.archive_directory (as listed in audit.archives): no directory, no \"..\", ending in \"%s\".",
						   ARCHIVE_SUFFIX),
				 errhint("SELECT file FROM audit.archives lists the archives.")));
}

/*
 * Database name reduced to characters safe in a file name, then "-" and the
 * database's OID: "x.y" and "x_y" both reduce to "x_y", and up to 1.3 they
 * overwrote each other's archives (the only copy of pruned events).  The
 * OID is the last "-" part before the first ".", so no two databases of a
 * cluster share a prefix.
 */
static char *
file_prefix(void)
{
	char	   *db = get_database_name(MyDatabaseId);
	char	   *p;

	for (p = db; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			*p = '_';
	return psprintf("%s-%u", db, MyDatabaseId);
}

/* Remove the temporary files a crashed archive of this database left. */
static void
remove_stale_temp_files(const char *dir, const char *prefix)
{
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;
	size_t		plen = strlen(prefix);
	size_t		tlen = strlen(TEMP_SUFFIX);

	while ((de = ReadDir(d, dir)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (len > plen + tlen && strncmp(de->d_name, prefix, plen) == 0 &&
			de->d_name[plen] == '.' &&
			strcmp(de->d_name + len - tlen, TEMP_SUFFIX) == 0)
		{
			char	   *path = psprintf("%s/%s", dir, de->d_name);

			if (unlink(path) != 0 && errno != ENOENT)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not remove stale archive file \"%s\": %m", path)));
			ereport(LOG,
					(errmsg("audit_ext: removed incomplete archive file \"%s\" of an earlier run", path)));
		}
	}
	FreeDir(d);
}

/*
 * Write all of data to fd or fail with the file's path (what: "archive
 * file", "report file").  Shared by the archives and the report files
 * (src/reports.c).
 */
void
audit_write_all(int fd, const char *what, const char *path, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		n = write(fd, data, len);
		if (n <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write %s \"%s\": %m", what, path)));
		}
		data += n;
		len -= n;
	}
}

static void
hash_hex(pg_cryptohash_ctx *ctx, char *hex)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not finish SHA-256: %s", pg_cryptohash_error(ctx));
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
}

typedef struct ArchiveWriter
{
	z_stream	zs;
	int			fd;
	const char *path;
	pg_cryptohash_ctx *hash;
	char	   *out;
	uint64		bytes;			/* compressed bytes written */
} ArchiveWriter;

/* Compress what is in zs's input; write whatever output is ready. */
static void
writer_deflate(ArchiveWriter *w, int flush)
{
	do
	{
		int			rc;
		size_t		have;

		w->zs.next_out = (Bytef *) w->out;
		w->zs.avail_out = ARCHIVE_OUTBUF;
		rc = deflate(&w->zs, flush);
		if (rc == Z_STREAM_ERROR)
			elog(ERROR, "deflate failed for \"%s\"", w->path);
		have = ARCHIVE_OUTBUF - w->zs.avail_out;
		if (have > 0)
		{
			audit_write_all(w->fd, "archive file", w->path, w->out, have);
			if (pg_cryptohash_update(w->hash, (uint8 *) w->out, have) < 0)
				elog(ERROR, "could not update SHA-256: %s", pg_cryptohash_error(w->hash));
			w->bytes += have;
		}
	} while (w->zs.avail_out == 0 || (flush == Z_FINISH && w->zs.avail_in > 0));
}

static void
write_small_file_durably(const char *tmp, const char *content)
{
	int			fd;

	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	audit_write_all(fd, "archive file", tmp, content, strlen(content));
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmp)));
	CloseTransientFile(fd);
}

/*
 * audit.archive_partition(part regclass) -> (file, checksum, rows, min_id,
 * max_id, bytes, raw_bytes).  file is NULL for an empty partition (nothing
 * is written).
 */
PG_FUNCTION_INFO_V1(audit_archive_partition);

Datum
audit_archive_partition(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *relname = get_rel_name(relid);
	char	   *nspname;
	char	   *dir;
	char	   *prefix;
	char	   *tmp_path;
	char	   *final_name = NULL;
	char	   *final_path;
	char		hex[PG_SHA256_DIGEST_STRING_LENGTH];
	ArchiveWriter w;
	int64		rows = 0;
	int64		min_id = 0;
	int64		max_id = 0;
	uint64		raw_bytes = 0;
	Portal		portal;
	SPIPlanPtr	plan;
	MemoryContext batch_cxt;
	TupleDesc	result_desc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};
	bool		fault;
	bool		with_statements = PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	nspname = get_namespace_name(get_rel_namespace(relid));
	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	result_desc = BlessTupleDesc(result_desc);

	dir = audit_archive_dir(true);
	prefix = file_prefix();
	tmp_path = psprintf("%s/%s.%s%s%s", dir, prefix, relname, ARCHIVE_SUFFIX, TEMP_SUFFIX);
	/* the test fault fires once: not on the run after the crash it caused */
	fault = audit_archive_fault_after_rows > 0 && access(tmp_path, F_OK) != 0;
	remove_stale_temp_files(dir, prefix);

	memset(&w, 0, sizeof(w));
	w.path = tmp_path;
	w.out = palloc(ARCHIVE_OUTBUF);
	w.hash = pg_cryptohash_create(PG_SHA256);
	if (w.hash == NULL || pg_cryptohash_init(w.hash) < 0)
		elog(ERROR, "could not initialize SHA-256");
	if (deflateInit2(&w.zs, ARCHIVE_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		elog(ERROR, "could not initialize zlib");
	w.fd = OpenTransientFilePerm(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY,
								 pg_file_create_mode);
	if (w.fd < 0)
	{
		deflateEnd(&w.zs);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create archive file \"%s\": %m", tmp_path)));
	}

	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "audit_ext archive batch",
									  ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		int			nest = audit_spi_connect();

		plan = SPI_prepare(psprintf("SELECT e.id, pg_catalog.row_to_json(e)::text FROM %s e ORDER BY e.id",
									quote_qualified_identifier(nspname, relname)),
						   0, NULL);
		if (plan == NULL)
			elog(ERROR, "could not prepare the archive query: %s", SPI_result_code_string(SPI_result));
		portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
		for (;;)
		{
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(portal, true, ARCHIVE_FETCH);
			if (SPI_processed == 0)
				break;
			old = MemoryContextSwitchTo(batch_cxt);
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				bool		isnull;
				int64		id = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
				text	   *line = DatumGetTextPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));

				if (rows == 0)
					min_id = id;
				max_id = id;
				w.zs.next_in = (Bytef *) VARDATA_ANY(line);
				w.zs.avail_in = VARSIZE_ANY_EXHDR(line);
				raw_bytes += w.zs.avail_in + 1;
				writer_deflate(&w, Z_NO_FLUSH);
				w.zs.next_in = (Bytef *) "\n";
				w.zs.avail_in = 1;
				writer_deflate(&w, Z_NO_FLUSH);
				rows++;

				if (fault && rows == audit_archive_fault_after_rows)
				{
					/* testing: a crash with part of the file on disk */
					writer_deflate(&w, Z_SYNC_FLUSH);
					(void) pg_fsync(w.fd);
					ereport(LOG,
							(errmsg("audit_ext: archive_fault_after_rows reached after %lld rows of \"%s\": crashing",
									(long long) rows, tmp_path)));
					kill(MyProcPid, SIGKILL);
					pg_usleep(10000000L);	/* SIGKILL arrives meanwhile */
				}
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(batch_cxt);
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);

		/* the texts the events refer to (format 2) */
		if (with_statements && rows > 0)
		{
			const char *rel = quote_qualified_identifier(nspname, relname);
			int64		count;
			char	   *section;

			if (SPI_execute(psprintf("SELECT pg_catalog.count(*) FROM audit.statement s"
									 " WHERE s.statement_id IN (SELECT e.statement_id FROM %s e)", rel),
							true, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not count the statement texts of %s", rel);
			{
				bool		isnull;

				count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			}
			if (count > 0)
			{
				section = psprintf("{\"audit_archive_section\": \"statements\", \"format\": 2, \"count\": " INT64_FORMAT "}\n",
								   count);
				w.zs.next_in = (Bytef *) section;
				w.zs.avail_in = strlen(section);
				raw_bytes += w.zs.avail_in;
				writer_deflate(&w, Z_NO_FLUSH);
				plan = SPI_prepare(psprintf("SELECT pg_catalog.json_build_object('statement_id', s.statement_id,"
											" 'statement_text', s.statement_text, 'first_seen', s.first_seen)::text"
											" FROM audit.statement s"
											" WHERE s.statement_id IN (SELECT e.statement_id FROM %s e)"
											" ORDER BY s.statement_id", rel),
								   0, NULL);
				if (plan == NULL)
					elog(ERROR, "could not prepare the statement query: %s", SPI_result_code_string(SPI_result));
				portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
				for (;;)
				{
					MemoryContext old;

					CHECK_FOR_INTERRUPTS();
					SPI_cursor_fetch(portal, true, ARCHIVE_FETCH);
					if (SPI_processed == 0)
						break;
					old = MemoryContextSwitchTo(batch_cxt);
					for (uint64 i = 0; i < SPI_processed; i++)
					{
						bool		isnull;
						text	   *line = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
																		SPI_tuptable->tupdesc, 1, &isnull));

						w.zs.next_in = (Bytef *) VARDATA_ANY(line);
						w.zs.avail_in = VARSIZE_ANY_EXHDR(line);
						raw_bytes += w.zs.avail_in + 1;
						writer_deflate(&w, Z_NO_FLUSH);
						w.zs.next_in = (Bytef *) "\n";
						w.zs.avail_in = 1;
						writer_deflate(&w, Z_NO_FLUSH);
					}
					MemoryContextSwitchTo(old);
					MemoryContextReset(batch_cxt);
					SPI_freetuptable(SPI_tuptable);
				}
				SPI_cursor_close(portal);
			}
		}
		audit_spi_finish(nest);

		w.zs.next_in = NULL;
		w.zs.avail_in = 0;
		writer_deflate(&w, Z_FINISH);
		if (pg_fsync(w.fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not fsync archive file \"%s\": %m", tmp_path)));
	}
	PG_CATCH();
	{
		deflateEnd(&w.zs);
		(void) unlink(tmp_path);
		PG_RE_THROW();
	}
	PG_END_TRY();
	deflateEnd(&w.zs);
	CloseTransientFile(w.fd);
	MemoryContextDelete(batch_cxt);

	if (rows == 0)
	{
		(void) unlink(tmp_path);
		pg_cryptohash_free(w.hash);
		for (int i = 0; i < 7; i++)
			nulls[i] = true;
		values[2] = Int64GetDatum(0);
		nulls[2] = false;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
	}

	hash_hex(w.hash, hex);
	pg_cryptohash_free(w.hash);

	final_name = psprintf("%s.%s.%lld-%lld%s", prefix, relname,
						  (long long) min_id, (long long) max_id, ARCHIVE_SUFFIX);
	final_path = psprintf("%s/%s", dir, final_name);
	{
		/* while incomplete, the checksum file is PREFIX.*.tmp as well */
		char	   *sum_tmp = psprintf("%s/%s.%s%s%s", dir, prefix, relname,
									   CHECKSUM_SUFFIX, TEMP_SUFFIX);
		char	   *sum_final = psprintf("%s%s", final_path, CHECKSUM_SUFFIX);

		write_small_file_durably(sum_tmp, psprintf("%s  %s\n", hex, final_name));
		if (durable_rename(tmp_path, final_path, ERROR) != 0)
			elog(ERROR, "could not rename \"%s\"", tmp_path);
		if (durable_rename(sum_tmp, sum_final, ERROR) != 0)
			elog(ERROR, "could not rename \"%s\"", sum_tmp);
	}

	values[0] = CStringGetTextDatum(final_name);
	values[1] = CStringGetTextDatum(hex);
	values[2] = Int64GetDatum(rows);
	values[3] = Int64GetDatum(min_id);
	values[4] = Int64GetDatum(max_id);
	values[5] = Int64GetDatum((int64) w.bytes);
	values[6] = Int64GetDatum((int64) raw_bytes);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}

/* SHA-256 of a file, hex. */
static void
file_sha256(const char *path, char *hex)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	pg_cryptohash_ctx *ctx;
	char	   *buf;
	ssize_t		n;

	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open archive file \"%s\": %m", path)));
	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256");
	buf = palloc(ARCHIVE_OUTBUF);
	while ((n = read(fd, buf, ARCHIVE_OUTBUF)) > 0)
		if (pg_cryptohash_update(ctx, (uint8 *) buf, n) < 0)
			elog(ERROR, "could not update SHA-256");
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read archive file \"%s\": %m", path)));
	CloseTransientFile(fd);
	hash_hex(ctx, hex);
	pg_cryptohash_free(ctx);
	pfree(buf);
}

PG_FUNCTION_INFO_V1(audit_archive_checksum);

Datum
audit_archive_checksum(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		hex[PG_SHA256_DIGEST_STRING_LENGTH];

	check_archive_name(name);
	file_sha256(psprintf("%s/%s", audit_archive_dir(false), name), hex);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/*
 * audit.read_archive(file text) -> SETOF text: the lines of an archive, once
 * the file matches its .sha256 file.  A tampered or truncated file is
 * refused before a single line is returned.
 */
PG_FUNCTION_INFO_V1(audit_read_archive);

Datum
audit_read_archive(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	char	   *dir;
	char	   *path;
	char	   *sum_path;
	char		hex[PG_SHA256_DIGEST_STRING_LENGTH];
	char		recorded[PG_SHA256_DIGEST_STRING_LENGTH];
	FILE	   *sf;
	gzFile		gz;
	char	   *buf;
	StringInfoData line;
	volatile int64 lineno = 0;

	/* not STRICT in SQL: a NULL name must be an error, not a crash */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("archive file name must not be NULL"),
				 errhint("Name a file listed in audit.archives.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_archive_name(name);
	dir = audit_archive_dir(false);
	path = psprintf("%s/%s", dir, name);
	sum_path = psprintf("%s%s", path, CHECKSUM_SUFFIX);

	sf = AllocateFile(sum_path, "r");
	if (sf == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open checksum file \"%s\": %m", sum_path),
				 errhint("An archive is read only together with its checksum file.")));
	memset(recorded, 0, sizeof(recorded));
	if (fread(recorded, 1, PG_SHA256_DIGEST_LENGTH * 2, sf) != PG_SHA256_DIGEST_LENGTH * 2)
		recorded[0] = '\0';
	FreeFile(sf);

	file_sha256(path, hex);
	if (strcmp(hex, recorded) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive file \"%s\" does not match its checksum", name),
				 errdetail("SHA-256 of the file is %s, its checksum file says \"%s\".", hex, recorded),
				 errhint("The file was altered or damaged after it was written; restore it from a backup copy.")));

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	gz = gzopen(path, "rb");
	if (gz == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open archive file \"%s\": %m", path)));
	buf = palloc(ARCHIVE_OUTBUF);
	initStringInfo(&line);
	PG_TRY();
	{
		for (;;)
		{
			int			n = gzread(gz, buf, ARCHIVE_OUTBUF);
			int			start = 0;

			CHECK_FOR_INTERRUPTS();
			if (n < 0)
			{
				int			zerr;
				const char *msg = gzerror(gz, &zerr);

				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("archive file \"%s\" cannot be decompressed: %s", name, msg)));
			}
			if (n == 0)
				break;
			for (int i = 0; i < n; i++)
			{
				if (buf[i] == '\n')
				{
					Datum		v;
					bool		isnull = false;

					appendBinaryStringInfo(&line, buf + start, i - start);
					v = CStringGetTextDatum(line.data);
					tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &v, &isnull);
					pfree(DatumGetPointer(v));
					resetStringInfo(&line);
					start = i + 1;
					lineno++;
				}
			}
			appendBinaryStringInfo(&line, buf + start, n - start);
		}
		if (line.len > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("archive file \"%s\" ends in the middle of a line after %lld lines",
							name, (long long) lineno)));
	}
	PG_FINALLY();
	{
		gzclose(gz);
	}
	PG_END_TRY();
	return (Datum) 0;
}
