/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  Tenants: many shops in one database, kept apart by row-level security.
 *
 * Every bis table has a tenant column, in every key, which rows written take
 * from the setting bis.tenant ('' unless set).  SELECT bis.enable_tenants()
 * turns on row-level security with a policy per table that shows and admits
 * the rows of the session's tenant only, and hands bis's functions to the
 * role bis_tenants, which row-level security applies to (it does not to a
 * superuser): bis's own statements then see one tenant's rows, as the
 * application's roles reading bis's tables do.
 *
 * bis.tenant can only be set by a superuser, by ALTER ROLE ... SET, or by a
 * role granted SET on it: a role that could set it could act for any tenant.
 * Until tenants are enabled it must stay empty, so that no row is written for
 * a tenant that nothing would keep apart.
 *
 * The C index walk of matching.c reads an index directly, under no policy:
 * it compares the tenant itself, leading its key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "bis.h"

/* a tenant's name: what a role setting or a policy can carry plainly */
#define TENANT_NAME_MAX 63

static char *bis_tenant = NULL;

static bool
check_tenant(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (strlen(*newval) > TENANT_NAME_MAX)
	{
		GUC_check_errdetail("A tenant's name is at most %d characters.", TENANT_NAME_MAX);
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
		{
			GUC_check_errdetail("A tenant's name has letters, digits, \"_\", \"-\" and \".\" only.");
			return false;
		}
	}
	return true;
}

void
bis_tenant_init(void)
{
	DefineCustomStringVariable("bis.tenant",
							   "The tenant whose rows bis reads and writes, once tenants are enabled.",
							   "Set it per role with ALTER ROLE ... SET bis.tenant; only a superuser, or a role granted SET on it, can change it.",
							   &bis_tenant,
							   "",
							   PGC_SUSET,
							   0,
							   check_tenant, NULL, NULL);
}

/*
 * Whether tenants are enabled: bis.enable_tenants() turned on row-level
 * security on bis.contacts, as on every bis table.
 */
bool
tenants_enabled(void)
{
	Oid			nsp = get_namespace_oid("bis", true);
	Oid			relid;
	HeapTuple	tuple;
	bool		enabled;

	if (!OidIsValid(nsp))
		return false;
	relid = get_relname_relid("contacts", nsp);
	if (!OidIsValid(relid))
		return false;
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	enabled = ((Form_pg_class) GETSTRUCT(tuple))->relrowsecurity;
	ReleaseSysCache(tuple);
	return enabled;
}

/* The session's tenant: '' unless bis.tenant is set, which needs tenants on */
const char *
current_tenant(void)
{
	const char *tenant = bis_tenant ? bis_tenant : "";

	if (tenant[0] != '\0' && !tenants_enabled())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bis.tenant is set, but tenants are not enabled"),
				 errdetail("Rows of tenant \"%s\" would not be kept apart from other tenants' rows.",
						   tenant),
				 errhint("Enable them first with SELECT bis.enable_tenants(), as a superuser.")));
	return tenant;
}

/*
 * With tenants enabled, bis's own statements must run as a role that
 * row-level security applies to.  A superuser, or a role with BYPASSRLS,
 * would see every tenant's rows: that is what bis's functions are owned by
 * after a restore or an extension update, until bis.enable_tenants() hands
 * them to bis_tenants again.
 */
void
check_tenant_isolation(Oid role)
{
	if (!superuser_arg(role) && !has_bypassrls_privilege(role))
		return;
	if (!tenants_enabled())
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("tenants are enabled, but bis's functions run as role \"%s\", which bypasses row-level security",
					GetUserNameFromId(role, false)),
			 errdetail("A restore or an extension update leaves bis's functions owned by the role that ran it."),
			 errhint("Run SELECT bis.enable_tenants() again, as a superuser.")));
}

/* bis._tenant(): the session's tenant, what policies and defaults compare */
PG_FUNCTION_INFO_V1(bis__tenant);

Datum
bis__tenant(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(current_tenant()));
}
