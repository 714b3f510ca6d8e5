/*-------------------------------------------------------------------------
 *
 * bis-mailer.c
 *	  The reference mailer of bis: claims notifications from the queue in
 *	  bis.notifications, delivers them and acknowledges them.
 *
 * Email goes out over SMTP (libcurl, smtp:// or smtps://) as a MIME message
 * with a plain-text and, when the template has one, an HTML part; sms, push
 * and webpush are POSTed as JSON to a webhook.  The notification id is the
 * idempotency key: it is the Message-ID of an email (<bis.ID@domain>) and the
 * Idempotency-Key header of a webhook call.
 *
 * The protocol (README.md, "The mailer protocol"): LISTEN bis_notifications;
 * bis.claim a batch; deliver each row; bis.ack what went out, bis.fail what
 * did not (retry => false for a permanent refusal); claim again at once while
 * batches come back full, else wait for a NOTIFY or for the poll timer; on
 * SIGTERM or SIGINT finish the row in hand and bis.release the rest.
 * Delivery is at least once: a mailer that dies holding a lease leaves its
 * rows claimed until the lease runs out, then another mailer sends them.
 *
 * This is a client program: it uses libpq and libcurl only, not the server's
 * headers, so it includes system headers rather than "postgres.h".
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#define PROGNAME "bis-mailer"
#define MAILER_VERSION "0.1"

/* how long after a delivery its acknowledgement may wait, to batch acks */
#define ACK_INTERVAL_MS 250
/* reconnection delays, doubling from the first to the last */
#define RECONNECT_MIN_S 1
#define RECONNECT_MAX_S 30
/* network timeouts of one delivery */
#define CONNECT_TIMEOUT_S 10
#define DELIVERY_TIMEOUT_S 60
/* how much of a webhook's answer is kept, and how much goes into an error */
#define RESPONSE_KEEP 4096
#define RESPONSE_IN_ERROR 200
/*
 * the share of a lease after which no row of the batch is started: a
 * delivery begun later could outlast the lease and be sent twice
 */
#define LEASE_USABLE_PERCENT 90
/* longest subject header sent as it is, without encoded-words */
#define SUBJECT_PLAIN_MAX 900

/* the columns of the claim query */
#define COL_ID 0
#define COL_CHANNEL 1
#define COL_ADDRESS 2
#define COL_PAYLOAD 3
#define COL_ATTEMPTS 4
#define COL_SUBJECT 5
#define COL_BODY 6
#define COL_BODY_HTML 7

static const char *const claim_sql =
"SELECT id, channel, address, payload::text, attempts, subject, body, body_html"
"  FROM bis.claim($1::text, $2::integer, $3::interval)";
static const char *const ack_sql = "SELECT bis.ack($1::bigint[], $2::text)";
static const char *const fail_sql =
"SELECT bis.fail($1::bigint, $2::text, $3::boolean, $4::text)";
static const char *const release_sql = "SELECT bis.release($1::bigint[], $2::text)";
static const char *const check_sql =
"SELECT pg_catalog.to_regprocedure('bis.claim(text, integer, interval, text[])') IS NOT NULL";

typedef struct Options
{
	char	   *conninfo;
	char	   *smtp_url;
	char	   *from;			/* the From header, as given */
	char	   *from_address;	/* the address in it, for MAIL FROM */
	const char *from_domain;	/* its domain, for Message-IDs */
	char	   *webhook_url;
	char	   *worker;
	int			batch;
	int			lease;
	int			poll;
	bool		once;
} Options;

/* a growable, always NUL-terminated string */
typedef struct StringBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} StringBuf;

/* a list of notification ids */
typedef struct IdList
{
	long long  *ids;
	int			len;
	int			cap;
} IdList;

typedef enum DeliveryStatus
{
	DELIVERY_SENT,
	DELIVERY_RETRY,				/* failed; try again later */
	DELIVERY_PERMANENT			/* failed for good */
} DeliveryStatus;

typedef struct Delivery
{
	DeliveryStatus status;
	char		error[1024];	/* stored as last_error */
	size_t		summary_len;	/* how much of error goes to the log */
} Delivery;

typedef enum BatchResult
{
	BATCH_EMPTY,				/* claim returned nothing */
	BATCH_PARTIAL,				/* fewer rows than asked for */
	BATCH_FULL,					/* as many as asked for: claim again at once */
	BATCH_DB_ERROR				/* a query failed: reconnect */
} BatchResult;

static Options opt;
static PGconn *conn;
static CURL *smtp_handle;
static CURL *http_handle;
static volatile sig_atomic_t stop_requested = 0;
static int	signal_pipe[2] = {-1, -1};

/* owed to the database after a lost connection: acks and releases */
static IdList unacked;
static IdList unreleased;

