/*-------------------------------------------------------------------------
 *
 * rules.c
 *	  The delivery rules checked when a mailer claims: their settings, the
 *	  contact's local day and quiet hours, and the send rates.
 *
 * A notification is handed out only if its contact has not withdrawn
 * consent for its channel and has an address for it (message.c checks
 * both), it is not inside the quiet hours of the contact's time zone, the
 * contact has not had bis.max_per_contact_day messages on its local calendar
 * day, and the send rates have room.  Times are the contact's own, through
 * PostgreSQL's time zone rules, so that a day or a window is right across a
 * daylight-saving change.  The rules that act at the restock (items that are
 * not active, expired subscriptions, maximum prices, dwell and waves) live
 * with the restock, in restock.c and matching.c.
 *
 * A send rate "N/period" allows N messages in each window of the period,
 * counted from the Unix epoch; bis.send_windows keeps each window's count,
 * its row locked by the claim that uses it until that claim commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "access/xact.h"

#include "bis.h"

/* the longest durations the settings accept */
#define BIS_DWELL_MAX_SECS (7 * SECS_PER_DAY)
#define BIS_SUBSCRIPTION_TTL_MAX_SECS (3650 * (int64) SECS_PER_DAY)
#define BIS_REMINDER_INTERVAL_MAX_SECS (90 * SECS_PER_DAY)
#define BIS_CONVERSION_WINDOW_MAX_SECS (365 * SECS_PER_DAY)

static const struct config_enum_entry rule_action_options[] = {
	{"hold", RULE_HOLD, false},
	{"drop", RULE_DROP, false},
	{NULL, 0, false}
};

char	   *bis_default_time_zone = NULL;
int			bis_max_per_contact_day = 0;
int			bis_frequency_cap_action = RULE_HOLD;
int			bis_quiet_hours_action = RULE_HOLD;
char	   *bis_unsubscribe_url = NULL;
char	   *bis_unsubscribe_mailto = NULL;

/* the settings kept as text, and what they say, parsed by their check hooks */
static char *quiet_hours_setting = NULL;
static char *quiet_hours_channels_setting = NULL;
static char *send_rate_setting = NULL;
static char *item_send_rate_setting = NULL;
static char *signup_rate_setting = NULL;
static char *restock_dwell_setting = NULL;
static char *subscription_ttl_setting = NULL;
static char *reminder_interval_setting = NULL;
static char *conversion_window_setting = NULL;

QuietHours	bis_quiet_hours = {-1, -1};
int			bis_quiet_hours_channels = CHANNEL_SMS | CHANNEL_PUSH;
SendRate	bis_send_rate = {0, 0};
SendRate	bis_item_send_rate = {0, 0};
SendRate	bis_signup_rate = {0, 0};
int			bis_max_subscriptions_per_contact = 0;
int64		bis_restock_dwell = 0;
int64		bis_subscription_ttl = 0;
int			bis_max_reminders = 0;
int			bis_price_drop_min_percent = 10;
int64		bis_reminder_interval = SECS_PER_DAY;
int64		bis_conversion_window = 7 * SECS_PER_DAY;

/*
 * Parsing, without raising errors: check hooks must not
 */

