/*-------------------------------------------------------------------------
 *
 * webpush.c
 *	  Web push (RFC 8030) to a browser's push service: the message encrypted
 *	  for the subscription (RFC 8291, aes128gcm), the sender identified by a
 *	  VAPID JWT signed ES256 with --vapid-key (RFC 8292).
 *
 * The browser's service worker receives the JSON {"id", "title", "body",
 * "url"}.  A VAPID JWT is made per push service origin and reused until an
 * hour before it expires (they last 12 hours).  201 is delivered; 404 and
 * 410 say the subscription is gone; 429 and 5xx are retried; other refusals
 * are permanent.  Topic: bis-ID lets the push service replace a copy of the
 * same notification still waiting for the browser.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <arpa/inet.h>
#include <time.h>

#include "common/logging.h"
#include "mailer.h"

#define VAPID_LIFETIME_S (12 * 3600)
#define VAPID_MARGIN_S 3600
#define VAPID_CACHE 16

typedef struct VapidToken
{
	char	   *origin;
	char	   *jwt;
	time_t		expires;
} VapidToken;

static EVP_PKEY *vapid_key;
static char *vapid_public;		/* base64url of the uncompressed point */
static VapidToken cache[VAPID_CACHE];
static CURL *handle;

bool
webpush_init(void)
{
	char	   *pem = read_file(opt.vapid_key, "VAPID key file");
	unsigned char pub[65];
	PQExpBufferData b;

	vapid_key = load_private_key(pem, "--vapid-key");
	free(pem);
	if (vapid_key == NULL)
		return false;
	if (!key_is_p256(vapid_key) || !p256_public_key(vapid_key, pub))
	{
		pg_log_error("--vapid-key \"%s\" is not a P-256 (prime256v1) private key", opt.vapid_key);
		return false;
	}
	initPQExpBuffer(&b);
	append_base64url(&b, pub, sizeof(pub));
	vapid_public = b.data;
	return true;
}

/*
 * Whether a URL's host is this machine: localhost, ::1 or an address of
 * 127.0.0.0/8, not a name that merely starts like one (127.example.com)
 */
static bool
loopback_host(const char *host)
{
	struct in_addr addr;

	if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, host, &addr) == 1 && (ntohl(addr.s_addr) >> 24) == 127;
}

