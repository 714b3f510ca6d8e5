-- Lifecycle after the send: delivery events, purchases and conversions, reminders, and the
-- history of each notification
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SELECT bis.upsert_items('[{"sku": "L-1", "title": "Lantern", "url": "https://shop.example/l-1"},
                          {"sku": "L-2", "title": "Lamp"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', phone => '+46700000001');
SELECT bis.upsert_contact('bo', email => 'bo@example.com');
SELECT bis.subscribe('ann', 'L-1'), bis.subscribe('bo', 'L-1'), bis.subscribe('ann', 'L-2', channel => 'sms');
SELECT bis.set_stock('L-1', 0) + bis.set_stock('L-1', 5) + bis.set_stock('L-2', 0) + bis.set_stock('L-2', 5) AS enqueued;
SELECT id, kind, channel, subject FROM bis.claim('m1');
SELECT bis.ack(ARRAY[1, 2, 3], 'm1');
CREATE VIEW history AS
SELECT notification_id, contact_id, sku, kind, status, claimed_at IS NOT NULL AS claimed,
       sent_at IS NOT NULL AS sent, delivered_at, opened_at, clicked_at, converted_at, order_id, amount
  FROM bis.notification_history ORDER BY notification_id;

-- 1. delivery events: recorded once per provider id, in any order
SELECT bis.record_event(1, 'opened', '2026-11-02 10:05+00', 'p-2') AS opened_first,
       bis.record_event(1, 'delivered', '2026-11-02 10:00+00', 'p-1') AS delivered_later,
       bis.record_event(1, 'delivered', '2026-11-02 10:00+00', 'p-1') AS again,
       bis.record_event(1, 'clicked', '2026-11-02 10:07+00') AS no_provider_id;
SELECT notification_id, delivered_at, opened_at, clicked_at FROM history WHERE notification_id = 1;
-- a soft bounce is counted; a hard bounce or a complaint withdraws consent for the channel
SELECT bis.record_event(2, 'bounced', detail => '{"type": "soft"}') AS soft;
SELECT count(*) AS withdrawn FROM bis.consents WHERE NOT granted;
SELECT bis.record_event(2, 'bounced', detail => '{"type": "hard"}') AS hard,
       bis.record_event(3, 'complained') AS complaint;
SELECT contact_id, channel, granted, source FROM bis.consents WHERE NOT granted ORDER BY 1, 2;
-- an unsubscribe reported by the provider cancels the subscription too
SELECT bis.record_event(1, 'unsubscribed', provider_event_id => 'p-9') AS unsubscribed;
SELECT id, sku, status FROM bis.contact_subscriptions('ann') ORDER BY id;
SELECT bis.record_event(999, 'opened');
SELECT bis.record_event(1, 'read');
SELECT bis.record_event(1, NULL);
SELECT bis.record_event(1, 'opened', detail => '[1]');
SELECT bis.record_event(1, 'opened', provider_event_id => '');
SELECT bis.set_consent(c, ch, true, 'support') FROM (VALUES ('ann', 'email'), ('ann', 'sms'), ('bo', 'email')) v(c, ch);

-- 2. purchases: the first record of an order line wins; a purchase within
-- bis.conversion_window after the message is its conversion, the edges included
UPDATE bis.notifications SET sent_at = '2026-11-02 10:00+00' WHERE id IN (1, 2);
SELECT bis.record_purchase('ann', 'L-1', 'o-1', amount => 59, purchased_at => '2026-11-09 10:00+00') AS at_the_edge,
       bis.record_purchase('ann', 'L-1', 'o-1', amount => 99) AS again,
       bis.record_purchase('bo', 'L-1', 'o-2', purchased_at => '2026-11-09 10:00:01+00') AS just_after,
       bis.record_purchase('bo', 'L-1', 'o-0', purchased_at => '2026-11-02 09:59:59+00') AS before_it;
SELECT notification_id, contact_id, converted_at, order_id, amount FROM history WHERE sku = 'L-1';
SET bis.conversion_window = '8 days';
SELECT notification_id, converted_at, order_id FROM history WHERE contact_id = 'bo';
RESET bis.conversion_window;
SELECT bis.record_purchase('ann', 'L-1', 'o-3', quantity => 0);
SELECT bis.record_purchase('ann', 'L-1', 'o-3', amount => -1);
SELECT bis.record_purchase('ann', 'bad sku', 'o-3');
SELECT bis.record_purchase('ann', 'L-1', NULL);
SET bis.conversion_window = '2 years';

-- the shop's own order lines, tracked
CREATE TABLE order_lines (order_no text, article varchar(20), customer text, qty int, total numeric,
                          placed timestamptz DEFAULT '2026-11-03 12:00+00', note point);
SELECT bis.track_orders('order_lines', 'order_no', 'article', 'customer', 'qty', 'total',
                        purchased_at_column => 'placed');
INSERT INTO order_lines (order_no, article, customer, qty, total) VALUES ('o-4', 'L-2', 'ann', 2, 40), ('o-4', 'L-2', 'ann', 1, 20);
SELECT order_id, sku, contact_id, quantity, amount, purchased_at FROM bis.purchases WHERE order_id = 'o-4';
SELECT bis.track_orders('order_lines', 'order_no', 'article', 'customer', quantity_column => 'note');
SELECT bis.track_orders('order_lines', 'order_no', 'article', 'nobody');
SELECT tgname, tgargs <> '' AS has_args FROM pg_trigger WHERE tgrelid = 'order_lines'::regclass;
TRUNCATE bis.purchases;

-- 3. reminders: up to bis.max_reminders, bis.reminder_interval after each message, while
-- the SKU is in stock, to who has neither bought nor unsubscribed
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.delivery_events RESTART IDENTITY;
SET bis.max_reminders = 2;
SET bis.reminder_interval = '2 hours';
SELECT bis.subscribe('ann', 'L-1'), bis.subscribe('bo', 'L-1'), bis.subscribe('ann', 'L-2');
SELECT bis.set_stock('L-1', 0) + bis.set_stock('L-1', 5) + bis.set_stock('L-2', 0) + bis.set_stock('L-2', 5) AS enqueued;
CREATE FUNCTION make_due() RETURNS void LANGUAGE sql AS
$$ UPDATE bis.notifications SET available_at = now() WHERE status = 'pending' $$;
CREATE VIEW queue AS
SELECT id, contact_id, sku, kind, status, status_reason, available_at > now() + interval '1 hour' AS later
  FROM bis.notifications ORDER BY id;
SELECT bis.ack(ARRAY(SELECT id FROM bis.claim('m1')), 'm1');
SELECT * FROM queue;
-- bo bought; the lamp sold out; ann's lantern reminder goes
SELECT bis.record_purchase('bo', 'L-1', 'o-5');
SELECT bis.set_stock('L-2', 0);
SELECT make_due();
SELECT id, kind, subject FROM bis.claim('m1');
SELECT * FROM queue;
-- the second reminder, and no third
SELECT bis.ack(ARRAY[4], 'm1');
SELECT make_due();
SELECT bis.ack(ARRAY(SELECT id FROM bis.claim('m1')), 'm1') AS second;
SELECT count(*) AS pending_after_two FROM bis.notifications WHERE status = 'pending';
-- an unsubscribe cancels the reminders still to come
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.purchases RESTART IDENTITY;
SET bis.unsubscribe_url = 'https://shop.example/u?t=';
SELECT bis.subscribe('ann', 'L-1'), bis.subscribe('bo', 'L-1');
SELECT bis.set_stock('L-1', 0) + bis.set_stock('L-1', 5) AS enqueued;
CREATE TEMP TABLE claimed AS SELECT * FROM bis.claim('m1');
SELECT bis.ack(ARRAY[1, 2], 'm1');
SELECT bis.unsubscribe_by_token(substr(payload->>'unsubscribe_url', 26)) FROM claimed WHERE id = 1;
SELECT * FROM queue;
RESET bis.unsubscribe_url;
SELECT bis.set_consent('ann', 'email', true, 'support');
SET bis.reminder_interval = '30 s';

-- 4. price drops: an item in stock whose price drops tells its price-drop subscribers
-- whose target it reaches (or, without one, a drop of bis.price_drop_min_percent), once
RESET bis.max_reminders;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.purchases RESTART IDENTITY;
SELECT bis.upsert_items('[{"sku": "L-3", "title": "Ladle", "price": 100, "currency": "EUR"}]');
SELECT bis.subscribe('ann', 'L-3', kind => 'price_drop', target_price => 80) AS to_80,
       bis.subscribe('bo', 'L-3', kind => 'price_drop') AS ten_percent,
       bis.subscribe('bo', 'L-3') AS back_in_stock;
SELECT bis.upsert_items('[{"sku": "L-3", "price": 85}]') AS out_of_stock_drop;
SELECT count(*) AS restocks FROM bis.restock_events;
SELECT bis.set_stock('L-3', 0) + bis.set_stock('L-3', 4) AS back;
SELECT bis.upsert_items('[{"sku": "L-3", "price": 95}]') AS raised_and_dropped_back;
SELECT bis.upsert_items('[{"sku": "L-3", "price": 90}]') AS ten_percent_down;
SELECT bis.upsert_items('[{"sku": "L-3", "price": 120}]'), bis.upsert_items('[{"sku": "L-3", "price": 90}]') AS bounced;
SELECT bis.upsert_items('[{"sku": "L-3", "price": 79}]') AS below_target;
SELECT id, kind, source_table, matched, enqueued, held_back, price_before FROM bis.restock_events ORDER BY id;
SELECT id, contact_id, kind FROM bis.notifications ORDER BY id;
SELECT id, kind, subject, payload->>'price_was' AS price_was FROM bis.claim('m1') ORDER BY id;
SELECT bis.subscribe('ann', 'L-3', kind => 'price_later');
SELECT bis.subscribe('ann', 'L-3', target_price => 10);
SELECT bis.upsert_items('[{"sku": "L-4", "title": "Lid"}]');
SELECT bis.subscribe('ann', 'L-4', kind => 'price_drop');

-- 5. a shop's own table with a price column: the item's price follows it, and a drop of
-- an item in stock tells its price-drop subscribers as bis.upsert_items does
CREATE TABLE shop_prices (sku text PRIMARY KEY, on_hand integer, price integer, label text);
SELECT bis.track('shop_prices', quantity_column => 'on_hand', price_column => 'label');
SELECT bis.track('shop_prices', quantity_column => 'on_hand', price_column => 'cost');
SELECT bis.track('shop_prices', quantity_column => 'on_hand', price_column => 'price');
SELECT tbl, quantity_column, price_column FROM bis.tracked_tables WHERE tbl = 'shop_prices'::regclass;
SELECT bis.upsert_items('[{"sku": "L-5", "title": "Lamp", "price": 100}]');
INSERT INTO shop_prices VALUES ('L-5', 3, 100, 'in stock');
SELECT bis.subscribe('bo', 'L-5', kind => 'price_drop', target_price => 90);
UPDATE shop_prices SET label = 'on sale';
UPDATE shop_prices SET price = 95;
SELECT price, (SELECT count(*) FROM bis.notifications WHERE sku = 'L-5') AS told FROM bis.items WHERE sku = 'L-5';
UPDATE shop_prices SET price = 89;
SELECT price, (SELECT count(*) FROM bis.notifications WHERE sku = 'L-5') AS told FROM bis.items WHERE sku = 'L-5';
SELECT kind, source_table, matched, enqueued, price_before FROM bis.restock_events WHERE sku = 'L-5' ORDER BY id;
UPDATE shop_prices SET price = 120;
SELECT price FROM bis.items WHERE sku = 'L-5';
ALTER TABLE shop_prices RENAME COLUMN price TO cost;
SELECT bis.track('shop_prices', quantity_column => 'on_hand');
SELECT tbl, price_column FROM bis.tracked_tables WHERE tbl = 'shop_prices'::regclass;
UPDATE shop_prices SET price = 110;
SELECT price FROM bis.items WHERE sku = 'L-5';
SELECT bis.track('shop_prices', quantity_column => 'on_hand', price_column => 'price');
SELECT bis.untrack('shop_prices');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'shop_prices'::regclass;

RESET bis.reminder_interval;
RESET bis.conversion_window;
DROP VIEW queue;
DROP VIEW history;
DROP FUNCTION make_due();
DROP TABLE order_lines;
DROP TABLE claimed;
DROP TABLE shop_prices;
RESET TimeZone;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels, bis.purchases,
         bis.delivery_events, bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts,
         bis.items RESTART IDENTITY;
