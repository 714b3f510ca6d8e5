/*-------------------------------------------------------------------------
 *
 * fuzz_metrics.c
 *	  bis-mailer's metrics endpoint (metrics_answer in src/mailer/metrics.c)
 *	  with any bytes as the request a client sends, over a socket pair.
 *
 * The properties: the answer is 200 with the metrics for a GET of /metrics
 * and 404 otherwise, and its Content-Length is the length of its body.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include <sys/socket.h>
#include <unistd.h>

#include "mailer.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			fds[2];
	PQExpBufferData reply;
	char		buf[8192];
	ssize_t		n;
	const char *body;
	long		length;
	bool		scrape;

	/* bigger requests are cut at 1 kB: a socket pair holds this much */
	if (size > 65536)
		return 0;
	for (int c = 0; c < NUM_CHANNELS; c++)
		opt.serves[c] = true;
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
	FUZZ_ASSERT(size == 0 || write(fds[0], data, size) == (ssize_t) size);
	shutdown(fds[0], SHUT_WR);
	metrics_answer(fds[1]);
	close(fds[1]);

	initPQExpBuffer(&reply);
	while ((n = read(fds[0], buf, sizeof(buf))) > 0)
		appendBinaryPQExpBuffer(&reply, buf, n);
	close(fds[0]);

	/* a client that closes before the end of its request gets no answer */
	if (reply.len > 0)
	{
		scrape = size >= 13 && (memcmp(data, "GET /metrics ", 13) == 0 ||
								memcmp(data, "GET /metrics?", 13) == 0);
		FUZZ_ASSERT(strncmp(reply.data, scrape ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 404 Not Found\r\n",
							scrape ? 17 : 24) == 0);
		body = strstr(reply.data, "\r\n\r\n");
		FUZZ_ASSERT(body != NULL);
		body += 4;
		FUZZ_ASSERT(sscanf(strstr(reply.data, "Content-Length: ") + 16, "%ld", &length) == 1);
		FUZZ_ASSERT(length == (long) reply.len - (body - reply.data));
	}
	termPQExpBuffer(&reply);
	return 0;
}