/* the origin of an endpoint (scheme://host[:port]); NULL if it may not be used */
char *
endpoint_origin(const char *endpoint)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *origin = NULL;

	if (u != NULL && curl_url_set(u, CURLUPART_URL, endpoint, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
	{
		/* plain http only to this machine, where tests run */
		if (strcmp(scheme, "https") == 0 || (strcmp(scheme, "http") == 0 && loopback_host(host)))
		{
			if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) == CURLUE_OK)
				origin = psprintf("%s://%s:%s", scheme, host, port);
			else
				origin = psprintf("%s://%s", scheme, host);
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return origin;
}

/* the VAPID JWT for a push service, made anew when near its end */
static const char *
vapid_jwt(const char *origin)
{
	time_t		now = time(NULL);
	VapidToken *slot = &cache[0];
	PQExpBufferData claims;

	for (int i = 0; i < VAPID_CACHE; i++)
	{
		if (cache[i].origin != NULL && strcmp(cache[i].origin, origin) == 0)
		{
			if (cache[i].expires - VAPID_MARGIN_S > now)
				return cache[i].jwt;
			slot = &cache[i];
			break;
		}
		/* a free slot, else the one that expires first */
		if (cache[i].origin == NULL || (slot->origin != NULL && cache[i].expires < slot->expires))
			slot = &cache[i];
	}
	free(slot->origin);
	free(slot->jwt);
	slot->origin = NULL;
	slot->jwt = NULL;

	initPQExpBuffer(&claims);
	appendPQExpBufferStr(&claims, "{\"aud\":");
	append_json_string(&claims, origin);
	appendPQExpBuffer(&claims, ",\"exp\":%lld,\"sub\":", (long long) now + VAPID_LIFETIME_S);
	append_json_string(&claims, opt.vapid_subject);
	appendPQExpBufferChar(&claims, '}');
	slot->jwt = make_jwt(vapid_key, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}", claims.data);
	termPQExpBuffer(&claims);
	if (slot->jwt == NULL)
		return NULL;
	slot->origin = pg_strdup(origin);
	slot->expires = now + VAPID_LIFETIME_S;
	metrics_token_refresh("vapid");
	return slot->jwt;
}

TargetOutcome
webpush_send(const Message *m, const PushTarget *t, Delivery *d)
{
	unsigned char ua_public[66];
	unsigned char auth[17];
	char	   *origin = endpoint_origin(t->token);
	const char *jwt;
	PQExpBufferData text;
	PQExpBufferData body;
	PQExpBufferData h;
	struct curl_slist *headers = NULL;
	HttpAnswer	a;
	TargetOutcome result;

	if (origin == NULL)
	{
		set_outcome(d, OUTCOME_PERMANENT, "webpush: the endpoint is not an https URL");
		return TARGET_PERMANENT;
	}
	if (t->p256dh == NULL || t->auth == NULL ||
		decode_base64url(t->p256dh, ua_public, sizeof(ua_public)) != 65 || ua_public[0] != 0x04 ||
		decode_base64url(t->auth, auth, sizeof(auth)) != 16)
	{
		free(origin);
		set_outcome(d, OUTCOME_PERMANENT, "webpush: the subscription's keys are not a P-256 key and a 16-byte secret");
		return TARGET_INVALID;
	}
	if ((jwt = vapid_jwt(origin)) == NULL)
	{
		free(origin);
		set_outcome(d, OUTCOME_CONFIG, "webpush: could not sign the VAPID token");
		return TARGET_CONFIG;
	}
	free(origin);

	initPQExpBuffer(&text);
	appendPQExpBuffer(&text, "{\"id\":%lld,\"title\":", m->id);
	append_json_string(&text, m->subject);
	appendPQExpBufferStr(&text, ",\"body\":");
	append_json_string(&text, m->body);
	appendPQExpBufferStr(&text, ",\"url\":");
	append_json_string(&text, m->url);
	appendPQExpBufferChar(&text, '}');
	initPQExpBuffer(&body);
	if (!webpush_encrypt(ua_public, auth, text.data, text.len, &body))
	{
		termPQExpBuffer(&text);
		termPQExpBuffer(&body);
		set_outcome(d, OUTCOME_PERMANENT, "webpush: could not encrypt the message (too long, or a bad key)");
		return TARGET_PERMANENT;
	}
	termPQExpBuffer(&text);

	initPQExpBuffer(&h);
	appendPQExpBuffer(&h, "Authorization: vapid t=%s, k=%s", jwt, vapid_public);
	headers = curl_slist_append(headers, h.data);
	resetPQExpBuffer(&h);
	appendPQExpBuffer(&h, "Topic: bis-%lld", m->id);
	headers = curl_slist_append(headers, h.data);
	headers = curl_slist_append(headers, "Content-Encoding: aes128gcm");
	headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
	headers = curl_slist_append(headers, "TTL: 86400");
	headers = curl_slist_append(headers, "Urgency: normal");
	headers = curl_slist_append(headers, "Expect:");
	termPQExpBuffer(&h);

	handle = http_handle(handle);
	http_post(handle, t->token, headers, body.data, body.len, &a);
	if (a.rc == CURLE_OK && a.status >= 200 && a.status <= 299)
		result = TARGET_SENT;
	else if (a.rc != CURLE_OK)
	{
		result = curl_tls_failure(a.rc) ? TARGET_CONFIG : TARGET_RETRY;
		http_error(d, result == TARGET_CONFIG ? OUTCOME_CONFIG : OUTCOME_RETRY, "webpush", &a);
	}
	else if (a.status == 404 || a.status == 410)
	{
		result = TARGET_INVALID;
		http_error(d, OUTCOME_PERMANENT, "webpush", &a);
	}
	else if (a.status == 429 || a.status >= 500)
	{
		result = TARGET_RETRY;
		http_error(d, OUTCOME_RETRY, "webpush", &a);
	}
	else
	{
		result = TARGET_PERMANENT;
		http_error(d, OUTCOME_PERMANENT, "webpush", &a);
	}
	curl_slist_free_all(headers);
	http_answer_free(&a);
	termPQExpBuffer(&body);
	return result;
}
