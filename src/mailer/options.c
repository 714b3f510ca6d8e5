/*-------------------------------------------------------------------------
 *
 * options.c
 *	  bis-mailer's options, from the command line and from a configuration
 *	  file (--config FILE: one "name = value" per line, as in PostgreSQL's
 *	  own files, under the long option's name), the command line winning.
 *
 * Secrets never come from the command line, where ps shows them: the SMTP
 * password comes from the environment variable BIS_SMTP_PASSWORD or from
 * --smtp-password-file, and push keys from files.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <getopt.h>
#include <unistd.h>

#include "common/logging.h"
#include "common/string.h"
#include "fe_utils/option_utils.h"
#include "mailer.h"

Options		opt;

/* the long options; a configuration file uses the same names */
enum
{
	O_DBNAME = 1000, O_WORKER, O_BATCH, O_LEASE, O_POLL, O_ONCE, O_CONFIG,
	O_LOG_FORMAT, O_LOG_LEVEL, O_METRICS, O_CACERT,
	O_SMTP, O_SMTP_USER, O_SMTP_PASSWORD_FILE, O_SMTP_TLS, O_FROM,
	O_WEBHOOK, O_WEBHOOK_CHANNELS,
	O_VAPID_KEY, O_VAPID_SUBJECT,
	O_FCM_CREDENTIALS, O_FCM_URL,
	O_APNS_KEY, O_APNS_KEY_ID, O_APNS_TEAM_ID, O_APNS_TOPIC, O_APNS_URL,
	O_HELP, O_VERSION
};

static const struct option long_options[] = {
	{"dbname", required_argument, NULL, O_DBNAME},
	{"worker", required_argument, NULL, O_WORKER},
	{"batch", required_argument, NULL, O_BATCH},
	{"lease", required_argument, NULL, O_LEASE},
	{"poll", required_argument, NULL, O_POLL},
	{"once", no_argument, NULL, O_ONCE},
	{"config", required_argument, NULL, O_CONFIG},
	{"log-format", required_argument, NULL, O_LOG_FORMAT},
	{"log-level", required_argument, NULL, O_LOG_LEVEL},
	{"metrics", required_argument, NULL, O_METRICS},
	{"cacert", required_argument, NULL, O_CACERT},
	{"smtp", required_argument, NULL, O_SMTP},
	{"smtp-user", required_argument, NULL, O_SMTP_USER},
	{"smtp-password-file", required_argument, NULL, O_SMTP_PASSWORD_FILE},
	{"smtp-tls", required_argument, NULL, O_SMTP_TLS},
	{"from", required_argument, NULL, O_FROM},
	{"webhook", required_argument, NULL, O_WEBHOOK},
	{"webhook-channels", required_argument, NULL, O_WEBHOOK_CHANNELS},
	{"vapid-key", required_argument, NULL, O_VAPID_KEY},
	{"vapid-subject", required_argument, NULL, O_VAPID_SUBJECT},
	{"fcm-credentials", required_argument, NULL, O_FCM_CREDENTIALS},
	{"fcm-url", required_argument, NULL, O_FCM_URL},
	{"apns-key", required_argument, NULL, O_APNS_KEY},
	{"apns-key-id", required_argument, NULL, O_APNS_KEY_ID},
	{"apns-team-id", required_argument, NULL, O_APNS_TEAM_ID},
	{"apns-topic", required_argument, NULL, O_APNS_TOPIC},
	{"apns-url", required_argument, NULL, O_APNS_URL},
	{"help", no_argument, NULL, O_HELP},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0}
};

