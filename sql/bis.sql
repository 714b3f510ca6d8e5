/*
 * bis.sql: the current definition of bis, in one place.
 *
 * The install script of the current version, bis--X.Y.sql, is this file
 * (make builds it); upgrade scripts bis--X.Y--X.Z.sql hold only what changed.
 * Sections: the schema and settings; the catalog (items, contacts); stock and
 * tracking; subscriptions; restocks and matching; the queue; templates;
 * housekeeping; distribution (Citus); tenants; privileges.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION bis" to load this file. \quit

/*
 * The schema and settings
 */

-- the extension's own schema: DROP EXTENSION takes it with everything in it
CREATE SCHEMA bis;
COMMENT ON SCHEMA bis IS 'bis: back-in-stock notifications, restocks matched to subscriptions inside the stock transaction';

CREATE FUNCTION bis._settings(OUT notification_ttl interval, OUT max_attempts integer,
                              OUT retry_base_delay interval, OUT retry_max_delay interval,
                              OUT default_locale text, OUT retention interval,
                              OUT expand_chunk integer, OUT wave_per_unit integer,
                              OUT wave_interval interval, OUT max_reminders integer,
                              OUT reminder_interval interval, OUT conversion_window interval)
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__settings';
COMMENT ON FUNCTION bis._settings() IS 'The settings bis''s SQL functions use, typed; calling it loads the library that defines them';

