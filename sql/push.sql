-- Push addresses: device tokens and web push subscriptions kept on the
-- contact, and the targets of claimed push notifications handed to a mailer
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "P-1", "title": "Parka"}]');
SELECT bis.upsert_contact('ann'), bis.upsert_contact('bob'), bis.upsert_contact('cy');

-- device tokens: adding one twice is no change; APNs tokens are stored in lower case
SELECT bis.add_push_token('ann', 'fcm', 'fcm:token-1') AS added,
       bis.add_push_token('ann', 'fcm', 'fcm:token-1') AS again;
SELECT bis.add_push_token('ann', 'apns', repeat('AB', 32)) AS apns,
       bis.add_push_token('ann', 'apns', repeat('ab', 32)) AS same_token;
-- a token moves to the contact now signed in on the device
SELECT bis.add_push_token('bob', 'fcm', 'fcm:token-2'), bis.add_push_token('bob', 'fcm', 'fcm:token-1');
SELECT platform, left(token, 12) AS token, contact_id FROM bis.push_tokens ORDER BY platform, token;

-- web push subscriptions, as the browser's PushSubscription gives them
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "https://push.example/sub/1",
    "expirationTime": null,
    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
             "auth": "tBHItJI5svbpez7KI4CCXg"}}') AS added;
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "https://push.example/sub/1",
    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
             "auth": "tBHItJI5svbpez7KI4CCXg"}}') AS again;
SELECT endpoint, contact_id, length(bis._base64url(p256dh)) AS key_bytes,
       length(bis._base64url(auth)) AS secret_bytes
  FROM bis.webpush_subscriptions;

-- errors
SELECT bis.add_push_token('nobody', 'fcm', 'fcm:token-9');
SELECT bis.add_push_token(NULL, 'fcm', 'fcm:token-9');
SELECT bis.add_push_token('ann', 'gcm', 'fcm:token-9');
SELECT bis.add_push_token('ann', 'fcm', NULL);
SELECT bis.add_push_token('ann', 'fcm', 'has space');
SELECT bis.add_push_token('ann', 'apns', 'abc');
SELECT bis.add_webpush_subscription('ann', NULL);
SELECT bis.add_webpush_subscription('ann', '"https://push.example/sub/2"');
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "https://push.example/sub/2"}');
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "http://push.example/sub/2",
    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
             "auth": "tBHItJI5svbpez7KI4CCXg"}}');
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "https://push.example/sub/2",
    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1", "auth": "tBHItJI5svbpez7KI4CCXg"}}');
SELECT bis.add_webpush_subscription('ann', '{"endpoint": "https://push.example/sub/2",
    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
             "auth": "not base64!"}}');
SELECT count(*) AS nothing_added FROM bis.webpush_subscriptions WHERE endpoint LIKE '%/sub/2';

-- a mailer gets the targets of the push and webpush notifications it holds, and only those
SELECT bis.subscribe('ann', 'P-1', channel => 'push'), bis.subscribe('ann', 'P-1', channel => 'webpush'),
       bis.subscribe('bob', 'P-1', channel => 'push'), bis.subscribe('cy', 'P-1', channel => 'push');
SELECT bis.set_stock('P-1', 0), bis.set_stock('P-1', 5);
SELECT id, channel, address FROM bis.claim('mailer-1', 3, '1 minute', ARRAY['push', 'webpush']) ORDER BY id;
SELECT notification_id, contact_id, platform, left(token, 12) AS token, p256dh IS NOT NULL AS has_keys
  FROM bis.push_targets(ARRAY(SELECT id FROM bis.notifications), 'mailer-1');
SELECT count(*) AS for_another_worker FROM bis.push_targets(ARRAY(SELECT id FROM bis.notifications), 'mailer-2');
SELECT * FROM bis.push_targets(ARRAY[1], NULL);

-- a token the provider says is gone is removed; removing it again finds nothing
SELECT bis.remove_push_token('ann', 'apns', repeat('AB', 32)) AS removed,
       bis.remove_push_token('ann', 'apns', repeat('AB', 32)) AS again,
       bis.remove_push_token('ann', 'fcm', 'fcm:token-2') AS not_hers;
SELECT bis.remove_webpush_subscription('ann', 'https://push.example/sub/1') AS removed;
-- a contact's addresses go with it
SELECT bis.add_push_token('ann', 'fcm', 'fcm:token-3');
DELETE FROM bis.notifications;
DELETE FROM bis.subscriptions;
SELECT bis.erase_contact('bob') IS NOT NULL AS erased;
SELECT platform, left(token, 12) AS token, contact_id FROM bis.push_tokens ORDER BY platform, token;

-- nothing is granted to PUBLIC
SELECT p.oid::regprocedure AS function
  FROM pg_proc p
 WHERE p.pronamespace = 'bis'::regnamespace
   AND p.proname IN ('add_push_token', 'remove_push_token', 'add_webpush_subscription',
                     'remove_webpush_subscription', 'push_targets')
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;

TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
