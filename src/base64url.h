/*-------------------------------------------------------------------------
 *
 * base64url.h
 *	  The text of unsubscribe tokens (base64url.c): plain C, compiled into
 *	  the extension and into the fuzzing harnesses of test/fuzz.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_BASE64URL_H
#define BIS_BASE64URL_H

extern int	base64url_encode(const uint8 *raw, int len, char *out, int outsize);
extern int	base64url_decode(const char *text, int len, uint8 *raw, int rawsize);

#endif							/* BIS_BASE64URL_H */
