/*-------------------------------------------------------------------------
 *
 * audit_ext.h
 *		Declarations shared by the files of audit_ext.
 *
 * src/audit_ext.c      _PG_init, GUCs, hook and callback registration
 * src/capture.c        trigger functions: build one event per changed row
 * src/row_json.c       column values to jsonb
 * src/event_writer.c   per-transaction event buffer, batched writes
 * src/statement_store.c statement texts stored once
 * src/queue.c          shared-memory queue of security events
 * src/worker.c         background worker: queue -> audit.event
 * src/auth_hooks.c     login, failed login and logout events
 * src/ddl_capture.c    privilege and ddl events from utility statements
 * src/denied.c         statements on audited tables refused for lack of privilege
 * src/chain.c          tamper evidence: hash chains over events, checkpoints
 * src/verify.c         audit.verify(): walk the chains
 * src/retention.c      append-only protection, retention GUCs, system events
 * src/archive.c        archive files (gzip JSON lines, SHA-256), read back
 * src/maintenance.c    maintenance launcher and per-database workers
 * src/elevated.c       rules for code run with elevated rights (pinned search_path)
 * src/app_events.c     application events (class app): audit.log_event()
 * src/app_context.c    the application's end-user context: audit.set_context()
 * src/risk.c           risk levels of events: defaults, audit.risk_rules, cache
 * src/wal_capture.c    capture => 'wal': output plugin, context messages, capture worker
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUDIT_EXT_H
#define AUDIT_EXT_H

#include "postgres.h"

#include "access/htup.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/nodes.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/reltrigger.h"

/* GUCs (audit_ext.c) */
extern char *audit_actor;
extern bool audit_require_actor;
extern bool audit_log_unchanged_updates;
extern bool audit_log_statement_text;
extern int	audit_max_statement_length;
extern int	audit_export_threshold;
extern int	audit_statement_literals;
extern bool audit_log_ddl;

/* elevated.c: SPI and GUC state for code that runs with elevated rights */
extern int	audit_pin_search_path(void);
extern void audit_unpin_search_path(int nest);
extern void audit_pin_search_path_for_process(void);
extern int	audit_spi_connect(void);
extern void audit_spi_finish(int nest);

#define AUDIT_LITERALS_REDACT	0
#define AUDIT_LITERALS_KEEP		1

/* audit_ext.flush_fault, testing only (event_writer.c) */
extern int	audit_flush_fault;

#define AUDIT_FLUSH_FAULT_OFF					0
#define AUDIT_FLUSH_FAULT_CANCEL_LEAF_INDEXES	1

/*
 * The columns of audit.event that the capture path fills.  The writer maps
 * them to attribute numbers of the real table by name, so the table may gain
 * columns (or lose dropped ones) without breaking older code paths.
 */
typedef enum AuditColumn
{
	AC_ID = 0,
	AC_EVENT_TIME,
	AC_CLASS,
	AC_ACTION,
	AC_STATUS,
	AC_DB_USER,
	AC_SESSION_USER,
	AC_ACTOR,
	AC_CLIENT_ADDR,
	AC_APPLICATION_NAME,
	AC_BACKEND_PID,
	AC_TXID,
	AC_STATEMENT_ID,
	AC_STATEMENT_SEQ,
	AC_SCHEMA_NAME,
	AC_TABLE_NAME,
	AC_RECORD_ID,
	AC_OLD_DATA,
	AC_NEW_DATA,
	AC_CHANGED_COLUMNS,
	AC_DETAIL,
	/* 1.6: hashed only when one of them is set ("AUD2", chain.c) */
	AC_TABLE_IDENTITY,
	AC_CONTEXT,
	AC_RISK,
	/* filled by the integrity chain (chain.c) from the columns above */
	AC_CHAIN_LANE,
	AC_CHAIN_SEQ,
	AC_HASH,
	/* 1.6: storage only, not hashed: see audit_context_run_continues() */
	AC_CONTEXT_CONTINUES,
	AC_NUM_COLUMNS
} AuditColumn;

/* the columns covered by an event's chain hash: AC_ID .. AC_RISK */
#define AC_CHAIN_FIELDS AC_CHAIN_LANE
/* those of the first serialisation ("AUD1"): AC_ID .. AC_DETAIL */
#define AC_CHAIN_V1_FIELDS AC_TABLE_IDENTITY

typedef struct AuditEventValues
{
	Datum		values[AC_NUM_COLUMNS];
	bool		nulls[AC_NUM_COLUMNS];
} AuditEventValues;

/* archive.c */
extern void audit_write_all(int fd, const char *what, const char *path,
							const char *data, size_t len);

/* capture.c */
extern int64 audit_table_identity(Oid relid);

/* event_writer.c */
extern void audit_event_init(AuditEventValues *ev, const char *class_name,
							 const char *action);
