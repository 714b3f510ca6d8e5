/*
 * bench_client: the libpq client test/bench/run.sh uses where psql cannot
 * measure what is wanted.  Connection parameters come from the environment
 * (PGHOST, PGPORT, PGUSER, PGDATABASE).  Times are CLOCK_MONOTONIC.
 *
 *   bench_client time WARMUP TIMED [REPEAT]
 *       Runs WARMUP (any SQL, possibly several statements; "" for none), then
 *       TIMED as one autocommit statement, and prints the milliseconds from
 *       sending TIMED to its result (commit included).  With REPEAT, a query
 *       that returns one integer, it then runs REPEAT (autocommit) until it
 *       returns 0, and prints "timed_ms total_ms calls".
 *
 *   bench_client drain RESTOCK CLAIM ACK
 *       Runs RESTOCK (autocommit), then until CLAIM returns no row: CLAIM
 *       (autocommit; its first column is the id), then ACK with $1 = the
 *       claimed ids as a bigint[] literal (autocommit).  Prints
 *       "restock_ms drain_ms rows batches claim_ms", claim_ms being the part
 *       of drain_ms spent in CLAIM.
 *
 *   bench_client notify N BIS_SQL PEER_SQL
 *       One listener connection LISTENs on bis_notifications and
 *       peer_outbox; a writer connection runs, for i = 1..N, BIS_SQL and
 *       PEER_SQL (in alternating order), where "%d" in them stands for i.
 *       For each statement it records when it was sent (t0), when its result
 *       came back, i.e. the commit was acknowledged (t1), and when the
 *       listener received the notification (t2), and prints one line per
 *       implementation:
 *       "impl n lost exec_median exec_p99 after_commit_median
 *        after_commit_p99 total_median total_p99" (ms; total = t2 - t0,
 *       after_commit = t2 - t1, negative when the notification arrived
 *       before the writer saw its commit acknowledged).
 *
 *   bench_client listen
 *       LISTENs on bis_notifications and peer_outbox until SIGTERM or
 *       SIGINT, then prints "bis_notifications peer_outbox" counts.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void
die(const char *what, PGconn *conn)
{
	fprintf(stderr, "bench_client: %s: %s", what, conn ? PQerrorMessage(conn) : "\n");
	exit(1);
}

static PGconn *
connect_db(void)
{
	PGconn	   *conn = PQconnectdb("");

	if (PQstatus(conn) != CONNECTION_OK)
		die("connection failed", conn);
	return conn;
}

/* run SQL whose result is not wanted; every result must be a success */
static void
exec_ok(PGconn *conn, const char *sql)
{
	PGresult   *res;

	if (!PQsendQuery(conn, sql))
		die("could not send query", conn);
	while ((res = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
		{
			fprintf(stderr, "bench_client: %s\nin: %s\n", PQresultErrorMessage(res), sql);
			exit(1);
		}
		PQclear(res);
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* the q-quantile of n sorted values, linear between ranks as percentile_cont */
static double
quantile(double *v, int n, double q)
{
	double		pos;
	int			lo;

	if (n == 0)
		return -1;
	qsort(v, n, sizeof(double), cmp_double);
	pos = q * (n - 1);
	lo = (int) pos;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

static int
cmd_time(const char *warmup, const char *timed, const char *repeat)
{
	PGconn	   *conn = connect_db();
	PGresult   *res;
	double		t0,
				t1;
	long		calls = 0;

	if (warmup[0])
		exec_ok(conn, warmup);
	t0 = now_ms();
	res = PQexec(conn, timed);
	t1 = now_ms();
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "bench_client: %s\nin: %s\n", PQresultErrorMessage(res), timed);
		return 1;
	}
	PQclear(res);
	if (repeat == NULL)
	{
		printf("%.3f\n", t1 - t0);
		PQfinish(conn);
		return 0;
	}
	for (;;)
	{
		long		got;

		res = PQexec(conn, repeat);
		calls++;
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		{
			fprintf(stderr, "bench_client: %s\nin: %s\n", PQresultErrorMessage(res), repeat);
			return 1;
		}
		got = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
		if (got == 0)
			break;
	}
	printf("%.3f %.3f %ld\n", t1 - t0, now_ms() - t0, calls);
	PQfinish(conn);
	return 0;
}

static int
cmd_drain(const char *restock, const char *claim, const char *ack)
{
	PGconn	   *conn = connect_db();
	PGresult   *res;
	double		t0,
				t1,
				t2,
				claim_ms = 0;
	long		rows = 0,
				batches = 0;
	size_t		cap = 1 << 16;
	char	   *ids = malloc(cap);

	t0 = now_ms();
	exec_ok(conn, restock);
	t1 = now_ms();
	for (;;)
	{
		int			n,
					i;
		size_t		len = 0;
		const char *params[1];
		double		c0 = now_ms();

		res = PQexec(conn, claim);
		claim_ms += now_ms() - c0;
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "bench_client: %s\nin: %s\n", PQresultErrorMessage(res), claim);
			return 1;
		}
		n = PQntuples(res);
		if (n == 0)
		{
			PQclear(res);
			break;
		}
		ids[len++] = '{';
		for (i = 0; i < n; i++)
		{
			const char *id = PQgetvalue(res, i, 0);
			size_t		l = strlen(id);

			if (len + l + 3 > cap)
			{
				cap *= 2;
				ids = realloc(ids, cap);
			}
			if (i > 0)
				ids[len++] = ',';
			memcpy(ids + len, id, l);
			len += l;
		}
		ids[len++] = '}';
		ids[len] = '\0';
		PQclear(res);

		params[0] = ids;
		res = PQexecParams(conn, ack, 1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
			atoi(PQgetvalue(res, 0, 0)) != n)
		{
			fprintf(stderr, "bench_client: ack of %d rows: %s%s\n", n,
					PQresultErrorMessage(res),
					PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
			return 1;
		}
		PQclear(res);
		rows += n;
		batches++;
	}
	t2 = now_ms();
	printf("%.3f %.3f %ld %ld %.3f\n", t1 - t0, t2 - t1, rows, batches, claim_ms);
	PQfinish(conn);
	return 0;
}

/* wait until the listener has a notification or timeout_ms passes; its time, or -1 */
static double
wait_notify(PGconn *listener, const char *channel, double timeout_ms)
{
	double		deadline = now_ms() + timeout_ms;

	for (;;)
	{
		PGnotify   *nf;
		struct pollfd pfd;
		double		left;

		PQconsumeInput(listener);
		while ((nf = PQnotifies(listener)) != NULL)
		{
			int			match = strcmp(nf->relname, channel) == 0;

			PQfreemem(nf);
			if (match)
				return now_ms();
		}
		left = deadline - now_ms();
		if (left <= 0)
			return -1;
		pfd.fd = PQsocket(listener);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int) left + 1) < 0 && errno != EINTR)
			die("poll", NULL);
		if (pfd.revents & POLLIN)
		{
			/* stamp the arrival before libpq parses it */
			double		t = now_ms();

			if (!PQconsumeInput(listener))
				die("listener", listener);
			while ((nf = PQnotifies(listener)) != NULL)
			{
				int			match = strcmp(nf->relname, channel) == 0;

				PQfreemem(nf);
				if (match)
					return t;
			}
		}
	}
}

