/*-------------------------------------------------------------------------
 *
 * log.c
 *	  bis-mailer's log: one line per event on standard error, with a
 *	  timestamp and a level, as text or as JSON.
 *
 * A line never carries an email address, a phone number, a token or a
 * message's text: what a delivery failed with goes to last_error in the
 * database, and only its summary (a status code, libcurl's error) to the log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mailer.h"

static const char *const level_names[] = {"debug", "info", "warning", "error"};

/* a message without line breaks, for a log line or last_error (static buffer) */
const char *
one_line(const char *msg)
{
	static char buf[1024];
	size_t		len;

	strlcpy(buf, msg ? msg : "", sizeof(buf));
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	/* a multi-line message (ERROR + DETAIL) goes on one line */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	return buf;
}

void
mailer_log(LogLevel level, const char *fmt,...)
{
	char		msg[2048];
	PQExpBufferData line;
	struct timeval tv;
	struct tm	tm;
	char		stamp[64];
	char		zone[16];
	va_list		ap;

	if (level < opt.log_level)
		return;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%Z", &tm);

	initPQExpBuffer(&line);
	if (opt.log_format == LOG_FORMAT_JSON)
	{
		char		iso[80];

		snprintf(iso, sizeof(iso), "%s.%03d", stamp, (int) (tv.tv_usec / 1000));
		appendPQExpBufferStr(&line, "{\"time\": ");
		append_json_string(&line, iso);
		appendPQExpBufferStr(&line, ", \"zone\": ");
		append_json_string(&line, zone);
		appendPQExpBuffer(&line, ", \"level\": \"%s\", \"pid\": %d, \"worker\": ",
						  level_names[level], (int) getpid());
		append_json_string(&line, opt.worker);
		appendPQExpBufferStr(&line, ", \"message\": ");
		append_json_string(&line, msg);
		appendPQExpBufferStr(&line, "}\n");
	}
	else
		appendPQExpBuffer(&line, "%s.%03d %s [%d] %s: %s\n", stamp,
						  (int) (tv.tv_usec / 1000), zone, (int) getpid(),
						  level_names[level], one_line(msg));
	/* one write: lines of mailers sharing a file do not interleave */
	if (write(STDERR_FILENO, line.data, line.len) < 0)
	{
		/* nowhere left to say so */
	}
	termPQExpBuffer(&line);
}
