/*-------------------------------------------------------------------------
 *
 * distribute.c
 *	  bis on Citus: the shards a restock, an expansion or a claim works on.
 *
 * bis.distribute() makes bis's tables keyed by SKU (stock levels,
 * subscriptions, restock events, notifications, the per-SKU turns and
 * purchases) distributed by sku in one co-location group, and the catalog
 * tables (items, contacts and their consents and push addresses, templates,
 * the signing key, delivery events) reference tables.
 * A restock then runs on the node that holds the SKU's shards, in the
 * trigger on the shard of the stock table that crossed.  There Citus allows
 * no distributed query, and bis.subscriptions is the node's empty stand-in
 * for the distributed table.  So while bis works on one SKU, or on one shard
 * group (a claim on a worker), it works on the relations of that group: its
 * statements are the same texts as on a single server, with each bis.<table>
 * that Citus distributes rewritten to the group's shard on this node (the
 * node's placement, for a reference table), prepared once per statement and
 * group and kept; its index walk opens the group's shard of
 * bis.subscriptions.  Reference tables are only read there, never locked.
 *
 * bis neither links to nor ships any of Citus.  It reads Citus's catalogs
 * (pg_dist_partition, pg_dist_shard, pg_dist_placement, pg_dist_local_group)
 * and calls its SQL functions only where they exist; without Citus, or
 * before bis.distribute(), all of this costs one cached flag.  What Citus
 * changes in its metadata comes with a relcache invalidation of the
 * distributed table, which resets what is cached here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bis.h"

/*
 * bis's tables that Citus may distribute: first those distributed by sku,
 * then the reference tables.  bis.send_windows stays a table of each node.
 */
static const char *const bis_tables[] = {
	"stock_levels", "subscriptions", "restock_events", "notifications", "restock_turns",
	"purchases",
	"items", "contacts", "consents", "templates", "signing_key", "push_tokens",
	"webpush_subscriptions", "delivery_events"
};

#define BIS_NTABLES ((int) lengthof(bis_tables))

/* The key of the group of the reference tables alone */
#define NODE_GROUP PG_INT64_MIN

/* The relations of one shard group on this node */
struct ShardGroup
{
	int64		key;			/* hash key: the shards' shardminvalue */
	char	   *names[BIS_NTABLES]; /* qualified shard names; NULL: the
									 * table's own (not distributed, or its
									 * shard is on another node) */
	int64		shardids[BIS_NTABLES];
};

/* A statement prepared for one shard group */
typedef struct GroupPlanKey
{
	const char *sql;			/* the statement's text, as its caller keeps
								 * it */
	int64		group;
} GroupPlanKey;

typedef struct GroupPlan
{
	GroupPlanKey key;
	SPIPlanPtr	plan;
} GroupPlan;

/* -1: not known yet; 0: no Citus, or bis's tables not distributed; 1 */
static int	distributed = -1;

/* bis's tables, whose relcache invalidation resets what is cached here */
static Oid	watched[BIS_NTABLES];

static MemoryContext citus_context = NULL;
static HTAB *groups = NULL;
static HTAB *group_plans = NULL;
static bool groups_stale = false;
static SPIPlanPtr group_of_sku_plan = NULL;
static SPIPlanPtr group_shards_plan = NULL;
static SPIPlanPtr logical_name_plan = NULL;

/* The group bis's statements run in now; NULL: bis's own tables */
ShardGroup *current_shard_group = NULL;

/*
 * The shard group of a SKU: the shardminvalue of its shard of
 * bis.subscriptions, which co-located shards share.
 */
static const char group_of_sku_sql[] =
"SELECT s.shardminvalue::pg_catalog.int8 FROM pg_catalog.pg_dist_shard s"
" WHERE s.shardid OPERATOR(pg_catalog.=)"
"       pg_catalog.get_shard_id_for_distribution_column('bis.subscriptions'::pg_catalog.regclass, $1)";

/*
 * The shards of group $2 (or of the reference tables alone, for NULL) of
 * bis's tables $1 that are on this node
 */
static const char group_shards_sql[] =
"SELECT s.logicalrelid::pg_catalog.oid, s.shardid"
"  FROM pg_catalog.pg_dist_shard s"
" WHERE s.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)"
"   AND (s.shardminvalue IS NULL OR s.shardminvalue::pg_catalog.int8 OPERATOR(pg_catalog.=) $2)"
"   AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement p, pg_catalog.pg_dist_local_group l"
"                WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid"
"                  AND p.groupid OPERATOR(pg_catalog.=) l.groupid)";

