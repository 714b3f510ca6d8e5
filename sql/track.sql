-- Tracking an application's own inventory table, with its own column names
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}, {"sku": "B-2", "title": "Boots"},
                          {"sku": "C-3", "title": "Cap", "threshold": 3}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com');
SELECT bis.subscribe('ann', 'A-1'), bis.subscribe('ann', 'B-2', locale => 'sv-SE'),
       bis.subscribe('ann', 'C-3');

CREATE TABLE shop_inventory (
    id serial PRIMARY KEY,
    article varchar(64) NOT NULL,
    market text,
    on_hand bigint,
    note text
);
INSERT INTO shop_inventory (article, market, on_hand) VALUES
    ('A-1', NULL, 0), ('B-2', 'sv-SE', 0), ('C-3', NULL, 1);

SELECT bis.track('shop_inventory', sku_column => 'article', quantity_column => 'on_hand',
                 locale_column => 'market');
SELECT * FROM bis.tracked_tables ORDER BY tbl::text;

-- updates that do not raise a quantity never reach the trigger's function
UPDATE shop_inventory SET note = 'counted';
UPDATE shop_inventory SET on_hand = on_hand;
SELECT count(*) AS events FROM bis.restock_events;

-- one statement restocking three rows: A-1 and B-2 (in sv-SE) cross 1; C-3 goes 1 -> 2,
-- below its threshold 3
UPDATE shop_inventory SET on_hand = on_hand + 1;
SELECT sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, matched, enqueued
  FROM bis.restock_events ORDER BY id;
-- C-3 reaches 3
UPDATE shop_inventory SET on_hand = 3 WHERE article = 'C-3';
-- a new row inserted in stock counts too: B-2 in en-US has no subscribers
INSERT INTO shop_inventory (article, market, on_hand) VALUES ('B-2', 'en-US', 8);
SELECT sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, matched, enqueued
  FROM bis.restock_events ORDER BY id;
SELECT contact_id, sku, status FROM bis.notifications ORDER BY id;

-- a rolled-back restock leaves nothing
SELECT bis.subscribe('ann', 'A-1') AS new_subscription;
BEGIN;
UPDATE shop_inventory SET on_hand = 0 WHERE article = 'A-1';
UPDATE shop_inventory SET on_hand = 5 WHERE article = 'A-1';
SELECT count(*) AS events_inside FROM bis.restock_events;
ROLLBACK;
SELECT count(*) AS events_after FROM bis.restock_events;
SELECT id, status FROM bis.subscriptions WHERE status = 'active';

-- whoever may update the table causes restocks, without rights on bis's tables
CREATE ROLE regress_bis_clerk;
GRANT SELECT, UPDATE ON shop_inventory TO regress_bis_clerk;
SET ROLE regress_bis_clerk;
SELECT count(*) FROM bis.notifications;
UPDATE shop_inventory SET on_hand = 0 WHERE article = 'A-1';
UPDATE shop_inventory SET on_hand = 2 WHERE article = 'A-1';
RESET ROLE;
SELECT sku, matched, enqueued FROM bis.restock_events ORDER BY id DESC LIMIT 1;
SELECT id, status FROM bis.subscription_history WHERE id = 4;

-- tracking again replaces the columns
SELECT bis.track('shop_inventory', sku_column => 'article', quantity_column => 'on_hand');
SELECT * FROM bis.tracked_tables WHERE tbl = 'shop_inventory'::regclass;
-- a column bis reads cannot be renamed under it; others can
ALTER TABLE shop_inventory RENAME COLUMN article TO item_sku;
ALTER TABLE shop_inventory RENAME COLUMN market TO region;
-- untracking and tracking again around the change is the way
BEGIN;
SELECT bis.untrack('shop_inventory');
ALTER TABLE shop_inventory RENAME COLUMN article TO item_sku;
SELECT bis.track('shop_inventory', sku_column => 'item_sku', quantity_column => 'on_hand');
COMMIT;
UPDATE shop_inventory SET on_hand = 0 WHERE id = 1;
UPDATE shop_inventory SET on_hand = 1 WHERE id = 1;
SELECT sku, old_quantity, new_quantity FROM bis.restock_events ORDER BY id DESC LIMIT 1;

-- untracked, it is an ordinary table again
SELECT count(*) AS events FROM bis.restock_events;
SELECT bis.untrack('shop_inventory');
SELECT * FROM bis.tracked_tables ORDER BY tbl::text;
UPDATE shop_inventory SET on_hand = 0;
UPDATE shop_inventory SET on_hand = 7;
SELECT count(*) AS events FROM bis.restock_events;

-- a partitioned table: its partitions, also those added later, are tracked through it
CREATE TABLE regional_stock (sku text, quantity int, region text) PARTITION BY LIST (region);
CREATE TABLE regional_stock_north PARTITION OF regional_stock FOR VALUES IN ('north');
SELECT bis.track('regional_stock', external_id_column => 'region');
CREATE TABLE regional_stock_south PARTITION OF regional_stock FOR VALUES IN ('south');
INSERT INTO regional_stock VALUES ('A-1', 3, 'north'), ('A-1', 2, 'south'), ('A-1', 0, 'south');
SELECT sku, external_id, new_quantity, source_table FROM bis.restock_events
 WHERE source_table LIKE 'public.regional%' ORDER BY id;
SELECT * FROM bis.tracked_tables ORDER BY tbl::text;
-- a partition is tracked or untracked through its parent only
SELECT bis.untrack('regional_stock_north');
SELECT bis.track('regional_stock_north');
SELECT bis.untrack('regional_stock');
SELECT bis.track('regional_stock_north');
SELECT bis.track('regional_stock');
SELECT * FROM bis.tracked_tables ORDER BY tbl::text;

DROP TABLE regional_stock;
DROP TABLE shop_inventory;
DROP ROLE regress_bis_clerk;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
