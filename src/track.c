/*-------------------------------------------------------------------------
 *
 * track.c
 *	  Applications' own inventory tables: tracking them, guarding the
 *	  columns bis reads, and reading their stock.
 *
 * bis.track() runs with the caller's rights up to the point where it has
 * checked that the caller owns the table, then creates the triggers as the
 * extension's owner (the caller may not call bis._stock_trigger() itself).
 * The trigger's four arguments name the columns bis reads, and so do the two
 * of the price trigger, bis._tracked_price_trigger(), where a price column
 * is tracked; the event trigger refuses ALTER TABLE that would break them,
 * for whoever runs it, reading catalogs only.  When a later wave re-reads a tracked table's stock, it
 * reads it as the table's owner, in a restricted security context: planning
 * and reading a table runs its owner's index expressions, predicates and
 * constraints, and those must never run with bis's privileges.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "bis.h"

/* What is wrong with the columns named for a tracked table */
typedef struct ColumnProblem
{
	int			sqlerrcode;
	char	   *message;
	char	   *detail;
	char	   *hint;
} ColumnProblem;

static const Oid text_types[] = {TEXTOID, VARCHAROID, InvalidOid};
static const Oid quantity_types[] = {INT2OID, INT4OID, INT8OID, InvalidOid};
static const Oid price_types[] = {NUMERICOID, INT2OID, INT4OID, INT8OID, InvalidOid};

/* The relation's name as regclass writes it: qualified where not visible */
static char *
relation_name(Oid relid)
{
	return DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));
}

/*
 * The attribute number of the column that plays "role" (sku, quantity,
 * locale, external_id), checked against the types that role allows;
 * InvalidAttrNumber for an absent optional column.  A problem is described
 * in *problem, which is left alone otherwise.
 */
static AttrNumber
find_column(Relation rel, const char *role, const char *colname,
			const Oid *allowed, const char *allowed_names, Oid *type,
			ColumnProblem **problem)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	ColumnProblem *p;
	int			i;

	if (colname == NULL || colname[0] == '\0' || *problem != NULL)
		return InvalidAttrNumber;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Oid			base;
		const Oid  *t;

		if (att->attisdropped || strcmp(NameStr(att->attname), colname) != 0)
			continue;

		base = getBaseType(att->atttypid);
		for (t = allowed; OidIsValid(*t); t++)
		{
			if (*t == base)
			{
				if (type)
					*type = base;
				return att->attnum;
			}
		}
		p = palloc0(sizeof(ColumnProblem));
		p->sqlerrcode = ERRCODE_DATATYPE_MISMATCH;
		p->message = psprintf("column \"%s\" of relation \"%s\" has type %s",
							  colname, RelationGetRelationName(rel),
							  format_type_be(att->atttypid));
		p->detail = psprintf("The %s column of a tracked table must be of type %s.",
							 role, allowed_names);
		*problem = p;
		return InvalidAttrNumber;
	}

	p = palloc0(sizeof(ColumnProblem));
	p->sqlerrcode = ERRCODE_UNDEFINED_COLUMN;
	p->message = psprintf("column \"%s\" of relation \"%s\" does not exist",
						  colname, RelationGetRelationName(rel));
	p->hint = psprintf("Pass the name of the table's %s column to bis.track() as %s_column.",
					   role, role);
	*problem = p;
	return InvalidAttrNumber;
}

/* Where the columns named are, or what is wrong with them */
static ColumnProblem *
find_columns(Relation rel, char **names, TrackedColumns *cols)
{
	ColumnProblem *problem = NULL;

	cols->sku = find_column(rel, "sku", names[0], text_types,
							"text or varchar", NULL, &problem);
	cols->quantity = find_column(rel, "quantity", names[1], quantity_types,
								 "smallint, integer or bigint",
								 &cols->quantity_type, &problem);
	cols->locale = find_column(rel, "locale", names[2], text_types,
							   "text or varchar", NULL, &problem);
	cols->external_id = find_column(rel, "external_id", names[3], text_types,
									"text or varchar", NULL, &problem);
	if (problem == NULL && (cols->sku == InvalidAttrNumber ||
							cols->quantity == InvalidAttrNumber))
	{
		problem = palloc0(sizeof(ColumnProblem));
		problem->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		problem->message = pstrdup("the sku and quantity columns of a tracked table must be named");
	}
	return problem;
}

