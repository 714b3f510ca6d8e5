-- bis.stock_levels: levels set through bis's functions are restocks; rows
-- loaded into the table, as pg_restore loads them, are not
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "S-1", "title": "Scarf"}, {"sku": "S-2", "title": "Socks", "threshold": 3},
                          {"sku": "S-3", "title": "Shawl"}]');
SELECT bis.upsert_contact('sue', email => 'sue@example.com');
SELECT bis.subscribe('sue', 'S-1'), bis.subscribe('sue', 'S-2'), bis.subscribe('sue', 'S-3', locale => 'sv-SE');
-- the table has the UPDATE trigger only, and is listed as tracked
SELECT tgname FROM pg_trigger WHERE tgrelid = 'bis.stock_levels'::regclass ORDER BY tgname;
SELECT * FROM bis.tracked_tables;

-- a new level at or above its threshold is a crossing from nothing; below it, none
SELECT bis.set_stock('S-1', 4) AS enqueued;
SELECT bis.set_stock('S-2', 2) AS below_threshold;
-- a batch with a level that is there (S-2 rises to its threshold) and a new one (S-3 in fi-FI)
SELECT bis.put_stock_levels('[{"sku": "S-2", "quantity": 3},
                              {"sku": "S-3", "quantity": 1, "locale": "fi-FI"}]') AS enqueued;
SELECT sku, locale, old_quantity, new_quantity, threshold, source_table, matched, enqueued
  FROM bis.restock_events ORDER BY id;
SELECT sku, locale, quantity FROM bis.stock_levels ORDER BY sku, locale;

-- setting a level to what it holds, later, still records when it was set
SELECT updated_at AS set_before FROM bis.stock_levels WHERE sku = 'S-1' AND locale IS NULL \gset
SELECT bis.set_stock('S-1', 4) AS same_quantity;
SELECT updated_at > :'set_before' AS set_again FROM bis.stock_levels WHERE sku = 'S-1' AND locale IS NULL;
-- and within one transaction, a fall and a rise are a crossing
BEGIN;
SELECT bis.set_stock('S-2', 0), bis.set_stock('S-2', 3);
COMMIT;
SELECT sku, old_quantity, new_quantity FROM bis.restock_events ORDER BY id DESC LIMIT 1;

-- rows loaded straight into the table are not restocks: Sue's sv-SE subscription waits
SELECT count(*) AS events_before FROM bis.restock_events;
COPY bis.stock_levels (sku, locale, external_id, quantity, updated_at) FROM stdin;
S-3	sv-SE	\N	7	2026-01-01 00:00:00+00
\.
INSERT INTO bis.stock_levels (sku, locale, quantity) VALUES ('S-2', 'fi-FI', 9);
SELECT count(*) AS events_after FROM bis.restock_events;
SELECT sku, locale, status FROM bis.subscription_history ORDER BY id;
-- they are stock like any other: a later rise from below the threshold is a restock
SELECT bis.set_stock('S-3', 0, locale => 'sv-SE'), bis.set_stock('S-3', 2, locale => 'sv-SE') AS enqueued;
SELECT sku, locale, old_quantity, new_quantity, matched FROM bis.restock_events ORDER BY id DESC LIMIT 1;

-- bis tracks its own table itself
SELECT bis.track('bis.stock_levels');
SELECT bis.untrack('bis.stock_levels');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'bis.stock_levels'::regclass;

TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
