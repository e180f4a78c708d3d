/*-------------------------------------------------------------------------
 *
 * event_writer.c
 *		Buffer audit events for the running transaction and write them into
 *		the partitioned table audit.event in batches.
 *
 * Capture (a row trigger) only forms a tuple and appends it to a buffer.
 * The buffer is written:
 *	- when a statement finishes (ExecutorFinish / ProcessUtility hooks),
 *	- when it holds AUDIT_FLUSH_EVENTS events (bulk statements),
 *	- before a subtransaction commits and before the transaction commits or
 *	  is prepared (xact callbacks) -- the guarantee that a committed change
 *	  always has its events.
 * Each buffered event remembers the subtransaction that captured it and is
 * only ever written while that subtransaction is current, so the event gets
 * the same xid as the change: ROLLBACK TO SAVEPOINT removes both, and events
 * of a subtransaction that aborts before its flush are simply discarded.
 *
 * A batch is written with table_multi_insert() into the leaf partition found
 * by PostgreSQL's own tuple routing (or, for a transaction's first events,
 * straight into the leaf of their class and month: see
 * writer_open_direct()), and index entries are added with
 * ExecInsertIndexTuples(): no SQL is parsed, planned or executed per event,
 * and no permission on audit.event is needed by the writing user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amapi.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/index.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/resowner.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

/* Write the buffer once it holds this many events or bytes. */
#define AUDIT_FLUSH_EVENTS	1000
#define AUDIT_FLUSH_BYTES	(8 * 1024 * 1024)

static const char *const audit_column_names[AC_NUM_COLUMNS] = {
	"id", "event_time", "class", "action", "status", "db_user",
	"session_user", "actor", "client_addr", "application_name",
	"backend_pid", "txid", "statement_id", "statement_seq", "schema_name",
	"table_name", "record_id", "old_data", "new_data",
	"changed_columns", "detail", "table_identity", "context", "risk",
	"chain_lane", "chain_seq", "hash", "context_continues"
};

/* What we know about audit.event; rebuilt after its relcache entry changes. */
typedef struct EventTableInfo
{
	bool		valid;
	Oid			relid;
	Oid			seqid;
	TupleDesc	tupdesc;		/* copy, in WriterCacheContext */
	int			natts;
	int			attno[AC_NUM_COLUMNS];	/* 0-based index, -1 if absent */
} EventTableInfo;

typedef struct BufferedEvent
{
	HeapTuple	tuple;			/* NULL once written or handed to a slot */
	SubTransactionId subid;
	/* the partition key (class, event_time), to skip routing repeats */
	char		class_name[NAMEDATALEN];	/* "" if too long to keep */
	TimestampTz event_time;
	/* the deferred indexes it may enter (DEFER_*, writer_open_leaf_indexes()) */
	uint8		may_enter;
} BufferedEvent;

/*
 * Partial indexes of a leaf that the writer opens only for a batch holding
 * a row that may enter them (see writer_open_leaf_indexes()), by the shape
 * of their predicate.
 */
#define DEFER_CONTEXT	0x01	/* context ? <key> AND context_continues IS NOT TRUE */
#define DEFER_TRUNCATE	0x02	/* action = 'TRUNCATE' (collation "C") */
#define DEFER_DETAIL	0x04	/* detail ? <key> */

static EventTableInfo event_table;
static MemoryContext WriterCacheContext = NULL;
static MemoryContext BufferContext = NULL;
static BufferedEvent *buffer = NULL;
static int	buffer_len = 0;
static int	buffer_cap = 0;
static Size buffer_bytes = 0;
static bool flushing = false;

/* Per-session values, computed once. */
static bool session_cached = false;
static Datum session_client_addr;
static bool session_client_addr_null = true;
static Oid	cached_user_oid = InvalidOid;
static Datum cached_user_name;
static Oid	cached_session_user_oid = InvalidOid;
static Datum cached_session_user_name;

static void load_event_table(void);

/*
 * Context runs (1.6).  The context indexes (audit.create_event_indexes())
 * take only the first event of a run: a run is a sequence of events of one
 * chain lane (one writer, one class) whose contexts agree with the first
 * one's in the keys a search leads with and the indexed keys (the same
 * context, or one that changed only keys such as its request id:
 * audit_context_same_run()), each within
 * AUDIT_CONTEXT_RUN_IDS ids and AUDIT_CONTEXT_RUN_SECONDS of the run's
 * first event and in its UTC month (so in its partition).  The other
 * events of the run get context_continues = true and enter no context
 * index; a search by a context key finds the first events through the
 * index and the rest in the id range after each (audit.search).  An
 * indexed key cost two btree entries per event, about 10 % of OLTP
 * (docs/performance.md).  A run ends at any abort and at PREPARE, so its
 * first event is never rolled back while later ones stay.  audit.search()
 * (sql/src/reading.sql, run_ids and run_span) reads by the same bounds.
 */
#define AUDIT_CONTEXT_RUN_IDS		64
#define AUDIT_CONTEXT_RUN_SECONDS	3600
#define AUDIT_CONTEXT_RUN_SLOTS		8

typedef struct ContextRun
{
	int64		lane;			/* 0: free */
	int64		first_id;
	TimestampTz first_time;
	TimestampTz month_end;		/* the first instant of the next UTC month */
	Size		len;
	Size		alloc;
	char	   *context;		/* the run's context, in TopMemoryContext */
} ContextRun;

static ContextRun context_runs[AUDIT_CONTEXT_RUN_SLOTS];
static int	context_run_victim = 0;

void
audit_context_runs_reset(void)
{
	for (int i = 0; i < AUDIT_CONTEXT_RUN_SLOTS; i++)
		context_runs[i].lane = 0;
}

/* The first instant of the UTC month after t's (DT_NOEND if out of range). */
static TimestampTz
next_utc_month(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz result;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		return DT_NOEND;
	tm.tm_mday = 1;
	tm.tm_hour = 0;
	tm.tm_min = 0;
	tm.tm_sec = 0;
	if (++tm.tm_mon > MONTHS_PER_YEAR)
	{
		tm.tm_mon = 1;
		tm.tm_year++;
	}
	if (tm2timestamp(&tm, 0, NULL, &result) != 0)
		return DT_NOEND;
	return result;
}

/*
 * Does this event (id, lane and context set) continue its lane's context
 * run?  If not, it starts a new one.
 */
static bool
audit_context_run_continues(AuditEventValues *ev)
{
	int64		lane = DatumGetInt64(ev->values[AC_CHAIN_LANE]);
	int64		id = DatumGetInt64(ev->values[AC_ID]);
	TimestampTz t = DatumGetTimestampTz(ev->values[AC_EVENT_TIME]);
	Jsonb	   *ctx = DatumGetJsonbP(ev->values[AC_CONTEXT]);
	Size		len = VARSIZE(ctx);
	ContextRun *r = NULL;
	bool		continues;
	bool		same_bytes;

	for (int i = 0; i < AUDIT_CONTEXT_RUN_SLOTS; i++)
		if (context_runs[i].lane == lane)
		{
			r = &context_runs[i];
			break;
		}
	continues = r != NULL &&
		id > r->first_id && id - r->first_id <= AUDIT_CONTEXT_RUN_IDS &&
		t >= r->first_time &&
		t - r->first_time <= (int64) AUDIT_CONTEXT_RUN_SECONDS * USECS_PER_SEC &&
		t < r->month_end;
	same_bytes = continues && r->len == len && memcmp(r->context, ctx, len) == 0;
	if (continues && !same_bytes)
		continues = audit_context_same_run((Jsonb *) r->context, ctx);

	if (!continues || !same_bytes)
	{
		/*
		 * A new run starts here, or the run goes on with a context that
		 * differs only outside the run's keys: keep the newest context, so
		 * that the next event with it compares its bytes alone.
		 */
		if (r == NULL)
		{
			r = &context_runs[context_run_victim];
			context_run_victim = (context_run_victim + 1) % AUDIT_CONTEXT_RUN_SLOTS;
		}
		if (r->alloc < len)
		{
			if (r->context)
				pfree(r->context);
			r->context = MemoryContextAlloc(TopMemoryContext, len);
			r->alloc = len;
		}
		memcpy(r->context, ctx, len);
		r->len = len;
		if (!continues)
		{
			r->lane = lane;
			r->first_id = id;
			r->first_time = t;
			r->month_end = next_utc_month(t);
		}
	}
	if ((Pointer) ctx != DatumGetPointer(ev->values[AC_CONTEXT]))
		pfree(ctx);
	return continues;
}

/* ----------------------------------------------------------------
 * audit.event lookup
 * ----------------------------------------------------------------
 */
