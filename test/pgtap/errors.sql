-- errors.sql: every error path of bis's SQL API with its SQLSTATE and exact message, that a
-- failed batch leaves nothing half-applied, and the results the calls promise (ids, counts of
-- notifications enqueued, thresholds). 
-- Needs the extensions pgtap and bis already created, bis's tables empty (as after CREATE
-- EXTENSION); changes nothing (ROLLBACK).
BEGIN;
SELECT plan(141);

-- fixtures: three items (T-5 with a threshold of its own), three contacts, a stock row at 2
SELECT is(bis.upsert_items('[{"sku": "A-1", "title": "Jacket"}, {"sku": "T-5", "threshold": 5},
                             {"sku": "P-1"}]'), 3, 'upsert_items returns how many items it wrote');
SELECT is(array_agg(bis.upsert_contact('c' || i, email => format('c%s@example.com', i)) ORDER BY i),
          ARRAY['c1', 'c2', 'c3'], 'upsert_contact returns the contact id')
  FROM generate_series(1, 3) i;
SET LOCAL bis.default_threshold = 1;
SELECT is(bis.set_stock('S-1', 2), 0, 'a first stock row of a SKU nobody waits for enqueues nothing');

-- upsert_items
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1"}, {"sku": "N-2"}, {"sku": "bad sku"}]')$$,
  '22023', 'invalid SKU "bad sku"', 'upsert_items: invalid SKU');
SELECT is_empty($$SELECT sku FROM bis.items WHERE sku IN ('N-1', 'N-2')$$,
  'upsert_items: a batch with an invalid SKU writes none of its items');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1"}, {"sku": "N-2", "title": "Two"}, {"sku": "N-3", "threshold": 0}]')$$,
  '22023', 'invalid threshold 0', 'upsert_items: threshold below 1');
SELECT is_empty($$SELECT sku FROM bis.items WHERE sku IN ('N-1', 'N-2')$$,
  'upsert_items: the items written before the invalid element are undone');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "A-1", "title": "Coat"}, {"sku": "N-1", "status": "gone"}]')$$,
  '22023', 'invalid status "gone"', 'upsert_items: unrecognized status');
SELECT is((SELECT title FROM bis.items WHERE sku = 'A-1'), 'Jacket',
  'upsert_items: an update before the invalid element is undone');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1", "price": -1}]')$$,
  '22023', 'price must not be negative', 'upsert_items: negative price');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1"}, {"sku": null}]')$$,
  '22004', 'SKU must not be null', 'upsert_items: NULL SKU');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "D-1"}, {"sku": "N-1"}, {"sku": "D-1"}]')$$,
  '21000', 'SKU "D-1" appears more than once in the batch', 'upsert_items: duplicate SKU');
SELECT throws_ok($$SELECT bis.upsert_items('[{"title": "No SKU"}]')$$,
  '22023', 'field "sku" is missing', 'upsert_items: missing sku');
SELECT throws_ok($$SELECT bis.upsert_items('{"sku": "N-1"}')$$,
  '22023', 'batch must be a JSON array, not object', 'upsert_items: an object, not an array');
SELECT throws_ok($$SELECT bis.upsert_items(NULL)$$,
  '22004', 'batch must not be null', 'upsert_items: NULL batch');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1"}, 42]')$$,
  '22023', 'array element must be a JSON object, not number', 'upsert_items: an element that is not an object');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1", "quantity": 3}]')$$,
  '22023', 'unrecognized field "quantity"', 'upsert_items: unrecognized field');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1", "title": 7}]')$$,
  '22023', 'field "title" must be a JSON string, not number', 'upsert_items: field of the wrong JSON type');
SELECT throws_ok($$SELECT bis.upsert_items('[{"sku": "N-1", "alerts_enabled": "yes"}]')$$,
  '22023', 'field "alerts_enabled" must be a JSON boolean, not string', 'upsert_items: alerts_enabled not a boolean');

