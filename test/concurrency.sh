#!/usr/bin/env bash
# pgbench concurrency test: clients flap stock (alone and in two-key batches),
# subscribe and unsubscribe at the same time on a few SKUs; then one final restock of everything, and SQL
# checks that every subscription was notified at most once and that the
# restock log adds up (PRODUCT.md guarantees 1 and 2).  Any deadlock,
# serialization failure or other error fails the test.
#
# Runs against an existing server (PGHOST, PGPORT, PGUSER from the
# environment) in a database of its own, dropped at the end.
# BIS_CONCURRENCY_SECONDS (default 15) and BIS_CONCURRENCY_CLIENTS (default 8)
# set the length and width of the run.
set -euo pipefail

db=${BIS_CONCURRENCY_DB:-bis_concurrency}
seconds=${BIS_CONCURRENCY_SECONDS:-15}
clients=${BIS_CONCURRENCY_CLIENTS:-8}
admin_db=${PGDATABASE:-postgres}
work=$(mktemp -d /tmp/bis-concurrency.XXXXXX)

cleanup() {
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d "$admin_db" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
q -c "CREATE EXTENSION bis"
# every subscription ever made, as it was made: a used one leaves bis.subscriptions
q <<'SQL'
CREATE TABLE made (LIKE bis.subscriptions);
CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO public.made SELECT NEW.*; RETURN NULL; END $$;
CREATE TRIGGER keep AFTER INSERT ON bis.subscriptions FOR EACH ROW EXECUTE FUNCTION keep();
SQL

# 20 items (every fifth with threshold 2, the rest the default 1), 200
# contacts, 300 subscriptions, stock 0 for every SKU without a locale and for
# three locales
q <<'SQL'
SELECT bis.upsert_items(jsonb_agg(jsonb_build_object(
           'sku', 'SKU-' || i, 'title', 'Item ' || i,
           'threshold', CASE WHEN i % 5 = 0 THEN 2 END)))
  FROM generate_series(1, 20) i \g /dev/null
SELECT count(bis.upsert_contact('c' || i, email => 'c' || i || '@example.com',
                                phone => '+46 70 ' || lpad(i::text, 7, '0')))
  FROM generate_series(1, 200) i \g /dev/null
SELECT setseed(0.42) \g /dev/null
SELECT count(bis.subscribe('c' || (1 + floor(random() * 200))::int,
                           'SKU-' || (1 + floor(random() * 20))::int,
                           (ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE'])[1 + floor(random() * 4)::int],
                           NULL, (ARRAY['email', 'sms'])[1 + floor(random() * 2)::int]))
  FROM generate_series(1, 300) \g /dev/null
SELECT count(bis.set_stock('SKU-' || i, 0, l))
  FROM generate_series(1, 20) i, unnest(ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE']) l \g /dev/null
SQL

cat >"$work/stock.sql" <<'EOF'
\set sku random(1, 20)
\set qty random(0, 3)
\set loc random(1, 4)
SELECT bis.set_stock('SKU-' || :sku, :qty, (ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE'])[:loc]);
EOF
cat >"$work/subscribe.sql" <<'EOF'
\set contact random(1, 200)
\set sku random(1, 20)
\set loc random(1, 4)
\set channel random(1, 2)
SELECT bis.subscribe('c' || :contact, 'SKU-' || :sku, (ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE'])[:loc],
                     NULL, (ARRAY['email', 'sms'])[:channel]);
EOF
# two stock keys of one SKU in one transaction, in either order: restocks that
# would lock the SKU's subscriptions in different orders
cat >"$work/batch.sql" <<'EOF'
\set sku random(1, 20)
\set a random(1, 4)
\set b random(1, 4)
\set qty random(0, 3)
SELECT bis.put_stock_levels(jsonb_build_array(
           jsonb_strip_nulls(jsonb_build_object('sku', 'SKU-' || :sku, 'quantity', :qty,
                             'locale', (ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE'])[:a])),
           jsonb_strip_nulls(jsonb_build_object('sku', 'SKU-' || :sku, 'quantity', 3 - :qty,
                             'locale', (ARRAY[NULL, 'sv-SE', 'en-US', 'de-DE'])[:b]))))
 WHERE :a <> :b;
EOF
cat >"$work/unsubscribe.sql" <<'EOF'
\set contact random(1, 200)
SELECT bis.unsubscribe(s.id) FROM bis.subscriptions s
 WHERE s.contact_id = 'c' || :contact AND s.status = 'active' ORDER BY s.id LIMIT 1;
EOF

echo "concurrency: pgbench -c $clients -j 2 -T $seconds (stock 4, batch 2, subscribe 3, unsubscribe 1)"
status=0
pgbench -n -c "$clients" -j 2 -T "$seconds" --failures-detailed --verbose-errors \
    -f "$work/stock.sql@4" -f "$work/batch.sql@2" -f "$work/subscribe.sql@3" \
    -f "$work/unsubscribe.sql@1" \
    "$db" >"$work/pgbench.out" 2>"$work/pgbench.err" || status=$?
grep -E '^(number of (transactions actually processed|failed transactions)|tps)' "$work/pgbench.out" || true
passed=0
failed=0
check() {                       # check NAME RESULT: passes when RESULT is 0
    if [ "$2" = 0 ]; then
        echo "ok   $1"
        passed=$((passed + 1))
    else
        echo "FAIL $1: $2"
        failed=$((failed + 1))
    fi
}
errors=$(grep -ciE 'error|deadlock|serializ|abort' "$work/pgbench.err" || true)
fails=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$work/pgbench.out")
check "pgbench exit status" "$status"
check "pgbench failed transactions" "${fails:-0}"  # the line is new in pgbench 15
check "pgbench error messages" "$errors"
if [ "$status" != 0 ] || [ "${fails:-0}" != 0 ] || [ "$errors" != 0 ]; then
    head -n 40 "$work/pgbench.err" "$work/pgbench.out" >&2
fi

# the final pass, after the clients are done: every stock key to 0, then to 10
q -At -c "SELECT count(bis.set_stock(sku, 0, locale, external_id)) FROM bis.stock_levels" >/dev/null
q -At -c "SELECT sum(bis.set_stock(sku, 10, locale, external_id)) FROM bis.stock_levels" >/dev/null
q -At -F ' ' -c "SELECT 'restock events:', (SELECT count(*) FROM bis.restock_events),
       'notifications:', (SELECT count(*) FROM bis.notifications),
       'subscriptions by status:', (SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
                                      FROM (SELECT status, count(*) n FROM bis.subscription_history
                                             GROUP BY 1) s)"

sql_check() { check "$1" "$(q -At -c "$2")"; }
sql_check "no subscription has more than one notification" \
    "SELECT count(*) FROM (SELECT subscription_id FROM bis.notifications
                            GROUP BY subscription_id HAVING count(*) > 1) d"
sql_check "no used subscription is still waiting" \
    "SELECT count(*) FROM bis.subscriptions s JOIN bis.notifications n ON n.subscription_id = s.id"
sql_check "every notification is of a subscription made, with its contact, SKU, keys, channel and time" \
    "SELECT count(*) FROM bis.notifications n LEFT JOIN made m ON m.id = n.subscription_id
      WHERE (m.contact_id, m.sku, m.locale, m.external_id, m.channel, m.created_at)
            IS DISTINCT FROM (n.contact_id, n.sku, n.locale, n.external_id, n.channel, n.subscribed_at)"
sql_check "every subscription made is waiting, cancelled or used by one notification" \
    "SELECT count(*) FROM made m
      WHERE NOT EXISTS (SELECT FROM bis.subscriptions s WHERE s.id = m.id)
        AND NOT EXISTS (SELECT FROM bis.notifications n WHERE n.subscription_id = m.id)"
sql_check "every restock event: enqueued = its notifications, matched >= enqueued" \
    "SELECT count(*) FROM bis.restock_events e
       LEFT JOIN (SELECT restock_event_id, count(*) AS n FROM bis.notifications GROUP BY 1) n
              ON n.restock_event_id = e.id
      WHERE e.enqueued <> coalesce(n.n, 0) OR e.matched < e.enqueued"
sql_check "every notification is of its event's SKU, and of its locale if the event has one" \
    "SELECT count(*) FROM bis.notifications n
       LEFT JOIN bis.restock_events e ON e.id = n.restock_event_id
      WHERE e.id IS NULL OR n.sku <> e.sku OR (e.locale IS NOT NULL AND n.locale IS DISTINCT FROM e.locale)"
sql_check "the final pass crossed every one of the 80 stock keys" \
    "SELECT 80 - count(*) FROM bis.restock_events WHERE old_quantity = 0 AND new_quantity = 10"
sql_check "no active subscription left on a SKU the final pass restocked without a locale" \
    "SELECT count(*) FROM bis.subscriptions s WHERE s.status = 'active'
        AND EXISTS (SELECT FROM bis.stock_levels l WHERE l.sku = s.sku AND l.locale IS NULL
                       AND l.external_id IS NULL AND l.quantity = 10)"

echo "concurrency: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
