/*-------------------------------------------------------------------------
 *
 * queue.c
 *		A bounded queue of security events in shared memory.
 *
 * Producers are hooks that run where no transaction (and often no database
 * connection) exists: client authentication, the log hook, process exit.
 * They copy a fixed-size record into a ring buffer under a named LWLock and
 * set the worker's latch; the background worker (worker.c) drains the ring
 * into audit.event.  Enqueueing never blocks on I/O and never raises an
 * error: when the ring is full the event is counted as dropped, and the
 * worker writes one system/QUEUE_OVERFLOW event saying how many.
 *
 * A flood must not push out what matters (issue 18: 300,000 refused
 * SELECTs in a DO loop dropped 16 of 40 concurrent failed logins):
 *  - the bulk classes (data: refused statements; read: read auditing) may
 *    fill the ring only up to AUDIT_QUEUE_BULK_SHARE, application events
 *    that survive a rollback (app, 1.6) up to AUDIT_QUEUE_APP_SHARE; the rest
 *    is kept for auth, privilege, ddl and system events.  Any login role
 *    can refuse itself statements at will, so refusals must not crowd out
 *    an application's failed logins; the application's end users can fail
 *    logins at will too, so those must not crowd out the database's;
 *  - a backend coalesces a run of identical bulk events (not app events:
 *    alert thresholds count them one by one): the first is
 *    queued, the repeats are counted and queued as one event with
 *    "repeated": n when the run ends (another event, a second later, or the
 *    backend's exit);
 *  - a backend queues at most audit_ext.bulk_events_burst bulk events,
 *    refilled at audit_ext.bulk_events_per_second (a token bucket); beyond
 *    that they are dropped and counted;
 *  - drops are counted per class and the worker's QUEUE_OVERFLOW event says
 *    how many of each.
 *
 * The memory is requested with shmem_request_hook and set up in
 * shmem_startup_hook (PostgreSQL 15 idiom, as pg_stat_statements), so it
 * exists only when the library is in shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "audit_ext.h"

#define AUDIT_LWLOCK_TRANCHE "audit_ext"

int			audit_queue_size = 10000;

#define AUDIT_QUEUE_NCLASSES	8
#define AUDIT_QUEUE_BULK_SHARE	0.6
#define AUDIT_QUEUE_APP_SHARE	0.8
int			audit_bulk_events_burst = 2000;
int			audit_bulk_events_per_second = 500;
#define AUDIT_QUEUE_RUN_MS		1000

static const char *const queue_classes[AUDIT_QUEUE_NCLASSES] =
{"data", "auth", "privilege", "ddl", "read", "system", "app", "other"};

typedef struct AuditQueueShared
{
	LWLock	   *lock;
	int			size;			/* capacity in entries */
	int			head;			/* next entry to read */
	int			count;			/* entries queued */
	uint64		enqueued;
	uint64		written;
	uint64		dropped;
	uint64		dropped_reported;	/* drops already written as QUEUE_OVERFLOW */
	uint64		dropped_class[AUDIT_QUEUE_NCLASSES];
	uint64		reported_class[AUDIT_QUEUE_NCLASSES];
	char		last_error[256];
	TimestampTz last_error_time;
	int			worker_pid;
	Latch	   *worker_latch;
	/* bumped by audit.prune() when it deletes statement texts (statement_store.c) */
	pg_atomic_uint64 statement_generation;
	AuditQueueEntry entries[FLEXIBLE_ARRAY_MEMBER];
} AuditQueueShared;

static AuditQueueShared *queue = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
queue_shmem_size(void)
{
	return add_size(offsetof(AuditQueueShared, entries),
					mul_size(audit_queue_size, sizeof(AuditQueueEntry)));
}

static void
audit_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(queue_shmem_size());
	RequestNamedLWLockTranche(AUDIT_LWLOCK_TRANCHE, 1);
}

