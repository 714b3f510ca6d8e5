-- Tenants: two shops in one database, the same SKU and contact id in each,
-- kept apart by bis.enable_tenants()
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
-- a database of its own: tenants change who owns bis's functions
CREATE DATABASE regress_bis_tenants;
ALTER DATABASE regress_bis_tenants SET TimeZone = 'UTC';
ALTER DATABASE regress_bis_tenants SET lc_messages = 'C';
\c regress_bis_tenants
SET client_min_messages = warning;
CREATE EXTENSION bis;
RESET client_min_messages;
CREATE ROLE regress_tenant_a_app LOGIN;
CREATE ROLE regress_tenant_a_mailer LOGIN;
CREATE ROLE regress_tenant_a_admin LOGIN;
CREATE ROLE regress_tenant_b_app LOGIN;
CREATE ROLE regress_tenant_b_mailer LOGIN;
SELECT bis.grant('regress_tenant_a_app', 'application'), bis.grant('regress_tenant_b_app', 'application'),
       bis.grant('regress_tenant_a_mailer', 'mailer'), bis.grant('regress_tenant_b_mailer', 'mailer'),
       bis.grant('regress_tenant_a_admin', 'admin');
ALTER ROLE regress_tenant_a_app SET bis.tenant = 'a';
ALTER ROLE regress_tenant_a_mailer SET bis.tenant = 'a';
ALTER ROLE regress_tenant_a_admin SET bis.tenant = 'a';
ALTER ROLE regress_tenant_b_app SET bis.tenant = 'b';
ALTER ROLE regress_tenant_b_mailer SET bis.tenant = 'b';
-- the shop's own inventory table, of tenant a
CREATE TABLE shelf_a (sku text, qty integer);
ALTER TABLE shelf_a OWNER TO regress_tenant_a_app;

-- 1. off: a tenant cannot be set for rows nothing would keep apart, and no
-- role but a superuser (or one granted SET on it) can set one; an admin is not
SET bis.tenant = 'a';
SELECT bis.upsert_contact('ann', email => 'ann@a.example');
RESET bis.tenant;
SET bis.tenant = 'no spaces';
SET ROLE regress_tenant_a_admin;
SET bis.tenant = 'b';
RESET ROLE;
SELECT has_parameter_privilege('regress_tenant_a_admin', 'bis.tenant', 'SET') AS admin_sets_tenant;
SET ROLE regress_tenant_a_admin;
SELECT bis.enable_tenants();
RESET ROLE;