Oid
audit_event_relid(bool missing_ok)
{
	if (!event_table.valid)
		load_event_table();
	if (!OidIsValid(event_table.relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("audit store audit.event does not exist"),
				 errdetail("The audit trigger fired but the audit_ext extension is not installed in this database."),
				 errhint("Run CREATE EXTENSION audit_ext, or drop the audit_ext_row trigger.")));
	return event_table.relid;
}

static void
load_event_table(void)
{
	Oid			nsp;
	Relation	rel;
	TupleDesc	desc;
	MemoryContext old;

	if (WriterCacheContext == NULL)
		WriterCacheContext = AllocSetContextCreate(TopMemoryContext,
												   "audit_ext writer cache",
												   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(WriterCacheContext);
	memset(&event_table, 0, sizeof(event_table));

	nsp = get_namespace_oid("audit", true);
	if (!OidIsValid(nsp))
		return;
	event_table.relid = get_relname_relid("event", nsp);
	event_table.seqid = get_relname_relid("event_id_seq", nsp);
	if (!OidIsValid(event_table.relid) || !OidIsValid(event_table.seqid))
	{
		event_table.relid = InvalidOid;
		return;
	}

	rel = table_open(event_table.relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	old = MemoryContextSwitchTo(WriterCacheContext);
	event_table.tupdesc = CreateTupleDescCopy(desc);
	MemoryContextSwitchTo(old);
	event_table.natts = desc->natts;
	for (int c = 0; c < AC_NUM_COLUMNS; c++)
	{
		event_table.attno[c] = -1;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), audit_column_names[c]) == 0)
			{
				event_table.attno[c] = i;
				break;
			}
		}
	}
	table_close(rel, AccessShareLock);
	event_table.valid = true;
}

/* ----------------------------------------------------------------
 * Building events
 * ----------------------------------------------------------------
 */
/*
 * Text datums of strings that repeat on every event (class, action, status,
 * actor, application_name), made once in TopMemoryContext instead of once
 * per row.  An entry handed out for the event being built (same epoch, see
 * audit_event_init) is never replaced: the event still points at it.
 * Freeing it was a use after free once more than TEXT_CACHE_SIZE strings
 * had been seen: on 15 the next cached string could take the memory (an
 * event recorded another actor's bytes as its status), from 16 on pfree's
 * free-list link overwrites the varlena header (a crash in
 * audit_chain_compute, found by test/e2e/fuzz.sh on 17).
 */
#define TEXT_CACHE_SIZE 32

typedef struct CachedText
{
	char	   *str;
	Datum		datum;
	uint64		epoch;			/* last event that used it */
} CachedText;

static CachedText text_cache[TEXT_CACHE_SIZE];
static int	text_cache_next = 0;
static uint64 text_cache_epoch = 1;

static Datum
cached_text(const char *str)
{
	CachedText *slot = NULL;
	MemoryContext old;

	for (int i = 0; i < TEXT_CACHE_SIZE; i++)
		if (text_cache[i].str && strcmp(text_cache[i].str, str) == 0)
		{
			text_cache[i].epoch = text_cache_epoch;
			return text_cache[i].datum;
		}

	/* replace round-robin (the set of live strings is small), sparing this event's */
	for (int i = 0; i < TEXT_CACHE_SIZE && slot == NULL; i++)
	{
		CachedText *c = &text_cache[text_cache_next];

		text_cache_next = (text_cache_next + 1) % TEXT_CACHE_SIZE;
		if (c->str == NULL || c->epoch != text_cache_epoch)
			slot = c;
	}
	if (slot == NULL)			/* every entry is this event's: do not cache */
		return CStringGetTextDatum(str);
	if (slot->str)
	{
		pfree(slot->str);
		pfree(DatumGetPointer(slot->datum));
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	slot->str = pstrdup(str);
	slot->datum = CStringGetTextDatum(str);
	slot->epoch = text_cache_epoch;
	MemoryContextSwitchTo(old);
	return slot->datum;
}

void
audit_event_init(AuditEventValues *ev, const char *class_name,
				 const char *action)
{
	for (int i = 0; i < AC_NUM_COLUMNS; i++)
	{
		ev->values[i] = (Datum) 0;
		ev->nulls[i] = true;
	}
	text_cache_epoch++;			/* a new event: earlier events' cached texts may go */
	ev->values[AC_CLASS] = cached_text(class_name);
	ev->nulls[AC_CLASS] = false;
	ev->values[AC_ACTION] = cached_text(action);
	ev->nulls[AC_ACTION] = false;
	ev->values[AC_STATUS] = cached_text("success");
	ev->nulls[AC_STATUS] = false;
}

static Datum
user_name_datum(Oid roleid, Oid *cached_oid, Datum *cached)
{
	if (roleid != *cached_oid)
	{
		char	   *name = GetUserNameFromId(roleid, true);
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (OidIsValid(*cached_oid))
			pfree(DatumGetPointer(*cached));
		*cached = CStringGetTextDatum(name ? name : "?");
		*cached_oid = roleid;
		MemoryContextSwitchTo(old);
	}
	return *cached;
}

/*
 * Who, when, where: the connection and transaction context of an event.
 * AUDIT_CTX_FOR_WRITE assigns a transaction id (data events always have one
 * already); AUDIT_CTX_REDACT_STATEMENT stores the statement text with its
 * literals redacted even under audit_ext.statement_literals = keep (a
 * statement that carries a password).
 */
void
audit_event_fill_context(AuditEventValues *ev, int flags)
{
	Datum		db_user;

	if (!session_cached)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (MyProcPort != NULL)
		{
			/* NULL for Unix-socket connections */
			LOCAL_FCINFO(fcinfo, 0);

			InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
			session_client_addr = inet_client_addr(fcinfo);
			session_client_addr_null = fcinfo->isnull;
		}
		MemoryContextSwitchTo(old);
		session_cached = true;
	}

	ev->values[AC_EVENT_TIME] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	ev->nulls[AC_EVENT_TIME] = false;

	db_user = user_name_datum(GetUserId(), &cached_user_oid, &cached_user_name);
	ev->values[AC_DB_USER] = db_user;
	ev->nulls[AC_DB_USER] = false;
	ev->values[AC_SESSION_USER] = user_name_datum(GetSessionUserId(),
												  &cached_session_user_oid,
												  &cached_session_user_name);
	ev->nulls[AC_SESSION_USER] = false;

	if (audit_actor && audit_actor[0] != '\0')
		ev->values[AC_ACTOR] = cached_text(audit_actor);
	else
		ev->values[AC_ACTOR] = db_user;
	ev->nulls[AC_ACTOR] = false;

	ev->values[AC_CLIENT_ADDR] = session_client_addr;
	ev->nulls[AC_CLIENT_ADDR] = session_client_addr_null;

	if (application_name && application_name[0] != '\0')
	{
		ev->values[AC_APPLICATION_NAME] = cached_text(application_name);
		ev->nulls[AC_APPLICATION_NAME] = false;
	}

	ev->values[AC_BACKEND_PID] = Int32GetDatum(MyProcPid);
	ev->nulls[AC_BACKEND_PID] = false;

	/* 1.6: the application's context, if one is set (app_context.c) */
	ev->nulls[AC_CONTEXT] = !audit_current_context_datum(&ev->values[AC_CONTEXT]);

	if ((flags & AUDIT_CTX_FOR_WRITE) ||
		FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()))
	{
		ev->values[AC_TXID] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));
		ev->nulls[AC_TXID] = false;
	}

	{
		int32		seq;
		bool		isnull;

		audit_current_statement(&ev->values[AC_STATEMENT_ID], &isnull, &seq,
								(flags & AUDIT_CTX_REDACT_STATEMENT) != 0);
		ev->nulls[AC_STATEMENT_ID] = isnull;
		ev->values[AC_STATEMENT_SEQ] = Int32GetDatum(seq);
		ev->nulls[AC_STATEMENT_SEQ] = false;
	}
}

/*
 * Assign the event its id and append it to the buffer.  The caller's
 * Datums may live in a short-lived context: the tuple is formed here, in
 * the buffer's own context.
 */
