/*-------------------------------------------------------------------------
 *
 * bis-mailer.c
 *	  The reference mailer of bis: claims the notifications of the channels
 *	  it has a transport for, delivers them and acknowledges them.
 *
 * The protocol (README.md, "The mailer protocol"): LISTEN bis_notifications;
 * bis.claim a batch of the channels served; deliver each row; bis.ack what
 * went out, bis.fail what did not (retry => false for a permanent refusal);
 * claim again at once while batches come back full, else wait for a NOTIFY
 * or for the poll timer; on SIGTERM or SIGINT finish the row in hand and
 * bis.release the rest.  Delivery is at least once: a mailer that dies
 * holding a lease leaves its rows claimed until the lease runs out, then
 * another mailer sends them.  Mailers of different channels run side by side,
 * and several of one configuration share the load.
 *
 * A configuration error (the SMTP server wants TLS, a certificate does not
 * verify, a provider refuses the mailer's key) releases the row, which does
 * not count as an attempt, and pauses the channel: 10 s, doubling up to
 * 5 minutes while it lasts.  With --once the channel stays paused and the
 * exit status is 1.
 *
 * This file has the main loop; options.c the options, queue.c the queries,
 * email.c (header.c), webhook.c and push.c (webpush.c, fcm.c, apns.c) the
 * transports, log.c the log and metrics.c the Prometheus endpoint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/logging.h"
#include "mailer.h"

/* how long after a delivery its acknowledgement may wait, to batch acks */
#define ACK_INTERVAL_MS 250
/* reconnection delays, doubling from the first to the last */
#define RECONNECT_MIN_S 1
#define RECONNECT_MAX_S 30
/* pauses of a channel after a configuration error, doubling */
#define PAUSE_MIN_S 10
#define PAUSE_MAX_S 300

typedef enum BatchResult
{
	BATCH_EMPTY,				/* claim returned nothing */
	BATCH_PARTIAL,				/* fewer rows than asked for */
	BATCH_FULL,					/* as many as asked for: claim again at once */
	BATCH_DB_ERROR				/* a query failed: reconnect */
} BatchResult;

/* the columns of queue.c's claim query */
enum
{
	COL_ID, COL_CHANNEL, COL_ADDRESS, COL_ATTEMPTS, COL_SUBJECT, COL_BODY, COL_BODY_HTML,
	COL_URL, COL_LIST_UNSUBSCRIBE, COL_WEBHOOK_JSON
};

static volatile sig_atomic_t stop_requested = 0;
static int	signal_pipe[2] = {-1, -1};

/* a channel paused by a configuration error: until when, and for how long */
static long long paused_until[NUM_CHANNELS];
static int	pause_s[NUM_CHANNELS];
static bool config_failed = false;


/*
 * Signals: a flag, and a byte in a pipe that wakes the poll() of the wait
 */

static void
handle_stop_signal(int signo)
{
	int			save_errno = errno;

	stop_requested = 1;
	if (write(signal_pipe[1], "x", 1) < 0)
	{
		/* the pipe is full: a wake-up is there already */
	}
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe(signal_pipe) != 0)
	{
		pg_log_error("could not create a pipe: %m");
		exit(1);
	}
	for (int i = 0; i < 2; i++)
	{
		fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pqsignal(SIGPIPE, SIG_IGN);
}

static void
drain_signal_pipe(void)
{
	char		buf[64];

	while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/* sleeps, unless a stop signal comes first */
static void
sleep_interruptible(int seconds)
{
	long long	deadline = now_ms() + (long long) seconds * 1000;

	while (!stop_requested)
	{
		struct pollfd pfd = {signal_pipe[0], POLLIN, 0};
		long long	left = deadline - now_ms();

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int) left) > 0)
			drain_signal_pipe();
	}
}

/*
 * Tells systemd how the service is (Type=notify), through the socket it
 * names in NOTIFY_SOCKET; nothing when it names none.
 */
static void
notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t		len;
	int			fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
		(len = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';	/* an abstract socket */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), 0, (struct sockaddr *) &sa,
			   offsetof(struct sockaddr_un, sun_path) + len) < 0)
		log_warning("could not notify systemd: %m");
	close(fd);
}


/*
 * Delivery
 */

