/*-------------------------------------------------------------------------
 *
 * chain.c
 *		Tamper evidence: every audit event carries a SHA-256 hash chained to
 *		the previous event of its chain, and audit.verify() walks the chains.
 *
 * One global chain would serialise every audited commit (a transaction's
 * place in the chain is only known once it commits, and a rolled-back
 * transaction must not leave a hole).  Instead the trail is made of many
 * chains ("lanes"), each written by one process at a time: a lane belongs
 * to a PGPROC slot and an event class, so the events of one lane are
 * written by one transaction after another, never concurrently, and need no
 * lock.  A backend that exits leaves the head of its lanes in shared memory
 * for the next process in the same slot, so deleting a whole session's
 * events still breaks the chain of the session that follows.  Lanes are
 * per class because classes are pruned on their own schedules: pruning cuts
 * a prefix off each lane of that class, and audit.chain_anchor remembers
 * the head of what was cut.
 *
 * The hash of an event is SHA-256 over
 *		"AUD1" || previous hash (32 bytes, zeros for the first event of a
 *		lane) || lane || seq || the event's columns, each as a presence byte,
 *		a length and its binary value (the columns up to detail; "AUD2" and
 *		also table_identity, context and risk when one of those is set)
 * computed when the event is emitted (in id order within the lane).  A
 * subtransaction that rolls back restores the lane heads it found; heads
 * are published to shared memory only when the transaction commits, so a
 * rolled-back transaction leaves no trace in any lane.  After a crash,
 * shared memory is new and lanes start afresh (new lane numbers).  A
 * prepared transaction ends its lanes: whether it later commits or not,
 * the next transaction of the slot starts new ones.
 *
 * A lane also belongs to one database (each database has its own store): a
 * slot used by another database starts a new lane there.
 *
 * audit.chain_checkpoint() copies the committed heads of its database into
 * audit.chain_checkpoint and the server log, so that cutting off the tail of
 * a lane (which a chain alone cannot reveal) is noticed too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/*
 * SHA256_Init() and friends are deprecated in OpenSSL 3 in favour of EVP, but
 * EVP allocates and frees a provider context at every EVP_DigestInit_ex()
 * (malloc, cleanse, free for one 400-byte hash per event).  The one-shot
 * SHA256() is no better: in OpenSSL 3 it fetches the algorithm every time.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/sha.h>
#if !defined(OPENSSL_NO_DEPRECATED_3_0) && defined(SHA256_DIGEST_LENGTH)
#define CHAIN_LOW_LEVEL_SHA256 1
#endif

#include "access/htup_details.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bswap.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define CHAIN_HASH_LEN		32
#define CHAIN_NCLASSES		8	/* the seven classes, and any other */

static const char *const chain_class_names[CHAIN_NCLASSES - 1] = {
	"data", "auth", "privilege", "ddl", "read", "system", "app"
};

typedef struct ChainHead
{
	uint64		lane;			/* 0: no lane yet */
	Oid			dboid;			/* the database whose store holds the lane */
	int64		seq;			/* events in the lane so far */
	uint8		hash[CHAIN_HASH_LEN];	/* hash of event number seq */
	int64		last_id;		/* its event id */
} ChainHead;

typedef struct ChainSlot
{
	slock_t		mutex;			/* the owner writes, checkpoints read */
	ChainHead	heads[CHAIN_NCLASSES];
	int64		checkpointed_seq[CHAIN_NCLASSES];

	/*
	 * The lowest event id the slot's running transaction may hold (0: none,
	 * FLOOR_PENDING: it is taking its first id right now), and that
	 * transaction's database.  A checkpoint round uses it to tell which
	 * lanes must already be in shared memory (see audit_chain_checkpoint).
	 */
	int64		floor;
	Oid			floor_db;
} ChainSlot;

#define FLOOR_PENDING	(-1)

/*
 * Heads of lanes that a slot gave up (its next transaction used another
 * database, or prepared a transaction) and that were not yet checkpointed:
 * the worker of the lane's database records them.
 */
#define CHAIN_RETIRED	1024

typedef struct RetiredHead
{
	bool		used;
	bool		in_doubt;		/* the head of a prepared transaction */
	int			k;				/* class index */
	ChainHead	head;
} RetiredHead;

typedef struct ChainShared
{
	pg_atomic_uint64 next_lane;
	pg_atomic_uint64 retired_lost;	/* heads the retired list had no room for */
	TimestampTz epoch;			/* when this shared memory was set up */
	slock_t		retired_mutex;
	RetiredHead retired[CHAIN_RETIRED];
	int			nslots;
	ChainSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} ChainShared;

static ChainShared *chain_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This transaction's view of its lanes. */
static ChainHead local[CHAIN_NCLASSES];
static bool local_loaded[CHAIN_NCLASSES];
static bool any_loaded = false;

