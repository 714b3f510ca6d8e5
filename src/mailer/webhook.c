/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  sms (and any channel named in --webhook-channels) POSTed as JSON to a
 *	  webhook, with the notification id as Idempotency-Key.
 *
 * The JSON ({"id", "channel", "address", "subject", "body", "attempt",
 * "payload"}) is built by the database in the claim query.  2xx is
 * delivered; 4xx but 408 and 429 is permanent; 5xx, 408, 429 and no answer
 * are retried; a TLS failure is a configuration error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "mailer.h"

static CURL *webhook;

void
deliver_webhook(const Message *m, Delivery *d)
{
	struct curl_slist *headers = NULL;
	char		key[64];
	HttpAnswer	a;

	webhook = http_handle(webhook);
	snprintf(key, sizeof(key), "Idempotency-Key: %lld", m->id);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, key);
	/* no "Expect: 100-continue" wait for larger bodies */
	headers = curl_slist_append(headers, "Expect:");

	if (http_post(webhook, opt.webhook, headers, m->webhook_json, strlen(m->webhook_json), &a) &&
		a.status >= 200 && a.status <= 299)
		d->outcome = OUTCOME_SENT;
	else if (a.rc != CURLE_OK)
		http_error(d, curl_tls_failure(a.rc) ? OUTCOME_CONFIG : OUTCOME_RETRY, "webhook", &a);
	else
	{
		/*
		 * 4xx: the provider refuses this message; retrying will not help,
		 * except after 408 (timeout) and 429 (too many requests).  Anything
		 * else (5xx, a redirect) is retried.
		 */
		bool		permanent = a.status >= 400 && a.status <= 499 &&
			a.status != 408 && a.status != 429;

		http_error(d, permanent ? OUTCOME_PERMANENT : OUTCOME_RETRY, "webhook", &a);
	}
	curl_slist_free_all(headers);
	http_answer_free(&a);
}
