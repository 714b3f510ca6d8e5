/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  The cryptography of the push transports, with OpenSSL: private keys
 *	  from PEM, JWTs signed ES256 (VAPID, APNs) or RS256 (FCM), and web push
 *	  message encryption (RFC 8291, aes128gcm).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/logging.h"
#include "mailer.h"

/* web push: one record of at most 4096 bytes (RFC 8291 4) */
#define WEBPUSH_RECORD_SIZE 4096
#define WEBPUSH_HEADER_SIZE (16 + 4 + 1 + 65)

static const char *
ssl_error(void)
{
	unsigned long e = ERR_get_error();

	return e ? ERR_reason_error_string(e) : "unknown error";
}

/* a private key from PEM text (PKCS#8 or SEC 1); NULL and a message on failure */
EVP_PKEY *
load_private_key(const char *pem, const char *what)
{
	BIO		   *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY   *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

	if (key == NULL)
		pg_log_error("could not read the private key of %s: %s", what, ssl_error());
	BIO_free(bio);
	return key;
}

bool
key_is_p256(EVP_PKEY *key)
{
	char		group[64];

	return EVP_PKEY_is_a(key, "EC") &&
		EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
									   sizeof(group), NULL) &&
		strcmp(group, "prime256v1") == 0;
}

bool
key_is_rsa(EVP_PKEY *key)
{
	return EVP_PKEY_is_a(key, "RSA");
}

/* the uncompressed public point of a P-256 key: 0x04 || x || y */
bool
p256_public_key(EVP_PKEY *key, unsigned char *out65)
{
	size_t		len = 0;

	return EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, out65, 65, &len) &&
		len == 65 && out65[0] == 0x04;
}

/*
 * Signs data with SHA-256: RSASSA-PKCS1-v1_5 for an RSA key (RS256), ECDSA
 * for a P-256 key, its DER signature turned into r || s (ES256, RFC 7518).
 */
static bool
sign_sha256(EVP_PKEY *key, const char *data, size_t len, PQExpBuffer sig_b64url)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t		siglen = 0;
	bool		ok = false;

	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
		EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *) data, len) != 1)
		goto done;
	sig = pg_malloc(siglen);
	if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *) data, len) != 1)
		goto done;
	if (EVP_PKEY_is_a(key, "EC"))
	{
		const unsigned char *p = sig;
		ECDSA_SIG  *ec = d2i_ECDSA_SIG(NULL, &p, (long) siglen);
		const BIGNUM *r;
		const BIGNUM *s;
		unsigned char rs[64];

		if (ec == NULL)
			goto done;
		ECDSA_SIG_get0(ec, &r, &s);
		ok = BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32;
		ECDSA_SIG_free(ec);
		if (ok)
			append_base64url(sig_b64url, rs, 64);
	}
	else
	{
		append_base64url(sig_b64url, sig, siglen);
		ok = true;
	}
done:
	free(sig);
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* a JWT (RFC 7519): base64url(header).base64url(claims).signature; NULL on failure */
char *
make_jwt(EVP_PKEY *key, const char *header_json, const char *claims_json)
{
	PQExpBufferData jwt;

	initPQExpBuffer(&jwt);
	append_base64url(&jwt, (const unsigned char *) header_json, strlen(header_json));
	appendPQExpBufferChar(&jwt, '.');
	append_base64url(&jwt, (const unsigned char *) claims_json, strlen(claims_json));
	/* the signature is of the text so far */
	{
		char	   *signed_part = pg_strdup(jwt.data);
		bool		ok;

		appendPQExpBufferChar(&jwt, '.');
		ok = sign_sha256(key, signed_part, strlen(signed_part), &jwt);
		free(signed_part);
		if (!ok)
		{
			log_error("could not sign a JWT: %s", ssl_error());
			termPQExpBuffer(&jwt);
			return NULL;
		}
	}
	return jwt.data;
}

/* HKDF (RFC 5869) with SHA-256, for an output of at most 32 bytes */
static bool
hkdf(const unsigned char *salt, int saltlen, const unsigned char *ikm, int ikmlen,
	 const unsigned char *info, int infolen, unsigned char *out, int outlen)
{
	unsigned char prk[32];
	unsigned char okm[32];
	unsigned char t[256];
	unsigned int len = 0;

	if (infolen + 1 > (int) sizeof(t) || outlen > 32)
		return false;
	/* extract, then the first block of expand: T(1) = HMAC(PRK, info || 0x01) */
	if (HMAC(EVP_sha256(), salt, saltlen, ikm, ikmlen, prk, &len) == NULL)
		return false;
	memcpy(t, info, infolen);
	t[infolen] = 0x01;
	if (HMAC(EVP_sha256(), prk, sizeof(prk), t, infolen + 1, okm, &len) == NULL)
		return false;
	memcpy(out, okm, outlen);
	return true;
}

