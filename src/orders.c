/*-------------------------------------------------------------------------
 *
 * orders.c
 *	  bis._order_trigger: the shop's own order lines, recorded as purchases.
 *
 * bis.track_orders() puts this trigger on an order-lines table, its
 * arguments naming the columns to read: order id, SKU, contact id, and
 * optionally quantity, amount, currency and time of purchase.  Each new line
 * is handed to bis.record_purchase(), run as the extension's owner, as the
 * stock trigger runs its restocks: the roles that insert order lines need no
 * right on bis's tables.  A column is read only if its type is one
 * bis.track_orders() accepted, all of them built in: no output function of
 * another role's type runs with bis's privileges.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "bis.h"

/* the arguments of the trigger, in order */
enum
{
	O_ORDER_ID, O_SKU, O_CONTACT_ID, O_QUANTITY, O_AMOUNT, O_CURRENCY, O_PURCHASED_AT,
	O_NARGS
};

static const char record_sql[] =
"SELECT bis.record_purchase($3, $2, $1, coalesce($4, 1), $5, $6, coalesce($7, pg_catalog.now()))";

static SPIPlanPtr record_plan = NULL;

/* The types each argument's column may have (as bis.track_orders checks) */
static bool
readable(int arg, Oid type)
{
	switch (arg)
	{
		case O_ORDER_ID:
		case O_CONTACT_ID:
			return type == TEXTOID || type == VARCHAROID || type == INT8OID ||
				type == INT4OID || type == UUIDOID;
		case O_SKU:
			return type == TEXTOID || type == VARCHAROID;
		case O_QUANTITY:
			return type == INT2OID || type == INT4OID || type == INT8OID;
		case O_AMOUNT:
			return type == NUMERICOID || type == INT4OID || type == INT8OID;
		case O_CURRENCY:
			return type == TEXTOID || type == VARCHAROID || type == BPCHAROID;
		case O_PURCHASED_AT:
			return type == TIMESTAMPTZOID;
	}
	return false;
}

/*
 * The value of the column an argument names, as text (quantity and time
 * keep their types); NULL when the argument is empty or the value is
 */
static char *
column_text(TriggerData *trigdata, int arg, Oid *type, Datum *value, bool *isnull)
{
	Relation	rel = trigdata->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	const char *name = trigdata->tg_trigger->tgargs[arg];
	int			attnum;

	*isnull = true;
	if (name[0] == '\0')
		return NULL;
	attnum = SPI_fnumber(desc, name);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", name,
						RelationGetRelationName(rel)),
				 errhint("Track the table again with bis.track_orders() and the columns it has now.")));
	*type = TupleDescAttr(desc, attnum - 1)->atttypid;
	if (!readable(arg, *type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" has a type bis cannot read", name,
						RelationGetRelationName(rel)),
				 errhint("Track the table again with bis.track_orders().")));
	*value = SPI_getbinval(trigdata->tg_trigtuple, desc, attnum, isnull);
	if (*isnull)
		return NULL;
	return SPI_getvalue(trigdata->tg_trigtuple, desc, attnum);
}

PG_FUNCTION_INFO_V1(bis__order_trigger);

Datum
bis__order_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			argtypes[O_NARGS] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, NUMERICOID, TEXTOID,
	TIMESTAMPTZOID};
	Datum		values[O_NARGS];
	char		nulls[O_NARGS];
	AsRole		as;
	int			i;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bis._order_trigger() was not called by trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bis._order_trigger() must be fired AFTER INSERT FOR EACH ROW")));
	if (trigdata->tg_trigger->tgnargs != O_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bis._order_trigger() needs %d arguments", O_NARGS),
				 errhint("Track the table again with bis.track_orders().")));

	for (i = 0; i < O_NARGS; i++)
	{
		Oid			type = InvalidOid;
		Datum		value = (Datum) 0;
		bool		isnull;
		char	   *text = column_text(trigdata, i, &type, &value, &isnull);

		nulls[i] = isnull ? 'n' : ' ';
		if (isnull)
			values[i] = (Datum) 0;
		else if (i == O_QUANTITY)
			values[i] = Int32GetDatum(DatumGetInt32(DirectFunctionCall1(int4in,
																		CStringGetDatum(text))));
		else if (i == O_AMOUNT)
			values[i] = DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		else if (i == O_PURCHASED_AT)
			values[i] = value;
		else
			values[i] = CStringGetTextDatum(text);
	}

	begin_as_role(function_owner(fcinfo->flinfo->fn_oid), false, &as);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(prepare_kept(&record_plan, record_sql, O_NARGS, argtypes),
						   values, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	end_as_role(&as);

	return PointerGetDatum(NULL);
}
