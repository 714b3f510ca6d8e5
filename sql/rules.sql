-- The delivery rules: consent and addresses, unsubscribe links, the frequency cap and
-- quiet hours in the contact's own time, send rates, restock dwell, subscription expiry
-- and product filters; each one names itself where it held or stopped a message
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SELECT bis.upsert_items('[{"sku": "R-1", "title": "Raincoat", "price": 100},
                          {"sku": "R-2", "title": "Rain hat", "price": 20}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', phone => '+46700000001',
                          time_zone => 'Europe/Stockholm');
SELECT bis.upsert_contact('bo', email => 'bo@example.com', phone => '+46700000002',
                          time_zone => 'Asia/Tokyo');
CREATE VIEW queue AS
SELECT id, contact_id, sku, channel, status, status_reason, attempts FROM bis.notifications ORDER BY id;
-- make due what a rule held, without waiting for it
CREATE FUNCTION make_due() RETURNS void LANGUAGE sql AS
$$ UPDATE bis.notifications SET available_at = now() WHERE status = 'pending' $$;
CREATE FUNCTION restock(sku text) RETURNS integer LANGUAGE sql AS
$$ SELECT bis.set_stock(sku, 0) + bis.set_stock(sku, 5) $$;

-- every rule is off until it is set
SELECT name, setting FROM pg_settings
 WHERE name IN ('bis.max_per_contact_day', 'bis.quiet_hours', 'bis.send_rate', 'bis.item_send_rate',
                'bis.restock_dwell', 'bis.subscription_ttl', 'bis.unsubscribe_url')
 ORDER BY name;

-- 1. consent: subscribing records it; withdrawn, nothing is sent on the channel and no
-- new subscription is taken, while the active ones stay visible as they are
SELECT bis.subscribe('ann', 'R-1') AS email_sub, bis.subscribe('ann', 'R-1', channel => 'sms') AS sms_sub;
SELECT contact_id, channel, granted, source FROM bis.consents ORDER BY contact_id, channel;
SELECT bis.set_consent('ann', 'sms', false, source => 'preference centre');
SELECT bis.subscribe('ann', 'R-2', channel => 'sms');
SELECT id, channel, status FROM bis.contact_subscriptions('ann') ORDER BY id;
SELECT restock('R-1') AS enqueued;
SELECT id, channel FROM bis.claim('m1');
SELECT * FROM queue;
-- given anew, the channel takes subscriptions again
SELECT bis.set_consent('ann', 'sms', true, source => 'checkout');
SELECT bis.subscribe('ann', 'R-2', channel => 'sms') > 0 AS subscribed;
SELECT bis.set_consent('nobody', 'sms', true);
SELECT bis.set_consent('ann', 'fax', true);
SELECT bis.set_consent('ann', 'sms', NULL);
SELECT bis.set_consent('ann', NULL, true);

-- clearing an address: what waits on that channel is suppressed, not retried
SELECT bis.clear_address('bo', 'sms') AS cleared, bis.clear_address('bo', 'sms') AS again;
SELECT bis.clear_address('bo', 'push');
SELECT bis.clear_address('nobody', 'email');
SELECT email IS NOT NULL AS keeps_email, phone IS NULL AS no_phone FROM bis.contacts WHERE contact_id = 'bo';
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 2. unsubscribe links: signed tokens that name the notification, in the payload and,
-- for email, the List-Unsubscribe header; the shop's endpoint passes them on
SET bis.unsubscribe_url = 'https://shop.example/unsubscribe?t=';
SET bis.unsubscribe_mailto = 'unsubscribe@shop.example';
SELECT bis.subscribe('ann', 'R-1') AS sub, bis.subscribe('ann', 'R-2') AS other_sub;
SELECT restock('R-1') + restock('R-2') AS enqueued;
CREATE TEMP TABLE claimed AS SELECT * FROM bis.claim('m1');
SELECT id, payload->>'unsubscribe_url' ~ '^https://shop\.example/unsubscribe\?t=[A-Za-z0-9_-]{35}$' AS link,
       payload->>'unsubscribe_all_url' <> payload->>'unsubscribe_url' AS other_link,
       list_unsubscribe = format('<%s>, <mailto:unsubscribe@shop.example?subject=unsubscribe%%20%s>',
                                 payload->>'unsubscribe_all_url',
                                 substr(payload->>'unsubscribe_all_url', 36)) AS header,
       body LIKE '%No more alerts like this: ' || (payload->>'unsubscribe_url') || '%' AS in_body
  FROM claimed ORDER BY id;