void
audit_event_emit(AuditEventValues *ev)
{
	Datum	   *values;
	bool	   *nulls;
	MemoryContext old;
	HeapTuple	tup;

	if (!event_table.valid)
		load_event_table();
	if (!OidIsValid(event_table.relid))
		(void) audit_event_relid(false);	/* reports the error */

	/* 1.6: the risk level, unless the producer set it (risk.c) */
	if (ev->nulls[AC_RISK] && event_table.attno[AC_RISK] >= 0)
		audit_event_set_risk(ev, 0);

	/*
	 * The transaction gets its id before the event does, so that any
	 * snapshot taken once the event id exists lists the transaction as
	 * running until it ends: audit.evaluate_alerts() goes past ids it cannot
	 * see yet only for the transactions it was told are running.  A worker
	 * numbers a batch of events before its first write; without this, a
	 * round in between passed them for good and their alerts never fired.
	 * A backend's data event has one already (the row it describes).
	 */
	if (!RecoveryInProgress() && !IsInParallelMode())
		(void) GetTopTransactionId();
	if (event_table.attno[AC_HASH] >= 0)
		audit_chain_before_id();	/* checkpoint rounds must wait for this id */
	ev->values[AC_ID] = Int64GetDatum(nextval_internal(event_table.seqid, false));
	ev->nulls[AC_ID] = false;
	if (event_table.attno[AC_HASH] >= 0)
		audit_chain_after_id(DatumGetInt64(ev->values[AC_ID]));
	/* its place in the tamper-evident chain, in id order (chain.c) */
	if (event_table.attno[AC_HASH] >= 0)
		audit_chain_stamp(ev);
	/* without a lane (no chain) every event is its own run */
	if (event_table.attno[AC_CONTEXT_CONTINUES] >= 0 && !ev->nulls[AC_CONTEXT] &&
		!ev->nulls[AC_CHAIN_LANE])
	{
		ev->values[AC_CONTEXT_CONTINUES] = BoolGetDatum(audit_context_run_continues(ev));
		ev->nulls[AC_CONTEXT_CONTINUES] = false;
	}

	values = palloc(sizeof(Datum) * event_table.natts);
	nulls = palloc(sizeof(bool) * event_table.natts);
	for (int i = 0; i < event_table.natts; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
	}
	for (int c = 0; c < AC_NUM_COLUMNS; c++)
	{
		int			a = event_table.attno[c];

		if (a >= 0)
		{
			values[a] = ev->values[c];
			nulls[a] = ev->nulls[c];
		}
	}

	if (BufferContext == NULL)
		BufferContext = AllocSetContextCreate(TopMemoryContext,
											  "audit_ext event buffer",
											  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(BufferContext);
	/* a heap tuple: the batch slot takes it over as it is, no copy */
	tup = heap_form_tuple(event_table.tupdesc, values, nulls);
	if (buffer_len >= buffer_cap)
	{
		int			newcap = buffer_cap == 0 ? 64 : buffer_cap * 2;

		if (buffer == NULL)
			buffer = palloc(sizeof(BufferedEvent) * newcap);
		else
			buffer = repalloc(buffer, sizeof(BufferedEvent) * newcap);
		buffer_cap = newcap;
	}
	MemoryContextSwitchTo(old);

	buffer[buffer_len].tuple = tup;
	buffer[buffer_len].subid = GetCurrentSubTransactionId();
	{
		text	   *cls = DatumGetTextPP(ev->values[AC_CLASS]);

		int			len = VARSIZE_ANY_EXHDR(cls);

		if (len < NAMEDATALEN)
		{
			memcpy(buffer[buffer_len].class_name, VARDATA_ANY(cls), len);
			buffer[buffer_len].class_name[len] = '\0';
		}
		else
			buffer[buffer_len].class_name[0] = '\0';
		buffer[buffer_len].event_time = DatumGetTimestampTz(ev->values[AC_EVENT_TIME]);
	}
	buffer[buffer_len].may_enter = 0;
	if (!ev->nulls[AC_CONTEXT] &&
		(ev->nulls[AC_CONTEXT_CONTINUES] || !DatumGetBool(ev->values[AC_CONTEXT_CONTINUES])))
		buffer[buffer_len].may_enter |= DEFER_CONTEXT;
	if (!ev->nulls[AC_DETAIL])
		buffer[buffer_len].may_enter |= DEFER_DETAIL;
	{
		text	   *act = DatumGetTextPP(ev->values[AC_ACTION]);

		if (VARSIZE_ANY_EXHDR(act) == 8 && memcmp(VARDATA_ANY(act), "TRUNCATE", 8) == 0)
			buffer[buffer_len].may_enter |= DEFER_TRUNCATE;
	}
	buffer_len++;
	buffer_bytes += tup->t_len;
	pfree(values);
	pfree(nulls);
	if (!ev->nulls[AC_HASH])
	{
		pfree(DatumGetPointer(ev->values[AC_HASH]));
		ev->nulls[AC_HASH] = true;
	}

	if (buffer_len >= AUDIT_FLUSH_EVENTS || buffer_bytes >= AUDIT_FLUSH_BYTES)
		audit_flush_events();
}

/* ----------------------------------------------------------------
 * Writing
 * ----------------------------------------------------------------
 */

static TupleConversionMap *
root_to_leaf_map(ResultRelInfo *leaf, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	return ExecGetRootToChildMap(leaf, estate);
#else
	return leaf->ri_RootToPartitionMap;
#endif
}

static void
insert_index_entries(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	if (rri->ri_NumIndices <= 0)
		return;
#if PG_VERSION_NUM >= 160000
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, false, NULL, NIL);
#else
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
	ResetPerTupleExprContext(estate);
}

/*
 * The writer's executor state lives for the whole transaction: opening the
 * store, setting up tuple routing and opening a partition's indexes costs
 * as much as writing a few events, and an OLTP transaction flushes once per
 * statement.  Its memory is the executor state's (es_query_cxt, a child of
 * TopTransactionContext), and everything it opens on the store (relations,
 * indexes, and the references PostgreSQL's own catalog scans hold while it
 * builds their relcache entries) belongs to its own resource owner, a child
 * of TopTransactionResourceOwner, so subtransactions and portals come and go
 * without touching it.  It is closed before commit, before any utility
 * statement (DDL must not find the store open) and whenever a relcache
 * invalidation hits one of its relations (a partition attached or
 * detached): closing releases and deletes the owner.
 *
 * An error while it opens or writes (a cancel in the middle of the catalog
 * scan that builds an index's relcache entry, a lock timeout on an index, a
 * deadlock) can leave it half-built: a partition open but not recorded yet,
 * some of its indexes open, core's mid-scan references.  Closing piece by
 * piece would miss those, so the writer is marked failed and discarded
 * whole: its owner is released (all phases) and deleted, its memory
 * deleted.  That happens in the abort that follows the error
 * (audit_writer_subxact_abort(); at top level the owner goes with
 * TopTransactionResourceOwner), after PostgreSQL has released LWLocks and
 * buffer I/O, as it does for its own owners.  Up to 1.3 the writer used
 * TopTransactionResourceOwner itself, which a savepoint's abort does not
 * release: the leftovers were reported as leaks at COMMIT, made REINDEX of
 * the partition fail for the rest of the transaction ("being used by active
 * queries in this session") and kept the session's xmin (issue 18, E).
 *
 * A subtransaction that aborts also takes the writer with it if it opened
 * any of the writer's relations (writer.subid): a partition it created is
 * gone, and its relcache entry cannot be removed while we hold it.  Locks
 * are never released early: they pass to the transaction (the writer may
 * have written those relations already).
 */
#define WRITER_MAX_RELS 16

typedef struct WriterState
{
	bool		open;
	bool		stale;			/* a relation changed: close and reopen */
	bool		failed;			/* an error hit it: discard, never close */
	ResourceOwner owner;		/* owns all it opened; child of the top owner */
	SubTransactionId subid;		/* newest subtransaction that opened some of it */
	EState	   *estate;
	ResultRelInfo *direct;		/* leaf opened without routing, or NULL */
	bool		routing;		/* the fields below are set up */
	Relation	root;
	ResultRelInfo *root_rri;
	ModifyTableState *mtstate;
	PartitionTupleRouting *proute;
	TupleTableSlot *root_slot;
	ResultRelInfo *leaf;		/* leaf of the batch slots below */
	bool		leaf_key_valid; /* leaf is where (class, time) below goes */
	char		leaf_class_name[NAMEDATALEN];
	TimestampTz leaf_event_time;
	TupleDesc	leafdesc;
	TupleTableSlot **slots;		/* AUDIT_FLUSH_EVENTS entries, made lazily */
	int			nslots;			/* how many are made */
	MemoryContext insert_cxt;	/* index AMs' insert state of one batch (17+) */
	Oid			rels[WRITER_MAX_RELS];	/* relations whose change makes us stale */
	int			nrels;
	/* partial indexes of the direct leaf not opened yet (see below) */
	Oid			deferred[WRITER_MAX_RELS];
	uint8		deferred_kind[WRITER_MAX_RELS];
	int			ndeferred;
	uint8		deferred_kinds; /* the DEFER_* kinds among them */
} WriterState;

static WriterState writer;

