/*-------------------------------------------------------------------------
 *
 * wal_capture.c
 *		capture => 'wal': data events decoded from the write-ahead log.
 *
 * A table audited with audit.enable(tbl, capture => 'wal') keeps its two
 * audit triggers (they carry its options, as in trigger mode), but they
 * fire BEFORE ... FOR EACH STATEMENT with the flag "wal" and write no event:
 * once per statement they write a transactional logical decoding message
 * (prefix "audit_ext") with the context the trigger path would have put on
 * each event (users, actor, client, application, end-user context, backend,
 * txid, statement id and sequence, statement start) -- since version 2 of
 * the message, only what changed since the transaction's previous message
 * (audit_wal_log_context).  The table has REPLICA IDENTITY FULL, so the WAL
 * holds the old row of every UPDATE and DELETE.
 *
 * The library is also a logical decoding output plugin
 * (_PG_output_plugin_init).  Per database, one slot "audit_ext_wal_<oid>"
 * (created by audit.enable(), audit.wal_prepare()) and one replication
 * origin of the same name.  A launcher ("audit_ext wal launcher", static,
 * no database) starts one dynamic worker per database that has such a slot
 * or origin.  The worker keeps the slot acquired for its whole life (no one
 * else can read or advance it meanwhile) and decodes it in-process, with a
 * decoding context that lives as long as the worker:
 *
 *	decode WAL up to the flush pointer (or audit_ext.wal_batch_size events,
 *	at a commit boundary); the plugin turns each change of a WAL-mode table
 *	into the event columns with the trigger path's code (capture.c, under
 *	the historic catalog of the change) and keeps them in memory
 *	  -> one transaction: audit_event_emit() per event (chains, partitions,
 *	     alerts as for any event), replorigin_session_origin_lsn = end of the
 *	     last decoded commit, COMMIT (the origin's progress is in the commit
 *	     record: atomic with the events), flushed
 *	  -> LogicalConfirmReceivedLocation(that LSN): the slot never moves past
 *	     what the origin recorded
 *
 * The worker runs at a lower CPU priority than the sessions
 * (audit_ext.wal_capture_nice, default 10): on a machine without a spare
 * core it takes the idle time and lets the foreground go first.
 *
 * On restart decoding starts at the origin's LSN (commits at or before it
 * are skipped by the snapshot builder), so a crash between the commit and
 * the confirmation neither loses nor repeats an event.  A slot whose
 * confirmed position is beyond the origin was consumed by someone else, a
 * missing slot was dropped, an invalidated one lost WAL: each is recorded
 * as a system/CAPTURE_GAP event with the LSN range (never silent).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

/* SHA256_Init() and friends: see src/chain.c (deprecated in OpenSSL 3) */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#if !defined(OPENSSL_NO_DEPRECATED_3_0) && defined(SHA256_DIGEST_LENGTH)
#define WAL_LOW_LEVEL_SHA256 1
#endif

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "access/genam.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "catalog/partition.h"
#include "catalog/pg_replication_origin.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "replication/slot.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "audit_ext.h"

/* fmgr.h does not declare it */
extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

PG_FUNCTION_INFO_V1(audit_wal_prepare);
PG_FUNCTION_INFO_V1(audit_wal_capture_status);

#define WAL_MSG_PREFIX		"audit_ext"
#define WAL_MSG_VERSION		2
#define WAL_MAX_DATABASES	32

int			audit_wal_batch_size = 10000;
int			audit_wal_capture_nice = 10;
int			audit_wal_naptime = 200;
bool		audit_wal_capture_pause = false;
char	   *audit_wal_test_fault = NULL;

/*
 * Careful mode: set when this worker started after one that failed, until
 * its first batch is written.  Each change is then converted in a
 * subtransaction of its own, and one that fails is recorded without its
 * values: an error on one change can no longer stop the database's capture
 * on every restart.  Off otherwise, where a subtransaction per change would
 * cost every change for the sake of none.
 */
static bool wal_careful = false;
static int64 wal_unconverted = 0;

/* ----------------------------------------------------------------
 * Shared state: one entry per database with a capture worker
 * ----------------------------------------------------------------
 */
typedef struct WalCaptureEntry
{
	Oid			dboid;			/* InvalidOid: free */
	int			pid;			/* the worker, 0 when none */
	XLogRecPtr	done_lsn;		/* all WAL before it decoded and written */
	XLogRecPtr	origin_lsn;		/* end of the last commit whose events are written */
	TimestampTz caught_up_at;	/* last time done_lsn reached the flush pointer */
	TimestampTz last_batch_at;
	int64		last_batch_events;
	TimestampTz last_commit_time;	/* of the last decoded transaction */
	int64		events_total;
	/*
	 * Failures: the last error that stopped the worker, and how many starts
	 * in a row ended in one (reset by the next batch written).  A worker
	 * that starts after a failure converts each change in a subtransaction
	 * of its own until its first batch is written (wal_careful).
	 */
	int			failures;
	TimestampTz last_error_at;
	char		last_error[256];
	int64		unconverted;	/* changes recorded without their values */
} WalCaptureEntry;

typedef struct WalCaptureShared
{
	slock_t		mutex;
	int			launcher_pid;
	Latch	   *launcher_latch;
	WalCaptureEntry entries[WAL_MAX_DATABASES];
} WalCaptureShared;

static WalCaptureShared *walshared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
wal_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(WalCaptureShared));
}

static void
wal_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	walshared = ShmemInitStruct("audit_ext wal capture", sizeof(WalCaptureShared), &found);
	if (!found)
	{
		memset(walshared, 0, sizeof(WalCaptureShared));
		SpinLockInit(&walshared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* this worker's entry (index), -1 when the table is full */
static int
wal_entry_for(Oid dboid)
{
	int			free_slot = -1;

	SpinLockAcquire(&walshared->mutex);
	for (int i = 0; i < WAL_MAX_DATABASES; i++)
	{
		if (walshared->entries[i].dboid == dboid)
		{
			SpinLockRelease(&walshared->mutex);
			return i;
		}
		if (free_slot < 0 && walshared->entries[i].dboid == InvalidOid)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		memset(&walshared->entries[free_slot], 0, sizeof(WalCaptureEntry));
		walshared->entries[free_slot].dboid = dboid;
	}
	SpinLockRelease(&walshared->mutex);
	return free_slot;
}

static void
wal_slot_name(Oid dboid, char *buf)
{
	snprintf(buf, NAMEDATALEN, "audit_ext_wal_%u", dboid);
}

/* ----------------------------------------------------------------
 * The statement's context, written by the WAL-mode triggers
 * ----------------------------------------------------------------
 */

/*
 * Message layout.  Version 1 (the first WAL-mode builds, never released)
 * carried everything in every message and no MAC; it is not decoded any
 * more (see "Message authentication" below).
 *
 * Version 2 (issue 22, section 2): only what changed since the previous
 * message of the same transaction.  version byte, flags byte, a byte of
 * "present" bits (WALF_*), int32 statement_seq, int64 statement start,
 * int64 statement_id if WALCTX_HAS_STATEMENT; with WALCTX_FULL (the first
 * message of a transaction, or the first after a rollback to a savepoint
 * that took earlier messages with it) int32 backend_pid and int64 txid, and
 * every field is present; then each present field in bit order: db_user,
 * session_user, actor, client_addr, application_name as NUL-terminated
 * strings ("" = NULL), the context as int32 length (0 = none) and the bytes
 * of its jsonb.  The decoder (plugin_message) starts each transaction with
 * no context and applies the messages in the order of the transaction's
 * changes, so a field that is not present is the previous message's.  Every
 * message ends with its MAC (WAL_MAC_LEN bytes).  A pgbench transaction
 * writes one full message (~70 bytes before the MAC) and two of 23.
 *
 * Why per transaction and not per session: transactions are decoded in
 * commit order and one at a time (a transaction that aborts is never seen),
 * and after a restart decoding starts at the origin's position, in the
 * middle of sessions: only the transaction itself is sure to be decoded
 * whole.  The statement text itself never travels: the message carries its
 * statement_id, and the text is stored once per backend (statement_store.c).
 */
#define WALCTX_LOG_UNCHANGED	0x01
#define WALCTX_HAS_STATEMENT	0x02
#define WALCTX_FULL				0x04

#define WALF_DB_USER			0x01
#define WALF_SESSION_USER		0x02
#define WALF_ACTOR				0x04
#define WALF_CLIENT_ADDR		0x08
#define WALF_APPLICATION_NAME	0x10
#define WALF_CONTEXT			0x20
#define WALF_NFIELDS			6
#define WALF_ALL				0x3f

/*
 * What the decoder knows of this backend's transaction: the fields and
 * statement of the last message written.  sent_valid is cleared when a
 * subtransaction that wrote a message rolls back (its messages are not
 * decoded, so the decoder's view went back to an earlier one we do not
 * track): the next message is then a full one.
 */
static FullTransactionId sent_xid;
static bool sent_valid = false;
static SubTransactionId sent_max_subid = InvalidSubTransactionId;
static uint8 sent_flags;
static int32 sent_seq;
static int64 sent_start;
static int64 sent_statement_id;
static StringInfoData sent_field[WALF_NFIELDS];
static StringInfoData field_buf[WALF_NFIELDS];
static char *client_addr_text = NULL;	/* of this session, "" for none */

static void
put_bytes(StringInfo buf, const void *p, int len)
{
	appendBinaryStringInfo(buf, (const char *) p, len);
}

/* a text Datum as a NUL-terminated string, "" for NULL */
static void
put_text(StringInfo buf, Datum d, bool isnull)
{
	if (!isnull)
	{
		text	   *t = DatumGetTextPP(d);

		appendBinaryStringInfo(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	appendStringInfoChar(buf, '\0');
}

/*
 * Message authentication.  pg_logical_emit_message() is executable by every
 * role, so anyone can put a message with our prefix into their own
 * transaction, e.g. from a function called inside an audited statement, and
 * claim another user, actor or context for its rows, or a malformed one that
 * would stop the decoder.  Every message therefore ends with an HMAC-SHA256
 * (first WAL_MAC_LEN bytes) under a key no SQL role can read: 32 random
 * bytes in the file WAL_KEY_FILE of the data directory (mode 0600, created
 * by the first process that needs it, kept for good: the WAL it signed may
 * be decoded long after; copied by base backups with the rest of the data
 * directory).  The decoder ignores and counts a message that fails the
 * check, and the worker records each batch's count as a system event.
 */
#define WAL_KEY_FILE		"audit_ext_wal.key"
#define WAL_KEY_LEN			32
#define WAL_MAC_LEN			16

static uint8 wal_key[WAL_KEY_LEN];
static bool wal_key_loaded = false;

static void
wal_load_key(void)
{
	int			fd;

	if (wal_key_loaded)
		return;
	fd = OpenTransientFile(WAL_KEY_FILE, O_RDONLY | PG_BINARY);
	if (fd < 0 && errno == ENOENT)
	{
		uint8		key[WAL_KEY_LEN];
		char		tmp[MAXPGPATH];

		/* written aside and linked into place: no process reads half a key */
		if (!pg_strong_random(key, sizeof(key)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate the audit_ext WAL message key")));
		snprintf(tmp, sizeof(tmp), "%s.%d.tmp", WAL_KEY_FILE, MyProcPid);
		fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
		if (fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create file \"%s\": %m", tmp)));
		if (write(fd, key, sizeof(key)) != sizeof(key) || pg_fsync(fd) != 0)
		{
			int			save_errno = errno ? errno : ENOSPC;

			CloseTransientFile(fd);
			unlink(tmp);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", tmp)));
		}
		CloseTransientFile(fd);
		if (link(tmp, WAL_KEY_FILE) != 0 && errno != EEXIST)
		{
			int			save_errno = errno;

			unlink(tmp);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not link file \"%s\" to \"%s\": %m", tmp, WAL_KEY_FILE)));
		}
		unlink(tmp);
		fsync_fname(".", true);
		fd = OpenTransientFile(WAL_KEY_FILE, O_RDONLY | PG_BINARY);
	}
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", WAL_KEY_FILE)));
	if (read(fd, wal_key, WAL_KEY_LEN) != WAL_KEY_LEN)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("file \"%s\" does not hold a key of %d bytes", WAL_KEY_FILE, WAL_KEY_LEN),
				 errhint("Restore it from a backup of the data directory: WAL-mode capture cannot authenticate its messages without it.")));
	}
	CloseTransientFile(fd);
	wal_key_loaded = true;
}