/* An interval in PostgreSQL's syntax, as whole seconds (a month is 30 days) */
static bool
parse_seconds(const char *value, int64 *seconds)
{
	char		buf[MAXDATELEN + 1];
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;
	Interval	span;
	int			dterr;

	if (strlen(value) > MAXDATELEN)
		return false;
	strlcpy(buf, value, sizeof(buf));
	dterr = ParseDateTime(buf, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(buf, &dtype, &itm);
	if (dterr != 0 || dtype != DTK_DELTA || itmin2interval(&itm, &span) != 0)
		return false;
	*seconds = span.time / USECS_PER_SEC + (int64) span.day * SECS_PER_DAY +
		(int64) span.month * DAYS_PER_MONTH * SECS_PER_DAY;
	return true;
}

/* "N/period": N messages, at least 1, in each period of at least a second */
bool
parse_send_rate(const char *value, SendRate *rate)
{
	int64		messages;
	const char *period;

	if (!parse_rate_count(value, &messages, &period))
		return false;
	if (!parse_seconds(period, &rate->period_secs) || rate->period_secs < 1)
		return false;
	rate->messages = messages;
	return true;
}

/*
 * Check hooks: each parses its setting into *extra, which its assign hook
 * installs.  An empty setting turns the rule off.
 */

static void *
extra_copy(const void *value, size_t size)
{
	void	   *extra = malloc(size);

	if (extra != NULL)
		memcpy(extra, value, size);
	return extra;
}

static bool
check_quiet_hours(char **newval, void **extra, GucSource source)
{
	QuietHours	q = {-1, -1};

	if (**newval != '\0' && !parse_quiet_hours(*newval, &q))
	{
		GUC_check_errdetail("Quiet hours are written \"HH:MM-HH:MM\" in the contact's local time, such as \"21:00-08:00\", and do not start and end at the same minute.");
		return false;
	}
	*extra = extra_copy(&q, sizeof(q));
	return *extra != NULL;
}

static void
assign_quiet_hours(const char *newval, void *extra)
{
	bis_quiet_hours = *(QuietHours *) extra;
}

static bool
check_channels(char **newval, void **extra, GucSource source)
{
	int			channels;

	if (!parse_channels(*newval, &channels))
	{
		GUC_check_errdetail("List channels separated by commas: email, sms, push, webpush.");
		return false;
	}
	*extra = extra_copy(&channels, sizeof(channels));
	return *extra != NULL;
}

static void
assign_channels(const char *newval, void *extra)
{
	bis_quiet_hours_channels = *(int *) extra;
}

static bool
check_send_rate(char **newval, void **extra, GucSource source)
{
	SendRate	rate = {0, 0};

	if (**newval != '\0' && !parse_send_rate(*newval, &rate))
	{
		GUC_check_errdetail("A send rate is written \"N/period\": at least 1 message per interval of at least a second, such as \"1000/10min\".");
		return false;
	}
	*extra = extra_copy(&rate, sizeof(rate));
	return *extra != NULL;
}

static void
assign_send_rate(const char *newval, void *extra)
{
	bis_send_rate = *(SendRate *) extra;
}

static void
assign_item_send_rate(const char *newval, void *extra)
{
	bis_item_send_rate = *(SendRate *) extra;
}

static void
assign_signup_rate(const char *newval, void *extra)
{
	bis_signup_rate = *(SendRate *) extra;
}

/* a duration from 0 (off) up to a bound given in the hook's name */
static bool
check_duration(char **newval, void **extra, int64 max_secs)
{
	int64		secs = 0;

	if (**newval != '\0' &&
		(!parse_seconds(*newval, &secs) || secs < 0 || secs > max_secs))
	{
		GUC_check_errdetail("Give an interval from 0 (off) to %lld days, such as \"10 minutes\" or \"90 days\".",
							(long long) (max_secs / SECS_PER_DAY));
		return false;
	}
	*extra = extra_copy(&secs, sizeof(secs));
	return *extra != NULL;
}

static bool
check_restock_dwell(char **newval, void **extra, GucSource source)
{
	return check_duration(newval, extra, BIS_DWELL_MAX_SECS);
}

static void
assign_restock_dwell(const char *newval, void *extra)
{
	bis_restock_dwell = *(int64 *) extra;
}

static bool
check_subscription_ttl(char **newval, void **extra, GucSource source)
{
	return check_duration(newval, extra, BIS_SUBSCRIPTION_TTL_MAX_SECS);
}

static void
assign_subscription_ttl(const char *newval, void *extra)
{
	bis_subscription_ttl = *(int64 *) extra;
}

static bool
check_reminder_interval(char **newval, void **extra, GucSource source)
{
	/* a reminder comes later than the message it follows */
	if (!check_duration(newval, extra, BIS_REMINDER_INTERVAL_MAX_SECS))
		return false;
	if (*(int64 *) *extra < 60)
	{
		GUC_check_errdetail("A reminder interval is at least a minute, such as \"1 day\".");
		free(*extra);
		*extra = NULL;
		return false;
	}
	return true;
}

static void
assign_reminder_interval(const char *newval, void *extra)
{
	bis_reminder_interval = *(int64 *) extra;
}

static bool
check_conversion_window(char **newval, void **extra, GucSource source)
{
	return check_duration(newval, extra, BIS_CONVERSION_WINDOW_MAX_SECS);
}

static void
assign_conversion_window(const char *newval, void *extra)
{
	bis_conversion_window = *(int64 *) extra;
}

static bool
check_time_zone(char **newval, void **extra, GucSource source)
{
	pg_tz	   *tz = pg_tzset(*newval);

	if (tz == NULL || !pg_tz_acceptable(tz))
	{
		GUC_check_errdetail("Give a time zone PostgreSQL knows, such as \"Europe/Stockholm\" or \"UTC\".");
		return false;
	}
	return true;
}

static bool
check_unsubscribe_url(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (**newval == '\0')
		return true;
	if (pg_strncasecmp(*newval, "https://", 8) != 0 || strlen(*newval) > 1024)
	{
		GUC_check_errdetail("The unsubscribe URL is the https:// address of the shop's endpoint, to which bis appends the token.");
		return false;
	}
	for (p = *newval; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == '<' || *p == '>' || *p == '"')
		{
			GUC_check_errdetail("The unsubscribe URL must not contain spaces, control characters, quotes or angle brackets.");
			return false;
		}
	return true;
}

static bool
check_unsubscribe_mailto(char **newval, void **extra, GucSource source)
{
	const char *at = strchr(*newval, '@');
	const char *p;

	if (**newval == '\0')
		return true;
	for (p = *newval; *p; p++)
		if (!isalnum((unsigned char) *p) && strchr("@.-_+", *p) == NULL)
			break;
	if (at == NULL || at == *newval || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
		*p != '\0' || strlen(*newval) > 254)
	{
		GUC_check_errdetail("Give the plain address that receives unsubscribe requests, such as \"unsubscribe@shop.example\".");
		return false;
	}
	return true;
}

void
bis_rules_init(void)
{
	DefineCustomStringVariable("bis.default_time_zone",
							   "Time zone of contacts that have none, for quiet hours and the frequency cap.",
							   NULL,
							   &bis_default_time_zone,
							   "UTC",
							   PGC_SUSET,
							   0,
							   check_time_zone, NULL, NULL);

	DefineCustomIntVariable("bis.max_per_contact_day",
							"Most messages a contact is handed per calendar day in its own time zone; 0 is no cap.",
							NULL,
							&bis_max_per_contact_day,
							0, 0, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("bis.frequency_cap_action",
							 "What happens to a message over the frequency cap: hold (until the contact's next day) or drop.",
							 NULL,
							 &bis_frequency_cap_action,
							 RULE_HOLD,
							 rule_action_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("bis.quiet_hours",
							   "Window of the contact's local time, \"HH:MM-HH:MM\", in which messages on the quiet channels wait; empty is none.",
							   NULL,
							   &quiet_hours_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_quiet_hours, assign_quiet_hours, NULL);

	DefineCustomStringVariable("bis.quiet_hours_channels",
							   "Channels the quiet hours apply to, separated by commas.",
							   NULL,
							   &quiet_hours_channels_setting,
							   "sms,push",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   check_channels, assign_channels, NULL);

	DefineCustomEnumVariable("bis.quiet_hours_action",
							 "What happens to a message in the quiet hours: hold (until they end) or drop.",
							 NULL,
							 &bis_quiet_hours_action,
							 RULE_HOLD,
							 rule_action_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("bis.send_rate",
							   "Most messages handed to mailers per period, \"N/period\", over all items; empty is no limit.",
							   NULL,
							   &send_rate_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_send_rate, assign_send_rate, NULL);

	DefineCustomStringVariable("bis.item_send_rate",
							   "Most messages about one item handed to mailers per period, \"N/period\"; empty is no limit.",
							   "Items can set their own with send_rate.",
							   &item_send_rate_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_send_rate, assign_item_send_rate, NULL);

	DefineCustomStringVariable("bis.restock_dwell",
							   "How long stock must stay at or above the threshold before a restock notifies anyone; empty or 0 is at once.",
							   "Items can set their own with restock_dwell.",
							   &restock_dwell_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_restock_dwell, assign_restock_dwell, NULL);

	DefineCustomStringVariable("bis.subscription_ttl",
							   "Age after which a waiting subscription expires instead of being notified; empty or 0 is never.",
							   NULL,
							   &subscription_ttl_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_subscription_ttl, assign_subscription_ttl, NULL);

	DefineCustomIntVariable("bis.max_reminders",
							"Reminders a notified subscriber who has not bought gets while the item is in stock, 0 to 2.",
							NULL,
							&bis_max_reminders,
							0, 0, 2,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bis.price_drop_min_percent",
							"How far, in percent, an item's price must drop below its price when a price-drop subscription without a target was made.",
							NULL,
							&bis_price_drop_min_percent,
							10, 1, 99,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("bis.reminder_interval",
							   "Time from a message to the reminder that follows it.",
							   NULL,
							   &reminder_interval_setting,
							   "1 day",
							   PGC_SUSET,
							   0,
							   check_reminder_interval, assign_reminder_interval, NULL);

	DefineCustomStringVariable("bis.conversion_window",
							   "Time after a message in which a purchase of its SKU by its contact is its conversion.",
							   NULL,
							   &conversion_window_setting,
							   "7 days",
							   PGC_SUSET,
							   0,
							   check_conversion_window, assign_conversion_window, NULL);

	DefineCustomIntVariable("bis.max_subscriptions_per_contact",
							"Most waiting subscriptions a contact may have; 0 is no limit.",
							NULL,
							&bis_max_subscriptions_per_contact,
							0, 0, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("bis.signup_rate",
							   "Most new subscriptions to one SKU per period, \"N/period\"; empty is no limit.",
							   NULL,
							   &signup_rate_setting,
							   "",
							   PGC_SUSET,
							   0,
							   check_send_rate, assign_signup_rate, NULL);

	DefineCustomStringVariable("bis.unsubscribe_url",
							   "The https:// address of the shop's unsubscribe endpoint; bis appends a signed token.",
							   NULL,
							   &bis_unsubscribe_url,
							   "",
							   PGC_SUSET,
							   0,
							   check_unsubscribe_url, NULL, NULL);

	DefineCustomStringVariable("bis.unsubscribe_mailto",
							   "An address that takes unsubscribe requests by email, for the List-Unsubscribe header; empty is none.",
							   NULL,
							   &bis_unsubscribe_mailto,
							   "",
							   PGC_SUSET,
							   0,
							   check_unsubscribe_mailto, NULL, NULL);
}

/*
 * The contact's local time
 */

/* A time zone by name; the default's where the name is unknown or NULL */
pg_tz *
time_zone(const char *name)
{
	pg_tz	   *tz = name ? pg_tzset(name) : NULL;

	if (tz == NULL)
		tz = pg_tzset(bis_default_time_zone);
	if (tz == NULL)
		elog(ERROR, "time zone \"%s\" is not known", bis_default_time_zone);
	return tz;
}

/* The local time of at in tz */
static void
local_time(TimestampTz at, pg_tz *tz, struct pg_tm *tm)
{
	int			offset;
	fsec_t		fsec;

	if (timestamp2tm(at, &offset, tm, &fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
}

/* The instant of a local date (a Julian day) and minute of the day in tz */
static TimestampTz
local_instant(int julian_day, int minute, pg_tz *tz)
{
	struct pg_tm tm = {0};
	int			offset;
	TimestampTz result;

	j2date(julian_day, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	tm.tm_hour = minute / MINS_PER_HOUR;
	tm.tm_min = minute % MINS_PER_HOUR;
	/* a local time a daylight-saving change skips counts as before it */
	offset = DetermineTimeZoneOffset(&tm, tz);
	if (tm2timestamp(&tm, 0, &offset, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

/* When the local calendar day days after the one of at begins, in tz */
TimestampTz
local_day_start(TimestampTz at, pg_tz *tz, int days)
{
	struct pg_tm tm;

	local_time(at, tz, &tm);
	return local_instant(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) + days, 0, tz);
}

/*
 * When the quiet hours q that at falls in end, in tz; 0 if at is outside
 * them
 */
TimestampTz
quiet_hours_end(TimestampTz at, pg_tz *tz, QuietHours q)
{
	struct pg_tm tm;
	int			minute;
	bool		quiet;

	if (q.from_minute < 0)
		return 0;
	local_time(at, tz, &tm);
	minute = tm.tm_hour * MINS_PER_HOUR + tm.tm_min;
	if (q.from_minute < q.until_minute)
		quiet = minute >= q.from_minute && minute < q.until_minute;
	else
		quiet = minute >= q.from_minute || minute < q.until_minute;
	if (!quiet)
		return 0;
	return local_instant(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) +
						 (minute < q.until_minute ? 0 : 1),
						 q.until_minute, tz);
}

/*
 * bis._local_day_start(at timestamptz, time_zone text, days integer)
 *
 * When the local calendar day that is days after the one at falls in begins,
 * in time_zone (the setting bis.default_time_zone where NULL).
 */
PG_FUNCTION_INFO_V1(bis__local_day_start);

Datum
bis__local_day_start(PG_FUNCTION_ARGS)
{
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(0);
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TIMESTAMPTZ(local_day_start(at, time_zone(name), PG_GETARG_INT32(2)));
}

/*
 * bis._quiet_hours_end(at timestamptz, time_zone text, quiet_hours text)
 *
 * When the quiet hours ("HH:MM-HH:MM") that at falls in end, in time_zone;
 * NULL if at is outside them.
 */
PG_FUNCTION_INFO_V1(bis__quiet_hours_end);

Datum
bis__quiet_hours_end(PG_FUNCTION_ARGS)
{
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(0);
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *window = text_to_cstring(PG_GETARG_TEXT_PP(2));
	QuietHours	q;
	TimestampTz end;

	if (!parse_quiet_hours(window, &q))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid quiet hours \"%s\"", window),
				 errdetail("Quiet hours are written \"HH:MM-HH:MM\".")));
	end = quiet_hours_end(at, time_zone(name), q);
	if (end == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(end);
}

/*
 * bis._parse_send_rate(rate text, OUT messages bigint, OUT period interval)
 *
 * A send rate "N/period", or NULL if it is not one: bis.items checks an
 * item's own with it, as the settings' check hooks check theirs.
 */
PG_FUNCTION_INFO_V1(bis__parse_send_rate);

Datum
bis__parse_send_rate(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	SendRate	rate;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Interval   *period;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!parse_send_rate(text_to_cstring(PG_GETARG_TEXT_PP(0)), &rate))
		PG_RETURN_NULL();
	period = palloc0(sizeof(Interval));
	period->time = rate.period_secs * USECS_PER_SEC;
	values[0] = Int64GetDatum(rate.messages);
	values[1] = IntervalPGetDatum(period);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * Send rates
 */

/* $1 scope: the window row, locked until the claim commits */
static const char window_sql[] =
"SELECT w.window_start, w.handed_out FROM bis.send_windows w"
" WHERE w.scope OPERATOR(pg_catalog.=) $1 FOR UPDATE";

/* $1 scope: a window row for a scope seen for the first time */
static const char new_window_sql[] =
"INSERT INTO bis.send_windows (scope, window_start, handed_out)"
" VALUES ($1, '-infinity', 0) ON CONFLICT (scope, tenant) DO NOTHING";

/* $1 scope, $2 window start, $3 handed out in it */
static const char settle_sql[] =
"UPDATE bis.send_windows w SET window_start = $2, handed_out = $3"
" WHERE w.scope OPERATOR(pg_catalog.=) $1";

static SPIPlanPtr window_plan = NULL;
static SPIPlanPtr new_window_plan = NULL;
static SPIPlanPtr settle_plan = NULL;

/*
 * Take the window of rate for scope now, and what it has room for: the row
 * stays locked until this transaction ends, so concurrent claims share the
 * rate.  Callers take scopes in one order (the global one first, then items
 * by SKU), so that two claims never wait for each other in a circle.
 * Caller is in SPI.
 */
void
rate_take(const char *scope, SendRate rate, TimestampTz now, RateBudget *budget)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[3];
	int64		period = rate.period_secs * USECS_PER_SEC;
	int64		handed_out = 0;
	int			ret;
	int			attempt;

	/* windows of the period, counted from the Unix epoch */
	budget->window_start = now - (now - SetEpochTimestamp()) % period;
	if (now < SetEpochTimestamp())
		budget->window_start -= period;
	budget->window_end = budget->window_start + period;
	budget->scope = pstrdup(scope);
	args[0] = CStringGetTextDatum(scope);
	for (attempt = 0; attempt < 2; attempt++)
	{
		ret = SPI_execute_plan(prepare_kept(&window_plan, window_sql, 1, argtypes),
							   args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
			break;
		ret = SPI_execute_plan(prepare_kept(&new_window_plan, new_window_sql, 1, argtypes),
							   args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	}
	if (SPI_processed == 1)
	{
		bool		isnull;
		TimestampTz start = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc,
															  1, &isnull));

		if (start == budget->window_start)
			handed_out = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull));
	}
	budget->before = handed_out;
	budget->left = Max(rate.messages - handed_out, 0);
	budget->used = 0;
}

/* Record what was handed out under a budget; caller is in SPI */
void
rate_settle(RateBudget *budget)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[3];
	int			ret;

	args[0] = CStringGetTextDatum(budget->scope);
	args[1] = TimestampTzGetDatum(budget->window_start);
	args[2] = Int64GetDatum(budget->before + budget->used);
	ret = SPI_execute_plan(prepare_kept(&settle_plan, settle_sql, 3, argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
}

/*
 * bis._take_signup(sku text) returns boolean
 *
 * Whether bis.signup_rate has room for one more subscription to sku now, and
 * if so counts it; true when there is no rate.  Run as the extension's owner,
 * by bis.subscribe().
 */
PG_FUNCTION_INFO_V1(bis__take_signup);

Datum
bis__take_signup(PG_FUNCTION_ARGS)
{
	char	   *scope;
	RateBudget budget;
	bool		room;

	if (bis_signup_rate.messages == 0)
		PG_RETURN_BOOL(true);
	scope = psprintf("signup:%s", text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rate_take(scope, bis_signup_rate, GetCurrentTransactionStartTimestamp(), &budget);
	room = budget.left > 0;
	if (room)
	{
		budget.used = 1;
		rate_settle(&budget);
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_BOOL(room);
}