/* What is wrong with the columns the price trigger's arguments name, or NULL */
static ColumnProblem *
find_price_columns(Relation rel, char **names)
{
	ColumnProblem *problem = NULL;

	(void) find_column(rel, "sku", names[0], text_types, "text or varchar", NULL, &problem);
	(void) find_column(rel, "price", names[1], price_types,
					   "numeric, smallint, integer or bigint", NULL, &problem);
	return problem;
}

/*
 * Fill in where the columns a trigger's arguments name are; NULL, or a
 * sentence that says what is wrong with them.
 */
char *
resolve_columns(Relation rel, char **names, TrackedColumns *cols)
{
	ColumnProblem *problem = find_columns(rel, names, cols);

	return problem ? problem->message : NULL;
}

/*
 * The OID of one of bis's trigger functions, looked up without the USAGE
 * check on schema bis that a lookup by name makes: the event trigger runs
 * for roles that have no right on bis.
 */
static Oid
trigger_function_oid(const char *name, bool missing_ok)
{
	Oid			fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
									 CStringGetDatum(name),
									 PointerGetDatum(buildoidvector(NULL, 0)),
									 ObjectIdGetDatum(get_namespace_oid("bis", false)));

	if (!OidIsValid(fn) && !missing_ok)
		elog(ERROR, "function bis.%s() does not exist", name);
	return fn;
}

static Oid
stock_trigger_oid(void)
{
	return trigger_function_oid("_stock_trigger", false);
}

/* InvalidOid while an update from 0.5 has not made it yet */
static Oid
price_trigger_oid(void)
{
	return trigger_function_oid("_tracked_price_trigger", true);
}

/*
 * The arguments of bis's trigger (of function trigger_fn, with nargs
 * arguments) on rel, or NULL if it has none; *inherited says whether it is a
 * partition's clone of its parent's.
 */
static char **
trigger_columns(Relation rel, Oid trigger_fn, int nargs, bool *inherited)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	int			i;

	if (trigdesc == NULL)
		return NULL;
	for (i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (t->tgfoid == trigger_fn && t->tgnargs == nargs)
		{
			if (inherited)
				*inherited = t->tgisclone;
			return t->tgargs;
		}
	}
	return NULL;
}

/* Whether the relation with this OID has bis's trigger of its own */
static bool
tracked_on_its_own(Oid relid, Oid trigger_fn)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	bool		inherited = false;
	bool		tracked = trigger_columns(rel, trigger_fn, 4, &inherited) != NULL && !inherited;

	relation_close(rel, AccessShareLock);
	return tracked;
}

/*
 * The checks bis.track() and bis.untrack() share: the caller owns the table,
 * it is a table, not bis.stock_levels, and not a partition of a tracked
 * table or a partitioned table with a partition tracked on its own.
 */
static Relation
open_trackable(FunctionCallInfo fcinfo, Oid trigger_fn)
{
	Oid			relid;
	Relation	rel;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null"),
				 errhint("Name the inventory table, such as 'shop.inventory'.")));
	relid = PG_GETARG_OID(0);

	/* the lock CREATE TRIGGER takes */
	rel = try_relation_open(relid, ShareRowExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relation_name(relid)),
				 errdetail("Only tables and partitioned tables can be tracked.")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
	if (strcmp(get_namespace_name(RelationGetNamespace(rel)), "bis") == 0 &&
		strcmp(RelationGetRelationName(rel), "stock_levels") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bis.stock_levels is always tracked"),
				 errdetail("Its levels are set with bis.set_stock and bis.put_stock_levels, which see its crossings.")));

	/* a partition of a tracked table has its parent's triggers already */
	if (rel->rd_rel->relispartition)
	{
		foreach(lc, get_partition_ancestors(relid))
		{
			if (tracked_on_its_own(lfirst_oid(lc), trigger_fn))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("table \"%s\" is tracked through partitioned table \"%s\"",
								relation_name(relid), relation_name(lfirst_oid(lc))),
						 errhint("Track or untrack the partitioned table instead.")));
		}
	}
	/* and one tracked on its own would be restocked twice */
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		foreach(lc, find_all_inheritors(relid, AccessShareLock, NULL))
		{
			Oid			part = lfirst_oid(lc);

			if (part != relid && tracked_on_its_own(part, trigger_fn))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("partition \"%s\" of table \"%s\" is tracked on its own",
								relation_name(part), relation_name(relid)),
						 errhint("Untrack it first with bis.untrack('%s').",
								 relation_name(part))));
		}
	}
	return rel;
}

