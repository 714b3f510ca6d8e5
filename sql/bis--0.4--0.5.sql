/* bis--0.4--0.5.sql: a database with bis survives pg_dump and pg_restore */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bis UPDATE TO '0.5'" to load this file. \quit

-- pg_restore creates the extension, with its triggers, before it loads the
-- data of bis's tables.  The INSERT trigger on bis.stock_levels took every
-- restored level at or above its threshold for a restock: its events collided
-- with the restored ones (the sequence is set after the data), so the levels
-- were not restored at all, or it wrote restocks that never happened.  Rows
-- loaded into bis.stock_levels are now just rows; the levels that bis.set_stock
-- and bis.put_stock_levels create count as crossings from nothing through
-- bis._new_stock_level, as before.
DROP TRIGGER bis_stock_insert ON bis.stock_levels;

CREATE FUNCTION bis._new_stock_level(sku text, quantity bigint, locale text, external_id text)
    RETURNS integer
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'bis__new_stock_level';
COMMENT ON FUNCTION bis._new_stock_level(text, bigint, text, text) IS 'A level just inserted into bis.stock_levels by bis''s own functions: a crossing from nothing at or above the SKU''s threshold; returns how many notifications it enqueued';
REVOKE ALL ON FUNCTION bis._new_stock_level(text, bigint, text, text) FROM PUBLIC;

-- the one place where bis.set_stock and bis.put_stock_levels write levels;
-- levels is their checked JSON array of {"sku", "quantity", "locale", "externalId"}
CREATE FUNCTION bis._store_levels(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    before bigint := bis._enqueued_total();
    l record;
BEGIN
    -- a restock locks the item after the stock row; taking the items first
    -- keeps writers of one SKU's stock rows from deadlocking with each other
    PERFORM FROM bis.items i
     WHERE i.sku IN (SELECT a->>'sku' FROM jsonb_array_elements(levels) a)
     ORDER BY i.sku FOR NO KEY UPDATE;

    -- new levels, in key order as a concurrent batch takes them; each is a
    -- crossing from nothing if it is at or above its threshold
    FOR l IN
        INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
        SELECT a->>'sku', a->>'locale', a->>'externalId', (a->>'quantity')::numeric::integer
          FROM jsonb_array_elements(levels) a
         ORDER BY a->>'sku', coalesce(a->>'locale', ''), coalesce(a->>'externalId', '')
        ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, ''))) DO NOTHING
        RETURNING s.sku, s.quantity, s.locale, s.external_id
    LOOP
        PERFORM bis._new_stock_level(l.sku, l.quantity, l.locale, l.external_id);
    END LOOP;

    -- then every level, in the same order, as bis 0.4 wrote them (the UPDATE
    -- trigger sees the crossings); a row that already holds these values, as
    -- one just inserted does, is left alone
    INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
    SELECT a->>'sku', a->>'locale', a->>'externalId', (a->>'quantity')::numeric::integer
      FROM jsonb_array_elements(levels) a
     ORDER BY a->>'sku', coalesce(a->>'locale', ''), coalesce(a->>'externalId', '')
    ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, ''))) DO UPDATE SET
        quantity = excluded.quantity,
        updated_at = now()
     WHERE (s.quantity, s.updated_at) IS DISTINCT FROM (excluded.quantity, now());
    RETURN bis._enqueued_total() - before;
END
$$;
COMMENT ON FUNCTION bis._store_levels(jsonb) IS 'Writes checked stock levels into bis.stock_levels for bis.set_stock and bis.put_stock_levels, new levels counting as crossings from nothing; returns how many notifications the changes enqueued';

