/*-------------------------------------------------------------------------
 *
 * fcm.c
 *	  Firebase Cloud Messaging, HTTP v1 API: the service account (the JSON
 *	  key file of --fcm-credentials) signs a JWT (RS256) that its token_uri
 *	  exchanges for an access token, kept until a minute before it expires;
 *	  each device gets {"message": {"token", "notification": {"title",
 *	  "body"}, "data": {"notification_id", "url"}}} at
 *	  --fcm-url/v1/projects/PROJECT/messages:send.
 *
 * 200 is delivered; 404 (UNREGISTERED) says the token is gone; 401 makes a
 * new access token, once; 429 and 5xx are retried; an access token refused
 * or a service account without the right is a configuration error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/logging.h"
#include "mailer.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define JWT_LIFETIME_S 3600
#define TOKEN_MARGIN_S 60
/* an access token is fetched anew at least this often, whatever it says */
#define ACCESS_TOKEN_MAX_S 86400

static EVP_PKEY *key;
static char client_email[256];
static char key_id[128];
static char token_uri[512];
static char send_url[1024];
static char *access_token;
static time_t access_expires;
static CURL *handle;

bool
fcm_init(void)
{
	char	   *json = read_file(opt.fcm_credentials, "FCM credentials file");
	char		project[256];
	char	   *pem;
	size_t		pemsize = strlen(json) + 1;
	size_t		base = strlen(opt.fcm_url);

	pem = pg_malloc(pemsize);
	if (json_field(json, "client_email", client_email, sizeof(client_email)) == NULL ||
		json_field(json, "token_uri", token_uri, sizeof(token_uri)) == NULL ||
		json_field(json, "project_id", project, sizeof(project)) == NULL ||
		json_field(json, "private_key", pem, pemsize) == NULL)
	{
		pg_log_error("--fcm-credentials \"%s\" is not a service account key file", opt.fcm_credentials);
		pg_log_error_detail("A service account's JSON key has client_email, private_key, project_id and token_uri.");
		return false;
	}
	if (json_field(json, "private_key_id", key_id, sizeof(key_id)) == NULL)
		key_id[0] = '\0';
	key = load_private_key(pem, "--fcm-credentials");
	free(pem);
	free(json);
	if (key == NULL)
		return false;
	if (!key_is_rsa(key))
	{
		pg_log_error("--fcm-credentials \"%s\" does not hold an RSA private key", opt.fcm_credentials);
		return false;
	}
	for (const char *p = project; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_' && *p != '.' && *p != ':')
		{
			pg_log_error("--fcm-credentials \"%s\": invalid project_id", opt.fcm_credentials);
			return false;
		}
	while (base > 0 && opt.fcm_url[base - 1] == '/')
		base--;
	snprintf(send_url, sizeof(send_url), "%.*s/v1/projects/%s/messages:send",
			 (int) base, opt.fcm_url, project);
	return true;
}

/*
 * The access token of a token endpoint's answer, and when it expires, from
 * its fields access_token and expires_in (seconds after now, a day at
 * most); false if it lacks either, or has one that cannot be used.
 */
bool
fcm_token_answer(const char *json, time_t now, char *token, size_t tokensize, time_t *expires)
{
	char		expires_in[32];
	char	   *end;
	long		seconds;

	if (json_field(json, "access_token", token, tokensize) == NULL ||
		json_field(json, "expires_in", expires_in, sizeof(expires_in)) == NULL)
		return false;
	/* it goes into an Authorization header as it is: a b64token (RFC 6750) */
	if (token[0] == '\0' ||
		strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") !=
		strlen(token))
		return false;
	errno = 0;
	seconds = strtol(expires_in, &end, 10);
	if (errno != 0 || end == expires_in || *end != '\0' || seconds < 1)
		return false;
	*expires = now + Min(seconds, ACCESS_TOKEN_MAX_S);
	return true;
}

/*
 * The access token, from the cache or exchanged anew; NULL with d set when
 * the exchange failed (a refusal is a configuration error).
 */
static const char *
fcm_access_token(Delivery *d)
{
	time_t		now = time(NULL);
	PQExpBufferData claims;
	PQExpBufferData header;
	PQExpBufferData form;
	char	   *jwt;
	struct curl_slist *headers = NULL;
	HttpAnswer	a;
	char		token[2048];

	if (access_token != NULL && access_expires - TOKEN_MARGIN_S > now)
		return access_token;
	free(access_token);
	access_token = NULL;

	initPQExpBuffer(&header);
	appendPQExpBufferStr(&header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
	if (key_id[0])
	{
		appendPQExpBufferStr(&header, ",\"kid\":");
		append_json_string(&header, key_id);
	}
	appendPQExpBufferChar(&header, '}');
	initPQExpBuffer(&claims);
	appendPQExpBufferStr(&claims, "{\"iss\":");
	append_json_string(&claims, client_email);
	appendPQExpBufferStr(&claims, ",\"scope\":\"" FCM_SCOPE "\",\"aud\":");
	append_json_string(&claims, token_uri);
	appendPQExpBuffer(&claims, ",\"iat\":%lld,\"exp\":%lld}", (long long) now,
					  (long long) now + JWT_LIFETIME_S);
	jwt = make_jwt(key, header.data, claims.data);
	termPQExpBuffer(&header);
	termPQExpBuffer(&claims);
	if (jwt == NULL)
	{
		set_outcome(d, OUTCOME_CONFIG, "fcm: could not sign the service account's JWT");
		return NULL;
	}

	initPQExpBuffer(&form);
	appendPQExpBuffer(&form, "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s",
					  jwt);
	free(jwt);
	headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
	handle = http_handle(handle);
	http_post(handle, token_uri, headers, form.data, form.len, &a);
	termPQExpBuffer(&form);
	curl_slist_free_all(headers);

	if (a.rc == CURLE_OK && a.status == 200 &&
		fcm_token_answer(a.body.data, now, token, sizeof(token), &access_expires))
	{
		access_token = pg_strdup(token);
		metrics_token_refresh("fcm");
		http_answer_free(&a);
		return access_token;
	}
	if (a.rc != CURLE_OK)
		http_error(d, curl_tls_failure(a.rc) ? OUTCOME_CONFIG : OUTCOME_RETRY, "fcm token", &a);
	else if (a.status == 429 || a.status >= 500)
		http_error(d, OUTCOME_RETRY, "fcm token", &a);
	else
		/* the service account refused: its key, or the clock */
		http_error(d, OUTCOME_CONFIG, "fcm token", &a);
	http_answer_free(&a);
	return NULL;
}

static TargetOutcome
outcome_target(Delivery *d)
{
	switch (d->outcome)
	{
		case OUTCOME_CONFIG:
			return TARGET_CONFIG;
		case OUTCOME_RETRY:
			return TARGET_RETRY;
		default:
			return TARGET_PERMANENT;
	}
}

TargetOutcome
fcm_send(const Message *m, const PushTarget *t, Delivery *d)
{
	PQExpBufferData body;
	TargetOutcome result = TARGET_RETRY;

	initPQExpBuffer(&body);
	appendPQExpBufferStr(&body, "{\"message\":{\"token\":");
	append_json_string(&body, t->token);
	appendPQExpBufferStr(&body, ",\"notification\":{\"title\":");
	append_json_string(&body, m->subject);
	appendPQExpBufferStr(&body, ",\"body\":");
	append_json_string(&body, m->body);
	appendPQExpBuffer(&body, "},\"data\":{\"notification_id\":\"%lld\"", m->id);
	if (m->url != NULL)
	{
		appendPQExpBufferStr(&body, ",\"url\":");
		append_json_string(&body, m->url);
	}
	appendPQExpBufferStr(&body, "}}}");

	/* a second try only after a 401: the access token may have been revoked */
	for (int try = 0; try < 2; try++)
	{
		const char *token = fcm_access_token(d);
		struct curl_slist *headers = NULL;
		char	   *auth;
		HttpAnswer	a;

		if (token == NULL)
		{
			result = outcome_target(d);
			break;
		}
		auth = psprintf("Authorization: Bearer %s", token);
		headers = curl_slist_append(headers, auth);
		headers = curl_slist_append(headers, "Content-Type: application/json; charset=UTF-8");
		handle = http_handle(handle);
		http_post(handle, send_url, headers, body.data, body.len, &a);
		curl_slist_free_all(headers);
		free(auth);

		if (a.rc == CURLE_OK && a.status == 200)
			result = TARGET_SENT;
		else if (a.rc != CURLE_OK)
		{
			http_error(d, curl_tls_failure(a.rc) ? OUTCOME_CONFIG : OUTCOME_RETRY, "fcm", &a);
			result = outcome_target(d);
		}
		else if (a.status == 401 && try == 0)
		{
			free(access_token);
			access_token = NULL;
			http_answer_free(&a);
			continue;
		}
		else if (a.status == 404)
		{
			http_error(d, OUTCOME_PERMANENT, "fcm", &a);
			result = TARGET_INVALID;
		}
		else if (a.status == 429 || a.status >= 500)
		{
			http_error(d, OUTCOME_RETRY, "fcm", &a);
			result = TARGET_RETRY;
		}
		else if (a.status == 401 ||
				 (a.status == 403 && strstr(a.body.data, "SENDER_ID_MISMATCH") == NULL))
		{
			http_error(d, OUTCOME_CONFIG, "fcm", &a);
			result = TARGET_CONFIG;
		}
		else
		{
			http_error(d, OUTCOME_PERMANENT, "fcm", &a);
			result = TARGET_PERMANENT;
		}
		http_answer_free(&a);
		break;
	}
	termPQExpBuffer(&body);
	return result;
}
