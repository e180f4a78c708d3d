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
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUDIT_EXT_H
#define AUDIT_EXT_H

#include "postgres.h"

#include "access/htup.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* GUCs (audit_ext.c) */
extern char *audit_actor;
extern bool audit_require_actor;
extern bool audit_log_unchanged_updates;
extern bool audit_log_statement_text;
extern int	audit_max_statement_length;
extern int	audit_export_threshold;
extern int	audit_statement_literals;

#define AUDIT_LITERALS_REDACT	0
#define AUDIT_LITERALS_KEEP		1

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
	AC_NUM_COLUMNS
} AuditColumn;

typedef struct AuditEventValues
{
	Datum		values[AC_NUM_COLUMNS];
	bool		nulls[AC_NUM_COLUMNS];
} AuditEventValues;

/* event_writer.c */
extern void audit_event_init(AuditEventValues *ev, const char *class_name,
							 const char *action);
extern void audit_event_fill_context(AuditEventValues *ev, bool for_write);
extern void audit_event_emit(AuditEventValues *ev);
extern void audit_flush_events(void);
extern void audit_writer_finish(void);
extern void audit_writer_xact_callback(int event);
extern void audit_writer_subxact_abort(SubTransactionId subid);
extern void audit_writer_invalidate(Oid relid);
extern Oid	audit_event_relid(bool missing_ok);

/* statement_store.c */
extern void audit_current_statement(Datum *statement_id, bool *id_null,
									int32 *statement_seq);
extern void audit_statement_xact_end(bool abort, bool top_level);

/* capture.c */
extern void audit_capture_invalidate(Oid relid);
extern void audit_capture_xact_end(void);
extern bool audit_has_own_trigger(Oid relid);

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
	AJC_TO_JSONB				/* PostgreSQL's to_jsonb (arrays, composites) */
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
} AuditColumnInfo;

extern void audit_json_column_init(AuditColumnInfo *col, Oid typid,
								   const char *name, MemoryContext mcxt);
extern void audit_json_push_value(JsonbParseState **state, AuditColumnInfo *col,
								  Datum value, bool isnull);
extern void audit_json_push_key(JsonbParseState **state, AuditColumnInfo *col);

#define AUDIT_MASK_MARKER "[masked]"

#endif							/* AUDIT_EXT_H */
