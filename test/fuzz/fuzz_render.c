/*-------------------------------------------------------------------------
 *
 * fuzz_render.c
 *	  The template renderer (src/template.c): any bytes as a template,
 *	  filled as text and as HTML.
 *
 * The values a path names here stand in for a payload's: text with HTML's
 * special characters and a placeholder of its own, a link, a javascript:
 * URL, an empty string, or nothing, by the path's first character.  The
 * properties: an error names a "{{" of the template; a template without
 * "{{" is its own rendering; in HTML, no value or fallback brings a "<" or
 * a '"' that the template does not have.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "template.h"

static bool
lookup(void *arg, const char *path, int pathlen, StringInfo value)
{
	char		c = path[0];

	/* fill_template passes only valid paths: at least one character */
	FUZZ_ASSERT(pathlen > 0);
	if (c >= 'a' && c <= 'h')
		appendStringInfo(value, "<b class=\"x\">&'{{%.*s}}</b>", pathlen, path);
	else if (c >= 'i' && c <= 'p')
		appendStringInfo(value, "https://shop.example/p/%.*s?a=1&b=\"<x>\"", pathlen, path);
	else if (c >= 'q' && c <= 't')
		appendStringInfoString(value, "javascript:alert(\"<x>\")");
	else if (c >= '0' && c <= '9')
		return true;			/* an empty string */
	else
		return false;
	return true;
}

static void
render(const char *t, int len, bool html)
{
	StringInfoData out;
	int			at = -1;
	int			errlen = -1;
	TemplateStatus status;

	initStringInfo(&out);
	status = fill_template(t, len, html, lookup, NULL, &out, &at, &errlen);
	FUZZ_ASSERT(out.len == (int) strlen(out.data) || memchr(t, '\0', len) != NULL);
	if (status != TEMPLATE_OK)
	{
		FUZZ_ASSERT(at >= 0 && at + 2 <= len && t[at] == '{' && t[at + 1] == '{');
		if (status == TEMPLATE_INVALID)
			FUZZ_ASSERT(errlen >= 4 && at + errlen <= len &&
						t[at + errlen - 2] == '}' && t[at + errlen - 1] == '}');
	}
	else
	{
		bool		has_open = false;

		for (int i = 0; i + 1 < len; i++)
			if (t[i] == '{' && t[i + 1] == '{')
				has_open = true;
		if (!has_open)
			FUZZ_ASSERT(out.len == len && memcmp(out.data, t, len) == 0);
		if (html && memchr(t, '<', len) == NULL)
			FUZZ_ASSERT(memchr(out.data, '<', out.len) == NULL);
		if (html && memchr(t, '"', len) == NULL)
			FUZZ_ASSERT(memchr(out.data, '"', out.len) == NULL);
	}
	pfree(out.data);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 100000)
		return 0;
	render((const char *) data, (int) size, false);
	render((const char *) data, (int) size, true);
	return 0;
}