-- set_stock (quantity is an integer argument: a fraction or a too large value is the cast's error)
SELECT throws_ok($$SELECT bis.set_stock('bad sku', 1)$$, '22023', 'invalid SKU "bad sku"', 'set_stock: invalid SKU');
SELECT throws_ok($$SELECT bis.set_stock(NULL, 1)$$, '22004', 'SKU must not be null', 'set_stock: NULL SKU');
SELECT throws_ok($$SELECT bis.set_stock('A-1', NULL)$$, '22004', 'quantity must not be null', 'set_stock: NULL quantity');
SELECT throws_ok($$SELECT bis.set_stock('A-1', -1)$$, '22023', 'quantity must not be negative', 'set_stock: negative quantity');
SELECT throws_ok($$SELECT bis.set_stock('A-1', '1.5')$$,
  '22P02', 'invalid input syntax for type integer: "1.5"', 'set_stock: fractional quantity');
SELECT throws_ok($$SELECT bis.set_stock('A-1', '3000000000')$$,
  '22003', 'value "3000000000" is out of range for type integer', 'set_stock: quantity out of range');
SELECT throws_ok($$SELECT bis.set_stock('A-1', 1, '')$$,
  '22023', 'locale must not be an empty string', 'set_stock: empty locale');
SELECT throws_ok($$SELECT bis.set_stock('A-1', 1, NULL, '')$$,
  '22023', 'external_id must not be an empty string', 'set_stock: empty external_id');
SELECT throws_ok($$SELECT bis.set_stock('A-1', 1, 'x')$$, '22023', 'invalid locale "x"', 'set_stock: invalid locale');
SELECT is_empty($$SELECT sku FROM bis.stock_levels WHERE sku = 'A-1'$$, 'set_stock: the failed calls wrote nothing');

-- put_stock_levels
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "N-1", "quantity": 1}, {"sku": "S-1", "quantity": 9},
                                                  {"sku": "bad sku", "quantity": 1}]')$$,
  '22023', 'invalid SKU "bad sku"', 'put_stock_levels: invalid SKU');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "N-1", "quantity": 1}, {"sku": "S-1", "quantity": 9},
                                                  {"sku": "N-2", "quantity": -5}]')$$,
  '22023', 'quantity must not be negative', 'put_stock_levels: negative quantity');
SELECT results_eq($$SELECT sku, quantity FROM bis.stock_levels WHERE sku IN ('N-1', 'N-2', 'S-1')$$,
  $$VALUES ('S-1', 2)$$, 'put_stock_levels: failed batches inserted and updated nothing');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": null, "quantity": 1}]')$$,
  '22004', 'SKU must not be null', 'put_stock_levels: NULL SKU');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": "sv", "externalId": "w1"},
                                                  {"sku": "A-1", "quantity": 2, "locale": "sv", "externalId": "w1"}]')$$,
  '21000', 'SKU "A-1" with locale "sv" and externalId "w1" appears more than once in the batch',
  'put_stock_levels: duplicate sku, locale and externalId');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1}, {"sku": "A-1", "quantity": 2}]')$$,
  '21000', 'SKU "A-1" appears more than once in the batch', 'put_stock_levels: duplicate sku');
SELECT lives_ok($$SELECT bis.put_stock_levels('[{"sku": "L-1", "quantity": 0, "locale": "sv"},
                                                 {"sku": "L-1", "quantity": 0, "locale": "fi"}, {"sku": "L-1", "quantity": 0}]')$$,
  'put_stock_levels: one SKU in several locales is no duplicate');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"quantity": 1}]')$$, '22023', 'field "sku" is missing', 'put_stock_levels: missing sku');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1"}]')$$, '22023', 'field "quantity" is missing', 'put_stock_levels: missing quantity');
SELECT throws_ok($$SELECT bis.put_stock_levels('"A-1"')$$,
  '22023', 'batch must be a JSON array, not string', 'put_stock_levels: a string, not an array');
SELECT throws_ok($$SELECT bis.put_stock_levels(NULL)$$, '22004', 'batch must not be null', 'put_stock_levels: NULL batch');
SELECT throws_ok($$SELECT bis.put_stock_levels('[["A-1", 1]]')$$,
  '22023', 'array element must be a JSON object, not array', 'put_stock_levels: an element that is not an object');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "external_id": "w1"}]')$$,
  '22023', 'unrecognized field "external_id"', 'put_stock_levels: unrecognized field (externalId is camelCase)');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": "1"}]')$$,
  '22023', 'field "quantity" must be a JSON number, not string', 'put_stock_levels: quantity of the wrong JSON type');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": 46}]')$$,
  '22023', 'field "locale" must be a JSON string, not number', 'put_stock_levels: locale of the wrong JSON type');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": null}]')$$,
  '22004', 'quantity must not be null', 'put_stock_levels: NULL quantity');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1.5}]')$$,
  '22023', 'quantity must be a whole number', 'put_stock_levels: fractional quantity');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 3000000000}]')$$,
  '22003', 'quantity 3000000000 is out of range', 'put_stock_levels: quantity out of range');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": ""}]')$$,
  '22023', 'locale must not be an empty string', 'put_stock_levels: empty locale');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "externalId": ""}]')$$,
  '22023', 'externalId must not be an empty string', 'put_stock_levels: empty externalId');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": "A-1", "quantity": 1, "locale": "swedish"}]')$$,
  '22023', 'invalid locale "swedish"', 'put_stock_levels: invalid locale');
