/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers of bis-mailer: time, JSON strings, base64url, untrusted
 *	  text, files, outcomes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/base64.h"
#include "common/logging.h"
#include "mailer.h"
#include "mb/pg_wchar.h"

const char *const channel_names[NUM_CHANNELS] = {"email", "sms", "push", "webpush"};
const char *const outcome_names[NUM_OUTCOMES] = {"sent", "retry", "permanent", "config_error"};

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* a JSON string for s (UTF-8, as the database sends it), or null */
void
append_json_string(PQExpBuffer buf, const char *s)
{
	if (s == NULL)
	{
		appendPQExpBufferStr(buf, "null");
		return;
	}
	appendPQExpBufferChar(buf, '"');
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
		{
			appendPQExpBufferChar(buf, '\\');
			appendPQExpBufferChar(buf, (char) c);
		}
		else if (c == '\n')
			appendPQExpBufferStr(buf, "\\n");
		else if (c < 0x20 || c == 0x7f)
			appendPQExpBuffer(buf, "\\u%04x", c);
		else
			appendPQExpBufferChar(buf, (char) c);
	}
	appendPQExpBufferChar(buf, '"');
}

/* base64url without padding (RFC 4648, section 5), as JWTs and web push want */
void
append_base64url(PQExpBuffer buf, const unsigned char *data, size_t len)
{
	int			max = pg_b64_enc_len((int) len) + 1;
	char	   *enc = pg_malloc(max);
	int			n = pg_b64_encode((const char *) data, (int) len, enc, max);

	for (int i = 0; i < n && enc[i] != '='; i++)
		appendPQExpBufferChar(buf, enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i]);
	free(enc);
}

/* decodes base64url, padded or not; the length, or -1 if it is not base64url */
int
decode_base64url(const char *s, unsigned char *out, int outsize)
{
	size_t		len = strlen(s);
	char	   *std = pg_malloc(len + 4);
	size_t		n = 0;
	int			declen;
	char	   *dec;
	int			result = -1;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '=')
			break;
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!isalnum((unsigned char) c))
		{
			free(std);
			return -1;
		}
		std[n++] = c;
	}
	while (n % 4 != 0)
		std[n++] = '=';
	std[n] = '\0';
	declen = pg_b64_dec_len((int) n);
	dec = pg_malloc(declen + 1);
	declen = pg_b64_decode(std, (int) n, dec, declen);
	if (declen >= 0 && declen <= outsize)
	{
		memcpy(out, dec, declen);
		result = declen;
	}
	free(dec);
	free(std);
	return result;
}

/*
 * the length of the UTF-8 sequence at s (at most len bytes) if PostgreSQL
 * takes it as UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF), or 0
 */
static int
utf8_sequence_length(const unsigned char *s, size_t len)
{
	int			n = pg_utf_mblen(s);

	if ((size_t) n > len || !pg_utf8_islegal(s, n))
		return 0;
	return n;
}

/*
 * Appends up to ANSWER_IN_ERROR bytes of untrusted text (a server's answer)
 * to an error message: valid UTF-8 stays, control characters become spaces,
 * anything else a question mark, so that the database accepts it.
 */
void
append_untrusted(char *dst, size_t dstsize, const char *src, size_t srclen)
{
	size_t		used = strlen(dst);
	size_t		i = 0;

	if (srclen > ANSWER_IN_ERROR)
		srclen = ANSWER_IN_ERROR;
	while (i < srclen && used + 5 < dstsize)
	{
		const unsigned char *p = (const unsigned char *) src + i;
		int			n = utf8_sequence_length(p, srclen - i);

		if (n == 0)
		{
			dst[used++] = '?';
			i++;
		}
		else if (n == 1)
		{
			dst[used++] = (p[0] < 0x20 || p[0] == 0x7f) ? ' ' : (char) p[0];
			i++;
		}
		else
		{
			memcpy(dst + used, p, n);
			used += n;
			i += n;
		}
	}
	dst[used] = '\0';
}

void
set_outcome(Delivery *d, Outcome outcome, const char *fmt,...)
{
	va_list		ap;

	d->outcome = outcome;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	d->summary_len = strlen(d->error);
}

/* a whole file, NUL-terminated; exits with a message if it cannot be read */
char *
read_file(const char *path, const char *what)
{
	FILE	   *f = fopen(path, "r");
	PQExpBufferData buf;
	char		chunk[4096];
	size_t		n;

	if (f == NULL)
	{
		pg_log_error("could not open %s \"%s\": %m", what, path);
		exit(2);
	}
	initPQExpBuffer(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryPQExpBuffer(&buf, chunk, n);
	if (ferror(f) || PQExpBufferBroken(&buf))
	{
		pg_log_error("could not read %s \"%s\": %m", what, path);
		exit(2);
	}
	fclose(f);
	return buf.data;
}
