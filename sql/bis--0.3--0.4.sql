/* bis--0.3--0.4.sql: a restock's bound found by a probe; acks and expansion that stay in range */

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

-- An expansion chunk marks its subscriptions used by id, as an ack does its
-- notifications, and meets the same hazard: the statement implies the
-- predicate of subscriptions_active_sku_idx, and with a few thousand rows
-- after an ANALYZE of the empty table a generic plan chose that index with
-- only the id range as a condition on its second column, which reads every
-- active subscription of every SKU.  With the SKU as well, any plan the
-- planner picks stays within the chunk's range.
CREATE OR REPLACE FUNCTION bis._expand(ev bis.restock_events, chunk integer, worker text, lease interval)
    RETURNS SETOF bis.notifications
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    take integer := least(chunk, coalesce(ev.wave_quota, chunk));
    ids bigint[];
    shared jsonb;
    n integer;
    more boolean;
    quota integer;
BEGIN
    -- the caller holds the item's row lock: crossings of the SKU take turns
    ids := ARRAY(SELECT bis._matching(ev.sku, ev.locale, ev.external_id, ev.last_subscription_id,
                                      ev.max_subscription_id, take));
    more := cardinality(ids) = take;

    -- the part of the payload that every notification of this restock shares,
    -- built once rather than for each of them
    SELECT jsonb_build_object(
             'item', jsonb_build_object(
               'sku', ev.sku, 'title', i.title, 'url', i.url, 'image_url', i.image_url,
               'price', i.price, 'compare_at_price', i.compare_at_price,
               'currency', i.currency, 'category', i.category, 'attributes', i.attributes),
             'stock', jsonb_build_object(
               'quantity', ev.new_quantity, 'locale', ev.locale, 'external_id', ev.external_id))
      INTO shared
      FROM (SELECT) one LEFT JOIN bis.items i ON i.sku = ev.sku;

    -- a subscription is used and its notification enqueued together: none is
    -- used without one, and a subscription no longer active is skipped
    RETURN QUERY
    WITH used AS (
        UPDATE bis.subscriptions s
           SET status = 'notified', notified_at = now(), restock_event_id = ev.id
         WHERE s.id = ANY (ids) AND s.status = 'active'
           -- the SKU and the bounds keep any plan to the chunk's own range
           AND s.sku = ev.sku AND s.id BETWEEN ids[1] AND ids[cardinality(ids)]
        RETURNING s.id, s.contact_id, s.channel, s.locale, s.external_id, s.created_at
    ), made AS (
        SELECT u.id, u.contact_id, u.channel, coalesce(c.locale, u.locale, ev.locale) AS locale,
               bis._payload(shared, u.contact_id, c.email, c.phone, c.locale, c.time_zone,
                            u.id, u.locale, u.external_id, u.created_at, u.channel,
                            CASE u.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END,
                            coalesce(c.locale, u.locale, ev.locale)) AS payload
          FROM used u
          -- a probe per row (OFFSET 0 keeps it a subquery): a hash join would
          -- read every contact for a chunk the planner overestimates
          LEFT JOIN LATERAL (SELECT c.* FROM bis.contacts c
                              WHERE c.contact_id = u.contact_id OFFSET 0) c ON true
    ), tpl AS MATERIALIZED (
        -- for a mailer's claim, rendered as in bis.claim; looked up once per
        -- chunk (inlined, it was looked up again for every row)
        SELECT k.channel, k.locale, t.subject, t.body, t.body_html
          FROM (SELECT DISTINCT m.channel, m.locale FROM made m WHERE worker IS NOT NULL) k
          LEFT JOIN LATERAL bis._template('back_in_stock', k.channel, k.locale,
                                          (bis._settings()).default_locale) t ON true
    ), ins AS (
        -- enqueued, or, for a mailer's claim, claimed by it at once and
        -- handed out rendered (the message is not stored)
        INSERT INTO bis.notifications AS o
               (kind, subscription_id, restock_event_id, contact_id, sku, channel, payload,
                status, claimed_by, claimed_until, attempts)
        SELECT 'back_in_stock', m.id, ev.id, m.contact_id, ev.sku, m.channel, m.payload,
               CASE WHEN worker IS NULL THEN 'pending' ELSE 'claimed' END, worker, now() + lease,
               CASE WHEN worker IS NULL THEN 0 ELSE 1 END
          FROM made m
        RETURNING o
    )
    SELECT r.*
      FROM ins i
      LEFT JOIN tpl t ON t.channel = (i.o).channel
                     AND t.locale IS NOT DISTINCT FROM (i.o).payload->>'locale'
     CROSS JOIN LATERAL bis._message(i.o, t.subject, t.body, t.body_html) r
     ORDER BY r.id;
    GET DIAGNOSTICS n = ROW_COUNT;

    quota := ev.wave_quota - n;
    UPDATE bis.restock_events e
       SET matched = e.matched + n, enqueued = e.enqueued + n,
           last_subscription_id = coalesce(ids[cardinality(ids)], e.last_subscription_id),
           wave_quota = quota,
           expansion = CASE WHEN NOT more THEN 'done'
                            WHEN quota <= 0 THEN 'waiting'
                            ELSE 'expanding' END,
           next_wave_at = CASE WHEN more AND quota <= 0
                               THEN now() + (SELECT coalesce(i.wave_interval, (bis._settings()).wave_interval)
                                               FROM bis.items i WHERE i.sku = ev.sku) END
     WHERE e.id = ev.id;
END
$$;
