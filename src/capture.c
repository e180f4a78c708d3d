/*-------------------------------------------------------------------------
 *
 * capture.c
 *		The capture trigger: one audit event per changed row, built in C
 *		from the trigger's tuple slots.
 *
 * audit.enable() installs, on the audited table:
 *	audit_ext_row       AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW
 *	                    EXECUTE FUNCTION audit.capture_row(exclude, mask, flags, digest)
 *	audit_ext_truncate  AFTER TRUNCATE FOR EACH STATEMENT
 *	                    EXECUTE FUNCTION audit.capture_truncate(exclude, mask)
 * The trigger arguments are the table's options (text[] literals).  Digest
 * columns (1.6) are recorded as {"sha256": hex, "bytes": n}: the value is
 * hashed in slices straight from TOAST when stored out of line uncompressed,
 * otherwise detoasted once.
 *
 * What is needed per table (column names, JSON categories, key columns,
 * excluded and masked columns, the audited root of a partition) is built
 * once per backend and cached by relation OID; the relcache invalidation
 * that follows any ALTER TABLE or trigger change drops the entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_inherits.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit_ext.h"

PG_FUNCTION_INFO_V1(audit_capture_row);
PG_FUNCTION_INFO_V1(audit_capture_truncate);
PG_FUNCTION_INFO_V1(audit_trigger_arguments);
PG_FUNCTION_INFO_V1(audit_record_baseline);

#define COL_NORMAL		'n'
#define COL_EXCLUDED	'x'			/* also dropped columns */
#define COL_MASKED		'm'
#define COL_DIGEST		'd'			/* 1.6: {"sha256": ..., "bytes": n} */

/* a TOASTed value is hashed in slices of this size, never loaded whole */
#define DIGEST_SLICE	(1024 * 1024)

typedef struct AuditRelCache
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext mcxt;
	Datum		schema_name;	/* text: the audited table (root of a partition) */
	Datum		table_name;
	bool		ancestor_names; /* the names are an ancestor's */
	int64		identity;		/* audit.audited_table_history; 0: none */
	int			natts;
	char	   *mode;			/* COL_* per attribute */
	AuditColumnInfo *cols;
	int			nkeys;			/* 0: the whole row identifies the record */
	AttrNumber *keys;
	/* 1.6: risk (risk.c): the table's sensitivity, the level per action */
	int			sensitivity;	/* 0: none */
	uint64		risk_gen;		/* the rules' generation the levels are of */
	int			risk[5];		/* INSERT UPDATE DELETE TRUNCATE BASELINE; 0: not yet */
} AuditRelCache;

static HTAB *rel_cache = NULL;
static MemoryContext CaptureCacheContext = NULL;
static MemoryContext RetiredContext = NULL; /* entries replaced mid-transaction */
static MemoryContext RowContext = NULL;


/* ----------------------------------------------------------------
 * Cache
 * ----------------------------------------------------------------
 */
