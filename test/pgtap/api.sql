-- api.sql: the shape of bis's SQL API (schema bis), as PRODUCT.md and STYLE.md promise it:
-- tables, view, public functions with their argument types, names, defaults and return types,
-- pinned search_path, comments everywhere, no PUBLIC privileges, keys, triggers and settings.
-- Needs the extensions pgtap and bis already created; changes nothing (ROLLBACK).
BEGIN;
SELECT plan(190);

-- the public functions: name, argument types, return type, argument names, full signature
CREATE TEMP TABLE api (name name, args name[], returns text, argnames text[], signature text);
INSERT INTO api VALUES
  ('upsert_items', '{jsonb}', 'integer', '{items}', 'items jsonb'),
  ('upsert_contact', '{text,text,text,text,text,text}', 'text',
   '{contact_id,email,phone,locale,time_zone,first_name}',
   'contact_id text, email text DEFAULT NULL::text, phone text DEFAULT NULL::text, '
   'locale text DEFAULT NULL::text, time_zone text DEFAULT NULL::text, first_name text DEFAULT NULL::text'),
  ('set_stock', '{text,integer,text,text}', 'integer', '{sku,quantity,locale,external_id}',
   'sku text, quantity integer, locale text DEFAULT NULL::text, external_id text DEFAULT NULL::text'),
  ('put_stock_levels', '{jsonb}', 'integer', '{levels}', 'levels jsonb'),
  ('set_consent', '{text,text,boolean,text}', 'void', '{contact_id,channel,granted,source}',
   'contact_id text, channel text, granted boolean, source text DEFAULT NULL::text'),
  ('clear_address', '{text,text}', 'boolean', '{contact_id,channel}', 'contact_id text, channel text'),
  ('subscribe', '{text,text,text,text,text,numeric,text,numeric}', 'bigint',
   '{contact_id,sku,locale,external_id,channel,max_price,kind,target_price}',
   'contact_id text, sku text, locale text DEFAULT NULL::text, external_id text DEFAULT NULL::text, '
   'channel text DEFAULT ''email''::text, max_price numeric DEFAULT NULL::numeric, '
   'kind text DEFAULT ''back_in_stock''::text, target_price numeric DEFAULT NULL::numeric'),
  ('unsubscribe', '{bigint}', 'boolean', '{subscription_id}', 'subscription_id bigint'),
  ('unsubscribe', '{text,text}', 'integer', '{contact_id,sku}', 'contact_id text, sku text'),
  ('unsubscribe_by_token', '{text}', 'integer', '{token}', 'token text'),
  ('grant', '{regrole,text}', 'void', '{role,duty}', 'role regrole, duty text'),
  ('revoke', '{regrole,text}', 'void', '{role,duty}', 'role regrole, duty text'),
  ('enable_tenants', '{}', 'void', NULL, ''),
  ('my_subscribe', '{text,text,text,text}', 'bigint', '{sku,locale,external_id,channel}',
   'sku text, locale text DEFAULT NULL::text, external_id text DEFAULT NULL::text, channel text DEFAULT ''email''::text'),
  ('my_subscriptions', '{}', 'setof bis.subscription_history', NULL, ''),
  ('my_unsubscribe', '{bigint}', 'boolean', '{subscription_id}', 'subscription_id bigint'),
  ('export_contact', '{text}', 'jsonb', '{contact_id}', 'contact_id text'),
  ('erase_contact', '{text}', 'jsonb', '{contact_id}', 'contact_id text'),
  ('explain', '{text,text}', 'setof record',
   '{contact_id,sku,subscription_id,sku,channel,restock_event_id,restocked_at,outcome,reason}',
   'contact_id text, sku text DEFAULT NULL::text'),
  ('dry_run', '{text,bigint,text,text}', 'setof record',
   '{sku,quantity,locale,external_id,contact_id,channel,subscription_id,wave,outcome,rule}',
   'sku text, quantity bigint, locale text DEFAULT NULL::text, external_id text DEFAULT NULL::text'),
  ('contact_notifications', '{text}', 'setof bis.notification_history', '{contact_id}', 'contact_id text'),
  ('subscribe_guest', '{text,text,text,text,text}', 'bigint', '{email,sku,locale,external_id,channel}',
   'email text, sku text, locale text DEFAULT NULL::text, external_id text DEFAULT NULL::text, '
   'channel text DEFAULT ''email''::text'),
  ('preview', '{text,text,text,text,text}', 'setof record',
   '{kind,channel,locale,sku,contact_id,subject,body,body_html}',
   'kind text, channel text, locale text, sku text, contact_id text DEFAULT NULL::text'),
  ('record_event', '{bigint,text,"timestamp with time zone",text,jsonb}', 'boolean',
   '{notification_id,event,occurred_at,provider_event_id,detail}',
   'notification_id bigint, event text, occurred_at timestamp with time zone DEFAULT now(), '
   'provider_event_id text DEFAULT NULL::text, detail jsonb DEFAULT NULL::jsonb'),
  ('record_purchase', '{text,text,text,integer,numeric,text,"timestamp with time zone"}', 'boolean',
   '{contact_id,sku,order_id,quantity,amount,currency,purchased_at}',
   'contact_id text, sku text, order_id text, quantity integer DEFAULT 1, amount numeric DEFAULT NULL::numeric, '
   'currency text DEFAULT NULL::text, purchased_at timestamp with time zone DEFAULT now()'),
  ('track_orders', '{regclass,name,name,name,name,name,name,name}', 'void',
   '{tbl,order_id_column,sku_column,contact_id_column,quantity_column,amount_column,currency_column,purchased_at_column}',
   'tbl regclass, order_id_column name DEFAULT ''order_id''::name, sku_column name DEFAULT ''sku''::name, '
   'contact_id_column name DEFAULT ''contact_id''::name, quantity_column name DEFAULT NULL::name, '
   'amount_column name DEFAULT NULL::name, currency_column name DEFAULT NULL::name, '
   'purchased_at_column name DEFAULT NULL::name'),
  ('contact_subscriptions', '{text}', 'setof bis.subscription_history', '{contact_id}', 'contact_id text'),
  ('track', '{regclass,name,name,name,name,name}', 'void',
   '{tbl,sku_column,quantity_column,locale_column,external_id_column,price_column}',
   'tbl regclass, sku_column name DEFAULT ''sku''::name, quantity_column name DEFAULT ''quantity''::name, '
   'locale_column name DEFAULT NULL::name, external_id_column name DEFAULT NULL::name, '
   'price_column name DEFAULT NULL::name'),
  ('untrack', '{regclass}', 'void', '{tbl}', 'tbl regclass'),
  ('claim', '{text,integer,interval,text[]}', 'setof bis.message', '{worker,max_rows,lease,channels}',
   'worker text, max_rows integer DEFAULT 100, lease interval DEFAULT ''00:05:00''::interval, '
   'channels text[] DEFAULT NULL::text[]'),
  ('ack', '{bigint[],text}', 'integer', '{ids,worker}', 'ids bigint[], worker text DEFAULT NULL::text'),
  ('fail', '{bigint,text,boolean,text}', 'text', '{id,error,retry,worker}',
   'id bigint, error text, retry boolean DEFAULT true, worker text DEFAULT NULL::text'),
  ('release', '{bigint[],text}', 'integer', '{ids,worker}', 'ids bigint[], worker text DEFAULT NULL::text'),
  ('requeue', '{bigint[]}', 'integer', '{ids}', 'ids bigint[]'),
  ('expand', '{integer}', 'integer', '{max_chunks}', 'max_chunks integer DEFAULT 1'),
  ('purge', '{interval}', 'setof record', '{older_than,notifications,subscriptions,restock_events}',
   'older_than interval DEFAULT NULL::interval'),
  ('render', '{text,jsonb,boolean}', 'text', '{template,payload,html}',
   'template text, payload jsonb, html boolean DEFAULT false'),
  ('add_push_token', '{text,text,text}', 'boolean', '{contact_id,platform,token}',
   'contact_id text, platform text, token text'),
  ('remove_push_token', '{text,text,text}', 'boolean', '{contact_id,platform,token}',
   'contact_id text, platform text, token text'),
  ('add_webpush_subscription', '{text,jsonb}', 'boolean', '{contact_id,subscription}',
   'contact_id text, subscription jsonb'),
  ('remove_webpush_subscription', '{text,text}', 'boolean', '{contact_id,endpoint}',
   'contact_id text, endpoint text'),
  ('push_targets', '{bigint[],text}', 'setof record',
   '{ids,worker,notification_id,contact_id,platform,token,p256dh,auth}', 'ids bigint[], worker text'),
  ('distribute', '{}', 'void', NULL, ''),
  ('distribute', '{regclass}', 'void', '{tbl}', 'tbl regclass');

