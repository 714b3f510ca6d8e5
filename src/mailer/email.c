/*-------------------------------------------------------------------------
 *
 * email.c
 *	  Email over SMTP with libcurl: TLS, login, and a MIME message whose
 *	  headers no field can break.
 *
 * TLS: smtps:// is TLS from the start; smtp:// upgrades with STARTTLS,
 * required when the mailer logs in (--smtp-tls require), used when offered
 * otherwise (try), or not at all (off, refused with a login).  Certificates
 * and host names are verified, against --cacert or the system's store.
 *
 * The message is multipart/alternative: a UTF-8 plain-text part and, when the
 * template has one, an HTML part, both quoted-printable.  Every header is
 * made safe by header.c.  Message-ID <bis.ID@domain> is the same for every
 * attempt at a notification, so that a receiving system can spot a second
 * delivery.
 *
 * A refusal is the message's when the server refuses this recipient or this
 * message (5xx: permanent; 4xx: retried), but this mailer's when the server
 * wants TLS or a login it does not give (530, 534, 535, 538) or when TLS
 * fails: a configuration error, that leaves the row pending.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/logging.h"
#include "mailer.h"

static CURL *smtp;
static char *from_header;		/* "From: ...", made once from --from */

/* a header line for libcurl's list: Subject, From and List-Unsubscribe are made safe first */
static struct curl_slist *
add_header(struct curl_slist *list, const char *header)
{
	struct curl_slist *l = curl_slist_append(list, header);

	if (l == NULL)
	{
		pg_log_error("out of memory");
		exit(1);
	}
	return l;
}

/* --from, and the SMTP handle that every message reuses */
bool
email_init(void)
{
	from_header = parse_from(opt.from);
	if (from_header == NULL)
		return false;
	smtp = curl_easy_init();
	if (smtp == NULL)
	{
		pg_log_error("could not initialize libcurl");
		return false;
	}
	return true;
}

/* whether an SMTP failure is this mailer's configuration rather than the message */
static bool
smtp_config_error(CURLcode rc, long code)
{
	/* 530: authentication (or STARTTLS) required; 534, 538: a stronger
	 * mechanism or encryption needed; 535: credentials refused */
	return curl_tls_failure(rc) || rc == CURLE_USE_SSL_FAILED || rc == CURLE_LOGIN_DENIED ||
		rc == CURLE_AUTH_ERROR ||
		code == 530 || code == 534 || code == 535 || code == 538;
}