#ifdef WAL_LOW_LEVEL_SHA256
/* the key's inner and outer HMAC states, hashed once (RFC 2104) */
static SHA256_CTX wal_hmac_inner;
static SHA256_CTX wal_hmac_outer;
static bool wal_hmac_ready = false;
#endif

static void
wal_message_mac(const char *data, Size len, uint8 *mac)
{
#ifdef WAL_LOW_LEVEL_SHA256
	SHA256_CTX	ctx;
	uint8		inner[SHA256_DIGEST_LENGTH];
	uint8		full[SHA256_DIGEST_LENGTH];

	if (!wal_hmac_ready)
	{
		uint8		pad[SHA256_CBLOCK];

		wal_load_key();
		memset(pad, 0x36, sizeof(pad));
		for (int i = 0; i < WAL_KEY_LEN; i++)
			pad[i] ^= wal_key[i];
		if (SHA256_Init(&wal_hmac_inner) != 1 || SHA256_Update(&wal_hmac_inner, pad, sizeof(pad)) != 1)
			elog(ERROR, "audit_ext: HMAC-SHA256 computation failed");
		memset(pad, 0x5c, sizeof(pad));
		for (int i = 0; i < WAL_KEY_LEN; i++)
			pad[i] ^= wal_key[i];
		if (SHA256_Init(&wal_hmac_outer) != 1 || SHA256_Update(&wal_hmac_outer, pad, sizeof(pad)) != 1)
			elog(ERROR, "audit_ext: HMAC-SHA256 computation failed");
		explicit_bzero(pad, sizeof(pad));
		wal_hmac_ready = true;
	}
	ctx = wal_hmac_inner;
	if (SHA256_Update(&ctx, data, len) != 1 || SHA256_Final(inner, &ctx) != 1)
		elog(ERROR, "audit_ext: HMAC-SHA256 computation failed");
	ctx = wal_hmac_outer;
	if (SHA256_Update(&ctx, inner, sizeof(inner)) != 1 || SHA256_Final(full, &ctx) != 1)
		elog(ERROR, "audit_ext: HMAC-SHA256 computation failed");
#else
	uint8		full[EVP_MAX_MD_SIZE];
	unsigned int full_len = 0;

	wal_load_key();
	if (HMAC(EVP_sha256(), wal_key, WAL_KEY_LEN, (const unsigned char *) data, len,
			 full, &full_len) == NULL || full_len < WAL_MAC_LEN)
		elog(ERROR, "audit_ext: HMAC-SHA256 computation failed");
#endif
	memcpy(mac, full, WAL_MAC_LEN);
}

/*
 * A subtransaction rolled back (audit_ext.c's subtransaction callback):
 * when it, or one of its children, wrote a message, the decoder will not see
 * that message, so the next one must not rely on it.
 */
void
audit_wal_subxact_abort(SubTransactionId subid)
{
	if (sent_valid && sent_max_subid >= subid)
		sent_valid = false;
}

void
audit_wal_log_context(void)
{
	AuditEventValues ev;
	StringInfoData buf;
	MemoryContext old;
	uint8		flags;
	uint8		present = 0;
	int32		i32;
	int64		i64;
	int64		statement_id;
	int64		start;
	int32		seq;
	bool		full;
	FullTransactionId xid;

	if (!XLogLogicalInfoActive())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("audit_ext capture => 'wal' requires wal_level = logical"),
				 errdetail("A table audited from the WAL is changed while wal_level is \"%s\": its changes could not be captured.",
						   GetConfigOption("wal_level", false, false)),
				 errhint("Set wal_level = logical and restart the server, or audit the table with capture => 'trigger'.")));

	old = MemoryContextSwitchTo(CurTransactionContext);
	audit_event_init(&ev, "data", "CONTEXT");
	audit_event_fill_context(&ev, AUDIT_CTX_FOR_WRITE);
	xid = GetTopFullTransactionId();

	if (field_buf[0].data == NULL)
	{
		MemoryContext top = MemoryContextSwitchTo(TopMemoryContext);

		for (int i = 0; i < WALF_NFIELDS; i++)
		{
			initStringInfo(&field_buf[i]);
			initStringInfo(&sent_field[i]);
		}
		MemoryContextSwitchTo(top);
	}
	if (client_addr_text == NULL)
	{
		/* the session's client address never changes: printed once */
		char	   *s = ev.nulls[AC_CLIENT_ADDR] ? "" :
			DatumGetCString(DirectFunctionCall1(inet_out, ev.values[AC_CLIENT_ADDR]));

		client_addr_text = MemoryContextStrdup(TopMemoryContext, s);
	}

	/* this statement's fields, serialised as the message carries them */
	for (int i = 0; i < WALF_NFIELDS; i++)
		resetStringInfo(&field_buf[i]);
	put_text(&field_buf[0], ev.values[AC_DB_USER], ev.nulls[AC_DB_USER]);
	put_text(&field_buf[1], ev.values[AC_SESSION_USER], ev.nulls[AC_SESSION_USER]);
	put_text(&field_buf[2], ev.values[AC_ACTOR], ev.nulls[AC_ACTOR]);
	appendBinaryStringInfo(&field_buf[3], client_addr_text, strlen(client_addr_text) + 1);
	put_text(&field_buf[4], ev.values[AC_APPLICATION_NAME], ev.nulls[AC_APPLICATION_NAME]);
	if (ev.nulls[AC_CONTEXT])
	{
		i32 = 0;
		put_bytes(&field_buf[5], &i32, 4);
	}
	else
	{
		Jsonb	   *j = DatumGetJsonbP(ev.values[AC_CONTEXT]);

		i32 = VARSIZE(j);
		put_bytes(&field_buf[5], &i32, 4);
		put_bytes(&field_buf[5], j, i32);
	}

	flags = (audit_log_unchanged_updates ? WALCTX_LOG_UNCHANGED : 0) |
		(ev.nulls[AC_STATEMENT_ID] ? 0 : WALCTX_HAS_STATEMENT);
	statement_id = ev.nulls[AC_STATEMENT_ID] ? 0 : DatumGetInt64(ev.values[AC_STATEMENT_ID]);
	seq = DatumGetInt32(ev.values[AC_STATEMENT_SEQ]);
	start = DatumGetTimestampTz(ev.values[AC_EVENT_TIME]);

	full = !sent_valid || !FullTransactionIdEquals(sent_xid, xid);
	for (int i = 0; i < WALF_NFIELDS; i++)
		if (full || field_buf[i].len != sent_field[i].len ||
			memcmp(field_buf[i].data, sent_field[i].data, field_buf[i].len) != 0)
			present |= (1 << i);

	/*
	 * Several statements of one top-level statement (a function's, cascaded
	 * foreign keys) have the same context: the decoder has it already.
	 */
	if (!full && present == 0 && flags == sent_flags && seq == sent_seq &&
		start == sent_start && statement_id == sent_statement_id)
	{
		MemoryContextSwitchTo(old);
		return;
	}

	initStringInfo(&buf);
	if (full)
		flags |= WALCTX_FULL;
	appendStringInfoChar(&buf, (char) WAL_MSG_VERSION);
	appendStringInfoChar(&buf, (char) flags);
	appendStringInfoChar(&buf, (char) present);
	put_bytes(&buf, &seq, 4);
	put_bytes(&buf, &start, 8);
	if (flags & WALCTX_HAS_STATEMENT)
		put_bytes(&buf, &statement_id, 8);
	if (full)
	{
		i32 = MyProcPid;
		put_bytes(&buf, &i32, 4);
		i64 = DatumGetInt64(ev.values[AC_TXID]);
		put_bytes(&buf, &i64, 8);
	}
	for (int i = 0; i < WALF_NFIELDS; i++)
		if (present & (1 << i))
			appendBinaryStringInfo(&buf, field_buf[i].data, field_buf[i].len);

	{
		uint8		mac[WAL_MAC_LEN];

		wal_message_mac(buf.data, buf.len, mac);
		appendBinaryStringInfo(&buf, (const char *) mac, WAL_MAC_LEN);
	}
