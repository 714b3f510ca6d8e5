-- Security and correctness: what bis runs as its owner never runs a table owner's code;
-- any role may alter its own tables; a table's owner tracks it with the documented
-- grants; column names are read as the catalog holds them; no public function ends
-- in an internal error; settings cannot make a stock update fail; links are web links;
-- input is bounded
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_bis_owner;
DROP ROLE IF EXISTS regress_bis_mailer;
DROP ROLE IF EXISTS regress_bis_stranger;
RESET client_min_messages;

-- the roles as the README's Privileges section grants them
CREATE ROLE regress_bis_owner LOGIN;
CREATE ROLE regress_bis_mailer LOGIN;
CREATE ROLE regress_bis_stranger LOGIN;
GRANT USAGE ON SCHEMA bis TO regress_bis_owner, regress_bis_mailer;
GRANT EXECUTE ON FUNCTION bis.track(regclass, name, name, name, name, name), bis.untrack(regclass)
   TO regress_bis_owner;
GRANT EXECUTE ON FUNCTION bis.claim(text, integer, interval, text[]), bis.ack(bigint[], text),
      bis.fail(bigint, text, boolean, text), bis.release(bigint[], text) TO regress_bis_mailer;
CREATE SCHEMA app AUTHORIZATION regress_bis_owner;
CREATE SCHEMA strange AUTHORIZATION regress_bis_stranger;

SELECT bis.upsert_items('[{"sku": "W-1", "title": "Wool hat", "wave_per_unit": 1}]');
SELECT count(bis.upsert_contact('c' || n, email => 'c' || n || '@example.com')) FROM generate_series(1, 6) n;
SELECT count(bis.subscribe('c' || n, 'W-1')) FROM generate_series(1, 6) n;