static void
audit_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("audit_ext queue", queue_shmem_size(), &found);
	if (!found)
	{
		memset(queue, 0, offsetof(AuditQueueShared, entries));
		queue->lock = &(GetNamedLWLockTranche(AUDIT_LWLOCK_TRANCHE))->lock;
		queue->size = audit_queue_size;
		pg_atomic_init_u64(&queue->statement_generation, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
audit_queue_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = audit_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = audit_shmem_startup;
}

bool
audit_queue_available(void)
{
	return queue != NULL;
}

/*
 * The generation of stored statement texts (0 without shared memory):
 * audit.prune() bumps it while it holds the lock that keeps every backend
 * from using a statement id, before it deletes texts (statement_store.c).
 */
uint64
audit_statement_generation(void)
{
	return queue ? pg_atomic_read_u64(&queue->statement_generation) : 0;
}

void
audit_statement_generation_bump(void)
{
	if (queue)
		(void) pg_atomic_fetch_add_u64(&queue->statement_generation, 1);
}

static int
class_index(const char *class_name)
{
	for (int i = 0; i < AUDIT_QUEUE_NCLASSES - 1; i++)
		if (strcmp(class_name, queue_classes[i]) == 0)
			return i;
	return AUDIT_QUEUE_NCLASSES - 1;
}

/*
 * Bulk classes: refused statements (data), reads, and application events
 * (app: the application's end users can make failed logins at will).
 */
static bool
is_bulk(const char *class_name)
{
	return strcmp(class_name, "data") == 0 || strcmp(class_name, "read") == 0 ||
		strcmp(class_name, "app") == 0;
}

/*
 * Application events are never coalesced: five failed logins are five
 * events (alert thresholds count them), whatever their payload.
 */
static bool
coalesces(const char *class_name)
{
	return strcmp(class_name, "app") != 0;
}

/* Count a drop of an event of this class (no lock held). */
static void
count_drop(const char *class_name, uint64 n)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->dropped += n;
	queue->dropped_class[class_index(class_name)] += n;
	LWLockRelease(queue->lock);
}

/* Append one entry; bulk classes and app only below their shares of the ring. */
static bool
enqueue_entry(const AuditQueueEntry *entry)
{
	Latch	   *latch = NULL;
	bool		ok = false;
	int			limit = queue->size;

	if (strcmp(entry->class_name, "app") == 0)
		limit = Max(1, (int) (queue->size * AUDIT_QUEUE_APP_SHARE));
	else if (is_bulk(entry->class_name))
		limit = Max(1, (int) (queue->size * AUDIT_QUEUE_BULK_SHARE));
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->count < limit)
	{
		int			slot = (queue->head + queue->count) % queue->size;

		memcpy(&queue->entries[slot], entry, sizeof(AuditQueueEntry));
		queue->count++;
		queue->enqueued++;
		ok = true;
	}
	else
	{
		queue->dropped++;
		queue->dropped_class[class_index(entry->class_name)]++;
	}
	latch = queue->worker_latch;
	LWLockRelease(queue->lock);

	if (latch)
		SetLatch(latch);
	return ok;
}

/* This backend's run of identical bulk events, and its token bucket. */
static AuditQueueEntry run_entry;
static TimestampTz run_start = 0;
static TimestampTz run_last = 0;
static uint64 run_repeats = 0;
static bool run_active = false;
static double bucket = -1;		/* -1: full, set at first use */
static TimestampTz bucket_time = 0;
static bool exit_registered = false;

static bool
same_event(const AuditQueueEntry *a, const AuditQueueEntry *b)
{
	return strcmp(a->class_name, b->class_name) == 0 &&
		strcmp(a->action, b->action) == 0 &&
		a->failure == b->failure &&
		strcmp(a->user_name, b->user_name) == 0 &&
		strcmp(a->session_user_name, b->session_user_name) == 0 &&
		strcmp(a->database_name, b->database_name) == 0 &&
		strcmp(a->schema_name, b->schema_name) == 0 &&
		strcmp(a->table_name, b->table_name) == 0 &&
		strcmp(a->actor, b->actor) == 0 &&
		strcmp(a->detail, b->detail) == 0 &&
		strcmp(a->statement, b->statement) == 0;
}