/*
 * The distributed table whose shard $1 is, if Citus names that shard $2
 * (qualified) or $3 (in schema public): a table named like a shard is not
 * one
 */
static const char logical_name_sql[] =
"SELECT s.logicalrelid::pg_catalog.oid FROM pg_catalog.pg_dist_shard s"
" WHERE s.shardid OPERATOR(pg_catalog.=) $1"
"   AND pg_catalog.shard_name(s.logicalrelid, s.shardid) OPERATOR(pg_catalog.=) ANY (ARRAY[$2, $3])";


/* Forget it all when Citus's metadata of one of bis's tables changes */
static void
invalidate_distribution(Datum arg, Oid relid)
{
	int			i;

	if (relid != InvalidOid)
	{
		for (i = 0; i < BIS_NTABLES; i++)
			if (watched[i] == relid)
				break;
		if (i == BIS_NTABLES)
			return;
	}
	distributed = -1;
	groups_stale = true;
}

static void
distribution_xact_callback(XactEvent event, void *arg)
{
	/* a group is only ever in use within a call that restores it */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		current_shard_group = NULL;
}

void
bis_distribute_init(void)
{
	CacheRegisterRelcacheCallback(invalidate_distribution, (Datum) 0);
	RegisterXactCallback(distribution_xact_callback, NULL);
}

/* Whether this database has Citus's catalogs */
static bool
has_citus(void)
{
	return OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE));
}

/*
 * Whether bis's tables are distributed by Citus here: bis.subscriptions is
 * in pg_dist_partition.  Cached until an invalidation of one of bis's
 * tables; without Citus it takes no query.
 */
bool
bis_is_distributed(void)
{
	Oid			nspid;
	int			i;

	if (distributed >= 0)
		return distributed == 1;

	nspid = get_namespace_oid("bis", true);
	for (i = 0; i < BIS_NTABLES; i++)
		watched[i] = OidIsValid(nspid) ? get_relname_relid(bis_tables[i], nspid) : InvalidOid;
	if (!OidIsValid(watched[1]) || !has_citus())
	{
		distributed = 0;
		return false;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = OIDOID;
		Datum		arg = ObjectIdGetDatum(watched[1]);
		bool		isnull;
		int			ret;

		ret = SPI_execute_with_args("SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p"
									" WHERE p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)",
									1, &argtype, &arg, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
		distributed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull)) ? 1 : 0;
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	return distributed == 1;
}

/*
 * Drop the groups and their plans once the metadata they came from changed,
 * unless one is in use (the next caller will).
 */
static void
forget_stale_groups(void)
{
	HASH_SEQ_STATUS seq;
	GroupPlan  *gp;

	if (!groups_stale || current_shard_group != NULL)
		return;
	if (group_plans != NULL)
	{
		hash_seq_init(&seq, group_plans);
		while ((gp = hash_seq_search(&seq)) != NULL)
			SPI_freeplan(gp->plan);
	}
	if (citus_context != NULL)
		MemoryContextReset(citus_context);
	groups = NULL;
	group_plans = NULL;
	groups_stale = false;
}

/* The shard group with this key, read from Citus's catalogs at first use */
static ShardGroup *
shard_group(int64 key)
{
	ShardGroup *g;
	bool		found;

	forget_stale_groups();
	if (citus_context == NULL)
		citus_context = AllocSetContextCreate(CacheMemoryContext, "bis shard groups",
											  ALLOCSET_SMALL_SIZES);
	if (groups == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(ShardGroup);
		ctl.hcxt = citus_context;
		groups = hash_create("bis shard groups", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	g = hash_search(groups, &key, HASH_FIND, &found);
	if (found)
		return g;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[2] = {OIDARRAYOID, INT8OID};
		Datum		values[2];
		char		nulls[2] = {' ', key == NODE_GROUP ? 'n' : ' '};
		Datum		oids[BIS_NTABLES];
		int			n = 0;
		int			i;
		uint64		r;
		int			ret;
		ShardGroup	built;

		for (i = 0; i < BIS_NTABLES; i++)
			if (OidIsValid(watched[i]))
				oids[n++] = ObjectIdGetDatum(watched[i]);
		values[0] = PointerGetDatum(construct_array(oids, n, OIDOID, sizeof(Oid),
													true, TYPALIGN_INT));
		values[1] = Int64GetDatum(key);
		ret = SPI_execute_plan(prepare_once(&group_shards_plan, group_shards_sql, 2, argtypes),
							   values, nulls, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));

		memset(&built, 0, sizeof(built));
		built.key = key;
		for (r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
															   SPI_tuptable->tupdesc, 1, &isnull));
			int64		shardid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
															  SPI_tuptable->tupdesc, 2, &isnull));

			for (i = 0; i < BIS_NTABLES; i++)
			{
				if (watched[i] != relid)
					continue;
				built.shardids[i] = shardid;
				built.names[i] = MemoryContextStrdup(citus_context,
													 quote_qualified_identifier("bis",
																				psprintf("%s_" INT64_FORMAT,
																						 bis_tables[i], shardid)));
			}
		}
		g = hash_search(groups, &key, HASH_ENTER, NULL);
		*g = built;
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	return g;
}

