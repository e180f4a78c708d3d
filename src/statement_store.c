/*-------------------------------------------------------------------------
 *
 * statement_store.c
 *		Store the SQL text of audited statements once, in audit.statement.
 *
 * An event refers to its statement text by statement_id, a 64-bit hash of
 * the text (probing to the next id in the rare case of a collision).  Each
 * backend remembers the ids it has seen committed, so a statement executed
 * again and again (a prepared statement, an OLTP workload) costs one hash
 * per statement and no write at all.  Only the first sighting of a text
 * inserts it, through a saved SPI plan run as the owner of the audit store
 * (the writing user has no rights on it).
 *
 * New texts are bounded per backend (issue 18): any role can make distinct
 * texts at will (a comment is enough), and each one is a row.  A backend
 * stores at most audit_ext.statement_texts_burst new texts, refilled at
 * audit_ext.statement_texts_per_second (a token bucket); beyond that its events refer to one placeholder
 * text saying so, and a system/STATEMENT_TEXT_LIMIT event (through the
 * queue) records when a session hit the limit.  The worker, which stores the
 * texts of every backend's queued events, is not limited (the queue is).
 *
 * Texts are pruned (1.5): audit.prune() deletes the texts no remaining
 * event refers to (retention.c, audit_prune_statements).  A backend that
 * still believed such a text stored would refer to a missing text, so
 * before a transaction uses its first statement id, the backend takes
 * RowExclusiveLock on audit.statement (held to the end of the
 * transaction, a fast-path lock) and compares the shared generation of
 * texts (queue.c) with the one its caches were filled under; a different
 * one empties the caches.  audit.prune() takes ShareLock on audit.statement
 * (which waits for every transaction that uses statement ids and holds off
 * new ones until it commits), bumps the generation and only then decides
 * what to delete, with a snapshot taken after the lock: an event written by
 * a transaction that committed before is seen, and one written after the
 * prune's commit comes from a backend that saw the new generation.
 * Without shared_preload_libraries there is no shared generation; texts
 * are then never pruned, and no lock is taken.
 *
 * Statement identity within a transaction: the client's query string and
 * the statement start time identify one execution; statement_seq numbers
 * the executions within the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/keywords.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/scanner.h"
#if PG_VERSION_NUM < 160000
#include "parser/gram.h"		/* token numbers; after scanner.h */
#endif
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define KNOWN_SLOTS 4096		/* power of two */

int			audit_statement_texts_burst = 2000;
int			audit_statement_texts_per_second = 100;

#define STATEMENT_PLACEHOLDER "[statement text not stored: this session stored new statement texts faster than audit_ext.statement_texts_burst and audit_ext.statement_texts_per_second allow]"

static double statement_tokens = -1;	/* -1: full, set at first use */
static TimestampTz statement_tokens_time = 0;
static bool statement_limited = false;	/* in a run of limited texts */

/*
 * May this backend store one more new text?  Called only for texts it has
 * not seen stored.
 */
static bool
statement_allowed(void)
{
	TimestampTz now;

	if (MyBackendType == B_BG_WORKER)
		return true;
	now = GetCurrentTimestamp();
	if (statement_tokens < 0)
		statement_tokens = audit_statement_texts_burst;
	if (statement_tokens_time != 0)
		statement_tokens = Min((double) audit_statement_texts_burst, statement_tokens +
							   (double) (now - statement_tokens_time) / 1000000.0 * audit_statement_texts_per_second);
	statement_tokens_time = now;
	if (statement_tokens >= 1.0)
	{
		statement_tokens -= 1.0;
		statement_limited = false;
		return true;
	}
	if (!statement_limited)
	{
		AuditQueueEntry e;
		char		burst[16];
		char		rate[16];
		const char *keys[2] = {"burst", "per_second"};
		const char *vals[2] = {burst, rate};
		const bool	raw[2] = {true, true};

		snprintf(burst, sizeof(burst), "%d", audit_statement_texts_burst);
		snprintf(rate, sizeof(rate), "%d", audit_statement_texts_per_second);

		if (audit_fill_entry_for_session(&e, "system", "STATEMENT_TEXT_LIMIT", true))
		{
			audit_json_object(e.detail, sizeof(e.detail), 2, keys, vals, raw);
			(void) audit_queue_enqueue(&e);
		}
	}
	statement_limited = true;
	return false;
}

/* statement_ids known to be stored, committed: an open-addressing set */
static uint64 known_ids[KNOWN_SLOTS];
static int	known_count = 0;

/* ids inserted by the running transaction: known only once it commits */
#define PENDING_MAX 256
static uint64 pending_ids[PENDING_MAX];
static int	pending_count = 0;
static bool recheck_id = false;

