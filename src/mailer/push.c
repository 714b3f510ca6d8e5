/*-------------------------------------------------------------------------
 *
 * push.c
 *	  push and webpush notifications: one request per device or browser of
 *	  the contact (bis.push_targets), each through its provider.
 *
 * A notification is sent when at least one target took it: retrying it
 * would send it again to those that did.  Otherwise a configuration error
 * (a key the provider refuses) wins, then a failure worth retrying, then a
 * permanent one.  A token or subscription the provider says is gone is
 * marked invalid, and the caller removes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "mailer.h"

static bool fcm_ready;
static bool apns_ready;
static bool webpush_ready;

bool
push_init(void)
{
	if (opt.serves[CHANNEL_WEBPUSH] && opt.vapid_key != NULL && !(webpush_ready = webpush_init()))
		return false;
	if (opt.fcm_credentials != NULL && !(fcm_ready = fcm_init()))
		return false;
	if (opt.apns_key != NULL && !(apns_ready = apns_init()))
		return false;
	return true;
}

void
deliver_push(Message *m, Delivery *d)
{
	int			sent = 0;
	int			config = 0;
	int			retry = 0;
	Delivery	first_config = {0};
	Delivery	first_retry = {0};
	Delivery	first_other = {0};

	if (m->ntargets == 0)
	{
		set_outcome(d, OUTCOME_PERMANENT, "no %s address: the contact has %s",
					channel_names[m->channel],
					m->channel == CHANNEL_PUSH ? "no device token" : "no web push subscription");
		return;
	}
	for (int i = 0; i < m->ntargets; i++)
	{
		PushTarget *t = &m->targets[i];
		Delivery	td = {0};
		TargetOutcome o;

		if (strcmp(t->platform, "webpush") == 0 && webpush_ready)
			o = webpush_send(m, t, &td);
		else if (strcmp(t->platform, "fcm") == 0 && fcm_ready)
			o = fcm_send(m, t, &td);
		else if (strcmp(t->platform, "apns") == 0 && apns_ready)
			o = apns_send(m, t, &td);
		else
		{
			set_outcome(&td, OUTCOME_PERMANENT, "no transport for %s tokens in this mailer", t->platform);
			o = TARGET_PERMANENT;
		}

		switch (o)
		{
			case TARGET_SENT:
				sent++;
				break;
			case TARGET_INVALID:
				t->invalid = true;
				if (first_other.error[0] == '\0')
					first_other = td;
				break;
			case TARGET_CONFIG:
				if (config++ == 0)
					first_config = td;
				break;
			case TARGET_RETRY:
				if (retry++ == 0)
					first_retry = td;
				break;
			case TARGET_PERMANENT:
				if (first_other.error[0] == '\0')
					first_other = td;
				break;
		}
	}
	if (sent > 0)
	{
		d->outcome = OUTCOME_SENT;
		if (sent < m->ntargets)
			log_warning("notification %lld reached %d of %d targets", m->id, sent, m->ntargets);
	}
	else if (config > 0)
		*d = first_config;
	else if (retry > 0)
		*d = first_retry;
	else
		*d = first_other;
}
