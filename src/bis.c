/*-------------------------------------------------------------------------
 *
 * bis.c
 *	  Module entry point of bis: back-in-stock notifications inside
 *	  PostgreSQL.  Defines the settings; the work is done in trigger.c (the
 *	  stock trigger), restock.c (restocks and their notifications), matching.c
 *	  (the subscriptions a restock fires), track.c (tracking applications'
 *	  tables), render.c and message.c (messages, built when a mailer claims).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "bis.h"

PG_MODULE_MAGIC;

int			bis_default_threshold = 1;
bool		bis_notify = true;
static int	bis_notification_ttl = 7 * SECS_PER_DAY;
static int	bis_max_attempts = 8;
static int	bis_retry_base_delay = 30;
static int	bis_retry_max_delay = 6 * SECS_PER_HOUR;
char	   *bis_default_locale = NULL;
static int	bis_retention = 30 * SECS_PER_DAY;
int			bis_expand_chunk = 1000;
int			bis_wave_per_unit = 0;
int			bis_wave_interval = SECS_PER_HOUR;

/* bounds of the wave settings, as bis.items checks an item's own */
#define BIS_WAVE_PER_UNIT_MAX 1000000
#define BIS_WAVE_INTERVAL_MAX (365 * SECS_PER_DAY)


void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("bis.default_threshold",
							"Stock quantity at which a SKU counts as back in stock.",
							"Applies to items that have no threshold of their own.",
							&bis_default_threshold,
							1, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("bis.notify",
							 "Wakes mailers with NOTIFY " BIS_CHANNEL " when a transaction enqueued notifications.",
							 "Turn off where NOTIFY cannot reach mailers (transaction poolers, standbys); mailers then poll.",
							 &bis_notify,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("bis.notification_ttl",
							"Age after which an undelivered notification expires instead of being handed to a mailer.",
							NULL,
							&bis_notification_ttl,
							7 * SECS_PER_DAY, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.max_attempts",
							"Delivery attempts after which a failing notification is dead.",
							NULL,
							&bis_max_attempts,
							8, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.retry_base_delay",
							"Delay before the first retry of a failed delivery; it doubles with each attempt.",
							NULL,
							&bis_retry_base_delay,
							30, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.retry_max_delay",
							"Longest delay between retries of a failed delivery.",
							NULL,
							&bis_retry_max_delay,
							6 * SECS_PER_HOUR, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("bis.default_locale",
							   "Locale of the templates used when none matches a notification's locale or its language.",
							   NULL,
							   &bis_default_locale,
							   "en",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("bis.retention",
							"Age after which bis.purge() removes finished notifications, used subscriptions and restock events.",
							NULL,
							&bis_retention,
							30 * SECS_PER_DAY, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.expand_chunk",
							"Most notifications a restock enqueues in one transaction; larger fan-outs are expanded in chunks after it commits.",
							NULL,
							&bis_expand_chunk,
							1000, 1, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.wave_per_unit",
							"Subscribers notified per unit in stock in each wave of a restock; 0 notifies them all at once.",
							"Items can set their own with wave_per_unit.",
							&bis_wave_per_unit,
							0, 0, BIS_WAVE_PER_UNIT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.wave_interval",
							"Time between the waves of a restock.",
							"Items can set their own with wave_interval.",
							&bis_wave_interval,
							SECS_PER_HOUR, 1, BIS_WAVE_INTERVAL_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	bis_rules_init();
	bis_tenant_init();

	/* after every setting is defined: what is left of "bis." is a typo */
	MarkGUCPrefixReserved("bis");

	bis_trigger_init();
	bis_restock_init();
	bis_distribute_init();
}

static Datum
seconds_interval(int64 seconds)
{
	Interval   *result = (Interval *) palloc0(sizeof(Interval));

	result->time = seconds * USECS_PER_SEC;
	return IntervalPGetDatum(result);
}

/*
 * bis._settings(): the settings bis's SQL functions use, typed.  Calling it
 * also loads the library, which defines them.
 */
PG_FUNCTION_INFO_V1(bis__settings);

Datum
bis__settings(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[12];
	bool		nulls[12] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[0] = seconds_interval(bis_notification_ttl);
	values[1] = Int32GetDatum(bis_max_attempts);
	values[2] = seconds_interval(bis_retry_base_delay);
	values[3] = seconds_interval(bis_retry_max_delay);
	values[4] = CStringGetTextDatum(bis_default_locale);
	values[5] = seconds_interval(bis_retention);
	values[6] = Int32GetDatum(bis_expand_chunk);
	values[7] = Int32GetDatum(bis_wave_per_unit);
	values[8] = seconds_interval(bis_wave_interval);
	values[9] = Int32GetDatum(bis_max_reminders);
	values[10] = seconds_interval(bis_reminder_interval);
	values[11] = seconds_interval(bis_conversion_window);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
