/*-------------------------------------------------------------------------
 *
 * message.c
 *	  bis._hand_out: the messages of the notifications a mailer just claimed.
 *
 * A notification keeps references and what the restock froze; its message is
 * built when a mailer claims it, from the item, contact and restock event as
 * they are then: the payload (a JSON object of what the message may say) and
 * the subject, body and HTML body rendered from the template against it.
 * The payload holds only the address of the notification's channel, never
 * the contact's others, and the signed unsubscribe links (token.c).
 *
 * Each notification must pass the delivery rules first (rules.c): one whose
 * contact withdrew consent for its channel, or has no address for it (an
 * email address, a phone number, a device for push or a browser for web
 * push), is suppressed; one in the contact's quiet hours, over its frequency cap or
 * over a send rate is held until the rule allows it (or suppressed, where a
 * setting says drop).  Either way it is not handed out, does not count as an
 * attempt, and its status_reason names the rule.
 *
 * The batch is read with one statement, prepared once, and each template is
 * looked up once per call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bis.h"

/*
 * The claimed notifications of $1 (ids) that $2 (the worker) holds, with
 * what their messages are built from, in id order.  EARLIER is, for the
 * frequency cap, how many messages the row's contact was handed earlier in
 * its local day: sent today, or claimed and not in this batch.
 *
 * The rows are found by id in a query of their own, where the primary key is
 * the only index of use.  Joined with the rest, a queue analyzed with no live
 * row (after a purge) looked empty to the planner, which then read the batch
 * by scanning the queue's index by contact whole, dead versions and all:
 * while a long transaction held vacuum back, each claim read every version
 * since.
 */
#define BATCH_SQL(EARLIER) \
"WITH n AS MATERIALIZED ("																\
"    SELECT n.id, n.kind, n.channel, n.subscription_id, n.locale, n.external_id,"			\
"           n.subscribed_at, n.contact_id, n.sku, n.attempts, n.claimed_until,"			\
"           n.restock_event_id"															\
"      FROM bis.notifications n"															\
"     WHERE n.id OPERATOR(pg_catalog.=) ANY ($1)"										\
"       AND n.status OPERATOR(pg_catalog.=) 'claimed'"									\
"       AND n.claimed_by OPERATOR(pg_catalog.=) $2"										\
")"																						\
"SELECT n.id, n.kind, n.channel, n.subscription_id, n.locale, n.external_id, n.subscribed_at,"	\
"       n.contact_id, n.sku, n.attempts, n.claimed_until,"									\
"       c.email, c.phone, c.locale, c.first_name, c.time_zone,"								\
"       i.title, i.url, i.image_url, i.price, i.compare_at_price, i.currency, i.category,"	\
"       i.attributes, i.send_rate, e.new_quantity, e.locale, e.external_id, e.price_before,"	\
"       k.granted,"																		\
"       CASE n.channel"																	\
"           WHEN 'push' THEN EXISTS (SELECT FROM bis.push_tokens p"						\
"                                     WHERE p.contact_id OPERATOR(pg_catalog.=) n.contact_id)"	\
"           WHEN 'webpush' THEN EXISTS (SELECT FROM bis.webpush_subscriptions w"			\
"                                        WHERE w.contact_id OPERATOR(pg_catalog.=) n.contact_id)"	\
"           ELSE true END,"																\
"       CASE WHEN n.kind OPERATOR(pg_catalog.=) 'reminder' THEN"							\
"           EXISTS (SELECT FROM bis.purchases p"												\
"                    WHERE p.contact_id OPERATOR(pg_catalog.=) n.contact_id"					\
"                      AND p.sku OPERATOR(pg_catalog.=) n.sku"									\
"                      AND p.purchased_at OPERATOR(pg_catalog.>=) n.subscribed_at) END,"		\
"       CASE WHEN n.kind OPERATOR(pg_catalog.=) 'reminder' THEN"							\
"           coalesce(bis._current_stock(e.source_table, e.sku, e.locale, e.external_id)"		\
"                    OPERATOR(pg_catalog.>=) e.threshold, false) END, "						\
		EARLIER																				\
