/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The text of the delivery rules' settings: quiet hours, lists of
 *	  channels, the count of a send rate.
 *
 * rules.c's check hooks parse their settings with these, without raising
 * errors, as check hooks must.  This is plain C on a string, so that
 * test/fuzz can run it outside the server; the period of a send rate is
 * PostgreSQL's interval syntax, read by rules.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "datatype/timestamp.h"

#include "settings.h"

/* "HH:MM-HH:MM", in local time: from the first, until the second */
bool
parse_quiet_hours(const char *value, QuietHours *q)
{
	int			h1,
				m1,
				h2,
				m2;
	char		rest;

	if (sscanf(value, " %d:%d - %d:%d %c", &h1, &m1, &h2, &m2, &rest) != 4)
		return false;
	if (h1 < 0 || h1 > 23 || m1 < 0 || m1 > 59 || h2 < 0 || h2 > 23 || m2 < 0 || m2 > 59)
		return false;
	q->from_minute = h1 * MINS_PER_HOUR + m1;
	q->until_minute = h2 * MINS_PER_HOUR + m2;
	return q->from_minute != q->until_minute;
}

/* A channel's bit, or 0 for a name that is not a channel */
int
channel_bit(const char *name, int len)
{
	static const char *const names[] = {"email", "sms", "push", "webpush"};
	int			i;

	for (i = 0; i < (int) lengthof(names); i++)
		if ((int) strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
			return 1 << i;
	return 0;
}

/* "sms, push": a set of channels, possibly empty */
bool
parse_channels(const char *value, int *channels)
{
	const char *p = value;

	*channels = 0;
	while (*p)
	{
		const char *start;
		int			bit;

		while (isspace((unsigned char) *p) || *p == ',')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p && *p != ',' && !isspace((unsigned char) *p))
			p++;
		bit = channel_bit(start, p - start);
		if (bit == 0)
			return false;
		*channels |= bit;
	}
	return true;
}

/*
 * The count of a send rate "N/period": N, at least 1, before the slash,
 * spaces allowed after it; *period is what follows the slash, for the
 * caller to read as an interval.
 */
bool
parse_rate_count(const char *value, int64 *messages, const char **period)
{
	const char *slash = strchr(value, '/');
	char	   *end;
	long long	n;

	if (slash == NULL)
		return false;
	errno = 0;
	n = strtoll(value, &end, 10);
	while (end < slash && isspace((unsigned char) *end))
		end++;
	if (errno != 0 || end != slash || n < 1)
		return false;
	*messages = n;
	*period = slash + 1;
	return true;
}
