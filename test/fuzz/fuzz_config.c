/*-------------------------------------------------------------------------
 *
 * fuzz_config.c
 *	  bis-mailer's configuration file (parse_config_line in
 *	  src/mailer/options.c): any bytes as a file, line by line as
 *	  pg_get_line() reads it, each line with its newline.
 *
 * The properties: a setting's name is the letters, digits, hyphens and
 * underscores (made hyphens) that start the line, followed there by a
 * space, an "=", a "#" or the end of the line; its value has no newline;
 * and a name and value written back as "name = 'value'" read the same.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "mailer.h"

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

/* a character that may follow a name */
static bool
ends_name(char c)
{
	return c == '\0' || c == '=' || c == '#' || isspace((unsigned char) c);
}

static void
check_line(const char *text, size_t len)
{
	char	   *line = pnstrdup(text, len);
	char	   *name = NULL;
	PQExpBufferData value;
	size_t		start = 0;
	size_t		run;
	char		follows;

	/* the name as written: the name characters after leading spaces */
	while (isspace((unsigned char) line[start]))
		start++;
	run = strspn(line + start, NAME_CHARS "_");
	follows = line[start + run];

	initPQExpBuffer(&value);
	if (parse_config_line(line, &name, &value) == CONFIG_LINE_SETTING)
	{
		PQExpBufferData again;
		PQExpBufferData value2;
		char	   *name2 = NULL;

		FUZZ_ASSERT(name != NULL && name[0] != '\0' && ends_name(follows));
		FUZZ_ASSERT(strlen(name) == run && strspn(name, NAME_CHARS) == run && strchr(name, '_') == NULL);
		FUZZ_ASSERT(memchr(value.data, '\n', value.len) == NULL);

		/* written back, it reads the same */
		initPQExpBuffer(&again);
		appendPQExpBuffer(&again, "%s = '", name);
		for (size_t i = 0; i < value.len; i++)
		{
			if (value.data[i] == '\'')
				appendPQExpBufferChar(&again, '\'');
			appendPQExpBufferChar(&again, value.data[i]);
		}
		appendPQExpBufferStr(&again, "'\n");
		initPQExpBuffer(&value2);
		FUZZ_ASSERT(parse_config_line(again.data, &name2, &value2) == CONFIG_LINE_SETTING);
		FUZZ_ASSERT(strcmp(name2, name) == 0);
		FUZZ_ASSERT(value2.len == value.len && memcmp(value2.data, value.data, value.len) == 0);
		termPQExpBuffer(&again);
		termPQExpBuffer(&value2);
	}
	termPQExpBuffer(&value);
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *) data;
	size_t		start = 0;

	/* pg_get_line's lines: up to and with a newline; a NUL byte ends the line's string */
	while (start < size)
	{
		const char *nl = memchr(text + start, '\n', size - start);
		size_t		end = nl ? (size_t) (nl - text) + 1 : size;

		check_line(text + start, end - start);
		start = end;
	}
	return 0;
}
