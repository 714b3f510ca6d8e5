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
 * made safe here: control characters never reach a header (no CR/LF
 * injection), text that is not printable ASCII becomes RFC 2047
 * encoded-words, and long headers are folded (RFC 5322, lines of at most 78
 * characters where there is a place to fold).  Message-ID <bis.ID@domain> is
 * the same for every attempt at a notification, so that a receiving system
 * can spot a second delivery.
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

#include "common/base64.h"
#include "common/logging.h"
#include "mailer.h"

/* longest header line, when there is a place to fold it (RFC 5322 2.1.1) */
#define HEADER_LINE_MAX 78
/* longest run of header text without a place to fold (998, less a margin) */
#define HEADER_WORD_MAX 900

static CURL *smtp;
static char *from_header;		/* "From: ...", made once from --from */

/*
 * Whether an email address is one this mailer can put in an envelope and a
 * header as it is: printable ASCII without spaces, brackets, quotes or
 * separators, a local part, one "@" and a domain.
 */
static bool
valid_email(const char *s)
{
	const char *at = strchr(s, '@');
	size_t		len = strlen(s);

	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL || len > 254)
		return false;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			return false;
	}
	return true;
}

static bool
printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/* the length of the last line of a header being written */
static size_t
line_length(PQExpBuffer buf)
{
	char	   *nl = strrchr(buf->data, '\n');

	return nl ? buf->len - (nl + 1 - buf->data) : buf->len;
}

/*
 * Appends text as RFC 2047 encoded-words (=?UTF-8?B?...?=), each of at most
 * 75 characters and on a line of its own after the first, never splitting a
 * UTF-8 character.  Control characters become spaces.
 */
static void
append_encoded_words(PQExpBuffer buf, const char *text)
{
	size_t		len = strlen(text);
	unsigned char *clean = pg_malloc(len + 1);
	size_t		start;

	for (size_t i = 0; i <= len; i++)
		clean[i] = ((unsigned char) text[i] < 0x20 && text[i] != '\0') || text[i] == 0x7f ?
			' ' : (unsigned char) text[i];
	/*
	 * 39 bytes are 52 base64 characters, 64 with "=?UTF-8?B?" and "?=": a
	 * line stays within 76 characters, "Subject: " included (RFC 2047 2)
	 */
	for (start = 0; start < len;)
	{
		size_t		end = Min(start + 39, len);
		char		enc[64];
		int			n;

		while (end < len && end > start + 1 && (clean[end] & 0xc0) == 0x80)
			end--;
		if (start > 0)
			appendPQExpBufferStr(buf, "\r\n ");
		n = pg_b64_encode((char *) clean + start, (int) (end - start), enc, sizeof(enc));
		appendPQExpBuffer(buf, "=?UTF-8?B?%.*s?=", n, enc);
		start = end;
	}
	free(clean);
}

/*
 * Appends unstructured header text (a subject): as it is, folded at spaces,
 * when it is printable ASCII without overlong words; else as encoded-words.
 */
static void
append_header_text(PQExpBuffer buf, const char *text)
{
	const char *p;
	bool		plain = printable_ascii(text);

	for (p = text; plain && *p; p += strcspn(p, " "), p += strspn(p, " "))
		if (strcspn(p, " ") > HEADER_WORD_MAX)
			plain = false;
	if (!plain)
	{
		append_encoded_words(buf, text);
		return;
	}
	for (p = text; *p;)
	{
		size_t		spaces = strspn(p, " ");
		size_t		word = strcspn(p + spaces, " ");

		/*
		 * Fold before a word that would make the line too long: the CRLF goes
		 * before the last space, so that unfolding gives the text back
		 */
		if (spaces > 0 && p != text && line_length(buf) + spaces + word > HEADER_LINE_MAX)
		{
			appendBinaryPQExpBuffer(buf, p, spaces - 1);
			appendPQExpBufferStr(buf, "\r\n");
			appendBinaryPQExpBuffer(buf, p + spaces - 1, word + 1);
		}
		else
			appendBinaryPQExpBuffer(buf, p, spaces + word);
		p += spaces + word;
	}
}

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

