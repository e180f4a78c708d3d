/*-------------------------------------------------------------------------
 *
 * read_audit.c
 *		read/SELECT and read/COPY events for tables audited with
 *		log_reads => true: one event per statement and table, with the
 *		number of rows the executor returned.
 *
 * audit.enable(..., log_reads => true) adds the flag "log_reads" as third
 * argument of the table's audit_ext_row trigger (partitions get it with the
 * cloned trigger).  Whether a relation is read-audited is cached per
 * backend by OID and dropped by relcache invalidation, so a table without
 * the flag costs one hash lookup per range-table entry of a finished query.
 *
 * Counting:
 *	- After each ExecutorRun: the query's range table (views are expanded, so
 *	  a view's underlying table is there; partitions map to their audited
 *	  root) names the read-audited tables; es_processed is the rows that run
 *	  returned (SELECT), or processed (INSERT ... SELECT, CREATE TABLE AS).
 *	  Counting per run, not at ExecutorEnd, is what makes cursors right: a
 *	  cursor runs once per FETCH and ends at COMMIT or CLOSE, or not at all
 *	  when its transaction aborts (up to 1.3 a cursor read that rolled back
 *	  left no event, one that committed was recorded with the text "COMMIT;"
 *	  and the rows of its last FETCH only).  Each FETCH is recorded with the
 *	  DECLARE's text and "cursor": true.
 *	- Rows read from the table beside rows returned: a query that reads a
 *	  read-audited table runs with row instrumentation (INSTRUMENT_ROWS, no
 *	  timing); the tuples its scan nodes on that table produced (workers'
 *	  included) are "rows_read".  An aggregate over a whole table returns
 *	  one row and reads all of them; the mass-export rule looks at both.
 *	- COPY table TO: the utility hook; the row count of the COPY.
 *	- Nested queries (functions, DO blocks, COPY (query) TO) are merged into
 *	  their top-level statement: per table, the rows of the shallowest query
 *	  that read it count, so a function called per row does not multiply
 *	  the reads of the outer query, and a table read only inside a function
 *	  is reported once with the rows those inner queries returned.
 *	- The events are queued (queue.c) when the top-level statement ends, so
 *	  they survive a rollback of the reading transaction: the data was seen.
 *	  A transaction that aborts queues what its finished queries read.
 *	- Not recorded: EXPLAIN without ANALYZE, foreign-key checks (run in a
 *	  "no force RLS" operation), parallel workers (the leader counts).
 *
 * Needs shared_preload_libraries (the queue).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define READ_MAX_TABLES 16

typedef struct ReadRelEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	bool		log_reads;
	char		schema_name[NAMEDATALEN];	/* the audited root */
	char		table_name[NAMEDATALEN];
	int64		identity;		/* the audited root's; 0: none */
	int			sensitivity;	/* 1.6: audit.enable(sensitivity), 0: none */
} ReadRelEntry;

/* a table read by the current top-level statement */
typedef struct ReadTable
{
	char		schema_name[NAMEDATALEN];
	char		table_name[NAMEDATALEN];
	int64		identity;
	int			sensitivity;	/* 1.6: the table's, a floor of the risk */
	int			level;			/* nesting level of the queries counted */
	bool		copy;			/* read by COPY ... TO */
	uint64		query;			/* the query that last counted it */
	uint64		rows;
	uint64		rows_read;		/* tuples its scans produced */
	bool		cursor;			/* read through a cursor's FETCH */
} ReadTable;

static HTAB *read_rels = NULL;

/* nesting of executor runs and utility statements, as pg_stat_statements */
static int	nesting = 0;
static int	copy_to_level = -1; /* level of a running COPY ... TO, or -1 */

/* reads of the current top-level statement, queued when it ends */
static int	npending = 0;
static uint64 query_seq = 0;	/* numbers the queries noted */
static ReadTable pending[READ_MAX_TABLES];
static AuditQueueEntry pending_entry;	/* who, where, what statement */

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static bool fetching = false;	/* the top-level statement is a FETCH/MOVE */
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void
read_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ReadRelEntry *e;

	if (read_rels == NULL)
		return;
	if (OidIsValid(relid))
	{
		e = hash_search(read_rels, &relid, HASH_FIND, NULL);
		if (e)
			e->valid = false;
		return;
	}
	hash_seq_init(&status, read_rels);
	while ((e = hash_seq_search(&status)) != NULL)
		e->valid = false;
}

/* "log_reads" among the flags of the trigger's third argument (text[]) */
static bool
trigger_logs_reads(Trigger *tg)
{
	return tg->tgnargs >= 3 && strstr(tg->tgargs[2], "log_reads") != NULL;
}

static void
fill_rel_entry(ReadRelEntry *e)
{
	Relation	rel = RelationIdGetRelation(e->relid);
	Trigger    *tg;
	bool		clone = false;
	char	   *nsp;
	char	   *name;

	e->log_reads = false;
	if (!RelationIsValid(rel))
		return;
	if ((tg = audit_row_trigger(rel)) != NULL)
	{
		e->log_reads = trigger_logs_reads(tg);
		e->sensitivity = audit_trigger_sensitivity(tg);
		clone = tg->tgisclone;
	}
	RelationClose(rel);
	if (!e->log_reads)
		return;

	if (!audit_recorded_names(e->relid, clone, &nsp, &name, &e->identity))
	{
		e->log_reads = false;
		return;
	}
	strlcpy(e->schema_name, nsp, sizeof(e->schema_name));
	strlcpy(e->table_name, name, sizeof(e->table_name));
}

