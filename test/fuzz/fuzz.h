/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *	  What the libFuzzer harnesses of test/fuzz share.
 *
 * A harness calls a parser with the fuzzer's bytes and checks, beside what
 * the sanitizers check, the properties its callers rely on; a property that
 * does not hold aborts, which libFuzzer reports as a crash.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_FUZZ_H
#define BIS_FUZZ_H

#include "postgres_fe.h"

#include "common/logging.h"
#include "mb/pg_wchar.h"

extern int	LLVMFuzzerInitialize(int *argc, char ***argv);
extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the messages of what is fuzzed would only slow the fuzzer down */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pg_logging_set_level(PG_LOG_OFF);
	return 0;
}

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz: %s:%d: property does not hold: %s\n", \
					__FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* the fuzzer's bytes, NUL-terminated: a NUL among them ends the string */
static inline char *
fuzz_string(const uint8_t *data, size_t size)
{
	char	   *s = pg_malloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* whether s (len bytes) is text a UTF8 database accepts */
static inline bool
fuzz_utf8(const char *s, size_t len)
{
	return pg_encoding_verifymbstr(PG_UTF8, s, (int) len) == (int) len;
}

#endif							/* BIS_FUZZ_H */
