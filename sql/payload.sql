-- Payloads built in C (bis._payload) equal what jsonb_build_object built up
-- to 0.2; a claim hands out the message rendered, the row does not keep it
\set SHOW_CONTEXT never
SET TimeZone = 'America/New_York';
SET bis.expand_chunk = 3;
SELECT bis.upsert_items('[{"sku": "P-1", "title": "Parka <warm>", "url": "https://shop.example/p-1",
                          "price": 99.5, "currency": "EUR", "attributes": {"sizes": ["S", "M"]}}]');
SELECT bis.upsert_contact('p1', email => 'p1@example.com', phone => '+46700000001',
                          locale => 'sv-SE', time_zone => 'Europe/Stockholm');
SELECT bis.upsert_contact('p2', phone => '+46700000002');
SELECT bis.upsert_contact('p3', email => 'p3@example.com', locale => 'de-DE');
SELECT bis.upsert_contact('p4', email => 'p4@example.com');
SELECT count(*) FROM (VALUES
    (bis.subscribe('p1', 'P-1')),
    (bis.subscribe('p2', 'P-1', channel => 'sms')),
    (bis.subscribe('p3', 'P-1', channel => 'push')),
    (bis.subscribe('p4', 'P-1', external_id => 'wh-1'))) s;
SELECT bis.set_stock('P-1', 0), bis.set_stock('P-1', 4) AS enqueued_now;

-- the first chunk, enqueued in the stock transaction, is claimed; the rest is
-- expanded straight into the next claim; both are handed out rendered
SELECT id, channel, subject, body IS NOT NULL AS rendered FROM bis.claim('m1', 10);
SELECT id, channel, subject, body IS NOT NULL AS rendered FROM bis.claim('m1', 10);

-- each payload equals the one jsonb_build_object makes from the same rows
SELECT n.id, n.payload = jsonb_build_object(
         'item', jsonb_build_object(
           'sku', e.sku, 'title', i.title, 'url', i.url, 'image_url', i.image_url,
           'price', i.price, 'compare_at_price', i.compare_at_price,
           'currency', i.currency, 'category', i.category, 'attributes', i.attributes),
         'stock', jsonb_build_object(
           'quantity', e.new_quantity, 'locale', e.locale, 'external_id', e.external_id),
         'contact', jsonb_build_object(
           'id', c.contact_id, 'email', c.email, 'phone', c.phone,
           'locale', c.locale, 'time_zone', c.time_zone),
         'subscription', jsonb_build_object(
           'id', s.id, 'locale', s.locale, 'external_id', s.external_id,
           'created_at', s.created_at),
         'channel', s.channel,
         'address', CASE s.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END,
         'locale', coalesce(c.locale, s.locale, e.locale)) AS same,
       n.payload->'subscription'->>'created_at' = to_jsonb(s.created_at)->>0 AS same_time,
       n.payload->>'address' AS address
  FROM bis.notifications n
  JOIN bis.subscriptions s ON s.id = n.subscription_id
  JOIN bis.contacts c ON c.contact_id = s.contact_id
  JOIN bis.restock_events e ON e.id = n.restock_event_id
  JOIN bis.items i ON i.sku = e.sku
 ORDER BY n.id;

-- the table keeps no message; a row claimed again is rendered again
SELECT bis.ack(ARRAY(SELECT id FROM bis.notifications WHERE status = 'claimed'), 'm1') AS acked;
SELECT count(*) AS stored_messages FROM bis.notifications
 WHERE subject IS NOT NULL OR body IS NOT NULL OR body_html IS NOT NULL;
UPDATE bis.notifications SET status = 'pending', sent_at = NULL WHERE id = 1;
SELECT id, subject, body LIKE '%Parka <warm>%' AS text_body, body_html LIKE '%Parka &lt;warm&gt;%' AS html_escaped
  FROM bis.claim('m2');
SELECT count(*) AS stored_messages FROM bis.notifications
 WHERE subject IS NOT NULL OR body IS NOT NULL OR body_html IS NOT NULL;

-- the parts: NULLs are JSON nulls; no shared part is an empty one
SELECT bis._payload(NULL, 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'email', NULL, NULL);
SELECT bis._payload('{"item": {"sku": "Z"}}', 'x', 'x@example.com', NULL, 'en', 'UTC', 9223372036854775807,
                    'en', 'e"1', '2026-01-02 03:04:05.678+00', 'email', 'x@example.com', 'en')
     = jsonb_build_object('item', jsonb_build_object('sku', 'Z'),
         'contact', jsonb_build_object('id', 'x', 'email', 'x@example.com', 'phone', NULL,
                                       'locale', 'en', 'time_zone', 'UTC'),
         'subscription', jsonb_build_object('id', 9223372036854775807, 'locale', 'en',
                                            'external_id', 'e"1',
                                            'created_at', '2026-01-02 03:04:05.678+00'::timestamptz),
         'channel', 'email', 'address', 'x@example.com', 'locale', 'en') AS same;
SELECT bis._payload('[1]', 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'email', NULL, NULL);
-- a message for a row without templates is the row as it is
SELECT bis._message(n, NULL, NULL, NULL) IS NOT DISTINCT FROM n AS unchanged FROM bis.notifications n WHERE id = 2;
SELECT (bis._message(n, 'Hi {{contact.id}}', NULL, '<b>{{item.title}}</b>')).subject,
       (bis._message(n, 'Hi {{contact.id}}', NULL, '<b>{{item.title}}</b>')).body_html
  FROM bis.notifications n WHERE id = 2;
RESET bis.expand_chunk;
RESET TimeZone;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.contacts, bis.items RESTART IDENTITY;
