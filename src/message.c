/*-------------------------------------------------------------------------
 *
 * message.c
 *	  bis._message: what a mailer gets for a notification it claims.
 *
 * A notification keeps references and what the restock froze; its message is
 * built when a mailer claims it, from the item, contact and restock event as
 * they are then: the payload (a JSON object of what the message may say) and
 * the subject, body and HTML body rendered from the template against it.
 * The payload holds only the address of the notification's channel, never
 * the contact's others.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "bis.h"

/* The arguments of bis._message, and the fields read from each row */
enum
{
	ARG_NOTIFICATION,
	ARG_ITEM,
	ARG_CONTACT,
	ARG_EVENT,
	ARG_LOCALE,
	ARG_TEMPLATE
};

static const char *const notification_fields[] = {"id", "kind", "channel", "subscription_id",
	"locale", "external_id", "subscribed_at", "contact_id", "sku", "attempts", "claimed_until", NULL};
enum
{
	N_ID, N_KIND, N_CHANNEL, N_SUBSCRIPTION_ID, N_LOCALE, N_EXTERNAL_ID,
	N_SUBSCRIBED_AT, N_CONTACT_ID, N_SKU, N_ATTEMPTS, N_CLAIMED_UNTIL
};

static const char *const item_fields[] = {"title", "url", "image_url", "price",
	"compare_at_price", "currency", "category", "attributes", NULL};
enum
{
	I_TITLE, I_URL, I_IMAGE_URL, I_PRICE, I_COMPARE_AT_PRICE, I_CURRENCY,
	I_CATEGORY, I_ATTRIBUTES
};

static const char *const contact_fields[] = {"email", "phone", "locale", "first_name", NULL};
enum
{
	C_EMAIL, C_PHONE, C_LOCALE, C_FIRST_NAME
};

static const char *const event_fields[] = {"new_quantity", "locale", "external_id", NULL};
enum
{
	E_NEW_QUANTITY, E_LOCALE, E_EXTERNAL_ID
};

static const char *const template_fields[] = {"subject", "body", "body_html", NULL};

#define MAX_FIELDS 11

/* Where a row type keeps the fields read from it, found once per call site */
typedef struct RowFields
{
	Oid			typid;
	int			nfields;
	AttrNumber	attnums[MAX_FIELDS];
} RowFields;

typedef struct MessageCache
{
	RowFields	rows[ARG_TEMPLATE + 1];
	TupleDesc	result;
} MessageCache;

/* The values of a row's fields; all NULL when the row itself is */
typedef struct Fields
{
	Datum		values[MAX_FIELDS];
	bool		nulls[MAX_FIELDS];
} Fields;