/* this transaction published its id floor in its slot (and resolved it) */
static bool floor_published = false;
static bool floor_resolved = false;

/* Without shared memory (not preloaded) the lanes live for the session. */
static ChainHead session_heads[CHAIN_NCLASSES];

/* Lane heads as each subtransaction found them, to undo a rollback. */
typedef struct ChainUndo
{
	SubTransactionId subid;
	ChainHead	heads[CHAIN_NCLASSES];
	bool		loaded[CHAIN_NCLASSES];
} ChainUndo;

static ChainUndo *undo_stack = NULL;
static int	undo_len = 0;
static int	undo_cap = 0;

/*
 * Heads a checkpoint recorded, marked as recorded only when its transaction
 * commits: a failed checkpoint leaves them to the next one.
 */
typedef struct PendingMark
{
	bool		retired;		/* index into retired[], else a slot */
	int			index;
	int			k;
	uint64		lane;
	int64		seq;
} PendingMark;

static PendingMark *pending_marks = NULL;
static int	pending_len = 0;
static int	pending_cap = 0;

static void apply_pending_marks(void);

#ifndef CHAIN_LOW_LEVEL_SHA256
static EVP_MD_CTX *md_ctx = NULL;
static const EVP_MD *md_sha256 = NULL;
#endif

int			audit_chain_checkpoint_interval = 60;

/* ----------------------------------------------------------------
 * Shared memory
 * ----------------------------------------------------------------
 */
static int
chain_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
chain_shmem_size(void)
{
	return add_size(offsetof(ChainShared, slots),
					mul_size(chain_nslots(), sizeof(ChainSlot)));
}

static void
chain_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(chain_shmem_size());
}

static void
chain_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	chain_shared = ShmemInitStruct("audit_ext chain", chain_shmem_size(), &found);
	if (!found)
	{
		uint64		seed = 0;

		memset(chain_shared, 0, chain_shmem_size());
		chain_shared->nslots = chain_nslots();
		SpinLockInit(&chain_shared->retired_mutex);
		for (int i = 0; i < chain_shared->nslots; i++)
			SpinLockInit(&chain_shared->slots[i].mutex);

		/*
		 * Lane numbers of this shared memory start at a random point, so the
		 * lanes of a restarted server never continue the old ones.
		 */
		if (!pg_strong_random(&seed, sizeof(seed)))
			seed = (uint64) GetCurrentTimestamp() << 20;
		seed &= UINT64CONST(0x3FFFFFFFFFFFFFFF);
		pg_atomic_init_u64(&chain_shared->next_lane, seed | 1);
		pg_atomic_init_u64(&chain_shared->retired_lost, 0);
		chain_shared->epoch = GetCurrentTimestamp();
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
audit_chain_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = chain_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = chain_shmem_startup;
}

static ChainSlot *
my_slot(void)
{
	int			procno;

	if (chain_shared == NULL || MyProc == NULL)
		return NULL;
#if PG_VERSION_NUM >= 170000
	procno = MyProcNumber;
#else
	procno = MyProc->pgprocno;
#endif
	if (procno < 0 || procno >= chain_shared->nslots)
		return NULL;
	return &chain_shared->slots[procno];
}

static uint64
new_lane(void)
{
	uint64		lane = 0;

	if (chain_shared != NULL)
		return pg_atomic_fetch_add_u64(&chain_shared->next_lane, 1);
	while (lane == 0)
	{
		if (!pg_strong_random(&lane, sizeof(lane)))
			lane = (uint64) GetCurrentTimestamp() ^ ((uint64) MyProcPid << 40);
		lane &= UINT64CONST(0x3FFFFFFFFFFFFFFF);
	}
	return lane;
}

/* ----------------------------------------------------------------
 * Hashing
 * ----------------------------------------------------------------
 */
static int
class_index(Datum class_datum)
{
	text	   *t = DatumGetTextPP(class_datum);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	for (int i = 0; i < CHAIN_NCLASSES - 1; i++)
		if (strlen(chain_class_names[i]) == len &&
			memcmp(chain_class_names[i], s, len) == 0)
			return i;
	return CHAIN_NCLASSES - 1;
}

/*
 * The serialisation is assembled in one buffer and hashed with a single
 * digest update: cheaper than an update per column.
 */
static char *ser_buf = NULL;
static size_t ser_len = 0;
static size_t ser_cap = 0;

static void
ser_append(const void *data, size_t len)
{
	if (ser_len + len > ser_cap)
	{
		size_t		newcap = Max(ser_cap * 2, ser_len + len + 1024);

		if (ser_buf == NULL)
			ser_buf = MemoryContextAlloc(TopMemoryContext, newcap);
		else
			ser_buf = repalloc_huge(ser_buf, newcap);
		ser_cap = newcap;
	}
	memcpy(ser_buf + ser_len, data, len);
	ser_len += len;
}

