-- Housekeeping: bis.purge removes what is finished and older than the retention
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1"}]');
SELECT bis.upsert_contact('c' || n, email => 'c' || n || '@example.com') FROM generate_series(1, 6) n;
SELECT bis.subscribe('c' || n, 'A-1') FROM generate_series(1, 4) n;
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
SELECT bis.subscribe('c5', 'A-1') AS waiting, bis.unsubscribe(bis.subscribe('c6', 'A-1')) AS cancelled;
-- 1 sent, 2 dead, 3 claimed, 4 pending
SELECT count(*) FROM bis.claim('m', 3);
SELECT bis.ack(ARRAY[1], 'm'), bis.fail(2, 'bounced', false, 'm');
-- everything happened 40 days ago, but for subscription 5
UPDATE bis.notifications SET created_at = created_at - interval '40 days',
       sent_at = sent_at - interval '40 days' WHERE id <= 4;
UPDATE bis.subscriptions SET created_at = created_at - interval '40 days',
       cancelled_at = cancelled_at - interval '40 days' WHERE id <> 5;
UPDATE bis.restock_events SET occurred_at = occurred_at - interval '40 days';

-- within the default retention (30 days): the sent and the dead go, and with them
-- the subscriptions they used; the claimed and pending stay; the cancelled
-- subscription goes, the active one stays
SELECT * FROM bis.purge();
SELECT id, status FROM bis.notifications ORDER BY id;
SELECT id, status FROM bis.subscription_history ORDER BY id;
SELECT count(*) AS restock_events FROM bis.restock_events;
-- nothing more to do
SELECT * FROM bis.purge();
-- a shorter retention, given or set
SELECT bis.ack(ARRAY[3], 'm');
SELECT * FROM bis.purge('1 day');
SELECT * FROM bis.purge(interval '0');
SET bis.retention = 0;
SELECT * FROM bis.purge();
RESET bis.retention;
-- a pending notification is never purged, however old
SELECT id, status, created_at < now() - interval '30 days' AS old FROM bis.notifications;
SELECT * FROM bis.purge('-1 day');

TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