/*
 * The indexes of the leaves the writer writes directly: whether it may defer
 * one (a partial index of a known shape, writer_open_leaf_indexes()), and the
 * IndexInfo of a deferred index prepared once for the session
 * (ctx_index_info()).  The prepared states live in ctx_index_cxt; after an
 * invalidation forgets the entries, the memory is reset only once the
 * writer has closed (ctx_index_release()), since an open writer's leaf may
 * still point into it.
 */
#define CTX_INDEX_CACHE 64
static struct
{
	Oid			indexoid;
	uint8		defer_kind;		/* DEFER_*, 0: always opened */
	IndexInfo  *info;			/* prepared, or NULL: not built yet */
	bool		per_transaction;	/* not prepared once (see ctx_index_info()) */
}			ctx_index_cache[CTX_INDEX_CACHE];
static int	ctx_index_cache_len = 0;
static MemoryContext ctx_index_cxt = NULL;
static bool ctx_index_forgotten = false;

/*
 * What the writer knows about the last leaf it wrote, kept across
 * transactions and forgotten on any relcache invalidation of the leaf or
 * its parent (ATTACH/DETACH included):
 *	- its parent: get_partition_parent() reads pg_inherits, once per OLTP
 *	  transaction it was 1.2% of an audited backend's CPU;
 *	- its event_time range.  Each statement has its own event_time, so
 *	  without it every statement of an OLTP transaction went through
 *	  ExecFindPartition() again (0.9%): an event of the same class whose time
 *	  falls in the leaf's own bound goes to the same leaf.  Only a leaf whose
 *	  parent is range-partitioned on event_time alone gets a range; a default
 *	  partition gets none (a partition created later may take part of what
 *	  it holds).
 * An invalidation of the leaf or its parent does not forget the leaf, it
 * only has it checked again before the next use: autovacuum and ANALYZE of
 * a busy leaf send one every minute or so, and forgetting would route (and
 * lock the parents for) the next transaction of every backend each time.
 */
static struct
{
	Oid			leaf;			/* InvalidOid: nothing known */
	Oid			parent;
	bool		range_loaded;
	bool		ranged;
	TimestampTz lo;				/* inclusive */
	TimestampTz hi;				/* exclusive */
	bool		verify;			/* invalidated: check parent and bound again */
	/* set when routing sent an event of this class here (direct opening) */
	bool		direct_ok;		/* same layout as audit.event: no map */
	char		class_name[NAMEDATALEN];
}			last_leaf;

static void
last_leaf_set(Oid leaf)
{
	if (leaf == last_leaf.leaf)
		return;
	memset(&last_leaf, 0, sizeof(last_leaf));
	last_leaf.parent = get_partition_parent(leaf, false);
	last_leaf.leaf = leaf;
}

static Oid
parent_of_leaf(Oid leaf)
{
	last_leaf_set(leaf);
	return last_leaf.parent;
}

static bool
range_bound_value(List *datums, TimestampTz *value)
{
	PartitionRangeDatum *d;
	Const	   *c;

	if (list_length(datums) != 1)
		return false;
	d = linitial_node(PartitionRangeDatum, datums);
	if (d->kind != PARTITION_RANGE_DATUM_VALUE || !IsA(d->value, Const))
		return false;
	c = (Const *) d->value;
	if (c->constisnull || c->consttype != TIMESTAMPTZOID)
		return false;
	*value = DatumGetTimestampTz(c->constvalue);
	return true;
}

/* A relation's partition bound from pg_class.relpartbound, or NULL. */
static PartitionBoundSpec *
partition_bound_of(Oid relid)
{
	HeapTuple	tp;
	Datum		bound;
	bool		isnull;
	PartitionBoundSpec *spec = NULL;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		return NULL;
	bound = SysCacheGetAttr(RELOID, tp, Anum_pg_class_relpartbound, &isnull);
	if (!isnull)
		spec = castNode(PartitionBoundSpec, stringToNode(TextDatumGetCString(bound)));
	ReleaseSysCache(tp);
	return spec;
}

/* Read last_leaf's range: its parent's partition key and its own bound. */
static void
leaf_range_load(void)
{
	Relation	parent;
	PartitionKey key;
	bool		on_time;
	PartitionBoundSpec *spec;

	last_leaf.range_loaded = true;
	last_leaf.ranged = false;

	parent = RelationIdGetRelation(last_leaf.parent);
	if (!RelationIsValid(parent))
		return;
	key = RelationGetPartitionKey(parent);
	on_time = key != NULL && key->strategy == PARTITION_STRATEGY_RANGE &&
		key->partnatts == 1 && key->partattrs[0] != 0 &&
		key->parttypid[0] == TIMESTAMPTZOID &&
		strcmp(NameStr(TupleDescAttr(RelationGetDescr(parent),
									 key->partattrs[0] - 1)->attname),
			   "event_time") == 0;
	RelationClose(parent);
	if (!on_time)
		return;

	spec = partition_bound_of(last_leaf.leaf);
	if (spec != NULL && !spec->is_default && spec->strategy == PARTITION_STRATEGY_RANGE &&
		range_bound_value(spec->lowerdatums, &last_leaf.lo) &&
		range_bound_value(spec->upperdatums, &last_leaf.hi))
		last_leaf.ranged = true;
}

/*
 * After an invalidation: is last_leaf still a partition of the same parent?
 * Its bound is read again on its next use.  The leaf can no longer be
 * detached or dropped once the caller holds a lock on it.
 */
static void
last_leaf_verify(void)
{
	HeapTuple	tp;
	bool		partition = false;
	List	   *ancestors;

	if (!last_leaf.verify || !OidIsValid(last_leaf.leaf))
		return;
	last_leaf.verify = false;
	last_leaf.range_loaded = false;
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(last_leaf.leaf));
	if (HeapTupleIsValid(tp))
	{
		partition = ((Form_pg_class) GETSTRUCT(tp))->relispartition;
		ReleaseSysCache(tp);
	}
	/* pending detach included: that leaf keeps its parent until it is gone */
	ancestors = partition ? get_partition_ancestors(last_leaf.leaf) : NIL;
	if (ancestors == NIL || linitial_oid(ancestors) != last_leaf.parent)
		last_leaf.leaf = InvalidOid;
	list_free(ancestors);
}

/* Does an event at time t (of the leaf's class) belong to this leaf? */
static bool
leaf_holds_time(Oid leaf, TimestampTz t)
{
	last_leaf_verify();
	last_leaf_set(leaf);
	if (!last_leaf.range_loaded)
		leaf_range_load();
	return last_leaf.ranged && t >= last_leaf.lo && t < last_leaf.hi;
}

/* Routing sent an event of this class to leaf. */
static void
last_leaf_learn(Oid leaf, const char *class_name, bool same_layout)
{
	last_leaf_set(leaf);
	last_leaf.direct_ok = same_layout && class_name[0] != '\0';
	strlcpy(last_leaf.class_name, class_name, NAMEDATALEN);
}

/* The class a partition of audit.event holds (its list bound), or NULL. */
static char *
class_of_partition(Oid relid)
{
	PartitionBoundSpec *spec = partition_bound_of(relid);

	if (spec != NULL && !spec->is_default && spec->strategy == PARTITION_STRATEGY_LIST &&
		list_length(spec->listdatums) == 1 && IsA(linitial(spec->listdatums), Const))
	{
		Const	   *c = linitial_node(Const, spec->listdatums);

		if (!c->constisnull && c->consttype == TEXTOID)
			return TextDatumGetCString(c->constvalue);
	}
	return NULL;
}

/*
 * A session's first event of a class, or the first after the month
 * changed: find the monthly partition holding t in the catalog, as last_leaf,
 * without opening (and locking) audit.event and the class's table as tuple
 * routing does.  Nothing is locked here: writer_open_direct() locks the
 * leaf and checks it again.  Nothing found (only a default partition): the
 * event is routed.
 */
static void
last_leaf_find(const char *class_name, TimestampTz t)
{
	List	   *classes;
	List	   *months = NIL;
	ListCell   *lc;
	Oid			parent = InvalidOid;

	if (!OidIsValid(event_table.relid) || class_name[0] == '\0')
		return;
	classes = find_inheritance_children(event_table.relid, NoLock);
	foreach(lc, classes)
	{
		char	   *cls = class_of_partition(lfirst_oid(lc));

		if (cls != NULL && strcmp(cls, class_name) == 0)
		{
			parent = lfirst_oid(lc);
			break;
		}
	}
	list_free(classes);
	if (OidIsValid(parent) && get_rel_relkind(parent) == RELKIND_PARTITIONED_TABLE)
		months = find_inheritance_children(parent, NoLock);
	foreach(lc, months)
	{
		memset(&last_leaf, 0, sizeof(last_leaf));
		last_leaf.leaf = lfirst_oid(lc);
		last_leaf.parent = parent;
		leaf_range_load();
		if (last_leaf.ranged && t >= last_leaf.lo && t < last_leaf.hi)
		{
			/* the layout is compared with audit.event's once it is open */
			last_leaf.direct_ok = true;
			strlcpy(last_leaf.class_name, class_name, NAMEDATALEN);
			break;
		}
		last_leaf.leaf = InvalidOid;
	}
	list_free(months);
}

