-- 0.1 -> 0.2 -> 0.3: a restock begun under 0.1 goes on under 0.2 and ends under 0.3;
-- then 0.4, and restocks after the upgrades
\set SHOW_CONTEXT never
DROP EXTENSION bis CASCADE;
CREATE EXTENSION bis VERSION '0.1';
SET bis.expand_chunk = 2;
SELECT bis.upsert_items('[{"sku": "U-1", "title": "Umbrella"}]');
SELECT count(bis.upsert_contact('u' || n, email => 'u' || n || '@example.com')) FROM generate_series(1, 7) n;
SELECT count(bis.subscribe('u' || n, 'U-1')) FROM generate_series(1, 5) n;
SELECT count(bis.subscribe('u' || n, 'U-1', locale => 'sv-SE')) FROM generate_series(6, 7) n;
SELECT bis.set_stock('U-1', 0);
SELECT bis.set_stock('U-1', 3) AS enqueued_under_0_1;
SELECT expansion, matched, enqueued, last_subscription_id FROM bis.restock_events;

ALTER EXTENSION bis UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'bis';
-- bis._matching is now in C; still not for PUBLIC
SELECT l.lanname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'bis._matching(text, text, text, bigint, bigint, integer)'::regprocedure;
SELECT * FROM bis._matching('U-1', NULL, NULL, 0, NULL, NULL);
SELECT * FROM bis._matching('U-1', 'sv-SE', NULL, 0, NULL, 1);
SELECT * FROM bis._matching('U-1', NULL, NULL, 3, 4, NULL);
SELECT count(*) AS none FROM bis._matching('NO-SUCH-SKU', NULL, NULL, 0, NULL, NULL);

-- the expansion begun under 0.1 goes on under 0.2 and finishes under 0.3,
-- each subscription once
SELECT bis.expand(1) AS enqueued_under_0_2;
SELECT expansion, matched, enqueued, last_subscription_id FROM bis.restock_events;
ALTER EXTENSION bis UPDATE TO '0.3';
SELECT extversion FROM pg_extension WHERE extname = 'bis';
SELECT bis.expand(10) AS enqueued_under_0_3;
SELECT expansion, matched, enqueued, last_subscription_id FROM bis.restock_events;
SELECT s.id, s.status, count(n.id) AS notifications
  FROM bis.subscriptions s LEFT JOIN bis.notifications n ON n.subscription_id = s.id
 GROUP BY s.id ORDER BY s.id;
-- the payloads built under 0.2 (in two parts) and 0.3 (in C) have the keys
-- and the shared part of the ones built under 0.1 (the first two)
SELECT n.id, n.payload->'item' = first.payload->'item' AND n.payload->'stock' = first.payload->'stock'
       AS same_shared_part,
       ARRAY(SELECT jsonb_object_keys(n.payload)) = ARRAY(SELECT jsonb_object_keys(first.payload))
       AS same_keys,
       n.payload->'contact'->>'email' AS email, n.payload->'subscription'->>'id' AS subscription
  FROM bis.notifications n, (SELECT payload FROM bis.notifications ORDER BY id LIMIT 1) first
 ORDER BY n.id;

ALTER EXTENSION bis UPDATE TO '0.4';
SELECT extversion FROM pg_extension WHERE extname = 'bis';
-- the lease index is for the claim alone (0.4)
SELECT pg_get_indexdef('bis.notifications_lease_idx'::regclass);

-- a Swedish restock after the upgrades fires only the Swedish subscriptions;
-- its bound is the SKU's newest active subscription (0.4), another SKU's newer one aside
SELECT bis.upsert_items('[{"sku": "U-2", "title": "Umbrella stand"}]');
SELECT count(bis.subscribe('u' || n, 'U-1', locale => 'sv-SE')) FROM generate_series(6, 7) n;
SELECT bis.subscribe('u1', 'U-1') > 0 AS english_subscription;
SELECT bis.subscribe('u1', 'U-2') > 0 AS newer_subscription_elsewhere;
SELECT bis.set_stock('U-1', 0, locale => 'sv-SE');
SELECT bis.set_stock('U-1', 2, locale => 'sv-SE') AS swedish_enqueued;
SELECT bis.expand(10) AS swedish_rest;
SELECT e.max_subscription_id = (SELECT max(s.id) FROM bis.subscriptions s WHERE s.sku = 'U-1')
       AS bound_is_newest_of_sku,
       e.max_subscription_id < (SELECT max(s.id) FROM bis.subscriptions s) AS newer_elsewhere
  FROM bis.restock_events e ORDER BY e.id DESC LIMIT 1;
SELECT s.contact_id, s.locale, s.status FROM bis.subscriptions s WHERE s.id > 7 ORDER BY s.id;
RESET bis.expand_chunk;

ALTER EXTENSION bis UPDATE TO '0.5';
SELECT extversion FROM pg_extension WHERE extname = 'bis';
-- bis.stock_levels keeps its UPDATE trigger only (0.5); a level that
-- bis.set_stock creates is still a crossing from nothing
SELECT tgname FROM pg_trigger WHERE tgrelid = 'bis.stock_levels'::regclass;
SELECT bis.set_stock('U-2', 3) AS new_level_enqueued;
SELECT sku, old_quantity, new_quantity, matched FROM bis.restock_events ORDER BY id DESC LIMIT 1;