void
audit_capture_invalidate(Oid relid)
{
	HASH_SEQ_STATUS status;
	AuditRelCache *entry;

	if (rel_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(rel_cache, &relid, HASH_FIND, NULL);
		if (entry)
			entry->valid = false;
		/*
		 * The relation may be the audited ancestor whose names a partition's
		 * events carry (renamed: the partition's entry is not invalidated).
		 */
		hash_seq_init(&status, rel_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			if (entry->ancestor_names)
				entry->valid = false;
		return;
	}
	hash_seq_init(&status, rel_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/* Memory of replaced entries may still be referenced until the call ends. */
void
audit_capture_xact_end(void)
{
	if (RetiredContext)
		MemoryContextReset(RetiredContext);
}

bool
audit_has_own_trigger(Oid relid)
{
	Relation	tgrel;
	ScanKeyData skey[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&skey[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&skey[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("audit_ext_row"));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 2, skey);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
		found = !OidIsValid(((Form_pg_trigger) GETSTRUCT(tup))->tgparentid);
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

/*
 * The audited table a partition with a cloned audit trigger belongs to: its
 * nearest ancestor with a trigger of its own (events, refusals and reads are
 * recorded under that name).  relid itself when there is none.
 */
static Oid
audit_audited_root(Oid relid)
{
	ListCell   *lc;

	foreach(lc, get_partition_ancestors(relid))
	{
		if (audit_has_own_trigger(lfirst_oid(lc)))
			return lfirst_oid(lc);
	}
	return relid;
}

/*
 * The stable identity of an audited table (1.6): the open period of
 * audit.audited_table_history for its OID, written by audit.enable().
 * Looked up with the table API (the capturing user may not read the
 * catalog), once per capture cache entry.  0 when there is none (an
 * installation older than 1.6, or a table restored by pg_restore before
 * audit.enable() ran on it again).
 */
int64
audit_table_identity(Oid relid)
{
	Oid			nsp = get_namespace_oid("audit", true);
	Oid			histrel;
	Oid			histidx;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Snapshot	snap;
	int64		identity = 0;

	if (!OidIsValid(nsp) ||
		!OidIsValid(histrel = get_relname_relid("audited_table_history", nsp)) ||
		!OidIsValid(histidx = get_relname_relid("audited_table_history_open", nsp)))
		return 0;
	rel = table_open(histrel, AccessShareLock);
	/*
	 * The index is on (table_oid) WHERE valid_until IS NULL; the key names
	 * the heap column (table_oid, attribute 2), systable_beginscan maps it.
	 */
	ScanKeyInit(&key, 2, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, histidx, true, snap, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);

		if (!isnull)
			identity = DatumGetInt64(d);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return identity;
}

/*
 * The names the events of relid are recorded under: its own, or for a
 * partition whose audit trigger is a clone, its audited root's; with
 * identity, also that table's identity (1.6; 0 while logical decoding reads
 * the catalog as of a past change, wal_capture.c: the history is no catalog
 * table, the capture worker looks the identity up after decoding).  False
 * when a name is gone (the relation was dropped meanwhile).
 */
bool
audit_recorded_names(Oid relid, bool clone, char **schema_name, char **table_name,
					 int64 *identity)
{
	Oid			root = clone ? audit_audited_root(relid) : relid;

	*schema_name = get_namespace_name(get_rel_namespace(root));
	*table_name = get_rel_name(root);
	if (identity)
		*identity = HistoricSnapshotActive() ? 0 : audit_table_identity(root);
	return *schema_name != NULL && *table_name != NULL;
}

/*
 * The audit row trigger of a table or partitioned table, or NULL.  It points
 * into rel's trigger descriptor: valid while rel is open.
 */
Trigger *
audit_row_trigger(Relation rel)
{
	if (rel->trigdesc == NULL ||
		(rel->rd_rel->relkind != RELKIND_RELATION &&
		 rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE))
		return NULL;
	for (int i = 0; i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *tg = &rel->trigdesc->triggers[i];

		if (strcmp(tg->tgname, "audit_ext_row") == 0)
			return tg;
	}
	return NULL;
}

/* Parse a text[] literal trigger argument into a list of names. */
static List *
parse_name_array(const char *literal)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	if (literal == NULL || literal[0] == '\0')
		return NIL;
	arr = DatumGetArrayTypeP(OidInputFunctionCall(F_ARRAY_IN, (char *) literal,
												  TEXTOID, -1));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

static void
apply_column_option(AuditRelCache *rc, Relation rel, List *names, char mode,
					const char *option)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		char	   *name = lfirst(lc);
		int			i;

		for (i = 0; i < rc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
				break;
		}
		/* Fail closed: never capture a column the DBA asked to hide. */
		if (i >= rc->natts)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" named in %s of audited table \"%s\" does not exist",
							name, option, RelationGetRelationName(rel)),
					 errdetail("The column was probably renamed or dropped after auditing was enabled; "
							   "audit_ext refuses to guess which column to hide."),
					 errhint("Run audit.enable() on the table again with the current column names.")));
		rc->mode[i] = mode;
	}
}