/* Has a relation exactly audit.event's row layout (no tuple conversion)? */
static bool
same_layout_as_store(Relation rel)
{
	TupleDesc	a = RelationGetDescr(rel);
	TupleDesc	b = event_table.tupdesc;

	if (b == NULL || a->natts != b->natts)
		return false;
	for (int i = 0; i < a->natts; i++)
	{
		Form_pg_attribute x = TupleDescAttr(a, i);
		Form_pg_attribute y = TupleDescAttr(b, i);

		if (x->attisdropped != y->attisdropped || x->atttypid != y->atttypid ||
			x->atttypmod != y->atttypmod || x->attlen != y->attlen ||
			x->attalign != y->attalign ||
			(!x->attisdropped && strcmp(NameStr(x->attname), NameStr(y->attname)) != 0))
			return false;
	}
	return true;
}

/*
 * audit_ext.flush_fault (testing only, test/e2e/flush_errors.sh): a query
 * cancel arrives, flagged as the SIGINT handler (StatementCancelHandler)
 * flags it, just before writer_open_direct() opens the leaf's indexes, so
 * that the first interrupt check inside PostgreSQL's opening code raises it:
 * in a new session, the heap scan of pg_am that builds the relcache entry of
 * the leaf's first GIN index, after its first btree index is open.  That is
 * the narrow moment of issue 18 that a statement_timeout sweep hit in 5-10%
 * of sessions.  Should the opening check no interrupt (all of it cached),
 * the cancel is withdrawn and a distinct error raised instead, so that a
 * test cannot pass without having hit that moment.  (Routing checks for
 * interrupts itself before it opens a partition, so a cancel injected there
 * would not reach the opening; the tests use a lock timeout on an index of
 * the default partition instead.)
 */
static void
flush_fault_arm(int point)
{
	if (audit_flush_fault != point)
		return;
	InterruptPending = true;
	QueryCancelPending = true;
}

static void
flush_fault_check_taken(int point)
{
	if (audit_flush_fault != point || !QueryCancelPending)
		return;
	QueryCancelPending = false;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("audit_ext.flush_fault: the writer opened the leaf's indexes without checking for interrupts"),
			 errdetail("The injected query cancel was not raised; it is withdrawn."),
			 errhint("Use a new session: its relation cache must not hold the store's partitions yet.")));
}

static void
writer_track(Oid relid)
{
	for (int i = 0; i < writer.nrels; i++)
		if (writer.rels[i] == relid)
			return;
	if (writer.nrels < WRITER_MAX_RELS)
		writer.rels[writer.nrels++] = relid;
	else
		writer.stale = true;	/* cannot watch it: rebuild next time */
}

void
audit_writer_invalidate(Oid relid)
{
	if (ctx_index_cache_len > 0)
		ctx_index_forgotten = true;
	ctx_index_cache_len = 0;
	if (!OidIsValid(relid) || relid == last_leaf.leaf ||
		relid == last_leaf.parent)
		last_leaf.verify = true;
	if (!OidIsValid(relid) || relid == event_table.relid ||
		!OidIsValid(event_table.relid))
		event_table.valid = false;
	if (writer.open)
	{
		if (!OidIsValid(relid))
			writer.stale = true;
		for (int i = 0; i < writer.nrels; i++)
			if (writer.rels[i] == relid)
				writer.stale = true;
	}
}

static void
writer_open(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	memset(&writer, 0, sizeof(writer));
	writer.owner = ResourceOwnerCreate(TopTransactionResourceOwner,
									   "audit_ext event writer");
	writer.subid = GetCurrentSubTransactionId();
	writer.open = true;
	writer.estate = CreateExecutorState();
#if PG_VERSION_NUM >= 170000
	writer.insert_cxt = AllocSetContextCreate(writer.estate->es_query_cxt,
											  "audit_ext index insert state",
											  ALLOCSET_SMALL_SIZES);
#endif
	MemoryContextSwitchTo(old);
}

/*
 * Tuple routing from audit.event, set up when an event needs it.  In the
 * executor state's memory, so that a failed writer's goes with it.
 */
static void
writer_open_routing(void)
{
	MemoryContext old = MemoryContextSwitchTo(writer.estate->es_query_cxt);

	writer.root = table_open(audit_event_relid(false), RowExclusiveLock);
	writer_track(RelationGetRelid(writer.root));
	writer.root_rri = makeNode(ResultRelInfo);
	InitResultRelInfo(writer.root_rri, writer.root, 1, NULL, 0);
	writer.mtstate = makeNode(ModifyTableState);
	writer.mtstate->ps.plan = NULL;
	writer.mtstate->ps.state = writer.estate;
	writer.mtstate->operation = CMD_INSERT;
	writer.mtstate->resultRelInfo = writer.root_rri;
	writer.proute = ExecSetupPartitionTupleRouting(writer.estate, writer.root);
	/* its own descriptor: event_table's may be rebuilt mid-transaction */
	writer.root_slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(writer.root)),
												&TTSOpsHeapTuple);
	writer.routing = true;
	MemoryContextSwitchTo(old);
}

/*
 * Partial indexes are opened only when an event may enter them.  Only the
 * first event of a context run enters a context index
 * (audit_context_run_continues()), and only TRUNCATEs and key changes the
 * TRUNCATE and key-change indexes, so most transactions insert nothing
 * there, yet opening an index, building its IndexInfo, preparing its
 * predicate and closing it cost about as much per transaction as an entry
 * (perf, docs/performance.md "Context runs"), and its lock takes one of the
 * backend's 16 fast-path slots: an audited pgbench transaction with a
 * context took 18 relation locks, so the last ones went through the shared
 * lock table (docs/performance.md, stop 34).  An index is deferred only
 * when its predicate is one of the shapes audit.create_event_indexes()
 * gives: "context ? <key> AND context_continues IS NOT TRUE" (a row
 * without a context, or that continues a run, cannot satisfy it),
 * "action = 'TRUNCATE'" under collation "C" (byte equality), or
 * "detail ? <key>" (a row without a detail cannot).  The writer opens the
 * deferred indexes of a kind before a batch row that may enter them
 * (BufferedEvent.may_enter, a superset of the rows that do).  The verdict
 * per index is kept for the session and forgotten on any relcache
 * invalidation.
 */

static bool writer_index_has_insert_state(ResultRelInfo *rri, int i);

static bool
is_var_attno(Node *node, int attno)
{
	if (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Var) && ((Var *) node)->varattno == attno;
}

/* clause c is "<attno> OP <constant>" with OP's function funcid */
static bool
is_op_var_const(Node *c, Oid funcid, int attno)
{
	return IsA(c, OpExpr) &&
		list_length(((OpExpr *) c)->args) == 2 &&
		get_opcode(((OpExpr *) c)->opno) == funcid &&
		is_var_attno((Node *) linitial(((OpExpr *) c)->args), attno) &&
		IsA(lsecond(((OpExpr *) c)->args), Const) &&
		!((Const *) lsecond(((OpExpr *) c)->args))->constisnull;
}

static uint8
ctx_index_deferrable_uncached(Oid indexoid)
{
	HeapTuple	tup;
	Form_pg_index idx;
	Datum		d;
	bool		isnull;
	bool		has_flag = false;
	bool		has_key = false;
	int			ctx_attno = event_table.attno[AC_CONTEXT] + 1;
	int			flag_attno = event_table.attno[AC_CONTEXT_CONTINUES] + 1;
	int			action_attno = event_table.attno[AC_ACTION] + 1;
	int			detail_attno = event_table.attno[AC_DETAIL] + 1;
	List	   *clauses;
	ListCell   *lc;

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tup))
		return 0;
	idx = (Form_pg_index) GETSTRUCT(tup);
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);
	if (isnull || idx->indisunique || idx->indisexclusion)
	{
		ReleaseSysCache(tup);
		return 0;
	}
	clauses = make_ands_implicit((Expr *) stringToNode(TextDatumGetCString(d)));
	ReleaseSysCache(tup);
	if (list_length(clauses) == 1)
	{
		Node	   *c = (Node *) linitial(clauses);

		if (action_attno > 0 && is_op_var_const(c, F_TEXTEQ, action_attno) &&
			((OpExpr *) c)->inputcollid == C_COLLATION_OID)
		{
			Const	   *k = (Const *) lsecond(((OpExpr *) c)->args);

			/* the shape is not enough: the constant must be 'TRUNCATE' */
			if (k->consttype == TEXTOID &&
				strcmp(TextDatumGetCString(k->constvalue), "TRUNCATE") == 0)
				return DEFER_TRUNCATE;
		}
		if (detail_attno > 0 && is_op_var_const(c, F_JSONB_EXISTS, detail_attno))
			return DEFER_DETAIL;
		return 0;
	}
	if (list_length(clauses) != 2 || ctx_attno <= 0 || flag_attno <= 0)
		return 0;
	foreach(lc, clauses)
	{
		Node	   *c = (Node *) lfirst(lc);

		if (IsA(c, BooleanTest) &&
			((BooleanTest *) c)->booltesttype == IS_NOT_TRUE &&
			is_var_attno((Node *) ((BooleanTest *) c)->arg, flag_attno))
			has_flag = true;
		else if (is_op_var_const(c, F_JSONB_EXISTS, ctx_attno))
			has_key = true;
	}
	return has_flag && has_key ? DEFER_CONTEXT : 0;
}