SELECT is_empty($$SELECT sku FROM bis.restock_events WHERE sku IN ('A-1', 'N-1')$$,
  'put_stock_levels: failed batches recorded no restock');

-- upsert_contact
SELECT throws_ok($$SELECT bis.upsert_contact(NULL, email => 'x@example.com')$$,
  '22004', 'contact_id must not be null', 'upsert_contact: NULL contact_id');
SELECT throws_ok($$SELECT bis.upsert_contact('')$$,
  '22023', 'contact_id must not be an empty string', 'upsert_contact: empty contact_id');
SELECT throws_ok($$SELECT bis.upsert_contact('c9', email => 'not an email')$$,
  '22023', 'invalid email address "not an email"', 'upsert_contact: invalid email');
SELECT throws_ok($$SELECT bis.upsert_contact('c9', phone => 'call me')$$,
  '22023', 'invalid phone number "call me"', 'upsert_contact: invalid phone');
SELECT throws_ok($$SELECT bis.upsert_contact('c9', time_zone => 'Mars/Olympus')$$,
  '22023', 'time zone "Mars/Olympus" not recognized', 'upsert_contact: invalid time zone');
SELECT throws_ok($$SELECT bis.upsert_contact('c9', locale => 'english')$$,
  '22023', 'invalid locale "english"', 'upsert_contact: invalid locale');
SELECT throws_ok($$SELECT bis.upsert_contact('c1', phone => '+46 70 123 45 67', time_zone => 'Nowhere')$$,
  '22023', 'time zone "Nowhere" not recognized', 'upsert_contact: an update with one invalid value');
SELECT results_eq($$SELECT contact_id, phone FROM bis.contacts WHERE contact_id IN ('c1', 'c9')$$,
  $$VALUES ('c1', NULL::text)$$, 'upsert_contact: the failed calls changed nothing');

-- subscribe, unsubscribe
SELECT throws_ok($$SELECT bis.subscribe('c1', 'bad sku')$$, '22023', 'invalid SKU "bad sku"', 'subscribe: invalid SKU');
SELECT throws_ok($$SELECT bis.subscribe('c1', NULL)$$, '22004', 'SKU must not be null', 'subscribe: NULL SKU');
SELECT throws_ok($$SELECT bis.subscribe('nobody', 'A-1')$$,
  '23503', 'contact "nobody" does not exist', 'subscribe: unknown contact');
SELECT throws_ok($$SELECT bis.subscribe('c1', 'Z-9')$$, '23503', 'item "Z-9" does not exist', 'subscribe: unknown item');
SELECT throws_ok($$SELECT bis.subscribe('c1', 'A-1', channel => 'fax')$$,
  '22023', 'unrecognized channel "fax"', 'subscribe: unknown channel');
SELECT throws_ok($$SELECT bis.subscribe('c1', 'A-1', locale => '')$$,
  '22023', 'locale must not be an empty string', 'subscribe: empty locale');
SELECT throws_ok($$SELECT bis.subscribe('c1', 'A-1', external_id => '')$$,
  '22023', 'external_id must not be an empty string', 'subscribe: empty external_id');
SELECT throws_ok($$SELECT bis.subscribe('c1', 'A-1', max_price => -0.01)$$,
  '22023', 'max_price must not be negative', 'subscribe: negative max_price');
SELECT is_empty($$SELECT id FROM bis.subscriptions WHERE contact_id IN ('c1', 'nobody')$$, 'subscribe: the failed calls created nothing');

-- consent and addresses
SELECT throws_ok($$SELECT bis.set_consent('nobody', 'email', true)$$,
  '23503', 'contact "nobody" does not exist', 'set_consent: unknown contact');
SELECT throws_ok($$SELECT bis.set_consent(NULL, 'email', true)$$,
  '22004', 'contact_id must not be null', 'set_consent: NULL contact');
