/*-------------------------------------------------------------------------
 *
 * bis.h
 *	  Declarations shared by the files of the bis extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_H
#define BIS_H

#include "access/attnum.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* the NOTIFY channel mailers LISTEN on */
#define BIS_CHANNEL "bis_notifications"

/* the longest SKU bis.items accepts (its CHECK constraint says the same) */
#define BIS_SKU_MAXLEN 128

/* settings, defined in bis.c */
extern int	bis_default_threshold;
extern bool bis_notify;
extern int	bis_expand_chunk;
extern int	bis_wave_per_unit;
extern int	bis_wave_interval;
extern char *bis_default_locale;

/* Where a tracked table keeps the columns bis reads (track.c) */
typedef struct TrackedColumns
{
	AttrNumber	sku;
	AttrNumber	quantity;
	AttrNumber	locale;			/* InvalidAttrNumber when not tracked */
	AttrNumber	external_id;	/* likewise */
	Oid			quantity_type;	/* INT2OID, INT4OID or INT8OID */
} TrackedColumns;

extern char *resolve_columns(Relation rel, char **names, TrackedColumns *cols);

/* Running SQL as another role (restock.c) */
typedef struct AsRole
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} AsRole;

extern void begin_as_role(Oid role, bool restricted, AsRole *as);
extern void end_as_role(AsRole *as);
extern void set_local(const char *name, const char *value);
extern void by_key_only(void);
extern Oid	function_owner(Oid fn_oid);

/* A crossing, as the trigger or bis._new_stock_level saw it (restock.c) */
typedef struct Crossing
{
	const char *source;			/* qualified name of the table that restocked */
	Datum		sku;			/* text */
	Datum		locale;			/* text, or 0 */
	Datum		external_id;	/* text, or 0 */
	bool		has_old;
	int64		old_quantity;
	int64		new_quantity;
	int32		threshold;
} Crossing;

extern int	restock(Oid as_owner_of, const Crossing *crossing);
extern int64 bis_enqueued_total;
extern void bis_restock_init(void);

/* The active subscriptions a restock fires (matching.c) */
typedef struct Matches
{
	int			n;				/* subscriptions found */
	ItemPointerData *tids;		/* their rows, when asked for */
	int64		last_id;		/* the highest id found */
} Matches;

extern void match_subscriptions(Datum sku, Datum locale, Datum external_id,
								int64 after_id, int64 upto_id, int64 limit,
								bool want_tids, Matches *matches);
extern int64 newest_active_subscription(Datum sku);

/* trigger.c */
extern void bis_trigger_init(void);

/* render.c */
extern text *render_template(text *template, Jsonb *payload, bool html);

#endif							/* BIS_H */