CREATE OR REPLACE FUNCTION bis.set_stock(sku text, quantity integer, locale text DEFAULT NULL,
                                         external_id text DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_sku(set_stock.sku);
    PERFORM bis._check_quantity(set_stock.quantity);
    PERFORM bis._check_key('locale', set_stock.locale);
    PERFORM bis._check_key('external_id', set_stock.external_id);
    RETURN bis._store_levels(jsonb_build_array(jsonb_build_object(
        'sku', set_stock.sku, 'quantity', set_stock.quantity,
        'locale', set_stock.locale, 'externalId', set_stock.external_id)));
END
$$;

CREATE OR REPLACE FUNCTION bis.put_stock_levels(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    e jsonb;
    n bigint;
BEGIN
    PERFORM bis._check_batch(levels, ARRAY['sku', 'quantity', 'locale', 'externalId'],
                             ARRAY['sku', 'quantity']);
    FOR e, n IN SELECT a.value, a.ordinality FROM jsonb_array_elements(levels) WITH ORDINALITY a LOOP
        PERFORM bis._json_field(e, 'quantity', 'number', n);
        PERFORM bis._check_quantity((e->>'quantity')::numeric, n);
        PERFORM bis._json_field(e, 'locale', 'string', n);
        PERFORM bis._json_field(e, 'externalId', 'string', n);
        BEGIN
            PERFORM bis._check_key('locale', e->>'locale');
            PERFORM bis._check_key('externalId', e->>'externalId');
        EXCEPTION WHEN invalid_parameter_value THEN
            DECLARE
                msg text;
                det text;
            BEGIN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
                PERFORM bis._batch_error(n, msg, nullif(det, ''));
            END;
        END;
    END LOOP;
    PERFORM bis._check_duplicates(
        ARRAY(SELECT format('SKU "%s"', a->>'sku')
                     || CASE WHEN a->>'locale' IS NOT NULL THEN format(' with locale "%s"', a->>'locale') ELSE '' END
                     || CASE WHEN a->>'externalId' IS NOT NULL THEN format(' and externalId "%s"', a->>'externalId') ELSE '' END
                FROM jsonb_array_elements(levels) a),
        'sku, locale and externalId');
    RETURN bis._store_levels(levels);
END
$$;

-- bis.stock_levels is bis's own: tracking it again would put the INSERT
-- trigger back, and untracking it would leave its updates without restocks
CREATE FUNCTION bis._check_own_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF tbl = 'bis.stock_levels'::regclass THEN
        RAISE EXCEPTION 'bis.stock_levels is always tracked' USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'Its levels are set with bis.set_stock and bis.put_stock_levels, which see its crossings.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_own_table(regclass) IS 'Raises an error for bis.stock_levels, which bis.track and bis.untrack leave as it is';

CREATE OR REPLACE FUNCTION bis.track(tbl regclass, sku_column name DEFAULT 'sku',
                                     quantity_column name DEFAULT 'quantity',
                                     locale_column name DEFAULT NULL, external_id_column name DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Only tables and partitioned tables can be tracked.';
    END IF;
    PERFORM bis._check_own_table(tbl);
    PERFORM bis._check_columns(tbl, sku_column, quantity_column, locale_column, external_id_column);
    PERFORM bis._check_partitions(tbl);

    -- tracking again replaces the triggers, with the columns given now
    PERFORM bis._drop_triggers(tbl);
    -- only a row whose quantity crossed its threshold queues a trigger event:
    -- a fall is sorted out by the first comparison, a rise by bis._crossing
    EXECUTE format('CREATE TRIGGER bis_stock_insert AFTER INSERT ON %s FOR EACH ROW'
                   ' WHEN (NEW.%I >= 1 AND bis._crossing(NEW.%I, NULL, NEW.%I))'
                   ' EXECUTE FUNCTION bis._stock_trigger(%L, %L, %L, %L)',
                   tbl, quantity_column, sku_column, quantity_column,
                   sku_column, quantity_column, coalesce(locale_column, ''),
                   coalesce(external_id_column, ''));
    EXECUTE format('CREATE TRIGGER bis_stock_update AFTER UPDATE OF %I ON %s FOR EACH ROW'
                   ' WHEN (NEW.%1$I >= 1 AND (OLD.%1$I IS NULL OR NEW.%1$I > OLD.%1$I)'
                   '       AND bis._crossing(NEW.%3$I, OLD.%1$I, NEW.%1$I))'
                   ' EXECUTE FUNCTION bis._stock_trigger(%3$L, %1$L, %4$L, %5$L)',
                   quantity_column, tbl,
                   sku_column, coalesce(locale_column, ''), coalesce(external_id_column, ''));
END
$$;

CREATE OR REPLACE FUNCTION bis.untrack(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_own_table(tbl);
    PERFORM bis._check_partitions(tbl);
    IF bis._drop_triggers(tbl) = 0 THEN
        RAISE EXCEPTION 'table "%" is not tracked', tbl USING ERRCODE = 'undefined_object',
            HINT = 'The view bis.tracked_tables lists the tracked tables.';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION bis._store_levels(jsonb), bis._check_own_table(regclass) FROM PUBLIC;
