/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The queue protocol, bis-mailer's side (README.md, "The mailer
 *	  protocol"): connect and LISTEN, claim the channels served, look up push
 *	  targets, acknowledge, record failures, release.
 *
 * Acknowledgements and releases that a lost connection kept from the
 * database are owed: they are sent again after reconnecting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "mailer.h"

PGconn	   *conn;

/* owed to the database: acks and releases */
static IdList unacked;
static IdList unreleased;

/* what the mailer needs: bis 0.6's claim and push addresses */
static const char *const check_sql =
"SELECT pg_catalog.to_regprocedure('bis.claim(text, integer, interval, text[])') IS NOT NULL,"
"       pg_catalog.to_regprocedure('bis.push_targets(bigint[], text)') IS NOT NULL";

/*
 * The claim: the rows of the channels served ($4), with the webhook's JSON
 * built here for those that go to it ($5).  In id order, as their push
 * targets are: a claim on Citus comes shard group by shard group.
 */
static const char *const claim_sql =
"SELECT m.id, m.channel, m.address, m.attempts, m.subject, m.body, m.body_html,"
"       m.payload OPERATOR(pg_catalog.#>>) '{item,url}', m.list_unsubscribe,"
"       CASE WHEN m.channel OPERATOR(pg_catalog.=) ANY ($5::text[]) THEN pg_catalog.json_build_object("
"           'id', m.id, 'channel', m.channel, 'address', m.address, 'subject', m.subject,"
"           'body', m.body, 'attempt', m.attempts, 'payload', m.payload)::text END"
"  FROM bis.claim($1::text, $2::integer, $3::interval, $4::text[]) m"
" ORDER BY m.id";

static const char *const targets_sql =
"SELECT t.notification_id, t.contact_id, t.platform, t.token, t.p256dh, t.auth"
"  FROM bis.push_targets($1::bigint[], $2::text) t";
static const char *const ack_sql = "SELECT bis.ack($1::bigint[], $2::text)";
static const char *const fail_sql = "SELECT bis.fail($1::bigint, $2::text, $3::boolean, $4::text)";
static const char *const release_sql = "SELECT bis.release($1::bigint[], $2::text)";
static const char *const remove_token_sql = "SELECT bis.remove_push_token($1::text, $2::text, $3::text)";
static const char *const remove_webpush_sql = "SELECT bis.remove_webpush_subscription($1::text, $2::text)";

void
idlist_add(IdList *list, long long id)
{
	if (list->len == list->cap)
	{
		list->cap = list->cap ? list->cap * 2 : 64;
		list->ids = pg_realloc(list->ids, sizeof(long long) * list->cap);
	}
	list->ids[list->len++] = id;
}

/* the list as an array literal, {1,2,3}: a parameter, not SQL */
static char *
idlist_literal(const IdList *list)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	appendPQExpBufferChar(&buf, '{');
	for (int i = 0; i < list->len; i++)
		appendPQExpBuffer(&buf, "%s%lld", i ? "," : "", list->ids[i]);
	appendPQExpBufferChar(&buf, '}');
	return buf.data;
}

/* an array literal of the channels marked */
static char *
channels_literal(const bool *channels)
{
	PQExpBufferData buf;
	bool		first = true;

	initPQExpBuffer(&buf);
	appendPQExpBufferChar(&buf, '{');
	for (int c = 0; c < NUM_CHANNELS; c++)
		if (channels[c])
		{
			appendPQExpBuffer(&buf, "%s%s", first ? "" : ",", channel_names[c]);
			first = false;
		}
	appendPQExpBufferChar(&buf, '}');
	return buf.data;
}

/* server notices and warnings, such as FATAL before a disconnection, go to the log */
static void
log_notice(void *arg, const char *message)
{
	log_warning("server: %s", one_line(message));
}

/* connects, checks that bis is there, LISTENs; false and a message on failure */
bool
db_connect(char *errbuf, size_t errsize)
{
	/* application_name: pg_stat_activity shows which mailer holds which lease */
	const char *keywords[] = {"dbname", "application_name", "client_encoding", NULL};
	const char *values[] = {opt.dbname, opt.worker, "UTF8", NULL};
	PGconn	   *c;
	PGresult   *res;
	bool		has_claim;
	bool		has_targets;

	c = PQconnectdbParams(keywords, values, 1);
	if (PQstatus(c) != CONNECTION_OK)
	{
		snprintf(errbuf, errsize, "%s", one_line(PQerrorMessage(c)));
		PQfinish(c);
		return false;
	}
	PQsetNoticeProcessor(c, log_notice, NULL);
	res = PQexec(c, check_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		snprintf(errbuf, errsize, "%s", one_line(PQerrorMessage(c)));
		PQclear(res);
		PQfinish(c);
		return false;
	}
	has_claim = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	has_targets = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	/* the push transports need the push addresses of bis 0.6 */
	if (!has_claim || (!has_targets && (opt.vapid_key || opt.fcm_credentials || opt.apns_key)))
	{
		snprintf(errbuf, errsize, "extension \"bis\" %s is not installed in database \"%s\"",
				 has_claim ? "with push addresses (bis.push_targets)" : "(with bis.claim)", PQdb(c));
		PQfinish(c);
		return false;
	}
	res = PQexec(c, "LISTEN bis_notifications");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		snprintf(errbuf, errsize, "%s", one_line(PQerrorMessage(c)));
		PQclear(res);
		PQfinish(c);
		return false;
	}
	PQclear(res);
	conn = c;
	return true;
}