static void
read_fields(FunctionCallInfo fcinfo, int arg, const char *const *names,
			RowFields *rf, Fields *f)
{
	HeapTupleHeader row;
	Oid			typid;
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	int			i;

	for (i = 0; names[i] != NULL; i++)
		f->nulls[i] = true;
	if (PG_ARGISNULL(arg))
		return;

	row = PG_GETARG_HEAPTUPLEHEADER(arg);
	typid = HeapTupleHeaderGetTypeId(row);
	tupdesc = lookup_rowtype_tupdesc(typid, HeapTupleHeaderGetTypMod(row));
	if (rf->typid != typid)
	{
		rf->nfields = 0;
		for (i = 0; names[i] != NULL; i++)
		{
			int			j;

			rf->attnums[i] = InvalidAttrNumber;
			for (j = 0; j < tupdesc->natts; j++)
			{
				Form_pg_attribute att = TupleDescAttr(tupdesc, j);

				if (!att->attisdropped && strcmp(NameStr(att->attname), names[i]) == 0)
					rf->attnums[i] = att->attnum;
			}
			if (rf->attnums[i] == InvalidAttrNumber)
				elog(ERROR, "row type %s has no column \"%s\"",
					 format_type_be(typid), names[i]);
			rf->nfields++;
		}
		rf->typid = typid;
	}

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	for (i = 0; i < rf->nfields; i++)
		f->values[i] = heap_getattr(&tuple, rf->attnums[i], tupdesc, &f->nulls[i]);
	ReleaseTupleDesc(tupdesc);
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
 * bis._message(n bis.notifications, i bis.items, c bis.contacts,
 *				e bis.restock_events, locale text, t bis.templates)
 * returns bis.message
 *
 * The payload:
 *	{"item": {"sku", "title", "url", "image_url", "price", "compare_at_price",
 *			  "currency", "category", "attributes"},
 *	 "stock": {"quantity", "locale", "external_id"},
 *	 "contact": {"id", "first_name", "locale"},
 *	 "subscription": {"id", "locale", "external_id", "created_at"},
 *	 "channel", "address", "locale"}
 */
PG_FUNCTION_INFO_V1(bis__message);

Datum
bis__message(PG_FUNCTION_ARGS)
{
	MessageCache *cache = (MessageCache *) fcinfo->flinfo->fn_extra;
	Fields		n,
				i,
				c,
				e,
				t;
	JsonbParseState *state = NULL;
	Jsonb	   *payload;
	Datum		address = (Datum) 0;
	bool		address_null = true;
	char	   *channel;
	Datum		values[11];
	bool		nulls[11];
	int			k;

	/* bis 0.3 to 0.5 named this symbol with other arguments */
	if (PG_NARGS() != ARG_TEMPLATE + 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function bis._message belongs to an older version of bis"),
				 errhint("Update the extension with ALTER EXTENSION bis UPDATE.")));
	if (PG_ARGISNULL(ARG_NOTIFICATION))
		PG_RETURN_NULL();
	if (cache == NULL)
	{
		TupleDesc	tupdesc;
		MemoryContext oldcxt;

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		oldcxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		cache = palloc0(sizeof(MessageCache));
		cache->result = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		MemoryContextSwitchTo(oldcxt);
		fcinfo->flinfo->fn_extra = cache;
	}
	read_fields(fcinfo, ARG_NOTIFICATION, notification_fields, &cache->rows[ARG_NOTIFICATION], &n);
	read_fields(fcinfo, ARG_ITEM, item_fields, &cache->rows[ARG_ITEM], &i);
	read_fields(fcinfo, ARG_CONTACT, contact_fields, &cache->rows[ARG_CONTACT], &c);
	read_fields(fcinfo, ARG_EVENT, event_fields, &cache->rows[ARG_EVENT], &e);
	read_fields(fcinfo, ARG_TEMPLATE, template_fields, &cache->rows[ARG_TEMPLATE], &t);

	/* only the address the channel needs */
	channel = TextDatumGetCString(n.values[N_CHANNEL]);
	if (strcmp(channel, "email") == 0)
	{
		address = c.values[C_EMAIL];
		address_null = c.nulls[C_EMAIL];
	}
	else if (strcmp(channel, "sms") == 0)
	{
		address = c.values[C_PHONE];
		address_null = c.nulls[C_PHONE];
	}

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	begin_object(&state, "item");
	push_text(&state, "sku", n.values[N_SKU], false);
	push_text(&state, "title", i.values[I_TITLE], i.nulls[I_TITLE]);
	push_text(&state, "url", i.values[I_URL], i.nulls[I_URL]);
	push_text(&state, "image_url", i.values[I_IMAGE_URL], i.nulls[I_IMAGE_URL]);
	push_numeric(&state, "price", i.values[I_PRICE], i.nulls[I_PRICE]);
	push_numeric(&state, "compare_at_price", i.values[I_COMPARE_AT_PRICE],
				 i.nulls[I_COMPARE_AT_PRICE]);
	push_text(&state, "currency", i.values[I_CURRENCY], i.nulls[I_CURRENCY]);
	push_text(&state, "category", i.values[I_CATEGORY], i.nulls[I_CATEGORY]);
	push_jsonb(&state, "attributes", i.values[I_ATTRIBUTES], i.nulls[I_ATTRIBUTES]);
	end_object(&state);

	begin_object(&state, "stock");
	push_int8(&state, "quantity", e.values[E_NEW_QUANTITY], e.nulls[E_NEW_QUANTITY]);
	push_text(&state, "locale", e.values[E_LOCALE], e.nulls[E_LOCALE]);
	push_text(&state, "external_id", e.values[E_EXTERNAL_ID], e.nulls[E_EXTERNAL_ID]);
	end_object(&state);

	begin_object(&state, "contact");
	push_text(&state, "id", n.values[N_CONTACT_ID], false);
	push_text(&state, "first_name", c.values[C_FIRST_NAME], c.nulls[C_FIRST_NAME]);
	push_text(&state, "locale", c.values[C_LOCALE], c.nulls[C_LOCALE]);
	end_object(&state);

	begin_object(&state, "subscription");
	push_int8(&state, "id", n.values[N_SUBSCRIPTION_ID], false);
	push_text(&state, "locale", n.values[N_LOCALE], n.nulls[N_LOCALE]);
	push_text(&state, "external_id", n.values[N_EXTERNAL_ID], n.nulls[N_EXTERNAL_ID]);
	push_timestamptz(&state, "created_at", n.values[N_SUBSCRIBED_AT], n.nulls[N_SUBSCRIBED_AT]);
	end_object(&state);

	push_text(&state, "channel", n.values[N_CHANNEL], false);
	push_text(&state, "address", address, address_null);
	push_text(&state, "locale", PG_ARGISNULL(ARG_LOCALE) ? (Datum) 0 : PG_GETARG_DATUM(ARG_LOCALE),
			  PG_ARGISNULL(ARG_LOCALE));
	payload = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));

	values[0] = n.values[N_ID];
	values[1] = n.values[N_KIND];
	values[2] = n.values[N_CHANNEL];
	values[3] = address;
	values[4] = PG_ARGISNULL(ARG_LOCALE) ? (Datum) 0 : PG_GETARG_DATUM(ARG_LOCALE);
	values[8] = JsonbPGetDatum(payload);
	values[9] = n.values[N_ATTEMPTS];
	values[10] = n.values[N_CLAIMED_UNTIL];
	memset(nulls, false, sizeof(nulls));
	nulls[3] = address_null;
	nulls[4] = PG_ARGISNULL(ARG_LOCALE);
	nulls[10] = n.nulls[N_CLAIMED_UNTIL];
	/* subject, body and the HTML body, which alone is escaped */
	for (k = 0; k < 3; k++)
	{
		nulls[5 + k] = t.nulls[k];
		if (!t.nulls[k])
			values[5 + k] = PointerGetDatum(render_template(DatumGetTextPP(t.values[k]),
															payload, k == 2));
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(cache->result, values, nulls)));
}
