/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Prometheus metrics of bis-mailer, served at http://HOST:PORT/metrics
 *	  (--metrics HOST:PORT) by a thread of their own, so that a scrape is
 *	  answered while a delivery is in flight.
 *
 *	  bis_mailer_deliveries_total{channel, outcome}   counter
 *	  bis_mailer_delivery_seconds{channel}            histogram
 *	  bis_mailer_claims_total                         counter
 *	  bis_mailer_claimed_total                        counter (rows)
 *	  bis_mailer_queue_depth_seen                     gauge (rows the last claim got)
 *	  bis_mailer_token_refreshes_total{provider}      counter
 *	  bis_mailer_push_targets_removed_total{platform} counter
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include "common/logging.h"
#include "mailer.h"

static const double buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NUM_BUCKETS lengthof(buckets)

static const char *const providers[] = {"vapid", "fcm", "apns"};
static const char *const platforms[] = {"webpush", "fcm", "apns"};

static struct
{
	pthread_mutex_t lock;
	unsigned long long deliveries[NUM_CHANNELS][NUM_OUTCOMES];
	unsigned long long bucket_counts[NUM_CHANNELS][NUM_BUCKETS];
	unsigned long long count[NUM_CHANNELS];
	double		sum[NUM_CHANNELS];
	unsigned long long claims;
	unsigned long long claimed;
	int			depth_seen;
	unsigned long long refreshes[lengthof(providers)];
	unsigned long long removed[lengthof(platforms)];
}			m = {PTHREAD_MUTEX_INITIALIZER};

static int	listen_fd = -1;

void
metrics_delivery(Channel channel, Outcome outcome, double seconds)
{
	pthread_mutex_lock(&m.lock);
	m.deliveries[channel][outcome]++;
	for (size_t b = 0; b < NUM_BUCKETS; b++)
		if (seconds <= buckets[b])
			m.bucket_counts[channel][b]++;
	m.count[channel]++;
	m.sum[channel] += seconds;
	pthread_mutex_unlock(&m.lock);
}

void
metrics_claim(int rows)
{
	pthread_mutex_lock(&m.lock);
	m.claims++;
	m.claimed += rows;
	m.depth_seen = rows;
	pthread_mutex_unlock(&m.lock);
}

static int
index_of(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int) i;
	return -1;
}

void
metrics_token_refresh(const char *provider)
{
	int			i = index_of(providers, lengthof(providers), provider);

	pthread_mutex_lock(&m.lock);
	if (i >= 0)
		m.refreshes[i]++;
	pthread_mutex_unlock(&m.lock);
}

void
metrics_target_removed(const char *platform)
{
	int			i = index_of(platforms, lengthof(platforms), platform);

	pthread_mutex_lock(&m.lock);
	if (i >= 0)
		m.removed[i]++;
	pthread_mutex_unlock(&m.lock);
}

