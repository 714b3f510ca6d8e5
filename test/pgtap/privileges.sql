-- privileges.sql: the privilege matrix of bis.grant's duties.  For each duty, every public
-- function of bis and every table and view, allowed or refused, and nothing more: the
-- expected lists are written out here, apart from bis._duty_privileges that grants them.
-- Needs the extensions pgtap and bis already created; changes nothing (ROLLBACK).
BEGIN;
SELECT plan(18);

CREATE ROLE regress_tap_application;
CREATE ROLE regress_tap_mailer;
CREATE ROLE regress_tap_storefront;
CREATE ROLE regress_tap_admin;
SELECT bis.grant(('regress_tap_' || d)::regrole, d) FROM unnest(ARRAY['application', 'mailer', 'storefront', 'admin']) d;

CREATE TEMP TABLE allowed (duty text, fn text);
INSERT INTO allowed
SELECT 'application', f FROM unnest(ARRAY[
    'bis.upsert_items(jsonb)', 'bis.upsert_contact(text,text,text,text,text,text)',
    'bis.set_stock(text,integer,text,text)', 'bis.put_stock_levels(jsonb)',
    'bis.subscribe(text,text,text,text,text,numeric,text,numeric)', 'bis.subscribe_guest(text,text,text,text,text)',
    'bis.unsubscribe(bigint)', 'bis.unsubscribe(text,text)', 'bis.unsubscribe_by_token(text)',
    'bis.set_consent(text,text,boolean,text)', 'bis.clear_address(text,text)',
    'bis.add_push_token(text,text,text)', 'bis.remove_push_token(text,text,text)',
    'bis.add_webpush_subscription(text,jsonb)', 'bis.remove_webpush_subscription(text,text)',
    'bis.contact_subscriptions(text)', 'bis.contact_notifications(text)',
    'bis.record_event(bigint,text,timestamp with time zone,text,jsonb)',
    'bis.record_purchase(text,text,text,integer,numeric,text,timestamp with time zone)',
    'bis.explain(text,text)', 'bis.dry_run(text,bigint,text,text)', 'bis.preview(text,text,text,text,text)',
    'bis.track(regclass,name,name,name,name,name)', 'bis.untrack(regclass)',
    'bis.track_orders(regclass,name,name,name,name,name,name,name)', 'bis._order_trigger()']) f
UNION ALL
SELECT 'mailer', f FROM unnest(ARRAY[
    'bis.claim(text,integer,interval,text[])', 'bis.ack(bigint[],text)',
    'bis.fail(bigint,text,boolean,text)', 'bis.release(bigint[],text)', 'bis.push_targets(bigint[],text)',
    'bis.remove_push_token(text,text,text)', 'bis.remove_webpush_subscription(text,text)',
    'bis.record_event(bigint,text,timestamp with time zone,text,jsonb)']) f
UNION ALL
SELECT 'storefront', f FROM unnest(ARRAY[
    'bis.my_subscribe(text,text,text,text)', 'bis.my_subscriptions()', 'bis.my_unsubscribe(bigint)',
    'bis.subscribe_guest(text,text,text,text,text)', 'bis.unsubscribe_by_token(text)']) f;
-- an admin: everything the others may, and the upkeep
INSERT INTO allowed
SELECT DISTINCT 'admin', fn FROM allowed
UNION
SELECT 'admin', f FROM unnest(ARRAY[
    'bis.requeue(bigint[])', 'bis.expand(integer)', 'bis.purge(interval)',
    'bis.render(text,jsonb,boolean)', 'bis.erase_contact(text)', 'bis.export_contact(text)']) f;

-- every function of bis but the three any role runs (the trigger's WHEN, the view's
-- decoder, the tenants' policies' tenant)
CREATE TEMP VIEW matrix AS
SELECT d AS duty, p.oid::regprocedure::text AS fn,
       has_function_privilege('regress_tap_' || d, p.oid, 'EXECUTE') AS can
  FROM pg_proc p, unnest(ARRAY['application', 'mailer', 'storefront', 'admin']) d
 WHERE p.pronamespace = 'bis'::regnamespace
   AND p.oid NOT IN ('bis._crossing(text,bigint,bigint)'::regprocedure, 'bis._trigger_args(bytea)'::regprocedure,
                     'bis._tenant()'::regprocedure);