static void
usage(void)
{
	printf("%s delivers the notifications that bis queues in a PostgreSQL database:\n"
		   "email over SMTP, sms to a webhook, push through FCM and APNs, web push.\n\n",
		   PROGNAME);
	printf("Usage:\n  %s [OPTION]...\n\n", PROGNAME);
	printf("Options (each may also be set in the --config file, as NAME = VALUE):\n"
		   "  --config FILE            read options from FILE; the command line wins\n"
		   "  --dbname CONNINFO        database to serve: a connection string or URI (required)\n"
		   "  --worker NAME            name of this mailer's leases and application_name\n"
		   "                           (default bis-mailer-HOST-PID)\n"
		   "  --batch N                notifications claimed at a time (default 100)\n"
		   "  --lease SECONDS          how long a claim lasts (default 300)\n"
		   "  --poll SECONDS           longest wait between claims without a NOTIFY (default 10)\n"
		   "  --once                   deliver what is due, then exit\n"
		   "  --log-format text|json   format of the log on standard error (default text)\n"
		   "  --log-level LEVEL        debug, info, warning or error (default info)\n"
		   "  --metrics HOST:PORT      serve Prometheus metrics at http://HOST:PORT/metrics\n"
		   "  --cacert FILE            CA certificates for every TLS connection (default: the\n"
		   "                           system's)\n\n"
		   "Email:\n"
		   "  --smtp URL               SMTP server: smtp://HOST:PORT (STARTTLS) or smtps://\n"
		   "  --smtp-user NAME         user to log in as (or in the URL); the password comes\n"
		   "                           from BIS_SMTP_PASSWORD or --smtp-password-file\n"
		   "  --smtp-password-file FILE  file holding the SMTP password\n"
		   "  --smtp-tls MODE          require, try or off STARTTLS (default: require with a\n"
		   "                           user, else try)\n"
		   "  --from ADDRESS           sender: ADDRESS or \"Name <ADDRESS>\"\n\n"
		   "SMS and other channels by webhook:\n"
		   "  --webhook URL            http(s) URL that notifications are POSTed to as JSON\n"
		   "  --webhook-channels LIST  channels sent to the webhook (default sms)\n\n"
		   "Web push (RFC 8030, 8291, 8292):\n"
		   "  --vapid-key FILE         the application server's P-256 private key (PEM)\n"
		   "  --vapid-subject URI      mailto: or https: contact of the sender\n\n"
		   "Firebase Cloud Messaging (HTTP v1):\n"
		   "  --fcm-credentials FILE   the service account's JSON key file\n"
		   "  --fcm-url URL            base of the send endpoint (default https://fcm.googleapis.com)\n\n"
		   "Apple Push Notification service:\n"
		   "  --apns-key FILE          the .p8 signing key (PEM)\n"
		   "  --apns-key-id ID         its key id\n"
		   "  --apns-team-id ID        the team id\n"
		   "  --apns-topic TOPIC       the app's bundle id\n"
		   "  --apns-url URL           the server (default https://api.push.apple.com)\n\n"
		   "  --help                   show this help, then exit\n"
		   "  --version                show the version, then exit\n\n");
	printf("The mailer claims only the channels it has a transport for.  SIGTERM or SIGINT:\n"
		   "finish the row in hand, give the rest back, exit 0.  Exit status: 0 done, 1 a\n"
		   "database or configuration error, 2 a usage error.\n");
}

static void
usage_error(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	pg_log_generic_v(PG_LOG_ERROR, PG_LOG_PRIMARY, fmt, ap);
	va_end(ap);
	pg_log_error_hint("Try \"%s --help\" for more information.", PROGNAME);
	exit(2);
}

static bool
has_scheme(const char *url, const char *scheme)
{
	size_t		len = strlen(scheme);

	return pg_strncasecmp(url, scheme, len) == 0 && url[len] != '\0';
}

static char *
http_url(const char *value, const char *where)
{
	if (!has_scheme(value, "http://") && !has_scheme(value, "https://"))
		usage_error("invalid value \"%s\" for %s: an http:// or https:// URL is expected",
					value, where);
	return pg_strdup(value);
}

static int
parse_int(const char *value, const char *where, int min, int max)
{
	int			n;

	if (!option_parse_int(value, where, min, max, &n))
	{
		pg_log_error_hint("Try \"%s --help\" for more information.", PROGNAME);
		exit(2);
	}
	return n;
}

