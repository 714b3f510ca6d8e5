-- Which subscriptions a crossing fires: Voyado's three cases, and both keys
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "SKU-1", "title": "Wool coat", "url": "https://shop.example/coat",
                           "price": 199.00, "currency": "EUR", "attributes": {"color": "navy"}},
                          {"sku": "SKU-2", "title": "Scarf"}]');
SELECT bis.upsert_contact('c' || n, email => 'c' || n || '@example.com', locale => 'sv-SE')
  FROM generate_series(1, 5) n;

-- Voyado's example: five subscriptions
CREATE FUNCTION voyado_subscriptions() RETURNS void LANGUAGE sql AS $$
    TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels RESTART IDENTITY;
    SELECT bis.subscribe('c1', 'SKU-1', 'sv-SE');
    SELECT bis.subscribe('c2', 'SKU-1', 'pl-PL');
    SELECT bis.subscribe('c3', 'SKU-1', 'sv-SE', 'SE-SKU-1');
    SELECT bis.subscribe('c4', 'SKU-1', 'pl-PL', 'PL-SKU-1');
    SELECT bis.subscribe('c5', 'SKU-2', 'sv-SE');
$$;
-- a used subscription moves into its notification: the history shows both
CREATE VIEW fired AS
SELECT h.id AS subscription, h.contact_id, h.locale, h.external_id, h.status,
       h.notification_id IS NOT NULL AS has_notification
  FROM bis.subscription_history h
 ORDER BY h.id;

-- Case 1: sku and locale fire the subscriptions with that sku and that locale: #1 and #3
SELECT voyado_subscriptions();
SELECT bis.set_stock('SKU-1', 4, locale => 'sv-SE');
SELECT * FROM fired;

-- Case 2: sku and external_id fire those with that sku and that external_id: #3
SELECT voyado_subscriptions();
SELECT bis.set_stock('SKU-1', 4, external_id => 'SE-SKU-1');
SELECT * FROM fired;

-- Case 3: sku alone fires every subscription of the sku: #1 to #4
SELECT voyado_subscriptions();
SELECT bis.set_stock('SKU-1', 4);
SELECT * FROM fired;

-- Both locale and external_id: both must match: #4
SELECT voyado_subscriptions();
SELECT bis.set_stock('SKU-1', 4, locale => 'pl-PL', external_id => 'PL-SKU-1');
SELECT * FROM fired;

-- the restock event counts what matched and what was enqueued
SELECT sku, locale, external_id, old_quantity, new_quantity, threshold, source_table,
       matched, enqueued, held_back
  FROM bis.restock_events;

-- the notification keeps references and what the subscription held; its message is
-- built when a mailer claims it
SELECT kind, status, subscription_id, contact_id, sku, locale, external_id, channel, attempts,
       restock_event_id, subscribed_at <= created_at AS subscribed_before_enqueued
  FROM bis.notifications;

-- an sms subscription gets the phone number as its address
SELECT voyado_subscriptions();
SELECT bis.upsert_contact('c6', phone => '+46 70 123 45 67');
SELECT bis.subscribe('c6', 'SKU-2', channel => 'sms');
SELECT bis.set_stock('SKU-2', 1);
SELECT id, channel, address FROM bis.claim('m1') ORDER BY id;

-- an item with alerts switched off: the restock is logged, its subscriptions wait
SELECT voyado_subscriptions();
SELECT bis.upsert_items('[{"sku": "SKU-1", "alerts_enabled": false}]');
SELECT bis.set_stock('SKU-1', 4);
SELECT sku, matched, enqueued, held_back FROM bis.restock_events;
SELECT * FROM fired;
-- switched on again, the next restock notifies them
SELECT bis.upsert_items('[{"sku": "SKU-1", "alerts_enabled": true}]');
SELECT bis.set_stock('SKU-1', 0);
SELECT bis.set_stock('SKU-1', 4);
SELECT sku, matched, enqueued, held_back FROM bis.restock_events ORDER BY id;

-- a restock through a tracked table runs no SQL or PL/pgSQL function of bis's:
-- one with its own search_path is parsed and planned at each call (as SQL,
-- bis._held_back, five calls a restock, cost 32 concurrent restockers a third
-- of their pace); the subscriptions of other locales are held back, and counted
SELECT voyado_subscriptions();
CREATE TABLE shelf (sku text PRIMARY KEY, locale text, quantity int NOT NULL);
INSERT INTO shelf VALUES ('SKU-1', 'sv-SE', 0);
SELECT bis.track('shelf', locale_column => 'locale');
SET track_functions = 'all';
BEGIN;
UPDATE shelf SET quantity = 4;
SELECT p.oid::regprocedure AS called
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'bis'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
   AND pg_stat_get_xact_function_calls(p.oid) > 0;
COMMIT;
RESET track_functions;
SELECT sku, locale, matched, enqueued, held_back FROM bis.restock_events ORDER BY id;
SELECT bis.untrack('shelf');
DROP TABLE shelf;
SELECT bis._held_back('{"wave": 2}', 'wave', 3), bis._held_back('{"wave": 2}', 'dwell', 0),
       bis._held_back('{}', 'over_price', 1);
SELECT bis._held_back('[]', 'wave', 1);
SELECT bis._held_back('{"wave": 9223372036854775807}', 'wave', 1);

DROP VIEW fired;
DROP FUNCTION voyado_subscriptions();
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
