-- When a quantity crosses its threshold: from below it to at or above it
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"},
                          {"sku": "B-2", "title": "Boots", "threshold": 5}]');
CREATE VIEW events AS
SELECT id, sku, locale, old_quantity AS old, new_quantity AS new, threshold, matched, enqueued
  FROM bis.restock_events ORDER BY id;

-- default threshold 1: a first row at 0 is no crossing, 0 -> 3 is one, 3 -> 7 is not
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 3);
SELECT bis.set_stock('A-1', 7);
-- selling out and coming back is a new crossing
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 1);
SELECT * FROM events;

-- the item's own threshold 5: 0 -> 3 and 3 -> 4 are not crossings, 4 -> 5 is, 5 -> 7 is not
SELECT bis.set_stock('B-2', 0);
SELECT bis.set_stock('B-2', 3);
SELECT bis.set_stock('B-2', 4);
SELECT bis.set_stock('B-2', 5);
SELECT bis.set_stock('B-2', 7);
-- dropping below and jumping past it in one step is
SELECT bis.set_stock('B-2', 2);
SELECT bis.set_stock('B-2', 9);
SELECT * FROM events WHERE sku = 'B-2';

-- a first stock row inserted at or above the threshold counts as a crossing from nothing
SELECT bis.set_stock('B-2', 6, 'sv-SE');
SELECT bis.set_stock('B-2', 4, 'en-US');
SELECT * FROM events WHERE locale IS NOT NULL;

-- bis.default_threshold applies to items without a threshold of their own
SET bis.default_threshold = 3;
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 2);
SELECT bis.set_stock('A-1', 3);
SELECT bis.set_stock('B-2', 0);
SELECT bis.set_stock('B-2', 3);
SELECT * FROM events WHERE id > 5;
RESET bis.default_threshold;

-- a changed item threshold counts at once, also within the same transaction
BEGIN;
SELECT bis.upsert_items('[{"sku": "A-1", "threshold": 10}]');
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 9);
SELECT bis.set_stock('A-1', 10);
SELECT * FROM events WHERE id > 6;
-- and clearing it falls back to the setting
SELECT bis.upsert_items('[{"sku": "A-1", "threshold": null}]');
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 1);
SELECT * FROM events WHERE id > 6;
ROLLBACK;

-- the longest SKU an item may have keeps its own threshold, and SKUs that
-- differ only in their last character are told apart
BEGIN;
SELECT bis.upsert_items(jsonb_build_array(
    jsonb_build_object('sku', repeat('L', 127) || 'a', 'threshold', 5),
    jsonb_build_object('sku', repeat('L', 127) || 'b')));
SELECT bis.set_stock(repeat('L', 127) || 'a', 0), bis.set_stock(repeat('L', 127) || 'b', 0);
SELECT bis.set_stock(repeat('L', 127) || 'a', 4), bis.set_stock(repeat('L', 127) || 'b', 4);
SELECT bis.set_stock(repeat('L', 127) || 'a', 5);
SELECT right(sku, 1) AS sku_ends_in, old_quantity, new_quantity, threshold
  FROM bis.restock_events WHERE length(sku) = 128 ORDER BY id;
ROLLBACK;

-- the threshold is at least 1
SET bis.default_threshold = 0;
SELECT bis.upsert_items('[{"sku": "A-1", "threshold": 0}]');

-- a rolled-back crossing leaves nothing behind
BEGIN;
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 4);
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM bis.restock_events WHERE id > 6;

DROP VIEW events;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
