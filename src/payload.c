/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  bis._payload: the payload snapshot of one notification.
 *
 * Every notification of a restock carries the same item and stock, built
 * once per chunk in SQL, and its own contact, subscription, channel, address
 * and locale, added here.  jsonb_build_object did the same at about 7 us a
 * notification, most of it spent finding out, for every argument of every
 * call, how to convert its type to JSON; here the types are known.  The
 * result is the same jsonb (the regression test "payload" compares them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(bis__payload);

/* the arguments of bis._payload, in order */
enum
{
	ARG_SHARED,
	ARG_CONTACT_ID,
	ARG_EMAIL,
	ARG_PHONE,
	ARG_CONTACT_LOCALE,
	ARG_TIME_ZONE,
	ARG_SUBSCRIPTION_ID,
	ARG_SUBSCRIPTION_LOCALE,
	ARG_EXTERNAL_ID,
	ARG_SUBSCRIBED_AT,
	ARG_CHANNEL,
	ARG_ADDRESS,
	ARG_LOCALE
};

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
}

/* key: the text argument, or JSON null */
static void
push_text(JsonbParseState **state, const char *key, FunctionCallInfo fcinfo, int arg)
{
	JsonbValue	v;

	push_key(state, key);
	if (PG_ARGISNULL(arg))
		v.type = jbvNull;
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(arg);

		v.type = jbvString;
		v.val.string.val = VARDATA_ANY(t);
		v.val.string.len = VARSIZE_ANY_EXHDR(t);
		if (v.val.string.len > JENTRY_OFFLENMASK)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("string too long to represent as jsonb string"),
					 errdetail("The value of \"%s\" is %d bytes long; jsonb takes at most %d.",
							   key, v.val.string.len, JENTRY_OFFLENMASK)));
	}
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * bis._payload(shared jsonb, contact_id text, email text, phone text,
 *				contact_locale text, time_zone text, subscription_id bigint,
 *				subscription_locale text, external_id text,
 *				subscribed_at timestamptz, channel text, address text,
 *				locale text) returns jsonb
 *
 * shared with these keys added:
 *	{"contact": {"id", "email", "phone", "locale", "time_zone"},
 *	 "subscription": {"id", "locale", "external_id", "created_at"},
 *	 "channel", "address", "locale"}
 */
Datum
bis__payload(PG_FUNCTION_ARGS)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *result;

	/* the shared part's keys, as jsonb's own concatenation copies them */
	if (PG_ARGISNULL(ARG_SHARED))
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	else
	{
		Jsonb	   *shared = PG_GETARG_JSONB_P(ARG_SHARED);
		JsonbIterator *it;
		JsonbIteratorToken tok;

		if (!JB_ROOT_IS_OBJECT(shared))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shared payload must be a JSON object")));
		it = JsonbIteratorInit(&shared->root);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_BEGIN_OBJECT);
		(void) pushJsonbValue(&state, tok, NULL);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_END_OBJECT)
			(void) pushJsonbValue(&state, tok, &v);
	}

	push_key(&state, "contact");
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_text(&state, "id", fcinfo, ARG_CONTACT_ID);
	push_text(&state, "email", fcinfo, ARG_EMAIL);
	push_text(&state, "phone", fcinfo, ARG_PHONE);
	push_text(&state, "locale", fcinfo, ARG_CONTACT_LOCALE);
	push_text(&state, "time_zone", fcinfo, ARG_TIME_ZONE);
	(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	push_key(&state, "subscription");
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_key(&state, "id");
	if (PG_ARGISNULL(ARG_SUBSCRIPTION_ID))
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric,
															PG_GETARG_DATUM(ARG_SUBSCRIPTION_ID)));
	}
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	push_text(&state, "locale", fcinfo, ARG_SUBSCRIPTION_LOCALE);
	push_text(&state, "external_id", fcinfo, ARG_EXTERNAL_ID);
	push_key(&state, "created_at");
	if (PG_ARGISNULL(ARG_SUBSCRIBED_AT))
		v.type = jbvNull;
	else
	{
		/* as to_jsonb writes a timestamptz: ISO 8601 in the session's zone */
		v.type = jbvString;
		v.val.string.val = JsonEncodeDateTime(NULL, PG_GETARG_DATUM(ARG_SUBSCRIBED_AT),
											  TIMESTAMPTZOID, NULL);
		v.val.string.len = strlen(v.val.string.val);
	}
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	push_text(&state, "channel", fcinfo, ARG_CHANNEL);
	push_text(&state, "address", fcinfo, ARG_ADDRESS);
	push_text(&state, "locale", fcinfo, ARG_LOCALE);

	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