static AuditRelCache *
get_rel_cache(Relation rel, Trigger *trigger)
{
	Oid			relid = RelationGetRelid(rel);
	AuditRelCache *rc;
	bool		found;
	MemoryContext old;
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pkindex;

	if (rel_cache == NULL)
	{
		HASHCTL		ctl;

		CaptureCacheContext = AllocSetContextCreate(TopMemoryContext,
													"audit_ext capture cache",
													ALLOCSET_DEFAULT_SIZES);
		RetiredContext = AllocSetContextCreate(TopMemoryContext,
											   "audit_ext retired capture cache",
											   ALLOCSET_SMALL_SIZES);
		RowContext = AllocSetContextCreate(TopMemoryContext,
										   "audit_ext row",
										   ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(AuditRelCache);
		ctl.hcxt = CaptureCacheContext;
		rel_cache = hash_create("audit_ext capture cache", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	rc = hash_search(rel_cache, &relid, HASH_ENTER, &found);
	if (found && rc->valid)
		return rc;
	if (found && rc->mcxt)
		MemoryContextSetParent(rc->mcxt, RetiredContext);

	rc->valid = false;
	rc->mcxt = AllocSetContextCreate(CaptureCacheContext, "audit_ext table",
									 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(rc->mcxt);

	/* Events of a partition are recorded under the audited partitioned table. */
	{
		char	   *nsp;
		char	   *name;

		rc->ancestor_names = rel->rd_rel->relispartition && trigger->tgisclone;
		if (!audit_recorded_names(relid, rc->ancestor_names, &nsp, &name, &rc->identity))
			elog(ERROR, "cache lookup failed for relation %u", relid);
		rc->schema_name = CStringGetTextDatum(nsp);
		rc->table_name = CStringGetTextDatum(name);
	}

	rc->natts = desc->natts;
	rc->mode = palloc(rc->natts);
	rc->cols = palloc0(sizeof(AuditColumnInfo) * rc->natts);
	for (int i = 0; i < rc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		rc->mode[i] = att->attisdropped ? COL_EXCLUDED : COL_NORMAL;
		if (!att->attisdropped)
			audit_json_column_init(&rc->cols[i], att->atttypid,
								   NameStr(att->attname), rc->mcxt);
	}
	if (trigger->tgnargs >= 1)
		apply_column_option(rc, rel, parse_name_array(trigger->tgargs[0]),
							COL_EXCLUDED, "exclude_columns");
	if (trigger->tgnargs >= 2)
		apply_column_option(rc, rel, parse_name_array(trigger->tgargs[1]),
							COL_MASKED, "mask_columns");
	if (trigger->tgnargs >= 4)
		apply_column_option(rc, rel, parse_name_array(trigger->tgargs[3]),
							COL_DIGEST, "digest_columns");
	rc->sensitivity = audit_trigger_sensitivity(trigger);
	rc->risk_gen = 0;

	/*
	 * Record identity: the primary key, else the replica identity index --
	 * the definition audit.key_columns() uses.  The relcache's primary key
	 * leaves out a DEFERRABLE one (it cannot serve as replica identity), so
	 * the index list is searched: with it a table with a deferrable key was
	 * recorded by whole rows while the reading functions asked for its key.
	 */
	rc->nkeys = 0;
	rc->keys = NULL;
	pkindex = InvalidOid;
	{
		List	   *indexes = RelationGetIndexList(rel);
		ListCell   *lc;

		foreach(lc, indexes)
		{
			HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

			if (HeapTupleIsValid(itup))
			{
				if (((Form_pg_index) GETSTRUCT(itup))->indisprimary)
					pkindex = lfirst_oid(lc);
				ReleaseSysCache(itup);
			}
			if (OidIsValid(pkindex))
				break;
		}
		list_free(indexes);
	}
	if (!OidIsValid(pkindex))
		pkindex = RelationGetReplicaIndex(rel);
	if (OidIsValid(pkindex))
	{
		HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkindex));

		if (HeapTupleIsValid(itup))
		{
			Form_pg_index idx = (Form_pg_index) GETSTRUCT(itup);

			rc->nkeys = idx->indnkeyatts;
			rc->keys = palloc(sizeof(AttrNumber) * rc->nkeys);
			for (int k = 0; k < rc->nkeys; k++)
				rc->keys[k] = idx->indkey.values[k];
			ReleaseSysCache(itup);
		}
	}

	MemoryContextSwitchTo(old);
	rc->valid = true;
	return rc;
}

/* ----------------------------------------------------------------
 * Building the JSON of a row
 * ----------------------------------------------------------------
 */
static void
digest_update(pg_cryptohash_ctx *ctx, const void *data, size_t len)
{
	if (pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0)
		elog(ERROR, "audit_ext: SHA-256 of a digest column failed");
}

/*
 * SHA-256 and length of a column value: the bytes of a bytea, the text of
 * text types (database encoding), the text form of jsonb.  A value stored
 * out of line without compression is read from TOAST in slices, so a large
 * file is never held in memory; a compressed one is detoasted once.
 */
static Datum
digest_jsonb(Datum value, Oid basetypid)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	struct varlena *attr = (struct varlena *) DatumGetPointer(value);
	uint8		hash[32];
	char		hex[65];
	int64		bytes = -1;
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "audit_ext: could not start a SHA-256 digest");
	if (basetypid == JSONBOID)
	{
		Jsonb	   *j = DatumGetJsonbP(value);
		char	   *txt = JsonbToCString(NULL, &j->root, VARSIZE(j));

		bytes = strlen(txt);
		digest_update(ctx, txt, bytes);
		pfree(txt);
	}
	else if (VARATT_IS_EXTERNAL_ONDISK(attr))
	{
		struct varatt_external tp;

		VARATT_EXTERNAL_GET_POINTER(tp, attr);
		if (!VARATT_EXTERNAL_IS_COMPRESSED(tp))
		{
			int32		total = VARATT_EXTERNAL_GET_EXTSIZE(tp);

			for (int32 off = 0; off < total; off += DIGEST_SLICE)
			{
				struct varlena *slice = detoast_attr_slice(attr, off,
														   Min(DIGEST_SLICE, total - off));

				digest_update(ctx, VARDATA_ANY(slice), VARSIZE_ANY_EXHDR(slice));
				pfree(slice);
				CHECK_FOR_INTERRUPTS();
			}
			bytes = total;
		}
	}
	if (bytes < 0)
	{
		struct varlena *full = pg_detoast_datum_packed(attr);

		bytes = VARSIZE_ANY_EXHDR(full);
		digest_update(ctx, VARDATA_ANY(full), bytes);
		if (full != attr)
			pfree(full);
	}
	if (pg_cryptohash_final(ctx, hash, sizeof(hash)) < 0)
		elog(ERROR, "audit_ext: could not finish a SHA-256 digest");
	pg_cryptohash_free(ctx);
	hex_encode((const char *) hash, sizeof(hash), hex);
	hex[64] = '\0';

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "bytes";
	k.val.string.len = 5;
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(bytes);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	k.val.string.val = "sha256";
	k.val.string.len = 6;
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = hex;
	v.val.string.len = 64;
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

static void
push_jsonb_value(JsonbParseState **state, Datum jb)
{
	Jsonb	   *j = DatumGetJsonbP(jb);
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * digests: when not NULL, the digests already computed for this slot
 * (UPDATE compares them), by attribute; (Datum) 0 where none.
 */
static void
push_column(JsonbParseState **state, AuditRelCache *rc, int i,
			TupleTableSlot *slot, const Datum *digests)
{
	JsonbValue	v;

	audit_json_push_key(state, &rc->cols[i]);
	if (rc->mode[i] == COL_DIGEST && !slot->tts_isnull[i])
	{
		push_jsonb_value(state, digests && digests[i] ? digests[i] :
						 digest_jsonb(slot->tts_values[i], rc->cols[i].basetypid));
		return;
	}
	if (rc->mode[i] == COL_MASKED)
	{
		v.type = jbvString;
		v.val.string.val = AUDIT_MASK_MARKER;
		v.val.string.len = strlen(AUDIT_MASK_MARKER);
		(void) pushJsonbValue(state, WJB_VALUE, &v);
	}
	else
		audit_json_push_value(state, &rc->cols[i], slot->tts_values[i],
							  slot->tts_isnull[i]);
}

/* All audited columns, or only those flagged in "only". */
static Datum
row_to_jsonb_digests(AuditRelCache *rc, TupleTableSlot *slot, const bool *only,
					 const Datum *digests)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < rc->natts; i++)
	{
		if (rc->mode[i] == COL_EXCLUDED || (only && !only[i]))
			continue;
		push_column(&state, rc, i, slot, digests);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

static Datum
row_to_jsonb(AuditRelCache *rc, TupleTableSlot *slot, const bool *only)
{
	return row_to_jsonb_digests(rc, slot, only, NULL);
}

static Datum
record_id_jsonb(AuditRelCache *rc, TupleTableSlot *slot)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	if (rc->nkeys == 0)
		return row_to_jsonb(rc, slot, NULL);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int k = 0; k < rc->nkeys; k++)
	{
		int			i = rc->keys[k] - 1;

		audit_json_push_key(&state, &rc->cols[i]);
		audit_json_push_value(&state, &rc->cols[i], slot->tts_values[i],
							  slot->tts_isnull[i]);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* {"new_record_id": key}, the detail of an UPDATE that changed the key */
static Datum
key_change_detail(Datum key)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;

	k.type = jbvString;
	k.val.string.val = "new_record_id";
	k.val.string.len = strlen("new_record_id");
	v.type = jbvBinary;
	v.val.binary.data = &DatumGetJsonbP(key)->root;
	v.val.binary.len = VARSIZE(DatumGetJsonbP(key)) - VARHDRSZ;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* Binary equality first; detoast only when representations differ. */
static bool
values_equal(Datum a, Datum b, Form_pg_attribute att)
{
	if (datumIsEqual(a, b, att->attbyval, att->attlen))
		return true;
	if (att->attlen == -1 &&
		(VARATT_IS_EXTENDED(DatumGetPointer(a)) ||
		 VARATT_IS_EXTENDED(DatumGetPointer(b))))
	{
		struct varlena *da = detoast_attr((struct varlena *) DatumGetPointer(a));
		struct varlena *db = detoast_attr((struct varlena *) DatumGetPointer(b));

		return VARSIZE_ANY_EXHDR(da) == VARSIZE_ANY_EXHDR(db) &&
			memcmp(VARDATA_ANY(da), VARDATA_ANY(db), VARSIZE_ANY_EXHDR(da)) == 0;
	}
	return false;
}

static void
check_actor(Relation rel)
{
	if (audit_require_actor &&
		(audit_actor == NULL || audit_actor[0] == '\0' || !audit_actor_from_session()))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("audit_ext.actor must be set to change audited table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("audit_ext.require_actor is on, so every change must be attributed to an application user; "
						   "an actor set by ALTER ROLE/DATABASE ... SET is a default, not a person."),
				 errhint("Run SET LOCAL audit_ext.actor = '<user>' in the transaction first.")));
}