SELECT throws_ok($$SELECT bis.set_consent('c1', 'fax', true)$$,
  '22023', 'unrecognized channel "fax"', 'set_consent: unknown channel');
SELECT throws_ok($$SELECT bis.set_consent('c1', NULL, true)$$,
  '22004', 'channel must not be null', 'set_consent: NULL channel');
SELECT throws_ok($$SELECT bis.set_consent('c1', 'email', NULL)$$,
  '22004', 'granted must not be null', 'set_consent: NULL granted');
SELECT throws_ok($$SELECT bis.set_consent('c1', 'email', true, repeat('x', 201))$$,
  '22001', 'source is too long', 'set_consent: source too long');
SELECT lives_ok($$SELECT bis.set_consent('c3', 'sms', false, 'form')$$, 'set_consent: withdrawn');
SELECT throws_ok($$SELECT bis.subscribe('c3', 'A-1', channel => 'sms')$$,
  '22023', 'contact "c3" has no phone number', 'subscribe: no phone number comes first');
SELECT lives_ok($$SELECT bis.upsert_contact('c3', phone => '+4670000003')$$, 'c3 gets a phone number');
SELECT throws_ok($$SELECT bis.subscribe('c3', 'A-1', channel => 'sms')$$,
  '55000', 'contact "c3" has withdrawn consent for channel "sms"', 'subscribe: consent withdrawn');
SELECT throws_ok($$SELECT bis.clear_address('c3', 'webpush')$$,
  '22023', 'bis keeps no address for channel "webpush"', 'clear_address: a channel without an address');
SELECT throws_ok($$SELECT bis.clear_address('nobody', 'sms')$$,
  '23503', 'contact "nobody" does not exist', 'clear_address: unknown contact');
SELECT is(bis.clear_address('c3', 'sms'), true, 'clear_address: returns true when it cleared one');
SELECT is(bis.clear_address('c3', 'sms'), false, 'clear_address: and false when there was none');

-- delivery events and purchases
SELECT throws_ok($$SELECT bis.record_event(424242, 'opened')$$,
  '22023', 'notification 424242 does not exist', 'record_event: unknown notification');
SELECT throws_ok($$SELECT bis.record_event(1, 'read')$$,
  '22023', 'unrecognized event "read"', 'record_event: unrecognized event');
SELECT throws_ok($$SELECT bis.record_event(NULL, 'opened')$$,
  '22004', 'notification_id, event and occurred_at must not be null', 'record_event: NULL');
SELECT throws_ok($$SELECT bis.record_purchase('c1', 'A-1', 'o-1', quantity => 0)$$,
  '22023', 'quantity must be at least 1', 'record_purchase: quantity 0');
SELECT throws_ok($$SELECT bis.record_purchase('c1', 'A-1', NULL)$$,
  '22004', 'contact_id, order_id, quantity and purchased_at must not be null', 'record_purchase: NULL order');
SELECT is(bis.record_purchase('c1', 'A-1', 'o-1'), true, 'record_purchase: the first record of a line');
SELECT is(bis.record_purchase('c1', 'A-1', 'o-1', quantity => 3), false, 'record_purchase: a line recorded before');

-- unsubscribe tokens
SELECT throws_ok($$SELECT bis.unsubscribe_by_token('AQAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAA')$$,
  '22023', 'invalid unsubscribe token', 'unsubscribe_by_token: a token bis did not make');
SELECT throws_ok($$SELECT bis.unsubscribe_by_token(NULL)$$,
  '22004', 'token must not be null', 'unsubscribe_by_token: NULL');

SELECT bis.subscribe('c1', 'A-1') AS first_id \gset
SELECT is(bis.subscribe(contact_id => 'c1', sku => 'A-1'), :first_id::bigint, 'subscribe twice returns the same id');
SELECT is(bis.unsubscribe(:first_id), true, 'unsubscribe of an active subscription returns true');
SELECT is(bis.unsubscribe(:first_id), false, 'unsubscribe of a cancelled subscription returns false');
SELECT isnt(bis.subscribe('c1', 'A-1'), :first_id::bigint, 'subscribing again after unsubscribing gives a new id');
SELECT lives_ok($$SELECT bis.subscribe(c, s) FROM (VALUES ('c2', 'A-1'), ('c3', 'A-1'), ('c1', 'T-5'),
                                                         ('c2', 'T-5'), ('c1', 'P-1')) v(c, s)$$,
  'more contacts subscribe');

