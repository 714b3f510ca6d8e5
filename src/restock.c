/*-------------------------------------------------------------------------
 *
 * restock.c
 *	  A crossing becomes a restock event and notifications; the wake-up.
 *
 * restock() is the one entry point of a crossing, from the stock trigger and
 * from bis._new_stock_level(): it takes the SKU's turn (the item's row lock),
 * finds the first chunk of matching subscriptions with an index walk
 * (matching.c), and in one statement takes over the SKU's open restock of
 * the same stock, moves those subscriptions into bis.notifications and
 * writes the restock event.  Later chunks and waves go through bis._expand(),
 * called by bis.claim() and bis.expand() once the stock transaction has
 * committed.  Each statement is prepared once per backend and kept.
 *
 * A transaction that left notifications pending wakes the mailers with one
 * NOTIFY, sent as it commits (see wake_mailers()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "bis.h"

/* notifications enqueued by this backend so far; see bis._enqueued_total() */
int64		bis_enqueued_total = 0;

/*
 * The SKU's turn: crossings and expansions of one SKU take turns on its item
 * row, so that two restocks never take its subscriptions in different orders.
 * $1 sku, $2 bis.wave_per_unit, $3 bis.restock_dwell.  Returns what the
 * restock-time rules need: whether alerts are on, the subscribers per unit
 * of a wave (NULL: no waves), whether the item is active, its price, and the
 * dwell.
 */
static const char turn_sql[] =
"SELECT i.alerts_enabled, coalesce(i.wave_per_unit, nullif($2, 0)),"
"       i.status OPERATOR(pg_catalog.=) 'active', i.price, coalesce(i.restock_dwell, $3)"
"  FROM bis.items i WHERE i.sku OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE";

/*
 * The same where bis's tables are distributed (Citus): bis.items is then a
 * reference table, which is never locked on the restock path; the turn is
 * the SKU's row in bis.restock_turns, a table co-located with its stock and
 * subscriptions, inserted at the SKU's first restock.
 */
static const char turn_distributed_sql[] =
"WITH turn AS ("
"    INSERT INTO bis.restock_turns AS t (sku) VALUES ($1)"
"    ON CONFLICT (sku, tenant) DO UPDATE SET sku = excluded.sku RETURNING t.sku"
")"
" SELECT i.alerts_enabled, coalesce(i.wave_per_unit, nullif($2, 0)),"
"        i.status OPERATOR(pg_catalog.=) 'active', i.price, coalesce(i.restock_dwell, $3)"
"   FROM turn, bis.items i WHERE i.sku OPERATOR(pg_catalog.=) turn.sku";

enum
{
	T_ALERTS_ENABLED, T_WAVE_PER_UNIT, T_ACTIVE, T_PRICE, T_DWELL
};

/*
 * A crossing that notifies nobody (no such item, its alerts are off, or it is
 * not active) is logged: $1 sku, $2 locale, $3 external_id, $4 old quantity,
 * $5 new quantity, $6 threshold, $7 source table, $8 subscriptions held back,
 * $9 the rule that held them, $10 the kind, $11 the price before a drop.
 */
static const char logged_sql[] =
"INSERT INTO bis.restock_events (id, sku, locale, external_id, old_quantity, new_quantity,"
"                                threshold, source_table, matched, enqueued, held_back, kind,"
"                                price_before)"
" VALUES (pg_catalog.nextval('bis.restock_events_id_seq'::pg_catalog.regclass),"
"         $1, $2, $3, $4, $5, $6, $7, $8, 0, bis._held_back('{}', $9, $8), $10, $11)";

/*
 * A crossing under a dwell notifies nobody yet: its restock waits out the
 * dwell as wave 0, and bis._next_expansion() starts the first wave if the
 * stock is still there when it ends.  $1 sku, $2 locale, $3 external_id, $4
 * old quantity, $5 new quantity, $6 threshold, $7 source table, $8 the SKU's
 * newest active subscription, $9 the dwell.  A restock of the same stock
 * still under way is taken over.
 */
static const char dwell_sql[] =
"WITH stopped AS ("
"    UPDATE bis.restock_events e SET expansion = 'stopped', next_wave_at = NULL"
"     WHERE e.expansion IN ('expanding', 'waiting') AND e.sku OPERATOR(pg_catalog.=) $1"
"       AND e.locale IS NOT DISTINCT FROM $2 AND e.external_id IS NOT DISTINCT FROM $3"
"       AND e.kind OPERATOR(pg_catalog.=) 'back_in_stock'"
")"
" INSERT INTO bis.restock_events"
"        (id, sku, locale, external_id, old_quantity, new_quantity, threshold, source_table,"
"         matched, enqueued, expansion, max_subscription_id, wave, wave_quota, next_wave_at)"
" VALUES (pg_catalog.nextval('bis.restock_events_id_seq'::pg_catalog.regclass),"
"         $1, $2, $3, $4, $5, $6, $7, 0, 0, 'waiting', $8, 0, 0,"
"         pg_catalog.now() OPERATOR(pg_catalog.+) $9)";

