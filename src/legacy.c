/*-------------------------------------------------------------------------
 *
 * legacy.c
 *	  C functions that only the SQL of older bis versions names.
 *
 * An installation is upgraded from the version it was created at through
 * every later script, and `CREATE EXTENSION bis VERSION '0.1'` must still
 * work for that (the upgrade test does it): each C function those scripts
 * create must exist in the library.  bis._check_columns is called by the 0.1
 * script itself and still checks; the others are replaced by the 0.6 script
 * and only say so if an old installation calls them before it is updated.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "utils/rel.h"

#include "bis.h"

static void
superseded(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("function %s belongs to an older version of bis", name),
			 errhint("Update the extension with ALTER EXTENSION bis UPDATE.")));
}

/* bis._check_columns(tbl, sku_column, quantity_column, locale_column, external_id_column), 0.1 to 0.5 */
PG_FUNCTION_INFO_V1(bis__check_columns);

Datum
bis__check_columns(PG_FUNCTION_ARGS)
{
	char	   *names[4];
	TrackedColumns cols;
	Relation	rel;
	char	   *problem;
	int			i;

	for (i = 0; i < 4; i++)
		names[i] = PG_ARGISNULL(i + 1) ? NULL : NameStr(*PG_GETARG_NAME(i + 1));
	rel = relation_open(PG_GETARG_OID(0), AccessShareLock);
	problem = resolve_columns(rel, names, &cols);
	relation_close(rel, AccessShareLock);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg_internal("%s", problem)));
	PG_RETURN_VOID();
}

/* bis._matching(...), 0.2 to 0.5 */
PG_FUNCTION_INFO_V1(bis__matching);

Datum
bis__matching(PG_FUNCTION_ARGS)
{
	superseded("bis._matching");
	PG_RETURN_NULL();
}

/* bis._payload(...), 0.3 to 0.5 */
PG_FUNCTION_INFO_V1(bis__payload);

Datum
bis__payload(PG_FUNCTION_ARGS)
{
	superseded("bis._payload");
	PG_RETURN_NULL();
}

/* bis._message(n bis.notifications, subject text, body text, body_html text), 0.3 to 0.5 */
PG_FUNCTION_INFO_V1(bis__message);

Datum
bis__message(PG_FUNCTION_ARGS)
{
	superseded("bis._message");
	PG_RETURN_NULL();
}