/* flags of audit_event_fill_context */
#define AUDIT_CTX_FOR_WRITE			0x01	/* assign a transaction id */
#define AUDIT_CTX_REDACT_STATEMENT	0x02	/* redact literals whatever the GUC says */

extern void audit_event_fill_context(AuditEventValues *ev, int flags);
extern void audit_event_emit(AuditEventValues *ev);
extern void audit_flush_events(void);
extern void audit_writer_finish(void);
extern void audit_writer_xact_callback(int event);
extern void audit_writer_subxact_abort(SubTransactionId subid);
extern void audit_context_runs_reset(void);
extern void audit_writer_invalidate(Oid relid);
extern Oid	audit_event_relid(bool missing_ok);

/* statement_store.c */
extern void audit_current_statement(Datum *statement_id, bool *id_null,
									int32 *statement_seq, bool force_redact);
extern bool audit_store_statement_text(const char *sql, bool redact,
									   Datum *statement_id);
extern void audit_statement_xact_end(bool abort, bool top_level);

/* capture.c */
extern void audit_capture_invalidate(Oid relid);
extern void audit_capture_xact_end(void);
extern bool audit_has_own_trigger(Oid relid);
extern bool audit_recorded_names(Oid relid, bool clone, char **schema_name,
								 char **table_name, int64 *identity);
extern Trigger *audit_row_trigger(Relation rel);

/* capture.c: capture => 'wal' (wal_capture.c) */
typedef struct AuditDecodedRow
{
	Datum		schema_name;
	Datum		table_name;
	Datum		record_id;		/* (Datum) 0 = NULL */
	Datum		old_data;
	Datum		new_data;
	Datum		changed_columns;
	int64		too_large;		/* > 0: the row's values (bytes) not recorded */
} AuditDecodedRow;

/* a decoded row whose values exceed this is recorded without them */
#define AUDIT_DECODED_ROW_MAX	(32 * 1024 * 1024)

extern bool audit_trigger_is_wal(Trigger *tg);
extern bool audit_trigger_flags_are_wal(const char *flags, int16 tgtype);
extern bool audit_in_wal_worker(void);
extern bool audit_capture_decoded(Relation rel, Trigger *tg, HeapTuple oldtup,
								  HeapTuple newtup, bool old_is_key,
								  bool log_unchanged, AuditDecodedRow *out);
extern void audit_capture_decoded_names(Relation rel, Trigger *tg,
										Datum *schema_name, Datum *table_name);

/* wal_capture.c: capture => 'wal' */
extern int	audit_wal_batch_size;
extern int	audit_wal_naptime;
extern bool audit_wal_capture_pause;
extern char *audit_wal_test_fault;
extern int	audit_wal_capture_nice;
extern void audit_wal_register(void);
extern void audit_wal_log_context(void);
extern void audit_wal_subxact_abort(SubTransactionId subid);
extern PGDLLEXPORT void audit_wal_launcher_main(Datum main_arg);
extern PGDLLEXPORT void audit_wal_worker_main(Datum main_arg);

/* row_json.c */
typedef enum AuditJsonCategory
{
	AJC_BOOL,
	AJC_INT,
	AJC_NUMERIC,
	AJC_FLOAT,
	AJC_TEXT,
	AJC_DATETIME,
	AJC_JSONB,
	AJC_JSON,
	AJC_OUTPUT,					/* output function, stored as a JSON string */
	AJC_TO_JSONB,				/* PostgreSQL's to_jsonb (arrays, composites) */
	AJC_INTERVAL,				/* ISO 8601, whatever IntervalStyle says */
	AJC_BYTEA					/* hex, whatever bytea_output says */
} AuditJsonCategory;

typedef struct AuditColumnInfo
{
	char	   *name;
	int			namelen;
	Oid			typid;			/* declared type */
	Oid			basetypid;		/* domains resolved */
	AuditJsonCategory category;
	FmgrInfo	outfunc;		/* AJC_OUTPUT, AJC_FLOAT, AJC_JSON */
	FmgrInfo	tojsonb;		/* AJC_TO_JSONB */
	bool		fixed_settings; /* convert under canonical TimeZone etc. */
} AuditColumnInfo;

extern void audit_json_column_init(AuditColumnInfo *col, Oid typid,
								   const char *name, MemoryContext mcxt);
extern void audit_json_push_value(JsonbParseState **state, AuditColumnInfo *col,
								  Datum value, bool isnull);
extern void audit_json_push_key(JsonbParseState **state, AuditColumnInfo *col);

#define AUDIT_MASK_MARKER "[masked]"

/* queue.c: a bounded shared-memory queue of security events */
extern int	audit_queue_size;
extern char *audit_worker_database;

