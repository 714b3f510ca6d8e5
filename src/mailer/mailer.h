/*-------------------------------------------------------------------------
 *
 * mailer.h
 *	  What the files of bis-mailer share: its options, the channels and
 *	  their transports, a claimed message, the outcome of a delivery.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_MAILER_H
#define BIS_MAILER_H

#include <curl/curl.h>

#include "libpq-fe.h"
#include "pqexpbuffer.h"

#define PROGNAME "bis-mailer"

/* network timeouts of one request */
#define CONNECT_TIMEOUT_S 10
#define REQUEST_TIMEOUT_S 60
/* how much of an answer goes into last_error */
#define ANSWER_IN_ERROR 200

typedef enum Channel
{
	CHANNEL_EMAIL,
	CHANNEL_SMS,
	CHANNEL_PUSH,
	CHANNEL_WEBPUSH,
	NUM_CHANNELS
} Channel;

extern const char *const channel_names[NUM_CHANNELS];

/*
 * What became of one delivery.  A configuration error (the SMTP server wants
 * TLS, a certificate does not verify, a key is refused) is this mailer's
 * fault, not the message's: the row goes back to the queue without counting
 * as an attempt, and the channel pauses.
 */
typedef enum Outcome
{
	OUTCOME_SENT,
	OUTCOME_RETRY,				/* failed; try again later */
	OUTCOME_PERMANENT,			/* failed for good */
	OUTCOME_CONFIG,				/* this mailer is misconfigured */
	NUM_OUTCOMES
} Outcome;

extern const char *const outcome_names[NUM_OUTCOMES];

typedef struct Delivery
{
	Outcome		outcome;
	char		error[1024];	/* stored as last_error */
	size_t		summary_len;	/* how much of error may go to the log */
} Delivery;

/* A device or browser a push or webpush notification goes to */
typedef struct PushTarget
{
	const char *contact_id;
	const char *platform;		/* fcm, apns or webpush */
	const char *token;			/* device token, or web push endpoint */
	const char *p256dh;			/* web push: the browser's public key */
	const char *auth;			/* web push: the authentication secret */
	bool		invalid;		/* the provider says it is gone */
} PushTarget;

/* One claimed notification; the strings point into the claim's result */
typedef struct Message
{
	long long	id;
	Channel		channel;
	const char *attempt;
	const char *address;		/* NULL for push and webpush */
	const char *subject;		/* "" when NULL */
	const char *body;			/* "" when NULL */
	const char *body_html;		/* NULL when none */
	const char *url;			/* the item's page, or NULL */
	const char *list_unsubscribe;	/* the header's value, or NULL */
	const char *webhook_json;	/* the webhook's body, built by the server */
	PushTarget *targets;
	int			ntargets;
} Message;

typedef enum SmtpTls
{
	SMTP_TLS_DEFAULT,			/* require with credentials, else try */
	SMTP_TLS_REQUIRE,
	SMTP_TLS_TRY,
	SMTP_TLS_OFF
} SmtpTls;

typedef enum LogFormat
{
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON
} LogFormat;

typedef enum LogLevel
{
	LOG_DEBUG,
	LOG_INFO,
	LOG_WARNING,
	LOG_ERROR
} LogLevel;

typedef struct Options
{
	char	   *dbname;
	char	   *worker;
	int			batch;
	int			lease;
	int			poll;
	bool		once;
	LogFormat	log_format;
	LogLevel	log_level;
	char	   *metrics;		/* HOST:PORT, or NULL */
	char	   *cacert;
	/* email */
	char	   *smtp;
	char	   *smtp_user;
	char	   *smtp_password;	/* from BIS_SMTP_PASSWORD or the file */
	char	   *smtp_password_file;
	SmtpTls		smtp_tls;
	char	   *from;			/* --from as given */
	char	   *from_name;		/* NULL if none */
	char	   *from_address;
	const char *from_domain;	/* for Message-IDs */
	/* webhook */
	char	   *webhook;
	bool		webhook_channels[NUM_CHANNELS];
	/* web push */
	char	   *vapid_key;
	char	   *vapid_subject;
	/* FCM */
	char	   *fcm_credentials;
	char	   *fcm_url;
	/* APNs */
	char	   *apns_key;
	char	   *apns_key_id;
	char	   *apns_team_id;
	char	   *apns_topic;
	char	   *apns_url;
	/* derived: the channels this mailer has a transport for */
	bool		serves[NUM_CHANNELS];
} Options;

extern Options opt;

/* options.c */
typedef enum ConfigLine
{
	CONFIG_LINE_EMPTY,			/* blank, or only a comment */
	CONFIG_LINE_SETTING,		/* a name and a value, which may be empty */
	CONFIG_LINE_NO_NAME,
	CONFIG_LINE_UNTERMINATED,	/* a quoted value without its closing quote */
	CONFIG_LINE_UNQUOTED_SPACE	/* more after an unquoted value */
} ConfigLine;

extern void parse_options(int argc, char **argv);
extern ConfigLine parse_config_line(char *line, char **name, PQExpBuffer value);