static ReadRelEntry *
lookup_rel(Oid relid)
{
	ReadRelEntry *e;
	bool		found;

	if (read_rels == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ReadRelEntry);
		ctl.hcxt = TopMemoryContext;
		read_rels = hash_create("audit_ext read-audited relations", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(read_rels, &relid, HASH_ENTER, &found);
	if (!found || !e->valid)
	{
		e->valid = false;
		fill_rel_entry(e);
		e->valid = true;
	}
	return e;
}

/*
 * The statement's context, taken once when it first reads an audited table.
 * The text is the top-level statement's (debug_query_string); under the
 * extended protocol a portal may end after its message, when only the
 * query's own text (source_text) is left.
 */
static void
prepare_entry(const char *source_text)
{
	AuditQueueEntry *e = &pending_entry;
	const char *query = debug_query_string ? debug_query_string : source_text;

	audit_fill_entry_from_port(e, MyProcPort, "read", "SELECT", false);
	audit_fill_entry_from_statement(e, query);
}

static void
add_read(const char *schema_name, const char *table_name, int64 identity, int sensitivity, uint64 rows,
		 uint64 rows_read, int level, bool copy, bool cursor,
		 const char *source_text)
{
	ReadTable  *t = NULL;

	if (npending == 0)
	{
		prepare_entry(source_text);
		/* a FETCH: the cursor's DECLARE says what was read */
		if (cursor && source_text)
			audit_fill_entry_from_statement(&pending_entry, source_text);
	}
	for (int i = 0; i < npending; i++)
		if (strcmp(pending[i].table_name, table_name) == 0 &&
			strcmp(pending[i].schema_name, schema_name) == 0)
		{
			t = &pending[i];
			break;
		}
	if (t == NULL)
	{
		if (npending >= READ_MAX_TABLES)
			return;
		t = &pending[npending++];
		strlcpy(t->schema_name, schema_name, sizeof(t->schema_name));
		strlcpy(t->table_name, table_name, sizeof(t->table_name));
		t->identity = identity;
		t->sensitivity = sensitivity;
		t->level = level;
		t->rows = 0;
		t->rows_read = 0;
		t->copy = false;
		t->cursor = false;
		t->query = 0;
	}
	/* a partitioned table and its partitions: one table, counted once */
	if (t->query == query_seq)
		return;
	t->query = query_seq;
	if (level < t->level)
	{
		/* an outer query that read the table: its rows are what was read */
		t->level = level;
		t->rows = rows;
		t->rows_read = rows_read;
	}
	else if (level == t->level)
	{
		t->rows += rows;
		t->rows_read += rows_read;
	}
	t->copy |= copy;
	t->cursor |= cursor;
}

/*
 * Queue the pending reads.  Also called from the abort callback: no
 * catalog access, no allocation, no error.
 */
static void
flush_reads(void)
{
	for (int i = 0; i < npending; i++)
	{
		char		num[32];
		char		num_read[32];
		const char *keys[] = {"rows", "rows_read", "cursor"};
		const char *vals[] = {num, num_read, "true"};
		const bool	raw[] = {true, true, true};

		strlcpy(pending_entry.action, pending[i].copy ? "COPY" : "SELECT",
				sizeof(pending_entry.action));
		strlcpy(pending_entry.schema_name, pending[i].schema_name,
				sizeof(pending_entry.schema_name));
		strlcpy(pending_entry.table_name, pending[i].table_name,
				sizeof(pending_entry.table_name));
		pending_entry.table_identity = pending[i].identity;
		pending_entry.risk_floor = pending[i].sensitivity;
		snprintf(num, sizeof(num), UINT64_FORMAT, pending[i].rows);
		snprintf(num_read, sizeof(num_read), UINT64_FORMAT, pending[i].rows_read);
		audit_json_object(pending_entry.detail, sizeof(pending_entry.detail),
						  pending[i].cursor ? 3 : 2, keys, vals, raw);
		(void) audit_queue_enqueue(&pending_entry);
	}
	npending = 0;
}

static bool
reads_recorded_here(void)
{
	return audit_queue_available() && !IsParallelWorker() &&
		!InNoForceRLSOperation() && IsTransactionState();
}

/* Tuples the scan nodes of one relation produced, the workers' included. */
typedef struct ScanCount
{
	EState	   *estate;
	Oid			relid;
	uint64		tuples;
} ScanCount;

static bool
count_scans(PlanState *ps, void *context)
{
	ScanCount  *c = (ScanCount *) context;

	if (ps == NULL)
		return false;
	switch (nodeTag(ps->plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			{
				Index		scanrelid = ((Scan *) ps->plan)->scanrelid;

				if (scanrelid > 0 && scanrelid <= (Index) list_length(c->estate->es_range_table) &&
					exec_rt_fetch(scanrelid, c->estate)->relid == c->relid)
				{
					if (ps->instrument)
						c->tuples += (uint64) (ps->instrument->ntuples + ps->instrument->tuplecount);
					if (ps->worker_instrument)
						for (int w = 0; w < ps->worker_instrument->num_workers; w++)
							c->tuples += (uint64) ps->worker_instrument->instrument[w].ntuples;
				}
				break;
			}
		default:
			break;
	}
	return planstate_tree_walker(ps, count_scans, context);
}

static void
note_query_reads(QueryDesc *queryDesc)
{
	EState	   *estate = queryDesc->estate;
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	ListCell   *lc;
	int			rti = 0;
	bool		cursor = fetching && nesting == 1;

	/*
	 * read_ExecutorStart asked for row counts of every query that reads a
	 * read-audited table: the others (almost all) skip the range table here.
	 */
	if (estate == NULL || pstmt == NULL ||
		(estate->es_top_eflags & EXEC_FLAG_EXPLAIN_ONLY) ||
		!(queryDesc->instrument_options & INSTRUMENT_ROWS))
		return;
	query_seq++;
	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		ReadRelEntry *e;

		rti++;
		if (rte->rtekind != RTE_RELATION ||
			(rte->relkind != RELKIND_RELATION &&
			 rte->relkind != RELKIND_PARTITIONED_TABLE))
			continue;
		/* the table written by INSERT/UPDATE/DELETE is a data event */
		if (list_member_int(pstmt->resultRelations, rti))
			continue;
		e = lookup_rel(rte->relid);
		if (!e->log_reads)
			continue;
		{
			ScanCount	c = {estate, rte->relid, 0};

			(void) count_scans(queryDesc->planstate, &c);
			add_read(e->schema_name, e->table_name, e->identity, e->sensitivity, estate->es_processed, c.tuples,
					 cursor ? 0 : nesting, copy_to_level >= 0 && nesting > copy_to_level,
					 cursor, queryDesc->sourceText);
		}
	}
}

/* A query that reads a read-audited table counts the rows its scans produce. */
static void
read_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (reads_recorded_here() && queryDesc->plannedstmt != NULL &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		ListCell   *lc;

		foreach(lc, queryDesc->plannedstmt->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION &&
				(rte->relkind == RELKIND_RELATION || rte->relkind == RELKIND_PARTITIONED_TABLE) &&
				lookup_rel(rte->relid)->log_reads)
			{
				queryDesc->instrument_options |= INSTRUMENT_ROWS;
				break;
			}
		}
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
read_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				 bool execute_once)
{
	nesting++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		nesting--;
	}
	PG_END_TRY();

	/* what this run returned (a cursor runs once per FETCH) */
	if (reads_recorded_here())
	{
		note_query_reads(queryDesc);
		if (nesting == 0 && npending > 0)
			flush_reads();
	}
}