static bool
parse_bool(const char *value, const char *where)
{
	if (value == NULL || pg_strcasecmp(value, "on") == 0 || pg_strcasecmp(value, "true") == 0 ||
		pg_strcasecmp(value, "yes") == 0 || strcmp(value, "1") == 0)
		return true;
	if (pg_strcasecmp(value, "off") == 0 || pg_strcasecmp(value, "false") == 0 ||
		pg_strcasecmp(value, "no") == 0 || strcmp(value, "0") == 0)
		return false;
	usage_error("invalid value \"%s\" for %s: on or off is expected", value, where);
}

/* a comma-separated list of channels */
static void
parse_channels(const char *value, const char *where, bool *channels)
{
	char	   *copy = pg_strdup(value);
	char	   *tok;
	char	   *save;

	memset(channels, 0, sizeof(bool) * NUM_CHANNELS);
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
	{
		int			c;

		for (c = 0; c < NUM_CHANNELS; c++)
			if (strcmp(tok, channel_names[c]) == 0)
				break;
		if (c == NUM_CHANNELS)
			usage_error("unrecognized channel \"%s\" in %s: the channels are email, sms, push and webpush",
						tok, where);
		channels[c] = true;
	}
	free(copy);
}

/* sets one option; where names it for messages ("--batch", or a file's line) */
static void
set_option(int code, const char *value, const char *where)
{
	switch (code)
	{
		case O_DBNAME:
			opt.dbname = pg_strdup(value);
			break;
		case O_WORKER:
			if (value[0] == '\0' || strlen(value) > 255)
				usage_error("%s must be 1 to 255 characters long", where);
			opt.worker = pg_strdup(value);
			break;
		case O_BATCH:
			opt.batch = parse_int(value, where, 1, 100000);
			break;
		case O_LEASE:
			opt.lease = parse_int(value, where, 1, 7 * 24 * 3600);
			break;
		case O_POLL:
			opt.poll = parse_int(value, where, 1, 24 * 3600);
			break;
		case O_ONCE:
			opt.once = parse_bool(value, where);
			break;
		case O_LOG_FORMAT:
			if (strcmp(value, "text") == 0)
				opt.log_format = LOG_FORMAT_TEXT;
			else if (strcmp(value, "json") == 0)
				opt.log_format = LOG_FORMAT_JSON;
			else
				usage_error("invalid value \"%s\" for %s: text or json is expected", value, where);
			break;
		case O_LOG_LEVEL:
			if (strcmp(value, "debug") == 0)
				opt.log_level = LOG_DEBUG;
			else if (strcmp(value, "info") == 0)
				opt.log_level = LOG_INFO;
			else if (strcmp(value, "warning") == 0)
				opt.log_level = LOG_WARNING;
			else if (strcmp(value, "error") == 0)
				opt.log_level = LOG_ERROR;
			else
				usage_error("invalid value \"%s\" for %s: debug, info, warning or error is expected",
							value, where);
			break;
		case O_METRICS:
			if (strrchr(value, ':') == NULL)
				usage_error("invalid value \"%s\" for %s: HOST:PORT is expected", value, where);
			opt.metrics = pg_strdup(value);
			break;
		case O_CACERT:
			opt.cacert = pg_strdup(value);
			break;
		case O_SMTP:
			if (!has_scheme(value, "smtp://") && !has_scheme(value, "smtps://"))
				usage_error("invalid value \"%s\" for %s: smtp://HOST:PORT or smtps://HOST:PORT is expected",
							value, where);
			opt.smtp = pg_strdup(value);
			break;
		case O_SMTP_USER:
			opt.smtp_user = pg_strdup(value);
			break;
		case O_SMTP_PASSWORD_FILE:
			opt.smtp_password_file = pg_strdup(value);
			break;
		case O_SMTP_TLS:
			if (strcmp(value, "require") == 0)
				opt.smtp_tls = SMTP_TLS_REQUIRE;
			else if (strcmp(value, "try") == 0)
				opt.smtp_tls = SMTP_TLS_TRY;
			else if (strcmp(value, "off") == 0)
				opt.smtp_tls = SMTP_TLS_OFF;
			else
				usage_error("invalid value \"%s\" for %s: require, try or off is expected", value, where);
			break;
		case O_FROM:
			opt.from = pg_strdup(value);
			break;
		case O_WEBHOOK:
			opt.webhook = http_url(value, where);
			break;
		case O_WEBHOOK_CHANNELS:
			parse_channels(value, where, opt.webhook_channels);
			break;
		case O_VAPID_KEY:
			opt.vapid_key = pg_strdup(value);
			break;
		case O_VAPID_SUBJECT:
			if (!has_scheme(value, "mailto:") && !has_scheme(value, "https://"))
				usage_error("invalid value \"%s\" for %s: a mailto: or https: URI is expected",
							value, where);
			opt.vapid_subject = pg_strdup(value);
			break;
		case O_FCM_CREDENTIALS:
			opt.fcm_credentials = pg_strdup(value);
			break;
		case O_FCM_URL:
			opt.fcm_url = http_url(value, where);
			break;
		case O_APNS_KEY:
			opt.apns_key = pg_strdup(value);
			break;
		case O_APNS_KEY_ID:
			opt.apns_key_id = pg_strdup(value);
			break;
		case O_APNS_TEAM_ID:
			opt.apns_team_id = pg_strdup(value);
			break;
		case O_APNS_TOPIC:
			opt.apns_topic = pg_strdup(value);
			break;
		case O_APNS_URL:
			opt.apns_url = http_url(value, where);
			break;
		default:
			/* getopt_long has said what was wrong */
			pg_log_error_hint("Try \"%s --help\" for more information.", PROGNAME);
			exit(2);
	}
}

