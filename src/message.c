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
 * the contact's others.  A notification whose contact has no address for its
 * channel is not handed out: it is suppressed, and says why.
 *
 * The batch is read with one statement, prepared once, and each template is
 * looked up once per call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "bis.h"

/*
 * The claimed notifications of $1 (ids) that $2 (the worker) holds, with
 * what their messages are built from, in id order.
 */
static const char batch_sql[] =
"SELECT n.id, n.kind, n.channel, n.subscription_id, n.locale, n.external_id, n.subscribed_at,"
"       n.contact_id, n.sku, n.attempts, n.claimed_until,"
"       c.email, c.phone, c.locale, c.first_name,"
"       i.title, i.url, i.image_url, i.price, i.compare_at_price, i.currency, i.category,"
"       i.attributes, e.new_quantity, e.locale, e.external_id"
"  FROM bis.notifications n"
"  LEFT JOIN bis.contacts c ON c.contact_id OPERATOR(pg_catalog.=) n.contact_id"
"  LEFT JOIN bis.items i ON i.sku OPERATOR(pg_catalog.=) n.sku"
"  LEFT JOIN bis.restock_events e ON e.id OPERATOR(pg_catalog.=) n.restock_event_id"
" WHERE n.id OPERATOR(pg_catalog.=) ANY ($1) AND n.status OPERATOR(pg_catalog.=) 'claimed'"
"   AND n.claimed_by OPERATOR(pg_catalog.=) $2"
" ORDER BY n.id";

/* The columns of batch_sql, in order */
enum
{
	B_ID, B_KIND, B_CHANNEL, B_SUBSCRIPTION_ID, B_LOCALE, B_EXTERNAL_ID, B_SUBSCRIBED_AT,
	B_CONTACT_ID, B_SKU, B_ATTEMPTS, B_CLAIMED_UNTIL,
	B_EMAIL, B_PHONE, B_CONTACT_LOCALE, B_FIRST_NAME,
	B_TITLE, B_URL, B_IMAGE_URL, B_PRICE, B_COMPARE_AT_PRICE, B_CURRENCY, B_CATEGORY,
	B_ATTRIBUTES, B_QUANTITY, B_STOCK_LOCALE, B_STOCK_EXTERNAL_ID,
	B_NCOLUMNS
};

/* $1 kind, $2 channel, $3 locale, $4 bis.default_locale */
static const char template_sql[] =
"SELECT t.subject, t.body, t.body_html FROM bis._template($1, $2, $3, $4) t";

/* A notification not handed out: $1 ids */
static const char suppress_sql[] =
"UPDATE bis.notifications n"
"   SET status = 'suppressed', status_reason = 'no_address', claimed_by = NULL,"
"       claimed_until = NULL, attempts = n.attempts OPERATOR(pg_catalog.-) 1"
" WHERE n.id OPERATOR(pg_catalog.=) ANY ($1)";

static SPIPlanPtr batch_plan = NULL;
static SPIPlanPtr template_plan = NULL;
static SPIPlanPtr suppress_plan = NULL;

/* A template, looked up once per call for each kind, channel and locale */
typedef struct Template
{
	char		key[3 * NAMEDATALEN];	/* hash key: kind, channel, locale */
	text	   *parts[3];		/* subject, body, body_html; NULL if none */
} Template;

static SPIPlanPtr
prepare_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

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

/*
 * The payload of one row of batch_sql:
 *	{"item": {"sku", "title", "url", "image_url", "price", "compare_at_price",
 *			  "currency", "category", "attributes"},
 *	 "stock": {"quantity", "locale", "external_id"},
 *	 "contact": {"id", "first_name", "locale"},
 *	 "subscription": {"id", "locale", "external_id", "created_at"},
 *	 "channel", "address", "locale"}
 */