/*
 * Run DDL on a tracked table as the extension's owner, with a safe
 * search_path: the statements name nothing but the table, its columns and
 * bis's own functions.
 */
static void
run_as_owner(FunctionCallInfo fcinfo, List *statements)
{
	AsRole		as;
	ListCell   *lc;

	begin_as_role(function_owner(fcinfo->flinfo->fn_oid), true, &as);
	/* on Citus, a distributed table's triggers go to its shards too */
	if (bis_is_distributed())
		set_local("citus.enable_unsafe_triggers", "on");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, statements)
	{
		int			ret = SPI_execute((const char *) lfirst(lc), false, 0);

		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);
}

/* DROP TRIGGER for each of bis's own triggers on rel (not its clones) */
static List *
drop_triggers(Relation rel, Oid trigger_fn, const char *qualified)
{
	List	   *statements = NIL;
	int			i;

	if (rel->trigdesc == NULL)
		return NIL;
	for (i = 0; i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *t = &rel->trigdesc->triggers[i];

		if (t->tgfoid == trigger_fn && !t->tgisclone)
			statements = lappend(statements,
								 psprintf("DROP TRIGGER %s ON %s",
										  quote_identifier(t->tgname), qualified));
	}
	return statements;
}

static const char *
argument(const char *name)
{
	return quote_literal_cstr(name ? name : "");
}

/*
 * bis.track(tbl regclass, sku_column name, quantity_column name,
 *			 locale_column name, external_id_column name, price_column name)
 */
PG_FUNCTION_INFO_V1(bis_track);