void
deliver_email(const Message *m, Delivery *d)
{
	char		errbuf[CURL_ERROR_SIZE];
	PQExpBufferData buf;
	struct curl_slist *headers = NULL;
	struct curl_slist *rcpt = NULL;
	curl_mime  *mime;
	curl_mimepart *part;
	char	   *text;
	char		date[64];
	time_t		t = time(NULL);
	struct tm	tm;
	CURLcode	rc;
	long		code = 0;

	if (m->address == NULL)
	{
		set_outcome(d, OUTCOME_PERMANENT, "no email address: the contact has none");
		return;
	}
	if (!valid_email(m->address))
	{
		set_outcome(d, OUTCOME_PERMANENT, "invalid email address: this mailer sends to ASCII addresses without spaces, quotes or brackets");
		return;
	}

	curl_easy_reset(smtp);
	errbuf[0] = '\0';
	curl_setup(smtp, opt.smtp, errbuf);
	switch (opt.smtp_tls)
	{
		case SMTP_TLS_REQUIRE:
			curl_easy_setopt(smtp, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
			break;
		case SMTP_TLS_TRY:
			curl_easy_setopt(smtp, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY);
			break;
		default:
			curl_easy_setopt(smtp, CURLOPT_USE_SSL, (long) CURLUSESSL_NONE);
			break;
	}
	if (opt.smtp_user != NULL)
	{
		curl_easy_setopt(smtp, CURLOPT_USERNAME, opt.smtp_user);
		curl_easy_setopt(smtp, CURLOPT_PASSWORD, opt.smtp_password);
	}

	initPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "<%s>", opt.from_address);
	curl_easy_setopt(smtp, CURLOPT_MAIL_FROM, buf.data);
	resetPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "<%s>", m->address);
	rcpt = add_header(rcpt, buf.data);
	curl_easy_setopt(smtp, CURLOPT_MAIL_RCPT, rcpt);

	/* the headers; libcurl copies each string */
	headers = add_header(headers, from_header);
	resetPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "To: %s", m->address);
	headers = add_header(headers, buf.data);
	resetPQExpBuffer(&buf);
	appendPQExpBufferStr(&buf, "Subject: ");
	append_header_text(&buf, m->subject);
	headers = add_header(headers, buf.data);
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S %z", &tm);
	headers = add_header(headers, date);
	resetPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "Message-ID: <bis.%lld@%s>", m->id, opt.from_domain);
	headers = add_header(headers, buf.data);
	if (m->list_unsubscribe != NULL)
	{
		resetPQExpBuffer(&buf);
		appendPQExpBufferStr(&buf, "List-Unsubscribe: ");
		if (append_list_unsubscribe(&buf, m->list_unsubscribe))
		{
			headers = add_header(headers, buf.data);
			/* one-click (RFC 8058) needs an https URI to POST to */
			if (strstr(m->list_unsubscribe, "<https://") != NULL)
				headers = add_header(headers, "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
		}
		else
			log_warning("notification %lld: its List-Unsubscribe value is not a list of <URI>s: sent without it",
						m->id);
	}
	headers = add_header(headers, "MIME-Version: 1.0");

	/*
	 * The body: libcurl takes the top-level Content-Type from the headers and
	 * adds the boundary; quoted-printable needs CRLF line breaks to keep them
	 */
	headers = add_header(headers, "Content-Type: multipart/alternative");
	curl_easy_setopt(smtp, CURLOPT_HTTPHEADER, headers);
	mime = curl_mime_init(smtp);
	part = curl_mime_addpart(mime);
	text = crlf_lines(m->body);
	curl_mime_data(part, text, CURL_ZERO_TERMINATED);
	free(text);
	curl_mime_type(part, "text/plain; charset=UTF-8");
	curl_mime_encoder(part, "quoted-printable");
	if (m->body_html != NULL)
	{
		part = curl_mime_addpart(mime);
		text = crlf_lines(m->body_html);
		curl_mime_data(part, text, CURL_ZERO_TERMINATED);
		free(text);
		curl_mime_type(part, "text/html; charset=UTF-8");
		curl_mime_encoder(part, "quoted-printable");
	}
	curl_easy_setopt(smtp, CURLOPT_MIMEPOST, mime);

	rc = curl_easy_perform(smtp);
	curl_easy_getinfo(smtp, CURLINFO_RESPONSE_CODE, &code);

	if (rc == CURLE_OK)
		d->outcome = OUTCOME_SENT;
	else
	{
		const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
		Outcome		outcome;

		/*
		 * A 5xx reply refuses this message for good (an unknown mailbox, a
		 * message too large); a 4xx one or no answer is worth another try.
		 */
		if (smtp_config_error(rc, code))
			outcome = OUTCOME_CONFIG;
		else if (code >= 500 && code <= 599)
			outcome = OUTCOME_PERMANENT;
		else
			outcome = OUTCOME_RETRY;
		if (code > 0)
			set_outcome(d, outcome, "SMTP %ld: %s", code, why);
		else
			set_outcome(d, outcome, "SMTP: %s", why);
	}

	/* the easy handle keeps the connection for the next message */
	curl_easy_setopt(smtp, CURLOPT_MIMEPOST, NULL);
	curl_easy_setopt(smtp, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(smtp, CURLOPT_MAIL_RCPT, NULL);
	curl_mime_free(mime);
	curl_slist_free_all(headers);
	curl_slist_free_all(rcpt);
	termPQExpBuffer(&buf);
}