/* Queue the summary of the current run's repeats, if any. */
static void
flush_run(void)
{
	AuditQueueEntry e;
	size_t		len;

	if (!run_active)
		return;
	run_active = false;
	if (run_repeats == 0)
		return;
	memcpy(&e, &run_entry, sizeof(e));
	e.event_time = run_last;
	len = strlen(e.detail);
	if (len >= 2 && e.detail[len - 1] == '}')
		snprintf(e.detail + len - 1, sizeof(e.detail) - (len - 1),
				 "%s\"repeated\": " UINT64_FORMAT "}", len > 2 ? ", " : "", run_repeats);
	else
		snprintf(e.detail, sizeof(e.detail), "{\"repeated\": " UINT64_FORMAT "}", run_repeats);
	run_repeats = 0;
	(void) enqueue_entry(&e);
}

static void
flush_run_at_exit(int code, Datum arg)
{
	if (queue != NULL && MyProc != NULL && !LWLockHeldByMe(queue->lock))
		flush_run();
}

/*
 * Append one event.  Never blocks for long, never errors: returns false
 * (and counts a drop) when the queue is full, the event is beyond the
 * backend's rate, or the queue is unusable; true when it was queued or
 * coalesced into a run.
 */
bool
audit_queue_enqueue(const AuditQueueEntry *entry)
{
	TimestampTz now;

	if (queue == NULL || MyProc == NULL)
		return false;
	/* an error inside our own critical section must not deadlock us */
	if (LWLockHeldByMe(queue->lock))
		return false;
	if (!is_bulk(entry->class_name))
		return enqueue_entry(entry);

	if (!exit_registered)
	{
		before_shmem_exit(flush_run_at_exit, (Datum) 0);
		exit_registered = true;
	}
	now = GetCurrentTimestamp();
	if (run_active && coalesces(entry->class_name) && same_event(entry, &run_entry) &&
		!TimestampDifferenceExceeds(run_start, now, AUDIT_QUEUE_RUN_MS))
	{
		run_repeats++;
		run_last = entry->event_time;
		return true;
	}
	flush_run();

	/* the token bucket */
	if (bucket < 0)
		bucket = audit_bulk_events_burst;
	if (bucket_time != 0)
		bucket = Min((double) audit_bulk_events_burst,
					 bucket + (double) (now - bucket_time) / 1000000.0 * audit_bulk_events_per_second);
	bucket_time = now;
	if (bucket < 1.0)
	{
		count_drop(entry->class_name, 1);
		return false;
	}
	bucket -= 1.0;

	if (!coalesces(entry->class_name))
		return enqueue_entry(entry);
	memcpy(&run_entry, entry, sizeof(run_entry));
	run_start = now;
	run_last = entry->event_time;
	run_repeats = 0;
	run_active = true;
	return enqueue_entry(entry);
}

/*
 * Copy up to max entries from the head without removing them (the worker
 * is the only consumer; it consumes them once they are committed).
 */
int
audit_queue_peek(AuditQueueEntry *out, int max)
{
	int			n;

	if (queue == NULL)
		return 0;
	LWLockAcquire(queue->lock, LW_SHARED);
	n = Min(max, queue->count);
	for (int i = 0; i < n; i++)
		memcpy(&out[i], &queue->entries[(queue->head + i) % queue->size],
			   sizeof(AuditQueueEntry));
	LWLockRelease(queue->lock);
	return n;
}

/* Remove n entries from the head: written, or given up on (dropped). */
void
audit_queue_consume(int n, bool written)
{
	if (queue == NULL || n <= 0)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	n = Min(n, queue->count);
	queue->head = (queue->head + n) % queue->size;
	queue->count -= n;
	if (written)
		queue->written += n;
	else
		queue->dropped += n;
	LWLockRelease(queue->lock);
}

void
audit_queue_set_worker(int pid, Latch *latch)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_pid = pid;
	queue->worker_latch = latch;
	LWLockRelease(queue->lock);
}