static void log_msg(const char *fmt,...) __attribute__((format(printf, 1, 2)));
static void fatal(int code, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static void sb_appendf(StringBuf *sb, const char *fmt,...) __attribute__((format(printf, 2, 3)));


/*
 * Messages, memory
 */

static void
log_msg(const char *fmt,...)
{
	char		line[2048];
	va_list		ap;
	int			n;

	n = snprintf(line, sizeof(line), "%s: ", PROGNAME);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

static void
fatal(int code, const char *fmt,...)
{
	char		line[2048];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", PROGNAME, line);
	exit(code);
}

static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		fatal(1, "out of memory");
	return p;
}

static void *
xrealloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		fatal(1, "out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	size_t		len = strlen(s);
	char	   *p = xmalloc(len + 1);

	memcpy(p, s, len + 1);
	return p;
}

/* libpq's error messages end with a newline: not wanted inside a log line */
static const char *
chomp(const char *msg)
{
	static char buf[1024];
	size_t		len;

	snprintf(buf, sizeof(buf), "%s", msg ? msg : "");
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	/* a multi-line message (ERROR + DETAIL) goes on one line */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	return buf;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/*
 * Strings
 */

static void
sb_reserve(StringBuf *sb, size_t more)
{
	if (sb->len + more + 1 > sb->cap)
	{
		size_t		cap = sb->cap ? sb->cap : 256;

		while (sb->len + more + 1 > cap)
			cap *= 2;
		sb->data = xrealloc(sb->data, cap);
		sb->cap = cap;
	}
}

static void
sb_append_len(StringBuf *sb, const char *s, size_t len)
{
	sb_reserve(sb, len);
	memcpy(sb->data + sb->len, s, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
}

static void
sb_append(StringBuf *sb, const char *s)
{
	sb_append_len(sb, s, strlen(s));
}

static void
sb_appendf(StringBuf *sb, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal(1, "could not format a string");
	sb_reserve(sb, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t) n;
}

static void
sb_reset(StringBuf *sb)
{
	sb->len = 0;
	if (sb->data)
		sb->data[0] = '\0';
}

/* a JSON string for s (valid UTF-8, as the database sends), or null */
static void
sb_append_json_string(StringBuf *sb, const char *s)
{
	if (s == NULL)
	{
		sb_append(sb, "null");
		return;
	}
	sb_append(sb, "\"");
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		switch (c)
		{
			case '"':
				sb_append(sb, "\\\"");
				break;
			case '\\':
				sb_append(sb, "\\\\");
				break;
			case '\n':
				sb_append(sb, "\\n");
				break;
			case '\r':
				sb_append(sb, "\\r");
				break;
			case '\t':
				sb_append(sb, "\\t");
				break;
			default:
				if (c < 0x20 || c == 0x7f)
					sb_appendf(sb, "\\u%04x", c);
				else
					sb_append_len(sb, s, 1);
				break;
		}
	}
	sb_append(sb, "\"");
}

/* the length of the valid UTF-8 sequence at s (at most len bytes), or 0 */
static int
utf8_sequence_length(const unsigned char *s, size_t len)
{
	int			n;

	if (s[0] < 0x80)
		n = 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t) n > len)
		return 0;
	for (int i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * Appends up to max bytes of untrusted text (a server's answer) to an error
 * message: valid UTF-8 stays, control characters become spaces, anything else
 * a question mark, so that the database accepts it and a log stays one line.
 */
static void
append_untrusted(char *dst, size_t dstsize, const char *src, size_t srclen, size_t max)
{
	size_t		used = strlen(dst);
	size_t		i = 0;

	if (srclen > max)
		srclen = max;
	while (i < srclen && used + 5 < dstsize)
	{
		const unsigned char *p = (const unsigned char *) src + i;
		int			n = utf8_sequence_length(p, srclen - i);

		if (n == 0)
		{
			dst[used++] = '?';
			i++;
		}
		else if (n == 1)
		{
			dst[used++] = (p[0] < 0x20 || p[0] == 0x7f) ? ' ' : (char) p[0];
			i++;
		}
		else
		{
			memcpy(dst + used, p, n);
			used += n;
			i += n;
		}
	}
	dst[used] = '\0';
}

static void
base64_append(StringBuf *sb, const unsigned char *s, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		char		out[4];

		out[0] = alphabet[s[i] >> 2];
		out[1] = alphabet[((s[i] & 0x03) << 4) | (s[i + 1] >> 4)];
		out[2] = alphabet[((s[i + 1] & 0x0f) << 2) | (s[i + 2] >> 6)];
		out[3] = alphabet[s[i + 2] & 0x3f];
		sb_append_len(sb, out, 4);
	}
	if (i < len)
	{
		char		out[4];

		out[0] = alphabet[s[i] >> 2];
		if (i + 1 < len)
		{
			out[1] = alphabet[((s[i] & 0x03) << 4) | (s[i + 1] >> 4)];
			out[2] = alphabet[(s[i + 1] & 0x0f) << 2];
		}
		else
		{
			out[1] = alphabet[(s[i] & 0x03) << 4];
			out[2] = '=';
		}
		out[3] = '=';
		sb_append_len(sb, out, 4);
	}
}

/*
 * Appends a header's text: as it is when it is printable ASCII and not too
 * long, else as RFC 2047 encoded-words (=?UTF-8?B?...?=) of at most 75
 * characters, folded onto continuation lines, never splitting a character.
 * Line breaks and other control characters become spaces: a subject cannot
 * add headers.
 */
static void
append_header_text(StringBuf *sb, const char *text)
{
	size_t		len = strlen(text);
	unsigned char *clean = xmalloc(len + 1);
	bool		plain = len <= SUBJECT_PLAIN_MAX;
	size_t		start;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) text[i];

		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (c >= 0x80)
			plain = false;
		clean[i] = c;
	}
	clean[len] = '\0';

	if (plain)
	{
		sb_append(sb, (char *) clean);
		free(clean);
		return;
	}
	/* 45 bytes are 60 base64 characters: 72 with "=?UTF-8?B?" and "?=" */
	for (start = 0; start < len;)
	{
		size_t		end = start + 45;

		if (end >= len)
			end = len;
		else
			while (end > start + 1 && (clean[end] & 0xc0) == 0x80)
				end--;
		if (start > 0)
			sb_append(sb, "\r\n ");
		sb_append(sb, "=?UTF-8?B?");
		base64_append(sb, clean + start, end - start);
		sb_append(sb, "?=");
		start = end;
	}
	free(clean);
}