#define AUDIT_QUEUE_DETAIL_LEN	1024	/* detail JSON text, NUL included */
#define AUDIT_QUEUE_ADDR_LEN	64
#define AUDIT_QUEUE_STATEMENT_LEN	512	/* statement text, NUL included */
#define AUDIT_QUEUE_CONTEXT_LEN	1025	/* context JSON text, NUL included */

typedef struct AuditQueueEntry
{
	char		class_name[16];
	char		action[32];
	bool		failure;		/* status 'failure' instead of 'success' */
	TimestampTz event_time;
	int32		backend_pid;
	char		user_name[NAMEDATALEN];
	char		database_name[NAMEDATALEN];
	char		client_addr[AUDIT_QUEUE_ADDR_LEN];	/* "" = NULL */
	char		application_name[NAMEDATALEN];	/* "" = NULL */
	char		detail[AUDIT_QUEUE_DETAIL_LEN]; /* JSON object, "" = NULL */
	/* denied statements (denied.c); "" = as user_name / NULL */
	char		session_user_name[NAMEDATALEN];
	char		actor[NAMEDATALEN * 2];
	char		schema_name[NAMEDATALEN];
	char		table_name[NAMEDATALEN];
	int64		table_identity; /* of the audited table; 0 = NULL */
	bool		redact_statement;	/* store statement with literals redacted */
	char		statement[AUDIT_QUEUE_STATEMENT_LEN];	/* "" = NULL */
	/* 1.6: the application's context (app_context.c), "" = NULL */
	char		context[AUDIT_QUEUE_CONTEXT_LEN];
	/* 1.6: at least this risk level (the table's sensitivity), 0 = none */
	int8		risk_floor;
} AuditQueueEntry;

typedef struct AuditQueueStats
{
	bool		available;		/* false: no shared memory (not preloaded) */
	int			size;
	int			depth;
	uint64		enqueued;
	uint64		written;
	uint64		dropped;
	char		last_error[256];
	TimestampTz last_error_time;	/* 0: none */
	int			worker_pid;
} AuditQueueStats;

extern void audit_queue_request_shmem(void);
extern void audit_queue_install_hooks(void);
extern bool audit_queue_available(void);
extern uint64 audit_statement_generation(void);
extern void audit_statement_generation_bump(void);
extern void audit_statement_guard(void);
extern void audit_statement_forget_cache(void);
extern bool audit_queue_enqueue(const AuditQueueEntry *entry);
extern int	audit_queue_peek(AuditQueueEntry *out, int max);
extern void audit_queue_consume(int n, bool written);
extern void audit_queue_set_worker(int pid, Latch *latch);
extern void audit_queue_set_error(const char *message);
#define AUDIT_QUEUE_MAX_CLASSES 8
extern uint64 audit_queue_take_unreported_drops(uint64 *by_class);
extern void audit_queue_return_drops(uint64 n, const uint64 *by_class);
extern int	audit_queue_nclasses(void);
extern const char *audit_queue_class_name(int i);
extern void audit_queue_get_stats(AuditQueueStats *stats);
extern void audit_strlcpy_utf8(char *dst, const char *src, size_t size);

/* row_json.c: fn(arg) in a subtransaction; NULL, or the error it raised */
extern ErrorData *audit_run_in_subxact(void (*fn) (void *arg), void *arg);
extern void audit_json_object(char *dst, size_t size, int npairs,
							  const char *const *keys,
							  const char *const *values,
							  const bool *raw);

/* worker.c */
extern void audit_worker_register(void);
extern PGDLLEXPORT void audit_worker_main(Datum main_arg);

/* auth_hooks.c */
struct Port;
extern void audit_fill_entry_from_port(AuditQueueEntry *e, struct Port *port,
									   const char *class_name,
									   const char *action, bool failure);
extern void audit_fill_entry_from_statement(AuditQueueEntry *e, const char *query);
extern bool audit_fill_entry_for_session(AuditQueueEntry *e, const char *class_name,
										 const char *action, bool failure);
extern void audit_auth_hooks_install(void);
extern void audit_auth_xact_commit(void);

/* ddl_capture.c */
struct PlannedStmt;
extern void audit_ddl_install_hooks(void);
extern void audit_ddl_xact_end(void);
extern void audit_ddl_watch_reset(void);
extern char *audit_ddl_prepare(Node *stmt);
extern void audit_ddl_capture(struct PlannedStmt *pstmt, int context,
							  const char *pre_schema);

/* denied.c */
extern void audit_denied_install_hooks(void);
extern void *audit_denied_prepare_utility(Node *stmt);
extern void audit_denied_report_utility(void *state);

/* app_events.c: application events */
typedef struct AuditAppAction
{
	const char *action;
	const char *risk;			/* default risk */
} AuditAppAction;