/*
 * Parses one line of a configuration file: "name = value" (the "=" may be
 * left out), "#" to the end of the line a comment, a value in single quotes
 * when it has spaces or "#" ('' for a quote), as in postgresql.conf.  The
 * name, its underscores made hyphens, is left in line, *name pointing to it;
 * the value is appended to value.
 */
ConfigLine
parse_config_line(char *line, char **name, PQExpBuffer value)
{
	char	   *p = line;
	char	   *name_end;

	while (isspace((unsigned char) *p))
		p++;
	if (*p == '\0' || *p == '#')
		return CONFIG_LINE_EMPTY;
	*name = p;
	while (isalnum((unsigned char) *p) || *p == '-' || *p == '_')
	{
		if (*p == '_')
			*p = '-';
		p++;
	}
	/* a name, then a space, "=", a comment or the end of the line */
	if (p == *name || !(*p == '\0' || *p == '=' || *p == '#' || isspace((unsigned char) *p)))
		return CONFIG_LINE_NO_NAME;
	name_end = p;
	while (isspace((unsigned char) *p))
		p++;
	if (*p == '=')
		p++;
	while (isspace((unsigned char) *p))
		p++;

	if (*p == '\'')
	{
		for (p++;; p++)
		{
			if (*p == '\0' || *p == '\n')
				return CONFIG_LINE_UNTERMINATED;
			if (*p == '\'' && p[1] == '\'')
				p++;
			else if (*p == '\'')
				break;
			appendPQExpBufferChar(value, *p);
		}
		p++;
	}
	else
		while (*p && *p != '#' && !isspace((unsigned char) *p))
			appendPQExpBufferChar(value, *p++);
	while (isspace((unsigned char) *p))
		p++;
	if (*p != '\0' && *p != '#')
		return CONFIG_LINE_UNQUOTED_SPACE;
	*name_end = '\0';
	return CONFIG_LINE_SETTING;
}