static void
deliver(Message *m, Delivery *d)
{
	d->outcome = OUTCOME_SENT;
	d->error[0] = '\0';
	d->summary_len = 0;
	if (m->webhook_json != NULL)
		deliver_webhook(m, d);
	else if (m->channel == CHANNEL_EMAIL)
		deliver_email(m, d);
	else if (m->channel == CHANNEL_PUSH || m->channel == CHANNEL_WEBPUSH)
		deliver_push(m, d);
	else
		/* cannot happen: only the channels served are claimed */
		set_outcome(d, OUTCOME_RETRY, "no transport for channel %s", channel_names[m->channel]);
}

static Channel
channel_of(const char *name)
{
	for (int c = 0; c < NUM_CHANNELS; c++)
		if (strcmp(name, channel_names[c]) == 0)
			return (Channel) c;
	return CHANNEL_EMAIL;		/* cannot happen: the claim checks channels */
}

static bool
paused(Channel c)
{
	return paused_until[c] > now_ms();
}

/* a configuration error: the channel waits, longer each time it comes back */
static void
pause_channel(Channel c)
{
	pause_s[c] = pause_s[c] == 0 ? PAUSE_MIN_S : Min(pause_s[c] * 2, PAUSE_MAX_S);
	paused_until[c] = opt.once ? LLONG_MAX : now_ms() + (long long) pause_s[c] * 1000;
	config_failed = true;
}

/* the channels to claim now: those served and not paused; false if none */
static bool
claimable(bool *channels)
{
	bool		any = false;

	for (int c = 0; c < NUM_CHANNELS; c++)
	{
		channels[c] = opt.serves[c] && !paused((Channel) c);
		any |= channels[c];
	}
	return any;
}

static void
log_failure(const Message *m, const Delivery *d, const char *what)
{
	log_warning("notification %lld failed (%s, attempt %s, %s): %.*s", m->id,
				channel_names[m->channel], m->attempt, what, (int) d->summary_len, d->error);
}

/*
 * Claims a batch and delivers it.  Delivered rows are acknowledged at most
 * ACK_INTERVAL_MS after the previous acknowledgement, and at the end of the
 * batch.  Rows not started when a stop signal arrives, or when the lease is
 * nearly over, and rows of a channel paused by a configuration error, are
 * released.  On a query failure, what the database is owed stays owed for
 * after the reconnection.
 */
