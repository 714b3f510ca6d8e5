/* bis--0.2--0.3.sql: a narrower outbox; payloads built in C */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bis UPDATE TO '0.3'" to load this file. \quit

CREATE FUNCTION bis._payload(shared jsonb, contact_id text, email text, phone text,
                             contact_locale text, time_zone text, subscription_id bigint,
                             subscription_locale text, external_id text, subscribed_at timestamptz,
                             channel text, address text, locale text)
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__payload';
COMMENT ON FUNCTION bis._payload(jsonb, text, text, text, text, text, bigint, text, text, timestamptz, text, text, text) IS 'A notification''s payload: the part its restock shares with the contact, subscription, channel, address and locale added';

CREATE FUNCTION bis._message(n bis.notifications, subject text, body text, body_html text)
    RETURNS bis.notifications
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__message';
COMMENT ON FUNCTION bis._message(bis.notifications, text, text, text) IS 'The notification with subject, body and body_html rendered from these templates against its payload, as bis.claim hands it out';

REVOKE ALL ON FUNCTION bis._payload(jsonb, text, text, text, text, text, bigint, text, text, timestamptz, text, text, text),
                       bis._message(bis.notifications, text, text, text) FROM PUBLIC;

-- a claimed message is rendered into the claim's result, not written into
-- the row: rows stay narrow, and acknowledging one copies less
COMMENT ON COLUMN bis.notifications.subject IS 'Subject (email) or title (push): NULL here, rendered from bis.templates into what bis.claim returns (stored by bis 0.1 and 0.2)';
COMMENT ON COLUMN bis.notifications.body IS 'Plain-text message: NULL here, rendered from bis.templates into what bis.claim returns (stored by bis 0.1 and 0.2)';
COMMENT ON COLUMN bis.notifications.body_html IS 'HTML message (email): NULL here, rendered from bis.templates into what bis.claim returns (stored by bis 0.1 and 0.2)';

-- payloads through bis._payload; a mailer's chunk handed out through bis._message
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

-- the claim's message rendered into its result (bis._message), not into the rows
CREATE OR REPLACE FUNCTION bis.claim(worker text, max_rows integer DEFAULT 100, lease interval DEFAULT '5 minutes')
    RETURNS SETOF bis.notifications
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    ev bis.restock_events;
    ids bigint[];
    ids_min bigint;
    ids_max bigint;
    expired integer;
BEGIN
    PERFORM bis._check_worker(worker, true);
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The max_rows given is %s.', coalesce(max_rows::text, 'NULL'));
    END IF;
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be a positive interval' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The lease given is %s.', coalesce(lease::text, 'NULL'));
    END IF;

    LOOP
        -- rows whose lease ran out, then due pending rows, oldest first; SKIP
        -- LOCKED: concurrent claims never hand out the same row
        ids := ARRAY(SELECT n.id FROM bis.notifications n
                      WHERE n.status = 'claimed' AND n.claimed_until <= now()
                      ORDER BY n.claimed_until, n.id
                      LIMIT max_rows FOR UPDATE SKIP LOCKED);
        IF cardinality(ids) < max_rows THEN
            ids := ids || ARRAY(SELECT n.id FROM bis.notifications n
                                 WHERE n.status = 'pending' AND n.available_at <= now()
                                 ORDER BY n.available_at, n.id
                                 LIMIT max_rows - cardinality(ids) FOR UPDATE SKIP LOCKED);
        END IF;
        IF cardinality(ids) = 0 THEN
            -- nothing due: large restocks and later waves are expanded by the
            -- mailers that drain them, straight into this claim
            ev := bis._next_expansion(0);
            IF ev.id IS NOT NULL THEN
                RETURN QUERY SELECT * FROM bis._expand(ev, least(max_rows, settings.expand_chunk),
                                                       worker, lease);
            END IF;
            RETURN;
        END IF;
        -- bounds that steer the planner to the primary key rather than a full scan
        SELECT min(i), max(i) INTO ids_min, ids_max FROM unnest(ids) i;

        -- past their time to live they are never handed out
        WITH gone AS (
            UPDATE bis.notifications n
               SET status = 'expired', claimed_by = NULL, claimed_until = NULL
             WHERE n.id = ANY (ids) AND n.id BETWEEN ids_min AND ids_max
               AND n.created_at < now() - settings.notification_ttl
            RETURNING 1)
        SELECT count(*) INTO expired FROM gone;

        RETURN QUERY
        WITH taken AS (
            UPDATE bis.notifications n
               SET status = 'claimed', claimed_by = claim.worker,
                   claimed_until = now() + claim.lease, attempts = n.attempts + 1
             WHERE n.id = ANY (ids) AND n.id BETWEEN ids_min AND ids_max AND n.status <> 'expired'
            RETURNING n
        ), tpl AS MATERIALIZED (
            -- a batch has few kinds, channels and locales: look each up once
            SELECT k.kind, k.channel, k.locale, t.subject, t.body, t.body_html
              FROM (SELECT DISTINCT (x.n).kind, (x.n).channel, (x.n).payload->>'locale' AS locale
                      FROM taken x) k
              LEFT JOIN LATERAL bis._template(k.kind, k.channel, k.locale,
                                              settings.default_locale) t ON true
        )
        -- rendered into the result, not into the rows
        SELECT r.*
          FROM taken x
          LEFT JOIN tpl ON tpl.kind = (x.n).kind AND tpl.channel = (x.n).channel
                       AND tpl.locale IS NOT DISTINCT FROM (x.n).payload->>'locale'
         CROSS JOIN LATERAL bis._message(x.n, tpl.subject, tpl.body, tpl.body_html) r
         ORDER BY r.id;
        -- a batch that had only expired rows: look again
        EXIT WHEN FOUND OR expired = 0;
    END LOOP;
END
$$;

