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
	char		last_error[256];
	TimestampTz last_error_time;
	int			worker_pid;
	Latch	   *worker_latch;
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
 * Append one event.  Never blocks for long, never errors: returns false
 * (and counts a drop) when the queue is full or unusable.
 */
bool
audit_queue_enqueue(const AuditQueueEntry *entry)
{
	Latch	   *latch = NULL;
	bool		ok = false;

	if (queue == NULL || MyProc == NULL)
		return false;
	/* an error inside our own critical section must not deadlock us */
	if (LWLockHeldByMe(queue->lock))
		return false;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->count < queue->size)
	{
		int			slot = (queue->head + queue->count) % queue->size;

		memcpy(&queue->entries[slot], entry, sizeof(AuditQueueEntry));
		queue->count++;
		queue->enqueued++;
		ok = true;
	}
	else
		queue->dropped++;
	latch = queue->worker_latch;
	LWLockRelease(queue->lock);

	if (latch)
		SetLatch(latch);
	return ok;
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

/* Drops not yet reported; marks them reported. */
uint64
audit_queue_take_unreported_drops(void)
{
	uint64		n = 0;

	if (queue == NULL)
		return 0;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->dropped > queue->dropped_reported)
	{
		n = queue->dropped - queue->dropped_reported;
		queue->dropped_reported = queue->dropped;
	}
	LWLockRelease(queue->lock);
	return n;
}

/* The QUEUE_OVERFLOW event for n drops was not written: report them again. */
void
audit_queue_return_drops(uint64 n)
{
	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->dropped_reported -= Min(n, queue->dropped_reported);
	LWLockRelease(queue->lock);
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