/*
 * The subscriptions a chunk uses become its notifications, in one statement:
 * a subscription leaves bis.subscriptions as its notification is written, and
 * one that is no longer active (cancelled meanwhile) is skipped.  The rows
 * are those the index walk found, by their TIDs; those it found too old
 * (EXPIRED) expire.  ev is the restock event's id, KIND its notifications'
 * kind.  The notifications for which MINE is true are claimed at once by
 * worker W, leased for L.  Ids are taken here rather than by the column's
 * default, which a Citus shard has not; the sort comes first, so that they
 * follow the subscriptions' order.
 */
#define USED_AND_MADE(SKU, TIDS, EXPIRED, KIND, MINE, W, L) \
"expired AS ("																	\
"    UPDATE bis.subscriptions s SET status = 'expired'"							\
"     WHERE s.ctid OPERATOR(pg_catalog.=) ANY (" EXPIRED ")"					\
"       AND s.sku OPERATOR(pg_catalog.=) " SKU									\
"       AND s.status OPERATOR(pg_catalog.=) 'active'"							\
"    RETURNING 1"																\
"), used AS ("																		\
"    DELETE FROM bis.subscriptions s"											\
"     WHERE s.ctid OPERATOR(pg_catalog.=) ANY (" TIDS ")"						\
"       AND s.sku OPERATOR(pg_catalog.=) " SKU									\
"       AND s.status OPERATOR(pg_catalog.=) 'active'"							\
"    RETURNING s.id, s.contact_id, s.locale, s.external_id, s.channel, s.created_at,"	\
"              s.tenant"																\
"), made AS ("																	\
"    INSERT INTO bis.notifications AS n"										\
"           (id, subscription_id, restock_event_id, subscribed_at, contact_id, sku, locale,"	\
"            external_id, channel, kind, status, claimed_by, claimed_at, claimed_until,"	\
"            attempts, tenant)"														\
"    SELECT pg_catalog.nextval('bis.notifications_id_seq'::pg_catalog.regclass),"	\
"           u.id, ev.id, u.created_at, u.contact_id, " SKU ", u.locale, u.external_id,"	\
"           u.channel, " KIND ", CASE WHEN k.mine THEN 'claimed' ELSE 'pending' END,"	\
"           CASE WHEN k.mine THEN " W " END,"									\
"           CASE WHEN k.mine THEN pg_catalog.now() END,"							\
"           CASE WHEN k.mine THEN pg_catalog.now() OPERATOR(pg_catalog.+) " L " END,"	\
"           CASE WHEN k.mine THEN 1 ELSE 0 END, u.tenant"							\
"      FROM used u, ev, LATERAL (SELECT " MINE " AS mine) k"					\
"     ORDER BY u.id"															\
"    RETURNING n.id, n.status"													\
"), counted AS ("																\
"    SELECT pg_catalog.count(*)::integer AS n,"								\
"           (SELECT pg_catalog.count(*) FROM expired)::integer AS expired,"	\
"           (pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'pending'))::integer AS pending,"	\
"           pg_catalog.array_agg(m.id ORDER BY m.id)"							\
"               FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'claimed') AS claimed"	\
"      FROM made m"																\
")"

/*
 * The first chunk, in the stock transaction: $1 sku, $2 locale, $3
 * external_id, $4 old quantity, $5 new quantity, $6 threshold, $7 source
 * table, $8 the rows found, $9 whether there may be more, $10 the first
 * wave's size (NULL: no waves), $11 the SKU's newest active subscription, $12
 * the last one passed, $13 bis.wave_interval, $14 the rows found too old, $15
 * the subscriptions held back by their maximum price, $16 and $17 those of
 * another locale and another external id, $18 the kind (back_in_stock, or
 * price_drop), $19 the price before a drop, $20 the price drops whose price is
 * not reached.  A restock of the same stock and kind still under way is taken
 * over by this one.  Returns the number enqueued.
 */