extern const AuditAppAction audit_app_actions[];
extern const char *audit_app_default_risk(const char *action);
extern bool audit_valid_risk(const char *risk);
extern void audit_app_event_fill(AuditEventValues *ev, const char *entity,
								 Jsonb *record_id, Jsonb *old_value,
								 Jsonb *new_value, Jsonb *detail);
extern void audit_app_event_unpack(AuditEventValues *ev, const char *entity,
								   const char *packed);

/* app_context.c: the application's end-user context (audit_ext.context) */
extern char *audit_context_text;
extern int	audit_max_context_bytes;
extern char *audit_context_index_keys;
extern bool audit_check_context_index_keys(char **newval, void **extra, GucSource source);
extern void audit_assign_context_index_keys(const char *newval, void *extra);
extern bool audit_context_same_run(Jsonb *a, Jsonb *b);
extern bool audit_check_context(char **newval, void **extra, GucSource source);
extern void audit_assign_context(const char *newval, void *extra);
extern bool audit_current_context_datum(Datum *value);
extern void audit_context_for_queue(char *dst, size_t size);

/* risk.c: risk levels */
#define AUDIT_RISK_LOW		1
#define AUDIT_RISK_MEDIUM	2
#define AUDIT_RISK_HIGH		3
#define AUDIT_RISK_CRITICAL	4
extern int	audit_risk_level(const char *name);
extern const char *audit_risk_name(int level);
extern Datum audit_risk_datum(int level);
extern int	audit_trigger_sensitivity(const Trigger *tg);
extern uint64 audit_risk_generation(void);
extern void audit_risk_invalidate(Oid relid);
extern int	audit_risk_of(const char *class_name, const char *action, bool failure,
						  const char *schema, const char *table, Jsonb *detail,
						  int sensitivity);
extern void audit_event_set_risk(AuditEventValues *ev, int floor);

/* -- integrity chain (chain.c) -- */
extern int	audit_chain_checkpoint_interval;
extern void audit_chain_install_hooks(void);
extern void audit_chain_stamp(AuditEventValues *ev);
extern void audit_chain_before_id(void);
extern void audit_chain_after_id(int64 id);
extern void audit_chain_compute(const uint8 *prev, uint64 lane, int64 seq,
								const Datum *values, const bool *nulls,
								uint8 *out);
extern void audit_chain_subxact_abort(SubTransactionId subid);
extern void audit_chain_xact_end(int how);
extern void audit_chain_maybe_checkpoint(void);

/* -- end of integrity chain -- */

/* -- retention and archive -- */
/* retention.c: append-only protection, GUCs, system events */
extern char *audit_archive_directory;
extern int	audit_maintenance_interval;
extern int	audit_partitions_ahead;
extern int	audit_archive_fault_after_rows;
extern bool audit_protect_trail;
extern void audit_retention_define_gucs(void);
extern void audit_retention_install_hooks(void);
extern bool audit_in_own_function(void);
extern bool audit_in_prune(void);
extern int	audit_statement_texts_burst;
extern int	audit_statement_texts_per_second;
extern int	audit_bulk_events_burst;
extern int	audit_bulk_events_per_second;
extern char *audit_actor_roles;
extern bool audit_actor_from_session(void);
extern void audit_queue_actor_change(const char *from, const char *to);
extern char *audit_secret_setting_names;
extern bool audit_secret_setting(const char *name);
extern bool audit_check_log_ddl(bool *newval, void **extra, GucSource source);
extern void audit_record_weakened_config(void);
extern void audit_check_replication_role(const char *via, bool quiet);
extern void audit_replication_role_set_running(bool running);

/* archive.c: gzip JSON-lines archive files */
extern char *audit_archive_dir(bool create);

/* maintenance.c: launcher and per-database maintenance workers */
extern void audit_maintenance_register(void);
extern bool audit_is_maintenance_worker(void);
extern PGDLLEXPORT void audit_maintenance_launcher_main(Datum main_arg);
extern PGDLLEXPORT void audit_maintenance_db_main(Datum main_arg);

/* -- end of retention and archive -- */

/* -- reports (issue 21) -- */
/* reports.c: audit_ext.report_directory, report files of scheduled reports */
extern char *audit_report_directory;
extern void audit_reports_define_gucs(void);
/* -- end of reports -- */

/* -- alerts and read auditing -- */

/* read_audit.c: read/SELECT and read/COPY events of log_reads tables */
extern void audit_read_install_hooks(void);

/* alerts.c: alert rules evaluated by the worker (worker.c) */
extern int	audit_alert_interval;
extern void audit_alerts_define_gucs(void);
extern bool audit_alerts_evaluate(void);
extern long audit_alerts_nap(long nap);

/* -- end of alerts and read auditing -- */

#endif							/* AUDIT_EXT_H */
