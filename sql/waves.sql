-- Waves sized to live stock: at most k subscribers per unit in stock, oldest first; later
-- waves only while the SKU is still in stock; sold out, the rest wait for the next restock
\set SHOW_CONTEXT never
SET bis.wave_per_unit = 2;
SET bis.wave_interval = '1h';
SELECT bis.upsert_items('[{"sku": "W-1", "title": "Wool hat"}]');
SELECT count(bis.upsert_contact('c' || n, email => 'c' || n || '@example.com')) FROM generate_series(1, 16) n;
SELECT count(bis.subscribe('c' || n, 'W-1')) FROM generate_series(1, 14) n;
SELECT bis.set_stock('W-1', 0);
CREATE VIEW waves AS
SELECT id, expansion, wave, wave_quota, enqueued, next_wave_at > now() AS later
  FROM bis.restock_events ORDER BY id;
CREATE VIEW waiting AS
SELECT array_agg(id ORDER BY id) FILTER (WHERE status = 'notified') AS notified,
       array_agg(id ORDER BY id) FILTER (WHERE status = 'active') AS active
  FROM bis.subscription_history;
-- the same fifteen waiting subscriptions again, for the next case
CREATE FUNCTION resubscribe() RETURNS void LANGUAGE sql AS $$
    TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;
    SELECT count(bis.subscribe('c' || n, 'W-1')) FROM generate_series(1, 15) n;
$$;
-- a due wave, without waiting an hour
CREATE FUNCTION make_due() RETURNS void LANGUAGE sql AS
$$ UPDATE bis.restock_events SET next_wave_at = now() - interval '1 second' WHERE expansion = 'waiting' $$;

-- 2 in stock: the first wave notifies the 4 oldest subscribers
SELECT bis.set_stock('W-1', 2) AS first_wave;
SELECT * FROM waves;
SELECT * FROM waiting;
-- the next wave is not due yet
SELECT bis.expand(10) AS not_yet;
-- when it is due, it is sized to the stock then: 3 in stock, 6 more
SELECT bis.set_stock('W-1', 3);
SELECT make_due();
SELECT bis.expand(10) AS second_wave;
SELECT * FROM waves;
SELECT * FROM waiting;
-- sold out before the third wave: it stops; the rest stay active
SELECT bis.set_stock('W-1', 0);
SELECT bis.subscribe('c15', 'W-1') AS late_subscription;
SELECT make_due();
SELECT bis.expand(10) AS third_wave;
SELECT * FROM waves;
SELECT * FROM waiting;
-- the next restock starts a new first wave with the oldest still waiting
SELECT bis.set_stock('W-1', 1) AS first_wave_again;
SELECT * FROM waves;
SELECT * FROM waiting;

-- an item's own wave size and interval win over the settings
SELECT resubscribe();
SELECT bis.upsert_items('[{"sku": "W-1", "wave_per_unit": 1, "wave_interval": "10 minutes"}]');
SELECT bis.set_stock('W-1', 0), bis.set_stock('W-1', 3) AS first_wave;
SELECT id, wave, enqueued, next_wave_at - now() BETWEEN interval '9 minutes' AND interval '10 minutes' AS in_ten
  FROM bis.restock_events;
SELECT bis.upsert_items('[{"sku": "W-1", "wave_interval": "soon"}]');
SELECT bis.upsert_items('[{"sku": "W-1", "wave_per_unit": 0}]');

-- an application's own table: the next wave reads its stock there
SELECT resubscribe();
SELECT bis.upsert_items('[{"sku": "W-1", "wave_per_unit": null, "wave_interval": null}]');
CREATE TABLE shelf (article text, on_hand int);
INSERT INTO shelf VALUES ('W-1', 0);
SELECT bis.track('shelf', sku_column => 'article', quantity_column => 'on_hand');
UPDATE shelf SET on_hand = 1;
SELECT * FROM waves;
SELECT make_due();
SELECT bis.expand(10) AS second_wave;
SELECT * FROM waiting;
UPDATE shelf SET on_hand = 0;
SELECT make_due();
SELECT bis.expand(10) AS stopped;
SELECT * FROM waves;

-- without waves, everyone at once
RESET bis.wave_per_unit;
UPDATE shelf SET on_hand = 4;
SELECT * FROM waves;
SELECT * FROM waiting;

DROP TABLE shelf;
DROP VIEW waves;
DROP VIEW waiting;
DROP FUNCTION make_due();
DROP FUNCTION resubscribe();
RESET bis.wave_interval;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