static void
check_trigger_call(FunctionCallInfo fcinfo, const char *fname, bool row_level)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s must be called as a trigger", fname),
				 errhint("Use audit.enable() to audit a table.")));
	td = (TriggerData *) fcinfo->context;
	/* capture => 'wal': BEFORE ... FOR EACH STATEMENT, see audit_trigger_is_wal() */
	if (audit_trigger_is_wal(td->tg_trigger) &&
		TRIGGER_FIRED_BEFORE(td->tg_event) && !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) ||
		(row_level && !TRIGGER_FIRED_FOR_ROW(td->tg_event)) ||
		(!row_level && !TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s must be fired %s", fname,
						row_level ? "AFTER ... FOR EACH ROW" : "AFTER TRUNCATE"),
				 errhint("Use audit.enable() to install the audit triggers.")));
}

/* ----------------------------------------------------------------
 * Trigger functions
 * ----------------------------------------------------------------
 */

/* Name the table, add who, when and where, and queue the event. */
/*
 * The risk level of a data event of the table: computed once per table and
 * action, again only after the rules changed (risk.c); no lookup per event.
 */
static Datum
data_event_risk(AuditRelCache *rc, const char *action)
{
	static const char *const actions[] = {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "BASELINE"};
	int			a;

	for (a = 0; a < (int) lengthof(actions); a++)
		if (strcmp(actions[a], action) == 0)
			break;
	if (a == (int) lengthof(actions))
		a = 0;
	if (rc->risk_gen != audit_risk_generation())
	{
		memset(rc->risk, 0, sizeof(rc->risk));
		rc->risk_gen = audit_risk_generation();
	}
	if (rc->risk[a] == 0)
	{
		char	   *schema = TextDatumGetCString(rc->schema_name);
		char	   *table = TextDatumGetCString(rc->table_name);

		rc->risk[a] = audit_risk_of("data", actions[a], false, schema, table, NULL,
									rc->sensitivity);
		pfree(schema);
		pfree(table);
	}
	return audit_risk_datum(rc->risk[a]);
}

