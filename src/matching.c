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
 * It returns the rows' TIDs, by which the chunk's statement takes them.
 *
 * Voyado's rules: a restock with a locale fires only subscriptions of that
 * locale, one with an external id only those of that external id, one with
 * neither every subscription of the SKU.
 *
 * The caller has pushed the snapshot to read with.
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
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "bis.h"

/* bis.subscriptions and its index of active subscriptions, open */
typedef struct ActiveIndex
{
	Relation	rel;
	Relation	index;
	AttrNumber	id;
	AttrNumber	locale;
	AttrNumber	external_id;
} ActiveIndex;

static AttrNumber
column(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of bis.subscriptions does not exist", name);
	return attnum;
}

static void
open_active_index(ActiveIndex *ai)
{
	Oid			nspid = get_namespace_oid("bis", false);
	Oid			relid = get_relname_relid("subscriptions", nspid);
	Oid			indexid = get_relname_relid("subscriptions_active_sku_idx", nspid);

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "bis.subscriptions or its index subscriptions_active_sku_idx does not exist");
	ai->rel = table_open(relid, AccessShareLock);
	ai->index = index_open(indexid, AccessShareLock);
	ai->id = column(relid, "id");
	ai->locale = column(relid, "locale");
	ai->external_id = column(relid, "external_id");
}

static void
close_active_index(ActiveIndex *ai)
{
	index_close(ai->index, AccessShareLock);
	table_close(ai->rel, AccessShareLock);
}

/* whether a text column of the row equals value (0: not asked) */
static bool
text_matches(TupleTableSlot *slot, AttrNumber attnum, Datum value)
{
	bool		isnull;
	Datum		d;

	if (value == (Datum) 0)
		return true;
	d = slot_getattr(slot, attnum, &isnull);
	return !isnull &&
		DatumGetBool(DirectFunctionCall2Coll(texteq, DEFAULT_COLLATION_OID,
											 d, value));
}

/*
 * The active subscriptions of sku after after_id and up to upto_id (< 0: no
 * bound), oldest first, at most limit of them, filtered by locale and
 * external_id where given (0: not given).  With want_tids, their TIDs too.
 */
void
match_subscriptions(Datum sku, Datum locale, Datum external_id,
					int64 after_id, int64 upto_id, int64 limit,
					bool want_tids, Matches *m)
{
	ActiveIndex ai;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			size = 0;

	m->n = 0;
	m->tids = NULL;
	m->last_id = 0;
	if (limit <= 0)
		return;

	open_active_index(&ai);

	/* from (sku, after_id) forward: the SKU's subscriptions in id order */
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   ai.index->rd_indcollation[0], F_TEXTEQ, sku);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GT, Int64GetDatum(after_id));

	slot = table_slot_create(ai.rel, NULL);
	scan = index_beginscan(ai.rel, ai.index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);

	while (m->n < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		id;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Every row found is active: the index holds active ones only, and
		 * no HOT chain changes a column of an index's predicate.
		 */
		id = DatumGetInt64(slot_getattr(slot, ai.id, &isnull));
		if (upto_id >= 0 && id > upto_id)
			break;
		if (!text_matches(slot, ai.locale, locale) ||
			!text_matches(slot, ai.external_id, external_id))
			continue;

		if (want_tids)
		{
			if (m->n == size)
			{
				size = size == 0 ? (int) Min(limit, 1024) : size * 2;
				m->tids = m->tids == NULL ?
					palloc(sizeof(ItemPointerData) * size) :
					repalloc(m->tids, sizeof(ItemPointerData) * size);
			}
			ItemPointerCopy(&slot->tts_tid, &m->tids[m->n]);
		}
		m->last_id = id;
		m->n++;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	close_active_index(&ai);
}

/* The id of the SKU's newest active subscription, 0 if it has none */
int64
newest_active_subscription(Datum sku)
{
	ActiveIndex ai;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		newest = 0;

	open_active_index(&ai);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   ai.index->rd_indcollation[0], F_TEXTEQ, sku);
	slot = table_slot_create(ai.rel, NULL);
	scan = index_beginscan(ai.rel, ai.index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		newest = DatumGetInt64(slot_getattr(slot, ai.id, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	close_active_index(&ai);
	return newest;
}
