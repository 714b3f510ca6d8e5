-- Bad input: an ERROR that says what and where, and nothing applied
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com');

-- SKUs
SELECT bis.set_stock('A 1', 1);
SELECT bis.set_stock(repeat('x', 129), 1);
SELECT bis.set_stock(NULL, 1);
SELECT bis.subscribe('ann', 'A/1');

-- batches: not an array, not objects, unknown or missing fields, wrong types
SELECT bis.upsert_items(NULL);
SELECT bis.upsert_items('{"sku": "A-1"}');
SELECT bis.upsert_items('[{"sku": "A-2"}, "A-3"]');
SELECT bis.upsert_items('[{"sku": "A-2"}, {"title": "no sku"}]');
SELECT bis.upsert_items('[{"sku": "A-2", "tilte": "typo"}]');
SELECT bis.upsert_items('[{"sku": "A-2", "price": "12.50"}]');
SELECT bis.upsert_items('[{"sku": "A-2", "price": -1}]');
SELECT bis.upsert_items('[{"sku": "A-2", "threshold": 0}]');
SELECT bis.upsert_items('[{"sku": "A-2", "threshold": 2.5}]');
SELECT bis.upsert_items('[{"sku": "A-2", "status": "deleted"}]');
SELECT bis.upsert_items('[{"sku": "A-2", "attributes": [1, 2]}]');
-- a duplicate SKU in one batch
SELECT bis.upsert_items('[{"sku": "A-2"}, {"sku": "A-3"}, {"sku": "A-2", "title": "again"}]');
-- none of a failed batch is applied
SELECT bis.upsert_items('[{"sku": "A-2"}, {"sku": "A-3"}, {"sku": "bad sku"}]');
SELECT sku FROM bis.items ORDER BY sku;

-- quantities
SELECT bis.set_stock('A-1', NULL);
SELECT bis.set_stock('A-1', -1);
SELECT bis.set_stock('A-1', '3000000000');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": null}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": -2}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1.5}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 3000000000}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": "7"}]');
SELECT bis.put_stock_levels('[{"sku": "A-1"}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "external_id": "WH-1"}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": ""}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": "swedish!"}]');
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": "sv-SE"},
                              {"sku": "A-1", "quantity": 2, "locale": "sv-SE"}]');
-- all or nothing: a bad third level leaves the first two unset
SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1}, {"sku": "A-2", "quantity": 1},
                              {"sku": "A-3", "quantity": -1}]');
SELECT count(*) AS stock_levels FROM bis.stock_levels;

-- contacts
SELECT bis.upsert_contact(NULL);
SELECT bis.upsert_contact('bob', email => 'bob at example.com');
SELECT bis.upsert_contact('bob', email => 'Bob <bob@example.com>');
SELECT bis.upsert_contact('bob', phone => 'call me');
SELECT bis.upsert_contact('bob', time_zone => 'Mars/Olympus');
SELECT bis.upsert_contact('bob', locale => 'xx_yy_zz_!');

-- subscriptions: unknown contact, unknown item, unknown channel, empty keys
SELECT bis.subscribe('nobody', 'A-1');
SELECT bis.subscribe('ann', 'Z-9');
SELECT bis.subscribe('ann', 'A-1', channel => 'fax');
SELECT bis.subscribe('ann', 'A-1', external_id => '');
-- a channel the contact has no address for
SELECT bis.subscribe('ann', 'A-1', channel => 'sms');
SELECT count(*) AS subscriptions FROM bis.subscriptions;

-- tracking: columns that are missing or of the wrong type, objects that are not tables
CREATE TABLE inv (sku text, qty numeric, code int, loc text);
SELECT bis.track('inv');
SELECT bis.track('inv', quantity_column => 'qty');
SELECT bis.track('inv', sku_column => 'code', quantity_column => 'qty');
SELECT bis.track('inv', quantity_column => 'code', locale_column => 'place');
CREATE VIEW inv_view AS SELECT * FROM inv;
SELECT bis.track('inv_view', quantity_column => 'code');
SELECT bis.track('no_such_table');
SELECT bis.untrack('inv');
SELECT * FROM bis.tracked_tables WHERE tbl::text LIKE 'inv%';

-- the trigger function is for triggers only, AFTER ROW, INSERT or UPDATE
SELECT bis._stock_trigger();
CREATE TRIGGER t BEFORE UPDATE ON inv FOR EACH ROW EXECUTE FUNCTION bis._stock_trigger('sku', 'code', '', '');
INSERT INTO inv VALUES ('A-1', 1, 1);
UPDATE inv SET code = 2;
DROP TRIGGER t ON inv;
CREATE TRIGGER t AFTER UPDATE ON inv FOR EACH ROW EXECUTE FUNCTION bis._stock_trigger('sku');
UPDATE inv SET code = 3;

DROP VIEW inv_view;
DROP TABLE inv;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