static const char first_chunk_sql[] =
"WITH ev AS (SELECT pg_catalog.nextval('bis.restock_events_id_seq'::pg_catalog.regclass) AS id"
"), stopped AS ("
"    UPDATE bis.restock_events e SET expansion = 'stopped', next_wave_at = NULL"
"     WHERE e.expansion IN ('expanding', 'waiting') AND e.sku OPERATOR(pg_catalog.=) $1"
"       AND e.locale IS NOT DISTINCT FROM $2 AND e.external_id IS NOT DISTINCT FROM $3"
"       AND e.kind OPERATOR(pg_catalog.=) $18"
"), "
USED_AND_MADE("$1", "$8", "$14", "$18", "false", "NULL::pg_catalog.text", "NULL::pg_catalog.interval")
" INSERT INTO bis.restock_events"
"        (id, sku, locale, external_id, old_quantity, new_quantity, threshold, source_table,"
"         matched, enqueued, held_back, expansion, max_subscription_id, last_subscription_id,"
"         wave_quota, next_wave_at, kind, price_before)"
" SELECT ev.id, $1, $2, $3, $4, $5, $6, $7,"
"        c.n OPERATOR(pg_catalog.+) c.expired OPERATOR(pg_catalog.+) $15, c.n,"
"        bis._held_back(bis._held_back(bis._held_back(bis._held_back(bis._held_back('{}',"
"            'expired', c.expired), 'over_price', $15), 'other_locale', $16),"
"            'other_external_id', $17), 'price_not_reached', $20),"
"        CASE WHEN NOT $9 THEN 'done'"
"             WHEN $10 OPERATOR(pg_catalog.-) c.n OPERATOR(pg_catalog.<=) 0 THEN 'waiting'"
"             ELSE 'expanding' END,"
"        $11, $12, $10 OPERATOR(pg_catalog.-) c.n,"
"        CASE WHEN $9 AND $10 OPERATOR(pg_catalog.-) c.n OPERATOR(pg_catalog.<=) 0"
"             THEN pg_catalog.now() OPERATOR(pg_catalog.+)"
"                  coalesce((SELECT i.wave_interval FROM bis.items i"
"                                        WHERE i.sku OPERATOR(pg_catalog.=) $1), $13) END,"
"        $18, $19"
"   FROM ev, counted c"
" RETURNING enqueued";

/*
 * A later chunk, after the stock transaction: $1 the restock event, $2 sku,
 * $3 the rows found, $4 whether there may be more, $5 the last subscription
 * passed, $6 worker, $7 lease, $8 channels, $9 bis.wave_interval, $10 the
 * rows found too old, $11 the subscriptions held back by their maximum price,
 * $12 and $13 those of another locale and another external id, $14 the kind
 * of the restock, $15 the price drops whose price is not reached.  Returns the
 * number enqueued, those left pending, and the ids claimed by worker.
 */
static const char next_chunk_sql[] =
"WITH ev AS (SELECT $1::pg_catalog.int8 AS id), "
USED_AND_MADE("$2", "$3", "$10", "$14",
			  "$6::pg_catalog.text IS NOT NULL AND ($8::pg_catalog.text[] IS NULL"
			  " OR u.channel OPERATOR(pg_catalog.=) ANY ($8))",
			  "$6", "$7")
" UPDATE bis.restock_events e"
"    SET matched = e.matched OPERATOR(pg_catalog.+) c.n OPERATOR(pg_catalog.+) c.expired"
"                  OPERATOR(pg_catalog.+) $11,"
"        held_back = bis._held_back(bis._held_back(bis._held_back(bis._held_back(bis._held_back("
"            e.held_back, 'expired', c.expired), 'over_price', $11), 'other_locale', $12),"
"            'other_external_id', $13), 'price_not_reached', $15),"
"        enqueued = e.enqueued OPERATOR(pg_catalog.+) c.n,"
"        last_subscription_id = $5,"
"        wave_quota = e.wave_quota OPERATOR(pg_catalog.-) c.n,"
"        expansion = CASE WHEN NOT $4 THEN 'done'"
"                         WHEN e.wave_quota OPERATOR(pg_catalog.-) c.n OPERATOR(pg_catalog.<=) 0"
"                         THEN 'waiting' ELSE 'expanding' END,"
"        next_wave_at = CASE WHEN $4 AND e.wave_quota OPERATOR(pg_catalog.-) c.n OPERATOR(pg_catalog.<=) 0"
"                            THEN pg_catalog.now() OPERATOR(pg_catalog.+)"
"                                 coalesce((SELECT i.wave_interval FROM bis.items i"
"                                                       WHERE i.sku OPERATOR(pg_catalog.=) e.sku), $9) END"
"   FROM counted c"
"  WHERE e.id OPERATOR(pg_catalog.=) $1"
" RETURNING c.n, c.pending, c.claimed";

static SPIPlanPtr turn_plan = NULL;
static SPIPlanPtr logged_plan = NULL;
static SPIPlanPtr dwell_plan = NULL;
static SPIPlanPtr item_price_plan = NULL;
static SPIPlanPtr first_chunk_plan = NULL;
static SPIPlanPtr next_chunk_plan = NULL;

/*
 * Notifications this transaction enqueued as pending, and, for each
 * subtransaction that enqueued some, the count when it began to: a
 * subtransaction rolled back takes its share with it.
 */
typedef struct SubxactMark
{
	SubTransactionId subid;
	int64		pending_before;
	struct SubxactMark *next;
} SubxactMark;

static int64 xact_pending = 0;
static SubxactMark *subxact_marks = NULL;


