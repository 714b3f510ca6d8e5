/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Signed unsubscribe tokens: what the links and headers of a message
 *	  carry, and what bis.unsubscribe_by_token() checks.
 *
 * A token names a notification and what unsubscribing through it does:
 * cancel the subscription the notification came from, or also withdraw the
 * contact's consent for the channel.  It is signed with HMAC-SHA-256 under a
 * key kept in bis.signing_key, which only bis's owner can read: mailers pass
 * tokens on and never need the key.  Layout, before base64url without
 * padding (base64url.c): a version byte, the scope byte, the notification id
 * (8 bytes, big endian), and the first TOKEN_MAC_LEN bytes of the MAC of the
 * rest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"

#include "base64url.h"
#include "bis.h"

#define TOKEN_VERSION 1
#define TOKEN_MAC_LEN 16		/* 128 bits of the MAC: ample against forgery */
#define TOKEN_BODY_LEN (2 + sizeof(int64))
#define TOKEN_LEN (TOKEN_BODY_LEN + TOKEN_MAC_LEN)

/* the key, made the first time one is needed */
static const char key_sql[] =
"SELECT k.key FROM bis.signing_key k";
static const char new_key_sql[] =
"INSERT INTO bis.signing_key (key) VALUES ($1) ON CONFLICT DO NOTHING";

static SPIPlanPtr key_plan = NULL;
static SPIPlanPtr new_key_plan = NULL;

/*
 * The signing key, into key[SIGNING_KEY_LEN]; made at first use, so that a
 * restored database keeps the key its dump had.  Caller is in SPI, as the
 * extension's owner.
 */
static void
signing_key(uint8 *key)
{
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		int			ret = SPI_execute_plan(prepare_kept(&key_plan, key_sql, 0, NULL),
										   NULL, NULL, attempt == 0, 1);

		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			bool		isnull;
			bytea	   *k = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));

			if (VARSIZE_ANY_EXHDR(k) != SIGNING_KEY_LEN)
				elog(ERROR, "the signing key in bis.signing_key has the wrong length");
			memcpy(key, VARDATA_ANY(k), SIGNING_KEY_LEN);
			return;
		}
		if (attempt == 0)
		{
			Oid			argtype = BYTEAOID;
			bytea	   *k = palloc(VARHDRSZ + SIGNING_KEY_LEN);
			Datum		arg = PointerGetDatum(k);

			SET_VARSIZE(k, VARHDRSZ + SIGNING_KEY_LEN);
			if (!pg_strong_random(VARDATA(k), SIGNING_KEY_LEN))
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not generate a random signing key")));
			ret = SPI_execute_plan(prepare_kept(&new_key_plan, new_key_sql, 1, &argtype),
								   &arg, NULL, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
		}
	}
	elog(ERROR, "could not read the signing key");
}

/*
 * A signer: the key, and one HMAC context used for every token of a call
 * (making a context is what a token would otherwise cost most)
 */
void
signer_begin(Signer *signer)
{
	signing_key(signer->key);
	signer->ctx = pg_hmac_create(PG_SHA256);
	if (signer->ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
}

void
signer_end(Signer *signer)
{
	pg_hmac_free(signer->ctx);
	signer->ctx = NULL;
}

static void
mac(Signer *signer, const uint8 *body, uint8 *out)
{
	uint8		full[PG_SHA256_DIGEST_LENGTH];

	if (pg_hmac_init(signer->ctx, signer->key, SIGNING_KEY_LEN) < 0 ||
		pg_hmac_update(signer->ctx, body, TOKEN_BODY_LEN) < 0 ||
		pg_hmac_final(signer->ctx, full, sizeof(full)) < 0)
		elog(ERROR, "could not compute an HMAC: %s", pg_hmac_error(signer->ctx));
	memcpy(out, full, TOKEN_MAC_LEN);
}

/* a token's text, NUL-terminated, fits in this */
#define TOKEN_TEXT_MAX 64

/* A token for a notification, palloc'd */
char *
make_token(Signer *signer, int64 notification_id, char scope)
{
	uint8		raw[TOKEN_LEN];
	uint64		id = pg_hton64((uint64) notification_id);
	char	   *out = palloc(TOKEN_TEXT_MAX);

	raw[0] = TOKEN_VERSION;
	raw[1] = (uint8) scope;
	memcpy(raw + 2, &id, sizeof(id));
	mac(signer, raw, raw + TOKEN_BODY_LEN);
	if (base64url_encode(raw, TOKEN_LEN, out, TOKEN_TEXT_MAX) < 0)
		elog(ERROR, "could not encode a token");
	return out;
}

/*
 * bis._read_token(token text, OUT notification_id bigint, OUT scope "char")
 *
 * What a token names, if bis signed it; a forged, altered or truncated token
 * is an error, and changes nothing.  Runs as the extension's owner, called by
 * bis.unsubscribe_by_token().
 */
PG_FUNCTION_INFO_V1(bis__read_token);

Datum
bis__read_token(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	uint8		raw[64];
	Signer		signer;
	uint8		expected[TOKEN_MAC_LEN];
	uint64		id;
	int			rawlen;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	rawlen = base64url_decode(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), raw, sizeof(raw));
	if (rawlen != TOKEN_LEN || raw[0] != TOKEN_VERSION ||
		(raw[1] != TOKEN_SCOPE_SUBSCRIPTION && raw[1] != TOKEN_SCOPE_CHANNEL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is not one that bis made.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	signer_begin(&signer);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	mac(&signer, raw, expected);
	signer_end(&signer);
	if (timingsafe_bcmp(expected, raw + TOKEN_BODY_LEN, TOKEN_MAC_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token's signature does not match.")));

	memcpy(&id, raw + 2, sizeof(id));
	values[0] = Int64GetDatum((int64) pg_ntoh64(id));
	values[1] = CharGetDatum((char) raw[1]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