/* queue.c */
typedef struct IdList
{
	long long  *ids;
	int			len;
	int			cap;
} IdList;

extern PGconn *conn;
extern void idlist_add(IdList *list, long long id);
extern bool db_connect(char *errbuf, size_t errsize);
extern PGresult *queue_claim(const bool *channels);
extern PGresult *queue_push_targets(Message *msgs, int n, PushTarget **targets_out);
extern void queue_ack_later(long long id);
extern void queue_release_later(long long id);
extern int	queue_owed(void);
extern bool flush_acks(void);
extern bool flush_releases(void);
extern bool record_failure(long long id, const Delivery *d, char *status, size_t statussize);
extern bool remove_push_target(const PushTarget *t);

/* log.c */
extern void mailer_log(LogLevel level, const char *fmt,...) pg_attribute_printf(2, 3);
extern const char *one_line(const char *msg);

#define log_debug(...) mailer_log(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) mailer_log(LOG_INFO, __VA_ARGS__)
#define log_warning(...) mailer_log(LOG_WARNING, __VA_ARGS__)
#define log_error(...) mailer_log(LOG_ERROR, __VA_ARGS__)

/* util.c */
extern long long now_ms(void);
extern void append_json_string(PQExpBuffer buf, const char *s);
extern void append_base64url(PQExpBuffer buf, const unsigned char *data, size_t len);
extern int	decode_base64url(const char *s, unsigned char *out, int outsize);
extern void append_untrusted(char *dst, size_t dstsize, const char *src, size_t srclen);
extern void set_outcome(Delivery *d, Outcome outcome, const char *fmt,...) pg_attribute_printf(3, 4);
extern char *read_file(const char *path, const char *what);

/* http.c: what every libcurl request of the mailer shares */
typedef struct HttpAnswer
{
	long		status;			/* 0 when no answer came */
	CURLcode	rc;
	char		errbuf[CURL_ERROR_SIZE];
	PQExpBufferData body;		/* the first bytes of the answer */
} HttpAnswer;

extern void http_init(void);
extern void http_cleanup(void);
extern CURL *http_handle(CURL *old);
extern void curl_setup(CURL *c, const char *url, char *errbuf);
extern bool curl_tls_failure(CURLcode rc);
extern bool http_post(CURL *c, const char *url, struct curl_slist *headers,
					  const char *body, size_t len, HttpAnswer *answer);
extern void http_answer_free(HttpAnswer *answer);
extern void http_error(Delivery *d, Outcome outcome, const char *who, const HttpAnswer *a);
extern const char *json_field(const char *json, const char *name, char *out, size_t outsize);

/* header.c: email headers no field can break */
extern bool valid_email(const char *s);
extern char *parse_from(const char *from);
extern void append_header_text(PQExpBuffer buf, const char *text);
extern bool append_list_unsubscribe(PQExpBuffer buf, const char *value);
extern char *crlf_lines(const char *text);

/* email.c, webhook.c, push.c: one delivery each */
extern bool email_init(void);
extern void deliver_email(const Message *m, Delivery *d);
extern void deliver_webhook(const Message *m, Delivery *d);
extern bool push_init(void);
extern void deliver_push(Message *m, Delivery *d);

/* crypto.c: keys, signatures and JWTs */
typedef struct evp_pkey_st EVP_PKEY;
extern EVP_PKEY *load_private_key(const char *pem, const char *what);
extern bool key_is_p256(EVP_PKEY *key);
extern bool key_is_rsa(EVP_PKEY *key);
extern char *make_jwt(EVP_PKEY *key, const char *header_json, const char *claims_json);
extern bool p256_public_key(EVP_PKEY *key, unsigned char *out65);
extern bool webpush_encrypt(const unsigned char *ua_public, const unsigned char *auth_secret,
							const char *plaintext, size_t len, PQExpBuffer out);

/* webpush.c, fcm.c, apns.c: one target each */
typedef enum TargetOutcome
{
	TARGET_SENT,
	TARGET_RETRY,
	TARGET_PERMANENT,
	TARGET_INVALID,				/* the token or subscription is gone */
	TARGET_CONFIG
} TargetOutcome;

extern bool webpush_init(void);
extern char *endpoint_origin(const char *endpoint);
extern TargetOutcome webpush_send(const Message *m, const PushTarget *t, Delivery *d);
extern bool fcm_init(void);
extern bool fcm_token_answer(const char *json, time_t now, char *token, size_t tokensize,
							 time_t *expires);
extern TargetOutcome fcm_send(const Message *m, const PushTarget *t, Delivery *d);
extern bool apns_init(void);
extern TargetOutcome apns_send(const Message *m, const PushTarget *t, Delivery *d);

/* metrics.c */
extern bool metrics_start(const char *listen);
extern void metrics_answer(int fd);
extern void metrics_delivery(Channel channel, Outcome outcome, double seconds);
extern void metrics_claim(int rows);
extern void metrics_token_refresh(const char *provider);
extern void metrics_target_removed(const char *platform);

#endif							/* BIS_MAILER_H */
