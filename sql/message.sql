-- A claimed notification's message is built when it is claimed, from the item, contact
-- and restock as they are then: its payload holds only the address of its channel, a
-- contact whose address is gone is never handed out, and the row keeps no message
\set SHOW_CONTEXT never
SET TimeZone = 'America/New_York';
SET bis.expand_chunk = 3;
SELECT bis.upsert_items('[{"sku": "P-1", "title": "Parka <warm>", "url": "https://shop.example/p-1",
                          "price": 99.5, "currency": "EUR", "attributes": {"sizes": ["S", "M"]}}]');
SELECT bis.upsert_contact('p1', email => 'p1@example.com', phone => '+46700000001',
                          locale => 'sv-SE', time_zone => 'Europe/Stockholm', first_name => 'Pia');
SELECT bis.upsert_contact('p2', phone => '+46700000002');
SELECT bis.upsert_contact('p3', email => 'p3@example.com', locale => 'de-DE');
SELECT bis.add_push_token('p3', 'fcm', 'p3-phone');
SELECT bis.upsert_contact('p4', email => 'p4@example.com');
SELECT count(*) FROM (VALUES
    (bis.subscribe('p1', 'P-1')),
    (bis.subscribe('p2', 'P-1', channel => 'sms')),
    (bis.subscribe('p3', 'P-1', channel => 'push')),
    (bis.subscribe('p4', 'P-1', external_id => 'wh-1'))) s;
SELECT bis.set_stock('P-1', 0), bis.set_stock('P-1', 4) AS enqueued_now;

-- after the restock, the item and a contact change: the message says what is true
-- when it leaves
SELECT bis.upsert_items('[{"sku": "P-1", "title": "Parka <extra warm>"}]');
SELECT bis.upsert_contact('p1', email => 'pia@example.com');

-- the first chunk, enqueued in the stock transaction, is claimed; the rest is
-- expanded straight into the next claim; both are handed out built
CREATE TEMP TABLE claimed AS SELECT * FROM bis.claim('m1', 10);
INSERT INTO claimed SELECT * FROM bis.claim('m1', 10);
SELECT id, channel, address, locale, subject, attempts FROM claimed ORDER BY id;

-- each payload is what jsonb_build_object makes of the current rows, with the
-- channel's address and no other (its unsubscribe links: sql/rules.sql; a price drop's
-- former price: sql/lifecycle.sql)
SELECT m.id, m.payload - 'unsubscribe_url' - 'unsubscribe_all_url' - 'price_was' = jsonb_build_object(
         'item', jsonb_build_object(
           'sku', i.sku, 'title', i.title, 'url', i.url, 'image_url', i.image_url,
           'price', i.price, 'compare_at_price', i.compare_at_price,
           'currency', i.currency, 'category', i.category, 'attributes', i.attributes),
         'stock', jsonb_build_object(
           'quantity', e.new_quantity, 'locale', e.locale, 'external_id', e.external_id),
         'contact', jsonb_build_object('id', c.contact_id, 'first_name', c.first_name,
                                       'locale', c.locale),
         'subscription', jsonb_build_object(
           'id', n.subscription_id, 'locale', n.locale, 'external_id', n.external_id,
           'created_at', n.subscribed_at),
         'channel', n.channel,
         'address', CASE n.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END,
         'locale', coalesce(c.locale, n.locale, e.locale)) AS same,
       m.payload->'subscription'->>'created_at' = to_jsonb(n.subscribed_at)->>0 AS same_time,
       m.payload->>'address' IS NOT DISTINCT FROM m.address AS its_address,
       strpos(m.payload::text, coalesce(CASE n.channel WHEN 'email' THEN c.phone ELSE c.email END,
                                        '(none)')) = 0 AS no_other_address,
       strpos(m.payload::text, coalesce(c.time_zone, '(none)')) = 0 AS no_time_zone
  FROM claimed m
  JOIN bis.notifications n ON n.id = m.id
  JOIN bis.contacts c ON c.contact_id = n.contact_id
  JOIN bis.restock_events e ON e.id = n.restock_event_id
  JOIN bis.items i ON i.sku = n.sku
 ORDER BY m.id;
-- the HTML body escapes what it fills in, the plain one does not
SELECT id, body LIKE '%Parka <extra warm>%' AS text_body,
       body_html LIKE '%Parka &lt;extra warm&gt;%' AS html_escaped,
       body_html LIKE '%href="https://shop.example/p-1"%' AS linked
  FROM claimed WHERE channel = 'email' ORDER BY id;

-- the table keeps no message: claimed again, a row is built again
SELECT bis.ack(ARRAY(SELECT id FROM bis.notifications WHERE status = 'claimed'), 'm1') AS acked;
UPDATE bis.notifications SET status = 'pending', sent_at = NULL WHERE id = 1;
SELECT bis.upsert_contact('p1', first_name => 'Pernilla');
SELECT id, body LIKE 'Hi Pernilla,%' AS greets_by_current_name FROM bis.claim('m2');

-- a contact whose address for the channel is gone (a phone number, the last device
-- for push) is never handed to a mailer: the notification is suppressed, says why,
-- and the claim does not count as an attempt
UPDATE bis.notifications SET status = 'pending', sent_at = NULL WHERE id IN (2, 3, 4);
UPDATE bis.contacts SET phone = NULL WHERE contact_id = 'p2';
SELECT bis.remove_push_token('p3', 'fcm', 'p3-phone');
SELECT id, channel FROM bis.claim('m3');
SELECT id, status, status_reason, attempts, claimed_by FROM bis.notifications WHERE id IN (2, 3, 4) ORDER BY id;

RESET bis.expand_chunk;
RESET TimeZone;
DROP TABLE claimed;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
