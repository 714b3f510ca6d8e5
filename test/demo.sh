#!/usr/bin/env bash
# A restock reaching a mailer: a throwaway cluster, a catalog, shoppers
# waiting for a jacket, bis-mailer running against an SMTP server on loopback
# (aiosmtpd, writing a Maildir) and a webhook receiver for SMS, then the
# restock, and the email it produced.  Run as root on a fresh Debian 12
# machine (it installs what it needs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bis_become_unprivileged "$@"
cd "$bis_root"
bis_start_cluster

py=/usr/bin/python3
work=$(mktemp -d /tmp/bis-demo.XXXXXX)
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
    pg_ctl_stop
}
trap stop_all EXIT

sql() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n== %s\n' "$*"; }
free_port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {                    # wait_for SECONDS COMMAND...
    local i tries=$(($1 * 10))
    shift
    for i in $(seq 1 "$tries"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

say "A shop's catalog, three shoppers waiting for the jacket, sold out in both markets"
sql -e <<'SQL'
CREATE EXTENSION bis;
SELECT bis.upsert_items('[{"sku": "JKT-42", "title": "Storm jacket", "price": 149.00,
                           "currency": "EUR", "url": "https://shop.example/p/jkt-42"}]');
SELECT bis.upsert_contact('ann', email => 'ann@example.com', locale => 'sv-SE', first_name => 'Ann');
SELECT bis.upsert_contact('bob', phone => '+46 70 123 45 67');
SELECT bis.upsert_contact('eve', email => 'eve@example.com');
SELECT bis.subscribe('ann', 'JKT-42', locale => 'sv-SE'),
       bis.subscribe('bob', 'JKT-42', locale => 'sv-SE', channel => 'sms'),
       bis.subscribe('eve', 'JKT-42', locale => 'en-US');
SELECT bis.set_stock('JKT-42', 0, locale => 'sv-SE');
SELECT bis.set_stock('JKT-42', 0, locale => 'en-US');
SQL
# the shop's unsubscribe endpoint, for the links and headers of every message
sql -c "ALTER DATABASE $PGDATABASE SET bis.unsubscribe_url = 'https://shop.example/unsubscribe?t='" >/dev/null

say "An SMTP server and an SMS webhook on loopback, and bis-mailer listening"
mkdir -p "$work"/maildir/{tmp,new,cur}
smtp_port=$(free_port)
hook_port=$(free_port)
$py -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$work/maildir" \
    >"$work/smtpd.log" 2>&1 &
pids+=($!)
$py test/webhook_receiver.py --port "$hook_port" --log "$work/webhook.jsonl" >"$work/webhook.out" 2>&1 &
pids+=($!)
smtp_up() { $py -c "import socket; socket.create_connection(('127.0.0.1', $smtp_port), 0.2)" 2>/dev/null; }
wait_for 10 smtp_up || { cat "$work/smtpd.log"; exit 1; }
mailer=$(pg_config --bindir)/bis-mailer
"$mailer" --dbname "dbname=$PGDATABASE" --smtp "smtp://127.0.0.1:$smtp_port" \
    --from "Shop <shop@shop.example>" --webhook "http://127.0.0.1:$hook_port/sms" \
    --worker demo-mailer --poll 60 2>"$work/mailer.log" &
pids+=($!)
sleep 1
echo "bis-mailer --smtp smtp://127.0.0.1:$smtp_port --webhook http://127.0.0.1:$hook_port/sms"

say "The Swedish warehouse restocks 12 jackets"
sql -e -c "SELECT bis.set_stock('JKT-42', 12, locale => 'sv-SE') AS notifications_enqueued"
delivered() { [ "$(psql -X -At -c "SELECT count(*) FROM bis.notifications WHERE status = 'sent'")" = 2 ]; }
wait_for 10 delivered || echo "(not delivered within 10 s)"

say "What bis-mailer did"
cat "$work/mailer.log"

say "The email in the Maildir"
for f in "$work"/maildir/new/*; do
    sed -n '1,/^$/p' "$f" | grep -E '^(From|To|Subject|Message-ID|Date|List-Unsubscribe|Content-Type):'
    echo
    # the plain-text part
    awk '/^Content-Type: text\/plain/{p=1; next} p && /^--/{exit} p' "$f" | sed '1,/^$/d' | head -12
done

say "The SMS, as the webhook received it"
$py -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    body = json.loads(r["body"])
    print("Idempotency-Key:", r["headers"].get("Idempotency-Key"), "|", body["address"], "|", body["body"])
' "$work/webhook.jsonl"

say "The restock event and the queue"
sql -c "SELECT id, sku, locale, old_quantity, new_quantity, matched, enqueued, expansion
          FROM bis.restock_events"
sql -c "SELECT id, contact_id, channel, status, attempts, claimed_by, sent_at IS NOT NULL AS sent
          FROM bis.notifications ORDER BY id"

say "Ann opens the email, clicks and buys: the provider's events, and the order"
sql -e <<'SQL'
SELECT bis.record_event(1, 'delivered', provider_event_id => 'demo-1'),
       bis.record_event(1, 'opened', provider_event_id => 'demo-2'),
       bis.record_event(1, 'clicked', provider_event_id => 'demo-3');
SELECT bis.record_purchase('ann', 'JKT-42', 'order-1001', amount => 149.00, currency => 'EUR');
SQL

say "What each notification led to"
sql -c "SELECT notification_id, contact_id, channel, sent_at IS NOT NULL AS sent,
               delivered_at IS NOT NULL AS delivered, opened_at IS NOT NULL AS opened,
               clicked_at IS NOT NULL AS clicked, order_id, amount
          FROM bis.notification_history ORDER BY notification_id"