/* The version of bis's SQL installed in this database, or NULL */
static char *
installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("bis"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Whether this database has the SQL of this library's version, checked once
 * a transaction.  Between installing a new bis and ALTER EXTENSION bis UPDATE,
 * the tables are not those this code writes: a crossing is then skipped with
 * a warning rather than failing the shop's own statement.
 */
static bool
sql_is_current(const Crossing *c)
{
	static LocalTransactionId checked_in = InvalidLocalTransactionId;
	static bool current = false;

	if (checked_in != MyProc->lxid)
	{
		char	   *version = installed_version();

		current = version != NULL && strcmp(version, BIS_VERSION) == 0;
		checked_in = MyProc->lxid;
		if (!current)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("restock of SKU \"%s\" in table %s not recorded",
							TextDatumGetCString(c->sku), c->source),
					 errdetail("The bis library is version %s, and this database has the SQL of version %s.",
							   BIS_VERSION, version ? version : "(none)"),
					 errhint("Update the extension with ALTER EXTENSION bis UPDATE.")));
	}
	return current;
}

/*
 * Prepare a statement once for the life of the backend, as it is; caller is
 * in SPI.
 *
 * Its plan is generic: bis's statements reach their rows by key, id or row
 * id, where a plan for the values at hand is no better, and the plan cache
 * left to itself may choose those anyway and plan again at every execution
 * (it did for a restock's first chunk with 1,500 subscriptions: 210 us of
 * planning for 90 us of work).
 */
SPIPlanPtr
prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes,
										   CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * Prepare a statement on bis's tables once for the life of the backend;
 * caller is in SPI.  sql must be a text the caller keeps, such as a static
 * one.
 */
SPIPlanPtr
prepare_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	/* on Citus, in a shard group: a plan for its shards (distribute.c) */
	if (current_shard_group != NULL)
		return prepare_in_group(sql, nargs, argtypes);
	return prepare_once(plan, sql, nargs, argtypes);
}

/* The owner of a function: what bis's C functions run their SQL as */
Oid
function_owner(Oid fn_oid)
{
	HeapTuple	proctup;
	Oid			owner;

	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(proctup))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(proctup))->proowner;
	ReleaseSysCache(proctup);
	return owner;
}

/*
 * Run what follows as role.  bis's own statements run as the extension's
 * owner, as PostgreSQL's foreign key triggers run theirs: whoever may change
 * the stock causes restocks without any right on bis's tables.  What reads an
 * application's table runs as that table's owner, restricted, with a safe
 * search_path, as VACUUM and ANALYZE do: the table's index expressions,
 * predicates and constraints are its owner's code, and never run with bis's
 * privileges.  An error on the way restores the user and the settings as the
 * transaction aborts.
 */
void
begin_as_role(Oid role, bool restricted, AsRole *as)
{
	/* bis's own statements: under the tenants' policies, once enabled */
	if (!restricted)
		check_tenant_isolation(role);
	GetUserIdAndSecContext(&as->save_userid, &as->save_sec_context);
	SetUserIdAndSecContext(role, as->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
	as->save_nestlevel = NewGUCNestLevel();
	set_local("search_path", "pg_catalog, pg_temp");
}

/* Set a setting until the GUC nest level the caller opened ends */
void
set_local(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * bis's own statements find their rows by key, and a restock's chunk takes
 * its subscriptions by TID: planned with statistics of a queue that was
 * empty a moment ago, or costing each TID as a random page read, a plan could
 * read a whole table instead, or read a small one again for every row.  They
 * are planned without sequential scans, in a GUC nest level the caller
 * opened.
 */
void
by_key_only(void)
{
	set_local("enable_seqscan", "off");
}

void
end_as_role(AsRole *as)
{
	AtEOXact_GUC(false, as->save_nestlevel);
	SetUserIdAndSecContext(as->save_userid, as->save_sec_context);
}

/* Count notifications left pending, for the wake-up at commit */
static void
note_pending(int64 n)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (n <= 0)
		return;
	if (subid != TopSubTransactionId &&
		(subxact_marks == NULL || subxact_marks->subid != subid))
	{
		SubxactMark *mark = MemoryContextAlloc(TopTransactionContext,
											   sizeof(SubxactMark));

		mark->subid = subid;
		mark->pending_before = xact_pending;
		mark->next = subxact_marks;
		subxact_marks = mark;
	}
	xact_pending += n;
}

/*
 * Whether this transaction sends the wake-up.  Every NOTIFY takes a
 * database-wide lock at commit, so concurrent restocks take turns: one that
 * gets bis's wake-up lock as it commits notifies, and one that finds the lock
 * taken leaves the wake-up to that one, which is committing too.  The lock is
 * an object lock on the bis extension with sub-id 1, which no SQL command
 * takes: no role can hold it, and bis holds it only while a transaction
 * commits.  If the holder's wake-up comes before this transaction's rows are
 * visible, the mailers' timer delivers them.
 */
static bool
wake_mailers(void)
{
	Oid			extension = get_extension_oid("bis", true);

	return OidIsValid(extension) &&
		ConditionalLockDatabaseObject(ExtensionRelationId, extension, 1,
									  ExclusiveLock);
}

static void
restock_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/*
			 * Async_Notify folds identical notifications into one, and the
			 * payload is empty: the tables hold the details, and NOTIFY
			 * carries no personal data.  A prepared transaction sends none:
			 * PostgreSQL refuses NOTIFY there, and the mailers poll.
			 */
			if (xact_pending > 0 && bis_notify && wake_mailers())
				Async_Notify(BIS_CHANNEL, "");
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			xact_pending = 0;
			subxact_marks = NULL;	/* freed with TopTransactionContext */
			break;
		default:
			break;
	}
}