/*
 * The List-Unsubscribe value (RFC 2369) given by the database: "<URI>,
 * <URI>", printable ASCII, folded after the commas.  False, and nothing
 * appended, when it is not of that form: the email goes without it.
 */
static bool
append_list_unsubscribe(PQExpBuffer buf, const char *value)
{
	const char *p = value;

	if (!printable_ascii(value) || value[0] != '<')
		return false;
	while (*p)
	{
		const char *end = strchr(p, '>');
		size_t		len;

		if (*p != '<' || end == NULL || end - p > HEADER_WORD_MAX || memchr(p + 1, '<', end - p - 1))
			return false;
		len = end + 1 - p;
		if (p != value && line_length(buf) + len + 1 > HEADER_LINE_MAX)
			appendPQExpBufferStr(buf, "\r\n ");
		else if (p != value)
			appendPQExpBufferChar(buf, ' ');
		appendBinaryPQExpBuffer(buf, p, len);
		p = end + 1;
		while (*p == ' ')
			p++;
		if (*p == ',')
		{
			appendPQExpBufferChar(buf, ',');
			p++;
			while (*p == ' ')
				p++;
			if (*p == '\0')
				return false;
		}
		else if (*p != '\0')
			return false;
	}
	return true;
}

/* --from: "addr@domain" or "Name <addr@domain>", the name in UTF-8 */
bool
email_init(void)
{
	const char *from = opt.from;
	const char *lt = strrchr(from, '<');
	PQExpBufferData hdr;

	if (lt != NULL)
	{
		const char *gt = strchr(lt, '>');
		const char *name_end = lt;

		if (gt == NULL || gt[1] != '\0')
		{
			pg_log_error("invalid --from \"%s\": ADDRESS or \"Name <ADDRESS>\" is expected", from);
			return false;
		}
		opt.from_address = pnstrdup(lt + 1, gt - lt - 1);
		while (name_end > from && name_end[-1] == ' ')
			name_end--;
		if (name_end > from)
		{
			opt.from_name = pnstrdup(from, name_end - from);
			/* a quoted name loses its quotes: they are put back as needed */
			if (strlen(opt.from_name) >= 2 && opt.from_name[0] == '"' &&
				opt.from_name[strlen(opt.from_name) - 1] == '"')
				opt.from_name = pnstrdup(opt.from_name + 1, strlen(opt.from_name) - 2);
		}
	}
	else
		opt.from_address = pg_strdup(from);
	if (!valid_email(opt.from_address))
	{
		pg_log_error("invalid --from \"%s\": \"%s\" is not an email address", from, opt.from_address);
		return false;
	}
	if (opt.from_name != NULL)
		for (const char *p = opt.from_name; *p; p++)
			if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
			{
				pg_log_error("invalid --from \"%s\": the name must not have control characters, quotes or backslashes",
							 from);
				return false;
			}
	opt.from_domain = strchr(opt.from_address, '@') + 1;

	/* the From header, once: a display name that is not a plain atom is quoted or encoded */
	initPQExpBuffer(&hdr);
	appendPQExpBufferStr(&hdr, "From: ");
	if (opt.from_name == NULL)
		appendPQExpBufferStr(&hdr, opt.from_address);
	else
	{
		if (!printable_ascii(opt.from_name))
			append_encoded_words(&hdr, opt.from_name);
		else if (strpbrk(opt.from_name, "()<>[]:;@\\,.\"") != NULL)
			appendPQExpBuffer(&hdr, "\"%s\"", opt.from_name);
		else
			appendPQExpBufferStr(&hdr, opt.from_name);
		appendPQExpBuffer(&hdr, " <%s>", opt.from_address);
	}
	from_header = hdr.data;

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

/* a copy of text with CRLF line breaks, as mail wants them */
static char *
crlf_lines(const char *text)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	for (const char *p = text; *p; p++)
	{
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n' || *p == '\r')
			appendPQExpBufferStr(&buf, "\r\n");
		else
			appendPQExpBufferChar(&buf, *p);
	}
	return buf.data;
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
