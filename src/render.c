/*-------------------------------------------------------------------------
 *
 * render.c
 *	  bis.render(template, payload, html): fill a message template from a
 *	  notification's payload.
 *
 * template.c finds the placeholders ({{path}}, {{path|fallback}},
 * {{url:path}}) and escapes what fills them; here a path names a value in
 * the payload by its keys and array positions, and a value that is missing
 * or JSON null is missing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "bis.h"
#include "template.h"

/* array positions in a path stop here, before they could overflow */
#define ARRAY_POSITION_MAX 100000000


/*
 * Find the value a path names in the payload; false if it is missing or
 * JSON null.  The text of a string is its contents; of anything else, its
 * JSON.
 */
static bool
lookup(void *arg, const char *path, int pathlen, StringInfo value)
{
	Jsonb	   *payload = arg;
	JsonbContainer *container;
	JsonbValue	v;
	const char *seg = path;
	const char *end = path + pathlen;

	if (payload == NULL)
		return false;

	container = &payload->root;
	v.type = jbvBinary;
	v.val.binary.data = container;
	v.val.binary.len = VARSIZE(payload) - VARHDRSZ;

	while (seg < end)
	{
		const char *dot = memchr(seg, '.', end - seg);
		int			seglen = (dot ? dot : end) - seg;
		JsonbValue *found = NULL;

		if (v.type != jbvBinary)
			return false;		/* a scalar has no members */
		container = v.val.binary.data;

		if (JsonContainerIsObject(container))
			found = getKeyJsonValueFromContainer(container, seg, seglen, &v);
		else if (JsonContainerIsArray(container))
		{
			uint32		index = 0;
			int			i;

			for (i = 0; i < seglen; i++)
			{
				if (seg[i] < '0' || seg[i] > '9' || index > ARRAY_POSITION_MAX)
					return false;
				index = index * 10 + (seg[i] - '0');
			}
			found = getIthJsonbValueFromContainer(container, index);
			if (found)
				v = *found;
		}
		if (found == NULL)
			return false;
		seg += seglen + 1;
	}

	switch (v.type)
	{
		case jbvNull:
			return false;
		case jbvString:
			appendBinaryStringInfo(value, v.val.string.val, v.val.string.len);
			break;
		case jbvNumeric:
			appendStringInfoString(value,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v.val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(value, v.val.boolean ? "true" : "false");
			break;
		default:
			(void) JsonbToCString(value, v.val.binary.data, v.val.binary.len);
			break;
	}
	return true;
}

/* Fill template from payload (NULL: every value is missing) */
text *
render_template(text *template, Jsonb *payload, bool html)
{
	const char *t = VARDATA_ANY(template);
	StringInfoData out;
	int			at;
	int			len;

	initStringInfo(&out);
	switch (fill_template(t, VARSIZE_ANY_EXHDR(template), html, lookup, payload,
						  &out, &at, &len))
	{
		case TEMPLATE_OK:
			break;
		case TEMPLATE_UNTERMINATED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unterminated placeholder in template"),
					 errdetail("The \"{{\" at character %d has no \"}}\" within %d characters.",
							   at + 1, PLACEHOLDER_MAX)));
			break;
		case TEMPLATE_INVALID:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid placeholder \"%s\" in template", pnstrdup(t + at, len)),
					 errdetail("A placeholder names a payload value by keys joined with dots, such as {{item.title}}, optionally followed by |fallback; {{url:item.url}} is a link."),
					 errhint("The placeholder starts at character %d.", at + 1)));
			break;
	}
	return cstring_to_text_with_len(out.data, out.len);
}

/*
 * bis.render(template text, payload jsonb, html boolean default false)
 */
PG_FUNCTION_INFO_V1(bis_render);

Datum
bis_render(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(render_template(PG_GETARG_TEXT_PP(0),
									 PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1),
									 !PG_ARGISNULL(2) && PG_GETARG_BOOL(2)));
}
