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
 * Read straight off the index, the rows are under no row-level security
 * policy: the walk keeps to the session's tenant itself.  The tenant is not in
 * the index's key: it would take a byte, often eight with alignment, of every
 * entry of every shop, and a SKU shared by tenants only costs a tenant that
 * shares it the other tenants' entries it steps over.
 *
 * Voyado's rules: a restock with a locale fires only subscriptions of that
 * locale, one with an external id only those of that external id, one with
 * neither every subscription of the SKU.  Two delivery rules act here too: a
 * subscription older than bis.subscription_ttl is collected to expire, not
 * fired, and one whose maximum price the item's price is above waits.
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
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "bis.h"

/* bis.subscriptions and its index of active subscriptions, open */
typedef struct ActiveIndex
{
	Relation	rel;
	Relation	index;
	AttrNumber	id;
	AttrNumber	tenant;
	AttrNumber	locale;
	AttrNumber	external_id;
	AttrNumber	created_at;
	AttrNumber	max_price;
	AttrNumber	target_price;
	AttrNumber	price_at_subscription;
} ActiveIndex;

static AttrNumber
column(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of bis.subscriptions does not exist", name);
	return attnum;
}

/*
 * Open bis.subscriptions and the index of the active subscriptions of a kind:
 * back-in-stock ones, or price-drop ones
 */
static void
open_active_index(ActiveIndex *ai, bool price_drop)
{
	const char *name = price_drop ? "subscriptions_price_drop_idx" : "subscriptions_active_sku_idx";

	/* on Citus, the shard of the SKU's group on this node */
	Oid			relid = bis_relation_oid("subscriptions", NULL);
	Oid			indexid = bis_relation_oid("subscriptions", name);

	ai->rel = table_open(relid, AccessShareLock);
	ai->index = index_open(indexid, AccessShareLock);
	ai->id = column(relid, "id");
	ai->tenant = column(relid, "tenant");
	ai->locale = column(relid, "locale");
	ai->external_id = column(relid, "external_id");
	ai->created_at = column(relid, "created_at");
	ai->max_price = column(relid, "max_price");
	ai->target_price = column(relid, "target_price");
	ai->price_at_subscription = column(relid, "price_at_subscription");
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
 * A locale in its canonical case (BCP 47): language lower case, script title
 * case, region upper case, the rest lower case, subtags joined by hyphens, so
 * that "sv_se", "SV-se" and "sv-SE" are one locale.  Stored locales are
 * canonical, and so is what a tracked table's row says when bis reads it.
 */
text *
canonical_locale(text *locale)
{
	int			len = VARSIZE_ANY_EXHDR(locale);
	const char *in = VARDATA_ANY(locale);
	text	   *result = (text *) palloc(VARHDRSZ + len);
	char	   *out = VARDATA(result);
	int			start = 0;
	bool		first = true;

	SET_VARSIZE(result, VARHDRSZ + len);
	while (start <= len)
	{
		int			end = start;
		int			i;

		while (end < len && in[end] != '-' && in[end] != '_')
			end++;
		for (i = start; i < end; i++)
		{
			int			n = end - start;
			bool		upper = !first && (n == 2 || (n == 4 && i == start));

			out[i] = upper ? pg_toupper((unsigned char) in[i]) : pg_tolower((unsigned char) in[i]);
		}
		if (end < len)
			out[end] = '-';
		first = false;
		start = end + 1;
	}
	return result;
}

/*
 * bis._canonical_locale(locale text) returns text
 */
PG_FUNCTION_INFO_V1(bis__canonical_locale);

Datum
bis__canonical_locale(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(canonical_locale(PG_GETARG_TEXT_PP(0)));
}

/* Whether the item's price (0: unknown) is above the subscription's maximum */
static bool
over_price(TupleTableSlot *slot, AttrNumber attnum, Datum price)
{
	bool		isnull;
	Datum		max_price = slot_getattr(slot, attnum, &isnull);

	if (isnull)
		return false;
	return price == (Datum) 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, price, max_price)) > 0;
}

/*
 * Whether a price-drop subscription fires at the item's new price: at or
 * below its target, or without one, down by min_percent from the price when
 * it was made
 */
