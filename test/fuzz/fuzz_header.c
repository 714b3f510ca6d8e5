/*-------------------------------------------------------------------------
 *
 * fuzz_header.c
 *	  The email header encoder (src/mailer/header.c), with any text as a
 *	  message's subject, its List-Unsubscribe value, --from, an address
 *	  and a body.
 *
 * The properties, from RFC 5322 and RFC 2047: a header is 7-bit ASCII
 * without control characters, its lines end in CRLF only where it is
 * folded, before a space, and none is longer than 998 characters; an
 * encoded-word is at most 75 characters; unfolding and decoding give back
 * the subject (its control characters as spaces), and a subject sent as it
 * is has nothing a reader would take for an encoded-word; List-Unsubscribe is
 * appended only when accepted, and then gives back its value; an address
 * accepted cannot leave the angle brackets of an SMTP command; a body has
 * CRLF line ends only.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "common/base64.h"
#include "mailer.h"

/* RFC 5322 2.1.1 */
#define LINE_MAX_OCTETS 998

/* Checks a header's form; returns it unfolded, malloc'd */
static char *
check_header(const char *h, size_t len)
{
	char	   *unfolded = pg_malloc(len + 1);
	size_t		n = 0;
	size_t		line = 0;

	FUZZ_ASSERT(strlen(h) == len);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) h[i];

		if (c == '\r')
		{
			FUZZ_ASSERT(h[i + 1] == '\n' && (h[i + 2] == ' ' || h[i + 2] == '\t'));
			FUZZ_ASSERT(line <= LINE_MAX_OCTETS);
			line = 0;
			i++;
			continue;
		}
		FUZZ_ASSERT(c >= ' ' && c < 0x7f);
		unfolded[n++] = (char) c;
		line++;
	}
	FUZZ_ASSERT(line <= LINE_MAX_OCTETS);
	unfolded[n] = '\0';
	return unfolded;
}

/* The subject, as a mail client reads it back */
static void
check_subject(const char *subject)
{
	PQExpBufferData buf;
	char	   *unfolded;
	const char *text;

	initPQExpBuffer(&buf);
	appendPQExpBufferStr(&buf, "Subject: ");
	append_header_text(&buf, subject);
	unfolded = check_header(buf.data, buf.len);
	text = unfolded + strlen("Subject: ");

	if (strncmp(text, "=?UTF-8?B?", 10) != 0)
	{
		const char *open = strstr(text, "=?");

		/* as it is, and nothing in it that a reader would decode */
		FUZZ_ASSERT(strcmp(text, subject) == 0);
		FUZZ_ASSERT(open == NULL || strstr(open + 2, "?=") == NULL);
	}
	else
	{
		/* encoded-words separated by spaces, which a reader drops */
		PQExpBufferData decoded;
		const char *p = text;

		initPQExpBuffer(&decoded);
		while (*p)
		{
			const char *end = strstr(p + 10, "?=");
			char		bytes[64];
			int			n;

			FUZZ_ASSERT(strncmp(p, "=?UTF-8?B?", 10) == 0 && end != NULL);
			FUZZ_ASSERT(end + 2 - p <= 75);
			n = pg_b64_decode(p + 10, end - p - 10, bytes, sizeof(bytes));
			FUZZ_ASSERT(n > 0);
			appendBinaryPQExpBuffer(&decoded, bytes, n);
			p = end + 2;
			if (*p == ' ')
				p++;
		}
		FUZZ_ASSERT(decoded.len == strlen(subject));
		for (size_t i = 0; i < strlen(subject); i++)
		{
			unsigned char c = (unsigned char) subject[i];

			FUZZ_ASSERT(decoded.data[i] == ((c < ' ' || c == 0x7f) ? ' ' : (char) c));
		}
		termPQExpBuffer(&decoded);
	}
	free(unfolded);
	termPQExpBuffer(&buf);
}

/* text without its spaces */
static char *
squeeze(const char *s)
{
	char	   *out = pg_strdup(s);
	char	   *q = out;

	for (; *s; s++)
		if (*s != ' ')
			*q++ = *s;
	*q = '\0';
	return out;
}

static void
check_list_unsubscribe(const char *value)
{
	PQExpBufferData buf;
	const char *prefix = "List-Unsubscribe: ";

	initPQExpBuffer(&buf);
	appendPQExpBufferStr(&buf, prefix);
	if (append_list_unsubscribe(&buf, value))
	{
		char	   *unfolded = check_header(buf.data, buf.len);
		char	   *got = squeeze(unfolded + strlen(prefix));
		char	   *want = squeeze(value);

		FUZZ_ASSERT(strcmp(got, want) == 0);
		FUZZ_ASSERT(value[0] == '<');
		free(got);
		free(want);
		free(unfolded);
	}
	else
		FUZZ_ASSERT(strcmp(buf.data, prefix) == 0);
	termPQExpBuffer(&buf);
}

static void
check_from(const char *from)
{
	char	   *header;

	opt.from_name = NULL;
	opt.from_address = NULL;
	header = parse_from(from);
	if (header != NULL)
	{
		char	   *unfolded = check_header(header, strlen(header));

		FUZZ_ASSERT(strncmp(header, "From: ", 6) == 0);
		FUZZ_ASSERT(valid_email(opt.from_address));
		FUZZ_ASSERT(opt.from_domain == strchr(opt.from_address, '@') + 1);
		free(unfolded);
		free(header);
	}
	free(opt.from_name);
	free(opt.from_address);
	opt.from_name = NULL;
	opt.from_address = NULL;
}

static void
check_body(const char *text)
{
	char	   *body = crlf_lines(text);

	for (const char *p = body; *p; p++)
	{
		if (*p == '\r')
			FUZZ_ASSERT(p[1] == '\n');
		if (*p == '\n')
			FUZZ_ASSERT(p > body && p[-1] == '\r');
	}
	free(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = fuzz_string(data, size);

	check_subject(text);
	check_list_unsubscribe(text);
	check_from(text);
	if (valid_email(text))
		FUZZ_ASSERT(strpbrk(text, "<>\r\n ") == NULL && strchr(text, '@') != NULL);
	check_body(text);
	free(text);
	return 0;
}
