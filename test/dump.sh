#!/usr/bin/env bash
# Backup and restore: a database with bis in use (stock set through bis, a
# tracked table of the application's own, subscriptions used and waiting,
# notifications sent and pending) is dumped with pg_dump and restored with
# pg_restore into a new database.  Everything must come back as it was, with
# no restock that did not happen, and restocks must work afterwards; with
# tenants, bis refuses to work until they are kept apart again.
#
# Runs against the throwaway cluster of test/run.sh: PGHOST, PGPORT and
# PGUSER come from the environment.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=bis_dump_source
dst=bis_dump_restored
admin_db=${PGDATABASE:-postgres}
bindir=$(pg_config --bindir)
dump=$(mktemp /tmp/bis-dump.XXXXXX)
q() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
tsrc=bis_dump_tenants
tdst=bis_dump_tenants_restored
cleanup() {
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $src WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS $dst WITH (FORCE)" -c "DROP DATABASE IF EXISTS $tsrc WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS $tdst WITH (FORCE)" -c "DROP ROLE IF EXISTS bis_tenants" \
        >/dev/null 2>&1 || true
    rm -f "$dump"
}
trap cleanup EXIT


cleanup
psql -X -q -d "$admin_db" -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst"
q "$src" >/dev/null <<'SQL'
CREATE EXTENSION bis;
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}, {"sku": "B-2", "title": "Boots", "threshold": 2},
                          {"sku": "C-3", "title": "Cap"}]');
SELECT bis.upsert_contact('c' || n, email => 'c' || n || '@example.com') FROM generate_series(1, 4) n;
SELECT bis.subscribe('c1', 'A-1'), bis.subscribe('c2', 'A-1'), bis.subscribe('c3', 'B-2'),
       bis.subscribe('c4', 'C-3');
-- A-1 restocked through bis.stock_levels: one notification sent, one pending
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
SET bis.unsubscribe_url = 'https://shop.example/u?t=';
CREATE TEMP TABLE sent AS SELECT * FROM bis.claim('mailer', 1);
SELECT bis.ack(ARRAY(SELECT id FROM sent), 'mailer');
-- the link in the email sent, kept where the restored database will find it
CREATE TABLE sent_links AS SELECT substr(payload->>'unsubscribe_url', 26) AS token FROM sent;
-- what happened after: an open, a purchase, a consent withdrawn, a phone's token
SELECT bis.record_event(id, 'opened', provider_event_id => 'ev-1') FROM sent;
SELECT bis.record_purchase('c1', 'A-1', 'order-1', amount => 59);
SELECT bis.set_consent('c3', 'sms', false, 'form');
SELECT bis.add_push_token('c2', 'fcm', 'c2-phone');
-- B-2 in stock below its threshold, in all markets and in one: c3 waits
SELECT bis.put_stock_levels('[{"sku": "B-2", "quantity": 1}, {"sku": "B-2", "quantity": 1, "locale": "fi-FI"}]');
-- C-3 lives in the application's own table, in stock and restocked: c4 is notified
CREATE TABLE shop_stock (sku text PRIMARY KEY, on_hand int NOT NULL);
INSERT INTO shop_stock VALUES ('C-3', 0);
SELECT bis.track('shop_stock', quantity_column => 'on_hand');
UPDATE shop_stock SET on_hand = 4;
INSERT INTO bis.templates (kind, channel, locale, subject, body)
VALUES ('back_in_stock', 'email', 'sv', '{{item.title}} finns i lager igen', 'Hej! {{item.title}} är tillbaka.');
SQL

"$bindir/pg_dump" -Fc -f "$dump" "$src"
rc=0
"$bindir/pg_restore" --exit-on-error -d "$dst" "$dump" || rc=$?
expect "pg_restore succeeds" 0 "$rc"

