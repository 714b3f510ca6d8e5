-- Answers for people: why (not) notified, dry runs, the queue and demand in psql, a contact's
-- view, a storefront's one call, previews, one locale however it is written, and items whose
-- history keeps them from being deleted
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SELECT bis.upsert_items('[{"sku": "Q-1", "title": "Quilt", "url": "https://shop.example/q-1", "price": 80},
                          {"sku": "Q-2", "title": "Quill"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', first_name => 'Ann');
SELECT bis.upsert_contact('bo', email => 'bo@example.com');

-- one locale however it is written: stored, matched and compared canonical
SELECT bis.subscribe('ann', 'Q-1', locale => 'sv_se') AS sv_se, bis.subscribe('ann', 'Q-1', locale => 'SV-SE') AS same;
SELECT locale FROM bis.subscriptions;
SELECT bis.upsert_contact('bo', locale => 'zh_hant_tw');
SELECT locale FROM bis.contacts WHERE contact_id = 'bo';
SELECT bis._canonical_locale(l) FROM unnest(ARRAY['en', 'EN-us', 'es-419', 'sr_latn_rs', 'de-CH-1996']) l;

-- explain: each subscription, each restock of its SKU since, and why
SELECT bis.subscribe('ann', 'Q-1', external_id => 'wh-2') AS other_warehouse, bis.subscribe('bo', 'Q-1') AS plain;
SELECT bis.set_stock('Q-1', 0, locale => 'fi-FI'), bis.set_stock('Q-1', 3, locale => 'fi-FI');
SELECT bis.set_stock('Q-1', 0, locale => 'SV-se'), bis.set_stock('Q-1', 3, locale => 'sv-SE');
SELECT id, locale, matched, enqueued, held_back FROM bis.restock_events ORDER BY id;
SELECT subscription_id, sku, channel, restock_event_id, restocked_at IS NOT NULL AS restocked, outcome, reason
  FROM bis.explain('ann');
SELECT bis.ack(ARRAY(SELECT id FROM bis.claim('m1')), 'm1');
SELECT subscription_id, restock_event_id, outcome,
       regexp_replace(reason, '\d{4}-\d\d-\d\d \d\d:\d\d', 'YYYY-MM-DD HH:MI') AS reason
  FROM bis.explain('ann', 'Q-1') ORDER BY 1, 2;
SELECT subscription_id, outcome, reason FROM bis.explain('bo');
SELECT * FROM bis.explain('nobody');

-- a contact's view, and unsubscribing by contact and SKU
SELECT notification_id, sku, kind, status, sent_at IS NOT NULL AS sent FROM bis.contact_notifications('ann');
SELECT bis.unsubscribe('bo', 'Q-1') AS cancelled, bis.unsubscribe('bo', 'Q-1') AS again;
SELECT bis.unsubscribe(999);
SELECT bis.unsubscribe((SELECT id FROM bis.subscriptions WHERE contact_id = 'bo'));

-- a storefront's one call: the contact found or made by its normalized address
SELECT bis.subscribe_guest('  Ann@Example.COM ', 'Q-2') > 0 AS ann_again,
       bis.subscribe_guest('guest@example.com', 'Q-2') > 0 AS a_guest;
SELECT contact_id, sku FROM bis.subscriptions WHERE sku = 'Q-2' ORDER BY id;
SELECT bis.subscribe_guest('  ', 'Q-2');

-- dry run: who would be told, in which wave, who held back by what; nothing written
SELECT bis.subscribe('bo', 'Q-1', max_price => 50), bis.subscribe('guest@example.com', 'Q-1');
SELECT bis.set_consent('guest@example.com', 'email', false);
SET bis.wave_per_unit = 1;
CREATE TEMP TABLE before AS
SELECT (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.notifications x) AS n,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.subscriptions x) AS s,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.restock_events x) AS e,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.stock_levels x) AS l,
       (SELECT last_value FROM bis.restock_events_id_seq) AS eseq,
       (SELECT last_value FROM bis.notifications_id_seq) AS nseq;
LISTEN bis_notifications;
BEGIN;
SELECT * FROM bis.dry_run('Q-1', 1);
SELECT count(*) AS row_locks_held FROM pg_locks WHERE pid = pg_backend_pid() AND locktype IN ('tuple', 'transactionid', 'advisory');
COMMIT;
SELECT * FROM bis.dry_run('Q-1', 1, locale => 'fi_fi');
SELECT * FROM bis.dry_run('Q-1', 0);
SELECT * FROM bis.dry_run('Q-9', 5);
SELECT (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.notifications x) = n AS notifications_same,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.subscriptions x) = s AS subscriptions_same,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.restock_events x) = e AS events_same,
       (SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM bis.stock_levels x) = l AS levels_same,
       (SELECT last_value FROM bis.restock_events_id_seq) = eseq AS sequences_same,
       (SELECT last_value FROM bis.notifications_id_seq) = nseq AS sequences_same_too
  FROM before;
UNLISTEN *;
RESET bis.wave_per_unit;
SELECT bis.set_consent('guest@example.com', 'email', true);

-- the queue, demand, restocks and the funnel, in psql
SELECT channel, status, notifications, in_flight, lease_run_out FROM bis.queue_health ORDER BY 1, 2;
SELECT sku, locale, channel, waiting, stock, last_restock IS NOT NULL AS restocked FROM bis.demand ORDER BY 1, 2, 3;
SELECT id, sku, locale, matched, enqueued, held_back, expansion FROM bis.recent_restocks ORDER BY id;
SELECT bis.record_event(1, 'opened'), bis.record_purchase('ann', 'Q-1', 'o-1', amount => 80);
SELECT sku, day = current_date AS today, notified, sent, delivered, opened, clicked, converted, revenue FROM bis.funnel;

-- a preview of a message now, to a contact or a sample one
SELECT * FROM bis.preview('back_in_stock', 'sms', 'en', 'Q-1');
SELECT subject, body LIKE 'Hi Ann,%' AS greets_ann FROM bis.preview('back_in_stock', 'email', 'en', 'Q-1', 'ann');
SELECT * FROM bis.preview('back_in_stock', 'fax', 'en', 'Q-1');
SELECT * FROM bis.preview('back_in_stock', 'sms', 'en', 'Q-9');

-- an item with history is archived, not deleted
DELETE FROM bis.items WHERE sku = 'Q-1';
SELECT bis.upsert_items('[{"sku": "Q-3"}]');
DELETE FROM bis.items WHERE sku = 'Q-3';

TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels, bis.purchases,
         bis.delivery_events, bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts,
         bis.items RESTART IDENTITY;
DROP TABLE before;
RESET TimeZone;
