/*-------------------------------------------------------------------------
 *
 * verify.c
 *		audit.verify(from_time, to_time): walk the hash chains of chain.c and
 *		report the first event where one breaks.
 *
 * Each class is read in id order (lanes never span classes, and within a
 * lane id order is chain order).  For every event the verifier recomputes
 * the hash from the stored columns and the previous hash of the lane, and
 * checks the lane position: a gap means events were deleted, a repeated
 * position means one was inserted, a different hash means the row was
 * edited.  Lane heads recorded by audit.chain_checkpoint() catch a deleted
 * or rewritten tail; heads recorded when a partition was pruned
 * (audit.chain_anchor) let the chains continue across what retention
 * removed.  Events older than the chain (written by version 1.0) are
 * counted, not judged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define HASH_LEN 32

typedef struct LaneState
{
	int64		lane;			/* hash key */
	bool		seen;			/* an event of the lane was read (or seeded) */
	bool		walked;			/* an event of the lane was read by this walk */
	int64		seq;			/* last position read */
	uint8		hash[HASH_LEN];
	int64		last_id;
	int64		first_id;		/* the event at position 1, written here (0: not seen) */
	bool		bound;			/* a checkpoint round recorded the lane */
	/* the latest checkpoint of the lane */
	bool		has_checkpoint;
	int64		cp_seq;
	int64		cp_event_id;
	uint8		cp_hash[HASH_LEN];
	/* ranges removed by retention: (first_seq, last_seq, hash of last) */
	int			nanchors;
	int64	   *anchor_first;
	int64	   *anchor_last;
	uint8	   *anchor_hash;
} LaneState;

typedef struct VerifyResult
{
	int64		events;
	int64		legacy;
	int64		unverifiable;
	int64		breaks;
	int64		first_break_id;	/* 0: none */
	TimestampTz first_break_time;
	bool		first_break_time_null;
	char	   *problem;
	int64		lanes;
	int64		unconfirmed;	/* lanes started just before a restart */
	bool		any_time;		/* min_time and max_time are set */
	TimestampTz min_time;		/* earliest and latest event_time walked */
	TimestampTz max_time;
	MemoryContext keep;			/* where problem is kept */
} VerifyResult;

/*
 * The checkpoint rounds of this database (audit.chain_round, since 1.5), in
 * order: for each, the highest horizon so far and whether it was the first
 * round of a new shared memory (a restart).
 */
typedef struct Rounds
{
	bool		present;		/* the 1.5 schema is installed */
	int			n;
	int64	   *round_id;
	int64	   *max_horizon;	/* non-decreasing */
	bool	   *epoch_first;
} Rounds;

/*
 * The part of the trail one walk covers.  audit.verify(): everything, or a
 * time window.  audit.verify_chains_from() (1.6, the recorded verifications
 * of audit.record_verification()): only ids in (after_id, before_id),
 * continuing each lane from the head a recorded verification left
 * (audit.verification_head), and returning the new heads.
 */
typedef struct WalkBounds
{
	int64		after_id;		/* 0: from the first event */
	int64		before_id;		/* 0: to the last one */
	int64		seed;			/* heads of verifications up to this one; 0: none */
	StringInfo	heads;			/* where the new heads go as JSON; NULL: nowhere */
} WalkBounds;

static void
report_break(VerifyResult *r, int64 id, TimestampTz t, bool t_null, char *problem)
{
	r->breaks++;
	if (r->first_break_id == 0 || id < r->first_break_id)
	{
		r->first_break_id = id;
		r->first_break_time = t;
		r->first_break_time_null = t_null;
		r->problem = MemoryContextStrdup(r->keep, problem);
	}
}

static LaneState *
lane_entry(HTAB *lanes, int64 lane)
{
	bool		found;
	LaneState  *s = hash_search(lanes, &lane, HASH_ENTER, &found);

	if (!found)
	{
		memset(((char *) s) + sizeof(int64), 0, sizeof(LaneState) - sizeof(int64));
		s->lane = lane;
	}
	return s;
}