/* Reads a configuration file, line by line */
static void
read_config(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *line;
	int			lineno = 0;

	if (f == NULL)
	{
		pg_log_error("could not open configuration file \"%s\": %m", path);
		exit(2);
	}
	while ((line = pg_get_line(f, NULL)) != NULL)
	{
		char	   *name = NULL;
		PQExpBufferData value;
		PQExpBufferData where;
		const struct option *o;

		lineno++;
		initPQExpBuffer(&value);
		switch (parse_config_line(line, &name, &value))
		{
			case CONFIG_LINE_EMPTY:
				termPQExpBuffer(&value);
				free(line);
				continue;
			case CONFIG_LINE_NO_NAME:
				usage_error("syntax error in configuration file \"%s\" line %d: a name is expected",
							path, lineno);
			case CONFIG_LINE_UNTERMINATED:
				usage_error("syntax error in configuration file \"%s\" line %d: unterminated quoted value",
							path, lineno);
			case CONFIG_LINE_UNQUOTED_SPACE:
				usage_error("syntax error in configuration file \"%s\" line %d: a value with spaces must be quoted",
							path, lineno);
			case CONFIG_LINE_SETTING:
				break;
		}

		for (o = long_options; o->name; o++)
			if (strcmp(o->name, name) == 0)
				break;
		if (o->name == NULL || o->val == O_CONFIG || o->val == O_HELP || o->val == O_VERSION)
			usage_error("unrecognized setting \"%s\" in configuration file \"%s\" line %d",
						name, path, lineno);
		initPQExpBuffer(&where);
		appendPQExpBuffer(&where, "\"%s\" (%s line %d)", name, path, lineno);
		if (o->has_arg == required_argument && value.len == 0)
			usage_error("%s has no value", where.data);
		set_option(o->val, o->has_arg == no_argument && value.len == 0 ? NULL : value.data,
				   where.data);
		termPQExpBuffer(&value);
		termPQExpBuffer(&where);
		free(line);
	}
	fclose(f);
}

/* the SMTP password: from --smtp-password-file, else from BIS_SMTP_PASSWORD */
static void
read_smtp_password(void)
{
	const char *env = getenv("BIS_SMTP_PASSWORD");

	if (opt.smtp_password_file != NULL)
	{
		char	   *pw = read_file(opt.smtp_password_file, "SMTP password file");

		/* a file written by echo ends with a newline that is not the password's */
		pw[strcspn(pw, "\r\n")] = '\0';
		if (pw[0] == '\0')
			usage_error("SMTP password file \"%s\" is empty", opt.smtp_password_file);
		opt.smtp_password = pw;
	}
	else if (env != NULL && env[0] != '\0')
		opt.smtp_password = pg_strdup(env);
	/* what this process starts need not see it */
	unsetenv("BIS_SMTP_PASSWORD");
}

/* the user name and the password of the SMTP URL; a password there is refused */
static void
check_smtp_url(void)
{
	CURLU	   *u = curl_url();
	char	   *user = NULL;
	char	   *password = NULL;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, opt.smtp, 0) != CURLUE_OK)
		usage_error("invalid --smtp URL \"%s\"", opt.smtp);
	if (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK)
	{
		curl_free(password);
		pg_log_error("the SMTP password must not be in the --smtp URL, where ps shows it");
		pg_log_error_hint("Put it in the environment variable BIS_SMTP_PASSWORD or in a file given with --smtp-password-file.");
		exit(2);
	}
	if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK)
	{
		if (opt.smtp_user == NULL)
			opt.smtp_user = pg_strdup(user);
		curl_free(user);
	}
	curl_url_cleanup(u);
}