/* a copy of text with CRLF line breaks, as mail wants them */
static char *
crlf_lines(const char *text)
{
	StringBuf	sb = {0};

	sb_append(&sb, "");
	for (const char *p = text; *p; p++)
	{
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n' || *p == '\r')
			sb_append(&sb, "\r\n");
		else
			sb_append_len(&sb, p, 1);
	}
	return sb.data;
}

/*
 * Whether an email address is one this mailer can put in an envelope and a
 * header as it is: printable ASCII without spaces, brackets, quotes or
 * separators, a local part, one "@" and a domain.
 */
static bool
valid_email(const char *s)
{
	const char *at = strchr(s, '@');
	size_t		len = strlen(s);

	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL || len > 254)
		return false;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			return false;
	}
	return true;
}


/*
 * Id lists
 */

static void
idlist_add(IdList *list, long long id)
{
	if (list->len == list->cap)
	{
		list->cap = list->cap ? list->cap * 2 : 64;
		list->ids = xrealloc(list->ids, sizeof(long long) * list->cap);
	}
	list->ids[list->len++] = id;
}

/* the list as an array literal, {1,2,3}: a parameter, not SQL */
static char *
idlist_literal(const IdList *list)
{
	StringBuf	sb = {0};

	sb_append(&sb, "{");
	for (int i = 0; i < list->len; i++)
		sb_appendf(&sb, "%s%lld", i ? "," : "", list->ids[i]);
	sb_append(&sb, "}");
	return sb.data;
}


/*
 * Signals: a flag, and a byte in a pipe that wakes the poll() of the wait
 */