static uint8
ctx_index_deferrable(Oid indexoid)
{
	uint8		v;

	for (int i = 0; i < ctx_index_cache_len; i++)
		if (ctx_index_cache[i].indexoid == indexoid)
			return ctx_index_cache[i].defer_kind;
	v = ctx_index_deferrable_uncached(indexoid);
	if (ctx_index_cache_len < CTX_INDEX_CACHE)
	{
		ctx_index_cache[ctx_index_cache_len].indexoid = indexoid;
		ctx_index_cache[ctx_index_cache_len].defer_kind = v;
		ctx_index_cache[ctx_index_cache_len].info = NULL;
		ctx_index_cache[ctx_index_cache_len].per_transaction = false;
		ctx_index_cache_len++;
	}
	return v;
}

/*
 * The IndexInfo of a deferred index (a btree), its predicate and
 * key expression prepared as ExecInsertIndexTuples() would prepare them
 * (expression_planner(), then ExecInitQual()/ExecInitExpr() without a
 * parent), once per session instead of once per transaction: with a
 * context per request every transaction starts a run and opened both
 * context indexes, built their IndexInfo and prepared them again, about
 * 10 µs of backend CPU (docs/performance.md, stop 33).  A btree keeps
 * nothing in the IndexInfo between inserts (ii_AmCache), nor an insert
 * state (no aminsertcleanup); the definition of an index never
 * changes under its OID, and any invalidation forgets the entry all the
 * same.  The executor checks the right to call an expression's functions
 * when it prepares it, so a state prepared once for the session must call
 * built-in functions only (everyone may call them); a deferred index of a
 * DBA's own whose predicate or key calls any other function is prepared in
 * each transaction, as before.  NULL: not cached, the caller builds its
 * own.
 */
static bool
calls_non_builtin_function(Oid funcid, void *context)
{
	return funcid >= FirstNormalObjectId;
}

static bool
index_expr_non_builtin_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, calls_non_builtin_function, context))
		return true;
	return expression_tree_walker(node, index_expr_non_builtin_walker, context);
}

static IndexInfo *
ctx_index_info(Relation index)
{
	Oid			indexoid = RelationGetRelid(index);
	int			i;
	MemoryContext old;
	IndexInfo  *info;
	List	   *states = NIL;
	ListCell   *lc;

	for (i = 0; i < ctx_index_cache_len; i++)
		if (ctx_index_cache[i].indexoid == indexoid)
			break;
	if (i == ctx_index_cache_len || ctx_index_cache[i].per_transaction)
		return NULL;
	if (ctx_index_cache[i].info != NULL)
		return ctx_index_cache[i].info;
	/* deferrable (the caller's index) is never unique or exclusion */
	if (index->rd_rel->relam != BTREE_AM_OID)
	{
		ctx_index_cache[i].per_transaction = true;
		return NULL;
	}

	if (ctx_index_cxt == NULL)
		ctx_index_cxt = AllocSetContextCreate(TopMemoryContext, "audit_ext deferred indexes",
											  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx_index_cxt);
	info = BuildIndexInfo(index);
	if (index_expr_non_builtin_walker((Node *) info->ii_Predicate, NULL) ||
		index_expr_non_builtin_walker((Node *) info->ii_Expressions, NULL))
	{
		/* prepared in each transaction, as the executor does */
		MemoryContextSwitchTo(old);
		ctx_index_cache[i].per_transaction = true;
		return NULL;
	}
	if (info->ii_Predicate != NIL)
		info->ii_PredicateState = ExecInitQual((List *) expression_planner((Expr *) info->ii_Predicate), NULL);
	foreach(lc, info->ii_Expressions)
		states = lappend(states, ExecInitExpr(expression_planner((Expr *) lfirst(lc)), NULL));
	info->ii_ExpressionsState = states;
	MemoryContextSwitchTo(old);
	ctx_index_cache[i].info = info;
	return info;
}

/*
 * Free the prepared states of forgotten entries: only once the writer has
 * closed, when no leaf of it points into them.
 */
static void
ctx_index_release(void)
{
	if (!ctx_index_forgotten)
		return;
	ctx_index_forgotten = false;
	ctx_index_cache_len = 0;
	if (ctx_index_cxt != NULL)
		MemoryContextReset(ctx_index_cxt);
}

/*
 * Open one index of the leaf into its ResultRelInfo (arrays sized for all of
 * them); returns its position.  The count goes up at once, so an error in a
 * later open still closes it.  deferred: a deferred partial index, whose
 * IndexInfo may come prepared (ctx_index_info()).
 */
static int
writer_add_leaf_index(ResultRelInfo *rri, Oid indexoid, bool deferred)
{
	Relation	index = index_open(indexoid, RowExclusiveLock);
	IndexInfo  *info = deferred ? ctx_index_info(index) : NULL;
	int			n = rri->ri_NumIndices;

	rri->ri_IndexRelationDescs[n] = index;
	rri->ri_IndexRelationInfo[n] = info ? info : BuildIndexInfo(index);
	rri->ri_NumIndices = n + 1;
	return n;
}

/* ExecOpenIndices() for a leaf written directly, less the deferred indexes. */
static void
writer_open_leaf_indexes(ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;
	List	   *ids;
	ListCell   *lc;

	rri->ri_NumIndices = 0;
	writer.ndeferred = 0;
	writer.deferred_kinds = 0;
	if (!RelationGetForm(rel)->relhasindex)
		return;
	ids = RelationGetIndexList(rel);
	if (ids == NIL)
		return;
	rri->ri_IndexRelationDescs = palloc0(sizeof(Relation) * list_length(ids));
	rri->ri_IndexRelationInfo = palloc0(sizeof(IndexInfo *) * list_length(ids));
	foreach(lc, ids)
	{
		Oid			indexoid = lfirst_oid(lc);
		uint8		kind;

		if (writer.ndeferred < WRITER_MAX_RELS && (kind = ctx_index_deferrable(indexoid)) != 0)
		{
			writer.deferred_kind[writer.ndeferred] = kind;
			writer.deferred[writer.ndeferred++] = indexoid;
			writer.deferred_kinds |= kind;
			continue;
		}
		writer_add_leaf_index(rri, indexoid, false);
	}
	list_free(ids);
}

/*
 * Open the deferred indexes of the given kinds: a batch holds a row that may
 * enter them.  The others stay deferred.
 */
static void
writer_open_deferred_indexes(ResultRelInfo *rri, uint8 kinds)
{
	MemoryContext old = MemoryContextSwitchTo(writer.estate->es_query_cxt);
	ResourceOwner save = CurrentResourceOwner;
	int			i = 0;

	CurrentResourceOwner = writer.owner;
	while (i < writer.ndeferred)
	{
		Oid			indexoid = writer.deferred[i];
		int			n;

		if (!(writer.deferred_kind[i] & kinds))
		{
			i++;
			continue;
		}
		/* off the list first: an error in the open must not open it twice */
		writer.ndeferred--;
		writer.deferred[i] = writer.deferred[writer.ndeferred];
		writer.deferred_kind[i] = writer.deferred_kind[writer.ndeferred];
		n = writer_add_leaf_index(rri, indexoid, true);
		/* as writer_set_leaf() does for the others */
		if (writer_index_has_insert_state(rri, n))
			rri->ri_IndexRelationInfo[n]->ii_Context = writer.insert_cxt;
	}
	writer.deferred_kinds = 0;
	for (i = 0; i < writer.ndeferred; i++)
		writer.deferred_kinds |= writer.deferred_kind[i];
	CurrentResourceOwner = save;
	MemoryContextSwitchTo(old);
}