/*
 * The group bis works in for a SKU; NULL when bis's tables are not
 * distributed.  shard_group_is_here() says whether its shards are on this
 * node, where alone bis can work on them.
 */
ShardGroup *
shard_group_of_sku(Datum sku)
{
	int64		key;

	if (!bis_is_distributed())
		return NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = TEXTOID;
		bool		isnull;
		int			ret;

		ret = SPI_execute_plan(prepare_once(&group_of_sku_plan, group_of_sku_sql, 1, &argtype),
							   &sku, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not find the shard of SKU \"%s\"", TextDatumGetCString(sku));
		key = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	return shard_group(key);
}

/* Whether the group's shard of bis.subscriptions (and so all) is here */
bool
shard_group_is_here(const ShardGroup *g)
{
	return g->names[1] != NULL;
}

/*
 * The group of the reference tables alone, for what reads the catalog on
 * any node (the item thresholds); NULL when bis's tables are not
 * distributed.
 */
ShardGroup *
shard_group_of_node(void)
{
	return bis_is_distributed() ? shard_group(NODE_GROUP) : NULL;
}

/* Work in group g from now on; returns the group in use before */
ShardGroup *
use_shard_group(ShardGroup *g)
{
	ShardGroup *before = current_shard_group;

	current_shard_group = g;
	return before;
}

/*
 * A statement's text for group g: each bis.<table> that has a shard in g
 * becomes the shard's name.  Names followed by more of an identifier (such
 * as bis.restock_events_id_seq) are left alone.
 */
static char *
rewrite_for_group(const char *sql, const ShardGroup *g)
{
	StringInfoData out;
	const char *p = sql;

	initStringInfo(&out);
	while (*p)
	{
		const char *q;
		int			len;
		int			i;

		if (strncmp(p, "bis.", 4) != 0 ||
			(p > sql && (isalnum((unsigned char) p[-1]) || p[-1] == '_' || p[-1] == '"')))
		{
			appendStringInfoChar(&out, *p++);
			continue;
		}
		for (q = p + 4; isalnum((unsigned char) *q) || *q == '_'; q++)
			;
		len = q - (p + 4);
		for (i = 0; i < BIS_NTABLES; i++)
		{
			if (g->names[i] != NULL && strlen(bis_tables[i]) == (size_t) len &&
				strncmp(p + 4, bis_tables[i], len) == 0)
				break;
		}
		if (i < BIS_NTABLES)
			appendStringInfoString(&out, g->names[i]);
		else
			appendBinaryStringInfo(&out, p, q - p);
		p = q;
	}
	return out.data;
}

/*
 * The plan of a statement in the current group, prepared once for it and
 * kept.  The statement is known by its text's address: callers pass the
 * static text they keep.  Caller is in SPI.
 */