static void
handle_stop_signal(int signo)
{
	int			save_errno = errno;
	ssize_t		rc;

	(void) signo;
	stop_requested = 1;
	rc = write(signal_pipe[1], "x", 1);
	(void) rc;
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe(signal_pipe) != 0)
		fatal(1, "could not create a pipe: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
	{
		fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
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
 * Options
 */

static void
usage(void)
{
	printf("%s delivers the notifications that bis queues in a PostgreSQL database:\n"
		   "email over SMTP, sms, push and webpush to a webhook.\n\n", PROGNAME);
	printf("Usage:\n"
		   "  %s --dbname CONNINFO [--smtp URL --from ADDRESS] [--webhook URL] [OPTION]...\n\n",
		   PROGNAME);
	printf("Options:\n"
		   "  --dbname CONNINFO    database to serve: a connection string or URI (required)\n"
		   "  --smtp URL           SMTP server for email rows: smtp://HOST:PORT, or smtps://;\n"
		   "                       credentials as smtp://USER:PASSWORD@HOST:PORT\n"
		   "  --from ADDRESS       sender of email: ADDRESS or \"Name <ADDRESS>\" (with --smtp)\n"
		   "  --webhook URL        http(s) URL that sms, push and webpush rows are POSTed to\n"
		   "  --worker NAME        name this mailer's leases carry (default bis-mailer-HOST-PID)\n"
		   "  --batch N            notifications claimed at a time (default 100)\n"
		   "  --lease SECONDS      how long a claim lasts before another mailer may take it\n"
		   "                       over (default 300)\n"
		   "  --poll SECONDS       longest wait between claims without a NOTIFY (default 10)\n"
		   "  --once               deliver what is due, then exit\n"
		   "  --help               show this help, then exit\n"
		   "  --version            show the version, then exit\n\n");
	printf("At least one of --smtp and --webhook is required.  A row whose channel has no\n"
		   "transport fails for good.  SIGTERM or SIGINT: finish the row in hand, give the\n"
		   "rest of the batch back, exit 0.  Exit status: 0 done, 1 database or other\n"
		   "error, 2 usage error.\n");
}

static void
usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt,...)
{
	char		line[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", PROGNAME, line);
	fprintf(stderr, "Try \"%s --help\" for more information.\n", PROGNAME);
	exit(2);
}

static int
parse_int_option(const char *name, const char *value, int min, int max)
{
	char	   *end;
	long		n;

	errno = 0;
	n = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || n < min || n > max)
		usage_error("invalid value \"%s\" for option --%s: an integer from %d to %d is expected",
					value, name, min, max);
	return (int) n;
}

static bool
has_scheme(const char *url, const char *scheme)
{
	size_t		len = strlen(scheme);

	return strncasecmp(url, scheme, len) == 0 && url[len] != '\0';
}

/* --from: "addr@domain" or "Name <addr@domain>" */
static void
parse_from(const char *from)
{
	const char *lt = strrchr(from, '<');

	for (const char *p = from; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
			usage_error("invalid --from \"%s\": only printable ASCII is allowed", from);
	if (lt != NULL)
	{
		const char *gt = strchr(lt, '>');

		if (gt == NULL || gt[1] != '\0')
			usage_error("invalid --from \"%s\": expected ADDRESS or \"Name <ADDRESS>\"", from);
		opt.from_address = xmalloc(gt - lt);
		memcpy(opt.from_address, lt + 1, gt - lt - 1);
		opt.from_address[gt - lt - 1] = '\0';
	}
	else
		opt.from_address = xstrdup(from);
	if (!valid_email(opt.from_address))
		usage_error("invalid --from \"%s\": \"%s\" is not an email address", from, opt.from_address);
	opt.from = xstrdup(from);
	opt.from_domain = strchr(opt.from_address, '@') + 1;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"smtp", required_argument, NULL, 's'},
		{"from", required_argument, NULL, 'f'},
		{"webhook", required_argument, NULL, 'w'},
		{"worker", required_argument, NULL, 'W'},
		{"batch", required_argument, NULL, 'b'},
		{"lease", required_argument, NULL, 'l'},
		{"poll", required_argument, NULL, 'p'},
		{"once", no_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	opt.batch = 100;
	opt.lease = 300;
	opt.poll = 10;

	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opt.conninfo = optarg;
				break;
			case 's':
				if (!has_scheme(optarg, "smtp://") && !has_scheme(optarg, "smtps://"))
					usage_error("invalid --smtp \"%s\": expected smtp://HOST:PORT or smtps://HOST:PORT",
								optarg);
				opt.smtp_url = optarg;
				break;
			case 'f':
				parse_from(optarg);
				break;
			case 'w':
				if (!has_scheme(optarg, "http://") && !has_scheme(optarg, "https://"))
					usage_error("invalid --webhook \"%s\": expected an http:// or https:// URL",
								optarg);
				opt.webhook_url = optarg;
				break;
			case 'W':
				if (optarg[0] == '\0')
					usage_error("--worker must not be empty");
				opt.worker = optarg;
				break;
			case 'b':
				opt.batch = parse_int_option("batch", optarg, 1, 100000);
				break;
			case 'l':
				opt.lease = parse_int_option("lease", optarg, 1, 7 * 24 * 3600);
				break;
			case 'p':
				opt.poll = parse_int_option("poll", optarg, 1, 24 * 3600);
				break;
			case 'o':
				opt.once = true;
				break;
			case 'h':
				usage();
				exit(0);
			case 'V':
				printf("%s %s\n", PROGNAME, MAILER_VERSION);
				exit(0);
			default:
				/* getopt_long has said what was wrong */
				fprintf(stderr, "Try \"%s --help\" for more information.\n", PROGNAME);
				exit(2);
		}
	}
	if (optind < argc)
		usage_error("too many command-line arguments (first is \"%s\")", argv[optind]);
	if (opt.conninfo == NULL)
		usage_error("no database given: use --dbname");
	if (opt.smtp_url == NULL && opt.webhook_url == NULL)
		usage_error("no transport given: use --smtp (with --from), --webhook, or both");
	if (opt.smtp_url != NULL && opt.from == NULL)
		usage_error("--smtp needs --from, the sender's address");
	if (opt.from != NULL && opt.smtp_url == NULL)
		usage_error("--from is only used with --smtp");
	if (opt.worker == NULL)
	{
		char		host[256];
		StringBuf	sb = {0};

		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		sb_appendf(&sb, "%s-%s-%ld", PROGNAME, host, (long) getpid());
		opt.worker = sb.data;
	}
}


/*
 * Database
 */

/* server notices and warnings, such as FATAL before a disconnection, go to the log */
static void
log_notice(void *arg, const char *message)
{
	(void) arg;
	log_msg("server: %s", chomp(message));
}