#if PG_VERSION_NUM >= 170000
	(void) LogLogicalMessage(WAL_MSG_PREFIX, buf.data, buf.len, true, false);
#else
	(void) LogLogicalMessage(WAL_MSG_PREFIX, buf.data, buf.len, true);
#endif
	MemoryContextSwitchTo(old);

	/* what the decoder now knows */
	if (full)
		sent_max_subid = InvalidSubTransactionId;
	for (int i = 0; i < WALF_NFIELDS; i++)
		if (present & (1 << i))
		{
			resetStringInfo(&sent_field[i]);
			appendBinaryStringInfo(&sent_field[i], field_buf[i].data, field_buf[i].len);
		}
	sent_xid = xid;
	sent_valid = true;
	sent_flags = flags & ~WALCTX_FULL;
	sent_seq = seq;
	sent_start = start;
	sent_statement_id = statement_id;
	if (GetCurrentSubTransactionId() > sent_max_subid)
		sent_max_subid = GetCurrentSubTransactionId();
}

/* ----------------------------------------------------------------
 * Output plugin: decoded changes -> event columns, kept in memory
 * ----------------------------------------------------------------
 */
typedef struct WalContext
{
	bool		log_unchanged;
	int32		backend_pid;
	int64		txid;
	bool		has_statement;
	int64		statement_id;
	int32		statement_seq;
	TimestampTz statement_start;
	Datum		db_user;
	Datum		session_user;
	Datum		actor;
	Datum		client_addr;
	Datum		application_name;
	bool		null_db_user;
	bool		null_session_user;
	bool		null_actor;
	bool		null_client_addr;
	bool		null_application_name;
	Datum		context;		/* jsonb (1.6: audit.set_context()) */
	bool		null_context;
} WalContext;

typedef struct WalEvent
{
	const char *action;
	Oid			relid;
	WalContext *context;		/* NULL: no context message before the change */
	TransactionId xid;
	TimestampTz commit_time;
	Datum		schema_name;
	Datum		table_name;
	Datum		record_id;		/* (Datum) 0: NULL */
	Datum		old_data;
	Datum		new_data;
	Datum		changed_columns;
	bool		missing_old;	/* UPDATE/DELETE without the old row */
	int64		too_large;		/* > 0: values not recorded, their bytes */
	char	   *not_converted;	/* the error that stopped its conversion */
} WalEvent;

static bool am_wal_worker = false;
static void set_in_logical_decoding(bool on);

/* Is this the capture worker (row_json.c: no owner's casts run here)? */
bool
audit_in_wal_worker(void)
{
	return am_wal_worker;
}

static MemoryContext BatchContext = NULL;
static MemoryContext DecodeRowContext = NULL;
static List *batch_events = NIL;	/* WalEvent *, committed transactions only */
static int	txn_first;			/* index in batch_events of the current txn's first */
static WalContext *cur_context = NULL;
static XLogRecPtr batch_last_end = InvalidXLogRecPtr;	/* end of the last commit decoded */
static TimestampTz batch_last_commit_time = 0;
static RepOriginId our_origin = InvalidRepOriginId;
static int64 batch_decoded_commits = 0;
static int64 batch_rejected = 0;	/* messages with our prefix we did not write */
static XLogRecPtr batch_rejected_lsn = InvalidXLogRecPtr;
static TransactionId batch_rejected_xid = InvalidTransactionId;

static void
plugin_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	/*
	 * Only the capture worker reads our slots: a session that could
	 * consume them (pg_logical_slot_get_changes, a walsender) would hide
	 * changes from the trail.  Creating one (is_init) is audit.wal_prepare().
	 */
	if (!is_init && !am_wal_worker)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the output plugin audit_ext is read only by the audit_ext capture worker"),
				 errdetail("Its slots feed the audit trail; reading them elsewhere would hide changes from it.")));
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
}

static void
plugin_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	cur_context = NULL;
	txn_first = list_length(batch_events);
}

static char *
get_cstr(const char **p, const char *end)
{
	const char *s = *p;
	size_t		len = strnlen(s, end - s);

	if (s + len >= end)
		elog(ERROR, "audit_ext: truncated context message");
	*p = s + len + 1;
	return (char *) s;
}

static void
set_text(Datum *d, bool *isnull, const char *s)
{
	*isnull = (s[0] == '\0');
	*d = *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

static void
get_bytes(const char **p, const char *end, void *dst, int len)
{
	if (end - *p < len)
		elog(ERROR, "audit_ext: truncated context message");
	memcpy(dst, *p, len);
	*p += len;
}

static void
set_addr(WalContext *c, const char *addr)
{
	c->null_client_addr = (addr[0] == '\0');
	c->client_addr = c->null_client_addr ? (Datum) 0 :
		DirectFunctionCall1(inet_in, CStringGetDatum(addr));
}

/*
 * version 2: what changed since the transaction's previous message (see
 * audit_wal_log_context); a full message starts the context afresh.
 */
static WalContext *
parse_message_v2(const char *p, const char *end, ReorderBufferTXN *txn)
{
	WalContext *c = palloc0(sizeof(WalContext));
	uint8		flags;
	uint8		present;

	if (end - p < 15)
		elog(ERROR, "audit_ext: truncated context message");
	flags = (uint8) p[1];
	present = (uint8) p[2];
	p += 3;
	if (!(flags & WALCTX_FULL))
	{
		if (cur_context == NULL)
		{
			/* cannot happen: the writer starts every transaction with a full one */
			ereport(WARNING,
					(errmsg("audit_ext wal capture: a partial context message without a full one in transaction %u",
							txn->xid),
					 errdetail("The fields it does not carry are recorded as NULL.")));
			c->null_db_user = c->null_session_user = c->null_actor = true;
			c->null_client_addr = c->null_application_name = c->null_context = true;
		}
		else
			*c = *cur_context;	/* the Datums are shared: they live as long as the batch */
	}
	c->log_unchanged = (flags & WALCTX_LOG_UNCHANGED) != 0;
	c->has_statement = (flags & WALCTX_HAS_STATEMENT) != 0;
	get_bytes(&p, end, &c->statement_seq, 4);
	get_bytes(&p, end, &c->statement_start, 8);
	c->statement_id = 0;
	if (c->has_statement)
		get_bytes(&p, end, &c->statement_id, 8);
	if (flags & WALCTX_FULL)
	{
		get_bytes(&p, end, &c->backend_pid, 4);
		get_bytes(&p, end, &c->txid, 8);
		present = WALF_ALL;
	}
	if (present & WALF_DB_USER)
		set_text(&c->db_user, &c->null_db_user, get_cstr(&p, end));
	if (present & WALF_SESSION_USER)
		set_text(&c->session_user, &c->null_session_user, get_cstr(&p, end));
	if (present & WALF_ACTOR)
		set_text(&c->actor, &c->null_actor, get_cstr(&p, end));
	if (present & WALF_CLIENT_ADDR)
		set_addr(c, get_cstr(&p, end));
	if (present & WALF_APPLICATION_NAME)
		set_text(&c->application_name, &c->null_application_name, get_cstr(&p, end));
	if (present & WALF_CONTEXT)
	{
		int32		len;

		get_bytes(&p, end, &len, 4);
		c->null_context = (len == 0);
		c->context = (Datum) 0;
		if (len != 0)
		{
			void	   *j;

			if (len < (int32) VARHDRSZ || end - p < len)
				elog(ERROR, "audit_ext: truncated context message");
			j = palloc(len);
			memcpy(j, p, len);
			if (VARSIZE(j) != (Size) len)
				elog(ERROR, "audit_ext: malformed context in a context message");
			c->context = PointerGetDatum(j);
			p += len;
		}
	}
	return c;
}

static void
plugin_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr message_lsn, bool transactional, const char *prefix,
			   Size message_size, const char *message)
{
	MemoryContext old;
	uint8		mac[WAL_MAC_LEN];
	Size		body;
	bool		authentic = false;

	if (strcmp(prefix, WAL_MSG_PREFIX) != 0)
		return;

	/*
	 * Only what this library wrote: transactional, of the current version,
	 * and carrying the MAC of its body.  Anything else with our prefix was
	 * made by someone else (pg_logical_emit_message() is open to every
	 * role): ignored, so it can neither change the context of the rows
	 * that follow nor stop the decoder, and counted for the trail.
	 */
	body = message_size >= WAL_MAC_LEN ? message_size - WAL_MAC_LEN : 0;
	if (transactional && body >= 1 && (uint8) message[0] == WAL_MSG_VERSION)
	{
		wal_message_mac(message, body, mac);
		authentic = CRYPTO_memcmp(mac, message + body, WAL_MAC_LEN) == 0;
	}
	if (!authentic)
	{
		if (batch_rejected++ == 0)
		{
			batch_rejected_lsn = message_lsn;
			batch_rejected_xid = txn ? txn->xid : InvalidTransactionId;
		}
		ereport(WARNING,
				(errmsg("audit_ext wal capture: ignored a message with prefix \"%s\" at %X/%X that audit_ext did not write",
						prefix, LSN_FORMAT_ARGS(message_lsn)),
				 errdetail("Transaction %u; a system/CAPTURE_MESSAGE_REJECTED event records it.",
						   txn ? txn->xid : InvalidTransactionId)));
		return;
	}
	old = MemoryContextSwitchTo(BatchContext);
	cur_context = parse_message_v2(message, message + body, txn);
	MemoryContextSwitchTo(old);
}