static void
restock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	SubxactMark *mark = subxact_marks;

	if (mark == NULL || mark->subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		xact_pending = mark->pending_before;
		subxact_marks = mark->next;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* what it enqueued is its parent's now */
		if (mark->next != NULL && mark->next->subid == parentSubid)
			subxact_marks = mark->next;
		else
			mark->subid = parentSubid;
	}
}

void
bis_restock_init(void)
{
	RegisterXactCallback(restock_xact_callback, NULL);
	RegisterSubXactCallback(restock_subxact_callback, NULL);
}

/*
 * The rows the walk found, as a tid[]: construct_array wants Datums, and a
 * TID is passed by reference, so point at each.
 */
static Datum
tids_datum(ItemPointerData *tids, int n)
{
	Datum	   *elems;
	int			i;

	if (n == 0)
		return PointerGetDatum(construct_empty_array(TIDOID));
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = PointerGetDatum(&tids[i]);
	return PointerGetDatum(construct_array(elems, n, TIDOID,
										   sizeof(ItemPointerData), false,
										   TYPALIGN_SHORT));
}

/* A wave's size: per_unit subscribers per unit in stock, without overflow */
static int64
wave_quota(int32 per_unit, int64 quantity)
{
	int64		quota;

	if (pg_mul_s64_overflow(per_unit, quantity, &quota))
		quota = PG_INT64_MAX;
	return quota;
}

static Datum
interval_seconds(int64 seconds)
{
	Interval   *result = (Interval *) palloc0(sizeof(Interval));

	result->time = seconds * USECS_PER_SEC;
	return IntervalPGetDatum(result);
}

/* An interval's length in seconds, a month counted as 30 days */
static int64
seconds_of(Datum d)
{
	Interval   *i = DatumGetIntervalP(d);

	return i->time / USECS_PER_SEC + (i->day + (int64) i->month * DAYS_PER_MONTH) * SECS_PER_DAY;
}

/* The filter of a walk: the restock's keys, and the rules of the moment */
static void
filter_for(MatchFilter *f, Datum locale, Datum external_id, bool price_rule, Datum price)
{
	f->locale = locale;
	f->external_id = external_id;
	f->created_before = bis_subscription_ttl > 0 ?
		GetCurrentTransactionStartTimestamp() - bis_subscription_ttl * USECS_PER_SEC : 0;
	f->price_rule = price_rule;
	f->price = price;
	f->price_drop = false;
	f->min_percent = bis_price_drop_min_percent;
}

/*
 * Walk the index of active subscriptions with a snapshot taken now: in READ
 * COMMITTED, a subscription committed while this transaction waited for the
 * SKU's turn is seen.
 */
static void
walk(Datum sku, const MatchFilter *f, int64 after_id, int64 upto_id,
	 int64 limit, bool want_tids, Matches *m, int64 *newest)
{
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	if (newest != NULL)
		upto_id = *newest = newest_active_subscription(sku, f->price_drop);
	if (m != NULL)
		match_subscriptions(sku, f, after_id, upto_id, limit, want_tids, m);
	PopActiveSnapshot();
}

/* Run a statement prepared once; caller is in SPI */
static void
execute_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			 Datum *values, const char *nulls, int expected)
{
	int			ret = SPI_execute_plan(prepare_kept(plan, sql, nargs, argtypes),
									   values, nulls, false, 0);

	if (ret != expected)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
}

/*
 * Record one crossing and enqueue the first chunk of its notifications;
 * returns how many.  The SQL runs as the owner of the function whose OID is
 * given (the trigger's, or bis._new_stock_level's): the extension's owner.
 *
 * The restock-time rules: an item that is not active, or whose alerts are
 * off, notifies nobody and its subscriptions wait; under a dwell, nobody yet
 * (see dwell_sql); otherwise subscriptions too old expire and those whose
 * maximum price the item is above wait, and the rest are notified, a chunk
 * and a wave at a time.
 */