static void
ser_uint32(uint32 v)
{
	uint32		be = pg_hton32(v);

	ser_append(&be, 4);
}

static void
ser_uint64(uint64 v)
{
	uint64		be = pg_hton64(v);

	ser_append(&be, 8);
}

/* How each column of the chain's serialisation is encoded. */
typedef enum ChainFieldKind
{
	CF_INT8,
	CF_INT4,
	CF_VARLENA					/* text, jsonb, inet, text[]: the bytes */
} ChainFieldKind;

static const ChainFieldKind chain_field_kinds[AC_CHAIN_FIELDS] = {
	CF_INT8,					/* id */
	CF_INT8,					/* event_time */
	CF_VARLENA,					/* class */
	CF_VARLENA,					/* action */
	CF_VARLENA,					/* status */
	CF_VARLENA,					/* db_user */
	CF_VARLENA,					/* session_user */
	CF_VARLENA,					/* actor */
	CF_VARLENA,					/* client_addr */
	CF_VARLENA,					/* application_name */
	CF_INT4,					/* backend_pid */
	CF_INT8,					/* txid */
	CF_INT8,					/* statement_id */
	CF_INT4,					/* statement_seq */
	CF_VARLENA,					/* schema_name */
	CF_VARLENA,					/* table_name */
	CF_VARLENA,					/* record_id */
	CF_VARLENA,					/* old_data */
	CF_VARLENA,					/* new_data */
	CF_VARLENA,					/* changed_columns */
	CF_VARLENA,					/* detail */
	CF_INT8,					/* table_identity */
	CF_VARLENA,					/* context */
	CF_VARLENA					/* risk */
};

/*
 * hash := SHA-256("AUD1" || prev || lane || seq || fields).  values/nulls
 * are in AuditColumn order (the first AC_CHAIN_FIELDS of them).  With any
 * of the columns added in 1.6 set: "AUD2" and all AC_CHAIN_FIELDS.
 */