/*
 * The table's WAL-mode audit trigger as of the change, or NULL: its own
 * audit_ext_row, or for a partition of a partitioned table audited in WAL
 * mode, audit_ext_wal_part (same options; sql/src/capture.sql,
 * audit.install_wal_partition_triggers()).
 */
static Trigger *
wal_trigger(Relation rel)
{
	if (rel->trigdesc == NULL || rel->rd_rel->relkind != RELKIND_RELATION)
		return NULL;
	for (int i = 0; i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *tg = &rel->trigdesc->triggers[i];

		if (strcmp(tg->tgname, "audit_ext_row") == 0 ||
			(rel->rd_rel->relispartition && strcmp(tg->tgname, "audit_ext_wal_part") == 0))
			return audit_trigger_is_wal(tg) ? tg : NULL;
	}
	return NULL;
}

/*
 * The audited partitioned table a partition's changes are recorded under
 * (as the trigger path records them): the nearest ancestor whose own
 * audit_ext_row is a WAL-mode trigger, read from the catalog as of the
 * change (historic snapshot: pg_inherits and pg_trigger are catalogs).
 * InvalidOid when there is none (a partition detached since: its trigger
 * went with the DETACH, so it would not be here).
 */
static Oid
wal_partition_root(Relation rel)
{
	List	   *ancestors = get_partition_ancestors(RelationGetRelid(rel));
	ListCell   *lc;
	Oid			root = InvalidOid;

	foreach(lc, ancestors)
	{
		Relation	anc = RelationIdGetRelation(lfirst_oid(lc));
		bool		audited = false;

		if (anc == NULL)
			continue;
		if (anc->trigdesc != NULL)
			for (int i = 0; i < anc->trigdesc->numtriggers; i++)
			{
				Trigger    *tg = &anc->trigdesc->triggers[i];

				if (strcmp(tg->tgname, "audit_ext_row") == 0 && audit_trigger_is_wal(tg))
					audited = true;
			}
		RelationClose(anc);
		if (audited)
		{
			root = lfirst_oid(lc);
			break;
		}
	}
	list_free(ancestors);
	return root;
}

static Datum
copy_jsonb(Datum d)
{
	return d == (Datum) 0 ? (Datum) 0 : datumCopy(d, false, -1);
}

static WalEvent *
new_event(const char *action, Relation rel, ReorderBufferTXN *txn)
{
	WalEvent   *e = MemoryContextAllocZero(BatchContext, sizeof(WalEvent));

	e->action = action;
	e->relid = RelationGetRelid(rel);
	e->context = cur_context;
	e->xid = txn->xid;
	return e;
}

/*
 * A decoded row into the event's columns (capture.c's code, as the trigger
 * path's).  audit_ext.wal_test_fault names a table whose changes fail here,
 * for the test of careful mode (test/wal/wal_errors.sql).
 */
static bool
convert_change(Relation rel, Trigger *tg, HeapTuple oldtup, HeapTuple newtup,
			   bool old_is_key, AuditDecodedRow *row)
{
	if (audit_wal_test_fault != NULL && audit_wal_test_fault[0] != '\0' &&
		strcmp(RelationGetRelationName(rel), audit_wal_test_fault) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("audit_ext.wal_test_fault: a change of table \"%s\" cannot be converted",
						RelationGetRelationName(rel))));
	return audit_capture_decoded(rel, tg, oldtup, newtup, old_is_key,
								 cur_context ? cur_context->log_unchanged : audit_log_unchanged_updates,
								 row);
}

typedef struct ConvertCall
{
	Relation	rel;
	Trigger    *tg;
	HeapTuple	oldtup;
	HeapTuple	newtup;
	bool		old_is_key;
	AuditDecodedRow *row;
	bool		result;
} ConvertCall;

static void
convert_call(void *arg)
{
	ConvertCall *c = (ConvertCall *) arg;

	c->result = convert_change(c->rel, c->tg, c->oldtup, c->newtup, c->old_is_key, c->row);
}

/*
 * convert_change() in a subtransaction of its own (careful mode): an error
 * is caught, the subtransaction rolled back (the owner's identity, GUC
 * levels, locks and buffers of the conversion with it), and *error set to
 * its SQLSTATE and message; the change is then recorded without values.
 */
static bool
convert_change_careful(Relation rel, Trigger *tg, HeapTuple oldtup, HeapTuple newtup,
					   bool old_is_key, AuditDecodedRow *row, char **error)
{
	ConvertCall c = {rel, tg, oldtup, newtup, old_is_key, row, false};
	ErrorData  *edata = audit_run_in_subxact(convert_call, &c);

	*error = NULL;
	if (edata == NULL)
		return c.result;
	*error = psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode), edata->message);
	FreeErrorData(edata);
	/* nothing of a conversion that failed half-way is used */
	memset(row, 0, sizeof(*row));
	return true;
}

static void
plugin_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			  Relation rel, ReorderBufferChange *change)
{
	Trigger    *tg = wal_trigger(rel);
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	const char *action;
	AuditDecodedRow row;
	WalEvent   *e;
	MemoryContext old;
	bool		old_is_key;
	char	   *error = NULL;

	if (tg == NULL)
		return;
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			action = "INSERT";
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			action = "UPDATE";
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			action = "DELETE";
			break;
		default:
			return;
	}
#if PG_VERSION_NUM >= 170000
	oldtup = change->data.tp.oldtuple;
	newtup = change->data.tp.newtuple;
#else
	if (change->data.tp.oldtuple)
		oldtup = &change->data.tp.oldtuple->tuple;
	if (change->data.tp.newtuple)
		newtup = &change->data.tp.newtuple->tuple;
#endif
	if (change->action == REORDER_BUFFER_CHANGE_DELETE)
		newtup = NULL;
	if (change->action == REORDER_BUFFER_CHANGE_INSERT)
		oldtup = NULL;
	/*
	 * A DELETE without an old tuple (replica identity NOTHING, or DEFAULT
	 * without a key: an inheritance child, a catalog edited by hand) is
	 * still an event, recorded as one whose old row is not in the WAL: up
	 * to the 1.6 security review it was skipped, silently.  With a replica
	 * identity other than FULL (as of the change) the old tuple holds only
	 * the key: never recorded as the old row.
	 */
	if (oldtup == NULL && newtup == NULL && change->action != REORDER_BUFFER_CHANGE_DELETE)
		return;
	old_is_key = oldtup != NULL && rel->rd_rel->relreplident != REPLICA_IDENTITY_FULL;

	old = MemoryContextSwitchTo(DecodeRowContext);
	if (!(wal_careful ?
		  convert_change_careful(rel, tg, oldtup, newtup, old_is_key, &row, &error) :
		  convert_change(rel, tg, oldtup, newtup, old_is_key, &row)))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(DecodeRowContext);
		return;
	}
	MemoryContextSwitchTo(BatchContext);
	e = new_event(action, rel, txn);
	if (error != NULL)
	{
		/* recorded without its values, under the table's own name */
		e->schema_name = CStringGetTextDatum(get_namespace_name(RelationGetNamespace(rel)));
		e->table_name = CStringGetTextDatum(RelationGetRelationName(rel));
		e->not_converted = pstrdup(error);
		wal_unconverted++;
		ereport(WARNING,
				(errmsg("audit_ext wal capture: a change of table \"%s\" (transaction %u) is recorded without its values",
						RelationGetRelationName(rel), txn->xid),
				 errdetail("Converting it failed: %s", error)));
	}
	else
	{
		e->schema_name = datumCopy(row.schema_name, false, -1);
		e->table_name = datumCopy(row.table_name, false, -1);
	}
	if (rel->rd_rel->relispartition && strcmp(tg->tgname, "audit_ext_wal_part") == 0)
	{
		/* a partition's change: recorded under the audited partitioned table */
		Oid			root = wal_partition_root(rel);

		if (OidIsValid(root))
		{
			char	   *nsp = get_namespace_name(get_rel_namespace(root));
			char	   *name = get_rel_name(root);

			if (nsp != NULL && name != NULL)
			{
				e->relid = root;
				e->schema_name = CStringGetTextDatum(nsp);
				e->table_name = CStringGetTextDatum(name);
			}
		}
	}
	e->record_id = copy_jsonb(row.record_id);
	e->old_data = copy_jsonb(row.old_data);
	e->new_data = copy_jsonb(row.new_data);
	e->changed_columns = copy_jsonb(row.changed_columns);
	e->missing_old = (change->action != REORDER_BUFFER_CHANGE_INSERT && (oldtup == NULL || old_is_key));
	e->too_large = row.too_large;
	batch_events = lappend(batch_events, e);
	MemoryContextSwitchTo(old);
	MemoryContextReset(DecodeRowContext);
}

