/*-------------------------------------------------------------------------
 *
 * matching.c
 *	  The active subscriptions a restock fires, read straight off the index.
 *
 * A restock, and every chunk of a large one, asks for the next active
 * subscriptions of a SKU in id order: subscriptions_active_sku_idx (sku, id)
 * answers that by walking forward from (sku, after_id) and stopping at the
 * limit.  Asked in SQL, the planner could not be made to keep to that: its
 * estimates, made with parameters it does not know and blind to the index
 * entries of used subscriptions that vacuum has not removed yet, led it to a
 * bitmap scan, a sort or the primary key, each of which reads all of them; a
 * SKU restocked often then got slower with every restock.  The walk here
 * also marks the entries of used subscriptions dead as it passes them, as
 * any plain index scan does, so the next restock steps over them cheaply.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "bis.h"

/* a column of bis.subscriptions, by name: its number */
static AttrNumber
subscriptions_attnum(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of bis.subscriptions does not exist", name);
	return attnum;
}

/* whether a text column of the row equals value */
static bool
text_matches(TupleTableSlot *slot, AttrNumber attnum, Datum value)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);

	return !isnull &&
		DatumGetBool(DirectFunctionCall2Coll(texteq, DEFAULT_COLLATION_OID,
											 d, value));
}

/*
 * bis._matching(sku, locale, external_id, after_id, upto_id, max_rows):
 * the ids of the SKU's active subscriptions after after_id (NULL: from the
 * first) and up to upto_id (NULL: the last), oldest first, at most max_rows
 * (NULL: all).
 * Voyado's rules: a locale fires only subscriptions of that locale, an
 * external id only those of that external id, neither every one of the SKU.
 */
PG_FUNCTION_INFO_V1(bis__matching);

Datum
bis__matching(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		has_locale = !PG_ARGISNULL(1);
	bool		has_external_id = !PG_ARGISNULL(2);
	int64		after_id = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);
	bool		has_upto = !PG_ARGISNULL(4);
	int64		upto_id = has_upto ? PG_GETARG_INT64(4) : 0;
	int64		max_rows = PG_ARGISNULL(5) ? PG_INT64_MAX : PG_GETARG_INT32(5);
	Oid			nspid;
	Oid			relid;
	Oid			indexid;
	AttrNumber	id_attnum;
	AttrNumber	locale_attnum;
	AttrNumber	external_id_attnum;
	AclResult	aclresult;
	Relation	rel;
	Relation	index;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Tuplestorestate *tupstore;
	TupleDesc	tupdesc;
	MemoryContext oldcontext;
	int64		found = 0;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	nspid = get_namespace_oid("bis", false);
	relid = get_relname_relid("subscriptions", nspid);
	indexid = get_relname_relid("subscriptions_active_sku_idx", nspid);
	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "bis.subscriptions or its index subscriptions_active_sku_idx does not exist");
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, "subscriptions");

	id_attnum = subscriptions_attnum(relid, "id");
	locale_attnum = subscriptions_attnum(relid, "locale");
	external_id_attnum = subscriptions_attnum(relid, "external_id");

	/* the result: one bigint column, kept until the end of the query */
	oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(tupdesc, (AttrNumber) 1, "id", INT8OID, -1, 0);
	tupstore = tuplestore_begin_heap(false, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(oldcontext);

	rel = table_open(relid, AccessShareLock);
	index = index_open(indexid, AccessShareLock);

	/* from (sku, after_id) forward: the SKU's subscriptions in id order */
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PG_GETARG_DATUM(0));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GT, Int64GetDatum(after_id));

	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);

	while (found < max_rows &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		id;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Every row found is active: the index holds active ones only, and
		 * no HOT chain changes a column of an index's predicate.
		 */
		id = slot_getattr(slot, id_attnum, &isnull);
		if (has_upto && DatumGetInt64(id) > upto_id)
			break;
		if (has_locale && !text_matches(slot, locale_attnum, PG_GETARG_DATUM(1)))
			continue;
		if (has_external_id &&
			!text_matches(slot, external_id_attnum, PG_GETARG_DATUM(2)))
			continue;

		tuplestore_putvalues(tupstore, tupdesc, &id, &isnull);
		found++;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);

	return (Datum) 0;
}
