-- A subscription's life: active until used, cancelled or expired; used once
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}, {"sku": "B-2", "title": "Boots"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', phone => '+46701234567');
SELECT bis.set_stock('A-1', 0);

-- subscribing twice gives back the same active subscription
SELECT bis.subscribe('ann', 'A-1') AS first, bis.subscribe('ann', 'A-1') AS again;
-- another channel or locale is another subscription
SELECT bis.subscribe('ann', 'A-1', channel => 'sms');
SELECT bis.subscribe('ann', 'A-1', locale => 'sv-SE');
SELECT bis.subscribe(contact_id => 'ann', sku => 'B-2', channel => 'push');

-- cancelling: true once, then false; unknown ids are false too
SELECT bis.unsubscribe(4) AS cancelled, bis.unsubscribe(4) AS again, bis.unsubscribe(999) AS unknown;
-- subscribing after cancelling starts a new one
SELECT bis.subscribe('ann', 'B-2', channel => 'push');

-- a restock uses the active subscriptions of the SKU: they move into their
-- notifications, and the contact's history shows every one
SELECT bis.set_stock('A-1', 2);
SELECT id, sku, locale, channel, status, notified_at IS NOT NULL AS notified,
       cancelled_at IS NOT NULL AS cancelled, restock_event_id, notification_id
  FROM bis.contact_subscriptions('ann');
SELECT id, sku, status FROM bis.subscriptions ORDER BY id;

-- a used subscription never fires again; subscribing anew gives a new one, which does
SELECT bis.subscribe('ann', 'A-1');
SELECT bis.set_stock('A-1', 0);
SELECT bis.set_stock('A-1', 5);
SELECT subscription_id, restock_event_id, channel FROM bis.notifications ORDER BY id;
SELECT id, status, restock_event_id FROM bis.contact_subscriptions('ann') WHERE sku = 'A-1';

-- unsubscribing a used subscription changes nothing
SELECT bis.unsubscribe(1);
SELECT status FROM bis.subscription_history WHERE id = 1;

-- an unknown contact has no subscriptions
SELECT count(*) FROM bis.contact_subscriptions('nobody');

-- erasing a contact erases their subscriptions
SELECT bis.erase_contact('ann') IS NOT NULL AS erased;
SELECT count(*) AS subscriptions_left FROM bis.subscriptions;

TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