-- schema, tables, views, the claim's type (1 + 1 + 16 + 3 + 1)
SELECT has_schema('bis');
SELECT tables_are('bis', ARRAY['items', 'contacts', 'consents', 'stock_levels', 'subscriptions',
                               'restock_events', 'notifications', 'templates', 'send_windows',
                               'signing_key', 'push_tokens', 'webpush_subscriptions',
                               'delivery_events', 'purchases', 'restock_turns', 'tenancy']);
SELECT has_table('bis', t, format('table bis.%s exists', t))
  FROM unnest(ARRAY['items', 'contacts', 'consents', 'stock_levels', 'subscriptions',
                    'restock_events', 'notifications', 'templates', 'send_windows',
                    'signing_key', 'push_tokens', 'webpush_subscriptions',
                    'delivery_events', 'purchases', 'restock_turns', 'tenancy']::name[]) t;
SELECT has_view('bis', 'tracked_tables', 'view bis.tracked_tables exists');
SELECT has_view('bis', 'subscription_history', 'view bis.subscription_history exists');
SELECT has_view('bis', 'notification_history', 'view bis.notification_history exists');
SELECT has_view('bis', v, format('view bis.%s exists', v))
  FROM unnest(ARRAY['queue_health', 'demand', 'recent_restocks', 'funnel']::name[]) v;