static void
plugin_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				int nrelations, Relation relations[], ReorderBufferChange *change)
{
	for (int i = 0; i < nrelations; i++)
	{
		Trigger    *tg = wal_trigger(relations[i]);
		Datum		nsp;
		Datum		name;
		WalEvent   *e;
		MemoryContext old;

		if (tg == NULL)
			continue;
		old = MemoryContextSwitchTo(BatchContext);
		audit_capture_decoded_names(relations[i], tg, &nsp, &name);
		e = new_event("TRUNCATE", relations[i], txn);
		e->schema_name = datumCopy(nsp, false, -1);
		e->table_name = datumCopy(name, false, -1);
		batch_events = lappend(batch_events, e);
		MemoryContextSwitchTo(old);
	}
}

/* the worker's own recent write transactions (their commits move nothing) */
#define OWN_XIDS	16
static TransactionId own_xids[OWN_XIDS];
static int	own_next = 0;

static bool
own_xid(TransactionId xid)
{
	for (int i = 0; i < OWN_XIDS; i++)
		if (TransactionIdIsValid(own_xids[i]) && TransactionIdEquals(own_xids[i], xid))
			return true;
	return false;
}

static void
plugin_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	ListCell   *lc;
	TimestampTz ct;

	/*
	 * One of the worker's own batches (events only, nothing to capture):
	 * taking its end as progress would make every batch write another
	 * progress transaction 10 s later, for ever.
	 */
	if (own_xid(txn->xid))
	{
		cur_context = NULL;
		return;
	}

	ct = txn->xact_time.commit_time;
	for_each_from(lc, batch_events, txn_first)
		((WalEvent *) lfirst(lc))->commit_time = ct;
	batch_last_end = txn->end_lsn;
	batch_last_commit_time = ct;
	batch_decoded_commits++;
	cur_context = NULL;
}

static void
plugin_shutdown(LogicalDecodingContext *ctx)
{
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = plugin_startup;
	cb->begin_cb = plugin_begin;
	cb->change_cb = plugin_change;
	cb->truncate_cb = plugin_truncate;
	cb->commit_cb = plugin_commit;
	cb->message_cb = plugin_message;
	/*
	 * No filter_by_origin_cb: up to the 1.6 security review the changes of
	 * our own origin were skipped (meant for the worker's own writes), so a
	 * session that took the origin while the worker was down
	 * (pg_replication_origin_session_setup: superuser, or EXECUTE granted)
	 * made changes no event recorded.  The worker's own transactions touch
	 * only audit tables, which have no WAL-mode trigger; plugin_commit
	 * knows them by their xids.
	 */
	cb->shutdown_cb = plugin_shutdown;
}

/* ----------------------------------------------------------------
 * The slot: created by audit.enable(..., capture => 'wal')
 * ----------------------------------------------------------------
 */
/* "audit_ext" among the comma-separated names of list */
static bool
plugin_listed(const char *list)
{
	char	   *copy = pstrdup(list);
	List	   *names;
	ListCell   *lc;

	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), "audit_ext") == 0 ||
			strcmp((char *) lfirst(lc), "*") == 0)
			return true;
	return false;
}

static void
check_wal_requirements(void)
{
	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("capture => 'wal' requires wal_level = logical"),
				 errdetail("wal_level is \"%s\": the WAL does not hold the rows of changes.",
						   GetConfigOption("wal_level", false, false)),
				 errhint("Set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart the server.")));
	/*
	 * Some builds (a hardening patch of PostgreSQL 15.20) only load output
	 * plugins that output_plugin_libraries lists.  That is the
	 * administrator's decision: we say so rather than override it.
	 */
	{
		const char *allowed = GetConfigOption("output_plugin_libraries", true, false);

		if (allowed != NULL && !plugin_listed(allowed))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("capture => 'wal' requires audit_ext in output_plugin_libraries"),
					 errdetail("output_plugin_libraries is \"%s\".", allowed),
					 errhint("Add audit_ext to output_plugin_libraries and reload; only the audit_ext capture worker can read its slots.")));
	}
	if (walshared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("capture => 'wal' requires audit_ext in shared_preload_libraries"),
				 errdetail("The capture worker is started by the library loaded at server start."),
				 errhint("Add audit_ext to shared_preload_libraries and restart the server.")));
}

/* Create this database's slot (in the calling backend); its name. */
static void
create_slot(const char *name)
{
	LogicalDecodingContext *ctx;

	CheckSlotRequirements();
	CheckLogicalDecodingRequirements();
#if PG_VERSION_NUM >= 170000
	ReplicationSlotCreate(name, true, RS_EPHEMERAL, false, false, false);
#else
	ReplicationSlotCreate(name, true, RS_EPHEMERAL, false);
#endif
	ctx = CreateInitDecodingContext("audit_ext", NIL, false, InvalidXLogRecPtr,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									NULL, NULL, NULL);
	DecodingContextFindStartpoint(ctx);
	FreeDecodingContext(ctx);
	ReplicationSlotPersist();
	ReplicationSlotRelease();
}

/*
 * audit.wal_prepare() -> text: the requirements of WAL mode checked, this
 * database's slot created if missing; its name.  Called by audit.enable()
 * before it writes anything: a slot finds its start point only when no
 * transaction with an xid is running, ours included.
 */
Datum
audit_wal_prepare(PG_FUNCTION_ARGS)
{
	char		name[NAMEDATALEN];

	check_wal_requirements();
	wal_slot_name(MyDatabaseId, name);
	if (SearchNamedReplicationSlot(name, true) == NULL)
	{
		if (FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()))
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("the first table audited with capture => 'wal' must be enabled before its transaction writes anything"),
					 errdetail("The database's replication slot \"%s\" is created now, and a slot can only start where no transaction that wrote is running, this one included.", name),
					 errhint("Call audit.enable(..., capture => 'wal') in a transaction of its own.")));
		create_slot(name);
	}
	/* the launcher starts the worker within audit_ext.wal_naptime */
	if (walshared->launcher_latch)
		SetLatch(walshared->launcher_latch);
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/* ----------------------------------------------------------------
 * Launcher
 * ----------------------------------------------------------------
 */
typedef struct LaunchedWorker
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz started;
} LaunchedWorker;

