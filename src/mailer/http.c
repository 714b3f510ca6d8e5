/*-------------------------------------------------------------------------
 *
 * http.c
 *	  What every libcurl request of bis-mailer shares: timeouts, TLS
 *	  verification against --cacert or the system's store, POSTs whose answer
 *	  is kept, and reading a field of a JSON answer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "common/logging.h"
#include "mailer.h"
#include "mb/pg_wchar.h"

/* how much of an answer is kept */
#define ANSWER_KEEP 8192

/* connections and TLS sessions, for the handle of the next request */
static CURLSH *share;

void
http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
		(share = curl_share_init()) == NULL ||
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
		curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
	{
		pg_log_error("could not initialize libcurl");
		exit(1);
	}
}

void
http_cleanup(void)
{
	curl_global_cleanup();
}

/*
 * A new handle for an HTTP request, in place of old (NULL at first): a
 * handle serves one request.  libcurl before 8.1.0 keeps a pointer to the
 * last header of a handle's previous answer, freed since, and follows it
 * when the next answer starts with a folded header line (curl issue 11101):
 * any push service could make the mailer use freed memory.  Connections and
 * TLS sessions stay in the share, as they stayed with a handle.
 */
CURL *
http_handle(CURL *old)
{
	CURL	   *c;

	curl_easy_cleanup(old);
	c = curl_easy_init();
	if (c == NULL || curl_easy_setopt(c, CURLOPT_SHARE, share) != CURLE_OK)
	{
		pg_log_error("could not initialize libcurl");
		exit(1);
	}
	return c;
}

/* the options of every request: timeouts, TLS verified, no signals */
void
curl_setup(CURL *c, const char *url, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long) CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long) REQUEST_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (opt.cacert != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, opt.cacert);
	/* no redirects: an answer is the provider's, never another server's */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
}

/* whether libcurl failed at TLS: a certificate, a handshake, a CA file */
bool
curl_tls_failure(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
		case CURLE_SSL_ENGINE_INITFAILED:
		case CURLE_SSL_ENGINE_NOTFOUND:
		case CURLE_SSL_ENGINE_SETFAILED:
			return true;
		default:
			return false;
	}
}

static size_t
collect_answer(char *data, size_t size, size_t nmemb, void *userdata)
{
	PQExpBuffer buf = userdata;
	size_t		len = size * nmemb;

	if (buf->len < ANSWER_KEEP)
		appendBinaryPQExpBuffer(buf, data, Min(len, ANSWER_KEEP - buf->len));
	return len;
}

/*
 * POSTs body to url with the headers given (and the handle's other options);
 * true if an answer came, whatever its status.
 */
bool
http_post(CURL *c, const char *url, struct curl_slist *headers, const char *body,
		  size_t len, HttpAnswer *a)
{
	a->status = 0;
	a->errbuf[0] = '\0';
	initPQExpBuffer(&a->body);
	curl_setup(c, url, a->errbuf);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_USERAGENT, PROGNAME "/" BIS_VERSION);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_answer);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &a->body);
	a->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	/* the list belongs to the caller, who frees it */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	return a->rc == CURLE_OK;
}

void
http_answer_free(HttpAnswer *a)
{
	termPQExpBuffer(&a->body);
}

/*
 * The error of a failed request: "WHO: libcurl's error" when no answer came,
 * else "WHO HTTP STATUS: the start of the answer"; the answer may echo the
 * message, so only "WHO HTTP STATUS" goes to the log.
 */
void
http_error(Delivery *d, Outcome outcome, const char *who, const HttpAnswer *a)
{
	if (a->rc != CURLE_OK)
	{
		set_outcome(d, outcome, "%s: %s", who, a->errbuf[0] ? a->errbuf : curl_easy_strerror(a->rc));
		return;
	}
	set_outcome(d, outcome, "%s HTTP %ld", who, a->status);
	if (a->body.len > 0)
	{
		strlcat(d->error, ": ", sizeof(d->error));
		append_untrusted(d->error, sizeof(d->error), a->body.data, a->body.len);
	}
}

/* the parse of one top-level field of a JSON object */
typedef struct FieldSearch
{
	const char *name;
	int			depth;
	bool		in_field;		/* the field's value comes next */
	char	   *out;
	size_t		outsize;
	bool		found;
} FieldSearch;

static void
fs_object_start(void *state)
{
	((FieldSearch *) state)->depth++;
}

static void
fs_object_end(void *state)
{
	((FieldSearch *) state)->depth--;
}

static void
fs_field_start(void *state, char *fname, bool isnull)
{
	FieldSearch *fs = state;

	fs->in_field = fs->depth == 1 && strcmp(fname, fs->name) == 0;
	free(fname);
}

static void
fs_array_start(void *state)
{
	FieldSearch *fs = state;

	fs->in_field = false;
	fs->depth++;
}

static void
fs_scalar(void *state, char *token, JsonTokenType tokentype)
{
	FieldSearch *fs = state;

	if (fs->in_field && !fs->found)
	{
		strlcpy(fs->out, token, fs->outsize);
		fs->found = true;
	}
	fs->in_field = false;
	free(token);
}

/* parses json with sem's callbacks; a frontend's lexer is freed by hand */
static JsonParseErrorType
parse_json(const char *json, JsonSemAction *sem)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen(pg_strdup(json), strlen(json),
													   PG_UTF8, true);
	JsonParseErrorType err = pg_parse_json(lex, sem);

	free(lex->input);
	free(lex->strval ? lex->strval->data : NULL);
	free(lex->strval);
	free(lex);
	return err;
}

/*
 * The value of the top-level field name of a JSON object, as text, in out;
 * NULL if the text is not JSON or has no such scalar field.
 */
const char *
json_field(const char *json, const char *name, char *out, size_t outsize)
{
	FieldSearch fs = {name, 0, false, out, outsize, false};
	JsonSemAction sem = {0};

	/*
	 * JSON at all, first: PostgreSQL 15's parser leaks a field's name and a
	 * scalar handed to callbacks when what follows them does not parse, and
	 * without callbacks it makes neither
	 */
	if (parse_json(json, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	sem.semstate = &fs;
	sem.object_start = fs_object_start;
	sem.object_end = fs_object_end;
	sem.array_start = fs_array_start;
	sem.array_end = fs_object_end;
	sem.object_field_start = fs_field_start;
	sem.scalar = fs_scalar;
	return parse_json(json, &sem) == JSON_SUCCESS && fs.found ? out : NULL;
}