SELECT has_composite('bis', 'message', 'type bis.message, what bis.claim returns, exists');

-- each public function: exists with these argument types, returns, argument names (43 x 3)
SELECT has_function('bis', name, args, format('bis.%s(%s) exists', name, array_to_string(args, ', ')))
  FROM api ORDER BY name;
SELECT function_returns('bis', name, args, returns, format('bis.%s returns %s', name, returns))
  FROM api ORDER BY name;
SELECT is((SELECT p.proargnames FROM pg_proc p
            WHERE p.oid = to_regprocedure(format('bis.%s(%s)', name, array_to_string(args, ',')))),
          argnames, format('bis.%s has the argument names %s', name, argnames))
  FROM api ORDER BY name;

-- the defaults are part of the contract too
SELECT results_eq(
  $$SELECT a.name::text, pg_get_function_arguments(to_regprocedure(
             format('bis.%s(%s)', a.name, array_to_string(a.args, ','))))
      FROM api a ORDER BY 1, 2$$,
  $$SELECT name::text, signature FROM api ORDER BY 1, 2$$,
  'the public functions have the documented defaults');

-- everything in bis that does not start with "_" is the public API; the rest is internal
SELECT set_eq(
  $$SELECT proname FROM pg_proc WHERE pronamespace = 'bis'::regnamespace AND proname !~ '^_'$$,
  $$SELECT name FROM api$$,
  'the functions of bis not starting with "_" are exactly the public API');
SELECT isnt_empty(
  $$SELECT proname FROM pg_proc WHERE pronamespace = 'bis'::regnamespace AND proname ~ '^_'$$,
  'the helpers of bis are named with a leading "_"');

-- search_path is pinned wherever names are looked up: C functions (bis.render) look up none
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p JOIN api a ON a.name = p.proname
      JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'bis'::regnamespace AND l.lanname <> 'c'
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
  'every public SQL and PL/pgSQL function has SET search_path = pg_catalog, pg_temp');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'bis'::regnamespace AND l.lanname <> 'c'
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
  'every SQL and PL/pgSQL function in bis has SET search_path = pg_catalog, pg_temp');