void
audit_wal_register(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("audit_ext.wal_batch_size",
							"Events the WAL capture worker writes per transaction (at most, at a commit boundary).",
							"A source transaction is never split: a larger one is written in one batch.",
							&audit_wal_batch_size,
							10000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("audit_ext.wal_capture_pause",
							 "Holds the WAL capture workers back: they keep their slots but decode nothing.",
							 "For maintenance and tests.  The slots keep the WAL meanwhile (up to max_slot_wal_keep_size: beyond it a slot is invalidated and the changes in between are a CAPTURE_GAP).  Each worker records system/CAPTURE PAUSED and CAPTURE RESUMED events.",
							 &audit_wal_capture_pause,
							 false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("audit_ext.wal_capture_nice",
							"Nice value the WAL capture workers add to their own CPU priority (0..19).",
							"The capture worker decodes and writes beside the sessions whose changes it captures: a positive value lets their work go first when the cores are busy, and the worker takes the idle time (its lag grows under saturation and is caught up after).  Read by each worker at start (the server-wide value, or ALTER DATABASE ... SET for one database's worker) and at a configuration reload; a process cannot lower its own priority, so a lower value takes effect when the worker starts again.",
							&audit_wal_capture_nice,
							10, 0, 19,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("audit_ext.wal_test_fault",
							   "Testing only: the WAL capture worker fails to convert every change of the table of this name.",
							   "For the test of careful mode (test/wal/wal_errors.sql); empty = never.",
							   &audit_wal_test_fault,
							   "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
	DefineCustomIntVariable("audit_ext.wal_naptime",
							"Milliseconds the WAL capture worker sleeps when it has caught up.",
							NULL,
							&audit_wal_naptime,
							200, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wal_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wal_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "audit_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "audit_wal_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "audit_ext wal launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "audit_ext wal launcher");
	RegisterBackgroundWorker(&worker);
}

/* Databases with a slot or an origin of ours. */
static List *
wal_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		Oid			db;

		if (!s->in_use || strcmp(NameStr(s->data.plugin), "audit_ext") != 0)
			continue;
		if (sscanf(NameStr(s->data.name), "audit_ext_wal_%u", &db) == 1 &&
			db == s->data.database)
			dbs = list_append_unique_oid(dbs, db);
	}
	LWLockRelease(ReplicationSlotControlLock);

	/* a dropped slot: the origin remains, the worker records the gap */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(ReplicationOriginRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_replication_origin o = (Form_pg_replication_origin) GETSTRUCT(tup);
		char	   *name = TextDatumGetCString(PointerGetDatum(&o->roname));
		Oid			db;

		if (sscanf(name, "audit_ext_wal_%u", &db) == 1)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = list_append_unique_oid(dbs, db);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

void
audit_wal_launcher_main(Datum main_arg)
{
	LaunchedWorker workers[WAL_MAX_DATABASES];
	int			nworkers = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/*
	 * Connected to the security-event worker's database: reading
	 * pg_replication_origin (a shared catalog, but not one of the few read
	 * without a database) needs one.  Never a template: it would block
	 * CREATE DATABASE.
	 */
	BackgroundWorkerInitializeConnection(audit_worker_database, NULL, 0);
	pgstat_report_appname("audit_ext wal launcher");
	SpinLockAcquire(&walshared->mutex);
	walshared->launcher_pid = MyProcPid;
	walshared->launcher_latch = &MyProc->procLatch;
	SpinLockRelease(&walshared->mutex);

	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!RecoveryInProgress())
		{
			dbs = wal_databases();
			foreach(lc, dbs)
			{
				Oid			db = lfirst_oid(lc);
				int			w;
				pid_t		pid;
				BackgroundWorker worker;

				for (w = 0; w < nworkers; w++)
					if (workers[w].dboid == db)
						break;
				if (w < nworkers &&
					GetBackgroundWorkerPid(workers[w].handle, &pid) != BGWH_STOPPED)
					continue;
				/* a worker that stopped is started again, at most every 5 s */
				if (w < nworkers &&
					!TimestampDifferenceExceeds(workers[w].started, GetCurrentTimestamp(), 5000))
					continue;
				if (w == nworkers)
				{
					if (nworkers >= WAL_MAX_DATABASES)
						continue;
					nworkers++;
					workers[w].dboid = db;
					workers[w].handle = NULL;
				}
				memset(&worker, 0, sizeof(worker));
				worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
				worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
				worker.bgw_restart_time = BGW_NEVER_RESTART;
				snprintf(worker.bgw_library_name, BGW_MAXLEN, "audit_ext");
				snprintf(worker.bgw_function_name, BGW_MAXLEN, "audit_wal_worker_main");
				snprintf(worker.bgw_name, BGW_MAXLEN, "audit_ext wal capture of database %u", db);
				snprintf(worker.bgw_type, BGW_MAXLEN, "audit_ext wal capture");
				worker.bgw_main_arg = ObjectIdGetDatum(db);
				worker.bgw_notify_pid = MyProcPid;
				workers[w].started = GetCurrentTimestamp();
				if (!RegisterDynamicBackgroundWorker(&worker, &workers[w].handle))
				{
					workers[w].handle = NULL;
					ereport(WARNING,
							(errmsg("audit_ext wal launcher: no background worker slot free for database %u", db),
							 errhint("Raise max_worker_processes.")));
				}
			}
			list_free(dbs);
		}
		pgstat_report_stat(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ----------------------------------------------------------------
 * Worker
 * ----------------------------------------------------------------
 */
static int	my_entry = -1;

/*
 * audit_ext.wal_capture_nice: the worker's CPU priority, relative to the
 * server's (the postmaster's nice value, which the worker inherits).  On a
 * machine without a spare core the worker competes with the very sessions
 * whose changes it decodes; at nice 10 the kernel gives it about a tenth
 * of what a nice-0 process gets while both want the CPU, and all of an
 * idle core.  Work of the foreground goes first; the worker's lag grows
 * while the cores are saturated and is drained when they are not.
 */
static int	server_nice = 0;
static int	applied_nice = -1;

static void
apply_capture_nice(void)
{
	int			target;

	if (audit_wal_capture_nice == applied_nice)
		return;
	target = Min(server_nice + audit_wal_capture_nice, 19);
	if (setpriority(PRIO_PROCESS, 0, target) != 0)
	{
		ereport(LOG,
				(errmsg("audit_ext wal capture: could not set the worker's nice value to %d: %m", target),
				 applied_nice > audit_wal_capture_nice ?
				 errhint("A process cannot lower its own nice value: the new audit_ext.wal_capture_nice applies when the worker starts again (pg_terminate_backend() of the worker: the launcher starts it again within 5 s).") : 0));
		applied_nice = audit_wal_capture_nice;	/* said once */
		return;
	}
	applied_nice = audit_wal_capture_nice;
	ereport(DEBUG1,
			(errmsg_internal("audit_ext wal capture: nice %d", target)));
}

static void
wal_worker_exit(int code, Datum arg)
{
	if (my_entry >= 0 && walshared)
	{
		SpinLockAcquire(&walshared->mutex);
		walshared->entries[my_entry].pid = 0;
		SpinLockRelease(&walshared->mutex);
	}
}

static Datum
lsn_text(XLogRecPtr lsn)
{
	return CStringGetTextDatum(psprintf("%X/%X", LSN_FORMAT_ARGS(lsn)));
}

/*
 * A system event of the capture worker itself: now, by the worker's role and
 * process (the detail is the caller's).
 */
static void
worker_event_init(AuditEventValues *ev, const char *action, const char *status, const char *risk)
{
	audit_event_init(ev, "system", action);
	if (status)
		ev->values[AC_STATUS] = CStringGetTextDatum(status);
	ev->values[AC_EVENT_TIME] = TimestampTzGetDatum(GetCurrentTimestamp());
	ev->nulls[AC_EVENT_TIME] = false;
	ev->values[AC_DB_USER] = ev->values[AC_SESSION_USER] = ev->values[AC_ACTOR] =
		CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	ev->nulls[AC_DB_USER] = ev->nulls[AC_SESSION_USER] = ev->nulls[AC_ACTOR] = false;
	ev->values[AC_BACKEND_PID] = Int32GetDatum(MyProcPid);
	ev->nulls[AC_BACKEND_PID] = false;
	ev->values[AC_RISK] = CStringGetTextDatum(risk);
	ev->nulls[AC_RISK] = false;
}

/* A system/CAPTURE_GAP event: WAL between from and to was not captured. */
static void
emit_gap(const char *reason, XLogRecPtr from, XLogRecPtr to, const char *slot)
{
	AuditEventValues ev;
	JsonbParseState *st = NULL;
	JsonbValue	k,
				v;
	const char *keys[] = {"reason", "from_lsn", "to_lsn", "slot", "risk"};
	Datum		vals[5];

	vals[0] = CStringGetTextDatum(reason);
	vals[1] = lsn_text(from);
	vals[2] = lsn_text(to);
	vals[3] = CStringGetTextDatum(slot);
	vals[4] = CStringGetTextDatum("critical");
	worker_event_init(&ev, "CAPTURE_GAP", "failure", "critical");
	(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < 5; i++)
	{
		k.type = jbvString;
		k.val.string.val = (char *) keys[i];
		k.val.string.len = strlen(keys[i]);
		(void) pushJsonbValue(&st, WJB_KEY, &k);
		v.type = jbvString;
		v.val.string.val = TextDatumGetCString(vals[i]);
		v.val.string.len = strlen(v.val.string.val);
		(void) pushJsonbValue(&st, WJB_VALUE, &v);
	}
	ev.values[AC_DETAIL] = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
	ev.nulls[AC_DETAIL] = false;
	audit_event_emit(&ev);
	ereport(WARNING,
			(errmsg("audit_ext wal capture: changes between %X/%X and %X/%X were not captured (%s)",
					LSN_FORMAT_ARGS(from), LSN_FORMAT_ARGS(to), reason),
			 errdetail("A system/CAPTURE_GAP event records it.")));
}

/*
 * system/CAPTURE_MESSAGE_REJECTED: messages with audit_ext's prefix that
 * audit_ext did not write (no valid MAC) were decoded in committed
 * transactions and ignored: someone tried to pass a context of their own.
 */
static void
emit_rejected(int64 n, XLogRecPtr first_lsn, TransactionId first_xid, const char *slot)
{
	AuditEventValues ev;
	char	   *detail;

	worker_event_init(&ev, "CAPTURE_MESSAGE_REJECTED", "failure", "critical");
	detail = psprintf("{\"messages\": " INT64_FORMAT ", \"first_lsn\": \"%X/%X\", \"first_xid\": %u, \"slot\": \"%s\"}",
					  n, LSN_FORMAT_ARGS(first_lsn), first_xid, slot);
	ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
	ev.nulls[AC_DETAIL] = false;
	audit_event_emit(&ev);
}

/*
 * system/CAPTURE PAUSED or CAPTURE RESUMED (audit_ext.wal_capture_pause):
 * holding capture back is visible in the trail, with where it stood.
 */
static void
emit_pause(bool paused, XLogRecPtr done, const char *slot)
{
	AuditEventValues ev;
	char	   *detail;

	worker_event_init(&ev, paused ? "CAPTURE PAUSED" : "CAPTURE RESUMED", NULL, paused ? "high" : "low");
	detail = psprintf("{\"setting\": \"audit_ext.wal_capture_pause\", \"slot\": \"%s\", \"done_lsn\": \"%X/%X\"}",
					  slot, LSN_FORMAT_ARGS(done));
	ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
	ev.nulls[AC_DETAIL] = false;
	audit_event_emit(&ev);
	ereport(LOG,
			(errmsg("audit_ext wal capture %s at %X/%X (audit_ext.wal_capture_pause)",
					paused ? "paused" : "resumed", LSN_FORMAT_ARGS(done))));
}

/* Write a system event of the worker in a transaction of its own. */
static void
emit_worker_event(bool paused, XLogRecPtr done, const char *slot)
{
	set_in_logical_decoding(false);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	emit_pause(paused, done, slot);
	PopActiveSnapshot();
	CommitTransactionCommand();
	set_in_logical_decoding(true);
}

/* identity of a table, looked up once per worker (0: none) */
typedef struct IdentityEntry
{
	Oid			relid;
	int64		identity;
} IdentityEntry;

static HTAB *identity_cache = NULL;

static int64
identity_of(Oid relid)
{
	IdentityEntry *e;
	bool		found;

	if (identity_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(IdentityEntry);
		identity_cache = hash_create("audit_ext wal identities", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS);
	}
	e = hash_search(identity_cache, &relid, HASH_ENTER, &found);
	if (!found)
		e->identity = audit_table_identity(relid);
	return e->identity;
}

/* The owner of extension audit_ext (as maintenance.c finds it). */
static Oid
extension_owner(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("audit_ext"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

static int64
xid_to_full(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return ((int64) epoch << 32) | xid;
}

static void
emit_decoded(WalEvent *e)
{
	AuditEventValues ev;
	WalContext *c = e->context;
	int64		identity;

	audit_event_init(&ev, "data", e->action);
	if (c)
	{
		ev.values[AC_EVENT_TIME] = TimestampTzGetDatum(c->statement_start);
		ev.values[AC_DB_USER] = c->db_user;
		ev.nulls[AC_DB_USER] = c->null_db_user;
		ev.values[AC_SESSION_USER] = c->session_user;
		ev.nulls[AC_SESSION_USER] = c->null_session_user;
		ev.values[AC_ACTOR] = c->actor;
		ev.nulls[AC_ACTOR] = c->null_actor;
		ev.values[AC_CLIENT_ADDR] = c->client_addr;
		ev.nulls[AC_CLIENT_ADDR] = c->null_client_addr;
		ev.values[AC_APPLICATION_NAME] = c->application_name;
		ev.nulls[AC_APPLICATION_NAME] = c->null_application_name;
		ev.values[AC_CONTEXT] = c->context;
		ev.nulls[AC_CONTEXT] = c->null_context;
		ev.values[AC_BACKEND_PID] = Int32GetDatum(c->backend_pid);
		ev.nulls[AC_BACKEND_PID] = false;
		ev.values[AC_TXID] = Int64GetDatum(c->txid);
		if (c->has_statement)
		{
			ev.values[AC_STATEMENT_ID] = Int64GetDatum(c->statement_id);
			ev.nulls[AC_STATEMENT_ID] = false;
		}
		ev.values[AC_STATEMENT_SEQ] = Int32GetDatum(c->statement_seq);
		ev.nulls[AC_STATEMENT_SEQ] = false;
	}
	else
	{
		/* no statement trigger fired (replica session, applied change) */
		ev.values[AC_EVENT_TIME] = TimestampTzGetDatum(e->commit_time);
		ev.values[AC_TXID] = Int64GetDatum(xid_to_full(e->xid));
		ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in,
												   CStringGetDatum("{\"capture\": \"wal\", \"context\": \"not recorded\"}"));
		ev.nulls[AC_DETAIL] = false;
	}
	ev.nulls[AC_EVENT_TIME] = false;
	ev.nulls[AC_TXID] = false;
	if (e->missing_old)
	{
		ev.values[AC_DETAIL] = DirectFunctionCall1(jsonb_in,
												   CStringGetDatum(c ? "{\"capture\": \"wal\", \"old_row\": \"not in the WAL\"}" :
																   "{\"capture\": \"wal\", \"context\": \"not recorded\", \"old_row\": \"not in the WAL\"}"));
		ev.nulls[AC_DETAIL] = false;
	}
	if (e->too_large > 0)
	{
		char	   *d = psprintf("{\"capture\": \"wal\", \"row\": \"too large to record\", \"bytes\": " INT64_FORMAT ", \"limit\": %d}",
								 e->too_large, AUDIT_DECODED_ROW_MAX);
		Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(d));

		ev.values[AC_DETAIL] = ev.nulls[AC_DETAIL] ? j :
			DirectFunctionCall2(jsonb_concat, ev.values[AC_DETAIL], j);
		ev.nulls[AC_DETAIL] = false;
	}
	if (e->not_converted != NULL)
	{
		StringInfoData d;
		Datum		j;

		initStringInfo(&d);
		appendStringInfoString(&d, "{\"capture\": \"wal\", \"row\": \"not converted\", \"error\": ");
		escape_json(&d, e->not_converted);
		appendStringInfoChar(&d, '}');
		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(d.data));
		ev.values[AC_DETAIL] = ev.nulls[AC_DETAIL] ? j :
			DirectFunctionCall2(jsonb_concat, ev.values[AC_DETAIL], j);
		ev.nulls[AC_DETAIL] = false;
	}
	ev.values[AC_SCHEMA_NAME] = e->schema_name;
	ev.nulls[AC_SCHEMA_NAME] = false;
	ev.values[AC_TABLE_NAME] = e->table_name;
	ev.nulls[AC_TABLE_NAME] = false;
	identity = identity_of(e->relid);
	if (identity != 0)
	{
		ev.values[AC_TABLE_IDENTITY] = Int64GetDatum(identity);
		ev.nulls[AC_TABLE_IDENTITY] = false;
	}
#define SETCOL(col, d) do { if ((d) != (Datum) 0) { ev.values[col] = (d); ev.nulls[col] = false; } } while (0)
	SETCOL(AC_RECORD_ID, e->record_id);
	SETCOL(AC_OLD_DATA, e->old_data);
	SETCOL(AC_NEW_DATA, e->new_data);
	SETCOL(AC_CHANGED_COLUMNS, e->changed_columns);
#undef SETCOL
	audit_event_emit(&ev);
}

static void
publish(XLogRecPtr done, bool caught_up, int64 nevents)
{
	WalCaptureEntry *me = &walshared->entries[my_entry];
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&walshared->mutex);
	me->done_lsn = done;
	if (caught_up)
		me->caught_up_at = now;
	if (nevents > 0)
	{
		me->last_batch_at = now;
		me->last_batch_events = nevents;
		me->events_total += nevents;
	}
	if (batch_last_commit_time != 0)
		me->last_commit_time = batch_last_commit_time;
	me->origin_lsn = replorigin_session_get_progress(false);
	me->unconverted = wal_unconverted;
	SpinLockRelease(&walshared->mutex);
}

/*
 * The error that stops the worker, for audit.capture_lag: counted, with its
 * message and time, before the process exits (and is started again).
 */
static void
record_failure(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ErrorData  *edata = CopyErrorData();
	char	   *msg = psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode),
							   edata->message ? edata->message : "");
	TimestampTz now = GetCurrentTimestamp();
	char		buf[sizeof(walshared->entries[0].last_error)];

	audit_strlcpy_utf8(buf, msg, sizeof(buf));
	SpinLockAcquire(&walshared->mutex);
	walshared->entries[my_entry].failures++;
	walshared->entries[my_entry].last_error_at = now;
	memcpy(walshared->entries[my_entry].last_error, buf, sizeof(buf));
	SpinLockRelease(&walshared->mutex);
	MemoryContextSwitchTo(old);
}

/*
 * Holding a logical slot marks the process PROC_IN_LOGICAL_DECODING, and
 * snapshots leave such processes out: a walsender never writes.  We do: while
 * the worker writes its batch the flag is off, or other sessions would take
 * our transaction for aborted and mark its rows invalid (they were, in the
 * first version, 48,000 of a 60,000-event batch).  As ReplicationSlotAcquire
 * and ReplicationSlotRelease set and clear it.
 */
static void
set_in_logical_decoding(bool on)
{
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	if (on)
		MyProc->statusFlags |= PROC_IN_LOGICAL_DECODING;
	else
		MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
	ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
	LWLockRelease(ProcArrayLock);
}

/* Slot checks at start: gaps that someone else made are recorded. */
static void
check_slot_at_start(const char *name, XLogRecPtr origin_lsn)
{
	ReplicationSlot *s = SearchNamedReplicationSlot(name, true);
	bool		invalidated;

	if (s == NULL)
	{
		/* dropped: a new slot starts now, what came between is lost */
		create_slot(name);
		s = SearchNamedReplicationSlot(name, true);
		if (XLogRecPtrIsInvalid(origin_lsn) == false)
			emit_gap("replication slot dropped", origin_lsn, s->data.confirmed_flush, name);
		return;
	}
#if PG_VERSION_NUM >= 160000
	invalidated = s->data.invalidated != RS_INVAL_NONE;
#else
	invalidated = XLogRecPtrIsInvalid(s->data.restart_lsn) &&
		!XLogRecPtrIsInvalid(s->data.invalidated_at);
#endif
	if (invalidated)
	{
		XLogRecPtr	from = XLogRecPtrIsInvalid(origin_lsn) ? s->data.confirmed_flush : origin_lsn;

		ReplicationSlotDrop(name, true);
		create_slot(name);
		s = SearchNamedReplicationSlot(name, true);
		emit_gap("replication slot invalidated (max_slot_wal_keep_size)", from,
				 s->data.confirmed_flush, name);
		return;
	}
	if (!XLogRecPtrIsInvalid(origin_lsn) && s->data.confirmed_flush > origin_lsn)
		emit_gap("replication slot advanced outside the capture worker", origin_lsn,
				 s->data.confirmed_flush, name);
}

/*
 * Decode, write, confirm, for ever (audit_wal_worker_main).
 */
static void
capture_loop(LogicalDecodingContext *ctx, const char *name, XLogRecPtr origin_lsn)
{
	TimestampTz last_origin_write = GetCurrentTimestamp();
	bool		paused = false;

	for (;;)
	{
		XLogRecPtr	end_of_wal;
		bool		caught_up;
		int64		nevents;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			apply_capture_nice();
		}

		/*
		 * audit_ext.wal_capture_pause: hold the slot, decode nothing (the
		 * slot keeps the WAL; max_slot_wal_keep_size may invalidate it, and
		 * the next start records the gap).  Both edges are events.
		 */
		if (audit_wal_capture_pause != paused)
		{
			paused = audit_wal_capture_pause;
			emit_worker_event(paused, ctx->reader->EndRecPtr, name);
		}
		if (paused)
		{
			publish(ctx->reader->EndRecPtr, false, 0);
			pgstat_report_activity(STATE_IDLE, "paused (audit_ext.wal_capture_pause)");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 audit_wal_naptime, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		/* decode: outside a transaction, as a walsender does */
		pgstat_report_activity(STATE_RUNNING, "decoding WAL");
		end_of_wal = GetFlushRecPtr(NULL);
		batch_decoded_commits = 0;
		/* catalog entries of the present must not serve the past, nor the reverse */
		if (ctx->reader->EndRecPtr < end_of_wal)
			InvalidateSystemCaches();
		while (ctx->reader->EndRecPtr < end_of_wal &&
			   list_length(batch_events) < audit_wal_batch_size)
		{
			XLogRecord *record;
			char	   *errm = NULL;

			record = XLogReadRecord(ctx->reader, &errm);
			if (errm)
				elog(ERROR, "could not read WAL for audit_ext capture: %s", errm);
			if (record != NULL)
				LogicalDecodingProcessRecord(ctx, ctx->reader);
			CHECK_FOR_INTERRUPTS();
		}
		caught_up = ctx->reader->EndRecPtr >= end_of_wal;
		nevents = list_length(batch_events);
		if (batch_decoded_commits > 0)
			InvalidateSystemCaches();
		if (identity_cache)
		{
			hash_destroy(identity_cache);
			identity_cache = NULL;
		}

		/*
		 * Write: the events and the origin's progress in one transaction.
		 * A round that decoded commits without events moves the origin too,
		 * at most every 10 s, so the slot (which never passes the origin)
		 * lets the WAL go.
		 */
		if (!XLogRecPtrIsInvalid(batch_last_end) && batch_last_end > origin_lsn &&
			(nevents > 0 || batch_rejected > 0 ||
			 TimestampDifferenceExceeds(last_origin_write, GetCurrentTimestamp(), 10000)))
		{
			ListCell   *lc;

			pgstat_report_activity(STATE_RUNNING, "writing decoded events");
			set_in_logical_decoding(false);
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			foreach(lc, batch_events)
				emit_decoded((WalEvent *) lfirst(lc));
			if (batch_rejected > 0)
				emit_rejected(batch_rejected, batch_rejected_lsn, batch_rejected_xid, name);
			/* a commit record without an xid carries no origin: take one */
			own_xids[own_next++ % OWN_XIDS] = GetTopTransactionId();
			replorigin_session_origin_lsn = batch_last_end;
			replorigin_session_origin_timestamp = batch_last_commit_time;
			PopActiveSnapshot();
			CommitTransactionCommand();
			XLogFlush(XactLastCommitEnd);
			set_in_logical_decoding(true);
			origin_lsn = batch_last_end;
			last_origin_write = GetCurrentTimestamp();
			batch_rejected = 0;
			/* only now may the slot move, and never past the origin */
			LogicalConfirmReceivedLocation(origin_lsn);
			/* past what failed before: back to converting without subtransactions */
			if (wal_careful)
			{
				wal_careful = false;
				SpinLockAcquire(&walshared->mutex);
				walshared->entries[my_entry].failures = 0;
				SpinLockRelease(&walshared->mutex);
			}
		}
		/* every commit decoded so far is written: done up to the reader */
		publish(ctx->reader->EndRecPtr, caught_up, nevents);
		list_free(batch_events);
		batch_events = NIL;
		MemoryContextReset(BatchContext);
		pgstat_report_activity(STATE_IDLE, NULL);
		pgstat_report_stat(false);
		if (caught_up)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 audit_wal_naptime, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

void
audit_wal_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	char		name[NAMEDATALEN];
	char		dbname[NAMEDATALEN];
	LogicalDecodingContext *ctx;
	XLogRecPtr	origin_lsn;
	Oid			ext_owner = InvalidOid;
	MemoryContext worker_cxt;

	am_wal_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("audit_ext wal capture");
	audit_pin_search_path_for_process();
	/* the database's settings are read: audit_ext.wal_capture_nice */
	errno = 0;
	server_nice = getpriority(PRIO_PROCESS, 0);
	if (errno != 0)
		server_nice = 0;
	apply_capture_nice();
	/* the commit that carries the origin's progress is flushed before the slot moves */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	wal_slot_name(dboid, name);

	my_entry = wal_entry_for(dboid);
	if (my_entry < 0)
		ereport(ERROR,
				(errmsg("audit_ext wal capture: more than %d databases capture from the WAL", WAL_MAX_DATABASES)));
	before_shmem_exit(wal_worker_exit, (Datum) 0);
	SpinLockAcquire(&walshared->mutex);
	walshared->entries[my_entry].pid = MyProcPid;
	wal_careful = walshared->entries[my_entry].failures > 0;
	wal_unconverted = walshared->entries[my_entry].unconverted;
	SpinLockRelease(&walshared->mutex);
	if (wal_careful)
		ereport(LOG,
				(errmsg("audit_ext wal capture: the previous worker of database %u failed; each change is converted in a subtransaction until the first batch is written",
						dboid)));

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "audit_ext wal capture",
									   ALLOCSET_DEFAULT_SIZES);
	BatchContext = AllocSetContextCreate(worker_cxt, "audit_ext wal batch",
										 ALLOCSET_DEFAULT_SIZES);
	DecodeRowContext = AllocSetContextCreate(worker_cxt, "audit_ext wal row",
											 ALLOCSET_DEFAULT_SIZES);

	/* the extension, its owner, our origin */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("audit_ext", true)) ||
		!OidIsValid(audit_event_relid(true)))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("audit_ext wal capture: extension audit_ext is not installed in database %u; slot \"%s\" is not read",
						dboid, name),
				 errhint("Drop the slot with pg_drop_replication_slot('%s') and the origin with pg_replication_origin_drop('%s') if the extension is gone for good.",
						 name, name)));
		proc_exit(1);
	}
	ext_owner = extension_owner();
	strlcpy(dbname, get_database_name(dboid), sizeof(dbname));
	our_origin = replorigin_by_name(name, true);
	if (our_origin == InvalidRepOriginId)
		our_origin = replorigin_create(name);
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* origin first: its LSN is where the trail's events end */
#if PG_VERSION_NUM >= 160000
	replorigin_session_setup(our_origin, 0);