SELECT bis.ack(ARRAY[1, 2], 'm1');
SELECT substr(payload->>'unsubscribe_url', 36) AS token1, substr(payload->>'unsubscribe_all_url', 36) AS all2
  FROM claimed WHERE id = 1 \gset
SELECT substr(payload->>'unsubscribe_all_url', 36) AS all2 FROM claimed WHERE id = 2 \gset
-- the subscription goes, once; the history says so
SELECT bis.unsubscribe_by_token(:'token1') AS first, bis.unsubscribe_by_token(:'token1') AS again;
SELECT id, sku, status, notification_id, cancelled_at IS NOT NULL AS cancelled
  FROM bis.contact_subscriptions('ann') ORDER BY id;
SELECT count(*) AS consent_withdrawn FROM bis.consents WHERE contact_id = 'ann' AND NOT granted;
-- the unsubscribe-all token also withdraws consent for the channel
SELECT bis.unsubscribe_by_token(:'all2') AS cancelled;
SELECT channel, granted, source FROM bis.consents WHERE contact_id = 'ann' ORDER BY channel;
-- forged, altered and truncated tokens change nothing
SELECT bis.unsubscribe_by_token('AQAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAA');
SELECT bis.unsubscribe_by_token(overlay(:'token1' placing (CASE WHEN substr(:'token1', 20, 1) = 'A' THEN 'B' ELSE 'A' END) from 20 for 1));
SELECT bis.unsubscribe_by_token(left(:'token1', 30));
-- the last character's lowest bit is padding that decoding ignores: a token that
-- differs there is still not one bis made
SELECT bis.unsubscribe_by_token(left(:'token1', 34) || substr(a, ((strpos(a, right(:'token1', 1)) - 1) # 1) + 1, 1))
  FROM (VALUES ('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')) v(a);
SELECT bis.unsubscribe_by_token('not a token at all, with spaces');
SELECT bis.unsubscribe_by_token(NULL);
-- a token whose notification was purged since has nothing left to cancel
SELECT * FROM bis.purge('0');
SELECT bis.unsubscribe_by_token(:'token1') AS after_purge;
SET bis.unsubscribe_url = 'http://shop.example/u';
SET bis.unsubscribe_mailto = 'not an address';
RESET bis.unsubscribe_url;
RESET bis.unsubscribe_mailto;
SELECT bis.set_consent('ann', 'email', true, source => 'support ticket');
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 3. the local day and quiet hours, in the contact's zone, across midnight and a
-- daylight-saving change (Stockholm: summer time begins 2026-03-29 01:00 UTC and ends
-- 2026-10-25 01:00 UTC)
SELECT at, bis._local_day_start(at, 'Europe/Stockholm', 0) AS day_starts,
       bis._local_day_start(at, 'Europe/Stockholm', 1) AS next_day_starts
  FROM (VALUES (timestamptz '2026-06-01 21:59:00+00'), ('2026-06-01 22:00:00+00'),
               ('2026-03-29 12:00:00+00'), ('2026-10-25 12:00:00+00')) v(at);
SELECT bis._local_day_start('2026-06-01 12:00:00+00', NULL, 0) AS default_zone_utc;
SELECT at, bis._quiet_hours_end(at, 'Europe/Stockholm', '21:00-08:00') AS quiet_until
  FROM (VALUES (timestamptz '2026-06-01 18:59:00+00'), ('2026-06-01 19:00:00+00'),
               ('2026-06-01 23:30:00+00'), ('2026-06-02 05:59:00+00'), ('2026-06-02 06:00:00+00'),
               ('2026-03-29 00:30:00+00'), ('2026-10-24 23:30:00+00')) v(at);
SELECT bis._quiet_hours_end('2026-06-01 12:30:00+00', 'UTC', '12:00-13:00') AS same_day_window;
SELECT bis._quiet_hours_end(now(), 'UTC', '25:00-08:00');
SET bis.quiet_hours = '21:00-21:00';
SET bis.quiet_hours = '9-17';
SET bis.quiet_hours_channels = 'sms, fax';

-- quiet hours now for bo in Tokyo: his sms waits until they end, his email does not
-- (quiet hours apply to sms and push unless set otherwise)
SELECT to_char(now() AT TIME ZONE 'Asia/Tokyo' - interval '1 hour', 'HH24:MI') || '-' ||
       to_char(now() AT TIME ZONE 'Asia/Tokyo' + interval '1 hour', 'HH24:MI') AS window \gset
SET bis.quiet_hours = :'window';
SELECT bis.upsert_contact('bo', phone => '+46700000002');
SELECT bis.subscribe('bo', 'R-1'), bis.subscribe('bo', 'R-1', channel => 'sms');
SELECT restock('R-1') AS enqueued;
SELECT id, channel FROM bis.claim('m1');
SELECT q.*, n.available_at = bis._quiet_hours_end(now(), 'Asia/Tokyo', :'window') AS until_they_end
  FROM queue q JOIN bis.notifications n USING (id) ORDER BY q.id;
-- dropped instead, where a setting says so
SET bis.quiet_hours_action = 'drop';
SELECT make_due();
SELECT id, channel FROM bis.claim('m2');
SELECT * FROM queue;
RESET bis.quiet_hours_action;
RESET bis.quiet_hours;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 4. the frequency cap: one message a day per contact; the second waits for the
-- contact's next local day, counting what was sent today and what is out with a mailer
SET bis.max_per_contact_day = 1;
SELECT bis.subscribe('ann', 'R-1'), bis.subscribe('ann', 'R-2'), bis.subscribe('bo', 'R-2');
SELECT restock('R-1') + restock('R-2') AS enqueued;
SELECT id, payload->'contact'->>'id' AS contact_id FROM bis.claim('m1');
SELECT q.*, n.available_at = bis._local_day_start(now(), c.time_zone, 1) AS until_next_day
  FROM queue q JOIN bis.notifications n ON n.id = q.id JOIN bis.contacts c ON c.contact_id = q.contact_id
 ORDER BY q.id;
SELECT make_due();
SELECT id FROM bis.claim('m1') AS still_capped;
SELECT bis.ack(ARRAY[1, 3], 'm1');
SELECT make_due();
SELECT id FROM bis.claim('m1') AS sent_today_counts;
SET bis.max_per_contact_day = 2;
SELECT make_due();
SELECT id FROM bis.claim('m1') AS room_for_one_more;
SET bis.max_per_contact_day = 1;
SET bis.frequency_cap_action = 'drop';
UPDATE bis.notifications SET status = 'pending', claimed_by = NULL, available_at = now() WHERE id = 2;
SELECT id FROM bis.claim('m1') AS dropped;
SELECT * FROM queue;
RESET bis.frequency_cap_action;
RESET bis.max_per_contact_day;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 5. send rates, over all items and per item: a claim hands out no more than the window
-- has room for; the rest waits for the next window
SET bis.send_rate = '2/1h';
SELECT count(bis.upsert_contact('c' || n, email => 'c' || n || '@example.com')) FROM generate_series(1, 4) n;
SELECT count(bis.subscribe('c' || n, 'R-1')) FROM generate_series(1, 4) n;
SELECT restock('R-1') AS enqueued;
SELECT id FROM bis.claim('m1');
SELECT id FROM bis.claim('m1') AS window_full;
SELECT status, status_reason, count(*),
       bool_and(available_at = to_timestamp(ceil(extract(epoch FROM now()) / 3600) * 3600)) AS next_hour
  FROM bis.notifications GROUP BY 1, 2 ORDER BY 1, 2;
SELECT scope, handed_out FROM bis.send_windows ORDER BY scope;
RESET bis.send_rate;
SELECT bis.upsert_items('[{"sku": "R-1", "send_rate": "1/1d"}]');
SELECT make_due();
SELECT id FROM bis.claim('m1') AS one_for_the_item;
SELECT scope, handed_out FROM bis.send_windows ORDER BY scope;
SELECT bis.upsert_items('[{"sku": "R-1", "send_rate": null}]');
SELECT bis.upsert_items('[{"sku": "R-1", "send_rate": "0/1h"}]');
SELECT bis.upsert_items('[{"sku": "R-1", "send_rate": "10 per hour"}]');
SET bis.send_rate = '100';
SET bis.item_send_rate = '5/0s';
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.send_windows RESTART IDENTITY;

-- 6. restock dwell: a crossing notifies once the stock has stayed for the dwell, re-read
-- from the table that restocked; a SKU that sells out within it notifies nobody
SET bis.restock_dwell = '10 minutes';
SELECT bis.subscribe('ann', 'R-1'), bis.subscribe('bo', 'R-1');
SELECT restock('R-1') AS enqueued_at_once;
SELECT id, expansion, wave, enqueued, next_wave_at - occurred_at AS dwell FROM bis.restock_events;
UPDATE bis.restock_events SET next_wave_at = now() WHERE expansion = 'waiting';
SELECT bis.expand(10) AS enqueued_after_dwell;
SELECT id, expansion, wave, enqueued, held_back FROM bis.restock_events;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;
SELECT bis.subscribe('ann', 'R-1'), bis.subscribe('bo', 'R-1');
SELECT restock('R-1'), bis.set_stock('R-1', 0) AS sold_out;
UPDATE bis.restock_events SET next_wave_at = now() WHERE expansion = 'waiting';
SELECT bis.expand(10) AS enqueued_after_flap;
SELECT id, expansion, wave, enqueued, held_back FROM bis.restock_events;
SELECT count(*) AS still_waiting FROM bis.subscriptions WHERE status = 'active';
-- an item's own dwell wins; 0 is at once
SELECT bis.upsert_items('[{"sku": "R-1", "restock_dwell": "0"}]');
SELECT restock('R-1') AS enqueued_at_once;
SELECT bis.upsert_items('[{"sku": "R-1", "restock_dwell": "8 days"}]');
SET bis.restock_dwell = 'a while';
RESET bis.restock_dwell;
SELECT bis.upsert_items('[{"sku": "R-1", "restock_dwell": null}]');
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 7. subscription expiry: one older than bis.subscription_ttl is never notified
SET bis.subscription_ttl = '90 days';
SELECT bis.subscribe('ann', 'R-1'), bis.subscribe('bo', 'R-1');
UPDATE bis.subscriptions SET created_at = now() - interval '100 days' WHERE contact_id = 'ann';
SELECT restock('R-1') AS enqueued;
SELECT matched, enqueued, held_back FROM bis.restock_events;
SELECT contact_id, status FROM bis.subscription_history ORDER BY contact_id;
RESET bis.subscription_ttl;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;

-- 8. product filters: an item that is not active notifies nobody; a maximum price waits
-- for a restock at or below it
SELECT bis.subscribe('ann', 'R-1', max_price => 80) AS cheap, bis.subscribe('bo', 'R-1') AS any_price;
SELECT bis.subscribe('ann', 'R-1', max_price => -1);
SELECT bis.upsert_items('[{"sku": "R-1", "status": "archived"}]');
SELECT restock('R-1') AS enqueued;
SELECT bis.upsert_items('[{"sku": "R-1", "status": "active"}]');
SELECT restock('R-1') AS enqueued;
SELECT bis.upsert_items('[{"sku": "R-1", "price": 79}]');
SELECT restock('R-1') AS enqueued;
SELECT id, matched, enqueued, held_back FROM bis.restock_events ORDER BY id;
SELECT contact_id, status FROM bis.subscription_history ORDER BY contact_id;
-- subscribing again sets the maximum price anew
SELECT bis.subscribe('ann', 'R-2', max_price => 10) = bis.subscribe('ann', 'R-2', max_price => 30) AS same;
SELECT max_price FROM bis.subscriptions WHERE contact_id = 'ann' AND sku = 'R-2';

DROP VIEW queue;
DROP TABLE claimed;
DROP FUNCTION make_due();
DROP FUNCTION restock(text);
RESET TimeZone;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items,
         bis.send_windows RESTART IDENTITY;