static int
restock_here(Oid as_owner_of, const Crossing *c)
{
	AsRole		as;
	Datum		values[20];
	char		nulls[20];
	Datum		item[5];
	bool		item_null[5];
	const char *held_by = NULL;
	MatchFilter f;
	int64		quota = 0;
	int64		take;
	int64		newest;
	Matches		m;
	int			enqueued = 0;

	if (!sql_is_current(c))
		return 0;
	begin_as_role(function_owner(as_owner_of), false, &as);
	by_key_only();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the SKU's turn, and what the item's rules say */
	{
		Oid			argtypes[3] = {TEXTOID, INT4OID, INTERVALOID};

		values[0] = c->sku;
		values[1] = Int32GetDatum(bis_wave_per_unit);
		values[2] = interval_seconds(bis_restock_dwell);
		execute_kept(&turn_plan, current_shard_group ? turn_distributed_sql : turn_sql,
					 3, argtypes, values, NULL, SPI_OK_SELECT);
	}
	if (SPI_processed == 1)
	{
		heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, item, item_null);
		if (!DatumGetBool(item[T_ACTIVE]))
			held_by = "item_not_active";
		else if (!DatumGetBool(item[T_ALERTS_ENABLED]))
			held_by = "alerts_disabled";
	}
	else
		held_by = "";			/* no such item: logged, nothing matched */
	filter_for(&f, c->locale, c->external_id, false, (Datum) 0);
	f.price_drop = c->price_drop;

	values[0] = c->sku;
	values[1] = c->locale;
	values[2] = c->external_id;
	values[3] = Int64GetDatum(c->old_quantity);
	values[4] = Int64GetDatum(c->new_quantity);
	values[5] = Int32GetDatum(c->threshold);
	values[6] = CStringGetTextDatum(c->source);
	memset(nulls, ' ', sizeof(nulls));
	nulls[1] = c->locale == (Datum) 0 ? 'n' : ' ';
	nulls[2] = c->external_id == (Datum) 0 ? 'n' : ' ';
	nulls[3] = c->has_old ? ' ' : 'n';

	if (held_by != NULL)
	{
		Oid			argtypes[11] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
		INT4OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, NUMERICOID};

		/* the subscriptions that would have been told wait */
		m.n = 0;
		if (*held_by != '\0')
			walk(c->sku, &f, 0, -1, PG_INT64_MAX, false, &m, NULL);
		values[7] = Int32GetDatum(m.n);
		values[8] = CStringGetTextDatum(held_by);
		values[9] = CStringGetTextDatum(c->price_drop ? "price_drop" : "back_in_stock");
		values[10] = c->price_before;
		nulls[10] = c->price_drop ? ' ' : 'n';
		execute_kept(&logged_plan, logged_sql, 11, argtypes, values, nulls, SPI_OK_INSERT);
	}
	else if (!c->price_drop && seconds_of(item[T_DWELL]) > 0)
	{
		Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
		INT4OID, TEXTOID, INT8OID, INTERVALOID};

		walk(c->sku, &f, 0, 0, 0, false, NULL, &newest);
		values[7] = Int64GetDatum(newest);
		values[8] = item[T_DWELL];
		execute_kept(&dwell_plan, dwell_sql, 9, argtypes, values, nulls, SPI_OK_INSERT);
	}
	else
	{
		Oid			argtypes[20] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
			INT4OID, TEXTOID, TIDARRAYOID, BOOLOID, INT8OID, INT8OID, INT8OID,
			INTERVALOID, TIDARRAYOID, INT4OID, INT4OID, INT4OID, TEXTOID, NUMERICOID,
		INT4OID};
		/* a price drop goes out at once: waves pace the stock of a restock */
		bool		has_quota = !item_null[T_WAVE_PER_UNIT] && !c->price_drop;
		bool		isnull;

		if (has_quota)
			quota = wave_quota(DatumGetInt32(item[T_WAVE_PER_UNIT]), c->new_quantity);
		take = has_quota ? Min(quota, bis_expand_chunk) : bis_expand_chunk;
		filter_for(&f, c->locale, c->external_id, true,
				   item_null[T_PRICE] ? (Datum) 0 : item[T_PRICE]);
		f.price_drop = c->price_drop;
		walk(c->sku, &f, 0, 0, take, true, &m, &newest);

		values[7] = tids_datum(m.tids, m.n);
		values[8] = BoolGetDatum(m.n == take);
		values[9] = Int64GetDatum(quota);
		nulls[9] = has_quota ? ' ' : 'n';
		values[10] = Int64GetDatum(newest);
		values[11] = Int64GetDatum(m.last_id);
		values[12] = interval_seconds(bis_wave_interval);
		values[13] = tids_datum(m.expired_tids, m.n_expired);
		values[14] = Int32GetDatum(m.n_over_price);
		values[15] = Int32GetDatum(m.n_other_locale);
		values[16] = Int32GetDatum(m.n_other_external_id);
		values[17] = CStringGetTextDatum(c->price_drop ? "price_drop" : "back_in_stock");
		values[18] = c->price_before;
		nulls[18] = c->price_drop ? ' ' : 'n';
		values[19] = Int32GetDatum(m.n_price_not_reached);
		execute_kept(&first_chunk_plan, first_chunk_sql, 20, argtypes, values, nulls,
					 SPI_OK_INSERT_RETURNING);
		enqueued = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	}

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);

	bis_enqueued_total += enqueued;
	note_pending(enqueued);
	return enqueued;
}

/*
 * Record one crossing, in the SKU's shard group where bis's tables are
 * distributed (Citus): the trigger then runs on the node that holds the
 * SKU's shards, and works on them there.
 */