/* identity of the current statement execution */
static uint64 xact_generation = 1;
static uint64 last_generation = 0;
static TimestampTz last_stmt_start = 0;
static const char *last_query = NULL;
static int32 last_seq = 0;
static bool last_id_null = true;
static uint64 last_id = 0;
static int	last_mode = AUDIT_LITERALS_REDACT;

/* query string hash -> statement_id, so a repeated string is scanned once */
#define RAW_MAP_SLOTS 1024

typedef struct RawMapEntry
{
	uint64		raw;
	uint64		id;
	int			mode;
} RawMapEntry;

static RawMapEntry raw_map[RAW_MAP_SLOTS];

/* the shared generation the caches above were filled under */
static uint64 cache_generation = 0;
/* RowExclusiveLock on audit.statement taken by the running transaction */
static bool statement_locked = false;

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr select_plan = NULL;

static bool
known_contains(uint64 id)
{
	uint32		slot = (uint32) (id ^ (id >> 32)) & (KNOWN_SLOTS - 1);

	for (int probe = 0; probe < KNOWN_SLOTS; probe++)
	{
		uint64		v = known_ids[(slot + probe) & (KNOWN_SLOTS - 1)];

		if (v == id)
			return true;
		if (v == 0)
			return false;
	}
	return false;
}

static void
known_add(uint64 id)
{
	uint32		slot;

	if (id == 0 || known_contains(id))
		return;
	/* keep the table at most half full: start over when it fills */
	if (known_count >= KNOWN_SLOTS / 2)
	{
		memset(known_ids, 0, sizeof(known_ids));
		known_count = 0;
	}
	slot = (uint32) (id ^ (id >> 32)) & (KNOWN_SLOTS - 1);
	while (known_ids[slot] != 0)
		slot = (slot + 1) & (KNOWN_SLOTS - 1);
	known_ids[slot] = id;
	known_count++;
}

static bool
pending_contains(uint64 id)
{
	for (int i = 0; i < pending_count; i++)
		if (pending_ids[i] == id)
			return true;
	return false;
}

/*
 * Before the running transaction uses a statement id: lock audit.statement
 * against audit.prune()'s ShareLock, once per transaction, then forget the
 * cached ids if prune deleted texts since they were cached.  Nothing without
 * shared memory (texts are not pruned then).
 */
void
audit_statement_guard(void)
{
	Oid			nsp;
	Oid			relid;
	uint64		gen;

	if (statement_locked || !audit_queue_available() || !IsTransactionState() ||
		RecoveryInProgress())
		return;
	nsp = get_namespace_oid("audit", true);
	relid = OidIsValid(nsp) ? get_relname_relid("statement", nsp) : InvalidOid;
	if (!OidIsValid(relid))
		return;
	LockRelationOid(relid, RowExclusiveLock);
	statement_locked = true;
	gen = audit_statement_generation();
	if (gen != cache_generation)
	{
		memset(known_ids, 0, sizeof(known_ids));
		known_count = 0;
		memset(raw_map, 0, sizeof(raw_map));
		cache_generation = gen;
	}
}

/*
 * audit.prune() deleted texts in this backend's own transaction: whatever
 * this backend cached may be gone; the rest of the transaction stores again
 * what it uses (the guard's lock is held already, so it would not look).
 */
void
audit_statement_forget_cache(void)
{
	memset(known_ids, 0, sizeof(known_ids));
	known_count = 0;
	memset(raw_map, 0, sizeof(raw_map));
	cache_generation = audit_statement_generation();
}

/*
 * Concurrent first sightings of one text.  The insert below is made in the
 * user's transaction, and ON CONFLICT waits for another transaction that
 * inserted the same id and has not ended: two sessions running the same
 * statement shape on different rows waited for each other's commit, and
 * two that had each first run a text the other ran next deadlocked
 * (found by the isolation tests, docs/testing.md).  So before inserting, an
 * id held by a transaction still in progress is skipped like a hash
 * collision (the text is then stored once more, under the next free id),
 * and the check and the insert run under a lock on the id that is held only
 * for those two steps, so no other backend can slip its insert in between.
 */
#define STATEMENT_LOCK_FIELD4	0x4155	/* advisory lock space: not 1 or 2 */

static bool
statement_id_busy(Oid relid, uint64 id)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index;
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		busy = false;
#if PG_VERSION_NUM >= 180000
	Oid			indexid = RelationGetPrimaryKeyIndex(rel, false);
#else
	Oid			indexid = RelationGetPrimaryKeyIndex(rel);
