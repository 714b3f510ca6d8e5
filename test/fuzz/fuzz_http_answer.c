/*-------------------------------------------------------------------------
 *
 * fuzz_http_answer.c
 *	  What bis-mailer makes of an HTTP answer (src/mailer/http.c): the
 *	  error it records from a status and a body of any bytes, as webhooks,
 *	  FCM, APNs and push services send them, and the server messages it
 *	  logs (one_line).
 *
 * The input is "STATUS BODY": up to three digits, one separator, then the
 * body, kept to the first 8192 bytes as http_post keeps it.  The
 * properties: the error fits its buffer, is one line without control
 * characters, is text a UTF8 database stores (bis.fail() refuses anything
 * else, and the row would stay claimed), and its summary for the log is
 * "WHO HTTP STATUS", without the answer, which may echo the message.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "mailer.h"

/* http.c keeps this much of an answer */
#define ANSWER_KEEP 8192

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HttpAnswer	a = {0};
	Delivery	d = {0};
	char		reason[64] = "";
	char		summary[64];
	size_t		i = 0;
	size_t		len;
	const char *line;

	while (i < size && i < 3 && data[i] >= '0' && data[i] <= '9')
		a.status = a.status * 10 + (data[i++] - '0');
	if (i < size)
		i++;
	a.rc = CURLE_OK;
	initPQExpBuffer(&a.body);
	appendBinaryPQExpBuffer(&a.body, (const char *) data + i, Min(size - i, ANSWER_KEEP));

	/* what webhook.c, fcm.c, apns.c and webpush.c do with an answer */
	json_field(a.body.data, "reason", reason, sizeof(reason));
	(void) strstr(a.body.data, "SENDER_ID_MISMATCH");
	http_error(&d, OUTCOME_RETRY, "apns", &a);

	len = strnlen(d.error, sizeof(d.error));
	FUZZ_ASSERT(len < sizeof(d.error));
	FUZZ_ASSERT(fuzz_utf8(d.error, len));
	for (i = 0; i < len; i++)
		FUZZ_ASSERT((unsigned char) d.error[i] >= ' ' && d.error[i] != 0x7f);
	snprintf(summary, sizeof(summary), "apns HTTP %ld", a.status);
	FUZZ_ASSERT(d.summary_len == strlen(summary) && strncmp(d.error, summary, d.summary_len) == 0);

	/* a server's message, for the log */
	line = one_line(a.body.data);
	FUZZ_ASSERT(strlen(line) < 1024 && strpbrk(line, "\r\n\t") == NULL);

	http_answer_free(&a);
	return 0;
}