static void
queue_data_event(AuditEventValues *ev, Datum schema_name, Datum table_name,
				 int64 identity, AuditRelCache *rc, const char *action, int floor)
{
	if (rc != NULL)
	{
		ev->values[AC_RISK] = data_event_risk(rc, action);
		ev->nulls[AC_RISK] = false;
	}
	if (identity != 0)
	{
		ev->values[AC_TABLE_IDENTITY] = Int64GetDatum(identity);
		ev->nulls[AC_TABLE_IDENTITY] = false;
	}
	ev->values[AC_SCHEMA_NAME] = schema_name;
	ev->nulls[AC_SCHEMA_NAME] = false;
	ev->values[AC_TABLE_NAME] = table_name;
	ev->nulls[AC_TABLE_NAME] = false;
	audit_event_fill_context(ev, AUDIT_CTX_FOR_WRITE);
	if (rc == NULL)
		audit_event_set_risk(ev, floor);
	audit_event_emit(ev);
}
Datum
audit_capture_row(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	AuditRelCache *rc;
	AuditEventValues ev;
	MemoryContext old;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	const char *action;
	Datum		record_id;

	check_trigger_call(fcinfo, "audit.capture_row", true);
	td = (TriggerData *) fcinfo->context;
	check_actor(td->tg_relation);
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		/* WAL mode: the statement's context, once, for the decoder */
		audit_wal_log_context();
		return PointerGetDatum(NULL);
	}

	rc = get_rel_cache(td->tg_relation, td->tg_trigger);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		newslot = td->tg_trigslot;
		action = "INSERT";
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		oldslot = td->tg_trigslot;
		newslot = td->tg_newslot;
		action = "UPDATE";
	}
	else
	{
		oldslot = td->tg_trigslot;
		action = "DELETE";
	}
	if (oldslot)
		slot_getallattrs(oldslot);
	if (newslot)
		slot_getallattrs(newslot);

	old = MemoryContextSwitchTo(RowContext);

	audit_event_init(&ev, "data", action);

	if (oldslot && newslot)
	{
		/* UPDATE: only the columns whose value changed */
		bool	   *changed = palloc0(sizeof(bool) * rc->natts);
		Datum	   *names = palloc(sizeof(Datum) * rc->natts);
		Datum	   *old_digests = NULL;
		Datum	   *new_digests = NULL;
		int			nchanged = 0;
		TupleDesc	desc = RelationGetDescr(td->tg_relation);

		for (int i = 0; i < rc->natts; i++)
		{
			bool		on = oldslot->tts_isnull[i];
			bool		nn = newslot->tts_isnull[i];

			if (rc->mode[i] == COL_EXCLUDED)
				continue;
			if (on && nn)
				continue;
			if (!on && !nn &&
				datumIsEqual(oldslot->tts_values[i], newslot->tts_values[i],
							 TupleDescAttr(desc, i)->attbyval, TupleDescAttr(desc, i)->attlen))
				continue;
			if (!on && !nn && rc->mode[i] == COL_DIGEST)
			{
				/* a digest column changed when its digest did */
				if (old_digests == NULL)
				{
					old_digests = palloc0(sizeof(Datum) * rc->natts);
					new_digests = palloc0(sizeof(Datum) * rc->natts);
				}
				old_digests[i] = digest_jsonb(oldslot->tts_values[i], rc->cols[i].basetypid);
				new_digests[i] = digest_jsonb(newslot->tts_values[i], rc->cols[i].basetypid);
				if (compareJsonbContainers(&DatumGetJsonbP(old_digests[i])->root,
										   &DatumGetJsonbP(new_digests[i])->root) == 0)
					continue;
			}
			else if (!on && !nn &&
					 values_equal(oldslot->tts_values[i], newslot->tts_values[i],
								  TupleDescAttr(desc, i)))
				continue;
			changed[i] = true;
			names[nchanged++] = CStringGetTextDatum(rc->cols[i].name);
		}
		if (nchanged == 0 && !audit_log_unchanged_updates)
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(RowContext);
			return PointerGetDatum(NULL);
		}
		ev.values[AC_OLD_DATA] = row_to_jsonb_digests(rc, oldslot, changed, old_digests);
		ev.nulls[AC_OLD_DATA] = false;
		ev.values[AC_NEW_DATA] = row_to_jsonb_digests(rc, newslot, changed, new_digests);
		ev.nulls[AC_NEW_DATA] = false;
		ev.values[AC_CHANGED_COLUMNS] =
			PointerGetDatum(construct_array(names, nchanged, TEXTOID, -1, false, TYPALIGN_INT));
		ev.nulls[AC_CHANGED_COLUMNS] = false;
		record_id = record_id_jsonb(rc, oldslot);

		/*
		 * A key change: the new key goes into detail ("new_record_id"), which
		 * a small partial index of each partition holds, so a history can
		 * find the event that gave a record its key without reading the
		 * table's UPDATEs (audit.key_moved_to()).
		 */
		for (int k = 0; k < rc->nkeys; k++)
		{
			if (!changed[rc->keys[k] - 1])
				continue;
			ev.values[AC_DETAIL] = key_change_detail(record_id_jsonb(rc, newslot));
			ev.nulls[AC_DETAIL] = false;
			break;
		}
	}
	else if (newslot)
	{
		ev.values[AC_NEW_DATA] = row_to_jsonb(rc, newslot, NULL);
		ev.nulls[AC_NEW_DATA] = false;
		record_id = rc->nkeys == 0 ? ev.values[AC_NEW_DATA] : record_id_jsonb(rc, newslot);
	}
	else
	{
		ev.values[AC_OLD_DATA] = row_to_jsonb(rc, oldslot, NULL);
		ev.nulls[AC_OLD_DATA] = false;
		record_id = rc->nkeys == 0 ? ev.values[AC_OLD_DATA] : record_id_jsonb(rc, oldslot);
	}

	ev.values[AC_RECORD_ID] = record_id;
	ev.nulls[AC_RECORD_ID] = false;
	queue_data_event(&ev, rc->schema_name, rc->table_name, rc->identity, rc, action, 0);

	MemoryContextSwitchTo(old);
	MemoryContextReset(RowContext);
	return PointerGetDatum(NULL);
}

