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
 * kept in backend-local caches.  Only a crossing runs SQL: bis._restock(),
 * through a plan prepared once, writes the restock event and enqueues the
 * first chunk of notifications.  A transaction that enqueued anything sends
 * NOTIFY bis_notifications at commit, once, unless a concurrent one will.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "bis.h"

/* the advisory lock (key pair BIS_NOTIFY_LOCK_KEY, 0) that coalesces wake-ups */
#define BIS_NOTIFY_LOCK_KEY 0x62697321	/* "bis!" */

/* the longest SKU bis.items accepts */
#define BIS_SKU_MAXLEN 128

#if PG_VERSION_NUM >= 140000
#define BIS_HASH_STRINGS HASH_STRINGS
#else
#define BIS_HASH_STRINGS 0		/* string keys are the default before 14 */
#endif

/* Where a tracked table keeps the columns bis reads; one entry per trigger */
typedef struct TrackedTable
{
	Oid			tgoid;			/* hash key: the trigger's OID */
	Oid			relid;
	bool		valid;			/* false once the relation changed */
	AttrNumber	sku_attnum;
	AttrNumber	quantity_attnum;
	AttrNumber	locale_attnum;	/* InvalidAttrNumber when not tracked */
	AttrNumber	external_id_attnum; /* likewise */
	Oid			quantity_type;	/* INT2OID, INT4OID or INT8OID */
	char	   *source;			/* qualified table name, for restock events */
} TrackedTable;

/* An item with a threshold of its own */
typedef struct ItemThreshold
{
	char		sku[BIS_SKU_MAXLEN + 1];	/* hash key */
	int32		threshold;
} ItemThreshold;

static MemoryContext BisCacheContext = NULL;
static HTAB *tracked_tables = NULL;
static HTAB *item_thresholds = NULL;
static int32 max_item_threshold = 0;	/* the highest in item_thresholds */
static bool item_thresholds_valid = false;
static Oid	items_relid = InvalidOid;

static SPIPlanPtr thresholds_plan = NULL;
static SPIPlanPtr restock_plan = NULL;

/* notifications enqueued by this backend so far; see bis._enqueued_total() */
static int64 enqueued_total = 0;

static const Oid text_types[] = {TEXTOID, VARCHAROID, InvalidOid};
static const Oid quantity_types[] = {INT2OID, INT4OID, INT8OID, InvalidOid};

/*
 * A crossing: $1 sku, $2 locale, $3 external_id, $4 old quantity (NULL for a
 * new row), $5 new quantity, $6 threshold, $7 source table.  bis._restock
 * records the restock event and enqueues the first chunk of notifications.
 */
static const char restock_sql[] =
"SELECT bis._restock($1, $2, $3, $4, $5, $6, $7)";

static const char thresholds_sql[] =
"SELECT i.sku, i.threshold FROM bis.items i WHERE i.threshold IS NOT NULL";


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
	{
		if (CacheMemoryContext == NULL)
			CreateCacheMemoryContext();
		BisCacheContext = AllocSetContextCreate(CacheMemoryContext,
												"bis cache",
												ALLOCSET_SMALL_SIZES);
	}
	return BisCacheContext;
}

/*
 * The attribute number of the column that plays "role" (sku, quantity,
 * locale, external_id) in a tracked table, checked against the types that
 * role allows; InvalidAttrNumber for an absent optional column.
 */
static AttrNumber
resolve_column(Relation rel, const char *role, const char *colname,
			   const Oid *allowed, const char *allowed_names, Oid *type)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			i;

	if (colname == NULL || colname[0] == '\0')
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
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" has type %s",
						colname, RelationGetRelationName(rel),
						format_type_be(att->atttypid)),
				 errdetail("The %s column of a tracked table must be of type %s.",
						   role, allowed_names)));
	}

	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of relation \"%s\" does not exist",
					colname, RelationGetRelationName(rel)),
			 errhint("Pass the name of the table's %s column to bis.track() as %s_column.",
					 role, role)));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* Fill in where the columns named by the trigger's arguments are */
