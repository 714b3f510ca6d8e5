-- Updating an installation of 0.5 that is in use: its data moves to the lean model,
-- what the shop granted stays granted, a tracked table stays tracked, and claims and
-- restocks go on.  Then DROP EXTENSION leaves nothing behind.  (test/upgrade.sh
-- compares the definitions of a fresh and an updated installation.)
\set SHOW_CONTEXT never
DROP EXTENSION bis CASCADE;
CREATE EXTENSION bis VERSION '0.5';
SELECT extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'bis';

-- rows as bis 0.5 wrote them (this library no longer writes them, so they are
-- inserted): a sent notification, a pending one with an external id, a waiting and
-- a cancelled subscription, a restock waiting for its next wave (which the next
-- restock of the same stock takes over)
INSERT INTO bis.items (sku, title, url) VALUES ('U-1', 'Umbrella', 'https://shop.example/u-1');
INSERT INTO bis.contacts (contact_id, email) VALUES ('u1', 'u1@example.com'), ('u2', 'u2@example.com'),
                                                    ('u3', 'u3@example.com');
INSERT INTO bis.restock_events (id, sku, old_quantity, new_quantity, threshold, source_table, matched,
                                enqueued, expansion, max_subscription_id, last_subscription_id,
                                wave_quota, next_wave_at, occurred_at)
VALUES (1, 'U-1', 0, 3, 1, 'bis.stock_levels', 2, 2, 'waiting', 3, 2, 0, now() + interval '1 hour',
        '2026-02-01 10:00:00+00');
INSERT INTO bis.subscriptions (id, contact_id, sku, locale, external_id, channel, status, created_at,
                               notified_at, cancelled_at, restock_event_id)
VALUES (1, 'u1', 'U-1', 'sv-SE', NULL, 'email', 'notified', '2026-01-01 08:00:00+00',
        '2026-02-01 10:00:00+00', NULL, 1),
       (2, 'u2', 'U-1', NULL, 'wh-1', 'email', 'notified', '2026-01-02 08:00:00+00',
        '2026-02-01 10:00:00+00', NULL, 1),
       (3, 'u3', 'U-1', NULL, NULL, 'email', 'active', '2026-01-03 08:00:00+00', NULL, NULL, NULL),
       (4, 'u3', 'U-1', 'en', NULL, 'sms', 'cancelled', '2026-01-04 08:00:00+00', NULL,
        '2026-01-05 08:00:00+00', NULL),
       -- one locale written two ways: one active subscription once canonical
       (5, 'u1', 'U-1', 'fi_fi', NULL, 'email', 'active', '2026-01-06 08:00:00+00', NULL, NULL, NULL),
       (6, 'u1', 'U-1', 'FI-fi', NULL, 'email', 'active', '2026-01-07 08:00:00+00', NULL, NULL, NULL);
UPDATE bis.contacts SET locale = 'sv_se' WHERE contact_id = 'u1';
INSERT INTO bis.notifications (id, kind, status, subscription_id, restock_event_id, contact_id, sku,
                               channel, payload, attempts, created_at, available_at, claimed_by,
                               sent_at)
VALUES (1, 'back_in_stock', 'sent', 1, 1, 'u1', 'U-1', 'email',
        '{"item": {"sku": "U-1", "title": "Umbrella"}, "contact": {"id": "u1", "email": "u1@example.com"},
          "subscription": {"id": 1, "locale": "sv-SE", "external_id": null,
                           "created_at": "2026-01-01T08:00:00+00:00"},
          "channel": "email", "address": "u1@example.com", "locale": "sv-SE"}',
        1, '2026-02-01 10:00:00+00', '2026-02-01 10:00:00+00', 'mailer', '2026-02-01 10:01:00+00'),
       (2, 'back_in_stock', 'pending', 2, 1, 'u2', 'U-1', 'email',
        '{"item": {"sku": "U-1", "title": "Umbrella"}, "contact": {"id": "u2", "email": "u2@example.com"},
          "subscription": {"id": 2, "locale": null, "external_id": "wh-1",
                           "created_at": "2026-01-02T08:00:00+00:00"},
          "channel": "email", "address": "u2@example.com", "locale": null}',
        0, now() - interval '1 hour', now() - interval '1 hour', NULL, NULL);