"  FROM n"																				\
"  LEFT JOIN bis.contacts c ON c.contact_id OPERATOR(pg_catalog.=) n.contact_id"			\
"  LEFT JOIN bis.items i ON i.sku OPERATOR(pg_catalog.=) n.sku"								\
"  LEFT JOIN bis.restock_events e ON e.id OPERATOR(pg_catalog.=) n.restock_event_id"		\
"  LEFT JOIN bis.consents k ON k.contact_id OPERATOR(pg_catalog.=) n.contact_id"			\
"                          AND k.channel OPERATOR(pg_catalog.=) n.channel"					\
" ORDER BY n.id"

static const char batch_sql[] = BATCH_SQL("NULL::pg_catalog.int8");

static const char batch_capped_sql[] =
BATCH_SQL("(SELECT pg_catalog.count(*) FROM bis.notifications o"
		  "  WHERE o.contact_id OPERATOR(pg_catalog.=) n.contact_id"
		  "    AND (o.status OPERATOR(pg_catalog.=) 'claimed'"
		  "         OR (o.status OPERATOR(pg_catalog.=) 'sent'"
		  "             AND o.sent_at OPERATOR(pg_catalog.>=)"
		  "                 bis._local_day_start(pg_catalog.now(), c.time_zone, 0))))"
		  " OPERATOR(pg_catalog.-) pg_catalog.count(*) OVER (PARTITION BY n.contact_id)");

/* The columns of batch_sql, in order */
enum
{
	B_ID, B_KIND, B_CHANNEL, B_SUBSCRIPTION_ID, B_LOCALE, B_EXTERNAL_ID, B_SUBSCRIBED_AT,
	B_CONTACT_ID, B_SKU, B_ATTEMPTS, B_CLAIMED_UNTIL,
	B_EMAIL, B_PHONE, B_CONTACT_LOCALE, B_FIRST_NAME, B_TIME_ZONE,
	B_TITLE, B_URL, B_IMAGE_URL, B_PRICE, B_COMPARE_AT_PRICE, B_CURRENCY, B_CATEGORY,
	B_ATTRIBUTES, B_SEND_RATE, B_QUANTITY, B_STOCK_LOCALE, B_STOCK_EXTERNAL_ID, B_PRICE_WAS,
	B_CONSENT,
	B_HAS_DEVICE, B_BOUGHT, B_IN_STOCK, B_EARLIER_TODAY,
	B_NCOLUMNS
};

/* The columns of bis.message, in order */
enum
{
	M_ID, M_KIND, M_CHANNEL, M_ADDRESS, M_LOCALE, M_SUBJECT, M_BODY, M_BODY_HTML,
	M_LIST_UNSUBSCRIBE, M_PAYLOAD, M_ATTEMPTS, M_CLAIMED_UNTIL,
	M_NCOLUMNS
};

/* $1 kind, $2 channel, $3 locale, $4 bis.default_locale */
static const char template_sql[] =
"SELECT t.subject, t.body, t.body_html FROM bis._template($1, $2, $3, $4) t";

/*
 * The notifications not handed out: $1 ids, $2 the rules that stopped them,
 * $3 until when each is held (NULL: suppressed for good).  The ids also
 * restrict the table itself, so that it is read through its primary key
 * whatever the statistics say (see batch_sql).
 */
static const char withheld_sql[] =
"UPDATE bis.notifications n"
"   SET status = CASE WHEN w.until IS NULL THEN 'suppressed' ELSE 'pending' END,"
"       status_reason = w.reason,"
"       available_at = coalesce(w.until, n.available_at),"
"       claimed_by = NULL, claimed_until = NULL,"
"       attempts = n.attempts OPERATOR(pg_catalog.-) 1"
"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
"                  pg_catalog.unnest($2::pg_catalog.text[]),"
"                  pg_catalog.unnest($3::pg_catalog.timestamptz[])) w (id, reason, until)"
" WHERE n.id OPERATOR(pg_catalog.=) ANY ($1) AND n.id OPERATOR(pg_catalog.=) w.id";

static SPIPlanPtr batch_plan = NULL;
static SPIPlanPtr batch_capped_plan = NULL;
static SPIPlanPtr template_plan = NULL;
static SPIPlanPtr withheld_plan = NULL;

/* A template, looked up once per call for each kind, channel and locale */
typedef struct Template
{
	char		key[3 * NAMEDATALEN];	/* hash key: kind, channel, locale */
	text	   *parts[3];		/* subject, body, body_html; NULL if none */
} Template;