-- the verbs run as the extension's owner, so roles need EXECUTE only; bis.track and
-- bis.untrack run as the caller, who must own the table, and so does bis.distribute,
-- whose caller must own the tables it distributes, and bis.enable_tenants, whose
-- caller must be a superuser
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p JOIN api a ON a.name = p.proname
     WHERE p.pronamespace = 'bis'::regnamespace AND NOT p.prosecdef
       AND p.proname NOT IN ('track', 'untrack', 'track_orders', 'render', 'grant', 'revoke', 'distribute',
                             'enable_tenants')$$,
  'the public functions but track, untrack, track_orders, render, grant, revoke, distribute and enable_tenants are SECURITY DEFINER');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'bis'::regnamespace AND p.prosecdef
       AND p.proname IN ('track', 'untrack', 'track_orders', 'render', 'grant', 'revoke', 'distribute',
                         'enable_tenants')$$,
  'track, untrack, track_orders, render, grant, revoke, distribute and enable_tenants run with the caller''s rights');

-- bis.distribute() drops and adds back the foreign keys into the catalog
-- from one list: it must be every one of them, as the tables define it
SELECT set_eq(
  $$SELECT c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
     WHERE c.connamespace = 'bis'::regnamespace AND c.contype = 'f'$$,
  $$SELECT * FROM bis._catalog_foreign_keys()$$,
  'bis._catalog_foreign_keys() lists every foreign key of bis''s tables as defined');

-- comments on every table, view, column and function
SELECT is_empty(
  $$SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'p')
       AND obj_description(c.oid, 'pg_class') IS NULL$$,
  'every table in bis has a comment');
SELECT is_empty(
  $$SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('v', 'm')
       AND obj_description(c.oid, 'pg_class') IS NULL$$,
  'every view in bis has a comment');
SELECT is_empty(
  $$SELECT c.oid::regclass, a.attname FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'p')
       AND col_description(c.oid, a.attnum) IS NULL$$,
  'every column of every table in bis has a comment');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'bis'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL$$,
  'every function in bis has a comment');

-- nothing granted to PUBLIC (grantee 0); a NULL ACL means the default, which grants EXECUTE
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p,
           aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
     WHERE p.pronamespace = 'bis'::regnamespace AND x.grantee = 0
       AND p.oid NOT IN ('bis._crossing(text, bigint, bigint)'::regprocedure,
                         'bis._trigger_args(bytea)'::regprocedure, 'bis._tenant()'::regprocedure)$$,
  'no function in bis is executable by PUBLIC but the WHEN clause of its triggers, the decoder of bis.tracked_tables and the tenants'' policies'' tenant');
SELECT is_empty(
  $$SELECT c.oid::regclass, x.privilege_type FROM pg_class c,
           aclexplode(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char",
                                                   c.relowner))) x
     WHERE c.relnamespace = 'bis'::regnamespace AND x.grantee = 0$$,
  'no table, view or sequence in bis grants PUBLIC anything');

-- keys: one row per SKU, contact (of a tenant), subscription, event, notification (5 + 3)
SELECT col_is_pk('bis', 'items', ARRAY['sku', 'tenant'], 'bis.items is keyed by sku and tenant');
SELECT col_is_pk('bis', 'contacts', ARRAY['contact_id', 'tenant'], 'bis.contacts is keyed by contact_id and tenant');
SELECT col_is_pk('bis', 'subscriptions', 'id', 'bis.subscriptions is keyed by id');
SELECT col_is_pk('bis', 'restock_events', 'id', 'bis.restock_events is keyed by id');
SELECT col_is_pk('bis', 'notifications', 'id', 'bis.notifications is keyed by id');
SELECT hasnt_pk('bis', 'stock_levels', 'bis.stock_levels has no primary key (locale, external_id may be NULL)');
SELECT index_is_unique('bis', 'stock_levels', 'stock_levels_key',
                       'bis.stock_levels is unique on sku, locale and external_id');
SELECT has_index('bis', 'notifications', 'notifications_contact_idx', ARRAY['contact_id']::name[],
                 'a contact''s notifications are found by an index');