SELECT setval('bis.subscriptions_id_seq', 6), setval('bis.notifications_id_seq', 2),
       setval('bis.restock_events_id_seq', 1);

-- what a shop has granted its mailer and its admin, and a table of its own it tracks
CREATE ROLE regress_bis_upgrade_mailer;
CREATE ROLE regress_bis_upgrade_admin;
GRANT USAGE ON SCHEMA bis TO regress_bis_upgrade_mailer, regress_bis_upgrade_admin;
GRANT EXECUTE ON FUNCTION bis.claim(text, integer, interval), bis.ack(bigint[], text)
   TO regress_bis_upgrade_mailer;
GRANT SELECT ON bis.notifications, bis.subscriptions TO regress_bis_upgrade_admin;
CREATE TABLE shelf (sku text, qty int);
INSERT INTO shelf VALUES ('U-1', 0);
SELECT bis.track('shelf', quantity_column => 'qty');

ALTER EXTENSION bis UPDATE TO '0.6';

-- the extension now lives in pg_catalog and schema bis is its own
SELECT extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'bis';
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS member
  FROM pg_depend d WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bis')
   AND d.deptype = 'e' AND d.classid = 'pg_namespace'::regclass;
-- locales are canonical; what became a duplicate active subscription is cancelled
SELECT id, locale, status FROM bis.subscriptions WHERE id >= 5 ORDER BY id;
SELECT contact_id, locale FROM bis.contacts WHERE contact_id = 'u1';
-- each notification keeps what its subscription held, from the payload it had
SELECT id, status, subscription_id, restock_event_id, contact_id, locale, external_id, subscribed_at,
       attempts, sent_at IS NOT NULL AS sent
  FROM bis.notifications ORDER BY id;
-- used subscriptions left bis.subscriptions; the history has every one
SELECT id, status FROM bis.subscriptions ORDER BY id;
SELECT id, contact_id, locale, external_id, channel, status, created_at, restock_event_id, notification_id
  FROM bis.subscription_history ORDER BY id;
SELECT wave_quota, pg_typeof(wave_quota) FROM bis.restock_events;
-- what was granted on what was recreated is granted again
SELECT has_function_privilege('regress_bis_upgrade_mailer', 'bis.claim(text, integer, interval, text[])', 'EXECUTE') AS mailer_claims,
       has_function_privilege('regress_bis_upgrade_mailer', 'bis.ack(bigint[], text)', 'EXECUTE') AS mailer_acks,
       has_table_privilege('regress_bis_upgrade_admin', 'bis.notifications', 'SELECT') AS admin_reads,
       has_function_privilege('public', 'bis.claim(text, integer, interval, text[])', 'EXECUTE') AS public_claims;
-- the pending notification is claimed with its message built now
SET ROLE regress_bis_upgrade_mailer;
SELECT id, address, subject, payload->'subscription'->>'external_id' AS external_id FROM bis.claim('m');
RESET ROLE;
-- the shop's table is still tracked, and its restock uses the waiting subscription
SELECT * FROM bis.tracked_tables ORDER BY tbl::text;
UPDATE shelf SET qty = 2;
SELECT id, sku, source_table, expansion, enqueued FROM bis.restock_events ORDER BY id;
SELECT id, subscription_id, contact_id, status FROM bis.notifications ORDER BY id;

-- DROP EXTENSION leaves nothing behind: the schema goes with it
DROP EXTENSION bis CASCADE;
SELECT count(*) AS schemas_named_bis FROM pg_namespace WHERE nspname = 'bis';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'shelf'::regclass;
DROP TABLE shelf;
DROP ROLE regress_bis_upgrade_mailer;
DROP ROLE regress_bis_upgrade_admin;
