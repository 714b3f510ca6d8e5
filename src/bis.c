/*-------------------------------------------------------------------------
 *
 * bis.c
 *	  Module entry point of bis: back-in-stock notifications inside
 *	  PostgreSQL.  Defines the settings; the work is done in trigger.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "bis.h"

PG_MODULE_MAGIC;

int			bis_default_threshold = 1;
bool		bis_notify = true;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("bis.default_threshold",
							"Stock quantity at which a SKU counts as back in stock.",
							"Applies to items that have no threshold of their own.",
							&bis_default_threshold,
							1, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("bis.notify",
							 "Wakes mailers with NOTIFY " BIS_CHANNEL " when a transaction enqueued notifications.",
							 "Turn off where NOTIFY cannot reach mailers (transaction poolers, standbys); mailers then poll.",
							 &bis_notify,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("bis");
#else
	EmitWarningsOnPlaceholders("bis");
#endif

	bis_trigger_init();
}