/* connects, checks that bis is there, LISTENs; NULL and a message on failure */
static PGconn *
db_connect(char *errbuf, size_t errsize)
{
	const char *keywords[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
	const char *values[] = {opt.conninfo, PROGNAME, "UTF8", NULL};
	PGconn	   *c;
	PGresult   *res;

	c = PQconnectdbParams(keywords, values, 1);
	if (c == NULL)
	{
		snprintf(errbuf, errsize, "out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK)
	{
		snprintf(errbuf, errsize, "%s", chomp(PQerrorMessage(c)));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, log_notice, NULL);
	res = PQexec(c, check_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		snprintf(errbuf, errsize, "%s", chomp(PQerrorMessage(c)));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		snprintf(errbuf, errsize, "extension \"bis\" (with bis.claim) is not installed in database \"%s\"",
				 PQdb(c));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	res = PQexec(c, "LISTEN bis_notifications");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		snprintf(errbuf, errsize, "%s", chomp(PQerrorMessage(c)));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

/* runs a query that returns rows; NULL, and a log line, when it fails */
static PGresult *
db_query(const char *sql, int nparams, const char *const *values)
{
	PGresult   *res;

	res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		log_msg("query failed: %s", chomp(PQerrorMessage(conn)));
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * Acknowledges the delivered rows in unacked.  With a worker, bis.ack touches
 * only the rows this mailer still holds: one whose lease ran out and that
 * another mailer took is that mailer's now.
 */
static bool
flush_acks(void)
{
	char	   *ids;
	const char *params[2];
	PGresult   *res;
	long		done;

	if (unacked.len == 0)
		return true;
	ids = idlist_literal(&unacked);
	params[0] = ids;
	params[1] = opt.worker;
	res = db_query(ack_sql, 2, params);
	free(ids);
	if (res == NULL)
		return false;
	done = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (done < unacked.len)
		log_msg("%ld of %d delivered notifications were acknowledged: this worker's lease on the others ran out",
				done, unacked.len);
	PQclear(res);
	unacked.len = 0;
	return true;
}

/* gives back the claimed rows in unreleased */
static bool
flush_releases(void)
{
	char	   *ids;
	const char *params[2];
	PGresult   *res;

	if (unreleased.len == 0)
		return true;
	ids = idlist_literal(&unreleased);
	params[0] = ids;
	params[1] = opt.worker;
	res = db_query(release_sql, 2, params);
	free(ids);
	if (res == NULL)
		return false;
	log_msg("released %s of %d claimed notifications", PQgetvalue(res, 0, 0), unreleased.len);
	PQclear(res);
	unreleased.len = 0;
	return true;
}

/* records a failed delivery; the new status in status, or false on a query failure */
static bool
record_failure(long long id, const Delivery *d, char *status, size_t statussize)
{
	char		idtext[32];
	const char *params[4];
	PGresult   *res;

	snprintf(idtext, sizeof(idtext), "%lld", id);
	params[0] = idtext;
	params[1] = d->error;
	params[2] = d->status == DELIVERY_RETRY ? "true" : "false";
	params[3] = opt.worker;
	res = db_query(fail_sql, 4, params);
	if (res == NULL)
		return false;
	snprintf(status, statussize, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return true;
}


/*
 * Delivery
 */

static void
set_error(Delivery *d, DeliveryStatus status, const char *fmt,...) __attribute__((format(printf, 3, 4)));

static void
set_error(Delivery *d, DeliveryStatus status, const char *fmt,...)
{
	va_list		ap;

	d->status = status;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	d->summary_len = strlen(d->error);
}

static void
set_common_curl_options(CURL *c, const char *url, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long) CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long) DELIVERY_TIMEOUT_S);
}

/*
 * Sends one email: multipart/alternative of a text/plain part and, when the
 * row has one, a text/html part, both UTF-8 and quoted-printable.  Message-ID
 * <bis.ID@domain-of-from> lets a receiving system spot a second delivery.
 */
static void
deliver_email(PGresult *res, int row, Delivery *d)
{
	long long	id = strtoll(PQgetvalue(res, row, COL_ID), NULL, 10);
	const char *address = PQgetisnull(res, row, COL_ADDRESS) ? NULL : PQgetvalue(res, row, COL_ADDRESS);
	const char *subject = PQgetisnull(res, row, COL_SUBJECT) ? "" : PQgetvalue(res, row, COL_SUBJECT);
	const char *body = PQgetisnull(res, row, COL_BODY) ? "" : PQgetvalue(res, row, COL_BODY);
	const char *html = PQgetisnull(res, row, COL_BODY_HTML) ? NULL : PQgetvalue(res, row, COL_BODY_HTML);
	char		errbuf[CURL_ERROR_SIZE];
	StringBuf	sb = {0};
	struct curl_slist *headers = NULL;
	struct curl_slist *rcpt = NULL;
	curl_mime  *mime;
	curl_mimepart *part;
	char	   *text;
	char		date[64];
	time_t		t = time(NULL);
	struct tm	tm;
	CURLcode	rc;
	long		code = 0;

	if (address == NULL)
	{
		set_error(d, DELIVERY_PERMANENT, "no email address: the contact has none");
		return;
	}
	if (!valid_email(address))
	{
		set_error(d, DELIVERY_PERMANENT, "invalid email address: this mailer sends to ASCII addresses without spaces, quotes or brackets");
		return;
	}

	curl_easy_reset(smtp_handle);
	errbuf[0] = '\0';
	set_common_curl_options(smtp_handle, opt.smtp_url, errbuf);

	sb_appendf(&sb, "<%s>", opt.from_address);
	curl_easy_setopt(smtp_handle, CURLOPT_MAIL_FROM, sb.data);
	sb_reset(&sb);
	sb_appendf(&sb, "<%s>", address);
	rcpt = curl_slist_append(rcpt, sb.data);
	curl_easy_setopt(smtp_handle, CURLOPT_MAIL_RCPT, rcpt);

	/* headers; curl copies each string */
	sb_reset(&sb);
	sb_appendf(&sb, "From: %s", opt.from);
	headers = curl_slist_append(headers, sb.data);
	sb_reset(&sb);
	sb_appendf(&sb, "To: %s", address);
	headers = curl_slist_append(headers, sb.data);
	sb_reset(&sb);
	sb_append(&sb, "Subject: ");
	append_header_text(&sb, subject);
	headers = curl_slist_append(headers, sb.data);
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S %z", &tm);
	headers = curl_slist_append(headers, date);
	sb_reset(&sb);
	sb_appendf(&sb, "Message-ID: <bis.%lld@%s>", id, opt.from_domain);
	headers = curl_slist_append(headers, sb.data);
	headers = curl_slist_append(headers, "MIME-Version: 1.0");

	/*
	 * The body: curl takes the top-level Content-Type from the headers and
	 * adds the boundary; quoted-printable needs CRLF line breaks to keep them
	 */
	headers = curl_slist_append(headers, "Content-Type: multipart/alternative");
	curl_easy_setopt(smtp_handle, CURLOPT_HTTPHEADER, headers);
	mime = curl_mime_init(smtp_handle);
	part = curl_mime_addpart(mime);
	text = crlf_lines(body);
	curl_mime_data(part, text, CURL_ZERO_TERMINATED);
	free(text);
	curl_mime_type(part, "text/plain; charset=UTF-8");
	curl_mime_encoder(part, "quoted-printable");
	if (html != NULL)
	{
		part = curl_mime_addpart(mime);
		text = crlf_lines(html);
		curl_mime_data(part, text, CURL_ZERO_TERMINATED);
		free(text);
		curl_mime_type(part, "text/html; charset=UTF-8");
		curl_mime_encoder(part, "quoted-printable");
	}
	curl_easy_setopt(smtp_handle, CURLOPT_MIMEPOST, mime);

	rc = curl_easy_perform(smtp_handle);
	curl_easy_getinfo(smtp_handle, CURLINFO_RESPONSE_CODE, &code);

	if (rc == CURLE_OK)
		d->status = DELIVERY_SENT;
	else
	{
		/*
		 * A 5xx reply refuses this message for good (an unknown mailbox, a
		 * message too large); a 4xx one or no answer is worth another try.
		 * A refused login is this mailer's configuration, not the message's:
		 * retried, so that fixing the password delivers the queue.
		 */
		bool		permanent = code >= 500 && code <= 599 && rc != CURLE_LOGIN_DENIED;

		if (code > 0)
			set_error(d, permanent ? DELIVERY_PERMANENT : DELIVERY_RETRY, "SMTP %ld: %s",
					  code, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		else
			set_error(d, DELIVERY_RETRY, "SMTP: %s",
					  errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}

	/* the easy handle keeps the connection for the next message */
	curl_easy_setopt(smtp_handle, CURLOPT_MIMEPOST, NULL);
	curl_easy_setopt(smtp_handle, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(smtp_handle, CURLOPT_MAIL_RCPT, NULL);
	curl_mime_free(mime);
	curl_slist_free_all(headers);
	curl_slist_free_all(rcpt);
	free(sb.data);
}

static size_t
collect_response(char *data, size_t size, size_t nmemb, void *userdata)
{
	StringBuf  *sb = userdata;
	size_t		len = size * nmemb;

	if (sb->len < RESPONSE_KEEP)
		sb_append_len(sb, data, sb->len + len > RESPONSE_KEEP ? RESPONSE_KEEP - sb->len : len);
	return len;
}

/* POSTs one sms, push or webpush row to the webhook as JSON */
static void
deliver_webhook(PGresult *res, int row, Delivery *d)
{
	const char *id = PQgetvalue(res, row, COL_ID);
	StringBuf	json = {0};
	StringBuf	response = {0};
	StringBuf	sb = {0};
	struct curl_slist *headers = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	CURLcode	rc;
	long		code = 0;

	sb_appendf(&json, "{\"id\": %s, \"channel\": ", id);
	sb_append_json_string(&json, PQgetvalue(res, row, COL_CHANNEL));
	sb_append(&json, ", \"address\": ");
	sb_append_json_string(&json, PQgetisnull(res, row, COL_ADDRESS) ? NULL : PQgetvalue(res, row, COL_ADDRESS));
	sb_append(&json, ", \"subject\": ");
	sb_append_json_string(&json, PQgetisnull(res, row, COL_SUBJECT) ? NULL : PQgetvalue(res, row, COL_SUBJECT));
	sb_append(&json, ", \"body\": ");
	sb_append_json_string(&json, PQgetisnull(res, row, COL_BODY) ? NULL : PQgetvalue(res, row, COL_BODY));
	sb_appendf(&json, ", \"attempt\": %s, \"payload\": ", PQgetvalue(res, row, COL_ATTEMPTS));
	/* jsonb's text form is JSON: it goes in as it came */
	sb_append(&json, PQgetvalue(res, row, COL_PAYLOAD));
	sb_append(&json, "}");

	curl_easy_reset(http_handle);
	errbuf[0] = '\0';
	set_common_curl_options(http_handle, opt.webhook_url, errbuf);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	sb_appendf(&sb, "Idempotency-Key: %s", id);
	headers = curl_slist_append(headers, sb.data);
	/* no "Expect: 100-continue" wait for larger bodies */
	headers = curl_slist_append(headers, "Expect:");
	curl_easy_setopt(http_handle, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(http_handle, CURLOPT_USERAGENT, PROGNAME "/" MAILER_VERSION);
	curl_easy_setopt(http_handle, CURLOPT_POST, 1L);
	curl_easy_setopt(http_handle, CURLOPT_POSTFIELDS, json.data);
	curl_easy_setopt(http_handle, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) json.len);
	curl_easy_setopt(http_handle, CURLOPT_WRITEFUNCTION, collect_response);
	curl_easy_setopt(http_handle, CURLOPT_WRITEDATA, &response);

	rc = curl_easy_perform(http_handle);
	curl_easy_getinfo(http_handle, CURLINFO_RESPONSE_CODE, &code);

	if (rc != CURLE_OK)
		set_error(d, DELIVERY_RETRY, "webhook: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	else if (code >= 200 && code <= 299)
		d->status = DELIVERY_SENT;
	else
	{
		/*
		 * 4xx: the provider refuses this message; retrying will not help,
		 * except after 408 (timeout) and 429 (too many requests).  Anything
		 * else (5xx, a redirect) is retried.
		 */
		bool		permanent = code >= 400 && code <= 499 && code != 408 && code != 429;

		set_error(d, permanent ? DELIVERY_PERMANENT : DELIVERY_RETRY, "HTTP %ld", code);
		if (response.len > 0)
		{
			/* the answer may echo the message: it goes to last_error, not the log */
			strcat(d->error, ": ");
			append_untrusted(d->error, sizeof(d->error), response.data, response.len,
							 RESPONSE_IN_ERROR);
		}
	}
	curl_easy_setopt(http_handle, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	free(json.data);
	free(response.data);
	free(sb.data);
}

static void
deliver(PGresult *res, int row, Delivery *d)
{
	const char *channel = PQgetvalue(res, row, COL_CHANNEL);

	d->status = DELIVERY_SENT;
	d->error[0] = '\0';
	d->summary_len = 0;
	if (strcmp(channel, "email") == 0 && opt.smtp_url != NULL)
		deliver_email(res, row, d);
	else if ((strcmp(channel, "sms") == 0 || strcmp(channel, "push") == 0 ||
			  strcmp(channel, "webpush") == 0) && opt.webhook_url != NULL)
		deliver_webhook(res, row, d);
	else
		set_error(d, DELIVERY_PERMANENT, "no transport for channel %s", channel);
}


/*
 * The loop
 */

/*
 * Claims a batch and delivers it.  Delivered rows are acknowledged at most
 * ACK_INTERVAL_MS after the previous acknowledgement, and at the end of the
 * batch.  Rows not started when a stop signal arrives, or when the lease is
 * nearly over, are released.  On a query failure, what the database is owed
 * stays in unacked and unreleased for after the reconnection.
 */
static BatchResult
process_batch(void)
{
	char		batch[16];
	char		lease[32];
	const char *params[3];
	PGresult   *res;
	int			n;
	long long	claimed_at;
	long long	last_flush;
	int			i;
	bool		cut_short = false;
	bool		db_failed = false;
	BatchResult result;

	snprintf(batch, sizeof(batch), "%d", opt.batch);
	snprintf(lease, sizeof(lease), "%d seconds", opt.lease);
	params[0] = opt.worker;
	params[1] = batch;
	params[2] = lease;
	res = db_query(claim_sql, 3, params);
	if (res == NULL)
		return BATCH_DB_ERROR;
	claimed_at = last_flush = now_ms();
	n = PQntuples(res);

	for (i = 0; i < n && !db_failed; i++)
	{
		long long	id = strtoll(PQgetvalue(res, i, COL_ID), NULL, 10);
		const char *channel = PQgetvalue(res, i, COL_CHANNEL);
		const char *attempt = PQgetvalue(res, i, COL_ATTEMPTS);
		Delivery	d;
		char		status[32];

		/* stopping, or too late to deliver under this lease: give the rest back */
		if (stop_requested ||
			now_ms() - claimed_at >=
			(long long) opt.lease * 1000 * LEASE_USABLE_PERCENT / 100)
		{
			if (!stop_requested)
				log_msg("the lease of this batch is nearly over: giving back %d notifications", n - i);
			cut_short = true;
			break;
		}

		deliver(res, i, &d);
		if (d.status == DELIVERY_SENT)
		{
			log_msg("notification %lld sent (%s, attempt %s)", id, channel, attempt);
			idlist_add(&unacked, id);
			if (now_ms() - last_flush >= ACK_INTERVAL_MS)
			{
				if (!flush_acks())
					db_failed = true;
				last_flush = now_ms();
			}
			continue;
		}
		if (!record_failure(id, &d, status, sizeof(status)))
		{
			/* it stays claimed: it comes back when the lease runs out */
			log_msg("notification %lld failed (%s, attempt %s, not recorded): %.*s",
					id, channel, attempt, (int) d.summary_len, d.error);
			db_failed = true;
		}
		else if (strcmp(status, "pending") == 0)
			log_msg("notification %lld failed (%s, attempt %s, will retry): %.*s",
					id, channel, attempt, (int) d.summary_len, d.error);
		else if (strcmp(status, "dead") == 0)
			log_msg("notification %lld failed (%s, attempt %s, dead): %.*s",
					id, channel, attempt, (int) d.summary_len, d.error);
		else
			log_msg("notification %lld failed (%s, attempt %s, not recorded: it is %s, no longer this worker's): %.*s",
					id, channel, attempt, status, (int) d.summary_len, d.error);
	}

	/* the rows not delivered go back, now or once the database is there again */
	for (; i < n; i++)
		idlist_add(&unreleased, strtoll(PQgetvalue(res, i, COL_ID), NULL, 10));
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
 * Waits for a NOTIFY on bis_notifications, the poll timer or a stop signal;
 * false if the connection is gone.
 */
static bool
wait_for_work(void)
{
	long long	deadline = now_ms() + (long long) opt.poll * 1000;

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
			log_msg("could not wait for the database: %s", strerror(errno));
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
		log_msg("reconnecting in %d s", *delay);
		sleep_interruptible(*delay);
		if (stop_requested)
			return;
		if (*delay < RECONNECT_MAX_S)
			*delay = *delay * 2 > RECONNECT_MAX_S ? RECONNECT_MAX_S : *delay * 2;
		conn = db_connect(errbuf, sizeof(errbuf));
		if (conn == NULL)
		{
			log_msg("could not connect to the database: %s", errbuf);
			continue;
		}
		log_msg("reconnected; listening on bis_notifications");
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
		log_msg("lost the database connection: %s", chomp(PQerrorMessage(conn)));
	else
		log_msg("closing the database connection after an error");
	PQfinish(conn);
	conn = NULL;
}

int
main(int argc, char **argv)
{
	char		errbuf[1024];
	int			delay = RECONNECT_MIN_S;
	int			exit_code = 0;

	parse_options(argc, argv);
	setup_signals();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatal(1, "could not initialize libcurl");
	smtp_handle = curl_easy_init();
	http_handle = curl_easy_init();
	if (smtp_handle == NULL || http_handle == NULL)
		fatal(1, "could not initialize libcurl");

	conn = db_connect(errbuf, sizeof(errbuf));
	if (conn == NULL)
		fatal(1, "could not connect to the database: %s", errbuf);
	log_msg("worker %s serving database \"%s\" (batch %d, lease %d s, %s)",
			opt.worker, PQdb(conn), opt.batch, opt.lease,
			opt.once ? "once" : "listening on bis_notifications");

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
				if (unacked.len > 0 || unreleased.len > 0)
				{
					reconnect(&delay);
					if (unacked.len > 0 || unreleased.len > 0)
						log_msg("%d delivered and %d undelivered notifications stay claimed until their lease runs out",
								unacked.len, unreleased.len);
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
		if (conn != NULL && (unacked.len > 0 || unreleased.len > 0))
		{
			flush_acks();
			flush_releases();
		}
		log_msg("stopping on a signal");
	}
	if (conn != NULL)
		PQfinish(conn);
	curl_easy_cleanup(smtp_handle);
	curl_easy_cleanup(http_handle);
	curl_global_cleanup();
	return exit_code;
}