static BatchResult
process_batch(void)
{
	bool		channels[NUM_CHANNELS];
	PGresult   *res;
	PGresult   *targets_res = NULL;
	PushTarget *targets = NULL;
	Message    *msgs;
	int			n;
	long long	claimed_at;
	long long	last_flush;
	int			i;
	bool		cut_short = false;
	bool		db_failed = false;
	bool		has_push = false;
	BatchResult result;

	if (!claimable(channels))
		return BATCH_EMPTY;
	res = queue_claim(channels);
	if (res == NULL)
		return BATCH_DB_ERROR;
	claimed_at = last_flush = now_ms();
	n = PQntuples(res);
	metrics_claim(n);

	msgs = pg_malloc0(sizeof(Message) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		Message    *m = &msgs[i];

		m->id = strtoll(PQgetvalue(res, i, COL_ID), NULL, 10);
		m->channel = channel_of(PQgetvalue(res, i, COL_CHANNEL));
		m->attempt = PQgetvalue(res, i, COL_ATTEMPTS);
		m->address = PQgetisnull(res, i, COL_ADDRESS) ? NULL : PQgetvalue(res, i, COL_ADDRESS);
		m->subject = PQgetvalue(res, i, COL_SUBJECT);
		m->body = PQgetvalue(res, i, COL_BODY);
		m->body_html = PQgetisnull(res, i, COL_BODY_HTML) ? NULL : PQgetvalue(res, i, COL_BODY_HTML);
		m->url = PQgetisnull(res, i, COL_URL) ? NULL : PQgetvalue(res, i, COL_URL);
		m->list_unsubscribe = PQgetisnull(res, i, COL_LIST_UNSUBSCRIBE) ? NULL :
			PQgetvalue(res, i, COL_LIST_UNSUBSCRIBE);
		m->webhook_json = PQgetisnull(res, i, COL_WEBHOOK_JSON) ? NULL :
			PQgetvalue(res, i, COL_WEBHOOK_JSON);
		has_push |= m->webhook_json == NULL &&
			(m->channel == CHANNEL_PUSH || m->channel == CHANNEL_WEBPUSH);
	}
	if (has_push && (targets_res = queue_push_targets(msgs, n, &targets)) == NULL)
		db_failed = true;

	for (i = 0; i < n && !db_failed; i++)
	{
		Message    *m = &msgs[i];
		const char *channel = channel_names[m->channel];
		Delivery	d;
		char		status[32];
		long long	started;

		/* stopping, or too late to deliver under this lease: give the rest back */
		if (stop_requested || now_ms() - claimed_at >= (long long) opt.lease * 900)
		{
			if (!stop_requested)
				log_warning("the lease of this batch is nearly over: giving back %d notifications", n - i);
			cut_short = true;
			break;
		}
		if (paused(m->channel))
		{
			queue_release_later(m->id);
			continue;
		}

		started = now_ms();
		deliver(m, &d);
		metrics_delivery(m->channel, d.outcome, (now_ms() - started) / 1000.0);
		for (int t = 0; t < m->ntargets; t++)
			if (m->targets[t].invalid)
			{
				log_info("notification %lld: removed a %s target the provider says is gone",
						 m->id, m->targets[t].platform);
				if (!remove_push_target(&m->targets[t]))
					db_failed = true;
			}

		switch (d.outcome)
		{
			case OUTCOME_SENT:
				log_info("notification %lld sent (%s, attempt %s)", m->id, channel, m->attempt);
				pause_s[m->channel] = 0;
				queue_ack_later(m->id);
				if (!db_failed && now_ms() - last_flush >= ACK_INTERVAL_MS)
				{
					if (!flush_acks())
						db_failed = true;
					last_flush = now_ms();
				}
				continue;
			case OUTCOME_CONFIG:
				pause_channel(m->channel);
				if (opt.once)
					log_error("notification %lld not delivered (%s): configuration error: %.*s; it goes back to the queue and %s is not served until a restart",
							  m->id, channel, (int) d.summary_len, d.error, channel);
				else
					log_error("notification %lld not delivered (%s): configuration error: %.*s; it goes back to the queue and %s pauses for %d s",
							  m->id, channel, (int) d.summary_len, d.error, channel, pause_s[m->channel]);
				queue_release_later(m->id);
				continue;
			default:
				break;
		}
		if (db_failed || !record_failure(m->id, &d, status, sizeof(status)))
		{
			/* it stays claimed: it comes back when the lease runs out */
			log_failure(m, &d, "not recorded");
			db_failed = true;
		}
		else if (strcmp(status, "pending") == 0)
			log_failure(m, &d, "will retry");
		else if (strcmp(status, "dead") == 0)
			log_failure(m, &d, "dead");
		else
		{
			char		what[64];

			snprintf(what, sizeof(what), "not recorded: it is %s, no longer this worker's", status);
			log_failure(m, &d, what);
		}
	}

	/* the rows not delivered go back, now or once the database is there again */
	for (; i < n; i++)
		queue_release_later(msgs[i].id);
	free(msgs);
	free(targets);
	PQclear(targets_res);
	PQclear(res);
	if (db_failed)
		return BATCH_DB_ERROR;

	if (!flush_acks() || !flush_releases())
		return BATCH_DB_ERROR;
	if (n == 0)
		result = BATCH_EMPTY;
	else if (n >= opt.batch || (cut_short && !stop_requested))
		result = BATCH_FULL;
	else
		result = BATCH_PARTIAL;
	return result;
}


/*
 * Waiting and reconnecting
 */

/* throws away wake-ups received so far; false if the connection is gone */
static bool
drain_notifications(void)
{
	PGnotify   *notify;

	if (!PQconsumeInput(conn))
		return false;
	while ((notify = PQnotifies(conn)) != NULL)
		PQfreemem(notify);
	return true;
}

/*
 * Waits for a NOTIFY on bis_notifications, the poll timer, the end of a
 * channel's pause or a stop signal; false if the connection is gone.
 */
