/* bis--0.1--0.2.sql: a leaner restock and drain path */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bis UPDATE TO '0.2'" to load this file. \quit

-- a restock takes over the SKU's open restock: found here, not among all of
-- the SKU's past restocks
CREATE INDEX restock_events_open_sku_idx ON bis.restock_events (sku)
    WHERE expansion IN ('expanding', 'waiting');

-- in C: no plan the planner chose kept to the index walk (src/matching.c says why)
CREATE OR REPLACE FUNCTION bis._matching(sku text, locale text, external_id text, after_id bigint,
                                         upto_id bigint, max_rows integer)
    RETURNS SETOF bigint
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__matching';

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
           -- the bounds steer the planner to the primary key rather than a full scan
           AND s.id BETWEEN ids[1] AND ids[cardinality(ids)]
        RETURNING s.id, s.contact_id, s.channel, s.locale, s.external_id, s.created_at
    ), made AS (
        SELECT u.id, u.contact_id, u.channel, coalesce(c.locale, u.locale, ev.locale) AS locale,
               shared || jsonb_build_object(
                 'contact', jsonb_build_object(
                   'id', u.contact_id, 'email', c.email, 'phone', c.phone,
                   'locale', c.locale, 'time_zone', c.time_zone),
                 'subscription', jsonb_build_object(
                   'id', u.id, 'locale', u.locale, 'external_id', u.external_id,
                   'created_at', u.created_at),
                 'channel', u.channel,
                 'address', CASE u.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END,
                 'locale', coalesce(c.locale, u.locale, ev.locale)) AS payload
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
        -- enqueued, or, for a mailer's claim, claimed by it at once
        INSERT INTO bis.notifications
               (kind, subscription_id, restock_event_id, contact_id, sku, channel, payload,
                status, claimed_by, claimed_until, attempts, subject, body, body_html)
        SELECT 'back_in_stock', m.id, ev.id, m.contact_id, ev.sku, m.channel, m.payload,
               CASE WHEN worker IS NULL THEN 'pending' ELSE 'claimed' END, worker, now() + lease,
               CASE WHEN worker IS NULL THEN 0 ELSE 1 END,
               bis.render(t.subject, m.payload), bis.render(t.body, m.payload),
               bis.render(t.body_html, m.payload, true)
          FROM made m
          LEFT JOIN tpl t ON t.channel = m.channel AND t.locale IS NOT DISTINCT FROM m.locale
        RETURNING *
    )
    SELECT * FROM ins ORDER BY id;
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

-- the ids are looked up one by one only when fewer rows were acknowledged
-- than ids given, to name the bad one
CREATE OR REPLACE FUNCTION bis.ack(ids bigint[], worker text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done integer;
BEGIN
    -- with worker, a row another mailer took after this one's lease ran out is not touched
    WITH sent AS (
        UPDATE bis.notifications n
           SET status = 'sent', sent_at = now(), claimed_until = NULL
         WHERE n.id = ANY (ack.ids) AND n.status = 'claimed'
           AND (ack.worker IS NULL OR n.claimed_by = ack.worker)
        RETURNING 1)
    SELECT count(*) INTO done FROM sent;
    -- bad input acknowledges fewer rows than ids given; its error undoes the update
    IF ids IS NULL OR done < cardinality(ids) THEN
        PERFORM bis._check_ids(ids);
    END IF;
    PERFORM bis._check_worker(worker, false);
    RETURN done;
END
$$;
