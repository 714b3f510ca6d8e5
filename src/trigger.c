/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  The row trigger that turns a stock change into a restock.
 *
 * bis.track() attaches bis._stock_trigger() to applications' own inventory
 * tables, AFTER INSERT and AFTER UPDATE OF the quantity column, with WHEN
 * clauses that end in bis._crossing(): only a row whose quantity crossed its
 * SKU's threshold queues a trigger event, so sales and deliveries to SKUs in
 * stock never enter the trigger.  The trigger's arguments name the sku,
 * quantity, locale and external_id columns ('' for an absent one).
 * bis.stock_levels has the UPDATE trigger only: bis._new_stock_level() takes
 * the part of the INSERT one for the levels bis's functions create.
 *
 * Both decide in C, with the column positions and the per-item thresholds
 * kept in backend-local caches; only a crossing reaches restock().
 *
 * A table tracked with a price column also has bis._tracked_price_trigger(),
 * AFTER UPDATE OF that column: the item's price in bis.items follows it, and
 * bis.items' own trigger decides whether that was a price drop to tell.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bis.h"

/* A tracked table's columns, cached per trigger */
typedef struct TrackedTable
{
	Oid			tgoid;			/* hash key: the trigger's OID */
	Oid			relid;
	bool		valid;			/* false once the relation changed */
	TrackedColumns cols;
	char	   *source;			/* qualified table name, for restock events */
} TrackedTable;

/*
 * A SKU as a hash key: its bytes where they are, so that a lookup copies
 * nothing and the cache knows no limit on a SKU's length (bis.items does)
 */
typedef struct SkuKey
{
	const char *data;
	int			len;
} SkuKey;

/* An item with a threshold of its own */
typedef struct ItemThreshold
{
	SkuKey		sku;			/* hash key; data in thresholds_context */
	int32		threshold;
} ItemThreshold;

static MemoryContext BisCacheContext = NULL;
static HTAB *tracked_tables = NULL;
static MemoryContext thresholds_context = NULL;
static HTAB *item_thresholds = NULL;
static int32 max_item_threshold = 0;	/* the highest in item_thresholds */
static bool item_thresholds_valid = false;
static char *item_thresholds_tenant = NULL; /* whose items they are */
static Oid	items_relid = InvalidOid;

static SPIPlanPtr thresholds_plan = NULL;

static const char thresholds_sql[] =
"SELECT i.sku, i.threshold FROM bis.items i"
"  WHERE i.threshold IS NOT NULL AND i.tenant OPERATOR(pg_catalog.=) $1";


/*
 * Forget what a relcache invalidation may have made stale.  Only flags are
 * cleared here: the caches are rebuilt by their next user, which may be in the
 * middle of a lookup when this runs.
 */
static void
invalidate_caches(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == items_relid)
		item_thresholds_valid = false;

	if (tracked_tables != NULL)
	{
		HASH_SEQ_STATUS status;
		TrackedTable *tt;

		hash_seq_init(&status, tracked_tables);
		while ((tt = (TrackedTable *) hash_seq_search(&status)) != NULL)
		{
			if (relid == InvalidOid || tt->relid == relid)
				tt->valid = false;
		}
	}
}

void
bis_trigger_init(void)
{
	CacheRegisterRelcacheCallback(invalidate_caches, (Datum) 0);
}

static MemoryContext
cache_context(void)
{
	if (BisCacheContext == NULL)
		BisCacheContext = AllocSetContextCreate(CacheMemoryContext,
												"bis cache",
												ALLOCSET_SMALL_SIZES);
	return BisCacheContext;
}

/* The cached column positions for the table this trigger fired on */
static TrackedTable *
tracked_table(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	Relation	rel = trigdata->tg_relation;
	TrackedTable *tt;
	bool		found;

	if (tracked_tables == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TrackedTable);
		ctl.hcxt = cache_context();
		tracked_tables = hash_create("bis tracked tables", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	tt = (TrackedTable *) hash_search(tracked_tables, &trigger->tgoid,
									  HASH_ENTER, &found);
	if (!found)
	{
		tt->source = NULL;
		tt->valid = false;
	}
	if (!tt->valid)
	{
		char	   *problem;

		if (trigger->tgnargs != 4)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("trigger \"%s\" on relation \"%s\" must have 4 arguments",
							trigger->tgname, RelationGetRelationName(rel)),
					 errhint("Put the trigger on the table with bis.track().")));

		/* an invalidation that arrives while we resolve clears this again */
		tt->valid = true;
		tt->relid = RelationGetRelid(rel);
		problem = resolve_columns(rel, trigger->tgargs, &tt->cols);
		if (problem != NULL)
		{
			tt->valid = false;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("cannot read the stock of relation \"%s\"",
							RelationGetRelationName(rel)),
					 errdetail("%s", problem),
					 errhint("Track the table again with bis.track() and its current column names.")));
		}
		if (tt->source == NULL)
		{
			/* on Citus, rel is a shard: events name the distributed table */
			char	   *source = distributed_table_name(rel);

			if (source == NULL)
				source = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													RelationGetRelationName(rel));
			tt->source = MemoryContextStrdup(cache_context(), source);
		}
	}
	return tt;
}