-- notifications enqueued: set_stock and put_stock_levels return how many
SELECT is(bis.set_stock('A-1', 0), 0, 'set_stock: a first stock row at 0 enqueues nothing');
SELECT is(bis.set_stock('A-1', 2), 3, 'set_stock: 0 -> 2 crosses the threshold 1 and notifies its 3 subscribers');
SELECT is((SELECT count(*)::int FROM bis.notifications WHERE sku = 'A-1'), 3, 'there are 3 notifications for A-1');
SELECT is(bis.set_stock('A-1', 3), 0, 'set_stock: 2 -> 3 crosses nothing');
SELECT is(bis.set_stock('A-1', 0), 0, 'set_stock: a sale enqueues nothing');
SELECT is(bis.set_stock('A-1', 1), 0, 'set_stock: a second crossing does not use the used subscriptions again');
SELECT is(bis.set_stock('T-5', 0), 0, 'set_stock: T-5 starts at 0');
SELECT is(bis.set_stock('T-5', 3), 0, 'set_stock: 0 -> 3 with the item threshold 5 enqueues nothing');
SELECT is(bis.set_stock('T-5', 4), 0, 'set_stock: 3 -> 4 with the item threshold 5 enqueues nothing');
SELECT is(bis.set_stock('T-5', 5), 2, 'set_stock: 4 -> 5 with the item threshold 5 notifies its 2 subscribers');
SELECT results_eq($$SELECT old_quantity, new_quantity, threshold, matched, enqueued
                      FROM bis.restock_events WHERE sku = 'T-5'$$,
  $$VALUES (4::bigint, 5::bigint, 5, 2, 2)$$, 'the T-5 crossing is one restock event');
SELECT is(bis.put_stock_levels('[{"sku": "P-1", "quantity": 4}, {"sku": "A-1", "quantity": 0}]'), 1,
  'put_stock_levels returns the notifications its changes enqueued');

-- track, untrack, the trigger functions, the settings
CREATE SCHEMA tap_inv;
CREATE TABLE tap_inv.inv (sku text, quantity integer, amount numeric, code integer);
CREATE VIEW tap_inv.inv_view AS SELECT * FROM tap_inv.inv;
SELECT throws_ok($$SELECT bis.track('tap_inv.inv', quantity_column => 'qty')$$,
  '42703', 'column "qty" of relation "inv" does not exist', 'track: a column that does not exist');
SELECT throws_ok($$SELECT bis.track('tap_inv.inv', quantity_column => 'amount')$$,
  '42804', 'column "amount" of relation "inv" has type numeric', 'track: a quantity column of the wrong type');
SELECT throws_ok($$SELECT bis.track('tap_inv.inv', sku_column => 'code')$$,
  '42804', 'column "code" of relation "inv" has type integer', 'track: a sku column of the wrong type');
SELECT throws_ok($$SELECT bis.track('tap_inv.inv_view')$$,
  '42809', '"tap_inv.inv_view" is not a table', 'track: a view');
SELECT throws_ok($$SELECT bis.untrack('tap_inv.inv')$$,
  '42704', 'table "tap_inv.inv" is not tracked', 'untrack: a table that is not tracked');
SELECT throws_ok($$SELECT bis.track('bis.stock_levels')$$,
  '55000', 'bis.stock_levels is always tracked', 'track: bis''s own stock table');
SELECT throws_ok($$SELECT bis.untrack('bis.stock_levels')$$,
  '55000', 'bis.stock_levels is always tracked', 'untrack: bis''s own stock table');
SELECT is_empty($$SELECT tgname FROM pg_trigger WHERE tgrelid = 'tap_inv.inv'::regclass$$,
  'track: the failed calls left no trigger');
SELECT lives_ok($$SELECT bis.track('tap_inv.inv')$$, 'track: a table with sku and quantity columns');
SELECT results_eq($$SELECT sku_column::text, quantity_column::text FROM bis.tracked_tables
                     WHERE tbl = 'tap_inv.inv'::regclass$$,
  $$VALUES ('sku', 'quantity')$$, 'bis.tracked_tables lists the tracked table');
SELECT lives_ok($$SELECT bis.untrack('tap_inv.inv')$$, 'untrack: a tracked table');
SELECT throws_ok($$SELECT bis.untrack('tap_inv.inv')$$,
  '42704', 'table "tap_inv.inv" is not tracked', 'untrack: twice');
