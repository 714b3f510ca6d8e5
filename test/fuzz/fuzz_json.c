/*-------------------------------------------------------------------------
 *
 * fuzz_json.c
 *	  bis-mailer's JSON reading (json_field in src/mailer/http.c): the
 *	  answers of FCM's token endpoint and of APNs, and the FCM service
 *	  account file, as any bytes; and fcm_token_answer on them.
 *
 * The properties: a field found fits the buffer it was asked into; an
 * access token accepted goes into an Authorization header as it is, so it
 * is printable ASCII without spaces, and it expires after it was fetched.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "mailer.h"

/* the fields bis-mailer reads, and the buffers it reads them into */
static const struct
{
	const char *name;
	size_t		size;
} fields[] = {
	{"access_token", 2048},
	{"expires_in", 32},
	{"reason", 64},
	{"client_email", 256},
	{"private_key_id", 128},
	{"token_uri", 512},
	{"project_id", 256},
	{"private_key", 4096},
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *json = fuzz_string(data, size);
	char		token[2048];
	time_t		now = 1800000000;
	time_t		expires = 0;

	for (size_t i = 0; i < lengthof(fields); i++)
	{
		char	   *out = pg_malloc(fields[i].size);
		const char *found = json_field(json, fields[i].name, out, fields[i].size);

		FUZZ_ASSERT(found == NULL || found == out);
		if (found != NULL)
			FUZZ_ASSERT(strlen(out) < fields[i].size);
		free(out);
	}
	if (fcm_token_answer(json, now, token, sizeof(token), &expires))
	{
		FUZZ_ASSERT(token[0] != '\0');
		for (const char *p = token; *p; p++)
			FUZZ_ASSERT(*p > ' ' && *p < 0x7f);
		FUZZ_ASSERT(expires > now);
	}
	free(json);
	return 0;
}
