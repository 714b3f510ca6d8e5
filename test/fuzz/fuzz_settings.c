/*-------------------------------------------------------------------------
 *
 * fuzz_settings.c
 *	  The text of the delivery rules' settings (src/settings.c): any bytes
 *	  as quiet hours, a list of channels, a send rate, and a channel's name
 *	  (as bis.claim gets it from a row).
 *
 * The properties: quiet hours accepted are two different minutes of a day;
 * a list of channels accepted names only channels, each as a whole word; a
 * send rate's count is at least 1 and its period what follows its slash.
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz.h"

#include "settings.h"

static void
check_channels(const char *text)
{
	int			channels = -1;
	int			expected = 0;
	char	   *copy = pg_strdup(text);
	char	   *save = NULL;
	bool		ok = true;

	/* the list, as strtok splits it */
	for (char *tok = strtok_r(copy, ", \t\n\v\f\r", &save); tok;
		 tok = strtok_r(NULL, ", \t\n\v\f\r", &save))
	{
		int			bit = channel_bit(tok, strlen(tok));

		if (bit == 0)
			ok = false;
		expected |= bit;
	}
	FUZZ_ASSERT(parse_channels(text, &channels) == ok);
	if (ok)
		FUZZ_ASSERT(channels == expected);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = fuzz_string(data, size);
	QuietHours	q = {-1, -1};
	int64		messages = 0;
	const char *period = NULL;
	int			bit;

	if (parse_quiet_hours(text, &q))
		FUZZ_ASSERT(q.from_minute >= 0 && q.from_minute < 24 * 60 &&
					q.until_minute >= 0 && q.until_minute < 24 * 60 &&
					q.from_minute != q.until_minute);
	check_channels(text);
	if (parse_rate_count(text, &messages, &period))
		FUZZ_ASSERT(messages >= 1 && period > text && period[-1] == '/' &&
					strchr(text, '/') == period - 1);
	bit = channel_bit(text, (int) strlen(text));
	FUZZ_ASSERT(bit == 0 || (bit & (bit - 1)) == 0);
	free(text);
	return 0;
}
