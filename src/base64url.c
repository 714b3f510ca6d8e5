/*-------------------------------------------------------------------------
 *
 * base64url.c
 *	  base64url without padding (RFC 4648, section 5), as unsubscribe tokens
 *	  are written, and read back only in the one form that is written.
 *
 * Decoding ignores the low bits of the last character, so that several
 * texts decode to the same bytes: only the one that encoding writes is
 * accepted, and a token that differs from a real one anywhere is not one.
 * This is plain C on a string, so that test/fuzz can run it outside the
 * server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "common/base64.h"

#include "base64url.h"

/* the longest text decoded: a token has 36 characters */
#define BASE64URL_TEXT_MAX 60

/*
 * Writes raw (len bytes) as base64url without padding, NUL-terminated, into
 * out (outsize bytes); returns its length, or -1 if out is too small.
 */
int
base64url_encode(const uint8 *raw, int len, char *out, int outsize)
{
	int			n = pg_b64_encode((const char *) raw, len, out, outsize - 1);
	int			i;

	if (n < 0)
		return -1;
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (i = 0; i < n; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return n;
}

/*
 * Decodes text (len bytes) into raw (rawsize bytes); returns the number of
 * bytes, or -1 if text is not what base64url_encode writes for them.
 */
int
base64url_decode(const char *text, int len, uint8 *raw, int rawsize)
{
	char		b64[BASE64URL_TEXT_MAX + 4];
	char		again[BASE64URL_TEXT_MAX + 4];
	int			padded = len;
	int			rawlen;
	int			i;

	if (len <= 0 || len > BASE64URL_TEXT_MAX)
		return -1;
	/* back to base64 with its padding */
	for (i = 0; i < len; i++)
		b64[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
	while (padded % 4 != 0)
		b64[padded++] = '=';
	if (pg_b64_dec_len(padded) > rawsize)
		return -1;
	rawlen = pg_b64_decode(b64, padded, (char *) raw, rawsize);
	if (rawlen < 0 ||
		base64url_encode(raw, rawlen, again, sizeof(again)) != len ||
		memcmp(again, text, len) != 0)
		return -1;
	return rawlen;
}