void
audit_chain_compute(const uint8 *prev, uint64 lane, int64 seq,
		   const Datum *values, const bool *nulls, uint8 *out)
{
	int			nfields;
#ifndef CHAIN_LOW_LEVEL_SHA256
	unsigned int outlen = 0;

	if (md_ctx == NULL)
	{
		md_ctx = EVP_MD_CTX_new();
		if (md_ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		/* fetched once: EVP_sha256() makes every init fetch it again, under a lock */
		md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
#endif
		if (md_sha256 == NULL)
			md_sha256 = EVP_sha256();
	}
#endif
	/*
	 * Columns added after 1.5 are hashed only when one of them is set, after
	 * a different tag: an event without them hashes as it always did, and
	 * blanking them in an event that had them changes its hash.
	 */
	nfields = AC_CHAIN_V1_FIELDS;
	for (int c = AC_CHAIN_V1_FIELDS; c < AC_CHAIN_FIELDS; c++)
		if (!nulls[c])
			nfields = AC_CHAIN_FIELDS;
	ser_len = 0;
	ser_append(nfields == AC_CHAIN_V1_FIELDS ? "AUD1" : "AUD2", 4);
	ser_append(prev, CHAIN_HASH_LEN);
	ser_uint64(lane);
	ser_uint64((uint64) seq);
	for (int c = 0; c < nfields; c++)
	{
		uint8		present = nulls[c] ? 0 : 1;

		ser_append(&present, 1);
		if (nulls[c])
			continue;
		switch (chain_field_kinds[c])
		{
			case CF_INT8:
				ser_uint64((uint64) DatumGetInt64(values[c]));
				break;
			case CF_INT4:
				ser_uint32((uint32) DatumGetInt32(values[c]));
				break;
			case CF_VARLENA:
				{
					struct varlena *v = PG_DETOAST_DATUM_PACKED(values[c]);

					ser_uint32((uint32) VARSIZE_ANY_EXHDR(v));
					ser_append(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
					if ((Pointer) v != DatumGetPointer(values[c]))
						pfree(v);
				}
				break;
		}
	}
#ifndef CHAIN_LOW_LEVEL_SHA256
	if (EVP_DigestInit_ex(md_ctx, md_sha256, NULL) != 1 ||
		EVP_DigestUpdate(md_ctx, ser_buf, ser_len) != 1 ||
		EVP_DigestFinal_ex(md_ctx, out, &outlen) != 1 || outlen != CHAIN_HASH_LEN)
		elog(ERROR, "audit_ext: SHA-256 computation failed");
#else
	StaticAssertStmt(SHA256_DIGEST_LENGTH == CHAIN_HASH_LEN, "SHA-256 is 32 bytes");
	{
		SHA256_CTX	sha;

		if (SHA256_Init(&sha) != 1 ||
			SHA256_Update(&sha, ser_buf, ser_len) != 1 ||
			SHA256_Final(out, &sha) != 1)
			elog(ERROR, "audit_ext: SHA-256 computation failed");
	}
#endif
	/* do not keep the memory of one huge event for the whole session */
	if (ser_cap > 1024 * 1024)
	{
		pfree(ser_buf);
		ser_buf = NULL;
		ser_cap = 0;
	}
}

/* ----------------------------------------------------------------
 * Stamping events
 * ----------------------------------------------------------------
 */
static void
load_head(int k)
{
	ChainSlot  *slot = my_slot();

	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		local[k] = slot->heads[k];
		SpinLockRelease(&slot->mutex);
	}
	else
		local[k] = session_heads[k];

	/* a lane lives in one database's store */
	if (local[k].lane == 0 || local[k].dboid != MyDatabaseId)
	{
		memset(&local[k], 0, sizeof(ChainHead));
		local[k].lane = new_lane();
		local[k].dboid = MyDatabaseId;
	}
	local_loaded[k] = true;
	any_loaded = true;
}

/* Remember the heads before the first event of a new subtransaction. */
static void
push_undo(SubTransactionId subid)
{
	ChainUndo  *u;

	if (undo_len > 0 && undo_stack[undo_len - 1].subid == subid)
		return;
	if (subid == TopSubTransactionId && undo_len == 0)
		return;					/* top-level abort discards everything anyway */
	if (undo_len >= undo_cap)
	{
		int			newcap = undo_cap == 0 ? 8 : undo_cap * 2;

		if (undo_stack == NULL)
			undo_stack = MemoryContextAlloc(TopMemoryContext, sizeof(ChainUndo) * newcap);
		else
			undo_stack = repalloc(undo_stack, sizeof(ChainUndo) * newcap);
		undo_cap = newcap;
	}
	u = &undo_stack[undo_len++];
	u->subid = subid;
	memcpy(u->heads, local, sizeof(local));
	memcpy(u->loaded, local_loaded, sizeof(local_loaded));
}

/*
 * Called just before an event takes its id: the first time in a transaction,
 * mark the slot as holding a transaction that is about to take ids, so that
 * a checkpoint round cannot conclude that every id below the sequence's value
 * belongs to a finished transaction.  audit_chain_after_id() then replaces
 * the mark by the id itself.  The mark goes at the end of the transaction,
 * together with the publication of its heads.
 */
void
audit_chain_before_id(void)
{
	ChainSlot  *slot;

	if (floor_published)
		return;
	slot = my_slot();
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->floor = FLOOR_PENDING;
	slot->floor_db = MyDatabaseId;
	SpinLockRelease(&slot->mutex);
	floor_published = true;
}

void
audit_chain_after_id(int64 id)
{
	ChainSlot  *slot;

	if (!floor_published || floor_resolved)
		return;					/* once per transaction, not per event */
	slot = my_slot();
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	if (slot->floor == FLOOR_PENDING)
		slot->floor = id;
	SpinLockRelease(&slot->mutex);
	floor_resolved = true;
}

/*
 * Give the event (its id already assigned) its place in its lane and its
 * hash.  Fills values[AC_CHAIN_LANE], [AC_CHAIN_SEQ] and [AC_HASH].
 */
void
audit_chain_stamp(AuditEventValues *ev)
{
	int			k = class_index(ev->values[AC_CLASS]);
	ChainHead  *h;
	bytea	   *hash;

	push_undo(GetCurrentSubTransactionId());
	if (!local_loaded[k])
		load_head(k);
	h = &local[k];

	hash = (bytea *) palloc(VARHDRSZ + CHAIN_HASH_LEN);
	SET_VARSIZE(hash, VARHDRSZ + CHAIN_HASH_LEN);
	audit_chain_compute(h->hash, h->lane, h->seq + 1, ev->values, ev->nulls,
			   (uint8 *) VARDATA(hash));

	h->seq++;
	memcpy(h->hash, VARDATA(hash), CHAIN_HASH_LEN);
	h->last_id = DatumGetInt64(ev->values[AC_ID]);

	ev->values[AC_CHAIN_LANE] = Int64GetDatum((int64) h->lane);
	ev->nulls[AC_CHAIN_LANE] = false;
	ev->values[AC_CHAIN_SEQ] = Int64GetDatum(h->seq);
	ev->nulls[AC_CHAIN_SEQ] = false;
	ev->values[AC_HASH] = PointerGetDatum(hash);
	ev->nulls[AC_HASH] = false;
}

void
audit_chain_subxact_abort(SubTransactionId subid)
{
	int			i;

	for (i = 0; i < undo_len; i++)
		if (undo_stack[i].subid >= subid)
			break;
	if (i == undo_len)
		return;
	memcpy(local, undo_stack[i].heads, sizeof(local));
	memcpy(local_loaded, undo_stack[i].loaded, sizeof(local_loaded));
	undo_len = i;
}

/*
 * Keep a replaced, not yet checkpointed head for the checkpointer.  Called
 * with the slot's mutex held, so that a checkpoint round that scans the slots
 * and then this list sees the head in one place or the other.
 */
static void
retire_head(int k, const ChainHead *head, bool in_doubt)
{
	bool		kept = false;

	SpinLockAcquire(&chain_shared->retired_mutex);
	for (int i = 0; i < CHAIN_RETIRED; i++)
	{
		if (!chain_shared->retired[i].used)
		{
			chain_shared->retired[i].used = true;
			chain_shared->retired[i].in_doubt = in_doubt;
			chain_shared->retired[i].k = k;
			chain_shared->retired[i].head = *head;
			kept = true;
			break;
		}
	}
	SpinLockRelease(&chain_shared->retired_mutex);
	/* full: that lane's tail goes without a checkpoint (counted, not logged
	 * here: no ereport with a spinlock held) */
	if (!kept)
		pg_atomic_fetch_add_u64(&chain_shared->retired_lost, 1);
}

/*
 * The end of the transaction: 0 commit, 1 abort, 2 prepare.  Only a commit
 * moves the lanes on.
 */
void
audit_chain_xact_end(int how)
{
	ChainSlot  *slot = my_slot();

	if (pending_len > 0)
	{
		if (how == 0 && chain_shared != NULL)
			apply_pending_marks();
		pending_len = 0;
	}
	if (slot != NULL && (any_loaded || floor_published))
	{
		SpinLockAcquire(&slot->mutex);
		for (int k = 0; k < CHAIN_NCLASSES && any_loaded && how != 1; k++)
		{
			ChainHead	head;
			ChainHead	old;

			if (!local_loaded[k])
				continue;
			head = local[k];
			old = slot->heads[k];
			if (how == 2)
			{
				/*
				 * Fate unknown: the slot's next transaction starts new lanes,
				 * and the prepared transaction's heads are kept, marked in
				 * doubt, so that the lanes it started are bound to a
				 * checkpoint round whether it commits or not.
				 */
				if (head.seq > 0 && (head.lane != old.lane || head.seq > old.seq))
					retire_head(k, &head, true);
				memset(&head, 0, sizeof(head));
			}
			if (old.lane != head.lane)
			{
				if (old.lane != 0 && old.seq > slot->checkpointed_seq[k])
					retire_head(k, &old, false);
				slot->checkpointed_seq[k] = 0;
			}
			slot->heads[k] = head;
		}
		/* the heads are out: the transaction's ids no longer hold rounds back */
		slot->floor = 0;
		slot->floor_db = InvalidOid;
		SpinLockRelease(&slot->mutex);
	}
	else if (any_loaded && how != 1)
	{
		for (int k = 0; k < CHAIN_NCLASSES; k++)
		{
			if (!local_loaded[k])
				continue;
			session_heads[k] = local[k];
			if (how == 2)
				memset(&session_heads[k], 0, sizeof(ChainHead));
		}
	}
	memset(local_loaded, 0, sizeof(local_loaded));
	any_loaded = false;
	floor_published = false;
	floor_resolved = false;
	undo_len = 0;
}

/* ----------------------------------------------------------------
 * audit.chain_checkpoint()
 * ----------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(audit_chain_checkpoint);

static void
add_pending_mark(bool retired, int index, int k, const ChainHead *head)
{
	PendingMark *m;

	if (pending_len >= pending_cap)
	{
		int			newcap = pending_cap == 0 ? 64 : pending_cap * 2;

		if (pending_marks == NULL)
			pending_marks = MemoryContextAlloc(TopMemoryContext, sizeof(PendingMark) * newcap);
		else
			pending_marks = repalloc(pending_marks, sizeof(PendingMark) * newcap);
		pending_cap = newcap;
	}
	m = &pending_marks[pending_len++];
	m->retired = retired;
	m->index = index;
	m->k = k;
	m->lane = head->lane;
	m->seq = head->seq;
}

/* The checkpoint committed: its heads need not be recorded again. */
static void
apply_pending_marks(void)
{
	for (int i = 0; i < pending_len; i++)
	{
		PendingMark *m = &pending_marks[i];

		if (m->retired)
		{
			RetiredHead *r = &chain_shared->retired[m->index];

			SpinLockAcquire(&chain_shared->retired_mutex);
			if (r->used && r->head.lane == m->lane && r->head.seq == m->seq)
				r->used = false;
			SpinLockRelease(&chain_shared->retired_mutex);
		}
		else
		{
			ChainSlot  *slot = &chain_shared->slots[m->index];

			SpinLockAcquire(&slot->mutex);
			if (slot->heads[m->k].lane == m->lane &&
				slot->checkpointed_seq[m->k] < m->seq)
				slot->checkpointed_seq[m->k] = m->seq;
			SpinLockRelease(&slot->mutex);
		}
	}
	pending_len = 0;
}

static void
record_checkpoint(SPIPlanPtr plan, int k, const ChainHead *head,
				  int64 round, bool in_doubt)
{
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bytea	   *hash;
	char		hex[CHAIN_HASH_LEN * 2 + 1];

	hash = (bytea *) palloc(VARHDRSZ + CHAIN_HASH_LEN);
	SET_VARSIZE(hash, VARHDRSZ + CHAIN_HASH_LEN);
	memcpy(VARDATA(hash), head->hash, CHAIN_HASH_LEN);
	values[0] = CStringGetTextDatum(chain_class_names[k]);
	values[1] = Int64GetDatum((int64) head->lane);
	values[2] = Int64GetDatum(head->seq);
	values[3] = Int64GetDatum(head->last_id);
	values[4] = PointerGetDatum(hash);
	values[5] = Int64GetDatum(round);
	values[6] = BoolGetDatum(in_doubt);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "audit_ext: could not record a chain checkpoint");

	hex[hex_encode((const char *) head->hash, CHAIN_HASH_LEN, hex)] = '\0';
	ereport(LOG,
			(errmsg("audit_ext chain checkpoint: class %s lane " UINT64_FORMAT " seq " INT64_FORMAT " event " INT64_FORMAT " hash %s%s%s",
					chain_class_names[k], head->lane, head->seq,
					head->last_id, hex,
					round > 0 ? psprintf(" round " INT64_FORMAT, round) : "",
					in_doubt ? " in doubt" : ""),
			 errhidestmt(true),
			 errhidecontext(true)));
}