static bool
bytea_hash(Datum d, uint8 *out)
{
	bytea	   *b = DatumGetByteaPP(d);

	if (VARSIZE_ANY_EXHDR(b) != HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), HASH_LEN);
	return true;
}

/* The four columns of row i of the last SPI result; false when one is NULL. */
static bool
spi_row_values(uint64 i, Datum *v)
{
	for (int c = 0; c < 4; c++)
	{
		bool		isnull;

		v[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1, &isnull);
		if (isnull)
			return false;
	}
	return true;
}

/* Is position seq of the lane inside a range that retention removed? */
static int
anchor_covering(LaneState *s, int64 seq)
{
	for (int i = 0; i < s->nanchors; i++)
		if (seq >= s->anchor_first[i] && seq <= s->anchor_last[i])
			return i;
	return -1;
}

static void
load_lane_metadata(HTAB *lanes, const char *class_name, MemoryContext cxt,
				   const Rounds *rounds, const WalkBounds *bounds)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[2];

	args[0] = CStringGetTextDatum(class_name);

	/* where the recorded verifications left each lane */
	if (bounds->seed > 0)
	{
		args[1] = Int64GetDatum(bounds->seed);
		if (SPI_execute_with_args("SELECT DISTINCT ON (chain_lane) chain_lane, chain_seq, event_id, hash "
								  "FROM audit.verification_head "
								  "WHERE class OPERATOR(pg_catalog.=) $1 "
								  "AND verification_id OPERATOR(pg_catalog.<=) $2 "
								  "ORDER BY chain_lane, verification_id DESC",
								  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "audit_ext: could not read audit.verification_head");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			Datum		v[4];		/* chain_lane, chain_seq, event_id, hash */
			LaneState  *s;

			if (!spi_row_values(i, v))
				continue;
			s = lane_entry(lanes, DatumGetInt64(v[0]));
			if (!bytea_hash(v[3], s->hash))
				continue;
			s->seen = true;
			s->seq = DatumGetInt64(v[1]);
			s->last_id = DatumGetInt64(v[2]);
		}
	}

	if (SPI_execute_with_args("SELECT chain_lane, first_seq, last_seq, last_hash FROM audit.chain_anchor "
							  "WHERE class = $1 ORDER BY chain_lane, first_seq",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "audit_ext: could not read audit.chain_anchor");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		v[4];		/* chain_lane, first_seq, last_seq, last_hash */
		LaneState  *s;
		MemoryContext old;

		if (!spi_row_values(i, v))
			continue;
		s = lane_entry(lanes, DatumGetInt64(v[0]));
		old = MemoryContextSwitchTo(cxt);
		if (s->nanchors == 0)
		{
			s->anchor_first = palloc(sizeof(int64));
			s->anchor_last = palloc(sizeof(int64));
			s->anchor_hash = palloc(HASH_LEN);
		}
		else
		{
			s->anchor_first = repalloc(s->anchor_first, sizeof(int64) * (s->nanchors + 1));
			s->anchor_last = repalloc(s->anchor_last, sizeof(int64) * (s->nanchors + 1));
			s->anchor_hash = repalloc(s->anchor_hash, HASH_LEN * (s->nanchors + 1));
		}
		MemoryContextSwitchTo(old);
		s->anchor_first[s->nanchors] = DatumGetInt64(v[1]);
		s->anchor_last[s->nanchors] = DatumGetInt64(v[2]);
		if (!bytea_hash(v[3], s->anchor_hash + HASH_LEN * s->nanchors))
			memset(s->anchor_hash + HASH_LEN * s->nanchors, 0, HASH_LEN);
		s->nanchors++;
	}

	/* heads of prepared transactions may never have committed */
	if (SPI_execute_with_args(psprintf("SELECT DISTINCT ON (chain_lane) chain_lane, chain_seq, event_id, hash "
									   "FROM audit.chain_checkpoint WHERE class = $1 %s"
									   "ORDER BY chain_lane, chain_seq DESC",
									   rounds->present ? "AND NOT in_doubt " : ""),
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "audit_ext: could not read audit.chain_checkpoint");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		v[4];		/* chain_lane, chain_seq, event_id, hash */
		LaneState  *s;

		if (!spi_row_values(i, v))
			continue;
		s = lane_entry(lanes, DatumGetInt64(v[0]));
		s->has_checkpoint = bytea_hash(v[3], s->cp_hash);
		s->cp_seq = DatumGetInt64(v[1]);
		s->cp_event_id = DatumGetInt64(v[2]);
	}

	/* lanes a checkpoint round recorded (rows added outside a round do not count) */
	if (!rounds->present)
		return;
	if (SPI_execute_with_args("SELECT DISTINCT chain_lane FROM audit.chain_checkpoint "
							  "WHERE class = $1 AND round_id IS NOT NULL",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "audit_ext: could not read audit.chain_checkpoint");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		n1;
		Datum		lane = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &n1);

		if (!n1)
			lane_entry(lanes, DatumGetInt64(lane))->bound = true;
	}
}