/* checks what the options say together, and decides what they leave open */
static void
check_options(void)
{
	int			c;

	if (opt.dbname == NULL)
		usage_error("no database given: use --dbname");

	if (opt.smtp != NULL)
	{
		bool		implicit_tls = has_scheme(opt.smtp, "smtps://");

		if (opt.from == NULL)
			usage_error("--smtp needs --from, the sender's address");
		check_smtp_url();
		read_smtp_password();
		if (opt.smtp_password != NULL && opt.smtp_user == NULL)
			usage_error("an SMTP password is given but no user: use --smtp-user");
		if (opt.smtp_user != NULL && opt.smtp_password == NULL)
			usage_error("--smtp-user needs a password: set BIS_SMTP_PASSWORD or use --smtp-password-file");
		if (opt.smtp_tls == SMTP_TLS_DEFAULT)
			opt.smtp_tls = opt.smtp_user != NULL ? SMTP_TLS_REQUIRE : SMTP_TLS_TRY;
		if (opt.smtp_tls == SMTP_TLS_OFF && implicit_tls)
			usage_error("--smtp-tls off contradicts an smtps:// URL");
		if (opt.smtp_tls != SMTP_TLS_REQUIRE && opt.smtp_user != NULL && !implicit_tls)
			usage_error("--smtp-tls %s with a user would send the password without TLS",
						opt.smtp_tls == SMTP_TLS_OFF ? "off" : "try");
		opt.serves[CHANNEL_EMAIL] = true;
	}
	else if (opt.from != NULL || opt.smtp_user != NULL || opt.smtp_password_file != NULL)
		usage_error("--from, --smtp-user and --smtp-password-file are only used with --smtp");

	if (opt.webhook != NULL)
	{
		for (c = 0; c < NUM_CHANNELS; c++)
			opt.serves[c] |= opt.webhook_channels[c];
		if (opt.webhook_channels[CHANNEL_EMAIL])
			usage_error("email goes to --smtp, not to the webhook");
	}
	if (opt.vapid_key != NULL)
	{
		if (opt.vapid_subject == NULL)
			usage_error("--vapid-key needs --vapid-subject, a mailto: or https: contact");
		if (opt.webhook != NULL && opt.webhook_channels[CHANNEL_WEBPUSH])
			usage_error("webpush cannot go both to the webhook and by --vapid-key");
		opt.serves[CHANNEL_WEBPUSH] = true;
	}
	if (opt.fcm_credentials != NULL || opt.apns_key != NULL)
	{
		if (opt.webhook != NULL && opt.webhook_channels[CHANNEL_PUSH])
			usage_error("push cannot go both to the webhook and to FCM or APNs");
		opt.serves[CHANNEL_PUSH] = true;
	}
	if (opt.apns_key != NULL &&
		(opt.apns_key_id == NULL || opt.apns_team_id == NULL || opt.apns_topic == NULL))
		usage_error("--apns-key needs --apns-key-id, --apns-team-id and --apns-topic");
	if (opt.fcm_url == NULL)
		opt.fcm_url = pg_strdup("https://fcm.googleapis.com");
	if (opt.apns_url == NULL)
		opt.apns_url = pg_strdup("https://api.push.apple.com");

	for (c = 0; c < NUM_CHANNELS; c++)
		if (opt.serves[c])
			break;
	if (c == NUM_CHANNELS)
		usage_error("no transport given: use --smtp, --webhook, --vapid-key, --fcm-credentials or --apns-key");

	if (opt.worker == NULL)
	{
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		opt.worker = psprintf("%s-%s-%d", PROGNAME, host, (int) getpid());
	}
}

void
parse_options(int argc, char **argv)
{
	int			c;
	int			index;
	const char *config = NULL;

	pg_logging_init(argv[0]);
	opt.batch = 100;
	opt.lease = 300;
	opt.poll = 10;
	opt.log_level = LOG_INFO;
	opt.webhook_channels[CHANNEL_SMS] = true;

	/* first --help, --version and --config; then the file; then the rest */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		if (c == O_HELP)
		{
			usage();
			exit(0);
		}
		if (c == O_VERSION)
		{
			/* the extension's default_version: the mailer speaks its protocol */
			printf("%s (bis) %s\n", PROGNAME, BIS_VERSION);
			exit(0);
		}
		if (c == O_CONFIG)
			config = optarg;
	}
	if (config != NULL)
		read_config(config);

	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", long_options, &index)) != -1)
	{
		char	   *where;

		if (c == O_CONFIG)
			continue;
		where = c == '?' ? NULL : psprintf("--%s", long_options[index].name);
		set_option(c, optarg, where);
		free(where);
	}
	if (optind < argc)
		usage_error("too many command-line arguments (first is \"%s\")", argv[optind]);
	check_options();
}