static bool
wait_for_work(void)
{
	long long	deadline = now_ms() + (long long) opt.poll * 1000;

	for (int c = 0; c < NUM_CHANNELS; c++)
		if (opt.serves[c] && paused((Channel) c) && paused_until[c] < deadline)
			deadline = paused_until[c];

	for (;;)
	{
		struct pollfd pfd[2];
		PGnotify   *notify;
		bool		woken = false;
		long long	left;
		int			rc;

		if (stop_requested)
			return true;
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
			return false;
		while ((notify = PQnotifies(conn)) != NULL)
		{
			PQfreemem(notify);
			woken = true;
		}
		if (woken)
			return true;
		left = deadline - now_ms();
		if (left <= 0)
			return true;

		pfd[0].fd = PQsocket(conn);
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = signal_pipe[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		rc = poll(pfd, 2, (int) left);
		if (rc < 0 && errno != EINTR)
		{
			log_error("could not wait for the database: %m");
			return false;
		}
		if (rc > 0 && (pfd[1].revents & POLLIN))
			drain_signal_pipe();
	}
}

/*
 * Connects again after a lost connection, waiting 1 s, then 2, 4... up to
 * 30 s between attempts; then settles what the database is owed.  Returns
 * with conn NULL only when a stop signal came first, or with --once, when its
 * one attempt failed.
 */
static void
reconnect(int *delay)
{
	char		errbuf[1024];
	int			tries = 0;

	/* with --once, a single try: it is there to settle, not to go on */
	while (!stop_requested && !(opt.once && tries++ > 0))
	{
		log_info("reconnecting in %d s", *delay);
		sleep_interruptible(*delay);
		if (stop_requested)
			return;
		if (*delay < RECONNECT_MAX_S)
			*delay = Min(*delay * 2, RECONNECT_MAX_S);
		if (!db_connect(errbuf, sizeof(errbuf)))
		{
			log_error("could not connect to the database: %s", errbuf);
			continue;
		}
		log_info("reconnected; listening on bis_notifications");
		if (flush_acks() && flush_releases())
			return;
		PQfinish(conn);
		conn = NULL;
	}
}

static void
drop_connection(void)
{
	if (conn == NULL)
		return;
	if (PQstatus(conn) == CONNECTION_BAD)
		log_error("lost the database connection: %s", one_line(PQerrorMessage(conn)));
	else
		log_error("closing the database connection after an error");
	PQfinish(conn);
	conn = NULL;
}

static const char *
served_list(void)
{
	static char list[64];

	list[0] = '\0';
	for (int c = 0; c < NUM_CHANNELS; c++)
		if (opt.serves[c])
		{
			if (list[0])
				strlcat(list, ", ", sizeof(list));
			strlcat(list, channel_names[c], sizeof(list));
		}
	return list;
}

int
main(int argc, char **argv)
{
	char		errbuf[1024];
	int			delay = RECONNECT_MIN_S;
	int			exit_code = 0;

	parse_options(argc, argv);
	http_init();
	if ((opt.serves[CHANNEL_EMAIL] && !email_init()) ||
		((opt.serves[CHANNEL_PUSH] || opt.serves[CHANNEL_WEBPUSH]) && !push_init()))
		exit(2);
	setup_signals();
	if (opt.metrics != NULL && !metrics_start(opt.metrics))
		exit(2);

	if (!db_connect(errbuf, sizeof(errbuf)))
	{
		log_error("could not connect to the database: %s", errbuf);
		exit(1);
	}
	log_info("worker %s serving %s from database \"%s\" (batch %d, lease %d s, %s)",
			 opt.worker, served_list(), PQdb(conn), opt.batch, opt.lease,
			 opt.once ? "once" : "listening on bis_notifications");
	notify_systemd("READY=1");

	while (!stop_requested)
	{
		BatchResult r;

		if (conn == NULL)
		{
			reconnect(&delay);
			continue;
		}
		if (!drain_notifications())
		{
			drop_connection();
			if (opt.once)
			{
				exit_code = 1;
				break;
			}
			continue;
		}
		r = process_batch();
		if (r == BATCH_DB_ERROR)
		{
			drop_connection();
			if (opt.once)
			{
				/* one try to settle what is owed, so that nothing is sent twice */
				if (queue_owed() > 0)
				{
					reconnect(&delay);
					if (queue_owed() > 0)
						log_error("%d notifications stay claimed until their lease runs out",
								  queue_owed());
				}
				exit_code = 1;
				break;
			}
			continue;
		}
		delay = RECONNECT_MIN_S;
		if (r == BATCH_FULL)
			continue;
		if (opt.once)
		{
			if (r == BATCH_EMPTY)
				break;
			continue;
		}
		if (!wait_for_work())
			drop_connection();
	}

	if (stop_requested)
	{
		notify_systemd("STOPPING=1");
		if (conn != NULL && queue_owed() > 0)
		{
			flush_acks();
			flush_releases();
		}
		log_info("stopping on a signal");
	}
	if (config_failed && opt.once)
		exit_code = 1;
	if (conn != NULL)
		PQfinish(conn);
	http_cleanup();
	return exit_code;
}