SPIPlanPtr
prepare_in_group(const char *sql, int nargs, Oid *argtypes)
{
	GroupPlanKey key;
	GroupPlan  *gp;
	bool		found;

	Assert(current_shard_group != NULL);
	if (group_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(GroupPlanKey);
		ctl.entrysize = sizeof(GroupPlan);
		ctl.hcxt = citus_context;
		group_plans = hash_create("bis plans per shard group", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.sql = sql;
	key.group = current_shard_group->key;
	gp = hash_search(group_plans, &key, HASH_FIND, &found);
	if (!found)
	{
		/* generic, as prepare_once's */
		SPIPlanPtr	p = SPI_prepare_cursor(rewrite_for_group(sql, current_shard_group),
										   nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		gp = hash_search(group_plans, &key, HASH_ENTER, NULL);
		gp->plan = p;
	}
	return gp->plan;
}

/*
 * The OID of bis's table, or of one of its indexes (index not NULL), in the
 * current group: its shard on this node, named as Citus names shards and
 * their indexes, or the table itself.
 */
Oid
bis_relation_oid(const char *table, const char *index)
{
	Oid			nspid = get_namespace_oid("bis", false);
	const char *name = index ? index : table;
	Oid			relid;
	int			i;

	if (current_shard_group != NULL)
	{
		for (i = 0; i < BIS_NTABLES; i++)
		{
			if (strcmp(bis_tables[i], table) == 0 && current_shard_group->names[i] != NULL)
			{
				name = psprintf("%s_" INT64_FORMAT, name, current_shard_group->shardids[i]);
				break;
			}
		}
	}
	relid = get_relname_relid(name, nspid);
	if (!OidIsValid(relid))
		elog(ERROR, "relation bis.%s does not exist", name);
	return relid;
}

/*
 * The qualified name of the distributed table whose shard rel is, or NULL
 * if it is none: a restock event names the table the application knows.
 */
char *
distributed_table_name(Relation rel)
{
	const char *relname = RelationGetRelationName(rel);
	const char *suffix = strrchr(relname, '_');
	int64		shardid;
	char	   *end;
	Oid			logical = InvalidOid;

	if (suffix == NULL || suffix[1] == '\0' || !has_citus())
		return NULL;
	errno = 0;
	shardid = strtoi64(suffix + 1, &end, 10);
	if (*end != '\0' || errno != 0 || shardid <= 0)
		return NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[3] = {INT8OID, TEXTOID, TEXTOID};
		Datum		args[3];
		bool		isnull;
		int			ret;

		args[0] = Int64GetDatum(shardid);
		args[1] = CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
																 relname));
		args[2] = CStringGetTextDatum(quote_identifier(relname));
		ret = SPI_execute_plan(prepare_once(&logical_name_plan, logical_name_sql, 3, argtypes),
							   args, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
			logical = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	/* a shard is in its table's schema */
	if (!OidIsValid(logical) || get_rel_name(logical) == NULL ||
		get_rel_namespace(logical) != RelationGetNamespace(rel))
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(logical)),
									  get_rel_name(logical));
}

/*
 * bis._group_sql(sql text, grp bigint) returns text: a statement of bis's
 * written for its own tables, for shard group grp on this node, for the
 * dynamic SQL of the Citus functions in PL/pgSQL.
 */
PG_FUNCTION_INFO_V1(bis__group_sql);

Datum
bis__group_sql(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ShardGroup *g;

	if (!bis_is_distributed())
		PG_RETURN_TEXT_P(cstring_to_text(sql));
	g = shard_group(PG_GETARG_INT64(1));
	PG_RETURN_TEXT_P(cstring_to_text(rewrite_for_group(sql, g)));
}

/* Call fn with the group of key in use, restoring the one before */
static Datum
call_in_group(PGFunction fn, FunctionCallInfo fcinfo, int64 key)
{
	ShardGroup *before;
	volatile Datum result = (Datum) 0;

	before = use_shard_group(bis_is_distributed() ? shard_group(key) : NULL);
	PG_TRY();
	{
		result = fn(fcinfo);
	}
	PG_FINALLY();
	{
		use_shard_group(before);
	}
	PG_END_TRY();
	return result;
}

/*
 * bis._hand_out_group(ids bigint[], worker text, grp bigint): bis._hand_out
 * for notifications of shard group grp on this node.
 */
PG_FUNCTION_INFO_V1(bis__hand_out_group);

Datum
bis__hand_out_group(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		elog(ERROR, "bis._hand_out_group needs ids, a worker and a group");
	return call_in_group(bis__hand_out, fcinfo, PG_GETARG_INT64(2));
}

/*
 * bis._expand_group(ev, max_rows, worker, lease, channels, grp bigint):
 * bis._expand for a restock event of shard group grp on this node.
 */
PG_FUNCTION_INFO_V1(bis__expand_group);

Datum
bis__expand_group(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(5))
		elog(ERROR, "bis._expand_group needs a group");
	return call_in_group(bis__expand, fcinfo, PG_GETARG_INT64(5));
}

/*
 * bis._distributed() returns boolean: whether bis's tables are distributed
 * by Citus in this database.
 */
PG_FUNCTION_INFO_V1(bis__distributed);

Datum
bis__distributed(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(bis_is_distributed());
}

/*
 * bis._make_signing_key(): makes the key that signs unsubscribe tokens, if
 * there is none, so that bis.distribute() copies one key to every node.
 */
PG_FUNCTION_INFO_V1(bis__make_signing_key);

Datum
bis__make_signing_key(PG_FUNCTION_ARGS)
{
	Signer		signer;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	signer_begin(&signer);
	signer_end(&signer);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_VOID();
}
