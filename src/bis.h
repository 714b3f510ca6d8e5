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
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "settings.h"

/* the NOTIFY channel mailers LISTEN on */
#define BIS_CHANNEL "bis_notifications"

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
extern SPIPlanPtr prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes);
extern SPIPlanPtr prepare_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes);
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
	bool		price_drop;		/* a price drop of an item in stock, not a restock */
	Datum		price_before;	/* numeric: the price before the drop */
} Crossing;

extern int	restock(Oid as_owner_of, const Crossing *crossing);
extern int64 bis_enqueued_total;
extern void bis_restock_init(void);

/* The active subscriptions a restock fires (matching.c) */
typedef struct MatchFilter
{
	Datum		locale;			/* text, or 0: any */
	Datum		external_id;	/* text, or 0: any */
	TimestampTz created_before; /* older ones expire; 0: none do */
	bool		price_rule;		/* whether maximum prices are checked */
	Datum		price;			/* the item's price, numeric, or 0: unknown */
	bool		price_drop;		/* price-drop subscriptions, fired by price */
	int			min_percent;	/* bis.price_drop_min_percent */
} MatchFilter;

typedef struct Matches
{
	int			n;				/* subscriptions to fire */
	ItemPointerData *tids;		/* their rows, when asked for */
	int64		last_id;		/* the highest id passed */
	int			n_expired;		/* subscriptions too old to fire */
	ItemPointerData *expired_tids;	/* their rows, when asked for */
	int			n_over_price;	/* subscriptions whose maximum price is lower */
	int			n_other_locale; /* of another locale, or none, than the restock's */
	int			n_other_external_id;	/* of another external id, or none */
	int			n_price_not_reached;	/* price drops whose price is not reached */
} Matches;

extern void match_subscriptions(Datum sku, const MatchFilter *filter,
								int64 after_id, int64 upto_id, int64 limit,
								bool want_tids, Matches *matches);
extern int64 newest_active_subscription(Datum sku, bool price_drop);
extern text *canonical_locale(text *locale);

/* The delivery rules checked at claim (rules.c) */
typedef enum RuleAction
{
	RULE_HOLD,					/* the message waits until the rule allows it */
	RULE_DROP					/* the message is suppressed */
} RuleAction;

typedef struct SendRate
{
	int64		messages;		/* 0: no limit */
	int64		period_secs;
} SendRate;

/* A send rate's window, taken by one claim */
typedef struct RateBudget
{
	char	   *scope;
	TimestampTz window_start;
	TimestampTz window_end;
	int64		before;			/* handed out in the window before this claim */
	int64		left;			/* what this claim may still hand out */
	int64		used;
} RateBudget;

extern char *bis_default_time_zone;
extern int	bis_max_per_contact_day;
extern int	bis_frequency_cap_action;
extern int	bis_quiet_hours_action;
extern QuietHours bis_quiet_hours;
extern int	bis_quiet_hours_channels;
extern SendRate bis_send_rate;
extern SendRate bis_item_send_rate;
extern SendRate bis_signup_rate;
extern int	bis_max_subscriptions_per_contact;
extern int64 bis_restock_dwell;
extern int64 bis_subscription_ttl;
extern int	bis_max_reminders;
extern int	bis_price_drop_min_percent;
extern int64 bis_reminder_interval;
extern int64 bis_conversion_window;
extern char *bis_unsubscribe_url;
extern char *bis_unsubscribe_mailto;

extern void bis_rules_init(void);
extern bool parse_send_rate(const char *value, SendRate *rate);
extern struct pg_tz *time_zone(const char *name);
extern TimestampTz local_day_start(TimestampTz at, struct pg_tz *tz, int days);
extern TimestampTz quiet_hours_end(TimestampTz at, struct pg_tz *tz, QuietHours q);
extern void rate_take(const char *scope, SendRate rate, TimestampTz now, RateBudget *budget);
extern void rate_settle(RateBudget *budget);

/* Unsubscribe tokens (token.c) */
#define SIGNING_KEY_LEN 32
#define TOKEN_SCOPE_SUBSCRIPTION 's'	/* cancels the subscription */
#define TOKEN_SCOPE_CHANNEL 'c'	/* also withdraws consent for the channel */

typedef struct Signer
{
	uint8		key[SIGNING_KEY_LEN];
	struct pg_hmac_ctx *ctx;
} Signer;

extern void signer_begin(Signer *signer);
extern void signer_end(Signer *signer);
extern char *make_token(Signer *signer, int64 notification_id, char scope);

/* trigger.c */
extern void bis_trigger_init(void);

/* bis on Citus: the shard group bis works in (distribute.c) */
typedef struct ShardGroup ShardGroup;

extern ShardGroup *current_shard_group;
extern void bis_distribute_init(void);
extern bool bis_is_distributed(void);
extern ShardGroup *shard_group_of_sku(Datum sku);
extern bool shard_group_is_here(const ShardGroup *group);
extern ShardGroup *shard_group_of_node(void);
extern ShardGroup *use_shard_group(ShardGroup *group);
extern SPIPlanPtr prepare_in_group(const char *sql, int nargs, Oid *argtypes);
extern Oid	bis_relation_oid(const char *table, const char *index);
extern char *distributed_table_name(Relation rel);

/* SQL-callable functions that distribute.c calls in a shard group */
extern PGDLLEXPORT Datum bis__hand_out(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum bis__expand(PG_FUNCTION_ARGS);

/* tenants (tenant.c) */
extern void bis_tenant_init(void);
extern const char *current_tenant(void);
extern void check_tenant_isolation(Oid role);

/* render.c */
extern text *render_template(text *template, Jsonb *payload, bool html);

#endif							/* BIS_H */
