/*-------------------------------------------------------------------------
 *
 * fuzz_token.c
 *	  The text of unsubscribe tokens (src/base64url.c), as bis._read_token
 *	  reads what an unsubscribe link brings back: any bytes.
 *
 * The properties: what decodes is exactly what encoding writes for the
 * bytes it decodes to (one text per token), and any bytes come back from
 * their encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "base64url.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8		raw[64];
	uint8		again[64];
	char		text[128];
	int			n;

	if (size > 1000)
		return 0;

	/* what a link brings back */
	n = base64url_decode((const char *) data, (int) size, raw, sizeof(raw));
	FUZZ_ASSERT(n >= -1 && n <= (int) sizeof(raw));
	if (n >= 0)
	{
		FUZZ_ASSERT(base64url_encode(raw, n, text, sizeof(text)) == (int) size);
		FUZZ_ASSERT(memcmp(text, data, size) == 0);
	}

	/* what a message carries: bytes, at least one (an empty text is no token) */
	n = Min((int) size, 45);
	if (n == 0)
		return 0;
	FUZZ_ASSERT(base64url_encode(data, n, text, sizeof(text)) >= 0);
	FUZZ_ASSERT(strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
				strlen(text));
	FUZZ_ASSERT(base64url_decode(text, strlen(text), again, sizeof(again)) == n);
	FUZZ_ASSERT(memcmp(again, data, n) == 0);
	return 0;
}