/* Read the quantity of a row; false when it is NULL */
static bool
read_quantity(HeapTuple tuple, TupleDesc tupdesc, const TrackedColumns *cols,
			  int64 *quantity)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, cols->quantity, tupdesc, &isnull);

	if (isnull)
		return false;
	switch (cols->quantity_type)
	{
		case INT2OID:
			*quantity = DatumGetInt16(d);
			break;
		case INT4OID:
			*quantity = DatumGetInt32(d);
			break;
		default:
			*quantity = DatumGetInt64(d);
			break;
	}
	return true;
}

/* A text column of the row, or 0 when it is NULL or not tracked */
static Datum
read_text(HeapTuple tuple, TupleDesc tupdesc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return (Datum) 0;
	d = heap_getattr(tuple, attnum, tupdesc, &isnull);
	return isnull ? (Datum) 0 : d;
}

static uint32
sku_key_hash(const void *key, Size keysize)
{
	const SkuKey *k = key;

	return hash_bytes((const unsigned char *) k->data, k->len);
}

static int
sku_key_match(const void *key1, const void *key2, Size keysize)
{
	const SkuKey *k1 = key1;
	const SkuKey *k2 = key2;

	return k1->len != k2->len || memcmp(k1->data, k2->data, k1->len) != 0;
}

/*
 * Load the thresholds of the tenant's items that have their own; caller is
 * in SPI
 */