/* runs a query that returns rows; NULL, and a log line, when it fails */
static PGresult *
db_query(const char *sql, int nparams, const char *const *values)
{
	PGresult   *res;

	res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		log_error("query failed: %s", one_line(PQerrorMessage(conn)));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* claims a batch of the channels marked; NULL if the query failed */
PGresult *
queue_claim(const bool *channels)
{
	char		batch[16];
	char		lease[32];
	static const bool none[NUM_CHANNELS] = {0};
	char	   *chans = channels_literal(channels);
	char	   *hook = channels_literal(opt.webhook != NULL ? opt.webhook_channels : none);
	const char *params[5];
	PGresult   *res;

	snprintf(batch, sizeof(batch), "%d", opt.batch);
	snprintf(lease, sizeof(lease), "%d seconds", opt.lease);
	params[0] = opt.worker;
	params[1] = batch;
	params[2] = lease;
	params[3] = chans;
	params[4] = hook;
	res = db_query(claim_sql, 5, params);
	free(chans);
	free(hook);
	return res;
}

/*
 * The devices and browsers of the push and webpush messages, attached to
 * each; NULL if the query failed.  The strings are the result's, the array
 * in *targets_out the caller's.
 */
PGresult *
queue_push_targets(Message *msgs, int n, PushTarget **targets_out)
{
	IdList		ids = {0};
	char	   *literal;
	const char *params[2];
	PGresult   *res;
	int			ntargets;
	PushTarget *targets;

	for (int i = 0; i < n; i++)
		if (msgs[i].channel == CHANNEL_PUSH || msgs[i].channel == CHANNEL_WEBPUSH)
			idlist_add(&ids, msgs[i].id);
	literal = idlist_literal(&ids);
	params[0] = literal;
	params[1] = opt.worker;
	res = db_query(targets_sql, 2, params);
	free(literal);
	free(ids.ids);
	if (res == NULL)
		return NULL;

	/* in notification id order, as the messages are */
	ntargets = PQntuples(res);
	targets = pg_malloc0(sizeof(PushTarget) * Max(ntargets, 1));
	for (int t = 0, i = 0; t < ntargets; t++)
	{
		long long	id = strtoll(PQgetvalue(res, t, 0), NULL, 10);
		PushTarget *pt = &targets[t];

		pt->contact_id = PQgetvalue(res, t, 1);
		pt->platform = PQgetvalue(res, t, 2);
		pt->token = PQgetvalue(res, t, 3);
		pt->p256dh = PQgetisnull(res, t, 4) ? NULL : PQgetvalue(res, t, 4);
		pt->auth = PQgetisnull(res, t, 5) ? NULL : PQgetvalue(res, t, 5);
		while (i < n && msgs[i].id < id)
			i++;
		if (i < n && msgs[i].id == id)
		{
			if (msgs[i].targets == NULL)
				msgs[i].targets = pt;
			msgs[i].ntargets++;
		}
	}
	*targets_out = targets;
	return res;
}

void
queue_ack_later(long long id)
{
	idlist_add(&unacked, id);
}

void
queue_release_later(long long id)
{
	idlist_add(&unreleased, id);
}

int
queue_owed(void)
{
	return unacked.len + unreleased.len;
}

/*
 * Acknowledges the delivered rows.  With a worker, bis.ack touches only the
 * rows this mailer still holds: one whose lease ran out and that another
 * mailer took is that mailer's now.
 */
bool
flush_acks(void)
{
	char	   *ids;
	const char *params[2];
	PGresult   *res;
	long		done;

	if (unacked.len == 0)
		return true;
	ids = idlist_literal(&unacked);
	params[0] = ids;
	params[1] = opt.worker;
	res = db_query(ack_sql, 2, params);
	free(ids);
	if (res == NULL)
		return false;
	done = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (done < unacked.len)
		log_warning("%ld of %d delivered notifications were acknowledged: this worker's lease on the others ran out",
					done, unacked.len);
	PQclear(res);
	unacked.len = 0;
	return true;
}

/* gives back the claimed rows not delivered: no attempt is counted */
bool
flush_releases(void)
{
	char	   *ids;
	const char *params[2];
	PGresult   *res;

	if (unreleased.len == 0)
		return true;
	ids = idlist_literal(&unreleased);
	params[0] = ids;
	params[1] = opt.worker;
	res = db_query(release_sql, 2, params);
	free(ids);
	if (res == NULL)
		return false;
	log_info("released %s of %d claimed notifications", PQgetvalue(res, 0, 0), unreleased.len);
	PQclear(res);
	unreleased.len = 0;
	return true;
}

/* records a failed delivery; the new status in status, or false on a query failure */
bool
record_failure(long long id, const Delivery *d, char *status, size_t statussize)
{
	char		idtext[32];
	const char *params[4];
	PGresult   *res;

	snprintf(idtext, sizeof(idtext), "%lld", id);
	params[0] = idtext;
	params[1] = d->error;
	params[2] = d->outcome == OUTCOME_RETRY ? "true" : "false";
	params[3] = opt.worker;
	res = db_query(fail_sql, 4, params);
	if (res == NULL)
		return false;
	strlcpy(status, PQgetvalue(res, 0, 0), statussize);
	PQclear(res);
	return true;
}

/* removes a token or subscription the provider says is gone */
bool
remove_push_target(const PushTarget *t)
{
	const char *params[3] = {t->contact_id, t->platform, t->token};
	bool		webpush = strcmp(t->platform, "webpush") == 0;
	PGresult   *res;

	if (webpush)
		params[1] = t->token;
	res = db_query(webpush ? remove_webpush_sql : remove_token_sql, webpush ? 2 : 3, params);
	if (res == NULL)
		return false;
	PQclear(res);
	metrics_target_removed(t->platform);
	return true;
}