-- the tenant rows are written for and read by (src/tenant.c): see Tenants
CREATE FUNCTION bis._tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__tenant';
COMMENT ON FUNCTION bis._tenant() IS 'The session''s tenant, the setting bis.tenant: '''' unless set, which needs tenants enabled';

-- the delivery rules' calendar and rates (src/rules.c)
CREATE FUNCTION bis._parse_send_rate(rate text, OUT messages bigint, OUT period interval)
    LANGUAGE c IMMUTABLE STRICT
    AS 'MODULE_PATHNAME', 'bis__parse_send_rate';
COMMENT ON FUNCTION bis._parse_send_rate(text) IS 'A send rate "N/period" (such as "1000/10min") as a number of messages and an interval; NULL if it is not one';

CREATE FUNCTION bis._local_day_start(at timestamptz, time_zone text, days integer) RETURNS timestamptz
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__local_day_start';
COMMENT ON FUNCTION bis._local_day_start(timestamptz, text, integer) IS 'When the local calendar day that is days after the one at falls in begins, in time_zone (NULL: the setting bis.default_time_zone)';

CREATE FUNCTION bis._quiet_hours_end(at timestamptz, time_zone text, quiet_hours text) RETURNS timestamptz
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__quiet_hours_end';
COMMENT ON FUNCTION bis._quiet_hours_end(timestamptz, text, text) IS 'When the quiet hours ("HH:MM-HH:MM" of local time) that at falls in end, in time_zone (NULL: the setting bis.default_time_zone); NULL if at is outside them';

-- locales are stored and compared in their canonical case (src/matching.c)
CREATE FUNCTION bis._canonical_locale(locale text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__canonical_locale';
COMMENT ON FUNCTION bis._canonical_locale(text) IS 'A locale in its canonical case, subtags joined by hyphens: sv_se, SV-se and sv-SE are all sv-SE';

-- what a restock event says of the subscriptions a rule held back
CREATE FUNCTION bis._held_back(held jsonb, rule text, n bigint) RETURNS jsonb
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__held_back';
COMMENT ON FUNCTION bis._held_back(jsonb, text, bigint) IS 'A restock event''s held_back with n more subscriptions held back by rule';

/*
 * Checks shared by the functions that take input
 */

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
            RAISE EXCEPTION 'invalid SKU "%"', left(sku, 200) USING ERRCODE = 'invalid_parameter_value',
                DETAIL = 'A SKU has 1 to 128 letters, digits, hyphens or underscores.';
        END IF;
        RAISE EXCEPTION 'invalid SKU "%"', left(sku, 200) USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A SKU has 1 to 128 letters, digits, hyphens or underscores.',
            HINT = format('Element %s of the array is the first that is invalid.', element);
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_sku(text, bigint) IS 'Raises an error for a SKU bis.items would refuse, naming the array element if given';

-- a locale or an external id: NULL for none, never empty, and of bounded length
CREATE FUNCTION bis._check_key(kind text, value text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF value = '' THEN
        RAISE EXCEPTION '% must not be an empty string', kind USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Pass NULL for no %s.', kind);
    END IF;
    IF kind = 'locale' AND (length(value) > 35 OR value !~ '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$') THEN
        RAISE EXCEPTION 'invalid locale "%"', left(value, 40) USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A locale is a language code with an optional region, such as "sv" or "sv-SE", of at most 35 characters.';
    END IF;
    IF kind <> 'locale' AND length(value) > 255 THEN
        RAISE EXCEPTION '% is too long', kind USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('The %s given has %s characters; at most 255 are allowed.', kind, length(value));
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_key(text, text) IS 'Raises an error for an empty, malformed or too long locale or external id';

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
                PERFORM bis._batch_error(n, format('unrecognized field "%s"', left(k, 100)),
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

CREATE FUNCTION bis._interval(value text) RETURNS interval
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN value::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow
               OR invalid_parameter_value THEN
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
 * The catalog: items and contacts
 */

CREATE TABLE bis.items (
    sku text NOT NULL
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
    -- bounded so that a wave's size and time never overflow
    wave_per_unit integer CHECK (wave_per_unit BETWEEN 1 AND 1000000),
    wave_interval interval CHECK (wave_interval BETWEEN interval '1 second' AND interval '365 days'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    restock_dwell interval CHECK (restock_dwell BETWEEN interval '0' AND interval '7 days'),
    send_rate text CHECK (send_rate IS NULL OR bis._parse_send_rate(send_rate) IS NOT NULL),
    -- what reaches a message's link: web addresses only, never javascript: or data:
    CONSTRAINT items_url_check CHECK (length(url) <= 2048 AND url ~* '^https?://[^[:space:][:cntrl:]]+$'),
    CONSTRAINT items_image_url_check
        CHECK (length(image_url) <= 2048 AND image_url ~* '^https?://[^[:space:][:cntrl:]]+$'),
    tenant text NOT NULL DEFAULT bis._tenant(),
    -- the tenant last in every key: a key's lookups by SKU or contact alone still use it
    CONSTRAINT items_pkey PRIMARY KEY (sku, tenant)
);
-- the trigger loads the items that have a threshold of their own
CREATE INDEX items_threshold_idx ON bis.items (sku, tenant) INCLUDE (threshold)
    WHERE threshold IS NOT NULL;

COMMENT ON TABLE bis.items IS 'The catalog: one row per SKU, with the product data a message needs';
COMMENT ON COLUMN bis.items.sku IS 'Stock keeping unit: 1 to 128 letters, digits, hyphens or underscores';
COMMENT ON COLUMN bis.items.title IS 'Product title';
COMMENT ON COLUMN bis.items.url IS 'Product page: an http or https address';
COMMENT ON COLUMN bis.items.image_url IS 'Product image: an http or https address';
COMMENT ON COLUMN bis.items.price IS 'Current price';
COMMENT ON COLUMN bis.items.compare_at_price IS 'Price before a sale';
COMMENT ON COLUMN bis.items.currency IS 'Currency of the prices, such as EUR';
COMMENT ON COLUMN bis.items.category IS 'Product category';
COMMENT ON COLUMN bis.items.attributes IS 'Free-form product attributes, a JSON object';
COMMENT ON COLUMN bis.items.threshold IS 'Quantity at which the SKU is back in stock; NULL: the setting bis.default_threshold';
COMMENT ON COLUMN bis.items.alerts_enabled IS 'Whether a restock of this SKU notifies its subscribers';
COMMENT ON COLUMN bis.items.wave_per_unit IS 'Subscribers notified per unit in stock in each wave, 1 to 1000000; NULL: the setting bis.wave_per_unit';
COMMENT ON COLUMN bis.items.wave_interval IS 'Time between waves, 1 second to 365 days; NULL: the setting bis.wave_interval';
COMMENT ON COLUMN bis.items.created_at IS 'When the item was added';
COMMENT ON COLUMN bis.items.updated_at IS 'When the item was last changed';
COMMENT ON COLUMN bis.items.restock_dwell IS 'How long stock must stay at or above the threshold before a restock notifies anyone, 0 to 7 days; NULL: the setting bis.restock_dwell';
COMMENT ON COLUMN bis.items.send_rate IS 'Most messages about this item handed to mailers per period, "N/period"; NULL: the setting bis.item_send_rate';
COMMENT ON COLUMN bis.items.status IS 'active, draft or archived, as in Shopify; only an active item''s restocks notify anyone';

CREATE FUNCTION bis._items_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__items_changed';
COMMENT ON FUNCTION bis._items_changed() IS 'Statement trigger on bis.items: makes every backend reload the item thresholds it caches';

CREATE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bis.items
    FOR EACH STATEMENT EXECUTE FUNCTION bis._items_changed();

-- an item's URL field: an http or https address, or an error naming the element
CREATE FUNCTION bis._check_url(field text, value text, element bigint) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF length(value) > 2048 OR value !~* '^https?://[^[:space:][:cntrl:]]+$' THEN
        PERFORM bis._batch_error(element, format('invalid %s "%s"', field, left(value, 100)),
            'An item''s addresses start with "https://" or "http://", have no spaces and at most 2048 characters.');
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_url(text, text, bigint) IS 'Raises an error for an item URL that is not an http or https address';

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
              'wave_per_unit', 'wave_interval', 'restock_dwell', 'send_rate'],
        ARRAY['sku']);
    PERFORM bis._check_duplicates(
        ARRAY(SELECT format('SKU "%s"', a->>'sku') FROM jsonb_array_elements(items) a), 'SKU');

    FOR e, n IN SELECT a.value, a.ordinality FROM jsonb_array_elements(items) WITH ORDINALITY a LOOP
        FOREACH k IN ARRAY ARRAY['title', 'url', 'image_url', 'currency', 'category', 'status'] LOOP
            PERFORM bis._json_field(e, k, 'string', n);
        END LOOP;
        PERFORM bis._check_url('url', e->>'url', n);
        PERFORM bis._check_url('image_url', e->>'image_url', n);
        PERFORM bis._json_field(e, 'attributes', 'object', n);
        PERFORM bis._json_field(e, 'alerts_enabled', 'boolean', n);
        FOREACH k IN ARRAY ARRAY['price', 'compare_at_price'] LOOP
            IF (bis._json_field(e, k, 'number', n) #>> '{}')::numeric < 0 THEN
                PERFORM bis._batch_error(n, format('%s must not be negative', k),
                                         format('The %s given is %s.', k, e->k));
            END IF;
        END LOOP;
        v := bis._json_field(e, 'threshold', 'number', n);
        IF (v #>> '{}')::numeric < 1 OR (v #>> '{}')::numeric > 2147483647
           OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
            PERFORM bis._batch_error(n, format('invalid threshold %s', v),
                'A threshold is a whole number from 1 to 2147483647, or null for the setting bis.default_threshold.');
        END IF;
        v := bis._json_field(e, 'wave_per_unit', 'number', n);
        IF (v #>> '{}')::numeric < 1 OR (v #>> '{}')::numeric > 1000000
           OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric) THEN
            PERFORM bis._batch_error(n, format('invalid wave_per_unit %s', v),
                'A wave_per_unit is a whole number from 1 to 1000000, or null for the setting bis.wave_per_unit.');
        END IF;
        v := bis._json_field(e, 'wave_interval', 'string', n);
        IF jsonb_typeof(v) = 'string'
           AND coalesce(bis._interval(v #>> '{}') NOT BETWEEN interval '1 second' AND interval '365 days', true) THEN
            PERFORM bis._batch_error(n, format('invalid wave_interval %s', left(v::text, 100)),
                'A wave interval is from 1 second to 365 days, such as "30 minutes", or null for the setting bis.wave_interval.');
        END IF;
        v := bis._json_field(e, 'restock_dwell', 'string', n);
        IF jsonb_typeof(v) = 'string'
           AND coalesce(bis._interval(v #>> '{}') NOT BETWEEN interval '0' AND interval '7 days', true) THEN
            PERFORM bis._batch_error(n, format('invalid restock_dwell %s', left(v::text, 100)),
                'A restock dwell is from 0 to 7 days, such as "10 minutes", or null for the setting bis.restock_dwell.');
        END IF;
        v := bis._json_field(e, 'send_rate', 'string', n);
        IF jsonb_typeof(v) = 'string' AND bis._parse_send_rate(v #>> '{}') IS NULL THEN
            PERFORM bis._batch_error(n, format('invalid send_rate %s', left(v::text, 100)),
                'A send rate is "N/period": at least 1 message per interval of at least a second, such as "100/1h", or null for the setting bis.item_send_rate.');
        END IF;
        IF e->>'status' NOT IN ('active', 'draft', 'archived') THEN
            PERFORM bis._batch_error(n, format('invalid status "%s"', left(e->>'status', 100)),
                'The statuses are active, draft and archived.');
        END IF;

        -- a field left out keeps its value; a field given as null is cleared
        INSERT INTO bis.items AS i (sku, title, url, image_url, price, compare_at_price, currency,
                                    category, status, attributes, threshold, alerts_enabled,
                                    wave_per_unit, wave_interval, restock_dwell, send_rate)
        VALUES (e->>'sku', e->>'title', e->>'url', e->>'image_url', (e->>'price')::numeric,
                (e->>'compare_at_price')::numeric, e->>'currency', e->>'category',
                coalesce(e->>'status', 'active'), coalesce(nullif(e->'attributes', 'null'), '{}'),
                (e->>'threshold')::numeric::integer, coalesce((e->>'alerts_enabled')::boolean, true),
                (e->>'wave_per_unit')::numeric::integer, (e->>'wave_interval')::interval,
                (e->>'restock_dwell')::interval, e->>'send_rate')
        ON CONFLICT (sku, tenant) DO UPDATE SET
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
            restock_dwell = CASE WHEN e ? 'restock_dwell' THEN excluded.restock_dwell
                                 ELSE i.restock_dwell END,
            send_rate = CASE WHEN e ? 'send_rate' THEN excluded.send_rate ELSE i.send_rate END,
            updated_at = excluded.updated_at;
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis.upsert_items(jsonb) IS 'Inserts or updates catalog items from a JSON array of objects; a field left out keeps its value; returns how many items were written';

CREATE TABLE bis.contacts (
    contact_id text NOT NULL CHECK (contact_id <> ''),
    email text,
    phone text,
    locale text,
    time_zone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    first_name text,
    -- bounded: an address or a name never takes a megabyte
    CONSTRAINT contacts_limits_check CHECK (length(contact_id) <= 255 AND length(email) <= 254
                                            AND length(phone) <= 32 AND length(locale) <= 35
                                            AND length(time_zone) <= 64 AND length(first_name) <= 200),
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT contacts_pkey PRIMARY KEY (contact_id, tenant)
);

-- a storefront finds a guest by the address it gives (bis.subscribe_guest)
CREATE INDEX contacts_email_idx ON bis.contacts (lower(email));

COMMENT ON TABLE bis.contacts IS 'Who is notified: one row per contact id chosen by the application';
COMMENT ON COLUMN bis.contacts.contact_id IS 'The application''s id for the contact, 1 to 255 characters';
COMMENT ON COLUMN bis.contacts.email IS 'Address for the email channel';
COMMENT ON COLUMN bis.contacts.phone IS 'Number for the sms channel';
COMMENT ON COLUMN bis.contacts.locale IS 'Preferred language of messages, such as sv-SE';
COMMENT ON COLUMN bis.contacts.time_zone IS 'IANA time zone, such as Europe/Stockholm';
COMMENT ON COLUMN bis.contacts.created_at IS 'When the contact was added';
COMMENT ON COLUMN bis.contacts.updated_at IS 'When the contact was last changed';
COMMENT ON COLUMN bis.contacts.first_name IS 'First name, for messages that greet the contact';

CREATE FUNCTION bis.upsert_contact(contact_id text, email text DEFAULT NULL, phone text DEFAULT NULL,
                                   locale text DEFAULT NULL, time_zone text DEFAULT NULL,
                                   first_name text DEFAULT NULL)
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
    IF length(upsert_contact.contact_id) > 255 THEN
        RAISE EXCEPTION 'contact_id is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('The contact_id given has %s characters; at most 255 are allowed.',
                            length(upsert_contact.contact_id));
    END IF;
    IF length(upsert_contact.email) > 254 THEN
        RAISE EXCEPTION 'email address is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('The address given has %s characters; an email address has at most 254.',
                            length(upsert_contact.email));
    END IF;
    IF upsert_contact.email !~ '^[^][@[:space:][:cntrl:]<>(),;:"\\]+@[^][@[:space:][:cntrl:]<>(),;:"\\]+$' THEN
        RAISE EXCEPTION 'invalid email address "%"', upsert_contact.email
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An email address has one "@", and no spaces, quotes, brackets, commas, colons or semicolons.';
    END IF;
    IF upsert_contact.phone !~ '^\+?[0-9][0-9 ()-]{2,30}$' THEN
        RAISE EXCEPTION 'invalid phone number "%"', left(upsert_contact.phone, 40)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A phone number has 3 to 31 digits, spaces, hyphens and parentheses, and may start with "+".';
    END IF;
    PERFORM bis._check_key('locale', upsert_contact.locale);
    upsert_contact.locale := bis._canonical_locale(upsert_contact.locale);
    IF length(upsert_contact.time_zone) > 64 THEN
        RAISE EXCEPTION 'time zone "%" not recognized', left(upsert_contact.time_zone, 70)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- raises invalid_parameter_value for an unrecognized time zone
    PERFORM pg_catalog.timezone(upsert_contact.time_zone, now());
    IF length(upsert_contact.first_name) > 200 THEN
        RAISE EXCEPTION 'first_name is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('The first_name given has %s characters; at most 200 are allowed.',
                            length(upsert_contact.first_name));
    END IF;

    -- an argument left NULL keeps the value the contact has
    INSERT INTO bis.contacts AS c (contact_id, email, phone, locale, time_zone, first_name)
    VALUES (upsert_contact.contact_id, upsert_contact.email, upsert_contact.phone,
            upsert_contact.locale, upsert_contact.time_zone, upsert_contact.first_name)
    ON CONFLICT ON CONSTRAINT contacts_pkey DO UPDATE SET
        email = coalesce(excluded.email, c.email),
        phone = coalesce(excluded.phone, c.phone),
        locale = coalesce(excluded.locale, c.locale),
        time_zone = coalesce(excluded.time_zone, c.time_zone),
        first_name = coalesce(excluded.first_name, c.first_name),
        updated_at = excluded.updated_at;
    RETURN upsert_contact.contact_id;
END
$$;
COMMENT ON FUNCTION bis.upsert_contact(text, text, text, text, text, text) IS 'Creates a contact or updates the values given (NULL keeps the old one); returns the contact id';

-- Consent per channel.  No row: the contact's subscription on the channel is
-- its consent; a row with granted false: withdrawn, and nothing is sent there.
CREATE TABLE bis.consents (
    contact_id text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webpush')),
    granted boolean NOT NULL,
    source text CHECK (length(source) <= 200),
    updated_at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT consents_pkey PRIMARY KEY (contact_id, channel, tenant),
    CONSTRAINT consents_contact_id_fkey FOREIGN KEY (contact_id, tenant)
        REFERENCES bis.contacts ON DELETE CASCADE
);
COMMENT ON TABLE bis.consents IS 'Each contact''s consent per channel, with when and from where it was given or withdrawn';
COMMENT ON COLUMN bis.consents.contact_id IS 'The contact';
COMMENT ON COLUMN bis.consents.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.consents.granted IS 'true: given; false: withdrawn, and no message is sent on the channel';
COMMENT ON COLUMN bis.consents.source IS 'Where it was given or withdrawn, such as a form, a subscription or an unsubscribe link';
COMMENT ON COLUMN bis.consents.updated_at IS 'When it was given or withdrawn';

CREATE FUNCTION bis._check_channel(channel text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF channel IS NULL THEN
        RAISE EXCEPTION 'channel must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF channel NOT IN ('email', 'sms', 'push', 'webpush') THEN
        RAISE EXCEPTION 'unrecognized channel "%"', left(channel, 100)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The channels are email, sms, push and webpush.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_channel(text) IS 'Raises an error for a NULL or unrecognized channel';

CREATE FUNCTION bis._check_contact(contact_id text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF contact_id IS NULL THEN
        RAISE EXCEPTION 'contact_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM bis.contacts c WHERE c.contact_id = _check_contact.contact_id) THEN
        RAISE EXCEPTION 'contact "%" does not exist', left(contact_id, 255)
            USING ERRCODE = 'foreign_key_violation',
            HINT = format('Create it first with bis.upsert_contact(%L, email => ...).', left(contact_id, 255));
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_contact(text) IS 'Raises an error for a NULL contact id or one that no contact has';

CREATE FUNCTION bis.set_consent(contact_id text, channel text, granted boolean, source text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_channel(set_consent.channel);
    IF set_consent.granted IS NULL THEN
        RAISE EXCEPTION 'granted must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass true to record consent, false to withdraw it.';
    END IF;
    IF length(set_consent.source) > 200 THEN
        RAISE EXCEPTION 'source is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('The source given has %s characters; at most 200 are allowed.',
                            length(set_consent.source));
    END IF;
    PERFORM bis._check_contact(set_consent.contact_id);
    INSERT INTO bis.consents AS k (contact_id, channel, granted, source)
    VALUES (set_consent.contact_id, set_consent.channel, set_consent.granted, set_consent.source)
    ON CONFLICT ON CONSTRAINT consents_pkey DO UPDATE
        SET granted = excluded.granted, source = excluded.source, updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION bis.set_consent(text, text, boolean, text) IS 'Records that a contact gave (granted true) or withdrew (false) consent for a channel, and where; a withdrawn channel gets no message and no new subscription';

CREATE FUNCTION bis.clear_address(contact_id text, channel text) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    cleared boolean;
BEGIN
    PERFORM bis._check_channel(clear_address.channel);
    IF clear_address.channel NOT IN ('email', 'sms') THEN
        RAISE EXCEPTION 'bis keeps no address for channel "%"', clear_address.channel
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Contacts have an email address for email and a phone number for sms.';
    END IF;
    PERFORM bis._check_contact(clear_address.contact_id);
    SELECT CASE clear_address.channel WHEN 'email' THEN c.email ELSE c.phone END IS NOT NULL
      INTO cleared
      FROM bis.contacts c WHERE c.contact_id = clear_address.contact_id FOR UPDATE;
    UPDATE bis.contacts c
       SET email = CASE WHEN clear_address.channel = 'email' THEN NULL ELSE c.email END,
           phone = CASE WHEN clear_address.channel = 'sms' THEN NULL ELSE c.phone END,
           updated_at = now()
     WHERE c.contact_id = clear_address.contact_id AND cleared;
    RETURN cleared;
END
$$;
COMMENT ON FUNCTION bis.clear_address(text, text) IS 'Removes a contact''s email address (channel email) or phone number (sms); returns whether there was one; messages waiting on that channel are then suppressed';

/*
 * Stock and tracking
 */

CREATE TABLE bis.stock_levels (
    sku text NOT NULL CHECK (sku ~ '^[A-Za-z0-9_-]{1,128}$'),
    locale text CHECK (locale <> ''),
    external_id text CHECK (external_id <> ''),
    quantity integer NOT NULL CHECK (quantity >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL DEFAULT bis._tenant()
);
-- an absent locale or external_id is a key of its own (NULLS NOT DISTINCT needs 15)
CREATE UNIQUE INDEX stock_levels_key ON bis.stock_levels
    (sku, (coalesce(locale, '')), (coalesce(external_id, '')), tenant);

COMMENT ON TABLE bis.stock_levels IS 'Stock per SKU, locale and external id, for applications that keep none of their own; tracked by bis';
COMMENT ON COLUMN bis.stock_levels.sku IS 'The SKU';
COMMENT ON COLUMN bis.stock_levels.locale IS 'Market of this stock level, or NULL';
COMMENT ON COLUMN bis.stock_levels.external_id IS 'Warehouse or external system''s id of this stock level, or NULL';
COMMENT ON COLUMN bis.stock_levels.quantity IS 'Units in stock';
COMMENT ON COLUMN bis.stock_levels.updated_at IS 'When the quantity was last set';

-- The C functions of the restock path (src/trigger.c, src/restock.c)
CREATE FUNCTION bis._stock_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__stock_trigger';
COMMENT ON FUNCTION bis._stock_trigger() IS 'Row trigger put on inventory tables by bis.track(): records restocks and enqueues notifications';

CREATE FUNCTION bis._crossing(sku text, old_quantity bigint, new_quantity bigint) RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__crossing';
COMMENT ON FUNCTION bis._crossing(text, bigint, bigint) IS 'Whether a change of quantity crosses the SKU''s threshold: the WHEN clause of bis''s triggers';

CREATE FUNCTION bis._new_stock_level(sku text, quantity bigint, locale text, external_id text)
    RETURNS integer
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'bis__new_stock_level';
COMMENT ON FUNCTION bis._new_stock_level(text, bigint, text, text) IS 'A level just inserted into bis.stock_levels by bis''s own functions: a crossing from nothing at or above the SKU''s threshold; returns how many notifications it enqueued';

CREATE FUNCTION bis._enqueued_total() RETURNS bigint
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'bis__enqueued_total';
COMMENT ON FUNCTION bis._enqueued_total() IS 'Notifications enqueued by this session''s restocks so far';

-- the one place where bis.set_stock and bis.put_stock_levels write levels;
-- levels is their checked JSON array of {"sku", "quantity", "locale", "externalId"}
CREATE FUNCTION bis._store_levels(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    before bigint := bis._enqueued_total();
    l record;
BEGIN
    -- on Citus, SKU by SKU on the nodes that hold them (see Distribution)
    IF bis._distributed() THEN
        RETURN bis._store_levels_distributed(levels);
    END IF;
    -- a restock takes its SKU's turn after the stock row; taking the turns
    -- first keeps writers of one SKU's stock rows from deadlocking
    PERFORM FROM bis.items i
     WHERE i.sku IN (SELECT a->>'sku' FROM jsonb_array_elements(levels) a)
     ORDER BY i.sku FOR NO KEY UPDATE;

    -- new levels, in key order as a concurrent batch takes them; each is a
    -- crossing from nothing if it is at or above its threshold
    FOR l IN
        INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
        SELECT a->>'sku', bis._canonical_locale(a->>'locale'), a->>'externalId',
               (a->>'quantity')::numeric::integer
          FROM jsonb_array_elements(levels) a
         ORDER BY a->>'sku', coalesce(bis._canonical_locale(a->>'locale'), ''), coalesce(a->>'externalId', '')
        ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, '')), tenant) DO NOTHING
        RETURNING s.sku, s.quantity, s.locale, s.external_id
    LOOP
        PERFORM bis._new_stock_level(l.sku, l.quantity, l.locale, l.external_id);
    END LOOP;

    -- then every level, in the same order (the UPDATE trigger sees the
    -- crossings); a row that already holds these values, as one just
    -- inserted does, is left alone
    INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
    SELECT a->>'sku', bis._canonical_locale(a->>'locale'), a->>'externalId',
           (a->>'quantity')::numeric::integer
      FROM jsonb_array_elements(levels) a
     ORDER BY a->>'sku', coalesce(bis._canonical_locale(a->>'locale'), ''), coalesce(a->>'externalId', '')
    ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, '')), tenant) DO UPDATE SET
        quantity = excluded.quantity,
        updated_at = excluded.updated_at
     WHERE (s.quantity, s.updated_at) IS DISTINCT FROM (excluded.quantity, excluded.updated_at);
    RETURN bis._enqueued_total() - before;
END
$$;
COMMENT ON FUNCTION bis._store_levels(jsonb) IS 'Writes checked stock levels into bis.stock_levels for bis.set_stock and bis.put_stock_levels, new levels counting as crossings from nothing; returns how many notifications the changes enqueued';

CREATE FUNCTION bis.set_stock(sku text, quantity integer, locale text DEFAULT NULL,
                              external_id text DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_sku(set_stock.sku);
    PERFORM bis._check_quantity(set_stock.quantity);
    PERFORM bis._check_key('locale', set_stock.locale);
    PERFORM bis._check_key('external_id', set_stock.external_id);
    RETURN bis._store_levels(jsonb_build_array(jsonb_build_object(
        'sku', set_stock.sku, 'quantity', set_stock.quantity,
        'locale', set_stock.locale, 'externalId', set_stock.external_id)));
END
$$;
COMMENT ON FUNCTION bis.set_stock(text, integer, text, text) IS 'Sets one stock level in bis.stock_levels; returns how many notifications the change enqueued';

CREATE FUNCTION bis.put_stock_levels(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
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
        EXCEPTION WHEN invalid_parameter_value OR string_data_right_truncation THEN
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
                     || CASE WHEN a->>'locale' IS NOT NULL
                             THEN format(' with locale "%s"', bis._canonical_locale(a->>'locale')) ELSE '' END
                     || CASE WHEN a->>'externalId' IS NOT NULL THEN format(' and externalId "%s"', a->>'externalId') ELSE '' END
                FROM jsonb_array_elements(levels) a),
        'sku, locale and externalId');
    RETURN bis._store_levels(levels);
END
$$;
COMMENT ON FUNCTION bis.put_stock_levels(jsonb) IS 'Sets stock levels from a JSON array of {"sku", "quantity", "locale", "externalId"}, all or nothing; returns how many notifications the changes enqueued';

-- Tracking an application's own inventory table (src/track.c)
CREATE FUNCTION bis.track(tbl regclass, sku_column name DEFAULT 'sku',
                          quantity_column name DEFAULT 'quantity',
                          locale_column name DEFAULT NULL, external_id_column name DEFAULT NULL,
                          price_column name DEFAULT NULL)
    RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis_track';
COMMENT ON FUNCTION bis.track(regclass, name, name, name, name, name) IS 'Puts bis''s restock trigger on an inventory table the caller owns, naming its sku, quantity, locale and external id columns; with a price column, the item''s price in bis.items follows it (a drop tells price-drop subscribers)';

CREATE FUNCTION bis._tracked_price_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__tracked_price_trigger';
COMMENT ON FUNCTION bis._tracked_price_trigger() IS 'Row trigger put by bis.track() on a table with a price column: the item''s price in bis.items follows the column';

CREATE FUNCTION bis.untrack(tbl regclass) RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis_untrack';
COMMENT ON FUNCTION bis.untrack(regclass) IS 'Takes bis''s restock trigger off an inventory table the caller owns';

CREATE FUNCTION bis._trigger_args(tgargs bytea) RETURNS text[]
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis__trigger_args';
COMMENT ON FUNCTION bis._trigger_args(bytea) IS 'A trigger''s arguments as pg_trigger.tgargs holds them, in the database''s encoding';

CREATE VIEW bis.tracked_tables AS
SELECT t.tgrelid::pg_catalog.regclass AS tbl,
       a.args[1]::pg_catalog.name AS sku_column,
       a.args[2]::pg_catalog.name AS quantity_column,
       nullif(a.args[3], '')::pg_catalog.name AS locale_column,
       nullif(a.args[4], '')::pg_catalog.name AS external_id_column,
       (SELECT (bis._trigger_args(p.tgargs))[2]::pg_catalog.name FROM pg_catalog.pg_trigger p
         WHERE p.tgrelid = t.tgrelid AND p.tgname = 'bis_price_update'
           AND p.tgfoid = 'bis._tracked_price_trigger()'::pg_catalog.regprocedure) AS price_column
  FROM pg_catalog.pg_trigger t,
       LATERAL (SELECT bis._trigger_args(t.tgargs) AS args) a
 WHERE t.tgfoid = 'bis._stock_trigger()'::pg_catalog.regprocedure
   AND t.tgname = 'bis_stock_update'
   AND t.tgparentid = 0;
COMMENT ON VIEW bis.tracked_tables IS 'The tables bis tracks, with the columns it reads';

CREATE FUNCTION bis._check_tracked_tables() RETURNS event_trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__check_tracked_tables';
COMMENT ON FUNCTION bis._check_tracked_tables() IS 'Event trigger: refuses an ALTER TABLE that renames, drops or retypes a column a tracked table''s restock trigger reads';

-- run by whoever alters a table: it reads catalogs only, and needs no right on bis
CREATE EVENT TRIGGER bis_check_tracked_tables ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION bis._check_tracked_tables();

CREATE FUNCTION bis._current_stock(source_table text, sku text, locale text, external_id text)
    RETURNS bigint
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__current_stock';
COMMENT ON FUNCTION bis._current_stock(text, text, text, text) IS 'The quantity now in stock for a restock''s SKU, locale and external id, read from the table that restocked as that table''s owner; NULL if it is no longer tracked';

-- bis.stock_levels is tracked from the start, and has no INSERT trigger: the
-- levels that bis.set_stock and bis.put_stock_levels create are crossings
-- through bis._new_stock_level, and rows pg_restore loads are not restocks
CREATE TRIGGER bis_stock_update AFTER UPDATE OF quantity ON bis.stock_levels FOR EACH ROW
    WHEN (NEW.quantity >= 1 AND (OLD.quantity IS NULL OR NEW.quantity > OLD.quantity)
          AND bis._crossing(NEW.sku, OLD.quantity, NEW.quantity))
    EXECUTE FUNCTION bis._stock_trigger('sku', 'quantity', 'locale', 'external_id');

/*
 * Subscriptions
 */

-- Waiting subscriptions, and those cancelled or expired.  A subscription
-- that a restock uses leaves this table: its notification keeps what it held
-- (bis.subscription_history shows both).
CREATE TABLE bis.subscriptions (
    id bigserial PRIMARY KEY,
    contact_id text NOT NULL,
    sku text NOT NULL,
    locale text CHECK (locale <> ''),
    external_id text CHECK (external_id <> ''),
    channel text NOT NULL DEFAULT 'email'
        CHECK (channel IN ('email', 'sms', 'push', 'webpush')),
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'cancelled', 'expired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    max_price numeric CHECK (max_price >= 0),
    kind text NOT NULL DEFAULT 'back_in_stock' CHECK (kind IN ('back_in_stock', 'price_drop')),
    target_price numeric CHECK (target_price >= 0),
    price_at_subscription numeric,
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT subscriptions_contact_id_fkey FOREIGN KEY (contact_id, tenant)
        REFERENCES bis.contacts ON DELETE CASCADE,
    CONSTRAINT subscriptions_sku_fkey FOREIGN KEY (sku, tenant) REFERENCES bis.items ON DELETE CASCADE
);
-- one active subscription per contact, SKU, locale, external id, channel,
-- kind and tenant.  The last two in one text, the tenant with "/" after it
-- for a price drop ("/" is in no tenant's name): without tenants, '' for a
-- back-in-stock subscription, one byte of every entry as the boolean of the
-- kind took alone (the kind's name would take 14, a third of the index)
CREATE UNIQUE INDEX subscriptions_active_key ON bis.subscriptions
    (contact_id, sku, (coalesce(locale, '')), (coalesce(external_id, '')), channel,
     (CASE WHEN kind = 'price_drop' THEN tenant || '/' ELSE tenant END))
    WHERE status = 'active';
-- what a restock matches, oldest first
CREATE INDEX subscriptions_active_sku_idx ON bis.subscriptions (sku, id)
    WHERE status = 'active' AND kind = 'back_in_stock';
-- what a price drop matches, oldest first
CREATE INDEX subscriptions_price_drop_idx ON bis.subscriptions (sku, id)
    WHERE status = 'active' AND kind = 'price_drop';
-- a contact's cancelled and expired subscriptions (its active ones are found
-- through subscriptions_active_key, which starts with contact_id)
CREATE INDEX subscriptions_contact_idx ON bis.subscriptions (contact_id, created_at)
    WHERE status <> 'active';

COMMENT ON TABLE bis.subscriptions IS 'Requests to be told when a SKU is back in stock: active until a restock uses them (they then move into bis.notifications), cancelled or expired';
COMMENT ON COLUMN bis.subscriptions.id IS 'Subscription id';
COMMENT ON COLUMN bis.subscriptions.contact_id IS 'Who asked';
COMMENT ON COLUMN bis.subscriptions.sku IS 'For which SKU';
COMMENT ON COLUMN bis.subscriptions.locale IS 'Only restocks of this locale fire it, or NULL';
COMMENT ON COLUMN bis.subscriptions.external_id IS 'Only restocks of this external id fire it, or NULL';
COMMENT ON COLUMN bis.subscriptions.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.subscriptions.status IS 'active, cancelled or expired; only active ones fire';
COMMENT ON COLUMN bis.subscriptions.created_at IS 'When the contact subscribed';
COMMENT ON COLUMN bis.subscriptions.cancelled_at IS 'When it was cancelled';
COMMENT ON COLUMN bis.subscriptions.max_price IS 'Only a restock at which the item costs at most this fires it; NULL: any price';
COMMENT ON COLUMN bis.subscriptions.kind IS 'back_in_stock: told when the SKU is back; price_drop: told when its price drops while in stock';
COMMENT ON COLUMN bis.subscriptions.target_price IS 'A price drop fires it at or below this price; NULL: a drop of bis.price_drop_min_percent';
COMMENT ON COLUMN bis.subscriptions.price_at_subscription IS 'The item''s price when the subscription was made, what a drop is measured from';

CREATE FUNCTION bis._take_signup(sku text) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'bis__take_signup';
COMMENT ON FUNCTION bis._take_signup(text) IS 'Whether bis.signup_rate has room for one more subscription to the SKU now, counting it if so';

CREATE FUNCTION bis._check_signup_limits(contact_id text, sku text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    most integer := current_setting('bis.max_subscriptions_per_contact')::integer;
    waiting bigint;
BEGIN
    IF most > 0 THEN
        SELECT count(*) INTO waiting FROM bis.subscriptions s
         WHERE s.contact_id = _check_signup_limits.contact_id AND s.status = 'active';
        IF waiting >= most THEN
            RAISE EXCEPTION 'contact "%" has % waiting subscriptions, the most allowed', contact_id, waiting
                USING ERRCODE = 'program_limit_exceeded',
                DETAIL = format('bis.max_subscriptions_per_contact is %s.', most),
                HINT = 'Cancel one of them first, or let a restock use it.';
        END IF;
    END IF;
    IF NOT bis._take_signup(sku) THEN
        RAISE EXCEPTION 'too many sign-ups for SKU "%" just now', sku
            USING ERRCODE = 'program_limit_exceeded',
            DETAIL = format('bis.signup_rate is %s.', current_setting('bis.signup_rate')),
            HINT = 'Try again later.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_signup_limits(text, text) IS 'Raises an error when a new subscription would pass bis.max_subscriptions_per_contact or bis.signup_rate';

CREATE FUNCTION bis.subscribe(contact_id text, sku text, locale text DEFAULT NULL,
                              external_id text DEFAULT NULL, channel text DEFAULT 'email',
                              max_price numeric DEFAULT NULL, kind text DEFAULT 'back_in_stock',
                              target_price numeric DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    sid bigint;
    contact record;
    price numeric;
BEGIN
    IF subscribe.kind IS NULL OR subscribe.kind NOT IN ('back_in_stock', 'price_drop') THEN
        RAISE EXCEPTION 'unrecognized kind "%"', left(subscribe.kind, 100)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A subscription is for back_in_stock or for a price_drop.';
    END IF;
    IF subscribe.target_price < 0 OR (subscribe.target_price IS NOT NULL AND subscribe.kind <> 'price_drop') THEN
        RAISE EXCEPTION 'invalid target_price %', subscribe.target_price
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A target price is for a price_drop subscription, and not negative.';
    END IF;
    IF subscribe.kind = 'price_drop' AND bis._distributed() THEN
        RAISE EXCEPTION 'price-drop subscriptions are not supported on a distributed bis'
            USING ERRCODE = 'feature_not_supported',
            DETAIL = 'bis''s tables are distributed by Citus here, where bis tells of restocks only.';
    END IF;
    IF subscribe.contact_id IS NULL THEN
        RAISE EXCEPTION 'contact_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM bis._check_sku(subscribe.sku);
    PERFORM bis._check_key('locale', subscribe.locale);
    PERFORM bis._check_key('external_id', subscribe.external_id);
    subscribe.locale := bis._canonical_locale(subscribe.locale);
    PERFORM bis._check_channel(subscribe.channel);
    IF subscribe.max_price < 0 THEN
        RAISE EXCEPTION 'max_price must not be negative' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The max_price given is %s.', subscribe.max_price);
    END IF;
    PERFORM bis._check_contact(subscribe.contact_id);
    SELECT c.email, c.phone, k.granted INTO contact
      FROM bis.contacts c
      LEFT JOIN bis.consents k ON k.contact_id = c.contact_id AND k.channel = subscribe.channel
     WHERE c.contact_id = subscribe.contact_id;
    -- a message that could not be addressed would only be suppressed
    IF (subscribe.channel = 'email' AND contact.email IS NULL)
       OR (subscribe.channel = 'sms' AND contact.phone IS NULL) THEN
        RAISE EXCEPTION 'contact "%" has no %', subscribe.contact_id,
              CASE subscribe.channel WHEN 'email' THEN 'email address' ELSE 'phone number' END
            USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Give it one with bis.upsert_contact(%L, %s => ...), or subscribe on another channel.',
                          subscribe.contact_id, CASE subscribe.channel WHEN 'email' THEN 'email' ELSE 'phone' END);
    END IF;
    IF NOT contact.granted THEN
        RAISE EXCEPTION 'contact "%" has withdrawn consent for channel "%"', subscribe.contact_id,
              subscribe.channel
            USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'A contact who withdrew consent for a channel gets no message on it.',
            HINT = format('If the contact gives it anew, record that first with bis.set_consent(%L, %L, true, source => ...).',
                          subscribe.contact_id, subscribe.channel);
    END IF;
    SELECT i.price INTO price FROM bis.items i WHERE i.sku = subscribe.sku;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item "%" does not exist', subscribe.sku
            USING ERRCODE = 'foreign_key_violation',
            HINT = format('Add it to the catalog first with bis.upsert_items(''[{"sku": "%s", "title": ...}]'').',
                          subscribe.sku);
    END IF;
    -- a drop is measured from the price now, or to a target
    IF subscribe.kind = 'price_drop' AND price IS NULL AND subscribe.target_price IS NULL THEN
        RAISE EXCEPTION 'item "%" has no price to drop from', subscribe.sku
            USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give the subscription a target_price, or the item a price.';
    END IF;
    -- subscribing is consent for the channel
    IF contact.granted IS NULL THEN
        INSERT INTO bis.consents (contact_id, channel, granted, source)
        VALUES (subscribe.contact_id, subscribe.channel, true, 'subscription')
        ON CONFLICT ON CONSTRAINT consents_pkey DO NOTHING;
    END IF;

    -- a concurrent subscribe of the same waits here and then finds this one;
    -- subscribing again sets the maximum price anew
    FOR attempt IN 1..3 LOOP
        -- a new subscription within the sign-up limits; the same again is no new one
        IF attempt = 1 AND NOT EXISTS (
               SELECT FROM bis.subscriptions s
                WHERE s.contact_id = subscribe.contact_id AND s.sku = subscribe.sku
                  AND s.locale IS NOT DISTINCT FROM subscribe.locale
                  AND s.external_id IS NOT DISTINCT FROM subscribe.external_id
                  AND s.channel = subscribe.channel AND s.kind = subscribe.kind
                  AND s.status = 'active') THEN
            PERFORM bis._check_signup_limits(subscribe.contact_id, subscribe.sku);
        END IF;
        INSERT INTO bis.subscriptions AS s (contact_id, sku, locale, external_id, channel, max_price,
                                            kind, target_price, price_at_subscription)
        VALUES (subscribe.contact_id, subscribe.sku, subscribe.locale, subscribe.external_id,
                subscribe.channel, subscribe.max_price, subscribe.kind, subscribe.target_price,
                CASE WHEN subscribe.kind = 'price_drop' THEN price END)
        ON CONFLICT (contact_id, sku, (coalesce(locale, '')), (coalesce(external_id, '')), channel,
                     (CASE WHEN kind = 'price_drop' THEN tenant || '/' ELSE tenant END))
            WHERE status = 'active' DO NOTHING
        RETURNING s.id INTO sid;
        IF sid IS NOT NULL THEN
            RETURN sid;
        END IF;
        SELECT s.id INTO sid FROM bis.subscriptions s
         WHERE s.contact_id = subscribe.contact_id AND s.sku = subscribe.sku
           AND s.locale IS NOT DISTINCT FROM subscribe.locale
           AND s.external_id IS NOT DISTINCT FROM subscribe.external_id
           AND s.channel = subscribe.channel AND s.kind = subscribe.kind AND s.status = 'active';
        IF sid IS NOT NULL THEN
            UPDATE bis.subscriptions s
               SET max_price = subscribe.max_price, target_price = subscribe.target_price
             WHERE s.id = sid AND s.sku = subscribe.sku
               AND (s.max_price, s.target_price) IS DISTINCT FROM (subscribe.max_price, subscribe.target_price);
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
COMMENT ON FUNCTION bis.subscribe(text, text, text, text, text, numeric, text, numeric) IS 'Creates an active subscription (back_in_stock, or price_drop: told when the price of the item in stock drops to target_price, or by bis.price_drop_min_percent), or returns the id of the same one already active (setting its prices anew); records consent for the channel, and refuses a channel whose consent was withdrawn';

CREATE FUNCTION bis.unsubscribe(subscription_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    was text;
BEGIN
    UPDATE bis.subscriptions s SET status = 'cancelled', cancelled_at = now()
     WHERE s.id = unsubscribe.subscription_id AND s.status = 'active';
    IF FOUND THEN
        RETURN true;
    END IF;
    -- say which case it met
    SELECT s.status INTO was FROM bis.subscriptions s WHERE s.id = unsubscribe.subscription_id;
    IF FOUND THEN
        RAISE NOTICE 'subscription % is % already', unsubscribe.subscription_id, was;
    ELSE
        RAISE NOTICE 'subscription % is not waiting: it was used by a restock, or does not exist',
              unsubscribe.subscription_id
            USING HINT = 'The link in the message it became (bis.unsubscribe_by_token) stops what follows it.';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION bis.unsubscribe(bigint) IS 'Cancels an active subscription; returns false if it was not active (already used, cancelled, expired or unknown)';

CREATE FUNCTION bis.unsubscribe(contact_id text, sku text) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    cancelled integer;
BEGIN
    UPDATE bis.subscriptions s SET status = 'cancelled', cancelled_at = now()
     WHERE s.contact_id = unsubscribe.contact_id AND s.sku = unsubscribe.sku AND s.status = 'active';
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    RETURN cancelled;
END
$$;
COMMENT ON FUNCTION bis.unsubscribe(text, text) IS 'Cancels all of a contact''s waiting subscriptions of a SKU; returns how many (0 when called again)';

/*
 * Restocks and matching
 */

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
    wave_quota bigint,
    next_wave_at timestamptz,
    kind text NOT NULL DEFAULT 'back_in_stock' CHECK (kind IN ('back_in_stock', 'price_drop')),
    price_before numeric,
    tenant text NOT NULL DEFAULT bis._tenant()
);
CREATE INDEX restock_events_sku_idx ON bis.restock_events (sku, occurred_at);
-- what bis.expand works on
CREATE INDEX restock_events_expansion_idx ON bis.restock_events (id)
    WHERE expansion IN ('expanding', 'waiting');
-- a restock takes over the SKU's open restock: found here, not among all of
-- the SKU's past restocks
CREATE INDEX restock_events_open_sku_idx ON bis.restock_events (sku)
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
COMMENT ON COLUMN bis.restock_events.matched IS 'Active subscriptions that matched, so far: those enqueued and those the rules held back';
COMMENT ON COLUMN bis.restock_events.enqueued IS 'Notifications enqueued, so far';
COMMENT ON COLUMN bis.restock_events.held_back IS 'Waiting subscriptions of the SKU not notified, by rule: alerts_disabled, item_not_active, expired, over_price, dwell, wave, other_locale and other_external_id (Voyado''s matching left them out); such as {"over_price": 2}';
COMMENT ON COLUMN bis.restock_events.occurred_at IS 'Start of the transaction that restocked';
COMMENT ON COLUMN bis.restock_events.expansion IS 'expanding (more to enqueue now), waiting (for the dwell to end or the next wave), done, or stopped (sold out before then, or taken over by a later restock)';
COMMENT ON COLUMN bis.restock_events.max_subscription_id IS 'The SKU''s newest active subscription when it happened: later ones wait for the next restock';
COMMENT ON COLUMN bis.restock_events.last_subscription_id IS 'How far expansion has got, oldest subscription first';
COMMENT ON COLUMN bis.restock_events.wave IS 'The current wave; 0 while the restock waits out its dwell';
COMMENT ON COLUMN bis.restock_events.wave_quota IS 'Notifications the current wave may still enqueue; NULL: no waves';
COMMENT ON COLUMN bis.restock_events.next_wave_at IS 'When the next wave is due, while waiting';
COMMENT ON COLUMN bis.restock_events.kind IS 'back_in_stock: the stock crossed its threshold; price_drop: the price of the item in stock dropped (source_table bis.items)';
COMMENT ON COLUMN bis.restock_events.price_before IS 'For a price drop, the price before it';

-- The C side of a restock (src/restock.c): a crossing writes its restock
-- event and enqueues the first chunk in the stock transaction; later chunks
-- and waves are enqueued by bis._expand, from bis.claim and bis.expand.
CREATE FUNCTION bis._wave_quota(per_unit integer, quantity bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    -- per_unit is at most 1000000: computed in numeric, a wave never overflows
    SELECT least(per_unit::numeric * quantity, 9223372036854775807)::bigint
$$;
COMMENT ON FUNCTION bis._wave_quota(integer, bigint) IS 'How many notifications a wave of per_unit subscribers per unit in stock may enqueue; NULL: no waves';

-- a price drop tells only while the item is in stock (src/restock.c)
CREATE FUNCTION bis._in_stock(sku text, OUT quantity bigint, OUT threshold integer)
    RETURNS SETOF record
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    e record;
BEGIN
    SELECT coalesce(i.threshold, current_setting('bis.default_threshold')::integer) INTO threshold
      FROM bis.items i WHERE i.sku = _in_stock.sku;
    SELECT max(l.quantity) INTO quantity FROM bis.stock_levels l WHERE l.sku = _in_stock.sku;
    IF quantity IS NULL OR quantity < threshold THEN
        -- the table of its last restock, read as that table's owner
        SELECT r.* INTO e FROM bis.restock_events r
         WHERE r.sku = _in_stock.sku AND r.kind = 'back_in_stock' AND r.source_table <> 'bis.stock_levels'
         ORDER BY r.occurred_at DESC LIMIT 1;
        IF FOUND THEN
            quantity := bis._current_stock(e.source_table, e.sku, e.locale, e.external_id);
        END IF;
    END IF;
    IF quantity >= threshold THEN
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION bis._in_stock(text) IS 'The stock of a SKU and its threshold, if it is in stock now: in bis.stock_levels, or in the table of its last restock';

CREATE FUNCTION bis._price_drop_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__price_drop_trigger';
COMMENT ON FUNCTION bis._price_drop_trigger() IS 'Row trigger on bis.items: a price drop of an item in stock tells its price-drop subscribers whose price it reaches, as a restock tells its subscribers';
CREATE TRIGGER items_price_drop AFTER UPDATE OF price ON bis.items FOR EACH ROW
    WHEN (NEW.price < OLD.price)
    EXECUTE FUNCTION bis._price_drop_trigger();

/*
 * The queue: notifications, for mailers to claim, deliver and acknowledge
 */

-- Fixed-width columns first, so that no row carries padding.
CREATE TABLE bis.notifications (
    id bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL,
    restock_event_id bigint,
    subscribed_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    claimed_until timestamptz,
    sent_at timestamptz,
    unsubscribed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    kind text NOT NULL DEFAULT 'back_in_stock'
        CHECK (kind IN ('back_in_stock', 'reminder', 'price_drop')),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'claimed', 'sent', 'dead', 'suppressed', 'cancelled', 'expired')),
    contact_id text NOT NULL,
    sku text NOT NULL,
    locale text,
    external_id text,
    channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webpush')),
    claimed_by text,
    status_reason text,
    last_error text,
    tenant text NOT NULL DEFAULT bis._tenant()
);
-- what bis.claim hands out: due pending rows, and claimed rows whose lease
-- ran out (claimed_until IS NOT NULL holds for every claimed row: only the
-- claim's own test of the lease's end implies it, so acks and releases,
-- which go by id, cannot choose this index).  The rows of a chunk or a
-- claim share one time, so each index keeps one entry for all of them
-- (deduplication), in the order the rows were written.
CREATE INDEX notifications_due_idx ON bis.notifications (available_at)
    WHERE status = 'pending';
CREATE INDEX notifications_lease_idx ON bis.notifications (claimed_until)
    WHERE status = 'claimed' AND claimed_until IS NOT NULL;
-- a contact's notifications, and the subscriptions they used
CREATE INDEX notifications_contact_idx ON bis.notifications (contact_id);

COMMENT ON TABLE bis.notifications IS 'The outbox: one row per used subscription and message kind, for mailers to claim, deliver and acknowledge; the message is built when a mailer claims it';
COMMENT ON COLUMN bis.notifications.id IS 'Notification id: the idempotency key a mailer passes on to its provider';
COMMENT ON COLUMN bis.notifications.subscription_id IS 'The subscription it fulfils';
COMMENT ON COLUMN bis.notifications.restock_event_id IS 'The restock event that enqueued it';
COMMENT ON COLUMN bis.notifications.subscribed_at IS 'When the contact subscribed';
COMMENT ON COLUMN bis.notifications.created_at IS 'When it was enqueued';
COMMENT ON COLUMN bis.notifications.available_at IS 'When it is due to be claimed: a held one, when its rule allows it';
COMMENT ON COLUMN bis.notifications.claimed_at IS 'When a mailer last claimed it';
COMMENT ON COLUMN bis.notifications.claimed_until IS 'When the lease runs out';
COMMENT ON COLUMN bis.notifications.sent_at IS 'When a mailer acknowledged delivery';
COMMENT ON COLUMN bis.notifications.unsubscribed_at IS 'When the contact unsubscribed through this notification''s link, or its subscription''s';
COMMENT ON COLUMN bis.notifications.attempts IS 'Delivery attempts so far: each claim counts one';
COMMENT ON COLUMN bis.notifications.kind IS 'back_in_stock; price_drop, of a price-drop subscription; reminder, a later message of the same subscription';
COMMENT ON COLUMN bis.notifications.status IS 'pending, claimed (leased to a mailer), sent, dead (failed for good), suppressed (a rule forbade it: see status_reason), cancelled or expired (past bis.notification_ttl)';
COMMENT ON COLUMN bis.notifications.contact_id IS 'The contact to notify';
COMMENT ON COLUMN bis.notifications.sku IS 'The SKU';
COMMENT ON COLUMN bis.notifications.locale IS 'The subscription''s locale, or NULL';
COMMENT ON COLUMN bis.notifications.external_id IS 'The subscription''s external id, or NULL';
COMMENT ON COLUMN bis.notifications.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.notifications.claimed_by IS 'The mailer that holds the lease';
COMMENT ON COLUMN bis.notifications.status_reason IS 'The rule that last held or suppressed it: no_consent, no_address, quiet_hours, frequency_cap or send_rate; for a reminder also purchased or sold_out; unsubscribed or purchased for a cancelled one';
COMMENT ON COLUMN bis.notifications.last_error IS 'The last delivery error';

-- one row per subscription, waiting or used; a contact's rows are found by
-- an index in each part
CREATE VIEW bis.subscription_history AS
SELECT s.id, s.contact_id, s.sku, s.locale, s.external_id, s.channel, s.status, s.created_at,
       NULL::timestamptz AS notified_at, s.cancelled_at, NULL::bigint AS restock_event_id,
       NULL::bigint AS notification_id, s.max_price, s.kind
  FROM bis.subscriptions s
 WHERE s.status = 'active'
UNION ALL
SELECT s.id, s.contact_id, s.sku, s.locale, s.external_id, s.channel, s.status, s.created_at,
       NULL, s.cancelled_at, NULL, NULL, s.max_price, s.kind
  FROM bis.subscriptions s
 WHERE s.status <> 'active'
UNION ALL
SELECT n.subscription_id, n.contact_id, n.sku, n.locale, n.external_id, n.channel,
       CASE WHEN n.unsubscribed_at IS NULL THEN 'notified' ELSE 'cancelled' END,
       n.subscribed_at, n.created_at, n.unsubscribed_at, n.restock_event_id, n.id, NULL, n.kind
  FROM bis.notifications n
 WHERE n.kind <> 'reminder';
COMMENT ON VIEW bis.subscription_history IS 'Every subscription: active, cancelled and expired ones from bis.subscriptions, and notified ones from the notification that used them (cancelled if the contact then unsubscribed through it)';

CREATE FUNCTION bis.contact_subscriptions(contact_id text) RETURNS SETOF bis.subscription_history
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN QUERY
    SELECT h.* FROM bis.subscription_history h
     WHERE h.contact_id = contact_subscriptions.contact_id
     ORDER BY h.created_at DESC, h.id DESC;
END
$$;
COMMENT ON FUNCTION bis.contact_subscriptions(text) IS 'A contact''s subscriptions of every status, newest first';

CREATE FUNCTION bis._expand(ev bis.restock_events, max_rows integer, worker text, lease interval,
                            channels text[], OUT enqueued integer, OUT claimed bigint[])
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__expand';
COMMENT ON FUNCTION bis._expand(bis.restock_events, integer, text, interval, text[]) IS 'Enqueues the next chunk of a restock''s notifications, oldest subscription first, and records how far it got; with worker, those of its channels are claimed by it at once (their ids in claimed)';

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
        -- the first wave once the dwell is over, a later one, only while the
        -- SKU is still in stock; sold out, the rest of its subscriptions wait
        -- for the next restock, held back by the dwell or the waves
        quantity := bis._current_stock(ev.source_table, ev.sku, ev.locale, ev.external_id);
        IF quantity >= ev.threshold THEN
            UPDATE bis.restock_events e
               SET wave = e.wave + 1, wave_quota = bis._wave_quota(per_unit, quantity),
                   expansion = 'expanding', next_wave_at = NULL
             WHERE e.id = ev.id
            RETURNING * INTO ev;
            RETURN ev;
        END IF;
        UPDATE bis.restock_events e
           SET expansion = 'stopped', next_wave_at = NULL,
               held_back = bis._held_back(e.held_back, CASE WHEN e.wave = 0 THEN 'dwell' ELSE 'wave' END,
                   (SELECT count(*) FROM bis.subscriptions s
                     WHERE s.sku = e.sku AND s.status = 'active'
                       AND s.id > e.last_subscription_id AND s.id <= e.max_subscription_id
                       AND (e.locale IS NULL OR s.locale = e.locale)
                       AND (e.external_id IS NULL OR s.external_id = e.external_id)))
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
    -- on Citus, this node's shards (see Distribution)
    IF bis._distributed() THEN
        RETURN bis._expand_local(max_chunks);
    END IF;
    FOR i IN 1..max_chunks LOOP
        ev := bis._next_expansion(after_id);
        EXIT WHEN ev.id IS NULL;
        -- the same restock again next time, until it is done
        after_id := ev.id;
        total := total + (bis._expand(ev, chunk, NULL, NULL, NULL)).enqueued;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION bis.expand(integer) IS 'Enqueues up to max_chunks chunks of the restocks still expanding or due for their next wave, as a bis.claim that finds nothing due does; for schedulers; returns how many notifications it enqueued';

/*
 * Templates and messages
 */

CREATE FUNCTION bis.render(template text, payload jsonb, html boolean DEFAULT false)
    RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'bis_render';
COMMENT ON FUNCTION bis.render(text, jsonb, boolean) IS 'Fills the {{path}}, {{path|fallback}} and {{url:path}} placeholders of a template from a payload; with html, values are HTML-escaped; url: renders only http and https addresses';

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
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT templates_pkey PRIMARY KEY (kind, channel, locale, builtin, tenant)
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
 E'Hi {{contact.first_name|there}},\n\n{{item.title|The item you asked about}} is back in stock.\n\n{{url:item.url}}\n\nYou get this message because you asked to be told when it was back.\nNo more alerts like this: {{url:unsubscribe_url}}\n',
 E'<p>Hi {{contact.first_name|there}},</p>\n<p><a href="{{url:item.url}}">{{item.title|The item you asked about}}</a> is back in stock.</p>\n<p>You get this message because you asked to be told when it was back.\n<a href="{{url:unsubscribe_url}}">No more alerts like this</a>.</p>\n',
 true),
('back_in_stock', 'sms', 'en', NULL,
 '{{item.title|Your item}} is back in stock: {{url:item.url}}', NULL, true),
('back_in_stock', 'push', 'en', 'Back in stock',
 '{{item.title|Your item}} is back. Get it before it is gone.', NULL, true),
('back_in_stock', 'webpush', 'en', 'Back in stock',
 '{{item.title|Your item}} is back. Get it before it is gone.', NULL, true),
('reminder', 'email', 'en',
 'Still in stock: {{item.title|your item}}',
 E'Hi {{contact.first_name|there}},\n\n{{item.title|The item you asked about}} is still in stock, for now.\n\n{{url:item.url}}\n\nYou get this reminder because you asked to be told when it was back.\nNo more alerts like this: {{url:unsubscribe_url}}\n',
 E'<p>Hi {{contact.first_name|there}},</p>\n<p><a href="{{url:item.url}}">{{item.title|The item you asked about}}</a> is still in stock, for now.</p>\n<p>You get this reminder because you asked to be told when it was back.\n<a href="{{url:unsubscribe_url}}">No more alerts like this</a>.</p>\n',
 true),
('reminder', 'sms', 'en', NULL,
 '{{item.title|Your item}} is still in stock: {{url:item.url}}', NULL, true),
('reminder', 'push', 'en', 'Still in stock',
 '{{item.title|Your item}} is still in stock, for now.', NULL, true),
('reminder', 'webpush', 'en', 'Still in stock',
 '{{item.title|Your item}} is still in stock, for now.', NULL, true),
('price_drop', 'email', 'en',
 '{{item.title|Your item}} is now {{item.price}} {{item.currency}}',
 E'Hi {{contact.first_name|there}},\n\n{{item.title|The item you asked about}} now costs {{item.price}} {{item.currency}}, down from {{price_was}}.\n\n{{url:item.url}}\n\nYou get this message because you asked to be told when its price dropped.\nNo more alerts like this: {{url:unsubscribe_url}}\n',
 E'<p>Hi {{contact.first_name|there}},</p>\n<p><a href="{{url:item.url}}">{{item.title|The item you asked about}}</a> now costs {{item.price}} {{item.currency}}, down from {{price_was}}.</p>\n<p>You get this message because you asked to be told when its price dropped.\n<a href="{{url:unsubscribe_url}}">No more alerts like this</a>.</p>\n',
 true),
('price_drop', 'sms', 'en', NULL,
 '{{item.title|Your item}} is now {{item.price}} {{item.currency}}: {{url:item.url}}', NULL, true),
('price_drop', 'push', 'en', 'Price drop',
 '{{item.title|Your item}} is now {{item.price}} {{item.currency}}.', NULL, true),
('price_drop', 'webpush', 'en', 'Price drop',
 '{{item.title|Your item}} is now {{item.price}} {{item.currency}}.', NULL, true);

-- an admin writes templates, and bis's checks run as bis: it may not call them
CREATE FUNCTION bis._templates_check() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
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
    NEW.locale := bis._canonical_locale(NEW.locale);
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

CREATE TYPE bis.message AS (
    id bigint,
    kind text,
    channel text,
    address text,
    locale text,
    subject text,
    body text,
    body_html text,
    list_unsubscribe text,
    payload jsonb,
    attempts integer,
    claimed_until timestamptz
);
COMMENT ON TYPE bis.message IS 'A notification as bis.claim hands it to a mailer: the message built from the current item and contact';
COMMENT ON COLUMN bis.message.id IS 'Notification id: the idempotency key to pass on to the provider';
COMMENT ON COLUMN bis.message.kind IS 'back_in_stock, reminder or price_drop';
COMMENT ON COLUMN bis.message.channel IS 'email, sms, push or webpush';
COMMENT ON COLUMN bis.message.address IS 'Where to send it: the email address for email, the phone number for sms; NULL for push and webpush';
COMMENT ON COLUMN bis.message.locale IS 'The language it is written in: the contact''s, else the subscription''s, else the stock''s';
COMMENT ON COLUMN bis.message.subject IS 'Subject (email) or title (push), rendered from bis.templates';
COMMENT ON COLUMN bis.message.body IS 'Plain-text message, rendered from bis.templates';
COMMENT ON COLUMN bis.message.body_html IS 'HTML message (email), rendered from bis.templates';
COMMENT ON COLUMN bis.message.list_unsubscribe IS 'For email: the List-Unsubscribe header (RFC 2369), its https link first (RFC 8058 one click); NULL without bis.unsubscribe_url and bis.unsubscribe_mailto';
COMMENT ON COLUMN bis.message.payload IS 'What the message was rendered from: item, stock, contact (id, first name, locale), subscription, channel, address, locale, unsubscribe_url, unsubscribe_all_url';
COMMENT ON COLUMN bis.message.attempts IS 'Delivery attempts, this one included';
COMMENT ON COLUMN bis.message.claimed_until IS 'When the lease runs out';

CREATE FUNCTION bis._hand_out(ids bigint[], worker text) RETURNS SETOF bis.message
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'bis__hand_out';
COMMENT ON FUNCTION bis._hand_out(bigint[], text) IS 'The messages of the notifications among ids that worker has just claimed, built from the current item, contact and restock, for those the delivery rules let through; the others are suppressed or held, and say why';

-- the send rates' windows (src/rules.c): each row is locked by the claim
-- that counts in it, until that claim commits
CREATE TABLE bis.send_windows (
    scope text NOT NULL,
    window_start timestamptz NOT NULL,
    handed_out bigint NOT NULL,
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT send_windows_pkey PRIMARY KEY (scope, tenant)
);
COMMENT ON TABLE bis.send_windows IS 'How many messages the current window of each send rate has handed out: scope "all" for bis.send_rate, "item:SKU" for an item''s';
COMMENT ON COLUMN bis.send_windows.scope IS 'all, or item: and the SKU';
COMMENT ON COLUMN bis.send_windows.window_start IS 'Start of the window, a multiple of the rate''s period since the Unix epoch';
COMMENT ON COLUMN bis.send_windows.handed_out IS 'Messages handed to mailers in the window';

/*
 * Unsubscribing through a message's link
 */

-- the key that signs unsubscribe tokens (src/token.c): made at first use,
-- readable by bis's owner only
CREATE TABLE bis.signing_key (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    key bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE bis.signing_key IS 'The secret that signs unsubscribe tokens; grant it to nobody: whoever reads it can unsubscribe anyone';
COMMENT ON COLUMN bis.signing_key.id IS 'Always true: there is one key';
COMMENT ON COLUMN bis.signing_key.key IS '32 random bytes, the HMAC-SHA-256 key';
COMMENT ON COLUMN bis.signing_key.created_at IS 'When the key was made';

CREATE FUNCTION bis._read_token(token text, OUT notification_id bigint, OUT scope "char")
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'bis__read_token';
COMMENT ON FUNCTION bis._read_token(text) IS 'The notification an unsubscribe token names and its scope (s: the subscription; c: also consent for the channel); an error if bis did not sign it';

-- what a message's unsubscribe link, or its provider's unsubscribe event, does
CREATE FUNCTION bis._unsubscribe_notification(notification_id bigint, withdraw boolean, source text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n record;
    done integer;
BEGIN
    SELECT o.contact_id, o.subscription_id, o.channel INTO n
      FROM bis.notifications o WHERE o.id = _unsubscribe_notification.notification_id;
    IF NOT FOUND THEN
        -- purged since: nothing of it is left to cancel
        RETURN 0;
    END IF;
    -- the subscription was used by this notification: what it has not sent
    -- yet is cancelled, and the history says it was unsubscribed
    WITH stopped AS (
        UPDATE bis.notifications o
           SET unsubscribed_at = now(),
               status = CASE WHEN o.status = 'pending' THEN 'cancelled' ELSE o.status END,
               status_reason = CASE WHEN o.status = 'pending' THEN 'unsubscribed'
                                    ELSE o.status_reason END
         WHERE o.contact_id = n.contact_id AND o.subscription_id = n.subscription_id
           AND o.unsubscribed_at IS NULL
        RETURNING 1)
    SELECT least(count(*), 1) INTO done FROM stopped;
    IF withdraw AND NOT EXISTS (
           SELECT FROM bis.consents k
            WHERE k.contact_id = n.contact_id AND k.channel = n.channel AND NOT k.granted) THEN
        PERFORM bis.set_consent(n.contact_id, n.channel, false, source);
    END IF;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis._unsubscribe_notification(bigint, boolean, text) IS 'Cancels the subscription a notification came from and what it had still to send, and with withdraw the contact''s consent for its channel; returns 1, or 0 if that was done already or the notification is gone';

CREATE FUNCTION bis.unsubscribe_by_token(token text) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    target record;
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'token must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    target := bis._read_token(token);
    RETURN bis._unsubscribe_notification(target.notification_id, target.scope = 'c', 'unsubscribe link');
END
$$;
COMMENT ON FUNCTION bis.unsubscribe_by_token(text) IS 'What the shop''s unsubscribe endpoint calls with the token of a message''s link: cancels the subscription the message came from (and what it had still to send) and, for an unsubscribe-all token, withdraws consent for the channel; returns how many subscriptions it cancelled, 0 when called again';

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
    -- not a correlated subquery: on Citus, one query over every shard
    SELECT i INTO missing FROM unnest(ids) i
     WHERE i <> ALL (ARRAY(SELECT n.id FROM bis.notifications n WHERE n.id = ANY (ids))) LIMIT 1;
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
    IF worker = '' OR length(worker) > 255 THEN
        RAISE EXCEPTION 'worker must be 1 to 255 characters long' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the mailer process, such as its host name and process id.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_worker(text, boolean) IS 'Raises an error for a missing, empty or too long worker name';

CREATE FUNCTION bis.claim(worker text, max_rows integer DEFAULT 100, lease interval DEFAULT '5 minutes',
                          channels text[] DEFAULT NULL)
    RETURNS SETOF bis.message
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    ids bigint[];
    ev bis.restock_events;
    expanded boolean;
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
    IF cardinality(channels) = 0 OR array_position(channels, NULL) IS NOT NULL
       OR NOT channels <@ ARRAY['email', 'sms', 'push', 'webpush'] THEN
        RAISE EXCEPTION 'invalid channels %', channels USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The channels are email, sms, push and webpush; NULL claims all of them.';
    END IF;
    -- on Citus, this node's shards (see Distribution)
    IF bis._distributed() THEN
        RETURN QUERY SELECT * FROM bis._claim_local(worker, max_rows, lease, channels);
        RETURN;
    END IF;

    LOOP
        -- rows whose lease ran out, then due pending rows, oldest first; SKIP
        -- LOCKED: concurrent claims never hand out the same row
        ids := ARRAY(SELECT n.id FROM bis.notifications n
                      WHERE n.status = 'claimed' AND n.claimed_until <= now()
                        AND (channels IS NULL OR n.channel = ANY (channels))
                      ORDER BY n.claimed_until
                      LIMIT max_rows FOR UPDATE SKIP LOCKED);
        IF cardinality(ids) < max_rows THEN
            ids := ids || ARRAY(SELECT n.id FROM bis.notifications n
                                 WHERE n.status = 'pending' AND n.available_at <= now()
                                   AND (channels IS NULL OR n.channel = ANY (channels))
                                 ORDER BY n.available_at
                                 LIMIT max_rows - cardinality(ids) FOR UPDATE SKIP LOCKED);
        END IF;
        expanded := cardinality(ids) = 0;
        IF expanded THEN
            -- nothing due: large restocks and later waves are expanded by the
            -- mailers that drain them, straight into this claim
            ev := bis._next_expansion(0);
            IF ev.id IS NULL THEN
                RETURN;
            END IF;
            ids := (bis._expand(ev, least(max_rows, settings.expand_chunk), worker, lease, channels)).claimed;
        ELSE
            -- past their time to live they are never handed out: they expire
            UPDATE bis.notifications n
               SET status = CASE WHEN n.created_at < now() - settings.notification_ttl
                                 THEN 'expired' ELSE 'claimed' END,
                   claimed_by = CASE WHEN n.created_at < now() - settings.notification_ttl
                                     THEN NULL ELSE claim.worker END,
                   claimed_until = CASE WHEN n.created_at < now() - settings.notification_ttl
                                        THEN NULL ELSE now() + claim.lease END,
                   claimed_at = now(),
                   attempts = n.attempts + 1
             -- the bounds steer the planner to the primary key rather than a full scan
             WHERE n.id = ANY (ids) AND n.id BETWEEN (SELECT min(i) FROM unnest(ids) i)
                                                 AND (SELECT max(i) FROM unnest(ids) i);
        END IF;

        -- the messages, built now from the current item and contact; a row
        -- whose contact has no address for its channel never leaves
        RETURN QUERY SELECT * FROM bis._hand_out(ids, worker);
        -- a batch that had only expired or suppressed rows: look again
        EXIT WHEN FOUND OR expanded;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis.claim(text, integer, interval, text[]) IS 'Hands a mailer up to max_rows due notifications of its channels (NULL: all), with their messages built now, leased to worker until now() + lease; rows past bis.notification_ttl expire, rows without an address are suppressed';

CREATE FUNCTION bis.ack(ids bigint[], worker text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    done integer;
BEGIN
    IF bis._distributed() THEN
        -- on Citus, this node's shards (see Distribution); no reminders there yet
        done := bis._set_status_local($q$
            UPDATE bis.notifications n
               SET status = 'sent', sent_at = now(), claimed_until = NULL
             WHERE n.id = ANY ($1) AND n.status = 'claimed' AND ($2 IS NULL OR n.claimed_by = $2)$q$,
            ids, worker);
    ELSIF settings.max_reminders = 0 THEN
        -- with worker, a row another mailer took after this one's lease ran out is not touched
        WITH sent AS (
            UPDATE bis.notifications n
               SET status = 'sent', sent_at = now(), claimed_until = NULL
             WHERE n.id = ANY (ack.ids) AND n.status = 'claimed'
               AND (ack.worker IS NULL OR n.claimed_by = ack.worker)
            RETURNING 1)
        SELECT count(*) INTO done FROM sent;
    ELSE
        -- a message sent is followed by a reminder, up to bis.max_reminders a
        -- subscription, unless the contact unsubscribed or bought since; the
        -- claim checks again, and that the SKU is still in stock
        WITH sent AS (
            UPDATE bis.notifications n
               SET status = 'sent', sent_at = now(), claimed_until = NULL
             WHERE n.id = ANY (ack.ids) AND n.status = 'claimed'
               AND (ack.worker IS NULL OR n.claimed_by = ack.worker)
            RETURNING n.*),
        reminded AS (
            INSERT INTO bis.notifications (subscription_id, restock_event_id, subscribed_at, contact_id,
                                           sku, locale, external_id, channel, kind, available_at)
            SELECT s.subscription_id, s.restock_event_id, s.subscribed_at, s.contact_id, s.sku,
                   s.locale, s.external_id, s.channel, 'reminder', now() + settings.reminder_interval
              FROM sent s
             WHERE s.unsubscribed_at IS NULL
               AND (SELECT count(*) FROM bis.notifications r
                     WHERE r.contact_id = s.contact_id AND r.subscription_id = s.subscription_id
                       AND r.kind = 'reminder') < settings.max_reminders
               AND NOT EXISTS (SELECT FROM bis.purchases p
                                WHERE p.contact_id = s.contact_id AND p.sku = s.sku
                                  AND p.purchased_at >= s.subscribed_at))
        SELECT count(*) INTO done FROM sent;
    END IF;
    -- bad input acknowledges fewer rows than ids given; its error undoes the update
    IF ids IS NULL OR done < cardinality(ids) THEN
        PERFORM bis._check_ids(ids);
    END IF;
    PERFORM bis._check_worker(worker, false);
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
    -- on Citus, this node's shards (see Distribution)
    IF bis._distributed() THEN
        RETURN bis._fail_local(fail.id, fail.error, fail.retry, fail.worker);
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
           SET status = 'pending', available_at = now() + delay, last_error = left(fail.error, 2000),
               claimed_by = NULL, claimed_until = NULL
         WHERE x.id = fail.id;
        RETURN 'pending';
    END IF;
    UPDATE bis.notifications x
       SET status = 'dead', last_error = left(fail.error, 2000), claimed_until = NULL
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
    IF bis._distributed() THEN
        -- on Citus, this node's shards (see Distribution)
        RETURN bis._set_status_local($q$
            UPDATE bis.notifications n
               SET status = 'pending', available_at = now(), attempts = greatest(n.attempts - 1, 0),
                   claimed_by = NULL, claimed_until = NULL
             WHERE n.id = ANY ($1) AND n.status = 'claimed' AND ($2 IS NULL OR n.claimed_by = $2)$q$,
            ids, worker);
    END IF;
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
 * Lifecycle after the send: delivery events, purchases and conversions,
 * reminders
 */

-- what a provider reports of a message, as its webhooks say it
CREATE TABLE bis.delivery_events (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL
        CHECK (event IN ('delivered', 'opened', 'clicked', 'bounced', 'complained', 'unsubscribed')),
    provider_event_id text CHECK (provider_event_id <> '' AND length(provider_event_id) <= 255),
    detail jsonb CHECK (jsonb_typeof(detail) = 'object'),
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT delivery_events_provider_event_id_key UNIQUE (provider_event_id, tenant)
);
CREATE INDEX delivery_events_notification_idx ON bis.delivery_events (notification_id, event);
SELECT pg_catalog.pg_extension_config_dump('bis.delivery_events', '');
SELECT pg_catalog.pg_extension_config_dump('bis.delivery_events_id_seq', '');
COMMENT ON TABLE bis.delivery_events IS 'What providers reported of delivered messages: delivered, opened, clicked, bounced, complained, unsubscribed; kept as long as their notification';
COMMENT ON COLUMN bis.delivery_events.id IS 'Event id';
COMMENT ON COLUMN bis.delivery_events.notification_id IS 'The notification it is about';
COMMENT ON COLUMN bis.delivery_events.occurred_at IS 'When it happened, as the provider says';
COMMENT ON COLUMN bis.delivery_events.recorded_at IS 'When bis recorded it';
COMMENT ON COLUMN bis.delivery_events.event IS 'delivered, opened, clicked, bounced, complained or unsubscribed';
COMMENT ON COLUMN bis.delivery_events.provider_event_id IS 'The provider''s id for the event: the same id is recorded once';
COMMENT ON COLUMN bis.delivery_events.detail IS 'What else the provider said, a JSON object; for bounced, {"type": "hard"} or {"type": "soft"}';

CREATE FUNCTION bis.record_event(notification_id bigint, event text, occurred_at timestamptz DEFAULT now(),
                                 provider_event_id text DEFAULT NULL, detail jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n record;
    recorded boolean;
BEGIN
    IF record_event.notification_id IS NULL OR record_event.event IS NULL
       OR record_event.occurred_at IS NULL THEN
        RAISE EXCEPTION 'notification_id, event and occurred_at must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF record_event.event NOT IN ('delivered', 'opened', 'clicked', 'bounced', 'complained', 'unsubscribed') THEN
        RAISE EXCEPTION 'unrecognized event "%"', left(record_event.event, 100)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The events are delivered, opened, clicked, bounced, complained and unsubscribed.';
    END IF;
    IF jsonb_typeof(record_event.detail) <> 'object' THEN
        RAISE EXCEPTION 'detail must be a JSON object, not %', jsonb_typeof(record_event.detail)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF record_event.provider_event_id = '' OR length(record_event.provider_event_id) > 255 THEN
        RAISE EXCEPTION 'provider_event_id must be 1 to 255 characters long'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT o.contact_id, o.channel INTO n FROM bis.notifications o WHERE o.id = record_event.notification_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'notification % does not exist', record_event.notification_id
            USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the id bis.claim handed out with the message: mailers give it to the provider as the idempotency key.';
    END IF;

    -- a provider that sends an event again sends the same id: recorded once
    INSERT INTO bis.delivery_events (notification_id, event, occurred_at, provider_event_id, detail)
    VALUES (record_event.notification_id, record_event.event, record_event.occurred_at,
            record_event.provider_event_id, record_event.detail)
    ON CONFLICT ON CONSTRAINT delivery_events_provider_event_id_key DO NOTHING
    RETURNING true INTO recorded;
    IF recorded IS NULL THEN
        RETURN false;
    END IF;

    -- the address is not used again until the contact gives consent anew
    IF record_event.event = 'bounced' AND record_event.detail->>'type' = 'hard' THEN
        PERFORM bis.set_consent(n.contact_id, n.channel, false, 'hard bounce');
    ELSIF record_event.event = 'complained' THEN
        PERFORM bis.set_consent(n.contact_id, n.channel, false, 'complaint');
    ELSIF record_event.event = 'unsubscribed' THEN
        PERFORM bis._unsubscribe_notification(record_event.notification_id, true, 'unsubscribed at the provider');
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION bis.record_event(bigint, text, timestamptz, text, jsonb) IS 'Records what a provider reported of a message (delivered, opened, clicked, bounced, complained, unsubscribed), once per provider_event_id; a hard bounce or a complaint withdraws consent for the channel, an unsubscribe also cancels the subscription; returns false for an event recorded before';

CREATE TABLE bis.purchases (
    order_id text NOT NULL CHECK (order_id <> '' AND length(order_id) <= 255),
    sku text NOT NULL,
    contact_id text NOT NULL,
    quantity integer NOT NULL DEFAULT 1 CHECK (quantity >= 1),
    amount numeric CHECK (amount >= 0),
    currency text CHECK (length(currency) <= 10),
    purchased_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT purchases_pkey PRIMARY KEY (order_id, sku, tenant)
);
-- a contact's purchases of a SKU: conversions, and the reminders they stop
CREATE INDEX purchases_contact_sku_idx ON bis.purchases (contact_id, sku, purchased_at);
SELECT pg_catalog.pg_extension_config_dump('bis.purchases', '');
COMMENT ON TABLE bis.purchases IS 'Order lines the shop reported (bis.record_purchase) or bis saw in a tracked order table (bis.track_orders): conversions, and the end of reminders';
COMMENT ON COLUMN bis.purchases.order_id IS 'The shop''s order id';
COMMENT ON COLUMN bis.purchases.sku IS 'The SKU bought';
COMMENT ON COLUMN bis.purchases.contact_id IS 'Who bought it';
COMMENT ON COLUMN bis.purchases.quantity IS 'How many';
COMMENT ON COLUMN bis.purchases.amount IS 'What the line cost, or NULL';
COMMENT ON COLUMN bis.purchases.currency IS 'The amount''s currency, such as EUR';
COMMENT ON COLUMN bis.purchases.purchased_at IS 'When it was bought';
COMMENT ON COLUMN bis.purchases.recorded_at IS 'When bis recorded it';

CREATE FUNCTION bis.record_purchase(contact_id text, sku text, order_id text, quantity integer DEFAULT 1,
                                    amount numeric DEFAULT NULL, currency text DEFAULT NULL,
                                    purchased_at timestamptz DEFAULT now())
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    recorded boolean;
BEGIN
    IF record_purchase.contact_id IS NULL OR record_purchase.order_id IS NULL
       OR record_purchase.quantity IS NULL OR record_purchase.purchased_at IS NULL THEN
        RAISE EXCEPTION 'contact_id, order_id, quantity and purchased_at must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM bis._check_sku(record_purchase.sku);
    IF record_purchase.order_id = '' OR length(record_purchase.order_id) > 255 THEN
        RAISE EXCEPTION 'order_id must be 1 to 255 characters long' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF record_purchase.quantity < 1 THEN
        RAISE EXCEPTION 'quantity must be at least 1' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The quantity given is %s.', record_purchase.quantity);
    END IF;
    IF record_purchase.amount < 0 THEN
        RAISE EXCEPTION 'amount must not be negative' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The amount given is %s.', record_purchase.amount);
    END IF;
    IF length(record_purchase.currency) > 10 THEN
        RAISE EXCEPTION 'invalid currency "%"', left(record_purchase.currency, 100)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- the first record of an order line wins
    INSERT INTO bis.purchases AS p (order_id, sku, contact_id, quantity, amount, currency, purchased_at)
    VALUES (record_purchase.order_id, record_purchase.sku, record_purchase.contact_id,
            record_purchase.quantity, record_purchase.amount, record_purchase.currency,
            record_purchase.purchased_at)
    ON CONFLICT ON CONSTRAINT purchases_pkey DO NOTHING
    RETURNING true INTO recorded;
    IF recorded IS NULL THEN
        RETURN false;
    END IF;
    -- a contact who bought the SKU is reminded of it no more
    UPDATE bis.notifications n SET status = 'cancelled', status_reason = 'purchased'
     WHERE n.contact_id = record_purchase.contact_id AND n.sku = record_purchase.sku
       AND n.kind = 'reminder' AND n.status = 'pending';
    RETURN true;
END
$$;
COMMENT ON FUNCTION bis.record_purchase(text, text, text, integer, numeric, text, timestamptz) IS 'Records an order line, once per (order_id, sku): the conversion of a message of that SKU to that contact within bis.conversion_window, and the end of the reminders still to come; returns false for a line recorded before';

CREATE FUNCTION bis._order_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__order_trigger';
COMMENT ON FUNCTION bis._order_trigger() IS 'Row trigger on a tracked order table: records each new order line as bis.record_purchase does, reading the columns its arguments name';

CREATE FUNCTION bis.track_orders(tbl regclass, order_id_column name DEFAULT 'order_id',
                                 sku_column name DEFAULT 'sku', contact_id_column name DEFAULT 'contact_id',
                                 quantity_column name DEFAULT NULL, amount_column name DEFAULT NULL,
                                 currency_column name DEFAULT NULL, purchased_at_column name DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    col record;
    typ oid;
BEGIN
    IF tbl IS NULL OR order_id_column IS NULL OR sku_column IS NULL OR contact_id_column IS NULL THEN
        RAISE EXCEPTION 'tbl, order_id_column, sku_column and contact_id_column must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- its trigger would fire on the shards, where no purchase can be recorded
    -- (nested: Citus's catalog is there only where bis is distributed)
    IF bis._distributed() THEN
        IF EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = tbl) THEN
            RAISE EXCEPTION 'cannot track orders in distributed table %', tbl
                USING ERRCODE = 'feature_not_supported',
                HINT = 'Keep the order table on the coordinator, or report purchases with bis.record_purchase().';
        END IF;
    END IF;
    -- each column, and the types bis reads it as: none whose output is another role's code
    FOR col IN SELECT * FROM (VALUES
            (order_id_column, 'order_id', ARRAY['text', 'character varying', 'bigint', 'integer', 'uuid']),
            (sku_column, 'sku', ARRAY['text', 'character varying']),
            (contact_id_column, 'contact_id', ARRAY['text', 'character varying', 'bigint', 'integer', 'uuid']),
            (quantity_column, 'quantity', ARRAY['smallint', 'integer', 'bigint']),
            (amount_column, 'amount', ARRAY['numeric', 'integer', 'bigint']),
            (currency_column, 'currency', ARRAY['text', 'character varying', 'character']),
            (purchased_at_column, 'purchased_at', ARRAY['timestamp with time zone']))
            v(name, role, types)
        WHERE v.name IS NOT NULL LOOP
        SELECT a.atttypid INTO typ FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = col.name AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', col.name, tbl
                USING ERRCODE = 'undefined_column';
        END IF;
        IF NOT format_type(typ, NULL) = ANY (col.types) THEN
            RAISE EXCEPTION 'column "%" of relation % has type %, which bis cannot read as the %',
                  col.name, tbl, format_type(typ, NULL), col.role
                USING ERRCODE = 'datatype_mismatch',
                DETAIL = format('The %s column may be %s.', col.role, array_to_string(col.types, ', '));
        END IF;
    END LOOP;
    -- CREATE TRIGGER checks that the caller may: the table's owner
    IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'bis_order_insert') THEN
        EXECUTE format('DROP TRIGGER bis_order_insert ON %s', tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER bis_order_insert AFTER INSERT ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION bis._order_trigger(%L, %L, %L, %L, %L, %L, %L)', tbl,
                   order_id_column, sku_column, contact_id_column, coalesce(quantity_column, ''),
                   coalesce(amount_column, ''), coalesce(currency_column, ''),
                   coalesce(purchased_at_column, ''));
END
$$;
COMMENT ON FUNCTION bis.track_orders(regclass, name, name, name, name, name, name, name) IS 'Puts bis''s trigger on the shop''s order-lines table: each new line is recorded as bis.record_purchase records one; the caller must own the table';

CREATE VIEW bis.notification_history AS
SELECT n.id AS notification_id, n.contact_id, n.sku, n.kind, n.channel, n.status, n.status_reason,
       n.subscribed_at AS requested_at, n.created_at AS enqueued_at, n.claimed_at, n.sent_at,
       e.delivered_at, e.opened_at, e.clicked_at, e.bounced_at,
       p.purchased_at AS converted_at, p.order_id, p.amount, p.currency,
       n.subscription_id, n.restock_event_id
  FROM bis.notifications n
  LEFT JOIN LATERAL (
        SELECT min(d.occurred_at) FILTER (WHERE d.event = 'delivered') AS delivered_at,
               min(d.occurred_at) FILTER (WHERE d.event = 'opened') AS opened_at,
               min(d.occurred_at) FILTER (WHERE d.event = 'clicked') AS clicked_at,
               min(d.occurred_at) FILTER (WHERE d.event = 'bounced') AS bounced_at
          FROM bis.delivery_events d WHERE d.notification_id = n.id) e ON true
  LEFT JOIN LATERAL (
        SELECT b.purchased_at, b.order_id, b.amount, b.currency
          FROM bis.purchases b
         WHERE b.contact_id = n.contact_id AND b.sku = n.sku
           AND b.purchased_at >= n.sent_at
           AND b.purchased_at <= n.sent_at + (SELECT s.conversion_window FROM bis._settings() s)
         ORDER BY b.purchased_at LIMIT 1) p ON true;
COMMENT ON VIEW bis.notification_history IS 'One row per notification and the time of each step: requested (subscribed), enqueued, claimed, sent, delivered, opened, clicked, bounced, and its conversion (the first purchase of its SKU by its contact within bis.conversion_window after it was sent)';

/*
 * Push addresses: device tokens and web push subscriptions, for bis-mailer's push transports
 */

CREATE TABLE bis.push_tokens (
    platform text NOT NULL CHECK (platform IN ('fcm', 'apns')),
    token text NOT NULL,
    contact_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL DEFAULT bis._tenant(),
    -- a device's token is one contact's at a time: the one signed in on it
    CONSTRAINT push_tokens_pkey PRIMARY KEY (platform, token, tenant),
    CONSTRAINT push_tokens_contact_id_fkey FOREIGN KEY (contact_id, tenant)
        REFERENCES bis.contacts ON DELETE CASCADE,
    CONSTRAINT push_tokens_token_check CHECK (
        (platform = 'fcm' AND token ~ '^[A-Za-z0-9_:.-]+$' AND length(token) <= 4096)
        OR (platform = 'apns' AND token ~ '^([0-9a-f]{2}){32,100}$'))
);
CREATE INDEX push_tokens_contact_idx ON bis.push_tokens (contact_id);

COMMENT ON TABLE bis.push_tokens IS 'Device tokens of the push channel: a notification goes to every token of its contact';
COMMENT ON COLUMN bis.push_tokens.platform IS 'fcm (Firebase Cloud Messaging) or apns (Apple Push Notification service)';
COMMENT ON COLUMN bis.push_tokens.token IS 'The registration token (fcm) or device token in hexadecimal (apns) the app got on the device';
COMMENT ON COLUMN bis.push_tokens.contact_id IS 'The contact signed in on the device';
COMMENT ON COLUMN bis.push_tokens.created_at IS 'When the token was added for this contact';

CREATE TABLE bis.webpush_subscriptions (
    endpoint text NOT NULL,
    contact_id text NOT NULL,
    p256dh text NOT NULL,
    auth text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webpush_subscriptions_limits_check CHECK (length(endpoint) <= 2048
                                                         AND length(p256dh) <= 100 AND length(auth) <= 100),
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT webpush_subscriptions_pkey PRIMARY KEY (endpoint, tenant),
    CONSTRAINT webpush_subscriptions_contact_id_fkey FOREIGN KEY (contact_id, tenant)
        REFERENCES bis.contacts ON DELETE CASCADE
);
CREATE INDEX webpush_subscriptions_contact_idx ON bis.webpush_subscriptions (contact_id);

COMMENT ON TABLE bis.webpush_subscriptions IS 'Browser push subscriptions of the webpush channel: a notification goes to every subscription of its contact';
COMMENT ON COLUMN bis.webpush_subscriptions.endpoint IS 'The push service URL of the subscription (PushSubscription.endpoint)';
COMMENT ON COLUMN bis.webpush_subscriptions.contact_id IS 'The contact whose browser subscribed';
COMMENT ON COLUMN bis.webpush_subscriptions.p256dh IS 'The browser''s P-256 public key, base64url (keys.p256dh)';
COMMENT ON COLUMN bis.webpush_subscriptions.auth IS 'The browser''s authentication secret, base64url (keys.auth)';
COMMENT ON COLUMN bis.webpush_subscriptions.created_at IS 'When the subscription was added for this contact';

CREATE FUNCTION bis._base64url(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT CASE WHEN value ~ '^[A-Za-z0-9_-]+={0,2}$' AND length(rtrim(value, '=')) % 4 <> 1
                THEN decode(rpad(translate(rtrim(value, '='), '-_', '+/'),
                                 (length(rtrim(value, '=')) + 3) / 4 * 4, '='), 'base64') END;
$$;
COMMENT ON FUNCTION bis._base64url(text) IS 'The bytes of a base64url text (RFC 4648, padded or not), or NULL if it is not one';

CREATE FUNCTION bis._push_token(platform text, token text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF platform IS NULL OR platform NOT IN ('fcm', 'apns') THEN
        RAISE EXCEPTION 'unrecognized push platform "%"', left(platform, 100)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The push platforms are fcm (Firebase Cloud Messaging) and apns (Apple Push Notification service).';
    END IF;
    IF token IS NULL THEN
        RAISE EXCEPTION 'token must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF platform = 'fcm' AND (token !~ '^[A-Za-z0-9_:.-]+$' OR length(token) > 4096) THEN
        RAISE EXCEPTION 'invalid FCM registration token' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An FCM registration token has 1 to 4096 letters, digits, colons, periods, hyphens or underscores.';
    END IF;
    IF platform = 'apns' AND token !~ '^([0-9A-Fa-f]{2}){32,100}$' THEN
        RAISE EXCEPTION 'invalid APNs device token' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An APNs device token is hexadecimal, 64 to 200 digits.',
            HINT = 'Pass the token the app got from registerForRemoteNotifications, in hexadecimal.';
    END IF;
    -- APNs tokens are hexadecimal bytes: one spelling, so that one device is one row
    RETURN CASE platform WHEN 'apns' THEN lower(token) ELSE token END;
END
$$;
COMMENT ON FUNCTION bis._push_token(text, text) IS 'The token as bis.push_tokens stores it, or an error for an unrecognized platform or a malformed token';

CREATE FUNCTION bis.add_push_token(contact_id text, platform text, token text) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    stored text := bis._push_token(add_push_token.platform, add_push_token.token);
    added boolean;
BEGIN
    PERFORM bis._check_contact(add_push_token.contact_id);
    -- a token already another contact's moves: the device now has this one signed in
    INSERT INTO bis.push_tokens AS t (platform, token, contact_id)
    VALUES (add_push_token.platform, stored, add_push_token.contact_id)
    ON CONFLICT ON CONSTRAINT push_tokens_pkey DO UPDATE
        SET contact_id = excluded.contact_id, created_at = excluded.created_at
        WHERE t.contact_id <> excluded.contact_id
    RETURNING true INTO added;
    RETURN coalesce(added, false);
END
$$;
COMMENT ON FUNCTION bis.add_push_token(text, text, text) IS 'Adds a device token (platform fcm or apns) to a contact, taking it from any other contact; returns false if the contact had it already';

CREATE FUNCTION bis.remove_push_token(contact_id text, platform text, token text) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    stored text := bis._push_token(remove_push_token.platform, remove_push_token.token);
BEGIN
    DELETE FROM bis.push_tokens t
     WHERE t.platform = remove_push_token.platform AND t.token = stored
       AND t.contact_id = remove_push_token.contact_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION bis.remove_push_token(text, text, text) IS 'Removes a contact''s device token, as an app does on sign-out and bis-mailer when the provider says it is gone; returns false if the contact did not have it';

CREATE FUNCTION bis.add_webpush_subscription(contact_id text, subscription jsonb) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    endpoint text;
    p256dh text;
    auth text;
    key bytea;
    added boolean;
BEGIN
    PERFORM bis._check_contact(add_webpush_subscription.contact_id);
    IF subscription IS NULL THEN
        RAISE EXCEPTION 'subscription must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(subscription) <> 'object'
       OR jsonb_typeof(subscription -> 'endpoint') IS DISTINCT FROM 'string'
       OR jsonb_typeof(subscription -> 'keys') IS DISTINCT FROM 'object'
       OR jsonb_typeof(subscription #> '{keys,p256dh}') IS DISTINCT FROM 'string'
       OR jsonb_typeof(subscription #> '{keys,auth}') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'invalid web push subscription' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A subscription is a JSON object with the string "endpoint" and the object "keys" of the strings "p256dh" and "auth".',
            HINT = 'Pass the browser''s PushSubscription as JSON: JSON.stringify(subscription).';
    END IF;
    endpoint := subscription ->> 'endpoint';
    p256dh := subscription #>> '{keys,p256dh}';
    auth := subscription #>> '{keys,auth}';
    -- plain http only to this machine: a test's push service on loopback
    IF length(endpoint) > 2048
       OR endpoint !~ '^(https://[^/?#@[:space:][:cntrl:]]+|http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?)([/?#][^[:space:][:cntrl:]]*)?$' THEN
        RAISE EXCEPTION 'invalid web push endpoint "%"', left(endpoint, 100)
            USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An endpoint is an https URL of at most 2048 characters, without spaces.';
    END IF;
    key := bis._base64url(p256dh);
    IF key IS NULL OR length(key) <> 65 OR get_byte(key, 0) <> 4 THEN
        RAISE EXCEPTION 'invalid web push key "keys.p256dh"' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'keys.p256dh is an uncompressed P-256 public key in base64url: 65 bytes, the first 0x04.';
    END IF;
    key := bis._base64url(auth);
    IF key IS NULL OR length(key) <> 16 THEN
        RAISE EXCEPTION 'invalid web push secret "keys.auth"' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'keys.auth is an authentication secret in base64url: 16 bytes.';
    END IF;

    INSERT INTO bis.webpush_subscriptions AS w (endpoint, contact_id, p256dh, auth)
    VALUES (endpoint, add_webpush_subscription.contact_id, p256dh, auth)
    ON CONFLICT ON CONSTRAINT webpush_subscriptions_pkey DO UPDATE
        SET contact_id = excluded.contact_id, p256dh = excluded.p256dh, auth = excluded.auth,
            created_at = excluded.created_at
        WHERE (w.contact_id, w.p256dh, w.auth) IS DISTINCT FROM (excluded.contact_id, excluded.p256dh, excluded.auth)
    RETURNING true INTO added;
    RETURN coalesce(added, false);
END
$$;
COMMENT ON FUNCTION bis.add_webpush_subscription(text, jsonb) IS 'Adds a browser''s push subscription (PushSubscription as JSON: endpoint, keys.p256dh, keys.auth) to a contact, replacing one with the same endpoint; returns false if the contact had it already';

CREATE FUNCTION bis.remove_webpush_subscription(contact_id text, endpoint text) RETURNS boolean
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH removed AS (
        DELETE FROM bis.webpush_subscriptions w
         WHERE w.endpoint = remove_webpush_subscription.endpoint
           AND w.contact_id = remove_webpush_subscription.contact_id
        RETURNING 1)
    SELECT count(*) > 0 FROM removed;
$$;
COMMENT ON FUNCTION bis.remove_webpush_subscription(text, text) IS 'Removes a contact''s web push subscription by its endpoint, as bis-mailer does when the push service says it is gone; returns false if the contact did not have it';

CREATE FUNCTION bis.push_targets(ids bigint[], worker text)
    RETURNS TABLE (notification_id bigint, contact_id text, platform text, token text,
                   p256dh text, auth text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    -- only rows this worker holds: a mailer learns no address it has no message for
    targets constant text := $q$
        SELECT n.id, n.contact_id, t.platform, t.token, NULL::text, NULL::text
          FROM bis.notifications n
          JOIN bis.push_tokens t ON t.contact_id = n.contact_id
         WHERE n.id = ANY ($1) AND n.channel = 'push' AND n.status = 'claimed' AND n.claimed_by = $2
        UNION ALL
        SELECT n.id, n.contact_id, 'webpush', w.endpoint, w.p256dh, w.auth
          FROM bis.notifications n
          JOIN bis.webpush_subscriptions w ON w.contact_id = n.contact_id
         WHERE n.id = ANY ($1) AND n.channel = 'webpush' AND n.status = 'claimed' AND n.claimed_by = $2$q$;
BEGIN
    PERFORM bis._check_worker(worker, true);
    IF NOT bis._distributed() THEN
        RETURN QUERY EXECUTE targets || ' ORDER BY 1, 3, 4' USING ids, worker;
        RETURN;
    END IF;
    -- on Citus, the notifications a mailer holds are in the shard groups of its node
    RETURN QUERY EXECUTE
        (SELECT string_agg(format('(%s)', bis._group_sql(targets, g)), ' UNION ALL ')
           FROM unnest(bis._mailer_groups()) g) || ' ORDER BY 1, 3, 4'
        USING ids, worker;
END
$$;
COMMENT ON FUNCTION bis.push_targets(bigint[], text) IS 'The device tokens (push) and web push subscriptions (webpush) of the notifications among ids that worker holds, by notification id';

-- pg_dump keeps the addresses, as it keeps the contacts
SELECT pg_catalog.pg_extension_config_dump('bis.push_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('bis.webpush_subscriptions', '');

/*
 * Answers for people: why (not) notified, dry runs, the queue and demand,
 * a contact's view, a storefront's one call, previews
 */

-- bis.explain's work, in PL/pgSQL: Citus plans no SQL function's statement
-- with parameters on its tables, and PL/pgSQL takes no input parameter named
-- as an output column (sku)
CREATE FUNCTION bis._explain(of_contact text, of_sku text)
    RETURNS TABLE (subscription_id bigint, sku text, channel text, restock_event_id bigint,
                   restocked_at timestamptz, outcome text, reason text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN QUERY
    SELECT h.id, h.sku, h.channel, e.id, e.occurred_at,
           CASE WHEN e.id IS NULL THEN h.status
                WHEN h.restock_event_id = e.id THEN 'notified'
                WHEN e.expansion IN ('expanding', 'waiting') AND h.status = 'active'
                     AND h.id > e.last_subscription_id AND h.id <= e.max_subscription_id
                     AND (e.locale IS NULL OR h.locale = e.locale)
                     AND (e.external_id IS NULL OR h.external_id = e.external_id) THEN 'not yet'
                ELSE 'not notified' END,
           CASE
           WHEN e.id IS NULL THEN
               CASE h.status WHEN 'active' THEN 'waiting: no restock of the SKU since it was made'
                             WHEN 'cancelled' THEN format('cancelled on %s, before any restock', h.cancelled_at::date)
                             ELSE 'expired before any restock (bis.subscription_ttl)' END
           WHEN h.restock_event_id = e.id THEN
               CASE n.status
               WHEN 'sent' THEN format('enqueued by this restock and sent at %s', to_char(n.sent_at, 'YYYY-MM-DD HH24:MI'))
               WHEN 'claimed' THEN format('enqueued by this restock; mailer %s is delivering it', n.claimed_by)
               WHEN 'pending' THEN
                   CASE WHEN n.status_reason IS NULL THEN 'enqueued by this restock; waiting for a mailer'
                        ELSE format('enqueued by this restock; held by %s until %s', n.status_reason, to_char(n.available_at, 'YYYY-MM-DD HH24:MI')) END
               WHEN 'dead' THEN format('enqueued by this restock; delivery failed %s times: %s', n.attempts, n.last_error)
               WHEN 'suppressed' THEN format('enqueued by this restock; never sent: %s', CASE n.status_reason
                   WHEN 'no_consent' THEN format('the contact withdrew consent for %s', n.channel)
                   WHEN 'no_address' THEN format('the contact had no address for %s', n.channel)
                   WHEN 'quiet_hours' THEN 'it fell in the quiet hours, which drop messages'
                   WHEN 'frequency_cap' THEN 'the contact had had its messages for the day'
                   ELSE n.status_reason END)
               WHEN 'cancelled' THEN format('enqueued by this restock; cancelled: %s', n.status_reason)
               WHEN 'expired' THEN 'enqueued by this restock; no mailer took it within bis.notification_ttl'
               ELSE 'enqueued by this restock; purged since' END
           WHEN e.locale IS NOT NULL AND h.locale IS DISTINCT FROM e.locale THEN
               format('the restock was for locale %s, the subscription is for %s', e.locale,
                      coalesce('locale ' || h.locale, 'no locale'))
           WHEN e.external_id IS NOT NULL AND h.external_id IS DISTINCT FROM e.external_id THEN
               format('the restock was for external id %s, the subscription is for %s', e.external_id,
                      coalesce('external id ' || h.external_id, 'none'))
           WHEN h.status = 'cancelled' AND h.cancelled_at < e.occurred_at THEN
               format('cancelled on %s, before this restock', h.cancelled_at::date)
           WHEN h.id > e.max_subscription_id THEN 'subscribed after the restock began: it waits for the next one'
           WHEN e.held_back ? 'item_not_active' THEN 'the item was not active (draft or archived)'
           WHEN e.held_back ? 'alerts_disabled' THEN 'alerts were off for the item'
           WHEN h.status = 'expired' THEN 'the subscription had expired (bis.subscription_ttl)'
           WHEN h.max_price IS NOT NULL AND e.held_back ? 'over_price' THEN
               format('the item cost more than the subscription''s maximum price, %s', h.max_price)
           WHEN e.wave = 0 AND e.expansion = 'stopped' THEN 'the stock did not stay for the restock dwell'
           WHEN e.expansion = 'stopped' AND h.id > e.last_subscription_id THEN
               'a later wave never came: the SKU sold out, or a later restock took over'
           WHEN e.expansion = 'expanding' AND h.id > e.last_subscription_id THEN
               'not yet: the restock is still being enqueued'
           WHEN e.expansion = 'waiting' AND h.id > e.last_subscription_id THEN
               format('not yet: its wave is due at %s, if the SKU is still in stock', to_char(e.next_wave_at, 'YYYY-MM-DD HH24:MI'))
           ELSE 'not matched' END
      FROM bis.subscription_history h
      LEFT JOIN LATERAL (
            SELECT r.* FROM bis.restock_events r
             WHERE r.sku = h.sku AND r.kind = h.kind AND r.occurred_at >= h.created_at
               -- a notified one: the restocks up to the one that notified it
               AND (h.restock_event_id IS NULL OR r.id <= h.restock_event_id)) e ON true
      LEFT JOIN bis.notifications n ON n.id = h.notification_id
     WHERE h.contact_id = of_contact AND (of_sku IS NULL OR h.sku = of_sku)
     ORDER BY h.created_at, h.id, e.id;
END
$$;
COMMENT ON FUNCTION bis._explain(text, text) IS 'What bis.explain returns';

CREATE FUNCTION bis.explain(contact_id text, sku text DEFAULT NULL)
    RETURNS TABLE (subscription_id bigint, sku text, channel text, restock_event_id bigint,
                   restocked_at timestamptz, outcome text, reason text)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT * FROM bis._explain(contact_id, sku);
$$;
COMMENT ON FUNCTION bis.explain(text, text) IS 'For each of a contact''s subscriptions (of one SKU, or all), each restock of its SKU since it was made, and in plain words what happened and why, or why not';

CREATE FUNCTION bis.dry_run(sku text, quantity bigint, locale text DEFAULT NULL, external_id text DEFAULT NULL)
    RETURNS TABLE (contact_id text, channel text, subscription_id bigint, wave integer, outcome text, rule text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    item record;
    level bigint;
    threshold integer;
    quota numeric;
    ttl text := current_setting('bis.subscription_ttl');
    quiet text := current_setting('bis.quiet_hours');
    quiet_channels text[] := string_to_array(replace(current_setting('bis.quiet_hours_channels'), ' ', ''), ',');
    cap integer := current_setting('bis.max_per_contact_day')::integer;
    dwell interval;
BEGIN
    PERFORM bis._check_sku(dry_run.sku);
    PERFORM bis._check_quantity(dry_run.quantity);
    PERFORM bis._check_key('locale', dry_run.locale);
    PERFORM bis._check_key('external_id', dry_run.external_id);
    dry_run.locale := bis._canonical_locale(dry_run.locale);

    -- read, never locked: nothing is written, nothing waits for this
    SELECT i.* INTO item FROM bis.items i WHERE i.sku = dry_run.sku;
    IF NOT FOUND THEN
        RAISE NOTICE 'no restock: item "%" does not exist', dry_run.sku;
        RETURN;
    END IF;
    threshold := coalesce(item.threshold, current_setting('bis.default_threshold')::integer);
    SELECT s.quantity INTO level FROM bis.stock_levels s
     WHERE s.sku = dry_run.sku AND s.locale IS NOT DISTINCT FROM dry_run.locale
       AND s.external_id IS NOT DISTINCT FROM dry_run.external_id;
    IF dry_run.quantity < threshold OR level >= threshold THEN
        RAISE NOTICE 'no restock: % goes from % to %, and its threshold is %', dry_run.sku,
              coalesce(level::text, 'nothing'), dry_run.quantity, threshold;
        RETURN;
    END IF;
    quota := coalesce(item.wave_per_unit, nullif(settings.wave_per_unit, 0))::numeric * dry_run.quantity;
    dwell := coalesce(item.restock_dwell, nullif(current_setting('bis.restock_dwell'), '')::interval);

    RETURN QUERY
    WITH fired AS (
        SELECT s.id, s.contact_id, s.channel, s.locale, s.external_id, s.created_at, s.max_price,
               CASE WHEN dry_run.locale IS NOT NULL AND s.locale IS DISTINCT FROM dry_run.locale THEN 'other_locale'
                    WHEN dry_run.external_id IS NOT NULL AND s.external_id IS DISTINCT FROM dry_run.external_id
                        THEN 'other_external_id'
                    WHEN item.status <> 'active' THEN 'item_not_active'
                    WHEN NOT item.alerts_enabled THEN 'alerts_disabled'
                    WHEN ttl NOT IN ('', '0') AND s.created_at < now() - ttl::interval THEN 'expired'
                    WHEN s.max_price IS NOT NULL AND (item.price IS NULL OR item.price > s.max_price)
                        THEN 'over_price'
               END AS restock_rule
          FROM bis.subscriptions s
         WHERE s.sku = dry_run.sku AND s.status = 'active' AND s.kind = 'back_in_stock'
    ), told AS (
        SELECT f.*, row_number() OVER (PARTITION BY f.restock_rule IS NULL ORDER BY f.id) AS place
          FROM fired f
    )
    SELECT t.contact_id, t.channel, t.id,
           CASE WHEN t.restock_rule IS NULL THEN
               CASE WHEN quota IS NULL THEN 1 ELSE ceil(t.place / quota)::integer END END,
           CASE WHEN t.restock_rule IS NOT NULL THEN 'held back'
                WHEN claim_rule IS NOT NULL THEN 'enqueued, then held at the claim'
                WHEN dwell > interval '0' THEN format('told after the dwell of %s, if the stock stays', dwell)
                WHEN quota IS NOT NULL AND t.place > quota THEN 'told in a later wave, if the stock stays'
                ELSE 'told' END,
           coalesce(t.restock_rule, claim_rule)
      FROM told t
      LEFT JOIN bis.contacts c ON c.contact_id = t.contact_id
      LEFT JOIN bis.consents k ON k.contact_id = t.contact_id AND k.channel = t.channel
      CROSS JOIN LATERAL (SELECT CASE
               WHEN t.restock_rule IS NOT NULL THEN NULL
               WHEN NOT k.granted THEN 'no_consent'
               WHEN (t.channel = 'email' AND c.email IS NULL) OR (t.channel = 'sms' AND c.phone IS NULL) THEN 'no_address'
               WHEN quiet <> '' AND t.channel = ANY (quiet_channels)
                    AND bis._quiet_hours_end(now(), c.time_zone, quiet) IS NOT NULL THEN 'quiet_hours'
               WHEN cap > 0 AND (SELECT count(*) FROM bis.notifications o
                                  WHERE o.contact_id = t.contact_id
                                    AND (o.status = 'claimed' OR (o.status = 'sent'
                                         AND o.sent_at >= bis._local_day_start(now(), c.time_zone, 0)))) >= cap
                   THEN 'frequency_cap'
               END AS claim_rule) r
     ORDER BY t.id;
END
$$;
COMMENT ON FUNCTION bis.dry_run(text, bigint, text, text) IS 'Who would be told if that stock level were set now, in which wave, and who would be held back by which rule; computes without writing, locking rows or notifying';

CREATE VIEW bis.queue_health AS
SELECT n.channel, n.status, count(*) AS notifications,
       now() - min(n.available_at) FILTER (WHERE n.status = 'pending' AND n.available_at <= now())
           AS oldest_due_pending,
       count(*) FILTER (WHERE n.status = 'claimed' AND n.claimed_until > now()) AS in_flight,
       count(*) FILTER (WHERE n.status = 'claimed' AND n.claimed_until <= now()) AS lease_run_out,
       count(*) FILTER (WHERE n.status IN ('dead', 'suppressed')
                          AND coalesce(n.claimed_at, n.created_at) > now() - interval '24 hours') AS last_24h
  FROM bis.notifications n
 GROUP BY n.channel, n.status;
COMMENT ON VIEW bis.queue_health IS 'The queue per channel and status: how many, the oldest due pending one''s wait, claims in flight, leases run out, dead and suppressed in the last 24 hours';

CREATE VIEW bis.demand AS
SELECT s.sku, s.locale, s.channel, count(*) AS waiting, now() - min(s.created_at) AS oldest_wait,
       (SELECT sum(l.quantity) FROM bis.stock_levels l
         WHERE l.sku = s.sku AND l.locale IS NOT DISTINCT FROM s.locale) AS stock,
       (SELECT max(e.occurred_at) FROM bis.restock_events e WHERE e.sku = s.sku) AS last_restock
  FROM bis.subscriptions s
 WHERE s.status = 'active'
 GROUP BY s.sku, s.locale, s.channel;
COMMENT ON VIEW bis.demand IS 'Who waits for what: per SKU, locale and channel, the waiting subscriptions, the oldest wait, the stock in bis.stock_levels and the last restock';

CREATE VIEW bis.recent_restocks AS
SELECT e.id, e.occurred_at, e.sku, e.locale, e.external_id, e.old_quantity, e.new_quantity,
       e.threshold, e.source_table, e.matched, e.enqueued, e.held_back, e.expansion, e.wave,
       e.next_wave_at
  FROM bis.restock_events e
 WHERE e.occurred_at > now() - interval '7 days' OR e.expansion IN ('expanding', 'waiting');
COMMENT ON VIEW bis.recent_restocks IS 'Restocks of the last seven days and those still going: what each matched, enqueued and held back by rule, and how far its expansion and waves are';

CREATE VIEW bis.funnel AS
SELECT h.sku, h.enqueued_at::date AS day,
       count(*) AS notified,
       count(h.sent_at) AS sent,
       count(h.delivered_at) AS delivered,
       count(h.opened_at) AS opened,
       count(h.clicked_at) AS clicked,
       count(h.converted_at) AS converted,
       sum(h.amount) AS revenue
  FROM bis.notification_history h
 WHERE h.kind = 'back_in_stock'
 GROUP BY h.sku, h.enqueued_at::date;
COMMENT ON VIEW bis.funnel IS 'Per SKU and day of the restock: notified, sent, delivered, opened, clicked, converted, and the revenue of the conversions';

CREATE FUNCTION bis.contact_notifications(contact_id text) RETURNS SETOF bis.notification_history
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    RETURN QUERY
    SELECT h.* FROM bis.notification_history h
     WHERE h.contact_id = contact_notifications.contact_id
     ORDER BY h.enqueued_at DESC, h.notification_id DESC;
END
$$;
COMMENT ON FUNCTION bis.contact_notifications(text) IS 'A contact''s notifications, newest first, with each step and the conversion';

CREATE FUNCTION bis.subscribe_guest(email text, sku text, locale text DEFAULT NULL,
                                    external_id text DEFAULT NULL, channel text DEFAULT 'email')
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    address text := lower(trim(subscribe_guest.email));
    cid text;
BEGIN
    IF address IS NULL OR address = '' THEN
        RAISE EXCEPTION 'email must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the contact with that address, or a new one named by it
    SELECT c.contact_id INTO cid FROM bis.contacts c WHERE lower(c.email) = address
     ORDER BY c.created_at LIMIT 1;
    IF NOT FOUND THEN
        cid := bis.upsert_contact(address, email => address, locale => subscribe_guest.locale);
    END IF;
    RETURN bis.subscribe(cid, subscribe_guest.sku, subscribe_guest.locale, subscribe_guest.external_id,
                         subscribe_guest.channel);
END
$$;
COMMENT ON FUNCTION bis.subscribe_guest(text, text, text, text, text) IS 'A storefront''s one call: finds the contact by its email address (trimmed, lower case) or creates one named by it, and subscribes it; returns the subscription id';

CREATE FUNCTION bis.preview(kind text, channel text, locale text, sku text, contact_id text DEFAULT NULL)
    RETURNS TABLE (subject text, body text, body_html text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    item bis.items;
    contact bis.contacts;
    p jsonb;
BEGIN
    PERFORM bis._check_channel(preview.channel);
    PERFORM bis._check_key('locale', preview.locale);
    PERFORM bis._check_sku(preview.sku);
    SELECT i.* INTO item FROM bis.items i WHERE i.sku = preview.sku;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item "%" does not exist', preview.sku USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF preview.contact_id IS NOT NULL THEN
        SELECT c.* INTO contact FROM bis.contacts c WHERE c.contact_id = preview.contact_id;
        IF NOT FOUND THEN
            PERFORM bis._check_contact(preview.contact_id);
        END IF;
    ELSE
        contact.contact_id := 'preview';
        contact.first_name := 'Alex';
        contact.email := 'alex@example.com';
        contact.phone := '+46 70 000 00 00';
    END IF;
    -- the payload a claim builds (src/message.c), for this item and contact now
    p := jsonb_build_object(
        'item', jsonb_build_object('sku', item.sku, 'title', item.title, 'url', item.url,
                                   'image_url', item.image_url, 'price', item.price,
                                   'compare_at_price', item.compare_at_price, 'currency', item.currency,
                                   'category', item.category, 'attributes', item.attributes),
        'stock', jsonb_build_object('quantity', NULL, 'locale', bis._canonical_locale(preview.locale),
                                    'external_id', NULL),
        'contact', jsonb_build_object('id', contact.contact_id, 'first_name', contact.first_name,
                                      'locale', contact.locale),
        'subscription', jsonb_build_object('id', NULL, 'locale', bis._canonical_locale(preview.locale),
                                           'external_id', NULL, 'created_at', now()),
        'channel', preview.channel,
        'address', CASE preview.channel WHEN 'email' THEN contact.email WHEN 'sms' THEN contact.phone END,
        'locale', coalesce(contact.locale, bis._canonical_locale(preview.locale)),
        'unsubscribe_url', nullif(current_setting('bis.unsubscribe_url'), '') || 'PREVIEW',
        'unsubscribe_all_url', nullif(current_setting('bis.unsubscribe_url'), '') || 'PREVIEW');
    RETURN QUERY
    SELECT bis.render(t.subject, p), bis.render(t.body, p), bis.render(t.body_html, p, true)
      FROM bis._template(preview.kind, preview.channel, p->>'locale', (bis._settings()).default_locale) t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no template for kind "%" and channel "%"', preview.kind, preview.channel
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION bis.preview(text, text, text, text, text) IS 'What a message of that kind, channel and locale about that item would say now, to that contact or a sample one';

-- an item with history is archived, not deleted: its subscriptions and
-- notifications would go with it
CREATE FUNCTION bis._items_delete_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF EXISTS (SELECT FROM bis.subscriptions s WHERE s.sku = OLD.sku)
       OR EXISTS (SELECT FROM bis.restock_events e WHERE e.sku = OLD.sku) THEN
        RAISE EXCEPTION 'cannot delete item "%": it has subscriptions or restocks', OLD.sku
            USING ERRCODE = 'dependent_objects_still_exist',
            HINT = format('Archive it instead: SELECT bis.upsert_items(''[{"sku": "%s", "status": "archived"}]'').', OLD.sku);
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION bis._items_delete_check() IS 'Trigger on bis.items: refuses to delete an item that has subscriptions or restocks, which would lose their history';
CREATE TRIGGER items_delete_check BEFORE DELETE ON bis.items
    FOR EACH ROW EXECUTE FUNCTION bis._items_delete_check();

/*
 * Trust: roles by duty, the storefront's own calls, privacy
 */

-- what each duty may do, in one place: bis.grant and bis.revoke read it
CREATE FUNCTION bis._duty_privileges(duty text, OUT kind text, OUT object text, OUT privilege text)
    RETURNS SETOF record
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH functions(duty, object) AS (VALUES
        -- the shop: catalog, contacts, stock, subscriptions, what happened after
        ('application', 'bis.upsert_items(jsonb)'),
        ('application', 'bis.upsert_contact(text, text, text, text, text, text)'),
        ('application', 'bis.set_stock(text, integer, text, text)'),
        ('application', 'bis.put_stock_levels(jsonb)'),
        ('application', 'bis.subscribe(text, text, text, text, text, numeric, text, numeric)'),
        ('application', 'bis.subscribe_guest(text, text, text, text, text)'),
        ('application', 'bis.unsubscribe(bigint)'),
        ('application', 'bis.unsubscribe(text, text)'),
        ('application', 'bis.unsubscribe_by_token(text)'),
        ('application', 'bis.set_consent(text, text, boolean, text)'),
        ('application', 'bis.clear_address(text, text)'),
        ('application', 'bis.add_push_token(text, text, text)'),
        ('application', 'bis.remove_push_token(text, text, text)'),
        ('application', 'bis.add_webpush_subscription(text, jsonb)'),
        ('application', 'bis.remove_webpush_subscription(text, text)'),
        ('application', 'bis.contact_subscriptions(text)'),
        ('application', 'bis.contact_notifications(text)'),
        ('application', 'bis.record_event(bigint, text, timestamptz, text, jsonb)'),
        ('application', 'bis.record_purchase(text, text, text, integer, numeric, text, timestamptz)'),
        ('application', 'bis.explain(text, text)'),
        ('application', 'bis.dry_run(text, bigint, text, text)'),
        ('application', 'bis.preview(text, text, text, text, text)'),
        ('application', 'bis.track(regclass, name, name, name, name, name)'),
        ('application', 'bis.untrack(regclass)'),
        ('application', 'bis.track_orders(regclass, name, name, name, name, name, name, name)'),
        ('application', 'bis._order_trigger()'),
        -- the mailers: the queue, and what their providers say
        ('mailer', 'bis.claim(text, integer, interval, text[])'),
        ('mailer', 'bis.ack(bigint[], text)'),
        ('mailer', 'bis.fail(bigint, text, boolean, text)'),
        ('mailer', 'bis.release(bigint[], text)'),
        ('mailer', 'bis.push_targets(bigint[], text)'),
        ('mailer', 'bis.remove_push_token(text, text, text)'),
        ('mailer', 'bis.remove_webpush_subscription(text, text)'),
        ('mailer', 'bis.record_event(bigint, text, timestamptz, text, jsonb)'),
        -- a storefront: the shopper's own subscriptions, and a guest's
        ('storefront', 'bis.my_subscribe(text, text, text, text)'),
        ('storefront', 'bis.my_subscriptions()'),
        ('storefront', 'bis.my_unsubscribe(bigint)'),
        ('storefront', 'bis.subscribe_guest(text, text, text, text, text)'),
        ('storefront', 'bis.unsubscribe_by_token(text)'),
        -- an admin: what the others may, and the queue's and templates' upkeep
        ('admin', 'bis.requeue(bigint[])'),
        ('admin', 'bis.expand(integer)'),
        ('admin', 'bis.purge(interval)'),
        ('admin', 'bis.render(text, jsonb, boolean)'),
        ('admin', 'bis.erase_contact(text)'),
        ('admin', 'bis.export_contact(text)'))
    SELECT 'schema', 'bis', 'USAGE'
    UNION ALL
    SELECT 'function', f.object, 'EXECUTE' FROM functions f
     WHERE f.duty = _duty_privileges.duty
        OR (_duty_privileges.duty = 'admin' AND f.duty IN ('application', 'mailer', 'storefront'))
    UNION ALL
    -- reading bis's tables and views: the application and the admin, never the signing key
    SELECT 'table', 'bis.' || t, 'SELECT'
      FROM unnest(ARRAY['items', 'contacts', 'consents', 'stock_levels', 'subscriptions',
                        'restock_events', 'notifications', 'templates', 'send_windows',
                        'delivery_events', 'purchases', 'push_tokens', 'webpush_subscriptions',
                        'tracked_tables', 'restock_turns', 'tenancy',
                        'subscription_history', 'notification_history',
                        'queue_health', 'demand', 'recent_restocks', 'funnel']) t
     WHERE _duty_privileges.duty IN ('application', 'admin')
    UNION ALL
    SELECT 'table', 'bis.templates', p FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p
     WHERE _duty_privileges.duty = 'admin'
    UNION ALL
    -- the settings that only a superuser may set otherwise
    SELECT 'parameter', s.name, 'SET' FROM pg_catalog.pg_settings s
     WHERE _duty_privileges.duty = 'admin' AND s.name LIKE 'bis.%' AND s.context = 'superuser'
       -- a role that could set its tenant could act for any
       AND s.name <> 'bis.tenant';
$$;
COMMENT ON FUNCTION bis._duty_privileges(text) IS 'The privileges each duty needs: application, mailer, storefront, admin';

CREATE FUNCTION bis._check_duty(role regrole, duty text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF role IS NULL OR duty IS NULL THEN
        RAISE EXCEPTION 'role and duty must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF duty NOT IN ('application', 'mailer', 'storefront', 'admin') THEN
        RAISE EXCEPTION 'unrecognized duty "%"', left(duty, 100) USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The duties are application, mailer, storefront and admin.';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_duty(regrole, text) IS 'Raises an error for a NULL role or an unrecognized duty';

CREATE FUNCTION bis.grant(role regrole, duty text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p record;
BEGIN
    PERFORM bis._check_duty(role, duty);
    PERFORM bis._settings();    -- the settings exist once the library is loaded
    FOR p IN SELECT * FROM bis._duty_privileges(duty) LOOP
        EXECUTE format('GRANT %s ON %s %s TO %I', p.privilege, upper(p.kind), p.object, role::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis.grant(regrole, text) IS 'Grants a role what a duty needs and nothing more: application, mailer, storefront or admin; run it as bis''s owner';

CREATE FUNCTION bis.revoke(role regrole, duty text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p record;
BEGIN
    PERFORM bis._check_duty(role, duty);
    PERFORM bis._settings();
    FOR p IN SELECT * FROM bis._duty_privileges(duty) LOOP
        EXECUTE format('REVOKE %s ON %s %s FROM %I', p.privilege, upper(p.kind), p.object, role::text);
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis.revoke(regrole, text) IS 'Revokes what bis.grant granted a role for a duty (a privilege another duty of the role also needs goes too: grant that duty again)';

-- the shopper a request is authenticated as: the sub claim PostgREST sets
CREATE FUNCTION bis._shopper() RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    sub text;
BEGIN
    BEGIN
        sub := nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub';
    EXCEPTION WHEN invalid_text_representation THEN
        sub := NULL;
    END;
    IF sub IS NULL OR sub = '' THEN
        RAISE EXCEPTION 'no authenticated shopper' USING ERRCODE = 'insufficient_privilege',
            HINT = 'The API layer sets request.jwt.claims per request, with the shopper''s contact id as "sub", as PostgREST does.';
    END IF;
    RETURN sub;
END
$$;
COMMENT ON FUNCTION bis._shopper() IS 'The contact id a request is authenticated as (the sub claim of request.jwt.claims); an error without one';

CREATE FUNCTION bis.my_subscribe(sku text, locale text DEFAULT NULL, external_id text DEFAULT NULL,
                                 channel text DEFAULT 'email')
    RETURNS bigint
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT bis.subscribe(bis._shopper(), my_subscribe.sku, my_subscribe.locale, my_subscribe.external_id,
                         my_subscribe.channel);
$$;
COMMENT ON FUNCTION bis.my_subscribe(text, text, text, text) IS 'Subscribes the authenticated shopper (request.jwt.claims sub) to a SKU; for storefronts';

CREATE FUNCTION bis.my_subscriptions() RETURNS SETOF bis.subscription_history
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT * FROM bis.contact_subscriptions(bis._shopper());
$$;
COMMENT ON FUNCTION bis.my_subscriptions() IS 'The authenticated shopper''s subscriptions, newest first; for storefronts';

CREATE FUNCTION bis.my_unsubscribe(subscription_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE bis.subscriptions s SET status = 'cancelled', cancelled_at = now()
     WHERE s.id = my_unsubscribe.subscription_id AND s.contact_id = bis._shopper()
       AND s.status = 'active';
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION bis.my_unsubscribe(bigint) IS 'Cancels one of the authenticated shopper''s waiting subscriptions; false for one that is not theirs or not waiting; for storefronts';

-- a person's data, given or erased (GDPR access and erasure requests)
CREATE FUNCTION bis.export_contact(contact_id text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM bis._check_contact(export_contact.contact_id);
    RETURN jsonb_build_object(
        'contact', (SELECT to_jsonb(c) FROM bis.contacts c WHERE c.contact_id = export_contact.contact_id),
        'consents', coalesce((SELECT jsonb_agg(to_jsonb(k) - 'contact_id' ORDER BY k.channel)
                                FROM bis.consents k WHERE k.contact_id = export_contact.contact_id), '[]'),
        'subscriptions', coalesce((SELECT jsonb_agg(to_jsonb(h) - 'contact_id' ORDER BY h.created_at, h.id)
                                     FROM bis.subscription_history h
                                    WHERE h.contact_id = export_contact.contact_id), '[]'),
        'notifications', coalesce((SELECT jsonb_agg(to_jsonb(n) - 'contact_id' ORDER BY n.notification_id)
                                     FROM bis.notification_history n
                                    WHERE n.contact_id = export_contact.contact_id), '[]'),
        'delivery_events', coalesce((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.id)
                                       FROM bis.delivery_events d JOIN bis.notifications n ON n.id = d.notification_id
                                      WHERE n.contact_id = export_contact.contact_id), '[]'),
        'purchases', coalesce((SELECT jsonb_agg(to_jsonb(p) - 'contact_id' ORDER BY p.purchased_at)
                                 FROM bis.purchases p WHERE p.contact_id = export_contact.contact_id), '[]'),
        'push_tokens', coalesce((SELECT jsonb_agg(to_jsonb(t) - 'contact_id' ORDER BY t.created_at)
                                   FROM bis.push_tokens t WHERE t.contact_id = export_contact.contact_id), '[]'),
        'webpush_subscriptions', coalesce((SELECT jsonb_agg(to_jsonb(w) - 'contact_id' ORDER BY w.created_at)
                                             FROM bis.webpush_subscriptions w
                                            WHERE w.contact_id = export_contact.contact_id), '[]'));
END
$$;
COMMENT ON FUNCTION bis.export_contact(text) IS 'Everything bis holds about a contact, as JSON: contact, consents, subscriptions, notifications with their steps, delivery events, purchases, devices (an access request)';

CREATE FUNCTION bis.erase_contact(contact_id text) RETURNS jsonb
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    -- what stays in place of the person: no one can tell who it was
    anonymous text := 'erased:' || md5(random()::text || clock_timestamp()::text);
    counts jsonb;
    modify_mode text;
BEGIN
    PERFORM bis._check_contact(erase_contact.contact_id);
    -- on Citus, the foreign keys into the reference table bis.contacts want
    -- the shards changed over one connection per node
    IF bis._distributed() THEN
        modify_mode := current_setting('citus.multi_shard_modify_mode');
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    WITH n AS (
        -- the notifications stay, for the counts of restocks and funnels,
        -- with nothing that names the person
        UPDATE bis.notifications o
           SET contact_id = anonymous, last_error = NULL, claimed_by = NULL,
               status = CASE WHEN o.status IN ('pending', 'claimed') THEN 'cancelled' ELSE o.status END,
               status_reason = CASE WHEN o.status IN ('pending', 'claimed') THEN 'erased'
                                    ELSE o.status_reason END
         WHERE o.contact_id = erase_contact.contact_id
        RETURNING o.id),
    d AS (
        UPDATE bis.delivery_events e SET detail = NULL, provider_event_id = NULL
         WHERE e.notification_id IN (SELECT id FROM n)
        RETURNING 1),
    p AS (
        UPDATE bis.purchases b SET contact_id = anonymous
         WHERE b.contact_id = erase_contact.contact_id
        RETURNING 1)
    SELECT jsonb_build_object('notifications', (SELECT count(*) FROM n),
                              'delivery_events', (SELECT count(*) FROM d),
                              'purchases', (SELECT count(*) FROM p))
      INTO counts;
    -- the contact goes, and with it its waiting subscriptions, consents and devices
    PERFORM set_config('bis_erase.contact_id', erase_contact.contact_id, true);
    DELETE FROM bis.contacts c WHERE c.contact_id = erase_contact.contact_id;
    PERFORM set_config('bis_erase.contact_id', '', true);
    IF modify_mode IS NOT NULL THEN
        PERFORM set_config('citus.multi_shard_modify_mode', modify_mode, true);
    END IF;
    RETURN counts;
END
$$;
COMMENT ON FUNCTION bis.erase_contact(text) IS 'Removes a person''s personal data everywhere bis keeps it (contact, subscriptions, consents, devices; the contact id, errors and provider details of notifications, events and purchases), keeping the counts of restocks and funnels; returns how many rows it anonymized';

-- a contact is erased, not deleted: a DELETE would leave its notifications naming it
CREATE FUNCTION bis._contacts_delete_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- on Citus it fires on each node's copy (bis.contacts_NNN), which
    -- bis.erase_contact's setting does not reach: there it refuses nothing
    IF TG_TABLE_NAME = 'contacts'
       AND current_setting('bis_erase.contact_id', true) IS DISTINCT FROM OLD.contact_id THEN
        RAISE EXCEPTION 'cannot delete contact "%"', OLD.contact_id
            USING ERRCODE = 'dependent_objects_still_exist',
            HINT = format('Erase it instead, which leaves no trace of the person: SELECT bis.erase_contact(%L).',
                          OLD.contact_id);
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION bis._contacts_delete_check() IS 'Trigger on bis.contacts: refuses a DELETE but bis.erase_contact''s';
CREATE TRIGGER contacts_delete_check BEFORE DELETE ON bis.contacts
    FOR EACH ROW EXECUTE FUNCTION bis._contacts_delete_check();

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
    -- what is finished: delivered, given up, suppressed, expired; pending and
    -- claimed rows stay.  A notification is the history of the subscription
    -- it used, and goes with it, as what providers said of it does.
    WITH gone AS (
        DELETE FROM bis.notifications n
         WHERE n.status IN ('sent', 'dead', 'suppressed', 'expired', 'cancelled')
           AND coalesce(n.sent_at, n.created_at) < cutoff
        RETURNING n.id),
    events AS (
        DELETE FROM bis.delivery_events d WHERE d.notification_id IN (SELECT g.id FROM gone g))
    SELECT count(*) INTO notifications FROM gone;
    WITH gone AS (
        DELETE FROM bis.subscriptions s
         WHERE s.status <> 'active' AND coalesce(s.cancelled_at, s.created_at) < cutoff
        RETURNING 1)
    SELECT count(*) INTO subscriptions FROM gone;
    WITH gone AS (
        DELETE FROM bis.restock_events e
         WHERE e.occurred_at < cutoff AND e.expansion IN ('done', 'stopped')
        RETURNING 1)
    SELECT count(*) INTO restock_events FROM gone;
    DELETE FROM bis.purchases p WHERE p.purchased_at < cutoff;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION bis.purge(interval) IS 'Removes finished notifications (the history of the subscriptions they used) with their delivery events, cancelled or expired subscriptions, restock events and purchases older than older_than (default: the setting bis.retention); returns how many notifications, subscriptions and restock events';

/*
 * Distribution (Citus)
 *
 * bis.distribute() makes what is keyed by SKU (stock levels, subscriptions,
 * restock events, notifications, the per-SKU turns) distributed by sku in
 * one co-location group, and the catalog (items, contacts, consents,
 * templates, the signing key) reference tables; bis.distribute(tbl) puts a
 * tracked table of the shop's beside them.  A restock then runs in the
 * trigger on the node that holds the SKU's shards, on those shards alone
 * (src/distribute.c), and mailers attach to the worker nodes: each node
 * hands out, acknowledges and expands the notifications of its own shards,
 * shard group by shard group with SKIP LOCKED, and its restocks wake the
 * mailers that LISTEN on it.  Without Citus none of this is used.  See the
 * README's Running on Citus.
 */

-- The per-SKU turn on Citus (src/restock.c): a row of the SKU's own shard
-- group, where on a single server the item's row serves (bis.items is a
-- reference table on Citus, and a row lock on it would lock every node's)
CREATE TABLE bis.restock_turns (
    sku text NOT NULL,
    tenant text NOT NULL DEFAULT bis._tenant(),
    CONSTRAINT restock_turns_pkey PRIMARY KEY (sku, tenant)
);
COMMENT ON TABLE bis.restock_turns IS 'Where bis''s tables are distributed (Citus): one row per SKU restocked, the row its restocks and expansions take turns on; empty on a single server';
COMMENT ON COLUMN bis.restock_turns.sku IS 'The SKU';

CREATE FUNCTION bis._distributed() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'bis__distributed';
COMMENT ON FUNCTION bis._distributed() IS 'Whether bis''s tables are distributed by Citus in this database';

CREATE FUNCTION bis._group_sql(sql text, grp bigint) RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'bis__group_sql';
COMMENT ON FUNCTION bis._group_sql(text, bigint) IS 'A statement on bis''s tables rewritten for shard group grp on this node (Citus): each distributed table becomes its shard, each reference table this node''s placement';

CREATE FUNCTION bis._hand_out_group(ids bigint[], worker text, grp bigint) RETURNS SETOF bis.message
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'bis__hand_out_group';
COMMENT ON FUNCTION bis._hand_out_group(bigint[], text, bigint) IS 'bis._hand_out for the notifications of shard group grp on this node (Citus)';

CREATE FUNCTION bis._expand_group(ev bis.restock_events, max_rows integer, worker text, lease interval,
                                  channels text[], grp bigint, OUT enqueued integer, OUT claimed bigint[])
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__expand_group';
COMMENT ON FUNCTION bis._expand_group(bis.restock_events, integer, text, interval, text[], bigint) IS 'bis._expand for a restock event of shard group grp on this node (Citus)';

CREATE FUNCTION bis._make_signing_key() RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'bis__make_signing_key';
COMMENT ON FUNCTION bis._make_signing_key() IS 'Makes the key that signs unsubscribe tokens if there is none, so that bis.distribute() gives every node the same';

CREATE FUNCTION bis._local_shard_groups() RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- Citus's catalogs: this body is only ever run where they exist
    RETURN ARRAY(SELECT s.shardminvalue::bigint
                   FROM pg_dist_shard s, pg_dist_placement p, pg_dist_local_group l
                  WHERE s.logicalrelid = 'bis.notifications'::regclass
                    AND p.shardid = s.shardid AND p.groupid = l.groupid
                  ORDER BY 1);
END
$$;
COMMENT ON FUNCTION bis._local_shard_groups() IS 'The shard groups of bis''s tables on this node (Citus), by the shards'' shardminvalue';

-- what a node's mailers work on: an error where it holds no shard
CREATE FUNCTION bis._mailer_groups() RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    grps bigint[] := bis._local_shard_groups();
BEGIN
    IF cardinality(grps) = 0 THEN
        RAISE EXCEPTION 'this node holds no shard of bis.notifications'
            USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'Where bis''s tables are distributed (Citus), each node hands out and acknowledges the notifications of its own shards.',
            HINT = 'Connect mailers to the worker nodes.';
    END IF;
    RETURN grps;
END
$$;
COMMENT ON FUNCTION bis._mailer_groups() IS 'The shard groups a mailer connected to this node serves (Citus); an error where there is none';

CREATE FUNCTION bis._next_expansion_group(grp bigint, after_id bigint) RETURNS bis.restock_events
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    ev bis.restock_events;
    per_unit integer;
    quantity bigint;
    n bigint;
BEGIN
    -- bis._next_expansion, in one shard group: its statements, on its shards
    LOOP
        EXECUTE bis._group_sql($q$
            SELECT e.* FROM bis.restock_events e
             WHERE (e.expansion = 'expanding' OR (e.expansion = 'waiting' AND e.next_wave_at <= now()))
               AND e.id >= $1
             ORDER BY e.id LIMIT 1 FOR UPDATE SKIP LOCKED$q$, grp) INTO ev USING after_id;
        IF ev.id IS NULL THEN
            RETURN NULL;
        END IF;
        after_id := ev.id + 1;

        -- the SKU's turn (its row in bis.restock_turns), never waited for
        EXECUTE bis._group_sql($q$
            SELECT coalesce(i.wave_per_unit, nullif($2, 0))
              FROM bis.restock_turns t LEFT JOIN bis.items i ON i.sku = t.sku
             WHERE t.sku = $1 FOR NO KEY UPDATE OF t SKIP LOCKED$q$, grp)
            INTO per_unit USING ev.sku, settings.wave_per_unit;
        GET DIAGNOSTICS n = ROW_COUNT;
        CONTINUE WHEN n = 0;

        IF ev.expansion = 'expanding' THEN
            RETURN ev;
        END IF;
        quantity := bis._current_stock(ev.source_table, ev.sku, ev.locale, ev.external_id);
        IF quantity >= ev.threshold THEN
            EXECUTE bis._group_sql($q$
                UPDATE bis.restock_events e
                   SET wave = e.wave + 1, wave_quota = bis._wave_quota($2, $3),
                       expansion = 'expanding', next_wave_at = NULL
                 WHERE e.id = $1 AND e.sku = $4
                RETURNING e.*$q$, grp) INTO ev USING ev.id, per_unit, quantity, ev.sku;
            RETURN ev;
        END IF;
        EXECUTE bis._group_sql($q$
            UPDATE bis.restock_events e
               SET expansion = 'stopped', next_wave_at = NULL,
                   held_back = bis._held_back(e.held_back, CASE WHEN e.wave = 0 THEN 'dwell' ELSE 'wave' END,
                       (SELECT count(*) FROM bis.subscriptions s
                         WHERE s.sku = e.sku AND s.status = 'active'
                           AND s.id > e.last_subscription_id AND s.id <= e.max_subscription_id
                           AND (e.locale IS NULL OR s.locale = e.locale)
                           AND (e.external_id IS NULL OR s.external_id = e.external_id)))
             WHERE e.id = $1 AND e.sku = $2$q$, grp) USING ev.id, ev.sku;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._next_expansion_group(bigint, bigint) IS 'bis._next_expansion in shard group grp on this node (Citus)';

CREATE FUNCTION bis._claim_local(worker text, max_rows integer, lease interval, channels text[])
    RETURNS SETOF bis.message
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    grps bigint[] := bis._mailer_groups();
    start integer := floor(random() * cardinality(grps))::integer;
    grp bigint;
    ids bigint[];
    ev bis.restock_events;
    after_id bigint;
    handed integer := 0;
    n integer;
BEGIN
    -- bis.claim on this node's shards, group by group from a random one so
    -- that concurrent mailers start apart; SKIP LOCKED: none waits for another
    FOR i IN 0 .. cardinality(grps) - 1 LOOP
        EXIT WHEN handed >= max_rows;
        grp := grps[(start + i) % cardinality(grps) + 1];
        LOOP
            EXECUTE bis._group_sql($q$
                SELECT ARRAY(SELECT n.id FROM bis.notifications n
                              WHERE n.status = 'claimed' AND n.claimed_until <= now()
                                AND ($2 IS NULL OR n.channel = ANY ($2))
                              ORDER BY n.claimed_until
                              LIMIT $1 FOR UPDATE SKIP LOCKED)$q$, grp)
                INTO ids USING max_rows - handed, channels;
            IF cardinality(ids) < max_rows - handed THEN
                EXECUTE bis._group_sql($q$
                    SELECT $3 || ARRAY(SELECT n.id FROM bis.notifications n
                                        WHERE n.status = 'pending' AND n.available_at <= now()
                                          AND ($2 IS NULL OR n.channel = ANY ($2))
                                        ORDER BY n.available_at
                                        LIMIT $1 FOR UPDATE SKIP LOCKED)$q$, grp)
                    INTO ids USING max_rows - handed - cardinality(ids), channels, ids;
            END IF;
            EXIT WHEN cardinality(ids) = 0;
            EXECUTE bis._group_sql($q$
                UPDATE bis.notifications n
                   SET status = CASE WHEN n.created_at < now() - $4 THEN 'expired' ELSE 'claimed' END,
                       claimed_by = CASE WHEN n.created_at < now() - $4 THEN NULL ELSE $2 END,
                       claimed_until = CASE WHEN n.created_at < now() - $4 THEN NULL ELSE now() + $3 END,
                       attempts = n.attempts + 1
                 WHERE n.id = ANY ($1)$q$, grp)
                USING ids, worker, lease, settings.notification_ttl;
            RETURN QUERY SELECT * FROM bis._hand_out_group(ids, worker, grp);
            GET DIAGNOSTICS n = ROW_COUNT;
            handed := handed + n;
            -- a batch that had only expired or suppressed rows: look again
            EXIT WHEN n > 0;
        END LOOP;
    END LOOP;
    IF handed > 0 THEN
        RETURN;
    END IF;

    -- nothing due: the next chunk of a restock, straight into this claim;
    -- a chunk that gave this mailer nothing (the restock's last, empty one,
    -- or rows of other channels) moves on to the next restock with work due
    FOR i IN 0 .. cardinality(grps) - 1 LOOP
        grp := grps[(start + i) % cardinality(grps) + 1];
        after_id := 0;
        LOOP
            ev := bis._next_expansion_group(grp, after_id);
            EXIT WHEN ev.id IS NULL;
            after_id := ev.id + 1;
            ids := (bis._expand_group(ev, least(max_rows, settings.expand_chunk), worker, lease,
                                      channels, grp)).claimed;
            CONTINUE WHEN ids IS NULL;
            RETURN QUERY SELECT * FROM bis._hand_out_group(ids, worker, grp);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN
                RETURN;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._claim_local(text, integer, interval, text[]) IS 'bis.claim where bis''s tables are distributed (Citus): the notifications of this node''s shards';

CREATE FUNCTION bis._set_status_local(statement text, ids bigint[], worker text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done integer := 0;
    n integer;
    grp bigint;
BEGIN
    -- ids are unique over the nodes: stop once every one was found
    FOREACH grp IN ARRAY bis._mailer_groups() LOOP
        EXECUTE bis._group_sql(statement, grp) USING ids, worker;
        GET DIAGNOSTICS n = ROW_COUNT;
        done := done + n;
        EXIT WHEN done >= cardinality(ids);
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION bis._set_status_local(text, bigint[], text) IS 'Runs an UPDATE of bis.notifications by ids ($1) and worker ($2) in each shard group on this node (Citus) until every id was found; returns how many rows it changed';

CREATE FUNCTION bis._fail_local(id bigint, error text, retry boolean, worker text) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    settings record := bis._settings();
    n bis.notifications;
    grp bigint;
    delay interval;
BEGIN
    -- bis.fail on this node's shard that holds the notification
    FOREACH grp IN ARRAY bis._mailer_groups() LOOP
        EXECUTE bis._group_sql('SELECT x.* FROM bis.notifications x WHERE x.id = $1 FOR UPDATE', grp)
            INTO n USING fail_local.id;
        EXIT WHEN n.id IS NOT NULL;
    END LOOP;
    IF n.id IS NULL THEN
        RAISE EXCEPTION 'notification % does not exist on this node', fail_local.id
            USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Where bis''s tables are distributed (Citus), a mailer reports a failure to the node it claimed from.';
    END IF;
    IF n.status <> 'claimed' OR (fail_local.worker IS NOT NULL AND n.claimed_by <> fail_local.worker) THEN
        RETURN n.status;
    END IF;
    IF coalesce(fail_local.retry, true) AND n.attempts < settings.max_attempts THEN
        delay := least(settings.retry_base_delay * power(2, n.attempts - 1), settings.retry_max_delay);
        delay := delay * (0.5 + random() / 2);
        EXECUTE bis._group_sql($q$
            UPDATE bis.notifications x
               SET status = 'pending', available_at = now() + $2, last_error = left($3, 2000),
                   claimed_by = NULL, claimed_until = NULL
             WHERE x.id = $1$q$, grp) USING fail_local.id, delay, fail_local.error;
        RETURN 'pending';
    END IF;
    EXECUTE bis._group_sql($q$
        UPDATE bis.notifications x
           SET status = 'dead', last_error = left($2, 2000), claimed_until = NULL
         WHERE x.id = $1$q$, grp) USING fail_local.id, fail_local.error;
    RETURN 'dead';
END
$$;
COMMENT ON FUNCTION bis._fail_local(bigint, text, boolean, text) IS 'bis.fail where bis''s tables are distributed (Citus): on the shard of this node that holds the notification';

CREATE FUNCTION bis._expand_local(max_chunks integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    chunk integer := (bis._settings()).expand_chunk;
    ev bis.restock_events;
    grp bigint;
    after_id bigint := 0;
    chunks integer := 0;
    total integer := 0;
BEGIN
    -- bis.expand on this node's shards, group by group
    FOREACH grp IN ARRAY bis._mailer_groups() LOOP
        after_id := 0;
        LOOP
            EXIT WHEN chunks >= max_chunks;
            ev := bis._next_expansion_group(grp, after_id);
            EXIT WHEN ev.id IS NULL;
            after_id := ev.id;
            total := total + (bis._expand_group(ev, chunk, NULL, NULL, NULL, grp)).enqueued;
            chunks := chunks + 1;
        END LOOP;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION bis._expand_local(integer) IS 'bis.expand where bis''s tables are distributed (Citus): the restocks of this node''s shards';

CREATE FUNCTION bis._store_levels_distributed(levels jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    total bigint := 0;
    key text;
    before bigint;
    after bigint;
    l record;
BEGIN
    -- bis._store_levels SKU by SKU, in order: every statement goes to the
    -- node that holds the SKU's shards, whose session counts what it enqueued
    FOR key IN SELECT DISTINCT a->>'sku' FROM jsonb_array_elements(levels) a ORDER BY 1 LOOP
        -- the SKU's turn first, as on a single server
        INSERT INTO bis.restock_turns AS t (sku) SELECT key
        ON CONFLICT (sku, tenant) DO UPDATE SET sku = excluded.sku
        RETURNING bis._enqueued_total() INTO before;
        -- new levels are crossings from nothing, seen where they are stored
        FOR l IN
            INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
            SELECT a->>'sku', a->>'locale', a->>'externalId', (a->>'quantity')::numeric::integer
              FROM jsonb_array_elements(levels) a
             WHERE a->>'sku' = key
             ORDER BY coalesce(a->>'locale', ''), coalesce(a->>'externalId', '')
            ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, '')), tenant) DO NOTHING
            RETURNING bis._new_stock_level(s.sku, s.quantity, s.locale, s.external_id)
        LOOP
        END LOOP;
        INSERT INTO bis.stock_levels AS s (sku, locale, external_id, quantity)
        SELECT a->>'sku', a->>'locale', a->>'externalId', (a->>'quantity')::numeric::integer
          FROM jsonb_array_elements(levels) a
         WHERE a->>'sku' = key
         ORDER BY coalesce(a->>'locale', ''), coalesce(a->>'externalId', '')
        ON CONFLICT (sku, (coalesce(locale, '')), (coalesce(external_id, '')), tenant) DO UPDATE SET
            quantity = excluded.quantity,
            updated_at = excluded.updated_at
         WHERE (s.quantity, s.updated_at) IS DISTINCT FROM (excluded.quantity, excluded.updated_at);
        SELECT bis._enqueued_total() INTO after
          FROM bis.restock_turns t WHERE t.sku = key;
        total := total + after - before;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION bis._store_levels_distributed(jsonb) IS 'bis._store_levels where bis''s tables are distributed (Citus): SKU by SKU, each on the node that holds it';

-- run on every node by bis.distribute(), before Citus knows bis's tables
CREATE FUNCTION bis._catalog_foreign_keys(OUT tbl regclass, OUT conname name, OUT definition text)
    RETURNS SETOF record
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    VALUES ('bis.subscriptions'::regclass, 'subscriptions_sku_fkey'::name,
            'FOREIGN KEY (sku, tenant) REFERENCES bis.items(sku, tenant) ON DELETE CASCADE'),
           ('bis.subscriptions', 'subscriptions_contact_id_fkey',
            'FOREIGN KEY (contact_id, tenant) REFERENCES bis.contacts(contact_id, tenant) ON DELETE CASCADE'),
           ('bis.consents', 'consents_contact_id_fkey',
            'FOREIGN KEY (contact_id, tenant) REFERENCES bis.contacts(contact_id, tenant) ON DELETE CASCADE'),
           ('bis.push_tokens', 'push_tokens_contact_id_fkey',
            'FOREIGN KEY (contact_id, tenant) REFERENCES bis.contacts(contact_id, tenant) ON DELETE CASCADE'),
           ('bis.webpush_subscriptions', 'webpush_subscriptions_contact_id_fkey',
            'FOREIGN KEY (contact_id, tenant) REFERENCES bis.contacts(contact_id, tenant) ON DELETE CASCADE')
$$;
COMMENT ON FUNCTION bis._catalog_foreign_keys() IS 'The foreign keys of bis''s tables into its catalog, which bis.distribute() drops on every node before the catalog becomes reference tables and adds back after';

CREATE FUNCTION bis._shape_node() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    node bigint := (SELECT l.groupid FROM pg_dist_local_group l);
    seq text;
    fk record;
BEGIN
    -- keys that include the distribution column, as Citus requires
    IF (SELECT cardinality(c.conkey) FROM pg_constraint c
         WHERE c.conrelid = 'bis.subscriptions'::regclass AND c.conname = 'subscriptions_pkey') = 1 THEN
        ALTER TABLE bis.subscriptions DROP CONSTRAINT subscriptions_pkey,
            ADD CONSTRAINT subscriptions_pkey PRIMARY KEY (id, sku);
    END IF;
    IF (SELECT cardinality(c.conkey) FROM pg_constraint c
         WHERE c.conrelid = 'bis.restock_events'::regclass AND c.conname = 'restock_events_pkey') = 1 THEN
        ALTER TABLE bis.restock_events DROP CONSTRAINT restock_events_pkey,
            ADD CONSTRAINT restock_events_pkey PRIMARY KEY (id, sku);
    END IF;
    IF (SELECT cardinality(c.conkey) FROM pg_constraint c
         WHERE c.conrelid = 'bis.notifications'::regclass AND c.conname = 'notifications_pkey') = 1 THEN
        ALTER TABLE bis.notifications DROP CONSTRAINT notifications_pkey,
            ADD CONSTRAINT notifications_pkey PRIMARY KEY (id, sku);
    END IF;
    -- foreign keys into the catalog wait until it is made of reference
    -- tables (bis.distribute() puts them back)
    IF NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = 'bis.contacts'::regclass) THEN
        FOR fk IN SELECT * FROM bis._catalog_foreign_keys() LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', fk.tbl, fk.conname);
        END LOOP;
    END IF;
    -- ids unique over the nodes: each node's sequences count in a range of
    -- their own, 2^48 wide, by the node's group id
    FOREACH seq IN ARRAY ARRAY['bis.subscriptions_id_seq', 'bis.restock_events_id_seq',
                                'bis.notifications_id_seq'] LOOP
        IF (SELECT s.max_value FROM pg_sequences s
             WHERE format('%I.%I', s.schemaname, s.sequencename) = seq) <> ((node + 1) << 48) - 1 THEN
            EXECUTE format('ALTER SEQUENCE %s MAXVALUE %s', seq, ((node + 1) << 48) - 1);
        END IF;
        IF (SELECT coalesce(s.last_value, 0) FROM pg_sequences s
             WHERE format('%I.%I', s.schemaname, s.sequencename) = seq) < node << 48 THEN
            EXECUTE format('ALTER SEQUENCE %s RESTART WITH %s', seq, (node << 48) + 1);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis._shape_node() IS 'Gives this node''s copy of bis''s tables the shape Citus needs, before they are distributed: keys with the SKU, no foreign keys into the catalog yet, ids in a range of the node''s own; run on every node by bis.distribute()';

CREATE FUNCTION bis._check_citus() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION 'bis.distribute() needs the Citus extension'
            USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Extension "citus" is not installed in this database.',
            HINT = 'Load citus (shared_preload_libraries) and CREATE EXTENSION citus on every node, add the workers, then call bis.distribute() on the coordinator.';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'bis.distribute() must be called on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;
COMMENT ON FUNCTION bis._check_citus() IS 'Raises an error unless this is a Citus coordinator';

CREATE FUNCTION bis.distribute() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    -- as src/distribute.c lists them
    sku_tables text[] := ARRAY['bis.stock_levels', 'bis.subscriptions', 'bis.restock_events',
                               'bis.notifications', 'bis.restock_turns', 'bis.purchases'];
    reference_tables text[] := ARRAY['bis.items', 'bis.contacts', 'bis.consents', 'bis.templates',
                                     'bis.signing_key', 'bis.push_tokens', 'bis.webpush_subscriptions',
                                     'bis.delivery_events'];
    t text;
    fk record;
    unsafe_triggers text;
    modify_mode text;
    failures text;
BEGIN
    PERFORM bis._check_citus();
    -- once distributed, bis.subscribe makes none (and Citus would not plan this)
    IF NOT bis._distributed() THEN
        IF EXISTS (SELECT FROM bis.subscriptions s WHERE s.kind = 'price_drop' AND s.status = 'active') THEN
            RAISE EXCEPTION 'bis has active price-drop subscriptions'
                USING ERRCODE = 'feature_not_supported',
                DETAIL = 'A distributed bis tells of restocks only.',
                HINT = 'Cancel them with bis.unsubscribe() first.';
        END IF;
    END IF;
    -- one signing key for every node, copied with the table
    PERFORM bis._make_signing_key();
    -- every node's copy of the tables in Citus's shape first: the workers'
    -- were made by CREATE EXTENSION and are what Citus keeps there
    PERFORM bis._shape_node();
    SELECT string_agg(format('%s:%s: %s', r.nodename, r.nodeport, r.result), '; ') INTO failures
      FROM run_command_on_workers('SELECT bis._shape_node()') r WHERE NOT r.success;
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'could not prepare bis''s tables on every worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = failures,
            HINT = 'Create extension bis on the coordinator once the workers are added: Citus creates it on each of them.';
    END IF;

    -- bis's triggers go with its tables to their shards; the foreign keys
    -- into reference tables want one connection per node
    unsafe_triggers := current_setting('citus.enable_unsafe_triggers');
    modify_mode := current_setting('citus.multi_shard_modify_mode');
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    FOREACH t IN ARRAY reference_tables LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = t::regclass);
        -- the built-in templates are copied as they are
        IF t = 'bis.templates' THEN
            ALTER TABLE bis.templates DISABLE TRIGGER templates_check;
        END IF;
        PERFORM create_reference_table(t);
        IF t = 'bis.templates' THEN
            ALTER TABLE bis.templates ENABLE TRIGGER templates_check;
        END IF;
    END LOOP;
    FOREACH t IN ARRAY sku_tables LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = t::regclass);
        PERFORM create_distributed_table(t, 'sku',
            colocate_with => CASE WHEN t = 'bis.stock_levels' THEN 'default' ELSE 'bis.stock_levels' END);
    END LOOP;
    IF (SELECT count(DISTINCT p.colocationid) FROM pg_dist_partition p
         WHERE p.logicalrelid::text = ANY (sku_tables)) <> 1 THEN
        RAISE EXCEPTION 'bis''s tables keyed by SKU are not co-located'
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Co-locate them with alter_distributed_table(..., colocate_with => ''bis.stock_levels'').';
    END IF;

    -- the foreign keys into the catalog, now made of reference tables
    FOR fk IN SELECT * FROM bis._catalog_foreign_keys() f
               WHERE NOT EXISTS (SELECT FROM pg_constraint c
                                  WHERE c.conrelid = f.tbl AND c.conname = f.conname) LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tbl, fk.conname, fk.definition);
    END LOOP;
    PERFORM set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
    PERFORM set_config('citus.multi_shard_modify_mode', modify_mode, true);
END
$$;
COMMENT ON FUNCTION bis.distribute() IS 'On a Citus coordinator: distributes bis''s tables keyed by SKU by sku in one co-location group and makes its catalog reference tables; idempotent: call it again after adding a node';

CREATE FUNCTION bis.distribute(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    sku_column name;
    unsafe_triggers text;
BEGIN
    PERFORM bis._check_citus();
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT bis._distributed() THEN
        RAISE EXCEPTION 'bis''s own tables are not distributed'
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Call bis.distribute() first.';
    END IF;
    SELECT t.sku_column INTO sku_column FROM bis.tracked_tables t WHERE t.tbl = distribute.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not tracked', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Track it first with bis.track(), then distribute it.';
    END IF;
    IF EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tbl
                                          AND g.tgfoid = 'bis._tracked_price_trigger()'::regprocedure) THEN
        RAISE EXCEPTION 'table "%" has a tracked price column', tbl
            USING ERRCODE = 'feature_not_supported',
            DETAIL = 'A distributed bis tells of restocks only.',
            HINT = 'Track it again without price_column first.';
    END IF;
    IF EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = tbl) THEN
        IF (SELECT p.colocationid FROM pg_dist_partition p WHERE p.logicalrelid = tbl)
           IS DISTINCT FROM (SELECT p.colocationid FROM pg_dist_partition p
                              WHERE p.logicalrelid = 'bis.stock_levels'::regclass)
           OR column_to_column_name(tbl, (SELECT p.partkey FROM pg_dist_partition p
                                           WHERE p.logicalrelid = tbl)) <> sku_column THEN
            RAISE EXCEPTION 'table "%" is distributed, but not by "%" beside bis''s tables', tbl, sku_column
                USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = format('Distribute it by %I with colocate_with => ''bis.stock_levels''.', sku_column);
        END IF;
        RETURN;
    END IF;
    IF (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = sku_column)
       <> 'text'::regtype THEN
        RAISE EXCEPTION 'column "%" of table "%" must be of type text to be co-located with bis''s tables',
              sku_column, tbl
            USING ERRCODE = 'datatype_mismatch',
            HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE text', tbl, sku_column);
    END IF;
    -- bis's triggers go with the table to its shards
    unsafe_triggers := current_setting('citus.enable_unsafe_triggers');
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM create_distributed_table(tbl, sku_column, colocate_with => 'bis.stock_levels');
    PERFORM set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
END
$$;
COMMENT ON FUNCTION bis.distribute(regclass) IS 'On a Citus coordinator: distributes a table tracked by bis by its SKU column, co-located with bis''s tables, so that its restocks run where its shards are; idempotent';

/*
 * Tenants (src/tenant.c)
 *
 * Many shops in one database: every table has a tenant column, in every
 * key, that rows take from the setting bis.tenant.  bis.enable_tenants()
 * keeps them apart: a policy on every table shows and admits only the rows
 * of the session's tenant (and the built-in templates), and bis's functions
 * and views are handed to the role bis_tenants, which the policies apply to
 * as they do to the application's roles (they do not to a superuser, who
 * otherwise owns bis).  bis.grant, bis.revoke, the tracking functions and
 * bis.distribute stay with the superuser: they change privileges and
 * triggers, not tenants' rows.
 */

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['items', 'contacts', 'consents', 'stock_levels', 'subscriptions',
                             'restock_events', 'notifications', 'templates', 'send_windows',
                             'delivery_events', 'purchases', 'push_tokens', 'webpush_subscriptions',
                             'restock_turns'] LOOP
        EXECUTE format('COMMENT ON COLUMN bis.%I.tenant IS %L', t,
                       'The tenant the row belongs to: the setting bis.tenant when it was written, '''' without tenants');
    END LOOP;
