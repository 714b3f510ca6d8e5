#!/usr/bin/env bash
# A restock reaching a mailer: a throwaway cluster, a catalog, three shoppers
# waiting for a jacket, a mailer listening, and the restock that wakes it.
# Run as root on a fresh Debian 12 machine (it installs what it needs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bis_become_unprivileged "$@"
cd "$bis_root"
bis_start_cluster

sql() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "A shop's catalog, three shoppers waiting for the jacket, sold out in both markets"
sql -e <<'SQL'
CREATE EXTENSION bis;
SELECT bis.upsert_items('[{"sku": "JKT-42", "title": "Storm jacket", "price": 149.00,
                           "currency": "EUR", "url": "https://shop.example/p/jkt-42"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', locale => 'sv-SE');
SELECT bis.upsert_contact('bob', phone => '+46 70 123 45 67');
SELECT bis.upsert_contact('eve', email => 'eve@example.com');
SELECT bis.subscribe('ann', 'JKT-42', locale => 'sv-SE'),
       bis.subscribe('bob', 'JKT-42', locale => 'sv-SE', channel => 'sms'),
       bis.subscribe('eve', 'JKT-42', locale => 'en-US');
SELECT bis.set_stock('JKT-42', 0, locale => 'sv-SE');
SELECT bis.set_stock('JKT-42', 0, locale => 'en-US');
SQL

say "A mailer LISTENs on bis_notifications while the Swedish warehouse restocks 12 jackets"
listener_out=$(mktemp)
psql -X -c "LISTEN bis_notifications" -c "SELECT pg_sleep(2) AS mailer_waits" >"$listener_out" &
listener=$!
sleep 0.5
sql -e -c "SELECT bis.set_stock('JKT-42', 12, locale => 'sv-SE') AS notifications_enqueued"
wait "$listener"
say "What the mailer saw"
cat "$listener_out"
rm -f "$listener_out"

say "The restock event, and the notifications waiting for the mailer"
sql -x -c "SELECT id, sku, locale, old_quantity, new_quantity, threshold, matched, enqueued
             FROM bis.restock_events"
sql -c "SELECT id, contact_id, channel, status, payload->>'address' AS address,
               payload->'item'->>'title' AS title, payload->'stock'->>'quantity' AS quantity
          FROM bis.notifications ORDER BY id"
say "eve waits for the en-US market; its restock notifies her"
sql -e -c "SELECT bis.set_stock('JKT-42', 3, locale => 'en-US') AS notifications_enqueued"
sql -c "SELECT s.contact_id, s.locale, s.status FROM bis.subscriptions s ORDER BY s.id"