Datum
audit_capture_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	AuditEventValues ev;
	MemoryContext old;
	Relation	rel;
	AuditRelCache *rc;

	check_trigger_call(fcinfo, "audit.capture_truncate", false);
	td = (TriggerData *) fcinfo->context;
	rel = td->tg_relation;
	check_actor(rel);
	if (TRIGGER_FIRED_BEFORE(td->tg_event))
	{
		/* WAL mode: the TRUNCATE itself is decoded from the WAL */
		audit_wal_log_context();
		return PointerGetDatum(NULL);
	}

	/* make sure the per-backend contexts exist */
	rc = get_rel_cache(rel, td->tg_trigger);

	old = MemoryContextSwitchTo(RowContext);
	audit_event_init(&ev, "data", "TRUNCATE");
	queue_data_event(&ev,
					 CStringGetTextDatum(get_namespace_name(RelationGetNamespace(rel))),
					 CStringGetTextDatum(RelationGetRelationName(rel)),
					 /* a partition's TRUNCATE belongs to its audited table */
					 rel->rd_rel->relispartition ?
					 audit_table_identity(audit_audited_root(RelationGetRelid(rel))) :
					 rc->identity,
					 /* risk from the rules at emit, at least the row trigger's sensitivity */
					 NULL, "TRUNCATE", audit_trigger_sensitivity(audit_row_trigger(rel)));
	MemoryContextSwitchTo(old);
	MemoryContextReset(RowContext);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * WAL mode (wal_capture.c)
 * ----------------------------------------------------------------
 */

/*
 * capture => 'wal': the table's audit triggers carry the flag "wal" in
 * their third argument and fire BEFORE ... FOR EACH STATEMENT (they write
 * the statement's context for the decoder); the rows come from the WAL.
 */
bool
audit_trigger_is_wal(Trigger *tg)
{
	return tg != NULL && tg->tgnargs >= 3 && audit_trigger_flags_are_wal(tg->tgargs[2], tg->tgtype);
}

/*
 * The rule, for any reader of a trigger (the relcache's above, pg_trigger's
 * in ddl_capture.c): its flags argument names "wal", and it is a statement
 * trigger.
 */
bool
audit_trigger_flags_are_wal(const char *flags, int16 tgtype)
{
	return flags != NULL && strstr(flags, "wal") != NULL && !TRIGGER_FOR_ROW(tgtype);
}

/* Does the slot hold every key column (a key-only old tuple may lack them)? */
static bool
key_present(AuditRelCache *rc, TupleTableSlot *slot)
{
	if (rc->nkeys == 0)
		return false;
	for (int k = 0; k < rc->nkeys; k++)
		if (slot->tts_isnull[rc->keys[k] - 1])
			return false;
	return true;
}

/*
 * The bytes of a decoded row's values that would go into its JSON (not the
 * excluded, masked or digest columns), without detoasting: the size a
 * value has uncompressed.
 */
static int64
decoded_row_bytes(AuditRelCache *rc, TupleTableSlot *slot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	int64		n = 0;

	for (int i = 0; i < rc->natts && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (slot->tts_isnull[i] || rc->mode[i] != COL_NORMAL)
			continue;
		if (att->attlen == -1)
			n += toast_raw_datum_size(slot->tts_values[i]);
		else if (att->attlen == -2)
			n += strlen(DatumGetCString(slot->tts_values[i]));
		else
			n += att->attlen;
	}
	return n;
}