/* The template for a row, from the cache or looked up; caller is in SPI */
static Template *
template_for(HTAB *templates, Datum kind, Datum channel, Datum locale, bool locale_null,
			 MemoryContext cxt)
{
	char		key[3 * NAMEDATALEN];
	Template   *t;
	bool		found;

	snprintf(key, sizeof(key), "%s|%s|%s", TextDatumGetCString(kind),
			 TextDatumGetCString(channel), locale_null ? "" : TextDatumGetCString(locale));
	t = hash_search(templates, key, HASH_ENTER, &found);
	if (!found)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[4] = {kind, channel, locale, CStringGetTextDatum(bis_default_locale)};
		char		nulls[4] = {' ', ' ', locale_null ? 'n' : ' ', ' '};
		int			ret;
		int			i;

		ret = SPI_execute_plan(prepare_kept(&template_plan, template_sql, 4, argtypes),
							   values, nulls, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
		for (i = 0; i < 3; i++)
		{
			bool		isnull = true;
			Datum		d = SPI_processed == 1 ?
				SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull) :
				(Datum) 0;

			t->parts[i] = isnull ? NULL :
				(text *) MemoryContextAlloc(cxt, VARSIZE_ANY(DatumGetPointer(d)));
			if (!isnull)
				memcpy(t->parts[i], DatumGetPointer(d), VARSIZE_ANY(DatumGetPointer(d)));
		}
	}
	return t;
}

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
}