#endif

	if (!OidIsValid(indexid))
	{
		table_close(rel, AccessShareLock);
		return false;
	}
	index = index_open(indexid, AccessShareLock);
	InitDirtySnapshot(dirty);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum((int64) id));
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, &dirty, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	/* the dirty snapshot names the inserting or deleting xact in progress */
	while (!busy && index_getnext_slot(scan, ForwardScanDirection, slot))
		busy = TransactionIdIsValid(dirty.xmin) || TransactionIdIsValid(dirty.xmax);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return busy;
}

/*
 * Insert the text under id, or find it already there.  Returns the id the
 * text is stored under (id, or a later one after a hash collision or when
 * id is being inserted by a transaction in progress).
 */
static uint64
store_statement(uint64 hash, const char *sql, int len)
{
	volatile uint64 id = hash;
	Oid			save_userid;
	int			save_sec;
	Oid			owner;
	Oid			nsp;
	Oid			relid;
	text	   *txt = cstring_to_text_with_len(sql, len);

	nsp = get_namespace_oid("audit", false);
	relid = get_relname_relid("statement", nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("audit store audit.statement does not exist"),
				 errhint("Reinstall the audit_ext extension.")));
	{
		HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

		if (!HeapTupleIsValid(tp))
			elog(ERROR, "cache lookup failed for relation %u", relid);
		owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
		ReleaseSysCache(tp);
	}

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		/*
		 * Planned and run under pg_catalog only: the caller's search_path
		 * must not pick the "=" below (elevated.c).  The saved plans are
		 * re-planned whenever the path differs from the one they were made
		 * under, so the path is pinned on every call, not just the first.
		 */
		int			nest = audit_spi_connect();

		if (insert_plan == NULL)
		{
			Oid			types[2] = {INT8OID, TEXTOID};
			SPIPlanPtr	p;

			p = SPI_prepare("INSERT INTO audit.statement (statement_id, statement_text) "
							"VALUES ($1, $2) ON CONFLICT (statement_id) DO NOTHING",
							2, types);
			if (p == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			insert_plan = p;
			p = SPI_prepare("SELECT statement_text OPERATOR(pg_catalog.=) $2 FROM audit.statement "
							"WHERE statement_id OPERATOR(pg_catalog.=) $1", 2, types);
			if (p == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			select_plan = p;
		}
		for (;;)
		{
			Datum		args[2] = {Int64GetDatum((int64) id), PointerGetDatum(txt)};
			bool		isnull;
			Datum		same;
			LOCKTAG		tag;
			bool		busy;

			SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (id >> 32),
								 (uint32) id, STATEMENT_LOCK_FIELD4);
			(void) LockAcquire(&tag, ExclusiveLock, false, false);
			busy = statement_id_busy(relid, id);
			if (!busy &&
				SPI_execute_plan(insert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not store statement text");
			LockRelease(&tag, ExclusiveLock, false);
			if (busy)
			{
				id++;			/* taken by a transaction in progress */
				if (id == 0)
					id = 1;
				continue;
			}
			if (SPI_processed == 1)
				break;
			if (SPI_execute_plan(select_plan, args, NULL, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read back statement text");

			/*
			 * No row visible: a concurrent transaction stored this id and
			 * committed after our snapshot was taken (ON CONFLICT waited for
			 * it).  It stored this very text unless 64-bit hashes collided.
			 */
			if (SPI_processed == 0)
				break;
			same = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull && DatumGetBool(same))
				break;
			id++;				/* collision: probe the next id */
			if (id == 0)
				id = 1;
		}
		audit_spi_finish(nest);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	return id;
}

/* Does the text mention a password (any case)? */
static bool
mentions_password(const char *query, int len)
{
	for (int i = 0; i + 8 <= len; i++)
		if ((query[i] == 'p' || query[i] == 'P') &&
			pg_strncasecmp(query + i, "password", 8) == 0)
			return true;
	return false;
}

#if PG_VERSION_NUM >= 160000
/*
 * parser/gram.h, which numbers the grammar's tokens, is not installed from
 * PostgreSQL 16 on.  The numbers of the literal tokens are learnt from the
 * core scanner itself, once per backend, by scanning one literal of each
 * kind (SCONST, USCONST, BCONST, XCONST, ICONST, FCONST).
 */
#define N_LITERAL_TOKENS 6
static int	literal_tokens[N_LITERAL_TOKENS];
static bool literal_tokens_known = false;

static void
learn_literal_tokens(void)
{
	static const char *const samples[N_LITERAL_TOKENS] =
	{"'s'", "U&'s'", "b'1'", "x'1'", "1", "1.5"};
	int			found[N_LITERAL_TOKENS];

	for (int i = 0; i < N_LITERAL_TOKENS; i++)
	{
		char	   *copy = pstrdup(samples[i]);
		core_yyscan_t yyscanner;
		core_yy_extra_type yyextra;
		core_YYSTYPE yylval;
		YYLTYPE		yylloc;

		yyscanner = scanner_init(copy, &yyextra, &ScanKeywords, ScanKeywordTokens);
		yyextra.standard_conforming_strings = true; /* U&'' needs it */
		yyextra.escape_string_warning = false;
		found[i] = core_yylex(&yylval, &yylloc, yyscanner);
		scanner_finish(yyscanner);
		pfree(copy);
		if (found[i] <= 255)	/* a literal is never a one-character token */
			elog(ERROR, "unexpected token %d for literal %s", found[i], samples[i]);
	}
	memcpy(literal_tokens, found, sizeof(literal_tokens));
	literal_tokens_known = true;
}

static bool
is_literal_token(int tok)
{
	if (!literal_tokens_known)
		learn_literal_tokens();
	for (int i = 0; i < N_LITERAL_TOKENS; i++)
		if (tok == literal_tokens[i])
			return true;
	return false;
}
#else
#define is_literal_token(tok) \
	((tok) == SCONST || (tok) == USCONST || (tok) == BCONST || \
	 (tok) == XCONST || (tok) == ICONST || (tok) == FCONST)
#endif

/*
 * The text as stored: with audit_ext.statement_literals = redact, every
 * literal (string, number, bit string) becomes "?", so that values the DBA
 * excluded or masked, passwords and other secrets in the SQL never reach the
 * trail; the values that matter are in old_data/new_data anyway.  The core
 * scanner finds the literals, as pg_stat_statements does: right after a
 * token is returned, the scanner's buffer holds it NUL-terminated.  Returns
 * NULL if the text cannot be scanned (it is then not stored at all).
 * Under keep, a text that mentions a password is redacted all the same: a
 * query string with several statements is stored as one text, so an INSERT
 * sent together with ALTER ROLE ... PASSWORD would otherwise store it.
 */
static char *
statement_text(const char *query, int len, int mode, int *outlen)
{
	char	   *copy;
	core_yyscan_t yyscanner;
	core_yy_extra_type yyextra;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	StringInfoData buf;
	volatile int done = 0;
	MemoryContext mcxt = CurrentMemoryContext;
	volatile bool ok = true;

	if (mode == AUDIT_LITERALS_KEEP && !mentions_password(query, len))
	{
		*outlen = len;
		return pnstrdup(query, len);
	}

	copy = pnstrdup(query, len);
	initStringInfo(&buf);
	PG_TRY();
	{
		yyscanner = scanner_init(copy, &yyextra, &ScanKeywords, ScanKeywordTokens);
		/* the statement already ran: do not warn about its strings twice */
		yyextra.escape_string_warning = false;
		for (;;)
		{
			int			tok = core_yylex(&yylval, &yylloc, yyscanner);

			if (tok == 0)
				break;
			if (is_literal_token(tok))
			{
				int			toklen = strlen(yyextra.scanbuf + yylloc);

				appendBinaryStringInfo(&buf, query + done, yylloc - done);
				appendStringInfoChar(&buf, '?');
				done = yylloc + toklen;
			}
		}
		scanner_finish(yyscanner);
	}
	PG_CATCH();
	{
		/* the statement ran, so this is unexpected: store nothing */
		MemoryContextSwitchTo(mcxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
		return NULL;
	if (done < len)
		appendBinaryStringInfo(&buf, query + done, len - done);
	*outlen = buf.len;
	return buf.data;
}

/*
 * The stored form of query, cut to maxlen bytes (whole characters) after its
 * literals were redacted: cutting first left the scanner an unterminated
 * literal, quoted identifier or comment whenever the cut fell inside one,
 * and the text was lost (found by test/documented_behaviour.sql).
 */
static char *
statement_text_cut(const char *query, int len, int mode, int maxlen, int *outlen)
{
	char	   *text = statement_text(query, len, mode, outlen);

	if (text != NULL && *outlen > maxlen)
	{
		*outlen = pg_mbcliplen(text, *outlen, maxlen);
		text[*outlen] = '\0';
	}
	return text;
}

/*
 * The id of query (its first len bytes) stored with literals as mode says
 * and cut to maxlen bytes, storing it if this backend has not seen it
 * committed.  0 if it cannot be stored (the scanner failed).
 */
static uint64
statement_id_for(const char *query, int len, int mode, int maxlen)
{
	uint64		raw;
	RawMapEntry *map;
	uint64		id = 0;
	char	   *text = NULL;
	int			textlen = 0;

	/* the same query string again: no need to scan it again */
	raw = DatumGetUInt64(hash_any_extended((const unsigned char *) query,
										   len, 0x72617720 ^ (uint64) maxlen));
	map = &raw_map[raw % RAW_MAP_SLOTS];
	if (map->raw == raw && map->mode == mode)
		id = map->id;
	else
	{
		text = statement_text_cut(query, len, mode, maxlen, &textlen);
		if (text != NULL)
		{
			id = DatumGetUInt64(hash_any_extended((const unsigned char *) text,
												  textlen, 0x61756469));
			if (id == 0)
				id = 1;
		}
	}

	if (id != 0 && !known_contains(id) && !pending_contains(id) &&
		!statement_allowed())
	{
		/* over this backend's rate: the placeholder (stored once) */
		text = pstrdup(STATEMENT_PLACEHOLDER);
		textlen = strlen(text);
		id = DatumGetUInt64(hash_any_extended((const unsigned char *) text,
											  textlen, 0x61756469));
		map = NULL;				/* the query's own id is not known */
	}
	if (id != 0 && !known_contains(id) && !pending_contains(id))
	{
		if (text == NULL)
			text = statement_text_cut(query, len, mode, maxlen, &textlen);
		if (text != NULL)
		{
			id = store_statement(id, text, textlen);
			if (pending_count < PENDING_MAX)
				pending_ids[pending_count++] = id;
		}
		else
			id = 0;
	}
	if (id != 0 && map != NULL)
	{
		map->raw = raw;
		map->mode = mode;
		map->id = id;
	}
	return id;
}

/*
 * The statement_id and statement_seq of the statement running now.
 * force_redact stores the text with its literals redacted whatever
 * audit_ext.statement_literals says (a statement carrying a password).
 */
void
audit_current_statement(Datum *statement_id, bool *id_null, int32 *statement_seq,
						bool force_redact)
{
	TimestampTz start = GetCurrentStatementStartTimestamp();
	const char *query = debug_query_string;
	int			mode = force_redact ? AUDIT_LITERALS_REDACT : audit_statement_literals;
	bool		same = (last_generation == xact_generation &&
						start == last_stmt_start && query == last_query);

	if (!same)
	{
		if (last_generation != xact_generation)
		{
			last_seq = 0;
			last_generation = xact_generation;
		}
		last_seq++;
		last_stmt_start = start;
		last_query = query;
	}

	/*
	 * A query string with several statements is one text: once one of them
	 * forced redaction, every event of the string refers to the redacted
	 * text.
	 */
	if (same && mode != last_mode && mode == AUDIT_LITERALS_REDACT)
		recheck_id = true;
	else if (same)
		mode = last_mode;

	if (!same || recheck_id)
	{
		last_id_null = true;
		recheck_id = false;
		last_mode = mode;
		if (query != NULL && audit_log_statement_text)
		{
			uint64		id;

			audit_statement_guard();
			id = statement_id_for(query, strlen(query), mode, audit_max_statement_length);
			if (id != 0)
			{
				last_id = id;
				last_id_null = false;
			}
		}
	}

	*statement_id = Int64GetDatum((int64) last_id);
	*id_null = last_id_null;
	*statement_seq = last_seq;
}

/*
 * The statement_id of a text that another backend queued (denied.c), for
 * the worker.  Returns false if nothing is stored.
 */
bool
audit_store_statement_text(const char *sql, bool redact, Datum *statement_id)
{
	uint64		id;

	if (sql == NULL || sql[0] == '\0' || !audit_log_statement_text)
		return false;
	audit_statement_guard();
	id = statement_id_for(sql, strlen(sql),
						  redact ? AUDIT_LITERALS_REDACT : AUDIT_LITERALS_KEEP,
						  audit_max_statement_length);
	if (id == 0)
		return false;
	*statement_id = Int64GetDatum((int64) id);
	return true;
}

/*
 * Transaction end (top_level) or subtransaction abort.  Ids inserted by a
 * committed transaction become known.  After an abort the inserts of the
 * running transaction may be gone, so they are forgotten and the current
 * statement's id is checked again (ON CONFLICT makes re-storing harmless).
 */
void
audit_statement_xact_end(bool abort, bool top_level)
{
	if (!abort)
	{
		for (int i = 0; i < pending_count; i++)
			known_add(pending_ids[i]);
	}
	pending_count = 0;
	recheck_id = true;
	/* the lock went with the (sub)transaction that took it, maybe this one */
	statement_locked = false;
	if (top_level)
		xact_generation++;
}
