/*-------------------------------------------------------------------------
 *
 * risk.c
 *		Risk levels (1.6): every event gets low, medium, high or critical
 *		when it is captured.
 *
 * The level of an event is, in this order:
 *	1. the level an application gave (audit.log_event(risk => ...));
 *	2. the most specific rule of audit.risk_rules that matches its class,
 *	   action and table (action and table > table > action > class alone);
 *	3. the built-in default (default_risk() below; the table in
 *	   docs/reading.md, "Risk levels");
 * then raised to the table's sensitivity (audit.enable(sensitivity => ...),
 * a flag of the audit trigger) for data and read events, reads of a
 * sensitive table being at least medium.
 *
 * The rules are read once per backend into memory (a heap scan of
 * audit.risk_rules with the table API: the capturing role needs no
 * privilege on it) and read again only after they changed: a statement
 * trigger on audit.risk_rules (audit.risk_rules_changed()) sends a relcache
 * invalidation of the table, which every backend receives at its next
 * transaction (our own at once), and which bumps the generation number the
 * capture cache compares (capture.c keeps each table's level per action, so
 * a data event costs no lookup at all).  audit.risk_cache_loads() counts the
 * reads, for the tests that prove there is no lookup per event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audit_ext.h"

PG_FUNCTION_INFO_V1(audit_risk_rules_changed);
PG_FUNCTION_INFO_V1(audit_risk_cache_loads);

typedef struct RiskRule
{
	char	   *class_name;
	char	   *action;			/* NULL: any */
	char	   *table_name;		/* NULL: any; "table" or "schema.table" */
	int			level;
} RiskRule;

static const char *const level_names[] = {NULL, "low", "medium", "high", "critical"};

static MemoryContext RiskContext = NULL;
static RiskRule *rules = NULL;
static int	nrules = 0;
static bool rules_valid = false;
static Oid	rules_relid = InvalidOid;
static uint64 generation = 1;
static int64 loads = 0;
static Datum level_datums[5];

int
audit_risk_level(const char *name)
{
	if (name == NULL)
		return 0;
	for (int i = 1; i <= AUDIT_RISK_CRITICAL; i++)
		if (strcmp(level_names[i], name) == 0)
			return i;
	return 0;
}

const char *
audit_risk_name(int level)
{
	return (level >= 1 && level <= AUDIT_RISK_CRITICAL) ? level_names[level] : NULL;
}

/* The level as a text Datum, made once. */
Datum
audit_risk_datum(int level)
{
	Assert(level >= 1 && level <= AUDIT_RISK_CRITICAL);
	if (level_datums[level] == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		level_datums[level] = CStringGetTextDatum(level_names[level]);
		MemoryContextSwitchTo(old);
	}
	return level_datums[level];
}

/*
 * A table's sensitivity: "sensitivity:high" among its audit trigger's flags
 * (third argument, a text[] literal; a clone carries its parent's); 0: none
 * or no trigger.
 */
int
audit_trigger_sensitivity(const Trigger *tg)
{
	const char *p;

	if (tg == NULL || tg->tgnargs < 3 || tg->tgargs[2] == NULL ||
		(p = strstr(tg->tgargs[2], "sensitivity:")) == NULL)
		return 0;
	p += strlen("sensitivity:");
	for (int i = AUDIT_RISK_CRITICAL; i >= 1; i--)
		if (strncmp(p, level_names[i], strlen(level_names[i])) == 0)
			return i;
	return 0;
}

uint64
audit_risk_generation(void)
{
	return generation;
}

/* relcache callback (audit_ext.c): a change of audit.risk_rules, or of everything */
void
audit_risk_invalidate(Oid relid)
{
	if (!OidIsValid(relid) || relid == rules_relid)
	{
		rules_valid = false;
		generation++;
	}
}

