/*-------------------------------------------------------------------------
 *
 * fuzz_transport.c
 *	  bis-mailer's SMTP and webhook deliveries (deliver_email in
 *	  src/mailer/email.c, deliver_webhook in src/mailer/webhook.c) against a
 *	  server on 127.0.0.1 that answers with any bytes.
 *
 * bis-mailer leaves the SMTP and HTTP protocols to libcurl, which reads the
 * server's answers; this runs libcurl and what the mailer makes of them
 * together.  The input's first byte picks the transport: "s" SMTP without
 * TLS, "t" SMTP that tries STARTTLS, anything else the webhook; the rest is
 * what the server sends, all at once, before it closes its side.  Each
 * input first has the mailer deliver one message to a server that takes
 * it, as a mailer has before most deliveries, on the same handles.  The
 * properties: a delivery ends (no hang), and its error is one line of text
 * a UTF8 database stores, whose summary for the log is a prefix of it.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mailer.h"

/* what the server sends, and whether the delivery is over */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static const uint8_t *script;
static size_t script_len;
static bool delivered;
static int	open_connections;
static int	current_fd = -1;	/* the connection being served */
static int	listen_fd;

static void
serve_one(int fd)
{
	const uint8_t *data;
	size_t		len;
	char		buf[4096];

	pthread_mutex_lock(&lock);
	data = script;
	len = script_len;
	open_connections++;
	current_fd = fd;
	pthread_mutex_unlock(&lock);

	while (len > 0)
	{
		ssize_t		n = send(fd, data, len, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		data += n;
		len -= n;
	}
	shutdown(fd, SHUT_WR);
	/* read what the client sends until it closes, or the delivery is over */
	for (;;)
	{
		struct pollfd pfd = {fd, POLLIN, 0};
		bool		over;

		pthread_mutex_lock(&lock);
		over = delivered;
		pthread_mutex_unlock(&lock);
		if (over)
			break;
		if (poll(&pfd, 1, 100) > 0 && recv(fd, buf, sizeof(buf), 0) <= 0)
			break;
	}
	pthread_mutex_lock(&lock);
	current_fd = -1;
	pthread_mutex_unlock(&lock);
	close(fd);
	pthread_mutex_lock(&lock);
	open_connections--;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
}

static void *
server(void *arg)
{
	for (;;)
	{
		int			fd = accept(listen_fd, NULL, NULL);

		if (fd >= 0)
			serve_one(fd);
	}
	return NULL;
}

static void
start_server(void)
{
	struct sockaddr_in sa = {0};
	socklen_t	len = sizeof(sa);
	pthread_t	thread;
	int			one = 1;
	static char smtp_url[64];
	static char webhook_url[64];

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
		listen(listen_fd, 16) != 0 ||
		getsockname(listen_fd, (struct sockaddr *) &sa, &len) != 0 ||
		pthread_create(&thread, NULL, server, NULL) != 0)
	{
		perror("fuzz_transport: could not start the server");
		exit(1);
	}
	snprintf(smtp_url, sizeof(smtp_url), "smtp://127.0.0.1:%d", ntohs(sa.sin_port));
	snprintf(webhook_url, sizeof(webhook_url), "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
	opt.smtp = smtp_url;
	opt.webhook = webhook_url;
}

/* the message of the deliveries: an email with every header, and its SMS */
static const Message message = {
	.id = 42,
	.channel = CHANNEL_EMAIL,
	.attempt = "1",
	.address = "ann@example.com",
	.subject = "Storm jacket \xe2\x80\x94 \xc3\x85lesund edition is back in stock",
	.body = "Hi Ann,\n\nStorm jacket is back in stock.\n\nhttps://shop.example/p/a-1\n",
	.body_html = "<p>Hi Ann,</p>\n<p><a href=\"https://shop.example/p/a-1\">Storm jacket</a></p>\n",
	.url = "https://shop.example/p/a-1",
	.list_unsubscribe = "<https://shop.example/u?t=AQBzAAAAAAAAACo>, <mailto:u@shop.example>",
	.webhook_json = "{\"id\": 42, \"channel\": \"sms\", \"address\": \"+46 70 100 0001\"}",
};

/* what a server that takes the message says */
static const char smtp_sent[] =
"220 mx.example ESMTP\r\n250 mx.example\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n";
static const char http_ok[] =
"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\": true}";

/* the server, and the mailer's options and handles, once */
static void
start(void)
{
	opt.log_level = LOG_ERROR + 1;
	opt.from = "Shop <noreply@shop.example>";
	http_init();
	start_server();
	if (!email_init())
		exit(1);
}

/* the same delivery again, with this server; the connection closed after it */
static void
deliver(bool smtp, const uint8_t *answer, size_t len, Delivery *d)
{
	pthread_mutex_lock(&lock);
	script = answer;
	script_len = len;
	delivered = false;
	pthread_mutex_unlock(&lock);

	memset(d, 0, sizeof(*d));
	if (smtp)
		deliver_email(&message, d);
	else
		deliver_webhook(&message, d);

	/* the next one starts on a new connection: wake the server's read */
	pthread_mutex_lock(&lock);
	delivered = true;
	if (current_fd >= 0)
		shutdown(current_fd, SHUT_RD);
	while (open_connections > 0)
		pthread_cond_wait(&changed, &lock);
	pthread_mutex_unlock(&lock);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool started = false;
	bool		smtp;
	Delivery	d;
	size_t		len;

	if (!started)
	{
		start();
		started = true;
	}
	if (size < 1 || size > 65536)
		return 0;
	smtp = data[0] == 's' || data[0] == 't';
	opt.smtp_tls = data[0] == 's' ? SMTP_TLS_OFF : SMTP_TLS_TRY;

	/* a mailer has delivered a message before, as it does all day */
	if (smtp)
		deliver(true, (const uint8_t *) smtp_sent, strlen(smtp_sent), &d);
	else
		deliver(false, (const uint8_t *) http_ok, strlen(http_ok), &d);
	FUZZ_ASSERT(d.outcome == OUTCOME_SENT);
	deliver(smtp, data + 1, size - 1, &d);

	FUZZ_ASSERT(d.outcome >= OUTCOME_SENT && d.outcome < NUM_OUTCOMES);
	len = strnlen(d.error, sizeof(d.error));
	FUZZ_ASSERT(len < sizeof(d.error));
	FUZZ_ASSERT(fuzz_utf8(d.error, len));
	for (size_t i = 0; i < len; i++)
		FUZZ_ASSERT((unsigned char) d.error[i] >= ' ' && d.error[i] != 0x7f);
	FUZZ_ASSERT(d.summary_len <= len);
	return 0;
}