static void
load_item_thresholds(const char *tenant)
{
	HASHCTL		ctl;
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(tenant);
	int			ret;
	uint64		i;

	/* the table and the SKUs it points to go together */
	if (thresholds_context == NULL)
		thresholds_context = AllocSetContextCreate(cache_context(),
												   "bis item thresholds",
												   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(thresholds_context);
	item_thresholds = NULL;
	ctl.keysize = sizeof(SkuKey);
	ctl.entrysize = sizeof(ItemThreshold);
	ctl.hash = sku_key_hash;
	ctl.match = sku_key_match;
	ctl.hcxt = thresholds_context;
	item_thresholds = hash_create("bis item thresholds", 64, &ctl,
								  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	max_item_threshold = 0;
	items_relid = get_relname_relid("items", get_namespace_oid("bis", false));
	item_thresholds_tenant = MemoryContextStrdup(thresholds_context, tenant);

	ret = SPI_execute_plan(prepare_kept(&thresholds_plan, thresholds_sql, 1, &argtype),
						   &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *sku = DatumGetTextPP(SPI_getbinval(row, desc, 1, &isnull));
		int32		threshold = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		SkuKey		key;
		ItemThreshold *it;

		key.len = VARSIZE_ANY_EXHDR(sku);
		key.data = MemoryContextAlloc(thresholds_context, key.len);
		memcpy((char *) key.data, VARDATA_ANY(sku), key.len);
		it = (ItemThreshold *) hash_search(item_thresholds, &key, HASH_ENTER, NULL);
		it->threshold = threshold;
		max_item_threshold = Max(max_item_threshold, threshold);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Make sure the item thresholds of the session's tenant are loaded and
 * current, reading bis.items as the owner of fn_oid.  The cache is marked
 * valid before the load, so that an invalidation arriving during it clears
 * the mark again, and invalid once more if the load fails (a lock timeout,
 * say): a backend never goes on with a half-loaded cache.
 */
static void
check_item_thresholds(Oid fn_oid)
{
	AsRole		as;
	const char *tenant = current_tenant();

	if (item_thresholds_valid && strcmp(item_thresholds_tenant, tenant) == 0)
		return;
	begin_as_role(function_owner(fn_oid), false, &as);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	item_thresholds_valid = true;
	PG_TRY();
	{
		/* on Citus, from this node's placement of bis.items */
		ShardGroup *before = use_shard_group(shard_group_of_node());

		load_item_thresholds(tenant);
		use_shard_group(before);
	}
	PG_CATCH();
	{
		item_thresholds_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);
}

/*
 * Whether a SKU's quantity going from old_quantity (or from nothing) to
 * new_quantity crosses its threshold, which is returned in *threshold.
 * fn_oid is the calling function's, for the owner to read bis.items as.
 */
static bool
crosses(text *sku, bool has_old, int64 old_quantity, int64 new_quantity,
		Oid fn_oid, int32 *threshold)
{
	SkuKey		key = {VARDATA_ANY(sku), VARSIZE_ANY_EXHDR(sku)};
	ItemThreshold *it;

	/* every threshold is at least 1, and a crossing is a rise */
	if (new_quantity < 1 || (has_old && old_quantity >= new_quantity))
		return false;

	/* nothing can cross from at or above the highest threshold there is */
	check_item_thresholds(fn_oid);
	if (has_old && old_quantity >= Max(bis_default_threshold, max_item_threshold))
		return false;

	it = (ItemThreshold *) hash_search(item_thresholds, &key, HASH_FIND, NULL);
	*threshold = it ? it->threshold : bis_default_threshold;
	return new_quantity >= *threshold && (!has_old || old_quantity < *threshold);
}

/*
 * bis._stock_trigger(sku_column, quantity_column, locale_column,
 *					  external_id_column)
 */
PG_FUNCTION_INFO_V1(bis__stock_trigger);

Datum
bis__stock_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TrackedTable *tt;
	TupleDesc	tupdesc;
	HeapTuple	newtuple;
	HeapTuple	oldtuple = NULL;
	bool		sku_null;
	Crossing	c = {0};

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"bis._stock_trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired AFTER ROW",
						"bis._stock_trigger")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		newtuple = trigdata->tg_trigtuple;
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		oldtuple = trigdata->tg_trigtuple;
		newtuple = trigdata->tg_newtuple;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired for INSERT or UPDATE",
						"bis._stock_trigger")));

	tt = tracked_table(trigdata);
	tupdesc = RelationGetDescr(trigdata->tg_relation);

	/* a NULL quantity is no stock; a NULL old one is a crossing from nothing */
	if (!read_quantity(newtuple, tupdesc, &tt->cols, &c.new_quantity))
		return PointerGetDatum(NULL);
	c.has_old = oldtuple != NULL &&
		read_quantity(oldtuple, tupdesc, &tt->cols, &c.old_quantity);

	c.sku = heap_getattr(newtuple, tt->cols.sku, tupdesc, &sku_null);
	if (sku_null ||
		!crosses(DatumGetTextPP(c.sku), c.has_old, c.old_quantity,
				 c.new_quantity, fcinfo->flinfo->fn_oid, &c.threshold))
		return PointerGetDatum(NULL);

	c.source = tt->source;
	c.locale = read_text(newtuple, tupdesc, tt->cols.locale);
	if (c.locale != (Datum) 0)
		c.locale = PointerGetDatum(canonical_locale(DatumGetTextPP(c.locale)));
	c.external_id = read_text(newtuple, tupdesc, tt->cols.external_id);
	restock(fcinfo->flinfo->fn_oid, &c);

	return PointerGetDatum(NULL);
}

/*
 * bis._new_stock_level(sku text, quantity bigint, locale text,
 *						external_id text): a level that bis.set_stock() or
 * bis.put_stock_levels() has just inserted into bis.stock_levels, a crossing
 * from nothing if it is at or above the SKU's threshold.  bis.stock_levels
 * has no INSERT trigger, so that the rows pg_restore loads into it are not
 * taken for restocks; bis's own functions call this instead.  Returns the
 * number of notifications enqueued.
 */
PG_FUNCTION_INFO_V1(bis__new_stock_level);

Datum
bis__new_stock_level(PG_FUNCTION_ARGS)
{
	Crossing	c = {0};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);
	c.has_old = false;
	c.old_quantity = 0;
	c.new_quantity = PG_GETARG_INT64(1);
	if (!crosses(PG_GETARG_TEXT_PP(0), false, 0, c.new_quantity,
				 fcinfo->flinfo->fn_oid, &c.threshold))
		PG_RETURN_INT32(0);

	c.source = "bis.stock_levels";
	c.sku = PG_GETARG_DATUM(0);
	c.locale = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	c.external_id = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	PG_RETURN_INT32(restock(fcinfo->flinfo->fn_oid, &c));
}