int
restock(Oid as_owner_of, const Crossing *c)
{
	AsRole		as;
	ShardGroup *group;
	ShardGroup *before;
	int			enqueued;

	if (!bis_is_distributed())
		return restock_here(as_owner_of, c);

	begin_as_role(function_owner(as_owner_of), false, &as);
	group = shard_group_of_sku(c->sku);
	end_as_role(&as);

	/*
	 * A table tracked but not distributed with bis's tables (a local table on
	 * the coordinator): its restocks cannot be recorded where the SKU's
	 * shards are, and the shop's own statement must not fail for it.
	 */
	if (!shard_group_is_here(group))
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restock of SKU \"%s\" in table %s not recorded",
						TextDatumGetCString(c->sku), c->source),
				 errdetail("bis's tables are distributed, and the SKU's shards are not on this node."),
				 errhint("Distribute the table beside bis's tables with bis.distribute('%s').",
						 c->source)));
		return 0;
	}
	before = use_shard_group(group);
	PG_TRY();
	{
		enqueued = restock_here(as_owner_of, c);
	}
	PG_FINALLY();
	{
		use_shard_group(before);
	}
	PG_END_TRY();
	return enqueued;
}

/*
 * bis._expand(ev bis.restock_events, max_rows integer, worker text,
 *			   lease interval, channels text[], OUT enqueued integer,
 *			   OUT claimed bigint[])
 *
 * The next chunk of a restock that the caller has locked, and whose SKU's
 * turn it holds (bis._next_expansion).  With a worker, the notifications of
 * its channels are claimed by it at once and their ids returned.
 */
PG_FUNCTION_INFO_V1(bis__expand);

/* $1 sku: the item's price now, for the maximum prices of a later chunk */
static const char item_price_sql[] =
"SELECT i.price FROM bis.items i WHERE i.sku OPERATOR(pg_catalog.=) $1";

Datum
bis__expand(PG_FUNCTION_ARGS)
{
	HeapTupleHeader ev;
	TupleDesc	tupdesc;
	Datum		event_id;
	Datum		sku;
	Datum		locale;
	Datum		external_id;
	Datum		price = (Datum) 0;
	int64		last_id;
	int64		upto_id;
	bool		has_quota;
	int64		quota;
	int64		take;
	bool		isnull;
	MatchFilter f;
	Matches		m;
	Datum		values[15];
	char		nulls[15];
	bool		price_drop;
	Datum		result[2];
	bool		result_nulls[2] = {false, false};
	int			pending;
	int			nestlevel;
	Oid			argtypes[15] = {INT8OID, TEXTOID, TIDARRAYOID, BOOLOID, INT8OID,
		TEXTOID, INTERVALOID, TEXTARRAYOID, INTERVALOID, TIDARRAYOID,
	INT4OID, INT4OID, INT4OID, TEXTOID, INT4OID};
	Datum		kind;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "bis._expand needs a restock event and a chunk size");
	/* run by bis's own functions, as the role that owns them */
	check_tenant_isolation(GetUserId());
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	ev = PG_GETARG_HEAPTUPLEHEADER(0);
	event_id = GetAttributeByName(ev, "id", &isnull);
	sku = GetAttributeByName(ev, "sku", &isnull);
	locale = GetAttributeByName(ev, "locale", &isnull);
	if (isnull)
		locale = (Datum) 0;
	external_id = GetAttributeByName(ev, "external_id", &isnull);
	if (isnull)
		external_id = (Datum) 0;
	last_id = DatumGetInt64(GetAttributeByName(ev, "last_subscription_id", &isnull));
	upto_id = DatumGetInt64(GetAttributeByName(ev, "max_subscription_id", &isnull));
	quota = DatumGetInt64(GetAttributeByName(ev, "wave_quota", &has_quota));
	has_quota = !has_quota;
	kind = GetAttributeByName(ev, "kind", &isnull);
	price_drop = strcmp(TextDatumGetCString(kind), "price_drop") == 0;

	take = PG_GETARG_INT32(1);
	if (has_quota)
		take = Min(take, Max(quota, 0));

	nestlevel = NewGUCNestLevel();
	by_key_only();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = TEXTOID;

		execute_kept(&item_price_plan, item_price_sql, 1, &argtype, &sku, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			price = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (isnull)
				price = (Datum) 0;
		}
	}
	filter_for(&f, locale, external_id, true, price);
	f.price_drop = price_drop;
	walk(sku, &f, last_id, upto_id, take, true, &m, NULL);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = event_id;
	values[1] = sku;
	values[2] = tids_datum(m.tids, m.n);
	values[3] = BoolGetDatum(m.n == take);
	values[4] = Int64GetDatum(m.last_id > 0 ? m.last_id : last_id);
	values[5] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[5] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[6] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[6] = PG_ARGISNULL(3) ? 'n' : ' ';
	values[7] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[7] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[8] = interval_seconds(bis_wave_interval);
	values[9] = tids_datum(m.expired_tids, m.n_expired);
	values[10] = Int32GetDatum(m.n_over_price);
	values[11] = Int32GetDatum(m.n_other_locale);
	values[12] = Int32GetDatum(m.n_other_external_id);
	values[13] = kind;
	values[14] = Int32GetDatum(m.n_price_not_reached);
	execute_kept(&next_chunk_plan, next_chunk_sql, 15, argtypes, values, nulls,
				 SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "restock event " INT64_FORMAT " could not be updated",
			 DatumGetInt64(event_id));

	result[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	pending = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	result[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &result_nulls[1]);
	/* the claimed ids outlive SPI */
	if (!result_nulls[1])
		result[1] = SPI_datumTransfer(result[1], false, -1);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	AtEOXact_GUC(false, nestlevel);

	bis_enqueued_total += DatumGetInt32(result[0]);
	note_pending(pending);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  result, result_nulls)));
}

