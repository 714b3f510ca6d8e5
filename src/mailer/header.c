/*-------------------------------------------------------------------------
 *
 * header.c
 *	  The headers of bis-mailer's emails, made so that no field can break
 *	  them, and the checks of the addresses that go into them.
 *
 * Control characters never reach a header (no CR/LF injection), text that
 * is not printable ASCII becomes RFC 2047 encoded-words, and long headers
 * are folded (RFC 5322, lines of at most 78 characters where there is a
 * place to fold).  These functions do no I/O: test/fuzz runs them on
 * whatever text a fuzzer makes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/base64.h"
#include "common/logging.h"
#include "mailer.h"

/* longest header line, when there is a place to fold it (RFC 5322 2.1.1) */
#define HEADER_LINE_MAX 78
/* longest run of header text without a place to fold (998, less a margin) */
#define HEADER_WORD_MAX 900

/*
 * Whether an email address is one this mailer can put in an envelope and a
 * header as it is: printable ASCII without spaces, brackets, quotes or
 * separators, a local part, one "@" and a domain.
 */
bool
valid_email(const char *s)
{
	const char *at = strchr(s, '@');
	size_t		len = strlen(s);

	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL || len > 254)
		return false;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			return false;
	}
	return true;
}

static bool
printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/* the length of the last line of a header being written */
static size_t
line_length(PQExpBuffer buf)
{
	char	   *nl = strrchr(buf->data, '\n');

	return nl ? buf->len - (nl + 1 - buf->data) : buf->len;
}

/*
 * Appends text as RFC 2047 encoded-words (=?UTF-8?B?...?=), each of at most
 * 75 characters and on a line of its own after the first, never splitting a
 * UTF-8 character.  Control characters become spaces.
 */
static void
append_encoded_words(PQExpBuffer buf, const char *text)
{
	size_t		len = strlen(text);
	unsigned char *clean = pg_malloc(len + 1);
	size_t		start;

	for (size_t i = 0; i <= len; i++)
		clean[i] = ((unsigned char) text[i] < 0x20 && text[i] != '\0') || text[i] == 0x7f ?
			' ' : (unsigned char) text[i];
	/*
	 * 39 bytes are 52 base64 characters, 64 with "=?UTF-8?B?" and "?=": a
	 * line stays within 76 characters, "Subject: " included (RFC 2047 2)
	 */
	for (start = 0; start < len;)
	{
		size_t		end = Min(start + 39, len);
		char		enc[64];
		int			n;

		while (end < len && end > start + 1 && (clean[end] & 0xc0) == 0x80)
			end--;
		if (start > 0)
			appendPQExpBufferStr(buf, "\r\n ");
		n = pg_b64_encode((char *) clean + start, (int) (end - start), enc, sizeof(enc));
		appendPQExpBuffer(buf, "=?UTF-8?B?%.*s?=", n, enc);
		start = end;
	}
	free(clean);
}

/*
 * Appends unstructured header text (a subject): as it is, folded at spaces,
 * when it is printable ASCII without overlong words or runs of spaces; else
 * as encoded-words.
 * Text with "=?" is encoded too: a reader would decode what looks like an
 * encoded-word in it, and show something else.
 */
void
append_header_text(PQExpBuffer buf, const char *text)
{
	const char *p;
	bool		plain = printable_ascii(text) && strstr(text, "=?") == NULL;

	/* a line may have to hold a word and a run of spaces: neither may be long */
	for (p = text; plain && *p;)
	{
		size_t		word = strcspn(p, " ");
		size_t		spaces = strspn(p + word, " ");

		if (word > HEADER_WORD_MAX || spaces > HEADER_LINE_MAX)
			plain = false;
		p += word + spaces;
	}
	if (!plain)
	{
		append_encoded_words(buf, text);
		return;
	}
	for (p = text; *p;)
	{
		size_t		spaces = strspn(p, " ");
		size_t		word = strcspn(p + spaces, " ");

		/*
		 * Fold before a word that would make the line too long: the CRLF goes
		 * before the last space, so that unfolding gives the text back
		 */
		if (spaces > 0 && p != text && line_length(buf) + spaces + word > HEADER_LINE_MAX)
		{
			appendBinaryPQExpBuffer(buf, p, spaces - 1);
			appendPQExpBufferStr(buf, "\r\n");
			appendBinaryPQExpBuffer(buf, p + spaces - 1, word + 1);
		}
		else
			appendBinaryPQExpBuffer(buf, p, spaces + word);
		p += spaces + word;
	}
}