/*
 * Open the leaf of this event's class and month without tuple routing: the
 * one the previous transaction's events went to, or else the one the
 * catalog names (last_leaf_find()).  NULL: none, route the event.
 *
 * Routing locks audit.event and the class's partitioned table for the
 * whole transaction, besides setting them up.  Without those two locks an
 * audited transaction holds only what it writes (the leaf, its indexes,
 * the sequence), so partition maintenance on the tree (a month created, a
 * month pruned) neither waits for long audited transactions nor makes new
 * ones queue behind it, and two more fast-path lock slots stay free for the
 * application.  This is what an INSERT naming the leaf does; instead of its
 * partition-constraint check per row, the leaf's bound is known (class and
 * time range, read from the catalog) and after any relcache invalidation
 * of the leaf or its parent, its parent and bound are read again once the
 * leaf is locked (last_leaf_verify()).  The leaf cannot be detached or
 * dropped while we hold our lock on it (both take ACCESS EXCLUSIVE on it;
 * DETACH CONCURRENTLY is refused by the trail's protection, and would only
 * leave our events in the detached table).
 */
static ResultRelInfo *
writer_open_direct(const char *class_name, TimestampTz t)
{
	Oid			leaf;
	Relation	rel;
	ResultRelInfo *rri;
	MemoryContext old;

	last_leaf_verify();
	if (!OidIsValid(last_leaf.leaf) || strcmp(class_name, last_leaf.class_name) != 0 ||
		(last_leaf.range_loaded && last_leaf.ranged &&
		 !(t >= last_leaf.lo && t < last_leaf.hi)))
		last_leaf_find(class_name, t);
	leaf = last_leaf.leaf;
	if (!OidIsValid(leaf) || !last_leaf.direct_ok || class_name[0] == '\0' ||
		strcmp(class_name, last_leaf.class_name) != 0 ||
		!leaf_holds_time(leaf, t))
		return NULL;

	/* Taking the lock reads pending invalidations: check again after it. */
	LockRelationOid(leaf, RowExclusiveLock);
	last_leaf_verify();
	if (last_leaf.leaf != leaf || !last_leaf.direct_ok ||
		!leaf_holds_time(leaf, t) ||
		(rel = try_relation_open(leaf, NoLock)) == NULL)
	{
		UnlockRelationOid(leaf, RowExclusiveLock);
		return NULL;
	}
	if (rel->rd_rel->relkind != RELKIND_RELATION || !rel->rd_rel->relispartition ||
		!same_layout_as_store(rel))
	{
		relation_close(rel, RowExclusiveLock);
		last_leaf.direct_ok = false;
		return NULL;
	}

	old = MemoryContextSwitchTo(writer.estate->es_query_cxt);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 0, NULL, 0);
	flush_fault_arm(AUDIT_FLUSH_FAULT_CANCEL_LEAF_INDEXES);
	writer_open_leaf_indexes(rri);
	flush_fault_check_taken(AUDIT_FLUSH_FAULT_CANCEL_LEAF_INDEXES);
	MemoryContextSwitchTo(old);
	writer.direct = rri;
	return rri;
}

static void
writer_drop_slots(void)
{
	for (int s = 0; s < writer.nslots; s++)
		ExecDropSingleTupleTableSlot(writer.slots[s]);
	writer.slots = NULL;
	writer.nslots = 0;
	writer.leaf = NULL;
	writer.leaf_key_valid = false;
}

/*
 * Release and delete the writer's resource owner.  clean: after a normal
 * close, where nothing should be left (anything left is reported as
 * PostgreSQL reports leaks at commit, and released); otherwise quietly, as
 * an abort does.  The locks are never released here but passed to the
 * parent, TopTransactionResourceOwner (isCommit = true in the LOCKS phase
 * reassigns them): they protect what the transaction wrote, until its end.
 */
static void
writer_release_owner(ResourceOwner owner, bool clean)
{
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, clean, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, true, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, clean, false);
	ResourceOwnerDelete(owner);
}

/*
 * Free a failed writer whole, whatever state the error left it in: its
 * owner holds every reference it took, recorded or not.  Not
 * FreeExecutorState(): its partition directory's relcache references are
 * the owner's, released already; its memory is deleted instead.
 */
static void
writer_discard(void)
{
	ResourceOwner owner = writer.owner;
	EState	   *estate = writer.estate;

	/* forgotten first: should releasing fail, the abort finds nothing */
	memset(&writer, 0, sizeof(writer));
	if (owner != NULL)
		writer_release_owner(owner, false);
	if (estate != NULL)
		MemoryContextDelete(estate->es_query_cxt);
	ctx_index_release();
}

/* Close the writer's relations; needs a live transaction. */
static void
writer_close(void)
{
	ResourceOwner save = CurrentResourceOwner;
	ResourceOwner owner = writer.owner;

	if (!writer.open)
		return;
	if (writer.failed)
	{
		writer_discard();
		return;
	}
	/* should closing fail, what is left is discarded (writer.estate: once) */
	writer.failed = true;
	/* references are forgotten by the owner that remembered them */
	CurrentResourceOwner = owner;
	writer_drop_slots();
	if (writer.routing)
	{
		ExecDropSingleTupleTableSlot(writer.root_slot);
		ExecCleanupTupleRouting(writer.mtstate, writer.proute);
	}
	if (writer.direct)
	{
		ExecCloseIndices(writer.direct);
		table_close(writer.direct->ri_RelationDesc, NoLock);
	}
	FreeExecutorState(writer.estate);
	writer.estate = NULL;
	if (writer.routing)
		table_close(writer.root, NoLock);
	CurrentResourceOwner = save;
	memset(&writer, 0, sizeof(writer));
	writer_release_owner(owner, true);
	ctx_index_release();
}

/*
 * From PostgreSQL 17 on, an index AM may keep state from one insert to the
 * next (IndexInfo.ii_AmCache), released by its aminsertcleanup when the
 * executor closes the indexes (ExecCloseIndices -> index_insert_cleanup):
 * BRIN keeps its revmap buffers pinned there (brin.c,
 * initialize_brin_insertstate / brininsertcleanup).  Those pins belong to
 * the owner current at the insert, the caller's (see audit_flush_events),
 * and that owner (a portal's, a subtransaction's) is gone when
 * writer_close() runs under the writer's own owner (up to 1.3,
 * TopTransactionResourceOwner): "resource was not closed", then "buffer
 * pin ... is not owned by resource owner TopTransaction".  So the state of such an index lives for one batch only,
 * in writer.insert_cxt (BRIN's descriptor context included): cleaned up
 * after each batch, under the owner that pinned; after an error only
 * forgotten, the aborting owner releases the pins.  Other AMs' caches (GIN's
 * GinState) hold memory only and stay for the writer's life.
 */
static bool
writer_index_has_insert_state(ResultRelInfo *rri, int i)
{
#if PG_VERSION_NUM >= 170000
	return rri->ri_IndexRelationDescs[i] != NULL &&
		rri->ri_IndexRelationInfo[i] != NULL &&
		rri->ri_IndexRelationDescs[i]->rd_indam->aminsertcleanup != NULL;
#else
	return false;
#endif
}

static void
writer_end_index_inserts(bool release)
{
	ResultRelInfo *rri = writer.leaf;

	if (rri == NULL || writer.insert_cxt == NULL)
		return;
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		if (!writer_index_has_insert_state(rri, i))
			continue;
#if PG_VERSION_NUM >= 170000
		if (release)
			index_insert_cleanup(rri->ri_IndexRelationDescs[i], rri->ri_IndexRelationInfo[i]);
#endif
		rri->ri_IndexRelationInfo[i]->ii_AmCache = NULL;
	}
	MemoryContextReset(writer.insert_cxt);
}

/* Use the leaf's own slots for the batch (made once per leaf). */
static void
writer_set_leaf(ResultRelInfo *leaf)
{
	MemoryContext old;
	TupleDesc	desc;
	Relation	rel = leaf->ri_RelationDesc;

	writer_drop_slots();
	old = MemoryContextSwitchTo(writer.estate->es_query_cxt);
	/* an unpinned copy: pinning the relcache one per slot is costly */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	writer.leafdesc = desc;
	/* slots are made as batches need them: OLTP flushes one event */
	writer.slots = palloc0(sizeof(TupleTableSlot *) * AUDIT_FLUSH_EVENTS);
	writer.nslots = 0;
	writer.leaf = leaf;
	MemoryContextSwitchTo(old);
	for (int i = 0; i < leaf->ri_NumIndices; i++)
		if (writer_index_has_insert_state(leaf, i))
			leaf->ri_IndexRelationInfo[i]->ii_Context = writer.insert_cxt;

	writer_track(RelationGetRelid(rel));
	if (rel->rd_rel->relispartition)
		writer_track(parent_of_leaf(RelationGetRelid(rel)));
}