SELECT set_eq(
  format($$SELECT fn FROM matrix WHERE duty = %L AND can$$, d),
  format($$SELECT fn FROM allowed WHERE duty = %L$$, d),
  format('the %s duty may execute exactly its functions', d))
  FROM unnest(ARRAY['application', 'mailer', 'storefront', 'admin']) d;
SELECT is_empty(
  $$SELECT duty, fn FROM matrix WHERE can AND fn IN ('bis.grant(regrole,text)', 'bis.revoke(regrole,text)')$$,
  'no duty may grant or revoke duties: the owner does');

-- tables and views: the application and the admin read them all but the signing key;
-- the admin writes templates; nobody writes anything else
CREATE TEMP VIEW table_matrix AS
SELECT d AS duty, c.oid::regclass::text AS tbl, priv,
       has_table_privilege('regress_tap_' || d, c.oid, priv) AS can
  FROM pg_class c, unnest(ARRAY['application', 'mailer', 'storefront', 'admin']) d,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) priv
 WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'v');
SELECT set_eq(
  format($$SELECT tbl, priv FROM table_matrix WHERE duty = %L AND can$$, d),
  CASE WHEN d IN ('application', 'admin')
       THEN $$SELECT c.oid::regclass::text, 'SELECT' FROM pg_class c
               WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'v')
                 AND c.oid <> 'bis.signing_key'::regclass$$
            || CASE WHEN d = 'admin' THEN $$ UNION ALL SELECT 'bis.templates', p
                                             FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p$$ ELSE '' END
       ELSE $$SELECT NULL::text AS tbl, NULL::text AS priv WHERE false$$ END,
  format('the %s duty has exactly its table privileges', d))
  FROM unnest(ARRAY['application', 'mailer', 'storefront', 'admin']) d;

-- the admin may set the settings only a superuser otherwise may, but its tenant
SELECT is_empty(
  $$SELECT name FROM pg_settings WHERE name LIKE 'bis.%' AND context = 'superuser'
      AND name <> 'bis.tenant' AND NOT has_parameter_privilege('regress_tap_admin', name, 'SET')$$,
  'the admin duty may set every setting of bis but bis.tenant');
SELECT ok(NOT has_parameter_privilege('regress_tap_admin', 'bis.tenant', 'SET'),
  'no duty may set bis.tenant: a role that could would act for any tenant');

-- the admin writes templates of its own, checked as bis checks them
SET LOCAL ROLE regress_tap_admin;
SELECT lives_ok($$INSERT INTO bis.templates (kind, channel, locale, body)
                  VALUES ('back_in_stock', 'sms', 'sv_se', 'Tillbaka: {{item.title}}')$$,
  'an admin writes a template');
RESET ROLE;
SELECT is((SELECT locale FROM bis.templates WHERE NOT builtin), 'sv-SE',
  'the admin''s template is checked and its locale made canonical');

-- refused as it happens: 42501
SET LOCAL ROLE regress_tap_mailer;
SELECT throws_ok($$SELECT bis.set_stock('X-1', 1)$$, '42501', NULL, 'a mailer may not set stock');
SELECT throws_ok($$SELECT count(*) FROM bis.notifications$$, '42501', NULL, 'a mailer may not read the queue''s table');
RESET ROLE;
SET LOCAL ROLE regress_tap_storefront;
SELECT throws_ok($$SELECT bis.subscribe('c1', 'A-1')$$, '42501', NULL, 'a storefront may not subscribe anyone');
SELECT throws_ok($$SELECT bis.my_subscriptions()$$, '42501', 'no authenticated shopper',
                 'a storefront without an authenticated shopper is refused');
RESET ROLE;
SET LOCAL ROLE regress_tap_application;
SELECT throws_ok($$SELECT * FROM bis.signing_key$$, '42501', NULL, 'no duty reads the signing key');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