static void
push_null(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvNull;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: a text, or JSON null */
static void
push_text(JsonbParseState **state, const char *key, Datum d, bool isnull)
{
	JsonbValue	v;
	text	   *t;

	if (isnull)
	{
		push_null(state, key);
		return;
	}
	push_key(state, key);
	t = DatumGetTextPP(d);
	v.type = jbvString;
	v.val.string.val = VARDATA_ANY(t);
	v.val.string.len = VARSIZE_ANY_EXHDR(t);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: a numeric, or JSON null */
static void
push_numeric(JsonbParseState **state, const char *key, Datum d, bool isnull)
{
	JsonbValue	v;

	if (isnull)
	{
		push_null(state, key);
		return;
	}
	push_key(state, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(d);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_int8(JsonbParseState **state, const char *key, Datum d, bool isnull)
{
	push_numeric(state, key, isnull ? (Datum) 0 : DirectFunctionCall1(int8_numeric, d),
				 isnull);
}

/* key: a timestamptz as to_jsonb writes it, ISO 8601 in the session's zone */
static void
push_timestamptz(JsonbParseState **state, const char *key, Datum d, bool isnull)
{
	JsonbValue	v;

	if (isnull)
	{
		push_null(state, key);
		return;
	}
	push_key(state, key);
	v.type = jbvString;
	v.val.string.val = JsonEncodeDateTime(NULL, d, TIMESTAMPTZOID, NULL);
	v.val.string.len = strlen(v.val.string.val);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: a jsonb value, copied in */
static void
push_jsonb(JsonbParseState **state, const char *key, Datum d, bool isnull)
{
	JsonbValue	v;
	Jsonb	   *j;

	if (isnull)
	{
		push_null(state, key);
		return;
	}
	push_key(state, key);
	j = DatumGetJsonbP(d);
	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
begin_object(JsonbParseState **state, const char *key)
{
	push_key(state, key);
	(void) pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
}

static void
end_object(JsonbParseState **state)
{
	(void) pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/* The unsubscribe links of one notification, where the shop has an endpoint */
typedef struct Unsubscribe
{
	char	   *url;			/* cancels the subscription */
	char	   *all_url;		/* also withdraws consent for the channel */
	char	   *list_header;	/* List-Unsubscribe, for email; NULL if none */
} Unsubscribe;

static void
unsubscribe_links(Signer *signer, int64 id, bool email, Unsubscribe *u)
{
	char	   *all_token = make_token(signer, id, TOKEN_SCOPE_CHANNEL);
	StringInfoData header;

	u->url = u->all_url = u->list_header = NULL;
	if (bis_unsubscribe_url[0] != '\0')
	{
		u->url = psprintf("%s%s", bis_unsubscribe_url,
						  make_token(signer, id, TOKEN_SCOPE_SUBSCRIPTION));
		u->all_url = psprintf("%s%s", bis_unsubscribe_url, all_token);
	}
	if (!email)
		return;
	/* RFC 2369; the https one first, for RFC 8058's one click */
	initStringInfo(&header);
	if (u->all_url != NULL)
		appendStringInfo(&header, "<%s>", u->all_url);
	if (bis_unsubscribe_mailto[0] != '\0')
		appendStringInfo(&header, "%s<mailto:%s?subject=unsubscribe%%20%s>",
						 header.len > 0 ? ", " : "", bis_unsubscribe_mailto, all_token);
	u->list_header = header.data;
}

/*
 * The payload of one row of batch_sql:
 *	{"item": {"sku", "title", "url", "image_url", "price", "compare_at_price",
 *			  "currency", "category", "attributes"},
 *	 "stock": {"quantity", "locale", "external_id"},
 *	 "contact": {"id", "first_name", "locale"},
 *	 "subscription": {"id", "locale", "external_id", "created_at"},
 *	 "channel", "address", "locale", "unsubscribe_url", "unsubscribe_all_url",
 *	 "price_was"}
 */
static Jsonb *
payload(const Datum *v, const bool *n, Datum address, bool address_null,
		Datum locale, bool locale_null, const Unsubscribe *u)
{
	JsonbParseState *state = NULL;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	begin_object(&state, "item");
	push_text(&state, "sku", v[B_SKU], false);
	push_text(&state, "title", v[B_TITLE], n[B_TITLE]);
	push_text(&state, "url", v[B_URL], n[B_URL]);
	push_text(&state, "image_url", v[B_IMAGE_URL], n[B_IMAGE_URL]);
	push_numeric(&state, "price", v[B_PRICE], n[B_PRICE]);
	push_numeric(&state, "compare_at_price", v[B_COMPARE_AT_PRICE], n[B_COMPARE_AT_PRICE]);
	push_text(&state, "currency", v[B_CURRENCY], n[B_CURRENCY]);
	push_text(&state, "category", v[B_CATEGORY], n[B_CATEGORY]);
	push_jsonb(&state, "attributes", v[B_ATTRIBUTES], n[B_ATTRIBUTES]);
	end_object(&state);

	begin_object(&state, "stock");
	push_int8(&state, "quantity", v[B_QUANTITY], n[B_QUANTITY]);
	push_text(&state, "locale", v[B_STOCK_LOCALE], n[B_STOCK_LOCALE]);
	push_text(&state, "external_id", v[B_STOCK_EXTERNAL_ID], n[B_STOCK_EXTERNAL_ID]);
	end_object(&state);

	begin_object(&state, "contact");
	push_text(&state, "id", v[B_CONTACT_ID], false);
	push_text(&state, "first_name", v[B_FIRST_NAME], n[B_FIRST_NAME]);
	push_text(&state, "locale", v[B_CONTACT_LOCALE], n[B_CONTACT_LOCALE]);
	end_object(&state);

	begin_object(&state, "subscription");
	push_int8(&state, "id", v[B_SUBSCRIPTION_ID], false);
	push_text(&state, "locale", v[B_LOCALE], n[B_LOCALE]);
	push_text(&state, "external_id", v[B_EXTERNAL_ID], n[B_EXTERNAL_ID]);
	push_timestamptz(&state, "created_at", v[B_SUBSCRIBED_AT], n[B_SUBSCRIBED_AT]);
	end_object(&state);

	push_text(&state, "channel", v[B_CHANNEL], false);
	push_text(&state, "address", address, address_null);
	push_text(&state, "locale", locale, locale_null);
	push_text(&state, "unsubscribe_url",
			  u->url ? CStringGetTextDatum(u->url) : (Datum) 0, u->url == NULL);
	push_text(&state, "unsubscribe_all_url",
			  u->all_url ? CStringGetTextDatum(u->all_url) : (Datum) 0, u->all_url == NULL);
	/* a price drop's: the price before it */
	push_numeric(&state, "price_was", v[B_PRICE_WAS], n[B_PRICE_WAS]);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* Messages handed to a contact in this batch, for the frequency cap */
typedef struct ContactCount
{
	char		contact_id[256];	/* hash key: contacts_limits_check bounds it */
	int64		handed_out;
} ContactCount;

/* An item's send rate and its window, for the items in a batch that have one */
typedef struct ItemBudget
{
	char		sku[256];		/* hash key: items_sku_check bounds it */
	SendRate	rate;
	RateBudget	budget;
} ItemBudget;

static int
compare_skus(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Take the send-rate windows of the items in the batch that have a rate, by
 * SKU, after the global one (the caller takes that first): concurrent claims
 * lock them in one order.  Caller is in SPI.
 */
static HTAB *
take_item_budgets(SPITupleTable *batch, uint64 nrows, TimestampTz now, MemoryContext cxt)
{
	HASHCTL		ctl;
	HTAB	   *items;
	HASH_SEQ_STATUS seq;
	ItemBudget *ib;
	char	  **skus;
	int			n = 0;
	uint64		r;
	int			i;

	ctl.keysize = sizeof(((ItemBudget *) 0)->sku);
	ctl.entrysize = sizeof(ItemBudget);
	ctl.hcxt = cxt;
	items = hash_create("bis item send rates of a claim", 16, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (r = 0; r < nrows; r++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(batch->vals[r], batch->tupdesc, B_SEND_RATE + 1, &isnull);
		SendRate	rate = bis_item_send_rate;
		char	   *sku;
		bool		found;

		/* bis.items checks an item's own rate; it parses */
		if (!isnull && !parse_send_rate(TextDatumGetCString(d), &rate))
			elog(ERROR, "invalid send rate of an item");
		if (rate.messages == 0)
			continue;
		sku = TextDatumGetCString(SPI_getbinval(batch->vals[r], batch->tupdesc, B_SKU + 1, &isnull));
		ib = hash_search(items, sku, HASH_ENTER, &found);
		if (!found)
			ib->rate = rate;
	}

	skus = palloc(sizeof(char *) * Max(hash_get_num_entries(items), 1));
	hash_seq_init(&seq, items);
	while ((ib = hash_seq_search(&seq)) != NULL)
		skus[n++] = ib->sku;
	qsort(skus, n, sizeof(char *), compare_skus);
	for (i = 0; i < n; i++)
	{
		char	   *scope = psprintf("item:%s", skus[i]);

		ib = hash_search(items, skus[i], HASH_FIND, NULL);
		rate_take(scope, ib->rate, now, &ib->budget);
	}
	return items;
}

/* A notification the rules stop, for withheld_sql */
typedef struct Withheld
{
	int			n;
	Datum	   *ids;
	Datum	   *reasons;
	Datum	   *untils;
	bool	   *untils_null;
} Withheld;

static void
withhold(Withheld *w, Datum id, const char *reason, RuleAction action, TimestampTz until)
{
	w->ids[w->n] = id;
	w->reasons[w->n] = CStringGetTextDatum(reason);
	w->untils[w->n] = TimestampTzGetDatum(until);
	w->untils_null[w->n] = action == RULE_DROP;
	w->n++;
}

/*
 * Which rule, if any, keeps a row from being handed out now; with *until
 * where it holds the row.  Counts what it lets through against the
 * frequency cap and the send rates.
 */
static const char *
rule_for(const Datum *v, const bool *n, int channel, TimestampTz now, HTAB *contacts,
		 RateBudget *global, HTAB *items, RuleAction *action, TimestampTz *until)
{
	pg_tz	   *tz = NULL;
	ContactCount *cc = NULL;
	ItemBudget *ib = NULL;

	*action = RULE_DROP;
	if (!n[B_CONSENT] && !DatumGetBool(v[B_CONSENT]))
		return "no_consent";
	if (((channel & CHANNEL_EMAIL) && n[B_EMAIL]) || ((channel & CHANNEL_SMS) && n[B_PHONE]) ||
		!DatumGetBool(v[B_HAS_DEVICE]))
		return "no_address";
	/* a reminder only to who has not bought, of what is still in stock */
	if (!n[B_BOUGHT] && DatumGetBool(v[B_BOUGHT]))
		return "purchased";
	if (!n[B_IN_STOCK] && !DatumGetBool(v[B_IN_STOCK]))
		return "sold_out";

	if (bis_quiet_hours.from_minute >= 0 && (channel & bis_quiet_hours_channels))
	{
		tz = time_zone(n[B_TIME_ZONE] ? NULL : TextDatumGetCString(v[B_TIME_ZONE]));
		*until = quiet_hours_end(now, tz, bis_quiet_hours);
		if (*until != 0)
		{
			*action = bis_quiet_hours_action;
			return "quiet_hours";
		}
	}
	if (contacts != NULL)
	{
		char		key[sizeof(cc->contact_id)];
		bool		found;

		text_to_cstring_buffer(DatumGetTextPP(v[B_CONTACT_ID]), key, sizeof(key));
		cc = hash_search(contacts, key, HASH_ENTER, &found);
		if (!found)
			cc->handed_out = 0;
		if (DatumGetInt64(v[B_EARLIER_TODAY]) + cc->handed_out >= bis_max_per_contact_day)
		{
			if (tz == NULL)
				tz = time_zone(n[B_TIME_ZONE] ? NULL : TextDatumGetCString(v[B_TIME_ZONE]));
			*until = local_day_start(now, tz, 1);
			*action = bis_frequency_cap_action;
			return "frequency_cap";
		}
	}
	*action = RULE_HOLD;
	if (global != NULL && global->left == 0)
	{
		*until = global->window_end;
		return "send_rate";
	}
	if (items != NULL)
	{
		char		key[sizeof(ib->sku)];

		text_to_cstring_buffer(DatumGetTextPP(v[B_SKU]), key, sizeof(key));
		ib = hash_search(items, key, HASH_FIND, NULL);
		if (ib != NULL && ib->budget.left == 0)
		{
			*until = ib->budget.window_end;
			return "send_rate";
		}
	}

	/* handed out: it counts */
	if (cc != NULL)
		cc->handed_out++;
	if (global != NULL)
	{
		global->left--;
		global->used++;
	}
	if (ib != NULL)
	{
		ib->budget.left--;
		ib->budget.used++;
	}
	return NULL;
}

/*
 * bis._hand_out(ids bigint[], worker text) returns setof bis.message
 *
 * The messages of the notifications among ids that worker has just claimed,
 * in id order, for those the delivery rules let through; the others are
 * suppressed or held, and say why.
 */
PG_FUNCTION_INFO_V1(bis__hand_out);

Datum
bis__hand_out(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext rowcxt;
	HASHCTL		ctl;
	HTAB	   *templates;
	HTAB	   *contacts = NULL;
	HTAB	   *items = NULL;
	RateBudget	global;
	bool		has_global = bis_send_rate.messages > 0;
	bool		has_links = bis_unsubscribe_url[0] != '\0' || bis_unsubscribe_mailto[0] != '\0';
	Signer		signer;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID};
	Datum		args[3];
	SPITupleTable *batch;
	uint64		nrows;
	Withheld	w;
	int			nestlevel;
	uint64		r;
	int			ret;

	/* run by bis's own functions, as the role that owns them */
	check_tenant_isolation(GetUserId());
	InitMaterializedSRF(fcinfo, 0);

	ctl.keysize = 3 * NAMEDATALEN;
	ctl.entrysize = sizeof(Template);
	ctl.hcxt = callcxt;
	templates = hash_create("bis templates of a claim", 8, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	if (bis_max_per_contact_day > 0)
	{
		ctl.keysize = sizeof(((ContactCount *) 0)->contact_id);
		ctl.entrysize = sizeof(ContactCount);
		contacts = hash_create("bis contacts of a claim", 64, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	rowcxt = AllocSetContextCreate(callcxt, "bis message", ALLOCSET_DEFAULT_SIZES);

	nestlevel = NewGUCNestLevel();
	by_key_only();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	if (contacts != NULL)
		ret = SPI_execute_plan(prepare_kept(&batch_capped_plan, batch_capped_sql, 2, argtypes),
							   args, NULL, true, 0);
	else
		ret = SPI_execute_plan(prepare_kept(&batch_plan, batch_sql, 2, argtypes),
							   args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	/* template lookups run statements of their own: keep the batch at hand */
	batch = SPI_tuptable;
	nrows = SPI_processed;

	if (nrows > 0 && has_global)
		rate_take("all", bis_send_rate, now, &global);
	if (nrows > 0)
		items = take_item_budgets(batch, nrows, now, callcxt);
	if (items != NULL && hash_get_num_entries(items) == 0)
		items = NULL;
	if (nrows > 0 && has_links)
		signer_begin(&signer);

	w.n = 0;
	w.ids = palloc(sizeof(Datum) * Max(nrows, 1));
	w.reasons = palloc(sizeof(Datum) * Max(nrows, 1));
	w.untils = palloc(sizeof(Datum) * Max(nrows, 1));
	w.untils_null = palloc(sizeof(bool) * Max(nrows, 1));

	for (r = 0; r < nrows; r++)
	{
		Datum		v[B_NCOLUMNS];
		bool		n[B_NCOLUMNS];
		Datum		out[M_NCOLUMNS];
		bool		out_null[M_NCOLUMNS];
		text	   *channel_name;
		int			channel;
		const char *rule;
		RuleAction	action;
		TimestampTz until = 0;
		Unsubscribe u = {NULL, NULL, NULL};
		Datum		address = (Datum) 0;
		bool		address_null = true;
		Datum		locale;
		bool		locale_null;
		Template   *t;
		Jsonb	   *p;
		MemoryContext oldcxt;
		int			k;

		heap_deform_tuple(batch->vals[r], batch->tupdesc, v, n);
		channel_name = DatumGetTextPP(v[B_CHANNEL]);
		channel = channel_bit(VARDATA_ANY(channel_name), VARSIZE_ANY_EXHDR(channel_name));
		oldcxt = MemoryContextSwitchTo(rowcxt);

		rule = rule_for(v, n, channel, now, contacts, has_global ? &global : NULL, items,
						&action, &until);
		if (rule != NULL)
		{
			MemoryContextSwitchTo(oldcxt);
			withhold(&w, v[B_ID], rule, action, until);
			MemoryContextReset(rowcxt);
			continue;
		}

		/* only the address the channel needs */
		if (channel & (CHANNEL_EMAIL | CHANNEL_SMS))
		{
			k = (channel & CHANNEL_EMAIL) ? B_EMAIL : B_PHONE;
			address = v[k];
			address_null = n[k];
		}

		/* the language to write in: the contact's, else the subscription's, else the stock's */
		k = !n[B_CONTACT_LOCALE] ? B_CONTACT_LOCALE : !n[B_LOCALE] ? B_LOCALE : B_STOCK_LOCALE;
		locale = v[k];
		locale_null = n[k];

		if (has_links)
			unsubscribe_links(&signer, DatumGetInt64(v[B_ID]), (channel & CHANNEL_EMAIL) != 0, &u);
		t = template_for(templates, v[B_KIND], v[B_CHANNEL], locale, locale_null, callcxt);
		p = payload(v, n, address, address_null, locale, locale_null, &u);
		memset(out_null, false, sizeof(out_null));
		out[M_ID] = v[B_ID];
		out[M_KIND] = v[B_KIND];
		out[M_CHANNEL] = v[B_CHANNEL];
		out[M_ADDRESS] = address;
		out_null[M_ADDRESS] = address_null;
		out[M_LOCALE] = locale;
		out_null[M_LOCALE] = locale_null;
		out[M_LIST_UNSUBSCRIBE] = u.list_header ? CStringGetTextDatum(u.list_header) : (Datum) 0;
		out_null[M_LIST_UNSUBSCRIBE] = u.list_header == NULL;
		out[M_PAYLOAD] = JsonbPGetDatum(p);
		out[M_ATTEMPTS] = v[B_ATTEMPTS];
		out[M_CLAIMED_UNTIL] = v[B_CLAIMED_UNTIL];
		out_null[M_CLAIMED_UNTIL] = n[B_CLAIMED_UNTIL];
		/* subject, body and the HTML body, which alone is escaped */
		for (k = 0; k < 3; k++)
		{
			out_null[M_SUBJECT + k] = t->parts[k] == NULL;
			if (t->parts[k] != NULL)
				out[M_SUBJECT + k] = PointerGetDatum(render_template(t->parts[k], p, k == 2));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_null);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}

	if (w.n > 0)
	{
		Oid			types[3] = {INT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
		int			dims[1] = {w.n};
		int			lbs[1] = {1};
		bool	   *no_nulls = palloc0(sizeof(bool) * w.n);

		args[0] = PointerGetDatum(construct_md_array(w.ids, no_nulls, 1, dims, lbs, INT8OID,
													 sizeof(int64), true, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_md_array(w.reasons, no_nulls, 1, dims, lbs,
													 TEXTOID, -1, false, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_md_array(w.untils, w.untils_null, 1, dims, lbs,
													 TIMESTAMPTZOID, sizeof(TimestampTz),
													 true, TYPALIGN_DOUBLE));
		ret = SPI_execute_plan(prepare_kept(&withheld_plan, withheld_sql, 3, types),
							   args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	}
	if (has_global && nrows > 0)
		rate_settle(&global);
	if (items != NULL)
	{
		HASH_SEQ_STATUS seq;
		ItemBudget *ib;

		hash_seq_init(&seq, items);
		while ((ib = hash_seq_search(&seq)) != NULL)
			rate_settle(&ib->budget);
	}
	if (nrows > 0 && has_links)
		signer_end(&signer);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	AtEOXact_GUC(false, nestlevel);
	return (Datum) 0;
}