typedef struct Series
{
	const char *name;
	const char *channel;
	const char *sql;
	double	   *exec,
			   *after,
			   *total;
	int			n,
				lost;
} Series;

static void
one_restock(PGconn *writer, PGconn *listener, Series *s, int i)
{
	char		sql[4096];
	PGresult   *res;
	struct pollfd pfd[2];
	double		t0,
				t1 = -1,
				t2 = -1;

	snprintf(sql, sizeof sql, s->sql, i);
	t0 = now_ms();
	if (!PQsendQuery(writer, sql))
		die("could not send restock", writer);
	/* whichever comes first: the writer's result or the listener's notification */
	while (t1 < 0 || t2 < 0)
	{
		if (t1 < 0 && !PQisBusy(writer))
		{
			t1 = now_ms();
			while ((res = PQgetResult(writer)) != NULL)
			{
				if (PQresultStatus(res) != PGRES_COMMAND_OK)
				{
					fprintf(stderr, "bench_client: %s\nin: %s\n", PQresultErrorMessage(res), sql);
					exit(1);
				}
				PQclear(res);
			}
			continue;
		}
		if (t1 >= 0)
		{
			/* the commit is acknowledged; give the notification 5 s */
			t2 = wait_notify(listener, s->channel, 5000);
			break;
		}
		pfd[0].fd = PQsocket(writer);
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = PQsocket(listener);
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		if (poll(pfd, 2, 10000) < 0 && errno != EINTR)
			die("poll", NULL);
		if (pfd[1].revents & POLLIN && t2 < 0)
		{
			double		t = now_ms();
			PGnotify   *nf;

			if (!PQconsumeInput(listener))
				die("listener", listener);
			while ((nf = PQnotifies(listener)) != NULL)
			{
				if (strcmp(nf->relname, s->channel) == 0 && t2 < 0)
					t2 = t;
				PQfreemem(nf);
			}
		}
		if (pfd[0].revents & POLLIN)
		{
			if (!PQconsumeInput(writer))
				die("writer", writer);
		}
	}
	s->exec[s->n] = t1 - t0;
	if (t2 < 0)
		s->lost++;
	else
	{
		int			k = s->n - s->lost;	/* received so far */

		s->after[k] = t2 - t1;
		s->total[k] = t2 - t0;
	}
	s->n++;
}