static char *
text_attr(HeapTuple tup, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attno, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static void
load_rules(void)
{
	Oid			nsp;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	MemoryContext old;
	int			cap = 16;

	if (RiskContext == NULL)
		RiskContext = AllocSetContextCreate(TopMemoryContext, "audit_ext risk rules",
											ALLOCSET_SMALL_SIZES);
	MemoryContextReset(RiskContext);
	rules = NULL;
	nrules = 0;
	rules_valid = true;
	loads++;

	nsp = get_namespace_oid("audit", true);
	rules_relid = OidIsValid(nsp) ? get_relname_relid("risk_rules", nsp) : InvalidOid;
	if (!OidIsValid(rules_relid))
		return;					/* an installation older than 1.6 */

	old = MemoryContextSwitchTo(RiskContext);
	rules = palloc(sizeof(RiskRule) * cap);
	rel = table_open(rules_relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		char	   *risk;

		if (nrules >= cap)
		{
			cap *= 2;
			rules = repalloc(rules, sizeof(RiskRule) * cap);
		}
		/* class, action, table_name, risk: the table's first four columns */
		rules[nrules].class_name = text_attr(tup, desc, 1);
		rules[nrules].action = text_attr(tup, desc, 2);
		rules[nrules].table_name = text_attr(tup, desc, 3);
		risk = text_attr(tup, desc, 4);
		rules[nrules].level = audit_risk_level(risk);
		if (rules[nrules].class_name != NULL && rules[nrules].level > 0)
			nrules++;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
}

static bool
table_matches(const char *rule_table, const char *schema, const char *table)
{
	size_t		slen;

	if (table == NULL)
		return false;
	if (strcmp(rule_table, table) == 0)
		return true;
	if (schema == NULL)
		return false;
	slen = strlen(schema);
	return strncmp(rule_table, schema, slen) == 0 && rule_table[slen] == '.' &&
		strcmp(rule_table + slen + 1, table) == 0;
}

/* the most specific rule's level; 0 when none matches */
static int
rule_level(const char *class_name, const char *action, const char *schema,
		   const char *table)
{
	int			best = -1;
	int			level = 0;

	if (!rules_valid)
		load_rules();
	for (int i = 0; i < nrules; i++)
	{
		RiskRule   *r = &rules[i];
		int			score;

		if (strcmp(r->class_name, class_name) != 0)
			continue;
		if (r->action != NULL && (action == NULL || strcmp(r->action, action) != 0))
			continue;
		if (r->table_name != NULL && !table_matches(r->table_name, schema, table))
			continue;
		score = (r->table_name ? 2 : 0) + (r->action ? 1 : 0);
		if (score > best)
		{
			best = score;
			level = r->level;
		}
	}
	return level;
}

static bool
detail_flag(Jsonb *detail, const char *key)
{
	JsonbValue *v;

	if (detail == NULL || !JB_ROOT_IS_OBJECT(detail))
		return false;
	v = getKeyJsonValueFromContainer(&detail->root, key, strlen(key), NULL);
	return v != NULL && v->type == jbvBool && v->val.boolean;
}

/*
 * The built-in defaults (docs/reading.md, "Risk levels", lists the same).
 */
static int
default_risk(const char *class_name, const char *action, bool failure,
			 Jsonb *detail)
{
	if (strcmp(class_name, "app") == 0)
		return audit_risk_level(audit_app_default_risk(action));
	if (detail_flag(detail, "audit_protection_off") ||
		detail_flag(detail, "audit_trigger_disabled") ||
		detail_flag(detail, "capture_off"))
		return AUDIT_RISK_CRITICAL;
	if (strcmp(class_name, "data") == 0)
	{
		/* a TRUNCATE empties the table: high, like a DROP TABLE */
		if (strcmp(action, "TRUNCATE") == 0)
			return failure ? AUDIT_RISK_MEDIUM : AUDIT_RISK_HIGH;
		return failure ? AUDIT_RISK_MEDIUM : AUDIT_RISK_LOW;
	}
	if (strcmp(class_name, "read") == 0)
		return failure ? AUDIT_RISK_MEDIUM : AUDIT_RISK_LOW;
	if (strcmp(class_name, "auth") == 0)
		return (failure || strcmp(action, "LOGIN_FAILED") == 0 ||
				strcmp(action, "ACTOR CHANGE") == 0) ? AUDIT_RISK_MEDIUM : AUDIT_RISK_LOW;
	if (strcmp(class_name, "privilege") == 0)
	{
		/*
		 * A role made superuser or given a superuser's membership: the
		 * option is recorded in the detail (at any depth, as the shipped
		 * privilege_escalation alert rule matches it); privilege events are
		 * few, so the text is searched.
		 */
		if (detail_flag(detail, "grants_superuser") ||
			(detail != NULL &&
			 strstr(JsonbToCString(NULL, &detail->root, VARSIZE(detail)), "\"superuser\": true") != NULL))
			return AUDIT_RISK_CRITICAL;
		return failure ? AUDIT_RISK_MEDIUM : AUDIT_RISK_HIGH;
	}
	if (strcmp(class_name, "ddl") == 0)
	{
		if (strcmp(action, "DISABLE AUDIT") == 0 ||
			strcmp(action, "SET session_replication_role") == 0)
			return AUDIT_RISK_CRITICAL;
		if (failure)
			return AUDIT_RISK_MEDIUM;
		if (strcmp(action, "DROP TABLE") == 0 || strcmp(action, "DROP SCHEMA") == 0 ||
			strcmp(action, "DROP DATABASE") == 0 || strcmp(action, "DROP EXTENSION") == 0)
			return AUDIT_RISK_HIGH;
		if (strcmp(action, "ENABLE AUDIT") == 0 || strncmp(action, "DROP ", 5) == 0 ||
			strncmp(action, "ALTER TABLE", 11) == 0)
			return AUDIT_RISK_MEDIUM;
		return AUDIT_RISK_LOW;
	}
	if (strcmp(class_name, "system") == 0)
	{
		if (strcmp(action, "CAPTURE OFF") == 0)
			return AUDIT_RISK_CRITICAL;
		if (strcmp(action, "QUEUE_OVERFLOW") == 0)
			return AUDIT_RISK_HIGH;
		if (strcmp(action, "STATEMENT_TEXT_LIMIT") == 0)
			return AUDIT_RISK_MEDIUM;
		return AUDIT_RISK_LOW;
	}
	return AUDIT_RISK_LOW;
}

/*
 * The level of an event: a rule, else the default; then at least the
 * table's sensitivity for data and read events (floor: a level the
 * producer already knows the event must have at least, 0 none).
 */
int
audit_risk_of(const char *class_name, const char *action, bool failure,
			  const char *schema, const char *table, Jsonb *detail,
			  int sensitivity)
{
	int			level = rule_level(class_name, action, schema, table);

	if (level == 0)
		level = default_risk(class_name, action, failure, detail);
	if (sensitivity > 0)
	{
		if (strcmp(class_name, "read") == 0)
			sensitivity = Max(sensitivity, AUDIT_RISK_MEDIUM);
		level = Max(level, sensitivity);
	}
	return level;
}

/*
 * At emit (event_writer.c): an event that has no level yet gets one from
 * its own columns.  floor: the table's sensitivity carried by a queued
 * event.
 */
void
audit_event_set_risk(AuditEventValues *ev, int floor)
{
	char	   *class_name;
	char	   *action;
	char	   *schema = NULL;
	char	   *table = NULL;
	bool		failure;
	int			level;

	if (!ev->nulls[AC_RISK] || ev->nulls[AC_CLASS] || ev->nulls[AC_ACTION])
		return;
	class_name = TextDatumGetCString(ev->values[AC_CLASS]);
	action = TextDatumGetCString(ev->values[AC_ACTION]);
	failure = !ev->nulls[AC_STATUS] &&
		strcmp(TextDatumGetCString(ev->values[AC_STATUS]), "failure") == 0;
	if (!ev->nulls[AC_SCHEMA_NAME])
		schema = TextDatumGetCString(ev->values[AC_SCHEMA_NAME]);
	if (!ev->nulls[AC_TABLE_NAME])
		table = TextDatumGetCString(ev->values[AC_TABLE_NAME]);
	level = audit_risk_of(class_name, action, failure, schema, table,
						  ev->nulls[AC_DETAIL] ? NULL : DatumGetJsonbP(ev->values[AC_DETAIL]),
						  floor);
	ev->values[AC_RISK] = audit_risk_datum(level);
	ev->nulls[AC_RISK] = false;
}

/*
 * audit.risk_rules_changed(): statement trigger of audit.risk_rules; every
 * backend reads the rules again (at its next transaction).
 */
Datum
audit_risk_rules_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit.risk_rules_changed() must be called as a trigger")));
	td = (TriggerData *) fcinfo->context;
	CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
	return PointerGetDatum(NULL);
}

/* audit.risk_cache_loads(): how often this backend has read the rules */
Datum
audit_risk_cache_loads(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(loads);
}