void
audit_queue_set_error(const char *message)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	audit_strlcpy_utf8(queue->last_error, message ? message : "",
					   sizeof(queue->last_error));
	queue->last_error_time = GetCurrentTimestamp();
	LWLockRelease(queue->lock);
}

/*
 * Drops not yet reported, in all and per class (by_class has
 * audit_queue_nclasses() entries); marks them reported.
 */
uint64
audit_queue_take_unreported_drops(uint64 *by_class)
{
	uint64		n = 0;

	memset(by_class, 0, sizeof(uint64) * AUDIT_QUEUE_NCLASSES);
	if (queue == NULL)
		return 0;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->dropped > queue->dropped_reported)
	{
		n = queue->dropped - queue->dropped_reported;
		queue->dropped_reported = queue->dropped;
	}
	for (int i = 0; i < AUDIT_QUEUE_NCLASSES; i++)
	{
		by_class[i] = queue->dropped_class[i] - queue->reported_class[i];
		queue->reported_class[i] = queue->dropped_class[i];
	}
	LWLockRelease(queue->lock);
	return n;
}

/* The QUEUE_OVERFLOW event for these drops was not written: report them again. */
void
audit_queue_return_drops(uint64 n, const uint64 *by_class)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->dropped_reported -= Min(n, queue->dropped_reported);
	for (int i = 0; i < AUDIT_QUEUE_NCLASSES; i++)
		queue->reported_class[i] -= Min(by_class[i], queue->reported_class[i]);
	LWLockRelease(queue->lock);
}

int
audit_queue_nclasses(void)
{
	return AUDIT_QUEUE_NCLASSES;
}

const char *
audit_queue_class_name(int i)
{
	return queue_classes[i];
}

void
audit_queue_get_stats(AuditQueueStats *stats)
{
	memset(stats, 0, sizeof(*stats));
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_SHARED);
	stats->available = true;
	stats->size = queue->size;
	stats->depth = queue->count;
	stats->enqueued = queue->enqueued;
	stats->written = queue->written;
	stats->dropped = queue->dropped;
	memcpy(stats->last_error, queue->last_error, sizeof(stats->last_error));
	stats->last_error_time = queue->last_error_time;
	stats->worker_pid = queue->worker_pid;
	LWLockRelease(queue->lock);
}

/* ----------------------------------------------------------------
 * Text helpers usable without palloc (log hook, exit callbacks)
 * ----------------------------------------------------------------
 */
static int
utf8_seq_len(unsigned char c)
{
	if (c >= 0xF0 && c <= 0xF7)
		return 4;
	if (c >= 0xE0)
		return c <= 0xEF ? 3 : 1;
	if (c >= 0xC0)
		return 2;
	return 1;
}