-- 2. on; a second call changes nothing.  A role bis_tenants that someone
-- could log in as or take is refused.
DO $$
BEGIN
    CREATE ROLE bis_tenants;    -- or the one another database's tenants made
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
ALTER ROLE bis_tenants LOGIN;
SELECT bis.enable_tenants();
ALTER ROLE bis_tenants NOLOGIN;
GRANT bis_tenants TO regress_tenant_a_admin;
SELECT bis.enable_tenants();
REVOKE bis_tenants FROM regress_tenant_a_admin;
SELECT bis.enable_tenants();
SELECT bis.enable_tenants();
SELECT c.relname, c.relrowsecurity, array_agg(p.polname ORDER BY p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind = 'r'
 GROUP BY c.relname, c.relrowsecurity ORDER BY c.relname;
-- what stays with the superuser; everything else runs as bis_tenants
SELECT p.oid::regprocedure AS superuser_owned FROM pg_proc p
 WHERE p.pronamespace = 'bis'::regnamespace AND p.proowner <> 'bis_tenants'::regrole ORDER BY 1;
SELECT count(*) AS views_not_bis_tenants FROM pg_class c
 WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind = 'v' AND c.relowner <> 'bis_tenants'::regrole;

-- 3. each shop's catalog, contacts and subscriptions, the same ids in both,
-- written by its application role, whose tenant is its role's setting
\c - regress_tenant_a_app
SHOW bis.tenant;
SET bis.tenant = 'b';
SELECT bis.upsert_items('[{"sku": "T-1", "title": "Tent of A"}, {"sku": "T-2", "title": "Tarp of A"}]');
SELECT bis.upsert_contact('ann', email => 'ann@a.example'), bis.upsert_contact('bo', email => 'bo@a.example');
SELECT bis.subscribe('ann', 'T-1') IS NOT NULL AS a_ann, bis.subscribe('bo', 'T-1') IS NOT NULL AS a_bo,
       bis.subscribe('ann', 'T-2') IS NOT NULL AS a_ann_t2;
INSERT INTO shelf_a VALUES ('T-2', 0);
SELECT bis.track('shelf_a', quantity_column => 'qty');
\c - regress_tenant_b_app
SELECT bis.upsert_items('[{"sku": "T-1", "title": "Tent of B"}]');
SELECT bis.upsert_contact('ann', email => 'ann@b.example');
SELECT bis.subscribe('ann', 'T-1') IS NOT NULL AS b_ann;
-- another tenant's subscription id is no subscription here
SELECT bis.unsubscribe(1) AS b_cancels_a;
\c - postgres
SELECT tenant, sku, title FROM bis.items ORDER BY tenant, sku;
SELECT tenant, contact_id, email FROM bis.contacts ORDER BY tenant, contact_id;
SELECT id, tenant, contact_id, sku, status FROM bis.subscriptions ORDER BY id;

-- 4. an application reads its own rows of bis's tables and views, nothing more
\c - regress_tenant_b_app
SELECT tenant, sku, title FROM bis.items ORDER BY sku;
SELECT id, contact_id, sku FROM bis.subscriptions ORDER BY id;
SELECT id, contact_id, sku, status FROM bis.subscription_history ORDER BY id;
SELECT * FROM bis.contact_subscriptions('bo');
SELECT sku, waiting FROM bis.demand ORDER BY sku;

-- 5. restocks: bis.set_stock and a tracked table's trigger fire their own
-- tenant's subscriptions only
\c - regress_tenant_a_app
SELECT bis.set_stock('T-1', 5) AS a_enqueued;
UPDATE shelf_a SET qty = 3;
\c - regress_tenant_b_app
SELECT bis.set_stock('T-1', 0) AS b_sold_out;
\c - postgres
SELECT tenant, sku, source_table, enqueued FROM bis.restock_events ORDER BY id;
SELECT tenant, contact_id, sku, status FROM bis.notifications ORDER BY id;
SELECT tenant, contact_id, sku, status FROM bis.subscriptions ORDER BY id;

-- 6. a mailer claims, acknowledges and explains its own tenant's notifications
\c - regress_tenant_b_mailer
SELECT count(*) AS b_claims FROM bis.claim('mb');
\c - regress_tenant_b_app
SELECT bis.set_stock('T-1', 4) AS b_enqueued;
\c - regress_tenant_b_mailer
SELECT id, address, subject FROM bis.claim('mb');
SELECT bis.ack(ARRAY[1, 2, 3], 'mb') AS b_acks_a;
\c - regress_tenant_a_mailer
SELECT id, address, subject FROM bis.claim('ma') ORDER BY id;
SELECT bis.ack(ARRAY[1, 2], 'ma') AS a_acks;
SELECT bis.ack(ARRAY[3], 'ma') AS a_acks_b;
\c - regress_tenant_a_app
SELECT subscription_id, sku, outcome, reason LIKE 'enqueued by this restock and sent at %' AS sent
  FROM bis.explain('ann') ORDER BY subscription_id;
\c - postgres
SELECT id, tenant, status, claimed_by FROM bis.notifications ORDER BY id;

-- 7. an admin's templates are its tenant's own; the built-in ones stay everyone's
\c - regress_tenant_a_admin
INSERT INTO bis.templates (kind, channel, locale, subject, body)
VALUES ('back_in_stock', 'email', 'en', 'A says: back', 'A: {{item.title}}');
UPDATE bis.templates SET body = 'taken' WHERE builtin;
INSERT INTO bis.templates (kind, channel, locale, subject, body, tenant)
VALUES ('back_in_stock', 'sms', 'en', NULL, 'for B', 'b');
SELECT tenant, channel, builtin FROM bis.templates WHERE kind = 'back_in_stock' ORDER BY builtin, channel;
SELECT subject FROM bis.preview('back_in_stock', 'email', 'en', 'T-1');
\c - regress_tenant_b_app
SELECT subject FROM bis.preview('back_in_stock', 'email', 'en', 'T-1');

-- 8. a restore or an extension update leaves bis's functions with the
-- superuser, who bypasses the policies: restocks refuse until bis.enable_tenants()
-- hands them back
\c - regress_tenant_a_app
SELECT bis.set_stock('T-2', 0), bis.subscribe('ann', 'T-2') IS NOT NULL AS subscribed;
\c - postgres
ALTER FUNCTION bis._stock_trigger() OWNER TO postgres;
\c - regress_tenant_a_app
SELECT bis.set_stock('T-2', 5);
\c - postgres
SELECT bis.enable_tenants();
\c - regress_tenant_a_app
SELECT bis.set_stock('T-2', 5) AS after_enable;

-- pg_dump keeps bis.tenancy but not the policies: until they are back, bis
-- refuses every role, one without a tenant too, who would see every tenant's rows
\c - postgres
SELECT enabled, enabled_at <= now() AS enabled_before FROM bis.tenancy;
CREATE ROLE regress_tenant_none_mailer LOGIN;
SELECT bis.grant('regress_tenant_none_mailer', 'mailer');
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT p.polrelid FROM pg_policy p WHERE p.polname = 'tenant' LOOP
        EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;
\c - regress_tenant_none_mailer
SELECT count(*) FROM bis.claim('m0');
\c - regress_tenant_a_app
SELECT bis.subscribe('bo', 'T-2');
\c - postgres
SELECT bis.enable_tenants();
\c - regress_tenant_none_mailer
SELECT count(*) AS claimed_of_no_tenant FROM bis.claim('m0');

\c - postgres
SELECT bis.revoke('regress_tenant_none_mailer', 'mailer');
SELECT bis.revoke('regress_tenant_a_admin', 'admin');
\c contrib_regression postgres
DROP DATABASE regress_bis_tenants;
DROP ROLE regress_tenant_a_app, regress_tenant_a_mailer, regress_tenant_a_admin,
          regress_tenant_b_app, regress_tenant_b_mailer, regress_tenant_none_mailer;
