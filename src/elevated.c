/*-------------------------------------------------------------------------
 *
 * elevated.c
 *		The rules every piece of audit_ext that runs with elevated rights
 *		follows, in one place.
 *
 * Our C code runs SQL through SPI as the extension's owner (statement
 * store, column options), inside SECURITY DEFINER functions (verify, chain
 * checkpoints, archives, prune) and in background workers connected as a
 * superuser.  Two rules make that safe (docs/architecture.md, "Threat
 * model"):
 *
 * 1. Names resolve in pg_catalog first.  A query planned under the caller's
 *    search_path resolves "=" (or any operator, function or cast) to
 *    whatever the caller planted first on the path, and runs it with our
 *    rights.  audit_spi_connect() pins search_path to
 *    "pg_catalog, pg_temp" for as long as SPI is connected (a GUC nest
 *    level, as VACUUM and REFRESH do), and the queries themselves name
 *    operators as OPERATOR(pg_catalog.=) where a plan could outlive it.
 *    Workers pin it for the whole process (audit_pin_search_path_for_process).
 *
 * 2. User-defined code never runs with elevated rights.  Populating a
 *    record of an audited table's row type runs the input functions of its
 *    column types and the CHECK constraints of its domains: code of the
 *    table's owner (or of whoever made the type).  audit.eval_as_table_owner()
 *    runs such a query as the table's owner, in a security-restricted
 *    operation with the pinned search_path, exactly as VACUUM and ANALYZE run
 *    index expressions: the owner's code runs with the owner's rights only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"

#include "audit_ext.h"

#define AUDIT_SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * Pin search_path for the current GUC nest level; returns the level to pass
 * to audit_unpin_search_path().  An error unwinds it with the (sub)transaction.
 */
int
audit_pin_search_path(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", AUDIT_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
audit_unpin_search_path(int nest)
{
	AtEOXact_GUC(true, nest);
}

/*
 * A background worker's whole life: no setting of a database or role
 * (ALTER DATABASE/ROLE ... SET search_path) can override it.
 */
void
audit_pin_search_path_for_process(void)
{
	SetConfigOption("search_path", AUDIT_SAFE_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
}

/* SPI_connect with the search_path pinned; returns the nest level. */
int
audit_spi_connect(void)
{
	int			nest = audit_pin_search_path();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return nest;
}

/* SPI_finish, then the caller's search_path again. */
void
audit_spi_finish(int nest)
{
	SPI_finish();
	audit_unpin_search_path(nest);
}

/*
 * audit.eval_as_table_owner(tbl regclass, query text, arg jsonb) -> jsonb
 *
 * Runs query (one parameter, $1 jsonb; its first column of its first row is
 * the result, cast to jsonb by the query) as the owner of tbl, in a
 * security-restricted operation, with search_path pinned.  Internal: only
 * the extension's owner may execute it (the reading functions build the
 * query from identifiers they quoted themselves).  The owner's domains,
 * input functions and partition expressions run with the owner's rights,
 * never with ours.
 */
PG_FUNCTION_INFO_V1(audit_eval_as_table_owner);
Datum
audit_eval_as_table_owner(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Datum		arg = PG_GETARG_DATUM(2);
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	int			nest;
	Datum		result = (Datum) 0;
	bool		isnull = true;
	HeapTuple	tp;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nest = audit_spi_connect();
	{
		Oid			types[1] = {JSONBOID};
		Datum		values[1] = {arg};

		if (SPI_execute_with_args(query, 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "audit_ext: could not evaluate as the owner of relation %u", relid);
		if (SPI_processed > 0)
		{
			if (SPI_tuptable->tupdesc->natts != 1 ||
				SPI_gettypeid(SPI_tuptable->tupdesc, 1) != JSONBOID)
				elog(ERROR, "audit_ext: eval_as_table_owner expects one jsonb column");
			result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				result = SPI_datumTransfer(result, false, -1);
		}
	}
	audit_spi_finish(nest);
	/* an error above unwinds the user and the GUC level with the transaction */
	SetUserIdAndSecContext(save_userid, save_sec);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