/* the text exposition format (version 0.0.4) */
static void
render(PQExpBuffer out)
{
	pthread_mutex_lock(&m.lock);
	appendPQExpBufferStr(out,
						 "# HELP bis_mailer_deliveries_total Deliveries by channel and outcome (sent, retry, permanent, config_error).\n"
						 "# TYPE bis_mailer_deliveries_total counter\n");
	for (int c = 0; c < NUM_CHANNELS; c++)
		if (opt.serves[c])
			for (int o = 0; o < NUM_OUTCOMES; o++)
				appendPQExpBuffer(out, "bis_mailer_deliveries_total{channel=\"%s\",outcome=\"%s\"} %llu\n",
								  channel_names[c], outcome_names[o], m.deliveries[c][o]);
	appendPQExpBufferStr(out,
						 "# HELP bis_mailer_delivery_seconds Time taken by one delivery.\n"
						 "# TYPE bis_mailer_delivery_seconds histogram\n");
	for (int c = 0; c < NUM_CHANNELS; c++)
	{
		if (!opt.serves[c])
			continue;
		for (size_t b = 0; b < NUM_BUCKETS; b++)
			appendPQExpBuffer(out, "bis_mailer_delivery_seconds_bucket{channel=\"%s\",le=\"%g\"} %llu\n",
							  channel_names[c], buckets[b], m.bucket_counts[c][b]);
		appendPQExpBuffer(out, "bis_mailer_delivery_seconds_bucket{channel=\"%s\",le=\"+Inf\"} %llu\n",
						  channel_names[c], m.count[c]);
		appendPQExpBuffer(out, "bis_mailer_delivery_seconds_sum{channel=\"%s\"} %.6f\n",
						  channel_names[c], m.sum[c]);
		appendPQExpBuffer(out, "bis_mailer_delivery_seconds_count{channel=\"%s\"} %llu\n",
						  channel_names[c], m.count[c]);
	}
	appendPQExpBuffer(out,
					  "# HELP bis_mailer_claims_total Calls of bis.claim.\n"
					  "# TYPE bis_mailer_claims_total counter\n"
					  "bis_mailer_claims_total %llu\n"
					  "# HELP bis_mailer_claimed_total Notifications claimed.\n"
					  "# TYPE bis_mailer_claimed_total counter\n"
					  "bis_mailer_claimed_total %llu\n"
					  "# HELP bis_mailer_queue_depth_seen Notifications the last claim got (the batch size: at least that many were due).\n"
					  "# TYPE bis_mailer_queue_depth_seen gauge\n"
					  "bis_mailer_queue_depth_seen %d\n",
					  m.claims, m.claimed, m.depth_seen);
	appendPQExpBufferStr(out,
						 "# HELP bis_mailer_token_refreshes_total Signed tokens made anew (VAPID, FCM access, APNs provider).\n"
						 "# TYPE bis_mailer_token_refreshes_total counter\n");
	for (size_t i = 0; i < lengthof(providers); i++)
		appendPQExpBuffer(out, "bis_mailer_token_refreshes_total{provider=\"%s\"} %llu\n",
						  providers[i], m.refreshes[i]);
	appendPQExpBufferStr(out,
						 "# HELP bis_mailer_push_targets_removed_total Device tokens and web push subscriptions removed as gone.\n"
						 "# TYPE bis_mailer_push_targets_removed_total counter\n");
	for (size_t i = 0; i < lengthof(platforms); i++)
		appendPQExpBuffer(out, "bis_mailer_push_targets_removed_total{platform=\"%s\"} %llu\n",
						  platforms[i], m.removed[i]);
	pthread_mutex_unlock(&m.lock);
}

static void
send_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(fd, data, len, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		data += n;
		len -= n;
	}
}

/* answers one request: GET /metrics, or 404; never waits long for a client */
void
metrics_answer(int fd)
{
	char		req[1024];
	size_t		len = 0;
	PQExpBufferData body;
	PQExpBufferData head;
	const char *status = "200 OK";

	/* the request line and headers, up to a blank line, within 2 s */
	while (len < sizeof(req) - 1)
	{
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t		n;

		if (poll(&pfd, 1, 2000) <= 0)
			return;
		n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
		if (n <= 0)
			return;
		len += n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[len] = '\0';

	initPQExpBuffer(&body);
	if (strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0)
		render(&body);
	else
	{
		status = "404 Not Found";
		appendPQExpBufferStr(&body, "bis-mailer serves /metrics\n");
	}
	initPQExpBuffer(&head);
	appendPQExpBuffer(&head, "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
					  "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, body.len);
	send_all(fd, head.data, head.len);
	send_all(fd, body.data, body.len);
	termPQExpBuffer(&head);
	termPQExpBuffer(&body);
}

static void *
serve(void *arg)
{
	for (;;)
	{
		int			fd = accept(listen_fd, NULL, NULL);

		if (fd < 0)
			continue;
		metrics_answer(fd);
		close(fd);
	}
	return NULL;
}

/* listens on HOST:PORT and starts the thread that answers; false on failure */
bool
metrics_start(const char *listen_on)
{
	const char *colon = strrchr(listen_on, ':');
	char	   *host = pnstrdup(listen_on, colon - listen_on);
	struct addrinfo hints = {0};
	struct addrinfo *ai;
	pthread_t	thread;
	sigset_t	block;
	sigset_t	old;
	int			one = 1;
	int			rc;

	/* [::1]:9187 */
	if (host[0] == '[' && host[strlen(host) - 1] == ']')
	{
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
	if (rc != 0)
	{
		pg_log_error("invalid --metrics \"%s\": %s", listen_on, gai_strerror(rc));
		return false;
	}
	listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 ||
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
		bind(listen_fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(listen_fd, 16) != 0)
	{
		pg_log_error("could not listen on \"%s\" for --metrics: %m", listen_on);
		freeaddrinfo(ai);
		return false;
	}
	freeaddrinfo(ai);
	free(host);

	/* signals are the main thread's: it is the one that stops */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&thread, NULL, serve, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		pg_log_error("could not start the metrics thread: %s", strerror(rc));
		return false;
	}
	pthread_detach(thread);
	log_info("serving metrics at http://%s/metrics", listen_on);
	return true;
}