static void
read_ExecutorFinish(QueryDesc *queryDesc)
{
	nesting++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		nesting--;
	}
	PG_END_TRY();
}

static void
read_ExecutorEnd(QueryDesc *queryDesc)
{
	/* counted after each run (read_ExecutorRun) */
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

static void
read_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	/* volatile: read after PG_TRY (gcc 14's -Wclobbered, Debian 13) */
	volatile bool copy_to = IsA(stmt, CopyStmt) && !((CopyStmt *) stmt)->is_from;
	int			save_copy_level = copy_to_level;
	Oid			copy_rel;

	bool		save_fetching = fetching;

	if (copy_to)
		copy_to_level = nesting;
	if (nesting == 0)
		fetching = IsA(stmt, FetchStmt);
	nesting++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		nesting--;
		copy_to_level = save_copy_level;
		fetching = save_fetching;
	}
	PG_END_TRY();

	if (!reads_recorded_here())
		return;
	/* COPY table TO reads the table without the executor */
	copy_rel = InvalidOid;
	if (copy_to && ((CopyStmt *) stmt)->relation != NULL &&
		((CopyStmt *) stmt)->query == NULL)
		copy_rel = RangeVarGetRelid(((CopyStmt *) stmt)->relation, NoLock, true);
	if (OidIsValid(copy_rel))
	{
		ReadRelEntry *e = lookup_rel(copy_rel);

		query_seq++;
		if (e->log_reads)
			add_read(e->schema_name, e->table_name, e->identity, e->sensitivity, qc ? qc->nprocessed : 0,
					 qc ? qc->nprocessed : 0, nesting, true, false, queryString);
	}
	if (nesting == 0 && npending > 0)
		flush_reads();
}

/* The reads of finished queries of an aborted statement were seen. */
static void
read_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (npending > 0 && audit_queue_available())
			flush_reads();
		npending = 0;
		nesting = 0;
		copy_to_level = -1;
		fetching = false;
	}
}

void
audit_read_install_hooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = read_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = read_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = read_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = read_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = read_ProcessUtility;
	RegisterXactCallback(read_xact_callback, NULL);
	CacheRegisterRelcacheCallback(read_relcache_callback, (Datum) 0);
}