/*
 * bis._crossing(sku text, old_quantity bigint, new_quantity bigint): the
 * trigger's WHEN clause.  A row that rises without crossing (a delivery to a
 * SKU in stock) is sorted out here, for the cost of a function call, rather
 * than as a queued trigger event.
 */
PG_FUNCTION_INFO_V1(bis__crossing);

Datum
bis__crossing(PG_FUNCTION_ARGS)
{
	int32		threshold;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(crosses(PG_GETARG_TEXT_PP(0), !PG_ARGISNULL(1),
						   PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1),
						   PG_GETARG_INT64(2), fcinfo->flinfo->fn_oid,
						   &threshold));
}

/*
 * bis._items_changed(): statement trigger on bis.items.  Item thresholds are
 * cached in every backend; a relcache invalidation of bis.items, sent to all
 * of them at commit, makes them reload.  On Citus the trigger fires on each
 * node's placement of bis.items, a relation of its own: each node
 * invalidates bis.items as well.
 */
PG_FUNCTION_INFO_V1(bis__items_changed);

Datum
bis__items_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			items;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"bis._items_changed")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	items = get_relname_relid("items", RelationGetNamespace(trigdata->tg_relation));
	if (OidIsValid(items) && items != RelationGetRelid(trigdata->tg_relation))
		CacheInvalidateRelcacheByRelid(items);
	return PointerGetDatum(NULL);
}

/*
 * bis._enqueued_total(): how many notifications this backend's restocks have
 * enqueued so far.  bis.set_stock() reports the difference it made.
 */
PG_FUNCTION_INFO_V1(bis__enqueued_total);

Datum
bis__enqueued_total(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(bis_enqueued_total);
}

/*
 * bis._tracked_price_trigger(sku_column, price_column): a row trigger on a
 * tracked table, AFTER UPDATE OF its price column WHEN the price changed.
 * The SKU's item takes the new price, as the extension's owner; an item bis
 * does not know is left alone.
 */
PG_FUNCTION_INFO_V1(bis__tracked_price_trigger);

/* $1 sku, $2 the new price */
static const char set_item_price_sql[] =
"UPDATE bis.items i SET price = $2, updated_at = pg_catalog.now()"
" WHERE i.sku OPERATOR(pg_catalog.=) $1 AND i.price IS DISTINCT FROM $2";

static SPIPlanPtr set_item_price_plan = NULL;

Datum
bis__tracked_price_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	TupleDesc	desc;
	int			sku_att;
	int			price_att;
	Datum		args[2];
	bool		isnull;
	Oid			argtypes[2] = {TEXTOID, NUMERICOID};
	AsRole		as;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || trigdata->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired AFTER UPDATE FOR EACH ROW with two arguments",
						"bis._tracked_price_trigger")));
	tg = trigdata->tg_trigger;
	desc = RelationGetDescr(trigdata->tg_relation);
	sku_att = SPI_fnumber(desc, tg->tgargs[0]);
	price_att = SPI_fnumber(desc, tg->tgargs[1]);
	if (sku_att <= 0 || price_att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table \"%s\" has no column \"%s\" or \"%s\" that bis reads",
						RelationGetRelationName(trigdata->tg_relation), tg->tgargs[0], tg->tgargs[1]),
				 errhint("Track the table again with bis.track().")));

	/* no SKU, or no price: nothing to follow */
	args[0] = SPI_getbinval(trigdata->tg_newtuple, desc, sku_att, &isnull);
	if (isnull)
		return PointerGetDatum(NULL);
	args[1] = SPI_getbinval(trigdata->tg_newtuple, desc, price_att, &isnull);
	if (isnull)
		return PointerGetDatum(NULL);
	switch (getBaseType(TupleDescAttr(desc, price_att - 1)->atttypid))
	{
		case INT2OID:
			args[1] = DirectFunctionCall1(int2_numeric, args[1]);
			break;
		case INT4OID:
			args[1] = DirectFunctionCall1(int4_numeric, args[1]);
			break;
		case INT8OID:
			args[1] = DirectFunctionCall1(int8_numeric, args[1]);
			break;
		default:
			/* numeric: bis.track and the event trigger allow no other */
			break;
	}

	begin_as_role(function_owner(fcinfo->flinfo->fn_oid), false, &as);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(prepare_kept(&set_item_price_plan, set_item_price_sql, 2, argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);
	return PointerGetDatum(NULL);
}