END
$$;

-- that tenants were enabled, kept by pg_dump where the policies and the
-- functions' owner are not: a restored database refuses bis until
-- bis.enable_tenants() has run again (src/tenant.c).  An upgrade script
-- that creates functions ends with
-- SELECT bis.enable_tenants() FROM bis.tenancy, which hands them over too.
CREATE TABLE bis.tenancy (
    enabled boolean PRIMARY KEY DEFAULT true CHECK (enabled),
    enabled_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE bis.tenancy IS 'One row once bis.enable_tenants() has kept tenants apart in this database; none without tenants';
COMMENT ON COLUMN bis.tenancy.enabled IS 'Always true: the table has one row or none';
COMMENT ON COLUMN bis.tenancy.enabled_at IS 'When tenants were first enabled';
SELECT pg_catalog.pg_extension_config_dump('bis.tenancy', '');

-- what stays with bis's owner when tenants are enabled
CREATE FUNCTION bis._administration_functions() RETURNS regprocedure[]
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT ARRAY['bis.enable_tenants()', 'bis.grant(regrole, text)', 'bis.revoke(regrole, text)',
                 'bis.track(regclass, name, name, name, name, name)', 'bis.untrack(regclass)',
                 'bis.track_orders(regclass, name, name, name, name, name, name, name)',
                 'bis._check_tracked_tables()', 'bis.distribute()', 'bis.distribute(regclass)',
                 'bis._shape_node()', 'bis._check_citus()']::regprocedure[];
$$;
COMMENT ON FUNCTION bis._administration_functions() IS 'The functions bis.enable_tenants() leaves with the extension''s owner: they change privileges, triggers and distribution, never a tenant''s rows';

CREATE FUNCTION bis.enable_tenants() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    tbl regclass;
    obj record;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'permission denied to enable tenants' USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'It changes the owner of bis''s functions and creates the role bis_tenants.',
            HINT = 'Run it as a superuser.';
    END IF;
    IF bis._distributed() THEN
        RAISE EXCEPTION 'tenants are not supported where bis''s tables are distributed (Citus)'
            USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Citus runs a distributed statement on the worker nodes as the role that runs it, and bis_tenants cannot log in.';
    END IF;
    -- the role bis's functions run as: no login, no rights of its own but these
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = 'bis_tenants') THEN
        CREATE ROLE bis_tenants NOLOGIN NOINHERIT;
        COMMENT ON ROLE bis_tenants IS 'The role bis''s functions run as once tenants are enabled: the tenants'' row-level security policies apply to it';
    END IF;
    -- whoever could log in as it, or set role to it, would act for every tenant
    IF (SELECT r.rolsuper OR r.rolbypassrls OR r.rolcanlogin FROM pg_roles r WHERE r.rolname = 'bis_tenants')
       OR EXISTS (SELECT FROM pg_auth_members m WHERE m.roleid = 'bis_tenants'::regrole) THEN
        RAISE EXCEPTION 'role bis_tenants can log in, bypass row-level security or be taken by another role'
            USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'ALTER ROLE bis_tenants NOSUPERUSER NOBYPASSRLS NOLOGIN, and revoke it from its members.';
    END IF;
    GRANT USAGE ON SCHEMA bis TO bis_tenants;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bis TO bis_tenants;
    GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA bis TO bis_tenants;

    INSERT INTO bis.tenancy DEFAULT VALUES ON CONFLICT DO NOTHING;

    -- a policy per table: the session's tenant's rows, and the built-in templates;
    -- the signing key is one for all tenants (a link names a notification, which
    -- only its own tenant's functions find)
    FOR tbl IN SELECT c.oid FROM pg_class c
                WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'p')
                  AND c.relname NOT IN ('signing_key', 'tenancy') ORDER BY c.relname LOOP
        IF NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'tenant') THEN
            EXECUTE format('CREATE POLICY tenant ON %s USING (tenant = bis._tenant())'
                           ' WITH CHECK (tenant = bis._tenant())', tbl);
        END IF;
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    END LOOP;
    -- the built-in templates, every tenant's to read and none's to change
    IF NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = 'bis.templates'::regclass
                                             AND p.polname = 'builtin') THEN
        CREATE POLICY builtin ON bis.templates FOR SELECT USING (builtin AND tenant = '');
    END IF;

    -- bis's functions and views, but those that stay with the superuser
    FOR obj IN SELECT d.classid, d.objid FROM pg_depend d
                WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                  AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'bis')
                  AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass) LOOP
        IF obj.classid = 'pg_proc'::regclass THEN
            CONTINUE WHEN obj.objid::regprocedure = ANY (bis._administration_functions())
                       OR (SELECT p.proowner FROM pg_proc p WHERE p.oid = obj.objid)
                          = 'bis_tenants'::regrole;
            EXECUTE format('ALTER FUNCTION %s OWNER TO bis_tenants', obj.objid::regprocedure);
        ELSIF (SELECT c.relkind = 'v' AND c.relowner <> 'bis_tenants'::regrole
                 FROM pg_class c WHERE c.oid = obj.objid) THEN
            EXECUTE format('ALTER VIEW %s OWNER TO bis_tenants', obj.objid::regclass);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION bis.enable_tenants() IS 'Keeps tenants apart: row-level security on every bis table by the setting bis.tenant, and bis''s functions run as the role bis_tenants, which it applies to; for a superuser; run it again after a restore or an extension update';

