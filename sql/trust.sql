-- Trust: roles by duty, the storefront's own calls, a person's data exported and erased,
-- sign-up limits
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SELECT bis.upsert_items('[{"sku": "T-1", "title": "Tent"}, {"sku": "T-2", "title": "Tarp"},
                          {"sku": "T-3", "title": "Torch"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', phone => '+46 70 111 11 11', first_name => 'Ann');
SELECT bis.upsert_contact('bo', email => 'bo@example.com');

-- 1. roles in one call each, and nothing more than the duty needs
CREATE ROLE regress_bis_app;
CREATE ROLE regress_bis_mailer;
CREATE ROLE regress_bis_shop;
SELECT bis.grant('regress_bis_app', 'application'), bis.grant('regress_bis_mailer', 'mailer'),
       bis.grant('regress_bis_shop', 'storefront');
SELECT r AS role,
       has_function_privilege(r, 'bis.set_stock(text, integer, text, text)', 'EXECUTE') AS set_stock,
       has_function_privilege(r, 'bis.claim(text, integer, interval, text[])', 'EXECUTE') AS claim,
       has_function_privilege(r, 'bis.my_subscribe(text, text, text, text)', 'EXECUTE') AS my_subscribe,
       has_function_privilege(r, 'bis.requeue(bigint[])', 'EXECUTE') AS requeue,
       has_table_privilege(r, 'bis.subscriptions', 'SELECT') AS read_subscriptions,
       has_table_privilege(r, 'bis.subscriptions', 'INSERT') AS write_subscriptions,
       has_table_privilege(r, 'bis.signing_key', 'SELECT') AS read_key
  FROM unnest(ARRAY['regress_bis_app', 'regress_bis_mailer', 'regress_bis_shop']) r;
SELECT bis.revoke('regress_bis_mailer', 'mailer');
SELECT has_function_privilege('regress_bis_mailer', 'bis.claim(text, integer, interval, text[])', 'EXECUTE') AS claim_after_revoke;
SELECT bis.grant('regress_bis_mailer', 'postman');
SELECT bis.grant(NULL, 'mailer');

-- 2. a storefront acts only for the shopper its request is authenticated as
SET ROLE regress_bis_shop;
SELECT bis.my_subscribe('T-1');
SET request.jwt.claims = '{"sub": "ann", "role": "web"}';
SELECT bis.my_subscribe('T-1') AS ann_t1, bis.my_subscribe('T-2') AS ann_t2;
SET request.jwt.claims = '{"sub": "bo"}';
SELECT bis.my_subscribe('T-1') AS bo_t1;
SELECT id, sku, status FROM bis.my_subscriptions();
SELECT bis.my_unsubscribe(1) AS cancel_anns, bis.my_unsubscribe(3) AS cancel_own, bis.my_unsubscribe(3) AS again;
SELECT count(*) FROM bis.subscriptions;
SELECT bis.upsert_contact('bo', email => 'evil@example.com');
SET request.jwt.claims = 'not json';
SELECT * FROM bis.my_subscriptions();
RESET request.jwt.claims;
RESET ROLE;

-- 3. a person's data: all of it exported, then erased with no trace, the counts kept
SET bis.unsubscribe_url = 'https://shop.example/u?t=';
SELECT bis.set_stock('T-1', 0) + bis.set_stock('T-1', 2) AS enqueued;
SELECT bis.ack(ARRAY(SELECT id FROM bis.claim('m1')), 'm1');
SELECT bis.record_event(1, 'bounced', provider_event_id => 'p-1',
                        detail => '{"type": "soft", "reason": "mailbox of ann@example.com full"}');
SELECT bis.record_purchase('ann', 'T-1', 'o-1', amount => 200);
SELECT bis.subscribe('ann', 'T-3', channel => 'sms'), bis.set_consent('ann', 'email', true, 'form');
SELECT jsonb_object_keys(bis.export_contact('ann')) AS part ORDER BY 1;
SELECT e->'contact'->>'email' AS email, jsonb_array_length(e->'subscriptions') AS subscriptions,
       jsonb_array_length(e->'notifications') AS notifications, jsonb_array_length(e->'purchases') AS purchases,
       e->'delivery_events'->0->'detail'->>'reason' AS event_detail
  FROM bis.export_contact('ann') e;
CREATE TEMP TABLE counts AS
SELECT (SELECT jsonb_agg(to_jsonb(e) - 'id' ORDER BY e.id) FROM bis.restock_events e) AS restocks,
       (SELECT jsonb_agg(to_jsonb(f) ORDER BY f.sku, f.day) FROM bis.funnel f) AS funnel;
SELECT bis.erase_contact('ann');
-- no trace of the person in any text or jsonb column of any of bis's tables
SELECT c.relname, a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind = 'r' AND a.atttypid IN ('text'::regtype, 'jsonb'::regtype)
   AND (SELECT count(*) FROM bis.subscriptions) >= 0
   AND EXISTS (SELECT 1 FROM (SELECT 1) x
               WHERE (xpath('/row/c/text()', query_to_xml(format(
                   'SELECT count(*) AS c FROM %s WHERE %I::text ~ %L', c.oid::regclass, a.attname,
                   'ann@example\.com|46 70 111|^ann$|"ann"|Ann'), false, true, '')))[1]::text::int > 0);
SELECT (SELECT jsonb_agg(to_jsonb(e) - 'id' ORDER BY e.id) FROM bis.restock_events e) = restocks AS restocks_kept,
       (SELECT jsonb_agg(to_jsonb(f) ORDER BY f.sku, f.day) FROM bis.funnel f) = funnel AS funnel_kept
  FROM counts;
SELECT bis.erase_contact('ann');
DELETE FROM bis.contacts WHERE contact_id = 'bo';
RESET bis.unsubscribe_url;

-- 4. sign-up limits: refused with a clear error, nothing written
SET bis.max_subscriptions_per_contact = 2;
SELECT bis.subscribe('bo', 'T-2') AS t2, bis.subscribe('bo', 'T-3') AS t3, bis.subscribe('bo', 'T-2') AS t2_again;
SELECT bis.subscribe('bo', 'T-1');
SELECT count(*) AS bos_waiting FROM bis.subscriptions WHERE contact_id = 'bo' AND status = 'active';
RESET bis.max_subscriptions_per_contact;
SET bis.signup_rate = '1/1h';
SELECT bis.upsert_contact('cy', email => 'cy@example.com'), bis.upsert_contact('dee', email => 'dee@example.com');
SELECT bis.subscribe('cy', 'T-1') > 0 AS first_to_t1, bis.subscribe('cy', 'T-1') > 0 AS the_same_again;
SELECT bis.subscribe('dee', 'T-1');
SELECT bis.subscribe('dee', 'T-2') > 0 AS another_sku;
SELECT count(*) AS dees_waiting FROM bis.subscriptions WHERE contact_id = 'dee';
RESET bis.signup_rate;

DROP TABLE counts;
DROP OWNED BY regress_bis_app, regress_bis_mailer, regress_bis_shop;
DROP ROLE regress_bis_app, regress_bis_mailer, regress_bis_shop;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels, bis.purchases,
         bis.delivery_events, bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts,
         bis.items, bis.send_windows RESTART IDENTITY;
RESET TimeZone;
