/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The text of the delivery rules' settings (settings.c): plain C,
 *	  compiled into the extension and into the fuzzing harnesses of
 *	  test/fuzz.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_SETTINGS_H
#define BIS_SETTINGS_H

#define CHANNEL_EMAIL	(1 << 0)
#define CHANNEL_SMS		(1 << 1)
#define CHANNEL_PUSH	(1 << 2)
#define CHANNEL_WEBPUSH	(1 << 3)

typedef struct QuietHours
{
	int			from_minute;	/* of the local day; -1: no quiet hours */
	int			until_minute;	/* the window may wrap past midnight */
} QuietHours;

extern bool parse_quiet_hours(const char *value, QuietHours *q);
extern int	channel_bit(const char *name, int len);
extern bool parse_channels(const char *value, int *channels);
extern bool parse_rate_count(const char *value, int64 *messages, const char **period);

#endif							/* BIS_SETTINGS_H */