static bool
price_reached(TupleTableSlot *slot, const ActiveIndex *ai, const MatchFilter *f)
{
	bool		isnull;
	Datum		target = slot_getattr(slot, ai->target_price, &isnull);
	Datum		bound;

	if (f->price == (Datum) 0)
		return false;			/* an item without a price has no drop */

	if (!isnull)
		bound = target;
	else
	{
		Datum		was = slot_getattr(slot, ai->price_at_subscription, &isnull);

		if (isnull)
			return false;
		/* was * (100 - min_percent) / 100 */
		bound = DirectFunctionCall2(numeric_div,
									DirectFunctionCall2(numeric_mul, was,
														DirectFunctionCall1(int4_numeric,
																			Int32GetDatum(100 - f->min_percent))),
									DirectFunctionCall1(int4_numeric, Int32GetDatum(100)));
	}
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, f->price, bound)) <= 0;
}

/* Room for one more TID in a growing array */
static ItemPointerData *
add_tid(ItemPointerData *tids, int n, int *size, int64 limit)
{
	if (n < *size)
		return tids;
	*size = *size == 0 ? (int) Min(limit, 1024) : *size * 2;
	return tids == NULL ? palloc(sizeof(ItemPointerData) * *size) :
		repalloc(tids, sizeof(ItemPointerData) * *size);
}

/*
 * The active subscriptions of sku after after_id and up to upto_id (< 0: no
 * bound), oldest first, at most limit of them, filtered as f says.  With
 * want_tids, their TIDs too, and those of the expired ones passed on the way.
 */
void
match_subscriptions(Datum sku, const MatchFilter *f, int64 after_id, int64 upto_id,
					int64 limit, bool want_tids, Matches *m)
{
	ActiveIndex ai;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Datum		tenant = CStringGetTextDatum(current_tenant());
	int			size = 0;
	int			expired_size = 0;

	m->n = 0;
	m->tids = NULL;
	m->last_id = 0;
	m->n_expired = 0;
	m->expired_tids = NULL;
	m->n_over_price = 0;
	m->n_other_locale = 0;
	m->n_other_external_id = 0;
	m->n_price_not_reached = 0;
	if (limit <= 0)
		return;

	open_active_index(&ai, f->price_drop);

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
		m->last_id = id;
		if (!text_matches(slot, ai.tenant, tenant))
			continue;			/* another shop's */
		/* Voyado's rules leave it waiting: counted, so that the event says so */
		if (!text_matches(slot, ai.locale, f->locale))
		{
			m->n_other_locale++;
			continue;
		}
		if (!text_matches(slot, ai.external_id, f->external_id))
		{
			m->n_other_external_id++;
			continue;
		}
		if (f->created_before != 0 &&
			DatumGetTimestampTz(slot_getattr(slot, ai.created_at, &isnull)) < f->created_before)
		{
			if (want_tids)
			{
				m->expired_tids = add_tid(m->expired_tids, m->n_expired, &expired_size, limit);
				ItemPointerCopy(&slot->tts_tid, &m->expired_tids[m->n_expired]);
			}
			m->n_expired++;
			continue;
		}
		if (f->price_drop ? !price_reached(slot, &ai, f) :
			(f->price_rule && over_price(slot, ai.max_price, f->price)))
		{
			if (f->price_drop)
				m->n_price_not_reached++;
			else
				m->n_over_price++;
			continue;
		}

		if (want_tids)
		{
			m->tids = add_tid(m->tids, m->n, &size, limit);
			ItemPointerCopy(&slot->tts_tid, &m->tids[m->n]);
		}
		m->n++;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	close_active_index(&ai);
}

/* The id of the SKU's newest active subscription of a kind, 0 if it has none */
int64
newest_active_subscription(Datum sku, bool price_drop)
{
	ActiveIndex ai;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Datum		tenant = CStringGetTextDatum(current_tenant());
	int64		newest = 0;

	open_active_index(&ai, price_drop);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   ai.index->rd_indcollation[0], F_TEXTEQ, sku);
	slot = table_slot_create(ai.rel, NULL);
	scan = index_beginscan(ai.rel, ai.index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		if (!text_matches(slot, ai.tenant, tenant))
			continue;			/* another shop's */
		newest = DatumGetInt64(slot_getattr(slot, ai.id, &isnull));
		break;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	close_active_index(&ai);
	return newest;
}
