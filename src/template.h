/*-------------------------------------------------------------------------
 *
 * template.h
 *	  The placeholders of message templates (template.c): plain C on a
 *	  string, compiled into the extension and into the fuzzing harnesses of
 *	  test/fuzz.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_TEMPLATE_H
#define BIS_TEMPLATE_H

#include "lib/stringinfo.h"

/* the longest placeholder, braces excluded: a path and its fallback */
#define PLACEHOLDER_MAX 256

/*
 * Appends to value the text of the value that path (pathlen bytes, not
 * NUL-terminated) names; false if there is none.
 */
typedef bool (*TemplateLookup) (void *arg, const char *path, int pathlen,
								StringInfo value);

typedef enum TemplateStatus
{
	TEMPLATE_OK,
	TEMPLATE_UNTERMINATED,		/* a "{{" without "}}" soon enough */
	TEMPLATE_INVALID			/* a placeholder whose path is not one */
} TemplateStatus;

extern TemplateStatus fill_template(const char *template, int len, bool html,
									TemplateLookup lookup, void *arg,
									StringInfo out, int *error_at, int *error_len);

#endif							/* BIS_TEMPLATE_H */