/*
 * The stock of a SKU now, if it is in stock: $1 sku.  Returns the quantity
 * and the threshold, from bis.stock_levels or the table of the SKU's last
 * restock, read as that table's owner.
 */
static const char in_stock_sql[] =
"SELECT s.quantity, s.threshold FROM bis._in_stock($1) s";

static SPIPlanPtr in_stock_plan = NULL;

/*
 * bis._price_drop_trigger(): a row trigger on bis.items, AFTER UPDATE OF
 * price WHEN (NEW.price < OLD.price).  A price drop of an item in stock
 * tells its price-drop subscribers whose price it reaches, through the
 * restock's own path: matching, chunks, the queue and its rules.
 */
PG_FUNCTION_INFO_V1(bis__price_drop_trigger);

Datum
bis__price_drop_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	Crossing	c = {0};
	AsRole		as;
	bool		isnull;
	bool		in_stock;
	Oid			argtype = TEXTOID;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bis._price_drop_trigger() must be fired FOR EACH ROW on UPDATE")));
	desc = RelationGetDescr(trigdata->tg_relation);
	c.sku = SPI_getbinval(trigdata->tg_newtuple, desc, SPI_fnumber(desc, "sku"), &isnull);
	c.price_before = SPI_getbinval(trigdata->tg_trigtuple, desc, SPI_fnumber(desc, "price"), &isnull);
	/*
	 * Nobody waits for a drop of this SKU's price: nothing to record.  On
	 * Citus there are no price-drop subscriptions (bis.subscribe refuses
	 * them), and this trigger fires on every node's copy of bis.items.
	 */
	if (isnull || bis_is_distributed() || newest_active_subscription(c.sku, true) == 0)
		return PointerGetDatum(NULL);

	begin_as_role(function_owner(fcinfo->flinfo->fn_oid), false, &as);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(prepare_kept(&in_stock_plan, in_stock_sql, 1, &argtype),
						   &c.sku, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	in_stock = SPI_processed == 1;
	if (in_stock)
	{
		c.new_quantity = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
		c.threshold = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);

	/* out of stock, a lower price tells nobody: there is nothing to buy */
	if (in_stock)
	{
		c.source = "bis.items";
		c.price_drop = true;
		restock(fcinfo->flinfo->fn_oid, &c);
	}
	return PointerGetDatum(NULL);
}

/*
 * bis._held_back(held jsonb, rule text, n bigint) RETURNS jsonb
 *
 * A restock event's held_back with n more subscriptions held back by rule.
 * Written in C because a chunk of a restock calls it five times: a SQL
 * function with its own search_path is not inlined, and would be parsed and
 * planned again at every call.
 */
PG_FUNCTION_INFO_V1(bis__held_back);

Datum
bis__held_back(PG_FUNCTION_ARGS)
{
	Jsonb	   *held;
	text	   *rule;
	int64		n;
	JsonbValue *before;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue	count;
	JsonbValue *added;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	held = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(held))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("held_back must be a JSON object")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_GETARG_INT64(2) <= 0)
		PG_RETURN_JSONB_P(held);
	rule = PG_GETARG_TEXT_PP(1);
	n = PG_GETARG_INT64(2);

	before = getKeyJsonValueFromContainer(&held->root, VARDATA_ANY(rule),
										  VARSIZE_ANY_EXHDR(rule), NULL);
	if (before != NULL && before->type == jbvNumeric)
	{
		Datum		earlier = DirectFunctionCall1(numeric_int8,
												  NumericGetDatum(before->val.numeric));

		if (pg_add_s64_overflow(n, DatumGetInt64(earlier), &n))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("held_back count out of range")));
	}

	key.type = jbvString;
	key.val.string.val = VARDATA_ANY(rule);
	key.val.string.len = VARSIZE_ANY_EXHDR(rule);
	count.type = jbvNumeric;
	count.val.numeric = int64_to_numeric(n);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	(void) pushJsonbValue(&state, WJB_KEY, &key);
	(void) pushJsonbValue(&state, WJB_VALUE, &count);
	added = pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	return DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(held),
							   JsonbPGetDatum(JsonbValueToJsonb(added)));
}