/*
 * One decoded change of a table audited in WAL mode, turned into the
 * columns of its event exactly as the row trigger would (same cache, same
 * exclude and mask, same canonical values).  Called by the output plugin
 * under the historic snapshot of the change: rel and tg are the table and
 * its audit trigger as they were then (a column added later is not there
 * yet).  oldtup is NULL for INSERT, newtup for DELETE; an UPDATE without an
 * old tuple (replica identity no longer FULL) records the new row whole.
 * old_is_key: oldtup holds only the replica identity's key columns (the
 * table's replica identity was not FULL at the change), the others NULL:
 * never recorded as the old row (it would claim the row held NULLs), only
 * its key as the record id.  A DELETE with neither (replica identity
 * NOTHING, or DEFAULT without a key) has no values at all, but is still an
 * event: the caller records that the old row is not in the WAL.
 * Returns false for an UPDATE that changed nothing (unless log_unchanged).
 * The datums are allocated in CurrentMemoryContext's row context: the
 * caller copies them.
 */
bool
audit_capture_decoded(Relation rel, Trigger *tg, HeapTuple oldtup,
					  HeapTuple newtup, bool old_is_key, bool log_unchanged,
					  AuditDecodedRow *out)
{
	AuditRelCache *rc = get_rel_cache(rel, tg);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	Oid			save_userid;
	int			save_sec;
	int64		nold;
	int64		nnew;
	bool		record = true;

	memset(out, 0, sizeof(*out));
	out->schema_name = rc->schema_name;
	out->table_name = rc->table_name;
	/*
	 * Output functions of the table's types are its owner's code: run as
	 * the owner, security-restricted (as the baseline does).
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (oldtup)
	{
		oldslot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(oldtup, oldslot, false);
		slot_getallattrs(oldslot);
	}
	if (newtup)
	{
		newslot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(newtup, newslot, false);
		slot_getallattrs(newslot);
	}
	/*
	 * A row whose values are too large for the trail (jsonb holds at most
	 * 256 MB; a value of bytea, numbers or booleans grows in JSON): in
	 * trigger mode the writer's statement fails on it, here it was written
	 * long ago, and failing on it would stop the decoder on the same change
	 * after every restart (any role that may INSERT could stop capture of
	 * the database: 1.6 security review).  Recorded without its values.
	 */
	nold = oldslot && !old_is_key ? decoded_row_bytes(rc, oldslot) : 0;
	nnew = newslot ? decoded_row_bytes(rc, newslot) : 0;
	if (nold > AUDIT_DECODED_ROW_MAX || nnew > AUDIT_DECODED_ROW_MAX)
	{
		TupleTableSlot *keyslot = oldslot ? oldslot : newslot;

		out->too_large = Max(nold, nnew);
		if (key_present(rc, keyslot))
			out->record_id = record_id_jsonb(rc, keyslot);
	}
	else if (oldslot && newslot && !old_is_key)
	{
		bool	   *changed = palloc0(sizeof(bool) * rc->natts);
		Datum	   *names = palloc(sizeof(Datum) * rc->natts);
		int			nchanged = 0;

		for (int i = 0; i < rc->natts && i < desc->natts; i++)
		{
			bool		on = oldslot->tts_isnull[i];
			bool		nn = newslot->tts_isnull[i];

			if (rc->mode[i] == COL_EXCLUDED)
				continue;
			if (on && nn)
				continue;
			/* a toasted value the UPDATE did not touch is not in the WAL */
			if (!nn && TupleDescAttr(desc, i)->attlen == -1 &&
				VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(newslot->tts_values[i])))
				continue;
			if (!on && !nn &&
				values_equal(oldslot->tts_values[i], newslot->tts_values[i],
							 TupleDescAttr(desc, i)))
				continue;
			changed[i] = true;
			names[nchanged++] = CStringGetTextDatum(rc->cols[i].name);
		}
		if (nchanged == 0 && !log_unchanged)
			record = false;
		else
		{
			out->old_data = row_to_jsonb(rc, oldslot, changed);
			out->new_data = row_to_jsonb(rc, newslot, changed);
			out->changed_columns =
				PointerGetDatum(construct_array(names, nchanged, TEXTOID, -1, false, TYPALIGN_INT));
			out->record_id = record_id_jsonb(rc, oldslot);
		}
	}
	else if (newslot)
	{
		out->new_data = row_to_jsonb(rc, newslot, NULL);
		/* an UPDATE that changed the key: the record is the one of the old key */
		if (oldslot && key_present(rc, oldslot))
			out->record_id = record_id_jsonb(rc, oldslot);
		else
			out->record_id = rc->nkeys == 0 ? out->new_data : record_id_jsonb(rc, newslot);
	}
	else if (oldslot && old_is_key)
	{
		if (key_present(rc, oldslot))
			out->record_id = record_id_jsonb(rc, oldslot);
	}
	else if (oldslot)
	{
		out->old_data = row_to_jsonb(rc, oldslot, NULL);
		out->record_id = rc->nkeys == 0 ? out->old_data : record_id_jsonb(rc, oldslot);
	}
	SetUserIdAndSecContext(save_userid, save_sec);
	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);
	return record;
}