SELECT throws_ok($$SELECT bis._stock_trigger()$$,
  '39P01', 'function "bis._stock_trigger" was not called by trigger manager', '_stock_trigger called directly');
SELECT throws_ok($$SELECT bis._items_changed()$$,
  '39P01', 'function "bis._items_changed" was not called by trigger manager', '_items_changed called directly');
SELECT throws_ok($$SET bis.default_threshold = 0$$,
  '22023', '0 is outside the valid range for parameter "bis.default_threshold" (1 .. 2147483647)',
  'bis.default_threshold is at least 1');

-- the queue protocol and templates
SELECT throws_ok($$SELECT * FROM bis.claim(NULL)$$, '22004', 'worker must not be null', 'claim: NULL worker');
SELECT throws_ok($$SELECT * FROM bis.claim('m', 0)$$, '22023', 'max_rows must be at least 1', 'claim: max_rows 0');
SELECT throws_ok($$SELECT * FROM bis.claim('m', 1, '-1 second')$$, '22023', 'lease must be a positive interval',
  'claim: negative lease');
SELECT throws_ok($$SELECT bis.ack(ARRAY[424242])$$, '22023', 'notification 424242 does not exist', 'ack: unknown id');
SELECT throws_ok($$SELECT bis.release(NULL)$$, '22004', 'notification ids must not be null', 'release: NULL ids');
SELECT throws_ok($$SELECT bis.fail(424242, 'x')$$, '22023', 'notification 424242 does not exist', 'fail: unknown id');
SELECT throws_ok($$SELECT bis.render('{{item.title', '{}')$$, '22023', 'unterminated placeholder in template',
  'render: unterminated placeholder');
SELECT throws_ok($$UPDATE bis.templates SET body = 'x' WHERE builtin$$, '42501',
  'built-in templates cannot be changed', 'templates: built-in rows are protected');
SELECT throws_ok($$INSERT INTO bis.templates (channel, locale, body) VALUES ('sms', 'sv', '{{a..b}}')$$, '22023',
  'invalid placeholder "{{a..b}}" in template', 'templates: a template that cannot be rendered is refused');

-- a column bis reads cannot be renamed; a partition is tracked through its parent only
CREATE TABLE renamed (sku text, quantity int);
SELECT bis.track('renamed');
SELECT throws_ok($$ALTER TABLE renamed RENAME COLUMN quantity TO qty$$,
  '2BP01', 'cannot alter a column that bis reads in table "renamed"', 'renaming a tracked column');
CREATE TABLE parted (sku text, quantity int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_a PARTITION OF parted FOR VALUES IN ('a');
SELECT bis.track('parted');
SELECT throws_ok($$SELECT bis.untrack('parted_a')$$,
  '55000', 'table "parted_a" is tracked through partitioned table "parted"',
  'untrack a partition of a tracked table');

-- whole numbers written with a fraction of zero, JSON nulls, a SKU of the wrong JSON type
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT is(pg_temp.error_of($$SELECT bis.put_stock_levels('[{"sku": "S-1", "quantity": 5.0}]')$$), NULL,
  'put_stock_levels: quantity 5.0 is the whole number 5');
SELECT is(pg_temp.error_of($$SELECT bis.upsert_items('[{"sku": "A-1", "threshold": 5.0}]')$$), NULL,
  'upsert_items: threshold 5.0 is the whole number 5');
SELECT is(pg_temp.error_of($$SELECT bis.upsert_items('[{"sku": "A-1", "attributes": null}]')$$), NULL,
  'upsert_items: "attributes": null clears the attributes, as a null field does');
SELECT throws_ok($$SELECT bis.put_stock_levels('[{"sku": 123, "quantity": 1}]')$$,
  '22023', 'field "sku" must be a JSON string, not number', 'put_stock_levels: sku of the wrong JSON type');
SELECT throws_ok($$SELECT bis.subscribe(NULL, 'A-1')$$, '22004', 'contact_id must not be null', 'subscribe: NULL contact_id');

-- bis.distribute names Citus where it is absent
SELECT throws_ok($$SELECT bis.distribute()$$, '0A000', 'bis.distribute() needs the Citus extension',
  'distribute: without Citus');
SELECT throws_ok($$SELECT bis.distribute('bis.stock_levels')$$, '0A000',
  'bis.distribute() needs the Citus extension', 'distribute(tbl): without Citus');

SELECT * FROM finish();
ROLLBACK;