static Jsonb *
payload(const Datum *v, const bool *n, Datum address, bool address_null,
		Datum locale, bool locale_null)
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
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * bis._hand_out(ids bigint[], worker text) returns setof bis.message
 *
 * The messages of the notifications among ids that worker has just claimed,
 * in id order; those whose contact has no address for their channel are
 * suppressed instead.
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
	Oid			argtypes[2] = {INT8ARRAYOID, TEXTOID};
	Datum		args[2];
	SPITupleTable *batch;
	uint64		nrows;
	int64	   *suppressed;
	int			nsuppressed = 0;
	int			nestlevel;
	uint64		r;
	int			ret;

	InitMaterializedSRF(fcinfo, 0);

	ctl.keysize = 3 * NAMEDATALEN;
	ctl.entrysize = sizeof(Template);
	ctl.hcxt = callcxt;
	templates = hash_create("bis templates of a claim", 8, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	rowcxt = AllocSetContextCreate(callcxt, "bis message", ALLOCSET_DEFAULT_SIZES);

	nestlevel = NewGUCNestLevel();
	by_key_only();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	ret = SPI_execute_plan(prepare_kept(&batch_plan, batch_sql, 2, argtypes),
						   args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	/* template lookups run statements of their own: keep the batch at hand */
	batch = SPI_tuptable;
	nrows = SPI_processed;
	suppressed = MemoryContextAlloc(callcxt, sizeof(int64) * Max(nrows, 1));

	for (r = 0; r < nrows; r++)
	{
		Datum		v[B_NCOLUMNS];
		bool		n[B_NCOLUMNS];
		Datum		out[11];
		bool		out_null[11];
		char	   *channel;
		Datum		address = (Datum) 0;
		bool		address_null = true;
		Datum		locale;
		bool		locale_null;
		Template   *t;
		Jsonb	   *p;
		MemoryContext oldcxt;
		int			k;

		heap_deform_tuple(batch->vals[r], batch->tupdesc, v, n);
		oldcxt = MemoryContextSwitchTo(rowcxt);

		/* only the address the channel needs; email and sms need one */
		channel = TextDatumGetCString(v[B_CHANNEL]);
		if (strcmp(channel, "email") == 0 || strcmp(channel, "sms") == 0)
		{
			k = channel[0] == 'e' ? B_EMAIL : B_PHONE;
			address = v[k];
			address_null = n[k];
			if (address_null)
			{
				suppressed[nsuppressed++] = DatumGetInt64(v[B_ID]);
				MemoryContextSwitchTo(oldcxt);
				MemoryContextReset(rowcxt);
				continue;
			}
		}

		/* the language to write in: the contact's, else the subscription's, else the stock's */
		k = !n[B_CONTACT_LOCALE] ? B_CONTACT_LOCALE : !n[B_LOCALE] ? B_LOCALE : B_STOCK_LOCALE;
		locale = v[k];
		locale_null = n[k];

		t = template_for(templates, v[B_KIND], v[B_CHANNEL], locale, locale_null, callcxt);
		p = payload(v, n, address, address_null, locale, locale_null);
		out[0] = v[B_ID];
		out[1] = v[B_KIND];
		out[2] = v[B_CHANNEL];
		out[3] = address;
		out[4] = locale;
		out[8] = JsonbPGetDatum(p);
		out[9] = v[B_ATTEMPTS];
		out[10] = v[B_CLAIMED_UNTIL];
		memset(out_null, false, sizeof(out_null));
		out_null[3] = address_null;
		out_null[4] = locale_null;
		out_null[10] = n[B_CLAIMED_UNTIL];
		/* subject, body and the HTML body, which alone is escaped */
		for (k = 0; k < 3; k++)
		{
			out_null[5 + k] = t->parts[k] == NULL;
			if (t->parts[k] != NULL)
				out[5 + k] = PointerGetDatum(render_template(t->parts[k], p, k == 2));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_null);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}

	if (nsuppressed > 0)
	{
		Oid			argtype = INT8ARRAYOID;
		Datum	   *ids = palloc(sizeof(Datum) * nsuppressed);
		int			i;

		for (i = 0; i < nsuppressed; i++)
			ids[i] = Int64GetDatum(suppressed[i]);
		args[0] = PointerGetDatum(construct_array(ids, nsuppressed, INT8OID, sizeof(int64),
												  true, TYPALIGN_DOUBLE));
		ret = SPI_execute_plan(prepare_kept(&suppress_plan, suppress_sql, 1, &argtype),
							   args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	AtEOXact_GUC(false, nestlevel);
	return (Datum) 0;
}