-- triggers (3 + 2 + 1): bis.stock_levels has none on INSERT, so that pg_restore's rows are not restocks
SELECT hasnt_trigger('bis', 'stock_levels', 'bis_stock_insert', 'bis.stock_levels has no trigger bis_stock_insert');
SELECT has_trigger('bis', 'stock_levels', 'bis_stock_update', 'bis.stock_levels has trigger bis_stock_update');
SELECT has_trigger('bis', 'items', 'items_changed', 'bis.items has trigger items_changed');
SELECT trigger_is('bis', 'stock_levels', 'bis_stock_update', 'bis', '_stock_trigger',
                  'bis_stock_update calls bis._stock_trigger()');
SELECT trigger_is('bis', 'items', 'items_changed', 'bis', '_items_changed',
                  'items_changed calls bis._items_changed()');
SELECT results_eq(
  $$SELECT tbl::text, sku_column::text, quantity_column::text, locale_column::text,
           external_id_column::text
      FROM bis.tracked_tables WHERE tbl = 'bis.stock_levels'::regclass$$,
  $$VALUES ('bis.stock_levels', 'sku', 'quantity', 'locale', 'external_id')$$,
  'bis.tracked_tables shows bis.stock_levels with its four columns');

-- settings, defined when the library loads (the first call of a bis C function loads it)
SELECT is(bis.set_stock('X-1', 0), 0, 'a first stock row at 0 enqueues nothing (and loads the library)');
SELECT is(current_setting('bis.default_threshold'), '1', 'bis.default_threshold is 1');
SELECT is(current_setting('bis.notify'), 'on', 'bis.notify is on');
SELECT results_eq(
  $$SELECT name, boot_val, vartype, context FROM pg_settings WHERE name LIKE 'bis.%' ORDER BY name$$,
  $$VALUES ('bis.conversion_window'::text, '7 days'::text, 'string'::text, 'superuser'::text),
           ('bis.default_locale', 'en', 'string', 'superuser'),
           ('bis.default_threshold', '1', 'integer', 'user'),
           ('bis.default_time_zone', 'UTC', 'string', 'superuser'),
           ('bis.expand_chunk', '1000', 'integer', 'superuser'),
           ('bis.frequency_cap_action', 'hold', 'enum', 'superuser'),
           ('bis.item_send_rate', '', 'string', 'superuser'),
           ('bis.max_attempts', '8', 'integer', 'superuser'),
           ('bis.max_per_contact_day', '0', 'integer', 'superuser'),
           ('bis.max_reminders', '0', 'integer', 'superuser'),
           ('bis.max_subscriptions_per_contact', '0', 'integer', 'superuser'),
           ('bis.notification_ttl', '604800', 'integer', 'superuser'),
           ('bis.notify', 'on', 'bool', 'user'),
           ('bis.price_drop_min_percent', '10', 'integer', 'superuser'),
           ('bis.quiet_hours', '', 'string', 'superuser'),
           ('bis.quiet_hours_action', 'hold', 'enum', 'superuser'),
           ('bis.quiet_hours_channels', 'sms,push', 'string', 'superuser'),
           ('bis.reminder_interval', '1 day', 'string', 'superuser'),
           ('bis.restock_dwell', '', 'string', 'superuser'),
           ('bis.retention', '2592000', 'integer', 'superuser'),
           ('bis.retry_base_delay', '30', 'integer', 'superuser'),
           ('bis.retry_max_delay', '21600', 'integer', 'superuser'),
           ('bis.send_rate', '', 'string', 'superuser'),
           ('bis.signup_rate', '', 'string', 'superuser'),
           ('bis.subscription_ttl', '', 'string', 'superuser'),
           ('bis.tenant', '', 'string', 'superuser'),
           ('bis.unsubscribe_mailto', '', 'string', 'superuser'),
           ('bis.unsubscribe_url', '', 'string', 'superuser'),
           ('bis.wave_interval', '3600', 'integer', 'superuser'),
           ('bis.wave_per_unit', '0', 'integer', 'superuser')$$,
  'the settings, their defaults, and who may set them: sessions the stock ones, superusers the queue''s and the rules''');

SELECT * FROM finish();
ROLLBACK;