static void
resolve_columns(TrackedTable *tt, Relation rel, char **names)
{
	MemoryContext oldcxt;

	if (names[0] == NULL || names[0][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the sku column of a tracked table must be named")));
	if (names[1] == NULL || names[1][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the quantity column of a tracked table must be named")));

	tt->relid = RelationGetRelid(rel);
	tt->sku_attnum = resolve_column(rel, "sku", names[0], text_types,
									"text or varchar", NULL);
	tt->quantity_attnum = resolve_column(rel, "quantity", names[1],
										 quantity_types,
										 "smallint, integer or bigint",
										 &tt->quantity_type);
	tt->locale_attnum = resolve_column(rel, "locale", names[2], text_types,
									   "text or varchar", NULL);
	tt->external_id_attnum = resolve_column(rel, "external_id", names[3],
											text_types, "text or varchar",
											NULL);

	oldcxt = MemoryContextSwitchTo(cache_context());
	if (tt->source)
		pfree(tt->source);
	tt->source = pstrdup(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													RelationGetRelationName(rel)));
	MemoryContextSwitchTo(oldcxt);
}

/* The cached column positions for the table this trigger fired on */
static TrackedTable *
tracked_table(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
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
		if (trigger->tgnargs != 4)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("trigger \"%s\" on relation \"%s\" must have 4 arguments",
							trigger->tgname,
							RelationGetRelationName(trigdata->tg_relation)),
					 errhint("Put the trigger on the table with bis.track().")));

		/* an invalidation that arrives while we resolve clears this again */
		tt->valid = true;
		PG_TRY();
		{
			resolve_columns(tt, trigdata->tg_relation, trigger->tgargs);
		}
		PG_CATCH();
		{
			tt->valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return tt;
}

/* Read the quantity of a row; false when it is NULL */
static bool
read_quantity(HeapTuple tuple, TupleDesc tupdesc, TrackedTable *tt,
			  int64 *quantity)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, tt->quantity_attnum, tupdesc, &isnull);

	if (isnull)
		return false;
	switch (tt->quantity_type)
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

/* A text column of the row, or (Datum) 0 with *isnull set */
static Datum
read_text(HeapTuple tuple, TupleDesc tupdesc, AttrNumber attnum, bool *isnull)
{
	if (attnum == InvalidAttrNumber)
	{
		*isnull = true;
		return (Datum) 0;
	}
	return heap_getattr(tuple, attnum, tupdesc, isnull);
}

/* Prepare a statement once for the life of the backend; caller is in SPI */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* Load the thresholds of the items that have their own; caller is in SPI */
static void
load_item_thresholds(void)
{
	HASHCTL		ctl;
	int			ret;
	uint64		i;

	if (item_thresholds != NULL)
		hash_destroy(item_thresholds);
	ctl.keysize = BIS_SKU_MAXLEN + 1;
	ctl.entrysize = sizeof(ItemThreshold);
	ctl.hcxt = cache_context();
	item_thresholds = hash_create("bis item thresholds", 64, &ctl,
								  HASH_ELEM | BIS_HASH_STRINGS | HASH_CONTEXT);
	max_item_threshold = 0;

	/* an invalidation that arrives during the load clears this again */
	item_thresholds_valid = true;
	items_relid = get_relname_relid("items", get_namespace_oid("bis", false));

	if (thresholds_plan == NULL)
		thresholds_plan = prepare_kept(thresholds_sql, 0, NULL);
	ret = SPI_execute_plan(thresholds_plan, NULL, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *sku = TextDatumGetCString(SPI_getbinval(row, desc, 1, &isnull));
		int32		threshold = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		ItemThreshold *it;

		it = (ItemThreshold *) hash_search(item_thresholds, sku, HASH_ENTER, NULL);
		it->threshold = threshold;
		max_item_threshold = Max(max_item_threshold, threshold);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Enter SPI as the owner of the trigger function */
static void
begin_as_owner(Oid fn_oid, Oid *save_userid, int *save_sec_context)
{
	HeapTuple	proctup;
	Oid			owner;

	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(proctup))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(proctup))->proowner;
	ReleaseSysCache(proctup);

	/*
	 * As the foreign key triggers do: whoever may change the stock causes
	 * restocks, without needing rights on bis's own tables.
	 */
	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(owner, *save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
end_as_owner(Oid save_userid, int save_sec_context)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/* Make sure the item thresholds are loaded and current */
static void
check_item_thresholds(Oid fn_oid)
{
	Oid			save_userid;
	int			save_sec_context;

	if (item_thresholds_valid)
		return;
	begin_as_owner(fn_oid, &save_userid, &save_sec_context);
	load_item_thresholds();
	end_as_owner(save_userid, save_sec_context);
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
	char		key[BIS_SKU_MAXLEN + 1];
	int			len = VARSIZE_ANY_EXHDR(sku);
	ItemThreshold *it = NULL;

	/* every threshold is at least 1, and a crossing is a rise */
	if (new_quantity < 1 || (has_old && old_quantity >= new_quantity))
		return false;

	/* nothing can cross from at or above the highest threshold there is */
	check_item_thresholds(fn_oid);
	if (has_old && old_quantity >= Max(bis_default_threshold, max_item_threshold))
		return false;

	if (len <= BIS_SKU_MAXLEN)	/* a longer one cannot be an item */
	{
		memcpy(key, VARDATA_ANY(sku), len);
		key[len] = '\0';
		it = (ItemThreshold *) hash_search(item_thresholds, key, HASH_FIND, NULL);
	}
	*threshold = it ? it->threshold : bis_default_threshold;
	return new_quantity >= *threshold && (!has_old || old_quantity < *threshold);
}

/*
 * Whether this transaction should send the wake-up.  Every NOTIFY takes a
 * database-wide lock at commit, so concurrent restocks take turns: the one
 * that gets this advisory lock (held to the end of its transaction) notifies,
 * and one that finds it taken leaves the wake-up to the holder, which has not
 * committed yet.  If the holder commits first or rolls back, the mailers'
 * timer delivers what was not announced.
 */
static bool
notify_turn(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, BIS_NOTIFY_LOCK_KEY, 0, 2);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Record one crossing and enqueue its notifications; returns how many, and
 * arranges the transaction's wake-up if there were any
 */
static int
restock(Oid fn_oid, const char *source, Datum sku, Datum locale, bool locale_null,
		Datum external_id, bool external_id_null, bool has_old, int64 old_quantity,
		int64 new_quantity, int32 threshold)
{
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			save_userid;
	int			save_sec_context;
	int			ret;
	bool		isnull;
	int			enqueued;

	begin_as_owner(fn_oid, &save_userid, &save_sec_context);

	if (restock_plan == NULL)
	{
		Oid			argtypes[7] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
		INT4OID, TEXTOID};

		restock_plan = prepare_kept(restock_sql, 7, argtypes);
	}

	values[0] = sku;
	values[1] = locale;
	nulls[1] = locale_null ? 'n' : ' ';
	values[2] = external_id;
	nulls[2] = external_id_null ? 'n' : ' ';
	values[3] = Int64GetDatum(old_quantity);
	nulls[3] = has_old ? ' ' : 'n';
	values[4] = Int64GetDatum(new_quantity);
	values[5] = Int32GetDatum(threshold);
	values[6] = CStringGetTextDatum(source);

	ret = SPI_execute_plan(restock_plan, values, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	enqueued = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));

	end_as_owner(save_userid, save_sec_context);

	if (enqueued > 0)
	{
		enqueued_total += enqueued;
		if (bis_notify && notify_turn())
		{
			/*
			 * Async_Notify folds identical notifications of one transaction
			 * into one, so every crossing sends the same empty payload: the
			 * tables hold the details, and NOTIFY carries no personal data.
			 */
			Async_Notify(BIS_CHANNEL, "");
		}
	}
	return enqueued;
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
	int64		new_quantity;
	int64		old_quantity = 0;
	bool		has_old = false;
	Datum		sku;
	Datum		locale;
	Datum		external_id;
	bool		sku_null;
	bool		locale_null;
	bool		external_id_null;
	int32		threshold;

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
	if (!read_quantity(newtuple, tupdesc, tt, &new_quantity))
		return PointerGetDatum(NULL);
	if (oldtuple != NULL)
		has_old = read_quantity(oldtuple, tupdesc, tt, &old_quantity);

	sku = heap_getattr(newtuple, tt->sku_attnum, tupdesc, &sku_null);
	if (sku_null ||
		!crosses(DatumGetTextPP(sku), has_old, old_quantity, new_quantity,
				 fcinfo->flinfo->fn_oid, &threshold))
		return PointerGetDatum(NULL);

	locale = read_text(newtuple, tupdesc, tt->locale_attnum, &locale_null);
	external_id = read_text(newtuple, tupdesc, tt->external_id_attnum,
							&external_id_null);

	restock(fcinfo->flinfo->fn_oid, tt->source, sku, locale, locale_null,
			external_id, external_id_null, has_old, old_quantity, new_quantity,
			threshold);

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
	int64		quantity;
	int32		threshold;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);
	quantity = PG_GETARG_INT64(1);
	if (!crosses(PG_GETARG_TEXT_PP(0), false, 0, quantity,
				 fcinfo->flinfo->fn_oid, &threshold))
		PG_RETURN_INT32(0);

	PG_RETURN_INT32(restock(fcinfo->flinfo->fn_oid, "bis.stock_levels",
							PG_GETARG_DATUM(0),
							PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
							PG_ARGISNULL(2),
							PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3),
							PG_ARGISNULL(3),
							false, 0, quantity, threshold));
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
 * of them at commit, makes them reload.
 */
PG_FUNCTION_INFO_V1(bis__items_changed);

Datum
bis__items_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"bis._items_changed")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/*
 * bis._check_columns(tbl, sku_column, quantity_column, locale_column,
 *					  external_id_column): raise the error the trigger would
 * raise for these columns, so that bis.track() refuses them up front.
 */
PG_FUNCTION_INFO_V1(bis__check_columns);

Datum
bis__check_columns(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *names[4];
	TrackedTable tt = {0};
	Relation	rel;
	int			i;

	for (i = 0; i < 4; i++)
		names[i] = PG_ARGISNULL(i + 1) ? NULL : NameStr(*PG_GETARG_NAME(i + 1));

	rel = relation_open(relid, AccessShareLock);
	resolve_columns(&tt, rel, names);
	relation_close(rel, AccessShareLock);

	PG_RETURN_VOID();
}

/*
 * bis._enqueued_total(): how many notifications this backend's restocks have
 * enqueued so far.  bis.set_stock() reports the difference it made.
 */
PG_FUNCTION_INFO_V1(bis__enqueued_total);

Datum
bis__enqueued_total(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(enqueued_total);
}