/* One head a checkpoint round found in shared memory. */
typedef struct FoundHead
{
	bool		retired;		/* index is into retired[], else a slot */
	bool		in_doubt;
	int			index;
	int			k;
	ChainHead	head;
} FoundHead;

/* The first row, first column of an SPI query, as int64 (or is_null). */
static int64
spi_int64(const char *sql, bool *is_null)
{
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "audit_ext: query failed: %s", sql);
	if (SPI_processed == 1)
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (is_null)
		*is_null = isnull;
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * A checkpoint round: record the committed head of every lane of this
 * database that moved since the last round, in audit.chain_checkpoint and in
 * the server log, and (since 1.5) the round itself in audit.chain_round.
 *
 * A round also binds lane *starts*.  Its horizon is an event id below which
 * every event belongs to a transaction that had ended when the round looked
 * at shared memory: the sequence's value read first, lowered to the first id
 * of every transaction of this database still running (each publishes it in
 * its slot before taking an id, see audit_chain_before_id).  Every committed
 * lane of such a transaction was in shared memory at that moment, so a lane
 * whose first event lies below the horizon and that no round recorded was not
 * written by audit_ext (audit.verify() reports it), except lanes lost from
 * shared memory by a restart, which the first round of the new shared memory
 * cannot know: verify counts those as unconfirmed.  Rounds are chained by a
 * SHA-256 over their checkpoint rows (audit.chain_round_digest), so a
 * checkpoint row added later belongs to no round.
 *
 * Returns the number of lanes recorded.
 */