static int
cmd_notify(int n, const char *bis_sql, const char *peer_sql)
{
	PGconn	   *listener = connect_db();
	PGconn	   *writer = connect_db();
	Series		s[2] = {
		{"bis", "bis_notifications", bis_sql},
		{"peer", "peer_outbox", peer_sql},
	};
	int			i,
				j;
	struct timespec pause = {0, 20 * 1000 * 1000};

	exec_ok(listener, "LISTEN bis_notifications; LISTEN peer_outbox");
	for (j = 0; j < 2; j++)
	{
		s[j].exec = calloc(n, sizeof(double));
		s[j].after = calloc(n, sizeof(double));
		s[j].total = calloc(n, sizeof(double));
	}
	for (i = 1; i <= n; i++)
	{
		int			first = i % 2;

		one_restock(writer, listener, &s[first], i);
		nanosleep(&pause, NULL);
		one_restock(writer, listener, &s[1 - first], i);
		nanosleep(&pause, NULL);
	}
	for (j = 0; j < 2; j++)
	{
		int			got = s[j].n - s[j].lost;
		double		em = quantile(s[j].exec, s[j].n, 0.5),
					e99 = quantile(s[j].exec, s[j].n, 0.99),
					am = quantile(s[j].after, got, 0.5),
					a99 = quantile(s[j].after, got, 0.99),
					tm = quantile(s[j].total, got, 0.5),
					t99 = quantile(s[j].total, got, 0.99);

		printf("%s %d %d %.3f %.3f %.3f %.3f %.3f %.3f\n", s[j].name, s[j].n, s[j].lost,
			   em, e99, am, a99, tm, t99);
	}
	PQfinish(writer);
	PQfinish(listener);
	return 0;
}

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = 1;
}

static int
cmd_listen(void)
{
	PGconn	   *conn = connect_db();
	long		bis = 0,
				peer = 0;
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	exec_ok(conn, "LISTEN bis_notifications; LISTEN peer_outbox");
	printf("listening\n");
	fflush(stdout);
	while (!stop)
	{
		struct pollfd pfd;
		PGnotify   *nf;

		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
			die("poll", NULL);
		if (!PQconsumeInput(conn))
			die("listener", conn);
		while ((nf = PQnotifies(conn)) != NULL)
		{
			if (strcmp(nf->relname, "bis_notifications") == 0)
				bis++;
			else
				peer++;
			PQfreemem(nf);
		}
	}
	printf("%ld %ld\n", bis, peer);
	PQfinish(conn);
	return 0;
}

int
main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "time") == 0)
		return cmd_time(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	if (argc == 5 && strcmp(argv[1], "drain") == 0)
		return cmd_drain(argv[2], argv[3], argv[4]);
	if (argc == 5 && strcmp(argv[1], "notify") == 0)
		return cmd_notify(atoi(argv[2]), argv[3], argv[4]);
	if (argc == 2 && strcmp(argv[1], "listen") == 0)
		return cmd_listen();
	fprintf(stderr, "usage: bench_client time WARMUP TIMED [REPEAT] | drain RESTOCK CLAIM ACK |"
			" notify N BIS_SQL PEER_SQL | listen\n");
	return 2;
}