Datum
bis_track(PG_FUNCTION_ARGS)
{
	Oid			trigger_fn = stock_trigger_oid();
	Oid			price_fn = price_trigger_oid();
	static const char *const arg_names[4] = {"sku_column", "quantity_column",
	"locale_column", "external_id_column"};
	char	   *names[4];
	char	   *price_names[2];
	TrackedColumns cols;
	ColumnProblem *problem;
	Relation	rel;
	char	   *qualified;
	const char *sku;
	const char *quantity;
	const char *args;
	List	   *statements;
	int			i;

	for (i = 0; i < 4; i++)
	{
		names[i] = PG_ARGISNULL(i + 1) ? NULL : NameStr(*PG_GETARG_NAME(i + 1));
		if (i < 2 && names[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", arg_names[i])));
	}

	price_names[0] = names[0];
	price_names[1] = PG_ARGISNULL(5) ? NULL : NameStr(*PG_GETARG_NAME(5));
	if (price_names[1] != NULL && bis_is_distributed())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("price columns are not tracked on a distributed bis"),
				 errdetail("bis's tables are distributed by Citus here, where bis tells of restocks only.")));

	rel = open_trackable(fcinfo, trigger_fn);
	problem = find_columns(rel, names, &cols);
	if (problem == NULL && price_names[1] != NULL)
		problem = find_price_columns(rel, price_names);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(problem->sqlerrcode),
				 errmsg_internal("%s", problem->message),
				 problem->detail ? errdetail_internal("%s", problem->detail) : 0,
				 problem->hint ? errhint("%s", problem->hint) : 0));

	qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   RelationGetRelationName(rel));
	sku = quote_identifier(names[0]);
	quantity = quote_identifier(names[1]);
	args = psprintf("%s, %s, %s, %s", argument(names[0]), argument(names[1]),
					argument(names[2]), argument(names[3]));

	/*
	 * Tracking again replaces the triggers, with the columns given now.  Only
	 * a row whose quantity crossed its threshold queues a trigger event: a
	 * fall is sorted out by the first comparison, a rise by bis._crossing.
	 */
	statements = list_concat(drop_triggers(rel, trigger_fn, qualified),
							 drop_triggers(rel, price_fn, qualified));
	statements = lappend(statements,
						 psprintf("CREATE TRIGGER bis_stock_insert AFTER INSERT ON %s FOR EACH ROW"
								  " WHEN (NEW.%s >= 1 AND bis._crossing(NEW.%s, NULL, NEW.%s))"
								  " EXECUTE FUNCTION bis._stock_trigger(%s)",
								  qualified, quantity, sku, quantity, args));
	statements = lappend(statements,
						 psprintf("CREATE TRIGGER bis_stock_update AFTER UPDATE OF %s ON %s FOR EACH ROW"
								  " WHEN (NEW.%s >= 1 AND (OLD.%s IS NULL OR NEW.%s > OLD.%s)"
								  " AND bis._crossing(NEW.%s, OLD.%s, NEW.%s))"
								  " EXECUTE FUNCTION bis._stock_trigger(%s)",
								  quantity, qualified, quantity, quantity, quantity,
								  quantity, sku, quantity, quantity, args));
	if (price_names[1] != NULL)
	{
		const char *price = quote_identifier(price_names[1]);

		statements = lappend(statements,
							 psprintf("CREATE TRIGGER bis_price_update AFTER UPDATE OF %s ON %s FOR EACH ROW"
									  " WHEN (NEW.%s IS DISTINCT FROM OLD.%s)"
									  " EXECUTE FUNCTION bis._tracked_price_trigger(%s, %s)",
									  price, qualified, price, price,
									  argument(price_names[0]), argument(price_names[1])));
	}
	relation_close(rel, NoLock);
	run_as_owner(fcinfo, statements);
	PG_RETURN_VOID();
}

/*
 * bis.untrack(tbl regclass)
 */
PG_FUNCTION_INFO_V1(bis_untrack);

Datum
bis_untrack(PG_FUNCTION_ARGS)
{
	Oid			trigger_fn = stock_trigger_oid();
	Relation	rel = open_trackable(fcinfo, trigger_fn);
	char	   *qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													   RelationGetRelationName(rel));
	List	   *statements;

	statements = drop_triggers(rel, trigger_fn, qualified);
	if (statements == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not tracked", relation_name(RelationGetRelid(rel))),
				 errhint("The view bis.tracked_tables lists the tracked tables.")));
	statements = list_concat(statements, drop_triggers(rel, price_trigger_oid(), qualified));
	relation_close(rel, NoLock);
	run_as_owner(fcinfo, statements);
	PG_RETURN_VOID();
}

/*
 * bis._trigger_args(tgargs bytea) returns text[]: pg_trigger.tgargs holds a
 * trigger's arguments each ended by a zero byte, in the database's encoding.
 */
PG_FUNCTION_INFO_V1(bis__trigger_args);

Datum
bis__trigger_args(PG_FUNCTION_ARGS)
{
	bytea	   *tgargs = PG_GETARG_BYTEA_PP(0);
	const char *p = VARDATA_ANY(tgargs);
	const char *end = p + VARSIZE_ANY_EXHDR(tgargs);
	ArrayBuildState *astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);

	while (p < end)
	{
		const char *zero = memchr(p, '\0', end - p);
		int			len = (zero ? zero : end) - p;

		astate = accumArrayResult(astate,
								  PointerGetDatum(cstring_to_text_with_len(p, len)),
								  false, TEXTOID, CurrentMemoryContext);
		p += len + 1;
	}
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

/*
 * bis._check_tracked_tables(): event trigger at the end of ALTER TABLE.  It
 * refuses a change that leaves a tracked table's trigger without a column it
 * reads, or with one of a type it cannot read.  It runs as whoever altered
 * the table and reads nothing but catalogs.
 */
PG_FUNCTION_INFO_V1(bis__check_tracked_tables);