/*
 * Was a lane whose first event has id first_id due in a checkpoint round?
 * 0: not yet (no round's horizon is above it); 1: yes; 2: only the first
 * round after a restart could have recorded it (lost with shared memory, or
 * inserted just then: unconfirmed).
 */
static int
lane_due(const Rounds *rounds, int64 first_id)
{
	int			lo = 0,
				hi = rounds->n;

	/* the first round whose horizon (so far) is above first_id */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (rounds->max_horizon[mid] > first_id)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo == rounds->n)
		return 0;
	if (rounds->epoch_first[lo] &&
		(lo == 0 || rounds->max_horizon[lo - 1] <= first_id))
		return 2;
	return 1;
}

static void
load_rounds(Rounds *rounds)
{
	memset(rounds, 0, sizeof(Rounds));
	if (SPI_execute("SELECT pg_catalog.to_regclass('audit.chain_round') IS NOT NULL", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "audit_ext: could not look for audit.chain_round");
	{
		bool		isnull;

		rounds->present = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (!rounds->present)
		return;
	if (SPI_execute("SELECT round_id, horizon, shm_epoch FROM audit.chain_round ORDER BY round_id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "audit_ext: could not read audit.chain_round");
	rounds->n = (int) SPI_processed;
	rounds->round_id = palloc(sizeof(int64) * Max(rounds->n, 1));
	rounds->max_horizon = palloc(sizeof(int64) * Max(rounds->n, 1));
	rounds->epoch_first = palloc(sizeof(bool) * Max(rounds->n, 1));
	for (int i = 0; i < rounds->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		n1,
					n2,
					n3;
		Datum		id = SPI_getbinval(tup, desc, 1, &n1);
		Datum		h = SPI_getbinval(tup, desc, 2, &n2);
		Datum		e = SPI_getbinval(tup, desc, 3, &n3);
		int64		prev_max = i > 0 ? rounds->max_horizon[i - 1] : 0;

		rounds->round_id[i] = DatumGetInt64(id);
		rounds->max_horizon[i] = (!n2 && DatumGetInt64(h) > prev_max) ? DatumGetInt64(h) : prev_max;
		rounds->epoch_first[i] = i == 0 ||
			DatumGetTimestampTz(e) != DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i - 1], desc, 3, &n3));
	}
}

/*
 * Check one class's events in [from, to).  A bounded window starts in the
 * middle of lanes: the link of each lane's first event in the window to its
 * predecessor outside cannot be checked there and is counted as unverifiable.
 */
static void
verify_class(const char *class_name, Datum from, bool from_null,
			 Datum to, bool to_null, int64 legacy_max_id, const Rounds *rounds,
			 const WalkBounds *bounds, VerifyResult *r)
{
	HASHCTL		ctl;
	HTAB	   *lanes;
	MemoryContext cxt;
	MemoryContext rowcxt;
	Portal		portal;
	Oid			argtypes[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		args[5];
	char		nulls[5] = {' ', from_null ? 'n' : ' ', to_null ? 'n' : ' ', ' ', ' '};
	bool		whole = from_null && to_null;
	HASH_SEQ_STATUS seq;
	LaneState  *s;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "audit_ext verify",
								ALLOCSET_DEFAULT_SIZES);
	rowcxt = AllocSetContextCreate(cxt, "audit_ext verify row",
								   ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(LaneState);
	ctl.hcxt = cxt;
	lanes = hash_create("audit_ext verify lanes", 256, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	load_lane_metadata(lanes, class_name, cxt, rounds, bounds);

	/* only the bounds given, so partition pruning sees constants */
	args[0] = CStringGetTextDatum(class_name);
	args[1] = from;
	args[2] = to;
	args[3] = Int64GetDatum(bounds->after_id);
	args[4] = Int64GetDatum(bounds->before_id);
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT id, event_time, class, action, status, db_user, \"session_user\", actor, "
												"client_addr, application_name, backend_pid, txid, statement_id, statement_seq, "
												"schema_name, table_name, record_id, old_data, new_data, changed_columns, detail, "
												"table_identity, context, risk, "
												"chain_lane, chain_seq, hash, source IS NOT NULL "
												"FROM audit.event WHERE class = $1 %s %s %s %s ORDER BY id",
												from_null ? "" : "AND event_time >= $2",
												to_null ? "" : "AND event_time < $3",
												bounds->after_id > 0 ? "AND id > $4" : "",
												bounds->before_id > 0 ? "AND id < $5" : ""),
									   5, argtypes, args, nulls, true, 0);

	for (;;)
	{
		SPI_cursor_fetch(portal, true, 2000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Datum		values[AC_CHAIN_FIELDS];
			bool		isnull[AC_CHAIN_FIELDS];
			Datum		all_values[AC_CHAIN_FIELDS + 4];
			bool		all_nulls[AC_CHAIN_FIELDS + 4];
			bool		lane_null,
						seq_null,
						hash_null;
			Datum		lane_d,
						seq_d,
						hash_d;
			int64		id;
			int64		pos;
			TimestampTz t;
			uint8		stored[HASH_LEN];
			uint8		computed[HASH_LEN];
			const uint8 *prev = NULL;
			uint8		zeros[HASH_LEN] = {0};
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(rowcxt);
			/* one pass over the tuple: attribute by attribute is quadratic */
			heap_deform_tuple(tup, desc, all_values, all_nulls);
			memcpy(values, all_values, sizeof(values));
			memcpy(isnull, all_nulls, sizeof(isnull));
			lane_d = all_values[AC_CHAIN_FIELDS];
			lane_null = all_nulls[AC_CHAIN_FIELDS];
			seq_d = all_values[AC_CHAIN_FIELDS + 1];
			seq_null = all_nulls[AC_CHAIN_FIELDS + 1];
			hash_d = all_values[AC_CHAIN_FIELDS + 2];
			hash_null = all_nulls[AC_CHAIN_FIELDS + 2];
			id = DatumGetInt64(values[AC_ID]);
			t = DatumGetTimestampTz(values[AC_EVENT_TIME]);
			r->events++;
			if (!r->any_time || t < r->min_time)
				r->min_time = t;
			if (!r->any_time || t > r->max_time)
				r->max_time = t;
			r->any_time = true;

			if (lane_null || seq_null || hash_null || !bytea_hash(hash_d, stored))
			{
				if (id <= legacy_max_id && lane_null && seq_null && hash_null)
					r->legacy++;
				else
					report_break(r, id, t, false,
								 psprintf("event %lld has no valid chain hash: it was inserted or altered outside audit_ext",
										  (long long) id));
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
				continue;
			}

			s = lane_entry(lanes, DatumGetInt64(lane_d));
			pos = DatumGetInt64(seq_d);

			if (s->seen && pos <= s->seq)
			{
				report_break(r, id, t, false,
							 psprintf("event %lld repeats position %lld of chain %lld (class %s) already held by an earlier event: it was inserted outside audit_ext",
									  (long long) id, (long long) pos,
									  (long long) s->lane, class_name));
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
				continue;
			}

			if (s->seen && pos == s->seq + 1)
				prev = s->hash;
			else if (pos == 1)
				prev = zeros;
			else
			{
				int			a = anchor_covering(s, pos - 1);
				int64		from_pos = s->seen ? s->seq + 1 : 1;

				if (a >= 0 && s->anchor_last[a] == pos - 1)
					prev = s->anchor_hash + HASH_LEN * a;	/* after a prune */
				else if (a >= 0 || (!s->seen && !whole))
				{
					/* predecessor pruned, or before the window: unknowable */
					r->unverifiable++;
				}
				else
				{
					report_break(r, id, t, false,
								 psprintf("%lld event(s) of chain %lld (class %s) are missing before event %lld (positions %lld to %lld): deleted",
										  (long long) (pos - from_pos),
										  (long long) s->lane, class_name,
										  (long long) id, (long long) from_pos,
										  (long long) (pos - 1)));
				}
			}

			if (prev != NULL)
			{
				audit_chain_compute(prev, (uint64) s->lane, pos, values, isnull,
									computed);
				if (memcmp(computed, stored, HASH_LEN) != 0)
					report_break(r, id, t, false,
								 psprintf("event %lld does not match its hash: it was edited after it was written",
										  (long long) id));
			}
			if (s->has_checkpoint && pos == s->cp_seq &&
				memcmp(stored, s->cp_hash, HASH_LEN) != 0)
				report_break(r, id, t, false,
							 psprintf("event %lld differs from the chain checkpoint taken for it: chain %lld (class %s) was rewritten",
									  (long long) id, (long long) s->lane,
									  class_name));

			if (!s->walked)
				r->lanes++;
			s->walked = true;
			/* a lane started here (not brought from another server) */
			if (pos == 1 && !all_nulls[AC_CHAIN_FIELDS + 3] &&
				!DatumGetBool(all_values[AC_CHAIN_FIELDS + 3]))
				s->first_id = id;
			s->seen = true;
			s->seq = pos;
			memcpy(s->hash, stored, HASH_LEN);
			s->last_id = id;
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	/*
	 * A lane must start where a checkpoint round saw it: one whose first
	 * event lies below a round's horizon and that no round recorded was
	 * inserted outside audit_ext (see audit_chain_checkpoint).
	 */
	if (rounds->present && rounds->n > 0)
	{
		hash_seq_init(&seq, lanes);
		while ((s = hash_seq_search(&seq)) != NULL)
		{
			int			due;

			if (s->first_id == 0 || s->bound)
				continue;
			due = lane_due(rounds, s->first_id);
			if (due == 2)
				r->unconfirmed++;
			else if (due == 1)
				report_break(r, s->first_id, 0, true,
							 psprintf("chain %lld (class %s) starts at event %lld, which a checkpoint round should have recorded and none did: the chain was written outside audit_ext",
									  (long long) s->lane, class_name,
									  (long long) s->first_id));
		}
	}

	/* A checkpointed tail must still be there (unless retention took it). */
	if (to_null)
	{
		hash_seq_init(&seq, lanes);
		while ((s = hash_seq_search(&seq)) != NULL)
		{
			if (!s->has_checkpoint)
				continue;
			/* a head beyond what this walk covers is the next one's */
			if (bounds->before_id > 0 && s->cp_event_id >= bounds->before_id)
				continue;
			if ((s->seen && s->seq >= s->cp_seq) || anchor_covering(s, s->cp_seq) >= 0)
				continue;
			if (!s->seen && !whole)
				continue;		/* the lane's tail may lie before the window */
			report_break(r, s->cp_event_id, 0, true,
						 psprintf("chain %lld (class %s) ends at position %lld but a checkpoint recorded position %lld (event %lld): events at its end were deleted",
								  (long long) s->lane, class_name,
								  (long long) (s->seen ? s->seq : 0),
								  (long long) s->cp_seq,
								  (long long) s->cp_event_id));
		}
	}

	/* the heads this walk moved, for the next one */
	if (bounds->heads != NULL)
	{
		hash_seq_init(&seq, lanes);
		while ((s = hash_seq_search(&seq)) != NULL)
		{
			if (!s->walked)
				continue;
			appendStringInfo(bounds->heads, "%s{\"class\": \"%s\", \"lane\": %lld, \"seq\": %lld, \"event_id\": %lld, \"hash\": \"",
							 bounds->heads->len > 1 ? ", " : "", class_name,
							 (long long) s->lane, (long long) s->seq, (long long) s->last_id);
			for (int i = 0; i < HASH_LEN; i++)
				appendStringInfo(bounds->heads, "%02x", s->hash[i]);
			appendStringInfoString(bounds->heads, "\"}");
		}
	}

	MemoryContextDelete(cxt);
}

PG_FUNCTION_INFO_V1(audit_verify);

/*
 * audit.verify_chains(from_time, to_time) returns one row: verified, events,
 * chains, legacy_events, unverifiable_links, breaks, first_broken_event_id,
 * first_broken_event_time, problem and (since 1.5) unconfirmed_chains.
 */
Datum
audit_verify(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13] = {0};
	VerifyResult r;
	Rounds		rounds;
	int64		legacy_max_id = 0;
	int			nest;
	MemoryContext callercxt = CurrentMemoryContext;
	static const char *const classes[] = {"data", "auth", "privilege", "ddl", "read", "system", "app"};
	WalkBounds	bounds = {0};
	StringInfoData heads;
	bool		from_ids = PG_NARGS() == 5;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "audit_ext: audit.verify must return a row");
	/* audit.verify_chains_from(after_id, before_id, from_time, to_time, seed) */
	if (from_ids)
	{
		if (PG_ARGISNULL(0) || PG_ARGISNULL(4))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("audit.verify_chains_from: after_id and seed must not be NULL")));
		bounds.after_id = PG_GETARG_INT64(0);
		bounds.before_id = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
		bounds.seed = PG_GETARG_INT64(4);
		initStringInfo(&heads);
		appendStringInfoChar(&heads, '[');
		bounds.heads = &heads;
	}

	memset(&r, 0, sizeof(r));
	r.keep = callercxt;
	nest = audit_spi_connect();
	if (SPI_execute("SELECT coalesce(max(legacy_max_id), 0) FROM audit.chain_origin", true, 0) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			legacy_max_id = DatumGetInt64(d);
	}
	load_rounds(&rounds);
	for (int i = 0; i < lengthof(classes); i++)
	{
		int			t = from_ids ? 2 : 0;

		verify_class(classes[i], PG_GETARG_DATUM(t), PG_ARGISNULL(t),
					 PG_GETARG_DATUM(t + 1), PG_ARGISNULL(t + 1), legacy_max_id, &rounds, &bounds, &r);
	}
	/* before building the result: SPI_finish frees what was palloc'd since SPI_connect */
	audit_spi_finish(nest);

	values[0] = BoolGetDatum(r.breaks == 0);
	values[1] = Int64GetDatum(r.events);
	values[2] = Int64GetDatum(r.lanes);
	values[3] = Int64GetDatum(r.legacy);
	values[4] = Int64GetDatum(r.unverifiable);
	values[5] = Int64GetDatum(r.breaks);
	if (r.first_break_id != 0)
	{
		values[6] = Int64GetDatum(r.first_break_id);
		values[7] = TimestampTzGetDatum(r.first_break_time);
		nulls[7] = r.first_break_time_null;
		values[8] = PointerGetDatum(cstring_to_text(r.problem));
	}
	else
	{
		nulls[6] = nulls[7] = nulls[8] = true;
	}
	/* the 1.4 definition of audit.verify_chains has nine columns: it gets nine */
	values[9] = Int64GetDatum(r.unconfirmed);
	if (from_ids)
	{
		appendStringInfoChar(&heads, ']');
		values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(heads.data));
		values[11] = TimestampTzGetDatum(r.min_time);
		values[12] = TimestampTzGetDatum(r.max_time);
		nulls[11] = nulls[12] = !r.any_time;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