/* The names a decoded TRUNCATE is recorded under (historic catalog). */
void
audit_capture_decoded_names(Relation rel, Trigger *tg, Datum *schema_name,
							Datum *table_name)
{
	AuditRelCache *rc = get_rel_cache(rel, tg);

	*schema_name = rc->schema_name;
	*table_name = rc->table_name;
}

/* ----------------------------------------------------------------
 * SQL-callable helpers
 * ----------------------------------------------------------------
 */

/* audit.trigger_arguments(tgargs bytea) -> text[] */
Datum
audit_trigger_arguments(PG_FUNCTION_ARGS)
{
	bytea	   *args = PG_GETARG_BYTEA_PP(0);
	char	   *p = VARDATA_ANY(args);
	int			len = VARSIZE_ANY_EXHDR(args);
	ArrayBuildState *astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	int			start = 0;

	for (int i = 0; i < len; i++)
	{
		if (p[i] == '\0')
		{
			astate = accumArrayResult(astate,
									  PointerGetDatum(cstring_to_text_with_len(p + start, i - start)),
									  false, TEXTOID, CurrentMemoryContext);
			start = i + 1;
		}
	}
	if (start < len)
		astate = accumArrayResult(astate,
								  PointerGetDatum(cstring_to_text_with_len(p + start, len - start)),
								  false, TEXTOID, CurrentMemoryContext);
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

/*
 * audit.record_baseline(tbl regclass) -> bigint: one data/BASELINE event
 * per row of the table (each leaf partition of a partitioned one), with the
 * row as new_data, so that every row has a history from the day auditing
 * began.  Called by audit.enable(baseline => true) after the triggers
 * exist: CREATE TRIGGER holds a lock that keeps writers out until the
 * transaction ends, and the scan uses the latest snapshot, so every row is
 * either in the baseline or changed later by a captured statement.  Events
 * go through the writer's buffer, flushed in batches; a NOTICE reports
 * progress every 100,000 rows.
 */
Datum
audit_record_baseline(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *rels;
	ListCell   *lc;
	int64		n = 0;
	Oid			save_userid;
	int			save_sec;
	int			nest;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	rels = find_all_inheritors(relid, AccessShareLock, NULL);
	/*
	 * audit.enable() runs as the extension's owner, but turning a row into
	 * JSON may run the table owner's code (a cast to json of its own enum
	 * type, say): each row is converted as the table's owner,
	 * security-restricted, with search_path pinned (src/elevated.c), as
	 * audit.eval_as_table_owner() does.  The events are emitted with our
	 * own identity, so they name who enabled auditing.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	nest = audit_pin_search_path();
	foreach(lc, rels)
	{
		Relation	rel = table_open(lfirst_oid(lc), NoLock);
		Trigger    *trig;
		AuditRelCache *rc;
		Snapshot	snap;
		TableScanDesc scan;
		TupleTableSlot *slot;

		if (rel->rd_rel->relkind != RELKIND_RELATION ||
			(trig = audit_row_trigger(rel)) == NULL)
		{
			table_close(rel, NoLock);
			continue;
		}
		rc = get_rel_cache(rel, trig);
		snap = RegisterSnapshot(GetLatestSnapshot());
		scan = table_beginscan(rel, snap, 0, NULL);
		slot = table_slot_create(rel, NULL);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			AuditEventValues ev;
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			slot_getallattrs(slot);
			old = MemoryContextSwitchTo(RowContext);
			audit_event_init(&ev, "data", "BASELINE");
			SetUserIdAndSecContext(rel->rd_rel->relowner,
								   save_sec | SECURITY_LOCAL_USERID_CHANGE |
								   SECURITY_RESTRICTED_OPERATION);
			ev.values[AC_NEW_DATA] = row_to_jsonb(rc, slot, NULL);
			ev.nulls[AC_NEW_DATA] = false;
			ev.values[AC_RECORD_ID] = rc->nkeys == 0 ? ev.values[AC_NEW_DATA] :
				record_id_jsonb(rc, slot);
			ev.nulls[AC_RECORD_ID] = false;
			/* an error above unwinds the user with the transaction */
			SetUserIdAndSecContext(save_userid, save_sec);
			queue_data_event(&ev, rc->schema_name, rc->table_name, rc->identity, rc, "BASELINE", 0);
			MemoryContextSwitchTo(old);
			MemoryContextReset(RowContext);
			if (++n % 100000 == 0)
				ereport(NOTICE,
						(errmsg("baseline of %s: " INT64_FORMAT " rows recorded so far",
								get_rel_name(relid), n)));
		}
		ExecDropSingleTupleTableSlot(slot);
		table_endscan(scan);
		UnregisterSnapshot(snap);
		table_close(rel, NoLock);
	}
	audit_unpin_search_path(nest);
	PG_RETURN_INT64(n);
}