static void
write_batch(int n, CommandId cid)
{
	EState	   *estate = writer.estate;

	if (n == 0)
		return;
	table_multi_insert(writer.leaf->ri_RelationDesc, writer.slots, n, cid, 0, NULL);
	for (int i = 0; i < n; i++)
		insert_index_entries(writer.leaf, writer.slots[i], estate);
	writer_end_index_inserts(true);
	for (int i = 0; i < n; i++)
		ExecClearTuple(writer.slots[i]);
}

/*
 * Write the buffered events of the current subtransaction.  Events of outer
 * subtransactions stay buffered until their own subtransaction is current
 * again (at the latest, at commit).
 */
void
audit_flush_events(void)
{
	SubTransactionId cur;
	CommandId	cid;
	volatile bool pushed_snapshot = false;
	volatile int kept = 0;
	ResourceOwner save_owner = CurrentResourceOwner;
	ResourceOwner write_owner = save_owner ? save_owner : TopTransactionResourceOwner;

	if (buffer_len == 0 || flushing)
		return;
	if (!IsTransactionState() || IsAbortedTransactionBlockState())
		return;

	cur = GetCurrentSubTransactionId();
	{
		bool		any = false;

		for (int i = 0; i < buffer_len && !any; i++)
			any = (buffer[i].subid == cur);
		if (!any)
			return;
	}

	flushing = true;
	PG_TRY();
	{
		int			n = 0;

		if (!ActiveSnapshotSet())
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			pushed_snapshot = true;
		}

		/* failed: an error was caught without an abort (not expected) */
		if (writer.open && (writer.stale || writer.failed))
			writer_close();
		if (!writer.open)
			writer_open();

		/*
		 * Relations are opened under the writer's owner (the writer lives as
		 * long as the transaction), but the buffers pinned while writing
		 * belong to the caller's: a cancel in the middle of an index
		 * insertion inside a savepoint must not leave a pin behind.
		 */
		CurrentResourceOwner = write_owner;

		cid = GetCurrentCommandId(true);
		writer.estate->es_output_cid = cid;

		for (int i = 0; i < buffer_len; i++)
		{
			ResultRelInfo *leaf;
			TupleConversionMap *map;
			TupleTableSlot *dst;
			HeapTuple	tup = buffer[i].tuple;
			bool		routed = false;

			if (buffer[i].subid != cur)
			{
				/* moved, never copied: the abort paths free each tuple once */
				if (kept != i)
				{
					buffer[kept] = buffer[i];
					buffer[i].tuple = NULL;
				}
				kept++;
				continue;
			}

			/*
			 * Every row of a statement has the same key, and the statements
			 * of a transaction mostly the same leaf: route once.
			 */
			if (writer.leaf_key_valid &&
				buffer[i].class_name[0] != '\0' &&
				strcmp(buffer[i].class_name, writer.leaf_class_name) == 0 &&
				(buffer[i].event_time == writer.leaf_event_time ||
				 leaf_holds_time(RelationGetRelid(writer.leaf->ri_RelationDesc),
								 buffer[i].event_time)))
				leaf = writer.leaf;
			else
			{
				leaf = NULL;
				/* whatever opening takes, also in core's code, is the writer's */
				CurrentResourceOwner = writer.owner;
				writer.subid = Max(writer.subid, cur);
				if (!writer.routing && writer.direct == NULL)
					leaf = writer_open_direct(buffer[i].class_name,
											  buffer[i].event_time);
				if (leaf == NULL)
				{
					if (!writer.routing)
						writer_open_routing();
					ExecStoreHeapTuple(tup, writer.root_slot, false);
					routed = true;
					leaf = ExecFindPartition(writer.mtstate, writer.root_rri,
											 writer.proute, writer.root_slot,
											 writer.estate);
					last_leaf_learn(RelationGetRelid(leaf->ri_RelationDesc),
									buffer[i].class_name,
									root_to_leaf_map(leaf, writer.estate) == NULL);
				}
				CurrentResourceOwner = write_owner;
				writer.leaf_key_valid = false;
			}
			if (leaf != writer.leaf || n >= AUDIT_FLUSH_EVENTS)
			{
				write_batch(n, cid);
				n = 0;
				if (leaf != writer.leaf)
					writer_set_leaf(leaf);
			}
			writer.leaf_key_valid = true;
			strcpy(writer.leaf_class_name, buffer[i].class_name);
			writer.leaf_event_time = buffer[i].event_time;
			if (n >= writer.nslots)
			{
				MemoryContext old = MemoryContextSwitchTo(writer.estate->es_query_cxt);

				writer.slots[writer.nslots++] =
					MakeSingleTupleTableSlot(writer.leafdesc, &TTSOpsHeapTuple);
				MemoryContextSwitchTo(old);
			}

			if ((buffer[i].may_enter & writer.deferred_kinds) && leaf == writer.direct)
				writer_open_deferred_indexes(leaf, buffer[i].may_enter);
			dst = writer.slots[n++];
			buffer_bytes -= tup->t_len;
			buffer[i].tuple = NULL;
			/* a leaf opened directly has audit.event's layout */
			map = leaf == writer.direct ? NULL : root_to_leaf_map(leaf, writer.estate);
			if (map)
			{
				if (!routed)
					ExecStoreHeapTuple(tup, writer.root_slot, false);
				execute_attr_map_slot(map->attrMap, writer.root_slot, dst);
				ExecClearTuple(writer.root_slot);
				pfree(tup);
			}
			else
			{
				/* same layout as the root: the slot owns the tuple, no copy */
				if (routed)
					ExecClearTuple(writer.root_slot);
				ExecStoreHeapTuple(tup, dst, true);
			}
		}
		write_batch(n, cid);

		CurrentResourceOwner = save_owner;
		if (pushed_snapshot)
			PopActiveSnapshot();
	}
	PG_CATCH();
	{
		int			left = 0;

		CurrentResourceOwner = save_owner;
		flushing = false;
		writer_end_index_inserts(false);
		/* released whole by the abort that follows (see WriterState) */
		if (writer.open)
			writer.failed = true;
		/*
		 * Keep what was not written yet, once each, for the abort callbacks
		 * (a cancel in the middle of a flush inside a savepoint, then
		 * ROLLBACK TO SAVEPOINT).  Tuples already in batch slots went with
		 * them.
		 */
		for (int i = 0; i < buffer_len; i++)
			if (buffer[i].tuple != NULL)
				buffer[left++] = buffer[i];
		buffer_len = left;
		PG_RE_THROW();
	}
	PG_END_TRY();
	flushing = false;

	/* Keep only the outer subtransactions' events. */
	buffer_len = kept;
	if (buffer_len == 0)
	{
		MemoryContextReset(BufferContext);
		buffer = NULL;
		buffer_cap = 0;
		buffer_bytes = 0;
	}
}

/* Before commit, and before DDL: write everything and close the store. */
void
audit_writer_finish(void)
{
	audit_flush_events();
	if (writer.open && IsTransactionState())
		writer_close();
}

/* 0: commit or prepare; 1: abort.  Nothing may survive the transaction. */
void
audit_writer_xact_callback(int event)
{
	if (event == 0 && buffer_len > 0)
		elog(WARNING, "audit_ext: %d audit events were still buffered at commit",
			 buffer_len);
	buffer_len = 0;
	buffer_cap = 0;
	buffer = NULL;
	buffer_bytes = 0;
	flushing = false;
	if (BufferContext)
		MemoryContextReset(BufferContext);

	/*
	 * Its memory goes with the transaction, its owner with the top-level
	 * owner it is a child of (after an abort quietly; at commit it was
	 * closed before, anything left would be reported as a leak).
	 */
	memset(&writer, 0, sizeof(writer));
}

/*
 * Forget the events of an aborted subtransaction and its children; discard
 * the writer if an error hit it, or if this subtransaction or one of its
 * children opened any of it (see WriterState).  Called before the
 * subtransaction's own resources are released, after LWLocks and buffer
 * I/O are.
 */
void
audit_writer_subxact_abort(SubTransactionId subid)
{
	int			kept = 0;

	if (writer.open && (writer.failed || writer.subid >= subid))
		writer_discard();

	flushing = false;
	for (int i = 0; i < buffer_len; i++)
	{
		if (buffer[i].tuple == NULL)
			continue;
		if (buffer[i].subid >= subid)
		{
			buffer_bytes -= buffer[i].tuple->t_len;
			pfree(buffer[i].tuple);
		}
		else
			buffer[kept++] = buffer[i];
	}
	buffer_len = kept;
}