/* strlcpy that never cuts a UTF-8 character in two. */
void
audit_strlcpy_utf8(char *dst, const char *src, size_t size)
{
	size_t		n = 0;

	if (size == 0)
		return;
	while (src[n] != '\0')
	{
		int			l = utf8_seq_len((unsigned char) src[n]);

		if (n + l > size - 1)
			break;
		n += l;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * Escape s as the inside of a JSON string into dst, writing at most avail
 * bytes; never splits an escape or a UTF-8 character.  Returns bytes
 * written (not NUL-terminated).
 */
static size_t
json_escape_into(char *dst, size_t avail, const char *s)
{
	size_t		out = 0;

	while (*s)
	{
		unsigned char c = (unsigned char) *s;
		char		esc[8];
		int			elen;
		int			l;

		switch (c)
		{
			case '"':
				strcpy(esc, "\\\"");
				break;
			case '\\':
				strcpy(esc, "\\\\");
				break;
			case '\n':
				strcpy(esc, "\\n");
				break;
			case '\r':
				strcpy(esc, "\\r");
				break;
			case '\t':
				strcpy(esc, "\\t");
				break;
			default:
				if (c < 0x20)
					snprintf(esc, sizeof(esc), "\\u%04x", c);
				else
					esc[0] = '\0';
		}
		elen = strlen(esc);
		if (elen > 0)
		{
			if (out + elen > avail)
				break;
			memcpy(dst + out, esc, elen);
			out += elen;
			s++;
			continue;
		}
		l = utf8_seq_len(c);
		/* a broken sequence: copy the lead byte alone, never a quote with it */
		for (int i = 1; i < l; i++)
			if (((unsigned char) s[i] & 0xC0) != 0x80)
			{
				l = i;
				break;
			}
		if (out + l > avail)
			break;
		memcpy(dst + out, s, l);
		out += l;
		s += l;
	}
	return out;
}

/*
 * Build a JSON object {"k1": v1, ...} into dst (size bytes).  raw[i]: the
 * value is a JSON number written as is; else a string, escaped and cut so
 * that the whole object fits.
 */
void
audit_json_object(char *dst, size_t size, int npairs,
				  const char *const *keys, const char *const *values,
				  const bool *raw)
{
	size_t		len = 0;
	size_t		rest = 2;		/* "}" and NUL */

	/*
	 * What each pair needs besides its string value: ", " "key" ": " and the
	 * value's quotes (or the raw value).  Strings are cut, never keys.
	 */
#define PAIR_NEED(i) (strlen(keys[i]) + 8 + (raw[i] ? strlen(values[i]) : 0))

	for (int i = 0; i < npairs; i++)
		rest += PAIR_NEED(i);
	if (1 + rest > size)
	{
		if (size >= 3)
			strcpy(dst, "{}");
		else if (size > 0)
			dst[0] = '\0';
		return;
	}

	dst[len++] = '{';
	for (int i = 0; i < npairs; i++)
	{
		size_t		l;

		rest -= PAIR_NEED(i);	/* now: what the later pairs and the end need */
		if (i > 0)
		{
			dst[len++] = ',';
			dst[len++] = ' ';
		}
		dst[len++] = '"';
		l = strlen(keys[i]);
		memcpy(dst + len, keys[i], l);
		len += l;
		dst[len++] = '"';
		dst[len++] = ':';
		dst[len++] = ' ';
		if (raw[i])
		{
			l = strlen(values[i]);
			memcpy(dst + len, values[i], l);
			len += l;
		}
		else
		{
			/* room left minus the two quotes and what comes later */
			size_t		budget = size - len - rest - 2;

			dst[len++] = '"';
			len += json_escape_into(dst + len, budget, values[i] ? values[i] : "");
			dst[len++] = '"';
		}
	}
	dst[len++] = '}';
	dst[len] = '\0';
	Assert(len < size);
#undef PAIR_NEED
}

/* ----------------------------------------------------------------
 * audit.worker_status()
 * ----------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(audit_worker_status);

Datum
audit_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AuditQueueStats st;
	Datum		values[8];
	bool		nulls[8];

	InitMaterializedSRF(fcinfo, 0);
	audit_queue_get_stats(&st);
	memset(nulls, 0, sizeof(nulls));

	if (!st.available)
	{
		/* not preloaded: no queue, no worker */
		for (int i = 0; i < 8; i++)
			nulls[i] = true;
		values[2] = values[3] = values[4] = Int64GetDatum(0);
		nulls[2] = nulls[3] = nulls[4] = false;
	}
	else
	{
		values[0] = Int32GetDatum(st.size);
		values[1] = Int32GetDatum(st.depth);
		values[2] = Int64GetDatum((int64) st.enqueued);
		values[3] = Int64GetDatum((int64) st.written);
		values[4] = Int64GetDatum((int64) st.dropped);
		if (st.last_error_time != 0)
		{
			values[5] = CStringGetTextDatum(st.last_error);
			values[6] = TimestampTzGetDatum(st.last_error_time);
		}
		else
			nulls[5] = nulls[6] = true;
		if (st.worker_pid != 0)
			values[7] = Int32GetDatum(st.worker_pid);
		else
			nulls[7] = true;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
