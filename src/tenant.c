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
 * bis.enable_tenants() also writes the one row of bis.tenancy, which pg_dump
 * keeps.  pg_dump keeps neither the policies of an extension's tables nor
 * who owns its functions: in a restored database tenancy says that tenants
 * must be kept apart, and until bis.enable_tenants() has run again bis
 * refuses to work at all (not in force).
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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "bis.h"

/* a tenant's name: what a role setting or a policy can carry plainly */
#define TENANT_NAME_MAX 63

static char *bis_tenant = NULL;

typedef enum TenantsState
{
	TENANTS_OFF,
	TENANTS_ON,
	TENANTS_NOT_IN_FORCE		/* enabled, but the policies are gone */
} TenantsState;

/* the state, kept until bis.contacts or bis.tenancy changes */
static bool tenants_state_valid = false;
static TenantsState tenants_state_cached;
static Oid	contacts_relid = InvalidOid;
static Oid	tenancy_relid = InvalidOid;

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

static void
invalidate_tenants_state(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == contacts_relid || relid == tenancy_relid)
		tenants_state_valid = false;
}

void
bis_tenant_init(void)
{
	CacheRegisterRelcacheCallback(invalidate_tenants_state, (Datum) 0);

	DefineCustomStringVariable("bis.tenant",
							   "The tenant whose rows bis reads and writes, once tenants are enabled.",
							   "Set it per role with ALTER ROLE ... SET bis.tenant; only a superuser, or a role granted SET on it, can change it.",
							   &bis_tenant,
							   "",
							   PGC_SUSET,
							   0,
							   check_tenant, NULL, NULL);
}

/* Whether a table has a row: bis.tenancy has one once tenants are enabled */
static bool
has_row(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	bool		found = HeapTupleIsValid(systable_getnext(scan));

	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Whether tenants are on: bis.enable_tenants() turned on row-level security
 * on every bis table (bis.contacts stands for them all) and wrote the row of
 * bis.tenancy.  With the row but without the policies they are not in force.
 */
static TenantsState
tenants_state(void)
{
	Oid			nsp;
	HeapTuple	tuple;
	bool		row_security;
	bool		enabled;

	if (tenants_state_valid)
		return tenants_state_cached;

	nsp = get_namespace_oid("bis", true);
	contacts_relid = OidIsValid(nsp) ? get_relname_relid("contacts", nsp) : InvalidOid;
	tenancy_relid = OidIsValid(nsp) ? get_relname_relid("tenancy", nsp) : InvalidOid;
	if (!OidIsValid(contacts_relid) || !OidIsValid(tenancy_relid))
		return TENANTS_OFF;		/* an older version's tables, or none */

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(contacts_relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", contacts_relid);
	row_security = ((Form_pg_class) GETSTRUCT(tuple))->relrowsecurity;
	ReleaseSysCache(tuple);
	enabled = has_row(tenancy_relid);

	tenants_state_cached = !enabled && !row_security ? TENANTS_OFF :
		row_security ? TENANTS_ON : TENANTS_NOT_IN_FORCE;
	tenants_state_valid = true;
	return tenants_state_cached;
}

static void
refuse_not_in_force(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("tenants are enabled in this database, but not in force"),
			 errdetail("bis's tables have no row-level security policies, as after a restore: every tenant's rows would be visible."),
			 errhint("Run SELECT bis.enable_tenants() again, as a superuser.")));
}

/* The session's tenant: '' unless bis.tenant is set, which needs tenants on */
const char *
current_tenant(void)
{
	const char *tenant = bis_tenant ? bis_tenant : "";
	TenantsState state = tenants_state();

	if (state == TENANTS_NOT_IN_FORCE)
		refuse_not_in_force();
	if (tenant[0] != '\0' && state == TENANTS_OFF)
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
	TenantsState state = tenants_state();

	if (state == TENANTS_OFF)
		return;
	if (state == TENANTS_NOT_IN_FORCE)
		refuse_not_in_force();
	if (!superuser_arg(role) && !has_bypassrls_privilege(role))
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
