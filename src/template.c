/*-------------------------------------------------------------------------
 *
 * template.c
 *	  The placeholders of a message template: finding them, checking their
 *	  paths, and filling them with escaped values.
 *
 * A placeholder is {{path}} or {{path|fallback}}: path names a value by its
 * keys (and array positions) joined with dots, such as item.title or
 * item.attributes.sizes.0.  A value that is missing is replaced by the
 * fallback, or by nothing.  {{url:path}} is a link: its value is used only
 * if it is an http or https address, so that no javascript: or data: URL
 * reaches an href.  With html, values and fallbacks are HTML-escaped; the
 * template's own text is not, since it is the HTML.
 *
 * This is plain C on a string: the caller looks values up (render.c, in a
 * jsonb payload) and reports errors, so that test/fuzz can run it outside
 * the server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "template.h"

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

/*
 * Appends template (len bytes) to out with its placeholders filled, looking
 * values up with lookup(arg, ...).  On an error, *error_at is the offset of
 * the "{{" of the placeholder at fault and, for TEMPLATE_INVALID, *error_len
 * its length, braces included.
 */
TemplateStatus
fill_template(const char *template, int len, bool html,
			  TemplateLookup lookup, void *arg,
			  StringInfo out, int *error_at, int *error_len)
{
	const char *end = template + len;
	const char *p = template;
	StringInfoData value;

	initStringInfo(&value);
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
			appendBinaryStringInfo(out, p, end - p);
			break;
		}
		appendBinaryStringInfo(out, p, open - p);

		for (q = open + 2; q + 1 < end; q++)
		{
			if (q[0] == '}' && q[1] == '}')
			{
				close = q;
				break;
			}
		}
		*error_at = open - template;
		if (close == NULL || close - open - 2 > PLACEHOLDER_MAX)
		{
			pfree(value.data);
			return TEMPLATE_UNTERMINATED;
		}
		*error_len = close + 2 - open;

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
		{
			pfree(value.data);
			return TEMPLATE_INVALID;
		}

		resetStringInfo(&value);
		if (lookup(arg, path, pathlen, &value) &&
			(!is_url || safe_url(value.data, value.len)))
			append_value(out, value.data, value.len, html);
		else if (bar)
		{
			const char *fallback = bar + 1;
			int			fallbacklen = close - fallback;

			trim(&fallback, &fallbacklen);
			append_value(out, fallback, fallbacklen, html);
		}
		p = close + 2;
	}
	pfree(value.data);
	return TEMPLATE_OK;
}