Datum
bis__check_tracked_tables(PG_FUNCTION_ARGS)
{
	Oid			trigger_fn;
	Oid			price_fn;
	List	   *relids = NIL;
	ListCell   *lc;
	uint64		i;
	int			ret;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by event trigger manager",
						"bis._check_tracked_tables")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT DISTINCT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c"
					  " WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			relids = lappend_oid(relids, DatumGetObjectId(d));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	if (relids == NIL)
		PG_RETURN_VOID();

	trigger_fn = stock_trigger_oid();
	price_fn = price_trigger_oid();
	foreach(lc, relids)
	{
		Relation	rel = try_relation_open(lfirst_oid(lc), AccessShareLock);
		char	  **names;
		TrackedColumns cols;
		ColumnProblem *problem = NULL;

		if (rel == NULL)
			continue;
		names = trigger_columns(rel, trigger_fn, 4, NULL);
		if (names != NULL)
			problem = find_columns(rel, names, &cols);
		names = trigger_columns(rel, price_fn, 2, NULL);
		if (problem == NULL && names != NULL)
			problem = find_price_columns(rel, names);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot alter a column that bis reads in table \"%s\"",
							relation_name(RelationGetRelid(rel))),
					 errdetail("After this change, %s.", problem->message),
					 errhint("Take the table off with bis.untrack() first, then track it again with the new columns.")));
		relation_close(rel, AccessShareLock);
	}
	PG_RETURN_VOID();
}

/*
 * bis._current_stock(source_table text, sku text, locale text,
 *					  external_id text) returns bigint
 *
 * What the table that restocked holds now for a restock's SKU, locale and
 * external id (those the table tracks), for the next wave.  NULL if the table
 * is gone, no longer tracked, or cannot be read as tracked.  It is read as
 * the table's owner, restricted: see the file's header.
 */
PG_FUNCTION_INFO_V1(bis__current_stock);

Datum
bis__current_stock(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	char	  **names;
	TrackedColumns cols;
	Oid			owner;
	StringInfoData sql;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			nargs = 1;
	AsRole		as;
	Datum		result = (Datum) 0;
	bool		isnull = true;
	int			ret;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	relid = RangeVarGetRelid(makeRangeVarFromNameList(textToQualifiedNameList(PG_GETARG_TEXT_PP(0))),
							 AccessShareLock, true);
	if (!OidIsValid(relid))
		PG_RETURN_NULL();
	rel = relation_open(relid, AccessShareLock);
	names = trigger_columns(rel, stock_trigger_oid(), 4, NULL);
	if (names == NULL || find_columns(rel, names, &cols) != NULL)
	{
		relation_close(rel, AccessShareLock);
		PG_RETURN_NULL();
	}
	owner = rel->rd_rel->relowner;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT least(pg_catalog.sum(%s)::pg_catalog.numeric, 9223372036854775807)::pg_catalog.int8"
					 "  FROM %s WHERE %s::pg_catalog.text OPERATOR(pg_catalog.=) $1",
					 quote_identifier(names[1]),
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 quote_identifier(names[0]));
	values[0] = PG_GETARG_DATUM(1);
	if (cols.locale != InvalidAttrNumber)
	{
		/* the restock's locale is canonical: compare as canonical forms are */
		appendStringInfo(&sql,
						 " AND pg_catalog.lower(pg_catalog.replace(%s::pg_catalog.text, '_', '-'))"
						 " IS NOT DISTINCT FROM pg_catalog.lower($%d)",
						 quote_identifier(names[2]), nargs + 1);
		values[nargs] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
		nulls[nargs++] = PG_ARGISNULL(2) ? 'n' : ' ';
	}
	if (cols.external_id != InvalidAttrNumber)
	{
		appendStringInfo(&sql, " AND %s::pg_catalog.text IS NOT DISTINCT FROM $%d",
						 quote_identifier(names[3]), nargs + 1);
		values[nargs] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
		nulls[nargs++] = PG_ARGISNULL(3) ? 'n' : ' ';
	}
	relation_close(rel, NoLock);

	begin_as_role(owner, true, &as);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(sql.data, nargs, argtypes, values, nulls, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