#else
	replorigin_session_setup(our_origin);
#endif
	/* our commits carry the origin and its progress (as the apply worker's) */
	replorigin_session_origin = our_origin;
	origin_lsn = replorigin_session_get_progress(false);

	/*
	 * Everything from here runs as the extension's owner, as maintenance
	 * does (docs/architecture.md, "Threat model").
	 */
	if (OidIsValid(ext_owner))
		SetUserIdAndSecContext(ext_owner, SECURITY_LOCAL_USERID_CHANGE);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	check_slot_at_start(name, origin_lsn);
	PopActiveSnapshot();
	CommitTransactionCommand();

#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(name, true, true);
#else
	ReplicationSlotAcquire(name, true);
#endif
	ereport(LOG,
			(errmsg("audit_ext wal capture started in database \"%s\" (slot \"%s\", origin at %X/%X, nice %d)",
					dbname, name, LSN_FORMAT_ARGS(origin_lsn), getpriority(PRIO_PROCESS, 0))));

	/*
	 * Commits at or before the origin's LSN are written already: decoding
	 * starts there (the snapshot builder skips them), or at the slot's
	 * confirmed position when the origin is behind it (a gap, recorded).
	 */
	{
		MemoryContext old = MemoryContextSwitchTo(worker_cxt);

		ctx = CreateDecodingContext(origin_lsn, NIL, false,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									NULL, NULL, NULL);
		MemoryContextSwitchTo(old);
	}
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);

	/*
	 * An error ends the process (the launcher starts it again); first it is
	 * counted, for audit.capture_lag and for careful mode in the next one.
	 */
	PG_TRY();
	{
		capture_loop(ctx, name, origin_lsn);
	}
	PG_CATCH();
	{
		record_failure();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* ----------------------------------------------------------------
 * audit.wal_capture_status(): the view audit.capture_lag
 * ----------------------------------------------------------------
 */
Datum
audit_wal_capture_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13];
	char		name[NAMEDATALEN];
	WalCaptureEntry e;
	bool		found = false;
	ReplicationSlot *s;
	XLogRecPtr	confirmed = InvalidXLogRecPtr;
	XLogRecPtr	now_lsn = GetXLogInsertRecPtr();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, true, sizeof(nulls));
	memset(&e, 0, sizeof(e));
	wal_slot_name(MyDatabaseId, name);
	if (walshared)
	{
		SpinLockAcquire(&walshared->mutex);
		for (int i = 0; i < WAL_MAX_DATABASES; i++)
			if (walshared->entries[i].dboid == MyDatabaseId)
			{
				e = walshared->entries[i];
				found = true;
			}
		SpinLockRelease(&walshared->mutex);
	}
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(name, false);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		confirmed = s->data.confirmed_flush;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (s == NULL && !found)
		PG_RETURN_NULL();

	values[0] = CStringGetTextDatum(name);
	nulls[0] = false;
	if (found && e.pid != 0)
	{
		values[1] = Int32GetDatum(e.pid);
		nulls[1] = false;
	}
	if (!XLogRecPtrIsInvalid(confirmed))
	{
		values[2] = LSNGetDatum(confirmed);
		nulls[2] = false;
	}
	if (found && !XLogRecPtrIsInvalid(e.done_lsn))
	{
		values[3] = LSNGetDatum(e.done_lsn);
		nulls[3] = false;
		values[4] = Int64GetDatum(now_lsn > e.done_lsn ? (int64) (now_lsn - e.done_lsn) : 0);
		nulls[4] = false;
	}
	else if (!XLogRecPtrIsInvalid(confirmed))
	{
		values[4] = Int64GetDatum(now_lsn > confirmed ? (int64) (now_lsn - confirmed) : 0);
		nulls[4] = false;
	}
	if (found && e.caught_up_at != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(e.caught_up_at, GetCurrentTimestamp(), &secs, &usecs);
		values[5] = Float8GetDatum(secs + usecs / 1e6);
		nulls[5] = false;
	}
	if (found && e.last_batch_at != 0)
	{
		values[6] = TimestampTzGetDatum(e.last_batch_at);
		nulls[6] = false;
		values[7] = Int64GetDatum(e.last_batch_events);
		nulls[7] = false;
	}
	if (found)
	{
		values[8] = Int64GetDatum(e.events_total);
		nulls[8] = false;
		values[9] = Int32GetDatum(e.failures);
		nulls[9] = false;
		if (e.last_error_at != 0)
		{
			values[10] = CStringGetTextDatum(e.last_error);
			nulls[10] = false;
			values[11] = TimestampTzGetDatum(e.last_error_at);
			nulls[11] = false;
		}
		values[12] = Int64GetDatum(e.unconverted);
		nulls[12] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
