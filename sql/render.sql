-- bis.render fills message templates from a notification's payload; bis.templates holds them
\set SHOW_CONTEXT never
\set p '{"item": {"title": "Storm <jacket>", "url": "https://shop.example/p?a=1&b=2", "price": 149.00, "sizes": ["S", "M"], "attributes": {"color": "navy"}, "on_sale": true, "category": null}, "contact": {"id": "ann"}}'

-- paths, numbers, booleans, array positions, nested objects
SELECT bis.render('{{item.title}} costs {{ item.price }}', :'p');
SELECT bis.render('sizes {{item.sizes.0}} and {{item.sizes.1}}; {{item.sizes}}; {{item.attributes}}; sale: {{item.on_sale}}', :'p');
-- missing values and JSON null give the fallback, or nothing
SELECT bis.render('Hi {{contact.first_name|there}}! [{{item.category}}] [{{item.category|none}}] [{{nothing.at.all}}] [{{item.sizes.7|no size}}]', :'p');
SELECT bis.render('{{item.title.deeper|scalar has no members}}', :'p');
-- HTML: values and fallbacks escaped, the template's own markup not
SELECT bis.render('<a href="{{item.url}}">{{item.title}}</a> {{contact.first_name|<friend>}}', :'p', true);
SELECT bis.render('<a href="{{item.url}}">{{item.title}}</a>', :'p');
-- text without placeholders, single braces, NULL template, NULL payload
SELECT bis.render('no placeholders, {single} braces, } and {', :'p');
SELECT bis.render(NULL, :'p') IS NULL AS null_template;
SELECT bis.render('Hi {{contact.id|you}}', NULL);
-- a malformed template is an error that says where
SELECT bis.render('Hi {{contact.id', :'p');
SELECT bis.render('Hi {{}}', :'p');
SELECT bis.render('Hi {{ | there}}', :'p');
SELECT bis.render('{{item..title}}', :'p');
SELECT bis.render('{{item.title!}}', :'p');

-- the built-in English templates, one per kind and channel
SELECT kind, channel, locale, subject, body FROM bis.templates WHERE builtin ORDER BY kind, channel;
-- they cannot be changed, only overridden
UPDATE bis.templates SET subject = 'x' WHERE channel = 'sms';
DELETE FROM bis.templates WHERE channel = 'sms';
INSERT INTO bis.templates (channel, locale, body, builtin) VALUES ('sms', 'en', 'x', true);
-- a template that cannot be rendered is refused
INSERT INTO bis.templates (channel, locale, body) VALUES ('sms', 'sv', 'Hej {{item.title');
INSERT INTO bis.templates (channel, locale, body) VALUES ('sms', 'Swedish', 'Hej');

-- sv-SE falls back to sv, then to bis.default_locale (en); one's own rows come first
INSERT INTO bis.templates (channel, locale, subject, body) VALUES
    ('email', 'sv', 'Nu finns {{item.title}} igen', 'Hej {{contact.first_name|du}}!'),
    ('email', 'sv-FI', 'Nu finns {{item.title}} igen i Finland', 'Hej!'),
    ('sms', 'en', NULL, 'Back: {{item.title}}');
SELECT l AS locale, t.locale AS template, t.builtin, bis.render(t.subject, :'p') AS subject
  FROM unnest(ARRAY['sv-SE', 'sv-FI', 'sv_se', 'sv', 'SV', 'fi-FI', NULL]) l,
       LATERAL bis._template('back_in_stock', 'email', l, 'en') t;
SELECT t.locale, t.builtin, t.body FROM bis._template('back_in_stock', 'sms', 'de-DE', 'en') t;
SET bis.default_locale = 'sv';
SELECT t.locale, t.body FROM bis._template('back_in_stock', 'email', 'de-DE', current_setting('bis.default_locale')) t;
RESET bis.default_locale;

DELETE FROM bis.templates WHERE NOT builtin;
