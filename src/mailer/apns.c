/*-------------------------------------------------------------------------
 *
 * apns.c
 *	  Apple Push Notification service: HTTP/2 requests authenticated by a
 *	  provider token, a JWT signed ES256 with the .p8 key of --apns-key,
 *	  reused for 50 minutes (Apple refuses one older than an hour, and too
 *	  frequent new ones); each device gets {"aps": {"alert": {"title",
 *	  "body"}}, "notification_id", "url"} at --apns-url/3/device/TOKEN.
 *
 * 200 is delivered; 410 (Unregistered) and 400 BadDeviceToken say the
 * token is gone; 403 ExpiredProviderToken makes a new token, once; 429 and
 * 5xx are retried; a key or a topic refused is a configuration error.
 * apns-collapse-id: bis-ID lets the device show a second copy of the same
 * notification in place of the first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/logging.h"
#include "mailer.h"

#define PROVIDER_TOKEN_REUSE_S (50 * 60)
#define APNS_EXPIRATION_S 86400

static EVP_PKEY *key;
static char *provider_token;
static time_t provider_made;
static CURL *handle;

bool
apns_init(void)
{
	char	   *pem = read_file(opt.apns_key, "APNs key file");

	key = load_private_key(pem, "--apns-key");
	free(pem);
	if (key == NULL)
		return false;
	if (!key_is_p256(key))
	{
		pg_log_error("--apns-key \"%s\" is not a P-256 private key (.p8)", opt.apns_key);
		return false;
	}
	return true;
}

static const char *
apns_provider_token(void)
{
	time_t		now = time(NULL);
	PQExpBufferData header;
	PQExpBufferData claims;

	if (provider_token != NULL && now - provider_made < PROVIDER_TOKEN_REUSE_S)
		return provider_token;
	free(provider_token);
	initPQExpBuffer(&header);
	appendPQExpBufferStr(&header, "{\"alg\":\"ES256\",\"kid\":");
	append_json_string(&header, opt.apns_key_id);
	appendPQExpBufferChar(&header, '}');
	initPQExpBuffer(&claims);
	appendPQExpBufferStr(&claims, "{\"iss\":");
	append_json_string(&claims, opt.apns_team_id);
	appendPQExpBuffer(&claims, ",\"iat\":%lld}", (long long) now);
	provider_token = make_jwt(key, header.data, claims.data);
	termPQExpBuffer(&header);
	termPQExpBuffer(&claims);
	provider_made = now;
	if (provider_token != NULL)
		metrics_token_refresh("apns");
	return provider_token;
}

TargetOutcome
apns_send(const Message *m, const PushTarget *t, Delivery *d)
{
	PQExpBufferData body;
	char	   *url;
	size_t		base = strlen(opt.apns_url);
	TargetOutcome result = TARGET_RETRY;

	/* a device token is hex: nothing else may reach the URL */
	if (t->token[0] == '\0' || strspn(t->token, "0123456789abcdefABCDEF") != strlen(t->token))
	{
		set_outcome(d, OUTCOME_PERMANENT, "apns: the device token is not hexadecimal");
		return TARGET_INVALID;
	}
	while (base > 0 && opt.apns_url[base - 1] == '/')
		base--;
	url = psprintf("%.*s/3/device/%s", (int) base, opt.apns_url, t->token);

	initPQExpBuffer(&body);
	appendPQExpBufferStr(&body, "{\"aps\":{\"alert\":{\"title\":");
	append_json_string(&body, m->subject);
	appendPQExpBufferStr(&body, ",\"body\":");
	append_json_string(&body, m->body);
	appendPQExpBuffer(&body, "}},\"notification_id\":%lld,\"url\":", m->id);
	append_json_string(&body, m->url);
	appendPQExpBufferChar(&body, '}');

	/* a second try only after 403 ExpiredProviderToken */
	for (int try = 0; try < 2; try++)
	{
		const char *token = apns_provider_token();
		struct curl_slist *headers = NULL;
		PQExpBufferData h;
		HttpAnswer	a;
		char		reason[64] = "";

		if (token == NULL)
		{
			set_outcome(d, OUTCOME_CONFIG, "apns: could not sign the provider token");
			result = TARGET_CONFIG;
			break;
		}
		initPQExpBuffer(&h);
		appendPQExpBuffer(&h, "authorization: bearer %s", token);
		headers = curl_slist_append(headers, h.data);
		resetPQExpBuffer(&h);
		appendPQExpBufferStr(&h, "apns-topic: ");
		appendPQExpBufferStr(&h, opt.apns_topic);
		headers = curl_slist_append(headers, h.data);
		resetPQExpBuffer(&h);
		appendPQExpBuffer(&h, "apns-collapse-id: bis-%lld", m->id);
		headers = curl_slist_append(headers, h.data);
		resetPQExpBuffer(&h);
		appendPQExpBuffer(&h, "apns-expiration: %lld", (long long) time(NULL) + APNS_EXPIRATION_S);
		headers = curl_slist_append(headers, h.data);
		headers = curl_slist_append(headers, "apns-push-type: alert");
		headers = curl_slist_append(headers, "apns-priority: 10");
		headers = curl_slist_append(headers, "content-type: application/json");
		termPQExpBuffer(&h);

		handle = http_handle(handle);
		/*
		 * HTTP/2 only: over TLS by ALPN, the connection kept as Apple wants;
		 * in clear (a test's loopback) by prior knowledge, a connection per
		 * request, as libcurl 7.88 fails to reuse one
		 */
		if (pg_strncasecmp(opt.apns_url, "https:", 6) == 0)
			curl_easy_setopt(handle, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
		else
		{
			curl_easy_setopt(handle, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
			curl_easy_setopt(handle, CURLOPT_FORBID_REUSE, 1L);
		}
		http_post(handle, url, headers, body.data, body.len, &a);
		curl_slist_free_all(headers);
		if (a.rc == CURLE_OK)
			json_field(a.body.data, "reason", reason, sizeof(reason));

		if (a.rc == CURLE_OK && a.status == 200)
			result = TARGET_SENT;
		else if (a.rc != CURLE_OK)
		{
			result = curl_tls_failure(a.rc) ? TARGET_CONFIG : TARGET_RETRY;
			http_error(d, result == TARGET_CONFIG ? OUTCOME_CONFIG : OUTCOME_RETRY, "apns", &a);
		}
		else if (a.status == 403 && strcmp(reason, "ExpiredProviderToken") == 0 && try == 0)
		{
			free(provider_token);
			provider_token = NULL;
			http_answer_free(&a);
			continue;
		}
		else if (a.status == 410 || strcmp(reason, "BadDeviceToken") == 0 ||
				 strcmp(reason, "Unregistered") == 0)
		{
			http_error(d, OUTCOME_PERMANENT, "apns", &a);
			result = TARGET_INVALID;
		}
		else if (a.status == 429 || a.status >= 500)
		{
			http_error(d, OUTCOME_RETRY, "apns", &a);
			result = TARGET_RETRY;
		}
		else if (a.status == 403 || strcmp(reason, "BadTopic") == 0 ||
				 strcmp(reason, "TopicDisallowed") == 0 || strcmp(reason, "MissingTopic") == 0)
		{
			http_error(d, OUTCOME_CONFIG, "apns", &a);
			result = TARGET_CONFIG;
		}
		else
		{
			http_error(d, OUTCOME_PERMANENT, "apns", &a);
			result = TARGET_PERMANENT;
		}
		http_answer_free(&a);
		break;
	}
	free(url);
	termPQExpBuffer(&body);
	return result;
}