Datum
audit_chain_checkpoint(PG_FUNCTION_ARGS)
{
	int			recorded = 0;
	Oid			argtypes[7] = {TEXTOID, INT8OID, INT8OID, INT8OID, BYTEAOID, INT8OID, BOOLOID};
	SPIPlanPtr	plan;
	int			nest;
	bool		has_rounds;
	int64		round = 0;
	int64		prev_horizon = 0;
	bool		prev_horizon_null = true;
	bool		has_prev = false;
	TimestampTz prev_epoch = 0;
	bytea	   *prev_hash = NULL;
	int64		horizon = 0;
	bool		horizon_known = true;
	FoundHead  *found;
	int			nfound = 0;
	int			maxfound;
	static uint64 lost_reported = 0;
	uint64		lost;

	if (chain_shared == NULL)
		PG_RETURN_INT32(0);

	nest = audit_spi_connect();
	has_rounds = spi_int64("SELECT (pg_catalog.to_regclass('audit.chain_round') IS NOT NULL)::pg_catalog.int4::pg_catalog.int8", NULL) == 1;
	if (has_rounds)
	{
		/* one round at a time in a database: they form a chain */
		if (SPI_execute("LOCK TABLE audit.chain_round IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "audit_ext: could not lock audit.chain_round");
		if (SPI_execute("SELECT round_id, horizon, shm_epoch, hash FROM audit.chain_round "
						"ORDER BY round_id DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "audit_ext: could not read audit.chain_round");
		if (SPI_processed == 1)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;

			has_prev = true;
			round = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			d = SPI_getbinval(tup, desc, 2, &prev_horizon_null);
			if (!prev_horizon_null)
				prev_horizon = DatumGetInt64(d);
			prev_epoch = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			d = SPI_getbinval(tup, desc, 4, &isnull);
			prev_hash = (bytea *) PG_DETOAST_DATUM_COPY(d);
		}
		round++;

		/* first the sequence, then the slots: see above */
		horizon = spi_int64("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit.event_id_seq", NULL) + 1;
	}

	maxfound = chain_shared->nslots * (CHAIN_NCLASSES - 1) + CHAIN_RETIRED;
	found = palloc(sizeof(FoundHead) * maxfound);

	for (int i = 0; i < chain_shared->nslots; i++)
	{
		ChainSlot  *slot = &chain_shared->slots[i];
		int			waited = 0;
		int64		floor;
		Oid			floor_db;

		for (;;)
		{
			int			n = nfound;

			SpinLockAcquire(&slot->mutex);
			floor = slot->floor;
			floor_db = slot->floor_db;
			for (int k = 0; k < CHAIN_NCLASSES - 1; k++)
			{
				ChainHead  *head = &slot->heads[k];

				if (head->lane != 0 && head->dboid == MyDatabaseId &&
					head->seq > slot->checkpointed_seq[k])
				{
					found[n].retired = false;
					found[n].in_doubt = false;
					found[n].index = i;
					found[n].k = k;
					found[n].head = *head;
					n++;
				}
			}
			SpinLockRelease(&slot->mutex);
			if (floor == FLOOR_PENDING && floor_db == MyDatabaseId && has_rounds)
			{
				/* a backend is taking its first id right now: a moment */
				if (++waited <= 5000)
				{
					pg_usleep(1000L);
					CHECK_FOR_INTERRUPTS();
					continue;
				}
				horizon_known = false;
			}
			nfound = n;
			break;
		}
		if (floor > 0 && floor_db == MyDatabaseId && floor < horizon)
			horizon = floor;
	}

	/* lanes that slots gave up, after the slots (retire_head's order) */
	for (int i = 0; i < CHAIN_RETIRED; i++)
	{
		RetiredHead r;

		SpinLockAcquire(&chain_shared->retired_mutex);
		r = chain_shared->retired[i];
		SpinLockRelease(&chain_shared->retired_mutex);
		if (r.used && r.head.dboid == MyDatabaseId && nfound < maxfound)
		{
			found[nfound].retired = true;
			found[nfound].in_doubt = r.in_doubt;
			found[nfound].index = i;
			found[nfound].k = r.k;
			found[nfound].head = r.head;
			nfound++;
		}
	}

	lost = pg_atomic_read_u64(&chain_shared->retired_lost);
	if (lost != lost_reported)
	{
		ereport(WARNING,
				(errmsg("audit_ext: " UINT64_FORMAT " chain head(s) found no room in the list kept for checkpoints", lost - lost_reported),
				 errdetail("Backends switched databases or prepared transactions faster than checkpoint rounds recorded their lanes; audit.verify() may report those lanes as never recorded."),
				 errhint("Lower audit_ext.chain_checkpoint_interval.")));
		lost_reported = lost;
	}

	if (has_rounds)
		plan = SPI_prepare("INSERT INTO audit.chain_checkpoint (class, chain_lane, chain_seq, event_id, hash, round_id, in_doubt) "
						   "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING", 7, argtypes);
	else
		plan = SPI_prepare("INSERT INTO audit.chain_checkpoint (class, chain_lane, chain_seq, event_id, hash) "
						   "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", 5, argtypes);
	if (plan == NULL)
		elog(ERROR, "audit_ext: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));

	for (int i = 0; i < nfound; i++)
	{
		record_checkpoint(plan, found[i].k, &found[i].head,
						  has_rounds ? round : 0, found[i].in_doubt);
		add_pending_mark(found[i].retired, found[i].index, found[i].k, &found[i].head);
		recorded++;
	}

	if (has_rounds &&
		(recorded > 0 || !has_prev || prev_epoch != chain_shared->epoch ||
		 (horizon_known && (prev_horizon_null || horizon != prev_horizon))))
	{
		Oid			dtypes[4] = {INT8OID, INT8OID, TIMESTAMPTZOID, BYTEAOID};
		Datum		dvalues[4];
		char		dnulls[4] = {' ', horizon_known ? ' ' : 'n', ' ', ' '};
		Datum		digest;
		bool		isnull;
		char		hex[CHAIN_HASH_LEN * 2 + 1];
		Oid			itypes[6] = {INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID, BYTEAOID, BYTEAOID};
		Datum		ivalues[6];
		char		inulls[6] = {' ', horizon_known ? ' ' : 'n', ' ', ' ', ' ', ' '};

		if (prev_hash == NULL)
		{
			prev_hash = (bytea *) palloc0(VARHDRSZ + CHAIN_HASH_LEN);
			SET_VARSIZE(prev_hash, VARHDRSZ + CHAIN_HASH_LEN);
		}
		dvalues[0] = Int64GetDatum(round);
		dvalues[1] = Int64GetDatum(horizon);
		dvalues[2] = TimestampTzGetDatum(chain_shared->epoch);
		dvalues[3] = PointerGetDatum(prev_hash);
		if (SPI_execute_with_args("SELECT audit.chain_round_digest($1, $2, $3, $4)",
								  4, dtypes, dvalues, dnulls, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "audit_ext: could not compute the digest of a checkpoint round");
		digest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			elog(ERROR, "audit_ext: the digest of a checkpoint round is NULL");
		digest = PointerGetDatum(PG_DETOAST_DATUM_COPY(digest));

		ivalues[0] = Int64GetDatum(round);
		ivalues[1] = Int64GetDatum(horizon);
		ivalues[2] = TimestampTzGetDatum(chain_shared->epoch);
		ivalues[3] = Int32GetDatum(recorded);
		ivalues[4] = PointerGetDatum(prev_hash);
		ivalues[5] = digest;
		if (SPI_execute_with_args("INSERT INTO audit.chain_round (round_id, horizon, shm_epoch, lanes, prev_hash, hash) "
								  "VALUES ($1, $2, $3, $4, $5, $6)",
								  6, itypes, ivalues, inulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "audit_ext: could not record a checkpoint round");

		hex[hex_encode(VARDATA_ANY(DatumGetByteaPP(digest)), CHAIN_HASH_LEN, hex)] = '\0';
		ereport(LOG,
				(errmsg("audit_ext chain round: database %u round " INT64_FORMAT " horizon %s lanes %d hash %s",
						MyDatabaseId, round,
						horizon_known ? psprintf(INT64_FORMAT, horizon) : "unknown",
						recorded, hex),
				 errhidestmt(true),
				 errhidecontext(true)));
	}
	audit_spi_finish(nest);
	PG_RETURN_INT32(recorded);
}

/*
 * Called by the worker between rounds: take a checkpoint once
 * audit_ext.chain_checkpoint_interval has passed.  Opens its own
 * transaction; the worker's error handling covers failures.
 */
void
audit_chain_maybe_checkpoint(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			nest;

	if (audit_chain_checkpoint_interval <= 0 || chain_shared == NULL)
		return;
	if (last != 0 &&
		!TimestampDifferenceExceeds(last, now, audit_chain_checkpoint_interval * 1000))
		return;
	last = now;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	nest = audit_spi_connect();
	/* nothing to do where the extension (or its 1.1 objects) is missing */
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('audit.chain_checkpoint()') IS NOT NULL",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		bool		present = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1, &isnull));

		if (present && SPI_execute("SELECT audit.chain_checkpoint()", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "audit_ext: chain checkpoint failed");
	}
	audit_spi_finish(nest);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

PG_FUNCTION_INFO_V1(audit_event_hash);

/*
 * audit.event_hash(e audit.event, prev_hash bytea): the hash the event would
 * carry after prev_hash -- the chain's definition in one call, for external
 * verifiers and for tests.
 */
Datum
audit_event_hash(PG_FUNCTION_ARGS)
{
	static const char *const names[AC_CHAIN_FIELDS] = {
		"id", "event_time", "class", "action", "status", "db_user",
		"session_user", "actor", "client_addr", "application_name",
		"backend_pid", "txid", "statement_id", "statement_seq", "schema_name",
		"table_name", "record_id", "old_data", "new_data",
		"changed_columns", "detail", "table_identity", "context", "risk"
	};
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	bytea	   *prev = PG_GETARG_BYTEA_PP(1);
	Datum		values[AC_CHAIN_FIELDS];
	bool		nulls[AC_CHAIN_FIELDS];
	bool		lane_null,
				seq_null;
	Datum		lane,
				seq;
	bytea	   *result;

	if (VARSIZE_ANY_EXHDR(prev) != CHAIN_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prev_hash must be %d bytes long", CHAIN_HASH_LEN),
				 errhint("The first event of a chain follows 32 zero bytes.")));
	for (int c = 0; c < AC_CHAIN_FIELDS; c++)
		values[c] = GetAttributeByName(row, names[c], &nulls[c]);
	lane = GetAttributeByName(row, "chain_lane", &lane_null);
	seq = GetAttributeByName(row, "chain_seq", &seq_null);
	if (lane_null || seq_null)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the event has no chain position"),
				 errdetail("chain_lane and chain_seq are NULL: the event was written before version 1.1 or outside audit_ext.")));

	result = (bytea *) palloc(VARHDRSZ + CHAIN_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + CHAIN_HASH_LEN);
	audit_chain_compute((const uint8 *) VARDATA_ANY(prev), (uint64) DatumGetInt64(lane),
						DatumGetInt64(seq), values, nulls, (uint8 *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}