/*
 * Encrypts a web push message for a browser (RFC 8291): an ephemeral P-256
 * key agrees a secret with the browser's key (ua_public, 65 bytes), mixed
 * with its authentication secret (16 bytes); the content is one aes128gcm
 * record (RFC 8188) behind a header of salt, record size and the ephemeral
 * public key.  False if the message is too long or OpenSSL fails.
 */
bool
webpush_encrypt(const unsigned char *ua_public, const unsigned char *auth_secret,
				const char *plaintext, size_t len, PQExpBuffer out)
{
	EVP_PKEY   *eph = NULL;
	EVP_PKEY   *peer = NULL;
	EVP_PKEY_CTX *dctx = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	unsigned char as_public[65];
	unsigned char ecdh[32];
	size_t		ecdhlen = sizeof(ecdh);
	unsigned char key_info[14 + 65 + 65];
	unsigned char ikm[32];
	unsigned char salt[16];
	unsigned char cek[16];
	unsigned char nonce[12];
	unsigned char *padded = NULL;
	unsigned char *cipher = NULL;
	unsigned char tag[16];
	unsigned char rs[4] = {0, 0, (WEBPUSH_RECORD_SIZE >> 8) & 0xff, WEBPUSH_RECORD_SIZE & 0xff};
	int			outl;
	int			finl;
	bool		ok = false;

	if (len + 1 + 16 + WEBPUSH_HEADER_SIZE > WEBPUSH_RECORD_SIZE)
		return false;

	/* the ephemeral key, and the browser's public key as a key of the same group */
	eph = EVP_EC_gen("P-256");
	peer = EVP_PKEY_new();
	if (eph == NULL || peer == NULL || !p256_public_key(eph, as_public) ||
		EVP_PKEY_copy_parameters(peer, eph) != 1 ||
		EVP_PKEY_set1_encoded_public_key(peer, ua_public, 65) != 1)
		goto done;
	dctx = EVP_PKEY_CTX_new(eph, NULL);
	if (dctx == NULL || EVP_PKEY_derive_init(dctx) != 1 ||
		EVP_PKEY_derive_set_peer(dctx, peer) != 1 ||
		EVP_PKEY_derive(dctx, ecdh, &ecdhlen) != 1 || ecdhlen != 32)
		goto done;

	/* IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0x00 || ua_public || as_public, 32) */
	memcpy(key_info, "WebPush: info", 14);	/* with its NUL: the 0x00 */
	memcpy(key_info + 14, ua_public, 65);
	memcpy(key_info + 14 + 65, as_public, 65);
	if (!hkdf(auth_secret, 16, ecdh, 32, key_info, sizeof(key_info), ikm, 32))
		goto done;
	/* CEK and NONCE from the salt (RFC 8188 2.2, 2.3) */
	if (RAND_bytes(salt, sizeof(salt)) != 1 ||
		!hkdf(salt, 16, ikm, 32, (const unsigned char *) "Content-Encoding: aes128gcm", 28, cek, 16) ||
		!hkdf(salt, 16, ikm, 32, (const unsigned char *) "Content-Encoding: nonce", 24, nonce, 12))
		goto done;

	/* the last (and only) record: the text, then the delimiter 0x02 */
	padded = pg_malloc(len + 1);
	memcpy(padded, plaintext, len);
	padded[len] = 0x02;
	cipher = pg_malloc(len + 1 + 16);
	cctx = EVP_CIPHER_CTX_new();
	if (cctx == NULL ||
		EVP_EncryptInit_ex(cctx, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
		EVP_EncryptInit_ex(cctx, NULL, NULL, cek, nonce) != 1 ||
		EVP_EncryptUpdate(cctx, cipher, &outl, padded, (int) len + 1) != 1 ||
		EVP_EncryptFinal_ex(cctx, cipher + outl, &finl) != 1 ||
		EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto done;

	appendBinaryPQExpBuffer(out, (char *) salt, 16);
	appendBinaryPQExpBuffer(out, (char *) rs, 4);
	appendPQExpBufferChar(out, 65);
	appendBinaryPQExpBuffer(out, (char *) as_public, 65);
	appendBinaryPQExpBuffer(out, (char *) cipher, outl + finl);
	appendBinaryPQExpBuffer(out, (char *) tag, 16);
	ok = !PQExpBufferBroken(out);
done:
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(eph);
	free(padded);
	free(cipher);
	return ok;
}
