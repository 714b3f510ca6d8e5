/* bis--0.3--0.4.sql: a restock's bound found by a probe; acks that go by id */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bis UPDATE TO '0.4'" to load this file. \quit

-- The newest subscription a restock may use was max(id) over all of
-- bis.subscriptions, which the planner may answer with a scan of the whole
-- table, dead rows included: while a long transaction held back the xmin
-- horizon, a restock of 50 SKUs took 1.1 s longer after every 10,000
-- notifications drained.  The SKU's newest active subscription bounds the
-- expansion just as well (no other can match) and is one probe of
-- subscriptions_active_sku_idx from its end.
CREATE OR REPLACE FUNCTION bis._restock(sku text, locale text, external_id text, old_quantity bigint,
                                        new_quantity bigint, threshold integer, source_table text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    item record;
    held bigint := 0;
    ev bis.restock_events;
BEGIN
    -- crossings of one SKU take turns on the item's row lock, before they
    -- touch any subscription (see bis.set_stock)
    SELECT i.alerts_enabled, coalesce(i.wave_per_unit, nullif(settings.wave_per_unit, 0)) AS per_unit
      INTO item FROM bis.items i WHERE i.sku = _restock.sku FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT item.alerts_enabled THEN
        -- no item: nobody can have subscribed; alerts off: they wait
        IF FOUND THEN
            held := (SELECT count(*) FROM bis._matching(sku, locale, external_id, 0, NULL, NULL));
        END IF;
        INSERT INTO bis.restock_events (sku, locale, external_id, old_quantity, new_quantity, threshold,
                                        source_table, matched, enqueued, held_back)
        VALUES (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, held, 0,
                CASE WHEN held > 0 THEN jsonb_build_object('alerts_disabled', held) ELSE '{}' END);
        RETURN 0;
    END IF;

    -- a restock of the same stock still under way is taken over by this one
    UPDATE bis.restock_events e SET expansion = 'stopped', next_wave_at = NULL
     WHERE e.expansion IN ('expanding', 'waiting') AND e.sku = _restock.sku
       AND e.locale IS NOT DISTINCT FROM _restock.locale
       AND e.external_id IS NOT DISTINCT FROM _restock.external_id;

    INSERT INTO bis.restock_events AS e
           (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table,
            matched, enqueued, expansion, max_subscription_id, wave_quota)
    VALUES (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, 0, 0,
            'expanding',
            coalesce((SELECT s.id FROM bis.subscriptions s
                       WHERE s.sku = _restock.sku AND s.status = 'active'
                       ORDER BY s.id DESC LIMIT 1), 0),
            item.per_unit * new_quantity)
    RETURNING * INTO ev;
    -- the first chunk now, the rest after commit (bis.expand, called by bis.claim)
    RETURN (SELECT count(*) FROM bis._expand(ev, settings.expand_chunk, NULL, NULL));
END
$$;

COMMENT ON COLUMN bis.restock_events.max_subscription_id IS 'The SKU''s newest active subscription when it happened: later ones wait for the next restock';

-- bis.ack and bis.release find their rows by id, through the primary key.
-- With status = 'claimed' as its only predicate, the lease index could serve
-- them too, and on some statistics the planner chose it: every entry of the
-- index tested against the ids one by one, dead entries included, so that
-- between two vacuums an ack of 1,000 rows went from 10 ms to about 300 ms.
-- claimed_until IS NOT NULL holds for every claimed row; only the claim's own
-- test of the lease's end implies it, so only the claim can use the index.
DROP INDEX bis.notifications_lease_idx;
CREATE INDEX notifications_lease_idx ON bis.notifications (claimed_until, id)
    WHERE status = 'claimed' AND claimed_until IS NOT NULL;
