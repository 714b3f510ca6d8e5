/*-------------------------------------------------------------------------
 *
 * render.c
 *	  bis.render(template, payload, html): fill a message template from a
 *	  notification's payload.
 *
 * A placeholder is {{path}} or {{path|fallback}}: path names a value in the
 * payload by its keys (and array positions) joined with dots, such as
 * item.title or item.attributes.sizes.0.  A value that is missing or JSON
 * null is replaced by the fallback, or by nothing.  {{url:path}} is a link:
 * its value is used only if it is an http or https address, so that no
 * javascript: or data: URL reaches an href.  With html, values and fallbacks
 * are HTML-escaped; the template's own text is not, since it is the HTML.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "bis.h"

/* the longest placeholder, braces excluded: a path and its fallback */
#define PLACEHOLDER_MAX 256

/* array positions in a path stop here, before they could overflow */
#define ARRAY_POSITION_MAX 100000000


/* Append s, HTML-escaped */
static void
append_html(StringInfo buf, const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		switch (s[i])
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&#39;");
				break;
			default:
				appendStringInfoChar(buf, s[i]);
		}
	}
}

static void
append_value(StringInfo buf, const char *s, int len, bool html)
{
	if (html)
		append_html(buf, s, len);
	else
		appendBinaryStringInfo(buf, s, len);
}

/*
 * Find the value a path names in the payload; false if it is missing or
 * JSON null.  The text of a string is its contents; of anything else, its
 * JSON.
 */
static bool
lookup(Jsonb *payload, const char *path, int pathlen, StringInfo value)
{
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

/* A path is one or more segments of letters, digits, _ and -, joined by dots */
static bool
valid_path(const char *path, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		char		c = path[i];

		if (c == '.')
		{
			if (i == 0 || i == len - 1 || path[i - 1] == '.')
				return false;
		}
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				   (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return len > 0;
}

/* Trim spaces at both ends of [*s, *s + *len) */
static void
trim(const char **s, int *len)
{
	while (*len > 0 && isspace((unsigned char) (*s)[0]))
	{
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
		(*len)--;
}

/* Whether a value may be a link: an http or https address without spaces */
static bool
safe_url(const char *s, int len)
{
	int			i;

	if (!((len > 7 && pg_strncasecmp(s, "http://", 7) == 0) ||
		  (len > 8 && pg_strncasecmp(s, "https://", 8) == 0)))
		return false;
	for (i = 0; i < len; i++)
	{
		if ((unsigned char) s[i] <= ' ' || s[i] == 0x7f)
			return false;
	}
	return true;
}

/* Fill template from payload (NULL: every value is missing) */
text *
render_template(text *template, Jsonb *payload, bool html)
{
	const char *t = VARDATA_ANY(template);
	const char *end = t + VARSIZE_ANY_EXHDR(template);
	const char *p;
	StringInfoData out;
	StringInfoData value;

	initStringInfo(&out);
	initStringInfo(&value);

	p = t;
	while (p < end)
	{
		const char *open = NULL;
		const char *close = NULL;
		const char *q;
		const char *path;
		const char *bar;
		int			pathlen;
		bool		is_url;

		for (q = p; q + 1 < end; q++)
		{
			if (q[0] == '{' && q[1] == '{')
			{
				open = q;
				break;
			}
		}
		if (open == NULL)
		{
			appendBinaryStringInfo(&out, p, end - p);
			break;
		}
		appendBinaryStringInfo(&out, p, open - p);

		for (q = open + 2; q + 1 < end; q++)
		{
			if (q[0] == '}' && q[1] == '}')
			{
				close = q;
				break;
			}
		}
		if (close == NULL || close - open - 2 > PLACEHOLDER_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unterminated placeholder in template"),
					 errdetail("The \"{{\" at character %d has no \"}}\" within %d characters.",
							   (int) (open - t) + 1, PLACEHOLDER_MAX)));

		path = open + 2;
		bar = memchr(path, '|', close - path);
		pathlen = (bar ? bar : close) - path;
		trim(&path, &pathlen);
		is_url = pathlen > 4 && memcmp(path, "url:", 4) == 0;
		if (is_url)
		{
			path += 4;
			pathlen -= 4;
			trim(&path, &pathlen);
		}
		if (!valid_path(path, pathlen))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid placeholder \"%s\" in template",
							pnstrdup(open, close + 2 - open)),
					 errdetail("A placeholder names a payload value by keys joined with dots, such as {{item.title}}, optionally followed by |fallback; {{url:item.url}} is a link."),
					 errhint("The placeholder starts at character %d.",
							 (int) (open - t) + 1)));

		resetStringInfo(&value);
		if (lookup(payload, path, pathlen, &value) &&
			(!is_url || safe_url(value.data, value.len)))
			append_value(&out, value.data, value.len, html);
		else if (bar)
		{
			const char *fallback = bar + 1;
			int			fallbacklen = close - fallback;

			trim(&fallback, &fallbacklen);
			append_value(&out, fallback, fallbacklen, html);
		}
		p = close + 2;
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
