/* bis--0.1.sql: back-in-stock notifications inside PostgreSQL */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION bis" to load this file. \quit

/*
 * Tables
 */

CREATE TABLE bis.items (
    sku text PRIMARY KEY
        CONSTRAINT items_sku_check CHECK (sku ~ '^[A-Za-z0-9_-]{1,128}$'),
    title text,
    url text,
    image_url text,
    price numeric CHECK (price >= 0),
    compare_at_price numeric CHECK (compare_at_price >= 0),
    currency text,
    category text,
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'draft', 'archived')),
    attributes jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    threshold integer CHECK (threshold >= 1),
    alerts_enabled boolean NOT NULL DEFAULT true,
    wave_per_unit integer CHECK (wave_per_unit >= 1),
    wave_interval interval CHECK (wave_interval > interval '0'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- the trigger loads the items that have a threshold of their own
CREATE INDEX items_threshold_idx ON bis.items (sku) INCLUDE (threshold)
    WHERE threshold IS NOT NULL;

COMMENT ON TABLE bis.items IS 'The catalog: one row per SKU, with the product data a message needs';
COMMENT ON COLUMN bis.items.sku IS 'Stock keeping unit: 1 to 128 letters, digits, hyphens or underscores';
COMMENT ON COLUMN bis.items.title IS 'Product title';
COMMENT ON COLUMN bis.items.url IS 'Product page';
COMMENT ON COLUMN bis.items.image_url IS 'Product image';
COMMENT ON COLUMN bis.items.price IS 'Current price';
COMMENT ON COLUMN bis.items.compare_at_price IS 'Price before a sale';
COMMENT ON COLUMN bis.items.currency IS 'Currency of the prices, such as EUR';
COMMENT ON COLUMN bis.items.category IS 'Product category';
COMMENT ON COLUMN bis.items.status IS 'active, draft or archived, as in Shopify';
COMMENT ON COLUMN bis.items.attributes IS 'Free-form product attributes, a JSON object';
COMMENT ON COLUMN bis.items.threshold IS 'Quantity at which the SKU is back in stock; NULL: the setting bis.default_threshold';
COMMENT ON COLUMN bis.items.alerts_enabled IS 'Whether a restock of this SKU notifies its subscribers';
COMMENT ON COLUMN bis.items.wave_per_unit IS 'Subscribers notified per unit in stock in each wave; NULL: the setting bis.wave_per_unit';
COMMENT ON COLUMN bis.items.wave_interval IS 'Time between waves; NULL: the setting bis.wave_interval';
COMMENT ON COLUMN bis.items.created_at IS 'When the item was added';
COMMENT ON COLUMN bis.items.updated_at IS 'When the item was last changed';

CREATE TABLE bis.contacts (
    contact_id text PRIMARY KEY CHECK (contact_id <> ''),
    email text,
    phone text,
    locale text,
    time_zone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE bis.contacts IS 'Who is notified: one row per contact id chosen by the application';
COMMENT ON COLUMN bis.contacts.contact_id IS 'The application''s id for the contact';
COMMENT ON COLUMN bis.contacts.email IS 'Address for the email channel';
COMMENT ON COLUMN bis.contacts.phone IS 'Number for the sms channel';
COMMENT ON COLUMN bis.contacts.locale IS 'Preferred language of messages, such as sv-SE';
COMMENT ON COLUMN bis.contacts.time_zone IS 'IANA time zone, such as Europe/Stockholm';
COMMENT ON COLUMN bis.contacts.created_at IS 'When the contact was added';
COMMENT ON COLUMN bis.contacts.updated_at IS 'When the contact was last changed';

CREATE TABLE bis.stock_levels (
    sku text NOT NULL CHECK (sku ~ '^[A-Za-z0-9_-]{1,128}$'),
    locale text CHECK (locale <> ''),
    external_id text CHECK (external_id <> ''),
    quantity integer NOT NULL CHECK (quantity >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- an absent locale or external_id is a key of its own (NULLS NOT DISTINCT needs 15)
CREATE UNIQUE INDEX stock_levels_key ON bis.stock_levels
    (sku, (coalesce(locale, '')), (coalesce(external_id, '')));

COMMENT ON TABLE bis.stock_levels IS 'Stock per SKU, locale and external id, for applications that keep none of their own; tracked by bis';
COMMENT ON COLUMN bis.stock_levels.sku IS 'The SKU';
COMMENT ON COLUMN bis.stock_levels.locale IS 'Market of this stock level, or NULL';
COMMENT ON COLUMN bis.stock_levels.external_id IS 'Warehouse or external system''s id of this stock level, or NULL';
COMMENT ON COLUMN bis.stock_levels.quantity IS 'Units in stock';
COMMENT ON COLUMN bis.stock_levels.updated_at IS 'When the quantity was last set';

CREATE TABLE bis.subscriptions (
    id bigserial PRIMARY KEY,
    contact_id text NOT NULL REFERENCES bis.contacts ON DELETE CASCADE,
    sku text NOT NULL REFERENCES bis.items ON DELETE CASCADE,
    locale text CHECK (locale <> ''),
    external_id text CHECK (external_id <> ''),
    channel text NOT NULL DEFAULT 'email'
        CHECK (channel IN ('email', 'sms', 'push', 'webpush')),
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'notified', 'cancelled', 'expired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    notified_at timestamptz,
    cancelled_at timestamptz,
    restock_event_id bigint
);
-- one active subscription per contact, SKU, locale, external id and channel
CREATE UNIQUE INDEX subscriptions_active_key ON bis.subscriptions
    (contact_id, sku, (coalesce(locale, '')), (coalesce(external_id, '')), channel)
    WHERE status = 'active';
-- what a restock matches, oldest first
CREATE INDEX subscriptions_active_sku_idx ON bis.subscriptions (sku, id)
    WHERE status = 'active';
CREATE INDEX subscriptions_contact_idx ON bis.subscriptions (contact_id, created_at);

COMMENT ON TABLE bis.subscriptions IS 'Requests to be told when a SKU is back in stock; active until notified, cancelled or expired';
COMMENT ON COLUMN bis.subscriptions.id IS 'Subscription id';
COMMENT ON COLUMN bis.subscriptions.contact_id IS 'Who asked';
COMMENT ON COLUMN bis.subscriptions.sku IS 'For which SKU';
COMMENT ON COLUMN bis.subscriptions.locale IS 'Only restocks of this locale fire it, or NULL';
COMMENT ON COLUMN bis.subscriptions.external_id IS 'Only restocks of this external id fire it, or NULL';
COMMENT ON COLUMN bis.subscriptions.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.subscriptions.status IS 'active, notified, cancelled or expired; only active ones fire';
COMMENT ON COLUMN bis.subscriptions.created_at IS 'When the contact subscribed';
COMMENT ON COLUMN bis.subscriptions.notified_at IS 'When a restock used it';
COMMENT ON COLUMN bis.subscriptions.cancelled_at IS 'When it was cancelled';
COMMENT ON COLUMN bis.subscriptions.restock_event_id IS 'The restock event that used it';

CREATE TABLE bis.restock_events (
    id bigserial PRIMARY KEY,
    sku text NOT NULL,
    locale text,
    external_id text,
    old_quantity bigint,
    new_quantity bigint NOT NULL,
    threshold integer NOT NULL,
    source_table text NOT NULL,
    matched integer NOT NULL,
    enqueued integer NOT NULL,
    held_back jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    expansion text NOT NULL DEFAULT 'done'
        CHECK (expansion IN ('expanding', 'waiting', 'done', 'stopped')),
    max_subscription_id bigint NOT NULL DEFAULT 0,
    last_subscription_id bigint NOT NULL DEFAULT 0,
    wave integer NOT NULL DEFAULT 1,
    wave_quota integer,
    next_wave_at timestamptz
);
CREATE INDEX restock_events_sku_idx ON bis.restock_events (sku, occurred_at);
-- what bis.expand works on
CREATE INDEX restock_events_expansion_idx ON bis.restock_events (id)
    WHERE expansion IN ('expanding', 'waiting');

COMMENT ON TABLE bis.restock_events IS 'One row per threshold crossing: the integration log that says who was told of which restock, and why not';
COMMENT ON COLUMN bis.restock_events.id IS 'Restock event id';
COMMENT ON COLUMN bis.restock_events.sku IS 'The SKU that came back';
COMMENT ON COLUMN bis.restock_events.locale IS 'Locale of the stock row that crossed, or NULL';
COMMENT ON COLUMN bis.restock_events.external_id IS 'External id of the stock row that crossed, or NULL';
COMMENT ON COLUMN bis.restock_events.old_quantity IS 'Quantity before; NULL for a new stock row';
COMMENT ON COLUMN bis.restock_events.new_quantity IS 'Quantity after';
COMMENT ON COLUMN bis.restock_events.threshold IS 'The threshold that was crossed';
COMMENT ON COLUMN bis.restock_events.source_table IS 'The table whose row crossed';
COMMENT ON COLUMN bis.restock_events.matched IS 'Active subscriptions that matched, so far';
COMMENT ON COLUMN bis.restock_events.enqueued IS 'Notifications enqueued, so far';
COMMENT ON COLUMN bis.restock_events.held_back IS 'Matched subscriptions not notified, by rule: {"alerts_disabled": n}';
COMMENT ON COLUMN bis.restock_events.occurred_at IS 'Start of the transaction that restocked';
COMMENT ON COLUMN bis.restock_events.expansion IS 'expanding (more to enqueue now), waiting (for the next wave), done, or stopped (sold out before the next wave, or taken over by a later restock)';
COMMENT ON COLUMN bis.restock_events.max_subscription_id IS 'The newest subscription when it happened: later ones wait for the next restock';
COMMENT ON COLUMN bis.restock_events.last_subscription_id IS 'How far expansion has got, oldest subscription first';
COMMENT ON COLUMN bis.restock_events.wave IS 'The current wave';
COMMENT ON COLUMN bis.restock_events.wave_quota IS 'Notifications the current wave may still enqueue; NULL: no waves';
COMMENT ON COLUMN bis.restock_events.next_wave_at IS 'When the next wave is due, while waiting';

CREATE TABLE bis.notifications (
    id bigserial PRIMARY KEY,
    kind text NOT NULL DEFAULT 'back_in_stock'
        CHECK (kind IN ('back_in_stock', 'reminder', 'price_drop')),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'claimed', 'sent', 'dead', 'cancelled', 'expired')),
    subscription_id bigint NOT NULL,
    restock_event_id bigint,
    contact_id text NOT NULL,
    sku text NOT NULL,
    channel text NOT NULL,
    payload jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    claimed_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    subject text,
    body text,
    body_html text,
    -- exactly once per subscription and kind, whatever runs concurrently
    UNIQUE (subscription_id, kind)
);
-- what bis.claim hands out: due pending rows, and claimed rows whose lease ran out
CREATE INDEX notifications_due_idx ON bis.notifications (available_at, id)
    WHERE status = 'pending';
CREATE INDEX notifications_lease_idx ON bis.notifications (claimed_until, id)
    WHERE status = 'claimed';

COMMENT ON TABLE bis.notifications IS 'The outbox: one row per subscription and message kind, for mailers to claim, deliver and acknowledge';
COMMENT ON COLUMN bis.notifications.id IS 'Notification id: the idempotency key a mailer passes on to its provider';
COMMENT ON COLUMN bis.notifications.kind IS 'back_in_stock (reminder and price_drop are reserved)';
COMMENT ON COLUMN bis.notifications.status IS 'pending, claimed (leased to a mailer), sent, dead (failed for good), cancelled or expired (past bis.notification_ttl)';
COMMENT ON COLUMN bis.notifications.subscription_id IS 'The subscription it fulfils';
COMMENT ON COLUMN bis.notifications.restock_event_id IS 'The restock event that enqueued it';
COMMENT ON COLUMN bis.notifications.contact_id IS 'The contact to notify';
COMMENT ON COLUMN bis.notifications.sku IS 'The SKU';
COMMENT ON COLUMN bis.notifications.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.notifications.payload IS 'Snapshot for the message: item, stock, contact, subscription, channel, address, locale';
COMMENT ON COLUMN bis.notifications.attempts IS 'Delivery attempts so far: each claim counts one';
COMMENT ON COLUMN bis.notifications.available_at IS 'When it is due to be claimed';
COMMENT ON COLUMN bis.notifications.claimed_by IS 'The mailer that holds the lease';
COMMENT ON COLUMN bis.notifications.claimed_until IS 'When the lease runs out';
COMMENT ON COLUMN bis.notifications.last_error IS 'The last delivery error';
COMMENT ON COLUMN bis.notifications.created_at IS 'When it was enqueued';
COMMENT ON COLUMN bis.notifications.sent_at IS 'When a mailer acknowledged delivery';
COMMENT ON COLUMN bis.notifications.subject IS 'Subject (email) or title (push), rendered from bis.templates when claimed';
COMMENT ON COLUMN bis.notifications.body IS 'Plain-text message, rendered from bis.templates when claimed';
COMMENT ON COLUMN bis.notifications.body_html IS 'HTML message (email), rendered from bis.templates when claimed';

-- pg_dump keeps what the tables hold
SELECT pg_catalog.pg_extension_config_dump('bis.items', '');
SELECT pg_catalog.pg_extension_config_dump('bis.contacts', '');
SELECT pg_catalog.pg_extension_config_dump('bis.stock_levels', '');
SELECT pg_catalog.pg_extension_config_dump('bis.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('bis.subscriptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('bis.restock_events', '');
SELECT pg_catalog.pg_extension_config_dump('bis.restock_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('bis.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('bis.notifications_id_seq', '');

/*
 * Internal helpers (C and SQL); not for applications
 */

CREATE FUNCTION bis._settings(OUT notification_ttl interval, OUT max_attempts integer,
                              OUT retry_base_delay interval, OUT retry_max_delay interval,
                              OUT default_locale text, OUT retention interval,
                              OUT expand_chunk integer, OUT wave_per_unit integer,
                              OUT wave_interval interval)
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__settings';
COMMENT ON FUNCTION bis._settings() IS 'The settings bis''s SQL functions use, typed; calling it loads the library that defines them';

CREATE FUNCTION bis._stock_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__stock_trigger';
COMMENT ON FUNCTION bis._stock_trigger() IS 'Row trigger put on inventory tables by bis.track(): records restocks and enqueues notifications';

CREATE FUNCTION bis._crossing(sku text, old_quantity bigint, new_quantity bigint) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__crossing';
COMMENT ON FUNCTION bis._crossing(text, bigint, bigint) IS 'Whether a change of quantity crosses the SKU''s threshold: the WHEN clause of bis''s triggers';

CREATE FUNCTION bis._items_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__items_changed';
COMMENT ON FUNCTION bis._items_changed() IS 'Statement trigger on bis.items: makes every backend reload the item thresholds it caches';

CREATE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bis.items
    FOR EACH STATEMENT EXECUTE FUNCTION bis._items_changed();

CREATE FUNCTION bis._check_columns(tbl regclass, sku_column name, quantity_column name,
                                   locale_column name, external_id_column name)
    RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__check_columns';
COMMENT ON FUNCTION bis._check_columns(regclass, name, name, name, name) IS 'Raises the error the trigger would raise for these columns of tbl';

CREATE FUNCTION bis._enqueued_total() RETURNS bigint
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'bis__enqueued_total';
COMMENT ON FUNCTION bis._enqueued_total() IS 'Notifications enqueued by this session''s restocks so far';

CREATE FUNCTION bis._check_sku(sku text, element bigint DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF sku IS NULL THEN
        IF element IS NULL THEN
            RAISE EXCEPTION 'SKU must not be null' USING ERRCODE = 'null_value_not_allowed';
        END IF;
        RAISE EXCEPTION 'SKU must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = format('Element %s of the array is the first that is invalid.', element);
    END IF;
    IF sku !~ '^[A-Za-z0-9_-]{1,128}$' THEN
        IF element IS NULL THEN
            RAISE EXCEPTION 'invalid SKU "%"', sku USING ERRCODE = 'invalid_parameter_value',
                DETAIL = 'A SKU has 1 to 128 letters, digits, hyphens or underscores.';
        END IF;
        RAISE EXCEPTION 'invalid SKU "%"', sku USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A SKU has 1 to 128 letters, digits, hyphens or underscores.',
            HINT = format('Element %s of the array is the first that is invalid.', element);
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_sku(text, bigint) IS 'Raises an error for a SKU bis.items would refuse, naming the array element if given';

CREATE FUNCTION bis._check_key(kind text, value text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF value = '' THEN
        RAISE EXCEPTION '% must not be an empty string', kind USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Pass NULL for no %s.', kind);
    END IF;
    IF kind = 'locale' AND value !~ '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$' THEN
        RAISE EXCEPTION 'invalid locale "%"', value USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A locale is a language code with an optional region, such as "sv" or "sv-SE".';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_key(text, text) IS 'Raises an error for an empty or malformed locale or external_id';

CREATE FUNCTION bis._batch_error(element bigint, message text, detail text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    hint text := format('Element %s of the array is the first that is invalid.', element);
BEGIN
    IF detail IS NULL THEN
        RAISE EXCEPTION '%', message USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    RAISE EXCEPTION '%', message USING ERRCODE = 'invalid_parameter_value', DETAIL = detail, HINT = hint;
END
$$;
COMMENT ON FUNCTION bis._batch_error(bigint, text, text) IS 'Raises invalid_parameter_value for an element of a JSON batch';

CREATE FUNCTION bis._check_batch(batch jsonb, fields text[], required text[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    e jsonb;
    n bigint;
    k text;
BEGIN
    IF batch IS NULL THEN
        RAISE EXCEPTION 'batch must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(batch) <> 'array' THEN
        RAISE EXCEPTION 'batch must be a JSON array, not %', jsonb_typeof(batch)
            USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Wrap a single element in brackets: [{...}].';
    END IF;
    FOR e, n IN SELECT a.value, a.ordinality FROM jsonb_array_elements(batch) WITH ORDINALITY a LOOP
        IF jsonb_typeof(e) <> 'object' THEN
            PERFORM bis._batch_error(n, format('array element must be a JSON object, not %s', jsonb_typeof(e)), NULL);
        END IF;
        FOR k IN SELECT jsonb_object_keys(e) LOOP
            IF NOT k = ANY (fields) THEN
                PERFORM bis._batch_error(n, format('unrecognized field "%s"', k),
                    format('The fields are %s.', array_to_string(fields, ', ')));
            END IF;
        END LOOP;
        FOREACH k IN ARRAY required LOOP
            IF NOT e ? k THEN
                PERFORM bis._batch_error(n, format('field "%s" is missing', k), NULL);
            END IF;
        END LOOP;
        PERFORM bis._json_field(e, 'sku', 'string', n);
        PERFORM bis._check_sku(e->>'sku', n);
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._check_batch(jsonb, text[], text[]) IS 'Raises an error for a JSON batch that is not an array of objects with known fields, the required ones and valid SKUs';

CREATE FUNCTION bis._json_field(e jsonb, field text, want text, element bigint) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v jsonb := e->field;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) IN (want, 'null') THEN
        RETURN v;
    END IF;
    PERFORM bis._batch_error(element, format('field "%s" must be a JSON %s, not %s', field, want, jsonb_typeof(v)), NULL);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION bis._json_field(jsonb, text, text, bigint) IS 'The field of a batch element, checked to be of JSON type want or null';

CREATE FUNCTION bis._interval(value text) RETURNS interval
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN value::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION bis._interval(text) IS 'The text as an interval, or NULL if it is not one';

CREATE FUNCTION bis._check_quantity(quantity numeric, element bigint DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    hint text := CASE WHEN element IS NULL THEN 'Set a quantity of 0 or more.'
                      ELSE format('Element %s of the array is the first that is invalid.', element) END;
BEGIN
    IF quantity IS NULL THEN
        RAISE EXCEPTION 'quantity must not be null' USING ERRCODE = 'null_value_not_allowed', HINT = hint;
    END IF;
    IF quantity < 0 THEN
        RAISE EXCEPTION 'quantity must not be negative' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The quantity given is %s.', quantity), HINT = hint;
    END IF;
    IF quantity <> trunc(quantity) THEN
        RAISE EXCEPTION 'quantity must be a whole number' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The quantity given is %s.', quantity), HINT = hint;
    END IF;
    IF quantity > 2147483647 THEN
        RAISE EXCEPTION 'quantity % is out of range', quantity USING ERRCODE = 'numeric_value_out_of_range',
            DETAIL = 'A quantity is at most 2147483647.', HINT = hint;
    END IF;
    RETURN quantity::integer;
END
$$;
COMMENT ON FUNCTION bis._check_quantity(numeric, bigint) IS 'The quantity as an integer, or an error for a NULL, negative, fractional or too large one';

CREATE FUNCTION bis._check_duplicates(keys text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    dup record;
BEGIN
    SELECT k.key, array_agg(k.n ORDER BY k.n) AS elements INTO dup
      FROM unnest(keys) WITH ORDINALITY AS k(key, n)
     GROUP BY k.key HAVING count(*) > 1
     ORDER BY min(k.n) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% appears more than once in the batch', dup.key USING ERRCODE = 'cardinality_violation',
            DETAIL = format('Elements %s and %s have the same %s.',
                            array_to_string(dup.elements[1:cardinality(dup.elements) - 1], ', '),
                            dup.elements[cardinality(dup.elements)], what),
            HINT = 'Send each one once, with its final values.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_duplicates(text[], text) IS 'Raises cardinality_violation for the first key that appears twice in a batch';

/*
 * Catalog, contacts and stock
 */

CREATE FUNCTION bis.upsert_items(items jsonb) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    e jsonb;
    n bigint;
    k text;
    v jsonb;
    done integer := 0;
BEGIN
    PERFORM bis._check_batch(items,
        ARRAY['sku', 'title', 'url', 'image_url', 'price', 'compare_at_price', 'currency',
              'category', 'status', 'attributes', 'threshold', 'alerts_enabled',
              'wave_per_unit', 'wave_interval'],
        ARRAY['sku']);
    PERFORM bis._check_duplicates(
        ARRAY(SELECT format('SKU "%s"', a->>'sku') FROM jsonb_array_elements(items) a), 'SKU');

    FOR e, n IN SELECT a.value, a.ordinality FROM jsonb_array_elements(items) WITH ORDINALITY a LOOP
        FOREACH k IN ARRAY ARRAY['title', 'url', 'image_url', 'currency', 'category', 'status'] LOOP
            PERFORM bis._json_field(e, k, 'string', n);
        END LOOP;
        PERFORM bis._json_field(e, 'attributes', 'object', n);
        PERFORM bis._json_field(e, 'alerts_enabled', 'boolean', n);
        FOREACH k IN ARRAY ARRAY['price', 'compare_at_price'] LOOP
            IF (bis._json_field(e, k, 'number', n) #>> '{}')::numeric < 0 THEN
                PERFORM bis._batch_error(n, format('%s must not be negative', k),
                                         format('The %s given is %s.', k, e->k));
            END IF;
        END LOOP;
        FOREACH k IN ARRAY ARRAY['threshold', 'wave_per_unit'] LOOP
            v := bis._json_field(e, k, 'number', n);
            IF (v #>> '{}')::numeric < 1 OR (v #>> '{}')::numeric > 2147483647
               OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
                PERFORM bis._batch_error(n, format('invalid %s %s', k, v),
                    format('A %s is a whole number of at least 1, or null for the setting bis.%s.',
                           k, CASE k WHEN 'threshold' THEN 'default_threshold' ELSE k END));
            END IF;
        END LOOP;
        v := bis._json_field(e, 'wave_interval', 'string', n);
        IF jsonb_typeof(v) = 'string' AND coalesce(bis._interval(v #>> '{}') <= interval '0', true) THEN
            PERFORM bis._batch_error(n, format('invalid wave_interval %s', v),
                'A wave interval is a positive interval such as "30 minutes", or null for the setting bis.wave_interval.');
        END IF;
        IF e->>'status' NOT IN ('active', 'draft', 'archived') THEN
            PERFORM bis._batch_error(n, format('invalid status "%s"', e->>'status'),
                'The statuses are active, draft and archived.');
        END IF;

        -- a field left out keeps its value; a field given as null is cleared
        INSERT INTO bis.items AS i (sku, title, url, image_url, price, compare_at_price, currency,
                                    category, status, attributes, threshold, alerts_enabled,
                                    wave_per_unit, wave_interval)
        VALUES (e->>'sku', e->>'title', e->>'url', e->>'image_url', (e->>'price')::numeric,
                (e->>'compare_at_price')::numeric, e->>'currency', e->>'category',
                coalesce(e->>'status', 'active'), coalesce(nullif(e->'attributes', 'null'), '{}'),
                (e->>'threshold')::numeric::integer, coalesce((e->>'alerts_enabled')::boolean, true),
                (e->>'wave_per_unit')::numeric::integer, (e->>'wave_interval')::interval)
        ON CONFLICT (sku) DO UPDATE SET
            title = CASE WHEN e ? 'title' THEN excluded.title ELSE i.title END,
            url = CASE WHEN e ? 'url' THEN excluded.url ELSE i.url END,
            image_url = CASE WHEN e ? 'image_url' THEN excluded.image_url ELSE i.image_url END,
            price = CASE WHEN e ? 'price' THEN excluded.price ELSE i.price END,
            compare_at_price = CASE WHEN e ? 'compare_at_price' THEN excluded.compare_at_price
                                    ELSE i.compare_at_price END,
            currency = CASE WHEN e ? 'currency' THEN excluded.currency ELSE i.currency END,
            category = CASE WHEN e ? 'category' THEN excluded.category ELSE i.category END,
            status = CASE WHEN e ? 'status' THEN excluded.status ELSE i.status END,
            attributes = CASE WHEN e ? 'attributes' THEN excluded.attributes ELSE i.attributes END,
            threshold = CASE WHEN e ? 'threshold' THEN excluded.threshold ELSE i.threshold END,
            alerts_enabled = CASE WHEN e ? 'alerts_enabled' THEN excluded.alerts_enabled
                                  ELSE i.alerts_enabled END,
            wave_per_unit = CASE WHEN e ? 'wave_per_unit' THEN excluded.wave_per_unit
                                 ELSE i.wave_per_unit END,
            wave_interval = CASE WHEN e ? 'wave_interval' THEN excluded.wave_interval
                                 ELSE i.wave_interval END,
            updated_at = now();
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis.upsert_items(jsonb) IS 'Inserts or updates catalog items from a JSON array of objects; a field left out keeps its value; returns how many items were written';

CREATE FUNCTION bis.upsert_contact(contact_id text, email text DEFAULT NULL, phone text DEFAULT NULL,
                                   locale text DEFAULT NULL, time_zone text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF upsert_contact.contact_id IS NULL THEN
        RAISE EXCEPTION 'contact_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF upsert_contact.contact_id = '' THEN
        RAISE EXCEPTION 'contact_id must not be an empty string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF upsert_contact.email !~ '^[^][@[:space:][:cntrl:]<>(),;:"\\]+@[^][@[:space:][:cntrl:]<>(),;:"\\]+$' THEN
        RAISE EXCEPTION 'invalid email address "%"', upsert_contact.email
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An email address has one "@", and no spaces, quotes, brackets, commas, colons or semicolons.';
    END IF;
    IF upsert_contact.phone !~ '^\+?[0-9][0-9 ()-]{2,30}$' THEN
        RAISE EXCEPTION 'invalid phone number "%"', upsert_contact.phone
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A phone number has digits, spaces, hyphens and parentheses, and may start with "+".';
    END IF;
    PERFORM bis._check_key('locale', upsert_contact.locale);
    -- raises invalid_parameter_value for an unrecognized time zone
    PERFORM pg_catalog.timezone(upsert_contact.time_zone, now());

    -- an argument left NULL keeps the value the contact has
    INSERT INTO bis.contacts AS c (contact_id, email, phone, locale, time_zone)
    VALUES (upsert_contact.contact_id, upsert_contact.email, upsert_contact.phone,
            upsert_contact.locale, upsert_contact.time_zone)
    ON CONFLICT ON CONSTRAINT contacts_pkey DO UPDATE SET
        email = coalesce(excluded.email, c.email),
        phone = coalesce(excluded.phone, c.phone),
        locale = coalesce(excluded.locale, c.locale),
        time_zone = coalesce(excluded.time_zone, c.time_zone),
        updated_at = now();
    RETURN upsert_contact.contact_id;
END
$$;
COMMENT ON FUNCTION bis.upsert_contact(text, text, text, text, text) IS 'Creates a contact or updates the values given (NULL keeps the old one); returns the contact id';

CREATE FUNCTION bis.set_stock(sku text, quantity integer, locale text DEFAULT NULL,
                              external_id text DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    before bigint := bis._enqueued_total();
BEGIN
    PERFORM bis._check_sku(set_stock.sku);
    PERFORM bis._check_quantity(set_stock.quantity);
    PERFORM bis._check_key('locale', set_stock.locale);
    PERFORM bis._check_key('external_id', set_stock.external_id);

    -- a restock locks the item after the stock row; taking it first here keeps
    -- writers of one SKU's stock rows from deadlocking with each other
    PERFORM FROM bis.items i WHERE i.sku = set_stock.sku FOR NO KEY UPDATE;
    INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
    VALUES (set_stock.sku, set_stock.locale, set_stock.external_id, set_stock.quantity)
    ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, ''))) DO UPDATE SET
        quantity = excluded.quantity,
        updated_at = now();
    RETURN bis._enqueued_total() - before;
END
$$;
COMMENT ON FUNCTION bis.set_stock(text, integer, text, text) IS 'Sets one stock level in bis.stock_levels; returns how many notifications the change enqueued';

CREATE FUNCTION bis.put_stock_levels(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    before bigint := bis._enqueued_total();
    e jsonb;
    n bigint;
BEGIN
    PERFORM bis._check_batch(levels, ARRAY['sku', 'quantity', 'locale', 'externalId'],
                             ARRAY['sku', 'quantity']);
    FOR e, n IN SELECT a.value, a.ordinality FROM jsonb_array_elements(levels) WITH ORDINALITY a LOOP
        PERFORM bis._json_field(e, 'quantity', 'number', n);
        PERFORM bis._check_quantity((e->>'quantity')::numeric, n);
        PERFORM bis._json_field(e, 'locale', 'string', n);
        PERFORM bis._json_field(e, 'externalId', 'string', n);
        BEGIN
            PERFORM bis._check_key('locale', e->>'locale');
            PERFORM bis._check_key('externalId', e->>'externalId');
        EXCEPTION WHEN invalid_parameter_value THEN
            DECLARE
                msg text;
                det text;
            BEGIN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
                PERFORM bis._batch_error(n, msg, nullif(det, ''));
            END;
        END;
    END LOOP;
    PERFORM bis._check_duplicates(
        ARRAY(SELECT format('SKU "%s"', a->>'sku')
                     || CASE WHEN a->>'locale' IS NOT NULL THEN format(' with locale "%s"', a->>'locale') ELSE '' END
                     || CASE WHEN a->>'externalId' IS NOT NULL THEN format(' and externalId "%s"', a->>'externalId') ELSE '' END
                FROM jsonb_array_elements(levels) a),
        'sku, locale and externalId');

    -- as in bis.set_stock, items first; then the levels in key order, as a
    -- concurrent batch takes them
    PERFORM FROM bis.items i
     WHERE i.sku IN (SELECT a->>'sku' FROM jsonb_array_elements(levels) a)
     ORDER BY i.sku FOR NO KEY UPDATE;
    INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
    SELECT a->>'sku', a->>'locale', a->>'externalId', (a->>'quantity')::numeric::integer
      FROM jsonb_array_elements(levels) a
     ORDER BY a->>'sku', coalesce(a->>'locale', ''), coalesce(a->>'externalId', '')
    ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, ''))) DO UPDATE SET
        quantity = excluded.quantity,
        updated_at = now();
    RETURN bis._enqueued_total() - before;
END
$$;
COMMENT ON FUNCTION bis.put_stock_levels(jsonb) IS 'Sets stock levels from a JSON array of {"sku", "quantity", "locale", "externalId"}, all or nothing; returns how many notifications the changes enqueued';

/*
 * Subscriptions
 */

CREATE FUNCTION bis.subscribe(contact_id text, sku text, locale text DEFAULT NULL,
                              external_id text DEFAULT NULL, channel text DEFAULT 'email')
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    sid bigint;
    contact record;
BEGIN
    IF subscribe.contact_id IS NULL THEN
        RAISE EXCEPTION 'contact_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM bis._check_sku(subscribe.sku);
    PERFORM bis._check_key('locale', subscribe.locale);
    PERFORM bis._check_key('external_id', subscribe.external_id);
    IF subscribe.channel IS NULL OR subscribe.channel NOT IN ('email', 'sms', 'push', 'webpush') THEN
        RAISE EXCEPTION 'unrecognized channel "%"', subscribe.channel
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The channels are email, sms, push and webpush.';
    END IF;
    SELECT c.email, c.phone INTO contact FROM bis.contacts c WHERE c.contact_id = subscribe.contact_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact "%" does not exist', subscribe.contact_id
            USING ERRCODE = 'foreign_key_violation',
            HINT = format('Create it first with bis.upsert_contact(%L, email => ...).', subscribe.contact_id);
    END IF;
    -- a message that could not be addressed would only die in the mailer
    IF (subscribe.channel = 'email' AND contact.email IS NULL)
       OR (subscribe.channel = 'sms' AND contact.phone IS NULL) THEN
        RAISE EXCEPTION 'contact "%" has no %', subscribe.contact_id,
              CASE subscribe.channel WHEN 'email' THEN 'email address' ELSE 'phone number' END
            USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Give it one with bis.upsert_contact(%L, %s => ...), or subscribe on another channel.',
                          subscribe.contact_id, CASE subscribe.channel WHEN 'email' THEN 'email' ELSE 'phone' END);
    END IF;
    IF NOT EXISTS (SELECT FROM bis.items i WHERE i.sku = subscribe.sku) THEN
        RAISE EXCEPTION 'item "%" does not exist', subscribe.sku
            USING ERRCODE = 'foreign_key_violation',
            HINT = format('Add it to the catalog first with bis.upsert_items(''[{"sku": "%s", "title": ...}]'').',
                          subscribe.sku);
    END IF;

    -- a concurrent subscribe of the same waits here and then finds this one
    FOR attempt IN 1..3 LOOP
        INSERT INTO bis.subscriptions AS s (contact_id, sku, locale, external_id, channel)
        VALUES (subscribe.contact_id, subscribe.sku, subscribe.locale, subscribe.external_id,
                subscribe.channel)
        ON CONFLICT (contact_id, sku, (coalesce(locale, '')), (coalesce(external_id, '')), channel)
            WHERE status = 'active' DO NOTHING
        RETURNING s.id INTO sid;
        IF sid IS NOT NULL THEN
            RETURN sid;
        END IF;
        SELECT s.id INTO sid FROM bis.subscriptions s
         WHERE s.contact_id = subscribe.contact_id AND s.sku = subscribe.sku
           AND s.locale IS NOT DISTINCT FROM subscribe.locale
           AND s.external_id IS NOT DISTINCT FROM subscribe.external_id
           AND s.channel = subscribe.channel AND s.status = 'active';
        IF sid IS NOT NULL THEN
            RETURN sid;
        END IF;
        -- the active one was used or cancelled in between: insert again
    END LOOP;
    RAISE EXCEPTION 'could not subscribe contact "%" to SKU "%"', subscribe.contact_id, subscribe.sku
        USING ERRCODE = 'serialization_failure',
        DETAIL = 'The subscription changed state under concurrent restocks three times.',
        HINT = 'Retry the transaction.';
END
$$;
COMMENT ON FUNCTION bis.subscribe(text, text, text, text, text) IS 'Creates an active subscription, or returns the id of the same one that is already active';

CREATE FUNCTION bis.unsubscribe(subscription_id bigint) RETURNS boolean
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH cancelled AS (
        UPDATE bis.subscriptions s SET status = 'cancelled', cancelled_at = now()
         WHERE s.id = unsubscribe.subscription_id AND s.status = 'active'
        RETURNING 1
    )
    SELECT count(*) > 0 FROM cancelled;
$$;
COMMENT ON FUNCTION bis.unsubscribe(bigint) IS 'Cancels an active subscription; returns false if it was not active (already used, cancelled, expired or unknown)';

CREATE FUNCTION bis.contact_subscriptions(contact_id text) RETURNS SETOF bis.subscriptions
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT s.* FROM bis.subscriptions s
     WHERE s.contact_id = contact_subscriptions.contact_id
     ORDER BY s.created_at DESC, s.id DESC;
$$;
COMMENT ON FUNCTION bis.contact_subscriptions(text) IS 'A contact''s subscriptions of every status, newest first';

/*
 * Tracking inventory tables
 */

CREATE FUNCTION bis._drop_triggers(tbl regclass) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    trigger_name name;
    dropped integer := 0;
BEGIN
    FOR trigger_name IN SELECT t.tgname FROM pg_trigger t
                         WHERE t.tgrelid = tbl AND t.tgfoid = 'bis._stock_trigger()'::regprocedure
                           AND t.tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION bis._drop_triggers(regclass) IS 'Drops bis''s restock triggers from a table; returns how many there were';

CREATE FUNCTION bis._check_partitions(tbl regclass) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    other regclass;
BEGIN
    -- a partition of a tracked table has its parent's triggers already
    SELECT p.tgrelid INTO other
      FROM pg_trigger t JOIN pg_trigger p ON p.oid = t.tgparentid
     WHERE t.tgrelid = tbl AND t.tgfoid = 'bis._stock_trigger()'::regprocedure
     LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'table "%" is tracked through partitioned table "%"', tbl, other
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Track or untrack the partitioned table instead.';
    END IF;
    -- and one tracked on its own would be restocked twice
    SELECT t.tgrelid INTO other
      FROM pg_partition_tree(tbl) pt JOIN pg_trigger t ON t.tgrelid = pt.relid
     WHERE pt.relid <> tbl AND t.tgfoid = 'bis._stock_trigger()'::regprocedure
       AND t.tgparentid = 0
     LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'partition "%" of table "%" is tracked on its own', other, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('Untrack it first with bis.untrack(%L).', other);
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_partitions(regclass) IS 'Raises an error for a partition tracked through its parent, or a partitioned table with a partition tracked on its own';

CREATE FUNCTION bis.track(tbl regclass, sku_column name DEFAULT 'sku',
                          quantity_column name DEFAULT 'quantity',
                          locale_column name DEFAULT NULL, external_id_column name DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Only tables and partitioned tables can be tracked.';
    END IF;
    PERFORM bis._check_columns(tbl, sku_column, quantity_column, locale_column, external_id_column);
    PERFORM bis._check_partitions(tbl);

    -- tracking again replaces the triggers, with the columns given now
    PERFORM bis._drop_triggers(tbl);
    -- only a row whose quantity crossed its threshold queues a trigger event:
    -- a fall is sorted out by the first comparison, a rise by bis._crossing
    EXECUTE format('CREATE TRIGGER bis_stock_insert AFTER INSERT ON %s FOR EACH ROW'
                   ' WHEN (NEW.%I >= 1 AND bis._crossing(NEW.%I, NULL, NEW.%I))'
                   ' EXECUTE FUNCTION bis._stock_trigger(%L, %L, %L, %L)',
                   tbl, quantity_column, sku_column, quantity_column,
                   sku_column, quantity_column, coalesce(locale_column, ''),
                   coalesce(external_id_column, ''));
    EXECUTE format('CREATE TRIGGER bis_stock_update AFTER UPDATE OF %I ON %s FOR EACH ROW'
                   ' WHEN (NEW.%1$I >= 1 AND (OLD.%1$I IS NULL OR NEW.%1$I > OLD.%1$I)'
                   '       AND bis._crossing(NEW.%3$I, OLD.%1$I, NEW.%1$I))'
                   ' EXECUTE FUNCTION bis._stock_trigger(%3$L, %1$L, %4$L, %5$L)',
                   quantity_column, tbl,
                   sku_column, coalesce(locale_column, ''), coalesce(external_id_column, ''));
END
$$;
COMMENT ON FUNCTION bis.track(regclass, name, name, name, name) IS 'Puts bis''s restock trigger on an inventory table, naming its sku, quantity, locale and external id columns';

CREATE FUNCTION bis.untrack(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_partitions(tbl);
    IF bis._drop_triggers(tbl) = 0 THEN
        RAISE EXCEPTION 'table "%" is not tracked', tbl USING ERRCODE = 'undefined_object',
            HINT = 'The view bis.tracked_tables lists the tracked tables.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis.untrack(regclass) IS 'Takes bis''s restock trigger off an inventory table';

CREATE VIEW bis.tracked_tables AS
SELECT t.tgrelid::regclass AS tbl,
       split_part(a.args, '\000', 1)::name AS sku_column,
       split_part(a.args, '\000', 2)::name AS quantity_column,
       nullif(split_part(a.args, '\000', 3), '')::name AS locale_column,
       nullif(split_part(a.args, '\000', 4), '')::name AS external_id_column
  FROM pg_catalog.pg_trigger t,
       LATERAL (SELECT pg_catalog.encode(t.tgargs, 'escape') AS args) a
 WHERE t.tgfoid = 'bis._stock_trigger()'::pg_catalog.regprocedure
   AND t.tgname = 'bis_stock_update'
   AND t.tgparentid = 0;
COMMENT ON VIEW bis.tracked_tables IS 'The tables bis tracks, with the columns it reads';

CREATE FUNCTION bis._check_tracked_tables() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t record;
    problem text;
BEGIN
    FOR t IN SELECT tt.* FROM bis.tracked_tables tt
              WHERE tt.tbl IN (SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                                WHERE c.classid = 'pg_class'::regclass) LOOP
        BEGIN
            PERFORM bis._check_columns(t.tbl, t.sku_column, t.quantity_column, t.locale_column,
                                       t.external_id_column);
        EXCEPTION WHEN undefined_column OR datatype_mismatch THEN
            GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
            RAISE EXCEPTION 'cannot alter a column that bis reads in table "%"', t.tbl
                USING ERRCODE = 'dependent_objects_still_exist',
                DETAIL = format('After this change, %s.', problem),
                HINT = 'Take the table off with bis.untrack() first, then track it again with the new columns.';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._check_tracked_tables() IS 'Event trigger: refuses an ALTER TABLE that renames or retypes a column a tracked table''s restock trigger reads';

CREATE EVENT TRIGGER bis_check_tracked_tables ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION bis._check_tracked_tables();

SELECT bis.track('bis.stock_levels', locale_column => 'locale', external_id_column => 'external_id');

/*
 * Restocks: matching and expansion
 */

CREATE FUNCTION bis._matching(sku text, locale text, external_id text, after_id bigint,
                              upto_id bigint, max_rows integer)
    RETURNS SETOF bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- Voyado's rules: a locale fires only subscriptions of that locale, an
    -- external id only those of that external id, neither every one of the
    -- SKU.  EXECUTE plans for the values given: a generic plan cannot tell a
    -- SKU with five subscribers from one with a million, nor drop the
    -- conditions whose argument is NULL.
    RETURN QUERY EXECUTE
        'SELECT s.id FROM bis.subscriptions s
          WHERE s.sku = $1 AND s.status = ''active''
            AND ($2::text IS NULL OR s.locale = $2) AND ($3::text IS NULL OR s.external_id = $3)
            AND s.id > $4 AND ($5::bigint IS NULL OR s.id <= $5)
          ORDER BY s.sku, s.id
          LIMIT $6'
        USING sku, locale, external_id, after_id, upto_id, max_rows;
END
$$;
COMMENT ON FUNCTION bis._matching(text, text, text, bigint, bigint, integer) IS 'The active subscriptions a restock of this SKU, locale and external id fires, oldest first';

CREATE FUNCTION bis._expand(ev bis.restock_events, chunk integer, worker text, lease interval)
    RETURNS SETOF bis.notifications
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    take integer := least(chunk, coalesce(ev.wave_quota, chunk));
    ids bigint[];
    n integer;
    more boolean;
    quota integer;
BEGIN
    -- the caller holds the item's row lock: crossings of the SKU take turns
    ids := ARRAY(SELECT bis._matching(ev.sku, ev.locale, ev.external_id, ev.last_subscription_id,
                                      ev.max_subscription_id, take));
    more := cardinality(ids) = take;

    -- a subscription is used and its notification enqueued together: none is
    -- used without one, and a subscription no longer active is skipped
    RETURN QUERY
    WITH used AS (
        UPDATE bis.subscriptions s
           SET status = 'notified', notified_at = now(), restock_event_id = ev.id
         WHERE s.id = ANY (ids) AND s.status = 'active'
           -- the bounds steer the planner to the primary key rather than a full scan
           AND s.id BETWEEN ids[1] AND ids[cardinality(ids)]
        RETURNING s.id, s.contact_id, s.channel, s.locale, s.external_id, s.created_at
    ), made AS (
        SELECT u.id, u.contact_id, u.channel, coalesce(c.locale, u.locale, ev.locale) AS locale,
               jsonb_build_object(
                 'item', jsonb_build_object(
                   'sku', ev.sku, 'title', i.title, 'url', i.url, 'image_url', i.image_url,
                   'price', i.price, 'compare_at_price', i.compare_at_price,
                   'currency', i.currency, 'category', i.category, 'attributes', i.attributes),
                 'stock', jsonb_build_object(
                   'quantity', ev.new_quantity, 'locale', ev.locale, 'external_id', ev.external_id),
                 'contact', jsonb_build_object(
                   'id', u.contact_id, 'email', c.email, 'phone', c.phone,
                   'locale', c.locale, 'time_zone', c.time_zone),
                 'subscription', jsonb_build_object(
                   'id', u.id, 'locale', u.locale, 'external_id', u.external_id,
                   'created_at', u.created_at),
                 'channel', u.channel,
                 'address', CASE u.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END,
                 'locale', coalesce(c.locale, u.locale, ev.locale)) AS payload
          FROM used u
          LEFT JOIN bis.items i ON i.sku = ev.sku
          -- a probe per row (OFFSET 0 keeps it a subquery): a hash join would
          -- read every contact for a chunk the planner overestimates
          LEFT JOIN LATERAL (SELECT c.* FROM bis.contacts c
                              WHERE c.contact_id = u.contact_id OFFSET 0) c ON true
    ), tpl AS (
        -- for a mailer's claim, rendered as in bis.claim
        SELECT k.channel, k.locale, t.subject, t.body, t.body_html
          FROM (SELECT DISTINCT m.channel, m.locale FROM made m WHERE worker IS NOT NULL) k
          LEFT JOIN LATERAL bis._template('back_in_stock', k.channel, k.locale,
                                          (bis._settings()).default_locale) t ON true
    ), ins AS (
        -- enqueued, or, for a mailer's claim, claimed by it at once
        INSERT INTO bis.notifications
               (kind, subscription_id, restock_event_id, contact_id, sku, channel, payload,
                status, claimed_by, claimed_until, attempts, subject, body, body_html)
        SELECT 'back_in_stock', m.id, ev.id, m.contact_id, ev.sku, m.channel, m.payload,
               CASE WHEN worker IS NULL THEN 'pending' ELSE 'claimed' END, worker, now() + lease,
               CASE WHEN worker IS NULL THEN 0 ELSE 1 END,
               bis.render(t.subject, m.payload), bis.render(t.body, m.payload),
               bis.render(t.body_html, m.payload, true)
          FROM made m
          LEFT JOIN tpl t ON t.channel = m.channel AND t.locale IS NOT DISTINCT FROM m.locale
        RETURNING *
    )
    SELECT * FROM ins ORDER BY id;
    GET DIAGNOSTICS n = ROW_COUNT;

    quota := ev.wave_quota - n;
    UPDATE bis.restock_events e
       SET matched = e.matched + n, enqueued = e.enqueued + n,
           last_subscription_id = coalesce(ids[cardinality(ids)], e.last_subscription_id),
           wave_quota = quota,
           expansion = CASE WHEN NOT more THEN 'done'
                            WHEN quota <= 0 THEN 'waiting'
                            ELSE 'expanding' END,
           next_wave_at = CASE WHEN more AND quota <= 0
                               THEN now() + (SELECT coalesce(i.wave_interval, (bis._settings()).wave_interval)
                                               FROM bis.items i WHERE i.sku = ev.sku) END
     WHERE e.id = ev.id;
END
$$;
COMMENT ON FUNCTION bis._expand(bis.restock_events, integer, text, interval) IS 'Enqueues the next chunk of a restock''s notifications, oldest subscription first, records how far it got, and returns them; with worker, they are claimed by it at once';

CREATE FUNCTION bis._restock(sku text, locale text, external_id text, old_quantity bigint,
                             new_quantity bigint, threshold integer, source_table text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    item record;
    held bigint := 0;
    ev bis.restock_events;
BEGIN
    -- crossings of one SKU take turns on the item's row lock, before they
    -- touch any subscription (see bis.set_stock)
    SELECT i.alerts_enabled, coalesce(i.wave_per_unit, nullif(settings.wave_per_unit, 0)) AS per_unit
      INTO item FROM bis.items i WHERE i.sku = _restock.sku FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT item.alerts_enabled THEN
        -- no item: nobody can have subscribed; alerts off: they wait
        IF FOUND THEN
            held := (SELECT count(*) FROM bis._matching(sku, locale, external_id, 0, NULL, NULL));
        END IF;
        INSERT INTO bis.restock_events (sku, locale, external_id, old_quantity, new_quantity, threshold,
                                        source_table, matched, enqueued, held_back)
        VALUES (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, held, 0,
                CASE WHEN held > 0 THEN jsonb_build_object('alerts_disabled', held) ELSE '{}' END);
        RETURN 0;
    END IF;

    -- a restock of the same stock still under way is taken over by this one
    UPDATE bis.restock_events e SET expansion = 'stopped', next_wave_at = NULL
     WHERE e.expansion IN ('expanding', 'waiting') AND e.sku = _restock.sku
       AND e.locale IS NOT DISTINCT FROM _restock.locale
       AND e.external_id IS NOT DISTINCT FROM _restock.external_id;

    INSERT INTO bis.restock_events AS e
           (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table,
            matched, enqueued, expansion, max_subscription_id, wave_quota)
    VALUES (sku, locale, external_id, old_quantity, new_quantity, threshold, source_table, 0, 0,
            'expanding', coalesce((SELECT max(s.id) FROM bis.subscriptions s), 0),
            item.per_unit * new_quantity)
    RETURNING * INTO ev;
    -- the first chunk now, the rest after commit (bis.expand, called by bis.claim)
    RETURN (SELECT count(*) FROM bis._expand(ev, settings.expand_chunk, NULL, NULL));
END
$$;
COMMENT ON FUNCTION bis._restock(text, text, text, bigint, bigint, integer, text) IS 'Called by the restock trigger for a crossing: records the restock event and enqueues the first chunk of its notifications; returns how many';

CREATE FUNCTION bis._current_stock(source_table text, sku text, locale text, external_id text)
    RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    source regclass := to_regclass(source_table);
    t record;
    quantity bigint;
BEGIN
    -- a partition is tracked through its partitioned table
    SELECT * INTO t FROM bis.tracked_tables tt
     WHERE tt.tbl = coalesce(pg_partition_root(source), source);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT sum(%I) FROM %s WHERE %I = $1', t.quantity_column, source, t.sku_column)
         || CASE WHEN t.locale_column IS NULL THEN ''
                 ELSE format(' AND %I IS NOT DISTINCT FROM $2', t.locale_column) END
         || CASE WHEN t.external_id_column IS NULL THEN ''
                 ELSE format(' AND %I IS NOT DISTINCT FROM $3', t.external_id_column) END
       INTO quantity USING sku, locale, external_id;
    RETURN quantity;
END
$$;
COMMENT ON FUNCTION bis._current_stock(text, text, text, text) IS 'The quantity now in stock for a restock''s SKU, locale and external id, read from the table that restocked; NULL if it is no longer tracked';

CREATE FUNCTION bis._next_expansion(after_id bigint) RETURNS bis.restock_events
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    ev bis.restock_events;
    per_unit integer;
    quantity bigint;
BEGIN
    LOOP
        -- the oldest restock with work due; SKIP LOCKED: concurrent callers
        -- work on different restocks
        SELECT e.* INTO ev FROM bis.restock_events e
         WHERE (e.expansion = 'expanding' OR (e.expansion = 'waiting' AND e.next_wave_at <= now()))
           AND e.id >= after_id
         ORDER BY e.id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        after_id := ev.id + 1;

        -- take the SKU's turn, but never wait for it: a restock of it in
        -- flight waits for this restock event's row, which we hold
        SELECT coalesce(i.wave_per_unit, nullif(settings.wave_per_unit, 0)) INTO per_unit
          FROM bis.items i WHERE i.sku = ev.sku FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;

        IF ev.expansion = 'expanding' THEN
            RETURN ev;
        END IF;
        -- a later wave only while the SKU is still in stock; sold out, the
        -- rest of its subscriptions wait for the next restock
        quantity := bis._current_stock(ev.source_table, ev.sku, ev.locale, ev.external_id);
        IF quantity >= ev.threshold THEN
            UPDATE bis.restock_events e
               SET wave = e.wave + 1, wave_quota = per_unit * quantity, expansion = 'expanding',
                   next_wave_at = NULL
             WHERE e.id = ev.id
            RETURNING * INTO ev;
            RETURN ev;
        END IF;
        UPDATE bis.restock_events e SET expansion = 'stopped', next_wave_at = NULL
         WHERE e.id = ev.id;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._next_expansion(bigint) IS 'Locks the oldest restock (from after_id on) with a chunk or a wave due, starting its next wave if the SKU is still in stock; NULL if there is none';

CREATE FUNCTION bis.expand(max_chunks integer DEFAULT 1) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    chunk integer := (bis._settings()).expand_chunk;
    ev bis.restock_events;
    after_id bigint := 0;
    total integer := 0;
BEGIN
    IF max_chunks IS NULL OR max_chunks < 1 THEN
        RAISE EXCEPTION 'max_chunks must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1..max_chunks LOOP
        ev := bis._next_expansion(after_id);
        EXIT WHEN ev.id IS NULL;
        -- the same restock again next time, until it is done
        after_id := ev.id;
        total := total + (SELECT count(*) FROM bis._expand(ev, chunk, NULL, NULL));
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION bis.expand(integer) IS 'Enqueues up to max_chunks chunks of the restocks still expanding or due for their next wave, as a bis.claim that finds nothing due does; for schedulers; returns how many notifications it enqueued';

/*
 * Templates
 */

CREATE FUNCTION bis.render(template text, payload jsonb, html boolean DEFAULT false)
    RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis_render';
COMMENT ON FUNCTION bis.render(text, jsonb, boolean) IS 'Fills the {{path}} and {{path|fallback}} placeholders of a template from a payload; with html, values are HTML-escaped';

CREATE TABLE bis.templates (
    kind text NOT NULL DEFAULT 'back_in_stock'
        CHECK (kind IN ('back_in_stock', 'reminder', 'price_drop')),
    channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webpush')),
    locale text NOT NULL CHECK (locale ~ '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$'),
    subject text,
    body text NOT NULL,
    body_html text,
    builtin boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, channel, locale, builtin)
);

COMMENT ON TABLE bis.templates IS 'Message templates per kind, channel and locale; a row of your own overrides the built-in one with the same key';
COMMENT ON COLUMN bis.templates.kind IS 'The kind of notification';
COMMENT ON COLUMN bis.templates.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.templates.locale IS 'Language, or language and region: sv-SE falls back to sv, then to the setting bis.default_locale';
COMMENT ON COLUMN bis.templates.subject IS 'Subject (email) or title (push and webpush)';
COMMENT ON COLUMN bis.templates.body IS 'Plain-text body';
COMMENT ON COLUMN bis.templates.body_html IS 'HTML body (email); values filled in are HTML-escaped';
COMMENT ON COLUMN bis.templates.builtin IS 'Shipped with bis: cannot be changed, only overridden';
COMMENT ON COLUMN bis.templates.updated_at IS 'When the template was last changed';

INSERT INTO bis.templates (kind, channel, locale, subject, body, body_html, builtin) VALUES
('back_in_stock', 'email', 'en',
 '{{item.title|Your item}} is back in stock',
 E'Hi {{contact.first_name|there}},\n\n{{item.title|The item you asked about}} is back in stock.\n\n{{item.url}}\n\nYou get this message because you asked to be told when it was back.\n',
 E'<p>Hi {{contact.first_name|there}},</p>\n<p><a href="{{item.url}}">{{item.title|The item you asked about}}</a> is back in stock.</p>\n<p>You get this message because you asked to be told when it was back.</p>\n',
 true),
('back_in_stock', 'sms', 'en', NULL,
 '{{item.title|Your item}} is back in stock: {{item.url}}', NULL, true),
('back_in_stock', 'push', 'en', 'Back in stock',
 '{{item.title|Your item}} is back. Get it before it is gone.', NULL, true),
('back_in_stock', 'webpush', 'en', 'Back in stock',
 '{{item.title|Your item}} is back. Get it before it is gone.', NULL, true);

SELECT pg_catalog.pg_extension_config_dump('bis.templates', 'WHERE NOT builtin');

CREATE FUNCTION bis._templates_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF (TG_OP <> 'INSERT' AND OLD.builtin) OR (TG_OP <> 'DELETE' AND NEW.builtin) THEN
        RAISE EXCEPTION 'built-in templates cannot be changed' USING ERRCODE = 'insufficient_privilege',
            HINT = 'Insert a template of your own with the same kind, channel and locale: it takes precedence.';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    PERFORM bis._check_key('locale', NEW.locale);
    -- a template that cannot be rendered is refused now, not when a mailer claims
    PERFORM bis.render(NEW.subject, '{}'), bis.render(NEW.body, '{}'), bis.render(NEW.body_html, '{}', true);
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION bis._templates_check() IS 'Trigger on bis.templates: keeps built-in rows unchanged and refuses templates that cannot be rendered';

CREATE TRIGGER templates_check BEFORE INSERT OR UPDATE OR DELETE ON bis.templates
    FOR EACH ROW EXECUTE FUNCTION bis._templates_check();

CREATE FUNCTION bis._template(kind text, channel text, locale text, default_locale text)
    RETURNS bis.templates
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    -- sv-SE, then sv, then the default locale; your own rows before built-in ones
    SELECT t.* FROM bis.templates t
     WHERE t.kind = _template.kind AND t.channel = _template.channel
       AND lower(t.locale) IN (lower(_template.locale),
                               lower(split_part(replace(_template.locale, '_', '-'), '-', 1)),
                               lower(_template.default_locale))
     ORDER BY CASE lower(t.locale)
                  WHEN lower(_template.locale) THEN 1
                  WHEN lower(split_part(replace(_template.locale, '_', '-'), '-', 1)) THEN 2
                  ELSE 3 END,
              t.builtin
     LIMIT 1;
$$;
COMMENT ON FUNCTION bis._template(text, text, text, text) IS 'The template for a kind, channel and locale, with the locale fallbacks';

/*
 * The queue protocol, for mailers
 */

CREATE FUNCTION bis._check_ids(ids bigint[]) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    missing bigint;
BEGIN
    IF ids IS NULL OR array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'notification ids must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT i INTO missing FROM unnest(ids) i
     WHERE NOT EXISTS (SELECT FROM bis.notifications n WHERE n.id = i) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'notification % does not exist', missing USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_ids(bigint[]) IS 'Raises an error for a NULL id or one that no notification has';

CREATE FUNCTION bis._check_worker(worker text, required boolean) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF worker IS NULL AND required THEN
        RAISE EXCEPTION 'worker must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Name the mailer process, such as its host name and process id.';
    END IF;
    IF worker = '' THEN
        RAISE EXCEPTION 'worker must not be an empty string' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the mailer process, such as its host name and process id.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_worker(text, boolean) IS 'Raises an error for a missing or empty worker name';

CREATE FUNCTION bis.claim(worker text, max_rows integer DEFAULT 100, lease interval DEFAULT '5 minutes')
    RETURNS SETOF bis.notifications
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    ev bis.restock_events;
    ids bigint[];
    ids_min bigint;
    ids_max bigint;
    expired integer;
BEGIN
    PERFORM bis._check_worker(worker, true);
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The max_rows given is %s.', coalesce(max_rows::text, 'NULL'));
    END IF;
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be a positive interval' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The lease given is %s.', coalesce(lease::text, 'NULL'));
    END IF;

    LOOP
        -- rows whose lease ran out, then due pending rows, oldest first; SKIP
        -- LOCKED: concurrent claims never hand out the same row
        ids := ARRAY(SELECT n.id FROM bis.notifications n
                      WHERE n.status = 'claimed' AND n.claimed_until <= now()
                      ORDER BY n.claimed_until, n.id
                      LIMIT max_rows FOR UPDATE SKIP LOCKED);
        IF cardinality(ids) < max_rows THEN
            ids := ids || ARRAY(SELECT n.id FROM bis.notifications n
                                 WHERE n.status = 'pending' AND n.available_at <= now()
                                 ORDER BY n.available_at, n.id
                                 LIMIT max_rows - cardinality(ids) FOR UPDATE SKIP LOCKED);
        END IF;
        IF cardinality(ids) = 0 THEN
            -- nothing due: large restocks and later waves are expanded by the
            -- mailers that drain them, straight into this claim
            ev := bis._next_expansion(0);
            IF ev.id IS NOT NULL THEN
                RETURN QUERY SELECT * FROM bis._expand(ev, least(max_rows, settings.expand_chunk),
                                                       worker, lease);
            END IF;
            RETURN;
        END IF;
        -- bounds that steer the planner to the primary key rather than a full scan
        SELECT min(i), max(i) INTO ids_min, ids_max FROM unnest(ids) i;

        -- past their time to live they are never handed out
        WITH gone AS (
            UPDATE bis.notifications n
               SET status = 'expired', claimed_by = NULL, claimed_until = NULL
             WHERE n.id = ANY (ids) AND n.id BETWEEN ids_min AND ids_max
               AND n.created_at < now() - settings.notification_ttl
            RETURNING 1)
        SELECT count(*) INTO expired FROM gone;

        RETURN QUERY
        WITH batch AS (
            SELECT n.id, n.kind, n.channel, n.payload->>'locale' AS locale
              FROM bis.notifications n
             WHERE n.id = ANY (ids) AND n.id BETWEEN ids_min AND ids_max AND n.status <> 'expired'
        ), tpl AS (
            -- a batch has few kinds, channels and locales: look each up once
            SELECT k.kind, k.channel, k.locale, t.subject, t.body, t.body_html
              FROM (SELECT DISTINCT b.kind, b.channel, b.locale FROM batch b) k
              LEFT JOIN LATERAL bis._template(k.kind, k.channel, k.locale,
                                              settings.default_locale) t ON true
        ), taken AS (
            UPDATE bis.notifications n
               SET status = 'claimed', claimed_by = claim.worker,
                   claimed_until = now() + claim.lease, attempts = n.attempts + 1,
                   subject = bis.render(tpl.subject, n.payload),
                   body = bis.render(tpl.body, n.payload),
                   body_html = bis.render(tpl.body_html, n.payload, true)
              FROM batch b
              JOIN tpl ON tpl.kind = b.kind AND tpl.channel = b.channel
                      AND tpl.locale IS NOT DISTINCT FROM b.locale
             WHERE n.id = b.id
            RETURNING n.*)
        SELECT * FROM taken ORDER BY id;
        -- a batch that had only expired rows: look again
        EXIT WHEN FOUND OR expired = 0;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis.claim(text, integer, interval) IS 'Hands a mailer up to max_rows due notifications, rendered and leased to worker until now() + lease; rows past bis.notification_ttl become expired instead';

CREATE FUNCTION bis.ack(ids bigint[], worker text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done integer;
BEGIN
    PERFORM bis._check_ids(ids);
    PERFORM bis._check_worker(worker, false);
    -- with worker, a row another mailer took after this one's lease ran out is not touched
    WITH sent AS (
        UPDATE bis.notifications n
           SET status = 'sent', sent_at = now(), claimed_until = NULL
         WHERE n.id = ANY (ack.ids) AND n.status = 'claimed'
           AND (ack.worker IS NULL OR n.claimed_by = ack.worker)
        RETURNING 1)
    SELECT count(*) INTO done FROM sent;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis.ack(bigint[], text) IS 'Marks claimed notifications sent; with worker, only those whose lease that worker still holds; returns how many';

CREATE FUNCTION bis.fail(id bigint, error text, retry boolean DEFAULT true, worker text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    n bis.notifications;
    delay interval;
BEGIN
    PERFORM bis._check_ids(ARRAY[fail.id]);
    PERFORM bis._check_worker(worker, false);
    IF fail.error IS NULL THEN
        RAISE EXCEPTION 'error must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the provider''s answer, or what went wrong.';
    END IF;

    SELECT * INTO n FROM bis.notifications x WHERE x.id = fail.id FOR UPDATE;
    -- only a claimed row, and with worker only one that worker holds
    IF n.status <> 'claimed' OR (fail.worker IS NOT NULL AND n.claimed_by <> fail.worker) THEN
        RETURN n.status;
    END IF;

    IF coalesce(fail.retry, true) AND n.attempts < settings.max_attempts THEN
        -- exponential backoff, with jitter so that a burst of failures spreads out
        delay := least(settings.retry_base_delay * power(2, n.attempts - 1), settings.retry_max_delay);
        delay := delay * (0.5 + random() / 2);
        UPDATE bis.notifications x
           SET status = 'pending', available_at = now() + delay, last_error = fail.error,
               claimed_by = NULL, claimed_until = NULL
         WHERE x.id = fail.id;
        RETURN 'pending';
    END IF;
    UPDATE bis.notifications x
       SET status = 'dead', last_error = fail.error, claimed_until = NULL
     WHERE x.id = fail.id;
    RETURN 'dead';
END
$$;
COMMENT ON FUNCTION bis.fail(bigint, text, boolean, text) IS 'Records a failed delivery: with retry the notification is pending again after a backoff, otherwise or after bis.max_attempts attempts it is dead; returns the new status';

CREATE FUNCTION bis.release(ids bigint[], worker text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done integer;
BEGIN
    PERFORM bis._check_ids(ids);
    PERFORM bis._check_worker(worker, false);
    -- not delivered: the claim does not count as an attempt
    WITH released AS (
        UPDATE bis.notifications n
           SET status = 'pending', available_at = now(), attempts = greatest(n.attempts - 1, 0),
               claimed_by = NULL, claimed_until = NULL
         WHERE n.id = ANY (release.ids) AND n.status = 'claimed'
           AND (release.worker IS NULL OR n.claimed_by = release.worker)
        RETURNING 1)
    SELECT count(*) INTO done FROM released;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis.release(bigint[], text) IS 'Gives claimed notifications back to the queue at once, as a mailer shutting down does; returns how many';

CREATE FUNCTION bis.requeue(ids bigint[]) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done integer;
BEGIN
    PERFORM bis._check_ids(ids);
    WITH requeued AS (
        UPDATE bis.notifications n
           SET status = 'pending', available_at = now(), attempts = 0,
               claimed_by = NULL, claimed_until = NULL
         WHERE n.id = ANY (requeue.ids) AND n.status = 'dead'
        RETURNING 1)
    SELECT count(*) INTO done FROM requeued;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis.requeue(bigint[]) IS 'Puts dead notifications back in the queue with a fresh count of attempts (those past bis.notification_ttl will expire); returns how many';

/*
 * Housekeeping
 */

CREATE FUNCTION bis.purge(older_than interval DEFAULT NULL)
    RETURNS TABLE (notifications bigint, subscriptions bigint, restock_events bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    cutoff timestamptz := now() - coalesce(older_than, (bis._settings()).retention);
BEGIN
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The older_than given is %s.', older_than);
    END IF;
    -- what is finished: delivered, given up, expired; pending and claimed rows stay
    WITH gone AS (
        DELETE FROM bis.notifications n
         WHERE n.status IN ('sent', 'dead', 'expired', 'cancelled')
           AND coalesce(n.sent_at, n.created_at) < cutoff
        RETURNING 1)
    SELECT count(*) INTO notifications FROM gone;
    WITH gone AS (
        DELETE FROM bis.subscriptions s
         WHERE s.status <> 'active'
           AND coalesce(s.notified_at, s.cancelled_at, s.created_at) < cutoff
        RETURNING 1)
    SELECT count(*) INTO subscriptions FROM gone;
    WITH gone AS (
        DELETE FROM bis.restock_events e
         WHERE e.occurred_at < cutoff AND e.expansion IN ('done', 'stopped')
        RETURNING 1)
    SELECT count(*) INTO restock_events FROM gone;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION bis.purge(interval) IS 'Removes finished notifications, used or cancelled subscriptions and restock events older than older_than (default: the setting bis.retention); returns how many of each';

/*
 * Privileges: nothing is granted to PUBLIC; see the README's Privileges
 */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA bis FROM PUBLIC;
-- the WHEN clause of bis's triggers runs as whoever changes the stock
GRANT EXECUTE ON FUNCTION bis._crossing(text, bigint, bigint) TO PUBLIC;