-- 1. A table's owner plants code that PostgreSQL runs while planning a query on the
-- table: an index expression, a partial index's predicate, an extended statistics
-- expression and an inheritance child's CHECK constraint.  Each logs who ran it and
-- tries to make the owner a superuser.
SET ROLE regress_bis_owner;
CREATE TABLE app.ran (who name, plant text);
GRANT INSERT ON app.ran TO PUBLIC;
CREATE FUNCTION app.escalate(plant text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO app.ran VALUES (current_user, plant);
    BEGIN
        ALTER ROLE regress_bis_owner SUPERUSER;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN true;
END
$$;
-- an index expression must be immutable: a wrapper that calls the volatile one
CREATE FUNCTION app.plant(plant text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM app.escalate(plant);
    RETURN true;
END
$$;
CREATE TABLE app.stock (sku text, qty integer, note text);
INSERT INTO app.stock VALUES ('W-1', 0, NULL);
CREATE INDEX stock_expression_idx ON app.stock ((sku || app.plant('index expression')::text));
CREATE INDEX stock_predicate_idx ON app.stock (sku) WHERE app.plant('partial index predicate');
CREATE STATISTICS app.stock_stats ON (sku || app.plant('statistics expression')::text), qty FROM app.stock;
CREATE TABLE app.stock_child (CHECK (app.plant('child CHECK constraint'))) INHERITS (app.stock);
ANALYZE app.stock;
-- the owner tracks its table with the documented grants only
SELECT bis.track('app.stock', quantity_column => 'qty');
-- a restock of 1 in stock: the first wave tells one subscriber, the next waits an hour
UPDATE app.stock SET qty = 1;
RESET ROLE;
SELECT * FROM bis.tracked_tables WHERE tbl = 'app.stock'::regclass;
SELECT expansion, wave, enqueued FROM bis.restock_events;
UPDATE bis.restock_events SET next_wave_at = now() - interval '1 second';
TRUNCATE app.ran;

-- a mailer with the README's grants, in a session of its own, drains the first wave and
-- claims again: the next wave is due, and it re-reads the stock of app.stock
\c - regress_bis_mailer
SELECT bis.ack(array_agg(id), 'mailer') AS acked FROM bis.claim('mailer');
SELECT count(*) AS second_wave FROM bis.claim('mailer');
\c - postgres
-- the planted code ran as the table's owner, if at all, and could not escalate
SELECT plant, array_agg(DISTINCT who::text) AS ran_as FROM app.ran GROUP BY plant ORDER BY plant;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_bis_owner';
SELECT expansion, wave, enqueued FROM bis.restock_events;

-- 2. Any role alters its own tables in a database with bis, without any right on bis;
-- only a change that breaks a tracked column is refused
SET ROLE regress_bis_stranger;
CREATE TABLE strange.orders (id int, sku text, qty int);
ALTER TABLE strange.orders ADD COLUMN placed_at timestamptz;
RESET ROLE;
SELECT bis.track('strange.orders', quantity_column => 'qty');
SET ROLE regress_bis_stranger;
ALTER TABLE strange.orders RENAME COLUMN qty TO quantity;
ALTER TABLE strange.orders RENAME COLUMN placed_at TO ordered_at;
ALTER TABLE strange.orders ALTER COLUMN qty TYPE numeric;
ALTER TABLE strange.orders DROP COLUMN sku;
RESET ROLE;

-- 3. bis.track needs the table's ownership, not a superuser: another role is refused
GRANT USAGE ON SCHEMA strange TO regress_bis_owner;
SET ROLE regress_bis_owner;
SELECT bis.track('strange.orders', quantity_column => 'qty');
SELECT bis.untrack('strange.orders');
RESET ROLE;

-- 4. Column names with non-ASCII characters and backslashes are read as the catalog
-- holds them: the view shows them, an unrelated ALTER TABLE works, and a wave re-reads
-- the stock
CREATE TABLE app.lager (artikel text, "antal_på_lager" bigint, "hylla\plats" text);
INSERT INTO app.lager VALUES ('W-1', 0, NULL);
SELECT bis.track('app.lager', 'artikel', 'antal_på_lager', external_id_column => 'hylla\plats');
SELECT * FROM bis.tracked_tables WHERE tbl = 'app.lager'::regclass;
ALTER TABLE app.lager ADD COLUMN anteckning text;
SELECT count(bis.subscribe('c' || n, 'W-1')) FROM generate_series(1, 3) n;
UPDATE app.lager SET "antal_på_lager" = 1;
SELECT sku, expansion, wave, enqueued FROM bis.restock_events WHERE source_table = 'app.lager';
UPDATE bis.restock_events SET next_wave_at = now() - interval '1 second' WHERE source_table = 'app.lager';
SELECT bis.expand(5) AS next_wave;
SELECT sku, expansion, wave, enqueued FROM bis.restock_events WHERE source_table = 'app.lager';

-- 5. No public function ends in an internal error for a NULL
SELECT bis.track(NULL);
SELECT bis.untrack(NULL);
SELECT bis.track('app.lager', NULL);

-- 6. Wave settings are checked where they are written, and waves are sized in a range
-- that cannot overflow: no stock update fails because of them
SELECT bis.upsert_items('[{"sku": "W-1", "wave_per_unit": 2000000000}]');
SELECT bis.upsert_items('[{"sku": "W-1", "wave_interval": "99999999 years"}]');
SELECT bis.upsert_items('[{"sku": "W-1", "wave_per_unit": 1000000, "wave_interval": "365 days"}]');
SELECT bis.set_stock('W-1', 0), bis.set_stock('W-1', 1500000000) AS huge_restock;
SELECT new_quantity, wave_quota FROM bis.restock_events ORDER BY id DESC LIMIT 1;
UPDATE app.lager SET "antal_på_lager" = 0;
UPDATE app.lager SET "antal_på_lager" = 3000000000;
SELECT new_quantity, wave_quota FROM bis.restock_events ORDER BY id DESC LIMIT 1;
SET bis.wave_per_unit = 2000000000;

-- 7. An item's links are web links: javascript: and data: are refused where they are
-- written, and {{url:...}} renders nothing but http and https
SELECT bis.upsert_items('[{"sku": "X-1", "url": "javascript:alert(1)"}]');
SELECT bis.upsert_items('[{"sku": "X-1", "image_url": "data:text/html,<script>alert(1)</script>"}]');
SELECT bis.upsert_items('[{"sku": "X-1", "url": "https://shop.example/x 1"}]');
SELECT bis.upsert_items('[{"sku": "X-1", "url": "HTTPS://shop.example/x-1"}]');
SELECT bis.render('<a href="{{url:item.link}}">x</a>', '{"item": {"link": "javascript:alert(1)"}}', true);
SELECT bis.render('<a href="{{url:item.link|https://shop.example}}">x</a>', '{"item": {"link": "data:text/html,x"}}', true);
SELECT bis.render('<a href="{{ url:item.link }}">x</a>', '{"item": {"link": "https://shop.example/?a=1&b=\"2\""}}', true);
SELECT count(*) AS builtin_templates_with_bare_links FROM bis.templates
 WHERE builtin AND concat(body, body_html) ~ '\{\{\s*item\.url';

-- 8. Input is bounded: an address, a name or a key never takes a megabyte
SELECT bis.upsert_contact('big', email => repeat('x', 1000000) || '@example.com');
SELECT bis.upsert_contact('big', locale => 'sv-' || repeat('x', 1000000));
SELECT bis.upsert_contact(repeat('x', 256));
SELECT bis.upsert_contact('big', first_name => repeat('x', 201));
SELECT bis.subscribe('c1', 'W-1', external_id => repeat('x', 256));
SELECT bis.set_stock('W-1', 1, locale => 'sv-' || repeat('x', 40));
SELECT count(*) AS contacts_named_big FROM bis.contacts WHERE contact_id = 'big';

DROP TABLE app.lager, strange.orders, app.stock CASCADE;
DROP SCHEMA app CASCADE;
DROP SCHEMA strange CASCADE;
DROP OWNED BY regress_bis_owner, regress_bis_mailer, regress_bis_stranger;
DROP ROLE regress_bis_owner;
DROP ROLE regress_bis_mailer;
DROP ROLE regress_bis_stranger;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