/*
 * pg_dump keeps what the tables hold; built-in templates come with the extension
 */
SELECT pg_catalog.pg_extension_config_dump('bis.items', '');
SELECT pg_catalog.pg_extension_config_dump('bis.contacts', '');
SELECT pg_catalog.pg_extension_config_dump('bis.stock_levels', '');
SELECT pg_catalog.pg_extension_config_dump('bis.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('bis.subscriptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('bis.restock_events', '');
SELECT pg_catalog.pg_extension_config_dump('bis.restock_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('bis.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('bis.notifications_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('bis.templates', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('bis.consents', '');
-- without its key, a restored database would refuse every link already sent
SELECT pg_catalog.pg_extension_config_dump('bis.signing_key', '');

/*
 * Privileges: nothing is granted to PUBLIC but the three functions any role
 * may need to run; see the README's Privileges
 */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA bis FROM PUBLIC;
-- the WHEN clause of bis's triggers runs as whoever changes the stock
GRANT EXECUTE ON FUNCTION bis._crossing(text, bigint, bigint) TO PUBLIC;
-- bis.tracked_tables decodes trigger arguments as whoever reads it
GRANT EXECUTE ON FUNCTION bis._trigger_args(bytea) TO PUBLIC;
-- the tenants' policies call it as whoever reads bis's tables
GRANT EXECUTE ON FUNCTION bis._tenant() TO PUBLIC;