# every table, row for row
# (the built-in templates are made anew by CREATE EXTENSION, with a new updated_at)
for t in bis.items bis.contacts bis.stock_levels bis.subscriptions bis.restock_events \
         bis.notifications bis.delivery_events bis.purchases bis.consents bis.push_tokens \
         bis.signing_key public.shop_stock bis.tracked_tables \
         "(SELECT kind, channel, locale, subject, body, body_html, builtin FROM bis.templates)"; do
    rows="SELECT count(*) || ' rows, ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
            FROM $t x"
    before=$(q "$src" -c "$rows")
    expect "$(grep -o '[a-z]*\.[a-z_]*' <<<"$t" | tail -1) comes back as it was ($before)" \
        "$before" "$(q "$dst" -c "$rows")"
done

# a link sent before the dump works after it: the signing key came back
expect "an unsubscribe link sent before the dump unsubscribes after the restore" 1 \
    "$(q "$dst" -c "SELECT bis.unsubscribe_by_token(token) FROM sent_links" 2>&1 || true)"

# and both ways of restocking work on: the sequences go on from where they were
q "$dst" -c "SELECT bis.subscribe('c1', 'B-2')" >/dev/null
expect "a level set through bis after the restore is a restock" 2 \
    "$(q "$dst" -c "SELECT bis.set_stock('B-2', 3)")"
expect "its event follows the restored ones" \
    "$(q "$src" -c "SELECT max(id) + 1 FROM bis.restock_events")" \
    "$(q "$dst" -c "SELECT max(id) FROM bis.restock_events")"
q "$dst" -c "SELECT bis.subscribe('c2', 'C-3')" >/dev/null
q "$dst" -c "UPDATE shop_stock SET on_hand = 0" -c "UPDATE shop_stock SET on_hand = 2"
expect "the application's table is tracked after the restore" "C-3|1" \
    "$(q "$dst" -c "SELECT sku || '|' || enqueued FROM bis.restock_events ORDER BY id DESC LIMIT 1")"
expect "its notification has the next id" \
    "$(q "$src" -c "SELECT max(id) + 3 FROM bis.notifications")" \
    "$(q "$dst" -c "SELECT max(id) FROM bis.notifications")"

# with tenants: the rows come back with their tenants, and bis refuses to work
# until bis.enable_tenants() has run again (pg_dump keeps no policy of an
# extension's table, nor who owns its functions)
psql -X -q -d "$admin_db" -c "CREATE DATABASE $tsrc" -c "CREATE DATABASE $tdst"
q "$tsrc" >/dev/null <<'SQL'
CREATE EXTENSION bis;
SELECT bis.enable_tenants();
SET bis.tenant = 'a';
SELECT bis.upsert_items('[{"sku": "A-1"}]'), bis.upsert_contact('c1', email => 'c1@a.example'),
       bis.subscribe('c1', 'A-1'), bis.set_stock('A-1', 0), bis.set_stock('A-1', 1);
SET bis.tenant = 'b';
SELECT bis.upsert_items('[{"sku": "A-1"}]'), bis.upsert_contact('c1', email => 'c1@b.example'),
       bis.subscribe('c1', 'A-1'), bis.set_stock('A-1', 0), bis.set_stock('A-1', 1);
SQL
"$bindir/pg_dump" -Fc -f "$dump" "$tsrc"
rc=0
"$bindir/pg_restore" --exit-on-error -d "$tdst" "$dump" || rc=$?
expect "pg_restore of a database with tenants succeeds" 0 "$rc"
tenants="SELECT string_agg(tenant || ':' || contact_id, ',' ORDER BY id) FROM bis.notifications"
expect "the notifications come back with their tenants" "a:c1,b:c1" "$(q "$tdst" -c "$tenants")"
expect "a claim after the restore is refused: the tenants are not kept apart yet" \
    "not in force" \
    "$(q "$tdst" -c "SELECT count(*) FROM bis.claim('m')" 2>&1 | grep -o 'not in force' || true)"
q "$tdst" -c "SELECT bis.enable_tenants()" >/dev/null
expect "after bis.enable_tenants(), a claim of tenant b gets b's message only" "c1@b.example" \
    "$(q "$tdst" -c "SET bis.tenant = 'b'" -c "SELECT string_agg(address, ',') FROM bis.claim('m')")"

echo "dump: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
