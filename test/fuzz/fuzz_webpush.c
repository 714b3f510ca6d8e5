/*-------------------------------------------------------------------------
 *
 * fuzz_webpush.c
 *	  What bis-mailer reads of a browser's web push subscription, which a
 *	  shop's page registers and anyone can make: the endpoint's origin
 *	  (endpoint_origin in src/mailer/webpush.c), the keys p256dh and auth
 *	  (decode_base64url in src/mailer/util.c), and a message encrypted for
 *	  them (webpush_encrypt in src/mailer/crypto.c).
 *
 * The input is three lines: endpoint, p256dh, auth.  The properties: an
 * origin is https, or http to this machine only (localhost, 127.0.0.0/8,
 * ::1); a key never overflows its buffer; encryption for keys of the right
 * size either fails or gives one aes128gcm record of the expected size.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include <arpa/inet.h>

#include "mailer.h"

/* whether an origin's host is this machine, by its address */
static bool
loopback(const char *host)
{
	struct in_addr a;

	if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static void
check_origin(const char *endpoint)
{
	char	   *origin = endpoint_origin(endpoint);

	if (origin == NULL)
		return;
	if (strncmp(origin, "http://", 7) == 0)
	{
		char	   *host = pg_strdup(origin + 7);
		char	   *colon = host[0] == '[' ? strstr(host, "]:") : strchr(host, ':');

		if (colon != NULL)
			colon[host[0] == '[' ? 1 : 0] = '\0';
		FUZZ_ASSERT(loopback(host));
		free(host);
	}
	else
		FUZZ_ASSERT(strncmp(origin, "https://", 8) == 0);
	FUZZ_ASSERT(strpbrk(origin, "/?#@ \r\n") == origin + strcspn(origin, "/") &&
				strchr(origin + strcspn(origin, "/") + 2, '/') == NULL);
	free(origin);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = fuzz_string(data, size);
	char	   *lines[3] = {text, "", ""};
	unsigned char ua_public[66];
	unsigned char auth[17];
	int			n_public;
	int			n_auth;

	for (int i = 1; i < 3; i++)
	{
		char	   *nl = strchr(lines[i - 1], '\n');

		if (nl == NULL)
			break;
		*nl = '\0';
		lines[i] = nl + 1;
	}

	check_origin(lines[0]);
	n_public = decode_base64url(lines[1], ua_public, sizeof(ua_public));
	n_auth = decode_base64url(lines[2], auth, sizeof(auth));
	FUZZ_ASSERT(n_public >= -1 && n_public <= (int) sizeof(ua_public));
	FUZZ_ASSERT(n_auth >= -1 && n_auth <= (int) sizeof(auth));
	/* as webpush_send checks them */
	if (n_public == 65 && ua_public[0] == 0x04 && n_auth == 16)
	{
		PQExpBufferData out;
		const char *message = "{\"id\":1,\"title\":\"Back in stock\"}";

		initPQExpBuffer(&out);
		if (webpush_encrypt(ua_public, auth, message, strlen(message), &out))
			FUZZ_ASSERT(out.len == 16 + 4 + 1 + 65 + strlen(message) + 1 + 16);
		termPQExpBuffer(&out);
	}
	free(text);
	return 0;
}