/*
 * The List-Unsubscribe value (RFC 2369) given by the database: "<URI>,
 * <URI>", printable ASCII, folded after the commas.  False, and nothing
 * appended, when it is not of that form: the email goes without it.
 */
bool
append_list_unsubscribe(PQExpBuffer buf, const char *value)
{
	const char *p = value;
	size_t		start = buf->len;

	if (!printable_ascii(value) || value[0] != '<')
		return false;
	while (*p)
	{
		const char *end = strchr(p, '>');
		size_t		len;

		if (*p != '<' || end == NULL || end - p > HEADER_WORD_MAX || memchr(p + 1, '<', end - p - 1))
			goto refuse;
		len = end + 1 - p;
		if (p != value && line_length(buf) + len + 1 > HEADER_LINE_MAX)
			appendPQExpBufferStr(buf, "\r\n ");
		else if (p != value)
			appendPQExpBufferChar(buf, ' ');
		appendBinaryPQExpBuffer(buf, p, len);
		p = end + 1;
		while (*p == ' ')
			p++;
		if (*p == ',')
		{
			appendPQExpBufferChar(buf, ',');
			p++;
			while (*p == ' ')
				p++;
			if (*p == '\0')
				goto refuse;
		}
		else if (*p != '\0')
			goto refuse;
	}
	return true;

refuse:
	/* what was appended before the value turned out not to be one goes */
	buf->len = start;
	buf->data[start] = '\0';
	return false;
}

/*
 * --from: "addr@domain" or "Name <addr@domain>", the name in UTF-8.  Sets
 * opt.from_address, opt.from_name and opt.from_domain, and returns the From
 * header; NULL, with a message, if from is not of that form.
 */
char *
parse_from(const char *from)
{
	const char *lt = strrchr(from, '<');
	PQExpBufferData hdr;

	if (lt != NULL)
	{
		const char *gt = strchr(lt, '>');
		const char *name_end = lt;

		if (gt == NULL || gt[1] != '\0')
		{
			pg_log_error("invalid --from \"%s\": ADDRESS or \"Name <ADDRESS>\" is expected", from);
			return NULL;
		}
		opt.from_address = pnstrdup(lt + 1, gt - lt - 1);
		while (name_end > from && name_end[-1] == ' ')
			name_end--;
		/* a quoted name loses its quotes: they are put back as needed */
		if (name_end - from >= 2 && from[0] == '"' && name_end[-1] == '"')
			opt.from_name = pnstrdup(from + 1, name_end - from - 2);
		else if (name_end > from)
			opt.from_name = pnstrdup(from, name_end - from);
	}
	else
		opt.from_address = pg_strdup(from);
	if (!valid_email(opt.from_address))
	{
		pg_log_error("invalid --from \"%s\": \"%s\" is not an email address", from, opt.from_address);
		return NULL;
	}
	if (opt.from_name != NULL)
		for (const char *p = opt.from_name; *p; p++)
			if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
			{
				pg_log_error("invalid --from \"%s\": the name must not have control characters, quotes or backslashes",
							 from);
				return NULL;
			}
	opt.from_domain = strchr(opt.from_address, '@') + 1;

	/* the From header, once: a display name that is not a plain atom is quoted or encoded */
	initPQExpBuffer(&hdr);
	appendPQExpBufferStr(&hdr, "From: ");
	if (opt.from_name == NULL)
		appendPQExpBufferStr(&hdr, opt.from_address);
	else
	{
		/* encoded-words fold a name that is not ASCII, or too long for a line */
		if (!printable_ascii(opt.from_name) || strlen(opt.from_name) > HEADER_LINE_MAX)
			append_encoded_words(&hdr, opt.from_name);
		else if (strpbrk(opt.from_name, "()<>[]:;@\\,.\"") != NULL)
			appendPQExpBuffer(&hdr, "\"%s\"", opt.from_name);
		else
			appendPQExpBufferStr(&hdr, opt.from_name);
		appendPQExpBuffer(&hdr, " <%s>", opt.from_address);
	}
	return hdr.data;
}


/* a copy of text with CRLF line breaks, as mail wants them */
char *
crlf_lines(const char *text)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	for (const char *p = text; *p; p++)
	{
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n' || *p == '\r')
			appendPQExpBufferStr(&buf, "\r\n");
		else
			appendPQExpBufferChar(&buf, *p);
	}
	return buf.data;
}
